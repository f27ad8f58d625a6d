//! Checking an output path before anything is written to it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::{kind_name, FsError};

/// Whether two paths name the same existing file (same device and inode).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

fn parent_must_exist(path: &Path) -> Result<(), FsError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => return Ok(()),
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        _ => Err(FsError::NoDirectory { path: path.to_path_buf(), dir: dir.to_path_buf() }),
    }
}

/// Checks that `path` may receive a command's output, and returns the file to write: `path`
/// itself, or for a symbolic link the file it points to (so that the link stays a link).
///
/// Refused: an existing path that is not a regular file (a FIFO, a device such as `/dev/null`,
/// a directory, a dangling link), a path that is the same file as one of `inputs`, and a path
/// whose directory does not exist.
pub fn check_output(path: &Path, inputs: &[&Path]) -> Result<PathBuf, FsError> {
    if path.as_os_str().is_empty() {
        return Err(FsError::NoDirectory { path: path.to_path_buf(), dir: PathBuf::from("") });
    }
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => match std::fs::canonicalize(path) {
            Ok(t) => t,
            Err(_) => return Err(FsError::NotRegular { path: path.to_path_buf(), kind: "a symbolic link to nothing" }),
        },
        Ok(_) => path.to_path_buf(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            parent_must_exist(path)?;
            return Ok(path.to_path_buf());
        }
        Err(e) => return Err(FsError::Io { op: "inspect", path: path.to_path_buf(), source: e }),
    };
    let meta = std::fs::metadata(&target).map_err(FsError::io("inspect", path))?;
    if !meta.is_file() {
        return Err(FsError::NotRegular { path: path.to_path_buf(), kind: kind_name(meta.file_type()) });
    }
    for input in inputs {
        if same_file(&target, input) {
            return Err(FsError::OutputIsInput { output: path.to_path_buf(), input: input.to_path_buf() });
        }
    }
    Ok(target)
}

/// Checks that `dir` may receive a command's output files: a directory, or a path that does not
/// exist yet (it will be created). Each file written into it still goes through
/// [`check_output`].
pub fn check_output_dir(dir: &Path) -> Result<(), FsError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(m) => Err(FsError::NotADirectory { path: dir.to_path_buf(), kind: kind_name(m.file_type()) }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FsError::Io { op: "inspect", path: dir.to_path_buf(), source: e }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_devices_and_missing_directories_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let input = d.path().join("s.pth");
        std::fs::write(&input, b"x").unwrap();
        let e = check_output(&input, &[&input]).unwrap_err();
        assert!(matches!(e, FsError::OutputIsInput { .. }), "{e}");
        // The same file under another name (a hard link, a relative path) is the same input.
        let link = d.path().join("hard.pth");
        std::fs::hard_link(&input, &link).unwrap();
        assert!(matches!(check_output(&link, &[&input]), Err(FsError::OutputIsInput { .. })));
        let sym = d.path().join("sym.pth");
        std::os::unix::fs::symlink(&input, &sym).unwrap();
        assert!(matches!(check_output(&sym, &[&input]), Err(FsError::OutputIsInput { .. })));
        let e = check_output(Path::new("/dev/null"), &[&input]).unwrap_err();
        assert!(e.to_string().contains("/dev/null is a character device, not a regular file"), "{e}");
        assert!(matches!(check_output(d.path(), &[]), Err(FsError::NotRegular { kind: "a directory", .. })));
        let e = check_output(&d.path().join("no/such/dir/out"), &[]).unwrap_err();
        assert!(matches!(e, FsError::NoDirectory { .. }), "{e}");
        let dangling = d.path().join("dangling");
        std::os::unix::fs::symlink(d.path().join("nothing"), &dangling).unwrap();
        assert!(check_output(&dangling, &[]).is_err());
    }

    #[test]
    fn new_files_and_links_to_regular_files_are_accepted() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out.safetensors");
        assert_eq!(check_output(&out, &[]).unwrap(), out);
        std::fs::write(&out, b"old").unwrap();
        assert_eq!(check_output(&out, &[]).unwrap(), out);
        let sym = d.path().join("latest.safetensors");
        std::os::unix::fs::symlink(&out, &sym).unwrap();
        assert_eq!(check_output(&sym, &[]).unwrap(), std::fs::canonicalize(&out).unwrap());
        assert!(check_output_dir(d.path()).is_ok());
        assert!(check_output_dir(&d.path().join("new")).is_ok());
        assert!(check_output_dir(&out).is_err());
    }
}
