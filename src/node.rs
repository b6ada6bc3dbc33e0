//! [`NodeBuilder`] and [`Node`]: a key, transports, a peer store and
//! reactors composed into a running node, with an optional HTTP API.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use switchyard::node::NodeBuilder;
//! use switchyard::p2p::{Keypair, RouterConfig};
//! use switchyard::transport_tcp::{TcpConfig, TcpTransport};
//!
//! let keypair = Keypair::generate();
//! let tcp = TcpTransport::bind(&keypair, TcpConfig::default()).await?;
//! let mut builder = NodeBuilder::new(keypair, RouterConfig::default());
//! builder.transport(Arc::new(tcp));
//! // let pex = builder.reactor(reactor_pex::Pex::new(Default::default()))?;
//! let node = builder.start().await?;
//! println!("{} listening on {:?}", node.peer_id(), node.router().listen_addresses());
//! node.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Lifecycle: [`NodeBuilder::reactor`] opens a reactor's channels and
//! returns its handle; [`NodeBuilder::start`] starts the router, then every
//! reactor's task, then the HTTP API. [`Node::shutdown`] stops in the
//! reverse order: the API, the reactors (cancelled, then awaited), then the
//! router (a goodbye to every peer, the peer store flushed).

use std::net::SocketAddr;
use std::sync::Arc;

use p2p::transport::Transport;
use p2p::{
    Keypair, OpenedReactor, PeerId, PeerStore, Reactor, ReactorContext, Router, RouterBuilder,
    RouterConfig, RouterError,
};
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};

/// Why a node could not be built or started.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The router refused (a channel, the peer store, no runtime).
    #[error(transparent)]
    Router(#[from] RouterError),
    /// A reactor's channel could not be opened.
    #[error("reactor {reactor}: {source}")]
    Reactor {
        /// The reactor's name.
        reactor: &'static str,
        /// Why.
        source: p2p::ChannelError,
    },
    /// The HTTP API could not listen.
    #[error("the HTTP API cannot listen on {address}")]
    Api {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The separate `/metrics` server
    /// ([`metrics_http`](NodeBuilder::metrics_http)) could not listen.
    #[error("the metrics server cannot listen on {address}")]
    Metrics {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Composes a node: identity, router settings, transports, a peer store,
/// reactors and HTTP routes.
pub struct NodeBuilder {
    peer_id: PeerId,
    network_id: String,
    router: RouterBuilder,
    reactors: Vec<OpenedReactor>,
    registry: Registry,
    routes: axum::Router<()>,
    api_listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
    seed: u64,
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("peer", &self.peer_id)
            .field("reactors", &self.reactors)
            .field("api_listen", &self.api_listen)
            .finish_non_exhaustive()
    }
}

impl NodeBuilder {
    /// A node with this identity and router configuration, no transport,
    /// an in-memory peer store and no HTTP API.
    pub fn new(keypair: Keypair, config: RouterConfig) -> Self {
        let seed = config.seed;
        let peer_id = keypair.peer_id();
        let network_id = config.network_id.clone();
        let router = RouterBuilder::new(keypair, config);
        let mut registry = Registry::default();
        router.metrics().register(&mut registry);
        Self {
            peer_id,
            network_id,
            router,
            reactors: Vec::new(),
            registry,
            routes: axum::Router::new(),
            api_listen: None,
            metrics_listen: None,
            seed,
        }
    }

    /// This node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Adds a transport (one per address scheme).
    pub fn transport(&mut self, transport: Arc<dyn Transport>) -> &mut Self {
        self.router.transport(transport);
        self
    }

    /// Sets the peer store (default: in memory, forgotten at exit).
    pub fn peer_store(&mut self, store: Box<dyn PeerStore>) -> &mut Self {
        self.router.peer_store(store);
        self
    }

    /// Adds a reactor: opens its channels, registers its metrics, and
    /// returns its handle. It runs from [`start`](Self::start) until
    /// [`Node::shutdown`].
    pub fn reactor<R: Reactor>(&mut self, reactor: R) -> Result<R::Handle, NodeError> {
        let name = reactor.name();
        let (handle, opened) =
            OpenedReactor::open_with_metrics(reactor, &mut self.router, Some(&mut self.registry))
                .map_err(|source| NodeError::Reactor {
                reactor: name,
                source,
            })?;
        self.reactors.push(opened);
        Ok(handle)
    }

    /// The router being built, to open channels of the application's own
    /// outside any reactor.
    pub fn router_builder(&mut self) -> &mut RouterBuilder {
        &mut self.router
    }

    /// The metrics registry `/metrics` serves; register your own here.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Adds HTTP routes to the API (a reactor's operations, say). They are
    /// merged with the built-in routes; paths must not collide with them.
    pub fn routes(&mut self, routes: axum::Router<()>) -> &mut Self {
        self.routes = std::mem::take(&mut self.routes).merge(routes);
        self
    }

    /// Serves the HTTP API on `address` (default: no API). Port 0 picks a
    /// free port; [`Node::api_address`] says which.
    pub fn http_api(&mut self, address: SocketAddr) -> &mut Self {
        self.api_listen = Some(address);
        self
    }

    /// Also serves `GET /metrics` alone on `address` (for a Prometheus
    /// scraper that should not reach the rest of the API).
    pub fn metrics_http(&mut self, address: SocketAddr) -> &mut Self {
        self.metrics_listen = Some(address);
        self
    }

    /// Starts the router, the reactors and the API. Must run inside a tokio
    /// runtime.
    pub async fn start(self) -> Result<Node, NodeError> {
        let router = self.router.start()?;
        let shutdown = CancellationToken::new();
        let reactors = self
            .reactors
            .into_iter()
            .enumerate()
            .map(|(k, reactor)| {
                let ctx = ReactorContext {
                    router: router.clone(),
                    shutdown: shutdown.clone(),
                    seed: self.seed ^ (0x9E37_79B9_7F4A_7C15u64.wrapping_mul(k as u64 + 1)),
                };
                reactor.spawn(ctx)
            })
            .collect();
        let mut node = Node {
            router,
            network_id: self.network_id,
            reactors,
            shutdown,
            api: None,
            metrics: None,
        };
        let state = ApiState::new(node.router.clone(), node.network_id.clone(), self.registry);
        let servers = [
            (
                self.api_listen,
                api::json_errors(api::routes(state.clone()).merge(self.routes)),
            ),
            (
                self.metrics_listen,
                api::json_errors(api::metrics_routes(state)),
            ),
        ];
        for (i, (address, app)) in servers.into_iter().enumerate() {
            let Some(address) = address else { continue };
            match serve(address, app, node.shutdown.clone()).await {
                Ok(server) if i == 0 => node.api = Some(server),
                Ok(server) => node.metrics = Some(server),
                Err(source) => {
                    node.stop().await;
                    return Err(if i == 0 {
                        NodeError::Api { address, source }
                    } else {
                        NodeError::Metrics { address, source }
                    });
                }
            }
        }
        Ok(node)
    }
}

/// Serves `app` on `address` until `stop` is cancelled.
async fn serve(
    address: SocketAddr,
    app: axum::Router,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "HTTP server stopped");
        }
    });
    tracing::info!(address = %local, "HTTP listening");
    Ok((local, task))
}

/// A running node. [`shutdown`](Self::shutdown) it before dropping it, or
/// its peers see a reset instead of a goodbye.
#[derive(Debug)]
pub struct Node {
    router: Router,
    network_id: String,
    reactors: Vec<JoinHandle<()>>,
    shutdown: CancellationToken,
    api: Option<(SocketAddr, JoinHandle<()>)>,
    metrics: Option<(SocketAddr, JoinHandle<()>)>,
}

impl Node {
    /// The router: peers, dialing, metrics, peer updates.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// This node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.router.local_peer_id()
    }

    /// The network id.
    pub fn network_id(&self) -> &str {
        &self.network_id
    }

    /// Where the HTTP API listens, if it does.
    pub fn api_address(&self) -> Option<SocketAddr> {
        self.api.as_ref().map(|(address, _)| *address)
    }

    /// Where `/metrics` is served alone, if it is.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(address, _)| *address)
    }

    /// Stops the API, then the reactors, then the router (goodbyes, peer
    /// store flushed). Every task of the node has ended when it returns.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    async fn stop(&mut self) {
        self.shutdown.cancel();
        for (_, task) in self.api.take().into_iter().chain(self.metrics.take()) {
            let _ = task.await;
        }
        for task in self.reactors.drain(..) {
            let _ = task.await;
        }
        self.router.shutdown().await;
    }
}
