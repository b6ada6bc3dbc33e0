//! Where addresses come from, and why one is refused.

use crate::identity::PeerId;

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

pub use p2p_core::address::AddAddressError;
