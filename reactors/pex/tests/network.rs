//! A network grows from one bootstrap node through peer exchange, and
//! heals after a third of it crashes. Memory transport, tokio's paused
//! clock, explicit seeds: every duration below is simulated.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use p2p::{PeerId, RouterConfig};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use reactor_pex::{Pex, PexConfig, PexHandle};
use testkit::Network;
use tokio::time::Instant;

const NODES: usize = 100;
const CRASHED: usize = 30;
const MIN_PEERS: usize = 8;

/// How long the network may take to form, and to heal. A node that dials
/// the bootstrap node is asked at once, hands out what it learns to each
/// new peer that comes up (which asks it in turn), and asks again every
/// `request_interval` (30 s) while short of peers; the peer manager dials
/// what it learns at once. Ten request intervals is a generous bound for
/// a handful of rounds.
const DEADLINE: Duration = Duration::from_secs(300);

/// Every node may take a full set of outbound peers, and the bootstrap
/// node accepts every other node: with the default `max_inbound` (40) the
/// 59 nodes it turns away never learn an address (the rejected connection
/// is closed before any pex message), so node 0 would be a bottleneck for
/// ever.
fn router_config(i: usize, config: &mut RouterConfig) {
    config.peer_manager.max_outbound = 10;
    config.peer_manager.max_inbound = if i == 0 { NODES } else { 40 };
}

/// Connected peers of every node in `alive`, among `alive`.
fn graph(net: &Network, alive: &[usize]) -> BTreeMap<usize, Vec<usize>> {
    let index: BTreeMap<PeerId, usize> = alive.iter().map(|&i| (net.peer_id(i), i)).collect();
    alive
        .iter()
        .map(|&i| {
            let peers = net
                .router(i)
                .connected_peers()
                .into_iter()
                .filter_map(|p| index.get(&p).copied())
                .collect();
            (i, peers)
        })
        .collect()
}

/// Nodes of `graph` reachable from its first node.
fn reachable(graph: &BTreeMap<usize, Vec<usize>>) -> usize {
    let Some(&start) = graph.keys().next() else {
        return 0;
    };
    let mut seen = BTreeSet::from([start]);
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in &graph[&node] {
            if seen.insert(*next) {
                queue.push_back(*next);
            }
        }
    }
    seen.len()
}

/// Waits until the nodes in `alive` form one connected graph in which each
/// has at least `MIN_PEERS` peers; returns how long it took (simulated).
async fn settle(net: &Network, alive: &[usize], what: &str) -> Duration {
    let start = Instant::now();
    loop {
        let graph = graph(net, alive);
        let reached = reachable(&graph);
        let short: Vec<usize> = graph
            .iter()
            .filter(|(_, peers)| peers.len() < MIN_PEERS)
            .map(|(i, _)| *i)
            .collect();
        if reached == alive.len() && short.is_empty() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: after {DEADLINE:?}, {reached} of {} nodes reachable, nodes short of {MIN_PEERS} peers: {short:?}",
            alive.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn grow_and_crash(seed: u64) {
    let wall = std::time::Instant::now();
    let mut net = Network::builder()
        .seed(seed)
        .nodes(NODES)
        .bootstrap(0)
        .configure(router_config)
        .build()
        .expect("build");
    let config = PexConfig {
        min_peers: MIN_PEERS,
        ..PexConfig::default()
    };
    let handles: Vec<PexHandle> = net
        .reactor_on_all(|_| Pex::new(config.clone()).expect("valid config"))
        .expect("open pex");
    // Links of 5 to 50 ms one way, so that rounds of requests and dials
    // take simulated time as they would on a real network.
    let mut rng = ChaCha12Rng::seed_from_u64(seed ^ 0x1a7e);
    for a in 0..NODES {
        for b in a + 1..NODES {
            net.set_latency(a, b, Duration::from_millis(rng.random_range(5..=50)));
        }
    }
    net.start().expect("start");
    let all: Vec<usize> = (0..NODES).collect();
    let grown = settle(&net, &all, "growing from node 0").await;

    // The bootstrap node learned the others from what they announced, and
    // everyone learned from everyone: nothing hostile here, so nothing was
    // refused.
    let stats: Vec<_> = handles.iter().map(PexHandle::stats).collect();
    assert!(
        stats[0].requests_served >= (NODES - 1) as u64,
        "{:?}",
        stats[0]
    );
    for (i, s) in stats.iter().enumerate() {
        assert_eq!(s.responses_refused, 0, "node {i}: {s:?}");
        assert_eq!(s.requests_refused, 0, "node {i}: {s:?}");
        assert!(s.addresses_learned >= MIN_PEERS as u64, "node {i}: {s:?}");
    }

    let mut order = all.clone();
    order.shuffle(&mut ChaCha12Rng::seed_from_u64(seed));
    let crashed: BTreeSet<usize> = order[..CRASHED].iter().copied().collect();
    for &i in &crashed {
        net.hub().crash(net.peer_id(i));
    }
    for &i in &crashed {
        net.crash(i).await;
    }
    let alive: Vec<usize> = all
        .iter()
        .copied()
        .filter(|i| !crashed.contains(i))
        .collect();
    // Right after the crash, once the survivors noticed it: still one
    // graph? (Reported, not asserted: the promise is about healing.)
    let crashed_ids: BTreeSet<PeerId> = crashed.iter().map(|&i| net.peer_id(i)).collect();
    net.wait_until("the survivors to drop the crashed", DEADLINE, |net| {
        alive.iter().all(|&i| {
            net.router(i)
                .connected_peers()
                .iter()
                .all(|p| !crashed_ids.contains(p))
        })
    })
    .await
    .expect("crashed connections fail");
    let after_crash = graph(&net, &alive);
    let reached = reachable(&after_crash);
    let least = after_crash.values().map(Vec::len).min().unwrap_or(0);
    let healed = settle(&net, &alive, "healing after the crash").await;
    eprintln!(
        "seed {seed}: {NODES} nodes reached {MIN_PEERS} peers each in {grown:?}; \
         after crashing {crashed:?} (node 0 {}): {reached} of {} survivors \
         reachable, fewest peers {least}; healed in {healed:?} (simulated); \
         wall time {:?}",
        if crashed.contains(&0) {
            "among them"
        } else {
            "alive"
        },
        alive.len(),
        wall.elapsed()
    );
    net.shutdown().await;
}

/// 100 nodes that know only node 0 form one connected graph in which every
/// node has at least 8 peers, within 5 minutes; 30 nodes chosen by the
/// seed (node 0 may be one) crash at once, and the 70 survivors are again
/// one connected graph with at least 8 peers each, within 5 minutes. Two
/// seeds: with seed 1 node 0 is among the crashed, with seed 2 it is not.
#[tokio::test(start_paused = true)]
async fn a_hundred_nodes_grow_from_one_bootstrap_node_and_heal_after_thirty_crash() {
    for seed in [1, 2] {
        grow_and_crash(seed).await;
    }
}

/// A bootstrap node in seed mode lets four times more nodes join through
/// it than it has inbound slots: it answers each joiner's request and then
/// frees the joiner's slot for the next one. Without seed mode the joiners
/// turned away would never learn an address (see `router_config`).
#[tokio::test(start_paused = true)]
async fn a_seed_node_lets_four_times_its_inbound_slots_join() {
    const JOINERS: usize = 40;
    const SLOTS: usize = 10;
    let mut net = Network::builder()
        .seed(3)
        .nodes(JOINERS + 1)
        .bootstrap(0)
        .configure(|i, config| {
            config.peer_manager.max_outbound = 10;
            // Joiners turned away at the slot limit retry at least every
            // 10 s (the default backoff grows to 10 minutes), which keeps
            // the simulated run short; the seed's turnover is the same.
            config.peer_manager.max_retry = Duration::from_secs(10);
            if i == 0 {
                config.peer_manager.max_inbound = SLOTS;
            }
        })
        .build()
        .expect("build");
    let handles: Vec<PexHandle> = net
        .reactor_on_all(|i| {
            Pex::new(PexConfig {
                min_peers: MIN_PEERS,
                seed_mode: i == 0,
                ..PexConfig::default()
            })
            .expect("valid config")
        })
        .expect("open pex");
    net.start().expect("start");
    let all: Vec<usize> = (0..=JOINERS).collect();
    let took = settle(&net, &all, "joining through a seed node").await;
    let seed = handles[0].stats();
    assert!(
        seed.seed_disconnects >= (JOINERS - SLOTS) as u64,
        "the seed freed too few slots: {seed:?}"
    );
    eprintln!("seed mode: {JOINERS} nodes joined in {took:?} (simulated); seed {seed:?}");
    net.shutdown().await;
}
