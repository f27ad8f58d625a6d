//! The binary as a user installs it: copied alone into a fresh root, run from another directory
//! with an empty home. The defaults (the bundled model and sample set, embedded in the binary)
//! must work without the source tree.

use std::process::Command;

#[test]
fn an_installed_binary_runs_its_defaults_from_anywhere() {
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let snzoo = bin.join("snzoo");
    std::fs::copy(env!("CARGO_BIN_EXE_snzoo"), &snzoo).unwrap();
    let home = root.path().join("home");
    let elsewhere = root.path().join("work");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let run = |args: &[&str]| {
        let out =
            Command::new(&snzoo).args(args).current_dir(&elsewhere).env_clear().env("HOME", &home).env("PATH", &bin).output().unwrap();
        assert!(out.status.success(), "snzoo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let report: serde_json::Value = serde_json::from_str(&run(&["eval", "--json", "-q"])).unwrap();
    assert_eq!((report["images"].as_u64(), report["failed"].as_u64()), (Some(8), Some(0)));
    assert!(report["dataset"]["path"].as_str().unwrap().starts_with(home.to_str().unwrap()), "{}", report["dataset"]["path"]);
    let classified: serde_json::Value = serde_json::from_str(&run(&["classify", "--json"])).unwrap();
    assert_eq!(classified.as_array().unwrap().len(), 8);
    assert_eq!(classified[0]["top"].as_array().unwrap().len(), 5);
    // The bundled files were unpacked into the default store, once.
    assert!(home.join(".cache/snzoo/bundled").is_dir());
    assert!(run(&["--version"]).starts_with("snzoo "));
}
