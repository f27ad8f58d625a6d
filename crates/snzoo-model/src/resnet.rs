//! ResNet v1 and pre-activation ResNet v2, with any normalization of [`crate::norm`]: the SN
//! release's networks (key names `sn1`, `layerN.B.snK`, `downsample.0/1`, v2's `downsample` and
//! `sn_out`) and torchvision's / timm's v1 layout (`bn1`, `layerN.B.bnK`, `downsample.0/1`) with
//! BatchNorm or GroupNorm. Module paths are the state-dict keys; building the network is its one
//! description (the keys and shapes a state dict must have are read off it, see
//! [`ResNetConfig::expected_shapes`]).
//!
//! * v1: `conv1` (7×7/2) → norm → ReLU → 3×3/2 max-pool → `layer1..4` → global average → `fc`.
//!   Blocks: `conv1`/norm1, `conv2`/norm2[, `conv3`/norm3], the stride on the 3×3 convolution;
//!   projection shortcut `downsample.0` (1×1 conv) + `downsample.1` (norm); add, ReLU.
//! * v2: the same stem; blocks norm1→ReLU→`conv1`→norm2→ReLU→`conv2`(→norm3→ReLU→`conv3`); the
//!   shortcut `downsample` is a bare 1×1 conv of the pre-activated input; no ReLU after the add;
//!   after `layer4`: `sn_out` → ReLU.
//!
//! The SN release pools with a fixed 7×7 window (224-pixel input); a global average is the same
//! there and also works at other sizes. Dropout before `fc` exists only in training.
//!
//! The operations themselves come from [`snzoo_kernels`], which picks the implementation.

use candle_core::{Module, Result, Tensor};
use candle_nn::{linear, Linear, VarBuilder};
use rayon::prelude::*;
use snzoo_kernels::{ConvPrecision, ConvWeights, Implementation};

use crate::config::{BlockKind, ResNetConfig, Version};
use crate::norm::{BatchStats, Norm2d, SwitchNorm2d};

/// Stages that several images run one image at a time in inference ([`ResNet::trunk`]).
const PER_IMAGE_STAGES: usize = 2;

/// Images per rayon task at most in inference on several threads ([`ResNet::per_sample`]):
/// enough for the later stages' Winograd GEMMs to get ~200 rows (4 × 49 tiles) and its per-call
/// weight transform to serve several images, few enough that a share's maps stay small (2 and 8
/// were no faster, 8 took 100 MB more: eval/BENCHMARKS.md) and the tasks still balance.
const SHARE: usize = 4;

/// How a forward pass runs.
#[derive(Debug, Default)]
struct Mode {
    /// Training: batch statistics collected, differentiable operations only.
    train: bool,
    imp: Implementation,
    precision: ConvPrecision,
    stats: Vec<BatchStats>,
}

impl Mode {
    /// Implementation of the operations: plain (differentiable) candle operations in training.
    fn imp(&self) -> Implementation {
        if self.train {
            Implementation::Plain
        } else {
            self.imp
        }
    }

    fn conv(&self, conv: &ConvWeights, x: &Tensor) -> Result<Tensor> {
        snzoo_kernels::conv2d(x, conv, self.precision, self.imp())
    }

    /// The normalization, then a ReLU when `relu`.
    fn norm(&mut self, norm: &dyn Norm2d, x: &Tensor, relu: bool) -> Result<Tensor> {
        if !self.train {
            return norm.forward(x, relu, self.imp);
        }
        let (y, stats) = norm.forward_train(x)?;
        self.stats.extend(stats);
        if relu {
            y.relu()
        } else {
            Ok(y)
        }
    }

    /// The normalization of `x` and its ReLU, then the convolution `conv` (fused in inference
    /// where the kernels fuse them).
    fn norm_conv(&mut self, norm: &dyn Norm2d, x: &Tensor, conv: &ConvWeights) -> Result<Tensor> {
        if !self.train {
            return norm.forward_conv(x, true, conv, self.precision, self.imp);
        }
        let y = self.norm(norm, x, true)?;
        self.conv(conv, &y)
    }

    /// The normalization of `x`, then `+ shortcut`, then ReLU when `relu`: the end of a v1
    /// residual block (fused in inference).
    fn norm_add(&mut self, norm: &dyn Norm2d, x: &Tensor, shortcut: &Tensor, relu: bool) -> Result<Tensor> {
        if !self.train {
            return norm.forward_add(x, shortcut, relu, self.imp);
        }
        let y = self.norm(norm, x, false)?;
        self.residual(&y, shortcut, relu)
    }

    /// The end of a residual block: `out + shortcut`, then ReLU when `relu`.
    fn residual(&self, out: &Tensor, shortcut: &Tensor, relu: bool) -> Result<Tensor> {
        snzoo_kernels::residual_add(out, shortcut, relu, self.imp())
    }
}

fn conv(vb: VarBuilder, c_in: usize, c_out: usize, k: usize, stride: usize, bias: bool) -> Result<ConvWeights> {
    let weight = vb.get((c_out, c_in, k, k), "weight")?;
    let bias = if bias { Some(vb.get(c_out, "bias")?) } else { None };
    Ok(ConvWeights::new(weight, bias, stride, k / 2))
}

#[derive(Debug)]
enum Shortcut {
    Identity,
    /// v1: 1×1 conv + normalization.
    ConvNorm(ConvWeights, Box<dyn Norm2d>),
    /// v2: bare 1×1 conv on the pre-activated input; fb.resnet.torch's v1 projection.
    Conv(ConvWeights),
    /// TF-Slim: the identity subsampled by the block's stride (a 1×1 max-pool of stride 2).
    Subsample,
}

/// Every second row and column, from the first: TF-Slim's `max_pool2d([1, 1], stride=2)`.
fn subsample(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (ho, wo) = (h.div_ceil(2), w.div_ceil(2));
    let p = x.pad_with_zeros(2, 0, 2 * ho - h)?.pad_with_zeros(3, 0, 2 * wo - w)?;
    p.reshape((n, c, ho, 2, wo, 2))?.narrow(3, 0, 1)?.narrow(5, 0, 1)?.reshape((n, c, ho, wo))?.contiguous()
}

/// One residual block (basic or bottleneck, v1 or v2): `convs[i]` pairs with `norms[i]`.
#[derive(Debug)]
struct Block {
    version: Version,
    /// The last normalization follows the addition (fb.resnet.torch's released models).
    norm_after_add: bool,
    convs: Vec<ConvWeights>,
    norms: Vec<Box<dyn Norm2d>>,
    shortcut: Shortcut,
}

impl Block {
    fn new(cfg: &ResNetConfig, c_in: usize, planes: usize, stride: usize, downsample: bool, vb: VarBuilder) -> Result<Self> {
        let e = cfg.block.expansion();
        let style = cfg.style;
        // (in, out, kernel, stride) of each convolution; the norm of v1 follows its conv (out
        // channels), the norm of v2 precedes it (in channels).
        let (first, middle) = if style.stride_on_first_conv() { (stride, 1) } else { (1, stride) };
        let shapes: Vec<(usize, usize, usize, usize)> = match cfg.block {
            BlockKind::Basic => vec![(c_in, planes, 3, stride), (planes, planes, 3, 1)],
            BlockKind::Bottleneck => vec![(c_in, planes, 1, first), (planes, planes, 3, middle), (planes, planes * 4, 1, 1)],
        };
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        for (i, &(ci, co, k, s)) in shapes.iter().enumerate() {
            convs.push(conv(vb.pp(format!("conv{}", i + 1)), ci, co, k, s, style.conv_bias())?);
            let channels = match cfg.version {
                Version::V1 => co,
                Version::V2 => ci,
            };
            norms.push(cfg.norm.build(channels, vb.pp(cfg.norm_name(i + 1)))?);
        }
        let bias = style.conv_bias();
        let shortcut = match (downsample, cfg.version) {
            (false, _) if stride > 1 => Shortcut::Subsample,
            (false, _) => Shortcut::Identity,
            (true, Version::V1) if style.shortcut_norm() => Shortcut::ConvNorm(
                conv(vb.pp("downsample.0"), c_in, planes * e, 1, stride, bias)?,
                cfg.norm.build(planes * e, vb.pp("downsample.1"))?,
            ),
            (true, Version::V1) => Shortcut::Conv(conv(vb.pp("downsample.0"), c_in, planes * e, 1, stride, bias)?),
            (true, Version::V2) => Shortcut::Conv(conv(vb.pp("downsample"), c_in, planes * e, 1, stride, bias)?),
        };
        Ok(Self { version: cfg.version, norm_after_add: style.norm_after_add(), convs, norms, shortcut })
    }

    fn forward(&self, x: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        match self.version {
            Version::V1 => {
                let last = self.convs.len() - 1;
                let mut out = mode.conv(&self.convs[0], x)?;
                for (conv, norm) in self.convs[1..].iter().zip(&self.norms) {
                    out = mode.norm_conv(norm.as_ref(), &out, conv)?;
                }
                let residual = match &self.shortcut {
                    Shortcut::Identity => x.clone(),
                    Shortcut::Subsample => subsample(x)?,
                    Shortcut::ConvNorm(c, norm) => {
                        let y = mode.conv(c, x)?;
                        mode.norm(norm.as_ref(), &y, false)?
                    }
                    Shortcut::Conv(c) => mode.conv(c, x)?,
                };
                if self.norm_after_add {
                    let sum = mode.residual(&out, &residual, false)?;
                    return mode.norm(self.norms[last].as_ref(), &sum, true);
                }
                mode.norm_add(self.norms[last].as_ref(), &out, &residual, true)
            }
            Version::V2 => {
                // The pre-activation feeds the first convolution and, in a projection block, the
                // shortcut's: where the first convolution is its one reader, the two are fused.
                let (norm, first) = (self.norms[0].as_ref(), &self.convs[0]);
                let (residual, mut out) = match &self.shortcut {
                    Shortcut::Identity => (x.clone(), mode.norm_conv(norm, x, first)?),
                    Shortcut::Subsample => (subsample(x)?, mode.norm_conv(norm, x, first)?),
                    Shortcut::Conv(c) => {
                        let pre = mode.norm(norm, x, true)?;
                        (mode.conv(c, &pre)?, mode.conv(first, &pre)?)
                    }
                    Shortcut::ConvNorm(c, shortcut_norm) => {
                        let pre = mode.norm(norm, x, true)?;
                        let y = mode.conv(c, &pre)?;
                        (mode.norm(shortcut_norm.as_ref(), &y, false)?, mode.conv(first, &pre)?)
                    }
                };
                for (conv, norm) in self.convs[1..].iter().zip(&self.norms[1..]) {
                    out = mode.norm_conv(norm.as_ref(), &out, conv)?;
                }
                mode.residual(&out, &residual, false)
            }
        }
    }
}

/// The same 3×3/2 max-pool (padding 1, non-negative input) as the maximum of nine strided
/// views, so that candle can differentiate it (its max-pool backward needs stride = kernel).
fn max_pool_3x3_s2_differentiable(x: &Tensor, padding: snzoo_kernels::PoolPadding) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let ((ho, py), (wo, px)) = (padding.geometry(h), padding.geometry(w));
    // Pad to 2·out + 2 on each axis: the convention's padding in front, the rest behind.
    let p = x.pad_with_zeros(2, py, 2 * ho + 2 - h - py)?.pad_with_zeros(3, px, 2 * wo + 2 - w - px)?;
    let mut out: Option<Tensor> = None;
    for dy in 0..3 {
        let rows = p.narrow(2, dy, 2 * ho)?.reshape((n, c, ho, 2, 2 * wo + 2))?.narrow(3, 0, 1)?.squeeze(3)?;
        for dx in 0..3 {
            let v = rows.narrow(3, dx, 2 * wo)?.reshape((n, c, ho, wo, 2))?.narrow(4, 0, 1)?.squeeze(4)?;
            out = Some(match out {
                None => v,
                Some(o) => o.maximum(&v)?,
            });
        }
    }
    Ok(out.expect("nine views"))
}

/// A ResNet (v1 or v2, any depth and normalization).
#[derive(Debug)]
pub struct ResNet {
    config: ResNetConfig,
    conv1: ConvWeights,
    norm1: Box<dyn Norm2d>,
    /// `layer1` .. `layer4`.
    layers: Vec<Vec<Block>>,
    norm_out: Option<Box<dyn Norm2d>>,
    fc: Linear,
    /// The convolutions' precision in CPU inference (see [`ResNet::with_bf16_convolutions`]).
    precision: ConvPrecision,
}

impl ResNet {
    /// Builds the network from weights under `vb` named as in the state dicts.
    pub fn new(config: &ResNetConfig, vb: VarBuilder) -> Result<Self> {
        let conv1 = conv(vb.pp("conv1"), 3, config.width, 7, 2, config.style.stem_bias())?;
        let norm1 = config.norm.build(config.width, vb.pp(config.norm_name(1)))?;
        let e = config.block.expansion();
        let mut c_in = config.width;
        let mut layers = Vec::new();
        for (stage, &n) in config.layers.iter().enumerate() {
            let planes = config.width << stage;
            let vb_stage = vb.pp(format!("layer{}", stage + 1));
            let mut blocks = Vec::with_capacity(n);
            for b in 0..n {
                let s = config.style.block_stride(stage, b, n);
                blocks.push(Block::new(config, c_in, planes, s, config.has_downsample(stage, b), vb_stage.pp(b))?);
                c_in = planes * e;
            }
            layers.push(blocks);
        }
        let norm_out = match config.version {
            Version::V2 => Some(config.norm.build(c_in, vb.pp(format!("{}_out", config.norm.key_prefix())))?),
            Version::V1 => None,
        };
        let fc = linear(c_in, config.num_classes, vb.pp("fc"))?;
        Ok(Self { config: config.clone(), conv1, norm1, layers, norm_out, fc, precision: ConvPrecision::F32 })
    }

    /// CPU inference with every convolution's input and weights rounded to bf16 and the products
    /// accumulated in f32 (AMX tiles where the CPU has them, else `vdpbf16ps`;
    /// [`snzoo_kernels::gemm_amx`], [`snzoo_kernels::gemm_bf16`]), the rest (normalization,
    /// residual, pooling, classifier) in f32 — what PyTorch's CPU autocast to bf16 does for
    /// convolutions. Needs a CPU with AVX-512 BF16 (an error otherwise). The weights stay f32;
    /// their bf16 copies are packed here, so that the first forward pass is not slower than the
    /// others.
    pub fn with_bf16_convolutions(mut self) -> Result<Self> {
        if !snzoo_kernels::gemm_bf16::available() {
            candle_core::bail!("bf16 convolutions need a CPU with AVX-512 BF16 (Zen 4 or later, Cooper Lake or later)");
        }
        self.precision = ConvPrecision::Bf16;
        let mut convs = vec![&self.conv1];
        for block in self.layers.iter().flatten() {
            convs.extend(&block.convs);
            if let Shortcut::ConvNorm(c, _) | Shortcut::Conv(c) = &block.shortcut {
                convs.push(c);
            }
        }
        for conv in convs {
            conv.pack_bf16()?;
        }
        Ok(self)
    }

    fn inference_mode(&self, imp: Implementation) -> Mode {
        Mode { imp, precision: self.precision, ..Mode::default() }
    }

    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    /// Every SN layer with its state-dict path, in forward order (none in other networks).
    pub fn switch_norms(&self) -> Vec<(String, &SwitchNorm2d)> {
        let p = self.config.norm.key_prefix();
        let mut out: Vec<(String, &SwitchNorm2d)> = self.norm1.as_switch().map(|sn| (format!("{p}1"), sn)).into_iter().collect();
        for (s, blocks) in self.layers.iter().enumerate() {
            for (b, block) in blocks.iter().enumerate() {
                for (i, norm) in block.norms.iter().enumerate() {
                    if let Some(sn) = norm.as_switch() {
                        out.push((format!("layer{}.{b}.{p}{}", s + 1, i + 1), sn));
                    }
                }
                if let Shortcut::ConvNorm(_, norm) = &block.shortcut {
                    if let Some(sn) = norm.as_switch() {
                        out.push((format!("layer{}.{b}.downsample.1", s + 1), sn));
                    }
                }
            }
        }
        if let Some(sn) = self.norm_out.as_ref().and_then(|n| n.as_switch()) {
            out.push((format!("{p}_out"), sn));
        }
        out
    }

    /// Inference on the CPU with several threads and images: the batch in consecutive shares of
    /// at most [`SHARE`] images (at least one per thread), one rayon task per share, each through
    /// the whole network on one thread (see [`snzoo_kernels::parallel`], and
    /// [`trunk`](Self::trunk) for how a share runs); the results are the same as a batched
    /// forward, since inference treats every sample on its own.
    /// Otherwise (one image, one thread, another device) `f` runs on the whole batch and every
    /// kernel spreads over the pool.
    fn per_sample(&self, x: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor> + Sync) -> Result<Tensor> {
        use snzoo_kernels::parallel;
        let n = x.dim(0)?;
        if !x.device().is_cpu() || parallel::is_serial() {
            return f(x);
        }
        if n < 2 || rayon::current_num_threads() < 2 {
            // From outside the pool, every parallel kernel would hand its work to the pool and
            // wait: run the whole forward on a pool thread instead.
            return match rayon::current_thread_index() {
                Some(_) => f(x),
                None => rayon::scope(|_| f(x)),
            };
        }
        let x = x.contiguous()?;
        let shares = n.div_ceil(SHARE).max(rayon::current_num_threads()).min(n);
        let parts = (0..shares)
            .into_par_iter()
            .map(|j| {
                let (first, end) = (n * j / shares, n * (j + 1) / shares);
                parallel::serially(|| f(&x.narrow(0, first, end - first)?))
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, 0)
    }

    /// The feature map after stage `stop` (1–4), or after the whole trunk (with v2's final
    /// normalization) when `None`.
    ///
    /// In inference with snzoo's CPU kernels, several images run the stem and the first
    /// [`PER_IMAGE_STAGES`] stages one at a time (their large maps stay in the caches) and the
    /// later stages together: there the 3×3 convolutions' Winograd F(2,3) transforms its weights
    /// once for all the images and their tiles share its GEMMs ([`snzoo_kernels::winograd`]).
    /// Each image gets the same bits either way.
    fn trunk(&self, x: &Tensor, mode: &mut Mode, stop: Option<usize>) -> Result<Tensor> {
        let last = stop.unwrap_or(self.layers.len());
        let n = x.dim(0)?;
        let mut x = if n > 1 && !mode.train && mode.imp == Implementation::Fast && x.device().is_cpu() {
            let split = PER_IMAGE_STAGES.min(last);
            let images = (0..n).map(|i| self.stages(self.stem(&x.narrow(0, i, 1)?, mode)?, mode, 0..split)).collect::<Result<Vec<_>>>()?;
            self.stages(Tensor::cat(&images, 0)?, mode, split..last)?
        } else {
            self.stages(self.stem(x, mode)?, mode, 0..last)?
        };
        if let (None, Some(norm)) = (stop, &self.norm_out) {
            x = mode.norm(norm.as_ref(), &x, true)?;
        }
        Ok(x)
    }

    /// The first convolution, its normalization and the max-pool.
    fn stem(&self, x: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        let y = mode.conv(&self.conv1, x)?;
        // 3×3/2 max-pool with padding 1. Its input is non-negative (after a ReLU), so zero padding
        // gives exactly what PyTorch's -inf padding gives.
        if mode.train {
            let x = mode.norm(self.norm1.as_ref(), &y, true)?;
            max_pool_3x3_s2_differentiable(&x, self.config.style.stem_pool())
        } else {
            self.norm1.forward_max_pool(&y, true, self.config.style.stem_pool(), mode.imp)
        }
    }

    /// The residual stages `stages` (0-based) on `x`.
    fn stages(&self, mut x: Tensor, mode: &mut Mode, stages: std::ops::Range<usize>) -> Result<Tensor> {
        for blocks in &self.layers[stages] {
            for block in blocks {
                x = block.forward(&x, mode)?;
            }
        }
        Ok(x)
    }

    fn features_mode(&self, x: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        self.trunk(x, mode, None)?.mean((2, 3))
    }

    /// The feature map (N, C, H, W) after stage `stage` (1–4: `layer1` … `layer4`), as timm's
    /// `forward_intermediates` gives it.
    pub fn stage_features(&self, x: &Tensor, stage: usize) -> Result<Tensor> {
        if !(1..=4).contains(&stage) {
            candle_core::bail!("stage {stage}: the stages are 1 to 4");
        }
        self.per_sample(x, |xi| self.trunk(xi, &mut self.inference_mode(Implementation::Fast), Some(stage)))
    }

    /// The pooled features (N, [`feature_dim`](ResNetConfig::feature_dim)) before the
    /// classifier, as timm's `forward_features` followed by the global average pool.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        self.per_sample(x, |xi| self.features_mode(xi, &mut self.inference_mode(Implementation::Fast)))
    }

    /// Logits (N, num_classes) for a normalized image batch (N, 3, H, W).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // The classifier runs once for the whole batch (its weights read once, not per image);
        // each row's result is the same at any batch size.
        let features = self.features(x)?;
        snzoo_kernels::linear(&features, self.fc.weight(), self.fc.bias(), Implementation::Fast)
    }

    /// [`forward`](Self::forward) with every operation through plain candle operations instead of
    /// snzoo's kernels (the oracle, and the baseline of `snzoo bench --reference-sn`).
    pub fn forward_reference(&self, x: &Tensor) -> Result<Tensor> {
        let mut mode = Mode { imp: Implementation::Plain, ..Mode::default() };
        self.fc.forward(&self.features_mode(x, &mut mode)?)
    }

    /// A training forward: normalization layers use batch statistics (returned, detached, for
    /// the running-statistics update) and dropout with probability `dropout` precedes `fc`.
    pub fn forward_train(&self, x: &Tensor, dropout: f32) -> Result<(Tensor, Vec<BatchStats>)> {
        let mut mode = Mode { train: true, ..Mode::default() };
        let mut f = self.features_mode(x, &mut mode)?;
        if dropout > 0.0 {
            f = candle_nn::ops::dropout(&f, dropout)?;
        }
        Ok((self.fc.forward(&f)?, mode.stats))
    }
}

impl Module for ResNet {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ResNet::forward(self, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snzoo_kernels::PoolPadding;

    /// Training's differentiable stem pool against the inference kernel, in every convention.
    #[test]
    fn differentiable_pool_matches_the_kernel() {
        for (h, w) in [(112, 112), (7, 5), (1, 1), (2, 3), (9, 10)] {
            let x = Tensor::randn(0f32, 1.0, (2, 3, h, w), &candle_core::Device::Cpu).unwrap().relu().unwrap();
            for padding in [PoolPadding::Torch, PoolPadding::TfSame, PoolPadding::CaffeCeil] {
                let a = max_pool_3x3_s2_differentiable(&x, padding).unwrap();
                let b = snzoo_kernels::max_pool_3x3_s2(&x, padding, Implementation::Fast).unwrap();
                assert_eq!(a.dims(), b.dims(), "{padding:?} {h}x{w}");
                let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert_eq!(d, 0.0, "{padding:?} {h}x{w}");
            }
        }
    }
}
