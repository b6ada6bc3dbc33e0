//! Room identities, keys and signed updates.

use std::fmt;

use bytes::Bytes;
use p2p_core::{IdentityError, Keypair, PeerId};
use sha2::{Digest, Sha256};

use crate::state::message::TopicId;

const ROOM_DOMAIN: &[u8] = b"switchyard/room/v1/id";
const GENESIS_DOMAIN: &[u8] = b"switchyard/room/v1/genesis";
const UPDATE_DOMAIN: &[u8] = b"switchyard/room/v1/update";
const CHAIN_DOMAIN: &[u8] = b"switchyard/room/v1/chain";
const STATE_DOMAIN: &[u8] = b"switchyard/room/v1/state";
/// Domain of update signatures (write and admin keys).
pub const UPDATE_SIGNATURE_DOMAIN: &str = "switchyard/room/v1/update";

fn hash(domain: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((domain.len() as u64).to_be_bytes());
    hasher.update(domain);
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

fn short_hex(bytes: &[u8]) -> String {
    bytes.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// A room: the hash of its admin key and its name.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoomId([u8; 32]);

impl RoomId {
    /// The room `name` administered by `admin` (a public key).
    pub fn new(admin: &PeerId, name: &str) -> Self {
        Self(hash(ROOM_DOMAIN, &[admin.as_bytes(), name.as_bytes()]))
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The gossip topic the room's updates travel on.
    pub fn topic(&self) -> TopicId {
        TopicId::from_bytes(self.0)
    }
}

impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomId({})", short_hex(&self.0))
    }
}

/// A state of a room: the hash of the chain of updates that led to it.
/// Each update names the hash it applies to and produces
/// `hash(parent ‖ update id)`, so a hash stands for one history.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateHash([u8; 32]);

impl StateHash {
    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The hash after `update` applied to this state.
    pub fn child(&self, update: &UpdateId) -> StateHash {
        StateHash(hash(CHAIN_DOMAIN, &[&self.0, &update.0]))
    }
}

impl fmt::Debug for StateHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateHash({})", short_hex(&self.0))
    }
}

impl fmt::Display for StateHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// An update's identity: the hash of everything it says.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UpdateId([u8; 32]);

impl UpdateId {
    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for UpdateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for UpdateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UpdateId({})", short_hex(&self.0))
    }
}

/// What a room is, as every member knows it: its id, its admin's public
/// key and the write key it started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomKeys {
    /// The room.
    pub room: RoomId,
    /// The admin's public key: signs key rotations.
    pub admin: PeerId,
    /// The first write key's public half: signs updates until rotated.
    pub initial_write_key: PeerId,
}

impl RoomKeys {
    /// The room `name` of `admin` starting with `write_key`.
    pub fn new(admin: PeerId, name: &str, initial_write_key: PeerId) -> Self {
        Self {
            room: RoomId::new(&admin, name),
            admin,
            initial_write_key,
        }
    }

    /// The state before any update.
    pub fn genesis(&self) -> StateHash {
        StateHash(hash(
            GENESIS_DOMAIN,
            &[
                self.room.as_bytes(),
                self.admin.as_bytes(),
                self.initial_write_key.as_bytes(),
            ],
        ))
    }
}

/// The digest of a room's state bytes, which every update signs for the
/// state it produces: what lets a member check a snapshot's bytes against
/// a signed update instead of trusting its sender.
pub fn state_digest(state: &[u8]) -> [u8; 32] {
    hash(STATE_DOMAIN, &[state])
}

/// Where an update stands and what it produces, signed with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Its height: the parent's plus one.
    pub height: u64,
    /// Rotations on its chain, its own included: a write carries its
    /// parent's epoch, a rotation its parent's plus one. A chain of a
    /// higher epoch beats any of a lower one, so a rotation is a
    /// checkpoint a revoked key cannot fork past.
    pub epoch: u64,
    /// [`state_digest`] of the state after it is applied.
    pub digest: [u8; 32],
}

/// What an update does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateKind {
    /// Application data for the reducer, signed with the write key.
    Write(Bytes),
    /// The admin replaces the write key (and so removes whoever it does not
    /// give the new secret to), signed with the admin key.
    Rotate(PeerId),
}

/// A signed update of a room's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The room.
    pub room: RoomId,
    /// The state it applies to.
    pub parent: StateHash,
    /// What it does.
    pub kind: UpdateKind,
    /// Its height, epoch and resulting state's digest.
    pub stamp: Stamp,
    /// The public key that signed it (the write key in force at `parent`,
    /// or the admin key for a rotation).
    pub signer: PeerId,
    /// ed25519 over the id, in [`UPDATE_SIGNATURE_DOMAIN`].
    pub signature: [u8; 64],
}

impl Update {
    fn kind_bytes(kind: &UpdateKind) -> (u8, &[u8]) {
        match kind {
            UpdateKind::Write(body) => (0, body.as_ref()),
            UpdateKind::Rotate(key) => (1, key.as_bytes().as_slice()),
        }
    }

    fn compute_id(
        room: &RoomId,
        parent: &StateHash,
        kind: &UpdateKind,
        stamp: &Stamp,
        signer: &PeerId,
    ) -> UpdateId {
        let (tag, body) = Self::kind_bytes(kind);
        UpdateId(hash(
            UPDATE_DOMAIN,
            &[
                room.as_bytes(),
                parent.as_bytes(),
                &[tag],
                body,
                &stamp.height.to_be_bytes(),
                &stamp.epoch.to_be_bytes(),
                &stamp.digest,
                signer.as_bytes(),
            ],
        ))
    }

    /// Signs `kind` applied to `parent` with `key` (the write key, or the
    /// admin key for a rotation).
    pub fn sign(
        key: &Keypair,
        room: RoomId,
        parent: StateHash,
        kind: UpdateKind,
        stamp: Stamp,
    ) -> Self {
        let signer = key.peer_id();
        let id = Self::compute_id(&room, &parent, &kind, &stamp, &signer);
        let signature = key.sign_in_domain(UPDATE_SIGNATURE_DOMAIN, id.as_bytes());
        Self {
            room,
            parent,
            kind,
            stamp,
            signer,
            signature,
        }
    }

    /// The update's id.
    pub fn id(&self) -> UpdateId {
        Self::compute_id(
            &self.room,
            &self.parent,
            &self.kind,
            &self.stamp,
            &self.signer,
        )
    }

    /// The state it produces.
    pub fn child(&self) -> StateHash {
        self.parent.child(&self.id())
    }

    /// Checks the signature (not whether the signer may sign: the chain
    /// knows which key is in force).
    pub fn verify(&self) -> Result<(), IdentityError> {
        self.signer.verify_in_domain(
            UPDATE_SIGNATURE_DOMAIN,
            self.id().as_bytes(),
            &self.signature,
        )
    }

    /// Bytes on the wire (about) — for size limits.
    pub fn size(&self) -> usize {
        let (_, body) = Self::kind_bytes(&self.kind);
        body.len() + 32 * 4 + 64 + 40
    }
}
