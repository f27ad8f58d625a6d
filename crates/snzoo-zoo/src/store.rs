//! The local store and the verified acquisition of a model's checkpoint.
//!
//! Layout: `$SNZOO_HOME/models/<name>/` holds the checkpoint (its released file name), a
//! `<file>.part` while downloading, `model.safetensors` once converted, `sha256` (recorded when
//! no checksum is known), `results.json` (the last evaluation), and `<file>.bad-<sha>` for a
//! download that failed verification.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::card::{ModelCard, Source};
use crate::fetch::{fetch_hub, FetchError, Fetcher, Progress};

#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "checksum mismatch for {name}: expected sha256 {expected}, got {actual}; the download was moved aside to {moved_to} and will not be used"
    )]
    ChecksumMismatch { name: String, expected: String, actual: String, moved_to: PathBuf },
    #[error("{name} has no source snzoo can fetch by itself; download it by hand ({manual}) and run `snzoo download {name} --from-file PATH`")]
    NoSource { name: String, manual: String },
    #[error("{name} cannot be loaded by snzoo: {reason}")]
    NotLoadable { name: String, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ZooError + '_ {
    move |source| ZooError::Io { path: path.to_path_buf(), source }
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
    /// None was known: this download's checksum has now been recorded.
    NewlyRecorded,
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
}

/// The local store.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
}

pub fn sha256_of(path: &Path) -> Result<String, ZooError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
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
        std::fs::read_to_string(self.recorded_path(name)).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
    }

    /// The last evaluation summary saved for a model, if any.
    pub fn last_results(&self, name: &str) -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(self.results_path(name)).ok()?).ok()
    }

    /// Gets `card`'s checkpoint into the store and verifies it. Already present → only verified.
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
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
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
                manual: card.sources.iter().map(|s| match s {
                    Source::BaiduPan { url, .. } => url.clone(),
                    other => format!("{other:?}"),
                }).collect::<Vec<_>>().join(", "),
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
                let cached = fetch_hub(&repo, &file, revision.as_deref())?;
                copy_file(&cached, part)?;
            }
            Source::BaiduPan { url, .. } => {
                return Err(ZooError::NoSource { name: card.name.clone(), manual: url });
            }
        }
        Ok(())
    }

    /// Checks `file` against the known checksum (or records it), then moves it to `target`. A
    /// mismatch moves it aside as `<target>.bad-<sha>` instead.
    fn verify(&self, card: &ModelCard, file: &Path, target: &Path, opts: &AcquireOptions) -> Result<Verified, ZooError> {
        let actual = sha256_of(file)?;
        let (expected, checksum) = match (&opts.sha256, &card.sha256, self.recorded_sha256(&card.name)) {
            (Some(s), _, _) => (Some(s.to_lowercase()), ChecksumSource::Given),
            (None, Some(s), _) => (Some(s.to_lowercase()), ChecksumSource::Card),
            (None, None, Some(s)) => (Some(s), ChecksumSource::Recorded),
            _ => (None, ChecksumSource::NewlyRecorded),
        };
        let prefix_ok = card.sha256_prefix.as_ref().is_none_or(|p| actual.starts_with(&p.to_lowercase()));
        let matches = expected.as_ref().is_none_or(|e| *e == actual) && prefix_ok;
        if !matches {
            let mut bad = target.as_os_str().to_owned();
            bad.push(format!(".bad-{}", &actual[..12]));
            let bad = PathBuf::from(bad);
            std::fs::rename(file, &bad).map_err(io(file))?;
            let expected = expected.unwrap_or_else(|| format!("{}…", card.sha256_prefix.clone().unwrap_or_default()));
            return Err(ZooError::ChecksumMismatch { name: card.name.clone(), expected, actual, moved_to: bad });
        }
        if file != target {
            std::fs::rename(file, target).map_err(io(file))?;
        }
        if checksum == ChecksumSource::NewlyRecorded {
            let p = self.recorded_path(&card.name);
            std::fs::write(&p, format!("{actual}\n")).map_err(io(&p))?;
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
    let mut from = std::fs::File::open(src).map_err(io(src))?;
    let mut to = std::fs::File::create(dst).map_err(io(dst))?;
    std::io::copy(&mut from, &mut to).map_err(io(dst))?;
    to.flush().map_err(io(dst))?;
    to.sync_all().map_err(io(dst))
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
