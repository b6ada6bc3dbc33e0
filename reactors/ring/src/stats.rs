//! Counters of what the ring did, and their Prometheus collector.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// What one node's ring has done since it started. Every refusal and every
/// drop is counted here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Negotiations this gateway answered.
    pub joins_served: u64,
    /// Negotiations this gateway refused (not a gateway, busy, too soon).
    pub joins_refused: u64,
    /// Announced locations that verified.
    pub locations_verified: u64,
    /// Announced locations that did not verify (the peer was reported).
    pub locations_refused: u64,
    /// Application routes this node started.
    pub routes_started: u64,
    /// Routes delivered here (application payloads and connect requests).
    pub routes_delivered: u64,
    /// Routes forwarded to a neighbor.
    pub routes_forwarded: u64,
    /// Routes sent back at a dead end.
    pub routes_backtracked: u64,
    /// Routes that failed here (out of hops, or nothing left to try).
    pub routes_failed: u64,
    /// Connect requests this node sent.
    pub connects_sent: u64,
    /// Connect requests this node accepted.
    pub connects_accepted: u64,
    /// Connect requests this node refused (no room).
    pub connects_refused: u64,
    /// Neighbors admitted.
    pub neighbors_added: u64,
    /// Ring peers refused as neighbors (no room, not expected).
    pub neighbors_refused: u64,
    /// Links dropped as the worst placed.
    pub links_pruned: u64,
    /// Neighbors disconnected for costing more than their share.
    pub overload_disconnects: u64,
    /// Messages dropped: from a peer that is not a neighbor, malformed,
    /// or whose way back is gone.
    pub messages_dropped: u64,
    /// Current neighbors (a gauge).
    pub neighbors: u64,
}

impl RingStats {
    /// Every counter with its metric name and help text (`neighbors`, a
    /// gauge, apart).
    pub fn counters(&self) -> [(&'static str, &'static str, u64); 17] {
        [
            (
                "joins_served",
                "Location negotiations answered",
                self.joins_served,
            ),
            (
                "joins_refused",
                "Location negotiations refused",
                self.joins_refused,
            ),
            (
                "locations_verified",
                "Announced locations that verified",
                self.locations_verified,
            ),
            (
                "locations_refused",
                "Announced locations that did not verify",
                self.locations_refused,
            ),
            (
                "routes_started",
                "Application routes started here",
                self.routes_started,
            ),
            (
                "routes_delivered",
                "Routes delivered here",
                self.routes_delivered,
            ),
            (
                "routes_forwarded",
                "Routes forwarded",
                self.routes_forwarded,
            ),
            (
                "routes_backtracked",
                "Routes sent back at a dead end",
                self.routes_backtracked,
            ),
            (
                "routes_failed",
                "Routes that failed here",
                self.routes_failed,
            ),
            ("connects_sent", "Connect requests sent", self.connects_sent),
            (
                "connects_accepted",
                "Connect requests accepted",
                self.connects_accepted,
            ),
            (
                "connects_refused",
                "Connect requests refused",
                self.connects_refused,
            ),
            (
                "neighbors_added",
                "Neighbors admitted",
                self.neighbors_added,
            ),
            (
                "neighbors_refused",
                "Ring peers refused as neighbors",
                self.neighbors_refused,
            ),
            (
                "links_pruned",
                "Links dropped as the worst placed",
                self.links_pruned,
            ),
            (
                "overload_disconnects",
                "Neighbors disconnected for their load",
                self.overload_disconnects,
            ),
            (
                "messages_dropped",
                "Ring messages dropped",
                self.messages_dropped,
            ),
        ]
    }
}

/// Serves a node's [`RingStats`] at every scrape (`switchyard_ring_*`),
/// read from the driver's latest snapshot.
pub(crate) struct RingCollector {
    pub(crate) stats: Box<dyn Fn() -> RingStats + Send + Sync>,
}

impl fmt::Debug for RingCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingCollector").finish_non_exhaustive()
    }
}

impl Collector for RingCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let s = (self.stats)();
        for (name, help, value) in s.counters() {
            let counter = ConstCounter::new(value);
            let name = format!("switchyard_ring_{name}");
            let metric = encoder.encode_descriptor(&name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let gauge = ConstGauge::new(s.neighbors as i64);
        let metric = encoder.encode_descriptor(
            "switchyard_ring_neighbors",
            "Current ring neighbors",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}
