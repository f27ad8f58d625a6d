//! Converting checkpoints to safetensors with the architecture in the metadata.
//!
//! A [`CheckpointFormat`] reads one kind of file into a state dict and maps its keys to the
//! network's ([`CheckpointFormat::remap`]); [`FORMATS`] lists them in the order they are tried
//! (a new format is one file of this module and its line there):
//!
//! | format | file | reads |
//! |---|---|---|
//! | [`TorchSave`] | `torch.rs` | `torch.save` zip and legacy files (the SN release, torchvision, timm) |
//! | [`Safetensors`] | `safetensors.rs` | safetensors with PyTorch names (the Hugging Face Hub) |
//! | [`TfSlimCheckpoint`] | `tf_slim.rs` | TensorFlow V1 checkpoints and V2 bundles of TF-Slim's `resnet_v1` |
//! | [`CaffeModel`] | `caffe.rs` | MSRA's Caffe ResNets (`.caffemodel`) |
//! | [`Torch7Model`] | `torch7.rs` | fb.resnet.torch's Lua Torch7 models (`.t7`) |
//!
//! A `.tar.gz` holding one checkpoint (TF-Slim's release archives) is read directly
//! (`archive.rs`). The converter then infers and checks the architecture (in the layout, or
//! [`Style`], the format implies), refuses tensors a model cannot hold (non-float, NaN/inf),
//! casts, and records where the weights came from and, when given, the evaluation protocol
//! (with a Caffe mean image, stored as the tensor [`MEAN_IMAGE_KEY`]).

mod archive;
mod caffe;
mod safetensors;
mod tf_slim;
mod torch;
mod torch7;

pub use self::caffe::CaffeModel;
pub use self::safetensors::Safetensors;
pub use self::tf_slim::TfSlimCheckpoint;
pub use self::torch::TorchSave;
pub use self::torch7::Torch7Model;
pub use crate::protocol::MEAN_IMAGE_KEY;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use snzoo_convert::{CheckpointInfo, DType, Tensor};
use snzoo_model::{ResNetConfig, Style};

use crate::{Error, Result};

/// A state dict read from a checkpoint, with the network's key names.
#[derive(Debug, Clone)]
pub struct StateDict {
    /// The file read.
    pub path: PathBuf,
    /// What the file was (`torch.save legacy`, `TensorFlow V1 checkpoint`, ...).
    pub format: String,
    pub tensors: Vec<(String, Tensor)>,
    pub info: CheckpointInfo,
    /// The network's layout where it differs from torchvision's (formats of other frameworks
    /// imply theirs).
    pub style: Style,
}

impl StateDict {
    /// A state dict in torchvision's layout.
    pub fn new(path: &Path, format: impl Into<String>, tensors: Vec<(String, Tensor)>, info: CheckpointInfo) -> Self {
        Self { path: path.to_path_buf(), format: format.into(), tensors, info, style: Style::Torchvision }
    }
}

/// What a format may look at to recognise a file: its path, first 64 and last 8 bytes (empty
/// when the path names no regular file, e.g. a TensorFlow V2 prefix).
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    pub path: &'a Path,
    pub head: &'a [u8],
    pub tail: &'a [u8],
}

/// A checkpoint format snzoo reads.
pub trait CheckpointFormat: Sync {
    /// A short name for messages.
    fn name(&self) -> &'static str;
    /// Whether the probed file is in this format.
    fn sniff(&self, probe: &Probe) -> bool;
    /// Reads the state dict as the file names it. Formats whose networks are structures rather
    /// than named tensors (Caffe nets, Torch7 module graphs) interpret the structure here and
    /// return the network's names directly.
    fn read(&self, path: &Path) -> Result<StateDict>;
    /// The key-remap step: renames (and reshapes, if the format lays tensors out differently)
    /// the file's tensors into the network's state-dict names. The identity for formats that
    /// already use PyTorch's names.
    fn remap(&self, state: StateDict) -> Result<StateDict> {
        Ok(state)
    }
}

/// The formats snzoo reads, tried in order.
pub const FORMATS: &[&dyn CheckpointFormat] = &[&TorchSave, &Safetensors, &TfSlimCheckpoint, &CaffeModel, &Torch7Model];

/// The first 64 and last 8 bytes of a regular file (empty for anything else).
fn probe_bytes(path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    use std::io::{Read, Seek, SeekFrom};
    if !path.is_file() {
        return Ok((Vec::new(), Vec::new()));
    }
    let io = |e| snzoo_fs::FsError::Io { op: "read", path: path.to_path_buf(), source: e };
    let mut f = snzoo_fs::open_regular(path)?;
    let mut head = vec![0u8; 64];
    let n = f.read(&mut head).map_err(io)?;
    head.truncate(n);
    let len = f.metadata().map_err(io)?.len();
    let mut tail = vec![0u8; len.min(8) as usize];
    f.seek(SeekFrom::Start(len - tail.len() as u64)).map_err(io)?;
    f.read_exact(&mut tail).map_err(io)?;
    Ok((head, tail))
}

/// The format a file is in, if snzoo knows it.
pub fn detect_format(path: &Path) -> Result<Option<&'static dyn CheckpointFormat>> {
    let (head, tail) = probe_bytes(path)?;
    let probe = Probe { path, head: &head, tail: &tail };
    Ok(FORMATS.iter().copied().find(|f| f.sniff(&probe)))
}

/// Reads a checkpoint in whichever of [`FORMATS`] it is (or a `.tar.gz` holding one).
pub fn read_checkpoint(path: &Path) -> Result<StateDict> {
    let (head, _) = probe_bytes(path)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        return archive::read_archive(path);
    }
    match detect_format(path)? {
        Some(format) => format.remap(format.read(path)?),
        // Let the torch reader say precisely what the file is not.
        None => TorchSave.read(path),
    }
}

/// The sha256 of the file a checkpoint path names (a TensorFlow V2 prefix: its `.index`).
fn source_sha256(path: &Path) -> Result<String> {
    if !path.is_file() {
        if let snzoo_convert::tensorflow::TfLocation::V2(prefix) = snzoo_convert::tensorflow::locate(path) {
            return Ok(snzoo_fs::sha256_file(&snzoo_convert::tensorflow::index_path(&prefix))?);
        }
    }
    Ok(snzoo_fs::sha256_file(path)?)
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
    convert_with(path, &ConvertOptions { dtype, ..Default::default() })
}

/// [`convert_checkpoint`], with GroupNorm's group count given (it is not in the weights; 32
/// otherwise).
pub fn convert_checkpoint_with(path: &Path, dtype: Option<DType>, groups: Option<usize>) -> Result<Converted> {
    convert_with(path, &ConvertOptions { dtype, groups, ..Default::default() })
}

/// Converts `path` as `options` say (without writing it): the architecture, the checks, the
/// cast, and the metadata including the protocol and its mean image, if given.
pub fn convert_with(path: &Path, options: &ConvertOptions) -> Result<Converted> {
    let (dtype, groups) = (options.dtype, options.groups);
    let sha256 = source_sha256(path)?;
    let StateDict { format, tensors, info, style, .. } = read_checkpoint(path)?;
    // BatchNorm's num_batches_tracked counters are training state: not part of the model.
    let tensors: Vec<(String, Tensor)> = tensors.into_iter().filter(|(k, _)| !snzoo_model::is_training_only(k)).collect();
    let shapes: BTreeMap<String, Vec<usize>> = tensors.iter().map(|(k, t)| (k.clone(), t.shape.clone())).collect();
    let config = ResNetConfig::infer_styled(&shapes, groups, style)
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
    let mut tensors: Vec<(String, Tensor)> = match dtype {
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
    if let Some(t) = &options.protocol {
        crate::protocol::to_metadata(t, &mut metadata);
    }
    if let Some(mean) = &options.mean_image {
        let image = crate::protocol::read_mean_image(mean, options.protocol.as_ref())?;
        tensors.push((MEAN_IMAGE_KEY.to_string(), image));
        metadata.insert("mean_image_source".into(), snzoo_fs::display_path(Path::new(mean.file_name().unwrap_or_default())));
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
    /// A per-pixel mean image (Caffe `.binaryproto` or `.npy`, `[1,] C, H, W`) to store with the
    /// weights, for protocols that subtract one (MSRA's).
    pub mean_image: Option<std::path::PathBuf>,
}

/// `snzoo convert`: `input` (any format of [`FORMATS`]) to `output`.
pub fn convert_file(input: &Path, output: &Path, options: &ConvertOptions) -> Result<Converted> {
    // Checked before the work, so that a conversion never ends in a refused output.
    let mut inputs = vec![input];
    inputs.extend(options.mean_image.as_deref());
    snzoo_fs::check_output(output, &inputs)?;
    let c = convert_with(input, options)?;
    if options.groups.is_some() && !matches!(c.config.norm, snzoo_model::NormSpec::Group { .. }) {
        return Err(Error::invalid(format!("--groups: {} is not a GroupNorm network", input.display())));
    }
    write_converted(&c, output, &inputs)?;
    Ok(c)
}
