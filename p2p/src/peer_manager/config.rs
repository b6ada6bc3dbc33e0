//! The peer manager's limits and the peers it starts with.

use std::time::Duration;

use crate::address::PeerAddress;

/// The longest ban: a ban asked for longer (by the operator, or a remote's
/// goodbye saying how long it bans us) lasts this long (one year).
pub const MAX_BAN_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Limits, timings and initial peers of a [`PeerManager`](super::PeerManager).
///
/// Build it from [`Default`] and override what you need; the router checks
/// it with [`validate`](Self::validate) when it starts.
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
/// assert!(config.validate().is_ok());
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
    /// they cannot crowd out more than this. Only screened addresses are
    /// requested.
    pub max_requested_outbound: usize,
    /// Connected inbound peers from one network at most: an IPv4 /24 or an
    /// IPv6 /48 ([`IpPrefix`](crate::IpPrefix)), so a fresh address in the
    /// same network does not buy a fresh slot. Connections without an IP
    /// (e.g. in-memory) are not limited. Persistent peers are exempt. At
    /// least 1.
    pub max_inbound_per_prefix: usize,
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
    /// Buckets of the address book's *new* table (peers heard of). One
    /// source network reaches at most 16 of them. At least 1.
    pub new_buckets: usize,
    /// Buckets of the address book's *tried* table (peers we dialed
    /// successfully). One address network reaches at most 4 of them. At
    /// least 1.
    pub tried_buckets: usize,
    /// Peers per bucket, in both tables. The book holds at most
    /// `(new_buckets + tried_buckets) · bucket_size` peers, beyond
    /// persistent and connected ones and what the operator added by hand.
    /// At least 1.
    pub bucket_size: usize,
    /// Addresses per peer at most (addresses from the config are exempt).
    pub max_addresses_per_peer: usize,
    /// Distinct endpoints (port and peer) one host — an IP or a DNS name —
    /// may have in the address book; more from an untrusted source are
    /// refused, so one machine cannot fill the book with its ports (its own
    /// Sybils, or a victim's). Config and manual addresses are exempt. At
    /// least 1; a devnet of N nodes on one host needs N.
    pub max_ports_per_host: usize,
    /// Whether loopback, private (RFC 1918, IPv6 unique local), link-local
    /// and shared (RFC 6598) addresses, and names such as `localhost`, are
    /// taken from untrusted sources (peer exchange, gossip and ring
    /// contacts, the peer store). Off for a public node, where they can
    /// only be mistakes or attacks on the local network; on for a devnet or
    /// a private network. Config and manual addresses may always be private.
    pub allow_private_addresses: bool,
    /// A report that leaves a peer's score at or below this disconnects it
    /// (unless it also reaches `ban_threshold`). Must be above `ban_threshold`
    /// to have any effect.
    pub disconnect_threshold: i64,
    /// A score at or below this bans the peer for `ban_duration`.
    pub ban_threshold: i64,
    /// How long a ban from a report lasts (a peer's or a network's).
    pub ban_duration: Duration,
    /// Scores decay toward zero: a peer's score, and a network's record of
    /// offences, halve every `score_half_life`, so a peer that stops
    /// misbehaving recovers. More than zero.
    pub score_half_life: Duration,
    /// Every penalty a peer earns is charged to its network (IPv4 /24, IPv6
    /// /48) as well, and every ban `-ban_threshold` points; a network whose
    /// (decaying) score falls to this or below is banned for
    /// `ban_duration`: its connections are refused, its addresses neither
    /// learned nor dialed. A key we were never connected to starts at half
    /// its network's score (never at or below `disconnect_threshold`).
    /// Below zero.
    pub prefix_ban_threshold: i64,
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
            max_inbound_per_prefix: 4,
            max_concurrent_dials: 8,
            min_retry: Duration::from_millis(250),
            max_retry: Duration::from_secs(600),
            retry_jitter: 0.2,
            new_buckets: 256,
            tried_buckets: 64,
            bucket_size: 32,
            max_addresses_per_peer: 16,
            max_ports_per_host: 2,
            allow_private_addresses: false,
            disconnect_threshold: -50,
            ban_threshold: -100,
            ban_duration: Duration::from_secs(600),
            score_half_life: Duration::from_secs(3600),
            prefix_ban_threshold: -300,
            persistent_peers: Vec::new(),
            bootstrap_peers: Vec::new(),
        }
    }
}

/// Why a [`PeerManagerConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerManagerConfigError {
    /// A field that must be at least 1 is 0.
    #[error("peer manager {0} must be at least 1")]
    Zero(&'static str),
    /// `score_half_life` is zero.
    #[error("peer manager score_half_life must be more than zero (scores would never be kept)")]
    ZeroHalfLife,
    /// `prefix_ban_threshold` is zero or more.
    #[error(
        "peer manager prefix_ban_threshold is {0}; it must be below zero (a network's score starts at 0)"
    )]
    PrefixBanThreshold(i64),
}

impl PeerManagerConfig {
    /// Checks the values: `max_inbound_per_prefix`, `new_buckets`,
    /// `tried_buckets`, `bucket_size` and `max_ports_per_host` at least 1,
    /// a non-zero `score_half_life`, a negative `prefix_ban_threshold`.
    pub fn validate(&self) -> Result<(), PeerManagerConfigError> {
        for (name, value) in [
            ("max_inbound_per_prefix", self.max_inbound_per_prefix),
            ("new_buckets", self.new_buckets),
            ("tried_buckets", self.tried_buckets),
            ("bucket_size", self.bucket_size),
            ("max_ports_per_host", self.max_ports_per_host),
        ] {
            if value == 0 {
                return Err(PeerManagerConfigError::Zero(name));
            }
        }
        if self.score_half_life.is_zero() {
            return Err(PeerManagerConfigError::ZeroHalfLife);
        }
        if self.prefix_ban_threshold >= 0 {
            return Err(PeerManagerConfigError::PrefixBanThreshold(
                self.prefix_ban_threshold,
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_refused_with_the_field_named() {
        let cases = [
            (
                PeerManagerConfig {
                    max_inbound_per_prefix: 0,
                    ..PeerManagerConfig::default()
                },
                "max_inbound_per_prefix",
            ),
            (
                PeerManagerConfig {
                    new_buckets: 0,
                    ..PeerManagerConfig::default()
                },
                "new_buckets",
            ),
            (
                PeerManagerConfig {
                    tried_buckets: 0,
                    ..PeerManagerConfig::default()
                },
                "tried_buckets",
            ),
            (
                PeerManagerConfig {
                    bucket_size: 0,
                    ..PeerManagerConfig::default()
                },
                "bucket_size",
            ),
            (
                PeerManagerConfig {
                    max_ports_per_host: 0,
                    ..PeerManagerConfig::default()
                },
                "max_ports_per_host",
            ),
            (
                PeerManagerConfig {
                    score_half_life: Duration::ZERO,
                    ..PeerManagerConfig::default()
                },
                "score_half_life",
            ),
            (
                PeerManagerConfig {
                    prefix_ban_threshold: 0,
                    ..PeerManagerConfig::default()
                },
                "prefix_ban_threshold",
            ),
        ];
        for (config, field) in cases {
            let error = config.validate().expect_err(field).to_string();
            assert!(error.contains(field), "{error:?} does not name {field}");
        }
        assert_eq!(PeerManagerConfig::default().validate(), Ok(()));
    }
}
