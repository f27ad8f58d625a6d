//! Fetching files: plain HTTP(S) with resume (HTTP Range) and retries, Google Drive (including the
//! confirmation page it shows for large files), and the Hugging Face Hub through `hf-hub`
//! (which honours `HF_ENDPOINT`, `HF_HOME`, `HF_TOKEN` and the standard cache).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("cannot write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Google Drive file {id}: {message}")]
    GoogleDrive { id: String, message: String },
    #[error("Hugging Face Hub {repo}/{file}: {message}")]
    Hub { repo: String, file: String, message: String },
    #[error("{url}: gave up after {attempts} attempts: {last}")]
    Retries { url: String, attempts: u32, last: String },
}

/// Receives transfer progress.
pub trait Progress {
    /// A transfer (re)starts at `done` bytes of `total` (if known).
    fn start(&mut self, total: Option<u64>, done: u64);
    fn advance(&mut self, bytes: u64);
    fn finish(&mut self) {}
}

/// No progress output.
impl Progress for () {
    fn start(&mut self, _: Option<u64>, _: u64) {}
    fn advance(&mut self, _: u64) {}
}

/// The Google Drive endpoint, overridable with `SNZOO_GDRIVE_ENDPOINT` (mirrors, tests).
pub fn google_drive_endpoint() -> String {
    std::env::var("SNZOO_GDRIVE_ENDPOINT").unwrap_or_else(|_| "https://drive.google.com".to_string())
}

/// An HTTP client with resume and retries.
pub struct Fetcher {
    client: Client,
    /// Further attempts after a failed or cut transfer, each resuming where the last stopped.
    pub retries: u32,
    /// The first back-off delay; doubled after each failure.
    pub backoff: Duration,
}

impl Fetcher {
    pub fn new() -> Result<Self, FetchError> {
        let client = Client::builder()
            .cookie_store(true)
            .connect_timeout(Duration::from_secs(30))
            .user_agent(concat!("snzoo/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Http { url: String::new(), message: e.to_string() })?;
        Ok(Self { client, retries: 4, backoff: Duration::from_millis(500) })
    }

    /// Downloads `url` into `part`, resuming from what `part` already holds (HTTP Range) and
    /// retrying a cut or failed transfer with back-off. On success `part` holds the whole body.
    pub fn fetch_resumable(&self, url: &str, part: &Path, progress: &mut dyn Progress) -> Result<(), FetchError> {
        self.fetch_resumable_with(url, part, progress, None)
    }

    /// [`fetch_resumable`](Self::fetch_resumable), sending `Authorization: Bearer <token>` (which
    /// reqwest drops when a redirect leaves the host).
    fn fetch_resumable_with(&self, url: &str, part: &Path, progress: &mut dyn Progress, token: Option<&str>) -> Result<(), FetchError> {
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                std::thread::sleep(self.backoff * 2u32.saturating_pow(attempt - 1));
            }
            match self.fetch_once(url, part, progress, token) {
                Ok(()) => {
                    progress.finish();
                    return Ok(());
                }
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(m)) => last = m,
            }
        }
        Err(FetchError::Retries { url: url.to_string(), attempts: self.retries + 1, last })
    }

    fn fetch_once(&self, url: &str, part: &Path, progress: &mut dyn Progress, token: Option<&str>) -> Result<(), Attempt> {
        let io = |source| Attempt::Fatal(FetchError::Io { path: part.to_path_buf(), source });
        let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let mut req = self.client.get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if have > 0 {
            req = req.header(RANGE, format!("bytes={have}-"));
        }
        let mut resp = req.send().map_err(|e| Attempt::Retry(chain(&e)))?;
        let status = resp.status();
        let (start, total) = match status {
            StatusCode::PARTIAL_CONTENT => {
                let (s, t) = parse_content_range(resp.headers().get(CONTENT_RANGE).and_then(|v| v.to_str().ok()))
                    .ok_or_else(|| Attempt::Retry("206 without a valid Content-Range".into()))?;
                if s != have {
                    return Err(Attempt::Retry(format!("server resumed at byte {s}, not {have}")));
                }
                (s, t)
            }
            StatusCode::OK => (0, resp.content_length()),
            StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
                // Our partial file is no prefix of the resource: start over.
                match std::fs::remove_file(part) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                    _ => {}
                }
                return Err(Attempt::Retry("the server cannot resume the partial download (HTTP 416); restarting".into()));
            }
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => return Err(Attempt::Retry(format!("HTTP {s}"))),
            s => return Err(Attempt::Fatal(FetchError::Http { url: url.to_string(), message: format!("HTTP {s}") })),
        };
        let mut file = OpenOptions::new().create(true).append(start > 0).write(true).truncate(start == 0).open(part).map_err(io)?;
        progress.start(total, start);
        let mut done = start;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match resp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    file.flush().map_err(io)?;
                    return Err(Attempt::Retry(format!("transfer cut at byte {done}: {}", chain(&e))));
                }
            };
            file.write_all(&buf[..n]).map_err(io)?;
            done += n as u64;
            progress.advance(n as u64);
        }
        file.sync_all().map_err(io)?;
        if let Some(t) = total {
            if done != t {
                return Err(Attempt::Retry(format!("transfer cut at byte {done} of {t}")));
            }
        }
        Ok(())
    }

    /// The direct download URL of a Google Drive file: `uc?export=download&id=…`, or, for files
    /// too large for Drive's virus scan, the link of the confirmation page it answers with.
    pub fn resolve_google_drive(&self, id: &str) -> Result<String, FetchError> {
        let endpoint = google_drive_endpoint();
        let url = format!("{endpoint}/uc?export=download&id={id}");
        let gd = |message: String| FetchError::GoogleDrive { id: id.to_string(), message };
        let resp = self.client.get(&url).send().map_err(|e| gd(chain(&e)))?;
        if !resp.status().is_success() {
            return Err(gd(format!("HTTP {}", resp.status())));
        }
        let html = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("text/html"));
        if !html {
            return Ok(url); // the file itself: fetched again with Range support
        }
        let cookie_token = resp.cookies().find(|c| c.name().starts_with("download_warning")).map(|c| c.value().to_string());
        let page = resp.text().map_err(|e| gd(e.to_string()))?;
        confirmation_url(&page, &endpoint, id, cookie_token.as_deref())
            .ok_or_else(|| gd("Drive answered with a page that has no download link (quota exceeded, or the file is not shared?)".into()))
    }
}

/// An error with its sources (reqwest's own message is terse: the cause is in the chain).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

enum Attempt {
    Retry(String),
    Fatal(FetchError),
}

/// `bytes START-END/TOTAL` → (START, TOTAL).
fn parse_content_range(v: Option<&str>) -> Option<(u64, Option<u64>)> {
    let rest = v?.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

fn html_unescape(s: &str) -> String {
    s.replace("&amp;", "&").replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">")
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!("{name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')? + start;
    Some(html_unescape(&tag[start..end]))
}

/// Finds the download link in Drive's "can't scan this file for viruses" page: the
/// `download-form` (current Drive), a `confirm=` link (older Drive), or the `download_warning`
/// cookie's token.
pub fn confirmation_url(page: &str, endpoint: &str, id: &str, cookie_token: Option<&str>) -> Option<String> {
    if let Some(pos) = page.find("id=\"download-form\"") {
        let form_start = page[..pos].rfind("<form")?;
        let form_end = page[pos..].find("</form>").map_or(page.len(), |e| pos + e);
        let form = &page[form_start..form_end];
        let action = attr(&form[..form.find('>')?], "action")?;
        // A relative action resolves against the page's origin.
        let action = reqwest::Url::parse(endpoint).ok()?.join(&action).ok()?.to_string();
        let mut query = Vec::new();
        for input in form.split("<input").skip(1) {
            let tag = &input[..input.find('>').unwrap_or(input.len())];
            if let (Some(n), Some(v)) = (attr(tag, "name"), attr(tag, "value")) {
                query.push(format!("{n}={v}"));
            }
        }
        let sep = if action.contains('?') { '&' } else { '?' };
        return Some(format!("{action}{sep}{}", query.join("&")));
    }
    if let Some(pos) = page.find("confirm=") {
        let token: String = page[pos + 8..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
        if !token.is_empty() {
            return Some(format!("{endpoint}/uc?export=download&confirm={token}&id={id}"));
        }
    }
    cookie_token.map(|t| format!("{endpoint}/uc?export=download&confirm={t}&id={id}"))
}

/// Whether `s` is one safe path component: not empty, not `.` or `..`, no separator, no NUL or
/// control character.
pub fn is_safe_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && s.len() <= 255 && !s.chars().any(|c| c == '/' || c == '\\' || c.is_control())
}

/// Checks a Hugging Face repository id (`org/name`), a file path inside it and a revision: every
/// name that becomes part of a path in the cache must stay inside it.
pub fn check_hub_names(repo: &str, file: &str, revision: &str) -> Result<(), FetchError> {
    let bad = |what: &str, v: &str| FetchError::Hub {
        repo: repo.to_string(),
        file: file.to_string(),
        message: format!("{what} {v:?} is not allowed (it must not leave the cache: no `..`, no absolute paths)"),
    };
    let repo_ok = |p: &str| {
        !p.is_empty() && p.len() <= 96 && p != "." && p != ".." && p.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    match repo.split_once('/') {
        Some((org, name)) if repo_ok(org) && repo_ok(name) => {}
        _ => return Err(bad("the repository id", repo)),
    }
    if file.starts_with('/') || !file.split('/').all(is_safe_component) {
        return Err(bad("the file path", file));
    }
    if revision.starts_with('/') || !revision.split('/').all(is_safe_component) {
        return Err(bad("the revision", revision));
    }
    Ok(())
}

/// An ETag the Hub may use as a blob name: a hash (hex or similar), nothing path-like.
fn is_safe_etag(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A commit hash: 40 (or 64) lowercase hex digits.
fn is_commit_hash(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The Hugging Face cache: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
fn hub_cache() -> Result<hf_hub::Cache, String> {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return Ok(hf_hub::Cache::new(PathBuf::from(p)));
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return Ok(hf_hub::Cache::new(PathBuf::from(p).join("hub")));
    }
    let home = std::env::var_os("HOME").ok_or("neither HF_HOME nor HOME is set")?;
    Ok(hf_hub::Cache::new(PathBuf::from(home).join(".cache/huggingface/hub")))
}

impl Fetcher {
    /// Downloads a file from a Hugging Face Hub model repository into the standard Hugging Face
    /// cache (`models--org--name/{blobs,snapshots,refs}`) and returns its snapshot path.
    ///
    /// `hf-hub` builds the URL (honouring `HF_ENDPOINT`) and asks the Hub for the file's ETag and
    /// commit; the transfer itself is this fetcher's (resumable, retried, with `HF_TOKEN` or the
    /// cached token). Every name that becomes a path — the repository, file and revision given,
    /// and the ETag and commit the server answers — is checked first: a server cannot make snzoo
    /// write outside the cache.
    pub fn fetch_hub(&self, repo: &str, file: &str, revision: Option<&str>, progress: &mut dyn Progress) -> Result<PathBuf, FetchError> {
        let revision = revision.unwrap_or("main");
        check_hub_names(repo, file, revision)?;
        let hub = |message: String| FetchError::Hub { repo: repo.to_string(), file: file.to_string(), message };
        let cache = hub_cache().map_err(|m| hub(m.to_string()))?;
        let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.trim().is_empty()).or_else(|| cache.token());
        let r = hf_hub::Repo::with_revision(repo.to_string(), hf_hub::RepoType::Model, revision.to_string());
        let cached = cache.repo(r.clone());
        let file_path = |commit: &str| file.split('/').fold(cached.pointer_path(commit), |p, c| p.join(c));

        // Already in the cache (the ref names a commit whose snapshot has the file).
        let ref_file = revision.split('/').fold(cache.path().join(r.folder_name()).join("refs"), |p, c| p.join(c));
        if let Ok(commit) = std::fs::read_to_string(&ref_file) {
            let commit = commit.trim();
            if is_commit_hash(commit) && file_path(commit).is_file() {
                return Ok(file_path(commit));
            }
        }

        let mut builder = hf_hub::api::sync::ApiBuilder::from_cache(cache.clone()).with_progress(false).with_token(token.clone());
        if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
            builder = builder.with_endpoint(endpoint);
        }
        let api = builder.build().map_err(|e| hub(e.to_string()))?;
        let url = api.repo(r.clone()).url(file);
        let meta = api.metadata(&url).map_err(|e| hub(e.to_string()))?;
        let (etag, commit) = (meta.etag(), meta.commit_hash());
        if !is_safe_etag(etag) {
            return Err(hub(format!("the server's ETag {etag:?} is not a content hash; refusing to use it as a file name")));
        }
        if !is_commit_hash(commit) {
            return Err(hub(format!("the server's commit {commit:?} is not a commit hash; refusing to use it as a directory name")));
        }
        let blob = cached.blob_path(etag);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| FetchError::Io { path, source }
        };
        if !blob.is_file() {
            let dir = blob.parent().expect("blobs/ETAG has a parent");
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            let mut part = blob.clone().into_os_string();
            part.push(".snzoo-part");
            let part = PathBuf::from(part);
            self.fetch_resumable_with(&url, &part, progress, token.as_deref())?;
            std::fs::rename(&part, &blob).map_err(io(&blob))?;
        }
        let pointer = file_path(commit);
        let dir = pointer.parent().expect("a snapshot file has a parent");
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        // A relative link, as huggingface_hub makes: up from snapshots/<commit>/<file's dirs>.
        let depth = 2 + file.matches('/').count();
        let target = (0..depth).fold(PathBuf::new(), |p, _| p.join("..")).join("blobs").join(etag);
        let _ = std::fs::remove_file(&pointer);
        std::os::unix::fs::symlink(&target, &pointer).map_err(io(&pointer))?;
        cached.create_ref(commit).map_err(io(&ref_file))?;
        Ok(pointer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_names_that_would_leave_the_cache_are_refused() {
        assert!(check_hub_names("timm/resnet50_gn.a1h_in1k", "model.safetensors", "main").is_ok());
        assert!(check_hub_names("org/repo", "sub/dir/model.pth", "refs/pr/1").is_ok());
        for (repo, file, rev) in [
            ("org/repo", "../../../../tmp/x", "main"),
            ("org/repo", "/etc/passwd", "main"),
            ("org/repo", "a/../../b", "main"),
            ("org/repo", "", "main"),
            ("../repo", "f", "main"),
            ("org/..", "f", "main"),
            ("org", "f", "main"),
            ("org/repo", "f", "../../x"),
        ] {
            assert!(check_hub_names(repo, file, rev).is_err(), "{repo} {file} {rev}");
        }
        assert!(is_safe_etag("0123abcd") && !is_safe_etag("../../../../tmp/x") && !is_safe_etag(""));
        assert!(is_commit_hash("c0ffee0000000000000000000000000000000000") && !is_commit_hash("../x"));
    }

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range(Some("bytes 100-199/200")), Some((100, Some(200))));
        assert_eq!(parse_content_range(Some("bytes 5-9/*")), Some((5, None)));
        assert_eq!(parse_content_range(Some("items 1-2/3")), None);
    }

    #[test]
    fn drive_confirmation_pages() {
        let new = r#"<html><body><form id="download-form" action="https://drive.usercontent.google.com/download" method="get"><input type="submit" value="Download anyway"/><input type="hidden" name="id" value="ABC"><input type="hidden" name="export" value="download"><input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="u-1"></form></body></html>"#;
        assert_eq!(
            confirmation_url(new, "https://drive.google.com", "ABC", None).unwrap(),
            "https://drive.usercontent.google.com/download?id=ABC&export=download&confirm=t&uuid=u-1"
        );
        let old = r#"<a id="uc-download-link" href="/uc?export=download&amp;confirm=Xy_9&amp;id=ABC">Download anyway</a>"#;
        assert_eq!(confirmation_url(old, "https://d", "ABC", None).unwrap(), "https://d/uc?export=download&confirm=Xy_9&id=ABC");
        assert_eq!(
            confirmation_url("<p>quota</p>", "https://d", "ABC", Some("tok")).unwrap(),
            "https://d/uc?export=download&confirm=tok&id=ABC"
        );
        assert_eq!(confirmation_url("<p>quota exceeded</p>", "https://d", "ABC", None), None);
        let relative = r#"<form id="download-form" action="/download" method="get"><input type="hidden" name="id" value="ABC"></form>"#;
        assert_eq!(confirmation_url(relative, "http://127.0.0.1:5000", "ABC", None).unwrap(), "http://127.0.0.1:5000/download?id=ABC");
    }
}
