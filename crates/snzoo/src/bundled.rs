//! The bundled default: a tiny SN ResNet-50 (width 4, random weights, saved like the release's
//! checkpoints) and a small labelled ImageFolder of real photos, embedded in the binary, so that
//! `snzoo eval` and `snzoo classify` run with no arguments from anywhere, with no source tree.
//!
//! They are written once to `$SNZOO_HOME/bundled/<sha>/` (atomically, under a lock) and used
//! from there, since reports name the files they read.

use std::path::PathBuf;

use crate::Result;

/// The bundled model's file name.
pub const MODEL_NAME: &str = "tiny-resnet50v1-sn.pth";

const MODEL: &[u8] = include_bytes!("../../../fixtures/models/tiny-resnet50v1-sn.pth");

/// The sample set: ImageFolder paths (`<wnid>/<file>`) and contents.
pub const SAMPLES: &[(&str, &[u8])] = &[
    ("n02123045/chelsea_420.jpg", include_bytes!("../../../fixtures/evalset/n02123045/chelsea_420.jpg")),
    ("n02123045/chelsea_png.JPEG", include_bytes!("../../../fixtures/evalset/n02123045/chelsea_png.JPEG")),
    ("n02123045/chelsea_small.jpg", include_bytes!("../../../fixtures/evalset/n02123045/chelsea_small.jpg")),
    ("n04008634/rocket_gray.jpg", include_bytes!("../../../fixtures/evalset/n04008634/rocket_gray.jpg")),
    ("n04008634/rocket_wide.jpg", include_bytes!("../../../fixtures/evalset/n04008634/rocket_wide.jpg")),
    ("n07920052/coffee_444.jpg", include_bytes!("../../../fixtures/evalset/n07920052/coffee_444.jpg")),
    ("n07920052/coffee_cmyk.jpg", include_bytes!("../../../fixtures/evalset/n07920052/coffee_cmyk.jpg")),
    ("n07920052/coffee_palette.png", include_bytes!("../../../fixtures/evalset/n07920052/coffee_palette.png")),
];

/// Where the bundled files live, written if needed: (the model file, the sample set's directory).
pub fn paths() -> Result<(PathBuf, PathBuf)> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(MODEL);
    for (name, bytes) in SAMPLES {
        h.update(name.as_bytes());
        h.update(bytes);
    }
    let digest = format!("{:x}", h.finalize());
    let root = snzoo_zoo::Store::from_env().root.join("bundled").join(&digest[..16]);
    let (model, data) = (root.join(MODEL_NAME), root.join("evalset"));
    let complete = root.join(".complete");
    if complete.exists() {
        return Ok((model, data));
    }
    let io = |op: &'static str, p: &std::path::Path| {
        let p = p.to_path_buf();
        move |source| snzoo_fs::FsError::Io { op, path: p, source }
    };
    std::fs::create_dir_all(&root).map_err(io("create", &root))?;
    let _lock = snzoo_fs::LockFile::acquire(&root.join(".lock"), "snzoo is unpacking the bundled model", &mut |_| {})?;
    if !complete.exists() {
        snzoo_fs::write_atomic(&model, MODEL)?;
        for (name, bytes) in SAMPLES {
            let path = data.join(name);
            let dir = path.parent().expect("ImageFolder paths have a folder");
            std::fs::create_dir_all(dir).map_err(io("create", dir))?;
            snzoo_fs::write_atomic(&path, bytes)?;
        }
        snzoo_fs::write_atomic(&complete, b"")?;
    }
    Ok((model, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded sample set is the repository's `fixtures/evalset`, file for file.
    #[test]
    fn the_embedded_samples_are_the_fixture_set() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/evalset");
        let mut on_disk = Vec::new();
        for class in std::fs::read_dir(&root).unwrap() {
            let class = class.unwrap();
            for f in std::fs::read_dir(class.path()).unwrap() {
                let f = f.unwrap();
                on_disk.push((
                    format!("{}/{}", class.file_name().to_str().unwrap(), f.file_name().to_str().unwrap()),
                    std::fs::read(f.path()).unwrap(),
                ));
            }
        }
        on_disk.sort();
        let embedded: Vec<(String, Vec<u8>)> = SAMPLES.iter().map(|(n, b)| (n.to_string(), b.to_vec())).collect();
        assert_eq!(embedded, on_disk);
    }
}
