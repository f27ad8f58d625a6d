//! Helpers shared by the `snzoo` binary's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A path under the repository's `fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(rel)
}

/// Runs the `snzoo` binary.
pub fn snzoo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snzoo")).args(args).output().expect("run snzoo")
}

/// Runs `snzoo`, asserts success and returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = snzoo(args);
    assert!(out.status.success(), "snzoo {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
