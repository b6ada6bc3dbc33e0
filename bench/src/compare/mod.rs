//! What the transport comparisons (`tcp_compare`, and `quic_compare` in
//! `bench/quic-compare/`) share: the application message every stack
//! carries, the pacing and tallying of time-bounded one-way runs, the plan
//! of a ping-pong run, percentiles; the Switchyard and rust-libp2p runs,
//! generic over the transport underneath; and the report (rounds, medians,
//! the final table).
//!
//! Every stack carries the same application message, [`Msg`] (a sequence
//! number and a byte field), encoded with prost on the sending side and
//! decoded on the receiving side. The one-way runs are time-bounded: the
//! sender sends for the run's duration (a [`Pacer`] decides), then marks its
//! last message with [`LAST`]; the receiver counts (a [`Tally`]) until it
//! sees that mark, and the rate is what arrived over the time from the
//! sender's start to the mark's arrival.

pub mod report;
pub mod rust_libp2p;
pub mod switchyard;

use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;

/// Payload bytes of a bulk message (64 KiB).
pub const BULK_LEN: usize = 64 * 1024;
/// Payload bytes of a small message: with the 9-byte `seq` field and the
/// 2-byte header of `data`, the encoded [`Msg`] is exactly 128 bytes.
pub const SMALL_LEN: usize = 117;
/// Encoded size of a small message.
pub const SMALL_ENCODED: usize = 128;
/// The sequence number of a run's last message.
pub const LAST: u64 = u64::MAX;
/// Largest encoded message any stack accepts (room for a bulk message).
pub const MAX_MESSAGE: usize = 128 * 1024;

/// The message every stack carries. `seq` is fixed-width so that every
/// message of a run encodes to the same size (`seq` starts at 1: proto3
/// would omit a zero).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    /// Sequence number from 1, or [`LAST`].
    #[prost(fixed64, tag = "1")]
    pub seq: u64,
    /// The payload.
    #[prost(bytes = "bytes", tag = "2")]
    pub data: Bytes,
}

/// `len` bytes of payload.
pub fn payload(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>())
}

/// Hands out sequence numbers for a time-bounded run: 1, 2, 3, ... and,
/// once `duration` has passed since the run's start, [`LAST`].
#[derive(Debug)]
pub struct Pacer {
    start: Instant,
    duration: Duration,
    next: u64,
}

impl Pacer {
    /// A run of `duration` starting now.
    pub fn new(duration: Duration) -> Self {
        Self {
            start: Instant::now(),
            duration,
            next: 0,
        }
    }

    /// When the run started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The next sequence number. The clock is read every 16 messages.
    pub fn next_seq(&mut self) -> u64 {
        self.next += 1;
        if self.next.is_multiple_of(16) && self.start.elapsed() >= self.duration {
            LAST
        } else {
            self.next
        }
    }
}

/// What a receiver counted in a one-way run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    /// Messages received, the last one included.
    pub messages: u64,
    /// Payload (`data`) bytes received.
    pub payload_bytes: u64,
    last_seq: u64,
}

impl Tally {
    /// Counts `message`; checks the order. Returns whether it was the
    /// run's last message.
    pub fn record(&mut self, message: &Msg) -> anyhow::Result<bool> {
        if message.seq <= self.last_seq {
            bail!(
                "message {} arrived after message {}",
                message.seq,
                self.last_seq
            );
        }
        self.last_seq = message.seq;
        self.messages += 1;
        self.payload_bytes += message.data.len() as u64;
        Ok(message.seq == LAST)
    }
}

/// The result of a one-way run.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// What arrived.
    pub tally: Tally,
    /// From the sender's start to the arrival of its last message.
    pub elapsed: Duration,
}

impl Throughput {
    /// From a receiver's tally and the time its last message arrived.
    pub fn new(tally: Tally, start: Instant, end: Instant) -> Self {
        Self {
            tally,
            elapsed: end.saturating_duration_since(start),
        }
    }

    /// Messages per second.
    pub fn messages_per_sec(&self) -> f64 {
        self.tally.messages as f64 / self.elapsed.as_secs_f64()
    }

    /// Payload megabytes (10^6 bytes) per second.
    pub fn mb_per_sec(&self) -> f64 {
        self.tally.payload_bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// Round trips of a ping-pong run: warm-up first, then samples until
/// `duration` has passed or `max` samples were taken.
#[derive(Debug, Clone, Copy)]
pub struct PingPlan {
    /// Round trips before sampling starts.
    pub warmup: u64,
    /// Sampling time.
    pub duration: Duration,
    /// Most samples.
    pub max: usize,
}

/// The `p`-th percentile (0–100) of `samples` (sorted in place), in ns.
pub fn percentile(samples: &mut [u64], p: f64) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    samples.sort_unstable();
    let n = samples.len();
    let i = ((n as f64 * p / 100.0) as usize).min(n - 1);
    samples[i]
}

/// Nanoseconds of `d`, saturating.
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn small_message_encodes_to_128_bytes() {
        for seq in [1, 1000, LAST] {
            let m = Msg {
                seq,
                data: payload(SMALL_LEN),
            };
            assert_eq!(m.encoded_len(), SMALL_ENCODED);
        }
        let bulk = Msg {
            seq: 1,
            data: payload(BULK_LEN),
        };
        assert!(bulk.encoded_len() <= MAX_MESSAGE);
    }
}
