//! The sans-IO core of gossip: [`GossipState`] is fed peer updates,
//! messages, timers and commands as a [`Core`](p2p_core::reactor::Core)
//! (see [`core`]) and answers with [`GossipOutput`]s for a driver to carry
//! out. No clock, no I/O, no tokio: time comes in as arguments, randomness
//! from a seed. The same core runs in the `reactor-gossip` reactor and in
//! the simulator (the `reactor-gossip-sim` crate).
//!
//! # Connections
//!
//! A topic's active view is a set of peers we hold connections to; the
//! router owns the connections. The core keeps track of which peers are
//! connected ([`Input::PeerUp`](p2p_core::reactor::Input::PeerUp) /
//! [`Input::PeerDown`](p2p_core::reactor::Input::PeerDown), and any
//! message received proves one). A message for a peer without a
//! connection is held and [`Output::Connect`] asks the driver to dial; a
//! connection the core asked for and no longer needs is given back with
//! [`Output::Disconnect`] (see `connections.rs`).

pub mod message;

mod bucket;
mod connections;
pub mod core;
pub mod estimate;
mod hyparview;
mod plumtree;
mod topic;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use p2p_core::reactor::{Output, Outputs};
use p2p_core::{Keypair, PeerAddress, PeerError, PeerId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::config::GossipConfig;
use crate::stats::GossipStats;
use connections::{Candidates, Connections, Down, emit_send};
use message::{Contact, Message, MessageId, SignedMessage, TopicId, TopicMessage};
use topic::Topic;

pub use plumtree::FORGED_PENALTY;

/// How often ids and payloads are expired and idle connections released.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// A message delivered to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The topic.
    pub topic: TopicId,
    /// The message's id.
    pub id: MessageId,
    /// Who published it (its signature was checked).
    pub origin: PeerId,
    /// The application's bytes.
    pub payload: Bytes,
    /// Links it travelled to reach us (1: straight from the origin).
    pub hops: u32,
    /// The origin's clock when it published, in ms since the Unix epoch.
    pub timestamp_ms: u64,
}

/// What the core tells the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message, delivered at most once per node.
    Received(Delivery),
    /// `peer` entered the topic's active view.
    NeighborUp {
        /// The topic.
        topic: TopicId,
        /// The neighbour.
        peer: PeerId,
    },
    /// `peer` left the topic's active view.
    NeighborDown {
        /// The topic.
        topic: TopicId,
        /// The neighbour.
        peer: PeerId,
    },
}

/// What the gossip core asks its driver to do: send (never waiting: a
/// full queue drops the message), connect (a peer it needs and is not
/// connected to; if it never comes up the core gives up after
/// `dial_timeout`), disconnect (a connection the core asked for and no
/// topic needs any more), report a peer's misbehaviour, or tell the
/// application an [`Event`]. Gossip broadcasts nothing to every peer and
/// has no effects.
pub type GossipOutput = Output<TopicMessage, Event, ()>;

/// Why a topic could not be joined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// `max_topics` topics are joined already.
    #[error("already in {max} topics, the most allowed (max_topics)")]
    TooManyTopics {
        /// The limit.
        max: usize,
    },
}

/// Why a message could not be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The topic is not joined.
    #[error("topic {0:?} is not joined")]
    NotJoined(TopicId),
    /// The payload exceeds `max_payload_size`.
    #[error("payload of {size} bytes exceeds max_payload_size {max}")]
    TooLarge {
        /// The payload's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The topic's seen-cache holds `max_seen` ids, none expired yet:
    /// nothing new is accepted until some expire (`seen_retention`).
    #[error("the topic has seen {max} messages within seen_retention (max_seen); try again later")]
    Busy {
        /// The limit (`plumtree.max_seen`).
        max: usize,
    },
}

/// What a topic asks of the node (internal).
#[derive(Debug)]
pub(crate) enum TopicOut {
    Send {
        to: PeerId,
        dial: Vec<PeerAddress>,
        message: Message,
    },
    NeighborUp(PeerId),
    NeighborDown(PeerId),
    Deliver(Delivery),
    Report {
        peer: PeerId,
        error: PeerError,
    },
}

/// What a topic's step gets: the time, randomness, counters and where to
/// put its outputs.
pub(crate) struct Ctx<'a> {
    pub(crate) now: Instant,
    pub(crate) unix_ms: u64,
    pub(crate) rng: &'a mut ChaCha12Rng,
    pub(crate) stats: &'a mut GossipStats,
    pub(crate) out: &'a mut Vec<TopicOut>,
}

impl Ctx<'_> {
    /// Sends `message` to `to`, dialing its addresses if not connected.
    pub(crate) fn send(&mut self, to: Contact, message: Message) {
        self.out.push(TopicOut::Send {
            to: to.peer,
            dial: to.addresses,
            message,
        });
    }
}

/// The gossip core of one node: every topic it joined, and its
/// connections.
#[derive(Debug)]
pub struct GossipState {
    keypair: Keypair,
    me: Contact,
    config: GossipConfig,
    rng: ChaCha12Rng,
    /// An instant and the Unix time (ms) it stands for.
    epoch: (Instant, u64),
    topics: BTreeMap<TopicId, Topic>,
    connections: Connections,
    stats: GossipStats,
    next_housekeeping: Instant,
}

impl GossipState {
    /// A node signing as `keypair`, dialable at `addresses`, with `config`
    /// (assumed valid: see [`GossipConfig::validate`]). `seed` drives every
    /// random choice; `now` is the instant the wall clock read `unix_ms`
    /// (milliseconds since the Unix epoch) — origin timestamps are taken
    /// and checked against it.
    pub fn new(
        keypair: Keypair,
        addresses: Vec<PeerAddress>,
        config: GossipConfig,
        seed: u64,
        now: Instant,
        unix_ms: u64,
    ) -> Self {
        let me = Contact {
            peer: keypair.peer_id(),
            addresses,
        };
        Self {
            keypair,
            me,
            connections: Connections::new(&config),
            config,
            rng: ChaCha12Rng::seed_from_u64(seed),
            epoch: (now, unix_ms),
            topics: BTreeMap::new(),
            stats: GossipStats::default(),
            next_housekeeping: now + HOUSEKEEPING_INTERVAL,
        }
    }

    /// This node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.me.peer
    }

    /// The configuration.
    pub fn config(&self) -> &GossipConfig {
        &self.config
    }

    /// Counters so far.
    pub fn stats(&self) -> &GossipStats {
        &self.stats
    }

    /// The topics joined.
    pub fn topics(&self) -> impl Iterator<Item = TopicId> + '_ {
        self.topics.keys().copied()
    }

    /// Whether `topic` is joined.
    pub fn is_joined(&self, topic: &TopicId) -> bool {
        self.topics.contains_key(topic)
    }

    /// `topic`'s active view (its neighbours), empty if not joined.
    pub fn active_view(&self, topic: &TopicId) -> Vec<PeerId> {
        self.topics
            .get(topic)
            .map(|t| t.membership.active().collect())
            .unwrap_or_default()
    }

    /// `topic`'s passive view, empty if not joined.
    pub fn passive_view(&self, topic: &TopicId) -> Vec<PeerId> {
        self.topics
            .get(topic)
            .map(|t| t.membership.passive().collect())
            .unwrap_or_default()
    }

    /// `topic`'s eager (tree) links.
    pub fn eager_peers(&self, topic: &TopicId) -> Vec<PeerId> {
        self.topics
            .get(topic)
            .map(|t| t.tree.eager().collect())
            .unwrap_or_default()
    }

    /// `topic`'s lazy links.
    pub fn lazy_peers(&self, topic: &TopicId) -> Vec<PeerId> {
        self.topics
            .get(topic)
            .map(|t| t.tree.lazy().collect())
            .unwrap_or_default()
    }

    /// The estimated number of `topic`'s members (see [`estimate`]), if
    /// joined and estimation is on.
    pub fn size_estimate(&self, topic: &TopicId) -> Option<f64> {
        self.topics
            .get(topic)
            .and_then(|t| t.size.as_ref())
            .map(|s| s.estimate())
    }

    /// Whether message `id` on `topic` was delivered or published here
    /// (and is still remembered).
    pub fn has_seen(&self, topic: &TopicId, id: &MessageId) -> bool {
        self.topics.get(topic).is_some_and(|t| t.tree.has_seen(id))
    }

    /// Whether the core counts `peer` as connected.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.connections.is_connected(peer)
    }

    /// Peers counted as connected.
    pub fn connected_peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.connections.peers()
    }

    /// Connections asked for and not yet up.
    pub fn pending_dials(&self) -> usize {
        self.connections.pending_dials()
    }

    /// Milliseconds since the Unix epoch at `now`.
    pub fn unix_ms(&self, now: Instant) -> u64 {
        let (instant, unix) = self.epoch;
        let elapsed = now.saturating_duration_since(instant).as_millis() as u64;
        let before = instant.saturating_duration_since(now).as_millis() as u64;
        (unix + elapsed).saturating_sub(before)
    }

    /// When [`on_tick`](Self::on_tick) has something to do next (the
    /// core's [`next_wakeup`](p2p_core::reactor::Core::next_wakeup)).
    fn wakeup(&self) -> Instant {
        let mut at = self.next_housekeeping;
        if let Some(dial) = self.connections.next_deadline() {
            at = at.min(dial);
        }
        for topic in self.topics.values() {
            at = at.min(topic.next_deadline());
        }
        at
    }

    /// Runs `step` on topic `id` (if joined) and turns what it asked for
    /// into actions.
    fn with_topic(
        &mut self,
        id: TopicId,
        now: Instant,
        actions: &mut Vec<GossipOutput>,
        step: impl FnOnce(&mut Topic, &mut Ctx<'_>),
    ) {
        let unix_ms = self.unix_ms(now);
        let Some(topic) = self.topics.get_mut(&id) else {
            return;
        };
        let mut out = Vec::new();
        let mut ctx = Ctx {
            now,
            unix_ms,
            rng: &mut self.rng,
            stats: &mut self.stats,
            out: &mut out,
        };
        step(topic, &mut ctx);
        self.apply(id, out, now, actions);
    }

    fn apply(
        &mut self,
        topic: TopicId,
        out: Vec<TopicOut>,
        now: Instant,
        actions: &mut Vec<GossipOutput>,
    ) {
        for item in out {
            match item {
                TopicOut::Send { to, dial, message } => {
                    if to == self.me.peer {
                        continue;
                    }
                    self.connections.send(
                        to,
                        dial,
                        TopicMessage { topic, message },
                        now,
                        &mut self.stats,
                        actions,
                    );
                }
                TopicOut::NeighborUp(peer) => {
                    actions.push(Output::Event(Event::NeighborUp { topic, peer }))
                }
                TopicOut::NeighborDown(peer) => {
                    actions.push(Output::Event(Event::NeighborDown { topic, peer }))
                }
                TopicOut::Deliver(delivery) => {
                    actions.push(Output::Event(Event::Received(delivery)))
                }
                TopicOut::Report { peer, error } => actions.push(Output::Report { peer, error }),
            }
        }
    }

    /// Joins `topic` through one of `bootstrap` (members, or peers that
    /// may be; the others are kept for retries). A contact without
    /// addresses that is connected gets the addresses its connection
    /// announced. Joining a topic already joined adds the contacts and,
    /// with an empty active view, tries again. With no contact at all, the
    /// node retries through any connected peer every
    /// `join_retry_interval`.
    pub fn join(
        &mut self,
        topic: TopicId,
        bootstrap: Vec<Contact>,
        now: Instant,
        out: &mut Outputs<Self>,
    ) -> Result<(), JoinError> {
        if !self.topics.contains_key(&topic) {
            if self.topics.len() >= self.config.max_topics {
                return Err(JoinError::TooManyTopics {
                    max: self.config.max_topics,
                });
            }
            let mut out = Vec::new();
            let mut ctx = Ctx {
                now,
                unix_ms: 0,
                rng: &mut self.rng,
                stats: &mut self.stats,
                out: &mut out,
            };
            let state = Topic::new(topic, self.me.clone(), &self.config, &mut ctx);
            self.topics.insert(topic, state);
        }
        let mut bootstrap = bootstrap;
        if bootstrap.is_empty() {
            bootstrap = self
                .connections
                .candidates(now, self.connections.stable_after())
                .connected;
        }
        for contact in &mut bootstrap {
            if contact.addresses.is_empty() {
                contact.addresses = self.connections.addresses(&contact.peer);
            }
        }
        self.with_topic(topic, now, out, |t, ctx| t.join(bootstrap, ctx));
        Ok(())
    }

    /// Leaves `topic`: neighbours are told, its state is dropped.
    pub fn leave(&mut self, topic: TopicId, now: Instant, out: &mut Outputs<Self>) {
        self.with_topic(topic, now, out, |t, ctx| t.leave(ctx));
        self.topics.remove(&topic);
    }

    /// Publishes `payload` on `topic`, signed by this node: it goes to
    /// every member reachable through the topic's overlay (not back to
    /// this node's application). Returns the message's id.
    pub fn publish(
        &mut self,
        topic: TopicId,
        payload: Bytes,
        now: Instant,
        out: &mut Outputs<Self>,
    ) -> Result<MessageId, PublishError> {
        if payload.len() > self.config.max_payload_size {
            self.stats.oversized_refused += 1;
            return Err(PublishError::TooLarge {
                size: payload.len(),
                max: self.config.max_payload_size,
            });
        }
        let Some(joined) = self.topics.get_mut(&topic) else {
            return Err(PublishError::NotJoined(topic));
        };
        joined.tree.expire(now);
        if joined.tree.is_full() {
            self.stats.seen_full += 1;
            return Err(PublishError::Busy {
                max: self.config.plumtree.max_seen,
            });
        }
        let nonce = self.rng.random();
        let message = SignedMessage::sign(&self.keypair, &topic, self.unix_ms(now), nonce, payload);
        let id = message.id(&topic);
        self.stats.published += 1;
        self.with_topic(topic, now, out, |t, ctx| t.publish(id, message, ctx));
        Ok(id)
    }

    /// A message from `from`.
    pub(crate) fn on_message(
        &mut self,
        from: PeerId,
        message: TopicMessage,
        now: Instant,
    ) -> Vec<GossipOutput> {
        let mut actions = Vec::new();
        if from == self.me.peer {
            return actions;
        }
        // The size limit comes first (the wire decoder checks it too).
        if let Message::Gossip { message: m, .. } = &message.message
            && m.payload.len() > self.config.max_payload_size
        {
            self.stats.oversized_refused += 1;
            actions.push(Output::Report {
                peer: from,
                error: PeerError::MessageTooLarge {
                    channel: crate::CHANNEL_NAME,
                    size: m.payload.len(),
                    max: self.config.max_payload_size,
                },
            });
            return actions;
        }
        self.connections
            .on_message_from(from, now, &mut self.stats, &mut actions);
        if !message.message.is_payload() {
            self.stats.control_received += 1;
        }
        let TopicMessage { topic, message } = message;
        if !self.topics.contains_key(&topic) {
            self.stats.unknown_topic += 1;
            // A join or a neighbour request must learn that we are not a
            // member; anything else is dropped.
            if matches!(message, Message::Join { .. } | Message::Neighbor { .. }) {
                emit_send(
                    from,
                    TopicMessage {
                        topic,
                        message: Message::Disconnect { alive: false },
                    },
                    &mut self.stats,
                    &mut actions,
                );
            }
            return actions;
        }
        self.with_topic(topic, now, &mut actions, |t, ctx| {
            t.on_message(from, message, ctx)
        });
        actions
    }

    /// A frame from `from` that did not decode or broke the protocol's
    /// bounds: counted, and its sender reported.
    pub(crate) fn on_refused(&mut self, from: PeerId, error: PeerError) -> Vec<GossipOutput> {
        if matches!(error, PeerError::MessageTooLarge { .. }) {
            self.stats.oversized_refused += 1;
        } else {
            self.stats.malformed_refused += 1;
        }
        vec![Output::Report { peer: from, error }]
    }

    /// `peer` is connected (and serves the gossip channel), dialable at
    /// `addresses`.
    pub(crate) fn on_peer_up(
        &mut self,
        peer: PeerId,
        addresses: Vec<PeerAddress>,
        now: Instant,
    ) -> Vec<GossipOutput> {
        let mut actions = Vec::new();
        if peer != self.me.peer {
            self.connections
                .on_up(peer, addresses, now, &mut self.stats, &mut actions);
        }
        actions
    }

    /// `peer`'s connection is gone, or a connection asked for could not be
    /// made.
    pub(crate) fn on_peer_down(&mut self, peer: PeerId, now: Instant) -> Vec<GossipOutput> {
        let mut actions = Vec::new();
        let down = self.connections.on_down(&peer, &mut self.stats);
        let topics: Vec<TopicId> = self.topics.keys().copied().collect();
        for topic in topics {
            self.with_topic(topic, now, &mut actions, |t, ctx| match down {
                Down::DialFailed => t.on_dial_failed(&peer, ctx),
                Down::Lost => t.on_peer_down(&peer, ctx),
            });
        }
        actions
    }

    /// The driver could not dial `peer`: if we were waiting for it, the
    /// topics are told it is unreachable (as at `dial_timeout`); a peer
    /// we did not ask for is left alone.
    pub(crate) fn on_dial_failed(&mut self, peer: PeerId, now: Instant) -> Vec<GossipOutput> {
        let mut actions = Vec::new();
        if self.connections.dial_failed(&peer, &mut self.stats) {
            let topics: Vec<TopicId> = self.topics.keys().copied().collect();
            for topic in topics {
                self.with_topic(topic, now, &mut actions, |t, ctx| {
                    t.on_dial_failed(&peer, ctx)
                });
            }
        }
        actions
    }

    /// Does what is due at `now`: timers of every topic, expiry, dials
    /// given up, idle connections released.
    pub(crate) fn on_tick(&mut self, now: Instant) -> Vec<GossipOutput> {
        let mut actions = Vec::new();
        let topics: Vec<TopicId> = self.topics.keys().copied().collect();
        let housekeeping = now >= self.next_housekeeping;
        if housekeeping {
            self.next_housekeeping = now + HOUSEKEEPING_INTERVAL;
            for topic in self.topics.values_mut() {
                topic.expire(now);
            }
        }
        if housekeeping || self.connections.next_deadline().is_some_and(|at| at <= now) {
            let topics_ref = &self.topics;
            let failed = self.connections.on_tick(
                now,
                |peer| topics_ref.values().any(|t| t.membership.needs(peer)),
                &mut self.stats,
                &mut actions,
            );
            for peer in failed {
                for topic in &topics {
                    self.with_topic(*topic, now, &mut actions, |t, ctx| {
                        t.on_dial_failed(&peer, ctx)
                    });
                }
            }
        }
        // Connected peers are join candidates for a topic short of
        // neighbours, and merge candidates at a shuffle.
        let wanted = self
            .topics
            .values()
            .any(|t| t.membership.wants_connected(now));
        let candidates = if wanted {
            self.connections
                .candidates(now, self.connections.stable_after())
        } else {
            Candidates::default()
        };
        for topic in topics {
            self.with_topic(topic, now, &mut actions, |t, ctx| {
                t.on_tick(&candidates, ctx)
            });
        }
        actions
    }

    /// Checks every invariant (tests and property tests).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        for topic in self.topics.values() {
            topic.check_invariants();
        }
        assert!(self.topics.len() <= self.config.max_topics);
        assert!(self.connections.pending_dials() <= self.config.max_pending_dials);
    }
}
