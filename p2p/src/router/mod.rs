//! The router: owns transports and connections and moves typed messages
//! between reactors' channels and peers.
//!
//! Build one with [`RouterBuilder`], open every channel on the builder, then
//! [`start`](RouterBuilder::start) it. Channels are fixed at start because
//! each peer learns our channels (and our receive window on each) in the
//! `Hello` exchange.
//!
//! ```no_run
//! # async fn example(transport: std::sync::Arc<dyn p2p::transport::Transport>) -> Result<(), Box<dyn std::error::Error>> {
//! use p2p::{ChannelDescriptor, Keypair, RouterBuilder, RouterConfig};
//!
//! #[derive(Clone, PartialEq, prost::Message)]
//! struct Ping { #[prost(uint64, tag = "1")] seq: u64 }
//!
//! let mut builder = RouterBuilder::new(Keypair::generate(), RouterConfig::default());
//! builder.transport(transport);
//! let (tx, mut rx) = builder.open_channel::<Ping>(ChannelDescriptor::new(0x10, "ping"))?;
//! let router = builder.start()?;
//! # let peer = router.local_peer_id();
//! tx.send(peer, Ping { seq: 1 }).await?;      // waits for room
//! let envelope = rx.recv().await;              // Some(Envelope { from, message })
//! router.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Tasks: one supervisor (owns the peer manager and store), one accept loop
//! per transport, one task per handshake and per dial, and per connection
//! one reader and one writer. [`Router::shutdown`] says goodbye to every
//! peer, waits a grace period, stops every task and flushes the peer store;
//! when it returns no task of the router is left.

pub mod channel;
mod connection;
mod ledger;
pub(crate) mod link;
mod outbox;
pub(crate) mod shared;
mod store_writer;
pub(crate) mod supervisor;

use std::marker::PhantomData;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prost::Message;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::channel::{ChannelReceiver, ChannelSender};
use crate::address::PeerAddress;
use crate::channel::{ChannelDescriptor, ChannelError, ChannelId};
use crate::identity::{Keypair, PeerId};
use crate::metrics::Metrics;
use crate::peer_manager::{
    AddAddressError, AddressSource, Direction, PeerManager, PeerManagerConfig,
    PeerManagerConfigError,
};
use crate::peer_store::{MemoryPeerStore, PeerStore, PeerStoreError};
use crate::proto;
use crate::transport::Transport;

use self::shared::{ChannelSlot, ChannelTable, Shared};
use self::store_writer::StoreWriter;
use self::supervisor::{
    COMMAND_QUEUE, Command, Event, Inboxes, LIFECYCLE_QUEUE, REPORT_QUEUE, Supervisor,
};

/// The protocol version spoken in `Hello`; peers must match it.
///
/// Version 3: a sender starts with [`EARLY_CREDIT`] messages of credit on
/// each channel both sides serve (at most the receiver's `recv_window`), so
/// its first messages go without waiting for a `Credit` frame; the
/// receiver grants the rest of the window in `Credit` frames once it has
/// admitted the connection, and holds early messages it has no room for
/// neither, counting them (`early_no_room`). Transports that can carry the
/// `Hello` inside their handshake do (TCP: Noise messages 2 and 3).
/// See ADR 0002, "Early data". Version 2 started with no credit at all,
/// version 1 with a full `recv_window`.
pub const PROTOCOL_VERSION: u32 = 3;

/// The most messages a sender may send on a channel before the receiver's
/// first `Credit` frame (protocol version 3): its *early credit*. The
/// receiver announces it per channel (`ChannelInfo::early_credit`): this,
/// or less where its window, or the largest messages its byte budget for
/// the channel covers, is less.
pub const EARLY_CREDIT: u32 = 4;

/// The most payload bytes of early data a node holds for a connection it
/// has not admitted yet: what came in the same read as the peer's `Hello`.
/// Beyond it, early messages are dropped and counted (`early_no_room`).
/// With `max_pending_handshakes` connections in their handshake, early data
/// held before admission is at most `max_pending_handshakes ×
/// MAX_EARLY_BYTES` (4 MiB with the defaults).
pub const MAX_EARLY_BYTES: usize = 64 * 1024;

pub use crate::channel::MAX_MESSAGE_SIZE;

/// The largest `Hello` frame read from a peer that has not been admitted
/// (64 KiB, encoded). Before admission a peer has proven only a key, which
/// costs nothing, so it may not make us buffer more than this.
pub const MAX_HELLO_SIZE: usize = 64 * 1024;

/// The largest receive window we honour from a peer.
pub(crate) const MAX_WINDOW: u32 = 1 << 16;

/// Router settings. Every field has a sensible default.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Nodes with different network ids refuse each other.
    pub network_id: String,
    /// Announced in `Hello`.
    pub software_version: String,
    /// Deadline for the `Hello` exchange.
    pub handshake_timeout: Duration,
    /// Deadline for a transport dial.
    pub dial_timeout: Duration,
    /// Inbound handshakes in progress at once; more are refused at once.
    pub max_pending_handshakes: usize,
    /// Inbound handshakes in progress at once from one network (an IPv4
    /// /24 or IPv6 /48, [`IpPrefix`](crate::IpPrefix)); more from it are
    /// refused at once, so one network cannot take every slot. Connections
    /// without an IP (the memory transport) count only in all.
    pub max_pending_handshakes_per_prefix: usize,
    /// Peer manager settings (limits, backoff, bans, persistent peers).
    pub peer_manager: PeerManagerConfig,
    /// How often changed peer records are written to the store.
    pub store_flush_interval: Duration,
    /// Frames per writer batch.
    pub max_batch_frames: usize,
    /// Bytes per writer batch (a batch may exceed it by one message).
    pub max_batch_bytes: usize,
    /// Time a closing connection gets to send its goodbye.
    pub close_grace: Duration,
    /// A connection that has received nothing for this long sends a ping.
    pub ping_interval: Duration,
    /// A ping unanswered (nothing received at all) for this long ends the
    /// connection: the peer is dead or the path is.
    pub pong_timeout: Duration,
    /// Bytes one peer may make us hold in receive queues, over all
    /// channels: its messages waiting for a reactor, and the credit it
    /// holds counted at each channel's `max_message_size` (default
    /// 16 MiB). It is split between the channels when the router starts:
    /// each gets an equal share, or what its window of largest messages
    /// could hold if that is less, and at least one largest message. All
    /// peers together hold at most this times the peers the receive queues
    /// make room for (the peer manager's inbound, outbound and requested
    /// outbound limits, plus persistent peers, plus one). Lower it to bound
    /// memory; raise it when channels of large messages need more than one
    /// in flight.
    pub recv_bytes_per_peer: usize,
    /// Peer updates buffered per subscriber before it lags.
    pub peer_update_buffer: usize,
    /// Seed of the peer manager's jitter.
    pub seed: u64,
    /// The addresses announced to peers in `Hello` (what they store and
    /// dial), each naming this node's PeerId: for a node behind NAT or
    /// listening on `0.0.0.0`. Empty (the default): the transports' listen
    /// addresses; one on an unspecified IP (`0.0.0.0`, `::`) then tells
    /// only the port, and a peer that learns it takes the IP it observed
    /// for us instead (peer exchange does; the address book refuses an
    /// unspecified IP from anyone). See [`Router::announced_addresses`].
    pub external_addresses: Vec<PeerAddress>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            network_id: "switchyard-local".into(),
            software_version: concat!("switchyard/", env!("CARGO_PKG_VERSION")).into(),
            handshake_timeout: Duration::from_secs(10),
            dial_timeout: Duration::from_secs(10),
            max_pending_handshakes: 64,
            max_pending_handshakes_per_prefix: 8,
            peer_manager: PeerManagerConfig::default(),
            store_flush_interval: Duration::from_secs(10),
            max_batch_frames: 64,
            max_batch_bytes: 256 * 1024,
            close_grace: Duration::from_secs(2),
            ping_interval: Duration::from_secs(15),
            pong_timeout: Duration::from_secs(10),
            recv_bytes_per_peer: 16 * 1024 * 1024,
            peer_update_buffer: 1024,
            seed: rand::random(),
            external_addresses: Vec::new(),
        }
    }
}

/// Why the router could not start or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A channel could not be opened.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The peer store could not be read.
    #[error(transparent)]
    Store(#[from] PeerStoreError),
    /// The address was refused.
    #[error(transparent)]
    Address(#[from] AddAddressError),
    /// The peer manager's configuration is invalid.
    #[error(transparent)]
    Config(#[from] PeerManagerConfigError),
    /// The router has shut down.
    #[error("router is shut down")]
    Closed,
    /// `start` was called outside a tokio runtime.
    #[error("the router must be started inside a tokio runtime")]
    NoRuntime,
    /// The network id is longer than [`MAX_NETWORK_ID_LEN`](crate::MAX_NETWORK_ID_LEN).
    #[error("network id of {len} bytes exceeds the limit of {max} bytes")]
    NetworkIdTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// A ban in force, as [`Router::bans`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// The banned peer.
    pub peer: PeerId,
    /// How long the ban still lasts.
    pub remaining: Duration,
}

/// A connected peer, as [`Router::peers`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectedPeer {
    /// The peer.
    pub peer: PeerId,
    /// Who dialed.
    pub direction: Direction,
    /// The remote IP the transport observed, if it knows one.
    pub remote_ip: Option<std::net::IpAddr>,
    /// What the peer announced in its `Hello`.
    pub info: proto::NodeInfo,
}

/// A change in a peer's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerUpdate {
    /// The peer.
    pub peer: PeerId,
    /// Up or down.
    pub status: PeerStatus,
}

/// Whether a peer is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerStatus {
    /// Connected; the channels both sides serve.
    Up {
        /// Channels both sides serve.
        channels: Vec<ChannelId>,
        /// Who dialed.
        direction: Direction,
    },
    /// Disconnected, and why.
    Down {
        /// Why.
        reason: String,
    },
}

/// A subscription to [`PeerUpdate`]s. It never slows the router down: a
/// subscriber that falls more than `peer_update_buffer` updates behind
/// loses the oldest and is told so ([`PeerUpdatesError::Lagged`]); it can
/// resynchronise from [`Router::connected_peers`].
#[derive(Debug)]
pub struct PeerUpdates {
    inner: broadcast::Receiver<PeerUpdate>,
}

/// Why [`PeerUpdates::recv`] returned no update.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerUpdatesError {
    /// Updates were lost because the subscriber fell behind.
    #[error("missed {0} peer updates")]
    Lagged(u64),
    /// The router has shut down.
    #[error("router is shut down")]
    Closed,
}

impl PeerUpdates {
    /// The next update.
    pub async fn recv(&mut self) -> Result<PeerUpdate, PeerUpdatesError> {
        self.inner.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => PeerUpdatesError::Lagged(n),
            broadcast::error::RecvError::Closed => PeerUpdatesError::Closed,
        })
    }
}

/// Collects transports, a peer store and channels, then starts a router.
pub struct RouterBuilder {
    keypair: Keypair,
    config: RouterConfig,
    transports: Vec<Arc<dyn Transport>>,
    store: Option<Box<dyn PeerStore>>,
    shared: Arc<Shared>,
    inboxes: Inboxes,
    channels: Vec<ChannelSlot>,
}

impl std::fmt::Debug for RouterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterBuilder")
            .field("peer", &self.keypair.peer_id())
            .field("channels", &self.channels.len())
            .finish_non_exhaustive()
    }
}

impl RouterBuilder {
    /// A builder for a node with this identity and configuration.
    pub fn new(keypair: Keypair, config: RouterConfig) -> Self {
        let (lifecycle_tx, lifecycle) = mpsc::channel(LIFECYCLE_QUEUE);
        let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let (reports_tx, reports) = mpsc::channel(REPORT_QUEUE);
        let (updates, _) = broadcast::channel(config.peer_update_buffer.max(1));
        let shared = Arc::new(Shared {
            local: keypair.peer_id(),
            metrics: Metrics::default(),
            peers: Default::default(),
            channels: Default::default(),
            lifecycle: lifecycle_tx,
            commands: commands_tx,
            reports: reports_tx,
            updates,
            shutdown: CancellationToken::new(),
            abrupt: Default::default(),
            log_gate: Default::default(),
            announced: Default::default(),
        });
        Self {
            keypair,
            config,
            transports: Vec::new(),
            store: None,
            shared,
            inboxes: Inboxes {
                lifecycle,
                commands,
                reports,
            },
            channels: Vec::new(),
        }
    }

    /// Adds a transport. Addresses are dialed by the transport whose scheme
    /// they name.
    /// Its metric series (`handshakes_total`, bytes, `connections`) start
    /// at zero now.
    pub fn transport(&mut self, transport: Arc<dyn Transport>) -> &mut Self {
        self.shared.metrics.declare_transport(transport.scheme());
        self.transports.push(transport);
        self
    }

    /// Sets the peer store (default: in memory).
    pub fn peer_store(&mut self, store: Box<dyn PeerStore>) -> &mut Self {
        self.store = Some(store);
        self
    }

    /// The router's metrics, to register in a registry.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The network id this router's `Hello` names (reactors bind their
    /// signatures to it).
    pub fn network_id(&self) -> &str {
        &self.config.network_id
    }

    /// Opens a typed channel. Each channel id may be opened once.
    pub fn open_channel<M: Message + Default>(
        &mut self,
        descriptor: ChannelDescriptor,
    ) -> Result<(ChannelSender<M>, ChannelReceiver<M>), ChannelError> {
        descriptor.validate()?;
        if let Some(existing) = self
            .channels
            .iter()
            .find(|c| c.descriptor.id == descriptor.id)
        {
            return Err(ChannelError::DuplicateId {
                id: descriptor.id,
                existing: existing.descriptor.name,
            });
        }
        // Room for a full window of every peer that can be connected at
        // once (persistent peers may evict others, so at most max_inbound +
        // max_outbound + max_requested_outbound), plus `persistent + 1`
        // windows for what peers that
        // left or reconnected still have in the queue. The credit ledger
        // never grants more than this in total, so credit-respecting peers
        // cannot overflow it: when what departed peers left fills the
        // spare room, new connections get less credit until it drains.
        let pm = &self.config.peer_manager;
        let peers = pm.max_inbound
            + pm.max_outbound
            + pm.max_requested_outbound
            + pm.persistent_peers.len()
            + 1;
        let capacity = descriptor.recv_buffer.saturating_mul(peers).max(1);
        let (inbound_tx, inbound) = mpsc::channel(capacity);
        let index = self.channels.len();
        self.channels.push(ChannelSlot {
            descriptor: descriptor.clone(),
            inbound: inbound_tx,
            capacity,
        });
        Ok((
            ChannelSender {
                shared: self.shared.clone(),
                index,
                descriptor: descriptor.clone(),
                _message: PhantomData,
            },
            ChannelReceiver {
                shared: self.shared.clone(),
                index,
                descriptor,
                inbound,
                _message: PhantomData,
            },
        ))
    }

    /// Starts the router: checks the peer manager's configuration, loads
    /// the peer store, starts accepting on every transport and dialing
    /// known peers. Must run inside a tokio runtime.
    pub fn start(self) -> Result<Router, RouterError> {
        self.config.peer_manager.validate()?;
        if self.config.network_id.len() > crate::MAX_NETWORK_ID_LEN {
            return Err(RouterError::NetworkIdTooLong {
                len: self.config.network_id.len(),
                max: crate::MAX_NETWORK_ID_LEN,
            });
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| RouterError::NoRuntime)?;
        let local = self.keypair.peer_id();
        let store = self
            .store
            .unwrap_or_else(|| Box::new(MemoryPeerStore::new()));
        let records = store.load()?;
        let bans = store.load_bans()?;
        let now = tokio::time::Instant::now().into_std();
        let mut peer_manager = PeerManager::new(
            local,
            self.config.peer_manager.clone(),
            self.config.seed,
            now,
        );
        peer_manager.load(records);
        // Stored bans end at a wall-clock time; the peer manager counts in
        // instants.
        let wall = std::time::SystemTime::now();
        peer_manager.load_bans(bans.into_iter().filter_map(|ban| {
            let left = ban.until.duration_since(wall).ok()?;
            Some((ban.peer, now.checked_add(left)?))
        }));
        let table = Arc::new(ChannelTable::new(
            self.channels,
            self.config.recv_bytes_per_peer as u64,
        ));
        let listen_addresses: Vec<PeerAddress> = self
            .transports
            .iter()
            .flat_map(|t| t.listen_addresses())
            .collect();
        let external = dialable_external(local, &self.config.external_addresses);
        let announced = announced_addresses(local, &external, &listen_addresses, None);
        *self.shared.announced.write() = announced.clone();
        let local_info = proto::NodeInfo {
            protocol_version: PROTOCOL_VERSION,
            network_id: self.config.network_id.clone(),
            peer_id: local.as_bytes().to_vec().into(),
            channels: table
                .slots
                .iter()
                .zip(&table.early_credit)
                .map(|(s, &early_credit)| proto::ChannelInfo {
                    id: u32::from(s.descriptor.id.0),
                    recv_window: s.descriptor.recv_buffer as u32,
                    max_message_size: s.descriptor.max_message_size as u32,
                    early_credit,
                })
                .collect(),
            listen_addresses: announced.iter().map(ToString::to_string).collect(),
            software_version: self.config.software_version.clone(),
        };
        // Transports that can carry our `Hello` in their own handshake
        // save the round trip of a separate exchange.
        let hello = crate::transport::Frame::Hello(Box::new(local_info.clone()));
        for transport in &self.transports {
            transport.carry_hello(&hello);
        }
        let carriers = Carriers {
            base: local_info.clone(),
            transports: self.transports.clone(),
        };
        let _ = self.shared.channels.set(table.clone());
        let tracker = TaskTracker::new();
        let supervisor = Supervisor {
            shared: self.shared.clone(),
            config: self.config,
            table,
            local_info,
            peer_manager,
            store: StoreWriter::start(store),
            transports: self.transports,
            inboxes: self.inboxes,
            tracker: tracker.clone(),
            hard_stop: CancellationToken::new(),
            next_conn_id: 0,
        };
        let handle = runtime.spawn(supervisor.run());
        Ok(Router {
            inner: Arc::new(RouterInner {
                shared: self.shared,
                listen_addresses,
                external,
                observed: parking_lot::Mutex::new(None),
                carriers,
                tracker,
                supervisor: Mutex::new(Some(handle)),
            }),
        })
    }
}

/// The configured external addresses that name `local` and can be dialed
/// (not an unspecified IP, not port 0).
fn dialable_external(local: PeerId, external: &[PeerAddress]) -> Vec<PeerAddress> {
    external
        .iter()
        .filter(|a| {
            a.peer == local
                && !a.ip().is_some_and(|ip| ip.is_unspecified())
                && !matches!(a.host_port(), Some((_, Some(0))))
        })
        .cloned()
        .collect()
}

/// What a router announces: the dialable `external` addresses if there
/// are any; else, when peers agree on the IP they see us at (`observed`),
/// that IP with the port of each listener that can take it (one bound to
/// an unspecified IP, or to an IP of the same family), then the `listen`
/// addresses (an unspecified IP among them tells peers the port: they
/// take the IP they observe). An unspecified observed IP is never used.
fn announced_addresses(
    local: PeerId,
    external: &[PeerAddress],
    listen: &[PeerAddress],
    observed: Option<IpAddr>,
) -> Vec<PeerAddress> {
    if !external.is_empty() {
        return external.to_vec();
    }
    let mut announced = Vec::new();
    if let Some(ip) = observed.filter(|ip| !ip.is_unspecified()) {
        for address in listen {
            let (Some(listener), Some((_, Some(port)))) = (address.ip(), address.host_port())
            else {
                continue;
            };
            let takes = match listener {
                IpAddr::V4(v4) if v4.is_unspecified() => ip.is_ipv4(),
                IpAddr::V6(v6) if v6.is_unspecified() => true,
                _ => listener.is_ipv4() == ip.is_ipv4(),
            };
            if !takes || port == 0 {
                continue;
            }
            let at = std::net::SocketAddr::new(ip, port);
            let derived = match address.scheme() {
                "quic" => PeerAddress::quic(local, at),
                "tcp" => PeerAddress::tcp(local, at),
                _ => continue,
            };
            if !announced.contains(&derived) && !listen.contains(&derived) {
                announced.push(derived);
            }
        }
    }
    announced.extend(listen.iter().cloned());
    announced
}

#[derive(Debug)]
struct RouterInner {
    shared: Arc<Shared>,
    listen_addresses: Vec<PeerAddress>,
    /// The configured external addresses that can be dialed.
    external: Vec<PeerAddress>,
    /// The IP peers agree they see us at, if any.
    observed: parking_lot::Mutex<Option<IpAddr>>,
    /// Our `Hello` as built at start, and the transports that carry it in
    /// their handshakes: told again when the announced addresses change.
    carriers: Carriers,
    tracker: TaskTracker,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

/// Our `Hello` as built at start, and the transports that may carry it.
struct Carriers {
    base: proto::NodeInfo,
    transports: Vec<Arc<dyn Transport>>,
}

impl std::fmt::Debug for Carriers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Carriers")
            .field("transports", &self.transports.len())
            .finish_non_exhaustive()
    }
}

/// A running router. Cheap to clone; every clone controls the same router.
#[derive(Debug, Clone)]
pub struct Router {
    inner: Arc<RouterInner>,
}

impl Router {
    /// This node's PeerId.
    pub fn local_peer_id(&self) -> PeerId {
        self.inner.shared.local
    }

    /// The addresses the transports listen on.
    pub fn listen_addresses(&self) -> &[PeerAddress] {
        &self.inner.listen_addresses
    }

    /// The addresses announced to peers in `Hello` now: the configured
    /// [`external_addresses`](RouterConfig::external_addresses) that name
    /// this node and can be dialed; else the IP peers agree they observe
    /// for us ([`set_observed_ip`](Self::set_observed_ip)) with our
    /// listeners' ports, then the listen addresses.
    pub fn announced_addresses(&self) -> Vec<PeerAddress> {
        self.inner.shared.announced.read().clone()
    }

    /// The IP peers agree they see us at, as last set.
    pub fn observed_ip(&self) -> Option<IpAddr> {
        *self.inner.observed.lock()
    }

    /// Sets the IP peers agree they see us at (peer exchange decides when
    /// enough agree; `None` when they no longer do): the `Hello` of every
    /// connection made from now on announces it with our listeners' ports,
    /// unless `external_addresses` are configured (they win). An
    /// unspecified IP is ignored. Returns the addresses announced now.
    pub fn set_observed_ip(&self, ip: Option<IpAddr>) -> Vec<PeerAddress> {
        let ip = ip.filter(|ip| !ip.is_unspecified());
        let mut observed = self.inner.observed.lock();
        *observed = ip;
        let announced = announced_addresses(
            self.local_peer_id(),
            &self.inner.external,
            &self.inner.listen_addresses,
            ip,
        );
        *self.inner.shared.announced.write() = announced.clone();
        // The `Hello` the transports carry in their handshakes names them.
        let carriers = &self.inner.carriers;
        let hello =
            crate::transport::Frame::Hello(Box::new(self.inner.shared.hello(&carriers.base)));
        for transport in &carriers.transports {
            transport.carry_hello(&hello);
        }
        announced
    }

    /// The router's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.shared.metrics
    }

    /// Subscribes to peer updates from now on.
    pub fn subscribe(&self) -> PeerUpdates {
        PeerUpdates {
            inner: self.inner.shared.updates.subscribe(),
        }
    }

    /// The connected peers, in PeerId order.
    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.inner.shared.peers.read().keys().copied().collect()
    }

    /// Every connected peer with what the router knows of its connection,
    /// in PeerId order.
    pub fn peers(&self) -> Vec<ConnectedPeer> {
        self.inner
            .shared
            .links()
            .into_iter()
            .map(|l| ConnectedPeer {
                peer: l.peer,
                direction: l.direction,
                remote_ip: l.remote_ip,
                info: l.remote_info.clone(),
            })
            .collect()
    }

    /// Whether `peer` is connected.
    pub fn is_connected(&self, peer: PeerId) -> bool {
        self.inner.shared.peers.read().contains_key(&peer)
    }

    /// What `peer` announced in its `Hello`, if connected.
    pub fn peer_info(&self, peer: PeerId) -> Option<proto::NodeInfo> {
        self.inner.shared.link(peer).map(|l| l.remote_info.clone())
    }

    async fn command<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, RouterError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .shared
            .commands
            .send(Event::Command(make(reply)))
            .await
            .map_err(|_| RouterError::Closed)?;
        rx.await.map_err(|_| RouterError::Closed)
    }

    /// Adds `address` to the address book as the operator's
    /// ([`AddressSource::Manual`]: trusted, so it may be private or
    /// loopback); the peer manager dials it when a slot is free. Returns
    /// whether the address was new.
    pub async fn dial(&self, address: PeerAddress) -> Result<bool, RouterError> {
        let mut results = self
            .add_addresses(vec![address], AddressSource::Manual)
            .await?;
        Ok(results.pop().unwrap_or(Ok(false))?)
    }

    /// Adds addresses to the address book, as [`dial`](Self::dial) does,
    /// marked with where they came from. Every address passes the peer
    /// manager's one screen ([`AddAddressError`]); addresses from peers
    /// ([`AddressSource::ExchangeFrom`], naming the peer that told us, or
    /// [`AddressSource::Exchange`]) are untrusted: no private or loopback
    /// address unless `allow_private_addresses`, the per-host and per-peer
    /// limits, and buckets chosen by the teller's network. One result per
    /// address, in order: whether it was new, or why it was refused (each
    /// refusal is counted under `addresses_refused_total{reason}`).
    pub async fn add_addresses(
        &self,
        addresses: Vec<PeerAddress>,
        source: AddressSource,
    ) -> Result<Vec<Result<bool, AddAddressError>>, RouterError> {
        self.command(|reply| Command::AddAddresses {
            addresses,
            source,
            request: false,
            reply,
        })
        .await
    }

    /// Asks for a connection to the peers of `addresses` on a reactor's
    /// behalf (a gossip neighbour, a ring link): the addresses are added as
    /// [`add_addresses`](Self::add_addresses) does — through the same
    /// screen — and each peer whose address passed it is dialed before
    /// ordinary peers and even when the ordinary outbound slots are full,
    /// up to `max_outbound + max_requested_outbound` outbound connections
    /// (see [`PeerManager::request`](crate::peer_manager::PeerManager::request)).
    /// The request lasts until that dial ends; a peer already connected is
    /// left as it is. Watch [`Router::subscribe`](Self::subscribe)'s updates
    /// for the peer coming up. One result per address.
    pub async fn connect(
        &self,
        addresses: Vec<PeerAddress>,
        source: AddressSource,
    ) -> Result<Vec<Result<bool, AddAddressError>>, RouterError> {
        self.command(|reply| Command::AddAddresses {
            addresses,
            source,
            request: true,
            reply,
        })
        .await
    }

    /// Up to `max` addresses from the address book, one per peer, chosen at
    /// random (from the router's seeded randomness) among peers that are
    /// not banned and whose score is not negative; never `exclude`'s.
    /// What peer exchange hands out.
    pub async fn sample_addresses(
        &self,
        max: usize,
        exclude: Option<PeerId>,
    ) -> Result<Vec<PeerAddress>, RouterError> {
        self.command(|reply| Command::SampleAddresses {
            max,
            exclude,
            reply,
        })
        .await
    }

    /// How many peers the address book knows.
    pub async fn known_peers(&self) -> Result<usize, RouterError> {
        self.command(|reply| Command::KnownPeers { reply }).await
    }

    /// The IP address the transport observed for connected `peer`, if it
    /// knows one (the memory transport does not).
    pub fn peer_ip(&self, peer: PeerId) -> Option<std::net::IpAddr> {
        self.inner.shared.link(peer).and_then(|l| l.remote_ip)
    }

    /// The bans in force, in PeerId order. They are kept in the peer store:
    /// a restart does not lift them.
    pub async fn bans(&self) -> Result<Vec<Ban>, RouterError> {
        self.command(|reply| Command::Bans { reply }).await
    }

    /// Lifts `peer`'s ban; returns whether it was banned. The peer comes
    /// back on its last chance (see [`PeerManager::unban`](crate::peer_manager::PeerManager::unban)).
    pub async fn unban(&self, peer: PeerId) -> Result<bool, RouterError> {
        self.command(|reply| Command::Unban { peer, reply }).await
    }

    /// Disconnects `peer` with a goodbye, banning it for `ban` if given
    /// (at most [`MAX_BAN_DURATION`](crate::peer_manager::MAX_BAN_DURATION):
    /// a longer ban lasts that long; the goodbye tells the peer how long).
    /// Returns whether it was connected.
    pub async fn disconnect(
        &self,
        peer: PeerId,
        ban: Option<Duration>,
    ) -> Result<bool, RouterError> {
        self.command(|reply| Command::Disconnect { peer, ban, reply })
            .await
    }

    /// The peer manager's score of `peer`, if it knows the peer.
    pub async fn score(&self, peer: PeerId) -> Result<Option<i64>, RouterError> {
        self.command(|reply| Command::Score { peer, reply }).await
    }

    /// Tasks of this router still running (0 after [`shutdown`](Self::shutdown)).
    pub fn running_tasks(&self) -> usize {
        let supervisor = self
            .inner
            .supervisor
            .lock()
            .as_ref()
            .is_some_and(|h| !h.is_finished());
        self.inner.tracker.len() + usize::from(supervisor)
    }

    /// Stops at once, as a crash would: no goodbyes, and the peer store
    /// keeps only what its last periodic flush wrote. Every task still ends
    /// before this returns. For tests of crash recovery.
    pub async fn kill(&self) {
        self.inner
            .shared
            .abrupt
            .store(true, std::sync::atomic::Ordering::Release);
        self.shutdown().await;
    }

    /// Shuts down gracefully: goodbye to every peer, every task stopped, the
    /// peer store flushed. Receivers return `None` once drained.
    pub async fn shutdown(&self) {
        self.inner.shared.shutdown.cancel();
        let handle = self.inner.supervisor.lock().take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }
}

#[cfg(test)]
mod network_id_tests {
    use super::*;

    #[test]
    fn a_router_refuses_to_start_with_a_network_id_over_the_limit() {
        let config = RouterConfig {
            network_id: "n".repeat(crate::MAX_NETWORK_ID_LEN + 1),
            ..RouterConfig::default()
        };
        let result = RouterBuilder::new(Keypair::from_seed(1), config).start();
        assert!(
            matches!(
                result,
                Err(RouterError::NetworkIdTooLong { len: 243, max: 242 })
            ),
            "{:?}",
            result.err()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A router announces its external addresses if it has any (never an
    /// unspecified IP, port 0, or another node's), else its listen
    /// addresses.
    #[test]
    fn announced_addresses_are_the_external_ones_else_the_listen_ones() {
        let local = Keypair::from_seed(1).peer_id();
        let other = Keypair::from_seed(2).peer_id();
        let tcp = |peer, addr: &str| PeerAddress::tcp(peer, addr.parse().expect("addr"));
        let listen = vec![
            tcp(local, "0.0.0.0:26656"),
            tcp(local, "[::]:26656"),
            tcp(local, "10.0.0.5:26656"),
        ];
        let announce = |external: &[PeerAddress], observed: Option<&str>| {
            let external = dialable_external(local, external);
            let observed = observed.map(|ip| ip.parse().expect("ip"));
            announced_addresses(local, &external, &listen, observed)
        };
        assert_eq!(announce(&[], None), listen);
        let external = vec![
            tcp(local, "203.0.113.7:26656"),
            tcp(other, "203.0.113.8:26656"),
            tcp(local, "203.0.113.9:0"),
        ];
        let chosen = vec![tcp(local, "203.0.113.7:26656")];
        assert_eq!(announce(&external, None), chosen);
        // External addresses win over an observed IP.
        assert_eq!(announce(&external, Some("198.51.100.4")), chosen);
        let unusable = [tcp(local, "0.0.0.0:1"), tcp(other, "203.0.113.8:1")];
        assert_eq!(announce(&unusable, None), listen);
        // An observed IPv4 goes with the listeners that can take it (the
        // IPv4 wildcard, the dual-stack one, the IPv4 address), once.
        let mut expected = vec![tcp(local, "198.51.100.4:26656")];
        expected.extend(listen.clone());
        assert_eq!(announce(&[], Some("198.51.100.4")), expected);
        // An observed IPv6 only with the dual-stack listener.
        let mut expected = vec![tcp(local, "[2001:db8::4]:26656")];
        expected.extend(listen.clone());
        assert_eq!(announce(&[], Some("2001:db8::4")), expected);
        // Never an unspecified one.
        assert_eq!(announce(&[], Some("0.0.0.0")), listen);
        let quic = vec![PeerAddress::quic(
            local,
            "0.0.0.0:7401".parse().expect("addr"),
        )];
        let derived =
            announced_addresses(local, &[], &quic, Some("198.51.100.4".parse().expect("ip")));
        assert_eq!(
            derived[0].to_string(),
            format!("quic://{local}@198.51.100.4:7401")
        );
    }
}
