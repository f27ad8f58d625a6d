//! A measured design, not yet a kernel: a stride-1 3×3 convolution as an implicit AMX GEMM, next
//! to what `Conv2dBf16` does today (im2col packing + the AMX GEMM), one thread, ms per image.
//!
//! The implicit form packs no im2col matrix. The image is copied once per column tap (three
//! copies, shifted by one column) into a zero-padded, pair-interleaved bf16 layout
//! `[channel pair][padded position][2]` whose rows are `Wp` = a multiple of 16 positions wide; the
//! output is computed over a virtual grid of H × Wp positions (the columns past W are dropped), so
//! the B tile of tap (ky, kx) for 16 virtual positions from `j` is 16 pair rows × 64 bytes at
//! position `j + ky·Wp` of copy `kx` — one aligned `tileloadd` with the pair rows' stride. The
//! weights are packed tap-major. The copies here are made by a plain scalar loop (timed apart):
//! a vectorised one would cost about three times `round_padded`.
//!
//!     cargo run --release -p snzoo-kernels --example implicit_amx
#![allow(clippy::needless_range_loop)]
use std::arch::asm;
use std::mem::MaybeUninit;
use std::time::Instant;

use snzoo_kernels::gemm_bf16::{to_bf16, AlignedBf16};
use snzoo_kernels::{gemm_amx, im2col_bf16};

#[repr(C, align(64))]
struct Cfg([u8; 64]);

fn main() {
    if !gemm_amx::available() {
        println!("skipped: this CPU (or OS) gives no AMX tiles");
        return;
    }
    let mut cfg = Cfg([0; 64]);
    cfg.0[0] = 1;
    for t in 0..8 {
        cfg.0[16 + 2 * t] = 64;
        cfg.0[48 + t] = 16;
    }
    for (c, hw) in [(256usize, 14usize), (128, 28), (64, 56), (512, 7)] {
        let m = c;
        let x: Vec<f32> = (0..c * hw * hw).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let g: Vec<f32> = (0..m * c * 9).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
        // (a) im2col + AMX GEMM.
        let pa = gemm_amx::PackedA::new(&g, m, c * 9);
        let mut packed = AlignedBf16::new();
        let mut out = vec![MaybeUninit::<f32>::uninit(); m * hw * hw];
        let shape = im2col_bf16::Im2colShape { channels: c, height: hw, width: hw, kernel: 3, stride: 1, padding: 1 };
        let reps = 200;
        let time = |f: &mut dyn FnMut()| {
            f();
            let mut best = f64::MAX;
            for _ in 0..3 {
                let t = Instant::now();
                for _ in 0..reps {
                    f();
                }
                best = best.min(t.elapsed().as_secs_f64() / reps as f64 * 1e3);
            }
            best
        };
        let direct = time(&mut || {
            im2col_bf16::pack_b_im2col(&x, shape, pa.pairs(), 1, None, &mut packed);
            gemm_amx::gemm_into(&pa, &packed, hw * hw, &mut out, hw * hw, 1);
        });
        // SAFETY: the GEMM wrote every element.
        let reference: Vec<f32> = out.iter().map(|v| unsafe { v.assume_init() }).collect();

        // (b) implicit. Padded row width: a multiple of 16 ≥ hw + 2.
        let wp = (hw + 2).div_ceil(16) * 16;
        let hp = hw + 2;
        let vn = hw * wp; // virtual outputs
        let panels = vn.div_ceil(32);
        // positions per pair row: enough for the last panel's reads (+2 rows of taps, +32 slack)
        let plen = ((panels * 32 + 2 * wp + 32).div_ceil(16)) * 16;
        let pairs = c / 2;
        // A: [mb][tap][cs][32 rows][32 k] (k = channel within the 32-channel step, as pairs)
        let steps = c / 32;
        let mut a = AlignedBf16::zeroed(m * 9 * c);
        for row in 0..m {
            let (mb, r) = (row / 32, row % 32);
            for ch in 0..c {
                for tap in 0..9 {
                    let (cs, k) = (ch / 32, ch % 32);
                    a[(((mb * 9 + tap) * steps + cs) * 32 + r) * 32 + k] = to_bf16(g[(row * c + ch) * 9 + tap]);
                }
            }
        }
        let mut copies = AlignedBf16::zeroed(3 * pairs * plen * 2);
        let mut vout = vec![0f32; m * panels * 32];
        let mut out2 = vec![0f32; m * hw * hw];
        let mut build = || {
            // three shifted pair-interleaved padded copies: copy[kx][pair][j][2] = padded(2·pair + e, j + kx)
            for kx in 0..3 {
                for p in 0..pairs {
                    let base = ((kx * pairs + p) * plen) * 2;
                    for y in 0..hp {
                        for xx in 0..wp {
                            let j = y * wp + xx;
                            let (sy, sx) = (y as isize - 1, (xx + kx) as isize - 1);
                            for e in 0..2 {
                                let v = if sy >= 0 && (sy as usize) < hw && sx >= 0 && (sx as usize) < hw {
                                    x[((2 * p + e) * hw + sy as usize) * hw + sx as usize]
                                } else {
                                    0.0
                                };
                                copies[base + j * 2 + e] = to_bf16(v);
                            }
                        }
                    }
                }
            }
        };
        let copy_ms = time(&mut build);
        let implicit = time(&mut || {
            // SAFETY: AMX is available (checked above) and granted; every tile load reads inside
            // `a` (m·9·c values) or `copies` (the last panel's reads end before `plen`), every
            // store writes inside `vout` (m rows of `panels`·32).
            unsafe {
                asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr());
                let stride = plen * 4; // bytes between pair rows
                for np in 0..panels {
                    for mb in 0..m / 32 {
                        asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3");
                        for tap in 0..9 {
                            let (ky, kx) = (tap / 3, tap % 3);
                            let col = np * 32 + ky * wp;
                            for cs in 0..steps {
                                let a0 = a.as_ptr().add(((mb * 9 + tap) * steps + cs) * 1024);
                                let b0 = copies.as_ptr().add(((kx * pairs + cs * 16) * plen + col) * 2);
                                asm!(
                                    "tileloadd tmm4, [{a0} + {sa}*1]",
                                    "tileloadd tmm6, [{b0} + {sb}*1]",
                                    "tileloadd tmm7, [{b1} + {sb}*1]",
                                    "tdpbf16ps tmm0, tmm4, tmm6",
                                    "tileloadd tmm5, [{a1} + {sa}*1]",
                                    "tdpbf16ps tmm1, tmm4, tmm7",
                                    "tdpbf16ps tmm2, tmm5, tmm6",
                                    "tdpbf16ps tmm3, tmm5, tmm7",
                                    a0 = in(reg) a0,
                                    a1 = in(reg) a0.add(512),
                                    b0 = in(reg) b0,
                                    b1 = in(reg) b0.add(32),
                                    sa = in(reg) 64usize,
                                    sb = in(reg) stride,
                                );
                            }
                        }
                        let o = vout.as_mut_ptr().add(mb * 32 * panels * 32 + np * 32);
                        let so = panels * 32 * 4;
                        asm!(
                            "tilestored [{o} + {so}*1], tmm0",
                            "tilestored [{o} + {so}*1 + 64], tmm1",
                            "tilestored [{o2} + {so}*1], tmm2",
                            "tilestored [{o2} + {so}*1 + 64], tmm3",
                            o = in(reg) o,
                            o2 = in(reg) o.byte_add(16 * so),
                            so = in(reg) so,
                        );
                    }
                }
                asm!("tilerelease");
            }
            // drop the junk columns
            for row in 0..m {
                for y in 0..hw {
                    out2[(row * hw + y) * hw..(row * hw + y + 1) * hw].copy_from_slice(&vout[row * panels * 32 + y * wp..][..hw]);
                }
            }
        });
        let diff = reference.iter().zip(&out2).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let scale = reference.iter().map(|a| a.abs()).fold(0f32, f32::max);
        println!("C {c} {hw}x{hw}: im2col + AMX {direct:.3} ms, implicit kernel + compaction {implicit:.3} ms (+ scalar copies {copy_ms:.3} ms), max |Δ| / max {:.1e}", diff / scale);
    }
}
