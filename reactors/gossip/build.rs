//! Compiles `proto/gossip.proto` and `proto/room.proto` with protox (a pure-Rust protobuf
//! compiler, so no system `protoc` is needed) and prost-build. Byte fields
//! decode as `bytes::Bytes`, so a payload is shared, not copied, between
//! the receive buffer and every peer it is forwarded to.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["proto/gossip.proto", "proto/room.proto"], ["proto"])?;
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
