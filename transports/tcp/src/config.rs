//! Settings of the TCP transport.

use std::net::SocketAddr;
use std::time::Duration;

use crate::suite::CipherSuite;

/// Which implementation of the suite's cipher and hash Noise uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CryptoBackend {
    /// `ring` (assembly-optimised: ChaCha20-Poly1305, AES-256-GCM,
    /// SHA-256), with snow's pure-Rust resolver for what ring lacks
    /// (X25519, BLAKE2s). The default: measured faster, see BENCHMARKS.md.
    #[default]
    Ring,
    /// snow's pure-Rust resolver (RustCrypto) for everything.
    RustCrypto,
}

/// TCP transport settings. Every field has a default.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// Where to listen (default `127.0.0.1:0`: loopback, any free port).
    pub listen: SocketAddr,
    /// Bound into the Noise prologue: nodes of different networks cannot
    /// complete a handshake.
    pub network_id: String,
    /// Deadline for the whole Noise handshake (default 10 s).
    pub handshake_timeout: Duration,
    /// Handshakes in progress from one network (an IPv4 /24 or IPv6 /48,
    /// [`p2p::IpPrefix`]; default 8); more connections from that network
    /// are closed at once.
    pub max_handshakes_per_prefix: usize,
    /// Handshakes in progress in all (default 256).
    pub max_handshakes: usize,
    /// Largest frame accepted, checked against a frame's length prefix
    /// before it is buffered (default: the router's absolute largest
    /// message, 16 MiB, plus framing). A frame is buffered whole before the
    /// router checks the channel's own limit, so this bounds the memory one
    /// connection can make us hold: set it to the largest
    /// `max_message_size` among the node's channels plus 64.
    pub max_frame_size: usize,
    /// Authenticated inbound connections waiting for the router (default 128).
    pub accept_backlog: usize,
    /// The crypto backend (default [`CryptoBackend::Ring`]).
    pub crypto: CryptoBackend,
    /// The cipher suites this node offers when it dials, in order of
    /// preference, and accepts when it listens (default
    /// [`CipherSuite::default_preference`]: AES-GCM then ChaCha on a CPU
    /// with AES and carry-less multiply instructions, ChaCha alone
    /// otherwise). A listener picks the first suite of the dialer's order
    /// that is in its own list, so its own order does not matter. At least
    /// one, at most 8, none twice ([`TcpTransport::bind`] refuses other
    /// lists). Leaving out [`CipherSuite::ChaChaPoly`], which every
    /// implementation has, cuts a node off from peers that have nothing
    /// else: they are refused with `no_common_suite`.
    ///
    /// [`TcpTransport::bind`]: crate::TcpTransport::bind
    pub suites: Vec<CipherSuite>,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            network_id: "switchyard-local".into(),
            handshake_timeout: Duration::from_secs(10),
            max_handshakes_per_prefix: 8,
            max_handshakes: 256,
            max_frame_size: p2p::router::MAX_MESSAGE_SIZE + 64,
            accept_backlog: 128,
            crypto: CryptoBackend::Ring,
            suites: CipherSuite::default_preference(),
        }
    }
}
