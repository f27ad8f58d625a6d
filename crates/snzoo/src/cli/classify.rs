//! `snzoo classify`: top-K ImageNet classes of images, preprocessed exactly as the reference
//! evaluation (PIL + torchvision: Resize(256), CenterCrop(224), Normalize).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use snzoo::model::top_predictions;
use snzoo::snzoo_convert::npy::NpyF32Writer;
use snzoo::snzoo_fs::{check_output, display_path, same_file, AtomicFile};
use snzoo::Prediction;

/// A count of at least 1 (a usage error otherwise).
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Debug, clap::Args)]
pub struct ClassifyArgs {
    /// Model weights: a `.safetensors` file made by `snzoo convert` (or any SN ResNet state dict
    /// in safetensors), a `torch.save` checkpoint (converted in memory), or a model name from
    /// `snzoo list` (downloaded if needed). Without it, the first positional argument is the model.
    #[arg(long, short = 'w')]
    pub weights: Option<PathBuf>,
    /// How many classes to show per image (at least 1).
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub top: usize,
    /// Print one JSON array: `{"image", "top": [{"index", "wnid", "label", "prob", "logit"}]}` per
    /// image. File names that are not UTF-8 are written with `\xNN` escapes.
    #[arg(long)]
    pub json: bool,
    /// Write the preprocessed float32 batch [N, 3, 224, 224] to this `.npy` file (never over an input).
    #[arg(long, value_name = "X.npy")]
    pub save_input: Option<PathBuf>,
    /// Write the float32 logits [N, classes] to this `.npy` file (never over an input).
    #[arg(long, value_name = "Y.npy")]
    pub save_logits: Option<PathBuf>,
    /// Images per forward pass (at least 1; checked against the memory available).
    #[arg(long, default_value_t = 16, value_parser = positive)]
    pub batch_size: usize,
    #[command(flatten)]
    pub compute: super::ComputeArgs,
    /// [MODEL] IMAGE...: image files (JPEG, PNG, ...; the format is read from the content, not the
    /// name), preceded by the model when --weights is not given. With neither model nor images:
    /// the bundled tiny model on the bundled sample photos (a demo that needs no files).
    #[arg(value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
}

/// An `.npy` output being streamed to its temporary file.
pub(crate) struct NpyOut {
    writer: NpyF32Writer<std::io::BufWriter<AtomicFile>>,
    path: PathBuf,
}

impl NpyOut {
    pub(crate) fn create(path: &Path, target: &Path, shape: &[usize]) -> Result<NpyOut> {
        let file = AtomicFile::create(target)?;
        let writer = NpyF32Writer::new(std::io::BufWriter::with_capacity(1 << 20, file), shape)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(NpyOut { writer, path: path.to_path_buf() })
    }

    pub(crate) fn extend(&mut self, v: &[f32]) -> Result<()> {
        self.writer.extend(v).with_context(|| format!("cannot write {}", self.path.display()))
    }

    pub(crate) fn commit(self) -> Result<()> {
        let ctx = || format!("cannot write {}", display_path(&self.path));
        let buf = self.writer.finish().with_context(ctx)?;
        buf.into_inner().map_err(|e| e.into_error()).with_context(ctx)?.commit()?;
        Ok(())
    }
}

pub fn run(args: &ClassifyArgs) -> Result<()> {
    let bundled;
    let (spec, images) = match super::model_and_images(&args.weights, &args.images)? {
        Some(m) => m,
        None => {
            let (model, data) = snzoo::bundled::paths()?;
            bundled = snzoo::bundled::SAMPLES.iter().map(|(name, _)| data.join(name)).collect::<Vec<_>>();
            (model, &bundled[..])
        }
    };
    let model = args.compute.open(&spec, false)?;
    let crop = model.transform().crop;
    let classes = model.num_classes();
    let n = images.len();

    // Outputs: never an input, never each other, never a device or a FIFO.
    let mut inputs: Vec<&Path> = images.iter().map(PathBuf::as_path).collect();
    inputs.push(model.weights_path());
    let save_input = args.save_input.as_deref().map(|p| check_output(p, &inputs).map(|t| (p, t))).transpose()?;
    let save_logits = args.save_logits.as_deref().map(|p| check_output(p, &inputs).map(|t| (p, t))).transpose()?;
    if let (Some((a, ta)), Some((_, tb))) = (&save_input, &save_logits) {
        if ta == tb || same_file(ta, tb) {
            bail!("--save-input and --save-logits both name {}", display_path(a));
        }
    }
    let threads = rayon::current_num_threads();
    snzoo::limits::check_memory(
        &format!("classifying with --batch-size {}", args.batch_size),
        args.batch_size as u64 * snzoo::limits::input_bytes(crop)
            + threads as u64 * snzoo::limits::forward_bytes_per_image(model.config().width, crop),
    )?;
    let mut input_out = save_input.map(|(p, t)| NpyOut::create(p, &t, &[n, 3, crop, crop])).transpose()?;
    let mut logits_out = save_logits.map(|(p, t)| NpyOut::create(p, &t, &[n, classes])).transpose()?;

    let mut results: Vec<(&PathBuf, Vec<Prediction>)> = Vec::with_capacity(n);
    for chunk in images.chunks(args.batch_size) {
        let batch: Vec<Vec<f32>> = chunk.par_iter().map(|p| model.preprocess_file(p)).collect::<snzoo::Result<_>>()?;
        let flat: Vec<f32> = batch.concat();
        let logits = model.logits(&flat, chunk.len()).context("forward pass failed")?;
        if let Some(o) = input_out.as_mut() {
            o.extend(&flat)?;
        }
        if let Some(o) = logits_out.as_mut() {
            o.extend(&logits)?;
        }
        for (i, path) in chunk.iter().enumerate() {
            results.push((path, top_predictions(&logits[i * classes..(i + 1) * classes], args.top)));
        }
    }
    for o in [input_out, logits_out].into_iter().flatten() {
        o.commit()?;
    }
    if args.json {
        let arr: Vec<serde_json::Value> =
            results.iter().map(|(p, top)| serde_json::json!({"image": display_path(p), "top": top})).collect();
        println!("{}", serde_json::to_string_pretty(&arr)?);
    } else {
        for (path, top) in &results {
            println!("{}", display_path(path));
            for p in top {
                println!(
                    "  {:>4}  {:<10} {:>7.3}%  {:>9.4}  {}",
                    p.index,
                    p.wnid.unwrap_or("-"),
                    p.prob * 100.0,
                    p.logit,
                    p.label.unwrap_or("")
                );
            }
        }
    }
    Ok(())
}
