//! The compute kernels of snzoo's networks, apart from the models that use them.
//!
//! A model asks for an operation ([`conv2d`], [`switch_norm`], [`group_norm`],
//! [`channel_affine`], [`residual_add`], [`max_pool_3x3_s2`], [`linear`]) and this layer picks the
//! implementation: snzoo's own CPU kernels for f32 inference (im2col + GEMM convolutions,
//! [`winograd`] for the 3×3 ones of the first three stages on AVX2 and AVX-512, the
//! bf16 GEMMs on AMX tiles or AVX-512 BF16, fused normalization + ReLU, scheduled a few images per
//! thread by [`parallel`]), the CUDA SN kernel with the `cuda` feature, or plain candle operations
//! everywhere else (other devices and dtypes, and [`Implementation::Plain`], the oracle of the
//! tests and the baseline of `snzoo bench --reference-sn`).
//!
//! This crate knows nothing of models or files: it takes tensors and per-channel parameters.

pub mod conv;
pub mod elementwise;
pub mod gemm_amx;
pub mod gemm_bf16;
pub mod im2col_bf16;
pub mod linear;
pub mod norm;
pub mod parallel;
pub mod plane_stats;
pub mod winograd;

use candle_core::{DType, Result, Tensor};

pub use elementwise::PoolPadding;
pub use norm::{ChannelAffine, GroupNormInference, SwitchNormInference};

/// Which implementation an operation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Implementation {
    /// snzoo's kernels where they apply (f32 on the CPU, SN also on CUDA), candle elsewhere.
    #[default]
    Fast,
    /// Plain candle operations everywhere.
    Plain,
}

impl Implementation {
    /// Whether snzoo's CPU kernels run `x`.
    fn cpu_kernels(self, x: &Tensor) -> bool {
        self == Implementation::Fast && x.device().is_cpu() && x.dtype() == DType::F32
    }
}

/// The precision of a convolution's products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvPrecision {
    #[default]
    F32,
    /// Inputs and weights rounded to bf16, products summed in f32 (CPUs with AVX-512 BF16).
    Bf16,
}

/// A convolution's weights, with their bf16 packing and (3×3) Winograd transform made on first use.
#[derive(Debug)]
pub struct ConvWeights {
    /// [C_out, C_in, k, k]
    pub weight: Tensor,
    /// [C_out], if the convolution has a bias.
    pub bias: Option<Tensor>,
    pub stride: usize,
    pub padding: usize,
    packed_bf16: std::sync::OnceLock<conv::PackedWeights>,
    winograd: std::sync::OnceLock<std::sync::Arc<winograd::TransformedWeights>>,
}

impl Clone for ConvWeights {
    fn clone(&self) -> Self {
        Self::new(self.weight.clone(), self.bias.clone(), self.stride, self.padding)
    }
}

impl ConvWeights {
    pub fn new(weight: Tensor, bias: Option<Tensor>, stride: usize, padding: usize) -> Self {
        Self { weight, bias, stride, padding, packed_bf16: Default::default(), winograd: Default::default() }
    }

    /// The weights' bf16 copy, packed for this CPU's bf16 kernel (made on first use, or here).
    pub fn pack_bf16(&self) -> Result<conv::PackedWeights> {
        if let Some(p) = self.packed_bf16.get() {
            return Ok(p.clone());
        }
        let (c_out, c_in, k, _) = self.weight.dims4()?;
        let values = self.weight.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let packed = conv::PackedWeights::new(&values, c_out, c_in * k * k);
        Ok(self.packed_bf16.get_or_init(|| packed).clone())
    }

    /// The f32 Winograd operation of a 3×3 convolution with `tile`: F(4,3)'s weights transformed
    /// on first use and kept (a convolution's tile depends on its channels alone:
    /// [`winograd::tile_for`]), F(2,3)'s transformed by each call.
    fn winograd_op(&self, tile: winograd::Tile) -> Result<winograd::Conv2dWinograd> {
        if tile == winograd::Tile::F2 {
            return Ok(winograd::Conv2dWinograd {
                weights: std::sync::Arc::new(winograd::TransformedWeights::per_call(tile, &self.weight)?),
            });
        }
        // Only F(4,3)'s U is kept, and a convolution's tile never changes: the kept U is this tile's.
        if let Some(u) = self.winograd.get() {
            debug_assert_eq!(u.tile(), tile);
            return Ok(winograd::Conv2dWinograd { weights: u.clone() });
        }
        let (c_out, c_in, _, _) = self.weight.dims4()?;
        let values = self.weight.flatten_all()?.to_vec1::<f32>()?;
        let u = std::sync::Arc::new(winograd::TransformedWeights::new(winograd::Level::detect(), tile, &values, c_out, c_in));
        Ok(winograd::Conv2dWinograd { weights: self.winograd.get_or_init(|| u).clone() })
    }

    fn bf16_op(&self) -> Result<conv::Conv2dBf16> {
        let k = self.weight.dims4()?.2;
        Ok(conv::Conv2dBf16 { stride: self.stride, padding: self.padding, kernel: k, weights: self.pack_bf16()? })
    }
}

/// A square-kernel 2-d convolution (groups 1, dilation 1) of an (N, C, H, W) input.
pub fn conv2d(x: &Tensor, w: &ConvWeights, precision: ConvPrecision, imp: Implementation) -> Result<Tensor> {
    let y = if imp.cpu_kernels(x) && w.weight.dtype() == DType::F32 {
        let x = x.contiguous()?;
        match precision {
            // (With a bias the output is the sum below, a new tensor: nothing to file.)
            ConvPrecision::Bf16 if fuse_norm_enabled() && w.bias.is_none() => {
                let (y, moments) = w.bf16_op()?.forward_with_moments(&x)?;
                plane_stats::record(&y, moments);
                y
            }
            ConvPrecision::Bf16 => x.apply_op1_no_bwd(&w.bf16_op()?)?,
            ConvPrecision::F32 => {
                let ((_, _, h, wd), (c_out, c_in, k, _)) = (x.dims4()?, w.weight.dims4()?);
                if let Some(tile) = winograd::tile_for((k, w.stride, w.padding), (c_in, c_out), (h, wd)) {
                    x.apply_op1_no_bwd(&w.winograd_op(tile)?)?
                } else {
                    x.apply_op2_no_bwd(&w.weight.contiguous()?, &conv::Conv2dIm2col { stride: w.stride, padding: w.padding })?
                }
            }
        }
    } else {
        x.conv2d(&w.weight, w.padding, w.stride, 1, 1)?
    };
    match &w.bias {
        Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?),
        None => Ok(y),
    }
}

/// The moments of `x`'s planes where the kernel that made it filed them ([`plane_stats`]) and
/// the normalization `K` needs them; taken from the table either way (BatchNorm's affine needs
/// none, and its input's entry would only wait there to be pushed out).
fn known_moments<K: norm::PlaneAffine>(x: &Tensor) -> Option<Vec<norm::Moments>> {
    plane_stats::take(x).filter(|_| K::NEEDS_MOMENTS)
}

/// A normalization kernel `p` on the CPU, with the input's moments where they are known.
fn normalize_cpu<K: norm::PlaneAffine + std::fmt::Debug>(x: &Tensor, p: &K) -> Result<Tensor> {
    let x = x.contiguous()?;
    x.apply_op1_no_bwd(&norm::WithMoments { norm: p, moments: known_moments::<K>(&x) })
}

/// Switchable Normalization in inference (see [`SwitchNormInference`]).
pub fn switch_norm(x: &Tensor, p: &SwitchNormInference, imp: Implementation) -> Result<Tensor> {
    if imp.cpu_kernels(x) {
        return normalize_cpu(x, p);
    }
    if cfg!(feature = "cuda") && x.device().is_cuda() && x.dtype() == DType::F32 && imp == Implementation::Fast {
        return x.contiguous()?.apply_op1_no_bwd(p);
    }
    norm::switch_norm_plain(x, p)
}

/// GroupNorm in inference (see [`GroupNormInference`]).
pub fn group_norm(x: &Tensor, p: &GroupNormInference, imp: Implementation) -> Result<Tensor> {
    if imp.cpu_kernels(x) {
        return normalize_cpu(x, p);
    }
    norm::group_norm_plain(x, p)
}

/// A per-channel scale and shift (BatchNorm in inference), then ReLU if asked.
pub fn channel_affine(x: &Tensor, p: &ChannelAffine, imp: Implementation) -> Result<Tensor> {
    if imp.cpu_kernels(x) {
        return normalize_cpu(x, p);
    }
    norm::channel_affine_plain(x, p)
}

/// A normalization of `x`, then `+ residual`, then ReLU when the op's `relu`: the end of a v1
/// residual block in one pass where the kernels run (bit-identical to the normalization without
/// ReLU followed by [`residual_add`], which is the fallback).
pub fn norm_add<K>(x: &Tensor, residual: &Tensor, op: &K, imp: Implementation) -> Result<Tensor>
where
    K: NormOp,
{
    if imp.cpu_kernels(x) && residual.dtype() == x.dtype() && residual.device().same_device(x.device()) {
        let x = x.contiguous()?;
        let op = norm::AddResidual { norm: op, moments: known_moments::<K>(&x) };
        return x.apply_op2_no_bwd(&residual.contiguous()?, &op);
    }
    let y = op.plain_without_relu(x)?;
    residual_add(&y, residual, op.relu(), imp)
}

/// The normalization `op` of `x` (with its ReLU), then the convolution `w`, as one operation
/// where the kernels fuse them: on the CPU, convolutions without a bias in bf16, and the f32 ones
/// that take Winograd's path. The normalized activations then go straight into the
/// convolution's packed operand or transform, never stored (the same bits as the two
/// operations). `None` where they do not fuse: the caller runs the normalization and then
/// [`conv2d`].
pub fn norm_conv<K>(x: &Tensor, op: &K, w: &ConvWeights, precision: ConvPrecision, imp: Implementation) -> Result<Option<Tensor>>
where
    K: NormOp,
{
    if !(imp.cpu_kernels(x) && w.weight.dtype() == DType::F32 && w.bias.is_none() && fuse_norm_enabled()) {
        return Ok(None);
    }
    let x = x.contiguous()?;
    match precision {
        ConvPrecision::Bf16 => Ok(Some(norm_conv_op(&x, op, w.bf16_op()?)?)),
        ConvPrecision::F32 => {
            let ((_, _, h, wd), (c_out, c_in, k, _)) = (x.dims4()?, w.weight.dims4()?);
            let Some(tile) = winograd::tile_for((k, w.stride, w.padding), (c_in, c_out), (h, wd)) else {
                return Ok(None);
            };
            Ok(Some(norm_conv_op(&x, op, w.winograd_op(tile)?)?))
        }
    }
}

/// [`conv::NormConv`] of `op` and `conv` on the contiguous `x`, with the input's moments where
/// known, filing the output's where the convolution computes them.
fn norm_conv_op<K: NormOp, C: conv::MappedConv + std::fmt::Debug>(x: &Tensor, op: &K, conv: C) -> Result<Tensor> {
    let op = conv::NormConv { norm: op, conv, input_moments: known_moments::<K>(x), moments: Default::default() };
    let y = x.apply_op1_no_bwd(&op)?;
    Ok(filed(y, op.moments))
}

/// `y`, its planes' moments filed ([`plane_stats`]) where the operation that made it set them.
fn filed(y: Tensor, moments: std::sync::OnceLock<Vec<norm::Moments>>) -> Tensor {
    if let Some(m) = moments.into_inner() {
        plane_stats::record(&y, m);
    }
    y
}

/// The normalization `op` of `x` (with its ReLU), then [`max_pool_3x3_s2`], in one pass where
/// the kernels run (f32 on the CPU): the pool maps each value as it reads it, the normalized map
/// is never stored (the same bits as the two operations). `None` elsewhere: the caller runs the
/// two.
pub fn norm_max_pool_3x3_s2<K>(x: &Tensor, op: &K, padding: PoolPadding, imp: Implementation) -> Result<Option<Tensor>>
where
    K: NormOp,
{
    if !(imp.cpu_kernels(x) && fuse_norm_enabled()) {
        return Ok(None);
    }
    let x = x.contiguous()?;
    let op = elementwise::NormMaxPool { norm: op, pool: elementwise::MaxPool3x3S2 { padding }, input_moments: known_moments::<K>(&x) };
    Ok(Some(x.apply_op1_no_bwd(&op)?))
}

/// Whether [`norm_conv`] and [`norm_max_pool_3x3_s2`] fuse and the bf16 convolutions compute
/// their output's moments ([`plane_stats`]); `SNZOO_FUSE_NORM=0` turns both off, for
/// comparisons.
pub(crate) fn fuse_norm_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("SNZOO_FUSE_NORM").is_none_or(|v| v != "0"))
}

/// The normalization ops that [`norm_add`] fuses with the residual addition.
#[allow(private_bounds)]
pub trait NormOp: norm::PlaneAffine + std::fmt::Debug + Sync {
    /// The plain-operations result without the ReLU (the fallback of [`norm_add`]).
    fn plain_without_relu(&self, x: &Tensor) -> Result<Tensor>;
}

impl NormOp for SwitchNormInference {
    fn plain_without_relu(&self, x: &Tensor) -> Result<Tensor> {
        norm::switch_norm_plain(x, &SwitchNormInference { relu: false, ..self.clone() })
    }
}

impl NormOp for GroupNormInference {
    fn plain_without_relu(&self, x: &Tensor) -> Result<Tensor> {
        norm::group_norm_plain(x, &GroupNormInference { relu: false, ..self.clone() })
    }
}

impl NormOp for ChannelAffine {
    fn plain_without_relu(&self, x: &Tensor) -> Result<Tensor> {
        norm::channel_affine_plain(x, &ChannelAffine { relu: false, ..self.clone() })
    }
}

/// A fully connected layer: `x` (N, K) times `weight` (M, K) transposed, plus `bias` (M), as
/// `candle_nn::Linear` computes it for rows; on the CPU by [`linear::Linear`].
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, imp: Implementation) -> Result<Tensor> {
    let fits = x.rank() == 2 && weight.dtype() == DType::F32 && bias.is_none_or(|b| b.dtype() == DType::F32);
    if imp.cpu_kernels(x) && fits {
        let (x, w) = (x.contiguous()?, weight.contiguous()?);
        return match bias {
            Some(b) => x.apply_op3_no_bwd(&w, &b.contiguous()?, &linear::Linear),
            None => x.apply_op2_no_bwd(&w, &linear::Linear),
        };
    }
    let y = x.matmul(&weight.t()?)?;
    match bias {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// `a + b`, then ReLU when `relu`: the end of a residual block.
pub fn residual_add(a: &Tensor, b: &Tensor, relu: bool, imp: Implementation) -> Result<Tensor> {
    if imp.cpu_kernels(a) && b.dtype() == a.dtype() {
        let (a, b) = (a.contiguous()?, b.contiguous()?);
        if a.rank() == 4 && fuse_norm_enabled() {
            // The sum's plane moments, for the normalization that reads it (a v2 block's input).
            let op = elementwise::ResidualAddRecording { add: elementwise::ResidualAdd { relu }, moments: Default::default() };
            let y = a.apply_op2_no_bwd(&b, &op)?;
            return Ok(filed(y, op.moments));
        }
        return a.apply_op2_no_bwd(&b, &elementwise::ResidualAdd { relu });
    }
    let sum = (a + b)?;
    if relu {
        sum.relu()
    } else {
        Ok(sum)
    }
}

/// A 3×3, stride-2 max-pool of a non-negative input (after a ReLU, zero padding gives what the
/// frameworks' −∞ padding gives), padded as `padding` says.
pub fn max_pool_3x3_s2(x: &Tensor, padding: PoolPadding, imp: Implementation) -> Result<Tensor> {
    if imp.cpu_kernels(x) {
        return x.contiguous()?.apply_op1_no_bwd(&elementwise::MaxPool3x3S2 { padding });
    }
    let (_, _, h, w) = x.dims4()?;
    let ((ho, py), (wo, px)) = (padding.geometry(h), padding.geometry(w));
    // Pad before as the convention says and after up to the last window's end.
    let (ph, pw) = ((2 * ho + 1).saturating_sub(h + py), (2 * wo + 1).saturating_sub(w + px));
    x.pad_with_zeros(2, py, ph)?.pad_with_zeros(3, px, pw)?.max_pool2d_with_stride(3, 2)
}
