//! `snzoo bench`: eval-mode forward throughput (or the whole eval pipeline) after a warm-up.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use snzoo::snzoo_model::ResNet;

/// `--seconds`: a finite duration of at most a day.
fn seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
        return Err(format!("{s} is not a duration in (0, 86400] seconds"));
    }
    Ok(v)
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: super::ModelArg,
    /// Images per forward pass (at least 1; checked against the memory available).
    #[arg(long, default_value_t = 16, value_parser = super::classify::positive)]
    pub batch_size: usize,
    /// Measure for at least this long (after one warm-up batch; at least 3 batches), at most a day.
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    pub seconds: f64,
    /// Threads (default: all cores; at most 4 per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where the forward pass runs: cpu, cuda (GPU 0) or cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu", value_parser = super::valid_device)]
    pub device: String,
    /// Compute type: on CUDA of weights and activations; on the CPU bf16 means bf16 convolutions
    /// with f32 accumulation (AVX-512 BF16 CPUs), f16 is CUDA-only.
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16", "f16"])]
    pub dtype: String,
    /// Every operation through plain candle operations instead of snzoo's kernels (the baseline).
    #[arg(long)]
    pub reference_sn: bool,
    /// Print `{"images_per_second", "batch_size", "threads", "dtype", "arch", "ms_per_batch": {"median", "min", "max"}, ...}`.
    #[arg(long)]
    pub json: bool,
    /// Measure read + decode + preprocess + forward over the images of --data instead.
    #[arg(long, requires = "data")]
    pub pipeline: bool,
    /// Images for --pipeline (any layout `snzoo eval` reads).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// Peak resident memory of this process (Linux `VmHWM`), in bytes.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let threads = super::init_threads(args.threads)?;
    let spec = args.model.spec();
    let (path, _) = snzoo::zoo::resolve(&spec, &mut super::logger("snzoo", args.json))?;
    if args.pipeline {
        if args.dtype == "f16" {
            bail!("--pipeline measures `snzoo eval`, which computes in f32 or bf16, not f16");
        }
        return pipeline(args, &path, threads);
    }
    let dtype = match args.dtype.as_str() {
        "bf16" => DType::BF16,
        "f16" => DType::F16,
        _ => DType::F32,
    };
    let device = snzoo::model::open_device(&args.device)?;
    // On the CPU, bf16 means bf16 convolutions (f32 elsewhere); f16 has no CPU kernels.
    let cpu_bf16 = device.is_cpu() && dtype == DType::BF16;
    if device.is_cpu() && dtype == DType::F16 {
        bail!("--dtype f16 runs on CUDA only (--device cuda): neither candle 0.11's CPU matmul nor snzoo has f16 CPU kernels");
    }
    let dtype = if cpu_bf16 { DType::F32 } else { dtype };
    let snzoo::weights::StateTensors { config, tensors, .. } = snzoo::weights::Weights::tensors(&path, &device)?;
    // The input batch and its logits, and a forward pass per thread (a share of up to four
    // images per thread, whose first stages run one image at a time; a single thread runs the
    // whole batch).
    let working = if threads > 1 { threads.min(args.batch_size) } else { args.batch_size } as u64;
    snzoo::limits::check_memory(
        &format!("benchmarking with --batch-size {}", args.batch_size),
        args.batch_size as u64 * snzoo::limits::input_bytes(224) + working * snzoo::limits::forward_bytes_per_image(config.width, 224),
    )?;
    let mut model = ResNet::new(&config, VarBuilder::from_tensors(tensors, dtype, &device))?;
    if cpu_bf16 {
        model = model.with_bf16_convolutions()?;
    }
    let x = Tensor::randn(0f32, 1.0, (args.batch_size, 3, 224, 224), &device)?.to_dtype(dtype)?;
    let forward = || -> Result<()> {
        let y = if args.reference_sn { model.forward_reference(&x)? } else { model.forward(&x)? };
        // Copying the logits to the host also waits for an asynchronous device to finish.
        let _ = y.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(())
    };
    forward().context("warm-up forward failed")?;
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 3 || start.elapsed() < Duration::from_secs_f64(args.seconds) {
        let t = Instant::now();
        forward()?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let total: f64 = times.iter().sum();
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let ips = (times.len() * args.batch_size) as f64 / (total / 1000.0);
    let out = serde_json::json!({
        "images_per_second": ips,
        "batch_size": args.batch_size,
        "threads": threads,
        "dtype": args.dtype,
        "device": args.device,
        "arch": config.arch_name(),
        "sn_kernel": if args.reference_sn { "plain candle ops" } else { "fused" },
        "batches": times.len(),
        "ms_per_batch": {"median": sorted[sorted.len() / 2], "min": sorted[0], "max": sorted[sorted.len() - 1]},
        "peak_rss_bytes": peak_rss(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{} batch {} {} {} threads: {ips:.2} images/s (median {:.1} ms/batch over {} batches; peak RSS {:.0} MB)",
            config.arch_name(),
            args.batch_size,
            args.dtype,
            threads,
            sorted[sorted.len() / 2],
            times.len(),
            peak_rss().unwrap_or(0) as f64 / 1e6
        );
    }
    Ok(())
}

fn pipeline(args: &BenchArgs, weights: &std::path::Path, threads: usize) -> Result<()> {
    let data = args.data.as_ref().expect("clap requires --data");
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(exe)
        .args(["eval", "--weights"])
        .arg(weights)
        .arg("--data")
        .arg(data)
        .args([
            "--batch-size",
            &args.batch_size.to_string(),
            "--threads",
            &threads.to_string(),
            "--device",
            &args.device,
            "--dtype",
            &args.dtype,
            "--json",
            "--quiet",
        ])
        .output()
        .context("cannot run snzoo eval")?;
    if !out.status.success() {
        bail!("snzoo eval failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let res = serde_json::json!({
        "images_per_second": r["images_per_second"], "batch_size": args.batch_size, "threads": threads,
        "dtype": args.dtype, "device": args.device, "arch": r["weights"]["arch"], "images": r["images"], "stage_seconds": r["stage_seconds"],
        "wall_seconds": r["wall_seconds"],
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&res)?);
    } else {
        println!(
            "pipeline: {:.2} images/s over {} images ({})",
            res["images_per_second"].as_f64().unwrap_or(0.0),
            res["images"],
            res["stage_seconds"]
        );
    }
    Ok(())
}
