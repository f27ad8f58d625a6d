//! Hugging Face `transformers` support files of an exported folder (`snzoo export --hf`).
//!
//! The three Python files are kept in this crate (not generated per model) and written beside
//! the weights, so that `AutoModelForImageClassification.from_pretrained(dir, trust_remote_code=True)`
//! and `pipeline("image-classification", model=dir, trust_remote_code=True)` build the network from
//! `config.json` and load `model.safetensors` by snzoo's own key names.

use snzoo_preprocess::EvalTransform;

/// The `model_type` of exported configurations.
pub const MODEL_TYPE: &str = "snzoo_resnet";
/// The model class named in `architectures` and `auto_map`.
pub const MODEL_CLASS: &str = "SnzooResNetForImageClassification";

/// `(file name, contents)` of the remote-code files.
pub const CODE_FILES: [(&str, &str); 3] = [
    ("configuration_snzoo.py", include_str!("configuration_snzoo.py")),
    ("modeling_snzoo.py", include_str!("modeling_snzoo.py")),
    ("image_processing_snzoo.py", include_str!("image_processing_snzoo.py")),
];

/// The `auto_map` of `config.json`.
pub fn model_auto_map() -> serde_json::Value {
    serde_json::json!({
        "AutoConfig": "configuration_snzoo.SnzooResNetConfig",
        "AutoModelForImageClassification": format!("modeling_snzoo.{MODEL_CLASS}"),
    })
}

/// `preprocessor_config.json` for a protocol (read by `image_processing_snzoo.SnzooImageProcessor`).
///
/// A per-pixel mean protocol's mean image is written into it as nested lists (3 × crop × crop):
/// `AutoImageProcessor` builds the processor from this dictionary alone, without the folder's
/// path. The values are written as the f64 equal to each f32, so that parsing and narrowing gives
/// the f32 back exactly.
pub fn preprocessor_config(t: &EvalTransform) -> serde_json::Value {
    let mean_image = t.mean_image.as_ref().filter(|_| t.per_pixel_mean).map(|m| {
        let row = |r: &[f32]| serde_json::Value::from(r.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>());
        let plane = |p: &[f32]| serde_json::Value::from(p.chunks(m.size.max(1)).map(row).collect::<Vec<_>>());
        serde_json::Value::from(m.data.chunks((m.size * m.size).max(1)).map(plane).collect::<Vec<_>>())
    });
    serde_json::json!({
        "image_processor_type": "SnzooImageProcessor",
        "auto_map": {"AutoImageProcessor": "image_processing_snzoo.SnzooImageProcessor"},
        "pipeline": t.pipeline.as_str(),
        "resize_shorter_side": t.resize,
        "crop_size": t.crop,
        "interpolation": t.interpolation.as_str(),
        "image_mean": t.mean,
        "image_std": t.std,
        "channel_order": t.channel_order,
        "value_range": t.value_range,
        "mean_image": mean_image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use snzoo_preprocess::MeanImage;

    #[test]
    fn mean_image_is_written_as_nested_lists_that_parse_back_exactly() {
        let size = 3;
        let data: Vec<f32> = (0..3 * size * size).map(|i| 100.0 + i as f32 / 7.0).collect();
        let mut t = EvalTransform { crop: size, per_pixel_mean: true, std: [1.0; 3], ..EvalTransform::default() };
        t.mean_image = Some(std::sync::Arc::new(MeanImage { size, data: data.clone() }));
        let text = serde_json::to_string(&preprocessor_config(&t)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let m = &v["mean_image"];
        for c in 0..3 {
            for y in 0..size {
                for x in 0..size {
                    let got = m[c][y][x].as_f64().unwrap() as f32;
                    assert_eq!(got.to_bits(), data[(c * size + y) * size + x].to_bits());
                }
            }
        }
        // Protocols without a mean image write null.
        assert!(preprocessor_config(&EvalTransform::default())["mean_image"].is_null());
    }
}
