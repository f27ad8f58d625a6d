//! The BN baselines' evaluation pipelines against their frameworks, bit for bit, on the fixture
//! photos: TF-Slim's (TensorFlow 2.15 running the 2016 `vgg_preprocessing`), Caffe's (OpenCV
//! 4.x `cv2.resize`), fb.resnet.torch's (torch/image's `image.scale` C code compiled as Torch
//! compiled it). The expected hashes come from eval/reference/baselines/.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use snzoo_preprocess::{decode_rgb, opencv, tf_slim, torch_image, Crop, EvalTransform, FloatImage, Interpolation, Pipeline, ValueRange};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(rel)
}

fn json(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture(rel)).unwrap()).unwrap()
}

fn sha_f32(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    format!("{:x}", Sha256::digest(&bytes))
}

fn sha_u8(v: &[u8]) -> String {
    format!("{:x}", Sha256::digest(v))
}

fn hw(v: &serde_json::Value) -> (usize, usize) {
    (v[0].as_u64().unwrap() as usize, v[1].as_u64().unwrap() as usize)
}

/// HWC order of a planar image.
fn hwc(img: &FloatImage) -> Vec<f32> {
    let n = img.width * img.height;
    (0..n).flat_map(|i| (0..3).map(move |c| (c, i))).map(|(c, i)| img.data[c * n + i]).collect()
}

fn bgr(data: &[u8]) -> Vec<u8> {
    data.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect()
}

fn slim() -> EvalTransform {
    EvalTransform {
        pipeline: Pipeline::TfSlim,
        mean: [123.68, 116.78, 103.94],
        std: [1.0; 3],
        value_range: ValueRange::Byte,
        ..EvalTransform::default()
    }
}

#[test]
fn tf_slim_pipeline_is_tensorflows() {
    let expected = json("images/slim_protocol.json");
    let mut n = 0;
    for e in expected["images"].as_array().unwrap() {
        let name = e["image"].as_str().unwrap();
        let img = decode_rgb(&std::fs::read(fixture(&format!("images/{name}"))).unwrap()).unwrap();
        assert_eq!(sha_u8(&img.data), e["decoded_sha256"].as_str().unwrap(), "{name}: decoded pixels");
        let (h, w) = hw(&e["resized_hw"]);
        assert_eq!(tf_slim::resized_dims(img.width, img.height, 256), (w, h), "{name}");
        let resized = tf_slim::resize_bilinear(&img, w, h);
        assert_eq!(sha_f32(&hwc(&resized)), e["resized_sha256"].as_str().unwrap(), "{name}: resize_bilinear");
        let x = slim().apply(&std::fs::read(fixture(&format!("images/{name}"))).unwrap()).unwrap();
        assert_eq!(sha_f32(&x), e["tensor_sha256"].as_str().unwrap(), "{name}: input tensor");
        n += 1;
    }
    assert!(n >= 11, "{n} photos");
}

#[test]
fn caffe_pipeline_is_opencvs() {
    let expected = json("images/caffe_protocol.json");
    let t = EvalTransform { pipeline: Pipeline::Caffe, ..EvalTransform::default() };
    for e in expected["images"].as_array().unwrap() {
        let name = e["image"].as_str().unwrap();
        let img = decode_rgb(&std::fs::read(fixture(&format!("images/{name}"))).unwrap()).unwrap();
        assert_eq!(sha_u8(&bgr(&img.data)), e["decoded_sha256"].as_str().unwrap(), "{name}: decoded pixels");
        let (h, w) = hw(&e["resized_hw"]);
        assert_eq!(opencv::resized_dims(img.width, img.height, 256), (w, h), "{name}");
        let resized = opencv::resize_linear(&img, w, h);
        assert_eq!(sha_u8(&bgr(&resized.data)), e["resized_sha256"].as_str().unwrap(), "{name}: cv2.resize");
        let Crop::U8(crop) = t.crop_image(&img).unwrap() else { panic!("8-bit crop") };
        assert_eq!(sha_u8(&bgr(&crop.data)), e["crop_sha256"].as_str().unwrap(), "{name}: crop");
    }
}

#[test]
fn fbtorch_pipeline_is_lua_torchs() {
    let expected = json("images/fbtorch_protocol.json");
    let t = EvalTransform { pipeline: Pipeline::Fbtorch, interpolation: Interpolation::Bicubic, ..EvalTransform::default() };
    for e in expected["photos"].as_array().unwrap() {
        let name = e["image"].as_str().unwrap();
        let bytes = std::fs::read(fixture(&format!("images/{name}"))).unwrap();
        let img = decode_rgb(&bytes).unwrap();
        assert_eq!(sha_u8(&img.data), e["decoded_rgb_u8_sha256"].as_str().unwrap(), "{name}: decoded pixels");
        let loaded = torch_image::load_float(&img);
        assert_eq!(sha_f32(&loaded.data), e["loaded_sha256"].as_str().unwrap(), "{name}: image.load");
        let (h, w) = hw(&e["scaled_hw"]);
        let scaled = match torch_image::scaled_dims(img.width, img.height, 256) {
            Some((sw, sh)) => {
                assert_eq!((sw, sh), (w, h), "{name}");
                torch_image::scale_bicubic(&loaded, sw, sh)
            }
            None => loaded,
        };
        assert_eq!(sha_f32(&scaled.data), e["scaled_sha256"].as_str().unwrap(), "{name}: image.scale");
        assert_eq!(sha_f32(&t.apply(&bytes).unwrap()), e["input_sha256"].as_str().unwrap(), "{name}: input tensor");
    }
}

/// The test vectors of torch/image's bicubic `image.scale`, produced by its C source.
#[test]
fn torch_image_scale_vectors() {
    let expected = json("images/torch_image_scale.json");
    for case in expected["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let shape: Vec<usize> = case["input_shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let out_shape: Vec<usize> = case["output_shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let (c, h, w) = (shape[0], shape[1], shape[2]);
        // The generator: an LCG in C order.
        let g = &case["generator"];
        let mut state = g["seed"].as_u64().unwrap() as u32;
        let kind = g["kind"].as_str().unwrap();
        let mut input = Vec::with_capacity(c * h * w);
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    state = state.wrapping_mul(1664525).wrapping_add(1013904223);
                    let u = (state >> 8) as f32 * (1.0 / 16_777_216.0);
                    input.push(match kind {
                        "unit" => u,
                        "centered" => (u - 0.5) * 4.0,
                        "photo" => (255.min(40 * ch + 2 * x + 3 * y + (state >> 28) as usize) as f32) * torch_image::INV_255,
                        k => panic!("generator {k}"),
                    });
                }
            }
        }
        assert_eq!(sha_f32(&input), case["input_sha256"].as_str().unwrap(), "{name}: input");
        let out = torch_image::scale_bicubic_planes(&input, c, w, h, out_shape[2], out_shape[1]);
        match case["output"].as_array() {
            Some(values) => {
                for (i, (got, want)) in out.iter().zip(values).enumerate() {
                    // null: an element Torch never writes (a one-sample source's last).
                    if let Some(want) = want.as_f64() {
                        assert_eq!(got.to_bits(), (want as f32).to_bits(), "{name}: element {i}: {got} vs {want}");
                    }
                }
                assert_eq!(out.len(), values.len(), "{name}");
            }
            None => assert_eq!(sha_f32(&out), case["output_sha256"].as_str().unwrap(), "{name}: output"),
        }
    }
}
