//! Compiles `ring.proto` and `store.proto` with protox (a pure-Rust
//! protobuf compiler, so no system `protoc` is needed) and prost-build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=ring.proto");
    println!("cargo:rerun-if-changed=store.proto");
    let descriptors = protox::compile(["ring.proto", "store.proto"], ["."])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
