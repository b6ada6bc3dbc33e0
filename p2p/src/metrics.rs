//! Router metrics, registered in a `prometheus-client` registry under the
//! prefix `switchyard_p2p`.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `messages_sent_total`, `bytes_sent_total` | channel, peer | handed to the transport |
//! | `messages_received_total`, `bytes_received_total` | channel, peer | accepted from the transport |
//! | `send_queue_depth` | channel, peer | messages waiting in the peer's send queue |
//! | `messages_written_through_total` | channel, peer | of the messages sent, those the sending task wrote to the transport itself, the writer task being idle (ADR 0002 "Write-through") |
//! | `messages_dropped_total` | channel, reason | every message dropped, by [`DropReason`] |
//! | `dial_attempts_total`, `dial_failures_total` | – | outbound dials |
//! | `peers` | direction | connected peers |
//! | `peer_reports_total` | – | misbehaviour reports the supervisor received |
//! | `peer_reports_dropped_total` | – | misbehaviour reports dropped because the report queue was full |
//! | `handshakes_refused_total` | reason | connections ended before they became peers |
//! | `transport_violations_total` | reason | admitted connections the transport ended over the peer's bytes: `frame_too_large`, `reassembly_budget` (QUIC partial frames), `protocol` |
//! | `addresses_refused_total` | reason | addresses the address book refused ([`AddAddressError::reason`](crate::AddAddressError::reason)), from any source |
//! | `early_data_bytes`, `early_data_bytes_max` | – | payload bytes of early data held for connections in their handshake (now, and the most at once): at most `max_pending_handshakes × MAX_EARLY_BYTES` for inbound ones (ADR 0002, "Early data") |
//! | `handshakes_total` | transport, outcome | connections that finished the router's handshake stage, by the transport's scheme (`memory`, `tcp`, `quic`): `outcome="ok"` for each one that became a peer (either direction), else the refusal reason, the same label and at the same point as `handshakes_refused_total` |
//! | `transport_bytes_sent_total`, `transport_bytes_received_total` | transport | payload bytes of the messages handed to / accepted from each transport (the sums of `bytes_sent_total` / `bytes_received_total` over its connections, kept after a peer's series go) |
//! | `connections` | transport | connected peers by transport (the sum over transports is the sum of `peers`) |
//!
//! The reasons of `handshakes_refused_total`, every label the router uses,
//! and the failure each counts (ADR 0004 §6 and §10):
//!
//! | reason | when |
//! |---|---|
//! | `too_many_handshakes`, `too_many_handshakes_from_prefix` | an inbound connection while the pending handshakes (in all, or from its network) are at their limit: the transport's own (TCP and QUIC `max_handshakes`, `max_handshakes_per_prefix`; the socket is closed before the Noise or TLS handshake) or the router's (`max_pending_handshakes`, `_per_prefix`; closed before `Hello`) |
//! | `handshake_timeout` | no transport handshake (Noise, TLS) or no `Hello` exchange within its deadline |
//! | `bad_handshake` | the transport handshake failed: bytes that are not our handshake (on TCP a malformed suite preamble, or one of protocol version 2 or older), a bad identity proof, a handshake message over the limit, a Noise message that does not decrypt (on TCP, a prologue that differs though the network tags match: a suite preamble rewritten in flight, or two network ids whose tags collide) |
//! | `network_mismatch` | another network id: in the transport handshake (TCP: the network tag of the dialer's suite preamble is not ours, and the listener says so; QUIC: no common ALPN), or in `Hello` (the memory transport, which has no handshake) |
//! | `no_common_suite` | TCP: none of the cipher suites the dialer offers is one we accept (ADR 0004 §2a) |
//! | `io` | the connection failed before or during the handshake, or while sending or awaiting `Hello` (a port scan that connects and closes) |
//! | `accept_backlog` | the transport finished its handshake but the router did not take the connection within the handshake timeout (its accept queue stayed full) |
//! | `accept_error` | any other error of the transport's `accept` (should stay at zero) |
//! | `remote_goodbye` | the remote answered our `Hello` with a `Goodbye` |
//! | `protocol`, `hello_too_large`, `oversized_hello`, `bad_channel`, `peer_id_mismatch` | a first frame that is not a well-formed `Hello`, or one that names another PeerId than the authenticated one |
//! | `version_mismatch` | a `Hello` for another protocol version |
//! | `duplicate` | a second connection of a connected peer that loses the tie-break |
//! | `banned`, `low_score`, `prefix_banned`, `prefix_limit`, `inbound_full`, `outbound_full`, `self_connection`, `already_connected` | the peer manager's verdict ([`RejectReason`](crate::peer_manager::RejectReason)) |
//!
//! Every connection a node turns away before it becomes a peer is counted
//! once, on every transport: what the transport's `accept` reports, what
//! the router refuses, and what a transport closes on its own before
//! `accept` (TCP and QUIC close a connection at once when their handshake
//! limits are full): those a transport counts in its
//! [`RefusalCounts`](crate::transport::RefusalCounts), which the router
//! adds here at each accept and at least every second. The memory
//! transport has no handshake: its connections meet only the router's
//! limits and checks.
//!
//! For each transport and each refusal reason, `handshakes_total{transport,
//! outcome=reason}` moves with `handshakes_refused_total{reason}`: summed
//! over the transports, the first equals the second. Outbound dials that
//! fail before the router's handshake (unreachable, timed out, another key
//! answered) are `dial_failures_total`, not handshakes.
//!
//! Every family is declared from the start (its `# HELP` and `# TYPE`
//! lines, through [`Declared`]), so a dashboard or an alert finds it before
//! its first sample: `messages_dropped_total` before the first drop. The
//! series of fixed label sets start at zero: `peers` by direction,
//! `handshakes_refused_total` for every reason of [`REFUSAL_REASONS`],
//! `transport_violations_total` for each of its reasons, and for each
//! transport the router is given (at [`RouterBuilder::transport`](crate::router::RouterBuilder::transport)),
//! `handshakes_total` for `ok` and every refusal reason, its bytes and its
//! `connections` gauge.
//!
//! Per-peer series are removed when the peer disconnects, so their number is
//! bounded by the connection limits. Inbound messages on unknown channels
//! are counted under the channel label `unknown`, so a peer cannot create
//! series at will.

use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::identity::PeerId;

/// Every reason of `handshakes_refused_total`, as the table above lists
/// them; each starts at zero.
pub const REFUSAL_REASONS: &[&str] = &[
    "too_many_handshakes",
    "too_many_handshakes_from_prefix",
    "handshake_timeout",
    "bad_handshake",
    "network_mismatch",
    "no_common_suite",
    "io",
    "accept_backlog",
    "accept_error",
    "remote_goodbye",
    "protocol",
    "hello_too_large",
    "oversized_hello",
    "bad_channel",
    "peer_id_mismatch",
    "version_mismatch",
    "duplicate",
    "banned",
    "low_score",
    "prefix_banned",
    "prefix_limit",
    "inbound_full",
    "outbound_full",
    "self_connection",
    "already_connected",
];

/// The reasons of `transport_violations_total`.
pub const VIOLATION_REASONS: &[&str] = &["frame_too_large", "reassembly_budget", "protocol"];

/// A metric registered so that it is always shown: its `# HELP` and
/// `# TYPE` lines even before its first series (`prometheus-client` leaves
/// out a family without series).
#[derive(Debug, Clone)]
pub struct Declared<M>(pub M);

impl<M: EncodeMetric> EncodeMetric for Declared<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        self.0.metric_type()
    }
}

/// Why a message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Queued for a peer whose connection then ended.
    PeerGone,
    /// `try_send` or `broadcast` found the peer's queue full.
    QueueFull,
    /// Sent to a peer that is not connected.
    NotConnected,
    /// Sent to a peer that does not serve the channel.
    Unsupported,
    /// Larger than the channel's `max_message_size`.
    TooLarge,
    /// Did not decode as the channel's message type.
    Malformed,
    /// Arrived on a channel this node does not serve.
    UnknownChannel,
    /// Arrived beyond the credit we granted.
    FlowControl,
    /// Arrived for a receiver that was dropped.
    ReceiverClosed,
    /// The channel's receive queue was full (a flow-control accounting
    /// fault; should stay at zero).
    ReceiverFull,
    /// Early data (sent on the protocol's early credit, before the
    /// receiver's first `Credit`) for which the receiver had no room: the
    /// peer's share of the receive queue was taken (by its earlier
    /// connections' messages, or the queue by other peers'), or it came
    /// beyond [`MAX_EARLY_BYTES`](crate::router::MAX_EARLY_BYTES) before
    /// admission.
    EarlyNoRoom,
    /// Early data of a connection that was refused (banned, over the
    /// limits, a wrong network, a duplicate) or failed before admission.
    EarlyRefused,
}

impl DropReason {
    /// The label value, in snake case.
    pub fn as_str(&self) -> &'static str {
        match self {
            DropReason::PeerGone => "peer_gone",
            DropReason::QueueFull => "queue_full",
            DropReason::NotConnected => "not_connected",
            DropReason::Unsupported => "unsupported",
            DropReason::TooLarge => "too_large",
            DropReason::Malformed => "malformed",
            DropReason::UnknownChannel => "unknown_channel",
            DropReason::FlowControl => "flow_control",
            DropReason::ReceiverClosed => "receiver_closed",
            DropReason::ReceiverFull => "receiver_full",
            DropReason::EarlyNoRoom => "early_no_room",
            DropReason::EarlyRefused => "early_refused",
        }
    }
}

impl EncodeLabelValue for DropReason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(self.as_str())
    }
}

/// Labels of per-(channel, peer) series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ChannelPeerLabels {
    /// The channel's name.
    pub channel: String,
    /// The peer's short id.
    pub peer: String,
}

/// Labels of drop counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DropLabels {
    /// The channel's name.
    pub channel: String,
    /// Why.
    pub reason: DropReason,
}

/// Labels with a free-form reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why.
    pub reason: String,
}

/// Labels of the peer gauge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `inbound` or `outbound`.
    pub direction: String,
}

/// Labels of the per-transport series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TransportLabels {
    /// The transport's scheme: `memory`, `tcp`, `quic`.
    pub transport: String,
}

/// Labels of `handshakes_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct HandshakeLabels {
    /// The transport's scheme.
    pub transport: String,
    /// `ok`, or a reason of [`REFUSAL_REASONS`].
    pub outcome: String,
}

/// The `outcome` of a handshake that made a peer.
pub const HANDSHAKE_OK: &str = "ok";

/// The router's metrics. Cheap to clone: every family shares its storage.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Messages handed to the transport.
    pub messages_sent: Family<ChannelPeerLabels, Counter>,
    /// Payload bytes handed to the transport.
    pub bytes_sent: Family<ChannelPeerLabels, Counter>,
    /// Messages accepted from the transport.
    pub messages_received: Family<ChannelPeerLabels, Counter>,
    /// Payload bytes accepted from the transport.
    pub bytes_received: Family<ChannelPeerLabels, Counter>,
    /// Messages waiting in a peer's send queue.
    pub send_queue_depth: Family<ChannelPeerLabels, Gauge>,
    /// Of the messages sent, those the sending task wrote through to the
    /// transport itself (the connection's writer task being idle).
    pub messages_written_through: Family<ChannelPeerLabels, Counter>,
    /// Dropped messages by channel and reason.
    pub messages_dropped: Family<DropLabels, Counter>,
    /// Outbound dials started.
    pub dial_attempts: Counter,
    /// Outbound dials that failed.
    pub dial_failures: Counter,
    /// Connected peers by direction.
    pub peers: Family<DirectionLabels, Gauge>,
    /// Misbehaviour reports.
    pub peer_reports: Counter,
    /// Misbehaviour reports dropped because the report queue was full.
    pub peer_reports_dropped: Counter,
    /// Connections ended before they became peers, by reason.
    pub handshakes_refused: Family<ReasonLabels, Counter>,
    /// Admitted connections ended because the peer's bytes broke a
    /// transport limit or the framing, by reason.
    pub transport_violations: Family<ReasonLabels, Counter>,
    /// Addresses the address book refused, by reason (the screen every
    /// source passes: peer exchange, gossip and ring contacts, the API).
    pub addresses_refused: Family<ReasonLabels, Counter>,
    /// Payload bytes of early data held for connections not admitted yet.
    pub early_data_bytes: Gauge,
    /// The most `early_data_bytes` has been since the router started.
    pub early_data_bytes_max: Gauge,
    /// Handshakes by transport and outcome (`ok` or the refusal reason).
    pub handshakes: Family<HandshakeLabels, Counter>,
    /// Payload bytes handed to each transport.
    pub transport_bytes_sent: Family<TransportLabels, Counter>,
    /// Payload bytes accepted from each transport.
    pub transport_bytes_received: Family<TransportLabels, Counter>,
    /// Connected peers by transport.
    pub connections: Family<TransportLabels, Gauge>,
}

impl Metrics {
    /// Registers every family in `registry` under `switchyard_p2p`, each
    /// declared from the start, the fixed label sets at zero.
    pub fn register(&self, registry: &mut Registry) {
        for direction in ["inbound", "outbound"] {
            let _ = self.peers.get_or_create(&DirectionLabels {
                direction: direction.to_string(),
            });
        }
        for reason in REFUSAL_REASONS {
            let _ = self.handshakes_refused.get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            });
        }
        for reason in VIOLATION_REASONS {
            let _ = self.transport_violations.get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            });
        }
        let r = registry.sub_registry_with_prefix("switchyard_p2p");
        r.register(
            "messages_sent",
            "Messages handed to the transport",
            Declared(self.messages_sent.clone()),
        );
        r.register(
            "bytes_sent",
            "Payload bytes handed to the transport",
            Declared(self.bytes_sent.clone()),
        );
        r.register(
            "messages_received",
            "Messages accepted from the transport",
            Declared(self.messages_received.clone()),
        );
        r.register(
            "bytes_received",
            "Payload bytes accepted from the transport",
            Declared(self.bytes_received.clone()),
        );
        r.register(
            "send_queue_depth",
            "Messages waiting in a peer's send queue",
            Declared(self.send_queue_depth.clone()),
        );
        r.register(
            "messages_written_through",
            "Messages the sending task wrote to the transport itself, the writer task being idle",
            self.messages_written_through.clone(),
        );
        r.register(
            "messages_dropped",
            "Dropped messages by channel and reason",
            Declared(self.messages_dropped.clone()),
        );
        r.register(
            "dial_attempts",
            "Outbound dials started",
            Declared(self.dial_attempts.clone()),
        );
        r.register(
            "dial_failures",
            "Outbound dials that failed",
            Declared(self.dial_failures.clone()),
        );
        r.register("peers", "Connected peers", Declared(self.peers.clone()));
        r.register(
            "peer_reports",
            "Misbehaviour reports the supervisor received",
            Declared(self.peer_reports.clone()),
        );
        r.register(
            "peer_reports_dropped",
            "Misbehaviour reports dropped because the report queue was full",
            Declared(self.peer_reports_dropped.clone()),
        );
        r.register(
            "handshakes_refused",
            "Connections ended before they became peers",
            Declared(self.handshakes_refused.clone()),
        );
        r.register(
            "transport_violations",
            "Admitted connections ended because the peer broke a transport limit or the framing",
            Declared(self.transport_violations.clone()),
        );
        r.register(
            "addresses_refused",
            "Addresses the address book refused, by reason",
            Declared(self.addresses_refused.clone()),
        );
        r.register(
            "early_data_bytes",
            "Payload bytes of early data held for connections not admitted yet",
            self.early_data_bytes.clone(),
        );
        r.register(
            "early_data_bytes_max",
            "The most early data held at once since the router started, in payload bytes",
            self.early_data_bytes_max.clone(),
        );
        r.register(
            "handshakes",
            "Handshakes by transport and outcome (ok, or the refusal reason)",
            Declared(self.handshakes.clone()),
        );
        r.register(
            "transport_bytes_sent",
            "Payload bytes handed to each transport",
            Declared(self.transport_bytes_sent.clone()),
        );
        r.register(
            "transport_bytes_received",
            "Payload bytes accepted from each transport",
            Declared(self.transport_bytes_received.clone()),
        );
        r.register(
            "connections",
            "Connected peers by transport",
            Declared(self.connections.clone()),
        );
    }

    /// `bytes` of early data are now held before admission.
    pub(crate) fn early_held(&self, bytes: usize) {
        let now = self.early_data_bytes.inc_by(bytes as i64) + bytes as i64;
        self.early_data_bytes_max
            .inner()
            .fetch_max(now, std::sync::atomic::Ordering::Relaxed);
    }

    /// Starts the series of `transport` (a scheme) at zero: its handshakes
    /// for `ok` and every refusal reason, its bytes, its connections. The
    /// router calls it for each transport it is given; calling it again
    /// changes nothing.
    pub fn declare_transport(&self, transport: &str) {
        for outcome in std::iter::once(&HANDSHAKE_OK).chain(REFUSAL_REASONS) {
            let _ = self.handshakes.get_or_create(&HandshakeLabels {
                transport: transport.to_string(),
                outcome: outcome.to_string(),
            });
        }
        let labels = TransportLabels {
            transport: transport.to_string(),
        };
        let _ = self.transport_bytes_sent.get_or_create(&labels);
        let _ = self.transport_bytes_received.get_or_create(&labels);
        let _ = self.connections.get_or_create(&labels);
    }

    /// Handshakes on `transport` so far with `outcome` (`ok` or a refusal
    /// reason).
    pub fn handshakes(&self, transport: &str, outcome: &str) -> u64 {
        self.handshakes
            .get_or_create(&HandshakeLabels {
                transport: transport.to_string(),
                outcome: outcome.to_string(),
            })
            .get()
    }

    /// Connected peers on `transport` now.
    pub fn connections(&self, transport: &str) -> i64 {
        self.connection_gauge(transport).get()
    }

    /// Payload bytes (sent, received) over `transport` so far.
    pub fn transport_bytes(&self, transport: &str) -> (u64, u64) {
        let labels = TransportLabels {
            transport: transport.to_string(),
        };
        (
            self.transport_bytes_sent.get_or_create(&labels).get(),
            self.transport_bytes_received.get_or_create(&labels).get(),
        )
    }

    /// The connections gauge of `transport`.
    pub(crate) fn connection_gauge(&self, transport: &str) -> Gauge {
        self.connections
            .get_or_create(&TransportLabels {
                transport: transport.to_string(),
            })
            .clone()
    }

    /// Counts a handshake on `transport` that made a peer.
    pub(crate) fn handshake_ok(&self, transport: &str) {
        self.handshakes
            .get_or_create(&HandshakeLabels {
                transport: transport.to_string(),
                outcome: HANDSHAKE_OK.to_string(),
            })
            .inc();
    }

    /// Counts one dropped message.
    pub fn drop(&self, channel: &str, reason: DropReason) {
        self.messages_dropped
            .get_or_create(&DropLabels {
                channel: channel.to_string(),
                reason,
            })
            .inc();
    }

    /// Counts `n` dropped messages.
    pub fn drop_many(&self, channel: &str, reason: DropReason, n: u64) {
        if n > 0 {
            self.messages_dropped
                .get_or_create(&DropLabels {
                    channel: channel.to_string(),
                    reason,
                })
                .inc_by(n);
        }
    }

    /// Dropped messages so far on `channel` for `reason`.
    pub fn dropped(&self, channel: &str, reason: DropReason) -> u64 {
        self.messages_dropped
            .get_or_create(&DropLabels {
                channel: channel.to_string(),
                reason,
            })
            .get()
    }

    /// The handles of one (channel, peer) pair, resolved once per connection
    /// so the data path only touches atomics. Their transport's byte counters are detached until
    /// [`attach_transport`](Self::attach_transport).
    pub(crate) fn link_channel(&self, channel: &str, peer: PeerId) -> LinkChannelMetrics {
        let labels = ChannelPeerLabels {
            channel: channel.to_string(),
            peer: peer.to_string(),
        };
        LinkChannelMetrics {
            transport_bytes_sent: Counter::default(),
            transport_bytes_received: Counter::default(),
            messages_sent: self.messages_sent.get_or_create(&labels).clone(),
            bytes_sent: self.bytes_sent.get_or_create(&labels).clone(),
            messages_received: self.messages_received.get_or_create(&labels).clone(),
            bytes_received: self.bytes_received.get_or_create(&labels).clone(),
            queue_depth: self.send_queue_depth.get_or_create(&labels).clone(),
            written_through: self.messages_written_through.get_or_create(&labels).clone(),
            labels,
        }
    }

    /// Points `metrics`' transport byte counters at `transport`'s series.
    pub(crate) fn attach_transport(&self, metrics: &mut LinkChannelMetrics, transport: &str) {
        let labels = TransportLabels {
            transport: transport.to_string(),
        };
        metrics.transport_bytes_sent = self.transport_bytes_sent.get_or_create(&labels).clone();
        metrics.transport_bytes_received =
            self.transport_bytes_received.get_or_create(&labels).clone();
    }

    /// Removes a disconnected peer's series.
    pub(crate) fn remove_link_channel(&self, metrics: &LinkChannelMetrics) {
        self.messages_sent.remove(&metrics.labels);
        self.bytes_sent.remove(&metrics.labels);
        self.messages_received.remove(&metrics.labels);
        self.bytes_received.remove(&metrics.labels);
        self.send_queue_depth.remove(&metrics.labels);
        self.messages_written_through.remove(&metrics.labels);
    }

    /// Counts a connection the transport ended over the peer's bytes.
    pub(crate) fn violation(&self, reason: &str) {
        self.transport_violations
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts an address the address book refused.
    pub(crate) fn address_refused(&self, reason: &str) {
        self.addresses_refused
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Admitted connections ended over the peer's bytes so far, for
    /// `reason` (`frame_too_large`, `reassembly_budget`, `protocol`).
    pub fn violations(&self, reason: &str) -> u64 {
        self.transport_violations
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .get()
    }

    /// Addresses refused so far for `reason` (an
    /// [`AddAddressError::reason`](crate::AddAddressError::reason) label).
    pub fn addresses_refused(&self, reason: &str) -> u64 {
        self.addresses_refused
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .get()
    }

    /// Counts a connection refused on `transport` (a scheme).
    pub(crate) fn refused(&self, transport: &str, reason: &str) {
        self.refused_many(transport, reason, 1);
    }

    /// Counts `n` connections refused on `transport`: under
    /// `handshakes_refused_total{reason}` and
    /// `handshakes_total{transport, outcome=reason}`.
    pub(crate) fn refused_many(&self, transport: &str, reason: &str, n: u64) {
        self.handshakes_refused
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc_by(n);
        self.handshakes
            .get_or_create(&HandshakeLabels {
                transport: transport.to_string(),
                outcome: reason.to_string(),
            })
            .inc_by(n);
    }

    /// Connections refused so far for `reason` (a
    /// `handshakes_refused_total` label, see the module docs).
    pub fn handshakes_refused(&self, reason: &str) -> u64 {
        self.handshakes_refused
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .get()
    }
}

/// Pre-resolved counters of one channel on one connection.
#[derive(Debug, Clone)]
pub(crate) struct LinkChannelMetrics {
    pub labels: ChannelPeerLabels,
    pub messages_sent: Counter,
    pub bytes_sent: Counter,
    pub messages_received: Counter,
    pub bytes_received: Counter,
    pub queue_depth: Gauge,
    pub written_through: Counter,
    /// The transport's `transport_bytes_sent_total`, shared by its
    /// connections.
    pub transport_bytes_sent: Counter,
    /// The transport's `transport_bytes_received_total`.
    pub transport_bytes_received: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer_manager::RejectReason;
    use crate::transport::Refusal;

    /// Every family shows its HELP and TYPE before its first sample, and
    /// the fixed label sets start at zero.
    #[test]
    fn every_family_is_declared_from_the_start() {
        let mut registry = Registry::default();
        Metrics::default().register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for family in [
            "messages_sent",
            "bytes_sent",
            "messages_received",
            "bytes_received",
            "send_queue_depth",
            "messages_dropped",
            "dial_attempts",
            "dial_failures",
            "peers",
            "peer_reports",
            "peer_reports_dropped",
            "handshakes_refused",
            "transport_violations",
            "addresses_refused",
            "early_data_bytes",
            "early_data_bytes_max",
            "handshakes",
            "transport_bytes_sent",
            "transport_bytes_received",
            "connections",
        ] {
            assert!(
                text.contains(&format!("# TYPE switchyard_p2p_{family} ")),
                "{family} is not declared: {text}"
            );
        }
        for reason in REFUSAL_REASONS {
            assert!(
                text.contains(&format!(
                    "switchyard_p2p_handshakes_refused_total{{reason=\"{reason}\"}} 0"
                )),
                "{reason}: {text}"
            );
        }
        assert!(text.contains("switchyard_p2p_peers{direction=\"inbound\"} 0"));
    }

    /// A declared transport's series start at zero: every handshake
    /// outcome, its bytes, its connections.
    #[test]
    fn a_declared_transport_starts_every_series_at_zero() {
        let mut registry = Registry::default();
        let metrics = Metrics::default();
        metrics.register(&mut registry);
        metrics.declare_transport("tcp");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for outcome in std::iter::once(&HANDSHAKE_OK).chain(REFUSAL_REASONS) {
            assert!(
                text.contains(&format!(
                    "switchyard_p2p_handshakes_total{{transport=\"tcp\",outcome=\"{outcome}\"}} 0"
                )),
                "{outcome}: {text}"
            );
        }
        for series in [
            "switchyard_p2p_transport_bytes_sent_total{transport=\"tcp\"} 0",
            "switchyard_p2p_transport_bytes_received_total{transport=\"tcp\"} 0",
            "switchyard_p2p_connections{transport=\"tcp\"} 0",
        ] {
            assert!(text.contains(series), "{series}: {text}");
        }
        assert!(
            !text.contains("transport=\"quic\""),
            "only declared transports"
        );
    }

    /// A refusal is counted under its reason and under its transport's
    /// outcome, so the two agree.
    #[test]
    fn a_refusal_moves_both_families() {
        let metrics = Metrics::default();
        metrics.refused("quic", "banned");
        metrics.refused_many("tcp", "banned", 2);
        metrics.handshake_ok("tcp");
        assert_eq!(metrics.handshakes_refused("banned"), 3);
        assert_eq!(metrics.handshakes("quic", "banned"), 1);
        assert_eq!(metrics.handshakes("tcp", "banned"), 2);
        assert_eq!(metrics.handshakes("tcp", HANDSHAKE_OK), 1);
        assert_eq!(metrics.handshakes("quic", HANDSHAKE_OK), 0);
    }

    /// The reasons list holds every label the transports and the peer
    /// manager give.
    #[test]
    fn the_reasons_list_holds_every_label() {
        let rejects = [
            RejectReason::Banned,
            RejectReason::SelfConnection,
            RejectReason::AlreadyConnected,
            RejectReason::InboundFull,
            RejectReason::OutboundFull,
            RejectReason::PrefixLimit,
            RejectReason::PrefixBanned,
            RejectReason::LowScore,
        ];
        let labels = Refusal::ALL
            .iter()
            .map(|r| r.label())
            .chain(rejects.iter().map(RejectReason::label));
        for label in labels {
            assert!(REFUSAL_REASONS.contains(&label), "{label} is not listed");
        }
    }
}
