//! Misbehaving peers, for testing every handler against the adversaries of
//! ARCHITECTURE.md: a [`RawPeer`] is a key of the attacker's choosing that
//! connects over the memory transport, passes the `Hello` exchange, and
//! then sends whatever frames it likes, on any channel, unasked — what a
//! connected peer that lies in every field can do. Reactor tests use it to
//! show that unsolicited or forged messages change nothing (see the rooms
//! takeover test in `reactor-gossip`). [`RawPeer::connect_from`] makes its
//! connection appear to come from an IP of the attacker's choosing, so a
//! Sybil swarm of one network (fresh keys from one /24) can be played out
//! against per-network limits and bans.

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

    /// [`connect`](Self::connect), from `ip` as the node sees it (the
    /// memory transport reports it as the connection's remote IP).
    pub async fn connect_from(
        net: &Network,
        target: usize,
        seed: u64,
        channels: &[u16],
        ip: Option<std::net::IpAddr>,
    ) -> Result<Self, ConnectionError> {
        let keypair = Keypair::from_seed(seed);
        let endpoint = net
            .hub()
            .transport_with_ip(keypair.peer_id(), ip)
            .map_err(|e| ConnectionError::Reset(e.to_string()))?;
        let mut conn = endpoint
            .dial(&PeerAddress::memory(net.peer_id(target)))
            .await
            .map_err(|e| ConnectionError::Reset(e.to_string()))?;
        let hello = proto::NodeInfo {
            protocol_version: PROTOCOL_VERSION,
            network_id: p2p::RouterConfig::default().network_id,
            peer_id: keypair.peer_id().as_bytes().to_vec().into(),
            channels: channels
                .iter()
                .map(|id| proto::ChannelInfo {
                    id: u32::from(*id),
                    recv_window: 64,
                    max_message_size: 0,
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
        })
    }

    /// The attacker's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.keypair.peer_id()
    }

    /// Waits up to `wait` for frames from the node (its credit, pings,
    /// messages); returns what arrived, none if nothing did.
    pub async fn recv(&mut self, wait: std::time::Duration) -> Result<Vec<Frame>, ConnectionError> {
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
        self.conn
            .sink
            .send(&mut vec![Frame::Data {
                channel: ChannelId(channel),
                payload: Bytes::from(message.encode_to_vec()),
            }])
            .await
    }
}
