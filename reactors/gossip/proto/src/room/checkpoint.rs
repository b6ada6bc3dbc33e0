//! A room's checkpoint: what a node keeps of a room across restarts.
//!
//! A checkpoint is the room's head as a snapshot carries it — the state,
//! the signed update that produced it and, for a write after a rotation,
//! the admin's rotation that put its signer in force — so a node restores
//! a room exactly as it would adopt a neighbour's snapshot: **with
//! proof**. A record altered on disk (a flipped byte in the state, a
//! forged head) is refused when the room opens, and the room starts from
//! genesis and catches up from its neighbours; it never panics and never
//! makes the node adopt a state the room's keys did not sign.
//!
//! The record is one version byte ([`CHECKPOINT_VERSION`]) and a Protobuf
//! `RoomMessage` of kind `Snapshot` (`room.proto`). Its length is checked
//! against [`max_checkpoint_size`] before anything is decoded, so a
//! record never allocates more than the room's state cap allows.
//!
//! The core asks for checkpoints ([`RoomsEffect::Save`](crate::room::RoomsEffect::Save))
//! and is handed the stored ones when it starts
//! ([`RoomsCore::restore`](crate::room::RoomsCore::restore)); the driver's
//! shell reads and writes them (`reactor_gossip::room::store`).

use bytes::Bytes;
use prost::Message as _;

use crate::room::chain::RoomMessage;
use crate::room::update::{RoomId, Update};
use crate::room::wire;
use crate::room_proto as proto;

/// The format of a checkpoint record (its first byte).
pub const CHECKPOINT_VERSION: u8 = 1;

/// Bytes a checkpoint's head update, rotation proof and framing may take
/// beside the state: what the room channel allows a snapshot beside it.
pub const CHECKPOINT_OVERHEAD: usize = 64 * 1024;

/// The largest checkpoint record of a room whose state is at most
/// `max_state_size` bytes.
pub fn max_checkpoint_size(max_state_size: usize) -> usize {
    max_state_size.saturating_add(CHECKPOINT_OVERHEAD + 1)
}

/// A room's head with its proof, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomCheckpoint {
    /// The room.
    pub room: RoomId,
    /// The signed update that produced the head.
    pub head: Update,
    /// For a write of epoch > 0: the admin's rotation of that epoch.
    pub rotation: Option<Update>,
    /// The state at the head.
    pub state: Bytes,
}

/// Why a stored checkpoint could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The record is empty.
    #[error("empty room checkpoint record")]
    Empty,
    /// The record's format is not one this node reads.
    #[error("room checkpoint record of version {0}, this node reads version {CHECKPOINT_VERSION}")]
    Version(u8),
    /// The record is longer than the room's state cap allows.
    #[error(
        "room checkpoint record of {size} bytes, over the limit of {max} (max_room_state + 64 KiB)"
    )]
    TooLarge {
        /// The record's length.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The record does not decode, or is not a snapshot.
    #[error("room checkpoint record does not decode: {0}")]
    Malformed(String),
    /// The record is stored under another room's key.
    #[error("room checkpoint of room {found} stored under the key of room {key}")]
    WrongRoom {
        /// The room the key names.
        key: String,
        /// The room the record names.
        found: RoomId,
    },
}

impl RoomCheckpoint {
    /// The head's height.
    pub fn height(&self) -> u64 {
        self.head.stamp.height
    }

    /// The record: the version byte, then the Protobuf snapshot.
    pub fn encode(&self) -> Vec<u8> {
        let message = RoomMessage::Snapshot {
            head: Box::new(self.head.clone()),
            rotation: self.rotation.clone().map(Box::new),
            state: self.state.clone(),
        };
        let wire = wire::message_to_wire(self.room, &message);
        let mut out = Vec::with_capacity(1 + wire.encoded_len());
        out.push(CHECKPOINT_VERSION);
        wire.encode(&mut out)
            .unwrap_or_else(|_| unreachable!("a Vec grows as needed"));
        out
    }

    /// Reads a record stored under `key` (the room id's 32 bytes) for a
    /// room whose state is at most `max_state_size`. The length is checked
    /// before anything is decoded. The proof is not checked here: the room
    /// checks it when it opens ([`RoomsCore::open`](crate::room::RoomsCore::open)).
    pub fn decode(
        key: &[u8],
        record: &[u8],
        max_state_size: usize,
    ) -> Result<Self, CheckpointError> {
        let max = max_checkpoint_size(max_state_size);
        if record.len() > max {
            return Err(CheckpointError::TooLarge {
                size: record.len(),
                max,
            });
        }
        let (&version, body) = record.split_first().ok_or(CheckpointError::Empty)?;
        if version != CHECKPOINT_VERSION {
            return Err(CheckpointError::Version(version));
        }
        let malformed = |e: String| CheckpointError::Malformed(e);
        let wire = proto::RoomMessage::decode(body).map_err(|e| malformed(e.to_string()))?;
        let decoded =
            wire::message_from_wire(wire, max_state_size).map_err(|e| malformed(e.to_string()))?;
        let Some((
            room,
            RoomMessage::Snapshot {
                head,
                rotation,
                state,
            },
        )) = decoded
        else {
            return Err(malformed("not a snapshot".into()));
        };
        if key != room.as_bytes() {
            return Err(CheckpointError::WrongRoom {
                key: key.iter().take(8).map(|b| format!("{b:02x}")).collect(),
                found: room,
            });
        }
        Ok(Self {
            room,
            head: *head,
            rotation: rotation.map(|r| *r),
            // A copy: the record may be a view into the store's memory map.
            state: Bytes::copy_from_slice(&state),
        })
    }
}
