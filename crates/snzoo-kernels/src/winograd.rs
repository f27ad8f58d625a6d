//! Winograd's minimal filtering F(m×m, 3×3) for the 3×3, stride-1, padding-1 f32 convolutions
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016), in two sizes
//! ([`Tile`]): F(4×4, 3×3) with their interpolation points 0, ±1, ±2, ∞ (each 4×4 block of output
//! from a 6×6 block of input, 36 products per input channel instead of direct convolution's 144)
//! and F(2×2, 3×3) with 0, ±1, ∞ (2×2 from 4×4, 16 products instead of 36).
//!
//! The weights are transformed (U = G g Gᵀ, [P][C_out][C_in] for P = 36 or 16 points,
//! [`TransformedWeights`]). Per group of images the input tiles are transformed (Bᵀ d B) into V
//! [C_in][P][T] (T: the group's tiles, image after image); per slab of output channels the P
//! products M_ξ = V_ξᵀ·U_ξ run as GEMMs ([`gemm`] crate) and the output tiles are transformed
//! back (Aᵀ m A) into the NCHW output. The GEMMs sum over C_in alone in one depth block (C_in ≤
//! [`MAX_DEPTH`]), so an image's result is the same bits in any group, and in any batch.
//!
//! [`tile_for`] takes F(4,3) where U stays small (C_in·C_out ≤ [`MAX_PAIRS`]: ResNet's 56×56 and
//! 28×28 stages; 4× the weights, 8.9 MB for ResNet-50), and keeps U with the weights: it is read
//! again for every image. Up to C_in·C_out ≤ [`MAX_PAIRS_F2`] (ResNet's 14×14 stage, where an
//! image is 49 whole 2×2 tiles but 16 4×4 ones with a third of their outputs past the edge) it
//! takes F(2,3), whose U (16/9 of the weights, 97 MB for ResNet-101's 23 such convolutions) is
//! made per call from the weights instead of kept: a call on several images (the model runs the
//! last stages on each thread's share of the batch) transforms it once for all of them, and
//! their tiles share each GEMM, so the GEMMs get hundreds of rows. Each image needs at least
//! [`MIN_TILES`] tiles. The last stage (512 channels, 7×7) keeps im2col + GEMM.
//!
//! The transforms run 16 tiles (or 16 input channels, for the weights) per AVX-512 register:
//! the tiles' inputs gathered from a zero-bordered copy of each plane, the outputs scattered
//! into the planes under masks at the edges. On AVX2-only CPUs (Zen 3, Haswell to Alder Lake)
//! they run 8 tiles per register: gathered the same way, the output tiles transposed in
//! registers and stored a row at a time (AVX2 has no scatter). The portable version computes
//! the same formulas in the same order one tile at a time (Rust never contracts a·b + c into an
//! FMA), so all three give the same bits (tested); it is there for the tests and for CPUs
//! without AVX2, where [`tile_for`] keeps im2col + GEMM.
//!
//! Accuracy: the transforms' rounding (and 1/6, 1/12, 1/24 in F(4,3)'s G) make the result differ
//! from direct convolution by ~1e-6 of the output's scale (tests/winograd.rs bounds it against
//! an f64 reference). `SNZOO_WINOGRAD=0` turns it off.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use crate::conv::{return_scratch, take_scratch};
use crate::gemm_bf16::RowAffine;

/// Fewest output tiles per image for which [`tile_for`] picks Winograd (smaller GEMMs run too
/// far below the kernel's peak: `examples/conv3x3_shapes`). Per image, not per batch, so that
/// an image's result does not depend on the batch it came in.
pub const MIN_TILES: usize = 32;

/// Most C_in·C_out for which [`tile_for`] picks F(4×4, 3×3): U then takes at most 2.4 MB.
pub const MAX_PAIRS: usize = 128 * 128;

/// Most C_in·C_out for which [`tile_for`] picks F(2×2, 3×3): U then takes at most 4.2 MB.
pub const MAX_PAIRS_F2: usize = 256 * 256;

/// Most input channels for which [`tile_for`] picks Winograd: the `gemm` crate's depth blocks
/// are at least 512 deep (`gemm_common::cache::kernel_params`), so the products' sums then run in
/// one block, each output a sequence of FMAs over C_in whatever the number of rows, and grouping
/// images gives the same bits as one image at a time.
pub const MAX_DEPTH: usize = 512;

/// Tiles per GEMM that [`conv3x3`] groups images up to (whole images, at least one): 10 images at
/// 14×14 with F(2,3).
const GROUP_TILES: usize = 512;

/// Output channels per slab at most.
const MAX_SLAB: usize = 64;

/// The output block one tile computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tile {
    /// F(2×2, 3×3): 4×4 inputs, 16 points.
    F2,
    /// F(4×4, 3×3): 6×6 inputs, 36 points.
    F4,
}

impl Tile {
    /// Output rows and columns per tile.
    pub fn size(self) -> usize {
        match self {
            Tile::F2 => 2,
            Tile::F4 => 4,
        }
    }

    /// Transformed points per tile.
    pub fn points(self) -> usize {
        (self.size() + 2) * (self.size() + 2)
    }
}

/// Which Winograd tile runs a convolution of H×W images, C_in → C_out channels, with a k×k
/// kernel, stride `s` and padding `p`, if any: 3×3, stride 1, padding 1, C_in·C_out ≤
/// [`MAX_PAIRS`] for [`Tile::F4`] or ≤ [`MAX_PAIRS_F2`] for [`Tile::F2`] (so a convolution's
/// tile depends on its channels alone), C_in ≤ [`MAX_DEPTH`], at least [`MIN_TILES`] tiles per
/// image, a CPU with AVX2 or AVX-512, and not turned off by `SNZOO_WINOGRAD=0`.
pub fn tile_for((k, s, p): (usize, usize, usize), (c_in, c_out): (usize, usize), (h, w): (usize, usize)) -> Option<Tile> {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    let tile = match c_in * c_out {
        pairs if pairs <= MAX_PAIRS => Tile::F4,
        pairs if pairs <= MAX_PAIRS_F2 => Tile::F2,
        _ => return None,
    };
    let m = tile.size();
    let eligible = k == 3 && s == 1 && p == 1 && c_in <= MAX_DEPTH && h.div_ceil(m) * w.div_ceil(m) >= MIN_TILES;
    (eligible && *ENABLED.get_or_init(|| std::env::var_os("SNZOO_WINOGRAD").is_none_or(|v| v != "0") && Level::detect().vectorised()))
        .then_some(tile)
}

/// A 3×3, stride-1, padding-1 convolution's tile, output channels and image size (output H×W =
/// input H×W).
#[derive(Debug, Clone, Copy)]
struct Shape3x3 {
    tile: Tile,
    c_out: usize,
    h: usize,
    w: usize,
}

impl Shape3x3 {
    /// Tile rows and columns.
    fn grid(&self) -> (usize, usize) {
        let m = self.tile.size();
        (self.h.div_ceil(m), self.w.div_ceil(m))
    }

    fn tiles(&self) -> usize {
        let (ty, tx) = self.grid();
        ty * tx
    }

    /// The zero-bordered copy of a plane that the input tiles are read from: rows and columns
    /// (one zero row and column before the plane, zeros after it up to whole tiles).
    fn padded(&self) -> (usize, usize) {
        let (ty, tx) = self.grid();
        let m = self.tile.size();
        (m * ty + 2, m * tx + 2)
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

    /// Whether the transforms run several tiles per instruction (where [`tile_for`] takes
    /// Winograd: one tile at a time would eat much of its saving).
    pub fn vectorised(self) -> bool {
        self != Level::Portable
    }
}

thread_local! {
    /// V of the group of images being computed ([C_in][P][T]).
    static TRANSFORMED_INPUT: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// The products of a slab ([P][slab][T]).
    static PRODUCTS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// U made by the call ([`TransformedWeights::per_call`]).
    static TRANSFORMED_WEIGHTS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A convolution's weights for Winograd: U (G g Gᵀ, [P][C_out][C_in]) made once and kept
/// ([`new`](Self::new), for [`Tile::F4`]: the model runs the first stages one image at a time per
/// thread, and transforming per call would redo it for every image), or the weights themselves,
/// transformed by each call ([`per_call`](Self::per_call), for [`Tile::F2`]: see the module
/// docs).
#[derive(Debug)]
pub struct TransformedWeights {
    tile: Tile,
    store: Store,
    c_out: usize,
    c_in: usize,
}

#[derive(Debug)]
enum Store {
    /// U, [P][C_out][C_in].
    Transformed(Vec<f32>),
    /// The contiguous f32 [C_out, C_in, 3, 3] weights.
    PerCall(Tensor),
}

impl TransformedWeights {
    /// U of the [C_out, C_in, 3, 3] weights `g` for `tile`, the transforms compiled for `level`.
    pub fn new(level: Level, tile: Tile, g: &[f32], c_out: usize, c_in: usize) -> Self {
        assert!(level.supported(), "winograd: this CPU does not run {level:?} code");
        assert!(g.len() >= c_out * c_in * 9, "winograd: weights too short");
        let mut u = vec![0f32; tile.points() * c_out * c_in];
        for co in 0..c_out {
            transform_kernels(level, tile, &g[co * c_in * 9..(co + 1) * c_in * 9], c_in, (co * c_in, c_out * c_in), &mut u);
        }
        TransformedWeights { tile, store: Store::Transformed(u), c_out, c_in }
    }

    /// The f32 [C_out, C_in, 3, 3] weights `g`, transformed for `tile` by each call.
    pub fn per_call(tile: Tile, g: &Tensor) -> Result<Self> {
        let (c_out, c_in, kh, kw) = g.dims4()?;
        if (kh, kw) != (3, 3) || g.dtype() != candle_core::DType::F32 || !g.device().is_cpu() {
            candle_core::bail!("winograd: {:?} {:?} weights on {:?}, not f32 3x3 on the CPU", g.dims(), g.dtype(), g.device());
        }
        Ok(TransformedWeights { tile, store: Store::PerCall(g.contiguous()?), c_out, c_in })
    }

    /// (C_out, C_in)
    pub fn dims(&self) -> (usize, usize) {
        (self.c_out, self.c_in)
    }

    pub fn tile(&self) -> Tile {
        self.tile
    }
}

/// U_ξ's row of one output channel from its C_in kernels: u[ξ·ld + at..][..C_in].
fn transform_kernels(level: Level, tile: Tile, kernels: &[f32], c_in: usize, (at, ld): (usize, usize), u: &mut [f32]) {
    match tile {
        Tile::F4 => f4::weights(level, kernels, c_in, (at, ld), u),
        Tile::F2 => f2::weights(level, kernels, c_in, (at, ld), u),
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
    let tile = u.tile;
    let shape = Shape3x3 { tile, c_out, h, w };
    assert!(level.supported(), "winograd: this CPU does not run {level:?} code");
    assert!(x.len() >= n * c_in * h * w && out.len() >= n * c_out * h * w, "winograd: operands too short");
    assert!(affine.is_none_or(|a| a.affine.len() >= n * c_in), "winograd: fewer affine entries than input planes");
    if n == 0 || c_out == 0 || h == 0 || w == 0 {
        return;
    }
    assert!(c_out * h * w <= i32::MAX as usize, "winograd: an output plane set past 2^31 elements");
    let (points, tiles) = (tile.points(), shape.tiles());
    let slab = c_out.div_ceil(threads.max(1)).clamp(1, MAX_SLAB);
    let slabs = c_out.div_ceil(slab);
    // U of each slab: the kept one ([P][C_out][C_in], a slab's U_ξ at row cos.start of point ξ),
    // or made here slab by slab (each slab's [P][width][C_in] in its own block, so that the parts
    // transform their own; U_ξ one cache line more than width·C_in apart, as a power-of-two
    // stride would put the P rows being written into one set of the L1 cache).
    let u_ld = slab * c_in + 16;
    let mut made = take_scratch(&TRANSFORMED_WEIGHTS);
    // U_ξ of slab s begins at ξ·xi_stride + s·slab_stride.
    let (u_all, xi_stride, slab_stride) = match &u.store {
        Store::Transformed(kept) => (&kept[..], c_out * c_in, slab * c_in),
        Store::PerCall(g) => {
            let (storage, layout) = g.storage_and_layout();
            let candle_core::Storage::Cpu(CpuStorage::F32(values)) = &*storage else {
                unreachable!("winograd: per-call weights are f32 on the CPU (checked by `per_call`)")
            };
            let g = &values[layout.start_offset()..layout.start_offset() + c_out * c_in * 9];
            let block = points * u_ld;
            if made.len() < slabs * block {
                made.resize(slabs * block, 0.0);
            }
            crate::parallel::chunks_mut(threads, &mut made[..slabs * block], block, |s0, run| {
                for (sl, u_slab) in run.chunks_exact_mut(block).enumerate() {
                    let cos = (s0 + sl) * slab..((s0 + sl + 1) * slab).min(c_out);
                    for (jl, co) in cos.enumerate() {
                        transform_kernels(level, tile, &g[co * c_in * 9..(co + 1) * c_in * 9], c_in, (jl * c_in, u_ld), u_slab);
                    }
                }
            });
            (&made[..slabs * block], u_ld, block)
        }
    };
    // Images in groups whose tiles share each GEMM (row i of V_ξᵀ is tile i % tiles of the
    // group's image i / tiles); the sums over C_in run in one depth block (C_in ≤ MAX_DEPTH), so
    // an image gets the same bits in any group.
    let group = (GROUP_TILES / tiles).clamp(1, n);
    let tables = Tables::new(shape);
    let mut v = take_scratch(&TRANSFORMED_INPUT);
    for g0 in (0..n).step_by(group) {
        let images = g0..(g0 + group).min(n);
        let t = images.len() * tiles;
        let len = c_in * points * t;
        if v.len() < len {
            v.resize(len, 0.0);
        }
        for (gi, image) in images.clone().enumerate() {
            let xi = &x[image * c_in * h * w..(image + 1) * c_in * h * w];
            let map = affine.map(|a| RowAffine { affine: &a.affine[image * c_in..(image + 1) * c_in], relu: a.relu });
            if c_in > 0 {
                crate::parallel::chunks_mut(threads, &mut v[..len], points * t, |c0, run| {
                    transform_input(level, xi, map, shape, &tables, c0, run, (gi * tiles, t))
                });
            }
        }
        let v = &v[..len];
        let out_addr = out.as_mut_ptr() as usize;
        crate::parallel::split_range(threads, slabs, |range| {
            let mut m = take_scratch(&PRODUCTS);
            for s in range {
                let cos = s * slab..((s + 1) * slab).min(c_out);
                let width = cos.len();
                if m.len() < points * width * t {
                    m.resize(points * width * t, 0.0);
                }
                for xi in 0..points {
                    // M_ξ (T × slab, column j at m[ξ][j][..]) = V_ξᵀ (T × C_in: tile i,
                    // channel c at v[c][ξ][i]) · U_ξ (C_in × slab: channel c, output cos.start + j
                    // at ux[j·C_in + c]).
                    let mx = &mut m[xi * width * t..(xi + 1) * width * t];
                    let ux = &u_all[xi * xi_stride + s * slab_stride..][..width * c_in];
                    if c_in == 0 {
                        mx.fill(0.0);
                        continue;
                    }
                    // SAFETY: the three matrices lie inside `mx` (t × width, column-major),
                    // `v` (element (i, c) at c·Pt + ξt + i < len) and `ux` (width × c_in,
                    // element (c, j) at j·c_in + c).
                    unsafe {
                        crate::conv::gemm_single(
                            (t, width, c_in),
                            (mx.as_mut_ptr(), t as isize, 1),
                            (v.as_ptr().add(xi * t), (points * t) as isize, 1),
                            (ux.as_ptr(), c_in as isize, 1),
                        )
                    };
                }
                for (gi, image) in images.clone().enumerate() {
                    // SAFETY: this part alone writes output channels `cos` of the group's images
                    // (parts own disjoint slabs), inside `out` (checked above).
                    let mut planes = unsafe { OutputPlanes::new(out_addr as *mut MaybeUninit<f32>, image, shape, cos.clone()) };
                    transform_output(level, &m[..points * width * t], &tables, width, (gi * tiles, t), &mut planes);
                }
            }
            return_scratch(&PRODUCTS, m);
        });
    }
    return_scratch(&TRANSFORMED_INPUT, v);
    return_scratch(&TRANSFORMED_WEIGHTS, made);
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
    /// Rows and columns of tile t inside the output (1 to the tile's size).
    rows: Vec<i32>,
    cols: Vec<i32>,
}

impl Tables {
    /// Whether every tile's n×n inputs lie inside a padded plane of `len` floats, rows of `wp`.
    fn inputs_inside(&self, n: usize, len: usize, wp: usize) -> bool {
        self.in_base.iter().all(|&b| b >= 0 && b as usize + (n - 1) * (wp + 1) < len)
    }

    fn new(shape: Shape3x3) -> Self {
        let Shape3x3 { h, w, .. } = shape;
        let m = shape.tile.size();
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
                tables.in_base.push((m * ty * wp + m * tx) as i32);
                tables.out_base.push((m * ty * w + m * tx) as i32);
                tables.rows.push((h - m * ty).min(m) as i32);
                tables.cols.push((w - m * tx).min(m) as i32);
            }
        }
        tables
    }
}

/// The transforms' formulas on scalars and, compiled for AVX2 and AVX-512, on 8 and 16 lanes:
/// the same operations in the same order, so the same bits per lane.
macro_rules! formulas {
    ($(#[$attr:meta])* $v:ty, $add:expr, $sub:expr, $scale:expr) => {
        /// F(4,3)'s Bᵀ d for one column d of an input tile.
        $(#[$attr])*
        fn bt4(d: [$v; 6]) -> [$v; 6] {
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

        /// F(4,3)'s G g for one column g of a kernel.
        $(#[$attr])*
        fn gt4(g: [$v; 3]) -> [$v; 6] {
            let (add, sub, scale) = ($add, $sub, $scale);
            let (a, b) = (add(g[0], g[2]), add(scale(g[0], 1.0 / 24.0), scale(g[2], 1.0 / 6.0)));
            let c = scale(g[1], 1.0 / 12.0);
            [scale(g[0], 0.25), scale(add(a, g[1]), -1.0 / 6.0), scale(sub(a, g[1]), -1.0 / 6.0), add(b, c), sub(b, c), g[2]]
        }

        /// F(4,3)'s Aᵀ m for one column m of a product tile.
        $(#[$attr])*
        fn at4(m: [$v; 6]) -> [$v; 4] {
            let (add, sub, scale) = ($add, $sub, $scale);
            let (a, b, c, d) = (add(m[1], m[2]), sub(m[1], m[2]), add(m[3], m[4]), sub(m[3], m[4]));
            [add(add(m[0], a), c), add(b, scale(d, 2.0)), add(a, scale(c, 4.0)), add(add(b, scale(d, 8.0)), m[5])]
        }

        /// F(2,3)'s Bᵀ d for one column d of an input tile.
        $(#[$attr])*
        fn bt2(d: [$v; 4]) -> [$v; 4] {
            let (add, sub) = ($add, $sub);
            [sub(d[0], d[2]), add(d[1], d[2]), sub(d[2], d[1]), sub(d[1], d[3])]
        }

        /// F(2,3)'s G g for one column g of a kernel.
        $(#[$attr])*
        fn gt2(g: [$v; 3]) -> [$v; 4] {
            let (add, sub, scale) = ($add, $sub, $scale);
            let a = add(g[0], g[2]);
            [g[0], scale(add(a, g[1]), 0.5), scale(sub(a, g[1]), 0.5), g[2]]
        }

        /// F(2,3)'s Aᵀ m for one column m of a product tile.
        $(#[$attr])*
        fn at2(m: [$v; 4]) -> [$v; 2] {
            let (add, sub) = ($add, $sub);
            [add(add(m[0], m[1]), m[2]), sub(sub(m[1], m[2]), m[3])]
        }

        /// `f` down the columns of an N×N block, then across the rows of the result: the K×K
        /// F b Fᵀ (row-major, P = K·K) for the K×N matrix F that `f` applies.
        $(#[$attr])*
        fn sandwich<const N: usize, const K: usize, const P: usize>(b: [[$v; N]; N], f: impl Fn([$v; N]) -> [$v; K]) -> [$v; P] {
            let cols: [[$v; K]; N] = std::array::from_fn(|c| f(std::array::from_fn(|r| b[r][c])));
            let mut out = [b[0][0]; P];
            for i in 0..K {
                out[i * K..i * K + K].copy_from_slice(&f(std::array::from_fn(|c| cols[c][i])));
            }
            out
        }

        /// Aᵀ m A of a K×K product tile (`m[a·K + b]`) for the M×K matrix Aᵀ that `f` applies:
        /// an M×M output block.
        $(#[$attr])*
        fn unsandwich<const K: usize, const P: usize, const M: usize>(m: [$v; P], f: impl Fn([$v; K]) -> [$v; M]) -> [[$v; M]; M] {
            let cols: [[$v; M]; K] = std::array::from_fn(|b| f(std::array::from_fn(|a| m[a * K + b])));
            std::array::from_fn(|r| f(std::array::from_fn(|b| cols[b][r])))
        }

        /// Bᵀ d B of a 6×6 tile (`d[r][c]`).
        $(#[$attr])*
        pub(super) fn input4(d: [[$v; 6]; 6]) -> [$v; 36] {
            sandwich(d, |c| bt4(c))
        }

        /// G g Gᵀ of a 3×3 kernel (`g[r][c]`) for F(4,3).
        $(#[$attr])*
        pub(super) fn weight4(g: [[$v; 3]; 3]) -> [$v; 36] {
            sandwich(g, |c| gt4(c))
        }

        /// Aᵀ m A of an F(4,3) product tile: a 4×4 output block.
        $(#[$attr])*
        pub(super) fn output4(m: [$v; 36]) -> [[$v; 4]; 4] {
            unsandwich(m, |c| at4(c))
        }

        /// Bᵀ d B of a 4×4 tile (`d[r][c]`).
        $(#[$attr])*
        pub(super) fn input2(d: [[$v; 4]; 4]) -> [$v; 16] {
            sandwich(d, |c| bt2(c))
        }

        /// G g Gᵀ of a 3×3 kernel (`g[r][c]`) for F(2,3).
        $(#[$attr])*
        pub(super) fn weight2(g: [[$v; 3]; 3]) -> [$v; 16] {
            sandwich(g, |c| gt2(c))
        }

        /// Aᵀ m A of an F(2,3) product tile: a 2×2 output block.
        $(#[$attr])*
        pub(super) fn output2(m: [$v; 16]) -> [[$v; 2]; 2] {
            unsandwich(m, |c| at2(c))
        }
    };
}

/// One tile or kernel at a time.
mod scalar {
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
/// channels c0.. (`run` holds whole [P][T] blocks of them, T = `ld`), into columns `at`..`at` +
/// the image's tiles of each row.
#[allow(clippy::too_many_arguments)]
fn transform_input(
    level: Level,
    xi: &[f32],
    map: Option<RowAffine>,
    shape: Shape3x3,
    tables: &Tables,
    c0: usize,
    run: &mut [f32],
    (at, ld): (usize, usize),
) {
    let (hp, wp) = shape.padded();
    let mut padded = vec![0f32; hp * wp];
    for (cl, dst) in run.chunks_exact_mut(shape.tile.points() * ld).enumerate() {
        let c = c0 + cl;
        pad_channel(xi, map.map(|m| (m.affine[c], m.relu)), shape, c, &mut padded);
        match shape.tile {
            Tile::F4 => f4::input(level, &padded, wp, tables, &mut dst[at..], ld),
            Tile::F2 => f2::input(level, &padded, wp, tables, &mut dst[at..], ld),
        }
    }
}

/// The output planes of a slab from its products `m` ([P][width][T], T = `ld`), the image's
/// tiles in columns `at`...
fn transform_output(level: Level, m: &[f32], tables: &Tables, width: usize, (at, ld): (usize, usize), planes: &mut OutputPlanes) {
    let (tile, w) = (planes.shape.tile, planes.shape.w);
    assert!(m.len() >= tile.points() * width * ld && at + tables.out_base.len() <= ld);
    for jl in 0..width {
        let plane = planes.plane(jl);
        // SAFETY: the tables' offsets, within each tile's rows and columns, lie in the slab's
        // planes (they were made for this shape).
        unsafe {
            match tile {
                Tile::F4 => f4::output(level, &m[at..], tables, width, jl, ld, w, plane),
                Tile::F2 => f2::output(level, &m[at..], tables, width, jl, ld, w, plane),
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

/// Stores the first `lanes` of `v` (`mask`: [`lanes_below`]) at `at`: all eight by a plain
/// store, fewer by a masked one (AMD's Zen cores run `vmaskmovps` stores as microcode, ~10× the
/// cost of a plain store, so only the last group of a row pays it).
///
/// # Safety
/// AVX2; `at`..`at` + `lanes` writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn store8(at: *mut f32, lanes: usize, mask: std::arch::x86_64::__m256i, v: std::arch::x86_64::__m256) {
    use std::arch::x86_64::*;
    // SAFETY: as the caller promises.
    unsafe {
        if lanes >= 8 {
            _mm256_storeu_ps(at, v)
        } else {
            _mm256_maskstore_ps(at, mask, v)
        }
    }
}

/// The first `lanes` floats at `at` (`mask`: [`lanes_below`]), zeros above: a plain load for all
/// eight, a masked one for fewer.
///
/// # Safety
/// AVX2; `at`..`at` + `lanes` readable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn load8(at: *const f32, lanes: usize, mask: std::arch::x86_64::__m256i) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // SAFETY: as the caller promises.
    unsafe {
        if lanes >= 8 {
            _mm256_loadu_ps(at)
        } else {
            _mm256_maskload_ps(at, mask)
        }
    }
}

/// The taps of 8 consecutive 3×3 kernels (72 floats from `base`), tap (r, c) of kernel k in
/// lane k of register [r][c]: eight loads of 8 taps transposed in registers, the ninth tap
/// loaded lane by lane. (Gathering them at a stride of 9 floats ran ~5× slower on Zen 3.)
///
/// # Safety
/// AVX2; `base`..`base` + 72 readable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn kernels8_avx2(base: *const f32) -> [[std::arch::x86_64::__m256; 3]; 3] {
    use std::arch::x86_64::*;
    // SAFETY: 8 loads of 8 floats at k·9 (the last ends at 71) and the 9th taps at k·9 + 8.
    let (r, last) = unsafe {
        let r: [__m256; 8] = std::array::from_fn(|k| _mm256_loadu_ps(base.add(k * 9)));
        let at = |k: usize| *base.add(k * 9 + 8);
        (r, _mm256_setr_ps(at(0), at(1), at(2), at(3), at(4), at(5), at(6), at(7)))
    };
    // a[2q] = (2q's tap 0, 2q+1's tap 0, 2q's tap 1, 2q+1's tap 1 | the same for taps 4, 5),
    // a[2q + 1] likewise for taps 2, 3 | 6, 7.
    let a: [__m256; 8] = std::array::from_fn(|i| {
        let (x, y) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
        if i % 2 == 0 {
            _mm256_unpacklo_ps(x, y)
        } else {
            _mm256_unpackhi_ps(x, y)
        }
    });
    // b[4h + j] = tap j of kernels 4h..4h + 4 | tap j + 4 of the same kernels.
    let b: [__m256; 8] = std::array::from_fn(|i| {
        let (h, j) = (i / 4, i % 4);
        let (x, y) = (a[4 * h + j / 2], a[4 * h + 2 + j / 2]);
        if j % 2 == 0 {
            _mm256_shuffle_ps::<0x44>(x, y)
        } else {
            _mm256_shuffle_ps::<0xee>(x, y)
        }
    });
    let col = |tap: usize| {
        let j = tap % 4;
        if tap < 4 {
            _mm256_permute2f128_ps::<0x20>(b[j], b[4 + j])
        } else {
            _mm256_permute2f128_ps::<0x31>(b[j], b[4 + j])
        }
    };
    let taps: [__m256; 9] = std::array::from_fn(|i| if i < 8 { col(i) } else { last });
    std::array::from_fn(|r| std::array::from_fn(|c| taps[r * 3 + c]))
}

/// Row r of 8 F(4,3) output tiles (`row[c]` holding column c of tiles t0..t0 + 8) stored into
/// the tiles' rows inside the output.
///
/// # Safety
/// AVX2; `plane` + each tile's offset + r·w + c (r, c below its rows and columns) is a writable
/// element of the output.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn store_row4_avx2(
    row: [std::arch::x86_64::__m256; 4],
    r: usize,
    t0: usize,
    lanes: usize,
    tables: &Tables,
    w: usize,
    plane: *mut f32,
) {
    use std::arch::x86_64::*;
    // [c][tile] → four registers, register k holding tile k's row in its low half and tile
    // k + 4's in its high half.
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
        // SAFETY: the tile's row r, its first `cols` columns, lie in the output (the caller's
        // contract).
        unsafe {
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

/// Row r of 8 F(2,3) output tiles (`row[c]` holding column c of tiles t0..t0 + 8) stored into
/// the tiles' rows inside the output.
///
/// # Safety
/// As [`store_row4_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn store_row2_avx2(
    row: [std::arch::x86_64::__m256; 2],
    r: usize,
    t0: usize,
    lanes: usize,
    tables: &Tables,
    w: usize,
    plane: *mut f32,
) {
    use std::arch::x86_64::*;
    // Interleaved, the two columns are the 8 tiles' rows as pairs: tiles 0, 1, 4, 5 in `lo`,
    // 2, 3, 6, 7 in `hi`.
    let mut pairs = [0f32; 16];
    // SAFETY: two stores of 8 floats into the 16 of `pairs`.
    unsafe {
        _mm256_storeu_ps(pairs.as_mut_ptr(), _mm256_unpacklo_ps(row[0], row[1]));
        _mm256_storeu_ps(pairs.as_mut_ptr().add(8), _mm256_unpackhi_ps(row[0], row[1]));
    }
    const AT: [usize; 8] = [0, 2, 8, 10, 4, 6, 12, 14];
    for (k, &at) in AT.iter().enumerate().take(lanes) {
        let i = t0 + k;
        if (r as i32) >= tables.rows[i] {
            continue;
        }
        let cols = tables.cols[i] as usize;
        // SAFETY: the tile's row r, its first `cols` (≤ 2) columns, lie in the output (the
        // caller's contract); `pairs` holds 2 floats from `at`.
        unsafe { std::ptr::copy_nonoverlapping(pairs.as_ptr().add(at), plane.add(tables.out_base[i] as usize + r * w), cols) };
    }
}

/// The transforms of one tile size on every level: `$n`×`$n` input tiles, `$m`×`$m` output
/// blocks, the formulas' functions `$input`, `$weight`, `$output`, and `$store_row` storing an
/// output row on AVX2.
macro_rules! tile_transforms {
    ($n:literal, $m:literal, $input:ident, $weight:ident, $output:ident, $store_row:ident) => {
        #[cfg(target_arch = "x86_64")]
        use super::{avx2, avx512, lanes_below, load8, store8};
        use super::{scalar, Level, Tables};

        /// Input rows and columns per tile.
        const N: usize = $n;
        /// Transformed points per tile.
        const POINTS: usize = N * N;
        /// Output rows and columns per tile.
        const M: usize = $m;

        /// V[ξ][..T] of one channel from its zero-bordered plane `padded` (rows of `wp`), V[ξ]
        /// at dst[ξ·ld..].
        pub(super) fn input(level: Level, padded: &[f32], wp: usize, tables: &Tables, dst: &mut [f32], ld: usize) {
            let t = tables.in_base.len();
            assert!(t <= ld && dst.len() >= (POINTS - 1) * ld + t && tables.inputs_inside(N, padded.len(), wp));
            match level {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `Avx512` is only passed where the CPU has AVX-512 (checked by the caller).
                Level::Avx512 => unsafe { input_avx512(padded, wp, tables, dst, ld) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `Avx2` is only passed where the CPU has AVX2 (checked by the caller).
                Level::Avx2 => unsafe { input_avx2(padded, wp, tables, dst, ld) },
                _ => {
                    for (i, &base) in tables.in_base.iter().enumerate() {
                        let d = std::array::from_fn(|r| std::array::from_fn(|c| padded[base as usize + r * wp + c]));
                        for (xi, v) in scalar::$input(d).into_iter().enumerate() {
                            dst[xi * ld + i] = v;
                        }
                    }
                }
            }
        }

        /// # Safety
        /// AVX-512; `dst` and the tables checked as in [`input`].
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        unsafe fn input_avx512(padded: &[f32], wp: usize, tables: &Tables, dst: &mut [f32], ld: usize) {
            use std::arch::x86_64::*;
            let t = tables.in_base.len();
            for t0 in (0..t).step_by(16) {
                let lanes = (t - t0).min(16);
                let mask: __mmask16 = if lanes == 16 { 0xffff } else { (1u16 << lanes) - 1 };
                // SAFETY: the first `lanes` offsets are read (checked to lie in the tables) and
                // every gathered element is inside `padded` (the caller's check); the masked
                // stores stay inside `dst`'s P rows of `ld`.
                unsafe {
                    let idx = _mm512_maskz_loadu_epi32(mask, tables.in_base.as_ptr().add(t0));
                    let d: [[__m512; N]; N] = std::array::from_fn(|r| {
                        std::array::from_fn(|c| {
                            _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, idx, padded.as_ptr().add(r * wp + c))
                        })
                    });
                    for (xi, v) in avx512::$input(d).into_iter().enumerate() {
                        _mm512_mask_storeu_ps(dst.as_mut_ptr().add(xi * ld + t0), mask, v);
                    }
                }
            }
        }

        /// # Safety
        /// AVX2; `dst` and the tables checked as in [`input`].
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn input_avx2(padded: &[f32], wp: usize, tables: &Tables, dst: &mut [f32], ld: usize) {
            use std::arch::x86_64::*;
            let t = tables.in_base.len();
            for t0 in (0..t).step_by(8) {
                let lanes = (t - t0).min(8);
                // Lanes past the last tile gather tile 0's inputs (offset 0) and are not stored.
                let mut base = [0i32; 8];
                base[..lanes].copy_from_slice(&tables.in_base[t0..t0 + lanes]);
                let mask = lanes_below(lanes);
                // SAFETY: every gathered element is inside `padded` (the caller's check; offset
                // 0 too, as the padded plane has at least N rows of `wp`); the masked stores
                // write dst[ξ][t0..t0 + lanes].
                unsafe {
                    let idx = _mm256_loadu_si256(base.as_ptr().cast());
                    let d: [[__m256; N]; N] =
                        std::array::from_fn(|r| std::array::from_fn(|c| _mm256_i32gather_ps::<4>(padded.as_ptr().add(r * wp + c), idx)));
                    for (xi, v) in avx2::$input(d).into_iter().enumerate() {
                        store8(dst.as_mut_ptr().add(xi * ld + t0), lanes, mask, v);
                    }
                }
            }
        }

        /// U_ξ's row u[ξ·ld + at..][..C_in] from one output channel's C_in kernels.
        pub(super) fn weights(level: Level, kernels: &[f32], c_in: usize, (at, ld): (usize, usize), u: &mut [f32]) {
            assert!(kernels.len() >= 9 * c_in && at + c_in <= ld && u.len() >= (POINTS - 1) * ld + at + c_in);
            match level {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `Avx512` is only passed where the CPU has AVX-512 (checked by the caller).
                Level::Avx512 => unsafe { weights_avx512(kernels, c_in, (at, ld), u) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `Avx2` is only passed where the CPU has AVX2 (checked by the caller).
                Level::Avx2 => unsafe { weights_avx2(kernels, c_in, (at, ld), u) },
                _ => {
                    for (ci, k) in kernels.chunks_exact(9).take(c_in).enumerate() {
                        let tile = scalar::$weight(std::array::from_fn(|r| std::array::from_fn(|c| k[r * 3 + c])));
                        for (xi, v) in tile.into_iter().enumerate() {
                            u[xi * ld + at + ci] = v;
                        }
                    }
                }
            }
        }

        /// # Safety
        /// AVX-512; the operands checked as in [`weights`].
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        unsafe fn weights_avx512(kernels: &[f32], c_in: usize, (at, ld): (usize, usize), u: &mut [f32]) {
            use std::arch::x86_64::*;
            let idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(9));
            for c0 in (0..c_in).step_by(16) {
                let lanes = (c_in - c0).min(16);
                let mask: __mmask16 = if lanes == 16 { 0xffff } else { (1u16 << lanes) - 1 };
                // SAFETY: the gathers read taps of kernels c0..c0 + lanes (inside `kernels`), the
                // stores write u[ξ·ld + at + c0..][..lanes] (inside `u`), both checked by the caller.
                unsafe {
                    let base = kernels.as_ptr().add(c0 * 9);
                    let g: [[__m512; 3]; 3] = std::array::from_fn(|r| {
                        std::array::from_fn(|c| _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, idx, base.add(r * 3 + c)))
                    });
                    for (xi, v) in avx512::$weight(g).into_iter().enumerate() {
                        _mm512_mask_storeu_ps(u.as_mut_ptr().add(xi * ld + at + c0), mask, v);
                    }
                }
            }
        }

        /// # Safety
        /// AVX2; the operands checked as in [`weights`].
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn weights_avx2(kernels: &[f32], c_in: usize, (at, ld): (usize, usize), u: &mut [f32]) {
            use std::arch::x86_64::*;
            let idx = _mm256_setr_epi32(0, 9, 18, 27, 36, 45, 54, 63);
            for c0 in (0..c_in).step_by(8) {
                let lanes = (c_in - c0).min(8);
                let mask = lanes_below(lanes);
                // SAFETY: the masked gathers read taps of kernels c0..c0 + lanes (inside
                // `kernels`), the masked stores write u[ξ·ld + at + c0..][..lanes] (inside `u`), both
                // checked by the caller.
                unsafe {
                    let base = kernels.as_ptr().add(c0 * 9);
                    let g: [[__m256; 3]; 3] = if lanes == 8 {
                        super::kernels8_avx2(base)
                    } else {
                        std::array::from_fn(|r| {
                            std::array::from_fn(|c| {
                                _mm256_mask_i32gather_ps::<4>(_mm256_setzero_ps(), base.add(r * 3 + c), idx, _mm256_castsi256_ps(mask))
                            })
                        })
                    };
                    for (xi, v) in avx2::$weight(g).into_iter().enumerate() {
                        store8(u.as_mut_ptr().add(xi * ld + at + c0), lanes, mask, v);
                    }
                }
            }
        }

        /// Output plane `plane` of slab channel `jl` from the slab's products `m` ([P][width][ld],
        /// the tiles in the first T columns).
        ///
        /// # Safety
        /// `plane` + each tile's offset + r·w + c (r, c below its rows and columns) is a writable
        /// element of the output.
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn output(
            level: Level,
            m: &[f32],
            tables: &Tables,
            width: usize,
            jl: usize,
            ld: usize,
            w: usize,
            plane: *mut f32,
        ) {
            let t = tables.out_base.len();
            assert!(t <= ld && m.len() >= (POINTS * width - 1) * ld + t && jl < width);
            match level {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `Avx512` is only passed where the CPU has AVX-512 (checked by the
                // caller); the planes as the caller promises.
                Level::Avx512 => unsafe { output_avx512(m, tables, width, jl, ld, w, plane) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above, for AVX2.
                Level::Avx2 => unsafe { output_avx2(m, tables, width, jl, ld, w, plane) },
                _ => {
                    for i in 0..t {
                        let y = scalar::$output(std::array::from_fn(|xi| m[(xi * width + jl) * ld + i]));
                        let base = tables.out_base[i] as usize;
                        for (r, row) in y.iter().enumerate().take(tables.rows[i] as usize) {
                            for (c, &v) in row.iter().enumerate().take(tables.cols[i] as usize) {
                                // SAFETY: as the caller promises.
                                unsafe { plane.add(base + r * w + c).write(v) };
                            }
                        }
                    }
                }
            }
        }

        /// # Safety
        /// As [`output`], on a CPU with AVX-512.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        unsafe fn output_avx512(m: &[f32], tables: &Tables, width: usize, jl: usize, ld: usize, w: usize, plane: *mut f32) {
            use std::arch::x86_64::*;
            let t = tables.out_base.len();
            for t0 in (0..t).step_by(16) {
                let lanes = (t - t0).min(16);
                let mask: __mmask16 = if lanes == 16 { 0xffff } else { (1u16 << lanes) - 1 };
                // SAFETY: the loads read m[ξ][jl][t0..t0 + lanes] and the tables' first `lanes`
                // entries; the scatters write inside the planes (the caller's contract).
                unsafe {
                    let p: [__m512; POINTS] =
                        std::array::from_fn(|xi| _mm512_maskz_loadu_ps(mask, m.as_ptr().add((xi * width + jl) * ld + t0)));
                    let idx = _mm512_maskz_loadu_epi32(mask, tables.out_base.as_ptr().add(t0));
                    let rows = _mm512_maskz_loadu_epi32(mask, tables.rows.as_ptr().add(t0));
                    let cols = _mm512_maskz_loadu_epi32(mask, tables.cols.as_ptr().add(t0));
                    let y: [[__m512; M]; M] = avx512::$output(p);
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
        /// As [`output`], on a CPU with AVX2.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn output_avx2(m: &[f32], tables: &Tables, width: usize, jl: usize, ld: usize, w: usize, plane: *mut f32) {
            use std::arch::x86_64::*;
            let t = tables.out_base.len();
            for t0 in (0..t).step_by(8) {
                let lanes = (t - t0).min(8);
                let mask = lanes_below(lanes);
                // SAFETY: the masked loads read m[ξ][jl][t0..t0 + lanes]; the rows are stored
                // inside the planes (the caller's contract).
                unsafe {
                    let p: [__m256; POINTS] = std::array::from_fn(|xi| load8(m.as_ptr().add((xi * width + jl) * ld + t0), lanes, mask));
                    let y: [[__m256; M]; M] = avx2::$output(p);
                    for (r, &row) in y.iter().enumerate() {
                        super::$store_row(row, r, t0, lanes, tables, w, plane);
                    }
                }
            }
        }
    };
}

/// F(4×4, 3×3).
mod f4 {
    tile_transforms!(6, 4, input4, weight4, output4, store_row4_avx2);
}

/// F(2×2, 3×3).
mod f2 {
    tile_transforms!(4, 2, input2, weight2, output2, store_row2_avx2);
}
