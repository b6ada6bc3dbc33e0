//! The sans-IO core of one room: the tree of updates, the canonical chain,
//! the state at its head, catch-up and snapshots.
//!
//! Updates form a tree: each names the state it applies to. The
//! **canonical head** is the tip of the longest chain, ties broken by the
//! smaller hash, so every node holding the same updates picks the same
//! head and computes the same state (`reduce` folded along the chain).
//! Concurrent writes fork; the losing branch's writes are not applied, and
//! their author re-posts them on the new head (`repost_after`), so a write
//! is lost only if its author is gone.
//!
//! A node that receives an update whose parent it does not know asks the
//! sender for everything since the states it knows (a *locator*: its head
//! and ancestors at doubling distances), and gets one `Updates` stream, or
//! a `Snapshot` of the head's state when the gap is too long or no
//! locator entry is on the sender's chain. Every `head_interval` a node
//! tells its neighbours its head; a neighbour with a better head it does
//! not know is asked the same way — so partitions heal.
//!
//! **What is trusted** (ADR 0009, issue 14). Room messages are taken only
//! from the room's neighbours (its gossip topic's active view), and answers
//! (`Updates`, `Snapshot`) only from a neighbour we asked and that has not
//! answered yet. Every update is signed, and its stamp — height, epoch
//! (rotations so far) and the digest of the state it produces — is checked
//! as it is applied: an update whose digest does not match the state we
//! compute is refused with everything built on it. A snapshot carries the
//! signed update that produced its head and, for a write after a rotation,
//! the admin's rotation that made its signer the write key; its state must
//! match the head update's digest. So a peer without the room's keys cannot
//! make a member adopt any state. The fork choice is (epoch, height, hash):
//! a chain past a rotation beats every chain the revoked key can build.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use p2p_core::{Keypair, PeerId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::room::update::{RoomKeys, Stamp, StateHash, Update, UpdateId, UpdateKind, state_digest};

/// Turns a room's state and an update into the next state.
///
/// The state is bytes the reducer owns the format of. `reduce` must be
/// deterministic (every node computes the same state from the same
/// updates). An error means "this update does nothing": the state must be
/// left as it was, and the update stays in the history as a no-op.
pub trait Reducer: Send + Sync + 'static {
    /// Applies `update` to `state`.
    fn reduce(&self, state: &mut Vec<u8>, update: &[u8]) -> Result<(), String>;
}

/// A room's limits and timings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomConfig {
    /// The largest state; an update that would grow it beyond is a no-op.
    pub max_state_size: usize,
    /// Updates kept behind the head (older ones are folded into a
    /// checkpoint; a fork older than this is not followed).
    pub retain: u64,
    /// Updates with an unknown parent held while catching up.
    pub max_orphans: usize,
    /// Updates sent in one catch-up answer at most (beyond: a snapshot).
    pub catch_up_max_updates: usize,
    /// Bytes of updates in one catch-up answer at most.
    pub catch_up_max_bytes: usize,
    /// How often the head is sent to the neighbours.
    pub head_interval: Duration,
    /// A peer is asked to catch us up at most this often.
    pub catch_up_gap: Duration,
    /// An own write not on the canonical chain this long after it was
    /// written (or last re-posted) is re-posted on the head. Own writes are
    /// watched until they are final (folded into the checkpoint, which no
    /// fork crosses), so a longer fork cannot erase them, however late.
    pub repost_after: Duration,
    /// A catch-up request unanswered this long is given up: its answer is
    /// no longer taken.
    pub catch_up_timeout: Duration,
    /// Updates held in the tree above the base at most (the canonical
    /// chain and its forks); an update beyond it that would not become the
    /// head is refused.
    pub max_nodes: usize,
    /// Bytes of state a member copies re-applying updates to switch
    /// branches, per second on average (a budget; a write-key holder that
    /// forks could otherwise make each member copy the whole state once
    /// per retained update, per fork). A switch over it is deferred, and
    /// made once the budget allows: the fork choice is unchanged, only
    /// later.
    pub reorg_bytes_per_second: u64,
    /// The budget's size: bytes of reorg work in a burst. A single switch
    /// costing more waits until the budget is full.
    pub max_reorg_bytes: u64,
    /// A room's checkpoint (its head, state and proof) is saved at most
    /// this often: the first change after a quiet spell at once, later
    /// ones at most once per interval (a room's state is up to
    /// `max_state_size`, rewritten whole). What a crash loses of the last
    /// interval is caught up from the neighbours after the restart.
    pub persist_interval: Duration,
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            max_state_size: 5 * 1024 * 1024,
            retain: 1024,
            max_orphans: 256,
            catch_up_max_updates: 1024,
            catch_up_max_bytes: 4 * 1024 * 1024,
            head_interval: Duration::from_secs(5),
            catch_up_gap: Duration::from_secs(1),
            repost_after: Duration::from_secs(3),
            catch_up_timeout: Duration::from_secs(10),
            max_nodes: 4096,
            reorg_bytes_per_second: 64 * 1024 * 1024,
            max_reorg_bytes: 256 * 1024 * 1024,
            persist_interval: Duration::from_secs(1),
        }
    }
}

/// A room message between two members (not broadcast).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomMessage {
    /// "My head is this."
    Head {
        /// The head's state hash.
        hash: StateHash,
        /// Its height (updates since genesis).
        height: u64,
        /// Its epoch (rotations since genesis).
        epoch: u64,
    },
    /// "Send me what you have since one of these states."
    CatchUp {
        /// Known states, newest first.
        known: Vec<StateHash>,
    },
    /// The canonical chain's updates after a state the asker knows, in
    /// order.
    Updates {
        /// The updates.
        updates: Vec<Update>,
    },
    /// The state at the sender's head, with its proof.
    Snapshot {
        /// The signed update that produced the head: its stamp gives the
        /// height, epoch and the state's digest.
        head: Box<Update>,
        /// For a write of epoch > 0: the admin's rotation of that epoch,
        /// which put the head's signer in force.
        rotation: Option<Box<Update>>,
        /// The state.
        state: Bytes,
    },
}

/// What the room core asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomAction {
    /// Broadcast `update` on the room's topic.
    Publish(Update),
    /// Send `message` to `to`.
    Send {
        /// The member.
        to: PeerId,
        /// The message.
        message: RoomMessage,
    },
    /// The head changed: the state is `hash` at `height`.
    Changed {
        /// The new head.
        hash: StateHash,
        /// Its height.
        height: u64,
    },
}

/// Why a write or rotation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    /// This node does not hold the write key in force.
    #[error("this node does not hold the room's current write key")]
    NotWriter,
    /// This node does not hold the admin key.
    #[error("this node does not hold the room's admin key")]
    NotAdmin,
    /// The reducer refused the update.
    #[error("the reducer refused the update: {0}")]
    Refused(String),
    /// The update would grow the state past `max_state_size`.
    #[error("the state would grow to {size} bytes, over max_state_size {max}")]
    TooLarge {
        /// The state's size after the update.
        size: usize,
        /// The limit.
        max: usize,
    },
}

/// What a room did, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomStats {
    /// Updates added to the tree.
    pub updates_accepted: u64,
    /// Updates already known.
    pub duplicates: u64,
    /// Updates refused: bad signature, or signed by a key not in force.
    pub updates_refused: u64,
    /// Writes the reducer refused or that would exceed the size cap
    /// (no-ops in the history).
    pub writes_ignored: u64,
    /// Updates held for an unknown parent and dropped for room.
    pub orphans_dropped: u64,
    /// Switches of the head to another branch.
    pub reorgs: u64,
    /// Catch-up requests sent.
    pub catch_ups_sent: u64,
    /// Catch-up requests answered with updates.
    pub catch_ups_served: u64,
    /// Catch-up requests answered with a snapshot.
    pub snapshots_served: u64,
    /// Snapshots taken as our state.
    pub snapshots_adopted: u64,
    /// Own writes re-posted after their branch lost.
    pub reposts: u64,
    /// Room messages ignored: not from a neighbour, or an answer we did
    /// not ask for (or no longer wait for).
    pub unsolicited: u64,
    /// Snapshots refused: their proof did not hold (bad signature, a
    /// signer not in force, a state that does not match its digest).
    pub snapshots_refused: u64,
    /// Updates refused because `max_nodes` were held.
    pub nodes_full: u64,
    /// Bytes of state copied re-applying updates to switch branches.
    pub reorg_bytes: u64,
    /// Own writes no longer watched for re-posting before they were final
    /// (more than 256 unfinished at once).
    pub own_writes_dropped: u64,
    /// Branch switches deferred because the reorg budget was spent.
    pub reorgs_deferred: u64,
}

#[derive(Debug, Clone)]
struct Node {
    hash: StateHash,
    parent: StateHash,
    height: u64,
    update: Update,
}

#[derive(Debug, Clone)]
struct Base {
    hash: StateHash,
    height: u64,
    epoch: u64,
    state: Vec<u8>,
    write_key: PeerId,
}

#[derive(Debug)]
struct OwnWrite {
    body: Bytes,
    /// The states each version of it produced.
    versions: Vec<StateHash>,
    last_try: Instant,
}

/// One room's replicated state.
pub struct RoomState {
    keys: RoomKeys,
    writer: Option<Keypair>,
    admin: Option<Keypair>,
    reducer: Arc<dyn Reducer>,
    config: RoomConfig,
    rng: ChaCha12Rng,
    /// Everything before the retained tree, folded.
    base: Base,
    /// The retained tree (above the base), by state hash.
    nodes: HashMap<StateHash, Node>,
    /// The canonical head and its state.
    head: Base,
    orphans: Vec<Update>,
    own: Vec<OwnWrite>,
    asked: HashMap<PeerId, Instant>,
    /// Catch-up requests waiting for their answer, with their deadline.
    awaiting: HashMap<PeerId, Instant>,
    /// The room's neighbours: the only peers room messages are taken from.
    neighbours: HashSet<PeerId>,
    /// The update that produced the base (none at genesis), and the
    /// rotations seen by epoch: the proof a snapshot of our head carries.
    base_update: Option<Update>,
    rotations: std::collections::BTreeMap<u64, Update>,
    next_head: Instant,
    /// Bytes of reorg work left (may go below zero: a switch larger than
    /// the budget is made when it is full), as of `reorg_at`.
    reorg_budget: f64,
    reorg_at: Instant,
    /// A better branch is known and its switch was deferred: retried at
    /// this instant.
    reorg_retry: Option<Instant>,
    stats: RoomStats,
}

impl std::fmt::Debug for RoomState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomState")
            .field("room", &self.keys.room)
            .field("head", &self.head.hash)
            .field("height", &self.head.height)
            .finish_non_exhaustive()
    }
}

/// Rotations whose proof is kept (the newest).
const MAX_ROTATIONS: usize = 16;
/// Own writes watched at once until they are final.
const MAX_OWN_WRITES: usize = 256;
/// A switch deferred by the reorg budget is tried again after this.
const REORG_RETRY: Duration = Duration::from_millis(500);

/// Whether (epoch, height, hash) `a` beats `b`: a later epoch, then
/// longer, then the smaller hash.
fn better(a: (u64, u64, &StateHash), b: (u64, u64, &StateHash)) -> bool {
    (a.0, a.1, std::cmp::Reverse(a.2)) > (b.0, b.1, std::cmp::Reverse(b.2))
}

/// Why a snapshot's proof did not hold.
fn snapshot_error(what: &str) -> Result<PeerId, String> {
    Err(what.to_string())
}

impl RoomState {
    /// A member of the room `keys`, writing with `writer` (the write
    /// key's secret, if it holds it) and rotating with `admin`.
    pub fn new(
        keys: RoomKeys,
        writer: Option<Keypair>,
        admin: Option<Keypair>,
        reducer: Arc<dyn Reducer>,
        config: RoomConfig,
        seed: u64,
        now: Instant,
    ) -> Self {
        let reorg_budget = config.max_reorg_bytes as f64;
        let base = Base {
            hash: keys.genesis(),
            height: 0,
            epoch: 0,
            state: Vec::new(),
            write_key: keys.initial_write_key,
        };
        Self {
            keys,
            writer,
            admin,
            reducer,
            config,
            rng: ChaCha12Rng::seed_from_u64(seed),
            head: base.clone(),
            base,
            nodes: HashMap::new(),
            orphans: Vec::new(),
            own: Vec::new(),
            asked: HashMap::new(),
            awaiting: HashMap::new(),
            neighbours: HashSet::new(),
            base_update: None,
            rotations: std::collections::BTreeMap::new(),
            next_head: now,
            reorg_budget,
            reorg_at: now,
            reorg_retry: None,
            stats: RoomStats::default(),
        }
    }

    /// The room's keys.
    pub fn keys(&self) -> &RoomKeys {
        &self.keys
    }

    /// The head's hash.
    pub fn hash(&self) -> StateHash {
        self.head.hash
    }

    /// The head's height.
    pub fn height(&self) -> u64 {
        self.head.height
    }

    /// The state at the head.
    pub fn state(&self) -> &[u8] {
        &self.head.state
    }

    /// The write key in force at the head.
    pub fn write_key(&self) -> PeerId {
        self.head.write_key
    }

    /// Counters.
    pub fn stats(&self) -> &RoomStats {
        &self.stats
    }

    /// Gives this node the write key's secret (after a rotation).
    pub fn set_writer(&mut self, writer: Option<Keypair>) {
        self.writer = writer;
    }

    fn is_known(&self, hash: &StateHash) -> bool {
        *hash == self.base.hash || self.nodes.contains_key(hash)
    }

    fn height_of(&self, hash: &StateHash) -> Option<u64> {
        if *hash == self.base.hash {
            return Some(self.base.height);
        }
        self.nodes.get(hash).map(|n| n.height)
    }

    fn epoch_of(&self, hash: &StateHash) -> Option<u64> {
        if *hash == self.base.hash {
            return Some(self.base.epoch);
        }
        self.nodes.get(hash).map(|n| n.update.stamp.epoch)
    }

    /// The updates from the base to `hash`, in order.
    fn path_to(&self, hash: &StateHash) -> Vec<&Node> {
        let mut path = Vec::new();
        let mut at = *hash;
        while at != self.base.hash {
            match self.nodes.get(&at) {
                Some(node) => {
                    path.push(node);
                    at = node.parent;
                }
                None => break,
            }
        }
        path.reverse();
        path
    }

    /// The write key in force at `hash`.
    fn write_key_at(&self, hash: &StateHash) -> PeerId {
        if *hash == self.head.hash {
            return self.head.write_key;
        }
        let mut at = *hash;
        while at != self.base.hash {
            let Some(node) = self.nodes.get(&at) else {
                break;
            };
            if let UpdateKind::Rotate(key) = &node.update.kind {
                return *key;
            }
            at = node.parent;
        }
        self.base.write_key
    }

    /// Applies one update to a state (a refused write is a no-op).
    /// Returns whether the result matches the update's signed digest.
    fn apply(&mut self, state: &mut Base, hash: StateHash, update: &Update) -> bool {
        match &update.kind {
            UpdateKind::Rotate(key) => state.write_key = *key,
            UpdateKind::Write(body) => {
                let mut next = state.state.clone();
                let ok = self.reducer.reduce(&mut next, body).is_ok()
                    && next.len() <= self.config.max_state_size;
                if ok {
                    state.state = next;
                } else {
                    self.stats.writes_ignored += 1;
                }
            }
        }
        state.hash = hash;
        state.height += 1;
        state.epoch = update.stamp.epoch;
        state_digest(&state.state) == update.stamp.digest
    }

    /// The state `body` written on the head would produce (a no-op if the
    /// reducer refuses it or it would break the size cap).
    fn written(&self, body: &[u8]) -> Result<Vec<u8>, RoomError> {
        let mut next = self.head.state.clone();
        self.reducer
            .reduce(&mut next, body)
            .map_err(RoomError::Refused)?;
        if next.len() > self.config.max_state_size {
            return Err(RoomError::TooLarge {
                size: next.len(),
                max: self.config.max_state_size,
            });
        }
        Ok(next)
    }

    /// The stamp of an update on the head producing `state`.
    fn stamp(&self, epoch: u64, state: &[u8]) -> Stamp {
        Stamp {
            height: self.head.height + 1,
            epoch,
            digest: state_digest(state),
        }
    }

    /// Forgets `hash` and everything built on it.
    fn remove_branch(&mut self, hash: StateHash) {
        let mut gone = HashSet::from([hash]);
        let mut nodes: Vec<(StateHash, u64, StateHash)> = self
            .nodes
            .values()
            .map(|n| (n.hash, n.height, n.parent))
            .collect();
        nodes.sort_by_key(|(_, height, _)| *height);
        for (h, _, parent) in nodes {
            if gone.contains(&parent) {
                gone.insert(h);
            }
        }
        for h in gone {
            self.nodes.remove(&h);
        }
    }

    /// The states this node knows, newest first, for a catch-up request:
    /// the head, ancestors at doubling distances, the base.
    fn locator(&self) -> Vec<StateHash> {
        let path = self.path_to(&self.head.hash);
        let mut known = vec![self.head.hash];
        let mut step = 1usize;
        let mut i = path.len();
        while i > step && known.len() < 30 {
            i -= step;
            known.push(path[i - 1].hash);
            step *= 2;
        }
        // Not genesis when the base is past it (a snapshot adopted or a
        // checkpoint restored): updates from genesis would not attach
        // here, a snapshot would.
        known.push(self.base.hash);
        known.dedup();
        known
    }

    fn ask(&mut self, peer: PeerId, now: Instant, actions: &mut Vec<RoomAction>) {
        // Only a neighbour's answer would be taken.
        if !self.neighbours.contains(&peer) {
            return;
        }
        if self
            .asked
            .get(&peer)
            .is_some_and(|at| now.duration_since(*at) < self.config.catch_up_gap)
        {
            return;
        }
        self.asked.insert(peer, now);
        self.awaiting
            .insert(peer, now + self.config.catch_up_timeout);
        self.stats.catch_ups_sent += 1;
        actions.push(RoomAction::Send {
            to: peer,
            message: RoomMessage::CatchUp {
                known: self.locator(),
            },
        });
    }

    /// Writes `body`: applied here at once and published. Refused (not
    /// published) if this node lacks the write key in force, or if the
    /// reducer refuses it or it would exceed the size cap here.
    pub fn write(
        &mut self,
        body: Bytes,
        now: Instant,
    ) -> Result<(UpdateId, Vec<RoomAction>), RoomError> {
        let key = match &self.writer {
            Some(k) if k.peer_id() == self.head.write_key => k.clone(),
            _ => return Err(RoomError::NotWriter),
        };
        let next = self.written(&body)?;
        let update = Update::sign(
            &key,
            self.keys.room,
            self.head.hash,
            UpdateKind::Write(body.clone()),
            self.stamp(self.head.epoch, &next),
        );
        let id = update.id();
        let version = self.head.hash.child(&id);
        self.own.push(OwnWrite {
            body,
            versions: vec![version],
            last_try: now,
        });
        if self.own.len() > MAX_OWN_WRITES {
            // The oldest unfinished write is no longer watched.
            self.own.remove(0);
            self.stats.own_writes_dropped += 1;
        }
        let mut actions = vec![RoomAction::Publish(update.clone())];
        self.insert(update, None, now, &mut actions);
        Ok((id, actions))
    }

    /// Replaces the write key (admin only): published and applied here.
    pub fn rotate(
        &mut self,
        new_write_key: PeerId,
        now: Instant,
    ) -> Result<Vec<RoomAction>, RoomError> {
        let Some(admin) = self.admin.clone() else {
            return Err(RoomError::NotAdmin);
        };
        let update = Update::sign(
            &admin,
            self.keys.room,
            self.head.hash,
            UpdateKind::Rotate(new_write_key),
            self.stamp(self.head.epoch + 1, &self.head.state),
        );
        let mut actions = vec![RoomAction::Publish(update.clone())];
        self.insert(update, None, now, &mut actions);
        Ok(actions)
    }

    /// An update broadcast on the room's topic, relayed by `from`.
    pub fn on_update(&mut self, from: PeerId, update: Update, now: Instant) -> Vec<RoomAction> {
        let mut actions = Vec::new();
        self.insert(update, Some(from), now, &mut actions);
        actions
    }

    /// Adds a checked update to the tree and moves the head if it wins.
    fn insert(
        &mut self,
        update: Update,
        from: Option<PeerId>,
        now: Instant,
        actions: &mut Vec<RoomAction>,
    ) {
        if update.room != self.keys.room {
            self.stats.updates_refused += 1;
            return;
        }
        let Some(parent_height) = self.height_of(&update.parent) else {
            if self.orphans.len() >= self.config.max_orphans {
                self.orphans.remove(0);
                self.stats.orphans_dropped += 1;
            }
            if !self.orphans.contains(&update) {
                self.orphans.push(update);
            }
            if let Some(peer) = from {
                self.ask(peer, now, actions);
            }
            return;
        };
        let id = update.id();
        let hash = update.parent.child(&id);
        if self.is_known(&hash) {
            self.stats.duplicates += 1;
            return;
        }
        let parent_epoch = self.epoch_of(&update.parent).unwrap_or(0);
        let (allowed, epoch) = match &update.kind {
            UpdateKind::Write(_) => (self.write_key_at(&update.parent), parent_epoch),
            UpdateKind::Rotate(_) => (self.keys.admin, parent_epoch + 1),
        };
        if update.signer != allowed
            || update.stamp.height != parent_height + 1
            || update.stamp.epoch != epoch
            || update.verify().is_err()
        {
            self.stats.updates_refused += 1;
            return;
        }
        let wins = update.parent == self.head.hash
            || better(
                (epoch, parent_height + 1, &hash),
                (self.head.epoch, self.head.height, &self.head.hash),
            );
        if self.nodes.len() >= self.config.max_nodes && !wins {
            self.stats.nodes_full += 1;
            return;
        }
        self.stats.updates_accepted += 1;
        let parent = update.parent;
        self.nodes.insert(
            hash,
            Node {
                hash,
                parent,
                height: parent_height + 1,
                update: update.clone(),
            },
        );
        if let UpdateKind::Rotate(_) = update.kind {
            self.rotations.insert(epoch, update.clone());
            while self.rotations.len() > MAX_ROTATIONS {
                self.rotations.pop_first();
            }
        }
        if parent == self.head.hash {
            let mut head = std::mem::replace(
                &mut self.head,
                Base {
                    hash,
                    height: 0,
                    epoch: 0,
                    state: Vec::new(),
                    write_key: self.base.write_key,
                },
            );
            let before = head.clone();
            if self.apply(&mut head, hash, &update) {
                self.head = head;
                actions.push(RoomAction::Changed {
                    hash,
                    height: self.head.height,
                });
            } else {
                // Its signer lied about the state it produces.
                self.head = before;
                self.nodes.remove(&hash);
                self.stats.updates_accepted -= 1;
                self.stats.updates_refused += 1;
                return;
            }
        } else if wins {
            if !self.spend_reorg(hash, now) {
                // Within the fork choice, later: `on_tick` switches to the
                // best branch once the budget allows.
                self.stats.reorgs_deferred += 1;
                self.reorg_retry.get_or_insert(now + REORG_RETRY);
            } else if self.switch_to(hash) {
                actions.push(RoomAction::Changed {
                    hash,
                    height: self.head.height,
                });
            } else {
                return;
            }
        }
        // Updates that waited for this one.
        let waiting: Vec<Update> = {
            let (ready, rest): (Vec<Update>, Vec<Update>) = std::mem::take(&mut self.orphans)
                .into_iter()
                .partition(|u| u.parent == hash);
            self.orphans = rest;
            ready
        };
        for update in waiting {
            self.insert(update, None, now, actions);
        }
        self.advance_base();
    }

    /// What switching to `hash` costs, in bytes of state copied: one copy
    /// per update re-applied from the base.
    fn reorg_cost(&self, hash: &StateHash) -> u64 {
        let updates = self
            .height_of(hash)
            .unwrap_or(0)
            .saturating_sub(self.base.height);
        let state = self.head.state.len().max(self.base.state.len()) as u64;
        updates * state.max(1)
    }

    /// Spends the reorg budget for a switch to `hash`; false if it is
    /// spent (a switch larger than the whole budget waits until it is
    /// full, and leaves it in debt).
    fn spend_reorg(&mut self, hash: StateHash, now: Instant) -> bool {
        let burst = self.config.max_reorg_bytes as f64;
        let elapsed = now.saturating_duration_since(self.reorg_at).as_secs_f64();
        self.reorg_budget =
            (self.reorg_budget + elapsed * self.config.reorg_bytes_per_second as f64).min(burst);
        self.reorg_at = self.reorg_at.max(now);
        let cost = self.reorg_cost(&hash) as f64;
        if self.reorg_budget >= cost.min(burst) {
            self.reorg_budget -= cost;
            true
        } else {
            false
        }
    }

    /// The best branch the tree holds, by the fork choice.
    fn best_known(&self) -> StateHash {
        let mut best = (self.head.epoch, self.head.height, self.head.hash);
        for node in self.nodes.values() {
            let candidate = (node.update.stamp.epoch, node.height, node.hash);
            if better(
                (candidate.0, candidate.1, &candidate.2),
                (best.0, best.1, &best.2),
            ) {
                best = candidate;
            }
        }
        best.2
    }

    /// A deferred switch, if the budget now allows it.
    fn retry_reorg(&mut self, now: Instant, actions: &mut Vec<RoomAction>) {
        if self.reorg_retry.is_none_or(|at| now < at) {
            return;
        }
        self.reorg_retry = None;
        let best = self.best_known();
        if best == self.head.hash {
            return;
        }
        if !self.spend_reorg(best, now) {
            self.stats.reorgs_deferred += 1;
            self.reorg_retry = Some(now + REORG_RETRY);
            return;
        }
        if self.switch_to(best) {
            actions.push(RoomAction::Changed {
                hash: best,
                height: self.head.height,
            });
        } else {
            // That branch lied about a state and is gone: look again.
            self.reorg_retry = Some(now);
        }
    }

    /// Recomputes the head's state along the path to `hash`. If an update
    /// on the way does not produce the state its digest names, that branch
    /// is forgotten from there on, the head stays, and false is returned.
    fn switch_to(&mut self, hash: StateHash) -> bool {
        let path: Vec<(StateHash, Update)> = self
            .path_to(&hash)
            .into_iter()
            .map(|n| (n.hash, n.update.clone()))
            .collect();
        let mut state = self.base.clone();
        self.stats.reorg_bytes += self.reorg_cost(&hash);
        for (h, update) in &path {
            if !self.apply(&mut state, *h, update) {
                self.stats.updates_refused += 1;
                self.remove_branch(*h);
                return false;
            }
        }
        self.stats.reorgs += 1;
        self.head = state;
        true
    }

    /// Folds the oldest retained updates of the canonical chain into the
    /// base when the chain is longer than `retain`, and forgets branches
    /// that fork below the new base.
    fn advance_base(&mut self) {
        if self.head.height - self.base.height <= self.config.retain {
            return;
        }
        let target = self.head.height - self.config.retain / 2;
        let path: Vec<(StateHash, Update)> = self
            .path_to(&self.head.hash)
            .into_iter()
            .take_while(|n| n.height <= target)
            .map(|n| (n.hash, n.update.clone()))
            .collect();
        let mut base = self.base.clone();
        for (h, update) in &path {
            // Checked when it joined the canonical chain.
            self.apply(&mut base, *h, update);
        }
        if let Some((_, last)) = path.last() {
            self.base_update = Some(last.clone());
        }
        self.base = base;
        // Own writes folded into the checkpoint are final: no fork crosses
        // it, so they need no more watching.
        let folded: HashSet<StateHash> = path.iter().map(|(h, _)| *h).collect();
        self.own
            .retain(|w| !w.versions.iter().any(|v| folded.contains(v)));
        // Keep only descendants of the new base.
        let mut nodes: Vec<(StateHash, Node)> = self.nodes.drain().collect();
        nodes.sort_by_key(|(_, n)| n.height);
        let mut kept: HashSet<StateHash> = HashSet::from([self.base.hash]);
        for (hash, node) in nodes {
            if node.height > self.base.height && kept.contains(&node.parent) {
                kept.insert(hash);
                self.nodes.insert(hash, node);
            }
        }
    }

    /// A message from member `from`. Taken only from a neighbour; an
    /// answer only from one we asked and still wait for.
    pub fn on_message(
        &mut self,
        from: PeerId,
        message: RoomMessage,
        now: Instant,
    ) -> Vec<RoomAction> {
        let mut actions = Vec::new();
        if !self.neighbours.contains(&from) {
            self.stats.unsolicited += 1;
            return actions;
        }
        if matches!(
            message,
            RoomMessage::Updates { .. } | RoomMessage::Snapshot { .. }
        ) {
            let asked = self.awaiting.remove(&from).is_some_and(|by| now <= by);
            if !asked {
                self.stats.unsolicited += 1;
                return actions;
            }
        }
        match message {
            RoomMessage::Head {
                hash,
                height,
                epoch,
            } => {
                if !self.is_known(&hash)
                    && better(
                        (epoch, height, &hash),
                        (self.head.epoch, self.head.height, &self.head.hash),
                    )
                {
                    self.ask(from, now, &mut actions);
                }
            }
            RoomMessage::CatchUp { known } => self.serve(from, &known, &mut actions),
            RoomMessage::Updates { updates } => {
                for update in updates {
                    self.insert(update, None, now, &mut actions);
                }
                // Still missing something: the answer was cut short.
                if !self.orphans.is_empty() {
                    self.asked.remove(&from);
                }
            }
            RoomMessage::Snapshot {
                head,
                rotation,
                state,
            } => self.adopt(*head, rotation.as_deref(), state, now, &mut actions),
        }
        actions
    }

    /// Checks a snapshot's proof: the head update's signature by the key in
    /// force at its epoch (the initial write key, the admin, or the key of
    /// the admin's `rotation` of that epoch), and the state against the
    /// head update's digest. Returns the write key in force at the head.
    fn check_snapshot(
        &self,
        head: &Update,
        rotation: Option<&Update>,
        state: &[u8],
    ) -> Result<PeerId, String> {
        if head.room != self.keys.room {
            return snapshot_error("head update of another room");
        }
        if head.verify().is_err() {
            return snapshot_error("head update signature does not verify");
        }
        if state.len() > self.config.max_state_size || state_digest(state) != head.stamp.digest {
            return snapshot_error("state does not match the head update's digest");
        }
        match head.kind {
            UpdateKind::Rotate(key) if head.signer == self.keys.admin => Ok(key),
            UpdateKind::Rotate(_) => snapshot_error("rotation not signed by the admin"),
            UpdateKind::Write(_) => {
                let in_force = if head.stamp.epoch == 0 {
                    self.keys.initial_write_key
                } else {
                    match rotation {
                        Some(r)
                            if r.room == self.keys.room
                                && r.signer == self.keys.admin
                                && r.stamp.epoch == head.stamp.epoch
                                && r.verify().is_ok() =>
                        {
                            match r.kind {
                                UpdateKind::Rotate(key) => key,
                                UpdateKind::Write(_) => {
                                    return snapshot_error("the rotation proof is a write");
                                }
                            }
                        }
                        _ => return snapshot_error("no valid rotation for the head's epoch"),
                    }
                };
                if head.signer == in_force {
                    Ok(in_force)
                } else {
                    snapshot_error("head update not signed by the write key in force")
                }
            }
        }
    }

    /// Takes a snapshot whose proof holds and whose head beats ours.
    fn adopt(
        &mut self,
        head: Update,
        rotation: Option<&Update>,
        state: Bytes,
        now: Instant,
        actions: &mut Vec<RoomAction>,
    ) {
        let write_key = match self.check_snapshot(&head, rotation, &state) {
            Ok(key) => key,
            Err(_) => {
                self.stats.snapshots_refused += 1;
                return;
            }
        };
        let hash = head.child();
        let (height, epoch) = (head.stamp.height, head.stamp.epoch);
        if self.is_known(&hash)
            || !better(
                (epoch, height, &hash),
                (self.head.epoch, self.head.height, &self.head.hash),
            )
        {
            return;
        }
        self.stats.snapshots_adopted += 1;
        self.install(head, rotation, state, write_key);
        actions.push(RoomAction::Changed { hash, height });
        let orphans = std::mem::take(&mut self.orphans);
        for update in orphans {
            self.insert(update, None, now, actions);
        }
    }

    /// Answers a catch-up request: the canonical chain after the newest
    /// state the asker knows that is on it, or a snapshot.
    fn serve(&mut self, to: PeerId, known: &[StateHash], actions: &mut Vec<RoomAction>) {
        let path = self.path_to(&self.head.hash);
        let on_chain: HashMap<StateHash, usize> = std::iter::once((self.base.hash, 0))
            .chain(path.iter().enumerate().map(|(i, n)| (n.hash, i + 1)))
            .collect();
        let from = known.iter().take(64).find_map(|h| on_chain.get(h).copied());
        if let Some(start) = from {
            let updates: Vec<Update> = path[start..].iter().map(|n| n.update.clone()).collect();
            let bytes: usize = updates.iter().map(Update::size).sum();
            if updates.is_empty() {
                return;
            }
            if updates.len() <= self.config.catch_up_max_updates
                && bytes <= self.config.catch_up_max_bytes
            {
                self.stats.catch_ups_served += 1;
                actions.push(RoomAction::Send {
                    to,
                    message: RoomMessage::Updates { updates },
                });
                return;
            }
        }
        // At genesis, or without a rotation's proof, there is nothing the
        // asker would take.
        let Some((head, rotation, state)) = self.checkpoint() else {
            return;
        };
        self.stats.snapshots_served += 1;
        actions.push(RoomAction::Send {
            to,
            message: RoomMessage::Snapshot {
                head: Box::new(head),
                rotation: rotation.map(Box::new),
                state,
            },
        });
    }

    /// The head with its proof, as a snapshot carries it: the update that
    /// produced it, the rotation that put its signer in force (for a write
    /// of epoch > 0) and the state. None at genesis, or when the
    /// rotation's proof is no longer kept.
    pub fn checkpoint(&self) -> Option<(Update, Option<Update>, Bytes)> {
        let head = match self.nodes.get(&self.head.hash) {
            Some(node) => node.update.clone(),
            None => self.base_update.clone()?,
        };
        let rotation = match head.kind {
            UpdateKind::Write(_) if head.stamp.epoch > 0 => {
                Some(self.rotations.get(&head.stamp.epoch)?.clone())
            }
            _ => None,
        };
        Some((head, rotation, Bytes::from(self.head.state.clone())))
    }

    /// Restores a room opened at genesis to a checkpoint saved before a
    /// restart, checking its proof as a snapshot's ([`RoomMessage::Snapshot`]):
    /// the head's signature by the key in force, the rotation, the state
    /// against the signed digest. A room past genesis, or a proof that
    /// does not hold, is refused with the reason; the room stays as it was.
    pub fn restore(
        &mut self,
        head: Update,
        rotation: Option<Update>,
        state: Bytes,
    ) -> Result<(), String> {
        if self.head.height != 0 || !self.nodes.is_empty() {
            return Err("the room is past genesis already".into());
        }
        let write_key = self.check_snapshot(&head, rotation.as_ref(), &state)?;
        self.install(head, rotation.as_ref(), state, write_key);
        Ok(())
    }

    /// Makes a checked snapshot the base and the head.
    fn install(
        &mut self,
        head: Update,
        rotation: Option<&Update>,
        state: Bytes,
        write_key: PeerId,
    ) {
        let (hash, height, epoch) = (head.child(), head.stamp.height, head.stamp.epoch);
        if let Some(r) = rotation {
            self.rotations.insert(r.stamp.epoch, r.clone());
        }
        if let UpdateKind::Rotate(_) = head.kind {
            self.rotations.insert(epoch, head.clone());
        }
        while self.rotations.len() > MAX_ROTATIONS {
            self.rotations.pop_first();
        }
        self.base = Base {
            hash,
            height,
            epoch,
            state: state.to_vec(),
            write_key,
        };
        self.base_update = Some(head);
        self.head = self.base.clone();
        self.nodes.clear();
        // Own writes from before cannot be placed any more.
        self.own.clear();
    }

    /// A member became a neighbour: tell it our head (it asks if behind).
    pub fn on_neighbor_up(&mut self, peer: PeerId) -> Vec<RoomAction> {
        self.neighbours.insert(peer);
        vec![RoomAction::Send {
            to: peer,
            message: RoomMessage::Head {
                hash: self.head.hash,
                height: self.head.height,
                epoch: self.head.epoch,
            },
        }]
    }

    /// A neighbour left: its messages are no longer taken, and an answer
    /// it owed is no longer awaited.
    pub fn on_neighbor_down(&mut self, peer: &PeerId) {
        self.neighbours.remove(peer);
        self.awaiting.remove(peer);
    }

    /// When [`on_tick`](Self::on_tick) has something to do next.
    pub fn next_wakeup(&self) -> Instant {
        match self.reorg_retry {
            Some(at) => at.min(self.next_head),
            None => self.next_head,
        }
    }

    /// Sends the head to the neighbours every `head_interval`, and
    /// re-posts own writes whose branch lost.
    pub fn on_tick(&mut self, neighbours: &[PeerId], now: Instant) -> Vec<RoomAction> {
        let mut actions = Vec::new();
        self.retry_reorg(now, &mut actions);
        if now < self.next_head {
            return actions;
        }
        let jitter = self
            .config
            .head_interval
            .mul_f64(self.rng.random::<f64>() * 0.2);
        self.next_head = now + self.config.head_interval - self.config.head_interval / 10 + jitter;
        for peer in neighbours {
            actions.push(RoomAction::Send {
                to: *peer,
                message: RoomMessage::Head {
                    hash: self.head.hash,
                    height: self.head.height,
                    epoch: self.head.epoch,
                },
            });
        }
        self.awaiting.retain(|_, by| now <= *by);
        self.repost(now, &mut actions);
        actions
    }

    fn repost(&mut self, now: Instant, actions: &mut Vec<RoomAction>) {
        let Some(key) = self
            .writer
            .clone()
            .filter(|k| k.peer_id() == self.head.write_key)
        else {
            return;
        };
        let canonical: HashSet<StateHash> = self
            .path_to(&self.head.hash)
            .iter()
            .map(|n| n.hash)
            .collect();
        let mut reposts = Vec::new();
        for (i, write) in self.own.iter().enumerate() {
            let placed = write.versions.iter().any(|v| canonical.contains(v));
            if !placed && now.duration_since(write.last_try) >= self.config.repost_after {
                reposts.push(i);
            }
        }
        for i in reposts {
            let body = self.own[i].body.clone();
            // On the new head the reducer may refuse it: then it stays out.
            let Ok(next) = self.written(&body) else {
                self.own[i].last_try = now;
                continue;
            };
            let update = Update::sign(
                &key,
                self.keys.room,
                self.head.hash,
                UpdateKind::Write(body),
                self.stamp(self.head.epoch, &next),
            );
            let version = self.head.hash.child(&update.id());
            self.own[i].versions.push(version);
            self.own[i].last_try = now;
            self.stats.reposts += 1;
            actions.push(RoomAction::Publish(update.clone()));
            self.insert(update, None, now, actions);
        }
    }
}
