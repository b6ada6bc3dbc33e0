//! What a peer did wrong, and what it costs its score: reported by the
//! router (malformed frames, flow-control violations) or by a reactor
//! (`ChannelSender::report`), charged by the peer manager.

use crate::channel::ChannelId;

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
