//! Fused CPU kernels for normalization layers in inference, optionally with the ReLU that
//! follows: one parallel pass for per-(n, c) plane moments (accumulated in f64), the per-sample
//! statistics folded into a scale and a shift per plane, and one parallel pass for
//! `x · scale + shift`.
//!
//! * [`SwitchNormInference`]: Switchable Normalization (IN, LN and the running BN statistics,
//!   mixed), with the unbiased instance variance of the SN release; also on CUDA.
//! * [`GroupNormInference`]: GroupNorm (PyTorch semantics: biased variance over each group).
//! * [`ChannelAffine`]: a per-channel scale and shift — BatchNorm in inference.
//!
//! Each has a plain candle-ops version ([`switch_norm_plain`], [`group_norm_plain`],
//! [`channel_affine_plain`]): the fallback on other devices and dtypes, and the test oracle.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, D};

/// Below this many elements the kernels do not fan out to the thread pool.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;

/// Σ f(v) with 16 independent f32 lanes (vectorisable; each lane sums at most a few hundred
/// terms of one plane), combined in f64.
#[inline(always)]
fn lane_sum(v: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0f32; 16];
    let chunks = v.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            acc[i] += f(c[i]);
        }
    }
    acc.iter().map(|&a| a as f64).sum::<f64>() + rest.iter().map(|&a| f(a) as f64).sum::<f64>()
}

/// Plane moments: the mean and the sum of squared deviations from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    pub mean: f64,
    pub m2: f64,
}

/// Threads for a pass over `len` elements: small tensors stay on the calling thread.
fn threads_for(len: usize) -> usize {
    if len < PARALLEL_MIN_ELEMENTS {
        1
    } else {
        crate::parallel::threads()
    }
}

/// The moments of one plane `v`: its mean, then the squared deviations from it (as f32) summed.
#[inline(always)]
pub(crate) fn moments_of(v: &[f32]) -> Moments {
    let mean = lane_sum(v, |a| a) / v.len() as f64;
    let c = mean as f32;
    Moments { mean, m2: lane_sum(v, |a| (a - c) * (a - c)) }
}

fn plane_moments(x: &[f32], hw: usize) -> Vec<Moments> {
    let mut out = vec![Moments { mean: 0.0, m2: 0.0 }; x.len() / hw.max(1)];
    crate::parallel::chunks_mut(threads_for(x.len()), &mut out, 1, |first, run| {
        crate::parallel::wide(|| {
            for (m, v) in run.iter_mut().zip(x[first * hw..].chunks(hw)) {
                *m = moments_of(v);
            }
        })
    });
    out
}

/// Writes `x · scale + shift` (per plane), plus `residual` when given, then `max(·, 0)` when
/// `relu`, into every element of `out`. The sum is rounded as the separate passes round it
/// (`x · scale + shift` first, then `+ residual`), so the fused end of a residual block equals
/// the normalization followed by [`crate::residual_add`] bit for bit.
fn apply_affine(x: &[f32], hw: usize, affine: &[(f32, f32)], residual: Option<&[f32]>, relu: bool, out: &mut [MaybeUninit<f32>]) {
    let plane = |o: &mut [MaybeUninit<f32>], v: &[f32], r: Option<&[f32]>, (scale, shift): (f32, f32)| match (r, relu) {
        (None, true) => o.iter_mut().zip(v).for_each(|(o, &a)| {
            o.write((a * scale + shift).max(0.0));
        }),
        (None, false) => o.iter_mut().zip(v).for_each(|(o, &a)| {
            o.write(a * scale + shift);
        }),
        (Some(r), true) => o.iter_mut().zip(v).zip(r).for_each(|((o, &a), &b)| {
            o.write(((a * scale + shift) + b).max(0.0));
        }),
        (Some(r), false) => o.iter_mut().zip(v).zip(r).for_each(|((o, &a), &b)| {
            o.write((a * scale + shift) + b);
        }),
    };
    crate::parallel::chunks_mut(threads_for(x.len()), out, hw, |first, run| {
        crate::parallel::wide(|| {
            for (i, o) in run.chunks_mut(hw).enumerate() {
                let p = first + i;
                let r = residual.map(|r| &r[p * hw..(p + 1) * hw]);
                plane(o, &x[p * hw..(p + 1) * hw], r, affine[p]);
            }
        })
    });
}

/// A normalization that folds into a scale and a shift per (n, c) plane.
pub(crate) trait PlaneAffine {
    const NAME: &'static str;
    /// Whether the scale and shift depend on the input's moments.
    const NEEDS_MOMENTS: bool = true;
    fn relu(&self) -> bool;
    /// Checks the input shape.
    fn check(&self, _n: usize, _c: usize, _h: usize, _w: usize) -> Result<()> {
        Ok(())
    }
    /// Scale and shift per channel of one sample, from its planes' moments.
    fn affine(&self, moments: &[Moments], hw: usize, out: &mut [(f32, f32)]);
}

/// The scale and shift of each (n, c) plane of the contiguous (N, C, H·W) input `x`, from the
/// planes' moments: `known` where the operation that made `x` computed them
/// ([`crate::plane_stats`]), else measured here.
pub(crate) fn plane_affine<K: PlaneAffine>(k: &K, x: &[f32], known: Option<&[Moments]>, n: usize, c: usize, hw: usize) -> Vec<(f32, f32)> {
    let moments: std::borrow::Cow<[Moments]> = match known {
        _ if !K::NEEDS_MOMENTS => vec![Moments { mean: 0.0, m2: 0.0 }; n * c].into(),
        Some(m) if m.len() == n * c => m.into(),
        _ => plane_moments(x, hw).into(),
    };
    let mut affine = vec![(0f32, 0f32); n * c];
    for s in 0..n {
        k.affine(&moments[s * c..(s + 1) * c], hw, &mut affine[s * c..(s + 1) * c]);
    }
    affine
}

#[allow(clippy::too_many_arguments)]
fn run_planes<K: PlaneAffine>(
    k: &K,
    x: &[f32],
    known: Option<&[Moments]>,
    residual: Option<&[f32]>,
    n: usize,
    c: usize,
    hw: usize,
    out: &mut [MaybeUninit<f32>],
) {
    assert_eq!(out.len(), x.len(), "{}: output and input lengths differ", K::NAME);
    assert!(residual.is_none_or(|r| r.len() == x.len()), "{}: residual and input lengths differ", K::NAME);
    let affine = plane_affine(k, x, known, n, c, hw);
    apply_affine(x, hw, &affine, residual, k.relu(), out);
}

fn cpu_fwd_planes<K: PlaneAffine>(
    k: &K,
    storage: &CpuStorage,
    layout: &Layout,
    known: Option<&[Moments]>,
    residual: Option<(&CpuStorage, &Layout)>,
) -> Result<(CpuStorage, Shape)> {
    let (n, c, h, w) = layout.shape().dims4()?;
    k.check(n, c, h, w)?;
    let x = crate::parallel::contiguous_f32(K::NAME, storage, layout)?;
    let residual = match residual {
        Some((s, l)) if l.shape() == layout.shape() => Some(crate::parallel::contiguous_f32(K::NAME, s, l)?),
        Some((_, l)) => candle_core::bail!("{}: residual {:?} and input {:?} differ", K::NAME, l.shape(), layout.shape()),
        None => None,
    };
    // SAFETY: `run_planes` writes every element.
    let out = unsafe { crate::parallel::output_buffer(x.len(), |out| run_planes(k, x, known, residual, n, c, h * w, out)) };
    Ok((CpuStorage::F32(out), layout.shape().clone()))
}

/// A normalization with its input planes' moments where they are known (computed by the
/// operation that made the input, [`crate::plane_stats`]); measured where not.
#[derive(Debug)]
pub(crate) struct WithMoments<'a, K> {
    pub norm: &'a K,
    pub moments: Option<Vec<Moments>>,
}

impl<K: PlaneAffine + std::fmt::Debug> CustomOp1 for WithMoments<'_, K> {
    fn name(&self) -> &'static str {
        K::NAME
    }
    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_fwd_planes(self.norm, storage, layout, self.moments.as_deref(), None)
    }
}

/// A normalization, then `+ residual` (the op's own ReLU after the sum): the end of a v1
/// residual block in one pass; `moments` the input planes' where known.
#[derive(Debug)]
pub(crate) struct AddResidual<'a, K> {
    pub norm: &'a K,
    pub moments: Option<Vec<Moments>>,
}

impl<K: PlaneAffine + std::fmt::Debug> CustomOp2 for AddResidual<'_, K> {
    fn name(&self) -> &'static str {
        K::NAME
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_fwd_planes(self.norm, s1, l1, self.moments.as_deref(), Some((s2, l2)))
    }
}

/// Everything the SN kernel needs besides the input, per channel or per mixing term.
#[derive(Debug, Clone)]
pub struct SwitchNormInference {
    /// softmax(`mean_weight`), softmax(`var_weight`): (IN, LN, BN); BN 0 without running stats.
    pub mean_mix: [f64; 3],
    pub var_mix: [f64; 3],
    pub running_mean: Option<Vec<f32>>,
    pub running_var: Option<Vec<f32>>,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub eps: f64,
    pub relu: bool,
}

impl PlaneAffine for SwitchNormInference {
    const NAME: &'static str = "switch-norm-2d-inference";
    fn relu(&self) -> bool {
        self.relu
    }
    fn check(&self, _n: usize, _c: usize, h: usize, w: usize) -> Result<()> {
        if h * w < 2 {
            candle_core::bail!(
                "SwitchNorm2d needs at least 2 spatial positions for the unbiased instance variance, got {h}x{w} \
                 (the input image is too small for this network)"
            );
        }
        Ok(())
    }
    fn affine(&self, m: &[Moments], hw: usize, out: &mut [(f32, f32)]) {
        let c = m.len();
        // Instance variance unbiased (÷ H·W − 1), as the release computes it.
        let var_in = |p: &Moments| p.m2 / (hw - 1) as f64;
        let mean_ln = m.iter().map(|p| p.mean).sum::<f64>() / c as f64;
        let var_ln = m.iter().map(|p| var_in(p) + p.mean * p.mean).sum::<f64>() / c as f64 - mean_ln * mean_ln;
        for (ch, p) in m.iter().enumerate() {
            let mut mean = self.mean_mix[0] * p.mean + self.mean_mix[1] * mean_ln;
            let mut var = self.var_mix[0] * var_in(p) + self.var_mix[1] * var_ln;
            if let (Some(rm), Some(rv)) = (&self.running_mean, &self.running_var) {
                mean += self.mean_mix[2] * rm[ch] as f64;
                var += self.var_mix[2] * rv[ch] as f64;
            }
            let scale = self.weight[ch] as f64 / (var + self.eps).sqrt();
            out[ch] = (scale as f32, (self.bias[ch] as f64 - mean * scale) as f32);
        }
    }
}

impl SwitchNormInference {
    /// Normalizes a contiguous (N, C, H·W) buffer into `out` (of the same length).
    pub fn run(&self, x: &[f32], n: usize, c: usize, hw: usize, out: &mut [f32]) {
        // SAFETY: f32 → MaybeUninit<f32> has the same layout, and only f32 values are written.
        let out = unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) };
        run_planes(self, x, None, None, n, c, hw, out)
    }
}

/// GroupNorm in inference (PyTorch's `F.group_norm`): mean and biased variance over each group
/// of `C / groups` channels and H×W, then the per-channel affine.
#[derive(Debug, Clone)]
pub struct GroupNormInference {
    pub groups: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub eps: f64,
    pub relu: bool,
}

impl PlaneAffine for GroupNormInference {
    const NAME: &'static str = "group-norm-2d-inference";
    fn relu(&self) -> bool {
        self.relu
    }
    fn check(&self, _n: usize, c: usize, _h: usize, _w: usize) -> Result<()> {
        if self.groups == 0 || !c.is_multiple_of(self.groups) || self.weight.len() != c || self.bias.len() != c {
            candle_core::bail!("GroupNorm of {} groups cannot normalize {c} channels", self.groups);
        }
        Ok(())
    }
    fn affine(&self, m: &[Moments], hw: usize, out: &mut [(f32, f32)]) {
        let per = m.len() / self.groups;
        for g in 0..self.groups {
            let planes = &m[g * per..(g + 1) * per];
            let mean = planes.iter().map(|p| p.mean).sum::<f64>() / per as f64;
            // Σ over the group of (x − mean)² = Σ planes (m2 + hw·(mean_p − mean)²).
            let m2: f64 = planes.iter().map(|p| p.m2 + hw as f64 * (p.mean - mean) * (p.mean - mean)).sum();
            let var = m2 / (per * hw) as f64;
            let inv = 1.0 / (var + self.eps).sqrt();
            for (ch, o) in out.iter_mut().enumerate().skip(g * per).take(per) {
                let scale = self.weight[ch] as f64 * inv;
                *o = (scale as f32, (self.bias[ch] as f64 - mean * scale) as f32);
            }
        }
    }
}

/// `x · scale[c] + shift[c]` (then ReLU when `relu`): BatchNorm in inference, with
/// `scale = weight / √(running_var + eps)` and `shift = bias − running_mean · scale`.
#[derive(Debug, Clone)]
pub struct ChannelAffine {
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    pub relu: bool,
}

impl ChannelAffine {
    /// BatchNorm's inference affine (computed in f64, as one rounding to f32).
    pub fn batch_norm(weight: &[f32], bias: &[f32], running_mean: &[f32], running_var: &[f32], eps: f64, relu: bool) -> Self {
        let mut scale = Vec::with_capacity(weight.len());
        let mut shift = Vec::with_capacity(weight.len());
        for c in 0..weight.len() {
            let s = weight[c] as f64 / (running_var[c] as f64 + eps).sqrt();
            scale.push(s as f32);
            shift.push((bias[c] as f64 - running_mean[c] as f64 * s) as f32);
        }
        Self { scale, shift, relu }
    }
}

impl PlaneAffine for ChannelAffine {
    const NAME: &'static str = "channel-affine";
    const NEEDS_MOMENTS: bool = false;
    fn relu(&self) -> bool {
        self.relu
    }
    fn check(&self, _n: usize, c: usize, _h: usize, _w: usize) -> Result<()> {
        if self.scale.len() != c || self.shift.len() != c {
            candle_core::bail!("channel-affine of {} channels cannot apply to {c}", self.scale.len());
        }
        Ok(())
    }
    fn affine(&self, _m: &[Moments], _hw: usize, out: &mut [(f32, f32)]) {
        for (o, (&s, &t)) in out.iter_mut().zip(self.scale.iter().zip(&self.shift)) {
            *o = (s, t);
        }
    }
}

impl CustomOp1 for GroupNormInference {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_fwd_planes(self, storage, layout, None, None)
    }
}

impl CustomOp1 for ChannelAffine {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_fwd_planes(self, storage, layout, None, None)
    }
}

fn channel_tensor(v: &[f32], like: &Tensor) -> Result<Tensor> {
    Tensor::from_slice(v, (1, v.len(), 1), like.device())?.to_dtype(like.dtype())
}

/// [`SwitchNormInference`] with plain candle operations (any device or dtype).
pub fn switch_norm_plain(x: &Tensor, p: &SwitchNormInference) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    p.check(n, c, h, w)?;
    let xr = x.reshape((n, c, h * w))?;
    let mean_in = xr.mean_keepdim(D::Minus1)?;
    let var_in = (xr.broadcast_sub(&mean_in)?.sqr()?.sum_keepdim(D::Minus1)? / (h * w - 1) as f64)?;
    let mean_ln = mean_in.mean_keepdim(1)?;
    let var_ln = (&var_in + mean_in.sqr()?)?.mean_keepdim(1)?.broadcast_sub(&mean_ln.sqr()?)?;
    let mut mean = (mean_in * p.mean_mix[0])?.broadcast_add(&(mean_ln * p.mean_mix[1])?)?;
    let mut var = (var_in * p.var_mix[0])?.broadcast_add(&(var_ln * p.var_mix[1])?)?;
    if let (Some(rm), Some(rv)) = (&p.running_mean, &p.running_var) {
        mean = mean.broadcast_add(&(channel_tensor(rm, x)? * p.mean_mix[2])?)?;
        var = var.broadcast_add(&(channel_tensor(rv, x)? * p.var_mix[2])?)?;
    }
    let inv_std = (var + p.eps)?.sqrt()?.recip()?;
    let y = xr
        .broadcast_sub(&mean)?
        .broadcast_mul(&inv_std)?
        .broadcast_mul(&channel_tensor(&p.weight, x)?)?
        .broadcast_add(&channel_tensor(&p.bias, x)?)?;
    let y = y.reshape((n, c, h, w))?;
    if p.relu {
        y.relu()
    } else {
        Ok(y)
    }
}

/// [`GroupNormInference`] with plain candle operations.
pub fn group_norm_plain(x: &Tensor, p: &GroupNormInference) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    p.check(n, c, h, w)?;
    let g = p.groups;
    let xg = x.reshape((n, g, (c / g) * h * w))?;
    let mean = xg.mean_keepdim(D::Minus1)?;
    let var = xg.broadcast_sub(&mean)?.sqr()?.mean_keepdim(D::Minus1)?;
    let y = xg.broadcast_sub(&mean)?.broadcast_div(&(var + p.eps)?.sqrt()?)?.reshape((n, c, h * w))?;
    let y = y.broadcast_mul(&channel_tensor(&p.weight, x)?)?.broadcast_add(&channel_tensor(&p.bias, x)?)?.reshape((n, c, h, w))?;
    if p.relu {
        y.relu()
    } else {
        Ok(y)
    }
}

/// [`ChannelAffine`] with plain candle operations.
pub fn channel_affine_plain(x: &Tensor, p: &ChannelAffine) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    p.check(n, c, h, w)?;
    let y = x
        .reshape((n, c, h * w))?
        .broadcast_mul(&channel_tensor(&p.scale, x)?)?
        .broadcast_add(&channel_tensor(&p.shift, x)?)?
        .reshape((n, c, h, w))?;
    if p.relu {
        y.relu()
    } else {
        Ok(y)
    }
}

impl CustomOp1 for SwitchNormInference {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        cpu_fwd_planes(self, storage, layout, None, None)
    }

    /// The same computation on CUDA (src/cuda/switch_norm.cu): moments per (n, c) plane, the
    /// per-sample mixing into a scale and a shift, then one element-wise pass.
    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, storage: &candle_core::CudaStorage, layout: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
        use candle_core::cuda_backend::WrapErr;
        const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/switch_norm.ptx"));
        const MODULE: &str = "snzoo_switch_norm";
        const BLOCK: u32 = 256;

        let (n, c, h, w) = layout.shape().dims4()?;
        let (hw, planes) = (h * w, n * c);
        self.check(n, c, h, w)?;
        let len = planes * hw;
        let dev = storage.device();
        let all = storage.as_cuda_slice::<f32>()?;
        let x = match layout.contiguous_offsets() {
            Some((start, end)) => all.slice(start..end),
            None => candle_core::bail!("switch-norm-2d-inference needs a contiguous input"),
        };
        let launch = |blocks: usize| LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 };
        // SAFETY (allocations): every element is written by the kernels below before it is read.
        let (mean, var) = unsafe { (dev.alloc::<f64>(planes)?, dev.alloc::<f64>(planes)?) };
        let (scale, shift) = unsafe { (dev.alloc::<f32>(planes)?, dev.alloc::<f32>(planes)?) };
        let out = unsafe { dev.alloc::<f32>(len)? };

        let moments = dev.get_or_load_custom_func("sn_moments", MODULE, PTX)?;
        let mut b = moments.builder();
        let hw_arg = hw as i32;
        b.arg(&x).arg(&hw_arg).arg(&mean).arg(&var);
        // SAFETY: the kernel's signature in switch_norm.cu; one block per plane.
        unsafe { b.launch(launch(planes)) }.w()?;

        let mix: Vec<f64> = self.mean_mix.iter().chain(&self.var_mix).copied().collect();
        let zeros = vec![0f32; c];
        let mix = dev.clone_htod(mix.as_slice())?;
        let running_mean = dev.clone_htod(self.running_mean.as_deref().unwrap_or(&zeros))?;
        let running_var = dev.clone_htod(self.running_var.as_deref().unwrap_or(&zeros))?;
        let weight = dev.clone_htod(self.weight.as_slice())?;
        let bias = dev.clone_htod(self.bias.as_slice())?;
        let affine = dev.get_or_load_custom_func("sn_affine", MODULE, PTX)?;
        let mut b = affine.builder();
        let (c_arg, eps) = (c as i32, self.eps);
        b.arg(&mean)
            .arg(&var)
            .arg(&c_arg)
            .arg(&mix)
            .arg(&running_mean)
            .arg(&running_var)
            .arg(&weight)
            .arg(&bias)
            .arg(&eps)
            .arg(&scale)
            .arg(&shift);
        // SAFETY: as above; one block per sample.
        unsafe { b.launch(launch(n)) }.w()?;

        let apply = dev.get_or_load_custom_func("sn_apply", MODULE, PTX)?;
        let mut b = apply.builder();
        let relu = self.relu as i32;
        b.arg(&x).arg(&len).arg(&hw_arg).arg(&scale).arg(&shift).arg(&relu).arg(&out);
        // SAFETY: as above; one thread per element.
        unsafe { b.launch(launch(len.div_ceil(BLOCK as usize))) }.w()?;
        Ok((candle_core::CudaStorage::wrap_cuda_slice(out, dev.clone()), layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The passes compiled for AVX2 ([`crate::parallel::wide`]) give the portable code's bits.
    #[test]
    fn avx2_passes_give_the_portable_bits() {
        #[cfg(target_arch = "x86_64")]
        if !std::arch::is_x86_feature_detected!("avx2") {
            eprintln!("skipped: this CPU has no AVX2");
            return;
        }
        // Planes of 3,136, 196, 49 and 7 values (lanes and a remainder), wide-ranging values.
        for hw in [3136, 196, 49, 7] {
            let x: Vec<f32> = (0..4 * hw).map(|i| ((i * 7919 % 1009) as f32 - 504.0) * 1.37e-3 + (i % 3) as f32 * 10.0).collect();
            let r: Vec<f32> = (0..4 * hw).map(|i| ((i * 104729 % 997) as f32 - 498.0) * 2.1e-3).collect();
            let affine = [(0.7f32, -0.3f32), (1.9, 0.25), (-0.4, 1.0), (0.05, -2.0)];
            for v in x.chunks(hw) {
                let (p, w) = (moments_of(v), crate::parallel::wide(|| moments_of(v)));
                assert_eq!((p.mean.to_bits(), p.m2.to_bits()), (w.mean.to_bits(), w.m2.to_bits()), "moments, {hw} values");
            }
            for (residual, relu) in [(None, false), (None, true), (Some(&r[..]), false), (Some(&r[..]), true)] {
                let mut wide = vec![MaybeUninit::uninit(); x.len()];
                apply_affine(&x, hw, &affine, residual, relu, &mut wide);
                // The portable loop, written out: x·scale + shift, + residual, then the ReLU.
                for (i, o) in wide.iter().enumerate() {
                    let (scale, shift) = affine[i / hw];
                    let mut y = x[i] * scale + shift;
                    if let Some(r) = residual {
                        y += r[i];
                    }
                    if relu {
                        y = y.max(0.0);
                    }
                    // SAFETY: `apply_affine` writes every element.
                    assert_eq!(unsafe { o.assume_init() }.to_bits(), y.to_bits(), "affine, {hw} values, element {i}");
                }
            }
        }
    }
}
