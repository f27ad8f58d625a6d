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
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
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
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                std::thread::sleep(self.backoff * 2u32.saturating_pow(attempt - 1));
            }
            match self.fetch_once(url, part, progress) {
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

    fn fetch_once(&self, url: &str, part: &Path, progress: &mut dyn Progress) -> Result<(), Attempt> {
        let io = |source| Attempt::Fatal(FetchError::Io { path: part.to_path_buf(), source });
        let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let mut req = self.client.get(url);
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
            StatusCode::RANGE_NOT_SATISFIABLE => {
                // Our partial file is no prefix of the resource: start over.
                std::fs::remove_file(part).map_err(io)?;
                return Err(Attempt::Retry("range not satisfiable; restarting".into()));
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
        let html = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/html"));
        if !html {
            return Ok(url); // the file itself: fetched again with Range support
        }
        let cookie_token = resp
            .cookies()
            .find(|c| c.name().starts_with("download_warning"))
            .map(|c| c.value().to_string());
        let page = resp.text().map_err(|e| gd(e.to_string()))?;
        confirmation_url(&page, &endpoint, id, cookie_token.as_deref()).ok_or_else(|| {
            gd("Drive answered with a page that has no download link (quota exceeded, or the file is not shared?)".into())
        })
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

/// Downloads a file from a Hugging Face Hub model repository into the standard HF cache and
/// returns its path there.
pub fn fetch_hub(repo: &str, file: &str, revision: Option<&str>) -> Result<PathBuf, FetchError> {
    let hub = |message: String| FetchError::Hub { repo: repo.to_string(), file: file.to_string(), message };
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(false)
        .with_retries(3)
        .build()
        .map_err(|e| hub(e.to_string()))?;
    let r = match revision {
        Some(rev) => hf_hub::Repo::with_revision(repo.to_string(), hf_hub::RepoType::Model, rev.to_string()),
        None => hf_hub::Repo::model(repo.to_string()),
    };
    api.repo(r).get(file).map_err(|e| hub(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(confirmation_url("<p>quota</p>", "https://d", "ABC", Some("tok")).unwrap(), "https://d/uc?export=download&confirm=tok&id=ABC");
        assert_eq!(confirmation_url("<p>quota exceeded</p>", "https://d", "ABC", None), None);
        let relative = r#"<form id="download-form" action="/download" method="get"><input type="hidden" name="id" value="ABC"></form>"#;
        assert_eq!(confirmation_url(relative, "http://127.0.0.1:5000", "ABC", None).unwrap(), "http://127.0.0.1:5000/download?id=ABC");
    }
}
