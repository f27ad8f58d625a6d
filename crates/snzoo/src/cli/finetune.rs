//! `snzoo finetune`: training-mode SN in Rust, step for step like the original PyTorch code.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use snzoo::snzoo_eval::dataset::Dataset;
use snzoo::{FinetuneEvent, FinetuneOptions};

#[derive(Debug, clap::Args)]
pub struct FinetuneArgs {
    #[command(flatten)]
    pub model: super::ModelArg,
    /// Training images: ImageFolder (`DIR/<wnid>/*`) or the root of a --labels list file.
    #[arg(long)]
    pub data: PathBuf,
    /// A `relative/path label` list file (labels 0..K-1).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Where to write the fine-tuned weights (safetensors, PyTorch key names, snzoo metadata;
    /// atomically, never over an input).
    #[arg(long, short = 'o', value_name = "OUT.safetensors")]
    pub output: PathBuf,
    /// Passes over the training data.
    #[arg(long, default_value_t = 1, value_parser = super::classify::positive)]
    pub epochs: usize,
    /// Images per SGD step (at least 1; checked against the memory available).
    #[arg(long, default_value_t = 32, value_parser = super::classify::positive)]
    pub batch_size: usize,
    /// Learning rate of SGD: finite, in (0, 10]. Training stops with an error if the loss or a
    /// weight becomes non-finite.
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    /// SGD momentum, in [0, 1).
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Weight decay, added to every parameter's gradient (as torch.optim.SGD), in [0, 1].
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
    /// Threads for image decoding and the model (default: all cores; at most 4 per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress output.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

pub fn run(args: &FinetuneArgs) -> Result<()> {
    let threads = super::init_threads(args.threads)?;
    let options = FinetuneOptions {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        momentum: args.momentum,
        weight_decay: args.weight_decay,
        dropout: args.dropout,
        augment: !args.no_augment,
        shuffle: !args.no_shuffle,
        num_classes: args.num_classes,
        moving_average: !args.no_moving_average,
        val: args.val.clone(),
        seed: args.seed,
        threads,
    };
    options.check()?;
    let spec = args.model.spec();
    let (path, card) = snzoo::zoo::resolve(&spec, &mut super::logger("snzoo", args.quiet))?;
    // Checked before hours of training, and again when writing.
    snzoo::snzoo_fs::check_output(&args.output, &[&path])?;
    let dataset = Dataset::discover(&args.data, args.labels.as_deref()).with_context(|| format!("dataset {}", args.data.display()))?;
    let steps = dataset.samples.len().div_ceil(args.batch_size) * args.epochs;
    let bar = (!args.quiet && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(steps as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps [{elapsed_precise}<{eta_precise}] {msg}")
                .expect("template"),
        );
        b
    });
    let quiet = args.quiet;
    let result = snzoo::finetune(&path, card, &dataset, &options, &mut |event| match event {
        FinetuneEvent::Step { epoch, loss, top1, .. } => {
            if let Some(bar) = &bar {
                bar.inc(1);
                bar.set_message(format!("epoch {epoch} loss {loss:.4} acc {top1:.2}%"));
            }
        }
        FinetuneEvent::Epoch(line) => {
            if !quiet {
                match &bar {
                    Some(bar) => bar.println(line.to_string()),
                    None => eprintln!("{line}"),
                }
            }
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    result?.save(&args.output, &[&path])?;
    println!("{}", snzoo::snzoo_fs::display_path(&args.output));
    Ok(())
}
