//! Switchyard over QUIC: the runs of `switchyard_bench::compare::switchyard`
//! (two routers, one typed channel, `send().await` / `recv().await`) with a
//! `transport_quic::QuicTransport` per router, `QuicConfig::default()`.

use std::sync::Arc;
use std::time::Duration;

use p2p::transport::Transport;
use switchyard_bench::compare::switchyard::{self as runs, MakeTransport};
use switchyard_bench::compare::{PingPlan, Throughput};
use transport_quic::{QuicConfig, QuicTransport};

/// Binds a `QuicTransport` on a free loopback port.
fn quic() -> Box<MakeTransport> {
    Box::new(|key| {
        let bound = QuicTransport::bind_now(key, QuicConfig::default())
            .map(|transport| Arc::new(transport) as Arc<dyn Transport>)
            .map_err(anyhow::Error::from);
        Box::pin(async move { bound })
    })
}

/// One-way run of `len`-byte payloads for `duration` on a channel with a
/// `window`-message queue and credit window.
pub async fn one_way(len: usize, window: usize, duration: Duration) -> anyhow::Result<Throughput> {
    runs::one_way(&*quic(), len, window, duration).await
}

/// Ping-pong of `len`-byte payloads.
pub async fn ping_pong(len: usize, plan: PingPlan) -> anyhow::Result<Vec<u64>> {
    runs::ping_pong(&*quic(), len, plan).await
}

/// Connection setup, `iterations` times with fresh routers and transports.
pub async fn setup(len: usize, iterations: usize) -> anyhow::Result<Vec<u64>> {
    runs::setup(&*quic(), len, iterations).await
}
