//! snzoo as a library: the Switchable Normalization model zoo and evaluator, without Python.
//!
//! * [`Model`]: open a model by zoo name (downloaded, verified and converted on first use) or
//!   from a weights file, and classify images with the exact preprocessing of its evaluation.
//! * [`convert`]: checkpoints (the release's legacy `torch.save` files and others) to
//!   safetensors, with the architecture recorded and checked.
//! * [`evaluate()`]: ImageNet-style validation with a resumable journal and a progress callback.
//! * [`finetune()`]: training-mode SN and SGD, as the original PyTorch code.
//! * [`zoo`]: names to verified, converted files; [`limits`]: counts checked against the machine.
//!
//! The component crates are re-exported: [`snzoo_model`] (SN and the networks on candle),
//! [`snzoo_convert`] (checkpoint readers), [`snzoo_preprocess`] (PIL-exact preprocessing),
//! [`snzoo_eval`] (datasets, metrics, reports), [`snzoo_zoo`] (cards, store, downloads),
//! [`snzoo_fs`] (safe file outputs).
//!
//! ```no_run
//! // Classify a photo with a released model.
//! let model = snzoo::Model::open("resnet50v1-sn-8x32-cosine")?;
//! for p in model.classify_file("cat.jpg".as_ref(), 5)? {
//!     println!("{:>6.2}%  {}", 100.0 * p.prob, p.label.unwrap_or("?"));
//! }
//! # Ok::<(), snzoo::Error>(())
//! ```
//!
//! Errors are [`Error`]s that name the file they are about.

pub mod convert;
mod error;
pub mod evaluate;
pub mod finetune;
pub mod limits;
pub mod model;
pub mod protocol;
pub mod weights;
pub mod zoo;

pub use error::{Error, Result};
pub use evaluate::{evaluate, EvalEvent, EvalOptions};
pub use finetune::{finetune, FinetuneEvent, FinetuneOptions, Finetuned};
pub use model::{Model, ModelOptions, Precision, Prediction};

pub use {snzoo_convert, snzoo_eval, snzoo_fs, snzoo_imagenet, snzoo_model, snzoo_preprocess, snzoo_zoo};
