//! Converting checkpoints to safetensors with the architecture in the metadata.
//!
//! A [`CheckpointFormat`] reads one kind of file into a state dict and maps its keys to the
//! network's ([`CheckpointFormat::remap`]); [`FORMATS`] lists them in the order they are tried
//! (a new format is one implementation and its line there). The converter then infers and checks the
//! architecture, refuses tensors a model cannot hold (non-float, NaN/inf), casts, and records
//! where the weights came from.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use snzoo_convert::{CheckpointInfo, DType, Tensor};
use snzoo_model::ResNetConfig;

use crate::{Error, Result};

/// A state dict read from a checkpoint, with the network's key names.
#[derive(Debug, Clone)]
pub struct StateDict {
    /// What the file was (`torch.save legacy`, ...).
    pub format: String,
    pub tensors: Vec<(String, Tensor)>,
    pub info: CheckpointInfo,
}

/// A checkpoint format snzoo reads.
pub trait CheckpointFormat: Sync {
    /// A short name for messages.
    fn name(&self) -> &'static str;
    /// Whether a file that starts with `head` is in this format.
    fn sniff(&self, head: &[u8]) -> bool;
    /// Reads the state dict as the file names it.
    fn read(&self, path: &Path) -> Result<StateDict>;
    /// The key-remap step: renames (and reshapes, if the format lays tensors out differently)
    /// the file's tensors into the network's state-dict names. The identity for formats that
    /// already use PyTorch's names.
    fn remap(&self, state: StateDict) -> Result<StateDict> {
        Ok(state)
    }
}

/// `torch.save` files: the zip format (torch ≥ 1.6) and the legacy format of the SN release.
pub struct TorchSave;

impl CheckpointFormat for TorchSave {
    fn name(&self) -> &'static str {
        "torch.save"
    }
    fn sniff(&self, head: &[u8]) -> bool {
        head.starts_with(b"PK\x03\x04") || head.first() == Some(&0x80)
    }
    fn read(&self, path: &Path) -> Result<StateDict> {
        let ck = snzoo_convert::read_torch_checkpoint(path).map_err(|source| Error::Checkpoint { path: path.to_path_buf(), source })?;
        Ok(StateDict { format: format!("torch.save {}", ck.format), tensors: ck.tensors, info: ck.info })
    }
}

/// safetensors files with PyTorch key names (the Hugging Face Hub's, e.g. timm's weights).
pub struct Safetensors;

impl CheckpointFormat for Safetensors {
    fn name(&self) -> &'static str {
        "safetensors"
    }
    fn sniff(&self, head: &[u8]) -> bool {
        head.len() > 8 && head[8] == b'{'
    }
    fn read(&self, path: &Path) -> Result<StateDict> {
        let bytes = snzoo_fs::read_regular(path, u64::MAX)?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|source| Error::Safetensors { path: path.to_path_buf(), source })?;
        let mut tensors = Vec::with_capacity(st.len());
        for (name, view) in st.iter() {
            let dtype = DType::from_safetensors(view.dtype())
                .ok_or_else(|| Error::Other(format!("{}: tensor `{name}` has the unsupported dtype {:?}", path.display(), view.dtype())))?;
            tensors.push((name.to_string(), Tensor { dtype, shape: view.shape().to_vec(), data: view.data().to_vec() }));
        }
        // The file's own order is its header's (alphabetical after the dtype): keep the names sorted.
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(StateDict { format: "safetensors".into(), tensors, info: CheckpointInfo::default() })
    }
}

/// The formats snzoo reads, tried in order.
pub const FORMATS: &[&dyn CheckpointFormat] = &[&TorchSave, &Safetensors];

/// Reads a checkpoint in whichever of [`FORMATS`] it is.
pub fn read_checkpoint(path: &Path) -> Result<StateDict> {
    use std::io::Read;
    let mut head = [0u8; 64];
    let mut f = snzoo_fs::open_regular(path)?;
    let n = f.read(&mut head).map_err(|e| snzoo_fs::FsError::Io { op: "read", path: path.to_path_buf(), source: e })?;
    let head = &head[..n];
    match FORMATS.iter().find(|f| f.sniff(head)) {
        Some(format) => format.remap(format.read(path)?),
        // Let the torch reader say precisely what the file is not.
        None => TorchSave.read(path),
    }
}

/// A checkpoint read, checked against its inferred architecture, ready to be written.
#[derive(Debug, Clone)]
pub struct Converted {
    pub tensors: Vec<(String, Tensor)>,
    pub config: ResNetConfig,
    /// The safetensors `__metadata__` to write.
    pub metadata: HashMap<String, String>,
    /// The source file's format and sha256.
    pub format: String,
    pub sha256: String,
    pub info: CheckpointInfo,
}

/// Reads `path`, infers and validates the architecture, refuses non-float and non-finite
/// tensors, casts floats to `dtype` (if given) and prepares the metadata (architecture, source
/// sha256 and format, training-dict fields).
pub fn convert_checkpoint(path: &Path, dtype: Option<DType>) -> Result<Converted> {
    convert_checkpoint_with(path, dtype, None)
}

/// [`convert_checkpoint`], with GroupNorm's group count given (it is not in the weights; 32
/// otherwise).
pub fn convert_checkpoint_with(path: &Path, dtype: Option<DType>, groups: Option<usize>) -> Result<Converted> {
    let sha256 = snzoo_fs::sha256_file(path)?;
    let StateDict { format, tensors, info } = read_checkpoint(path)?;
    // BatchNorm's num_batches_tracked counters are training state: not part of the model.
    let tensors: Vec<(String, Tensor)> = tensors.into_iter().filter(|(k, _)| !snzoo_model::is_training_only(k)).collect();
    let shapes: BTreeMap<String, Vec<usize>> = tensors.iter().map(|(k, t)| (k.clone(), t.shape.clone())).collect();
    let config = ResNetConfig::infer_with(&shapes, groups)
        .map_err(|source| Error::NotAModel { path: path.to_path_buf(), source: Box::new(source) })?;
    snzoo_convert::check_model_tensors(&tensors).map_err(|source| Error::BadTensor { path: path.to_path_buf(), source })?;
    // A negative running variance makes the normalization compute NaN.
    for (name, t) in tensors.iter().filter(|(k, _)| k.ends_with(".running_var")) {
        if let Some((i, v)) = t.to_f64_vec().iter().enumerate().find(|(_, v)| **v < 0.0) {
            return Err(Error::BadWeights {
                path: path.to_path_buf(),
                message: format!("tensor `{name}` holds a negative variance ({v}, channel {i}); a model with it computes NaN, refusing it"),
            });
        }
    }
    let tensors: Vec<(String, Tensor)> = match dtype {
        Some(d) => tensors.into_iter().map(|(k, t)| (k, t.cast_float(d))).collect(),
        None => tensors,
    };
    let mut metadata = config.to_metadata();
    metadata.insert("format".into(), "pt".into());
    metadata.insert("snzoo_version".into(), env!("CARGO_PKG_VERSION").into());
    metadata.insert("source_sha256".into(), sha256.clone());
    metadata.insert("source_format".into(), format.clone());
    if let Some(name) = path.file_name() {
        metadata.insert("source_file".into(), snzoo_fs::display_path(Path::new(name)));
    }
    metadata.insert("dtype".into(), tensors.first().map(|(_, t)| t.dtype.to_string()).unwrap_or_default());
    if let Some(e) = info.epoch {
        metadata.insert("epoch".into(), e.to_string());
    }
    if let Some(a) = &info.arch {
        metadata.insert("source_arch".into(), a.clone());
    }
    if let Some(p) = info.best_prec1 {
        metadata.insert("best_prec1".into(), format!("{p}"));
    }
    Ok(Converted { tensors, config, metadata, format, sha256, info })
}

/// Writes converted tensors to `output` as safetensors (atomically, deterministically), after
/// checking that `output` may be written and is none of `inputs`.
pub fn write_converted(c: &Converted, output: &Path, inputs: &[&Path]) -> Result<()> {
    let target = snzoo_fs::check_output(output, inputs)?;
    snzoo_convert::write_safetensors(&target, &c.tensors, &c.metadata).map_err(|source| Error::Write { path: output.to_path_buf(), source })
}

/// What `snzoo convert` does besides reading and writing.
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// The floating-point type of the written tensors (default: as stored).
    pub dtype: Option<DType>,
    /// GroupNorm's group count (not in the weights; 32 otherwise).
    pub groups: Option<usize>,
    /// An evaluation protocol to record (`classify` and `eval` then use it for this file).
    pub protocol: Option<snzoo_preprocess::EvalTransform>,
}

/// `snzoo convert`: `input` (any format of [`FORMATS`]) to `output`.
pub fn convert_file(input: &Path, output: &Path, options: &ConvertOptions) -> Result<Converted> {
    // Checked before the work, so that a conversion never ends in a refused output.
    snzoo_fs::check_output(output, &[input])?;
    let mut c = convert_checkpoint_with(input, options.dtype, options.groups)?;
    if options.groups.is_some() && !matches!(c.config.norm, snzoo_model::NormSpec::Group { .. }) {
        return Err(Error::invalid(format!("--groups: {} is not a GroupNorm network", input.display())));
    }
    if let Some(t) = &options.protocol {
        crate::protocol::to_metadata(t, &mut c.metadata);
    }
    write_converted(&c, output, &[input])?;
    Ok(c)
}
