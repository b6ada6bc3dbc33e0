//! Topic gossip: HyParView membership and Plumtree broadcast trees, per
//! topic, with messages signed by their origin — the reactor a node runs.
//!
//! [`Gossip`] is a [`Reactor`](p2p::Reactor): open it on a node and it
//! runs its sans-IO core ([`GossipState`], from the tokio-free
//! `reactor-gossip-proto` crate, re-exported here) on the router through
//! the one driver every reactor shares (`p2p::reactor::driver`), with a
//! thin shell ([`reactor`]) that owns the application's subscriptions. The
//! same core runs in testkit's simulator (the `reactor-gossip-sim` crate
//! and its `gossip_sim` binary), 10,000 nodes in one process.
//!
//! ```no_run
//! # async fn example(handle: reactor_gossip::GossipHandle) -> Result<(), reactor_gossip::GossipError> {
//! use reactor_gossip::{TopicEvent, TopicId};
//!
//! let topic = TopicId::from_name("chat");
//! // Join through the connected peers (or name bootstrap peers/addresses).
//! let mut chat = handle.subscribe(topic, Vec::<p2p::PeerId>::new()).await?;
//! handle.publish(topic, "hello, world").await?;
//! while let Some(event) = chat.recv().await {
//!     match event {
//!         TopicEvent::Received(m) => println!("{} says {:?}", m.origin.short(), m.payload),
//!         TopicEvent::NeighborUp(peer) | TopicEvent::NeighborDown(peer) => {
//!             println!("neighbour change: {}", peer.short())
//!         }
//!         TopicEvent::Lagged(n) => println!("missed {n} events: read faster"),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Promises
//!
//! The protocol's — what is delivered (at most once per node, origin
//! verified, no order, no history), what is dropped and counted, how
//! connections are asked for and released, and what an attacker can and
//! cannot do — are the core's, stated in the `reactor-gossip-proto` crate
//! docs (and ADR 0009). This crate adds the application's side:
//!
//! - Every subscription of a topic gets every event of the topic
//!   ([`TopicEvent`]), buffered up to [`SUBSCRIPTION_BUFFER`]; a
//!   subscription not read fast enough loses events, counted in
//!   `app_events_dropped`, and is told how many with
//!   [`TopicEvent::Lagged`]. The driver never waits for an application.
//! - When every subscription of a topic is dropped, the node leaves the
//!   topic at the topic's next event.
//! - Sends never wait: a full send queue drops the message (the router
//!   counts it, the core counts it in `send_failures`), and Plumtree's
//!   announcements recover a lost payload.
//! - [`GossipHandle::stats`] is the core's counters (with the shell's
//!   `app_events_dropped`) as of the driver's last step; the node serves
//!   them as `switchyard_gossip_*_total`.
//!
//! [`room`] builds replicated application state on top of topics as a
//! second reactor, [`room::Rooms`].
//!
//! # Simulator figures
//!
//! `cargo run --release -p reactor-gossip-sim --bin gossip_sim -- --nodes 10000
//! --rounds 10 --scenario single --seed 1` (and `random`, `crash80`): see
//! the `reactor-gossip-sim` crate for what is measured and BENCHMARKS.md
//! for the figures. The tests run the same scenarios on 200 nodes
//! (`reactors/gossip/sim/tests/sim.rs`).

pub mod reactor;
pub mod room;
pub mod stats;

pub use reactor::{
    Gossip, GossipError, GossipHandle, GossipMessage, SUBSCRIPTION_BUFFER, Subscription, TopicEvent,
};
pub use reactor_gossip_proto::{
    CHANNEL_ID, CHANNEL_NAME, Contact, Delivery, Event, GossipCommand, GossipConfig,
    GossipConfigError, GossipOutput, GossipReply, GossipState, GossipStats, HyParViewConfig,
    JoinError, MESSAGE_OVERHEAD, Message, MessageId, PlumtreeConfig, PublishError, SignedMessage,
    TopicId, TopicMessage, WireError, config, proto, room_proto, state,
};
