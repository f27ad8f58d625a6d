//! A bf16 GEMM on Intel AMX tiles (AMX-TILE + AMX-BF16: Sapphire Rapids and later): the same
//! product as [`crate::gemm_bf16`] — C[M×N] = A[M×K] · B[K×N] with A and B rounded to bf16 and
//! the products summed in f32 — by `tdpbf16ps`, which multiplies a 16×32 bf16 tile by a 32×16
//! one into a 16×16 f32 tile (8192 products per instruction; a `vdpbf16ps` makes 32).
//!
//! Rust has no stable AMX intrinsics, so the tile instructions are inline assembly, and Linux
//! hands the tile registers to a process only on request (`arch_prctl(ARCH_REQ_XCOMP_PERM)`),
//! which [`available`] makes once.
//!
//! Layouts: A (the weights) is packed once ([`PackedA`]): bf16, M padded to [`MB`] rows and K to
//! [`KT`] with zeros, tile after tile, so an A tile is 1 KB in one piece.
//! B is [`crate::gemm_bf16::pack_b_pairs`]'s layout with K padded to [`KT`]: panels of
//! [`NB`] = 32 columns, K-pairs × 32 columns × 2, so a B tile is 16 pairs × 16 columns at a
//! 128-byte stride. Each 32×32 block of C lives in four tiles over the whole depth and is stored
//! once, straight into C — or, at C's edges (which need not be whole tiles), into a small buffer
//! whose inside part is copied. Every operand is read from 64-byte-aligned memory: a tile row that
//! straddles two cache lines loads several times slower.

use std::mem::MaybeUninit;
use std::sync::OnceLock;

/// Rows of C per block (two A tiles).
pub const MB: usize = 32;
/// Columns of C per block (two B tiles): a panel of [`crate::gemm_bf16::pack_b_pairs`].
pub const NB: usize = crate::gemm_bf16::NR;
/// K per tile step (a tile row holds 32 bf16).
pub const KT: usize = 32;

/// Whether this CPU and OS run the kernel: AMX-TILE, AMX-BF16 and AVX-512 BF16 (for packing B),
/// and Linux granted the tile data state to this process. Checked once. The environment variable
/// `SNZOO_AMX=0` turns the kernel off (bf16 convolutions then use AVX-512 BF16), for comparisons.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| std::env::var_os("SNZOO_AMX").is_none_or(|v| v != "0") && detect())
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> bool {
    // SAFETY: CPUID leaf 7 exists on every x86-64 CPU that reports a maximum leaf ≥ 7. (`__cpuid`
    // is a safe function from Rust 1.94 on; `unsafe` keeps older compilers in `rust-version`.)
    #[allow(unused_unsafe)]
    let cpuid = unsafe {
        if std::arch::x86_64::__cpuid(0).eax < 7 {
            return false;
        }
        std::arch::x86_64::__cpuid_count(7, 0)
    };
    let (amx_bf16, amx_tile) = (cpuid.edx & (1 << 22) != 0, cpuid.edx & (1 << 24) != 0);
    if !(amx_bf16 && amx_tile && crate::gemm_bf16::available()) {
        return false;
    }
    // ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA: without it the first tile load faults.
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call with integer arguments.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> bool {
    false
}

/// An M×K matrix rounded to bf16 (round to nearest even), padded with zeros to whole tiles and
/// stored tile by tile: `[⌈M/32⌉ blocks][⌈K/32⌉ steps][32 rows][32 values]`, so that the kernel
/// reads each block's A tiles as one sequential stream (row-major rows 9 KB apart defeated the
/// prefetchers: the kernel ran at half the speed).
#[derive(Debug, Clone)]
pub struct PackedA {
    m: usize,
    k: usize,
    kpad: usize,
    data: crate::gemm_bf16::AlignedBf16,
}

impl PackedA {
    pub fn new(a: &[f32], m: usize, k: usize) -> Self {
        assert_eq!(a.len(), m * k, "PackedA: {m}x{k} needs {} values", m * k);
        let kpad = k.div_ceil(KT).max(1) * KT;
        let steps = kpad / KT;
        let mut data = crate::gemm_bf16::AlignedBf16::zeroed(m.div_ceil(MB) * MB * kpad);
        for (row, values) in a.chunks(k.max(1)).enumerate().take(m) {
            let (mb, r) = (row / MB, row % MB);
            for (kk, &v) in values.iter().enumerate() {
                data[((mb * steps + kk / KT) * MB + r) * KT + kk % KT] = crate::gemm_bf16::to_bf16(v);
            }
        }
        Self { m, k, kpad, data }
    }

    pub fn rows(&self) -> usize {
        self.m
    }

    pub fn depth(&self) -> usize {
        self.k
    }

    /// K-pairs of a matching packed B: [`crate::gemm_bf16::pack_b_pairs`] with this many pairs.
    pub fn pairs(&self) -> usize {
        self.kpad / 2
    }
}

/// C = A · B for packed A (M×K) and B packed by [`crate::gemm_bf16::pack_b_pairs`] with
/// [`PackedA::pairs`] pairs; the first N columns of C's M rows (row stride `ldc`) are written,
/// none read. With `threads` > 1 the blocks are split over the kernels' threads ([`crate::parallel::run_parts`]). Panics if the CPU
/// lacks AMX (check [`available`]) or a size is off.
pub fn gemm_into(a: &PackedA, b: &[u16], n: usize, c: &mut [MaybeUninit<f32>], ldc: usize, threads: usize) {
    gemm_into_with_partials(a, b, n, c, ldc, threads, None)
}

/// [`gemm_into`], and with `partials` (⌈N/32⌉ panels × M rows) each row's
/// [`Partial`](crate::plane_stats::Partial) in each 32-column panel, computed from each block as
/// it is stored.
pub fn gemm_into_with_partials(
    a: &PackedA,
    b: &[u16],
    n: usize,
    c: &mut [MaybeUninit<f32>],
    ldc: usize,
    threads: usize,
    partials: Option<&mut [crate::plane_stats::Partial]>,
) {
    assert!(available(), "gemm_amx needs AMX-BF16");
    let (m, kp) = (a.m, a.pairs());
    assert_eq!(b.len(), n.div_ceil(NB) * kp * NB * 2, "gemm_amx: packed B does not match A's depth and N");
    assert!(m == 0 || n == 0 || c.len() >= (m - 1) * ldc + n, "gemm_amx: C is too short");
    if m == 0 || n == 0 {
        return;
    }
    let (mblocks, npanels) = (m.div_ceil(MB), n.div_ceil(NB));
    let c_addr = c.as_mut_ptr() as usize;
    let partials_addr = crate::plane_stats::partials_addr(partials, m, n, "gemm_amx");
    let by_columns = npanels >= mblocks;
    let parts = threads.clamp(1, if by_columns { npanels } else { mblocks });
    crate::parallel::run_parts(parts, |part| {
        let split = |len: usize| len * part / parts..len * (part + 1) / parts;
        let (rows, cols) = if by_columns { (0..mblocks, split(npanels)) } else { (split(mblocks), 0..npanels) };
        // SAFETY: the CPU has AMX (asserted), `b` matches `a` and `n`, C holds (m−1)·ldc + n
        // values, the partials (when given) m × npanels, and the parts' blocks are disjoint.
        unsafe { gemm_blocks(a, b, n, (c_addr as *mut f32, ldc), partials_addr as *mut crate::plane_stats::Partial, rows, cols) };
    });
}

/// The tile configuration: palette 1, tiles 0–7 of 16 rows × 64 bytes (0–3 the C block, 4–5 A,
/// 6–7 B).
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    const fn new() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1;
        let mut t = 0;
        while t < 8 {
            c[16 + 2 * t] = 64;
            c[48 + t] = 16;
            t += 1;
        }
        TileConfig(c)
    }
}

static CONFIG: TileConfig = TileConfig::new();

/// A 32×32 f32 block as the tiles store it.
#[repr(C, align(64))]
struct Block([f32; MB * NB]);

/// The blocks `rows` × `cols` of C = A · B, each over the whole depth; and, unless `partials` is
/// null, each block's row partials.
///
/// # Safety
/// The CPU has AMX and the OS granted it ([`available`]); `b` matches `a` and `n`; `c` points to
/// at least (M−1)·ldc + n writable f32 that no one else touches in these blocks; `partials` is
/// null or points to ⌈N/NB⌉ × M writable partials, likewise.
#[cfg(target_arch = "x86_64")]
unsafe fn gemm_blocks(
    a: &PackedA,
    b: &[u16],
    n: usize,
    (c, ldc): (*mut f32, usize),
    partials: *mut crate::plane_stats::Partial,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) {
    use std::arch::asm;
    let (m, kpad, kp) = (a.m, a.kpad, a.pairs());
    let steps = kpad / KT;
    let mut block = Block([0.0; MB * NB]);
    asm!("ldtilecfg [{}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly));
    let mut one_block = |np: usize, mb: usize| {
        let bp = b.as_ptr().add(np * kp * NB * 2);
        let ncols = (n - np * NB).min(NB);
        let a0 = a.data.as_ptr().add(mb * MB * kpad);
        let a1 = a0.add(16 * KT);
        let nrows = (m - mb * MB).min(MB);
        // A whole block is stored straight into C; an edge block into `block`, then copied.
        let whole = nrows == MB && ncols == NB;
        if !partials.is_null() {
            // The block's lines of C, fetched for writing while the tiles multiply: the partials
            // read the block back at once, and would otherwise wait for the stores' misses.
            for r in 0..nrows {
                let line = c.add((mb * MB + r) * ldc + np * NB) as *const i8;
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_ET0 }>(line);
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_ET0 }>(line.add(64));
            }
        }
        let (out, so) = if whole { (c.add(mb * MB * ldc + np * NB), ldc * 4) } else { (block.0.as_mut_ptr(), NB * 4) };
        // Tiles 0–3 accumulate the block: [A rows 0–15 | 16–31] × [B columns 0–15 | 16–31].
        // Per step, A advances one 32×32 tile pair (2048 bytes), B 16 pairs (16 × 128 bytes).
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "2:",
            "tileloadd tmm4, [{a0} + {sa}*1]",
            "tileloadd tmm6, [{b} + {sb}*1]",
            "tileloadd tmm7, [{b} + {sb}*1 + 64]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tileloadd tmm5, [{a1} + {sa}*1]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "add {a0}, 2048",
            "add {a1}, 2048",
            "add {b}, 2048",
            "dec {steps}",
            "jnz 2b",
            "tilestored [{out} + {so}*1], tmm0",
            "tilestored [{out} + {so}*1 + 64], tmm1",
            "tilestored [{out2} + {so}*1], tmm2",
            "tilestored [{out2} + {so}*1 + 64], tmm3",
            a0 = inout(reg) a0 => _,
            a1 = inout(reg) a1 => _,
            b = inout(reg) bp => _,
            steps = inout(reg) steps => _,
            sa = in(reg) KT * 2,
            sb = in(reg) NB * 2 * 2,
            out = in(reg) out,
            out2 = in(reg) out.byte_add(16 * so),
            so = in(reg) so,
            options(nostack),
        );
        if !whole {
            for r in 0..nrows {
                let dst = c.add((mb * MB + r) * ldc + np * NB);
                std::ptr::copy_nonoverlapping(block.0.as_ptr().add(r * NB), dst, ncols);
            }
        }
        if !partials.is_null() {
            // Read back at once, from L1 (an edge block from its buffer).
            let (src, ld) = if whole { (out as *const f32, ldc) } else { (block.0.as_ptr(), NB) };
            crate::plane_stats::block_partials(src, ld, nrows, ncols, partials.add(np * m + mb * MB));
        }
    };
    // The operand reused across the inner loop stays in cache while the other streams past it:
    // with more A blocks than B panels (the deep layers: many channels, few positions) each A
    // block is read once and B's panels stream from L2, else each B panel is read once. The
    // other way round, the deep layers' weights (up to 4.7 MB in bf16) would come from memory
    // once per panel.
    if rows.len() > cols.len() {
        for mb in rows {
            cols.clone().for_each(|np| one_block(np, mb));
        }
    } else {
        for np in cols {
            rows.clone().for_each(|mb| one_block(np, mb));
        }
    }
    asm!("tilerelease", options(nostack, nomem));
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn gemm_blocks(
    _a: &PackedA,
    _b: &[u16],
    _n: usize,
    _c: (*mut f32, usize),
    _partials: *mut crate::plane_stats::Partial,
    _rows: std::ops::Range<usize>,
    _cols: std::ops::Range<usize>,
) {
    unreachable!("gemm_amx::available() is false off x86-64")
}
