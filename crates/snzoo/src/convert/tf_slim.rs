//! TensorFlow checkpoints of TF-Slim's `resnet_v1` (`nets/resnet_v1.py`): the V1 file of the
//! 2016 release (`resnet_v1_50.ckpt`) and V2 bundles users re-save it as.
//!
//! | TF-Slim variable (under the scope, e.g. `resnet_v1_50/`) | network key |
//! |---|---|
//! | `conv1/weights` (HWIO) | `conv1.weight` (OIHW) |
//! | `conv1/BatchNorm/{gamma,beta,moving_mean,moving_variance}` | `bn1.{weight,bias,running_mean,running_var}` |
//! | `blockB/unit_U/bottleneck_v1/convK/...` | `layer{B}.{U-1}.conv{K}.weight`, `.bn{K}.*` |
//! | `blockB/unit_U/bottleneck_v1/shortcut/...` | `layer{B}.{U-1}.downsample.{0,1}.*` |
//! | `logits/{weights,biases}` (`[1, 1, C_in, classes]`) | `fc.{weight,bias}` (`[classes, C_in]`) |
//!
//! Everything else under the scope must be a training slot of one of these variables
//! (`.../weights/Momentum`, ...) and everything outside it (`global_step`, ...) is skipped; both
//! are listed in the checkpoint info. The network is [`Style::Slim`]: stride 2 on the 3×3 of
//! the last unit of blocks 1–3, subsampled identity shortcuts, a TF `SAME` stem max-pool.

use std::collections::BTreeMap;
use std::path::Path;

use snzoo_convert::tensorflow::{self, TfLocation};
use snzoo_convert::{CheckpointInfo, Tensor};
use snzoo_model::Style;

use super::{CheckpointFormat, Probe, StateDict};
use crate::{Error, Result};

/// TensorFlow V1 checkpoints and V2 bundles of TF-Slim's `resnet_v1`.
pub struct TfSlimCheckpoint;

fn err(path: &Path, message: String) -> Error {
    Error::Format { path: path.to_path_buf(), format: "TensorFlow", source: message.into() }
}

impl CheckpointFormat for TfSlimCheckpoint {
    fn name(&self) -> &'static str {
        "TensorFlow checkpoint"
    }

    fn sniff(&self, probe: &Probe) -> bool {
        // A V1 file or a V2 index ends with the table magic; a V2 bundle may also be named by its
        // prefix or a data shard.
        probe.tail == tensorflow::table::MAGIC.to_le_bytes()
            || matches!(tensorflow::locate(probe.path), TfLocation::V2(prefix) if tensorflow::index_path(&prefix).is_file())
    }

    fn read(&self, path: &Path) -> Result<StateDict> {
        let ck = tensorflow::read_tf_checkpoint(path).map_err(|e| Error::Format {
            path: path.to_path_buf(),
            format: "TensorFlow",
            source: Box::new(e),
        })?;
        let info = CheckpointInfo { skipped: ck.skipped.iter().map(|(n, why)| format!("{n} ({why})")).collect(), ..Default::default() };
        Ok(StateDict::new(path, format!("TensorFlow {} checkpoint", ck.format), ck.tensors, info))
    }

    fn remap(&self, state: StateDict) -> Result<StateDict> {
        let StateDict { path, format, tensors, mut info, .. } = state;
        let path = path.as_path();
        let scopes: Vec<&str> = tensors.iter().filter_map(|(k, _)| k.strip_suffix("/conv1/weights")).filter(|s| !s.contains('/')).collect();
        let scope = match scopes.as_slice() {
            [s] => s.to_string(),
            [] => return Err(err(path, "no `SCOPE/conv1/weights` variable: not a TF-Slim resnet_v1 checkpoint".into())),
            many => return Err(err(path, format!("several networks in one checkpoint (scopes {many:?})"))),
        };
        let mut out: BTreeMap<String, Tensor> = BTreeMap::new();
        let mut unknown = Vec::new();
        for (name, t) in tensors {
            let Some(rest) = name.strip_prefix(&format!("{scope}/")) else {
                info.skipped.push(name);
                continue;
            };
            match network_key(rest) {
                Some(key) => {
                    let t = match rest {
                        r if r.ends_with("/weights") && r.starts_with("logits/") => logits_weight(&name, t).map_err(|m| err(path, m))?,
                        r if r.ends_with("/weights") => hwio_to_oihw(&name, t).map_err(|m| err(path, m))?,
                        _ => t,
                    };
                    out.insert(key, t);
                }
                None => unknown.push(name),
            }
        }
        // A slot of a known variable (an optimizer's, a moving average's) is training state.
        for name in unknown {
            let rest = &name[scope.len() + 1..];
            let is_slot = (1..rest.len()).filter(|&i| rest.as_bytes()[i] == b'/').any(|i| network_key(&rest[..i]).is_some());
            if !is_slot {
                return Err(err(
                    path,
                    format!("variable `{name}` is not part of TF-Slim's resnet_v1 (biased convolutions? another network?)"),
                ));
            }
            info.skipped.push(name);
        }
        // `slim.batch_norm(scale=False)` has no gamma: a scale of 1.
        let betas: Vec<(String, usize)> =
            out.iter().filter_map(|(k, t)| k.strip_suffix(".bias").map(|p| (p.to_string(), t.numel()))).collect();
        for (prefix, n) in betas {
            if prefix.contains("bn") || prefix.ends_with("downsample.1") {
                out.entry(format!("{prefix}.weight")).or_insert_with(|| ones(n));
            }
        }
        let tensors = out.into_iter().collect();
        Ok(StateDict { path: path.to_path_buf(), format, tensors, info, style: Style::Slim })
    }
}

fn ones(n: usize) -> Tensor {
    Tensor { dtype: snzoo_convert::DType::F32, shape: vec![n], data: 1f32.to_le_bytes().repeat(n) }
}

/// The network key of a slim variable name (relative to the scope), if it is one.
fn network_key(rest: &str) -> Option<String> {
    let bn = |v: &str| match v {
        "gamma" => Some("weight"),
        "beta" => Some("bias"),
        "moving_mean" => Some("running_mean"),
        "moving_variance" => Some("running_var"),
        _ => None,
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["conv1", "weights"] => Some("conv1.weight".into()),
        ["conv1", "BatchNorm", v] => Some(format!("bn1.{}", bn(v)?)),
        ["logits", "weights"] => Some("fc.weight".into()),
        ["logits", "biases"] => Some("fc.bias".into()),
        [block, unit, "bottleneck_v1", layer, tail @ ..] => {
            let b: usize = block.strip_prefix("block")?.parse().ok().filter(|b| (1..=4).contains(b))?;
            let u: usize = unit.strip_prefix("unit_")?.parse().ok().filter(|&u| u >= 1)?;
            let base = format!("layer{b}.{}", u - 1);
            let (conv, norm) = match *layer {
                "shortcut" => ("downsample.0".to_string(), "downsample.1".to_string()),
                l => {
                    let k: usize = l.strip_prefix("conv")?.parse().ok().filter(|k| (1..=3).contains(k))?;
                    (format!("conv{k}"), format!("bn{k}"))
                }
            };
            match tail {
                ["weights"] => Some(format!("{base}.{conv}.weight")),
                ["BatchNorm", v] => Some(format!("{base}.{norm}.{}", bn(v)?)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Permutes a tensor's axes: output axis `i` is input axis `perm[i]`.
fn permute(name: &str, t: Tensor, perm: &[usize]) -> Result<Tensor, String> {
    if t.shape.len() != perm.len() {
        return Err(format!("variable `{name}` has shape {:?}, expected {} dimensions", t.shape, perm.len()));
    }
    let es = t.dtype.size();
    let shape: Vec<usize> = perm.iter().map(|&p| t.shape[p]).collect();
    let mut in_strides = vec![1usize; t.shape.len()];
    for d in (0..t.shape.len().saturating_sub(1)).rev() {
        in_strides[d] = in_strides[d + 1] * t.shape[d + 1];
    }
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let n = t.numel();
    let mut data = Vec::with_capacity(n * es);
    let mut index = vec![0usize; shape.len()];
    for _ in 0..n {
        let at: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        data.extend_from_slice(&t.data[at * es..(at + 1) * es]);
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(Tensor { dtype: t.dtype, shape, data })
}

/// TF's `[kh, kw, in, out]` kernel as PyTorch's `[out, in, kh, kw]`.
fn hwio_to_oihw(name: &str, t: Tensor) -> Result<Tensor, String> {
    permute(name, t, &[3, 2, 0, 1])
}

/// The 1×1 logits convolution `[1, 1, in, classes]` as a linear layer's `[classes, in]`.
fn logits_weight(name: &str, t: Tensor) -> Result<Tensor, String> {
    match t.shape.as_slice() {
        [1, 1, i, c] => {
            let (i, c) = (*i, *c);
            let mut t = permute(name, t, &[3, 2, 0, 1])?;
            t.shape = vec![c, i];
            Ok(t)
        }
        s => Err(format!("variable `{name}` has shape {s:?}, expected [1, 1, features, classes]")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slim_names() {
        assert_eq!(network_key("conv1/weights").as_deref(), Some("conv1.weight"));
        assert_eq!(network_key("conv1/BatchNorm/moving_variance").as_deref(), Some("bn1.running_var"));
        assert_eq!(network_key("block3/unit_6/bottleneck_v1/conv2/BatchNorm/gamma").as_deref(), Some("layer3.5.bn2.weight"));
        assert_eq!(network_key("block1/unit_1/bottleneck_v1/shortcut/weights").as_deref(), Some("layer1.0.downsample.0.weight"));
        assert_eq!(network_key("block1/unit_1/bottleneck_v1/shortcut/BatchNorm/beta").as_deref(), Some("layer1.0.downsample.1.bias"));
        assert_eq!(network_key("logits/biases").as_deref(), Some("fc.bias"));
        for bad in [
            "block5/unit_1/bottleneck_v1/conv1/weights",
            "block1/unit_0/bottleneck_v1/conv1/weights",
            "conv1/weights/Momentum",
            "block1/unit_1/bottleneck_v1/conv4/weights",
            "block1/unit_1/bottleneck_v1/conv1/biases",
        ] {
            assert_eq!(network_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn kernel_layouts() {
        // A [kh=1, kw=2, in=2, out=3] kernel: element (h, w, i, o) = 100h + 10w + ... encoded.
        let vals: Vec<f32> = (0..12).map(|x| x as f32).collect();
        let t =
            Tensor { dtype: snzoo_convert::DType::F32, shape: vec![1, 2, 2, 3], data: vals.iter().flat_map(|v| v.to_le_bytes()).collect() };
        let o = hwio_to_oihw("k", t).unwrap();
        assert_eq!(o.shape, vec![3, 2, 1, 2]);
        // out o, in i, w: HWIO index = ((0*2 + w)*2 + i)*3 + o.
        let want: Vec<f64> = (0..3).flat_map(|o| (0..2).flat_map(move |i| (0..2).map(move |w| ((w * 2 + i) * 3 + o) as f64))).collect();
        assert_eq!(o.to_f64_vec(), want);
    }
}
