//! im2col straight into the packed bf16 B of [`crate::gemm_bf16`] and [`crate::gemm_amx`].
//!
//! A k×k convolution's right-hand side is the im2col matrix: row r = (channel, ky, kx) holds,
//! for every output position, the input value under that kernel tap. Made as f32 rows and then
//! rounded and packed, it is written and read nine times over for a 3×3 kernel. Here the image is
//! rounded to bf16 once, into a copy with a zero border of the padding's width (so that no tap
//! needs a bounds check), and each packed 16-column piece of a K-pair is then read from that copy
//! by address: an output position's value under tap (ky, kx) of channel c sits at
//! `c·Hp·Wp + (oy·s + ky)·Wp + ox·s + kx`. Sixteen consecutive output positions of one output row
//! at stride 1 are sixteen consecutive bf16 (two 32-byte loads for the pair, interleaved); any
//! other piece is two 16-lane gathers of the positions' offsets, precomputed once per call.
//!
//! The packed buffer is bit for bit [`crate::gemm_bf16::pack_b_pairs`] of the f32 im2col matrix
//! (the same rounding instruction), which the tests check.

use crate::gemm_bf16::{AlignedBf16, RowAffine, NR};

/// A k×k, stride-s, padding-p convolution of a C×H×W image.
#[derive(Debug, Clone, Copy)]
pub struct Im2colShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Im2colShape {
    /// (H_out, W_out), or None when the kernel does not fit or a size is zero.
    pub fn output(&self) -> Option<(usize, usize)> {
        let Im2colShape { channels, height: h, width: w, kernel: k, stride: s, padding: p } = *self;
        if channels == 0 || k == 0 || s == 0 || h + 2 * p < k || w + 2 * p < k {
            return None;
        }
        Some(((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1))
    }

    /// Rows of the im2col matrix (the GEMM's depth K).
    pub fn depth(&self) -> usize {
        self.channels * self.kernel * self.kernel
    }

    /// Each im2col row's tap (channel, ky, kx) as an offset in the padded copy, at output
    /// position (0, 0), in row order.
    fn row_offsets(&self) -> Vec<usize> {
        let k = self.kernel;
        let (hp, wp) = (self.height + 2 * self.padding, self.width + 2 * self.padding);
        let mut offsets = Vec::with_capacity(self.depth());
        for channel in 0..self.channels {
            for ky in 0..k {
                offsets.extend((0..k).map(|kx| channel * hp * wp + ky * wp + kx));
            }
        }
        offsets
    }
}

thread_local! {
    /// The padded bf16 copy of the image, kept between calls.
    static PADDED: std::cell::RefCell<AlignedBf16> = const { std::cell::RefCell::new(AlignedBf16::new()) };
}

/// Packs image `x` (C×H×W f32, contiguous)'s im2col matrix into `out` in
/// [`crate::gemm_bf16::pack_b_pairs`]'s layout with `pairs` ≥ ⌈K/2⌉ K-pairs per panel (those past
/// K zero); with `affine` (one entry per channel) the image's values are mapped by it before they
/// are rounded, the zero border left zero (the convolution pads the normalized image). With `threads` > 1 the work is split over the kernels' threads ([`crate::parallel::run_parts`]). Panics if the CPU lacks
/// AVX-512 BF16 (check [`crate::gemm_bf16::available`]) or the sizes do not fit.
pub fn pack_b_im2col(x: &[f32], shape: Im2colShape, pairs: usize, threads: usize, affine: Option<RowAffine>, out: &mut AlignedBf16) {
    assert!(crate::gemm_bf16::available(), "pack_b_im2col needs AVX-512 BF16");
    let (ho, wo) = shape.output().expect("pack_b_im2col: the kernel does not fit the image");
    let Im2colShape { channels: c, height: h, width: w, stride: s, padding: p, .. } = shape;
    assert_eq!(x.len(), c * h * w, "pack_b_im2col: the image is not {c}x{h}x{w}");
    let kk = shape.depth();
    assert!(pairs >= kk.div_ceil(2), "pack_b_im2col: {pairs} pairs cannot hold a depth of {kk}");
    assert!(affine.is_none_or(|a| a.affine.len() >= c), "pack_b_im2col: fewer affine entries than channels");
    let (hp, wp) = (h + 2 * p, w + 2 * p);
    // The padded copy's elements are addressed with i32 offsets by the gathers.
    assert!(c * hp * wp + 2 <= i32::MAX as usize, "pack_b_im2col: image too large");
    let n = ho * wo;

    // The padded copy, 2 spare zeros at the end: a gather reads 4 bytes for each bf16.
    let mut padded = crate::conv::take_scratch(&PADDED);
    padded.set_len(c * hp * wp + 2);
    padded[c * hp * wp..].fill(0);
    crate::parallel::chunks_mut(threads, &mut padded[..c * hp * wp], hp * wp, |first, planes| {
        for (i, plane) in planes.chunks_mut(hp * wp).enumerate() {
            let ch = first + i;
            let map = affine.map(|a| (a.affine[ch], a.relu));
            // SAFETY: channel `ch` of `x` and its padded plane are in bounds (sizes checked
            // above); the CPU has AVX-512 BF16.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                round_padded(&x[ch * h * w..(ch + 1) * h * w], h, w, p, map, plane.as_mut_ptr())
            };
        }
    });

    // Each output position's offset in a padded channel, and how each group of 16 is read: as
    // a few contiguous runs (stride 1: a group crosses at most a few output rows) by masked
    // loads, else by gathers.
    // (Made by nested loops: two divisions per position cost a batch-1 forward pass ~2 %.)
    let groups = n.div_ceil(16);
    let mut offsets = Vec::with_capacity(groups * 16);
    for oy in 0..ho {
        offsets.extend((0..wo).map(|ox| (oy * s * wp + ox * s) as i32));
    }
    offsets.resize(groups * 16, 0);
    let reads: Vec<GroupRead> = (0..groups).map(|g| GroupRead::new(&offsets[g * 16..g * 16 + 16], (n - g * 16).min(16))).collect();

    // Each row's tap offset, made once (not per pair and panel).
    let row_offsets = shape.row_offsets();
    let panel_len = pairs * NR * 2;
    out.set_len(n.div_ceil(NR) * panel_len);
    let src: &[u16] = &padded;
    crate::parallel::chunks_mut(threads, &mut out[..], panel_len, |first, panels| {
        for (i, panel) in panels.chunks_mut(panel_len).enumerate() {
            for pair in 0..pairs {
                let k0 = 2 * pair;
                let rows = (k0 < kk).then(|| (row_offsets[k0], row_offsets.get(k0 + 1).copied()));
                // SAFETY: the pair's NR·2 values lie in `panel`; every offset read is inside
                // the padded copy (offsets of valid positions plus a tap's offset stay inside
                // its channel; 2 spare elements cover the gathers' 4-byte reads); the CPU has
                // AVX-512 BF16.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    let dst = panel.as_mut_ptr().add(pair * NR * 2);
                    for half in 0..NR / 16 {
                        let col = (first + i) * NR + half * 16;
                        pack_piece(src.as_ptr(), rows, &offsets, &reads, col, n, dst.add(half * 32));
                    }
                }
            }
        }
    });
    crate::conv::return_scratch(&PADDED, padded);
}

/// Rounds one H×W channel to bf16 into `dst`, an (H+2p)×(W+2p) plane with a zero border, its
/// values first mapped by `map` ((scale, shift), relu: [`RowAffine`]) when given.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,avx512vl")]
unsafe fn round_padded(x: &[f32], h: usize, w: usize, p: usize, map: Option<((f32, f32), bool)>, dst: *mut u16) {
    use std::arch::x86_64::*;
    let wp = w + 2 * p;
    std::ptr::write_bytes(dst, 0, p * wp);
    for y in 0..h {
        let row = dst.add((p + y) * wp);
        std::ptr::write_bytes(row, 0, p);
        let src = x.as_ptr().add(y * w);
        let mut col = 0;
        while col < w {
            let valid = (w - col).min(16);
            let mask: __mmask16 = if valid == 16 { 0xffff } else { (1u16 << valid) - 1 };
            let mut v = _mm512_maskz_loadu_ps(mask, src.add(col));
            if let Some((a, relu)) = map {
                v = crate::gemm_bf16::affine16(v, a, relu, mask);
            }
            let b: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
            _mm256_mask_storeu_epi16(row.add(p + col).cast(), mask, b);
            col += 16;
        }
        std::ptr::write_bytes(row.add(p + w), 0, p);
    }
    std::ptr::write_bytes(dst.add((p + h) * wp), 0, p * wp);
}

/// Most contiguous runs a group of 16 positions is read in by masked loads (more: gathers).
const MAX_RUNS: usize = 4;

/// How one group of 16 output positions is read from a padded channel.
#[derive(Debug, Clone, Copy)]
enum GroupRead {
    /// In up to [`MAX_RUNS`] runs of consecutive elements: run j covers the lanes of `masks[j]`,
    /// lane l of it at offset `bases[j] + l` (`bases[j]` = the run's first offset minus its first
    /// lane, so one masked load of 16 lanes at `bases[j]` reads it).
    Runs { count: usize, masks: [u16; MAX_RUNS], bases: [i32; MAX_RUNS] },
    /// By a gather of the 16 offsets.
    Gather,
}

impl GroupRead {
    /// The reads of the `valid` first positions of a group whose offsets are `offsets` (16).
    fn new(offsets: &[i32], valid: usize) -> Self {
        let (mut count, mut masks, mut bases) = (0, [0u16; MAX_RUNS], [0i32; MAX_RUNS]);
        for lane in 0..valid {
            if lane == 0 || offsets[lane] != offsets[lane - 1] + 1 {
                if count == MAX_RUNS {
                    return GroupRead::Gather;
                }
                bases[count] = offsets[lane] - lane as i32;
                count += 1;
            }
            masks[count - 1] |= 1 << lane;
        }
        GroupRead::Runs { count, masks, bases }
    }
}

/// Writes the 16 columns `col`.. of one K-pair (64 bytes at `dst`): for each output position,
/// the bf16 at `rows.0 + offset` then the one at `rows.1 + offset` (zero past the depth, and
/// both zero for positions past `n` or when `rows` is None).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,avx512vl")]
unsafe fn pack_piece(
    src: *const u16,
    rows: Option<(usize, Option<usize>)>,
    offsets: &[i32],
    reads: &[GroupRead],
    col: usize,
    n: usize,
    dst: *mut u16,
) {
    use std::arch::x86_64::*;
    let Some((r0, r1)) = rows.filter(|_| col < n) else {
        _mm512_storeu_si512(dst.cast(), _mm512_setzero_si512());
        return;
    };
    let valid = (n - col).min(16);
    let mask: __mmask16 = if valid == 16 { 0xffff } else { (1u16 << valid) - 1 };
    let packed = match reads[col / 16] {
        GroupRead::Runs { count, masks, bases } => {
            // Each run by a masked load whose lane l reads `base + l`: the lanes outside the run
            // are neither read nor changed (AVX-512 masked loads do not touch masked-off lanes,
            // so the base may lie before the row it reads).
            let run_loads = |row: usize| {
                let mut v = _mm256_setzero_si256();
                for j in 0..count {
                    let at = src.wrapping_add(row).wrapping_offset(bases[j] as isize);
                    v = _mm256_mask_loadu_epi16(v, masks[j], at.cast());
                }
                v
            };
            let lo = run_loads(r0);
            let hi = match r1 {
                Some(r1) => run_loads(r1),
                None => _mm256_setzero_si256(),
            };
            // Interleaved in pairs: row r0's value of each position, then row r1's.
            let idx: [i16; 32] = std::array::from_fn(|i| ((i % 2) * 16 + i / 2) as i16);
            let both = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
            _mm512_permutexvar_epi16(_mm512_loadu_si512(idx.as_ptr().cast()), both)
        }
        GroupRead::Gather => {
            // Gathers of 4 bytes at each position (the bf16 wanted in the low half).
            let vidx = _mm512_loadu_si512(offsets.as_ptr().add(col).cast());
            let zero = _mm512_setzero_si512();
            let g0 = _mm512_mask_i32gather_epi32::<2>(zero, mask, vidx, src.add(r0).cast());
            let low = _mm512_and_si512(g0, _mm512_set1_epi32(0xffff));
            match r1 {
                Some(r1) => {
                    let g1 = _mm512_mask_i32gather_epi32::<2>(zero, mask, vidx, src.add(r1).cast());
                    _mm512_or_si512(low, _mm512_slli_epi32::<16>(g1))
                }
                None => low,
            }
        }
    };
    _mm512_storeu_si512(dst.cast(), packed);
}
