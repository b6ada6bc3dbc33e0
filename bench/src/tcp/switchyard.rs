//! Switchyard over TCP + Noise: the runs of
//! [`compare::switchyard`](crate::compare::switchyard) with a
//! `transport_tcp::TcpTransport` per router, its crypto backend chosen per
//! run.

use std::sync::Arc;
use std::time::Duration;

use p2p::transport::Transport;
use transport_tcp::{CryptoBackend, TcpConfig, TcpTransport};

use crate::compare::switchyard::{self as runs, MakeTransport};
use crate::compare::{PingPlan, Throughput};

/// Binds a `TcpTransport` on a free loopback port with `crypto`.
fn tcp(crypto: CryptoBackend) -> Box<MakeTransport> {
    Box::new(move |key| {
        let key = key.clone();
        Box::pin(async move {
            let config = TcpConfig {
                crypto,
                ..TcpConfig::default()
            };
            let transport: Arc<dyn Transport> = Arc::new(TcpTransport::bind(&key, config).await?);
            Ok(transport)
        })
    })
}

/// One-way run of `len`-byte payloads for `duration` on a channel with a
/// `window`-message queue and credit window.
pub async fn one_way(
    crypto: CryptoBackend,
    len: usize,
    window: usize,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    runs::one_way(&*tcp(crypto), len, window, duration).await
}

/// Ping-pong of `len`-byte payloads.
pub async fn ping_pong(
    crypto: CryptoBackend,
    len: usize,
    plan: PingPlan,
) -> anyhow::Result<Vec<u64>> {
    runs::ping_pong(&*tcp(crypto), len, plan).await
}

/// Connection setup, `iterations` times with fresh routers and transports.
pub async fn setup(
    crypto: CryptoBackend,
    len: usize,
    iterations: usize,
) -> anyhow::Result<Vec<u64>> {
    runs::setup(&*tcp(crypto), len, iterations).await
}
