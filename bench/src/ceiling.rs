//! The ceiling a cipher sets on an encrypted TCP stream on this machine.
//!
//! A bulk transfer seals every byte at the sender and opens it at the
//! receiver, on top of what raw TCP costs. [`cost`] measures, in **CPU time
//! of the calling thread** (so a busy machine slows the measurement but
//! barely changes the figures), what sealing and opening one Noise
//! transport message of 65,519 bytes of plaintext costs with ring's AEAD of
//! a suite, as `transport-tcp` runs it. Given raw TCP's throughput on the
//! same cores, [`Cost::ceiling`] is the most an encrypted stream can carry:
//!
//! ```text
//! cpu per byte (raw)  = cores / raw throughput
//! cpu per byte (enc)  = cpu per byte (raw) + seal + open
//! ceiling             = cores / cpu per byte (enc)
//! ```
//!
//! Used by the `cipher_ceiling` binary and by `tcp_compare`, which checks
//! the ChaCha suite's bulk figure against this bound.

use std::time::Duration;

use anyhow::anyhow;
use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use transport_tcp::CipherSuite;

/// Plaintext bytes of one full Noise transport message.
pub const MESSAGE: usize = 65_535 - 16;

/// CPU time this thread has used (Linux: `/proc/thread-self/schedstat`),
/// or zero where that is not available.
pub fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// What a suite's AEAD costs per byte of plaintext, in CPU nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    /// Sealing.
    pub seal_ns: f64,
    /// Opening.
    pub open_ns: f64,
}

impl Cost {
    /// The most an encrypted stream can carry, in MB/s, given raw TCP's
    /// `raw_mb_s` on `cores` cores.
    pub fn ceiling(&self, raw_mb_s: f64, cores: f64) -> f64 {
        let raw_ns = cores * 1e3 / raw_mb_s;
        cores * 1e3 / (raw_ns + self.seal_ns + self.open_ns)
    }
}

/// The cipher of `suite`, as ring names it.
pub fn cipher_name(suite: CipherSuite) -> &'static str {
    match suite {
        CipherSuite::ChaChaPoly => "ChaCha20-Poly1305",
        CipherSuite::AesGcm => "AES-256-GCM",
    }
}

/// Measures sealing and opening `rounds` full Noise messages with ring's
/// AEAD of `suite` (after 1,000 rounds of warm-up), in this thread's CPU
/// time; the cost of copying the message before each open is measured
/// separately and taken off.
pub fn cost(suite: CipherSuite, rounds: u64) -> anyhow::Result<Cost> {
    let algorithm = match suite {
        CipherSuite::ChaChaPoly => &CHACHA20_POLY1305,
        CipherSuite::AesGcm => &AES_256_GCM,
    };
    let key = LessSafeKey::new(UnboundKey::new(algorithm, &[7u8; 32]).map_err(|_| anyhow!("key"))?);
    let mut buffer = vec![0x5au8; MESSAGE];
    let nonce = |n: u64| {
        let mut bytes = [0u8; 12];
        bytes[4..].copy_from_slice(&n.to_be_bytes());
        Nonce::assume_unique_for_key(bytes)
    };
    for n in 0..1_000 {
        let tag = key
            .seal_in_place_separate_tag(nonce(n), Aad::empty(), &mut buffer)
            .map_err(|_| anyhow!("seal failed"))?;
        let _ = std::hint::black_box(tag);
    }
    let start = thread_cpu();
    let mut last = None;
    for n in 0..rounds {
        let tag = key
            .seal_in_place_separate_tag(nonce(n), Aad::empty(), &mut buffer)
            .map_err(|_| anyhow!("seal failed"))?;
        last = Some(tag);
    }
    let seal = thread_cpu() - start;
    let tag = last.ok_or_else(|| anyhow!("no rounds"))?;
    let mut message = buffer.clone();
    message.extend_from_slice(tag.as_ref());
    let start = thread_cpu();
    for _ in 0..rounds {
        let mut copy = message.clone();
        key.open_in_place(nonce(rounds - 1), Aad::empty(), &mut copy)
            .map_err(|_| anyhow!("open failed"))?;
    }
    let open_with_copy = thread_cpu() - start;
    let start = thread_cpu();
    for _ in 0..rounds {
        std::hint::black_box(message.clone());
    }
    let copies = thread_cpu() - start;
    let open = open_with_copy.saturating_sub(copies);
    let bytes = rounds as f64 * MESSAGE as f64;
    let ns = |d: Duration| d.as_nanos() as f64 / bytes;
    Ok(Cost {
        seal_ns: ns(seal),
        open_ns: ns(open),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_is_below_raw_and_falls_with_the_cost() {
        let cheap = Cost {
            seal_ns: 0.1,
            open_ns: 0.1,
        };
        let dear = Cost {
            seal_ns: 1.0,
            open_ns: 1.0,
        };
        let (raw, cores) = (2_000.0, 2.0);
        // 1 ns/B of raw TCP, plus 0.2 or 2: 2,000 / 1.2 and 2,000 / 3.
        assert!((cheap.ceiling(raw, cores) - 2_000.0 / 1.2).abs() < 1e-6);
        assert!((dear.ceiling(raw, cores) - 2_000.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn both_suites_seal_and_open() {
        for suite in CipherSuite::ALL {
            let cost = cost(suite, 10).expect("measured");
            assert!(cost.seal_ns >= 0.0 && cost.open_ns >= 0.0);
        }
    }
}
