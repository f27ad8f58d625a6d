//! The fused SN inference kernel against the plain candle-ops oracle (≤ 1e-5 relative).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use snzoo_model::SwitchNorm2d;

fn layer(c: usize, using_bn: bool, seed: u64) -> SwitchNorm2d {
    let dev = Device::Cpu;
    let k = if using_bn { 3 } else { 2 };
    let r = |shape: &[usize], lo: f32, hi: f32, s: u64| -> Tensor {
        // A deterministic pseudo-random fill (no global RNG state in tests).
        let n: usize = shape.iter().product();
        let mut x = s.wrapping_mul(0x9E3779B97F4A7C15) | 1;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                lo + (hi - lo) * ((x >> 11) as f32 / (1u64 << 53) as f32)
            })
            .collect();
        Tensor::from_vec(v, shape, &dev).unwrap()
    };
    let mut t = HashMap::new();
    t.insert("weight".to_string(), r(&[1, c, 1, 1], 0.5, 1.5, seed));
    t.insert("bias".to_string(), r(&[1, c, 1, 1], -0.3, 0.3, seed + 1));
    t.insert("mean_weight".to_string(), r(&[k], -2.0, 2.0, seed + 2));
    t.insert("var_weight".to_string(), r(&[k], -2.0, 2.0, seed + 3));
    if using_bn {
        t.insert("running_mean".to_string(), r(&[1, c, 1], -1.0, 1.0, seed + 4));
        t.insert("running_var".to_string(), r(&[1, c, 1], 0.2, 2.0, seed + 5));
    }
    SwitchNorm2d::new(c, using_bn, VarBuilder::from_tensors(t, DType::F32, &dev)).unwrap()
}

#[test]
fn fused_kernel_matches_the_plain_operations() {
    for (i, &(n, c, h, w, bn)) in
        [(2, 8, 7, 7, true), (1, 64, 56, 56, true), (3, 5, 2, 1, false), (4, 32, 14, 14, false), (16, 3, 9, 5, true)].iter().enumerate()
    {
        let sn = layer(c, bn, 10 * i as u64);
        let x = (Tensor::randn(0f32, 2.0, (n, c, h, w), &Device::Cpu).unwrap() + 0.7).unwrap();
        let reference = sn.forward_reference(&x).unwrap();
        for relu in [false, true] {
            let want = if relu { reference.relu().unwrap() } else { reference.clone() };
            let got = sn.forward(&x, relu).unwrap();
            let (g, e): (Vec<f32>, Vec<f32>) =
                (got.flatten_all().unwrap().to_vec1().unwrap(), want.flatten_all().unwrap().to_vec1().unwrap());
            let scale = e.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = g.iter().zip(&e).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
            assert!(err <= 1e-5, "({n},{c},{h},{w}) bn={bn} relu={relu}: {err}");
        }
    }
    // A non-contiguous input is made contiguous first.
    let sn = layer(4, true, 99);
    let x = Tensor::randn(0f32, 1.0, (2, 4, 6, 5), &Device::Cpu).unwrap().transpose(2, 3).unwrap();
    let d = (sn.forward(&x, false).unwrap() - sn.forward_reference(&x).unwrap()).unwrap().abs().unwrap().max_all().unwrap();
    assert!(d.to_scalar::<f32>().unwrap() < 1e-5);
}

/// The end of a v1 block in one pass (`forward_add`) equals the normalization followed by the
/// residual addition bit for bit, with and without the ReLU, for SN, BN and GN, in the fused
/// kernels and in the plain fallback.
#[test]
fn fused_residual_addition_equals_the_two_passes() {
    use snzoo_kernels::Implementation;
    use snzoo_model::NormSpec;
    let dev = Device::Cpu;
    let (n, c, h, w) = (3, 64, 9, 7);
    let sn = layer(c, true, 7);
    let mut t = HashMap::new();
    for (name, v) in [("weight", 1.2f32), ("bias", -0.1), ("running_mean", 0.3), ("running_var", 0.8)] {
        t.insert(name.to_string(), (Tensor::randn(0f32, 0.2, c, &dev).unwrap() + v as f64).unwrap().abs().unwrap());
    }
    let vb = VarBuilder::from_tensors(t, DType::F32, &dev);
    let bn = NormSpec::Batch.build(c, vb.clone()).unwrap();
    let gn = NormSpec::Group { groups: 32 }.build(c, vb).unwrap();
    let norms: [(&str, &dyn snzoo_model::Norm2d); 3] = [("sn", &sn), ("bn", bn.as_ref()), ("gn", gn.as_ref())];
    let x = Tensor::randn(0f32, 1.0, (n, c, h, w), &dev).unwrap();
    let r = Tensor::randn(0f32, 1.0, (n, c, h, w), &dev).unwrap();
    for (name, norm) in norms {
        for imp in [Implementation::Fast, Implementation::Plain] {
            for relu in [false, true] {
                let y = norm.forward(&x, false, imp).unwrap();
                let want: Vec<f32> = snzoo_kernels::residual_add(&y, &r, relu, imp).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                let got: Vec<f32> = norm.forward_add(&x, &r, relu, imp).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{name} {imp:?} relu={relu}");
            }
        }
    }
}
