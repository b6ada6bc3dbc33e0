//! Where addresses come from, and why one is refused.

use crate::identity::PeerId;
use crate::ip_prefix::IpPrefix;

/// Where an address handed to
/// [`PeerManager::add_address`](super::PeerManager::add_address) came from.
///
/// `Config` and `Manual` addresses are *trusted*: the operator chose them,
/// so they may be private or loopback addresses, are exempt from
/// `max_ports_per_host` and `max_addresses_per_peer`, and always find room
/// in the address book. Every other source is untrusted and passes the
/// whole screen (see [`AddAddressError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressSource {
    /// The node's configuration (bootstrap or persistent peers). Trusted.
    Config,
    /// Another peer told us, without saying which (a gossip or ring
    /// contact). Untrusted, never adds addresses to a persistent peer, and
    /// all such addresses share one source in the address book's buckets
    /// (prefer [`ExchangeFrom`](Self::ExchangeFrom) when the teller is
    /// known).
    Exchange,
    /// Peer `0` told us (a peer exchange response, or the listen addresses
    /// a peer announced about itself). Untrusted like
    /// [`Exchange`](Self::Exchange); bucketed by the network (/16) of the
    /// peer that told us, so one source reaches only a few buckets.
    ExchangeFrom(PeerId),
    /// The node's API or operator ([`Router::dial`](crate::Router::dial)).
    /// Trusted.
    Manual,
    /// The peer store, at start. Screened like an exchanged address: what
    /// the store holds is what the book held, but the policy (private
    /// addresses) may have changed since.
    Store,
}

impl AddressSource {
    /// Whether the operator chose the address (config or manual).
    pub fn is_trusted(self) -> bool {
        matches!(self, AddressSource::Config | AddressSource::Manual)
    }

    /// Whether a peer told us (exchange, named or not).
    pub fn is_exchange(self) -> bool {
        matches!(
            self,
            AddressSource::Exchange | AddressSource::ExchangeFrom(_)
        )
    }
}

/// Why an address was not added: the one address screen every source
/// passes, whichever reactor it comes from. Each refusal is counted by the
/// router under `switchyard_p2p_addresses_refused_total{reason}`, with
/// [`reason`](Self::reason) as the label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddAddressError {
    /// The address names this node.
    #[error("address names this node")]
    SelfAddress,
    /// Its IP is unspecified (`0.0.0.0`, `::`).
    #[error("address has an unspecified IP")]
    Unspecified,
    /// Its port is 0.
    #[error("address has port 0")]
    PortZero,
    /// Its IP can never be a peer's: multicast, broadcast or reserved.
    #[error("address is multicast, broadcast or reserved")]
    Unroutable,
    /// Its IP (or name) is loopback, private, link-local or shared
    /// (carrier-grade NAT), and `allow_private_addresses` is off. Trusted
    /// sources are exempt.
    #[error("address is loopback, private or link-local (allow_private_addresses is off)")]
    NotPublic,
    /// Its host (IP or DNS name) already has `max_ports_per_host` distinct
    /// endpoints in the book. Trusted sources are exempt.
    #[error("host already has {max} endpoints in the address book (max_ports_per_host)")]
    HostLimit {
        /// The limit.
        max: usize,
    },
    /// The peer it names is banned.
    #[error("peer {0} is banned")]
    Banned(PeerId),
    /// Its IP is in a network banned for repeated offences. Trusted
    /// sources are exempt.
    #[error("network {0} is banned")]
    PrefixBanned(IpPrefix),
    /// The peer already has `max_addresses_per_peer` addresses.
    #[error("peer {peer} already has {max} addresses (max_addresses_per_peer)")]
    TooManyAddressesForPeer {
        /// The peer.
        peer: PeerId,
        /// The limit.
        max: usize,
    },
    /// The address book's bucket for this address and its source is full
    /// of addresses that may not be displaced (from other sources, or
    /// connected, or reachable).
    #[error("address book bucket is full of addresses from other sources")]
    BucketFull,
}

impl AddAddressError {
    /// Every reason label, in declaration order.
    pub const REASONS: [&'static str; 10] = [
        "self_address",
        "unspecified",
        "port_zero",
        "unroutable",
        "not_public",
        "host_limit",
        "banned",
        "prefix_banned",
        "peer_address_limit",
        "bucket_full",
    ];

    /// A stable label for metrics (`"not_public"`).
    pub fn reason(&self) -> &'static str {
        match self {
            AddAddressError::SelfAddress => "self_address",
            AddAddressError::Unspecified => "unspecified",
            AddAddressError::PortZero => "port_zero",
            AddAddressError::Unroutable => "unroutable",
            AddAddressError::NotPublic => "not_public",
            AddAddressError::HostLimit { .. } => "host_limit",
            AddAddressError::Banned(_) => "banned",
            AddAddressError::PrefixBanned(_) => "prefix_banned",
            AddAddressError::TooManyAddressesForPeer { .. } => "peer_address_limit",
            AddAddressError::BucketFull => "bucket_full",
        }
    }
}
