//! Opening inputs only when they are regular files.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::{kind_name, FsError};

/// Opens `path` for reading if it is a regular file (after following symbolic links).
///
/// The file is opened non-blocking and checked with `fstat` on the open descriptor, so a FIFO
/// cannot block the open and cannot be swapped in between the check and the read.
pub fn open_regular(path: &Path) -> Result<File, FsError> {
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(FsError::io("open", path))?;
    let meta = file.metadata().map_err(FsError::io("read", path))?;
    if !meta.is_file() {
        return Err(FsError::NotRegular { path: path.to_path_buf(), kind: kind_name(meta.file_type()) });
    }
    // Back to blocking reads (irrelevant for regular files, but leave the descriptor ordinary).
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, changing only its status flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    Ok(file)
}

/// Reads a whole regular file of at most `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
    let mut file = open_regular(path)?;
    let size = file.metadata().map_err(FsError::io("read", path))?.len();
    if size > limit {
        return Err(FsError::TooLarge { path: path.to_path_buf(), size, limit });
    }
    let mut buf = Vec::with_capacity(size as usize);
    // The file may grow while it is read: never read past the limit.
    file.by_ref().take(limit.saturating_add(1)).read_to_end(&mut buf).map_err(FsError::io("read", path))?;
    if buf.len() as u64 > limit {
        return Err(FsError::TooLarge { path: path.to_path_buf(), size: buf.len() as u64, limit });
    }
    Ok(buf)
}

/// The sha256 of a regular file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, FsError> {
    use sha2::Digest;
    let mut file = open_regular(path)?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(FsError::io("read", path))?;
    Ok(format!("{:x}", hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_and_directories_are_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("x.JPEG");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let e = read_regular(&fifo, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("is a FIFO (named pipe), not a regular file"), "{e}");
        let e = read_regular(d.path(), 1 << 20).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        let f = d.path().join("f");
        std::fs::write(&f, b"12345").unwrap();
        assert_eq!(read_regular(&f, 5).unwrap(), b"12345");
        assert!(matches!(read_regular(&f, 4), Err(FsError::TooLarge { size: 5, limit: 4, .. })));
        let e = read_regular(&d.path().join("missing"), 5).unwrap_err();
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::NotFound));
        assert!(e.to_string().starts_with("cannot open"), "{e}");
        // echo -n 12345 | sha256sum
        assert_eq!(sha256_file(&f).unwrap(), "5994471abb01112afcc18159f6cc74b4f511b99806da59b3caf5a9c173cacfc5");
    }
}
