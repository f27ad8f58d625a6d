//! BatchNorm in inference: the running statistics folded into a per-channel scale and shift.

use std::collections::BTreeMap;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use snzoo_kernels::{ChannelAffine, ConvPrecision, ConvWeights, Implementation, PoolPadding};

use super::{check_variance, values, Norm2d, NormSpec, NORM_EPS};

/// A 2-d BatchNorm layer (`weight`, `bias`, `running_mean`, `running_var`, each (C)) in
/// inference: `y = (x − running_mean) / √(running_var + 1e-5) · weight + bias`.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
}

impl BatchNorm2d {
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let running_var = vb.get(channels, "running_var")?;
        check_variance(&running_var, &vb.prefix())?;
        Ok(Self {
            weight: vb.get(channels, "weight")?,
            bias: vb.get(channels, "bias")?,
            running_mean: vb.get(channels, "running_mean")?,
            running_var,
        })
    }

    /// A BatchNorm layer at `prefix`: it has running statistics of rank 1.
    pub fn detect(shapes: &BTreeMap<String, Vec<usize>>, prefix: &str) -> Option<NormSpec> {
        matches!(shapes.get(&format!("{prefix}.running_mean")), Some(s) if s.len() == 1).then_some(NormSpec::Batch)
    }

    fn op(&self, relu: bool) -> Result<ChannelAffine> {
        Ok(ChannelAffine::batch_norm(
            &values(&self.weight)?,
            &values(&self.bias)?,
            &values(&self.running_mean)?,
            &values(&self.running_var)?,
            NORM_EPS,
            relu,
        ))
    }
}

impl Norm2d for BatchNorm2d {
    fn forward(&self, x: &Tensor, relu: bool, imp: Implementation) -> Result<Tensor> {
        snzoo_kernels::channel_affine(x, &self.op(relu)?, imp)
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
