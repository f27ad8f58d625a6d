//! The bf16 kernels: the AVX-512 BF16 GEMM and, on CPUs with AMX, the AMX one. Where the CPU
//! lacks a kernel's instructions its tests are reported as ignored (decided at run time), never
//! as passed. The rounding tests run everywhere.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use libtest_mimic::{Arguments, Failed, Trial};

mod common;
use common::CASES;
use snzoo_kernels::conv::{Conv2dBf16, PackedWeights};
use snzoo_kernels::gemm_amx;
use snzoo_kernels::gemm_bf16::{available, from_bf16, gemm, pack_b, pack_b_pairs, to_bf16, AlignedBf16, PackedA};
use snzoo_kernels::im2col_bf16::{pack_b_im2col, Im2colShape};

fn main() {
    let args = Arguments::from_args();
    let needs_bf16 = |name: &'static str, f: fn() -> Result<(), Failed>| Trial::test(name, f).with_ignored_flag(!available());
    let needs_amx = |name: &'static str, f: fn() -> Result<(), Failed>| Trial::test(name, f).with_ignored_flag(!gemm_amx::available());
    let trials = vec![
        Trial::test("rounding_matches_torch", rounding_matches_torch),
        Trial::test("rounding_is_the_hand_written_one_on_every_sampled_pattern", rounding_is_the_hand_written_one),
        needs_bf16("gemm_matches_a_reference_product", || gemm_matches_a_reference_product(Kernel::Avx512)),
        needs_bf16("bf16_convolution_is_the_f32_convolution_of_rounded_operands", || bf16_convolution(Kernel::Avx512)),
        needs_bf16("im2col_packing_is_the_packing_of_the_f32_im2col_matrix", im2col_packing_is_bit_identical),
        needs_amx("amx_gemm_matches_a_reference_product", || gemm_matches_a_reference_product(Kernel::Amx)),
        needs_amx("amx_convolution_is_the_f32_convolution_of_rounded_operands", || bf16_convolution(Kernel::Amx)),
        needs_amx("amx_and_avx512_convolutions_agree", amx_and_avx512_agree),
        needs_bf16("convolution_moments_are_its_output_planes_moments", || moments_of_the_output(Kernel::Avx512)),
        needs_amx("amx_convolution_moments_are_its_output_planes_moments", || moments_of_the_output(Kernel::Amx)),
    ];
    if !available() {
        eprintln!("this CPU has no AVX-512 BF16: the bf16 kernel tests are ignored");
    }
    if !gemm_amx::available() {
        eprintln!("this CPU (or OS) gives no AMX tiles: the AMX kernel tests are ignored");
    }
    libtest_mimic::run(&args, trials).exit();
}

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(msg().into())
    }
}

fn rounding_matches_torch() -> Result<(), Failed> {
    // Round to nearest, ties to even, on the 16 dropped bits.
    check(to_bf16(1.0) == 0x3f80, || "1.0".into())?;
    check(to_bf16(f32::from_bits(0x3f80_8000)) == 0x3f80, || "tie, even stays".into())?;
    check(to_bf16(f32::from_bits(0x3f81_8000)) == 0x3f82, || "tie, odd rounds up".into())?;
    check(to_bf16(f32::from_bits(0x3f80_8001)) == 0x3f81, || "above the tie".into())?;
    check(from_bf16(to_bf16(f32::NAN)).is_nan(), || "NaN".into())?;
    check(from_bf16(to_bf16(-2.5)) == -2.5, || "-2.5".into())
}

/// The `half` crate's conversion, which snzoo uses, against the hand-written one it replaced
/// (RNE on the bit pattern, NaN quieted): identical on 2^24 patterns spread over all 2^32.
fn rounding_is_the_hand_written_one() -> Result<(), Failed> {
    let hand = |v: f32| -> u16 {
        let b = v.to_bits();
        if v.is_nan() {
            return ((b >> 16) | 0x40) as u16;
        }
        (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
    };
    for i in 0u32..1 << 24 {
        let bits = i.wrapping_mul(0x9E37_79B9) ^ (i << 8);
        let v = f32::from_bits(bits);
        check(to_bf16(v) == hand(v), || format!("bits {bits:#010x}: {:#06x} vs {:#06x}", to_bf16(v), hand(v)))?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kernel {
    Avx512,
    Amx,
}

/// Against an f64 product of the bf16-rounded inputs, for shapes with every kind of edge (of the
/// AVX-512 kernel's 8×32 tiles and the AMX kernel's 32×32 blocks and 32-deep steps).
fn gemm_matches_a_reference_product(kernel: Kernel) -> Result<(), Failed> {
    let mut seed = 1u64;
    let mut rnd = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let shapes = [
        (1, 1, 1),
        (8, 2, 32),
        (9, 3, 33),
        (64, 576, 49),
        (17, 300, 70),
        (3, 257, 16),
        (16, 64, 100),
        (33, 31, 65),
        (96, 64, 32),
        (40, 147, 200),
    ];
    for &(m, k, n) in &shapes {
        let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
        let ldb = n + 3;
        let b: Vec<f32> = (0..k * ldb).map(|_| rnd()).collect();
        let mut pb = snzoo_kernels::gemm_bf16::AlignedBf16::new();
        let ldc = n + 1;
        let mut c = vec![f32::NAN; m * ldc];
        match kernel {
            Kernel::Avx512 => {
                pack_b(&b, k, n, ldb, &mut pb);
                gemm(&PackedA::new(&a, m, k), &pb, n, &mut c, ldc, 1 + m % 3);
            }
            Kernel::Amx => {
                let pa = gemm_amx::PackedA::new(&a, m, k);
                pack_b_pairs(&b, k, n, ldb, pa.pairs(), 1, None, &mut pb);
                // SAFETY: f32 → MaybeUninit<f32> has the same layout.
                let c = unsafe { &mut *(c.as_mut_slice() as *mut [f32] as *mut [std::mem::MaybeUninit<f32>]) };
                gemm_amx::gemm_into(&pa, &pb, n, c, ldc, 1 + m % 3);
            }
        }
        for i in 0..m {
            for j in 0..n {
                let want: f64 =
                    (0..k).map(|kk| from_bf16(to_bf16(a[i * k + kk])) as f64 * from_bf16(to_bf16(b[kk * ldb + j])) as f64).sum();
                let got = c[i * ldc + j] as f64;
                check((got - want).abs() <= 1e-4 * (1.0 + k as f64).sqrt(), || format!("{m}x{k}x{n} at ({i},{j}): {got} vs {want}"))?;
            }
            // The padding column of C is not written.
            check(c[i * ldc + n].is_nan(), || format!("{m}x{k}x{n}: wrote past column {n}"))?;
        }
    }
    Ok(())
}

fn round_bf16(t: &Tensor) -> Tensor {
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1::<f32>().unwrap().into_iter().map(|x| from_bf16(to_bf16(x))).collect();
    Tensor::from_vec(v, t.dims(), t.device()).unwrap()
}

/// The bf16 convolution is the f32 convolution of the bf16-rounded input and weights (sums in
/// f32, so up to the order of the additions), serial and spread over threads.
fn bf16_convolution(kernel: Kernel) -> Result<(), Failed> {
    let dev = Device::Cpu;
    for (n, ci, co, h, w, k, s, p) in CASES {
        let x = Tensor::randn(0f32, 1.0, (n, ci, h, w), &dev)?;
        let wt = Tensor::randn(0f32, 0.2, (co, ci, k, k), &dev)?;
        let want = round_bf16(&x).conv2d(&round_bf16(&wt), p, s, 1, 1)?;
        let values = wt.flatten_all()?.to_vec1::<f32>()?;
        let weights = match kernel {
            Kernel::Avx512 => PackedWeights::Avx512(Arc::new(PackedA::new(&values, co, ci * k * k))),
            Kernel::Amx => PackedWeights::Amx(Arc::new(gemm_amx::PackedA::new(&values, co, ci * k * k))),
        };
        let op = Conv2dBf16 { stride: s, padding: p, kernel: k, weights };
        for serial in [false, true] {
            let got = if serial { snzoo_kernels::parallel::serially(|| x.apply_op1_no_bwd(&op))? } else { x.apply_op1_no_bwd(&op)? };
            check(got.dims() == want.dims(), || format!("{:?}", (n, ci, co, h, w, k, s, p)))?;
            let diff = (&got - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            let scale = want.abs()?.max_all()?.to_scalar::<f32>()?;
            check(diff / scale <= 1e-5, || format!("{:?}: {}", (n, ci, co, h, w, k, s, p), diff / scale))?;
        }
    }
    Ok(())
}

/// The moments a bf16 convolution hands out with its output are that output's planes' moments
/// (computed here in f64 from the output itself), the same bits serial and spread over threads,
/// for whole and partial 32-column panels and 32-row blocks.
fn moments_of_the_output(kernel: Kernel) -> Result<(), Failed> {
    let dev = Device::Cpu;
    // And one output large enough for the merge to spread over threads.
    for &(n, ci, co, h, w, k, s, p) in CASES.iter().chain(&[(1, 16, 96, 56, 56, 3, 1, 1)]) {
        // An offset far above the spread, as a convolution of non-negative activations has.
        let x = (Tensor::randn(0f32, 1.0, (n, ci, h, w), &dev)? + 3.0)?;
        let values = Tensor::randn(0.05f32, 0.2, (co, ci, k, k), &dev)?.flatten_all()?.to_vec1::<f32>()?;
        let weights = match kernel {
            Kernel::Avx512 => PackedWeights::Avx512(Arc::new(PackedA::new(&values, co, ci * k * k))),
            Kernel::Amx => PackedWeights::Amx(Arc::new(gemm_amx::PackedA::new(&values, co, ci * k * k))),
        };
        let op = Conv2dBf16 { stride: s, padding: p, kernel: k, weights };
        let (y, moments) = op.forward_with_moments(&x)?;
        let (_, serial) = snzoo_kernels::parallel::serially(|| op.forward_with_moments(&x))?;
        let case = (n, ci, co, h, w, k, s, p);
        check(moments.len() == n * co, || format!("{case:?}: {} moments for {} planes", moments.len(), n * co))?;
        check(moments == serial, || format!("{case:?}: the moments depend on the threads"))?;
        let hw = y.dim(2)? * y.dim(3)?;
        let values = y.flatten_all()?.to_vec1::<f32>()?;
        for (plane, (v, got)) in values.chunks(hw).zip(&moments).enumerate() {
            let mean = v.iter().map(|&a| a as f64).sum::<f64>() / hw as f64;
            let m2: f64 = v.iter().map(|&a| (a as f64 - mean).powi(2)).sum();
            let std = (m2 / hw as f64).sqrt();
            check((got.mean - mean).abs() <= 1e-6 * (mean.abs() + std), || format!("{case:?} plane {plane}: mean {} vs {mean}", got.mean))?;
            check((got.m2 - m2).abs() <= 1e-5 * m2 + 1e-12, || format!("{case:?} plane {plane}: m2 {} vs {m2}", got.m2))?;
        }
    }
    Ok(())
}

/// The two kernels give the same convolution up to the order of the f32 additions, and
/// `PackedWeights::new` picks AMX where it is available.
fn amx_and_avx512_agree() -> Result<(), Failed> {
    let dev = Device::Cpu;
    for (n, ci, co, h, w, k, s, p) in CASES {
        let x = Tensor::randn(0f32, 1.0, (n, ci, h, w), &dev)?;
        let values = Tensor::randn(0f32, 0.2, (co, ci, k, k), &dev)?.flatten_all()?.to_vec1::<f32>()?;
        let chosen = PackedWeights::new(&values, co, ci * k * k);
        check(matches!(chosen, PackedWeights::Amx(_)), || "PackedWeights::new did not pick AMX".into())?;
        let avx = PackedWeights::Avx512(Arc::new(PackedA::new(&values, co, ci * k * k)));
        let run = |weights| x.apply_op1_no_bwd(&Conv2dBf16 { stride: s, padding: p, kernel: k, weights });
        let (a, b) = (run(chosen)?, run(avx)?);
        let diff = (&a - &b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let scale = b.abs()?.max_all()?.to_scalar::<f32>()?;
        check(diff / scale <= 1e-5, || format!("{:?}: {}", (n, ci, co, h, w, k, s, p), diff / scale))?;
    }
    Ok(())
}

/// `pack_b_im2col` (bf16 copy of the image, loads and gathers) writes, bit for bit, what
/// `pack_b_pairs` makes of the f32 im2col matrix built here by its definition — for the ResNet
/// shapes and for odd channel counts, rectangles, strides, paddings and column counts that are
/// not whole panels, serial and on two threads, with whole AMX tiles of pairs and without.
fn im2col_packing_is_bit_identical() -> Result<(), Failed> {
    let shapes = [
        // (C, H, W, k, s, p)
        (3, 23, 19, 7, 2, 3),
        (4, 9, 9, 3, 1, 1),
        (5, 17, 33, 3, 1, 1),
        (6, 16, 16, 3, 2, 1),
        (8, 15, 11, 1, 2, 0),
        (7, 7, 7, 3, 1, 1),
        (2, 3, 3, 3, 1, 0),
        (3, 2, 5, 3, 1, 2),
        (64, 56, 56, 3, 1, 1),
        (64, 28, 28, 3, 2, 1),
        (32, 14, 14, 3, 1, 1),
        // Groups of 16 positions over 4 output rows (read in 4 runs) and over 6 (gathered).
        (5, 9, 4, 3, 1, 1),
        (3, 6, 3, 3, 1, 1),
    ];
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for (c, h, w, k, s, p) in shapes {
        let shape = Im2colShape { channels: c, height: h, width: w, kernel: k, stride: s, padding: p };
        let (ho, wo) = shape.output().ok_or("shape does not fit")?;
        let (kk, n) = (c * k * k, ho * wo);
        let x: Vec<f32> = (0..c * h * w)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                // Values across many binades, ties and negatives included.
                f32::from_bits((rng as u32 & 0x807f_ffff) | ((100 + (rng >> 40) % 56) as u32) << 23)
            })
            .collect();
        let mut col = vec![0f32; kk * n];
        for r in 0..kk {
            let (ch, ky, kx) = (r / (k * k), (r / k) % k, r % k);
            for oy in 0..ho {
                for ox in 0..wo {
                    let (iy, ix) = ((oy * s + ky) as isize - p as isize, (ox * s + kx) as isize - p as isize);
                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                        col[r * n + oy * wo + ox] = x[(ch * h + iy as usize) * w + ix as usize];
                    }
                }
            }
        }
        for pairs in [kk.div_ceil(2), kk.div_ceil(32) * 16] {
            let mut want = AlignedBf16::new();
            pack_b_pairs(&col, kk, n, n, pairs, 1, None, &mut want);
            for threads in [1, 2] {
                let mut got = AlignedBf16::new();
                pack_b_im2col(&x, shape, pairs, threads, None, &mut got);
                let first = want.iter().zip(got.iter()).position(|(a, b)| a != b);
                check(want.len() == got.len() && first.is_none(), || {
                    format!(
                        "{:?}, {pairs} pairs, {threads} threads: lengths {} / {}, first difference at {first:?}",
                        (c, h, w, k, s, p),
                        want.len(),
                        got.len()
                    )
                })?;
            }
        }
    }
    Ok(())
}
