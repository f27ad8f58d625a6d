//! The BN baselines of other frameworks, end to end on small files each framework's own code
//! (or a writer checked against it) made (eval/reference/baselines/): TF-Slim V1 and V2
//! checkpoints, MSRA-layout Caffe models, fb.resnet.torch-layout Torch7 models. Each converts
//! to its layout and computes the logits the framework computed on the same input
//! (max |Δ| / max |logit| ≤ 1e-4, the same top-5).

use std::path::{Path, PathBuf};

use snzoo::convert::{convert_checkpoint, ConvertOptions};
use snzoo::snzoo_convert::npy::read_npy_f32;
use snzoo_model::Style;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(rel)
}

/// The logits of the converted network on an input `.npy` (NCHW).
fn logits(path: &Path, input: &str) -> (Vec<f32>, usize, Style) {
    let c = convert_checkpoint(path, Some(snzoo::snzoo_convert::DType::F32)).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    let bytes = snzoo::snzoo_convert::serialize_safetensors(&c.tensors, &c.metadata).unwrap();
    let vb = candle_nn::VarBuilder::from_buffered_safetensors(bytes, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    let net = snzoo_model::ResNet::new(&c.config, vb).unwrap();
    let (shape, x) = read_npy_f32(&fixture(input)).unwrap();
    let x = candle_core::Tensor::from_vec(x, shape.as_slice(), &candle_core::Device::Cpu).unwrap();
    let y = net.forward(&x).unwrap();
    (y.flatten_all().unwrap().to_vec1().unwrap(), c.config.num_classes, c.config.style)
}

fn top5(row: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    idx.truncate(5);
    idx
}

fn check(model: &str, input: &str, expected: &str, style: Style) {
    let (got, classes, got_style) = logits(&fixture(model), input);
    assert_eq!(got_style, style, "{model}");
    let (_, want) = read_npy_f32(&fixture(expected)).unwrap();
    assert_eq!(got.len(), want.len(), "{model}");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
    assert!(err <= 1e-4, "{model}: max |Δ| / max |logit| = {err}");
    for (g, w) in got.chunks(classes).zip(want.chunks(classes)) {
        assert_eq!(top5(g), top5(w), "{model}");
    }
    eprintln!("{model}: {err:.2e}");
}

#[test]
fn tf_slim_v1_checkpoint() {
    check("frameworks/slim/tiny.ckpt", "frameworks/slim/input.npy", "frameworks/slim/logits.npy", Style::Slim);
}

#[test]
fn tf_slim_v2_bundle_by_index_prefix_and_shard() {
    for p in ["frameworks/slim/tiny_v2.index", "frameworks/slim/tiny_v2", "frameworks/slim/tiny_v2.data-00000-of-00001"] {
        check(p, "frameworks/slim/input.npy", "frameworks/slim/logits.npy", Style::Slim);
    }
}

#[test]
fn msra_caffe_model() {
    check("frameworks/caffe/tiny.caffemodel", "frameworks/caffe/input.npy", "frameworks/caffe/logits.npy", Style::Msra);
}

#[test]
fn fb_resnet_torch_models() {
    check("frameworks/torch7/tiny.t7", "frameworks/torch7/input.npy", "frameworks/torch7/logits.npy", Style::Fbtorch);
    check("frameworks/torch7/tiny_flat.t7", "frameworks/torch7/input.npy", "frameworks/torch7/logits.npy", Style::Fbtorch);
    check(
        "frameworks/torch7/tiny_float_oldbn.t7",
        "frameworks/torch7/input.npy",
        "frameworks/torch7/logits_float_oldbn.npy",
        Style::Fbtorch,
    );
}

#[allow(dead_code)]
fn _options() -> ConvertOptions {
    ConvertOptions::default()
}
