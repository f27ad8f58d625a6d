//! Switchable Normalization (Luo et al., ICLR 2019), inference mode.

use candle_core::{DType, Result, Tensor, D};
use candle_nn::VarBuilder;

/// The `eps` of the released models.
pub const SN_EPS: f64 = 1e-5;

/// A 2-d Switchable Normalization layer in inference mode.
///
/// Parameters and buffers carry the released names and shapes: `weight`, `bias` (1,C,1,1);
/// `mean_weight`, `var_weight` (3), or (2) without BN; `running_mean`, `running_var` (1,C,1) with BN.
///
/// For an input of shape (N,C,H,W):
/// * instance statistics per (n,c) over H×W: `mean_in` and the **unbiased** `var_in` (÷ H·W−1);
/// * layer statistics from the instance moments: `mean_ln` = mean over C of `mean_in`,
///   `var_ln` = mean over C of (`var_in` + `mean_in`²) − `mean_ln`²;
/// * batch statistics = the running buffers;
/// * mean = Σ softmax(`mean_weight`)ᵢ · meanᵢ over (IN, LN, BN), var likewise with `var_weight`;
/// * y = (x − mean) / √(var + 1e-5) · weight + bias.
///
/// An input with H·W = 1 has no unbiased variance (the original divides by zero and returns NaN);
/// it is refused with an error instead.
#[derive(Debug, Clone)]
pub struct SwitchNorm2d {
    weight: Tensor,
    bias: Tensor,
    /// softmax(`mean_weight`) and softmax(`var_weight`), computed once at load.
    mean_mix: Vec<f64>,
    var_mix: Vec<f64>,
    /// (1,C,1) running statistics when the layer uses BN.
    running: Option<(Tensor, Tensor)>,
    channels: usize,
}

/// Softmax of a short vector, computed as torch does for f32 (max-subtracted).
fn softmax(v: &[f32]) -> Vec<f64> {
    let max = v.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = v.iter().map(|x| (x - max).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|x| (x / s) as f64).collect()
}

impl SwitchNorm2d {
    /// Loads the layer under `vb` (the prefix is the state-dict path, e.g. `layer1.0.sn1`).
    pub fn new(channels: usize, using_bn: bool, vb: VarBuilder) -> Result<Self> {
        let k = if using_bn { 3 } else { 2 };
        let weight = vb.get((1, channels, 1, 1), "weight")?.reshape((1, channels, 1))?;
        let bias = vb.get((1, channels, 1, 1), "bias")?.reshape((1, channels, 1))?;
        let mean_weight = vb.get(k, "mean_weight")?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let var_weight = vb.get(k, "var_weight")?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let running = if using_bn {
            Some((vb.get((1, channels, 1), "running_mean")?, vb.get((1, channels, 1), "running_var")?))
        } else {
            None
        };
        Ok(Self { weight, bias, mean_mix: softmax(&mean_weight), var_mix: softmax(&var_weight), running, channels })
    }

    /// The learned importance of (IN, LN[, BN]) for the mean: softmax(`mean_weight`).
    pub fn mean_importance(&self) -> &[f64] {
        &self.mean_mix
    }

    /// The learned importance of (IN, LN[, BN]) for the variance: softmax(`var_weight`).
    pub fn var_importance(&self) -> &[f64] {
        &self.var_mix
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The mixed per-(n,c) mean and variance, each of shape (N,C,1), for an input viewed as (N,C,H·W).
    fn statistics(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (_, _, hw) = x.dims3()?;
        let mean_in = x.mean_keepdim(D::Minus1)?;
        let var_in = (x.broadcast_sub(&mean_in)?.sqr()?.sum_keepdim(D::Minus1)? / (hw - 1) as f64)?;
        let mean_ln = mean_in.mean_keepdim(1)?;
        let temp = (&var_in + mean_in.sqr()?)?;
        let var_ln = temp.mean_keepdim(1)?.broadcast_sub(&mean_ln.sqr()?)?;
        let mut mean = (mean_in * self.mean_mix[0])?.broadcast_add(&(mean_ln * self.mean_mix[1])?)?;
        let mut var = (var_in * self.var_mix[0])?.broadcast_add(&(var_ln * self.var_mix[1])?)?;
        if let Some((running_mean, running_var)) = &self.running {
            mean = mean.broadcast_add(&(running_mean * self.mean_mix[2])?)?;
            var = var.broadcast_add(&(running_var * self.var_mix[2])?)?;
        }
        Ok((mean, var))
    }

    /// Normalizes `x` of shape (N,C,H,W) with plain candle tensor operations.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        if h * w < 2 {
            candle_core::bail!(
                "SwitchNorm2d needs at least 2 spatial positions for the unbiased instance variance, got {h}x{w} \
                 (the input image is too small for this network)"
            );
        }
        let xr = x.reshape((n, c, h * w))?;
        let (mean, var) = self.statistics(&xr)?;
        let inv_std = (var + SN_EPS)?.sqrt()?.recip()?;
        let y = xr.broadcast_sub(&mean)?.broadcast_mul(&inv_std)?.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)?;
        y.reshape((n, c, h, w))
    }
}

impl candle_core::Module for SwitchNorm2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        SwitchNorm2d::forward(self, x)
    }
}
