//! `snzoo classify`: top-K ImageNet classes of images, preprocessed exactly as the reference
//! evaluation (PIL + torchvision: Resize(256), CenterCrop(224), Normalize).

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use snzoo_convert::{npy::npy_f32_bytes, write_atomically};
use snzoo_eval::metrics::top_k;
use snzoo_preprocess::EvalTransform;


#[derive(Debug, clap::Args)]
pub struct ClassifyArgs {
    /// Model weights: a `.safetensors` file made by `snzoo convert` (or any SN ResNet state dict
    /// in safetensors), a `torch.save` checkpoint (converted in memory), or a model name from
    /// `snzoo list` (downloaded if needed). Without it, the first positional argument is the model.
    #[arg(long, short = 'w')]
    pub weights: Option<PathBuf>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Print one JSON array: `{"image", "top": [{"index", "wnid", "label", "prob", "logit"}]}` per image.
    #[arg(long)]
    pub json: bool,
    /// Write the preprocessed float32 batch [N, 3, 224, 224] to this `.npy` file.
    #[arg(long, value_name = "X.npy")]
    pub save_input: Option<PathBuf>,
    /// Write the float32 logits [N, classes] to this `.npy` file.
    #[arg(long, value_name = "Y.npy")]
    pub save_logits: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    #[command(flatten)]
    pub compute: crate::device::ComputeArgs,
    /// [MODEL] IMAGE...: image files (JPEG, PNG, ...; the format is read from the content, not the
    /// name), preceded by the model when --weights is not given.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
}

/// One predicted class.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Prediction {
    pub index: usize,
    pub wnid: Option<&'static str>,
    pub label: Option<&'static str>,
    pub prob: f32,
    pub logit: f32,
}

/// Softmax of one row of logits, in f32 with the maximum subtracted (as torch).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

pub fn run(args: &ClassifyArgs) -> Result<()> {
    let (spec, images) = match &args.weights {
        Some(w) => (w.clone(), &args.images[..]),
        None if args.images.len() >= 2 => (args.images[0].clone(), &args.images[1..]),
        None => anyhow::bail!("give the model (--weights W, or a name or file before the images) and at least one image"),
    };
    let (weights, _) = crate::zoo::resolve_weights(&spec, false)?;
    let (device, loaded) = args.compute.load(&weights)?;
    let transform = EvalTransform::default();
    let crop = transform.crop;
    let mut inputs: Vec<f32> = Vec::with_capacity(images.len() * 3 * crop * crop);
    for path in images {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read image {}", path.display()))?;
        let x = transform.apply(&bytes).with_context(|| format!("cannot decode image {}", path.display()))?;
        inputs.extend_from_slice(&x);
    }
    let n = images.len();
    let per = 3 * crop * crop;
    let mut logits: Vec<f32> = Vec::with_capacity(n * loaded.config.num_classes);
    for chunk in inputs.chunks(args.batch_size.max(1) * per) {
        let b = chunk.len() / per;
        let x = Tensor::from_slice(chunk, (b, 3, crop, crop), &device)?;
        let y = loaded.model.forward(&x).context("forward pass failed")?;
        logits.extend(y.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?);
    }
    if let Some(p) = &args.save_input {
        write_atomically(p, &npy_f32_bytes(&[n, 3, crop, crop], &inputs)).with_context(|| format!("cannot write {}", p.display()))?;
    }
    let classes = loaded.config.num_classes;
    if let Some(p) = &args.save_logits {
        write_atomically(p, &npy_f32_bytes(&[n, classes], &logits)).with_context(|| format!("cannot write {}", p.display()))?;
    }
    let imagenet = classes == snzoo_imagenet::NUM_CLASSES;
    let mut results = Vec::new();
    for (i, path) in images.iter().enumerate() {
        let row = &logits[i * classes..(i + 1) * classes];
        let probs = softmax(row);
        let top: Vec<Prediction> = top_k(row, args.top)
            .into_iter()
            .map(|j| {
                let c = imagenet.then(|| snzoo_imagenet::class(j)).flatten();
                Prediction { index: j, wnid: c.map(|c| c.wnid), label: c.map(|c| c.name), prob: probs[j], logit: row[j] }
            })
            .collect();
        results.push((path, top));
    }
    if args.json {
        let arr: Vec<serde_json::Value> =
            results.iter().map(|(p, top)| serde_json::json!({"image": p, "top": top})).collect();
        println!("{}", serde_json::to_string_pretty(&arr)?);
    } else {
        for (path, top) in &results {
            println!("{}", path.display());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_survives_large_logits() {
        let p = softmax(&[1000.0, 1000.0, -1000.0]);
        assert!((p[0] - 0.5).abs() < 1e-6 && p[2] == 0.0);
    }
}
