//! Normalization layers, behind one trait, and their registry.
//!
//! A normalization is one file here implementing [`Norm2d`], plus its line in each match of
//! [`NormSpec`] below (the registry: how it is built, recognised in a state dict, named and
//! recorded in metadata). Nothing else in snzoo matches on the kind of normalization.
//!
//! * [`SwitchNorm2d`] (`switch.rs`): Switchable Normalization, the SN release's layer, with
//!   training mode.
//! * [`BatchNorm2d`] (`batch.rs`): BatchNorm in inference (the release's baselines).
//! * [`GroupNorm2d`] (`group.rs`): GroupNorm (timm's GN ResNets).

mod batch;
mod group;
mod switch;

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;
use snzoo_kernels::{ConvPrecision, ConvWeights, Implementation, NormOp, PoolPadding};

pub use batch::BatchNorm2d;
pub use group::GroupNorm2d;
pub use switch::{SwitchNorm2d, SN_EPS};

/// The batch statistics of one normalization layer in a training forward, for the
/// running-statistics update.
#[derive(Debug, Clone)]
pub struct BatchStats {
    /// The layer's state-dict path; its buffers are `{layer}.running_mean` / `.running_var`.
    pub layer: String,
    /// (1,C,1), detached: the batch mean and variance.
    pub mean: Tensor,
    pub var: Tensor,
}

/// A 2-d normalization layer of a network.
pub trait Norm2d: std::fmt::Debug + Send + Sync {
    /// Inference, then a ReLU when `relu` (fused where the kernel can).
    fn forward(&self, x: &Tensor, relu: bool, imp: Implementation) -> Result<Tensor>;

    /// Inference, then `+ residual`, then a ReLU when `relu`: the end of a v1 residual block
    /// (one fused pass where the kernel can; the same numbers as [`Norm2d::forward`] without
    /// ReLU followed by the residual addition).
    fn forward_add(&self, x: &Tensor, residual: &Tensor, relu: bool, imp: Implementation) -> Result<Tensor> {
        let y = self.forward(x, false, imp)?;
        snzoo_kernels::residual_add(&y, residual, relu, imp)
    }

    /// Inference (then a ReLU when `relu`), then the convolution `conv`: one fused operation
    /// where the kernels have one ([`snzoo_kernels::norm_conv`]), else the two.
    fn forward_conv(&self, x: &Tensor, relu: bool, conv: &ConvWeights, precision: ConvPrecision, imp: Implementation) -> Result<Tensor> {
        snzoo_kernels::conv2d(&self.forward(x, relu, imp)?, conv, precision, imp)
    }

    /// Inference (then a ReLU when `relu`), then the stem's 3×3/2 max-pool: one pass where the
    /// kernels have one ([`snzoo_kernels::norm_max_pool_3x3_s2`]), else the two.
    fn forward_max_pool(&self, x: &Tensor, relu: bool, padding: PoolPadding, imp: Implementation) -> Result<Tensor> {
        snzoo_kernels::max_pool_3x3_s2(&self.forward(x, relu, imp)?, padding, imp)
    }

    /// Training mode: the output and, where the layer keeps running statistics, the batch
    /// statistics for their update.
    fn forward_train(&self, _x: &Tensor) -> Result<(Tensor, Option<BatchStats>)> {
        candle_core::bail!("training is implemented for Switchable Normalization networks only")
    }

    /// The layer as Switchable Normalization (for `snzoo inspect`), if it is one.
    fn as_switch(&self) -> Option<&SwitchNorm2d> {
        None
    }
}

/// [`Norm2d::forward_conv`] of a layer whose inference operation is `op`: fused where the
/// kernels fuse it, else the layer's normalization and then the convolution.
fn norm_then_conv<K: NormOp>(
    layer: &dyn Norm2d,
    op: &K,
    x: &Tensor,
    relu: bool,
    conv: &ConvWeights,
    (precision, imp): (ConvPrecision, Implementation),
) -> Result<Tensor> {
    match snzoo_kernels::norm_conv(x, op, conv, precision, imp)? {
        Some(y) => Ok(y),
        None => snzoo_kernels::conv2d(&layer.forward(x, relu, imp)?, conv, precision, imp),
    }
}

/// [`Norm2d::forward_max_pool`] of a layer whose inference operation is `op`: fused where the
/// kernels fuse it, else the layer's normalization and then the pool.
fn norm_then_max_pool<K: NormOp>(
    layer: &dyn Norm2d,
    op: &K,
    x: &Tensor,
    relu: bool,
    padding: PoolPadding,
    imp: Implementation,
) -> Result<Tensor> {
    match snzoo_kernels::norm_max_pool_3x3_s2(x, op, padding, imp)? {
        Some(y) => Ok(y),
        None => snzoo_kernels::max_pool_3x3_s2(&layer.forward(x, relu, imp)?, padding, imp),
    }
}

/// Which normalization a network uses, with its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum NormSpec {
    /// Switchable Normalization; `using_bn` false for models trained with IN and LN only.
    Switchable { using_bn: bool },
    /// BatchNorm (inference: the running statistics).
    Batch,
    /// GroupNorm with `groups` groups.
    Group { groups: usize },
}

/// The `eps` of every normalization here (the SN release's, PyTorch's and timm's default).
pub const NORM_EPS: f64 = 1e-5;

/// The group count of GroupNorm ResNets (timm's `resnet50_gn`, Wu & He 2018).
pub const DEFAULT_GROUPS: usize = 32;

impl NormSpec {
    /// Builds the layer for `channels` channels from the weights under `vb`.
    pub fn build(&self, channels: usize, vb: VarBuilder) -> Result<Box<dyn Norm2d>> {
        Ok(match *self {
            NormSpec::Switchable { using_bn } => Box::new(SwitchNorm2d::new(channels, using_bn, vb)?),
            NormSpec::Batch => Box::new(BatchNorm2d::new(channels, vb)?),
            NormSpec::Group { groups } => Box::new(GroupNorm2d::new(channels, groups, vb)?),
        })
    }

    /// Recognises the normalization of the layer at `prefix` in a state dict's shapes.
    pub fn detect(shapes: &BTreeMap<String, Vec<usize>>, prefix: &str) -> Option<NormSpec> {
        SwitchNorm2d::detect(shapes, prefix).or_else(|| BatchNorm2d::detect(shapes, prefix)).or_else(|| GroupNorm2d::detect(shapes, prefix))
    }

    /// The name in metadata and configs: `switchable`, `batch`, `group`.
    pub fn name(&self) -> &'static str {
        match self {
            NormSpec::Switchable { .. } => "switchable",
            NormSpec::Batch => "batch",
            NormSpec::Group { .. } => "group",
        }
    }

    /// The suffix of architecture names: `sn`, `bn`, `gn`.
    pub fn short_name(&self) -> &'static str {
        match self {
            NormSpec::Switchable { .. } => "sn",
            NormSpec::Batch => "bn",
            NormSpec::Group { .. } => "gn",
        }
    }

    /// How the layers are named in state dicts: `sn1`, `layer1.0.sn2` in the SN release's
    /// networks; `bn1`, `layer1.0.bn2` in torchvision's and timm's.
    pub fn key_prefix(&self) -> &'static str {
        match self {
            NormSpec::Switchable { .. } => "sn",
            NormSpec::Batch | NormSpec::Group { .. } => "bn",
        }
    }

    /// Whether the layer uses batch statistics (the SN release's `using_bn`; true for BN).
    pub fn using_bn(&self) -> bool {
        match *self {
            NormSpec::Switchable { using_bn } => using_bn,
            NormSpec::Batch => true,
            NormSpec::Group { .. } => false,
        }
    }

    /// Whether snzoo can train it (`snzoo finetune`).
    pub fn trainable(&self) -> bool {
        matches!(self, NormSpec::Switchable { .. })
    }

    /// Whether `channels` can be normalized (GroupNorm needs a multiple of its groups).
    pub fn accepts(&self, channels: usize) -> bool {
        match *self {
            NormSpec::Group { groups } => groups > 0 && channels.is_multiple_of(groups),
            _ => true,
        }
    }

    /// The metadata entries describing it (`norm`, and `using_bn` / `groups`).
    pub fn to_metadata(&self, meta: &mut HashMap<String, String>) {
        meta.insert("norm".into(), self.name().into());
        meta.insert("using_bn".into(), self.using_bn().to_string());
        if let NormSpec::Group { groups } = self {
            meta.insert("groups".into(), groups.to_string());
        }
    }

    /// Reads the entries written by [`to_metadata`](Self::to_metadata) (no `norm` entry means
    /// the SN release's layer, as files converted before other norms existed).
    pub fn from_metadata(meta: &HashMap<String, String>) -> std::result::Result<NormSpec, String> {
        let using_bn = match meta.get("using_bn").map(String::as_str) {
            Some("true") => true,
            Some("false") => false,
            Some(v) => return Err(format!("`using_bn` is `{v}`")),
            None => return Err("no `using_bn` entry".into()),
        };
        match meta.get("norm").map(String::as_str) {
            None | Some("switchable") => Ok(NormSpec::Switchable { using_bn }),
            Some("batch") => Ok(NormSpec::Batch),
            Some("group") => {
                let groups = match meta.get("groups") {
                    Some(g) => g.parse().map_err(|_| format!("`groups` is `{g}`"))?,
                    None => DEFAULT_GROUPS,
                };
                if groups == 0 || groups > 1 << 16 {
                    return Err(format!("{groups} groups"));
                }
                Ok(NormSpec::Group { groups })
            }
            Some(n) => Err(format!("unknown norm `{n}`")),
        }
    }
}

/// State-dict entries that are buffers, not parameters (running statistics, counters).
pub fn is_buffer(key: &str) -> bool {
    key.ends_with(".running_mean") || key.ends_with(".running_var") || key.ends_with(".num_batches_tracked")
}

/// Refuses a running variance with a negative entry: the layer would compute NaN.
pub(crate) fn check_variance(var: &Tensor, layer: &str) -> Result<()> {
    let v = var.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| **x < 0.0) {
        candle_core::bail!("`{layer}.running_var` holds a negative variance ({x}, channel {i}); a model with it computes NaN, refusing it");
    }
    Ok(())
}

/// A (C) or (1, C, 1, 1)-shaped parameter as f32 values.
pub(crate) fn values(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}
