//! The stacks of the `quic_compare` benchmark: Switchyard's QUIC transport
//! against raw quinn and rust-libp2p's QUIC transport, the same four
//! measurements as `tcp_compare` (bulk, 128-byte rate, ping-pong, setup) on
//! loopback, each stack in its own module.
//!
//! * [`switchyard`]: two routers, each with a `transport_quic::QuicTransport`
//!   (quinn, rustls with ring), one typed channel;
//! * [`raw`]: quinn endpoints with `transport-quic`'s quinn settings and
//!   crypto provider carrying length-prefixed messages on one stream, no
//!   Switchyard;
//! * [`rust_libp2p`]: rust-libp2p 0.57 QUIC with one `libp2p-stream`
//!   stream carrying length-prefixed messages.
//!
//! [`buffers`] says which UDP socket buffers each stack gets (by default
//! the same for all three: the kernel's defaults, the only ones libp2p's
//! QUIC can have).
//!
//! The message, the pacing of the runs, the Switchyard and libp2p runs and
//! the report are `switchyard_bench::compare`, shared with `tcp_compare`.
//!
//! This crate is a workspace of its own: rust-libp2p's `quic` feature
//! builds quinn and libp2p-tls on aws-lc-rs, which Cargo's feature
//! unification would otherwise bring into the main workspace.

pub mod buffers;
pub mod raw;
pub mod rust_libp2p;
pub mod switchyard;
