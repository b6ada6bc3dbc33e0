//! Rooms: replicated application state over gossip (reference 002).
//!
//! A room's state is `reduce(state, update)` folded over its updates
//! ([`Reducer`]; the example is [`ChatLog`]). Updates are signed with the
//! room's shared **write key** — readers need only its public half — and
//! an **admin key** can replace the write key ([`UpdateKind::Rotate`]),
//! which removes every writer it does not hand the new secret to. Each
//! update names the state hash it applies to and produces
//! `hash(parent ‖ update id)`; with concurrent writers the updates form a
//! tree, and every member follows the same canonical chain (latest epoch,
//! then longest, then smallest hash) — see [`chain`] for how forks, catch-up and snapshots
//! work.
//!
//! [`RoomsCore`] holds every room a node opened and is the
//! [`Core`](p2p_core::reactor::Core) of the rooms reactor
//! (`reactor_gossip::room::Rooms`, next to the gossip reactor): updates
//! travel as gossip messages on the room's topic (so they reach every
//! member once, signed by the node that wrote them as well) — the
//! reactor's shell subscribes and publishes for the core — and neighbours
//! exchange heads, catch-up streams and snapshots on channel `0x0021`
//! (`room.proto`, [`RoomEnvelope`]).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use p2p_core::Keypair;
//! use p2p_core::reactor::Output;
//! use reactor_gossip_proto::room::{
//!     ChatLog, RoomConfig, RoomKeys, RoomOpening, RoomsCore, RoomsEffect,
//! };
//!
//! let admin = Keypair::from_seed(1);
//! let write = Keypair::from_seed(2); // shared with every writer
//! let keys = RoomKeys::new(admin.peer_id(), "lobby", write.peer_id());
//! let room = keys.room;
//! let mut rooms = RoomsCore::new(RoomConfig::default(), 7);
//! let (now, mut out) = (Instant::now(), Vec::new());
//! let opening = RoomOpening { keys, writer: Some(write), admin: None, reducer: Arc::new(ChatLog), bootstrap: vec![] };
//! rooms.open(now, opening, &mut out).unwrap();
//! // The driver joins the room's topic...
//! assert!(matches!(&out[..], [Output::Effect(RoomsEffect::Subscribe { .. })]));
//! out.clear();
//! // ... and a write is applied here at once, then published on it.
//! rooms.write(now, room, "hello, room".into(), &mut out).unwrap();
//! assert!(out.iter().any(|o| matches!(o, Output::Effect(RoomsEffect::Publish { .. }))));
//! assert_eq!(ChatLog::lines(rooms.room(&room).unwrap().state()), vec!["hello, room"]);
//! ```
//!
//! # Promises
//!
//! - Members that hold the same updates have the same state and hash,
//!   whatever order the updates arrived in.
//! - A member that missed updates (loss, partition, a late join) catches
//!   up from a neighbour: one stream of the updates since a state it
//!   knows, or a snapshot of the state (at most `max_state_size`, 5 MiB)
//!   when the gap is long; every `head_interval` (5 s) neighbours compare
//!   heads, so partitions heal once connectivity returns.
//! - A write on a branch that lost is re-posted on the winning head by its
//!   author (if it still holds the write key), so it is lost only if its
//!   author is gone (or restarts before re-posting it).
//! - A room's head survives a restart: the core asks its driver to save a
//!   checkpoint (head, state, proof; [`checkpoint`]) at most once per
//!   `persist_interval` (1 s) while the head moves, and a node restarted
//!   resumes from it, fetching only what it missed. A write the reducer refuses, or that would grow the
//!   state past the cap, is a no-op (refused at once on the writer).
//!
//! # What an attacker can do
//!
//! - Without the write key, nothing to the state: updates whose signer is
//!   not the key in force at their parent are refused (counted). Junk on
//!   the room's topic is still relayed by gossip (it is signed by its
//!   sending node) before rooms drop it.
//! - With the write key, anything a writer can (the key is shared: writers
//!   are not told apart); the admin rotates it to remove them.
//! - Room messages are taken only from the room's neighbours, and
//!   catch-up answers only from a neighbour asked and still awaited
//!   (others are counted `unsolicited`). A **snapshot is taken only with
//!   proof**: the signed update that produced its head, whose stamp signs
//!   the height, the epoch and the digest of the state, and the admin's
//!   rotation that put its signer in force. Without the room's keys no
//!   peer can make a member adopt a state (ADR 0009).
//! - The fork choice is (epoch, height, hash): after a rotation the
//!   revoked key cannot win with a fork from before it, however long.
//! - A write-key holder can stamp a head with a huge height, which no
//!   other writer beats within the epoch; the admin's rotation ends it.
//! - Updates are never forgotten within `retain` (1,024) of the head; a
//!   fork older than that is not followed.
//! - A node's stored checkpoint is taken only with the same proof as a
//!   snapshot ([`checkpoint`]): a record altered on disk is refused and
//!   the room starts from genesis.

pub mod chain;
mod chat;
pub mod checkpoint;
mod rooms;
pub mod update;
pub mod wire;

#[cfg(test)]
mod tests;

pub use chain::{Reducer, RoomAction, RoomConfig, RoomError, RoomMessage, RoomState, RoomStats};
pub use chat::{ChatLog, MAX_LINE};
pub use checkpoint::{CheckpointError, RoomCheckpoint, max_checkpoint_size};
pub use rooms::{
    ROOM_CHANNEL_ID, ROOM_CHANNEL_NAME, RoomEnvelope, RoomOpening, RoomsCommand, RoomsCommandError,
    RoomsCore, RoomsEffect, RoomsEvent, RoomsOutcome, RoomsOutput, RoomsReply, TopicInput,
};
pub use update::{RoomId, RoomKeys, Stamp, StateHash, Update, UpdateId, UpdateKind, state_digest};
