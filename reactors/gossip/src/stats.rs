//! The gossip core's counters ([`GossipStats`], from the core crate) as
//! Prometheus counters.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

pub use reactor_gossip_proto::stats::GossipStats;

/// Serves a node's [`GossipStats`] as Prometheus counters at every scrape
/// (`switchyard_gossip_*_total`).
#[derive(Debug)]
pub(crate) struct GossipCollector {
    pub(crate) stats: tokio::sync::watch::Receiver<GossipStats>,
}

impl Collector for GossipCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let stats = self.stats.borrow().clone();
        for (name, help, value) in stats.counters() {
            let counter = ConstCounter::new(value);
            let name = format!("switchyard_gossip_{name}");
            let metric = encoder.encode_descriptor(&name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn the_collector_serves_every_counter() {
        let stats = GossipStats {
            forged_rejected: 3,
            oversized_refused: 2,
            delivered: 7,
            ..GossipStats::default()
        };
        let (_tx, rx) = tokio::sync::watch::channel(stats);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(GossipCollector { stats: rx }));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains("switchyard_gossip_forged_rejected_total 3"),
            "{text}"
        );
        assert!(
            text.contains("switchyard_gossip_oversized_refused_total 2"),
            "{text}"
        );
        assert!(
            text.contains("switchyard_gossip_delivered_total 7"),
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE switchyard_gossip_").count(),
            GossipStats::default().counters().len()
        );
    }
}
