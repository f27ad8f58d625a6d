//! ImageNet-style validation with the protocol of the SN release (short side 256, center crop 224,
//! single crop), reproducing the original PyTorch evaluation's numbers.
//!
//! * [`dataset`]: ImageFolder, list-file and flat-ILSVRC2012 layouts, canonical order, `--limit`
//!   and `--shard` selection.
//! * [`runner`]: the bounded parallel decode → preprocess → forward pipeline around any
//!   [`Classifier`](runner::Classifier).
//! * [`metrics`]: top-1/top-5 as `torch.topk` ranks, cross-entropy, per-class, ReaL; failures count
//!   as misses.
//! * [`journal`]: the crash-safe resume journal.
//! * [`report`]: the JSON report, shard merging, timm-style CSV rows.
//!
//! The evaluator knows nothing of downloads or of the model's implementation.

pub mod dataset;
pub mod journal;
pub mod leaderboard;
pub mod metrics;
pub mod report;
pub mod runner;

pub use dataset::{Dataset, Layout, Shard};
pub use metrics::{ImageResult, Tally};
pub use report::Report;
pub use runner::{Classifier, RunOptions};
