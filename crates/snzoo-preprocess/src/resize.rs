//! Pillow's resize (`Image.resize(size, Image.BILINEAR | Image.BICUBIC)`), bit for bit.
//!
//! A port of `src/libImaging/Resample.c` for 8-bit images: the filter (triangle, or the cubic
//! convolution kernel with a = −0.5) has a support that grows with the downscale factor
//! (antialiasing); coefficients are normalised in f64 and then rounded to 22-bit fixed point; a
//! horizontal pass over only the rows the vertical pass needs into an 8-bit image (clipped), then
//! the vertical pass.

use crate::RgbImage;

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// For each output pixel: the first input index, the number of taps, and the fixed-point weights
/// (`ksize` per output pixel).
struct Coefficients {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    weights: Vec<i32>,
}

/// Pillow's resampling filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Filter {
    /// `Image.BILINEAR`: the triangle filter, support 1.
    Bilinear,
    /// `Image.BICUBIC`: cubic convolution with a = −0.5, support 2.
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// `precompute_coeffs` + `normalize_coeffs_8bpc` for the box (0, in_size).
fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> Coefficients {
    let support_unit = filter.support();
    // Pillow computes the box in float, then the scale in double.
    let scale = (in_size as f32 - 0.0) as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = support_unit * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C `(int)` truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let taps = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(taps) {
            let w = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for (x, &kx) in k.iter().enumerate().take(taps) {
            let w = if ww != 0.0 { kx / ww } else { kx };
            let fixed = w * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if w < 0.0 { (-0.5 + fixed) as i32 } else { (0.5 + fixed) as i32 };
        }
        bounds.push((xmin, taps));
    }
    Coefficients { bounds, ksize, weights }
}

#[inline]
fn clip8(v: i32) -> u8 {
    if v >= (1 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Resizes to `width`×`height` exactly as Pillow's bilinear filter does.
pub fn resize_bilinear(img: &RgbImage, width: usize, height: usize) -> RgbImage {
    resize(img, width, height, Filter::Bilinear)
}

/// Resizes to `width`×`height` exactly as Pillow's `Image.resize` with `filter` does.
pub fn resize(img: &RgbImage, width: usize, height: usize, filter: Filter) -> RgbImage {
    resize_window(img, (width, height), filter, (0, 0), (width, height))
}

/// The `size.0 × size.1` window at `origin` of [`resize`]`(img, width, height, filter)`, without
/// computing the rest: every output pixel depends only on its own coefficients, so the window is
/// bit-identical to cropping the whole resize (a centre crop of 224 from a 256 resize computes
/// 40 % fewer pixels). Panics if the window leaves the resized image.
pub fn resize_window(
    img: &RgbImage,
    (width, height): (usize, usize),
    filter: Filter,
    origin: (usize, usize),
    size: (usize, usize),
) -> RgbImage {
    assert!(width > 0 && height > 0, "resize to an empty image");
    let ((x0, y0), (cw, ch)) = (origin, size);
    assert!(x0 + cw <= width && y0 + ch <= height, "the window leaves the {width}x{height} image");
    let need_h = width != img.width;
    let need_v = height != img.height;
    if !need_h && !need_v {
        return crate::crop(img, x0, y0, cw, ch);
    }
    let horiz = coefficients(img.width, width, filter);
    let vert = coefficients(img.height, height, filter);
    // The input rows the window's output rows read (all of the window's rows when there is no
    // vertical pass).
    let (first_row, last_row) = if need_v {
        let (lo, _) = vert.bounds[y0];
        let (hi, n) = vert.bounds[y0 + ch - 1];
        (lo, hi + n)
    } else {
        (y0, y0 + ch)
    };

    let temp = if need_h {
        let rows = last_row - first_row;
        let mut out = RgbImage::new(cw, rows);
        let half = 1i32 << (PRECISION_BITS - 1);
        for y in 0..rows {
            let src = &img.data[(y + first_row) * img.width * 3..(y + first_row + 1) * img.width * 3];
            let dst = &mut out.data[y * cw * 3..(y + 1) * cw * 3];
            for (ox, &(xmin, taps)) in horiz.bounds[x0..x0 + cw].iter().enumerate() {
                let xx = x0 + ox;
                let k = &horiz.weights[xx * horiz.ksize..xx * horiz.ksize + taps];
                let (mut s0, mut s1, mut s2) = (half, half, half);
                for (x, &w) in k.iter().enumerate() {
                    let p = &src[(x + xmin) * 3..(x + xmin) * 3 + 3];
                    s0 = s0.wrapping_add(p[0] as i32 * w);
                    s1 = s1.wrapping_add(p[1] as i32 * w);
                    s2 = s2.wrapping_add(p[2] as i32 * w);
                }
                dst[ox * 3] = clip8(s0);
                dst[ox * 3 + 1] = clip8(s1);
                dst[ox * 3 + 2] = clip8(s2);
            }
        }
        out
    } else {
        crate::crop(img, x0, first_row, cw, last_row - first_row)
    };
    if !need_v {
        return temp;
    }

    let mut out = RgbImage::new(cw, ch);
    let row = cw * 3;
    let mut acc = vec![0i32; row];
    let vertical_row = vertical_row_for_this_cpu();
    for (oy, &(ymin, taps)) in vert.bounds[y0..y0 + ch].iter().enumerate() {
        let yy = y0 + oy;
        let k = &vert.weights[yy * vert.ksize..yy * vert.ksize + taps];
        let rows = &temp.data[(ymin - first_row) * row..(ymin - first_row + taps) * row];
        vertical_row(rows, k, &mut acc, &mut out.data[oy * row..(oy + 1) * row]);
    }
    out
}

/// One output row of the vertical pass: `dst` = clip8(Σ_y k[y] · rows[y] + ½), `rows` holding
/// `k.len()` input rows of `dst.len()` bytes, `acc` a scratch row.
type VerticalRow = fn(&[u8], &[i32], &mut [i32], &mut [u8]);

#[inline(always)]
fn vertical_row_body(rows: &[u8], k: &[i32], acc: &mut [i32], dst: &mut [u8]) {
    let row = dst.len();
    acc.fill(1i32 << (PRECISION_BITS - 1));
    for (src, &w) in rows.chunks_exact(row).zip(k) {
        for (a, &p) in acc.iter_mut().zip(src) {
            *a = a.wrapping_add(p as i32 * w);
        }
    }
    for (d, &a) in dst.iter_mut().zip(acc.iter()) {
        *d = clip8(a);
    }
}

/// [`vertical_row_body`] compiled for AVX2, whose 32-bit multiply the x86-64 baseline (SSE2)
/// lacks (it spent twice as long emulating it). Integer sums: the same bytes either way.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn vertical_row_avx2(rows: &[u8], k: &[i32], acc: &mut [i32], dst: &mut [u8]) {
    vertical_row_body(rows, k, acc, dst)
}

fn vertical_row_for_this_cpu() -> VerticalRow {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return |rows, k, acc, dst| unsafe { vertical_row_avx2(rows, k, acc, dst) };
    }
    vertical_row_body
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window of the resize is the same window cut from the whole resize, bit for bit, for
    /// both filters, enlarging and reducing, with and without each pass.
    #[test]
    fn windows_are_crops_of_the_whole_resize() {
        let img = RgbImage { width: 53, height: 31, data: (0..53 * 31 * 3).map(|i| ((i * 7919) % 251) as u8).collect() };
        for filter in [Filter::Bilinear, Filter::Bicubic] {
            for (w, h) in [(20, 12), (53, 17), (29, 31), (80, 45), (53, 31), (7, 64)] {
                let whole = resize(&img, w, h, filter);
                for (x0, y0, cw, ch) in [(0, 0, w, h), (1, 2, w - 1, h - 2), (w / 3, h / 4, w / 2, h / 2), (w - 1, h - 1, 1, 1)] {
                    let got = resize_window(&img, (w, h), filter, (x0, y0), (cw, ch));
                    assert_eq!(got, crate::crop(&whole, x0, y0, cw, ch), "{filter:?} {w}x{h} window {x0},{y0} {cw}x{ch}");
                }
            }
        }
    }

    /// The AVX2 build of the vertical pass gives the portable build's bytes (weights of both
    /// signs, sums that clip at 0 and 255).
    #[test]
    fn vertical_pass_builds_agree() {
        #[cfg(target_arch = "x86_64")]
        {
            if !std::arch::is_x86_feature_detected!("avx2") {
                eprintln!("skipped: this CPU lacks AVX2");
                return;
            }
            let mut s = 7u32;
            let mut next = || {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                s >> 8
            };
            for (taps, width) in [(1, 3), (4, 37), (7, 96), (13, 301)] {
                let rows: Vec<u8> = (0..taps * width).map(|_| next() as u8).collect();
                let k: Vec<i32> = (0..taps).map(|_| (next() % (1 << 23)) as i32 - (1 << 21)).collect();
                let (mut a, mut b) = (vec![0; width], vec![0; width]);
                let (mut portable, mut avx2) = (vec![0u8; width], vec![0u8; width]);
                vertical_row_body(&rows, &k, &mut a, &mut portable);
                // SAFETY: checked above that the CPU has AVX2.
                unsafe { vertical_row_avx2(&rows, &k, &mut b, &mut avx2) };
                assert_eq!(portable, avx2, "{taps} taps, {width} bytes");
                assert!(portable.contains(&0) && portable.contains(&255) || width < 90, "the sums should clip at both ends");
            }
        }
    }

    #[test]
    fn identity_size_is_a_copy() {
        let img = RgbImage { width: 3, height: 2, data: (0..18).collect() };
        assert_eq!(resize_bilinear(&img, 3, 2), img);
    }

    #[test]
    fn constant_images_stay_constant() {
        let img = RgbImage { width: 37, height: 19, data: [10u8, 200, 77].repeat(37 * 19) };
        for (w, h) in [(5, 3), (100, 51), (37, 40), (1, 1)] {
            let out = resize_bilinear(&img, w, h);
            assert!(out.data.chunks(3).all(|p| p == [10, 200, 77]), "{w}x{h}");
        }
    }

    #[test]
    fn small_cases_equal_pillow_9_4() {
        // Image.frombytes('RGB', (4, 1), bytes([0,0,0, 100,100,100, 200,200,200, 50,50,50]))
        //   .resize((2, 1), Image.BILINEAR): the antialiasing filter spans three pixels.
        let img = RgbImage { width: 4, height: 1, data: vec![0, 0, 0, 100, 100, 100, 200, 200, 200, 50, 50, 50] };
        assert_eq!(resize_bilinear(&img, 2, 1).data, vec![71, 71, 71, 121, 121, 121]);
        // Image.frombytes('RGB', (3, 2), bytes(range(18))).resize((7, 5), Image.BILINEAR), red channel.
        let img = RgbImage { width: 3, height: 2, data: (0..18).collect() };
        let red: Vec<u8> = resize_bilinear(&img, 7, 5).data.iter().step_by(3).copied().collect();
        #[rustfmt::skip]
        let pillow = [0, 0, 2, 3, 4, 6, 6, 1, 1, 3, 4, 5, 7, 7, 5, 5, 7, 8, 9, 11, 11,
                      8, 8, 10, 11, 12, 14, 14, 9, 9, 11, 12, 13, 15, 15];
        assert_eq!(red, pillow);
    }

    #[rustfmt::skip]
    const PILLOW_BICUBIC_7X5: [u8; 35] = [0, 0, 0, 2, 4, 5, 5, 1, 1, 2, 4, 6, 7, 7, 5, 5, 6, 8, 10, 11, 11,
                                          8, 8, 9, 11, 13, 14, 14, 10, 10, 11, 13, 15, 16, 16];
    const PILLOW_BICUBIC_2X1: [u8; 6] = [107, 107, 107, 148, 148, 148];

    #[test]
    fn bicubic_small_cases_equal_pillow_9_4() {
        // Image.frombytes('RGB', (3, 2), bytes(range(18))).resize((7, 5), Image.BICUBIC), red,
        // and the same image reduced to (2, 1): the cubic kernel overshoots and is clipped.
        let img = RgbImage { width: 3, height: 2, data: (0..18).collect() };
        let red: Vec<u8> = resize(&img, 7, 5, Filter::Bicubic).data.iter().step_by(3).copied().collect();
        assert_eq!(red, PILLOW_BICUBIC_7X5);
        let img = RgbImage { width: 4, height: 1, data: vec![0, 0, 0, 255, 255, 255, 0, 0, 0, 255, 255, 255] };
        assert_eq!(resize(&img, 2, 1, Filter::Bicubic).data, PILLOW_BICUBIC_2X1.to_vec());
    }
}
