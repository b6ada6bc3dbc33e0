//! Peer exchange settings and their checks.
//!
//! With the `serde` feature, [`PexConfig`] reads and writes the form of the
//! node's `[reactors.pex]` section.

use std::time::Duration;

use crate::MAX_ADDRESSES_PER_RESPONSE;

/// Peer exchange settings. Every field has a default; override what you
/// need and let `reactor_pex::Pex::new` check the result.
///
/// ```
/// use std::time::Duration;
/// use reactor_pex_proto::PexConfig;
///
/// let config = PexConfig {
///     min_peers: 4,
///     request_interval: Duration::from_secs(10),
///     min_request_gap: Duration::from_secs(5),
///     ..PexConfig::default()
/// };
/// assert!(config.validate().is_ok());
/// ```
///
/// With the `serde` feature it is `Serialize` and `Deserialize` under the
/// field names below, durations written as humantime strings (`"30s"`); a
/// missing field takes its default and an unknown one is an error. This
/// is the node's `[reactors.pex]` section, less its `enabled`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct PexConfig {
    /// Below this many connected peers the node asks for addresses every
    /// `request_interval`; at or above it, every `10 × request_interval`.
    pub min_peers: usize,
    /// Time between two requests while below `min_peers`.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub request_interval: Duration,
    /// Addresses in one response at most (1..=100).
    pub max_addresses_per_response: usize,
    /// A peer may send one request per this much time; an earlier one gets
    /// no answer and costs the peer score. Also the least time between two
    /// requests of ours to one peer, so it must not exceed
    /// `request_interval`.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub min_request_gap: Duration,
    /// Seed mode, for bootstrap nodes: an inbound peer is disconnected
    /// [`SEED_LINGER`](crate::state::SEED_LINGER) after its request is
    /// answered (or [`SEED_MAX_STAY`](crate::state::SEED_MAX_STAY) after it
    /// came up if it asks nothing), so a bootstrap node's inbound slots
    /// keep turning over and any number of nodes can join through it.
    /// Default off.
    pub seed_mode: bool,
    /// Distinct networks (/24, /48 of the IP we see them at) that must
    /// report the same IP for us before the node announces it with its
    /// listen ports ([`crate::observed`]); 0 turns it off. Default 3, at
    /// most [`MAX_OBSERVED_QUORUM`]. Configured `external_addresses` win.
    pub observed_quorum: usize,
}

/// The largest `observed_quorum`.
pub const MAX_OBSERVED_QUORUM: usize = 32;

impl Default for PexConfig {
    fn default() -> Self {
        Self {
            min_peers: 8,
            request_interval: Duration::from_secs(30),
            max_addresses_per_response: MAX_ADDRESSES_PER_RESPONSE,
            min_request_gap: Duration::from_secs(15),
            seed_mode: false,
            observed_quorum: 3,
        }
    }
}

/// Why a [`PexConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PexConfigError {
    /// `max_addresses_per_response` out of range.
    #[error(
        "pex max_addresses_per_response is {0}; it must be in 1..={MAX_ADDRESSES_PER_RESPONSE} (the protocol's limit)"
    )]
    MaxAddressesPerResponse(usize),
    /// `request_interval` is zero.
    #[error("pex request_interval must be more than zero")]
    ZeroRequestInterval,
    /// `observed_quorum` out of range.
    #[error("pex observed_quorum is {0}; it must be in 0..={MAX_OBSERVED_QUORUM}")]
    ObservedQuorum(usize),
    /// `min_request_gap` is longer than `request_interval`.
    #[error(
        "pex min_request_gap ({gap:?}) exceeds request_interval ({interval:?}): nodes with this config would ask each other more often than they allow"
    )]
    GapExceedsInterval {
        /// `min_request_gap`.
        gap: Duration,
        /// `request_interval`.
        interval: Duration,
    },
}

impl PexConfig {
    /// Checks the values: `max_addresses_per_response` in 1..=100, a
    /// non-zero `request_interval`, `min_request_gap <= request_interval`.
    pub fn validate(&self) -> Result<(), PexConfigError> {
        if self.max_addresses_per_response == 0
            || self.max_addresses_per_response > MAX_ADDRESSES_PER_RESPONSE
        {
            return Err(PexConfigError::MaxAddressesPerResponse(
                self.max_addresses_per_response,
            ));
        }
        if self.request_interval.is_zero() {
            return Err(PexConfigError::ZeroRequestInterval);
        }
        if self.observed_quorum > MAX_OBSERVED_QUORUM {
            return Err(PexConfigError::ObservedQuorum(self.observed_quorum));
        }
        if self.min_request_gap > self.request_interval {
            return Err(PexConfigError::GapExceedsInterval {
                gap: self.min_request_gap,
                interval: self.request_interval,
            });
        }
        Ok(())
    }
}

#[cfg(feature = "serde")]
impl PexConfigError {
    /// The field at fault, named as in the serialized form (and in
    /// [`PexConfig`]), so a caller that read the configuration from a file
    /// can point at the key: `max_addresses_per_response`.
    pub fn field(&self) -> &'static str {
        match self {
            PexConfigError::MaxAddressesPerResponse(_) => "max_addresses_per_response",
            PexConfigError::ZeroRequestInterval => "request_interval",
            PexConfigError::GapExceedsInterval { .. } => "min_request_gap",
            PexConfigError::ObservedQuorum(_) => "observed_quorum",
        }
    }
}

#[cfg(all(test, feature = "serde"))]
mod serde_tests {
    use super::*;

    fn parse(text: &str) -> Result<PexConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn every_field_parses_under_its_name() {
        let config = parse(
            "min_peers = 3\nrequest_interval = \"45s\"\nmax_addresses_per_response = 50\n\
             min_request_gap = \"1m 30s\"\nseed_mode = true\nobserved_quorum = 5\n",
        )
        .expect("valid");
        assert_eq!(
            config,
            PexConfig {
                min_peers: 3,
                request_interval: Duration::from_secs(45),
                max_addresses_per_response: 50,
                min_request_gap: Duration::from_secs(90),
                seed_mode: true,
                observed_quorum: 5,
            }
        );
    }

    #[test]
    fn missing_fields_take_their_defaults_and_unknown_ones_are_refused() {
        assert_eq!(parse("").expect("empty"), PexConfig::default());
        let error = parse("min_peer = 3\n").expect_err("unknown field");
        assert!(
            error.message().contains("unknown field `min_peer`"),
            "{error}"
        );
        let error = parse("request_interval = 30\n").expect_err("a number is not a duration");
        assert!(error.message().contains("expected a duration"), "{error}");
    }

    #[test]
    fn serializing_round_trips() {
        let config = PexConfig {
            min_peers: 1,
            request_interval: Duration::from_millis(1500),
            ..PexConfig::default()
        };
        let text = toml::to_string(&config).expect("serialize");
        assert!(text.contains("request_interval = \"1s 500ms\""), "{text}");
        assert_eq!(parse(&text).expect("parse"), config);
    }

    #[test]
    fn errors_name_a_serialized_field() {
        let keys = toml::Table::try_from(PexConfig::default()).expect("serialize");
        let errors = [
            PexConfigError::MaxAddressesPerResponse(0),
            PexConfigError::ZeroRequestInterval,
            PexConfigError::GapExceedsInterval {
                gap: Duration::ZERO,
                interval: Duration::ZERO,
            },
            PexConfigError::ObservedQuorum(33),
        ];
        for error in errors {
            assert!(keys.contains_key(error.field()), "{error:?}");
            assert!(error.to_string().contains(error.field()), "{error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(PexConfig::default().validate(), Ok(()));
    }

    #[test]
    fn bad_values_are_refused_with_the_field_named() {
        let cases = [
            (
                PexConfig {
                    max_addresses_per_response: 0,
                    ..PexConfig::default()
                },
                "max_addresses_per_response",
            ),
            (
                PexConfig {
                    max_addresses_per_response: 101,
                    ..PexConfig::default()
                },
                "max_addresses_per_response",
            ),
            (
                PexConfig {
                    observed_quorum: MAX_OBSERVED_QUORUM + 1,
                    ..PexConfig::default()
                },
                "observed_quorum",
            ),
            (
                PexConfig {
                    request_interval: Duration::ZERO,
                    min_request_gap: Duration::ZERO,
                    ..PexConfig::default()
                },
                "request_interval",
            ),
            (
                PexConfig {
                    min_request_gap: Duration::from_secs(31),
                    ..PexConfig::default()
                },
                "min_request_gap",
            ),
        ];
        for (config, field) in cases {
            let error = config.validate().expect_err(field).to_string();
            assert!(error.contains(field), "{error:?} does not name {field}");
        }
    }
}
