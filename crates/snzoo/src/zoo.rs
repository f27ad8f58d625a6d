//! Models by name: download (or take a file), verify, convert, with the store locked meanwhile.

use std::path::{Path, PathBuf};

use snzoo_zoo::fetch::{Fetcher, Progress};
use snzoo_zoo::store::{AcquireOptions, ChecksumSource, ZooError};
use snzoo_zoo::{card, cards, ModelCard, Store};

use crate::convert::write_converted;
use crate::{Error, Result};

/// How to get a model's checkpoint, and where to report.
pub struct Fetch<'a> {
    pub options: AcquireOptions,
    /// Further attempts after a failed or cut transfer.
    pub retries: u32,
    pub progress: &'a mut dyn Progress,
    /// Human-readable steps ("downloading …", "sha256 … verified").
    pub log: &'a mut dyn FnMut(&str),
}

/// Downloads (if needed), verifies and converts a card's model; returns the converted file.
///
/// The model's store directory is locked throughout, so concurrent commands take turns. A
/// checkpoint whose checksum nobody published has its sha256 recorded only once it has
/// converted to the card's architecture; one that does not is moved aside, so that a truncated
/// transfer or an HTML page is never pinned as the model.
pub fn ensure_converted(card: &ModelCard, fetch: Fetch<'_>) -> Result<PathBuf> {
    let Fetch { options, retries, progress, log } = fetch;
    let store = Store::from_env();
    let purpose = format!("snzoo is fetching or converting {}", card.name);
    let _lock = store.lock(&card.name, &purpose, &mut |holder| log(&format!("waiting for the store lock held by {holder}")))?;
    let converted = store.converted_path(&card.name);
    let mut fetcher = Fetcher::new().map_err(ZooError::from)?;
    fetcher.retries = retries;
    let verified = match store.acquire(card, &options, &fetcher, progress, log) {
        Ok(v) => v,
        Err(e) => {
            // A converted file made from the file just refused is not the model either; one
            // made from the good checkpoint (another upload was refused) stays.
            if let ZooError::ChecksumMismatch { actual, .. } = &e {
                let from_refused =
                    crate::weights::read_safetensors_info(&converted).ok().is_some_and(|h| h.metadata.get("source_sha256") == Some(actual));
                if from_refused {
                    let _ = std::fs::remove_file(&converted);
                }
            }
            return Err(e.into());
        }
    };
    match verified.checksum {
        ChecksumSource::Unknown => {
            log(&format!("no sha256 is known for this model; it is {} (recorded once it converts)", verified.sha256))
        }
        c => log(&format!(
            "sha256 {} verified ({})",
            verified.sha256,
            match c {
                ChecksumSource::Given => "given",
                ChecksumSource::Card => "card",
                _ => "recorded",
            }
        )),
    }
    // Extra files (MSRA's mean image) come the same way, each verified.
    let mut mean_image = None;
    for extra in &card.extra_files {
        let given = options.extra_from_files.get(&extra.file).map(PathBuf::as_path);
        let path = store.acquire_extra(card, extra, given, &fetcher, progress, log)?;
        if extra.role == "mean_image" {
            mean_image = Some(path);
        }
    }
    let up_to_date =
        crate::weights::read_safetensors_info(&converted).ok().is_some_and(|h| h.metadata.get("source_sha256") == Some(&verified.sha256));
    if !up_to_date {
        // GroupNorm's group count is not in the weights: the card says it; so is the protocol.
        let protocol = crate::protocol::from_card(card)?;
        let options =
            crate::convert::ConvertOptions { dtype: None, groups: card.normalization.groups, protocol: Some(protocol), mean_image };
        let result = crate::convert::convert_with(&verified.path, &options).and_then(|c| {
            if c.config.arch_name() != card.arch || c.config.using_bn() != card.normalization.using_bn {
                return Err(Error::Other(format!(
                    "{} converted to {} (using_bn={}), but the card {} says {} (using_bn={}); not using it",
                    verified.path.display(),
                    c.config.arch_name(),
                    c.config.using_bn(),
                    card.name,
                    card.arch,
                    card.normalization.using_bn
                )));
            }
            Ok(c)
        });
        let mut c = match result {
            Ok(c) => c,
            Err(e) => {
                if verified.checksum == ChecksumSource::Unknown {
                    let aside = store.reject(&verified)?;
                    log(&format!("moved the file that is not the model aside to {}", aside.display()));
                }
                return Err(e);
            }
        };
        c.metadata.insert("model_card".into(), card.name.clone());
        write_converted(&c, &converted, &[&verified.path])?;
        log(&format!("converted to {} ({}, using_bn={})", converted.display(), c.config.arch_name(), c.config.using_bn()));
    }
    if verified.checksum == ChecksumSource::Unknown {
        store.record_sha256(&card.name, &verified.sha256)?;
        log(&format!("recorded sha256 {}", verified.sha256));
    }
    Ok(converted)
}

/// Sorts files fetched by hand (`--from-file`, repeatable) into the card's checkpoint and its
/// extra files, by extension: a file whose extension is an extra file's (and not the
/// checkpoint's) is that extra file.
pub fn assign_from_files(card: &ModelCard, files: &[PathBuf]) -> Result<(Option<PathBuf>, std::collections::BTreeMap<String, PathBuf>)> {
    let ext = |p: &str| Path::new(p).extension().map(|e| e.to_string_lossy().to_lowercase());
    let main_ext = card.file.as_deref().and_then(ext);
    let mut main = None;
    let mut extra = std::collections::BTreeMap::new();
    for f in files {
        let e = f.extension().map(|e| e.to_string_lossy().to_lowercase());
        let target = card.extra_files.iter().find(|x| e.is_some() && ext(&x.file) == e && main_ext != e);
        match target {
            Some(x) => {
                if extra.insert(x.file.clone(), f.clone()).is_some() {
                    return Err(Error::invalid(format!("--from-file: two files for {}", x.file)));
                }
            }
            None => {
                if main.replace(f.clone()).is_some() {
                    let names: Vec<String> = card.extra_files.iter().map(|x| x.file.clone()).collect();
                    return Err(Error::invalid(format!(
                        "--from-file: two checkpoints for {} (its other files, by extension: {})",
                        card.name,
                        if names.is_empty() { "none".into() } else { names.join(", ") }
                    )));
                }
            }
        }
    }
    Ok((main, extra))
}

/// A weights argument: an existing file, or a model name from the zoo (downloaded, verified and
/// converted on first use, reporting to `log`). Also returns the card the file belongs to.
pub fn resolve(spec: &Path, log: &mut dyn FnMut(&str)) -> Result<(PathBuf, Option<&'static ModelCard>)> {
    if std::fs::symlink_metadata(spec).is_ok() {
        return Ok((spec.to_path_buf(), card_for_file(spec)));
    }
    let name = spec.to_string_lossy();
    match card(&name) {
        Some(c) => {
            let fetch = Fetch { options: AcquireOptions::default(), retries: 4, progress: &mut (), log };
            Ok((ensure_converted(c, fetch)?, Some(c)))
        }
        None => Err(Error::Other(format!("{}: no such file, and no model of that name (see `snzoo list`)", snzoo_fs::display_path(spec)))),
    }
}

/// The card whose checkpoint a converted file was made from (by the recorded or published sha256).
pub fn card_for_file(path: &Path) -> Option<&'static ModelCard> {
    let meta = crate::weights::read_safetensors_info(path).ok()?.metadata;
    if let Some(c) = meta.get("model_card").and_then(|n| card(n)) {
        return Some(c);
    }
    let sha = meta.get("source_sha256")?;
    let store = Store::from_env();
    cards().iter().find(|c| c.sha256.as_ref() == Some(sha) || store.recorded_sha256(&c.name).as_ref() == Some(sha))
}
