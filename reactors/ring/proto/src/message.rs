//! The ring's messages as the core sees them, and their checked conversion
//! from and to the wire form ([`proto::RingMessage`]).

use p2p_core::PeerId;
use prost::Message as _;

use crate::location::Location;
use crate::negotiation::{Challenge, Commitment, Transcript};
use crate::proto;

/// Hops to live at most, and entries in a route's `visited` and `path`.
pub const MAX_HTL: u8 = 64;
/// Locations in a `NeighborList` at most.
pub const MAX_NEIGHBOR_LIST: usize = MAX_HTL as usize;
/// The largest application payload a route carries.
pub const MAX_APP_PAYLOAD: usize = 16 * 1024;
/// Addresses in a `ConnectAccepted` at most.
pub const MAX_ADDRESSES: usize = 8;
/// The longest address text accepted.
pub const MAX_ADDRESS_LEN: usize = 512;
/// The longest reason text accepted (longer ones are cut, not refused).
pub const MAX_REASON_LEN: usize = 256;

/// Where a route is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteMode {
    /// At the peer closest to the target: the first peer none of whose
    /// unvisited neighbors is closer (a greedy local minimum).
    Closest,
    /// Only at the peer whose location is exactly the target; at a dead
    /// end (no unvisited neighbor) the route backtracks.
    Exact,
    /// At the first peer clockwise from the target (never at the target).
    Successor,
    /// At the first peer counter-clockwise from the target.
    Predecessor,
}

/// What a route carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The origin asks the peer at the end of the route to link to it.
    Connect {
        /// The origin's location.
        location: Location,
    },
    /// Bytes for the application at the end of the route.
    App(Vec<u8>),
}

/// A message routed greedily toward a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Chosen by the origin.
    pub id: u64,
    /// Who sent it first.
    pub origin: PeerId,
    /// Where it goes.
    pub target: Location,
    /// How the end is recognised.
    pub mode: RouteMode,
    /// Transmissions left (forward or back).
    pub htl: u8,
    /// Random hops left before greedy routing.
    pub walk: u8,
    /// Locations of the peers visited, the origin first.
    pub visited: Vec<Location>,
    /// The stack from the origin to the current holder (its last entry).
    pub path: Vec<Location>,
    /// What it carries.
    pub payload: Payload,
}

/// How a route ended, carried back to its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyKind {
    /// The peer at the end accepts the origin as a neighbor.
    Accepted {
        /// The acceptor.
        acceptor: PeerId,
        /// Its location.
        location: Location,
        /// Where to dial it.
        addresses: Vec<String>,
        /// Already neighbors: nothing to dial.
        already_linked: bool,
        /// The acceptor's signature over the answer
        /// ([`Acceptance`](crate::accept::Acceptance)).
        signature: [u8; 64],
    },
    /// The peer at the end has no room.
    Refused {
        /// The peer that refused.
        acceptor: PeerId,
    },
    /// The route ran out of hops or of peers to try.
    Failed {
        /// Why.
        reason: String,
    },
}

/// The answer to a route, carried back along its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteReply {
    /// The route's id.
    pub id: u64,
    /// The remaining way back; its last entry is the receiver.
    pub path: Vec<Location>,
    /// What happened.
    pub kind: ReplyKind,
}

/// A ring message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Joiner → gateway: the commitment to the joiner's value.
    JoinCommit {
        /// The commitment.
        commitment: Commitment,
    },
    /// Gateway → joiner: its value and signature.
    JoinChallenge(Challenge),
    /// Gateway → joiner: no negotiation now.
    JoinRefused {
        /// Why.
        reason: String,
    },
    /// "Here is my location and its proof."
    Announce(Transcript),
    /// A routed message.
    Route(Route),
    /// A route's answer.
    Reply(RouteReply),
    /// "I am dropping our link; stop routing through me."
    Leave,
    /// The sender's neighbors' locations.
    Neighbors(Vec<Location>),
}

/// Why a wire message was refused (a protocol violation by its sender).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A field has the wrong length or is out of range.
    #[error("{field}: {problem}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

fn field(field: &'static str, problem: impl Into<String>) -> WireError {
    WireError::Field {
        field,
        problem: problem.into(),
    }
}

fn array<const N: usize>(name: &'static str, bytes: &[u8]) -> Result<[u8; N], WireError> {
    bytes
        .try_into()
        .map_err(|_| field(name, format!("expected {N} bytes, got {}", bytes.len())))
}

fn peer(name: &'static str, bytes: &[u8]) -> Result<PeerId, WireError> {
    PeerId::from_bytes(bytes).map_err(|e| field(name, e.to_string()))
}

fn bounded(name: &'static str, list: &[u64]) -> Result<Vec<Location>, WireError> {
    if list.len() > usize::from(MAX_HTL) {
        return Err(field(
            name,
            format!("{} entries; at most {MAX_HTL}", list.len()),
        ));
    }
    Ok(list.iter().map(|x| Location::from_raw(*x)).collect())
}

fn cut(mut reason: String) -> String {
    if reason.len() > MAX_REASON_LEN {
        let mut end = MAX_REASON_LEN;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

impl Message {
    /// The message in `wire`: `Ok(None)` if it carries no kind this node
    /// knows (a newer peer's: ignored), an error if it breaks the
    /// protocol's bounds.
    pub fn from_wire(wire: proto::RingMessage) -> Result<Option<Self>, WireError> {
        use proto::ring_message::Kind;
        let Some(kind) = wire.kind else {
            return Ok(None);
        };
        Ok(Some(match kind {
            Kind::JoinCommit(c) => Message::JoinCommit {
                commitment: array("commitment", &c.commitment)?,
            },
            Kind::JoinChallenge(c) => Message::JoinChallenge(Challenge {
                gateway_value: array("gateway_value", &c.gateway_value)?,
                expires: c.expires,
                signature: array("signature", &c.signature)?,
            }),
            Kind::JoinRefused(r) => Message::JoinRefused {
                reason: cut(r.reason),
            },
            Kind::Announce(a) => {
                let t = a.transcript.ok_or_else(|| field("transcript", "missing"))?;
                Message::Announce(transcript_from_wire(&t)?)
            }
            Kind::Route(r) => Message::Route(route_from_wire(r)?),
            Kind::Reply(r) => Message::Reply(reply_from_wire(r)?),
            Kind::Leave(_) => Message::Leave,
            Kind::Neighbors(n) => Message::Neighbors(bounded("locations", &n.locations)?),
        }))
    }

    /// The encoded size on the wire, in bytes.
    pub fn encoded_len(&self) -> usize {
        proto::RingMessage::from(self.clone()).encoded_len()
    }
}

/// A transcript from its wire (and store) form, every field checked.
pub fn transcript_from_wire(t: &proto::Transcript) -> Result<Transcript, WireError> {
    Ok(Transcript {
        joiner: peer("joiner", &t.joiner)?,
        joiner_value: array("joiner_value", &t.joiner_value)?,
        gateway: peer("gateway", &t.gateway)?,
        gateway_value: array("gateway_value", &t.gateway_value)?,
        expires: t.expires,
        signature: array("signature", &t.signature)?,
    })
}

fn route_from_wire(r: proto::Route) -> Result<Route, WireError> {
    use proto::route::Payload as P;
    if r.htl > u32::from(MAX_HTL) {
        return Err(field("htl", format!("{}; at most {MAX_HTL}", r.htl)));
    }
    let mode = match proto::RouteMode::try_from(r.mode) {
        Ok(proto::RouteMode::Closest) => RouteMode::Closest,
        Ok(proto::RouteMode::Exact) => RouteMode::Exact,
        Ok(proto::RouteMode::Successor) => RouteMode::Successor,
        Ok(proto::RouteMode::Predecessor) => RouteMode::Predecessor,
        Err(_) => return Err(field("mode", format!("unknown mode {}", r.mode))),
    };
    let payload = match r.payload {
        Some(P::Connect(c)) => Payload::Connect {
            location: Location::from_raw(c.location),
        },
        Some(P::App(bytes)) => {
            if bytes.len() > MAX_APP_PAYLOAD {
                return Err(field(
                    "app",
                    format!("{} bytes; at most {MAX_APP_PAYLOAD}", bytes.len()),
                ));
            }
            Payload::App(bytes)
        }
        None => return Err(field("payload", "missing")),
    };
    let path = bounded("path", &r.path)?;
    if path.is_empty() {
        return Err(field("path", "empty"));
    }
    Ok(Route {
        id: r.id,
        origin: peer("origin", &r.origin)?,
        target: Location::from_raw(r.target),
        mode,
        htl: r.htl as u8,
        walk: r.walk.min(u32::from(MAX_HTL)) as u8,
        visited: bounded("visited", &r.visited)?,
        path,
        payload,
    })
}

fn reply_from_wire(r: proto::RouteReply) -> Result<RouteReply, WireError> {
    use proto::route_reply::Kind as K;
    let kind = match r.kind.ok_or_else(|| field("kind", "missing"))? {
        K::Accepted(a) => {
            if a.addresses.len() > MAX_ADDRESSES {
                return Err(field(
                    "addresses",
                    format!("{}; at most {MAX_ADDRESSES}", a.addresses.len()),
                ));
            }
            if a.addresses.iter().any(|s| s.len() > MAX_ADDRESS_LEN) {
                return Err(field(
                    "addresses",
                    format!("an address longer than {MAX_ADDRESS_LEN} bytes"),
                ));
            }
            ReplyKind::Accepted {
                acceptor: peer("acceptor", &a.acceptor)?,
                location: Location::from_raw(a.location),
                addresses: a.addresses,
                already_linked: a.already_linked,
                signature: array("signature", &a.signature)?,
            }
        }
        K::Refused(x) => ReplyKind::Refused {
            acceptor: peer("acceptor", &x.acceptor)?,
        },
        K::Failed(f) => ReplyKind::Failed {
            reason: cut(f.reason),
        },
    };
    let path = bounded("path", &r.path)?;
    if path.is_empty() {
        return Err(field("path", "empty"));
    }
    Ok(RouteReply {
        id: r.id,
        path,
        kind,
    })
}

impl From<&Transcript> for proto::Transcript {
    fn from(t: &Transcript) -> Self {
        proto::Transcript {
            joiner: t.joiner.as_bytes().to_vec(),
            joiner_value: t.joiner_value.to_vec(),
            gateway: t.gateway.as_bytes().to_vec(),
            gateway_value: t.gateway_value.to_vec(),
            signature: t.signature.to_vec(),
            expires: t.expires,
        }
    }
}

fn raw(list: Vec<Location>) -> Vec<u64> {
    list.into_iter().map(Location::raw).collect()
}

impl From<Message> for proto::RingMessage {
    fn from(message: Message) -> Self {
        use proto::ring_message::Kind;
        let kind = match message {
            Message::JoinCommit { commitment } => Kind::JoinCommit(proto::JoinCommit {
                commitment: commitment.to_vec(),
            }),
            Message::JoinChallenge(c) => Kind::JoinChallenge(proto::JoinChallenge {
                gateway_value: c.gateway_value.to_vec(),
                signature: c.signature.to_vec(),
                expires: c.expires,
            }),
            Message::JoinRefused { reason } => Kind::JoinRefused(proto::JoinRefused { reason }),
            Message::Announce(t) => Kind::Announce(proto::Announce {
                transcript: Some((&t).into()),
            }),
            Message::Route(r) => {
                let mode = match r.mode {
                    RouteMode::Closest => proto::RouteMode::Closest,
                    RouteMode::Exact => proto::RouteMode::Exact,
                    RouteMode::Successor => proto::RouteMode::Successor,
                    RouteMode::Predecessor => proto::RouteMode::Predecessor,
                };
                let payload = match r.payload {
                    Payload::Connect { location } => {
                        proto::route::Payload::Connect(proto::Connect {
                            location: location.raw(),
                        })
                    }
                    Payload::App(bytes) => proto::route::Payload::App(bytes),
                };
                Kind::Route(proto::Route {
                    id: r.id,
                    origin: r.origin.as_bytes().to_vec(),
                    target: r.target.raw(),
                    mode: mode.into(),
                    htl: u32::from(r.htl),
                    walk: u32::from(r.walk),
                    visited: raw(r.visited),
                    path: raw(r.path),
                    payload: Some(payload),
                })
            }
            Message::Reply(r) => {
                use proto::route_reply::Kind as K;
                let kind = match r.kind {
                    ReplyKind::Accepted {
                        acceptor,
                        location,
                        addresses,
                        already_linked,
                        signature,
                    } => K::Accepted(proto::ConnectAccepted {
                        acceptor: acceptor.as_bytes().to_vec(),
                        location: location.raw(),
                        addresses,
                        already_linked,
                        signature: signature.to_vec(),
                    }),
                    ReplyKind::Refused { acceptor } => K::Refused(proto::ConnectRefused {
                        acceptor: acceptor.as_bytes().to_vec(),
                    }),
                    ReplyKind::Failed { reason } => K::Failed(proto::RouteFailed { reason }),
                };
                Kind::Reply(proto::RouteReply {
                    id: r.id,
                    path: raw(r.path),
                    kind: Some(kind),
                })
            }
            Message::Leave => Kind::Leave(proto::Leave {}),
            Message::Neighbors(locations) => Kind::Neighbors(proto::NeighborList {
                locations: raw(locations),
            }),
        };
        proto::RingMessage { kind: Some(kind) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_core::Keypair;
    use proptest::prelude::*;

    fn id(seed: u64) -> PeerId {
        Keypair::from_seed(seed).peer_id()
    }

    fn round_trip(message: Message) {
        let wire = proto::RingMessage::from(message.clone());
        let bytes = wire.encode_to_vec();
        assert_eq!(bytes.len(), message.encoded_len());
        let decoded = proto::RingMessage::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(Message::from_wire(decoded), Ok(Some(message)));
    }

    #[test]
    fn every_kind_round_trips_through_the_wire() {
        let t = Transcript::self_negotiated(
            &Keypair::from_seed(1),
            &crate::negotiation::NetworkTag::new("test"),
            [1; 32],
            [2; 32],
            1_800_000_000,
        );
        round_trip(Message::JoinCommit {
            commitment: [3; 32],
        });
        round_trip(Message::JoinChallenge(Challenge {
            gateway_value: [4; 32],
            expires: 1_800_000_000,
            signature: [5; 64],
        }));
        round_trip(Message::JoinRefused {
            reason: "busy".into(),
        });
        round_trip(Message::Announce(t));
        round_trip(Message::Leave);
        round_trip(Message::Neighbors(vec![
            Location::from_raw(4),
            Location::ZERO,
        ]));
        for (mode, payload) in [
            (RouteMode::Closest, Payload::App(vec![1, 2, 3])),
            (
                RouteMode::Exact,
                Payload::Connect {
                    location: Location::from_raw(9),
                },
            ),
            (RouteMode::Successor, Payload::App(Vec::new())),
            (RouteMode::Predecessor, Payload::App(vec![0; 10])),
        ] {
            round_trip(Message::Route(Route {
                id: 7,
                origin: id(2),
                target: Location::from_raw(u64::MAX),
                mode,
                htl: 20,
                walk: 2,
                visited: vec![Location::from_raw(1), Location::from_raw(2)],
                path: vec![Location::from_raw(1)],
                payload,
            }));
        }
        for kind in [
            ReplyKind::Accepted {
                acceptor: id(3),
                location: Location::from_raw(5),
                addresses: vec!["memory://x".into()],
                already_linked: true,
                signature: [6; 64],
            },
            ReplyKind::Refused { acceptor: id(4) },
            ReplyKind::Failed {
                reason: "out of hops".into(),
            },
        ] {
            round_trip(Message::Reply(RouteReply {
                id: 1,
                path: vec![Location::from_raw(3)],
                kind,
            }));
        }
    }

    #[test]
    fn breaches_of_the_bounds_are_refused_naming_the_field() {
        let route = |f: &dyn Fn(&mut proto::Route)| {
            let mut wire = proto::Route {
                id: 1,
                origin: id(1).as_bytes().to_vec(),
                htl: 10,
                path: vec![1],
                payload: Some(proto::route::Payload::App(vec![])),
                ..Default::default()
            };
            f(&mut wire);
            Message::from_wire(proto::RingMessage {
                kind: Some(proto::ring_message::Kind::Route(wire)),
            })
        };
        assert!(route(&|_| ()).is_ok());
        type Change<'a> = &'a dyn Fn(&mut proto::Route);
        let cases: [(&str, Change); 6] = [
            ("htl", &|r| r.htl = 65),
            ("visited", &|r| r.visited = vec![0; 65]),
            ("path", &|r| r.path = Vec::new()),
            ("app", &|r| {
                r.payload = Some(proto::route::Payload::App(vec![0; MAX_APP_PAYLOAD + 1]))
            }),
            ("origin", &|r| r.origin = vec![1, 2, 3]),
            ("mode", &|r| r.mode = 9),
        ];
        for (name, change) in cases {
            let error = route(change).expect_err(name).to_string();
            assert!(error.starts_with(name), "{error:?} does not name {name}");
        }
        let empty = Message::from_wire(proto::RingMessage { kind: None });
        assert_eq!(empty, Ok(None), "an unknown kind is ignored, not refused");
    }

    proptest! {
        /// Whatever bytes arrive, decoding and checking never panics.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(wire) = proto::RingMessage::decode(bytes.as_slice()) {
                let _ = Message::from_wire(wire);
            }
        }
    }
}
