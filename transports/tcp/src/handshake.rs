//! The suite preamble, then the Noise XX handshake that proves both sides'
//! ed25519 identities.
//!
//! ```text
//! -> offer ‖ u16be(len) ‖ e                 (offer: crate::preamble)
//! <- answer ‖ u16be(len) ‖ e, ee, s, es, payload(responder identity ‖ hello)
//! -> u16be(len) ‖ s, se, payload(initiator identity ‖ hello)
//! prologue = "switchyard-noise-v2" ‖ u16be(len(network_id)) ‖ network_id ‖ offer ‖ answer
//! identity payload (97 bytes) = 0x01 ‖ ed25519 public key (32) ‖ signature (64)
//! signature = ed25519 over u64be(len(domain)) ‖ domain ‖ noise static key,
//!             domain = "switchyard/noise-static/v1"
//! ```
//!
//! The dialer sends its first Noise message right behind its offer,
//! built for the first suite it offers and with the prologue of a listener
//! that accepts it. When the listener picks another suite, it sends its
//! answer alone, discards that message, and the dialer starts again under
//! the chosen suite: one more round trip, only when the listener does not
//! accept the dialer's first choice. A listener that refuses (another
//! network, no common suite, a malformed offer) says why in its answer and
//! closes.
//!
//! Since protocol version 3 each side may put its router `Hello` behind its
//! identity in the payload of its last handshake message (the listener in
//! message 2, the dialer in message 3), encoded as a transport frame
//! (`u32be(length) ‖ WireFrame`), when it fits in a handshake message; the
//! receiving side yields it as the first frame of the connection. So the
//! dialer knows the listener's `Hello` — its channels and windows — when it
//! finishes the handshake, and its first messages leave with message 3,
//! on the early credit, without waiting for anything (ADR 0002, "Early
//! data"). The listener's `Hello` goes to a dialer not yet authenticated:
//! it holds nothing that any dialer would not learn by completing a
//! handshake under a fresh key.
//!
//! Each handshake message travels as `u16be(length) ‖ message`; a length
//! above [`MAX_HANDSHAKE_MESSAGE`] is refused before anything is read, and
//! an offer is read in two bounded steps (its head, then at most 8 suite
//! ids). Both the offer and the answer are in the prologue, so a rewritten
//! offer or answer fails the handshake, as a different network id does.
//! The byte-level spec is in `adr/0004-tcp-noise-wire-format.md`.

use p2p::{Keypair, PeerId};
use snow::HandshakeState;
use snow::resolvers::{BoxedCryptoResolver, DefaultResolver, FallbackResolver, RingResolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::CryptoBackend;
use crate::connection::Session;
use crate::preamble::{
    ANSWER_LEN, Answer, MAX_OFFER_LEN, NETWORK_TAG_LEN, OFFER_HEAD_LEN, Offer, PreambleError,
    Refusal, choose, offer_len,
};
use crate::suite::CipherSuite;

/// Start of the prologue; names this layout of the prologue (version 2:
/// it binds the suite preamble), not the router's protocol version.
pub const PROLOGUE_PREFIX: &[u8] = b"switchyard-noise-v2";
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
    /// Noise failed: bad bytes, or a different prologue (network id,
    /// protocol version, or a preamble rewritten in flight).
    #[error(
        "noise handshake failed ({0}); is the peer on the same network id and protocol version, and is nobody rewriting the suite preamble?"
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
    /// A malformed suite preamble: the dialer's offer (we refused it), or
    /// the listener's answer.
    #[error("bad suite preamble: {0}")]
    Preamble(#[from] PreambleError),
    /// We, the listener, refused the dialer in the preamble and told it why.
    #[error("refused the dialer: {}: {detail}", refusal.describe())]
    Refusing {
        /// The refusal sent.
        refusal: Refusal,
        /// What we saw.
        detail: String,
    },
    /// The listener refused us in the preamble, saying why.
    #[error("the listener refused us: {}", .0.describe())]
    RefusedBy(Refusal),
    /// (Dialer) The listener's second message does not decrypt: its
    /// prologue differs from ours though its network tag matched — a suite
    /// preamble rewritten in flight, two network ids whose tags collide, or
    /// another version of this wire format.
    #[error(
        "the peer's handshake does not decrypt ({0}): our prologues differ (a suite preamble rewritten in flight, or another network id or protocol version)"
    )]
    OtherNetwork(String),
    /// (Listener) The dialer hung up after our second message instead of
    /// sending its third: what a dialer does that cannot decrypt it (our
    /// prologues differ) or that expected another PeerId at this address.
    #[error(
        "the dialer closed the handshake after our second message ({0}): it could not decrypt it, or expected another peer"
    )]
    Abandoned(String),
}

impl HandshakeError {
    /// The refusal the two sides exchanged in the suite preamble, if the
    /// handshake ended in one (then both sides name the same reason).
    pub fn answered(&self) -> Option<Refusal> {
        match self {
            Self::Refusing { refusal, .. } | Self::RefusedBy(refusal) => Some(*refusal),
            _ => None,
        }
    }

    /// What a failed handshake counts as in `handshakes_refused_total`.
    ///
    /// A dialer of another network, or with no suite in common, is refused
    /// in the suite preamble, and both sides know why
    /// ([`NetworkMismatch`](p2p::transport::Refusal::NetworkMismatch),
    /// [`NoCommonSuite`](p2p::transport::Refusal::NoCommonSuite)). A
    /// malformed preamble, or one of protocol version 2 or older, is a bad
    /// handshake. So is a prologue that differs although the network tags
    /// matched ([`OtherNetwork`](Self::OtherNetwork),
    /// [`Abandoned`](Self::Abandoned)): a rewritten preamble, or colliding
    /// tags.
    pub fn refusal(&self) -> p2p::transport::Refusal {
        use p2p::transport::Refusal as Reason;
        match self {
            Self::Refusing { refusal, .. } | Self::RefusedBy(refusal) => match refusal {
                Refusal::NetworkMismatch => Reason::NetworkMismatch,
                Refusal::NoCommonSuite => Reason::NoCommonSuite,
                Refusal::BadPreamble => Reason::BadHandshake,
            },
            Self::Io(_) => Reason::Io,
            Self::TooLarge(_)
            | Self::Noise(_)
            | Self::Identity(_)
            | Self::WrongPeer { .. }
            | Self::Preamble(_)
            | Self::OtherNetwork(_)
            | Self::Abandoned(_) => Reason::BadHandshake,
        }
    }
}

/// Our Noise static key and the payload that binds it to our identity.
pub(crate) struct NoiseIdentity {
    private: Vec<u8>,
    payload: [u8; IDENTITY_PAYLOAD_LEN],
    /// A fixed ephemeral key, for the wire-spec test vector only.
    #[cfg(test)]
    ephemeral: Option<[u8; 32]>,
}

impl NoiseIdentity {
    /// A fresh X25519 static key, signed by `keypair`.
    pub fn new(keypair: &Keypair) -> Result<Self, HandshakeError> {
        let builder = snow::Builder::new(params(CipherSuite::ChaChaPoly));
        let static_key = builder
            .generate_keypair()
            .map_err(|e| HandshakeError::Noise(e.to_string()))?;
        Ok(Self {
            payload: identity_payload(keypair, &static_key.public),
            private: static_key.private,
            #[cfg(test)]
            ephemeral: None,
        })
    }
}

#[cfg(test)]
impl NoiseIdentity {
    /// A fixed X25519 static key, signed by `keypair`, and optionally a
    /// fixed ephemeral key; for test vectors only.
    pub fn from_static(keypair: &Keypair, private: [u8; 32], ephemeral: Option<[u8; 32]>) -> Self {
        let public = x25519_public(&private);
        Self {
            payload: identity_payload(keypair, &public),
            private: private.to_vec(),
            ephemeral,
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

/// What one side brings to every handshake: its keys, its network, the
/// suites it offers (as a dialer) and accepts (as a listener), in order of
/// preference, and its crypto backend.
pub(crate) struct Local {
    pub identity: NoiseIdentity,
    pub network_id: String,
    pub network_tag: [u8; NETWORK_TAG_LEN],
    /// Checked by [`check_suites`](crate::suite::check_suites): not empty.
    pub suites: Vec<CipherSuite>,
    pub crypto: CryptoBackend,
    /// Our router `Hello` as an encoded transport frame, sent in our last
    /// handshake message when it fits; empty until the router sets it.
    pub hello: p2p::transport::CarriedHello,
}

impl Local {
    pub fn new(
        identity: NoiseIdentity,
        network_id: &str,
        suites: Vec<CipherSuite>,
        crypto: CryptoBackend,
    ) -> Self {
        Self {
            identity,
            network_id: network_id.to_string(),
            network_tag: crate::preamble::network_tag(network_id),
            suites,
            crypto,
            hello: p2p::transport::CarriedHello::default(),
        }
    }
}

/// A finished handshake.
pub(crate) struct Established {
    /// The transport keys.
    pub session: Session,
    /// The PeerId the remote proved.
    pub remote: PeerId,
    /// The suite the connection runs.
    pub suite: CipherSuite,
    /// What the remote sent behind its identity: its `Hello` as a
    /// transport frame, or nothing.
    pub remote_hello: Vec<u8>,
    /// Whether our `Hello` went in our last handshake message.
    pub hello_sent: bool,
    /// The Noise handshake hash (for the test vector).
    #[cfg(test)]
    pub handshake_hash: Vec<u8>,
}

fn params(suite: CipherSuite) -> snow::params::NoiseParams {
    // The names parse (a unit test of `suite` checks each); a failure
    // would be a bug caught by every test.
    #[allow(clippy::expect_used)]
    suite.noise_name().parse().expect("valid noise parameters")
}

fn resolver(crypto: CryptoBackend) -> BoxedCryptoResolver {
    match crypto {
        // ring: AES-256-GCM, ChaCha20-Poly1305 and SHA-256; snow's
        // pure-Rust resolver: X25519 and BLAKE2s.
        CryptoBackend::Ring => Box::new(FallbackResolver::new(
            Box::new(RingResolver),
            Box::new(DefaultResolver),
        )),
        CryptoBackend::RustCrypto => Box::new(DefaultResolver),
    }
}

/// `PROLOGUE_PREFIX ‖ u16be(len) ‖ network_id ‖ offer ‖ answer`: the
/// offer and the answer exactly as sent.
pub fn prologue(network_id: &str, offer: &[u8], answer: &[u8]) -> Vec<u8> {
    let id = network_id.as_bytes();
    let len = u16::try_from(id.len()).unwrap_or(u16::MAX);
    let mut out =
        Vec::with_capacity(PROLOGUE_PREFIX.len() + 2 + id.len() + offer.len() + answer.len());
    out.extend_from_slice(PROLOGUE_PREFIX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&id[..usize::from(len)]);
    out.extend_from_slice(offer);
    out.extend_from_slice(answer);
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
/// returns the PeerId it proves. Never panics, whatever the bytes. (The
/// bytes after the identity in a handshake payload are the sender's
/// `Hello`: see [`split_payload`].)
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

fn io(e: std::io::Error) -> HandshakeError {
    HandshakeError::Io(e.to_string())
}

/// Appends `u16be(len) ‖ message` to `out`.
fn frame(message: &[u8], out: &mut Vec<u8>) -> Result<(), HandshakeError> {
    let len = u16::try_from(message.len()).map_err(|_| HandshakeError::TooLarge(message.len()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    Ok(())
}

async fn write_message<S: AsyncWriteExt + Unpin>(
    stream: &mut S,
    message: &[u8],
) -> Result<(), HandshakeError> {
    let mut out = Vec::with_capacity(2 + message.len());
    frame(message, &mut out)?;
    stream.write_all(&out).await.map_err(io)
}

async fn read_message<S: AsyncReadExt + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<(), HandshakeError> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(io)?;
    let len = usize::from(u16::from_be_bytes(len));
    if len > MAX_HANDSHAKE_MESSAGE {
        return Err(HandshakeError::TooLarge(len));
    }
    buf.resize(len, 0);
    stream.read_exact(buf).await.map(|_| ()).map_err(io)
}

fn noise(e: snow::Error) -> HandshakeError {
    HandshakeError::Noise(e.to_string())
}

fn build(
    identity: &NoiseIdentity,
    prologue: &[u8],
    suite: CipherSuite,
    crypto: CryptoBackend,
    initiator: bool,
) -> Result<HandshakeState, HandshakeError> {
    let builder = snow::Builder::with_resolver(params(suite), resolver(crypto))
        .local_private_key(&identity.private)
        .map_err(noise)?
        .prologue(prologue)
        .map_err(noise)?;
    #[cfg(test)]
    let builder = match &identity.ephemeral {
        Some(ephemeral) => builder.fixed_ephemeral_key_for_testing_only(ephemeral),
        None => builder,
    };
    if initiator {
        builder.build_initiator().map_err(noise)
    } else {
        builder.build_responder().map_err(noise)
    }
}

/// A handshake payload's identity proof and what follows it: the sender's
/// `Hello` as a transport frame, or nothing.
pub fn split_payload(payload: &[u8]) -> Result<(&[u8], &[u8]), HandshakeError> {
    if payload.len() < IDENTITY_PAYLOAD_LEN {
        return Err(HandshakeError::Identity(format!(
            "expected at least {IDENTITY_PAYLOAD_LEN} bytes, got {}",
            payload.len()
        )));
    }
    Ok(payload.split_at(IDENTITY_PAYLOAD_LEN))
}

/// The remote's PeerId, proven by the identity at the start of `payload`,
/// and the bytes behind it (its `Hello`, if it sent one).
fn remote_identity(
    state: &HandshakeState,
    payload: &[u8],
) -> Result<(PeerId, Vec<u8>), HandshakeError> {
    let remote_static = state
        .get_remote_static()
        .ok_or_else(|| HandshakeError::Noise("no remote static key".into()))?;
    let (identity, hello) = split_payload(payload)?;
    Ok((decode_identity(identity, remote_static)?, hello.to_vec()))
}

/// The payload of our last handshake message: our identity, then our
/// `Hello` if one is set and the message stays within
/// [`MAX_HANDSHAKE_MESSAGE`] with `overhead` bytes of keys and tags.
/// Returns whether the `Hello` went in.
fn our_payload(local: &Local, overhead: usize, out: &mut Vec<u8>) -> bool {
    out.clear();
    out.extend_from_slice(&local.identity.payload);
    let hello = local.hello.get();
    let fits = !hello.is_empty() && out.len() + hello.len() + overhead <= MAX_HANDSHAKE_MESSAGE;
    if fits {
        out.extend_from_slice(&hello);
    }
    fits
}

/// Message 2's keys and tags: e (32), s (32 + 16), the payload's tag (16).
const MESSAGE_2_OVERHEAD: usize = 32 + 48 + 16;
/// Message 3's: s (32 + 16), the payload's tag (16).
const MESSAGE_3_OVERHEAD: usize = 48 + 16;

/// The transport keys of a finished handshake: ring's AEAD directly for
/// [`CryptoBackend::Ring`], snow's transport state for
/// [`CryptoBackend::RustCrypto`].
fn into_established(
    mut state: HandshakeState,
    crypto: CryptoBackend,
    suite: CipherSuite,
    remote: PeerId,
    (remote_hello, hello_sent): (Vec<u8>, bool),
) -> Result<Established, HandshakeError> {
    if !state.is_handshake_finished() {
        return Err(HandshakeError::Noise("handshake not finished".into()));
    }
    #[cfg(test)]
    let handshake_hash = state.get_handshake_hash().to_vec();
    let session = match crypto {
        CryptoBackend::Ring => {
            let initiator = state.is_initiator();
            Session::ring(suite, initiator, state.dangerously_get_raw_split())
                .map_err(|_| HandshakeError::Noise("bad transport key".into()))?
        }
        CryptoBackend::RustCrypto => Session::Snow(std::sync::Arc::new(
            state.into_stateless_transport_mode().map_err(noise)?,
        )),
    };
    Ok(Established {
        session,
        remote,
        suite,
        remote_hello,
        hello_sent,
        #[cfg(test)]
        handshake_hash,
    })
}

/// Runs the dialer's side: the offer and the first Noise message at once,
/// the answer, then the rest of XX under the chosen suite. Fails with
/// [`HandshakeError::WrongPeer`] if `expected` is given and another key
/// answers, and with [`HandshakeError::RefusedBy`] if the listener refuses.
pub(crate) async fn initiate<S>(
    stream: &mut S,
    local: &Local,
    expected: Option<PeerId>,
) -> Result<Established, HandshakeError>
where
    S: AsyncReadExt + AsyncWriteExt + Unpin,
{
    let Some(&first) = local.suites.first() else {
        return Err(HandshakeError::Preamble(PreambleError::Count(0)));
    };
    let offer = Offer::new(local.network_tag, &local.suites).encode();
    // Message 1 under the prologue of a listener that takes our first
    // choice; sent right behind the offer.
    let hoped = Answer::Accept(first).encode();
    let prologue_hoped = prologue(&local.network_id, &offer, &hoped);
    let mut state = build(&local.identity, &prologue_hoped, first, local.crypto, true)?;
    let mut message = vec![0u8; MAX_HANDSHAKE_MESSAGE];
    let mut payload = vec![0u8; MAX_HANDSHAKE_MESSAGE];
    let n = state.write_message(&[], &mut message).map_err(noise)?;
    let mut out = Vec::with_capacity(offer.len() + 2 + n);
    out.extend_from_slice(&offer);
    frame(&message[..n], &mut out)?;
    stream.write_all(&out).await.map_err(io)?;

    let mut answer = [0u8; ANSWER_LEN];
    stream.read_exact(&mut answer).await.map_err(|e| {
        HandshakeError::Io(format!(
            "{e}, before the listener answered our cipher suite offer (a node of protocol version 2 or older does not answer it)"
        ))
    })?;
    let suite = match Answer::decode(answer)? {
        Answer::Refuse(refusal) => return Err(HandshakeError::RefusedBy(refusal)),
        Answer::Accept(suite) if !local.suites.contains(&suite) => {
            return Err(HandshakeError::Preamble(PreambleError::Suite {
                status: 0,
                suite: suite.id(),
            }));
        }
        Answer::Accept(suite) => suite,
    };
    if suite != first {
        // The listener discards our first message 1: start again.
        let prologue = prologue(&local.network_id, &offer, &answer);
        state = build(&local.identity, &prologue, suite, local.crypto, true)?;
        let n = state.write_message(&[], &mut message).map_err(noise)?;
        write_message(stream, &message[..n]).await?;
    }

    let mut incoming = Vec::new();
    read_message(stream, &mut incoming).await?;
    // Message 2 is the first encrypted under a key that mixes in the
    // prologue: failing to decrypt it means our prologues differ (the
    // network tags matched, so: a preamble rewritten in flight, colliding
    // tags, or another version of this wire format).
    let n = state
        .read_message(&incoming, &mut payload)
        .map_err(|e| HandshakeError::OtherNetwork(e.to_string()))?;
    let (remote, remote_hello) = remote_identity(&state, &payload[..n])?;
    if let Some(expected) = expected.filter(|e| *e != remote) {
        return Err(HandshakeError::WrongPeer {
            expected,
            actual: remote,
        });
    }
    let mut ours = Vec::new();
    let hello_sent = our_payload(local, MESSAGE_3_OVERHEAD, &mut ours);
    let n = state.write_message(&ours, &mut message).map_err(noise)?;
    write_message(stream, &message[..n]).await?;
    into_established(
        state,
        local.crypto,
        suite,
        remote,
        (remote_hello, hello_sent),
    )
}

/// Sends `refusal` as our answer and returns the error that says what we
/// saw. The caller closes the connection.
async fn refuse<S: AsyncWriteExt + Unpin>(
    stream: &mut S,
    refusal: Refusal,
    detail: String,
) -> HandshakeError {
    // Best effort: the refusal stands whether or not the dialer hears it.
    let _ = stream.write_all(&Answer::Refuse(refusal).encode()).await;
    HandshakeError::Refusing { refusal, detail }
}

fn names(ids: &[u8]) -> String {
    let names: Vec<String> = ids
        .iter()
        .map(|&id| CipherSuite::from_id(id).map_or_else(|| format!("{id:#04x}"), |s| s.to_string()))
        .collect();
    format!("[{}]", names.join(", "))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the listener's side: reads and checks the offer (its head, then
/// at most [`MAX_OFFER_LEN`] bytes in all), answers — refusing with a
/// reason if it must — and completes XX under the chosen suite.
pub(crate) async fn respond<S>(stream: &mut S, local: &Local) -> Result<Established, HandshakeError>
where
    S: AsyncReadExt + AsyncWriteExt + Unpin,
{
    let mut buf = [0u8; MAX_OFFER_LEN];
    stream
        .read_exact(&mut buf[..OFFER_HEAD_LEN])
        .await
        .map_err(io)?;
    let len = match offer_len(&buf[..OFFER_HEAD_LEN]) {
        Ok(len) => len,
        Err(e) => return Err(refuse(stream, Refusal::BadPreamble, e.to_string()).await),
    };
    stream
        .read_exact(&mut buf[OFFER_HEAD_LEN..len])
        .await
        .map_err(io)?;
    let offer_bytes = &buf[..len];
    let offer = match Offer::decode(offer_bytes) {
        Ok(offer) => offer,
        Err(e) => return Err(refuse(stream, Refusal::BadPreamble, e.to_string()).await),
    };
    let suite = match choose(&offer, &local.network_tag, &local.suites) {
        Answer::Accept(suite) => suite,
        Answer::Refuse(refusal) => {
            let detail = match refusal {
                Refusal::NetworkMismatch => format!(
                    "its network tag {} is not ours, {} (network id {:?})",
                    hex(&offer.network_tag),
                    hex(&local.network_tag),
                    local.network_id
                ),
                _ => format!(
                    "it offers {} and we accept {}",
                    names(offer.suite_ids()),
                    names(&local.suites.iter().map(|s| s.id()).collect::<Vec<_>>())
                ),
            };
            return Err(refuse(stream, refusal, detail).await);
        }
    };
    let answer = Answer::Accept(suite).encode();
    let as_hoped = offer.suite_ids().first() == Some(&suite.id());
    let mut incoming = Vec::new();
    if !as_hoped {
        // The dialer's message 1 was built for its first choice: answer at
        // once, discard it, and wait for the one built for ours.
        stream.write_all(&answer).await.map_err(io)?;
        read_message(stream, &mut incoming).await?;
    }
    let prologue = prologue(&local.network_id, offer_bytes, &answer);
    let mut state = build(&local.identity, &prologue, suite, local.crypto, false)?;
    let mut message = vec![0u8; MAX_HANDSHAKE_MESSAGE];
    let mut payload = vec![0u8; MAX_HANDSHAKE_MESSAGE];
    read_message(stream, &mut incoming).await?;
    state.read_message(&incoming, &mut payload).map_err(noise)?;
    let mut ours = Vec::new();
    let hello_sent = our_payload(local, MESSAGE_2_OVERHEAD, &mut ours);
    let n = state.write_message(&ours, &mut message).map_err(noise)?;
    let mut out = Vec::with_capacity(ANSWER_LEN + 2 + n);
    if as_hoped {
        out.extend_from_slice(&answer);
    }
    frame(&message[..n], &mut out)?;
    stream.write_all(&out).await.map_err(io)?;
    // A dialer that cannot decrypt our message 2 (our prologues differ)
    // hangs up here.
    read_message(stream, &mut incoming)
        .await
        .map_err(|e| match e {
            HandshakeError::Io(detail) => HandshakeError::Abandoned(detail),
            other => other,
        })?;
    let n = state.read_message(&incoming, &mut payload).map_err(noise)?;
    let (remote, remote_hello) = remote_identity(&state, &payload[..n])?;
    into_established(
        state,
        local.crypto,
        suite,
        remote,
        (remote_hello, hello_sent),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use CipherSuite::{AesGcm, ChaChaPoly};

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
    fn prologue_binds_the_network_id_the_offer_and_the_answer() {
        let (offer, answer) = (&[1u8, 2, 3][..], &[1u8, 0, 1][..]);
        assert_ne!(prologue("a", offer, answer), prologue("b", offer, answer));
        assert_ne!(
            prologue("a", offer, answer),
            prologue("a", &[1, 2, 4], answer)
        );
        assert_ne!(
            prologue("a", offer, answer),
            prologue("a", offer, &[1, 0, 2])
        );
        assert!(prologue("main", offer, answer).starts_with(PROLOGUE_PREFIX));
    }

    fn local(seed: u64, network: &str, suites: &[CipherSuite], crypto: CryptoBackend) -> Local {
        let identity = NoiseIdentity::new(&Keypair::from_seed(seed)).expect("identity");
        Local::new(identity, network, suites.to_vec(), crypto)
    }

    /// Every pairing of suites lists and backends: both sides agree on the
    /// first suite of the dialer's list the listener accepts, and prove
    /// their identities; the hoped-for path and the retry both work.
    #[tokio::test]
    async fn both_suites_on_both_backends_agree_and_prove_identities() {
        use CryptoBackend::{Ring, RustCrypto};
        let cases: &[(&[CipherSuite], &[CipherSuite], CipherSuite)] = &[
            (&[AesGcm, ChaChaPoly], &[AesGcm, ChaChaPoly], AesGcm),
            (&[AesGcm, ChaChaPoly], &[ChaChaPoly], ChaChaPoly),
            (&[ChaChaPoly, AesGcm], &[AesGcm, ChaChaPoly], ChaChaPoly),
            (&[ChaChaPoly], &[AesGcm, ChaChaPoly], ChaChaPoly),
            (&[AesGcm], &[ChaChaPoly, AesGcm], AesGcm),
        ];
        for &(offered, accepted, agreed) in cases {
            for (ci, cr) in [(Ring, RustCrypto), (RustCrypto, Ring), (Ring, Ring)] {
                let (mut a, mut b) = tokio::io::duplex(4096);
                let (la, lb) = (local(1, "net", offered, ci), local(2, "net", accepted, cr));
                let (client, server) = tokio::join!(
                    initiate(&mut a, &la, Some(Keypair::from_seed(2).peer_id())),
                    respond(&mut b, &lb),
                );
                let (client, server) = (client.expect("dialer"), server.expect("listener"));
                assert_eq!(client.remote, Keypair::from_seed(2).peer_id());
                assert_eq!(server.remote, Keypair::from_seed(1).peer_id());
                assert_eq!(
                    (client.suite, server.suite),
                    (agreed, agreed),
                    "{offered:?} {accepted:?}"
                );
                assert_eq!(client.handshake_hash, server.handshake_hash);
            }
        }
    }

    /// A listener of another network, or with no suite in common, refuses
    /// with the reason in its answer: both sides name the same refusal.
    #[tokio::test]
    async fn refusals_reach_the_dialer_with_their_reason() {
        let cases: [(&str, &[CipherSuite], Refusal); 2] = [
            ("two", &[ChaChaPoly], Refusal::NetworkMismatch),
            ("one", &[ChaChaPoly], Refusal::NoCommonSuite),
        ];
        for (network, accepted, refusal) in cases {
            let (mut a, mut b) = tokio::io::duplex(4096);
            let la = local(1, "one", &[AesGcm], CryptoBackend::Ring);
            let lb = local(2, network, accepted, CryptoBackend::Ring);
            let (client, server) = tokio::join!(initiate(&mut a, &la, None), async {
                let result = respond(&mut b, &lb).await;
                // Hang up, as the transport does.
                drop(b);
                result
            });
            let (client, server) = (
                client.err().expect("refused"),
                server.err().expect("refused"),
            );
            assert_eq!(client, HandshakeError::RefusedBy(refusal));
            assert_eq!(server.answered(), Some(refusal), "{server}");
            assert!(
                matches!(server, HandshakeError::Refusing { .. }),
                "{server}"
            );
        }
    }

    /// A dialer that speaks the handshake of protocol version 2 (no
    /// preamble: a Noise message length first) is refused as a bad
    /// preamble, with an error that names the likely cause.
    #[tokio::test]
    async fn a_version_2_dialer_is_refused_with_a_clear_reason() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let lb = local(2, "net", &[ChaChaPoly], CryptoBackend::Ring);
        let mut v2 = vec![0x00, 0x20];
        v2.extend_from_slice(&[0x42; 32]);
        a.write_all(&v2).await.expect("write");
        let err = respond(&mut b, &lb).await.err().expect("refused");
        assert_eq!(err.answered(), Some(Refusal::BadPreamble));
        assert!(err.to_string().contains("protocol version 2"), "{err}");
        let mut answer = [0u8; ANSWER_LEN];
        a.read_exact(&mut answer).await.expect("the answer");
        assert_eq!(
            Answer::decode(answer),
            Ok(Answer::Refuse(Refusal::BadPreamble))
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

    /// Records what is written through it.
    struct Recorder<S> {
        inner: S,
        written: Vec<u8>,
    }

    impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Recorder<S> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Recorder<S> {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let this = &mut *self;
            let result = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
            if let std::task::Poll::Ready(Ok(n)) = &result {
                this.written.extend_from_slice(&buf[..*n]);
            }
            result
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    // The test vector of adr/0004-tcp-noise-wire-format.md, section 13:
    // first what both suites share, then each suite's own values.
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
    const NETWORK_TAG: &str = "aa1b1d591427b4c5";
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
    const DATA_PLAINTEXT: &str = "0b12090820120568656c6c6f";
    const INITIAL_CREDIT_PLAINTEXT: &str = "061a040820103c";
    const CREDIT_PLAINTEXT: &str = "061a0408201020";
    const PING_PLAINTEXT: &str = "0b2a09090100000000000000";
    const PONG_PLAINTEXT: &str = "0b3209090100000000000000";
    const GOODBYE_PLAINTEXT: &str = "182216080112126e6f6465207368757474696e6720646f776e";
    const HELLO_PLAINTEXT: &str = concat!(
        "550a530803120f737769746368796172642d746573741a20191fc38f134aaf1b",
        "7fdb1f86330b9d03e94bd4ba884f490389de964448e89b3f220a082010401880",
        "800420043210737769746368796172642f302e312e30",
    );

    const COMMON: &[(&str, &str)] = &[
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
        ("NETWORK_TAG", NETWORK_TAG),
        ("SIGNED_I", SIGNED_I),
        ("PAYLOAD_I", PAYLOAD_I),
        ("PAYLOAD_R", PAYLOAD_R),
        ("DATA_PLAINTEXT", DATA_PLAINTEXT),
        ("HELLO_PLAINTEXT", HELLO_PLAINTEXT),
        ("INITIAL_CREDIT_PLAINTEXT", INITIAL_CREDIT_PLAINTEXT),
        ("CREDIT_PLAINTEXT", CREDIT_PLAINTEXT),
        ("PING_PLAINTEXT", PING_PLAINTEXT),
        ("PONG_PLAINTEXT", PONG_PLAINTEXT),
        ("GOODBYE_PLAINTEXT", GOODBYE_PLAINTEXT),
    ];

    /// `Noise_XX_25519_ChaChaPoly_BLAKE2s`: the dialer offers ChaCha alone
    /// (the default of a CPU without AES hardware).
    const CHACHAPOLY: &[(&str, &str)] = &[
        ("OFFER", "01aa1b1d591427b4c50101"),
        ("ANSWER", "010001"),
        (
            "PROLOGUE",
            concat!(
                "737769746368796172642d6e6f6973652d7632000f737769746368796172642d",
                "7465737401aa1b1d591427b4c50101010001",
            ),
        ),
        (
            "MESSAGE_1",
            concat!(
                "00207b0d47d93427f8311160781c7c733fd89f88970aef490d8aa0ee19a4cb8a",
                "1b14",
            ),
        ),
        (
            "MESSAGE_2",
            concat!(
                "00c1ff2ee45601ec1b67310c7790404585ae697331eee1c1f8cf2419731c1fff",
                "3e6be4b2ed560b9e34baa5e6b14cf3867fb15797dcfc422f9fd1cc48da4363ae",
                "2805129c81010f2415fc3d723d839e945b7409c7df472d347fbe644c42eeed95",
                "72f51f42adcf6ab4234ef8683f5612cab5a22e4f4da273659903b9a6ae1f80c8",
                "315c95e75414cc6aa8c3bc980933f91b4370a73b444b41809f09d9deb7b415c5",
                "fb743385f4ef5fe3b435ce0deb6b99272c86e051ad5fb7b5bea3f52714fb1661",
                "672f15",
            ),
        ),
        (
            "MESSAGE_3",
            concat!(
                "00a1e96c1d31e3e3342fd97aaa674b61e3ecd778cfa8814c6b65dceca56e8b15",
                "4edc7a2c7a78362ee5e0411668f0013d6852d62d8589e0df192fa8c9fce7559b",
                "3867ffc90dce4d08f33ca8b0835e51ade17aeb47c2ebe821c280c4532eb1f572",
                "f4d5acaa2af697acb69ffac675054a6dacaf74b9daf1542314c3d5c180a6f7b4",
                "9623a42751733b0b5a280dd3a21057faa8ece3b8d1e2de5dade1f98e83c75f63",
                "0e7225",
            ),
        ),
        (
            "HANDSHAKE_HASH",
            "5e22c066636382e89cbe4fa03dee907c639fc157d08fd8b706e464716b79cb55",
        ),
        (
            "DATA_WIRE",
            "001cedf3453fd1387a9a2709af8909a1be39b67bd510a08df650d6fb6486",
        ),
        (
            "HELLO_WIRE",
            concat!(
                "006624fe1e6cf6dfbdf68c2cecba39e606dfda83d4a80baea7a878eddffd04b9",
                "6ac166e9e5f216190a58397d9a1d4e1e6a93632c8e9d3089298bfd23dfe0a195",
                "5590e652d231a58abc3c1d06691cd87d9995cd4c2063a72e01773b1af5db471a",
                "28d602dbf93394e6",
            ),
        ),
    ];

    /// `Noise_XX_25519_AESGCM_SHA256`: the dialer offers AES-GCM, then
    /// ChaCha (the default of a CPU with AES hardware).
    const AESGCM: &[(&str, &str)] = &[
        ("OFFER", "01aa1b1d591427b4c5020201"),
        ("ANSWER", "010002"),
        (
            "PROLOGUE",
            concat!(
                "737769746368796172642d6e6f6973652d7632000f737769746368796172642d",
                "7465737401aa1b1d591427b4c5020201010002",
            ),
        ),
        (
            "MESSAGE_1",
            concat!(
                "00207b0d47d93427f8311160781c7c733fd89f88970aef490d8aa0ee19a4cb8a",
                "1b14",
            ),
        ),
        (
            "MESSAGE_2",
            concat!(
                "00c1ff2ee45601ec1b67310c7790404585ae697331eee1c1f8cf2419731c1fff",
                "3e6b2cd2b7e677cf335563c62b7430218e13457b9617ae068cb83bb09b6b98e9",
                "a528d0e2b22a1205d3800749305cbe07dd29ab685dbfcd4c7992dbcaed846552",
                "3ed3c1d012a548d0ac24bca3777d8b828eabd88633e7bb70e96a60352a18c0dd",
                "e15a8c420157b1de84ca8a677c4ddfb29511bafc92b561f58bbec0197ceff445",
                "99b5c566e4478e83f662fd9c9ad061bf516a89dd8b90a5bbe03e6112c72161bc",
                "cc7254",
            ),
        ),
        (
            "MESSAGE_3",
            concat!(
                "00a14b4304a1ce0fa0831c0d5086a53d113c80569e488157087563fafa69d179",
                "2d9aeb4082c2cef76c1576962e85c1edfb2f1394c51828cb365d257b10c81d9a",
                "1a1620b824bb506b69fe9391e445cfcc01361d20d8be2755fdc35fa4a4b8e402",
                "b4b595808ca606ab2bde156f8771c69cd44e05da78036ba1af6a0472e251f661",
                "04436897790f283843399f97598903d4b822cd6a3385854b4d64f70d586d9c91",
                "0d16d4",
            ),
        ),
        (
            "HANDSHAKE_HASH",
            "704b3be24df63711b3f3827a6662f0c02b6281d64ccd86200d3b92dfc47578bf",
        ),
        (
            "DATA_WIRE",
            "001c579f9605677edf4de8e79bb250e014e9404cd0f5e2f058726452a23d",
        ),
        (
            "HELLO_WIRE",
            concat!(
                "0066e77c73eb2d8c216d28ff7db27158dd74069a7b463d6c3e5299d6f9fa5255",
                "141dc61972c567aa117c01ea4fe0255c674bb30e53105e68c9ab5d4f18f65061",
                "6b3b03da783a1328781429a3e23f5f766c0250794a8579e25022d6af50c09916",
                "ede12dbfd40130a8",
            ),
        ),
    ];

    /// Runs the vector's connection with the dialer offering `offered` to
    /// a listener that accepts both suites, checks what both suites share
    /// against [`COMMON`], and returns the suite's own values in the order
    /// of [`CHACHAPOLY`] and [`AESGCM`]. The handshake is the real
    /// `initiate` and `respond` over a loopback socket, with fixed static
    /// and ephemeral keys, the dialer on the RustCrypto backend and the
    /// listener on ring; the transport messages go through a connection's
    /// real `NoiseSink` and `NoiseStream`.
    async fn run_vector(
        offered: &[CipherSuite],
        agreed: CipherSuite,
    ) -> Vec<(&'static str, String)> {
        use bytes::{Bytes, BytesMut};
        use p2p::channel::ChannelId;
        use p2p::transport::{Frame, FrameSink, FrameStream, GoodbyeReason, encode_frame};

        use crate::connection::{NoiseSink, NoiseStream, TAG_LEN};

        let (ki, kr) = (Keypair::from_seed(1), Keypair::from_seed(2));
        let li = Local::new(
            NoiseIdentity::from_static(&ki, [0x11; 32], Some([0x33; 32])),
            "switchyard-test",
            offered.to_vec(),
            CryptoBackend::RustCrypto,
        );
        let lr = Local::new(
            NoiseIdentity::from_static(&kr, [0x22; 32], Some([0x44; 32])),
            "switchyard-test",
            vec![AesGcm, ChaChaPoly],
            CryptoBackend::Ring,
        );
        assert_eq!(hex(&ki.secret_bytes()), ED_SECRET_I);
        assert_eq!(hex(&kr.secret_bytes()), ED_SECRET_R);
        assert_eq!(hex(ki.peer_id().as_bytes()), ED_PUBLIC_I);
        assert_eq!(hex(kr.peer_id().as_bytes()), ED_PUBLIC_R);
        assert_eq!(ki.peer_id().to_string(), PEER_ID_I);
        assert_eq!(kr.peer_id().to_string(), PEER_ID_R);
        assert_eq!(hex(&x25519_public(&[0x11; 32])), STATIC_PUBLIC_I);
        assert_eq!(hex(&x25519_public(&[0x22; 32])), STATIC_PUBLIC_R);
        assert_eq!(hex(&x25519_public(&[0x33; 32])), EPHEMERAL_PUBLIC_I);
        assert_eq!(hex(&x25519_public(&[0x44; 32])), EPHEMERAL_PUBLIC_R);
        assert_eq!(hex(&li.network_tag), NETWORK_TAG);
        assert_eq!(hex(&li.identity.payload), PAYLOAD_I);
        // The payload's signature is over exactly the bytes the ADR spells out.
        assert!(
            ki.peer_id()
                .verify(&unhex(SIGNED_I), &li.identity.payload[33..])
                .is_ok()
        );
        assert_eq!(hex(&lr.identity.payload), PAYLOAD_R);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (dialed, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let mut dialer = Recorder {
            inner: dialed.expect("connect"),
            written: Vec::new(),
        };
        let mut accepter = Recorder {
            inner: accepted.expect("accept").0,
            written: Vec::new(),
        };
        let (i, r) = tokio::join!(
            initiate(&mut dialer, &li, Some(kr.peer_id())),
            respond(&mut accepter, &lr)
        );
        let (i, r) = (i.expect("dialer"), r.expect("listener"));
        assert_eq!((i.suite, r.suite), (agreed, agreed));
        assert_eq!((i.remote, r.remote), (kr.peer_id(), ki.peer_id()));
        assert_eq!(i.handshake_hash, r.handshake_hash);

        // The dialer sent offer ‖ message 1, then message 3; the listener
        // answer ‖ message 2.
        let (up, down) = (&dialer.written, &accepter.written);
        let offer_end = offer_len(up).expect("an offer");
        let offer = &up[..offer_end];
        let message_1 = &up[offer_end..offer_end + 2 + 32];
        let message_3 = &up[offer_end + 2 + 32..];
        let (answer, message_2) = down.split_at(ANSWER_LEN);
        assert_eq!(message_1.len(), 34);
        assert_eq!(message_2.len(), 195);
        assert_eq!(message_3.len(), 163);

        // The other frames of the worked example, as plaintext.
        for (frame, expected) in [
            (
                Frame::Credit {
                    channel: ChannelId(0x20),
                    messages: 64 - p2p::router::EARLY_CREDIT,
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

        let (i_send, i_recv) = i.session.split();
        let (r_send, r_recv) = r.session.split();
        let (mut i_read, i_write) = dialer.inner.into_split();
        let (mut r_read, r_write) = accepter.inner.into_split();

        // Dialer -> listener, nonce 0: Data on channel 0x20, "hello".
        let data = Frame::Data {
            channel: ChannelId(0x20),
            payload: Bytes::from_static(b"hello"),
        };
        let mut plain = BytesMut::new();
        encode_frame(&data, &mut plain);
        assert_eq!(hex(&plain), DATA_PLAINTEXT);
        let mut sink = NoiseSink::new(i_write, i_send);
        sink.send(&mut vec![data.clone()]).await.expect("send data");
        let mut data_wire = vec![0u8; 2 + plain.len() + TAG_LEN];
        r_read.read_exact(&mut data_wire).await.expect("read data");

        // Listener -> dialer, nonce 0: its Hello, in the protocol version
        // the router speaks. The ADR prints version 3: a new version
        // changes the Hello's bytes, and the ADR must say what changed.
        // (Version 3 lets the Hello ride in message 2 or 3 instead, as the
        // payload's bytes after the identity: these same plaintext bytes.)
        assert_eq!(
            p2p::router::PROTOCOL_VERSION,
            3,
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
                early_credit: p2p::router::EARLY_CREDIT,
            }],
            listen_addresses: Vec::new(),
            software_version: "switchyard/0.1.0".into(),
        }));
        let mut plain = BytesMut::new();
        encode_frame(&hello, &mut plain);
        assert_eq!(hex(&plain), HELLO_PLAINTEXT);
        let mut sink = NoiseSink::new(r_write, r_send);
        sink.send(&mut vec![hello.clone()])
            .await
            .expect("send hello");
        let mut hello_wire = vec![0u8; 2 + plain.len() + TAG_LEN];
        i_read
            .read_exact(&mut hello_wire)
            .await
            .expect("read hello");

        // Each side's stream opens what the other's sink sealed.
        let mut frames = Vec::new();
        let mut stream = NoiseStream::new(r_read, r_recv, 1024, &data_wire, &[]);
        stream.recv(&mut frames).await.expect("open data");
        assert_eq!(frames, vec![data]);
        let mut frames = Vec::new();
        let mut stream = NoiseStream::new(i_read, i_recv, 1024, &hello_wire, &[]);
        stream.recv(&mut frames).await.expect("open hello");
        assert_eq!(frames, vec![hello]);

        vec![
            ("OFFER", hex(offer)),
            ("ANSWER", hex(answer)),
            ("PROLOGUE", hex(&prologue("switchyard-test", offer, answer))),
            ("MESSAGE_1", hex(message_1)),
            ("MESSAGE_2", hex(message_2)),
            ("MESSAGE_3", hex(message_3)),
            ("HANDSHAKE_HASH", hex(&i.handshake_hash)),
            ("DATA_WIRE", hex(&data_wire)),
            ("HELLO_WIRE", hex(&hello_wire)),
        ]
    }

    fn check_vector(computed: &[(&str, String)], expected: &[(&str, &str)]) {
        let names: Vec<&str> = computed.iter().map(|c| c.0).collect();
        let wanted: Vec<&str> = expected.iter().map(|e| e.0).collect();
        assert_eq!(names, wanted);
        let report: Vec<String> = computed
            .iter()
            .map(|(name, value)| format!("{name} = {value}"))
            .collect();
        for ((name, value), (_, want)) in computed.iter().zip(expected) {
            assert_eq!(value, want, "{name}; computed:\n{}", report.join("\n"));
        }
    }

    /// The ChaCha suite's test vector (ADR 0004, section 13).
    #[tokio::test]
    async fn wire_spec_test_vector_chachapoly() {
        let computed = run_vector(&[ChaChaPoly], ChaChaPoly).await;
        check_vector(&computed, CHACHAPOLY);
    }

    /// The AES-GCM suite's test vector (ADR 0004, section 13).
    #[tokio::test]
    async fn wire_spec_test_vector_aesgcm() {
        let computed = run_vector(&[AesGcm, ChaChaPoly], AesGcm).await;
        check_vector(&computed, AESGCM);
    }

    /// The ADR prints the same vectors: each value appears in it once its
    /// line breaks and indentation are removed.
    #[test]
    fn wire_spec_test_vector_matches_the_adr() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../adr/0004-tcp-noise-wire-format.md"
        );
        let adr = std::fs::read_to_string(path).expect("the wire-format ADR");
        let adr: String = adr.chars().filter(|c| !c.is_whitespace()).collect();
        for (table, values) in [
            ("common", COMMON),
            ("chachapoly", CHACHAPOLY),
            ("aesgcm", AESGCM),
        ] {
            for (name, value) in values {
                assert!(adr.contains(value), "{table} {name} is not in {path}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_payloads_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = decode_identity(&bytes, b"key");
            // Protocol 3: identity ‖ Hello. Shorter than an identity is an
            // error; otherwise the split is exact and the rest is left to
            // the frame decoder (itself checked on arbitrary bytes).
            match split_payload(&bytes) {
                Ok((identity, rest)) => {
                    proptest::prop_assert_eq!(identity.len(), IDENTITY_PAYLOAD_LEN);
                    proptest::prop_assert_eq!(rest.len(), bytes.len() - IDENTITY_PAYLOAD_LEN);
                    let mut plain = bytes::BytesMut::from(rest);
                    let _ = p2p::transport::decode_frame(&mut plain, p2p::router::MAX_HELLO_SIZE);
                }
                Err(_) => proptest::prop_assert!(bytes.len() < IDENTITY_PAYLOAD_LEN),
            }
        }
    }
}
