//! The pex counters ([`PexStats`], kept by the core) and their Prometheus
//! collector.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

pub use reactor_pex_proto::stats::{PexStats, RefusedAddresses};

/// Serves a node's [`PexStats`] as Prometheus counters at every scrape
/// (`switchyard_pex_*`; refused addresses labelled by `reason`).
#[derive(Debug)]
pub(crate) struct PexCollector {
    pub(crate) stats: tokio::sync::watch::Receiver<PexStats>,
}

impl Collector for PexCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let stats = self.stats.borrow().clone();
        let counters = [
            (
                "requests_sent",
                "Address requests sent",
                stats.requests_sent,
            ),
            (
                "requests_unanswered",
                "Address requests that got no answer in time",
                stats.requests_unanswered,
            ),
            (
                "requests_served",
                "Address requests answered",
                stats.requests_served,
            ),
            (
                "requests_refused",
                "Address requests refused by the rate limit (reported)",
                stats.requests_refused,
            ),
            (
                "responses_accepted",
                "Address responses accepted",
                stats.responses_accepted,
            ),
            (
                "responses_refused",
                "Address responses refused and reported (unsolicited, oversized, malformed)",
                stats.responses_refused,
            ),
            (
                "responses_late",
                "Address responses from peers already gone (ignored)",
                stats.responses_late,
            ),
            (
                "addresses_learned",
                "Addresses new to the address book",
                stats.addresses_learned,
            ),
            (
                "addresses_known",
                "Addresses the address book already had",
                stats.addresses_known,
            ),
            (
                "seed_disconnects",
                "Seed mode: inbound peers disconnected to free their slot",
                stats.seed_disconnects,
            ),
            (
                "sends_dropped",
                "Pex messages dropped before they left (full send queue)",
                stats.sends_dropped,
            ),
            (
                "observations_taken",
                "Observations of our IP in responses counted toward agreement",
                stats.observations_taken,
            ),
            (
                "observations_refused",
                "Observations of our IP not counted (unsolicited, no observer IP, another scope)",
                stats.observations_refused,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let name = format!("switchyard_pex_{name}");
            let metric = encoder.encode_descriptor(&name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let mut family = encoder.encode_descriptor(
            "switchyard_pex_addresses_refused",
            "Addresses refused before the address book, by reason",
            None,
            MetricType::Counter,
        )?;
        for (reason, count) in stats.addresses_refused.iter() {
            let labels = [("reason", reason.as_str())];
            ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
        }
        // An info gauge: 1 with the agreed IP as its label, or 0 with an
        // empty one while peers do not agree (declared from the start).
        let mut family = encoder.encode_descriptor(
            "switchyard_pex_observed_address",
            "The IP peers agree they see us at (label ip; 0 and ip=\"\" while they do not)",
            None,
            MetricType::Gauge,
        )?;
        let (ip, value) = match stats.observed_ip {
            Some(ip) => (ip.to_string(), 1),
            None => (String::new(), 0),
        };
        let labels = [("ip", ip.as_str())];
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
        Ok(())
    }
}
