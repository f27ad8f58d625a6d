//! Embeds every card of the repository's `model_cards/` folder into the crate.
use std::io::Write;

fn main() {
    // Read at run time: a build script compiled for one checkout may run for another.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = std::path::Path::new(&manifest).join("../../model_cards");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("model_cards/ beside the crates")
        .map(|e| e.expect("readable model_cards/").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    names.sort();
    let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("cards.rs");
    let mut f = std::fs::File::create(out).unwrap();
    writeln!(f, "pub(crate) const CARD_FILES: &[(&str, &str)] = &[").unwrap();
    for p in names {
        println!("cargo:rerun-if-changed={}", p.display());
        let file = p.file_name().unwrap().to_str().unwrap();
        writeln!(f, "    ({file:?}, include_str!({:?})),", p.canonicalize().unwrap().display().to_string()).unwrap();
    }
    writeln!(f, "];").unwrap();
}
