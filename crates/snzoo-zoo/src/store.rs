//! The local store and the verified acquisition of a model's checkpoint.
//!
//! Layout: `$SNZOO_HOME/models/<name>/` holds the checkpoint (its released file name), a
//! `<file>.part` while downloading, `model.safetensors` once converted, `sha256` (recorded when
//! no checksum is known, only once the file has been converted), `results.json` (the last
//! evaluation), `<file>.bad-<sha>` for a download that failed verification, `<file>.invalid-<sha>`
//! for one whose checksum was unknown and that did not convert, and `.lock` while a command works
//! on the model: commands on one model take turns ([`Store::lock`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::card::{ExtraFile, ModelCard, Source};
use crate::fetch::{FetchError, Fetcher, Progress};

#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("cannot {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Fs(#[from] snzoo_fs::FsError),
    #[error(
        "checksum mismatch for {name}: expected sha256 {expected}, got {actual}; the download was moved aside to {moved_to} and will not be used"
    )]
    ChecksumMismatch { name: String, expected: String, actual: String, moved_to: PathBuf },
    #[error(
        "{name} has no source snzoo can fetch by itself; download it by hand ({manual}) and run `snzoo download {name} --from-file PATH`"
    )]
    NoSource { name: String, manual: String },
    #[error("{name} cannot be loaded by snzoo: {reason}")]
    NotLoadable { name: String, reason: String },
    #[error(
        "{name} also needs {file}, which snzoo cannot fetch by itself; download it by hand ({manual}) and add `--from-file PATH/{file}`"
    )]
    NoExtraSource { name: String, file: String, manual: String },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ZooError + 'a {
    move |source| ZooError::Io { op, path: path.to_path_buf(), source }
}

/// Where the checksum a file was verified against came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumSource {
    /// `--sha256`.
    Given,
    /// The model card.
    Card,
    /// Recorded at an earlier download.
    Recorded,
    /// None is known. The caller records it with [`Store::record_sha256`] once the file has
    /// proved to be the model (it converted to the card's architecture), or moves it aside with
    /// [`Store::reject`].
    Unknown,
}

/// A checkpoint on disk whose sha256 has been checked (or recorded).
#[derive(Debug, Clone)]
pub struct Verified {
    pub path: PathBuf,
    pub sha256: String,
    pub checksum: ChecksumSource,
}

/// Where to get the checkpoint from, overriding the card.
#[derive(Debug, Clone, Default)]
pub struct AcquireOptions {
    /// A mirror: `https://…`, a Google Drive link (`…?id=…`), or `hf://org/repo/path/file`.
    pub url: Option<String>,
    pub sha256: Option<String>,
    /// A checkpoint fetched by hand (Baidu Pan, a browser).
    pub from_file: Option<PathBuf>,
    /// Extra files fetched by hand, by their card file name (MSRA's mean image).
    pub extra_from_files: std::collections::BTreeMap<String, PathBuf>,
}

/// The local store.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
}

impl Store {
    /// `$SNZOO_HOME`, else `~/.cache/snzoo`.
    pub fn from_env() -> Store {
        let root = std::env::var_os("SNZOO_HOME").map(PathBuf::from).unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
            home.join(".cache").join("snzoo")
        });
        Store { root }
    }

    pub fn model_dir(&self, name: &str) -> PathBuf {
        self.root.join("models").join(name)
    }
    pub fn checkpoint_path(&self, card: &ModelCard) -> PathBuf {
        self.model_dir(&card.name).join(card.file.as_deref().unwrap_or("checkpoint.pth"))
    }
    pub fn converted_path(&self, name: &str) -> PathBuf {
        self.model_dir(name).join("model.safetensors")
    }
    pub fn results_path(&self, name: &str) -> PathBuf {
        self.model_dir(name).join("results.json")
    }
    fn recorded_path(&self, name: &str) -> PathBuf {
        self.model_dir(name).join("sha256")
    }
    pub fn recorded_sha256(&self, name: &str) -> Option<String> {
        let bytes = snzoo_fs::read_regular(&self.recorded_path(name), 4096).ok()?;
        Some(String::from_utf8_lossy(&bytes).trim().to_string()).filter(|s| !s.is_empty())
    }

    /// The last evaluation summary saved for a model, if any.
    pub fn last_results(&self, name: &str) -> Option<serde_json::Value> {
        serde_json::from_slice(&snzoo_fs::read_regular(&self.results_path(name), 1 << 20).ok()?).ok()
    }

    /// Takes the model's lock (`models/<name>/.lock`), waiting while another command holds it;
    /// `on_wait` is told who that is. Hold it across [`acquire`](Self::acquire), conversion and
    /// [`record_sha256`](Self::record_sha256).
    pub fn lock(&self, name: &str, purpose: &str, on_wait: &mut dyn FnMut(&str)) -> Result<snzoo_fs::LockFile, ZooError> {
        let dir = self.model_dir(name);
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        Ok(snzoo_fs::LockFile::acquire(&dir.join(".lock"), purpose, on_wait)?)
    }

    /// Records the sha256 of a model's checkpoint (a file that proved to be the model).
    pub fn record_sha256(&self, name: &str, sha256: &str) -> Result<(), ZooError> {
        Ok(snzoo_fs::write_atomic(&self.recorded_path(name), format!("{sha256}\n").as_bytes())?)
    }

    /// Moves a checkpoint whose checksum was unknown and that is not the model (it did not
    /// convert) aside as `<file>.invalid-<sha>`, so that the next download starts afresh.
    pub fn reject(&self, verified: &Verified) -> Result<PathBuf, ZooError> {
        let mut aside = verified.path.as_os_str().to_owned();
        aside.push(format!(".invalid-{}", &verified.sha256[..12.min(verified.sha256.len())]));
        let aside = PathBuf::from(aside);
        std::fs::rename(&verified.path, &aside).map_err(io("move aside", &verified.path))?;
        Ok(aside)
    }

    /// Gets `card`'s checkpoint into the store and verifies it. Already present → only verified.
    /// Call it holding the model's [`lock`](Self::lock).
    pub fn acquire(
        &self,
        card: &ModelCard,
        opts: &AcquireOptions,
        fetcher: &Fetcher,
        progress: &mut dyn Progress,
        log: &mut dyn FnMut(&str),
    ) -> Result<Verified, ZooError> {
        if !card.loadable {
            return Err(ZooError::NotLoadable {
                name: card.name.clone(),
                reason: card.not_loadable_reason.clone().unwrap_or_else(|| card.format.clone()),
            });
        }
        let dir = self.model_dir(&card.name);
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let target = self.checkpoint_path(card);
        let mut part = target.clone().into_os_string();
        part.push(".part");
        let part = PathBuf::from(part);

        if let Some(src) = &opts.from_file {
            log(&format!("copying {}", src.display()));
            copy_file(src, &part)?;
        } else if target.exists() && opts.url.is_none() {
            log(&format!("already downloaded: {}", target.display()));
            return self.verify(card, &target, &target, opts);
        } else {
            self.download(card, opts, fetcher, &part, progress, log)?;
        }
        self.verify(card, &part, &target, opts)
    }

    /// Gets one of `card`'s extra files into the store (from `from_file`, its own automatic
    /// source, or already there) and verifies it against its card checksum. Hold the lock.
    pub fn acquire_extra(
        &self,
        card: &ModelCard,
        extra: &ExtraFile,
        from_file: Option<&Path>,
        fetcher: &Fetcher,
        progress: &mut dyn Progress,
        log: &mut dyn FnMut(&str),
    ) -> Result<PathBuf, ZooError> {
        let dir = self.model_dir(&card.name);
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let target = dir.join(&extra.file);
        let mut part = target.clone().into_os_string();
        part.push(".part");
        let part = PathBuf::from(part);
        let file = if let Some(src) = from_file {
            log(&format!("copying {}", src.display()));
            copy_file(src, &part)?;
            part.clone()
        } else if target.exists() {
            target.clone()
        } else {
            let manual = || {
                let pages: Vec<String> = extra
                    .sources
                    .iter()
                    .chain(&card.sources)
                    .filter_map(|s| match s {
                        Source::BaiduPan { url, .. } | Source::Manual { url, .. } | Source::Url { url } => Some(url.clone()),
                        _ => None,
                    })
                    .collect();
                ZooError::NoExtraSource { name: card.name.clone(), file: extra.file.clone(), manual: pages.join(", ") }
            };
            match extra.sources.iter().find(|s| s.automatic()) {
                Some(Source::Url { url }) => {
                    log(&format!("downloading {url}"));
                    fetcher.fetch_resumable(url, &part, progress)?;
                }
                Some(Source::GoogleDrive { id, .. }) => {
                    log(&format!("downloading Google Drive file {id}"));
                    let url = fetcher.resolve_google_drive(id)?;
                    fetcher.fetch_resumable(&url, &part, progress)?;
                }
                Some(Source::Hf { repo, file, revision }) => {
                    let cached = fetcher.fetch_hub(repo, file, revision.as_deref(), progress)?;
                    copy_file(&cached, &part)?;
                }
                _ => return Err(manual()),
            }
            part.clone()
        };
        let actual = snzoo_fs::sha256_file(&file)?;
        if let Some(expected) = &extra.sha256 {
            if actual != expected.to_lowercase() {
                let mut bad = target.as_os_str().to_owned();
                bad.push(format!(".bad-{}", &actual[..12]));
                let bad = PathBuf::from(bad);
                std::fs::rename(&file, &bad).map_err(io("move aside", &file))?;
                return Err(ZooError::ChecksumMismatch {
                    name: format!("{} ({})", card.name, extra.file),
                    expected: expected.clone(),
                    actual,
                    moved_to: bad,
                });
            }
            log(&format!("{}: sha256 {actual} verified (card)", extra.file));
        }
        if file != target {
            std::fs::rename(&file, &target).map_err(io("move into place", &file))?;
        }
        Ok(target)
    }

    fn download(
        &self,
        card: &ModelCard,
        opts: &AcquireOptions,
        fetcher: &Fetcher,
        part: &Path,
        progress: &mut dyn Progress,
        log: &mut dyn FnMut(&str),
    ) -> Result<(), ZooError> {
        let source = match &opts.url {
            Some(u) => source_of_url(u),
            None => card.sources.iter().find(|s| s.automatic()).cloned().ok_or_else(|| ZooError::NoSource {
                name: card.name.clone(),
                manual: card
                    .sources
                    .iter()
                    .map(|s| match s {
                        Source::BaiduPan { url, .. } | Source::Manual { url, .. } => url.clone(),
                        other => format!("{other:?}"),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            })?,
        };
        match source {
            Source::GoogleDrive { id, .. } => {
                log(&format!("downloading Google Drive file {id}"));
                let url = fetcher.resolve_google_drive(&id)?;
                fetcher.fetch_resumable(&url, part, progress)?;
            }
            Source::Url { url } => {
                log(&format!("downloading {url}"));
                fetcher.fetch_resumable(&url, part, progress)?;
            }
            Source::Hf { repo, file, revision } => {
                log(&format!("downloading {file} from the Hugging Face Hub repository {repo}"));
                let cached = fetcher.fetch_hub(&repo, &file, revision.as_deref(), progress)?;
                copy_file(&cached, part)?;
            }
            Source::BaiduPan { url, .. } | Source::Manual { url, .. } => {
                return Err(ZooError::NoSource { name: card.name.clone(), manual: url });
            }
        }
        Ok(())
    }

    /// Checks `file` against the known checksum, then moves it to `target`. A mismatch moves it
    /// aside as `<target>.bad-<sha>` instead.
    fn verify(&self, card: &ModelCard, file: &Path, target: &Path, opts: &AcquireOptions) -> Result<Verified, ZooError> {
        let actual = snzoo_fs::sha256_file(file)?;
        let (expected, checksum) = match (&opts.sha256, &card.sha256, self.recorded_sha256(&card.name)) {
            (Some(s), _, _) => (Some(s.to_lowercase()), ChecksumSource::Given),
            (None, Some(s), _) => (Some(s.to_lowercase()), ChecksumSource::Card),
            (None, None, Some(s)) => (Some(s), ChecksumSource::Recorded),
            _ => (None, ChecksumSource::Unknown),
        };
        let prefix_ok = card.sha256_prefix.as_ref().is_none_or(|p| actual.starts_with(&p.to_lowercase()));
        let matches = expected.as_ref().is_none_or(|e| *e == actual) && prefix_ok;
        if !matches {
            let mut bad = target.as_os_str().to_owned();
            bad.push(format!(".bad-{}", &actual[..12]));
            let bad = PathBuf::from(bad);
            std::fs::rename(file, &bad).map_err(io("move aside", file))?;
            let expected = expected.unwrap_or_else(|| format!("{}…", card.sha256_prefix.clone().unwrap_or_default()));
            return Err(ZooError::ChecksumMismatch { name: card.name.clone(), expected, actual, moved_to: bad });
        }
        if file != target {
            std::fs::rename(file, target).map_err(io("move into place", file))?;
        }
        Ok(Verified { path: target.to_path_buf(), sha256: actual, checksum })
    }
}

/// A `--url` as a source: `hf://org/repo/file`, a Google Drive link, or any other URL.
pub fn source_of_url(url: &str) -> Source {
    if let Some(rest) = url.strip_prefix("hf://") {
        let mut parts = rest.splitn(3, '/');
        let (org, name, file) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        return Source::Hf { repo: format!("{org}/{name}"), file: file.to_string(), revision: None };
    }
    let is_drive = url.starts_with("https://drive.google.com/") || url.starts_with("http://drive.google.com/");
    if is_drive {
        if let Some(id) = url.split(['?', '&']).find_map(|kv| kv.strip_prefix("id=")) {
            return Source::GoogleDrive { id: id.to_string(), url: url.to_string() };
        }
        if let Some(id) = url.split("/file/d/").nth(1).and_then(|s| s.split('/').next()) {
            return Source::GoogleDrive { id: id.to_string(), url: url.to_string() };
        }
    }
    Source::Url { url: url.to_string() }
}

fn copy_file(src: &Path, dst: &Path) -> Result<(), ZooError> {
    let mut from = snzoo_fs::open_regular(src)?;
    let mut to = std::fs::File::create(dst).map_err(io("create", dst))?;
    std::io::copy(&mut from, &mut to).map_err(io("write", dst))?;
    to.flush().map_err(io("write", dst))?;
    to.sync_all().map_err(io("write", dst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_source() {
        assert_eq!(
            source_of_url("hf://org/repo/sub/model.pth"),
            Source::Hf { repo: "org/repo".into(), file: "sub/model.pth".into(), revision: None }
        );
        assert!(matches!(source_of_url("https://drive.google.com/open?id=XYZ"), Source::GoogleDrive { id, .. } if id == "XYZ"));
        assert!(matches!(source_of_url("https://drive.google.com/file/d/XYZ/view"), Source::GoogleDrive { id, .. } if id == "XYZ"));
        assert!(matches!(source_of_url("http://127.0.0.1:9/x.pth"), Source::Url { .. }));
    }
}
