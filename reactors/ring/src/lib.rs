//! The small-world ring as a reactor: every peer has a
//! [`Location`] in `[0, 1)`, links to its two nearest peers on each side
//! and to peers drawn from Kleinberg's 1/d distribution, and messages are
//! routed greedily toward a location.
//!
//! [`Ring`] is a [`Reactor`](p2p::Reactor): open it on a node and it runs
//! the ring's sans-IO core ([`RingState`], from the tokio-free crate
//! `reactor-ring-proto`, re-exported here) on the router with the one
//! driver every reactor shares (`p2p::reactor::driver`), beside a thin
//! shell ([`reactor`]) that answers the [`RingHandle`], publishes what it
//! reads, and keeps the ring's records in its [`store`]. The same core runs
//! in the simulator (`reactor-ring-sim`, and its `ring_sim` binary) for
//! 10,000 nodes in one process.
//!
//! The protocol — joining, announcing, linking, routing, load — and what
//! an attacker can and cannot do are described with the core, in
//! `reactor-ring-proto`'s crate docs. What the reactor adds:
//!
//! # What is delivered, what is dropped
//!
//! - A routed payload is delivered at most once, as [`Event::Delivered`]
//!   on the handle's event stream ([`RingHandle::subscribe`]). Deliveries
//!   are not acknowledged; a failure (out of hops, nothing left to try)
//!   comes back to the origin as [`Event::RouteFailed`] along the path,
//!   when the path still exists. A subscriber more than 1,024 events
//!   behind loses the oldest.
//! - Sends never wait: a full queue drops the message (the router counts
//!   it); a route that could not be sent is handed back to the core and
//!   tried on the next best neighbor. A reply whose way back is gone is
//!   dropped and counted.
//! - Messages from a connected peer that is not a neighbor, and messages
//!   whose path does not end with us, are dropped and counted
//!   ([`RingStats::messages_dropped`]); the latter cost the sender score.
//! - Every bound of the wire format is checked before anything is used; a
//!   breach is a protocol violation: the sender is reported with a fatal
//!   error (disconnected) and the message counted as dropped.
//! - [`RingHandle::route`] waits while the reactor's request queue (256)
//!   is full; it fails with [`RingError::Stopped`] once the reactor is
//!   gone.
//! - The records the ring keeps (our location, a pending negotiation, a
//!   gateway's grants) are written to the [`RingStore`] before anything
//!   that follows them leaves; a write that fails is logged and counted
//!   (`store_failures`), and the ring goes on with the record in memory.
//!
//! # Not done yet
//!
//! - The router redials peers it knows; pruned and refused ring peers are
//!   therefore banned for `prune_ban` (2 minutes) so they are not redialed
//!   at once. A router API to dial without keeping the address for
//!   automatic redials would remove the need.
//! - Deliveries are not acknowledged, and a route has no reply channel for
//!   the application yet (the store will need one for GET).
//! - A node that loses every link and every ring connection (a joiner
//!   whose connect requests die with crashed peers before its gateway's
//!   grace ends) keeps its location with no link: the core does not
//!   reconnect by itself, it waits for the router to connect it to a ring
//!   peer for another reason (peer exchange, a redial).
//! - The node's `GET /ring` endpoint belongs to the `switchyard` package.

pub mod reactor;
pub mod stats;
pub mod store;

/// The core's modules, from `reactor-ring-proto` (so that
/// `reactor_ring::message::...` and the like resolve as before).
pub use reactor_ring_proto::{
    accept, config, load, location, message, negotiation, proto, record, state,
};

pub use reactor::{Ring, RingError, RingHandle};
pub use reactor_ring_proto::{
    Command, DEFAULT_NETWORK_ID, Direction, Distance, Event, Gateways, LoadConfig, LoadMeter,
    LoadReport, Location, LocationError, LocationParseError, Message, NeighborInfo, NetworkTag,
    Out, Payload, RecordKey, ReplyKind, RingConfig, RingConfigError, RingState, Route, RouteError,
    RouteMode, RouteReply, StoreEffect, StoreOutcome, StoredRecord, Transcript, WireError,
};
pub use stats::RingStats;
#[cfg(feature = "heed")]
pub use store::HeedRingStore;
pub use store::{MemoryRingStore, RingStore, RingStoreError};

/// The ring channel's id.
pub const CHANNEL_ID: u16 = 0x0030;
