//! Compiles `pex.proto` with protox (a pure-Rust protobuf compiler, so no
//! system `protoc` is needed) and prost-build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=pex.proto");
    let descriptors = protox::compile(["pex.proto"], ["."])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
