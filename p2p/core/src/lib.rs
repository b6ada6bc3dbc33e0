//! Switchyard's tokio-free vocabulary, shared by the router (`p2p`) and by
//! every reactor's sans-IO core: node identity, addresses, IP prefixes,
//! channel ids and errors, what a peer did wrong, and the [`reactor::Core`]
//! trait every reactor's algorithm implements.
//!
//! This crate does no I/O but reading and writing key files, and depends
//! on no async runtime: a crate that depends only on it (a reactor's
//! `proto` crate) cannot reach a socket, a task or the clock (ADR 0001).
//! Applications use it through `p2p`, which re-exports all of it.

pub mod address;
pub mod channel;
pub mod identity;
pub mod ip_prefix;
pub mod peer_error;
pub mod reactor;

/// The longest network id, in bytes, everywhere: the router refuses to
/// start with a longer one and refuses a `Hello` that carries one. 242 is
/// the room QUIC's ALPN (at most 255 bytes) leaves after its
/// `switchyard/1/` prefix; TCP binds the id into the Noise prologue.
pub const MAX_NETWORK_ID_LEN: usize = 242;

pub use address::{AddAddressError, AddressError, Endpoint, PeerAddress};
pub use channel::{
    BroadcastReport, ChannelDescriptor, ChannelError, ChannelId, Envelope, MAX_MESSAGE_SIZE,
    SendError, TrySendError,
};
pub use identity::{IdentityError, Keypair, PeerId};
pub use ip_prefix::{IpGroup, IpPrefix, PrefixSlot, PrefixSlots};
pub use peer_error::PeerError;
pub use reactor::{Core, CoreInput, Input, Output, Outputs, PeerUp, SendFailure};
