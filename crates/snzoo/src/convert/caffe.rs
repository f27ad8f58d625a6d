//! MSRA's Caffe ResNets (KaimingHe/deep-residual-networks: `ResNet-{50,101,152}-model.caffemodel`).
//!
//! | Caffe layer (type) | network key |
//! |---|---|
//! | `conv1` (Convolution, with a bias in ResNet-50 only) | `conv1.{weight,bias}` |
//! | `bn_conv1` (BatchNorm: mean·f, var·f, f) + `scale_conv1` (Scale: γ, β) | `bn1.*` |
//! | `res{S}{X}_branch2{a,b,c}`, `bn…`, `scale…` | `layer{S−1}.{X}.conv{1,2,3}`, `.bn{1,2,3}` |
//! | `res{S}a_branch1`, `bn{S}a_branch1`, `scale{S}a_branch1` | `layer{S−1}.0.downsample.{0,1}` |
//! | the InnerProduct layer (`fc1000`) | `fc.{weight,bias}` |
//!
//! Blocks are lettered (`res4f`) or, in the deeper nets, `a, b1, b2, …` (`res4b22`). A BatchNorm
//! layer's statistics are its blobs scaled by `1 / f` (0 when f is 0) in f32, as Caffe computes
//! them; its epsilon must be the network's 1e-5. The network is [`Style::Msra`]: stride 2 on
//! `branch2a` and `branch1`, a Caffe ceil-mode stem max-pool. Layers without weights (ReLU,
//! Eltwise, pooling, Softmax) are checked against the layout where they say something (strides,
//! pooling), and otherwise not needed.

use std::collections::BTreeMap;
use std::path::Path;

use snzoo_convert::caffe::{CaffeLayer, CaffeNet};
use snzoo_convert::{CheckpointInfo, DType, Tensor};
use snzoo_model::Style;

use super::{CheckpointFormat, Probe, StateDict};
use crate::{Error, Result};

/// Caffe models (`.caffemodel`) of MSRA's ResNet layout.
pub struct CaffeModel;

fn err(path: &Path, message: String) -> Error {
    Error::Format { path: path.to_path_buf(), format: "Caffe", source: message.into() }
}

impl CheckpointFormat for CaffeModel {
    fn name(&self) -> &'static str {
        "Caffe model"
    }

    fn sniff(&self, probe: &Probe) -> bool {
        probe.path.extension().is_some_and(|e| e.eq_ignore_ascii_case("caffemodel"))
    }

    fn read(&self, path: &Path) -> Result<StateDict> {
        let net = snzoo_convert::caffe::read_caffemodel(path).map_err(|e| Error::Format {
            path: path.to_path_buf(),
            format: "Caffe",
            source: Box::new(e),
        })?;
        let (tensors, info) = map_msra(&net).map_err(|m| err(path, m))?;
        let format = if net.legacy { "Caffe model (legacy layers)" } else { "Caffe model" };
        Ok(StateDict { path: path.to_path_buf(), format: format.into(), tensors, info, style: Style::Msra })
    }
}

/// The position of a block named `X` (`a`, `b`, …, or `b1`, `b2`, …) in its stage.
fn block_index(x: &str) -> Option<usize> {
    match x.as_bytes() {
        [c @ b'a'..=b'z'] => Some((c - b'a') as usize),
        [b'b', rest @ ..] if !rest.is_empty() && rest.iter().all(u8::is_ascii_digit) => x[1..].parse().ok().filter(|&n| n >= 1),
        _ => None,
    }
}

/// The network prefix (`layer2.3`, `conv1`, …) and the kind of a `res…`/`bn…`/`scale…` name.
fn parse_name(name: &str) -> Option<(&'static str, String)> {
    if name == "conv1" {
        return Some(("conv", "conv1".into()));
    }
    if name == "bn_conv1" {
        return Some(("bn", "bn1".into()));
    }
    if name == "scale_conv1" {
        return Some(("scale", "bn1".into()));
    }
    let (kind, rest) =
        [("conv", "res"), ("bn", "bn"), ("scale", "scale")].iter().find_map(|(k, p)| name.strip_prefix(p).map(|r| (*k, r)))?;
    let (block, branch) = rest.split_once("_branch")?;
    let stage = block.as_bytes().first().filter(|c| (b'2'..=b'5').contains(c))? - b'1';
    let b = block_index(&block[1..])?;
    let (conv, norm) = match branch {
        "1" => ("downsample.0".to_string(), "downsample.1".to_string()),
        "2a" => ("conv1".into(), "bn1".into()),
        "2b" => ("conv2".into(), "bn2".into()),
        "2c" => ("conv3".into(), "bn3".into()),
        _ => return None,
    };
    let module = if kind == "conv" { conv } else { norm };
    Some((kind, format!("layer{stage}.{b}.{module}")))
}

fn f32_values(t: &Tensor) -> Vec<f32> {
    t.to_f64_vec().into_iter().map(|v| v as f32).collect()
}

fn tensor(shape: Vec<usize>, values: &[f32]) -> Tensor {
    Tensor { dtype: DType::F32, shape, data: values.iter().flat_map(|v| v.to_le_bytes()).collect() }
}

/// A blob with its size-1 leading axes dropped (old Caffe wrote vectors as `1×1×1×N`).
fn squeezed(t: &Tensor, rank: usize) -> Tensor {
    let mut shape = t.shape.clone();
    while shape.len() > rank && shape[0] == 1 {
        shape.remove(0);
    }
    Tensor { dtype: t.dtype, shape, data: t.data.clone() }
}

/// The network's tensors from an MSRA-layout net.
pub fn map_msra(net: &CaffeNet) -> Result<(Vec<(String, Tensor)>, CheckpointInfo), String> {
    let mut out: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut info = CheckpointInfo::default();
    let mut norms: BTreeMap<String, (Option<&CaffeLayer>, Option<&CaffeLayer>)> = BTreeMap::new();
    let mut fc: Vec<&CaffeLayer> = Vec::new();
    for l in &net.layers {
        let has = |n: usize| l.blobs.len() == n;
        match l.kind.as_str() {
            "InnerProduct" => fc.push(l),
            "Convolution" | "BatchNorm" | "Scale" => {
                let (kind, key) =
                    parse_name(&l.name).ok_or_else(|| format!("layer `{}` ({}) is not named as in MSRA's ResNets", l.name, l.kind))?;
                match (kind, l.kind.as_str()) {
                    ("conv", "Convolution") => {
                        if !(has(1) || has(2)) {
                            return Err(format!("convolution `{}` has {} blobs", l.name, l.blobs.len()));
                        }
                        let w = &l.blobs[0];
                        if w.shape.len() != 4 {
                            return Err(format!("convolution `{}` has weights of shape {:?}", l.name, w.shape));
                        }
                        check_conv(l, &key)?;
                        out.insert(format!("{key}.weight"), w.clone());
                        let bias = match l.blobs.get(1) {
                            Some(b) => squeezed(b, 1),
                            None => tensor(vec![w.shape[0]], &vec![0.0; w.shape[0]]),
                        };
                        // Only the stem's bias is part of the layout; any other must be zero.
                        if key == "conv1" {
                            out.insert("conv1.bias".into(), bias);
                        } else if bias.to_f64_vec().iter().any(|&v| v != 0.0) {
                            return Err(format!("convolution `{}` has a non-zero bias, which MSRA's layout has not", l.name));
                        }
                    }
                    ("bn", "BatchNorm") => norms.entry(key).or_default().0 = Some(l),
                    ("scale", "Scale") => norms.entry(key).or_default().1 = Some(l),
                    _ => return Err(format!("layer `{}` is a {}, which its name does not say", l.name, l.kind)),
                }
            }
            "Pooling" => check_pool(l)?,
            _ => {
                if !l.blobs.is_empty() {
                    info.skipped.push(format!("{} ({}, {} blobs)", l.name, l.kind, l.blobs.len()));
                }
            }
        }
    }
    if norms.is_empty() {
        let legacy = if net.legacy { " (the legacy `layers` encoding has no BatchNorm layer type)" } else { "" };
        return Err(format!("no BatchNorm layers: not one of MSRA's BN ResNets{legacy}"));
    }
    for (key, (bn, scale)) in norms {
        let bn = bn.ok_or_else(|| format!("a Scale layer for `{key}` without its BatchNorm"))?;
        let [mean, var, factor] = bn.blobs.as_slice() else {
            return Err(format!("BatchNorm `{}` has {} blobs (mean, variance, factor expected)", bn.name, bn.blobs.len()));
        };
        let (mean, var) = (f32_values(&squeezed(mean, 1)), f32_values(&squeezed(var, 1)));
        let f = f32_values(factor);
        if f.len() != 1 || mean.len() != var.len() {
            return Err(format!("BatchNorm `{}` has blobs of {}, {} and {} values", bn.name, mean.len(), var.len(), f.len()));
        }
        let eps = bn.bn_eps.unwrap_or(1e-5);
        if (eps - snzoo_model::norm::NORM_EPS as f32).abs() > 1e-12 {
            return Err(format!("BatchNorm `{}` has epsilon {eps}; snzoo's BatchNorm computes with 1e-5", bn.name));
        }
        // caffe/src/caffe/layers/batch_norm_layer.cpp: scale = f == 0 ? 0 : 1 / f, in Dtype.
        let s = if f[0] == 0.0 { 0.0 } else { 1.0 / f[0] };
        let c = mean.len();
        out.insert(format!("{key}.running_mean"), tensor(vec![c], &mean.iter().map(|m| m * s).collect::<Vec<_>>()));
        out.insert(format!("{key}.running_var"), tensor(vec![c], &var.iter().map(|v| v * s).collect::<Vec<_>>()));
        let (gamma, beta) = match scale {
            Some(l) => match l.blobs.as_slice() {
                [g] => (f32_values(&squeezed(g, 1)), vec![0.0; c]),
                [g, b] => (f32_values(&squeezed(g, 1)), f32_values(&squeezed(b, 1))),
                _ => return Err(format!("Scale `{}` has {} blobs", l.name, l.blobs.len())),
            },
            None => (vec![1.0; c], vec![0.0; c]),
        };
        if gamma.len() != c || beta.len() != c {
            return Err(format!("the Scale layer of `{}` has {} channels, its BatchNorm {c}", bn.name, gamma.len()));
        }
        out.insert(format!("{key}.weight"), tensor(vec![c], &gamma));
        out.insert(format!("{key}.bias"), tensor(vec![c], &beta));
    }
    let [fc] = fc.as_slice() else {
        return Err(format!("{} InnerProduct layers (one classifier expected)", fc.len()));
    };
    let [w, b] = fc.blobs.as_slice() else {
        return Err(format!("InnerProduct `{}` has {} blobs", fc.name, fc.blobs.len()));
    };
    let w = squeezed(w, 2);
    if w.shape.len() != 2 {
        return Err(format!("InnerProduct `{}` has weights of shape {:?}", fc.name, w.shape));
    }
    out.insert("fc.weight".into(), w);
    out.insert("fc.bias".into(), squeezed(b, 1));
    if !out.contains_key("conv1.weight") {
        return Err("no `conv1` layer: not one of MSRA's ResNets".into());
    }
    Ok((out.into_iter().collect(), info))
}

/// The stride, kernel and padding MSRA's layout gives a convolution.
fn check_conv(l: &CaffeLayer, key: &str) -> Result<(), String> {
    let Some(c) = l.conv else { return Ok(()) };
    let first_of_stage = key.ends_with(".0.conv1") || key.ends_with(".0.downsample.0");
    let strided_stage = !key.starts_with("layer1.");
    let (k, stride, pad) = match key {
        "conv1" => (7, 2, 3),
        k if k.ends_with("conv2") => (3, 1, 1),
        _ => (1, if first_of_stage && strided_stage { 2 } else { 1 }, 0),
    };
    if c.kernel != (k, k) || c.stride != (stride, stride) || c.pad != (pad, pad) || c.group != 1 {
        return Err(format!(
            "convolution `{}` is {:?}/{:?} pad {:?}; MSRA's layout has {k}×{k}/{stride} pad {pad} there",
            l.name, c.kernel, c.stride, c.pad
        ));
    }
    Ok(())
}

/// MSRA's pooling: `pool1` 3×3/2 max (ceil), `pool5` global average.
fn check_pool(l: &CaffeLayer) -> Result<(), String> {
    let Some(p) = l.pool else { return Ok(()) };
    let ok = if p.max {
        p.kernel == (3, 3) && p.stride == (2, 2) && p.pad == (0, 0) && p.ceil && !p.global
    } else {
        p.global || p.stride == (1, 1) && p.pad == (0, 0)
    };
    if !ok {
        return Err(format!("pooling `{}` ({p:?}) is not one of MSRA's layout", l.name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msra_names() {
        assert_eq!(parse_name("res2a_branch2a"), Some(("conv", "layer1.0.conv1".into())));
        assert_eq!(parse_name("bn3d_branch2c"), Some(("bn", "layer2.3.bn3".into())));
        assert_eq!(parse_name("scale5a_branch1"), Some(("scale", "layer4.0.downsample.1".into())));
        assert_eq!(parse_name("res4b22_branch2b"), Some(("conv", "layer3.22.conv2".into())));
        assert_eq!(parse_name("res4f_branch2b"), Some(("conv", "layer3.5.conv2".into())));
        assert_eq!(parse_name("scale_conv1"), Some(("scale", "bn1".into())));
        for bad in ["res6a_branch2a", "res2a_branch3", "res2_branch2a", "res4b0_branch2a", "fc1000", "res2ab_branch2a"] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
