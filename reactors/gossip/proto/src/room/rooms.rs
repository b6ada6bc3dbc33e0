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
//!   ([`RoomsOutcome::Subscribed`] with `joined: false`) is closed again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use p2p_core::reactor::{Core, CoreInput, Input, Output, Outputs};
use p2p_core::{Keypair, PeerError, PeerId};
use prost::Message as _;

use crate::room::chain::{Reducer, RoomAction, RoomConfig, RoomError, RoomMessage, RoomState};
use crate::room::update::{RoomId, RoomKeys, StateHash, UpdateId};
use crate::room::wire;
use crate::room_proto as proto;
use crate::state::message::{Contact, WireError};

/// The room channel's id.
pub const ROOM_CHANNEL_ID: u16 = 0x0021;
/// The room channel's name.
pub const ROOM_CHANNEL_NAME: &str = "gossip-room";

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
}

/// The outputs of a [`RoomsCore`].
pub type RoomsOutput = Output<RoomEnvelope, RoomsEvent, RoomsEffect>;

#[derive(Debug)]
struct OpenRoom {
    state: RoomState,
    /// The room's topic neighbours, in the order they came.
    neighbours: Vec<PeerId>,
}

/// Every room open on a node (see the module docs).
#[derive(Debug)]
pub struct RoomsCore {
    config: RoomConfig,
    seed: u64,
    rooms: BTreeMap<RoomId, OpenRoom>,
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
            turn: 0,
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
        let state = RoomState::new(keys, writer, admin, reducer, self.config.clone(), seed, now);
        self.rooms.insert(
            room,
            OpenRoom {
                state,
                neighbours: Vec::new(),
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
        Ok(())
    }

    fn on_tick(&mut self, now: Instant, out: &mut Outputs<Self>) {
        for (room, open) in &mut self.rooms {
            if open.state.next_wakeup() <= now {
                let actions = open.state.on_tick(&open.neighbours, now);
                emit(*room, actions, out);
            }
        }
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
                }
            }
            Input::Malformed { from, error } => out.push(Output::Report { peer: from, error }),
            Input::Timer => self.on_tick(now, out),
            Input::Outcome(RoomsOutcome::Subscribed { room, joined }) => {
                if !joined && self.rooms.remove(&room).is_some() {
                    out.push(Output::Event(RoomsEvent::Closed(room)));
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
        self.rooms.values().map(|r| r.state.next_wakeup()).min()
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
}
