//! Misbehaving peers, for testing every handler against the adversaries of
//! ARCHITECTURE.md: a [`RawPeer`] is a key of the attacker's choosing that
//! connects over the memory transport, passes the `Hello` exchange, and
//! then sends whatever frames it likes, on any channel, unasked — what a
//! connected peer that lies in every field can do. Reactor tests use it to
//! show that unsolicited or forged messages change nothing (see the rooms
//! takeover test in `reactor-gossip`).
//!
//! A raw peer can also listen ([`RawPeer::recv`]: it grants the node credit,
//! answers its pings and hands back each message on a channel) and so play
//! a hop that answers what it is asked with forgeries — the ring's forging
//! hop in `reactor-ring`'s attack tests; [`RawPeer::recv_frames`] hands back
//! raw frames. [`RawPeer::connect_from`] makes its connections come from an
//! address of the test's choosing, so a swarm of raw peers can share one
//! network (/24 or /48) and meet the per-network limits and bans.
//!
//! The adversaries of issue 14's review, each reusable by later reactors:
//!
//! | attack | mock |
//! |---|---|
//! | unsolicited or forged messages (room takeover, membership rewrites, forged ring answers) | [`RawPeer::connect`] + [`RawPeer::send`] |
//! | a hop that answers with forgeries, a replayer | [`RawPeer::recv`], [`RawPeer::recv_frames`], [`RawPeer::send_frames`] |
//! | a Sybil swarm from one network (fresh keys, one /24) | [`swarm`] |
//! | pre-admission exhaustion: connections that never say `Hello` | [`Silent`] |
//! | padding: a valid message carrying a large unknown Protobuf field | [`padded`] |
//!
//! Loopback attacks on a node process over TCP (an independent Noise
//! client) live in the node's `tests/` (`attacks.rs`, `memory.rs`).

use std::collections::BTreeSet;
use std::net::IpAddr;

use bytes::Bytes;
use p2p::router::PROTOCOL_VERSION;
use p2p::transport::{Connection, ConnectionError, Frame, Transport};
use p2p::{ChannelId, Keypair, PeerAddress, PeerId, proto};
use transport_memory::MemoryTransport;

use crate::Network;

/// A connected peer driven by hand.
pub struct RawPeer {
    /// The attacker's key.
    pub keypair: Keypair,
    conn: Connection,
    /// Frames that came behind the node's `Hello`.
    early: Vec<Frame>,
    _endpoint: MemoryTransport,
    /// The channels on which the node has been granted its window.
    credited: BTreeSet<u16>,
    /// Frames received and not yet handed out.
    inbox: std::collections::VecDeque<Frame>,
}

impl std::fmt::Debug for RawPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawPeer")
            .field("peer", &self.keypair.peer_id())
            .finish_non_exhaustive()
    }
}

impl RawPeer {
    /// Dials node `target` of `net` under the key derived from `seed`,
    /// announcing `channels` (with room for 64 messages each) and the
    /// default network id in its `Hello`, and waits for the node's `Hello`.
    pub async fn connect(
        net: &Network,
        target: usize,
        seed: u64,
        channels: &[u16],
    ) -> Result<Self, ConnectionError> {
        Self::connect_from(net, target, seed, channels, None).await
    }

    /// Like [`connect`](Self::connect), with connections that appear to
    /// come from `ip` (the node's `Router::peer_ip` reports it).
    pub async fn connect_from(
        net: &Network,
        target: usize,
        seed: u64,
        channels: &[u16],
        ip: Option<IpAddr>,
    ) -> Result<Self, ConnectionError> {
        let keypair = Keypair::from_seed(seed);
        let (endpoint, mut conn) = dial(net, target, &keypair, ip).await?;
        let hello = proto::NodeInfo {
            protocol_version: PROTOCOL_VERSION,
            network_id: p2p::RouterConfig::default().network_id,
            peer_id: keypair.peer_id().as_bytes().to_vec().into(),
            channels: channels
                .iter()
                .map(|id| proto::ChannelInfo {
                    id: u32::from(*id),
                    recv_window: RAW_PEER_WINDOW,
                    max_message_size: 0,
                    early_credit: p2p::router::EARLY_CREDIT,
                })
                .collect(),
            listen_addresses: vec![],
            software_version: "adversary/0".into(),
        };
        conn.sink
            .send(&mut vec![Frame::Hello(Box::new(hello))])
            .await?;
        let mut frames = Vec::new();
        conn.stream.recv(&mut frames).await?;
        let early = match frames.first() {
            Some(Frame::Hello(_)) => frames.split_off(1),
            _ => frames,
        };
        Ok(Self {
            keypair,
            conn,
            early,
            _endpoint: endpoint,
            credited: BTreeSet::new(),
            inbox: std::collections::VecDeque::new(),
        })
    }

    /// The attacker's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.keypair.peer_id()
    }

    /// Waits up to `wait` for frames from the node (its credit, pings,
    /// messages); returns what arrived, none if nothing did. (Frames
    /// [`recv`](Self::recv) read and did not hand out are not repeated.)
    pub async fn recv_frames(
        &mut self,
        wait: std::time::Duration,
    ) -> Result<Vec<Frame>, ConnectionError> {
        let mut frames = std::mem::take(&mut self.early);
        if !frames.is_empty() {
            return Ok(frames);
        }
        match tokio::time::timeout(wait, self.conn.stream.recv(&mut frames)).await {
            Ok(result) => result.map(|()| frames),
            Err(_) => Ok(frames),
        }
    }

    /// Sends `frames` as they are.
    pub async fn send_frames(&mut self, mut frames: Vec<Frame>) -> Result<(), ConnectionError> {
        self.conn.sink.send(&mut frames).await
    }

    /// Sends `message` on `channel`, unasked and without waiting for
    /// credit.
    pub async fn send(
        &mut self,
        channel: u16,
        message: &impl prost::Message,
    ) -> Result<(), ConnectionError> {
        self.send_bytes(channel, Bytes::from(message.encode_to_vec()))
            .await
    }

    /// The next message the node sends on `channel`, decoded. The first
    /// call grants the node its window on `channel` (the rest of it: the
    /// node holds the protocol's early credit from the start, and may
    /// have spent it already) and every message taken
    /// grants one more; pings are answered, frames on other channels are
    /// dropped (their credit returned). Fails when the connection ends or
    /// the message does not decode.
    pub async fn recv<M: prost::Message + Default>(
        &mut self,
        channel: u16,
    ) -> Result<M, ConnectionError> {
        if self.credited.insert(channel) {
            // The node holds the protocol's early credit from the start:
            // the rest of the window.
            let early = p2p::router::EARLY_CREDIT.min(RAW_PEER_WINDOW);
            self.grant(channel, RAW_PEER_WINDOW - early).await?;
        }
        let early = std::mem::take(&mut self.early);
        self.inbox.extend(early);
        loop {
            while let Some(frame) = self.inbox.pop_front() {
                match frame {
                    Frame::Data {
                        channel: c,
                        payload,
                    } => {
                        self.grant(c.0, 1).await?;
                        if c.0 == channel {
                            return M::decode(payload).map_err(|e| {
                                ConnectionError::Protocol(format!("undecodable message: {e}"))
                            });
                        }
                    }
                    Frame::Ping(nonce) => {
                        self.conn.sink.send(&mut vec![Frame::Pong(nonce)]).await?;
                    }
                    Frame::Goodbye(g) => {
                        return Err(ConnectionError::Goodbye {
                            reason: g.reason(),
                            detail: g.detail,
                        });
                    }
                    Frame::Hello(_) | Frame::Credit { .. } | Frame::Pong(_) => {}
                }
            }
            let mut frames = Vec::new();
            self.conn.stream.recv(&mut frames).await?;
            self.inbox.extend(frames);
        }
    }

    /// Grants the node `messages` more on `channel`, if it was granted
    /// its window there (a credit on a channel never granted would be a
    /// violation the node punishes).
    async fn grant(&mut self, channel: u16, messages: u32) -> Result<(), ConnectionError> {
        if !self.credited.contains(&channel) {
            return Ok(());
        }
        self.conn
            .sink
            .send(&mut vec![Frame::Credit {
                channel: ChannelId(channel),
                messages,
            }])
            .await
    }
}

/// The receive window a raw peer announces on each channel, and grants.
const RAW_PEER_WINDOW: u32 = 64;

/// A memory-transport endpoint under `keypair`, its connections from `ip`
/// if given, and its connection to node `target` (the transport's
/// handshake done, nothing sent).
async fn dial(
    net: &Network,
    target: usize,
    keypair: &Keypair,
    ip: Option<IpAddr>,
) -> Result<(MemoryTransport, Connection), ConnectionError> {
    let endpoint = net
        .hub()
        .transport_with_ip(keypair.peer_id(), ip)
        .map_err(|e| ConnectionError::Reset(e.to_string()))?;
    let conn = endpoint
        .dial(&PeerAddress::memory(net.peer_id(target)))
        .await
        .map_err(|e| ConnectionError::Reset(e.to_string()))?;
    Ok((endpoint, conn))
}

/// `count` raw peers from one network: keys from `first_seed` on, each
/// connection from its own address in `network`'s /24 (`a.b.c.1`,
/// `a.b.c.2`, …), all announcing `channels` to node `target`. Peers the
/// node refuses are left out, so the swarm's length shows how many got in.
pub async fn swarm(
    net: &Network,
    target: usize,
    first_seed: u64,
    count: u8,
    network: std::net::Ipv4Addr,
    channels: &[u16],
) -> Vec<RawPeer> {
    let [a, b, c, _] = network.octets();
    let mut peers = Vec::new();
    for i in 0..count {
        let ip = IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, i.wrapping_add(1)));
        if let Ok(peer) =
            RawPeer::connect_from(net, target, first_seed + u64::from(i), channels, Some(ip)).await
        {
            peers.push(peer);
        }
    }
    peers
}

/// A connection that finishes the transport's handshake and then never
/// sends its `Hello`: what holds a node's pre-admission slots. Dropped,
/// it closes.
pub struct Silent {
    _conn: Connection,
    _endpoint: MemoryTransport,
}

impl std::fmt::Debug for Silent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Silent").finish_non_exhaustive()
    }
}

impl Silent {
    /// Dials node `target` under the key from `seed`, from `ip` if given.
    pub async fn connect(
        net: &Network,
        target: usize,
        seed: u64,
        ip: Option<IpAddr>,
    ) -> Result<Self, ConnectionError> {
        let (endpoint, conn) = dial(net, target, &Keypair::from_seed(seed), ip).await?;
        Ok(Self {
            _conn: conn,
            _endpoint: endpoint,
        })
    }
}

/// `message` encoded with an unknown length-delimited field `field` of
/// `bytes` zero bytes appended: it decodes as `message` (Protobuf skips
/// unknown fields), but its frame is `bytes` larger — the padding that
/// tests whether a node keeps only what it counts.
pub fn padded(message: &impl prost::Message, field: u32, bytes: usize) -> Bytes {
    let mut encoded = message.encode_to_vec();
    prost::encoding::encode_key(
        field,
        prost::encoding::WireType::LengthDelimited,
        &mut encoded,
    );
    prost::encoding::encode_varint(bytes as u64, &mut encoded);
    encoded.resize(encoded.len() + bytes, 0);
    Bytes::from(encoded)
}

impl RawPeer {
    /// Sends `payload` (already encoded, e.g. [`padded`]) on `channel`,
    /// unasked and without waiting for credit.
    pub async fn send_bytes(
        &mut self,
        channel: u16,
        payload: Bytes,
    ) -> Result<(), ConnectionError> {
        self.conn
            .sink
            .send(&mut vec![Frame::Data {
                channel: ChannelId(channel),
                payload,
            }])
            .await
    }
}
