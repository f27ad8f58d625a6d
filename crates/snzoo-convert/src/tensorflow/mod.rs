//! Reading TensorFlow checkpoints: the V1 format (one table file of `SavedTensorSlices`, e.g.
//! TF-Slim's `resnet_v1_50.ckpt` of 2016) and V2 bundles (`PREFIX.index` + `PREFIX.data-*`).
//!
//! * V1: a [`table`] whose entry `""` holds the `SavedTensorSliceMeta` (every tensor's name,
//!   shape, dtype and slices) and whose other entries hold one `SavedSlice` each (a slice of one
//!   tensor, its values in a `TensorProto`'s typed repeated field).
//! * V2: the `.index` table maps `""` to a `BundleHeaderProto` and each tensor name to a
//!   `BundleEntryProto` (dtype, shape, shard, offset, size, masked crc32c of the bytes in the
//!   shard). A partitioned tensor's entry lists its slices, each stored under its
//!   [`ordered_code`] slice key.
//!
//! Slices are assembled into whole tensors; every slice must lie inside its tensor and the
//! slices must cover it exactly once. Sizes are checked against the files before anything is
//! allocated. Tensors of types a model cannot use (strings, resources, complex, quantized) are
//! listed in [`TfCheckpoint::skipped`] rather than read.

pub mod ordered_code;
pub mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::proto::tensorflow as pb;
use crate::{DType, Tensor};
pub use table::TableError;

/// Which checkpoint format a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TfFormat {
    V1,
    V2,
}

impl std::fmt::Display for TfFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TfFormat::V1 => "V1",
            TfFormat::V2 => "V2",
        })
    }
}

/// A TensorFlow checkpoint's tensors.
#[derive(Debug, Clone)]
pub struct TfCheckpoint {
    pub format: TfFormat,
    /// Sorted by name.
    pub tensors: Vec<(String, Tensor)>,
    /// Tensors not read, with the reason (their dtype).
    pub skipped: Vec<(String, String)>,
}

/// Why a TensorFlow checkpoint cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TfError {
    #[error(transparent)]
    Fs(#[from] snzoo_fs::FsError),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("corrupt checkpoint: {0}")]
    Corrupt(String),
    #[error("unsupported checkpoint: {0}")]
    Unsupported(String),
}

fn corrupt(m: impl Into<String>) -> TfError {
    TfError::Corrupt(m.into())
}

/// Where the checkpoint named by a path lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TfLocation {
    /// A V1 checkpoint file.
    V1(PathBuf),
    /// A V2 bundle's prefix (`PREFIX.index`, `PREFIX.data-NNNNN-of-NNNNN`).
    V2(PathBuf),
}

/// The checkpoint a user's path names: a V1 file, or a V2 bundle given by its prefix (as
/// TensorFlow names checkpoints), its `.index` or one of its `.data-*` shards.
pub fn locate(path: &Path) -> TfLocation {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let with_name = |n: &str| path.with_file_name(n);
    if let Some(prefix) = name.strip_suffix(".index") {
        return TfLocation::V2(with_name(prefix));
    }
    if let Some(i) = name.rfind(".data-") {
        let tail = &name[i + 6..];
        let b = tail.as_bytes();
        if b.len() == 14 && &tail[5..9] == "-of-" && b[..5].iter().chain(&b[9..]).all(u8::is_ascii_digit) {
            return TfLocation::V2(with_name(&name[..i]));
        }
    }
    let index = with_name(&format!("{name}.index"));
    if !path.is_file() && index.is_file() {
        return TfLocation::V2(path.to_path_buf());
    }
    TfLocation::V1(path.to_path_buf())
}

/// The `.index` file of a V2 prefix.
pub fn index_path(prefix: &Path) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".index");
    PathBuf::from(s)
}

/// The data shard `shard` of `num` of a V2 prefix.
pub fn shard_path(prefix: &Path, shard: usize, num: usize) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(format!(".data-{shard:05}-of-{num:05}"));
    PathBuf::from(s)
}

/// Reads the checkpoint a path names (see [`locate`]).
pub fn read_tf_checkpoint(path: &Path) -> Result<TfCheckpoint, TfError> {
    match locate(path) {
        TfLocation::V1(p) => {
            let bytes = snzoo_fs::read_regular(&p, u64::MAX)?;
            read_v1(&bytes)
        }
        TfLocation::V2(prefix) => read_v2(&prefix),
    }
}

/// The dtype of a TensorFlow `DataType`, where a model tensor can have it.
fn dtype_of(t: i32) -> Result<DType, String> {
    use pb::DataType as D;
    Ok(match D::try_from(t) {
        Ok(D::DtFloat) => DType::F32,
        Ok(D::DtDouble) => DType::F64,
        Ok(D::DtHalf) => DType::F16,
        Ok(D::DtBfloat16) => DType::BF16,
        Ok(D::DtInt64) => DType::I64,
        Ok(D::DtInt32) => DType::I32,
        Ok(D::DtInt16) => DType::I16,
        Ok(D::DtInt8) => DType::I8,
        Ok(D::DtUint8) => DType::U8,
        Ok(D::DtBool) => DType::Bool,
        Ok(d) => return Err(d.as_str_name().to_string()),
        Err(_) => return Err(format!("unknown DataType {t}")),
    })
}

/// The dimensions of a shape proto (all known and non-negative).
fn dims_of(name: &str, shape: Option<&pb::TensorShapeProto>) -> Result<Vec<usize>, TfError> {
    let shape = shape.ok_or_else(|| corrupt(format!("tensor `{name}` has no shape")))?;
    if shape.unknown_rank {
        return Err(corrupt(format!("tensor `{name}` has an unknown rank")));
    }
    if shape.dim.len() > 32 {
        return Err(corrupt(format!("tensor `{name}` has {} dimensions", shape.dim.len())));
    }
    shape
        .dim
        .iter()
        .map(|d| usize::try_from(d.size).map_err(|_| corrupt(format!("tensor `{name}` has dimension size {}", d.size))))
        .collect()
}

/// Elements of `dims`, if they fit `limit`.
fn numel(name: &str, dims: &[usize], limit: u64) -> Result<usize, TfError> {
    dims.iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n as u64 <= limit)
        .ok_or_else(|| corrupt(format!("tensor `{name}` of shape {dims:?} is larger than its file")))
}

/// A slice as per-dimension `(start, length)` ranges inside `dims`.
fn slice_ranges(name: &str, dims: &[usize], extents: &[(i64, Option<i64>)]) -> Result<Vec<(usize, usize)>, TfError> {
    if extents.is_empty() {
        return Ok(dims.iter().map(|&d| (0, d)).collect());
    }
    if extents.len() != dims.len() {
        return Err(corrupt(format!("tensor `{name}`: a slice of rank {} for shape {dims:?}", extents.len())));
    }
    extents
        .iter()
        .zip(dims)
        .map(|(&(start, length), &d)| {
            let full = matches!((start, length), (0 | -1, None | Some(-1)));
            let (s, l) = match length {
                _ if full => (0, d),
                Some(l) if start >= 0 && l >= 0 => (start as usize, l as usize),
                _ => return Err(corrupt(format!("tensor `{name}`: slice extent ({start}, {length:?})"))),
            };
            if s.checked_add(l).is_none_or(|e| e > d) {
                return Err(corrupt(format!("tensor `{name}`: slice [{s}, {}) outside dimension {d}", s.saturating_add(l))));
            }
            Ok((s, l))
        })
        .collect()
}

/// A slice's per-dimension `(start, length)`, the length absent (or −1) for a whole dimension.
type Extents = Vec<(i64, Option<i64>)>;

fn proto_extents(s: &pb::TensorSliceProto) -> Extents {
    use pb::tensor_slice_proto::extent::HasLength;
    s.extent.iter().map(|e| (e.start, e.has_length.map(|HasLength::Length(l)| l))).collect()
}

/// A tensor being assembled from slices.
struct Assembly {
    dims: Vec<usize>,
    dtype: DType,
    data: Vec<u8>,
    /// Elements written so far, and which.
    filled: usize,
    seen: Vec<bool>,
}

impl Assembly {
    fn new(name: &str, dims: Vec<usize>, dtype: DType, limit: u64) -> Result<Self, TfError> {
        let n = numel(name, &dims, limit)?;
        Ok(Self { dims, dtype, data: vec![0; n * dtype.size()], filled: 0, seen: vec![false; n] })
    }

    /// Copies `bytes` (the slice's elements, row-major) into place.
    fn put(&mut self, name: &str, ranges: &[(usize, usize)], bytes: &[u8]) -> Result<(), TfError> {
        let es = self.dtype.size();
        let count: usize = ranges.iter().map(|r| r.1).product();
        if bytes.len() != count * es {
            return Err(corrupt(format!("tensor `{name}`: a slice of {count} elements holds {} bytes", bytes.len())));
        }
        if count == 0 {
            return Ok(());
        }
        let rank = self.dims.len();
        if rank == 0 {
            return self.run(name, 0, 1, bytes);
        }
        let run = ranges[rank - 1].1;
        let mut index = vec![0usize; rank - 1];
        for chunk in bytes.chunks_exact(run * es) {
            let mut offset = 0;
            for d in 0..rank {
                let i = if d + 1 < rank { ranges[d].0 + index[d] } else { ranges[d].0 };
                offset = offset * self.dims[d] + i;
            }
            self.run(name, offset, run, chunk)?;
            // Next outer index, odometer-style.
            for d in (0..rank - 1).rev() {
                index[d] += 1;
                if index[d] < ranges[d].1 {
                    break;
                }
                index[d] = 0;
            }
        }
        Ok(())
    }

    fn run(&mut self, name: &str, offset: usize, n: usize, bytes: &[u8]) -> Result<(), TfError> {
        if self.seen[offset..offset + n].iter().any(|&s| s) {
            return Err(corrupt(format!("tensor `{name}`: slices overlap")));
        }
        self.seen[offset..offset + n].fill(true);
        self.filled += n;
        let es = self.dtype.size();
        self.data[offset * es..(offset + n) * es].copy_from_slice(bytes);
        Ok(())
    }

    fn finish(self, name: &str) -> Result<Tensor, TfError> {
        if self.filled != self.seen.len() {
            return Err(corrupt(format!("tensor `{name}`: its slices cover {} of {} elements", self.filled, self.seen.len())));
        }
        Ok(Tensor { dtype: self.dtype, shape: self.dims, data: self.data })
    }
}

/// The little-endian bytes of a `TensorProto`'s values as `dtype`.
fn proto_values(t: &pb::TensorProto, dtype: DType) -> Result<Vec<u8>, TfError> {
    if !t.tensor_content.is_empty() {
        return Ok(t.tensor_content.clone());
    }
    let mut out = Vec::new();
    match dtype {
        DType::F32 => t.float_val.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::F64 => t.double_val.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::I64 => t.int64_val.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::I32 => t.int_val.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::I16 => t.int_val.iter().for_each(|&v| out.extend_from_slice(&(v as i16).to_le_bytes())),
        DType::I8 | DType::U8 => t.int_val.iter().for_each(|&v| out.push(v as u8)),
        DType::Bool => t.bool_val.iter().for_each(|&v| out.push(u8::from(v))),
        DType::F16 | DType::BF16 => t.half_val.iter().for_each(|&v| out.extend_from_slice(&(v as u16).to_le_bytes())),
    }
    Ok(out)
}

/// Reads a V1 checkpoint from its bytes.
pub fn read_v1(file: &[u8]) -> Result<TfCheckpoint, TfError> {
    let limit = file.len() as u64;
    let mut meta: Option<pb::SavedTensorSliceMeta> = None;
    let mut tensors: BTreeMap<String, Assembly> = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut skipped_names = std::collections::BTreeSet::new();
    table::for_each_entry::<TfError>(file, |key, value| {
        let record = pb::SavedTensorSlices::decode(value).map_err(|e| corrupt(format!("entry {:?}: {e}", String::from_utf8_lossy(key))))?;
        if key.is_empty() {
            let m = record.meta.ok_or_else(|| corrupt("the first entry holds no SavedTensorSliceMeta (not a V1 checkpoint?)"))?;
            for t in &m.tensor {
                let dims = dims_of(&t.name, t.shape.as_ref())?;
                match dtype_of(t.r#type) {
                    Ok(dtype) => {
                        if tensors.insert(t.name.clone(), Assembly::new(&t.name, dims, dtype, limit)?).is_some() {
                            return Err(corrupt(format!("tensor `{}` is described twice", t.name)));
                        }
                    }
                    Err(why) => {
                        skipped.push((t.name.clone(), why));
                        skipped_names.insert(t.name.clone());
                    }
                }
            }
            meta = Some(m);
            return Ok(());
        }
        if meta.is_none() {
            return Err(corrupt("data before the SavedTensorSliceMeta entry (not a V1 checkpoint?)"));
        }
        let slice = record.data.ok_or_else(|| corrupt(format!("entry {:?} holds no SavedSlice", String::from_utf8_lossy(key))))?;
        if skipped_names.contains(&slice.name) {
            return Ok(());
        }
        let a = tensors
            .get_mut(&slice.name)
            .ok_or_else(|| corrupt(format!("a slice of `{}`, which the metadata does not list", slice.name)))?;
        let extents = slice.slice.as_ref().map(proto_extents).unwrap_or_default();
        let ranges = slice_ranges(&slice.name, &a.dims, &extents)?;
        let data = slice.data.ok_or_else(|| corrupt(format!("a slice of `{}` without data", slice.name)))?;
        let bytes = proto_values(&data, a.dtype)?;
        a.put(&slice.name, &ranges, &bytes)
    })?;
    if meta.is_none() {
        return Err(corrupt("no SavedTensorSliceMeta entry (an empty table, or not a V1 checkpoint)"));
    }
    let tensors = tensors.into_iter().map(|(name, a)| a.finish(&name).map(|t| (name, t))).collect::<Result<_, _>>()?;
    Ok(TfCheckpoint { format: TfFormat::V1, tensors, skipped })
}

/// Reads a V2 bundle by its prefix.
pub fn read_v2(prefix: &Path) -> Result<TfCheckpoint, TfError> {
    let index_file = index_path(prefix);
    let index = snzoo_fs::read_regular(&index_file, 1 << 30)?;
    let mut header: Option<pb::BundleHeaderProto> = None;
    let mut entries: Vec<(String, pb::BundleEntryProto)> = Vec::new();
    let mut slices: BTreeMap<String, Vec<(Extents, pb::BundleEntryProto)>> = BTreeMap::new();
    table::for_each_entry::<TfError>(&index, |key, value| {
        if key.is_empty() {
            header = Some(pb::BundleHeaderProto::decode(value).map_err(|e| corrupt(format!("bundle header: {e}")))?);
            return Ok(());
        }
        let entry = pb::BundleEntryProto::decode(value).map_err(|e| corrupt(format!("entry {:?}: {e}", String::from_utf8_lossy(key))))?;
        if key[0] == 0 {
            let k = ordered_code::decode_slice_key(key).ok_or_else(|| corrupt(format!("undecodable slice key {key:02x?}")))?;
            let extents = k.extents.iter().map(|&(s, l)| (s, Some(l))).collect();
            slices.entry(k.name).or_default().push((extents, entry));
        } else {
            let name = String::from_utf8(key.to_vec()).map_err(|_| corrupt(format!("tensor name {key:02x?} is not UTF-8")))?;
            entries.push((name, entry));
        }
        Ok(())
    })?;
    let header = header.ok_or_else(|| corrupt(format!("{}: no bundle header (not a V2 index?)", index_file.display())))?;
    if header.endianness != pb::bundle_header_proto::Endianness::Little as i32 {
        return Err(TfError::Unsupported("a big-endian bundle".into()));
    }
    let num_shards = usize::try_from(header.num_shards)
        .ok()
        .filter(|&n| (1..=100_000).contains(&n))
        .ok_or_else(|| corrupt(format!("{} shards", header.num_shards)))?;
    // Every element takes at least one byte of some shard: the bound on what is allocated.
    let mut data_limit = 0u64;
    for id in 0..num_shards {
        let p = shard_path(prefix, id, num_shards);
        data_limit += std::fs::metadata(&p).map(|m| m.len()).map_err(|e| snzoo_fs::FsError::Io { op: "open", path: p, source: e })?;
    }
    let mut shards = Shards { prefix, num: num_shards, loaded: BTreeMap::new() };
    let mut tensors = Vec::new();
    let mut skipped = Vec::new();
    for (name, e) in &entries {
        let dtype = match dtype_of(e.dtype) {
            Ok(d) => d,
            Err(why) => {
                skipped.push((name.clone(), why));
                continue;
            }
        };
        let dims = dims_of(name, e.shape.as_ref())?;
        let mut a = Assembly::new(name, dims, dtype, data_limit)?;
        if e.slices.is_empty() {
            let bytes = shards.bytes(name, e, dtype, a.seen.len())?;
            let full: Vec<(usize, usize)> = a.dims.iter().map(|&d| (0, d)).collect();
            a.put(name, &full, &bytes)?;
        } else {
            let parts = slices.remove(name).unwrap_or_default();
            if parts.len() != e.slices.len() {
                return Err(corrupt(format!("tensor `{name}` lists {} slices; the index holds {}", e.slices.len(), parts.len())));
            }
            for (extents, se) in &parts {
                let ranges = slice_ranges(name, &a.dims, extents)?;
                let count = ranges.iter().map(|r| r.1).product();
                let bytes = shards.bytes(name, se, dtype, count)?;
                a.put(name, &ranges, &bytes)?;
            }
        }
        tensors.push((name.clone(), a.finish(name)?));
    }
    if let Some(name) = slices.keys().next() {
        return Err(corrupt(format!("slices of `{name}`, which the index does not list")));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(TfCheckpoint { format: TfFormat::V2, tensors, skipped })
}

/// The data shards of a bundle, read when first needed.
struct Shards<'a> {
    prefix: &'a Path,
    num: usize,
    loaded: BTreeMap<usize, Vec<u8>>,
}

impl Shards<'_> {
    /// The `count` elements of `dtype` of entry `e`, checked against the shard and the crc.
    fn bytes(&mut self, name: &str, e: &pb::BundleEntryProto, dtype: DType, count: usize) -> Result<Vec<u8>, TfError> {
        let id = usize::try_from(e.shard_id)
            .ok()
            .filter(|&i| i < self.num)
            .ok_or_else(|| corrupt(format!("tensor `{name}` in shard {} of {}", e.shard_id, self.num)))?;
        if let std::collections::btree_map::Entry::Vacant(v) = self.loaded.entry(id) {
            v.insert(snzoo_fs::read_regular(&shard_path(self.prefix, id, self.num), u64::MAX)?);
        }
        let data = &self.loaded[&id];
        let (Ok(off), Ok(size)) = (usize::try_from(e.offset), usize::try_from(e.size)) else {
            return Err(corrupt(format!("tensor `{name}`: offset {} size {}", e.offset, e.size)));
        };
        let end = off.checked_add(size).filter(|&end| end <= data.len()).ok_or_else(|| {
            corrupt(format!("tensor `{name}`: bytes [{off}, {}) outside its {}-byte data shard", off.saturating_add(size), data.len()))
        })?;
        if count.checked_mul(dtype.size()) != Some(size) {
            return Err(corrupt(format!("tensor `{name}`: {size} bytes for {count} elements of {dtype}")));
        }
        let bytes = &data[off..end];
        let crc = crc32c::crc32c(bytes).rotate_right(15).wrapping_add(0xa282_ead8);
        if crc != e.crc32c {
            return Err(corrupt(format!("tensor `{name}`: checksum mismatch (stored {:#010x}, computed {crc:#010x})", e.crc32c)));
        }
        Ok(bytes.to_vec())
    }
}
