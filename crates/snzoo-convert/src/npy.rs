//! `.npy` files of little-endian float32 arrays in C order (through the `npyz` crate): what
//! `snzoo classify --save-input/--save-logits` writes and what the tests' fixtures hold.

use std::io::Write;
use std::path::Path;

use npyz::WriterBuilder;

/// Errors of the `.npy` functions.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("I/O error")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Fs(#[from] snzoo_fs::FsError),
    #[error("not a float32 C-order .npy file: {0}")]
    Format(String),
}

/// A float32 array being written to `w`, element by element (streamed: the array never needs
/// to be in memory at once). The header is npyz's; the data that follows it is the elements'
/// little-endian bytes. [`finish`](NpyF32Writer::finish) checks that the shape is complete.
pub struct NpyF32Writer<W: Write> {
    w: W,
    expected: u64,
    written: u64,
}

/// The `.npy` header of a little-endian float32 C-order array of `shape`.
fn header(shape: &[usize]) -> Result<Vec<u8>, NpyError> {
    let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut out = Vec::with_capacity(128);
    // npyz writes the header when the array begins; the (empty) array is then dropped unfinished.
    drop(npyz::WriteOptions::<f32>::new().default_dtype().shape(&dims).writer(&mut out).begin_nd()?);
    Ok(out)
}

impl<W: Write> NpyF32Writer<W> {
    /// Starts an array of `shape`.
    pub fn new(mut w: W, shape: &[usize]) -> Result<Self, NpyError> {
        w.write_all(&header(shape)?)?;
        let expected =
            shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64)).ok_or_else(|| NpyError::Format("the shape overflows".into()))?;
        Ok(Self { w, expected, written: 0 })
    }

    /// Appends elements (in C order).
    pub fn extend(&mut self, values: &[f32]) -> Result<(), NpyError> {
        self.written += values.len() as u64;
        if self.written > self.expected {
            return Err(NpyError::Format(format!("more than the {} elements of the shape", self.expected)));
        }
        let mut bytes = Vec::with_capacity(values.len() * 4);
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        self.w.write_all(&bytes)?;
        Ok(())
    }

    /// Ends the array, flushes, and returns the writer.
    pub fn finish(mut self) -> Result<W, NpyError> {
        if self.written != self.expected {
            return Err(NpyError::Format(format!("{} of the {} elements were written", self.written, self.expected)));
        }
        self.w.flush()?;
        Ok(self.w)
    }
}

/// Serialises a float32 array of the given shape as `.npy` bytes.
pub fn npy_f32_bytes(shape: &[usize], data: &[f32]) -> Result<Vec<u8>, NpyError> {
    let mut out = Vec::with_capacity(128 + data.len() * 4);
    let mut w = NpyF32Writer::new(&mut out, shape)?;
    w.extend(data)?;
    w.finish()?;
    Ok(out)
}

/// Reads a float32 `.npy` file (a regular file of at most `4 GiB`): (shape, data).
pub fn read_npy_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>), NpyError> {
    parse_npy_f32(&snzoo_fs::read_regular(path, 4 << 30)?)
}

/// Parses `.npy` bytes (see [`read_npy_f32`]).
pub fn parse_npy_f32(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>), NpyError> {
    let bad = |m: String| NpyError::Format(m);
    let npy = npyz::NpyFile::new(bytes).map_err(|e| bad(e.to_string()))?;
    if npy.order() != npyz::Order::C {
        return Err(bad("Fortran order".into()));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("the shape overflows".into()))?;
    if n.checked_mul(4).is_none_or(|b| b > bytes.len()) {
        return Err(bad("data length does not match the shape".into()));
    }
    match npy.dtype() {
        npyz::DType::Plain(t)
            if t.type_char() == npyz::TypeChar::Float && t.size_field() == 4 && t.endianness() != npyz::Endianness::Big => {}
        other => return Err(bad(format!("dtype {} is not <f4", other.descr()))),
    }
    let data = npy.into_vec::<f32>().map_err(|e| bad(e.to_string()))?;
    if data.len() != n {
        return Err(bad("data length does not match the shape".into()));
    }
    Ok((shape, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        for shape in [vec![24], vec![2, 3, 4], vec![1, 24]] {
            let bytes = npy_f32_bytes(&shape, &data).unwrap();
            assert_eq!((bytes.len() - data.len() * 4) % 64, 0);
            assert_eq!(parse_npy_f32(&bytes).unwrap(), (shape, data.clone()));
        }
        assert!(npy_f32_bytes(&[5], &data).is_err());
    }

    /// What numpy 1.24 writes for `np.save(f, np.arange(6, dtype='<f4').reshape(2, 3))`.
    #[test]
    fn reads_numpys_own_files() {
        let mut bytes = b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }".to_vec();
        bytes.extend(std::iter::repeat_n(b' ', 128 - bytes.len() - 1));
        bytes.push(b'\n');
        for i in 0..6 {
            bytes.extend((i as f32).to_le_bytes());
        }
        assert_eq!(parse_npy_f32(&bytes).unwrap(), (vec![2, 3], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
        assert!(parse_npy_f32(&bytes[..bytes.len() - 1]).is_err());
        assert!(parse_npy_f32(b"GIF89a").is_err());
    }
}
