//! `snzoo list`, `info`, `download`, and resolving a model name wherever weights are taken.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use snzoo_zoo::fetch::{Fetcher, Progress};
use snzoo_zoo::store::{AcquireOptions, ChecksumSource};
use snzoo_zoo::{card, cards, ModelCard, Store};

use crate::convert::convert_checkpoint;

/// `MODEL` or `--weights W`: a model name from `snzoo list` or a weights file.
#[derive(Debug, clap::Args)]
pub struct ModelArg {
    /// A model name from `snzoo list` (downloaded if needed) or a weights file.
    #[arg(value_name = "MODEL", required_unless_present = "weights", conflicts_with = "weights")]
    pub model: Option<PathBuf>,
    /// Weights file (`.safetensors` or `.pth`), instead of MODEL.
    #[arg(long, short = 'w')]
    pub weights: Option<PathBuf>,
}

impl ModelArg {
    /// The name or path given.
    pub fn spec(&self) -> PathBuf {
        self.model.clone().or_else(|| self.weights.clone()).expect("clap requires MODEL or --weights")
    }
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print a JSON array (name, arch, top1, top5, using_bn, loadable, local state, last results).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// A model name from `snzoo list`.
    pub name: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DownloadArgs {
    /// A model name from `snzoo list`.
    pub name: String,
    /// Fetch from this URL instead of the card's source: a mirror (`https://…`), a Google Drive
    /// link, or `hf://org/repo/file` on the Hugging Face Hub (`HF_ENDPOINT` is honoured).
    #[arg(long)]
    pub url: Option<String>,
    /// Expected sha256 of the checkpoint (overrides the card's).
    #[arg(long)]
    pub sha256: Option<String>,
    /// Take a checkpoint fetched by hand (Baidu Pan, a browser) through the same verification
    /// and conversion.
    #[arg(long, value_name = "PATH")]
    pub from_file: Option<PathBuf>,
    /// Further attempts after a failed or cut transfer, each resuming where the last stopped.
    #[arg(long, default_value_t = 4)]
    pub retries: u32,
    /// No progress output.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

struct Bar(Option<indicatif::ProgressBar>);

impl Progress for Bar {
    fn start(&mut self, total: Option<u64>, done: u64) {
        if let Some(b) = &self.0 {
            if let Some(t) = total {
                b.set_length(t);
            }
            b.set_position(done);
        }
    }
    fn advance(&mut self, bytes: u64) {
        if let Some(b) = &self.0 {
            b.inc(bytes);
        }
    }
    fn finish(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

fn bar(quiet: bool) -> Bar {
    Bar((!quiet && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
                .expect("valid template"),
        );
        b
    }))
}

/// Downloads (if needed), verifies and converts a card's model; returns the converted path.
pub fn ensure_converted(card: &ModelCard, opts: &AcquireOptions, retries: u32, quiet: bool) -> Result<PathBuf> {
    let store = Store::from_env();
    let converted = store.converted_path(&card.name);
    let mut fetcher = Fetcher::new()?;
    fetcher.retries = retries;
    let mut log = |m: &str| {
        if !quiet {
            eprintln!("{}: {m}", card.name);
        }
    };
    let verified = match store.acquire(card, opts, &fetcher, &mut bar(quiet), &mut log) {
        Ok(v) => v,
        Err(e) => {
            if matches!(e, snzoo_zoo::store::ZooError::ChecksumMismatch { .. }) {
                let _ = std::fs::remove_file(&converted);
            }
            return Err(e.into());
        }
    };
    match verified.checksum {
        ChecksumSource::NewlyRecorded => log(&format!("no sha256 is known for this model; recorded {}", verified.sha256)),
        c => log(&format!("sha256 {} verified ({})", verified.sha256, serde_json::to_value(c)?.as_str().unwrap_or(""))),
    }
    let up_to_date = crate::weights::read_safetensors_header(&converted)
        .ok()
        .is_some_and(|h| h.metadata.get("source_sha256") == Some(&verified.sha256));
    if !up_to_date {
        let c = convert_checkpoint(&verified.path, None)?;
        if c.config.arch_name() != card.arch || c.config.using_bn != card.normalization.using_bn {
            bail!(
                "{} converted to {} (using_bn={}), but the card {} says {} (using_bn={}); not using it",
                verified.path.display(),
                c.config.arch_name(),
                c.config.using_bn,
                card.name,
                card.arch,
                card.normalization.using_bn
            );
        }
        let mut meta = c.metadata;
        meta.insert("model_card".into(), card.name.clone());
        snzoo_convert::write_safetensors(&converted, &c.tensors, &meta)
            .with_context(|| format!("cannot write {}", converted.display()))?;
        log(&format!("converted to {} ({}, using_bn={})", converted.display(), c.config.arch_name(), c.config.using_bn));
    }
    Ok(converted)
}

/// A `--weights`/positional model: an existing file, or a card name (downloaded if needed).
pub fn resolve_weights(spec: &Path, quiet: bool) -> Result<(PathBuf, Option<&'static ModelCard>)> {
    if spec.exists() {
        return Ok((spec.to_path_buf(), card_for_file(spec)));
    }
    let name = spec.to_string_lossy();
    match card(&name) {
        Some(c) => Ok((ensure_converted(c, &AcquireOptions::default(), 4, quiet)?, Some(c))),
        None => bail!("{}: no such file, and no model of that name (see `snzoo list`)", spec.display()),
    }
}

/// The card whose checkpoint a converted file was made from (by the recorded or published sha256).
pub fn card_for_file(path: &Path) -> Option<&'static ModelCard> {
    let meta = crate::weights::read_safetensors_header(path).ok()?.metadata;
    if let Some(c) = meta.get("model_card").and_then(|n| card(n)) {
        return Some(c);
    }
    let sha = meta.get("source_sha256")?;
    let store = Store::from_env();
    cards().iter().find(|c| c.sha256.as_ref() == Some(sha) || store.recorded_sha256(&c.name).as_ref() == Some(sha))
}

fn local_state(store: &Store, c: &ModelCard) -> serde_json::Value {
    let last = store.last_results(&c.name);
    serde_json::json!({
        "downloaded": store.checkpoint_path(c).exists(),
        "converted": store.converted_path(&c.name).exists(),
        "measured_top1": last.as_ref().and_then(|r| r.get("top1")).cloned(),
        "measured_top5": last.as_ref().and_then(|r| r.get("top5")).cloned(),
        "delta_top1": last.as_ref().and_then(|r| r.get("top1")).and_then(|v| v.as_f64()).map(|v| v - c.claimed.top1),
        "delta_top5": last.as_ref().and_then(|r| r.get("top5")).and_then(|v| v.as_f64()).map(|v| v - c.claimed.top5),
    })
}

pub fn list(args: &ListArgs) -> Result<()> {
    let store = Store::from_env();
    if args.json {
        let arr: Vec<serde_json::Value> = cards()
            .iter()
            .map(|c| {
                let mut v = serde_json::json!({
                    "name": c.name, "arch": c.arch, "top1": c.claimed.top1, "top5": c.claimed.top5,
                    "using_bn": c.normalization.using_bn, "normalization": c.normalization.kind, "loadable": c.loadable,
                });
                v.as_object_mut().unwrap().extend(local_state(&store, c).as_object().unwrap().clone());
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&arr)?);
        return Ok(());
    }
    println!("{:<28} {:<16} {:>6} {:>6} {:<8} {:<12} measured (delta)", "name", "arch", "top-1", "top-5", "using_bn", "local");
    for c in cards() {
        let st = local_state(&store, c);
        let local = if !c.loadable {
            "not loadable"
        } else if st["converted"] == true {
            "converted"
        } else if st["downloaded"] == true {
            "downloaded"
        } else {
            "-"
        };
        let measured = match (st["measured_top1"].as_f64(), st["measured_top5"].as_f64()) {
            (Some(a), Some(b)) => format!("{a:.2} / {b:.2} ({:+.2} / {:+.2})", a - c.claimed.top1, b - c.claimed.top5),
            _ => String::new(),
        };
        println!(
            "{:<28} {:<16} {:>6.2} {:>6.2} {:<8} {:<12} {measured}",
            c.name, c.arch, c.claimed.top1, c.claimed.top5, c.normalization.using_bn, local
        );
    }
    Ok(())
}

pub fn info(args: &InfoArgs) -> Result<()> {
    let c = card(&args.name).with_context(|| format!("no model named {} (see `snzoo list`)", args.name))?;
    let store = Store::from_env();
    let files = serde_json::json!({
        "directory": store.model_dir(&c.name),
        "checkpoint": store.checkpoint_path(c),
        "converted": store.converted_path(&c.name),
        "recorded_sha256": store.recorded_sha256(&c.name),
    });
    let out = serde_json::json!({"card": c, "local": local_state(&store, c), "files": files, "last_results": store.last_results(&c.name)});
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("{} — {}", c.name, c.title);
    println!("  arch {}, normalization {} (using_bn={}{}{})", c.arch, c.normalization.kind, c.normalization.using_bn,
        c.normalization.using_moving_average.map(|v| format!(", using_moving_average={v}")).unwrap_or_default(),
        c.normalization.last_gamma.map(|v| format!(", last_gamma={v}")).unwrap_or_default());
    println!("  claimed single-crop top-1 {:.2}, top-5 {:.2} (resize {}, crop {}, {})", c.claimed.top1, c.claimed.top5, c.eval.resize, c.eval.crop, c.eval.interpolation);
    if let Some(t) = &c.training {
        println!("  trained on {}: {} GPUs x {} images, {} epochs, {}, lr {}, momentum {}, weight decay {}", t.dataset, t.gpus, t.images_per_gpu, t.epochs, t.schedule, t.initial_lr, t.momentum, t.weight_decay);
    }
    println!("  format: {}{}", c.format, if c.loadable { String::new() } else { format!(" — {}", c.not_loadable_reason.clone().unwrap_or_default()) });
    for s in &c.sources {
        println!("  source: {}", serde_json::to_string(s)?);
    }
    println!("  license {}; {}", c.license, c.paper);
    println!("  local: {}", serde_json::to_string(&out["local"])?);
    println!("  files: {}", serde_json::to_string(&files)?);
    Ok(())
}

pub fn download(args: &DownloadArgs) -> Result<()> {
    let c = card(&args.name).with_context(|| format!("no model named {} (see `snzoo list`)", args.name))?;
    if let Some(s) = &args.sha256 {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("--sha256 must be 64 hex digits");
        }
    }
    let opts = AcquireOptions { url: args.url.clone(), sha256: args.sha256.clone(), from_file: args.from_file.clone() };
    let converted = ensure_converted(c, &opts, args.retries, args.quiet)?;
    println!("{}", converted.display());
    Ok(())
}
