//! HyParView membership for one topic (Leitão, Pereira, Rodrigues, DSN
//! 2007): a small symmetric **active view** of neighbours with open
//! connections, over which Plumtree broadcasts, and a larger **passive
//! view** of members to replace failed neighbours with.
//!
//! Departures from the paper, and why:
//! - A `Join` goes to `join_contacts` (2) contacts at once, chosen among
//!   the bootstrap contacts and the connected peers: when many nodes
//!   subscribe at the same moment through each other, joins through a
//!   single contact make islands (pairs that joined each other), and two
//!   contacts each knit them into one overlay. A contact that is not a
//!   member answers `Disconnect{alive: false}`; a node with an empty
//!   active view retries every `join_retry_interval`, through its passive
//!   view first.
//! - The contact answers the joiner with a high-priority `Neighbor`, so
//!   the joiner takes it into its active view only once it is known to be
//!   a member (a TCP connection plays that role in the paper), and with a
//!   `ShuffleReply` holding a sample of its views, so the joiner has
//!   passive peers from the start instead of after its first shuffles.
//! - A low-priority `Neighbor` gets an explicit `NeighborReply`; up to
//!   `capacity - active` requests are outstanding at once, so a node that
//!   lost several neighbours refills them in parallel.
//! - A node with fewer than half its active view that has nobody left to
//!   ask (every passive peer refused a low-priority request since the
//!   last shuffle) sends a high-priority `Neighbor` to a peer outside its
//!   active view every `join_retry_interval`: after a mass failure, or when many nodes join
//!   through each other at once, a small group can be cut off from the
//!   rest with each member holding a neighbour or two, and low-priority
//!   requests to full nodes never reconnect it.
//! - With probability `merge_probability` per shuffle, a node asks a
//!   long-connected peer in neither of its views (a persistent peer, one
//!   from peer exchange) to be a neighbour, with high priority: after a
//!   partition heals, each side's overlay is whole and full and HyParView
//!   never joins them again on its own.
//! - A neighbour whose connection drops leaves the active view and is not
//!   kept as passive (it is suspected to have failed); a peer that cannot
//!   be dialed leaves the passive view too.
//!
//! # Who may change the views (issue 14)
//!
//! Every peer lies (ARCHITECTURE's adversary model), so a membership
//! message is taken only from where the protocol sends it, within budgets:
//! - `ForwardJoin` and `Shuffle` walk along active views: only from a
//!   neighbour (`membership_unexpected` otherwise). `ShuffleReply` answers
//!   our own shuffle (one answer) or a `Join` we sent; `NeighborReply` a
//!   request we sent.
//! - `Join`, `ForwardJoin`, `Shuffle` and a high-priority `Neighbor` that
//!   would evict spend the sender's `membership_rate` (5/s, burst 32).
//!   Taking a peer unasked into a full view spends the node's
//!   `eviction_rate` (2/s, burst 32); over it a `Join` only starts its
//!   walks, a walk's joiner is kept as passive, and a high-priority
//!   request is answered with `Disconnect`.
//! - **Probation.** A peer taken in unasked (a `Join`, the end of a walk,
//!   a high-priority request we did not ask for, an accepted low-priority
//!   request, a merge) is on probation until it takes part in the
//!   broadcast: it relays a message new to us from another origin, or
//!   announces one before we had it. On a quiet topic (nothing delivered
//!   since it came) `probation` (10 s) ends it too.
//! - **Named peers.** A walk that ends here names its joiner; while a
//!   peer named by the same neighbour is still on probation, the new one
//!   takes its place (`named_replaced`). So one neighbour naming contacts,
//!   however many and however fast, holds one place of our view with them
//!   until one of them takes part — and Sybils that drop payloads never do
//!   on a busy topic.
//! - Contacts are screened: addresses that name another peer, and
//!   repeats, are dropped (`contacts_screened`); every dial goes through
//!   the router's peer manager, whose address screen every reactor's
//!   contacts pass.
//!
//! What is left: a peer that pushes *itself* (`Join`, a high-priority
//! request) is taken as the paper says, evicting a random neighbour,
//! within the budgets above; a swarm of such peers needs a connection
//! each, which the router bounds per network (/24, /48). On a quiet topic
//! a named peer settles after `probation`, so one neighbour places one
//! peer per interval there.

use std::time::{Duration, Instant};

use p2p_core::PeerId;
use rand::Rng;
use rand::seq::IndexedRandom;

use crate::config::HyParViewConfig;
use crate::state::bucket::{Bucket, PeerBuckets, Rate};
use crate::state::connections::Candidates;
use crate::state::message::{Contact, Message};
use crate::state::{Ctx, TopicOut};

/// Bootstrap contacts kept per topic at most.
pub const MAX_BOOTSTRAP: usize = 16;
/// Peers whose membership budgets are tracked at once (the least recent
/// is forgotten, which grants it one burst again).
const MAX_BUDGETS: usize = 256;

#[derive(Debug, Clone)]
struct PendingNeighbor {
    contact: Contact,
    deadline: Instant,
}

/// A neighbour on probation.
#[derive(Debug, Clone, Copy)]
struct Probation {
    peer: PeerId,
    since: Instant,
    /// The neighbour whose walk named it, if it did not come by itself.
    named_by: Option<PeerId>,
}

/// One topic's membership views.
#[derive(Debug)]
pub(crate) struct HyParView {
    me: Contact,
    config: HyParViewConfig,
    active: Vec<Contact>,
    passive: Vec<Contact>,
    /// Low-priority neighbour requests awaiting an answer.
    pending: Vec<PendingNeighbor>,
    bootstrap: Vec<Contact>,
    /// Passive peers that refused to be neighbours since the last shuffle
    /// tick: not asked again until then, so a node whose passive peers
    /// are all full does not ask them in a loop.
    refused: Vec<PeerId>,
    next_shuffle: Instant,
    next_join: Instant,
    /// Peers we sent in our last shuffle: replaced first by what the
    /// answer brings.
    last_shuffle: Vec<PeerId>,
    /// Until when the answer to our last shuffle is awaited (one answer).
    shuffle_reply_until: Option<Instant>,
    /// Contacts we sent a `Join` to, each until its answer is no longer
    /// awaited.
    joins: Vec<(PeerId, Instant)>,
    /// Per-peer budgets of view-changing messages (`membership_rate`).
    budgets: Option<PeerBuckets>,
    /// Unasked admissions into a full active view (`eviction_rate`).
    evictions: Option<(Rate, Bucket)>,
    /// Neighbours on probation, since when, and who named them (the end
    /// of a `ForwardJoin` walk), oldest first: taken in unasked and not
    /// yet seen taking part in the broadcast (see [`HyParView::vouch`]). A
    /// full view evicts the newest of them first; each neighbour has at
    /// most one peer it named on probation at a time.
    probation: Vec<Probation>,
    /// When a message was last delivered on the topic.
    last_delivery: Option<Instant>,
}

impl HyParView {
    pub(crate) fn new(me: Contact, config: HyParViewConfig, ctx: &mut Ctx<'_>) -> Self {
        let next_shuffle = ctx.now + jittered(config.shuffle_interval, ctx);
        let budgets = Rate::per_second(config.membership_rate, config.membership_burst)
            .map(|rate| PeerBuckets::new(rate, MAX_BUDGETS));
        let evictions = Rate::per_second(config.eviction_rate, config.eviction_burst)
            .map(|rate| (rate, Bucket::full(rate, ctx.now)));
        Self {
            me,
            next_join: ctx.now + config.join_retry_interval,
            config,
            active: Vec::new(),
            passive: Vec::new(),
            pending: Vec::new(),
            bootstrap: Vec::new(),
            refused: Vec::new(),
            next_shuffle,
            last_shuffle: Vec::new(),
            shuffle_reply_until: None,
            joins: Vec::new(),
            budgets,
            evictions,
            probation: Vec::new(),
            last_delivery: None,
        }
    }

    /// The active view's peers.
    pub(crate) fn active(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.active.iter().map(|c| c.peer)
    }

    /// The passive view's peers.
    pub(crate) fn passive(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.passive.iter().map(|c| c.peer)
    }

    pub(crate) fn is_active(&self, peer: &PeerId) -> bool {
        self.active.iter().any(|c| c.peer == *peer)
    }

    /// Whether the topic needs a connection to `peer` (a neighbour, or a
    /// neighbour request in flight).
    pub(crate) fn needs(&self, peer: &PeerId) -> bool {
        self.is_active(peer) || self.pending.iter().any(|p| p.contact.peer == *peer)
    }

    pub(crate) fn next_deadline(&self) -> Instant {
        let mut at = self.next_shuffle;
        if self.is_short() {
            at = at.min(self.next_join);
        }
        for p in &self.pending {
            at = at.min(p.deadline);
        }
        let quiet = self
            .probation
            .iter()
            .filter(|p| self.last_delivery.is_none_or(|at| at < p.since))
            .map(|p| p.since + self.config.probation)
            .min();
        if let Some(end) = quiet {
            at = at.min(end);
        }
        at
    }

    /// Starts joining through one of `bootstrap` (the others are kept for
    /// retries).
    pub(crate) fn join(&mut self, bootstrap: Vec<Contact>, ctx: &mut Ctx<'_>) {
        for contact in bootstrap {
            self.add_bootstrap(contact);
        }
        self.try_join(&[], ctx);
    }

    fn add_bootstrap(&mut self, contact: Contact) {
        if contact.peer == self.me.peer || self.bootstrap.iter().any(|c| c.peer == contact.peer) {
            return;
        }
        if self.bootstrap.len() >= MAX_BOOTSTRAP {
            self.bootstrap.remove(0);
        }
        self.bootstrap.push(contact);
    }

    /// With an empty active view: ask a passive peer to be a neighbour
    /// (high priority), or else send a `Join` to a bootstrap contact or a
    /// connected peer.
    fn try_join(&mut self, connected: &[Contact], ctx: &mut Ctx<'_>) {
        self.next_join = ctx.now + self.config.join_retry_interval;
        // Peers that refused us are asked again at each retry, not sooner
        // (they may refuse even a high-priority request now).
        self.refused.clear();
        if !self.active.is_empty() {
            return;
        }
        if !self.passive.is_empty() {
            self.refill(ctx);
            if !self.active.is_empty() || !self.pending.is_empty() {
                return;
            }
        }
        let mut candidates: Vec<&Contact> = self.bootstrap.iter().collect();
        for c in connected {
            if c.peer != self.me.peer && !self.bootstrap.iter().any(|b| b.peer == c.peer) {
                candidates.push(c);
            }
        }
        let chosen: Vec<Contact> = candidates
            .choose_multiple(ctx.rng, self.config.join_contacts)
            .map(|c| (*c).clone())
            .collect();
        let until = ctx.now + self.config.join_retry_interval;
        self.joins.retain(|(_, at)| *at > ctx.now);
        for contact in chosen {
            let message = Message::Join {
                addresses: self.me.addresses.clone(),
            };
            self.joins.retain(|(peer, _)| *peer != contact.peer);
            self.joins.push((contact.peer, until));
            ctx.send(contact, message);
        }
    }

    /// Fewer neighbours than half the active view.
    fn is_short(&self) -> bool {
        self.active.len() < self.config.active_view_capacity.div_ceil(2)
    }

    /// Few neighbours and nobody left to ask (every passive peer refused a
    /// low-priority request since the last shuffle, or there is none): a
    /// high-priority `Neighbor` — which cannot be refused — to a peer
    /// outside the active view (passive, bootstrap or connected). A group
    /// cut off from the rest (after a mass failure, or pairs that joined
    /// through each other) looks like this, and low-priority requests to
    /// full nodes never reconnect it. It costs the peer one eviction; a
    /// `Join` would cost one per walk.
    fn rejoin(&mut self, connected: &[Contact], ctx: &mut Ctx<'_>) {
        self.next_join = ctx.now + self.config.join_retry_interval;
        if !self.pending.is_empty() {
            return;
        }
        self.refill(ctx);
        if !self.pending.is_empty() {
            return;
        }
        let contact = self
            .passive
            .iter()
            .chain(&self.bootstrap)
            .chain(connected)
            .filter(|c| c.peer != self.me.peer && !self.is_active(&c.peer))
            .collect::<Vec<_>>();
        // Those that refused us lately last (they may refuse again).
        let fresh: Vec<&Contact> = contact
            .iter()
            .copied()
            .filter(|c| !self.refused.contains(&c.peer))
            .collect();
        let contact = if fresh.is_empty() { contact } else { fresh }
            .choose(ctx.rng)
            .map(|c| (*c).clone());
        if let Some(contact) = contact {
            ctx.send(
                contact.clone(),
                Message::Neighbor {
                    high_priority: true,
                    addresses: self.me.addresses.clone(),
                },
            );
            self.add_active(contact, ctx);
        }
    }

    /// Whether the next tick wants the connected peers.
    pub(crate) fn wants_connected(&self, now: Instant) -> bool {
        (self.is_short() && now >= self.next_join) || now >= self.next_shuffle
    }

    /// Heals partitions: with probability `merge_probability` per shuffle,
    /// a high-priority `Neighbor` to a peer in neither view that has held
    /// a connection with us for a while without our asking (a persistent
    /// peer, one found by peer exchange). After a partition heals, each
    /// side's overlay is whole and full, and nothing in HyParView joins
    /// them again; one link across is enough for broadcasts, and shuffles
    /// then mix the passive views. Costs one eviction on each side; a
    /// non-member answers `Disconnect{alive: false}`.
    fn merge(&mut self, stable: &[Contact], ctx: &mut Ctx<'_>) {
        if self.config.merge_probability <= 0.0
            || ctx.rng.random::<f64>() >= self.config.merge_probability
        {
            return;
        }
        let stranger = stable
            .iter()
            .filter(|c| {
                c.peer != self.me.peer
                    && !self.is_active(&c.peer)
                    && !self.passive.iter().any(|p| p.peer == c.peer)
            })
            .collect::<Vec<_>>()
            .choose(ctx.rng)
            .map(|c| (*c).clone());
        if let Some(contact) = stranger {
            ctx.send(
                contact.clone(),
                Message::Neighbor {
                    high_priority: true,
                    addresses: self.me.addresses.clone(),
                },
            );
            // A peer picked among all connections, which an attacker can
            // crowd: on probation like one that came unasked.
            self.take_unasked(contact, None, ctx);
        }
    }

    /// Leaves the topic: every neighbour is told.
    pub(crate) fn leave(&mut self, ctx: &mut Ctx<'_>) {
        for contact in std::mem::take(&mut self.active) {
            ctx.send(contact.clone(), Message::Disconnect { alive: false });
            ctx.out.push(TopicOut::NeighborDown(contact.peer));
            ctx.stats.neighbor_down += 1;
        }
        self.passive.clear();
        self.pending.clear();
    }

    pub(crate) fn on_tick(&mut self, candidates: &Candidates, ctx: &mut Ctx<'_>) {
        let connected = candidates.connected.as_slice();
        let now = ctx.now;
        let mut expired = Vec::new();
        self.pending.retain(|p| {
            let keep = p.deadline > now;
            if !keep {
                expired.push(p.contact.peer);
            }
            keep
        });
        self.joins.retain(|(_, until)| *until > now);
        // A quiet topic gives no neighbour a chance to take part: there,
        // and only there (nothing delivered since the neighbour came),
        // time ends probation, so unasked peers settle at most one place
        // per `probation`. On a busy topic a neighbour must take part.
        let (probation, last_delivery) = (self.config.probation, self.last_delivery);
        self.probation
            .retain(|p| now < p.since + probation || last_delivery.is_some_and(|at| at >= p.since));
        if !expired.is_empty() {
            // An unanswered request: the peer is gone or unreachable.
            self.passive.retain(|c| !expired.contains(&c.peer));
            self.refill(ctx);
        }
        if self.is_short() && now >= self.next_join {
            if self.active.is_empty() {
                self.try_join(connected, ctx);
            } else {
                self.rejoin(connected, ctx);
            }
        }
        if now >= self.next_shuffle {
            self.next_shuffle = now + jittered(self.config.shuffle_interval, ctx);
            self.refused.clear();
            self.merge(&candidates.stable, ctx);
            self.shuffle(ctx);
            // A passive view that filled up since the last refill.
            self.refill(ctx);
        }
    }

    /// A membership message from `from`. Each kind is taken only from
    /// the peers the protocol sends it from (see the module docs): a
    /// `ForwardJoin` or `Shuffle` walks along active views, so only a
    /// neighbour sends one; a `ShuffleReply` answers our own shuffle or
    /// join; a `NeighborReply` our own request. View-changing messages
    /// also spend the sender's `membership_rate`.
    pub(crate) fn on_message(&mut self, from: PeerId, message: Message, ctx: &mut Ctx<'_>) {
        match message {
            Message::Join { addresses } => {
                if !self.spend_budget(from, ctx) {
                    return;
                }
                let joiner = screen(
                    Contact {
                        peer: from,
                        addresses,
                    },
                    ctx,
                );
                self.on_join(joiner, ctx)
            }
            Message::ForwardJoin { joiner, ttl } => {
                if !self.is_active(&from) {
                    ctx.stats.membership_unexpected += 1;
                    return;
                }
                if !self.spend_budget(from, ctx) {
                    return;
                }
                let joiner = screen(joiner, ctx);
                self.on_forward_join(from, joiner, ttl, ctx)
            }
            Message::Neighbor {
                high_priority,
                addresses,
            } => {
                let contact = screen(
                    Contact {
                        peer: from,
                        addresses,
                    },
                    ctx,
                );
                self.on_neighbor(contact, high_priority, ctx)
            }
            Message::NeighborReply { accepted } => self.on_neighbor_reply(from, accepted, ctx),
            Message::Disconnect { alive } => self.on_disconnect(from, alive, ctx),
            Message::Shuffle {
                origin,
                ttl,
                contacts,
            } => {
                if !self.is_active(&from) {
                    ctx.stats.membership_unexpected += 1;
                    return;
                }
                if !self.spend_budget(from, ctx) {
                    return;
                }
                let origin = screen(origin, ctx);
                let contacts = contacts.into_iter().map(|c| screen(c, ctx)).collect();
                self.on_shuffle(from, origin, ttl, contacts, ctx)
            }
            Message::ShuffleReply { contacts } => {
                if !self.awaits_shuffle_reply(from, ctx.now) {
                    ctx.stats.membership_unexpected += 1;
                    return;
                }
                let contacts = contacts.into_iter().map(|c| screen(c, ctx)).collect();
                let sent = std::mem::take(&mut self.last_shuffle);
                self.integrate(contacts, &sent, ctx);
            }
            // Plumtree's messages never reach here.
            Message::Gossip { .. }
            | Message::IHave { .. }
            | Message::Graft { .. }
            | Message::Prune
            | Message::SizeSketch { .. } => {}
        }
    }

    /// Spends one of `peer`'s membership tokens; false (counted) if it
    /// has none left.
    fn spend_budget(&mut self, peer: PeerId, ctx: &mut Ctx<'_>) -> bool {
        let Some(budgets) = &mut self.budgets else {
            return true;
        };
        if budgets.take(peer, ctx.now) {
            true
        } else {
            ctx.stats.membership_rate_limited += 1;
            false
        }
    }

    /// Whether a `ShuffleReply` from `from` is awaited: the answer to a
    /// `Join` we sent it, or the one answer to our last shuffle (from the
    /// end of its walk, a peer we may not know). Consumes the wait.
    fn awaits_shuffle_reply(&mut self, from: PeerId, now: Instant) -> bool {
        if let Some(i) = self
            .joins
            .iter()
            .position(|(peer, until)| *peer == from && *until > now)
        {
            self.joins.swap_remove(i);
            return true;
        }
        if self.shuffle_reply_until.is_some_and(|until| until > now) {
            self.shuffle_reply_until = None;
            return true;
        }
        false
    }

    /// Whether `peer` fits without evicting anyone: it is a neighbour, or
    /// the active view and the requests we sent to fill it (places
    /// reserved for the peers we asked) leave a free place.
    fn has_free_place(&self, peer: &PeerId) -> bool {
        if self.is_active(peer) {
            return true;
        }
        let reserved = self
            .pending
            .iter()
            .filter(|p| p.contact.peer != *peer)
            .count();
        self.active.len() + reserved < self.config.active_view_capacity
    }

    /// Takes `contact` in unasked, on probation (`named_by`: the neighbour
    /// whose walk named it). A full view makes room by evicting its newest neighbour
    /// on probation, or else a random one (see
    /// [`add_active`](Self::add_active)); a place reserved for a request
    /// we sent is not kept for its answer (a late acceptance is answered
    /// with `Disconnect`).
    fn take_unasked(&mut self, contact: Contact, named_by: Option<PeerId>, ctx: &mut Ctx<'_>) {
        if self.is_active(&contact.peer) {
            self.add_active(contact, ctx);
            return;
        }
        let peer = contact.peer;
        self.add_active(contact, ctx);
        if self.is_active(&peer) {
            self.probation.push(Probation {
                peer,
                since: ctx.now,
                named_by,
            });
        }
    }

    /// `peer` took part in the topic's broadcast (it relayed a message,
    /// signed by another origin, that was new to us, or announced one
    /// before we had it): if it was on probation, it no longer is.
    pub(crate) fn vouch(&mut self, peer: &PeerId) {
        self.probation.retain(|p| p.peer != *peer);
    }

    /// A message was delivered: the topic is not quiet, so probation no
    /// longer ends by time alone for the neighbours on it now.
    pub(crate) fn on_delivery(&mut self, now: Instant) {
        self.last_delivery = Some(now);
    }

    /// Whether a full active view may take `peer` unasked, evicting its
    /// newest neighbour: spends one of the node's `eviction_rate` tokens
    /// (counted when there is none).
    fn may_evict_for(&mut self, peer: &PeerId, ctx: &mut Ctx<'_>) -> bool {
        if self.has_free_place(peer) {
            return true;
        }
        let Some((rate, bucket)) = &mut self.evictions else {
            return true;
        };
        if bucket.take(*rate, ctx.now) {
            true
        } else {
            ctx.stats.evictions_refused += 1;
            false
        }
    }

    fn on_join(&mut self, joiner: Contact, ctx: &mut Ctx<'_>) {
        if joiner.peer == self.me.peer {
            return;
        }
        // The contact takes the joiner on probation, within the eviction
        // budget (over it, only the walks place the joiner).
        let peer = joiner.peer;
        if self.may_evict_for(&peer, ctx) {
            self.take_unasked(joiner.clone(), None, ctx);
            ctx.send(
                joiner.clone(),
                Message::Neighbor {
                    high_priority: true,
                    addresses: self.me.addresses.clone(),
                },
            );
        }
        let others: Vec<Contact> = self
            .active
            .iter()
            .filter(|c| c.peer != peer)
            .cloned()
            .collect();
        // Seed the joiner's passive view with a sample of ours, as a
        // shuffle would, so that it has replacements at once.
        let mut sample: Vec<Contact> = others
            .choose_multiple(ctx.rng, self.config.shuffle_active_count)
            .cloned()
            .collect();
        sample.extend(
            self.passive
                .choose_multiple(ctx.rng, self.config.shuffle_passive_count)
                .cloned(),
        );
        for next in others {
            ctx.send(
                next,
                Message::ForwardJoin {
                    joiner: joiner.clone(),
                    ttl: self.config.active_random_walk_length,
                },
            );
        }
        if !sample.is_empty() {
            ctx.send(joiner, Message::ShuffleReply { contacts: sample });
        }
    }

    fn on_forward_join(&mut self, from: PeerId, joiner: Contact, ttl: u32, ctx: &mut Ctx<'_>) {
        if joiner.peer == self.me.peer || self.is_active(&joiner.peer) {
            return;
        }
        let next: Option<Contact> = self
            .active
            .iter()
            .filter(|c| c.peer != from && c.peer != joiner.peer)
            .collect::<Vec<_>>()
            .choose(ctx.rng)
            .map(|c| (*c).clone());
        match next {
            Some(next) if ttl > 0 && self.active.len() > 1 => {
                if ttl == self.config.passive_random_walk_length {
                    self.add_passive(joiner.clone(), ctx);
                }
                ctx.send(
                    next,
                    Message::ForwardJoin {
                        joiner,
                        ttl: ttl - 1,
                    },
                );
            }
            _ => self.take_joiner(from, joiner, ctx),
        }
    }

    /// The end of a `ForwardJoin` walk from neighbour `from`: the joiner
    /// becomes a neighbour, on probation. If a peer `from` named before is
    /// still on probation, the new one takes its place (so a neighbour
    /// naming contacts, however many, holds one place with them until one
    /// takes part in the broadcast). Over the eviction budget the joiner
    /// is kept as passive.
    fn take_joiner(&mut self, from: PeerId, joiner: Contact, ctx: &mut Ctx<'_>) {
        if self.is_active(&joiner.peer) {
            return;
        }
        let previous = self
            .probation
            .iter()
            .find(|p| p.named_by == Some(from))
            .map(|p| p.peer);
        if let Some(previous) = previous {
            ctx.stats.named_replaced += 1;
            if let Some(dropped) = self.remove_active(&previous, ctx) {
                ctx.send(dropped.clone(), Message::Disconnect { alive: true });
                self.add_passive(dropped, ctx);
            }
        } else if !self.may_evict_for(&joiner.peer, ctx) {
            self.add_passive(joiner, ctx);
            return;
        }
        self.take_unasked(joiner.clone(), Some(from), ctx);
        ctx.send(
            joiner,
            Message::Neighbor {
                high_priority: true,
                addresses: self.me.addresses.clone(),
            },
        );
    }

    fn on_neighbor(&mut self, contact: Contact, high_priority: bool, ctx: &mut Ctx<'_>) {
        if contact.peer == self.me.peer {
            return;
        }
        let crossed = self
            .pending
            .iter()
            .position(|p| p.contact.peer == contact.peer);
        if let Some(i) = crossed {
            // We asked it too: the requests cross; both accept.
            self.pending.remove(i);
        }
        if !high_priority {
            // A free place goes to whoever asks for it, on probation (the
            // first evicted when a full view must take someone).
            let free = self.has_free_place(&contact.peer);
            ctx.send(contact.clone(), Message::NeighborReply { accepted: free });
            if free {
                self.take_unasked(contact, None, ctx);
            }
            return;
        }
        let room = self.has_free_place(&contact.peer);
        // A high-priority request evicts when the view is full. Taken from
        // a contact we sent a `Join` to (we asked), otherwise only within
        // the sender's membership budget and the node's eviction budget;
        // refused with a `Disconnect` the sender understands.
        // Asked: the requests crossed, or we are joining and still short
        // of neighbours (the ends of our join's walks answer so, from
        // peers we do not know).
        let asked = crossed.is_some() || (!self.joins.is_empty() && self.is_short());
        let accept = room
            || asked
            || (self.spend_budget(contact.peer, ctx) && self.may_evict_for(&contact.peer, ctx));
        if asked {
            self.add_active(contact, ctx);
        } else if accept {
            self.take_unasked(contact, None, ctx);
        } else {
            ctx.send(contact, Message::Disconnect { alive: true });
        }
    }

    fn on_neighbor_reply(&mut self, from: PeerId, accepted: bool, ctx: &mut Ctx<'_>) {
        let Some(i) = self.pending.iter().position(|p| p.contact.peer == from) else {
            if accepted && !self.is_active(&from) {
                // A late acceptance: the peer took us in after we gave up.
                // Tell it we did not.
                ctx.send(Contact::bare(from), Message::Disconnect { alive: true });
            }
            return;
        };
        let pending = self.pending.remove(i);
        if !accepted {
            self.refused.push(from);
            self.refill(ctx);
            return;
        }
        if self.active.len() < self.config.active_view_capacity {
            self.add_active(pending.contact, ctx);
        } else {
            // Filled meanwhile by peers that had to be accepted.
            ctx.send(pending.contact, Message::Disconnect { alive: true });
        }
    }

    fn on_disconnect(&mut self, from: PeerId, alive: bool, ctx: &mut Ctx<'_>) {
        self.pending.retain(|p| p.contact.peer != from);
        if let Some(contact) = self.remove_active(&from, ctx)
            && alive
        {
            // It evicted or refused us: not asked again before the
            // next shuffle (a lonely node would otherwise ask it again
            // at once, and be refused again).
            if !self.refused.contains(&from) {
                self.refused.push(from);
            }
            self.add_passive(contact, ctx);
        }
        if !alive {
            // Gone from the topic (or never in it: the answer to a Join).
            // It stays a bootstrap contact: it may subscribe later.
            self.passive.retain(|c| c.peer != from);
        }
        self.refill(ctx);
    }

    /// The connection to `peer` broke: a suspected failure.
    pub(crate) fn on_peer_down(&mut self, peer: &PeerId, ctx: &mut Ctx<'_>) {
        let was_pending = self.pending.len();
        self.pending.retain(|p| p.contact.peer != *peer);
        let removed = self.remove_active(peer, ctx).is_some();
        if removed || was_pending != self.pending.len() {
            self.passive.retain(|c| c.peer != *peer);
            self.refill(ctx);
        }
    }

    /// A connection to `peer` could not be made.
    pub(crate) fn on_dial_failed(&mut self, peer: &PeerId, ctx: &mut Ctx<'_>) {
        self.passive.retain(|c| c.peer != *peer);
        self.on_peer_down(peer, ctx);
    }

    fn on_shuffle(
        &mut self,
        from: PeerId,
        origin: Contact,
        ttl: u32,
        contacts: Vec<Contact>,
        ctx: &mut Ctx<'_>,
    ) {
        if origin.peer == self.me.peer {
            return;
        }
        if ttl > 0 && self.active.len() > 1 {
            let next: Vec<&Contact> = self
                .active
                .iter()
                .filter(|c| c.peer != from && c.peer != origin.peer)
                .collect();
            if let Some(next) = next.choose(ctx.rng).map(|c| (*c).clone()) {
                ctx.send(
                    next,
                    Message::Shuffle {
                        origin,
                        ttl: ttl - 1,
                        contacts,
                    },
                );
                return;
            }
        }
        let reply: Vec<Contact> = self
            .passive
            .choose_multiple(ctx.rng, contacts.len())
            .cloned()
            .collect();
        let sent: Vec<PeerId> = reply.iter().map(|c| c.peer).collect();
        ctx.send(
            origin.clone(),
            Message::ShuffleReply {
                contacts: reply.clone(),
            },
        );
        let mut incoming = contacts;
        incoming.push(origin);
        self.integrate(incoming, &sent, ctx);
    }

    fn shuffle(&mut self, ctx: &mut Ctx<'_>) {
        let Some(target) = self.active.choose(ctx.rng).cloned() else {
            return;
        };
        let mut contacts: Vec<Contact> = self
            .active
            .iter()
            .filter(|c| c.peer != target.peer)
            .cloned()
            .collect::<Vec<_>>()
            .choose_multiple(ctx.rng, self.config.shuffle_active_count)
            .cloned()
            .collect();
        contacts.extend(
            self.passive
                .choose_multiple(ctx.rng, self.config.shuffle_passive_count)
                .cloned(),
        );
        self.last_shuffle = contacts.iter().map(|c| c.peer).collect();
        self.shuffle_reply_until = Some(ctx.now + self.config.shuffle_interval / 2);
        ctx.send(
            target,
            Message::Shuffle {
                origin: self.me.clone(),
                ttl: self.config.shuffle_random_walk_length,
                contacts,
            },
        );
    }

    /// Merges contacts into the passive view, replacing first the peers in
    /// `replace_first` (those we just handed out), then random ones.
    fn integrate(&mut self, contacts: Vec<Contact>, replace_first: &[PeerId], ctx: &mut Ctx<'_>) {
        let mut replaceable: Vec<PeerId> = replace_first.to_vec();
        for contact in contacts {
            if contact.peer == self.me.peer || self.is_active(&contact.peer) {
                continue;
            }
            if let Some(known) = self.passive.iter_mut().find(|c| c.peer == contact.peer) {
                if known.addresses.is_empty() {
                    known.addresses = contact.addresses;
                }
                continue;
            }
            if self.passive.len() >= self.config.passive_view_capacity {
                let victim = loop {
                    match replaceable.pop() {
                        Some(peer) => {
                            if let Some(i) = self.passive.iter().position(|c| c.peer == peer) {
                                break Some(i);
                            }
                        }
                        None => break None,
                    }
                };
                let victim = victim.or_else(|| {
                    (!self.passive.is_empty()).then(|| ctx.rng.random_range(0..self.passive.len()))
                });
                match victim {
                    Some(i) => {
                        self.passive.swap_remove(i);
                    }
                    None => continue,
                }
            }
            if self.passive.len() < self.config.passive_view_capacity {
                self.passive.push(contact);
            }
        }
    }

    fn add_passive(&mut self, contact: Contact, ctx: &mut Ctx<'_>) {
        self.integrate(vec![contact], &[], ctx);
    }

    /// Takes `contact` into the active view, dropping a random neighbour
    /// if full (it is told, and kept as passive).
    fn add_active(&mut self, contact: Contact, ctx: &mut Ctx<'_>) {
        if contact.peer == self.me.peer {
            return;
        }
        if let Some(known) = self.active.iter_mut().find(|c| c.peer == contact.peer) {
            if !contact.addresses.is_empty() {
                known.addresses = contact.addresses;
            }
            return;
        }
        self.pending.retain(|p| p.contact.peer != contact.peer);
        self.passive.retain(|c| c.peer != contact.peer);
        if self.active.len() >= self.config.active_view_capacity {
            // A random neighbour makes room, as in the paper.
            let i = ctx.rng.random_range(0..self.active.len());
            let dropped = self.active.remove(i);
            self.probation.retain(|p| p.peer != dropped.peer);
            ctx.send(dropped.clone(), Message::Disconnect { alive: true });
            ctx.out.push(TopicOut::NeighborDown(dropped.peer));
            ctx.stats.neighbor_down += 1;
            self.add_passive(dropped, ctx);
        }
        ctx.out.push(TopicOut::NeighborUp(contact.peer));
        ctx.stats.neighbor_up += 1;
        self.active.push(contact);
    }

    fn remove_active(&mut self, peer: &PeerId, ctx: &mut Ctx<'_>) -> Option<Contact> {
        let i = self.active.iter().position(|c| c.peer == *peer)?;
        // In admission order, oldest first (the newest is evicted first).
        let contact = self.active.remove(i);
        self.probation.retain(|p| p.peer != *peer);
        ctx.out.push(TopicOut::NeighborDown(contact.peer));
        ctx.stats.neighbor_down += 1;
        Some(contact)
    }

    /// Asks passive peers to fill the free places of the active view: with
    /// high priority (taken at once) when the active view is empty,
    /// otherwise with low priority, one request per free place.
    fn refill(&mut self, ctx: &mut Ctx<'_>) {
        loop {
            if self.active.len() + self.pending.len() >= self.config.active_view_capacity {
                return;
            }
            // With no neighbour, the request is high-priority; a peer that
            // refused or evicted us since the last shuffle is not asked
            // again either way (a full peer may refuse even a
            // high-priority request: see `on_neighbor`).
            let lonely = self.active.is_empty() && self.pending.is_empty();
            let candidates: Vec<usize> = (0..self.passive.len())
                .filter(|&i| {
                    let peer = self.passive[i].peer;
                    !self.pending.iter().any(|p| p.contact.peer == peer)
                        && !self.refused.contains(&peer)
                })
                .collect();
            let Some(&i) = candidates.choose(ctx.rng) else {
                return;
            };
            let contact = self.passive[i].clone();
            if lonely {
                ctx.send(
                    contact.clone(),
                    Message::Neighbor {
                        high_priority: true,
                        addresses: self.me.addresses.clone(),
                    },
                );
                self.add_active(contact, ctx);
            } else {
                ctx.send(
                    contact.clone(),
                    Message::Neighbor {
                        high_priority: false,
                        addresses: self.me.addresses.clone(),
                    },
                );
                self.pending.push(PendingNeighbor {
                    contact,
                    deadline: ctx.now + self.config.neighbor_timeout,
                });
            }
        }
    }

    /// Checks the invariants (tests and property tests).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        use std::collections::BTreeSet;
        assert!(self.active.len() <= self.config.active_view_capacity);
        assert!(self.passive.len() <= self.config.passive_view_capacity);
        let active: BTreeSet<PeerId> = self.active().collect();
        let passive: BTreeSet<PeerId> = self.passive().collect();
        assert_eq!(active.len(), self.active.len(), "duplicate in active view");
        assert_eq!(
            passive.len(),
            self.passive.len(),
            "duplicate in passive view"
        );
        assert!(active.is_disjoint(&passive), "a peer in both views");
        assert!(!active.contains(&self.me.peer) && !passive.contains(&self.me.peer));
        assert!(
            self.probation.iter().all(|p| active.contains(&p.peer)),
            "a peer on probation outside the active view"
        );
    }
}

/// A contact as it came from the wire, screened: only addresses that name
/// the contact's own peer, each once (others are counted and dropped).
/// The address screen every dial passes (private ranges, per-host and
/// per-source limits) is the router's peer manager's, through
/// `Router::connect`.
fn screen(mut contact: Contact, ctx: &mut Ctx<'_>) -> Contact {
    let before = contact.addresses.len();
    let mut kept: Vec<p2p_core::PeerAddress> = Vec::with_capacity(before);
    for address in contact.addresses {
        if address.peer == contact.peer && !kept.contains(&address) {
            kept.push(address);
        }
    }
    ctx.stats.contacts_screened += (before - kept.len()) as u64;
    contact.addresses = kept;
    contact
}

/// `period` ± 10 %, so nodes started together do not shuffle in lockstep.
fn jittered(period: Duration, ctx: &mut Ctx<'_>) -> Duration {
    let tenth = period / 10;
    if tenth.is_zero() {
        return period;
    }
    period - tenth + tenth.mul_f64(2.0 * ctx.rng.random::<f64>())
}
