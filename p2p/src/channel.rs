//! Typed channels: the way reactors talk to peers.
//!
//! A reactor opens a channel once (before the router starts) and gets a
//! [`ChannelSender<M>`] and a [`ChannelReceiver<M>`] for one Protobuf
//! message type `M`. These are the promises:
//!
//! * **At most once.** Nothing above the transport retransmits: a message is
//!   delivered once or not at all.
//! * **FIFO per (peer, channel).** Priorities order channels against each
//!   other, never messages within a channel.
//! * **Priorities without starvation.** A connection's writer shares
//!   bandwidth between channels by deficit round robin over bytes, each
//!   channel's quantum proportional to its priority.
//! * **Backpressure per (peer, channel).** Each peer has its own bounded send
//!   queue per channel, and the remote grants credit per channel as its
//!   reactor consumes. [`ChannelSender::send`] waits for room;
//!   [`ChannelSender::try_send`] and [`ChannelSender::broadcast`] never wait.
//!   A stalled reactor on one channel stalls only that channel's senders.
//! * **Every drop is counted** in `switchyard_p2p_messages_dropped_total`
//!   with the channel and a [`DropReason`].
//!
//! What is dropped: messages queued for a peer when its connection ends
//! (`peer_gone`); `try_send`/`broadcast` to a full queue (`queue_full`);
//! sends to a peer that is not connected (`not_connected`) or does not serve
//! the channel (`unsupported`); inbound messages that are too large,
//! undecodable or on an unknown channel (and the peer is penalised); inbound
//! messages for a receiver that was dropped (`receiver_closed`).
//!
//! What an attacker can do: send garbage, which costs it score and
//! eventually a ban; fill the receive window we granted it on a channel,
//! which delays only its own messages on that channel. The window is
//! bounded in bytes too: a peer holds credit only as far as its share of
//! `RouterConfig::recv_bytes_per_peer` covers it at the channel's
//! `max_message_size`, so over all channels it can make us hold at most
//! that many bytes, however it reconnects.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use tokio::sync::mpsc;

use crate::identity::PeerId;
use crate::metrics::DropReason;
use crate::router::link::{Inbound, PushError};
use crate::router::shared::Shared;

/// Messages up to this size are encoded into a per-thread arena chunk.
const ARENA_MAX_MESSAGE: usize = 1024;
/// Size of one arena chunk.
const ARENA_CHUNK: usize = 16 * 1024;

thread_local! {
    static ENCODE_ARENA: std::cell::RefCell<bytes::BytesMut> =
        std::cell::RefCell::new(bytes::BytesMut::new());
}

/// Encodes `message` (of `size` bytes) into a `Bytes`.
///
/// Small messages share 16 KiB chunks allocated per thread: one allocation
/// (and one cross-thread free when the receiver drops it) per chunk instead
/// of per message, which halves the allocator traffic on the hot path. The
/// cost: a small message that a receiver keeps (e.g. a `bytes::Bytes` field
/// decoded without copying) keeps its chunk, at most 16 KiB, alive.
fn encode_small<M: Message>(message: &M, size: usize) -> Bytes {
    if size > ARENA_MAX_MESSAGE {
        return Bytes::from(message.encode_to_vec());
    }
    ENCODE_ARENA.with(|arena| {
        let mut arena = arena.borrow_mut();
        if arena.capacity() < size {
            *arena = bytes::BytesMut::with_capacity(ARENA_CHUNK);
        }
        match message.encode(&mut *arena) {
            Ok(()) => arena.split().freeze(),
            // Unreachable: the arena has room. Fall back rather than panic.
            Err(_) => {
                arena.clear();
                Bytes::from(message.encode_to_vec())
            }
        }
    })
}

/// A channel's number on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelId(pub u16);

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x}", self.0)
    }
}

/// Everything the router needs to know about a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelDescriptor {
    /// The channel's number; unique per router.
    pub id: ChannelId,
    /// A short name for logs and metrics (e.g. `"pex"`).
    pub name: &'static str,
    /// Share of bandwidth against other channels of the same peer (1–255;
    /// a channel of priority 4 gets four times the bytes of priority 1 when
    /// both are saturated).
    pub priority: u8,
    /// Messages queued per peer before `send` waits and `try_send` fails.
    pub send_queue: usize,
    /// Messages each peer may have in flight to us on this channel (the
    /// credit window), and so the receive buffer per peer.
    pub recv_buffer: usize,
    /// Largest encoded message accepted, in bytes, in either direction.
    pub max_message_size: usize,
}

impl ChannelDescriptor {
    /// A descriptor with common defaults: priority 1, queues of 64, 64 KiB
    /// messages.
    pub fn new(id: u16, name: &'static str) -> Self {
        Self {
            id: ChannelId(id),
            name,
            priority: 1,
            send_queue: 64,
            recv_buffer: 64,
            max_message_size: 64 * 1024,
        }
    }

    /// Checks the descriptor's values.
    pub fn validate(&self) -> Result<(), ChannelError> {
        let bad = |what: &str| {
            Err(ChannelError::InvalidDescriptor {
                name: self.name,
                reason: what.to_string(),
            })
        };
        if self.priority == 0 {
            return bad("priority must be at least 1");
        }
        if self.send_queue == 0 || self.send_queue > 1 << 20 {
            return bad("send_queue must be in 1..=1048576");
        }
        if self.recv_buffer == 0 || self.recv_buffer > 1 << 16 {
            return bad("recv_buffer must be in 1..=65536");
        }
        if self.max_message_size == 0 || self.max_message_size > crate::router::MAX_MESSAGE_SIZE {
            return bad(&format!(
                "max_message_size must be in 1..={}",
                crate::router::MAX_MESSAGE_SIZE
            ));
        }
        Ok(())
    }
}

/// A message received from a peer.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<M> {
    /// Who sent it.
    pub from: PeerId,
    /// The message.
    pub message: M,
}

/// Misbehaviour of a peer, reported by the router or by a reactor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// A message that did not decode.
    #[error("malformed message on channel {channel}: {detail}")]
    MalformedMessage {
        /// The channel's name.
        channel: &'static str,
        /// The decoder's complaint.
        detail: String,
    },
    /// A message on a channel we never announced.
    #[error("message on unknown channel {0}")]
    UnknownChannel(ChannelId),
    /// A message over the channel's limit.
    #[error("message of {size} bytes exceeds max_message_size {max} on channel {channel}")]
    MessageTooLarge {
        /// The channel's name.
        channel: &'static str,
        /// The message size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// More messages than the credit we granted.
    #[error("flow control violated on channel {0}")]
    FlowControlViolation(ChannelId),
    /// A broken protocol rule.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// A reactor's judgement: the peer sent something valid but wrong.
    #[error("misbehaviour on channel {channel}: {reason}")]
    Misbehaviour {
        /// The channel's name.
        channel: &'static str,
        /// What the peer did.
        reason: String,
        /// Score lost (a peer starts at 0 and is banned at the peer
        /// manager's `ban_threshold`, -100 by default).
        penalty: i64,
    },
}

impl PeerError {
    /// Score this error costs the peer.
    pub fn penalty(&self) -> i64 {
        match self {
            PeerError::MalformedMessage { .. } => 10,
            PeerError::UnknownChannel(_) => 10,
            PeerError::MessageTooLarge { .. } => 20,
            PeerError::FlowControlViolation(_) => 50,
            PeerError::Protocol(_) => 50,
            PeerError::Misbehaviour { penalty, .. } => *penalty,
        }
    }

    /// Whether the connection ends at once, whatever the score.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            PeerError::FlowControlViolation(_) | PeerError::Protocol(_)
        )
    }
}

/// Why a channel could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// Two channels with one id.
    #[error("channel {id} is already open as {existing:?}")]
    DuplicateId {
        /// The id.
        id: ChannelId,
        /// The name it was opened under first.
        existing: &'static str,
    },
    /// A descriptor with bad values.
    #[error("channel {name}: {reason}")]
    InvalidDescriptor {
        /// The channel's name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Why `send` failed. The message was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No connection to the peer.
    #[error("peer {0} is not connected")]
    NotConnected(PeerId),
    /// The peer did not announce this channel.
    #[error("peer {peer} does not serve channel {channel}")]
    Unsupported {
        /// The peer.
        peer: PeerId,
        /// The channel's name.
        channel: &'static str,
    },
    /// The encoded message exceeds the channel's limit.
    #[error("message of {size} bytes exceeds max_message_size {max} on channel {channel}")]
    TooLarge {
        /// The channel's name.
        channel: &'static str,
        /// The encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The router has shut down.
    #[error("router is shut down")]
    Closed,
}

/// Why `try_send` failed. The message was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError {
    /// The peer's send queue for this channel is full.
    #[error("send queue for peer {peer} on channel {channel} is full")]
    Full {
        /// The peer.
        peer: PeerId,
        /// The channel's name.
        channel: &'static str,
    },
    /// Any other reason, as for `send`.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// Who a broadcast reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastReport {
    /// Peers whose send queue took the message.
    pub queued: Vec<PeerId>,
    /// Peers whose send queue was full: the message was dropped for them.
    pub full: Vec<PeerId>,
    /// Peers that accept only smaller messages on this channel: the
    /// message was dropped for them.
    pub too_large: Vec<PeerId>,
}

/// The sending half of a typed channel. Cheap to clone.
pub struct ChannelSender<M> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) index: usize,
    pub(crate) descriptor: ChannelDescriptor,
    pub(crate) _message: PhantomData<fn(M)>,
}

impl<M> Clone for ChannelSender<M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            index: self.index,
            descriptor: self.descriptor.clone(),
            _message: PhantomData,
        }
    }
}

impl<M> fmt::Debug for ChannelSender<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelSender({})", self.descriptor.name)
    }
}

impl<M: Message> ChannelSender<M> {
    /// The channel's descriptor.
    pub fn descriptor(&self) -> &ChannelDescriptor {
        &self.descriptor
    }

    fn encode(&self, message: &M) -> Result<Bytes, SendError> {
        let size = message.encoded_len();
        if size > self.descriptor.max_message_size {
            self.shared
                .metrics
                .drop(self.descriptor.name, DropReason::TooLarge);
            return Err(SendError::TooLarge {
                channel: self.descriptor.name,
                size,
                max: self.descriptor.max_message_size,
            });
        }
        Ok(encode_small(message, size))
    }

    fn drop_for(&self, reason: DropReason) {
        self.shared.metrics.drop(self.descriptor.name, reason);
    }

    fn map_push_error(&self, peer: PeerId, size: usize, error: PushError) -> TrySendError {
        match error {
            PushError::TooLarge { max } => {
                self.drop_for(DropReason::TooLarge);
                SendError::TooLarge {
                    channel: self.descriptor.name,
                    size,
                    max,
                }
                .into()
            }
            PushError::Full => {
                self.drop_for(DropReason::QueueFull);
                TrySendError::Full {
                    peer,
                    channel: self.descriptor.name,
                }
            }
            PushError::Closed => {
                self.drop_for(DropReason::NotConnected);
                SendError::NotConnected(peer).into()
            }
            PushError::Unsupported => {
                self.drop_for(DropReason::Unsupported);
                SendError::Unsupported {
                    peer,
                    channel: self.descriptor.name,
                }
                .into()
            }
        }
    }

    /// Queues `message` for `peer`, waiting while the peer's queue for this
    /// channel is full (backpressure). Cancel-safe: if the future is dropped
    /// before it completes, the message was not queued.
    pub async fn send(&self, peer: PeerId, message: M) -> Result<(), SendError> {
        let payload = self.encode(&message)?;
        let Some(link) = self.shared.link(peer) else {
            self.drop_for(DropReason::NotConnected);
            return Err(if self.shared.is_shut_down() {
                SendError::Closed
            } else {
                SendError::NotConnected(peer)
            });
        };
        let size = payload.len();
        link.push(self.index, payload)
            .await
            .map_err(|e| match self.map_push_error(peer, size, e) {
                TrySendError::Send(e) => e,
                // `push` waits instead of reporting Full.
                TrySendError::Full { .. } => SendError::NotConnected(peer),
            })
    }

    /// Queues `message` for `peer` if there is room now; never waits.
    pub fn try_send(&self, peer: PeerId, message: M) -> Result<(), TrySendError> {
        let payload = self.encode(&message)?;
        let Some(link) = self.shared.link(peer) else {
            self.drop_for(DropReason::NotConnected);
            return Err(SendError::NotConnected(peer).into());
        };
        let size = payload.len();
        link.try_push(self.index, payload)
            .map_err(|e| self.map_push_error(peer, size, e))
    }

    /// Queues `message` for every connected peer that serves this channel,
    /// without waiting on any of them; says who took it and whose queue was
    /// full.
    pub fn broadcast(&self, message: M) -> BroadcastReport {
        let mut report = BroadcastReport::default();
        let Ok(payload) = self.encode(&message) else {
            return report;
        };
        for link in self.shared.links() {
            if !link.serves(self.index) {
                continue;
            }
            match link.try_push(self.index, payload.clone()) {
                Ok(()) => report.queued.push(link.peer),
                Err(PushError::Full) => {
                    self.drop_for(DropReason::QueueFull);
                    report.full.push(link.peer);
                }
                Err(PushError::TooLarge { .. }) => {
                    self.drop_for(DropReason::TooLarge);
                    report.too_large.push(link.peer);
                }
                // The link closed between the snapshot and the push.
                Err(PushError::Closed | PushError::Unsupported) => {
                    self.drop_for(DropReason::NotConnected);
                }
            }
        }
        report
    }

    /// Reports misbehaviour of `peer`: lowers its score, and may disconnect
    /// or ban it.
    pub fn report(&self, peer: PeerId, error: PeerError) {
        self.shared.report(peer, error);
    }
}

/// The receiving half of a typed channel.
pub struct ChannelReceiver<M> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) index: usize,
    pub(crate) descriptor: ChannelDescriptor,
    pub(crate) inbound: mpsc::Receiver<Inbound>,
    pub(crate) _message: PhantomData<fn() -> M>,
}

impl<M> fmt::Debug for ChannelReceiver<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelReceiver({})", self.descriptor.name)
    }
}

impl<M: Message + Default> ChannelReceiver<M> {
    /// The next message from any peer, or `None` once the router has shut
    /// down and every received message has been taken. Messages that do not
    /// decode are dropped, counted and reported, and `recv` goes on waiting.
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Envelope<M>> {
        loop {
            let inbound = tokio::select! {
                biased;
                inbound = self.inbound.recv() => inbound?,
                _ = self.shared.shutdown.cancelled() => self.inbound.try_recv().ok()?,
            };
            if let Some(envelope) = self.accept(inbound) {
                return Some(envelope);
            }
        }
    }

    /// The next message if one is waiting; never waits.
    pub fn try_recv(&mut self) -> Option<Envelope<M>> {
        while let Ok(inbound) = self.inbound.try_recv() {
            if let Some(envelope) = self.accept(inbound) {
                return Some(envelope);
            }
        }
        None
    }

    fn accept(&self, inbound: Inbound) -> Option<Envelope<M>> {
        inbound.link.consumed(self.index, inbound.payload.len());
        match M::decode(inbound.payload) {
            Ok(message) => Some(Envelope {
                from: inbound.link.peer,
                message,
            }),
            Err(e) => {
                self.shared
                    .metrics
                    .drop(self.descriptor.name, DropReason::Malformed);
                self.shared.report(
                    inbound.link.peer,
                    PeerError::MalformedMessage {
                        channel: self.descriptor.name,
                        detail: e.to_string(),
                    },
                );
                None
            }
        }
    }

    /// The channel's descriptor.
    pub fn descriptor(&self) -> &ChannelDescriptor {
        &self.descriptor
    }
}

impl<M> Drop for ChannelReceiver<M> {
    fn drop(&mut self) {
        self.inbound.close();
        while let Ok(inbound) = self.inbound.try_recv() {
            inbound.link.consumed(self.index, inbound.payload.len());
            self.shared
                .metrics
                .drop(self.descriptor.name, DropReason::ReceiverClosed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Blob {
        #[prost(bytes = "vec", tag = "1")]
        data: Vec<u8>,
    }

    proptest! {
        /// Arena encoding gives the same bytes as a plain encode, across
        /// chunk boundaries and for messages too big for the arena.
        #[test]
        fn arena_encoding_matches_plain_encoding(sizes in proptest::collection::vec(0usize..3000, 1..64)) {
            let mut encoded = Vec::new();
            for (i, size) in sizes.iter().enumerate() {
                let blob = Blob { data: vec![i as u8; *size] };
                encoded.push((blob.clone(), encode_small(&blob, blob.encoded_len())));
            }
            for (blob, bytes) in encoded {
                let plain = blob.encode_to_vec();
                prop_assert_eq!(bytes.as_ref(), plain.as_slice());
                prop_assert_eq!(Blob::decode(bytes).ok(), Some(blob));
            }
        }
    }
}
