//! An inference convolution for the CPU: im2col straight from NCHW into a [C_in·k·k, H_out·W_out]
//! matrix, then one GEMM per image with the weights in their stored [C_out, C_in·k·k] layout — no
//! NHWC transposition and no weight repacking per call, unlike candle's generic CPU path. 1×1
//! stride-1 convolutions multiply the input directly. Both steps spread over the kernels' threads unless
//! the calling thread runs [`serially`](crate::parallel::serially).

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

use crate::gemm_bf16::RowAffine;
use crate::norm::Moments;
use crate::parallel::contiguous_f32;
use crate::plane_stats::Partial;

/// A kernel's reusable buffer.
pub(crate) trait Scratch: Default {
    fn capacity(&self) -> usize;
}

impl<T> Scratch for Vec<T> {
    fn capacity(&self) -> usize {
        Vec::capacity(self)
    }
}

impl Scratch for crate::gemm_bf16::AlignedBf16 {
    fn capacity(&self) -> usize {
        crate::gemm_bf16::AlignedBf16::capacity(self)
    }
}

/// A thread's scratch buffer, taken out of its slot (an empty one when it is in use further up
/// this thread's stack).
pub(crate) fn take_scratch<T: Scratch>(slot: &'static std::thread::LocalKey<RefCell<T>>) -> T {
    slot.with_borrow_mut(std::mem::take)
}

/// Puts a scratch buffer back, keeping the larger of it and what the slot holds now.
pub(crate) fn return_scratch<T: Scratch>(slot: &'static std::thread::LocalKey<RefCell<T>>, buffer: T) {
    slot.with_borrow_mut(|s| {
        if buffer.capacity() > s.capacity() {
            *s = buffer;
        }
    });
}

/// Most floats of an im2col matrix at once (2 MB): larger ones (ResNet's 7×7 stem, 7.4 MB per
/// image) are made and multiplied a run of output rows at a time, so the scratch each thread
/// keeps stays small. The GEMM's sums do not depend on the number of columns (the `gemm`
/// crate's depth blocking depends on the depth alone), so the results are the same bits.
const MAX_COLUMNS: usize = 1 << 19;

thread_local! {
    /// The im2col matrix, kept between calls (every element is written before the GEMM reads it).
    static COLUMNS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Square-kernel 2-d convolution without bias (the ResNet convolutions).
#[derive(Debug, Clone, Copy)]
pub struct Conv2dIm2col {
    pub stride: usize,
    pub padding: usize,
}

/// The geometry of one convolution.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    p: usize,
    ho: usize,
    wo: usize,
}

impl Geometry {
    /// The geometry of a k×k convolution of an H×W input; an error names `op` when it does not fit.
    fn new(op: &str, (h, w): (usize, usize), k: usize, s: usize, p: usize) -> Result<Self> {
        if s == 0 || k == 0 {
            candle_core::bail!("{op}: stride and kernel must be positive");
        }
        if h + 2 * p < k || w + 2 * p < k {
            candle_core::bail!("{op}: kernel larger than the padded input");
        }
        Ok(Geometry { h, w, k, s, p, ho: (h + 2 * p - k) / s + 1, wo: (w + 2 * p - k) / s + 1 })
    }

    /// Calls `f(i, rows, rhs)` for each image `i` of the contiguous (N, C_in, H, W) input `x` and
    /// each run `rows` of its output rows, with the right-hand side of those outputs
    /// [C_in·k·k, rows·W_out]: the image itself for a 1×1 stride-1 convolution (all rows at
    /// once), else its im2col matrix (in this thread's scratch buffer, filled by `threads`
    /// threads), in runs of at most [`MAX_COLUMNS`] floats.
    fn for_each_rhs(&self, x: &[f32], c_in: usize, threads: usize, mut f: impl FnMut(usize, std::ops::Range<usize>, &[f32])) {
        let direct = self.is_direct();
        let kk = c_in * self.k * self.k;
        let rows = (MAX_COLUMNS / (kk * self.wo).max(1)).clamp(1, self.ho.max(1));
        let len = kk * rows * self.wo;
        // The scratch buffer is taken out of the thread-local for the duration: while this
        // thread waits inside a parallel section it may run another convolution's task (another
        // forward on the same pool), which then finds no buffer and makes its own, rather than
        // borrowing the one in use.
        let mut scratch = take_scratch(&COLUMNS);
        if !direct && scratch.len() < len {
            scratch.resize(len, 0.0);
        }
        for (i, xi) in x.chunks(c_in * self.h * self.w).enumerate() {
            if direct {
                f(i, 0..self.ho, xi);
                continue;
            }
            for first in (0..self.ho).step_by(rows) {
                let run = first..(first + rows).min(self.ho);
                let cols = &mut scratch[..kk * run.len() * self.wo];
                self.im2col(xi, run.clone(), cols, threads);
                f(i, run, cols);
            }
        }
        return_scratch(&COLUMNS, scratch);
    }

    /// Each image's im2col matrix (or the image itself) times the weights, into `out`.
    fn im2col_gemm(
        &self,
        x: &[f32],
        weights: &[f32],
        n: usize,
        (c_in, c_out): (usize, usize),
        out: &mut [MaybeUninit<f32>],
        threads: usize,
    ) {
        let (kk, hwo) = (c_in * self.k * self.k, self.ho * self.wo);
        self.for_each_rhs(&x[..n * c_in * self.h * self.w], c_in, threads, |i, rows, rhs| {
            let dst = &mut out[i * c_out * hwo + rows.start * self.wo..(i + 1) * c_out * hwo];
            gemm_f32(weights, rhs, (c_out, kk, rows.len() * self.wo), dst, hwo, threads);
        })
    }

    /// Whether the convolution multiplies the image itself (1×1, stride 1, no padding).
    fn is_direct(&self) -> bool {
        self.k == 1 && self.s == 1 && self.p == 0
    }

    /// Fills `col` ([C_in·k·k, len(oys)·W_out]) from one image `xi` ([C_in, H, W]) for the
    /// output rows `oys`, its rows spread over `threads` threads.
    fn im2col(&self, xi: &[f32], oys: std::ops::Range<usize>, col: &mut [f32], threads: usize) {
        let len = oys.len() * self.wo;
        crate::parallel::chunks_mut(threads, col, len, |first, rows| {
            for (i, row) in rows.chunks_mut(len).enumerate() {
                self.im2col_row(xi, first + i, oys.clone(), row);
            }
        });
    }

    /// Row `r` (input channel r / k², kernel offset r mod k²) of image `xi`'s im2col matrix,
    /// output rows `oys`: len(oys)·W_out values.
    fn im2col_row(&self, xi: &[f32], r: usize, oys: std::ops::Range<usize>, row: &mut [f32]) {
        let Geometry { h, w, k, s, p, wo, .. } = *self;
        let (ci, ky, kx) = (r / (k * k), (r / k) % k, r % k);
        let plane = &xi[ci * h * w..(ci + 1) * h * w];
        // Output columns whose input column ix = ox·s + kx − p lies inside the image.
        let lo = (p.saturating_sub(kx)).div_ceil(s).min(wo);
        let hi = if w + p > kx { ((w + p - kx - 1) / s + 1).min(wo) } else { 0 }.max(lo);
        if s == 1 && wo == w && hi > lo {
            // A "same" stride-1 convolution: the row's valid part is the plane shifted by
            // (ky − p) rows and (kx − p) columns, i.e. one copy of consecutive values, whose
            // positions outside [lo, hi) of each output row (values of the neighbouring input row)
            // are then zeroed. One copy instead of one per output row (14 of 14 values each at
            // ResNet's 14×14 stage, where the per-row copies cost 5 % of an f32 forward pass).
            let (oy0, n) = (oys.start, oys.len());
            // Output rows j whose input row oy0 + j + ky − p lies inside the image.
            let first_j = (p as isize - (oy0 + ky) as isize).clamp(0, n as isize) as usize;
            let end_j = (h as isize + p as isize - (oy0 + ky) as isize).clamp(first_j as isize, n as isize) as usize;
            row[..first_j * wo].fill(0.0);
            row[end_j * wo..n * wo].fill(0.0);
            if end_j > first_j {
                let (t0, t1) = (first_j * wo + lo, (end_j - 1) * wo + hi);
                // Input index of output index t: t + (oy0 + ky − p)·w + kx − p (≥ 0 from t0 on).
                let src0 = ((oy0 + first_j + ky - p) * w + lo + kx) - p;
                row[t0..t1].copy_from_slice(&plane[src0..src0 + (t1 - t0)]);
                for j in first_j..end_j {
                    row[j * wo..j * wo + lo].fill(0.0);
                    row[j * wo + hi..(j + 1) * wo].fill(0.0);
                }
            }
            return;
        }
        for (j, oy) in oys.enumerate() {
            let dst = &mut row[j * wo..(j + 1) * wo];
            let iy = (oy * s + ky) as isize - p as isize;
            if iy < 0 || iy >= h as isize {
                dst.fill(0.0);
                continue;
            }
            let src = &plane[iy as usize * w..(iy as usize + 1) * w];
            dst[..lo].fill(0.0);
            dst[hi..].fill(0.0);
            if hi == lo {
                continue;
            }
            let first = lo * s + kx - p;
            if s == 1 {
                dst[lo..hi].copy_from_slice(&src[first..first + (hi - lo)]);
            } else {
                for (d, &v) in dst[lo..hi].iter_mut().zip(src[first..].iter().step_by(s)) {
                    *d = v;
                }
            }
        }
    }
}

/// C[M×N] = A[M×K] · B[K×N] (all row-major, C with row stride `ldc`, written whole) by the `gemm` crate, split over
/// `threads` parts of the kernels' pool ([`crate::parallel::run_parts`]): by columns when A is
/// the smaller operand (each part then packs all of A and its own columns of B), else by rows.
/// (The crate's own threading runs on rayon, whose sleeping workers the pool's spinning helpers
/// would compete with.)
fn gemm_f32(a: &[f32], b: &[f32], (m, k, n): (usize, usize, usize), c: &mut [MaybeUninit<f32>], ldc: usize, threads: usize) {
    assert!(n <= ldc && a.len() >= m * k && b.len() >= k * n && (m == 0 || c.len() >= (m - 1) * ldc + n), "gemm_f32: operands too short");
    let by_columns = m <= n;
    let parts = threads.clamp(1, if by_columns { n.div_ceil(16) } else { m.div_ceil(16) }.max(1));
    let c_addr = c.as_mut_ptr() as usize;
    crate::parallel::run_parts(parts, |part| {
        // Parts are whole multiples of 16 rows or columns but the last.
        let split = |len: usize| {
            let units = len.div_ceil(16);
            ((units * part / parts) * 16).min(len)..((units * (part + 1) / parts) * 16).min(len)
        };
        let (rows, cols) = if by_columns { (0..m, split(n)) } else { (split(m), 0..n) };
        if rows.is_empty() || cols.is_empty() {
            return;
        }
        // SAFETY: the parts' blocks of C are disjoint; A and B hold the m×k and k×n row-major
        // matrices and C the m×n one with row stride ldc (checked above), and the block's
        // pointers and strides stay inside them.
        unsafe {
            gemm_single(
                (rows.len(), cols.len(), k),
                ((c_addr as *mut f32).add(rows.start * ldc + cols.start), 1, ldc as isize),
                (a.as_ptr().add(rows.start * k), 1, k as isize),
                (b.as_ptr().add(cols.start), 1, n as isize),
            )
        };
    });
}

/// C[m×n] = A[m×k] · B[k×n] on the calling thread by the `gemm` crate, each matrix given as
/// (pointer, column stride, row stride); C is written whole and never read.
///
/// # Safety
/// Every element the strides address lies inside its matrix's allocation, C's elements are
/// distinct and nobody else touches them meanwhile.
pub(crate) unsafe fn gemm_single(
    (m, n, k): (usize, usize, usize),
    (c, c_cs, c_rs): (*mut f32, isize, isize),
    (a, a_cs, a_rs): (*const f32, isize, isize),
    (b, b_cs, b_rs): (*const f32, isize, isize),
) {
    // SAFETY: the caller's contract; with `read_dst` false the GEMM writes every element of C and
    // reads none.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            c_cs,
            c_rs,
            false,
            a,
            a_cs,
            a_rs,
            b,
            b_cs,
            b_rs,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

impl CustomOp2 for Conv2dIm2col {
    fn name(&self) -> &'static str {
        "conv2d-im2col-nchw"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c_in, h, w) = l1.shape().dims4()?;
        let (c_out, c_in_k, kh, kw) = l2.shape().dims4()?;
        if c_in != c_in_k || kh != kw || c_in == 0 || c_out == 0 {
            candle_core::bail!("conv2d-im2col-nchw: input {:?} and kernel {:?} do not fit", l1.shape(), l2.shape());
        }
        let x = contiguous_f32("conv2d-im2col-nchw", s1, l1)?;
        let k = contiguous_f32("conv2d-im2col-nchw", s2, l2)?;
        let geometry = Geometry::new("conv2d-im2col-nchw", (h, w), kh, self.stride, self.padding)?;
        let threads = crate::parallel::threads();
        let len = n * c_out * geometry.ho * geometry.wo;
        // SAFETY: the GEMMs write every element of every image's output.
        let out = unsafe { crate::parallel::output_buffer(len, |out| geometry.im2col_gemm(x, k, n, (c_in, c_out), out, threads)) };
        Ok((CpuStorage::F32(out), Shape::from((n, c_out, geometry.ho, geometry.wo))))
    }
}

/// The im2col + GEMM convolution of `n` images `x` ([N, C_in, H, W]) with `weights`
/// ([C_out, C_in, k, k]) into `out` ([N, C_out, H_out, W_out], every element written), on
/// `threads` parts of the kernels' pool: what [`Conv2dIm2col`] runs.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_im2col_f32(
    x: &[f32],
    weights: &[f32],
    n: usize,
    (c_in, c_out, h, w): (usize, usize, usize, usize),
    kernel: usize,
    stride: usize,
    padding: usize,
    out: &mut [MaybeUninit<f32>],
    threads: usize,
) -> Result<()> {
    let geometry = Geometry::new("conv2d-im2col-nchw", (h, w), kernel, stride, padding)?;
    if x.len() < n * c_in * h * w || weights.len() < c_out * c_in * kernel * kernel || out.len() < n * c_out * geometry.ho * geometry.wo {
        candle_core::bail!("conv2d-im2col-nchw: operands too short");
    }
    geometry.im2col_gemm(x, weights, n, (c_in, c_out), out, threads);
    Ok(())
}

thread_local! {
    /// The bf16-packed right-hand side of [`Conv2dBf16`], kept between calls.
    static PACKED_COLUMNS: RefCell<crate::gemm_bf16::AlignedBf16> = const { RefCell::new(crate::gemm_bf16::AlignedBf16::new()) };
}

/// A convolution's weights rounded to bf16 and packed for the kernel that runs them.
#[derive(Debug, Clone)]
pub enum PackedWeights {
    /// For [`crate::gemm_bf16`] (AVX-512 BF16).
    Avx512(std::sync::Arc<crate::gemm_bf16::PackedA>),
    /// For [`crate::gemm_amx`] (AMX tiles).
    Amx(std::sync::Arc<crate::gemm_amx::PackedA>),
}

impl PackedWeights {
    /// The [C_out, C_in·k·k] weights packed for the best bf16 kernel of this CPU: AMX where
    /// [`crate::gemm_amx::available`], else AVX-512 BF16.
    pub fn new(weights: &[f32], c_out: usize, depth: usize) -> Self {
        if crate::gemm_amx::available() {
            Self::Amx(std::sync::Arc::new(crate::gemm_amx::PackedA::new(weights, c_out, depth)))
        } else {
            Self::Avx512(std::sync::Arc::new(crate::gemm_bf16::PackedA::new(weights, c_out, depth)))
        }
    }

    fn rows_depth(&self) -> (usize, usize) {
        match self {
            Self::Avx512(a) => (a.rows(), a.depth()),
            Self::Amx(a) => (a.rows(), a.depth()),
        }
    }

    /// Whether this CPU runs the kernel the weights were packed for.
    fn available(&self) -> bool {
        match self {
            Self::Avx512(_) => crate::gemm_bf16::available(),
            Self::Amx(_) => crate::gemm_amx::available(),
        }
    }

    /// K-pairs per panel of a matching packed B.
    fn pairs(&self) -> usize {
        match self {
            Self::Avx512(a) => a.depth().div_ceil(2),
            Self::Amx(a) => a.pairs(),
        }
    }

    /// C = weights · B by the kernel the weights were packed for, and with `partials` its rows'
    /// moments in each 32-column panel.
    fn gemm_into(&self, b: &[u16], n: usize, c: &mut [MaybeUninit<f32>], threads: usize, partials: Option<&mut [Partial]>) {
        match self {
            Self::Avx512(a) => crate::gemm_bf16::gemm_into_with_partials(a, b, n, c, n, threads, partials),
            Self::Amx(a) => crate::gemm_amx::gemm_into_with_partials(a, b, n, c, n, threads, partials),
        }
    }
}

/// The same convolution with bf16 inputs and weights and f32 accumulation
/// ([`crate::gemm_bf16`] or [`crate::gemm_amx`], as the weights were packed): the weights are
/// packed once (held here), each image's im2col matrix (or, for 1×1 stride-1, the image itself)
/// is rounded and packed per call, the im2col matrix straight from a bf16 copy of the image
/// ([`crate::im2col_bf16`]; no f32 im2col matrix). Output in f32.
#[derive(Debug, Clone)]
pub struct Conv2dBf16 {
    pub stride: usize,
    pub padding: usize,
    pub kernel: usize,
    pub weights: PackedWeights,
}

/// A convolution that can map its input's channels by a per-plane affine (then ReLU) as it
/// reads them: the second half of [`NormConv`].
pub(crate) trait MappedConv {
    const NAME: &'static str;

    /// (C_out, H_out, W_out) of this convolution of a (C_in, H, W) image; an error when the input
    /// does not fit or the CPU lacks the kernel.
    fn output(&self, c_in: usize, h: usize, w: usize) -> Result<(usize, usize, usize)>;

    /// Whether [`MappedConv::run`] computes its output planes' moments.
    const MOMENTS: bool = false;

    /// The convolution of the `n` contiguous (C_in, H, W) images `x` into `out` (every element
    /// written), `image` = (C_in, H, W), each image's channels first mapped by `affine` (N·C_in
    /// entries) when given; where [`MappedConv::MOMENTS`] and `moments` is given, also the
    /// moments of each of the N·C_out output planes.
    fn run(
        &self,
        x: &[f32],
        n: usize,
        image: (usize, usize, usize),
        affine: Option<RowAffine>,
        out: &mut [MaybeUninit<f32>],
        moments: Option<&mut [Moments]>,
    );

    /// The operation's result on one input tensor; with `moments` its output planes' moments go
    /// there, where the convolution computes them.
    fn forward(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        affine: impl FnOnce(&[f32], usize) -> Option<(Vec<(f32, f32)>, bool)>,
        moments: Option<&OnceLock<Vec<Moments>>>,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c_in, h, w) = l1.shape().dims4()?;
        let (c_out, ho, wo) = self.output(c_in, h, w)?;
        let x = contiguous_f32(Self::NAME, s1, l1)?;
        let affine = affine(x, n);
        let map = affine.as_ref().map(|(a, relu)| RowAffine { affine: a, relu: *relu });
        let mut stats = (Self::MOMENTS && moments.is_some()).then(|| vec![Moments { mean: 0.0, m2: 0.0 }; n * c_out]);
        // SAFETY: `run` writes every element.
        let out = unsafe {
            crate::parallel::output_buffer(n * c_out * ho * wo, |out| self.run(x, n, (c_in, h, w), map, out, stats.as_deref_mut()))
        };
        if let (Some(stats), Some(moments)) = (stats, moments) {
            let _ = moments.set(stats);
        }
        Ok((CpuStorage::F32(out), Shape::from((n, c_out, ho, wo))))
    }
}

impl MappedConv for Conv2dBf16 {
    const NAME: &'static str = "conv2d-bf16";

    fn output(&self, c_in: usize, h: usize, w: usize) -> Result<(usize, usize, usize)> {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let (c_out, kk) = self.weights.rows_depth();
        if kk != c_in * k * k || c_in == 0 || c_out == 0 || s == 0 {
            candle_core::bail!("conv2d-bf16: a {c_in}-channel input does not fit {c_out}x{kk} packed weights ({k}x{k})");
        }
        if !self.weights.available() {
            candle_core::bail!("conv2d-bf16 needs a CPU with AVX-512 BF16 (or AMX for AMX-packed weights)");
        }
        let g = Geometry::new("conv2d-bf16", (h, w), k, s, p)?;
        Ok((c_out, g.ho, g.wo))
    }

    const MOMENTS: bool = true;

    fn run(
        &self,
        x: &[f32],
        n: usize,
        (c_in, h, w): (usize, usize, usize),
        affine: Option<RowAffine>,
        out: &mut [MaybeUninit<f32>],
        mut moments: Option<&mut [Moments]>,
    ) {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        let (c_out, kk) = self.weights.rows_depth();
        let geometry = Geometry::new("conv2d-bf16", (h, w), k, s, p).expect("checked by `output`");
        let hwo = geometry.ho * geometry.wo;
        let threads = crate::parallel::threads();
        let pairs = self.weights.pairs();
        use crate::plane_stats::PANEL;
        let mut partials = match moments {
            Some(_) => vec![Partial::default(); c_out * hwo.div_ceil(PANEL)],
            None => Vec::new(),
        };
        let mut packed = take_scratch(&PACKED_COLUMNS);
        for (i, xi) in x.chunks(c_in * h * w).enumerate().take(n) {
            let map = affine.map(|a| RowAffine { affine: &a.affine[i * c_in..(i + 1) * c_in], relu: a.relu });
            // The right-hand side, rounded and packed: the image itself for a 1×1 stride-1
            // convolution, else its im2col matrix (`im2col_bf16`).
            if geometry.is_direct() {
                crate::gemm_bf16::pack_b_pairs(xi, kk, hwo, hwo, pairs, threads, map, &mut packed);
            } else {
                let shape = crate::im2col_bf16::Im2colShape { channels: c_in, height: h, width: w, kernel: k, stride: s, padding: p };
                crate::im2col_bf16::pack_b_im2col(xi, shape, pairs, threads, map, &mut packed);
            }
            let c = &mut out[i * c_out * hwo..(i + 1) * c_out * hwo];
            match moments.as_deref_mut() {
                Some(m) => {
                    self.weights.gemm_into(&packed, hwo, c, threads, Some(&mut partials));
                    crate::plane_stats::merge(&partials, hwo, PANEL, &mut m[i * c_out..(i + 1) * c_out], threads);
                }
                None => self.weights.gemm_into(&packed, hwo, c, threads, None),
            }
        }
        return_scratch(&PACKED_COLUMNS, packed);
    }
}

impl CustomOp1 for Conv2dBf16 {
    fn name(&self) -> &'static str {
        <Self as MappedConv>::NAME
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout) -> Result<(CpuStorage, Shape)> {
        self.forward(s1, l1, |_, _| None, None)
    }
}

impl Conv2dBf16 {
    /// The convolution of the (N, C_in, H, W) tensor `x`, and the moments of each of the N·C_out
    /// output planes (image after image): their mean and sum of squared deviations, computed
    /// from each block of the output as the GEMM stored it ([`crate::plane_stats`]).
    pub fn forward_with_moments(&self, x: &Tensor) -> Result<(Tensor, Vec<Moments>)> {
        let op = Recording { conv: self, moments: OnceLock::new() };
        let y = x.contiguous()?.apply_op1_no_bwd(&op)?;
        let moments = op.moments.into_inner().ok_or_else(|| candle_core::Error::Msg("conv2d-bf16 runs on the CPU only".into()))?;
        Ok((y, moments))
    }
}

/// A convolution as an operation that keeps its output planes' moments.
#[derive(Debug)]
struct Recording<'a, C> {
    conv: &'a C,
    moments: OnceLock<Vec<Moments>>,
}

impl<C: MappedConv + std::fmt::Debug> CustomOp1 for Recording<'_, C> {
    fn name(&self) -> &'static str {
        C::NAME
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout) -> Result<(CpuStorage, Shape)> {
        self.conv.forward(s1, l1, |_, _| None, Some(&self.moments))
    }
}

/// A normalization (then its ReLU) followed by a convolution, in one operation: the
/// normalization's scale and shift per plane are computed from the input's moments as
/// [`crate::norm`] computes them, then applied as the convolution reads its input (while it is
/// rounded and packed for the bf16 GEMM, or copied into the Winograd transform's padded plane),
/// so the normalized activations are never written out and read back. The same bits as the two
/// operations.
///
/// `input_moments` are the input planes' moments where the operation that made the input
/// computed them ([`crate::plane_stats`]); the output's go to `moments` where this convolution
/// computes them.
#[derive(Debug)]
pub(crate) struct NormConv<'a, K, C> {
    pub norm: &'a K,
    pub conv: C,
    pub input_moments: Option<Vec<Moments>>,
    pub moments: OnceLock<Vec<Moments>>,
}

impl<K: crate::norm::PlaneAffine + std::fmt::Debug, C: MappedConv + std::fmt::Debug> CustomOp1 for NormConv<'_, K, C> {
    fn name(&self) -> &'static str {
        "norm-conv2d"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c_in, h, w) = l1.shape().dims4()?;
        self.norm.check(n, c_in, h, w)?;
        let known = self.input_moments.as_deref();
        self.conv.forward(
            s1,
            l1,
            |x, n| Some((crate::norm::plane_affine(self.norm, x, known, n, c_in, h * w), self.norm.relu())),
            Some(&self.moments),
        )
    }
}
