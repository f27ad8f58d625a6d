//! `snzoo finetune` end to end against PyTorch (`eval/reference/make_train_fixtures.py`): the
//! same weights, the same six photos through the evaluation preprocessing, 3 SGD steps.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use candle_core::{Device, Tensor};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(rel)
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn is_buffer(k: &str) -> bool {
    k.ends_with("running_mean") || k.ends_with("running_var")
}

#[test]
fn three_steps_end_at_pytorchs_weights() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("ft.safetensors");
    let start = fixture("models/r18v1_bn_zip.pth");
    let o = Command::new(env!("CARGO_BIN_EXE_snzoo"))
        .args(["finetune", start.to_str().unwrap(), "--data", fixture("").to_str().unwrap()])
        .args(["--labels", fixture("train/finetune_labels.txt").to_str().unwrap(), "--output", out.to_str().unwrap()])
        .args(["--epochs", "3", "--batch-size", "6", "--lr", "0.01", "--momentum", "0.9", "--weight-decay", "1e-4"])
        .args(["--dropout", "0", "--no-augment", "--no-shuffle", "-q"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), out.to_str().unwrap());

    let ours = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    let theirs = candle_core::safetensors::load(fixture("train/finetune_r18v1_3steps.safetensors"), &Device::Cpu).unwrap();
    let ck = snzoo_convert::read_torch_checkpoint(&start).unwrap();
    let begin: HashMap<String, Vec<f32>> =
        ck.tensors.iter().map(|(k, t)| (k.clone(), t.to_f64_vec().into_iter().map(|v| v as f32).collect())).collect();
    assert_eq!(ours.len(), theirs.len());
    let (mut num, mut den) = (0f64, 0f64);
    for (k, t) in &theirs {
        let (a, b) = (values(&ours[k]), values(t));
        if is_buffer(k) {
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale;
            assert!(err <= 1e-3, "{k}: running statistics differ by {err}");
        } else {
            for ((x, y), s) in a.iter().zip(&b).zip(&begin[k]) {
                let (ua, ub) = ((x - s) as f64, (y - s) as f64);
                num += (ua - ub) * (ua - ub);
                den += ub * ub;
            }
        }
    }
    let r = (num / den).sqrt();
    eprintln!("snzoo finetune vs PyTorch, 3 steps: relative error of the weight updates {r:.2e}");
    assert!(r <= 1e-2, "relative error of the updates {r}");
    // The output is interchangeable with convert-made files: same key names, metadata, classify.
    let meta = {
        let bytes = std::fs::read(&out).unwrap();
        let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        m.metadata().clone().unwrap()
    };
    assert_eq!(meta["arch"], "resnet18v1-sn-w4");
    assert!(meta["finetune"].contains("\"lr\":0.01"));
    let c = Command::new(env!("CARGO_BIN_EXE_snzoo"))
        .args(["classify", "-w", out.to_str().unwrap(), fixture("images/chelsea_420.jpg").to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(c.status.success());
}

#[test]
fn augmentation_shuffle_dropout_new_head_and_validation_run() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("ft.safetensors");
    let o = Command::new(env!("CARGO_BIN_EXE_snzoo"))
        .args(["finetune", "-w", fixture("models/tiny-resnet50v1-sn.pth").to_str().unwrap()])
        .args(["--data", fixture("evalset").to_str().unwrap(), "--output", out.to_str().unwrap()])
        .args(["--epochs", "1", "--batch-size", "4", "--num-classes", "1000", "--val", fixture("evalset").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let progress = String::from_utf8_lossy(&o.stderr);
    assert!(progress.contains("\"val_top1\""), "{progress}");
    // A 10-class head: --num-classes replaces fc; labels beyond it are refused.
    let r = Command::new(env!("CARGO_BIN_EXE_snzoo"))
        .args(["finetune", fixture("models/tiny-resnet50v1-sn.pth").to_str().unwrap(), "--data", fixture("evalset").to_str().unwrap()])
        .args(["--output", d.path().join("x.safetensors").to_str().unwrap(), "--num-classes", "10", "-q"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("out of range for 10 classes"));
    assert!(!d.path().join("x.safetensors").exists());
    let t = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    assert_eq!(t["fc.weight"].dims(), &[1000, 128]);
}
