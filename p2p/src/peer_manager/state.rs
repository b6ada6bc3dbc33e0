//! The peer manager's state machine. See the [module docs](super) for what
//! it promises.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::address_book::{AddAddressError, AddressSource};
use super::admission::{Admission, Direction, RejectReason, RemoteRefusal, ReportOutcome};
use super::backoff::backoff_delay;
use super::book::{Group, Slot, Table, Tables};
use super::config::{MAX_BAN_DURATION, PeerManagerConfig};
use super::prefixes::{Decaying, MAX_PREFIX_RECORDS, Prefixes};
use super::screen;
use crate::address::{Host, PeerAddress};
use crate::identity::PeerId;
use crate::ip_prefix::{IpGroup, IpPrefix};
use crate::peer_store::PeerRecord;

/// Consecutive failed dials after which an idle peer is *terrible*: any
/// newcomer to its bucket may displace it.
const TERRIBLE_FAILURES: u32 = 3;

/// Where a peer's connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerState {
    /// Neither connected nor being dialed.
    Idle,
    /// [`PeerManager::next_dial`] handed out one of its addresses.
    Dialing,
    /// Connected; holds a slot of `direction` (and of `ip`'s network, if
    /// inbound).
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
    /// One of its addresses came from the config or the operator: it may
    /// not be displaced from its bucket by untrusted newcomers.
    trusted: bool,
    /// Decays toward zero with `score_half_life`.
    score: Decaying,
    state: PeerState,
    /// Consecutive failed dials; reset by a connection.
    failures: u32,
    /// Not dialable before this instant.
    retry_at: Option<Instant>,
    /// Which address (in `addresses` order) the next dial uses; advanced by a
    /// failed dial, kept by a successful one.
    dial_cursor: usize,
    /// Consecutive connections the remote refused at admission
    /// ([`PeerManager::remote_refused`]): its backoff, which a connection
    /// that lasts resets.
    refusals: u32,
    /// Whether we ever had a connection with it: a key we never had starts
    /// at its network's score.
    ever_connected: bool,
    /// A random tie-breaker drawn from the seeded rng, so that ties between
    /// equal scores are deterministic yet cannot be won by grinding peer ids.
    rank: u64,
    /// A reactor asked for a connection ([`PeerManager::request`]): dialed
    /// before ordinary peers, past `max_outbound`. Cleared when the dial
    /// ends either way, or when the peer connects.
    requested: bool,
    /// Where it sits in the address book's tables: every non-persistent
    /// peer with an address has a slot, no other peer has one.
    slot: Option<Slot>,
    /// The group of whoever told us about it first, and of the address
    /// that placed it (meaningful only with a slot).
    source: Group,
    group: Group,
    /// The network dials weigh it by: its address group; for an address
    /// without a host (`memory://`), which names no network, the network of
    /// the peer that told us (so a chain of Sybils telling each other's
    /// addresses stays one network), or the peer itself if the operator
    /// gave it.
    network: Group,
    /// When it was placed (a counter): older entries are displaced first.
    seq: u64,
    /// When its latest ban ends: past it, the peer has served its sentence
    /// and comes back on its last chance (see `score_admits`).
    ban_ends: Option<Instant>,
    /// Our latest outbound connection to it.
    last_tried: Option<Instant>,
    /// The IP of its latest connection: the network its penalties charge.
    ip: Option<IpAddr>,
}

impl Peer {
    fn new(rank: u64, now: Instant) -> Self {
        Self {
            addresses: BTreeSet::new(),
            persistent: false,
            trusted: false,
            score: Decaying::new(0.0, now),
            state: PeerState::Idle,
            failures: 0,
            retry_at: None,
            dial_cursor: 0,
            refusals: 0,
            ever_connected: false,
            rank,
            requested: false,
            slot: None,
            source: Group::Unnamed,
            group: Group::Unnamed,
            network: Group::Unnamed,
            seq: 0,
            ban_ends: None,
            last_tried: None,
            ip: None,
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
    inbound_per_prefix: BTreeMap<IpPrefix, usize>,
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
                    *self.inbound_per_prefix.entry(IpPrefix::of(ip)).or_default() += 1;
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
                if let Some(ip) = ip {
                    let prefix = IpPrefix::of(ip);
                    if let Some(count) = self.inbound_per_prefix.get_mut(&prefix) {
                        *count = count.saturating_sub(1);
                        if *count == 0 {
                            self.inbound_per_prefix.remove(&prefix);
                        }
                    }
                }
            }
            PeerState::Idle | PeerState::Evicting => {}
        }
    }

    fn inbound_from(&self, ip: IpAddr) -> usize {
        self.inbound_per_prefix
            .get(&IpPrefix::of(ip))
            .copied()
            .unwrap_or(0)
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
/// assert_eq!(manager.dialed(address.peer, None, now), Admission::Admit { evict: None });
/// assert!(manager.is_connected(remote));
/// ```
#[derive(Debug)]
pub struct PeerManager {
    local: PeerId,
    config: PeerManagerConfig,
    rng: ChaCha12Rng,
    /// The latest instant seen in any call: the clock of calls that take none.
    now: Instant,
    peers: BTreeMap<PeerId, Peer>,
    /// The new and tried tables: where each non-persistent peer with an
    /// address sits.
    tables: Tables,
    /// Endpoints (port, peer) of each host in the book, for
    /// `max_ports_per_host`.
    hosts: BTreeMap<Host, BTreeSet<(Option<u16>, PeerId)>>,
    /// Offences per network.
    prefixes: Prefixes,
    /// Kept apart from `peers` so that forgetting a peer's addresses does not
    /// lift its ban. At most the tables' capacity.
    bans: BTreeMap<PeerId, Instant>,
    /// A ban was added, lengthened or lifted since the last
    /// [`take_bans_changed`](PeerManager::take_bans_changed).
    bans_changed: bool,
    slots: Slots,
    /// Peers whose record changed since the last `take_dirty` (all known).
    dirty: BTreeSet<PeerId>,
    /// Peers forgotten since the last `take_forgotten`; at most the tables'
    /// capacity.
    forgotten: BTreeSet<PeerId>,
    /// Placement counter.
    seq: u64,
}

impl PeerManager {
    /// A manager for node `local`, with the config's persistent and bootstrap
    /// peers in its book. `seed` drives every random choice (jitter,
    /// tie-breaks, the address book's secret bucket key): the same seed and
    /// the same calls give the same results. Out-of-range values (see
    /// [`PeerManagerConfig::validate`]) are clamped.
    pub fn new(local: PeerId, mut config: PeerManagerConfig, seed: u64, now: Instant) -> Self {
        config.retry_jitter = if config.retry_jitter.is_nan() {
            0.0
        } else {
            config.retry_jitter.clamp(0.0, 1.0)
        };
        config.max_inbound_per_prefix = config.max_inbound_per_prefix.max(1);
        config.max_ports_per_host = config.max_ports_per_host.max(1);
        if config.score_half_life.is_zero() {
            config.score_half_life = PeerManagerConfig::default().score_half_life;
        }
        config.prefix_ban_threshold = config.prefix_ban_threshold.min(-1);
        let persistent_peers = std::mem::take(&mut config.persistent_peers);
        let bootstrap_peers = std::mem::take(&mut config.bootstrap_peers);
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        let mut key = [0u8; 32];
        rng.fill(&mut key);
        let tables = Tables::new(
            key,
            config.new_buckets,
            config.tried_buckets,
            config.bucket_size,
        );
        let prefixes = Prefixes::new(MAX_PREFIX_RECORDS, config.score_half_life);
        let mut manager = Self {
            local,
            config,
            rng,
            now,
            peers: BTreeMap::new(),
            tables,
            hosts: BTreeMap::new(),
            prefixes,
            bans: BTreeMap::new(),
            bans_changed: false,
            slots: Slots::default(),
            dirty: BTreeSet::new(),
            forgotten: BTreeSet::new(),
            seq: 0,
        };
        for address in &persistent_peers {
            if address.peer == local {
                tracing::warn!(%address, "persistent peer address names this node; ignored");
                continue;
            }
            if let Err(error) = screen::check(address, true) {
                tracing::warn!(%address, %error, "persistent peer address refused");
                continue;
            }
            let rank = manager.rng.random();
            // Persistent peers sit outside the tables and are never
            // forgotten; the operator chose how many there are.
            let peer = manager
                .peers
                .entry(address.peer)
                .or_insert_with(|| Peer::new(rank, now));
            peer.persistent = true;
            peer.trusted = true;
            if peer.addresses.insert(address.clone()) {
                host_insert(&mut manager.hosts, address);
            }
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
    /// comes from the config, not from the record. Addresses pass the
    /// screen as [`AddressSource::Store`]. Best-scored records are added
    /// first, so that if they overflow a bucket the worst are the ones
    /// left out. Loaded records are not marked dirty.
    pub fn load(&mut self, mut records: Vec<PeerRecord>) {
        records.sort_by(|a, b| b.score.cmp(&a.score).then(a.peer.cmp(&b.peer)));
        let now = self.now;
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
                peer.score.set(record.score as f64, now);
            } else if record.score != 0 {
                // Remember a scored peer without addresses (e.g. one that only
                // ever connected to us), so its score survives the restart.
                let mut peer = Peer::new(self.rng.random(), now);
                peer.score.set(record.score as f64, now);
                self.peers.insert(record.peer, peer);
                self.trim_unplaced();
            }
        }
    }

    /// Adds `addr` to the book, if it passes the screen (see
    /// [`AddAddressError`]). `Ok(true)` if the address is new, `Ok(false)`
    /// if it was known (or is an exchanged address of a persistent peer,
    /// which is ignored).
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
    /// each peer whose address passed the screen (new or known) is marked
    /// *requested* — dialed before ordinary peers (after persistent ones)
    /// and past `max_outbound`, up to `max_outbound +
    /// max_requested_outbound` outbound connections and dials. Bans and
    /// backoff still apply. The mark lasts until the dial ends (connected
    /// or failed); a reactor that still wants the peer asks again. A peer
    /// already connected or being dialed is left as it is. One result per
    /// address, as for `add_address`.
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
                if result.is_ok()
                    && let Some(peer) = self.peers.get_mut(&id)
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
        let trusted = source.is_trusted();
        screen::check(&addr, trusted || self.config.allow_private_addresses)?;
        if self.is_banned(id, self.now) {
            return Err(AddAddressError::Banned(id));
        }
        let host = addr.host_port();
        if !trusted
            && let Some((Host::Ip(ip), _)) = &host
            && self.prefixes.is_banned(IpPrefix::of(*ip), self.now)
        {
            return Err(AddAddressError::PrefixBanned(IpPrefix::of(*ip)));
        }
        let max = self.config.max_addresses_per_peer;
        let capped = source != AddressSource::Config;
        if let Some(peer) = self.peers.get_mut(&id) {
            if peer.addresses.contains(&addr) {
                peer.trusted |= trusted;
                return Ok(false);
            }
            if peer.persistent && source.is_exchange() {
                return Ok(false);
            }
            if capped && peer.addresses.len() >= max {
                return Err(AddAddressError::TooManyAddressesForPeer { peer: id, max });
            }
        } else if capped && max == 0 {
            return Err(AddAddressError::TooManyAddressesForPeer { peer: id, max });
        }
        if !trusted && let Some((host, port)) = &host {
            let max = self.config.max_ports_per_host;
            let endpoints = self.hosts.get(host);
            let known = endpoints.is_some_and(|e| e.contains(&(*port, id)));
            if !known && endpoints.is_some_and(|e| e.len() >= max) {
                return Err(AddAddressError::HostLimit { max });
            }
        }
        let source_group = self.source_group(source, &addr);
        let network = self.network_of(source, &addr);
        let now = self.now;
        match self.peers.get_mut(&id) {
            Some(peer) => {
                peer.trusted |= trusted;
                let place = peer.slot.is_none() && !peer.persistent;
                let trusted = peer.trusted;
                if place {
                    let group = Group::of_address(&addr);
                    let slot = self.place_new(id, &source_group, &group, trusted)?;
                    let seq = self.next_seq();
                    if let Some(peer) = self.peers.get_mut(&id) {
                        peer.slot = Some(slot);
                        peer.network = network.clone();
                        peer.source = source_group;
                        peer.group = group;
                        peer.seq = seq;
                    }
                }
            }
            None => {
                let group = Group::of_address(&addr);
                let slot = self.place_new(id, &source_group, &group, trusted)?;
                let mut peer = Peer::new(self.rng.random(), now);
                peer.trusted = trusted;
                peer.slot = Some(slot);
                peer.network = network.clone();
                peer.source = source_group;
                peer.group = group;
                peer.seq = self.next_seq();
                self.peers.insert(id, peer);
                self.forgotten.remove(&id);
            }
        }
        if let Some(peer) = self.peers.get_mut(&id) {
            host_insert(&mut self.hosts, &addr);
            peer.addresses.insert(addr);
        }
        Ok(true)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// The group whoever told us about `addr` is in: the address's own for
    /// config, manual and stored addresses; the network of the connection
    /// of the peer that told us (or of its first address, or the peer
    /// itself); one group for untold sources.
    fn source_group(&self, source: AddressSource, addr: &PeerAddress) -> Group {
        match source {
            AddressSource::Config | AddressSource::Manual | AddressSource::Store => {
                Group::of_address(addr)
            }
            AddressSource::Exchange => Group::Unnamed,
            AddressSource::ExchangeFrom(from) => match self.peers.get(&from) {
                Some(peer) => match (peer.ip, peer.addresses.first()) {
                    (Some(ip), _) => Group::Ip(IpGroup::of(ip)),
                    (None, Some(address)) => Group::of_address(address),
                    (None, None) => Group::Peer(from),
                },
                None => Group::Peer(from),
            },
        }
    }

    /// The network a peer placed by `addr`, heard from `source`, is
    /// weighed by in dials (see [`Peer::network`]).
    fn network_of(&self, source: AddressSource, addr: &PeerAddress) -> Group {
        if addr.host_port().is_some() {
            return Group::of_address(addr);
        }
        match source {
            AddressSource::Config | AddressSource::Manual | AddressSource::Store => {
                Group::Peer(addr.peer)
            }
            AddressSource::Exchange => Group::Unnamed,
            AddressSource::ExchangeFrom(from) => match self.peers.get(&from) {
                Some(peer) if peer.slot.is_some() => peer.network.clone(),
                Some(Peer { ip: Some(ip), .. }) => Group::Ip(IpGroup::of(*ip)),
                _ => Group::Peer(from),
            },
        }
    }

    /// Whether an idle peer may be displaced by anyone: a negative score, or
    /// `TERRIBLE_FAILURES` failed dials in a row.
    fn is_terrible(&self, peer: &Peer) -> bool {
        peer.score.at(self.now, self.config.score_half_life) < 0.0
            || peer.failures >= TERRIBLE_FAILURES
    }

    /// Whether `peer` may leave its bucket for a newcomer: idle, not
    /// trusted, not requested.
    fn displaceable(peer: &Peer) -> bool {
        peer.state == PeerState::Idle && !peer.trusted && !peer.persistent && !peer.requested
    }

    /// A slot in the new table for `id`, heard from `source` at an address
    /// of `group`. A full bucket makes room by forgetting a terrible entry,
    /// else the oldest entry from the same source group (a trusted newcomer:
    /// the oldest untrusted entry); if there is none, an untrusted newcomer
    /// is refused and a trusted one exceeds the bucket.
    fn place_new(
        &mut self,
        id: PeerId,
        source: &Group,
        group: &Group,
        trusted: bool,
    ) -> Result<Slot, AddAddressError> {
        let slot = Slot {
            table: Table::New,
            bucket: self.tables.new_bucket(source, group),
        };
        if self.tables.is_full(slot) {
            let entries: Vec<(PeerId, &Peer)> = self
                .tables
                .bucket(slot)
                .iter()
                .filter(|p| **p != id)
                .filter_map(|p| self.peers.get(p).map(|peer| (*p, peer)))
                .filter(|(_, peer)| Self::displaceable(peer))
                .collect();
            let victim = self.victim(
                &entries,
                |peer| trusted || peer.source == *source,
                |peer| peer.seq,
            );
            match victim {
                Some(victim) => {
                    tracing::debug!(peer = %victim, newcomer = %id, "address displaced from a full bucket");
                    self.forget(victim);
                }
                None if trusted => {}
                None => return Err(AddAddressError::BucketFull),
            }
        }
        self.tables.push(slot, id);
        Ok(slot)
    }

    /// The entry of a full bucket to make room with: its oldest terrible
    /// entry, else the first by `order` of those `eligible` accepts.
    fn victim<K: Ord>(
        &self,
        entries: &[(PeerId, &Peer)],
        eligible: impl Fn(&Peer) -> bool,
        order: impl Fn(&Peer) -> K,
    ) -> Option<PeerId> {
        entries
            .iter()
            .filter(|(_, peer)| self.is_terrible(peer))
            .min_by_key(|(_, peer)| peer.seq)
            .or_else(|| {
                entries
                    .iter()
                    .filter(|(_, peer)| eligible(peer))
                    .min_by_key(|(_, peer)| order(peer))
            })
            .map(|(p, _)| *p)
    }

    /// `id` answered a dial: it moves to the tried table. A full tried
    /// bucket makes room by moving back to new a terrible entry, else the
    /// entry of the same address group tried least recently; if there is
    /// none, `id` stays in new.
    fn promote(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let Some(from) = peer.slot.filter(|s| s.table == Table::New) else {
            return;
        };
        let group = peer.group.clone();
        let to = Slot {
            table: Table::Tried,
            bucket: self.tables.tried_bucket(&group, &id),
        };
        if self.tables.is_full(to) {
            let entries: Vec<(PeerId, &Peer)> = self
                .tables
                .bucket(to)
                .iter()
                .filter_map(|p| self.peers.get(p).map(|peer| (*p, peer)))
                .filter(|(_, peer)| peer.state == PeerState::Idle && !peer.requested)
                .collect();
            let victim = self.victim(
                &entries,
                |peer| peer.group == group,
                |peer| (peer.last_tried, peer.seq),
            );
            let Some(victim) = victim else {
                return;
            };
            self.demote(victim, to);
        }
        self.tables.remove(from, id);
        self.tables.push(to, id);
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.slot = Some(to);
        }
    }

    /// Moves `id` from tried slot `at` back to the new table (by its first
    /// source), or forgets it if there is no room there.
    fn demote(&mut self, id: PeerId, at: Slot) {
        self.tables.remove(at, id);
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        peer.slot = None;
        let (source, group, trusted) = (peer.source.clone(), peer.group.clone(), peer.trusted);
        match self.place_new(id, &source, &group, trusted) {
            Ok(slot) => {
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.slot = Some(slot);
                }
            }
            Err(_) => self.forget(id),
        }
    }

    /// Forgets everything about `id` but its ban.
    fn forget(&mut self, id: PeerId) {
        if let Some(peer) = self.peers.remove(&id) {
            tracing::debug!(peer = %id, "peer forgotten");
            if let Some(slot) = peer.slot {
                self.tables.remove(slot, id);
            }
            for address in &peer.addresses {
                host_remove(&mut self.hosts, address);
            }
            self.dirty.remove(&id);
            if self.forgotten.len() < self.tables.capacity().max(1) {
                self.forgotten.insert(id);
            }
        }
    }

    /// Keeps idle peers without an address (remembered for their score) to
    /// the tried table's capacity, forgetting those whose score is closest
    /// to zero first.
    fn trim_unplaced(&mut self) {
        let cap = self.tables.tried_capacity();
        let now = self.now;
        let half_life = self.config.score_half_life;
        let mut unplaced: Vec<(i64, u64, PeerId)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.slot.is_none() && !p.persistent && p.state == PeerState::Idle)
            .map(|(id, p)| {
                (
                    p.score.rounded(now, half_life).saturating_abs(),
                    p.rank,
                    *id,
                )
            })
            .collect();
        if unplaced.len() <= cap {
            return;
        }
        unplaced.sort();
        let excess = unplaced.len() - cap;
        for (_, _, id) in unplaced.into_iter().take(excess) {
            self.forget(id);
        }
    }

    /// The peer's entry, created if unknown. Connected peers must be tracked;
    /// one without an address sits outside the tables (bounded by the
    /// connection limits).
    fn track(&mut self, id: PeerId) -> &mut Peer {
        if !self.peers.contains_key(&id) {
            let rank = self.rng.random();
            self.forgotten.remove(&id);
            self.peers.insert(id, Peer::new(rank, self.now));
        }
        let now = self.now;
        self.peers.entry(id).or_insert_with(|| Peer::new(0, now))
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

    fn score_now(&self, peer: &Peer) -> i64 {
        peer.score.rounded(self.now, self.config.score_half_life)
    }

    /// The address the next dial of `peer` uses: its next address, in
    /// turn, that is not in a banned network (persistent peers are exempt).
    fn dial_address<'a>(&self, peer: &'a Peer) -> Option<&'a PeerAddress> {
        let count = peer.addresses.len();
        if count == 0 {
            return None;
        }
        let start = peer.dial_cursor % count;
        let mut turn = peer
            .addresses
            .iter()
            .skip(start)
            .chain(peer.addresses.iter().take(start));
        if peer.persistent || !self.prefixes.any_banned(self.now) {
            return turn.next();
        }
        turn.find(|address| !self.in_banned_prefix(address))
    }

    fn in_banned_prefix(&self, address: &PeerAddress) -> bool {
        self.prefixes.any_banned(self.now)
            && matches!(address.host_port(), Some((Host::Ip(ip), _))
                if self.prefixes.is_banned(IpPrefix::of(ip), self.now))
    }

    /// Whether `peer` can be dialed now, limits aside.
    fn dialable(&self, id: PeerId, peer: &Peer) -> bool {
        peer.state == PeerState::Idle
            && peer.retry_at.is_none()
            && !self.bans.contains_key(&id)
            && (peer.persistent
                || self.score_now(peer) > self.config.disconnect_threshold
                || peer.ban_ends.is_some_and(|end| end <= self.now))
            && self.dial_address(peer).is_some()
    }

    /// The next address to dial, if any; its peer is then `Dialing` until
    /// [`dialed`](Self::dialed) or [`dial_failed`](Self::dial_failed).
    ///
    /// Never returns a peer that is connected, dialing, banned or backing
    /// off, nor an address in a banned network. Dials in flight never
    /// exceed `max_concurrent_dials`; for ordinary peers, connected
    /// outbound + dialing never exceeds `max_outbound`. Persistent peers go
    /// first and are dialed past `max_outbound` when a non-persistent
    /// outbound peer can be evicted for them; then requested peers (best
    /// score first); then the address book chooses: the tried or the new
    /// table (half each when both have a candidate), then a *network*
    /// uniformly among the networks with a candidate in that table (an
    /// address's /16 for IPv4, /32 for IPv6, its domain for a DNS name, its
    /// source's network for an address without a host), then a peer of
    /// that network uniformly. So an attacker's weight is the number of
    /// networks it holds reachable addresses in, not the number of
    /// addresses it sends. Peers with a negative score are chosen only when
    /// no other is dialable. A peer's addresses are tried in turn, moving
    /// on after each failure.
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
        let first = self
            .peers
            .iter()
            .filter(|(id, p)| {
                (p.persistent || p.requested)
                    && self.dialable(**id, p)
                    && (!outbound_full
                        || (p.persistent && can_evict_outbound)
                        || (p.requested && !requested_full))
            })
            .max_by_key(|(id, p)| {
                (
                    p.persistent,
                    p.requested,
                    self.score_now(p),
                    p.rank,
                    std::cmp::Reverse(**id),
                )
            })
            .map(|(id, _)| *id);
        let id = match first {
            Some(id) => id,
            None if outbound_full => return None,
            None => self.choose_from_tables()?,
        };
        let peer = self.peers.get(&id)?;
        let address = self.dial_address(peer)?.clone();
        self.set_state(id, PeerState::Dialing);
        tracing::debug!(peer = %id, %address, "dialing");
        Some(address)
    }

    /// An ordinary peer to dial, chosen as [`next_dial`](Self::next_dial)
    /// says: table, network, peer.
    fn choose_from_tables(&mut self) -> Option<PeerId> {
        // (table, peer, score not negative), in table order.
        let mut candidates: Vec<(Table, PeerId, bool)> = Vec::new();
        for table in [Table::New, Table::Tried] {
            for (_, peers) in self.tables.iter(table) {
                for id in peers {
                    if let Some(peer) = self.peers.get(id)
                        && !peer.persistent
                        && self.dialable(*id, peer)
                    {
                        candidates.push((table, *id, self.score_now(peer) >= 0));
                    }
                }
            }
        }
        if candidates.iter().any(|c| c.2) {
            candidates.retain(|c| c.2);
        }
        let has = |t: Table| candidates.iter().any(|c| c.0 == t);
        let table = match (has(Table::New), has(Table::Tried)) {
            (false, false) => return None,
            (true, true) => {
                if self.rng.random_bool(0.5) {
                    Table::Tried
                } else {
                    Table::New
                }
            }
            (false, true) => Table::Tried,
            (true, false) => Table::New,
        };
        candidates.retain(|c| c.0 == table);
        let mut networks: BTreeMap<&Group, Vec<PeerId>> = BTreeMap::new();
        for (_, id, _) in &candidates {
            if let Some(peer) = self.peers.get(id) {
                networks.entry(&peer.network).or_default().push(*id);
            }
        }
        let pick = self.rng.random_range(0..networks.len().max(1));
        let peers = networks.into_values().nth(pick)?;
        let pick = self.rng.random_range(0..peers.len().max(1));
        peers.get(pick).copied()
    }

    /// The earliest instant at which [`next_dial`](Self::next_dial) may have
    /// something new because a backoff or a ban ends (a network's ban
    /// counts by the end of the last one); `None` if no peer is waiting for
    /// one. It says nothing about slots that free up: call `next_dial`
    /// after those events too.
    pub fn next_dial_at(&self) -> Option<Instant> {
        self.peers
            .iter()
            .filter(|(_, p)| p.state == PeerState::Idle && !p.addresses.is_empty())
            .filter_map(|(id, p)| match (p.retry_at, self.bans.get(id).copied()) {
                (None, None) => None,
                (Some(at), None) | (None, Some(at)) => Some(at),
                (Some(a), Some(b)) => Some(a.max(b)),
            })
            .chain(self.prefixes.bans_end(self.now))
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

    /// Our outbound connection to `id` (to `ip`, if the transport knows it)
    /// is up and authenticated: keep it or not. Admitted if an outbound
    /// slot is free (a dial from `next_dial` already holds one); a
    /// persistent peer is admitted by evicting the worst-scored connected
    /// non-persistent outbound peer. A peer admitted moves to the address
    /// book's tried table.
    pub fn dialed(&mut self, id: PeerId, ip: Option<IpAddr>, now: Instant) -> Admission {
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
        if !self.score_admits(id, now) {
            return Admission::Reject(RejectReason::LowScore);
        }
        let (persistent, requested) = self.peers.get_mut(&id).map_or((false, false), |p| {
            (p.persistent, std::mem::take(&mut p.requested))
        });
        if !persistent && ip.is_some_and(|ip| self.prefixes.is_banned(IpPrefix::of(ip), now)) {
            return Admission::Reject(RejectReason::PrefixBanned);
        }
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
        let admission = self.admit(id, Direction::Outbound, ip, evict);
        self.promote(id);
        admission
    }

    /// An inbound connection from `id` (from `ip`, if it has one) is up and
    /// authenticated: keep it or not. Refused if its network is banned or
    /// already has `max_inbound_per_prefix` inbound connections (persistent
    /// peers are exempt). When inbound is full, the newcomer takes the slot
    /// of the worst-scored connected non-persistent inbound peer if its
    /// score is strictly higher (a persistent peer always does); a key we
    /// never had a connection with counts at its network's start score.
    pub fn accepted(&mut self, id: PeerId, ip: Option<IpAddr>, now: Instant) -> Admission {
        self.observe(now);
        if id == self.local {
            return Admission::Reject(RejectReason::SelfConnection);
        }
        if self.is_banned(id, now) {
            return Admission::Reject(RejectReason::Banned);
        }
        if !self.score_admits(id, now) {
            return Admission::Reject(RejectReason::LowScore);
        }
        let (state, persistent, mut score, fresh) = self
            .peers
            .get(&id)
            .map_or((PeerState::Idle, false, 0, true), |p| {
                (p.state, p.persistent, self.score_now(p), !p.ever_connected)
            });
        if matches!(state, PeerState::Connected { .. } | PeerState::Evicting) {
            return Admission::Reject(RejectReason::AlreadyConnected);
        }
        if !persistent && let Some(ip) = ip {
            if self.prefixes.is_banned(IpPrefix::of(ip), now) {
                return Admission::Reject(RejectReason::PrefixBanned);
            }
            if self.slots.inbound_from(ip) >= self.config.max_inbound_per_prefix {
                return Admission::Reject(RejectReason::PrefixLimit);
            }
            let start = self.start_score(ip);
            if fresh && start < 0.0 {
                score = score.min(start.round() as i64);
            }
        }
        let mut evict = None;
        if self.slots.inbound >= self.config.max_inbound {
            evict = self.worst_connected(Direction::Inbound).filter(|worst| {
                persistent
                    || self
                        .peers
                        .get(worst)
                        .is_some_and(|w| score > self.score_now(w))
            });
            if evict.is_none() {
                return Admission::Reject(RejectReason::InboundFull);
            }
        }
        self.admit(id, Direction::Inbound, ip, evict)
    }

    /// The score a key we never had a connection with starts at, coming
    /// from `ip`: half its network's score, kept above
    /// `disconnect_threshold`, never above zero.
    fn start_score(&self, ip: IpAddr) -> f64 {
        let network = self.prefixes.score(IpPrefix::of(ip), self.now);
        (network / 2.0)
            .max(self.config.disconnect_threshold as f64 + 1.0)
            .min(0.0)
    }

    /// The worst-scored connected non-persistent peer of `direction`.
    fn worst_connected(&self, direction: Direction) -> Option<PeerId> {
        self.peers
            .iter()
            .filter(|(_, p)| !p.persistent && p.is_connected_in(direction))
            .min_by_key(|(id, p)| (self.score_now(p), p.rank, **id))
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
        let start = ip.map_or(0.0, |ip| self.start_score(ip));
        let now = self.now;
        let half_life = self.config.score_half_life;
        let peer = self.track(id);
        if !peer.ever_connected && !peer.persistent && start < 0.0 {
            let score = peer.score.at(now, half_life).min(start);
            peer.score.set(score, now);
            tracing::debug!(peer = %id, score, "a new key from a penalised network starts penalised");
        }
        peer.failures = 0;
        peer.retry_at = None;
        peer.ever_connected = true;
        if ip.is_some() {
            peer.ip = ip;
        }
        if direction == Direction::Outbound {
            peer.last_tried = Some(now);
        }
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
            if let Some(peer) = self.peers.get_mut(&id)
                && ip.is_some()
            {
                peer.ip = ip;
            }
        }
        connected
    }

    /// The connection to `id` is gone: its slot is free, its backoff is
    /// reset, and it may be redialed after `min_retry` (a persistent peer
    /// always is). Ignored if `id` was not connected.
    pub fn disconnected(&mut self, id: PeerId, now: Instant) {
        self.observe(now);
        let score = match self.peers.get(&id) {
            Some(peer) => self.score_now(peer),
            None => return,
        };
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
        peer.refusals = 0;
        peer.retry_at = Some(instant_after(now, self.config.min_retry));
        let unplaced = !peer.persistent && peer.addresses.is_empty();
        self.set_state(id, PeerState::Idle);
        if unplaced && score == 0 {
            // A peer that only ever dialed us and has no score: keeping it
            // would let inbound churn crowd the book.
            self.forget(id);
        } else if unplaced {
            self.trim_unplaced();
        }
    }

    /// The connection to `id` is gone because the remote refused it, or
    /// banned us ([`RemoteRefusal`]): its slot is free as after
    /// [`disconnected`](Self::disconnected), but it is not redialed soon.
    /// `Banned`: not before the ban ends — `remaining` if the remote said
    /// (at most [`MAX_BAN_DURATION`]), else `max_retry`. `Rejected`: a
    /// failed dial, after `min_retry · 2^(n−1)` (capped at `max_retry`,
    /// ± `retry_jitter`) for the n-th refusal in a row. Persistent peers
    /// too: a peer that refuses us is not hammered. Ignored if `id` was not
    /// connected.
    pub fn remote_refused(&mut self, id: PeerId, refusal: RemoteRefusal, now: Instant) {
        let Some(streak) = self
            .peers
            .get(&id)
            .filter(|p| matches!(p.state, PeerState::Connected { .. } | PeerState::Evicting))
            .map(|p| p.refusals.saturating_add(1))
        else {
            return;
        };
        self.disconnected(id, now);
        let delay = match refusal {
            RemoteRefusal::Banned { remaining } => {
                remaining.map_or(self.config.max_retry, |d| d.min(MAX_BAN_DURATION))
            }
            RemoteRefusal::Rejected => backoff_delay(
                streak,
                self.config.min_retry,
                self.config.max_retry,
                self.config.retry_jitter,
                &mut self.rng,
            ),
        };
        // `disconnected` may have forgotten a peer without an address: then
        // there is nothing to dial anyway.
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.refusals = streak;
            peer.retry_at = Some(instant_after(now, delay));
            tracing::debug!(peer = %id, refusals = streak, ?delay, "refused by the remote; backing off");
        }
    }

    /// Lowers `id`'s score by `penalty` (a negative penalty raises it); a
    /// positive penalty is charged to the network (IPv4 /24, IPv6 /48) of
    /// the peer's latest connection too, which is banned for `ban_duration`
    /// at or below `prefix_ban_threshold`. At or below `ban_threshold` the
    /// peer is banned for `ban_duration`; at or below
    /// `disconnect_threshold` a connected peer is to be disconnected.
    /// Persistent peers are not exempt. The caller disconnects on
    /// [`ReportOutcome::Disconnect`] and [`ReportOutcome::Ban`].
    pub fn report(&mut self, id: PeerId, penalty: i64, now: Instant) -> ReportOutcome {
        self.observe(now);
        let half_life = self.config.score_half_life;
        let (score, ip) = match self.peers.get_mut(&id) {
            Some(peer) => {
                peer.score.add(-(penalty as f64), now, half_life);
                self.dirty.insert(id);
                (peer.score.rounded(now, half_life), peer.ip)
            }
            // Reports are about connected peers, which are known; a report
            // about an unknown peer can still ban it, but is not remembered.
            None => (0i64.saturating_sub(penalty), None),
        };
        if penalty > 0
            && let Some(ip) = ip
        {
            self.charge_network(ip, penalty as f64, now);
        }
        if score <= self.config.ban_threshold {
            let until = self.ban_until(id, self.config.ban_duration, now);
            tracing::info!(
                peer = %id,
                score,
                ban_seconds = until.saturating_duration_since(now).as_secs(),
                "peer banned: score at or below ban_threshold"
            );
            ReportOutcome::Ban { until }
        } else if score <= self.config.disconnect_threshold && self.is_connected(id) {
            ReportOutcome::Disconnect
        } else {
            ReportOutcome::Noted
        }
    }

    /// Charges `points` to `ip`'s network, banning it at
    /// `prefix_ban_threshold`.
    fn charge_network(&mut self, ip: IpAddr, points: f64, now: Instant) {
        let prefix = IpPrefix::of(ip);
        let ban_until = instant_after(now, self.config.ban_duration);
        if let Some(until) = self.prefixes.charge(
            prefix,
            points,
            now,
            self.config.prefix_ban_threshold,
            ban_until,
        ) {
            tracing::info!(
                %prefix,
                ban_seconds = until.saturating_duration_since(now).as_secs(),
                "network banned: score at or below prefix_ban_threshold"
            );
        }
    }

    /// Bans `id` until `now + duration` (or later, if already banned
    /// longer) and returns the end of the ban; the ban is charged to the
    /// peer's network as `-ban_threshold` points. A banned peer is neither
    /// dialed nor admitted; the caller disconnects it if connected.
    pub fn ban(&mut self, id: PeerId, duration: Duration, now: Instant) -> Instant {
        self.observe(now);
        let until = self.ban_until(id, duration, now);
        if let Some(ip) = self.peers.get(&id).and_then(|p| p.ip) {
            let points = (-(self.config.ban_threshold as f64)).max(0.0);
            self.charge_network(ip, points, now);
        }
        until
    }

    fn ban_until(&mut self, id: PeerId, duration: Duration, now: Instant) -> Instant {
        let until = instant_after(now, duration.min(MAX_BAN_DURATION));
        self.insert_ban(id, until, now)
    }

    /// Puts `id`'s ban in the book (the later end wins), making room if
    /// the book is full; returns the end in force.
    fn insert_ban(&mut self, id: PeerId, mut until: Instant, now: Instant) -> Instant {
        self.bans_changed = true;
        if let Some(&existing) = self.bans.get(&id) {
            until = until.max(existing);
        } else {
            let max = self.tables.capacity().max(1);
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
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.ban_ends = Some(until);
        }
        until
    }

    /// Whether `id`'s score lets it connect: persistent peers always;
    /// others while their score is above `disconnect_threshold` (a penalty
    /// counts against the next connections until it decays). A peer whose
    /// ban has ended has served its sentence: its score is lifted to just
    /// above the threshold, so it is let in on its last chance, and its
    /// next offence disconnects it again.
    fn score_admits(&mut self, id: PeerId, now: Instant) -> bool {
        let threshold = self.config.disconnect_threshold;
        let half_life = self.config.score_half_life;
        let Some(peer) = self.peers.get_mut(&id) else {
            return true;
        };
        if peer.persistent {
            return true;
        }
        if peer.ban_ends.is_some_and(|end| end <= now) {
            peer.ban_ends = None;
            let floor = threshold as f64 + 1.0;
            if peer.score.at(now, half_life) < floor {
                peer.score.set(floor, now);
            }
        }
        peer.score.rounded(now, half_life) > threshold
    }

    /// Whether `id` came from a trusted source (the config, the operator)
    /// or is persistent: a failure to reach it is worth telling.
    pub fn is_trusted(&self, id: PeerId) -> bool {
        self.peers
            .get(&id)
            .is_some_and(|p| p.trusted || p.persistent)
    }

    /// Restores bans read from the store at start (see
    /// [`PeerStore::load_bans`](crate::peer_store::PeerStore::load_bans)):
    /// each `(peer, end)` still in force at the latest instant seen is put
    /// back, without charging the peer's network again. Ends are capped at
    /// [`MAX_BAN_DURATION`] from now. Not marked changed.
    pub fn load_bans(&mut self, bans: impl IntoIterator<Item = (PeerId, Instant)>) {
        let now = self.now;
        let cap = instant_after(now, MAX_BAN_DURATION);
        for (id, until) in bans {
            if until > now && id != self.local {
                self.insert_ban(id, until.min(cap), now);
            }
        }
        self.bans_changed = false;
    }

    /// The bans in force at `now`: each banned peer and when its ban ends,
    /// in PeerId order.
    pub fn bans(&self, now: Instant) -> Vec<(PeerId, Instant)> {
        self.bans
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(id, until)| (*id, *until))
            .collect()
    }

    /// Lifts `id`'s ban; returns whether it was banned. The peer comes back
    /// as after a ban that ended: on its last chance (its score lifted to
    /// just above `disconnect_threshold` at its next admission).
    pub fn unban(&mut self, id: PeerId, now: Instant) -> bool {
        self.observe(now);
        let Some(until) = self.bans.remove(&id) else {
            return false;
        };
        self.bans_changed = true;
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.ban_ends = Some(now);
        }
        until > now
    }

    /// Whether a ban was added, lengthened or lifted since the last call:
    /// then the store's bans need saving ([`bans`](Self::bans)).
    pub fn take_bans_changed(&mut self) -> bool {
        std::mem::take(&mut self.bans_changed)
    }

    /// How long `id`'s ban still lasts at `now`, if it is banned.
    pub fn ban_remaining(&self, id: PeerId, now: Instant) -> Option<Duration> {
        self.bans
            .get(&id)
            .filter(|until| **until > now)
            .map(|until| until.saturating_duration_since(now))
    }

    /// Whether `id` is banned at `now`.
    pub fn is_banned(&self, id: PeerId, now: Instant) -> bool {
        self.bans.get(&id).is_some_and(|until| *until > now)
    }

    /// Whether `ip`'s network (IPv4 /24, IPv6 /48) is banned at `now`.
    pub fn is_prefix_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.prefixes.is_banned(IpPrefix::of(ip), now)
    }

    /// The score of `ip`'s network (zero or less: the penalties charged to
    /// it, decaying), at the latest instant seen.
    pub fn prefix_score(&self, ip: IpAddr) -> i64 {
        self.prefixes.score(IpPrefix::of(ip), self.now).round() as i64
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

    /// Peers in the address book's new table (heard of) and tried table
    /// (dialed successfully).
    pub fn table_sizes(&self) -> (usize, usize) {
        (self.tables.len(Table::New), self.tables.len(Table::Tried))
    }

    /// `id`'s known addresses, in order.
    pub fn addresses(&self, id: PeerId) -> Vec<PeerAddress> {
        self.peers
            .get(&id)
            .map(|p| p.addresses.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Up to `max` addresses, one per peer, in random order: peers that are
    /// not banned, not `exclude`, with a score that is not negative and an
    /// address others may use (public unless `allow_private_addresses`, not
    /// in a banned network). Peer exchange hands these out.
    pub fn sample_addresses(
        &mut self,
        max: usize,
        exclude: Option<PeerId>,
        now: Instant,
    ) -> Vec<PeerAddress> {
        self.observe(now);
        let private_ok = self.config.allow_private_addresses;
        let mut candidates: Vec<PeerAddress> = self
            .peers
            .iter()
            .filter(|(id, p)| {
                Some(**id) != exclude && self.score_now(p) >= 0 && !self.is_banned(**id, now)
            })
            .filter_map(|(_, p)| {
                p.addresses
                    .iter()
                    .find(|a| screen::check(a, private_ok).is_ok() && !self.in_banned_prefix(a))
                    .cloned()
            })
            .collect();
        candidates.shuffle(&mut self.rng);
        candidates.truncate(max);
        candidates
    }

    /// Peers in the book (with or without addresses).
    pub fn known_peers(&self) -> usize {
        self.peers.len()
    }

    /// `id`'s score (decayed to the latest instant seen), if known.
    pub fn score(&self, id: PeerId) -> Option<i64> {
        self.peers.get(&id).map(|p| self.score_now(p))
    }

    /// Records changed since the last call, to save to the store
    /// (write-behind). Call it together with
    /// [`take_forgotten`](Self::take_forgotten).
    pub fn take_dirty(&mut self) -> Vec<PeerRecord> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|id| self.peers.get(&id).map(|p| self.record(id, p)))
            .collect()
    }

    /// Peers forgotten since the last call, to remove from the store. If
    /// more than the tables' capacity pile up between calls the rest are
    /// not listed (their stale records are screened and placed again at the
    /// next `load`).
    pub fn take_forgotten(&mut self) -> Vec<PeerId> {
        std::mem::take(&mut self.forgotten).into_iter().collect()
    }

    /// Every record worth persisting: peers with addresses or a non-zero
    /// score, and persistent peers.
    pub fn records(&self) -> Vec<PeerRecord> {
        self.peers
            .iter()
            .filter(|(_, p)| p.persistent || !p.addresses.is_empty() || self.score_now(p) != 0)
            .map(|(id, p)| self.record(*id, p))
            .collect()
    }

    fn record(&self, id: PeerId, peer: &Peer) -> PeerRecord {
        PeerRecord {
            peer: id,
            addresses: peer.addresses.iter().cloned().collect(),
            persistent: peer.persistent,
            score: self.score_now(peer),
        }
    }

    /// Which table `id` sits in, if any.
    #[cfg(test)]
    pub(crate) fn table_of(&self, id: PeerId) -> Option<Table> {
        self.peers.get(&id).and_then(|p| p.slot).map(|s| s.table)
    }

    /// Checks that the slot counters match the peers' states, that every
    /// non-persistent peer with an address sits in its bucket and nothing
    /// else does, and that the per-host counts match the book.
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
            slots.inbound_per_prefix, self.slots.inbound_per_prefix,
            "per-prefix counts"
        );
        assert!(self.dirty.iter().all(|id| self.peers.contains_key(id)));
        let mut placed = 0;
        for (id, peer) in &self.peers {
            let should = !peer.persistent && !peer.addresses.is_empty();
            assert_eq!(peer.slot.is_some(), should, "{id}: slot {:?}", peer.slot);
            if let Some(slot) = peer.slot {
                assert!(
                    self.tables.bucket(slot).contains(id),
                    "{id} not in its bucket"
                );
                placed += 1;
            }
        }
        assert_eq!(
            self.tables.len(Table::New) + self.tables.len(Table::Tried),
            placed,
            "table entries"
        );
        let mut hosts: BTreeMap<Host, BTreeSet<(Option<u16>, PeerId)>> = BTreeMap::new();
        for peer in self.peers.values() {
            for address in &peer.addresses {
                host_insert(&mut hosts, address);
            }
        }
        assert_eq!(hosts, self.hosts, "per-host endpoints");
    }
}

/// Counts `address` in its host's endpoints.
fn host_insert(hosts: &mut BTreeMap<Host, BTreeSet<(Option<u16>, PeerId)>>, address: &PeerAddress) {
    if let Some((host, port)) = address.host_port() {
        hosts.entry(host).or_default().insert((port, address.peer));
    }
}

/// Stops counting `address` in its host's endpoints.
fn host_remove(hosts: &mut BTreeMap<Host, BTreeSet<(Option<u16>, PeerId)>>, address: &PeerAddress) {
    if let Some((host, port)) = address.host_port()
        && let Some(endpoints) = hosts.get_mut(&host)
    {
        endpoints.remove(&(port, address.peer));
        if endpoints.is_empty() {
            hosts.remove(&host);
        }
    }
}

/// `now + delay`, saturating at a far future instead of panicking on
/// overflow (e.g. a `Duration::MAX` ban).
fn instant_after(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}
