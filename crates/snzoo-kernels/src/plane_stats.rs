//! The per-plane moments of a convolution's output, computed by the bf16 GEMMs as they store each
//! block of it (while the block is in L1), for the normalization that reads the output next — so
//! that the normalization does not read the whole map from memory once more for its statistics
//! alone (that pass was about a ninth of a bf16 ResNet-50 forward).
//!
//! Each stored block of C (at most 32 rows × one 32-column panel) yields, per row, the mean of
//! its values and the sum of their squared deviations from it, in f32 ([`Partial`]). After the
//! GEMM, a row's partials are merged in column order by the pairwise update of Chan, Golub and
//! LeVeque, in f64 ([`merge`]): the result depends only on the block grid, never on how the
//! blocks were spread over threads. It differs from [`crate::norm`]'s own two passes by rounding
//! only (a few units in the seventh digit of the variance).
//!
//! The moments travel beside the tensor, not inside it: [`record`] files them under the output
//! tensor's id (candle numbers tensors from one process-wide counter, so an id is never reused)
//! in a table of the calling thread — a forward pass makes a map and normalizes it on the same
//! thread, a share of the images per thread or the whole batch on one — and the normalization's entry points
//! [`take`] them for their input. A tensor whose moments were never taken (a v2 projection
//! shortcut's convolution, added, not normalized) is dropped after [`TABLE_LEN`] newer ones; a
//! normalization that finds none measures them itself. `SNZOO_FUSE_NORM=0` turns recording off.

use std::cell::RefCell;
use std::collections::VecDeque;

use candle_core::{Tensor, TensorId};

use crate::norm::Moments;

/// Columns per panel of both bf16 GEMMs (the AMX kernel's block, the AVX-512 BF16 kernel's
/// tile): one [`Partial`] per row and panel.
pub const PANEL: usize = crate::gemm_bf16::NR;

/// The address of a GEMM's `partials` (0 for none), checked to hold one per row and panel of an
/// M×N product; `kernel` names the GEMM in the panic.
pub(crate) fn partials_addr(partials: Option<&mut [Partial]>, m: usize, n: usize, kernel: &str) -> usize {
    match partials {
        Some(p) => {
            assert_eq!(p.len(), m * n.div_ceil(PANEL), "{kernel}: partials do not match M and N");
            p.as_mut_ptr() as usize
        }
        None => 0,
    }
}

/// One block row's moments: the mean of its values and the sum of squared deviations from it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[repr(C)]
pub struct Partial {
    pub mean: f32,
    pub m2: f32,
}

/// The moments of each row of an M×N matrix from its blocks' [`Partial`]s, stored panel after
/// panel (M per panel; panel `p` covers columns `p·width ..`, the last one possibly narrower).
/// Rows are merged on `threads` threads of the kernels' pool; each row's sums run in panel order.
pub fn merge(partials: &[Partial], n: usize, width: usize, out: &mut [Moments], threads: usize) {
    let (m, panels) = (out.len(), n.div_ceil(width).max(1));
    assert_eq!(partials.len(), m * panels, "plane_stats::merge: partials do not match the rows");
    // A few operations per partial: small matrices stay on this thread.
    let threads = if partials.len() < 1 << 13 { 1 } else { threads };
    let count = |p: usize| (n - p * width).min(width) as f64;
    crate::parallel::chunks_mut(threads, out, 1, |first, run| {
        // mean = Σ n_p·mean_p / N; M2 = Σ (M2_p + n_p·(mean_p − mean)²) (Chan, Golub and
        // LeVeque's pairwise update), in f64, panel after panel for the whole run of rows.
        let rows = first..first + run.len();
        let mut sum = vec![0f64; run.len()];
        for p in 0..panels {
            let np = count(p);
            for (s, part) in sum.iter_mut().zip(&partials[p * m..][rows.clone()]) {
                *s += np * part.mean as f64;
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n as f64).collect();
        let mut m2 = vec![0f64; run.len()];
        for p in 0..panels {
            let np = count(p);
            for ((q, part), mean) in m2.iter_mut().zip(&partials[p * m..][rows.clone()]).zip(&mean) {
                let d = part.mean as f64 - mean;
                *q += part.m2 as f64 + np * d * d;
            }
        }
        for ((o, mean), m2) in run.iter_mut().zip(mean).zip(m2) {
            *o = Moments { mean, m2 };
        }
    });
}

/// Sums the sixteen vectors `v` each across its lanes: lane `i` of the result holds the sum of
/// `v[i]`. A transposing tree of 15 additions (30 in-lane and cross-lane shuffles, one
/// permutation), where 16 separate reductions take 64 shuffles.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sum16(v: &[std::arch::x86_64::__m512; 16]) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    // Rows 2i | 2i+1 in 256-bit halves.
    let r: [__m512; 8] = std::array::from_fn(|i| {
        _mm512_add_ps(_mm512_shuffle_f32x4::<0x44>(v[2 * i], v[2 * i + 1]), _mm512_shuffle_f32x4::<0xEE>(v[2 * i], v[2 * i + 1]))
    });
    // Rows 4j + c in 128-bit chunk c.
    let s: [__m512; 4] = std::array::from_fn(|j| {
        _mm512_add_ps(_mm512_shuffle_f32x4::<0x88>(r[2 * j], r[2 * j + 1]), _mm512_shuffle_f32x4::<0xDD>(r[2 * j], r[2 * j + 1]))
    });
    // Chunk c: lanes 0–1 row 8k + c, lanes 2–3 row 8k + 4 + c.
    let t: [__m512; 2] = std::array::from_fn(|k| {
        _mm512_add_ps(_mm512_shuffle_ps::<0x44>(s[2 * k], s[2 * k + 1]), _mm512_shuffle_ps::<0xEE>(s[2 * k], s[2 * k + 1]))
    });
    // Lane 4c + j: row c + 4j.
    let u = _mm512_add_ps(_mm512_shuffle_ps::<0x88>(t[0], t[1]), _mm512_shuffle_ps::<0xDD>(t[0], t[1]));
    // Row R from lane 4·(R mod 4) + R / 4.
    _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), u)
}

/// The [`Partial`] of each of the `rows` (≤ 32) rows of the block at `c` (row stride `ldc`,
/// `cols` ≤ 32 columns), written to `out[0..rows]`.
///
/// # Safety
/// The CPU has AVX-512F; `c` holds `rows` rows of `cols` readable f32 `ldc` apart; `out` holds
/// `rows` writable partials.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn block_partials(c: *const f32, ldc: usize, rows: usize, cols: usize, out: *mut Partial) {
    use std::arch::x86_64::*;
    debug_assert!((1..=32).contains(&cols) && rows <= 32);
    let m0: __mmask16 = if cols >= 16 { 0xffff } else { (1u16 << cols) - 1 };
    let m1: __mmask16 = if cols >= 32 { 0xffff } else { ((1u32 << cols.saturating_sub(16)) - 1) as u16 };
    let inv = _mm512_set1_ps(1.0 / cols as f32);
    for first in (0..rows).step_by(16) {
        let group = (rows - first).min(16);
        let load = |r: usize| {
            if r < group {
                let p = c.add((first + r) * ldc);
                (_mm512_maskz_loadu_ps(m0, p), _mm512_maskz_loadu_ps(m1, p.add(16)))
            } else {
                (_mm512_setzero_ps(), _mm512_setzero_ps())
            }
        };
        let sums: [__m512; 16] = std::array::from_fn(|r| {
            let (v0, v1) = load(r);
            _mm512_add_ps(v0, v1)
        });
        let mean = _mm512_mul_ps(sum16(&sums), inv);
        let squares: [__m512; 16] = std::array::from_fn(|r| {
            let (v0, v1) = load(r);
            let mv = _mm512_permutexvar_ps(_mm512_set1_epi32(r as i32), mean);
            let (d0, d1) = (_mm512_maskz_sub_ps(m0, v0, mv), _mm512_maskz_sub_ps(m1, v1, mv));
            _mm512_fmadd_ps(d0, d0, _mm512_mul_ps(d1, d1))
        });
        let m2 = sum16(&squares);
        // (mean, m2) pairs in row order: unpack gives rows {0,1 | 4,5 | 8,9 | 12,13} and
        // {2,3 | 6,7 | 10,11 | 14,15} per 128-bit chunk.
        let (lo, hi) = (_mm512_unpacklo_ps(mean, m2), _mm512_unpackhi_ps(mean, m2));
        let rows_0_7 = _mm512_shuffle_f32x4::<0xD8>(_mm512_shuffle_f32x4::<0x44>(lo, hi), _mm512_shuffle_f32x4::<0x44>(lo, hi));
        let rows_8_15 = _mm512_shuffle_f32x4::<0xD8>(_mm512_shuffle_f32x4::<0xEE>(lo, hi), _mm512_shuffle_f32x4::<0xEE>(lo, hi));
        let mask = |from: usize| -> __mmask16 { ((1u32 << (2 * group.saturating_sub(from).min(8))) - 1) as u16 };
        let o = out.add(first) as *mut f32;
        _mm512_mask_storeu_ps(o, mask(0), rows_0_7);
        _mm512_mask_storeu_ps(o.add(16), mask(8), rows_8_15);
    }
}

/// Tensors whose moments a thread keeps at most, newest first out last.
pub const TABLE_LEN: usize = 4;

struct Entry {
    id: TensorId,
    /// (N·C planes, H·W): what the moments describe.
    shape: (usize, usize),
    moments: Vec<Moments>,
}

thread_local! {
    static TABLE: RefCell<VecDeque<Entry>> = const { RefCell::new(VecDeque::new()) };
}

/// Files the moments of the (N, C, H, W) tensor `t`'s planes for its normalization.
pub(crate) fn record(t: &Tensor, moments: Vec<Moments>) {
    let Ok((n, c, h, w)) = t.dims4() else { return };
    if moments.len() != n * c {
        return;
    }
    TABLE.with_borrow_mut(|table| {
        if table.len() == TABLE_LEN {
            table.pop_back();
        }
        table.push_front(Entry { id: t.id(), shape: (n * c, h * w), moments });
    })
}

/// The moments of the planes of `t` (mean and sum of squared deviations, plane after plane)
/// where the kernel that made it on this thread (a bf16 convolution, the residual addition) filed
/// them and no one has taken them yet; taken out of the table. The kernels' normalizations take
/// them for their input.
pub fn take(t: &Tensor) -> Option<Vec<Moments>> {
    let (n, c, h, w) = t.dims4().ok()?;
    let e = TABLE.with_borrow_mut(|table| {
        let i = table.iter().position(|e| e.id == t.id())?;
        table.remove(i)
    })?;
    (e.shape == (n * c, h * w)).then_some(e.moments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    fn exact(v: &[f32]) -> Moments {
        let mean = v.iter().map(|&a| a as f64).sum::<f64>() / v.len() as f64;
        Moments { mean, m2: v.iter().map(|&a| (a as f64 - mean).powi(2)).sum() }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn merged_partials_match_the_exact_moments() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("skipped: no AVX-512F");
            return;
        }
        // 21 rows (a group of 16 and one of 5) of 75 values (panels of 32, 32, 11) with an offset
        // far above their spread.
        let (rows, n) = (21usize, 75usize);
        let c: Vec<f32> = (0..rows * n).map(|i| 100.0 + (i / n) as f32 + ((i * 7919) % 97) as f32 / 97.0).collect();
        let panels = n.div_ceil(32);
        let mut partials = vec![Partial::default(); rows * panels];
        for p in 0..panels {
            let cols = (n - p * 32).min(32);
            // SAFETY: the test machine has AVX-512F; the block and the partials are in bounds.
            unsafe { block_partials(c.as_ptr().add(p * 32), n, rows, cols, partials.as_mut_ptr().add(p * rows)) };
        }
        let mut got = vec![Moments { mean: 0.0, m2: 0.0 }; rows];
        merge(&partials, n, 32, &mut got, 1);
        for (r, g) in got.iter().enumerate() {
            let want = exact(&c[r * n..(r + 1) * n]);
            assert!((g.mean - want.mean).abs() <= 1e-6 * want.mean.abs(), "row {r}: mean {} vs {}", g.mean, want.mean);
            assert!((g.m2 - want.m2).abs() <= 1e-5 * want.m2, "row {r}: m2 {} vs {}", g.m2, want.m2);
        }
    }

    #[test]
    fn the_table_hands_moments_to_their_tensor_once() {
        let t = Tensor::zeros((1, 2, 3, 3), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let other = Tensor::zeros((1, 2, 3, 3), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let m = vec![Moments { mean: 1.0, m2: 2.0 }; 2];
        record(&t, m.clone());
        assert_eq!(take(&other), None);
        assert_eq!(take(&t.clone()), Some(m.clone()));
        assert_eq!(take(&t), None);
        // A wrong count is not filed.
        record(&t, vec![Moments { mean: 0.0, m2: 0.0 }; 3]);
        assert_eq!(take(&t), None);
        // Another thread's table is its own.
        record(&t, m.clone());
        assert_eq!(std::thread::scope(|s| s.spawn(|| take(&t)).join().unwrap()), None);
        assert_eq!(take(&t), Some(m.clone()));
        // The oldest entries fall out.
        record(&t, m.clone());
        for _ in 0..TABLE_LEN {
            let u = Tensor::zeros((1, 2, 3, 3), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
            record(&u, m.clone());
        }
        assert_eq!(take(&t), None);
    }
}
