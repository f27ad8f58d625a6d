//! The TensorFlow, Caffe and Torch7 readers on files the frameworks (or writers checked against
//! them) made: eval/reference/baselines/ wrote them and their manifests say what they hold.

use std::path::{Path, PathBuf};

use snzoo_convert::torch7::{parse_t7, Torch7Error, Value};
use snzoo_convert::{caffe, tensorflow, DType};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/frameworks").join(rel)
}

fn manifest(dir: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture(&format!("{dir}/manifest.json"))).unwrap()).unwrap()
}

fn flatten(v: &serde_json::Value, out: &mut Vec<f64>) {
    match v {
        serde_json::Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
        x => out.push(x.as_f64().unwrap()),
    }
}

/// TF's V1 and V2 writers, including a variable saved in three partitions, a float64 one, an
/// int64 scalar and a name with odd characters.
#[test]
fn tensorflow_v1_and_v2_with_partitions() {
    let m = manifest("slim");
    for (path, format) in [("slim/partitioned.ckpt", tensorflow::TfFormat::V1), ("slim/partitioned_v2", tensorflow::TfFormat::V2)] {
        let ck = tensorflow::read_tf_checkpoint(&fixture(path)).unwrap();
        assert_eq!(ck.format, format);
        assert!(ck.skipped.is_empty());
        let values = m["partitioned"]["values"].as_object().unwrap();
        assert_eq!(ck.tensors.len(), values.len(), "{path}");
        for (name, t) in &ck.tensors {
            let mut want = Vec::new();
            flatten(&values[name], &mut want);
            let got = t.to_f64_vec();
            assert_eq!(got.len(), want.len(), "{path} {name}");
            for (g, w) in got.iter().zip(&want) {
                // The JSON holds each value to f64 precision (serde_json parses it within an
                // ulp): compare f32 tensors in f32, f64 ones within 2 ulps.
                match t.dtype {
                    DType::F32 => assert_eq!(*g as f32, *w as f32, "{path} {name}"),
                    _ => assert!((g - w).abs() <= w.abs() * 4.5e-16, "{path} {name}: {g} vs {w}"),
                }
            }
        }
        let dtype = |n: &str| ck.tensors.iter().find(|(k, _)| k == n).unwrap().1.dtype;
        assert_eq!(
            (dtype("part"), dtype("double"), dtype("global_step"), dtype("a/b_c.d")),
            (DType::F32, DType::F64, DType::I64, DType::F32)
        );
    }
    // The tiny network's two files hold the same tensors.
    let v1 = tensorflow::read_tf_checkpoint(&fixture("slim/tiny.ckpt")).unwrap();
    let v2 = tensorflow::read_tf_checkpoint(&fixture("slim/tiny_v2.index")).unwrap();
    assert_eq!(v1.tensors, v2.tensors);
    let vars = m["tiny"]["variables"].as_object().map(|o| o.len()).unwrap_or(v1.tensors.len());
    assert_eq!(v1.tensors.len(), vars);
}

/// A V2 bundle whose data shard is cut or altered is refused by its size or crc32c.
#[test]
fn tensorflow_v2_data_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("p");
    std::fs::copy(fixture("slim/partitioned_v2.index"), dir.path().join("p.index")).unwrap();
    let mut data = std::fs::read(fixture("slim/partitioned_v2.data-00000-of-00001")).unwrap();
    data[3] ^= 0x40;
    std::fs::write(dir.path().join("p.data-00000-of-00001"), &data).unwrap();
    let e = tensorflow::read_tf_checkpoint(&prefix).unwrap_err().to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
    let original = std::fs::read(fixture("slim/partitioned_v2.data-00000-of-00001")).unwrap();
    std::fs::write(dir.path().join("p.data-00000-of-00001"), &original[..100]).unwrap();
    let e = tensorflow::read_tf_checkpoint(&prefix).unwrap_err().to_string();
    assert!(e.contains("outside its 100-byte data shard"), "{e}");
    std::fs::remove_file(dir.path().join("p.data-00000-of-00001")).unwrap();
    let e = tensorflow::read_tf_checkpoint(&prefix).unwrap_err().to_string();
    assert!(e.contains("p.data-00000-of-00001"), "{e}");
}

/// Caffe's new and legacy layer encodings of one network hold the same weights.
#[test]
fn caffe_new_and_legacy_encodings() {
    let new = caffe::read_caffemodel(&fixture("caffe/tiny.caffemodel")).unwrap();
    let old = caffe::read_caffemodel(&fixture("caffe/tiny_v1layers.caffemodel")).unwrap();
    assert!(!new.legacy && old.legacy);
    for l in old.layers.iter().filter(|l| !l.blobs.is_empty()) {
        let n = new.layers.iter().find(|n| n.name == l.name).unwrap();
        assert_eq!(n.kind, l.kind, "{}", l.name);
        for (a, b) in n.blobs.iter().zip(&l.blobs) {
            // Legacy blobs are 4-D, right-aligned: the same values.
            assert_eq!(a.data, b.data, "{}", l.name);
            assert_eq!(a.numel(), b.numel(), "{}", l.name);
        }
    }
    let conv1 = new.layers.iter().find(|l| l.name == "conv1").unwrap();
    let c = conv1.conv.unwrap();
    assert_eq!((c.kernel, c.stride, c.pad, c.bias_term), ((7, 7), (2, 2), (3, 3), true));
    let pool1 = new.layers.iter().find(|l| l.name == "pool1").unwrap().pool.unwrap();
    assert!(pool1.max && pool1.ceil);
    let mean = caffe::read_binaryproto(&fixture("caffe/mean.binaryproto")).unwrap();
    assert_eq!(mean.shape, vec![1, 3, 61, 67]);
    let (_, image) = snzoo_convert::npy::read_npy_f32(&fixture("caffe/input.npy")).unwrap();
    let image_u8: Vec<f32> = {
        let bytes = std::fs::read(fixture("caffe/image.npy")).unwrap();
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        npy.into_vec::<u8>().unwrap().into_iter().map(f32::from).collect()
    };
    // input = image − mean (both images of the batch).
    let m = mean.to_f64_vec();
    for (i, (&x, &v)) in image.iter().zip(&image_u8).enumerate() {
        assert_eq!(x, v - m[i % m.len()] as f32, "element {i}");
    }
}

/// Torch7 files of every value kind: the values the manifest lists.
#[test]
fn torch7_formats() {
    let m = manifest("torch7");
    for (file, entry) in m["formats"].as_object().unwrap() {
        let v = parse_t7(&std::fs::read(fixture(&format!("torch7/{file}"))).unwrap()).unwrap_or_else(|e| panic!("{file}: {e}"));
        let Some(expect) = entry["expect"].as_object() else { continue };
        let table = v.as_table().unwrap_or_else(|| panic!("{file}: not a table"));
        for (key, want) in expect {
            let t = table.get(key).and_then(Value::as_tensor).unwrap_or_else(|| panic!("{file}: {key}"));
            let mut w = Vec::new();
            flatten(want, &mut w);
            assert_eq!(t.to_contiguous().to_f64_vec(), w, "{file}: {key}");
        }
    }
}

/// Every hostile Torch7 file gives the error its manifest expects.
#[test]
fn torch7_hostile_files() {
    let m = manifest("torch7");
    let mut n = 0;
    for (file, entry) in m["hostile"].as_object().unwrap() {
        let Ok(bytes) = std::fs::read(fixture(&format!("torch7/{file}"))) else {
            // Made by the test below instead (too large to commit).
            assert_eq!(file, "hostile/deep_nesting.t7");
            continue;
        };
        let err = parse_t7(&bytes).expect_err(file);
        let kinds: Vec<&str> = match &entry["expect_error"] {
            serde_json::Value::String(s) => vec![s.as_str()],
            serde_json::Value::Array(a) => a.iter().map(|s| s.as_str().unwrap()).collect(),
            _ => unreachable!(),
        };
        let text = err.to_string();
        let ok = kinds.iter().any(|k| match *k {
            "class_not_allowed" => matches!(err, Torch7Error::UnknownClass(_)),
            "function_not_allowed" => matches!(err, Torch7Error::Function(_)),
            "truncated" => matches!(err, Torch7Error::Truncated(_)),
            "undefined_reference" => text.contains("neither defined nor the next"),
            "cycle" => text.contains("cycle"),
            "too_deep" => text.contains("deeper"),
            "unknown_tag" => text.contains("unknown object type"),
            "bad_length" => matches!(err, Torch7Error::Truncated(_)) || text.contains("length") || text.contains("entries"),
            "storage_exceeds_file" => text.contains("does not fit") || matches!(err, Torch7Error::Truncated(_)),
            "bad_tensor" => text.contains("of rank"),
            "tensor_out_of_bounds" => {
                text.contains("past its storage") || text.contains(" size -") || text.contains("offset") || text.contains("overflows")
            }
            k => panic!("{file}: unknown expectation {k}"),
        });
        assert!(ok, "{file}: expected {kinds:?}, got {text}");
        n += 1;
    }
    assert!(n >= 20, "{n} hostile files");
    // Nesting 10,000 deep (a recursive reader without a limit overflows its stack).
    let mut deep = Vec::new();
    for i in 1..=10_000i32 {
        deep.extend_from_slice(&3i32.to_le_bytes());
        deep.extend_from_slice(&i.to_le_bytes());
        deep.extend_from_slice(&1i32.to_le_bytes());
        deep.extend_from_slice(&5i32.to_le_bytes());
        deep.extend_from_slice(&1i32.to_le_bytes());
    }
    let e = parse_t7(&deep).unwrap_err().to_string();
    assert!(e.contains("deeper"), "{e}");
}
