//! PIL's decompression-bomb limit, exactly: images up to 2 × `Image.MAX_IMAGE_PIXELS`
//! (178,956,970 pixels) decode, larger ones are refused before any pixel is allocated.

use image::ImageEncoder;
use snzoo_preprocess::{decode_rgb, DecodeError, MAX_PIXELS};

/// A PNG that claims `w`×`h` RGBA pixels but holds none (an empty IDAT chunk).
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let chunk = |out: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        out.extend((data.len() as u32).to_be_bytes());
        let body: Vec<u8> = kind.iter().chain(data).copied().collect();
        out.extend(&body);
        out.extend(crc32fast::hash(&body).to_be_bytes());
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 6, 0, 0, 0]); // 8-bit RGBA, deflate, no filter, no interlace
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &[]);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn a_12000_by_12000_rgba_png_decodes_as_in_pil() {
    let (w, h) = (12_000u32, 12_000u32);
    assert!((w as u64) * (h as u64) <= MAX_PIXELS);
    let mut img = image::RgbaImage::new(w, h);
    img.put_pixel(0, 0, image::Rgba([10, 20, 30, 0]));
    img.put_pixel(w - 1, h - 1, image::Rgba([200, 100, 50, 255]));
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new_with_quality(
        &mut png,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::NoFilter,
    )
    .write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgba8)
    .unwrap();
    drop(img);
    let rgb = decode_rgb(&png).unwrap();
    assert_eq!((rgb.width, rgb.height), (w as usize, h as usize));
    // convert('RGB') drops alpha without compositing.
    assert_eq!(&rgb.data[..3], &[10, 20, 30]);
    assert_eq!(&rgb.data[rgb.data.len() - 3..], &[200, 100, 50]);
}

#[test]
fn above_the_limit_is_refused_from_the_header() {
    // 13,380 × 13,380 = 179,024,400 > 178,956,970
    let e = decode_rgb(&png_header_only(13_380, 13_380)).unwrap_err();
    assert!(matches!(e, DecodeError::TooLarge(13_380, 13_380)), "{e}");
    // 13,377 × 13,377 = 178,944,129: allowed, so the (missing) pixel data is what fails.
    let e = decode_rgb(&png_header_only(13_377, 13_377)).unwrap_err();
    assert!(!matches!(e, DecodeError::TooLarge(..)), "{e}");
}
