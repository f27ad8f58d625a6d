//! Loading model weights: a converted `.safetensors` file (architecture from its metadata) or,
//! for convenience, a `torch.save` checkpoint converted in memory.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use snzoo_model::{ResNetSn, ResNetSnConfig};

/// A loaded model and where it came from.
pub struct LoadedModel {
    pub model: ResNetSn,
    pub config: ResNetSnConfig,
}

/// The header of a safetensors file: tensor shapes and `__metadata__`.
pub struct SafetensorsHeader {
    pub shapes: BTreeMap<String, Vec<usize>>,
    pub metadata: HashMap<String, String>,
}

/// Reads and checks the JSON header of a safetensors file without reading the tensors.
pub fn read_safetensors_header(path: &Path) -> Result<SafetensorsHeader> {
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = f.metadata()?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n).with_context(|| format!("{}: too short for a safetensors file", path.display()))?;
    let n = u64::from_le_bytes(n);
    if n > len.saturating_sub(8) || n > 100 << 20 {
        bail!("{}: not a safetensors file (header length {n} does not fit the file)", path.display());
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .with_context(|| format!("{}: the safetensors header is not valid JSON", path.display()))?;
    let obj = json.as_object().with_context(|| format!("{}: the safetensors header is not an object", path.display()))?;
    let mut shapes = BTreeMap::new();
    let mut metadata = HashMap::new();
    for (k, v) in obj {
        if k == "__metadata__" {
            for (mk, mv) in v.as_object().into_iter().flatten() {
                if let Some(s) = mv.as_str() {
                    metadata.insert(mk.clone(), s.to_string());
                }
            }
        } else {
            let shape = v["shape"]
                .as_array()
                .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect::<Option<Vec<_>>>())
                .with_context(|| format!("{}: tensor `{k}` has no valid shape", path.display()))?;
            shapes.insert(k.clone(), shape);
        }
    }
    Ok(SafetensorsHeader { shapes, metadata })
}

/// True when the file starts like a safetensors file (a header length, then `{`).
fn looks_like_safetensors(path: &Path) -> Result<bool> {
    let mut head = [0u8; 9];
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let n = f.read(&mut head)?;
    Ok(n == 9 && head[8] == b'{')
}

/// The architecture recorded in the metadata, else inferred from the tensor shapes; either way
/// validated against the shapes.
fn config_for(path: &Path, header: &SafetensorsHeader) -> Result<ResNetSnConfig> {
    let config = if header.metadata.contains_key("arch") {
        ResNetSnConfig::from_metadata(&header.metadata).with_context(|| format!("{}: bad snzoo metadata", path.display()))?
    } else {
        ResNetSnConfig::infer(&header.shapes)
            .with_context(|| format!("{}: no snzoo metadata and not an SN ResNet state dict", path.display()))?
    };
    config
        .validate(&header.shapes)
        .with_context(|| format!("{}: the tensors do not match {}", path.display(), config.arch_name()))?;
    Ok(config)
}

/// Loads a model from `.safetensors` (memory-mapped) or a `torch.save` checkpoint.
pub fn load_model(path: &Path, device: &Device) -> Result<LoadedModel> {
    if looks_like_safetensors(path)? {
        let header = read_safetensors_header(path)?;
        let config = config_for(path, &header)?;
        // SAFETY: the file is mapped read-only; snzoo never writes to a file it has mapped, and
        // converted files are only ever replaced by rename, not modified in place.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[path], DType::F32, device) }
            .with_context(|| format!("cannot read {}", path.display()))?;
        let model = ResNetSn::new(&config, vb).with_context(|| format!("cannot build the model from {}", path.display()))?;
        return Ok(LoadedModel { model, config });
    }
    let converted = crate::convert::convert_checkpoint(path, None)?;
    let bytes = snzoo_convert::serialize_safetensors(&converted.tensors, &converted.metadata)?;
    let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, device)?;
    let model = ResNetSn::new(&converted.config, vb)?;
    Ok(LoadedModel { model, config: converted.config })
}

/// The tensors (state-dict names, f32) and architecture of a weights file, for training.
pub fn load_tensors(path: &Path, device: &Device) -> Result<(ResNetSnConfig, std::collections::HashMap<String, candle_core::Tensor>)> {
    if looks_like_safetensors(path)? {
        let header = read_safetensors_header(path)?;
        let config = config_for(path, &header)?;
        let tensors = candle_core::safetensors::load(path, device).with_context(|| format!("cannot read {}", path.display()))?;
        let tensors = tensors.into_iter().map(|(k, t)| Ok((k, t.to_dtype(DType::F32)?))).collect::<candle_core::Result<_>>()?;
        return Ok((config, tensors));
    }
    let converted = crate::convert::convert_checkpoint(path, Some(snzoo_convert::DType::F32))?;
    let mut tensors = std::collections::HashMap::new();
    for (k, t) in converted.tensors {
        let v: Vec<f32> = t.to_f64_vec().into_iter().map(|x| x as f32).collect();
        tensors.insert(k, candle_core::Tensor::from_vec(v, t.shape.clone(), device)?);
    }
    Ok((converted.config, tensors))
}
