//! Every open room of a node as one [`Core`] on the room channel.
//!
//! [`RoomsCore`] holds a [`RoomState`] per open room, keyed by
//! [`RoomId`]. Its channel carries the room messages between neighbours
//! (heads, catch-up, snapshots; [`RoomEnvelope`]). The gossip side of a
//! room — its updates broadcast on the room's topic and the topic's
//! neighbour changes — is not a channel of its own: the driver's shell
//! subscribes to the topic and feeds its events back as
//! [`RoomsCommand::Topic`], and the core asks for publications and
//! subscriptions with [`Output::Effect`] ([`RoomsEffect`]).
//!
//! What the core promises on top of each room's ([`crate::room::chain`]):
//!
//! - a room message for a room not open here is dropped; a frame that
//!   does not decode charges its sender ([`Input::Malformed`] becomes a
//!   report);
//! - a missing parent is asked of the room's neighbours in turn (the only
//!   peers whose answers are taken), or of the update's origin when the
//!   room has no neighbour yet;
//! - a room whose topic could not be joined
//!   ([`RoomsOutcome::Subscribed`] with `joined: false`) is closed again;
//! - **persistence**: whenever a room's head moved, the core asks the
//!   driver to save the room's checkpoint ([`RoomsEffect::Save`]: the
//!   head, its state and its proof, [`RoomCheckpoint`]) — the first change
//!   after a quiet spell at once, then at most once per `persist_interval`
//!   (1 s) — and the driver answers with [`RoomsOutcome::Saved`] (a failed
//!   save is asked again after the interval). The checkpoints read back at
//!   start are handed to [`RoomsCore::restore`]; a room opened later starts
//!   from its checkpoint if the proof holds ([`RoomsEvent::Restored`]),
//!   from genesis otherwise ([`RoomsEvent::RestoreRefused`], with the
//!   reason). A restored member asks its neighbours only for what it
//!   missed while it was down (one stream, or a snapshot if the gap is
//!   long), not the room's whole history. Own writes that had lost a race
//!   and were not re-posted yet when the node stopped are not kept.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use p2p_core::reactor::{Core, CoreInput, Input, Output, Outputs};
use p2p_core::{Keypair, PeerError, PeerId};
use prost::Message as _;

use crate::room::chain::{Reducer, RoomAction, RoomConfig, RoomError, RoomMessage, RoomState};
use crate::room::checkpoint::{RoomCheckpoint, max_checkpoint_size};
use crate::room::update::{RoomId, RoomKeys, StateHash, UpdateId};
use crate::room::wire;
use crate::room_proto as proto;
use crate::state::message::{Contact, WireError};

/// The room channel's id.
pub const ROOM_CHANNEL_ID: u16 = 0x0021;
/// The room channel's name.
pub const ROOM_CHANNEL_NAME: &str = "gossip-room";

/// A checkpoint that could not be made or kept is asked again after
/// `persist_interval`, and never sooner than this.
const SAVE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// A room message and the room it is about: what the room channel
/// carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEnvelope {
    /// The room.
    pub room: RoomId,
    /// The message.
    pub message: RoomMessage,
}

/// What the room's gossip topic told the node (fed as
/// [`RoomsCommand::Topic`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicInput {
    /// A gossip message on the room's topic: an encoded update, published
    /// (and signed as a gossip message) by `origin`.
    Update {
        /// The gossip message's origin.
        origin: PeerId,
        /// The encoded update (`proto::Update`).
        payload: Bytes,
    },
    /// A peer became a neighbour in the room's topic.
    NeighborUp(PeerId),
    /// A neighbour left the room's topic.
    NeighborDown(PeerId),
}

/// A room to open: its keys, the secrets this node holds, its reducer
/// and where to join its topic.
#[derive(Clone)]
pub struct RoomOpening {
    /// The room's keys.
    pub keys: RoomKeys,
    /// The write key's secret, if this node writes.
    pub writer: Option<Keypair>,
    /// The admin key's secret, if this node rotates.
    pub admin: Option<Keypair>,
    /// How updates change the state.
    pub reducer: Arc<dyn Reducer>,
    /// Where to join the room's topic.
    pub bootstrap: Vec<Contact>,
}

impl std::fmt::Debug for RoomOpening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomOpening")
            .field("room", &self.keys.room)
            .field("writer", &self.writer.is_some())
            .field("admin", &self.admin.is_some())
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

/// A request to the rooms core.
pub enum RoomsCommand {
    /// Opens a room ([`RoomsCore::open`]).
    Open(Box<RoomOpening>),
    /// Writes in a room ([`RoomsCore::write`]).
    Write {
        /// The room.
        room: RoomId,
        /// The update's body.
        body: Bytes,
    },
    /// Replaces a room's write key ([`RoomsCore::rotate`]).
    Rotate {
        /// The room.
        room: RoomId,
        /// The new write key.
        key: PeerId,
    },
    /// Gives or takes the write key's secret ([`RoomsCore::set_writer`]).
    SetWriter {
        /// The room.
        room: RoomId,
        /// The secret, or none.
        key: Option<Keypair>,
    },
    /// An event of a room's topic ([`RoomsCore::on_topic`]).
    Topic {
        /// The room.
        room: RoomId,
        /// What happened.
        input: TopicInput,
    },
}

impl std::fmt::Debug for RoomsCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Open(opening) => write!(f, "Open({:?})", opening.keys.room),
            Self::Write { room, body } => write!(f, "Write({room:?}, {} bytes)", body.len()),
            Self::Rotate { room, .. } => write!(f, "Rotate({room:?})"),
            Self::SetWriter { room, .. } => write!(f, "SetWriter({room:?})"),
            Self::Topic { room, input } => write!(f, "Topic({room:?}, {input:?})"),
        }
    }
}

/// Why a rooms command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomsCommandError {
    /// The room is already open on this node.
    #[error("room {0:?} is already open")]
    AlreadyOpen(RoomId),
    /// The room is not open on this node.
    #[error("room {0:?} is not open")]
    NotOpen(RoomId),
    /// The room refused the write or rotation.
    #[error(transparent)]
    Room(#[from] RoomError),
}

/// The answer to a [`RoomsCommand`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomsReply {
    /// To [`RoomsCommand::Write`]: the update's id.
    Written(Result<UpdateId, RoomsCommandError>),
    /// To every other command.
    Done(Result<(), RoomsCommandError>),
}

/// What the rooms core asks of the driver besides the room channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomsEffect {
    /// Subscribe to `room`'s topic through `bootstrap`, feed its events
    /// back as [`RoomsCommand::Topic`], and answer with
    /// [`RoomsOutcome::Subscribed`].
    Subscribe {
        /// The room.
        room: RoomId,
        /// Where to join.
        bootstrap: Vec<Contact>,
    },
    /// Publish an encoded update on `room`'s topic (best effort: a
    /// publication refused is repaired by catch-up and re-posting).
    Publish {
        /// The room.
        room: RoomId,
        /// The encoded update.
        payload: Bytes,
    },
    /// Keep `room`'s checkpoint (replacing the one kept before), durable
    /// before answering [`RoomsOutcome::Saved`].
    Save {
        /// The room.
        room: RoomId,
        /// The checkpoint's head (what the outcome names).
        hash: StateHash,
        /// Its height.
        height: u64,
        /// The record ([`RoomCheckpoint::encode`]).
        record: Bytes,
    },
}

/// The result of a [`RoomsEffect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomsOutcome {
    /// Whether the room's topic was joined; if not, the room is closed.
    Subscribed {
        /// The room.
        room: RoomId,
        /// Joined.
        joined: bool,
    },
    /// Whether a [`RoomsEffect::Save`] was kept.
    Saved {
        /// The room.
        room: RoomId,
        /// The checkpoint's head.
        hash: StateHash,
        /// Its height.
        height: u64,
        /// Kept (false: asked again after `persist_interval`).
        ok: bool,
    },
}

/// What the rooms core tells the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomsEvent {
    /// A room's head moved.
    HeadChanged {
        /// The room.
        room: RoomId,
        /// The new head.
        hash: StateHash,
        /// Its height.
        height: u64,
    },
    /// A room was closed because its topic could not be joined.
    Closed(RoomId),
    /// A room opened from the checkpoint saved before the restart.
    Restored {
        /// The room.
        room: RoomId,
        /// The checkpoint's head.
        hash: StateHash,
        /// Its height.
        height: u64,
    },
    /// A room's checkpoint was refused (its proof did not hold): the room
    /// starts from genesis and catches up.
    RestoreRefused {
        /// The room.
        room: RoomId,
        /// Why.
        reason: String,
    },
}

/// The outputs of a [`RoomsCore`].
pub type RoomsOutput = Output<RoomEnvelope, RoomsEvent, RoomsEffect>;

#[derive(Debug)]
struct OpenRoom {
    state: RoomState,
    /// The room's topic neighbours, in the order they came.
    neighbours: Vec<PeerId>,
    /// The head of the last checkpoint asked for (none: nothing asked yet,
    /// or the last save failed).
    saving: Option<StateHash>,
    /// The height of the last checkpoint kept.
    saved_height: Option<u64>,
    /// No checkpoint is asked for before this.
    save_after: Instant,
}

impl OpenRoom {
    /// Whether the head moved since the last checkpoint asked for.
    fn dirty(&self) -> bool {
        self.state.height() > 0 && self.saving != Some(self.state.hash())
    }
}

/// Every room open on a node (see the module docs).
#[derive(Debug)]
pub struct RoomsCore {
    config: RoomConfig,
    seed: u64,
    rooms: BTreeMap<RoomId, OpenRoom>,
    /// Checkpoints read back at start, for rooms not opened yet.
    restored: BTreeMap<RoomId, RoomCheckpoint>,
    /// Whose turn it is to be asked for a missing parent.
    turn: usize,
}

impl RoomsCore {
    /// No room open yet; every room gets `config`, and randomness derived
    /// from `seed` and its id.
    pub fn new(config: RoomConfig, seed: u64) -> Self {
        Self {
            config,
            seed,
            rooms: BTreeMap::new(),
            restored: BTreeMap::new(),
            turn: 0,
        }
    }

    /// Hands the core the checkpoints saved before a restart (read by the
    /// driver at start). Each is used when its room opens; a room already
    /// open keeps its state.
    pub fn restore(&mut self, checkpoints: impl IntoIterator<Item = RoomCheckpoint>) {
        for checkpoint in checkpoints {
            if !self.rooms.contains_key(&checkpoint.room) {
                self.restored.insert(checkpoint.room, checkpoint);
            }
        }
    }

    /// The height of `room`'s last checkpoint kept by the driver, if any.
    pub fn saved_height(&self, room: &RoomId) -> Option<u64> {
        self.rooms.get(room).and_then(|r| r.saved_height)
    }

    /// Asks for the checkpoint of every room whose head moved, unless its
    /// last one was asked for less than `persist_interval` ago.
    fn persist(&mut self, now: Instant, out: &mut Outputs<Self>) {
        let max = max_checkpoint_size(self.config.max_state_size);
        for (room, open) in &mut self.rooms {
            if !open.dirty() || now < open.save_after {
                continue;
            }
            open.save_after = now + self.config.persist_interval;
            let Some((head, rotation, state)) = open.state.checkpoint() else {
                // A head without its proof: tried again later, never in a
                // tight loop.
                open.save_after = now + self.config.persist_interval.max(SAVE_RETRY);
                continue;
            };
            let checkpoint = RoomCheckpoint {
                room: *room,
                head,
                rotation,
                state,
            };
            let (hash, height) = (open.state.hash(), open.state.height());
            open.saving = Some(hash);
            let record = checkpoint.encode();
            // A head update too large to read back is not kept.
            if record.len() > max {
                continue;
            }
            out.push(Output::Effect(RoomsEffect::Save {
                room: *room,
                hash,
                height,
                record: Bytes::from(record),
            }));
        }
    }

    /// The rooms' settings.
    pub fn config(&self) -> &RoomConfig {
        &self.config
    }

    /// Room `room`'s state, if open.
    pub fn room(&self, room: &RoomId) -> Option<&RoomState> {
        self.rooms.get(room).map(|r| &r.state)
    }

    /// The open rooms.
    pub fn rooms(&self) -> impl Iterator<Item = RoomId> + '_ {
        self.rooms.keys().copied()
    }

    /// Opens a room: its state starts empty (genesis) and the driver is
    /// asked to join its topic ([`RoomsEffect::Subscribe`]).
    pub fn open(
        &mut self,
        now: Instant,
        opening: RoomOpening,
        out: &mut Outputs<Self>,
    ) -> Result<(), RoomsCommandError> {
        let RoomOpening {
            keys,
            writer,
            admin,
            reducer,
            bootstrap,
        } = opening;
        let room = keys.room;
        if self.rooms.contains_key(&room) {
            return Err(RoomsCommandError::AlreadyOpen(room));
        }
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&room.as_bytes()[..8]);
        let seed = self.seed ^ u64::from_be_bytes(prefix);
        let mut state =
            RoomState::new(keys, writer, admin, reducer, self.config.clone(), seed, now);
        let mut saved = None;
        if let Some(checkpoint) = self.restored.remove(&room) {
            let (hash, height) = (checkpoint.head.child(), checkpoint.height());
            match state.restore(checkpoint.head, checkpoint.rotation, checkpoint.state) {
                Ok(()) => {
                    saved = Some((hash, height));
                    out.push(Output::Event(RoomsEvent::Restored { room, hash, height }));
                }
                Err(reason) => out.push(Output::Event(RoomsEvent::RestoreRefused { room, reason })),
            }
        }
        self.rooms.insert(
            room,
            OpenRoom {
                state,
                neighbours: Vec::new(),
                saving: saved.map(|(hash, _)| hash),
                saved_height: saved.map(|(_, height)| height),
                save_after: now,
            },
        );
        out.push(Output::Effect(RoomsEffect::Subscribe { room, bootstrap }));
        Ok(())
    }

    fn open_room(&mut self, room: RoomId) -> Result<&mut OpenRoom, RoomsCommandError> {
        self.rooms
            .get_mut(&room)
            .ok_or(RoomsCommandError::NotOpen(room))
    }

    /// Writes `body` in `room` (see [`RoomState::write`]).
    pub fn write(
        &mut self,
        now: Instant,
        room: RoomId,
        body: Bytes,
        out: &mut Outputs<Self>,
    ) -> Result<UpdateId, RoomsCommandError> {
        let (id, actions) = self.open_room(room)?.state.write(body, now)?;
        emit(room, actions, out);
        self.persist(now, out);
        Ok(id)
    }

    /// Replaces `room`'s write key (see [`RoomState::rotate`]).
    pub fn rotate(
        &mut self,
        now: Instant,
        room: RoomId,
        key: PeerId,
        out: &mut Outputs<Self>,
    ) -> Result<(), RoomsCommandError> {
        let actions = self.open_room(room)?.state.rotate(key, now)?;
        emit(room, actions, out);
        self.persist(now, out);
        Ok(())
    }

    /// Gives this node `room`'s write key secret, or takes it away.
    pub fn set_writer(
        &mut self,
        room: RoomId,
        key: Option<Keypair>,
    ) -> Result<(), RoomsCommandError> {
        self.open_room(room)?.state.set_writer(key);
        Ok(())
    }

    /// An event of `room`'s topic. An update that does not decode is
    /// dropped (gossip relayed it because its gossip signature held; it
    /// proves nothing about the room).
    pub fn on_topic(
        &mut self,
        now: Instant,
        room: RoomId,
        input: TopicInput,
        out: &mut Outputs<Self>,
    ) -> Result<(), RoomsCommandError> {
        self.turn = self.turn.wrapping_add(1);
        let turn = self.turn;
        let open = self.open_room(room)?;
        let actions = match input {
            TopicInput::Update { origin, payload } => {
                let update = proto::Update::decode(payload)
                    .map_err(|e| WireError::Malformed(e.to_string()))
                    .and_then(wire::update_from_wire);
                match update {
                    Ok(update) => {
                        let ask = open
                            .neighbours
                            .get(turn % open.neighbours.len().max(1))
                            .copied()
                            .unwrap_or(origin);
                        open.state.on_update(ask, update, now)
                    }
                    Err(_) => Vec::new(),
                }
            }
            TopicInput::NeighborUp(peer) => {
                if !open.neighbours.contains(&peer) {
                    open.neighbours.push(peer);
                }
                open.state.on_neighbor_up(peer)
            }
            TopicInput::NeighborDown(peer) => {
                open.neighbours.retain(|p| *p != peer);
                open.state.on_neighbor_down(&peer);
                Vec::new()
            }
        };
        emit(room, actions, out);
        self.persist(now, out);
        Ok(())
    }

    fn on_tick(&mut self, now: Instant, out: &mut Outputs<Self>) {
        for (room, open) in &mut self.rooms {
            if open.state.next_wakeup() <= now {
                let actions = open.state.on_tick(&open.neighbours, now);
                emit(*room, actions, out);
            }
        }
        self.persist(now, out);
    }
}

/// Turns a room's actions into the core's outputs.
fn emit(room: RoomId, actions: Vec<RoomAction>, out: &mut Outputs<RoomsCore>) {
    for action in actions {
        out.push(match action {
            RoomAction::Publish(update) => Output::Effect(RoomsEffect::Publish {
                room,
                payload: Bytes::from(wire::update_to_wire(&update).encode_to_vec()),
            }),
            RoomAction::Send { to, message } => Output::Send {
                to,
                message: RoomEnvelope { room, message },
            },
            RoomAction::Changed { hash, height } => {
                Output::Event(RoomsEvent::HeadChanged { room, hash, height })
            }
        });
    }
}

impl Core for RoomsCore {
    type Message = RoomEnvelope;
    type Wire = proto::RoomMessage;
    type Command = RoomsCommand;
    type Reply = RoomsReply;
    type Event = RoomsEvent;
    type Effect = RoomsEffect;
    type Outcome = RoomsOutcome;

    fn handle(&mut self, now: Instant, input: CoreInput<Self>, out: &mut Outputs<Self>) {
        match input {
            Input::Message { from, message, .. } => {
                let RoomEnvelope { room, message } = message;
                if let Some(open) = self.rooms.get_mut(&room) {
                    let actions = open.state.on_message(from, message, now);
                    emit(room, actions, out);
                    self.persist(now, out);
                }
            }
            Input::Malformed { from, error } => out.push(Output::Report { peer: from, error }),
            Input::Timer => self.on_tick(now, out),
            Input::Outcome(RoomsOutcome::Subscribed { room, joined }) => {
                if !joined && self.rooms.remove(&room).is_some() {
                    out.push(Output::Event(RoomsEvent::Closed(room)));
                }
            }
            Input::Outcome(RoomsOutcome::Saved {
                room,
                hash,
                height,
                ok,
            }) => {
                if let Some(open) = self.rooms.get_mut(&room) {
                    if ok {
                        open.saved_height = Some(height);
                    } else if open.saving == Some(hash) {
                        // Asked again once the interval (at least
                        // SAVE_RETRY) is over.
                        open.saving = None;
                        open.save_after = now + self.config.persist_interval.max(SAVE_RETRY);
                    }
                }
            }
            // Rooms' neighbours are their topics' (fed as commands); a
            // room message that could not be sent is repaired by the next
            // head exchange.
            Input::PeerUp(_)
            | Input::PeerDown(_)
            | Input::SendFailed { .. }
            | Input::DialFailed(_) => {}
        }
    }

    fn command(
        &mut self,
        now: Instant,
        command: RoomsCommand,
        out: &mut Outputs<Self>,
    ) -> RoomsReply {
        let done = match command {
            RoomsCommand::Open(opening) => self.open(now, *opening, out),
            RoomsCommand::Write { room, body } => {
                return RoomsReply::Written(self.write(now, room, body, out));
            }
            RoomsCommand::Rotate { room, key } => self.rotate(now, room, key, out),
            RoomsCommand::SetWriter { room, key } => self.set_writer(room, key),
            RoomsCommand::Topic { room, input } => self.on_topic(now, room, input, out),
        };
        RoomsReply::Done(done)
    }

    fn next_wakeup(&self) -> Option<Instant> {
        self.rooms
            .values()
            .map(|r| {
                let next = r.state.next_wakeup();
                if r.dirty() {
                    next.min(r.save_after)
                } else {
                    next
                }
            })
            .min()
    }

    fn decode(&self, wire: proto::RoomMessage) -> Result<Option<RoomEnvelope>, PeerError> {
        wire::message_from_wire(wire, self.config.max_state_size)
            .map(|m| m.map(|(room, message)| RoomEnvelope { room, message }))
            .map_err(|e| e.charge(ROOM_CHANNEL_NAME))
    }

    fn encode(message: RoomEnvelope) -> proto::RoomMessage {
        wire::message_to_wire(message.room, &message.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::chat::ChatLog;

    fn keys() -> RoomKeys {
        RoomKeys::new(
            Keypair::from_seed(500).peer_id(),
            "test",
            writer().peer_id(),
        )
    }

    fn writer() -> Keypair {
        Keypair::from_seed(501)
    }

    fn peer(n: u64) -> PeerId {
        Keypair::from_seed(600 + n).peer_id()
    }

    fn opening(writes: bool) -> RoomOpening {
        RoomOpening {
            keys: keys(),
            writer: writes.then(writer),
            admin: None,
            reducer: Arc::new(ChatLog),
            bootstrap: vec![],
        }
    }

    fn command(
        core: &mut RoomsCore,
        now: Instant,
        command: RoomsCommand,
    ) -> (RoomsReply, Vec<RoomsOutput>) {
        let mut out = Vec::new();
        let reply = core.command(now, command, &mut out);
        (reply, out)
    }

    #[test]
    fn a_room_opens_once_and_asks_for_its_topic() {
        let now = Instant::now();
        let mut core = RoomsCore::new(RoomConfig::default(), 1);
        assert_eq!(core.next_wakeup(), None);
        let room = keys().room;
        let (reply, out) = command(&mut core, now, RoomsCommand::Open(Box::new(opening(false))));
        assert_eq!(reply, RoomsReply::Done(Ok(())));
        assert_eq!(
            out,
            vec![Output::Effect(RoomsEffect::Subscribe {
                room,
                bootstrap: vec![]
            })]
        );
        assert!(core.next_wakeup().is_some());
        let (reply, out) = command(&mut core, now, RoomsCommand::Open(Box::new(opening(false))));
        assert_eq!(
            reply,
            RoomsReply::Done(Err(RoomsCommandError::AlreadyOpen(room)))
        );
        assert!(out.is_empty());
        let other = RoomId::from_bytes([7; 32]);
        let write = RoomsCommand::Write {
            room: other,
            body: Bytes::from_static(b"x"),
        };
        assert_eq!(
            command(&mut core, now, write).0,
            RoomsReply::Written(Err(RoomsCommandError::NotOpen(other)))
        );
    }

    #[test]
    fn a_room_whose_topic_was_not_joined_is_closed() {
        let now = Instant::now();
        let mut core = RoomsCore::new(RoomConfig::default(), 1);
        let room = keys().room;
        command(&mut core, now, RoomsCommand::Open(Box::new(opening(false))));
        let mut out = Vec::new();
        let joined = |joined| Input::Outcome(RoomsOutcome::Subscribed { room, joined });
        core.handle(now, joined(true), &mut out);
        assert!(out.is_empty() && core.room(&room).is_some());
        core.handle(now, joined(false), &mut out);
        assert_eq!(out, vec![Output::Event(RoomsEvent::Closed(room))]);
        assert!(core.room(&room).is_none());
        assert_eq!(core.next_wakeup(), None);
    }

    #[test]
    fn a_write_is_published_on_the_topic_and_applied_by_the_members_it_reaches() {
        let now = Instant::now();
        let room = keys().room;
        let mut author = RoomsCore::new(RoomConfig::default(), 1);
        let mut member = RoomsCore::new(RoomConfig::default(), 2);
        command(
            &mut author,
            now,
            RoomsCommand::Open(Box::new(opening(true))),
        );
        command(
            &mut member,
            now,
            RoomsCommand::Open(Box::new(opening(false))),
        );
        let write = RoomsCommand::Write {
            room,
            body: Bytes::from_static(b"hello"),
        };
        let (reply, out) = command(&mut author, now, write);
        assert!(matches!(reply, RoomsReply::Written(Ok(_))));
        let payload = out
            .iter()
            .find_map(|o| match o {
                Output::Effect(RoomsEffect::Publish { room: r, payload }) if *r == room => {
                    Some(payload.clone())
                }
                _ => None,
            })
            .expect("published on the topic");
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Event(RoomsEvent::HeadChanged { height: 1, .. })))
        );
        let update = TopicInput::Update {
            origin: peer(0),
            payload,
        };
        let (reply, out) = command(
            &mut member,
            now,
            RoomsCommand::Topic {
                room,
                input: update,
            },
        );
        assert_eq!(reply, RoomsReply::Done(Ok(())));
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Event(RoomsEvent::HeadChanged { height: 1, .. })))
        );
        assert_eq!(
            ChatLog::lines(member.room(&room).expect("open").state()),
            vec!["hello"]
        );
        // Junk on the topic is dropped.
        let junk = TopicInput::Update {
            origin: peer(0),
            payload: Bytes::from_static(b"\xff\xff"),
        };
        let (_, out) = command(&mut member, now, RoomsCommand::Topic { room, input: junk });
        assert!(out.is_empty());
    }

    #[test]
    fn neighbours_exchange_heads_on_the_room_channel() {
        let now = Instant::now();
        let room = keys().room;
        let mut core = RoomsCore::new(RoomConfig::default(), 1);
        command(&mut core, now, RoomsCommand::Open(Box::new(opening(false))));
        let up = TopicInput::NeighborUp(peer(1));
        let (_, out) = command(&mut core, now, RoomsCommand::Topic { room, input: up });
        let [Output::Send { to, message }] = out.as_slice() else {
            panic!("a head for the new neighbour: {out:?}");
        };
        assert_eq!(*to, peer(1));
        assert!(matches!(
            message.message,
            RoomMessage::Head { height: 0, .. }
        ));
        // The envelope survives the wire.
        let wire = RoomsCore::encode(message.clone());
        assert_eq!(core.decode(wire), Ok(Some(message.clone())));
        // Every head_interval, every neighbour is told the head.
        let mut out = Vec::new();
        let due = core.next_wakeup().expect("a room is open");
        core.handle(due, Input::Timer, &mut out);
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Send { to, .. } if *to == peer(1)))
        );
        // A message for a room not open here is dropped.
        let mut out = Vec::new();
        let elsewhere = RoomEnvelope {
            room: RoomId::from_bytes([7; 32]),
            message: message.message.clone(),
        };
        core.handle(
            now,
            Input::Message {
                from: peer(1),
                message: elsewhere,
                size: 0,
            },
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_room_frame_that_does_not_decode_charges_its_sender() {
        let core = RoomsCore::new(RoomConfig::default(), 1);
        let wire = proto::RoomMessage {
            room: Bytes::from_static(b"short"),
            kind: None,
        };
        let error = core.decode(wire).expect_err("a room id of 5 bytes");
        assert!(matches!(
            error,
            PeerError::MalformedMessage {
                channel: ROOM_CHANNEL_NAME,
                ..
            }
        ));
        let mut core = core;
        let mut out = Vec::new();
        core.handle(
            Instant::now(),
            Input::Malformed {
                from: peer(1),
                error: error.clone(),
            },
            &mut out,
        );
        assert_eq!(
            out,
            vec![Output::Report {
                peer: peer(1),
                error
            }]
        );
    }

    /// The checkpoint records the core asked to save, in order.
    fn saves(out: &[RoomsOutput]) -> Vec<(u64, Bytes)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Effect(RoomsEffect::Save { height, record, .. }) => {
                    Some((*height, record.clone()))
                }
                _ => None,
            })
            .collect()
    }

    fn write(core: &mut RoomsCore, now: Instant, line: &'static str) -> Vec<RoomsOutput> {
        let write = RoomsCommand::Write {
            room: keys().room,
            body: Bytes::from_static(line.as_bytes()),
        };
        let (reply, out) = command(core, now, write);
        assert!(matches!(reply, RoomsReply::Written(Ok(_))), "{reply:?}");
        out
    }

    #[test]
    fn checkpoints_are_asked_at_once_then_at_most_once_per_interval() {
        let now = Instant::now();
        let room = keys().room;
        let interval = RoomConfig::default().persist_interval;
        let mut core = RoomsCore::new(RoomConfig::default(), 1);
        command(&mut core, now, RoomsCommand::Open(Box::new(opening(true))));
        assert_eq!(saves(&write(&mut core, now, "one"))[0].0, 1);
        // Within the interval: nothing more, but a wakeup at its end.
        assert!(saves(&write(&mut core, now, "two")).is_empty());
        assert!(core.next_wakeup().is_some_and(|at| at <= now + interval));
        let mut out = Vec::new();
        core.handle(now + interval, Input::Timer, &mut out);
        let saved = saves(&out);
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].0, 2);
        assert_eq!(core.saved_height(&room), None);
        // A failed save is asked again after the interval; a kept one is
        // the room's saved height and not asked again.
        let hash = core.room(&room).expect("open").hash();
        let outcome = |ok| {
            Input::Outcome(RoomsOutcome::Saved {
                room,
                hash,
                height: 2,
                ok,
            })
        };
        let mut out = Vec::new();
        core.handle(now + interval, outcome(false), &mut out);
        assert!(saves(&out).is_empty());
        core.handle(now + interval * 2, Input::Timer, &mut out);
        assert_eq!(saves(&out).len(), 1);
        core.handle(now + interval * 2, outcome(true), &mut out);
        assert_eq!(core.saved_height(&room), Some(2));
        let mut out = Vec::new();
        core.handle(now + interval * 5, Input::Timer, &mut out);
        assert!(saves(&out).is_empty());
    }

    #[test]
    fn a_restarted_member_resumes_from_its_checkpoint_and_fetches_only_what_it_missed() {
        let now = Instant::now();
        let room = keys().room;
        let config = RoomConfig {
            persist_interval: std::time::Duration::ZERO,
            ..RoomConfig::default()
        };
        let mut author = RoomsCore::new(config.clone(), 1);
        command(
            &mut author,
            now,
            RoomsCommand::Open(Box::new(opening(true))),
        );
        let mut last = None;
        for line in ["one", "two", "three"] {
            last = saves(&write(&mut author, now, line)).pop().or(last);
        }
        let (height, record) = last.expect("a checkpoint");
        assert_eq!(height, 3);
        let checkpoint =
            RoomCheckpoint::decode(room.as_bytes(), &record, config.max_state_size).expect("reads");
        // The restarted member: a fresh core, handed what was saved.
        let mut member = RoomsCore::new(config.clone(), 2);
        member.restore([checkpoint]);
        let (_, out) = command(
            &mut member,
            now,
            RoomsCommand::Open(Box::new(opening(false))),
        );
        let head = author.room(&room).expect("open").hash();
        assert!(out.contains(&Output::Event(RoomsEvent::Restored {
            room,
            hash: head,
            height: 3
        })));
        assert!(
            saves(&out).is_empty(),
            "what was just read is not saved again"
        );
        let state = member.room(&room).expect("open");
        assert_eq!(
            (state.height(), state.hash(), state.write_key()),
            (3, head, writer().peer_id())
        );
        assert_eq!(ChatLog::lines(state.state()), vec!["one", "two", "three"]);
        // The author as a neighbour at the same head: nothing is asked.
        let up = TopicInput::NeighborUp(peer(0));
        command(&mut member, now, RoomsCommand::Topic { room, input: up });
        let mut out = Vec::new();
        let message = RoomEnvelope {
            room,
            message: RoomMessage::Head {
                hash: head,
                height: 3,
                epoch: 0,
            },
        };
        member.handle(
            now,
            Input::Message {
                from: peer(0),
                message,
                size: 0,
            },
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        // A write made meanwhile applies on the restored head directly.
        let published = write(&mut author, now, "four");
        let payload = published
            .iter()
            .find_map(|o| match o {
                Output::Effect(RoomsEffect::Publish { payload, .. }) => Some(payload.clone()),
                _ => None,
            })
            .expect("published");
        let update = TopicInput::Update {
            origin: peer(0),
            payload,
        };
        let (_, out) = command(
            &mut member,
            now,
            RoomsCommand::Topic {
                room,
                input: update,
            },
        );
        assert_eq!(saves(&out).first().map(|s| s.0), Some(4));
        let state = member.room(&room).expect("open");
        assert_eq!(state.height(), 4);
        assert_eq!(state.stats().updates_accepted, 1);
        assert_eq!(state.stats().catch_ups_sent, 0);
        assert_eq!(state.stats().snapshots_adopted, 0);
    }

    #[test]
    fn a_checkpoint_altered_on_disk_is_refused_with_its_reason() {
        let now = Instant::now();
        let room = keys().room;
        let config = RoomConfig::default();
        let mut author = RoomsCore::new(config.clone(), 1);
        command(
            &mut author,
            now,
            RoomsCommand::Open(Box::new(opening(true))),
        );
        let (_, record) = saves(&write(&mut author, now, "hello")).remove(0);
        let mut checkpoint =
            RoomCheckpoint::decode(room.as_bytes(), &record, config.max_state_size).expect("reads");
        // Another state under the same signed head.
        checkpoint.state = Bytes::from_static(b"forged");
        let mut member = RoomsCore::new(config.clone(), 2);
        member.restore([checkpoint]);
        let (_, out) = command(
            &mut member,
            now,
            RoomsCommand::Open(Box::new(opening(false))),
        );
        let reason = out
            .iter()
            .find_map(|o| match o {
                Output::Event(RoomsEvent::RestoreRefused { room: r, reason }) if *r == room => {
                    Some(reason.clone())
                }
                _ => None,
            })
            .expect("refused");
        assert!(reason.contains("digest"), "{reason}");
        let state = member.room(&room).expect("opened anyway");
        assert_eq!((state.height(), state.hash()), (0, keys().genesis()));

        // Records that do not read give their reason, never a panic.
        use crate::room::checkpoint::{CHECKPOINT_VERSION, CheckpointError, max_checkpoint_size};
        let max = config.max_state_size;
        let decode = |key: &[u8], record: &[u8]| RoomCheckpoint::decode(key, record, max);
        assert_eq!(decode(room.as_bytes(), &[]), Err(CheckpointError::Empty));
        assert_eq!(
            decode(room.as_bytes(), &[9, 1, 2]),
            Err(CheckpointError::Version(9))
        );
        assert!(matches!(
            decode(room.as_bytes(), &[CHECKPOINT_VERSION, 0xff, 0xff, 0x07]),
            Err(CheckpointError::Malformed(_))
        ));
        assert!(matches!(
            decode(room.as_bytes(), &record[..record.len() - 3]),
            Err(CheckpointError::Malformed(_))
        ));
        assert!(matches!(
            decode(&[7; 32], &record),
            Err(CheckpointError::WrongRoom { .. })
        ));
        let huge = vec![CHECKPOINT_VERSION; max_checkpoint_size(max) + 1];
        assert!(matches!(
            decode(room.as_bytes(), &huge),
            Err(CheckpointError::TooLarge { .. })
        ));
        let text = decode(room.as_bytes(), &[9]).expect_err("v9").to_string();
        assert!(text.contains("version 9"), "{text}");
    }
}
