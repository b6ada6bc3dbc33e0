//! The stacks of the `tcp_compare` benchmark: the same four measurements
//! over three stacks on loopback, and a fourth for connection setup, each in
//! its own module.
//!
//! * [`switchyard`]: two routers, each with a `transport_tcp::TcpTransport`
//!   (TCP + Noise XX, the run's cipher suite), one typed channel;
//! * [`raw`]: tokio `TcpStream`s carrying the same frames
//!   (`p2p::transport::encode_frame` of `Frame::Data`), no encryption, no
//!   router;
//! * [`rust_libp2p`]: rust-libp2p 0.57 (TCP + noise + yamux) with one
//!   `libp2p-stream` stream carrying length-prefixed messages;
//! * [`snow_xx`] (setup only): a bare snow `Noise_XX_25519_*` handshake of
//!   Switchyard's suite over raw TCP, the first message inside Noise
//!   message 3.
//!
//! The message, the pacing of the runs and the Switchyard and libp2p runs
//! themselves are shared with the QUIC comparison, in
//! [`compare`](crate::compare); [`switchyard`] and [`rust_libp2p`] only say
//! which transport those runs use.

pub mod raw;
pub mod rust_libp2p;
pub mod snow_xx;
pub mod switchyard;
