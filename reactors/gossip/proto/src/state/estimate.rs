//! Network size estimation for one topic: a k-minimum-values sketch per
//! epoch, spread over the active view.
//!
//! Each member has, in epoch `e` (wall-clock time cut into
//! `estimate_epoch` slices), a pseudo-random value: the hash of the topic,
//! `e` and its PeerId, uniform over `u64`. Every node keeps the `k`
//! smallest values it has heard of in the current epoch (its own
//! included) and sends them to its neighbours when they change (at most
//! once per `estimate_interval`). Within a few rounds — the overlay's
//! diameter — every node holds the `k` smallest values of all members, and
//! if the k-th smallest is `v`, the number of members is about
//! `(k − 1) / (v / 2^64)`, with a relative standard error of about
//! `1 / √(k − 2)` (9 % for k = 128). With fewer than `k` members the sketch
//! holds them all and the count is exact.
//!
//! A fresh epoch forgets departed members; the estimate reported is that
//! of the last complete epoch (the current one is still spreading), or the
//! current sketch's before any epoch completed.
//!
//! What an attacker can do: send small made-up values, which inflates the
//! estimate (nothing ties a value to a member); values of a past or
//! future epoch are ignored, and a sketch carries at most 256 values. The
//! estimate is for information (dashboards, choosing parameters), never
//! for a decision that an inflated count could abuse.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use p2p_core::PeerId;
use sha2::{Digest, Sha256};

use crate::state::Ctx;
use crate::state::message::{Contact, Message, TopicId};

const DOMAIN: &[u8] = b"switchyard/gossip/v1/size";

/// `peer`'s value in `epoch` of `topic`.
pub fn member_value(topic: &TopicId, epoch: u64, peer: &PeerId) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update((DOMAIN.len() as u64).to_be_bytes());
    hasher.update(DOMAIN);
    hasher.update(topic.as_bytes());
    hasher.update(epoch.to_be_bytes());
    hasher.update(peer.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The size a sketch of `k` slots stands for.
pub fn estimate_from(sketch: &BTreeSet<u64>, k: usize) -> f64 {
    if sketch.len() < k || k < 2 {
        return sketch.len() as f64;
    }
    let Some(&kth) = sketch.iter().nth(k - 1) else {
        return sketch.len() as f64;
    };
    let fraction = (kth as f64 + 1.0) / 18_446_744_073_709_551_616.0;
    (k - 1) as f64 / fraction
}

#[derive(Debug)]
pub(crate) struct SizeEstimator {
    topic: TopicId,
    me: PeerId,
    k: usize,
    epoch_len: Duration,
    interval: Duration,
    epoch: u64,
    sketch: BTreeSet<u64>,
    /// Bumped at every change of the sketch.
    version: u64,
    /// The version each neighbour was last sent.
    sent: BTreeMap<PeerId, u64>,
    next_send: Instant,
    /// The estimate of the last complete epoch.
    last: Option<f64>,
}

impl SizeEstimator {
    pub(crate) fn new(
        topic: TopicId,
        me: PeerId,
        k: usize,
        epoch_len: Duration,
        interval: Duration,
        now: Instant,
    ) -> Self {
        Self {
            topic,
            me,
            k,
            epoch_len,
            interval,
            epoch: u64::MAX,
            sketch: BTreeSet::new(),
            version: 0,
            sent: BTreeMap::new(),
            next_send: now,
            last: None,
        }
    }

    fn epoch_at(&self, unix_ms: u64) -> u64 {
        unix_ms / (self.epoch_len.as_millis() as u64).max(1)
    }

    /// Starts the epoch of `unix_ms` if it is a new one.
    fn roll(&mut self, unix_ms: u64) {
        let epoch = self.epoch_at(unix_ms);
        if epoch == self.epoch {
            return;
        }
        if self.epoch != u64::MAX && epoch == self.epoch + 1 && !self.sketch.is_empty() {
            self.last = Some(estimate_from(&self.sketch, self.k));
        }
        self.epoch = epoch;
        self.sketch = BTreeSet::from([member_value(&self.topic, epoch, &self.me)]);
        self.version += 1;
    }

    /// The estimated number of members (this node included).
    pub(crate) fn estimate(&self) -> f64 {
        self.last
            .unwrap_or_else(|| estimate_from(&self.sketch, self.k))
    }

    pub(crate) fn neighbor_down(&mut self, peer: &PeerId) {
        self.sent.remove(peer);
    }

    pub(crate) fn on_sketch(&mut self, epoch: u64, values: Vec<u64>, ctx: &mut Ctx<'_>) {
        self.roll(ctx.unix_ms);
        if epoch != self.epoch {
            return;
        }
        let before = self.sketch.clone();
        self.sketch.extend(values);
        while self.sketch.len() > self.k {
            self.sketch.pop_last();
        }
        if self.sketch != before {
            self.version += 1;
        }
    }

    /// Sends the sketch to neighbours that have not seen this version.
    pub(crate) fn on_tick(&mut self, neighbours: &[PeerId], ctx: &mut Ctx<'_>) {
        self.roll(ctx.unix_ms);
        if ctx.now < self.next_send {
            return;
        }
        self.next_send = ctx.now + self.interval;
        for peer in neighbours {
            if self.sent.get(peer) == Some(&self.version) {
                continue;
            }
            self.sent.insert(*peer, self.version);
            ctx.send(
                Contact::bare(*peer),
                Message::SizeSketch {
                    epoch: self.epoch,
                    values: self.sketch.iter().copied().collect(),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sketch_estimates_the_number_of_values_within_its_error() {
        let topic = TopicId::from_name("size");
        let k = 128;
        for n in [50usize, 1000, 20_000] {
            let sketch: BTreeSet<u64> = (0..n as u64)
                .map(|i| {
                    let peer = p2p_core::Keypair::from_seed(i).peer_id();
                    member_value(&topic, 7, &peer)
                })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .take(k)
                .collect();
            let estimate = estimate_from(&sketch, k);
            let error = (estimate - n as f64).abs() / n as f64;
            assert!(error < 0.3, "n {n}: estimate {estimate}");
            if n < k {
                assert_eq!(estimate, n as f64, "exact below k");
            }
        }
    }
}
