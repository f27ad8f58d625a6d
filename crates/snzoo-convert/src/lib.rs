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
//!   atomically: a temporary file in the target directory, renamed into place on success.
//!
//! This crate knows nothing of models; architecture checks belong to the caller.

pub mod checkpoint;
pub mod npy;
pub mod pickle;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

pub use checkpoint::{read_torch_checkpoint, read_torch_checkpoint_from, CheckpointError, CheckpointInfo, TorchCheckpoint, TorchFormat};

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

/// Errors of [`write_safetensors`].
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("I/O error")]
    Io(#[from] std::io::Error),
    #[error("safetensors serialization failed")]
    Safetensors(#[from] safetensors::SafeTensorError),
}

/// Writes `tensors` to `path` as safetensors with the given `__metadata__`, atomically: the data
/// is streamed to a temporary file beside `path` (no second copy in memory), which is synced and
/// renamed into place only when complete. On error no file is left at `path` (an existing one is
/// untouched).
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<(), WriteError> {
    let tmp = temp_file_beside(path)?.into_temp_path();
    safetensors::serialize_to_file(tensors.iter().map(|(k, t)| (k.as_str(), t)), Some(metadata.clone()), &tmp)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The safetensors bytes of `tensors` with the given `__metadata__`.
pub fn serialize_safetensors(tensors: &[(String, Tensor)], metadata: &HashMap<String, String>) -> Result<Vec<u8>, WriteError> {
    Ok(safetensors::serialize(tensors.iter().map(|(k, t)| (k.as_str(), t)), Some(metadata.clone()))?)
}

/// Writes `bytes` to `path` through a synced temporary file in the same directory and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = temp_file_beside(path)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A hidden temporary file in the directory of `path` (so that the final rename stays on one
/// file system); removed automatically unless persisted.
fn temp_file_beside(path: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let prefix = format!(".{}.", path.file_name().and_then(|n| n.to_str()).unwrap_or("out"));
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // Output files get ordinary permissions (tempfile's default is owner-only).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    builder.tempfile_in(dir)
}

/// The sha256 of a file, as lowercase hex, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
