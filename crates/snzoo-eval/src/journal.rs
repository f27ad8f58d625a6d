//! The resume journal `REPORT.json.partial`: a header line naming what is being evaluated, then
//! one JSON line per finished image, appended, flushed and fsync'd after every batch. A run that
//! dies (even by `kill -9` or power loss) resumes from it; a torn last line is dropped. A journal
//! whose header differs (other weights, data, selection or preprocessing) is refused.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::metrics::ImageResult;

/// What a journal belongs to. Two runs may share a journal only when these are equal.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JournalHeader {
    pub snzoo_journal: u32,
    pub weights_sha256: String,
    pub dataset_fingerprint: String,
    pub dataset_root: String,
    pub selection: String,
    pub preprocess: serde_json::Value,
    /// The convolutions' precision (`f32`, `bf16`): results of different precisions never mix.
    #[serde(default = "crate::report::default_compute")]
    pub compute: String,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "journal {path} belongs to another evaluation ({what} differs); refusing to mix it in. \
         Delete it, or choose another --output"
    )]
    Mismatch { path: PathBuf, what: &'static str },
    #[error("journal {path} is corrupt at line {line}: {message}")]
    Corrupt { path: PathBuf, line: usize, message: String },
}

/// An open journal, positioned for appending.
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Opens `path`: creates it with `header`, or, if it exists, checks its header and returns the
    /// images it already holds (a torn last line is cut off).
    pub fn open(path: &Path, header: &JournalHeader) -> Result<(Journal, BTreeMap<usize, ImageResult>), JournalError> {
        let ioe = |source| JournalError::Io { path: path.to_path_buf(), source };
        if !path.exists() {
            let mut file = OpenOptions::new().create_new(true).write(true).open(path).map_err(ioe)?;
            let line = serde_json::to_string(header).expect("header serialises");
            writeln!(file, "{line}").map_err(ioe)?;
            file.sync_all().map_err(ioe)?;
            return Ok((Journal { path: path.to_path_buf(), file }, BTreeMap::new()));
        }
        let mut file = OpenOptions::new().read(true).write(true).open(path).map_err(ioe)?;
        let mut done = BTreeMap::new();
        let mut good_len: u64 = 0;
        {
            let mut reader = BufReader::new(&file);
            let mut line = String::new();
            let mut n = 0usize;
            loop {
                line.clear();
                let read = reader.read_line(&mut line).map_err(ioe)?;
                if read == 0 || !line.ends_with('\n') {
                    break; // end, or a torn last line
                }
                n += 1;
                if n == 1 {
                    let found: JournalHeader = serde_json::from_str(&line).map_err(|e| JournalError::Corrupt {
                        path: path.to_path_buf(),
                        line: 1,
                        message: e.to_string(),
                    })?;
                    let what = if found.weights_sha256 != header.weights_sha256 {
                        Some("the weights")
                    } else if found.dataset_fingerprint != header.dataset_fingerprint || found.dataset_root != header.dataset_root {
                        Some("the dataset")
                    } else if found.selection != header.selection {
                        Some("--limit/--shard")
                    } else if found.preprocess != header.preprocess {
                        Some("the preprocessing")
                    } else if found.compute != header.compute {
                        Some("--dtype")
                    } else if found != *header {
                        Some("the journal version")
                    } else {
                        None
                    };
                    if let Some(what) = what {
                        return Err(JournalError::Mismatch { path: path.to_path_buf(), what });
                    }
                } else {
                    match serde_json::from_str::<ImageResult>(&line) {
                        Ok(r) => {
                            done.insert(r.i, r);
                        }
                        // A line that is complete but unparsable can only be the torn tail of
                        // a write that a crash interrupted; nothing after it is trusted.
                        Err(_) => break,
                    }
                }
                good_len += read as u64;
            }
            if n == 0 {
                return Err(JournalError::Corrupt { path: path.to_path_buf(), line: 1, message: "no header".into() });
            }
        }
        file.set_len(good_len).map_err(ioe)?;
        file.seek(SeekFrom::Start(good_len)).map_err(ioe)?;
        Ok((Journal { path: path.to_path_buf(), file }, done))
    }

    /// Appends a batch of results and makes them durable (write, flush, fsync).
    pub fn append(&mut self, results: &[ImageResult]) -> Result<(), JournalError> {
        let ioe = |source| JournalError::Io { path: self.path.clone(), source };
        let mut buf = String::new();
        for r in results {
            buf.push_str(&serde_json::to_string(r).expect("result serialises"));
            buf.push('\n');
        }
        self.file.write_all(buf.as_bytes()).map_err(ioe)?;
        self.file.flush().map_err(ioe)?;
        self.file.sync_data().map_err(ioe)?;
        Ok(())
    }

    /// Removes the journal (after the report has been written).
    pub fn remove(self) -> Result<(), JournalError> {
        std::fs::remove_file(&self.path).map_err(|source| JournalError::Io { path: self.path.clone(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> JournalHeader {
        JournalHeader {
            snzoo_journal: 1,
            weights_sha256: "aa".into(),
            dataset_fingerprint: "bb".into(),
            dataset_root: "/data".into(),
            selection: "all".into(),
            preprocess: serde_json::json!({"resize": 256}),
            compute: "f32".into(),
        }
    }

    fn result(i: usize) -> ImageResult {
        ImageResult { i, label: 3, top5: vec![3, 1, 2, 0, 4], loss: Some(0.5), error: None }
    }

    #[test]
    fn resumes_and_drops_a_torn_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.json.partial");
        let (mut j, done) = Journal::open(&p, &header()).unwrap();
        assert!(done.is_empty());
        j.append(&[result(0), result(1)]).unwrap();
        drop(j);
        // A crash in the middle of the next write.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"i\":2,\"label\":3,\"to").unwrap();
        drop(f);
        let (mut j, done) = Journal::open(&p, &header()).unwrap();
        assert_eq!(done.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
        j.append(&[result(2)]).unwrap();
        drop(j);
        let (_, done) = Journal::open(&p, &header()).unwrap();
        assert_eq!(done.len(), 3);
        assert_eq!(done[&2], result(2));
    }

    #[test]
    fn refuses_a_journal_of_another_evaluation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.json.partial");
        Journal::open(&p, &header()).unwrap();
        let mut other = header();
        other.weights_sha256 = "cc".into();
        assert!(matches!(Journal::open(&p, &other), Err(JournalError::Mismatch { what: "the weights", .. })));
        let mut other = header();
        other.preprocess = serde_json::json!({"resize": 320});
        assert!(matches!(Journal::open(&p, &other), Err(JournalError::Mismatch { what: "the preprocessing", .. })));
        let mut other = header();
        other.compute = "bf16".into();
        assert!(matches!(Journal::open(&p, &other), Err(JournalError::Mismatch { what: "--dtype", .. })));
    }

    /// Journals written before the precision was recorded were f32 runs.
    #[test]
    fn a_journal_without_compute_is_f32() {
        let mut v = serde_json::to_value(header()).unwrap();
        v.as_object_mut().unwrap().remove("compute");
        let h: JournalHeader = serde_json::from_value(v).unwrap();
        assert_eq!(h, header());
    }
}
