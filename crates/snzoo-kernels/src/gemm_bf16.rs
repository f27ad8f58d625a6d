//! A bf16 GEMM for CPUs with AVX-512 BF16 (AMD Zen 4/5, Intel Cooper Lake and later):
//! C[M×N] = A[M×K] · B[K×N] with A and B rounded to bf16 (round to nearest even, as PyTorch) and
//! products accumulated in f32 by `vdpbf16ps`, which multiplies pairs of bf16 along K and adds
//! both products to one f32 lane.
//!
//! Layouts: A (the weights) is packed once ([`PackedA`]: panels of [`MR`] rows, each a run of
//! K-pairs × MR rows × 2); B is packed per call ([`pack_b`]: panels of [`NR`] columns, each K-pairs
//! × NR columns × 2). The loops keep one B panel block (KC pairs × NR columns, 16 KB) in L1 while
//! every A panel passes over it.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Rows of C per microkernel tile.
pub const MR: usize = 8;
/// Columns of C per microkernel tile (two 16-lane vectors).
pub const NR: usize = 32;
/// K-pairs per cache block.
const KC: usize = 128;

/// Whether this CPU runs the kernel (checked at run time).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// f32 → bf16 bits, rounded to nearest even (NaN stays NaN), as `torch.bfloat16` conversion.
pub fn to_bf16(v: f32) -> u16 {
    half::bf16::from_f32(v).to_bits()
}

/// bf16 bits → f32 (exact).
pub fn from_bf16(h: u16) -> f32 {
    half::bf16::from_bits(h).to_f32()
}

/// 32 bf16: one cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u16; 32]);

/// bf16 bits in a buffer that starts on a cache-line boundary. The kernels read packed operands
/// in 64-byte pieces (AVX-512 registers, AMX tile rows), and a piece that straddles two lines
/// loads far slower: AMX tile loads from L1 ran at a seventh of their speed at a 48-byte offset.
#[derive(Clone, Default)]
pub struct AlignedBf16 {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedBf16 {
    pub const fn new() -> Self {
        Self { lines: Vec::new(), len: 0 }
    }

    /// `len` zeros.
    pub fn zeroed(len: usize) -> Self {
        Self { lines: vec![Line([0; 32]); len.div_ceil(32)], len }
    }

    /// Makes the length `len`. The storage only grows; elements beyond the old contents hold
    /// whatever was there before (zeros if never written), so callers write all of them.
    pub fn set_len(&mut self, len: usize) {
        if self.lines.len() < len.div_ceil(32) {
            self.lines.resize(len.div_ceil(32), Line([0; 32]));
        }
        self.len = len;
    }

    /// Elements the storage holds without growing.
    pub fn capacity(&self) -> usize {
        self.lines.len() * 32
    }
}

impl std::ops::Deref for AlignedBf16 {
    type Target = [u16];
    fn deref(&self) -> &[u16] {
        // SAFETY: `lines` holds at least `len` initialised u16 (Line is 32 u16, no padding).
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedBf16 {
    fn deref_mut(&mut self) -> &mut [u16] {
        // SAFETY: as in `deref`, uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast(), self.len) }
    }
}

impl std::fmt::Debug for AlignedBf16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBf16({} values)", self.len)
    }
}

/// A row-major M×K matrix rounded to bf16 and packed for the microkernel.
#[derive(Debug, Clone)]
pub struct PackedA {
    m: usize,
    k: usize,
    /// K-pairs: ⌈K/2⌉.
    kp: usize,
    /// `[⌈M/MR⌉][kp][MR][2]`
    data: AlignedBf16,
}

impl PackedA {
    pub fn new(a: &[f32], m: usize, k: usize) -> Self {
        assert_eq!(a.len(), m * k, "PackedA: {m}x{k} needs {} values", m * k);
        let kp = k.div_ceil(2);
        let panels = m.div_ceil(MR);
        let mut data = AlignedBf16::zeroed(panels * kp * MR * 2);
        for row in 0..m {
            let (p, r) = (row / MR, row % MR);
            for (kk, &v) in a[row * k..(row + 1) * k].iter().enumerate() {
                data[((p * kp + kk / 2) * MR + r) * 2 + kk % 2] = to_bf16(v);
            }
        }
        Self { m, k, kp, data }
    }

    pub fn rows(&self) -> usize {
        self.m
    }

    pub fn depth(&self) -> usize {
        self.k
    }
}

/// A per-row `v · scale + shift`, then `max(·, 0)` when `relu`, applied to B's values before
/// they are rounded: a normalization (and its ReLU) folded into the packing of the next
/// convolution's operand, so that the normalized activations are never stored in f32. The f32
/// arithmetic is the normalization kernel's ([`crate::norm`]: a product, then a sum, no FMA), so
/// the packed bits equal packing the normalized tensor.
#[derive(Debug, Clone, Copy)]
pub struct RowAffine<'a> {
    /// (scale, shift) per row of B — per input channel of the convolution.
    pub affine: &'a [(f32, f32)],
    pub relu: bool,
}

/// Packs a row-major K×N f32 matrix (row stride `ldb`) into `out`: `[⌈N/NR⌉][⌈K/2⌉][NR][2]` bf16,
/// zero-padded. Panics if the CPU lacks AVX-512 BF16 (check [`available`]).
pub fn pack_b(b: &[f32], k: usize, n: usize, ldb: usize, out: &mut AlignedBf16) {
    pack_b_pairs(b, k, n, ldb, k.div_ceil(2), 1, None, out)
}

/// [`pack_b`] with `pairs` ≥ ⌈K/2⌉ K-pairs per panel, those past K zero (the AMX kernel's
/// whole tiles: [`crate::gemm_amx::PackedA::pairs`]), and B's rows first mapped by `affine`
/// when given (one entry per row). With `threads` > 1 the pairs are split over the kernels'
/// threads ([`crate::parallel::run_parts`]).
#[allow(clippy::too_many_arguments)]
pub fn pack_b_pairs(
    b: &[f32],
    k: usize,
    n: usize,
    ldb: usize,
    pairs: usize,
    threads: usize,
    affine: Option<RowAffine>,
    out: &mut AlignedBf16,
) {
    assert!(k == 0 || b.len() >= (k - 1) * ldb + n, "pack_b: B is too short");
    assert!(available(), "pack_b needs AVX-512 BF16");
    assert!(pairs >= k.div_ceil(2), "pack_b: {pairs} pairs cannot hold a depth of {k}");
    assert!(affine.is_none_or(|a| a.affine.len() >= k), "pack_b: fewer affine rows than B has");
    let len = n.div_ceil(NR) * pairs * NR * 2;
    // Every element is written below (the padding as zeros): no zero-fill of the whole buffer.
    out.set_len(len);
    let out_addr = out.as_mut_ptr() as usize;
    let pack = |range: std::ops::Range<usize>| {
        for pair in range {
            let k0 = 2 * pair;
            // SAFETY: rows k0 (and k0 + 1 < k) lie in B, checked above.
            let (r0, r1): (*const f32, Option<*const f32>) = if k0 >= k {
                (std::ptr::null(), None)
            } else {
                unsafe { (b.as_ptr().add(k0 * ldb), (k0 + 1 < k).then(|| b.as_ptr().add((k0 + 1) * ldb))) }
            };
            let map = affine.filter(|_| k0 < k).map(|a| (a.affine[k0], a.affine.get(k0 + 1).copied().unwrap_or((0.0, 0.0)), a.relu));
            // SAFETY: the CPU features were checked above; `out` holds `pairs` pairs of every
            // panel and each pair is written by one caller; r0/r1 hold N values each.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                pack_pair(r0, r1, map, n, pair, pairs, out_addr as *mut u16)
            };
        }
    };
    crate::parallel::split_range(threads, pairs, pack);
}

/// `v · scale + shift`, then `max(·, 0)` when `relu`, in the lanes of `mask` (zero elsewhere):
/// [`RowAffine`] on 16 values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn affine16(v: __m512, (scale, shift): (f32, f32), relu: bool, mask: __mmask16) -> __m512 {
    let y = _mm512_add_ps(_mm512_mul_ps(v, _mm512_set1_ps(scale)), _mm512_set1_ps(shift));
    // `maxps` returns its second operand when either is NaN: max(NaN, 0) = 0, as f32::max.
    let y = if relu { _mm512_max_ps(y, _mm512_setzero_ps()) } else { y };
    _mm512_maskz_mov_ps(mask, y)
}

/// [`RowAffine`] for one K-pair: (scale, shift) of its two rows, and the ReLU.
type PairMap = ((f32, f32), (f32, f32), bool);

/// Writes K-pair `pair` of every panel: rows `r0` and `r1` (N values each; `r1` None past the
/// depth, and both zero when `r0` is null), mapped by `map` ((scale, shift) of each row, relu)
/// when given.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_pair(r0: *const f32, r1: Option<*const f32>, map: Option<PairMap>, n: usize, pair: usize, kp: usize, out: *mut u16) {
    // Interleaves the 16 values of row k (low half) with the 16 of row k+1 (high half).
    let idx: [i16; 32] = std::array::from_fn(|i| ((i % 2) * 16 + i / 2) as i16);
    let idx = _mm512_loadu_si512(idx.as_ptr().cast());
    for half in 0..n.div_ceil(NR) * (NR / 16) {
        let col = half * 16;
        let (panel, j) = (col / NR, col % NR);
        let dst = out.add(((panel * kp + pair) * NR + j) * 2);
        if r0.is_null() || col >= n {
            // Pairs past the depth and the columns of the last panel past N: zeros.
            _mm512_storeu_si512(dst.cast(), _mm512_setzero_si512());
            continue;
        }
        let valid = (n - col).min(16);
        let mask: __mmask16 = if valid == 16 { 0xffff } else { (1u16 << valid) - 1 };
        let mut v0 = _mm512_maskz_loadu_ps(mask, r0.add(col));
        let mut v1 = match r1 {
            Some(r1) => _mm512_maskz_loadu_ps(mask, r1.add(col)),
            None => _mm512_setzero_ps(),
        };
        if let Some((a0, a1, relu)) = map {
            v0 = affine16(v0, a0, relu, mask);
            if r1.is_some() {
                v1 = affine16(v1, a1, relu, mask);
            }
        }
        // Low 16 bf16 from v0 (row k), high 16 from v1 (row k+1), then interleaved in pairs.
        let packed: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(v1, v0));
        _mm512_storeu_si512(dst.cast(), _mm512_permutexvar_epi16(idx, packed));
    }
}

/// C = A · B for packed A (M×K) and packed B (K×N, from [`pack_b`]); C is row-major with row
/// stride `ldc`, and every element of its first N columns of M rows is written (none is read
/// before). With `threads` > 1 the row panels are split over the kernels' threads ([`crate::parallel::run_parts`]). Panics if the CPU
/// lacks AVX-512 BF16 or a size is off.
pub fn gemm(a: &PackedA, b: &[u16], n: usize, c: &mut [f32], ldc: usize, threads: usize) {
    // SAFETY: f32 → MaybeUninit<f32> has the same layout, and only f32 values are written.
    gemm_into(a, b, n, unsafe { &mut *(c as *mut [f32] as *mut [MaybeUninit<f32>]) }, ldc, threads)
}

/// [`gemm`](fn@gemm) into an uninitialised C: the first N columns of its M rows are written, nothing read.
pub fn gemm_into(a: &PackedA, b: &[u16], n: usize, c: &mut [MaybeUninit<f32>], ldc: usize, threads: usize) {
    gemm_into_with_partials(a, b, n, c, ldc, threads, None)
}

/// [`gemm_into`], and with `partials` (⌈N/NR⌉ panels × M rows) each row's
/// [`Partial`](crate::plane_stats::Partial) in each NR-column panel, computed from each tile as
/// its last depth block is stored.
pub fn gemm_into_with_partials(
    a: &PackedA,
    b: &[u16],
    n: usize,
    c: &mut [MaybeUninit<f32>],
    ldc: usize,
    threads: usize,
    partials: Option<&mut [crate::plane_stats::Partial]>,
) {
    assert!(available(), "gemm_bf16 needs AVX-512 BF16");
    let (m, kp) = (a.m, a.kp);
    assert_eq!(b.len(), n.div_ceil(NR) * kp * NR * 2, "gemm_bf16: packed B does not match A's depth and N");
    assert!(m == 0 || n == 0 || c.len() >= (m - 1) * ldc + n, "gemm_bf16: C is too short");
    if m == 0 || n == 0 {
        return;
    }
    let panels = m.div_ceil(MR);
    let c_addr = c.as_mut_ptr() as usize;
    let partials_addr = crate::plane_stats::partials_addr(partials, m, n, "gemm_bf16");
    crate::parallel::split_range(threads, panels, |range| {
        // SAFETY: the parts' row panels are disjoint, so no two tasks write the same rows of C
        // or of the partials.
        unsafe { gemm_panels(a, b, n, (c_addr as *mut f32, ldc), partials_addr as *mut crate::plane_stats::Partial, range) }
    });
}

/// The row panels `panels` of C = A · B, and unless `partials` is null their rows' partials.
///
/// # Safety
/// The CPU has AVX-512 BF16, `b` matches `a` and `n`, and `c` points to at least
/// (M−1)·ldc + n writable f32 that no one else touches in these row panels; `partials` is null
/// or points to ⌈N/NR⌉ × M writable partials, likewise.
unsafe fn gemm_panels(
    a: &PackedA,
    b: &[u16],
    n: usize,
    (c, ldc): (*mut f32, usize),
    partials: *mut crate::plane_stats::Partial,
    panels: std::ops::Range<usize>,
) {
    let (m, kp) = (a.m, a.kp);
    #[cfg(target_arch = "x86_64")]
    for k0 in (0..kp).step_by(KC) {
        let kl = KC.min(kp - k0);
        for np in 0..n.div_ceil(NR) {
            let bp = b.as_ptr().add((np * kp + k0) * NR * 2);
            let cols = (n - np * NR).min(NR);
            for mp in panels.clone() {
                let ap = a.data.as_ptr().add((mp * kp + k0) * MR * 2);
                let rows = (m - mp * MR).min(MR);
                let cp = c.add(mp * MR * ldc + np * NR);
                // The kernel reads whole zero-padded panels and writes rows < m, columns < n.
                kernel(ap, bp, kl, cp, ldc, rows, cols, k0 > 0);
                if k0 + kl == kp && !partials.is_null() {
                    crate::plane_stats::block_partials(cp, ldc, rows, cols, partials.add(np * m + mp * MR));
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (m, kp, b, n, c, ldc, partials, panels);
}

/// One MR×NR tile of C over `kl` K-pairs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel(a: *const u16, b: *const u16, kl: usize, c: *mut f32, ldc: usize, rows: usize, cols: usize, accumulate: bool) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for kk in 0..kl {
        let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(kk * NR * 2).cast()));
        let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(kk * NR * 2 + 32).cast()));
        let ak = a.add(kk * MR * 2).cast::<i32>();
        for (r, acc) in acc.iter_mut().enumerate() {
            let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(ak.add(r).read_unaligned()));
            acc[0] = _mm512_dpbf16_ps(acc[0], av, b0);
            acc[1] = _mm512_dpbf16_ps(acc[1], av, b1);
        }
    }
    let m0: __mmask16 = if cols >= 16 { 0xffff } else { (1u16 << cols) - 1 };
    let m1: __mmask16 = if cols >= 32 {
        0xffff
    } else if cols > 16 {
        (1u16 << (cols - 16)) - 1
    } else {
        0
    };
    for (r, acc) in acc.iter().enumerate().take(rows) {
        let cr = c.add(r * ldc);
        let (mut v0, mut v1) = (acc[0], acc[1]);
        if accumulate {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr.add(16)));
        }
        _mm512_mask_storeu_ps(cr, m0, v0);
        _mm512_mask_storeu_ps(cr.add(16), m1, v1);
    }
}
