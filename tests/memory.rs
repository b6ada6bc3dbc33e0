//! Attacks on a running `switchyard` node's memory by an admitted peer
//! (issue 14, item 4), reproduced as the security review ran them: an
//! independent Noise client on loopback completes the `Hello` exchange,
//! joins a gossip topic the node is in, and speaks the gossip channel
//! within the credit the node grants.
//!
//! - Gossip messages with 100-byte payloads, each padded with a 60 kB
//!   unknown Protobuf field, signed by their origins: the node keeps each
//!   for `payload_retention`, and must keep only what it counts against
//!   `payload_cache_bytes`, not the frame the payload arrived in.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::noise::NoiseClient;
use common::{Proc, config, metric, rss, wait_until};
use p2p::transport::Frame;
use p2p::{ChannelId, Keypair, proto};
use prost::Message as _;
use reactor_gossip::{Message, SignedMessage, TopicId, TopicMessage};

const NETWORK: &str = "e2e";
const TOPIC: &str = "padded";
/// Messages sent, from `ORIGINS` origins: 160 each, within an origin's
/// burst (200), so the per-origin rate limit lets them all through.
const MESSAGES: u64 = 8_000;
const ORIGINS: u64 = 50;
const PAYLOAD: usize = 100;
/// The unknown field each message carries: a node that keeps the frame
/// alive keeps this too.
const PADDING: usize = 60_000;
/// Gossip's default `payload_cache_bytes`.
const PAYLOAD_CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// Data frames per write.
const BATCH: usize = 32;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `message` on the gossip channel, encoded, with `padding` bytes of an
/// unknown field (number 1000) appended: a receiver that follows
/// Protobuf's rules skips it.
fn gossip_frame(topic: TopicId, message: Message, padding: usize) -> Frame {
    let mut bytes =
        reactor_gossip::proto::GossipMessage::from(TopicMessage { topic, message }).encode_to_vec();
    if padding > 0 {
        prost::encoding::encode_key(1000, prost::encoding::WireType::LengthDelimited, &mut bytes);
        prost::encoding::encode_varint(padding as u64, &mut bytes);
        bytes.resize(bytes.len() + padding, 0x5a);
    }
    Frame::Data {
        channel: ChannelId(reactor_gossip::CHANNEL_ID),
        payload: Bytes::from(bytes),
    }
}

/// An admitted peer that serves the gossip channel and spends only the
/// credit the node grants.
struct GossipPeer {
    client: NoiseClient,
    credit: u64,
}

impl GossipPeer {
    async fn connect(target: SocketAddr, seed: u64) -> Self {
        let mut client = NoiseClient::connect(Ipv4Addr::LOCALHOST, target, NETWORK, seed)
            .await
            .expect("Noise handshake");
        let me = Keypair::from_seed(seed);
        let hello = proto::NodeInfo {
            protocol_version: p2p::router::PROTOCOL_VERSION,
            network_id: NETWORK.into(),
            peer_id: me.peer_id().as_bytes().to_vec().into(),
            channels: vec![proto::ChannelInfo {
                id: u32::from(reactor_gossip::CHANNEL_ID),
                recv_window: 128,
                max_message_size: 1 << 20,
                early_credit: p2p::router::EARLY_CREDIT,
            }],
            listen_addresses: Vec::new(),
            software_version: "padding-attacker".into(),
        };
        client
            .send_frames(&[Frame::Hello(Box::new(hello))])
            .await
            .expect("send hello");
        match client.recv_frame().await.expect("the node's hello") {
            Frame::Hello(_) => {}
            other => panic!("expected the node's hello, got {other:?}"),
        }
        Self { client, credit: 0 }
    }

    /// Reads frames until the node grants gossip credit; answers pings.
    async fn wait_for_credit(&mut self) {
        while self.credit == 0 {
            match self
                .client
                .recv_frame()
                .await
                .expect("a frame from the node")
            {
                Frame::Credit { channel, messages }
                    if channel == ChannelId(reactor_gossip::CHANNEL_ID) =>
                {
                    self.credit += u64::from(messages);
                }
                Frame::Ping(nonce) => self
                    .client
                    .send_frames(&[Frame::Pong(nonce)])
                    .await
                    .expect("pong"),
                Frame::Goodbye(g) => panic!("the node said goodbye: {g:?}"),
                _ => {}
            }
        }
    }

    /// Sends `frames` as fast as the node's credit allows.
    async fn send(&mut self, frames: impl IntoIterator<Item = Frame>) {
        let mut frames = frames.into_iter().peekable();
        while frames.peek().is_some() {
            self.wait_for_credit().await;
            let n = self.credit.min(BATCH as u64);
            let batch: Vec<Frame> = frames.by_ref().take(n as usize).collect();
            self.credit -= batch.len() as u64;
            self.client.send_frames(&batch).await.expect("send data");
        }
    }
}

#[test]
fn padded_gossip_messages_do_not_inflate_the_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Proc::start(&config(
        &dir.path().join("victim"),
        &[],
        // Without the per-neighbour push budget (a rate limit, tested in
        // the gossip crate): every message must reach the cache.
        &format!("\n[reactors.gossip]\ntopics = [{TOPIC:?}]\nneighbor_rate = 0\n"),
    ));
    let target: SocketAddr = node
        .tcp
        .rsplit('@')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a tcp://peer@ip:port address: {}", node.tcp));
    let topic = TopicId::from_name(TOPIC);
    let before = rss(&node);
    let runtime = runtime();
    let attacker = runtime.block_on(async {
        let mut attacker = GossipPeer::connect(target, 40_000).await;
        // Into the topic's overlay first: the node takes the joiner into
        // its active view, so what follows comes from a neighbour.
        attacker
            .send([gossip_frame(
                topic,
                Message::Join {
                    addresses: Vec::new(),
                },
                0,
            )])
            .await;
        let origins: Vec<Keypair> = (0..ORIGINS)
            .map(|i| Keypair::from_seed(50_000 + i))
            .collect();
        let now = unix_ms();
        let frames = (0..MESSAGES).map(|i| {
            let origin = &origins[(i % ORIGINS) as usize];
            let mut payload = vec![0u8; PAYLOAD];
            payload[..8].copy_from_slice(&i.to_be_bytes());
            let message = SignedMessage::sign(origin, &topic, now, i, Bytes::from(payload));
            // Relayed (hop 1 is the origin's own).
            gossip_frame(topic, Message::Gossip { message, hops: 2 }, PADDING)
        });
        attacker.send(frames).await;
        attacker
    });
    // Every message is delivered, so it sits in the payload cache for its
    // 30 s retention: measure now, while the attacker stays connected.
    wait_until("the padded messages to be delivered", || {
        metric(
            &node.get_text("/metrics"),
            "switchyard_gossip_delivered_total",
        ) >= MESSAGES
    });
    let during = rss(&node);
    drop(attacker);
    assert!(
        during <= before + 2 * PAYLOAD_CACHE_BYTES,
        "{MESSAGES} padded messages grew the node from {} MiB to {} MiB: more than twice \
         payload_cache_bytes ({} MiB)",
        before >> 20,
        during >> 20,
        PAYLOAD_CACHE_BYTES >> 20,
    );
}
