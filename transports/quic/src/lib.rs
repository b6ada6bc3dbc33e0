//! QUIC transport for Switchyard: quinn with rustls (ring provider, TLS 1.3
//! only), the node's ed25519 identity in a self-signed certificate, and a
//! QUIC stream per channel.
//!
//! What it promises:
//!
//! * **Mutual authentication.** Each side presents a self-signed X.509
//!   certificate whose key is its ed25519 identity key, and proves it holds
//!   that key with the TLS 1.3 handshake signature. Custom verifiers on
//!   both sides accept exactly that and derive the PeerId from the key;
//!   a client without a certificate is refused. Dialing
//!   `quic://<peer-id>@host:port` fails with `TransportError::WrongPeer`
//!   when another key answers.
//! * **Network isolation.** The ALPN is `switchyard/1/<network-id>`: nodes
//!   of different networks (or protocol versions) fail the TLS handshake,
//!   before any stream opens.
//! * **A stream per channel.** Each channel's frames travel on their own
//!   unidirectional stream per direction, so QUIC's per-stream flow
//!   control is per-channel backpressure and a stalled channel never holds
//!   up another. `Hello`, `Credit`, `Ping`, `Pong` and `Goodbye` go in
//!   order on one control stream.
//! * **Connection care.** QUIC keep-alives and an idle timeout detect a
//!   dead peer; a goodbye closes the connection with an application close
//!   code and reason that the peer turns back into the goodbye.
//!
//! What an attacker can do, and what it costs us: start handshakes (each
//! bounded in time by `handshake_timeout`, in number per IP by
//! `max_handshakes_per_prefix` and in all by `max_handshakes`); send garbage
//! datagrams (quinn drops what does not decrypt; established connections
//! are unaffected); open streams (at most `max_channels` plus a little
//! slack at once); announce a huge frame (refused from its length, before
//! buffering); start frames on many streams and never finish them (the
//! partial frames of a connection are at most `max_reassembly_bytes`,
//! past which it closes); break the stream framing (the connection closes
//! with `CLOSE_FRAMING` and the router counts it against the peer).
//!
//! The design and the exact wire layout are in
//! `adr/0006-quic-transport.md`.

mod certificate;
mod config;
mod connection;
mod tls;
mod transport;

pub use certificate::{CertificateError, MAX_CERTIFICATE_LEN, ed25519_pkcs8, peer_id_of};
pub use config::QuicConfig;
pub use connection::{CLOSE_FRAMING, CLOSE_GOODBYE_BASE, CLOSE_NO_GOODBYE, CONTROL_STREAM_VERSION};
pub use tls::{ALPN_PREFIX, MAX_NETWORK_ID_LEN, alpn};
pub use transport::QuicTransport;
