//! Peer exchange settings and their checks.

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PexConfig {
    /// Below this many connected peers the node asks for addresses every
    /// `request_interval`; at or above it, every `10 × request_interval`.
    pub min_peers: usize,
    /// Time between two requests while below `min_peers`.
    pub request_interval: Duration,
    /// Addresses in one response at most (1..=100).
    pub max_addresses_per_response: usize,
    /// A peer may send one request per this much time; an earlier one gets
    /// no answer and costs the peer score. Also the least time between two
    /// requests of ours to one peer, so it must not exceed
    /// `request_interval`.
    pub min_request_gap: Duration,
    /// Seed mode, for bootstrap nodes: an inbound peer is disconnected
    /// [`SEED_LINGER`](crate::state::SEED_LINGER) after its request is
    /// answered (or [`SEED_MAX_STAY`](crate::state::SEED_MAX_STAY) after it
    /// came up if it asks nothing), so a bootstrap node's inbound slots
    /// keep turning over and any number of nodes can join through it.
    /// Default off.
    pub seed_mode: bool,
}

impl Default for PexConfig {
    fn default() -> Self {
        Self {
            min_peers: 8,
            request_interval: Duration::from_secs(30),
            max_addresses_per_response: MAX_ADDRESSES_PER_RESPONSE,
            min_request_gap: Duration::from_secs(15),
            seed_mode: false,
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
        if self.min_request_gap > self.request_interval {
            return Err(PexConfigError::GapExceedsInterval {
                gap: self.min_request_gap,
                interval: self.request_interval,
            });
        }
        Ok(())
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
