//! Training-mode SN against PyTorch (`eval/reference/make_train_fixtures.py`): gradients of every
//! parameter, running statistics in both modes, and three SGD steps.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use snzoo_convert::npy::read_npy_f32;
use snzoo_convert::read_torch_checkpoint;
use snzoo_model::is_buffer;
use snzoo_model::train::{RunningStats, Sgd, Trainable};
use snzoo_model::ResNetConfig;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/train").join(rel)
}

const MODELS: [&str; 3] = ["v1_bottleneck_bn", "v1_bottleneck_nobn", "v2_basic_bn"];

fn load(name: &str) -> (ResNetConfig, HashMap<String, Tensor>) {
    let ck = read_torch_checkpoint(&fixture(&format!("{name}.pth"))).unwrap();
    let shapes: BTreeMap<String, Vec<usize>> = ck.tensors.iter().map(|(k, t)| (k.clone(), t.shape.clone())).collect();
    let config = ResNetConfig::infer(&shapes).unwrap();
    let tensors = ck
        .tensors
        .iter()
        .map(|(k, t)| {
            let v: Vec<f32> = t.to_f64_vec().into_iter().map(|x| x as f32).collect();
            (k.clone(), Tensor::from_vec(v, t.shape.clone(), &Device::Cpu).unwrap())
        })
        .collect();
    (config, tensors)
}

fn batch() -> (Tensor, Tensor) {
    let (shape, x) = read_npy_f32(&fixture("input.npy")).unwrap();
    let labels: Vec<u32> = serde_json::from_str(&std::fs::read_to_string(fixture("labels.json")).unwrap()).unwrap();
    (Tensor::from_vec(x, shape, &Device::Cpu).unwrap(), Tensor::new(labels, &Device::Cpu).unwrap())
}

fn expected(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(&format!("{name}.expected.safetensors")), &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

/// max |a − b| / max |b|
fn rel(a: &Tensor, b: &Tensor) -> f32 {
    let (a, b) = (values(a), values(b));
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn step(t: &Trainable, x: &Tensor, y: &Tensor, rule: RunningStats) -> candle_core::backprop::GradStore {
    let (logits, stats) = t.model.forward_train(x, 0.0).unwrap();
    let loss = candle_nn::loss::cross_entropy(&logits, y).unwrap();
    let grads = loss.backward().unwrap();
    t.update_running(&stats, rule).unwrap();
    grads
}

const MA: RunningStats = RunningStats::MovingAverage { momentum: 0.9 };

#[test]
fn gradients_of_every_parameter_match_pytorch() {
    let (x, y) = batch();
    let losses: HashMap<String, f64> = serde_json::from_str(&std::fs::read_to_string(fixture("losses.json")).unwrap()).unwrap();
    for name in MODELS {
        let (config, tensors) = load(name);
        let exp = expected(name);
        let t = Trainable::new(&config, &tensors, &Device::Cpu, false).unwrap();
        let (logits, _) = t.model.forward_train(&x, 0.0).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
        let l = loss.to_scalar::<f32>().unwrap() as f64;
        assert!((l - losses[name]).abs() < 1e-5 * losses[name], "{name}: loss {l} vs {}", losses[name]);
        let grads = loss.backward().unwrap();
        let params = t.parameters();
        assert_eq!(params.len(), exp.keys().filter(|k| k.starts_with("grad.")).count(), "{name}");
        let mut worst = (0f32, String::new());
        for (p, var) in &params {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{name}: no gradient for {p}"));
            let e = &exp[&format!("grad.{p}")];
            let r = rel(g, e);
            assert!(r <= 1e-4, "{name}: gradient of {p} differs by {r}");
            if r > worst.0 {
                worst = (r, p.clone());
            }
        }
        eprintln!("{name}: {} parameters, worst gradient relative error {:.2e} ({})", params.len(), worst.0, worst.1);
    }
}

#[test]
fn running_statistics_after_a_forward_in_both_modes() {
    let (x, y) = batch();
    for name in MODELS {
        let (config, tensors) = load(name);
        let exp = expected(name);
        for (rule, tag) in [(MA, "ma"), (RunningStats::Accumulate, "acc")] {
            let t = Trainable::new(&config, &tensors, &Device::Cpu, false).unwrap();
            step(&t, &x, &y, rule);
            let mut checked = 0;
            for (k, v) in t.state().iter().filter(|(k, _)| is_buffer(k)) {
                let r = rel(v, &exp[&format!("forward_{tag}.{k}")]);
                assert!(r <= 1e-4, "{name} {tag}: {k} differs by {r}");
                checked += 1;
            }
            assert_eq!(checked > 0, config.using_bn(), "{name}");
        }
    }
}

/// The "must show": 3 SGD steps (batch 6, lr 0.01, momentum 0.9, weight decay 1e-4, dropout 0,
/// no augmentation, no shuffle) end at PyTorch's weights: overall relative error of the weight
/// updates ≤ 1e-2, running statistics ≤ 1e-3.
#[test]
fn three_sgd_steps_end_at_pytorchs_weights() {
    let (x, y) = batch();
    for name in MODELS {
        let (config, tensors) = load(name);
        let exp = expected(name);
        for (rule, tag) in [(MA, "ma"), (RunningStats::Accumulate, "acc")] {
            let t = Trainable::new(&config, &tensors, &Device::Cpu, false).unwrap();
            let mut sgd = Sgd::new(0.01, 0.9, 1e-4);
            for _ in 0..3 {
                let grads = step(&t, &x, &y, rule);
                sgd.step(&t.parameters(), &grads).unwrap();
            }
            let state: HashMap<String, Tensor> = t.state().into_iter().collect();
            if tag == "ma" {
                // ‖Δ_snzoo − Δ_torch‖ / ‖Δ_torch‖ over all parameters, Δ = final − start.
                let (mut num, mut den) = (0f64, 0f64);
                for (k, v) in state.iter().filter(|(k, _)| !is_buffer(k)) {
                    let start = values(&tensors[k]);
                    let (ours, theirs) = (values(v), values(&exp[&format!("step3_ma.{k}")]));
                    for i in 0..start.len() {
                        let (a, b) = ((ours[i] - start[i]) as f64, (theirs[i] - start[i]) as f64);
                        num += (a - b) * (a - b);
                        den += b * b;
                    }
                }
                let r = (num / den).sqrt();
                assert!(r <= 1e-2, "{name}: relative error of the updates {r}");
                eprintln!("{name}: relative error of the weight updates after 3 steps: {r:.2e}");
            }
            for (k, v) in state.iter().filter(|(k, _)| is_buffer(k)) {
                let r = rel(v, &exp[&format!("step3_{tag}.{k}")]);
                assert!(r <= 1e-3, "{name} {tag}: {k} differs by {r} after 3 steps");
            }
        }
    }
}

#[test]
fn fresh_models_follow_the_original_initialisation() {
    let (x, y) = batch();
    let (config, _) = load("v1_bottleneck_bn");
    let t = Trainable::fresh(&config, true, &Device::Cpu).unwrap();
    let state: HashMap<String, Tensor> = t.state().into_iter().collect();
    let all = |k: &str, v: f32| values(&state[k]).iter().all(|&x| x == v);
    assert!(all("layer1.0.sn3.weight", 0.0) && all("layer4.0.sn3.weight", 0.0), "last_gamma zeroes each block's last SN");
    assert!(all("layer1.0.sn1.weight", 1.0) && all("sn1.weight", 1.0) && all("layer1.0.downsample.1.weight", 1.0));
    assert!(all("layer2.0.sn2.mean_weight", 1.0) && all("layer2.0.sn2.running_var", 0.0));
    let w = values(&state["layer3.0.conv2.weight"]);
    let std = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
    let expect = (2.0f32 / (16.0 * 9.0)).sqrt(); // fan_out = 16 channels x 3 x 3
    assert!((std / expect - 1.0).abs() < 0.1, "kaiming fan-out std {std} vs {expect}");
    // With every block the identity, a step trains: the loss goes down on the same batch.
    let mut sgd = Sgd::new(0.05, 0.9, 1e-4);
    let mut losses = Vec::new();
    for _ in 0..5 {
        let (logits, stats) = t.model.forward_train(&x, 0.0).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
        losses.push(loss.to_scalar::<f32>().unwrap());
        let grads = loss.backward().unwrap();
        sgd.step(&t.parameters(), &grads).unwrap();
        t.update_running(&stats, MA).unwrap();
    }
    assert!(losses[4] < losses[0], "{losses:?}");
    let no_gamma = Trainable::fresh(&config, false, &Device::Cpu).unwrap();
    let s2: HashMap<String, Tensor> = no_gamma.state().into_iter().collect();
    assert!(values(&s2["layer1.0.sn3.weight"]).iter().all(|&v| v == 1.0));
}
