//! Counters of what the gossip core sent, delivered and refused (the
//! driver serves them as Prometheus counters).

/// What one node's gossip has done since it started, over every topic.
/// Every refused message is counted here with its reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GossipStats {
    /// Messages this node published.
    pub published: u64,
    /// Messages delivered to the application (each at most once).
    pub delivered: u64,
    /// Payload messages sent: eager pushes and answers to grafts.
    pub payload_sent: u64,
    /// Of `payload_sent`, answers to grafts.
    pub graft_answers: u64,
    /// Payload messages received (first copies and duplicates).
    pub payload_received: u64,
    /// Payload messages received for a message already delivered.
    pub duplicates: u64,
    /// Membership and tree messages sent (everything but payloads).
    pub control_sent: u64,
    /// Membership and tree messages received.
    pub control_received: u64,
    /// `IHave` messages sent.
    pub ihave_sent: u64,
    /// Grafts sent (asking for a missing message, or optimising the tree).
    pub grafts_sent: u64,
    /// Prunes sent (after a duplicate, or optimising the tree).
    pub prunes_sent: u64,
    /// Messages announced by `IHave` that never arrived: every announcer
    /// was asked and none delivered.
    pub missing_given_up: u64,
    /// Payloads whose origin signature did not verify: refused, never
    /// delivered nor forwarded, and the sender reported.
    pub forged_rejected: u64,
    /// Payloads whose origin timestamp is further than `max_message_age`
    /// from our clock: refused (a replay, or a skewed clock).
    pub stale_rejected: u64,
    /// Messages whose origin exceeded `origin_rate` (per topic): dropped,
    /// neither delivered nor forwarded, the sender not blamed.
    pub rate_limited: u64,
    /// New messages refused because `max_seen` ids were already
    /// remembered: ids expire by time only, so a full cache refuses new
    /// messages rather than forget one that could then be replayed.
    pub seen_full: u64,
    /// Messages refused because a payload exceeded `max_payload_size`
    /// (checked before anything else), and publications refused for it.
    pub oversized_refused: u64,
    /// Messages refused because a field broke the protocol's bounds.
    pub malformed_refused: u64,
    /// Messages for a topic this node has not joined (ignored; a `Join`
    /// is answered with a `Disconnect`).
    pub unknown_topic: u64,
    /// Announcements dropped because `max_missing` messages were already
    /// tracked.
    pub missing_overflow: u64,
    /// Peers that entered an active view.
    pub neighbor_up: u64,
    /// Peers that left an active view.
    pub neighbor_down: u64,
    /// Connections asked of the driver.
    pub dials_requested: u64,
    /// Connections asked for that did not come up within `dial_timeout`
    /// (or were refused).
    pub dials_failed: u64,
    /// Connections released because no topic used them any more.
    pub connections_released: u64,
    /// Messages dropped because a peer's connection was not up and its
    /// pending queue (or the number of pending dials) was full.
    pub pending_dropped: u64,
    /// Sends the driver could not queue (full send queue, peer gone, too
    /// large), as it told the core.
    pub send_failures: u64,
    /// Driver: events dropped because a subscription was not read fast
    /// enough (counted by the driver, which owns the subscriptions; the
    /// core leaves it 0).
    pub app_events_dropped: u64,
    /// Membership messages from a peer the protocol does not expect them
    /// from (a `ForwardJoin` or `Shuffle` from outside the active view, a
    /// `ShuffleReply` nobody was asked for), dropped.
    pub membership_unexpected: u64,
    /// Membership messages dropped because their sender exceeded
    /// `membership_rate`.
    pub membership_rate_limited: u64,
    /// Peers not taken into a full active view because `eviction_rate`
    /// was spent.
    pub evictions_refused: u64,
    /// Peers named by a neighbour's walk that replaced one it named before
    /// (still on probation).
    pub named_replaced: u64,
    /// Contact addresses dropped by the screen (another peer's address,
    /// duplicates).
    pub contacts_screened: u64,
    /// Payloads and announcements from peers outside the active view,
    /// dropped.
    pub not_neighbor: u64,
    /// Messages dropped because the sending neighbour exceeded
    /// `neighbor_rate` or `neighbor_new_origins`.
    pub neighbor_rate_limited: u64,
    /// Hop counts only the origin could claim, from another peer (the
    /// peer is penalised).
    pub hops_forged: u64,
    /// Tree optimisations not made because the announcer took the parent
    /// role within `optimization_interval`.
    pub optimizations_deferred: u64,
}

impl GossipStats {
    /// Every counter with its metric name and help text.
    pub fn counters(&self) -> [(&'static str, &'static str, u64); 37] {
        [
            (
                "published",
                "Messages published by this node",
                self.published,
            ),
            (
                "delivered",
                "Messages delivered to the application",
                self.delivered,
            ),
            (
                "payload_sent",
                "Payload messages sent (eager pushes and graft answers)",
                self.payload_sent,
            ),
            (
                "graft_answers",
                "Payload messages sent in answer to grafts",
                self.graft_answers,
            ),
            (
                "payload_received",
                "Payload messages received",
                self.payload_received,
            ),
            (
                "duplicates",
                "Payload messages received for messages already delivered",
                self.duplicates,
            ),
            (
                "control_sent",
                "Membership and tree messages sent",
                self.control_sent,
            ),
            (
                "control_received",
                "Membership and tree messages received",
                self.control_received,
            ),
            ("ihave_sent", "IHave messages sent", self.ihave_sent),
            ("grafts_sent", "Graft messages sent", self.grafts_sent),
            ("prunes_sent", "Prune messages sent", self.prunes_sent),
            (
                "missing_given_up",
                "Announced messages never received from any announcer",
                self.missing_given_up,
            ),
            (
                "forged_rejected",
                "Messages refused because the origin signature did not verify",
                self.forged_rejected,
            ),
            (
                "stale_rejected",
                "Messages refused because their timestamp was too far from our clock",
                self.stale_rejected,
            ),
            (
                "rate_limited",
                "Messages dropped because their origin exceeded origin_rate",
                self.rate_limited,
            ),
            (
                "seen_full",
                "Messages refused because max_seen ids were remembered and none had expired",
                self.seen_full,
            ),
            (
                "oversized_refused",
                "Messages and publications refused for a payload over max_payload_size",
                self.oversized_refused,
            ),
            (
                "malformed_refused",
                "Messages refused for breaking the protocol's bounds",
                self.malformed_refused,
            ),
            (
                "unknown_topic",
                "Messages for topics this node has not joined",
                self.unknown_topic,
            ),
            (
                "missing_overflow",
                "Announcements dropped because max_missing were tracked",
                self.missing_overflow,
            ),
            (
                "neighbor_up",
                "Peers that entered an active view",
                self.neighbor_up,
            ),
            (
                "neighbor_down",
                "Peers that left an active view",
                self.neighbor_down,
            ),
            (
                "dials_requested",
                "Connections requested by gossip",
                self.dials_requested,
            ),
            (
                "dials_failed",
                "Connections requested that did not come up in time",
                self.dials_failed,
            ),
            (
                "connections_released",
                "Connections released because no topic used them",
                self.connections_released,
            ),
            (
                "pending_dropped",
                "Messages dropped while waiting for a connection",
                self.pending_dropped,
            ),
            (
                "send_failures",
                "Sends the router refused (full queue, peer gone)",
                self.send_failures,
            ),
            (
                "app_events_dropped",
                "Events dropped because a subscription was not read fast enough",
                self.app_events_dropped,
            ),
            (
                "membership_unexpected",
                "Membership messages from peers the protocol does not expect them from",
                self.membership_unexpected,
            ),
            (
                "membership_rate_limited",
                "Membership messages dropped because their sender exceeded membership_rate",
                self.membership_rate_limited,
            ),
            (
                "evictions_refused",
                "Peers not taken into a full active view because eviction_rate was spent",
                self.evictions_refused,
            ),
            (
                "named_replaced",
                "Walk ends that replaced a peer named by the same neighbour, still on probation",
                self.named_replaced,
            ),
            (
                "contacts_screened",
                "Contact addresses dropped because they named another peer or repeated",
                self.contacts_screened,
            ),
            (
                "not_neighbor",
                "Payloads and announcements from peers outside the active view",
                self.not_neighbor,
            ),
            (
                "neighbor_rate_limited",
                "Messages dropped because their sending neighbour exceeded its budget",
                self.neighbor_rate_limited,
            ),
            (
                "hops_forged",
                "Hop counts only the origin could claim, sent by another peer",
                self.hops_forged,
            ),
            (
                "optimizations_deferred",
                "Tree optimisations deferred by optimization_interval",
                self.optimizations_deferred,
            ),
        ]
    }
}
