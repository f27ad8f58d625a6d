//! Paths as text.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A path as text for messages and JSON. A UTF-8 path is returned as it is; in any other path,
/// each byte that is not part of valid UTF-8 is written `\xNN` and a backslash `\\`, so that the
/// raw bytes can be recovered and two different paths never print the same.
pub fn display_path(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    if let Ok(s) = std::str::from_utf8(bytes) {
        return s.to_string();
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn escapes_only_what_is_not_utf8() {
        assert_eq!(display_path(Path::new("a/ü b\\c.jpg")), "a/ü b\\c.jpg");
        let raw = Path::new(OsStr::from_bytes(b"x\xff\\y\xc3.jpg"));
        assert_eq!(display_path(raw), "x\\xff\\\\y\\xc3.jpg");
    }
}
