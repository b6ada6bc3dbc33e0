//! Counters of what peer exchange sent, served, learned and refused.

use std::fmt;

use crate::address_check::AddressRefusal;

/// What one node's peer exchange has done since it started. Every refused
/// request, response and address is counted here, with its reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PexStats {
    /// Requests we sent.
    pub requests_sent: u64,
    /// Requests of ours that got no answer in time.
    pub requests_unanswered: u64,
    /// Requests we answered.
    pub requests_served: u64,
    /// Requests we refused (sooner than `min_request_gap` after the
    /// requester's last one); each was reported.
    pub requests_refused: u64,
    /// Responses we accepted (solicited, within the limits).
    pub responses_accepted: u64,
    /// Responses we refused and reported: unsolicited, too many
    /// addresses, an address too long or malformed.
    pub responses_refused: u64,
    /// Responses from a peer already gone: ignored, not reported.
    pub responses_late: u64,
    /// Addresses new to the peer manager (from responses and from what
    /// peers announce).
    pub addresses_learned: u64,
    /// Addresses the peer manager already knew.
    pub addresses_known: u64,
    /// Addresses refused, by reason.
    pub addresses_refused: RefusedAddresses,
    /// Seed mode: inbound peers disconnected to free their slot.
    pub seed_disconnects: u64,
    /// Our messages dropped before they left (the peer's send queue was
    /// full, or the message too large); the router counts them too.
    pub sends_dropped: u64,
    /// Observations of our IP (in responses) counted toward agreement.
    pub observations_taken: u64,
    /// Observations of our IP not counted: in a response not taken, from a
    /// peer we see at no IP, or of another scope than the observer's
    /// (a public peer naming a private IP) or an unusable IP.
    pub observations_refused: u64,
    /// The IP peers agree they see us at ([`crate::observed`]), if any.
    pub observed_ip: Option<std::net::IpAddr>,
}

/// Refused addresses by [`AddressRefusal`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RefusedAddresses([u64; AddressRefusal::ALL.len()]);

impl RefusedAddresses {
    /// Addresses refused for `reason`.
    pub fn get(&self, reason: AddressRefusal) -> u64 {
        self.0[reason.index()]
    }

    /// Addresses refused for any reason.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Each reason with its count, in [`AddressRefusal::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (AddressRefusal, u64)> + '_ {
        AddressRefusal::ALL.iter().map(|r| (*r, self.get(*r)))
    }

    pub(crate) fn add(&mut self, reason: AddressRefusal) {
        self.0[reason.index()] += 1;
    }
}

impl fmt::Debug for RefusedAddresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(r, n)| (r.as_str(), n)),
            )
            .finish()
    }
}
