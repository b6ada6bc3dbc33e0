//! The membership attack of issue 14 (item 2), over the memory transport
//! on tokio's paused clock: an attacker connected to one member of a
//! 20-node topic names six Sybils a second — in `ForwardJoin` walks that
//! end at the victim, in walks that would leave them in its passive view,
//! in `Shuffle` samples and unasked `ShuffleReply`s — and the Sybils
//! (connected, so the victim need not dial them) drop every payload.
//! Before the fix the victim's active view filled with Sybils; now at
//! most one is in it at any time, and the victim still gets the other
//! publishers' messages. Every duration below is simulated.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use p2p::{PeerAddress, PeerId, RouterConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use reactor_gossip::{
    CHANNEL_ID, Contact, Gossip, GossipConfig, GossipHandle, Message, MessageId, Subscription,
    TopicEvent, TopicId, TopicMessage, proto,
};
use testkit::Network;
use testkit::adversary::RawPeer;

const HONEST: usize = 20;
const VICTIM: usize = 0;
const SECOND: Duration = Duration::from_secs(1);
const TICK: Duration = Duration::from_millis(100);

/// A ring and two random chords per node.
fn links(seed: u64) -> Vec<(usize, usize)> {
    common::ring_with_chords(HONEST, 2, seed ^ 0x5eed)
}

fn router_config(_: usize, config: &mut RouterConfig) {
    // Room for every Sybil's connection: the limit under test is
    // gossip's, not the router's.
    config.peer_manager.max_inbound = 200;
}

struct Node {
    handle: GossipHandle,
    subscription: Subscription,
    received: BTreeMap<MessageId, usize>,
    neighbours: BTreeSet<PeerId>,
}

impl Node {
    fn drain(&mut self) {
        while let Some(event) = self.subscription.try_recv() {
            match event {
                TopicEvent::Received(m) => *self.received.entry(m.id).or_default() += 1,
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

fn drain(nodes: &mut [Node]) {
    for node in nodes {
        node.drain();
    }
}

async fn settle(nodes: &mut [Node], time: Duration) {
    let end = tokio::time::Instant::now() + time;
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(TICK).await;
        drain(nodes);
    }
}

fn wire(topic: TopicId, message: Message) -> proto::GossipMessage {
    TopicMessage { topic, message }.into()
}

fn contact(peer: PeerId) -> Contact {
    Contact {
        peer,
        addresses: vec![PeerAddress::memory(peer)],
    }
}

#[tokio::test(start_paused = true)]
async fn sybils_named_by_a_connected_peer_take_at_most_one_place_in_the_active_view() {
    for seed in common::seeds(&[3]) {
        sybil_attack(seed).await;
    }
}

async fn sybil_attack(seed: u64) {
    let mut net = Network::builder()
        .seed(seed)
        .nodes(HONEST)
        .links(links(seed))
        .configure(router_config)
        .build()
        .expect("build");
    let handles = net
        .reactor_on_all(|i| {
            Gossip::new(testkit::node_keypair(seed, i), GossipConfig::default()).expect("config")
        })
        .expect("open gossip");
    net.start().expect("start");
    net.wait_until("every link to come up", 30 * SECOND, |net| {
        (0..HONEST).all(|i| !net.router(i).connected_peers().is_empty())
    })
    .await
    .expect("links");
    let topic = TopicId::from_name("sybils");
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
    settle(&mut nodes, 40 * SECOND).await;
    assert!(
        nodes.iter().all(|n| !n.neighbours.is_empty()),
        "the honest overlay formed"
    );

    // The attacker joins the victim's topic, then names Sybils.
    let mut attacker = RawPeer::connect(&net, VICTIM, 0xa77ac, &[CHANNEL_ID])
        .await
        .expect("the attacker connects");
    let join = wire(
        topic,
        Message::Join {
            addresses: vec![PeerAddress::memory(attacker.peer_id())],
        },
    );
    attacker.send(CHANNEL_ID, &join).await.expect("join");

    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let mut sybils: Vec<RawPeer> = Vec::new();
    let mut named: BTreeSet<PeerId> = BTreeSet::new();
    let mut published = Vec::new();
    let mut worst = 0;
    // 16 s: what the attacker sends stays within its connection's credit.
    for second in 0..16u64 {
        // Six new Sybils this second. They connect, and then drop
        // everything they are sent.
        let mut newest = Vec::new();
        for k in 0..6u64 {
            let sybil = RawPeer::connect(&net, VICTIM, 0x5b00 + second * 8 + k, &[CHANNEL_ID])
                .await
                .expect("a Sybil connects");
            named.insert(sybil.peer_id());
            newest.push(contact(sybil.peer_id()));
            sybils.push(sybil);
        }
        // The attacker names them: walks ending at the victim (ttl 0), a
        // walk that would leave one in the passive view, and every other
        // second a shuffle sample and an unasked shuffle answer; and it
        // joins again now and then, in case it was evicted.
        let mut messages: Vec<Message> = newest
            .iter()
            .map(|joiner| Message::ForwardJoin {
                joiner: joiner.clone(),
                ttl: 0,
            })
            .collect();
        if second % 2 == 0 {
            messages.push(Message::Shuffle {
                origin: newest[0].clone(),
                ttl: 0,
                contacts: newest[1..].to_vec(),
            });
        } else {
            messages.push(Message::ShuffleReply {
                contacts: newest.clone(),
            });
        }
        if second % 4 == 3 {
            messages.push(Message::Join {
                addresses: vec![PeerAddress::memory(attacker.peer_id())],
            });
        }
        for m in messages {
            // The attacker may have been evicted and disconnected; what
            // it sends is best effort.
            let _ = attacker.send(CHANNEL_ID, &wire(topic, m)).await;
        }
        // Honest members publish meanwhile; the victim's view is sampled
        // every 100 ms.
        for _ in 0..10 {
            let from = rng.random_range(1..HONEST);
            let id = nodes[from]
                .handle
                .publish(topic, format!("{second} from {from}").into_bytes())
                .await
                .expect("publish");
            published.push(id);
            tokio::time::sleep(TICK).await;
            drain(&mut nodes);
            let in_view = nodes[VICTIM]
                .neighbours
                .iter()
                .filter(|p| named.contains(p))
                .count();
            worst = worst.max(in_view);
            if std::env::var("GOSSIP_DEBUG").is_ok() {
                let view: Vec<String> = nodes[VICTIM]
                    .neighbours
                    .iter()
                    .map(|p| match net.index_of(*p) {
                        Some(i) => format!("h{i}"),
                        None if *p == attacker.peer_id() => "A".into(),
                        None => format!("s{}", &p.to_string()[..6]),
                    })
                    .collect();
                eprintln!("{second}: {view:?}");
            }
        }
    }
    settle(&mut nodes, 10 * SECOND).await;
    let victim = &nodes[VICTIM];
    let got = published
        .iter()
        .filter(|id| victim.received.contains_key(id))
        .count();
    let stats = victim.handle.stats();
    assert!(
        worst <= 1,
        "seed {seed}: {worst} Sybils in the victim's active view at once; {stats:?}"
    );
    assert!(
        got * 100 >= published.len() * 99,
        "seed {seed}: the victim got {got} of {} messages; {stats:?}",
        published.len()
    );
    assert!(victim.received.values().all(|n| *n == 1));
    drop(sybils);
    net.shutdown().await;
}
