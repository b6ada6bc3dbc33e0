//! The peer store's writer: commits run on tokio's blocking pool, one at
//! a time, so that a slow disk (an LMDB commit syncs) never stalls the
//! supervisor, and with it every connect and close.
//!
//! Each flush hands the store and one batch (records changed, peers
//! forgotten) to a short blocking task, which hands the store back. While
//! a commit is in flight, later flushes merge into the next batch (the
//! latest record of a peer wins): nothing is lost, and memory stays
//! bounded by the peers known. On shutdown the supervisor waits for the
//! commit in flight and writes what is left. (A task per commit, not one
//! long-lived thread: tokio does not advance a paused clock while a
//! blocking task runs.)

use std::collections::BTreeMap;

use futures::FutureExt;
use tokio::task::JoinHandle;

use crate::identity::PeerId;
use crate::peer_store::{BanRecord, PeerRecord, PeerStore};

/// One flush: records to save, peers to remove, and the bans in force if
/// they changed.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    save: BTreeMap<PeerId, PeerRecord>,
    remove: Vec<PeerId>,
    bans: Option<Vec<BanRecord>>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.save.is_empty() && self.remove.is_empty() && self.bans.is_none()
    }

    /// Adds changed records, forgotten peers and the bans in force, later
    /// ones winning.
    fn merge(&mut self, save: Vec<PeerRecord>, remove: Vec<PeerId>, bans: Option<Vec<BanRecord>>) {
        if bans.is_some() {
            self.bans = bans;
        }
        for peer in &remove {
            self.save.remove(peer);
        }
        self.remove.extend(remove);
        for record in save {
            self.remove.retain(|p| *p != record.peer);
            self.save.insert(record.peer, record);
        }
    }
}

/// The store, idle or in a commit.
enum State {
    Idle(Box<dyn PeerStore>),
    Busy(JoinHandle<Box<dyn PeerStore>>),
}

/// The supervisor's side of the writer.
pub(crate) struct StoreWriter {
    /// `None` once a commit panicked: the store is gone (logged).
    state: Option<State>,
    /// What the next commit writes.
    held: Batch,
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter")
            .field("busy", &matches!(self.state, Some(State::Busy(_))))
            .finish_non_exhaustive()
    }
}

impl StoreWriter {
    /// A writer for `store`.
    pub(crate) fn start(store: Box<dyn PeerStore>) -> Self {
        Self {
            state: Some(State::Idle(store)),
            held: Batch::default(),
        }
    }

    /// Hands changed records and forgotten peers over without waiting:
    /// committed now on the blocking pool, or with the next flush if a
    /// commit is in flight.
    pub(crate) fn flush(
        &mut self,
        save: Vec<PeerRecord>,
        remove: Vec<PeerId>,
        bans: Option<Vec<BanRecord>>,
    ) {
        self.held.merge(save, remove, bans);
        if let Some(State::Busy(task)) = &self.state
            && task.is_finished()
            && let Some(State::Busy(task)) = self.state.take()
        {
            self.state = {
                let mut task = task;
                match (&mut task).now_or_never() {
                    Some(result) => reclaimed(result),
                    // Finished, its output not yet handed over.
                    None => Some(State::Busy(task)),
                }
            };
        }
        if self.held.is_empty() {
            return;
        }
        if !matches!(self.state, Some(State::Idle(_))) {
            // A commit is in flight: the batch waits for the next flush.
            return;
        }
        if let Some(State::Idle(store)) = self.state.take() {
            let batch = std::mem::take(&mut self.held);
            self.state = Some(State::Busy(tokio::task::spawn_blocking(move || {
                let mut store = store;
                write(store.as_mut(), batch);
                store
            })));
        }
    }

    /// Waits for the commit in flight, then writes what is left (and
    /// `save`, `remove`), and closes the store.
    pub(crate) async fn finish(
        mut self,
        save: Vec<PeerRecord>,
        remove: Vec<PeerId>,
        bans: Option<Vec<BanRecord>>,
    ) {
        self.held.merge(save, remove, bans);
        let store = match self.state.take() {
            Some(State::Idle(store)) => Some(store),
            Some(State::Busy(task)) => match reclaimed(task.await) {
                Some(State::Idle(store)) => Some(store),
                _ => None,
            },
            None => None,
        };
        let Some(mut store) = store else {
            return;
        };
        let batch = std::mem::take(&mut self.held);
        if batch.is_empty() {
            return;
        }
        let done = tokio::task::spawn_blocking(move || {
            write(store.as_mut(), batch);
        })
        .await;
        if let Err(e) = done {
            tracing::error!(error = %e, "the peer store's last commit failed");
        }
    }
}

/// The store back from a finished commit, or `None` (logged) if it
/// panicked.
fn reclaimed(result: Result<Box<dyn PeerStore>, tokio::task::JoinError>) -> Option<State> {
    match result {
        Ok(store) => Some(State::Idle(store)),
        Err(e) => {
            tracing::error!(error = %e, "a peer store commit failed; the store is closed");
            None
        }
    }
}

fn write(store: &mut dyn PeerStore, batch: Batch) {
    let save: Vec<PeerRecord> = batch.save.into_values().collect();
    if !save.is_empty()
        && let Err(e) = store.save(&save)
    {
        tracing::warn!(error = %e, "could not save peers");
    }
    if !batch.remove.is_empty()
        && let Err(e) = store.remove(&batch.remove)
    {
        tracing::warn!(error = %e, "could not remove forgotten peers");
    }
    if let Some(bans) = batch.bans
        && let Err(e) = store.save_bans(&bans)
    {
        tracing::warn!(error = %e, "could not save bans");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use crate::peer_store::MemoryPeerStore;

    fn record(n: u64, score: i64) -> PeerRecord {
        PeerRecord {
            peer: Keypair::from_seed(n).peer_id(),
            addresses: Vec::new(),
            persistent: false,
            score,
        }
    }

    /// Batches are written off the supervisor's thread, in order, the
    /// latest record of a peer winning and a removal undoing an earlier
    /// save; everything handed over is written by `finish`.
    #[tokio::test]
    async fn batches_are_written_in_order_and_finish_writes_the_rest() {
        let store = MemoryPeerStore::default();
        let mut writer = StoreWriter::start(Box::new(store.clone()));
        writer.flush(vec![record(1, 1), record(2, 2)], vec![], None);
        writer.flush(vec![record(1, 5)], vec![record(2, 0).peer], None);
        for n in 10..40 {
            writer.flush(vec![record(n, n as i64)], vec![], None);
        }
        writer.finish(vec![record(3, 3)], vec![], None).await;
        let mut loaded = store.load().expect("load");
        loaded.sort_by_key(|r| r.score);
        let scores: Vec<i64> = loaded.iter().map(|r| r.score).collect();
        assert!(scores.contains(&5) && scores.contains(&3), "{scores:?}");
        assert!(!scores.contains(&1) && !scores.contains(&2));
        assert_eq!(loaded.len(), 2 + 30);
    }
}
