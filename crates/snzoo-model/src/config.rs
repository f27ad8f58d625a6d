//! The architecture of an SN ResNet, the state-dict keys and shapes it has, and inferring it back
//! from a state dict.

use std::collections::{BTreeMap, HashMap};

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

/// Which normalization the network uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormKind {
    /// `SwitchNorm2d`, keys `sn1`, `layerN.B.snK`, `downsample.1` (the SN release).
    #[default]
    Switchable,
    /// `BatchNorm2d`, keys `bn1`, `layerN.B.bnK`, `downsample.1` (torchvision's ResNets; v1 only).
    Batch,
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
}

/// Everything that determines an SN ResNet's structure and state-dict keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ResNetSnConfig {
    pub version: Version,
    pub block: BlockKind,
    /// Blocks per stage, e.g. `[3, 4, 6, 3]` for ResNet-50.
    pub layers: [usize; 4],
    /// Channels of the stem; 64 for the released models, smaller for test networks.
    pub width: usize,
    /// `false` for models trained with IN and LN only (`mean_weight` of length 2, no running stats).
    pub using_bn: bool,
    pub num_classes: usize,
    #[serde(default)]
    pub norm: NormKind,
}

/// Bounds on recorded architecture metadata (see [`ResNetSnConfig::from_metadata`]).
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

impl ResNetSnConfig {
    /// A standard-depth network (18, 34, 50, 101 or 152) of width 64.
    pub fn standard(version: Version, depth: usize, using_bn: bool, num_classes: usize) -> Option<Self> {
        let (_, block, layers) = STANDARD_DEPTHS.iter().find(|(d, _, _)| *d == depth)?;
        Some(Self { version, block: *block, layers: *layers, width: 64, using_bn, num_classes, norm: NormKind::Switchable })
    }

    /// torchvision's BatchNorm ResNet of a standard depth (e.g. `resnet50`).
    pub fn torchvision(depth: usize, num_classes: usize) -> Option<Self> {
        let c = Self::standard(Version::V1, depth, true, num_classes)?;
        Some(Self { norm: NormKind::Batch, ..c })
    }

    /// The state-dict name of the `i`-th normalization layer of a block (1-based): `sn2`, `bn2`.
    pub fn norm_name(&self, i: usize) -> String {
        match self.norm {
            NormKind::Switchable => format!("sn{i}"),
            NormKind::Batch => format!("bn{i}"),
        }
    }

    /// Weighted layers: convolutions on the main path plus the classifier.
    pub fn depth(&self) -> usize {
        let blocks = self.layers.iter().fold(0usize, |a, &n| a.saturating_add(n));
        self.block.convs().saturating_mul(blocks).saturating_add(2)
    }

    /// `resnet50v1-sn`; `-l1.1.1.1` is appended for non-standard stage sizes, `-w4` for
    /// non-standard widths. (`using_bn` is not part of the name: it is a training choice.)
    pub fn arch_name(&self) -> String {
        let mut name = format!(
            "resnet{}{}-{}",
            self.depth(),
            match self.version {
                Version::V1 => "v1",
                Version::V2 => "v2",
            },
            match self.norm {
                NormKind::Switchable => "sn",
                NormKind::Batch => "bn",
            }
        );
        let standard = STANDARD_DEPTHS.iter().any(|(d, b, l)| *d == self.depth() && *b == self.block && *l == self.layers);
        if !standard {
            let l: Vec<String> = self.layers.iter().map(|n| n.to_string()).collect();
            name.push_str(&format!("-l{}", l.join(".")));
        }
        if self.width != 64 {
            name.push_str(&format!("-w{}", self.width));
        }
        name
    }

    /// Output channels of the last stage.
    pub fn feature_dim(&self) -> usize {
        self.width * 8 * self.block.expansion()
    }

    /// Every state-dict key of this architecture with its shape, in module order.
    pub fn expected_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        let norm = self.norm;
        let sn = |out: &mut Vec<(String, Vec<usize>)>, p: &str, c: usize| {
            if norm == NormKind::Batch {
                for n in ["weight", "bias", "running_mean", "running_var"] {
                    out.push((format!("{p}.{n}"), vec![c]));
                }
                return;
            }
            let k = if self.using_bn { 3 } else { 2 };
            out.push((format!("{p}.weight"), vec![1, c, 1, 1]));
            out.push((format!("{p}.bias"), vec![1, c, 1, 1]));
            out.push((format!("{p}.mean_weight"), vec![k]));
            out.push((format!("{p}.var_weight"), vec![k]));
            if self.using_bn {
                out.push((format!("{p}.running_mean"), vec![1, c, 1]));
                out.push((format!("{p}.running_var"), vec![1, c, 1]));
            }
        };
        let conv = |out: &mut Vec<(String, Vec<usize>)>, p: &str, o: usize, i: usize, k: usize| {
            out.push((format!("{p}.weight"), vec![o, i, k, k]));
        };
        conv(&mut out, "conv1", self.width, 3, 7);
        sn(&mut out, &self.norm_name(1), self.width);
        let e = self.block.expansion();
        let mut inplanes = self.width;
        for (stage, &blocks) in self.layers.iter().enumerate() {
            let planes = self.width << stage;
            for b in 0..blocks {
                let p = format!("layer{}.{b}", stage + 1);
                let block_in = inplanes;
                match (self.version, self.block) {
                    (Version::V1, BlockKind::Basic) => {
                        conv(&mut out, &format!("{p}.conv1"), planes, block_in, 3);
                        sn(&mut out, &format!("{p}.{}", self.norm_name(1)), planes);
                        conv(&mut out, &format!("{p}.conv2"), planes, planes, 3);
                        sn(&mut out, &format!("{p}.{}", self.norm_name(2)), planes);
                    }
                    (Version::V1, BlockKind::Bottleneck) => {
                        conv(&mut out, &format!("{p}.conv1"), planes, block_in, 1);
                        sn(&mut out, &format!("{p}.{}", self.norm_name(1)), planes);
                        conv(&mut out, &format!("{p}.conv2"), planes, planes, 3);
                        sn(&mut out, &format!("{p}.{}", self.norm_name(2)), planes);
                        conv(&mut out, &format!("{p}.conv3"), planes * 4, planes, 1);
                        sn(&mut out, &format!("{p}.{}", self.norm_name(3)), planes * 4);
                    }
                    (Version::V2, BlockKind::Basic) => {
                        sn(&mut out, &format!("{p}.{}", self.norm_name(1)), block_in);
                        conv(&mut out, &format!("{p}.conv1"), planes, block_in, 3);
                        sn(&mut out, &format!("{p}.{}", self.norm_name(2)), planes);
                        conv(&mut out, &format!("{p}.conv2"), planes, planes, 3);
                    }
                    (Version::V2, BlockKind::Bottleneck) => {
                        sn(&mut out, &format!("{p}.{}", self.norm_name(1)), block_in);
                        conv(&mut out, &format!("{p}.conv1"), planes, block_in, 1);
                        sn(&mut out, &format!("{p}.{}", self.norm_name(2)), planes);
                        conv(&mut out, &format!("{p}.conv2"), planes, planes, 3);
                        sn(&mut out, &format!("{p}.{}", self.norm_name(3)), planes);
                        conv(&mut out, &format!("{p}.conv3"), planes * 4, planes, 1);
                    }
                }
                if self.has_downsample(stage, b) {
                    match self.version {
                        Version::V1 => {
                            conv(&mut out, &format!("{p}.downsample.0"), planes * e, block_in, 1);
                            sn(&mut out, &format!("{p}.downsample.1"), planes * e);
                        }
                        Version::V2 => conv(&mut out, &format!("{p}.downsample"), planes * e, block_in, 1),
                    }
                }
                inplanes = planes * e;
            }
        }
        if self.version == Version::V2 {
            sn(&mut out, "sn_out", inplanes);
        }
        out.push(("fc.weight".into(), vec![self.num_classes, inplanes]));
        out.push(("fc.bias".into(), vec![self.num_classes]));
        out
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
        let expected = self.expected_shapes();
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
    /// v2 by the presence of `sn_out`, bottlenecks by `conv3`, blocks per stage by counting,
    /// `using_bn` by the length of `mean_weight`, width by `conv1`, classes by `fc`.
    ///
    /// [`validate`]: ResNetSnConfig::validate
    pub fn infer(shapes: &BTreeMap<String, Vec<usize>>) -> Result<Self, ArchError> {
        let get = |k: &str| shapes.get(k).ok_or_else(|| ArchError::Infer(format!("no `{k}` tensor (is this an SN ResNet?)")));
        let conv1 = get("conv1.weight")?;
        let width = match conv1.as_slice() {
            [w, 3, 7, 7] => *w,
            s => return Err(ArchError::Infer(format!("`conv1.weight` has shape {s:?}, expected [width, 3, 7, 7]"))),
        };
        let norm = if shapes.contains_key("bn1.weight") { NormKind::Batch } else { NormKind::Switchable };
        let using_bn = match norm {
            NormKind::Batch => true,
            NormKind::Switchable => match get("sn1.mean_weight")?.as_slice() {
                [3] => true,
                [2] => false,
                s => return Err(ArchError::Infer(format!("`sn1.mean_weight` has shape {s:?}, expected [3] or [2]"))),
            },
        };
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
        let config = Self { version, block, layers, width, using_bn, num_classes, norm };
        config.validate(shapes)?;
        Ok(config)
    }

    /// The safetensors `__metadata__` entries that describe this architecture.
    pub fn to_metadata(&self) -> HashMap<String, String> {
        let layers: Vec<String> = self.layers.iter().map(|n| n.to_string()).collect();
        HashMap::from([
            ("arch".to_string(), self.arch_name()),
            ("version".to_string(), format!("{:?}", self.version).to_lowercase()),
            ("block".to_string(), format!("{:?}", self.block).to_lowercase()),
            ("layers".to_string(), layers.join(",")),
            ("width".to_string(), self.width.to_string()),
            ("using_bn".to_string(), self.using_bn.to_string()),
            ("num_classes".to_string(), self.num_classes.to_string()),
            ("norm".to_string(), format!("{:?}", self.norm).to_lowercase()),
        ])
    }

    /// Reads the entries written by [`to_metadata`](ResNetSnConfig::to_metadata).
    pub fn from_metadata(meta: &HashMap<String, String>) -> Result<Self, ArchError> {
        let get = |k: &str| meta.get(k).ok_or_else(|| ArchError::Metadata(format!("no `{k}` entry")));
        let num = |k: &str| -> Result<usize, ArchError> {
            get(k)?.parse().map_err(|_| ArchError::Metadata(format!("`{k}` is not a number")))
        };
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
        let using_bn = match get("using_bn")?.as_str() {
            "true" => true,
            "false" => false,
            v => return Err(ArchError::Metadata(format!("`using_bn` is `{v}`"))),
        };
        let norm = match meta.get("norm").map(String::as_str) {
            None | Some("switchable") => NormKind::Switchable,
            Some("batch") => NormKind::Batch,
            Some(n) => return Err(ArchError::Metadata(format!("unknown norm `{n}`"))),
        };
        let config = Self { version, block, layers, width: num("width")?, using_bn, num_classes: num("num_classes")?, norm };
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

    fn shapes(c: &ResNetSnConfig) -> BTreeMap<String, Vec<usize>> {
        c.expected_shapes().into_iter().collect()
    }

    #[test]
    fn key_counts_match_the_released_checkpoints() {
        // Counts of the released files' state dicts (see the field notes).
        let n = |v, d, bn| ResNetSnConfig::standard(v, d, bn, 1000).unwrap().expected_shapes().len();
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
                    let c = ResNetSnConfig::standard(version, depth, using_bn, 1000).unwrap();
                    assert_eq!(ResNetSnConfig::infer(&shapes(&c)).unwrap(), c);
                    assert_eq!(ResNetSnConfig::from_metadata(&c.to_metadata()).unwrap(), c);
                    assert_eq!(c.depth(), depth);
                }
            }
        }
    }

    #[test]
    fn validation_names_the_offending_key() {
        let c = ResNetSnConfig::standard(Version::V1, 50, true, 1000).unwrap();
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
        let mut c = ResNetSnConfig::standard(Version::V2, 101, true, 1000).unwrap();
        assert_eq!(c.arch_name(), "resnet101v2-sn");
        c.width = 4;
        assert_eq!(c.arch_name(), "resnet101v2-sn-w4");
        c.layers = [1, 1, 1, 1];
        assert_eq!(c.arch_name(), "resnet14v2-sn-l1.1.1.1-w4");
    }

    #[test]
    fn torchvision_resnet50_keys() {
        let c = ResNetSnConfig::torchvision(50, 1000).unwrap();
        assert_eq!(c.arch_name(), "resnet50v1-bn");
        let s = shapes(&c);
        // torchvision's resnet50 state dict without the num_batches_tracked counters.
        assert_eq!(s.len(), 320 - 53);
        assert_eq!(s["layer1.0.bn3.running_var"], vec![256]);
        assert_eq!(s["layer1.0.downsample.1.weight"], vec![256]);
        assert_eq!(ResNetSnConfig::infer(&s).unwrap(), c);
        assert_eq!(ResNetSnConfig::from_metadata(&c.to_metadata()).unwrap(), c);
    }
}
