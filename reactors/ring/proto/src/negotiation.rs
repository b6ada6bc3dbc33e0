//! Location negotiation: a joiner and a gateway fix the joiner's
//! [`Location`] so that neither of them chooses it, and anyone can check
//! the result afterwards from a [`Transcript`].
//!
//! # The exchange
//!
//! 1. The joiner `J` draws a secret 32-byte value `r_J` and sends the
//!    gateway `G` its commitment `c = SHA-256("switchyard/ring/commit/v1" ‖
//!    J ‖ r_J)` ([`JoinerSecret::commitment`]). It keeps `r_J` in its store
//!    until `G` answers, so a restart commits to the same value.
//! 2. `G` draws its own 32-byte value `r_G`, fixes the expiry `e` (now +
//!    `location_ttl`, in Unix seconds) and answers with `r_G`, `e` and its
//!    signature over `N ‖ J ‖ c ‖ r_G ‖ e` in the domain
//!    [`JOIN_SIGNATURE_DOMAIN`] ([`Challenge::answer`]), where `N` is the
//!    [`NetworkTag`] of the router's network id. It keeps this *grant*
//!    ([`Grant`]) in its store before the answer leaves, and answers `J`
//!    with it, and nothing else, until `e`: the same commitment gets the
//!    same answer, another commitment a refusal.
//! 3. `J` checks the signature and reveals `r_J` by announcing the
//!    [`Transcript`] `(J, r_J, G, r_G, e, signature)` to the gateway and to
//!    every peer it links to, and keeps it in its store.
//!
//! The location is the first 8 bytes (big-endian) of
//! `SHA-256("switchyard/ring/location/v1" ‖ r_J ‖ r_G ‖ J)`, as a fraction
//! of 2⁶⁴ ([`derive_location`]). A peer verifies a transcript with
//! [`Transcript::verify`]: the gateway must be one it trusts
//! ([`Gateways`]), the signature must verify over `N ‖ J ‖ c ‖ r_G ‖ e`
//! with `c` recomputed from the revealed `r_J` and `N` its own network, the
//! transcript must name the peer that announced it (the router
//! authenticated that peer), and `e` must not have passed by more than
//! [`CLOCK_SKEW_SECS`]. It then pins the location for that PeerId: another
//! transcript from it is refused until `e` − [`CLOCK_SKEW_SECS`]
//! ([`LocationError::Conflicting`]), across disconnections.
//!
//! # What each party can do (the attack analysis)
//!
//! - **The joiner cannot choose its location.** It commits to `r_J` before
//!   it sees `r_G`, and the commitment binds it (SHA-256 is collision
//!   resistant), so after seeing `r_G` its only choice is to reveal or to
//!   walk away. The gateway's signature covers `r_G`: without it the joiner
//!   could invent gateway values offline and try billions of them (grind)
//!   until the location lands where it wants; with it, every try costs a
//!   round trip with a trusted gateway. Walking away and asking again under
//!   the same PeerId draws nothing new: the gateway answers with the grant
//!   it made, until it expires, also after a restart (its store). What
//!   remains is *best of k* over fresh keys: an attacker that completes k
//!   negotiations under k PeerIds keeps the best of k uniformly random
//!   locations; to become the closest peer to a given point of a ring of N
//!   peers it needs about N tries. A gateway grants one network (IPv4 /24,
//!   IPv6 /48) at most [`crate::RingConfig::max_joins_per_prefix`] new
//!   locations per [`crate::RingConfig::join_quota_window`], so k ≤
//!   networks held × that quota × gateways listed, per window. (One PeerId
//!   can hold one location per listed gateway; with one gateway, one.)
//! - **The gateway cannot choose the joiner's location.** It picks `r_G`
//!   seeing only the commitment, which hides 256 random bits, so every
//!   `r_G` gives it a location it cannot predict. It cannot change its mind
//!   after the reveal either: its signature already fixed `r_G`, and the
//!   joiner needs nothing more from it (the transcript verifies without
//!   the gateway).
//! - **Nobody can reuse another peer's location**, nor one from another
//!   network: the transcript names the joiner, is hashed with its PeerId,
//!   is accepted only from that peer, and its signature names the network.
//! - **Nobody can show two locations at once** under one PeerId and one
//!   gateway: the gateway signs one grant per PeerId until it expires, and
//!   peers pin the first they verified.
//! - **A joiner and a gateway that collude choose the location freely** (the
//!   gateway signs whatever the joiner likes). This is why only listed
//!   gateways are trusted by default. With [`Gateways::open`], any peer's
//!   signature is accepted — an attacker then runs its own "gateway" key and
//!   grinds offline, so open gateways give no protection against location
//!   choice; they only make locations verifiable. A listed gateway's own
//!   location is a self-signed transcript (it is trusted anyway).
//! - **Locations expire** (`location_ttl`, 7 days by default), so a
//!   gateway's table of grants ends, and a PeerId gets a fresh draw only
//!   after its expiry. A node renegotiates when its own expires; one that
//!   restarts before announces its stored transcript again.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::{LazyLock, Mutex};

use p2p_core::{Keypair, PeerId};
use sha2::{Digest, Sha256};

use crate::location::Location;

/// The signature domain of a gateway's challenge (see
/// [`Keypair::sign_in_domain`]). Version 2 signs the network and the
/// expiry too.
pub const JOIN_SIGNATURE_DOMAIN: &str = "switchyard/ring/join/v2";
const COMMIT_TAG: &[u8] = b"switchyard/ring/commit/v1";
const LOCATION_TAG: &[u8] = b"switchyard/ring/location/v1";
const NETWORK_TAG: &[u8] = b"switchyard/ring/network/v1";
const TRANSCRIPT_TAG: &[u8] = b"switchyard/ring/transcript/v1";

/// How far apart two nodes' clocks may be, in seconds: a transcript is
/// accepted until this long after its expiry, and a location stays
/// pinned until this long before it.
pub const CLOCK_SKEW_SECS: u64 = 300;

/// A negotiation value: 32 random bytes.
pub type Nonce = [u8; 32];

/// A hash commitment to a joiner's value.
pub type Commitment = [u8; 32];

/// The network a signature belongs to: `SHA-256("switchyard/ring/network/v1"
/// ‖ network id)`, where the network id is the router's (what `Hello`
/// checks). A gateway's signature made for one network does not verify in
/// another, even where the same key is a gateway of both.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetworkTag([u8; 32]);

impl NetworkTag {
    /// The tag of the network named `network_id`.
    pub fn new(network_id: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(NETWORK_TAG);
        hash.update(network_id.as_bytes());
        Self(hash.finalize().into())
    }

    /// The 32 bytes signed.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for NetworkTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NetworkTag({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// The commitment to `joiner_value`: `SHA-256("switchyard/ring/commit/v1" ‖
/// joiner ‖ joiner_value)`.
pub fn commitment(joiner: &PeerId, joiner_value: &Nonce) -> Commitment {
    let mut hash = Sha256::new();
    hash.update(COMMIT_TAG);
    hash.update(joiner.as_bytes());
    hash.update(joiner_value);
    hash.finalize().into()
}

/// The location both values and the joiner's PeerId give: the first 8
/// bytes, big-endian, of `SHA-256("switchyard/ring/location/v1" ‖
/// joiner_value ‖ gateway_value ‖ joiner)`.
pub fn derive_location(joiner: &PeerId, joiner_value: &Nonce, gateway_value: &Nonce) -> Location {
    let mut hash = Sha256::new();
    hash.update(LOCATION_TAG);
    hash.update(joiner_value);
    hash.update(gateway_value);
    hash.update(joiner.as_bytes());
    let digest: [u8; 32] = hash.finalize().into();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    Location::from_raw(u64::from_be_bytes(first))
}

/// What the gateway signs: `network ‖ joiner ‖ commitment ‖ gateway_value
/// ‖ expires` (expires as 8 bytes big-endian; fixed lengths, so the
/// concatenation is unambiguous).
fn challenge_bytes(
    network: &NetworkTag,
    joiner: &PeerId,
    commitment: &Commitment,
    gateway_value: &Nonce,
    expires: u64,
) -> [u8; 136] {
    let mut out = [0u8; 136];
    out[..32].copy_from_slice(network.as_bytes());
    out[32..64].copy_from_slice(joiner.as_bytes());
    out[64..96].copy_from_slice(commitment);
    out[96..128].copy_from_slice(gateway_value);
    out[128..].copy_from_slice(&expires.to_be_bytes());
    out
}

/// Signatures that verified, remembered by a hash of (domain, signer,
/// message, signature) so that a transcript met again (a peer that
/// reconnects, the same peer seen by many nodes of one process — the
/// testkit, the simulator) is not verified again. Verification is a pure
/// function of these inputs, so remembering a success is sound; failures
/// are not remembered. Bounded: the oldest entries are forgotten first.
struct VerifiedSignatures {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

const VERIFIED_SIGNATURES: usize = 1 << 16;

static VERIFIED: LazyLock<Mutex<VerifiedSignatures>> = LazyLock::new(|| {
    Mutex::new(VerifiedSignatures {
        set: HashSet::new(),
        order: VecDeque::new(),
    })
});

/// Verifies `signature` by `signer` over `message` in `domain`, consulting
/// and filling the cache of verified signatures.
pub(crate) fn verify_cached(
    domain: &str,
    signer: &PeerId,
    message: &[u8],
    signature: &[u8; 64],
) -> bool {
    let mut hash = Sha256::new();
    hash.update(domain.as_bytes());
    hash.update([0]);
    hash.update(signer.as_bytes());
    hash.update(message);
    hash.update(signature);
    let key: [u8; 32] = hash.finalize().into();
    // A poisoned lock only means another thread panicked mid-insert; the
    // set is still a set of verified keys.
    let cached = VERIFIED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .set
        .contains(&key);
    if cached {
        return true;
    }
    if signer.verify_in_domain(domain, message, signature).is_err() {
        return false;
    }
    let mut verified = VERIFIED.lock().unwrap_or_else(|e| e.into_inner());
    if verified.set.insert(key) {
        verified.order.push_back(key);
        while verified.order.len() > VERIFIED_SIGNATURES {
            if let Some(old) = verified.order.pop_front() {
                verified.set.remove(&old);
            }
        }
    }
    true
}

/// Which gateways' signatures a node accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gateways {
    /// Trusted gateways.
    pub listed: BTreeSet<PeerId>,
    /// Accept any peer's signature as a gateway's (locations become
    /// verifiable but not unchosen: see the module docs).
    pub open: bool,
}

impl Gateways {
    /// Trust exactly these gateways.
    pub fn listed(gateways: impl IntoIterator<Item = PeerId>) -> Self {
        Self {
            listed: gateways.into_iter().collect(),
            open: false,
        }
    }

    /// Whether a location signed by `gateway` is accepted.
    pub fn trusts(&self, gateway: &PeerId) -> bool {
        self.open || self.listed.contains(gateway)
    }
}

/// Why a transcript or a challenge was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// The gateway that signed is not one we trust.
    #[error("location signed by {gateway}, which is not a trusted gateway")]
    UntrustedGateway {
        /// The signer.
        gateway: PeerId,
    },
    /// The gateway's signature does not verify (a forged or altered
    /// transcript: another value, another joiner, another gateway, another
    /// expiry, another network).
    #[error("the signature of gateway {gateway} over the negotiation does not verify")]
    BadSignature {
        /// The claimed signer.
        gateway: PeerId,
    },
    /// The transcript is another peer's.
    #[error("peer {sender} announced the location of {joiner}")]
    NotTheSender {
        /// Whom the transcript names.
        joiner: PeerId,
        /// Who announced it.
        sender: PeerId,
    },
    /// The transcript expired (more than [`CLOCK_SKEW_SECS`] ago).
    #[error("location expired at unix time {expires} (now {now})")]
    Expired {
        /// Its expiry, in seconds since the Unix epoch.
        expires: u64,
        /// Our clock.
        now: u64,
    },
    /// The peer showed us another location before, which has not expired:
    /// a PeerId holds one location at a time.
    #[error("a second location for this peer; {pinned} is pinned until unix time {until}")]
    Conflicting {
        /// The location we verified first.
        pinned: Location,
        /// Until when it binds.
        until: u64,
    },
    /// A field has the wrong length or is not a PeerId.
    #[error("malformed transcript: {0}")]
    Malformed(String),
}

/// The joiner's side: its secret value, kept until the gateway answers.
#[derive(Clone)]
pub struct JoinerSecret {
    joiner: PeerId,
    value: Nonce,
}

impl std::fmt::Debug for JoinerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinerSecret")
            .field("joiner", &self.joiner)
            .finish_non_exhaustive()
    }
}

impl JoinerSecret {
    /// `joiner`'s secret `value` (32 random bytes from a good source).
    pub fn new(joiner: PeerId, value: Nonce) -> Self {
        Self { joiner, value }
    }

    /// The secret value (kept in the ring's store until the negotiation
    /// ends, so a restart reuses it: a gateway answers a PeerId with one
    /// grant until it expires).
    pub fn value(&self) -> &Nonce {
        &self.value
    }

    /// The commitment to send the gateway.
    pub fn commitment(&self) -> Commitment {
        commitment(&self.joiner, &self.value)
    }

    /// The gateway `gateway` answered with `challenge`: the transcript, if
    /// the signature verifies for this network.
    pub fn complete(
        &self,
        gateway: PeerId,
        challenge: &Challenge,
        network: &NetworkTag,
    ) -> Result<Transcript, LocationError> {
        let message = challenge_bytes(
            network,
            &self.joiner,
            &self.commitment(),
            &challenge.gateway_value,
            challenge.expires,
        );
        if !verify_cached(
            JOIN_SIGNATURE_DOMAIN,
            &gateway,
            &message,
            &challenge.signature,
        ) {
            return Err(LocationError::BadSignature { gateway });
        }
        Ok(Transcript {
            joiner: self.joiner,
            joiner_value: self.value,
            gateway,
            gateway_value: challenge.gateway_value,
            expires: challenge.expires,
            signature: challenge.signature,
        })
    }
}

/// The gateway's answer to a commitment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The gateway's random value.
    pub gateway_value: Nonce,
    /// When the location expires, in seconds since the Unix epoch.
    pub expires: u64,
    /// The gateway's signature over `network ‖ joiner ‖ commitment ‖
    /// gateway_value ‖ expires`.
    pub signature: [u8; 64],
}

impl Challenge {
    /// The gateway `keypair` answers `joiner`'s `commitment` with its
    /// random `gateway_value`, for a location that expires at `expires`.
    pub fn answer(
        keypair: &Keypair,
        network: &NetworkTag,
        joiner: &PeerId,
        commitment: &Commitment,
        gateway_value: Nonce,
        expires: u64,
    ) -> Self {
        let message = challenge_bytes(network, joiner, commitment, &gateway_value, expires);
        Self {
            gateway_value,
            expires,
            signature: keypair.sign_in_domain(JOIN_SIGNATURE_DOMAIN, &message),
        }
    }
}

/// What a gateway remembers of a joiner it answered: the commitment and
/// its answer. It answers that PeerId with this grant, and nothing else,
/// until it expires — across restarts, from its store — so a joiner that
/// walks away from a location it dislikes cannot draw another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The joiner.
    pub joiner: PeerId,
    /// The commitment it sent.
    pub commitment: Commitment,
    /// The answer.
    pub challenge: Challenge,
}

/// Everything needed to check a peer's location: both values, both
/// PeerIds, the expiry and the gateway's signature.
#[derive(Clone, PartialEq, Eq)]
pub struct Transcript {
    /// The peer whose location this is.
    pub joiner: PeerId,
    /// Its revealed value.
    pub joiner_value: Nonce,
    /// The gateway it negotiated with.
    pub gateway: PeerId,
    /// The gateway's value.
    pub gateway_value: Nonce,
    /// When the location expires, in seconds since the Unix epoch.
    pub expires: u64,
    /// The gateway's signature over `network ‖ joiner ‖ commitment ‖
    /// gateway_value ‖ expires`.
    pub signature: [u8; 64],
}

impl std::fmt::Debug for Transcript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcript")
            .field("joiner", &self.joiner)
            .field("gateway", &self.gateway)
            .field("location", &self.location())
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl Transcript {
    /// A gateway's own location: it negotiates with itself. Trusted only
    /// where the gateway is listed (it could have chosen its values).
    pub fn self_negotiated(
        keypair: &Keypair,
        network: &NetworkTag,
        own_value: Nonce,
        gateway_value: Nonce,
        expires: u64,
    ) -> Self {
        let me = keypair.peer_id();
        let secret = JoinerSecret::new(me, own_value);
        let challenge = Challenge::answer(
            keypair,
            network,
            &me,
            &secret.commitment(),
            gateway_value,
            expires,
        );
        Self {
            joiner: me,
            joiner_value: own_value,
            gateway: me,
            gateway_value,
            expires,
            signature: challenge.signature,
        }
    }

    /// The location this transcript claims (not checked).
    pub fn location(&self) -> Location {
        derive_location(&self.joiner, &self.joiner_value, &self.gateway_value)
    }

    /// A hash of every field: two transcripts with the same digest are the
    /// same transcript.
    pub fn digest(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(TRANSCRIPT_TAG);
        hash.update(self.joiner.as_bytes());
        hash.update(self.joiner_value);
        hash.update(self.gateway.as_bytes());
        hash.update(self.gateway_value);
        hash.update(self.expires.to_be_bytes());
        hash.update(self.signature);
        hash.finalize().into()
    }

    /// Checks the transcript as announced by `sender` at unix time `now`:
    /// it must name `sender`, be signed by a gateway `gateways` trusts for
    /// `network`, the signature must verify, and it must not have expired
    /// more than [`CLOCK_SKEW_SECS`] ago. Returns the location.
    pub fn verify(
        &self,
        sender: &PeerId,
        gateways: &Gateways,
        network: &NetworkTag,
        now: u64,
    ) -> Result<Location, LocationError> {
        if self.joiner != *sender {
            return Err(LocationError::NotTheSender {
                joiner: self.joiner,
                sender: *sender,
            });
        }
        if !gateways.trusts(&self.gateway) {
            return Err(LocationError::UntrustedGateway {
                gateway: self.gateway,
            });
        }
        if self.expires.saturating_add(CLOCK_SKEW_SECS) <= now {
            return Err(LocationError::Expired {
                expires: self.expires,
                now,
            });
        }
        let c = commitment(&self.joiner, &self.joiner_value);
        let message = challenge_bytes(network, &self.joiner, &c, &self.gateway_value, self.expires);
        if !verify_cached(
            JOIN_SIGNATURE_DOMAIN,
            &self.gateway,
            &message,
            &self.signature,
        ) {
            return Err(LocationError::BadSignature {
                gateway: self.gateway,
            });
        }
        Ok(self.location())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Unix time in these tests, and the expiry of their locations.
    const NOW: u64 = 1_800_000_000;
    const EXPIRES: u64 = NOW + 3600;

    fn net() -> NetworkTag {
        NetworkTag::new("test")
    }

    fn negotiate(joiner: &Keypair, gateway: &Keypair, rj: Nonce, rg: Nonce) -> Transcript {
        let secret = JoinerSecret::new(joiner.peer_id(), rj);
        let challenge = Challenge::answer(
            gateway,
            &net(),
            &joiner.peer_id(),
            &secret.commitment(),
            rg,
            EXPIRES,
        );
        secret
            .complete(gateway.peer_id(), &challenge, &net())
            .expect("honest challenge verifies")
    }

    #[test]
    fn an_honest_negotiation_verifies_for_its_joiner_only() {
        let (j, g, other) = (
            Keypair::from_seed(1),
            Keypair::from_seed(2),
            Keypair::from_seed(3),
        );
        let t = negotiate(&j, &g, [7; 32], [9; 32]);
        let trusted = Gateways::listed([g.peer_id()]);
        let location = t
            .verify(&j.peer_id(), &trusted, &net(), NOW)
            .expect("verifies");
        assert_eq!(location, derive_location(&j.peer_id(), &[7; 32], &[9; 32]));
        assert_eq!(
            t.verify(&other.peer_id(), &trusted, &net(), NOW),
            Err(LocationError::NotTheSender {
                joiner: j.peer_id(),
                sender: other.peer_id()
            })
        );
        assert_eq!(
            t.verify(
                &j.peer_id(),
                &Gateways::listed([other.peer_id()]),
                &net(),
                NOW
            ),
            Err(LocationError::UntrustedGateway {
                gateway: g.peer_id()
            })
        );
        let open = Gateways {
            open: true,
            ..Gateways::default()
        };
        assert_eq!(t.verify(&j.peer_id(), &open, &net(), NOW), Ok(location));
    }

    #[test]
    fn a_changed_value_or_a_self_made_gateway_value_is_refused() {
        let (j, g) = (Keypair::from_seed(1), Keypair::from_seed(2));
        let trusted = Gateways::listed([g.peer_id()]);
        let honest = negotiate(&j, &g, [7; 32], [9; 32]);
        // Grinding: the joiner tries other gateway values after the fact.
        let mut ground = honest.clone();
        ground.gateway_value = [10; 32];
        assert_eq!(
            ground.verify(&j.peer_id(), &trusted, &net(), NOW),
            Err(LocationError::BadSignature {
                gateway: g.peer_id()
            })
        );
        // Or another value of its own after seeing the gateway's.
        let mut changed = honest.clone();
        changed.joiner_value = [8; 32];
        assert!(changed.verify(&j.peer_id(), &trusted, &net(), NOW).is_err());
        // A challenge signed by someone else than the gateway it came from.
        let secret = JoinerSecret::new(j.peer_id(), [7; 32]);
        let forged = Challenge::answer(
            &j,
            &net(),
            &j.peer_id(),
            &secret.commitment(),
            [9; 32],
            EXPIRES,
        );
        assert_eq!(
            secret.complete(g.peer_id(), &forged, &net()),
            Err(LocationError::BadSignature {
                gateway: g.peer_id()
            })
        );
    }

    #[test]
    fn a_gateways_own_location_verifies_where_it_is_listed() {
        let g = Keypair::from_seed(5);
        let t = Transcript::self_negotiated(&g, &net(), [1; 32], [2; 32], EXPIRES);
        let listed = Gateways::listed([g.peer_id()]);
        assert!(t.verify(&g.peer_id(), &listed, &net(), NOW).is_ok());
        assert!(
            t.verify(&g.peer_id(), &Gateways::default(), &net(), NOW)
                .is_err()
        );
    }

    #[test]
    fn a_location_expires_and_belongs_to_one_network() {
        let (j, g) = (Keypair::from_seed(1), Keypair::from_seed(2));
        let trusted = Gateways::listed([g.peer_id()]);
        let t = negotiate(&j, &g, [7; 32], [9; 32]);
        let location = t.location();
        // Good until its expiry plus the clock skew allowed.
        let last = EXPIRES + CLOCK_SKEW_SECS - 1;
        assert_eq!(t.verify(&j.peer_id(), &trusted, &net(), last), Ok(location));
        assert_eq!(
            t.verify(&j.peer_id(), &trusted, &net(), last + 1),
            Err(LocationError::Expired {
                expires: EXPIRES,
                now: last + 1
            })
        );
        // A later expiry is not the one signed.
        let mut extended = t.clone();
        extended.expires += 1;
        assert!(
            extended
                .verify(&j.peer_id(), &trusted, &net(), NOW)
                .is_err()
        );
        // Nor does it verify in another network, under the same gateway key.
        assert_eq!(
            t.verify(&j.peer_id(), &trusted, &NetworkTag::new("other"), NOW),
            Err(LocationError::BadSignature {
                gateway: g.peer_id()
            })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Whatever values are drawn, an honest transcript verifies to the
        /// location of its hash, and flipping any bit of it breaks it.
        #[test]
        fn honest_transcripts_verify_and_any_bit_flip_breaks_them(
            rj: [u8; 32], rg: [u8; 32], field in 0usize..3, byte in 0usize..32, bit in 0u8..8,
        ) {
            let (j, g) = (Keypair::from_seed(11), Keypair::from_seed(12));
            let trusted = Gateways::listed([g.peer_id()]);
            let t = negotiate(&j, &g, rj, rg);
            prop_assert_eq!(t.verify(&j.peer_id(), &trusted, &net(), NOW), Ok(derive_location(&j.peer_id(), &rj, &rg)));
            let mut bad = t.clone();
            match field {
                0 => bad.joiner_value[byte] ^= 1 << bit,
                1 => bad.gateway_value[byte] ^= 1 << bit,
                _ => bad.signature[byte] ^= 1 << bit,
            }
            prop_assert!(bad.verify(&j.peer_id(), &trusted, &net(), NOW).is_err());
        }
    }
}
