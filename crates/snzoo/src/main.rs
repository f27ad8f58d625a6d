//! `snzoo`: the model zoo and evaluator for Switchable Normalization networks.
//!
//! Exit codes: 0 success; 1 failure (bad input, I/O, ...; the message names the file);
//! 2 usage error.

/// mimalloc keeps freed activation buffers for reuse. glibc's malloc returns every buffer above
/// its mmap threshold to the kernel, and the next layer's output then pays page faults and
/// zeroing: 30 against 40 images/s for ResNet-50 at batch 16 (eval/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay`'s place in mimalloc's `mi_option_e` (mimalloc v3, as built by the
/// locked libmimalloc-sys 0.1.49, whose bindings name no constant for it; the test below checks
/// the index by the option's distinctive default of 1000 ms).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    #[cfg(test)]
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
}

/// Keeps mimalloc from returning freed memory to the kernel at all (it does so 1 s after a free
/// by default): the activation buffers are freed and allocated again on every layer, and pages
/// handed back are faulted in and zeroed again on the next forward — 2–6 % of the time at
/// ResNet-50 scale (eval/BENCHMARKS.md). The peak is unchanged: memory is kept, not grown.
/// `MIMALLOC_PURGE_DELAY` in the environment still wins.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an integer option; mimalloc reads options atomically.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

mod cli;

use clap::{Parser, Subcommand};
use cli::{bench, classify, convert, embed, eval, export, finetune, inspect, zoo};

#[derive(Debug, Parser)]
#[command(
    name = "snzoo",
    version,
    about = "Model zoo and evaluator for Switchable Normalization (SN) ResNets",
    long_about = "Model zoo and evaluator for Switchable Normalization (SN) ResNets.\n\n\
    Reads the released PyTorch checkpoints without Python, converts them to safetensors, and \
    classifies images with the exact preprocessing of the reference evaluation (PIL + torchvision).\n\n\
    Exit codes: 0 success, 1 failure, 2 usage error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Convert a checkpoint (torch.save, safetensors, TensorFlow, Caffe, Torch7) to safetensors, recording the inferred architecture.
    Convert(convert::ConvertArgs),
    /// Classify images: top-K ImageNet classes with probabilities.
    Classify(classify::ClassifyArgs),
    /// Features of images (pooled penultimate, or a stage's feature map) as a .npy.
    Embed(embed::EmbedArgs),
    /// Evaluate on a labelled image set with the model's evaluation protocol; several models give a leaderboard.
    Eval(eval::EvalArgs),
    /// List the model zoo: claimed accuracy, local state, last measured results.
    List(zoo::ListArgs),
    /// Show a model's card, local files and last results.
    Info(zoo::InfoArgs),
    /// Download a model by name, verify its sha256, and convert it to safetensors.
    Download(zoo::DownloadArgs),
    /// Show each SN layer's learned importance of IN / LN / BN (table, JSON, or a plot).
    Inspect(inspect::InspectArgs),
    /// Export a model as ONNX and/or a Hugging Face folder (model.safetensors, config.json, README.md card).
    Export(export::ExportArgs),
    /// Fine-tune an SN model with SGD (training-mode SN: learned IN/LN/BN mixing and statistics).
    Finetune(finetune::FinetuneArgs),
    /// Benchmark eval-mode forward throughput (or the whole eval pipeline with --pipeline).
    Bench(bench::BenchArgs),
}

fn main() {
    keep_freed_memory();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Convert(a) => convert::run(a),
        Command::Classify(a) => classify::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Eval(a) => eval::run_eval(a),
        Command::List(a) => zoo::list(a),
        Command::Info(a) => zoo::info(a),
        Command::Download(a) => zoo::download(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Export(a) => export::run(a),
        Command::Finetune(a) => finetune::run(a),
        Command::Bench(a) => bench::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        let usage = e.downcast_ref::<cli::UsageError>().is_some();
        std::process::exit(if usage { 2 } else { 1 });
    }
}

#[cfg(test)]
mod allocator_tests {
    use super::*;

    /// The option index is mimalloc's purge delay: its default (1000 ms, unique among the
    /// options near it) before the call, never-purge (-1) after.
    #[test]
    fn purge_delay_is_the_option_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            eprintln!("skipped: MIMALLOC_PURGE_DELAY is set in the environment");
            return;
        }
        // SAFETY: reads an integer option.
        assert_eq!(unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }, 1000);
        keep_freed_memory();
        assert_eq!(unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }, -1);
    }
}
