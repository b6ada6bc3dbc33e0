//! Rooms: replicated application state over gossip (reference 002), as a
//! reactor.
//!
//! What a room is and promises — `reduce(state, update)` folded over
//! signed updates, one canonical chain for every member, catch-up and
//! snapshots with proof, what an attacker can do — is the core's, stated
//! in `reactor_gossip_proto::room` (re-exported here) and ADR 0009.
//!
//! [`Rooms`] is a reactor next to [`Gossip`](crate::Gossip): its core,
//! [`RoomsCore`] (every open room), runs on the room channel `0x0021`
//! (`room.proto`: heads, catch-up streams and snapshots between
//! neighbours) through `p2p::reactor::driver`, and its shell does the
//! gossip side with the node's [`GossipHandle`](crate::GossipHandle):
//! it subscribes to each room's topic (the subscription's events come
//! back to the core through the reactor's request queue) and publishes
//! the room's updates there, so they reach every member once, signed by
//! the node that wrote them as well.
//!
//! ```no_run
//! # async fn example(rooms: reactor_gossip::room::RoomsHandle) -> Result<(), reactor_gossip::room::RoomsError> {
//! use std::sync::Arc;
//! use p2p::Keypair;
//! use reactor_gossip::room::{ChatLog, RoomKeys};
//!
//! let admin = Keypair::generate();
//! let write = Keypair::generate(); // shared with every writer
//! let keys = RoomKeys::new(admin.peer_id(), "lobby", write.peer_id());
//! let mut lobby = rooms
//!     .open(keys, Some(write), None, Arc::new(ChatLog), Vec::<p2p::PeerId>::new())
//!     .await?;
//! lobby.write("hello, room").await?;
//! lobby.changed().await?;
//! println!("{:?}", ChatLog::lines(&lobby.view().state));
//! # Ok(()) }
//! ```
//!
//! # What the reactor adds
//!
//! - A handle's write is in its room's view ([`RoomHandle::view`]) when
//!   the write returns; every other change of the head or the counters is
//!   published after the driver's step that made it.
//! - A room whose topic cannot be joined is not opened
//!   ([`RoomsError::Gossip`]).
//! - Publications never block the core for long: the shell awaits the
//!   gossip reactor's answer (which never waits on rooms); one that fails
//!   is only logged — catch-up and re-posting repair it.
//! - Topic events wait in the reactor's request queue (bounded); a
//!   subscription that lags loses events, which the next head exchange
//!   repairs.
//! - Each room's checkpoint is saved in the reactor's [`RoomStore`]
//!   ([`Rooms::with_store`]; in memory by default, LMDB on the node,
//!   [`store`]) when its head moves, at most once per `persist_interval`
//!   (1 s), and read back when the reactor starts: a room opened again
//!   after a restart starts at its saved head
//!   ([`RoomView::saved_height`] says what is on disk) and fetches only
//!   what it missed. A record that does not read, or whose proof does not
//!   hold, is logged with its reason and the room starts from genesis.

mod reactor;
pub mod store;

pub use reactor::{RoomHandle, RoomView, Rooms, RoomsError, RoomsHandle};
pub use reactor_gossip_proto::room::{
    ChatLog, CheckpointError, MAX_LINE, ROOM_CHANNEL_ID, ROOM_CHANNEL_NAME, Reducer, RoomAction,
    RoomCheckpoint, RoomConfig, RoomEnvelope, RoomError, RoomId, RoomKeys, RoomMessage,
    RoomOpening, RoomState, RoomStats, RoomsCommand, RoomsCommandError, RoomsCore, RoomsEffect,
    RoomsEvent, RoomsOutcome, RoomsOutput, RoomsReply, Stamp, StateHash, TopicInput, Update,
    UpdateId, UpdateKind, chain, state_digest, update, wire,
};
#[cfg(feature = "heed")]
pub use store::HeedRoomStore;
pub use store::{MemoryRoomStore, RoomStore, RoomStoreError};
