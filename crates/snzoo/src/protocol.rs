//! Evaluation protocols: a model card's `[eval]` section, or the one recorded in a converted
//! file, as the transform that feeds the model (`classify`, `eval`, `finetune --val`, `export`).

use std::collections::HashMap;

use std::path::Path;

use snzoo_preprocess::{ChannelOrder, EvalTransform, MeanImage, Pipeline, ValueRange, IMAGENET_MEAN, IMAGENET_STD};
use snzoo_zoo::ModelCard;

use crate::{Error, Result};

/// The metadata key under which a converted file records its protocol (JSON).
pub const METADATA_KEY: &str = "eval_protocol";

/// The tensor under which a converted file stores its protocol's per-pixel mean image
/// (`[3, crop, crop]` f32, in the input tensor's channel order). Not part of the network.
pub const MEAN_IMAGE_KEY: &str = "eval.mean_image";

/// Whether a tensor name is the protocol's rather than the network's.
pub fn is_protocol_tensor(name: &str) -> bool {
    name.starts_with("eval.")
}

/// The protocol a card states.
pub fn from_card(card: &ModelCard) -> Result<EvalTransform> {
    let e = &card.eval;
    let bad = |m: String| Error::Other(format!("model card {}: [eval]: {m}", card.name));
    let t = EvalTransform {
        resize: e.resize,
        crop: e.crop,
        interpolation: e.interpolation.parse().map_err(bad)?,
        mean: e.mean.unwrap_or(IMAGENET_MEAN),
        std: e.std.unwrap_or(IMAGENET_STD),
        channel_order: match e.channel_order.as_deref() {
            None | Some("rgb") => ChannelOrder::Rgb,
            Some("bgr") => ChannelOrder::Bgr,
            Some(o) => return Err(bad(format!("unknown channel_order `{o}` (rgb or bgr)"))),
        },
        value_range: match e.value_range.as_deref() {
            None | Some("unit") => ValueRange::Unit,
            Some("byte") => ValueRange::Byte,
            Some(r) => return Err(bad(format!("unknown value_range `{r}` (unit or byte)"))),
        },
        pipeline: e.pipeline.as_deref().map(str::parse::<Pipeline>).transpose().map_err(bad)?.unwrap_or_default(),
        per_pixel_mean: e.per_pixel_mean,
        mean_image: None,
    };
    check_before_mean_image(&t).map_err(bad)?;
    Ok(t)
}

/// [`EvalTransform::check`] of a protocol whose mean image, if it needs one, comes later (with
/// the weights).
fn check_before_mean_image(t: &EvalTransform) -> std::result::Result<(), String> {
    let mut probe = t.clone();
    if probe.per_pixel_mean && probe.mean_image.is_none() {
        probe.mean_image = Some(std::sync::Arc::new(MeanImage { size: t.crop, data: vec![0.0; 3 * t.crop * t.crop] }));
    }
    probe.check()
}

/// Reads a mean image (Caffe `.binaryproto` or `.npy`; `[1, 3, S, S]` or `[3, S, S]`), for a
/// protocol with crop `S` if one is given, as the [`MEAN_IMAGE_KEY`] tensor.
pub fn read_mean_image(path: &Path, protocol: Option<&EvalTransform>) -> Result<snzoo_convert::Tensor> {
    let bad = |m: String| Error::Other(format!("mean image {}: {m}", snzoo_fs::display_path(path)));
    let is_npy = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let (shape, values): (Vec<usize>, Vec<f32>) = if is_npy {
        snzoo_convert::npy::read_npy_f32(path).map_err(|e| bad(e.to_string()))?
    } else {
        let t = snzoo_convert::caffe::read_binaryproto(path).map_err(|e| bad(e.to_string()))?;
        (t.shape.clone(), t.to_f64_vec().into_iter().map(|v| v as f32).collect())
    };
    let dims: Vec<usize> = shape.iter().copied().skip_while(|&d| d == 1).collect();
    let [3, h, w] = dims.as_slice() else { return Err(bad(format!("shape {shape:?}; a 3-channel image expected"))) };
    if h != w {
        return Err(bad(format!("{h}×{w}; a square mean image (the crop's size) expected")));
    }
    if let Some(t) = protocol {
        if *h != t.crop {
            return Err(bad(format!("{h}×{w}, but the protocol crops {0}×{0}", t.crop)));
        }
    }
    if let Some(v) = values.iter().find(|v| !v.is_finite()) {
        return Err(bad(format!("holds {v}")));
    }
    Ok(snzoo_convert::Tensor {
        dtype: snzoo_convert::DType::F32,
        shape: vec![3, *h, *w],
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    })
}

/// Attaches the mean image stored in a weights file to a protocol that needs one.
pub fn attach_mean_image(t: &mut EvalTransform, vb: &candle_nn::VarBuilder) -> Result<()> {
    if !t.per_pixel_mean {
        return Ok(());
    }
    let s = t.crop;
    let data = vb.get((3, s, s), MEAN_IMAGE_KEY).and_then(|x| x.flatten_all()?.to_vec1::<f32>()).map_err(|_| {
        Error::Other(format!(
            "the protocol subtracts a {s}×{s} mean image, and the weights hold none (`{MEAN_IMAGE_KEY}`): convert with --mean-image"
        ))
    })?;
    t.mean_image = Some(std::sync::Arc::new(MeanImage { size: s, data }));
    t.check().map_err(Error::Invalid)?;
    Ok(())
}

/// The protocol recorded in a converted file's metadata, if any.
pub fn from_metadata(meta: &HashMap<String, String>) -> Option<Result<EvalTransform>> {
    let text = meta.get(METADATA_KEY)?;
    Some(
        serde_json::from_str::<EvalTransform>(text)
            .map_err(|e| e.to_string())
            .and_then(|t| check_before_mean_image(&t).map(|_| t))
            .map_err(|e| Error::Other(format!("the recorded evaluation protocol is invalid: {e}"))),
    )
}

/// Records a protocol in metadata.
pub fn to_metadata(t: &EvalTransform, meta: &mut HashMap<String, String>) {
    meta.insert(METADATA_KEY.into(), serde_json::to_string(t).expect("transforms serialise"));
}

/// The protocol of a model: its card's, else the one its file records, else the SN release's
/// (torchvision's ImageNet evaluation: Resize(256) bilinear, CenterCrop(224), ImageNet mean/std).
pub fn resolve(card: Option<&ModelCard>, meta: &HashMap<String, String>) -> Result<EvalTransform> {
    if let Some(c) = card {
        return from_card(c);
    }
    from_metadata(meta).unwrap_or_else(|| Ok(EvalTransform::default()))
}

/// `crop / resize`, or the card's stated crop fraction.
pub fn crop_pct(card: Option<&ModelCard>, t: &EvalTransform) -> f64 {
    card.and_then(|c| c.eval.crop_pct).unwrap_or(t.crop as f64 / t.resize as f64)
}

/// A short description: `Resize(238, bicubic) + CenterCrop(224), RGB 0-1, mean [...] std [...]`.
pub fn describe(t: &EvalTransform) -> String {
    let pipeline = match t.pipeline {
        Pipeline::Torchvision => String::new(),
        p => format!("{} pipeline: ", p.as_str()),
    };
    let mean = if t.per_pixel_mean { "a per-pixel mean image".to_string() } else { format!("{:?}", t.mean) };
    format!(
        "{pipeline}Resize({}, {}) + CenterCrop({}), {} {}, mean {}, std {:?}",
        t.resize,
        t.interpolation.as_str(),
        t.crop,
        match t.channel_order {
            ChannelOrder::Rgb => "RGB",
            ChannelOrder::Bgr => "BGR",
        },
        match t.value_range {
            ValueRange::Unit => "0-1",
            ValueRange::Byte => "0-255",
        },
        mean,
        t.std
    )
}
