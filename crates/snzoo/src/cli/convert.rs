//! `snzoo convert`: a checkpoint to safetensors with the architecture in its metadata.

use std::path::PathBuf;

use anyhow::Result;
use snzoo::snzoo_convert::DType;
use snzoo::snzoo_fs::display_path;

#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// The checkpoint: a `torch.save` file (zip format of torch >= 1.6, or the legacy format of
    /// torch <= 1.5 that the released SN models use; a training dict is unwrapped, the `module.`
    /// prefix stripped, the optimizer state skipped), safetensors with PyTorch names, a
    /// TensorFlow checkpoint of TF-Slim's resnet_v1 (a V1 file, or a V2 bundle by its prefix,
    /// `.index` or data shard), an MSRA Caffe ResNet (`.caffemodel`), an fb.resnet.torch Torch7
    /// model (`.t7`), or a `.tar.gz` holding one of them.
    pub input: PathBuf,
    /// Where to write the safetensors file: written atomically (after an error nothing is left),
    /// never over the input or a file that is not a regular file.
    pub output: PathBuf,
    /// Floating-point type of the written tensors.
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16"])]
    pub dtype: String,
    /// GroupNorm checkpoints: the number of groups (not stored in the weights; default 32,
    /// timm's and PyTorch's GN ResNets).
    #[arg(long, value_parser = super::classify::positive)]
    pub groups: Option<usize>,
    /// Record the evaluation protocol of the zoo model NAME (see `snzoo info NAME`) in the
    /// output: `classify` and `eval` then preprocess for this file as that model's evaluation does.
    #[arg(long, value_name = "NAME")]
    pub protocol: Option<String>,
    /// A per-pixel mean image to store with the weights (Caffe `.binaryproto` or `.npy`,
    /// 3×crop×crop), for protocols that subtract one (`--protocol msra-caffe-resnet50`).
    #[arg(long, value_name = "FILE")]
    pub mean_image: Option<PathBuf>,
    /// Print the result as a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ConvertArgs) -> Result<()> {
    let dtype: DType = args.dtype.parse().map_err(anyhow::Error::msg)?;
    let protocol = match &args.protocol {
        Some(name) => {
            let card = snzoo::snzoo_zoo::card(name)
                .ok_or_else(|| anyhow::anyhow!("--protocol {name}: no model of that name (see `snzoo list`)"))?;
            Some(snzoo::protocol::from_card(card)?)
        }
        None => None,
    };
    if let (Some(p), None) = (&protocol, &args.mean_image) {
        if p.per_pixel_mean {
            anyhow::bail!(
                "--protocol {}: this protocol subtracts a mean image; give it with --mean-image",
                args.protocol.as_deref().unwrap_or_default()
            );
        }
    }
    let options = snzoo::convert::ConvertOptions { dtype: Some(dtype), groups: args.groups, protocol, mean_image: args.mean_image.clone() };
    let c = snzoo::convert::convert_file(&args.input, &args.output, &options)?;
    if args.json {
        let out = serde_json::json!({
            "input": display_path(&args.input),
            "output": display_path(&args.output),
            "source_format": c.format,
            "source_sha256": c.sha256,
            "wrapped_in": c.info.wrapped_in,
            "stripped_module_prefix": c.info.stripped_module_prefix,
            "tensors": c.tensors.len(),
            "arch": c.config.arch_name(),
            "style": c.config.style.name(),
            "skipped": c.info.skipped,
            "using_bn": c.config.using_bn(),
            "num_classes": c.config.num_classes,
            "dtype": args.dtype,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{}: {} format, {} tensors{}{} -> {} ({}, using_bn={}, {} classes, {})",
            display_path(&args.input),
            c.format,
            c.tensors.len(),
            c.info.wrapped_in.as_ref().map(|k| format!(", unwrapped from '{k}'")).unwrap_or_default(),
            if c.info.stripped_module_prefix { ", 'module.' stripped" } else { "" },
            display_path(&args.output),
            c.config.arch_name(),
            c.config.using_bn(),
            c.config.num_classes,
            args.dtype,
        );
    }
    Ok(())
}
