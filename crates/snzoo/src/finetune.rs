//! Fine-tuning SN networks: training-mode SN and SGD, step for step like the original PyTorch code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rayon::prelude::*;
use snzoo_eval::dataset::Dataset;
use snzoo_model::train::{RunningStats, Sgd, Trainable};
use snzoo_preprocess::{decode_rgb, EvalTransform, TrainTransform};
use snzoo_zoo::ModelCard;

use crate::{Error, Result};

/// How to fine-tune (the defaults of `snzoo finetune`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FinetuneOptions {
    pub epochs: usize,
    pub batch_size: usize,
    /// SGD learning rate, momentum and weight decay (as `torch.optim.SGD`).
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Dropout before the classifier, as in the original model.
    pub dropout: f32,
    /// RandomResizedCrop + flip (else the evaluation preprocessing).
    pub augment: bool,
    /// Reshuffle the data every epoch.
    pub shuffle: bool,
    /// A new classifier with this many classes when it differs from the model's.
    pub num_classes: Option<usize>,
    /// Running statistics as the momentum-0.9 moving average (else accumulated).
    pub moving_average: bool,
    /// Validation images, evaluated after every epoch.
    pub val: Option<PathBuf>,
    pub seed: u64,
    /// Threads for image decoding (the model uses the rayon pool).
    pub threads: usize,
}

impl Default for FinetuneOptions {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 32,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 1e-4,
            dropout: 0.5,
            augment: true,
            shuffle: true,
            num_classes: None,
            moving_average: true,
            val: None,
            seed: 0,
            threads: crate::limits::cores(),
        }
    }
}

impl FinetuneOptions {
    /// Refuses hyper-parameters that cannot train: non-finite or out-of-range values.
    pub fn check(&self) -> Result<()> {
        if self.batch_size == 0 || self.epochs == 0 {
            return Err(Error::invalid("--batch-size and --epochs must be positive"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 10.0) {
            return Err(Error::invalid(format!("--lr {} is not a learning rate: use a finite value in (0, 10]", self.lr)));
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return Err(Error::invalid(format!("--momentum {} must be in [0, 1)", self.momentum)));
        }
        if !(self.weight_decay.is_finite() && (0.0..=1.0).contains(&self.weight_decay)) {
            return Err(Error::invalid(format!("--weight-decay {} must be in [0, 1]", self.weight_decay)));
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            return Err(Error::invalid(format!("--dropout {} must be in [0, 1)", self.dropout)));
        }
        if self.num_classes == Some(0) {
            return Err(Error::invalid("--num-classes must be positive"));
        }
        Ok(())
    }
}

/// What fine-tuning reports while it runs.
#[derive(Debug)]
pub enum FinetuneEvent<'a> {
    /// After each SGD step: the epoch's running mean loss and training top-1 (%).
    Step { epoch: usize, step: usize, steps: usize, loss: f64, top1: f64 },
    /// After each epoch: `{"epoch", "loss", "train_top1"[, "val_top1", "val_top5"]}`.
    Epoch(&'a serde_json::Value),
}

/// The fine-tuned weights: PyTorch key names and snzoo's metadata.
pub struct Finetuned {
    pub tensors: Vec<(String, snzoo_convert::Tensor)>,
    pub metadata: HashMap<String, String>,
    /// One entry per epoch (see [`FinetuneEvent::Epoch`]).
    pub history: Vec<serde_json::Value>,
}

impl Finetuned {
    /// Writes the weights as safetensors (atomically), after checking that `path` may be
    /// written and is none of `inputs`.
    pub fn save(&self, path: &Path, inputs: &[&Path]) -> Result<()> {
        let target = snzoo_fs::check_output(path, inputs)?;
        snzoo_convert::write_safetensors(&target, &self.tensors, &self.metadata)
            .map_err(|source| Error::Write { path: path.to_path_buf(), source })
    }
}

/// SplitMix64: a small, seedable generator for shuffling and augmentation.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

fn to_convert_tensor(t: &Tensor) -> Result<snzoo_convert::Tensor> {
    let v = t.flatten_all()?.to_vec1::<f32>()?;
    let mut data = Vec::with_capacity(v.len() * 4);
    for x in v {
        data.extend_from_slice(&x.to_le_bytes());
    }
    Ok(snzoo_convert::Tensor { dtype: snzoo_convert::DType::F32, shape: t.dims().to_vec(), data })
}

/// Fine-tunes the SN network in `weights` on `dataset`. Stops with an error as soon as the
/// loss or a weight stops being finite (a learning rate too large for the data), writing
/// nothing.
pub fn finetune(
    weights: &Path,
    card: Option<&ModelCard>,
    dataset: &Dataset,
    options: &FinetuneOptions,
    on_event: &mut dyn FnMut(FinetuneEvent<'_>),
) -> Result<Finetuned> {
    options.check()?;
    let device = Device::Cpu;
    let crate::weights::StateTensors { mut config, tensors, metadata } = crate::weights::Weights::tensors(weights, &device)?;
    // The model's evaluation protocol (for --no-augment and --val); augmentation normalizes
    // with its mean and std.
    let eval_t = crate::protocol::resolve(card, &metadata)?;
    if !config.norm.trainable() {
        return Err(Error::Other(format!("{}: fine-tuning is implemented for SN networks only", weights.display())));
    }
    let fresh_fc = matches!(options.num_classes, Some(k) if k != config.num_classes);
    if let Some(k) = options.num_classes {
        config.num_classes = k;
    }
    if let Some(s) = dataset.samples.iter().find(|s| s.label >= config.num_classes) {
        return Err(Error::Other(format!(
            "{}: label {} is out of range for {} classes (use --num-classes)",
            s.rel, s.label, config.num_classes
        )));
    }
    let crop = eval_t.crop;
    crate::limits::check_memory(
        &format!("fine-tuning with --batch-size {}", options.batch_size),
        // Training keeps every activation for the backward pass: about 20× the inference working set.
        options.batch_size as u64 * 20 * crate::limits::forward_bytes_per_image(config.width, crop),
    )?;
    let trainable = Trainable::new(&config, &tensors, &device, fresh_fc)
        .map_err(|e| Error::Other(format!("cannot set up the model for training: {e}")))?;
    let rule = if options.moving_average { RunningStats::MovingAverage { momentum: 0.9 } } else { RunningStats::Accumulate };
    let mut sgd = Sgd::new(options.lr, options.momentum, options.weight_decay);
    let mut rng = Rng(options.seed ^ 0x5EED_5EED);
    let train_t = TrainTransform { size: eval_t.crop, mean: eval_t.mean, std: eval_t.std, ..TrainTransform::default() };
    let n = dataset.samples.len();
    let steps = n.div_ceil(options.batch_size);
    let mut history = Vec::new();
    for epoch in 0..options.epochs {
        let mut order: Vec<usize> = (0..n).collect();
        if options.shuffle {
            rng.shuffle(&mut order);
        }
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        for (step, chunk) in order.chunks(options.batch_size).enumerate() {
            // One random stream per image, drawn in order: the batch is the same whatever the threads.
            let seeds: Vec<u64> = chunk.iter().map(|_| rng.next_u64()).collect();
            let inputs: Vec<Result<Vec<f32>>> = chunk
                .par_iter()
                .zip(&seeds)
                .map(|(&i, &seed)| {
                    let file = dataset.root.join(&dataset.samples[i].rel);
                    let bytes = snzoo_fs::read_regular(&file, crate::model::MAX_IMAGE_BYTES)?;
                    let img = decode_rgb(&bytes).map_err(|e| Error::Image { path: file.clone(), source: e.into() })?;
                    if options.augment {
                        let mut r = Rng(seed);
                        Ok(train_t.apply(&img, &mut || r.uniform()))
                    } else {
                        let cropped = eval_t.crop_image(&img).map_err(|source| Error::Image { path: file.clone(), source })?;
                        Ok(eval_t.normalize_crop(&cropped))
                    }
                })
                .collect();
            let mut x = Vec::with_capacity(chunk.len() * 3 * crop * crop);
            for i in inputs {
                x.extend(i?);
            }
            let b = chunk.len();
            let x = Tensor::from_vec(x, (b, 3, crop, crop), &device)?;
            let labels: Vec<u32> = chunk.iter().map(|&i| dataset.samples[i].label as u32).collect();
            let y = Tensor::new(labels.as_slice(), &device)?;
            let (logits, stats) = trainable.model.forward_train(&x, options.dropout)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            let l = loss.to_scalar::<f32>()? as f64;
            if !l.is_finite() {
                return Err(Error::Other(format!(
                    "the loss became {l} at epoch {}, step {} (--lr {} is too large for this model and data?); nothing was written",
                    epoch + 1,
                    step + 1,
                    options.lr
                )));
            }
            let grads = loss.backward()?;
            sgd.step(&trainable.parameters(), &grads)?;
            trainable.update_running(&stats, rule)?;
            for (name, var) in trainable.parameters() {
                let bad = var.as_tensor().flatten_all()?.to_vec1::<f32>()?.iter().position(|v| !v.is_finite());
                if let Some(i) = bad {
                    return Err(Error::Other(format!(
                        "weight `{name}` became non-finite (element {i}) at epoch {}, step {} (--lr {} too large?); nothing was written",
                        epoch + 1,
                        step + 1,
                        options.lr
                    )));
                }
            }
            let pred = logits.argmax(1)?.to_vec1::<u32>()?;
            correct += pred.iter().zip(&labels).filter(|(p, y)| p == y).count();
            loss_sum += l * b as f64;
            seen += b;
            on_event(FinetuneEvent::Step {
                epoch: epoch + 1,
                step: step + 1,
                steps,
                loss: loss_sum / seen as f64,
                top1: 100.0 * correct as f64 / seen as f64,
            });
        }
        let mut line =
            serde_json::json!({"epoch": epoch + 1, "loss": loss_sum / seen as f64, "train_top1": 100.0 * correct as f64 / seen as f64});
        if let Some(val) = &options.val {
            let (t1, t5) = validate(&trainable, val, options.threads, &eval_t)?;
            line["val_top1"] = t1.into();
            line["val_top5"] = t5.into();
        }
        on_event(FinetuneEvent::Epoch(&line));
        history.push(line);
    }
    let mut out = Vec::new();
    for (k, t) in trainable.state() {
        out.push((k, to_convert_tensor(&t)?));
    }
    snzoo_convert::check_model_tensors(&out).map_err(|source| Error::BadTensor { path: weights.to_path_buf(), source })?;
    let mut meta: HashMap<String, String> = config.to_metadata();
    meta.insert("format".into(), "pt".into());
    meta.insert("snzoo_version".into(), env!("CARGO_PKG_VERSION").into());
    meta.insert("dtype".into(), "f32".into());
    meta.insert("finetuned_from".into(), card.map_or_else(|| weights.display().to_string(), |c| c.name.clone()));
    let mut record = serde_json::to_value(options).expect("options serialise");
    record["data"] = serde_json::Value::from(dataset.root.display().to_string());
    record["history"] = serde_json::Value::from(history.clone());
    meta.insert("finetune".into(), record.to_string());
    Ok(Finetuned { tensors: out, metadata: meta, history })
}

/// Top-1/top-5 of the current weights on a validation set (the `eval` pipeline).
fn validate(t: &Trainable, dir: &Path, threads: usize, transform: &EvalTransform) -> Result<(f64, f64)> {
    let ds = Dataset::discover(dir, None)?;
    let selection: Vec<usize> = (0..ds.samples.len()).collect();
    let mut tally = snzoo_eval::Tally::default();
    let opts = snzoo_eval::RunOptions { batch_size: 32, threads, transform: transform.clone() };
    let times = snzoo_eval::runner::StageTimes::default();
    snzoo_eval::runner::run(
        &ds,
        &selection,
        &Default::default(),
        &mut crate::model::NetworkClassifier { net: &t.model, crop: transform.crop, device: Device::Cpu },
        &opts,
        &times,
        |batch: &[snzoo_eval::ImageResult]| -> std::result::Result<(), String> {
            for r in batch {
                tally.add(r, &ds.samples[r.i].rel, None);
            }
            Ok(())
        },
    )
    .map_err(|e| Error::Other(format!("validation on {}: {e}", dir.display())))?;
    Ok((tally.top1(), tally.top5()))
}
