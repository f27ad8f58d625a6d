//! The classifier: y = x · Wᵀ + b for f32 rows `x` (N × K) and a weight matrix W (M × K,
//! PyTorch's `nn.Linear` layout), as a kernel that follows [`crate::parallel`].
//!
//! candle's matmul hands this product to the `gemm` crate with W transposed: for one image it
//! ran on one thread while the kernels' helper waited, and candle asked the OS for the number
//! of physical CPUs (reading `/proc/cpuinfo`) on every call — together 4 % of a batch-1 bf16
//! forward pass of ResNet-50. Here each output is a dot product of two contiguous rows, and
//! the outputs are split over [`crate::parallel::threads`].
//!
//! Each dot product keeps 64 partial sums (element k goes to sum k mod 64), adds them pairwise
//! (64 → 32 → … → 1), then the tail past the last whole 64, then the bias. Rust never contracts
//! `a·b + c` into an FMA, so the AVX-512, AVX2 and portable builds of the same loop give the
//! same bits (tested).

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape};

use crate::parallel::contiguous_f32;

/// Partial sums per dot product.
const LANES: usize = 64;

/// Products (K·M multiply-adds per row) below which the layer stays on the calling thread.
const PARALLEL_MIN_PRODUCTS: usize = 1 << 16;

/// Σ a[k]·b[k] in [`LANES`] partial sums added pairwise (the module's order).
#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    let whole = a.len().min(b.len()) / LANES * LANES;
    let mut acc = [0f32; LANES];
    for (x, y) in a[..whole].chunks_exact(LANES).zip(b[..whole].chunks_exact(LANES)) {
        for j in 0..LANES {
            acc[j] += x[j] * y[j];
        }
    }
    let mut width = LANES / 2;
    while width > 0 {
        for j in 0..width {
            acc[j] += acc[j + width];
        }
        width /= 2;
    }
    let mut sum = acc[0];
    for (x, y) in a[whole..].iter().zip(&b[whole..]) {
        sum += x * y;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    dot_body(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_body(a, b)
}

/// Which build of the dot product runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Avx512,
    Avx2,
    Portable,
}

impl Level {
    /// The best this CPU runs.
    pub fn detect() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return Level::Avx512;
            }
            if is_x86_feature_detected!("avx2") {
                return Level::Avx2;
            }
        }
        Level::Portable
    }

    /// Whether this CPU runs `self`.
    pub fn supported(self) -> bool {
        match self {
            Level::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => is_x86_feature_detected!("avx2"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            // SAFETY: the level was checked to be supported (`forward_at` asserts it).
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { dot_avx512(a, b) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { dot_avx2(a, b) },
            _ => dot_body(a, b),
        }
    }
}

/// y = x · Wᵀ (+ bias) for `x` (N × K row-major), `w` (M × K) and `bias` (M), into every
/// element of `out` (N × M), with the dot products built for `level` and split over `threads`.
/// Panics if the sizes do not fit or this CPU lacks `level`.
pub fn forward_at(
    level: Level,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    (n, k, m): (usize, usize, usize),
    out: &mut [MaybeUninit<f32>],
    threads: usize,
) {
    assert!(level.supported(), "linear: this CPU lacks {level:?}");
    assert!(x.len() == n * k && w.len() == m * k && out.len() == n * m, "linear: operands do not fit {n}x{k} · ({m}x{k})ᵀ");
    assert!(bias.is_none_or(|b| b.len() == m), "linear: the bias does not have {m} values");
    // Output columns (classes) per part: each part reads its own rows of W once for all N rows.
    let threads = if k * m < PARALLEL_MIN_PRODUCTS { 1 } else { threads };
    let out_addr = out.as_mut_ptr() as usize;
    crate::parallel::split_range(threads, m, |cols| {
        for o in cols {
            let row = &w[o * k..(o + 1) * k];
            for i in 0..n {
                let v = level.dot(&x[i * k..(i + 1) * k], row);
                let v = match bias {
                    Some(b) => v + b[o],
                    None => v,
                };
                // SAFETY: `out` holds n·m elements (asserted) and each (i, o) is written by the
                // one range that holds column o.
                unsafe { (*(out_addr as *mut MaybeUninit<f32>).add(i * m + o)).write(v) };
            }
        }
    });
}

/// The fully connected layer as a candle operation: `x.apply_op2(w)` or, with a bias,
/// `x.apply_op3(w, bias)`.
#[derive(Debug, Clone, Copy)]
pub struct Linear;

impl Linear {
    fn run(x: (&CpuStorage, &Layout), w: (&CpuStorage, &Layout), bias: Option<(&CpuStorage, &Layout)>) -> Result<(CpuStorage, Shape)> {
        let (n, k) = x.1.shape().dims2()?;
        let (m, kw) = w.1.shape().dims2()?;
        if k != kw {
            candle_core::bail!("linear: input {:?} and weight {:?} do not fit", x.1.shape(), w.1.shape());
        }
        let bias = match bias {
            Some((s, l)) if l.shape().dims() == [m] => Some(contiguous_f32("linear", s, l)?),
            Some((_, l)) => candle_core::bail!("linear: bias {:?} for {m} outputs", l.shape()),
            None => None,
        };
        let (xv, wv) = (contiguous_f32("linear", x.0, x.1)?, contiguous_f32("linear", w.0, w.1)?);
        let threads = crate::parallel::threads();
        // SAFETY: `forward_at` writes every element of the n·m output.
        let out =
            unsafe { crate::parallel::output_buffer(n * m, |out| forward_at(Level::detect(), xv, wv, bias, (n, k, m), out, threads)) };
        Ok((CpuStorage::F32(out), Shape::from((n, m))))
    }
}

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        Self::run((s1, l1), (s2, l2), None)
    }
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Self::run((s1, l1), (s2, l2), Some((s3, l3)))
    }
}
