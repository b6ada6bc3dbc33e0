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

use p2p::transport::Refusal;
use p2p::{Keypair, PeerId};
use snow::HandshakeState;
use snow::resolvers::{BoxedCryptoResolver, DefaultResolver, FallbackResolver, RingResolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::CryptoBackend;
use crate::connection::Session;

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
    /// (Dialer) The listener's second message does not decrypt: its
    /// prologue differs, so it is on another network id or protocol
    /// version.
    #[error(
        "the peer's handshake does not decrypt ({0}): it is on another network id or protocol version"
    )]
    OtherNetwork(String),
    /// (Listener) The dialer hung up after our second message instead of
    /// sending its third: what a dialer on another network id does (it
    /// cannot decrypt our message), and also one that expected another
    /// PeerId at this address.
    #[error(
        "the dialer closed the handshake after our second message ({0}): most likely it is on another network id"
    )]
    Abandoned(String),
}

impl HandshakeError {
    /// What a failed handshake counts as in `handshakes_refused_total`.
    ///
    /// The network id is bound into the Noise prologue, so a wrong one
    /// never shows as such: the dialer fails to decrypt the listener's
    /// message 2 ([`OtherNetwork`](Self::OtherNetwork)) and hangs up, and
    /// the listener sees the dialer leave after its message 2
    /// ([`Abandoned`](Self::Abandoned)). Both count as
    /// [`Refusal::NetworkMismatch`]; on the listener that also takes in
    /// the rarer dialer that hangs up because another key answered than it
    /// expected. This function is where a cleartext preamble naming the
    /// network (issue 16) would make the listener's answer exact.
    pub fn refusal(&self) -> Refusal {
        match self {
            HandshakeError::OtherNetwork(_) | HandshakeError::Abandoned(_) => {
                Refusal::NetworkMismatch
            }
            HandshakeError::Io(_) => Refusal::Io,
            HandshakeError::TooLarge(_)
            | HandshakeError::Noise(_)
            | HandshakeError::Identity(_)
            | HandshakeError::WrongPeer { .. } => Refusal::BadHandshake,
        }
    }
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

#[cfg(test)]
impl NoiseIdentity {
    /// A fixed X25519 static key, signed by `keypair`; for test vectors only.
    pub fn from_static(keypair: &Keypair, private: [u8; 32]) -> Self {
        let public = x25519_public(&private);
        Self {
            payload: identity_payload(keypair, &public),
            private: private.to_vec(),
        }
    }
}

/// The X25519 public key of `private`.
#[cfg(test)]
fn x25519_public(private: &[u8]) -> Vec<u8> {
    use snow::resolvers::CryptoResolver;
    #[allow(clippy::expect_used)]
    let mut dh = DefaultResolver
        .resolve_dh(&snow::params::DHChoice::Curve25519)
        .expect("the default resolver has X25519");
    dh.set(private);
    dh.pubkey().to_vec()
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
    finish(builder(identity, prologue, crypto)?, initiator)
}

fn builder<'a>(
    identity: &'a NoiseIdentity,
    prologue: &'a [u8],
    crypto: CryptoBackend,
) -> Result<snow::Builder<'a>, HandshakeError> {
    snow::Builder::with_resolver(params(), resolver(crypto))
        .local_private_key(&identity.private)
        .map_err(noise)?
        .prologue(prologue)
        .map_err(noise)
}

fn finish(builder: snow::Builder<'_>, initiator: bool) -> Result<HandshakeState, HandshakeError> {
    if initiator {
        builder.build_initiator().map_err(noise)
    } else {
        builder.build_responder().map_err(noise)
    }
}

/// [`build`] with a fixed ephemeral key, for the wire-spec test vector only.
#[cfg(test)]
fn build_with_ephemeral(
    identity: &NoiseIdentity,
    prologue: &[u8],
    crypto: CryptoBackend,
    initiator: bool,
    ephemeral: &[u8],
) -> Result<HandshakeState, HandshakeError> {
    let builder =
        builder(identity, prologue, crypto)?.fixed_ephemeral_key_for_testing_only(ephemeral);
    finish(builder, initiator)
}

fn remote_identity(state: &HandshakeState, payload: &[u8]) -> Result<PeerId, HandshakeError> {
    let remote_static = state
        .get_remote_static()
        .ok_or_else(|| HandshakeError::Noise("no remote static key".into()))?;
    decode_identity(payload, remote_static)
}

/// The transport keys of a finished handshake: ring's AEAD directly for
/// [`CryptoBackend::Ring`], snow's transport state for
/// [`CryptoBackend::RustCrypto`].
fn into_session(
    mut state: HandshakeState,
    crypto: CryptoBackend,
) -> Result<Session, HandshakeError> {
    match crypto {
        CryptoBackend::Ring => {
            if !state.is_handshake_finished() {
                return Err(HandshakeError::Noise("handshake not finished".into()));
            }
            let initiator = state.is_initiator();
            Session::ring(initiator, state.dangerously_get_raw_split())
                .map_err(|_| HandshakeError::Noise("bad transport key".into()))
        }
        CryptoBackend::RustCrypto => Ok(Session::Snow(std::sync::Arc::new(
            state.into_stateless_transport_mode().map_err(noise)?,
        ))),
    }
}

/// Runs the initiator side; fails with [`HandshakeError::WrongPeer`] if
/// `expected` is given and another key answers.
pub(crate) async fn initiate<S>(
    stream: &mut S,
    identity: &NoiseIdentity,
    prologue: &[u8],
    crypto: CryptoBackend,
    expected: Option<PeerId>,
) -> Result<(Session, PeerId), HandshakeError>
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
    // Message 2 is the first encrypted under a key that mixes in the
    // prologue: failing to decrypt it is a different network id (or
    // protocol version).
    let n = state
        .read_message(&incoming, &mut payload)
        .map_err(|e| HandshakeError::OtherNetwork(e.to_string()))?;
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
    Ok((into_session(state, crypto)?, remote))
}

/// Runs the responder side.
pub(crate) async fn respond<S>(
    stream: &mut S,
    identity: &NoiseIdentity,
    prologue: &[u8],
    crypto: CryptoBackend,
) -> Result<(Session, PeerId), HandshakeError>
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
    // A dialer that cannot decrypt our message 2 (another network id)
    // hangs up here.
    read_message(stream, &mut incoming)
        .await
        .map_err(|e| match e {
            HandshakeError::Io(detail) => HandshakeError::Abandoned(detail),
            other => other,
        })?;
    let n = state.read_message(&incoming, &mut payload).map_err(noise)?;
    let remote = remote_identity(&state, &payload[..n])?;
    Ok((into_session(state, crypto)?, remote))
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
        // Both sides tell a different network: the dialer cannot decrypt
        // message 2, the listener sees it hang up after message 2.
        assert!(
            matches!(client, Err(HandshakeError::OtherNetwork(_))),
            "{client:?}"
        );
        let server = server.expect_err("the responder never sees an identity");
        assert!(matches!(server, HandshakeError::Abandoned(_)), "{server:?}");
        assert_eq!(server.refusal(), Refusal::NetworkMismatch);
        assert_eq!(
            client.expect_err("client").refusal(),
            Refusal::NetworkMismatch
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    // The test vector of adr/0004-tcp-noise-wire-format.md, "Test vector".
    const ED_SECRET_I: &str = "611830d3641a68f94a690dcc25d1f4b0dac948325ac18f6dd32564371735f32c";
    const ED_SECRET_R: &str = "1fbec814b18b1d4c3eaa7cec41007e04bf0a98453b06ec7582aa29882c52eb7e";
    const ED_PUBLIC_I: &str = "ff87a0b0a3c7c0ce827e9cada5ff79e75a44a0633bfcb5b50f99307ddb26b337";
    const ED_PUBLIC_R: &str = "191fc38f134aaf1b7fdb1f86330b9d03e94bd4ba884f490389de964448e89b3f";
    const PEER_ID_I: &str = "76d2bmfdy7am5at6tsw2l73z45nejiddhp6llnipteyh3wzgwm3q";
    const PEER_ID_R: &str = "dep4hdytjkxrw763d6ddgc45apuuxvf2rbhusa4j32leishitm7q";
    const SIGNED_I: &str = concat!(
        "000000000000001a737769746368796172642f6e6f6973652d7374617469632f",
        "76317b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f7",
        "3f13",
    );
    const STATIC_PUBLIC_I: &str =
        "7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13";
    const STATIC_PUBLIC_R: &str =
        "0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20";
    const EPHEMERAL_PUBLIC_I: &str =
        "7b0d47d93427f8311160781c7c733fd89f88970aef490d8aa0ee19a4cb8a1b14";
    const EPHEMERAL_PUBLIC_R: &str =
        "ff2ee45601ec1b67310c7790404585ae697331eee1c1f8cf2419731c1fff3e6b";
    const PROLOGUE: &str = concat!(
        "737769746368796172642d6e6f6973652d7631000f737769746368796172642d",
        "74657374",
    );
    const PAYLOAD_I: &str = concat!(
        "01ff87a0b0a3c7c0ce827e9cada5ff79e75a44a0633bfcb5b50f99307ddb26b3",
        "3724eba535c6f0500d152ee55d36f4e185d74c9a9da968d7d9b438bd64de3ec2",
        "20e43fb026e00f29facfd87641839a97ecc66bacb62804b42dfcb564240336ba",
        "00",
    );
    const PAYLOAD_R: &str = concat!(
        "01191fc38f134aaf1b7fdb1f86330b9d03e94bd4ba884f490389de964448e89b",
        "3f0c544741f83a82b3b26b56d52bd557d3ae74754d6eb6104488b4ec9dd9649b",
        "f38909669966ea769e75877138f9629569c94b39a86ae03507c0b8ba8e6a0867",
        "01",
    );
    const WIRE_1: &str = concat!(
        "00207b0d47d93427f8311160781c7c733fd89f88970aef490d8aa0ee19a4cb8a",
        "1b14",
    );
    const WIRE_2: &str = concat!(
        "00c1ff2ee45601ec1b67310c7790404585ae697331eee1c1f8cf2419731c1fff",
        "3e6be4b2ed560b9e34baa5e6b14cf3867fb15797dcfc422f9fd1cc48da4363ae",
        "2805fd0f441a3e8b9670da3374ab4556370809c7df472d347fbe644c42eeed95",
        "72f51f42adcf6ab4234ef8683f5612cab5a22e4f4da273659903b9a6ae1f80c8",
        "315c95e75414cc6aa8c3bc980933f91b4370a73b444b41809f09d9deb7b415c5",
        "fb743385f4ef5fe3b435ce0deb6b99272c86e044bb5b2e0ec660203118a2e975",
        "1852e0",
    );
    const WIRE_3: &str = concat!(
        "00a1e96c1d31e3e3342fd97aaa674b61e3ecd778cfa8814c6b65dceca56e8b15",
        "4edce839b3bd58e794aad86060446a7901f0d62d8589e0df192fa8c9fce7559b",
        "3867ffc90dce4d08f33ca8b0835e51ade17aeb47c2ebe821c280c4532eb1f572",
        "f4d5acaa2af697acb69ffac675054a6dacaf74b9daf1542314c3d5c180a6f7b4",
        "9623a42751733b0b5a280dd3a21057faa8ece358b2aeff25da36031daf23ea09",
        "c4e762",
    );
    const HANDSHAKE_HASH: &str = "a48bad9c07aebf5e852e5376ac6ee20c5fe0724ed4c0e1aa36e6fcb6a929eb4d";
    const DATA_PLAINTEXT: &str = "0b12090820120568656c6c6f";
    const DATA_WIRE: &str = "001cedf3453fd1387a9a2709af8909a1be39b67bd510a08df650d6fb6486";
    const INITIAL_CREDIT_PLAINTEXT: &str = "061a0408201040";
    const CREDIT_PLAINTEXT: &str = "061a0408201020";
    const PING_PLAINTEXT: &str = "0b2a09090100000000000000";
    const PONG_PLAINTEXT: &str = "0b3209090100000000000000";
    const GOODBYE_PLAINTEXT: &str = "182216080112126e6f6465207368757474696e6720646f776e";
    const HELLO_PLAINTEXT: &str = concat!(
        "530a510802120f737769746368796172642d746573741a20191fc38f134aaf1b",
        "7fdb1f86330b9d03e94bd4ba884f490389de964448e89b3f2208082010401880",
        "80043210737769746368796172642f302e312e30",
    );
    const HELLO_WIRE: &str = concat!(
        "006422fe1c6cf7dfbdf68c2cecba39e606dfda83d4a80baea7a878eddffd04b9",
        "6ac166e9e5f216190a58397d9a1d4e1e6a93632c8e9d3089298bfd21dfe0a195",
        "5590e652c025e4eda63f171a7315d378c4c1cc4d2062b928611da0351f0c2b20",
        "dbe99b5112c4",
    );

    const VECTOR: &[(&str, &str)] = &[
        ("ED_SECRET_I", ED_SECRET_I),
        ("ED_SECRET_R", ED_SECRET_R),
        ("ED_PUBLIC_I", ED_PUBLIC_I),
        ("ED_PUBLIC_R", ED_PUBLIC_R),
        ("PEER_ID_I", PEER_ID_I),
        ("PEER_ID_R", PEER_ID_R),
        ("STATIC_PUBLIC_I", STATIC_PUBLIC_I),
        ("STATIC_PUBLIC_R", STATIC_PUBLIC_R),
        ("EPHEMERAL_PUBLIC_I", EPHEMERAL_PUBLIC_I),
        ("EPHEMERAL_PUBLIC_R", EPHEMERAL_PUBLIC_R),
        ("PROLOGUE", PROLOGUE),
        ("SIGNED_I", SIGNED_I),
        ("PAYLOAD_I", PAYLOAD_I),
        ("PAYLOAD_R", PAYLOAD_R),
        ("WIRE_1", WIRE_1),
        ("WIRE_2", WIRE_2),
        ("WIRE_3", WIRE_3),
        ("HANDSHAKE_HASH", HANDSHAKE_HASH),
        ("DATA_PLAINTEXT", DATA_PLAINTEXT),
        ("DATA_WIRE", DATA_WIRE),
        ("HELLO_PLAINTEXT", HELLO_PLAINTEXT),
        ("HELLO_WIRE", HELLO_WIRE),
        ("INITIAL_CREDIT_PLAINTEXT", INITIAL_CREDIT_PLAINTEXT),
        ("CREDIT_PLAINTEXT", CREDIT_PLAINTEXT),
        ("PING_PLAINTEXT", PING_PLAINTEXT),
        ("PONG_PLAINTEXT", PONG_PLAINTEXT),
        ("GOODBYE_PLAINTEXT", GOODBYE_PLAINTEXT),
    ];

    /// The test vector printed in `adr/0004-tcp-noise-wire-format.md`: a
    /// full handshake between fixed keys, then one transport message each
    /// way, through the same framing and sealing code a connection uses.
    #[tokio::test]
    async fn wire_spec_test_vector() {
        use std::sync::Arc;

        use bytes::{Bytes, BytesMut};
        use p2p::channel::ChannelId;
        use p2p::transport::{Frame, FrameSink, FrameStream, GoodbyeReason, encode_frame};

        use crate::connection::{NoiseSink, NoiseStream, TAG_LEN};

        let (ki, kr) = (Keypair::from_seed(1), Keypair::from_seed(2));
        let (ii, ir) = (
            NoiseIdentity::from_static(&ki, [0x11; 32]),
            NoiseIdentity::from_static(&kr, [0x22; 32]),
        );
        let (ei, er) = ([0x33u8; 32], [0x44u8; 32]);
        let p = prologue("switchyard-test");
        // One side on each backend: both must produce the same bytes.
        let mut initiator =
            build_with_ephemeral(&ii, &p, CryptoBackend::RustCrypto, true, &ei).expect("i");
        let mut responder =
            build_with_ephemeral(&ir, &p, CryptoBackend::Ring, false, &er).expect("r");
        assert_eq!(hex(&ki.secret_bytes()), ED_SECRET_I);
        assert_eq!(hex(&kr.secret_bytes()), ED_SECRET_R);
        assert_eq!(hex(ki.peer_id().as_bytes()), ED_PUBLIC_I);
        assert_eq!(hex(kr.peer_id().as_bytes()), ED_PUBLIC_R);
        assert_eq!(ki.peer_id().to_string(), PEER_ID_I);
        assert_eq!(kr.peer_id().to_string(), PEER_ID_R);
        assert_eq!(hex(&x25519_public(&[0x11; 32])), STATIC_PUBLIC_I);
        assert_eq!(hex(&x25519_public(&[0x22; 32])), STATIC_PUBLIC_R);
        assert_eq!(hex(&x25519_public(&ei)), EPHEMERAL_PUBLIC_I);
        assert_eq!(hex(&x25519_public(&er)), EPHEMERAL_PUBLIC_R);
        assert_eq!(hex(&p), PROLOGUE);
        assert_eq!(hex(&ii.payload), PAYLOAD_I);
        // The payload's signature is over exactly the bytes the ADR spells out.
        assert!(
            ki.peer_id()
                .verify(&unhex(SIGNED_I), &ii.payload[33..])
                .is_ok()
        );
        assert_eq!(hex(&ir.payload), PAYLOAD_R);

        let mut message = vec![0u8; MAX_HANDSHAKE_MESSAGE];
        let mut payload = vec![0u8; MAX_HANDSHAKE_MESSAGE];
        let mut incoming = Vec::new();

        // -> e
        let n = initiator.write_message(&[], &mut message).expect("msg 1");
        let mut wire1 = Vec::new();
        write_message(&mut wire1, &message[..n])
            .await
            .expect("frame 1");
        read_message(&mut &wire1[..], &mut incoming)
            .await
            .expect("read 1");
        let n = responder
            .read_message(&incoming, &mut payload)
            .expect("open 1");
        assert_eq!(n, 0, "message 1 has an empty payload");

        // <- e, ee, s, es, payload(responder)
        let n = responder
            .write_message(&ir.payload, &mut message)
            .expect("msg 2");
        let mut wire2 = Vec::new();
        write_message(&mut wire2, &message[..n])
            .await
            .expect("frame 2");
        read_message(&mut &wire2[..], &mut incoming)
            .await
            .expect("read 2");
        let n = initiator
            .read_message(&incoming, &mut payload)
            .expect("open 2");
        assert_eq!(&payload[..n], &ir.payload[..]);
        assert_eq!(remote_identity(&initiator, &payload[..n]), Ok(kr.peer_id()));

        // -> s, se, payload(initiator)
        let n = initiator
            .write_message(&ii.payload, &mut message)
            .expect("msg 3");
        let mut wire3 = Vec::new();
        write_message(&mut wire3, &message[..n])
            .await
            .expect("frame 3");
        read_message(&mut &wire3[..], &mut incoming)
            .await
            .expect("read 3");
        let n = responder
            .read_message(&incoming, &mut payload)
            .expect("open 3");
        assert_eq!(remote_identity(&responder, &payload[..n]), Ok(ki.peer_id()));

        assert_eq!(hex(&wire1), WIRE_1);
        assert_eq!(hex(&wire2), WIRE_2);
        assert_eq!(hex(&wire3), WIRE_3);
        assert_eq!(
            initiator.get_handshake_hash(),
            responder.get_handshake_hash()
        );
        assert_eq!(hex(initiator.get_handshake_hash()), HANDSHAKE_HASH);

        let initiator = Arc::new(initiator.into_stateless_transport_mode().expect("i"));
        let responder = Arc::new(responder.into_stateless_transport_mode().expect("r"));

        // The other frames of the worked example, as plaintext.
        for (frame, expected) in [
            (
                Frame::Credit {
                    channel: ChannelId(0x20),
                    messages: 64,
                },
                INITIAL_CREDIT_PLAINTEXT,
            ),
            (
                Frame::Credit {
                    channel: ChannelId(0x20),
                    messages: 32,
                },
                CREDIT_PLAINTEXT,
            ),
            (Frame::Ping(1), PING_PLAINTEXT),
            (Frame::Pong(1), PONG_PLAINTEXT),
            (
                Frame::goodbye(GoodbyeReason::Shutdown, "node shutting down"),
                GOODBYE_PLAINTEXT,
            ),
        ] {
            let mut plain = BytesMut::new();
            encode_frame(&frame, &mut plain);
            assert_eq!(hex(&plain), expected, "{frame:?}");
        }

        // Transport messages go through a connection's real sink and stream.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (dialed, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (mut i_read, i_write) = dialed.expect("connect").into_split();
        let (mut r_read, r_write) = accepted.expect("accept").0.into_split();

        // Initiator -> responder, nonce 0: Data on channel 0x20, "hello".
        let data = Frame::Data {
            channel: ChannelId(0x20),
            payload: Bytes::from_static(b"hello"),
        };
        let mut plain = BytesMut::new();
        encode_frame(&data, &mut plain);
        let mut sink = NoiseSink::new(i_write, initiator.clone());
        sink.send(&mut vec![data.clone()]).await.expect("send data");
        let mut wire4 = vec![0u8; 2 + plain.len() + TAG_LEN];
        r_read.read_exact(&mut wire4).await.expect("read data");
        assert_eq!(hex(&plain), DATA_PLAINTEXT);
        assert_eq!(hex(&wire4), DATA_WIRE);

        // Responder -> initiator, nonce 0: its Hello, in the protocol
        // version the router speaks. The ADR prints version 2: a new version
        // changes the Hello's bytes, and the ADR must say what changed.
        assert_eq!(
            p2p::router::PROTOCOL_VERSION,
            2,
            "update adr/0004-tcp-noise-wire-format.md for the new protocol version"
        );
        let hello = Frame::Hello(Box::new(p2p::proto::NodeInfo {
            protocol_version: p2p::router::PROTOCOL_VERSION,
            network_id: "switchyard-test".into(),
            peer_id: kr.peer_id().as_bytes().to_vec().into(),
            channels: vec![p2p::proto::ChannelInfo {
                id: 0x20,
                recv_window: 64,
                max_message_size: 65_536,
            }],
            listen_addresses: Vec::new(),
            software_version: "switchyard/0.1.0".into(),
        }));
        let mut plain5 = BytesMut::new();
        encode_frame(&hello, &mut plain5);
        let mut sink = NoiseSink::new(r_write, responder.clone());
        sink.send(&mut vec![hello.clone()])
            .await
            .expect("send hello");
        let mut wire5 = vec![0u8; 2 + plain5.len() + TAG_LEN];
        i_read.read_exact(&mut wire5).await.expect("read hello");
        assert_eq!(hex(&plain5), HELLO_PLAINTEXT);
        assert_eq!(hex(&wire5), HELLO_WIRE);

        // Each side's stream opens what the other's sink sealed.
        let mut frames = Vec::new();
        let mut stream = NoiseStream::new(r_read, responder, 1024, &wire4);
        stream.recv(&mut frames).await.expect("open data");
        assert_eq!(frames, vec![data]);
        let mut frames = Vec::new();
        let mut stream = NoiseStream::new(i_read, initiator, 1024, &wire5);
        stream.recv(&mut frames).await.expect("open hello");
        assert_eq!(frames, vec![hello]);
    }

    /// The ADR prints the same vector: each value appears in it once its
    /// line breaks and indentation are removed.
    #[test]
    fn wire_spec_test_vector_matches_the_adr() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../adr/0004-tcp-noise-wire-format.md"
        );
        let adr = std::fs::read_to_string(path).expect("the wire-format ADR");
        let adr: String = adr.chars().filter(|c| !c.is_whitespace()).collect();
        for (name, value) in VECTOR {
            assert!(adr.contains(value), "{name} is not in {path}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_payloads_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = decode_identity(&bytes, b"key");
        }
    }
}
