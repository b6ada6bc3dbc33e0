//! `cipher_ceiling`: how fast can any TCP + Noise transport on this machine
//! go, given each cipher suite's cipher?
//!
//! Measures ring's ChaCha20-Poly1305 and AES-256-GCM on full Noise messages
//! in CPU time of this thread ([`switchyard_bench::ceiling`]), then prints
//! the ceiling each sets on an encrypted stream, given raw TCP's throughput
//! on the same cores.
//!
//! `cargo run --release -p switchyard-bench --bin cipher_ceiling -- [raw MB/s] [cores]`
//! (defaults: the raw TCP figure of the TCP issue, 2707 MB/s, on 2 cores;
//! give the raw TCP median of a `tcp_compare` run on the same machine).

use anyhow::Context;
use switchyard_bench::ceiling::{MESSAGE, cipher_name, cost};
use transport_tcp::CipherSuite;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let raw_mb_s: f64 = args
        .next()
        .map_or(Ok(2707.0), |a| a.parse())
        .context("raw MB/s")?;
    let cores: f64 = args
        .next()
        .map_or(Ok(2.0), |a| a.parse())
        .context("cores")?;
    println!("{}", switchyard_bench::machine::describe());
    let raw_ns = cores * 1e3 / raw_mb_s;
    println!("raw TCP {raw_mb_s:.0} MB/s on {cores} cores = {raw_ns:.3} CPU-ns/B");
    for suite in [CipherSuite::ChaChaPoly, CipherSuite::AesGcm] {
        // 20,000 messages: 1.3 GB each way.
        let c = cost(suite, 20_000)?;
        let ceiling = c.ceiling(raw_mb_s, cores);
        println!(
            "ring {}, {MESSAGE}-byte plaintexts, CPU time of one thread:",
            cipher_name(suite)
        );
        println!(
            "  seal {:.3} ns/B ({:.0} MB/s per core), open {:.3} ns/B ({:.0} MB/s per core)",
            c.seal_ns,
            1e3 / c.seal_ns,
            c.open_ns,
            1e3 / c.open_ns
        );
        println!(
            "  ceiling of TCP + {} on {cores} cores: {ceiling:.0} MB/s = {:.2}x raw TCP",
            suite.noise_name(),
            ceiling / raw_mb_s
        );
        println!(
            "RESULT ceiling_{suite}={ceiling:.1} MB/s seal_{suite}={:.3} ns/B open_{suite}={:.3} ns/B",
            c.seal_ns, c.open_ns
        );
    }
    Ok(())
}
