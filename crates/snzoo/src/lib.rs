//! snzoo as a library: the Switchable Normalization model zoo and evaluator, without Python.
//!
//! * [`Model`]: open a model by zoo name (downloaded, verified and converted on first use) or
//!   from a weights file, and classify images with the exact preprocessing of its evaluation.
//! * [`convert`]: checkpoints (the release's legacy `torch.save` files and others) to
//!   safetensors, with the architecture recorded and checked.
//! * [`evaluate()`]: ImageNet-style validation with a resumable journal and a progress callback.
//! * [`finetune()`]: training-mode SN and SGD, as the original PyTorch code.
//! * [`zoo`]: names to verified, converted files; [`protocol`]: evaluation protocols from model
//!   cards; [`limits`]: counts checked against the machine; [`bundled`]: the embedded demo model.
//!
//! The component crates are re-exported: [`snzoo_model`] (SN and the networks on candle),
//! [`snzoo_convert`] (checkpoint readers), [`snzoo_preprocess`] (PIL-exact preprocessing),
//! [`snzoo_eval`] (datasets, metrics, reports), [`snzoo_zoo`] (cards, store, downloads),
//! [`snzoo_fs`] (safe file outputs).
//!
//! ```no_run
//! // Classify a photo with a released model (downloaded, verified and converted on first use).
//! let model = snzoo::Model::open("resnet50v1-sn-8x32-cosine")?;
//! for p in model.classify_file("cat.jpg".as_ref(), 5)? {
//!     println!("{:>6.2}%  {}", 100.0 * p.prob, p.label.unwrap_or("?"));
//! }
//! # Ok::<(), snzoo::Error>(())
//! ```
//!
//! Evaluating on a labelled set (here the bundled sample set, with a progress callback):
//!
//! ```
//! let model = snzoo::Model::bundled()?;
//! let (_, data) = snzoo::bundled::paths()?;
//! let dataset = snzoo::snzoo_eval::Dataset::discover(&data, None)?;
//! let mut batches = 0;
//! let report = snzoo::evaluate(&model, &dataset, &snzoo::EvalOptions::default(), &mut |event| {
//!     if let snzoo::EvalEvent::Progress { .. } = event {
//!         batches += 1;
//!     }
//! })?;
//! assert_eq!(report.images, 8);
//! assert!(batches >= 1);
//! # Ok::<(), snzoo::Error>(())
//! ```
//!
//! Errors are [`Error`]s that name the file they are about.

pub mod bundled;
pub mod convert;
mod error;
pub mod evaluate;
pub mod finetune;
pub mod hf;
pub mod limits;
pub mod model;
pub mod onnx;
pub mod protocol;
pub mod weights;
pub mod zoo;

pub use error::{Error, Result};
pub use evaluate::{evaluate, EvalEvent, EvalOptions};
pub use finetune::{finetune, FinetuneEvent, FinetuneOptions, Finetuned};
pub use model::{FeatureLayer, Model, ModelOptions, Precision, Prediction};

pub use {snzoo_convert, snzoo_eval, snzoo_fs, snzoo_imagenet, snzoo_model, snzoo_onnx, snzoo_preprocess, snzoo_zoo};
