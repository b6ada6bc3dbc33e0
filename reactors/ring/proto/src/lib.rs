//! The small-world ring's algorithm, sans-IO: every peer has a
//! [`Location`] in `[0, 1)`, links to its two nearest peers on each side
//! (successor and the one after it, predecessor and the one before it) and
//! to peers drawn from Kleinberg's 1/d distribution, and messages are
//! routed greedily toward a location.
//!
//! [`RingState`] is the core: a [`Core`](p2p_core::reactor::Core) that
//! knows no tokio, no clock and no socket (this crate cannot reach them:
//! its only Switchyard dependency is `p2p-core`; ADR 0001). The reactor
//! `reactor-ring` runs it on the router with `p2p::reactor::driver`, and
//! `reactor-ring-sim` runs it in the simulator on `testkit::sim::net`, for
//! 10,000 nodes in one process. Time comes in with every input, randomness
//! from the seed given to [`RingState::new`] (negotiation values from a
//! secret key, [`RingState::set_nonce_key`]), and the Unix time at the
//! start with the constructor.
//!
//! # The protocol
//!
//! One channel, id `0x0030` (`"ring"`), one Protobuf message
//! (`proto/ring.proto`, package `switchyard.ring.v1`): a `RingMessage` that
//! is a `JoinCommit`, `JoinChallenge`, `JoinRefused`, `Announce`, `Route`,
//! `RouteReply`, `Leave` or `NeighborList`.
//!
//! - **Joining.** A node with no location that connects to one of its
//!   configured gateways negotiates one ([`negotiation`]): it commits to a
//!   random value, the gateway answers with its own value, an expiry and a
//!   signature, the node reveals its value by announcing the transcript.
//!   The location is a hash of both values and the node's PeerId, and holds
//!   until the expiry (`location_ttl`, 7 days); the node then negotiates a
//!   new one. A gateway answers a PeerId with one grant until it expires,
//!   and keeps it in its store ([`record`]), so a restart changes nothing;
//!   a node keeps its own location there too.
//! - **Announcing.** When a ring connection comes up each side sends its
//!   transcript. A location that does not verify (signature, trusted
//!   gateway, network, expiry), or that differs from the one first
//!   verified for that PeerId while that one holds, is refused: the peer
//!   is reported with a fatal protocol error (disconnected) and counted.
//! - **Linking.** A node asks for links by routing a connect request: to
//!   itself in *successor* and *predecessor* mode (the first peer after and
//!   before it: these links are always accepted), and toward `own ± d`
//!   with `d` drawn from p(d) ∝ 1/d on `[spacing, ½]` (Kleinberg), the
//!   first hops at random, then greedily. The peer where the route ends
//!   accepts if it has room (or the link makes it one of our ring links)
//!   and answers along the route's path with its addresses, signed
//!   ([`accept`]); the requester checks the signature, and that no link
//!   of its own matches the target better, before it dials. A node keeps between `target_degree` (20) and
//!   `max_degree` (30) neighbors; every maintenance round (10 s ± 25 %) it
//!   asks for links while short, every third round checks its successor
//!   and predecessor, and every sixth round drops its worst-placed link —
//!   the one closest on a log scale to another on the same side — and asks
//!   for a fresh one. Losing the successor or predecessor starts the check
//!   at once. The check also looks at the successor's (predecessor's)
//!   neighbor list: if it names a peer just beyond it that we are not
//!   linked to, a successor (predecessor) route to the successor's
//!   (predecessor's) location asks that peer for a link. The two nearest
//!   neighbors on each side are the *ring links*: always accepted, never
//!   pruned. They keep a node linked to its three nearest peers (unless
//!   all three lie on one side) and the ring closed when one peer fails. A dropped link is told so (`Leave`) and kept open for 2 s, so
//!   what is in flight on it still arrives.
//! - **Routing.** [`Command::Route`] sends a payload toward a location.
//!   Each hop hands it to the unvisited neighbor closest to the target,
//!   looking one hop further: neighbors tell each other their neighbors'
//!   locations (`NeighborList`, at most every 5 s), and a neighbor scores
//!   the best of its own location and its neighbors'.
//!   The route carries its hops to live, the locations it visited and its
//!   path; in [`RouteMode::Closest`] it is delivered where no unvisited
//!   neighbor is closer, in [`RouteMode::Exact`] only at the peer at the
//!   target — at a dead end it goes back one hop and tries the next best,
//!   a depth-first search, so it fails only when no peer it can reach
//!   within its hops to live is the target.
//!
//! # What is delivered, what is dropped
//!
//! - A routed payload is delivered at most once, as [`Event::Delivered`]
//!   (on the handle's event stream). Deliveries are not acknowledged; a
//!   failure (out of hops, nothing left to try) comes back to the origin
//!   as [`Event::RouteFailed`] along the path, when the path still exists.
//! - Sends never wait: a full queue drops the message (the driver counts
//!   it); a route that could not be sent comes back
//!   ([`Core::wants_back`](p2p_core::reactor::Core::wants_back)) and is
//!   tried on the next best neighbor. A reply whose way back is gone is
//!   dropped and counted.
//! - Messages from a connected peer that is not a neighbor, and messages
//!   whose path does not end with us, are dropped and counted
//!   ([`RingStats::messages_dropped`]); the latter cost the sender score.
//! - Every bound of the wire format (hops to live ≤ 64, visited and path ≤
//!   64 entries, payloads ≤ 16 KiB, addresses) is checked before anything
//!   is used ([`Message::from_wire`], the core's `decode`); a breach is a
//!   protocol violation: counted as dropped, and the sender reported with
//!   a fatal error.
//!
//! # Load
//!
//! Each node counts, per neighbor, the bytes and messages it handles on
//! that neighbor's behalf (routes and replies it forwards or delivers for
//! it), decaying with a half-life of 60 s. When the total is at least
//! 1 MiB and one neighbor causes more than `max_share` (50 %) of it, that
//! neighbor is disconnected, banned for 10 minutes, and a [`LoadReport`]
//! says why ([`Event::Overloaded`], and the log). [`RingState::neighbors`]
//! shows each neighbor's counts and share at any time.
//!
//! # What an attacker can and cannot do
//!
//! - **Choose its location**: not alone. It commits before it sees the
//!   gateway's value, and the gateway's signature prevents offline
//!   grinding. A gateway answers a PeerId with one grant until it expires
//!   (7 days), across its restarts, so walking away and asking again draws
//!   nothing new; each try needs a fresh key, and a gateway grants one
//!   network (/24, /48) `max_joins_per_prefix` (8) new locations per
//!   `join_quota_window` (1 h). Best of k remains, with k bounded by the
//!   networks an attacker holds × 8 per hour × the gateways it can use;
//!   landing next to a chosen key among N peers takes about N tries. A
//!   gateway colluding with it can place it anywhere; gateways are
//!   therefore trusted by configuration ([`negotiation`] has the full
//!   analysis).
//! - **Claim another location or another peer's, or show different ones
//!   to different peers or after reconnecting**: no. Transcripts are
//!   signed, hashed with the PeerId, bound to the network, and accepted
//!   only from that PeerId; a gateway signs one per PeerId at a time, and
//!   every node pins the first it verified for a PeerId until it expires
//!   (65,536 pins at most; `locations_conflicting` counts the attempts).
//! - **Hold a gateway's join slots**: only while connected. A joiner's
//!   slot (`max_pending_joins`, 64) is freed when it disconnects, and new
//!   locations per network are bounded as above.
//! - **Forge a link**: no. An `Accepted` is signed by its acceptor over
//!   the route id, the requester, its location and addresses, and the
//!   network; a hop that forges one for a peer that never saw the request
//!   is ignored (`accepts_forged`). A hop can answer for a peer of its own
//!   that signs, but the requester takes it only if no link of its own
//!   matches the target better (`accepts_implausible`), and admits it only
//!   with the signed location, which its transcript must prove.
//! - **Fill a node's links from one network**: at most
//!   `max_neighbors_per_prefix` (4) neighbors per /24 or /48
//!   (`neighbors_refused_prefix`); a closer peer of that network that would
//!   be a ring link takes the place of its longest link. Peers whose
//!   address the transport does not know (the in-process memory
//!   transport) are not counted per network.
//! - **Drop or misroute what it should forward**: yes, for the routes
//!   that reach it. Exact routes go around a peer that drops them only if
//!   the drop is visible (a broken connection); a silent drop makes that
//!   route fail. Nothing here detects it.
//! - **Flood a neighbor with routes**: its share of the neighbor's work
//!   grows, and past `max_share` it is disconnected and banned. It can
//!   spread the flood over many neighbors (many connections), which the
//!   router's connection limits bound.
//! - **Fake a huge visited set or path**: bounded at 64 entries; it only
//!   harms routes that pass through it.
//! - **Lie in its neighbor list** to attract routes: a list must be
//!   sorted, without duplicates, without its sender, and must name the
//!   receiver (its neighbor) unless it holds 64 entries; one that is not
//!   costs the sender 10 points and is not used (`lists_refused`). Within
//!   those rules a liar can still add made-up locations (64 at most) to
//!   look close to every target, and then receive routes it may drop, as
//!   above: the entries are not proven.
//! - **Burn our CPU with signatures**: each announced transcript costs one
//!   ed25519 verification, once per distinct transcript (verified ones are
//!   remembered, 65,536 at most, and a pinned one is recognised by its
//!   digest); an invalid one disconnects the sender. An `Accepted` is
//!   verified only when it answers a connect request of ours still
//!   pending, once.

pub mod accept;
pub mod config;
pub mod load;
pub mod location;
pub mod message;
pub mod negotiation;
pub mod record;
pub mod state;
pub mod stats;

/// Protobuf messages generated from `ring.proto` and `store.proto` by
/// `build.rs`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/switchyard.ring.v1.rs"));
}

pub use config::{DEFAULT_NETWORK_ID, LoadConfig, RingConfig, RingConfigError};
pub use load::{LoadMeter, LoadReport};
pub use location::{Direction, Distance, Location, LocationParseError};
pub use message::{Message, Payload, ReplyKind, Route, RouteMode, RouteReply, WireError};
pub use negotiation::{Gateways, LocationError, NetworkTag, Transcript};
pub use record::{RecordKey, StoredRecord};
pub use state::{
    Command, Event, NeighborInfo, Out, RingState, RouteError, StoreEffect, StoreOutcome,
};
pub use stats::RingStats;
