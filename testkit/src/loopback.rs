//! Networks over a socket transport on loopback, for the transports'
//! own tests: one factory whatever the transport, so the TCP and QUIC
//! suites share it instead of each keeping a copy. The testkit depends on
//! no socket transport (ADR 0001); a test hands it the transport's bind.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use p2p::transport::Transport;
use p2p::{Endpoint, Keypair, PeerAddress, RouterConfig};

use crate::{Network, NetworkBuilder, TransportFactory};

/// How a socket transport binds: the node's key, its router config (whose
/// `network_id` the transport must use) and the address to listen on.
pub type Bind =
    dyn Fn(&Keypair, &RouterConfig, SocketAddr) -> Result<Arc<dyn Transport>, String> + Send + Sync;

/// Binds each node on 127.0.0.1 — a fresh port, or its old one on restart,
/// so peers' stored addresses stay valid.
pub struct Loopback {
    name: &'static str,
    bind: Box<Bind>,
}

impl Loopback {
    /// A factory named `name` ("tcp", "quic") binding with `bind`.
    pub fn new(
        name: &'static str,
        bind: impl Fn(&Keypair, &RouterConfig, SocketAddr) -> Result<Arc<dyn Transport>, String>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self {
            name,
            bind: Box::new(bind),
        }
    }
}

impl TransportFactory for Loopback {
    fn name(&self) -> &'static str {
        self.name
    }

    fn transport(
        &self,
        keypair: &Keypair,
        config: &RouterConfig,
        previous: Option<&PeerAddress>,
    ) -> Result<(Arc<dyn Transport>, PeerAddress), String> {
        let listen = match previous.map(|a| &a.endpoint) {
            Some(Endpoint::Tcp(hp) | Endpoint::Quic(hp)) => hp
                .socket_addr()
                .ok_or("the previous address is not a socket")?,
            _ => SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let transport = (self.bind)(keypair, config, listen)?;
        let address = transport
            .listen_addresses()
            .into_iter()
            .next()
            .ok_or("no listen address")?;
        Ok((transport, address))
    }
}

/// A network over `factory`, with 5 s handshake and dial deadlines and
/// private addresses allowed (every node is on loopback).
pub fn network(factory: Loopback) -> NetworkBuilder {
    let mut config = RouterConfig {
        handshake_timeout: Duration::from_secs(5),
        dial_timeout: Duration::from_secs(5),
        ..RouterConfig::default()
    };
    config.peer_manager.allow_private_addresses = true;
    Network::builder()
        .router_config(config)
        .transport(Arc::new(factory))
}

/// Defines `network()` and `network_with_frame_size(max_frame_size)` in a
/// socket transport's test crate: networks over that transport on
/// loopback ([`network`] with a [`Loopback`] named `$name`), each node
/// bound with the transport's default config but for its listen address,
/// the router's `network_id`, a 5 s handshake deadline and the frame
/// limit (by default the transport's own).
///
/// The transport needs `bind_now(&Keypair, Config)`, and its config
/// `Default` and the fields `listen`, `network_id`, `handshake_timeout` and
/// `max_frame_size`, as TCP's and QUIC's have. A macro, because the testkit
/// depends on no socket transport (ADR 0001) and the two configs share no
/// trait; so the transports' tests share one factory instead of two copies
/// that differ in names.
///
/// ```ignore
/// // transports/quic/tests/common/mod.rs
/// testkit::loopback_networks!("quic", transport_quic::QuicTransport, transport_quic::QuicConfig);
/// ```
#[macro_export]
macro_rules! loopback_networks {
    ($name:literal, $transport:path, $($config:ident)::+) => {
        /// A network over this transport on loopback, with a 5 s handshake
        /// deadline.
        #[allow(dead_code)]
        pub fn network() -> $crate::NetworkBuilder {
            network_with_frame_size(<$($config)::+ as ::std::default::Default>::default().max_frame_size)
        }

        /// [`network`] whose listeners take frames of at most
        /// `max_frame_size`.
        #[allow(dead_code)]
        pub fn network_with_frame_size(max_frame_size: usize) -> $crate::NetworkBuilder {
            $crate::loopback::network($crate::loopback::Loopback::new(
                $name,
                move |keypair, config, listen| {
                    let transport = <$transport>::bind_now(
                        keypair,
                        $($config)::+ {
                            listen,
                            network_id: config.network_id.clone(),
                            handshake_timeout: ::std::time::Duration::from_secs(5),
                            max_frame_size,
                            ..::std::default::Default::default()
                        },
                    )
                    .map_err(|e| e.to_string())?;
                    Ok(::std::sync::Arc::new(transport))
                },
            ))
        }
    };
}
