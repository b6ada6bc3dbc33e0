//! Peer exchange in the testkit simulator: [`PexState`] cores on the one
//! simulated network (`testkit::sim::net`), beside a small model of the
//! peer manager ([`BookHost`]): an address book per node that answers the
//! core's samples and takes what it learns, and a dialer that keeps
//! `outbound` connections, backs off exponentially from an address whose
//! dial did not come up (refused past the model's `max_inbound`, or
//! crashed), with jitter, and forgets it after [`FORGET_AFTER`] failures in a row (but
//! never the configured seed's).
//!
//! [`run_scenario`] grows a network from one seed node (in seed mode, as
//! deployed: it answers and then frees the slot), measures how fast nodes
//! reach `min_peers` connections and how much of the network their books
//! cover, crashes a share of the nodes, and measures the healing. The
//! `pex_sim` binary runs it at larger sizes; the tests run it small.
//!
//! ```
//! use reactor_pex_sim::{Scenario, run_scenario};
//!
//! let report = run_scenario(&Scenario { nodes: 60, ..Scenario::default() });
//! assert_eq!(report.grown.connected_share(), 1.0);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use p2p::{Keypair, PeerAddress};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use reactor_pex_proto::{Effect, Outcome, PexConfig, PexState};
use testkit::sim::net::{ConnectionModel, Host, Net, NetNode, NetStats};
use testkit::sim::{NodeIdx, Sim, SimConfig};

/// Failed dials in a row after which an address is forgotten.
pub const FORGET_AFTER: u32 = 5;

/// A node on the simulated network.
pub type PexNode = NetNode<PexState, BookHost>;

/// The peer manager beside one simulated core: its address book and its
/// dials.
#[derive(Debug)]
pub struct BookHost {
    net: Rc<Net>,
    /// The addresses this node knows, as node indices.
    book: BTreeSet<NodeIdx>,
    /// Dials in flight and when they started.
    dialing: BTreeMap<NodeIdx, Duration>,
    /// Addresses whose last dials failed: failures in a row, and when the
    /// address may be dialed again.
    backoff: BTreeMap<NodeIdx, (u32, Duration)>,
    /// Whether the node has started (it dials only then).
    started: bool,
    rng: ChaCha12Rng,
}

impl BookHost {
    /// How many addresses the node knows.
    pub fn known(&self) -> usize {
        self.book.len()
    }
}

impl Host<PexState> for BookHost {
    fn on_event(&mut self, _: NodeIdx, _: Duration, event: std::convert::Infallible) {
        match event {}
    }

    fn perform(&mut self, node: NodeIdx, _now: Duration, effect: Effect) -> Option<Outcome> {
        match effect {
            Effect::Sample { to, id, max } => {
                let exclude = self.net.index(&to);
                let candidates: Vec<NodeIdx> = self
                    .book
                    .iter()
                    .copied()
                    .filter(|i| Some(*i) != exclude)
                    .collect();
                let directory = self.net.directory.borrow();
                let addresses = candidates
                    .choose_multiple(&mut self.rng, max)
                    .map(|i| directory.address(*i))
                    .collect();
                Some(Outcome::Sampled { to, id, addresses })
            }
            Effect::AddAddresses { addresses, .. } => {
                let results = addresses
                    .iter()
                    .map(|a: &PeerAddress| match self.net.index(&a.peer) {
                        Some(i) if i != node => Ok(self.book.insert(i)),
                        _ => Err(p2p::AddAddressError::SelfAddress),
                    })
                    .collect();
                Some(Outcome::Added(results))
            }
            // The simulated nodes have no IPs: nobody observes one.
            Effect::Announce { .. } => None,
        }
    }
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Nodes, the seed node (node 0) included.
    pub nodes: usize,
    /// Outbound connections each node keeps (the peer manager's
    /// `max_outbound`).
    pub outbound: usize,
    /// Inbound connections a node accepts (`max_inbound`).
    pub max_inbound: usize,
    /// Pex settings of every node but the seed (which runs in seed mode).
    pub pex: PexConfig,
    /// Time between two nodes starting.
    pub join_interval: Duration,
    /// How often the dialer tops up the outbound connections.
    pub dial_interval: Duration,
    /// A dial not up after this long is given up, its address forgotten.
    pub dial_timeout: Duration,
    /// Simulated time after the last join before measuring, and after the
    /// crash before measuring again.
    pub settle: Duration,
    /// Share of the nodes (never the seed) that crash.
    pub crash_share: f64,
    /// Seed of keys, latencies and every random choice.
    pub seed: u64,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            nodes: 200,
            outbound: 10,
            max_inbound: 40,
            pex: PexConfig::default(),
            join_interval: Duration::from_millis(100),
            dial_interval: Duration::from_secs(1),
            dial_timeout: Duration::from_secs(5),
            settle: Duration::from_secs(300),
            crash_share: 0.3,
            seed: 1,
        }
    }
}

/// The network at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Simulated time.
    pub at: Duration,
    /// Live nodes (the seed excluded).
    pub live: usize,
    /// Of them, how many have at least `min_peers` live connections.
    pub connected: usize,
    /// Mean share of the live nodes a live node's book holds.
    pub mean_coverage: f64,
    /// The smallest such share.
    pub min_coverage: f64,
    /// Pex messages sent per live node so far (requests and responses).
    pub messages_per_node: f64,
}

impl Snapshot {
    /// The share of live nodes with at least `min_peers` connections.
    pub fn connected_share(&self) -> f64 {
        if self.live == 0 {
            return 1.0;
        }
        self.connected as f64 / self.live as f64
    }
}

/// What a scenario measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Once every node has joined and the network settled.
    pub grown: Snapshot,
    /// When every live node first had `min_peers` connections, from the
    /// last join (`None`: not within `settle`).
    pub grown_after: Option<Duration>,
    /// Right after the crash was noticed and the network settled again.
    pub healed: Snapshot,
    /// When every live node again had `min_peers` live connections, from
    /// the crash.
    pub healed_after: Option<Duration>,
    /// What the network counted.
    pub net: NetStats,
}

/// Runs `scenario` (see the crate docs).
pub fn run_scenario(scenario: &Scenario) -> Report {
    run_scenario_sim(scenario).0
}

/// [`run_scenario`], and the simulation it ran.
pub fn run_scenario_sim(scenario: &Scenario) -> (Report, Sim<PexNode>) {
    let base = Instant::now();
    let model = ConnectionModel {
        max_inbound: scenario.max_inbound,
        seed: scenario.seed,
        ..ConnectionModel::default()
    };
    let net = Net::new(model, base);
    let mut nodes = Vec::with_capacity(scenario.nodes);
    for i in 0..scenario.nodes {
        let key = Keypair::from_seed(scenario.seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
        let idx = net.directory.borrow_mut().add(key.peer_id(), None);
        let config = if i == 0 {
            PexConfig {
                seed_mode: true,
                ..scenario.pex.clone()
            }
        } else {
            scenario.pex.clone()
        };
        let core = PexState::new(config, scenario.seed ^ u64::from(idx), base);
        let host = BookHost {
            net: net.clone(),
            // Every node is configured with the seed's address.
            book: (i != 0).then_some(0).into_iter().collect(),
            dialing: BTreeMap::new(),
            backoff: BTreeMap::new(),
            started: false,
            rng: ChaCha12Rng::seed_from_u64(scenario.seed ^ (u64::from(idx) << 20)),
        };
        nodes.push(NetNode::new(idx, core, host, net.clone()));
    }
    let config = SimConfig {
        seed: scenario.seed,
        ..SimConfig::default()
    };
    let mut sim = Sim::new(nodes, config);
    let mut rng = ChaCha12Rng::seed_from_u64(scenario.seed ^ 0x9e37);
    // Joins, one every `join_interval`, while the dialer runs.
    start(&mut sim, 0);
    let mut started = 1;
    let mut next_dial = Duration::ZERO;
    while started < scenario.nodes {
        let next_join = sim.now() + scenario.join_interval;
        run_dialing(&mut sim, scenario, next_join, &mut next_dial, &mut rng);
        start(&mut sim, started as NodeIdx);
        started += 1;
    }
    let joined = sim.now();
    let min_peers = scenario.pex.min_peers;
    let grown_after = run_until_connected(
        &mut sim,
        scenario,
        joined,
        &mut next_dial,
        &mut rng,
        min_peers,
    );
    run_dialing(
        &mut sim,
        scenario,
        joined + scenario.settle,
        &mut next_dial,
        &mut rng,
    );
    let grown = snapshot(&sim, min_peers);

    // The crash.
    let mut candidates: Vec<NodeIdx> = (1..scenario.nodes as NodeIdx).collect();
    candidates.shuffle(&mut rng);
    let crashes = (scenario.nodes as f64 * scenario.crash_share).round() as usize;
    for i in candidates.into_iter().take(crashes) {
        sim.crash_node(i);
    }
    let crashed = sim.now();
    let healed_after = run_until_connected(
        &mut sim,
        scenario,
        crashed,
        &mut next_dial,
        &mut rng,
        min_peers,
    );
    run_dialing(
        &mut sim,
        scenario,
        crashed + scenario.settle,
        &mut next_dial,
        &mut rng,
    );
    let healed = snapshot(&sim, min_peers);
    let report = Report {
        grown,
        grown_after,
        healed,
        healed_after,
        net: net.stats(),
    };
    (report, sim)
}

/// Starts node `i`: its core, and its dialer.
fn start(sim: &mut Sim<PexNode>, i: NodeIdx) {
    sim.node_mut(i).host_mut().started = true;
    sim.start(i);
}

/// Runs the dialer until `min_peers` holds everywhere (or `settle` passed
/// since `from`); returns how long it took.
fn run_until_connected(
    sim: &mut Sim<PexNode>,
    scenario: &Scenario,
    from: Duration,
    next_dial: &mut Duration,
    rng: &mut ChaCha12Rng,
    min_peers: usize,
) -> Option<Duration> {
    let step = scenario.dial_interval;
    while sim.now() < from + scenario.settle {
        if snapshot(sim, min_peers).connected_share() == 1.0 {
            return Some(sim.now() - from);
        }
        let until = sim.now() + step;
        run_dialing(sim, scenario, until, next_dial, rng);
    }
    None
}

/// Runs the simulation until `until`, topping up each live node's
/// outbound connections every `dial_interval` as the peer manager does.
fn run_dialing(
    sim: &mut Sim<PexNode>,
    scenario: &Scenario,
    until: Duration,
    next_dial: &mut Duration,
    rng: &mut ChaCha12Rng,
) {
    while *next_dial <= until {
        sim.run_until(*next_dial);
        let now = sim.now();
        let live: Vec<NodeIdx> = sim.alive().collect();
        for i in live {
            dial_round(sim, scenario, i, now, rng);
        }
        *next_dial += scenario.dial_interval;
    }
    sim.run_until(until);
}

/// One top-up of node `i`'s outbound connections.
fn dial_round(
    sim: &mut Sim<PexNode>,
    scenario: &Scenario,
    i: NodeIdx,
    now: Duration,
    rng: &mut ChaCha12Rng,
) {
    let node = sim.node_mut(i);
    let connected: BTreeSet<NodeIdx> = node.connected().collect();
    let host = node.host_mut();
    if !host.started {
        return;
    }
    // Dials that did not come up are given up: the address is tried again
    // after an exponential backoff, and forgotten after `FORGET_AFTER`
    // failures in a row.
    let timed_out: Vec<NodeIdx> = host
        .dialing
        .iter()
        .filter(|(peer, at)| {
            !connected.contains(peer) && now.saturating_sub(**at) >= scenario.dial_timeout
        })
        .map(|(peer, _)| *peer)
        .collect();
    for peer in timed_out {
        host.dialing.remove(&peer);
        let failures = host.backoff.get(&peer).map_or(0, |(n, _)| *n) + 1;
        // The configured seed is never forgotten, as the peer manager
        // keeps configured addresses.
        if failures >= FORGET_AFTER && peer != 0 {
            host.backoff.remove(&peer);
            host.book.remove(&peer);
        } else {
            // Jittered, as the peer manager's, so refused dialers do not
            // come back all at once.
            let wait = scenario.dial_interval * 2u32.pow(failures.min(FORGET_AFTER) + 1);
            let wait = wait.mul_f64(1.0 + host.rng.random::<f64>());
            host.backoff.insert(peer, (failures, now + wait));
        }
    }
    host.dialing.retain(|peer, _| !connected.contains(peer));
    for peer in &connected {
        host.backoff.remove(peer);
    }
    let outbound = connected.len().min(scenario.outbound) + host.dialing.len();
    if outbound >= scenario.outbound {
        return;
    }
    let candidates: Vec<NodeIdx> = host
        .book
        .iter()
        .copied()
        .filter(|p| !connected.contains(p) && !host.dialing.contains_key(p))
        .filter(|p| host.backoff.get(p).is_none_or(|(_, until)| *until <= now))
        .collect();
    let picks: Vec<NodeIdx> = candidates
        .choose_multiple(rng, scenario.outbound - outbound)
        .copied()
        .collect();
    for peer in &picks {
        host.dialing.insert(*peer, now);
    }
    sim.with_node(i, |node, now, io| {
        for peer in picks {
            node.dial(now, peer, io);
        }
    });
}

/// The network now.
fn snapshot(sim: &Sim<PexNode>, min_peers: usize) -> Snapshot {
    let live: Vec<NodeIdx> = sim.alive().filter(|i| *i != 0).collect();
    let alive: BTreeSet<NodeIdx> = sim.alive().collect();
    let n = live.len().max(1) as f64;
    let mut connected = 0;
    let mut coverage_sum = 0.0;
    let mut min_coverage: f64 = 1.0;
    let mut messages = 0u64;
    for i in &live {
        let node = sim.node(*i);
        if node.connected().filter(|p| alive.contains(p)).count()
            >= min_peers.min(live.len().saturating_sub(1))
        {
            connected += 1;
        }
        let known = node
            .host()
            .book
            .iter()
            .filter(|p| alive.contains(p) && *p != i)
            .count();
        let coverage = known as f64 / (alive.len().saturating_sub(1)).max(1) as f64;
        coverage_sum += coverage;
        min_coverage = min_coverage.min(coverage);
        let stats = node.core().stats();
        messages += stats.requests_sent + stats.requests_served;
    }
    Snapshot {
        at: sim.now(),
        live: live.len(),
        connected,
        mean_coverage: coverage_sum / n,
        min_coverage,
        messages_per_node: messages as f64 / n,
    }
}
