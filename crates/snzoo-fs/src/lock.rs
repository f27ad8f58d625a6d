//! Exclusive lock files that say who holds them.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::FsError;

/// An exclusive `flock` on a file whose content describes the holder (process id, host, start
/// time, purpose). Released, and the file removed, when dropped; a crashed holder's lock is
/// released by the kernel, so a stale file never blocks anyone.
#[derive(Debug)]
pub struct LockFile {
    path: PathBuf,
    file: Option<File>,
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return "unknown host".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn now_utc() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

fn holder_of(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.rewind();
    let _ = Read::by_ref(file).take(4096).read_to_string(&mut s);
    let s = s.trim();
    if s.is_empty() {
        "another process".to_string()
    } else {
        s.to_string()
    }
}

impl LockFile {
    /// Takes the lock at `path`, or fails at once with [`FsError::Locked`] naming the holder.
    pub fn try_acquire(path: &Path, purpose: &str) -> Result<LockFile, FsError> {
        Self::take(path, purpose, None)
    }

    /// Takes the lock at `path`, waiting for the holder to release it; `on_wait` is told who
    /// holds it before the wait begins.
    pub fn acquire(path: &Path, purpose: &str, on_wait: &mut dyn FnMut(&str)) -> Result<LockFile, FsError> {
        Self::take(path, purpose, Some(on_wait))
    }

    fn take(path: &Path, purpose: &str, mut on_wait: Option<&mut dyn FnMut(&str)>) -> Result<LockFile, FsError> {
        let mut told = false;
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o666)
                .open(path)
                .map_err(FsError::io("create the lock file", path))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let holder = holder_of(&mut file);
                    let Some(cb) = on_wait.as_mut() else {
                        return Err(FsError::Locked { path: path.to_path_buf(), holder });
                    };
                    if !told {
                        cb(&holder);
                        told = true;
                    }
                    file.lock().map_err(FsError::io("lock", path))?;
                }
                Err(TryLockError::Error(e)) => return Err(FsError::Io { op: "lock", path: path.to_path_buf(), source: e }),
            }
            // The previous holder removes the file when it lets go: the lock is only ours if the
            // path still names the file we locked.
            let ours = file.metadata().map_err(FsError::io("lock", path))?;
            match std::fs::metadata(path) {
                Ok(m) if m.dev() == ours.dev() && m.ino() == ours.ino() => {}
                _ => continue,
            }
            let text = format!("snzoo (pid {} on {}, since {}): {purpose}\n", std::process::id(), hostname(), now_utc());
            file.set_len(0).map_err(FsError::io("write", path))?;
            file.rewind().map_err(FsError::io("write", path))?;
            file.write_all(text.as_bytes()).map_err(FsError::io("write", path))?;
            return Ok(LockFile { path: path.to_path_buf(), file: Some(file) });
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            // Remove the file while still holding the lock, then release it by closing.
            if let (Ok(a), Ok(b)) = (file.metadata(), std::fs::metadata(&self.path)) {
                if a.dev() == b.dev() && a.ino() == b.ino() {
                    let _ = std::fs::remove_file(&self.path);
                }
            }
            drop(file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_name_then_succeeds() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.json.lock");
        let first = LockFile::try_acquire(&p, "eval --output r.json").unwrap();
        let e = LockFile::try_acquire(&p, "second").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&format!("pid {}", std::process::id())) && msg.contains("eval --output r.json"), "{msg}");
        drop(first);
        assert!(!p.exists(), "the lock file is removed on release");
        let _second = LockFile::try_acquire(&p, "second").unwrap();
    }

    #[test]
    fn waiters_are_served_in_turn() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("store.lock");
        let counter = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let first = LockFile::try_acquire(&p, "first").unwrap();
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (p, counter) = (p.clone(), counter.clone());
                std::thread::spawn(move || {
                    let mut waited = false;
                    let _l = LockFile::acquire(&p, "waiter", &mut |_| waited = true).unwrap();
                    counter.lock().unwrap().push(i);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    waited
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(counter.lock().unwrap().is_empty(), "nobody gets in while the lock is held");
        drop(first);
        let waited: Vec<bool> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(counter.lock().unwrap().len(), 4);
        assert!(waited.iter().all(|&w| w));
    }
}
