//! The resume journal `REPORT.json.partial`: a header line naming what is being evaluated, then
//! one JSON line per finished image, appended, flushed and fsync'd after every batch. A run that
//! dies (even by `kill -9` or power loss) resumes from it; a torn last line is dropped. A journal
//! whose header differs (other weights, data, selection or preprocessing) is refused, and so is
//! a record that contradicts the dataset. Each record carries the size, modification time and
//! inode its image file had ([`ImageResult::stamp`]): an image replaced since is recomputed.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::metrics::{FileStamp, ImageResult};

/// Whether the image file a journaled record was computed from is unchanged (same size,
/// modification time and inode). Records without a stamp count as changed.
pub fn is_current(r: &ImageResult, file: &Path) -> bool {
    r.stamp.is_some() && r.stamp == FileStamp::current(file)
}

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
    #[error("journal {}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Fs(#[from] snzoo_fs::FsError),
    #[error(
        "journal {} belongs to another evaluation ({what} differs); refusing to mix it in. \
         Delete it, or choose another --output", .path.display()
    )]
    Mismatch { path: PathBuf, what: &'static str },
    #[error("journal {} is corrupt at line {line}: {message}; delete it to start over", .path.display())]
    Corrupt { path: PathBuf, line: usize, message: String },
}

/// An open journal, positioned for appending. It holds the lock `<journal>.lock` until it is
/// removed or dropped, so that two runs never write one journal.
pub struct Journal {
    path: PathBuf,
    file: File,
    _lock: snzoo_fs::LockFile,
}

/// Appends `.lock` to a path.
fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

impl Journal {
    /// Opens `path` for the evaluation `header` describes: creates it, or, if it exists, checks
    /// its header and returns the images it already holds, each accepted by `check` (a record
    /// that `check` refuses — a label that contradicts the dataset, a class the model does not
    /// have — makes the journal corrupt). A torn last line is cut off; an empty journal or one
    /// whose header line was torn (a crash or a full disk while it was created) starts over.
    ///
    /// Fails at once with [`snzoo_fs::FsError::Locked`], naming the holder, while another run
    /// has the journal open.
    pub fn open(
        path: &Path,
        header: &JournalHeader,
        purpose: &str,
        check: &dyn Fn(&ImageResult) -> Result<(), String>,
    ) -> Result<(Journal, BTreeMap<usize, ImageResult>), JournalError> {
        let ioe = |source| JournalError::Io { path: path.to_path_buf(), source };
        let lock = snzoo_fs::LockFile::try_acquire(&lock_path(path), purpose)?;
        let header_line = format!("{}\n", serde_json::to_string(header).expect("header serialises"));
        let fresh = |lock| -> Result<(Journal, BTreeMap<usize, ImageResult>), JournalError> {
            // Created whole or not at all: a header is never torn.
            snzoo_fs::write_atomic(path, header_line.as_bytes())?;
            let file = OpenOptions::new().append(true).open(path).map_err(ioe)?;
            Ok((Journal { path: path.to_path_buf(), file, _lock: lock }, BTreeMap::new()))
        };
        let mut file = match snzoo_fs::open_regular(path) {
            Ok(_) => OpenOptions::new().read(true).write(true).open(path).map_err(ioe)?,
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => return fresh(lock),
            Err(e) => return Err(e.into()),
        };
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
                            check(&r).map_err(|message| JournalError::Corrupt { path: path.to_path_buf(), line: n, message })?;
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
                // Empty, or the header line itself was torn: nothing was journaled yet.
                drop(reader);
                drop(file);
                return fresh(lock);
            }
        }
        file.set_len(good_len).map_err(ioe)?;
        file.seek(SeekFrom::Start(good_len)).map_err(ioe)?;
        Ok((Journal { path: path.to_path_buf(), file, _lock: lock }, done))
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

    /// Removes the journal (after the report has been written) and releases its lock.
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
        ImageResult { i, label: 3, top5: vec![3, 1, 2, 0, 4], loss: Some(0.5), error: None, stamp: None }
    }

    #[test]
    fn resumes_and_drops_a_torn_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.json.partial");
        let (mut j, done) = Journal::open(&p, &header(), "test", &|_| Ok(())).unwrap();
        assert!(done.is_empty());
        j.append(&[result(0), result(1)]).unwrap();
        drop(j);
        // A crash in the middle of the next write.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"i\":2,\"label\":3,\"to").unwrap();
        drop(f);
        let (mut j, done) = Journal::open(&p, &header(), "test", &|_| Ok(())).unwrap();
        assert_eq!(done.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
        j.append(&[result(2)]).unwrap();
        drop(j);
        let (_, done) = Journal::open(&p, &header(), "test", &|_| Ok(())).unwrap();
        assert_eq!(done.len(), 3);
        assert_eq!(done[&2], result(2));
    }

    #[test]
    fn refuses_a_journal_of_another_evaluation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.json.partial");
        Journal::open(&p, &header(), "test", &|_| Ok(())).unwrap();
        let mut other = header();
        other.weights_sha256 = "cc".into();
        assert!(matches!(Journal::open(&p, &other, "test", &|_| Ok(())), Err(JournalError::Mismatch { what: "the weights", .. })));
        let mut other = header();
        other.preprocess = serde_json::json!({"resize": 320});
        assert!(matches!(Journal::open(&p, &other, "test", &|_| Ok(())), Err(JournalError::Mismatch { what: "the preprocessing", .. })));
        let mut other = header();
        other.compute = "bf16".into();
        assert!(matches!(Journal::open(&p, &other, "test", &|_| Ok(())), Err(JournalError::Mismatch { what: "--dtype", .. })));
    }

    /// Journals written before the precision was recorded were f32 runs.
    #[test]
    fn a_journal_without_compute_is_f32() {
        let mut v = serde_json::to_value(header()).unwrap();
        v.as_object_mut().unwrap().remove("compute");
        let h: JournalHeader = serde_json::from_value(v).unwrap();
        assert_eq!(h, header());
    }

    #[test]
    fn an_empty_or_headerless_journal_starts_over() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.json.partial");
        for content in [&b""[..], b"{\"snzoo_jour"] {
            std::fs::write(&p, content).unwrap();
            let (mut j, done) = Journal::open(&p, &header(), "test", &|_| Ok(())).unwrap();
            assert!(done.is_empty());
            j.append(&[result(0)]).unwrap();
            drop(j);
            let (_, done) = Journal::open(&p, &header(), "test", &|_| Ok(())).unwrap();
            assert_eq!(done.len(), 1);
            std::fs::remove_file(&p).unwrap();
        }
    }

    #[test]
    fn a_journal_in_use_is_refused_naming_its_holder() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.json.partial");
        let (j, _) = Journal::open(&p, &header(), "eval --output r.json", &|_| Ok(())).unwrap();
        let e = Journal::open(&p, &header(), "second", &|_| Ok(())).err().unwrap();
        assert!(e.to_string().contains("eval --output r.json") && e.to_string().contains("in use"), "{e}");
        j.remove().unwrap();
        assert!(!p.exists() && !d.path().join("r.json.partial.lock").exists());
    }

    #[test]
    fn records_that_contradict_the_dataset_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.json.partial");
        let (mut j, _) = Journal::open(&p, &header(), "test", &|_| Ok(())).unwrap();
        j.append(&[result(0), result(1)]).unwrap();
        drop(j);
        let check = |r: &ImageResult| if r.i == 1 { Err("label 3 of image 1 contradicts the dataset (7)".to_string()) } else { Ok(()) };
        let e = Journal::open(&p, &header(), "test", &check).err().unwrap();
        assert!(matches!(&e, JournalError::Corrupt { line: 3, .. }), "{e}");
    }

    #[test]
    fn a_replaced_image_is_not_current() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.JPEG");
        std::fs::write(&f, b"one").unwrap();
        let mut r = result(0);
        assert!(!is_current(&r, &f), "no stamp: recompute");
        r.stamp = FileStamp::current(&f);
        assert!(is_current(&r, &f));
        let g = d.path().join("b.JPEG");
        std::fs::write(&g, b"two").unwrap();
        std::fs::rename(&g, &f).unwrap();
        assert!(!is_current(&r, &f));
    }
}
