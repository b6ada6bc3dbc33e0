//! Compiles `proto/ring.proto` and `proto/store.proto` with protox (a
//! pure-Rust protobuf compiler, so no system `protoc` is needed) and
//! prost-build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["proto/ring.proto", "proto/store.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
