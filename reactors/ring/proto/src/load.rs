//! Load accounting: what each neighbor makes us handle on its behalf, in
//! exponentially decaying counts, and the report that explains a
//! disconnection.

use std::fmt;
use std::time::{Duration, Instant};

use p2p_core::PeerId;

/// Bytes and messages with exponential decay: a count added `t` ago weighs
/// `0.5^(t / half_life)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadMeter {
    bytes: f64,
    messages: f64,
    at: Instant,
}

impl LoadMeter {
    /// Zero, as of `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            bytes: 0.0,
            messages: 0.0,
            at: now,
        }
    }

    fn decay_to(&mut self, now: Instant, half_life: Duration) {
        let elapsed = now.saturating_duration_since(self.at);
        if elapsed.is_zero() {
            return;
        }
        let factor = 0.5f64.powf(elapsed.as_secs_f64() / half_life.as_secs_f64().max(1e-9));
        self.bytes *= factor;
        self.messages *= factor;
        self.at = now;
    }

    /// Adds one message of `bytes`.
    pub fn add(&mut self, now: Instant, bytes: usize, half_life: Duration) {
        self.decay_to(now, half_life);
        self.bytes += bytes as f64;
        self.messages += 1.0;
    }

    /// The decayed `(bytes, messages)` at `now`.
    pub fn value(&self, now: Instant, half_life: Duration) -> (f64, f64) {
        let mut copy = *self;
        copy.decay_to(now, half_life);
        (copy.bytes, copy.messages)
    }
}

/// Why a neighbor was judged to cost too much: its counts, everyone's, and
/// the limit.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    /// The neighbor.
    pub peer: PeerId,
    /// Bytes it made us handle (decayed).
    pub bytes: f64,
    /// Messages it made us handle (decayed).
    pub messages: f64,
    /// Bytes all neighbors made us handle (decayed).
    pub total_bytes: f64,
    /// `bytes / total_bytes`.
    pub share: f64,
    /// The configured `max_share`.
    pub max_share: f64,
    /// Neighbors at the time.
    pub neighbors: usize,
    /// The decay's half-life.
    pub half_life: Duration,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "neighbor {} caused {:.1}% of the {:.0} bytes handled for {} neighbors \
             ({:.0} bytes in {:.0} messages; limit {:.1}%; counts halve every {:?})",
            self.peer.short(),
            self.share * 100.0,
            self.total_bytes,
            self.neighbors,
            self.bytes,
            self.messages,
            self.max_share * 100.0,
            self.half_life,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_halve_every_half_life() {
        let t0 = Instant::now();
        let h = Duration::from_secs(10);
        let mut m = LoadMeter::new(t0);
        m.add(t0, 1000, h);
        m.add(t0, 1000, h);
        let (bytes, messages) = m.value(t0 + h, h);
        assert!((bytes - 1000.0).abs() < 1e-6 && (messages - 1.0).abs() < 1e-9);
        let (bytes, _) = m.value(t0 + 3 * h, h);
        assert!((bytes - 250.0).abs() < 1e-6);
        // A count taken later than the reading time is not inflated.
        assert_eq!(m.value(t0, h).0, 2000.0);
    }
}
