//! The ring's counters ([`RingStats`], kept by the core) served to
//! Prometheus.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

pub use reactor_ring_proto::stats::RingStats;

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
