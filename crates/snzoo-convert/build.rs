//! Compiles the vendored `.proto` files (proto/README.md) with protox and prost-build: no
//! `protoc` needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = ["caffe.proto", "tensorflow/core/util/saved_tensor_slice.proto", "tensorflow/core/protobuf/tensor_bundle.proto"];
    let fds = protox::compile(files, ["proto/caffe", "proto/tensorflow"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
