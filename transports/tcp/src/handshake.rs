//! The Noise XX handshake that proves both sides' ed25519 identities.
//!
//! ```text
//! prologue = "switchyard-noise-v1" ‖ u16be(len(network_id)) ‖ network_id
//! -> e
//! <- e, ee, s, es, payload(responder identity)
//! -> s, se, payload(initiator identity)
//! identity payload (97 bytes) = 0x01 ‖ ed25519 public key (32) ‖ signature (64)
//! signature = ed25519 over u64be(len(domain)) ‖ domain ‖ noise static key,
//!             domain = "switchyard/noise-static/v1"
//! ```
//!
//! Each handshake message travels as `u16be(length) ‖ message`; a length
//! above [`MAX_HANDSHAKE_MESSAGE`] is refused before anything is read. Two
//! nodes of different networks derive different prologues, so their
//! handshake fails at the first encrypted payload. The byte-level spec is in
//! `adr/0004-tcp-noise-wire-format.md`.

use p2p::{Keypair, PeerId};
use snow::resolvers::{BoxedCryptoResolver, DefaultResolver, FallbackResolver, RingResolver};
use snow::{HandshakeState, StatelessTransportState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::CryptoBackend;

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// Start of the prologue; names the protocol and its version.
pub const PROLOGUE_PREFIX: &[u8] = b"switchyard-noise-v1";
/// Domain of the signature that binds the Noise static key to the identity.
pub const STATIC_KEY_DOMAIN: &str = "switchyard/noise-static/v1";
/// Version byte of the identity payload.
pub const IDENTITY_PAYLOAD_VERSION: u8 = 1;
/// Length of the identity payload.
pub const IDENTITY_PAYLOAD_LEN: usize = 1 + 32 + 64;
/// Largest handshake message accepted.
pub const MAX_HANDSHAKE_MESSAGE: usize = 1024;

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The socket failed or closed.
    #[error("i/o during handshake: {0}")]
    Io(String),
    /// A handshake message longer than allowed.
    #[error("handshake message of {0} bytes exceeds {MAX_HANDSHAKE_MESSAGE}")]
    TooLarge(usize),
    /// Noise failed: bad bytes, or a different prologue (network id or
    /// protocol version).
    #[error(
        "noise handshake failed ({0}); is the peer on the same network id and protocol version?"
    )]
    Noise(String),
    /// The identity payload is malformed or its signature is wrong.
    #[error("bad identity payload: {0}")]
    Identity(String),
    /// Another key answered than the address named.
    #[error("expected peer {expected} but {actual} answered")]
    WrongPeer {
        /// The PeerId the address named.
        expected: PeerId,
        /// The PeerId that answered.
        actual: PeerId,
    },
}

/// Our Noise static key and the payload that binds it to our identity.
pub(crate) struct NoiseIdentity {
    private: Vec<u8>,
    payload: [u8; IDENTITY_PAYLOAD_LEN],
}

impl NoiseIdentity {
    /// A fresh X25519 static key, signed by `keypair`.
    pub fn new(keypair: &Keypair) -> Result<Self, HandshakeError> {
        let builder = snow::Builder::new(params());
        let static_key = builder
            .generate_keypair()
            .map_err(|e| HandshakeError::Noise(e.to_string()))?;
        Ok(Self {
            payload: identity_payload(keypair, &static_key.public),
            private: static_key.private,
        })
    }
}

fn params() -> snow::params::NoiseParams {
    // The constant parses; a failure would be a bug caught by every test.
    #[allow(clippy::expect_used)]
    NOISE_PARAMS.parse().expect("valid noise parameters")
}

fn resolver(crypto: CryptoBackend) -> BoxedCryptoResolver {
    match crypto {
        CryptoBackend::Ring => Box::new(FallbackResolver::new(
            Box::new(RingResolver),
            Box::new(DefaultResolver),
        )),
        CryptoBackend::RustCrypto => Box::new(DefaultResolver),
    }
}

/// `PROLOGUE_PREFIX ‖ u16be(len) ‖ network_id`.
pub fn prologue(network_id: &str) -> Vec<u8> {
    let id = network_id.as_bytes();
    let len = u16::try_from(id.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(PROLOGUE_PREFIX.len() + 2 + id.len());
    out.extend_from_slice(PROLOGUE_PREFIX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&id[..usize::from(len)]);
    out
}

/// The 97-byte identity payload for `noise_static`.
pub fn identity_payload(keypair: &Keypair, noise_static: &[u8]) -> [u8; IDENTITY_PAYLOAD_LEN] {
    let mut payload = [0u8; IDENTITY_PAYLOAD_LEN];
    payload[0] = IDENTITY_PAYLOAD_VERSION;
    payload[1..33].copy_from_slice(keypair.peer_id().as_bytes());
    payload[33..].copy_from_slice(&keypair.sign_in_domain(STATIC_KEY_DOMAIN, noise_static));
    payload
}

/// Checks an identity payload against the remote's Noise static key and
/// returns the PeerId it proves. Never panics, whatever the bytes.
pub fn decode_identity(payload: &[u8], noise_static: &[u8]) -> Result<PeerId, HandshakeError> {
    if payload.len() != IDENTITY_PAYLOAD_LEN {
        return Err(HandshakeError::Identity(format!(
            "expected {IDENTITY_PAYLOAD_LEN} bytes, got {}",
            payload.len()
        )));
    }
    if payload[0] != IDENTITY_PAYLOAD_VERSION {
        return Err(HandshakeError::Identity(format!(
            "unknown payload version {}",
            payload[0]
        )));
    }
    let peer =
        PeerId::from_bytes(&payload[1..33]).map_err(|e| HandshakeError::Identity(e.to_string()))?;
    peer.verify_in_domain(STATIC_KEY_DOMAIN, noise_static, &payload[33..])
        .map_err(|e| HandshakeError::Identity(e.to_string()))?;
    Ok(peer)
}

async fn write_message<S: AsyncWriteExt + Unpin>(
    stream: &mut S,
    message: &[u8],
) -> Result<(), HandshakeError> {
    let len = u16::try_from(message.len()).map_err(|_| HandshakeError::TooLarge(message.len()))?;
    let mut out = Vec::with_capacity(2 + message.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    stream
        .write_all(&out)
        .await
        .map_err(|e| HandshakeError::Io(e.to_string()))
}

async fn read_message<S: AsyncReadExt + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<(), HandshakeError> {
    let mut len = [0u8; 2];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| HandshakeError::Io(e.to_string()))?;
    let len = usize::from(u16::from_be_bytes(len));
    if len > MAX_HANDSHAKE_MESSAGE {
        return Err(HandshakeError::TooLarge(len));
    }
    buf.resize(len, 0);
    stream
        .read_exact(buf)
        .await
        .map(|_| ())
        .map_err(|e| HandshakeError::Io(e.to_string()))
}

fn noise(e: snow::Error) -> HandshakeError {
    HandshakeError::Noise(e.to_string())
}

fn build(
    identity: &NoiseIdentity,
    prologue: &[u8],
    crypto: CryptoBackend,
    initiator: bool,
) -> Result<HandshakeState, HandshakeError> {
    let builder = snow::Builder::with_resolver(params(), resolver(crypto))
        .local_private_key(&identity.private)
        .map_err(noise)?
        .prologue(prologue)
        .map_err(noise)?;
    if initiator {
        builder.build_initiator().map_err(noise)
    } else {
        builder.build_responder().map_err(noise)
    }
}

fn remote_identity(state: &HandshakeState, payload: &[u8]) -> Result<PeerId, HandshakeError> {
    let remote_static = state
        .get_remote_static()
        .ok_or_else(|| HandshakeError::Noise("no remote static key".into()))?;
    decode_identity(payload, remote_static)
}

/// Runs the initiator side; fails with [`HandshakeError::WrongPeer`] if
/// `expected` is given and another key answers.
pub(crate) async fn initiate<S>(
    stream: &mut S,
    identity: &NoiseIdentity,
    prologue: &[u8],
    crypto: CryptoBackend,
    expected: Option<PeerId>,
) -> Result<(StatelessTransportState, PeerId), HandshakeError>
where
    S: AsyncReadExt + AsyncWriteExt + Unpin,
{
    let mut state = build(identity, prologue, crypto, true)?;
    let mut message = vec![0u8; MAX_HANDSHAKE_MESSAGE];
    let mut payload = vec![0u8; MAX_HANDSHAKE_MESSAGE];
    let n = state.write_message(&[], &mut message).map_err(noise)?;
    write_message(stream, &message[..n]).await?;
    let mut incoming = Vec::new();
    read_message(stream, &mut incoming).await?;
    let n = state.read_message(&incoming, &mut payload).map_err(noise)?;
    let remote = remote_identity(&state, &payload[..n])?;
    if let Some(expected) = expected.filter(|e| *e != remote) {
        return Err(HandshakeError::WrongPeer {
            expected,
            actual: remote,
        });
    }
    let n = state
        .write_message(&identity.payload, &mut message)
        .map_err(noise)?;
    write_message(stream, &message[..n]).await?;
    let transport = state.into_stateless_transport_mode().map_err(noise)?;
    Ok((transport, remote))
}

/// Runs the responder side.
pub(crate) async fn respond<S>(
    stream: &mut S,
    identity: &NoiseIdentity,
    prologue: &[u8],
    crypto: CryptoBackend,
) -> Result<(StatelessTransportState, PeerId), HandshakeError>
where
    S: AsyncReadExt + AsyncWriteExt + Unpin,
{
    let mut state = build(identity, prologue, crypto, false)?;
    let mut message = vec![0u8; MAX_HANDSHAKE_MESSAGE];
    let mut payload = vec![0u8; MAX_HANDSHAKE_MESSAGE];
    let mut incoming = Vec::new();
    read_message(stream, &mut incoming).await?;
    state.read_message(&incoming, &mut payload).map_err(noise)?;
    let n = state
        .write_message(&identity.payload, &mut message)
        .map_err(noise)?;
    write_message(stream, &message[..n]).await?;
    read_message(stream, &mut incoming).await?;
    let n = state.read_message(&incoming, &mut payload).map_err(noise)?;
    let remote = remote_identity(&state, &payload[..n])?;
    let transport = state.into_stateless_transport_mode().map_err(noise)?;
    Ok((transport, remote))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_payload_round_trips_and_binds_the_static_key() {
        let keypair = Keypair::from_seed(1);
        let payload = identity_payload(&keypair, b"static-key-bytes");
        assert_eq!(
            decode_identity(&payload, b"static-key-bytes"),
            Ok(keypair.peer_id())
        );
        assert!(decode_identity(&payload, b"another-static-key").is_err());
        let mut forged = payload;
        forged[1..33].copy_from_slice(Keypair::from_seed(2).peer_id().as_bytes());
        assert!(decode_identity(&forged, b"static-key-bytes").is_err());
        assert!(decode_identity(&payload[..96], b"static-key-bytes").is_err());
        let mut version = payload;
        version[0] = 2;
        assert!(decode_identity(&version, b"static-key-bytes").is_err());
    }

    #[test]
    fn prologue_binds_the_network_id() {
        assert_ne!(prologue("a"), prologue("b"));
        assert!(prologue("main").starts_with(PROLOGUE_PREFIX));
    }

    #[tokio::test]
    async fn in_memory_handshake_proves_both_identities() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let (ka, kb) = (Keypair::from_seed(1), Keypair::from_seed(2));
        let (ia, ib) = (
            NoiseIdentity::new(&ka).expect("a"),
            NoiseIdentity::new(&kb).expect("b"),
        );
        let p = prologue("net");
        let (client, server) = tokio::join!(
            initiate(&mut a, &ia, &p, CryptoBackend::Ring, Some(kb.peer_id())),
            respond(&mut b, &ib, &p, CryptoBackend::RustCrypto),
        );
        assert_eq!(client.map(|c| c.1), Ok(kb.peer_id()));
        assert_eq!(server.map(|s| s.1), Ok(ka.peer_id()));
    }

    #[tokio::test]
    async fn different_networks_fail_the_handshake() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let (ka, kb) = (Keypair::from_seed(1), Keypair::from_seed(2));
        let (ia, ib) = (
            NoiseIdentity::new(&ka).expect("a"),
            NoiseIdentity::new(&kb).expect("b"),
        );
        let (p1, p2) = (prologue("one"), prologue("two"));
        let (client, server) = tokio::join!(
            async move {
                let result = initiate(&mut a, &ia, &p1, CryptoBackend::Ring, None).await;
                // Hang up, as the transport does when a handshake fails.
                drop(a);
                result
            },
            respond(&mut b, &ib, &p2, CryptoBackend::Ring),
        );
        assert!(
            matches!(client, Err(HandshakeError::Noise(_))),
            "{client:?}"
        );
        assert!(server.is_err(), "the responder never sees an identity");
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_payloads_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = decode_identity(&bytes, b"key");
        }
    }
}
