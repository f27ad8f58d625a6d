//! Decoding and preprocessing against PIL 9.4 (libjpeg-turbo) + torchvision 0.14 outputs
//! (`eval/reference/make_fixtures.py`).

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use snzoo_preprocess::{decode_rgb, to_normalized_chw, DecodeError, EvalTransform, IMAGENET_MEAN, IMAGENET_STD};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(rel)
}

fn manifest() -> Vec<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(&std::fs::read(fixture("images/manifest.json")).unwrap())
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn decoded_pixels_equal_pil() {
    for m in manifest() {
        let name = m["image"].as_str().unwrap();
        let img = decode_rgb(&std::fs::read(fixture(&format!("images/{name}"))).unwrap()).unwrap();
        assert_eq!([img.width as u64, img.height as u64], [m["size"][0].as_u64().unwrap(), m["size"][1].as_u64().unwrap()]);
        let sha: String = Sha256::digest(&img.data).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(sha, m["decoded_sha256"].as_str().unwrap(), "{name} ({}) decodes differently from PIL", m["mode"]);
    }
}

#[test]
fn resize_and_crop_equal_torchvision_bit_for_bit() {
    let t = EvalTransform::default();
    for m in manifest() {
        let name = m["image"].as_str().unwrap();
        let img = decode_rgb(&std::fs::read(fixture(&format!("images/{name}"))).unwrap()).unwrap();
        let crop = t.crop_rgb(&img).unwrap();
        let stem = name.rsplit_once('.').unwrap().0;
        let expected = image::open(fixture(&format!("images/expected/{stem}.crop.png"))).unwrap().to_rgb8();
        assert_eq!((crop.width, crop.height), (224, 224));
        let diff = crop.data.iter().zip(expected.as_raw()).filter(|(a, b)| a != b).count();
        assert_eq!(diff, 0, "{name}: {diff} of {} values differ from torchvision", crop.data.len());
    }
}

#[test]
fn normalization_equals_to_tensor_then_normalize() {
    let (shape, table) = snzoo_convert::npy::read_npy_f32(&fixture("images/normalize_table.npy")).unwrap();
    assert_eq!(shape, vec![3, 256]);
    let img = snzoo_preprocess::RgbImage { width: 256, height: 1, data: (0..=255u8).flat_map(|v| [v, v, v]).collect() };
    let out = to_normalized_chw(&img, IMAGENET_MEAN, IMAGENET_STD);
    for (i, (a, b)) in out.iter().zip(&table).enumerate() {
        assert_eq!(a.to_bits(), b.to_bits(), "channel {} value {}", i / 256, i % 256);
    }
}

#[test]
fn broken_images_are_errors_not_panics() {
    let jpeg = std::fs::read(fixture("images/chelsea_420.jpg")).unwrap();
    for cut in [3, 100, 600, jpeg.len() / 2, jpeg.len() - 2] {
        let e = decode_rgb(&jpeg[..cut]).unwrap_err();
        assert!(matches!(e, DecodeError::Truncated | DecodeError::Jpeg(_)), "cut {cut}: {e}");
    }
    assert!(matches!(decode_rgb(&jpeg[..jpeg.len() / 2]), Err(DecodeError::Truncated)));
    let png = std::fs::read(fixture("images/chelsea_png.JPEG")).unwrap();
    assert!(decode_rgb(&png[..png.len() / 2]).is_err());
    assert!(decode_rgb(b"").is_err());
    assert!(decode_rgb(b"definitely not an image").is_err());
    let mut garbage = jpeg.clone();
    for b in garbage.iter_mut().skip(400).step_by(7) {
        *b ^= 0x5a;
    }
    let _ = decode_rgb(&garbage); // corrupt entropy data: an image or an error, never a panic
}

/// timm's evaluation transform of the GroupNorm card (Resize(238, bicubic), CenterCrop(224),
/// ToTensor, Normalize), bit for bit: the 8-bit crops and the float tensors of PIL + timm on the
/// fixture photos, by sha256 (`fixtures/images/timm_gn_protocol.json`).
#[test]
fn bicubic_protocol_equals_timm_bit_for_bit() {
    use snzoo_preprocess::Interpolation;
    let expected: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture("images/timm_gn_protocol.json")).unwrap()).unwrap();
    let t = EvalTransform { resize: 238, interpolation: Interpolation::Bicubic, ..EvalTransform::default() };
    let rows = expected["images"].as_array().unwrap();
    assert!(rows.len() >= 12);
    let hex = |b: &[u8]| -> String { Sha256::digest(b).iter().map(|b| format!("{b:02x}")).collect() };
    for row in rows {
        let name = row["image"].as_str().unwrap();
        let img = decode_rgb(&std::fs::read(fixture(&format!("images/{name}"))).unwrap()).unwrap();
        let crop = t.crop_rgb(&img).unwrap();
        assert_eq!(hex(&crop.data), row["crop_sha256"].as_str().unwrap(), "{name}: the 8-bit crop differs from timm's");
        let x: Vec<u8> = t.normalize(&crop).iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(hex(&x), row["tensor_sha256"].as_str().unwrap(), "{name}: the tensor differs from timm's");
    }
}
