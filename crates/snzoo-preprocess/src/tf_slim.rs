//! TF-Slim's evaluation preprocessing (`preprocessing/vgg_preprocessing.py`,
//! `preprocess_for_eval` as of the 2016 release), bit for bit.
//!
//! * `_smallest_size_at_least`: `scale = 256 / smaller` in f32, each side `to_int32(side · scale)`
//!   (truncated: a 427×640 photo becomes 255×383; later slim code rounds).
//! * `tf.image.resize_bilinear(align_corners=False)` with TF's legacy (not half-pixel) scaler, on
//!   the 8-bit pixels, into f32: `in = out · (in_size / out_size)` (f32), `lo = ⌊in⌋`,
//!   `hi = min(lo + 1, size − 1)`, `t = in − lo`; `top = tl + (tr − tl)·tx`,
//!   `bottom = bl + (br − bl)·tx`, `out = top + (bottom − top)·ty`, all in f32.
//! * `_central_crop`: offsets `(dim − 224) / 2` (integer division), on the floats.
//! * `_mean_image_subtraction`: `x − [123.68, 116.78, 103.94]` (RGB, 0–255) — the protocol's
//!   normalization with std 1.

use crate::{FloatImage, RgbImage};

/// The size slim resizes a `width`×`height` image to so that its smaller side is `side`.
pub fn resized_dims(width: usize, height: usize, side: usize) -> (usize, usize) {
    let (w, h) = (width as f32, height as f32);
    let scale = if h > w { side as f32 / w } else { side as f32 / h };
    ((w * scale) as usize, (h * scale) as usize)
}

/// One axis of the legacy bilinear resize: (low index, high index, fraction) per output.
fn axis(out: usize, input: usize) -> Vec<(usize, usize, f32)> {
    let scale = input as f32 / out as f32;
    (0..out)
        .map(|o| {
            let x = o as f32 * scale;
            let lo = x.floor() as usize;
            ((lo).min(input - 1), (lo + 1).min(input - 1), x - lo as f32)
        })
        .collect()
}

/// `tf.compat.v1.image.resize_bilinear(img, [height, width], align_corners=False)` of an
/// 8-bit image: f32 pixels (planar RGB).
pub fn resize_bilinear(img: &RgbImage, width: usize, height: usize) -> FloatImage {
    let xs = axis(width, img.width);
    let ys = axis(height, img.height);
    let mut out = FloatImage::new(width, height);
    let plane = width * height;
    let px = |y: usize, x: usize, c: usize| f32::from(img.data[(y * img.width + x) * 3 + c]);
    for (oy, &(y0, y1, ty)) in ys.iter().enumerate() {
        for (ox, &(x0, x1, tx)) in xs.iter().enumerate() {
            for c in 0..3 {
                let (tl, tr, bl, br) = (px(y0, x0, c), px(y0, x1, c), px(y1, x0, c), px(y1, x1, c));
                let top = tl + (tr - tl) * tx;
                let bottom = bl + (br - bl) * tx;
                out.data[c * plane + oy * width + ox] = top + (bottom - top) * ty;
            }
        }
    }
    out
}

/// Slim's central crop offset: `(dim − crop) / 2` (integer division).
pub fn crop_offset(dim: usize, crop: usize) -> usize {
    dim.saturating_sub(crop) / 2
}
