//! TCP transport for Switchyard: Noise XX (snow) with the Noise static key
//! bound to the node's ed25519 identity, in one of two cipher suites,
//! `Noise_XX_25519_ChaChaPoly_BLAKE2s` (mandatory) and
//! `Noise_XX_25519_AESGCM_SHA256`, negotiated in a cleartext preamble.
//!
//! What it promises:
//!
//! * **Authentication.** Before the router sees a connection, the remote
//!   proved its PeerId: its handshake payload carries its ed25519 key and a
//!   signature over its Noise static key. Dialing `tcp://<peer-id>@host:port`
//!   fails with `TransportError::WrongPeer` when another key answers.
//! * **Confidentiality and integrity.** Every byte after the handshake is
//!   encrypted with the connection's suite, ChaCha20-Poly1305 or
//!   AES-256-GCM; a modified, replayed or reordered Noise message ends the
//!   connection.
//! * **Suite negotiation without downgrade.** The dialer offers its suites
//!   in order of preference ([`TcpConfig::suites`]; by default AES-GCM first
//!   only on a CPU with AES hardware); the listener takes the first it
//!   accepts itself ([`preamble`]). The offer and the answer are part of the
//!   Noise prologue: a man in the middle who rewrites either makes the
//!   handshake fail. A ChaCha-only node and an AES-preferring node agree on
//!   ChaCha.
//! * **Network isolation.** The network id is part of the Noise prologue:
//!   nodes of different networks cannot complete a handshake. A tag of it
//!   in the preamble lets the listener refuse a dialer of another network
//!   with a reason both sides see (`TransportError::Refused`,
//!   `network_mismatch`), before any Noise work.
//! * **Batching.** Frames queued together go out in as few Noise messages
//!   as fit, in one write; the writer never waits to batch.
//!
//! What an attacker can do, and what it costs us: open connections (each
//! handshake is bounded in time by `handshake_timeout`, in number per IP by
//! `max_handshakes_per_prefix` and in all by `max_handshakes`, and in size by
//! 18 bytes of preamble and 1 KiB per handshake message); trickle bytes (the
//! deadline closes it);
//! send garbage (the connection ends at the first bad length or tag);
//! announce a huge frame (refused from its length, before buffering).
//!
//! Keepalive (ping/pong) and goodbyes are router frames, so they work the
//! same on every transport. The byte-level wire format is in
//! `adr/0004-tcp-noise-wire-format.md`.

mod config;
mod connection;
pub mod handshake;
pub mod preamble;
pub mod suite;
mod transport;

pub use config::{CryptoBackend, TcpConfig};
pub use connection::{MAX_NOISE_MESSAGE, MAX_PLAINTEXT};
pub use handshake::HandshakeError;
pub use suite::{CipherSuite, aes_hardware};
pub use transport::TcpTransport;
