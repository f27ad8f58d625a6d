//! The ImageNet evaluation preprocessing of torchvision (and timm) with PIL, exactly.
//!
//! ```text
//! PIL.Image.open(f).convert('RGB')          -> decode_rgb
//! transforms.Resize(256[, BICUBIC])          -> resize (Pillow bilinear or bicubic, antialiased),
//!                                               to resized_dims
//! transforms.CenterCrop(224)                 -> center_crop
//! transforms.ToTensor(), Normalize(mean, std) -> to_normalized_chw
//! ```
//!
//! [`EvalTransform`] is one evaluation protocol (a model card's `[eval]` section): resize size
//! and filter, crop, mean and std, channel order and value range. Every step works on 8-bit
//! pixels as PIL does, and the float steps are done in f32 in torch's order, so the output tensor
//! is bit-identical to torchvision's when the decoded pixels are.
//!
//! The BN baselines of other frameworks were evaluated with those frameworks' own image code;
//! [`Pipeline`] selects it, each ported bit for bit:
//!
//! | pipeline | resize | crop offset | values |
//! |---|---|---|---|
//! | `torchvision` | Pillow, antialiased, 8-bit | `round((d − c) / 2)` | `(v/255 − mean) / std` |
//! | `tf-slim` ([`tf_slim`]) | `tf.image.resize_bilinear`, f32 | `(d − c) // 2` | `v − mean` (0–255) |
//! | `caffe` ([`opencv`]) | `cv2.resize` INTER_LINEAR, 8-bit | `(d − c) // 2` | `v − mean image` (BGR, 0–255) |
//! | `fbtorch` ([`torch_image`]) | torch `image.scale` bicubic, f32 | `⌈(d − c) / 2⌉` | `(v·(1/255) − mean) / std` |

mod decode;
pub mod opencv;
mod resize;
pub mod tf_slim;
pub mod torch_image;

pub use decode::{decode_rgb, DecodeError, RgbImage, MAX_PIXELS};
pub use resize::{resize, resize_bilinear, resize_window, Filter};

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
    normalize(img, mean, std, ChannelOrder::Rgb, ValueRange::Unit)
}

/// The input tensor of an 8-bit crop: CHW f32 in `order`, each value `(v' − mean) / std` with
/// `v' = v / 255` ([`ValueRange::Unit`], torchvision's `ToTensor`) or `v` ([`ValueRange::Byte`]),
/// in f32 in that order of operations; `mean` and `std` are per output channel.
pub fn normalize(img: &RgbImage, mean: [f32; 3], std: [f32; 3], order: ChannelOrder, range: ValueRange) -> Vec<f32> {
    let n = img.width * img.height;
    let mut out = vec![0f32; 3 * n];
    // One table per channel: the same f32 operations as torch, done once per 8-bit value.
    let tables: Vec<[f32; 256]> = (0..3)
        .map(|c| {
            std::array::from_fn(|v| {
                let v = match range {
                    ValueRange::Unit => v as f32 / 255.0,
                    ValueRange::Byte => v as f32,
                };
                (v - mean[c]) / std[c]
            })
        })
        .collect();
    let source = match order {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    for (i, px) in img.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * n + i] = tables[c][px[source[c]] as usize];
        }
    }
    out
}

/// The order of the channels of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    #[default]
    Rgb,
    /// Caffe's models.
    Bgr,
}

/// The range of the pixel values before the mean is subtracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueRange {
    /// 0–1: torchvision's `ToTensor` (v / 255).
    #[default]
    Unit,
    /// 0–255: Caffe's and TF-slim's VGG preprocessing.
    Byte,
}

/// The resampling filter of the resize (Pillow's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    #[default]
    Bilinear,
    Bicubic,
}

impl Interpolation {
    pub fn filter(self) -> Filter {
        match self {
            Interpolation::Bilinear => Filter::Bilinear,
            Interpolation::Bicubic => Filter::Bicubic,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Interpolation::Bilinear => "bilinear",
            Interpolation::Bicubic => "bicubic",
        }
    }
}

impl std::str::FromStr for Interpolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bilinear" => Ok(Interpolation::Bilinear),
            "bicubic" => Ok(Interpolation::Bicubic),
            _ => Err(format!("unknown interpolation `{s}` (bilinear or bicubic)")),
        }
    }
}

/// Whose image code an evaluation protocol runs (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pipeline {
    /// torchvision with PIL (the SN release, torchvision, timm).
    #[default]
    Torchvision,
    /// TF-Slim's `vgg_preprocessing` (2016) with `tf.image`.
    TfSlim,
    /// Caffe's evaluation with OpenCV (MSRA's ResNets): `cv2.resize`, a per-pixel mean image.
    Caffe,
    /// fb.resnet.torch with Lua Torch's `image` package.
    Fbtorch,
}

impl Pipeline {
    pub fn as_str(self) -> &'static str {
        match self {
            Pipeline::Torchvision => "torchvision",
            Pipeline::TfSlim => "tf-slim",
            Pipeline::Caffe => "caffe",
            Pipeline::Fbtorch => "fbtorch",
        }
    }
}

impl std::str::FromStr for Pipeline {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "torchvision" => Pipeline::Torchvision,
            "tf-slim" => Pipeline::TfSlim,
            "caffe" => Pipeline::Caffe,
            "fbtorch" => Pipeline::Fbtorch,
            _ => return Err(format!("unknown pipeline `{s}` (torchvision, tf-slim, caffe or fbtorch)")),
        })
    }
}

/// A planar (CHW) RGB image of f32 values.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl FloatImage {
    pub fn new(width: usize, height: usize) -> Self {
        Self { width, height, data: vec![0.0; 3 * width * height] }
    }

    /// The rectangle at (`left`, `top`) of `width`×`height` (inside the image).
    pub fn crop(&self, left: usize, top: usize, width: usize, height: usize) -> FloatImage {
        let mut out = FloatImage::new(width, height);
        for c in 0..3 {
            for y in 0..height {
                let src = c * self.width * self.height + (y + top) * self.width + left;
                let dst = c * width * height + y * width;
                out.data[dst..dst + width].copy_from_slice(&self.data[src..src + width]);
            }
        }
        out
    }
}

/// A centre crop before normalization: 8-bit pixels (Pillow, OpenCV) or f32 values (TF, Lua
/// Torch), RGB.
#[derive(Debug, Clone, PartialEq)]
pub enum Crop {
    U8(RgbImage),
    F32(FloatImage),
}

/// A per-pixel mean (Caffe's mean image), `3 × crop × crop`, in the input tensor's channel order.
#[derive(Debug, Clone, PartialEq)]
pub struct MeanImage {
    pub size: usize,
    pub data: Vec<f32>,
}

/// An evaluation protocol: resize the shorter side (Pillow's filter), center-crop, normalize.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalTransform {
    /// The shorter side after the resize (the longer one is truncated, as torchvision's `Resize`).
    pub resize: usize,
    pub crop: usize,
    #[serde(default)]
    pub interpolation: Interpolation,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    #[serde(default)]
    pub channel_order: ChannelOrder,
    #[serde(default)]
    pub value_range: ValueRange,
    /// Whose image code resizes and crops.
    #[serde(default)]
    pub pipeline: Pipeline,
    /// The protocol subtracts a per-pixel mean image (given by [`mean_image`](Self::mean_image))
    /// instead of `mean`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_pixel_mean: bool,
    /// The mean image of a `per_pixel_mean` protocol (stored with the weights, not in the JSON).
    #[serde(skip)]
    pub mean_image: Option<std::sync::Arc<MeanImage>>,
}

impl Default for EvalTransform {
    /// The SN release's protocol (torchvision's ImageNet evaluation): short side 256 (bilinear),
    /// center crop 224, RGB in 0–1, ImageNet mean/std.
    fn default() -> Self {
        Self {
            resize: 256,
            crop: 224,
            interpolation: Interpolation::Bilinear,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            channel_order: ChannelOrder::Rgb,
            value_range: ValueRange::Unit,
            pipeline: Pipeline::Torchvision,
            per_pixel_mean: false,
            mean_image: None,
        }
    }
}

/// A preprocessing failure.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("resizing to {0}×{1} pixels would exceed the {MAX_PIXELS}-pixel limit (extreme aspect ratio)")]
    TooLarge(usize, usize),
    #[error("a {0}×{1} image is too small to resize")]
    TooSmall(usize, usize),
    #[error("the image resizes to {width}×{height}, smaller than the {crop}×{crop} crop (this pipeline does not pad)")]
    SmallerThanCrop { width: usize, height: usize, crop: usize },
    #[error("the {0} pipeline crops floats, not 8-bit pixels")]
    NotEightBit(&'static str),
}

impl EvalTransform {
    /// The centre crop (before normalization) of a decoded image, by this protocol's pipeline.
    pub fn crop_image(&self, img: &RgbImage) -> Result<Crop, PreprocessError> {
        let (w, h) = match self.pipeline {
            Pipeline::Torchvision => resized_dims(img.width, img.height, self.resize),
            Pipeline::TfSlim => tf_slim::resized_dims(img.width, img.height, self.resize),
            Pipeline::Caffe => opencv::resized_dims(img.width, img.height, self.resize),
            Pipeline::Fbtorch => torch_image::scaled_dims(img.width, img.height, self.resize).unwrap_or((img.width, img.height)),
        };
        if (w as u64) * (h as u64) > MAX_PIXELS {
            return Err(PreprocessError::TooLarge(w, h));
        }
        if w == 0 || h == 0 {
            return Err(PreprocessError::TooSmall(img.width, img.height));
        }
        let c = self.crop;
        let fits = |w: usize, h: usize| {
            if w < c || h < c {
                Err(PreprocessError::SmallerThanCrop { width: w, height: h, crop: c })
            } else {
                Ok(())
            }
        };
        Ok(match self.pipeline {
            // Only the crop's pixels of the resize are computed (bit-identical to cropping the
            // whole resize); an image smaller than the crop is padded as torchvision pads it.
            Pipeline::Torchvision if w >= c && h >= c => {
                let offset = |d: usize| ((d - c) as f64 / 2.0).round_ties_even() as usize;
                Crop::U8(resize_window(img, (w, h), self.interpolation.filter(), (offset(w), offset(h)), (c, c)))
            }
            Pipeline::Torchvision => Crop::U8(center_crop(&resize(img, w, h, self.interpolation.filter()), c)),
            Pipeline::Caffe => {
                fits(w, h)?;
                let r = opencv::resize_linear(img, w, h);
                Crop::U8(crop(&r, opencv::crop_offset(w, c), opencv::crop_offset(h, c), c, c))
            }
            Pipeline::TfSlim => {
                fits(w, h)?;
                let r = tf_slim::resize_bilinear(img, w, h);
                Crop::F32(r.crop(tf_slim::crop_offset(w, c), tf_slim::crop_offset(h, c), c, c))
            }
            Pipeline::Fbtorch => {
                fits(w, h)?;
                let x = torch_image::load_float(img);
                let r = if (w, h) == (img.width, img.height) { x } else { torch_image::scale_bicubic(&x, w, h) };
                Crop::F32(r.crop(torch_image::crop_offset(w, c), torch_image::crop_offset(h, c), c, c))
            }
        })
    }

    /// The 8-bit crop (before `ToTensor`) of a decoded image, for the 8-bit pipelines.
    pub fn crop_rgb(&self, img: &RgbImage) -> Result<RgbImage, PreprocessError> {
        match self.crop_image(img)? {
            Crop::U8(c) => Ok(c),
            Crop::F32(_) => Err(PreprocessError::NotEightBit(self.pipeline.as_str())),
        }
    }

    /// The input tensor (CHW f32) of a crop.
    pub fn normalize_crop(&self, crop: &Crop) -> Vec<f32> {
        let mut x = match crop {
            Crop::U8(img) => {
                if self.per_pixel_mean {
                    // The mean image replaces the channel mean (Caffe: `(v − mean[c, y, x]) · 1`).
                    normalize(img, [0.0; 3], self.std, self.channel_order, self.value_range)
                } else {
                    normalize(img, self.mean, self.std, self.channel_order, self.value_range)
                }
            }
            Crop::F32(img) => {
                // The float pipelines' values are already in their range: `(v − mean) / std`.
                let n = img.width * img.height;
                let source = match self.channel_order {
                    ChannelOrder::Rgb => [0, 1, 2],
                    ChannelOrder::Bgr => [2, 1, 0],
                };
                let mean = if self.per_pixel_mean { [0.0; 3] } else { self.mean };
                let mut out = vec![0f32; 3 * n];
                for c in 0..3 {
                    let src = &img.data[source[c] * n..(source[c] + 1) * n];
                    for (o, &v) in out[c * n..(c + 1) * n].iter_mut().zip(src) {
                        *o = (v - mean[c]) / self.std[c];
                    }
                }
                out
            }
        };
        if let (true, Some(m)) = (self.per_pixel_mean, &self.mean_image) {
            // (v − 0) / std is v exactly when std is 1, as the mean-image protocols have it.
            for (o, &m) in x.iter_mut().zip(&m.data) {
                *o -= m;
            }
        }
        x
    }

    /// The input tensor of an 8-bit crop.
    pub fn normalize(&self, crop: &RgbImage) -> Vec<f32> {
        self.normalize_crop(&Crop::U8(crop.clone()))
    }

    /// The normalized CHW tensor (3 × crop × crop) of an encoded image file's bytes.
    pub fn apply(&self, bytes: &[u8]) -> Result<Vec<f32>, PreprocessError> {
        let img = decode_rgb(bytes)?;
        Ok(self.normalize_crop(&self.crop_image(&img)?))
    }

    /// Checks that the protocol can run: positive sizes, finite values, non-zero std, a
    /// filter its pipeline has, and its mean image when it needs one.
    pub fn check(&self) -> Result<(), String> {
        if self.resize == 0 || self.crop == 0 || self.resize > 1 << 14 || self.crop > 1 << 14 {
            return Err(format!("resize {} and crop {} must be in 1..=16384", self.resize, self.crop));
        }
        if self.mean.iter().chain(&self.std).any(|v| !v.is_finite()) || self.std.contains(&0.0) {
            return Err(format!("mean {:?} and std {:?} must be finite, std non-zero", self.mean, self.std));
        }
        let filter = match self.pipeline {
            Pipeline::Torchvision => None,
            Pipeline::TfSlim | Pipeline::Caffe => Some(Interpolation::Bilinear),
            Pipeline::Fbtorch => Some(Interpolation::Bicubic),
        };
        if filter.is_some_and(|f| f != self.interpolation) {
            return Err(format!(
                "the {} pipeline resizes {}, not {}",
                self.pipeline.as_str(),
                filter.expect("some").as_str(),
                self.interpolation.as_str()
            ));
        }
        if self.per_pixel_mean {
            if self.std != [1.0; 3] {
                return Err("a per-pixel mean protocol divides by no std (std must be 1)".into());
            }
            match &self.mean_image {
                None => return Err("the protocol subtracts a mean image, and none was given (convert with --mean-image)".into()),
                Some(m) if m.size != self.crop || m.data.len() != 3 * m.size * m.size => {
                    return Err(format!("the mean image is {0}×{0}, the crop {1}×{1}", m.size, self.crop))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Crops the rectangle at (`left`, `top`) of `width`×`height` (inside the image).
pub fn crop(img: &RgbImage, left: usize, top: usize, width: usize, height: usize) -> RgbImage {
    let mut out = RgbImage::new(width, height);
    for y in 0..height {
        let src = ((y + top) * img.width + left) * 3;
        out.data[y * width * 3..(y + 1) * width * 3].copy_from_slice(&img.data[src..src + width * 3]);
    }
    out
}

/// Mirrors the image left to right.
pub fn flip_horizontal(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for y in 0..img.height {
        let row = &mut out.data[y * img.width * 3..(y + 1) * img.width * 3];
        for x in 0..img.width / 2 {
            for c in 0..3 {
                row.swap(x * 3 + c, (img.width - 1 - x) * 3 + c);
            }
        }
    }
    out
}

/// torchvision's training preprocessing: `RandomResizedCrop(size)` (scale 0.08–1, ratio 3/4–4/3,
/// ten tries then the central fallback, the crop resized with Pillow's bilinear filter),
/// `RandomHorizontalFlip()`, `ToTensor()`, `Normalize(mean, std)`. The random numbers come from
/// the caller (uniform in [0, 1)), so any generator can drive it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainTransform {
    pub size: usize,
    pub scale: (f64, f64),
    pub ratio: (f64, f64),
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for TrainTransform {
    fn default() -> Self {
        Self { size: 224, scale: (0.08, 1.0), ratio: (3.0 / 4.0, 4.0 / 3.0), mean: IMAGENET_MEAN, std: IMAGENET_STD }
    }
}

impl TrainTransform {
    /// The crop rectangle (left, top, width, height), as torchvision's `RandomResizedCrop.get_params`.
    pub fn crop_params(&self, width: usize, height: usize, uniform: &mut dyn FnMut() -> f64) -> (usize, usize, usize, usize) {
        let area = (width * height) as f64;
        let (lr0, lr1) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = area * (self.scale.0 + (self.scale.1 - self.scale.0) * uniform());
            let aspect = (lr0 + (lr1 - lr0) * uniform()).exp();
            let w = (target * aspect).sqrt().round_ties_even() as usize;
            let h = (target / aspect).sqrt().round_ties_even() as usize;
            if w > 0 && w <= width && h > 0 && h <= height {
                let top = ((height - h + 1) as f64 * uniform()) as usize;
                let left = ((width - w + 1) as f64 * uniform()) as usize;
                return (left.min(width - w), top.min(height - h), w, h);
            }
        }
        let in_ratio = width as f64 / height as f64;
        let (w, h) = if in_ratio < self.ratio.0 {
            (width, ((width as f64 / self.ratio.0).round_ties_even() as usize).min(height))
        } else if in_ratio > self.ratio.1 {
            (((height as f64 * self.ratio.1).round_ties_even() as usize).min(width), height)
        } else {
            (width, height)
        };
        ((width - w) / 2, (height - h) / 2, w, h)
    }

    /// The normalized CHW tensor of one augmented sample of a decoded image.
    pub fn apply(&self, img: &RgbImage, uniform: &mut dyn FnMut() -> f64) -> Vec<f32> {
        let (left, top, w, h) = self.crop_params(img.width, img.height, uniform);
        let mut out = resize_bilinear(&crop(img, left, top, w, h), self.size, self.size);
        if uniform() < 0.5 {
            out = flip_horizontal(&out);
        }
        to_normalized_chw(&out, self.mean, self.std)
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
    fn random_resized_crops_stay_inside_and_fall_back_to_the_center() {
        let t = TrainTransform::default();
        let mut state = 12345u64;
        let mut uniform = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for (w, h) in [(500, 375), (64, 640), (224, 224), (3, 1000)] {
            for _ in 0..200 {
                let (l, tp, cw, ch) = t.crop_params(w, h, &mut uniform);
                assert!(cw > 0 && ch > 0 && l + cw <= w && tp + ch <= h, "{w}x{h}: {l},{tp} {cw}x{ch}");
            }
        }
        // Always out of range: the central fallback, clipped to the 4/3 ratio bound.
        let mut never = || 0.999_999;
        assert_eq!(t.crop_params(1000, 10, &mut never), (493, 0, 13, 10));
        let img = RgbImage { width: 3, height: 1, data: vec![1, 1, 1, 2, 2, 2, 3, 3, 3] };
        assert_eq!(flip_horizontal(&img).data, vec![3, 3, 3, 2, 2, 2, 1, 1, 1]);
        assert_eq!(t.apply(&RgbImage::new(300, 200), &mut uniform).len(), 3 * 224 * 224);
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
