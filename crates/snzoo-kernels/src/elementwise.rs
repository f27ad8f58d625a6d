//! The remaining inference operations of a ResNet on the CPU, as kernels that follow
//! [`crate::parallel`]: the residual addition (fused with the ReLU after it in v1 blocks) and the
//! stem's 3×3/2 max-pool. candle's own element-wise operations hand large tensors to a separate
//! spinning thread pool, which competes with the image-per-thread schedule for the cores.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape};

use crate::parallel::contiguous_f32;

/// Elements per parallel task, and below twice this the kernels stay on the calling thread.
const CHUNK: usize = 1 << 16;

/// Threads for a pass over `len` elements: small tensors stay on the calling thread.
fn threads_for(len: usize) -> usize {
    if len < 2 * CHUNK {
        1
    } else {
        crate::parallel::threads()
    }
}

/// `a + b`, then `max(·, 0)` when `relu`: the end of a residual block.
#[derive(Debug, Clone, Copy)]
pub struct ResidualAdd {
    pub relu: bool,
}

impl ResidualAdd {
    /// Writes every element of `out` (as long as `a` and `b`) on this thread.
    #[inline(always)]
    fn run_serial(&self, a: &[f32], b: &[f32], out: &mut [MaybeUninit<f32>]) {
        if self.relu {
            for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                o.write((a + b).max(0.0));
            }
        } else {
            for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                o.write(a + b);
            }
        }
    }

    /// Writes every element of `out` (as long as `a` and `b`).
    fn run(&self, a: &[f32], b: &[f32], out: &mut [MaybeUninit<f32>]) {
        let threads = threads_for(out.len());
        crate::parallel::chunks_mut(threads, out, CHUNK, |first, o| {
            let (at, len) = (first * CHUNK, o.len());
            crate::parallel::wide(|| self.run_serial(&a[at..at + len], &b[at..at + len], o))
        });
    }
}

/// The two summands of a residual addition, checked to have one shape.
fn summands<'a>(s1: &'a CpuStorage, l1: &Layout, s2: &'a CpuStorage, l2: &Layout) -> Result<(&'a [f32], &'a [f32])> {
    if l1.shape() != l2.shape() {
        candle_core::bail!("residual-add: shapes {:?} and {:?} differ", l1.shape(), l2.shape());
    }
    Ok((contiguous_f32("residual-add", s1, l1)?, contiguous_f32("residual-add", s2, l2)?))
}

impl CustomOp2 for ResidualAdd {
    fn name(&self) -> &'static str {
        "residual-add"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (a, b) = summands(s1, l1, s2, l2)?;
        // SAFETY: `run` writes every element (`a` and `b` have the same shape, so length).
        let out = unsafe { crate::parallel::output_buffer(a.len(), |out| self.run(a, b, out)) };
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// [`ResidualAdd`] of two (N, C, H, W) tensors that also keeps the moments of each output plane,
/// measured from the plane just written (in L1) exactly as [`crate::norm`] measures them — the
/// same bits — for the normalization that reads the sum next (a v2 block's input).
#[derive(Debug)]
pub(crate) struct ResidualAddRecording {
    pub add: ResidualAdd,
    pub moments: std::sync::OnceLock<Vec<crate::norm::Moments>>,
}

impl CustomOp2 for ResidualAddRecording {
    fn name(&self) -> &'static str {
        "residual-add"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (a, b) = summands(s1, l1, s2, l2)?;
        let (_, _, h, w) = l1.shape().dims4()?;
        let hw = (h * w).max(1);
        let mut moments = vec![crate::norm::Moments { mean: 0.0, m2: 0.0 }; a.len() / hw];
        let relu = self.add.relu;
        let threads = threads_for(a.len());
        // SAFETY: every plane of the output is written below, each by the task that owns its
        // moments entry.
        let out = unsafe {
            crate::parallel::output_buffer(a.len(), |out| {
                let out_addr = out.as_mut_ptr() as usize;
                crate::parallel::chunks_mut(threads, &mut moments, 1, |first, run| {
                    crate::parallel::wide(|| {
                        for (i, m) in run.iter_mut().enumerate() {
                            let at = (first + i) * hw;
                            // SAFETY: plane `first + i` of the output, written by this task only.
                            let o = std::slice::from_raw_parts_mut((out_addr as *mut MaybeUninit<f32>).add(at), hw);
                            ResidualAdd { relu }.run_serial(&a[at..at + hw], &b[at..at + hw], o);
                            // SAFETY: every element of `o` was just written.
                            *m = crate::norm::moments_of(std::slice::from_raw_parts(o.as_ptr().cast::<f32>(), hw));
                        }
                    })
                });
            })
        };
        let _ = self.moments.set(moments);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// How a 3×3/2 max-pool pads and rounds its output size: the frameworks differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PoolPadding {
    /// PyTorch `max_pool2d(3, 2, padding=1)` (floor): windows start at 2·o − 1.
    #[default]
    Torch,
    /// TensorFlow `'SAME'`: ⌈n / 2⌉ outputs; the padding (2 for odd n, 1 for even) is split
    /// with the smaller half before: windows start at 2·o − (n mod 2).
    TfSame,
    /// Caffe `pad 0` with its ceil rounding: ⌈(n − 3) / 2⌉ + 1 outputs, windows start at 2·o.
    CaffeCeil,
}

impl PoolPadding {
    /// Output length along an axis of length `n` (≥ 1), and the padding before the first window.
    pub fn geometry(self, n: usize) -> (usize, usize) {
        match self {
            PoolPadding::Torch => ((n - 1) / 2 + 1, 1),
            PoolPadding::TfSame => (n.div_ceil(2), n % 2),
            PoolPadding::CaffeCeil => (n.saturating_sub(3).div_ceil(2) + 1, 0),
        }
    }
}

/// A 3×3, stride-2 max-pool. Padded positions never win (they are −∞ in every framework), so
/// every output is the maximum over its window's positions inside the image.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaxPool3x3S2 {
    pub padding: PoolPadding,
}

impl MaxPool3x3S2 {
    /// Writes every element of `out` (one output plane), separably: each output row's window rows
    /// are reduced to one row (whole rows at a time, which vectorises), then each output takes
    /// the maximum of its columns of it. NaN propagates, as in PyTorch. With `map` ((scale,
    /// shift), relu) the input values are first mapped as the normalization kernel maps them
    /// (a normalization folded into the pool).
    fn plane(&self, x: &[f32], h: usize, w: usize, map: Option<((f32, f32), bool)>, out: &mut [MaybeUninit<f32>]) {
        let ((_, py), (wo, px)) = (self.padding.geometry(h), self.padding.geometry(w));
        let take = |m: f32, v: f32| if v > m || v.is_nan() { v } else { m };
        let mut rows = vec![f32::NEG_INFINITY; w];
        for (oy, row) in out.chunks_mut(wo).enumerate() {
            let y0 = (2 * oy).saturating_sub(py);
            let y1 = (2 * oy + 3).saturating_sub(py).min(h);
            rows.fill(f32::NEG_INFINITY);
            for y in y0..y1 {
                let src = &x[y * w..(y + 1) * w];
                match map {
                    None => rows.iter_mut().zip(src).for_each(|(m, &v)| *m = take(*m, v)),
                    Some(((scale, shift), true)) => {
                        rows.iter_mut().zip(src).for_each(|(m, &v)| *m = take(*m, (v * scale + shift).max(0.0)))
                    }
                    Some(((scale, shift), false)) => rows.iter_mut().zip(src).for_each(|(m, &v)| *m = take(*m, v * scale + shift)),
                }
            }
            // Outputs whose window lies inside the row take its three values in a loop without
            // bounds (it vectorises); the edges fold over their clipped windows. Same order of
            // comparisons either way, so the same bits.
            let inside = px.div_ceil(2)..if w + px >= 3 { ((w + px - 3) / 2 + 1).min(wo) } else { 0 };
            let edge = |ox: usize| {
                let x0 = (2 * ox).saturating_sub(px);
                let x1 = (2 * ox + 3).saturating_sub(px).min(w);
                rows[x0..x1].iter().fold(f32::NEG_INFINITY, |m, &v| take(m, v))
            };
            if inside.start < inside.end {
                let first = 2 * inside.start - px;
                let windows = rows[first..first + 2 * inside.len() + 1].windows(3).step_by(2);
                for (o, v) in row[inside.clone()].iter_mut().zip(windows) {
                    o.write(take(take(take(f32::NEG_INFINITY, v[0]), v[1]), v[2]));
                }
            }
            for ox in (0..inside.start.min(wo)).chain(inside.end.max(inside.start)..wo) {
                row[ox].write(edge(ox));
            }
        }
    }
}

impl CustomOp1 for MaxPool3x3S2 {
    fn name(&self) -> &'static str {
        "max-pool-3x3-s2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        self.forward(s, l, |_, _| None)
    }
}

impl MaxPool3x3S2 {
    /// The pool of one input tensor, its planes first mapped by `affine(x, n)` ((scale, shift) per
    /// (n, c) plane, and the ReLU) when that gives one.
    fn forward(
        &self,
        s: &CpuStorage,
        l: &Layout,
        affine: impl FnOnce(&[f32], usize) -> Option<(Vec<(f32, f32)>, bool)>,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        if h == 0 || w == 0 {
            candle_core::bail!("max-pool-3x3-s2: empty input {:?}", l.shape());
        }
        let x = contiguous_f32("max-pool-3x3-s2", s, l)?;
        let (ho, wo) = (self.padding.geometry(h).0, self.padding.geometry(w).0);
        if n * c == 0 {
            return Ok((CpuStorage::F32(Vec::new()), Shape::from((n, c, ho, wo))));
        }
        let affine = affine(x, n);
        let fill = |out: &mut [MaybeUninit<f32>]| {
            let threads = threads_for(x.len());
            crate::parallel::chunks_mut(threads, out, ho * wo, |first, run| {
                for (i, (o, x)) in run.chunks_mut(ho * wo).zip(x[first * h * w..].chunks(h * w)).enumerate() {
                    let map = affine.as_ref().map(|(a, relu)| (a[first + i], *relu));
                    self.plane(x, h, w, map, o);
                }
            });
        };
        // SAFETY: one output plane per input plane, each fully written by `plane`.
        let out = unsafe { crate::parallel::output_buffer(n * c * ho * wo, fill) };
        Ok((CpuStorage::F32(out), Shape::from((n, c, ho, wo))))
    }
}

/// A normalization (then its ReLU) followed by the 3×3/2 max-pool, in one pass over the input:
/// the scale and shift per plane from the input's moments ([`crate::norm`]), applied as the pool
/// reads each value, so the normalized map is never written out (the same bits as the two
/// operations).
#[derive(Debug)]
pub(crate) struct NormMaxPool<'a, K> {
    pub norm: &'a K,
    pub pool: MaxPool3x3S2,
    /// The input planes' moments where the operation that made the input computed them.
    pub input_moments: Option<Vec<crate::norm::Moments>>,
}

impl<K: crate::norm::PlaneAffine + std::fmt::Debug> CustomOp1 for NormMaxPool<'_, K> {
    fn name(&self) -> &'static str {
        "norm-max-pool-3x3-s2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        self.norm.check(n, c, h, w)?;
        let known = self.input_moments.as_deref();
        self.pool.forward(s, l, |x, n| Some((crate::norm::plane_affine(self.norm, x, known, n, c, h * w), self.norm.relu())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn residual_add_matches_candle() -> Result<()> {
        let dev = Device::Cpu;
        for len in [7usize, 3 * CHUNK + 5] {
            let a = Tensor::randn(0f32, 1.0, (1, 1, 1, len), &dev)?;
            let b = Tensor::randn(0f32, 1.0, (1, 1, 1, len), &dev)?;
            for relu in [false, true] {
                let got = a.apply_op2_no_bwd(&b, &ResidualAdd { relu })?;
                let want = if relu { (&a + &b)?.relu()? } else { (&a + &b)? };
                assert_eq!(got.flatten_all()?.to_vec1::<f32>()?, want.flatten_all()?.to_vec1::<f32>()?);
            }
        }
        Ok(())
    }

    /// Against −∞ padding and candle's max-pool, odd and even sizes, negative inputs included.
    #[test]
    fn max_pool_matches_padded_pool() -> Result<()> {
        let dev = Device::Cpu;
        for (h, w) in [(112, 112), (7, 5), (1, 1), (2, 3), (9, 10)] {
            let x = Tensor::randn(0f32, 1.0, (2, 3, h, w), &dev)?;
            let got = x.apply_op1_no_bwd(&MaxPool3x3S2::default())?;
            // Pad with a value below every input: −∞ in effect.
            let low = x.flatten_all()?.min(0)?.to_scalar::<f32>()? - 1.0;
            let padded = (x - low as f64)?.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
            let want = (padded.max_pool2d_with_stride(3, 2)? + low as f64)?;
            assert_eq!(got.dims(), want.dims(), "{h}x{w}");
            let (g, e) = (got.flatten_all()?.to_vec1::<f32>()?, want.flatten_all()?.to_vec1::<f32>()?);
            for (g, e) in g.iter().zip(&e) {
                assert!((g - e).abs() < 1e-5, "{h}x{w}: {g} vs {e}");
            }
        }
        Ok(())
    }

    /// A NaN anywhere in a window makes that output NaN, and only that one's.
    #[test]
    fn max_pool_propagates_nan() -> Result<()> {
        let mut v = vec![0.5f32; 9 * 9];
        v[4 * 9 + 4] = f32::NAN;
        let x = Tensor::from_vec(v, (1, 1, 9, 9), &Device::Cpu)?;
        let got = x.apply_op1_no_bwd(&MaxPool3x3S2::default())?.flatten_all()?.to_vec1::<f32>()?;
        // Input (4, 4) lies in the windows of outputs (oy, ox) with 2·o − 1 ≤ 4 ≤ 2·o + 1: o = 2.
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g.is_nan(), i == 2 * 5 + 2, "output {i}: {g}");
        }
        Ok(())
    }

    /// TF `'SAME'` and Caffe's ceil mode against an explicit window computation.
    #[test]
    fn framework_paddings() -> Result<()> {
        for (h, w) in [(112, 112), (7, 5), (1, 1), (2, 3), (9, 10)] {
            let x = Tensor::randn(0f32, 1.0, (1, 2, h, w), &Device::Cpu)?;
            let v = x.flatten_all()?.to_vec1::<f32>()?;
            for padding in [PoolPadding::TfSame, PoolPadding::CaffeCeil] {
                let got = x.apply_op1_no_bwd(&MaxPool3x3S2 { padding })?.flatten_all()?.to_vec1::<f32>()?;
                let ((ho, py), (wo, px)) = (padding.geometry(h), padding.geometry(w));
                let mut want = Vec::new();
                for ch in 0..2 {
                    for oy in 0..ho {
                        for ox in 0..wo {
                            let mut m = f32::NEG_INFINITY;
                            // Window rows 2·o − pad .. 2·o − pad + 3, inside the image.
                            for y in (2 * oy).saturating_sub(py)..(2 * oy + 3 - py).min(h) {
                                for xx in (2 * ox).saturating_sub(px)..(2 * ox + 3 - px).min(w) {
                                    m = m.max(v[ch * h * w + y * w + xx]);
                                }
                            }
                            want.push(m);
                        }
                    }
                }
                assert_eq!(got, want, "{padding:?} {h}x{w}");
            }
        }
        // 112 → 56 in every convention; odd sizes differ.
        assert_eq!([PoolPadding::Torch, PoolPadding::TfSame, PoolPadding::CaffeCeil].map(|p| p.geometry(112).0), [56, 56, 56]);
        assert_eq!([PoolPadding::Torch, PoolPadding::TfSame, PoolPadding::CaffeCeil].map(|p| p.geometry(7).0), [4, 4, 3]);
        // TF pads an odd axis by one on each side (as PyTorch does), an even one only after.
        assert_eq!(PoolPadding::TfSame.geometry(31), (16, 1));
        assert_eq!(PoolPadding::TfSame.geometry(34), (17, 0));
        Ok(())
    }
}
