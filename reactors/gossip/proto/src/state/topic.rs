//! One topic: its membership (HyParView) and its broadcast tree
//! (Plumtree), kept in step — every peer entering or leaving the active
//! view enters or leaves the tree.

use std::time::Instant;

use p2p_core::PeerId;

use crate::config::GossipConfig;
use crate::state::connections::Candidates;
use crate::state::estimate::SizeEstimator;
use crate::state::hyparview::HyParView;
use crate::state::message::{Contact, Message, MessageId, SignedMessage, TopicId};
use crate::state::plumtree::Plumtree;
use crate::state::{Ctx, TopicOut};

#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) membership: HyParView,
    pub(crate) tree: Plumtree,
    pub(crate) size: Option<SizeEstimator>,
}

impl Topic {
    pub(crate) fn new(id: TopicId, me: Contact, config: &GossipConfig, ctx: &mut Ctx<'_>) -> Self {
        let size = (config.estimate_sketch_size > 0).then(|| {
            SizeEstimator::new(
                id,
                me.peer,
                config.estimate_sketch_size,
                config.estimate_epoch,
                config.estimate_interval,
                ctx.now,
            )
        });
        Self {
            membership: HyParView::new(me, config.hyparview.clone(), ctx),
            tree: Plumtree::new(
                id,
                config.plumtree.clone(),
                config.max_message_age,
                config.max_clock_skew,
            ),
            size,
        }
    }

    /// Applies the neighbour changes membership pushed since `start`.
    fn sync(&mut self, start: usize, ctx: &mut Ctx<'_>) {
        for out in &ctx.out[start..] {
            match out {
                TopicOut::NeighborUp(peer) => self.tree.neighbor_up(*peer),
                TopicOut::NeighborDown(peer) => {
                    self.tree.neighbor_down(peer);
                    if let Some(size) = &mut self.size {
                        size.neighbor_down(peer);
                    }
                }
                _ => {}
            }
        }
    }

    /// Runs a membership step and brings the tree in line.
    fn membership_step(
        &mut self,
        ctx: &mut Ctx<'_>,
        step: impl FnOnce(&mut HyParView, &mut Ctx<'_>),
    ) {
        let start = ctx.out.len();
        step(&mut self.membership, ctx);
        self.sync(start, ctx);
    }

    pub(crate) fn join(&mut self, bootstrap: Vec<Contact>, ctx: &mut Ctx<'_>) {
        self.membership_step(ctx, |m, ctx| m.join(bootstrap, ctx));
    }

    pub(crate) fn leave(&mut self, ctx: &mut Ctx<'_>) {
        self.membership_step(ctx, |m, ctx| m.leave(ctx));
    }

    pub(crate) fn publish(&mut self, id: MessageId, message: SignedMessage, ctx: &mut Ctx<'_>) {
        self.tree.publish(id, message, ctx);
    }

    pub(crate) fn on_message(&mut self, from: PeerId, message: Message, ctx: &mut Ctx<'_>) {
        match message {
            Message::Gossip { .. } | Message::IHave { .. } => {
                let start = ctx.out.len();
                self.tree.on_message(from, message, ctx);
                if ctx.out[start..]
                    .iter()
                    .any(|o| matches!(o, TopicOut::Deliver(_)))
                {
                    self.membership.on_delivery(ctx.now);
                }
                for peer in std::mem::take(&mut self.tree.vouched) {
                    self.membership.vouch(&peer);
                }
            }
            Message::Graft { .. } | Message::Prune => self.tree.on_message(from, message, ctx),
            Message::SizeSketch { epoch, values } => {
                if let Some(size) = &mut self.size
                    && self.membership.is_active(&from)
                {
                    size.on_sketch(epoch, values, ctx);
                }
            }
            _ => self.membership_step(ctx, |m, ctx| m.on_message(from, message, ctx)),
        }
    }

    pub(crate) fn on_peer_down(&mut self, peer: &PeerId, ctx: &mut Ctx<'_>) {
        self.membership_step(ctx, |m, ctx| m.on_peer_down(peer, ctx));
    }

    pub(crate) fn on_dial_failed(&mut self, peer: &PeerId, ctx: &mut Ctx<'_>) {
        self.membership_step(ctx, |m, ctx| m.on_dial_failed(peer, ctx));
    }

    pub(crate) fn on_tick(&mut self, candidates: &Candidates, ctx: &mut Ctx<'_>) {
        self.membership_step(ctx, |m, ctx| m.on_tick(candidates, ctx));
        self.tree.on_tick(ctx);
        if let Some(size) = &mut self.size {
            // Sent at housekeeping ticks (every second); no wakeup of its
            // own.
            let neighbours: Vec<PeerId> = self.membership.active().collect();
            size.on_tick(&neighbours, ctx);
        }
    }

    pub(crate) fn expire(&mut self, now: Instant) {
        self.tree.expire(now);
    }

    pub(crate) fn next_deadline(&self) -> Instant {
        let at = self.membership.next_deadline();
        match self.tree.next_deadline() {
            Some(tree) => at.min(tree),
            None => at,
        }
    }

    /// Checks the invariants (tests and property tests).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        use std::collections::BTreeSet;
        self.membership.check_invariants();
        self.tree.check_invariants();
        let active: BTreeSet<PeerId> = self.membership.active().collect();
        let tree: BTreeSet<PeerId> = self.tree.eager().chain(self.tree.lazy()).collect();
        assert_eq!(active, tree, "the tree's links are the active view");
    }
}
