//! The sans-IO core of peer exchange: fed with peer updates, messages and
//! ticks, it returns [`Action`]s for a driver to carry out. No clock, no
//! I/O, no tokio: time comes in as arguments, randomness from a seed.
//! [`PexState`] implements [`Core`]: the one driver runs it on the router,
//! the one simulated network in the simulator. Its effects ([`Effect`]) are
//! the address book's: sample addresses for a requester, add what a peer
//! told us; their results come back as [`Outcome`]s.
//!
//! ```
//! use std::time::Instant;
//! use p2p_core::{Keypair, PeerUp};
//! use reactor_pex_proto::{Action, Message, PexConfig, PexState};
//!
//! let peer = Keypair::from_seed(1).peer_id();
//! let now = Instant::now();
//! let mut pex = PexState::new(PexConfig::default(), 7, now);
//! // A peer comes up while we have fewer than `min_peers`: ask it at once.
//! let actions = pex.on_peer_up(PeerUp::new(peer), 1, now);
//! assert!(matches!(
//!     actions.as_slice(),
//!     [Action::Send { to, message: Message::Request { .. } }] if *to == peer
//! ));
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use p2p_core::reactor::{Core, CoreInput, Input, Output, Outputs, SendFailure};
use p2p_core::{AddAddressError, AddressError, PeerAddress, PeerError, PeerId};
use rand::SeedableRng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha12Rng;

use crate::address_check::{self, AddressRefusal};
use crate::config::PexConfig;
use crate::observed::ObservedIp;
use crate::proto;
use crate::stats::PexStats;
use crate::{MAX_ADDRESS_LEN, MAX_ADDRESSES_PER_RESPONSE};

/// Score a request sent sooner than `min_request_gap` costs.
pub const FLOOD_PENALTY: i64 = 10;
/// Score a response nobody asked for costs.
pub const UNSOLICITED_PENALTY: i64 = 10;
/// Score a response with an unparsable address costs.
pub const MALFORMED_PENALTY: i64 = 20;
/// Addresses taken from one peer's `Hello` at most (the router refuses a
/// `Hello` with more than 32).
pub const MAX_ANNOUNCED_ADDRESSES: usize = 32;

/// Above this many entries, the map of served requesters is pruned of
/// expired entries on each request (otherwise on each tick).
const PRUNE_SERVED_AT: usize = 1024;

/// In seed mode, how long an inbound peer stays after we answered its
/// request: time for the response to leave before the goodbye.
pub const SEED_LINGER: Duration = Duration::from_secs(2);
/// In seed mode, how long an inbound peer that asks nothing may stay.
pub const SEED_MAX_STAY: Duration = Duration::from_secs(30);

/// The channel name in reports.
const CHANNEL: &str = "pex";

/// A peer exchange message, as the core sees it. The wire form is
/// [`proto::PexMessage`]; the two convert both ways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// "Send me some addresses you know."
    Request {
        /// Echoed in the response.
        id: u64,
    },
    /// The answer to request `id`.
    Response {
        /// The request's id.
        id: u64,
        /// Peer addresses in text form.
        addresses: Vec<String>,
        /// The IP the responder sees the requester's connection come from,
        /// if it has one ([`crate::observed`]).
        observed: Option<IpAddr>,
    },
}

impl From<Message> for proto::PexMessage {
    fn from(message: Message) -> Self {
        let kind = match message {
            Message::Request { id } => proto::pex_message::Kind::Request(proto::Request { id }),
            Message::Response {
                id,
                addresses,
                observed,
            } => proto::pex_message::Kind::Response(proto::Response {
                id,
                addresses,
                observed_ip: observed.map(ip_bytes).unwrap_or_default(),
            }),
        };
        proto::PexMessage { kind: Some(kind) }
    }
}

impl Message {
    /// The message in `wire`, or `None` if it carries no kind this node
    /// knows (a newer peer's message: ignored, not a violation).
    pub fn from_wire(wire: proto::PexMessage) -> Option<Self> {
        match wire.kind? {
            proto::pex_message::Kind::Request(r) => Some(Message::Request { id: r.id }),
            proto::pex_message::Kind::Response(r) => Some(Message::Response {
                id: r.id,
                addresses: r.addresses,
                // Anything but 4 or 16 bytes says nothing (an empty field:
                // the responder has no IP for us, or is older).
                observed: ip_from_bytes(&r.observed_ip),
            }),
        }
    }
}

/// An IP's wire form: 4 bytes (IPv4) or 16 (IPv6).
fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// An IP from its wire form; `None` unless 4 or 16 bytes.
fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// What the core asks its driver to do: the reactor [`Output`], with
/// pex's [`Effect`]s and no events.
pub type Action = Output<Message, std::convert::Infallible, Effect>;

/// What only pex's driver can do: the address book's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Answer `to`'s request `id`: sample up to `max` addresses from the
    /// address book, never `to`'s own (`Router::sample_addresses(max,
    /// Some(to))`), and hand them back as [`Outcome::Sampled`].
    Sample {
        /// The requester.
        to: PeerId,
        /// Its request's id.
        id: u64,
        /// Addresses wanted at most.
        max: usize,
    },
    /// Add these addresses, which `from` told us, to the address book as
    /// `AddressSource::ExchangeFrom(from)` (the peer manager screens them),
    /// and hand the results back as [`Outcome::Added`].
    AddAddresses {
        /// The peer that told us: its network decides which buckets of the
        /// address book the addresses may reach.
        from: PeerId,
        /// The addresses.
        addresses: Vec<PeerAddress>,
    },
    /// Peers now agree we are at `ip` (`None`: they no longer do):
    /// announce it with our listen ports (`Router::set_observed_ip`),
    /// unless external addresses are configured. No outcome.
    Announce {
        /// The IP agreed on.
        ip: Option<IpAddr>,
    },
}

/// The result of an [`Effect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The addresses sampled for `to`'s request `id`.
    Sampled {
        /// The requester.
        to: PeerId,
        /// Its request's id.
        id: u64,
        /// The sample.
        addresses: Vec<PeerAddress>,
    },
    /// The peer manager's verdict on each address of an
    /// [`Effect::AddAddresses`], in order.
    Added(Vec<Result<bool, AddAddressError>>),
}

pub use p2p_core::reactor::PeerUp;

/// Our latest request to one peer.
#[derive(Debug, Clone, Copy)]
struct Asked {
    id: u64,
    at: Instant,
    answer: Answer,
    /// The request before this one, if we gave up on it: its answer is
    /// late, not unsolicited.
    gave_up: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Awaited (until `request_interval` has passed).
    Outstanding,
    /// Received: a second one is unsolicited.
    Received,
    /// Given up: a late one is ignored, not reported.
    GaveUp,
}

#[derive(Debug, Default)]
struct Peer {
    serves_pex: bool,
    /// The IP its connection comes from, told back in our answers.
    ip: Option<IpAddr>,
}

/// The peer exchange state machine of one node.
///
/// Feed it every event — [`on_peer_up`](Self::on_peer_up),
/// [`on_peer_down`](Self::on_peer_down), [`on_message`](Self::on_message)
/// (or [`on_request`](Self::on_request) / [`on_response`](Self::on_response)),
/// [`on_tick`](Self::on_tick) at [`next_wakeup`](Self::next_wakeup) — and
/// the results of the work it asked for ([`on_sample`](Self::on_sample),
/// [`on_added`](Self::on_added)); carry out the [`Action`]s it returns.
/// The same seed and the same calls give the same actions.
#[derive(Debug)]
pub struct PexState {
    config: PexConfig,
    rng: ChaCha12Rng,
    /// Connected peers, from `on_peer_up` to `on_peer_down`.
    peers: BTreeMap<PeerId, Peer>,
    /// Our latest request to each peer. It outlives the connection it was
    /// sent on (for `request_interval`): a connection replaced by a
    /// simultaneous one must neither make us ask too soon nor make the
    /// answer look unsolicited. For connected peers it also orders the
    /// round robin.
    asked: BTreeMap<PeerId, Asked>,
    /// When we last served each requester; kept across reconnections, so
    /// reconnecting does not reset the rate limit. Dropped after
    /// `min_request_gap`.
    served: BTreeMap<PeerId, Instant>,
    /// Connected peers as the driver last counted them.
    connected: usize,
    started: Instant,
    /// When the periodic request was last due (sent or not).
    last_attempt: Option<Instant>,
    /// When a due request found nobody to ask: the soonest someone may be
    /// asked.
    retry_at: Option<Instant>,
    /// Seed mode: when each inbound peer is to be disconnected.
    seed_evictions: BTreeMap<PeerId, Instant>,
    next_id: u64,
    /// What peers tell us about our IP.
    observed: ObservedIp,
    stats: PexStats,
}

impl PexState {
    /// The state of a node, with a checked `config` (see
    /// [`PexConfig::validate`]; out-of-range values are clamped here).
    /// `seed` drives the choice of whom to ask.
    pub fn new(mut config: PexConfig, seed: u64, now: Instant) -> Self {
        config.max_addresses_per_response = config
            .max_addresses_per_response
            .clamp(1, MAX_ADDRESSES_PER_RESPONSE);
        config.min_request_gap = config.min_request_gap.min(config.request_interval);
        let quorum = config.observed_quorum;
        Self {
            config,
            rng: ChaCha12Rng::seed_from_u64(seed),
            peers: BTreeMap::new(),
            asked: BTreeMap::new(),
            served: BTreeMap::new(),
            connected: 0,
            started: now,
            last_attempt: None,
            retry_at: None,
            seed_evictions: BTreeMap::new(),
            next_id: 1,
            observed: ObservedIp::new(quorum),
            stats: PexStats::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &PexConfig {
        &self.config
    }

    /// What has been done so far.
    pub fn stats(&self) -> &PexStats {
        &self.stats
    }

    /// The peers the core believes connected.
    pub fn peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.peers.keys().copied()
    }

    /// When [`on_tick`](Self::on_tick) has work: the next periodic request
    /// or the earliest request timing out.
    pub fn next_wakeup(&self) -> Instant {
        let timeout = self.response_timeout();
        self.asked
            .values()
            .filter(|a| a.answer == Answer::Outstanding)
            .map(|a| after(a.at, timeout))
            .chain(self.seed_evictions.values().copied())
            .chain(self.observed.next_expiry())
            .chain(std::iter::once(self.next_request_at()))
            .min()
            .unwrap_or(self.started)
    }

    /// How long we wait for an answer: one `request_interval`.
    fn response_timeout(&self) -> Duration {
        self.config.request_interval
    }

    /// Time between periodic requests with `connected` peers.
    fn interval(&self) -> Duration {
        if self.connected < self.config.min_peers {
            self.config.request_interval
        } else {
            self.config.request_interval.saturating_mul(10)
        }
    }

    fn next_request_at(&self) -> Instant {
        let periodic = match self.last_attempt {
            None => self.started,
            Some(at) => after(at, self.interval()),
        };
        self.retry_at.map_or(periodic, |retry| retry.min(periodic))
    }

    /// `peer` is connected; `connected` peers are (it included). Adds what
    /// it announced (checked, with an unspecified IP replaced by the
    /// observed one) and asks it for addresses at once if we have fewer
    /// than `min_peers`.
    pub fn on_peer_up(&mut self, up: PeerUp, connected: usize, now: Instant) -> Vec<Action> {
        self.connected = connected;
        let mut actions = Vec::new();
        self.peers.insert(
            up.peer,
            Peer {
                serves_pex: up.serves,
                ip: up.ip,
            },
        );
        if self.config.seed_mode && up.inbound {
            self.seed_evictions
                .insert(up.peer, after(now, SEED_MAX_STAY));
        }
        let announced = self.check_announced(&up);
        if !announced.is_empty() {
            actions.push(Action::Effect(Effect::AddAddresses {
                from: up.peer,
                addresses: announced,
            }));
        }
        if up.serves && connected < self.config.min_peers && self.may_ask(up.peer, now) {
            actions.push(self.request(up.peer, now));
        }
        actions
    }

    /// `peer` disconnected; `connected` peers remain. An answer to a
    /// request sent before is still taken.
    pub fn on_peer_down(&mut self, peer: PeerId, connected: usize) {
        self.connected = connected;
        self.peers.remove(&peer);
        self.seed_evictions.remove(&peer);
    }

    /// A message from `from`, in wire form.
    pub fn on_message(
        &mut self,
        from: PeerId,
        message: proto::PexMessage,
        now: Instant,
    ) -> Vec<Action> {
        match Message::from_wire(message) {
            Some(message) => self.on_decoded(from, message, now),
            None => Vec::new(),
        }
    }

    /// A decoded message from `from`.
    pub fn on_decoded(&mut self, from: PeerId, message: Message, now: Instant) -> Vec<Action> {
        match message {
            Message::Request { id } => self.on_request(from, id, now),
            Message::Response {
                id,
                addresses,
                observed,
            } => {
                let mut actions = self.on_response(from, id, addresses, now);
                if let Some(ip) = observed {
                    self.on_observed(from, ip, now, &mut actions);
                }
                actions
            }
        }
    }

    /// `from` asks for addresses. Answered (by a [`Action::Sample`]) if its
    /// last answered request is at least `min_request_gap` old; otherwise
    /// refused, unanswered and reported.
    pub fn on_request(&mut self, from: PeerId, id: u64, now: Instant) -> Vec<Action> {
        let gap = self.config.min_request_gap;
        if self.served.len() >= PRUNE_SERVED_AT {
            self.served
                .retain(|_, at| now.saturating_duration_since(*at) < gap);
        }
        if let Some(last) = self.served.get(&from) {
            let since = now.saturating_duration_since(*last);
            if since < gap {
                self.stats.requests_refused += 1;
                return vec![Action::Report {
                    peer: from,
                    error: PeerError::Misbehaviour {
                        channel: CHANNEL,
                        reason: format!(
                            "request {since:?} after the last one answered; at most one per {gap:?}"
                        ),
                        penalty: FLOOD_PENALTY,
                    },
                }];
            }
        }
        self.served.insert(from, now);
        self.stats.requests_served += 1;
        if let Some(due) = self.seed_evictions.get_mut(&from) {
            *due = (*due).min(after(now, SEED_LINGER));
        }
        vec![Action::Effect(Effect::Sample {
            to: from,
            id,
            max: self.config.max_addresses_per_response,
        })]
    }

    /// The driver sampled `addresses` for `to`'s request `id`: the answer,
    /// never more than `max_addresses_per_response` addresses.
    /// The answer also tells `to` the IP we see it at.
    pub fn on_sample(&mut self, to: PeerId, id: u64, addresses: Vec<PeerAddress>) -> Vec<Action> {
        let observed = self.peers.get(&to).and_then(|p| p.ip);
        let addresses = addresses
            .into_iter()
            .filter(|a| a.peer != to)
            .map(|a| a.to_string())
            .filter(|a| a.len() <= MAX_ADDRESS_LEN)
            .take(self.config.max_addresses_per_response)
            .collect();
        vec![Action::Send {
            to,
            message: Message::Response {
                id,
                addresses,
                observed,
            },
        }]
    }

    /// `from` answers request `id`. Refused and reported — nothing from it
    /// used — if we did not ask `from` (or asked with another id, or it
    /// already answered), if it has more than 100 addresses or one longer
    /// than 512 bytes (checked first, before any parsing), or if any
    /// address is malformed (an unknown transport scheme is skipped, not
    /// malformed). Otherwise each address is checked and the survivors are
    /// to be added.
    pub fn on_response(
        &mut self,
        from: PeerId,
        id: u64,
        addresses: Vec<String>,
        _now: Instant,
    ) -> Vec<Action> {
        match self.asked.get_mut(&from) {
            Some(asked) if asked.id == id && asked.answer == Answer::Outstanding => {
                asked.answer = Answer::Received;
            }
            Some(asked) if asked.id == id && asked.answer == Answer::GaveUp => {
                asked.answer = Answer::Received;
                self.stats.responses_late += 1;
                return Vec::new();
            }
            Some(asked) if asked.gave_up == Some(id) => {
                asked.gave_up = None;
                self.stats.responses_late += 1;
                return Vec::new();
            }
            _ if !self.peers.contains_key(&from) => {
                // A peer gone whose request we already forgot, or one
                // whose coming up has not reached us: we cannot tell an
                // honest late answer from a bad one; ignore it.
                self.stats.responses_late += 1;
                return Vec::new();
            }
            _ => {
                return self.refuse_response(
                    from,
                    PeerError::Misbehaviour {
                        channel: CHANNEL,
                        reason: format!("response {id} to no outstanding request"),
                        penalty: UNSOLICITED_PENALTY,
                    },
                );
            }
        }
        if addresses.len() > MAX_ADDRESSES_PER_RESPONSE {
            return self.refuse_response(
                from,
                PeerError::Protocol(format!(
                    "pex response with {} addresses; at most {MAX_ADDRESSES_PER_RESPONSE}",
                    addresses.len()
                )),
            );
        }
        if let Some(long) = addresses.iter().find(|a| a.len() > MAX_ADDRESS_LEN) {
            return self.refuse_response(
                from,
                PeerError::Protocol(format!(
                    "pex response with an address of {} bytes; at most {MAX_ADDRESS_LEN}",
                    long.len()
                )),
            );
        }
        let mut parsed = Vec::with_capacity(addresses.len());
        let mut unknown_schemes = 0;
        for text in &addresses {
            match text.parse::<PeerAddress>() {
                Ok(address) => parsed.push(address),
                Err(AddressError::UnknownScheme(_)) => unknown_schemes += 1,
                Err(error) => {
                    return self.refuse_response(
                        from,
                        PeerError::Misbehaviour {
                            channel: CHANNEL,
                            reason: format!("malformed address in response: {error}"),
                            penalty: MALFORMED_PENALTY,
                        },
                    );
                }
            }
        }
        self.stats.responses_accepted += 1;
        for _ in 0..unknown_schemes {
            self.stats
                .addresses_refused
                .add(AddressRefusal::UnknownScheme);
        }
        let mut seen = BTreeSet::new();
        let accepted: Vec<PeerAddress> = parsed
            .into_iter()
            .filter(|address| self.screen(address, &mut seen))
            .collect();
        if accepted.is_empty() {
            Vec::new()
        } else {
            vec![Action::Effect(Effect::AddAddresses {
                from,
                addresses: accepted,
            })]
        }
    }

    /// `from` told us the IP it sees us at, in a response. Counted only if
    /// that response was taken (the last one from `from` answered our
    /// request and broke no rule) and we see `from` at an IP; see
    /// [`crate::observed`].
    fn on_observed(&mut self, from: PeerId, ip: IpAddr, now: Instant, actions: &mut Vec<Action>) {
        let answered = self.asked.get(&from).is_some_and(|a| {
            a.answer == Answer::Received
                && !actions.iter().any(|a| matches!(a, Action::Report { .. }))
        });
        let Some(from_ip) = self
            .peers
            .get(&from)
            .and_then(|p| p.ip)
            .filter(|_| answered)
        else {
            self.stats.observations_refused += 1;
            return;
        };
        let (taken, changed) = self.observed.observe(from, from_ip, ip, now);
        if taken {
            self.stats.observations_taken += 1;
        } else {
            self.stats.observations_refused += 1;
        }
        if let Some(ip) = changed {
            self.stats.observed_ip = ip;
            actions.push(Action::Effect(Effect::Announce { ip }));
        }
    }

    /// The IP peers agree they see us at, if any.
    pub fn observed_ip(&self) -> Option<IpAddr> {
        self.observed.current()
    }

    /// The peer manager's verdict on the addresses of an
    /// [`Action::AddAddresses`], in order: counted (the router counts its
    /// refusals by reason as well).
    pub fn on_added(&mut self, results: &[Result<bool, AddAddressError>]) {
        for result in results {
            match result {
                Ok(true) => self.stats.addresses_learned += 1,
                Ok(false) => self.stats.addresses_known += 1,
                Err(_) => self
                    .stats
                    .addresses_refused
                    .add(AddressRefusal::PeerManager),
            }
        }
    }

    /// Time passed; `connected` peers are connected. Forgets requests that
    /// timed out and, when the periodic request is due, asks the connected
    /// peer we asked least recently (ties broken at random) that has no
    /// request outstanding and was not asked within `min_request_gap`.
    pub fn on_tick(&mut self, now: Instant, connected: usize) -> Vec<Action> {
        self.connected = connected;
        let mut actions: Vec<Action> = Vec::new();
        let due: Vec<PeerId> = self
            .seed_evictions
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            self.seed_evictions.remove(&peer);
            self.stats.seed_disconnects += 1;
            actions.push(Action::Disconnect { peer, ban: None });
        }
        let timeout = self.response_timeout();
        for asked in self.asked.values_mut() {
            if asked.answer == Answer::Outstanding
                && now.saturating_duration_since(asked.at) >= timeout
            {
                asked.answer = Answer::GaveUp;
                self.stats.requests_unanswered += 1;
            }
        }
        let gap = self.config.min_request_gap;
        self.served
            .retain(|_, at| now.saturating_duration_since(*at) < gap);
        if let Some(ip) = self.observed.expire(now) {
            self.stats.observed_ip = ip;
            actions.push(Action::Effect(Effect::Announce { ip }));
        }
        // Connected peers keep their entry (it orders the round robin);
        // others' go once no answer is awaited and the gap has passed.
        let peers = &self.peers;
        self.asked.retain(|p, asked| {
            peers.contains_key(p)
                || (asked.answer == Answer::Outstanding
                    || now.saturating_duration_since(asked.at) < gap)
        });
        if now < self.next_request_at() {
            return actions;
        }
        self.last_attempt = Some(now);
        match self.pick(now) {
            Some(peer) => {
                self.retry_at = None;
                actions.push(self.request(peer, now));
            }
            None => {
                // Everyone is waiting for an answer or was asked lately:
                // try again as soon as one of them may be asked.
                self.retry_at = self.soonest_askable();
            }
        }
        actions
    }

    /// When the first connected pex peer that may not be asked now may be.
    fn soonest_askable(&self) -> Option<Instant> {
        let timeout = self.response_timeout();
        let gap = self.config.min_request_gap;
        self.peers
            .iter()
            .filter(|(_, p)| p.serves_pex)
            .filter_map(|(id, _)| self.asked.get(id))
            .map(|asked| match asked.answer {
                Answer::Outstanding => after(asked.at, timeout),
                Answer::Received | Answer::GaveUp => after(asked.at, gap),
            })
            .min()
    }

    /// Whether we may ask `peer` now: it serves pex, has no request
    /// outstanding, and we have not asked it within `min_request_gap`.
    fn may_ask(&self, peer: PeerId, now: Instant) -> bool {
        let Some(entry) = self.peers.get(&peer) else {
            return false;
        };
        entry.serves_pex
            && self.asked.get(&peer).is_none_or(|asked| {
                asked.answer != Answer::Outstanding
                    && now.saturating_duration_since(asked.at) >= self.config.min_request_gap
            })
    }

    /// The askable peer asked least recently (never asked first), ties at
    /// random.
    fn pick(&mut self, now: Instant) -> Option<PeerId> {
        let askable: Vec<(Option<Instant>, PeerId)> = self
            .peers
            .keys()
            .filter(|p| self.may_ask(**p, now))
            .map(|p| (self.asked.get(p).map(|a| a.at), *p))
            .collect();
        let oldest = askable.iter().map(|(at, _)| *at).min()?;
        let ties: Vec<PeerId> = askable
            .into_iter()
            .filter(|(at, _)| *at == oldest)
            .map(|(_, p)| p)
            .collect();
        ties.choose(&mut self.rng).copied()
    }

    fn request(&mut self, peer: PeerId, now: Instant) -> Action {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let gave_up = self
            .asked
            .get(&peer)
            .filter(|a| a.answer == Answer::GaveUp)
            .map(|a| a.id);
        self.asked.insert(
            peer,
            Asked {
                id,
                at: now,
                answer: Answer::Outstanding,
                gave_up,
            },
        );
        self.stats.requests_sent += 1;
        Action::Send {
            to: peer,
            message: Message::Request { id },
        }
    }

    fn refuse_response(&mut self, from: PeerId, error: PeerError) -> Vec<Action> {
        self.stats.responses_refused += 1;
        vec![Action::Report { peer: from, error }]
    }

    /// The checked addresses `up.peer` announced: at most
    /// [`MAX_ANNOUNCED_ADDRESSES`], each naming the peer itself. Bad
    /// announcements are counted, not reported: the `Hello` is the
    /// router's business.
    fn check_announced(&mut self, up: &PeerUp) -> Vec<PeerAddress> {
        let mut seen = BTreeSet::new();
        let mut accepted = Vec::new();
        for text in up.addresses.iter().take(MAX_ANNOUNCED_ADDRESSES) {
            let address = match text.parse::<PeerAddress>() {
                Ok(address) => address,
                Err(AddressError::UnknownScheme(_)) => {
                    self.refuse_address(AddressRefusal::UnknownScheme);
                    continue;
                }
                Err(_) => {
                    self.refuse_address(AddressRefusal::Malformed);
                    continue;
                }
            };
            if address.peer != up.peer {
                self.refuse_address(AddressRefusal::ForeignPeer);
                continue;
            }
            let address = up
                .ip
                .and_then(|ip| address_check::with_observed_ip(&address, ip.to_canonical()))
                .unwrap_or(address);
            if self.screen(&address, &mut seen) {
                accepted.push(address);
            }
        }
        accepted
    }

    /// The check of the message: an address not seen earlier in it
    /// (`seen`). Everything else — ourselves, reachability, private
    /// addresses, the per-host limit, bans — is the peer manager's one
    /// screen, which every reactor's addresses pass. Counts refusals.
    fn screen(&mut self, address: &PeerAddress, seen: &mut BTreeSet<PeerAddress>) -> bool {
        if seen.insert(address.clone()) {
            true
        } else {
            self.refuse_address(AddressRefusal::Duplicate);
            false
        }
    }

    fn refuse_address(&mut self, reason: AddressRefusal) {
        self.stats.addresses_refused.add(reason);
    }
}

/// The one reactor shape (see [`p2p_core::reactor`]). Pex takes no
/// application commands and tells the application nothing but its
/// counters ([`PexState::stats`]); the number of connected peers it
/// counts from `PeerUp`/`PeerDown` (the driver announces every peer, pex
/// or not).
impl Core for PexState {
    type Message = Message;
    type Wire = proto::PexMessage;
    type Command = std::convert::Infallible;
    type Reply = ();
    type Event = std::convert::Infallible;
    type Effect = Effect;
    type Outcome = Outcome;

    fn handle(&mut self, now: Instant, input: CoreInput<Self>, out: &mut Outputs<Self>) {
        match input {
            Input::PeerUp(up) => {
                let connected = self.peers.len() + usize::from(!self.peers.contains_key(&up.peer));
                out.extend(self.on_peer_up(up, connected, now));
            }
            Input::PeerDown(peer) => {
                let connected = self.peers.len() - usize::from(self.peers.contains_key(&peer));
                self.on_peer_down(peer, connected);
            }
            Input::Message { from, message, .. } => out.extend(self.on_decoded(from, message, now)),
            // Every pex message decodes: nothing is malformed at this level
            // (the router already refused what does not parse).
            Input::Malformed { from, error } => out.push(Output::Report { peer: from, error }),
            Input::Timer => {
                let connected = self.peers.len();
                out.extend(self.on_tick(now, connected));
            }
            // A dropped request times out; a dropped response is the
            // requester's loss (the router counted the drop).
            Input::SendFailed { reason, .. } => {
                if reason != SendFailure::NotConnected {
                    self.stats.sends_dropped += 1;
                }
            }
            // Pex never dials.
            Input::DialFailed(_) => {}
            Input::Outcome(Outcome::Sampled { to, id, addresses }) => {
                out.extend(self.on_sample(to, id, addresses));
            }
            Input::Outcome(Outcome::Added(results)) => self.on_added(&results),
        }
    }

    fn command(&mut self, _now: Instant, command: Self::Command, _out: &mut Outputs<Self>) {
        match command {}
    }

    fn next_wakeup(&self) -> Option<Instant> {
        Some(PexState::next_wakeup(self))
    }

    fn decode(&self, wire: proto::PexMessage) -> Result<Option<Message>, PeerError> {
        Ok(Message::from_wire(wire))
    }

    fn encode(message: Message) -> proto::PexMessage {
        message.into()
    }

    fn wire_size(&self, message: &Message) -> usize {
        use prost::Message as _;
        proto::PexMessage::from(message.clone()).encoded_len()
    }
}

/// `at + delay`, saturating instead of panicking on overflow.
fn after(at: Instant, delay: Duration) -> Instant {
    at.checked_add(delay)
        .or_else(|| at.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(at)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
