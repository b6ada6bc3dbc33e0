//! Token buckets, alone and keyed by peer: the rate limits of membership
//! (per sending peer, and evictions in all) and of broadcast (per origin,
//! per sending neighbour). Time is passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use p2p_core::PeerId;

/// A rate: `burst` tokens at most, one more every `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    pub(crate) burst: u32,
    pub(crate) every: Duration,
}

impl Rate {
    /// `per_second` tokens a second (0: no limit), `burst` at most.
    pub(crate) fn per_second(per_second: u32, burst: u32) -> Option<Self> {
        (per_second > 0).then(|| Self {
            burst,
            every: Duration::from_secs(1) / per_second,
        })
    }
}

/// A token bucket: `tokens` as of `at`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate.burst),
            at: now,
        }
    }

    /// Takes a token; false if there is none.
    pub(crate) fn take(&mut self, rate: Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at);
        let every = rate.every.as_secs_f64();
        let refill = if every > 0.0 {
            elapsed.as_secs_f64() / every
        } else {
            f64::INFINITY
        };
        self.tokens = (self.tokens + refill).min(f64::from(rate.burst));
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Buckets per peer, `capacity` peers at most: a new peer beyond it
/// replaces the one heard from least recently (a full bucket is what a
/// new entry holds anyway, so forgetting one grants at most one burst).
#[derive(Debug)]
pub(crate) struct PeerBuckets {
    rate: Rate,
    capacity: usize,
    buckets: HashMap<PeerId, Bucket>,
}

impl PeerBuckets {
    pub(crate) fn new(rate: Rate, capacity: usize) -> Self {
        Self {
            rate,
            capacity: capacity.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes a token from `peer`'s bucket; false if it is empty.
    pub(crate) fn take(&mut self, peer: PeerId, now: Instant) -> bool {
        if !self.buckets.contains_key(&peer)
            && self.buckets.len() >= self.capacity
            && let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(peer, b)| (b.at, **peer))
                .map(|(peer, _)| *peer)
        {
            self.buckets.remove(&oldest);
        }
        let rate = self.rate;
        self.buckets
            .entry(peer)
            .or_insert_with(|| Bucket::full(rate, now))
            .take(rate, now)
    }

    /// Whether `peer` has a bucket (it sent something lately).
    pub(crate) fn knows(&self, peer: &PeerId) -> bool {
        self.buckets.contains_key(peer)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_one_token_per_period() {
        let now = Instant::now();
        let rate = Rate {
            burst: 3,
            every: Duration::from_secs(2),
        };
        let mut bucket = Bucket::full(rate, now);
        assert!((0..3).all(|_| bucket.take(rate, now)));
        assert!(!bucket.take(rate, now));
        assert!(!bucket.take(rate, now + Duration::from_secs(1)));
        assert!(bucket.take(rate, now + Duration::from_secs(2)));
        assert!(!bucket.take(rate, now + Duration::from_secs(2)));
        // Idle for long: back to the burst, not more.
        let later = now + Duration::from_secs(100);
        assert!((0..3).all(|_| bucket.take(rate, later)));
        assert!(!bucket.take(rate, later));
    }

    #[test]
    fn peer_buckets_are_bounded_and_independent() {
        let now = Instant::now();
        let rate = Rate {
            burst: 1,
            every: Duration::from_secs(10),
        };
        let mut buckets = PeerBuckets::new(rate, 2);
        let peers: Vec<PeerId> = (0..3)
            .map(|i| p2p_core::Keypair::from_seed(i).peer_id())
            .collect();
        assert!(buckets.take(peers[0], now));
        assert!(!buckets.take(peers[0], now));
        assert!(buckets.take(peers[1], now));
        assert!(buckets.take(peers[2], now + Duration::from_millis(1)));
        assert_eq!(buckets.len(), 2);
        assert!(!buckets.knows(&peers[0]), "the least recent is forgotten");
    }
}
