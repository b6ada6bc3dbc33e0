//! Switchyard over QUIC: the runs of `switchyard_bench::compare::switchyard`
//! (two routers, one typed channel, `send().await` / `recv().await`) with a
//! `transport_quic::QuicTransport` per router, `QuicConfig::default()`
//! except for the socket buffers, which are the run's
//! (`QuicConfig::socket_buffer_size`, see [`crate::buffers`]).

use std::sync::Arc;
use std::time::Duration;

use p2p::transport::Transport;
use switchyard_bench::compare::switchyard::{self as runs, MakeTransport};
use switchyard_bench::compare::{PingPlan, Throughput};
use transport_quic::{QuicConfig, QuicTransport};

/// Binds a `QuicTransport` on a free loopback port whose sockets ask for
/// `socket_buffer_size` bytes each way.
fn quic(socket_buffer_size: usize) -> Box<MakeTransport> {
    Box::new(move |key| {
        let config = QuicConfig {
            socket_buffer_size,
            ..QuicConfig::default()
        };
        let bound = QuicTransport::bind_now(key, config)
            .map(|transport| Arc::new(transport) as Arc<dyn Transport>)
            .map_err(anyhow::Error::from);
        Box::pin(async move { bound })
    })
}

/// One-way run of `len`-byte payloads for `duration` on a channel with a
/// `window`-message queue and credit window.
pub async fn one_way(
    len: usize,
    window: usize,
    duration: Duration,
    buffers: usize,
) -> anyhow::Result<Throughput> {
    runs::one_way(&*quic(buffers), len, window, duration).await
}

/// Ping-pong of `len`-byte payloads.
pub async fn ping_pong(len: usize, plan: PingPlan, buffers: usize) -> anyhow::Result<Vec<u64>> {
    runs::ping_pong(&*quic(buffers), len, plan).await
}

/// Connection setup, `iterations` times with fresh routers and transports.
pub async fn setup(len: usize, iterations: usize, buffers: usize) -> anyhow::Result<Vec<u64>> {
    runs::setup(&*quic(buffers), len, iterations).await
}
