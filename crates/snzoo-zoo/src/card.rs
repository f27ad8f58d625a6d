//! Model cards: one TOML file per model in `model_cards/`, embedded at build time.
//!
//! Fields follow well-kept zoo metadata (OpenMMLab metafiles, Hugging Face model-index): the
//! architecture, the normalization and training setup, the claimed single-crop accuracy, the
//! evaluation protocol, where to get the weights, the licence and the paper.

use std::sync::OnceLock;

include!(concat!(env!("OUT_DIR"), "/cards.rs"));

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    pub name: String,
    pub title: String,
    /// The position in `snzoo list`: the release's table order. Cards without one come last.
    #[serde(default)]
    pub table_order: Option<u32>,
    /// The snzoo architecture a conversion must produce (e.g. `resnet50v1-sn`).
    pub arch: String,
    /// Whether snzoo can read this model's weights.
    pub loadable: bool,
    pub format: String,
    #[serde(default)]
    pub not_loadable_reason: Option<String>,
    /// The released file name.
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    /// Leading hex digits of the sha256 where only those are published (torchvision).
    #[serde(default)]
    pub sha256_prefix: Option<String>,
    pub license: String,
    pub paper: String,
    pub repository: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub normalization: Normalization,
    #[serde(default)]
    pub training: Option<Training>,
    pub claimed: Claimed,
    pub eval: EvalProtocol,
    /// Further files the model needs besides its checkpoint (MSRA's mean image), fetched and
    /// verified like it.
    #[serde(default)]
    pub extra_files: Vec<ExtraFile>,
    #[serde(default)]
    pub sources: Vec<Source>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    /// `switchable`, `batch` or `group`.
    pub kind: String,
    pub using_bn: bool,
    /// GroupNorm's number of groups.
    #[serde(default)]
    pub groups: Option<usize>,
    #[serde(default)]
    pub using_moving_average: Option<bool>,
    #[serde(default)]
    pub last_gamma: Option<bool>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    pub dataset: String,
    pub gpus: u32,
    pub images_per_gpu: u32,
    pub epochs: u32,
    pub schedule: String,
    pub initial_lr: f64,
    #[serde(default)]
    pub lr_steps: Vec<u32>,
    #[serde(default)]
    pub warmup_epochs: Option<u32>,
    pub momentum: f64,
    pub weight_decay: f64,
    #[serde(default)]
    pub config: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claimed {
    pub top1: f64,
    pub top5: f64,
    #[serde(default)]
    pub sn_table_top1: Option<f64>,
    #[serde(default)]
    pub sn_table_top5: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalProtocol {
    /// The shorter side after the resize.
    pub resize: usize,
    /// The center crop.
    pub crop: usize,
    /// The resize filter: `bilinear` or `bicubic` (Pillow's).
    pub interpolation: String,
    /// Per-channel mean and standard deviation, in the value range (default: ImageNet's).
    #[serde(default)]
    pub mean: Option<[f32; 3]>,
    #[serde(default)]
    pub std: Option<[f32; 3]>,
    /// `rgb` (default) or `bgr`.
    #[serde(default)]
    pub channel_order: Option<String>,
    /// `unit` (0–1, default) or `byte` (0–255).
    #[serde(default)]
    pub value_range: Option<String>,
    /// The crop fraction as the model's authors state it (timm's `crop_pct`), for results
    /// tables; `crop / resize` when absent.
    #[serde(default)]
    pub crop_pct: Option<f64>,
    /// Where the protocol comes from (the original evaluation code).
    #[serde(default)]
    pub source: Option<String>,
    /// Whose image code resizes and crops: `torchvision` (default, PIL), `tf-slim`, `caffe`
    /// (OpenCV) or `fbtorch` (Lua Torch's `image`).
    #[serde(default)]
    pub pipeline: Option<String>,
    /// A per-pixel mean image (Caffe's `.binaryproto`) is subtracted instead of `mean`; the
    /// card's sources include it (`role = "mean_image"`).
    #[serde(default)]
    pub per_pixel_mean: bool,
}

/// A file a model needs besides its checkpoint.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraFile {
    /// Its released name (also its name in the store).
    pub file: String,
    /// What it is for: `mean_image` (the evaluation protocol's per-pixel mean).
    pub role: String,
    #[serde(default)]
    pub sha256: Option<String>,
    /// Where it comes from (empty: with the checkpoint's own sources, by hand).
    #[serde(default)]
    pub sources: Vec<Source>,
}

/// Where a model's weights can be fetched.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    GoogleDrive {
        id: String,
        url: String,
    },
    BaiduPan {
        url: String,
        note: String,
    },
    /// A page a person downloads from (OneDrive, a login), then `--from-file`.
    Manual {
        url: String,
        note: String,
    },
    Url {
        url: String,
    },
    /// A file in a Hugging Face Hub model repository.
    Hf {
        repo: String,
        file: String,
        #[serde(default)]
        revision: Option<String>,
    },
}

impl ModelCard {
    /// Checks what becomes a path in the store: the name (a directory) and the released file
    /// name must each be one safe path component.
    pub fn check_names(&self) -> Result<(), String> {
        if !crate::fetch::is_safe_component(&self.name) || self.name.starts_with('.') {
            return Err(format!("the model name {:?} cannot be a directory name", self.name));
        }
        for f in self.file.iter().chain(self.extra_files.iter().map(|e| &e.file)) {
            if !crate::fetch::is_safe_component(f) || f.starts_with('.') || f == "model.safetensors" || f == "sha256" || f == "results.json"
            {
                return Err(format!("the file name {f:?} of {} cannot be a file name", self.name));
            }
        }
        Ok(())
    }
}

impl Source {
    /// Whether snzoo can fetch it by itself (Baidu Pan needs a browser).
    pub fn automatic(&self) -> bool {
        !matches!(self, Source::BaiduPan { .. } | Source::Manual { .. })
    }
}

/// Every card, in the release table's order (then by name): the bundled ones, plus those in `$SNZOO_CARDS_DIR` (a private zoo
/// or mirror: same format; a card there replaces a bundled card of the same name). A card file
/// there that does not parse is reported on stderr and skipped.
pub fn cards() -> &'static [ModelCard] {
    static CARDS: OnceLock<Vec<ModelCard>> = OnceLock::new();
    CARDS.get_or_init(|| {
        let mut cards: Vec<ModelCard> =
            CARD_FILES.iter().map(|(file, text)| toml::from_str(text).unwrap_or_else(|e| panic!("model_cards/{file}: {e}"))).collect();
        if let Some(dir) = std::env::var_os("SNZOO_CARDS_DIR") {
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            files.sort();
            for f in files {
                let parsed = snzoo_fs::read_regular(&f, 1 << 20)
                    .map_err(|e| e.to_string())
                    .and_then(|b| String::from_utf8(b).map_err(|e| e.to_string()))
                    .and_then(|t| toml::from_str::<ModelCard>(&t).map_err(|e| e.to_string()))
                    .and_then(|c| c.check_names().map(|_| c));
                match parsed {
                    Ok(c) => {
                        cards.retain(|o| o.name != c.name);
                        cards.push(c);
                    }
                    Err(e) => eprintln!("warning: skipping model card {}: {e}", f.display()),
                }
            }
        }
        cards.sort_by(|a, b| (a.table_order.unwrap_or(u32::MAX), &a.name).cmp(&(b.table_order.unwrap_or(u32::MAX), &b.name)));
        cards
    })
}

/// The card of a model name.
pub fn card(name: &str) -> Option<&'static ModelCard> {
    cards().iter().find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_card_parses_and_is_named_after_its_file() {
        for (file, text) in CARD_FILES {
            let c: ModelCard = toml::from_str(text).unwrap();
            assert_eq!(format!("{}.toml", c.name), *file);
            assert!(c.loadable == c.not_loadable_reason.is_none(), "{file}");
            assert_eq!(c.eval.crop, 224);
            c.check_names().unwrap();
        }
    }

    /// The release's table, exactly.
    #[test]
    fn the_released_sn_models() {
        let expect = [
            ("resnet101v2-sn-8x32-cosine", 78.81, 94.16, 120, "1z-F1nc7T-cdEM-HtYDALW0pJGPX0-RkS", "1rK-ukAjEIPql2ECi38hRbQ", true),
            ("resnet101v1-sn-8x32-cosine", 78.54, 94.10, 120, "1xza5ju6lRRelPym3Sj99VY_8c4jXhxkn", "1CCM0zZITQOzkXd__pWERZw", true),
            ("resnet50v2-sn-8x32-cosine", 77.57, 93.65, 120, "1CjLURwDkynhiXoKjYxUyEIOnWDPVmPnL", "1XdN4tQcvTTIZjyNrnQpQXw", true),
            ("resnet50v1-sn-8x32-cosine", 77.49, 93.32, 120, "17mHmoVom2zM7nrbFeE4yzKa7KtqykTyD", "1jx3Bj15hgfEBZYhi5HP0kQ", true),
            ("resnet50v1-sn-8x32-step", 76.92, 93.26, 100, "1lOTzjgX6B9J9gkm8JdxaWGBKC1T9VLsl", "1pLdnZYxynpztEnc1eUzVvA", true),
            ("resnet50v1-sn-8x4-step", 75.85, 92.70, 100, "1x_ZR0ZFtvRzZHkFZVXeVoLeXoJKX-LrZ", "1qdzaB9r6DffTm_DXTG7MAw", true),
            ("resnet50v1-sn-8x1-step", 75.94, 92.70, 100, "1-y8dDn19Hx02efy4Z5ZRihggYHTYvqkc", "10JmkrQ2WWEeWzqNfB0Fytg", false),
        ];
        for (name, t1, t5, epochs, drive, baidu, using_bn) in expect {
            let c = card(name).unwrap();
            assert_eq!((c.claimed.top1, c.claimed.top5), (t1, t5), "{name}");
            assert_eq!(c.training.as_ref().unwrap().epochs, epochs);
            assert_eq!(c.normalization.using_bn, using_bn);
            assert!(c
                .sources
                .contains(&Source::GoogleDrive { id: drive.into(), url: format!("https://drive.google.com/open?id={drive}") }));
            assert!(c
                .sources
                .iter()
                .any(|s| matches!(s, Source::BaiduPan { url, .. } if *url == format!("https://pan.baidu.com/s/{baidu}"))));
            assert_eq!(c.license, "CC BY-NC 4.0");
        }
        let lr = |n: &str| card(n).unwrap().training.as_ref().unwrap().initial_lr;
        assert_eq!((lr("resnet50v1-sn-8x32-step"), lr("resnet50v1-sn-8x4-step"), lr("resnet50v1-sn-8x1-step")), (0.1, 0.0125, 0.003125));
        assert_eq!(cards().len(), 12);
        // Every row of the release's table loads, the BN baselines in their own formats.
        assert!(cards().iter().all(|c| c.loadable));
        let layout = |n: &str| card(n).unwrap().arch.clone();
        assert_eq!(
            [layout("tf-slim-resnet_v1_50"), layout("msra-caffe-resnet50"), layout("fb-resnet-torch-resnet50")],
            ["resnet50v1-bn-slim", "resnet50v1-bn-msra", "resnet50v1-bn-fbtorch"]
        );
        let msra = card("msra-caffe-resnet50").unwrap();
        assert!(msra.eval.per_pixel_mean);
        assert_eq!(msra.extra_files[0].file, "ResNet_mean.binaryproto");
    }
}
