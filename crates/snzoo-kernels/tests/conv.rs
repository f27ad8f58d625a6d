//! The im2col inference convolution (f32 and bf16) against candle's own conv2d.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use snzoo_kernels::conv::{Conv2dBf16, Conv2dIm2col};
use snzoo_kernels::gemm_bf16::{available, from_bf16, to_bf16, PackedA};

/// (batch, c_in, c_out, h, w, kernel, stride, padding): the ResNet shapes and odd ones.
const CASES: [(usize, usize, usize, usize, usize, usize, usize, usize); 10] = [
    (2, 3, 8, 33, 29, 7, 2, 3),
    (1, 16, 16, 14, 14, 3, 1, 1),
    (3, 16, 32, 15, 15, 3, 2, 1),
    (2, 32, 64, 9, 7, 1, 2, 0),
    (2, 8, 24, 10, 10, 1, 1, 0),
    (1, 4, 4, 2, 2, 3, 1, 1),
    (1, 2, 3, 1, 1, 3, 1, 1),
    (2, 3, 5, 5, 6, 7, 2, 3),
    (1, 3, 4, 4, 9, 3, 2, 1),
    (1, 2, 2, 8, 3, 5, 3, 2),
];

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

fn round_bf16(t: &Tensor) -> Tensor {
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1::<f32>().unwrap().into_iter().map(|x| from_bf16(to_bf16(x))).collect();
    Tensor::from_vec(v, t.dims(), t.device()).unwrap()
}

/// The bf16 convolution is the f32 convolution of the bf16-rounded input and weights (sums in
/// f32, so up to the order of the additions), serial and spread over threads.
#[test]
fn bf16_convolution_is_the_f32_convolution_of_rounded_operands() {
    if !available() {
        eprintln!("skipped: this CPU has no AVX-512 BF16");
        return;
    }
    let dev = Device::Cpu;
    for (n, ci, co, h, w, k, s, p) in CASES {
        let x = Tensor::randn(0f32, 1.0, (n, ci, h, w), &dev).unwrap();
        let wt = Tensor::randn(0f32, 0.2, (co, ci, k, k), &dev).unwrap();
        let want = round_bf16(&x).conv2d(&round_bf16(&wt), p, s, 1, 1).unwrap();
        let packed = Arc::new(PackedA::new(&wt.flatten_all().unwrap().to_vec1::<f32>().unwrap(), co, ci * k * k));
        let op = Conv2dBf16 { stride: s, padding: p, kernel: k, weights: packed };
        for serial in [false, true] {
            let got = if serial {
                snzoo_kernels::parallel::serially(|| x.apply_op1_no_bwd(&op).unwrap())
            } else {
                x.apply_op1_no_bwd(&op).unwrap()
            };
            assert_eq!(got.dims(), want.dims(), "{:?}", (n, ci, co, h, w, k, s, p));
            let diff = (&got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff / scale <= 1e-5, "{:?}: {}", (n, ci, co, h, w, k, s, p), diff / scale);
        }
    }
}
