//! A model ready to run: weights, network, device, and the evaluation protocol that feeds it.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use snzoo_model::{ResNet, ResNetConfig};
use snzoo_preprocess::EvalTransform;
use snzoo_zoo::ModelCard;

use crate::weights::Weights;
use crate::{Error, Result};

/// Image files larger than this are refused.
pub const MAX_IMAGE_BYTES: u64 = snzoo_eval::runner::MAX_IMAGE_BYTES;

/// A `--device` value: `cpu`, `cuda` (GPU 0) or `cuda:N`.
pub fn parse_device(spec: &str) -> std::result::Result<Option<usize>, String> {
    match spec {
        "cpu" => Ok(None),
        "cuda" => Ok(Some(0)),
        s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Ok(Some(n)),
            _ => Err(format!("unknown device {spec:?}: use cpu, cuda or cuda:N")),
        },
    }
}

/// Opens the device a `--device` value names.
pub fn open_device(spec: &str) -> Result<Device> {
    let Some(ordinal) = parse_device(spec).map_err(Error::Invalid)? else {
        return Ok(Device::Cpu);
    };
    if !cfg!(feature = "cuda") {
        return Err(Error::invalid(format!(
            "--device {spec}: this snzoo was built without CUDA; rebuild with `cargo build --release --features cuda` (needs nvcc)"
        )));
    }
    Device::new_cuda(ordinal).map_err(|e| Error::Other(format!("cannot open CUDA device {ordinal}: {e}")))
}

/// The precision of the convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    /// Inputs and weights of every convolution rounded to bf16, products summed in f32 (CPUs
    /// with AVX-512 BF16); everything else in f32.
    Bf16,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(format!("unknown precision {s:?}: use f32 or bf16")),
        }
    }
}

/// How to open a model.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    pub device: Device,
    pub precision: Precision,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self { device: Device::Cpu, precision: Precision::F32 }
    }
}

/// One predicted class.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    pub index: usize,
    /// The ImageNet wnid and name, for 1000-class models.
    pub wnid: Option<&'static str>,
    pub label: Option<&'static str>,
    pub prob: f32,
    pub logit: f32,
}

/// Softmax of one row of logits, in f32 with the maximum subtracted (as torch).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// The `k` best classes of one row of logits (ranked as `torch.topk`).
pub fn top_predictions(logits: &[f32], k: usize) -> Vec<Prediction> {
    let probs = softmax(logits);
    let imagenet = logits.len() == snzoo_imagenet::NUM_CLASSES;
    snzoo_eval::metrics::top_k(logits, k)
        .into_iter()
        .map(|j| {
            let c = imagenet.then(|| snzoo_imagenet::class(j)).flatten();
            Prediction { index: j, wnid: c.map(|c| c.wnid), label: c.map(|c| c.name), prob: probs[j], logit: logits[j] }
        })
        .collect()
}

/// Logits [batch, classes] of a network for a normalized batch [batch, 3, crop, crop] held on
/// the host, run on `device`.
pub(crate) fn forward_batch(net: &ResNet, input: &[f32], batch: usize, crop: usize, device: &Device) -> candle_core::Result<Vec<f32>> {
    let x = Tensor::from_slice(input, (batch, 3, crop, crop), &Device::Cpu)?.to_device(device)?;
    net.forward(&x)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()
}

/// A network as the evaluation pipeline's [`Classifier`](snzoo_eval::Classifier).
pub(crate) struct NetworkClassifier<'a> {
    pub net: &'a ResNet,
    pub crop: usize,
    pub device: Device,
}

impl snzoo_eval::Classifier for NetworkClassifier<'_> {
    fn num_classes(&self) -> usize {
        self.net.config().num_classes
    }
    fn logits(&mut self, input: &[f32], batch: usize) -> std::result::Result<Vec<f32>, String> {
        forward_batch(self.net, input, batch, self.crop, &self.device).map_err(|e| snzoo_model::error_message(&e))
    }
}

/// A loaded model.
///
/// ```
/// // `Model::open("resnet50v1-sn-8x32-cosine")` downloads a released model; a path opens a file.
/// let model = snzoo::Model::bundled()?;
/// let (_, photos) = snzoo::bundled::paths()?;
/// let top = model.classify_file(&photos.join("n02123045/chelsea_420.jpg"), 5)?;
/// assert_eq!(top.len(), 5);
/// assert!(top.windows(2).all(|w| w[0].prob >= w[1].prob));
///
/// let x = model.preprocess_file(&photos.join("n07920052/coffee_444.jpg"))?;
/// let features = model.features(&x, 1)?;
/// assert_eq!(features.len(), model.config().feature_dim());
/// # Ok::<(), snzoo::Error>(())
/// ```
/// Which features [`Model::embed`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FeatureLayer {
    /// The pooled penultimate features (timm's `forward_features` + global average pool).
    #[default]
    Pool,
    /// The feature map after `layer1` … `layer4` (1–4).
    Stage(usize),
}

impl std::str::FromStr for FeatureLayer {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "pool" => Ok(FeatureLayer::Pool),
            "layer1" | "layer2" | "layer3" | "layer4" => Ok(FeatureLayer::Stage(s[5..].parse().expect("digit"))),
            _ => Err(format!("unknown layer `{s}` (pool, layer1, layer2, layer3 or layer4)")),
        }
    }
}

pub struct Model {
    net: ResNet,
    config: ResNetConfig,
    device: Device,
    precision: Precision,
    card: Option<&'static ModelCard>,
    weights: PathBuf,
    transform: EvalTransform,
}

impl Model {
    /// Opens a model by name (downloaded, verified and converted on first use) or from a
    /// weights file, on the CPU in f32.
    pub fn open(spec: impl AsRef<Path>) -> Result<Model> {
        Self::open_with(spec.as_ref(), &ModelOptions::default(), &mut |_| {})
    }

    /// The bundled tiny model (random weights, for tests and demos; see [`crate::bundled`]).
    pub fn bundled() -> Result<Model> {
        Self::from_file(&crate::bundled::paths()?.0, None, &ModelOptions::default())
    }

    /// [`open`](Self::open) with options; `log` receives the zoo's progress messages.
    pub fn open_with(spec: &Path, options: &ModelOptions, log: &mut dyn FnMut(&str)) -> Result<Model> {
        let (path, card) = crate::zoo::resolve(spec, log)?;
        Self::from_file(&path, card, options)
    }

    /// A model from a weights file (`.safetensors`, or a checkpoint converted in memory).
    pub fn from_file(path: &Path, card: Option<&'static ModelCard>, options: &ModelOptions) -> Result<Model> {
        let weights = Weights::open(path, &options.device)?;
        let mut net = ResNet::new(&weights.config, weights.var_builder()).map_err(|e| {
            Error::Other(format!("cannot build the model from {}: {}", snzoo_fs::display_path(path), snzoo_model::error_message(&e)))
        })?;
        match (options.precision, options.device.is_cpu()) {
            (Precision::F32, _) => {}
            (Precision::Bf16, true) => net = net.with_bf16_convolutions()?,
            (Precision::Bf16, false) => {
                return Err(Error::invalid("--dtype bf16 with --device cuda: only `snzoo bench` runs bf16 on CUDA so far"))
            }
        }
        let mut transform = crate::protocol::resolve(card, &weights.metadata)?;
        crate::protocol::attach_mean_image(&mut transform, &weights.var_builder())
            .map_err(|e| Error::Other(format!("{}: {e}", snzoo_fs::display_path(path))))?;
        Ok(Model {
            net,
            config: weights.config,
            device: options.device.clone(),
            precision: options.precision,
            card,
            weights: path.to_path_buf(),
            transform,
        })
    }

    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }
    pub fn network(&self) -> &ResNet {
        &self.net
    }
    pub fn card(&self) -> Option<&'static ModelCard> {
        self.card
    }
    pub fn weights_path(&self) -> &Path {
        &self.weights
    }
    pub fn device(&self) -> &Device {
        &self.device
    }
    pub fn precision(&self) -> Precision {
        self.precision
    }
    pub fn num_classes(&self) -> usize {
        self.config.num_classes
    }
    /// The evaluation protocol that feeds this model: its card's, else the one its file
    /// records, else the SN release's.
    pub fn transform(&self) -> &EvalTransform {
        &self.transform
    }

    /// Replaces the evaluation protocol.
    pub fn with_transform(mut self, t: EvalTransform) -> Result<Self> {
        t.check().map_err(Error::Invalid)?;
        self.transform = t;
        Ok(self)
    }

    /// The normalized CHW input (3 × crop × crop) of an image file.
    pub fn preprocess_file(&self, path: &Path) -> Result<Vec<f32>> {
        let bytes = snzoo_fs::read_regular(path, MAX_IMAGE_BYTES)?;
        self.transform.apply(&bytes).map_err(|source| Error::Image { path: path.to_path_buf(), source })
    }

    /// Logits [batch, classes] of a normalized batch [batch, 3, crop, crop].
    pub fn logits(&self, input: &[f32], batch: usize) -> Result<Vec<f32>> {
        let crop = self.transform.crop;
        if input.len() != batch * 3 * crop * crop {
            return Err(Error::invalid(format!("{} input values are not {batch} images of 3x{crop}x{crop}", input.len())));
        }
        Ok(forward_batch(&self.net, input, batch, crop, &self.device)?)
    }

    /// The pooled penultimate features [batch, feature_dim] of a normalized batch (timm's
    /// `forward_features` followed by the global average pool).
    pub fn features(&self, input: &[f32], batch: usize) -> Result<Vec<f32>> {
        let crop = self.transform.crop;
        if input.len() != batch * 3 * crop * crop {
            return Err(Error::invalid(format!("{} input values are not {batch} images of 3x{crop}x{crop}", input.len())));
        }
        let x = Tensor::from_slice(input, (batch, 3, crop, crop), &Device::Cpu)?.to_device(&self.device)?;
        Ok(self.net.features(&x)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// The features of `layer` of a normalized batch, with their shape: `[batch, feature_dim]`
    /// for [`FeatureLayer::Pool`], `[batch, C, H, W]` for a stage.
    pub fn embed(&self, input: &[f32], batch: usize, layer: FeatureLayer) -> Result<(Vec<f32>, Vec<usize>)> {
        let crop = self.transform.crop;
        if input.len() != batch * 3 * crop * crop {
            return Err(Error::invalid(format!("{} input values are not {batch} images of 3x{crop}x{crop}", input.len())));
        }
        let x = Tensor::from_slice(input, (batch, 3, crop, crop), &Device::Cpu)?.to_device(&self.device)?;
        let y = match layer {
            FeatureLayer::Pool => self.net.features(&x)?,
            FeatureLayer::Stage(s) => self.net.stage_features(&x, s)?,
        };
        let shape = y.dims().to_vec();
        Ok((y.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?, shape))
    }

    /// The `top` best classes of one image file.
    pub fn classify_file(&self, path: &Path, top: usize) -> Result<Vec<Prediction>> {
        let x = self.preprocess_file(path)?;
        Ok(top_predictions(&self.logits(&x, 1)?, top))
    }
}
