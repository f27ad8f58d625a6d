//! Reading `torch.save` files: the zip format (torch ≥ 1.6) and the legacy format (torch ≤ 1.5).
//!
//! Legacy layout: five consecutive pickles — the magic number `0x1950a86a20f9469cfc6c`, the protocol
//! version `1001`, a system-info dict, the saved object (storages as persistent ids), the list of
//! storage keys — then, for each key in that list, an 8-byte little-endian element count followed by
//! the storage's raw bytes.
//!
//! Zip layout: `<name>/data.pkl` (the object), `<name>/data/<key>` (one entry per storage),
//! `<name>/byteorder` (absent before torch 1.10; absent means little-endian).

use std::collections::HashMap;
use std::io::{BufReader, Read, Seek, SeekFrom};

use crate::pickle::{read_pickle_limited, Object, PersistentIds, Pickle, PickleError, PickleLimits, StorageRef, TensorRef, Value};
use crate::{DType, Tensor};

const LEGACY_MAGIC_BYTES: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_PROTOCOL: i64 = 1001;

/// Errors raised while reading a checkpoint. The caller adds the file name.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("I/O error")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Fs(#[from] snzoo_fs::FsError),
    #[error("not a torch.save checkpoint: {0}")]
    NotACheckpoint(String),
    #[error("unsupported checkpoint: {0}")]
    Unsupported(String),
    #[error("in the pickled object")]
    Pickle(#[from] PickleError),
    #[error("zip archive: {0}")]
    Zip(String),
    #[error("file ends early (truncated?): {0}")]
    Truncated(String),
    #[error("corrupt checkpoint: {0}")]
    Corrupt(String),
    #[error("no state dict found: {0}")]
    NoStateDict(String),
}

fn corrupt(msg: impl Into<String>) -> CheckpointError {
    CheckpointError::Corrupt(msg.into())
}

/// Which `torch.save` format a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorchFormat {
    /// torch ≥ 1.6: a zip archive.
    Zip,
    /// torch ≤ 1.5 (and `_use_new_zipfile_serialization=False`): consecutive pickles + raw storages.
    Legacy,
}

impl std::fmt::Display for TorchFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TorchFormat::Zip => "zip",
            TorchFormat::Legacy => "legacy",
        })
    }
}

/// What a checkpoint holds besides its tensors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckpointInfo {
    /// The state dict was found inside a training dict under this key (`state_dict`, ...).
    pub wrapped_in: Option<String>,
    /// The DataParallel `module.` prefix was stripped from every key.
    pub stripped_module_prefix: bool,
    pub epoch: Option<i64>,
    /// The `arch` (or, in the SN release, `model`) entry of a training dict.
    pub arch: Option<String>,
    pub best_prec1: Option<f64>,
    /// Top-level entries that were not loaded (e.g. `optimizer`).
    pub skipped: Vec<String>,
}

/// A state dict read from a `torch.save` file.
#[derive(Debug, Clone)]
pub struct TorchCheckpoint {
    pub format: TorchFormat,
    /// Tensors in the order of the state dict, with their PyTorch key names.
    pub tensors: Vec<(String, Tensor)>,
    pub info: CheckpointInfo,
}

/// Reads the state dict of a `torch.save` file at `path` (see [`read_torch_checkpoint_from`]).
pub fn read_torch_checkpoint(path: &std::path::Path) -> Result<TorchCheckpoint, CheckpointError> {
    let file = snzoo_fs::open_regular(path)?;
    read_torch_checkpoint_from(BufReader::with_capacity(1 << 16, file))
}

/// Reads the state dict of a `torch.save` stream, in either format.
///
/// A training dict (`{'epoch', 'arch', 'state_dict', 'best_prec1', 'optimizer'}`) is unwrapped:
/// only the storages of the state dict are read, the optimizer's are skipped. A `module.` prefix
/// common to every key is stripped.
pub fn read_torch_checkpoint_from<R: Read + Seek>(mut reader: R) -> Result<TorchCheckpoint, CheckpointError> {
    let len = reader.seek(SeekFrom::End(0))?;
    reader.seek(SeekFrom::Start(0))?;
    let mut head = [0u8; 4];
    let n = read_up_to(&mut reader, &mut head)?;
    reader.seek(SeekFrom::Start(0))?;
    if n == 4 && head == *b"PK\x03\x04" {
        read_zip(reader, len)
    } else if n >= 1 && head[0] == 0x80 {
        read_legacy(reader, len)
    } else if n == 0 {
        Err(CheckpointError::NotACheckpoint("the file is empty".into()))
    } else {
        Err(CheckpointError::NotACheckpoint("neither a zip archive nor a pickle stream".into()))
    }
}

fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// Legacy format

/// The pickles of a file can hold no more bytes than the file.
fn limits_for(len: u64) -> PickleLimits {
    PickleLimits { bytes: len, ..PickleLimits::default() }
}

fn read_pickle<R: Read>(reader: &mut R, persistent: PersistentIds, len: u64) -> Result<Pickle, PickleError> {
    read_pickle_limited(reader, persistent, limits_for(len))
}

fn read_legacy<R: Read + Seek>(mut reader: R, len: u64) -> Result<TorchCheckpoint, CheckpointError> {
    let magic = read_pickle(&mut reader, PersistentIds::Refuse, len)?;
    let is_magic = match &magic.root {
        Some(Value::BigInt(b)) => b.as_slice() == LEGACY_MAGIC_BYTES,
        _ => false,
    };
    if !is_magic {
        if reader.stream_position()? == len || matches!(magic.root, Some(Value::Obj(_))) {
            return Err(CheckpointError::Unsupported("a plain pickle, not a torch.save file (no legacy magic number)".into()));
        }
        return Err(CheckpointError::NotACheckpoint("the legacy magic number is missing".into()));
    }
    let protocol = read_pickle(&mut reader, PersistentIds::Refuse, len)?;
    if protocol.root != Some(Value::Int(LEGACY_PROTOCOL)) {
        return Err(CheckpointError::Unsupported(format!("legacy protocol version {:?} (expected {LEGACY_PROTOCOL})", protocol.root)));
    }
    let sys_info = read_pickle(&mut reader, PersistentIds::Refuse, len)?;
    if let Some(root) = &sys_info.root {
        if sys_info.dict_get(root, "little_endian") == Some(&Value::Bool(false)) {
            return Err(CheckpointError::Unsupported("saved on a big-endian machine".into()));
        }
    }
    let object = read_pickle(&mut reader, PersistentIds::TorchStorages, len)?;
    let keys_pickle = read_pickle(&mut reader, PersistentIds::Refuse, len)?;
    let keys: Vec<String> = match keys_pickle.root.as_ref().and_then(|r| keys_pickle.object(r)) {
        Some(Object::List(items)) => items
            .iter()
            .map(|k| match k {
                Value::Str(s) => Ok(s.to_string()),
                Value::Int(i) => Ok(i.to_string()),
                _ => Err(corrupt("storage key list holds a non-string")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(corrupt("the storage key list is missing")),
    };

    // Element sizes of every storage named in the object.
    let mut dtypes: HashMap<&str, DType> = HashMap::new();
    for o in &object.objects {
        if let Object::Storage(s) = o {
            if let Some(prev) = dtypes.insert(&s.key, s.dtype) {
                if prev != s.dtype {
                    return Err(corrupt(format!("storage {} is named with two types", s.key)));
                }
            }
        }
    }
    // Walk the storage records: (count: u64 LE, count × element size bytes) each.
    let mut located: HashMap<String, (u64, u64)> = HashMap::new();
    let mut pos = reader.stream_position()?;
    for key in &keys {
        let dtype = *dtypes.get(key.as_str()).ok_or_else(|| corrupt(format!("storage {key} is listed but never used")))?;
        if pos + 8 > len {
            return Err(CheckpointError::Truncated(format!("storage {key} is missing")));
        }
        reader.seek(SeekFrom::Start(pos))?;
        let mut count = [0u8; 8];
        reader.read_exact(&mut count)?;
        let count = u64::from_le_bytes(count);
        let bytes = count
            .checked_mul(dtype.size() as u64)
            .filter(|b| pos + 8 + b <= len)
            .ok_or_else(|| CheckpointError::Truncated(format!("storage {key} claims {count} elements, more than the file holds")))?;
        located.insert(key.clone(), (pos + 8, count));
        pos += 8 + bytes;
    }
    let source = move |s: &StorageRef, needed: u64| -> Result<Vec<u8>, CheckpointError> {
        let &(start, count) = located.get(&s.key).ok_or_else(|| corrupt(format!("storage {} has no data in the file", s.key)))?;
        if count < needed {
            return Err(corrupt(format!("storage {} holds {count} elements, the tensors need {needed}", s.key)));
        }
        reader.seek(SeekFrom::Start(start))?;
        read_bytes(&mut reader, count * s.dtype.size() as u64, &s.key)
    };
    assemble(TorchFormat::Legacy, &object, source)
}

fn read_bytes<R: Read>(r: &mut R, n: u64, key: &str) -> Result<Vec<u8>, CheckpointError> {
    // Callers have checked `n` against the file's length; still grow with the data actually read.
    let mut buf = Vec::with_capacity(n.min(1 << 26) as usize);
    r.take(n).read_to_end(&mut buf)?;
    if (buf.len() as u64) < n {
        return Err(CheckpointError::Truncated(format!("storage {key} is cut short")));
    }
    Ok(buf)
}

// ---------------------------------------------------------------------------------------------
// Zip format

fn read_zip<R: Read + Seek>(reader: R, len: u64) -> Result<TorchCheckpoint, CheckpointError> {
    let zerr = |e: zip::result::ZipError| CheckpointError::Zip(e.to_string());
    // `torch.save` archives start at byte 0. The zip crate's search for an offset (for archives
    // with data prepended) misreads some valid archives, e.g. those whose entry prefix is 21
    // characters long; a fixed offset of 0 reads them all.
    let config = zip::read::Config { archive_offset: zip::read::ArchiveOffset::Known(0) };
    let mut archive = zip::ZipArchive::with_config(config, reader).map_err(zerr)?;
    let pkl = archive
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .filter(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
        .min_by_key(|n| n.len())
        .ok_or_else(|| CheckpointError::NotACheckpoint("zip archive without data.pkl".into()))?;
    let prefix = pkl.strip_suffix("data.pkl").unwrap_or("").to_string();
    if let Ok(mut f) = archive.by_name(&format!("{prefix}byteorder")) {
        let mut order = String::new();
        f.by_ref().take(16).read_to_string(&mut order).map_err(|e| corrupt(format!("byteorder: {e}")))?;
        if order.trim() != "little" {
            return Err(CheckpointError::Unsupported(format!("byte order `{}`", order.trim())));
        }
    }
    let object = {
        let mut f = archive.by_name(&pkl).map_err(zerr)?;
        // torch.save stores data.pkl uncompressed: a pickle that inflates beyond the file's own
        // size is a decompression bomb.
        read_pickle(&mut f, PersistentIds::TorchStorages, len)?
    };
    let source = move |s: &StorageRef, needed: u64| -> Result<Vec<u8>, CheckpointError> {
        let name = format!("{prefix}data/{}", s.key);
        let mut f = archive.by_name(&name).map_err(|_| corrupt(format!("storage entry {name} is missing")))?;
        let bytes = needed.checked_mul(s.dtype.size() as u64).ok_or_else(|| corrupt(format!("storage {} too large", s.key)))?;
        if f.compression() != zip::CompressionMethod::Stored {
            return Err(CheckpointError::Unsupported(format!("storage entry {name} is compressed")));
        }
        if f.size() < bytes || bytes > len {
            return Err(corrupt(format!("storage {} holds {} bytes, the tensors need {bytes}", s.key, f.size())));
        }
        read_bytes(&mut f, bytes, &s.key).map_err(|e| match e {
            CheckpointError::Io(io) => CheckpointError::Zip(format!("storage {}: {io}", s.key)),
            e => e,
        })
    };
    assemble(TorchFormat::Zip, &object, source)
}

// ---------------------------------------------------------------------------------------------
// From the pickled object to named tensors

/// Keys under which training scripts keep the state dict, in order of preference.
const STATE_DICT_KEYS: [&str; 4] = ["state_dict", "model_state_dict", "model", "net"];

fn assemble<F>(format: TorchFormat, pickle: &Pickle, mut source: F) -> Result<TorchCheckpoint, CheckpointError>
where
    F: FnMut(&StorageRef, u64) -> Result<Vec<u8>, CheckpointError>,
{
    let root = pickle.root.as_ref().ok_or_else(|| CheckpointError::NoStateDict("empty pickle".into()))?;
    let top = pickle.dict(root).ok_or_else(|| CheckpointError::NoStateDict("the saved object is not a dict".into()))?;
    let mut info = CheckpointInfo::default();
    let mut state = root;
    for key in STATE_DICT_KEYS {
        if let Some(v) = pickle.dict_get(root, key).filter(|v| pickle.dict(v).is_some()) {
            info.wrapped_in = Some(key.to_string());
            state = v;
            break;
        }
    }

    // Collect the tensor entries, and the metadata of a training dict.
    let mut entries: Vec<(String, &TensorRef)> = Vec::new();
    for (k, v) in pickle.dict(state).unwrap_or_default() {
        let name = match k {
            Value::Str(s) => s.to_string(),
            _ => return Err(CheckpointError::NoStateDict("a state dict key is not a string".into())),
        };
        match pickle.tensor(v) {
            Some(t) => entries.push((name, t)),
            None => {
                return Err(CheckpointError::NoStateDict(if info.wrapped_in.is_some() {
                    format!("entry `{name}` of the state dict is not a tensor")
                } else {
                    format!("the top-level entry `{name}` is neither a tensor nor a known state-dict key")
                }))
            }
        }
    }
    if entries.is_empty() {
        return Err(CheckpointError::NoStateDict("the state dict holds no tensors".into()));
    }
    let mut best_prec1_tensor = None;
    if let Some(wrapper) = &info.wrapped_in {
        for (k, v) in top {
            let Value::Str(k) = k else { continue };
            match (&**k, v) {
                (k, _) if k == wrapper => {}
                ("epoch", Value::Int(e)) => info.epoch = Some(*e),
                ("arch" | "model", Value::Str(s)) => info.arch = Some(s.to_string()),
                ("best_prec1" | "best_acc1", Value::Float(f)) => info.best_prec1 = Some(*f),
                ("best_prec1" | "best_acc1", Value::Int(i)) => info.best_prec1 = Some(*i as f64),
                ("best_prec1" | "best_acc1", v) if pickle.tensor(v).is_some() => best_prec1_tensor = pickle.tensor(v),
                (k, _) => info.skipped.push(k.to_string()),
            }
        }
    }

    // Strip the DataParallel prefix when every key carries it.
    if entries.iter().all(|(k, _)| k.starts_with("module.")) {
        info.stripped_module_prefix = true;
        for (k, _) in entries.iter_mut() {
            *k = k["module.".len()..].to_string();
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (k, _) in &entries {
        if !seen.insert(k.as_str()) {
            return Err(corrupt(format!("key `{k}` appears twice")));
        }
    }

    // Read each storage once; drop it after its last tensor.
    let mut uses: HashMap<&str, usize> = HashMap::new();
    let mut needed: HashMap<&str, u64> = HashMap::new();
    for (name, t) in &entries {
        *uses.entry(&t.storage.key).or_default() += 1;
        let end = tensor_extent(t).map_err(|m| corrupt(format!("tensor `{name}`: {m}")))?;
        let n = needed.entry(&t.storage.key).or_default();
        *n = (*n).max(end);
    }
    let mut cache: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, t) in &entries {
        let key = t.storage.key.as_str();
        if !cache.contains_key(key) {
            let data = source(&t.storage, needed[key])?;
            cache.insert(key.to_string(), data);
        }
        let left = uses.get_mut(key).expect("counted above");
        *left -= 1;
        let tensor = if *left == 0 {
            let data = cache.remove(key).expect("inserted above");
            gather(t, data)
        } else {
            gather_ref(t, &cache[key])
        };
        tensors.push((name.clone(), tensor));
    }
    if let Some(t) = best_prec1_tensor {
        if let Ok(end) = tensor_extent(t) {
            if end <= 1 && t.shape.iter().product::<u64>() == 1 {
                if let Ok(data) = source(&t.storage, t.offset + 1) {
                    info.best_prec1 = gather_ref(t, &data).scalar_f64();
                }
            }
        }
    }
    Ok(TorchCheckpoint { format, tensors, info })
}

/// One past the largest storage element a tensor touches (0 for an empty tensor), checking that the
/// tensor holds no more elements than its storage: expanded (stride-0) views could otherwise
/// multiply a small file into an enormous allocation.
fn tensor_extent(t: &TensorRef) -> Result<u64, String> {
    let numel = t.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or("element count overflows")?;
    if numel == 0 {
        return Ok(0);
    }
    let mut last = t.offset;
    for (&d, &s) in t.shape.iter().zip(&t.stride) {
        last = (d - 1).checked_mul(s).and_then(|x| x.checked_add(last)).ok_or("strides overflow")?;
    }
    let end = last + 1;
    if end > t.storage.numel {
        return Err(format!("reaches element {end} of a storage of {} elements (outside its storage)", t.storage.numel));
    }
    if numel > t.storage.numel {
        return Err(format!("holds {numel} elements, more than its storage's {}", t.storage.numel));
    }
    Ok(end)
}

fn is_contiguous(t: &TensorRef) -> bool {
    let mut expected = 1u64;
    for (&d, &s) in t.shape.iter().zip(&t.stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected *= d;
    }
    true
}

/// Copies a (bounds-checked) strided view out of its storage bytes into a contiguous tensor.
fn gather_ref(t: &TensorRef, storage: &[u8]) -> Tensor {
    let es = t.storage.dtype.size();
    let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
    let numel: usize = shape.iter().product();
    if numel == 0 {
        return Tensor { dtype: t.storage.dtype, shape, data: Vec::new() };
    }
    if is_contiguous(t) {
        let start = t.offset as usize * es;
        return Tensor { dtype: t.storage.dtype, shape, data: storage[start..start + numel * es].to_vec() };
    }
    let mut data = Vec::with_capacity(numel * es);
    let mut index = vec![0usize; shape.len()];
    for _ in 0..numel {
        let e = t.offset as usize + index.iter().zip(&t.stride).map(|(&i, &s)| i * s as usize).sum::<usize>();
        data.extend_from_slice(&storage[e * es..(e + 1) * es]);
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Tensor { dtype: t.storage.dtype, shape, data }
}

/// Like [`gather_ref`], reusing the storage's buffer when the tensor is all of it.
fn gather(t: &TensorRef, mut storage: Vec<u8>) -> Tensor {
    let es = t.storage.dtype.size();
    let numel: u64 = t.shape.iter().product();
    if is_contiguous(t) && t.offset == 0 && numel > 0 {
        storage.truncate(numel as usize * es);
        return Tensor { dtype: t.storage.dtype, shape: t.shape.iter().map(|&d| d as usize).collect(), data: storage };
    }
    gather_ref(t, &storage)
}
