//! What a ring node keeps across restarts: the records its core asks its
//! driver to keep ([`StoredRecord`], under a [`RecordKey`]) and their
//! stored form (a Protobuf `StoredRecord`, `store.proto`).
//!
//! The core ([`RingState`](crate::RingState)) does no I/O: it asks its
//! driver to keep a record ([`StoreEffect::Store`](crate::StoreEffect)) or
//! to drop one ([`StoreEffect::Forget`](crate::StoreEffect)), as an
//! [`Output::Effect`](p2p_core::reactor::Output::Effect), and is handed
//! every stored record when it starts
//! ([`RingState::restore`](crate::RingState::restore)). A driver carries
//! a `Store` out before any output that follows it, so a gateway's grant
//! is kept before its challenge leaves; a write that fails comes back as
//! [`StoreOutcome::Failed`](crate::StoreOutcome) and is counted.
//!
//! Three kinds of record, one per key:
//!
//! - **our location** ([`StoredRecord::Own`]): the transcript we announce.
//!   A restarted node announces it again until it expires, instead of
//!   negotiating a new one;
//! - **a pending negotiation** ([`StoredRecord::Secret`]): the value we
//!   committed to with a gateway, until it answers. A node that restarts
//!   mid-negotiation commits to the same value, which the gateway's grant
//!   is for;
//! - **a gateway's grant** ([`StoredRecord::Grant`]): the one answer a
//!   gateway gives a PeerId until it expires. Kept so that a restarted
//!   gateway does not let a joiner draw a second location. At most
//!   [`MAX_GRANTS`](crate::state::MAX_GRANTS) (the core forgets the rest).
//!
//! [`StoredRecord::decode`] reads stored bytes as hostile: it never
//! panics, and refuses a record with a field of the wrong length.

use p2p_core::PeerId;
use prost::Message as _;

use crate::message::transcript_from_wire;
use crate::negotiation::{Challenge, Grant, Nonce, Transcript};
use crate::proto;

/// One thing the ring keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredRecord {
    /// Our location's transcript.
    Own(Transcript),
    /// The value we committed to with `gateway`.
    Secret {
        /// The gateway.
        gateway: PeerId,
        /// Our value.
        value: Nonce,
    },
    /// A gateway's grant to a joiner.
    Grant(Grant),
}

/// Which record: each key holds at most one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKey {
    /// Our location.
    Own,
    /// The value committed to with this gateway.
    Secret(PeerId),
    /// The grant to this joiner.
    Grant(PeerId),
}

impl RecordKey {
    /// The key as stored: a kind byte, then the PeerId.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            RecordKey::Own => vec![0],
            RecordKey::Secret(peer) => [&[1][..], peer.as_bytes()].concat(),
            RecordKey::Grant(peer) => [&[2][..], peer.as_bytes()].concat(),
        }
    }
}

impl StoredRecord {
    /// The record's key.
    pub fn key(&self) -> RecordKey {
        match self {
            StoredRecord::Own(_) => RecordKey::Own,
            StoredRecord::Secret { gateway, .. } => RecordKey::Secret(*gateway),
            StoredRecord::Grant(grant) => RecordKey::Grant(grant.joiner),
        }
    }

    /// The record as stored.
    pub fn encode(&self) -> Vec<u8> {
        use proto::stored_record::Kind;
        let kind = match self {
            StoredRecord::Own(t) => Kind::Own(t.into()),
            StoredRecord::Secret { gateway, value } => Kind::Secret(proto::StoredSecret {
                gateway: gateway.as_bytes().to_vec(),
                value: value.to_vec(),
            }),
            StoredRecord::Grant(g) => Kind::Grant(proto::StoredGrant {
                joiner: g.joiner.as_bytes().to_vec(),
                commitment: g.commitment.to_vec(),
                gateway_value: g.challenge.gateway_value.to_vec(),
                expires: g.challenge.expires,
                signature: g.challenge.signature.to_vec(),
            }),
        };
        proto::StoredRecord { kind: Some(kind) }.encode_to_vec()
    }

    /// A stored record back, or why it is unusable.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        use proto::stored_record::Kind;
        let stored = proto::StoredRecord::decode(bytes).map_err(|e| e.to_string())?;
        let bytes32 = |name: &str, b: &[u8]| -> Result<[u8; 32], String> {
            b.try_into()
                .map_err(|_| format!("{name}: expected 32 bytes, got {}", b.len()))
        };
        let peer = |name: &str, b: &[u8]| PeerId::from_bytes(b).map_err(|e| format!("{name}: {e}"));
        match stored.kind.ok_or("no record kind")? {
            Kind::Own(t) => Ok(StoredRecord::Own(
                transcript_from_wire(&t).map_err(|e| e.to_string())?,
            )),
            Kind::Secret(s) => Ok(StoredRecord::Secret {
                gateway: peer("gateway", &s.gateway)?,
                value: bytes32("value", &s.value)?,
            }),
            Kind::Grant(g) => Ok(StoredRecord::Grant(Grant {
                joiner: peer("joiner", &g.joiner)?,
                commitment: bytes32("commitment", &g.commitment)?,
                challenge: Challenge {
                    gateway_value: bytes32("gateway_value", &g.gateway_value)?,
                    expires: g.expires,
                    signature: g.signature.as_slice().try_into().map_err(|_| {
                        format!("signature: expected 64 bytes, got {}", g.signature.len())
                    })?,
                },
            })),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::negotiation::NetworkTag;
    use p2p_core::Keypair;

    #[test]
    fn records_encode_and_decode_under_their_keys() {
        let g = Keypair::from_seed(1);
        let j = Keypair::from_seed(2).peer_id();
        let net = NetworkTag::new("test");
        let records = [
            StoredRecord::Own(Transcript::self_negotiated(&g, &net, [1; 32], [2; 32], 99)),
            StoredRecord::Secret {
                gateway: g.peer_id(),
                value: [3; 32],
            },
            StoredRecord::Grant(Grant {
                joiner: j,
                commitment: [4; 32],
                challenge: Challenge::answer(&g, &net, &j, &[4; 32], [5; 32], 77),
            }),
        ];
        let keys: Vec<Vec<u8>> = records.iter().map(|r| r.key().to_bytes()).collect();
        assert_eq!(keys[0], vec![0]);
        assert_eq!(keys[1][0], 1);
        assert_eq!(keys[2][0], 2);
        assert_eq!(keys[1].len(), 33);
        for r in records {
            assert_eq!(StoredRecord::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_a_panic() {
        assert!(StoredRecord::decode(&[0xff, 0xff, 0x07]).is_err());
        assert!(StoredRecord::decode(&[]).is_err(), "no kind");
        let short = proto::StoredRecord {
            kind: Some(proto::stored_record::Kind::Secret(proto::StoredSecret {
                gateway: vec![1; 32],
                value: vec![3; 31],
            })),
        };
        assert!(StoredRecord::decode(&short.encode_to_vec()).is_err());
    }
}
