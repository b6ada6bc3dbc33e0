//! The driver: connects [`GossipState`] to the gossip channel, the
//! router's peer updates, a timer and the [`GossipHandle`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use p2p::{
    AddressSource, ChannelDescriptor, ChannelError, ChannelId, ChannelReceiver, ChannelSender,
    PeerAddress, PeerError, PeerId, PeerStatus, PeerUpdate, PeerUpdatesError, Reactor,
    ReactorContext, Router, RouterBuilder, SendError, TrySendError,
};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{GossipConfig, GossipConfigError, MESSAGE_OVERHEAD};
use crate::proto;
use crate::state::message::{Contact, MessageId, TopicId, TopicMessage, WireError};
use crate::state::{Action, Event, GossipState, JoinError, PublishError};
use crate::stats::{GossipCollector, GossipStats};
use crate::{CHANNEL_ID, CHANNEL_NAME};

/// Events buffered per subscription; beyond, events are dropped (counted
/// in [`GossipStats::app_events_dropped`]) and the subscription is told
/// with [`TopicEvent::Lagged`].
pub const SUBSCRIPTION_BUFFER: usize = 1024;
/// Commands buffered from the handles to the driver.
const COMMAND_BUFFER: usize = 256;

/// What a subscription receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicEvent {
    /// A message published on the topic by another node, delivered at most
    /// once.
    Received(GossipMessage),
    /// A peer became one of this node's neighbours in the topic.
    NeighborUp(PeerId),
    /// A neighbour left.
    NeighborDown(PeerId),
    /// This many events were dropped because the subscription was not read
    /// fast enough.
    Lagged(u64),
}

/// A message delivered to a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipMessage {
    /// Who published it (its signature was checked).
    pub origin: PeerId,
    /// The application's bytes.
    pub payload: Bytes,
    /// The message's id.
    pub id: MessageId,
    /// Links it travelled to reach this node.
    pub hops: u32,
    /// The origin's clock when it published (ms since the Unix epoch).
    pub timestamp_ms: u64,
}

/// Why a handle's request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GossipError {
    /// The reactor is not running (not started yet, or stopped).
    #[error("the gossip reactor is not running")]
    Stopped,
    /// The topic could not be joined.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// The message could not be published.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

enum Command {
    Subscribe {
        topic: TopicId,
        bootstrap: Vec<Contact>,
        events: mpsc::Sender<TopicEvent>,
        reply: oneshot::Sender<Result<(), JoinError>>,
    },
    Unsubscribe {
        topic: TopicId,
        reply: oneshot::Sender<()>,
    },
    Publish {
        topic: TopicId,
        payload: Bytes,
        reply: oneshot::Sender<Result<MessageId, PublishError>>,
    },
    SizeEstimate {
        topic: TopicId,
        reply: oneshot::Sender<Option<f64>>,
    },
}

/// The gossip reactor. Open it on a node (or in the testkit) and keep its
/// [`GossipHandle`].
///
/// ```no_run
/// # async fn example(builder: &mut p2p::RouterBuilder) -> Result<(), Box<dyn std::error::Error>> {
/// use reactor_gossip::{Gossip, GossipConfig, TopicEvent, TopicId};
///
/// let keypair = p2p::Keypair::generate();
/// let gossip = Gossip::new(keypair, GossipConfig::default())?;
/// let (handle, opened) = p2p::OpenedReactor::open(gossip, builder)?;
/// // ... start the router, then `opened.spawn(ctx)` ...
/// let topic = TopicId::from_name("chat");
/// let mut subscription = handle.subscribe(topic, Vec::<p2p::PeerId>::new()).await?;
/// handle.publish(topic, "hello").await?;
/// while let Some(event) = subscription.recv().await {
///     if let TopicEvent::Received(message) = event {
///         println!("{}: {:?}", message.origin.short(), message.payload);
///     }
/// }
/// # Ok(()) }
/// ```
pub struct Gossip {
    keypair: p2p::Keypair,
    config: GossipConfig,
    channel: Option<(
        ChannelSender<proto::GossipMessage>,
        ChannelReceiver<proto::GossipMessage>,
    )>,
    commands: Option<mpsc::Receiver<Command>>,
    command_tx: mpsc::Sender<Command>,
    stats: watch::Sender<GossipStats>,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip")
            .field("peer", &self.keypair.peer_id())
            .finish_non_exhaustive()
    }
}

/// What the application keeps of a running [`Gossip`]: subscribe,
/// publish, counters. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GossipHandle {
    commands: mpsc::Sender<Command>,
    stats: watch::Receiver<GossipStats>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Subscribe { topic, .. } => write!(f, "Subscribe({topic:?})"),
            Command::Unsubscribe { topic, .. } => write!(f, "Unsubscribe({topic:?})"),
            Command::Publish { topic, payload, .. } => {
                write!(f, "Publish({topic:?}, {} bytes)", payload.len())
            }
            Command::SizeEstimate { topic, .. } => write!(f, "SizeEstimate({topic:?})"),
        }
    }
}

/// A subscription to a topic: its messages and neighbour changes. When it
/// and every other subscription of the topic are dropped, the node leaves
/// the topic at the next event for it.
#[derive(Debug)]
pub struct Subscription {
    topic: TopicId,
    events: mpsc::Receiver<TopicEvent>,
}

impl Subscription {
    /// The topic.
    pub fn topic(&self) -> TopicId {
        self.topic
    }

    /// The next event, or `None` once the reactor stopped or the topic was
    /// unsubscribed. Cancel-safe.
    pub async fn recv(&mut self) -> Option<TopicEvent> {
        self.events.recv().await
    }

    /// The next event if one is waiting; never waits.
    pub fn try_recv(&mut self) -> Option<TopicEvent> {
        self.events.try_recv().ok()
    }
}

impl From<PeerId> for Contact {
    /// A peer to reach over its existing connection (or whatever address
    /// the router knows).
    fn from(peer: PeerId) -> Self {
        Contact::bare(peer)
    }
}

impl From<PeerAddress> for Contact {
    fn from(address: PeerAddress) -> Self {
        Contact {
            peer: address.peer,
            addresses: vec![address],
        }
    }
}

impl GossipHandle {
    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, GossipError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)
    }

    /// Subscribes to `topic`, joining its overlay through `bootstrap`
    /// (members, or peers that may be; PeerIds of connected peers or
    /// addresses). With no bootstrap, the node joins through its connected
    /// peers that serve gossip, and keeps trying every
    /// `join_retry_interval` while it has no neighbour in the topic.
    /// Several subscriptions to one topic each get every event.
    pub async fn subscribe<C: Into<Contact>>(
        &self,
        topic: TopicId,
        bootstrap: impl IntoIterator<Item = C>,
    ) -> Result<Subscription, GossipError> {
        let (events, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
        let bootstrap = bootstrap.into_iter().map(Into::into).collect();
        self.request(|reply| Command::Subscribe {
            topic,
            bootstrap,
            events,
            reply,
        })
        .await??;
        Ok(Subscription { topic, events: rx })
    }

    /// Leaves `topic`: every subscription of it ends.
    pub async fn unsubscribe(&self, topic: TopicId) -> Result<(), GossipError> {
        self.request(|reply| Command::Unsubscribe { topic, reply })
            .await
    }

    /// Publishes `payload` on `topic` (which must be subscribed), signed by
    /// this node. Returns the message's id once it is handed to the
    /// neighbours' send queues. This node's own subscriptions do not
    /// receive it.
    pub async fn publish(
        &self,
        topic: TopicId,
        payload: impl Into<Bytes>,
    ) -> Result<MessageId, GossipError> {
        let payload = payload.into();
        Ok(self
            .request(|reply| Command::Publish {
                topic,
                payload,
                reply,
            })
            .await??)
    }

    /// The estimated number of `topic`'s members, this node included
    /// (`None` if not subscribed or estimation is off). See
    /// [`crate::state::estimate`]: about 9 % error, refreshed every
    /// `estimate_epoch`.
    pub async fn size_estimate(&self, topic: TopicId) -> Result<Option<f64>, GossipError> {
        self.request(|reply| Command::SizeEstimate { topic, reply })
            .await
    }

    /// What gossip has done so far (sent, delivered, refused by reason).
    pub fn stats(&self) -> GossipStats {
        self.stats.borrow().clone()
    }
}

impl Gossip {
    /// A gossip reactor signing as `keypair` (the node's identity: peers
    /// check that a message's origin signed it), refused if the config is
    /// invalid.
    pub fn new(keypair: p2p::Keypair, config: GossipConfig) -> Result<Self, GossipConfigError> {
        config.validate()?;
        let (command_tx, commands) = mpsc::channel(COMMAND_BUFFER);
        Ok(Self {
            keypair,
            config,
            channel: None,
            commands: Some(commands),
            command_tx,
            stats: watch::Sender::new(GossipStats::default()),
        })
    }

    /// The gossip channel for `config`: id `0x0020`, priority 2, 256
    /// messages queued per peer (a burst of eager pushes), 128 in flight
    /// from each peer, frames up to `max_payload_size` +
    /// [`MESSAGE_OVERHEAD`].
    pub fn channel_descriptor(config: &GossipConfig) -> ChannelDescriptor {
        ChannelDescriptor {
            id: ChannelId(CHANNEL_ID),
            name: CHANNEL_NAME,
            priority: 2,
            send_queue: 256,
            recv_buffer: 128,
            max_message_size: config.max_payload_size + MESSAGE_OVERHEAD,
        }
    }
}

impl Reactor for Gossip {
    type Handle = GossipHandle;

    fn name(&self) -> &'static str {
        CHANNEL_NAME
    }

    fn open(&mut self, router: &mut RouterBuilder) -> Result<GossipHandle, ChannelError> {
        let channel =
            router.open_channel::<proto::GossipMessage>(Self::channel_descriptor(&self.config))?;
        self.channel = Some(channel);
        Ok(GossipHandle {
            commands: self.command_tx.clone(),
            stats: self.stats.subscribe(),
        })
    }

    fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(GossipCollector {
            stats: self.stats.subscribe(),
        }));
    }

    async fn run(self, ctx: ReactorContext) {
        let (Some((tx, rx)), Some(commands)) = (self.channel, self.commands) else {
            tracing::warn!("gossip reactor run without being opened; it does nothing");
            return;
        };
        drop(self.command_tx);
        if self.keypair.peer_id() != ctx.router.local_peer_id() {
            tracing::warn!(
                gossip = %self.keypair.peer_id().short(),
                node = %ctx.router.local_peer_id().short(),
                "gossip signs with a key that is not the node's: messages' origin will not be the node's PeerId"
            );
        }
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let addresses = ctx.router.listen_addresses().to_vec();
        let state = GossipState::new(
            self.keypair,
            addresses,
            self.config,
            ctx.seed,
            now(),
            unix_ms,
        );
        let driver = Driver {
            router: ctx.router,
            tx,
            state,
            stats: self.stats,
            subscribers: BTreeMap::new(),
            send_failures: 0,
            events_dropped: 0,
        };
        driver.run(rx, commands, ctx.shutdown).await;
    }
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

struct Subscriber {
    events: mpsc::Sender<TopicEvent>,
    /// Events dropped since the last one that got through.
    lagged: u64,
}

struct Driver {
    router: Router,
    tx: ChannelSender<proto::GossipMessage>,
    state: GossipState,
    stats: watch::Sender<GossipStats>,
    subscribers: BTreeMap<TopicId, Vec<Subscriber>>,
    send_failures: u64,
    events_dropped: u64,
}

impl Driver {
    async fn run(
        mut self,
        mut rx: ChannelReceiver<proto::GossipMessage>,
        commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) {
        let mut updates = self.router.subscribe();
        let mut commands = Some(commands);
        let actions = self.resync();
        self.execute(actions).await;
        loop {
            let wake = tokio::time::Instant::from_std(self.state.next_wakeup());
            let actions = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                command = recv_command(&mut commands) => match command {
                    Some(command) => self.on_command(command),
                    // Every handle is gone: keep serving the overlay.
                    None => { commands = None; Vec::new() }
                },
                update = updates.recv() => match update {
                    Ok(update) => self.on_update(update),
                    Err(PeerUpdatesError::Lagged(missed)) => {
                        tracing::debug!(missed, "gossip lagged behind peer updates; resynchronising");
                        self.resync()
                    }
                    Err(PeerUpdatesError::Closed) => break,
                },
                envelope = rx.recv() => match envelope {
                    Some(envelope) => self.on_envelope(envelope.from, envelope.message),
                    None => break,
                },
                _ = tokio::time::sleep_until(wake) => self.state.on_tick(now()),
            };
            self.execute(actions).await;
            self.publish_stats();
        }
    }

    fn publish_stats(&self) {
        let mut stats = self.state.stats().clone();
        stats.send_failures = self.send_failures;
        stats.app_events_dropped = self.events_dropped;
        self.stats.send_if_modified(|published| {
            let changed = *published != stats;
            if changed {
                *published = stats;
            }
            changed
        });
    }

    fn serves_gossip(&self, peer: PeerId) -> bool {
        self.router
            .peer_info(peer)
            .is_some_and(|info| info.channels.iter().any(|c| c.id == u32::from(CHANNEL_ID)))
    }

    fn addresses_of(&self, peer: PeerId) -> Vec<PeerAddress> {
        self.router
            .peer_info(peer)
            .map(|info| {
                info.listen_addresses
                    .iter()
                    .filter_map(|a| a.parse::<PeerAddress>().ok())
                    .filter(|a| a.peer == peer)
                    .take(crate::state::message::MAX_CONTACT_ADDRESSES)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn on_update(&mut self, update: PeerUpdate) -> Vec<Action> {
        match update.status {
            PeerStatus::Up { channels, .. } => {
                if channels.contains(&ChannelId(CHANNEL_ID)) {
                    let addresses = self.addresses_of(update.peer);
                    self.state.on_peer_up(update.peer, addresses, now())
                } else {
                    Vec::new()
                }
            }
            PeerStatus::Down { .. } => self.state.on_peer_down(update.peer, now()),
        }
    }

    /// Brings the core in line with the router's connected peers, after
    /// missed updates (or at start).
    fn resync(&mut self) -> Vec<Action> {
        let connected: BTreeSet<PeerId> = self
            .router
            .connected_peers()
            .into_iter()
            .filter(|p| self.serves_gossip(*p))
            .collect();
        let known: BTreeSet<PeerId> = self.state.connected_peers().collect();
        let mut actions = Vec::new();
        for gone in known.difference(&connected) {
            actions.extend(self.state.on_peer_down(*gone, now()));
        }
        for new in connected.difference(&known) {
            let addresses = self.addresses_of(*new);
            actions.extend(self.state.on_peer_up(*new, addresses, now()));
        }
        actions
    }

    fn on_envelope(&mut self, from: PeerId, wire: proto::GossipMessage) -> Vec<Action> {
        let max = self.state.config().max_payload_size;
        match TopicMessage::from_wire(wire, max) {
            Ok(Some(message)) => self.state.on_message(from, message, now()),
            Ok(None) => Vec::new(),
            Err(error) => {
                let oversized = matches!(error, WireError::TooLarge { .. });
                self.state.on_refused(oversized);
                let report = match error {
                    WireError::TooLarge { size, max } => PeerError::MessageTooLarge {
                        channel: CHANNEL_NAME,
                        size,
                        max,
                    },
                    WireError::Malformed(detail) => PeerError::MalformedMessage {
                        channel: CHANNEL_NAME,
                        detail,
                    },
                };
                vec![Action::Report {
                    peer: from,
                    error: report,
                }]
            }
        }
    }

    fn on_command(&mut self, command: Command) -> Vec<Action> {
        match command {
            Command::Subscribe {
                topic,
                bootstrap,
                events,
                reply,
            } => {
                let bootstrap = bootstrap
                    .into_iter()
                    .map(|mut c| {
                        if c.addresses.is_empty() {
                            c.addresses = self.addresses_of(c.peer);
                        }
                        c
                    })
                    .collect();
                match self.state.join(topic, bootstrap, now()) {
                    Ok(actions) => {
                        self.subscribers
                            .entry(topic)
                            .or_default()
                            .push(Subscriber { events, lagged: 0 });
                        let _ = reply.send(Ok(()));
                        actions
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error));
                        Vec::new()
                    }
                }
            }
            Command::Unsubscribe { topic, reply } => {
                self.subscribers.remove(&topic);
                let actions = self.state.leave(topic, now());
                let _ = reply.send(());
                actions
            }
            Command::Publish {
                topic,
                payload,
                reply,
            } => match self.state.publish(topic, payload, now()) {
                Ok((id, actions)) => {
                    let _ = reply.send(Ok(id));
                    actions
                }
                Err(error) => {
                    let _ = reply.send(Err(error));
                    Vec::new()
                }
            },
            Command::SizeEstimate { topic, reply } => {
                let _ = reply.send(self.state.size_estimate(&topic));
                Vec::new()
            }
        }
    }

    /// Hands `event` to `topic`'s subscriptions; leaves the topic when all
    /// of them are gone.
    fn notify(&mut self, topic: TopicId, event: TopicEvent) -> Vec<Action> {
        let Some(subscribers) = self.subscribers.get_mut(&topic) else {
            return Vec::new();
        };
        subscribers.retain(|s| !s.events.is_closed());
        for subscriber in subscribers.iter_mut() {
            if subscriber.lagged > 0 {
                match subscriber
                    .events
                    .try_send(TopicEvent::Lagged(subscriber.lagged))
                {
                    Ok(()) => subscriber.lagged = 0,
                    Err(_) => {
                        subscriber.lagged += 1;
                        self.events_dropped += 1;
                        continue;
                    }
                }
            }
            if subscriber.events.try_send(event.clone()).is_err() {
                subscriber.lagged += 1;
                self.events_dropped += 1;
            }
        }
        if subscribers.is_empty() {
            self.subscribers.remove(&topic);
            return self.state.leave(topic, now());
        }
        Vec::new()
    }

    /// Carries out `actions` and whatever they lead to. Sends never wait:
    /// a full queue drops the message (the router counts it; Plumtree's
    /// announcements and grafts recover a lost payload).
    async fn execute(&mut self, actions: Vec<Action>) {
        let mut queue = VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Send { to, message } => match self.tx.try_send(to, message.into()) {
                    Ok(()) => {}
                    Err(TrySendError::Send(SendError::NotConnected(_)))
                    | Err(TrySendError::Send(SendError::Unsupported { .. })) => {
                        self.send_failures += 1;
                        queue.extend(self.state.on_peer_down(to, now()));
                    }
                    Err(error) => {
                        self.send_failures += 1;
                        tracing::debug!(peer = %to.short(), %error, "gossip message not sent");
                    }
                },
                Action::Connect { peer, addresses } => {
                    if self.router.is_connected(peer) && self.serves_gossip(peer) {
                        let addresses = self.addresses_of(peer);
                        queue.extend(self.state.on_peer_up(peer, addresses, now()));
                    } else if !addresses.is_empty() {
                        // A reactor's request: the peer manager dials it
                        // first, past the ordinary outbound slots (up to
                        // `max_requested_outbound`); if it never comes up,
                        // the core gives up after `dial_timeout`.
                        if self
                            .router
                            .connect(addresses, AddressSource::Exchange)
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                Action::Disconnect { peer } => {
                    if self.router.disconnect(peer, None).await.is_err() {
                        return;
                    }
                }
                Action::Report { peer, error } => {
                    tracing::debug!(peer = %peer.short(), %error, "gossip reports peer");
                    self.tx.report(peer, error);
                }
                Action::Event(event) => {
                    let (topic, event) = match event {
                        Event::Received(d) => (
                            d.topic,
                            TopicEvent::Received(GossipMessage {
                                origin: d.origin,
                                payload: d.payload,
                                id: d.id,
                                hops: d.hops,
                                timestamp_ms: d.timestamp_ms,
                            }),
                        ),
                        Event::NeighborUp { topic, peer } => (topic, TopicEvent::NeighborUp(peer)),
                        Event::NeighborDown { topic, peer } => {
                            (topic, TopicEvent::NeighborDown(peer))
                        }
                    };
                    queue.extend(self.notify(topic, event));
                }
            }
        }
    }
}

async fn recv_command(commands: &mut Option<mpsc::Receiver<Command>>) -> Option<Command> {
    match commands {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
