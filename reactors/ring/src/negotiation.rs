//! Location negotiation: a joiner and a gateway fix the joiner's
//! [`Location`] so that neither of them chooses it, and anyone can check
//! the result afterwards from a [`Transcript`].
//!
//! # The exchange
//!
//! 1. The joiner `J` draws a secret 32-byte value `r_J` and sends the
//!    gateway `G` its commitment `c = SHA-256("switchyard/ring/commit/v1" ‖
//!    J ‖ r_J)` ([`JoinerSecret::commitment`]).
//! 2. `G` draws its own 32-byte value `r_G` and answers with `r_G` and its
//!    signature over `J ‖ c ‖ r_G` in the domain
//!    [`JOIN_SIGNATURE_DOMAIN`] ([`Challenge::answer`]).
//! 3. `J` checks the signature and reveals `r_J` by announcing the
//!    [`Transcript`] `(J, r_J, G, r_G, signature)` to the gateway and to
//!    every peer it links to.
//!
//! The location is the first 8 bytes (big-endian) of
//! `SHA-256("switchyard/ring/location/v1" ‖ r_J ‖ r_G ‖ J)`, as a fraction
//! of 2⁶⁴ ([`derive_location`]). A peer verifies a transcript with
//! [`Transcript::verify`]: the gateway must be one it trusts
//! ([`Gateways`]), the signature must verify over `J ‖ c ‖ r_G` with `c`
//! recomputed from the revealed `r_J`, and the transcript must name the
//! peer that announced it (the router authenticated that peer).
//!
//! # What each party can do (the attack analysis)
//!
//! - **The joiner cannot choose its location.** It commits to `r_J` before
//!   it sees `r_G`, and the commitment binds it (SHA-256 is collision
//!   resistant), so after seeing `r_G` its only choice is to reveal or to
//!   walk away. The gateway's signature covers `r_G`: without it the joiner
//!   could invent gateway values offline and try billions of them (grind)
//!   until the location lands where it wants; with it, every try costs a
//!   round trip with a trusted gateway. What remains is *best of k*: a
//!   joiner that completes k negotiations (new PeerIds, reconnections) can
//!   keep the best of k uniformly random locations. To become the closest
//!   peer to a given point of a ring of N peers it needs about N tries.
//!   Gateways bound the rate ([`crate::RingConfig::join_cooldown`] per PeerId,
//!   [`crate::RingConfig::max_pending_joins`] at once, and the router's
//!   connection limits per IP), so an attacker pays in time and addresses.
//! - **The gateway cannot choose the joiner's location.** It picks `r_G`
//!   seeing only the commitment, which hides 256 random bits, so every
//!   `r_G` gives it a location it cannot predict. It cannot change its mind
//!   after the reveal either: its signature already fixed `r_G`, and the
//!   joiner needs nothing more from it (the transcript verifies without
//!   the gateway).
//! - **Nobody can reuse another peer's location.** The transcript names the
//!   joiner, is hashed with its PeerId, and is accepted only from that
//!   peer.
//! - **A joiner and a gateway that collude choose the location freely** (the
//!   gateway signs whatever the joiner likes). This is why only listed
//!   gateways are trusted by default. With [`Gateways::open`], any peer's
//!   signature is accepted — an attacker then runs its own "gateway" key and
//!   grinds offline, so open gateways give no protection against location
//!   choice; they only make locations verifiable. A listed gateway's own
//!   location is a self-signed transcript (it is trusted anyway).
//! - Transcripts do not expire: a location is fixed for the life of the
//!   PeerId. A node that restarts with the same key may announce its old
//!   transcript again.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::{LazyLock, Mutex};

use p2p::{Keypair, PeerId};
use sha2::{Digest, Sha256};

use crate::location::Location;

/// The signature domain of a gateway's challenge (see
/// [`Keypair::sign_in_domain`]).
pub const JOIN_SIGNATURE_DOMAIN: &str = "switchyard/ring/join/v1";
const COMMIT_TAG: &[u8] = b"switchyard/ring/commit/v1";
const LOCATION_TAG: &[u8] = b"switchyard/ring/location/v1";

/// A negotiation value: 32 random bytes.
pub type Nonce = [u8; 32];

/// A hash commitment to a joiner's value.
pub type Commitment = [u8; 32];

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

/// What the gateway signs: `joiner ‖ commitment ‖ gateway_value` (fixed
/// lengths, so the concatenation is unambiguous).
fn challenge_bytes(joiner: &PeerId, commitment: &Commitment, gateway_value: &Nonce) -> [u8; 96] {
    let mut out = [0u8; 96];
    out[..32].copy_from_slice(joiner.as_bytes());
    out[32..64].copy_from_slice(commitment);
    out[64..].copy_from_slice(gateway_value);
    out
}

/// Signatures that verified, remembered by a hash of (signer, message,
/// signature) so that a transcript met again (a peer that reconnects, the
/// same peer seen by many nodes of one process — the testkit, the
/// simulator) is not verified again. Verification is a pure function of
/// these inputs, so remembering a success is sound; failures are not
/// remembered. Bounded: the oldest entries are forgotten first.
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

/// Verifies `signature` by `signer` over `message` in the join domain,
/// consulting and filling the cache of verified signatures.
fn verify_join_signature(signer: &PeerId, message: &[u8; 96], signature: &[u8; 64]) -> bool {
    let mut hash = Sha256::new();
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
    if signer
        .verify_in_domain(JOIN_SIGNATURE_DOMAIN, message, signature)
        .is_err()
    {
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
    /// transcript: another value, another joiner, another gateway).
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

    /// The commitment to send the gateway.
    pub fn commitment(&self) -> Commitment {
        commitment(&self.joiner, &self.value)
    }

    /// The gateway `gateway` answered with `challenge`: the transcript, if
    /// the signature verifies.
    pub fn complete(
        &self,
        gateway: PeerId,
        challenge: &Challenge,
    ) -> Result<Transcript, LocationError> {
        let message = challenge_bytes(&self.joiner, &self.commitment(), &challenge.gateway_value);
        if !verify_join_signature(&gateway, &message, &challenge.signature) {
            return Err(LocationError::BadSignature { gateway });
        }
        Ok(Transcript {
            joiner: self.joiner,
            joiner_value: self.value,
            gateway,
            gateway_value: challenge.gateway_value,
            signature: challenge.signature,
        })
    }
}

/// The gateway's answer to a commitment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The gateway's random value.
    pub gateway_value: Nonce,
    /// The gateway's signature over `joiner ‖ commitment ‖ gateway_value`.
    pub signature: [u8; 64],
}

impl Challenge {
    /// The gateway `keypair` answers `joiner`'s `commitment` with its
    /// random `gateway_value`.
    pub fn answer(
        keypair: &Keypair,
        joiner: &PeerId,
        commitment: &Commitment,
        gateway_value: Nonce,
    ) -> Self {
        let message = challenge_bytes(joiner, commitment, &gateway_value);
        Self {
            gateway_value,
            signature: keypair.sign_in_domain(JOIN_SIGNATURE_DOMAIN, &message),
        }
    }
}

/// Everything needed to check a peer's location: both values, both
/// PeerIds and the gateway's signature.
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
    /// The gateway's signature over `joiner ‖ commitment ‖ gateway_value`.
    pub signature: [u8; 64],
}

impl std::fmt::Debug for Transcript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcript")
            .field("joiner", &self.joiner)
            .field("gateway", &self.gateway)
            .field("location", &self.location())
            .finish_non_exhaustive()
    }
}

impl Transcript {
    /// A gateway's own location: it negotiates with itself. Trusted only
    /// where the gateway is listed (it could have chosen its values).
    pub fn self_negotiated(keypair: &Keypair, own_value: Nonce, gateway_value: Nonce) -> Self {
        let me = keypair.peer_id();
        let secret = JoinerSecret::new(me, own_value);
        let challenge = Challenge::answer(keypair, &me, &secret.commitment(), gateway_value);
        Self {
            joiner: me,
            joiner_value: own_value,
            gateway: me,
            gateway_value,
            signature: challenge.signature,
        }
    }

    /// The location this transcript claims (not checked).
    pub fn location(&self) -> Location {
        derive_location(&self.joiner, &self.joiner_value, &self.gateway_value)
    }

    /// Checks the transcript as announced by `sender`: it must name
    /// `sender`, be signed by a gateway `gateways` trusts, and the
    /// signature must verify. Returns the location.
    pub fn verify(&self, sender: &PeerId, gateways: &Gateways) -> Result<Location, LocationError> {
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
        let c = commitment(&self.joiner, &self.joiner_value);
        let message = challenge_bytes(&self.joiner, &c, &self.gateway_value);
        if !verify_join_signature(&self.gateway, &message, &self.signature) {
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

    fn negotiate(joiner: &Keypair, gateway: &Keypair, rj: Nonce, rg: Nonce) -> Transcript {
        let secret = JoinerSecret::new(joiner.peer_id(), rj);
        let challenge = Challenge::answer(gateway, &joiner.peer_id(), &secret.commitment(), rg);
        secret
            .complete(gateway.peer_id(), &challenge)
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
        let location = t.verify(&j.peer_id(), &trusted).expect("verifies");
        assert_eq!(location, derive_location(&j.peer_id(), &[7; 32], &[9; 32]));
        assert_eq!(
            t.verify(&other.peer_id(), &trusted),
            Err(LocationError::NotTheSender {
                joiner: j.peer_id(),
                sender: other.peer_id()
            })
        );
        assert_eq!(
            t.verify(&j.peer_id(), &Gateways::listed([other.peer_id()])),
            Err(LocationError::UntrustedGateway {
                gateway: g.peer_id()
            })
        );
        let open = Gateways {
            open: true,
            ..Gateways::default()
        };
        assert_eq!(t.verify(&j.peer_id(), &open), Ok(location));
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
            ground.verify(&j.peer_id(), &trusted),
            Err(LocationError::BadSignature {
                gateway: g.peer_id()
            })
        );
        // Or another value of its own after seeing the gateway's.
        let mut changed = honest.clone();
        changed.joiner_value = [8; 32];
        assert!(changed.verify(&j.peer_id(), &trusted).is_err());
        // A challenge signed by someone else than the gateway it came from.
        let secret = JoinerSecret::new(j.peer_id(), [7; 32]);
        let forged = Challenge::answer(&j, &j.peer_id(), &secret.commitment(), [9; 32]);
        assert_eq!(
            secret.complete(g.peer_id(), &forged),
            Err(LocationError::BadSignature {
                gateway: g.peer_id()
            })
        );
    }

    #[test]
    fn a_gateways_own_location_verifies_where_it_is_listed() {
        let g = Keypair::from_seed(5);
        let t = Transcript::self_negotiated(&g, [1; 32], [2; 32]);
        assert!(
            t.verify(&g.peer_id(), &Gateways::listed([g.peer_id()]))
                .is_ok()
        );
        assert!(t.verify(&g.peer_id(), &Gateways::default()).is_err());
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
            prop_assert_eq!(t.verify(&j.peer_id(), &trusted), Ok(derive_location(&j.peer_id(), &rj, &rg)));
            let mut bad = t.clone();
            match field {
                0 => bad.joiner_value[byte] ^= 1 << bit,
                1 => bad.gateway_value[byte] ^= 1 << bit,
                _ => bad.signature[byte] ^= 1 << bit,
            }
            prop_assert!(bad.verify(&j.peer_id(), &trusted).is_err());
        }
    }
}
