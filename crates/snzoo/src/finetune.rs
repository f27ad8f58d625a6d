//! `snzoo finetune`: training-mode SN in Rust, step for step like the original PyTorch code.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use snzoo_eval::dataset::Dataset;
use snzoo_model::train::{RunningStats, Sgd, Trainable};
use snzoo_preprocess::{decode_rgb, EvalTransform, TrainTransform};

use crate::zoo::resolve_weights;

#[derive(Debug, clap::Args)]
pub struct FinetuneArgs {
    #[command(flatten)]
    pub model: crate::zoo::ModelArg,
    /// Training images: ImageFolder (`DIR/<wnid>/*`) or the root of a --labels list file.
    #[arg(long)]
    pub data: PathBuf,
    /// A `relative/path label` list file (labels 0..K-1).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Where to write the fine-tuned weights (safetensors, PyTorch key names, snzoo metadata).
    #[arg(long, short = 'o', value_name = "OUT.safetensors")]
    pub output: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Learning rate of SGD.
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Weight decay, added to every parameter's gradient (as torch.optim.SGD).
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Dropout before the classifier, as in the original model (0 turns it off).
    #[arg(long, default_value_t = 0.5)]
    pub dropout: f32,
    /// Use the evaluation preprocessing (resize 256, center crop 224) instead of
    /// RandomResizedCrop(224) + horizontal flip.
    #[arg(long)]
    pub no_augment: bool,
    /// Keep the dataset order (default: reshuffled every epoch).
    #[arg(long)]
    pub no_shuffle: bool,
    /// A new classifier with this many classes (a fresh `fc`) when it differs from the model's.
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// Accumulate the running statistics (the original's `using_moving_average: False`) instead
    /// of the momentum-0.9 moving average.
    #[arg(long)]
    pub no_moving_average: bool,
    /// Validation images, evaluated after every epoch (ImageFolder or flat ILSVRC2012 val).
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Seed of the shuffling, augmentation and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Threads for image decoding and the model.
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress output.
    #[arg(long, short = 'q')]
    pub quiet: bool,
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

pub fn run(args: &FinetuneArgs) -> Result<()> {
    if args.batch_size == 0 || args.epochs == 0 {
        bail!("--batch-size and --epochs must be positive");
    }
    if !(0.0..1.0).contains(&args.dropout) {
        bail!("--dropout must be in [0, 1)");
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    let device = Device::Cpu;
    let spec = args.model.spec();
    let (path, card) = resolve_weights(&spec, args.quiet)?;
    let (mut config, tensors) = crate::weights::load_tensors(&path, &device)?;
    if config.norm != snzoo_model::NormKind::Switchable {
        bail!("{}: fine-tuning is implemented for SN networks only", path.display());
    }
    let fresh_fc = matches!(args.num_classes, Some(k) if k != config.num_classes);
    if let Some(k) = args.num_classes {
        config.num_classes = k;
    }
    let dataset = Dataset::discover(&args.data, args.labels.as_deref()).with_context(|| format!("dataset {}", args.data.display()))?;
    if let Some(s) = dataset.samples.iter().find(|s| s.label >= config.num_classes) {
        bail!("{}: label {} is out of range for {} classes (use --num-classes)", s.rel, s.label, config.num_classes);
    }
    let trainable = Trainable::new(&config, &tensors, &device, fresh_fc).context("cannot set up the model for training")?;
    let rule = if args.no_moving_average { RunningStats::Accumulate } else { RunningStats::MovingAverage { momentum: 0.9 } };
    let mut sgd = Sgd::new(args.lr, args.momentum, args.weight_decay);
    let mut rng = Rng(args.seed ^ 0x5EED_5EED);
    let (eval_t, train_t) = (EvalTransform::default(), TrainTransform::default());
    let n = dataset.samples.len();
    let steps_per_epoch = n.div_ceil(args.batch_size);
    let bar = (!args.quiet && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new((steps_per_epoch * args.epochs) as u64);
        b.set_style(indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps [{elapsed_precise}<{eta_precise}] {msg}").expect("template"));
        b
    });
    let mut history = Vec::new();
    for epoch in 0..args.epochs {
        let mut order: Vec<usize> = (0..n).collect();
        if !args.no_shuffle {
            rng.shuffle(&mut order);
        }
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        for chunk in order.chunks(args.batch_size) {
            // One random stream per image, drawn in order: the batch is the same whatever the threads.
            let seeds: Vec<u64> = chunk.iter().map(|_| rng.next_u64()).collect();
            let inputs: Vec<Result<Vec<f32>>> = chunk
                .par_iter()
                .zip(&seeds)
                .map(|(&i, &seed)| {
                    let s = &dataset.samples[i];
                    let file = dataset.root.join(&s.rel);
                    let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
                    let img = decode_rgb(&bytes).with_context(|| format!("cannot decode {}", file.display()))?;
                    if args.no_augment {
                        Ok(snzoo_preprocess::to_normalized_chw(&eval_t.crop_rgb(&img)?, eval_t.mean, eval_t.std))
                    } else {
                        let mut r = Rng(seed);
                        Ok(train_t.apply(&img, &mut || r.uniform()))
                    }
                })
                .collect();
            let mut x = Vec::with_capacity(chunk.len() * 3 * 224 * 224);
            for i in inputs {
                x.extend(i?);
            }
            let b = chunk.len();
            let x = Tensor::from_vec(x, (b, 3, 224, 224), &device)?;
            let labels: Vec<u32> = chunk.iter().map(|&i| dataset.samples[i].label as u32).collect();
            let y = Tensor::new(labels.as_slice(), &device)?;
            let (logits, stats) = trainable.model.forward_train(&x, args.dropout)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            let grads = loss.backward()?;
            sgd.step(&trainable.parameters(), &grads)?;
            trainable.update_running(&stats, rule)?;
            let l = loss.to_scalar::<f32>()? as f64;
            let pred = logits.argmax(1)?.to_vec1::<u32>()?;
            correct += pred.iter().zip(&labels).filter(|(p, y)| p == y).count();
            loss_sum += l * b as f64;
            seen += b;
            if let Some(bar) = &bar {
                bar.inc(1);
                bar.set_message(format!("epoch {} loss {:.4} acc {:.2}%", epoch + 1, loss_sum / seen as f64, 100.0 * correct as f64 / seen as f64));
            }
        }
        let mut line = serde_json::json!({"epoch": epoch + 1, "loss": loss_sum / seen as f64, "train_top1": 100.0 * correct as f64 / seen as f64});
        if let Some(val) = &args.val {
            let (t1, t5) = validate(&trainable, val, threads)?;
            line["val_top1"] = t1.into();
            line["val_top5"] = t5.into();
        }
        if !args.quiet {
            if let Some(bar) = &bar {
                bar.println(line.to_string());
            } else {
                eprintln!("{line}");
            }
        }
        history.push(line);
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let mut out = Vec::new();
    for (k, t) in trainable.state() {
        out.push((k, to_convert_tensor(&t)?));
    }
    let mut meta: HashMap<String, String> = config.to_metadata();
    meta.insert("format".into(), "pt".into());
    meta.insert("snzoo_version".into(), env!("CARGO_PKG_VERSION").into());
    meta.insert("dtype".into(), "f32".into());
    meta.insert("finetuned_from".into(), card.map_or_else(|| path.display().to_string(), |c| c.name.clone()));
    meta.insert("finetune".into(), serde_json::json!({
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "momentum": args.momentum,
        "weight_decay": args.weight_decay, "dropout": args.dropout, "augment": !args.no_augment,
        "shuffle": !args.no_shuffle, "moving_average": !args.no_moving_average, "seed": args.seed,
        "data": args.data, "history": history,
    }).to_string());
    snzoo_convert::write_safetensors(&args.output, &out, &meta).with_context(|| format!("cannot write {}", args.output.display()))?;
    println!("{}", args.output.display());
    Ok(())
}

/// Top-1/top-5 of the current weights on a validation set (the `eval` pipeline).
fn validate(t: &Trainable, dir: &std::path::Path, threads: usize) -> Result<(f64, f64)> {
    struct Current<'a>(&'a Trainable);
    impl snzoo_eval::Classifier for Current<'_> {
        fn num_classes(&self) -> usize {
            self.0.config.num_classes
        }
        fn logits(&mut self, input: &[f32], batch: usize) -> Result<Vec<f32>, String> {
            let run = || -> candle_core::Result<Vec<f32>> {
                let x = Tensor::from_slice(input, (batch, 3, 224, 224), &Device::Cpu)?;
                self.0.model.forward(&x)?.flatten_all()?.to_vec1::<f32>()
            };
            run().map_err(|e| e.to_string())
        }
    }
    let ds = Dataset::discover(dir, None).with_context(|| format!("validation set {}", dir.display()))?;
    let selection: Vec<usize> = (0..ds.samples.len()).collect();
    let mut tally = snzoo_eval::Tally::default();
    let opts = snzoo_eval::RunOptions { batch_size: 32, threads, transform: EvalTransform::default() };
    let times = snzoo_eval::runner::StageTimes::default();
    snzoo_eval::runner::run(&ds, &selection, &Default::default(), &mut Current(t), &opts, &times, |batch: &[snzoo_eval::ImageResult]| -> Result<(), String> {
        for r in batch {
            tally.add(r, &ds.samples[r.i].rel, None);
        }
        Ok(())
    })
    .map_err(|e| anyhow::anyhow!("validation: {e}"))?;
    Ok((tally.top1(), tally.top5()))
}
