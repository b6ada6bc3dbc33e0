//! The gossip protocol's messages as the core sees them, their identities
//! (topics, message ids), signatures, and the checked conversion from and
//! to the wire form ([`proto::GossipMessage`]).

use std::fmt;

use bytes::Bytes;
use p2p_core::{IdentityError, Keypair, PeerAddress, PeerId};
use sha2::{Digest, Sha256};

use crate::proto;

/// Addresses a [`Contact`] carries at most.
pub const MAX_CONTACT_ADDRESSES: usize = 4;
/// Contacts a shuffle (or its reply) carries at most.
pub const MAX_CONTACTS: usize = 16;
/// Entries an `IHave` carries at most.
pub const MAX_IHAVE_ENTRIES: usize = 512;
/// The longest random walk (`ttl`) accepted.
pub const MAX_TTL: u32 = 16;
/// The largest hop count accepted.
pub const MAX_HOPS: u32 = 255;
/// Values a size sketch carries at most.
pub const MAX_SKETCH_VALUES: usize = 256;

/// Domain of message ids.
const ID_DOMAIN: &[u8] = b"switchyard/gossip/v1/id";
/// Domain of topic ids derived from names.
const TOPIC_DOMAIN: &[u8] = b"switchyard/gossip/v1/topic";
/// Domain of origin signatures ([`Keypair::sign_in_domain`]).
pub const SIGNATURE_DOMAIN: &str = "switchyard/gossip/v1/message";

fn hash_in_domain(domain: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((domain.len() as u64).to_be_bytes());
    hasher.update(domain);
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

fn short_hex(bytes: &[u8]) -> String {
    bytes.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// A topic: 32 bytes, usually the hash of a name ([`TopicId::from_name`]).
/// Each topic is its own overlay with its own members.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicId([u8; 32]);

impl TopicId {
    /// The topic named `name`: SHA-256 of the name in the gossip topic
    /// domain, so every node derives the same id.
    ///
    /// ```
    /// use reactor_gossip_proto::TopicId;
    /// assert_eq!(TopicId::from_name("chat"), TopicId::from_name("chat"));
    /// assert_ne!(TopicId::from_name("chat"), TopicId::from_name("news"));
    /// ```
    pub fn from_name(name: &str) -> Self {
        Self(hash_in_domain(TOPIC_DOMAIN, &[name.as_bytes()]))
    }

    /// A topic from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicId({})", short_hex(&self.0))
    }
}

/// A message's identity: the hash of its topic, origin, timestamp, nonce
/// and payload ([`SignedMessage::id`]). Two publications of the same bytes
/// have different ids (the nonce differs); a forwarder cannot change any
/// part of a message without changing its id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId([u8; 32]);

impl MessageId {
    /// An id from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", short_hex(&self.0))
    }
}

/// A peer and the addresses it can be dialed at (each naming the peer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The peer.
    pub peer: PeerId,
    /// Where to dial it (at most [`MAX_CONTACT_ADDRESSES`]).
    pub addresses: Vec<PeerAddress>,
}

impl Contact {
    /// A contact with no address (the peer is reached over a connection
    /// that already exists, or in the simulator).
    pub fn bare(peer: PeerId) -> Self {
        Self {
            peer,
            addresses: Vec::new(),
        }
    }
}

impl From<PeerId> for Contact {
    /// A peer to reach over its existing connection: joining through it
    /// takes the addresses its connection announced.
    fn from(peer: PeerId) -> Self {
        Contact::bare(peer)
    }
}

impl From<PeerAddress> for Contact {
    fn from(address: PeerAddress) -> Self {
        Contact {
            peer: address.peer,
            addresses: vec![address],
        }
    }
}

/// A message as its origin published it: signed by the origin over its
/// [`MessageId`].
#[derive(Clone, PartialEq, Eq)]
pub struct SignedMessage {
    /// Who published it (and signed it).
    pub origin: PeerId,
    /// Milliseconds since the Unix epoch at the origin.
    pub timestamp_ms: u64,
    /// Chosen by the origin, so equal payloads get different ids.
    pub nonce: u64,
    /// The application's bytes.
    pub payload: Bytes,
    /// ed25519 over the id, in [`SIGNATURE_DOMAIN`].
    pub signature: [u8; 64],
}

impl fmt::Debug for SignedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedMessage")
            .field("origin", &self.origin)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("nonce", &self.nonce)
            .field("payload", &format_args!("<{} bytes>", self.payload.len()))
            .finish_non_exhaustive()
    }
}

impl SignedMessage {
    /// Signs `payload` on `topic` as `keypair`.
    pub fn sign(
        keypair: &Keypair,
        topic: &TopicId,
        timestamp_ms: u64,
        nonce: u64,
        payload: Bytes,
    ) -> Self {
        let origin = keypair.peer_id();
        let id = Self::compute_id(topic, &origin, timestamp_ms, nonce, &payload);
        let signature = keypair.sign_in_domain(SIGNATURE_DOMAIN, id.as_bytes());
        Self {
            origin,
            timestamp_ms,
            nonce,
            payload,
            signature,
        }
    }

    fn compute_id(
        topic: &TopicId,
        origin: &PeerId,
        timestamp_ms: u64,
        nonce: u64,
        payload: &[u8],
    ) -> MessageId {
        MessageId(hash_in_domain(
            ID_DOMAIN,
            &[
                topic.as_bytes(),
                origin.as_bytes(),
                &timestamp_ms.to_be_bytes(),
                &nonce.to_be_bytes(),
                payload,
            ],
        ))
    }

    /// The message with a payload that owns exactly its own bytes.
    ///
    /// A payload decoded from the wire is a view into the frame it came in
    /// (prost decodes `bytes` fields without copying), so keeping it keeps
    /// the whole frame, unknown fields and all: 100 bytes of payload could
    /// hold 64 KiB. What is kept beyond the handling of one message (the
    /// payload cache, the application's copy) is detached first, so it
    /// holds only what it counts.
    pub fn detached(mut self) -> Self {
        self.payload = Bytes::copy_from_slice(&self.payload);
        self
    }

    /// The message's id on `topic`.
    pub fn id(&self, topic: &TopicId) -> MessageId {
        Self::compute_id(
            topic,
            &self.origin,
            self.timestamp_ms,
            self.nonce,
            &self.payload,
        )
    }

    /// Checks the origin's signature over `id` (the message's id on its
    /// topic).
    pub fn verify(&self, id: &MessageId) -> Result<(), IdentityError> {
        self.origin
            .verify_in_domain(SIGNATURE_DOMAIN, id.as_bytes(), &self.signature)
    }
}

/// One gossip message within a topic, as the core sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// HyParView: let the sender into the topic's overlay.
    Join {
        /// Where the joiner (the sender) can be dialed.
        addresses: Vec<PeerAddress>,
    },
    /// HyParView: a random walk announcing a joiner.
    ForwardJoin {
        /// The joiner.
        joiner: Contact,
        /// Steps left.
        ttl: u32,
    },
    /// HyParView: take the sender into your active view.
    Neighbor {
        /// Must be accepted (the sender already took us in, or has no
        /// other active peer).
        high_priority: bool,
        /// Where the sender can be dialed.
        addresses: Vec<PeerAddress>,
    },
    /// HyParView: the answer to a low-priority `Neighbor`.
    NeighborReply {
        /// Whether the sender took us into its active view.
        accepted: bool,
    },
    /// HyParView: the sender dropped us from its active view.
    Disconnect {
        /// The sender stays reachable (keep it as a passive peer).
        alive: bool,
    },
    /// HyParView: a random walk exchanging samples of the views.
    Shuffle {
        /// Who started the walk (and gets the reply).
        origin: Contact,
        /// Steps left.
        ttl: u32,
        /// The origin's sample.
        contacts: Vec<Contact>,
    },
    /// HyParView: the end of a shuffle's walk answers its origin.
    ShuffleReply {
        /// A sample of the answerer's passive view.
        contacts: Vec<Contact>,
    },
    /// Plumtree: a payload.
    Gossip {
        /// The signed message.
        message: SignedMessage,
        /// Links travelled on arrival (1 from the origin).
        hops: u32,
    },
    /// Plumtree: the sender has these messages (lazy push).
    IHave {
        /// Each message's id and the hop count at which the sender got it.
        entries: Vec<(MessageId, u32)>,
    },
    /// Plumtree: make the link eager, and send message `id` if set.
    Graft {
        /// The message wanted, if any.
        id: Option<MessageId>,
        /// The hop count of the announcement that prompted the graft.
        hops: u32,
    },
    /// Plumtree: make the link lazy.
    Prune,
    /// Size estimation: the sender's sketch of the topic's members.
    SizeSketch {
        /// The epoch the values belong to.
        epoch: u64,
        /// The k smallest member values the sender knows, ascending.
        values: Vec<u64>,
    },
}

impl Message {
    /// Whether the message carries a payload (counts towards RMR).
    pub fn is_payload(&self) -> bool {
        matches!(self, Message::Gossip { .. })
    }

    /// A short name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Join { .. } => "join",
            Message::ForwardJoin { .. } => "forward_join",
            Message::Neighbor { .. } => "neighbor",
            Message::NeighborReply { .. } => "neighbor_reply",
            Message::Disconnect { .. } => "disconnect",
            Message::Shuffle { .. } => "shuffle",
            Message::ShuffleReply { .. } => "shuffle_reply",
            Message::Gossip { .. } => "gossip",
            Message::IHave { .. } => "ihave",
            Message::Graft { .. } => "graft",
            Message::Prune => "prune",
            Message::SizeSketch { .. } => "size_sketch",
        }
    }
}

/// A [`Message`] and the topic it belongs to: what travels on the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMessage {
    /// The topic.
    pub topic: TopicId,
    /// The message.
    pub message: Message,
}

/// Why a wire message was refused. Nothing from it is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A payload larger than the receiver's `max_payload_size`.
    #[error("payload of {size} bytes exceeds max_payload_size {max}")]
    TooLarge {
        /// The payload's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A field out of its bounds or of the wrong length.
    #[error("malformed gossip message: {0}")]
    Malformed(String),
}

impl WireError {
    /// The [`PeerError`](p2p_core::PeerError) a frame refused on `channel`
    /// charges its sender with.
    pub fn charge(self, channel: &'static str) -> p2p_core::PeerError {
        match self {
            WireError::TooLarge { size, max } => {
                p2p_core::PeerError::MessageTooLarge { channel, size, max }
            }
            WireError::Malformed(detail) => {
                p2p_core::PeerError::MalformedMessage { channel, detail }
            }
        }
    }
}

fn malformed(what: impl Into<String>) -> WireError {
    WireError::Malformed(what.into())
}

fn array<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N], WireError> {
    bytes
        .try_into()
        .map_err(|_| malformed(format!("{what} must be {N} bytes, got {}", bytes.len())))
}

fn peer_id(bytes: &[u8], what: &str) -> Result<PeerId, WireError> {
    PeerId::from_bytes(bytes).map_err(|e| malformed(format!("{what}: {e}")))
}

/// Parses addresses; more than [`MAX_CONTACT_ADDRESSES`] is malformed, an
/// address that does not parse or names another peer than `owner` (when
/// known) is skipped: it could only make a dial fail.
fn addresses(texts: Vec<String>, owner: Option<&PeerId>) -> Result<Vec<PeerAddress>, WireError> {
    if texts.len() > MAX_CONTACT_ADDRESSES {
        return Err(malformed(format!(
            "{} addresses, at most {MAX_CONTACT_ADDRESSES}",
            texts.len()
        )));
    }
    Ok(texts
        .iter()
        .filter_map(|t| t.parse::<PeerAddress>().ok())
        .filter(|a| owner.is_none_or(|o| a.peer == *o))
        .collect())
}

fn contact(wire: Option<proto::Contact>, what: &str) -> Result<Contact, WireError> {
    let wire = wire.ok_or_else(|| malformed(format!("{what} missing")))?;
    let peer = peer_id(&wire.peer, what)?;
    let addresses = addresses(wire.addresses, Some(&peer))?;
    Ok(Contact { peer, addresses })
}

fn contacts(wire: Vec<proto::Contact>) -> Result<Vec<Contact>, WireError> {
    if wire.len() > MAX_CONTACTS {
        return Err(malformed(format!(
            "{} contacts, at most {MAX_CONTACTS}",
            wire.len()
        )));
    }
    wire.into_iter()
        .map(|c| contact(Some(c), "contact"))
        .collect()
}

fn ttl(ttl: u32) -> Result<u32, WireError> {
    if ttl > MAX_TTL {
        return Err(malformed(format!("ttl {ttl} exceeds {MAX_TTL}")));
    }
    Ok(ttl)
}

fn hops(hops: u32) -> Result<u32, WireError> {
    if hops > MAX_HOPS {
        return Err(malformed(format!("hop count {hops} exceeds {MAX_HOPS}")));
    }
    Ok(hops)
}

fn contact_to_wire(contact: Contact) -> proto::Contact {
    proto::Contact {
        peer: Bytes::copy_from_slice(contact.peer.as_bytes()),
        addresses: addresses_to_wire(contact.addresses),
    }
}

fn addresses_to_wire(addresses: Vec<PeerAddress>) -> Vec<String> {
    addresses.iter().map(ToString::to_string).collect()
}

impl TopicMessage {
    /// The message in `wire`, checked against every bound of the protocol.
    /// A payload over `max_payload_size` is refused before anything else
    /// is looked at. `Ok(None)`: a kind this node does not know (a newer
    /// peer's), ignored rather than refused.
    pub fn from_wire(
        wire: proto::GossipMessage,
        max_payload_size: usize,
    ) -> Result<Option<Self>, WireError> {
        use proto::gossip_message::Kind;
        if let Some(Kind::Gossip(proto::Gossip {
            message: Some(m), ..
        })) = &wire.kind
            && m.payload.len() > max_payload_size
        {
            return Err(WireError::TooLarge {
                size: m.payload.len(),
                max: max_payload_size,
            });
        }
        let topic = TopicId(array(&wire.topic, "topic")?);
        let Some(kind) = wire.kind else {
            return Ok(None);
        };
        let message = match kind {
            Kind::Join(j) => Message::Join {
                addresses: addresses(j.addresses, None)?,
            },
            Kind::ForwardJoin(f) => Message::ForwardJoin {
                joiner: contact(f.joiner, "joiner")?,
                ttl: ttl(f.ttl)?,
            },
            Kind::Neighbor(n) => Message::Neighbor {
                high_priority: n.high_priority,
                addresses: addresses(n.addresses, None)?,
            },
            Kind::NeighborReply(r) => Message::NeighborReply {
                accepted: r.accepted,
            },
            Kind::Disconnect(d) => Message::Disconnect { alive: d.alive },
            Kind::Shuffle(s) => Message::Shuffle {
                origin: contact(s.origin, "origin")?,
                ttl: ttl(s.ttl)?,
                contacts: contacts(s.contacts)?,
            },
            Kind::ShuffleReply(r) => Message::ShuffleReply {
                contacts: contacts(r.contacts)?,
            },
            Kind::Gossip(g) => {
                let m = g
                    .message
                    .ok_or_else(|| malformed("gossip without message"))?;
                Message::Gossip {
                    message: SignedMessage {
                        origin: peer_id(&m.origin, "origin")?,
                        timestamp_ms: m.timestamp_ms,
                        nonce: m.nonce,
                        payload: m.payload,
                        signature: array(&m.signature, "signature")?,
                    },
                    hops: hops(g.hops)?,
                }
            }
            Kind::Ihave(i) => {
                if i.entries.len() > MAX_IHAVE_ENTRIES {
                    return Err(malformed(format!(
                        "{} ihave entries, at most {MAX_IHAVE_ENTRIES}",
                        i.entries.len()
                    )));
                }
                let entries = i
                    .entries
                    .into_iter()
                    .map(|e| Ok((MessageId(array(&e.id, "message id")?), hops(e.hops)?)))
                    .collect::<Result<_, WireError>>()?;
                Message::IHave { entries }
            }
            Kind::Graft(g) => Message::Graft {
                id: if g.id.is_empty() {
                    None
                } else {
                    Some(MessageId(array(&g.id, "message id")?))
                },
                hops: hops(g.hops)?,
            },
            Kind::Prune(_) => Message::Prune,
            Kind::SizeSketch(k) => {
                if k.values.len() > MAX_SKETCH_VALUES {
                    return Err(malformed(format!(
                        "{} sketch values, at most {MAX_SKETCH_VALUES}",
                        k.values.len()
                    )));
                }
                Message::SizeSketch {
                    epoch: k.epoch,
                    values: k.values,
                }
            }
        };
        Ok(Some(TopicMessage { topic, message }))
    }
}

impl From<TopicMessage> for proto::GossipMessage {
    fn from(m: TopicMessage) -> Self {
        use proto::gossip_message::Kind;
        let kind = match m.message {
            Message::Join { addresses } => Kind::Join(proto::Join {
                addresses: addresses_to_wire(addresses),
            }),
            Message::ForwardJoin { joiner, ttl } => Kind::ForwardJoin(proto::ForwardJoin {
                joiner: Some(contact_to_wire(joiner)),
                ttl,
            }),
            Message::Neighbor {
                high_priority,
                addresses,
            } => Kind::Neighbor(proto::Neighbor {
                high_priority,
                addresses: addresses_to_wire(addresses),
            }),
            Message::NeighborReply { accepted } => {
                Kind::NeighborReply(proto::NeighborReply { accepted })
            }
            Message::Disconnect { alive } => Kind::Disconnect(proto::Disconnect { alive }),
            Message::Shuffle {
                origin,
                ttl,
                contacts,
            } => Kind::Shuffle(proto::Shuffle {
                origin: Some(contact_to_wire(origin)),
                ttl,
                contacts: contacts.into_iter().map(contact_to_wire).collect(),
            }),
            Message::ShuffleReply { contacts } => Kind::ShuffleReply(proto::ShuffleReply {
                contacts: contacts.into_iter().map(contact_to_wire).collect(),
            }),
            Message::Gossip { message, hops } => Kind::Gossip(proto::Gossip {
                message: Some(proto::SignedMessage {
                    origin: Bytes::copy_from_slice(message.origin.as_bytes()),
                    timestamp_ms: message.timestamp_ms,
                    nonce: message.nonce,
                    payload: message.payload,
                    signature: Bytes::copy_from_slice(&message.signature),
                }),
                hops,
            }),
            Message::IHave { entries } => Kind::Ihave(proto::IHave {
                entries: entries
                    .into_iter()
                    .map(|(id, hops)| proto::IHaveEntry {
                        id: Bytes::copy_from_slice(id.as_bytes()),
                        hops,
                    })
                    .collect(),
            }),
            Message::Graft { id, hops } => Kind::Graft(proto::Graft {
                id: id.map_or_else(Bytes::new, |id| Bytes::copy_from_slice(id.as_bytes())),
                hops,
            }),
            Message::Prune => Kind::Prune(proto::Prune {}),
            Message::SizeSketch { epoch, values } => {
                Kind::SizeSketch(proto::SizeSketch { epoch, values })
            }
        };
        proto::GossipMessage {
            topic: Bytes::copy_from_slice(m.topic.as_bytes()),
            kind: Some(kind),
        }
    }
}

#[cfg(test)]
mod id_spec_tests {
    //! ADR 0009's identifiers, byte for byte: an implementer computes them
    //! from the text alone.

    use sha2::{Digest, Sha256};

    use super::*;

    fn h(domain: &str, parts: &[&[u8]]) -> [u8; 32] {
        let mut bytes = (domain.len() as u64).to_be_bytes().to_vec();
        bytes.extend_from_slice(domain.as_bytes());
        for part in parts {
            bytes.extend_from_slice(part);
        }
        Sha256::digest(&bytes).into()
    }

    #[test]
    fn topic_and_message_ids_and_the_signature_are_as_adr_0009_writes_them() {
        let topic = TopicId::from_name("chat");
        assert_eq!(
            *topic.as_bytes(),
            h("switchyard/gossip/v1/topic", &[b"chat"])
        );

        let keypair = Keypair::from_seed(7);
        let (timestamp_ms, nonce) = (1_800_000_000_123u64, 42u64);
        let message = SignedMessage::sign(
            &keypair,
            &topic,
            timestamp_ms,
            nonce,
            Bytes::from_static(b"hi"),
        );
        let id = h(
            "switchyard/gossip/v1/id",
            &[
                topic.as_bytes(),
                keypair.peer_id().as_bytes(),
                &timestamp_ms.to_be_bytes(),
                &nonce.to_be_bytes(),
                b"hi",
            ],
        );
        assert_eq!(*message.id(&topic).as_bytes(), id);

        let domain = "switchyard/gossip/v1/message";
        let mut signed = (domain.len() as u64).to_be_bytes().to_vec();
        signed.extend_from_slice(domain.as_bytes());
        signed.extend_from_slice(&id);
        assert_eq!(message.signature, keypair.sign(&signed));
    }
}
