//! Persistence for what the [peer manager](crate::peer_manager) knows about
//! other peers, so that a restarted node redials its peers.
//!
//! A [`PeerStore`] holds one [`PeerRecord`] per peer: its addresses, whether
//! the config made it persistent, and its score; and the bans in force
//! ([`BanRecord`]: who, until when on the wall clock), so a restart does not
//! lift them. Two implementations:
//!
//! - [`MemoryPeerStore`] keeps records in a shared map. Cloning it shares the
//!   map, so a test can hand one clone to a node, stop the node, and hand
//!   another clone to the "restarted" node.
//! - `HeedPeerStore` (feature `heed`, on by default) keeps records in LMDB
//!   (through heed) in one directory: the database `peers`, keyed by the
//!   32-byte peer id, valued by the Protobuf [`crate::proto::PeerRecord`];
//!   and the database `bans`, keyed the same way, valued by
//!   [`crate::proto::StoredBan`]. A store written before bans were kept
//!   (no `bans` database) opens as it is: the database is created empty.
//!   An application that embeds `p2p` with the memory store turns default
//!   features off and does not compile LMDB.
//!
//! # What a store promises
//!
//! - [`PeerStore::save`] is an upsert of all given records in one transaction:
//!   either all of them are written or none is.
//! - [`PeerStore::load`] returns every stored record it can decode. A record it
//!   cannot decode (corrupt bytes, a key that is not a peer id, a key that does
//!   not match the record) is skipped with a `tracing::warn!`, and an address it
//!   cannot parse, or one that names another peer, is dropped from its record
//!   with a warning: damaged data on disk never panics a node and never
//!   prevents it from starting.
//! - [`PeerStore::save_bans`] replaces every stored ban in one transaction;
//!   [`PeerStore::load_bans`] returns what it can decode, skipping (with a
//!   warning) an entry whose key is not a peer id or whose value does not
//!   decode. Both have defaults for a store that keeps no bans: a restart
//!   then lifts them.
//! - A store is as bounded as what is saved into it: the peer manager saves at
//!   most as many peers as its tables hold, and as many bans, (see `PeerManagerConfig`'s
//!   `new_buckets`, `tried_buckets`, `bucket_size`: 10,240 by default) of at
//!   most `max_addresses_per_peer` addresses each, and tells the store which
//!   peers it has forgotten.
//!
//! The store is written behind the peer manager (see
//! [`PeerManager::take_dirty`](crate::peer_manager::PeerManager::take_dirty)):
//! a crash loses at most the changes since the last save.

#[cfg(feature = "heed")]
mod heed;
mod memory;

use std::path::PathBuf;
use std::time::SystemTime;

use crate::address::PeerAddress;
use crate::identity::PeerId;

#[cfg(feature = "heed")]
pub use self::heed::HeedPeerStore;
pub use self::memory::MemoryPeerStore;

/// What is persisted about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    /// The peer this record is about.
    pub peer: PeerId,
    /// Addresses at which the peer may be dialed; each names `peer`.
    pub addresses: Vec<PeerAddress>,
    /// Whether the config listed the peer as persistent when it was saved.
    /// Informational: on load, persistence comes from the current config.
    pub persistent: bool,
    /// The peer's score (higher is better; at or below the ban threshold the
    /// peer is banned).
    pub score: i64,
}

/// A ban in force, as persisted: until when, on the wall clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanRecord {
    /// The banned peer.
    pub peer: PeerId,
    /// When the ban ends (to the second).
    pub until: SystemTime,
}

/// Persistent storage of [`PeerRecord`]s.
///
/// Calls are synchronous: the peer manager's owner calls them, or hands them
/// to a blocking task. Implementations must never panic on stored data.
pub trait PeerStore: Send + 'static {
    /// Every stored record. Records that cannot be decoded are skipped with a
    /// warning, never an error or a panic.
    fn load(&self) -> Result<Vec<PeerRecord>, PeerStoreError>;

    /// Inserts or replaces `records`, all in one transaction.
    fn save(&mut self, records: &[PeerRecord]) -> Result<(), PeerStoreError>;

    /// Deletes the records of `peers`, all in one transaction. Unknown peers
    /// are ignored.
    fn remove(&mut self, peers: &[PeerId]) -> Result<(), PeerStoreError>;

    /// Every stored ban (ended ones included: the caller drops them).
    /// Default: none, for a store that keeps no bans.
    fn load_bans(&self) -> Result<Vec<BanRecord>, PeerStoreError> {
        Ok(Vec::new())
    }

    /// Replaces every stored ban with `bans`, in one transaction. Default:
    /// keeps nothing.
    fn save_bans(&mut self, bans: &[BanRecord]) -> Result<(), PeerStoreError> {
        let _ = bans;
        Ok(())
    }
}

/// `time` in whole seconds since the Unix epoch (0 before it), as stored.
#[cfg(feature = "heed")]
pub(crate) fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The instant `seconds` after the Unix epoch, if the clock can hold it.
#[cfg(feature = "heed")]
pub(crate) fn from_unix_seconds(seconds: u64) -> Option<SystemTime> {
    SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(seconds))
}

/// Why a [`PeerStore`] operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerStoreError {
    /// The store's directory could not be created.
    #[error("cannot create peer store directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The LMDB environment or its `peers` database could not be opened.
    #[cfg(feature = "heed")]
    #[error("cannot open peer store at {path}: {source}")]
    Open {
        /// The store's directory.
        path: PathBuf,
        /// The underlying error.
        source: ::heed::Error,
    },
    /// A read or write transaction failed.
    #[cfg(feature = "heed")]
    #[error("peer store at {path}: {operation} failed: {source}")]
    Database {
        /// The store's directory.
        path: PathBuf,
        /// What was being done, e.g. "save 12 records".
        operation: String,
        /// The underlying error.
        source: ::heed::Error,
    },
}
