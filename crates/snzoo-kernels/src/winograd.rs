//! Winograd's minimal filtering F(4×4, 3×3) for the 3×3, stride-1, padding-1 f32 convolutions
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016, with their
//! interpolation points 0, ±1, ±2, ∞): each 4×4 block of output comes from a 6×6 block of input
//! with 36 products per input channel instead of direct convolution's 144.
//!
//! The weights are transformed once (U = G g Gᵀ, [36][C_out][C_in], [`TransformedWeights`],
//! kept with the convolution's weights). Per image the input tiles are transformed
//! (Bᵀ d B) into V [C_in][36][T] (T tiles); per slab of output channels the 36 products
//! M_ξ = V_ξᵀ·U_ξ run as GEMMs ([`gemm`] crate) and the output tiles are transformed back
//! (Aᵀ m A) into the NCHW output.
//!
//! U holds 36/9 = 4× the weights, so [`applies`] takes Winograd only where that stays small
//! (C_in·C_out ≤ [`MAX_PAIRS`]: ResNet's 56×56 and 28×28 stages, 8.9 MB for ResNet-50) and the
//! image has at least [`MIN_TILES`] tiles; the deeper stages keep im2col + GEMM.
//!
//! The transforms run 16 tiles (or 16 input channels, for the weights) per AVX-512 register:
//! the tiles' 36 inputs gathered from a zero-bordered copy of each plane, the outputs scattered
//! into the planes under masks at the edges. On AVX2-only CPUs (Zen 3, Haswell to Alder Lake)
//! they run 8 tiles per register: gathered the same way, the output tiles transposed in
//! registers and stored a 4-float row at a time (AVX2 has no scatter). The portable version
//! computes the same formulas in the same order one tile at a time (Rust never contracts
//! a·b + c into an FMA), so all three give the same bits (tested); it is there for the tests and
//! for CPUs without AVX2, where [`applies`] keeps im2col + GEMM.
//!
//! Accuracy: the transforms' rounding (and 1/6, 1/12, 1/24 in G) make the result differ from
//! direct convolution by ~1e-6 of the output's scale (tests/winograd.rs bounds it against an
//! f64 reference). `SNZOO_WINOGRAD=0` turns it off.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape};

use crate::conv::{return_scratch, take_scratch};
use crate::gemm_bf16::RowAffine;

/// Transformed points per tile (6 × 6).
const POINTS: usize = 36;

/// Fewest 4×4 output tiles per image for which [`applies`] picks Winograd (smaller GEMMs run
/// too far below the kernel's peak: `examples/conv3x3_shapes`). Per image, not per batch, so
/// that an image's result does not depend on the batch it came in.
pub const MIN_TILES: usize = 32;

/// Most C_in·C_out for which [`applies`] picks Winograd: U then takes at most 2.4 MB.
pub const MAX_PAIRS: usize = 128 * 128;

/// Output channels per slab at most.
const MAX_SLAB: usize = 64;

/// Whether Winograd runs a convolution of H×W images, C_in → C_out channels, with a k×k kernel,
/// stride `s` and padding `p`: 3×3, stride 1, padding 1, C_in·C_out ≤ [`MAX_PAIRS`], at least
/// [`MIN_TILES`] tiles per image, a CPU with AVX2 or AVX-512, and not turned off by `SNZOO_WINOGRAD=0`.
pub fn applies((k, s, p): (usize, usize, usize), (c_in, c_out): (usize, usize), (h, w): (usize, usize)) -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    k == 3
        && s == 1
        && p == 1
        && c_in * c_out <= MAX_PAIRS
        && h.div_ceil(4) * w.div_ceil(4) >= MIN_TILES
        && *ENABLED.get_or_init(|| std::env::var_os("SNZOO_WINOGRAD").is_none_or(|v| v != "0") && Level::detect().vectorised())
}

/// A 3×3, stride-1, padding-1 convolution's output channels and image size (output H×W = input H×W).
#[derive(Debug, Clone, Copy)]
struct Shape3x3 {
    c_out: usize,
    h: usize,
    w: usize,
}

impl Shape3x3 {
    /// Tile rows and columns.
    fn grid(&self) -> (usize, usize) {
        (self.h.div_ceil(4), self.w.div_ceil(4))
    }

    fn tiles(&self) -> usize {
        let (ty, tx) = self.grid();
        ty * tx
    }

    /// The zero-bordered copy of a plane that the input tiles are read from: rows and columns
    /// (one zero row and column before the plane, zeros after it up to whole tiles).
    fn padded(&self) -> (usize, usize) {
        let (ty, tx) = self.grid();
        (4 * ty + 2, 4 * tx + 2)
    }
}

/// The instructions the transforms run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// 16 tiles per register, gathers and masked scatters.
    Avx512,
    /// 8 tiles per register, gathers, and the output tiles' rows stored after a transposition.
    Avx2,
    /// One tile at a time.
    Portable,
}

impl Level {
    /// The widest this CPU runs.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Level::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Level::Avx2;
            }
        }
        Level::Portable
    }

    /// Whether this CPU runs the level's code.
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Level::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
                Level::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
                Level::Portable => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Level::Portable
        }
    }

    /// Whether the transforms run several tiles per instruction (where [`applies`] takes
    /// Winograd: one tile at a time would eat much of its saving).
    pub fn vectorised(self) -> bool {
        self != Level::Portable
    }
}

thread_local! {
    /// V of the image being computed ([C_in][36][T]).
    static TRANSFORMED_INPUT: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// The products of a slab ([36][slab][T]).
    static PRODUCTS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A convolution's weights transformed for Winograd (U = G g Gᵀ, [36][C_out][C_in]), made once
/// and kept with the weights ([`crate::ConvWeights`]): the model runs one image at a time per
/// thread, and transforming per call would redo it for every image.
#[derive(Debug)]
pub struct TransformedWeights {
    u: Vec<f32>,
    c_out: usize,
    c_in: usize,
}

impl TransformedWeights {
    /// U of the [C_out, C_in, 3, 3] weights `g`, the transforms compiled for `level`.
    pub fn new(level: Level, g: &[f32], c_out: usize, c_in: usize) -> Self {
        assert!(level.supported(), "winograd: this CPU does not run {level:?} code");
        assert!(g.len() >= c_out * c_in * 9, "winograd: weights too short");
        let mut u = vec![0f32; POINTS * c_out * c_in];
        transform_weights(level, g, c_in, 0..c_out, &mut u);
        TransformedWeights { u, c_out, c_in }
    }

    /// (C_out, C_in)
    pub fn dims(&self) -> (usize, usize) {
        (self.c_out, self.c_in)
    }
}

/// The convolution as a candle operation on a contiguous f32 (N, C_in, H, W) input.
#[derive(Debug, Clone)]
pub struct Conv2dWinograd {
    pub weights: std::sync::Arc<TransformedWeights>,
}

impl crate::conv::MappedConv for Conv2dWinograd {
    const NAME: &'static str = "conv2d-winograd";

    fn output(&self, c_in: usize, h: usize, w: usize) -> Result<(usize, usize, usize)> {
        let (c_out, c_in_u) = self.weights.dims();
        if c_in != c_in_u {
            candle_core::bail!("conv2d-winograd: a {c_in}-channel input does not fit {c_out}x{c_in_u} weights");
        }
        if c_out * h * w > i32::MAX as usize {
            candle_core::bail!("conv2d-winograd: {c_out}x{h}x{w} output planes exceed 2^31 elements");
        }
        Ok((c_out, h, w))
    }

    fn run(
        &self,
        x: &[f32],
        n: usize,
        (_, h, w): (usize, usize, usize),
        affine: Option<RowAffine>,
        out: &mut [MaybeUninit<f32>],
        _moments: Option<&mut [crate::norm::Moments]>,
    ) {
        conv3x3(x, &self.weights, n, (h, w), affine, out, crate::parallel::threads())
    }
}

impl CustomOp1 for Conv2dWinograd {
    fn name(&self) -> &'static str {
        <Self as crate::conv::MappedConv>::NAME
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout) -> Result<(CpuStorage, Shape)> {
        crate::conv::MappedConv::forward(self, s1, l1, |_, _| None, None)
    }
}

/// The 3×3, stride-1, padding-1 convolution of `n` images `x` ([N, C_in, H, W]) with the
/// transformed weights `u` into `out` ([N, C_out, H, W], every element written), spread over
/// `threads` parts of the kernels' pool; with `affine` (N·C_in entries, image after image) the
/// input's channels are mapped by it first (a normalization folded into the convolution; the
/// zero padding stays zero).
pub fn conv3x3(
    x: &[f32],
    u: &TransformedWeights,
    n: usize,
    (h, w): (usize, usize),
    affine: Option<RowAffine>,
    out: &mut [MaybeUninit<f32>],
    threads: usize,
) {
    conv3x3_at(Level::detect(), x, u, n, (h, w), affine, out, threads)
}

/// [`conv3x3`] with the transforms compiled for `level` (for the tests: every level gives the
/// same bits). Panics if the CPU lacks the level's features or the slices are too short.
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_at(
    level: Level,
    x: &[f32],
    u: &TransformedWeights,
    n: usize,
    (h, w): (usize, usize),
    affine: Option<RowAffine>,
    out: &mut [MaybeUninit<f32>],
    threads: usize,
) {
    let (c_out, c_in) = u.dims();
    let shape = Shape3x3 { c_out, h, w };
    assert!(level.supported(), "winograd: this CPU does not run {level:?} code");
    assert!(x.len() >= n * c_in * h * w && out.len() >= n * c_out * h * w, "winograd: operands too short");
    assert!(affine.is_none_or(|a| a.affine.len() >= n * c_in), "winograd: fewer affine entries than input planes");
    if n == 0 || c_out == 0 || h == 0 || w == 0 {
        return;
    }
    assert!(c_out * h * w <= i32::MAX as usize, "winograd: an output plane set past 2^31 elements");
    let tiles = shape.tiles();
    let slab = c_out.div_ceil(threads.max(1)).clamp(1, MAX_SLAB);
    let slabs = c_out.div_ceil(slab);
    // One image at a time (as im2col + GEMM does): an image's result then does not depend on
    // the batch it came in, and V stays at 36·C_in·tiles floats.
    let (t, len) = (tiles, c_in * POINTS * tiles);
    let tables = Tables::new(shape);
    let mut v = take_scratch(&TRANSFORMED_INPUT);
    if v.len() < len {
        v.resize(len, 0.0);
    }
    for image in 0..n {
        let xi = &x[image * c_in * h * w..(image + 1) * c_in * h * w];
        let map = affine.map(|a| RowAffine { affine: &a.affine[image * c_in..(image + 1) * c_in], relu: a.relu });
        if c_in > 0 {
            crate::parallel::chunks_mut(threads, &mut v[..len], POINTS * t, |c0, run| {
                transform_input(level, xi, map, shape, &tables, c0, run)
            });
        }
        let v = &v[..len];
        let out_addr = out.as_mut_ptr() as usize;
        crate::parallel::split_range(threads, slabs, |range| {
            let mut m = take_scratch(&PRODUCTS);
            for s in range {
                let cos = s * slab..((s + 1) * slab).min(c_out);
                let width = cos.len();
                if m.len() < POINTS * width * t {
                    m.resize(POINTS * width * t, 0.0);
                }
                for xi in 0..POINTS {
                    // M_ξ (T × slab, column j at m[ξ][j][..]) = V_ξᵀ (T × C_in: tile i,
                    // channel c at v[c][ξ][i]) · U_ξ (C_in × slab: channel c, output cos.start + j
                    // at u[ξ][cos.start + j][c]).
                    let mx = &mut m[xi * width * t..(xi + 1) * width * t];
                    let ux = &u.u[(xi * c_out + cos.start) * c_in..(xi * c_out + cos.end) * c_in];
                    if c_in == 0 {
                        mx.fill(0.0);
                        continue;
                    }
                    // SAFETY: the three matrices lie inside `mx` (t × width, column-major),
                    // `v` (element (i, c) at c·36t + ξt + i < len) and `ux` (width × c_in,
                    // element (c, j) at j·c_in + c).
                    unsafe {
                        crate::conv::gemm_single(
                            (t, width, c_in),
                            (mx.as_mut_ptr(), t as isize, 1),
                            (v.as_ptr().add(xi * t), (POINTS * t) as isize, 1),
                            (ux.as_ptr(), c_in as isize, 1),
                        )
                    };
                }
                // SAFETY: this part alone writes output channels `cos` of this image (parts own
                // disjoint slabs), inside `out` (checked above).
                let mut planes = unsafe { OutputPlanes::new(out_addr as *mut MaybeUninit<f32>, image, shape, cos.clone()) };
                transform_output(level, &m[..POINTS * width * t], &tables, width, &mut planes);
            }
            return_scratch(&PRODUCTS, m);
        });
    }
    return_scratch(&TRANSFORMED_INPUT, v);
}

/// Where one slab's output planes lie: channels `cos` of image `image` of an [N, C_out, H, W]
/// output.
struct OutputPlanes {
    base: *mut MaybeUninit<f32>,
    image: usize,
    shape: Shape3x3,
    cos: std::ops::Range<usize>,
}

impl OutputPlanes {
    /// # Safety
    /// `base` is an [N, C_out, H, W] buffer that nobody else reads or writes in channels `cos` of
    /// image `image` while this lives.
    unsafe fn new(base: *mut MaybeUninit<f32>, image: usize, shape: Shape3x3, cos: std::ops::Range<usize>) -> Self {
        OutputPlanes { base, image, shape, cos }
    }

    /// Where the plane of slab channel `jl` begins.
    fn plane(&mut self, jl: usize) -> *mut f32 {
        let Shape3x3 { c_out, h, w, .. } = self.shape;
        assert!(jl < self.cos.len());
        // SAFETY: inside the buffer (the contract of `new`).
        unsafe { self.base.add((self.image * c_out + self.cos.start + jl) * h * w).cast() }
    }
}

/// Per-tile offsets and edge limits of an image, shared by all its channels.
struct Tables {
    /// Tile t's top-left input in a channel's padded plane ([hp][wp]).
    in_base: Vec<i32>,
    /// Tile t's top-left output in an output plane.
    out_base: Vec<i32>,
    /// Rows and columns of tile t inside the output (1–4).
    rows: Vec<i32>,
    cols: Vec<i32>,
}

impl Tables {
    /// Whether every tile's 6×6 inputs lie inside a padded plane of `len` floats, rows of `wp`.
    fn inputs_inside(&self, len: usize, wp: usize) -> bool {
        self.in_base.iter().all(|&b| b >= 0 && b as usize + 5 * wp + 5 < len)
    }

    fn new(shape: Shape3x3) -> Self {
        let Shape3x3 { h, w, .. } = shape;
        let (tyn, txn) = shape.grid();
        let wp = shape.padded().1;
        let t = tyn * txn;
        let mut tables = Tables {
            in_base: Vec::with_capacity(t),
            out_base: Vec::with_capacity(t),
            rows: Vec::with_capacity(t),
            cols: Vec::with_capacity(t),
        };
        for ty in 0..tyn {
            for tx in 0..txn {
                tables.in_base.push((4 * ty * wp + 4 * tx) as i32);
                tables.out_base.push((4 * ty * w + 4 * tx) as i32);
                tables.rows.push((h - 4 * ty).min(4) as i32);
                tables.cols.push((w - 4 * tx).min(4) as i32);
            }
        }
        tables
    }
}

/// The transforms' formulas on scalars and, compiled for AVX2 and AVX-512, on 8 and 16 lanes:
/// the same operations in the same order, so the same bits per lane.
macro_rules! formulas {
    ($(#[$attr:meta])* $v:ty, $add:expr, $sub:expr, $scale:expr) => {
        /// Bᵀ d for one column d of an input tile.
        $(#[$attr])*
        fn bt(d: [$v; 6]) -> [$v; 6] {
            let (add, sub, scale) = ($add, $sub, $scale);
            let (a, b) = (sub(d[4], scale(d[2], 4.0)), sub(scale(d[1], 4.0), d[3]));
            let (c, e) = (sub(d[4], d[2]), scale(sub(d[1], d[3]), 2.0));
            [
                add(sub(scale(d[0], 4.0), scale(d[2], 5.0)), d[4]),
                sub(a, b),
                add(a, b),
                sub(c, e),
                add(c, e),
                add(sub(scale(d[1], 4.0), scale(d[3], 5.0)), d[5]),
            ]
        }

        /// G g for one column g of a kernel.
        $(#[$attr])*
        fn gt(g: [$v; 3]) -> [$v; 6] {
            let (add, sub, scale) = ($add, $sub, $scale);
            let (a, b) = (add(g[0], g[2]), add(scale(g[0], 1.0 / 24.0), scale(g[2], 1.0 / 6.0)));
            let c = scale(g[1], 1.0 / 12.0);
            [scale(g[0], 0.25), scale(add(a, g[1]), -1.0 / 6.0), scale(sub(a, g[1]), -1.0 / 6.0), add(b, c), sub(b, c), g[2]]
        }

        /// Aᵀ m for one column m of a product tile.
        $(#[$attr])*
        fn at(m: [$v; 6]) -> [$v; 4] {
            let (add, sub, scale) = ($add, $sub, $scale);
            let (a, b, c, d) = (add(m[1], m[2]), sub(m[1], m[2]), add(m[3], m[4]), sub(m[3], m[4]));
            [add(add(m[0], a), c), add(b, scale(d, 2.0)), add(a, scale(c, 4.0)), add(add(b, scale(d, 8.0)), m[5])]
        }

        /// `f` down the columns of an N×N block, then across the rows of the result: the 6×6
        /// F b Fᵀ for the 6×N matrix F that `f` applies, row by row.
        $(#[$attr])*
        fn sandwich<const N: usize>(b: [[$v; N]; N], f: impl Fn([$v; N]) -> [$v; 6]) -> [$v; POINTS] {
            let cols: [[$v; 6]; N] = std::array::from_fn(|c| f(std::array::from_fn(|r| b[r][c])));
            let mut out = [b[0][0]; POINTS];
            for i in 0..6 {
                out[i * 6..i * 6 + 6].copy_from_slice(&f(std::array::from_fn(|c| cols[c][i])));
            }
            out
        }

        /// Bᵀ d B of a 6×6 tile (`d[r][c]`).
        $(#[$attr])*
        pub(super) fn input_tile(d: [[$v; 6]; 6]) -> [$v; POINTS] {
            sandwich(d, |c| bt(c))
        }

        /// G g Gᵀ of a 3×3 kernel (`g[r][c]`).
        $(#[$attr])*
        pub(super) fn weight_tile(g: [[$v; 3]; 3]) -> [$v; POINTS] {
            sandwich(g, |c| gt(c))
        }

        /// Aᵀ m A of a product tile (`m[a·6 + b]`): a 4×4 output block.
        $(#[$attr])*
        pub(super) fn output_tile(m: [$v; POINTS]) -> [[$v; 4]; 4] {
            let cols: [[$v; 4]; 6] = std::array::from_fn(|b| at(std::array::from_fn(|a| m[a * 6 + b])));
            std::array::from_fn(|r| at(std::array::from_fn(|b| cols[b][r])))
        }
    };
}

/// One tile or kernel at a time.
mod scalar {
    use super::POINTS;
    formulas!(
        #[inline(always)]
        f32,
        |a: f32, b: f32| a + b,
        |a: f32, b: f32| a - b,
        |a: f32, k: f32| a * k
    );
}

/// 8 tiles at a time.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::POINTS;
    use std::arch::x86_64::*;
    formulas!(
        #[inline]
        #[target_feature(enable = "avx2")]
        __m256,
        |a, b| _mm256_add_ps(a, b),
        |a, b| _mm256_sub_ps(a, b),
        |a, k| _mm256_mul_ps(a, _mm256_set1_ps(k))
    );
}

/// 16 tiles or kernels at a time.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::POINTS;
    use std::arch::x86_64::*;
    formulas!(
        #[inline]
        #[target_feature(enable = "avx512f")]
        __m512,
        |a, b| _mm512_add_ps(a, b),
        |a, b| _mm512_sub_ps(a, b),
        |a, k| _mm512_mul_ps(a, _mm512_set1_ps(k))
    );
}

/// Fills `padded` ([hp][wp]) with channel `c` of image `xi`, mapped by `map` ((scale, shift),
/// relu: [`RowAffine`] as the normalization kernel computes it) when given, and a zero border.
fn pad_channel(xi: &[f32], map: Option<((f32, f32), bool)>, shape: Shape3x3, c: usize, padded: &mut [f32]) {
    let Shape3x3 { h, w, .. } = shape;
    let wp = shape.padded().1;
    let plane = &xi[c * h * w..(c + 1) * h * w];
    padded[..wp].fill(0.0);
    for (row, src) in padded[wp..].chunks_exact_mut(wp).zip(plane.chunks_exact(w)) {
        row[0] = 0.0;
        match map {
            None => row[1..1 + w].copy_from_slice(src),
            Some(((scale, shift), relu)) => {
                for (d, &a) in row[1..1 + w].iter_mut().zip(src) {
                    let y = a * scale + shift;
                    *d = if relu { y.max(0.0) } else { y };
                }
            }
        }
        row[1 + w..].fill(0.0);
    }
    padded[(1 + h) * wp..].fill(0.0);
}

/// V of image `xi` (its channels mapped by `map`, one entry per channel, when given) for input
/// channels c0.. (`run` holds whole [36][T] blocks of them).
fn transform_input(level: Level, xi: &[f32], map: Option<RowAffine>, shape: Shape3x3, tables: &Tables, c0: usize, run: &mut [f32]) {
    let (hp, wp) = shape.padded();
    let t = tables.in_base.len();
    let mut padded = vec![0f32; hp * wp];
    for (cl, dst) in run.chunks_exact_mut(POINTS * t).enumerate() {
        let c = c0 + cl;
        pad_channel(xi, map.map(|m| (m.affine[c], m.relu)), shape, c, &mut padded);
        match level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx512` is only passed where the CPU has AVX-512 (checked by the caller).
            Level::Avx512 => unsafe { input_avx512(&padded, wp, tables, dst) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx2` is only passed where the CPU has AVX2 (checked by the caller).
            Level::Avx2 => unsafe { input_avx2(&padded, wp, tables, dst) },
            _ => {
                for (i, &base) in tables.in_base.iter().enumerate() {
                    let d = std::array::from_fn(|r| std::array::from_fn(|c| padded[base as usize + r * wp + c]));
                    for (xi, v) in scalar::input_tile(d).into_iter().enumerate() {
                        dst[xi * t + i] = v;
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn input_avx512(padded: &[f32], wp: usize, tables: &Tables, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let t = tables.in_base.len();
    assert!(dst.len() >= POINTS * t && tables.inputs_inside(padded.len(), wp));
    for t0 in (0..t).step_by(16) {
        let lanes = (t - t0).min(16);
        let mask: __mmask16 = if lanes == 16 { 0xffff } else { (1u16 << lanes) - 1 };
        // SAFETY: the first `lanes` offsets are read (checked to lie in the tables) and every
        // gathered element is inside `padded` (checked above); the masked stores stay inside
        // `dst`'s 36 rows of `t`.
        unsafe {
            let idx = _mm512_maskz_loadu_epi32(mask, tables.in_base.as_ptr().add(t0));
            let d: [[__m512; 6]; 6] = std::array::from_fn(|r| {
                std::array::from_fn(|c| _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, idx, padded.as_ptr().add(r * wp + c)))
            });
            for (xi, v) in avx512::input_tile(d).into_iter().enumerate() {
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(xi * t + t0), mask, v);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn input_avx2(padded: &[f32], wp: usize, tables: &Tables, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let t = tables.in_base.len();
    assert!(dst.len() >= POINTS * t && tables.inputs_inside(padded.len(), wp));
    for t0 in (0..t).step_by(8) {
        let lanes = (t - t0).min(8);
        // Lanes past the last tile gather tile 0's inputs (offset 0) and are not stored.
        let mut base = [0i32; 8];
        base[..lanes].copy_from_slice(&tables.in_base[t0..t0 + lanes]);
        let mask = lanes_below(lanes);
        // SAFETY: every gathered element is inside `padded` (checked above; offset 0 too, as
        // the padded plane has at least 6 rows of `wp`); the masked stores write
        // dst[ξ][t0..t0 + lanes].
        unsafe {
            let idx = _mm256_loadu_si256(base.as_ptr().cast());
            let d: [[__m256; 6]; 6] =
                std::array::from_fn(|r| std::array::from_fn(|c| _mm256_i32gather_ps::<4>(padded.as_ptr().add(r * wp + c), idx)));
            for (xi, v) in avx2::input_tile(d).into_iter().enumerate() {
                _mm256_maskstore_ps(dst.as_mut_ptr().add(xi * t + t0), mask, v);
            }
        }
    }
}

/// U ([36][C_out][C_in], C_out = `cos.end`) of output channels `cos`.
fn transform_weights(level: Level, g: &[f32], c_in: usize, cos: std::ops::Range<usize>, u: &mut [f32]) {
    let rows = cos.end;
    assert!(g.len() >= rows * c_in * 9 && u.len() >= POINTS * rows * c_in);
    for co in cos {
        let kernels = &g[co * c_in * 9..(co + 1) * c_in * 9];
        match level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx512` is only passed where the CPU has AVX-512 (checked by the caller).
            Level::Avx512 => unsafe { weights_avx512(kernels, c_in, rows, co, u) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx2` is only passed where the CPU has AVX2 (checked by the caller).
            Level::Avx2 => unsafe { weights_avx2(kernels, c_in, rows, co, u) },
            _ => {
                for (ci, k) in kernels.chunks_exact(9).enumerate() {
                    let tile = scalar::weight_tile(std::array::from_fn(|r| std::array::from_fn(|c| k[r * 3 + c])));
                    for (xi, v) in tile.into_iter().enumerate() {
                        u[(xi * rows + co) * c_in + ci] = v;
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn weights_avx512(kernels: &[f32], c_in: usize, rows: usize, co: usize, u: &mut [f32]) {
    use std::arch::x86_64::*;
    assert!(kernels.len() >= 9 * c_in && u.len() >= POINTS * rows * c_in && co < rows);
    let idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(9));
    for c0 in (0..c_in).step_by(16) {
        let lanes = (c_in - c0).min(16);
        let mask: __mmask16 = if lanes == 16 { 0xffff } else { (1u16 << lanes) - 1 };
        // SAFETY: the gathers read taps of kernels c0..c0 + lanes (inside `kernels`), the
        // stores write u[ξ][co][c0..c0 + lanes] (inside `u`), both checked above.
        unsafe {
            let base = kernels.as_ptr().add(c0 * 9);
            let g: [[__m512; 3]; 3] = std::array::from_fn(|r| {
                std::array::from_fn(|c| _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, idx, base.add(r * 3 + c)))
            });
            for (xi, v) in avx512::weight_tile(g).into_iter().enumerate() {
                _mm512_mask_storeu_ps(u.as_mut_ptr().add((xi * rows + co) * c_in + c0), mask, v);
            }
        }
    }
}

/// A mask of the AVX2 lanes below `n` (all ones in lanes 0..n).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lanes_below(n: usize) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn weights_avx2(kernels: &[f32], c_in: usize, rows: usize, co: usize, u: &mut [f32]) {
    use std::arch::x86_64::*;
    assert!(kernels.len() >= 9 * c_in && u.len() >= POINTS * rows * c_in && co < rows);
    let idx = _mm256_setr_epi32(0, 9, 18, 27, 36, 45, 54, 63);
    for c0 in (0..c_in).step_by(8) {
        let lanes = (c_in - c0).min(8);
        let mask = lanes_below(lanes);
        // SAFETY: the masked gathers read taps of kernels c0..c0 + lanes (inside `kernels`),
        // the masked stores write u[ξ][co][c0..c0 + lanes] (inside `u`), both checked above.
        unsafe {
            let base = kernels.as_ptr().add(c0 * 9);
            let g: [[__m256; 3]; 3] = std::array::from_fn(|r| {
                std::array::from_fn(|c| {
                    _mm256_mask_i32gather_ps::<4>(_mm256_setzero_ps(), base.add(r * 3 + c), idx, _mm256_castsi256_ps(mask))
                })
            });
            for (xi, v) in avx2::weight_tile(g).into_iter().enumerate() {
                _mm256_maskstore_ps(u.as_mut_ptr().add((xi * rows + co) * c_in + c0), mask, v);
            }
        }
    }
}

/// The output planes of a slab from its products `m` ([36][width][T]).
fn transform_output(level: Level, m: &[f32], tables: &Tables, width: usize, planes: &mut OutputPlanes) {
    let t = tables.out_base.len();
    let w = planes.shape.w;
    assert!(m.len() >= POINTS * width * t);
    for jl in 0..width {
        let plane = planes.plane(jl);
        match level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx512` is only passed where the CPU has AVX-512 (checked by the caller);
            // the tables' offsets, within each tile's rows and columns, lie in the slab's planes.
            Level::Avx512 => unsafe { output_avx512(m, tables, width, jl, w, plane) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, for AVX2.
            Level::Avx2 => unsafe { output_avx2(m, tables, width, jl, w, plane) },
            _ => {
                for i in 0..t {
                    let y = scalar::output_tile(std::array::from_fn(|xi| m[(xi * width + jl) * t + i]));
                    let base = tables.out_base[i] as usize;
                    for (r, row) in y.iter().enumerate().take(tables.rows[i] as usize) {
                        for (c, &v) in row.iter().enumerate().take(tables.cols[i] as usize) {
                            // SAFETY: as above.
                            unsafe { plane.add(base + r * w + c).write(v) };
                        }
                    }
                }
            }
        }
    }
}

/// # Safety
/// AVX-512; `plane` + each tile's offset + r·w + c (r, c below its rows and columns) is a
/// writable element of the output.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn output_avx512(m: &[f32], tables: &Tables, width: usize, jl: usize, w: usize, plane: *mut f32) {
    use std::arch::x86_64::*;
    let t = tables.out_base.len();
    for t0 in (0..t).step_by(16) {
        let lanes = (t - t0).min(16);
        let mask: __mmask16 = if lanes == 16 { 0xffff } else { (1u16 << lanes) - 1 };
        // SAFETY: the loads read m[ξ][jl][t0..t0 + lanes] and the tables' first `lanes`
        // entries; the scatters write inside the planes (the caller's contract).
        unsafe {
            let p: [__m512; POINTS] = std::array::from_fn(|xi| _mm512_maskz_loadu_ps(mask, m.as_ptr().add((xi * width + jl) * t + t0)));
            let idx = _mm512_maskz_loadu_epi32(mask, tables.out_base.as_ptr().add(t0));
            let rows = _mm512_maskz_loadu_epi32(mask, tables.rows.as_ptr().add(t0));
            let cols = _mm512_maskz_loadu_epi32(mask, tables.cols.as_ptr().add(t0));
            let y = avx512::output_tile(p);
            for (r, row) in y.iter().enumerate() {
                let in_rows = _mm512_mask_cmpgt_epi32_mask(mask, rows, _mm512_set1_epi32(r as i32));
                for (c, &v) in row.iter().enumerate() {
                    let keep = _mm512_mask_cmpgt_epi32_mask(in_rows, cols, _mm512_set1_epi32(c as i32));
                    _mm512_mask_i32scatter_ps::<4>(plane.add(r * w + c).cast(), keep, idx, v);
                }
            }
        }
    }
}

/// # Safety
/// AVX2; `plane` + each tile's offset + r·w + c (r, c below its rows and columns) is a writable
/// element of the output.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn output_avx2(m: &[f32], tables: &Tables, width: usize, jl: usize, w: usize, plane: *mut f32) {
    use std::arch::x86_64::*;
    let t = tables.out_base.len();
    for t0 in (0..t).step_by(8) {
        let lanes = (t - t0).min(8);
        let mask = lanes_below(lanes);
        // SAFETY: the masked loads read m[ξ][jl][t0..t0 + lanes]; the stores below write each
        // tile's rows and columns inside the planes (the caller's contract).
        unsafe {
            let p: [__m256; POINTS] = std::array::from_fn(|xi| _mm256_maskload_ps(m.as_ptr().add((xi * width + jl) * t + t0), mask));
            let y = avx2::output_tile(p);
            for (r, row) in y.iter().enumerate() {
                // Row r of the 8 tiles: [c][tile] → four registers, register k holding tile k's
                // row in its low half and tile k + 4's in its high half.
                let (a, b) = (_mm256_unpacklo_ps(row[0], row[1]), _mm256_unpackhi_ps(row[0], row[1]));
                let (c, d) = (_mm256_unpacklo_ps(row[2], row[3]), _mm256_unpackhi_ps(row[2], row[3]));
                let q = [
                    _mm256_shuffle_ps::<0x44>(a, c),
                    _mm256_shuffle_ps::<0xee>(a, c),
                    _mm256_shuffle_ps::<0x44>(b, d),
                    _mm256_shuffle_ps::<0xee>(b, d),
                ];
                for k in 0..lanes {
                    let i = t0 + k;
                    if (r as i32) >= tables.rows[i] {
                        continue;
                    }
                    let v = if k < 4 { _mm256_castps256_ps128(q[k]) } else { _mm256_extractf128_ps::<1>(q[k - 4]) };
                    let at = plane.add(tables.out_base[i] as usize + r * w);
                    let cols = tables.cols[i] as usize;
                    if cols == 4 {
                        _mm_storeu_ps(at, v);
                    } else {
                        _mm_maskstore_ps(at, _mm_cmpgt_epi32(_mm_set1_epi32(cols as i32), _mm_setr_epi32(0, 1, 2, 3)), v);
                    }
                }
            }
        }
    }
}
