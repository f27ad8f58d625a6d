//! `snzoo embed`: features of images (the pooled penultimate features, or a stage's feature
//! map) as one `.npy`, for retrieval indexes and linear probes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rayon::prelude::*;
use snzoo::snzoo_fs::{check_output, display_path};
use snzoo::FeatureLayer;

use super::classify::NpyOut;

#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    /// Model weights (`.safetensors`, a checkpoint, or a model name); without it, the first
    /// positional argument is the model.
    #[arg(long, short = 'w')]
    pub weights: Option<PathBuf>,
    /// [MODEL] IMAGE...: image files (the format is read from the content), preprocessed with
    /// the model's protocol, preceded by the model when --weights is not given.
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<PathBuf>,
    /// The float32 features, one row per image in order: `[N, feature_dim]` for `pool`,
    /// `[N, C, H, W]` for a stage (written atomically, never over an input).
    #[arg(long, short = 'o', value_name = "F.npy")]
    pub output: PathBuf,
    /// `pool`: the globally averaged output of the last stage (after v2's final normalization) —
    /// timm's `forward_features` + global pool, what the classifier sees; `layer1`…`layer4`: the
    /// feature map after that stage.
    #[arg(long, default_value = "pool", value_parser = ["pool", "layer1", "layer2", "layer3", "layer4"])]
    pub layer: String,
    /// Images per forward pass (at least 1; checked against the memory available).
    #[arg(long, default_value_t = 16, value_parser = super::classify::positive)]
    pub batch_size: usize,
    /// Print `{"output", "layer", "shape", "images"}` as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub compute: super::ComputeArgs,
}

pub fn run(args: &EmbedArgs) -> Result<()> {
    let layer: FeatureLayer = args.layer.parse().map_err(anyhow::Error::msg)?;
    let Some((spec, images)) = super::model_and_images(&args.weights, &args.images)? else {
        return Err(
            super::UsageError("give the model (--weights W, or a name or file before the images) and at least one image".into()).into()
        );
    };
    let model = args.compute.open(&spec, false)?;
    let crop = model.transform().crop;
    let mut inputs: Vec<&Path> = images.iter().map(PathBuf::as_path).collect();
    inputs.push(model.weights_path());
    let target = check_output(&args.output, &inputs)?;
    snzoo::limits::check_memory(
        &format!("embedding with --batch-size {}", args.batch_size),
        args.batch_size as u64 * snzoo::limits::input_bytes(crop)
            + rayon::current_num_threads() as u64 * snzoo::limits::forward_bytes_per_image(model.config().width, crop),
    )?;
    let n = images.len();
    // The shape of one image's features, from a first batch.
    let mut out: Option<NpyOut> = None;
    let mut row_shape = Vec::new();
    for chunk in images.chunks(args.batch_size) {
        let batch: Vec<Vec<f32>> = chunk.par_iter().map(|p| model.preprocess_file(p)).collect::<snzoo::Result<_>>()?;
        let (features, shape) = model.embed(&batch.concat(), chunk.len(), layer).context("forward pass failed")?;
        if out.is_none() {
            row_shape = shape[1..].to_vec();
            let mut full = vec![n];
            full.extend(&row_shape);
            out = Some(NpyOut::create(&args.output, &target, &full)?);
        }
        out.as_mut().expect("created").extend(&features)?;
    }
    out.expect("at least one image").commit()?;
    if args.json {
        let mut shape = vec![n];
        shape.extend(&row_shape);
        let o = serde_json::json!({"output": display_path(&args.output), "layer": args.layer, "shape": shape, "images": n});
        println!("{}", serde_json::to_string_pretty(&o)?);
    } else {
        println!("{}: {} features of {n} images, {:?} each", display_path(&args.output), args.layer, row_shape);
    }
    Ok(())
}
