//! Weights files: a converted `.safetensors` (its architecture recorded in the metadata and
//! checked against the tensors), or a checkpoint in any format [`crate::convert`] reads,
//! converted in memory.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use snzoo_model::ResNetConfig;

use crate::{Error, Result};

/// What the header of a safetensors file says: tensor shapes and types, and `__metadata__`.
#[derive(Debug, Clone)]
pub struct SafetensorsInfo {
    pub shapes: BTreeMap<String, Vec<usize>>,
    pub dtypes: BTreeMap<String, safetensors::Dtype>,
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
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&mmap).map_err(|source| Error::Safetensors { path: path.to_path_buf(), source })?;
    let mut shapes = BTreeMap::new();
    let mut dtypes = BTreeMap::new();
    for (name, info) in meta.tensors() {
        shapes.insert(name.clone(), info.shape.clone());
        dtypes.insert(name, info.dtype);
    }
    Ok(SafetensorsInfo { shapes, dtypes, metadata: meta.metadata().clone().unwrap_or_default() })
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

/// Checks that every tensor of a safetensors file is floating-point and finite.
fn check_values(path: &Path) -> Result<()> {
    let mmap = map(path)?;
    let st = safetensors::SafeTensors::deserialize(&mmap).map_err(|source| Error::Safetensors { path: path.to_path_buf(), source })?;
    for (name, view) in st.iter() {
        let bad = |source| Error::BadTensor { path: path.to_path_buf(), source };
        match snzoo_convert::DType::from_safetensors(view.dtype()) {
            Some(d) if d.is_float() => {
                if let Some((index, v)) = snzoo_convert::first_nonfinite(d, view.data()) {
                    return Err(bad(snzoo_convert::InvalidTensor::NonFinite { name: name.to_string(), index, value: format!("{v}") }));
                }
            }
            Some(d) => return Err(bad(snzoo_convert::InvalidTensor::NotFloat { name: name.to_string(), dtype: d })),
            None => return Err(Error::Other(format!("{}: tensor `{name}` has the unsupported dtype {:?}", path.display(), view.dtype()))),
        }
    }
    Ok(())
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
    /// Opens a weights file: `.safetensors` (memory-mapped) or a checkpoint (converted in
    /// memory). Architecture, tensor types and values are checked before anything is built.
    pub fn open(path: &Path, device: &Device) -> Result<Weights> {
        if is_safetensors(path)? {
            let info = read_safetensors_info(path)?;
            let config = architecture(path, &info)?;
            check_values(path)?;
            // SAFETY: as in `map`.
            let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[path], DType::F32, device) }?;
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
            check_values(path)?;
            let tensors = candle_core::safetensors::load(path, device)?;
            let tensors = tensors.into_iter().map(|(k, t)| Ok((k, t.to_dtype(DType::F32)?))).collect::<candle_core::Result<_>>()?;
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
