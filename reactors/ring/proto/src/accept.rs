//! The signed answer to a connect request.
//!
//! The peer where a connect request ends answers `Accepted` along the
//! route's path, and every hop on that path relays it. Unsigned, any hop
//! could answer in the acceptor's stead and name whom it likes — a peer
//! that never saw the request (which then refuses the requester and bans
//! it), or a peer of its own that the requester would take past its degree
//! limit. So the acceptor signs, in the domain [`ACCEPT_SIGNATURE_DOMAIN`]:
//!
//! `network ‖ route id ‖ requester ‖ acceptor's location ‖ already_linked ‖
//! SHA-256(addresses)`
//!
//! (network: the [`NetworkTag`]; route id 8 bytes big-endian; requester 32
//! bytes; location 8 bytes big-endian; one byte 0 or 1; the addresses each
//! preceded by its length as 4 bytes big-endian). The requester checks the
//! signature under the acceptor's PeerId before it dials the acceptor or
//! counts it as a neighbour, and admits it only with that location, which
//! the acceptor's transcript must then prove.
//!
//! A hop can still drop the answer, or answer for a peer of its own with a
//! real location; the requester also checks that the acceptor is where the
//! route should have ended (`RingState` refuses an acceptor farther from the
//! target than a link it already has).

use p2p_core::{Keypair, PeerId};
use sha2::{Digest, Sha256};

use crate::location::Location;
use crate::negotiation::NetworkTag;

/// The signature domain of an `Accepted` (see [`Keypair::sign_in_domain`]).
pub const ACCEPT_SIGNATURE_DOMAIN: &str = "switchyard/ring/accept/v1";

/// An acceptor's answer to a connect request, as signed.
#[derive(Debug, Clone, Copy)]
pub struct Acceptance<'a> {
    /// The connect request's route id (chosen by the requester).
    pub route_id: u64,
    /// The requester (the route's origin).
    pub requester: &'a PeerId,
    /// The acceptor's location.
    pub location: Location,
    /// "Already linked: nothing to dial."
    pub already_linked: bool,
    /// Where to dial the acceptor.
    pub addresses: &'a [String],
}

impl Acceptance<'_> {
    /// What is signed.
    fn bytes(&self, network: &NetworkTag) -> [u8; 113] {
        let mut hash = Sha256::new();
        for address in self.addresses {
            // Lengths are bounded by the wire format (512 bytes).
            hash.update((address.len() as u32).to_be_bytes());
            hash.update(address.as_bytes());
        }
        let addresses: [u8; 32] = hash.finalize().into();
        let mut out = [0u8; 113];
        out[..32].copy_from_slice(network.as_bytes());
        out[32..40].copy_from_slice(&self.route_id.to_be_bytes());
        out[40..72].copy_from_slice(self.requester.as_bytes());
        out[72..80].copy_from_slice(&self.location.raw().to_be_bytes());
        out[80] = u8::from(self.already_linked);
        out[81..].copy_from_slice(&addresses);
        out
    }

    /// The acceptor `keypair` signs this answer.
    pub fn sign(&self, keypair: &Keypair, network: &NetworkTag) -> [u8; 64] {
        keypair.sign_in_domain(ACCEPT_SIGNATURE_DOMAIN, &self.bytes(network))
    }

    /// Whether `signature` is `acceptor`'s over this answer.
    pub fn verify(&self, acceptor: &PeerId, network: &NetworkTag, signature: &[u8; 64]) -> bool {
        acceptor
            .verify_in_domain(ACCEPT_SIGNATURE_DOMAIN, &self.bytes(network), signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_verifies_only_as_signed() {
        let (a, r, other) = (
            Keypair::from_seed(1),
            Keypair::from_seed(2).peer_id(),
            Keypair::from_seed(3),
        );
        let net = NetworkTag::new("n");
        let addresses = vec!["memory://x".to_string()];
        let other_addresses = vec!["memory://y".to_string()];
        let signed = Acceptance {
            route_id: 7,
            requester: &r,
            location: Location::from_raw(42),
            already_linked: false,
            addresses: &addresses,
        };
        let sig = signed.sign(&a, &net);
        assert!(signed.verify(&a.peer_id(), &net, &sig));
        // Any other signer, network, route, requester, location, flag or
        // address breaks it.
        assert!(!signed.verify(&other.peer_id(), &net, &sig));
        assert!(!signed.verify(&a.peer_id(), &NetworkTag::new("m"), &sig));
        let other_id = other.peer_id();
        for changed in [
            Acceptance {
                route_id: 8,
                ..signed
            },
            Acceptance {
                requester: &other_id,
                ..signed
            },
            Acceptance {
                location: Location::from_raw(43),
                ..signed
            },
            Acceptance {
                already_linked: true,
                ..signed
            },
            Acceptance {
                addresses: &other_addresses,
                ..signed
            },
        ] {
            assert!(!changed.verify(&a.peer_id(), &net, &sig), "{changed:?}");
        }
    }
}
