//! `.tar.gz` archives holding one checkpoint (TF-Slim's release archives hold exactly
//! `resnet_v1_50.ckpt`): unpacked into a temporary directory and read from there.
//!
//! Only regular files are unpacked, each under its own base name (no paths, so nothing can
//! land outside the directory), with at most [`MAX_MEMBERS`] members and [`MAX_BYTES`] in all.
//! The checkpoint is the one member a format recognises (a TensorFlow V2 bundle: its `.index`).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{detect_format, StateDict};
use crate::{Error, Result};

/// The most members and bytes an archive may unpack to.
pub const MAX_MEMBERS: usize = 10_000;
pub const MAX_BYTES: u64 = 16 << 30;

fn bad(path: &Path, message: String) -> Error {
    Error::Format { path: path.to_path_buf(), format: "tar.gz", source: message.into() }
}

/// Unpacks `path` into `dir`, returning the unpacked files.
fn unpack(path: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let file = snzoo_fs::open_regular(path)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    let mut out = Vec::new();
    let mut total = 0u64;
    let entries = archive.entries().map_err(|e| bad(path, format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(path, format!("corrupt archive: {e}")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(|e| bad(path, format!("member name: {e}")))?.into_owned();
        let Some(base) = name.file_name().filter(|b| !b.is_empty()) else { continue };
        if out.len() >= MAX_MEMBERS {
            return Err(bad(path, format!("more than {MAX_MEMBERS} members")));
        }
        let target = dir.join(base);
        if target.exists() {
            return Err(bad(path, format!("two members named {}", base.to_string_lossy())));
        }
        total = total.saturating_add(entry.header().size().unwrap_or(u64::MAX));
        if total > MAX_BYTES {
            return Err(bad(path, format!("members of more than {} GiB", MAX_BYTES >> 30)));
        }
        let mut f = std::fs::File::create(&target).map_err(|e| snzoo_fs::FsError::Io { op: "create", path: target.clone(), source: e })?;
        std::io::copy(&mut (&mut entry).take(MAX_BYTES), &mut f)
            .map_err(|e| bad(path, format!("member {}: {e}", base.to_string_lossy())))?;
        out.push(target);
    }
    Ok(out)
}

/// Reads the one checkpoint inside a `.tar.gz`.
pub fn read_archive(path: &Path) -> Result<StateDict> {
    let dir = tempfile::Builder::new().prefix(".snzoo-unpack-").tempdir().map_err(|e| snzoo_fs::FsError::Io {
        op: "create a temporary directory for",
        path: path.to_path_buf(),
        source: e,
    })?;
    let members = unpack(path, dir.path())?;
    let mut found = Vec::new();
    for m in &members {
        // The data shards of a V2 bundle are read through its `.index`.
        if m.to_string_lossy().contains(".data-") {
            continue;
        }
        if let Some(format) = detect_format(m)? {
            found.push((m.clone(), format));
        }
    }
    let (member, format) = match found.as_slice() {
        [one] => one.clone(),
        [] => return Err(bad(path, format!("none of its {} files is a checkpoint snzoo reads", members.len()))),
        many => {
            let names: Vec<String> = many.iter().map(|(m, _)| m.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
            return Err(bad(path, format!("several checkpoints ({}); unpack it and convert one", names.join(", "))));
        }
    };
    let mut state = format.read(&member).and_then(|s| format.remap(s)).map_err(|e| relocate(e, &member, path))?;
    state.format = format!("{} (in {})", state.format, path.file_name().unwrap_or_default().to_string_lossy());
    state.path = path.to_path_buf();
    Ok(state)
}

/// An error about an unpacked member, said of the archive instead (the member is gone after).
fn relocate(e: Error, member: &Path, archive: &Path) -> Error {
    let name = member.file_name().unwrap_or_default().to_string_lossy().into_owned();
    match e {
        Error::Format { format, source, .. } => {
            Error::Format { path: archive.to_path_buf(), format, source: format!("member {name}: {source}").into() }
        }
        other => Error::Other(format!("{}: member {name}: {other}", snzoo_fs::display_path(archive))),
    }
}
