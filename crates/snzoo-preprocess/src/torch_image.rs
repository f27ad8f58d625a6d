//! fb.resnet.torch's evaluation preprocessing in Lua Torch, bit for bit: `image.load` (8-bit
//! pixels times `(float)(1/255)`), `t.Scale(256)` (torch/image's bicubic `image.scale` in f32),
//! `t.ColorNormalize` and `t.CenterCrop(224)` (offset `⌈(dim − 224) / 2⌉`).
//!
//! `image.scale`'s bicubic (torch/image `generic/image.c`, `scaleCubic_rowcol`) resizes rows
//! first into an f32 temporary, then columns. Per axis of `S` source and `D` output samples:
//! `scale = (S − 1) / (D − 1)` in f32 (align corners; `S − 1` when D is 1); for `d < D − 1`,
//! `x = d · scale`, `i = ⌊x⌋`, `t = x − i`, neighbours `p0..p3` at `i − 1..i + 2` with linear
//! extrapolation past the edges (`2·p1 − p2`, `2·p2 − p1`), and
//! `p1 + 0.5·t·(a1 + t·(a2 + t·a3))` with `a1 = p2 − p0`, `a2 = 2p0 − 5p1 + 4p2 − p3`,
//! `a3 = 3(p1 − p2) + p3 − p0` — the polynomial in f32, the final line in f64 (the C source's
//! `0.5` is a double) rounded to f32; the last sample copies the source's last. No clamping, no
//! antialiasing. A single-sample source leaves Torch's last output sample unwritten (garbage);
//! here it repeats the sample, like the others.

use crate::{FloatImage, RgbImage};

/// `(float)(1.0 / 255.0)`: `image.load`'s `img:mul(1/255)` with the constant cast to the
/// tensor's type.
pub const INV_255: f32 = (1.0f64 / 255.0) as f32;

/// `image.load(path, 3, 'float')`: the 8-bit pixels times `INV_255`, planar RGB.
pub fn load_float(img: &RgbImage) -> FloatImage {
    let mut out = FloatImage::new(img.width, img.height);
    let plane = img.width * img.height;
    for (i, px) in img.data.chunks_exact(3).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            out.data[c * plane + i] = f32::from(v) * INV_255;
        }
    }
    out
}

/// One line of `scaleCubic_rowcol`: `src` (stride `ss`) into `dst` (stride `ds`).
fn rowcol(src: &[f32], ss: usize, s_len: usize, dst: &mut [f32], ds: usize, d_len: usize) {
    if d_len == s_len {
        for i in 0..d_len {
            dst[i * ds] = src[i * ss];
        }
        return;
    }
    if s_len == 1 {
        for i in 0..d_len {
            dst[i * ds] = src[0];
        }
        return;
    }
    let scale = if d_len == 1 { (s_len - 1) as f32 } else { (s_len - 1) as f32 / (d_len - 1) as f32 };
    for di in 0..d_len - 1 {
        let sf = di as f32 * scale;
        let si = sf as usize;
        let t = sf - si as f32;
        let p1 = src[si * ss];
        let p2 = src[(si + 1) * ss];
        let p0 = if si > 0 { src[(si - 1) * ss] } else { 2.0 * p1 - p2 };
        let p3 = if si + 2 < s_len { src[(si + 2) * ss] } else { 2.0 * p2 - p1 };
        let a1 = p2 - p0;
        let a2 = 2.0 * p0 - 5.0 * p1 + 4.0 * p2 - p3;
        let a3 = 3.0 * (p1 - p2) + p3 - p0;
        let inner = a1 + t * (a2 + t * a3);
        dst[di * ds] = (f64::from(p1) + 0.5 * f64::from(t) * f64::from(inner)) as f32;
    }
    dst[(d_len - 1) * ds] = src[(s_len - 1) * ss];
}

/// `image.scale(src, width, height, 'bicubic')` of a planar float image.
pub fn scale_bicubic(src: &FloatImage, width: usize, height: usize) -> FloatImage {
    FloatImage { width, height, data: scale_bicubic_planes(&src.data, 3, src.width, src.height, width, height) }
}

/// [`scale_bicubic`] of `channels` planes of `sw`×`sh` (CHW) to `width`×`height`.
pub fn scale_bicubic_planes(src: &[f32], channels: usize, sw: usize, sh: usize, width: usize, height: usize) -> Vec<f32> {
    let mut out = vec![0f32; channels * width * height];
    let mut tmp = vec![0f32; sh * width];
    for c in 0..channels {
        let plane = &src[c * sw * sh..(c + 1) * sw * sh];
        for y in 0..sh {
            rowcol(&plane[y * sw..], 1, sw, &mut tmp[y * width..], 1, width);
        }
        let dst = &mut out[c * width * height..(c + 1) * width * height];
        for x in 0..width {
            rowcol(&tmp[x..], width, sh, &mut dst[x..], width, height);
        }
    }
    out
}

/// `t.Scale(size)`'s target, or `None` when the short side already is `size`:
/// `image.scale(input, size, h/w·size)` (or the transpose), the long side truncated.
pub fn scaled_dims(width: usize, height: usize, size: usize) -> Option<(usize, usize)> {
    let (w, h) = (width, height);
    if (w <= h && w == size) || (h <= w && h == size) {
        return None;
    }
    Some(if w < h { (size, (h as f64 / w as f64 * size as f64) as usize) } else { ((w as f64 / h as f64 * size as f64) as usize, size) })
}

/// `t.CenterCrop`'s offset: `math.ceil((dim − crop) / 2)`.
pub fn crop_offset(dim: usize, crop: usize) -> usize {
    dim.saturating_sub(crop).div_ceil(2)
}
