//! The reactor: opens the ring channel, builds the core ([`RingState`])
//! with the node's key, a seed, the clock's Unix time and a secret nonce
//! key, and runs it with `p2p::reactor::driver` beside `RingShell`, the
//! ring's thin part: it answers the [`RingHandle`]'s requests, hands the
//! core's events to the handles' subscribers, carries out the core's
//! [`StoreEffect`]s on the ring's [`RingStore`] (synchronously, in
//! order), restores the core from that store at start, and publishes a
//! snapshot (location, neighbors, counters) after every step.

use p2p::reactor::{Outputs, Shell, driver, now, unix_time};
use p2p::{
    ChannelDescriptor, ChannelError, ChannelId, ChannelReceiver, ChannelSender, Keypair, PeerId,
    Reactor, ReactorContext, Router, RouterBuilder,
};
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::CHANNEL_ID;
use crate::config::{RingConfig, RingConfigError};
use crate::location::Location;
use crate::message::RouteMode;
use crate::negotiation::Transcript;
use crate::proto::RingMessage;
use crate::state::{
    Command, Event, NeighborInfo, RingState, RouteError, StoreEffect, StoreOutcome,
};
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
    commands: Option<mpsc::Receiver<Request>>,
    commands_tx: mpsc::Sender<Request>,
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

/// What a [`RingHandle`] asks the reactor: a command for the core, and
/// where its reply goes.
#[derive(Debug)]
struct Request {
    command: Command,
    reply: oneshot::Sender<Result<u64, RouteError>>,
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
    commands: mpsc::Sender<Request>,
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
        let command = Command::Route {
            target,
            mode,
            payload,
        };
        self.commands
            .send(Request { command, reply })
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
        let (Some(channel), Some(requests)) = (self.channel.take(), self.commands.take()) else {
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
        // Locations expire in Unix time: the core counts from the clock's
        // time now on the monotonic clock.
        let (now, unix) = (now(), unix_time().as_secs());
        let mut state = if self.gateway {
            RingState::new_gateway(self.keypair, self.config.clone(), ctx.seed, now, unix)
        } else {
            RingState::new(self.keypair, self.config.clone(), ctx.seed, now, unix)
        };
        if !self.deterministic_nonces {
            state.set_nonce_key(rand::random());
        }
        state.set_addresses(
            ctx.router
                .listen_addresses()
                .iter()
                .map(ToString::to_string)
                .collect(),
        );
        let shell = RingShell {
            store: self
                .store
                .take()
                .unwrap_or_else(|| Box::new(MemoryRingStore::new())),
            snapshot: self.snapshot,
            events: self.events,
        };
        driver::run(state, shell, channel, Some(requests), ctx).await;
    }
}

/// The ring's part of the reactor beside its core (see the module docs).
#[derive(Debug)]
struct RingShell {
    store: Box<dyn RingStore>,
    snapshot: watch::Sender<Snapshot>,
    events: broadcast::Sender<Event>,
}

impl RingShell {
    /// Carries out `effect` on the store at once; `Failed` if it could
    /// not.
    fn apply(&mut self, effect: StoreEffect) -> Option<StoreOutcome> {
        let result = match &effect {
            StoreEffect::Store(record) => self.store.save(record),
            StoreEffect::Forget(key) => self.store.remove(key),
        };
        match result {
            Ok(()) => None,
            Err(error) => {
                tracing::warn!(%error, ?effect, "ring store: a record was not kept or removed");
                Some(StoreOutcome::Failed)
            }
        }
    }
}

impl Shell<RingState> for RingShell {
    type Request = Request;

    /// Restores the core from the store before any peer is announced.
    fn on_start(
        &mut self,
        core: &mut RingState,
        now: std::time::Instant,
        out: &mut Outputs<RingState>,
    ) {
        let records = match self.store.load() {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(%error, "ring store unreadable; starting without it");
                Vec::new()
            }
        };
        core.restore(records, now, out);
    }

    fn on_request(
        &mut self,
        core: &mut RingState,
        now: std::time::Instant,
        request: Request,
        out: &mut Outputs<RingState>,
    ) {
        let reply = p2p::reactor::Core::command(core, now, request.command, out);
        // The handle may have stopped waiting; the route goes anyway.
        let _ = request.reply.send(reply);
    }

    fn on_event(
        &mut self,
        _core: &mut RingState,
        _now: std::time::Instant,
        event: Event,
        _out: &mut Outputs<RingState>,
    ) {
        // No subscriber is no error: events are for whoever listens.
        let _ = self.events.send(event);
    }

    /// Synchronous, before any output that follows: a gateway's grant is
    /// on disk before its challenge leaves. One small record, a few a
    /// minute at most.
    fn perform(
        &mut self,
        _router: &Router,
        effect: StoreEffect,
    ) -> impl std::future::Future<Output = Option<StoreOutcome>> + Send {
        let outcome = self.apply(effect);
        std::future::ready(outcome)
    }

    fn after_step(&mut self, state: &RingState) {
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
    fn the_cores_default_network_is_the_routers() {
        assert_eq!(
            RingConfig::default().network_id,
            p2p::RouterConfig::default().network_id
        );
    }

    #[test]
    fn the_channel_id_is_the_rings() {
        let d = Ring::channel_descriptor();
        assert_eq!(d.id, ChannelId(0x0030));
        assert_eq!(d.validate(), Ok(()));
    }
}
