//! Where a ring node keeps its records across restarts.
//!
//! The sans-IO core ([`RingState`](crate::RingState)) does no I/O: it asks
//! its driver to keep a record or to drop one
//! ([`StoreEffect`](crate::StoreEffect), the records and their keys in
//! [`crate::record`]), and is handed every stored record when it starts
//! ([`RingState::restore`](crate::RingState::restore)). The reactor's
//! driver carries a `Store` out on the [`RingStore`], synchronously,
//! before any output that follows it, so a gateway's grant is on disk
//! before its challenge leaves; a write that fails is logged, counted
//! (`store_failures`) and the record kept in memory.
//!
//! `HeedRingStore` (feature `heed`, on by default) keeps them in LMDB
//! under the node's data directory (`<data_dir>/ring`);
//! [`MemoryRingStore`] keeps them in memory, shared between its clones, so
//! a test can restart a node with what it stored.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use reactor_ring_proto::record::{RecordKey, StoredRecord};

/// Why a [`RingStore`] operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RingStoreError {
    /// The store's directory could not be created.
    #[error("cannot create ring store directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The LMDB environment or its database could not be opened.
    #[cfg(feature = "heed")]
    #[error("cannot open ring store at {path}: {source}")]
    Open {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: ::heed::Error,
    },
    /// A transaction failed.
    #[cfg(feature = "heed")]
    #[error("ring store at {path}: {operation} failed: {source}")]
    Database {
        /// The directory.
        path: PathBuf,
        /// What was being done.
        operation: &'static str,
        /// The underlying error.
        source: ::heed::Error,
    },
}

/// Where the ring keeps its records. Calls are synchronous and small (one
/// record each); the driver makes them between two events. They must never
/// panic on stored data: [`load`](Self::load) skips what it cannot decode.
pub trait RingStore: Send + std::fmt::Debug + 'static {
    /// Every stored record.
    fn load(&self) -> Result<Vec<StoredRecord>, RingStoreError>;

    /// Keeps `record`, replacing the one under its key; durable when this
    /// returns.
    fn save(&mut self, record: &StoredRecord) -> Result<(), RingStoreError>;

    /// Drops the record under `key`, if any.
    fn remove(&mut self, key: &RecordKey) -> Result<(), RingStoreError>;
}

/// Records in memory, shared by every clone: what a node keeps between a
/// stop and a restart within one process (tests), gone with the process.
#[derive(Debug, Clone, Default)]
pub struct MemoryRingStore {
    records: Arc<Mutex<BTreeMap<RecordKey, StoredRecord>>>,
}

impl MemoryRingStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<RecordKey, StoredRecord>> {
        // A poisoned lock only means a panic elsewhere mid-insert of one
        // whole value; the map is still a map.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RingStore for MemoryRingStore {
    fn load(&self) -> Result<Vec<StoredRecord>, RingStoreError> {
        Ok(self.lock().values().cloned().collect())
    }

    fn save(&mut self, record: &StoredRecord) -> Result<(), RingStoreError> {
        self.lock().insert(record.key(), record.clone());
        Ok(())
    }

    fn remove(&mut self, key: &RecordKey) -> Result<(), RingStoreError> {
        self.lock().remove(key);
        Ok(())
    }
}

#[cfg(feature = "heed")]
pub use heed_store::HeedRingStore;

/// The LMDB store (feature `heed`): an embedder that keeps the ring's
/// records in memory, or elsewhere, compiles no LMDB.
#[cfg(feature = "heed")]
mod heed_store {
    use std::path::{Path, PathBuf};

    use ::heed::types::Bytes;
    use ::heed::{Database, Env};

    use super::{RecordKey, RingStore, RingStoreError, StoredRecord};

    /// LMDB reserves the map as address space, not disk: 64 MiB holds far
    /// more than `MAX_GRANTS` grants of ~250 bytes.
    const MAP_SIZE: usize = 64 * 1024 * 1024;
    const DB_NAME: &str = "ring";

    /// Records in an LMDB environment in one directory (one database `ring`,
    /// key = [`RecordKey::to_bytes`], value = a Protobuf `StoredRecord`).
    ///
    /// One process may have a directory open once at a time: a second open
    /// while a `HeedRingStore` on it is alive fails with
    /// [`RingStoreError::Open`].
    pub struct HeedRingStore {
        path: PathBuf,
        pub(super) env: Env,
        pub(super) db: Database<Bytes, Bytes>,
    }

    impl std::fmt::Debug for HeedRingStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("HeedRingStore")
                .field("path", &self.path)
                .finish_non_exhaustive()
        }
    }

    impl HeedRingStore {
        /// Opens (creating if needed) the store in directory `dir`.
        pub fn open(dir: &Path) -> Result<Self, RingStoreError> {
            let path = dir.to_path_buf();
            let (env, [db]) = p2p::lmdb::open(dir, MAP_SIZE, [DB_NAME]).map_err(|e| match e {
                p2p::lmdb::LmdbOpenError::CreateDir { path, source } => {
                    RingStoreError::CreateDir { path, source }
                }
                p2p::lmdb::LmdbOpenError::Open { path, source } => {
                    RingStoreError::Open { path, source }
                }
            })?;
            Ok(Self { path, env, db })
        }

        /// The directory the store lives in.
        pub fn path(&self) -> &Path {
            &self.path
        }

        fn db_error(
            &self,
            operation: &'static str,
        ) -> impl FnOnce(::heed::Error) -> RingStoreError + '_ {
            move |source| RingStoreError::Database {
                path: self.path.clone(),
                operation,
                source,
            }
        }
    }

    impl RingStore for HeedRingStore {
        fn load(&self) -> Result<Vec<StoredRecord>, RingStoreError> {
            let rtxn = self.env.read_txn().map_err(self.db_error("load"))?;
            let iter = self.db.iter(&rtxn).map_err(self.db_error("load"))?;
            let mut records = Vec::new();
            for entry in iter {
                let (key, value) = entry.map_err(self.db_error("load"))?;
                match StoredRecord::decode(value) {
                    Ok(record) if record.key().to_bytes() == key => records.push(record),
                    Ok(_) => {
                        tracing::warn!(path = %self.path.display(), "ring store: skipping a record stored under another key");
                    }
                    Err(error) => {
                        tracing::warn!(path = %self.path.display(), %error, "ring store: skipping a corrupt record");
                    }
                }
            }
            Ok(records)
        }

        fn save(&mut self, record: &StoredRecord) -> Result<(), RingStoreError> {
            let mut wtxn = self.env.write_txn().map_err(self.db_error("save"))?;
            self.db
                .put(&mut wtxn, &record.key().to_bytes(), &record.encode())
                .map_err(self.db_error("save"))?;
            wtxn.commit().map_err(self.db_error("save"))
        }

        fn remove(&mut self, key: &RecordKey) -> Result<(), RingStoreError> {
            let mut wtxn = self.env.write_txn().map_err(self.db_error("remove"))?;
            self.db
                .delete(&mut wtxn, &key.to_bytes())
                .map_err(self.db_error("remove"))?;
            wtxn.commit().map_err(self.db_error("remove"))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::negotiation::{Challenge, Grant, NetworkTag, Transcript};
    use p2p::Keypair;

    fn records() -> Vec<StoredRecord> {
        let g = Keypair::from_seed(1);
        let j = Keypair::from_seed(2).peer_id();
        let net = NetworkTag::new("test");
        vec![
            StoredRecord::Own(Transcript::self_negotiated(&g, &net, [1; 32], [2; 32], 99)),
            StoredRecord::Secret {
                gateway: g.peer_id(),
                value: [3; 32],
            },
            StoredRecord::Grant(Grant {
                joiner: j,
                commitment: [4; 32],
                challenge: Challenge::answer(&g, &net, &j, &[4; 32], [5; 32], 77),
            }),
        ]
    }

    fn sorted(mut records: Vec<StoredRecord>) -> Vec<StoredRecord> {
        records.sort_by_key(StoredRecord::key);
        records
    }

    #[test]
    #[cfg(feature = "heed")]
    fn records_survive_a_reopen_and_one_key_holds_one_record() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = HeedRingStore::open(dir.path()).unwrap();
            for r in records() {
                store.save(&r).unwrap();
            }
        }
        let mut store = HeedRingStore::open(dir.path()).unwrap();
        assert_eq!(sorted(store.load().unwrap()), sorted(records()));
        let newer = StoredRecord::Secret {
            gateway: Keypair::from_seed(1).peer_id(),
            value: [9; 32],
        };
        store.save(&newer).unwrap();
        store.remove(&RecordKey::Own).unwrap();
        let loaded = sorted(store.load().unwrap());
        assert_eq!(loaded.len(), 2);
        assert!(loaded.contains(&newer));
        assert!(
            HeedRingStore::open(dir.path()).is_err(),
            "a second open fails"
        );
    }

    #[test]
    #[cfg(feature = "heed")]
    fn corrupt_records_are_skipped_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = HeedRingStore::open(dir.path()).unwrap();
        let good = records().remove(1);
        store.save(&good).unwrap();
        let mut wtxn = store.env.write_txn().unwrap();
        store
            .db
            .put(&mut wtxn, &[2, 7], &[0xff, 0xff, 0x07])
            .unwrap();
        // A good record under another record's key.
        store
            .db
            .put(&mut wtxn, &RecordKey::Own.to_bytes(), &good.encode())
            .unwrap();
        wtxn.commit().unwrap();
        assert_eq!(store.load().unwrap(), vec![good]);
    }

    #[test]
    fn a_memory_store_is_shared_by_its_clones() {
        let mut a = MemoryRingStore::new();
        let b = a.clone();
        for r in records() {
            a.save(&r).unwrap();
        }
        assert_eq!(sorted(b.load().unwrap()), sorted(records()));
        a.remove(&RecordKey::Own).unwrap();
        assert_eq!(b.len(), 2);
    }
}
