//! Files that are safe to write and to read, for every snzoo command.
//!
//! * [`AtomicFile`] / [`write_atomic`]: an output is written to a temporary file beside it and
//!   renamed into place only when complete, so a crash, a full disk or an error never leaves a
//!   half-written file. Temporary files left by a killed process (`kill -9`) are removed by the
//!   next write of the same output ([`sweep_stale`]). New files get the umask's permissions; a
//!   replaced file keeps its mode.
//! * [`check_output`]: an output must not be one of the command's inputs, and an existing output
//!   must be a regular file (never a FIFO, a device or a directory, which a rename would replace).
//! * [`open_regular`] / [`read_regular`]: inputs are opened only when they are regular files,
//!   so a FIFO named `x.JPEG` cannot make a command hang, and their size is bounded.
//! * [`LockFile`]: an exclusive lock (`flock`) on a file that names its holder, so concurrent
//!   commands either wait their turn or fail saying who holds the lock.
//! * [`display_path`]: a path as text, with bytes that are not UTF-8 escaped as `\xNN`.
//!
//! Every error names the file it is about.

mod atomic;
mod display;
mod guard;
mod lock;
mod regular;

use std::path::PathBuf;

pub use atomic::{sweep_stale, write_atomic, AtomicFile};
pub use display::display_path;
pub use guard::{check_output, check_output_dir, same_file};
pub use lock::LockFile;
pub use regular::{open_regular, read_regular, sha256_file};

/// A file-system error, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// An I/O operation failed; `op` says what was being done.
    #[error("cannot {op} {}", display_path(path))]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The path exists but is not a regular file.
    #[error("{} is {kind}, not a regular file", display_path(path))]
    NotRegular { path: PathBuf, kind: &'static str },
    /// The path exists but is not a directory.
    #[error("{} is {kind}, not a directory", display_path(path))]
    NotADirectory { path: PathBuf, kind: &'static str },
    /// An output path names one of the command's inputs.
    #[error("{} is also an input ({}); refusing to overwrite it", display_path(output), display_path(input))]
    OutputIsInput { output: PathBuf, input: PathBuf },
    /// The directory an output would be written to does not exist.
    #[error("cannot write {}: the directory {} does not exist", display_path(path), display_path(dir))]
    NoDirectory { path: PathBuf, dir: PathBuf },
    /// A file is larger than the caller allows.
    #[error("{} is {size} bytes, more than the {limit}-byte limit", display_path(path))]
    TooLarge { path: PathBuf, size: u64, limit: u64 },
    /// Another process holds the lock.
    #[error("{} is in use by {holder}", display_path(path))]
    Locked { path: PathBuf, holder: String },
}

impl FsError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> FsError {
        let path = path.into();
        move |source| FsError::Io { op, path, source }
    }

    /// The underlying I/O error kind, if this is an I/O error.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            FsError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// What a file-type is called in messages.
pub(crate) fn kind_name(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}
