//! QUIC on loopback for the testkit (`testkit::loopback`).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use testkit::NetworkBuilder;
use testkit::loopback::{self, Loopback};
use transport_quic::{QuicConfig, QuicTransport};

/// A network over QUIC on loopback, with a 5 s handshake deadline.
pub fn network() -> NetworkBuilder {
    network_with_frame_size(QuicConfig::default().max_frame_size)
}

/// [`network`] whose listeners take frames of at most `max_frame_size`.
pub fn network_with_frame_size(max_frame_size: usize) -> NetworkBuilder {
    loopback::network(Loopback::new("quic", move |keypair, config, listen| {
        let transport = QuicTransport::bind_now(
            keypair,
            QuicConfig {
                listen,
                network_id: config.network_id.clone(),
                handshake_timeout: Duration::from_secs(5),
                max_frame_size,
                ..QuicConfig::default()
            },
        )
        .map_err(|e| e.to_string())?;
        Ok(Arc::new(transport))
    }))
}
