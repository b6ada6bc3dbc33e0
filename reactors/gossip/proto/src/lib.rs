//! Topic gossip's sans-IO core: HyParView membership and Plumtree
//! broadcast trees, per topic, with messages signed by their origin; the
//! size estimate; and rooms, replicated state on top of topics.
//!
//! This crate has no tokio, no clock and no socket (ADR 0001): time comes
//! in as arguments, randomness from a seed. [`GossipState`] (every topic a
//! node joined) and [`room::RoomsCore`] (every room it opened) each
//! implement [`p2p_core::reactor::Core`], so one driver runs them on the
//! router (`reactor-gossip`, through `p2p::reactor::driver`) and one
//! simulated network runs 10,000 of them in one process
//! (`reactor-gossip-sim`, through `testkit::sim::net`).
//!
//! ```
//! use std::time::Instant;
//! use p2p_core::reactor::{Core, Input, Output, PeerUp};
//! use p2p_core::Keypair;
//! use reactor_gossip_proto::{
//!     Contact, GossipCommand, GossipConfig, GossipReply, GossipState, Message, TopicId,
//! };
//!
//! let now = Instant::now();
//! let mut a = GossipState::new(Keypair::from_seed(1), vec![], GossipConfig::default(), 1, now, 1_700_000_000_000);
//! let b = Keypair::from_seed(2).peer_id();
//! let topic = TopicId::from_name("chat");
//! // Join through b: the core asks for a connection first...
//! let mut out = Vec::new();
//! let join = GossipCommand::Join { topic, bootstrap: vec![Contact::bare(b)] };
//! assert_eq!(a.command(now, join, &mut out), GossipReply::Joined(Ok(())));
//! assert!(matches!(out.as_slice(), [Output::Connect { peer, .. }] if *peer == b));
//! // ... and sends the Join once the driver says b is up.
//! out.clear();
//! a.handle(now, Input::PeerUp(PeerUp::new(b)), &mut out);
//! assert!(matches!(
//!     out.as_slice(),
//!     [Output::Send { to, message }] if *to == b && matches!(message.message, Message::Join { .. })
//! ));
//! ```
//!
//! # How it works
//!
//! Each topic is its own overlay. **HyParView** keeps a small symmetric
//! *active view* (6 neighbours, each over a router connection) and a
//! *passive view* (30 known members) refreshed by periodic shuffles; a
//! failed neighbour is replaced from the passive view. **Plumtree** sends
//! payloads along a spanning tree of *eager* links in the active view and
//! announces them (`IHave`, batched) over the other, *lazy*, links; a
//! duplicate prunes the link that brought it, an announced message that
//! does not arrive within `graft_timeout` is grafted from its announcer.
//! The first broadcast over a fresh overlay builds the tree; after that
//! nearly every node gets each message exactly once. The departures from
//! the papers are listed in `state/hyparview.rs` and `state/plumtree.rs`
//! and argued in `adr/0009-gossip.md`.
//!
//! Besides broadcast, each topic estimates its number of members
//! ([`state::estimate`]: a k-minimum-values sketch spread over the
//! overlay, about 9 % error, [`GossipState::size_estimate`]), and
//! [`room`] builds replicated application state on top of topics
//! (`reduce(state, update)` with a shared write key, snapshots and
//! catch-up, reference 002).
//!
//! One channel, id `0x0020` (`"gossip"`), one Protobuf message
//! (`gossip.proto`, package `switchyard.gossip.v1`): a
//! `GossipMessage` naming its topic and carrying one of Join, ForwardJoin,
//! Neighbor, NeighborReply, Disconnect, Shuffle, ShuffleReply (membership)
//! or Gossip, IHave, Graft, Prune (broadcast), or SizeSketch. Its bounds
//! are in the proto file and [`state::message`]. Rooms use channel
//! `0x0021` (`room.proto`).
//!
//! # What is delivered
//!
//! - A message published on a topic reaches every member of the topic
//!   connected to the publisher through the topic's overlay — **at most
//!   once per node** (the id is remembered for `seen_retention`, 150 s,
//!   and older messages are refused), with its **origin verified** (the
//!   origin's ed25519 signature over the id). It does not come back to the
//!   publisher.
//! - No order is promised, between origins or from one origin.
//! - No history: a node that joins later, or that is cut off while a
//!   message spreads, does not get it afterwards — except that a message
//!   announced to it (`IHave`) within `payload_retention` (30 s) is
//!   fetched.
//! - [`Event::NeighborUp`] / [`Event::NeighborDown`] follow the topic's
//!   active view.
//!
//! # What is dropped, and counted ([`GossipStats`])
//!
//! - A payload over `max_payload_size` (64 KiB): refused before anything
//!   else is done with it (`oversized_refused`; the sender is reported),
//!   and a publication of one fails with [`PublishError::TooLarge`].
//!   Frames over the channel limit never reach the core (the router
//!   refuses them).
//! - A message whose origin signature does not verify: never delivered nor
//!   forwarded (`forged_rejected`; the sender is reported, 25 points —
//!   honest nodes verify before forwarding, so the sender is guilty).
//! - A message whose origin timestamp is more than `max_message_age`
//!   (60 s) behind our clock or more than `max_clock_skew` (5 s) ahead of
//!   it (`stale_rejected`): a replay, or a skewed clock.
//! - A new message while the topic's seen-cache holds `max_seen` (100,000)
//!   ids none of which has expired (`seen_full`): ids are forgotten by time
//!   only, so a flood can refuse new messages for `seen_retention` but can
//!   never push out an id and have its message delivered twice; a
//!   publication then fails with [`PublishError::Busy`].
//! - A copy of a message already delivered (`duplicates`).
//! - A message that breaks the protocol's bounds (`malformed_refused`; the
//!   sender is reported), or for a topic not joined (`unknown_topic`).
//! - A send the driver could not queue (`send_failures`, from
//!   [`Input::SendFailed`](p2p_core::reactor::Input::SendFailed)): sends
//!   never wait, and a lost payload is recovered through the announcements
//!   of the other links; a send to a peer no longer connected also ends
//!   the connection for every topic.
//!
//! # Connections
//!
//! The router owns connections; a topic's active view is a set of peers
//! gossip holds connections to. When the core needs a peer it is not
//! connected to, it holds the message (at most 16 per peer, 64 peers) and
//! asks ([`Output::Connect`](p2p_core::reactor::Output::Connect)): the
//! router's driver adds the peer's addresses to the address book and the
//! peer manager dials when an outbound slot is free (a peer already
//! connected is announced again, which flushes what waited). If the peer
//! does not come up within `dial_timeout` (10 s), or the driver reports
//! the dial failed, the core treats it as unreachable. A connection gossip
//! asked for and no topic needs any more is released after
//! `release_after` (10 s); connections gossip did not ask for are never
//! closed by it. Gossip needs outbound slots beyond what peer exchange
//! fills; see the ADR for the limits of this arrangement.
//!
//! # What an attacker can do, and what stops it
//!
//! - **Forge or alter a message**: cannot; every node checks the origin's
//!   signature over the message id (which covers topic, origin, timestamp,
//!   nonce and payload) before delivering or forwarding, and reports the
//!   peer that sent a forgery (two forgeries reach the default disconnect
//!   threshold).
//! - **Replay a message**: a node delivers a message id once while it
//!   remembers it (`seen_retention`, 150 s, longer than a timestamp stays
//!   acceptable: 60 s behind, 5 s ahead), and forgets ids by time only; a
//!   full seen-cache refuses new messages (`seen_full`) rather than forget.
//! - **Oversized or malformed messages**: refused before any work, cost
//!   score.
//! - **Flood with valid messages** under its own key: every node delivers
//!   and forwards at most `origin_rate` (100) messages per second per
//!   origin and topic, in bursts of `origin_burst` (200); the rest are
//!   dropped and counted (`rate_limited`) without blaming the relay, so
//!   a flood stops at the flooder's neighbours. Fresh keys do not buy
//!   fresh budgets: each neighbour may introduce `neighbor_new_origins`
//!   (20/s, burst 200) origins new to us and push `neighbor_rate` (2,000/s)
//!   new messages, and only neighbours may push at all (`not_neighbor`).
//! - **Withhold**: an eager neighbour that drops payloads is routed around
//!   after `graft_timeout` through the announcements of the other
//!   neighbours; an attacker that announces (`IHave`) messages it never
//!   sends delays a graft by `graft_retry` per announcer (at most 8 tracked
//!   per message), and fills at most its share of the missing table
//!   (`max_missing_per_neighbor`, 1,024 of 4,096).
//! - **Lie about hop counts** to attract tree links: only the origin may
//!   claim hop 1 (a relay that does is penalised, `hops_forged`); past it,
//!   a neighbour takes the parent role by a shorter announced path within
//!   a budget (`optimization_burst` 8, then one per
//!   `optimization_interval`, 10 s).
//! - **Rewrite membership**: walks and shuffles are taken from neighbours
//!   only and replies only when asked, each peer within `membership_rate`
//!   and every eviction within `eviction_rate`; a neighbour that names
//!   contacts in walks holds one place with them until one takes part in
//!   the broadcast (see `state/hyparview.rs`). A peer that pushes itself
//!   in with a `Join` still evicts a random neighbour, as in the paper,
//!   within those budgets; the router bounds how many connections one
//!   network gets.

pub mod config;
pub mod room;
pub mod state;
pub mod stats;

/// Protobuf messages generated from `gossip.proto` by `build.rs`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/switchyard.gossip.v1.rs"));
}

/// Protobuf messages of rooms, generated from `room.proto`.
#[allow(missing_docs, clippy::all)]
pub mod room_proto {
    include!(concat!(env!("OUT_DIR"), "/switchyard.room.v1.rs"));
}

pub use config::{
    GossipConfig, GossipConfigError, HyParViewConfig, MESSAGE_OVERHEAD, PlumtreeConfig,
};
pub use state::core::{GossipCommand, GossipReply};
pub use state::message::{
    Contact, Message, MessageId, SignedMessage, TopicId, TopicMessage, WireError,
};
pub use state::{Delivery, Event, GossipOutput, GossipState, JoinError, PublishError};
pub use stats::GossipStats;

/// The gossip channel's id.
pub const CHANNEL_ID: u16 = 0x0020;

/// The gossip channel's name (in metrics and peer reports).
pub const CHANNEL_NAME: &str = "gossip";
