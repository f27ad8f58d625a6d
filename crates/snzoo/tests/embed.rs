//! `snzoo embed` and `snzoo export --onnx` from the command line: the features are what the
//! classifier sees (its logits are `fc` applied to them), stage maps have their shapes, and the
//! ONNX file carries the protocol and runs (tract) to the logits `classify` prints.

mod common;
use common::{fixture, ok, s, snzoo};

fn npy(path: &std::path::Path) -> (Vec<usize>, Vec<f32>) {
    snzoo_convert::npy::read_npy_f32(path).unwrap()
}

#[test]
fn pooled_features_are_what_the_classifier_sees() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("m.safetensors");
    ok(&["convert", s(&fixture("models/r50v2_bn_legacy_wrapped.pth")), s(&weights)]);
    let photos = [fixture("images/chelsea_420.jpg"), fixture("images/hubble_odd.jpg"), fixture("images/rocket_gray.jpg")];
    let photos: Vec<&str> = photos.iter().map(|p| s(p)).collect();
    let (f, y) = (dir.path().join("f.npy"), dir.path().join("y.npy"));
    let mut args = vec!["embed", "--weights", s(&weights), "-o", s(&f), "--batch-size", "2"];
    args.extend(&photos);
    ok(&args);
    let mut args = vec!["classify", "--weights", s(&weights), "--save-logits", s(&y)];
    args.extend(&photos);
    ok(&args);
    let (fshape, feats) = npy(&f);
    let (_, logits) = npy(&y);
    assert_eq!(fshape, vec![3, 128]);
    // fc from the file itself.
    let bytes = std::fs::read(&weights).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let vals = |name: &str| -> Vec<f32> {
        st.tensor(name).unwrap().data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    };
    let (w, b) = (vals("fc.weight"), vals("fc.bias"));
    let classes = b.len();
    let scale = logits.iter().fold(0f32, |m, v| m.max(v.abs()));
    for i in 0..3 {
        for k in 0..classes {
            let dot: f64 = (0..128).map(|j| feats[i * 128 + j] as f64 * w[k * 128 + j] as f64).sum::<f64>() + b[k] as f64;
            assert!((dot as f32 - logits[i * classes + k]).abs() <= 1e-5 * scale, "image {i} class {k}");
        }
    }
}

#[test]
fn stage_maps_have_their_shapes_and_pool_to_the_features() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("models/r50v1_nobn_legacy.pth");
    let photo = fixture("images/coffee_444.jpg");
    let mut maps = Vec::new();
    for (layer, shape) in [("layer1", [16, 56, 56]), ("layer2", [32, 28, 28]), ("layer3", [64, 14, 14]), ("layer4", [128, 7, 7])] {
        let out = dir.path().join(format!("{layer}.npy"));
        let json = ok(&["embed", s(&model), s(&photo), "-o", s(&out), "--layer", layer, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["shape"], serde_json::json!([1, shape[0], shape[1], shape[2]]), "{layer}");
        let (got, data) = npy(&out);
        assert_eq!(got, vec![1, shape[0], shape[1], shape[2]]);
        maps.push(data);
    }
    // v1 has no norm after layer4: its map, averaged, is the pooled feature.
    let pooled = dir.path().join("pool.npy");
    ok(&["embed", s(&model), s(&photo), "-o", s(&pooled)]);
    let (_, f) = npy(&pooled);
    let l4 = &maps[3];
    for c in 0..128 {
        let mean: f64 = l4[c * 49..(c + 1) * 49].iter().map(|&v| v as f64).sum::<f64>() / 49.0;
        assert!((mean as f32 - f[c]).abs() <= 1e-5 * (1.0 + f[c].abs()), "channel {c}");
    }
    // Usage errors: an unknown layer, no images.
    assert_eq!(snzoo(&["embed", s(&model), s(&photo), "-o", s(&pooled), "--layer", "layer5"]).status.code(), Some(2));
    assert_eq!(snzoo(&["embed", s(&model), "-o", s(&pooled)]).status.code(), Some(2));
}

#[test]
fn onnx_export_from_the_command_line() {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("m.onnx");
    ok(&["export", "--weights", s(&fixture("models/tiny-resnet50v1-sn.pth")), "--onnx", s(&onnx), "--opset", "18"]);
    let model = snzoo::snzoo_onnx::proto::ModelProto::decode(std::fs::read(&onnx).unwrap().as_slice()).unwrap();
    assert_eq!(model.opset_import[0].version, Some(18));
    let meta: std::collections::HashMap<String, String> =
        model.metadata_props.iter().map(|p| (p.key.clone().unwrap(), p.value.clone().unwrap())).collect();
    assert_eq!(meta["snzoo.arch"], "resnet50v1-sn-w4");
    let protocol: serde_json::Value = serde_json::from_str(&meta["snzoo.eval_protocol"]).unwrap();
    assert_eq!(protocol["resize"], 256);
    let classes: Vec<String> = serde_json::from_str(&meta["snzoo.class_names"]).unwrap();
    assert_eq!((classes.len(), classes[281].as_str()), (1000, "tabby cat"));
    let graph = model.graph.unwrap();
    assert!(graph.node.iter().all(|n| n.domain.as_deref().unwrap_or("").is_empty()), "standard operators only");
    // Out-of-range opsets are usage errors; an output over the input is refused.
    assert_eq!(
        snzoo(&["export", "-w", s(&fixture("models/tiny-resnet50v1-sn.pth")), "--onnx", s(&onnx), "--opset", "12"]).status.code(),
        Some(2)
    );
    let copy = dir.path().join("w.pth");
    std::fs::copy(fixture("models/tiny-resnet50v1-sn.pth"), &copy).unwrap();
    assert_eq!(snzoo(&["export", "-w", s(&copy), "--onnx", s(&copy)]).status.code(), Some(1));
}
