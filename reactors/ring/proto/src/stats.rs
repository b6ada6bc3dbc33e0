//! Counters of what the ring did (the reactor `reactor-ring` serves them
//! to Prometheus as `switchyard_ring_*`).

/// What one node's ring has done since it started. Every refusal and every
/// drop is counted here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Negotiations this gateway answered.
    pub joins_served: u64,
    /// Negotiations this gateway refused, for any reason (not a gateway,
    /// `max_pending_joins` in progress, and the two below).
    pub joins_refused: u64,
    /// Of `joins_refused`: the joiner's network (/24, /48) had its
    /// `max_joins_per_prefix` new locations in this `join_quota_window`.
    pub joins_refused_quota: u64,
    /// Of `joins_refused`: the joiner holds an unexpired grant for another
    /// commitment (it tried to draw a second location).
    pub joins_refused_rebind: u64,
    /// Negotiations answered again with the grant a PeerId already holds
    /// (same commitment: a joiner that lost the first answer).
    pub joins_repeated: u64,
    /// Grants forgotten because `MAX_GRANTS` were held (the first to
    /// expire go first; each new grant costs a join quota, so forgetting
    /// one gives no extra draw).
    pub grants_evicted: u64,
    /// Announced locations that verified.
    pub locations_verified: u64,
    /// Announced locations refused (the peer was reported): a bad or
    /// untrusted signature, another peer's, expired, or conflicting.
    pub locations_refused: u64,
    /// Of `locations_refused`: a second location for a PeerId whose first,
    /// verified one has not expired (pinned across disconnections).
    pub locations_conflicting: u64,
    /// Pinned locations forgotten before their expiry because `MAX_PINS`
    /// were held.
    pub pins_evicted: u64,
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
    /// Answers to our connect requests whose acceptor's signature did not
    /// verify (forged by a hop): ignored, nobody dialed.
    pub accepts_forged: u64,
    /// Signed answers to our connect requests from an acceptor farther
    /// from the request's target than a link we have (not where the route
    /// should end: a hop answering for a peer of its own): ignored.
    pub accepts_implausible: u64,
    /// Peers we accepted or were accepted by, forgotten before they came
    /// up because `MAX_EXPECTED` were awaited.
    pub expected_evicted: u64,
    /// Neighbors admitted.
    pub neighbors_added: u64,
    /// Ring peers refused as neighbors (no room, not expected, their
    /// network full).
    pub neighbors_refused: u64,
    /// Of `neighbors_refused`: their network (/24, /48) already had
    /// `max_neighbors_per_prefix` neighbors.
    pub neighbors_refused_prefix: u64,
    /// Neighbor lists refused (unsorted, duplicates, the sender itself, or
    /// leaving us out): the sender was reported, the list not used.
    pub lists_refused: u64,
    /// Links dropped as the worst placed.
    pub links_pruned: u64,
    /// Neighbors disconnected for costing more than their share.
    pub overload_disconnects: u64,
    /// Messages dropped: from a peer that is not a neighbor, malformed,
    /// or whose way back is gone.
    pub messages_dropped: u64,
    /// Records the driver could not write to (or remove from) the store.
    pub store_failures: u64,
    /// Current neighbors (a gauge).
    pub neighbors: u64,
}

impl RingStats {
    /// Every counter with its metric name and help text (`neighbors`, a
    /// gauge, apart).
    pub fn counters(&self) -> [(&'static str, &'static str, u64); 29] {
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
                "joins_refused_quota",
                "Location negotiations refused: the network's join quota was spent",
                self.joins_refused_quota,
            ),
            (
                "joins_refused_rebind",
                "Location negotiations refused: the PeerId holds an unexpired location",
                self.joins_refused_rebind,
            ),
            (
                "joins_repeated",
                "Location negotiations answered again with the grant held",
                self.joins_repeated,
            ),
            (
                "grants_evicted",
                "Gateway grants forgotten (table full)",
                self.grants_evicted,
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
                "locations_conflicting",
                "Announced locations refused: a second location for a pinned PeerId",
                self.locations_conflicting,
            ),
            (
                "pins_evicted",
                "Pinned locations forgotten before expiry (table full)",
                self.pins_evicted,
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
                "accepts_forged",
                "Connect answers whose acceptor signature did not verify",
                self.accepts_forged,
            ),
            (
                "accepts_implausible",
                "Signed connect answers from an acceptor not where the route should end",
                self.accepts_implausible,
            ),
            (
                "expected_evicted",
                "Expected peers forgotten before they came up (table full)",
                self.expected_evicted,
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
                "neighbors_refused_prefix",
                "Ring peers refused as neighbors: their network had its share",
                self.neighbors_refused_prefix,
            ),
            (
                "lists_refused",
                "Neighbor lists refused as impossible (sender reported)",
                self.lists_refused,
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
            (
                "store_failures",
                "Ring store writes that failed",
                self.store_failures,
            ),
        ]
    }
}
