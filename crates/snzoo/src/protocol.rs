//! Evaluation protocols: a model card's `[eval]` section, or the one recorded in a converted
//! file, as the transform that feeds the model (`classify`, `eval`, `finetune --val`, `export`).

use std::collections::HashMap;

use snzoo_preprocess::{ChannelOrder, EvalTransform, ValueRange, IMAGENET_MEAN, IMAGENET_STD};
use snzoo_zoo::ModelCard;

use crate::{Error, Result};

/// The metadata key under which a converted file records its protocol (JSON).
pub const METADATA_KEY: &str = "eval_protocol";

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
    };
    t.check().map_err(bad)?;
    Ok(t)
}

/// The protocol recorded in a converted file's metadata, if any.
pub fn from_metadata(meta: &HashMap<String, String>) -> Option<Result<EvalTransform>> {
    let text = meta.get(METADATA_KEY)?;
    Some(
        serde_json::from_str::<EvalTransform>(text)
            .map_err(|e| e.to_string())
            .and_then(|t| t.check().map(|_| t))
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
    format!(
        "Resize({}, {}) + CenterCrop({}), {} {}, mean {:?}, std {:?}",
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
        t.mean,
        t.std
    )
}
