//! The `snzoo` binary end to end: convert, classify, and its behaviour on bad input.

use libtest_mimic::Trial;
use std::path::{Path, PathBuf};

use snzoo_convert::npy::read_npy_f32;

mod common;
use common::{fixture, ok, s, snzoo};

fn metadata(path: &Path) -> std::collections::HashMap<String, String> {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    meta.metadata().clone().unwrap_or_default()
}

fn convert_records_the_architecture_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture("models/manifest.json")).unwrap()).unwrap();
    for m in manifest.as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let out = dir.path().join(format!("{name}.safetensors"));
        let input = fixture(&format!("models/{name}.pth"));
        let mut args = vec!["convert".to_string(), s(&input).to_string(), s(&out).to_string(), "--json".to_string()];
        if let Some(g) = m["groups"].as_u64() {
            args.extend(["--groups".to_string(), g.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let json: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
        assert_eq!(json["arch"], m["arch"]);
        // BatchNorm's num_batches_tracked counters are dropped.
        let raw = snzoo_convert::read_torch_checkpoint(&fixture(&format!("models/{name}.pth"))).unwrap();
        assert_eq!(raw.tensors.len() as u64, m["keys"].as_u64().unwrap());
        let kept = raw.tensors.iter().filter(|(k, _)| !k.ends_with(".num_batches_tracked")).count();
        assert_eq!(json["tensors"].as_u64().unwrap() as usize, kept);
        let meta = metadata(&out);
        assert_eq!(meta["arch"], m["arch"].as_str().unwrap());
        assert_eq!(meta["using_bn"], m["using_bn"].to_string());
        assert_eq!(meta["num_classes"], m["num_classes"].to_string());
        assert_eq!(meta["source_sha256"].len(), 64);
        assert_eq!(meta["source_format"], format!("torch.save {}", m["format"].as_str().unwrap()));
    }
}

/// Classify the bundled photos with the bundled tiny model: same logits and top-5 as PyTorch.
fn classify_matches_pytorch_on_real_photos() {
    let dir = tempfile::tempdir().unwrap();
    let expected: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture("classify/expected.json")).unwrap()).unwrap();
    let images: Vec<PathBuf> =
        expected["images"].as_array().unwrap().iter().map(|n| fixture(&format!("images/{}", n.as_str().unwrap()))).collect();
    let weights = dir.path().join("tiny.safetensors");
    ok(&["convert", s(&fixture("models/tiny-resnet50v1-sn.pth")), s(&weights)]);
    let (logits_path, input_path) = (dir.path().join("logits.npy"), dir.path().join("input.npy"));
    let mut args = vec!["classify", "--weights", s(&weights), "--json", "--save-logits", s(&logits_path), "--save-input", s(&input_path)];
    args.extend(images.iter().map(|p| s(p)));
    let json: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
    let arr = json.as_array().unwrap();
    assert_eq!(arr.len(), images.len());
    for (i, item) in arr.iter().enumerate() {
        assert_eq!(item["image"].as_str().unwrap(), s(&images[i]));
        let top: Vec<u64> = item["top"].as_array().unwrap().iter().map(|t| t["index"].as_u64().unwrap()).collect();
        let want: Vec<u64> = expected["top5"][i].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(top, want, "{}", images[i].display());
        let first = &item["top"][0];
        let keys: Vec<&str> = first.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["index", "wnid", "label", "prob", "logit"]);
        assert_eq!(first["wnid"].as_str().unwrap(), snzoo_imagenet::class(top[0] as usize).unwrap().wnid);
    }
    let (shape, logits) = read_npy_f32(&logits_path).unwrap();
    assert_eq!(shape, vec![images.len(), 1000]);
    let (_, reference) = read_npy_f32(&fixture("classify/logits.npy")).unwrap();
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = logits.iter().zip(&reference).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
    assert!(err <= 1e-4, "relative logit error {err}");
    let (shape, _) = read_npy_f32(&input_path).unwrap();
    assert_eq!(shape, vec![images.len(), 3, 224, 224]);
    // A torch.save checkpoint given directly gives the same logits.
    let direct = dir.path().join("direct.npy");
    ok(&["classify", "-w", s(&fixture("models/tiny-resnet50v1-sn.pth")), "--save-logits", s(&direct), s(&images[0])]);
    let direct = read_npy_f32(&direct).unwrap().1;
    let diff = direct.iter().zip(&logits[..1000]).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff <= 1e-5 * scale, "batch of one from the .pth differs by {diff}");
}

fn half_precision_conversion_stays_close() {
    let dir = tempfile::tempdir().unwrap();
    let (f32_w, f16_w) = (dir.path().join("a.safetensors"), dir.path().join("b.safetensors"));
    ok(&["convert", s(&fixture("models/tiny-resnet50v1-sn.pth")), s(&f32_w)]);
    ok(&["convert", s(&fixture("models/tiny-resnet50v1-sn.pth")), s(&f16_w), "--dtype", "f16"]);
    assert_eq!(metadata(&f16_w)["dtype"], "f16");
    assert!(std::fs::metadata(&f16_w).unwrap().len() < std::fs::metadata(&f32_w).unwrap().len() * 6 / 10);
    let img = fixture("images/chelsea_420.jpg");
    let (a, b) = (dir.path().join("a.npy"), dir.path().join("b.npy"));
    ok(&["classify", "-w", s(&f32_w), "--save-logits", s(&a), s(&img)]);
    ok(&["classify", "-w", s(&f16_w), "--save-logits", s(&b), s(&img)]);
    let (a, b) = (read_npy_f32(&a).unwrap().1, read_npy_f32(&b).unwrap().1);
    let err = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(err < 0.05, "f16 weights moved the logits by {err}");
}

fn hostile_and_broken_checkpoints_fail_cleanly_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    for (file, needle) in [
        ("hostile/os_system_legacy.pth", "posix.system"),
        ("hostile/builtins_eval_zip.pth", "eval"),
        ("hostile/offset_outside_storage.pth", "outside its storage"),
        ("hostile/not_a_checkpoint.pth", "not a torch.save checkpoint"),
        ("checkpoints/storage_cases_zip.pth", "is not a ResNet that snzoo knows"),
    ] {
        let r = snzoo(&["convert", s(&fixture(file)), s(&out)]);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{file}");
        assert!(err.contains(needle), "{file}: {err}");
        assert!(err.contains(file.rsplit('/').next().unwrap()), "the message must name the file: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists(), "{file} left an output file");
    }
    // A truncated copy of a real checkpoint.
    let bytes = std::fs::read(fixture("models/r50v1_bn_legacy_wrapped.pth")).unwrap();
    let cut = dir.path().join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let r = snzoo(&["convert", s(&cut), s(&out)]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("cut.pth"));
    assert!(!out.exists());
    // An existing output survives a failed conversion untouched; no temporary files remain.
    std::fs::write(&out, b"previous").unwrap();
    assert_eq!(snzoo(&["convert", s(&cut), s(&out)]).status.code(), Some(1));
    assert_eq!(std::fs::read(&out).unwrap(), b"previous");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

fn unreadable_images_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.JPEG");
    let jpeg = std::fs::read(fixture("images/chelsea_420.jpg")).unwrap();
    std::fs::write(&bad, &jpeg[..jpeg.len() / 2]).unwrap();
    let w = fixture("models/tiny-resnet50v1-sn.pth");
    for img in [bad.clone(), dir.path().join("missing.jpg")] {
        let logits = dir.path().join("l.npy");
        let r = snzoo(&["classify", "-w", s(&w), "--save-logits", s(&logits), s(&fixture("images/coffee_444.jpg")), s(&img)]);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{err}");
        assert!(err.contains(img.file_name().unwrap().to_str().unwrap()), "{err}");
        assert!(!logits.exists());
    }
    assert!(String::from_utf8_lossy(&snzoo(&["classify", "-w", s(&w), s(&bad)]).stderr).contains("truncated"));
    // Usage errors exit with 2.
    assert_eq!(snzoo(&["classify", "-w", s(&w)]).status.code(), Some(2));
}

fn bench_reports_throughput_as_json() {
    let w = fixture("models/tiny-resnet50v1-sn.pth");
    for extra in [&[][..], &["--reference-sn"][..]] {
        let mut args = vec!["bench", "-w", s(&w), "--batch-size", "2", "--seconds", "0.1", "--json"];
        args.extend_from_slice(extra);
        let j: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
        assert!(j["images_per_second"].as_f64().unwrap() > 0.0);
        assert_eq!(j["batch_size"], 2);
        assert_eq!(j["arch"], "resnet50v1-sn-w4");
        assert!(j["ms_per_batch"]["median"].as_f64().unwrap() > 0.0);
        assert!(j["batches"].as_u64().unwrap() >= 3);
    }
    let j: serde_json::Value =
        serde_json::from_str(&ok(&["bench", "-w", s(&w), "--pipeline", "--data", s(&fixture("evalset")), "--json"])).unwrap();
    assert_eq!(j["images"], 8);
    // f16 is CUDA-only: said plainly, exit code 1.
    let out = snzoo(&["bench", "-w", s(&w), "--dtype", "f16", "--seconds", "0.1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("runs on CUDA only"), "{}", String::from_utf8_lossy(&out.stderr));
    // bf16 convolutions on CPUs with AVX-512 BF16; elsewhere an error that says what is missing.
    let out = snzoo(&["bench", "-w", s(&w), "--dtype", "bf16", "--batch-size", "2", "--seconds", "0.1", "--json"]);
    if snzoo::snzoo_model::snzoo_kernels::gemm_bf16::available() {
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(j["dtype"], "bf16");
        assert!(j["images_per_second"].as_f64().unwrap() > 0.0);
    } else {
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("AVX-512 BF16"));
    }
}

/// `classify --dtype bf16`: bf16 convolutions move the logits by the bf16 rounding only.
fn classify_in_bf16_stays_close() {
    let dir = tempfile::tempdir().unwrap();
    let w = fixture("models/tiny-resnet50v1-sn.pth");
    let img = fixture("images/chelsea_420.jpg");
    let (y32, y16) = (dir.path().join("f32.npy"), dir.path().join("bf16.npy"));
    ok(&["classify", "--weights", s(&w), "--save-logits", s(&y32), s(&img)]);
    ok(&["classify", "--dtype", "bf16", "--weights", s(&w), "--save-logits", s(&y16), s(&img)]);
    let (_, a) = read_npy_f32(&y32).unwrap();
    let (_, b) = read_npy_f32(&y16).unwrap();
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale;
    assert!(err > 0.0 && err <= 0.06, "bf16 relative error {err}");
}

fn device_flag_is_checked() {
    let w = fixture("models/tiny-resnet50v1-sn.pth");
    let img = fixture("images/chelsea_420.jpg");
    // A malformed value is a usage error (2); CUDA in a build without it is an error naming the fix (1).
    let out = snzoo(&["classify", "--device", "gpu", "--weights", s(&w), s(&img)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("use cpu, cuda or cuda:N"));
    if !cfg!(feature = "cuda") {
        for cmd in [&["classify", "--device", "cuda:0", "--weights", s(&w), s(&img)][..], &["bench", "--device", "cuda", "-w", s(&w)][..]] {
            let out = snzoo(cmd);
            assert_eq!(out.status.code(), Some(1));
            assert!(String::from_utf8_lossy(&out.stderr).contains("--features cuda"), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let cpu = ok(&["classify", "--device", "cpu", "--weights", s(&w), s(&img)]);
    assert_eq!(cpu, ok(&["classify", "--weights", s(&w), s(&img)]));
}

/// A protocol recorded at conversion (`--protocol CARD`) feeds `classify` and is recorded by
/// `eval`: timm's bicubic 238/224 for the GroupNorm card, bit for bit as timm computes it.
fn a_recorded_protocol_feeds_classify_and_eval() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("tiny.safetensors");
    ok(&["convert", s(&fixture("models/tiny-resnet50v1-sn.pth")), s(&w), "--protocol", "timm-resnet50_gn.a1h_in1k"]);
    let x = dir.path().join("x.npy");
    ok(&["classify", "-w", s(&w), "--save-input", s(&x), s(&fixture("images/chelsea_420.jpg"))]);
    let (shape, data) = read_npy_f32(&x).unwrap();
    assert_eq!(shape, vec![1, 3, 224, 224]);
    let expected: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture("images/timm_gn_protocol.json")).unwrap()).unwrap();
    let row = expected["images"].as_array().unwrap().iter().find(|r| r["image"] == "chelsea_420.jpg").unwrap().clone();
    use sha2::Digest;
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let sha: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(sha, row["tensor_sha256"].as_str().unwrap());
    let r: serde_json::Value = serde_json::from_str(&ok(&["eval", "-w", s(&w), "--json", "-q"])).unwrap();
    assert_eq!((r["preprocess"]["resize"].as_u64(), r["preprocess"]["interpolation"].as_str()), (Some(238), Some("bicubic")));
    // An unknown card name is an error.
    let out = snzoo(&[
        "convert",
        s(&fixture("models/tiny-resnet50v1-sn.pth")),
        s(&dir.path().join("o.safetensors")),
        "--protocol",
        "no-such-model",
    ]);
    assert_eq!(out.status.code(), Some(1));
}

/// A custom harness (libtest-mimic), so that the tests that need AVX-512 BF16 are reported as
/// ignored on CPUs without it, decided at run time, instead of passing untested.
fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let bf16 = snzoo::snzoo_model::snzoo_kernels::gemm_bf16::available();
    if !bf16 {
        eprintln!("this CPU has no AVX-512 BF16: the bf16 classify test is ignored");
    }
    // (name, test, whether it needs AVX-512 BF16)
    let tests: &[(&str, fn(), bool)] = &[
        ("a_recorded_protocol_feeds_classify_and_eval", a_recorded_protocol_feeds_classify_and_eval, false),
        ("convert_records_the_architecture_and_source", convert_records_the_architecture_and_source, false),
        ("classify_matches_pytorch_on_real_photos", classify_matches_pytorch_on_real_photos, false),
        ("half_precision_conversion_stays_close", half_precision_conversion_stays_close, false),
        (
            "hostile_and_broken_checkpoints_fail_cleanly_and_leave_nothing",
            hostile_and_broken_checkpoints_fail_cleanly_and_leave_nothing,
            false,
        ),
        ("unreadable_images_are_named_errors", unreadable_images_are_named_errors, false),
        ("bench_reports_throughput_as_json", bench_reports_throughput_as_json, false),
        ("classify_in_bf16_stays_close", classify_in_bf16_stays_close, true),
        ("device_flag_is_checked", device_flag_is_checked, false),
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
