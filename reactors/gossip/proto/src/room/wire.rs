//! Checked conversion of room updates and messages from and to the wire
//! (`proto/room.proto`).

use bytes::Bytes;
use p2p_core::PeerId;

use crate::room::chain::RoomMessage;
use crate::room::update::{RoomId, Stamp, StateHash, Update, UpdateKind};
use crate::room_proto as proto;
use crate::state::message::WireError;

/// States a catch-up request names at most.
pub const MAX_KNOWN: usize = 64;
/// Updates in one `Updates` message at most.
pub const MAX_UPDATES: usize = 1024;

fn malformed(what: impl Into<String>) -> WireError {
    WireError::Malformed(what.into())
}

fn array<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N], WireError> {
    bytes
        .try_into()
        .map_err(|_| malformed(format!("{what} must be {N} bytes, got {}", bytes.len())))
}

fn key(bytes: &[u8], what: &str) -> Result<PeerId, WireError> {
    PeerId::from_bytes(bytes).map_err(|e| malformed(format!("{what}: {e}")))
}

fn hash(bytes: &[u8], what: &str) -> Result<StateHash, WireError> {
    Ok(StateHash::from_bytes(array(bytes, what)?))
}

/// An update from its wire form.
pub fn update_from_wire(wire: proto::Update) -> Result<Update, WireError> {
    let kind = match wire.kind {
        // A copy: the body is a view into the frame (or gossip payload) it
        // came in, and an update is kept in the room's tree long after.
        Some(proto::update::Kind::Write(body)) => UpdateKind::Write(Bytes::copy_from_slice(&body)),
        Some(proto::update::Kind::Rotate(k)) => UpdateKind::Rotate(key(&k, "new write key")?),
        None => return Err(malformed("update without a kind")),
    };
    Ok(Update {
        room: RoomId::from_bytes(array(&wire.room, "room")?),
        parent: hash(&wire.parent, "parent")?,
        kind,
        stamp: Stamp {
            height: wire.height,
            epoch: wire.epoch,
            digest: array(&wire.state_digest, "state digest")?,
        },
        signer: key(&wire.signer, "signer")?,
        signature: array(&wire.signature, "signature")?,
    })
}

/// An update's wire form.
pub fn update_to_wire(update: &Update) -> proto::Update {
    proto::Update {
        room: Bytes::copy_from_slice(update.room.as_bytes()),
        parent: Bytes::copy_from_slice(update.parent.as_bytes()),
        kind: Some(match &update.kind {
            UpdateKind::Write(body) => proto::update::Kind::Write(body.clone()),
            UpdateKind::Rotate(k) => {
                proto::update::Kind::Rotate(Bytes::copy_from_slice(k.as_bytes()))
            }
        }),
        signer: Bytes::copy_from_slice(update.signer.as_bytes()),
        signature: Bytes::copy_from_slice(&update.signature),
        height: update.stamp.height,
        epoch: update.stamp.epoch,
        state_digest: Bytes::copy_from_slice(&update.stamp.digest),
    }
}

/// A room message from its wire form; `Ok(None)` for a kind this node
/// does not know. A snapshot larger than `max_state_size` is refused.
pub fn message_from_wire(
    wire: proto::RoomMessage,
    max_state_size: usize,
) -> Result<Option<(RoomId, RoomMessage)>, WireError> {
    use proto::room_message::Kind;
    let room = RoomId::from_bytes(array(&wire.room, "room")?);
    let Some(kind) = wire.kind else {
        return Ok(None);
    };
    let message = match kind {
        Kind::Head(h) => RoomMessage::Head {
            hash: hash(&h.hash, "head")?,
            height: h.height,
            epoch: h.epoch,
        },
        Kind::CatchUp(c) => {
            if c.known.len() > MAX_KNOWN {
                return Err(malformed(format!(
                    "{} known states, at most {MAX_KNOWN}",
                    c.known.len()
                )));
            }
            RoomMessage::CatchUp {
                known: c
                    .known
                    .iter()
                    .map(|h| hash(h, "known state"))
                    .collect::<Result<_, _>>()?,
            }
        }
        Kind::Updates(u) => {
            if u.updates.len() > MAX_UPDATES {
                return Err(malformed(format!(
                    "{} updates, at most {MAX_UPDATES}",
                    u.updates.len()
                )));
            }
            RoomMessage::Updates {
                updates: u
                    .updates
                    .into_iter()
                    .map(update_from_wire)
                    .collect::<Result<_, _>>()?,
            }
        }
        Kind::Snapshot(s) => {
            if s.state.len() > max_state_size {
                return Err(WireError::TooLarge {
                    size: s.state.len(),
                    max: max_state_size,
                });
            }
            RoomMessage::Snapshot {
                head: Box::new(update_from_wire(
                    s.head
                        .ok_or_else(|| malformed("snapshot without its head update"))?,
                )?),
                rotation: s.rotation.map(update_from_wire).transpose()?.map(Box::new),
                state: s.state,
            }
        }
    };
    Ok(Some((room, message)))
}

/// A room message's wire form.
pub fn message_to_wire(room: RoomId, message: &RoomMessage) -> proto::RoomMessage {
    use proto::room_message::Kind;
    let b = |h: &StateHash| Bytes::copy_from_slice(h.as_bytes());
    let kind = match message {
        RoomMessage::Head {
            hash,
            height,
            epoch,
        } => Kind::Head(proto::Head {
            hash: b(hash),
            height: *height,
            epoch: *epoch,
        }),
        RoomMessage::CatchUp { known } => Kind::CatchUp(proto::CatchUp {
            known: known.iter().map(b).collect(),
        }),
        RoomMessage::Updates { updates } => Kind::Updates(proto::Updates {
            updates: updates.iter().map(update_to_wire).collect(),
        }),
        RoomMessage::Snapshot {
            head,
            rotation,
            state,
        } => Kind::Snapshot(proto::Snapshot {
            state: state.clone(),
            head: Some(update_to_wire(head)),
            rotation: rotation.as_deref().map(update_to_wire),
        }),
    };
    proto::RoomMessage {
        room: Bytes::copy_from_slice(room.as_bytes()),
        kind: Some(kind),
    }
}
