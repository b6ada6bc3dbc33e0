//! Switchyard: a modular peer-to-peer networking stack.
//!
//! This package is the node: [`node::NodeBuilder`] composes a key,
//! transports, a peer store and reactors into a running [`node::Node`];
//! [`api`] is its HTTP API. It re-exports the crates a node is built from:
//!
//! * [`p2p`] — identity, addresses, typed channels, the router, the peer
//!   manager and peer store, the `Transport` and `Reactor` traits;
//! * [`transport_memory`], [`transport_tcp`], [`transport_quic`] — the
//!   transports;
//! * `testkit` — deterministic in-memory networks for testing reactors,
//!   with the `testkit` feature (for dev-dependencies; a node never links
//!   it).

pub mod api;
pub mod gossip;
pub mod node;
pub mod ring;
pub mod room;

pub mod config;
pub mod launch;

pub use p2p;
pub use reactor_gossip;
pub use reactor_pex;
pub use reactor_ring;
#[cfg(feature = "testkit")]
pub use testkit;
pub use transport_memory;
pub use transport_quic;
pub use transport_tcp;
