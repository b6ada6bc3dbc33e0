//! An in-memory [`PeerStore`] for tests and for nodes that keep no state.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{BanRecord, PeerRecord, PeerStore, PeerStoreError};
use crate::identity::PeerId;

/// A [`PeerStore`] in memory. Clones share the same records, so a test can
/// keep one clone and give another to a node it restarts.
///
/// ```
/// use p2p::peer_store::{MemoryPeerStore, PeerStore};
///
/// let store = MemoryPeerStore::new();
/// let for_the_node = store.clone();
/// // ... the node saves through `for_the_node`, then stops ...
/// drop(for_the_node);
/// assert!(store.load().map(|records| records.is_empty()).unwrap_or(false));
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryPeerStore {
    records: Arc<Mutex<BTreeMap<PeerId, PeerRecord>>>,
    bans: Arc<Mutex<Vec<BanRecord>>>,
}

impl MemoryPeerStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records the store holds.
    pub fn len(&self) -> usize {
        self.records.lock().len()
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.lock().is_empty()
    }
}

impl PeerStore for MemoryPeerStore {
    fn load(&self) -> Result<Vec<PeerRecord>, PeerStoreError> {
        Ok(self.records.lock().values().cloned().collect())
    }

    fn save(&mut self, records: &[PeerRecord]) -> Result<(), PeerStoreError> {
        let mut map = self.records.lock();
        for record in records {
            map.insert(record.peer, record.clone());
        }
        Ok(())
    }

    fn remove(&mut self, peers: &[PeerId]) -> Result<(), PeerStoreError> {
        let mut map = self.records.lock();
        for peer in peers {
            map.remove(peer);
        }
        Ok(())
    }

    fn load_bans(&self) -> Result<Vec<BanRecord>, PeerStoreError> {
        Ok(self.bans.lock().clone())
    }

    fn save_bans(&mut self, bans: &[BanRecord]) -> Result<(), PeerStoreError> {
        *self.bans.lock() = bans.to_vec();
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::address::PeerAddress;
    use crate::identity::Keypair;

    fn record(seed: u64, score: i64) -> PeerRecord {
        let peer = Keypair::from_seed(seed).peer_id();
        PeerRecord {
            peer,
            addresses: vec![PeerAddress::memory(peer)],
            persistent: seed.is_multiple_of(2),
            score,
        }
    }

    #[test]
    fn save_load_remove_round_trip() {
        let mut store = MemoryPeerStore::new();
        let a = record(1, 5);
        let b = record(2, -7);
        store.save(&[a.clone(), b.clone()]).unwrap();
        let mut loaded = store.load().unwrap();
        loaded.sort_by_key(|r| r.peer);
        let mut expected = vec![a.clone(), b.clone()];
        expected.sort_by_key(|r| r.peer);
        assert_eq!(loaded, expected);

        // Upsert replaces.
        let a2 = PeerRecord {
            score: 42,
            ..a.clone()
        };
        store.save(std::slice::from_ref(&a2)).unwrap();
        assert_eq!(store.len(), 2);

        store.remove(&[b.peer]).unwrap();
        assert_eq!(store.load().unwrap(), vec![a2]);
    }

    #[test]
    fn bans_are_replaced_as_a_whole_and_shared_by_clones() {
        let mut store = MemoryPeerStore::new();
        let until = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        let ban = |seed: u64| BanRecord {
            peer: Keypair::from_seed(seed).peer_id(),
            until,
        };
        assert!(store.load_bans().unwrap().is_empty());
        store.save_bans(&[ban(1), ban(2)]).unwrap();
        store.save_bans(&[ban(2)]).unwrap();
        assert_eq!(store.clone().load_bans().unwrap(), vec![ban(2)]);
    }

    #[test]
    fn clones_share_records_across_a_restart() {
        let store = MemoryPeerStore::new();
        let mut first_node = store.clone();
        first_node.save(&[record(3, 1)]).unwrap();
        drop(first_node);
        let restarted = store.clone();
        assert_eq!(restarted.load().unwrap(), vec![record(3, 1)]);
    }
}
