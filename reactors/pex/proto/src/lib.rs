//! The sans-IO core of peer exchange: [`PexState`], a [`Core`](p2p_core::Core)
//! fed with peer updates, messages, ticks and the address book's answers,
//! its messages, its configuration and its counters. This crate has no
//! tokio and no router (ADR 0001): the driver is `reactor-pex`, whose docs
//! state the protocol and its promises; the simulator is `reactor-pex-sim`.

pub mod address_check;
pub mod config;
pub mod observed;
pub mod state;
pub mod stats;

/// Protobuf messages generated from `pex.proto` by `build.rs`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/switchyard.pex.v1.rs"));
}

pub use address_check::AddressRefusal;
pub use config::{PexConfig, PexConfigError};
pub use observed::ObservedIp;
pub use state::{Action, Effect, Message, Outcome, PexState};
pub use stats::{PexStats, RefusedAddresses};

/// The pex channel's id.
pub const CHANNEL_ID: u16 = 0x0010;

/// Addresses in one response at most: the protocol's limit, whatever the
/// config says.
pub const MAX_ADDRESSES_PER_RESPONSE: usize = 100;

/// The longest address text accepted in a response.
pub const MAX_ADDRESS_LEN: usize = p2p_core::address::MAX_ADDRESS_LEN;
