//! Switchyard core: identity, addresses, typed channels, the router, the peer
//! manager and peer store, and the [`Transport`](transport::Transport) trait.
//!
//! The core knows no transport and no reactor. Transports implement
//! [`transport::Transport`]; reactors open typed channels on a
//! [`RouterBuilder`] and talk to peers through [`ChannelSender`] and
//! [`ChannelReceiver`]. The delivery promises are stated in [`channel`];
//! the design and its alternatives in `adr/0002-delivery-semantics-and-flow-control.md`.

pub use p2p_core::{MAX_NETWORK_ID_LEN, address, channel, identity, ip_prefix};
#[cfg(feature = "heed")]
pub mod lmdb;
pub mod metrics;
pub mod peer_manager;
pub mod peer_store;
pub mod reactor;
pub mod router;
pub mod transport;

/// Protobuf messages generated from `proto/p2p.proto` by `build.rs`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/switchyard.p2p.v1.rs"));
}

pub use address::{AddressError, Endpoint, PeerAddress};
pub use channel::{
    BroadcastReport, ChannelDescriptor, ChannelError, ChannelId, Envelope, SendError, TrySendError,
};
pub use identity::{IdentityError, Keypair, PeerId};
pub use ip_prefix::{IpGroup, IpPrefix, PrefixSlot, PrefixSlots};
pub use metrics::{DropReason, Metrics};
pub use peer_manager::{AddAddressError, AddressSource, Direction, PeerError, PeerManagerConfig};
#[cfg(feature = "heed")]
pub use peer_store::HeedPeerStore;
pub use peer_store::{BanRecord, MemoryPeerStore, PeerRecord, PeerStore};
pub use reactor::{OpenedReactor, Reactor, ReactorContext};
pub use router::channel::{ChannelReceiver, ChannelSender};
pub use router::{
    Ban, ConnectedPeer, PeerStatus, PeerUpdate, PeerUpdates, PeerUpdatesError, Router,
    RouterBuilder, RouterConfig, RouterError,
};
