//! Atomic outputs: a temporary file beside the target, renamed into place when complete.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::FsError;

/// The part of a temporary file's name after `.<target name>`: `.snzoo-<pid>-<n>.tmp`.
const TEMP_MARK: &str = ".snzoo-";
const TEMP_SUFFIX: &str = ".tmp";

fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The prefix of every temporary file made for `target`: `.<file name>.snzoo-`.
fn temp_prefix(target: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut p = b".".to_vec();
    p.extend_from_slice(target.file_name().map(|n| n.as_bytes()).unwrap_or(b"out"));
    p.extend_from_slice(TEMP_MARK.as_bytes());
    p
}

/// Whether process `pid` exists (a temporary file of a live process is left alone).
fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Removes the temporary files that writes of `target` left behind when their process died
/// (`kill -9`, power loss): `.<name>.snzoo-<pid>-<n>.tmp` whose process no longer exists.
/// Returns how many were removed. Errors are ignored: this is housekeeping.
pub fn sweep_stale(target: &Path) -> usize {
    use std::os::unix::ffi::OsStrExt;
    let prefix = temp_prefix(target);
    let Ok(entries) = std::fs::read_dir(directory_of(target)) else { return 0 };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let bytes = name.as_bytes();
        let Some(rest) = bytes.strip_prefix(prefix.as_slice()).and_then(|r| r.strip_suffix(TEMP_SUFFIX.as_bytes())) else {
            continue;
        };
        let pid = std::str::from_utf8(rest).ok().and_then(|r| r.split('-').next()).and_then(|p| p.parse::<i32>().ok());
        if let Some(pid) = pid {
            if !process_alive(pid) && std::fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

/// An output being written: bytes go to a temporary file in the target's directory, which
/// [`commit`](AtomicFile::commit) syncs and renames over the target. Dropped without a commit,
/// the temporary file is removed and the target is untouched.
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Starts writing `target` (which should have passed [`check_output`](crate::check_output)).
    /// A new file gets mode 0666 minus the umask; an existing target's mode is kept.
    pub fn create(target: &Path) -> Result<AtomicFile, FsError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        sweep_stale(target);
        let dir = directory_of(target);
        let mode = std::fs::metadata(target).ok().filter(|m| m.is_file()).map(|m| m.permissions().mode() & 0o7777);
        loop {
            use std::os::unix::ffi::OsStringExt;
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let mut name = temp_prefix(target);
            name.extend_from_slice(format!("{}-{n}{TEMP_SUFFIX}", std::process::id()).as_bytes());
            let temp = dir.join(std::ffi::OsString::from_vec(name));
            match OpenOptions::new().write(true).create_new(true).mode(0o666).open(&temp) {
                Ok(file) => {
                    if let Some(mode) = mode {
                        file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(FsError::io("set the mode of", &temp))?;
                    }
                    return Ok(AtomicFile { target: target.to_path_buf(), temp, file: Some(file) });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(FsError::Io { op: "create a temporary file for", path: target.to_path_buf(), source: e }),
            }
        }
    }

    /// The file being written (for seeking or `set_len`).
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("open until commit")
    }

    /// The final path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Makes the data durable and renames the temporary file over the target.
    pub fn commit(mut self) -> Result<(), FsError> {
        let file = self.file.take().expect("open until commit");
        file.sync_all().map_err(FsError::io("write", &self.target))?;
        drop(file);
        std::fs::rename(&self.temp, &self.target).map_err(FsError::io("replace", &self.target))?;
        // The rename itself is durable once the directory is synced (best effort).
        if let Ok(d) = File::open(directory_of(&self.target)) {
            let _ = d.sync_all();
        }
        self.temp = PathBuf::new();
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file().flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            self.file.take();
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Writes `bytes` to `target` atomically (see [`AtomicFile`]).
pub fn write_atomic(target: &Path, bytes: &[u8]) -> Result<(), FsError> {
    let mut f = AtomicFile::create(target)?;
    f.write_all(bytes).map_err(FsError::io("write", target))?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_replaces_and_drop_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.bin");
        write_atomic(&p, b"one").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        {
            let mut f = AtomicFile::create(&p).unwrap();
            f.write_all(b"two").unwrap();
            // dropped without commit
        }
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn new_files_follow_the_umask_and_replaced_files_keep_their_mode() {
        let d = tempfile::tempdir().unwrap();
        // SAFETY: umask only changes this process's file-creation mask.
        let old = unsafe { libc::umask(0o022) };
        let p = d.path().join("a");
        write_atomic(&p, b"x").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"y").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o640);
        unsafe { libc::umask(old) };
    }

    #[test]
    fn temporaries_of_dead_processes_are_swept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("model.safetensors");
        // A process id that cannot exist (above the kernel's pid_max limit of 2^22).
        let dead = d.path().join(".model.safetensors.snzoo-99999999-0.tmp");
        let live = d.path().join(format!(".model.safetensors.snzoo-{}-77.tmp", std::process::id()));
        let other = d.path().join(".other.snzoo-99999999-0.tmp");
        for f in [&dead, &live, &other] {
            std::fs::write(f, b"partial").unwrap();
        }
        write_atomic(&p, b"data").unwrap();
        assert!(!dead.exists(), "a dead process's temporary file is removed");
        assert!(live.exists() && other.exists(), "a live process's, or another target's, is kept");
    }
}
