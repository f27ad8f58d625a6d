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

/// `--dtype` of `classify` and `eval`: `bf16` makes the CPU convolutions bf16 (f32 accumulation).
pub fn with_dtype(model: snzoo_model::ResNetSn, device: &Device, dtype: &str) -> Result<snzoo_model::ResNetSn> {
    match (dtype, device.is_cpu()) {
        ("f32", _) => Ok(model),
        ("bf16", true) => Ok(model.with_bf16_convolutions()?),
        ("bf16", false) => bail!("--dtype bf16 with --device cuda: only `snzoo bench` runs bf16 on CUDA so far"),
        (other, _) => bail!("unknown --dtype {other:?}"),
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
