//! Where a node keeps its rooms' checkpoints across restarts.
//!
//! The sans-IO core ([`RoomsCore`](crate::room::RoomsCore)) does no I/O:
//! it asks its driver to keep a room's checkpoint
//! ([`RoomsEffect::Save`](crate::room::RoomsEffect::Save): the head, its
//! state and its proof, [`RoomCheckpoint`]) and is handed the stored ones
//! when it starts ([`RoomsCore::restore`](crate::room::RoomsCore::restore)).
//! The reactor's driver carries a save out on the [`RoomStore`],
//! synchronously, before any output that follows it; a save that fails is
//! logged and asked again after `persist_interval`, and the room goes on in
//! memory.
//!
//! Reading back never panics: a record is checked for length before it is
//! decoded ([`RoomCheckpoint::decode`]), and one that does not read is
//! reported with its reason and skipped (the room starts from genesis and
//! catches up from its neighbours). A record that reads is still checked
//! against the room's keys when the room opens.
//!
//! `HeedRoomStore` (feature `heed`, on by default) keeps them in LMDB
//! under the node's data directory (`<data_dir>/rooms`, one database
//! `rooms`, key = the room id's 32 bytes, value = the record);
//! [`MemoryRoomStore`] keeps them in memory, shared between its clones, so
//! a test can restart a node with what it stored. A room no longer opened
//! keeps its record until the directory is removed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use reactor_gossip_proto::room::RoomId;
pub use reactor_gossip_proto::room::{CheckpointError, RoomCheckpoint};

/// Why a [`RoomStore`] operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RoomStoreError {
    /// The store could not be opened.
    #[cfg(feature = "heed")]
    #[error(transparent)]
    Open(#[from] p2p::lmdb::LmdbOpenError),
    /// A transaction failed.
    #[cfg(feature = "heed")]
    #[error("room store at {path}: {operation} failed: {source}")]
    Database {
        /// The directory.
        path: PathBuf,
        /// What was being done.
        operation: &'static str,
        /// The underlying error.
        source: p2p::lmdb::heed::Error,
    },
    /// A record is larger than the store takes.
    #[error("room store at {path}: a record of {size} bytes, over the limit of {max}")]
    TooLarge {
        /// The directory (empty for a memory store).
        path: PathBuf,
        /// The record's size.
        size: usize,
        /// The limit.
        max: usize,
    },
}

/// A record that could not be read back: which key, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("room store: record under key {key} skipped: {error}")]
pub struct CorruptRecord {
    /// The key, in hex (the room id it should be).
    pub key: String,
    /// Why.
    pub error: CheckpointError,
}

/// What [`RoomStore::load`] read: the checkpoints, and the records that did
/// not read.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The checkpoints that read (their proof is checked when their room
    /// opens).
    pub checkpoints: Vec<RoomCheckpoint>,
    /// The records skipped, with their reasons.
    pub corrupt: Vec<CorruptRecord>,
}

impl Loaded {
    fn read(&mut self, key: &[u8], record: &[u8], max_state_size: usize) {
        match RoomCheckpoint::decode(key, record, max_state_size) {
            Ok(checkpoint) => self.checkpoints.push(checkpoint),
            Err(error) => self.corrupt.push(CorruptRecord {
                key: key.iter().map(|b| format!("{b:02x}")).collect(),
                error,
            }),
        }
    }
}

/// Where the rooms keep their checkpoints. Calls are synchronous (one
/// record each); the driver makes them between two events. They must
/// never panic on stored data.
pub trait RoomStore: Send + std::fmt::Debug + 'static {
    /// Every stored checkpoint of a room whose state is at most
    /// `max_state_size` (longer records are skipped as corrupt, unread).
    fn load(&self, max_state_size: usize) -> Result<Loaded, RoomStoreError>;

    /// Keeps `record` as `room`'s checkpoint, replacing the one before;
    /// durable when this returns.
    fn save(&mut self, room: &RoomId, record: &[u8]) -> Result<(), RoomStoreError>;
}

/// Checkpoints in memory, shared by every clone: what a node keeps between
/// a stop and a restart within one process (tests), gone with the process.
#[derive(Debug, Clone, Default)]
pub struct MemoryRoomStore {
    records: Arc<Mutex<BTreeMap<Vec<u8>, Bytes>>>,
}

impl MemoryRoomStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The record under `room`, if any.
    pub fn record(&self, room: &RoomId) -> Option<Bytes> {
        self.lock().get(room.as_bytes().as_slice()).cloned()
    }

    /// Puts any bytes under any key (to test what reading back does).
    pub fn put_raw(&self, key: &[u8], record: &[u8]) {
        self.lock()
            .insert(key.to_vec(), Bytes::copy_from_slice(record));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Bytes>> {
        // A poisoned lock only means a panic elsewhere mid-insert of one
        // whole value; the map is still a map.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RoomStore for MemoryRoomStore {
    fn load(&self, max_state_size: usize) -> Result<Loaded, RoomStoreError> {
        let mut loaded = Loaded::default();
        for (key, record) in self.lock().iter() {
            loaded.read(key, record, max_state_size);
        }
        Ok(loaded)
    }

    fn save(&mut self, room: &RoomId, record: &[u8]) -> Result<(), RoomStoreError> {
        self.put_raw(room.as_bytes(), record);
        Ok(())
    }
}

#[cfg(feature = "heed")]
pub use heed_store::HeedRoomStore;

/// The LMDB store (feature `heed`).
#[cfg(feature = "heed")]
mod heed_store {
    use std::path::{Path, PathBuf};

    use p2p::lmdb::RawDatabase;
    use p2p::lmdb::heed::Env;
    use reactor_gossip_proto::room::RoomId;

    use super::{Loaded, RoomStore, RoomStoreError};

    /// LMDB reserves the map as address space, not disk; the file grows
    /// with what is stored. 4 GiB holds hundreds of rooms at the largest
    /// state (`max_room_state`, at most 16 MiB); a save over it fails, is
    /// logged and retried, and the room goes on in memory.
    const MAP_SIZE: u64 = 4 * 1024 * 1024 * 1024;
    const DB_NAME: &str = "rooms";

    /// Checkpoints in an LMDB environment in one directory (see the module
    /// docs).
    ///
    /// One process may have a directory open once at a time: a second
    /// open while a `HeedRoomStore` on it is alive fails with
    /// [`RoomStoreError::Open`].
    pub struct HeedRoomStore {
        path: PathBuf,
        pub(super) env: Env,
        pub(super) db: RawDatabase,
    }

    impl std::fmt::Debug for HeedRoomStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("HeedRoomStore")
                .field("path", &self.path)
                .finish_non_exhaustive()
        }
    }

    impl HeedRoomStore {
        /// Opens (creating if needed) the store in directory `dir`.
        pub fn open(dir: &Path) -> Result<Self, RoomStoreError> {
            // A 32-bit address space takes 1 GiB.
            let map_size = usize::try_from(MAP_SIZE).unwrap_or(1 << 30);
            let (env, [db]) = p2p::lmdb::open(dir, map_size, [DB_NAME])?;
            Ok(Self {
                path: dir.to_path_buf(),
                env,
                db,
            })
        }

        /// The directory the store lives in.
        pub fn path(&self) -> &Path {
            &self.path
        }

        fn db_error(
            &self,
            operation: &'static str,
        ) -> impl FnOnce(p2p::lmdb::heed::Error) -> RoomStoreError + '_ {
            move |source| RoomStoreError::Database {
                path: self.path.clone(),
                operation,
                source,
            }
        }
    }

    impl RoomStore for HeedRoomStore {
        fn load(&self, max_state_size: usize) -> Result<Loaded, RoomStoreError> {
            let rtxn = self.env.read_txn().map_err(self.db_error("load"))?;
            let iter = self.db.iter(&rtxn).map_err(self.db_error("load"))?;
            let mut loaded = Loaded::default();
            for entry in iter {
                // The record is a view into the memory map: its length is
                // checked before anything is copied out of it.
                let (key, record) = entry.map_err(self.db_error("load"))?;
                loaded.read(key, record, max_state_size);
            }
            Ok(loaded)
        }

        fn save(&mut self, room: &RoomId, record: &[u8]) -> Result<(), RoomStoreError> {
            let mut wtxn = self.env.write_txn().map_err(self.db_error("save"))?;
            self.db
                .put(&mut wtxn, room.as_bytes(), record)
                .map_err(self.db_error("save"))?;
            wtxn.commit().map_err(self.db_error("save"))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use p2p::Keypair;
    use reactor_gossip_proto::room::{RoomKeys, Stamp, Update, UpdateKind, state_digest};

    fn checkpoint(line: &str) -> RoomCheckpoint {
        let write = Keypair::from_seed(2);
        let keys = RoomKeys::new(Keypair::from_seed(1).peer_id(), "lobby", write.peer_id());
        let state = Bytes::from(format!("{line}\n"));
        let head = Update::sign(
            &write,
            keys.room,
            keys.genesis(),
            UpdateKind::Write(Bytes::from(line.to_string())),
            Stamp {
                height: 1,
                epoch: 0,
                digest: state_digest(&state),
            },
        );
        RoomCheckpoint {
            room: keys.room,
            head,
            rotation: None,
            state,
        }
    }

    #[test]
    #[cfg(feature = "heed")]
    fn checkpoints_survive_a_reopen_and_corrupt_records_are_reported_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (checkpoint("old"), checkpoint("new"));
        {
            let mut store = HeedRoomStore::open(dir.path()).unwrap();
            store.save(&old.room, &old.encode()).unwrap();
            store.save(&new.room, &new.encode()).unwrap();
            // Junk under another key, a truncated record, a record under
            // another room's key.
            let mut wtxn = store.env.write_txn().unwrap();
            store
                .db
                .put(&mut wtxn, &[7; 32], &[1, 0xff, 0xff, 0x07])
                .unwrap();
            let truncated = new.encode();
            store
                .db
                .put(&mut wtxn, &[8; 32], &truncated[..truncated.len() / 2])
                .unwrap();
            store.db.put(&mut wtxn, &[9; 32], &new.encode()).unwrap();
            wtxn.commit().unwrap();
        }
        let huge = {
            let store = MemoryRoomStore::new();
            store.put_raw(&[6; 32], &vec![1; 200 * 1024]);
            store.load(1024).unwrap()
        };
        // A record longer than the state cap allows is not decoded.
        assert!(huge.checkpoints.is_empty());
        assert!(matches!(
            huge.corrupt[0].error,
            CheckpointError::TooLarge { .. }
        ));
        let store = HeedRoomStore::open(dir.path()).unwrap();
        let loaded = store.load(1024).unwrap();
        assert_eq!(loaded.checkpoints, vec![new.clone()]);
        assert_eq!(loaded.corrupt.len(), 3, "{:?}", loaded.corrupt);
        for corrupt in &loaded.corrupt {
            let text = corrupt.to_string();
            assert!(text.starts_with("room store: record under key "), "{text}");
        }
        assert!(matches!(
            loaded.corrupt[2].error,
            CheckpointError::WrongRoom { .. }
        ));
        // A state over the cap is refused.
        let small = store.load(1).unwrap();
        assert!(small.checkpoints.is_empty() && small.corrupt.len() == 4);
        assert!(
            HeedRoomStore::open(dir.path()).is_err(),
            "a second open fails"
        );
    }

    #[test]
    fn a_memory_store_is_shared_by_its_clones() {
        let mut a = MemoryRoomStore::new();
        let b = a.clone();
        let c = checkpoint("x");
        a.save(&c.room, &c.encode()).unwrap();
        assert_eq!(b.load(1024).unwrap().checkpoints, vec![c.clone()]);
        assert_eq!(b.record(&c.room), Some(Bytes::from(c.encode())));
    }
}
