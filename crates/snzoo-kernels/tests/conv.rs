//! The im2col inference convolution against candle's own conv2d (bf16: tests/bf16.rs).

use candle_core::{Device, Tensor};
use snzoo_kernels::conv::Conv2dIm2col;

mod common;
use common::CASES;

#[test]
fn im2col_convolution_matches_candle() {
    let dev = Device::Cpu;
    for (n, ci, co, h, w, k, s, p) in CASES {
        let x = Tensor::randn(0f32, 1.0, (n, ci, h, w), &dev).unwrap();
        let wt = Tensor::randn(0f32, 0.2, (co, ci, k, k), &dev).unwrap();
        let want = x.conv2d(&wt, p, s, 1, 1).unwrap();
        let got = x.apply_op2_no_bwd(&wt, &Conv2dIm2col { stride: s, padding: p }).unwrap();
        assert_eq!(got.dims(), want.dims(), "{:?}", (n, ci, co, h, w, k, s, p));
        let diff = (&got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff / scale <= 1e-5, "{:?}: {}", (n, ci, co, h, w, k, s, p), diff / scale);
    }
}

/// Convolutions whose im2col matrix exceeds the scratch limit (ResNet's 7×7 stem at 224×224: 7.4
/// MB per image) run a few output rows at a time, with the same results.
#[test]
fn large_im2col_matrices_run_in_row_chunks() {
    let dev = Device::Cpu;
    for (n, ci, co, hw, k, s, p) in [(2, 3, 16, 224, 7, 2, 3), (1, 64, 8, 56, 3, 1, 1), (1, 128, 4, 57, 3, 2, 1), (1, 24, 4, 97, 5, 1, 2)] {
        let x = Tensor::randn(0f32, 1.0, (n, ci, hw, hw), &dev).unwrap();
        let wt = Tensor::randn(0f32, 0.2, (co, ci, k, k), &dev).unwrap();
        let want = x.conv2d(&wt, p, s, 1, 1).unwrap();
        let got = x.apply_op2_no_bwd(&wt, &Conv2dIm2col { stride: s, padding: p }).unwrap();
        let diff = (&got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff / scale <= 1e-5, "{:?}: {}", (n, ci, co, hw, k, s, p), diff / scale);
    }
}

/// Convolutions started concurrently on one pool from several threads (two model forwards in
/// one process, say), each spreading its im2col and GEMM over the pool's workers: a worker that
/// waits inside one convolution's parallel section runs another's tasks, which must not find its
/// scratch buffer borrowed (a `RefCell` panic before the buffers were taken out of their
/// thread-locals while in use). Every result equals the serial one.
#[test]
fn concurrent_convolutions_on_one_pool_share_no_scratch() {
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (1, 64, 56, 56), &dev).unwrap();
    let wt = Tensor::randn(0f32, 0.2, (64, 64, 3, 3), &dev).unwrap();
    let op = Conv2dIm2col { stride: 1, padding: 1 };
    let run = || -> Vec<f32> { x.apply_op2_no_bwd(&wt, &op).unwrap().flatten_all().unwrap().to_vec1().unwrap() };
    let want = snzoo_kernels::parallel::serially(run);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..8 {
                    assert!(pool.install(run) == want, "a concurrent convolution differs from the serial one");
                }
            });
        }
    });
}
