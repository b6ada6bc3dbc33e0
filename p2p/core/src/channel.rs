//! Typed channels: the way reactors talk to peers. This module holds the
//! channel's vocabulary (ids, descriptors, errors); the handles that send
//! and receive are `p2p::ChannelSender` and `p2p::ChannelReceiver`.
//!
//! A reactor opens a channel once (before the router starts) and gets a
//! `ChannelSender<M>` and a `ChannelReceiver<M>` for one Protobuf
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
//!   reactor consumes. `ChannelSender::send` waits for room;
//!   `ChannelSender::try_send` and `ChannelSender::broadcast` never wait.
//!   A stalled reactor on one channel stalls only that channel's senders.
//! * **Every drop is counted** in `switchyard_p2p_messages_dropped_total`
//!   with the channel and a `DropReason`.
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

use crate::identity::PeerId;

/// The largest `max_message_size` a channel may declare (16 MiB).
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

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
        if self.max_message_size == 0 || self.max_message_size > MAX_MESSAGE_SIZE {
            return bad(&format!(
                "max_message_size must be in 1..={}",
                MAX_MESSAGE_SIZE
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
