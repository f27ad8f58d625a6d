//! Training SN networks: a model whose parameters are candle `Var`s, the running-statistics
//! update of the original SN code, and SGD exactly as `torch.optim.SGD`.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use crate::config::ResNetConfig;
use crate::norm::{is_buffer, BatchStats};
use crate::resnet::ResNet;

/// How SN layers update their running statistics in training (the original's
/// `using_moving_average`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RunningStats {
    /// `running = momentum · running + (1 − momentum) · batch` (the original's momentum is 0.9).
    MovingAverage { momentum: f64 },
    /// `running_mean += mean_bn`, `running_var += mean_bn² + var_bn` (re-estimated after training).
    Accumulate,
}

/// An SN ResNet with trainable variables.
pub struct Trainable {
    pub model: ResNet,
    pub config: ResNetConfig,
    varmap: VarMap,
}

impl Trainable {
    /// Builds the network and sets every variable from `tensors` (state-dict names). With
    /// `fresh_fc`, a missing or differently shaped `fc` is left at its initialisation (a new head).
    pub fn new(config: &ResNetConfig, tensors: &HashMap<String, Tensor>, device: &Device, fresh_fc: bool) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let model = ResNet::new(config, vb)?;
        {
            let vars = varmap.data().lock().expect("varmap lock");
            for (name, var) in vars.iter() {
                if fresh_fc && name.starts_with("fc.") {
                    continue;
                }
                match tensors.get(name) {
                    Some(t) if t.dims() == var.dims() => var.set(&t.to_dtype(DType::F32)?.to_device(device)?)?,
                    Some(t) => candle_core::bail!("tensor `{name}` has shape {:?}, the model expects {:?}", t.dims(), var.dims()),
                    None => candle_core::bail!("missing tensor `{name}`"),
                }
            }
        }
        Ok(Self { model, config: config.clone(), varmap })
    }

    /// A freshly initialised network, as the original code initialises one: convolutions
    /// Kaiming-normal (fan out, ReLU gain), SN `weight` 1 and `bias` 0, `mean_weight` and
    /// `var_weight` 1 (equal mixing), running statistics 0, `fc` weight U(±1/√in) and bias 0; with
    /// `last_gamma`, the last SN of every residual block starts at `weight` 0, so that each block
    /// starts as the identity.
    pub fn fresh(config: &ResNetConfig, last_gamma: bool, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let model = ResNet::new(config, vb)?;
        let last_norm = config.norm_name(match config.block {
            crate::config::BlockKind::Basic => 2,
            crate::config::BlockKind::Bottleneck => 3,
        });
        {
            let vars = varmap.data().lock().expect("varmap lock");
            for (name, var) in vars.iter() {
                let dims = var.dims().to_vec();
                let t = if name == "fc.weight" {
                    let bound = 1.0 / (dims[1] as f64).sqrt();
                    Tensor::rand(-bound, bound, dims.as_slice(), device)?.to_dtype(DType::F32)?
                } else if dims.len() == 4 && dims[0] > 1 && name.ends_with(".weight") && !name.contains("sn") {
                    let fan_out = dims[0] * dims[2] * dims[3];
                    Tensor::randn(0f32, (2.0 / fan_out as f64).sqrt() as f32, dims.as_slice(), device)?
                } else if name.ends_with(".weight") && dims.len() == 4 {
                    // An SN weight (1, C, 1, 1).
                    let block_last = name.split('.').rev().nth(1).is_some_and(|n| n == last_norm) && name.starts_with("layer");
                    if last_gamma && block_last {
                        Tensor::zeros(dims.as_slice(), DType::F32, device)?
                    } else {
                        Tensor::ones(dims.as_slice(), DType::F32, device)?
                    }
                } else if name.ends_with("mean_weight") || name.ends_with("var_weight") {
                    Tensor::ones(dims.as_slice(), DType::F32, device)?
                } else {
                    Tensor::zeros(dims.as_slice(), DType::F32, device)?
                };
                var.set(&t)?;
            }
        }
        Ok(Self { model, config: config.clone(), varmap })
    }

    /// The trainable parameters (everything but the running statistics), by name.
    pub fn parameters(&self) -> Vec<(String, Var)> {
        let vars = self.varmap.data().lock().expect("varmap lock");
        let mut out: Vec<(String, Var)> = vars.iter().filter(|(k, _)| !is_buffer(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every variable (parameters and buffers), by name, detached.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let vars = self.varmap.data().lock().expect("varmap lock");
        let mut out: Vec<(String, Tensor)> = vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().detach())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Applies the batch statistics of a training forward to the running buffers.
    pub fn update_running(&self, stats: &[BatchStats], rule: RunningStats) -> Result<()> {
        let vars = self.varmap.data().lock().expect("varmap lock");
        for s in stats {
            for (buffer, batch) in [("running_mean", &s.mean), ("running_var", &s.var)] {
                let name = format!("{}.{buffer}", s.layer);
                let var = vars.get(&name).ok_or_else(|| candle_core::Error::Msg(format!("no buffer `{name}`")))?;
                let old = var.as_tensor().detach();
                let new = match (rule, buffer) {
                    (RunningStats::MovingAverage { momentum }, _) => ((old * momentum)? + (batch * (1.0 - momentum))?)?,
                    (RunningStats::Accumulate, "running_mean") => (old + batch)?,
                    (RunningStats::Accumulate, _) => ((old + s.mean.sqr()?)? + batch)?,
                };
                var.set(&new)?;
            }
        }
        Ok(())
    }
}

/// Stochastic gradient descent exactly as `torch.optim.SGD` (dampening 0, no Nesterov): the
/// weight decay is added to the gradient, the momentum buffer starts as the first gradient and
/// then `b = momentum · b + g`, and `p -= lr · b`.
pub struct Sgd {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    buffers: HashMap<String, Tensor>,
}

impl Sgd {
    pub fn new(lr: f64, momentum: f64, weight_decay: f64) -> Self {
        Self { lr, momentum, weight_decay, buffers: HashMap::new() }
    }

    /// One update of `params` from `grads`; parameters without a gradient are left alone.
    pub fn step(&mut self, params: &[(String, Var)], grads: &GradStore) -> Result<()> {
        for (name, var) in params {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            let p = var.as_tensor().detach();
            let mut d = g.detach();
            if self.weight_decay != 0.0 {
                d = (d + (&p * self.weight_decay)?)?;
            }
            if self.momentum != 0.0 {
                let b = match self.buffers.get(name) {
                    None => d.clone(),
                    Some(b) => ((b * self.momentum)? + &d)?,
                };
                self.buffers.insert(name.clone(), b.clone());
                d = b;
            }
            var.set(&(p - (d * self.lr)?)?)?;
        }
        Ok(())
    }
}
