//! The ImageNet evaluation preprocessing of torchvision + PIL, exactly.
//!
//! ```text
//! PIL.Image.open(f).convert('RGB')          -> decode_rgb
//! transforms.Resize(256)                     -> resize_shorter_side (Pillow bilinear, antialiased)
//! transforms.CenterCrop(224)                 -> center_crop
//! transforms.ToTensor(), Normalize(mean, std) -> to_normalized_chw
//! ```
//!
//! Every step works on 8-bit pixels as PIL does, and the float steps are done in f32 in torch's
//! order, so the output tensor is bit-identical to torchvision's when the decoded pixels are.

mod decode;
mod resize;

pub use decode::{decode_rgb, DecodeError, RgbImage, MAX_PIXELS};
pub use resize::resize_bilinear;

/// ImageNet channel means (torchvision's `Normalize` defaults in the reference evaluation).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Output size of torchvision's `Resize(size)` for an int size: the shorter side becomes `size`,
/// the longer `int(size * long / short)` (truncated).
pub fn resized_dims(width: usize, height: usize, size: usize) -> (usize, usize) {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    let new_long = ((size * long) as f64 / short as f64) as usize;
    if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// torchvision `Resize(size)` on a PIL image with bilinear interpolation.
pub fn resize_shorter_side(img: &RgbImage, size: usize) -> RgbImage {
    let (w, h) = resized_dims(img.width, img.height, size);
    resize_bilinear(img, w, h)
}

/// torchvision `CenterCrop(size)`: zero padding when the image is smaller, then the crop whose
/// top-left corner is `int(round((dim - size) / 2.0))` (Python rounds halves to even).
pub fn center_crop(img: &RgbImage, size: usize) -> RgbImage {
    let padded;
    let img = if img.width < size || img.height < size {
        let (pw, ph) = (img.width.max(size), img.height.max(size));
        let left = if img.width < size { (size - img.width) / 2 } else { 0 };
        let top = if img.height < size { (size - img.height) / 2 } else { 0 };
        let mut p = RgbImage::new(pw, ph);
        for y in 0..img.height {
            let dst = ((y + top) * pw + left) * 3;
            p.data[dst..dst + img.width * 3].copy_from_slice(&img.data[y * img.width * 3..(y + 1) * img.width * 3]);
        }
        padded = p;
        &padded
    } else {
        img
    };
    let top = ((img.height - size) as f64 / 2.0).round_ties_even() as usize;
    let left = ((img.width - size) as f64 / 2.0).round_ties_even() as usize;
    let mut out = RgbImage::new(size, size);
    for y in 0..size {
        let src = ((y + top) * img.width + left) * 3;
        out.data[y * size * 3..(y + 1) * size * 3].copy_from_slice(&img.data[src..src + size * 3]);
    }
    out
}

/// `ToTensor()` then `Normalize(mean, std)`: CHW f32, `(v / 255 - mean) / std` in f32.
pub fn to_normalized_chw(img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let n = img.width * img.height;
    let mut out = vec![0f32; 3 * n];
    // One table per channel: the same f32 operations as torch, done once per 8-bit value.
    let tables: Vec<[f32; 256]> = (0..3)
        .map(|c| std::array::from_fn(|v| (v as f32 / 255.0 - mean[c]) / std[c]))
        .collect();
    for (i, px) in img.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * n + i] = tables[c][px[c] as usize];
        }
    }
    out
}

/// The evaluation preprocessing: resize the shorter side, center-crop, normalize.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalTransform {
    pub resize: usize,
    pub crop: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for EvalTransform {
    /// The SN release's protocol: short side 256, center crop 224, ImageNet mean/std.
    fn default() -> Self {
        Self { resize: 256, crop: 224, mean: IMAGENET_MEAN, std: IMAGENET_STD }
    }
}

/// A preprocessing failure.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("resizing to {0}×{1} pixels would exceed the {MAX_PIXELS}-pixel limit (extreme aspect ratio)")]
    TooLarge(usize, usize),
}

impl EvalTransform {
    /// The 8-bit crop (before `ToTensor`) of a decoded image.
    pub fn crop_rgb(&self, img: &RgbImage) -> Result<RgbImage, PreprocessError> {
        let (w, h) = resized_dims(img.width, img.height, self.resize);
        if (w as u64) * (h as u64) > MAX_PIXELS {
            return Err(PreprocessError::TooLarge(w, h));
        }
        Ok(center_crop(&resize_bilinear(img, w, h), self.crop))
    }

    /// The normalized CHW tensor (3 × crop × crop) of an encoded image file's bytes.
    pub fn apply(&self, bytes: &[u8]) -> Result<Vec<f32>, PreprocessError> {
        let img = decode_rgb(bytes)?;
        Ok(to_normalized_chw(&self.crop_rgb(&img)?, self.mean, self.std))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resized_dims_truncate_like_torchvision() {
        assert_eq!(resized_dims(500, 375, 256), (341, 256));
        assert_eq!(resized_dims(375, 500, 256), (256, 341));
        assert_eq!(resized_dims(256, 256, 256), (256, 256));
        assert_eq!(resized_dims(1000, 60, 256), (4266, 256));
    }

    #[test]
    fn crop_offsets_round_half_to_even() {
        // width 227: (227 - 224) / 2 = 1.5 -> 2; width 225: 0.5 -> 0.
        let row = |w: usize| RgbImage { width: w, height: 224, data: (0..w * 224).flat_map(|i| [(i % w) as u8; 3]).collect() };
        assert_eq!(center_crop(&row(227), 224).data[0], 2);
        assert_eq!(center_crop(&row(225), 224).data[0], 0);
        assert_eq!(center_crop(&row(229), 224).data[0], 2); // 2.5 -> 2
    }

    #[test]
    fn small_images_are_zero_padded_centered() {
        let img = RgbImage { width: 2, height: 3, data: vec![9; 18] };
        let out = center_crop(&img, 5);
        // left = (5-2)//2 = 1, top = (5-3)//2 = 1
        let at = |x: usize, y: usize| out.data[(y * 5 + x) * 3];
        assert_eq!((at(0, 0), at(1, 1), at(2, 3), at(3, 3), at(1, 4)), (0, 9, 9, 0, 0));
    }
}
