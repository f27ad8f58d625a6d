//! Logits of the candle model against PyTorch's for the same input (`eval/reference/`).

use libtest_mimic::Trial;
use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use snzoo_convert::npy::read_npy_f32;
use snzoo_convert::{read_torch_checkpoint, serialize_safetensors};
use snzoo_model::{ResNet, ResNetConfig};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(rel)
}

/// max |Δ| / max |expected|
fn relative_error(got: &[f32], expected: &[f32]) -> f32 {
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    got.iter().zip(expected).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}

/// A fixture checkpoint as the CLI loads it: training-only keys dropped, architecture inferred.
fn fixture_model(name: &str) -> (ResNetConfig, ResNet) {
    let mut ck = read_torch_checkpoint(&fixture(&format!("models/{name}.pth"))).unwrap();
    ck.tensors.retain(|(k, _)| !snzoo_model::is_training_only(k));
    let shapes: BTreeMap<String, Vec<usize>> = ck.tensors.iter().map(|(k, t)| (k.clone(), t.shape.clone())).collect();
    // GroupNorm's group count is not in the weights: the manifest says it.
    let groups = manifest().iter().find(|m| m["name"] == name).and_then(|m| m["groups"].as_u64()).map(|g| g as usize);
    let config = ResNetConfig::infer_with(&shapes, groups).unwrap();
    let bytes = serialize_safetensors(&ck.tensors, &config.to_metadata()).unwrap();
    let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu).unwrap();
    let model = ResNet::new(&config, vb).unwrap();
    (config, model)
}

/// The fixtures' input batch (N, 3, 112, 112).
fn fixture_input() -> Tensor {
    let (shape, input) = read_npy_f32(&fixture("models/input.npy")).unwrap();
    Tensor::from_vec(input, shape, &Device::Cpu).unwrap()
}

fn manifest() -> Vec<serde_json::Value> {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture("models/manifest.json")).unwrap()).unwrap();
    m.as_array().unwrap().clone()
}

fn tiny_models_match_pytorch_logits() {
    let x = fixture_input();
    for m in manifest() {
        let name = m["name"].as_str().unwrap();
        let (config, model) = fixture_model(name);
        assert_eq!(config.arch_name(), m["arch"].as_str().unwrap());
        assert_eq!(config.using_bn(), m["using_bn"].as_bool().unwrap(), "{name}");
        assert_eq!(config.num_classes as u64, m["num_classes"].as_u64().unwrap());
        let logits = model.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (_, expected) = read_npy_f32(&fixture(&format!("models/{name}.logits.npy"))).unwrap();
        let err = relative_error(&logits, &expected);
        assert!(err <= 1e-4, "{name}: relative error {err}");
    }
}

fn a_one_pixel_feature_map_is_an_error_not_nan() {
    let ck = read_torch_checkpoint(&fixture("models/r18v1_bn_zip.pth")).unwrap();
    let shapes: BTreeMap<String, Vec<usize>> = ck.tensors.iter().map(|(k, t)| (k.clone(), t.shape.clone())).collect();
    let config = ResNetConfig::infer(&shapes).unwrap();
    let bytes = serialize_safetensors(&ck.tensors, &config.to_metadata()).unwrap();
    let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu).unwrap();
    let model = ResNet::new(&config, vb).unwrap();
    // 32×32 input: layer4 sees 1×1.
    let x = Tensor::zeros((1, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
    let e = model.forward(&x).unwrap_err().to_string();
    assert!(e.contains("at least 2 spatial positions"), "{e}");
}

/// The schedule of several threads and images (each thread a share of the images), the whole
/// batch through kernels that spread over one thread, each image alone through kernels that
/// spread over several, and the plain candle operations give the same logits (the first three
/// the same bits: an image's result does not depend on the batch it came in).
fn every_schedule_gives_the_same_logits() {
    let x = fixture_input();
    assert!(x.dim(0).unwrap() >= 2, "the input needs several images");
    for name in ["r50v1_bn_legacy_wrapped", "r50v2_bn_legacy_wrapped", "tv_r50_bn_zip"] {
        let (_, model) = fixture_model(name);
        let run = |threads: usize, f: &(dyn Fn() -> Tensor + Sync)| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(f).flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        let shares = run(3, &|| model.forward(&x).unwrap());
        let batched = run(1, &|| model.forward(&x).unwrap());
        let serial = run(3, &|| snzoo_kernels::parallel::serially(|| model.forward(&x).unwrap()));
        let plain = run(3, &|| model.forward_reference(&x).unwrap());
        let alone: Vec<f32> =
            (0..x.dim(0).unwrap()).flat_map(|i| run(3, &|| model.forward(&x.narrow(0, i, 1).unwrap()).unwrap())).collect();
        assert_eq!(shares, serial, "{name}");
        assert_eq!(shares, alone, "{name}");
        assert!(relative_error(&shares, &batched) <= 1e-6, "{name}: {}", relative_error(&shares, &batched));
        assert!(relative_error(&shares, &plain) <= 1e-5, "{name}: {}", relative_error(&shares, &plain));
    }
}

/// bf16 convolutions (inputs and weights rounded, f32 sums) against PyTorch's f32 logits: the
/// error of bf16 rounding, well inside what changes a ranking of these logits.
fn bf16_convolutions_stay_close_to_pytorch() {
    let x = fixture_input();
    for m in manifest() {
        let name = m["name"].as_str().unwrap();
        let model = fixture_model(name).1.with_bf16_convolutions().unwrap();
        let logits = model.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (_, expected) = read_npy_f32(&fixture(&format!("models/{name}.logits.npy"))).unwrap();
        let err = relative_error(&logits, &expected);
        eprintln!("{name}: bf16 relative error {err}");
        assert!(err <= 0.06, "{name}: relative error {err}");
    }
}

/// A custom harness (libtest-mimic), so that the tests that need AVX-512 BF16 are reported as
/// ignored on CPUs without it, decided at run time, instead of passing untested.
fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let bf16 = snzoo_kernels::gemm_bf16::available();
    if !bf16 {
        eprintln!("this CPU has no AVX-512 BF16: the bf16 parity test is ignored");
    }
    // (name, test, whether it needs AVX-512 BF16)
    let tests: &[(&str, fn(), bool)] = &[
        ("tiny_models_match_pytorch_logits", tiny_models_match_pytorch_logits, false),
        ("a_one_pixel_feature_map_is_an_error_not_nan", a_one_pixel_feature_map_is_an_error_not_nan, false),
        ("every_schedule_gives_the_same_logits", every_schedule_gives_the_same_logits, false),
        ("bf16_convolutions_stay_close_to_pytorch", bf16_convolutions_stay_close_to_pytorch, true),
    ];
    let trials = tests
        .iter()
        .map(|&(name, test, needs_bf16)| {
            Trial::test(name, move || {
                test();
                Ok(())
            })
            .with_ignored_flag(needs_bf16 && !bf16)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
