//! Weights files: a converted `.safetensors` (its architecture recorded in the metadata and
//! checked against the tensors), or a checkpoint in any format [`crate::convert`] reads,
//! converted in memory.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use snzoo_model::ResNetConfig;

use crate::{Error, Result};

/// What the header of a safetensors file says: tensor shapes, types and where their bytes lie,
/// and `__metadata__`.
#[derive(Debug, Clone)]
pub struct SafetensorsInfo {
    pub shapes: BTreeMap<String, Vec<usize>>,
    pub dtypes: BTreeMap<String, safetensors::Dtype>,
    /// Each tensor's bytes, [begin, end) in the file (validated against its length).
    pub spans: BTreeMap<String, (u64, u64)>,
    pub metadata: HashMap<String, String>,
}

/// Maps a regular file read-only.
fn map(path: &Path) -> Result<memmap2::Mmap> {
    let file = snzoo_fs::open_regular(path)?;
    // SAFETY: the map is read-only and snzoo never writes a file in place (outputs are renamed
    // over their target, leaving a mapped inode intact). Another program truncating the file
    // while it is mapped could still fault, as with any memory-mapped reader (candle's included).
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| snzoo_fs::FsError::Io { op: "map", path: path.to_path_buf(), source: e }.into())
}

/// Reads and checks the header of a safetensors file (with the safetensors crate: offsets,
/// sizes and the buffer's length are validated) without touching the tensor data.
pub fn read_safetensors_info(path: &Path) -> Result<SafetensorsInfo> {
    let mmap = map(path)?;
    let (header, meta) =
        safetensors::SafeTensors::read_metadata(&mmap).map_err(|source| Error::Safetensors { path: path.to_path_buf(), source })?;
    // The data follows the 8-byte header length and the header.
    let start = 8 + header as u64;
    let mut shapes = BTreeMap::new();
    let mut dtypes = BTreeMap::new();
    let mut spans = BTreeMap::new();
    for (name, info) in meta.tensors() {
        shapes.insert(name.clone(), info.shape.clone());
        dtypes.insert(name.clone(), info.dtype);
        let (begin, end) = info.data_offsets;
        spans.insert(name, (start + begin as u64, start + end as u64));
    }
    Ok(SafetensorsInfo { shapes, dtypes, spans, metadata: meta.metadata().clone().unwrap_or_default() })
}

/// Whether a file starts like a safetensors file (a header length, then `{`).
pub fn is_safetensors(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut head = [0u8; 9];
    let mut f = snzoo_fs::open_regular(path)?;
    let n = f.read(&mut head).map_err(|e| snzoo_fs::FsError::Io { op: "read", path: path.to_path_buf(), source: e })?;
    Ok(n == 9 && head[8] == b'{')
}

/// The architecture of a safetensors file's tensors. It is inferred from the tensors (which
/// bounds the work by the file's own size); recorded metadata must agree with it.
pub fn architecture(path: &Path, info: &SafetensorsInfo) -> Result<ResNetConfig> {
    let groups = match info.metadata.get("groups") {
        Some(g) => {
            Some(g.parse::<usize>().map_err(|_| Error::BadMetadata { path: path.to_path_buf(), message: format!("`groups` is `{g}`") })?)
        }
        None => None,
    };
    let style = match info.metadata.get("style") {
        Some(s) => s.parse().map_err(|e| Error::BadMetadata { path: path.to_path_buf(), message: e })?,
        None => snzoo_model::Style::Torchvision,
    };
    // The protocol's tensors (a mean image) are not the network's.
    let shapes: std::collections::BTreeMap<String, Vec<usize>> =
        info.shapes.iter().filter(|(k, _)| !crate::protocol::is_protocol_tensor(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let inferred = ResNetConfig::infer_styled(&shapes, groups, style)
        .map_err(|source| Error::NotAModel { path: path.to_path_buf(), source: Box::new(source) })?;
    if info.metadata.contains_key("arch") {
        let declared = ResNetConfig::from_metadata(&info.metadata)
            .map_err(|e| Error::BadMetadata { path: path.to_path_buf(), message: format!("bad snzoo metadata: {e}") })?;
        if declared != inferred {
            return Err(Error::BadMetadata {
                path: path.to_path_buf(),
                message: format!(
                    "the metadata describes {} (blocks {:?}, width {}, {} classes) but the tensors are {} (blocks {:?}, width {}, {} classes)",
                    declared.arch_name(),
                    declared.layers,
                    declared.width,
                    declared.num_classes,
                    inferred.arch_name(),
                    inferred.layers,
                    inferred.width,
                    inferred.num_classes
                ),
            });
        }
    }
    Ok(inferred)
}

/// Every tensor of the safetensors file `path` (its header `info`) in f32 on `device`, each
/// checked floating-point and finite.
///
/// The tensors are read from the file one at a time into their own buffers rather than copied
/// out of a memory map: a map's pages stay resident (and counted in the process's memory) while
/// it lives, so loading through one peaks at twice the weights; this way the peak is the
/// weights plus one tensor's bytes.
fn read_tensors(path: &Path, info: &SafetensorsInfo, device: &Device) -> Result<HashMap<String, candle_core::Tensor>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = snzoo_fs::open_regular(path)?;
    let io = |op: &'static str| move |source| Error::from(snzoo_fs::FsError::Io { op, path: path.to_path_buf(), source });
    let bad = |source| Error::BadTensor { path: path.to_path_buf(), source };
    // In file order: the reads go forward, and a bad file's first bad tensor is named.
    let mut order: Vec<(&String, &(u64, u64))> = info.spans.iter().collect();
    order.sort_by_key(|&(_, span)| span);
    let mut tensors = HashMap::with_capacity(order.len());
    let mut bytes = Vec::new();
    for (name, &(begin, end)) in order {
        let stored = info.dtypes[name];
        let Some(d) = snzoo_convert::DType::from_safetensors(stored) else {
            return Err(Error::Other(format!("{}: tensor `{name}` has the unsupported dtype {stored:?}", path.display())));
        };
        let dtype = match d {
            snzoo_convert::DType::F64 => DType::F64,
            snzoo_convert::DType::F32 => DType::F32,
            snzoo_convert::DType::F16 => DType::F16,
            snzoo_convert::DType::BF16 => DType::BF16,
            _ => return Err(bad(snzoo_convert::InvalidTensor::NotFloat { name: name.clone(), dtype: d })),
        };
        bytes.clear();
        bytes.resize((end - begin) as usize, 0u8);
        file.seek(SeekFrom::Start(begin)).map_err(io("seek"))?;
        file.read_exact(&mut bytes).map_err(io("read"))?;
        if let Some((index, v)) = snzoo_convert::first_nonfinite(d, &bytes) {
            return Err(bad(snzoo_convert::InvalidTensor::NonFinite { name: name.clone(), index, value: format!("{v}") }));
        }
        let t = candle_core::Tensor::from_raw_buffer(&bytes, dtype, &info.shapes[name], device)?.to_dtype(DType::F32)?;
        tensors.insert(name.clone(), t);
    }
    Ok(tensors)
}

/// Every tensor of a weights file in f32 with its architecture and metadata (for training).
pub struct StateTensors {
    pub config: ResNetConfig,
    pub tensors: HashMap<String, candle_core::Tensor>,
    pub metadata: HashMap<String, String>,
}

/// Weights ready to build a network from.
pub struct Weights {
    pub path: PathBuf,
    pub config: ResNetConfig,
    /// The file's `__metadata__` (for a checkpoint: what its conversion would record).
    pub metadata: HashMap<String, String>,
    vb: VarBuilder<'static>,
}

impl Weights {
    /// Opens a weights file: `.safetensors` (its tensors read into memory) or a checkpoint
    /// (converted in memory). Architecture, tensor types and values are checked before anything is built.
    pub fn open(path: &Path, device: &Device) -> Result<Weights> {
        if is_safetensors(path)? {
            let info = read_safetensors_info(path)?;
            let config = architecture(path, &info)?;
            let vb = VarBuilder::from_tensors(read_tensors(path, &info, device)?, DType::F32, device);
            return Ok(Weights { path: path.to_path_buf(), config, metadata: info.metadata, vb });
        }
        let converted = crate::convert::convert_checkpoint(path, None)?;
        let bytes = snzoo_convert::serialize_safetensors(&converted.tensors, &converted.metadata)
            .map_err(|source| Error::Write { path: path.to_path_buf(), source })?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, device)?;
        Ok(Weights { path: path.to_path_buf(), config: converted.config, metadata: converted.metadata, vb })
    }

    /// The `VarBuilder` over the tensors (state-dict names, f32).
    pub fn var_builder(&self) -> VarBuilder<'static> {
        self.vb.clone()
    }

    /// Every tensor, by state-dict name, in f32 on `device` (for training), with the
    /// architecture and the file's metadata.
    pub fn tensors(path: &Path, device: &Device) -> Result<StateTensors> {
        if is_safetensors(path)? {
            let info = read_safetensors_info(path)?;
            let config = architecture(path, &info)?;
            let tensors = read_tensors(path, &info, device)?;
            return Ok(StateTensors { config, tensors, metadata: info.metadata });
        }
        let converted = crate::convert::convert_checkpoint(path, Some(snzoo_convert::DType::F32))?;
        let mut tensors = HashMap::new();
        for (k, t) in converted.tensors {
            let v: Vec<f32> = t.to_f64_vec().into_iter().map(|x| x as f32).collect();
            tensors.insert(k, candle_core::Tensor::from_vec(v, t.shape.clone(), device)?);
        }
        Ok(StateTensors { config: converted.config, tensors, metadata: converted.metadata })
    }
}
