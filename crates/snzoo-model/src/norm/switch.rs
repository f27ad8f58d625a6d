//! Switchable Normalization (Luo et al., ICLR 2019): inference and training.

use candle_core::{DType, Result, Tensor, D};
use candle_nn::VarBuilder;
use snzoo_kernels::{ConvPrecision, ConvWeights, Implementation, PoolPadding, SwitchNormInference};

use super::{check_variance, BatchStats, Norm2d};

/// The `eps` of the released models.
pub const SN_EPS: f64 = 1e-5;

/// A 2-d Switchable Normalization layer.
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
    /// The state-dict path of the layer (e.g. `layer1.0.sn1`).
    name: String,
    weight: Tensor,
    bias: Tensor,
    /// The raw mixing logits, (3) or (2): trainable.
    mean_weight: Tensor,
    var_weight: Tensor,
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
        let mean_weight = vb.get(k, "mean_weight")?;
        let var_weight = vb.get(k, "var_weight")?;
        let running = if using_bn {
            let var = vb.get((1, channels, 1), "running_var")?;
            check_variance(&var, &vb.prefix())?;
            Some((vb.get((1, channels, 1), "running_mean")?, var))
        } else {
            None
        };
        Ok(Self { name: vb.prefix(), weight, bias, mean_weight, var_weight, running, channels })
    }

    /// An SN layer at `prefix`: mixing weights of 3 (IN, LN, BN) or 2 (IN, LN) entries.
    pub fn detect(shapes: &std::collections::BTreeMap<String, Vec<usize>>, prefix: &str) -> Option<super::NormSpec> {
        match shapes.get(&format!("{prefix}.mean_weight"))?.as_slice() {
            [3] => Some(super::NormSpec::Switchable { using_bn: true }),
            [2] => Some(super::NormSpec::Switchable { using_bn: false }),
            _ => None,
        }
    }

    fn mix(t: &Tensor) -> Result<Vec<f64>> {
        Ok(softmax(&t.to_dtype(DType::F32)?.to_vec1::<f32>()?))
    }

    /// The learned importance of (IN, LN[, BN]) for the mean: softmax(`mean_weight`).
    pub fn mean_importance(&self) -> Result<Vec<f64>> {
        Self::mix(&self.mean_weight)
    }

    /// The learned importance of (IN, LN[, BN]) for the variance: softmax(`var_weight`).
    pub fn var_importance(&self) -> Result<Vec<f64>> {
        Self::mix(&self.var_weight)
    }

    /// The layer's state-dict path.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Instance and layer moments of an input viewed as (N,C,H·W): `mean_in`, `var_in` (unbiased),
    /// `mean_ln`, `var_ln`, and `temp` = `var_in` + `mean_in`².
    fn moments(x: &Tensor) -> Result<[Tensor; 5]> {
        let (_, _, hw) = x.dims3()?;
        let mean_in = x.mean_keepdim(D::Minus1)?;
        let var_in = (x.broadcast_sub(&mean_in)?.sqr()?.sum_keepdim(D::Minus1)? / (hw - 1) as f64)?;
        let mean_ln = mean_in.mean_keepdim(1)?;
        let temp = (&var_in + mean_in.sqr()?)?;
        let var_ln = temp.mean_keepdim(1)?.broadcast_sub(&mean_ln.sqr()?)?;
        Ok([mean_in, var_in, mean_ln, var_ln, temp])
    }

    fn check_spatial(x: &Tensor) -> Result<(usize, usize, usize, usize)> {
        let (n, c, h, w) = x.dims4()?;
        if h * w < 2 {
            candle_core::bail!(
                "SwitchNorm2d needs at least 2 spatial positions for the unbiased instance variance, got {h}x{w} \
                 (the input image is too small for this network)"
            );
        }
        Ok((n, c, h, w))
    }

    /// The fused kernel's parameters, read from the current weights.
    pub fn inference_op(&self, relu: bool) -> Result<SwitchNormInference> {
        let f = |t: &Tensor| -> Result<Vec<f32>> { t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>() };
        let (mm, vm) = (self.mean_importance()?, self.var_importance()?);
        let three = |v: &[f64]| [v[0], v[1], v.get(2).copied().unwrap_or(0.0)];
        Ok(SwitchNormInference {
            mean_mix: three(&mm),
            var_mix: three(&vm),
            running_mean: self.running.as_ref().map(|(m, _)| f(m)).transpose()?,
            running_var: self.running.as_ref().map(|(_, v)| f(v)).transpose()?,
            weight: f(&self.weight)?,
            bias: f(&self.bias)?,
            eps: SN_EPS,
            relu,
        })
    }

    /// Inference (BN = the running buffers), then a ReLU when `relu`: the fused kernel for f32
    /// on the CPU (and on CUDA with the `cuda` feature), the plain operations elsewhere.
    pub fn forward(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        snzoo_kernels::switch_norm(x, &self.inference_op(relu)?, Implementation::Fast)
    }

    /// Inference with plain candle tensor operations (the fused kernel's oracle; any device/dtype).
    pub fn forward_reference(&self, x: &Tensor) -> Result<Tensor> {
        snzoo_kernels::switch_norm(x, &self.inference_op(false)?, Implementation::Plain)
    }

    /// Training mode: BN statistics from the batch (`mean_bn` = mean over N of `mean_in`,
    /// `var_bn` = mean over N of `temp` − `mean_bn`²), the mixing softmaxes inside the graph, so
    /// that gradients reach every parameter, `mean_weight`/`var_weight` included. Returns the
    /// output and, with BN, the detached batch statistics for the running-statistics update.
    pub fn forward_train(&self, x: &Tensor) -> Result<(Tensor, Option<BatchStats>)> {
        let (n, c, h, w) = Self::check_spatial(x)?;
        // The statistics and their gradients are sums over many elements: computed in f64, so that
        // the summation order cannot matter at f32 precision.
        let dtype = x.dtype();
        let xr = x.reshape((n, c, h * w))?.to_dtype(DType::F64)?;
        let [mean_in, var_in, mean_ln, var_ln, temp] = Self::moments(&xr)?;
        let mm = candle_nn::ops::softmax(&self.mean_weight.to_dtype(DType::F64)?, 0)?;
        let vm = candle_nn::ops::softmax(&self.var_weight.to_dtype(DType::F64)?, 0)?;
        let at = |t: &Tensor, i: usize| t.narrow(0, i, 1)?.reshape((1, 1, 1));
        let mut mean = mean_in.broadcast_mul(&at(&mm, 0)?)?.broadcast_add(&mean_ln.broadcast_mul(&at(&mm, 1)?)?)?;
        let mut var = var_in.broadcast_mul(&at(&vm, 0)?)?.broadcast_add(&var_ln.broadcast_mul(&at(&vm, 1)?)?)?;
        let mut stats = None;
        if self.running.is_some() {
            let mean_bn = mean_in.mean_keepdim(0)?;
            let var_bn = temp.mean_keepdim(0)?.sub(&mean_bn.sqr()?)?;
            mean = mean.broadcast_add(&mean_bn.broadcast_mul(&at(&mm, 2)?)?)?;
            var = var.broadcast_add(&var_bn.broadcast_mul(&at(&vm, 2)?)?)?;
            stats = Some(BatchStats {
                layer: self.name.clone(),
                mean: mean_bn.detach().to_dtype(dtype)?,
                var: var_bn.detach().to_dtype(dtype)?,
            });
        }
        let inv_std = (var + SN_EPS)?.sqrt()?.recip()?;
        let y = xr.broadcast_sub(&mean)?.broadcast_mul(&inv_std)?.to_dtype(dtype)?;
        Ok((y.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)?.reshape((n, c, h, w))?, stats))
    }
}

impl Norm2d for SwitchNorm2d {
    fn forward(&self, x: &Tensor, relu: bool, imp: Implementation) -> Result<Tensor> {
        snzoo_kernels::switch_norm(x, &self.inference_op(relu)?, imp)
    }
    fn forward_add(&self, x: &Tensor, residual: &Tensor, relu: bool, imp: Implementation) -> Result<Tensor> {
        snzoo_kernels::norm_add(x, residual, &self.inference_op(relu)?, imp)
    }
    fn forward_conv(&self, x: &Tensor, relu: bool, conv: &ConvWeights, precision: ConvPrecision, imp: Implementation) -> Result<Tensor> {
        super::norm_then_conv(self, &self.inference_op(relu)?, x, relu, conv, (precision, imp))
    }
    fn forward_max_pool(&self, x: &Tensor, relu: bool, padding: PoolPadding, imp: Implementation) -> Result<Tensor> {
        super::norm_then_max_pool(self, &self.inference_op(relu)?, x, relu, padding, imp)
    }
    fn forward_train(&self, x: &Tensor) -> Result<(Tensor, Option<BatchStats>)> {
        SwitchNorm2d::forward_train(self, x)
    }
    fn as_switch(&self) -> Option<&SwitchNorm2d> {
        Some(self)
    }
}
