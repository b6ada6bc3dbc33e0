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

use std::time::{Duration, Instant};

use p2p::PeerId;
use rand::Rng;
use rand::seq::IndexedRandom;

use crate::config::HyParViewConfig;
use crate::state::connections::Candidates;
use crate::state::message::{Contact, Message};
use crate::state::{Ctx, TopicOut};

/// Bootstrap contacts kept per topic at most.
pub const MAX_BOOTSTRAP: usize = 16;

#[derive(Debug, Clone)]
struct PendingNeighbor {
    contact: Contact,
    deadline: Instant,
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
}

impl HyParView {
    pub(crate) fn new(me: Contact, config: HyParViewConfig, ctx: &mut Ctx<'_>) -> Self {
        let next_shuffle = ctx.now + jittered(config.shuffle_interval, ctx);
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
        for contact in chosen {
            let message = Message::Join {
                addresses: self.me.addresses.clone(),
            };
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
            .collect::<Vec<_>>()
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
            self.add_active(contact, ctx);
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

    pub(crate) fn on_message(&mut self, from: PeerId, message: Message, ctx: &mut Ctx<'_>) {
        match message {
            Message::Join { addresses } => self.on_join(
                Contact {
                    peer: from,
                    addresses,
                },
                ctx,
            ),
            Message::ForwardJoin { joiner, ttl } => self.on_forward_join(from, joiner, ttl, ctx),
            Message::Neighbor {
                high_priority,
                addresses,
            } => self.on_neighbor(
                Contact {
                    peer: from,
                    addresses,
                },
                high_priority,
                ctx,
            ),
            Message::NeighborReply { accepted } => self.on_neighbor_reply(from, accepted, ctx),
            Message::Disconnect { alive } => self.on_disconnect(from, alive, ctx),
            Message::Shuffle {
                origin,
                ttl,
                contacts,
            } => self.on_shuffle(from, origin, ttl, contacts, ctx),
            Message::ShuffleReply { contacts } => {
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

    fn on_join(&mut self, joiner: Contact, ctx: &mut Ctx<'_>) {
        if joiner.peer == self.me.peer {
            return;
        }
        let peer = joiner.peer;
        self.add_active(joiner.clone(), ctx);
        ctx.send(
            joiner.clone(),
            Message::Neighbor {
                high_priority: true,
                addresses: self.me.addresses.clone(),
            },
        );
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
            _ => self.take_joiner(joiner, ctx),
        }
    }

    /// The end of a `ForwardJoin` walk: the joiner becomes a neighbour.
    fn take_joiner(&mut self, joiner: Contact, ctx: &mut Ctx<'_>) {
        self.add_active(joiner.clone(), ctx);
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
        if let Some(i) = self
            .pending
            .iter()
            .position(|p| p.contact.peer == contact.peer)
        {
            // We asked it too: the requests cross; both accept.
            self.pending.remove(i);
        }
        let accept = high_priority
            || self.is_active(&contact.peer)
            || self.active.len() < self.config.active_view_capacity;
        if !high_priority {
            ctx.send(contact.clone(), Message::NeighborReply { accepted: accept });
        }
        if accept {
            self.add_active(contact, ctx);
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
        if let Some(contact) = self.remove_active(&from, ctx) {
            if alive {
                self.add_passive(contact, ctx);
            }
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
            let i = ctx.rng.random_range(0..self.active.len());
            let dropped = self.active.swap_remove(i);
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
        let contact = self.active.swap_remove(i);
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
            // A high-priority request cannot be refused: with no
            // neighbour, every passive peer is a candidate again.
            let lonely = self.active.is_empty() && self.pending.is_empty();
            let candidates: Vec<usize> = (0..self.passive.len())
                .filter(|&i| {
                    let peer = self.passive[i].peer;
                    !self.pending.iter().any(|p| p.contact.peer == peer)
                        && (lonely || !self.refused.contains(&peer))
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
    }
}

/// `period` ± 10 %, so nodes started together do not shuffle in lockstep.
fn jittered(period: Duration, ctx: &mut Ctx<'_>) -> Duration {
    let tenth = period / 10;
    if tenth.is_zero() {
        return period;
    }
    period - tenth + tenth.mul_f64(2.0 * ctx.rng.random::<f64>())
}
