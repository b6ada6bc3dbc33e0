//! What the peer manager decides about a connection or a report.

use std::fmt;
use std::time::Instant;

use crate::identity::PeerId;

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// The remote peer dialed us.
    Inbound,
    /// We dialed the remote peer.
    Outbound,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        })
    }
}

/// The verdict on an authenticated connection
/// ([`PeerManager::dialed`](super::PeerManager::dialed),
/// [`PeerManager::accepted`](super::PeerManager::accepted)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Keep the connection. If `evict` is set, the caller must disconnect that
    /// peer (its slot is already given to the newcomer) and then report it
    /// with [`PeerManager::disconnected`](super::PeerManager::disconnected).
    Admit {
        /// A connected peer to disconnect to make room.
        evict: Option<PeerId>,
    },
    /// Close the connection, saying why.
    Reject(RejectReason),
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RejectReason {
    /// The peer is banned until its ban expires.
    #[error("peer is banned")]
    Banned,
    /// The remote peer is this node.
    #[error("connection to ourselves")]
    SelfConnection,
    /// The peer already has a connection (or one being evicted); the router
    /// resolves simultaneous dials itself.
    #[error("peer is already connected")]
    AlreadyConnected,
    /// Inbound connections are at `max_inbound` and the peer outranks no
    /// connected non-persistent inbound peer.
    #[error(
        "inbound connections are full (max_inbound) and the peer outranks no connected inbound peer"
    )]
    InboundFull,
    /// Outbound connections are at `max_outbound` and no connected
    /// non-persistent outbound peer can make room.
    #[error("outbound connections are full (max_outbound)")]
    OutboundFull,
    /// The peer's network (IPv4 /24, IPv6 /48) already has
    /// `max_inbound_per_prefix` inbound connections.
    #[error("too many inbound connections from this network (max_inbound_per_prefix)")]
    PrefixLimit,
    /// The peer's network is banned for repeated offences
    /// (`prefix_ban_threshold`).
    #[error("the peer's network is banned")]
    PrefixBanned,
    /// The peer's score is at `disconnect_threshold` or below: it was
    /// disconnected for it, and stays out until the score decays above the
    /// threshold (persistent peers are exempt).
    #[error("the peer's score is at or below disconnect_threshold")]
    LowScore,
}

impl RejectReason {
    /// A stable label for metrics (`"prefix_limit"`).
    pub fn label(&self) -> &'static str {
        match self {
            RejectReason::Banned => "banned",
            RejectReason::SelfConnection => "self_connection",
            RejectReason::AlreadyConnected => "already_connected",
            RejectReason::InboundFull => "inbound_full",
            RejectReason::OutboundFull => "outbound_full",
            RejectReason::PrefixLimit => "prefix_limit",
            RejectReason::PrefixBanned => "prefix_banned",
            RejectReason::LowScore => "low_score",
        }
    }
}

/// How a remote refused our connection, by its goodbye: what the peer
/// manager makes of it ([`PeerManager::remote_refused`](super::PeerManager::remote_refused)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteRefusal {
    /// `Banned`: do not dial it again before the ban ends (`remaining`, if
    /// it said; else `max_retry`).
    Banned {
        /// How long the remote said the ban lasts.
        remaining: Option<std::time::Duration>,
    },
    /// `Rejected` or `Duplicate` as its first word after `Hello`: it
    /// refused the connection at admission (full, our score, a connection
    /// it already has): a failed dial, with exponential backoff.
    Rejected,
}

/// What the caller must do after
/// [`PeerManager::report`](super::PeerManager::report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    /// The score changed; nothing else to do.
    Noted,
    /// The score fell to `disconnect_threshold` or below: disconnect the peer
    /// (it may reconnect and be redialed later).
    Disconnect,
    /// The score fell to `ban_threshold` or below: disconnect the peer; it is
    /// banned until `until`.
    Ban {
        /// When the ban ends.
        until: Instant,
    },
}
