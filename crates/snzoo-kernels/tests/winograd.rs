//! Winograd F(4×4, 3×3) and F(2×2, 3×3) against an f64 direct convolution, their AVX-512, AVX2
//! and portable transforms against each other (bit for bit), weights transformed per call
//! against kept ones and images in groups against one at a time (bit for bit), and `conv2d`
//! picking them where they apply.

use std::mem::MaybeUninit;

use candle_core::{Device, Tensor};
use snzoo_kernels::winograd::{self, Level, Tile, TransformedWeights};
use snzoo_kernels::{conv2d, ConvPrecision, ConvWeights, Implementation};

mod common;
use common::values;

/// The 3×3, stride-1, padding-1 correlation in f64.
fn reference(x: &[f32], g: &[f32], n: usize, (c_in, c_out, h, w): (usize, usize, usize, usize)) -> Vec<f64> {
    let mut out = vec![0f64; n * c_out * h * w];
    for i in 0..n {
        for co in 0..c_out {
            for ci in 0..c_in {
                let plane = &x[(i * c_in + ci) * h * w..][..h * w];
                let k = &g[(co * c_in + ci) * 9..][..9];
                let dst = &mut out[(i * c_out + co) * h * w..][..h * w];
                for y in 0..h {
                    for xx in 0..w {
                        let mut sum = 0f64;
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = ((y + ky) as isize - 1, (xx + kx) as isize - 1);
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    sum += plane[iy as usize * w + ix as usize] as f64 * k[ky * 3 + kx] as f64;
                                }
                            }
                        }
                        dst[y * w + xx] += sum;
                    }
                }
            }
        }
    }
    out
}

fn run(level: Level, x: &[f32], u: &TransformedWeights, n: usize, hw: (usize, usize), threads: usize) -> Vec<f32> {
    let (c_out, _) = u.dims();
    let mut out = vec![MaybeUninit::<f32>::uninit(); n * c_out * hw.0 * hw.1];
    winograd::conv3x3_at(level, x, u, n, hw, None, &mut out, threads);
    out.into_iter().map(|v| unsafe { v.assume_init() }).collect()
}

/// (n, C_in, C_out, H, W): partial tiles at the right and bottom (7, 9, 13, 11, 5), a 1×1
/// image, several chunks of images (4 × 64 channels of 56×56 exceed one chunk's V), more slabs
/// than threads (150 outputs), odd channel counts (lanes past a multiple of 16).
const CASES: [(usize, usize, usize, usize, usize); 8] = [
    (1, 3, 5, 7, 7),
    (2, 16, 24, 14, 14),
    (1, 8, 8, 5, 9),
    (3, 4, 6, 1, 1),
    (1, 17, 33, 13, 11),
    (4, 64, 8, 56, 56),
    (1, 8, 150, 9, 9),
    (2, 35, 19, 28, 28),
];

#[test]
fn winograd_matches_an_f64_direct_convolution() {
    for (n, c_in, c_out, h, w) in CASES {
        let x = values(n * c_in * h * w, 1);
        let g = values(c_out * c_in * 9, 2);
        let want = reference(&x, &g, n, (c_in, c_out, h, w));
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (level, tile) in [Level::Portable, Level::Avx2, Level::Avx512].into_iter().flat_map(|l| [(l, Tile::F4), (l, Tile::F2)]) {
            if !level.supported() {
                eprintln!("skipped: {level:?} (this CPU lacks it)");
                continue;
            }
            let u = TransformedWeights::new(level, tile, &g, c_out, c_in);
            for threads in [1, 2] {
                let got = run(level, &x, &u, n, (h, w), threads);
                let err = got.iter().zip(&want).fold(0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()));
                // f32 direct convolution (im2col + GEMM) is at ~1e-7 of the scale on these.
                eprintln!("{:?} {level:?} {tile:?} {threads}: {:.2e}", (n, c_in, c_out, h, w), err / scale);
                assert!(
                    err / scale <= 2e-5,
                    "{:?} {level:?} {tile:?} {threads} threads: max |Δ| / max |y| = {:.2e}",
                    (n, c_in, c_out, h, w),
                    err / scale
                );
            }
        }
    }
}

#[test]
fn vector_and_portable_transforms_give_the_same_bits() {
    for level in [Level::Avx2, Level::Avx512] {
        if !level.supported() {
            eprintln!("skipped: {level:?} (this CPU lacks it)");
            continue;
        }
        for ((n, c_in, c_out, h, w), tile) in CASES.into_iter().flat_map(|case| [(case, Tile::F4), (case, Tile::F2)]) {
            let x = values(n * c_in * h * w, 3);
            let g = values(c_out * c_in * 9, 4);
            let uv = TransformedWeights::new(level, tile, &g, c_out, c_in);
            let up = TransformedWeights::new(Level::Portable, tile, &g, c_out, c_in);
            let v = run(level, &x, &uv, n, (h, w), 2);
            let p = run(Level::Portable, &x, &up, n, (h, w), 2);
            assert!(
                v.iter().zip(&p).all(|(a, p)| a.to_bits() == p.to_bits()),
                "{level:?} {tile:?} {:?}: the transforms differ",
                (n, c_in, c_out, h, w)
            );
        }
    }
}

/// The weights transformed by each call give the bits of the kept ones, and an image gets the
/// same bits whether its tiles share the GEMMs with other images' (a group: 12 images of 14×14 at
/// F(2,3) are groups of 10 and 2, 28×28 at F(4,3) groups of 10) or run alone, on one thread or
/// two, up to the deepest C_in that stays in one depth block of the `gemm` crate.
#[test]
fn per_call_weights_and_grouped_images_give_the_same_bits() {
    let dev = Device::Cpu;
    for (n, c_in, c_out, hw, tile) in
        [(12, 32, 40, 14, Tile::F2), (3, winograd::MAX_DEPTH, 24, 14, Tile::F2), (11, 24, 16, 28, Tile::F4), (2, 16, 8, 56, Tile::F2)]
    {
        let x = values(n * c_in * hw * hw, 5);
        let g = values(c_out * c_in * 9, 6);
        let gt = Tensor::from_vec(g.clone(), (c_out, c_in, 3, 3), &dev).unwrap();
        for level in [Level::Portable, Level::Avx2, Level::Avx512] {
            if !level.supported() {
                eprintln!("skipped: {level:?} (this CPU lacks it)");
                continue;
            }
            let kept = TransformedWeights::new(level, tile, &g, c_out, c_in);
            let per_call = TransformedWeights::per_call(tile, &gt).unwrap();
            for threads in [1, 2] {
                let together = run(level, &x, &per_call, n, (hw, hw), threads);
                let kept_together = run(level, &x, &kept, n, (hw, hw), threads);
                let case = (n, c_in, c_out, hw, tile, level, threads);
                assert!(together.iter().zip(&kept_together).all(|(a, b)| a.to_bits() == b.to_bits()), "{case:?}: per call vs kept");
                let plane = c_in * hw * hw;
                for i in 0..n {
                    let alone = run(level, &x[i * plane..(i + 1) * plane], &per_call, 1, (hw, hw), threads);
                    let part = &together[i * c_out * hw * hw..(i + 1) * c_out * hw * hw];
                    assert!(alone.iter().zip(part).all(|(a, b)| a.to_bits() == b.to_bits()), "{case:?}: image {i} alone vs in its group");
                }
            }
        }
    }
}

/// `conv2d` takes Winograd F(4,3) for ResNet's first two stages (C_in·C_out ≤ 128², enough
/// tiles), F(2,3) for the third (≤ 256²) and im2col + GEMM elsewhere; all agree with candle's
/// convolution.
#[test]
fn conv2d_takes_winograd_where_it_applies() {
    let dev = Device::Cpu;
    for (n, c_in, c_out, hw, stride) in [
        (1, 64, 64, 56, 1),
        (2, 128, 128, 28, 1),
        (1, 256, 256, 14, 1),
        (2, 256, 256, 11, 1),
        (1, 256, 256, 10, 1),
        (1, 512, 512, 7, 1),
        (1, 64, 64, 56, 2),
        (1, 16, 16, 8, 1),
    ] {
        let x = Tensor::randn(0f32, 1.0, (n, c_in, hw, hw), &dev).unwrap();
        let wt = Tensor::randn(0f32, 0.05, (c_out, c_in, 3, 3), &dev).unwrap();
        let weights = ConvWeights::new(wt.clone(), None, stride, 1);
        let got = conv2d(&x, &weights, ConvPrecision::F32, Implementation::Fast).unwrap();
        let want = x.conv2d(&wt, 1, stride, 1, 1).unwrap();
        let diff = (&got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        eprintln!("conv2d {:?}: {:.2e}", (n, c_in, c_out, hw, stride), diff / scale);
        assert!(diff / scale <= 2e-5, "{:?}: {:.2e}", (n, c_in, c_out, hw, stride), diff / scale);
        let enabled = std::env::var_os("SNZOO_WINOGRAD").is_none_or(|v| v != "0");
        let vectorised = stride == 1 && Level::detect().vectorised() && enabled;
        let expected = match c_in * c_out {
            pairs if pairs <= winograd::MAX_PAIRS && hw >= 24 => Some(Tile::F4),
            pairs if pairs > winograd::MAX_PAIRS && pairs <= winograd::MAX_PAIRS_F2 && hw >= 11 => Some(Tile::F2),
            _ => None,
        }
        .filter(|_| vectorised);
        assert_eq!(winograd::tile_for((3, stride, 1), (c_in, c_out), (hw, hw)), expected, "{:?}", (n, c_in, c_out, hw, stride));
    }
}
