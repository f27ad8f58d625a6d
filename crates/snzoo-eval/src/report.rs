//! The evaluation report (JSON), its merge across shards, and timm-style results rows.

use std::time::SystemTime;

use crate::dataset::Shard;
use crate::metrics::{Failure, Tally};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WeightsInfo {
    pub path: String,
    pub sha256: String,
    pub arch: String,
    pub using_bn: bool,
    pub num_classes: usize,
    pub param_count: usize,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DatasetInfo {
    pub layout: String,
    pub path: String,
    pub labels: String,
    /// Images in the whole dataset (before --limit/--shard).
    pub count: usize,
    pub fingerprint: String,
    /// Images selected by --limit/--shard.
    pub selected: usize,
    pub limit: Option<usize>,
    pub shard: Option<Shard>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PreprocessInfo {
    pub resize: usize,
    pub crop: usize,
    pub interpolation: String,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// `rgb` or `bgr` (reports written before it existed were RGB).
    #[serde(default = "default_channel_order")]
    pub channel_order: String,
    /// `unit` (0–1) or `byte` (0–255).
    #[serde(default = "default_value_range")]
    pub value_range: String,
    /// The crop fraction as the model's card states it (timm's `crop_pct`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop_pct: Option<f64>,
    /// Whose image code resized and cropped (`torchvision`, `tf-slim`, `caffe`, `fbtorch`).
    #[serde(default = "default_pipeline")]
    pub pipeline: String,
    /// A per-pixel mean image was subtracted (instead of `mean`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_pixel_mean: bool,
    pub decoder: String,
}

fn default_pipeline() -> String {
    "torchvision".into()
}

fn default_channel_order() -> String {
    "rgb".into()
}

fn default_value_range() -> String {
    "unit".into()
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PerClass {
    pub index: usize,
    pub wnid: Option<String>,
    pub images: usize,
    pub top1: f64,
}

/// The published claim of a model card, with the measured difference.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClaimComparison {
    pub model: String,
    pub claimed_top1: f64,
    pub claimed_top5: f64,
    pub delta_top1: f64,
    pub delta_top5: f64,
}

/// Reports and journals written before `compute` existed were f32.
pub fn default_compute() -> String {
    "f32".to_string()
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub top1: f64,
    pub top5: f64,
    pub loss: Option<f64>,
    pub images: usize,
    pub failed: usize,
    pub failures: Vec<Failure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real_top1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real_images: Option<usize>,
    pub weights: WeightsInfo,
    pub dataset: DatasetInfo,
    pub preprocess: PreprocessInfo,
    /// The convolutions' precision: `f32`, or `bf16` (inputs and weights rounded, f32 sums).
    #[serde(default = "default_compute")]
    pub compute: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<ClaimComparison>,
    pub images_per_second: f64,
    pub wall_seconds: f64,
    /// Thread-seconds per stage in this run (read, decode, resize+crop+normalize, forward).
    #[serde(default)]
    pub stage_seconds: crate::runner::StageSeconds,
    /// Images taken from a resume journal rather than computed in this run.
    pub resumed_images: usize,
    pub batch_size: usize,
    pub threads: usize,
    pub started: String,
    pub finished: String,
    pub versions: std::collections::BTreeMap<String, String>,
    /// Exact totals, for merging shards.
    pub counts: Tally,
    pub per_class_top1: Vec<PerClass>,
}

/// Per-class top-1 rows from a tally, by class index.
pub fn per_class_rows(t: &Tally) -> Vec<PerClass> {
    t.per_class
        .iter()
        .map(|(&index, &(images, correct))| PerClass {
            index,
            wnid: snzoo_imagenet::class(index).map(|c| c.wnid.to_string()),
            images,
            top1: if images == 0 { 0.0 } else { 100.0 * correct as f64 / images as f64 },
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("nothing to merge")]
    Empty,
    #[error("{0}")]
    Incompatible(String),
}

/// Adds up shard reports of one evaluation (same weights, dataset, preprocessing and --limit;
/// distinct shards of the same N) into the report of the whole.
pub fn merge_reports(reports: &[Report]) -> Result<Report, MergeError> {
    let first = reports.first().ok_or(MergeError::Empty)?;
    let mut seen = std::collections::BTreeSet::new();
    let mut tally = Tally::default();
    let (mut wall, mut resumed) = (0.0f64, 0);
    for r in reports {
        let bad = |what: &str| MergeError::Incompatible(format!("reports differ in {what}"));
        if r.weights.sha256 != first.weights.sha256 {
            return Err(bad("weights"));
        }
        if r.dataset.fingerprint != first.dataset.fingerprint || r.dataset.limit != first.dataset.limit {
            return Err(bad("dataset or --limit"));
        }
        if r.preprocess != first.preprocess {
            return Err(bad("preprocessing"));
        }
        if r.compute != first.compute {
            return Err(bad("--dtype"));
        }
        let shard = r.dataset.shard.unwrap_or(Shard { index: 0, count: 1 });
        if shard.count != first.dataset.shard.map_or(1, |s| s.count) {
            return Err(bad("shard count"));
        }
        if !seen.insert(shard.index) {
            return Err(MergeError::Incompatible(format!("shard {}/{} appears twice", shard.index, shard.count)));
        }
        tally.merge(&r.counts);
        wall = wall.max(r.wall_seconds);
        resumed += r.resumed_images;
    }
    let count = first.dataset.shard.map_or(1, |s| s.count);
    if seen.len() != count {
        let missing: Vec<String> = (0..count).filter(|i| !seen.contains(i)).map(|i| format!("{i}/{count}")).collect();
        return Err(MergeError::Incompatible(format!("missing shards: {}", missing.join(", "))));
    }
    let mut out = first.clone();
    out.top1 = tally.top1();
    out.top5 = tally.top5();
    out.loss = tally.mean_loss();
    out.images = tally.images;
    out.failed = tally.failed;
    out.failures = tally.failures.clone();
    out.real_top1 = tally.real_top1();
    out.real_images = (tally.real_images > 0).then_some(tally.real_images);
    out.dataset.shard = None;
    out.dataset.selected = reports.iter().map(|r| r.dataset.selected).sum();
    out.per_class_top1 = per_class_rows(&tally);
    out.counts = tally;
    out.wall_seconds = wall;
    out.images_per_second = reports.iter().map(|r| r.images_per_second).sum();
    out.resumed_images = resumed;
    out.started = reports.iter().map(|r| r.started.clone()).min().unwrap_or_default();
    out.finished = reports.iter().map(|r| r.finished.clone()).max().unwrap_or_default();
    if let Some(c) = &mut out.claim {
        c.delta_top1 = out.top1 - c.claimed_top1;
        c.delta_top5 = out.top5 - c.claimed_top5;
    }
    Ok(out)
}

/// The header of timm's results tables.
pub const RESULTS_CSV_HEADER: &str = "model,top1,top1_err,top5,top5_err,param_count,img_size,crop_pct,interpolation";

/// One timm-style results row for a report.
pub fn results_csv_row(model: &str, r: &Report) -> String {
    format!(
        "{model},{:.3},{:.3},{:.3},{:.3},{:.2},{},{:.3},{}",
        r.top1,
        100.0 - r.top1,
        r.top5,
        100.0 - r.top5,
        r.weights.param_count as f64 / 1e6,
        r.preprocess.crop,
        r.preprocess.crop_pct.unwrap_or(r.preprocess.crop as f64 / r.preprocess.resize as f64),
        r.preprocess.interpolation
    )
}

/// `2026-11-26T21:06:21Z` (RFC 3339, UTC, whole seconds).
pub fn utc_timestamp(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t).replace_nanosecond(0).expect("0 is a valid nanosecond");
    t.format(&time::format_description::well_known::Rfc3339).expect("a UTC time formats")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(UNIX_EPOCH + std::time::Duration::from_secs(1_795_900_000)), "2026-11-28T21:06:40Z");
        assert_eq!(utc_timestamp(UNIX_EPOCH + std::time::Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
    }
}
