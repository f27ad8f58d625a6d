//! `snzoo list`, `info`, `download`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use snzoo::snzoo_zoo::store::AcquireOptions;
use snzoo::snzoo_zoo::{card, cards, ModelCard, Store};

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
    /// Take a checkpoint fetched by hand (Baidu Pan, OneDrive, a browser) through the same
    /// verification and conversion. Repeat it for a model's other files (MSRA's mean image
    /// `ResNet_mean.binaryproto`), told apart by extension.
    #[arg(long, value_name = "PATH")]
    pub from_file: Vec<PathBuf>,
    /// Further attempts after a failed or cut transfer, each resuming where the last stopped.
    #[arg(long, default_value_t = 4)]
    pub retries: u32,
    /// No progress output.
    #[arg(long, short = 'q')]
    pub quiet: bool,
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
    let (nw, aw) = cards().iter().fold((4, 4), |(n, a), c| (n.max(c.name.chars().count()), a.max(c.arch.chars().count())));
    println!("{:<nw$} {:<aw$} {:>6} {:>6} {:<8} {:<12} measured (delta)", "name", "arch", "top-1", "top-5", "using_bn", "local");
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
            "{:<nw$} {:<aw$} {:>6.2} {:>6.2} {:<8} {:<12} {measured}",
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
    let n = &c.normalization;
    println!(
        "  architecture   {}, normalization {} (using_bn={}{}{}{})",
        c.arch,
        n.kind,
        n.using_bn,
        n.groups.map(|g| format!(", {g} groups")).unwrap_or_default(),
        n.using_moving_average.map(|v| format!(", using_moving_average={v}")).unwrap_or_default(),
        n.last_gamma.map(|v| format!(", last_gamma={v}")).unwrap_or_default()
    );
    println!("  claimed        single-crop top-1 {:.2}, top-5 {:.2}", c.claimed.top1, c.claimed.top5);
    match snzoo::protocol::from_card(c) {
        Ok(t) => println!("  protocol       {}", snzoo::protocol::describe(&t)),
        Err(e) => println!("  protocol       invalid: {e}"),
    }
    if let Some(t) = &c.training {
        println!(
            "  training       {}: {} GPUs x {} images, {} epochs, {}, lr {}, momentum {}, weight decay {}",
            t.dataset, t.gpus, t.images_per_gpu, t.epochs, t.schedule, t.initial_lr, t.momentum, t.weight_decay
        );
    }
    let loadable =
        if c.loadable { String::new() } else { format!(" (not loadable: {})", c.not_loadable_reason.clone().unwrap_or_default()) };
    println!("  format         {}{loadable}", c.format);
    for s in &c.sources {
        let line = match s {
            snzoo::snzoo_zoo::Source::GoogleDrive { url, .. } => format!("Google Drive {url}"),
            snzoo::snzoo_zoo::Source::BaiduPan { url, note } => format!("Baidu Pan {url} ({note})"),
            snzoo::snzoo_zoo::Source::Manual { url, note } => format!("by hand: {url} ({note})"),
            snzoo::snzoo_zoo::Source::Url { url } => url.clone(),
            snzoo::snzoo_zoo::Source::Hf { repo, file, revision } => {
                format!("Hugging Face Hub {repo}, file {file}{}", revision.as_ref().map(|r| format!(" at {r}")).unwrap_or_default())
            }
        };
        println!("  source         {line}");
    }
    for x in &c.extra_files {
        println!(
            "  also needs     {} ({}{})",
            x.file,
            x.role.replace('_', " "),
            x.sha256.as_ref().map(|s| format!(", sha256 {s}")).unwrap_or_default()
        );
    }
    println!("  licence        {}", c.license);
    println!("  paper          {}", c.paper);
    let local = &out["local"];
    let state = if local["converted"] == true {
        "downloaded and converted"
    } else if local["downloaded"] == true {
        "downloaded"
    } else {
        "not downloaded"
    };
    println!("  local          {state} ({})", store.model_dir(&c.name).display());
    if let Some(sha) = store.recorded_sha256(&c.name) {
        println!("  sha256         {sha} (recorded)");
    }
    if let (Some(t1), Some(t5)) = (local["measured_top1"].as_f64(), local["measured_top5"].as_f64()) {
        println!(
            "  measured       top-1 {t1:.3}, top-5 {t5:.3} ({:+.3} / {:+.3} against the claim)",
            t1 - c.claimed.top1,
            t5 - c.claimed.top5
        );
    }
    Ok(())
}

pub fn download(args: &DownloadArgs) -> Result<()> {
    let c = card(&args.name).with_context(|| format!("no model named {} (see `snzoo list`)", args.name))?;
    if let Some(s) = &args.sha256 {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("--sha256 must be 64 hex digits");
        }
    }
    let (from_file, extra_from_files) = snzoo::zoo::assign_from_files(c, &args.from_file)?;
    let options = AcquireOptions { url: args.url.clone(), sha256: args.sha256.clone(), from_file, extra_from_files };
    let fetch = snzoo::zoo::Fetch {
        options,
        retries: args.retries,
        progress: &mut super::Bar::bytes(args.quiet),
        log: &mut super::logger(&c.name, args.quiet),
    };
    let converted = snzoo::zoo::ensure_converted(c, fetch)?;
    println!("{}", converted.display());
    Ok(())
}
