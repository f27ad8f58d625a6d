//! ONNX export of a model ([`snzoo_onnx`]) with its evaluation protocol and class names in the
//! model's `metadata_props`:
//!
//! | key | value |
//! |---|---|
//! | `snzoo.arch`, `snzoo.layout` | the architecture name and layout (`torchvision`, `slim`, …) |
//! | `snzoo.eval_protocol` | the protocol as JSON (as converted files record it) |
//! | `snzoo.class_names` | a JSON list of the class names (ImageNet-1k models) |
//! | `snzoo.model_card`, `snzoo.source_sha256` | where the weights came from |

use crate::{Error, Model, Result};

/// The opset written by default.
pub const DEFAULT_OPSET: i64 = 17;

/// The ONNX model (serialized) of `model`, at `opset`.
pub fn export_onnx(model: &Model, opset: i64) -> Result<Vec<u8>> {
    let state = crate::weights::Weights::tensors(model.weights_path(), &candle_core::Device::Cpu)?;
    let mut weights = snzoo_onnx::Weights::new();
    for (k, t) in &state.tensors {
        if crate::protocol::is_protocol_tensor(k) {
            continue;
        }
        let data = t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        weights.insert(k.clone(), snzoo_onnx::Weight { shape: t.dims().to_vec(), data });
    }
    let config = model.config();
    let t = model.transform();
    let mut metadata = vec![
        ("snzoo.arch".to_string(), config.arch_name()),
        ("snzoo.layout".to_string(), config.style.name().to_string()),
        (format!("snzoo.{}", crate::protocol::METADATA_KEY), serde_json::to_string(t).expect("transforms serialise")),
    ];
    if config.num_classes == snzoo_imagenet::NUM_CLASSES {
        let names: Vec<&str> = snzoo_imagenet::classes().iter().map(|c| c.name).collect();
        metadata.push(("snzoo.class_names".into(), serde_json::to_string(&names).expect("strings serialise")));
    }
    if let Some(c) = model.card() {
        metadata.push(("snzoo.model_card".into(), c.name.clone()));
    }
    if let Some(s) = state.metadata.get("source_sha256") {
        metadata.push(("snzoo.source_sha256".into(), s.clone()));
    }
    if t.per_pixel_mean {
        metadata.push((
            "snzoo.mean_image".into(),
            "the input is the crop minus a per-pixel mean image (stored with the safetensors weights as `eval.mean_image`)".into(),
        ));
    }
    let options = snzoo_onnx::ExportOptions {
        opset,
        image_size: t.crop,
        metadata,
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph_name: config.arch_name(),
    };
    let proto = snzoo_onnx::export_resnet(config, &weights, &options).map_err(|e| Error::Invalid(format!("ONNX export: {e}")))?;
    Ok(snzoo_onnx::to_bytes(&proto))
}
