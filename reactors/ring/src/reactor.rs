//! The driver: connects [`RingState`] to the ring channel, the router's
//! peer updates (with each peer's address, for the per-network limits), a
//! timer, the clock of the operating system (locations expire in Unix
//! time), the ring's store and the [`RingHandle`].

use std::collections::{BTreeSet, VecDeque};

use p2p::{
    AddressSource, ChannelDescriptor, ChannelError, ChannelId, ChannelReceiver, ChannelSender,
    Keypair, PeerAddress, PeerError, PeerId, PeerStatus, PeerUpdate, PeerUpdatesError, Reactor,
    ReactorContext, Router, RouterBuilder,
};
use prometheus_client::registry::Registry;
use prost::Message as _;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::CHANNEL_ID;
use crate::config::{RingConfig, RingConfigError};
use crate::location::Location;
use crate::message::{Message, RouteMode};
use crate::negotiation::Transcript;
use crate::proto::RingMessage;
use crate::state::{Action, Event, NeighborInfo, RingState, RouteError};
use crate::stats::{RingCollector, RingStats};
use crate::store::{MemoryRingStore, RingStore};

/// Commands queued from handles at most; `route` waits for room.
const COMMAND_QUEUE: usize = 256;
/// Events buffered per subscriber before it lags (and loses the oldest).
const EVENT_BUFFER: usize = 1024;

/// The ring reactor. Open it on a node (or in the testkit) and keep its
/// [`RingHandle`].
///
/// ```no_run
/// # fn example(builder: &mut p2p::RouterBuilder, keypair: p2p::Keypair, gateway: p2p::PeerId) -> Result<(), Box<dyn std::error::Error>> {
/// use reactor_ring::{HeedRingStore, Ring, RingConfig};
///
/// // The node's own key (the ring signs its answers to connect requests).
/// let ring = Ring::new(keypair, RingConfig::with_gateways([gateway]))?
///     .with_store(Box::new(HeedRingStore::open("data/ring".as_ref())?));
/// let (handle, opened) = p2p::OpenedReactor::open(ring, builder)?;
/// // ... start the router, then `opened.spawn(ctx)` ...
/// println!("{:?}", handle.location());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Ring {
    config: RingConfig,
    keypair: Keypair,
    gateway: bool,
    store: Option<Box<dyn RingStore>>,
    deterministic_nonces: bool,
    channel: Option<(ChannelSender<RingMessage>, ChannelReceiver<RingMessage>)>,
    commands: Option<mpsc::Receiver<Command>>,
    commands_tx: mpsc::Sender<Command>,
    snapshot: watch::Sender<Snapshot>,
    events: broadcast::Sender<Event>,
}

/// What the handle sees of the ring, refreshed by the driver.
#[derive(Debug, Clone, Default, PartialEq)]
struct Snapshot {
    location: Option<Location>,
    transcript: Option<Transcript>,
    neighbors: Vec<NeighborInfo>,
    stats: RingStats,
}

#[derive(Debug)]
enum Command {
    Route {
        target: Location,
        mode: RouteMode,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<u64, RouteError>>,
    },
}

/// Why a handle's request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The ring refused the route.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The reactor is not running (not started yet, or stopped).
    #[error("the ring reactor is not running")]
    Stopped,
}

/// What the application keeps of a running [`Ring`]: its location, its
/// neighbors, routing, events. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RingHandle {
    commands: mpsc::Sender<Command>,
    snapshot: watch::Receiver<Snapshot>,
    events: broadcast::Sender<Event>,
}

impl RingHandle {
    /// Our location, once joined.
    pub fn location(&self) -> Option<Location> {
        self.snapshot.borrow().location
    }

    /// Our location's proof, once joined.
    pub fn transcript(&self) -> Option<Transcript> {
        self.snapshot.borrow().transcript.clone()
    }

    /// Our neighbors with their locations, distances and load, closest
    /// first (as of the driver's last step).
    pub fn neighbors(&self) -> Vec<NeighborInfo> {
        self.snapshot.borrow().neighbors.clone()
    }

    /// What the ring has done so far.
    pub fn stats(&self) -> RingStats {
        self.snapshot.borrow().stats.clone()
    }

    /// Up to `k` peers closest to `location` among us and our neighbors.
    pub fn closest_peers(&self, location: Location, k: usize) -> Vec<(PeerId, Location)> {
        let snapshot = self.snapshot.borrow();
        let mut all: Vec<(PeerId, Location)> = snapshot
            .neighbors
            .iter()
            .map(|n| (n.peer, n.location))
            .collect();
        if let Some((me, t)) = snapshot.location.zip(snapshot.transcript.as_ref()) {
            all.push((t.joiner, me));
        }
        all.sort_by_key(|(_, l)| (location.distance(*l), *l));
        all.truncate(k);
        all
    }

    /// Routes `payload` to the peer closest to `target`, which gets it as
    /// [`Event::Delivered`]. Waits while the command queue is full. Returns
    /// the route's id; a failure comes back as [`Event::RouteFailed`].
    pub async fn route(&self, target: Location, payload: Vec<u8>) -> Result<u64, RingError> {
        self.route_with(target, RouteMode::Closest, payload).await
    }

    /// Routes `payload` to the peer at exactly `target` (a peer's
    /// location), searching with backtracking.
    pub async fn route_exact(&self, target: Location, payload: Vec<u8>) -> Result<u64, RingError> {
        self.route_with(target, RouteMode::Exact, payload).await
    }

    async fn route_with(
        &self,
        target: Location,
        mode: RouteMode,
        payload: Vec<u8>,
    ) -> Result<u64, RingError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Route {
                target,
                mode,
                payload,
                reply,
            })
            .await
            .map_err(|_| RingError::Stopped)?;
        Ok(rx.await.map_err(|_| RingError::Stopped)??)
    }

    /// Events from now on (deliveries, failures, neighbors, overloads). A
    /// subscriber more than 1024 events behind loses the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Waits until the snapshot changes (a neighbor, the location, a
    /// counter). Cancel-safe.
    pub async fn changed(&mut self) -> Result<(), RingError> {
        self.snapshot
            .changed()
            .await
            .map_err(|_| RingError::Stopped)
    }
}

impl Ring {
    /// A ring node with the node's `keypair` (it signs the node's answers
    /// to connect requests; the router must run with the same key) that
    /// joins through `config.gateways`; refused if the config is invalid.
    /// It keeps its location in memory unless given a store
    /// ([`with_store`](Self::with_store)).
    pub fn new(keypair: Keypair, config: RingConfig) -> Result<Self, RingConfigError> {
        config.validate()?;
        let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
        Ok(Self {
            config,
            keypair,
            gateway: false,
            store: None,
            deterministic_nonces: false,
            channel: None,
            commands: Some(commands),
            commands_tx,
            snapshot: watch::Sender::new(Snapshot::default()),
            events: broadcast::Sender::new(EVENT_BUFFER),
        })
    }

    /// A gateway: it signs joiners' negotiations with `keypair` (the
    /// node's own key) and fixes its own location at start. List its
    /// PeerId in `config.gateways` to trust its own location. Give it a
    /// store ([`with_store`](Self::with_store)) so that a restart neither
    /// moves it nor lets a joiner draw a second location.
    pub fn gateway(keypair: Keypair, config: RingConfig) -> Result<Self, RingConfigError> {
        let mut ring = Self::new(keypair, config)?;
        ring.gateway = true;
        Ok(ring)
    }

    /// Keep the ring's records (our location, a pending negotiation, a
    /// gateway's grants) in `store` ([`crate::store`]); read at start.
    pub fn with_store(mut self, store: Box<dyn RingStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Draw negotiation values from the reactor's seed instead of the
    /// operating system, so a seeded test is reproducible. Never in
    /// production: a gateway that can guess our value can choose our
    /// location.
    pub fn with_deterministic_nonces(mut self) -> Self {
        self.deterministic_nonces = true;
        self
    }

    /// The ring channel: id `0x0030`, priority 2, 256 messages queued per
    /// peer, 64 in flight from each peer, messages up to 24 KiB (a route
    /// with a 16 KiB payload and full visited and path lists fits).
    pub fn channel_descriptor() -> ChannelDescriptor {
        ChannelDescriptor {
            id: ChannelId(CHANNEL_ID),
            name: "ring",
            priority: 2,
            send_queue: 256,
            recv_buffer: 64,
            max_message_size: 24 * 1024,
        }
    }
}

impl Reactor for Ring {
    type Handle = RingHandle;

    fn name(&self) -> &'static str {
        "ring"
    }

    fn open(&mut self, router: &mut RouterBuilder) -> Result<RingHandle, ChannelError> {
        let channel = router.open_channel::<RingMessage>(Self::channel_descriptor())?;
        self.channel = Some(channel);
        // Signatures name the network the router checks in `Hello`.
        self.config.network_id = router.network_id().to_string();
        Ok(RingHandle {
            commands: self.commands_tx.clone(),
            snapshot: self.snapshot.subscribe(),
            events: self.events.clone(),
        })
    }

    fn register_metrics(&self, registry: &mut Registry) {
        let snapshot = self.snapshot.subscribe();
        registry.register_collector(Box::new(RingCollector {
            stats: Box::new(move || snapshot.borrow().stats.clone()),
        }));
    }

    async fn run(mut self, ctx: ReactorContext) {
        let (Some((tx, rx)), Some(commands)) = (self.channel.take(), self.commands.take()) else {
            tracing::warn!("ring reactor run without being opened; it does nothing");
            return;
        };
        let local = ctx.router.local_peer_id();
        if self.keypair.peer_id() != local {
            tracing::error!(
                key = %self.keypair.peer_id().short(),
                node = %local.short(),
                "ring reactor given another key than the node's; it does not run"
            );
            return;
        }
        let (now, unix) = (now(), unix_now());
        let mut state = if self.gateway {
            RingState::new_gateway(self.keypair, self.config.clone(), ctx.seed, now, unix)
        } else {
            RingState::new(self.keypair, self.config.clone(), ctx.seed, now, unix)
        };
        if !self.deterministic_nonces {
            state.set_nonce_key(rand::random());
        }
        let store = self
            .store
            .take()
            .unwrap_or_else(|| Box::new(MemoryRingStore::new()));
        let records = match store.load() {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(%error, "ring store unreadable; starting without it");
                Vec::new()
            }
        };
        let restored = state.restore(records, now);
        state.set_addresses(
            ctx.router
                .listen_addresses()
                .iter()
                .map(ToString::to_string)
                .collect(),
        );
        let mut driver = Driver {
            router: ctx.router,
            tx,
            state,
            store,
            snapshot: self.snapshot,
            events: self.events,
        };
        driver.execute(restored).await;
        driver.run(rx, commands, ctx.shutdown).await;
    }
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Seconds since the Unix epoch, from the operating system's clock (0 if it
/// is set before 1970). Read once at start; the core counts from there on
/// the monotonic clock.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct Driver {
    router: Router,
    tx: ChannelSender<RingMessage>,
    state: RingState,
    store: Box<dyn RingStore>,
    snapshot: watch::Sender<Snapshot>,
    events: broadcast::Sender<Event>,
}

impl Driver {
    async fn run(
        mut self,
        mut rx: ChannelReceiver<RingMessage>,
        mut commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) {
        let mut updates = self.router.subscribe();
        let actions = self.resync();
        self.execute(actions).await;
        self.publish();
        loop {
            let wake = tokio::time::Instant::from_std(self.state.next_wakeup());
            let actions = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                update = updates.recv() => match update {
                    Ok(update) => self.on_update(update),
                    Err(PeerUpdatesError::Lagged(missed)) => {
                        tracing::debug!(missed, "ring lagged behind peer updates; resynchronising");
                        self.resync()
                    }
                    Err(PeerUpdatesError::Closed) => break,
                },
                envelope = rx.recv() => match envelope {
                    Some(envelope) => self.on_envelope(envelope.from, envelope.message),
                    None => break,
                },
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => Vec::new(),
                },
                _ = tokio::time::sleep_until(wake) => self.state.on_tick(now()),
            };
            self.execute(actions).await;
            self.publish();
        }
    }

    fn on_update(&mut self, update: PeerUpdate) -> Vec<Action> {
        match update.status {
            PeerStatus::Up { channels, .. } => {
                if channels.contains(&ChannelId(CHANNEL_ID)) {
                    let ip = self.router.peer_ip(update.peer);
                    self.state.on_peer_up(update.peer, ip, now())
                } else {
                    Vec::new()
                }
            }
            PeerStatus::Down { .. } => self.state.on_peer_down(update.peer, now()),
        }
    }

    fn on_envelope(&mut self, from: PeerId, wire: RingMessage) -> Vec<Action> {
        let size = wire.encoded_len();
        match Message::from_wire(wire) {
            Ok(Some(message)) => self.state.on_message(from, message, size, now()),
            Ok(None) => Vec::new(),
            Err(error) => vec![Action::Report {
                peer: from,
                error: PeerError::Protocol(format!("ring message: {error}")),
            }],
        }
    }

    fn on_command(&mut self, command: Command) -> Vec<Action> {
        match command {
            Command::Route {
                target,
                mode,
                payload,
                reply,
            } => match self.state.route(target, mode, payload, now()) {
                Ok((id, actions)) => {
                    let _ = reply.send(Ok(id));
                    actions
                }
                Err(error) => {
                    let _ = reply.send(Err(error));
                    Vec::new()
                }
            },
        }
    }

    /// Brings the core in line with the router's connected peers, after
    /// missed updates (or at start).
    fn resync(&mut self) -> Vec<Action> {
        let serving: BTreeSet<PeerId> = self
            .router
            .peers()
            .into_iter()
            .filter(|p| {
                p.info
                    .channels
                    .iter()
                    .any(|c| c.id == u32::from(CHANNEL_ID))
            })
            .map(|p| p.peer)
            .collect();
        let mut actions = Vec::new();
        let known: BTreeSet<PeerId> = self.state.connected().collect();
        for gone in known.difference(&serving) {
            actions.extend(self.state.on_peer_down(*gone, now()));
        }
        for peer in serving {
            let ip = self.router.peer_ip(peer);
            actions.extend(self.state.on_peer_up(peer, ip, now()));
        }
        actions
    }

    /// Carries out `actions` and whatever they lead to. Sends never wait.
    async fn execute(&mut self, actions: Vec<Action>) {
        let mut queue = VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Send { to, message } => {
                    let retry = matches!(message, Message::Route(_)).then(|| message.clone());
                    if let Err(error) = self.tx.try_send(to, message.into()) {
                        tracing::debug!(peer = %to.short(), %error, "ring message not sent");
                        if let Some(route) = retry {
                            queue.extend(self.state.on_send_failed(to, route, now()));
                        }
                    }
                }
                Action::Dial { peer, addresses } => {
                    let address = addresses
                        .iter()
                        .filter_map(|a| a.parse::<PeerAddress>().ok())
                        .find(|a| a.peer == peer);
                    // A ring link is a reactor's request: dialed past the
                    // ordinary outbound slots peer exchange fills.
                    let dialed = match address {
                        Some(address) => self
                            .router
                            .connect(vec![address], AddressSource::Exchange)
                            .await
                            .is_ok(),
                        None => false,
                    };
                    if !dialed {
                        queue.extend(self.state.on_dial_failed(peer, now()));
                    }
                }
                Action::Disconnect { peer, ban, reason } => {
                    tracing::debug!(peer = %peer.short(), ?reason, "ring disconnects peer");
                    let _ = self.router.disconnect(peer, ban).await;
                }
                Action::Report { peer, error } => {
                    tracing::debug!(peer = %peer.short(), %error, "ring reports peer");
                    self.tx.report(peer, error);
                }
                Action::Store(record) => {
                    // Synchronous, before any action that follows: a
                    // gateway's grant is on disk before its challenge
                    // leaves. One small record, a few a minute at most.
                    if let Err(error) = self.store.save(&record) {
                        tracing::warn!(%error, "ring store: a record was not kept");
                        self.state.on_store_failed();
                    }
                }
                Action::Forget(key) => {
                    if let Err(error) = self.store.remove(&key) {
                        tracing::warn!(%error, "ring store: a record was not removed");
                        self.state.on_store_failed();
                    }
                }
                Action::Event(event) => {
                    let _ = self.events.send(event);
                }
            }
        }
    }

    fn publish(&self) {
        let state = &self.state;
        self.snapshot.send_if_modified(|s| {
            let same_neighbors = s.neighbors.len() == state.degree()
                && s.neighbors.iter().all(|n| state.is_neighbor(&n.peer));
            if s.location == state.location() && same_neighbors && s.stats == *state.stats() {
                return false;
            }
            s.location = state.location();
            s.transcript = state.transcript().cloned();
            s.neighbors = state.neighbors(now());
            s.stats = state.stats().clone();
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_served_from_the_latest_snapshot() {
        let ring = Ring::new(Keypair::from_seed(1), RingConfig::default()).expect("valid");
        let mut registry = Registry::default();
        ring.register_metrics(&mut registry);
        ring.snapshot.send_modify(|s| {
            s.stats.routes_forwarded = 7;
            s.stats.neighbors = 3;
        });
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains("switchyard_ring_routes_forwarded_total 7"),
            "{text}"
        );
        assert!(text.contains("switchyard_ring_neighbors 3"), "{text}");
        assert!(
            text.contains("switchyard_ring_locations_refused_total 0"),
            "{text}"
        );
    }

    #[test]
    fn the_channel_id_is_the_rings() {
        let d = Ring::channel_descriptor();
        assert_eq!(d.id, ChannelId(0x0030));
        assert_eq!(d.validate(), Ok(()));
    }
}
