//! The [`Transport`] trait: how the router gets authenticated connections.
//!
//! A transport listens, accepts and dials. Before it hands a [`Connection`]
//! to the router it has proven the remote [`PeerId`] (cryptographically for
//! TCP+Noise and QUIC; by the hub's word for the in-process memory
//! transport), and a dial of an address fails with
//! [`TransportError::WrongPeer`] when another key answers.
//!
//! A connection carries [`Frame`]s in order, reliably, in both directions:
//! `Hello` (the [`NodeInfo`](crate::proto::NodeInfo) exchange), `Data` (a
//! message on a channel), `Credit` (flow control) and `Goodbye`. The router
//! does all per-channel scheduling and credit accounting on top of that
//! (ADR 0002), so a transport is a frame pipe:
//!
//! * byte-stream transports (TCP) encode frames with [`encode_frame`] /
//!   [`decode_frame`] or their own layout, and check sizes before allocating;
//! * in-process transports pass `Frame` values without encoding;
//! * stream-multiplexing transports (QUIC, libp2p) may put each channel's
//!   `Data` on its own native stream and turn `Credit` into stream
//!   read-allowance, as long as they keep per-channel order.
//!
//! Sizes: a transport must refuse (with [`ConnectionError::FrameTooLarge`])
//! any frame longer than its configured maximum *before* allocating it; the
//! router additionally checks each `Data` payload against its channel's
//! `max_message_size`.

use std::fmt;
use std::net::IpAddr;

use bytes::{Buf, Bytes, BytesMut};
use futures::future::BoxFuture;
use prost::Message;

use crate::address::PeerAddress;
use crate::channel::ChannelId;
use crate::identity::PeerId;
pub use crate::peer_manager::Direction;
use crate::proto;

pub use crate::proto::GoodbyeReason;

/// One unit on a connection.
#[derive(Clone, PartialEq)]
pub enum Frame {
    /// The first frame in each direction: who I am and what I serve.
    Hello(Box<proto::NodeInfo>),
    /// A message on a channel.
    Data {
        /// The channel.
        channel: ChannelId,
        /// The encoded message.
        payload: Bytes,
    },
    /// The receiver consumed `messages` more messages on `channel`.
    Credit {
        /// The channel.
        channel: ChannelId,
        /// How many more messages the sender may send.
        messages: u32,
    },
    /// The last frame: why the connection ends.
    Goodbye(proto::Goodbye),
    /// Keepalive: answer with a pong carrying the same nonce.
    Ping(u64),
    /// Keepalive answer.
    Pong(u64),
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Hello(info) => write!(f, "Hello(network={:?})", info.network_id),
            Frame::Data { channel, payload } => {
                write!(f, "Data({channel}, {} bytes)", payload.len())
            }
            Frame::Credit { channel, messages } => write!(f, "Credit({channel}, {messages})"),
            Frame::Goodbye(g) => write!(f, "Goodbye({:?}, {:?})", g.reason(), g.detail),
            Frame::Ping(nonce) => write!(f, "Ping({nonce})"),
            Frame::Pong(nonce) => write!(f, "Pong({nonce})"),
        }
    }
}

impl Frame {
    /// A goodbye frame.
    pub fn goodbye(reason: GoodbyeReason, detail: impl Into<String>) -> Self {
        Frame::Goodbye(proto::Goodbye {
            reason: reason as i32,
            detail: detail.into(),
            ban_seconds: 0,
        })
    }

    /// A `Banned` goodbye saying how long the ban lasts (rounded up to a
    /// whole second), so the banned peer waits that long before it dials
    /// again.
    pub fn banned(detail: impl Into<String>, remaining: Option<std::time::Duration>) -> Self {
        let ban_seconds = remaining.map_or(0, |d| {
            d.as_secs()
                .saturating_add(u64::from(d.subsec_nanos() > 0))
                .max(1)
        });
        Frame::Goodbye(proto::Goodbye {
            reason: GoodbyeReason::Banned as i32,
            detail: detail.into(),
            ban_seconds,
        })
    }

    /// The frame's encoded size, without its length prefix: what
    /// [`decode_frame`]'s limit is checked against.
    pub fn encoded_len(&self) -> usize {
        prost::Message::encoded_len(&self.to_wire())
    }

    /// The protobuf form.
    pub fn to_wire(&self) -> proto::WireFrame {
        use proto::wire_frame::Kind;
        let kind = match self {
            Frame::Hello(info) => Kind::Hello((**info).clone()),
            Frame::Data { channel, payload } => Kind::Data(proto::Data {
                channel: u32::from(channel.0),
                payload: payload.clone(),
            }),
            Frame::Credit { channel, messages } => Kind::Credit(proto::Credit {
                channel: u32::from(channel.0),
                messages: *messages,
            }),
            Frame::Goodbye(g) => Kind::Goodbye(g.clone()),
            Frame::Ping(nonce) => Kind::Ping(proto::Ping { nonce: *nonce }),
            Frame::Pong(nonce) => Kind::Pong(proto::Pong { nonce: *nonce }),
        };
        proto::WireFrame { kind: Some(kind) }
    }

    /// From the protobuf form, checking channel ids fit.
    pub fn from_wire(wire: proto::WireFrame) -> Result<Self, ConnectionError> {
        use proto::wire_frame::Kind;
        let channel = |id: u32| {
            u16::try_from(id)
                .map(ChannelId)
                .map_err(|_| ConnectionError::Protocol(format!("channel id {id} exceeds 65535")))
        };
        match wire.kind {
            Some(Kind::Hello(info)) => Ok(Frame::Hello(Box::new(info))),
            Some(Kind::Data(d)) => Ok(Frame::Data {
                channel: channel(d.channel)?,
                payload: d.payload,
            }),
            Some(Kind::Credit(c)) => Ok(Frame::Credit {
                channel: channel(c.channel)?,
                messages: c.messages,
            }),
            Some(Kind::Goodbye(g)) => Ok(Frame::Goodbye(g)),
            Some(Kind::Ping(p)) => Ok(Frame::Ping(p.nonce)),
            Some(Kind::Pong(p)) => Ok(Frame::Pong(p.nonce)),
            None => Err(ConnectionError::Protocol("empty frame".into())),
        }
    }

    /// Bytes this frame accounts for in queues (payload for data, a small
    /// constant otherwise).
    pub fn weight(&self) -> usize {
        match self {
            Frame::Data { payload, .. } => payload.len() + 8,
            _ => 16,
        }
    }
}

/// Appends `frame` as a varint length followed by its protobuf encoding.
pub fn encode_frame(frame: &Frame, out: &mut BytesMut) {
    let wire = frame.to_wire();
    let len = wire.encoded_len();
    out.reserve(len + 10);
    prost::encoding::encode_varint(len as u64, out);
    // Encoding into a buffer with enough room reserved cannot fail.
    let _ = wire.encode(out);
}

/// Appends the bytes [`encode_frame`] would write for a `Data` frame on
/// `channel` with a payload of `payload_len` bytes, all but the payload
/// itself: followed by the payload, they are exactly that encoding. A
/// transport that can send several buffers at once (QUIC) sends a large
/// payload from the message's own `Bytes` this way, without copying it
/// into the frame.
pub fn encode_data_head(channel: ChannelId, payload_len: usize, out: &mut BytesMut) {
    use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
    // `Data { channel = 1 (varint), payload = 2 (bytes) }`; proto3 leaves
    // out a zero channel and an empty payload, as prost does.
    let channel = u64::from(channel.0);
    let mut data_len = 0;
    if channel != 0 {
        data_len += key_len(1) + encoded_len_varint(channel);
    }
    if payload_len != 0 {
        data_len += key_len(2) + encoded_len_varint(payload_len as u64) + payload_len;
    }
    // `WireFrame { oneof kind { Data data = 2 } }`.
    let frame_len = key_len(2) + encoded_len_varint(data_len as u64) + data_len;
    out.reserve(frame_len - payload_len + 10);
    encode_varint(frame_len as u64, out);
    encode_key(2, WireType::LengthDelimited, out);
    encode_varint(data_len as u64, out);
    if channel != 0 {
        encode_key(1, WireType::Varint, out);
        encode_varint(channel, out);
    }
    if payload_len != 0 {
        encode_key(2, WireType::LengthDelimited, out);
        encode_varint(payload_len as u64, out);
    }
}

/// Frames up to this size are copied out of the read buffer by
/// [`decode_frame`], so that what a reactor retains of them is their own
/// bytes (ADR 0002, "What received bytes pin").
pub const COPY_FRAMES_UP_TO: usize = 16 * 1024;

/// Takes one length-delimited frame from the front of `buf`, if it is all
/// there. The length is checked against `max_frame` before anything is
/// allocated or awaited, so a peer announcing a huge frame is refused at once.
/// A frame of up to [`COPY_FRAMES_UP_TO`] bytes is copied out of `buf`.
pub fn decode_frame(
    buf: &mut BytesMut,
    max_frame: usize,
) -> Result<Option<Frame>, ConnectionError> {
    let mut peek = &buf[..];
    let len = match prost::encoding::decode_varint(&mut peek) {
        Ok(len) => len,
        // Not enough bytes for the varint yet (a varint is at most 10 bytes).
        Err(_) if buf.len() < 10 => return Ok(None),
        Err(e) => return Err(ConnectionError::Protocol(format!("bad frame length: {e}"))),
    };
    if len > max_frame as u64 {
        return Err(ConnectionError::FrameTooLarge {
            size: len,
            max: max_frame,
        });
    }
    let header = buf.len() - peek.len();
    let len = len as usize;
    if peek.len() < len {
        return Ok(None);
    }
    buf.advance(header);
    // A small frame is copied out of the read buffer: a message a reactor
    // keeps (gossip keeps payloads for tens of seconds) then holds its own
    // bytes, not the whole read buffer it arrived in (64 KiB for a frame
    // of 100 bytes), and the buffer is reused for the next read. A larger
    // frame keeps its slice: it is most of what it pins.
    let body = if len <= COPY_FRAMES_UP_TO {
        let body = Bytes::copy_from_slice(&buf[..len]);
        buf.advance(len);
        body
    } else {
        buf.split_to(len).freeze()
    };
    let wire = proto::WireFrame::decode(body)
        .map_err(|e| ConnectionError::Protocol(format!("undecodable frame: {e}")))?;
    Frame::from_wire(wire).map(Some)
}

/// Our `Hello`, encoded as a frame, for a transport that carries it in its
/// own handshake ([`Transport::carry_hello`]): empty until the router sets
/// it. Cheap to clone; every clone sees the latest `Hello`.
#[derive(Debug, Clone, Default)]
pub struct CarriedHello(std::sync::Arc<parking_lot::RwLock<Bytes>>);

impl CarriedHello {
    /// Keeps `hello`'s encoding for the handshakes to come.
    pub fn set(&self, hello: &Frame) {
        let mut encoded = BytesMut::new();
        encode_frame(hello, &mut encoded);
        *self.0.write() = encoded.freeze();
    }

    /// The encoded `Hello`, or empty bytes before [`set`](Self::set).
    pub fn get(&self) -> Bytes {
        self.0.read().clone()
    }
}

/// The sending half of a connection.
pub trait FrameSink: Send + 'static {
    /// Sends every frame in `frames`, in order, draining the vector. Waits
    /// while the transport has no room (that wait is the transport's own
    /// backpressure, below the router's credit).
    fn send<'a>(
        &'a mut self,
        frames: &'a mut Vec<Frame>,
    ) -> BoxFuture<'a, Result<(), ConnectionError>>;

    /// Flushes and closes the sending direction.
    fn close(&mut self) -> BoxFuture<'_, ()>;
}

/// The receiving half of a connection.
pub trait FrameStream: Send + 'static {
    /// Waits for at least one frame and appends every frame that is ready to
    /// `out`. Returns [`ConnectionError::Closed`] at a clean end of stream.
    fn recv<'a>(
        &'a mut self,
        out: &'a mut Vec<Frame>,
    ) -> BoxFuture<'a, Result<(), ConnectionError>>;

    /// Lowers the largest frame this stream accepts to `limit`, or with
    /// `None` restores the transport's own limit. The router reads a
    /// peer's `Hello` under [`MAX_HELLO_SIZE`](crate::router::MAX_HELLO_SIZE),
    /// so a peer that has not been admitted cannot make it buffer a large
    /// frame. A frame over the limit fails [`recv`](Self::recv) with
    /// [`ConnectionError::FrameTooLarge`] before its body is buffered.
    fn set_frame_limit(&mut self, limit: Option<usize>);
}

/// An authenticated connection, before the `Hello` exchange.
pub struct Connection {
    /// The remote peer, proven by the transport.
    pub remote: PeerId,
    /// The dialed address (outbound) or the remote's observed address
    /// (inbound), if the transport knows one.
    pub remote_address: Option<PeerAddress>,
    /// The remote IP, for per-IP limits.
    pub remote_ip: Option<IpAddr>,
    /// Who dialed.
    pub direction: Direction,
    /// Whether the transport already sent our `Hello` inside its own
    /// handshake (see [`Transport::carry_hello`]); the router then does not
    /// send it again. The remote's `Hello`, when it came that way, is the
    /// first frame `stream` yields.
    pub hello_sent: bool,
    /// Frames to the remote.
    pub sink: Box<dyn FrameSink>,
    /// Frames from the remote.
    pub stream: Box<dyn FrameStream>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("remote", &self.remote)
            .field("remote_address", &self.remote_address)
            .field("direction", &self.direction)
            .field("hello_sent", &self.hello_sent)
            .finish_non_exhaustive()
    }
}

/// A way to reach peers: listens, accepts and dials.
pub trait Transport: Send + Sync + 'static {
    /// The address scheme this transport dials (`"memory"`, `"tcp"`, ...).
    fn scheme(&self) -> &'static str;

    /// The addresses this transport listens on.
    fn listen_addresses(&self) -> Vec<PeerAddress>;

    /// Waits for the next authenticated inbound connection.
    /// [`TransportError::Closed`] means no connection will ever come again;
    /// any other error concerns one attempt and the router keeps accepting.
    fn accept(&self) -> BoxFuture<'_, Result<Connection, TransportError>>;

    /// Connects to `address` and proves that `address.peer` answered.
    fn dial<'a>(
        &'a self,
        address: &'a PeerAddress,
    ) -> BoxFuture<'a, Result<Connection, TransportError>>;

    /// Our `Hello`, for a transport that can carry it inside its own
    /// handshake and so save the round trip of a separate exchange (TCP
    /// sends it in Noise message 2 or 3). The router calls this before it
    /// accepts or dials, and again whenever its `Hello` changes. A
    /// transport that carries it sets [`Connection::hello_sent`]; one that
    /// cannot (the default does nothing) leaves it to the router.
    fn carry_hello(&self, _hello: &Frame) {}

    /// The connections this transport refused or closed on its own, before
    /// [`accept`](Self::accept) (its own handshake limits), by reason; the
    /// router adds them to `handshakes_refused_total`. `None` (the
    /// default) for a transport that refuses nothing on its own.
    fn refusal_counts(&self) -> Option<RefusalCounts> {
        None
    }
}

/// Why a transport refused or closed a connection before it became a
/// [`Connection`]: the `reason` label of
/// `switchyard_p2p_handshakes_refused_total` (see [`crate::metrics`]), the
/// same label the router uses for the same cause at its own stage.
///
/// A transport reports it in [`TransportError::Refused`] (from
/// [`Transport::accept`], or from a dial) and counts the connections it
/// closes on its own, without an `accept`, in its [`RefusalCounts`]
/// ([`Transport::refusal_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Refusal {
    /// Handshakes in progress from the remote's network (IPv4 /24, IPv6
    /// /48) were at their limit.
    TooManyHandshakesFromPrefix,
    /// Handshakes in progress were at their limit.
    TooManyHandshakes,
    /// The handshake did not finish within its deadline.
    HandshakeTimeout,
    /// The handshake failed: bytes that are not our handshake, a bad
    /// identity proof, a handshake message over the limit.
    BadHandshake,
    /// The remote is on another network id (or speaks another protocol
    /// version): the handshake, which binds both, cannot complete.
    NetworkMismatch,
    /// The remote offered no cipher suite we accept (TCP's suite
    /// preamble, ADR 0004 §2a).
    NoCommonSuite,
    /// The connection failed before the handshake got anywhere (the remote
    /// connected and closed, or reset).
    Io,
    /// The transport finished the handshake but the router did not take the
    /// connection in time (its accept queue stayed full): closed.
    AcceptBacklog,
}

impl Refusal {
    /// Every reason, in label order of the metrics docs.
    pub const ALL: [Refusal; 8] = [
        Refusal::TooManyHandshakesFromPrefix,
        Refusal::TooManyHandshakes,
        Refusal::HandshakeTimeout,
        Refusal::BadHandshake,
        Refusal::NetworkMismatch,
        Refusal::NoCommonSuite,
        Refusal::Io,
        Refusal::AcceptBacklog,
    ];

    /// The metric label (`"network_mismatch"`).
    pub fn label(self) -> &'static str {
        match self {
            Refusal::TooManyHandshakesFromPrefix => "too_many_handshakes_from_prefix",
            Refusal::TooManyHandshakes => "too_many_handshakes",
            Refusal::HandshakeTimeout => "handshake_timeout",
            Refusal::BadHandshake => "bad_handshake",
            Refusal::NetworkMismatch => "network_mismatch",
            Refusal::NoCommonSuite => "no_common_suite",
            Refusal::Io => "io",
            Refusal::AcceptBacklog => "accept_backlog",
        }
    }

    fn index(self) -> usize {
        Refusal::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Connections a transport refused or closed on its own, by [`Refusal`]:
/// those that never reach [`Transport::accept`] (its handshake limits were
/// full, so it closed the socket at once). Cheap to clone; clones share the
/// counts. The router adds them to `handshakes_refused_total`.
#[derive(Debug, Clone, Default)]
pub struct RefusalCounts {
    counts: std::sync::Arc<[std::sync::atomic::AtomicU64; Refusal::ALL.len()]>,
}

impl RefusalCounts {
    /// Counts one refusal.
    pub fn count(&self, reason: Refusal) {
        self.counts[reason.index()].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Refusals counted so far for `reason`.
    pub fn get(&self, reason: Refusal) -> u64 {
        self.counts[reason.index()].load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Why a transport could not accept or dial.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The transport is closed: no more connections.
    #[error("transport closed")]
    Closed,
    /// A different key answered the dial.
    #[error("dialed {expected} but {actual} answered")]
    WrongPeer {
        /// The PeerId the address named.
        expected: PeerId,
        /// The PeerId that answered.
        actual: PeerId,
    },
    /// Nobody answered, or the remote refused.
    #[error("{address} unreachable: {reason}")]
    Unreachable {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
    /// The address is for another transport.
    #[error("this transport cannot dial {0}")]
    UnsupportedAddress(String),
    /// The transport handshake failed.
    #[error("handshake with {remote} failed: {reason}")]
    Handshake {
        /// Who we were talking to (an address or an IP).
        remote: String,
        /// Why.
        reason: String,
    },
    /// An I/O error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The connection was refused or failed before it was authenticated,
    /// for a reason the router counts under its own label (a wrong network
    /// id, a bad handshake, a deadline, a full limit).
    #[error("{remote}: {detail} ({reason})")]
    Refused {
        /// Who we were talking to (an address or an IP).
        remote: String,
        /// Why, as a metric label.
        reason: Refusal,
        /// Words for the log.
        detail: String,
    },
}

impl TransportError {
    /// The `handshakes_refused_total` label of an `accept` that failed
    /// this way: a [`Refusal`]'s label, `bad_handshake` for another
    /// handshake failure, `accept_error` for anything else.
    pub fn refusal_label(&self) -> &'static str {
        match self {
            TransportError::Refused { reason, .. } => reason.label(),
            TransportError::Handshake { .. } | TransportError::WrongPeer { .. } => "bad_handshake",
            _ => "accept_error",
        }
    }

    /// The refusal reason, if the transport gave one.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            TransportError::Refused { reason, .. } => Some(*reason),
            _ => None,
        }
    }
}

/// Why a connection failed or ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    /// The remote closed the connection cleanly.
    #[error("connection closed")]
    Closed,
    /// The remote said goodbye.
    #[error("remote said goodbye: {reason:?} {detail}")]
    Goodbye {
        /// The remote's reason.
        reason: GoodbyeReason,
        /// The remote's words.
        detail: String,
    },
    /// A frame exceeded the limit.
    #[error("frame of {size} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The announced size.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// The remote's partial frames, over all the streams of the
    /// connection, exceeded what the transport buffers while it reassembles
    /// frames (QUIC's `max_reassembly_bytes`).
    #[error("partial frames of {size} bytes exceed the reassembly budget of {max}")]
    ReassemblyTooLarge {
        /// Bytes of partial frames buffered.
        size: u64,
        /// The budget.
        max: usize,
    },
    /// The remote broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The link broke.
    #[error("connection reset: {0}")]
    Reset(String),
    /// A deadline passed.
    #[error("timed out: {0}")]
    Timeout(String),
    /// An I/O error.
    #[error("i/o: {0}")]
    Io(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_the_codec() {
        let frames = vec![
            Frame::Data {
                channel: ChannelId(7),
                payload: Bytes::from_static(b"hello"),
            },
            Frame::Credit {
                channel: ChannelId(7),
                messages: 32,
            },
            Frame::goodbye(GoodbyeReason::Shutdown, "bye"),
            Frame::Ping(u64::MAX),
            Frame::Pong(7),
        ];
        let mut buf = BytesMut::new();
        for f in &frames {
            encode_frame(f, &mut buf);
        }
        let mut out = Vec::new();
        while let Some(f) = decode_frame(&mut buf, 1024).expect("decode") {
            out.push(f);
        }
        assert_eq!(out, frames);
        assert!(buf.is_empty());
    }

    #[test]
    fn a_data_head_and_its_payload_are_the_frame_encoding() {
        for channel in [0u16, 1, 0x10, 300, u16::MAX] {
            for len in [0usize, 1, 127, 128, 16_383, 16_384, 65_536, 2_097_152] {
                let frame = Frame::Data {
                    channel: ChannelId(channel),
                    payload: Bytes::from(vec![7u8; len]),
                };
                let mut whole = BytesMut::new();
                encode_frame(&frame, &mut whole);
                let mut split = BytesMut::new();
                encode_data_head(ChannelId(channel), len, &mut split);
                split.extend_from_slice(&vec![7u8; len]);
                assert_eq!(whole, split, "channel {channel}, {len} bytes");
            }
        }
    }

    #[test]
    fn frames_are_small_so_idle_batches_cost_little() {
        // Hello is boxed: a frame is a data frame's size.
        assert!(
            std::mem::size_of::<Frame>() <= 48,
            "{}",
            std::mem::size_of::<Frame>()
        );
    }

    #[test]
    fn oversized_frame_is_refused_from_its_length_alone() {
        let mut buf = BytesMut::new();
        prost::encoding::encode_varint(10 * 1024 * 1024, &mut buf);
        let err = decode_frame(&mut buf, 64 * 1024).expect_err("too large");
        assert!(matches!(err, ConnectionError::FrameTooLarge { .. }));
    }

    #[test]
    fn partial_frame_waits_and_garbage_is_an_error() {
        let mut buf = BytesMut::new();
        encode_frame(
            &Frame::Data {
                channel: ChannelId(1),
                payload: Bytes::from_static(b"abc"),
            },
            &mut buf,
        );
        let mut half = buf.split_to(buf.len() - 1);
        assert_eq!(decode_frame(&mut half, 1024), Ok(None));
        let mut garbage = BytesMut::from(&[3u8, 0xff, 0xff, 0xff][..]);
        assert!(decode_frame(&mut garbage, 1024).is_err());
        let mut big_channel = BytesMut::new();
        let wire = proto::WireFrame {
            kind: Some(proto::wire_frame::Kind::Credit(proto::Credit {
                channel: 70_000,
                messages: 1,
            })),
        };
        prost::encoding::encode_varint(wire.encoded_len() as u64, &mut big_channel);
        wire.encode(&mut big_channel).expect("encode");
        assert!(decode_frame(&mut big_channel, 1024).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = decode_frame(&mut buf, 128) {}
        }
    }
}

#[cfg(test)]
mod pinning_tests {
    use super::*;
    use crate::channel::ChannelId;

    /// The load test's case: small messages, each arriving in its own read
    /// into a 64 KiB buffer, kept by the application. Each must hold only
    /// its own bytes; before, each held the whole read buffer (200 msg/s
    /// kept 30 s pinned about 390 MB).
    #[test]
    fn small_frames_kept_after_decoding_hold_only_their_own_bytes() {
        let mut buf = BytesMut::new();
        let mut kept = Vec::new();
        for i in 0..100u8 {
            buf.reserve(64 * 1024);
            let frame = Frame::Data {
                channel: ChannelId(7),
                payload: Bytes::from(vec![i; 100]),
            };
            encode_frame(&frame, &mut buf);
            let Some(Frame::Data { payload, .. }) =
                decode_frame(&mut buf, 1 << 20).expect("decodes")
            else {
                panic!("a data frame");
            };
            // The only reference to its storage, while the read buffer lives.
            assert!(payload.is_unique(), "frame {i} shares the read buffer");
            assert_eq!(payload.len(), 100);
            kept.push(payload);
        }
        // A large frame keeps its slice (it is most of what it pins).
        let big = Frame::Data {
            channel: ChannelId(7),
            payload: Bytes::from(vec![1; COPY_FRAMES_UP_TO + 1]),
        };
        encode_frame(&big, &mut buf);
        encode_frame(&big, &mut buf);
        let Some(Frame::Data { payload, .. }) = decode_frame(&mut buf, 1 << 20).expect("decodes")
        else {
            panic!("a data frame");
        };
        assert!(!payload.is_unique(), "a large frame is not copied");
    }
}
