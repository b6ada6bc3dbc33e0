//! A [`PeerStore`] on disk, in LMDB through heed.

use std::path::{Path, PathBuf};

use ::heed::types::Bytes;
use ::heed::{Database, Env};
use prost::Message;

use super::{BanRecord, PeerRecord, PeerStore, PeerStoreError, from_unix_seconds, unix_seconds};
use crate::address::PeerAddress;
use crate::identity::PeerId;
use crate::proto;

/// LMDB reserves the whole map up front (as address space, not disk): 64 MiB
/// holds far more than the address book's tables (10,240 peers by
/// default) of `max_addresses_per_peer` addresses each (10,240 × 16 × ~100
/// bytes ≈ 16 MiB).
const MAP_SIZE: usize = 64 * 1024 * 1024;
const DB_NAME: &str = "peers";
/// Bans in force (since 2026-12-07: a store from before has no such
/// database, and gets an empty one when opened).
const BANS_DB_NAME: &str = "bans";

/// A [`PeerStore`] in an LMDB environment in one directory: the database
/// `peers`, key = the 32-byte peer id, value = a Protobuf
/// [`proto::PeerRecord`]; the database `bans`, key = the banned peer's id,
/// value = a Protobuf [`proto::StoredBan`].
///
/// One process may have a given directory open once at a time: opening it
/// again while a `HeedPeerStore` on it is alive fails with
/// [`PeerStoreError::Open`]. Dropping the store closes the environment.
pub struct HeedPeerStore {
    path: PathBuf,
    env: Env,
    db: Database<Bytes, Bytes>,
    bans: Database<Bytes, Bytes>,
}

impl std::fmt::Debug for HeedPeerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeedPeerStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl HeedPeerStore {
    /// Opens (creating if needed) the store in directory `dir`.
    pub fn open(dir: &Path) -> Result<Self, PeerStoreError> {
        let path = dir.to_path_buf();
        let (env, [db, bans]) =
            crate::lmdb::open(dir, MAP_SIZE, [DB_NAME, BANS_DB_NAME]).map_err(|e| match e {
                crate::lmdb::LmdbOpenError::CreateDir { path, source } => {
                    PeerStoreError::CreateDir { path, source }
                }
                crate::lmdb::LmdbOpenError::Open { path, source } => {
                    PeerStoreError::Open { path, source }
                }
            })?;
        Ok(Self {
            path,
            env,
            db,
            bans,
        })
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db_error(&self, operation: String) -> impl FnOnce(::heed::Error) -> PeerStoreError + '_ {
        move |source| PeerStoreError::Database {
            path: self.path.clone(),
            operation,
            source,
        }
    }
}

impl PeerStore for HeedPeerStore {
    fn load(&self) -> Result<Vec<PeerRecord>, PeerStoreError> {
        let rtxn = self.env.read_txn().map_err(self.db_error("load".into()))?;
        let iter = self.db.iter(&rtxn).map_err(self.db_error("load".into()))?;
        let mut records = Vec::new();
        for entry in iter {
            let (key, value) = entry.map_err(self.db_error("load".into()))?;
            if let Some(record) = decode(&self.path, key, value) {
                records.push(record);
            }
        }
        Ok(records)
    }

    fn save(&mut self, records: &[PeerRecord]) -> Result<(), PeerStoreError> {
        let operation = || format!("save {} records", records.len());
        let mut wtxn = self.env.write_txn().map_err(self.db_error(operation()))?;
        for record in records {
            let value = encode(record);
            self.db
                .put(&mut wtxn, record.peer.as_bytes(), &value)
                .map_err(self.db_error(operation()))?;
        }
        wtxn.commit().map_err(self.db_error(operation()))
    }

    fn remove(&mut self, peers: &[PeerId]) -> Result<(), PeerStoreError> {
        let operation = || format!("remove {} records", peers.len());
        let mut wtxn = self.env.write_txn().map_err(self.db_error(operation()))?;
        for peer in peers {
            self.db
                .delete(&mut wtxn, peer.as_bytes())
                .map_err(self.db_error(operation()))?;
        }
        wtxn.commit().map_err(self.db_error(operation()))
    }

    fn load_bans(&self) -> Result<Vec<BanRecord>, PeerStoreError> {
        let operation = || "load bans".to_string();
        let rtxn = self.env.read_txn().map_err(self.db_error(operation()))?;
        let iter = self.bans.iter(&rtxn).map_err(self.db_error(operation()))?;
        let mut bans = Vec::new();
        for entry in iter {
            let (key, value) = entry.map_err(self.db_error(operation()))?;
            if let Some(ban) = decode_ban(&self.path, key, value) {
                bans.push(ban);
            }
        }
        Ok(bans)
    }

    fn save_bans(&mut self, bans: &[BanRecord]) -> Result<(), PeerStoreError> {
        let operation = || format!("save {} bans", bans.len());
        let mut wtxn = self.env.write_txn().map_err(self.db_error(operation()))?;
        self.bans
            .clear(&mut wtxn)
            .map_err(self.db_error(operation()))?;
        for ban in bans {
            let value = proto::StoredBan {
                until_unix_seconds: unix_seconds(ban.until),
            }
            .encode_to_vec();
            self.bans
                .put(&mut wtxn, ban.peer.as_bytes(), &value)
                .map_err(self.db_error(operation()))?;
        }
        wtxn.commit().map_err(self.db_error(operation()))
    }
}

/// Decodes one stored ban; `None` (with a warning) if it is unusable.
fn decode_ban(path: &Path, key: &[u8], value: &[u8]) -> Option<BanRecord> {
    let peer = match PeerId::from_bytes(key) {
        Ok(peer) => peer,
        Err(error) => {
            tracing::warn!(path = %path.display(), key_len = key.len(), %error, "peer store: skipping ban whose key is not a peer id");
            return None;
        }
    };
    let stored = match proto::StoredBan::decode(value) {
        Ok(stored) => stored,
        Err(error) => {
            tracing::warn!(path = %path.display(), %peer, %error, "peer store: skipping corrupt ban");
            return None;
        }
    };
    let Some(until) = from_unix_seconds(stored.until_unix_seconds) else {
        tracing::warn!(path = %path.display(), %peer, "peer store: skipping ban that ends past what the clock holds");
        return None;
    };
    Some(BanRecord { peer, until })
}

fn encode(record: &PeerRecord) -> Vec<u8> {
    proto::PeerRecord {
        peer_id: record.peer.as_bytes().to_vec().into(),
        addresses: record.addresses.iter().map(ToString::to_string).collect(),
        persistent: record.persistent,
        score: record.score,
    }
    .encode_to_vec()
}

/// Decodes one stored entry; `None` (with a warning) if it is unusable.
fn decode(path: &Path, key: &[u8], value: &[u8]) -> Option<PeerRecord> {
    let key_peer = match PeerId::from_bytes(key) {
        Ok(peer) => peer,
        Err(error) => {
            tracing::warn!(path = %path.display(), key_len = key.len(), %error, "peer store: skipping entry whose key is not a peer id");
            return None;
        }
    };
    let stored = match proto::PeerRecord::decode(value) {
        Ok(stored) => stored,
        Err(error) => {
            tracing::warn!(path = %path.display(), peer = %key_peer, %error, "peer store: skipping corrupt record");
            return None;
        }
    };
    match PeerId::from_bytes(&stored.peer_id) {
        Ok(peer) if peer == key_peer => {}
        _ => {
            tracing::warn!(path = %path.display(), peer = %key_peer, "peer store: skipping record whose peer id does not match its key");
            return None;
        }
    }
    let mut addresses = Vec::with_capacity(stored.addresses.len());
    for text in &stored.addresses {
        match text.parse::<PeerAddress>() {
            Ok(address) if address.peer == key_peer => addresses.push(address),
            Ok(address) => {
                tracing::warn!(path = %path.display(), peer = %key_peer, %address, "peer store: dropping address that names another peer");
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), peer = %key_peer, address = %text, %error, "peer store: dropping unparsable address");
            }
        }
    }
    Some(PeerRecord {
        peer: key_peer,
        addresses,
        persistent: stored.persistent,
        score: stored.score,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    fn record(seed: u64, score: i64) -> PeerRecord {
        let peer = Keypair::from_seed(seed).peer_id();
        PeerRecord {
            peer,
            addresses: vec![
                PeerAddress::memory(peer),
                PeerAddress::tcp(peer, ([127, 0, 0, 1], 7400 + seed as u16).into()),
            ],
            persistent: seed.is_multiple_of(2),
            score,
        }
    }

    fn sorted(mut records: Vec<PeerRecord>) -> Vec<PeerRecord> {
        records.sort_by_key(|r| r.peer);
        records
    }

    #[test]
    fn save_load_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = HeedPeerStore::open(dir.path()).unwrap();
        let (a, b) = (record(1, 5), record(2, -300));
        store.save(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(
            sorted(store.load().unwrap()),
            sorted(vec![a.clone(), b.clone()])
        );

        let a2 = PeerRecord {
            score: 9,
            addresses: vec![],
            ..a.clone()
        };
        store.save(std::slice::from_ref(&a2)).unwrap();
        store.remove(&[b.peer, record(77, 0).peer]).unwrap();
        assert_eq!(store.load().unwrap(), vec![a2]);
    }

    /// Bans survive a reopen; a save replaces them all; garbage entries
    /// are skipped, not a panic.
    #[test]
    fn bans_survive_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let until = |s: u64| std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s);
        let ban = |seed: u64, s: u64| BanRecord {
            peer: Keypair::from_seed(seed).peer_id(),
            until: until(s),
        };
        {
            let mut store = HeedPeerStore::open(dir.path()).unwrap();
            assert!(store.load_bans().unwrap().is_empty());
            store.save_bans(&[ban(1, 10), ban(2, 20)]).unwrap();
            store.save_bans(&[ban(2, 30), ban(3, 40)]).unwrap();
            let mut wtxn = store.env.write_txn().unwrap();
            store.bans.put(&mut wtxn, b"short", &[1]).unwrap();
            store
                .bans
                .put(
                    &mut wtxn,
                    Keypair::from_seed(9).peer_id().as_bytes(),
                    &[0xff, 0xff],
                )
                .unwrap();
            wtxn.commit().unwrap();
        }
        let store = HeedPeerStore::open(dir.path()).unwrap();
        let mut bans = store.load_bans().unwrap();
        bans.sort_by_key(|b| b.until);
        assert_eq!(bans, vec![ban(2, 30), ban(3, 40)]);
    }

    /// A store written before bans were kept (one database, `peers`, in an
    /// environment opened for one) opens, keeps its records, and takes
    /// bans from then on.
    #[test]
    fn a_store_from_before_bans_opens_and_keeps_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let old = record(5, -3);
        {
            let mut options = ::heed::EnvOpenOptions::new();
            options.map_size(MAP_SIZE).max_dbs(1);
            #[allow(unsafe_code)]
            // SAFETY: a fresh directory only this test touches.
            let env = unsafe { options.open(dir.path()) }.unwrap();
            let mut wtxn = env.write_txn().unwrap();
            let db: Database<Bytes, Bytes> = env.create_database(&mut wtxn, Some(DB_NAME)).unwrap();
            db.put(&mut wtxn, old.peer.as_bytes(), &encode(&old))
                .unwrap();
            wtxn.commit().unwrap();
            env.prepare_for_closing().wait();
        }
        let mut store = HeedPeerStore::open(dir.path()).unwrap();
        assert_eq!(store.load().unwrap(), vec![old]);
        assert!(store.load_bans().unwrap().is_empty());
        let ban = BanRecord {
            peer: record(6, 0).peer,
            until: std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(99),
        };
        store.save_bans(std::slice::from_ref(&ban)).unwrap();
        assert_eq!(store.load_bans().unwrap(), vec![ban]);
    }

    #[test]
    fn records_survive_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("peers");
        let records: Vec<_> = (0..50).map(|i| record(i, i as i64 - 25)).collect();
        {
            let mut store = HeedPeerStore::open(&path).unwrap();
            store.save(&records).unwrap();
        }
        let store = HeedPeerStore::open(&path).unwrap();
        assert_eq!(sorted(store.load().unwrap()), sorted(records));
    }

    #[test]
    fn second_open_of_a_live_store_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let _store = HeedPeerStore::open(dir.path()).unwrap();
        let error = HeedPeerStore::open(dir.path()).unwrap_err();
        assert!(
            error.to_string().contains("cannot open peer store"),
            "{error}"
        );
    }

    #[test]
    fn corrupt_entries_are_skipped_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = HeedPeerStore::open(dir.path()).unwrap();
        let good = record(1, 3);
        store.save(std::slice::from_ref(&good)).unwrap();

        let victim = record(2, 0).peer;
        let other = record(3, 0).peer;
        let mismatched = proto::PeerRecord {
            peer_id: other.as_bytes().to_vec().into(),
            addresses: vec![],
            persistent: false,
            score: 0,
        }
        .encode_to_vec();
        let bad_address = proto::PeerRecord {
            peer_id: other.as_bytes().to_vec().into(),
            addresses: vec![
                "not an address".into(),
                PeerAddress::memory(victim).to_string(),
                PeerAddress::memory(other).to_string(),
            ],
            persistent: true,
            score: -4,
        }
        .encode_to_vec();
        let mut wtxn = store.env.write_txn().unwrap();
        // Garbage bytes under a valid key.
        store
            .db
            .put(&mut wtxn, victim.as_bytes(), &[0xff, 0xff, 0xff, 0x07])
            .unwrap();
        // A key that is not a peer id.
        store.db.put(&mut wtxn, b"short", &[]).unwrap();
        // A record stored under another peer's key.
        store
            .db
            .put(&mut wtxn, record(4, 0).peer.as_bytes(), &mismatched)
            .unwrap();
        // A record with one unparsable address and one naming another peer.
        store
            .db
            .put(&mut wtxn, other.as_bytes(), &bad_address)
            .unwrap();
        wtxn.commit().unwrap();

        let loaded = sorted(store.load().unwrap());
        let expected = sorted(vec![
            good,
            PeerRecord {
                peer: other,
                addresses: vec![PeerAddress::memory(other)],
                persistent: true,
                score: -4,
            },
        ]);
        assert_eq!(loaded, expected);
    }
}
