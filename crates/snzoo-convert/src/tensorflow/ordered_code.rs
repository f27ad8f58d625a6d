//! TensorFlow's `OrderedCode` (tensorflow/core/lib/strings/ordered_code.cc): the key encoding
//! of tensor slices in checkpoints (`checkpoint::EncodeTensorNameSlice`: unsigned 0, the tensor
//! name, the slice's rank, then each dimension's start and length as signed numbers, −1 for a
//! full extent). Only decoding is needed; the encoder is for tests.

/// A decoded slice key: the tensor's name and per-dimension `(start, length)`, `length` −1
/// meaning the whole dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceKey {
    pub name: String,
    pub extents: Vec<(i64, i64)>,
}

fn num_increasing(src: &mut &[u8]) -> Option<u64> {
    let (&len, rest) = src.split_first()?;
    let len = len as usize;
    if len > 8 || rest.len() < len {
        return None;
    }
    let v = rest[..len].iter().fold(0u64, |v, &b| (v << 8) | u64::from(b));
    *src = &rest[len..];
    Some(v)
}

fn string(src: &mut &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < src.len() {
        match (src[i], src[i + 1]) {
            (0x00, 0x01) => {
                *src = &src[i + 2..];
                return Some(out);
            }
            (0x00, 0xff) => out.push(0x00),
            (0xff, 0x00) => out.push(0xff),
            (0x00 | 0xff, _) => return None,
            (b, _) => {
                out.push(b);
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    None
}

/// The header bits XORed into the first two bytes of an encoding of `len` bytes.
const HEADER: [[u8; 2]; 11] =
    [[0, 0], [0x80, 0], [0xc0, 0], [0xe0, 0], [0xf0, 0], [0xf8, 0], [0xfc, 0], [0xfe, 0], [0xff, 0], [0xff, 0x80], [0xff, 0xc0]];

fn signed_num_increasing(src: &mut &[u8]) -> Option<i64> {
    let first = *src.first()?;
    // The length is the number of leading bits equal to the sign bit (1 for non-negative).
    let sign_ones = first & 0x80 != 0;
    let two = u16::from_be_bytes([first, src.get(1).copied().unwrap_or(if sign_ones { 0 } else { 0xff })]);
    let len = if sign_ones { two.leading_ones() } else { two.leading_zeros() } as usize;
    if len == 0 || len > 10 || src.len() < len {
        return None;
    }
    let mut bytes = src[..len].to_vec();
    bytes[0] ^= HEADER[len][0];
    if len > 1 {
        bytes[1] ^= HEADER[len][1];
    }
    // What remains is the number's big-endian two's complement, sign-extended to `len` bytes.
    let negative = !sign_ones;
    let mut v: i64 = if negative { -1 } else { 0 };
    for &b in bytes.iter().skip(len.saturating_sub(8)) {
        v = (v << 8) | i64::from(b);
    }
    *src = &src[len..];
    Some(v)
}

/// Decodes a slice key; `None` if `key` is not one.
pub fn decode_slice_key(key: &[u8]) -> Option<SliceKey> {
    let mut src = key;
    if num_increasing(&mut src)? != 0 {
        return None;
    }
    let name = String::from_utf8(string(&mut src)?).ok()?;
    let dims = num_increasing(&mut src)?;
    if dims > 64 {
        return None;
    }
    let mut extents = Vec::with_capacity(dims as usize);
    for _ in 0..dims {
        extents.push((signed_num_increasing(&mut src)?, signed_num_increasing(&mut src)?));
    }
    src.is_empty().then_some(SliceKey { name, extents })
}

#[cfg(test)]
pub(crate) fn encode_slice_key(key: &SliceKey) -> Vec<u8> {
    fn num(out: &mut Vec<u8>, v: u64) {
        let bytes = v.to_be_bytes();
        let skip = (v.leading_zeros() / 8) as usize;
        out.push((8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    fn signed(out: &mut Vec<u8>, v: i64) {
        let x = if v < 0 { !v } else { v } as u64;
        let bits = 64 - x.leading_zeros() as usize;
        let len = (bits + 7) / 7;
        let mut buf = [if v < 0 { 0xff } else { 0 }; 10];
        buf[2..].copy_from_slice(&v.to_be_bytes());
        let mut b = buf[10 - len..].to_vec();
        b[0] ^= HEADER[len][0];
        if len > 1 {
            b[1] ^= HEADER[len][1];
        }
        out.extend_from_slice(&b);
    }
    let mut out = Vec::new();
    num(&mut out, 0);
    for &c in key.name.as_bytes() {
        match c {
            0 => out.extend_from_slice(&[0, 0xff]),
            0xff => out.extend_from_slice(&[0xff, 0]),
            c => out.push(c),
        }
    }
    out.extend_from_slice(&[0, 1]);
    num(&mut out, key.extents.len() as u64);
    for &(s, l) in &key.extents {
        signed(&mut out, s);
        signed(&mut out, l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_examples_of_the_source() {
        // ordered_code.cc: 0x424242 -> f0 42 42 42; -0x800 -> 38 00.
        let mut s: &[u8] = &[0xf0, 0x42, 0x42, 0x42];
        assert_eq!(signed_num_increasing(&mut s), Some(0x424242));
        let mut s: &[u8] = &[0x38, 0x00];
        assert_eq!(signed_num_increasing(&mut s), Some(-0x800));
    }

    #[test]
    fn round_trip() {
        for v in [0i64, 1, -1, 63, 64, -64, -65, 8191, 8192, -8192, 1 << 40, i64::MAX, i64::MIN, -(1 << 55), 1 << 55] {
            let key = SliceKey { name: "a/b\u{0}\u{7f}".into(), extents: vec![(v, -1), (0, v)] };
            assert_eq!(decode_slice_key(&encode_slice_key(&key)), Some(key), "{v}");
        }
        assert_eq!(decode_slice_key(b"plain/name"), None);
        assert_eq!(decode_slice_key(&[0]), None);
    }
}
