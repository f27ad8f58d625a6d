//! fb.resnet.torch's Lua Torch7 ResNets (`resnet-50.t7`): the module graph as stored, mapped
//! onto the network.
//!
//! ```text
//! nn.Sequential {
//!   SpatialConvolution(3→64, 7×7, 2, 3) SpatialBatchNormalization ReLU SpatialMaxPooling(3×3, 2, 1)
//!   nn.Sequential { block* } × 4 stages                        (nesting is flattened)
//!   SpatialAveragePooling(7×7) View(2048) Linear(2048→classes)
//! }
//! block = nn.Sequential { ConcatTable { branch, shortcut }, CAddTable, [SpatialBatchNormalization], ReLU }
//! branch = Sequential { conv 1×1, BN, ReLU, conv 3×3 (stride), BN, ReLU, conv 1×1, [BN] }
//! shortcut = Identity | conv 1×1 (stride) | Sequential { conv 1×1, BN }
//! ```
//!
//! The released ResNet-50 normalizes after the addition and not in the branch's end or the
//! projection, with biased convolutions: [`Style::Fbtorch`]. Networks of the current
//! fb.resnet.torch code (normalization after each convolution, none after the addition) are
//! torchvision's layout. Any other arrangement is refused with what was found. BatchNorm
//! modules of `__version` 2 store `running_var`; older ones `running_std` = 1/√(var + eps), read
//! as nn's `BN:read` upgrades it (`var = std⁻² − eps`).

use std::path::Path;
use std::rc::Rc;

use snzoo_convert::torch7::{self, Object, Value};
use snzoo_convert::{CheckpointInfo, DType, Tensor};
use snzoo_model::Style;

use super::{CheckpointFormat, Probe, StateDict};
use crate::{Error, Result};

/// Lua Torch7 models (`.t7`) of fb.resnet.torch's ResNet layout.
pub struct Torch7Model;

impl CheckpointFormat for Torch7Model {
    fn name(&self) -> &'static str {
        "Torch7 model"
    }

    fn sniff(&self, probe: &Probe) -> bool {
        torch7::sniff(probe.head)
    }

    fn read(&self, path: &Path) -> Result<StateDict> {
        let root = torch7::read_t7(path).map_err(|e| Error::Format { path: path.to_path_buf(), format: "Torch7", source: Box::new(e) })?;
        let Mapped { tensors, style, info } =
            map_resnet(&root).map_err(|m| Error::Format { path: path.to_path_buf(), format: "Torch7", source: m.into() })?;
        Ok(StateDict { path: path.to_path_buf(), format: "Torch7 model".into(), tensors, info, style })
    }
}

/// A class name without its package (`cudnn.SpatialConvolution` → `SpatialConvolution`).
fn base(o: &Object) -> &str {
    o.class.rsplit('.').next().unwrap_or(&o.class)
}

fn children(o: &Object) -> Result<Vec<Rc<Object>>, String> {
    let t = o.fields.get("modules").and_then(Value::as_table).ok_or_else(|| format!("`{}` has no modules table", o.class))?;
    t.as_list()
        .ok_or_else(|| format!("`{}`'s modules table is not a list 1..n (damaged?)", o.class))?
        .into_iter()
        .map(|v| v.as_object().cloned().ok_or_else(|| format!("`{}` holds a module that is not an object", o.class)))
        .collect()
}

fn is_block(o: &Object) -> bool {
    base(o) == "Sequential" && children(o).ok().and_then(|c| c.first().map(|m| base(m) == "ConcatTable")).unwrap_or(false)
}

/// The modules of the top-level sequence, nested Sequentials (other than blocks) expanded.
fn flatten(o: &Object, out: &mut Vec<Rc<Object>>) -> Result<(), String> {
    for m in children(o)? {
        if base(&m) == "Sequential" && !is_block(&m) {
            flatten(&m, out)?;
        } else {
            out.push(m);
        }
    }
    Ok(())
}

fn number(o: &Object, field: &str) -> Option<f64> {
    o.fields.get(field).and_then(Value::as_number)
}

/// A float tensor field, contiguous, as f32, with `shape` (same element count, no zero sizes).
fn tensor_field(o: &Object, field: &str, shape: &[usize]) -> Result<Option<Tensor>, String> {
    let Some(v) = o.fields.get(field) else { return Ok(None) };
    let t = match v {
        Value::Nil => return Ok(None),
        Value::Tensor(t) => t,
        _ => return Err(format!("`{}`.{field} is not a tensor", o.class)),
    };
    // The expected sizes come from the file's own numbers (nOutputPlane, kW, ...): a zero or an
    // overflowing product would let an empty tensor stand for a huge layer.
    let n = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d).filter(|_| d > 0));
    if n != Some(t.numel()) {
        return Err(format!("`{}`.{field} has sizes {:?}, expected {shape:?}", o.class, t.sizes));
    }
    if !t.dtype().is_some_and(DType::is_float) {
        return Err(format!("`{}`.{field} is a {}, not a float tensor", o.class, t.class));
    }
    let mut c = t.to_contiguous().cast_float(DType::F32);
    c.shape = shape.to_vec();
    Ok(Some(c))
}

fn ones(n: usize, v: f32) -> Tensor {
    Tensor { dtype: DType::F32, shape: vec![n], data: v.to_le_bytes().repeat(n) }
}

/// A convolution's tensors and geometry.
struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
    out: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
}

fn conv(o: &Object, what: &str) -> Result<Conv, String> {
    if base(o) != "SpatialConvolution" {
        return Err(format!("{what}: a `{}` where a SpatialConvolution belongs", o.class));
    }
    let get = |f: &str| number(o, f).map(|v| v as usize).ok_or_else(|| format!("{what}: `{}` has no {f}", o.class));
    let (i, out, kw, kh) = (get("nInputPlane")?, get("nOutputPlane")?, get("kW")?, get("kH")?);
    let (dw, dh, pw, ph) = (get("dW")?, get("dH")?, number(o, "padW").unwrap_or(0.0) as usize, number(o, "padH").unwrap_or(0.0) as usize);
    if kw != kh || dw != dh || pw != ph || number(o, "groups").is_some_and(|g| g != 1.0) {
        return Err(format!("{what}: a {kh}×{kw}/{dh}×{dw} pad {ph}×{pw} convolution (square, ungrouped ones only)"));
    }
    let weight = tensor_field(o, "weight", &[out, i, kh, kw])?.ok_or_else(|| format!("{what}: no weight"))?;
    let bias = tensor_field(o, "bias", &[out])?;
    Ok(Conv { weight, bias, out, kernel: kw, stride: dw, pad: pw })
}

/// A BatchNorm's weight, bias, mean and variance.
fn batch_norm(o: &Object, c: usize, what: &str) -> Result<[Tensor; 4], String> {
    if !base(o).ends_with("BatchNormalization") {
        return Err(format!("{what}: a `{}` where a SpatialBatchNormalization belongs", o.class));
    }
    let eps = number(o, "eps").unwrap_or(1e-5);
    if (eps - snzoo_model::norm::NORM_EPS).abs() > 1e-12 {
        return Err(format!("{what}: epsilon {eps}; snzoo's BatchNorm computes with 1e-5"));
    }
    let mean = tensor_field(o, "running_mean", &[c])?.ok_or_else(|| format!("{what}: no running_mean"))?;
    let var = match tensor_field(o, "running_var", &[c])? {
        Some(v) => v,
        None => {
            // nn's BN:read of a version-1 module: running_var = running_std:pow(-2):add(-eps).
            let std = tensor_field(o, "running_std", &[c])?.ok_or_else(|| format!("{what}: neither running_var nor running_std"))?;
            let v: Vec<f32> = std.to_f64_vec().iter().map(|&s| (s.powi(-2) as f32) + (-eps as f32)).collect();
            Tensor { dtype: DType::F32, shape: vec![c], data: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
        }
    };
    let weight = tensor_field(o, "weight", &[c])?.unwrap_or_else(|| ones(c, 1.0));
    let bias = tensor_field(o, "bias", &[c])?.unwrap_or_else(|| ones(c, 0.0));
    Ok([weight, bias, mean, var])
}

fn expect(o: &Object, class: &str, what: &str) -> Result<(), String> {
    if base(o) == class {
        Ok(())
    } else {
        Err(format!("{what}: a `{}` where a {class} belongs", o.class))
    }
}

/// One residual block, read.
struct Block {
    convs: Vec<Conv>,
    norms: Vec<[Tensor; 4]>,
    branch_norm: bool,
    norm_after_add: Option<[Tensor; 4]>,
    /// The projection and its norm, if any.
    projection: Option<(Conv, Option<[Tensor; 4]>)>,
}

fn block(o: &Object, what: &str) -> Result<Block, String> {
    let parts = children(o)?;
    let concat = children(&parts[0])?;
    let [branch, shortcut] = concat.as_slice() else { return Err(format!("{what}: a ConcatTable of {} branches", concat.len())) };
    let tail: Vec<&str> = parts[1..].iter().map(|m| base(m)).collect();
    let norm_after_add = match tail.as_slice() {
        ["CAddTable", "ReLU"] => None,
        ["CAddTable", bn, "ReLU"] if bn.ends_with("BatchNormalization") => Some(()),
        t => return Err(format!("{what}: after the branches {t:?} (CAddTable, [SpatialBatchNormalization], ReLU expected)")),
    };
    expect(branch, "Sequential", what)?;
    let b = children(branch)?;
    let kinds: Vec<&str> = b.iter().map(|m| base(m)).collect();
    let branch_norm = match kinds.len() {
        7 => false,
        8 => true,
        _ => return Err(format!("{what}: a residual branch of {kinds:?}")),
    };
    let mut convs = Vec::new();
    let mut norms = Vec::new();
    let mut c_in = None;
    for (i, m) in b.iter().enumerate() {
        let w = format!("{what} branch module {}", i + 1);
        match i {
            0 | 3 | 6 => {
                let c = conv(m, &w)?;
                c_in.get_or_insert(c.weight.shape[1]);
                convs.push(c);
            }
            1 | 4 | 7 => norms.push(batch_norm(m, convs.last().expect("a conv precedes").out, &w)?),
            _ => expect(m, "ReLU", &w)?,
        }
    }
    let planes_out = convs[2].out;
    let norm_after_add = match norm_after_add {
        Some(()) => Some(batch_norm(&parts[2], planes_out, &format!("{what} after the addition"))?),
        None => None,
    };
    let projection = match base(shortcut) {
        "Identity" => None,
        "SpatialConvolution" => Some((conv(shortcut, &format!("{what} shortcut"))?, None)),
        "Sequential" => {
            let s = children(shortcut)?;
            match s.as_slice() {
                [c] => Some((conv(c, &format!("{what} shortcut"))?, None)),
                [c, n] => {
                    let c = conv(c, &format!("{what} shortcut"))?;
                    let n = batch_norm(n, c.out, &format!("{what} shortcut"))?;
                    Some((c, Some(n)))
                }
                _ => return Err(format!("{what}: a shortcut of {} modules", s.len())),
            }
        }
        _ => return Err(format!("{what}: a `{}` shortcut (Identity or a 1×1 convolution expected)", shortcut.class)),
    };
    Ok(Block { convs, norms, branch_norm, norm_after_add, projection })
}

/// A module graph read as a network.
pub struct Mapped {
    pub tensors: Vec<(String, Tensor)>,
    pub style: Style,
    /// What was left out (a trailing SoftMax).
    pub info: CheckpointInfo,
}

/// The network's tensors, its layout and what was skipped.
pub fn map_resnet(root: &Value) -> Result<Mapped, String> {
    let mut root = root.as_object().ok_or("the file holds no module")?.clone();
    if base(&root) == "DataParallelTable" {
        root = children(&root)?.first().cloned().ok_or("an empty DataParallelTable")?;
    }
    expect(&root, "Sequential", "the model")?;
    let mut seq = Vec::new();
    flatten(&root, &mut seq)?;
    let mut info = CheckpointInfo::default();
    // Trailing SoftMax/LogSoftMax: the logits are taken before it.
    while seq.last().is_some_and(|m| base(m).ends_with("SoftMax")) {
        info.skipped.push(seq.pop().expect("non-empty").class.clone());
    }
    let n = seq.len();
    if n < 8 {
        return Err(format!("{n} modules: too few for a ResNet"));
    }
    let mut out: Vec<(String, Tensor)> = Vec::new();
    let stem = conv(&seq[0], "the stem")?;
    if (stem.kernel, stem.stride, stem.pad) != (7, 2, 3) {
        return Err(format!("the stem is a {0}×{0}/{1} pad {2} convolution (7×7/2 pad 3 expected)", stem.kernel, stem.stride, stem.pad));
    }
    let width = stem.out;
    let bn1 = batch_norm(&seq[1], width, "the stem")?;
    expect(&seq[2], "ReLU", "the stem")?;
    let pool = &seq[3];
    expect(pool, "SpatialMaxPooling", "the stem")?;
    let geometry: Vec<f64> = ["kW", "kH", "dW", "dH", "padW", "padH"].iter().map(|f| number(pool, f).unwrap_or(0.0)).collect();
    if geometry != [3.0, 3.0, 2.0, 2.0, 1.0, 1.0] || pool.fields.get("ceil_mode") == Some(&Value::Bool(true)) {
        return Err(format!("the stem's max-pool is {geometry:?} (3×3/2 pad 1, floor mode expected)"));
    }
    let blocks: Vec<Block> =
        seq[4..n - 3].iter().enumerate().map(|(i, m)| block(m, &format!("block {}", i + 1))).collect::<Result<_, _>>()?;
    expect(&seq[n - 3], "SpatialAveragePooling", "the head")?;
    if !matches!(base(&seq[n - 2]), "View" | "Reshape") {
        return Err(format!("the head: a `{}` where a View belongs", seq[n - 2].class));
    }
    let fc = &seq[n - 1];
    expect(fc, "Linear", "the head")?;
    let fc_w = fc.fields.get("weight").and_then(Value::as_tensor).ok_or("the Linear layer has no weight")?;
    let [classes, features] = fc_w.sizes.as_slice() else { return Err(format!("the Linear weight has sizes {:?}", fc_w.sizes)) };
    let (classes, features) = (*classes, *features);

    // The layout, from the first block; every block must agree.
    let first = blocks.first().ok_or("no residual blocks")?;
    let style = match (first.branch_norm, first.norm_after_add.is_some()) {
        (false, true) => Style::Fbtorch,
        (true, false) => Style::Torchvision,
        (b, a) => return Err(format!("blocks with a branch norm {b} and a norm after the addition {a}: a layout snzoo does not build")),
    };
    let biased = style == Style::Fbtorch;
    let push_conv = |out: &mut Vec<(String, Tensor)>, key: &str, c: &Conv, with_bias: bool| -> Result<(), String> {
        out.push((format!("{key}.weight"), c.weight.clone()));
        let bias = c.bias.clone().unwrap_or_else(|| ones(c.out, 0.0));
        if with_bias {
            out.push((format!("{key}.bias"), bias));
        } else if bias.to_f64_vec().iter().any(|&v| v != 0.0) {
            return Err(format!("`{key}` has a non-zero bias, which the {} layout has not", style.name()));
        }
        Ok(())
    };
    let push_norm = |out: &mut Vec<(String, Tensor)>, key: &str, n: &[Tensor; 4]| {
        for (suffix, t) in ["weight", "bias", "running_mean", "running_var"].iter().zip(n) {
            out.push((format!("{key}.{suffix}"), t.clone()));
        }
    };
    push_conv(&mut out, "conv1", &stem, biased)?;
    push_norm(&mut out, "bn1", &bn1);
    let (mut stage, mut index) = (0usize, 0usize);
    for (i, b) in blocks.iter().enumerate() {
        let what = format!("block {}", i + 1);
        if (b.branch_norm, b.norm_after_add.is_some()) != (first.branch_norm, first.norm_after_add.is_some()) {
            return Err(format!("{what} is laid out unlike the first block"));
        }
        if i > 0 && b.projection.is_some() {
            stage += 1;
            index = 0;
        }
        if stage > 3 {
            return Err("more than four stages".into());
        }
        let key = format!("layer{}.{index}", stage + 1);
        let stride = if stage > 0 && index == 0 { 2 } else { 1 };
        let geometry: Vec<(usize, usize, usize)> = b.convs.iter().map(|c| (c.kernel, c.stride, c.pad)).collect();
        if geometry != [(1, 1, 0), (3, stride, 1), (1, 1, 0)] {
            return Err(format!("{what}: convolutions {geometry:?} (kernel, stride, pad); fb.resnet.torch's bottleneck has [(1, 1, 0), (3, {stride}, 1), (1, 1, 0)]"));
        }
        for (k, c) in b.convs.iter().enumerate() {
            push_conv(&mut out, &format!("{key}.conv{}", k + 1), c, biased)?;
        }
        for (k, n) in b.norms.iter().enumerate() {
            push_norm(&mut out, &format!("{key}.bn{}", k + 1), n);
        }
        if let Some(n) = &b.norm_after_add {
            push_norm(&mut out, &format!("{key}.bn3"), n);
        }
        if let Some((c, norm)) = &b.projection {
            if (c.kernel, c.stride, c.pad) != (1, stride, 0) {
                return Err(format!("{what}: a {0}×{0}/{1} projection (1×1/{stride} expected)", c.kernel, c.stride));
            }
            match (norm, style) {
                (None, Style::Fbtorch) => push_conv(&mut out, &format!("{key}.downsample.0"), c, true)?,
                (Some(n), Style::Torchvision) => {
                    push_conv(&mut out, &format!("{key}.downsample.0"), c, false)?;
                    push_norm(&mut out, &format!("{key}.downsample.1"), n);
                }
                _ => {
                    return Err(format!(
                        "{what}: a projection {} a norm, unlike the rest of the {} layout",
                        if norm.is_some() { "with" } else { "without" },
                        style.name()
                    ))
                }
            }
        }
        index += 1;
    }
    if stage != 3 {
        return Err(format!("{} stages (four expected)", stage + 1));
    }
    let w = tensor_field(fc, "weight", &[classes, features])?.ok_or("the Linear layer has no weight")?;
    let bias = tensor_field(fc, "bias", &[classes])?.unwrap_or_else(|| ones(classes, 0.0));
    out.push(("fc.weight".into(), w));
    out.push(("fc.bias".into(), bias));
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Mapped { tensors: out, style, info })
}
