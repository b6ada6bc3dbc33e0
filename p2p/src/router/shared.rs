//! State shared by the router's handle, its channels and its tasks.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::channel::ChannelDescriptor;
use crate::identity::PeerId;
use crate::metrics::Metrics;
use crate::peer_manager::PeerError;
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
    /// Per channel, the early credit we announce and give a new
    /// connection's remote (protocol version 3): at most
    /// [`EARLY_CREDIT`](crate::router::EARLY_CREDIT), the window, and the
    /// largest messages the channel's byte window covers, so that an empty
    /// ledger can always back it.
    pub early_credit: Vec<u32>,
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
        let early_credit = windows
            .iter()
            .zip(&byte_windows)
            .map(|(&(window, max), &bytes)| {
                let covered = (bytes / max.max(1)).min(u64::from(u32::MAX)) as u32;
                crate::router::EARLY_CREDIT.min(window).min(covered)
            })
            .collect();
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
            early_credit,
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
    /// Connections ready, dials failed, connections closed: the
    /// supervisor's first queue. Connection tasks wait for room.
    pub lifecycle: mpsc::Sender<Event>,
    /// Requests from the router's handle; callers wait for room.
    pub commands: mpsc::Sender<Event>,
    /// Misbehaviour reports; never waited for: a full queue drops the
    /// report, counted (`peer_reports_dropped_total`).
    pub reports: mpsc::Sender<Event>,
    pub updates: broadcast::Sender<PeerUpdate>,
    /// Cancelled when the router begins to shut down.
    pub shutdown: CancellationToken,
    /// Set by [`Router::kill`](crate::Router::kill): stop without goodbyes
    /// and without flushing the peer store, as a crash would.
    pub abrupt: std::sync::atomic::AtomicBool,
    /// Bounds the WARN lines a remote can cause (wrong network ids
    /// arriving by the thousand must not flood the log).
    pub log_gate: LogGate,
    /// The addresses our `Hello` announces now (set at start, then when
    /// peers agree on the IP they observe for us:
    /// [`Router::set_observed_ip`](crate::Router::set_observed_ip)).
    pub announced: RwLock<Vec<crate::PeerAddress>>,
}

impl Shared {
    /// The `Hello` to send: `base` with the addresses announced now.
    pub fn hello(&self, base: &crate::proto::NodeInfo) -> crate::proto::NodeInfo {
        let mut info = base.clone();
        info.listen_addresses = self
            .announced
            .read()
            .iter()
            .map(ToString::to_string)
            .collect();
        info
    }
}

/// At most one log line per kind per period; the next line says how many
/// were held back. For what remotes cause at will (inbound refusals).
#[derive(Debug, Default)]
pub(crate) struct LogGate {
    last: parking_lot::Mutex<HashMap<&'static str, (tokio::time::Instant, u64)>>,
}

impl LogGate {
    /// How long a kind stays quiet after a line.
    pub const PERIOD: std::time::Duration = std::time::Duration::from_secs(10);

    /// `Some(held back since the last line)` if a line of `kind` may be
    /// logged now; `None` (counting it) if not.
    pub fn allow(&self, kind: &'static str) -> Option<u64> {
        let now = tokio::time::Instant::now();
        let mut last = self.last.lock();
        match last.get_mut(kind) {
            Some((at, held)) if now < *at + Self::PERIOD => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                *at = now;
                Some(std::mem::take(held))
            }
            None => {
                // One entry per kind: the kinds are a fixed set of labels.
                last.insert(kind, (now, 0));
                Some(0)
            }
        }
    }
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

    /// Sends a misbehaviour report to the supervisor. Never waits: when its
    /// report queue is full the report is dropped (the peer keeps its
    /// score), which is logged and counted as a drop, not as a report.
    pub fn report(&self, peer: PeerId, error: PeerError) {
        tracing::debug!(peer = %peer.short(), %error, "peer reported");
        match self.reports.try_send(Event::Report { peer, error }) {
            Ok(()) => {
                self.metrics.peer_reports.inc();
            }
            Err(_) => {
                self.metrics.peer_reports_dropped.inc();
                tracing::warn!(peer = %peer.short(), "report dropped: the router's report queue is full");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::identity::Keypair;
    use crate::router::{RouterBuilder, RouterConfig};
    use crate::{PeerError, channel::ChannelId};

    /// Reports never wait: with the supervisor not draining them, the
    /// report queue fills, and a report beyond it is counted as a drop,
    /// not as a report.
    #[test]
    fn a_report_over_a_full_queue_is_counted_as_dropped() {
        let builder = RouterBuilder::new(Keypair::from_seed(1), RouterConfig::default());
        let shared = builder.shared.clone();
        let peer = Keypair::from_seed(2).peer_id();
        let queue = super::super::supervisor::REPORT_QUEUE as u64;
        for _ in 0..queue + 3 {
            shared.report(peer, PeerError::UnknownChannel(ChannelId(9)));
        }
        assert_eq!(shared.metrics.peer_reports.get(), queue);
        assert_eq!(shared.metrics.peer_reports_dropped.get(), 3);
    }
}
