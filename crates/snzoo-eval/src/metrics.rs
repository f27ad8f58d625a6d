//! Per-image results and their totals: top-1/top-5 (ranked as `torch.topk`), cross-entropy,
//! per-class top-1, ImageNet-ReaL.

use std::collections::BTreeMap;

/// What happened to one image. This is also one line of the resume journal.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageResult {
    /// Position in the dataset's canonical order.
    pub i: usize,
    pub label: usize,
    /// The five best classes, best first; empty when the image failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top5: Vec<usize>,
    /// Cross-entropy of the true label, when the image was evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Why the image could not be evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The image file as it was read (absent when it could not be opened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<FileStamp>,
}

/// What an image file was when it was read: size, modification time and inode. A resumed run
/// recomputes an image whose file no longer matches its stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub ino: u64,
}

impl FileStamp {
    pub fn of(meta: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            size: meta.size(),
            mtime_ns: meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec()),
            ino: meta.ino(),
        }
    }

    /// The stamp of the file at `path` now, if it can be read.
    pub fn current(path: &std::path::Path) -> Option<FileStamp> {
        std::fs::metadata(path).ok().map(|m| FileStamp::of(&m))
    }
}

/// Indices of the `k` largest values, largest first; equal values keep the lower index first.
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    let k = k.min(values.len());
    if k == 0 {
        return Vec::new();
    }
    let cmp = |a: &usize, b: &usize| values[*b].total_cmp(&values[*a]).then(a.cmp(b));
    idx.select_nth_unstable_by(k - 1, cmp);
    idx.truncate(k);
    idx.sort_by(cmp);
    idx
}

/// `-log softmax(logits)[label]`, computed in f64.
pub fn cross_entropy(logits: &[f32], label: usize) -> f64 {
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let lse = max + logits.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
    lse - logits[label] as f64
}

/// The result of one evaluated image.
pub fn score(i: usize, label: usize, logits: &[f32]) -> ImageResult {
    ImageResult { i, label, top5: top_k(logits, 5), loss: Some(cross_entropy(logits, label)), error: None, stamp: None }
}

/// A failed image: a miss for every metric.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    pub file: String,
    pub reason: String,
}

/// Totals that add up exactly across runs and shards.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    /// Every image counted, failed ones included: the denominator.
    pub images: usize,
    pub correct1: usize,
    pub correct5: usize,
    pub failed: usize,
    /// Sum and count of the cross-entropy over evaluated (not failed) images. The sum is kept
    /// exactly, in units of 2⁻⁶⁴ (`loss_sum_fixed`: each image's loss rounded once to that grid),
    /// so that it does not depend on the order of the additions: shards merged in any order, or
    /// a resumed run, give the unsharded run's sum bit for bit. `loss_sum` is its f64 value.
    pub loss_sum: f64,
    #[serde(default)]
    pub loss_sum_fixed: i128,
    pub loss_images: usize,
    /// class → (images, top-1 correct).
    pub per_class: BTreeMap<usize, (usize, usize)>,
    /// ImageNet-ReaL: scored images (non-empty label sets) and top-1 hits.
    pub real_images: usize,
    pub real_correct1: usize,
    pub failures: Vec<Failure>,
}

impl Tally {
    /// Adds one image. `file` names it in failures; `real` is its ReaL label set, if ReaL is on
    /// (an empty set means the image is not scored by ReaL).
    pub fn add(&mut self, r: &ImageResult, file: &str, real: Option<&[usize]>) {
        self.images += 1;
        let top1 = r.top5.first() == Some(&r.label);
        let top5 = r.top5.contains(&r.label);
        self.correct1 += top1 as usize;
        self.correct5 += top5 as usize;
        let c = self.per_class.entry(r.label).or_default();
        c.0 += 1;
        c.1 += top1 as usize;
        if let Some(loss) = r.loss {
            self.loss_sum_fixed = self.loss_sum_fixed.saturating_add(loss_to_fixed(loss));
            self.loss_sum = fixed_to_f64(self.loss_sum_fixed);
            self.loss_images += 1;
        }
        if let Some(e) = &r.error {
            self.failed += 1;
            self.insert_failure(Failure { file: file.to_string(), reason: e.clone() });
        }
        if let Some(set) = real.filter(|s| !s.is_empty()) {
            self.real_images += 1;
            self.real_correct1 += r.top5.first().is_some_and(|p| set.contains(p)) as usize;
        }
    }

    /// Adds another tally (a shard, or an earlier part of a resumed run).
    pub fn merge(&mut self, o: &Tally) {
        self.images += o.images;
        self.correct1 += o.correct1;
        self.correct5 += o.correct5;
        self.failed += o.failed;
        self.loss_sum_fixed = self.loss_sum_fixed.saturating_add(o.loss_sum_fixed);
        self.loss_sum = fixed_to_f64(self.loss_sum_fixed);
        self.loss_images += o.loss_images;
        for (k, (n, c)) in &o.per_class {
            let e = self.per_class.entry(*k).or_default();
            e.0 += n;
            e.1 += c;
        }
        self.real_images += o.real_images;
        self.real_correct1 += o.real_correct1;
        for f in &o.failures {
            self.insert_failure(f.clone());
        }
    }

    /// Failures are kept sorted by file (then reason), whatever order the images came in.
    fn insert_failure(&mut self, f: Failure) {
        let key = |x: &Failure| (x.file.clone(), x.reason.clone());
        let pos = self.failures.partition_point(|x| key(x) <= key(&f));
        self.failures.insert(pos, f);
    }

    fn percent(n: usize, d: usize) -> f64 {
        if d == 0 {
            0.0
        } else {
            100.0 * n as f64 / d as f64
        }
    }

    pub fn top1(&self) -> f64 {
        Self::percent(self.correct1, self.images)
    }
    pub fn top5(&self) -> f64 {
        Self::percent(self.correct5, self.images)
    }
    pub fn mean_loss(&self) -> Option<f64> {
        (self.loss_images > 0).then(|| self.loss_sum / self.loss_images as f64)
    }
    pub fn real_top1(&self) -> Option<f64> {
        (self.real_images > 0).then(|| Self::percent(self.real_correct1, self.real_images))
    }
}

/// 2⁶⁴: the fixed-point scale of the loss sum.
const LOSS_SCALE: f64 = 18446744073709551616.0;

/// A loss on the 2⁻⁶⁴ grid (exact for losses ≥ 2⁻¹¹; smaller ones are rounded, the same way
/// wherever they are added). Non-finite losses saturate.
fn loss_to_fixed(loss: f64) -> i128 {
    (loss * LOSS_SCALE).round() as i128
}

fn fixed_to_f64(v: i128) -> f64 {
    v as f64 / LOSS_SCALE
}

#[cfg(test)]
mod tests {

    /// Any partition of the images into shards, merged in any order, equals the one-pass tally
    /// bit for bit (loss sum and failure list included), and survives a JSON round trip.
    #[test]
    fn merging_is_exact_in_any_order() {
        let mut x = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let results: Vec<ImageResult> = (0..997)
            .map(|i| {
                let label = (next() % 7) as usize;
                let error = (next() % 50 == 0).then(|| "unreadable".to_string());
                let loss = error.is_none().then(|| (next() % 1_000_000) as f64 / 7919.0 + 1e-13 * (next() % 1000) as f64);
                ImageResult { i, label, top5: vec![(next() % 7) as usize, 3], loss, error, stamp: None }
            })
            .collect();
        let mut whole = Tally::default();
        for r in &results {
            whole.add(r, &format!("img{:04}", r.i), None);
        }
        for shards in [2usize, 3, 8] {
            let mut parts = vec![Tally::default(); shards];
            for r in &results {
                parts[r.i % shards].add(r, &format!("img{:04}", r.i), None);
            }
            let mut merged = Tally::default();
            for p in parts.iter().rev() {
                merged.merge(p);
            }
            assert_eq!(merged, whole, "{shards} shards");
            assert_eq!(merged.loss_sum.to_bits(), whole.loss_sum.to_bits());
        }
        let back: Tally = serde_json::from_str(&serde_json::to_string(&whole).unwrap()).unwrap();
        assert_eq!(back, whole);
    }
    use super::*;

    #[test]
    fn ranking_and_loss() {
        assert_eq!(top_k(&[0.1, 3.0, -1.0, 3.0, 2.0, 0.0], 5), vec![1, 3, 4, 0, 5]);
        assert_eq!(top_k(&[0.1, 3.0, -1.0, 3.0, 2.0], 3), vec![1, 3, 4]);
        assert_eq!(top_k(&[1.0], 5), vec![0]);
        let l = cross_entropy(&[0.0, 0.0], 1);
        assert!((l - std::f64::consts::LN_2).abs() < 1e-12);
        assert!(cross_entropy(&[1000.0, -1000.0], 0).abs() < 1e-12);
    }

    #[test]
    fn failures_count_as_misses_and_totals_merge_exactly() {
        let mut a = Tally::default();
        a.add(&score(0, 1, &[0.0, 2.0, 1.0]), "a", Some(&[1]));
        a.add(&score(1, 2, &[0.0, 2.0, 1.0]), "b", Some(&[]));
        let failed = ImageResult { i: 2, label: 0, top5: vec![], loss: None, error: Some("truncated".into()), stamp: None };
        a.add(&failed, "c", Some(&[0]));
        assert_eq!((a.images, a.correct1, a.correct5, a.failed), (3, 1, 2, 1));
        assert!((a.top1() - 100.0 / 3.0).abs() < 1e-12);
        assert_eq!((a.real_images, a.real_correct1), (2, 1));
        assert_eq!(a.failures, vec![Failure { file: "c".into(), reason: "truncated".into() }]);
        let mut m = Tally::default();
        m.merge(&a);
        m.merge(&a);
        assert_eq!((m.images, m.correct1, m.per_class[&1]), (6, 2, (2, 2)));
    }
}
