//! Scores that decay toward zero, and the offence record of each network
//! ([`IpPrefix`]: /24 for IPv4, /48 for IPv6), so that a fresh key from a
//! network that misbehaved does not start with full credit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::ip_prefix::IpPrefix;

/// Networks whose offence record is kept at most; beyond it, records that
/// decayed to nothing go first, then the least recently charged, then the
/// ban ending soonest.
pub const MAX_PREFIX_RECORDS: usize = 4096;

/// A value that halves every `half_life` (toward zero, from either side).
/// Time is passed in; the value is settled lazily when it changes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Decaying {
    value: f64,
    at: Instant,
}

impl Decaying {
    pub fn new(value: f64, at: Instant) -> Self {
        Self { value, at }
    }

    /// The value at `now` (never earlier than the last change).
    pub fn at(&self, now: Instant, half_life: Duration) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let half_life = half_life.as_secs_f64();
        if self.value == 0.0 || elapsed == 0.0 || half_life <= 0.0 {
            return self.value;
        }
        self.value * 0.5f64.powf(elapsed / half_life)
    }

    /// The value at `now`, rounded to the nearest whole point.
    pub fn rounded(&self, now: Instant, half_life: Duration) -> i64 {
        self.at(now, half_life).round() as i64
    }

    /// Adds `delta` at `now`.
    pub fn add(&mut self, delta: f64, now: Instant, half_life: Duration) {
        let now = now.max(self.at);
        self.value = self.at(now, half_life) + delta;
        self.at = now;
    }

    /// Sets the value at `now`.
    pub fn set(&mut self, value: f64, now: Instant) {
        self.value = value;
        self.at = now.max(self.at);
    }
}

/// What a network did.
#[derive(Debug, Clone)]
struct Record {
    /// Zero or less: every penalty charged to the network, decaying.
    score: Decaying,
    banned_until: Option<Instant>,
    touched: Instant,
}

/// The offence records of networks, at most `capacity`.
#[derive(Debug)]
pub(crate) struct Prefixes {
    records: BTreeMap<IpPrefix, Record>,
    capacity: usize,
    half_life: Duration,
    /// The latest end of any ban: before it some network may be banned,
    /// after it none is (the common case, checked first).
    latest_ban: Option<Instant>,
}

impl Prefixes {
    pub fn new(capacity: usize, half_life: Duration) -> Self {
        Self {
            records: BTreeMap::new(),
            capacity: capacity.max(1),
            half_life,
            latest_ban: None,
        }
    }

    /// The network's score at `now` (0 for one without a record).
    pub fn score(&self, prefix: IpPrefix, now: Instant) -> f64 {
        self.records
            .get(&prefix)
            .map_or(0.0, |r| r.score.at(now, self.half_life))
    }

    /// Whether some network may be banned at `now`.
    pub fn any_banned(&self, now: Instant) -> bool {
        self.latest_ban.is_some_and(|until| until > now)
    }

    /// The end of the latest network ban, if it is after `now`: by then
    /// every network ban has ended.
    pub fn bans_end(&self, now: Instant) -> Option<Instant> {
        self.latest_ban.filter(|until| *until > now)
    }

    /// Whether the network is banned at `now`.
    pub fn is_banned(&self, prefix: IpPrefix, now: Instant) -> bool {
        if !self.any_banned(now) {
            return false;
        }
        self.records
            .get(&prefix)
            .and_then(|r| r.banned_until)
            .is_some_and(|until| until > now)
    }

    /// Charges the network `points` at `now`. If its score is then at or
    /// below `ban_threshold`, it is banned until `now + ban_duration` (or
    /// later, if already banned longer), which is returned.
    pub fn charge(
        &mut self,
        prefix: IpPrefix,
        points: f64,
        now: Instant,
        ban_threshold: i64,
        ban_until: Instant,
    ) -> Option<Instant> {
        if !self.records.contains_key(&prefix) {
            self.make_room(now);
        }
        let record = self.records.entry(prefix).or_insert(Record {
            score: Decaying::new(0.0, now),
            banned_until: None,
            touched: now,
        });
        record.score.add(-points, now, self.half_life);
        record.touched = now;
        if record.score.rounded(now, self.half_life) > ban_threshold {
            return None;
        }
        let until = record.banned_until.map_or(ban_until, |u| u.max(ban_until));
        record.banned_until = Some(until);
        self.latest_ban = Some(self.latest_ban.map_or(until, |l| l.max(until)));
        Some(until)
    }

    fn make_room(&mut self, now: Instant) {
        if self.records.len() < self.capacity {
            return;
        }
        let half_life = self.half_life;
        let banned = |r: &Record| r.banned_until.is_some_and(|u| u > now);
        self.records
            .retain(|_, r| banned(r) || r.score.rounded(now, half_life) != 0);
        if self.records.len() < self.capacity {
            return;
        }
        let victim = self
            .records
            .iter()
            .min_by_key(|(p, r)| {
                let ban_end = r.banned_until.filter(|u| *u > now);
                (ban_end.is_some(), ban_end, r.touched, **p)
            })
            .map(|(p, _)| *p);
        if let Some(prefix) = victim {
            self.records.remove(&prefix);
        }
    }

    /// Records held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    const HOUR: Duration = Duration::from_secs(3600);

    fn prefix(n: u32) -> IpPrefix {
        IpPrefix::of(IpAddr::from((n << 8).to_be_bytes()))
    }

    #[test]
    fn values_halve_every_half_life_toward_zero() {
        let t0 = Instant::now();
        let mut v = Decaying::new(-100.0, t0);
        assert_eq!(v.rounded(t0, HOUR), -100);
        assert_eq!(v.rounded(t0 + HOUR, HOUR), -50);
        assert_eq!(v.rounded(t0 + 2 * HOUR, HOUR), -25);
        assert_eq!(v.rounded(t0 + 20 * HOUR, HOUR), 0);
        v.add(10.0, t0 + HOUR, HOUR);
        assert_eq!(v.rounded(t0 + HOUR, HOUR), -40);
        assert_eq!(Decaying::new(64.0, t0).rounded(t0 + HOUR, HOUR), 32);
    }

    #[test]
    fn repeated_charges_ban_a_network_and_the_record_decays() {
        let t0 = Instant::now();
        let mut p = Prefixes::new(16, HOUR);
        let until = t0 + Duration::from_secs(600);
        assert_eq!(p.charge(prefix(1), 100.0, t0, -300, until), None);
        assert_eq!(p.charge(prefix(1), 100.0, t0, -300, until), None);
        assert_eq!(p.charge(prefix(1), 100.0, t0, -300, until), Some(until));
        assert!(p.is_banned(prefix(1), t0));
        assert!(!p.is_banned(prefix(1), until));
        assert!(!p.is_banned(prefix(2), t0));
        assert_eq!(p.score(prefix(1), t0 + HOUR).round(), -150.0);
        // Spread over time, the same offences never add up to a ban.
        for h in 0..10 {
            assert_eq!(
                p.charge(prefix(3), 100.0, t0 + h * 2 * HOUR, -300, until),
                None
            );
        }
    }

    #[test]
    fn records_are_bounded_and_bans_are_kept_longest() {
        let t0 = Instant::now();
        let mut p = Prefixes::new(4, HOUR);
        let until = t0 + HOUR;
        assert!(p.charge(prefix(0), 500.0, t0, -300, until).is_some());
        for n in 1..100 {
            let at = t0 + Duration::from_secs(n.into());
            p.charge(prefix(n), 10.0, at, -300, until);
            assert!(p.len() <= 4);
        }
        assert!(p.is_banned(prefix(0), t0 + Duration::from_secs(100)));
        // Decayed to nothing: dropped first.
        let later = t0 + 30 * HOUR;
        p.charge(prefix(500), 10.0, later, -300, later + HOUR);
        assert_eq!(p.len(), 1);
    }
}
