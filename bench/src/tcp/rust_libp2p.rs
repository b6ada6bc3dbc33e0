//! rust-libp2p 0.57 over TCP (`TCP_NODELAY` on) + noise + yamux, default
//! configurations: the runs of
//! [`compare::rust_libp2p`](crate::compare::rust_libp2p) with this stack.
//! Its cipher is fixed by libp2p's noise spec:
//! `Noise_XX_25519_ChaChaPoly_SHA256`, ChaCha20-Poly1305 from ring (snow's
//! ring resolver), the same as Switchyard's ChaCha suite on its ring
//! backend; it cannot run AES-GCM. Yamux's stream receive window is its
//! default: 256 KiB at first, auto-tuned towards the bandwidth-delay
//! product (at most 1 GiB per connection).

use std::time::Duration;

use libp2p::{StreamProtocol, Swarm, SwarmBuilder, noise, tcp, yamux};
use libp2p_stream::Behaviour;

use crate::compare::rust_libp2p::{self as runs, Libp2pStack};
use crate::compare::{PingPlan, Throughput};

fn swarm() -> anyhow::Result<Swarm<Behaviour>> {
    Ok(SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| Behaviour::new())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}

/// TCP + noise + yamux on loopback.
pub fn stack() -> Libp2pStack {
    Libp2pStack {
        swarm,
        listen: "/ip4/127.0.0.1/tcp/0",
        protocol: StreamProtocol::new("/switchyard-bench/tcp-compare/1"),
    }
}

/// One-way run of `len`-byte payloads for `duration`.
pub async fn one_way(len: usize, duration: Duration) -> anyhow::Result<Throughput> {
    runs::one_way(stack(), len, duration).await
}

/// One-way run through a queue of `queue` messages and a `BufWriter`
/// flushed when the queue is empty.
pub async fn one_way_buffered(
    len: usize,
    duration: Duration,
    queue: usize,
) -> anyhow::Result<Throughput> {
    runs::one_way_buffered(stack(), len, duration, queue).await
}

/// Ping-pong of `len`-byte payloads: one write and a flush each way.
pub async fn ping_pong(len: usize, plan: PingPlan) -> anyhow::Result<Vec<u64>> {
    runs::ping_pong(stack(), len, plan).await
}

/// Connection setup, `iterations` times with fresh swarms.
pub async fn setup(len: usize, iterations: usize) -> anyhow::Result<Vec<u64>> {
    runs::setup(stack(), len, iterations).await
}
