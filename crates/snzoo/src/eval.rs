//! `snzoo eval`: single-crop ImageNet-style validation (short side 256, center crop 224).

use std::collections::{BTreeMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use snzoo_eval::dataset::{select, Dataset, Shard};
use snzoo_eval::journal::{Journal, JournalHeader};
use snzoo_eval::report::{
    merge_reports, per_class_rows, ClaimComparison, results_csv_row, utc_timestamp, DatasetInfo, PreprocessInfo, Report, WeightsInfo,
    RESULTS_CSV_HEADER,
};
use snzoo_eval::runner::{run, Classifier, RunError, RunOptions, StageTimes};
use snzoo_eval::{ImageResult, Tally};
use snzoo_model::ResNetSn;
use snzoo_preprocess::EvalTransform;


/// The bundled default: a tiny SN ResNet-50 and a small labelled ImageFolder of real photos.
const BUNDLED_WEIGHTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/models/tiny-resnet50v1-sn.pth");
const BUNDLED_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/evalset");

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The model: a name from `snzoo list` (downloaded if needed; the report then carries the
    /// card's claim and the delta), a `.safetensors` file or a `.pth`. Same as --weights.
    #[arg(value_name = "MODEL", conflicts_with = "weights")]
    pub model: Option<PathBuf>,
    /// Model weights (as MODEL). Default, with no --data: the bundled tiny model.
    #[arg(long, short = 'w')]
    pub weights: Option<PathBuf>,
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
    /// Write the JSON report here (atomically). Enables the resume journal `REPORT.json.partial`.
    #[arg(long, short = 'o', value_name = "REPORT.json")]
    pub output: Option<PathBuf>,
    /// Append one timm-style row (model,top1,top1_err,top5,top5_err,param_count,img_size,crop_pct,interpolation).
    #[arg(long, value_name = "FILE")]
    pub results_csv: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Threads for decoding/preprocessing and for the forward pass (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub compute: crate::device::ComputeArgs,
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
    #[arg(long, num_args = 1.., value_name = "REPORT.json", conflicts_with_all = ["model", "weights", "data", "labels", "limit", "shard"])]
    pub merge: Option<Vec<PathBuf>>,
}

struct CandleClassifier {
    model: ResNetSn,
    classes: usize,
    crop: usize,
    device: Device,
}

impl Classifier for CandleClassifier {
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn logits(&mut self, input: &[f32], batch: usize) -> Result<Vec<f32>, String> {
        let run = || -> candle_core::Result<Vec<f32>> {
            let x = Tensor::from_slice(input, (batch, 3, self.crop, self.crop), &Device::Cpu)?.to_device(&self.device)?;
            self.model.forward(&x)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()
        };
        run().map_err(|e| e.to_string())
    }
}

fn preprocess_info(t: &EvalTransform) -> PreprocessInfo {
    PreprocessInfo {
        resize: t.resize,
        crop: t.crop,
        interpolation: "bilinear".into(),
        mean: t.mean,
        std: t.std,
        decoder: "libjpeg-turbo (PIL settings); image crate for other formats".into(),
    }
}

/// ImageNet-ReaL: label sets by val image number (1-based).
fn read_real_labels(path: &Path) -> Result<Vec<Vec<usize>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let sets: Vec<Vec<usize>> =
        serde_json::from_str(&text).with_context(|| format!("{}: expected a JSON list of label lists", path.display()))?;
    if sets.len() != snzoo_imagenet::NUM_VAL_IMAGES {
        bail!("{}: {} entries, ImageNet-ReaL has {}", path.display(), sets.len(), snzoo_imagenet::NUM_VAL_IMAGES);
    }
    if let Some(bad) = sets.iter().flatten().find(|&&l| l >= snzoo_imagenet::NUM_CLASSES) {
        bail!("{}: label {bad} is out of range", path.display());
    }
    Ok(sets)
}

fn real_set<'a>(real: &'a Option<Vec<Vec<usize>>>, rel: &str) -> Option<&'a [usize]> {
    let sets = real.as_ref()?;
    let name = rel.rsplit('/').next()?;
    snzoo_imagenet::val_image_number(name).map(|n| sets[n - 1].as_slice())
}

fn write_report(path: &Path, report: &Report) -> Result<()> {
    let mut text = serde_json::to_string_pretty(report)?;
    text.push('\n');
    snzoo_convert::write_atomically(path, text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

fn append_csv(path: &Path, model: &str, report: &Report) -> Result<()> {
    let new = !path.exists() || std::fs::metadata(path).map(|m| m.len() == 0).unwrap_or(true);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if new {
        writeln!(f, "{RESULTS_CSV_HEADER}")?;
    }
    writeln!(f, "{}", results_csv_row(model, report))?;
    Ok(())
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
        println!("claimed ({}): top-1 {:.2}%  top-5 {:.2}%  (delta {:+.3} / {:+.3})", c.model, c.claimed_top1, c.claimed_top5, c.delta_top1, c.delta_top5);
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
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        reports.push(serde_json::from_str::<Report>(&text).with_context(|| format!("{} is not an snzoo eval report", f.display()))?);
    }
    let merged = merge_reports(&reports)?;
    if let Some(out) = &args.output {
        write_report(out, &merged)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&merged)?);
    } else {
        print_summary(&merged);
    }
    Ok(())
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
    let started = SystemTime::now();
    let clock = Instant::now();
    let weights_arg = args.model.clone().or_else(|| args.weights.clone());
    let (weights_spec, data) = match (&weights_arg, &args.data) {
        (w, Some(d)) => (w.clone().context("--weights is required with --data")?, d.clone()),
        (None, None) => (PathBuf::from(BUNDLED_WEIGHTS), PathBuf::from(BUNDLED_DATA)),
        (Some(w), None) => (w.clone(), PathBuf::from(BUNDLED_DATA)),
    };
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    // candle's kernels run on rayon's global pool.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();

    let dataset = Dataset::discover(&data, args.labels.as_deref()).with_context(|| format!("dataset {}", data.display()))?;
    let (weights_path, model_card) = crate::zoo::resolve_weights(&weights_spec, args.quiet)?;
    let (device, loaded) = args.compute.load(&weights_path)?;
    let classes = loaded.config.num_classes;
    if let Some(s) = dataset.samples.iter().find(|s| s.label >= classes) {
        bail!("{}: label {} is out of range for a model with {classes} classes", s.rel, s.label);
    }
    let real = args.real_labels.as_deref().map(read_real_labels).transpose()?;
    let sha256 = snzoo_convert::sha256_file(&weights_path).with_context(|| format!("cannot read {}", weights_path.display()))?;
    let transform = EvalTransform::default();
    let selection = select(dataset.samples.len(), args.limit, args.shard);
    if selection.is_empty() {
        bail!("--limit/--shard select no images of {}", data.display());
    }
    let fingerprint = dataset.fingerprint();
    let root = std::fs::canonicalize(&dataset.root).unwrap_or_else(|_| dataset.root.clone());
    let selection_key = format!(
        "limit={};shard={}",
        args.limit.map_or("none".into(), |l| l.to_string()),
        args.shard.map_or("none".into(), |s| format!("{}/{}", s.index, s.count))
    );
    let preprocess = preprocess_info(&transform);

    // The resume journal.
    let mut journal = None;
    let mut done: BTreeMap<usize, ImageResult> = BTreeMap::new();
    if let Some(out) = &args.output {
        let mut p = out.clone().into_os_string();
        p.push(".partial");
        let header = JournalHeader {
            snzoo_journal: 1,
            weights_sha256: sha256.clone(),
            dataset_fingerprint: fingerprint.clone(),
            dataset_root: root.display().to_string(),
            selection: selection_key,
            preprocess: serde_json::to_value(&preprocess)?,
            compute: args.compute.dtype.clone(),
        };
        let (j, d) = Journal::open(Path::new(&p), &header)?;
        let in_selection: HashSet<usize> = selection.iter().copied().collect();
        done = d.into_iter().filter(|(i, _)| in_selection.contains(i)).collect();
        if !done.is_empty() && !args.quiet {
            eprintln!("resuming from {}: {} of {} images already done", Path::new(&p).display(), done.len(), selection.len());
        }
        journal = Some(j);
    }
    if args.strict {
        if let Some(r) = done.values().find(|r| r.error.is_some()) {
            bail!("{}: {}", dataset.samples[r.i].rel, r.error.as_deref().unwrap_or(""));
        }
    }
    let mut tally = Tally::default();
    for r in done.values() {
        tally.add(r, &dataset.samples[r.i].rel, real_set(&real, &dataset.samples[r.i].rel));
    }
    let resumed = done.len();
    let mut progress = Progress::new(selection.len(), resumed, args.quiet);
    let mut classifier = CandleClassifier { model: loaded.model, classes, crop: transform.crop, device };
    let options = RunOptions { batch_size: args.batch_size, threads, transform: transform.clone() };
    let done_set: HashSet<usize> = done.keys().copied().collect();
    let times = StageTimes::default();
    let result = run(&dataset, &selection, &done_set, &mut classifier, &options, &times, |batch: &[ImageResult]| -> Result<()> {
        if args.strict {
            if let Some(r) = batch.iter().find(|r| r.error.is_some()) {
                bail!("{}: {}", dataset.root.join(&dataset.samples[r.i].rel).display(), r.error.as_deref().unwrap_or(""));
            }
        }
        if let Some(j) = journal.as_mut() {
            j.append(batch)?;
        }
        for r in batch {
            tally.add(r, &dataset.samples[r.i].rel, real_set(&real, &dataset.samples[r.i].rel));
        }
        progress.update(&tally);
        Ok(())
    });
    progress.finish();
    match result {
        Ok(()) => {}
        Err(RunError::Callback(e)) => return Err(e),
        Err(e @ RunError::Forward(_)) => bail!("{e}"),
    }

    let wall = clock.elapsed().as_secs_f64();
    let computed = tally.images - resumed;
    let param_count: usize = loaded.config.expected_shapes().iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    let report = Report {
        top1: tally.top1(),
        top5: tally.top5(),
        loss: tally.mean_loss(),
        images: tally.images,
        failed: tally.failed,
        failures: tally.failures.clone(),
        real_top1: tally.real_top1(),
        real_images: real.as_ref().map(|_| tally.real_images),
        weights: WeightsInfo {
            path: std::fs::canonicalize(&weights_path).unwrap_or_else(|_| weights_path.clone()).display().to_string(),
            sha256,
            arch: loaded.config.arch_name(),
            using_bn: loaded.config.using_bn,
            num_classes: classes,
            param_count,
        },
        dataset: DatasetInfo {
            layout: dataset.layout.to_string(),
            path: root.display().to_string(),
            labels: match &dataset.labels {
                snzoo_eval::dataset::LabelSource::Folders => "folders".into(),
                snzoo_eval::dataset::LabelSource::Bundled => "bundled ILSVRC2012 ground truth".into(),
                snzoo_eval::dataset::LabelSource::ListFile(p) => p.display().to_string(),
                snzoo_eval::dataset::LabelSource::Devkit(p) => format!("devkit {}", p.display()),
            },
            count: dataset.samples.len(),
            fingerprint,
            selected: selection.len(),
            limit: args.limit,
            shard: args.shard,
        },
        preprocess,
        compute: args.compute.dtype.clone(),
        claim: model_card.map(|c| ClaimComparison {
            model: c.name.clone(),
            claimed_top1: c.claimed.top1,
            claimed_top5: c.claimed.top5,
            delta_top1: tally.top1() - c.claimed.top1,
            delta_top5: tally.top5() - c.claimed.top5,
        }),
        images_per_second: computed as f64 / wall.max(1e-9),
        wall_seconds: wall,
        stage_seconds: times.seconds(),
        resumed_images: resumed,
        batch_size: args.batch_size,
        threads,
        started: utc_timestamp(started),
        finished: utc_timestamp(SystemTime::now()),
        versions: BTreeMap::from([("snzoo".to_string(), env!("CARGO_PKG_VERSION").to_string())]),
        per_class_top1: per_class_rows(&tally),
        counts: tally,
    };
    if let Some(out) = &args.output {
        write_report(out, &report)?;
    }
    if let Some(j) = journal {
        j.remove()?;
    }
    if let (Some(c), None, None) = (model_card, args.limit, args.shard) {
        // The last full measurement of a zoo model, for `snzoo list` and `info`.
        let store = snzoo_zoo::Store::from_env();
        let summary = serde_json::json!({
            "top1": report.top1, "top5": report.top5, "images": report.images, "failed": report.failed,
            "dataset": report.dataset.path, "finished": report.finished, "weights_sha256": report.weights.sha256,
        });
        let path = store.results_path(&c.name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        snzoo_convert::write_atomically(&path, serde_json::to_string_pretty(&summary)?.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(csv) = &args.results_csv {
        append_csv(csv, &report.weights.arch, &report)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
    }
    Ok(())
}
