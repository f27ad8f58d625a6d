//! Caffe's preprocessing with OpenCV: `cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)`
//! of 8-bit pixels, bit for bit (OpenCV 4.x `modules/imgproc/src/resize.cpp`, the 11-bit
//! fixed-point path of `HResizeLinear`/`VResizeLinear`, whose SIMD kernels compute the same
//! integers), and the centre crop of Caffe's data layer.
//!
//! Per output column `d` (rows alike): `f = (float)((d + 0.5)·scale − 0.5)` with
//! `scale = 1 / (dst / src)` in f64, `s = ⌊f⌋`, `f −= s`; columns clamp (`s < 0`: s = 0, f = 0;
//! `s ≥ W − 1`: s = W − 1, f = 0), rows only clamp the row index. Weights are
//! `round_half_even((1 − f)·2048)` and `round_half_even(f·2048)` (f32 products); the horizontal
//! pass keeps the full `i32` sums, the vertical pass computes
//! `(((b0·(h0 >> 4)) >> 16) + ((b1·(h1 >> 4)) >> 16) + 2) >> 2`. An exact 2× reduction in both
//! axes takes OpenCV's area path instead: the rounded mean `(a + b + c + d + 2) >> 2` of each
//! 2×2 block.

use crate::RgbImage;

/// One axis's source indices and 11-bit weights.
fn table(dst: usize, src: usize, clamp: bool) -> Vec<(isize, i32, i32)> {
    let scale = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|d| {
            let mut f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as isize;
            f -= s as f32;
            if clamp {
                if s < 0 {
                    s = 0;
                    f = 0.0;
                }
                if s >= src as isize - 1 {
                    s = src as isize - 1;
                    f = 0.0;
                }
            }
            ((s), ((1.0 - f) * 2048.0).round_ties_even() as i32, (f * 2048.0).round_ties_even() as i32)
        })
        .collect()
}

/// `cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)` of an 8-bit image.
pub fn resize_linear(img: &RgbImage, width: usize, height: usize) -> RgbImage {
    let (sw, sh) = (img.width, img.height);
    if (width, height) == (sw, sh) {
        return img.clone();
    }
    let mut out = RgbImage::new(width, height);
    if sw == 2 * width && sh == 2 * height {
        // `|scale − 2| < DBL_EPSILON` on both axes: INTER_AREA's exact 2× path.
        for y in 0..height {
            for x in 0..width {
                for c in 0..3 {
                    let p = |yy: usize, xx: usize| u32::from(img.data[(yy * sw + xx) * 3 + c]);
                    let sum = p(2 * y, 2 * x) + p(2 * y, 2 * x + 1) + p(2 * y + 1, 2 * x) + p(2 * y + 1, 2 * x + 1);
                    out.data[(y * width + x) * 3 + c] = ((sum + 2) >> 2) as u8;
                }
            }
        }
        return out;
    }
    let xs = table(width, sw, true);
    let ys = table(height, sh, false);
    // The horizontal pass of one source row: 3 × width full-precision sums.
    let row = |y: usize| -> Vec<i32> {
        let src = &img.data[y * sw * 3..(y + 1) * sw * 3];
        let mut h = Vec::with_capacity(width * 3);
        for &(s, a0, a1) in &xs {
            let (s0, s1) = (s as usize, (s as usize + 1).min(sw - 1));
            for c in 0..3 {
                h.push(i32::from(src[s0 * 3 + c]) * a0 + i32::from(src[s1 * 3 + c]) * a1);
            }
        }
        h
    };
    let mut cache: Vec<Option<Vec<i32>>> = vec![None; sh];
    for (y, &(s, b0, b1)) in ys.iter().enumerate() {
        let r0 = s.clamp(0, sh as isize - 1) as usize;
        let r1 = (s + 1).clamp(0, sh as isize - 1) as usize;
        for r in [r0, r1] {
            if cache[r].is_none() {
                cache[r] = Some(row(r));
            }
        }
        let (h0, h1) = (cache[r0].as_ref().expect("computed"), cache[r1].as_ref().expect("computed"));
        let dst = &mut out.data[y * width * 3..(y + 1) * width * 3];
        for i in 0..width * 3 {
            let v = ((b0 * (h0[i] >> 4)) >> 16) + ((b1 * (h1[i] >> 4)) >> 16);
            dst[i] = ((v + 2) >> 2).clamp(0, 255) as u8;
        }
        // Rows above the next output's first source row are not needed again.
        if let Some(&(next, _, _)) = ys.get(y + 1) {
            for r in cache.iter_mut().take(next.clamp(0, sh as isize) as usize) {
                *r = None;
            }
        }
    }
    out
}

/// The short side to `size`, the long side to `size · long / short` (integer division), as
/// `cv2.resize` targets are computed for Caffe evaluation.
pub fn resized_dims(width: usize, height: usize, size: usize) -> (usize, usize) {
    if width <= height {
        (size, size * height / width)
    } else {
        (size * width / height, size)
    }
}

/// Caffe's centre crop offset: `(dim − crop) / 2`, truncated.
pub fn crop_offset(dim: usize, crop: usize) -> usize {
    dim.saturating_sub(crop) / 2
}
