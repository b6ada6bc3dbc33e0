//! An established Noise session over TCP: frames in, frames out.
//!
//! Each direction is a sequence of Noise transport messages, each sent as
//! `u16be(length) ‖ ciphertext` (at most 65,535 bytes, so at most 65,519
//! bytes of plaintext). The plaintexts, concatenated, are a stream of frames
//! (`p2p::transport::encode_frame`: a varint length, then the protobuf
//! `WireFrame`), so a frame may span Noise messages and one Noise message may
//! carry many frames. The writer packs everything the router hands it in one
//! call (whatever is queued) into as few Noise messages as fit and writes
//! them with one syscall: it batches what is waiting, and never waits to
//! batch.
//!
//! The reader checks a frame's announced length against `max_frame_size`
//! before it buffers the frame, so a peer cannot make us allocate more than
//! that plus one Noise message. Frames are views into the read buffers,
//! without a copy; a frame over 128 KiB keeps its buffer to itself, so a
//! small frame behind it cannot keep it alive once it is gone.

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use futures::future::BoxFuture;
use p2p::transport::{ConnectionError, Frame, FrameSink, FrameStream, decode_frame, encode_frame};
use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use snow::StatelessTransportState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::suite::CipherSuite;

/// Largest Noise message.
pub const MAX_NOISE_MESSAGE: usize = 65_535;
/// Authentication tag of each Noise message.
pub const TAG_LEN: usize = 16;
/// Largest plaintext in one Noise message.
pub const MAX_PLAINTEXT: usize = MAX_NOISE_MESSAGE - TAG_LEN;

/// Bytes on the wire for `plain` bytes of frames: each Noise message of at
/// most [`MAX_PLAINTEXT`] bytes adds its u16 length and its tag.
pub const fn sealed_len(plain: usize) -> usize {
    plain + plain.div_ceil(MAX_PLAINTEXT) * (2 + TAG_LEN)
}

/// The sink keeps its buffers between batches up to this capacity (the
/// router's batches are 256 KiB plus at most one message by default; this
/// leaves room for a batch of 1 MiB), and frees them after a bigger batch so
/// one huge message does not pin memory for the connection's lifetime.
const KEEP_CAPACITY: usize = sealed_len(1 << 20);

fn io(e: std::io::Error) -> ConnectionError {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted
        | std::io::ErrorKind::BrokenPipe
        | std::io::ErrorKind::UnexpectedEof => ConnectionError::Reset(e.to_string()),
        _ => ConnectionError::Io(e.to_string()),
    }
}

/// A received frame larger than this gets its buffer to itself: what
/// follows it is moved to a new one. Smaller frames share the buffers of
/// the reads they came in (at most a read, about 64 KiB, plus a Noise
/// message), which a small frame the router keeps may keep alive; that is
/// bounded by the messages the router keeps.
const LARGE_FRAME: usize = 2 * MAX_NOISE_MESSAGE;

/// The transport keys of an established session.
// One per connection, moved once: the size of ring's keys (544 bytes each)
// does not matter, and inline keys save an indirection per message.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Session {
    /// snow's transport state (the RustCrypto backend): seals and opens by
    /// copying into its output, then working in place.
    Snow(Arc<StatelessTransportState>),
    /// ring's AEAD of the suite (ChaCha20-Poly1305 or AES-256-GCM) with the
    /// keys of the handshake's split (the Ring backend): seals and opens in
    /// place in our own buffers. Same bytes on the wire as snow.
    Ring {
        /// Our sending key.
        send: RingKey,
        /// Our receiving key.
        recv: RingKey,
    },
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No key material.
        f.write_str(match self {
            Self::Snow(_) => "Session::Snow",
            Self::Ring { .. } => "Session::Ring",
        })
    }
}

impl Session {
    /// A ring session of `suite` from the raw split `(initiator →
    /// responder, responder → initiator)`.
    pub fn ring(
        suite: CipherSuite,
        initiator: bool,
        (i_to_r, r_to_i): ([u8; 32], [u8; 32]),
    ) -> Result<Self, ring::error::Unspecified> {
        let i_to_r = RingKey::new(suite, &i_to_r)?;
        let r_to_i = RingKey::new(suite, &r_to_i)?;
        Ok(if initiator {
            Self::Ring {
                send: i_to_r,
                recv: r_to_i,
            }
        } else {
            Self::Ring {
                send: r_to_i,
                recv: i_to_r,
            }
        })
    }

    /// The sending and the receiving cipher.
    pub fn split(self) -> (Cipher, Cipher) {
        match self {
            Self::Snow(state) => (Cipher::Snow(state.clone()), Cipher::Snow(state)),
            Self::Ring { send, recv } => (Cipher::Ring(send), Cipher::Ring(recv)),
        }
    }
}

/// One direction's cipher; snow's state knows which key is which direction
/// from our role.
#[allow(clippy::large_enum_variant)] // as for `Session`
pub(crate) enum Cipher {
    Snow(Arc<StatelessTransportState>),
    Ring(RingKey),
}

/// One direction's ring key, and how its suite spells a nonce.
pub(crate) struct RingKey {
    key: LessSafeKey,
    suite: CipherSuite,
}

impl RingKey {
    fn new(suite: CipherSuite, key: &[u8; 32]) -> Result<Self, ring::error::Unspecified> {
        let algorithm = match suite {
            CipherSuite::ChaChaPoly => &CHACHA20_POLY1305,
            CipherSuite::AesGcm => &AES_256_GCM,
        };
        Ok(Self {
            key: LessSafeKey::new(UnboundKey::new(algorithm, key)?),
            suite,
        })
    }

    /// Noise's nonce for counter `n`: 32 zero bits, then the counter
    /// little-endian for ChaChaPoly and big-endian for AESGCM (Noise
    /// specification, section 12).
    fn nonce(&self, n: u64) -> Nonce {
        let mut bytes = [0u8; 12];
        bytes[4..].copy_from_slice(&match self.suite {
            CipherSuite::ChaChaPoly => n.to_le_bytes(),
            CipherSuite::AesGcm => n.to_be_bytes(),
        });
        Nonce::assume_unique_for_key(bytes)
    }
}

impl From<Arc<StatelessTransportState>> for Cipher {
    fn from(state: Arc<StatelessTransportState>) -> Self {
        Self::Snow(state)
    }
}

/// The next nonce of `counter`. Noise reserves 2^64 - 1, so a direction
/// that has used every other nonce fails (and the connection closes) rather
/// than reuse one.
fn next_nonce(counter: &mut u64) -> Result<u64, ConnectionError> {
    let n = *counter;
    if n == u64::MAX {
        return Err(ConnectionError::Protocol(
            "noise nonces exhausted; the connection must be re-established".into(),
        ));
    }
    *counter = n + 1;
    Ok(n)
}

/// The sending half.
///
/// Frames are encoded straight into the wire buffer, between the length
/// header and the tag of the Noise message they land in, and sealed there
/// in place: a payload is copied once, from the router's `Bytes` into the
/// buffer the socket writes (the snow backend, which cannot seal in place,
/// copies once more).
pub(crate) struct NoiseSink {
    write: OwnedWriteHalf,
    cipher: Cipher,
    nonce: u64,
    /// Sealed Noise messages, then the plaintext of the one being filled.
    wire: Vec<u8>,
    /// Where the plaintext of the Noise message being filled starts in
    /// `wire`, if one is open.
    open: Option<usize>,
    /// A frame's encoding (a `Data` frame's head only).
    head: BytesMut,
    /// The snow backend's plaintext, sealed out of place.
    scratch: Vec<u8>,
}

impl NoiseSink {
    pub fn new(write: OwnedWriteHalf, cipher: impl Into<Cipher>) -> Self {
        Self {
            write,
            cipher: cipher.into(),
            nonce: 0,
            wire: Vec::new(),
            open: None,
            head: BytesMut::new(),
            scratch: Vec::new(),
        }
    }

    /// Appends `bytes` to the plaintext, opening Noise messages as it goes
    /// and sealing each one that is full.
    fn push(&mut self, mut bytes: &[u8]) -> Result<(), ConnectionError> {
        while !bytes.is_empty() {
            let start = match self.open {
                Some(start) => start,
                None => {
                    // The length, written when the message is sealed.
                    self.wire.extend_from_slice(&[0, 0]);
                    *self.open.insert(self.wire.len())
                }
            };
            let room = MAX_PLAINTEXT - (self.wire.len() - start);
            let n = room.min(bytes.len());
            self.wire.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.wire.len() - start == MAX_PLAINTEXT {
                self.seal_open()?;
            }
        }
        Ok(())
    }

    /// Seals the open Noise message in place, appends its tag and writes
    /// its length in front of it.
    fn seal_open(&mut self) -> Result<(), ConnectionError> {
        let Some(start) = self.open.take() else {
            return Ok(());
        };
        let nonce = next_nonce(&mut self.nonce)?;
        let plain = self.wire.len() - start;
        match &self.cipher {
            Cipher::Ring(key) => {
                let tag = key
                    .key
                    .seal_in_place_separate_tag(
                        key.nonce(nonce),
                        Aad::empty(),
                        &mut self.wire[start..],
                    )
                    .map_err(|_| ConnectionError::Protocol("noise encrypt failed".into()))?;
                self.wire.extend_from_slice(tag.as_ref());
            }
            Cipher::Snow(state) => {
                self.scratch.clear();
                self.scratch.extend_from_slice(&self.wire[start..]);
                self.wire.resize(start + plain + TAG_LEN, 0);
                let written = state
                    .write_message(nonce, &self.scratch, &mut self.wire[start..])
                    .map_err(|e| ConnectionError::Protocol(format!("noise encrypt: {e}")))?;
                debug_assert_eq!(written, plain + TAG_LEN);
            }
        }
        // At most MAX_NOISE_MESSAGE, so it fits in u16.
        let len = (plain + TAG_LEN) as u16;
        self.wire[start - 2..start].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// Encodes and seals `frames` into `wire`, as few Noise messages as
    /// they fit in.
    fn seal(&mut self, frames: &mut Vec<Frame>) -> Result<(), ConnectionError> {
        // One allocation at most per batch: at least the size (a frame's
        // head or a control frame is under 24 bytes).
        let plain: usize = frames.iter().map(|f| f.weight() + 16).sum();
        self.wire.reserve(sealed_len(plain));
        for frame in frames.drain(..) {
            self.head.clear();
            match &frame {
                Frame::Data { channel, payload } => {
                    p2p::transport::encode_data_head(*channel, payload.len(), &mut self.head);
                    let head = std::mem::take(&mut self.head);
                    let pushed = self.push(&head).and_then(|()| self.push(payload));
                    self.head = head;
                    pushed?;
                }
                other => {
                    encode_frame(other, &mut self.head);
                    let head = std::mem::take(&mut self.head);
                    let pushed = self.push(&head);
                    self.head = head;
                    pushed?;
                }
            }
        }
        self.seal_open()
    }

    async fn send_frames(&mut self, frames: &mut Vec<Frame>) -> Result<(), ConnectionError> {
        let sealed = self.seal(frames);
        let result = match sealed {
            Ok(()) => self.write.write_all(&self.wire).await.map_err(io),
            Err(e) => Err(e),
        };
        self.wire.clear();
        self.open = None;
        // Keep buffers from one huge batch from pinning memory forever.
        if self.wire.capacity() > KEEP_CAPACITY {
            self.wire = Vec::new();
        }
        if self.scratch.capacity() > MAX_PLAINTEXT {
            self.scratch = Vec::new();
        }
        result
    }
}

impl FrameSink for NoiseSink {
    fn send<'a>(
        &'a mut self,
        frames: &'a mut Vec<Frame>,
    ) -> BoxFuture<'a, Result<(), ConnectionError>> {
        Box::pin(self.send_frames(frames))
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.write.shutdown().await;
        })
    }
}

/// The receiving half.
pub(crate) struct NoiseStream {
    read: OwnedReadHalf,
    cipher: Cipher,
    nonce: u64,
    wire: BytesMut,
    plain: BytesMut,
    /// The largest frame accepted now.
    max_frame: usize,
    /// The transport's own limit (`max_frame_size`).
    frame_limit: usize,
}

impl NoiseStream {
    pub fn new(
        read: OwnedReadHalf,
        cipher: impl Into<Cipher>,
        max_frame: usize,
        leftover: &[u8],
        first: &[u8],
    ) -> Self {
        Self {
            read,
            cipher: cipher.into(),
            nonce: 0,
            wire: BytesMut::from(leftover),
            // Frames the remote sent inside the handshake (its `Hello`),
            // decoded first, under the frame limit of the first `recv`.
            plain: BytesMut::from(first),
            max_frame,
            frame_limit: max_frame,
        }
    }

    /// Decrypts every complete Noise message in `wire` into `plain`.
    fn open(&mut self) -> Result<(), ConnectionError> {
        loop {
            if self.wire.len() < 2 {
                return Ok(());
            }
            let len = usize::from(u16::from_be_bytes([self.wire[0], self.wire[1]]));
            if len < TAG_LEN {
                return Err(ConnectionError::Protocol(format!(
                    "noise message of {len} bytes is shorter than its tag"
                )));
            }
            if self.wire.len() < 2 + len {
                return Ok(());
            }
            let nonce = next_nonce(&mut self.nonce)?;
            let mut message = self.wire.split_to(2 + len);
            match &self.cipher {
                Cipher::Ring(key) => {
                    // Open in place, then hand the plaintext to `plain`:
                    // free if `plain` is empty, one copy otherwise.
                    let n = key
                        .key
                        .open_in_place(key.nonce(nonce), Aad::empty(), &mut message[2..])
                        .map_err(|_| ConnectionError::Protocol("noise decrypt failed".into()))?
                        .len();
                    message.advance(2);
                    message.truncate(n);
                    self.plain.unsplit(message);
                }
                Cipher::Snow(state) => {
                    let start = self.plain.len();
                    self.plain.resize(start + len - TAG_LEN, 0);
                    let n = state
                        .read_message(nonce, &message[2..], &mut self.plain[start..])
                        .map_err(|e| ConnectionError::Protocol(format!("noise decrypt: {e}")))?;
                    self.plain.truncate(start + n);
                }
            }
        }
    }

    async fn recv_frames(&mut self, out: &mut Vec<Frame>) -> Result<(), ConnectionError> {
        loop {
            self.open()?;
            while let Some(frame) = decode_frame(&mut self.plain, self.max_frame)? {
                let large = frame.weight() > LARGE_FRAME;
                out.push(frame);
                if large {
                    // A frame assembled across Noise messages has a buffer
                    // of its own, which frames decoded after it would share
                    // (and keep alive) if they went into its spare room.
                    // Start a new one with what follows it: at most a read.
                    self.plain = BytesMut::from(&self.plain[..]);
                }
            }
            if !out.is_empty() {
                return Ok(());
            }
            self.wire.reserve(64 * 1024);
            let n = self.read.read_buf(&mut self.wire).await.map_err(io)?;
            if n == 0 {
                return Err(if self.wire.is_empty() && self.plain.is_empty() {
                    ConnectionError::Closed
                } else {
                    ConnectionError::Reset("connection closed in the middle of a frame".into())
                });
            }
        }
    }
}

impl FrameStream for NoiseStream {
    fn recv<'a>(
        &'a mut self,
        out: &'a mut Vec<Frame>,
    ) -> BoxFuture<'a, Result<(), ConnectionError>> {
        Box::pin(self.recv_frames(out))
    }

    fn set_frame_limit(&mut self, limit: Option<usize>) {
        self.max_frame = limit.map_or(self.frame_limit, |l| l.min(self.frame_limit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;
    use p2p::channel::ChannelId;
    use snow::HandshakeState;
    use snow::resolvers::DefaultResolver;

    /// A finished XX handshake of `suite` on snow's pure-Rust resolver:
    /// (initiator, responder).
    fn handshake(suite: CipherSuite) -> (HandshakeState, HandshakeState) {
        let params: snow::params::NoiseParams = suite.noise_name().parse().expect("p");
        let build = |initiator: bool| {
            let builder = snow::Builder::with_resolver(params.clone(), Box::new(DefaultResolver));
            let key = builder.generate_keypair().expect("key");
            let builder = builder.local_private_key(&key.private).expect("private");
            if initiator {
                builder.build_initiator().expect("i")
            } else {
                builder.build_responder().expect("r")
            }
        };
        let (mut i, mut r) = (build(true), build(false));
        let (mut message, mut payload) = (vec![0u8; 1024], vec![0u8; 1024]);
        let n = i.write_message(&[], &mut message).expect("1");
        r.read_message(&message[..n], &mut payload).expect("1");
        let n = r.write_message(&[], &mut message).expect("2");
        i.read_message(&message[..n], &mut payload).expect("2");
        let n = i.write_message(&[], &mut message).expect("3");
        r.read_message(&message[..n], &mut payload).expect("3");
        assert!(i.is_handshake_finished() && r.is_handshake_finished());
        (i, r)
    }

    /// Frames of many sizes, one bigger than a Noise message can carry.
    fn frames() -> Vec<Frame> {
        [
            0usize, 1, 100, 5_000, 65_519, 65_520, 100_000, 7, 200_000, 3,
        ]
        .iter()
        .enumerate()
        .map(|(i, &len)| Frame::Data {
            channel: ChannelId(i as u16),
            payload: Bytes::from((0..len).map(|b| (b * 7 + i) as u8).collect::<Vec<u8>>()),
        })
        .collect()
    }

    async fn pair() -> (
        (OwnedReadHalf, OwnedWriteHalf),
        (OwnedReadHalf, OwnedWriteHalf),
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (dialed, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        (
            dialed.expect("connect").into_split(),
            accepted.expect("accept").0.into_split(),
        )
    }

    /// Sends `frames` in three batches through `sink`, receives them
    /// through `stream`, and checks they arrive whole and in order.
    async fn carry(mut sink: NoiseSink, mut stream: NoiseStream) {
        let sent = frames();
        let batches = vec![sent[..3].to_vec(), sent[3..7].to_vec(), sent[7..].to_vec()];
        let writer = tokio::spawn(async move {
            for mut batch in batches {
                sink.send(&mut batch).await.expect("send");
            }
            sink
        });
        let mut received = Vec::new();
        while received.len() < sent.len() {
            let mut out = Vec::new();
            stream.recv(&mut out).await.expect("recv");
            received.append(&mut out);
        }
        assert_eq!(received, sent);
        let sink = writer.await.expect("writer");
        // Several Noise messages per direction, nonces continuing across
        // batches.
        assert!(sink.nonce > 5, "{}", sink.nonce);
        assert_eq!(sink.nonce, stream.nonce);
    }

    /// ring's in-place path and snow's path produce and accept the same
    /// bytes, in both directions and both pairings, for each suite (so
    /// ring's nonces are Noise's: little-endian for ChaChaPoly, big-endian
    /// for AESGCM).
    #[tokio::test]
    async fn ring_and_snow_paths_interoperate() {
        for suite in CipherSuite::ALL {
            ring_and_snow_paths_interoperate_with(suite).await;
        }
    }

    async fn ring_and_snow_paths_interoperate_with(suite: CipherSuite) {
        let (mut i, mut r) = handshake(suite);
        let keys = i.dangerously_get_raw_split();
        assert_eq!(keys, r.dangerously_get_raw_split());
        let (
            Session::Ring {
                send: i_send,
                recv: i_recv,
            },
            Session::Ring {
                send: r_send,
                recv: r_recv,
            },
        ) = (
            Session::ring(suite, true, keys).expect("i"),
            Session::ring(suite, false, keys).expect("r"),
        )
        else {
            unreachable!("ring sessions");
        };
        let i_snow = Arc::new(i.into_stateless_transport_mode().expect("i"));
        let r_snow = Arc::new(r.into_stateless_transport_mode().expect("r"));
        let max = 1 << 20;

        // Initiator → responder: ring seals, snow opens; and the reverse.
        let ((_, i_write), (r_read, _)) = pair().await;
        carry(
            NoiseSink::new(i_write, Cipher::Ring(i_send)),
            NoiseStream::new(r_read, r_snow.clone(), max, &[], &[]),
        )
        .await;
        let ((_, i_write), (r_read, _)) = pair().await;
        carry(
            NoiseSink::new(i_write, i_snow.clone()),
            NoiseStream::new(r_read, Cipher::Ring(r_recv), max, &[], &[]),
        )
        .await;
        // Responder → initiator, both pairings.
        let ((i_read, _), (_, r_write)) = pair().await;
        carry(
            NoiseSink::new(r_write, Cipher::Ring(r_send)),
            NoiseStream::new(i_read, i_snow.clone(), max, &[], &[]),
        )
        .await;
        let ((i_read, _), (_, r_write)) = pair().await;
        carry(
            NoiseSink::new(r_write, r_snow),
            NoiseStream::new(i_read, Cipher::Ring(i_recv), max, &[], &[]),
        )
        .await;
    }

    #[test]
    fn the_last_nonce_is_never_used() {
        let mut counter = u64::MAX - 1;
        assert_eq!(next_nonce(&mut counter).ok(), Some(u64::MAX - 1));
        assert!(next_nonce(&mut counter).is_err());
        assert!(next_nonce(&mut counter).is_err());
    }

    #[test]
    fn sealed_len_counts_each_message() {
        assert_eq!(sealed_len(0), 0);
        assert_eq!(sealed_len(1), 1 + 18);
        assert_eq!(sealed_len(MAX_PLAINTEXT), MAX_NOISE_MESSAGE + 2);
        assert_eq!(
            sealed_len(MAX_PLAINTEXT + 1),
            MAX_NOISE_MESSAGE + 2 + 1 + 18
        );
    }
}
