//! Gossip parameters: membership (HyParView), broadcast (Plumtree) and the
//! limits of the node.
//!
//! With the `serde` feature, [`GossipConfig`] reads and writes the form of
//! the node's `[reactors.gossip]` section.

use std::time::Duration;

use crate::state::message::{MAX_CONTACTS, MAX_SKETCH_VALUES, MAX_TTL};

/// HyParView membership parameters (per topic).
#[derive(Debug, Clone, PartialEq)]
pub struct HyParViewConfig {
    /// Peers in the active view at most: the topic's neighbours, each with
    /// a connection. The paper's `log10(N) + 1` gives 5 for 10,000 nodes;
    /// 6 keeps broadcast paths shorter (see the ADR: with 5, random
    /// senders' last delivery hop reached 19 on 1,000 nodes, with 6 at most
    /// 16) for one more connection per topic.
    pub active_view_capacity: usize,
    /// Peers in the passive view at most: known members to replace failed
    /// neighbours with. Paper: `k · (log10(N) + 1)`, k = 6.
    pub passive_view_capacity: usize,
    /// Length of a `ForwardJoin` walk (ARWL): where it ends, the joiner is
    /// taken into an active view.
    pub active_random_walk_length: u32,
    /// Where a `ForwardJoin` has this many steps left, the joiner is kept
    /// in the passive view (PRWL).
    pub passive_random_walk_length: u32,
    /// How often a node starts a shuffle (a walk exchanging view samples).
    /// Each node's period is jittered by ±10 %.
    pub shuffle_interval: Duration,
    /// Length of a shuffle's walk.
    pub shuffle_random_walk_length: u32,
    /// Active peers in a shuffle sample.
    pub shuffle_active_count: usize,
    /// Passive peers in a shuffle sample.
    pub shuffle_passive_count: usize,
    /// How long a low-priority `Neighbor` request waits for its answer
    /// before the peer is dropped from the passive view and another one
    /// asked.
    pub neighbor_timeout: Duration,
    /// Chance per shuffle of a neighbour request to a long-connected peer
    /// outside both views, which merges overlays split by a partition once
    /// it heals (see `hyparview.rs`).
    pub merge_probability: f64,
    /// Contacts a join is sent to at once (see `hyparview.rs`).
    pub join_contacts: usize,
    /// How often a node with an empty active view tries again to join
    /// (through a passive peer, a bootstrap peer, or any connected peer).
    pub join_retry_interval: Duration,
    /// Membership messages that can change the views (`Join`,
    /// `ForwardJoin`, `Shuffle`, and a `Neighbor` that would evict) taken
    /// per second from one peer, on average (a token bucket; 0: no limit).
    /// Over it they are dropped (`membership_rate_limited`).
    pub membership_rate: u32,
    /// The bucket's size: such messages one peer may send in a burst.
    pub membership_burst: u32,
    /// Neighbours this node takes unasked into a full active view (each
    /// evicting its newest neighbour) per second, on average, in all (a
    /// token bucket; 0: no limit). Over it a `Join` is dropped, a walk's
    /// joiner kept as passive, and a high-priority `Neighbor` answered
    /// with `Disconnect` (`evictions_refused`).
    pub eviction_rate: u32,
    /// The bucket's size: evictions in a burst.
    pub eviction_burst: u32,
    /// How long a neighbour taken in unasked stays on probation on a quiet
    /// topic. It leaves probation by taking part in the broadcast
    /// (relaying a message new to us from another origin, or announcing
    /// one before we had it) — on a topic that delivered anything since it
    /// came, only so. A neighbour's walk that ends here replaces a peer the
    /// same neighbour named before that is still on probation (see
    /// `hyparview.rs`).
    pub probation: Duration,
}

impl Default for HyParViewConfig {
    fn default() -> Self {
        Self {
            active_view_capacity: 6,
            passive_view_capacity: 30,
            active_random_walk_length: 6,
            passive_random_walk_length: 3,
            shuffle_interval: Duration::from_secs(60),
            shuffle_random_walk_length: 6,
            shuffle_active_count: 3,
            shuffle_passive_count: 4,
            neighbor_timeout: Duration::from_secs(5),
            merge_probability: 0.1,
            join_contacts: 2,
            join_retry_interval: Duration::from_secs(5),
            membership_rate: 5,
            membership_burst: 32,
            eviction_rate: 2,
            eviction_burst: 32,
            probation: Duration::from_secs(10),
        }
    }
}

/// Plumtree broadcast parameters (per topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlumtreeConfig {
    /// How long after the first `IHave` for a missing message we graft
    /// (ask its announcer for it). Longer: fewer needless grafts on a
    /// healthy tree (lower RMR), slower repair of a broken one. It should
    /// exceed the spread of path latencies across the tree.
    pub graft_timeout: Duration,
    /// After a graft, how long until we ask the next announcer (about one
    /// round trip).
    pub graft_retry: Duration,
    /// `IHave`s are batched per peer for this long.
    pub ihave_delay: Duration,
    /// A lazy peer whose `IHave` shows a path at least this many hops
    /// shorter than the eager one replaces it in the tree (0: never).
    pub optimization_threshold: u32,
    /// How long payloads are kept to answer grafts.
    pub payload_retention: Duration,
    /// Bytes the payload cache holds at most, oldest dropped first: each
    /// message's payload, copied out of the frame it came in so that it
    /// holds nothing else, plus its entry (about 200 bytes).
    pub payload_cache_bytes: usize,
    /// How long message ids are remembered, so a message is delivered once.
    /// Must exceed [`GossipConfig::max_message_age`] plus
    /// [`GossipConfig::max_clock_skew`], so a message is refused as too old
    /// before its id is forgotten.
    pub seen_retention: Duration,
    /// Message ids remembered at most. Ids expire by time only: when this
    /// many are remembered, new messages are refused (`seen_full`) until
    /// some expire, because forgetting an id early would let its message
    /// be replayed and delivered twice.
    pub max_seen: usize,
    /// Messages announced by `IHave` but not received, tracked at most.
    pub max_missing: usize,
    /// Messages per second one origin may have delivered and forwarded
    /// here, per topic, on average (a token bucket; 0: no limit). A
    /// message over it is dropped (`rate_limited`); its id is kept in a
    /// small cache of its own (never in the seen-cache, which a flood
    /// must not fill), so its copies are cheap duplicates.
    pub origin_rate: u32,
    /// The bucket's size: how many messages one origin may send in a burst.
    pub origin_burst: u32,
    /// Origins whose buckets are kept per topic; a new origin beyond it
    /// replaces the one heard from least recently.
    pub max_origins: usize,
    /// New messages per second one neighbour may push to us, per topic,
    /// on average, whatever their origins (a token bucket; 0: no limit).
    /// Over it a message is dropped but not remembered, so another
    /// neighbour can still bring it (`neighbor_rate_limited`). It bounds
    /// the whole topic's rate through one link, so it is set well above
    /// what the topic carries.
    pub neighbor_rate: u32,
    /// The bucket's size.
    pub neighbor_burst: u32,
    /// Origins new to us per second one neighbour may introduce, on
    /// average (a token bucket; 0: no limit): origin keys cost nothing, so
    /// without it one neighbour could mint origins to multiply
    /// `origin_rate` (`neighbor_rate_limited`).
    pub neighbor_new_origins: u32,
    /// The bucket's size.
    pub neighbor_new_origins_burst: u32,
    /// Announced, missing messages one neighbour may have us track at
    /// once (its share of `max_missing`); more are dropped
    /// (`missing_overflow`).
    pub max_missing_per_neighbor: usize,
    /// A neighbour takes the eager-parent role through a shorter path it
    /// announces `optimization_burst` times, then once per this interval
    /// (hop counts are the sender's claim; see `plumtree.rs`).
    pub optimization_interval: Duration,
    /// See `optimization_interval`.
    pub optimization_burst: u32,
}

impl Default for PlumtreeConfig {
    fn default() -> Self {
        Self {
            graft_timeout: Duration::from_millis(250),
            graft_retry: Duration::from_millis(150),
            ihave_delay: Duration::from_millis(20),
            optimization_threshold: 3,
            payload_retention: Duration::from_secs(30),
            payload_cache_bytes: 16 * 1024 * 1024,
            seen_retention: Duration::from_secs(150),
            max_seen: 100_000,
            max_missing: 4096,
            origin_rate: 100,
            origin_burst: 200,
            max_origins: 4096,
            neighbor_rate: 2_000,
            neighbor_burst: 4_000,
            neighbor_new_origins: 20,
            neighbor_new_origins_burst: 200,
            max_missing_per_neighbor: 1024,
            optimization_interval: Duration::from_secs(10),
            optimization_burst: 8,
        }
    }
}

/// Everything the gossip core can be tuned with.
///
/// With the `serde` feature it is `Serialize` and `Deserialize` in the
/// flat form an operator's file writes (see `GossipFile` in the source):
/// `max_payload_size`, `max_topics`, `active_view` and `passive_view` (the
/// HyParView capacities), `origin_rate`, `origin_burst`, `max_origins`,
/// `neighbor_rate` and `neighbor_new_origins`. The bursts of the last two
/// follow their rates (twice `neighbor_rate`, ten times
/// `neighbor_new_origins`) and `join_contacts` is capped by `active_view`;
/// every other field keeps its default, so serializing drops changes made
/// to them in code. A missing field takes its default and an unknown one
/// is an error. This is the node's `[reactors.gossip]` section, less its
/// `enabled`, `topics`, `max_room_state` and rooms.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(from = "serde_file::GossipFile", into = "serde_file::GossipFile")
)]
pub struct GossipConfig {
    /// Membership.
    pub hyparview: HyParViewConfig,
    /// Broadcast.
    pub plumtree: PlumtreeConfig,
    /// The largest payload published or accepted. The channel's frame
    /// limit is this plus [`MESSAGE_OVERHEAD`].
    pub max_payload_size: usize,
    /// Messages whose origin timestamp is older than this by our clock
    /// are refused: what stops a replay after the message id is forgotten.
    pub max_message_age: Duration,
    /// Messages whose origin timestamp is further than this ahead of our
    /// clock are refused: a bound on clock skew, kept small so a message
    /// signed for the future cannot outlive its id in the seen-cache.
    pub max_clock_skew: Duration,
    /// Topics joined at once at most.
    pub max_topics: usize,
    /// How long a requested connection may take before the peer counts as
    /// unreachable.
    pub dial_timeout: Duration,
    /// A connection the core asked for and no topic uses any more is
    /// released after this long.
    pub release_after: Duration,
    /// Connection requests outstanding at most.
    pub max_pending_dials: usize,
    /// Messages held per peer while its connection is being made.
    pub max_pending_messages: usize,
    /// Slots of the network size sketch (k); 0 turns estimation off. The
    /// estimate's relative error is about `1/√(k−2)`.
    pub estimate_sketch_size: usize,
    /// Length of a size-estimation epoch: a fresh sketch each epoch forgets
    /// departed members.
    pub estimate_epoch: Duration,
    /// A changed sketch is sent to the neighbours at most this often.
    pub estimate_interval: Duration,
}

/// Room for everything of a gossip frame but the payload: topic, origin,
/// signature, ids, integers and protobuf tags.
pub const MESSAGE_OVERHEAD: usize = 1024;

impl Default for GossipConfig {
    fn default() -> Self {
        Self {
            hyparview: HyParViewConfig::default(),
            plumtree: PlumtreeConfig::default(),
            max_payload_size: 64 * 1024,
            max_message_age: Duration::from_secs(60),
            max_clock_skew: Duration::from_secs(5),
            max_topics: 64,
            dial_timeout: Duration::from_secs(10),
            release_after: Duration::from_secs(10),
            max_pending_dials: 64,
            max_pending_messages: 16,
            estimate_sketch_size: 128,
            estimate_epoch: Duration::from_secs(60),
            estimate_interval: Duration::from_secs(3),
        }
    }
}

/// A configuration value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("gossip config: {field} {reason}")]
pub struct GossipConfigError {
    /// The field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl GossipConfig {
    /// Checks every value.
    pub fn validate(&self) -> Result<(), GossipConfigError> {
        let bad = |field, reason: String| Err(GossipConfigError { field, reason });
        let hv = &self.hyparview;
        if !(1..=64).contains(&hv.active_view_capacity) {
            return bad("hyparview.active_view_capacity", "must be in 1..=64".into());
        }
        if !(0.0..=1.0).contains(&hv.merge_probability) {
            return bad("hyparview.merge_probability", "must be in 0..=1".into());
        }
        if !(1..=hv.active_view_capacity).contains(&hv.join_contacts) {
            return bad(
                "hyparview.join_contacts",
                "must be in 1..=active_view_capacity".into(),
            );
        }
        if hv.passive_view_capacity > 1024 {
            return bad(
                "hyparview.passive_view_capacity",
                "must be at most 1024".into(),
            );
        }
        for (field, value) in [
            (
                "hyparview.active_random_walk_length",
                hv.active_random_walk_length,
            ),
            (
                "hyparview.passive_random_walk_length",
                hv.passive_random_walk_length,
            ),
            (
                "hyparview.shuffle_random_walk_length",
                hv.shuffle_random_walk_length,
            ),
        ] {
            if value > MAX_TTL {
                return bad(field, format!("must be at most {MAX_TTL}"));
            }
        }
        if hv.passive_random_walk_length > hv.active_random_walk_length {
            return bad(
                "hyparview.passive_random_walk_length",
                "must not exceed active_random_walk_length".into(),
            );
        }
        if hv.shuffle_active_count + hv.shuffle_passive_count + 1 > MAX_CONTACTS {
            return bad(
                "hyparview.shuffle_active_count",
                format!("a shuffle sample (active + passive + 1) holds at most {MAX_CONTACTS}"),
            );
        }
        for (field, value) in [
            ("hyparview.shuffle_interval", hv.shuffle_interval),
            ("hyparview.neighbor_timeout", hv.neighbor_timeout),
            ("hyparview.join_retry_interval", hv.join_retry_interval),
            ("plumtree.graft_timeout", self.plumtree.graft_timeout),
            ("plumtree.graft_retry", self.plumtree.graft_retry),
            ("dial_timeout", self.dial_timeout),
            ("estimate_epoch", self.estimate_epoch),
        ] {
            if value.is_zero() {
                return bad(field, "must be more than zero".into());
            }
        }
        let pt = &self.plumtree;
        if pt.seen_retention <= self.max_message_age + self.max_clock_skew {
            return bad(
                "plumtree.seen_retention",
                format!(
                    "must exceed max_message_age + max_clock_skew ({:?}), or a replayed message could be delivered again",
                    self.max_message_age + self.max_clock_skew
                ),
            );
        }
        for (field, rate, burst) in [
            (
                "hyparview.membership_burst",
                hv.membership_rate,
                hv.membership_burst,
            ),
            (
                "hyparview.eviction_burst",
                hv.eviction_rate,
                hv.eviction_burst,
            ),
            (
                "plumtree.neighbor_burst",
                pt.neighbor_rate,
                pt.neighbor_burst,
            ),
            (
                "plumtree.neighbor_new_origins_burst",
                pt.neighbor_new_origins,
                pt.neighbor_new_origins_burst,
            ),
        ] {
            if rate > 0 && burst == 0 {
                return bad(field, "must be at least 1 when its rate is set".into());
            }
        }
        if pt.optimization_burst == 0 || pt.optimization_interval.is_zero() {
            return bad(
                "plumtree.optimization_burst",
                "optimization_burst and optimization_interval must be more than zero".into(),
            );
        }
        if pt.max_missing_per_neighbor == 0 {
            return bad(
                "plumtree.max_missing_per_neighbor",
                "must be at least 1".into(),
            );
        }
        if pt.max_seen == 0 || pt.max_missing == 0 {
            return bad("plumtree.max_seen", "limits must be at least 1".into());
        }
        if pt.origin_rate > 0 && (pt.origin_burst == 0 || pt.max_origins == 0) {
            return bad(
                "plumtree.origin_burst",
                "origin_burst and max_origins must be at least 1 when origin_rate is set".into(),
            );
        }
        if self.max_payload_size == 0
            || self.max_payload_size + MESSAGE_OVERHEAD > p2p_core::MAX_MESSAGE_SIZE
        {
            return bad(
                "max_payload_size",
                format!(
                    "must be in 1..={}",
                    p2p_core::MAX_MESSAGE_SIZE - MESSAGE_OVERHEAD
                ),
            );
        }
        if self.estimate_sketch_size > MAX_SKETCH_VALUES {
            return bad(
                "estimate_sketch_size",
                format!("must be at most {MAX_SKETCH_VALUES}"),
            );
        }
        if self.max_topics == 0 || self.max_pending_dials == 0 || self.max_pending_messages == 0 {
            return bad("max_topics", "limits must be at least 1".into());
        }
        Ok(())
    }
}

/// The serialized form of [`GossipConfig`]: the fields an operator tunes,
/// flat, under the names of the node's `[reactors.gossip]` section.
#[cfg(feature = "serde")]
mod serde_file {
    use super::GossipConfig;

    /// `neighbor_burst` is this many times `neighbor_rate`.
    const NEIGHBOR_BURST_FACTOR: u32 = 2;
    /// `neighbor_new_origins_burst` is this many times
    /// `neighbor_new_origins`.
    const NEW_ORIGINS_BURST_FACTOR: u32 = 10;

    #[derive(serde::Serialize, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub(super) struct GossipFile {
        max_payload_size: usize,
        active_view: usize,
        passive_view: usize,
        max_topics: usize,
        origin_rate: u32,
        origin_burst: u32,
        max_origins: usize,
        neighbor_rate: u32,
        neighbor_new_origins: u32,
    }

    impl Default for GossipFile {
        fn default() -> Self {
            GossipConfig::default().into()
        }
    }

    impl From<GossipConfig> for GossipFile {
        fn from(config: GossipConfig) -> Self {
            Self {
                max_payload_size: config.max_payload_size,
                active_view: config.hyparview.active_view_capacity,
                passive_view: config.hyparview.passive_view_capacity,
                max_topics: config.max_topics,
                origin_rate: config.plumtree.origin_rate,
                origin_burst: config.plumtree.origin_burst,
                max_origins: config.plumtree.max_origins,
                neighbor_rate: config.plumtree.neighbor_rate,
                neighbor_new_origins: config.plumtree.neighbor_new_origins,
            }
        }
    }

    impl From<GossipFile> for GossipConfig {
        fn from(file: GossipFile) -> Self {
            let mut config = GossipConfig {
                max_payload_size: file.max_payload_size,
                max_topics: file.max_topics,
                ..GossipConfig::default()
            };
            let hv = &mut config.hyparview;
            hv.active_view_capacity = file.active_view;
            hv.passive_view_capacity = file.passive_view;
            hv.join_contacts = hv.join_contacts.min(file.active_view);
            let pt = &mut config.plumtree;
            pt.origin_rate = file.origin_rate;
            pt.origin_burst = file.origin_burst;
            pt.max_origins = file.max_origins;
            pt.neighbor_rate = file.neighbor_rate;
            pt.neighbor_burst = file.neighbor_rate.saturating_mul(NEIGHBOR_BURST_FACTOR);
            pt.neighbor_new_origins = file.neighbor_new_origins;
            pt.neighbor_new_origins_burst = file
                .neighbor_new_origins
                .saturating_mul(NEW_ORIGINS_BURST_FACTOR);
            config
        }
    }

    impl super::GossipConfigError {
        /// The field at fault, named as in the serialized form
        /// (`active_view`, not `hyparview.active_view_capacity`); a field
        /// the serialized form leaves out keeps its path in
        /// [`GossipConfig`] (`plumtree.max_seen`).
        pub fn serialized_field(&self) -> &'static str {
            match self.field {
                "hyparview.active_view_capacity" => "active_view",
                "hyparview.passive_view_capacity" => "passive_view",
                "plumtree.origin_burst" => "origin_burst",
                field => field,
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn parse(text: &str) -> Result<GossipConfig, toml::de::Error> {
            toml::from_str(text)
        }

        #[test]
        fn every_field_parses_under_its_name() {
            let config = parse(
                "max_payload_size = 1000\nactive_view = 1\npassive_view = 20\nmax_topics = 8\n\
                 origin_rate = 10\norigin_burst = 20\nmax_origins = 100\nneighbor_rate = 500\n\
                 neighbor_new_origins = 7\n",
            )
            .expect("valid");
            assert_eq!(config.max_payload_size, 1000);
            assert_eq!(config.max_topics, 8);
            assert_eq!(config.hyparview.active_view_capacity, 1);
            assert_eq!(config.hyparview.passive_view_capacity, 20);
            assert_eq!(config.hyparview.join_contacts, 1, "capped by active_view");
            let pt = &config.plumtree;
            assert_eq!(
                (pt.origin_rate, pt.origin_burst, pt.max_origins),
                (10, 20, 100)
            );
            assert_eq!((pt.neighbor_rate, pt.neighbor_burst), (500, 1000));
            assert_eq!(
                (pt.neighbor_new_origins, pt.neighbor_new_origins_burst),
                (7, 70)
            );
            assert_eq!(config.validate(), Ok(()));
        }

        #[test]
        fn the_defaults_survive_the_file_form() {
            assert_eq!(parse("").expect("empty"), GossipConfig::default());
            let text = toml::to_string(&GossipConfig::default()).expect("serialize");
            assert_eq!(parse(&text).expect("parse"), GossipConfig::default());
        }

        #[test]
        fn unknown_and_mistyped_fields_are_refused() {
            for (text, shown) in [
                (
                    "active_view_capacity = 3\n",
                    "unknown field `active_view_capacity`",
                ),
                ("neighbor_burst = 3\n", "unknown field `neighbor_burst`"),
                ("origin_rate = -1\n", "origin_rate"),
                ("max_topics = \"many\"\n", "expected usize"),
            ] {
                let error = parse(text).expect_err(text);
                assert!(error.to_string().contains(shown), "{text:?}: {error}");
            }
        }

        #[test]
        fn errors_of_file_values_name_their_key() {
            let keys = toml::Table::try_from(GossipConfig::default()).expect("serialize");
            for text in [
                "max_payload_size = 0",
                "active_view = 65",
                "passive_view = 2000",
                "max_topics = 0",
                "origin_burst = 0",
            ] {
                let error = parse(text).expect(text).validate().expect_err(text);
                let key = text.split(' ').next().unwrap_or_default();
                assert_eq!(error.serialized_field(), key, "{text}: {error}");
                assert!(keys.contains_key(key), "{key}");
            }
        }
    }
}
