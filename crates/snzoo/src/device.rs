//! `--device cpu | cuda | cuda:N`.

use anyhow::{bail, Context, Result};
use candle_core::Device;

/// A `--device` value: `None` for the CPU, or the CUDA ordinal.
fn parse(spec: &str) -> Result<Option<usize>, String> {
    match spec {
        "cpu" => Ok(None),
        "cuda" => Ok(Some(0)),
        s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Ok(Some(n)),
            _ => Err(format!("unknown device {spec:?}: use cpu, cuda or cuda:N")),
        },
    }
}

/// clap's check of a `--device` value (a usage error, exit code 2, when it is malformed).
pub fn valid_spec(spec: &str) -> Result<String, String> {
    parse(spec).map(|_| spec.to_string())
}

/// Opens the device a `--device` value names.
pub fn open(spec: &str) -> Result<Device> {
    let Some(ordinal) = parse(spec).map_err(anyhow::Error::msg)? else {
        return Ok(Device::Cpu);
    };
    if !cfg!(feature = "cuda") {
        bail!("--device {spec}: this snzoo was built without CUDA; rebuild with `cargo build --release --features cuda` (needs nvcc)");
    }
    Device::new_cuda(ordinal).with_context(|| format!("cannot open CUDA device {ordinal}"))
}

/// `--device` and `--dtype` of the commands that run a model (`classify`, `eval`).
#[derive(Debug, Clone, clap::Args)]
pub struct ComputeArgs {
    /// Where the forward pass runs: cpu, cuda (GPU 0) or cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu", value_parser = crate::device::valid_spec)]
    pub device: String,
    /// bf16: every convolution's input and weights rounded to bf16, products accumulated in f32
    /// (CPUs with AVX-512 BF16); SN, pooling and the classifier stay f32.
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    pub dtype: String,
}

impl ComputeArgs {
    /// Opens the device and loads the model from `weights` onto it, in the precision asked for:
    /// `bf16` makes the CPU convolutions bf16 (f32 accumulation).
    pub fn load(&self, weights: &std::path::Path) -> Result<(Device, crate::weights::LoadedModel)> {
        let device = open(&self.device)?;
        let mut loaded = crate::weights::load_model(weights, &device)?;
        loaded.model = match (self.dtype.as_str(), device.is_cpu()) {
            ("f32", _) => loaded.model,
            ("bf16", true) => loaded.model.with_bf16_convolutions()?,
            ("bf16", false) => bail!("--dtype bf16 with --device cuda: only `snzoo bench` runs bf16 on CUDA so far"),
            (other, _) => bail!("unknown --dtype {other:?}"),
        };
        Ok((device, loaded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert!(open("cpu").unwrap().is_cpu());
        assert_eq!(parse("cuda"), Ok(Some(0)));
        assert_eq!(parse("cuda:3"), Ok(Some(3)));
        for bad in ["gpu", "cuda:", "cuda:x", "CPU", ""] {
            assert!(valid_spec(bad).unwrap_err().contains("unknown device"), "{bad}");
            assert!(open(bad).is_err(), "{bad}");
        }
        if !cfg!(feature = "cuda") {
            assert!(open("cuda:1").unwrap_err().to_string().contains("--features cuda"));
        }
    }
}
