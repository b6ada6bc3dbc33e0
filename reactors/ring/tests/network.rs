//! The ring reactor on routers over the memory transport, on tokio's
//! paused clock: 100 nodes join through one gateway and route greedily; a
//! forged location is refused; an over-consuming neighbor is
//! disconnected. Every duration below is simulated.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use p2p::{ChannelReceiver, ChannelSender, Keypair, PeerId, RouterConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use reactor_ring::negotiation::{Challenge, JoinerSecret};
use reactor_ring::proto::RingMessage;
use reactor_ring::{
    Event, Gateways, Location, Message, Payload, Ring, RingConfig, RingHandle, Route, RouteMode,
    Transcript,
};
use testkit::{Network, recv_within};
use tokio::sync::broadcast::error::TryRecvError;

const SECOND: Duration = Duration::from_secs(1);

/// Node `i`'s key (checked against the router's PeerId).
fn testkit_key(net: &Network, seed: u64, i: usize) -> Keypair {
    let key = testkit::node_keypair(seed, i);
    assert_eq!(key.peer_id(), net.peer_id(i));
    key
}

fn router_config(nodes: usize) -> impl FnMut(usize, &mut RouterConfig) {
    move |i, config| {
        // The gateway takes every joiner at once (the default max_inbound,
        // 40, would turn most of them away). Ring nodes dial their links as
        // requests (`Router::connect`), past the default 10 ordinary
        // outbound slots.
        config.peer_manager.max_inbound = if i == 0 { 2 * nodes } else { 40 };
    }
}

fn ring_config(gateway: PeerId) -> RingConfig {
    RingConfig {
        target_degree: 10,
        max_degree: 16,
        ..RingConfig::with_gateways([gateway])
    }
}

/// Every node has a location and is linked to its successor and
/// predecessor on the ring; returns the nodes that are not yet.
fn unsettled(handles: &[RingHandle], net: &Network) -> Vec<usize> {
    let mut ring: Vec<(Location, usize)> = handles
        .iter()
        .enumerate()
        .filter_map(|(i, h)| Some((h.location()?, i)))
        .collect();
    if ring.len() < handles.len() {
        return (0..handles.len())
            .filter(|i| handles[*i].location().is_none())
            .collect();
    }
    ring.sort();
    let n = ring.len();
    (0..n)
        .filter(|pos| {
            let i = ring[*pos].1;
            let linked: BTreeSet<PeerId> = handles[i].neighbors().iter().map(|x| x.peer).collect();
            let succ = net.peer_id(ring[(pos + 1) % n].1);
            let pred = net.peer_id(ring[(pos + n - 1) % n].1);
            !(linked.contains(&succ) && linked.contains(&pred))
        })
        .map(|pos| ring[pos].1)
        .collect()
}

/// 100 routers over the memory transport know only node 0, a gateway. All
/// of them negotiate a location with it and join; every location verifies
/// against the gateway's signature; every node ends up linked to its ring
/// successor and predecessor, with at least 5 neighbors; and 200 exact
/// routes between random pairs all arrive at their target, greedily.
#[tokio::test(start_paused = true)]
async fn a_hundred_routers_join_through_one_gateway_and_route_greedily() {
    const NODES: usize = 100;
    let seed = 3;
    let mut net = Network::builder()
        .seed(seed)
        .nodes(NODES)
        .bootstrap(0)
        .configure(router_config(NODES))
        .build()
        .expect("build");
    let gateway = net.peer_id(0);
    let keys: Vec<Keypair> = (0..NODES).map(|i| testkit_key(&net, seed, i)).collect();
    let config = ring_config(gateway);
    let handles: Vec<RingHandle> = net
        .reactor_on_all(|i| {
            let ring = if i == 0 {
                Ring::gateway(keys[0].clone(), config.clone())
            } else {
                Ring::new(keys[i].clone(), config.clone())
            };
            ring.expect("valid config").with_deterministic_nonces()
        })
        .expect("open ring");
    net.start().expect("start");

    let mut waited = Duration::ZERO;
    loop {
        let left = unsettled(&handles, &net);
        if left.is_empty() {
            break;
        }
        assert!(
            waited < 300 * SECOND,
            "after {waited:?}, nodes not joined or not linked to their ring neighbors: {left:?}"
        );
        tokio::time::sleep(SECOND).await;
        waited += SECOND;
    }
    eprintln!("100 nodes joined and linked to their ring neighbors in {waited:?} (simulated)");

    // Every location verifies, and what each node believes of its
    // neighbors' locations is what they have.
    let trusted = Gateways::listed([gateway]);
    let locations: BTreeMap<PeerId, Location> = (0..NODES)
        .map(|i| (net.peer_id(i), handles[i].location().expect("joined")))
        .collect();
    for (i, h) in handles.iter().enumerate() {
        let transcript = h.transcript().expect("joined");
        let network = reactor_ring::NetworkTag::new(&p2p::RouterConfig::default().network_id);
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        assert_eq!(
            transcript.verify(&net.peer_id(i), &trusted, &network, unix),
            Ok(locations[&net.peer_id(i)])
        );
        assert_eq!(transcript.gateway, gateway);
        let neighbors = h.neighbors();
        assert!(
            neighbors.len() >= 5,
            "node {i}: {} neighbors",
            neighbors.len()
        );
        for n in neighbors {
            assert_eq!(
                n.location, locations[&n.peer],
                "node {i}'s view of {}",
                n.peer
            );
        }
        assert_eq!(h.stats().locations_refused, 0);
    }

    // 200 exact routes between random pairs.
    let mut events: Vec<_> = handles.iter().map(RingHandle::subscribe).collect();
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let mut expected = BTreeMap::new();
    for k in 0..200u32 {
        let a = rng.random_range(0..NODES);
        let b = (a + rng.random_range(1..NODES)) % NODES;
        let payload = k.to_be_bytes().to_vec();
        let target = locations[&net.peer_id(b)];
        handles[a]
            .route_exact(target, payload.clone())
            .await
            .expect("routed");
        expected.insert(payload, (a, b));
    }
    tokio::time::sleep(10 * SECOND).await;
    let mut delivered = BTreeMap::new();
    let mut failed = 0;
    for (i, rx) in events.iter_mut().enumerate() {
        loop {
            match rx.try_recv() {
                Ok(Event::Delivered {
                    payload, origin, ..
                }) => {
                    delivered.insert(payload, (origin, i));
                }
                Ok(Event::RouteFailed { .. }) => failed += 1,
                Ok(_) => {}
                Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
                Err(TryRecvError::Lagged(n)) => panic!("node {i} lost {n} events"),
            }
        }
    }
    assert_eq!(failed, 0);
    for (payload, (a, b)) in &expected {
        assert_eq!(
            delivered.get(payload),
            Some(&(net.peer_id(*a), *b)),
            "route {a} → {b}"
        );
    }
    net.shutdown().await;
}

/// Node 0 runs the ring (a gateway); node 1 speaks the ring channel by
/// hand.
struct Hand {
    net: Network,
    ring: RingHandle,
    tx: ChannelSender<RingMessage>,
    rx: ChannelReceiver<RingMessage>,
    gateway: Keypair,
    n1: PeerId,
}

async fn hand(seed: u64, others: usize, config: impl Fn(RingConfig) -> RingConfig) -> Hand {
    let nodes = 2 + others;
    let links = (1..nodes).map(|i| (i, 0)).collect();
    let mut net = Network::builder()
        .seed(seed)
        .nodes(nodes)
        .links(links)
        .configure(router_config(nodes))
        .build()
        .expect("build");
    let gateway = testkit_key(&net, seed, 0);
    let ring_config = config(ring_config(gateway.peer_id()));
    let ring = net
        .reactor(
            0,
            Ring::gateway(gateway.clone(), ring_config.clone())
                .expect("valid")
                .with_deterministic_nonces(),
        )
        .expect("open");
    for i in 2..nodes {
        net.reactor(
            i,
            Ring::new(testkit_key(&net, seed, i), ring_config.clone())
                .expect("valid")
                .with_deterministic_nonces(),
        )
        .expect("open");
    }
    let (tx, rx) = net
        .open_channel::<RingMessage>(1, Ring::channel_descriptor())
        .expect("raw channel");
    net.start().expect("start");
    net.wait_connected(0, 1, 5 * SECOND)
        .await
        .expect("connected");
    let n1 = net.peer_id(1);
    Hand {
        net,
        ring,
        tx,
        rx,
        gateway,
        n1,
    }
}

impl Hand {
    /// The next ring message node 0 sends node 1.
    async fn next(&mut self) -> Message {
        let envelope = recv_within(&mut self.rx, 10 * SECOND)
            .await
            .expect("node 0 sends node 1 something");
        Message::from_wire(envelope.message)
            .expect("well formed")
            .expect("known kind")
    }

    async fn send(&self, message: Message) {
        self.tx
            .send(self.net.peer_id(0), message.into())
            .await
            .expect("sent");
    }
}

/// A peer announcing a location whose transcript does not verify (here: a
/// signature the gateway never made) is refused: node 0 reports it with a
/// fatal protocol error, so the router disconnects it, and counts it.
#[tokio::test(start_paused = true)]
async fn a_forged_location_is_refused() {
    let mut h = hand(5, 0, |c| c).await;
    let mut events = h.ring.subscribe();
    let Message::Announce(theirs) = h.next().await else {
        panic!("node 0 announces its location first")
    };
    assert_eq!(theirs.joiner, h.net.peer_id(0));
    let forged = Transcript {
        joiner: h.n1,
        joiner_value: [1; 32],
        gateway: h.gateway.peer_id(),
        gateway_value: [2; 32],
        expires: theirs.expires,
        signature: [3; 64],
    };
    h.send(Message::Announce(forged)).await;
    h.net
        .wait_until("node 0 to drop node 1", 10 * SECOND, |net| {
            !net.router(0).is_connected(net.peer_id(1))
        })
        .await
        .expect("the forger is disconnected");
    assert_eq!(h.ring.stats().locations_refused, 1);
    assert!(h.ring.neighbors().iter().all(|n| n.peer != h.n1));
    let refused = loop {
        match events.try_recv() {
            Ok(Event::LocationRefused { peer, error }) => break (peer, error),
            Ok(_) => continue,
            Err(e) => panic!("no LocationRefused event: {e:?}"),
        }
    };
    assert_eq!(refused.0, h.n1);
    assert!(
        refused.1.to_string().contains("does not verify"),
        "{}",
        refused.1
    );
    h.net.shutdown().await;
}

/// Node 1 negotiates an honest location by hand, becomes node 0's
/// neighbor, then makes node 0 forward 4 KiB routes for it as fast as the
/// channel's credit allows. Once node 0 has handled 64 KiB and node 1
/// caused more than half of it, node 0 disconnects and bans node 1, and
/// the report says why: its bytes, everyone's, its share and the limit.
#[tokio::test(start_paused = true)]
async fn an_over_consuming_neighbor_is_disconnected() {
    let mut h = hand(6, 3, |mut c| {
        c.load.min_total_bytes = 64.0 * 1024.0;
        c
    })
    .await;
    let mut events = h.ring.subscribe();
    let Message::Announce(gateway_transcript) = h.next().await else {
        panic!("node 0 announces first")
    };
    let gateway_location = gateway_transcript.location();
    // The negotiation, by hand.
    let secret = JoinerSecret::new(h.n1, [42; 32]);
    h.send(Message::JoinCommit {
        commitment: secret.commitment(),
    })
    .await;
    let challenge: Challenge = loop {
        if let Message::JoinChallenge(c) = h.next().await {
            break c;
        }
    };
    let network = reactor_ring::NetworkTag::new(&p2p::RouterConfig::default().network_id);
    let transcript = secret
        .complete(h.gateway.peer_id(), &challenge, &network)
        .expect("the gateway's signature verifies");
    let me = transcript.location();
    h.send(Message::Announce(transcript)).await;
    // Node 0 has node 1 and the three ring nodes as neighbors.
    h.net
        .wait_until("node 0 to have 4 neighbors", 60 * SECOND, |_| {
            h.ring.neighbors().len() >= 4
        })
        .await
        .expect("neighbors");
    assert!(h.ring.neighbors().iter().any(|n| n.peer == h.n1));
    // The flood.
    let gateway_peer = h.net.peer_id(0);
    for id in 0..200u64 {
        let route = Route {
            id,
            origin: h.n1,
            target: Location::from_raw(gateway_location.raw().wrapping_add(id << 40)),
            mode: RouteMode::Closest,
            htl: 10,
            walk: 0,
            visited: vec![me],
            path: vec![me, gateway_location],
            payload: Payload::App(vec![0; 4096]),
        };
        if h.tx
            .try_send(gateway_peer, Message::Route(route).into())
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !h.net.router(0).is_connected(h.n1) {
            break;
        }
    }
    h.net
        .wait_until("node 0 to drop node 1", 10 * SECOND, |net| {
            !net.router(0).is_connected(net.peer_id(1))
        })
        .await
        .expect("the over-consumer is disconnected");
    let report = loop {
        match events.try_recv() {
            Ok(Event::Overloaded(report)) => break report,
            Ok(_) => continue,
            Err(e) => panic!("no Overloaded event: {e:?}"),
        }
    };
    eprintln!("{report}");
    assert_eq!(report.peer, h.n1);
    assert!(report.share > 0.5 && report.total_bytes >= 64.0 * 1024.0);
    assert_eq!(h.ring.stats().overload_disconnects, 1);
    assert!(h.ring.neighbors().iter().all(|n| n.peer != h.n1));
    h.net.shutdown().await;
}

/// A message that breaks the protocol's bounds (here a route with 65 hops
/// to live; at most 64) is a protocol violation: node 0 uses nothing from
/// it and the router disconnects the sender.
#[tokio::test(start_paused = true)]
async fn a_message_breaking_the_bounds_disconnects_its_sender() {
    let mut h = hand(8, 0, |c| c).await;
    let Message::Announce(_) = h.next().await else {
        panic!("node 0 announces first")
    };
    let wire = RingMessage {
        kind: Some(reactor_ring::proto::ring_message::Kind::Route(
            reactor_ring::proto::Route {
                id: 1,
                origin: h.n1.as_bytes().to_vec(),
                htl: 65,
                path: vec![1],
                payload: Some(reactor_ring::proto::route::Payload::App(Vec::new())),
                ..Default::default()
            },
        )),
    };
    h.tx.send(h.net.peer_id(0), wire).await.expect("sent");
    h.net
        .wait_until("node 0 to drop node 1", 10 * SECOND, |net| {
            !net.router(0).is_connected(net.peer_id(1))
        })
        .await
        .expect("the violator is disconnected");
    assert_eq!(h.ring.stats().routes_forwarded, 0);
    h.net.shutdown().await;
}
