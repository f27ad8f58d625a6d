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
