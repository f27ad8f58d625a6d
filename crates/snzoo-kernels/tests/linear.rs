//! The fully connected layer (`linear`): its AVX-512, AVX2 and portable builds and its thread
//! split against each other (bit for bit), against an f64 reference, and through candle.

use std::mem::MaybeUninit;

use candle_core::{Device, Tensor};
use snzoo_kernels::linear::{forward_at, Level};
use snzoo_kernels::Implementation;

mod common;
use common::values;

fn run(level: Level, x: &[f32], w: &[f32], bias: Option<&[f32]>, nkm: (usize, usize, usize), threads: usize) -> Vec<f32> {
    let mut out = vec![MaybeUninit::new(f32::NAN); nkm.0 * nkm.2];
    forward_at(level, x, w, bias, nkm, &mut out, threads);
    out.into_iter().map(|v| unsafe { v.assume_init() }).collect()
}

/// (rows, depth, outputs): ResNet's classifier, depths with and without a tail past the last
/// 64, fewer outputs than threads, one output.
const SHAPES: [(usize, usize, usize); 6] = [(1, 2048, 1000), (3, 2048 + 37, 19), (2, 63, 5), (1, 64, 1), (4, 1, 3), (2, 130, 257)];

#[test]
fn builds_and_thread_splits_give_the_same_bits() {
    let levels: Vec<Level> = [Level::Avx512, Level::Avx2].into_iter().filter(|l| l.supported()).collect();
    if levels.is_empty() {
        eprintln!("skipped the SIMD builds: this CPU has neither AVX-512 nor AVX2");
    }
    for (i, &(n, k, m)) in SHAPES.iter().enumerate() {
        let (x, w, b) = (values(n * k, i as u64), values(m * k, 100 + i as u64), values(m, 200 + i as u64));
        for bias in [None, Some(&b[..])] {
            let portable = run(Level::Portable, &x, &w, bias, (n, k, m), 1);
            for &level in &levels {
                for threads in [1, 2, 3] {
                    let got = run(level, &x, &w, bias, (n, k, m), threads);
                    let same = got.iter().zip(&portable).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{n}x{k}x{m} bias {}: {level:?} on {threads} threads differs from the portable build", bias.is_some());
                }
            }
            let split = run(Level::Portable, &x, &w, bias, (n, k, m), 2);
            assert!(split.iter().zip(&portable).all(|(a, b)| a.to_bits() == b.to_bits()), "{n}x{k}x{m}: two threads differ from one");
        }
    }
}

#[test]
fn matches_an_f64_reference() {
    for (i, &(n, k, m)) in SHAPES.iter().enumerate() {
        let (x, w, b) = (values(n * k, 10 + i as u64), values(m * k, 110 + i as u64), values(m, 210 + i as u64));
        let got = run(Level::detect(), &x, &w, Some(&b), (n, k, m), 2);
        for r in 0..n {
            for o in 0..m {
                let (mut exact, mut magnitude) = (b[o] as f64, b[o].abs() as f64);
                for j in 0..k {
                    let p = x[r * k + j] as f64 * w[o * k + j] as f64;
                    exact += p;
                    magnitude += p.abs();
                }
                let err = (got[r * m + o] as f64 - exact).abs();
                // Each of the ≤ k/64 + 7 + tail roundings along a path costs at most 2^-24 of
                // the magnitude summed so far.
                let bound = magnitude * (k as f64 / 64.0 + 8.0 + (k % 64) as f64) * f32::EPSILON as f64 / 2.0;
                assert!(err <= bound, "{n}x{k}x{m} row {r} output {o}: {} vs {exact} (bound {bound:e})", got[r * m + o]);
            }
        }
    }
}

#[test]
fn the_candle_operation_matches_plain_candle_and_rejects_misfits() {
    let dev = Device::Cpu;
    let (n, k, m) = (3, 300, 17);
    let x = Tensor::from_vec(values(n * k, 1), (n, k), &dev).unwrap();
    let w = Tensor::from_vec(values(m * k, 2), (m, k), &dev).unwrap();
    let b = Tensor::from_vec(values(m, 3), m, &dev).unwrap();
    for bias in [None, Some(&b)] {
        let fast = snzoo_kernels::linear(&x, &w, bias, Implementation::Fast).unwrap();
        let plain = snzoo_kernels::linear(&x, &w, bias, Implementation::Plain).unwrap();
        assert_eq!(fast.dims(), [n, m]);
        let diff = (fast - plain).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "fast and plain differ by {diff}");
    }
    // A transposed (non-contiguous) input gives the same as its contiguous copy.
    let xt = Tensor::from_vec(values(n * k, 1), (k, n), &dev).unwrap().t().unwrap();
    let a = snzoo_kernels::linear(&xt, &w, Some(&b), Implementation::Fast).unwrap().to_vec2::<f32>().unwrap();
    let c = snzoo_kernels::linear(&xt.contiguous().unwrap(), &w, Some(&b), Implementation::Fast).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(a, c);
    // Misfits are errors, not panics.
    let short = Tensor::from_vec(values(m * (k - 1), 2), (m, k - 1), &dev).unwrap();
    assert!(snzoo_kernels::linear(&x, &short, None, Implementation::Fast).is_err());
    let bad_bias = Tensor::from_vec(values(m + 1, 3), m + 1, &dev).unwrap();
    assert!(snzoo_kernels::linear(&x, &w, Some(&bad_bias), Implementation::Fast).is_err());
}
