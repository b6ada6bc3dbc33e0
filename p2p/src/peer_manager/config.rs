//! The peer manager's limits and the peers it starts with.

use std::time::Duration;

use crate::address::PeerAddress;

/// Limits, timings and initial peers of a [`PeerManager`](super::PeerManager).
///
/// Build it from [`Default`] and override what you need:
///
/// ```
/// use std::time::Duration;
/// use p2p::peer_manager::PeerManagerConfig;
///
/// let config = PeerManagerConfig {
///     max_outbound: 4,
///     ban_duration: Duration::from_secs(3600),
///     ..PeerManagerConfig::default()
/// };
/// assert_eq!(config.max_inbound, 40);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PeerManagerConfig {
    /// Connected inbound peers at most (persistent peers included).
    pub max_inbound: usize,
    /// Connected outbound peers at most (persistent peers included). Ordinary
    /// dials stop when connected outbound + dials in flight reach it.
    pub max_outbound: usize,
    /// Outbound connections reactors may add past `max_outbound` through
    /// [`PeerManager::request`](super::PeerManager::request) (a gossip
    /// neighbour, a ring link): requested dials stop when connected
    /// outbound + dials in flight reach `max_outbound +
    /// max_requested_outbound`, so peer exchange cannot starve them and
    /// they cannot crowd out more than this.
    pub max_requested_outbound: usize,
    /// Connected inbound peers from one IP address at most. Connections
    /// without an IP (e.g. in-memory) are not limited. Persistent peers are
    /// exempt.
    pub max_inbound_per_ip: usize,
    /// Dials in flight at most, persistent peers included.
    pub max_concurrent_dials: usize,
    /// Delay before the first retry after a failed dial, and before the redial
    /// of a peer that disconnected.
    pub min_retry: Duration,
    /// Cap of the exponential backoff (before jitter).
    pub max_retry: Duration,
    /// Relative jitter of every backoff: a delay `d` becomes a uniform draw in
    /// `[d·(1−j), d·(1+j)]`. Clamped to `[0, 1]`.
    pub retry_jitter: f64,
    /// Peers in the address book at most. Adding a new peer beyond it forgets
    /// the worst-scored peer that is neither persistent, connected, nor being
    /// dialed. Connected peers are always tracked, so the book may exceed this
    /// by at most the number of connections and dials.
    pub max_addresses: usize,
    /// Addresses per peer at most (addresses from the config are exempt).
    pub max_addresses_per_peer: usize,
    /// A report that leaves a peer's score at or below this disconnects it
    /// (unless it also reaches `ban_threshold`). Must be above `ban_threshold`
    /// to have any effect.
    pub disconnect_threshold: i64,
    /// A score at or below this bans the peer for `ban_duration`.
    pub ban_threshold: i64,
    /// How long a ban from a report lasts.
    pub ban_duration: Duration,
    /// Peers that are always redialed, never evicted and never forgotten. A
    /// persistent peer is admitted even when its direction is full, by
    /// evicting the worst-scored non-persistent peer of that direction.
    pub persistent_peers: Vec<PeerAddress>,
    /// Ordinary addresses added to the book at start.
    pub bootstrap_peers: Vec<PeerAddress>,
}

impl Default for PeerManagerConfig {
    fn default() -> Self {
        Self {
            max_inbound: 40,
            max_outbound: 10,
            max_requested_outbound: 32,
            max_inbound_per_ip: 4,
            max_concurrent_dials: 8,
            min_retry: Duration::from_millis(250),
            max_retry: Duration::from_secs(600),
            retry_jitter: 0.2,
            max_addresses: 10_000,
            max_addresses_per_peer: 16,
            disconnect_threshold: -50,
            ban_threshold: -100,
            ban_duration: Duration::from_secs(600),
            persistent_peers: Vec::new(),
            bootstrap_peers: Vec::new(),
        }
    }
}
