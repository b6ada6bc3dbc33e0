//! Switchyard over TCP + Noise: the runs of
//! [`compare::switchyard`](crate::compare::switchyard) with a
//! `transport_tcp::TcpTransport` per router, its cipher suite and crypto
//! backend chosen per run ([`Variant`]).

use std::sync::Arc;
use std::time::Duration;

use p2p::transport::Transport;
use transport_tcp::{CipherSuite, CryptoBackend, TcpConfig, TcpTransport};

use crate::compare::switchyard::{self as runs, MakeTransport};
use crate::compare::{PingPlan, Throughput};

/// Which cipher suite both nodes offer (alone) and which backend runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// The suite: both nodes offer and accept only this one.
    pub suite: CipherSuite,
    /// The crypto backend of both nodes.
    pub crypto: CryptoBackend,
}

impl Variant {
    /// E.g. `aesgcm ring`.
    pub fn name(&self) -> String {
        let backend = match self.crypto {
            CryptoBackend::Ring => "ring",
            CryptoBackend::RustCrypto => "rustcrypto",
        };
        format!("{} {backend}", self.suite)
    }

    /// The cipher, for the tables: e.g. `AES-256-GCM (ring)`.
    pub fn cipher(&self) -> String {
        let cipher = match self.suite {
            CipherSuite::ChaChaPoly => "ChaCha20-Poly1305",
            CipherSuite::AesGcm => "AES-256-GCM",
        };
        let backend = match self.crypto {
            CryptoBackend::Ring => "ring",
            CryptoBackend::RustCrypto => "RustCrypto",
        };
        format!("{cipher} ({backend})")
    }
}

/// Binds a `TcpTransport` on a free loopback port running `variant`.
fn tcp(variant: Variant) -> Box<MakeTransport> {
    Box::new(move |key| {
        let key = key.clone();
        Box::pin(async move {
            let config = TcpConfig {
                crypto: variant.crypto,
                suites: vec![variant.suite],
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
    variant: Variant,
    len: usize,
    window: usize,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    runs::one_way(&*tcp(variant), len, window, duration).await
}

/// Ping-pong of `len`-byte payloads.
pub async fn ping_pong(variant: Variant, len: usize, plan: PingPlan) -> anyhow::Result<Vec<u64>> {
    runs::ping_pong(&*tcp(variant), len, plan).await
}

/// Connection setup, `iterations` times with fresh routers and transports.
pub async fn setup(variant: Variant, len: usize, iterations: usize) -> anyhow::Result<Vec<u64>> {
    runs::setup(&*tcp(variant), len, iterations).await
}
