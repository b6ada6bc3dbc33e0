//! The gossip reactor: [`GossipState`] run on the router by
//! `p2p::reactor::driver`, with a thin shell (`GossipShell`) — the
//! application's handles ([`GossipHandle`], [`Subscription`]), the
//! subscriptions' buffers and the published counters.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use p2p::reactor::{Outputs, Shell, driver, now, unix_time};
use p2p::{
    ChannelDescriptor, ChannelError, ChannelId, ChannelReceiver, ChannelSender, PeerId, Reactor,
    ReactorContext, RouterBuilder,
};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot, watch};

use crate::stats::{GossipCollector, GossipStats};
use reactor_gossip_proto::config::{GossipConfig, GossipConfigError, MESSAGE_OVERHEAD};
use reactor_gossip_proto::proto;
use reactor_gossip_proto::state::message::{Contact, MessageId, TopicId};
use reactor_gossip_proto::state::{Event, GossipState, JoinError, PublishError};
use reactor_gossip_proto::{CHANNEL_ID, CHANNEL_NAME};

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

/// What the handles ask the driver (the shell's requests).
enum Request {
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
    commands: Option<mpsc::Receiver<Request>>,
    command_tx: mpsc::Sender<Request>,
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
    commands: mpsc::Sender<Request>,
    stats: watch::Receiver<GossipStats>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Subscribe { topic, .. } => write!(f, "Subscribe({topic:?})"),
            Request::Unsubscribe { topic, .. } => write!(f, "Unsubscribe({topic:?})"),
            Request::Publish { topic, payload, .. } => {
                write!(f, "Publish({topic:?}, {} bytes)", payload.len())
            }
            Request::SizeEstimate { topic, .. } => write!(f, "SizeEstimate({topic:?})"),
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

impl GossipHandle {
    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
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
        self.request(|reply| Request::Subscribe {
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
        self.request(|reply| Request::Unsubscribe { topic, reply })
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
            .request(|reply| Request::Publish {
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
        self.request(|reply| Request::SizeEstimate { topic, reply })
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
        let unix_ms = u64::try_from(unix_time().as_millis()).unwrap_or(u64::MAX);
        let addresses = ctx.router.listen_addresses().to_vec();
        let core = GossipState::new(
            self.keypair,
            addresses,
            self.config,
            ctx.seed,
            now(),
            unix_ms,
        );
        let shell = GossipShell {
            stats: self.stats,
            subscribers: BTreeMap::new(),
            events_dropped: 0,
        };
        driver::run(core, shell, (tx, rx), Some(commands), ctx).await;
    }
}

struct Subscriber {
    events: mpsc::Sender<TopicEvent>,
    /// Events dropped since the last one that got through.
    lagged: u64,
}

/// The gossip reactor's thin part: answers the handles, hands the core's
/// events to the subscriptions (leaving a topic nobody reads any more)
/// and publishes the counters after each step.
struct GossipShell {
    stats: watch::Sender<GossipStats>,
    subscribers: BTreeMap<TopicId, Vec<Subscriber>>,
    /// Events dropped because a subscription was full.
    events_dropped: u64,
}

impl GossipShell {
    /// Hands `event` to `topic`'s subscriptions, never waiting; whether
    /// any subscription is left.
    fn notify(&mut self, topic: TopicId, event: TopicEvent) -> bool {
        let Some(subscribers) = self.subscribers.get_mut(&topic) else {
            // Not subscribed (a topic being left): nothing to leave.
            return true;
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
            return false;
        }
        true
    }
}

impl Shell<GossipState> for GossipShell {
    type Request = Request;

    fn on_request(
        &mut self,
        core: &mut GossipState,
        now: Instant,
        request: Request,
        out: &mut Outputs<GossipState>,
    ) {
        match request {
            Request::Subscribe {
                topic,
                bootstrap,
                events,
                reply,
            } => {
                let joined = core.join(topic, bootstrap, now, out);
                if joined.is_ok() {
                    self.subscribers
                        .entry(topic)
                        .or_default()
                        .push(Subscriber { events, lagged: 0 });
                }
                let _ = reply.send(joined);
            }
            Request::Unsubscribe { topic, reply } => {
                self.subscribers.remove(&topic);
                core.leave(topic, now, out);
                let _ = reply.send(());
            }
            Request::Publish {
                topic,
                payload,
                reply,
            } => {
                let _ = reply.send(core.publish(topic, payload, now, out));
            }
            Request::SizeEstimate { topic, reply } => {
                let _ = reply.send(core.size_estimate(&topic));
            }
        }
    }

    fn on_event(
        &mut self,
        core: &mut GossipState,
        now: Instant,
        event: Event,
        out: &mut Outputs<GossipState>,
    ) {
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
            Event::NeighborDown { topic, peer } => (topic, TopicEvent::NeighborDown(peer)),
        };
        if !self.notify(topic, event) {
            core.leave(topic, now, out);
        }
    }

    fn after_step(&mut self, core: &GossipState) {
        let mut stats = core.stats().clone();
        stats.app_events_dropped = self.events_dropped;
        self.stats.send_if_modified(|published| {
            let changed = *published != stats;
            if changed {
                *published = stats;
            }
            changed
        });
    }
}
