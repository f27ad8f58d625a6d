//! Reading PyTorch checkpoints without Python, and writing them as safetensors.
//!
//! * [`read_torch_checkpoint`] reads a `torch.save` file in either format — the zip archive of
//!   torch ≥ 1.6 and the legacy format of torch ≤ 1.5, which the released Switchable Normalization
//!   checkpoints use — and returns its state dict as named, contiguous [`Tensor`]s. Training dicts
//!   are unwrapped and the DataParallel `module.` prefix is stripped.
//! * The pickle reader ([`pickle`]) executes nothing: it interprets a short allow-list of globals
//!   and refuses every other one by name. Sizes and offsets are checked against the file, so a
//!   hostile or truncated file gives an error, never a panic or an outsized allocation.
//! * [`write_safetensors`] writes tensors (optionally cast to f16/bf16) with `__metadata__`,
//!   atomically (a temporary file in the target directory, renamed into place on success) and
//!   deterministically (the same tensors and metadata give the same bytes).
//! * [`check_model_tensors`] refuses non-float and non-finite tensors, naming them.
//!
//! This crate knows nothing of models; architecture checks belong to the caller.

pub mod caffe;
pub mod checkpoint;
pub mod npy;
pub mod pickle;
pub mod proto;
pub mod tensorflow;
pub mod torch7;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

pub use checkpoint::{read_torch_checkpoint, read_torch_checkpoint_from, CheckpointError, CheckpointInfo, TorchCheckpoint, TorchFormat};
pub use tensorflow::{read_tf_checkpoint, TfCheckpoint, TfError, TfFormat};

/// Element types of PyTorch storages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F64 | DType::F32 | DType::F16 | DType::BF16)
    }

    /// The type of a safetensors dtype, where snzoo has one.
    pub fn from_safetensors(d: safetensors::Dtype) -> Option<DType> {
        use safetensors::Dtype as S;
        Some(match d {
            S::F64 => DType::F64,
            S::F32 => DType::F32,
            S::F16 => DType::F16,
            S::BF16 => DType::BF16,
            S::I64 => DType::I64,
            S::I32 => DType::I32,
            S::I16 => DType::I16,
            S::I8 => DType::I8,
            S::U8 => DType::U8,
            S::BOOL => DType::Bool,
            _ => return None,
        })
    }

    fn safetensors(self) -> safetensors::Dtype {
        use safetensors::Dtype as S;
        match self {
            DType::F64 => S::F64,
            DType::F32 => S::F32,
            DType::F16 => S::F16,
            DType::BF16 => S::BF16,
            DType::I64 => S::I64,
            DType::I32 => S::I32,
            DType::I16 => S::I16,
            DType::I8 => S::I8,
            DType::U8 => S::U8,
            DType::Bool => S::BOOL,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F64 => "f64",
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::I16 => "i16",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::Bool => "bool",
        })
    }
}

impl std::str::FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "f64" => DType::F64,
            "f32" => DType::F32,
            "f16" => DType::F16,
            "bf16" => DType::BF16,
            _ => return Err(format!("unknown dtype `{s}` (expected f32, f16, bf16 or f64)")),
        })
    }
}

/// A contiguous, row-major tensor: little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Tensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The elements as f64 (floats and integers alike).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        let es = self.dtype.size();
        self.data
            .chunks_exact(es)
            .map(|b| match self.dtype {
                DType::F64 => f64::from_le_bytes(b.try_into().unwrap()),
                DType::F32 => f32::from_le_bytes(b.try_into().unwrap()) as f64,
                DType::F16 => half::f16::from_le_bytes(b.try_into().unwrap()).to_f64(),
                DType::BF16 => half::bf16::from_le_bytes(b.try_into().unwrap()).to_f64(),
                DType::I64 => i64::from_le_bytes(b.try_into().unwrap()) as f64,
                DType::I32 => i32::from_le_bytes(b.try_into().unwrap()) as f64,
                DType::I16 => i16::from_le_bytes(b.try_into().unwrap()) as f64,
                DType::I8 => b[0] as i8 as f64,
                DType::U8 | DType::Bool => b[0] as f64,
            })
            .collect()
    }

    /// The value of a one-element tensor.
    pub fn scalar_f64(&self) -> Option<f64> {
        (self.numel() == 1).then(|| self.to_f64_vec()[0])
    }

    /// Casts a floating-point tensor to another floating-point type (round to nearest even);
    /// integer tensors are returned unchanged.
    pub fn cast_float(self, to: DType) -> Tensor {
        if !self.dtype.is_float() || !to.is_float() || self.dtype == to {
            return self;
        }
        let values = self.to_f64_vec();
        let mut data = Vec::with_capacity(values.len() * to.size());
        for v in values {
            match to {
                DType::F64 => data.extend_from_slice(&v.to_le_bytes()),
                DType::F32 => data.extend_from_slice(&(v as f32).to_le_bytes()),
                // Via f32 as torch does (`.half()` of an f32 tensor); exact for f32 sources.
                DType::F16 => data.extend_from_slice(&half::f16::from_f32(v as f32).to_le_bytes()),
                DType::BF16 => data.extend_from_slice(&half::bf16::from_f32(v as f32).to_le_bytes()),
                _ => unreachable!("float target"),
            }
        }
        Tensor { dtype: to, shape: self.shape, data }
    }
}

impl safetensors::View for &Tensor {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype.safetensors()
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Errors of [`write_safetensors`] and [`serialize_safetensors`].
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Fs(#[from] snzoo_fs::FsError),
    #[error("safetensors serialization failed")]
    Safetensors(#[from] safetensors::SafeTensorError),
    #[error("safetensors header serialization failed")]
    Json(#[from] serde_json::Error),
}

/// The safetensors header (8-byte length, then the JSON header padded to a multiple of 8) of
/// `tensors` with `metadata`, and the tensors in the order their data follows the header.
///
/// The header is the safetensors crate's own (`Metadata`, which checks the offsets), with the
/// tensors ordered as `safetensors::serialize` orders them; only the `__metadata__` entries are
/// sorted by key, because the crate writes them in `HashMap` order, which differs from run to
/// run: with sorted entries the same input always gives the same bytes (and sha256).
fn header<'a>(tensors: &'a [(String, Tensor)], metadata: &HashMap<String, String>) -> Result<(Vec<u8>, Vec<&'a Tensor>), WriteError> {
    use safetensors::View;
    let mut order: Vec<&(String, Tensor)> = tensors.iter().collect();
    // As `safetensors::serialize`: descending dtype alignment, then name.
    order.sort_by(|(ln, lt), (rn, rt)| rt.dtype().cmp(&lt.dtype()).then(ln.cmp(rn)));
    let mut infos = Vec::with_capacity(order.len());
    let mut offset = 0usize;
    for (name, t) in &order {
        let n = t.data.len();
        infos.push((
            name.clone(),
            safetensors::tensor::TensorInfo { dtype: t.dtype(), shape: t.shape.clone(), data_offsets: (offset, offset + n) },
        ));
        offset += n;
    }
    let meta = safetensors::tensor::Metadata::new(Some(metadata.clone().into_iter().collect()), infos)?;
    let mut json = serde_json::to_value(&meta)?;
    if let Some(serde_json::Value::Object(m)) = json.get_mut("__metadata__") {
        m.sort_keys();
    }
    let mut text = serde_json::to_string(&json)?.into_bytes();
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + text.len());
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    Ok((out, order.into_iter().map(|(_, t)| t).collect()))
}

/// Writes `tensors` to `path` as safetensors with the given `__metadata__`, atomically (see
/// [`snzoo_fs::AtomicFile`]): the data is streamed to a temporary file beside `path` (no second
/// copy in memory), synced and renamed into place only when complete. On error nothing is left
/// and an existing file is untouched. The bytes depend only on the tensors and the metadata.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)], metadata: &HashMap<String, String>) -> Result<(), WriteError> {
    let (head, order) = header(tensors, metadata)?;
    let mut out = snzoo_fs::AtomicFile::create(path)?;
    let io = |e| WriteError::Fs(snzoo_fs::FsError::Io { op: "write", path: path.to_path_buf(), source: e });
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut out);
        w.write_all(&head).map_err(io)?;
        for t in order {
            w.write_all(&t.data).map_err(io)?;
        }
        w.flush().map_err(io)?;
    }
    out.commit()?;
    Ok(())
}

/// The safetensors bytes of `tensors` with the given `__metadata__` (as [`write_safetensors`]
/// writes them).
pub fn serialize_safetensors(tensors: &[(String, Tensor)], metadata: &HashMap<String, String>) -> Result<Vec<u8>, WriteError> {
    let (mut out, order) = header(tensors, metadata)?;
    out.reserve(order.iter().map(|t| t.data.len()).sum());
    for t in order {
        out.extend_from_slice(&t.data);
    }
    Ok(out)
}

/// Why a tensor cannot be part of a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidTensor {
    #[error("tensor `{name}` has dtype {dtype}; model weights are floating-point tensors")]
    NotFloat { name: String, dtype: DType },
    #[error("tensor `{name}` holds {value} at element {index}; a model with non-finite weights computes NaN, refusing it")]
    NonFinite { name: String, index: usize, value: String },
}

/// The first element of a little-endian buffer of `dtype` that is NaN or infinite, as
/// (index, value); `None` for integer types and finite data.
pub fn first_nonfinite(dtype: DType, data: &[u8]) -> Option<(usize, f64)> {
    let es = dtype.size();
    let check = |i: usize, v: f64| (!v.is_finite()).then_some((i, v));
    match dtype {
        DType::F32 => data.chunks_exact(4).enumerate().find_map(|(i, b)| check(i, f32::from_le_bytes(b.try_into().unwrap()) as f64)),
        DType::F64 => data.chunks_exact(8).enumerate().find_map(|(i, b)| check(i, f64::from_le_bytes(b.try_into().unwrap()))),
        DType::F16 => data.chunks_exact(es).enumerate().find_map(|(i, b)| check(i, half::f16::from_le_bytes([b[0], b[1]]).to_f64())),
        DType::BF16 => data.chunks_exact(es).enumerate().find_map(|(i, b)| check(i, half::bf16::from_le_bytes([b[0], b[1]]).to_f64())),
        _ => None,
    }
}

/// Checks that every tensor is floating-point and finite, naming the first that is not.
pub fn check_model_tensors(tensors: &[(String, Tensor)]) -> Result<(), InvalidTensor> {
    for (name, t) in tensors {
        if !t.dtype.is_float() {
            return Err(InvalidTensor::NotFloat { name: name.clone(), dtype: t.dtype });
        }
        if let Some((index, v)) = first_nonfinite(t.dtype, &t.data) {
            return Err(InvalidTensor::NonFinite { name: name.clone(), index, value: format!("{v}") });
        }
    }
    Ok(())
}
