//! The ring in the testkit simulator: each node's core ([`RingState`])
//! runs on the one simulated network every reactor shares
//! ([`testkit::sim::net`]: the router's connections — dials that the other
//! side acknowledges, closes, failure detection with the router's
//! keepalive timing), beside a [`RingHost`] that records what the
//! application would see. [`RingSim`] grows a network by joining nodes one
//! by one through a gateway — with the real protocol: negotiation, signed
//! transcripts, connect requests, maintenance — then measures it. The
//! scenario the `ring_sim` binary runs, and the tests run small, is in
//! [`run_scenario`].
//!
//! ```
//! use reactor_ring_sim::{Scenario, run_scenario};
//!
//! let report = run_scenario(&Scenario { nodes: 60, pairs: 200, ..Scenario::default() });
//! assert_eq!(report.built.routes.success_rate(), 1.0);
//! ```

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use p2p::{Keypair, PeerId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use testkit::sim::net::{ConnectionModel, Host, Net, NetNode, NetStats};
use testkit::sim::{NodeIdx, Sim, SimConfig};

use reactor_ring::{Command, Event, Location, RingConfig, RingState, RouteMode};

/// The Unix time at which a simulation starts (locations expire in Unix
/// time; a run is far shorter than `location_ttl`).
pub const SIM_UNIX_START: u64 = 1_800_000_000;

/// One delivery of an application payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Where it was delivered.
    pub node: NodeIdx,
    /// The route's origin and id.
    pub origin: PeerId,
    /// The route's id.
    pub id: u64,
    /// Transmissions it took, detours included.
    pub hops: u32,
}

/// What the simulated nodes' applications saw.
#[derive(Debug, Default)]
pub struct SimLog {
    /// Application deliveries.
    pub deliveries: Vec<Delivery>,
    /// Routes that came back failed.
    pub route_failures: u64,
    /// Neighbors disconnected for overload.
    pub overloads: u64,
    /// Locations refused.
    pub locations_refused: u64,
}

/// The application beside each simulated ring core: it records
/// deliveries and failures in the run's [`SimLog`]. The core's store
/// effects are dropped: nothing is kept across a simulated node's life.
#[derive(Debug)]
pub struct RingHost {
    log: Rc<RefCell<SimLog>>,
    max_htl: u8,
}

impl Host<RingState> for RingHost {
    fn on_event(&mut self, node: NodeIdx, _now: Duration, event: Event) {
        let mut log = self.log.borrow_mut();
        match event {
            Event::Delivered {
                id,
                origin,
                htl_left,
                ..
            } => log.deliveries.push(Delivery {
                node,
                origin,
                id,
                hops: u32::from(self.max_htl.saturating_sub(htl_left)),
            }),
            Event::RouteFailed { .. } => log.route_failures += 1,
            Event::Overloaded(_) => log.overloads += 1,
            Event::LocationRefused { .. } => log.locations_refused += 1,
            _ => {}
        }
    }
}

/// A ring node on the simulated network.
pub type RingNode = NetNode<RingState, RingHost>;

/// A simulation run's parameters.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Nodes in the ring (the gateway, node 0, included).
    pub nodes: usize,
    /// Seed of keys, latencies and every random choice.
    pub seed: u64,
    /// The nodes' ring settings (gateways are filled in).
    pub config: RingConfig,
    /// Time between two joins.
    pub join_interval: Duration,
    /// Time the network runs after the last join before it is measured.
    pub settle: Duration,
    /// Random pairs routed per measurement.
    pub pairs: usize,
    /// How the measured routes end: [`RouteMode::Exact`] (delivered only
    /// at the target, backtracking at dead ends) or [`RouteMode::Closest`]
    /// (plain greedy: delivered where no neighbor is closer, a success
    /// only if that is the target).
    pub route_mode: RouteMode,
    /// Share of the nodes that crash (and as many that join) in the churn
    /// phase; 0 skips it.
    pub churn: f64,
    /// How long the churn phase lasts: its crashes, its joins and its
    /// routes are spread over it at random.
    pub churn_window: Duration,
    /// Time the network runs after the churn before it is measured again.
    pub repair: Duration,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            nodes: 300,
            seed: 1,
            config: RingConfig::default(),
            join_interval: Duration::from_millis(20),
            settle: Duration::from_secs(120),
            pairs: 2000,
            route_mode: RouteMode::Exact,
            churn: 0.1,
            churn_window: Duration::from_secs(60),
            repair: Duration::from_secs(120),
        }
    }
}

/// Routing figures of one measurement: pairs of distinct live nodes drawn
/// at random among every node started — joined or still joining — and a
/// route from the first to the second.
#[derive(Debug, Clone, Default)]
pub struct RouteStats {
    /// Pairs drawn.
    pub sampled: usize,
    /// Of those, pairs with a node still joining (no location yet): the
    /// origin cannot route, or the target has no location to route to.
    /// Counted as failures.
    pub not_joined: usize,
    /// Routes sent (the other pairs).
    pub sent: usize,
    /// Routes delivered at their target.
    pub delivered: usize,
    /// Hops of each delivered route, sorted.
    pub hops: Vec<u32>,
}

impl RouteStats {
    /// Delivered / sampled: every pair drawn counts, those with a node
    /// still joining as failures (1 when nothing was drawn).
    pub fn success_rate(&self) -> f64 {
        if self.sampled == 0 {
            1.0
        } else {
            self.delivered as f64 / self.sampled as f64
        }
    }

    /// Mean hops of delivered routes.
    pub fn mean_hops(&self) -> f64 {
        if self.hops.is_empty() {
            return 0.0;
        }
        self.hops.iter().map(|h| f64::from(*h)).sum::<f64>() / self.hops.len() as f64
    }

    /// The `q`-quantile of hops (`q` in [0, 1]).
    pub fn quantile(&self, q: f64) -> u32 {
        if self.hops.is_empty() {
            return 0;
        }
        let i = ((self.hops.len() as f64 * q).ceil() as usize).clamp(1, self.hops.len()) - 1;
        self.hops[i]
    }

    /// Delivered routes per number of hops (index = hops).
    pub fn histogram(&self) -> Vec<usize> {
        let max = self.hops.last().copied().unwrap_or(0) as usize;
        let mut bins = vec![0; max + 1];
        for h in &self.hops {
            bins[*h as usize] += 1;
        }
        bins
    }
}

/// Shape of the ring at one moment.
#[derive(Debug, Clone, Default)]
pub struct TopologyStats {
    /// Live joined nodes.
    pub nodes: usize,
    /// Mean, smallest and largest number of neighbors.
    pub degree_mean: f64,
    /// Smallest number of neighbors.
    pub degree_min: usize,
    /// Largest number of neighbors.
    pub degree_max: usize,
    /// Links by length: `< 10⁻⁴`, `< 10⁻³`, `< 10⁻²`, `< 10⁻¹`, `≥ 10⁻¹`
    /// (each link counted from both ends).
    pub link_lengths: [usize; 5],
    /// Share of nodes' 3 nearest nodes (by location) they are linked to:
    /// for every node its 3 nearest by ring distance, counted linked or
    /// not — the definition of freenet-core's topology simulator
    /// (`compute_nearest_3`).
    pub nearest3: f64,
    /// Share of nodes linked to their successor and predecessor.
    pub adjacent: f64,
    /// Connected components of the (undirected) link graph.
    pub components: usize,
}

impl TopologyStats {
    /// Share of links shorter than 0.1.
    pub fn short_links(&self) -> f64 {
        let total: usize = self.link_lengths.iter().sum();
        if total == 0 {
            return 0.0;
        }
        (total - self.link_lengths[4]) as f64 / total as f64
    }
}

/// One phase's measurement.
#[derive(Debug, Clone, Default)]
pub struct Measurement {
    /// Routing between random pairs.
    pub routes: RouteStats,
    /// The topology when the routes were sent (during churn: when the
    /// last was).
    pub topology: TopologyStats,
    /// Live nodes started but still joining (no location) then.
    pub joining: usize,
    /// Simulated time at the measurement.
    pub at: Duration,
}

/// A scenario's results.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// After every node joined and the network settled.
    pub built: Measurement,
    /// While nodes crash and join, if there was churn: routes sent
    /// throughout the churn window.
    pub during_churn: Option<Measurement>,
    /// After the churn and the repair time, if there was churn.
    pub churned: Option<Measurement>,
    /// Nodes that failed to join (no location at measurement).
    pub unjoined: usize,
    /// Messages the simulator carried.
    pub messages: u64,
    /// Neighbors disconnected for overload.
    pub overloads: u64,
    /// Locations refused (none in an honest network).
    pub locations_refused: u64,
    /// Every node's counters added up.
    pub totals: reactor_ring::RingStats,
    /// Wall time to build, settle and measure the ring (the churn phase
    /// not included).
    pub built_wall: Duration,
    /// Wall time from the start to the end of the churn phase's
    /// measurement (zero without churn).
    pub during_wall: Duration,
    /// What the simulated network counted (connections, failures, sends
    /// to peers gone).
    pub net: NetStats,
}

/// A running ring simulation.
pub struct RingSim {
    /// The simulator.
    pub sim: Sim<RingNode>,
    net: Rc<Net>,
    log: Rc<RefCell<SimLog>>,
    started: Vec<bool>,
    rng: ChaCha12Rng,
    scenario: Scenario,
}

impl std::fmt::Debug for RingSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingSim")
            .field("sim", &self.sim)
            .finish_non_exhaustive()
    }
}

impl RingSim {
    /// `capacity` nodes (node 0 the gateway, which every other node dials
    /// when started), none started, on a network with the router's
    /// default keepalive timing.
    pub fn new(scenario: &Scenario, capacity: usize) -> Self {
        let base = Instant::now();
        let model = ConnectionModel {
            seed: scenario.seed,
            ..ConnectionModel::default()
        };
        let net = Net::new(model, base);
        let keys: Vec<Keypair> = (0..capacity as u64)
            .map(|i| Keypair::from_seed(scenario.seed.wrapping_mul(1_000_003).wrapping_add(i)))
            .collect();
        for key in &keys {
            net.directory.borrow_mut().add(key.peer_id(), None);
        }
        let log = Rc::new(RefCell::new(SimLog::default()));
        let mut config = scenario.config.clone();
        config.gateways = reactor_ring::Gateways::listed([net.peer(0)]);
        let mut gateway_config = config.clone();
        // One gateway serves every join of the simulation; a joiner is
        // done with it within a few seconds.
        gateway_config.max_pending_joins = capacity.max(1);
        gateway_config.join_grace = Duration::from_secs(2);
        let nodes = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                let idx = i as NodeIdx;
                let seed = scenario.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let mut state = if i == 0 {
                    RingState::new_gateway(key, gateway_config.clone(), seed, base, SIM_UNIX_START)
                } else {
                    RingState::new(key, config.clone(), seed, base, SIM_UNIX_START)
                };
                // Where peers that link to it dial it: its memory address.
                let address = net.directory.borrow().address(idx).to_string();
                state.set_addresses(vec![address]);
                let host = RingHost {
                    log: log.clone(),
                    max_htl: config.max_htl,
                };
                let node = NetNode::new(idx, state, host, net.clone());
                if i == 0 {
                    node
                } else {
                    node.with_bootstrap(vec![0])
                }
            })
            .collect();
        let sim = Sim::new(
            nodes,
            SimConfig {
                seed: scenario.seed,
                ..SimConfig::default()
            },
        );
        Self {
            sim,
            net,
            log,
            started: vec![false; capacity],
            rng: ChaCha12Rng::seed_from_u64(scenario.seed ^ 0x0051_u64.rotate_left(40)),
            scenario: scenario.clone(),
        }
    }

    /// Starts node 0, the gateway, now.
    pub fn start_gateway(&mut self) {
        self.started[0] = true;
        self.sim.start(0);
    }

    /// Starts nodes `range` one every `join_interval`.
    pub fn join(&mut self, range: std::ops::Range<usize>) {
        for i in range {
            self.sim.run_for(self.scenario.join_interval);
            self.started[i] = true;
            self.sim.start(i as NodeIdx);
        }
    }

    /// Live nodes that have a location.
    pub fn members(&self) -> Vec<NodeIdx> {
        self.sim
            .alive()
            .filter(|i| self.started[*i as usize] && self.sim.node(*i).core().location().is_some())
            .collect()
    }

    /// Live nodes started, joined or still joining.
    pub fn live(&self) -> Vec<NodeIdx> {
        self.sim
            .alive()
            .filter(|i| self.started[*i as usize])
            .collect()
    }

    /// Draws a pair of distinct live nodes among `live` and routes from the
    /// first to the second now, in the scenario's route mode; a pair with
    /// a node still joining is counted as a failure.
    fn route_pair(
        &mut self,
        live: &[NodeIdx],
        stats: &mut RouteStats,
        expected: &mut HashMap<(PeerId, u64), NodeIdx>,
    ) {
        if live.len() < 2 {
            return;
        }
        let a = live[self.rng.random_range(0..live.len())];
        let mut b = a;
        while b == a {
            b = live[self.rng.random_range(0..live.len())];
        }
        stats.sampled += 1;
        let joined = self.sim.node(a).core().location().is_some();
        let Some(target) = self.sim.node(b).core().location().filter(|_| joined) else {
            stats.not_joined += 1;
            return;
        };
        let origin = self.net.peer(a);
        let command = Command::Route {
            target,
            mode: self.scenario.route_mode,
            payload: Vec::new(),
        };
        if let Some(Ok(id)) = self
            .sim
            .with_node(a, |n, now, io| n.command(now, command, io))
        {
            expected.insert((origin, id), b);
            stats.sent += 1;
        }
    }

    /// Counts the deliveries logged since `stats` started that `expected`
    /// awaits.
    fn count_deliveries(&self, stats: &mut RouteStats, expected: &HashMap<(PeerId, u64), NodeIdx>) {
        for d in self.log.borrow().deliveries.iter() {
            if expected.get(&(d.origin, d.id)) == Some(&d.node) {
                stats.delivered += 1;
                stats.hops.push(d.hops);
            }
        }
        stats.hops.sort_unstable();
    }

    /// Routes between `pairs` random pairs of live nodes (joined or still
    /// joining: see [`RouteStats`]) at once, and waits 30 s for them.
    pub fn measure_routes(&mut self, pairs: usize) -> RouteStats {
        let live = self.live();
        let mut stats = RouteStats::default();
        self.log.borrow_mut().deliveries.clear();
        let mut expected = HashMap::new();
        for _ in 0..pairs {
            self.route_pair(&live, &mut stats, &mut expected);
        }
        self.sim.run_for(Duration::from_secs(30));
        self.count_deliveries(&mut stats, &expected);
        stats
    }

    /// Live started nodes with no location yet.
    fn joining(&self) -> usize {
        self.live().len() - self.members().len()
    }

    /// The topology of the live members now.
    pub fn topology(&self) -> TopologyStats {
        let members = self.members();
        let mut stats = TopologyStats {
            nodes: members.len(),
            degree_min: usize::MAX,
            ..TopologyStats::default()
        };
        if members.is_empty() {
            stats.degree_min = 0;
            return stats;
        }
        let index: HashMap<NodeIdx, usize> =
            members.iter().enumerate().map(|(k, i)| (*i, k)).collect();
        let mut ring: Vec<(Location, NodeIdx)> = members
            .iter()
            .filter_map(|i| Some((self.sim.node(*i).core().location()?, *i)))
            .collect();
        ring.sort();
        let neighbor_sets: Vec<BTreeSet<NodeIdx>> = members
            .iter()
            .map(|i| {
                self.sim
                    .node(*i)
                    .core()
                    .neighbor_locations()
                    .filter_map(|(p, _)| self.net.index(&p))
                    .filter(|j| index.contains_key(j))
                    .collect()
            })
            .collect();
        let mut degree_sum = 0;
        for (k, i) in members.iter().enumerate() {
            let node = self.sim.node(*i).core();
            let degree = neighbor_sets[k].len();
            degree_sum += degree;
            stats.degree_min = stats.degree_min.min(degree);
            stats.degree_max = stats.degree_max.max(degree);
            let me = node.location().unwrap_or_default();
            for (_, l) in node.neighbor_locations() {
                let d = me.distance(l).as_f64();
                let bin = [1e-4, 1e-3, 1e-2, 1e-1]
                    .iter()
                    .position(|edge| d < *edge)
                    .unwrap_or(4);
                stats.link_lengths[bin] += 1;
            }
        }
        stats.degree_mean = degree_sum as f64 / members.len() as f64;
        // Nearest 3 and adjacency, from the sorted ring.
        let n = ring.len();
        let (mut near_hits, mut near_total, mut adjacent) = (0usize, 0usize, 0usize);
        for (pos, (loc, i)) in ring.iter().enumerate() {
            let links = &neighbor_sets[index[i]];
            let mut candidates: Vec<(u64, NodeIdx)> = (1..=3.min(n - 1))
                .flat_map(|s| [(pos + s) % n, (pos + n - s) % n])
                .map(|p| (loc.distance(ring[p].0).raw(), ring[p].1))
                .collect();
            candidates.sort_unstable();
            candidates.dedup_by_key(|c| c.1);
            for (_, j) in candidates.iter().take(3.min(n - 1)) {
                near_total += 1;
                near_hits += usize::from(links.contains(j));
            }
            if n > 1 {
                let succ = ring[(pos + 1) % n].1;
                let pred = ring[(pos + n - 1) % n].1;
                adjacent += usize::from(links.contains(&succ) && links.contains(&pred));
            }
        }
        stats.nearest3 = near_hits as f64 / near_total.max(1) as f64;
        stats.adjacent = adjacent as f64 / n.max(1) as f64;
        // Components of the undirected graph.
        let mut undirected: Vec<Vec<usize>> = vec![Vec::new(); members.len()];
        for (k, set) in neighbor_sets.iter().enumerate() {
            for j in set {
                let m = index[j];
                undirected[k].push(m);
                undirected[m].push(k);
            }
        }
        let mut seen = vec![false; members.len()];
        for start in 0..members.len() {
            if seen[start] {
                continue;
            }
            stats.components += 1;
            seen[start] = true;
            let mut queue = vec![start];
            while let Some(k) = queue.pop() {
                for &m in &undirected[k] {
                    if !seen[m] {
                        seen[m] = true;
                        queue.push(m);
                    }
                }
            }
        }
        stats
    }

    /// A measurement now.
    pub fn measure(&mut self, pairs: usize) -> Measurement {
        let topology = self.topology();
        let joining = self.joining();
        let at = self.sim.now();
        let routes = self.measure_routes(pairs);
        Measurement {
            routes,
            topology,
            joining,
            at,
        }
    }

    /// The churn phase, measured while it happens: over `window`, `crash`
    /// random live nodes (never the gateway) crash — each of their peers
    /// notices with the router's keepalive timing, or one round trip after
    /// it next sends to one — the nodes `join` start, and `pairs` routes
    /// go between random pairs of the live nodes of that moment (joined or
    /// still joining), each at its own random time. Returns once the last
    /// route has had 30 s.
    pub fn churn_while_routing(
        &mut self,
        crash: usize,
        join: std::ops::Range<usize>,
        window: Duration,
        pairs: usize,
    ) -> Measurement {
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        enum Step {
            Crash,
            Join(usize),
            Route,
        }
        let start = self.sim.now();
        let span = window.as_micros().max(1) as u64;
        let at = |rng: &mut ChaCha12Rng| Duration::from_micros(rng.random_range(0..span));
        let mut steps: Vec<(Duration, Step)> = Vec::new();
        for _ in 0..crash {
            steps.push((at(&mut self.rng), Step::Crash));
        }
        for i in join {
            steps.push((at(&mut self.rng), Step::Join(i)));
        }
        for _ in 0..pairs {
            steps.push((at(&mut self.rng), Step::Route));
        }
        steps.sort();
        self.log.borrow_mut().deliveries.clear();
        let mut stats = RouteStats::default();
        let mut expected = HashMap::new();
        for (offset, step) in steps {
            self.sim.run_until(start + offset);
            match step {
                Step::Crash => {
                    let live: Vec<NodeIdx> = self.live().into_iter().filter(|i| *i != 0).collect();
                    if !live.is_empty() {
                        let victim = live[self.rng.random_range(0..live.len())];
                        self.sim.crash_node(victim);
                    }
                }
                Step::Join(i) => {
                    self.started[i] = true;
                    self.sim.start(i as NodeIdx);
                }
                Step::Route => {
                    let live = self.live();
                    self.route_pair(&live, &mut stats, &mut expected);
                }
            }
        }
        self.sim.run_until(start + window);
        let topology = self.topology();
        let joining = self.joining();
        let at = self.sim.now();
        self.sim.run_for(Duration::from_secs(30));
        self.count_deliveries(&mut stats, &expected);
        Measurement {
            routes: stats,
            topology,
            joining,
            at,
        }
    }

    /// What the simulated nodes' applications saw.
    pub fn log(&self) -> std::cell::Ref<'_, SimLog> {
        self.log.borrow()
    }

    /// What the simulated network counted.
    pub fn net_stats(&self) -> NetStats {
        self.net.stats()
    }
}

/// Builds a ring by joining `scenario.nodes` nodes one by one through node
/// 0, lets it settle and measures it; then, if `churn > 0`, crashes that
/// share of the nodes and joins as many new ones over `churn_window` while
/// routing ([`RingSim::churn_while_routing`]), waits `repair` and measures
/// again.
pub fn run_scenario(scenario: &Scenario) -> Report {
    let wall = Instant::now();
    let churn = (scenario.nodes as f64 * scenario.churn).round() as usize;
    let mut ring = RingSim::new(scenario, scenario.nodes + churn);
    ring.start_gateway();
    ring.join(1..scenario.nodes);
    ring.sim.run_for(scenario.settle);
    let built = ring.measure(scenario.pairs);
    let built_wall = wall.elapsed();
    let mut during_wall = Duration::ZERO;
    let (during_churn, churned) = if churn > 0 {
        let during = ring.churn_while_routing(
            churn,
            scenario.nodes..scenario.nodes + churn,
            scenario.churn_window,
            scenario.pairs,
        );
        during_wall = wall.elapsed();
        ring.sim.run_for(scenario.repair);
        (Some(during), Some(ring.measure(scenario.pairs)))
    } else {
        (None, None)
    };
    let unjoined = (0..ring.started.len())
        .filter(|i| {
            ring.started[*i]
                && ring.sim.is_alive(*i as NodeIdx)
                && ring.sim.node(*i as NodeIdx).core().location().is_none()
        })
        .count();
    let mut totals = reactor_ring::RingStats::default();
    for node in ring.sim.nodes() {
        let s = node.core().stats();
        totals.joins_served += s.joins_served;
        totals.joins_refused += s.joins_refused;
        totals.locations_verified += s.locations_verified;
        totals.locations_refused += s.locations_refused;
        totals.routes_started += s.routes_started;
        totals.routes_delivered += s.routes_delivered;
        totals.routes_forwarded += s.routes_forwarded;
        totals.routes_backtracked += s.routes_backtracked;
        totals.routes_failed += s.routes_failed;
        totals.connects_sent += s.connects_sent;
        totals.connects_accepted += s.connects_accepted;
        totals.connects_refused += s.connects_refused;
        totals.neighbors_added += s.neighbors_added;
        totals.neighbors_refused += s.neighbors_refused;
        totals.links_pruned += s.links_pruned;
        totals.overload_disconnects += s.overload_disconnects;
        totals.messages_dropped += s.messages_dropped;
        totals.neighbors += s.neighbors;
        totals.joins_repeated += s.joins_repeated;
        totals.joins_refused_rebind += s.joins_refused_rebind;
        totals.locations_conflicting += s.locations_conflicting;
        totals.accepts_forged += s.accepts_forged;
        totals.accepts_implausible += s.accepts_implausible;
        totals.expected_evicted += s.expected_evicted;
        totals.lists_refused += s.lists_refused;
    }
    let log = ring.log();
    Report {
        totals,
        built_wall,
        during_wall,
        built,
        during_churn,
        churned,
        unjoined,
        messages: ring.sim.stats().delivered,
        overloads: log.overloads,
        locations_refused: log.locations_refused,
        net: ring.net_stats(),
    }
}
