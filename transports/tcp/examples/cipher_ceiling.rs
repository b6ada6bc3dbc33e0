//! `cipher_ceiling`: how fast can any TCP + Noise transport on this machine
//! go, given the cipher the wire spec fixes (ChaCha20-Poly1305)?
//!
//! Measures, in CPU time of this thread (so a busy machine slows the run
//! but barely changes the figures), what sealing and opening one Noise
//! transport message of 65,535 bytes costs with ring's ChaCha20-Poly1305,
//! the cipher `transport-tcp` uses. A bulk transfer pays both on every
//! byte (the sender seals, the receiver opens), on top of what raw TCP
//! pays. Given raw TCP's throughput on the same cores, it prints the
//! ceiling of an encrypted stream:
//!
//! ```text
//! cpu per byte (raw)  = cores / raw throughput
//! cpu per byte (enc)  = cpu per byte (raw) + seal + open
//! ceiling             = cores / cpu per byte (enc)
//! ```
//!
//! `cargo run --release -p transport-tcp --example cipher_ceiling -- [raw MB/s] [cores]`
//! (defaults: the raw TCP figure of the TCP issue, 2707 MB/s, on 2 cores).

use std::time::Duration;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

/// CPU time this thread has used (Linux: `/proc/thread-self/schedstat`).
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let raw_mb_s: f64 = args.next().map_or(Ok(2707.0), |a| a.parse())?;
    let cores: f64 = args.next().map_or(Ok(2.0), |a| a.parse())?;
    let key = LessSafeKey::new(
        UnboundKey::new(&CHACHA20_POLY1305, &[7u8; 32]).map_err(|_| "bad key length")?,
    );
    const MESSAGE: usize = 65_535 - 16;
    const ROUNDS: u64 = 20_000; // 1.3 GB each way
    let mut buffer = vec![0x5au8; MESSAGE];
    let nonce = |n: u64| {
        let mut bytes = [0u8; 12];
        bytes[4..].copy_from_slice(&n.to_le_bytes());
        Nonce::assume_unique_for_key(bytes)
    };
    // Warm up, then seal ROUNDS messages, keeping the tags.
    for n in 0..1_000 {
        let tag = key
            .seal_in_place_separate_tag(nonce(n), Aad::empty(), &mut buffer)
            .map_err(|_| "seal failed")?;
        let _ = std::hint::black_box(tag);
    }
    let start = thread_cpu();
    let mut tags = Vec::with_capacity(ROUNDS as usize);
    let mut sealed = Vec::new();
    for n in 0..ROUNDS {
        let tag = key
            .seal_in_place_separate_tag(nonce(n), Aad::empty(), &mut buffer)
            .map_err(|_| "seal failed")?;
        if n == ROUNDS - 1 {
            sealed = buffer.clone();
        }
        tags.push(tag);
    }
    let seal = thread_cpu() - start;
    // Open the same message ROUNDS times (the cost does not depend on the
    // content); it must authenticate every time.
    let mut message = sealed.clone();
    message.extend_from_slice(tags[(ROUNDS - 1) as usize].as_ref());
    let start = thread_cpu();
    for _ in 0..ROUNDS {
        let mut copy = message.clone();
        key.open_in_place(nonce(ROUNDS - 1), Aad::empty(), &mut copy)
            .map_err(|_| "open failed")?;
    }
    let open_with_copy = thread_cpu() - start;
    let start = thread_cpu();
    for _ in 0..ROUNDS {
        std::hint::black_box(message.clone());
    }
    let copies = thread_cpu() - start;
    let open = open_with_copy.saturating_sub(copies);
    let bytes = (ROUNDS as f64) * MESSAGE as f64;
    let ns = |d: Duration| d.as_nanos() as f64 / bytes;
    let (seal_ns, open_ns) = (ns(seal), ns(open));
    let raw_ns = cores * 1e3 / raw_mb_s; // cpu-ns per byte of raw TCP
    let ceiling = cores * 1e3 / (raw_ns + seal_ns + open_ns);
    println!("ring ChaCha20-Poly1305, 65,535-byte Noise messages, CPU time of one thread:");
    println!(
        "  seal {seal_ns:.3} ns/B ({:.0} MB/s per core)",
        1e3 / seal_ns
    );
    println!(
        "  open {open_ns:.3} ns/B ({:.0} MB/s per core)",
        1e3 / open_ns
    );
    println!("raw TCP {raw_mb_s:.0} MB/s on {cores} cores = {raw_ns:.3} CPU-ns/B");
    println!(
        "ceiling of TCP + ChaCha20-Poly1305 on {cores} cores: {ceiling:.0} MB/s = {:.2}x raw TCP",
        ceiling / raw_mb_s
    );
    Ok(())
}
