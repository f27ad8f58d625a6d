//! ResNet v1 and pre-activation ResNet v2 with Switchable Normalization, as released with the SN
//! paper. Module paths are the state-dict keys (`layer1.0.sn1.mean_weight`, `layer2.0.downsample.0.weight`, ...).
//!
//! * v1: `conv1` (7×7/2) → `sn1` → ReLU → 3×3/2 max-pool → `layer1..4` → global average → `fc`.
//!   Blocks: `conv1/sn1`, `conv2/sn2`[, `conv3/sn3`], the stride on the 3×3 convolution; projection
//!   shortcut `downsample.0` (1×1 conv) + `downsample.1` (SN); add, ReLU.
//! * v2: the same stem; blocks `sn1`→ReLU→`conv1`→`sn2`→ReLU→`conv2`(→`sn3`→ReLU→`conv3`); the
//!   shortcut `downsample` is a bare 1×1 conv of the pre-activated input; no ReLU after the add;
//!   after `layer4`: `sn_out` → ReLU.
//!
//! The original pools with a fixed 7×7 window (224-pixel input); a global average is the same there
//! and also works at other sizes. Dropout before `fc` exists only in training.

use candle_core::{Module, ModuleT, Result, Tensor};
use rayon::prelude::*;
use candle_nn::{batch_norm, conv2d_no_bias, linear, BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig, Linear, VarBuilder};

use crate::config::{BlockKind, NormKind, ResNetSnConfig, Version};
use crate::switch_norm::{BatchStats, SwitchNorm2d, SN_EPS};

/// Inference, or training with the batch statistics of every SN layer collected.
#[derive(Debug, Default)]
struct Mode {
    train: bool,
    /// Inference through the plain candle operations instead of the fused SN kernel.
    reference: bool,
    /// CPU convolutions with bf16 inputs and weights ([`crate::gemm_bf16`]).
    bf16: bool,
    stats: Vec<BatchStats>,
}

/// A normalization layer: SN (the release), or BatchNorm (torchvision's baselines).
#[derive(Debug, Clone)]
enum Norm {
    Switch(SwitchNorm2d),
    Batch(BatchNorm),
}

impl Norm {
    fn new(cfg: &ResNetSnConfig, channels: usize, vb: VarBuilder) -> Result<Self> {
        match cfg.norm {
            NormKind::Switchable => Ok(Norm::Switch(SwitchNorm2d::new(channels, cfg.using_bn, vb)?)),
            NormKind::Batch => {
                let bn_cfg = BatchNormConfig { eps: SN_EPS, remove_mean: true, affine: true, momentum: 0.1 };
                let bn = batch_norm(channels, bn_cfg, vb.clone())?;
                crate::switch_norm::check_variance(bn.running_var(), &vb.prefix())?;
                Ok(Norm::Batch(bn))
            }
        }
    }

    fn forward(&self, x: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        match (self, mode.train) {
            (Norm::Switch(sn), false) if mode.reference => sn.forward_reference(x),
            (Norm::Switch(sn), false) => sn.forward(x),
            (Norm::Switch(sn), true) => {
                let (y, stats) = sn.forward_train(x)?;
                mode.stats.extend(stats);
                Ok(y)
            }
            (Norm::Batch(bn), false) => bn.forward_t(x, false),
            (Norm::Batch(_), true) => candle_core::bail!("training is implemented for Switchable Normalization networks only"),
        }
    }

    /// `forward` then ReLU (fused into the SN kernel in inference).
    fn forward_relu(&self, x: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        match (self, mode.train) {
            (Norm::Switch(sn), false) if !mode.reference => sn.forward_relu(x),
            _ => self.forward(x, mode)?.relu(),
        }
    }

    fn as_switch(&self) -> Option<&SwitchNorm2d> {
        match self {
            Norm::Switch(sn) => Some(sn),
            Norm::Batch(_) => None,
        }
    }
}

impl Mode {
    /// Whether `x` goes through this crate's CPU inference kernels.
    fn kernels(&self, x: &Tensor) -> bool {
        !self.train && !self.reference && x.device().is_cpu() && x.dtype() == candle_core::DType::F32
    }

    /// The end of a residual block: `out + shortcut`, then ReLU when `relu`.
    fn residual(&self, out: &Tensor, shortcut: &Tensor, relu: bool) -> Result<Tensor> {
        if self.kernels(out) && shortcut.dtype() == out.dtype() {
            return out.contiguous()?.apply_op2_no_bwd(&shortcut.contiguous()?, &crate::elementwise::ResidualAdd { relu });
        }
        let sum = (out + shortcut)?;
        if relu {
            sum.relu()
        } else {
            Ok(sum)
        }
    }
}

/// A convolution: candle's (differentiable) in training and off the CPU, the im2col kernel of
/// [`crate::conv`] for f32 inference on the CPU, or its bf16 version (weights packed on first use).
#[derive(Debug, Clone)]
struct Conv {
    inner: Conv2d,
    op: crate::conv::Conv2dIm2col,
    packed_bf16: std::sync::OnceLock<std::sync::Arc<crate::gemm_bf16::PackedA>>,
}

impl Conv {
    fn forward(&self, x: &Tensor, mode: &Mode) -> Result<Tensor> {
        let w = self.inner.weight();
        if mode.kernels(x) && w.dtype() == candle_core::DType::F32 {
            if mode.bf16 {
                return x.contiguous()?.apply_op1_no_bwd(&self.bf16_op()?);
            }
            return x.contiguous()?.apply_op2_no_bwd(&w.contiguous()?, &self.op);
        }
        self.inner.forward(x)
    }

    fn bf16_op(&self) -> Result<crate::conv::Conv2dBf16> {
        let w = self.inner.weight();
        let (c_out, c_in, k, _) = w.dims4()?;
        let weights = match self.packed_bf16.get() {
            Some(p) => p.clone(),
            None => {
                let values = w.flatten_all()?.to_vec1::<f32>()?;
                let packed = std::sync::Arc::new(crate::gemm_bf16::PackedA::new(&values, c_out, c_in * k * k));
                self.packed_bf16.get_or_init(|| packed).clone()
            }
        };
        Ok(crate::conv::Conv2dBf16 { stride: self.op.stride, padding: self.op.padding, kernel: k, weights })
    }
}

fn conv(vb: VarBuilder, c_in: usize, c_out: usize, k: usize, stride: usize) -> Result<Conv> {
    let cfg = Conv2dConfig { padding: k / 2, stride, dilation: 1, groups: 1, cudnn_fwd_algo: None };
    let op = crate::conv::Conv2dIm2col { stride, padding: k / 2 };
    Ok(Conv { inner: conv2d_no_bias(c_in, c_out, k, cfg, vb)?, op, packed_bf16: Default::default() })
}

#[derive(Debug, Clone)]
enum Shortcut {
    Identity,
    /// v1: 1×1 conv + normalization.
    ConvSn(Conv, Norm),
    /// v2: bare 1×1 conv on the pre-activated input.
    Conv(Conv),
}

/// One residual block (basic or bottleneck, v1 or v2): `convs[i]` pairs with `sns[i]`.
#[derive(Debug, Clone)]
struct Block {
    version: Version,
    convs: Vec<Conv>,
    sns: Vec<Norm>,
    shortcut: Shortcut,
}

impl Block {
    fn new(cfg: &ResNetSnConfig, c_in: usize, planes: usize, stride: usize, downsample: bool, vb: VarBuilder) -> Result<Self> {
        let e = cfg.block.expansion();
        // (in, out, kernel, stride) of each convolution; the SN of v1 follows its conv (out
        // channels), the SN of v2 precedes it (in channels).
        let shapes: Vec<(usize, usize, usize, usize)> = match cfg.block {
            BlockKind::Basic => vec![(c_in, planes, 3, stride), (planes, planes, 3, 1)],
            BlockKind::Bottleneck => vec![(c_in, planes, 1, 1), (planes, planes, 3, stride), (planes, planes * 4, 1, 1)],
        };
        let mut convs = Vec::new();
        let mut sns = Vec::new();
        for (i, &(ci, co, k, s)) in shapes.iter().enumerate() {
            convs.push(conv(vb.pp(format!("conv{}", i + 1)), ci, co, k, s)?);
            let sn_channels = match cfg.version {
                Version::V1 => co,
                Version::V2 => ci,
            };
            sns.push(Norm::new(cfg, sn_channels, vb.pp(cfg.norm_name(i + 1)))?);
        }
        let shortcut = match (downsample, cfg.version) {
            (false, _) => Shortcut::Identity,
            (true, Version::V1) => Shortcut::ConvSn(
                conv(vb.pp("downsample.0"), c_in, planes * e, 1, stride)?,
                Norm::new(cfg, planes * e, vb.pp("downsample.1"))?,
            ),
            (true, Version::V2) => Shortcut::Conv(conv(vb.pp("downsample"), c_in, planes * e, 1, stride)?),
        };
        Ok(Self { version: cfg.version, convs, sns, shortcut })
    }

    fn forward(&self, x: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        match self.version {
            Version::V1 => {
                let last = self.convs.len() - 1;
                let mut out = x.clone();
                for (i, (conv, sn)) in self.convs.iter().zip(&self.sns).enumerate() {
                    let y = conv.forward(&out, mode)?;
                    out = if i != last { sn.forward_relu(&y, mode)? } else { sn.forward(&y, mode)? };
                }
                let residual = match &self.shortcut {
                    Shortcut::Identity => x.clone(),
                    Shortcut::ConvSn(c, sn) => sn.forward(&c.forward(x, mode)?, mode)?,
                    Shortcut::Conv(c) => c.forward(x, mode)?,
                };
                mode.residual(&out, &residual, true)
            }
            Version::V2 => {
                let pre = self.sns[0].forward_relu(x, mode)?;
                let residual = match &self.shortcut {
                    Shortcut::Identity => x.clone(),
                    Shortcut::Conv(c) => c.forward(&pre, mode)?,
                    Shortcut::ConvSn(c, sn) => sn.forward(&c.forward(&pre, mode)?, mode)?,
                };
                let mut out = self.convs[0].forward(&pre, mode)?;
                for (conv, sn) in self.convs[1..].iter().zip(&self.sns[1..]) {
                    out = conv.forward(&sn.forward_relu(&out, mode)?, mode)?;
                }
                mode.residual(&out, &residual, false)
            }
        }
    }
}

/// The same 3×3/2 max-pool (padding 1, non-negative input) as the maximum of nine strided
/// views, so that candle can differentiate it (its max-pool backward needs stride = kernel).
fn max_pool_3x3_s2_differentiable(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    // Pad to 2·out + 2 on each axis: 1 in front (PyTorch's padding), the rest behind.
    let p = x.pad_with_zeros(2, 1, 2 * ho + 1 - h)?.pad_with_zeros(3, 1, 2 * wo + 1 - w)?;
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

/// An SN ResNet (v1 or v2, any depth) in inference mode.
#[derive(Debug, Clone)]
pub struct ResNetSn {
    config: ResNetSnConfig,
    conv1: Conv,
    sn1: Norm,
    /// `layer1` .. `layer4`.
    layers: Vec<Vec<Block>>,
    sn_out: Option<Norm>,
    fc: Linear,
    /// CPU inference convolutions in bf16 (see [`ResNetSn::with_bf16_convolutions`]).
    bf16: bool,
}

impl ResNetSn {
    /// Builds the network from weights under `vb` named as in the released state dicts.
    pub fn new(config: &ResNetSnConfig, vb: VarBuilder) -> Result<Self> {
        let conv1 = conv(vb.pp("conv1"), 3, config.width, 7, 2)?;
        let sn1 = Norm::new(config, config.width, vb.pp(config.norm_name(1)))?;
        let e = config.block.expansion();
        let mut c_in = config.width;
        let mut layers = Vec::new();
        for (stage, &n) in config.layers.iter().enumerate() {
            let planes = config.width << stage;
            let stride = if stage == 0 { 1 } else { 2 };
            let vb_stage = vb.pp(format!("layer{}", stage + 1));
            let mut blocks = Vec::with_capacity(n);
            for b in 0..n {
                let s = if b == 0 { stride } else { 1 };
                blocks.push(Block::new(config, c_in, planes, s, config.has_downsample(stage, b), vb_stage.pp(b))?);
                c_in = planes * e;
            }
            layers.push(blocks);
        }
        let sn_out = match config.version {
            Version::V2 => Some(Norm::new(config, c_in, vb.pp("sn_out"))?),
            Version::V1 => None,
        };
        let fc = linear(c_in, config.num_classes, vb.pp("fc"))?;
        Ok(Self { config: config.clone(), conv1, sn1, layers, sn_out, fc, bf16: false })
    }

    /// CPU inference with every convolution's input and weights rounded to bf16 and the products
    /// accumulated in f32 (`vdpbf16ps`; [`crate::gemm_bf16`]), the rest (SN, residual, pooling,
    /// classifier) in f32 — what PyTorch's CPU autocast to bf16 does for convolutions. Needs a CPU
    /// with AVX-512 BF16 (an error otherwise). The weights stay f32 here; each convolution packs
    /// its bf16 copy on first use.
    pub fn with_bf16_convolutions(mut self) -> Result<Self> {
        if !crate::gemm_bf16::available() {
            candle_core::bail!("bf16 convolutions need a CPU with AVX-512 BF16 (Zen 4 or later, Cooper Lake or later)");
        }
        self.bf16 = true;
        Ok(self)
    }

    fn inference_mode(&self) -> Mode {
        Mode { bf16: self.bf16, ..Mode::default() }
    }

    pub fn config(&self) -> &ResNetSnConfig {
        &self.config
    }

    /// Every SN layer with its state-dict path, in forward order (none in a BatchNorm network).
    pub fn switch_norms(&self) -> Vec<(String, &SwitchNorm2d)> {
        let mut out: Vec<(String, &SwitchNorm2d)> = self.sn1.as_switch().map(|sn| ("sn1".to_string(), sn)).into_iter().collect();
        for (s, blocks) in self.layers.iter().enumerate() {
            for (b, block) in blocks.iter().enumerate() {
                for (i, sn) in block.sns.iter().enumerate() {
                    if let Some(sn) = sn.as_switch() {
                        out.push((format!("layer{}.{b}.sn{}", s + 1, i + 1), sn));
                    }
                }
                if let Shortcut::ConvSn(_, sn) = &block.shortcut {
                    if let Some(sn) = sn.as_switch() {
                        out.push((format!("layer{}.{b}.downsample.1", s + 1), sn));
                    }
                }
            }
        }
        if let Some(sn) = self.sn_out.as_ref().and_then(Norm::as_switch) {
            out.push(("sn_out".to_string(), sn));
        }
        out
    }

    /// The pooled features (N, feature_dim) before the classifier.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        self.per_sample(x, |xi| self.features_mode(xi, &mut self.inference_mode()))
    }

    /// Inference on the CPU with several threads and images: one rayon task per image, each
    /// through the whole network on one thread (see [`crate::parallel`]); the results are the
    /// same as a batched forward, since inference treats every sample on its own. Otherwise (one
    /// image, one thread, another device) `f` runs on the whole batch and every kernel spreads
    /// over the pool.
    fn per_sample(&self, x: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor> + Sync) -> Result<Tensor> {
        let n = x.dim(0)?;
        if !x.device().is_cpu() || crate::parallel::is_serial() {
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
        let parts = (0..n)
            .into_par_iter()
            .map(|i| crate::parallel::serially(|| f(&x.narrow(0, i, 1)?)))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, 0)
    }

    fn features_mode(&self, x: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        let x = self.sn1.forward_relu(&self.conv1.forward(x, mode)?, mode)?;
        // 3×3/2 max-pool with padding 1. Its input is non-negative (after a ReLU), so zero padding
        // gives exactly what PyTorch's -inf padding gives.
        let mut x = if mode.train {
            max_pool_3x3_s2_differentiable(&x)?
        } else if mode.kernels(&x) {
            x.contiguous()?.apply_op1_no_bwd(&crate::elementwise::MaxPool3x3S2)?
        } else {
            x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?.max_pool2d_with_stride(3, 2)?
        };
        for blocks in &self.layers {
            for block in blocks {
                x = block.forward(&x, mode)?;
            }
        }
        if let Some(sn) = &self.sn_out {
            x = sn.forward_relu(&x, mode)?;
        }
        x.mean((2, 3))
    }

    /// Logits (N, num_classes) for a normalized image batch (N, 3, H, W).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.per_sample(x, |xi| self.fc.forward(&self.features_mode(xi, &mut self.inference_mode())?))
    }

    /// [`forward`](Self::forward) with every SN layer through the plain candle operations
    /// instead of the fused kernel (the oracle, and the baseline of `snzoo bench`).
    pub fn forward_reference(&self, x: &Tensor) -> Result<Tensor> {
        let mut mode = Mode { reference: true, ..Mode::default() };
        self.fc.forward(&self.features_mode(x, &mut mode)?)
    }

    /// A training forward: SN layers use batch statistics (returned, detached, for the
    /// running-statistics update) and dropout with probability `dropout` precedes `fc`.
    pub fn forward_train(&self, x: &Tensor, dropout: f32) -> Result<(Tensor, Vec<BatchStats>)> {
        let mut mode = Mode { train: true, ..Mode::default() };
        let mut f = self.features_mode(x, &mut mode)?;
        if dropout > 0.0 {
            f = candle_nn::ops::dropout(&f, dropout)?;
        }
        Ok((self.fc.forward(&f)?, mode.stats))
    }
}

impl Module for ResNetSn {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ResNetSn::forward(self, x)
    }
}
