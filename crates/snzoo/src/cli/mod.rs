//! The command line: each subcommand maps its flags to the snzoo library.

pub mod bench;
pub mod classify;
pub mod convert;
pub mod embed;
pub mod eval;
pub mod export;
pub mod finetune;
pub mod inspect;
pub mod zoo;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;

/// A usage error found after parsing (exit code 2, as clap's own).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `MODEL` or `--weights W`: a model name from `snzoo list` or a weights file.
#[derive(Debug, clap::Args)]
pub struct ModelArg {
    /// A model name from `snzoo list` (downloaded if needed) or a weights file.
    #[arg(value_name = "MODEL", required_unless_present = "weights", conflicts_with = "weights")]
    pub model: Option<PathBuf>,
    /// Weights file (`.safetensors` or `.pth`), instead of MODEL.
    #[arg(long, short = 'w')]
    pub weights: Option<PathBuf>,
}

impl ModelArg {
    /// The name or path given.
    pub fn spec(&self) -> PathBuf {
        self.model.clone().or_else(|| self.weights.clone()).expect("clap requires MODEL or --weights")
    }
}

/// clap's check of a `--device` value (a usage error, exit code 2, when it is malformed).
pub fn valid_device(spec: &str) -> Result<String, String> {
    snzoo::model::parse_device(spec).map(|_| spec.to_string())
}

/// `--device` and `--dtype` of the commands that run a model (`classify`, `eval`).
#[derive(Debug, Clone, clap::Args)]
pub struct ComputeArgs {
    /// Where the forward pass runs: cpu, cuda (GPU 0) or cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu", value_parser = valid_device)]
    pub device: String,
    /// bf16: every convolution's input and weights rounded to bf16, products accumulated in f32
    /// (CPUs with AVX-512 BF16); SN, pooling and the classifier stay f32.
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    pub dtype: String,
}

impl ComputeArgs {
    pub fn options(&self) -> Result<snzoo::ModelOptions> {
        Ok(snzoo::ModelOptions {
            device: snzoo::model::open_device(&self.device)?,
            precision: self.dtype.parse().map_err(anyhow::Error::msg)?,
        })
    }

    /// Resolves `spec` (a name or a file) and opens the model on the device in the precision asked.
    pub fn open(&self, spec: &std::path::Path, quiet: bool) -> Result<snzoo::Model> {
        let options = self.options()?;
        Ok(snzoo::Model::open_with(spec, &options, &mut logger("snzoo", quiet))?)
    }
}

/// Messages of the zoo on stderr (`name: message`), unless `quiet`.
pub fn logger(name: &str, quiet: bool) -> impl FnMut(&str) + '_ {
    move |m: &str| {
        if !quiet {
            eprintln!("{name}: {m}");
        }
    }
}

/// Checks `--threads` against the machine and sizes the rayon pool that the kernels use.
pub fn init_threads(requested: Option<usize>) -> Result<usize> {
    let threads = snzoo::limits::threads(requested)?;
    // The first call wins; later ones (tests in one process) keep the existing pool.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    Ok(threads)
}

/// A transfer progress bar on a terminal (nothing otherwise).
pub struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    pub fn bytes(quiet: bool) -> Bar {
        Bar((!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
                    .expect("valid template"),
            );
            b
        }))
    }
}

impl snzoo::snzoo_zoo::fetch::Progress for Bar {
    fn start(&mut self, total: Option<u64>, done: u64) {
        if let Some(b) = &self.0 {
            if let Some(t) = total {
                b.set_length(t);
            }
            b.set_position(done);
        }
    }
    fn advance(&mut self, bytes: u64) {
        if let Some(b) = &self.0 {
            b.inc(bytes);
        }
    }
    fn finish(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// The model and the images of `classify` and `embed`: `--weights W IMAGE...` or
/// `MODEL IMAGE...`; `None` when neither a model nor an image is given.
pub(crate) fn model_and_images<'a>(weights: &Option<PathBuf>, images: &'a [PathBuf]) -> Result<Option<(PathBuf, &'a [PathBuf])>> {
    match weights {
        Some(_) if images.is_empty() => Err(UsageError("give at least one image".into()).into()),
        Some(w) => Ok(Some((w.clone(), images))),
        None if images.len() >= 2 => Ok(Some((images[0].clone(), &images[1..]))),
        None if images.is_empty() => Ok(None),
        None => Err(UsageError("give the model (--weights W, or a name or file before the images) and at least one image".into()).into()),
    }
}
