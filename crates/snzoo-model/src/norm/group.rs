//! GroupNorm (Wu & He, ECCV 2018), as PyTorch's `nn.GroupNorm` and timm's `GroupNorm` compute it.

use std::collections::BTreeMap;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use snzoo_kernels::{ConvPrecision, ConvWeights, GroupNormInference, Implementation, PoolPadding};

use super::{values, Norm2d, NormSpec, DEFAULT_GROUPS, NORM_EPS};

/// A 2-d GroupNorm layer: `weight`, `bias` (C). For each sample and each of `groups` groups of
/// C / groups channels, the mean and the biased variance over the group's channels and H×W;
/// `y = (x − mean) / √(var + 1e-5) · weight + bias`. No running statistics: the same in
/// training and inference.
#[derive(Debug, Clone)]
pub struct GroupNorm2d {
    groups: usize,
    weight: Tensor,
    bias: Tensor,
}

impl GroupNorm2d {
    pub fn new(channels: usize, groups: usize, vb: VarBuilder) -> Result<Self> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            candle_core::bail!("{}: GroupNorm of {groups} groups cannot normalize {channels} channels", vb.prefix());
        }
        Ok(Self { groups, weight: vb.get(channels, "weight")?, bias: vb.get(channels, "bias")? })
    }

    /// A GroupNorm layer at `prefix`: an affine (C) weight and no running statistics (the
    /// group count is not in the weights: the default, or the metadata's).
    pub fn detect(shapes: &BTreeMap<String, Vec<usize>>, prefix: &str) -> Option<NormSpec> {
        let affine = matches!(shapes.get(&format!("{prefix}.weight")), Some(s) if s.len() == 1);
        (affine && !shapes.contains_key(&format!("{prefix}.running_mean"))).then_some(NormSpec::Group { groups: DEFAULT_GROUPS })
    }

    fn op(&self, relu: bool) -> Result<GroupNormInference> {
        Ok(GroupNormInference { groups: self.groups, weight: values(&self.weight)?, bias: values(&self.bias)?, eps: NORM_EPS, relu })
    }
}

impl Norm2d for GroupNorm2d {
    fn forward(&self, x: &Tensor, relu: bool, imp: Implementation) -> Result<Tensor> {
        snzoo_kernels::group_norm(x, &self.op(relu)?, imp)
    }
    fn forward_add(&self, x: &Tensor, residual: &Tensor, relu: bool, imp: Implementation) -> Result<Tensor> {
        snzoo_kernels::norm_add(x, residual, &self.op(relu)?, imp)
    }
    fn forward_conv(&self, x: &Tensor, relu: bool, conv: &ConvWeights, precision: ConvPrecision, imp: Implementation) -> Result<Tensor> {
        super::norm_then_conv(self, &self.op(relu)?, x, relu, conv, (precision, imp))
    }
    fn forward_max_pool(&self, x: &Tensor, relu: bool, padding: PoolPadding, imp: Implementation) -> Result<Tensor> {
        super::norm_then_max_pool(self, &self.op(relu)?, x, relu, padding, imp)
    }
}
