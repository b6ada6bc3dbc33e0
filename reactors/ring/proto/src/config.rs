//! Ring settings and their checks.
//!
//! With the `serde` feature, [`RingConfig`] reads and writes the form of
//! the node's `[reactors.ring]` section.

use std::time::Duration;

use p2p_core::PeerId;

use crate::message::MAX_HTL;
use crate::negotiation::{CLOCK_SKEW_SECS, Gateways};

/// The router's default network id (`p2p::RouterConfig`'s; the driver
/// crate's tests check that the two agree), the default of
/// [`RingConfig::network_id`].
pub const DEFAULT_NETWORK_ID: &str = "switchyard-local";

/// The shortest `location_ttl` accepted: well above the clock skew allowed
/// either side of an expiry.
pub const MIN_LOCATION_TTL: Duration = Duration::from_secs(3600);

/// Ring settings. Every field but the gateways has a default; override
/// what you need and let [`RingConfig::validate`] check the result.
///
/// ```
/// use p2p_core::Keypair;
/// use reactor_ring_proto::RingConfig;
///
/// let gateway = Keypair::from_seed(0).peer_id();
/// let config = RingConfig {
///     target_degree: 16,
///     max_degree: 24,
///     ..RingConfig::with_gateways([gateway])
/// };
/// assert!(config.validate().is_ok());
/// ```
///
/// With the `serde` feature it is `Serialize` and `Deserialize` in the form
/// an operator's file writes: the fields a deployment tunes, under their
/// names, durations as humantime strings (`"10s"`), and `load.max_share`
/// as `max_load_share`. A missing field takes its default and an unknown
/// one is an error. Left out, so they keep their defaults: `gateways`
/// (the caller knows them as addresses to dial), `network_id` (the
/// router's), the protocol's tuning (`max_htl`, `lookahead`, `connect_random_walk`,
/// `request_timeout`, the pending limits, `join_grace`, `prune_ban`) and
/// the rest of `load`. This is the node's `[reactors.ring]` section, less
/// its `enabled`, `gateway` and `gateways`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct RingConfig {
    /// Gateways we join through and whose signatures on locations we trust.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub gateways: Gateways,
    /// The network the ring's signatures are bound to: the router's
    /// network id. The reactor (`reactor_ring::Ring`) sets it from the
    /// router it opens on; the default is the router's default.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub network_id: String,
    /// Below this many neighbors the node asks for more links.
    pub target_degree: usize,
    /// Above this many the worst-placed links are dropped; connect
    /// requests beyond it are refused (the nearest successor and
    /// predecessor are always accepted).
    pub max_degree: usize,
    /// Hops to live of the routes this node starts.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub max_htl: u8,
    /// Whether closest and exact routes look one hop further: a neighbor
    /// scores the best of its own location and those in its neighbor list
    /// (default). Off, every route is plain greedy on the neighbors'
    /// own locations (what freenet-core's topology simulator measures; the
    /// simulator switches it to compare). Not in the node's file: a
    /// research knob, like `max_htl`.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub lookahead: bool,
    /// Random hops a connect request takes before greedy routing.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub connect_random_walk: u8,
    /// Time between two maintenance rounds (successor and predecessor
    /// checks, new links, replacement of a worst-placed link), ± 25 %.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub maintenance_interval: Duration,
    /// How long we wait for the answer to a route or a join.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub request_timeout: Duration,
    /// Connect requests of ours in flight at most.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub max_pending_connects: usize,
    /// Application routes of ours awaiting an answer at most.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub max_pending_routes: usize,
    /// Gateway only: negotiations in progress at most (a joiner holds its
    /// slot for `join_grace`, or until it disconnects).
    #[cfg_attr(feature = "serde", serde(skip))]
    pub max_pending_joins: usize,
    /// Gateway only: how long a location it grants holds. It answers a
    /// PeerId with the same grant until then (so a joiner cannot draw
    /// another location under the same key), and keeps the grant on disk
    /// so a restart changes nothing. A node renegotiates when its own
    /// location expires.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub location_ttl: Duration,
    /// Gateway only: new locations granted to joiners of one network (an
    /// IPv4 /24 or IPv6 /48) per `join_quota_window`, at most. Bounds how
    /// many tries at a chosen location (fresh keys) a network gets.
    pub max_joins_per_prefix: usize,
    /// Gateway only: the window of `max_joins_per_prefix`.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub join_quota_window: Duration,
    /// Neighbors from one network (IPv4 /24, IPv6 /48) at most, so one
    /// network cannot fill our links. A new ring link (one of the two
    /// nearest on a side) from a full network replaces that network's
    /// longest other link instead. Joiners a gateway is serving are not
    /// counted until their grace ends.
    pub max_neighbors_per_prefix: usize,
    /// Gateway only: a joiner's link is not pruned for this long after it
    /// negotiated, so it can finish joining through us.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub join_grace: Duration,
    /// How long a peer we dropped as a badly placed link is kept away
    /// (the driver bans it for this long so the router does not redial it).
    #[cfg_attr(feature = "serde", serde(skip))]
    pub prune_ban: Duration,
    /// Load accounting.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "max_load_share", with = "serde_load_share")
    )]
    pub load: LoadConfig,
}

/// When a neighbor costs too much.
///
/// Every message a neighbor makes us handle on its behalf — a route it
/// hands us to forward or deliver, a reply we must carry on — counts its
/// bytes and one message against it. Counts decay exponentially with
/// `half_life`. When the total over all neighbors is at least
/// `min_total_bytes` and one neighbor's share of the bytes exceeds
/// `max_share`, it is disconnected (and banned for `ban`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadConfig {
    /// The largest share of the handled bytes one neighbor may cause.
    pub max_share: f64,
    /// No one is judged below this many (decayed) bytes in total.
    pub min_total_bytes: f64,
    /// No one is judged while we have fewer neighbors than this (with two
    /// neighbors, one of them causing 60 % is normal).
    pub min_neighbors: usize,
    /// Half-life of the counts.
    pub half_life: Duration,
    /// How long a disconnected over-consumer is banned.
    pub ban: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            max_share: 0.5,
            min_total_bytes: 1024.0 * 1024.0,
            min_neighbors: 4,
            half_life: Duration::from_secs(60),
            ban: Duration::from_secs(600),
        }
    }
}

impl Default for RingConfig {
    fn default() -> Self {
        Self {
            gateways: Gateways::default(),
            network_id: DEFAULT_NETWORK_ID.into(),
            target_degree: 20,
            max_degree: 30,
            max_htl: 40,
            lookahead: true,
            connect_random_walk: 2,
            maintenance_interval: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            max_pending_connects: 8,
            max_pending_routes: 1024,
            max_pending_joins: 64,
            location_ttl: Duration::from_secs(7 * 24 * 3600),
            max_joins_per_prefix: 8,
            join_quota_window: Duration::from_secs(3600),
            max_neighbors_per_prefix: 4,
            join_grace: Duration::from_secs(60),
            prune_ban: Duration::from_secs(120),
            load: LoadConfig::default(),
        }
    }
}

/// Why a [`RingConfig`] was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RingConfigError {
    /// `target_degree` is below 2 or above `max_degree`.
    #[error(
        "ring target_degree is {target}; it must be at least 2 (successor and predecessor) and at most max_degree ({max})"
    )]
    Degree {
        /// `target_degree`.
        target: usize,
        /// `max_degree`.
        max: usize,
    },
    /// `max_htl` is 0 or above the protocol's limit.
    #[error("ring max_htl is {0}; it must be in 1..={MAX_HTL}")]
    MaxHtl(u8),
    /// `connect_random_walk` leaves no hops for greedy routing.
    #[error("ring connect_random_walk ({walk}) must be below max_htl ({htl})")]
    RandomWalk {
        /// `connect_random_walk`.
        walk: u8,
        /// `max_htl`.
        htl: u8,
    },
    /// A duration that must be positive is zero.
    #[error("ring {0} must be more than zero")]
    ZeroDuration(&'static str),
    /// A limit that must be positive is zero.
    #[error("ring {0} must be at least 1")]
    ZeroLimit(&'static str),
    /// `load.max_share` is not in (0, 1].
    #[error("ring load.max_share is {0}; it must be in (0, 1]")]
    MaxShare(f64),
    /// `location_ttl` is too short to outlast the clock skew allowed.
    #[error(
        "ring location_ttl is {0:?}; it must be at least an hour (locations are checked with {CLOCK_SKEW_SECS} s of clock skew either side)"
    )]
    LocationTtl(Duration),
}

impl RingConfig {
    /// The defaults, trusting (and joining through) `gateways`.
    pub fn with_gateways(gateways: impl IntoIterator<Item = PeerId>) -> Self {
        Self {
            gateways: Gateways::listed(gateways),
            ..Self::default()
        }
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), RingConfigError> {
        if self.target_degree < 2 || self.target_degree > self.max_degree {
            return Err(RingConfigError::Degree {
                target: self.target_degree,
                max: self.max_degree,
            });
        }
        if self.max_htl == 0 || self.max_htl > MAX_HTL {
            return Err(RingConfigError::MaxHtl(self.max_htl));
        }
        if self.connect_random_walk >= self.max_htl {
            return Err(RingConfigError::RandomWalk {
                walk: self.connect_random_walk,
                htl: self.max_htl,
            });
        }
        for (name, value) in [
            ("maintenance_interval", self.maintenance_interval),
            ("request_timeout", self.request_timeout),
            ("load.half_life", self.load.half_life),
            ("join_quota_window", self.join_quota_window),
        ] {
            if value.is_zero() {
                return Err(RingConfigError::ZeroDuration(name));
            }
        }
        for (name, value) in [
            ("max_pending_connects", self.max_pending_connects),
            ("max_pending_routes", self.max_pending_routes),
            ("max_pending_joins", self.max_pending_joins),
            ("max_joins_per_prefix", self.max_joins_per_prefix),
            ("max_neighbors_per_prefix", self.max_neighbors_per_prefix),
        ] {
            if value == 0 {
                return Err(RingConfigError::ZeroLimit(name));
            }
        }
        let share = self.load.max_share;
        if !(share > 0.0 && share <= 1.0) {
            return Err(RingConfigError::MaxShare(share));
        }
        if self.location_ttl < MIN_LOCATION_TTL {
            return Err(RingConfigError::LocationTtl(self.location_ttl));
        }
        Ok(())
    }
}

/// [`LoadConfig`] as the one number a file sets, `max_load_share`; the
/// rest of it keeps its defaults.
#[cfg(feature = "serde")]
mod serde_load_share {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::LoadConfig;

    pub(super) fn serialize<S: Serializer>(load: &LoadConfig, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(load.max_share)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<LoadConfig, D::Error> {
        Ok(LoadConfig {
            max_share: f64::deserialize(d)?,
            ..LoadConfig::default()
        })
    }
}

#[cfg(feature = "serde")]
impl RingConfigError {
    /// The field at fault, named as in the serialized form
    /// (`max_load_share`, not `load.max_share`); a field the serialized
    /// form leaves out is named by its path in [`RingConfig`]
    /// (`max_htl`, `load.half_life`).
    pub fn field(&self) -> &'static str {
        match self {
            RingConfigError::Degree { .. } => "target_degree",
            RingConfigError::MaxHtl(_) => "max_htl",
            RingConfigError::RandomWalk { .. } => "connect_random_walk",
            RingConfigError::ZeroDuration(name) | RingConfigError::ZeroLimit(name) => name,
            RingConfigError::MaxShare(_) => "max_load_share",
            RingConfigError::LocationTtl(_) => "location_ttl",
        }
    }
}

#[cfg(all(test, feature = "serde"))]
mod serde_tests {
    use super::*;

    fn parse(text: &str) -> Result<RingConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn every_field_parses_under_its_name() {
        let config = parse(
            "target_degree = 5\nmax_degree = 9\nmaintenance_interval = \"3s\"\n\
             max_load_share = 0.25\nmax_neighbors_per_prefix = 6\nmax_joins_per_prefix = 3\n\
             join_quota_window = \"10m\"\nlocation_ttl = \"2days\"\n",
        )
        .expect("valid");
        let expected = RingConfig {
            target_degree: 5,
            max_degree: 9,
            maintenance_interval: Duration::from_secs(3),
            load: LoadConfig {
                max_share: 0.25,
                ..LoadConfig::default()
            },
            max_neighbors_per_prefix: 6,
            max_joins_per_prefix: 3,
            join_quota_window: Duration::from_secs(600),
            location_ttl: Duration::from_secs(2 * 24 * 3600),
            ..RingConfig::default()
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn missing_fields_take_their_defaults_and_unknown_ones_are_refused() {
        assert_eq!(parse("").expect("empty"), RingConfig::default());
        for (text, shown) in [
            ("max_degre = 3\n", "unknown field `max_degre`"),
            // Left out of the serialized form: not a key a file may set.
            ("max_htl = 3\n", "unknown field `max_htl`"),
            ("gateways = []\n", "unknown field `gateways`"),
            ("max_load_share = \"half\"\n", "expected f64"),
        ] {
            let error = parse(text).expect_err(text);
            assert!(error.message().contains(shown), "{text:?}: {error}");
        }
    }

    #[test]
    fn serializing_round_trips_the_fields_it_holds() {
        let config = RingConfig {
            target_degree: 7,
            location_ttl: Duration::from_secs(3 * 3600),
            load: LoadConfig {
                max_share: 0.75,
                ..LoadConfig::default()
            },
            ..RingConfig::default()
        };
        let text = toml::to_string(&config).expect("serialize");
        assert!(text.contains("max_load_share = 0.75"), "{text}");
        assert!(text.contains("location_ttl = \"3h\""), "{text}");
        assert_eq!(parse(&text).expect("parse"), config);
    }

    #[test]
    fn errors_name_a_serialized_field() {
        let keys = toml::Table::try_from(RingConfig::default()).expect("serialize");
        let errors = [
            RingConfigError::Degree { target: 1, max: 1 },
            RingConfigError::ZeroDuration("maintenance_interval"),
            RingConfigError::ZeroDuration("join_quota_window"),
            RingConfigError::ZeroLimit("max_joins_per_prefix"),
            RingConfigError::ZeroLimit("max_neighbors_per_prefix"),
            RingConfigError::MaxShare(2.0),
            RingConfigError::LocationTtl(Duration::ZERO),
        ];
        for error in errors {
            assert!(keys.contains_key(error.field()), "{error:?}");
        }
        // What validate() reports for a bad file value names that key.
        for (text, field) in [
            ("max_load_share = 2.0", "max_load_share"),
            ("target_degree = 1", "target_degree"),
            ("join_quota_window = \"0s\"", "join_quota_window"),
            ("location_ttl = \"1m\"", "location_ttl"),
        ] {
            let error = parse(text).expect(text).validate().expect_err(text);
            assert_eq!(error.field(), field, "{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(RingConfig::default().validate(), Ok(()));
    }

    #[test]
    fn bad_values_are_refused_with_the_field_named() {
        let d = RingConfig::default;
        let cases = [
            (
                RingConfig {
                    target_degree: 1,
                    ..d()
                },
                "target_degree",
            ),
            (
                RingConfig {
                    target_degree: 31,
                    ..d()
                },
                "target_degree",
            ),
            (RingConfig { max_htl: 0, ..d() }, "max_htl"),
            (RingConfig { max_htl: 65, ..d() }, "max_htl"),
            (
                RingConfig {
                    connect_random_walk: 40,
                    ..d()
                },
                "connect_random_walk",
            ),
            (
                RingConfig {
                    request_timeout: Duration::ZERO,
                    ..d()
                },
                "request_timeout",
            ),
            (
                RingConfig {
                    max_pending_joins: 0,
                    ..d()
                },
                "max_pending_joins",
            ),
            (
                RingConfig {
                    max_neighbors_per_prefix: 0,
                    ..d()
                },
                "max_neighbors_per_prefix",
            ),
            (
                RingConfig {
                    max_joins_per_prefix: 0,
                    ..d()
                },
                "max_joins_per_prefix",
            ),
            (
                RingConfig {
                    join_quota_window: Duration::ZERO,
                    ..d()
                },
                "join_quota_window",
            ),
            (
                RingConfig {
                    location_ttl: Duration::from_secs(60),
                    ..d()
                },
                "location_ttl",
            ),
            (
                RingConfig {
                    load: LoadConfig {
                        max_share: 0.0,
                        ..LoadConfig::default()
                    },
                    ..d()
                },
                "max_share",
            ),
        ];
        for (config, name) in cases {
            let error = config.validate().expect_err(name).to_string();
            assert!(error.contains(name), "{error:?} does not name {name}");
        }
    }
}
