//! The reader against checkpoints written by PyTorch 1.13 (`eval/reference/make_fixtures.py`).

use std::io::Cursor;
use std::path::PathBuf;

use snzoo_convert::pickle::PickleError;
use snzoo_convert::{read_torch_checkpoint, read_torch_checkpoint_from, CheckpointError, DType, TorchFormat};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(rel)
}

#[test]
fn shared_storages_views_and_strides_match_pytorch() {
    let expected: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture("checkpoints/storage_cases.json")).unwrap()).unwrap();
    for (file, format) in [("storage_cases_zip.pth", TorchFormat::Zip), ("storage_cases_legacy.pth", TorchFormat::Legacy)] {
        let ck = read_torch_checkpoint(&fixture(&format!("checkpoints/{file}"))).unwrap();
        assert_eq!(ck.format, format);
        let exp = expected.as_object().unwrap();
        assert_eq!(ck.tensors.len(), exp.len(), "{file}");
        for (name, t) in &ck.tensors {
            let e = &exp[name];
            let shape: Vec<usize> = e["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            let values: Vec<f64> = e["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(t.shape, shape, "{file}: {name}");
            assert_eq!(t.to_f64_vec(), values, "{file}: {name}");
        }
        let dtype = |n: &str| ck.tensors.iter().find(|(k, _)| k == n).unwrap().1.dtype;
        assert_eq!(dtype("half"), DType::F16);
        assert_eq!(dtype("long"), DType::I64);
        assert_eq!(dtype("cube.permuted"), DType::F64);
    }
}

#[test]
fn model_fixtures_unwrap_and_strip_the_prefix() {
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture("models/manifest.json")).unwrap()).unwrap();
    for m in manifest.as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let ck = read_torch_checkpoint(&fixture(&format!("models/{name}.pth"))).unwrap();
        assert_eq!(ck.tensors.len() as u64, m["keys"].as_u64().unwrap(), "{name}");
        assert_eq!(ck.format.to_string(), m["format"].as_str().unwrap());
        assert_eq!(ck.info.stripped_module_prefix, m["module_prefix"].as_bool().unwrap(), "{name}");
        assert!(ck.tensors.iter().all(|(k, _)| !k.starts_with("module.")));
        if m["wrapped"].as_bool().unwrap() {
            assert_eq!(ck.info.wrapped_in.as_deref(), Some("state_dict"));
            assert_eq!(ck.info.epoch, Some(100));
            assert_eq!(ck.info.arch.as_deref(), Some(&*format!("resnet{}{}_sn", m["depth"], m["version"].as_str().unwrap())));
            // best_prec1 was saved as a 0-dim tensor.
            assert!((ck.info.best_prec1.unwrap() - 77.49).abs() < 1e-4);
        }
        assert_eq!(ck.tensors[0].0, "conv1.weight");
    }
    // The optimizer of a training dict is skipped, not loaded.
    let ck = read_torch_checkpoint(&fixture("models/r50v1_bn_legacy_wrapped.pth")).unwrap();
    assert_eq!(ck.info.skipped, vec!["optimizer".to_string()]);
}

/// The error and its sources, as `anyhow`'s `{:#}` prints them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn err(rel: &str) -> CheckpointError {
    read_torch_checkpoint(&fixture(rel)).expect_err(rel)
}

#[test]
fn forbidden_globals_are_refused_by_name() {
    for (file, global) in [
        ("hostile/os_system_legacy.pth", "posix.system"),
        ("hostile/builtins_eval_zip.pth", "__builtin__.eval"), // protocol 2 spells builtins so
        ("hostile/posix_system.pkl", "posix.system"),
    ] {
        match err(file) {
            CheckpointError::Pickle(PickleError::ForbiddenGlobal { module, name }) => {
                assert_eq!(format!("{module}.{name}"), global, "{file}")
            }
            e => panic!("{file}: {e}"),
        }
        assert!(chain(&err(file)).contains(global));
    }
}

#[test]
fn out_of_range_views_and_absurd_sizes_are_errors() {
    for file in ["offset_outside_storage.pth", "stride_outside_storage.pth", "expanded_view.pth"] {
        let e = err(&format!("hostile/{file}"));
        assert!(matches!(e, CheckpointError::Corrupt(_)), "{file}: {e}");
    }
    assert!(matches!(err("hostile/huge_storage_count.pth"), CheckpointError::Truncated(_)));
    assert!(matches!(err("hostile/not_a_checkpoint.pth"), CheckpointError::NotACheckpoint(_)));
    assert!(matches!(err("hostile/empty.pth"), CheckpointError::NotACheckpoint(_)));
    // The hand-made stream itself is fine: only the bad numbers make the others fail.
    let ck = read_torch_checkpoint(&fixture("hostile/valid_hand_made.pth")).unwrap();
    assert_eq!(ck.tensors[0].1.to_f64_vec(), vec![2.0, 3.0, 4.0]);
}

#[test]
fn every_truncation_is_an_error_never_a_panic() {
    for rel in ["models/r50v1_nobn_legacy.pth", "models/r18v1_bn_zip.pth", "checkpoints/storage_cases_legacy.pth"] {
        let bytes = std::fs::read(fixture(rel)).unwrap();
        let step = (bytes.len() / 400).max(1);
        for cut in (0..bytes.len()).step_by(step).chain([bytes.len() - 1]) {
            let r = read_torch_checkpoint_from(Cursor::new(&bytes[..cut]));
            assert!(r.is_err(), "{rel} cut at {cut} of {} was accepted", bytes.len());
        }
    }
}

/// Every archive `torch.save` writes must load, whatever its entry prefix (the file's stem):
/// PyTorch 1.13 files with prefixes of 1 to 200 characters. (The zip crate's search for data
/// prepended to an archive misread those with a 21-character prefix.)
#[test]
fn zip_archives_of_every_name_length_load() {
    use std::io::Read;
    let gz = std::fs::File::open(fixture("checkpoints/zip_names.tar.gz")).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    let mut lengths = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        let ck = read_torch_checkpoint_from(Cursor::new(bytes)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ck.format, TorchFormat::Zip);
        assert_eq!(ck.tensors.len(), 1);
        assert_eq!(ck.tensors[0].1.to_f64_vec(), vec![1.0, 2.0, 3.0], "{name}");
        lengths.push(name.len() - ".pth".len());
    }
    lengths.sort();
    assert_eq!(lengths, (1..=200).collect::<Vec<_>>());
}
