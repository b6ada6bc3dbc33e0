//! Where addresses come from, and why one is refused.

use crate::identity::PeerId;

/// Where an address handed to
/// [`PeerManager::add_address`](super::PeerManager::add_address) came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressSource {
    /// The node's configuration (bootstrap or persistent peers). Exempt from
    /// `max_addresses_per_peer`.
    Config,
    /// Another peer told us (peer exchange). Untrusted: never adds addresses
    /// to a persistent peer.
    Exchange,
    /// The node's API or operator.
    Manual,
    /// The peer store, at start.
    Store,
}

/// Why an address was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddAddressError {
    /// The address names this node.
    #[error("address names this node")]
    SelfAddress,
    /// The peer it names is banned.
    #[error("peer {0} is banned")]
    Banned(PeerId),
    /// The peer already has `max_addresses_per_peer` addresses.
    #[error("peer {peer} already has {max} addresses (max_addresses_per_peer)")]
    TooManyAddressesForPeer {
        /// The peer.
        peer: PeerId,
        /// The limit.
        max: usize,
    },
    /// The book holds `max_addresses` peers and none of them may be forgotten
    /// (all are persistent, connected or being dialed).
    #[error("address book is full ({max} peers, max_addresses) and no peer can be forgotten")]
    AddressBookFull {
        /// The limit.
        max: usize,
    },
}
