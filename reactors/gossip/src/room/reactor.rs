//! The rooms reactor: [`RoomsCore`] run on the room channel by
//! `p2p::reactor::driver`, and a shell that does the gossip side through a
//! [`GossipHandle`] (subscriptions forwarded into the request queue,
//! publications as effects) and keeps each room's view for its handles.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use p2p::reactor::{Outputs, Shell, driver};
use p2p::{
    ChannelDescriptor, ChannelError, ChannelId, ChannelReceiver, ChannelSender, Keypair, PeerId,
    Reactor, ReactorContext, Router, RouterBuilder,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::reactor::{GossipError, GossipHandle, TopicEvent};
use crate::room::store::{MemoryRoomStore, RoomStore};
use reactor_gossip_proto::room::{
    ROOM_CHANNEL_ID, ROOM_CHANNEL_NAME, Reducer, RoomConfig, RoomError, RoomId, RoomKeys,
    RoomOpening, RoomState, RoomStats, RoomsCommandError, RoomsCore, RoomsEffect, RoomsEvent,
    RoomsOutcome, StateHash, TopicInput, UpdateId,
};
use reactor_gossip_proto::room_proto as proto;
use reactor_gossip_proto::state::message::Contact;

/// Requests buffered from the handles and the topic subscriptions to the
/// driver.
const REQUEST_BUFFER: usize = 1024;

/// What a room looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomView {
    /// The head's state hash.
    pub hash: StateHash,
    /// Its height.
    pub height: u64,
    /// The state.
    pub state: Bytes,
    /// The write key in force.
    pub write_key: PeerId,
    /// Counters.
    pub stats: RoomStats,
    /// The height of the room's last checkpoint kept in the store (none
    /// yet: nothing saved since the room opened, or restored).
    pub saved_height: Option<u64>,
}

impl RoomView {
    fn of(core: &RoomsCore, room: &RoomId, state: &RoomState) -> Self {
        Self {
            hash: state.hash(),
            height: state.height(),
            state: Bytes::copy_from_slice(state.state()),
            write_key: state.write_key(),
            stats: state.stats().clone(),
            saved_height: core.saved_height(room),
        }
    }
}

/// Why a rooms request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomsError {
    /// The rooms reactor is not running.
    #[error("the rooms reactor is not running")]
    Stopped,
    /// The room is already open on this node.
    #[error("room {0:?} is already open")]
    AlreadyOpen(RoomId),
    /// The room is not open on this node.
    #[error("room {0:?} is not open")]
    NotOpen(RoomId),
    /// Gossip refused (the topic could not be joined).
    #[error(transparent)]
    Gossip(#[from] GossipError),
    /// The room refused the write or rotation.
    #[error(transparent)]
    Room(#[from] RoomError),
}

impl From<RoomsCommandError> for RoomsError {
    fn from(error: RoomsCommandError) -> Self {
        match error {
            RoomsCommandError::AlreadyOpen(room) => Self::AlreadyOpen(room),
            RoomsCommandError::NotOpen(room) => Self::NotOpen(room),
            RoomsCommandError::Room(error) => Self::Room(error),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, RoomsError>>;

/// What the handles and the topic forwarders send the driver.
enum Request {
    Open(Box<(RoomOpening, Reply<RoomHandle>)>),
    Write {
        room: RoomId,
        body: Bytes,
        reply: Reply<UpdateId>,
    },
    Rotate {
        room: RoomId,
        key: PeerId,
        reply: Reply<()>,
    },
    SetWriter {
        room: RoomId,
        key: Option<Keypair>,
        reply: Reply<()>,
    },
    /// An event of a room's topic subscription.
    Topic {
        room: RoomId,
        event: TopicEvent,
    },
}

/// Replicated rooms over gossip: open it next to a [`Gossip`](crate::Gossip)
/// reactor, with that reactor's handle.
pub struct Rooms {
    gossip: GossipHandle,
    config: RoomConfig,
    channel: Option<(
        ChannelSender<proto::RoomMessage>,
        ChannelReceiver<proto::RoomMessage>,
    )>,
    requests: Option<mpsc::Receiver<Request>>,
    request_tx: mpsc::Sender<Request>,
    store: Option<Box<dyn RoomStore>>,
}

impl std::fmt::Debug for Rooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rooms").finish_non_exhaustive()
    }
}

/// Opens rooms. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RoomsHandle {
    requests: mpsc::Sender<Request>,
}

/// One open room: write, rotate, watch the state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RoomHandle {
    room: RoomId,
    requests: mpsc::Sender<Request>,
    view: watch::Receiver<RoomView>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Open(open) => write!(f, "Open({:?})", open.0.keys.room),
            Request::Write { room, body, .. } => write!(f, "Write({room:?}, {} bytes)", body.len()),
            Request::Rotate { room, .. } => write!(f, "Rotate({room:?})"),
            Request::SetWriter { room, .. } => write!(f, "SetWriter({room:?})"),
            Request::Topic { room, event } => write!(f, "Topic({room:?}, {event:?})"),
        }
    }
}

async fn request<T>(
    requests: &mpsc::Sender<Request>,
    make: impl FnOnce(Reply<T>) -> Request,
) -> Result<T, RoomsError> {
    let (reply, rx) = oneshot::channel();
    requests
        .send(make(reply))
        .await
        .map_err(|_| RoomsError::Stopped)?;
    rx.await.map_err(|_| RoomsError::Stopped)?
}

impl RoomsHandle {
    /// Opens the room `keys` with `reducer`, joining its topic through
    /// `bootstrap` (or the connected peers). `writer` is the write key's
    /// secret if this node may write, `admin` the admin key's if it may
    /// rotate. The state is fetched from the first neighbour (a snapshot
    /// or the updates since genesis), then kept up to date.
    pub async fn open<C: Into<Contact>>(
        &self,
        keys: RoomKeys,
        writer: Option<Keypair>,
        admin: Option<Keypair>,
        reducer: Arc<dyn Reducer>,
        bootstrap: impl IntoIterator<Item = C>,
    ) -> Result<RoomHandle, RoomsError> {
        let opening = RoomOpening {
            keys,
            writer,
            admin,
            reducer,
            bootstrap: bootstrap.into_iter().map(Into::into).collect(),
        };
        request(&self.requests, |reply| {
            Request::Open(Box::new((opening, reply)))
        })
        .await
    }
}

impl RoomHandle {
    /// The room.
    pub fn room(&self) -> RoomId {
        self.room
    }

    /// The room now.
    pub fn view(&self) -> RoomView {
        self.view.borrow().clone()
    }

    /// Waits until the room's head changes. Cancel-safe.
    pub async fn changed(&mut self) -> Result<(), RoomsError> {
        self.view.changed().await.map_err(|_| RoomsError::Stopped)
    }

    /// Writes `body` (applied here at once, then broadcast).
    pub async fn write(&self, body: impl Into<Bytes>) -> Result<UpdateId, RoomsError> {
        let (room, body) = (self.room, body.into());
        request(&self.requests, |reply| Request::Write { room, body, reply }).await
    }

    /// Replaces the write key (this node must hold the admin key).
    pub async fn rotate(&self, new_write_key: PeerId) -> Result<(), RoomsError> {
        let room = self.room;
        request(&self.requests, |reply| Request::Rotate {
            room,
            key: new_write_key,
            reply,
        })
        .await
    }

    /// Gives this node the write key's secret (or takes it away).
    pub async fn set_writer(&self, key: Option<Keypair>) -> Result<(), RoomsError> {
        let room = self.room;
        request(&self.requests, |reply| Request::SetWriter {
            room,
            key,
            reply,
        })
        .await
    }
}

impl Rooms {
    /// A rooms reactor using `gossip` for the rooms' topics.
    pub fn new(gossip: GossipHandle, config: RoomConfig) -> Self {
        let (request_tx, requests) = mpsc::channel(REQUEST_BUFFER);
        Self {
            gossip,
            config,
            channel: None,
            requests: Some(requests),
            request_tx,
            store: None,
        }
    }

    /// Keeps the rooms' checkpoints in `store` ([`crate::room::store`]),
    /// read when the reactor starts, so a room opened again after a
    /// restart resumes at its saved head. Without it they are kept in
    /// memory only (gone with the reactor).
    pub fn with_store(mut self, store: Box<dyn RoomStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The room channel: id `0x0021`, priority 1, 8 messages queued per
    /// peer, 8 in flight, frames up to the state cap plus 64 KiB (a
    /// snapshot).
    pub fn channel_descriptor(config: &RoomConfig) -> ChannelDescriptor {
        ChannelDescriptor {
            id: ChannelId(ROOM_CHANNEL_ID),
            name: ROOM_CHANNEL_NAME,
            priority: 1,
            send_queue: 8,
            recv_buffer: 8,
            max_message_size: (config.max_state_size + 64 * 1024)
                .min(p2p::router::MAX_MESSAGE_SIZE),
        }
    }
}

impl Reactor for Rooms {
    type Handle = RoomsHandle;

    fn name(&self) -> &'static str {
        ROOM_CHANNEL_NAME
    }

    fn open(&mut self, router: &mut RouterBuilder) -> Result<RoomsHandle, ChannelError> {
        let channel = router.open_channel(Self::channel_descriptor(&self.config))?;
        self.channel = Some(channel);
        Ok(RoomsHandle {
            requests: self.request_tx.clone(),
        })
    }

    async fn run(self, ctx: ReactorContext) {
        let (Some(channel), Some(requests)) = (self.channel, self.requests) else {
            tracing::warn!("rooms reactor run without being opened; it does nothing");
            return;
        };
        let max_state_size = self.config.max_state_size;
        let core = RoomsCore::new(self.config, ctx.seed);
        let shell = RoomsShell {
            store: self
                .store
                .unwrap_or_else(|| Box::new(MemoryRoomStore::new())),
            max_state_size,
            gossip: self.gossip,
            requests: self.request_tx,
            views: BTreeMap::new(),
            opening: BTreeMap::new(),
        };
        driver::run(core, shell, channel, Some(requests), ctx).await;
    }
}

/// A room's view as its handles see it.
struct View {
    view: watch::Sender<RoomView>,
    /// The head moved since the view was last published.
    moved: bool,
}

/// The rooms reactor's thin part: answers the handles, does the gossip
/// side of each room, publishes the rooms' views after each step.
struct RoomsShell {
    store: Box<dyn RoomStore>,
    max_state_size: usize,
    gossip: GossipHandle,
    /// For the topic forwarders and new rooms' handles.
    requests: mpsc::Sender<Request>,
    views: BTreeMap<RoomId, View>,
    /// Rooms waiting for their topic subscription: the opener's reply and
    /// the view it will get.
    opening: BTreeMap<RoomId, (Reply<RoomHandle>, watch::Receiver<RoomView>)>,
}

impl RoomsShell {
    /// Publishes `room`'s view now.
    fn publish_view(&mut self, core: &RoomsCore, room: RoomId) {
        if let (Some(view), Some(state)) = (self.views.get_mut(&room), core.room(&room)) {
            view.view.send_replace(RoomView::of(core, &room, state));
            view.moved = false;
        }
    }
}

impl Shell<RoomsCore> for RoomsShell {
    type Request = Request;

    /// Hands the core the checkpoints kept before the restart.
    fn on_start(&mut self, core: &mut RoomsCore, _now: Instant, _out: &mut Outputs<RoomsCore>) {
        match self.store.load(self.max_state_size) {
            Ok(loaded) => {
                for corrupt in &loaded.corrupt {
                    tracing::warn!(key = %corrupt.key, error = %corrupt.error, "room store: a checkpoint does not read; its room starts from genesis");
                }
                core.restore(loaded.checkpoints);
            }
            Err(error) => {
                tracing::warn!(%error, "room store unreadable; rooms start from genesis");
            }
        }
    }

    fn on_request(
        &mut self,
        core: &mut RoomsCore,
        now: Instant,
        request: Request,
        out: &mut Outputs<RoomsCore>,
    ) {
        match request {
            Request::Open(open) => {
                let (opening, reply) = *open;
                let room = opening.keys.room;
                match core.open(now, opening, out) {
                    Ok(()) => {
                        let Some(state) = core.room(&room) else {
                            return;
                        };
                        let (view, view_rx) = watch::channel(RoomView::of(core, &room, state));
                        self.views.insert(room, View { view, moved: false });
                        self.opening.insert(room, (reply, view_rx));
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error.into()));
                    }
                }
            }
            Request::Write { room, body, reply } => {
                let result = core.write(now, room, body, out);
                if result.is_ok() {
                    // The writer sees its write in the view as soon as the
                    // write returns.
                    self.publish_view(core, room);
                }
                let _ = reply.send(result.map_err(RoomsError::from));
            }
            Request::Rotate { room, key, reply } => {
                let result = core.rotate(now, room, key, out);
                let _ = reply.send(result.map_err(RoomsError::from));
            }
            Request::SetWriter { room, key, reply } => {
                let _ = reply.send(core.set_writer(room, key).map_err(RoomsError::from));
            }
            Request::Topic { room, event } => {
                let input = match event {
                    TopicEvent::Received(message) => TopicInput::Update {
                        origin: message.origin,
                        payload: message.payload,
                    },
                    TopicEvent::NeighborUp(peer) => TopicInput::NeighborUp(peer),
                    TopicEvent::NeighborDown(peer) => TopicInput::NeighborDown(peer),
                    // Missed updates come back through the head exchange.
                    TopicEvent::Lagged(_) => return,
                };
                // A room closed meanwhile: its events are dropped.
                let _ = core.on_topic(now, room, input, out);
            }
        }
    }

    fn on_event(
        &mut self,
        _core: &mut RoomsCore,
        _now: Instant,
        event: RoomsEvent,
        _out: &mut Outputs<RoomsCore>,
    ) {
        match event {
            RoomsEvent::HeadChanged { room, .. } => {
                if let Some(view) = self.views.get_mut(&room) {
                    view.moved = true;
                }
            }
            RoomsEvent::Closed(room) => {
                self.views.remove(&room);
            }
            RoomsEvent::Restored { room, height, .. } => {
                tracing::info!(%room, height, "room restored from its checkpoint");
            }
            RoomsEvent::RestoreRefused { room, reason } => {
                tracing::warn!(%room, %reason, "room checkpoint refused; the room starts from genesis");
            }
        }
    }

    async fn perform(&mut self, _router: &Router, effect: RoomsEffect) -> Option<RoomsOutcome> {
        match effect {
            RoomsEffect::Subscribe { room, bootstrap } => {
                let subscribed = self.gossip.subscribe(room.topic(), bootstrap).await;
                let pending = self.opening.remove(&room);
                let joined = match subscribed {
                    Ok(mut subscription) => {
                        let requests = self.requests.clone();
                        // Forwards the subscription's events to the
                        // driver; ends with the subscription or the
                        // driver.
                        tokio::spawn(async move {
                            while let Some(event) = subscription.recv().await {
                                if requests.send(Request::Topic { room, event }).await.is_err() {
                                    break;
                                }
                            }
                        });
                        if let Some((reply, view)) = pending {
                            let _ = reply.send(Ok(RoomHandle {
                                room,
                                requests: self.requests.clone(),
                                view,
                            }));
                        }
                        true
                    }
                    Err(error) => {
                        if let Some((reply, _)) = pending {
                            let _ = reply.send(Err(error.into()));
                        }
                        false
                    }
                };
                Some(RoomsOutcome::Subscribed { room, joined })
            }
            RoomsEffect::Publish { room, payload } => {
                if let Err(error) = self.gossip.publish(room.topic(), payload).await {
                    tracing::debug!(%error, "room update not published");
                }
                None
            }
            // Synchronous, before any output that follows: one record per
            // room and `persist_interval` at most.
            RoomsEffect::Save {
                room,
                hash,
                height,
                record,
            } => {
                let ok = match self.store.save(&room, &record) {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::warn!(%room, height, %error, "room checkpoint not saved; retried later");
                        false
                    }
                };
                Some(RoomsOutcome::Saved {
                    room,
                    hash,
                    height,
                    ok,
                })
            }
        }
    }

    fn after_step(&mut self, core: &RoomsCore) {
        for (room, view) in &mut self.views {
            let Some(state) = core.room(room) else {
                continue;
            };
            if std::mem::take(&mut view.moved) {
                view.view.send_replace(RoomView::of(core, room, state));
            } else {
                let saved_height = core.saved_height(room);
                view.view.send_if_modified(|published| {
                    let stale =
                        published.stats != *state.stats() || published.saved_height != saved_height;
                    if stale {
                        published.stats = state.stats().clone();
                        published.saved_height = saved_height;
                    }
                    stale
                });
            }
        }
    }
}
