//! Switchable Normalization networks (and their BatchNorm and GroupNorm relatives) on candle.
//!
//! * [`norm`]: the normalization layers behind one trait, [`Norm2d`]: [`SwitchNorm2d`] (Luo et
//!   al., "Differentiable Learning-to-Normalize via Switchable Normalization", ICLR 2019; with
//!   the released parameter names, inference and training), [`BatchNorm2d`], [`GroupNorm2d`];
//!   [`NormSpec`] is their registry.
//! * [`ResNet`]: ResNet v1 and pre-activation v2, depths 18–152, built from a
//!   [`candle_nn::VarBuilder`] whose paths are the state-dict keys: the SN release's networks and
//!   torchvision's / timm's v1 layout.
//! * [`ResNetConfig`]: the architecture; its keys and shapes (read off the network), inference of
//!   the architecture from a state dict, metadata.
//! * [`train`]: trainable networks, the running-statistics update, `torch.optim.SGD`.
//!
//! The operations run on [`snzoo_kernels`], which picks snzoo's CPU (and CUDA) kernels or plain
//! candle operations. This crate knows nothing of files or downloads: give it a `VarBuilder` or
//! tensors.

pub mod config;
pub mod norm;
mod record;
pub mod resnet;
pub mod train;

pub use config::{is_training_only, ArchError, BlockKind, ResNetConfig, Style, Version, STANDARD_DEPTHS};
pub use norm::{is_buffer, BatchNorm2d, BatchStats, GroupNorm2d, Norm2d, NormSpec, SwitchNorm2d, SN_EPS};
pub use resnet::ResNet;
pub use snzoo_kernels;

/// A candle error as one line of text: without the backtrace candle attaches when
/// `RUST_BACKTRACE` is set, contexts joined with `: `.
pub fn error_message(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => error_message(inner),
        candle_core::Error::Context { inner, context } => format!("{context}: {}", error_message(inner)),
        candle_core::Error::WithPath { inner, path } => format!("{}: {}", path.display(), error_message(inner)),
        e => e.to_string(),
    }
}
