//! Plumtree broadcast for one topic (Leitão, Pereira, Rodrigues, SRDS
//! 2007): payloads travel along a spanning tree of **eager** links; every
//! other link of the active view is **lazy** and carries only `IHave`
//! announcements. A duplicate payload turns its link lazy (`Prune`); a
//! message announced but not received within `graft_timeout` is fetched
//! from its announcer, whose link turns eager (`Graft`). So the tree forms
//! on the first broadcast and repairs itself when links fail.
//!
//! The tree is also optimised as in the paper: when an announcement shows
//! a path at least `optimization_threshold` hops shorter than the one the
//! payload took, the announcer's link is grafted (without asking for the
//! payload) and the eager parent pruned.
//!
//! Every payload is checked before it is delivered or forwarded: its id is
//! computed from its content (so a duplicate costs one hash), a message
//! already seen is a duplicate whatever its signature, and a new one must
//! carry its origin's valid signature and a timestamp no older than
//! `max_message_age` and no further ahead than `max_clock_skew` by our
//! clock.
//!
//! **Replay.** A delivered id is remembered for `seen_retention`, longer
//! than a timestamp stays acceptable, and it is forgotten by time only:
//! when `max_seen` ids are remembered, a new message is refused
//! (`seen_full`) rather than an old id forgotten — an attacker who could
//! flush the cache by volume could replay what it pushed out. Messages
//! dropped by the origin rate limit never enter the seen-cache (they were
//! not delivered); a small cache of their own, which may forget, makes
//! their copies cheap.
//!
//! **Budgets per neighbour.** Payloads and announcements are taken only
//! from the active view (`not_neighbor`). Each neighbour may push
//! `neighbor_rate` new messages a second and introduce
//! `neighbor_new_origins` origins new to us (origin keys cost nothing, so
//! the per-origin limit alone does not bound a neighbour); over either, the
//! message is dropped without being remembered, so another neighbour can
//! still bring it (`neighbor_rate_limited`). Each neighbour may have us
//! track `max_missing_per_neighbor` announced messages at once, so one
//! cannot crowd out the others' announcements (`missing_overflow`).
//!
//! **Hop counts** are the sender's claim. Only the origin may send a
//! payload at hop 1 or announce one at hop 0; a relay that claims it is
//! refused and penalised (`hops_forged`, [`FORGED_HOPS_PENALTY`]). Past
//! that first link the claim cannot be checked, so a neighbour takes the
//! eager-parent role by announcing a shorter path `optimization_burst`
//! times, then once per `optimization_interval` (`optimizations_deferred`):
//! one that then withholds payloads costs each message one graft, and
//! cannot take the role straight back.
//!
//! **Memory.** A delivered payload is copied out of the frame it came in
//! before it is cached or handed to the application (a decoded `bytes`
//! field is a view that would keep the whole frame, unknown Protobuf
//! fields included), and the cache counts each entry's payload plus its
//! own size against `payload_cache_bytes`. So padding a message costs its
//! sender bandwidth but costs us nothing beyond the message's handling.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use p2p_core::{PeerError, PeerId};

use crate::config::PlumtreeConfig;
use crate::state::bucket::{PeerBuckets, Rate};
use crate::state::message::{
    Contact, MAX_HOPS, MAX_IHAVE_ENTRIES, Message, MessageId, SignedMessage, TopicId,
};
use crate::state::{Ctx, Delivery, TopicOut};

/// Score a peer loses for a payload whose origin signature is forged.
pub const FORGED_PENALTY: i64 = 25;
/// Score a peer loses for a hop count only the origin could claim.
pub const FORGED_HOPS_PENALTY: i64 = 10;
/// Neighbours whose push budgets are tracked at once (more than any
/// active view; the least recent is forgotten).
const MAX_SENDERS: usize = 64;

/// Whether a new message may be taken, and if not whose budget is spent.
enum Admit {
    Yes,
    /// The sending neighbour's (`neighbor_rate`, `neighbor_new_origins`).
    Neighbor,
    /// The origin's (`origin_rate`).
    Origin,
}
/// Announcers remembered per missing message.
const MAX_ANNOUNCERS: usize = 8;
/// Ids of rate-limited messages remembered (oldest forgotten first:
/// forgetting one costs a signature check on its next copy, never a
/// second delivery, since it was never delivered).
const MAX_THROTTLED: usize = 4096;

/// What one cached message costs besides its payload: the entry in the
/// map and in the expiry queue.
pub(crate) const CACHE_ENTRY_OVERHEAD: usize =
    std::mem::size_of::<(MessageId, SignedMessage)>() + std::mem::size_of::<(Instant, MessageId)>();

/// What a cached message holds, counted against `payload_cache_bytes`:
/// its payload (detached, so exactly its own bytes) and its entry, so that
/// many empty payloads cost as much as they take.
fn cached_size(message: &SignedMessage) -> usize {
    message.payload.len() + CACHE_ENTRY_OVERHEAD
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    /// Hops at which we got it (0: our own).
    hops: u32,
    /// The peer it came from (our parent in its tree), if any.
    from: Option<PeerId>,
    /// Who published it (an announcement at hop 0 must come from it).
    origin: PeerId,
}

/// One topic's broadcast tree and caches.
#[derive(Debug)]
pub(crate) struct Plumtree {
    topic: TopicId,
    config: PlumtreeConfig,
    max_message_age: Duration,
    max_clock_skew: Duration,
    eager: BTreeSet<PeerId>,
    lazy: BTreeSet<PeerId>,
    lazy_queue: BTreeMap<PeerId, Vec<(MessageId, u32)>>,
    flush_at: Option<Instant>,
    seen: HashMap<MessageId, Seen>,
    /// Ids in the order they expire.
    seen_order: VecDeque<(Instant, MessageId)>,
    /// Ids of messages dropped by the origin rate limit, oldest first.
    throttled: HashSet<MessageId>,
    throttled_order: VecDeque<MessageId>,
    payloads: HashMap<MessageId, SignedMessage>,
    payload_order: VecDeque<(Instant, MessageId)>,
    payload_bytes: usize,
    /// Announced, not received.
    missing: HashMap<MessageId, Missing>,
    graft_timers: BinaryHeap<Reverse<(Instant, MessageId)>>,
    /// Per-origin token buckets (`origin_rate`), at most `max_origins`.
    origins: Option<PeerBuckets>,
    /// Per-neighbour token buckets for new messages (`neighbor_rate`).
    senders: Option<PeerBuckets>,
    /// Per-neighbour token buckets for origins new to us
    /// (`neighbor_new_origins`).
    introductions: Option<PeerBuckets>,
    /// Missing entries each neighbour created (its `max_missing_per_neighbor`
    /// quota).
    missing_by: HashMap<PeerId, usize>,
    /// Per-neighbour budgets for taking the parent role by an announcement
    /// (`optimization_burst`, one more per `optimization_interval`).
    optimizations: PeerBuckets,
    /// Neighbours seen taking part since the last drain: they relayed a
    /// message new to us, or announced one before we had it (drained by
    /// the topic, which ends their probation).
    pub(crate) vouched: Vec<PeerId>,
}

/// A message announced but not received.
#[derive(Debug)]
struct Missing {
    /// Who announced it, at which hop count, in the order asked.
    announcers: VecDeque<(PeerId, u32)>,
    /// Who announced it first (charged against its quota).
    creator: PeerId,
}

impl Plumtree {
    pub(crate) fn new(
        topic: TopicId,
        config: PlumtreeConfig,
        max_message_age: Duration,
        max_clock_skew: Duration,
    ) -> Self {
        Self {
            topic,
            max_message_age,
            max_clock_skew,
            eager: BTreeSet::new(),
            lazy: BTreeSet::new(),
            lazy_queue: BTreeMap::new(),
            flush_at: None,
            seen: HashMap::new(),
            seen_order: VecDeque::new(),
            throttled: HashSet::new(),
            throttled_order: VecDeque::new(),
            payloads: HashMap::new(),
            payload_order: VecDeque::new(),
            payload_bytes: 0,
            missing: HashMap::new(),
            graft_timers: BinaryHeap::new(),
            origins: Rate::per_second(config.origin_rate, config.origin_burst)
                .map(|rate| PeerBuckets::new(rate, config.max_origins)),
            senders: Rate::per_second(config.neighbor_rate, config.neighbor_burst)
                .map(|rate| PeerBuckets::new(rate, MAX_SENDERS)),
            introductions: Rate::per_second(
                config.neighbor_new_origins,
                config.neighbor_new_origins_burst,
            )
            .map(|rate| PeerBuckets::new(rate, MAX_SENDERS)),
            missing_by: HashMap::new(),
            optimizations: PeerBuckets::new(
                Rate {
                    burst: config.optimization_burst,
                    every: config.optimization_interval,
                },
                MAX_SENDERS,
            ),
            vouched: Vec::new(),
            config,
        }
    }

    /// Takes the tokens a new message costs: one from `origin`'s bucket
    /// (`origin_rate`), one from the sending neighbour's (`neighbor_rate`),
    /// and, if the origin is new to us, one from the neighbour's
    /// introductions (`neighbor_new_origins`) — so fresh origin keys, which
    /// cost nothing to make, do not multiply what one neighbour may push.
    fn admit(&mut self, from: PeerId, origin: PeerId, now: Instant) -> Admit {
        if let Some(senders) = &mut self.senders
            && !senders.take(from, now)
        {
            return Admit::Neighbor;
        }
        if let Some(origins) = &mut self.origins {
            if !origins.knows(&origin)
                && let Some(introductions) = &mut self.introductions
                && !introductions.take(from, now)
            {
                return Admit::Neighbor;
            }
            if !origins.take(origin, now) {
                return Admit::Origin;
            }
        }
        Admit::Yes
    }

    pub(crate) fn eager(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.eager.iter().copied()
    }

    pub(crate) fn lazy(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.lazy.iter().copied()
    }

    fn is_neighbor(&self, peer: &PeerId) -> bool {
        self.eager.contains(peer) || self.lazy.contains(peer)
    }

    /// Whether message `id` was delivered (or published) here and is still
    /// remembered.
    pub(crate) fn has_seen(&self, id: &MessageId) -> bool {
        self.seen.contains_key(id)
    }

    /// Whether `max_seen` ids are remembered (nothing new is accepted).
    pub(crate) fn is_full(&self) -> bool {
        self.seen.len() >= self.config.max_seen
    }

    /// A new neighbour starts as an eager link (the paper's initial tree
    /// is the whole active view).
    pub(crate) fn neighbor_up(&mut self, peer: PeerId) {
        self.lazy.remove(&peer);
        self.eager.insert(peer);
    }

    pub(crate) fn neighbor_down(&mut self, peer: &PeerId) {
        self.eager.remove(peer);
        self.lazy.remove(peer);
        self.lazy_queue.remove(peer);
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let graft = self.graft_timers.peek().map(|Reverse((at, _))| *at);
        match (self.flush_at, graft) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Broadcasts our own message (already signed). Its payload is
    /// detached like a received one's: the application's `Bytes` may be a
    /// view into a larger buffer.
    pub(crate) fn publish(&mut self, id: MessageId, message: SignedMessage, ctx: &mut Ctx<'_>) {
        self.accept(id, message.detached(), 0, None, ctx);
    }

    pub(crate) fn on_message(&mut self, from: PeerId, message: Message, ctx: &mut Ctx<'_>) {
        match message {
            Message::Gossip { message, hops } => self.on_gossip(from, message, hops, ctx),
            Message::IHave { entries } => self.on_ihave(from, entries, ctx),
            Message::Graft { id, hops } => self.on_graft(from, id, hops, ctx),
            Message::Prune if self.eager.remove(&from) => {
                self.lazy.insert(from);
            }
            // HyParView's messages never reach here.
            _ => {}
        }
    }

    fn on_gossip(&mut self, from: PeerId, message: SignedMessage, hops: u32, ctx: &mut Ctx<'_>) {
        ctx.stats.payload_received += 1;
        if !self.is_neighbor(&from) {
            // Payloads travel along the active view only: a peer outside
            // it pushes nothing (one that left a moment ago is not
            // blamed).
            ctx.stats.not_neighbor += 1;
            return;
        }
        if hops == 0 || (hops == 1 && from != message.origin) {
            // Only the origin sends at hop 1; a lower count than the path
            // would make its sender our parent by optimisation.
            ctx.stats.hops_forged += 1;
            self.report_hops(from, hops, ctx);
            return;
        }
        let id = message.id(&self.topic);
        if self.seen.contains_key(&id) || self.throttled.contains(&id) {
            ctx.stats.duplicates += 1;
            if self.eager.remove(&from) {
                self.lazy.insert(from);
                self.send_prune(from, ctx);
            }
            return;
        }
        let too_old = ctx.unix_ms.saturating_sub(message.timestamp_ms);
        let too_new = message.timestamp_ms.saturating_sub(ctx.unix_ms);
        if u128::from(too_old) > self.max_message_age.as_millis()
            || u128::from(too_new) > self.max_clock_skew.as_millis()
        {
            ctx.stats.stale_rejected += 1;
            return;
        }
        if self.is_full() {
            self.expire(ctx.now);
        }
        if self.is_full() {
            // Before the signature check: a full cache costs nothing more.
            ctx.stats.seen_full += 1;
            return;
        }
        if message.verify(&id).is_err() {
            ctx.stats.forged_rejected += 1;
            ctx.out.push(TopicOut::Report {
                peer: from,
                error: PeerError::Misbehaviour {
                    channel: crate::CHANNEL_NAME,
                    reason: format!(
                        "forged signature on a gossip message claiming origin {}",
                        message.origin.short()
                    ),
                    penalty: FORGED_PENALTY,
                },
            });
            return;
        }
        match self.admit(from, message.origin, ctx.now) {
            Admit::Yes => {}
            Admit::Neighbor => {
                // This neighbour pushes more than its share: dropped, not
                // remembered, so the message can still come (or be
                // grafted) from another neighbour.
                ctx.stats.neighbor_rate_limited += 1;
                return;
            }
            Admit::Origin => {
                // The origin really signed it, and the sender only relayed
                // it: nobody is blamed. Remembered, so copies from other
                // neighbours are cheap duplicates (and prune the tree as
                // duplicates should).
                ctx.stats.rate_limited += 1;
                self.take_missing(&id);
                self.throttle(id);
                return;
            }
        }
        // Kept for `payload_retention` and handed to the application: it
        // must not keep the frame it arrived in alive.
        let message = message.detached();
        let announcers = self.take_missing(&id).unwrap_or_default();
        // Who relayed it, and who announced it before we had it, took part
        // in the broadcast (the origin itself proves nothing).
        let origin = message.origin;
        self.vouched.extend(
            announcers
                .iter()
                .map(|(peer, _)| *peer)
                .chain(std::iter::once(from))
                .filter(|peer| *peer != origin),
        );
        let best_announcement = announcers
            .into_iter()
            .filter(|(peer, _)| self.lazy.contains(peer))
            .min_by_key(|(_, h)| *h);
        ctx.out.push(TopicOut::Deliver(Delivery {
            topic: self.topic,
            id,
            origin: message.origin,
            payload: message.payload.clone(),
            hops,
            timestamp_ms: message.timestamp_ms,
        }));
        ctx.stats.delivered += 1;
        self.accept(id, message, hops, Some(from), ctx);
        if self.lazy.remove(&from) {
            self.eager.insert(from);
        }
        if let Some((announcer, announced_hops)) = best_announcement {
            if announced_hops == 0 && announcer != origin {
                ctx.stats.hops_forged += 1;
                self.report_hops(announcer, announced_hops, ctx);
            } else {
                self.optimize(id, hops, from, announcer, announced_hops, ctx);
            }
        }
    }

    /// `peer` claimed a hop count its position cannot have.
    fn report_hops(&mut self, peer: PeerId, hops: u32, ctx: &mut Ctx<'_>) {
        ctx.out.push(TopicOut::Report {
            peer,
            error: PeerError::Misbehaviour {
                channel: crate::CHANNEL_NAME,
                reason: format!("hop count {hops} claimed by a peer that is not the origin"),
                penalty: FORGED_HOPS_PENALTY,
            },
        });
    }

    /// Forgets missing message `id`, releasing its creator's quota.
    fn take_missing(&mut self, id: &MessageId) -> Option<VecDeque<(PeerId, u32)>> {
        let missing = self.missing.remove(id)?;
        if let Some(count) = self.missing_by.get_mut(&missing.creator) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.missing_by.remove(&missing.creator);
            }
        }
        Some(missing.announcers)
    }

    /// Remembers, caches and forwards a message new to us.
    fn accept(
        &mut self,
        id: MessageId,
        message: SignedMessage,
        hops: u32,
        from: Option<PeerId>,
        ctx: &mut Ctx<'_>,
    ) {
        self.remember(
            id,
            Seen {
                hops,
                from,
                origin: message.origin,
            },
            ctx.now,
        );
        let next_hops = (hops + 1).min(MAX_HOPS);
        for peer in &self.eager {
            if Some(*peer) != from {
                ctx.send(
                    Contact::bare(*peer),
                    Message::Gossip {
                        message: message.clone(),
                        hops: next_hops,
                    },
                );
            }
        }
        for peer in &self.lazy {
            if Some(*peer) != from {
                self.lazy_queue.entry(*peer).or_default().push((id, hops));
            }
        }
        if !self.lazy_queue.is_empty() && self.flush_at.is_none() {
            self.flush_at = Some(ctx.now + self.config.ihave_delay);
        }
        self.cache(id, message, ctx.now);
    }

    /// The tree optimisation: a lazy link `announced_hops + 1` hops from
    /// the origin replaces the eager `parent` that brought the message in
    /// `hops` hops, if that saves at least the threshold.
    fn optimize(
        &mut self,
        id: MessageId,
        hops: u32,
        parent: PeerId,
        announcer: PeerId,
        announced_hops: u32,
        ctx: &mut Ctx<'_>,
    ) {
        let threshold = self.config.optimization_threshold;
        if threshold == 0
            || announcer == parent
            || !self.lazy.contains(&announcer)
            || !self.eager.contains(&parent)
            || hops < announced_hops + 1 + threshold
        {
            return;
        }
        // Hop counts cannot be checked past the origin's own link, so a
        // neighbour that claims short paths takes the parent role within a
        // budget: if it then withholds payloads, grafts repair each
        // message and it cannot take the role straight back.
        if !self.optimizations.take(announcer, ctx.now) {
            ctx.stats.optimizations_deferred += 1;
            return;
        }
        self.lazy.remove(&announcer);
        self.eager.insert(announcer);
        ctx.send(
            Contact::bare(announcer),
            Message::Graft {
                id: None,
                hops: announced_hops,
            },
        );
        ctx.stats.grafts_sent += 1;
        self.eager.remove(&parent);
        self.lazy.insert(parent);
        self.send_prune(parent, ctx);
        if let Some(seen) = self.seen.get_mut(&id) {
            seen.hops = announced_hops + 1;
            seen.from = Some(announcer);
        }
    }

    fn on_ihave(&mut self, from: PeerId, entries: Vec<(MessageId, u32)>, ctx: &mut Ctx<'_>) {
        if !self.is_neighbor(&from) {
            ctx.stats.not_neighbor += 1;
            return;
        }
        for (id, hops) in entries {
            if let Some(seen) = self.seen.get(&id).copied() {
                if hops == 0 && from != seen.origin {
                    ctx.stats.hops_forged += 1;
                    self.report_hops(from, hops, ctx);
                    return;
                }
                if let Some(parent) = seen.from {
                    self.optimize(id, seen.hops, parent, from, hops, ctx);
                }
                continue;
            }
            match self.missing.get_mut(&id) {
                Some(missing) => {
                    if missing.announcers.len() < MAX_ANNOUNCERS
                        && !missing.announcers.iter().any(|(p, _)| *p == from)
                    {
                        missing.announcers.push_back((from, hops));
                    }
                }
                None => {
                    if self.missing.len() >= self.config.max_missing {
                        ctx.stats.missing_overflow += 1;
                        continue;
                    }
                    // Each neighbour creates at most its quota of entries,
                    // so one cannot crowd out the others' announcements.
                    let created = self.missing_by.entry(from).or_default();
                    if *created >= self.config.max_missing_per_neighbor {
                        ctx.stats.missing_overflow += 1;
                        continue;
                    }
                    *created += 1;
                    self.missing.insert(
                        id,
                        Missing {
                            announcers: VecDeque::from([(from, hops)]),
                            creator: from,
                        },
                    );
                    self.graft_timers
                        .push(Reverse((ctx.now + self.config.graft_timeout, id)));
                }
            }
        }
    }

    fn on_graft(&mut self, from: PeerId, id: Option<MessageId>, _hops: u32, ctx: &mut Ctx<'_>) {
        if !self.is_neighbor(&from) {
            return;
        }
        self.lazy.remove(&from);
        self.eager.insert(from);
        let Some(id) = id else {
            return;
        };
        if let (Some(message), Some(seen)) = (self.payloads.get(&id), self.seen.get(&id)) {
            ctx.send(
                Contact::bare(from),
                Message::Gossip {
                    message: message.clone(),
                    hops: (seen.hops + 1).min(MAX_HOPS),
                },
            );
            ctx.stats.graft_answers += 1;
        }
    }

    pub(crate) fn on_tick(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        if self.flush_at.is_some_and(|at| at <= now) {
            self.flush_at = None;
            for (peer, entries) in std::mem::take(&mut self.lazy_queue) {
                if !self.is_neighbor(&peer) {
                    continue;
                }
                for chunk in entries.chunks(MAX_IHAVE_ENTRIES) {
                    ctx.send(
                        Contact::bare(peer),
                        Message::IHave {
                            entries: chunk.to_vec(),
                        },
                    );
                    ctx.stats.ihave_sent += 1;
                }
            }
        }
        while let Some(Reverse((at, id))) = self.graft_timers.peek().copied() {
            if at > now {
                break;
            }
            self.graft_timers.pop();
            self.graft_next(id, ctx);
        }
    }

    /// Asks the next announcer of missing message `id` for it.
    fn graft_next(&mut self, id: MessageId, ctx: &mut Ctx<'_>) {
        let Some(missing) = self.missing.get_mut(&id) else {
            return;
        };
        let next = loop {
            match missing.announcers.pop_front() {
                Some((peer, hops)) => {
                    if self.eager.contains(&peer) || self.lazy.contains(&peer) {
                        break Some((peer, hops));
                    }
                }
                None => break None,
            }
        };
        let Some((peer, hops)) = next else {
            self.take_missing(&id);
            ctx.stats.missing_given_up += 1;
            return;
        };
        self.lazy.remove(&peer);
        self.eager.insert(peer);
        ctx.send(Contact::bare(peer), Message::Graft { id: Some(id), hops });
        ctx.stats.grafts_sent += 1;
        self.graft_timers
            .push(Reverse((ctx.now + self.config.graft_retry, id)));
    }

    fn send_prune(&mut self, peer: PeerId, ctx: &mut Ctx<'_>) {
        ctx.send(Contact::bare(peer), Message::Prune);
        ctx.stats.prunes_sent += 1;
    }

    /// Remembers a delivered (or published) id until `seen_retention`
    /// from now. Callers check `max_seen` first.
    fn remember(&mut self, id: MessageId, seen: Seen, now: Instant) {
        if self.seen.insert(id, seen).is_none() {
            self.seen_order
                .push_back((now + self.config.seen_retention, id));
        }
    }

    fn throttle(&mut self, id: MessageId) {
        if self.throttled.insert(id) {
            self.throttled_order.push_back(id);
        }
        while self.throttled_order.len() > MAX_THROTTLED {
            if let Some(old) = self.throttled_order.pop_front() {
                self.throttled.remove(&old);
            }
        }
    }

    /// Caches a (detached) message for grafts, counting what it holds.
    fn cache(&mut self, id: MessageId, message: SignedMessage, now: Instant) {
        let size = cached_size(&message);
        if size > self.config.payload_cache_bytes {
            return;
        }
        self.payload_bytes += size;
        match self.payloads.insert(id, message) {
            None => self
                .payload_order
                .push_back((now + self.config.payload_retention, id)),
            // Seen again after its id was forgotten: one copy, counted once.
            Some(old) => self.payload_bytes -= cached_size(&old),
        }
        while self.payload_bytes > self.config.payload_cache_bytes {
            self.evict_oldest_payload();
        }
    }

    fn evict_oldest_payload(&mut self) {
        if let Some((_, id)) = self.payload_order.pop_front()
            && let Some(m) = self.payloads.remove(&id)
        {
            self.payload_bytes -= cached_size(&m);
        }
    }

    /// Forgets expired ids and payloads.
    pub(crate) fn expire(&mut self, now: Instant) {
        while self.seen_order.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, id)) = self.seen_order.pop_front() {
                self.seen.remove(&id);
            }
        }
        while self.payload_order.front().is_some_and(|(at, _)| *at <= now) {
            self.evict_oldest_payload();
        }
        // Grafting stops when no announcer is left; entries whose timers
        // were all spent are removed there. Nothing else to expire.
    }

    /// Checks the invariants (tests and property tests).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        assert!(
            self.eager.is_disjoint(&self.lazy),
            "a link both eager and lazy"
        );
        assert!(self.seen.len() <= self.config.max_seen);
        assert!(self.throttled.len() <= MAX_THROTTLED);
        assert_eq!(self.throttled.len(), self.throttled_order.len());
        assert!(self.missing.len() <= self.config.max_missing);
        assert_eq!(
            self.missing_by.values().sum::<usize>(),
            self.missing.len(),
            "every missing entry is charged to one neighbour"
        );
        assert!(
            self.missing_by
                .values()
                .all(|n| *n <= self.config.max_missing_per_neighbor)
        );
        assert!(self.payload_bytes <= self.config.payload_cache_bytes);
        assert_eq!(self.seen.len(), self.seen_order.len());
    }
}
