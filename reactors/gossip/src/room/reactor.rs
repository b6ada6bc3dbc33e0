//! The rooms driver: room cores fed by a [`GossipHandle`] (updates on each
//! room's topic, neighbours) and by the room channel (heads, catch-up,
//! snapshots between neighbours).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use p2p::{
    ChannelDescriptor, ChannelError, ChannelId, ChannelReceiver, ChannelSender, Keypair, PeerError,
    PeerId, Reactor, ReactorContext, RouterBuilder,
};
use prost::Message as _;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::reactor::{GossipError, GossipHandle, TopicEvent};
use crate::room::chain::{Reducer, RoomAction, RoomConfig, RoomError, RoomState, RoomStats};
use crate::room::update::{RoomId, RoomKeys, StateHash, UpdateId};
use crate::room::wire;
use crate::room_proto as proto;
use crate::state::message::{Contact, WireError};

/// The room channel's id.
pub const ROOM_CHANNEL_ID: u16 = 0x0021;
/// The room channel's name.
pub const ROOM_CHANNEL_NAME: &str = "gossip-room";
/// Topic events buffered from the gossip subscriptions to the driver.
const EVENT_BUFFER: usize = 1024;

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

struct OpenRoom {
    keys: RoomKeys,
    writer: Option<Keypair>,
    admin: Option<Keypair>,
    reducer: Arc<dyn Reducer>,
    bootstrap: Vec<Contact>,
    reply: oneshot::Sender<Result<RoomHandle, RoomsError>>,
}

enum Command {
    Open(Box<OpenRoom>),
    Write {
        room: RoomId,
        body: Bytes,
        reply: oneshot::Sender<Result<UpdateId, RoomsError>>,
    },
    Rotate {
        room: RoomId,
        key: PeerId,
        reply: oneshot::Sender<Result<(), RoomsError>>,
    },
    SetWriter {
        room: RoomId,
        key: Option<Keypair>,
        reply: oneshot::Sender<Result<(), RoomsError>>,
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
    commands: Option<mpsc::Receiver<Command>>,
    command_tx: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Rooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rooms").finish_non_exhaustive()
    }
}

/// Opens rooms. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RoomsHandle {
    commands: mpsc::Sender<Command>,
}

/// One open room: write, rotate, watch the state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RoomHandle {
    room: RoomId,
    commands: mpsc::Sender<Command>,
    view: watch::Receiver<RoomView>,
}

async fn request<T>(
    commands: &mpsc::Sender<Command>,
    make: impl FnOnce(oneshot::Sender<Result<T, RoomsError>>) -> Command,
) -> Result<T, RoomsError> {
    let (reply, rx) = oneshot::channel();
    commands
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
        let bootstrap = bootstrap.into_iter().map(Into::into).collect();
        request(&self.commands, |reply| {
            Command::Open(Box::new(OpenRoom {
                keys,
                writer,
                admin,
                reducer,
                bootstrap,
                reply,
            }))
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
        request(&self.commands, |reply| Command::Write { room, body, reply }).await
    }

    /// Replaces the write key (this node must hold the admin key).
    pub async fn rotate(&self, new_write_key: PeerId) -> Result<(), RoomsError> {
        let room = self.room;
        request(&self.commands, |reply| Command::Rotate {
            room,
            key: new_write_key,
            reply,
        })
        .await
    }

    /// Gives this node the write key's secret (or takes it away).
    pub async fn set_writer(&self, key: Option<Keypair>) -> Result<(), RoomsError> {
        let room = self.room;
        request(&self.commands, |reply| Command::SetWriter {
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
        let (command_tx, commands) = mpsc::channel(64);
        Self {
            gossip,
            config,
            channel: None,
            commands: Some(commands),
            command_tx,
        }
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
            commands: self.command_tx.clone(),
        })
    }

    async fn run(self, ctx: ReactorContext) {
        let (Some((tx, rx)), Some(commands)) = (self.channel, self.commands) else {
            tracing::warn!("rooms reactor run without being opened; it does nothing");
            return;
        };
        let (events_tx, events) = mpsc::channel(EVENT_BUFFER);
        let driver = Driver {
            gossip: self.gossip,
            config: self.config,
            tx,
            rooms: BTreeMap::new(),
            events_tx,
            command_tx: self.command_tx,
            seed: ctx.seed,
            turn: 0,
        };
        driver.run(rx, commands, events, ctx.shutdown).await;
    }
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

struct Entry {
    core: RoomState,
    neighbours: Vec<PeerId>,
    view: watch::Sender<RoomView>,
}

impl Entry {
    fn publish_view(&self) {
        let view = RoomView {
            hash: self.core.hash(),
            height: self.core.height(),
            state: Bytes::copy_from_slice(self.core.state()),
            write_key: self.core.write_key(),
            stats: self.core.stats().clone(),
        };
        self.view.send_replace(view);
    }
}

struct Driver {
    gossip: GossipHandle,
    config: RoomConfig,
    tx: ChannelSender<proto::RoomMessage>,
    rooms: BTreeMap<RoomId, Entry>,
    events_tx: mpsc::Sender<(RoomId, TopicEvent)>,
    command_tx: mpsc::Sender<Command>,
    seed: u64,
    turn: usize,
}

impl Driver {
    async fn run(
        mut self,
        mut rx: ChannelReceiver<proto::RoomMessage>,
        mut commands: mpsc::Receiver<Command>,
        mut events: mpsc::Receiver<(RoomId, TopicEvent)>,
        shutdown: CancellationToken,
    ) {
        loop {
            let wake = self
                .rooms
                .values()
                .map(|e| e.core.next_wakeup())
                .min()
                .map(tokio::time::Instant::from_std);
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(command) = commands.recv() => self.on_command(command).await,
                Some((room, event)) = events.recv() => self.on_event(room, event).await,
                envelope = rx.recv() => match envelope {
                    Some(envelope) => self.on_envelope(envelope.from, envelope.message).await,
                    None => break,
                },
                _ = sleep => self.on_tick().await,
            }
        }
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Open(open) => {
                let OpenRoom {
                    keys,
                    writer,
                    admin,
                    reducer,
                    bootstrap,
                    reply,
                } = *open;
                let _ = reply.send(self.open(keys, writer, admin, reducer, bootstrap).await);
            }
            Command::Write { room, body, reply } => {
                let result = match self.rooms.get_mut(&room) {
                    None => Err(RoomsError::NotOpen(room)),
                    Some(entry) => entry.core.write(body, now()).map_err(RoomsError::from),
                };
                match result {
                    Ok((id, actions)) => {
                        // The writer sees its write in the view as soon as
                        // the write returns.
                        if let Some(entry) = self.rooms.get(&room) {
                            entry.publish_view();
                        }
                        let _ = reply.send(Ok(id));
                        self.execute(room, actions).await;
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Rotate { room, key, reply } => {
                let result = match self.rooms.get_mut(&room) {
                    None => Err(RoomsError::NotOpen(room)),
                    Some(entry) => entry.core.rotate(key, now()).map_err(RoomsError::from),
                };
                match result {
                    Ok(actions) => {
                        let _ = reply.send(Ok(()));
                        self.execute(room, actions).await;
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::SetWriter { room, key, reply } => {
                let result = match self.rooms.get_mut(&room) {
                    None => Err(RoomsError::NotOpen(room)),
                    Some(entry) => {
                        entry.core.set_writer(key);
                        Ok(())
                    }
                };
                let _ = reply.send(result);
            }
        }
    }

    async fn open(
        &mut self,
        keys: RoomKeys,
        writer: Option<Keypair>,
        admin: Option<Keypair>,
        reducer: Arc<dyn Reducer>,
        bootstrap: Vec<Contact>,
    ) -> Result<RoomHandle, RoomsError> {
        let room = keys.room;
        if self.rooms.contains_key(&room) {
            return Err(RoomsError::AlreadyOpen(room));
        }
        let mut subscription = self.gossip.subscribe(room.topic(), bootstrap).await?;
        let events = self.events_tx.clone();
        // Forwards the subscription's events to the driver; ends with the
        // subscription or the driver.
        tokio::spawn(async move {
            while let Some(event) = subscription.recv().await {
                if events.send((room, event)).await.is_err() {
                    break;
                }
            }
        });
        let seed =
            self.seed ^ u64::from_be_bytes(room.as_bytes()[..8].try_into().unwrap_or([0; 8]));
        let core = RoomState::new(
            keys,
            writer,
            admin,
            reducer,
            self.config.clone(),
            seed,
            now(),
        );
        let initial = RoomView {
            hash: core.hash(),
            height: core.height(),
            state: Bytes::new(),
            write_key: core.write_key(),
            stats: RoomStats::default(),
        };
        let (view, view_rx) = watch::channel(initial);
        self.rooms.insert(
            room,
            Entry {
                core,
                neighbours: Vec::new(),
                view,
            },
        );
        Ok(RoomHandle {
            room,
            commands: self.command_tx.clone(),
            view: view_rx,
        })
    }

    async fn on_event(&mut self, room: RoomId, event: TopicEvent) {
        let Some(entry) = self.rooms.get_mut(&room) else {
            return;
        };
        let actions = match event {
            TopicEvent::Received(message) => {
                let update = proto::Update::decode(message.payload)
                    .map_err(|e| WireError::Malformed(e.to_string()))
                    .and_then(wire::update_from_wire);
                match update {
                    Ok(update) => {
                        // A missing parent is asked of a neighbour (the
                        // only peers whose answers are taken), in turn.
                        self.turn = self.turn.wrapping_add(1);
                        let ask = entry
                            .neighbours
                            .get(self.turn % entry.neighbours.len().max(1))
                            .copied()
                            .unwrap_or(message.origin);
                        entry.core.on_update(ask, update, now())
                    }
                    Err(error) => {
                        tracing::debug!(%error, "room update does not decode");
                        Vec::new()
                    }
                }
            }
            TopicEvent::NeighborUp(peer) => {
                entry.neighbours.push(peer);
                entry.core.on_neighbor_up(peer)
            }
            TopicEvent::NeighborDown(peer) => {
                entry.neighbours.retain(|p| *p != peer);
                entry.core.on_neighbor_down(&peer);
                Vec::new()
            }
            TopicEvent::Lagged(_) => Vec::new(),
        };
        self.execute(room, actions).await;
    }

    async fn on_envelope(&mut self, from: PeerId, message: proto::RoomMessage) {
        match wire::message_from_wire(message, self.config.max_state_size) {
            Ok(Some((room, message))) => {
                let Some(entry) = self.rooms.get_mut(&room) else {
                    return;
                };
                let actions = entry.core.on_message(from, message, now());
                self.execute(room, actions).await;
            }
            Ok(None) => {}
            Err(error) => {
                let error = match error {
                    WireError::TooLarge { size, max } => PeerError::MessageTooLarge {
                        channel: ROOM_CHANNEL_NAME,
                        size,
                        max,
                    },
                    WireError::Malformed(detail) => PeerError::MalformedMessage {
                        channel: ROOM_CHANNEL_NAME,
                        detail,
                    },
                };
                self.tx.report(from, error);
            }
        }
    }

    async fn on_tick(&mut self) {
        let at = now();
        let rooms: Vec<RoomId> = self.rooms.keys().copied().collect();
        for room in rooms {
            let Some(entry) = self.rooms.get_mut(&room) else {
                continue;
            };
            if entry.core.next_wakeup() > at {
                continue;
            }
            let neighbours = entry.neighbours.clone();
            let actions = entry.core.on_tick(&neighbours, at);
            self.execute(room, actions).await;
        }
    }

    async fn execute(&mut self, room: RoomId, actions: Vec<RoomAction>) {
        let mut changed = false;
        for action in actions {
            match action {
                RoomAction::Publish(update) => {
                    let payload = wire::update_to_wire(&update).encode_to_vec();
                    if let Err(error) = self.gossip.publish(room.topic(), payload).await {
                        tracing::debug!(%error, "room update not published");
                    }
                }
                RoomAction::Send { to, message } => {
                    let wire = wire::message_to_wire(room, &message);
                    if let Err(error) = self.tx.try_send(to, wire) {
                        tracing::debug!(peer = %to.short(), %error, "room message not sent");
                    }
                }
                RoomAction::Changed { .. } => changed = true,
            }
        }
        if let Some(entry) = self.rooms.get(&room) {
            if changed || *entry.view.borrow() != view_stats(entry) {
                entry.publish_view();
            }
        }
    }
}

/// Cheap check whether the published view's counters are stale.
fn view_stats(entry: &Entry) -> RoomView {
    let mut view = entry.view.borrow().clone();
    view.stats = entry.core.stats().clone();
    view
}
