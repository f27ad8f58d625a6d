//! A fused CPU kernel for SwitchNorm2d inference (optionally with the ReLU that follows): one
//! parallel pass for the per-(n,c) moments, the per-sample layer moments from them, and one
//! parallel pass for `x · scale + shift`. The plain candle-ops version
//! ([`SwitchNorm2d::forward_reference`](crate::SwitchNorm2d::forward_reference)) is its test oracle.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape};
use rayon::prelude::*;

/// Below this many elements the kernel does not fan out to the thread pool.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 21;

/// Σ f(v) with 16 independent f32 lanes (vectorisable; each lane sums at most a few hundred
/// terms of one plane), combined in f64.
#[inline]
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

/// Everything the kernel needs besides the input, per channel or per mixing term.
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

impl SwitchNormInference {
    /// Normalizes a contiguous (N, C, H·W) buffer into `out` (of the same length).
    pub fn run(&self, x: &[f32], n: usize, c: usize, hw: usize, out: &mut [f32]) {
        // SAFETY: f32 → MaybeUninit<f32> has the same layout, and only f32 values are written.
        let out = unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) };
        self.run_into(x, n, c, hw, out)
    }

    /// [`run`](Self::run) into an uninitialised buffer: writes every element of `out`.
    fn run_into(&self, x: &[f32], n: usize, c: usize, hw: usize, out: &mut [MaybeUninit<f32>]) {
        assert_eq!(out.len(), x.len(), "switch-norm-2d-inference: output and input lengths differ");
        // Instance moments per (n, c), accumulated in f64: mean and unbiased variance.
        // Small planes (e.g. 7×7) would make one rayon task per channel: group them. Small
        // tensors (batch 1) run on the calling thread: waking the pool costs more than it saves.
        let min_len = if x.len() < PARALLEL_MIN_ELEMENTS || crate::parallel::is_serial() { x.len() } else { (16 * 1024 / hw).max(1) };
        let moments: Vec<(f64, f64)> = x
            .par_chunks(hw)
            .with_min_len(min_len)
            .map(|v| {
                let mean = lane_sum(v, |a| a) / hw as f64;
                let m = mean as f32;
                let ss = lane_sum(v, |a| (a - m) * (a - m));
                (mean, ss / (hw - 1) as f64)
            })
            .collect();
        // Per (n, c): the mixed statistics, folded into a scale and a shift.
        let mut affine = vec![(0f32, 0f32); n * c];
        for s in 0..n {
            let m = &moments[s * c..(s + 1) * c];
            let mean_ln = m.iter().map(|p| p.0).sum::<f64>() / c as f64;
            let var_ln = m.iter().map(|p| p.1 + p.0 * p.0).sum::<f64>() / c as f64 - mean_ln * mean_ln;
            for ch in 0..c {
                let (mi, vi) = m[ch];
                let mut mean = self.mean_mix[0] * mi + self.mean_mix[1] * mean_ln;
                let mut var = self.var_mix[0] * vi + self.var_mix[1] * var_ln;
                if let (Some(rm), Some(rv)) = (&self.running_mean, &self.running_var) {
                    mean += self.mean_mix[2] * rm[ch] as f64;
                    var += self.var_mix[2] * rv[ch] as f64;
                }
                let scale = self.weight[ch] as f64 / (var + self.eps).sqrt();
                affine[s * c + ch] = (scale as f32, (self.bias[ch] as f64 - mean * scale) as f32);
            }
        }
        let relu = self.relu;
        out.par_chunks_mut(hw).zip(x.par_chunks(hw)).zip(affine.par_iter()).with_min_len(min_len).for_each(|((o, v), &(scale, shift))| {
            if relu {
                for (o, &a) in o.iter_mut().zip(v) {
                    o.write((a * scale + shift).max(0.0));
                }
            } else {
                for (o, &a) in o.iter_mut().zip(v) {
                    o.write(a * scale + shift);
                }
            }
        });
    }
}

impl CustomOp1 for SwitchNormInference {
    fn name(&self) -> &'static str {
        "switch-norm-2d-inference"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = layout.shape().dims4()?;
        if h * w < 2 {
            candle_core::bail!("SwitchNorm2d needs at least 2 spatial positions, got {h}x{w}");
        }
        let x = match (storage, layout.contiguous_offsets()) {
            (CpuStorage::F32(v), Some((start, end))) => &v[start..end],
            (CpuStorage::F32(_), None) => candle_core::bail!("switch-norm-2d-inference needs a contiguous input"),
            _ => candle_core::bail!("switch-norm-2d-inference is implemented for f32"),
        };
        // SAFETY: `run_into` writes every element.
        let out = unsafe { crate::parallel::output_buffer(x.len(), |out| self.run_into(x, n, c, h * w, out)) };
        Ok((CpuStorage::F32(out), layout.shape().clone()))
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
        if hw < 2 {
            candle_core::bail!("SwitchNorm2d needs at least 2 spatial positions, got {h}x{w}");
        }
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
        b.arg(&mean).arg(&var).arg(&c_arg).arg(&mix).arg(&running_mean).arg(&running_var).arg(&weight).arg(&bias).arg(&eps).arg(&scale).arg(&shift);
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
