//! The peer manager's state machine. See the [module docs](super) for what
//! it promises.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::address_book::{AddAddressError, AddressSource};
use super::admission::{Admission, Direction, RejectReason, ReportOutcome};
use super::backoff::backoff_delay;
use super::config::PeerManagerConfig;
use crate::address::PeerAddress;
use crate::identity::PeerId;
use crate::peer_store::PeerRecord;

/// Where a peer's connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerState {
    /// Neither connected nor being dialed.
    Idle,
    /// [`PeerManager::next_dial`] handed out one of its addresses.
    Dialing,
    /// Connected; holds a slot of `direction` (and of `ip`, if inbound).
    Connected {
        direction: Direction,
        ip: Option<IpAddr>,
    },
    /// Evicted for a newcomer: its slot is already freed, and the router has
    /// been told to disconnect it. Waits for [`PeerManager::disconnected`].
    Evicting,
}

/// What the manager knows about one peer.
#[derive(Debug, Clone)]
struct Peer {
    addresses: BTreeSet<PeerAddress>,
    persistent: bool,
    score: i64,
    state: PeerState,
    /// Consecutive failed dials; reset by a connection.
    failures: u32,
    /// Not dialable before this instant.
    retry_at: Option<Instant>,
    /// Which address (in `addresses` order) the next dial uses; advanced by a
    /// failed dial, kept by a successful one.
    dial_cursor: usize,
    /// Whether we ever had a connection with it: such peers are forgotten
    /// after never-connected peers of the same score.
    ever_connected: bool,
    /// A random tie-breaker drawn from the seeded rng, so that ties between
    /// equal scores are deterministic yet cannot be won by grinding peer ids.
    rank: u64,
    /// A reactor asked for a connection ([`PeerManager::request`]): dialed
    /// before ordinary peers, past `max_outbound`. Cleared when the dial
    /// ends either way, or when the peer connects.
    requested: bool,
}

impl Peer {
    fn new(rank: u64) -> Self {
        Self {
            addresses: BTreeSet::new(),
            persistent: false,
            score: 0,
            state: PeerState::Idle,
            failures: 0,
            retry_at: None,
            dial_cursor: 0,
            ever_connected: false,
            rank,
            requested: false,
        }
    }

    fn is_connected_in(&self, want: Direction) -> bool {
        matches!(self.state, PeerState::Connected { direction, .. } if direction == want)
    }
}

/// Slot counters, kept in step with every [`PeerState`] change.
#[derive(Debug, Default)]
struct Slots {
    inbound: usize,
    outbound: usize,
    dialing: usize,
    inbound_per_ip: BTreeMap<IpAddr, usize>,
}

impl Slots {
    fn enter(&mut self, state: PeerState) {
        match state {
            PeerState::Dialing => self.dialing += 1,
            PeerState::Connected {
                direction: Direction::Outbound,
                ..
            } => self.outbound += 1,
            PeerState::Connected {
                direction: Direction::Inbound,
                ip,
            } => {
                self.inbound += 1;
                if let Some(ip) = ip {
                    *self.inbound_per_ip.entry(ip).or_default() += 1;
                }
            }
            PeerState::Idle | PeerState::Evicting => {}
        }
    }

    fn leave(&mut self, state: PeerState) {
        match state {
            PeerState::Dialing => self.dialing = self.dialing.saturating_sub(1),
            PeerState::Connected {
                direction: Direction::Outbound,
                ..
            } => self.outbound = self.outbound.saturating_sub(1),
            PeerState::Connected {
                direction: Direction::Inbound,
                ip,
            } => {
                self.inbound = self.inbound.saturating_sub(1);
                if let Some(ip) = ip
                    && let Some(count) = self.inbound_per_ip.get_mut(&ip)
                {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        self.inbound_per_ip.remove(&ip);
                    }
                }
            }
            PeerState::Idle | PeerState::Evicting => {}
        }
    }

    fn inbound_from(&self, ip: IpAddr) -> usize {
        self.inbound_per_ip.get(&ip).copied().unwrap_or(0)
    }
}

/// The peer manager: known addresses, scores, dial scheduling, connection
/// limits and bans, as one synchronous state machine without I/O.
///
/// ```
/// use std::time::Instant;
/// use p2p::address::PeerAddress;
/// use p2p::identity::Keypair;
/// use p2p::peer_manager::{Admission, PeerManager, PeerManagerConfig};
///
/// let now = Instant::now();
/// let local = Keypair::from_seed(0).peer_id();
/// let remote = Keypair::from_seed(1).peer_id();
/// let config = PeerManagerConfig {
///     bootstrap_peers: vec![PeerAddress::memory(remote)],
///     ..PeerManagerConfig::default()
/// };
/// let mut manager = PeerManager::new(local, config, 42, now);
/// let address = manager.next_dial(now).expect("the bootstrap peer is dialable");
/// // ... the driver dials `address` and authenticates the remote ...
/// assert_eq!(manager.dialed(address.peer, now), Admission::Admit { evict: None });
/// assert!(manager.is_connected(remote));
/// ```
#[derive(Debug)]
pub struct PeerManager {
    local: PeerId,
    config: PeerManagerConfig,
    rng: StdRng,
    /// The latest instant seen in any call: the clock of calls that take none.
    now: Instant,
    peers: BTreeMap<PeerId, Peer>,
    /// Kept apart from `peers` so that forgetting a peer's addresses does not
    /// lift its ban. At most `max(max_addresses, 1)` entries.
    bans: BTreeMap<PeerId, Instant>,
    slots: Slots,
    /// Peers whose record changed since the last `take_dirty` (all known).
    dirty: BTreeSet<PeerId>,
    /// Peers forgotten since the last `take_forgotten`; at most
    /// `max(max_addresses, 1)` entries.
    forgotten: BTreeSet<PeerId>,
}

impl PeerManager {
    /// A manager for node `local`, with the config's persistent and bootstrap
    /// peers in its book. `seed` drives every random choice (jitter,
    /// tie-breaks): the same seed and the same calls give the same results.
    pub fn new(local: PeerId, mut config: PeerManagerConfig, seed: u64, now: Instant) -> Self {
        config.retry_jitter = if config.retry_jitter.is_nan() {
            0.0
        } else {
            config.retry_jitter.clamp(0.0, 1.0)
        };
        let persistent_peers = std::mem::take(&mut config.persistent_peers);
        let bootstrap_peers = std::mem::take(&mut config.bootstrap_peers);
        let mut manager = Self {
            local,
            config,
            rng: StdRng::seed_from_u64(seed),
            now,
            peers: BTreeMap::new(),
            bans: BTreeMap::new(),
            slots: Slots::default(),
            dirty: BTreeSet::new(),
            forgotten: BTreeSet::new(),
        };
        for address in &persistent_peers {
            if address.peer == local {
                tracing::warn!(%address, "persistent peer address names this node; ignored");
                continue;
            }
            let rank = manager.rng.random();
            // Persistent peers are never forgotten, so they may exceed
            // max_addresses; the operator chose how many there are.
            let peer = manager
                .peers
                .entry(address.peer)
                .or_insert_with(|| Peer::new(rank));
            peer.persistent = true;
            peer.addresses.insert(address.clone());
            manager.dirty.insert(address.peer);
        }
        for address in bootstrap_peers {
            if let Err(error) = manager.add_address(address.clone(), AddressSource::Config) {
                tracing::warn!(%address, %error, "bootstrap peer address not added");
            }
        }
        manager.config.persistent_peers = persistent_peers;
        manager
    }

    /// The configuration in force (persistent peers included; bootstrap
    /// peers are not kept).
    pub fn config(&self) -> &PeerManagerConfig {
        &self.config
    }

    /// Adds the peers of a [`PeerStore`](crate::peer_store::PeerStore), at
    /// start. Addresses and scores are taken; whether a peer is persistent
    /// comes from the config, not from the record. Best-scored records are
    /// added first, so that if they exceed `max_addresses` the worst are the
    /// ones left out. Loaded records are not marked dirty.
    pub fn load(&mut self, mut records: Vec<PeerRecord>) {
        records.sort_by(|a, b| b.score.cmp(&a.score).then(a.peer.cmp(&b.peer)));
        for record in records {
            if record.peer == self.local {
                continue;
            }
            for address in record.addresses {
                if address.peer != record.peer {
                    tracing::warn!(peer = %record.peer, %address, "stored address names another peer; ignored");
                    continue;
                }
                if let Err(error) = self.insert_address(address, AddressSource::Store) {
                    tracing::debug!(peer = %record.peer, %error, "stored address not loaded");
                }
            }
            if let Some(peer) = self.peers.get_mut(&record.peer) {
                peer.score = record.score;
            } else if record.score != 0 && self.make_room() {
                // Remember a scored peer without addresses (e.g. one that only
                // ever connected to us), so its score survives the restart.
                let mut peer = Peer::new(self.rng.random());
                peer.score = record.score;
                self.peers.insert(record.peer, peer);
            }
        }
    }

    /// Adds `addr` to the book. `Ok(true)` if the address is new, `Ok(false)`
    /// if it was known (or is an exchanged address of a persistent peer,
    /// which is ignored). Adding a new peer to a full book forgets the
    /// worst-scored peer that is neither persistent, connected nor dialing.
    pub fn add_address(
        &mut self,
        addr: PeerAddress,
        source: AddressSource,
    ) -> Result<bool, AddAddressError> {
        let peer = addr.peer;
        let added = self.insert_address(addr, source)?;
        if added {
            self.dirty.insert(peer);
        }
        Ok(added)
    }

    /// A reactor asks for a connection to the peers of `addresses`: each
    /// address is added as [`add_address`](Self::add_address) would, and
    /// each peer with a known address is marked *requested* — dialed
    /// before ordinary peers (after persistent ones) and past
    /// `max_outbound`, up to `max_outbound + max_requested_outbound`
    /// outbound connections and dials. Bans and backoff still apply. The
    /// mark lasts until the dial ends (connected or failed); a reactor that
    /// still wants the peer asks again. A peer already connected or being
    /// dialed is left as it is. One result per address, as for
    /// `add_address`.
    pub fn request(
        &mut self,
        addresses: Vec<PeerAddress>,
        source: AddressSource,
    ) -> Vec<Result<bool, AddAddressError>> {
        addresses
            .into_iter()
            .map(|address| {
                let id = address.peer;
                let result = self.add_address(address, source);
                if let Some(peer) = self.peers.get_mut(&id)
                    && peer.state == PeerState::Idle
                    && !peer.addresses.is_empty()
                {
                    peer.requested = true;
                }
                result
            })
            .collect()
    }

    fn insert_address(
        &mut self,
        addr: PeerAddress,
        source: AddressSource,
    ) -> Result<bool, AddAddressError> {
        let id = addr.peer;
        if id == self.local {
            return Err(AddAddressError::SelfAddress);
        }
        if self.is_banned(id, self.now) {
            return Err(AddAddressError::Banned(id));
        }
        let max = self.config.max_addresses_per_peer;
        let capped = source != AddressSource::Config;
        if let Some(peer) = self.peers.get_mut(&id) {
            if peer.addresses.contains(&addr)
                || (peer.persistent && source == AddressSource::Exchange)
            {
                return Ok(false);
            }
            if capped && peer.addresses.len() >= max {
                return Err(AddAddressError::TooManyAddressesForPeer { peer: id, max });
            }
            peer.addresses.insert(addr);
            return Ok(true);
        }
        if capped && max == 0 {
            return Err(AddAddressError::TooManyAddressesForPeer { peer: id, max });
        }
        if !self.make_room() {
            return Err(AddAddressError::AddressBookFull {
                max: self.config.max_addresses,
            });
        }
        let mut peer = Peer::new(self.rng.random());
        peer.addresses.insert(addr);
        self.peers.insert(id, peer);
        self.forgotten.remove(&id);
        Ok(true)
    }

    /// Makes room for one more peer in the book, forgetting one if it is
    /// full. False if the book is full of peers that may not be forgotten.
    fn make_room(&mut self) -> bool {
        if self.peers.len() < self.config.max_addresses {
            return true;
        }
        // Worst score first; at equal score, peers we never connected to go
        // before peers that proved reachable.
        let victim = self
            .peers
            .iter()
            .filter(|(_, p)| !p.persistent && p.state == PeerState::Idle)
            .min_by_key(|(id, p)| (p.score, p.ever_connected, p.rank, **id))
            .map(|(id, _)| *id);
        match victim {
            Some(id) => {
                self.forget(id);
                true
            }
            None => false,
        }
    }

    fn forget(&mut self, id: PeerId) {
        if self.peers.remove(&id).is_some() {
            tracing::debug!(peer = %id, "peer forgotten");
            self.dirty.remove(&id);
            if self.forgotten.len() < self.config.max_addresses.max(1) {
                self.forgotten.insert(id);
            }
        }
    }

    /// The peer's entry, created if unknown. Connected peers must be tracked,
    /// so this makes room if it can and grows the book past `max_addresses`
    /// if it cannot (bounded by the connection limits).
    fn track(&mut self, id: PeerId) -> &mut Peer {
        if !self.peers.contains_key(&id) {
            self.make_room();
            let rank = self.rng.random();
            self.forgotten.remove(&id);
            self.peers.insert(id, Peer::new(rank));
        }
        self.peers.entry(id).or_insert_with(|| Peer::new(0))
    }

    /// Moves `id` to `state`, keeping the slot counters in step.
    fn set_state(&mut self, id: PeerId, state: PeerState) {
        if let Some(peer) = self.peers.get_mut(&id) {
            let old = std::mem::replace(&mut peer.state, state);
            self.slots.leave(old);
            self.slots.enter(state);
        }
    }

    fn observe(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    /// The next address to dial, if any; its peer is then `Dialing` until
    /// [`dialed`](Self::dialed) or [`dial_failed`](Self::dial_failed).
    ///
    /// Never returns a peer that is connected, dialing, banned or backing
    /// off. Dials in flight never exceed `max_concurrent_dials`; for ordinary
    /// peers, connected outbound + dialing never exceeds `max_outbound`.
    /// Persistent peers go first and are dialed past `max_outbound` when a
    /// non-persistent outbound peer can be evicted for them; then the best
    /// score wins. A peer's addresses are tried in turn, moving on after
    /// each failure.
    ///
    /// Call it after every event that may free a slot (a disconnection, a
    /// failed or completed dial) and at [`next_dial_at`](Self::next_dial_at).
    pub fn next_dial(&mut self, now: Instant) -> Option<PeerAddress> {
        self.observe(now);
        // Waits that ended are cleared, so that next_dial_at only reports
        // future instants and a driver blocked by limits does not spin.
        for peer in self.peers.values_mut() {
            if peer.retry_at.is_some_and(|at| at <= now) {
                peer.retry_at = None;
            }
        }
        self.bans.retain(|_, until| *until > now);

        if self.slots.dialing >= self.config.max_concurrent_dials {
            return None;
        }
        let outbound_used = self.slots.outbound + self.slots.dialing;
        let outbound_full = outbound_used >= self.config.max_outbound;
        let requested_full =
            outbound_used >= self.config.max_outbound + self.config.max_requested_outbound;
        // Past the limit, each persistent dial in flight needs its own
        // non-persistent outbound peer to evict when it connects.
        let (mut evictable, mut persistent_dialing) = (0usize, 0usize);
        if outbound_full {
            for p in self.peers.values() {
                if p.persistent && p.state == PeerState::Dialing {
                    persistent_dialing += 1;
                } else if !p.persistent && p.is_connected_in(Direction::Outbound) {
                    evictable += 1;
                }
            }
        }
        let can_evict_outbound = evictable > persistent_dialing;
        let bans = &self.bans;
        let (&id, peer) = self
            .peers
            .iter()
            .filter(|(id, p)| {
                p.state == PeerState::Idle
                    && !p.addresses.is_empty()
                    && p.retry_at.is_none()
                    && !bans.contains_key(id)
                    && (!outbound_full
                        || (p.persistent && can_evict_outbound)
                        || (p.requested && !requested_full))
            })
            .max_by_key(|(id, p)| {
                (
                    p.persistent,
                    p.requested,
                    p.score,
                    p.rank,
                    std::cmp::Reverse(**id),
                )
            })?;
        let address = peer
            .addresses
            .iter()
            .nth(peer.dial_cursor % peer.addresses.len())
            .cloned()?;
        self.set_state(id, PeerState::Dialing);
        tracing::debug!(peer = %id, %address, "dialing");
        Some(address)
    }

    /// The earliest instant at which [`next_dial`](Self::next_dial) may have
    /// something new because a backoff or a ban ends; `None` if no peer is
    /// waiting for one. It says nothing about slots that free up: call
    /// `next_dial` after those events too.
    pub fn next_dial_at(&self) -> Option<Instant> {
        self.peers
            .iter()
            .filter(|(_, p)| p.state == PeerState::Idle && !p.addresses.is_empty())
            .filter_map(|(id, p)| match (p.retry_at, self.bans.get(id).copied()) {
                (None, None) => None,
                (Some(at), None) | (None, Some(at)) => Some(at),
                (Some(a), Some(b)) => Some(a.max(b)),
            })
            .min()
    }

    /// A dial handed out by [`next_dial`](Self::next_dial) failed: the peer
    /// backs off for `min_retry · 2^(failures−1)` (capped at `max_retry`),
    /// ± `retry_jitter`, and its next dial uses its next address. Ignored if
    /// the peer is not being dialed.
    pub fn dial_failed(&mut self, id: PeerId, now: Instant) {
        self.observe(now);
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if peer.state != PeerState::Dialing {
            return;
        }
        peer.failures = peer.failures.saturating_add(1);
        peer.dial_cursor = peer.dial_cursor.wrapping_add(1);
        peer.requested = false;
        let delay = backoff_delay(
            peer.failures,
            self.config.min_retry,
            self.config.max_retry,
            self.config.retry_jitter,
            &mut self.rng,
        );
        peer.retry_at = Some(instant_after(now, delay));
        tracing::debug!(peer = %id, failures = peer.failures, ?delay, "dial failed; backing off");
        self.set_state(id, PeerState::Idle);
    }

    /// Our outbound connection to `id` is up and authenticated: keep it or
    /// not. Admitted if an outbound slot is free (a dial from `next_dial`
    /// already holds one); a persistent peer is admitted by evicting the
    /// worst-scored connected non-persistent outbound peer.
    pub fn dialed(&mut self, id: PeerId, now: Instant) -> Admission {
        self.observe(now);
        if id == self.local {
            return Admission::Reject(RejectReason::SelfConnection);
        }
        let state = self.peers.get(&id).map_or(PeerState::Idle, |p| p.state);
        if matches!(state, PeerState::Connected { .. } | PeerState::Evicting) {
            return Admission::Reject(RejectReason::AlreadyConnected);
        }
        // The dial's slot is released whatever the verdict; admission below
        // takes an outbound slot instead.
        self.set_state(id, PeerState::Idle);
        if self.is_banned(id, now) {
            return Admission::Reject(RejectReason::Banned);
        }
        let (persistent, requested) = self.peers.get_mut(&id).map_or((false, false), |p| {
            (p.persistent, std::mem::take(&mut p.requested))
        });
        let limit = if requested {
            self.config.max_outbound + self.config.max_requested_outbound
        } else {
            self.config.max_outbound
        };
        let mut evict = None;
        if self.slots.outbound >= limit {
            evict = if persistent {
                self.worst_connected(Direction::Outbound)
            } else {
                None
            };
            if evict.is_none() {
                if let Some(peer) = self.peers.get_mut(&id) {
                    // Not a failure of the peer: retry soon, without growing
                    // its backoff.
                    peer.retry_at = Some(instant_after(now, self.config.min_retry));
                }
                return Admission::Reject(RejectReason::OutboundFull);
            }
        }
        self.admit(id, Direction::Outbound, None, evict)
    }

    /// An inbound connection from `id` (from `ip`, if it has one) is up and
    /// authenticated: keep it or not. When inbound is full, the newcomer
    /// takes the slot of the worst-scored connected non-persistent inbound
    /// peer if its score is strictly higher (a persistent peer always does).
    pub fn accepted(&mut self, id: PeerId, ip: Option<IpAddr>, now: Instant) -> Admission {
        self.observe(now);
        if id == self.local {
            return Admission::Reject(RejectReason::SelfConnection);
        }
        if self.is_banned(id, now) {
            return Admission::Reject(RejectReason::Banned);
        }
        let (state, persistent, score) = self
            .peers
            .get(&id)
            .map_or((PeerState::Idle, false, 0), |p| {
                (p.state, p.persistent, p.score)
            });
        if matches!(state, PeerState::Connected { .. } | PeerState::Evicting) {
            return Admission::Reject(RejectReason::AlreadyConnected);
        }
        if !persistent
            && let Some(ip) = ip
            && self.slots.inbound_from(ip) >= self.config.max_inbound_per_ip
        {
            return Admission::Reject(RejectReason::IpLimit);
        }
        let mut evict = None;
        if self.slots.inbound >= self.config.max_inbound {
            evict = self.worst_connected(Direction::Inbound).filter(|worst| {
                persistent || self.peers.get(worst).is_some_and(|w| score > w.score)
            });
            if evict.is_none() {
                return Admission::Reject(RejectReason::InboundFull);
            }
        }
        self.admit(id, Direction::Inbound, ip, evict)
    }

    /// The worst-scored connected non-persistent peer of `direction`.
    fn worst_connected(&self, direction: Direction) -> Option<PeerId> {
        self.peers
            .iter()
            .filter(|(_, p)| !p.persistent && p.is_connected_in(direction))
            .min_by_key(|(id, p)| (p.score, p.rank, **id))
            .map(|(id, _)| *id)
    }

    fn admit(
        &mut self,
        id: PeerId,
        direction: Direction,
        ip: Option<IpAddr>,
        evict: Option<PeerId>,
    ) -> Admission {
        if let Some(victim) = evict {
            tracing::debug!(peer = %victim, newcomer = %id, %direction, "evicting peer for a better one");
            self.set_state(victim, PeerState::Evicting);
        }
        let peer = self.track(id);
        peer.failures = 0;
        peer.retry_at = None;
        peer.ever_connected = true;
        self.set_state(id, PeerState::Connected { direction, ip });
        Admission::Admit { evict }
    }

    /// The connection to `id` was replaced by another connection of the
    /// same peer (the router's tie-break of a simultaneous dial): the peer
    /// stays connected, now in `direction`, without a new admission (it
    /// already holds its slot; a change of direction moves the slot and may
    /// leave one side one over its limit until the next disconnection).
    /// Returns `false`, changing nothing, if `id` was not connected.
    pub fn replaced(
        &mut self,
        id: PeerId,
        direction: Direction,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> bool {
        self.observe(now);
        let connected = self
            .peers
            .get(&id)
            .is_some_and(|p| matches!(p.state, PeerState::Connected { .. }));
        if connected {
            self.set_state(id, PeerState::Connected { direction, ip });
        }
        connected
    }

    /// The connection to `id` is gone: its slot is free, its backoff is
    /// reset, and it may be redialed after `min_retry` (a persistent peer
    /// always is). Ignored if `id` was not connected.
    pub fn disconnected(&mut self, id: PeerId, now: Instant) {
        self.observe(now);
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if !matches!(
            peer.state,
            PeerState::Connected { .. } | PeerState::Evicting
        ) {
            return;
        }
        peer.failures = 0;
        peer.retry_at = Some(instant_after(now, self.config.min_retry));
        let nothing_to_keep = !peer.persistent && peer.addresses.is_empty() && peer.score == 0;
        self.set_state(id, PeerState::Idle);
        if nothing_to_keep {
            // A peer that only ever dialed us and has no score: keeping it
            // would let inbound churn crowd the book.
            self.forget(id);
        }
    }

    /// Lowers `id`'s score by `penalty` (a negative penalty raises it). At or
    /// below `ban_threshold` the peer is banned for `ban_duration`; at or
    /// below `disconnect_threshold` a connected peer is to be disconnected.
    /// Persistent peers are not exempt. The caller disconnects on
    /// [`ReportOutcome::Disconnect`] and [`ReportOutcome::Ban`].
    pub fn report(&mut self, id: PeerId, penalty: i64, now: Instant) -> ReportOutcome {
        self.observe(now);
        let score = match self.peers.get_mut(&id) {
            Some(peer) => {
                peer.score = peer.score.saturating_sub(penalty);
                self.dirty.insert(id);
                peer.score
            }
            // Reports are about connected peers, which are known; a report
            // about an unknown peer can still ban it, but is not remembered.
            None => 0i64.saturating_sub(penalty),
        };
        if score <= self.config.ban_threshold {
            let until = self.ban(id, self.config.ban_duration, now);
            tracing::info!(peer = %id, score, ?until, "peer banned: score at or below ban_threshold");
            ReportOutcome::Ban { until }
        } else if score <= self.config.disconnect_threshold && self.is_connected(id) {
            ReportOutcome::Disconnect
        } else {
            ReportOutcome::Noted
        }
    }

    /// Bans `id` until `now + duration` (or later, if already banned
    /// longer) and returns the end of the ban. A banned peer is neither
    /// dialed nor admitted; the caller disconnects it if connected.
    pub fn ban(&mut self, id: PeerId, duration: Duration, now: Instant) -> Instant {
        self.observe(now);
        let mut until = instant_after(now, duration);
        if let Some(&existing) = self.bans.get(&id) {
            until = until.max(existing);
        } else {
            let max = self.config.max_addresses.max(1);
            if self.bans.len() >= max {
                self.bans.retain(|_, end| *end > now);
            }
            if self.bans.len() >= max
                && let Some(soonest) = self
                    .bans
                    .iter()
                    .min_by_key(|(_, end)| **end)
                    .map(|(p, _)| *p)
            {
                self.bans.remove(&soonest);
            }
        }
        self.bans.insert(id, until);
        until
    }

    /// Whether `id` is banned at `now`.
    pub fn is_banned(&self, id: PeerId, now: Instant) -> bool {
        self.bans.get(&id).is_some_and(|until| *until > now)
    }

    /// Whether `id` holds a connection slot.
    pub fn is_connected(&self, id: PeerId) -> bool {
        self.peers
            .get(&id)
            .is_some_and(|p| matches!(p.state, PeerState::Connected { .. }))
    }

    /// Whether `id` is a persistent peer.
    pub fn is_persistent(&self, id: PeerId) -> bool {
        self.peers.get(&id).is_some_and(|p| p.persistent)
    }

    /// Connected peers (evicted ones excluded), in peer id order.
    pub fn connected(&self) -> impl Iterator<Item = (PeerId, Direction)> + '_ {
        self.peers.iter().filter_map(|(id, p)| match p.state {
            PeerState::Connected { direction, .. } => Some((*id, direction)),
            _ => None,
        })
    }

    /// Connected inbound peers.
    pub fn inbound_count(&self) -> usize {
        self.slots.inbound
    }

    /// Connected outbound peers.
    pub fn outbound_count(&self) -> usize {
        self.slots.outbound
    }

    /// Dials in flight.
    pub fn dialing_count(&self) -> usize {
        self.slots.dialing
    }

    /// `id`'s known addresses, in order.
    pub fn addresses(&self, id: PeerId) -> Vec<PeerAddress> {
        self.peers
            .get(&id)
            .map(|p| p.addresses.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Up to `max` addresses, one per peer, in random order: peers that are
    /// not banned, not `exclude`, with a score that is not negative and at
    /// least one address. Peer exchange hands these out.
    pub fn sample_addresses(
        &mut self,
        max: usize,
        exclude: Option<PeerId>,
        now: Instant,
    ) -> Vec<PeerAddress> {
        let mut candidates: Vec<PeerAddress> = self
            .peers
            .iter()
            .filter(|(id, p)| Some(**id) != exclude && p.score >= 0 && !self.is_banned(**id, now))
            .filter_map(|(_, p)| p.addresses.iter().next().cloned())
            .collect();
        candidates.shuffle(&mut self.rng);
        candidates.truncate(max);
        candidates
    }

    /// Peers in the book (with or without addresses).
    pub fn known_peers(&self) -> usize {
        self.peers.len()
    }

    /// `id`'s score, if known.
    pub fn score(&self, id: PeerId) -> Option<i64> {
        self.peers.get(&id).map(|p| p.score)
    }

    /// Records changed since the last call, to save to the store
    /// (write-behind). Call it together with
    /// [`take_forgotten`](Self::take_forgotten).
    pub fn take_dirty(&mut self) -> Vec<PeerRecord> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|id| self.peers.get(&id).map(|p| record(id, p)))
            .collect()
    }

    /// Peers forgotten since the last call, to remove from the store. If
    /// more than `max_addresses` pile up between calls the rest are not
    /// listed (their stale records are capped again at the next `load`).
    pub fn take_forgotten(&mut self) -> Vec<PeerId> {
        std::mem::take(&mut self.forgotten).into_iter().collect()
    }

    /// Every record worth persisting: peers with addresses or a non-zero
    /// score, and persistent peers.
    pub fn records(&self) -> Vec<PeerRecord> {
        self.peers
            .iter()
            .filter(|(_, p)| p.persistent || !p.addresses.is_empty() || p.score != 0)
            .map(|(id, p)| record(*id, p))
            .collect()
    }

    /// Checks that the slot counters match the peers' states.
    #[cfg(test)]
    pub(crate) fn assert_consistent(&self) {
        let mut slots = Slots::default();
        for peer in self.peers.values() {
            slots.enter(peer.state);
        }
        assert_eq!(slots.inbound, self.slots.inbound, "inbound count");
        assert_eq!(slots.outbound, self.slots.outbound, "outbound count");
        assert_eq!(slots.dialing, self.slots.dialing, "dialing count");
        assert_eq!(
            slots.inbound_per_ip, self.slots.inbound_per_ip,
            "per-ip counts"
        );
        assert!(self.dirty.iter().all(|id| self.peers.contains_key(id)));
    }
}

fn record(id: PeerId, peer: &Peer) -> PeerRecord {
    PeerRecord {
        peer: id,
        addresses: peer.addresses.iter().cloned().collect(),
        persistent: peer.persistent,
        score: peer.score,
    }
}

/// `now + delay`, saturating at a far future instead of panicking on
/// overflow (e.g. a `Duration::MAX` ban).
fn instant_after(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}
