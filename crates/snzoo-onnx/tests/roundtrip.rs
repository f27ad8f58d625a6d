//! Exported graphs run in tract (an ONNX runtime written independently of snzoo) and give the
//! logits the snzoo network computes: every normalization, v1 and v2, the BN baselines' layouts,
//! batch 1 and 3, opsets 13, 17 and 21.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use snzoo_model::{ResNet, ResNetConfig, Style};
use snzoo_onnx::{export_resnet, to_bytes, ExportOptions, Weight, Weights};
use tract_onnx::prelude::*;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(rel)
}

/// A state dict read from a fixture (torch.save or another framework's file, as snzoo converts
/// it), with its architecture.
fn load(rel: &str, groups: Option<usize>, style: Style) -> (ResNetConfig, Weights) {
    let ck = snzoo_convert::read_torch_checkpoint(&fixture(rel)).unwrap();
    let tensors: Vec<(String, snzoo_convert::Tensor)> = ck.tensors.into_iter().filter(|(k, _)| !snzoo_model::is_training_only(k)).collect();
    let shapes: BTreeMap<String, Vec<usize>> = tensors.iter().map(|(k, t)| (k.clone(), t.shape.clone())).collect();
    let config = ResNetConfig::infer_styled(&shapes, groups, style).unwrap();
    let weights = tensors
        .into_iter()
        .map(|(k, t)| {
            let data = t.to_f64_vec().into_iter().map(|v| v as f32).collect();
            (k, Weight { shape: t.shape, data })
        })
        .collect();
    (config, weights)
}

fn snzoo_logits(config: &ResNetConfig, weights: &Weights, x: &[f32], n: usize, s: usize) -> Vec<f32> {
    let tensors =
        weights.iter().map(|(k, w)| (k.clone(), Tensor::from_vec(w.data.clone(), w.shape.as_slice(), &Device::Cpu).unwrap())).collect();
    let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let net = ResNet::new(config, vb).unwrap();
    let x = Tensor::from_vec(x.to_vec(), (n, 3, s, s), &Device::Cpu).unwrap();
    net.forward(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

fn tract_logits(onnx: &[u8], x: &[f32], n: usize, s: usize) -> Vec<f32> {
    let model = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(onnx))
        .unwrap()
        .with_input_fact(0, f32::fact([n, 3, s, s]).into())
        .unwrap()
        // Typed, not optimised: tract builds at opt-level 0 for the tests (Cargo.toml), where
        // this test took 84 s with tract's optimiser and takes 21 s without it.
        .into_typed()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input: tract_onnx::prelude::Tensor = tract_ndarray::Array4::from_shape_vec((n, 3, s, s), x.to_vec()).unwrap().into();
    let out = model.run(tvec!(input.into())).unwrap();
    out[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect()
}

fn input(n: usize, s: usize) -> Vec<f32> {
    let mut state = 12345u32;
    (0..n * 3 * s * s)
        .map(|_| {
            state = state.wrapping_mul(1664525).wrapping_add(1013904223);
            ((state >> 8) as f32 / 16_777_216.0 - 0.5) * 4.0
        })
        .collect()
}

fn check(config: &ResNetConfig, weights: &Weights, what: &str) {
    let s = 64;
    for (n, opset) in [(1, 17), (3, 13), (3, 21)] {
        let x = input(n, s);
        let options = ExportOptions { opset, image_size: s, ..ExportOptions::default() };
        let onnx = to_bytes(&export_resnet(config, weights, &options).unwrap());
        let want = snzoo_logits(config, weights, &x, n, s);
        let got = tract_logits(&onnx, &x, n, s);
        assert_eq!(got.len(), want.len(), "{what}");
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
        assert!(err <= 1e-4, "{what} batch {n} opset {opset}: max |Δ| / max |logit| = {err:e}");
    }
}

#[test]
fn switchable_normalization_networks() {
    for (rel, what) in [
        ("models/r50v1_bn_legacy_wrapped.pth", "resnet50v1-sn"),
        ("models/r50v1_nobn_legacy.pth", "resnet50v1-sn using_bn off"),
        ("models/r50v2_bn_legacy_wrapped.pth", "resnet50v2-sn"),
        ("models/r18v2_nobn_zip_wrapped.pth", "resnet18v2-sn using_bn off"),
        ("models/r18v1_bn_zip.pth", "resnet18v1-sn"),
    ] {
        let (config, weights) = load(rel, None, Style::Torchvision);
        check(&config, &weights, what);
    }
}

#[test]
fn batch_and_group_norm_networks() {
    let (config, weights) = load("models/tv_r50_bn_zip.pth", None, Style::Torchvision);
    check(&config, &weights, "torchvision resnet50 (BN)");
    let (config, weights) = load("models/timm_r14_gn_w4_g2.pth", Some(2), Style::Torchvision);
    check(&config, &weights, "timm GN");
}

/// The BN baselines' layouts (strides, pooling conventions, biases, norm placement) on the tiny
/// BN network's weights given each layout's extra tensors.
#[test]
fn framework_layouts() {
    let (tv, base) = load("models/tv_r50_bn_zip.pth", None, Style::Torchvision);
    for style in [Style::Slim, Style::Msra, Style::Fbtorch] {
        let config = ResNetConfig { style, ..tv.clone() };
        // Every tensor the layout has: the BN network's where it has one, small values otherwise.
        let mut weights = Weights::new();
        for (i, (k, shape)) in config.expected_shapes().unwrap().into_iter().enumerate() {
            let w = base.get(&k).cloned().filter(|w| w.shape == shape).unwrap_or_else(|| {
                let n: usize = shape.iter().product();
                let data = (0..n)
                    .map(|j| {
                        if k.ends_with("running_var") || k.ends_with(".weight") && shape.len() == 1 {
                            1.0
                        } else {
                            ((i * 31 + j * 7) % 13) as f32 * 0.01 - 0.06
                        }
                    })
                    .collect();
                Weight { shape, data }
            });
            weights.insert(k, w);
        }
        check(&config, &weights, style.name());
    }
}
