//! How long the centre-crop resize of an ImageNet-sized photo takes (one thread): a 500×375 RGB
//! image to 341×256, window 224×224 at the centre, Pillow's bilinear and bicubic filters.
//!
//!     cargo run --release -p snzoo-preprocess --example resize_rate
use snzoo_preprocess::{resize_window, Filter, RgbImage};

fn main() {
    let (w, h) = (500, 375);
    let mut s = 12345u32;
    let data: Vec<u8> = (0..w * h * 3)
        .map(|i| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            // A smooth picture with noise, like a photo.
            ((i % (w * 3)) as u32 / 4 + (s >> 28)) as u8
        })
        .collect();
    let img = RgbImage { width: w, height: h, data };
    for filter in [Filter::Bilinear, Filter::Bicubic] {
        let runs = 400;
        let t = std::time::Instant::now();
        let mut check = 0u64;
        for _ in 0..runs {
            let out = resize_window(&img, (341, 256), filter, (58, 16), (224, 224));
            check = check.wrapping_add(out.data.iter().map(|&v| v as u64).sum::<u64>());
        }
        let ms = t.elapsed().as_secs_f64() * 1e3 / runs as f64;
        println!("{filter:?}: {ms:.3} ms per image (checksum {check})");
    }
}
