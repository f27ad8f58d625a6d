//! With the `cuda` feature: builds src/cuda/switch_norm.cu to PTX with nvcc (`$NVCC`, default
//! `nvcc`). The PTX targets compute capability 7.0 and is compiled for the actual GPU by the
//! driver when first loaded (Volta and newer).

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=NVCC");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let src = "src/cuda/switch_norm.cu";
    println!("cargo::rerun-if-changed={src}");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("switch_norm.ptx");
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".to_string());
    let status = std::process::Command::new(&nvcc).args(["--ptx", "-O3", "-arch=compute_70", "-o"]).arg(&out).arg(src).status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{nvcc} failed to build {src} ({s})"),
        Err(e) => panic!("the `cuda` feature needs nvcc (CUDA toolkit) to build {src}: cannot run `{nvcc}`: {e}; set NVCC to its path"),
    }
}
