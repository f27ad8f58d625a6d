//! The architecture of a ResNet, the state-dict keys and shapes building it asks for, and
//! inferring it back from a state dict.

use std::collections::{BTreeMap, HashMap};

use crate::norm::NormSpec;

/// ResNet v1 (He et al. 2016a) or the pre-activation v2 (He et al. 2016b).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
}

/// Basic blocks (two 3×3 convolutions; ResNet-18/34) or bottlenecks (1×1, 3×3, 1×1; ResNet-50+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockKind {
    Basic,
    Bottleneck,
}

impl BlockKind {
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
    fn convs(self) -> usize {
        match self {
            BlockKind::Basic => 2,
            BlockKind::Bottleneck => 3,
        }
    }
}

/// State-dict entries that only matter for training and are not part of any architecture here:
/// BatchNorm's `num_batches_tracked` counters. Converters drop them.
pub fn is_training_only(key: &str) -> bool {
    key.ends_with(".num_batches_tracked")
}

/// Errors describing a state dict that does not match an architecture.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArchError {
    #[error("missing tensor `{0}`")]
    Missing(String),
    #[error("unexpected tensor `{0}` (not part of {1})")]
    Unexpected(String, String),
    #[error("tensor `{key}` has shape {found:?}, {arch} expects {expected:?}")]
    Shape { key: String, found: Vec<usize>, expected: Vec<usize>, arch: String },
    #[error("cannot infer the architecture: {0}")]
    Infer(String),
    #[error("invalid architecture metadata: {0}")]
    Metadata(String),
    #[error("the network cannot be built: {0}")]
    Build(String),
}

/// Everything that determines a ResNet's structure and state-dict keys: the SN release's
/// networks (v1 and pre-activation v2 with Switchable Normalization) and torchvision's / timm's
/// v1 layout with BatchNorm or GroupNorm.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ResNetConfig {
    pub version: Version,
    pub block: BlockKind,
    /// Blocks per stage, e.g. `[3, 4, 6, 3]` for ResNet-50.
    pub layers: [usize; 4],
    /// Channels of the stem; 64 for the released models, smaller for test networks.
    pub width: usize,
    pub num_classes: usize,
    /// The normalization layers (and with them the key names: `snK` or `bnK`).
    pub norm: NormSpec,
    /// Where the network differs from torchvision's layout (the BN baselines' frameworks).
    #[serde(default)]
    pub style: Style,
}

/// The ResNet-50 v1 layouts of the frameworks the SN release compares with. Each is torchvision's
/// network (with its key names) but for a few places:
///
/// | | stride 2 | stem max-pool | biases | normalization |
/// |---|---|---|---|---|
/// | `torchvision` (also the SN release, timm) | on the 3×3 of a stage's first block | pad 1 | none | after every conv |
/// | `slim` (TF-Slim `resnet_v1`) | on the 3×3 of a stage's *last* block (blocks 1–3), whose identity shortcut is subsampled (a 1×1/2 max-pool) | TF `SAME` | none (the logits' only) | after every conv |
/// | `msra` (MSRA Caffe) | on the first 1×1 (`branch2a`) and the projection | Caffe ceil, pad 0 | `conv1` | after every conv (BatchNorm + Scale) |
/// | `fbtorch` (fb.resnet.torch's released ResNet-50) | on the 3×3 of a stage's first block | pad 1 | every conv | after the first two convs and after the addition; none in the shortcut |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    #[default]
    Torchvision,
    Slim,
    Msra,
    Fbtorch,
}

impl Style {
    pub fn name(self) -> &'static str {
        match self {
            Style::Torchvision => "torchvision",
            Style::Slim => "slim",
            Style::Msra => "msra",
            Style::Fbtorch => "fbtorch",
        }
    }

    /// The stride of block `b` of stage `stage` (0-based) with `blocks` blocks.
    pub fn block_stride(self, stage: usize, b: usize, blocks: usize) -> usize {
        match self {
            Style::Slim => usize::from(stage < 3 && b + 1 == blocks) + 1,
            _ => usize::from(stage > 0 && b == 0) + 1,
        }
    }

    /// Whether the stride is on the block's first 1×1 convolution (else on its 3×3).
    pub fn stride_on_first_conv(self) -> bool {
        self == Style::Msra
    }

    /// The stem's max-pool convention.
    pub fn stem_pool(self) -> snzoo_kernels::PoolPadding {
        match self {
            Style::Torchvision | Style::Fbtorch => snzoo_kernels::PoolPadding::Torch,
            Style::Slim => snzoo_kernels::PoolPadding::TfSame,
            Style::Msra => snzoo_kernels::PoolPadding::CaffeCeil,
        }
    }

    /// Whether `conv1` has a bias; whether every other convolution has one.
    pub fn stem_bias(self) -> bool {
        matches!(self, Style::Msra | Style::Fbtorch)
    }
    pub fn conv_bias(self) -> bool {
        self == Style::Fbtorch
    }

    /// Whether the block's last normalization follows the addition (else its last conv).
    pub fn norm_after_add(self) -> bool {
        self == Style::Fbtorch
    }

    /// Whether projection shortcuts are normalized.
    pub fn shortcut_norm(self) -> bool {
        self != Style::Fbtorch
    }
}

impl std::str::FromStr for Style {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "torchvision" => Style::Torchvision,
            "slim" => Style::Slim,
            "msra" => Style::Msra,
            "fbtorch" => Style::Fbtorch,
            _ => return Err(format!("unknown style `{s}`")),
        })
    }
}

/// Bounds on recorded architecture metadata (see [`ResNetConfig::from_metadata`]).
pub const MAX_WIDTH: usize = 1 << 16;
pub const MAX_CLASSES: usize = 1 << 24;
pub const MAX_BLOCKS: usize = 1 << 12;

/// The standard depths: (depth, block kind, blocks per stage).
pub const STANDARD_DEPTHS: [(usize, BlockKind, [usize; 4]); 5] = [
    (18, BlockKind::Basic, [2, 2, 2, 2]),
    (34, BlockKind::Basic, [3, 4, 6, 3]),
    (50, BlockKind::Bottleneck, [3, 4, 6, 3]),
    (101, BlockKind::Bottleneck, [3, 4, 23, 3]),
    (152, BlockKind::Bottleneck, [3, 8, 36, 3]),
];

impl ResNetConfig {
    /// An SN network of a standard depth (18, 34, 50, 101 or 152) and width 64.
    pub fn standard(version: Version, depth: usize, using_bn: bool, num_classes: usize) -> Option<Self> {
        let (_, block, layers) = STANDARD_DEPTHS.iter().find(|(d, _, _)| *d == depth)?;
        Some(Self {
            version,
            block: *block,
            layers: *layers,
            width: 64,
            num_classes,
            norm: NormSpec::Switchable { using_bn },
            style: Style::Torchvision,
        })
    }

    /// torchvision's BatchNorm ResNet of a standard depth (e.g. `resnet50`).
    pub fn torchvision(depth: usize, num_classes: usize) -> Option<Self> {
        let c = Self::standard(Version::V1, depth, true, num_classes)?;
        Some(Self { norm: NormSpec::Batch, ..c })
    }

    /// timm's GroupNorm ResNet of a standard depth (`resnet50_gn`: 32 groups).
    pub fn group_norm(depth: usize, groups: usize, num_classes: usize) -> Option<Self> {
        let c = Self::standard(Version::V1, depth, false, num_classes)?;
        Some(Self { norm: NormSpec::Group { groups }, ..c })
    }

    /// Whether the normalization uses batch statistics (the SN release's `using_bn`).
    pub fn using_bn(&self) -> bool {
        self.norm.using_bn()
    }

    /// The state-dict name of the `i`-th normalization layer of a block (1-based): `sn2`, `bn2`.
    pub fn norm_name(&self, i: usize) -> String {
        format!("{}{i}", self.norm.key_prefix())
    }

    /// Weighted layers: convolutions on the main path plus the classifier.
    pub fn depth(&self) -> usize {
        let blocks = self.layers.iter().fold(0usize, |a, &n| a.saturating_add(n));
        self.block.convs().saturating_mul(blocks).saturating_add(2)
    }

    /// `resnet50v1-sn`; `-l1.1.1.1` is appended for non-standard stage sizes, `-w4` for
    /// non-standard widths, `-g16` for GroupNorm with other than 32 groups. (`using_bn` is not
    /// part of the name: it is a training choice.)
    pub fn arch_name(&self) -> String {
        let mut name = format!(
            "resnet{}{}-{}",
            self.depth(),
            match self.version {
                Version::V1 => "v1",
                Version::V2 => "v2",
            },
            self.norm.short_name()
        );
        let standard = STANDARD_DEPTHS.iter().any(|(d, b, l)| *d == self.depth() && *b == self.block && *l == self.layers);
        if !standard {
            let l: Vec<String> = self.layers.iter().map(|n| n.to_string()).collect();
            name.push_str(&format!("-l{}", l.join(".")));
        }
        if self.width != 64 {
            name.push_str(&format!("-w{}", self.width));
        }
        if self.style != Style::Torchvision {
            name.push_str(&format!("-{}", self.style.name()));
        }
        if let NormSpec::Group { groups } = self.norm {
            if groups != crate::norm::DEFAULT_GROUPS {
                name.push_str(&format!("-g{groups}"));
            }
        }
        name
    }

    /// Output channels of the last stage: the length of the pooled features.
    pub fn feature_dim(&self) -> usize {
        self.width * 8 * self.block.expansion()
    }

    /// Every state-dict key of this architecture with its shape, in module order: what
    /// building the network asks its `VarBuilder` for (the network is the one description).
    pub fn expected_shapes(&self) -> Result<Vec<(String, Vec<usize>)>, ArchError> {
        crate::record::shapes_of(self)
    }

    /// Parameters of the network, counted as timm and PyTorch count them: running statistics
    /// and other buffers excluded.
    pub fn param_count(&self) -> Result<usize, ArchError> {
        Ok(self.expected_shapes()?.iter().filter(|(k, _)| !crate::norm::is_buffer(k)).map(|(_, s)| s.iter().product::<usize>()).sum())
    }

    /// Whether block `b` of stage `stage` (0-based) has a projection shortcut.
    pub fn has_downsample(&self, stage: usize, b: usize) -> bool {
        if b != 0 {
            return false;
        }
        let inplanes = if stage == 0 { self.width } else { (self.width << (stage - 1)) * self.block.expansion() };
        stage != 0 || inplanes != self.width * self.block.expansion()
    }

    /// Checks that `shapes` holds exactly this architecture's tensors with the right shapes.
    pub fn validate(&self, shapes: &BTreeMap<String, Vec<usize>>) -> Result<(), ArchError> {
        let expected = self.expected_shapes()?;
        for (key, shape) in &expected {
            match shapes.get(key) {
                None => return Err(ArchError::Missing(key.clone())),
                Some(found) if found != shape => {
                    return Err(ArchError::Shape {
                        key: key.clone(),
                        found: found.clone(),
                        expected: shape.clone(),
                        arch: self.arch_name(),
                    })
                }
                Some(_) => {}
            }
        }
        if shapes.len() != expected.len() {
            let known: std::collections::HashSet<&str> = expected.iter().map(|(k, _)| k.as_str()).collect();
            if let Some(extra) = shapes.keys().find(|k| !known.contains(k.as_str())) {
                return Err(ArchError::Unexpected(extra.clone(), self.arch_name()));
            }
        }
        Ok(())
    }

    /// Infers the architecture from a state dict's keys and shapes (then [`validate`]s it):
    /// the normalization from the stem's layer (`sn1` or `bn1`), v2 by the presence of
    /// `sn_out`, bottlenecks by `conv3`, blocks per stage by counting, width by `conv1`, classes
    /// by `fc`. (GroupNorm's group count is not in the weights: 32 unless told otherwise.)
    ///
    /// [`validate`]: ResNetConfig::validate
    pub fn infer(shapes: &BTreeMap<String, Vec<usize>>) -> Result<Self, ArchError> {
        Self::infer_with(shapes, None)
    }

    /// [`infer`](Self::infer), with GroupNorm's group count given (it is not in the weights).
    pub fn infer_with(shapes: &BTreeMap<String, Vec<usize>>, groups: Option<usize>) -> Result<Self, ArchError> {
        Self::infer_styled(shapes, groups, Style::Torchvision)
    }

    /// [`infer_with`](Self::infer_with) for a network of `style` (the layouts differ where the
    /// shapes cannot tell: the frameworks' converters say which they read).
    pub fn infer_styled(shapes: &BTreeMap<String, Vec<usize>>, groups: Option<usize>, style: Style) -> Result<Self, ArchError> {
        let get = |k: &str| shapes.get(k).ok_or_else(|| ArchError::Infer(format!("no `{k}` tensor (is this a ResNet?)")));
        let conv1 = get("conv1.weight")?;
        let width = match conv1.as_slice() {
            [w, 3, 7, 7] => *w,
            s => return Err(ArchError::Infer(format!("`conv1.weight` has shape {s:?}, expected [width, 3, 7, 7]"))),
        };
        let mut norm = NormSpec::detect(shapes, "sn1")
            .or_else(|| NormSpec::detect(shapes, "bn1"))
            .ok_or_else(|| ArchError::Infer("the stem's normalization (`sn1` or `bn1`) is none that snzoo knows".into()))?;
        if let (NormSpec::Group { .. }, Some(g)) = (norm, groups) {
            norm = NormSpec::Group { groups: g };
        }
        let version = if shapes.contains_key("sn_out.weight") { Version::V2 } else { Version::V1 };
        let block = if shapes.contains_key("layer1.0.conv3.weight") { BlockKind::Bottleneck } else { BlockKind::Basic };
        let mut layers = [0usize; 4];
        for (stage, n) in layers.iter_mut().enumerate() {
            while shapes.contains_key(&format!("layer{}.{}.conv1.weight", stage + 1, *n)) {
                *n += 1;
            }
            if *n == 0 {
                return Err(ArchError::Infer(format!("stage layer{} has no blocks", stage + 1)));
            }
        }
        let num_classes = match get("fc.weight")?.as_slice() {
            [n, _] => *n,
            s => return Err(ArchError::Infer(format!("`fc.weight` has shape {s:?}"))),
        };
        let config = Self { version, block, layers, width, num_classes, norm, style };
        if style != Style::Torchvision && (norm != NormSpec::Batch || version != Version::V1 || block != BlockKind::Bottleneck) {
            return Err(ArchError::Infer(format!(
                "the {} layout is a v1 bottleneck BatchNorm network, not {}",
                style.name(),
                config.arch_name()
            )));
        }
        config.validate(shapes)?;
        Ok(config)
    }

    /// The safetensors `__metadata__` entries that describe this architecture.
    pub fn to_metadata(&self) -> HashMap<String, String> {
        let layers: Vec<String> = self.layers.iter().map(|n| n.to_string()).collect();
        let mut meta = HashMap::from([
            ("arch".to_string(), self.arch_name()),
            ("version".to_string(), format!("{:?}", self.version).to_lowercase()),
            ("block".to_string(), format!("{:?}", self.block).to_lowercase()),
            ("layers".to_string(), layers.join(",")),
            ("width".to_string(), self.width.to_string()),
            ("num_classes".to_string(), self.num_classes.to_string()),
        ]);
        self.norm.to_metadata(&mut meta);
        if self.style != Style::Torchvision {
            meta.insert("style".into(), self.style.name().into());
        }
        meta
    }

    /// Reads the entries written by [`to_metadata`](ResNetConfig::to_metadata).
    pub fn from_metadata(meta: &HashMap<String, String>) -> Result<Self, ArchError> {
        let get = |k: &str| meta.get(k).ok_or_else(|| ArchError::Metadata(format!("no `{k}` entry")));
        let num =
            |k: &str| -> Result<usize, ArchError> { get(k)?.parse().map_err(|_| ArchError::Metadata(format!("`{k}` is not a number"))) };
        let version = match get("version")?.as_str() {
            "v1" => Version::V1,
            "v2" => Version::V2,
            v => return Err(ArchError::Metadata(format!("unknown version `{v}`"))),
        };
        let block = match get("block")?.as_str() {
            "basic" => BlockKind::Basic,
            "bottleneck" => BlockKind::Bottleneck,
            b => return Err(ArchError::Metadata(format!("unknown block `{b}`"))),
        };
        let parsed: Vec<usize> = get("layers")?
            .split(',')
            .map(|n| n.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|_| ArchError::Metadata("`layers` is not a list of numbers".into()))?;
        let layers: [usize; 4] = parsed.try_into().map_err(|_| ArchError::Metadata("`layers` needs four numbers".into()))?;
        let norm = NormSpec::from_metadata(meta).map_err(ArchError::Metadata)?;
        let style = match meta.get("style") {
            Some(s) => s.parse().map_err(ArchError::Metadata)?,
            None => Style::Torchvision,
        };
        let config = Self { version, block, layers, width: num("width")?, num_classes: num("num_classes")?, norm, style };
        if style != Style::Torchvision && (version != Version::V1 || block != BlockKind::Bottleneck || norm != NormSpec::Batch) {
            return Err(ArchError::Metadata(format!("the {} style is a v1 bottleneck BatchNorm network", style.name())));
        }
        if config.width == 0 || config.num_classes == 0 || layers.contains(&0) {
            return Err(ArchError::Metadata("zero width, classes or blocks".into()));
        }
        // Far above any real network; keeps every count derived from them far from overflow.
        if config.width > MAX_WIDTH || config.num_classes > MAX_CLASSES || layers.iter().any(|&n| n > MAX_BLOCKS) {
            return Err(ArchError::Metadata(format!(
                "width {}, classes {} or blocks {:?} out of range (at most {MAX_WIDTH}, {MAX_CLASSES}, {MAX_BLOCKS})",
                config.width, config.num_classes, config.layers
            )));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(c: &ResNetConfig) -> BTreeMap<String, Vec<usize>> {
        c.expected_shapes().unwrap().into_iter().collect()
    }

    #[test]
    fn key_counts_match_the_released_checkpoints() {
        // Counts of the released files' state dicts (see the field notes).
        let n = |v, d, bn| ResNetConfig::standard(v, d, bn, 1000).unwrap().expected_shapes().unwrap().len();
        assert_eq!(n(Version::V1, 50, true), 373);
        assert_eq!(n(Version::V1, 50, false), 267);
        assert_eq!(n(Version::V1, 101, true), 730);
        assert_eq!(n(Version::V2, 50, true), 355);
        assert_eq!(n(Version::V2, 101, true), 712);
    }

    #[test]
    fn infer_round_trips_every_standard_architecture() {
        for (depth, _, _) in STANDARD_DEPTHS {
            for version in [Version::V1, Version::V2] {
                for using_bn in [true, false] {
                    let c = ResNetConfig::standard(version, depth, using_bn, 1000).unwrap();
                    assert_eq!(ResNetConfig::infer(&shapes(&c)).unwrap(), c);
                    assert_eq!(ResNetConfig::from_metadata(&c.to_metadata()).unwrap(), c);
                    assert_eq!(c.depth(), depth);
                }
            }
        }
    }

    #[test]
    fn validation_names_the_offending_key() {
        let c = ResNetConfig::standard(Version::V1, 50, true, 1000).unwrap();
        let mut s = shapes(&c);
        s.remove("layer3.2.sn2.running_var");
        assert_eq!(c.validate(&s), Err(ArchError::Missing("layer3.2.sn2.running_var".into())));
        let mut s = shapes(&c);
        s.insert("layer1.0.sn1.num_batches_tracked".into(), vec![]);
        assert!(matches!(c.validate(&s), Err(ArchError::Unexpected(k, _)) if k == "layer1.0.sn1.num_batches_tracked"));
        let mut s = shapes(&c);
        s.insert("layer2.0.conv2.weight".into(), vec![128, 128, 3, 1]);
        assert!(matches!(c.validate(&s), Err(ArchError::Shape { key, .. }) if key == "layer2.0.conv2.weight"));
    }

    #[test]
    fn arch_names() {
        let mut c = ResNetConfig::standard(Version::V2, 101, true, 1000).unwrap();
        assert_eq!(c.arch_name(), "resnet101v2-sn");
        c.width = 4;
        assert_eq!(c.arch_name(), "resnet101v2-sn-w4");
        c.layers = [1, 1, 1, 1];
        assert_eq!(c.arch_name(), "resnet14v2-sn-l1.1.1.1-w4");
    }

    #[test]
    fn torchvision_resnet50_keys() {
        let c = ResNetConfig::torchvision(50, 1000).unwrap();
        assert_eq!(c.arch_name(), "resnet50v1-bn");
        let s = shapes(&c);
        // torchvision's resnet50 state dict without the num_batches_tracked counters.
        assert_eq!(s.len(), 320 - 53);
        assert_eq!(s["layer1.0.bn3.running_var"], vec![256]);
        assert_eq!(s["layer1.0.downsample.1.weight"], vec![256]);
        assert_eq!(ResNetConfig::infer(&s).unwrap(), c);
        assert_eq!(ResNetConfig::from_metadata(&c.to_metadata()).unwrap(), c);
    }

    /// timm's `resnet50_gn`: torchvision's keys with GroupNorm (weight and bias only).
    #[test]
    fn timm_resnet50_gn_keys() {
        let c = ResNetConfig::group_norm(50, 32, 1000).unwrap();
        assert_eq!(c.arch_name(), "resnet50v1-gn");
        let s = shapes(&c);
        // conv1, bn1 (2), 16 bottlenecks × (3 convs + 3 norms × 2), 4 shortcuts × (conv + norm × 2), fc (2)
        assert_eq!(s.len(), 1 + 2 + 16 * 9 + 4 * 3 + 2);
        assert_eq!(s["layer4.2.bn3.weight"], vec![2048]);
        assert!(!s.contains_key("bn1.running_mean"));
        assert_eq!(ResNetConfig::infer(&s).unwrap(), c);
        assert_eq!(ResNetConfig::from_metadata(&c.to_metadata()).unwrap(), c);
        // timm counts 25,557,032 parameters for resnet50_gn, as for torchvision's resnet50 (BN
        // buffers excluded).
        assert_eq!(c.param_count().unwrap(), 25_557_032);
        assert_eq!(ResNetConfig::torchvision(50, 1000).unwrap().param_count().unwrap(), 25_557_032);
        let g16 = ResNetConfig::group_norm(50, 16, 1000).unwrap();
        assert_eq!(g16.arch_name(), "resnet50v1-gn-g16");
        assert_eq!(ResNetConfig::from_metadata(&g16.to_metadata()).unwrap(), g16);
    }

    /// The BN baselines' layouts: torchvision's key names, with biases and shortcut norms where
    /// the frameworks have them.
    #[test]
    fn framework_styles() {
        let tv = ResNetConfig::torchvision(50, 1000).unwrap();
        let with = |style| ResNetConfig { style, ..tv.clone() };
        // The styles are BatchNorm layouts: an SN network's keys are not read as one.
        let sn = ResNetConfig::standard(Version::V1, 50, true, 1000).unwrap();
        assert!(ResNetConfig::infer_styled(&shapes(&sn), None, Style::Slim).is_err());
        let count = |style| shapes(&with(style)).len();
        assert_eq!(count(Style::Torchvision), 267);
        assert_eq!(count(Style::Slim), 267);
        // + conv1.bias
        assert_eq!(count(Style::Msra), 268);
        // − 4 shortcut norms × 4 tensors, + a bias on conv1, 16 × 3 block convs and 4 projections
        assert_eq!(count(Style::Fbtorch), 267 - 16 + 1 + 48 + 4);
        let fb = shapes(&with(Style::Fbtorch));
        assert_eq!(fb["layer2.0.downsample.0.bias"], vec![512]);
        assert!(!fb.contains_key("layer2.0.downsample.1.weight"));
        for style in [Style::Torchvision, Style::Slim, Style::Msra, Style::Fbtorch] {
            let c = with(style);
            assert_eq!(ResNetConfig::from_metadata(&c.to_metadata()).unwrap(), c);
            assert_eq!(ResNetConfig::infer_styled(&shapes(&c), None, style).unwrap(), c);
            assert_eq!(style.name().parse::<Style>().unwrap(), style);
            // Every style downsamples 224 to 7: three stride-2 blocks per network.
            let strides: usize = (0..4).map(|st| (0..c.layers[st]).filter(|&b| style.block_stride(st, b, c.layers[st]) == 2).count()).sum();
            assert_eq!(strides, 3, "{style:?}");
        }
        assert_eq!(with(Style::Slim).arch_name(), "resnet50v1-bn-slim");
        // A style's missing bias is named.
        let mut s = shapes(&with(Style::Fbtorch));
        s.remove("layer1.0.conv2.bias");
        assert_eq!(with(Style::Fbtorch).validate(&s), Err(ArchError::Missing("layer1.0.conv2.bias".into())));
        // The styles are v1 bottleneck layouts.
        let mut meta = ResNetConfig::standard(Version::V2, 50, true, 1000).unwrap().to_metadata();
        meta.insert("style".into(), "msra".into());
        assert!(ResNetConfig::from_metadata(&meta).is_err());
        meta.insert("style".into(), "caffe2".into());
        assert!(ResNetConfig::from_metadata(&meta).is_err());
    }
}
