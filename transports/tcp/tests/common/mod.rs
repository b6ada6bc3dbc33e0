//! A testkit transport factory for TCP on loopback.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use p2p::transport::Transport;
use p2p::{Endpoint, Keypair, PeerAddress, RouterConfig};
use testkit::{Network, NetworkBuilder, TransportFactory};
use transport_tcp::{TcpConfig, TcpTransport};

/// Binds each node on 127.0.0.1 (a fresh port, or its old one on restart)
/// with the router's network id.
pub struct Tcp {
    /// The listener's `max_frame_size`.
    pub max_frame_size: usize,
}

impl Default for Tcp {
    fn default() -> Self {
        Self {
            max_frame_size: TcpConfig::default().max_frame_size,
        }
    }
}

impl TransportFactory for Tcp {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn transport(
        &self,
        keypair: &Keypair,
        config: &RouterConfig,
        previous: Option<&PeerAddress>,
    ) -> Result<(Arc<dyn Transport>, PeerAddress), String> {
        let listen = match previous.map(|a| &a.endpoint) {
            Some(Endpoint::Tcp(hp)) => {
                hp.socket_addr().ok_or("previous address is not a socket")?
            }
            _ => SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let transport = TcpTransport::bind_now(
            keypair,
            TcpConfig {
                listen,
                network_id: config.network_id.clone(),
                handshake_timeout: Duration::from_secs(5),
                max_frame_size: self.max_frame_size,
                ..TcpConfig::default()
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

/// A network over TCP on loopback, with a 5 s handshake deadline.
pub fn network() -> NetworkBuilder {
    network_with(Tcp::default())
}

/// [`network`] with a factory of one's own.
pub fn network_with(tcp: Tcp) -> NetworkBuilder {
    let mut config = RouterConfig {
        handshake_timeout: Duration::from_secs(5),
        dial_timeout: Duration::from_secs(5),
        ..RouterConfig::default()
    };
    // Every node is on loopback.
    config.peer_manager.allow_private_addresses = true;
    Network::builder()
        .router_config(config)
        .transport(Arc::new(tcp))
}
