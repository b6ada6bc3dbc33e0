//! The sans-IO core of the ring: [`RingState`] implements
//! [`Core`]. It is fed peer updates, messages,
//! its timer and the application's [`Command`]s, and answers with
//! [`Output`]s for a driver to carry out — sends, dials
//! ([`Output::Connect`]), disconnects, reports, [`Event`]s for the
//! application and [`StoreEffect`]s on the ring's store. No clock, no I/O,
//! no tokio: time comes in as arguments, randomness from a seed.
//!
//! ```
//! use std::time::Instant;
//! use p2p_core::Keypair;
//! use p2p_core::reactor::{Core, Input, Output, PeerUp};
//! use reactor_ring_proto::{Message, RingConfig, RingState};
//!
//! let gateway = Keypair::from_seed(0);
//! let joiner = Keypair::from_seed(1);
//! let config = RingConfig::with_gateways([gateway.peer_id()]);
//! let (now, unix) = (Instant::now(), 1_800_000_000);
//! let g = RingState::new_gateway(gateway.clone(), config.clone(), 1, now, unix);
//! let mut j = RingState::new(joiner, config, 2, now, unix);
//! // The joiner connects to the gateway: it commits to a value at once.
//! let mut out = Vec::new();
//! j.handle(now, Input::PeerUp(PeerUp::new(gateway.peer_id())), &mut out);
//! let commit = out.iter().find_map(|o| match o {
//!     Output::Send { message: m @ Message::JoinCommit { .. }, .. } => Some(m.clone()),
//!     _ => None,
//! });
//! assert!(commit.is_some());
//! assert!(g.location().is_some(), "a gateway fixes its own location");
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use p2p_core::reactor::{Core, CoreInput, Input, Output, Outputs};
use p2p_core::{IpPrefix, Keypair, PeerAddress, PeerError, PeerId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use sha2::{Digest, Sha256};

use crate::accept::Acceptance;
use crate::config::RingConfig;
use crate::load::{LoadMeter, LoadReport};
use crate::location::{Direction, Distance, Location};
use crate::message::{
    MAX_HTL, MAX_NEIGHBOR_LIST, Message, Payload, ReplyKind, Route, RouteMode, RouteReply,
};
use crate::negotiation::{
    CLOCK_SKEW_SECS, Challenge, Grant, JoinerSecret, LocationError, NetworkTag, Nonce, Transcript,
};
use crate::proto;
use crate::record::{RecordKey, StoredRecord};
use crate::stats::RingStats;

/// The channel name in reports.
const CHANNEL: &str = "ring";
/// Score a message that is not ours to handle costs (a wrong path).
pub const MISROUTED_PENALTY: i64 = 5;
/// Score a neighbor list that cannot be true costs its sender.
pub const LIST_PENALTY: i64 = 10;
/// Grants a gateway keeps at most (in memory and in its store); past it,
/// the one expiring first is forgotten (`grants_evicted`).
pub const MAX_GRANTS: usize = 65_536;
/// PeerIds whose first verified location is pinned, at most; past it, the
/// oldest pin is forgotten (`pins_evicted`).
pub const MAX_PINS: usize = 65_536;
/// Networks whose join quota a gateway tracks at most (windows that ended
/// go first, then the oldest).
pub const MAX_JOIN_PREFIXES: usize = 8192;
/// Peers awaited (accepted by us, or accepting us) at most; past it, the
/// one due first is forgotten (`expected_evicted`).
pub const MAX_EXPECTED: usize = 256;

/// Most verified locations kept while announcements wait for their peer's
/// `Up` (a few at a time in practice: the race is one message long).
const MAX_EARLY_KNOWN: usize = 4096;
/// Replace one link by a fresh Kleinberg draw every this many maintenance
/// rounds.
const REPLACE_EVERY: u32 = 6;
/// Check the successor and predecessor every this many rounds (and at once
/// when one of them leaves or fails).
const ADJACENCY_EVERY: u32 = 3;
/// Ring links per side: the successor and the peer after it, the
/// predecessor and the peer before it. Linked, never pruned, and always
/// accepted; two per side keep a peer linked to its nearest three and the
/// ring closed when one peer fails.
pub const RING_LINKS: usize = 2;
/// How long a dropped link stays open after `Leave`, so that messages in
/// flight on it and replies on their way back still pass.
pub const LINK_DRAIN: Duration = Duration::from_secs(2);
/// Our neighbor list goes to every neighbor at most this often (and at
/// once to a new neighbor).
pub const NEIGHBOR_LIST_GAP: Duration = Duration::from_secs(5);

/// What the core asks of the ring's store ([`Output::Effect`]). A driver
/// carries each out before any output that follows it, and feeds back
/// [`StoreOutcome::Failed`] if it could not (see [`crate::record`]).
#[derive(Debug, Clone, PartialEq)]
pub enum StoreEffect {
    /// Keep `record`, replacing the one under its key.
    Store(StoredRecord),
    /// Drop the record under this key.
    Forget(RecordKey),
}

/// What the store answered ([`Input::Outcome`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// A [`StoreEffect`] failed: counted
    /// ([`RingStats::store_failures`]); the record is kept in memory, so
    /// nothing changes until a restart.
    Failed,
}

/// What the application asks of the core ([`Core::command`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Send `payload` toward `target`: delivered at the peer closest to it
    /// ([`RouteMode::Closest`]), or only at the peer exactly there
    /// ([`RouteMode::Exact`]). The reply is the route's id; a failure
    /// comes back as [`Event::RouteFailed`] with it. Fire and forget
    /// otherwise: the ring does not acknowledge deliveries.
    Route {
        /// Where.
        target: Location,
        /// How the end is recognised.
        mode: RouteMode,
        /// What for the application there (at most
        /// [`MAX_APP_PAYLOAD`](crate::message::MAX_APP_PAYLOAD) bytes).
        payload: Vec<u8>,
    },
}

/// The outputs the ring's core appends to.
pub type Out = Outputs<RingState>;

/// Why the ring closes a connection (for the log).
#[derive(Debug, Clone, PartialEq)]
enum DisconnectReason {
    /// The worst-placed link while we had more than we need.
    Pruned {
        /// The link's length.
        distance: Distance,
    },
    /// A ring peer we have no room for and did not ask for.
    Full,
    /// A peer whose network already has its share of our links
    /// (`max_neighbors_per_prefix`).
    NetworkFull {
        /// Its network.
        prefix: IpPrefix,
    },
    /// It made us handle more than its share.
    Overloaded(LoadReport),
}

/// Closes the connection to `peer` and bans it for `ban` (so the router
/// does not redial it), saying why in the log.
fn disconnect(peer: PeerId, ban: Duration, reason: DisconnectReason, actions: &mut Out) {
    tracing::debug!(peer = %peer.short(), ?reason, "ring disconnects peer");
    actions.push(Output::Disconnect {
        peer,
        ban: Some(ban),
    });
}

/// What the ring tells the application.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Our location is fixed (negotiated with a gateway, or our own as a
    /// gateway).
    Joined {
        /// The location.
        location: Location,
    },
    /// A peer with a verified location became a neighbor.
    NeighborUp {
        /// The peer.
        peer: PeerId,
        /// Its location.
        location: Location,
    },
    /// A neighbor is gone.
    NeighborDown {
        /// The peer.
        peer: PeerId,
    },
    /// An application payload routed to us.
    Delivered {
        /// The route's id (unique per origin).
        id: u64,
        /// Who sent it.
        origin: PeerId,
        /// Where it was sent.
        target: Location,
        /// Peers on the way from the origin to us (detours not counted).
        path_hops: usize,
        /// Hops to live left when it arrived (its origin's `max_htl`
        /// minus this is the number of transmissions, detours included).
        htl_left: u8,
        /// The payload.
        payload: Vec<u8>,
    },
    /// A route of ours failed.
    RouteFailed {
        /// The route's id.
        id: u64,
        /// Why.
        reason: String,
    },
    /// A neighbor was disconnected for its load.
    Overloaded(LoadReport),
    /// A peer's announced location did not verify; it was reported.
    LocationRefused {
        /// The peer.
        peer: PeerId,
        /// Why.
        error: LocationError,
    },
}

/// Why [`Command::Route`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// We have no location yet.
    #[error("this node has not joined the ring yet")]
    NotJoined,
    /// The payload exceeds the protocol's limit.
    #[error("payload of {0} bytes exceeds the ring's limit of {max} bytes", max = crate::message::MAX_APP_PAYLOAD)]
    TooLarge(usize),
}

/// A neighbor as [`RingState::neighbors`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct NeighborInfo {
    /// The peer.
    pub peer: PeerId,
    /// Its verified location.
    pub location: Location,
    /// Its distance from us.
    pub distance: Distance,
    /// Bytes it made us handle (decayed).
    pub load_bytes: f64,
    /// Messages it made us handle (decayed).
    pub load_messages: f64,
    /// Its share of the bytes all neighbors made us handle.
    pub load_share: f64,
}

#[derive(Debug, Clone)]
struct Neighbor {
    location: Location,
    load: LoadMeter,
    /// Its neighbors' locations, as it last told us (checked).
    their_neighbors: Vec<Location>,
    /// A joiner we (a gateway) are serving: listed in `joiners`.
    joiner: bool,
    /// Its network, if the transport knows its address.
    prefix: Option<IpPrefix>,
}

/// A ring neighbor's location and PeerId.
type Adjacent = (Location, PeerId);

/// A link being dropped: not used for new routes, still open for what is
/// in flight.
#[derive(Debug, Clone, Copy)]
struct Leaving {
    location: Location,
    until: Instant,
    /// We dropped it (and close the connection at `until`).
    initiator: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Successor,
    Predecessor,
    SecondSuccessor,
    SecondPredecessor,
    Long,
    Replace,
}

#[derive(Debug, Clone, Copy)]
struct PendingConnect {
    purpose: Purpose,
    deadline: Instant,
    /// Where the request was routed, and how: an acceptor must be at
    /// least as good a match as every link we have.
    target: Location,
    mode: RouteMode,
}

/// A peer we accepted or that accepted us: admitted past the degree limit
/// when it comes up with this location.
#[derive(Debug, Clone, Copy)]
struct Expected {
    until: Instant,
    location: Location,
}

/// The first verified location of a PeerId, binding until shortly before
/// it expires.
#[derive(Debug, Clone, Copy)]
struct Pin {
    location: Location,
    expires: u64,
    digest: [u8; 32],
    seq: u64,
}

/// A gateway's count of new locations granted to one network.
#[derive(Debug, Clone, Copy)]
struct Quota {
    since: Instant,
    served: usize,
}

#[derive(Debug, Clone)]
struct Joining {
    gateway: PeerId,
    secret: JoinerSecret,
    deadline: Instant,
}

/// Where negotiation values come from.
#[derive(Debug, Clone)]
enum Nonces {
    /// The seeded generator (deterministic tests and simulations).
    Seeded,
    /// SHA-256 of a secret key and a counter.
    Keyed { key: [u8; 32], counter: u64 },
}

/// The ring state machine of one node.
///
/// Start it with what its store kept ([`restore`](Self::restore)), then
/// drive it as a [`Core`]: feed it every [`Input`] and the application's
/// [`Command`]s, carry out the [`Output`]s it appends — the
/// [`StoreEffect`]s on that store, in order — and wake it at
/// [`next_wakeup`](Core::next_wakeup). The same seed and the same inputs
/// give the same outputs.
#[derive(Debug)]
pub struct RingState {
    local: PeerId,
    keypair: Keypair,
    /// We answer negotiations and fixed our own location.
    gateway: bool,
    network: NetworkTag,
    config: RingConfig,
    rng: ChaCha12Rng,
    nonces: Nonces,
    /// The Unix time (seconds) at `clock_base`: expiries are Unix times.
    unix_base: u64,
    clock_base: Instant,
    transcript: Option<Transcript>,
    location: Option<Location>,
    addresses: Vec<String>,
    /// Connected peers (at the router), neighbors or not, with their
    /// network when the transport knows their address.
    connected: BTreeMap<PeerId, Option<IpPrefix>>,
    /// Verified locations of connected peers that announced on this
    /// connection, and of peers whose announcement arrived before their
    /// `Up` (at most [`MAX_EARLY_KNOWN`] entries in all then); removed when
    /// the peer goes down.
    known: BTreeMap<PeerId, Location>,
    /// The first location verified for each PeerId, kept across
    /// disconnections (at most [`MAX_PINS`]).
    pins: BTreeMap<PeerId, Pin>,
    /// `pins` by insertion order, for eviction.
    pin_order: BTreeMap<u64, PeerId>,
    next_pin: u64,
    neighbors: BTreeMap<PeerId, Neighbor>,
    by_location: BTreeMap<Location, PeerId>,
    leaving: BTreeMap<PeerId, Leaving>,
    /// Our neighbor set changed since we last sent it.
    list_dirty: bool,
    next_list_at: Instant,
    joining: Option<Joining>,
    join_retry_at: Option<Instant>,
    /// The value we committed to with each listed gateway, until it
    /// answers (stored, so a restart commits to the same value).
    join_secrets: BTreeMap<PeerId, Nonce>,
    /// Gateway: joiners whose links are protected until the given time
    /// (at most `max_pending_joins`; a joiner's slot is freed when it
    /// disconnects).
    joiners: BTreeMap<PeerId, Instant>,
    /// Neighbors that are in `joiners` (kept in step with it, so that the
    /// degree and each routing step need no look-up per neighbor).
    joiner_neighbors: usize,
    /// Gateway: the grant each PeerId holds (at most [`MAX_GRANTS`]).
    grants: BTreeMap<PeerId, Grant>,
    /// `grants` by expiry, for eviction.
    grant_order: BTreeSet<(u64, PeerId)>,
    /// Gateway: new locations granted per network in its current window
    /// (at most [`MAX_JOIN_PREFIXES`] networks).
    join_quotas: BTreeMap<IpPrefix, Quota>,
    pending_connects: BTreeMap<u64, PendingConnect>,
    /// Peers we accepted or asked to link with, admitted when they come up
    /// with the location agreed (at most [`MAX_EXPECTED`]).
    expected: BTreeMap<PeerId, Expected>,
    next_id: u64,
    next_maintenance: Instant,
    rounds: u32,
    /// Connect requests for long links left this maintenance round, so
    /// that answers that bring no link ("already linked", "no room") do
    /// not turn into a storm of new requests.
    connect_budget: usize,
    total_load: LoadMeter,
    stats: RingStats,
}

impl RingState {
    /// The state of the node with `keypair` (which signs its answers to
    /// connect requests), which joins through one of `config.gateways` when
    /// it connects to it. `seed` drives every random choice (and, unless
    /// [`set_nonce_key`](Self::set_nonce_key) is called, the negotiation
    /// values). `unix_now` is the Unix time (seconds) at `now`: locations
    /// expire in Unix time, and the core tells time from the `Instant`s it
    /// is given after that.
    pub fn new(
        keypair: Keypair,
        config: RingConfig,
        seed: u64,
        now: Instant,
        unix_now: u64,
    ) -> Self {
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        let first = jitter(&mut rng, config.maintenance_interval);
        Self {
            local: keypair.peer_id(),
            keypair,
            gateway: false,
            network: NetworkTag::new(&config.network_id),
            config,
            rng,
            nonces: Nonces::Seeded,
            unix_base: unix_now,
            clock_base: now,
            transcript: None,
            location: None,
            addresses: Vec::new(),
            connected: BTreeMap::new(),
            known: BTreeMap::new(),
            pins: BTreeMap::new(),
            pin_order: BTreeMap::new(),
            next_pin: 0,
            neighbors: BTreeMap::new(),
            by_location: BTreeMap::new(),
            leaving: BTreeMap::new(),
            list_dirty: false,
            next_list_at: now,
            joining: None,
            join_retry_at: None,
            join_secrets: BTreeMap::new(),
            joiners: BTreeMap::new(),
            joiner_neighbors: 0,
            grants: BTreeMap::new(),
            grant_order: BTreeSet::new(),
            join_quotas: BTreeMap::new(),
            pending_connects: BTreeMap::new(),
            expected: BTreeMap::new(),
            next_id: 1,
            next_maintenance: now + first,
            rounds: 0,
            connect_budget: 0,
            total_load: LoadMeter::new(now),
            stats: RingStats::default(),
        }
    }

    /// A gateway: it answers negotiations with `keypair` and fixes its own
    /// location at once (a self-signed transcript, trusted where it is
    /// listed; [`restore`](Self::restore) brings back the one it had).
    pub fn new_gateway(
        keypair: Keypair,
        config: RingConfig,
        seed: u64,
        now: Instant,
        unix_now: u64,
    ) -> Self {
        let mut state = Self::new(keypair, config, seed, now, unix_now);
        state.gateway = true;
        let transcript = state.self_negotiate(now);
        state.location = Some(transcript.location());
        state.transcript = Some(transcript);
        state
    }

    /// A fresh self-signed transcript for a gateway.
    fn self_negotiate(&mut self, now: Instant) -> Transcript {
        let (own, theirs) = (self.nonce(), self.nonce());
        let expires = self.expiry(now);
        Transcript::self_negotiated(&self.keypair, &self.network, own, theirs, expires)
    }

    /// The Unix time (seconds) at `now`.
    pub fn unix_now(&self, now: Instant) -> u64 {
        self.unix_base
            .saturating_add(now.saturating_duration_since(self.clock_base).as_secs())
    }

    /// When a location granted at `now` expires.
    fn expiry(&self, now: Instant) -> u64 {
        self.unix_now(now)
            .saturating_add(self.config.location_ttl.as_secs())
    }

    /// Draw negotiation values from SHA-256 of `key` and a counter instead
    /// of the seeded generator. A gateway that could guess a joiner's value
    /// could choose its location, so a real node sets a key from the
    /// operating system's randomness (the reactor does).
    pub fn set_nonce_key(&mut self, key: [u8; 32]) {
        self.nonces = Nonces::Keyed { key, counter: 0 };
    }

    /// The addresses we hand to peers that link to us.
    pub fn set_addresses(&mut self, addresses: Vec<String>) {
        self.addresses = addresses;
    }

    /// Our location, once fixed.
    pub fn location(&self) -> Option<Location> {
        self.location
    }

    /// Our location's proof, once fixed.
    pub fn transcript(&self) -> Option<&Transcript> {
        self.transcript.as_ref()
    }

    /// This node's PeerId.
    pub fn local(&self) -> PeerId {
        self.local
    }

    /// The configuration in force.
    pub fn config(&self) -> &RingConfig {
        &self.config
    }

    /// Counters so far.
    pub fn stats(&self) -> &RingStats {
        &self.stats
    }

    /// Whether we are a gateway.
    pub fn is_gateway(&self) -> bool {
        self.gateway
    }

    /// The number of neighbors.
    pub fn degree(&self) -> usize {
        self.neighbors.len()
    }

    /// Neighbors that count against the degree limits: all but the
    /// joiners a gateway is still serving.
    fn counted_degree(&self) -> usize {
        self.neighbors.len() - self.joiner_neighbors
    }

    /// Forgets the joiners whose grace ended by `now`.
    fn expire_joiners(&mut self, now: Instant) {
        if self.joiners.values().all(|until| *until > now) {
            return;
        }
        self.joiners.retain(|_, until| *until > now);
        let mut count = 0;
        for (peer, n) in &mut self.neighbors {
            n.joiner = self.joiners.contains_key(peer);
            count += usize::from(n.joiner);
        }
        self.joiner_neighbors = count;
    }

    /// Neighbors' PeerIds and locations, in location order.
    pub fn neighbor_locations(&self) -> impl Iterator<Item = (PeerId, Location)> + '_ {
        self.by_location.iter().map(|(l, p)| (*p, *l))
    }

    /// The connected peers that serve the ring channel, neighbors or not.
    pub fn connected(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.connected.keys().copied()
    }

    /// Whether `peer` is a neighbor.
    pub fn is_neighbor(&self, peer: &PeerId) -> bool {
        self.neighbors.contains_key(peer)
    }

    /// Every neighbor with its location, distance and load, closest first.
    pub fn neighbors(&self, now: Instant) -> Vec<NeighborInfo> {
        let half_life = self.config.load.half_life;
        let (total, _) = self.total_load.value(now, half_life);
        let me = self.location.unwrap_or_default();
        let mut list: Vec<NeighborInfo> = self
            .neighbors
            .iter()
            .map(|(peer, n)| {
                let (bytes, messages) = n.load.value(now, half_life);
                NeighborInfo {
                    peer: *peer,
                    location: n.location,
                    distance: me.distance(n.location),
                    load_bytes: bytes,
                    load_messages: messages,
                    load_share: if total > 0.0 { bytes / total } else { 0.0 },
                }
            })
            .collect();
        list.sort_by_key(|n| (n.distance, n.location));
        list
    }

    /// Up to `k` peers closest to `location` among us and our neighbors,
    /// closest first (ties by location). What the store asks.
    pub fn closest_peers(&self, location: Location, k: usize) -> Vec<(PeerId, Location)> {
        let mut all: Vec<(PeerId, Location)> = self.neighbor_locations().collect();
        if let Some(me) = self.location {
            all.push((self.local, me));
        }
        all.sort_by_key(|(_, l)| (location.distance(*l), *l));
        all.truncate(k);
        all
    }

    /// When [`tick`](Self::tick) has work.
    fn wakeup(&self) -> Instant {
        let mut at = self.next_maintenance;
        if let Some(t) = &self.transcript {
            let left = Duration::from_secs(t.expires.saturating_sub(self.unix_base));
            if let Some(expiry) = self.clock_base.checked_add(left) {
                at = at.min(expiry);
            }
        }
        if let Some(j) = &self.joining {
            at = at.min(j.deadline);
        }
        if let Some(retry) = self.join_retry_at {
            at = at.min(retry);
        }
        // Ids and deadlines grow together (one fixed timeout, time moving
        // forward): the oldest request is the first to expire. Called after
        // every event, so no scan.
        if let Some((_, p)) = self.pending_connects.first_key_value() {
            at = at.min(p.deadline);
        }
        if let Some(l) = self.leaving.values().map(|l| l.until).min() {
            at = at.min(l);
        }
        if self.list_dirty {
            at = at.min(self.next_list_at);
        }
        at
    }

    // ----- events -------------------------------------------------------

    /// `peer` is connected and serves the ring channel, from `ip` if the
    /// transport knows it (its network counts against the per-network
    /// limits). We announce our location to it, or, if we have none and it
    /// is a gateway we trust, start negotiating one.
    fn peer_up(&mut self, peer: PeerId, ip: Option<IpAddr>, now: Instant, actions: &mut Out) {
        if peer == self.local || self.connected.contains_key(&peer) {
            return;
        }
        self.connected.insert(peer, ip.map(IpPrefix::of));
        if let Some(t) = &self.transcript {
            actions.push(Output::Send {
                to: peer,
                message: Message::Announce(t.clone()),
            });
        } else {
            self.maybe_start_join(now, actions);
        }
        // Its announcement came before this `Up`.
        if let Some(location) = self.known.get(&peer).copied() {
            self.consider(peer, location, now, actions);
        }
    }

    /// `peer` disconnected. Losing our successor or predecessor starts a
    /// repair at once; a joiner we were serving gives its slot back.
    fn peer_down(&mut self, peer: PeerId, now: Instant, actions: &mut Out) {
        self.connected.remove(&peer);
        self.known.remove(&peer);
        self.leaving.remove(&peer);
        if self.joining.as_ref().is_some_and(|j| j.gateway == peer) {
            self.joining = None;
            self.maybe_start_join(now, actions);
        }
        let was_adjacent = self.adjacent_peers().contains(&peer);
        let removed = self.remove_neighbor(&peer, actions);
        self.joiners.remove(&peer);
        if removed && self.location.is_some() {
            if was_adjacent {
                self.check_adjacency(now, actions);
            }
            self.fill_degree(now, actions);
        }
    }

    /// A dial we asked for failed.
    fn dial_failed(&mut self, peer: PeerId, now: Instant, actions: &mut Out) {
        self.expected.remove(&peer);
        if self.location.is_some() {
            self.fill_degree(now, actions);
        }
    }

    /// An [`Output::Send`] of `message` could not be carried out (the
    /// peer is gone or its queue is full). A route is tried elsewhere.
    fn send_failed(&mut self, message: Message, now: Instant, actions: &mut Out) {
        if let Message::Route(mut route) = message {
            // The route had been pushed onto `to`: take it back, and never
            // try `to` again for it.
            if route.path.len() > 1
                && let Some(gone) = route.path.pop()
            {
                if !route.visited.contains(&gone) && route.visited.len() < usize::from(MAX_HTL) {
                    route.visited.push(gone);
                }
                self.step(route, now, actions);
            }
        }
    }

    /// A message of `size` bytes on the wire from connected peer `from`.
    fn receive(
        &mut self,
        from: PeerId,
        message: Message,
        size: usize,
        now: Instant,
        actions: &mut Out,
    ) {
        match message {
            Message::JoinCommit { commitment } => {
                self.on_join_commit(from, commitment, now, actions)
            }
            Message::JoinChallenge(challenge) => {
                self.on_join_challenge(from, challenge, now, actions)
            }
            Message::JoinRefused { reason } => {
                if self.joining.as_ref().is_some_and(|j| j.gateway == from) {
                    tracing::debug!(gateway = %from.short(), %reason, "join refused");
                    self.joining = None;
                    self.join_retry_at = Some(now + self.config.maintenance_interval);
                }
            }
            Message::Announce(transcript) => self.on_announce(from, transcript, now, actions),
            Message::Leave => {
                let was_adjacent = self.adjacent_peers().contains(&from);
                if let Some(n) = self.neighbors.get(&from) {
                    let location = n.location;
                    self.remove_neighbor(&from, actions);
                    self.leaving.insert(
                        from,
                        Leaving {
                            location,
                            until: now + LINK_DRAIN,
                            initiator: false,
                        },
                    );
                    if self.location.is_some() {
                        if was_adjacent {
                            self.check_adjacency(now, actions);
                        }
                        self.fill_degree(now, actions);
                    }
                }
            }
            Message::Neighbors(locations) => self.on_neighbor_list(from, locations, actions),
            Message::Route(route) => {
                if !self.is_linked(&from) || self.location.is_none() {
                    self.stats.messages_dropped += 1;
                    return;
                }
                if route.path.last() != self.location.as_ref() {
                    self.stats.messages_dropped += 1;
                    actions.push(misrouted(from, "a route whose path does not end with us"));
                    return;
                }
                let originated_here = route.origin == self.local;
                if !originated_here {
                    self.charge(from, size, now, actions);
                }
                self.step(route, now, actions);
            }
            Message::Reply(reply) => {
                if !self.is_linked(&from) || self.location.is_none() {
                    self.stats.messages_dropped += 1;
                    return;
                }
                if reply.path.last() != self.location.as_ref() {
                    self.stats.messages_dropped += 1;
                    actions.push(misrouted(from, "a reply whose path does not end with us"));
                    return;
                }
                if reply.path.len() > 1 {
                    self.charge(from, size, now, actions);
                }
                self.on_reply(reply, now, actions);
            }
        }
    }

    /// Time passed: give up on what timed out, renegotiate an expired
    /// location, and run a maintenance round when due.
    fn tick(&mut self, now: Instant, actions: &mut Out) {
        let unix = self.unix_now(now);
        if self.transcript.as_ref().is_some_and(|t| t.expires <= unix) {
            self.relocate(now, actions);
        }
        if self.joining.as_ref().is_some_and(|j| j.deadline <= now) {
            self.joining = None;
        }
        if self.join_retry_at.is_some_and(|at| at <= now) {
            self.join_retry_at = None;
        }
        self.pending_connects.retain(|_, p| p.deadline > now);
        let drained: Vec<(PeerId, Leaving)> = self
            .leaving
            .iter()
            .filter(|(_, l)| l.until <= now)
            .map(|(p, l)| (*p, *l))
            .collect();
        for (peer, leaving) in drained {
            self.leaving.remove(&peer);
            if leaving.initiator {
                let distance = self.location.unwrap_or_default().distance(leaving.location);
                let ban = self.config.prune_ban;
                disconnect(peer, ban, DisconnectReason::Pruned { distance }, actions);
            }
        }
        self.expected.retain(|_, e| e.until > now);
        self.expire_joiners(now);
        if self.location.is_none() {
            self.maybe_start_join(now, actions);
        }
        if self.list_dirty && now >= self.next_list_at {
            // Without a location nobody routes through us: nothing to tell
            // (joining sets the flag again).
            self.list_dirty = false;
            self.next_list_at = now + NEIGHBOR_LIST_GAP;
            if self.location.is_some() {
                let list = self.neighbor_list();
                for peer in self.neighbors.keys() {
                    actions.push(Output::Send {
                        to: *peer,
                        message: Message::Neighbors(list.clone()),
                    });
                }
            }
        }
        if now >= self.next_maintenance {
            self.next_maintenance = now + jitter(&mut self.rng, self.config.maintenance_interval);
            self.rounds = self.rounds.wrapping_add(1);
            self.connect_budget = 2 * self.config.target_degree;
            if self.location.is_some() {
                self.maintain(now, actions);
            }
        }
    }

    /// Starts a route ([`Command::Route`]).
    fn start_route(
        &mut self,
        target: Location,
        mode: RouteMode,
        payload: Vec<u8>,
        now: Instant,
        actions: &mut Out,
    ) -> Result<u64, RouteError> {
        let Some(me) = self.location else {
            return Err(RouteError::NotJoined);
        };
        if payload.len() > crate::message::MAX_APP_PAYLOAD {
            return Err(RouteError::TooLarge(payload.len()));
        }
        let id = self.take_id();
        let route = Route {
            id,
            origin: self.local,
            target,
            mode,
            htl: self.config.max_htl,
            walk: 0,
            visited: Vec::new(),
            path: vec![me],
            payload: Payload::App(payload),
        };
        self.stats.routes_started += 1;
        self.step(route, now, actions);
        Ok(id)
    }

    // ----- load ---------------------------------------------------------

    /// Counts `size` bytes handled on `from`'s behalf and disconnects it if
    /// its share is too large.
    fn charge(&mut self, from: PeerId, size: usize, now: Instant, actions: &mut Out) {
        let load = self.config.load.clone();
        let Some(n) = self.neighbors.get_mut(&from) else {
            return;
        };
        self.total_load.add(now, size, load.half_life);
        n.load.add(now, size, load.half_life);
        let (bytes, messages) = n.load.value(now, load.half_life);
        let (total, _) = self.total_load.value(now, load.half_life);
        if self.neighbors.len() < load.min_neighbors || total < load.min_total_bytes {
            return;
        }
        let share = bytes / total;
        if share <= load.max_share {
            return;
        }
        let report = LoadReport {
            peer: from,
            bytes,
            messages,
            total_bytes: total,
            share,
            max_share: load.max_share,
            neighbors: self.neighbors.len(),
            half_life: load.half_life,
        };
        tracing::info!(%report, "ring disconnects an over-consuming neighbor");
        self.stats.overload_disconnects += 1;
        self.remove_neighbor(&from, actions);
        self.known.remove(&from);
        actions.push(Output::Event(Event::Overloaded(report.clone())));
        disconnect(
            from,
            load.ban,
            DisconnectReason::Overloaded(report),
            actions,
        );
    }

    fn nonce(&mut self) -> Nonce {
        match &mut self.nonces {
            Nonces::Seeded => self.rng.random(),
            Nonces::Keyed { key, counter } => {
                *counter += 1;
                let mut hash = Sha256::new();
                hash.update(b"switchyard/ring/nonce/v1");
                hash.update(*key);
                hash.update(counter.to_be_bytes());
                hash.finalize().into()
            }
        }
    }
}

impl Core for RingState {
    type Message = Message;
    type Wire = proto::RingMessage;
    type Command = Command;
    type Reply = Result<u64, RouteError>;
    type Event = Event;
    type Effect = StoreEffect;
    type Outcome = StoreOutcome;

    /// - [`Input::PeerUp`] of a peer that serves the ring channel: we
    ///   announce our location to it, or, if we have none and it is a
    ///   gateway we trust, start negotiating one. Peers that do not serve
    ///   the channel are ignored. Its IP's network counts against the
    ///   per-network limits.
    /// - [`Input::PeerDown`]: losing our successor or predecessor starts a
    ///   repair at once; a joiner we were serving gives its slot back.
    /// - [`Input::Message`]: `size` is what its sender is charged.
    /// - [`Input::Malformed`]: counted as dropped, and its sender reported.
    /// - [`Input::SendFailed`] of a route (handed back, [`Core::wants_back`]):
    ///   tried on the next best neighbor.
    /// - [`Input::DialFailed`]: we ask for another link if short.
    /// - [`Input::Outcome`]: a store write that failed is counted.
    /// - [`Input::Timer`]: give up on what timed out, renegotiate an expired
    ///   location, and run a maintenance round when due.
    fn handle(&mut self, now: Instant, input: CoreInput<Self>, out: &mut Out) {
        match input {
            Input::PeerUp(up) => {
                if up.serves {
                    self.peer_up(up.peer, up.ip, now, out);
                }
            }
            Input::PeerDown(peer) => self.peer_down(peer, now, out),
            Input::Message {
                from,
                message,
                size,
            } => self.receive(from, message, size, now, out),
            Input::Malformed { from, error } => {
                self.stats.messages_dropped += 1;
                out.push(Output::Report { peer: from, error });
            }
            Input::Timer => self.tick(now, out),
            Input::SendFailed { message, .. } => {
                if let Some(message) = message {
                    self.send_failed(message, now, out);
                }
            }
            Input::DialFailed(peer) => self.dial_failed(peer, now, out),
            Input::Outcome(StoreOutcome::Failed) => self.stats.store_failures += 1,
        }
    }

    fn command(&mut self, now: Instant, command: Command, out: &mut Out) -> Self::Reply {
        match command {
            Command::Route {
                target,
                mode,
                payload,
            } => self.start_route(target, mode, payload, now, out),
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        Some(self.wakeup())
    }

    /// Checks every bound of the wire format ([`Message::from_wire`]); a
    /// breach is a protocol violation (fatal for the connection).
    fn decode(&self, wire: proto::RingMessage) -> Result<Option<Message>, PeerError> {
        Message::from_wire(wire).map_err(|e| PeerError::Protocol(format!("ring message: {e}")))
    }

    fn encode(message: Message) -> proto::RingMessage {
        message.into()
    }

    /// Routes: one that could not be sent is tried on another neighbor.
    fn wants_back(&self, message: &Message) -> bool {
        matches!(message, Message::Route(_))
    }

    fn wire_size(&self, message: &Message) -> usize {
        message.encoded_len()
    }
}

fn misrouted(peer: PeerId, what: &str) -> Output<Message, Event, StoreEffect> {
    Output::Report {
        peer,
        error: PeerError::Misbehaviour {
            channel: CHANNEL,
            reason: format!("sent {what}"),
            penalty: MISROUTED_PENALTY,
        },
    }
}

/// `interval` ± 25 %, so that nodes started together do not stay in step.
fn jitter(rng: &mut ChaCha12Rng, interval: Duration) -> Duration {
    interval.mul_f64(rng.random_range(0.75..1.25))
}

mod admission;
mod joining;
mod routing;
mod topology;

#[cfg(test)]
use self::routing::nearest_in;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod adversary_tests;
