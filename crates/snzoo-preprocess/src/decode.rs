//! Decoding to 8-bit RGB the way `PIL.Image.open(f).convert('RGB')` does.
//!
//! * JPEG goes through libjpeg-turbo's decoder (as built by `mozjpeg-sys`), with PIL's settings:
//!   accurate integer IDCT, fancy upsampling, colour conversion inside libjpeg. Four-component
//!   (CMYK/YCCK) JPEGs are read with Adobe polarity (PIL's `CMYK;I`) and converted with Pillow's
//!   `cmyk2rgb`. A file that ends before its image data does is an error, as in PIL ("image file is
//!   truncated"); other libjpeg warnings are ignored, as PIL does.
//! * Other formats (PNG, GIF, BMP, TIFF, WebP) go through the `image` crate; the format is sniffed
//!   from the bytes, never taken from the file name (ImageNet has PNGs named `.JPEG`).
//! * EXIF orientation is ignored, as PIL's `open` + `convert` ignore it.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use mozjpeg_sys as ffi;

/// An 8-bit RGB image, rows top to bottom, pixels interleaved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    pub fn new(width: usize, height: usize) -> Self {
        Self { width, height, data: vec![0; width * height * 3] }
    }
}

/// PIL refuses images above this many pixels (`Image.MAX_IMAGE_PIXELS * 2`) as decompression bombs.
pub const MAX_PIXELS: u64 = 2 * 89_478_485;

/// Why an image could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("image file is truncated")]
    Truncated,
    #[error("corrupt JPEG: {0}")]
    Jpeg(String),
    #[error("cannot decode image: {0}")]
    Image(String),
    #[error("image of {0}×{1} pixels is larger than the {MAX_PIXELS}-pixel limit (decompression bomb?)")]
    TooLarge(u64, u64),
    #[error("empty image ({0}×{1})")]
    Empty(usize, usize),
}

/// Decodes an image file's bytes to RGB (see the module docs for the exact semantics).
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    let img = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) { decode_jpeg(bytes)? } else { decode_other(bytes)? };
    if img.width == 0 || img.height == 0 {
        return Err(DecodeError::Empty(img.width, img.height));
    }
    Ok(img)
}

fn check_size(w: usize, h: usize) -> Result<(), DecodeError> {
    if (w as u64) * (h as u64) > MAX_PIXELS {
        return Err(DecodeError::TooLarge(w as u64, h as u64));
    }
    Ok(())
}

thread_local! {
    /// Set by the warning hook when libjpeg ran out of data.
    static HIT_EOF: Cell<bool> = const { Cell::new(false) };
}

extern "C-unwind" fn on_message(cinfo: &mut ffi::jpeg_common_struct, level: std::os::raw::c_int) {
    // level -1: a warning. The premature-EOF warning means libjpeg padded the image itself.
    let code = unsafe { cinfo.err.as_ref().map(|e| e.msg_code) };
    if level == -1 && code == Some(ffi::JWRN_JPEG_EOF as std::os::raw::c_int) {
        HIT_EOF.with(|f| f.set(true));
    }
}

extern "C-unwind" fn on_error(cinfo: &mut ffi::jpeg_common_struct) {
    let mut buffer = [0u8; 80];
    let text = unsafe {
        match cinfo.err.as_ref().and_then(|e| e.format_message) {
            Some(format) => {
                // libjpeg writes the message into the buffer it is given.
                let format: unsafe extern "C-unwind" fn(&mut ffi::jpeg_common_struct, &mut [u8; 80]) = std::mem::transmute(format);
                format(cinfo, &mut buffer);
                let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
                String::from_utf8_lossy(&buffer[..end]).into_owned()
            }
            None => format!("libjpeg error {}", cinfo.err.as_ref().map_or(0, |e| e.msg_code)),
        }
    };
    std::panic::resume_unwind(Box::new(text));
}

fn error_manager() -> ffi::jpeg_error_mgr {
    unsafe {
        let mut err: ffi::jpeg_error_mgr = std::mem::zeroed();
        ffi::jpeg_std_error(&mut err);
        err.error_exit = Some(on_error);
        err.emit_message = Some(on_message);
        err
    }
}

/// PIL `cmyk2rgb` on Adobe-inverted samples.
fn cmyk_inverted_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    let muldiv255 = |a: i32, b: i32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    let mut out = Vec::with_capacity(cmyk.len() / 4 * 3);
    for px in cmyk.chunks_exact(4) {
        // `CMYK;I`: the file stores inverted values.
        let [c, m, y, k] = [255 - px[0] as i32, 255 - px[1] as i32, 255 - px[2] as i32, 255 - px[3] as i32];
        let nk = 255 - k;
        for v in [c, m, y] {
            out.push((nk - muldiv255(v, nk)).clamp(0, 255) as u8);
        }
    }
    out
}

fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    HIT_EOF.with(|f| f.set(false));
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<RgbImage, DecodeError> {
        let d = mozjpeg::Decompress::builder().with_err(error_manager()).from_mem(bytes).map_err(|e| DecodeError::Jpeg(e.to_string()))?;
        let (width, height) = d.size();
        check_size(width, height)?;
        let io = |e: std::io::Error| DecodeError::Jpeg(e.to_string());
        let data = match d.image().map_err(io)? {
            mozjpeg::Format::RGB(mut s) => {
                let px: Vec<u8> = s.read_scanlines().map_err(io)?;
                s.finish().map_err(io)?;
                px
            }
            mozjpeg::Format::Gray(mut s) => {
                let px: Vec<u8> = s.read_scanlines().map_err(io)?;
                s.finish().map_err(io)?;
                px.iter().flat_map(|&v| [v, v, v]).collect()
            }
            mozjpeg::Format::CMYK(mut s) => {
                let px: Vec<u8> = s.read_scanlines().map_err(io)?;
                s.finish().map_err(io)?;
                cmyk_inverted_to_rgb(&px)
            }
        };
        if data.len() != width * height * 3 {
            return Err(DecodeError::Truncated);
        }
        Ok(RgbImage { width, height, data })
    }));
    let truncated = HIT_EOF.with(|f| f.replace(false));
    match result {
        Ok(Ok(_)) | Err(_) if truncated => Err(DecodeError::Truncated),
        Ok(r) => r,
        Err(payload) => Err(DecodeError::Jpeg(
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "libjpeg failed".into()),
        )),
    }
}

fn decode_other(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    use image::DynamicImage as D;
    let reader =
        image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| DecodeError::Image(e.to_string()))?;
    if reader.format().is_none() {
        return Err(DecodeError::Image("unknown image format".into()));
    }
    let (w, h) = reader.into_dimensions().map_err(|e| DecodeError::Image(e.to_string()))?;
    check_size(w as usize, h as usize)?;
    // The `image` crate's default limits (512 MB of allocations) refuse images that PIL
    // decodes, e.g. a 12000×12000 RGBA PNG: the pixel limit checked above is PIL's own.
    let mut reader =
        image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| DecodeError::Image(e.to_string()))?;
    reader.no_limits();
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => DecodeError::Truncated,
        e => DecodeError::Image(e.to_string()),
    })?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    let data = match img {
        D::ImageRgb8(i) => i.into_raw(),
        // PIL's RGBA/LA → RGB drops alpha without compositing; L → RGB replicates.
        D::ImageRgba8(i) => i.into_raw().chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        D::ImageLuma8(i) => i.into_raw().iter().flat_map(|&v| [v, v, v]).collect(),
        D::ImageLumaA8(i) => i.into_raw().chunks_exact(2).flat_map(|p| [p[0], p[0], p[0]]).collect(),
        // 16-bit RGB(A): PIL's unpacker keeps the high byte.
        D::ImageRgb16(i) => i.into_raw().iter().map(|&v| (v >> 8) as u8).collect(),
        D::ImageRgba16(i) => i.into_raw().chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]].map(|v| (v >> 8) as u8)).collect(),
        // 16-bit gray opens as mode `I`; `I` → RGB clips to 0..255.
        D::ImageLuma16(i) => i.into_raw().iter().flat_map(|&v| [v.min(255) as u8; 3]).collect(),
        D::ImageLumaA16(i) => i.into_raw().chunks_exact(2).flat_map(|p| [p[0].min(255) as u8; 3]).collect(),
        other => other.to_rgb8().into_raw(),
    };
    Ok(RgbImage { width, height, data })
}
