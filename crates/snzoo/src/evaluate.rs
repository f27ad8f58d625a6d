//! Evaluating a model on a labelled image set, resumable through a journal.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use snzoo_eval::dataset::{select, Dataset, LabelSource, Shard};
use snzoo_eval::journal::{is_current, Journal, JournalHeader};
use snzoo_eval::report::{per_class_rows, utc_timestamp, ClaimComparison, DatasetInfo, PreprocessInfo, Report, WeightsInfo};
use snzoo_eval::runner::{run, RunError, RunOptions, StageTimes};
use snzoo_eval::{ImageResult, Tally};

use crate::{Error, Model, Result};

/// How to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Images per forward pass.
    pub batch_size: usize,
    /// Threads for decoding and preprocessing (the forward pass uses the rayon pool).
    pub threads: usize,
    /// Only the first N images (canonical order).
    pub limit: Option<usize>,
    /// Every N-th image from I.
    pub shard: Option<Shard>,
    /// Stop at the first image that cannot be read or decoded (default: count it as a miss).
    pub strict: bool,
    /// Where to write the report (atomically); the resume journal is `<output>.partial`.
    pub output: Option<PathBuf>,
    /// ImageNet-ReaL label sets, by val image number.
    pub real_labels: Option<Vec<Vec<usize>>>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self { batch_size: 16, threads: crate::limits::cores(), limit: None, shard: None, strict: false, output: None, real_labels: None }
    }
}

/// What an evaluation reports while it runs.
#[derive(Debug)]
pub enum EvalEvent<'a> {
    /// Images taken from the journal of an interrupted run.
    Resumed { journal: &'a Path, done: usize, selected: usize },
    /// Journaled images whose files changed since: computed again.
    Changed { count: usize },
    /// The running totals after a batch.
    Progress { tally: &'a Tally, selected: usize, resumed: usize },
}

/// The preprocessing a report records: the model's evaluation protocol.
pub fn preprocess_info(model: &Model) -> PreprocessInfo {
    let t = model.transform();
    let name = |v: serde_json::Value| v.as_str().map(String::from).unwrap_or_default();
    PreprocessInfo {
        resize: t.resize,
        crop: t.crop,
        interpolation: t.interpolation.as_str().into(),
        mean: t.mean,
        std: t.std,
        channel_order: name(serde_json::to_value(t.channel_order).expect("serialisable")),
        value_range: name(serde_json::to_value(t.value_range).expect("serialisable")),
        crop_pct: model.card().and_then(|c| c.eval.crop_pct),
        pipeline: t.pipeline.as_str().into(),
        per_pixel_mean: t.per_pixel_mean,
        decoder: "libjpeg-turbo (PIL settings); image crate for other formats".into(),
    }
}

/// ImageNet-ReaL label sets (`real.json`: 50,000 lists in val-file order).
pub fn read_real_labels(path: &Path) -> Result<Vec<Vec<usize>>> {
    let bytes = snzoo_fs::read_regular(path, 64 << 20)?;
    let sets: Vec<Vec<usize>> = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Other(format!("{}: expected a JSON list of label lists: {e}", path.display())))?;
    if sets.len() != snzoo_imagenet::NUM_VAL_IMAGES {
        return Err(Error::Other(format!(
            "{}: {} entries, ImageNet-ReaL has {}",
            path.display(),
            sets.len(),
            snzoo_imagenet::NUM_VAL_IMAGES
        )));
    }
    if let Some(bad) = sets.iter().flatten().find(|&&l| l >= snzoo_imagenet::NUM_CLASSES) {
        return Err(Error::Other(format!("{}: label {bad} is out of range", path.display())));
    }
    Ok(sets)
}

fn real_set<'a>(real: &'a Option<Vec<Vec<usize>>>, rel: &str) -> Option<&'a [usize]> {
    let sets = real.as_ref()?;
    let name = rel.rsplit('/').next()?;
    snzoo_imagenet::val_image_number(name).map(|n| sets[n - 1].as_slice())
}

/// Checks a journaled record against the dataset and the model.
fn check_record(r: &ImageResult, dataset: &Dataset, classes: usize) -> std::result::Result<(), String> {
    let s = dataset.samples.get(r.i).ok_or_else(|| format!("image {} is not in the dataset of {} images", r.i, dataset.samples.len()))?;
    if r.label != s.label {
        return Err(format!("image {} ({}) has label {} in the journal but {} in the dataset", r.i, s.rel, r.label, s.label));
    }
    match (&r.error, r.loss) {
        (Some(_), None) if r.top5.is_empty() => return Ok(()),
        (None, Some(loss)) if loss.is_finite() && loss >= 0.0 => {}
        (None, Some(loss)) => return Err(format!("image {} has the impossible loss {loss}", r.i)),
        _ => return Err(format!("image {} has neither a ranking and a loss nor an error", r.i)),
    }
    if r.top5.len() != classes.min(5) {
        return Err(format!("image {} has {} ranked classes, not {}", r.i, r.top5.len(), classes.min(5)));
    }
    if let Some(c) = r.top5.iter().find(|&&c| c >= classes) {
        return Err(format!("image {} ranks class {c}, which a {classes}-class model does not have", r.i));
    }
    let distinct: HashSet<&usize> = r.top5.iter().collect();
    if distinct.len() != r.top5.len() {
        return Err(format!("image {} ranks a class twice", r.i));
    }
    Ok(())
}

/// What a resume journal of this evaluation is tied to: the weights' sha256, the dataset
/// (fingerprint and root), the selection, the preprocessing and the precision.
pub fn journal_header(model: &Model, dataset: &Dataset, options: &EvalOptions) -> Result<JournalHeader> {
    Ok(JournalHeader {
        snzoo_journal: 1,
        weights_sha256: snzoo_fs::sha256_file(model.weights_path())?,
        dataset_fingerprint: dataset.fingerprint(),
        dataset_root: std::fs::canonicalize(&dataset.root).unwrap_or_else(|_| dataset.root.clone()).display().to_string(),
        selection: format!(
            "limit={};shard={}",
            options.limit.map_or("none".into(), |l| l.to_string()),
            options.shard.map_or("none".into(), |s| format!("{}/{}", s.index, s.count))
        ),
        preprocess: serde_json::to_value(preprocess_info(model)).expect("serialisable"),
        compute: model.precision().as_str().to_string(),
    })
}

/// Evaluates `model` on `dataset`. With `options.output`, finished images are journaled to
/// `<output>.partial` (locked while the run lasts) and a rerun resumes from it, recomputing
/// images whose files changed; the report is written atomically to `output` before the
/// journal is removed.
pub fn evaluate(model: &Model, dataset: &Dataset, options: &EvalOptions, on_event: &mut dyn FnMut(EvalEvent<'_>)) -> Result<Report> {
    let started = SystemTime::now();
    let clock = Instant::now();
    let classes = model.num_classes();
    let batch_size = crate::limits::batch_size(options.batch_size)?;
    let threads = options.threads.max(1);
    if let Some(s) = dataset.samples.iter().find(|s| s.label >= classes) {
        return Err(Error::Other(format!("{}: label {} is out of range for a model with {classes} classes", s.rel, s.label)));
    }
    // Decoded batches in flight, plus one forward pass per thread.
    let crop = model.transform().crop;
    let in_flight = (2 * threads as u64 + 1) * batch_size as u64 * crate::limits::input_bytes(crop);
    let forward = threads.min(batch_size) as u64 * crate::limits::forward_bytes_per_image(model.config().width, crop);
    crate::limits::check_memory(&format!("evaluating with --batch-size {batch_size} and {threads} threads"), in_flight + forward)?;

    let selection = select(dataset.samples.len(), options.limit, options.shard);
    // A shard beyond the last image (more shards than images) is an empty part of the whole,
    // reported as such so that the merge stays complete; an empty --limit selection is an error.
    if selection.is_empty() && (options.shard.is_none() || dataset.samples.is_empty()) {
        return Err(Error::Other(format!("--limit/--shard select no images of {}", dataset.root.display())));
    }
    let header = journal_header(model, dataset, options)?;
    let sha256 = header.weights_sha256.clone();
    let fingerprint = header.dataset_fingerprint.clone();
    let root = PathBuf::from(&header.dataset_root);
    let preprocess = preprocess_info(model);
    let compute = header.compute.clone();
    let report_target = match &options.output {
        Some(out) => Some(snzoo_fs::check_output(out, &[model.weights_path()])?),
        None => None,
    };

    // The resume journal.
    let mut journal = None;
    let mut done: BTreeMap<usize, ImageResult> = BTreeMap::new();
    if let Some(out) = &options.output {
        let mut p = out.clone().into_os_string();
        p.push(".partial");
        let path = PathBuf::from(p);
        snzoo_fs::check_output(&path, &[model.weights_path()])?;
        let purpose = format!("snzoo eval --output {}", snzoo_fs::display_path(out));
        let (j, d) = Journal::open(&path, &header, &purpose, &|r| check_record(r, dataset, classes))?;
        let in_selection: HashSet<usize> = selection.iter().copied().collect();
        done = d.into_iter().filter(|(i, _)| in_selection.contains(i)).collect();
        let before = done.len();
        done.retain(|_, r| is_current(r, &dataset.root.join(&dataset.samples[r.i].rel)));
        if !done.is_empty() {
            on_event(EvalEvent::Resumed { journal: &path, done: done.len(), selected: selection.len() });
        }
        if done.len() < before {
            on_event(EvalEvent::Changed { count: before - done.len() });
        }
        journal = Some(j);
    }
    if options.strict {
        if let Some(r) = done.values().find(|r| r.error.is_some()) {
            return Err(Error::Other(format!("{}: {}", dataset.samples[r.i].rel, r.error.as_deref().unwrap_or(""))));
        }
    }
    let real = options.real_labels.clone();
    let mut tally = Tally::default();
    for r in done.values() {
        tally.add(r, &dataset.samples[r.i].rel, real_set(&real, &dataset.samples[r.i].rel));
    }
    let resumed = done.len();
    let run_options = RunOptions { batch_size, threads, transform: model.transform().clone() };
    let done_set: HashSet<usize> = done.keys().copied().collect();
    let times = StageTimes::default();
    let mut classifier = crate::model::NetworkClassifier { net: model.network(), crop, device: model.device().clone() };
    let result = run(dataset, &selection, &done_set, &mut classifier, &run_options, &times, |batch: &[ImageResult]| -> Result<()> {
        if options.strict {
            if let Some(r) = batch.iter().find(|r| r.error.is_some()) {
                return Err(Error::Other(format!(
                    "{}: {}",
                    dataset.root.join(&dataset.samples[r.i].rel).display(),
                    r.error.as_deref().unwrap_or("")
                )));
            }
        }
        if let Some(j) = journal.as_mut() {
            j.append(batch)?;
        }
        for r in batch {
            tally.add(r, &dataset.samples[r.i].rel, real_set(&real, &dataset.samples[r.i].rel));
        }
        on_event(EvalEvent::Progress { tally: &tally, selected: selection.len(), resumed });
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(RunError::Callback(e)) => return Err(e),
        Err(e @ RunError::Forward(_)) => return Err(Error::Other(e.to_string())),
    }

    let wall = clock.elapsed().as_secs_f64();
    let computed = tally.images - resumed;
    let card = model.card();
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
            path: std::fs::canonicalize(model.weights_path()).unwrap_or_else(|_| model.weights_path().to_path_buf()).display().to_string(),
            sha256,
            arch: model.config().arch_name(),
            using_bn: model.config().using_bn(),
            num_classes: classes,
            param_count: model.config().param_count().map_err(|e| Error::Other(e.to_string()))?,
        },
        dataset: DatasetInfo {
            layout: dataset.layout.to_string(),
            path: root.display().to_string(),
            labels: match &dataset.labels {
                LabelSource::Folders => "folders".into(),
                LabelSource::Bundled => "bundled ILSVRC2012 ground truth".into(),
                LabelSource::ListFile(p) => p.display().to_string(),
                LabelSource::Devkit(p) => format!("devkit {}", p.display()),
            },
            count: dataset.samples.len(),
            fingerprint,
            selected: selection.len(),
            limit: options.limit,
            shard: options.shard,
        },
        preprocess,
        compute,
        claim: card.map(|c| ClaimComparison {
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
        batch_size,
        threads,
        started: utc_timestamp(started),
        finished: utc_timestamp(SystemTime::now()),
        versions: BTreeMap::from([("snzoo".to_string(), env!("CARGO_PKG_VERSION").to_string())]),
        per_class_top1: per_class_rows(&tally),
        counts: tally,
    };
    if let Some(target) = &report_target {
        write_report(target, &report)?;
    }
    if let Some(j) = journal {
        j.remove()?;
    }
    Ok(report)
}

/// Writes a report as pretty JSON, atomically.
pub fn write_report(path: &Path, report: &Report) -> Result<()> {
    let mut text = serde_json::to_string_pretty(report).expect("reports serialise");
    text.push('\n');
    Ok(snzoo_fs::write_atomic(path, text.as_bytes())?)
}
