//! A hostile peer against a node running gossip, over the memory transport
//! on the paused clock: it forges signatures, sends oversized and
//! malformed messages, replays. Node 0 runs gossip (subscribed to a
//! topic); node 1 speaks the gossip channel by hand.

mod common;

use std::time::Duration;

use bytes::Bytes;
use p2p::{ChannelReceiver, ChannelSender, Keypair, PeerId};
use reactor_gossip::proto::GossipMessage as WireMessage;
use reactor_gossip::{
    Gossip, GossipConfig, GossipError, GossipHandle, GossipStats, Message, PublishError,
    SignedMessage, Subscription, TopicEvent, TopicId, TopicMessage,
};
use testkit::Network;

const SECOND: Duration = Duration::from_secs(1);
const SEED: u64 = 3;
const MAX_PAYLOAD: usize = 1024;

struct Setup {
    net: Network,
    gossip: GossipHandle,
    subscription: Subscription,
    tx: ChannelSender<WireMessage>,
    _rx: ChannelReceiver<WireMessage>,
    n0: PeerId,
    n1: PeerId,
    topic: TopicId,
}

fn config() -> GossipConfig {
    GossipConfig {
        max_payload_size: MAX_PAYLOAD,
        ..GossipConfig::default()
    }
}

async fn setup() -> Setup {
    let mut net = Network::builder()
        .seed(SEED)
        .nodes(2)
        .links(vec![(1, 0)])
        .build()
        .expect("build");
    let keypair = testkit::node_keypair(SEED, 0);
    assert_eq!(keypair.peer_id(), net.peer_id(0));
    let gossip = net
        .reactor(0, Gossip::new(keypair, config()).expect("config"))
        .expect("open gossip");
    let (tx, rx) = net
        .open_channel::<WireMessage>(1, Gossip::channel_descriptor(&config()))
        .expect("raw channel");
    net.start().expect("start");
    net.wait_connected(0, 1, 5 * SECOND)
        .await
        .expect("connected");
    let topic = TopicId::from_name("hostile");
    let subscription = gossip
        .subscribe(topic, Vec::<PeerId>::new())
        .await
        .expect("subscribe");
    let (n0, n1) = (net.peer_id(0), net.peer_id(1));
    // Node 1 joins the topic by hand: payloads are taken from neighbours
    // only.
    let join: WireMessage = TopicMessage {
        topic,
        message: Message::Join { addresses: vec![] },
    }
    .into();
    tx.send(n0, join).await.expect("join");
    tokio::time::sleep(100 * Duration::from_millis(1)).await;
    assert_eq!(gossip.stats().neighbor_up, 1, "node 1 became a neighbour");
    Setup {
        net,
        gossip,
        subscription,
        tx,
        _rx: rx,
        n0,
        n1,
        topic,
    }
}

impl Setup {
    async fn send(&self, message: WireMessage) {
        self.tx.send(self.n0, message).await.expect("sent");
        tokio::time::sleep(100 * Duration::from_millis(1)).await;
    }

    fn gossip(&self, message: SignedMessage) -> WireMessage {
        TopicMessage {
            topic: self.topic,
            // Relayed (only the origin sends at hop 1).
            message: Message::Gossip { message, hops: 2 },
        }
        .into()
    }

    fn received(&mut self) -> Vec<reactor_gossip::GossipMessage> {
        let mut got = Vec::new();
        while let Some(event) = self.subscription.try_recv() {
            if let TopicEvent::Received(m) = event {
                got.push(m);
            }
        }
        got
    }

    fn stats(&self) -> GossipStats {
        self.gossip.stats()
    }

    async fn score(&self) -> i64 {
        self.net
            .router(0)
            .score(self.n1)
            .await
            .expect("router")
            .unwrap_or(0)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A message whose signature does not verify is never delivered, counted
/// as forged and costs the sender score; the genuine message still gets
/// through, once, and a replay of it is a duplicate. A second forgery
/// takes the forger to the router's disconnect threshold.
#[tokio::test(start_paused = true)]
async fn forged_signatures_are_rejected_counted_and_reported() {
    let mut s = setup().await;
    let author = Keypair::from_seed(99);
    let genuine = SignedMessage::sign(
        &author,
        &s.topic,
        now_ms(),
        1,
        Bytes::from_static(b"genuine"),
    );
    let mut forged = genuine.clone();
    forged.payload = Bytes::from_static(b"tampered");
    s.send(s.gossip(forged)).await;
    assert!(s.received().is_empty());
    assert_eq!(s.stats().forged_rejected, 1);
    assert_eq!(s.score().await, -reactor_gossip::state::FORGED_PENALTY);

    s.send(s.gossip(genuine.clone())).await;
    let got = s.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].origin, author.peer_id());
    assert_eq!(got[0].payload, Bytes::from_static(b"genuine"));
    s.send(s.gossip(genuine.clone())).await;
    assert!(s.received().is_empty(), "a replay is a duplicate");
    assert_eq!(s.stats().duplicates, 1);
    assert_eq!(s.stats().delivered, 1);

    let mut impostor =
        SignedMessage::sign(&author, &s.topic, now_ms(), 2, Bytes::from_static(b"x"));
    impostor.signature = genuine.signature;
    s.send(s.gossip(impostor)).await;
    assert_eq!(s.stats().forged_rejected, 2);
    assert!(s.received().is_empty());
    let (net, n1) = (&s.net, s.n1);
    net.wait_until("the forger to be disconnected", 5 * SECOND, |net| {
        !net.router(0).is_connected(n1)
    })
    .await
    .expect("disconnected at the threshold");
    s.net.shutdown().await;
}

/// Payloads over `max_payload_size` are refused: a publication with an
/// error, a received message before anything else is done with it (and
/// the sender loses score).
#[tokio::test(start_paused = true)]
async fn oversized_messages_are_refused() {
    let mut s = setup().await;
    let too_big = Bytes::from(vec![0u8; MAX_PAYLOAD + 1]);
    assert_eq!(
        s.gossip.publish(s.topic, too_big.clone()).await,
        Err(GossipError::Publish(PublishError::TooLarge {
            size: MAX_PAYLOAD + 1,
            max: MAX_PAYLOAD
        }))
    );
    let author = Keypair::from_seed(98);
    let message = SignedMessage::sign(&author, &s.topic, now_ms(), 1, too_big);
    s.send(s.gossip(message)).await;
    assert!(s.received().is_empty());
    let stats = s.stats();
    assert_eq!(stats.oversized_refused, 2, "{stats:?}");
    assert_eq!(
        stats.forged_rejected, 0,
        "refused before the signature was checked"
    );
    assert!(s.score().await < 0);
    s.net.shutdown().await;
}

/// Messages that break the protocol's bounds are refused and counted; the
/// node goes on serving.
#[tokio::test(start_paused = true)]
async fn malformed_messages_are_refused() {
    let mut s = setup().await;
    let mut short_topic: WireMessage = TopicMessage {
        topic: s.topic,
        message: Message::Prune,
    }
    .into();
    short_topic.topic = Bytes::from_static(b"short");
    s.send(short_topic).await;
    let too_many = TopicMessage {
        topic: s.topic,
        message: Message::ShuffleReply {
            contacts: vec![reactor_gossip::Contact::bare(s.n1); 17],
        },
    };
    s.send(too_many.into()).await;
    assert_eq!(s.stats().malformed_refused, 2);
    // Still serving: a genuine message is delivered.
    let author = Keypair::from_seed(97);
    let ok = SignedMessage::sign(&author, &s.topic, now_ms(), 5, Bytes::from_static(b"ok"));
    s.send(s.gossip(ok)).await;
    assert_eq!(s.received().len(), 1);
    s.net.shutdown().await;
}
