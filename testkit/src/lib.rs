//! Deterministic in-memory networks of Switchyard routers, for testing
//! reactors.
//!
//! A [`Network`] starts N routers over one [`MemoryHub`] from a seed: the
//! same seed gives the same keys, the same peer-manager jitter, the same
//! loss decisions and so, on tokio's paused clock, the same run. Run tests
//! with `#[tokio::test(start_paused = true)]` (a current-thread runtime
//! whose clock only moves when every task waits), and every deadline below
//! is in simulated time.
//!
//! ```no_run
//! # async fn example() -> Result<(), testkit::TestkitError> {
//! use std::time::Duration;
//! use p2p::ChannelDescriptor;
//! use testkit::Network;
//!
//! #[derive(Clone, PartialEq, prost::Message)]
//! struct Hello { #[prost(string, tag = "1")] text: String }
//!
//! let mut net = Network::builder().seed(7).nodes(3).full_mesh().build()?;
//! let mut channels = net.open_channel_on_all::<Hello>(ChannelDescriptor::new(0x20, "hello"))?;
//! net.start()?;
//! net.wait_for_full_mesh(Duration::from_secs(5)).await?;
//! let to = net.peer_id(1);
//! channels[0].0.send(to, Hello { text: "hi".into() }).await.ok();
//! let got = testkit::recv_within(&mut channels[1].1, Duration::from_secs(1)).await;
//! assert_eq!(got.map(|e| e.message.text), Some("hi".to_string()));
//! net.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Faults: [`Network::partition`], [`Network::heal_all`],
//! [`Network::set_latency`], [`Network::set_loss`], [`Network::crash`] and
//! [`Network::restart`] (same key, same data directory, so a heed peer
//! store brings back what the node knew).
//!
//! # Other transports
//!
//! [`NetworkBuilder::transport`] runs the same network over any transport
//! through a [`TransportFactory`] (TCP on loopback, QUIC, …), on the real
//! clock. The fault hooks above (except crash and restart) act on the memory
//! hub and panic with another transport. The [`suite`] module holds the
//! router's promise tests written once for every transport; a transport
//! crate runs them all with [`promise_suite!`].

pub mod adversary;
pub mod loopback;
pub mod sim;
pub mod suite;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use p2p::transport::Transport;
use p2p::{
    ChannelDescriptor, ChannelError, ChannelReceiver, ChannelSender, Envelope, HeedPeerStore,
    Keypair, MemoryPeerStore, OpenedReactor, PeerAddress, PeerId, PeerStatus, Reactor,
    ReactorContext, Router, RouterBuilder, RouterConfig, RouterError,
};
use parking_lot::Mutex;
use prost::Message;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use transport_memory::{MemoryError, MemoryHub};

/// Why a testkit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// A router could not be built or started.
    #[error(transparent)]
    Router(#[from] RouterError),
    /// A channel could not be opened.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// A memory endpoint could not be registered.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The data directory could not be made.
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
    /// A peer store could not be opened.
    #[error(transparent)]
    Store(#[from] p2p::peer_store::PeerStoreError),
    /// A wait ran past its deadline (in simulated time).
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The deadline.
        after: Duration,
    },
    /// A node index out of range, or a node in the wrong state.
    #[error("node {0}: {1}")]
    Node(usize, &'static str),
    /// A [`TransportFactory`] could not make a node's transport.
    #[error("transport for node {node}: {reason}")]
    Transport {
        /// The node.
        node: usize,
        /// Why.
        reason: String,
    },
}

/// Makes each node's transport when the network runs on something other
/// than the memory hub.
pub trait TransportFactory: Send + Sync {
    /// A short name for messages ("tcp", "quic").
    fn name(&self) -> &'static str;

    /// Makes the transport of the node with `keypair` and `config` (whose
    /// `network_id` a transport that checks it must use) and returns it with
    /// the address other nodes dial. `previous` is the node's address before
    /// a restart: a listening transport binds it again, so peers' stored
    /// addresses stay valid. Called within the test's tokio runtime.
    fn transport(
        &self,
        keypair: &Keypair,
        config: &RouterConfig,
        previous: Option<&PeerAddress>,
    ) -> Result<(Arc<dyn Transport>, PeerAddress), String>;
}

/// Which nodes dial which at start.
#[derive(Debug, Clone)]
pub enum Topology {
    /// Every node dials every node with a higher index (as persistent peers).
    FullMesh,
    /// Node `a` dials node `b` (as a persistent peer) for each pair.
    Links(Vec<(usize, usize)>),
    /// Nobody dials; the test does.
    Isolated,
    /// Every other node knows node `b` as a bootstrap peer (dialed at
    /// start, not kept persistent); peer exchange does the rest.
    Bootstrap(usize),
}

/// Which peer store each node uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// In memory; kept across [`Network::restart`] by the network.
    Memory,
    /// heed (LMDB) in the node's data directory.
    Heed,
}

type ConfigHook = Box<dyn FnMut(usize, &mut RouterConfig)>;

/// Builds a [`Network`].
pub struct NetworkBuilder {
    seed: u64,
    nodes: usize,
    topology: Topology,
    config: RouterConfig,
    store: StoreKind,
    configure: Option<ConfigHook>,
    factory: Option<Arc<dyn TransportFactory>>,
}

impl std::fmt::Debug for NetworkBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkBuilder")
            .field("seed", &self.seed)
            .field("nodes", &self.nodes)
            .field("topology", &self.topology)
            .finish_non_exhaustive()
    }
}

impl NetworkBuilder {
    /// The seed every random choice derives from (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How many nodes (default 2).
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    /// Every node connects to every other.
    pub fn full_mesh(mut self) -> Self {
        self.topology = Topology::FullMesh;
        self
    }

    /// Explicit links: node `a` dials node `b`.
    pub fn links(mut self, links: Vec<(usize, usize)>) -> Self {
        self.topology = Topology::Links(links);
        self
    }

    /// One bootstrap node that every other node knows, and nothing else.
    pub fn bootstrap(mut self, node: usize) -> Self {
        self.topology = Topology::Bootstrap(node);
        self
    }

    /// No links at start.
    pub fn isolated(mut self) -> Self {
        self.topology = Topology::Isolated;
        self
    }

    /// The router configuration every node starts from.
    pub fn router_config(mut self, config: RouterConfig) -> Self {
        self.config = config;
        self
    }

    /// Runs the nodes over transports made by `factory` instead of the
    /// memory hub (use the real clock: no `start_paused`).
    pub fn transport(mut self, factory: Arc<dyn TransportFactory>) -> Self {
        self.factory = Some(factory);
        self
    }

    /// Adjusts node `i`'s configuration. The hook runs before the
    /// topology's persistent peers are added (their addresses are known only
    /// once every transport is bound).
    pub fn configure(mut self, hook: impl FnMut(usize, &mut RouterConfig) + 'static) -> Self {
        self.configure = Some(Box::new(hook));
        self
    }

    /// Which peer store the nodes use (default: in memory).
    pub fn store(mut self, store: StoreKind) -> Self {
        self.store = store;
        self
    }

    /// Creates the nodes (not started: open channels, then
    /// [`Network::start`]).
    pub fn build(mut self) -> Result<Network, TestkitError> {
        let hub = MemoryHub::new(self.seed);
        let dir = tempfile::tempdir()?;
        let keys: Vec<Keypair> = (0..self.nodes)
            .map(|i| node_keypair(self.seed, i))
            .collect();
        let mut nodes = Vec::with_capacity(self.nodes);
        for (i, keypair) in keys.into_iter().enumerate() {
            let mut config = self.config.clone();
            config.seed = mix(self.seed ^ 0x5eed, i as u64);
            if let Some(hook) = self.configure.as_mut() {
                hook(i, &mut config);
            }
            let (transport, address) = match &self.factory {
                None => (None, PeerAddress::memory(keypair.peer_id())),
                Some(factory) => {
                    let (transport, address) = factory
                        .transport(&keypair, &config, None)
                        .map_err(|reason| TestkitError::Transport { node: i, reason })?;
                    (Some(transport), address)
                }
            };
            let data_dir = dir.path().join(format!("node-{i}"));
            std::fs::create_dir_all(&data_dir)?;
            nodes.push(Node {
                keypair,
                config,
                data_dir,
                address,
                transport,
                memory_store: MemoryPeerStore::new(),
                builder: None,
                router: None,
                reactors: Vec::new(),
                reactor_tasks: Vec::new(),
                reactor_shutdown: CancellationToken::new(),
            });
        }
        let addresses: Vec<PeerAddress> = nodes.iter().map(|n| n.address.clone()).collect();
        for (i, node) in nodes.iter_mut().enumerate() {
            let dials: Vec<usize> = match &self.topology {
                Topology::FullMesh => (i + 1..self.nodes).collect(),
                Topology::Links(links) => links
                    .iter()
                    .filter(|(a, _)| *a == i)
                    .map(|(_, b)| *b)
                    .collect(),
                Topology::Isolated => Vec::new(),
                Topology::Bootstrap(b) => {
                    if i != *b {
                        node.config
                            .peer_manager
                            .bootstrap_peers
                            .push(addresses[*b].clone());
                    }
                    Vec::new()
                }
            };
            node.config
                .peer_manager
                .persistent_peers
                .extend(dials.iter().map(|&j| addresses[j].clone()));
        }
        let mut net = Network {
            seed: self.seed,
            hub,
            factory: self.factory,
            nodes,
            store: self.store,
            trace: Arc::new(Mutex::new(Vec::new())),
            epoch: Instant::now(),
            _dir: dir,
        };
        for i in 0..net.nodes.len() {
            net.prepare(i)?;
        }
        Ok(net)
    }
}

/// Node `i`'s keypair in a network built with `seed`: what a test hands a
/// reactor that signs with the node's key (the router does not give its
/// key out), the same the network's router runs under.
pub fn node_keypair(seed: u64, i: usize) -> Keypair {
    Keypair::from_seed(mix(seed, i as u64))
}

/// splitmix64 of `seed + i`: independent-looking seeds from one.
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Node {
    keypair: Keypair,
    config: RouterConfig,
    data_dir: PathBuf,
    /// Where other nodes dial this one.
    address: PeerAddress,
    /// A transport bound but not yet given to a router.
    transport: Option<Arc<dyn Transport>>,
    memory_store: MemoryPeerStore,
    builder: Option<RouterBuilder>,
    router: Option<Router>,
    /// Reactors opened on `builder`, spawned when the node starts.
    reactors: Vec<OpenedReactor>,
    /// The running reactors' tasks and their shutdown token.
    reactor_tasks: Vec<JoinHandle<()>>,
    reactor_shutdown: CancellationToken,
}

impl Node {
    /// Stops the node's reactors: gracefully (cancel, then wait) or at once.
    async fn stop_reactors(&mut self, graceful: bool) {
        self.reactors.clear();
        self.reactor_shutdown.cancel();
        for task in self.reactor_tasks.drain(..) {
            if !graceful {
                task.abort();
            }
            let _ = task.await;
        }
        self.reactor_shutdown = CancellationToken::new();
    }
}

/// One thing that happened, at a simulated time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// Simulated time since the network was built.
    pub at: Duration,
    /// The node it happened on.
    pub node: usize,
    /// What happened.
    pub what: String,
}

/// A set of routers over one memory hub.
pub struct Network {
    seed: u64,
    hub: MemoryHub,
    factory: Option<Arc<dyn TransportFactory>>,
    nodes: Vec<Node>,
    store: StoreKind,
    trace: Arc<Mutex<Vec<TraceEvent>>>,
    epoch: Instant,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

impl Network {
    /// A builder with defaults: seed 0, two nodes, full mesh, in-memory
    /// stores, a 1 s handshake deadline, and private addresses allowed
    /// (`allow_private_addresses`: a testkit network runs on one machine,
    /// on loopback when it is not in memory).
    pub fn builder() -> NetworkBuilder {
        let mut config = RouterConfig {
            handshake_timeout: Duration::from_secs(1),
            dial_timeout: Duration::from_secs(1),
            ..RouterConfig::default()
        };
        config.peer_manager.allow_private_addresses = true;
        NetworkBuilder {
            seed: 0,
            nodes: 2,
            topology: Topology::FullMesh,
            config,
            store: StoreKind::Memory,
            configure: None,
            factory: None,
        }
    }

    /// The hub, for finer fault injection (memory transport only).
    pub fn hub(&self) -> &MemoryHub {
        self.require_memory("the hub");
        &self.hub
    }

    /// The transport's name: "memory" or the factory's.
    pub fn transport_name(&self) -> &'static str {
        self.factory.as_ref().map_or("memory", |f| f.name())
    }

    /// Where other nodes dial node `i`.
    pub fn address(&self, i: usize) -> &PeerAddress {
        &self.nodes[i].address
    }

    fn require_memory(&self, what: &str) {
        if let Some(factory) = &self.factory {
            panic!(
                "{what} needs the memory transport; this network runs over {}",
                factory.name()
            );
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s PeerId.
    pub fn peer_id(&self, i: usize) -> PeerId {
        self.nodes[i].keypair.peer_id()
    }

    /// The index of `peer`, if it is one of ours.
    pub fn index_of(&self, peer: PeerId) -> Option<usize> {
        self.nodes.iter().position(|n| n.keypair.peer_id() == peer)
    }

    /// Node `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> &std::path::Path {
        &self.nodes[i].data_dir
    }

    /// Node `i`'s running router.
    pub fn router(&self, i: usize) -> &Router {
        match self.nodes[i].router.as_ref() {
            Some(router) => router,
            None => panic!("node {i} is not running"),
        }
    }

    /// Node `i`'s router, if it runs.
    pub fn try_router(&self, i: usize) -> Option<&Router> {
        self.nodes.get(i).and_then(|n| n.router.as_ref())
    }

    /// Node `i`'s builder, before start: open channels on it.
    pub fn builder_mut(&mut self, i: usize) -> Result<&mut RouterBuilder, TestkitError> {
        self.nodes
            .get_mut(i)
            .ok_or(TestkitError::Node(i, "no such node"))?
            .builder
            .as_mut()
            .ok_or(TestkitError::Node(i, "already started"))
    }

    /// Opens a channel on node `i` (before it starts).
    pub fn open_channel<M: Message + Default>(
        &mut self,
        i: usize,
        descriptor: ChannelDescriptor,
    ) -> Result<(ChannelSender<M>, ChannelReceiver<M>), TestkitError> {
        Ok(self.builder_mut(i)?.open_channel(descriptor)?)
    }

    /// Opens `reactor` on node `i` (not yet started) and returns its handle;
    /// the reactor runs from [`start_node`](Self::start_node) until the node
    /// stops, crashes or restarts (after a restart, open it again). Its seed
    /// derives from the network's seed, the node and the reactor's place.
    pub fn reactor<R: Reactor>(&mut self, i: usize, reactor: R) -> Result<R::Handle, TestkitError> {
        let (handle, opened) = OpenedReactor::open(reactor, self.builder_mut(i)?)?;
        self.nodes[i].reactors.push(opened);
        Ok(handle)
    }

    /// Opens a reactor made by `make(i)` on every node not yet started.
    pub fn reactor_on_all<R: Reactor>(
        &mut self,
        mut make: impl FnMut(usize) -> R,
    ) -> Result<Vec<R::Handle>, TestkitError> {
        (0..self.nodes.len())
            .map(|i| self.reactor(i, make(i)))
            .collect()
    }

    /// Opens the same channel on every node not yet started.
    #[allow(clippy::type_complexity)]
    pub fn open_channel_on_all<M: Message + Default>(
        &mut self,
        descriptor: ChannelDescriptor,
    ) -> Result<Vec<(ChannelSender<M>, ChannelReceiver<M>)>, TestkitError> {
        (0..self.nodes.len())
            .map(|i| self.open_channel(i, descriptor.clone()))
            .collect()
    }

    fn prepare(&mut self, i: usize) -> Result<(), TestkitError> {
        let node = &mut self.nodes[i];
        let mut builder = RouterBuilder::new(node.keypair.clone(), node.config.clone());
        let transport: Arc<dyn Transport> = match (node.transport.take(), &self.factory) {
            (Some(bound), _) => bound,
            (None, None) => Arc::new(self.hub.transport(node.keypair.peer_id())?),
            (None, Some(factory)) => {
                let (transport, address) = factory
                    .transport(&node.keypair, &node.config, Some(&node.address))
                    .map_err(|reason| TestkitError::Transport { node: i, reason })?;
                node.address = address;
                transport
            }
        };
        builder.transport(transport);
        match self.store {
            StoreKind::Memory => {
                builder.peer_store(Box::new(node.memory_store.clone()));
            }
            StoreKind::Heed => {
                let store = HeedPeerStore::open(&node.data_dir.join("peers"))?;
                builder.peer_store(Box::new(store));
            }
        }
        node.builder = Some(builder);
        Ok(())
    }

    /// Starts every node that is built but not running.
    pub fn start(&mut self) -> Result<(), TestkitError> {
        for i in 0..self.nodes.len() {
            self.start_node(i)?;
        }
        Ok(())
    }

    /// Starts node `i` if it is built but not running.
    pub fn start_node(&mut self, i: usize) -> Result<(), TestkitError> {
        let Some(builder) = self.nodes[i].builder.take() else {
            return Ok(());
        };
        let router = builder.start()?;
        self.watch(i, &router);
        let node = &mut self.nodes[i];
        for (k, reactor) in std::mem::take(&mut node.reactors).into_iter().enumerate() {
            let ctx = ReactorContext {
                router: router.clone(),
                shutdown: node.reactor_shutdown.clone(),
                seed: mix(mix(self.seed ^ 0x4eac, i as u64), k as u64),
            };
            node.reactor_tasks.push(reactor.spawn(ctx));
        }
        node.router = Some(router);
        Ok(())
    }

    /// Records node `i`'s peer updates in the trace.
    fn watch(&self, i: usize, router: &Router) {
        let mut updates = router.subscribe();
        let trace = self.trace.clone();
        let epoch = self.epoch;
        let names: Vec<PeerId> = self.nodes.iter().map(|n| n.keypair.peer_id()).collect();
        tokio::spawn(async move {
            while let Ok(update) = updates.recv().await {
                let who = names
                    .iter()
                    .position(|p| *p == update.peer)
                    .map_or_else(|| update.peer.short(), |j| format!("node {j}"));
                let what = match update.status {
                    PeerStatus::Up { direction, .. } => format!("up {who} ({direction})"),
                    PeerStatus::Down { reason } => format!("down {who}: {reason}"),
                };
                trace.lock().push(TraceEvent {
                    at: epoch.elapsed(),
                    node: i,
                    what,
                });
            }
        });
    }

    /// Adds an event of the test's own to the trace.
    pub fn record(&self, node: usize, what: impl Into<String>) {
        self.trace.lock().push(TraceEvent {
            at: self.epoch.elapsed(),
            node,
            what: what.into(),
        });
    }

    /// Everything recorded so far.
    pub fn trace(&self) -> Vec<TraceEvent> {
        self.trace.lock().clone()
    }

    /// Cuts the network into groups of node indices that cannot reach each
    /// other.
    pub fn partition(&self, groups: &[&[usize]]) {
        self.require_memory("partition");
        let groups: Vec<Vec<PeerId>> = groups
            .iter()
            .map(|g| g.iter().map(|&i| self.peer_id(i)).collect())
            .collect();
        self.hub.partition(&groups);
    }

    /// Heals every partition and cut.
    pub fn heal_all(&self) {
        self.require_memory("heal_all");
        self.hub.heal_all();
    }

    /// One-way latency between nodes `a` and `b`.
    pub fn set_latency(&self, a: usize, b: usize, latency: Duration) {
        self.require_memory("set_latency");
        self.hub
            .set_latency(self.peer_id(a), self.peer_id(b), latency);
    }

    /// Bandwidth in bytes per second between nodes `a` and `b` (`None`:
    /// unlimited).
    pub fn set_bandwidth(&self, a: usize, b: usize, bytes_per_second: Option<u64>) {
        self.require_memory("set_bandwidth");
        self.hub
            .set_bandwidth(self.peer_id(a), self.peer_id(b), bytes_per_second);
    }

    /// Makes the path between nodes `a` and `b` discard everything silently
    /// (`true`) or work again (`false`).
    pub fn set_blackhole(&self, a: usize, b: usize, on: bool) {
        self.require_memory("set_blackhole");
        self.hub.set_blackhole(self.peer_id(a), self.peer_id(b), on);
    }

    /// Loss probability of data between nodes `a` and `b`.
    pub fn set_loss(&self, a: usize, b: usize, loss: f64) {
        self.require_memory("set_loss");
        self.hub.set_loss(self.peer_id(a), self.peer_id(b), loss);
    }

    /// Crashes node `i`: its connections fail at once and its router stops
    /// without goodbyes and without flushing its peer store (which keeps
    /// what its last periodic flush wrote, `store_flush_interval`).
    pub async fn crash(&mut self, i: usize) {
        self.hub.crash(self.peer_id(i));
        self.nodes[i].builder = None;
        self.nodes[i].stop_reactors(false).await;
        if let Some(router) = self.nodes[i].router.take() {
            router.kill().await;
        }
    }

    /// Stops node `i` gracefully (goodbyes, store flushed), keeping its data
    /// directory for [`restart`](Self::restart).
    pub async fn stop(&mut self, i: usize) {
        self.nodes[i].builder = None;
        self.nodes[i].stop_reactors(true).await;
        if let Some(router) = self.nodes[i].router.take() {
            router.shutdown().await;
        }
    }

    /// Rebuilds node `i` with the same key, configuration and data
    /// directory. Open its channels with [`open_channel`](Self::open_channel),
    /// then [`start_node`](Self::start_node).
    pub async fn restart(&mut self, i: usize) -> Result<(), TestkitError> {
        self.nodes[i].stop_reactors(true).await;
        if let Some(router) = self.nodes[i].router.take() {
            router.shutdown().await;
        }
        // A real socket may take a moment to be released by the stopped
        // router's tasks; try again for up to a second.
        let mut attempts = 0;
        loop {
            match self.prepare(i) {
                Err(TestkitError::Transport { .. }) if attempts < 100 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => return other,
            }
        }
    }

    /// Shuts every router down.
    pub async fn shutdown(&mut self) {
        for node in &mut self.nodes {
            node.stop_reactors(true).await;
        }
        for node in &mut self.nodes {
            if let Some(router) = node.router.take() {
                router.shutdown().await;
            }
        }
    }

    /// Waits until `condition` holds, checking every simulated millisecond.
    pub async fn wait_until(
        &self,
        what: &str,
        deadline: Duration,
        mut condition: impl FnMut(&Network) -> bool,
    ) -> Result<(), TestkitError> {
        let until = Instant::now() + deadline;
        loop {
            if condition(self) {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(TestkitError::Timeout {
                    what: what.to_string(),
                    after: deadline,
                });
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Waits until nodes `a` and `b` are connected (both ways).
    pub async fn wait_connected(
        &self,
        a: usize,
        b: usize,
        deadline: Duration,
    ) -> Result<(), TestkitError> {
        let (pa, pb) = (self.peer_id(a), self.peer_id(b));
        self.wait_until(&format!("nodes {a} and {b} to connect"), deadline, |net| {
            net.try_router(a).is_some_and(|r| r.is_connected(pb))
                && net.try_router(b).is_some_and(|r| r.is_connected(pa))
        })
        .await
    }

    /// Waits until node `i` has at least `n` peers.
    pub async fn wait_for_peers(
        &self,
        i: usize,
        n: usize,
        deadline: Duration,
    ) -> Result<(), TestkitError> {
        self.wait_until(&format!("node {i} to have {n} peers"), deadline, |net| {
            net.try_router(i)
                .is_some_and(|r| r.connected_peers().len() >= n)
        })
        .await
    }

    /// Waits until every running node is connected to every other running
    /// node.
    pub async fn wait_for_full_mesh(&self, deadline: Duration) -> Result<(), TestkitError> {
        self.wait_until("a full mesh", deadline, |net| {
            let running: Vec<usize> = (0..net.len())
                .filter(|&i| net.try_router(i).is_some())
                .collect();
            running.iter().all(|&i| {
                let router = net.router(i);
                running
                    .iter()
                    .all(|&j| i == j || router.is_connected(net.peer_id(j)))
            })
        })
        .await
    }
}

/// Receives one message within `deadline` (simulated time).
pub async fn recv_within<M: Message + Default>(
    rx: &mut ChannelReceiver<M>,
    deadline: Duration,
) -> Option<Envelope<M>> {
    tokio::time::timeout(deadline, rx.recv())
        .await
        .ok()
        .flatten()
}

/// The seeds a randomized test runs with: `default`, or the
/// comma-separated list in the environment variable `var` (to sweep more
/// seeds, or reproduce a failure: `GOSSIP_SEEDS=1,2,3 cargo test ...`).
///
/// # Panics
///
/// If `var` is set but is not a non-empty list of unsigned integers: a
/// typo must not turn into a test that runs nothing.
pub fn seeds(var: &str, default: &[u64]) -> Vec<u64> {
    let Ok(list) = std::env::var(var) else {
        return default.to_vec();
    };
    let seeds: Vec<u64> = list
        .split(',')
        .map(|s| {
            s.trim().parse().unwrap_or_else(|_| {
                panic!("{var}={list:?}: {s:?} is not a seed (an unsigned integer)")
            })
        })
        .collect();
    assert!(!seeds.is_empty(), "{var} is set but names no seed");
    seeds
}
