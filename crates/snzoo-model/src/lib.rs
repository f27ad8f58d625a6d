//! Switchable Normalization networks on candle.
//!
//! * [`SwitchNorm2d`]: the SN layer (Luo et al., "Differentiable Learning-to-Normalize via
//!   Switchable Normalization", ICLR 2019) in inference mode, with the released parameter names.
//! * [`ResNetSn`]: ResNet v1 and pre-activation v2 with SN, depths 18–152, built from a
//!   [`candle_nn::VarBuilder`] whose paths are the released state-dict keys; also torchvision's
//!   BatchNorm ResNets (the release's baselines), with torchvision's key names.
//! * [`ResNetSnConfig`]: the architecture, its expected state-dict keys and shapes, and inference
//!   of the architecture from a state dict (no candle needed for that part).
//!
//! * [`train`]: trainable networks, the SN running-statistics update, `torch.optim.SGD`.
//! * CPU inference kernels used by [`ResNetSn::forward`] for f32: [`conv`] (im2col + GEMM, or the
//!   bf16 GEMM of [`gemm_bf16`] with [`ResNetSn::with_bf16_convolutions`]), [`fused`] (SN with the
//!   following ReLU), [`elementwise`] (residual add, max-pool), scheduled by [`parallel`] (one
//!   image per thread). With the `cuda` feature, [`fused`] also runs on CUDA.
//!
//! This crate knows nothing of files or downloads: give it a `VarBuilder` or tensors.

pub mod config;
pub mod conv;
pub mod elementwise;
pub mod fused;
pub mod gemm_bf16;
pub mod parallel;
pub mod resnet;
pub mod switch_norm;
pub mod train;

pub use config::{is_training_only, ArchError, BlockKind, NormKind, ResNetSnConfig, Version, STANDARD_DEPTHS};
pub use resnet::ResNetSn;
pub use switch_norm::{BatchStats, SwitchNorm2d, SN_EPS};
