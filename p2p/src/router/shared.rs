//! State shared by the router's handle, its channels and its tasks.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::channel::{ChannelDescriptor, PeerError};
use crate::identity::PeerId;
use crate::metrics::Metrics;
use crate::router::PeerUpdate;
use crate::router::ledger::{ChannelLimits, CreditLedger, byte_windows};
use crate::router::link::{Inbound, Link};
use crate::router::supervisor::Event;

/// A channel as the reader sees it.
#[derive(Debug)]
pub(crate) struct ChannelSlot {
    pub descriptor: ChannelDescriptor,
    pub inbound: mpsc::Sender<Inbound>,
    /// Messages the receive queue holds; the ledger never grants more.
    pub capacity: usize,
}

/// Every channel of the router, fixed at start.
#[derive(Debug)]
pub(crate) struct ChannelTable {
    pub slots: Vec<ChannelSlot>,
    by_id: HashMap<u16, usize>,
    /// Who may fill each channel's receive queue, and how much.
    pub ledger: Arc<CreditLedger>,
}

impl ChannelTable {
    /// The table of `slots`, with a ledger that lets one peer hold at most
    /// `recv_bytes_per_peer` over all of them (split by [`byte_windows`]),
    /// and all peers together that much for each peer the queues make room
    /// for.
    pub fn new(slots: Vec<ChannelSlot>, recv_bytes_per_peer: u64) -> Self {
        let by_id = slots
            .iter()
            .enumerate()
            .map(|(i, s)| (s.descriptor.id.0, i))
            .collect();
        let windows: Vec<(u32, u64)> = slots
            .iter()
            .map(|s| {
                (
                    s.descriptor.recv_buffer as u32,
                    s.descriptor.max_message_size as u64,
                )
            })
            .collect();
        let byte_windows = byte_windows(&windows, recv_bytes_per_peer);
        let ledger = Arc::new(CreditLedger::new(slots.iter().zip(byte_windows).map(
            |(s, byte_window)| {
                // The queue makes room for a window of this many peers.
                let peers = (s.capacity / s.descriptor.recv_buffer.max(1)).max(1) as u64;
                ChannelLimits {
                    window: s.descriptor.recv_buffer as u32,
                    capacity: s.capacity as u64,
                    byte_window,
                    byte_capacity: byte_window.saturating_mul(peers),
                }
            },
        )));
        Self {
            slots,
            by_id,
            ledger,
        }
    }

    pub fn index_of(&self, id: u16) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    pub fn descriptors(&self) -> Vec<ChannelDescriptor> {
        self.slots.iter().map(|s| s.descriptor.clone()).collect()
    }
}

/// What every part of the router shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub local: PeerId,
    pub metrics: Metrics,
    /// Connected peers. Written only by the supervisor; read on every send.
    pub peers: RwLock<BTreeMap<PeerId, Arc<Link>>>,
    pub channels: OnceLock<Arc<ChannelTable>>,
    pub events: mpsc::Sender<Event>,
    pub updates: broadcast::Sender<PeerUpdate>,
    /// Cancelled when the router begins to shut down.
    pub shutdown: CancellationToken,
    /// Set by [`Router::kill`](crate::Router::kill): stop without goodbyes
    /// and without flushing the peer store, as a crash would.
    pub abrupt: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub fn link(&self, peer: PeerId) -> Option<Arc<Link>> {
        self.peers.read().get(&peer).cloned()
    }

    /// Every connected peer's link, in PeerId order.
    pub fn links(&self) -> Vec<Arc<Link>> {
        self.peers.read().values().cloned().collect()
    }

    pub fn is_shut_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Sends a misbehaviour report to the supervisor. Never waits: when the
    /// supervisor is swamped the report is dropped (the peer keeps its
    /// score), which is logged and counted as a report.
    pub fn report(&self, peer: PeerId, error: PeerError) {
        self.metrics.peer_reports.inc();
        tracing::debug!(peer = %peer.short(), %error, "peer reported");
        if self.events.try_send(Event::Report { peer, error }).is_err() {
            tracing::warn!(peer = %peer.short(), "report dropped: router event queue full");
        }
    }
}
