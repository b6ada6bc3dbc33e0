//! Compiles `gossip.proto` and `room.proto` (beside this file, in
//! `reactors/gossip/proto/`) with protox (a pure-Rust protobuf compiler,
//! so no system `protoc` is needed) and prost-build. Byte fields decode as
//! `bytes::Bytes`, so a payload is shared, not copied, between the receive
//! buffer and every peer it is forwarded to.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=gossip.proto");
    println!("cargo:rerun-if-changed=room.proto");
    let descriptors = protox::compile(["gossip.proto", "room.proto"], ["."])?;
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
