//! A testkit transport factory for QUIC on loopback.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use p2p::transport::Transport;
use p2p::{Endpoint, Keypair, PeerAddress, RouterConfig};
use testkit::{Network, NetworkBuilder, TransportFactory};
use transport_quic::{QuicConfig, QuicTransport};

/// Binds each node on 127.0.0.1 (a fresh port, or its old one on restart)
/// with the router's network id.
pub struct Quic {
    /// The listener's `max_frame_size`.
    pub max_frame_size: usize,
}

impl Default for Quic {
    fn default() -> Self {
        Self {
            max_frame_size: QuicConfig::default().max_frame_size,
        }
    }
}

impl TransportFactory for Quic {
    fn name(&self) -> &'static str {
        "quic"
    }

    fn transport(
        &self,
        keypair: &Keypair,
        config: &RouterConfig,
        previous: Option<&PeerAddress>,
    ) -> Result<(Arc<dyn Transport>, PeerAddress), String> {
        let listen = match previous.map(|a| &a.endpoint) {
            Some(Endpoint::Quic(hp)) => {
                hp.socket_addr().ok_or("previous address is not a socket")?
            }
            _ => SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let transport = QuicTransport::bind_now(
            keypair,
            QuicConfig {
                listen,
                network_id: config.network_id.clone(),
                handshake_timeout: Duration::from_secs(5),
                max_frame_size: self.max_frame_size,
                ..QuicConfig::default()
            },
        )
        .map_err(|e| e.to_string())?;
        let address = transport
            .listen_addresses()
            .into_iter()
            .next()
            .ok_or("no listen address")?;
        Ok((Arc::new(transport), address))
    }
}

/// A network over QUIC on loopback, with a 5 s handshake deadline.
pub fn network() -> NetworkBuilder {
    network_with(Quic::default())
}

/// [`network`] with a factory of one's own.
pub fn network_with(quic: Quic) -> NetworkBuilder {
    let mut config = RouterConfig {
        handshake_timeout: Duration::from_secs(5),
        dial_timeout: Duration::from_secs(5),
        ..RouterConfig::default()
    };
    // Every node is on loopback.
    config.peer_manager.allow_private_addresses = true;
    Network::builder()
        .router_config(config)
        .transport(Arc::new(quic))
}
