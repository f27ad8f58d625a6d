//! `snzoo convert`: a torch.save checkpoint to safetensors with the architecture in its metadata.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use snzoo_convert::{read_torch_checkpoint, sha256_file, write_safetensors, DType, Tensor, TorchCheckpoint};
use snzoo_model::ResNetSnConfig;

#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// The checkpoint written by `torch.save` (zip format of torch >= 1.6, or the legacy format
    /// of torch <= 1.5 that the released SN models use). A training dict is unwrapped and the
    /// `module.` prefix stripped; the optimizer state is skipped.
    pub input: PathBuf,
    /// Where to write the safetensors file. Written atomically: after an error nothing is left.
    pub output: PathBuf,
    /// Floating-point type of the written tensors.
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16"])]
    pub dtype: String,
    /// Print the result as a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A checkpoint read, checked against its inferred architecture, ready to be written.
pub struct Converted {
    pub tensors: Vec<(String, Tensor)>,
    pub config: ResNetSnConfig,
    pub metadata: HashMap<String, String>,
    pub checkpoint: TorchCheckpointSummary,
}

pub struct TorchCheckpointSummary {
    pub format: String,
    pub sha256: String,
    pub wrapped_in: Option<String>,
    pub stripped_module_prefix: bool,
}

/// Reads `path`, infers and validates the architecture, casts floats to `dtype` (if given) and
/// prepares the metadata (architecture, source sha256, training-dict fields).
pub fn convert_checkpoint(path: &Path, dtype: Option<DType>) -> Result<Converted> {
    let sha256 = sha256_file(path).with_context(|| format!("cannot read {}", path.display()))?;
    let TorchCheckpoint { format, tensors, info } =
        read_torch_checkpoint(path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    // BatchNorm's num_batches_tracked counters are training state: not part of the model.
    let tensors: Vec<(String, Tensor)> = tensors.into_iter().filter(|(k, _)| !snzoo_model::is_training_only(k)).collect();
    let shapes: BTreeMap<String, Vec<usize>> = tensors.iter().map(|(k, t)| (k.clone(), t.shape.clone())).collect();
    let config = ResNetSnConfig::infer(&shapes)
        .with_context(|| format!("{} is not a state dict of an SN ResNet that snzoo knows", path.display()))?;
    let tensors: Vec<(String, Tensor)> = match dtype {
        Some(d) => tensors.into_iter().map(|(k, t)| (k, t.cast_float(d))).collect(),
        None => tensors,
    };
    let mut metadata = config.to_metadata();
    metadata.insert("format".into(), "pt".into());
    metadata.insert("snzoo_version".into(), env!("CARGO_PKG_VERSION").into());
    metadata.insert("source_sha256".into(), sha256.clone());
    metadata.insert("source_format".into(), format!("torch.save {format}"));
    if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
        metadata.insert("source_file".into(), name.into());
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
    Ok(Converted {
        tensors,
        config,
        metadata,
        checkpoint: TorchCheckpointSummary {
            format: format.to_string(),
            sha256,
            wrapped_in: info.wrapped_in,
            stripped_module_prefix: info.stripped_module_prefix,
        },
    })
}

pub fn run(args: &ConvertArgs) -> Result<()> {
    let dtype: DType = args.dtype.parse().map_err(anyhow::Error::msg)?;
    let c = convert_checkpoint(&args.input, Some(dtype))?;
    write_safetensors(&args.output, &c.tensors, &c.metadata)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    if args.json {
        let out = serde_json::json!({
            "input": args.input,
            "output": args.output,
            "source_format": c.checkpoint.format,
            "source_sha256": c.checkpoint.sha256,
            "wrapped_in": c.checkpoint.wrapped_in,
            "stripped_module_prefix": c.checkpoint.stripped_module_prefix,
            "tensors": c.tensors.len(),
            "arch": c.config.arch_name(),
            "using_bn": c.config.using_bn,
            "num_classes": c.config.num_classes,
            "dtype": args.dtype,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{}: torch.save {} format, {} tensors{}{} -> {} ({}, using_bn={}, {} classes, {})",
            args.input.display(),
            c.checkpoint.format,
            c.tensors.len(),
            c.checkpoint.wrapped_in.as_ref().map(|k| format!(", unwrapped from '{k}'")).unwrap_or_default(),
            if c.checkpoint.stripped_module_prefix { ", 'module.' stripped" } else { "" },
            args.output.display(),
            c.config.arch_name(),
            c.config.using_bn,
            c.config.num_classes,
            args.dtype,
        );
    }
    Ok(())
}
