//! The suite preamble: the cleartext bytes before the Noise handshake in
//! which the dialer offers its cipher suites and the listener picks one
//! (ADR 0004, section 2a).
//!
//! ```text
//! offer  = version ‖ network_tag (8) ‖ count ‖ suite id × count     10 + count bytes
//! answer = version ‖ status ‖ suite id                                3 bytes
//! network_tag = SHA-256(u64be(25) ‖ "switchyard/network-tag/v1" ‖ network_id)[..8]
//! ```
//!
//! `version` is [`PREAMBLE_VERSION`] (1); `count` is 1 to
//! [`MAX_OFFERED_SUITES`] (8), the ids distinct and non-zero, in the
//! dialer's order of preference; unknown ids are allowed (and skipped), so
//! a later version can offer suites this one does not know. The listener
//! picks the **first suite of the dialer's order that it accepts itself**
//! ([`choose`]): the dialer's order decides, the listener's list says only
//! what it accepts. An answer's `status` is 0 with the chosen suite, or a
//! [`Refusal`] with suite id 0.
//!
//! Both the offer and the answer, as sent, are part of the Noise prologue
//! (`handshake::prologue`), so a man in the middle who rewrites either
//! makes the two sides' handshake hashes differ and the handshake fail.
//! The network tag lets a listener tell a dialer of another network apart
//! and refuse it with a reason (`network_mismatch`) before any Noise work;
//! the full network id stays in the prologue.
//!
//! Everything here is pure: decoders take bytes whose length the caller
//! bounded ([`offer_len`] says how many an offer has from its first
//! [`OFFER_HEAD_LEN`] bytes) and never panic.

use crate::suite::CipherSuite;

/// The preamble's version byte, first in the offer and in the answer.
pub const PREAMBLE_VERSION: u8 = 1;
/// Bytes of the network tag.
pub const NETWORK_TAG_LEN: usize = 8;
/// The hash domain of the network tag.
pub const NETWORK_TAG_DOMAIN: &str = "switchyard/network-tag/v1";
/// Most suites an offer may name.
pub const MAX_OFFERED_SUITES: usize = 8;
/// The offer's fixed part: version, network tag, count.
pub const OFFER_HEAD_LEN: usize = 1 + NETWORK_TAG_LEN + 1;
/// The longest offer.
pub const MAX_OFFER_LEN: usize = OFFER_HEAD_LEN + MAX_OFFERED_SUITES;
/// Bytes of an answer.
pub const ANSWER_LEN: usize = 3;

/// Why a listener refuses a dialer in its answer. The router counts them
/// as `no_common_suite`, `network_mismatch` and `bad_handshake`
/// (`HandshakeError::refusal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Status 1: no suite of the offer is one the listener accepts.
    NoCommonSuite,
    /// Status 2: the offer's network tag is not the listener's.
    NetworkMismatch,
    /// Status 3: the offer is malformed or of another preamble version.
    BadPreamble,
}

impl Refusal {
    /// The answer's status byte.
    pub const fn status(self) -> u8 {
        match self {
            Self::NoCommonSuite => 1,
            Self::NetworkMismatch => 2,
            Self::BadPreamble => 3,
        }
    }

    /// The refusal of a status byte, if it is one.
    pub const fn from_status(status: u8) -> Option<Self> {
        match status {
            1 => Some(Self::NoCommonSuite),
            2 => Some(Self::NetworkMismatch),
            3 => Some(Self::BadPreamble),
            _ => None,
        }
    }

    /// What it means, for error messages.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::NoCommonSuite => "no cipher suite in common",
            Self::NetworkMismatch => "another network id",
            Self::BadPreamble => "a malformed preamble or another preamble version",
        }
    }
}

/// A malformed offer or answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreambleError {
    /// The version byte is not [`PREAMBLE_VERSION`].
    #[error(
        "preamble version {0} is not {PREAMBLE_VERSION} (a node of protocol version 2 or older sends 0x00 here, the first byte of its first Noise message's length)"
    )]
    UnsupportedVersion(u8),
    /// An offer of no suite or of more than [`MAX_OFFERED_SUITES`].
    #[error("an offer of {0} cipher suites; 1 to {MAX_OFFERED_SUITES} are allowed")]
    Count(usize),
    /// Fewer or more bytes than the offer's count says.
    #[error("an offer of {actual} bytes where its count says {expected}")]
    Length {
        /// What the head says.
        expected: usize,
        /// What was given.
        actual: usize,
    },
    /// Suite id 0, which is reserved.
    #[error("cipher suite id 0 is reserved")]
    ReservedSuite,
    /// A suite offered twice.
    #[error("cipher suite id {0:#04x} is offered twice")]
    DuplicateSuite(u8),
    /// An answer's status byte is none of 0 to 3.
    #[error("unknown answer status {0}")]
    Status(u8),
    /// An answer accepting a suite this side does not know, or refusing
    /// with a suite id other than 0.
    #[error("answer status {status} with cipher suite id {suite:#04x}")]
    Suite {
        /// The status byte.
        status: u8,
        /// The suite byte.
        suite: u8,
    },
}

/// The first 8 bytes of `SHA-256(u64be(len(domain)) ‖ domain ‖ network_id)`,
/// domain [`NETWORK_TAG_DOMAIN`].
pub fn network_tag(network_id: &str) -> [u8; NETWORK_TAG_LEN] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(&(NETWORK_TAG_DOMAIN.len() as u64).to_be_bytes());
    context.update(NETWORK_TAG_DOMAIN.as_bytes());
    context.update(network_id.as_bytes());
    let digest = context.finish();
    let mut tag = [0u8; NETWORK_TAG_LEN];
    tag.copy_from_slice(&digest.as_ref()[..NETWORK_TAG_LEN]);
    tag
}

/// A dialer's offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The dialer's [`network_tag`].
    pub network_tag: [u8; NETWORK_TAG_LEN],
    ids: [u8; MAX_OFFERED_SUITES],
    count: usize,
}

impl Offer {
    /// The offer of `suites` in this order. They must pass
    /// [`check_suites`](crate::suite::check_suites); beyond the first
    /// [`MAX_OFFERED_SUITES`], suites are left out.
    pub fn new(network_tag: [u8; NETWORK_TAG_LEN], suites: &[CipherSuite]) -> Self {
        let mut ids = [0u8; MAX_OFFERED_SUITES];
        let count = suites.len().min(MAX_OFFERED_SUITES);
        for (slot, suite) in ids.iter_mut().zip(suites) {
            *slot = suite.id();
        }
        Self {
            network_tag,
            ids,
            count,
        }
    }

    /// The suite ids offered, in the dialer's order, unknown ones included.
    pub fn suite_ids(&self) -> &[u8] {
        &self.ids[..self.count]
    }

    /// The offer's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(OFFER_HEAD_LEN + self.count);
        out.push(PREAMBLE_VERSION);
        out.extend_from_slice(&self.network_tag);
        // `count` is at most MAX_OFFERED_SUITES.
        out.push(self.count as u8);
        out.extend_from_slice(self.suite_ids());
        out
    }

    /// Decodes an offer of exactly `bytes.len()` bytes, checking the
    /// version, the count, the length and the ids.
    pub fn decode(bytes: &[u8]) -> Result<Self, PreambleError> {
        let expected = offer_len(bytes)?;
        if bytes.len() != expected {
            return Err(PreambleError::Length {
                expected,
                actual: bytes.len(),
            });
        }
        let mut network_tag = [0u8; NETWORK_TAG_LEN];
        network_tag.copy_from_slice(&bytes[1..1 + NETWORK_TAG_LEN]);
        let offered = &bytes[OFFER_HEAD_LEN..];
        let mut ids = [0u8; MAX_OFFERED_SUITES];
        for (i, &id) in offered.iter().enumerate() {
            if id == 0 {
                return Err(PreambleError::ReservedSuite);
            }
            if offered[..i].contains(&id) {
                return Err(PreambleError::DuplicateSuite(id));
            }
            ids[i] = id;
        }
        Ok(Self {
            network_tag,
            ids,
            count: offered.len(),
        })
    }
}

/// The length of the offer that starts with `head` (at least its first
/// [`OFFER_HEAD_LEN`] bytes), checking its version and count: what a
/// listener reads before it reads the rest, so it never waits for, nor
/// holds, more than [`MAX_OFFER_LEN`] bytes.
pub fn offer_len(head: &[u8]) -> Result<usize, PreambleError> {
    match head.first() {
        None => {
            return Err(PreambleError::Length {
                expected: OFFER_HEAD_LEN,
                actual: 0,
            });
        }
        Some(&version) if version != PREAMBLE_VERSION => {
            return Err(PreambleError::UnsupportedVersion(version));
        }
        Some(_) => {}
    }
    if head.len() < OFFER_HEAD_LEN {
        return Err(PreambleError::Length {
            expected: OFFER_HEAD_LEN,
            actual: head.len(),
        });
    }
    let count = usize::from(head[OFFER_HEAD_LEN - 1]);
    if count == 0 || count > MAX_OFFERED_SUITES {
        return Err(PreambleError::Count(count));
    }
    Ok(OFFER_HEAD_LEN + count)
}

/// A listener's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Status 0: the handshake runs this suite.
    Accept(CipherSuite),
    /// The listener refuses, says why, and closes.
    Refuse(Refusal),
}

impl Answer {
    /// The answer's 3 bytes.
    pub const fn encode(self) -> [u8; ANSWER_LEN] {
        match self {
            Self::Accept(suite) => [PREAMBLE_VERSION, 0, suite.id()],
            Self::Refuse(refusal) => [PREAMBLE_VERSION, refusal.status(), 0],
        }
    }

    /// Decodes an answer: the version, a known status, a known suite
    /// when accepting and suite id 0 when refusing.
    pub fn decode(bytes: [u8; ANSWER_LEN]) -> Result<Self, PreambleError> {
        let [version, status, suite] = bytes;
        if version != PREAMBLE_VERSION {
            return Err(PreambleError::UnsupportedVersion(version));
        }
        match (status, Refusal::from_status(status)) {
            (0, _) => CipherSuite::from_id(suite)
                .map(Self::Accept)
                .ok_or(PreambleError::Suite { status, suite }),
            (_, Some(refusal)) if suite == 0 => Ok(Self::Refuse(refusal)),
            (_, Some(_)) => Err(PreambleError::Suite { status, suite }),
            (_, None) => Err(PreambleError::Status(status)),
        }
    }
}

/// The listener's answer to a well-formed `offer`, given its own network
/// tag and the suites it accepts: a network mismatch first, then the first
/// suite in the dialer's order that the listener accepts, else no common
/// suite.
pub fn choose(
    offer: &Offer,
    network_tag: &[u8; NETWORK_TAG_LEN],
    accepted: &[CipherSuite],
) -> Answer {
    if offer.network_tag != *network_tag {
        return Answer::Refuse(Refusal::NetworkMismatch);
    }
    offer
        .suite_ids()
        .iter()
        .filter_map(|&id| CipherSuite::from_id(id))
        .find(|suite| accepted.contains(suite))
        .map_or(Answer::Refuse(Refusal::NoCommonSuite), Answer::Accept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CipherSuite::{AesGcm, ChaChaPoly};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_network_tag_is_the_domain_separated_hash() {
        // SHA-256(u64be(25) ‖ "switchyard/network-tag/v1" ‖ "switchyard-test")
        // computed independently (Python hashlib), first 8 bytes.
        assert_eq!(NETWORK_TAG_DOMAIN.len(), 25);
        assert_eq!(hex(&network_tag("switchyard-test")), "aa1b1d591427b4c5");
        assert_eq!(hex(&network_tag("switchyard-local")), "3fd6875d7079d4f8");
    }

    #[test]
    fn offers_round_trip_and_are_checked() {
        let tag = [7u8; 8];
        let offer = Offer::new(tag, &[AesGcm, ChaChaPoly]);
        let bytes = offer.encode();
        assert_eq!(hex(&bytes), "010707070707070707020201");
        assert_eq!(offer_len(&bytes), Ok(12));
        assert_eq!(Offer::decode(&bytes), Ok(offer));

        let mut v = bytes.clone();
        v[0] = 0;
        assert_eq!(Offer::decode(&v), Err(PreambleError::UnsupportedVersion(0)));
        let mut v = bytes.clone();
        v[9] = 0;
        assert_eq!(Offer::decode(&v), Err(PreambleError::Count(0)));
        v[9] = 9;
        assert_eq!(offer_len(&v), Err(PreambleError::Count(9)));
        let mut v = bytes.clone();
        v[11] = 2;
        assert_eq!(Offer::decode(&v), Err(PreambleError::DuplicateSuite(2)));
        v[11] = 0;
        assert_eq!(Offer::decode(&v), Err(PreambleError::ReservedSuite));
        assert!(matches!(
            Offer::decode(&bytes[..11]),
            Err(PreambleError::Length {
                expected: 12,
                actual: 11
            })
        ));
        let mut longer = bytes.clone();
        longer.push(3);
        assert!(Offer::decode(&longer).is_err());
        assert!(offer_len(&[]).is_err());
        assert!(offer_len(&[1, 2, 3]).is_err());
        // Unknown ids are allowed, and skipped by `choose`.
        let mut v = bytes.clone();
        v[10] = 0x7f;
        let unknown = Offer::decode(&v).expect("unknown ids decode");
        assert_eq!(
            choose(&unknown, &tag, &[AesGcm, ChaChaPoly]),
            Answer::Accept(ChaChaPoly)
        );
    }

    #[test]
    fn answers_round_trip_and_are_checked() {
        for answer in [
            Answer::Accept(AesGcm),
            Answer::Accept(ChaChaPoly),
            Answer::Refuse(Refusal::NoCommonSuite),
            Answer::Refuse(Refusal::NetworkMismatch),
            Answer::Refuse(Refusal::BadPreamble),
        ] {
            assert_eq!(Answer::decode(answer.encode()), Ok(answer));
        }
        assert_eq!(hex(&Answer::Accept(AesGcm).encode()), "010002");
        assert_eq!(
            hex(&Answer::Refuse(Refusal::NetworkMismatch).encode()),
            "010200"
        );
        assert!(Answer::decode([2, 0, 1]).is_err());
        assert!(Answer::decode([1, 0, 0]).is_err());
        assert!(Answer::decode([1, 0, 9]).is_err());
        assert!(Answer::decode([1, 1, 1]).is_err());
        assert!(Answer::decode([1, 4, 0]).is_err());
    }

    #[test]
    fn the_listener_follows_the_dialers_order_among_what_it_accepts() {
        let tag = network_tag("net");
        let both = Offer::new(tag, &[AesGcm, ChaChaPoly]);
        let chacha_first = Offer::new(tag, &[ChaChaPoly, AesGcm]);
        let aes_only = Offer::new(tag, &[AesGcm]);
        assert_eq!(
            choose(&both, &tag, &[ChaChaPoly, AesGcm]),
            Answer::Accept(AesGcm)
        );
        assert_eq!(
            choose(&chacha_first, &tag, &[AesGcm, ChaChaPoly]),
            Answer::Accept(ChaChaPoly)
        );
        assert_eq!(
            choose(&both, &tag, &[ChaChaPoly]),
            Answer::Accept(ChaChaPoly)
        );
        assert_eq!(
            choose(&aes_only, &tag, &[ChaChaPoly]),
            Answer::Refuse(Refusal::NoCommonSuite)
        );
        assert_eq!(
            choose(&both, &network_tag("other"), &[AesGcm, ChaChaPoly]),
            Answer::Refuse(Refusal::NetworkMismatch)
        );
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_preambles_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            if let Ok(offer) = Offer::decode(&bytes) {
                proptest::prop_assert_eq!(offer.encode(), bytes.clone());
            }
            let _ = offer_len(&bytes);
            if bytes.len() >= ANSWER_LEN {
                let answer = [bytes[0], bytes[1], bytes[2]];
                if let Ok(decoded) = Answer::decode(answer) {
                    proptest::prop_assert_eq!(decoded.encode(), answer);
                }
            }
        }
    }
}
