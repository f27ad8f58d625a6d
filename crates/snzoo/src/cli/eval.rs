//! `snzoo eval`: single-crop ImageNet-style validation with each model's evaluation protocol;
//! several models at once (`--models`, `--all-local`) give a leaderboard; shard reports merge exactly.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use snzoo::snzoo_eval::dataset::{Dataset, Shard};
use snzoo::snzoo_eval::leaderboard;
use snzoo::snzoo_eval::report::{merge_reports, results_csv_row, Report, RESULTS_CSV_HEADER};
use snzoo::snzoo_eval::Tally;
use snzoo::snzoo_fs::display_path;
use snzoo::{EvalEvent, EvalOptions};

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The model: a name from `snzoo list` (downloaded if needed; the report then carries the
    /// card's claim and the delta), a `.safetensors` file or a `.pth`. Same as --weights.
    #[arg(value_name = "MODEL", conflicts_with_all = ["weights", "models", "all_local"])]
    pub model: Option<PathBuf>,
    /// Model weights (as MODEL). Default, with no --data: the bundled tiny model.
    #[arg(long, short = 'w', conflicts_with_all = ["models", "all_local"])]
    pub weights: Option<PathBuf>,
    /// Several models, one after the other (names from `snzoo list` or weights files, comma
    /// separated): each gets its report in --output-dir, and together a leaderboard of the
    /// claimed and measured top-1/top-5 (`leaderboard.md`, `leaderboard.csv`).
    #[arg(long, value_name = "NAME,...", value_delimiter = ',', num_args = 1.., conflicts_with = "all_local")]
    pub models: Option<Vec<PathBuf>>,
    /// As --models, with every zoo model that is downloaded and converted in the store.
    #[arg(long)]
    pub all_local: bool,
    /// A directory for one report per model (`NAME.json`, or `NAME.shard-I-of-N.json` with
    /// --shard, each with its resume journal) and the leaderboard. With --merge: the shard
    /// reports of several models are grouped by model and each merged into `NAME.json`.
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    pub output_dir: Option<PathBuf>,
    /// Dataset directory: ImageFolder (`DIR/<wnid>/*.JPEG`), a flat ILSVRC2012 val folder
    /// (`ILSVRC2012_val_*.JPEG`), or the root of the paths in --labels. Default: the bundled sample set.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Labels: a list file of `relative/path label` lines (the SN release's val.txt), or, for a flat
    /// val folder, the devkit's ILSVRC2012_validation_ground_truth.txt (ILSVRC ids, mapped to the
    /// sorted-wnid order). Without it a flat val folder uses the bundled ground truth.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// ImageNet-ReaL labels (`real.json`: 50,000 label lists in val-file order) for ReaL top-1.
    #[arg(long, value_name = "real.json")]
    pub real_labels: Option<PathBuf>,
    /// Write the JSON report here (atomically). Enables the resume journal `REPORT.json.partial`,
    /// locked while the run lasts: a second run with the same --output is refused.
    #[arg(long, short = 'o', value_name = "REPORT.json")]
    pub output: Option<PathBuf>,
    /// Append one timm-style row (model,top1,top1_err,top5,top5_err,param_count,img_size,crop_pct,interpolation).
    #[arg(long, value_name = "FILE")]
    pub results_csv: Option<PathBuf>,
    /// Images per forward pass (at least 1; checked against the memory available).
    #[arg(long, default_value_t = 16, value_parser = super::classify::positive)]
    pub batch_size: usize,
    /// Threads for decoding/preprocessing and for the forward pass (default: all cores; at most
    /// 4 per core).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub compute: super::ComputeArgs,
    /// Evaluate only the first N images (canonical order).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Evaluate a deterministic 1/N of the images: every N-th starting at I (0-based), e.g. 0/4.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Exit non-zero on the first image that cannot be read or decoded (default: count it as a miss).
    #[arg(long)]
    pub strict: bool,
    /// No progress output.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Print the report as JSON on stdout instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Merge shard reports (REPORT.json ...) into one, with exact totals; writes --output if given.
    #[arg(long, num_args = 1.., value_name = "REPORT.json", conflicts_with_all = ["model", "weights", "models", "all_local", "data", "labels", "limit", "shard"])]
    pub merge: Option<Vec<PathBuf>>,
}

fn append_csv(path: &Path, model: &str, report: &Report, inputs: &[&Path]) -> Result<()> {
    // Rewritten whole (old rows + the new one) and renamed into place: never half a row.
    let target = snzoo::snzoo_fs::check_output(path, inputs)?;
    let mut text = match snzoo::snzoo_fs::read_regular(&target, 64 << 20) {
        Ok(b) => String::from_utf8(b).with_context(|| format!("{} is not a text file", display_path(path)))?,
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => String::new(),
        Err(e) => return Err(e.into()),
    };
    if text.trim().is_empty() {
        text = format!("{RESULTS_CSV_HEADER}\n");
    } else if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&results_csv_row(model, report));
    text.push('\n');
    snzoo::snzoo_fs::write_atomic(&target, text.as_bytes()).with_context(|| format!("cannot write {}", display_path(path)))
}

fn print_summary(r: &Report) {
    println!(
        "{} on {} ({} images{}): top-1 {:.3}%  top-5 {:.3}%{}",
        r.weights.arch,
        r.dataset.path,
        r.images,
        if r.failed > 0 { format!(", {} failed", r.failed) } else { String::new() },
        r.top1,
        r.top5,
        r.real_top1.map(|v| format!("  ReaL top-1 {v:.3}%")).unwrap_or_default()
    );
    if let Some(c) = &r.claim {
        println!(
            "claimed ({}): top-1 {:.2}%  top-5 {:.2}%  (delta {:+.3} / {:+.3})",
            c.model, c.claimed_top1, c.claimed_top5, c.delta_top1, c.delta_top5
        );
    }
    if let Some(loss) = r.loss {
        let t = &r.stage_seconds;
        println!(
            "loss {loss:.4}, {:.1} images/s, {:.1} s (thread-seconds: read {:.2}, decode {:.2}, resize+crop {:.2}, forward {:.2})",
            r.images_per_second, r.wall_seconds, t.read, t.decode, t.preprocess, t.forward
        );
    }
}

fn merge(args: &EvalArgs, files: &[PathBuf]) -> Result<()> {
    let mut reports = Vec::new();
    for f in files {
        let bytes = snzoo::snzoo_fs::read_regular(f, 256 << 20)?;
        reports.push(serde_json::from_slice::<Report>(&bytes).with_context(|| format!("{} is not an snzoo eval report", display_path(f)))?);
    }
    if let Some(dir) = &args.output_dir {
        let names: Vec<String> = files.iter().map(|f| report_stem(f)).collect();
        let rows = leaderboard::merge_by_model(&reports, &names)?;
        let inputs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        return write_leaderboard(args, dir, &rows, &inputs, true);
    }
    let merged = merge_reports(&reports)?;
    if let Some(out) = &args.output {
        let inputs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        let target = snzoo::snzoo_fs::check_output(out, &inputs)?;
        snzoo::evaluate::write_report(&target, &merged)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&merged)?);
    } else {
        print_summary(&merged);
    }
    Ok(())
}

/// The model name in a report file's name: `NAME.json` or `NAME.shard-I-of-N.json`.
fn report_stem(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    match stem.rfind(".shard-") {
        Some(i) => stem[..i].to_string(),
        None => stem,
    }
}

/// Writes (with `reports`) each model's report, `leaderboard.md` and `leaderboard.csv` into `dir`, and prints
/// the table (or, with --json, the reports).
fn write_leaderboard(args: &EvalArgs, dir: &Path, rows: &[(String, Report)], inputs: &[&Path], reports: bool) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", display_path(dir)))?;
    for (name, report) in rows.iter().filter(|_| reports) {
        let target = snzoo::snzoo_fs::check_output(&dir.join(format!("{name}.json")), inputs)?;
        snzoo::evaluate::write_report(&target, report)?;
    }
    let md = leaderboard::markdown(rows);
    for (file, text) in [("leaderboard.md", md.clone()), ("leaderboard.csv", leaderboard::results_csv(rows))] {
        let p = dir.join(file);
        let target = snzoo::snzoo_fs::check_output(&p, inputs)?;
        snzoo::snzoo_fs::write_atomic(&target, text.as_bytes()).with_context(|| format!("cannot write {}", display_path(&p)))?;
    }
    if args.json {
        let all: Vec<&Report> = rows.iter().map(|(_, r)| r).collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        print!("{md}");
        println!("{}", display_path(&dir.join("leaderboard.md")));
    }
    Ok(())
}

/// A file-system-safe model name (zoo names already are; a weights file gives its stem).
fn safe_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "._+-".contains(c) { c } else { '_' }).collect()
}

/// Progress on stderr: a bar on a terminal, a line every 10 s otherwise, nothing with --quiet.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    last: Instant,
    start: Instant,
    total: usize,
    resumed: usize,
}

impl Progress {
    fn new(total: usize, resumed: usize, quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = (!quiet && tty).then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {per_sec} {msg}")
                    .expect("valid template"),
            );
            b.set_position(resumed as u64);
            b
        });
        Self { bar, plain: !quiet && !tty, last: Instant::now(), start: Instant::now(), total, resumed }
    }

    fn update(&mut self, t: &Tally) {
        let msg = format!("top-1 {:.2}% top-5 {:.2}%", t.top1(), t.top5());
        if let Some(b) = &self.bar {
            b.set_position(t.images as u64);
            b.set_message(msg);
        } else if self.plain && (self.last.elapsed() >= Duration::from_secs(10) || t.images == self.total) {
            self.last = Instant::now();
            let rate = (t.images - self.resumed) as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
            eprintln!("eval: {}/{} images, {rate:.1} img/s, {msg}", t.images, self.total);
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

pub fn run_eval(args: &EvalArgs) -> Result<()> {
    if let Some(files) = &args.merge {
        return merge(args, files);
    }
    let several = args.models.is_some() || args.all_local;
    if !several {
        let weights_arg = args.model.clone().or_else(|| args.weights.clone());
        // The bundled default (embedded in the binary): a tiny SN ResNet-50 and a small sample set.
        let (weights_spec, data) = match (&weights_arg, &args.data) {
            (w, Some(d)) => (w.clone().context("--weights is required with --data")?, d.clone()),
            (None, None) => snzoo::bundled::paths()?,
            (Some(w), None) => (w.clone(), snzoo::bundled::paths()?.1),
        };
        let Some(dir) = &args.output_dir else {
            let report = evaluate_one(args, &weights_spec, &data, args.output.clone())?;
            return print_report(args, &report);
        };
        return run_many(args, &[weights_spec], &data, dir);
    }
    let specs: Vec<PathBuf> = match &args.models {
        Some(m) => m.clone(),
        None => {
            let store = snzoo::snzoo_zoo::Store::from_env();
            let local: Vec<PathBuf> = snzoo::snzoo_zoo::cards()
                .iter()
                .filter(|c| c.loadable && store.converted_path(&c.name).is_file())
                .map(|c| PathBuf::from(&c.name))
                .collect();
            if local.is_empty() {
                anyhow::bail!("--all-local: no zoo model is converted in {} (snzoo download NAME)", display_path(&store.root));
            }
            local
        }
    };
    let data = args.data.clone().map_or_else(|| snzoo::bundled::paths().map(|p| p.1), Ok)?;
    let Some(dir) = &args.output_dir else {
        return Err(super::UsageError("several models need --output-dir DIR for their reports and the leaderboard".into()).into());
    };
    run_many(args, &specs, &data, dir)
}

/// Evaluates each model in turn into `dir`, then writes the leaderboard (or, for a shard, only
/// the shard reports: `--merge DIR/*.shard-*.json --output-dir DIR` makes the leaderboard).
fn run_many(args: &EvalArgs, specs: &[PathBuf], data: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", display_path(dir)))?;
    let mut rows = Vec::new();
    for spec in specs {
        let stem = spec.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
        let name = safe_name(&if spec.exists() { stem } else { spec.to_string_lossy().into_owned() });
        let file = match args.shard {
            Some(s) => format!("{name}.shard-{}-of-{}.json", s.index, s.count),
            None => format!("{name}.json"),
        };
        if !args.quiet {
            eprintln!("eval: {} -> {}", display_path(spec), display_path(&dir.join(&file)));
        }
        let report = evaluate_one(args, spec, data, Some(dir.join(&file)))?;
        if args.shard.is_some() && !args.json {
            print_summary(&report);
        }
        rows.push((name, report));
    }
    if args.shard.is_some() {
        if args.json {
            let all: Vec<&Report> = rows.iter().map(|(_, r)| r).collect();
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        return Ok(());
    }
    // The reports are already in `dir` (written by the evaluations); add the tables.
    write_leaderboard(args, dir, &rows, &[], false)
}

fn print_report(args: &EvalArgs, report: &Report) -> Result<()> {
    if args.json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print_summary(report);
    }
    Ok(())
}

/// One model's evaluation, as `snzoo eval MODEL --output OUT` does it.
fn evaluate_one(args: &EvalArgs, weights_spec: &Path, data: &Path, output: Option<PathBuf>) -> Result<Report> {
    let threads = super::init_threads(args.threads)?;
    let dataset = Dataset::discover(data, args.labels.as_deref()).with_context(|| format!("dataset {}", display_path(data)))?;
    let model = args.compute.open(weights_spec, args.quiet)?;
    let real_labels = args.real_labels.as_deref().map(snzoo::evaluate::read_real_labels).transpose()?;
    if let Some(csv) = &args.results_csv {
        snzoo::snzoo_fs::check_output(csv, &[model.weights_path()])?;
    }
    let options = EvalOptions {
        batch_size: args.batch_size,
        threads,
        limit: args.limit,
        shard: args.shard,
        strict: args.strict,
        output,
        real_labels,
    };
    let mut progress: Option<Progress> = None;
    let quiet = args.quiet;
    let report = snzoo::evaluate(&model, &dataset, &options, &mut |event| match event {
        EvalEvent::Resumed { journal, done, selected } => {
            if !quiet {
                eprintln!("resuming from {}: {done} of {selected} images already done", display_path(journal));
            }
        }
        EvalEvent::Changed { count } => {
            if !quiet {
                eprintln!(
                    "{count} journaled image{} changed since; computing {} again",
                    if count == 1 { "" } else { "s" },
                    if count == 1 { "it" } else { "them" }
                );
            }
        }
        EvalEvent::Progress { tally, selected, resumed } => {
            progress.get_or_insert_with(|| Progress::new(selected, resumed, quiet)).update(tally);
        }
    });
    if let Some(p) = &progress {
        p.finish();
    }
    let report = report?;
    if let (Some(c), None, None) = (model.card().map(|c| c.name.as_str()), args.limit, args.shard) {
        // The last full measurement of a zoo model, for `snzoo list` and `info`: a store that
        // cannot be written (read-only, full) is worth a warning, not a failed evaluation.
        if let Err(e) = record_results(c, &report) {
            eprintln!("warning: the result was not recorded for `snzoo list`: {e:#}");
        }
    }
    if let Some(csv) = &args.results_csv {
        append_csv(csv, &report.weights.arch, &report, &[model.weights_path()])?;
    }
    Ok(report)
}

fn record_results(name: &str, report: &Report) -> Result<()> {
    let store = snzoo::snzoo_zoo::Store::from_env();
    let summary = serde_json::json!({
        "top1": report.top1, "top5": report.top5, "images": report.images, "failed": report.failed,
        "dataset": report.dataset.path, "finished": report.finished, "weights_sha256": report.weights.sha256,
    });
    let path = store.results_path(name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    snzoo::snzoo_fs::write_atomic(&path, serde_json::to_string_pretty(&summary)?.as_bytes())?;
    Ok(())
}
