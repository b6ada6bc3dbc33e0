//! Fifty routers over the memory transport, on tokio's paused clock, run
//! the gossip reactor: every subscriber gets every message exactly once at
//! the application. Every duration below is simulated.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use p2p::{PeerId, RouterConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use reactor_gossip::{
    Gossip, GossipConfig, GossipHandle, MessageId, Subscription, TopicEvent, TopicId,
};
use testkit::Network;

const NODES: usize = 50;
const SECOND: Duration = Duration::from_secs(1);

/// A ring (so the graph is connected) and two random chords per node.
fn links(seed: u64) -> Vec<(usize, usize)> {
    common::ring_with_chords(NODES, 2, seed ^ 0x11a5)
}

/// Room for the links and for the connections gossip asks for.
fn router_config(_: usize, config: &mut RouterConfig) {
    // The default 10 ordinary outbound slots: gossip's own dials are
    // requests (`Router::connect`), made past them.
    config.peer_manager.max_outbound = 10;
    config.peer_manager.max_inbound = 40;
}

struct Node {
    handle: GossipHandle,
    subscription: Subscription,
    /// Messages received: id → (origin, payload, count).
    received: BTreeMap<MessageId, (PeerId, Vec<u8>, usize)>,
    neighbours: BTreeSet<PeerId>,
}

impl Node {
    fn drain(&mut self) {
        while let Some(event) = self.subscription.try_recv() {
            match event {
                TopicEvent::Received(m) => {
                    let entry =
                        self.received
                            .entry(m.id)
                            .or_insert((m.origin, m.payload.to_vec(), 0));
                    entry.2 += 1;
                }
                TopicEvent::NeighborUp(p) => {
                    self.neighbours.insert(p);
                }
                TopicEvent::NeighborDown(p) => {
                    self.neighbours.remove(&p);
                }
                TopicEvent::Lagged(n) => panic!("a subscription lagged by {n}"),
            }
        }
    }
}

async fn drain_for(nodes: &mut [Node], time: Duration) {
    let end = tokio::time::Instant::now() + time;
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(10 * Duration::from_millis(10)).await;
        for node in nodes.iter_mut() {
            node.drain();
        }
    }
}

/// Fifty nodes on a sparse random graph subscribe to one topic through
/// their connected peers; ten messages from random nodes reach every other
/// subscriber exactly once, with the right origin and payload, and nothing
/// is refused along the way.
#[tokio::test(start_paused = true)]
async fn fifty_routers_every_subscriber_gets_every_message_exactly_once() {
    for seed in common::seeds(&[7, 8]) {
        fifty_routers(seed).await;
    }
}

async fn fifty_routers(seed: u64) {
    let mut net = Network::builder()
        .seed(seed)
        .nodes(NODES)
        .links(links(seed))
        .configure(router_config)
        .build()
        .expect("build");
    let handles = net
        .reactor_on_all(|i| {
            Gossip::new(testkit::node_keypair(seed, i), GossipConfig::default()).expect("config")
        })
        .expect("open gossip");
    for i in 0..NODES {
        assert_eq!(testkit::node_keypair(seed, i).peer_id(), net.peer_id(i));
    }
    net.start().expect("start");
    net.wait_until("every link to come up", 30 * SECOND, |net| {
        (0..NODES).all(|i| !net.router(i).connected_peers().is_empty())
    })
    .await
    .expect("links");

    let topic = TopicId::from_name("fifty");
    let mut nodes = Vec::new();
    for handle in handles {
        let subscription = handle
            .subscribe(topic, Vec::<PeerId>::new())
            .await
            .expect("subscribe");
        nodes.push(Node {
            handle,
            subscription,
            received: BTreeMap::new(),
            neighbours: BTreeSet::new(),
        });
    }
    // Joins that reached a peer not yet subscribed are retried every 5 s.
    let mut waited = Duration::ZERO;
    while nodes.iter().any(|n| n.neighbours.is_empty()) {
        assert!(
            waited < 120 * SECOND,
            "nodes without a neighbour after {waited:?}"
        );
        drain_for(&mut nodes, SECOND).await;
        waited += SECOND;
    }
    drain_for(&mut nodes, 30 * SECOND).await;

    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let mut sent = Vec::new();
    for k in 0..10 {
        let from = rng.random_range(0..NODES);
        let payload = format!("message {k} from node {from}").into_bytes();
        let id = nodes[from]
            .handle
            .publish(topic, payload.clone())
            .await
            .expect("publish");
        sent.push((id, from, payload));
        drain_for(&mut nodes, 200 * Duration::from_millis(1)).await;
    }
    drain_for(&mut nodes, 10 * SECOND).await;

    if std::env::var("GOSSIP_DEBUG").is_ok() {
        for (i, node) in nodes.iter().enumerate() {
            let ns: Vec<usize> = node
                .neighbours
                .iter()
                .filter_map(|p| net.index_of(*p))
                .collect();
            eprintln!(
                "node {i}: neighbours {ns:?} received {} stats {:?}",
                node.received.len(),
                node.handle.stats()
            );
        }
    }
    for (id, from, payload) in &sent {
        for (i, node) in nodes.iter().enumerate() {
            if i == *from {
                assert!(
                    !node.received.contains_key(id),
                    "node {i} got its own message"
                );
                continue;
            }
            let Some((origin, got, count)) = node.received.get(id) else {
                panic!("seed {seed}: node {i} missed {id:?} from node {from}");
            };
            assert_eq!(*count, 1, "node {i} got {id:?} {count} times");
            assert_eq!(*origin, net.peer_id(*from));
            assert_eq!(got, payload);
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        let s = node.handle.stats();
        assert_eq!(
            s.forged_rejected + s.malformed_refused + s.oversized_refused,
            0,
            "node {i}: {s:?}"
        );
        assert_eq!(s.app_events_dropped, 0, "node {i}: {s:?}");
        assert_eq!(
            node.received.len(),
            sent.iter().filter(|(_, f, _)| *f != i).count()
        );
    }
    let payloads: u64 = nodes.iter().map(|n| n.handle.stats().payload_sent).sum();
    let duplicates: u64 = nodes.iter().map(|n| n.handle.stats().duplicates).sum();
    eprintln!(
        "{} messages to {} receivers each: {payloads} payload messages sent, {duplicates} duplicates",
        sent.len(),
        NODES - 1
    );
    net.shutdown().await;
}
