//! Switchyard: a modular peer-to-peer networking stack.
//!
//! This facade re-exports the crates a node is built from:
//!
//! * [`p2p`] — identity, addresses, typed channels, the router, the peer
//!   manager and peer store, the `Transport` trait;
//! * [`transport_memory`] — the in-process transport;
//! * [`testkit`] — deterministic in-memory networks for testing reactors.
//!
//! The node proper (configuration, CLI, HTTP API) is built in its own
//! issue; today the binary runs an in-process devnet (`switchyard devnet`).

pub use p2p;
pub use testkit;
pub use transport_memory;
