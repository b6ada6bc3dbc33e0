//! The gossip core in testkit's discrete-event simulator, and the
//! scenarios of issue 6 (single sender, random sender, 80 % crash) that
//! the `gossip_sim` binary and the tests run. A crate of its own
//! (`reactor-gossip-sim`), so that the reactor a node links carries no
//! simulator, testkit or command-line parser (ADR 0001).
//!
//! Each simulated node is a [`GossipState`] — the very core the reactor
//! runs, signatures included — behind [`SimGossipNode`]. What the
//! simulator adds is what the router would do:
//!
//! - **Connections.** [`Action::Connect`] sends a `Hello` over the
//!   simulated link; the peer counts us connected when it arrives, we
//!   count it connected when its `HelloAck` comes back (one round trip),
//!   and a crashed peer is reported unreachable instead (one round trip
//!   later). [`Action::Disconnect`] sends a `Bye`.
//! - **Failures.** A message sent to a crashed node comes back as
//!   [`SimNode::on_unreachable`], which the adapter reports as a peer down,
//!   as a broken connection would be reported by the router.
//!
//! Latencies are seeded per link (10–50 ms by default); a run is a
//! function of its seed.
//!
//! # Metrics
//!
//! - **RMR** (relative message redundancy) of a broadcast:
//!   `payload messages / (receivers) − 1`, where payload messages are the
//!   eager pushes and graft answers sent while the broadcast spreads
//!   (control messages — `IHave`, `Graft`, `Prune`, membership — are
//!   counted apart) and receivers are the live nodes but the sender. 0
//!   means every node got the payload exactly once.
//! - **LDH** (last delivery hop): the largest hop count of a delivery; a
//!   neighbour of the sender is at 1 hop.
//! - **Missed**: live nodes (but the sender) that did not deliver it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use p2p::{Keypair, PeerId};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use testkit::sim::{Io, NodeIdx, Sim, SimConfig, SimNode, Table};

use reactor_gossip::{
    Action, Contact, Event, GossipConfig, GossipState, GossipStats, MessageId, TopicId,
    TopicMessage,
};

/// What simulated nodes send each other.
#[derive(Debug, Clone)]
pub enum Wire {
    /// Opens a connection (the router's handshake).
    Hello,
    /// Answers `Hello`.
    HelloAck,
    /// Closes a connection.
    Bye,
    /// A gossip message.
    Gossip(TopicMessage),
}

/// Node indices ↔ PeerIds, shared by every node of a simulation.
#[derive(Debug)]
pub struct Directory {
    peers: Vec<PeerId>,
    index: HashMap<PeerId, NodeIdx>,
}

impl Directory {
    /// A directory of `peers`, node `i` being `peers[i]`.
    pub fn new(peers: Vec<PeerId>) -> Self {
        let index = peers
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, i as NodeIdx))
            .collect();
        Self { peers, index }
    }

    /// Node `i`'s PeerId.
    pub fn peer(&self, i: NodeIdx) -> PeerId {
        self.peers[i as usize]
    }

    /// `peer`'s node index.
    pub fn index(&self, peer: &PeerId) -> Option<NodeIdx> {
        self.index.get(peer).copied()
    }
}

/// Timer token of the core's tick.
const TICK: u64 = 0;
/// Timer token `PEER_DOWN + i`: the connection to node `i` is reported
/// down (see [`SimGossipNode::connection_lost`]).
const PEER_DOWN: u64 = 1 << 32;

/// A [`GossipState`] as a simulated node.
#[derive(Debug)]
pub struct SimGossipNode {
    core: GossipState,
    directory: Arc<Directory>,
    /// The instant simulated time zero stands for.
    base: Instant,
    /// The earliest tick timer pending.
    scheduled: Option<Duration>,
    /// Messages delivered to the application: id → hop count.
    delivered: HashMap<MessageId, u32>,
    /// Deliveries of an id already delivered (the core promises none).
    duplicate_deliveries: u64,
    /// Peers the core reported for misbehaviour.
    reports: u64,
}

impl SimGossipNode {
    /// Node `index` of `directory`, signing with `keypair`.
    pub fn new(
        keypair: Keypair,
        directory: Arc<Directory>,
        config: GossipConfig,
        seed: u64,
        base: Instant,
    ) -> Self {
        Self {
            core: GossipState::new(keypair, Vec::new(), config, seed, base, SIM_UNIX_EPOCH_MS),
            directory,
            base,
            scheduled: None,
            delivered: HashMap::new(),
            duplicate_deliveries: 0,
            reports: 0,
        }
    }

    /// The core.
    pub fn core(&self) -> &GossipState {
        &self.core
    }

    /// Whether message `id` was delivered here, and at which hop count.
    pub fn delivered(&self, id: &MessageId) -> Option<u32> {
        self.delivered.get(id).copied()
    }

    /// Deliveries of a message already delivered (must stay 0).
    pub fn duplicate_deliveries(&self) -> u64 {
        self.duplicate_deliveries
    }

    /// Misbehaviour reports the core made.
    pub fn reports(&self) -> u64 {
        self.reports
    }

    fn at(&self, now: Duration) -> Instant {
        self.base + now
    }

    /// Joins `topic` through node `contact` (or no one).
    pub fn join(
        &mut self,
        topic: TopicId,
        contact: Option<NodeIdx>,
        now: Duration,
        io: &mut Io<Wire>,
    ) {
        let bootstrap = contact
            .map(|c| vec![Contact::bare(self.directory.peer(c))])
            .unwrap_or_default();
        let actions = self
            .core
            .join(topic, bootstrap, self.at(now))
            .unwrap_or_default();
        self.apply(actions, now, io);
    }

    /// Publishes `payload` on `topic`.
    pub fn publish(
        &mut self,
        topic: TopicId,
        payload: Bytes,
        now: Duration,
        io: &mut Io<Wire>,
    ) -> Option<MessageId> {
        let (id, actions) = self.core.publish(topic, payload, self.at(now)).ok()?;
        self.apply(actions, now, io);
        Some(id)
    }

    /// The nodes this node holds connections to.
    pub fn connected_nodes(&self) -> Vec<NodeIdx> {
        self.core
            .connected_peers()
            .filter_map(|p| self.directory.index(&p))
            .collect()
    }

    /// The router's failure detector: the connection to node `peer` (which
    /// crashed) is reported down after `after` — the router notices a dead
    /// peer when its pings go unanswered (`ping_interval` + `pong_timeout`).
    pub fn connection_lost(&mut self, peer: NodeIdx, after: Duration, io: &mut Io<Wire>) {
        io.timer(after, PEER_DOWN + u64::from(peer));
    }

    fn index(&self, peer: &PeerId) -> Option<NodeIdx> {
        self.directory.index(peer)
    }

    fn apply(&mut self, actions: Vec<Action>, now: Duration, io: &mut Io<Wire>) {
        let mut queue = std::collections::VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Send { to, message } => {
                    if let Some(to) = self.index(&to) {
                        io.send(to, Wire::Gossip(message));
                    }
                }
                Action::Connect { peer, .. } => {
                    if let Some(to) = self.index(&peer) {
                        io.send(to, Wire::Hello);
                    }
                }
                Action::Disconnect { peer } => {
                    if let Some(to) = self.index(&peer) {
                        io.send(to, Wire::Bye);
                    }
                    let at = self.at(now);
                    queue.extend(self.core.on_peer_down(peer, at));
                }
                Action::Report { .. } => self.reports += 1,
                Action::Event(Event::Received(delivery)) => {
                    if self.delivered.insert(delivery.id, delivery.hops).is_some() {
                        self.duplicate_deliveries += 1;
                    }
                }
                Action::Event(_) => {}
            }
        }
        let next = self.core.next_wakeup().saturating_duration_since(self.base);
        if self.scheduled.is_none_or(|s| next < s) {
            io.timer(next.saturating_sub(now), TICK);
            self.scheduled = Some(next);
        }
    }
}

/// The Unix time (ms) simulated time zero stands for.
pub const SIM_UNIX_EPOCH_MS: u64 = 1_700_000_000_000;

impl SimNode for SimGossipNode {
    type Message = Wire;

    fn on_message(&mut self, now: Duration, from: NodeIdx, message: Wire, io: &mut Io<Wire>) {
        let peer = self.directory.peer(from);
        let at = self.at(now);
        let actions = match message {
            Wire::Hello => {
                io.send(from, Wire::HelloAck);
                self.core.on_peer_up(peer, Vec::new(), at)
            }
            Wire::HelloAck => self.core.on_peer_up(peer, Vec::new(), at),
            Wire::Bye => self.core.on_peer_down(peer, at),
            Wire::Gossip(message) => self.core.on_message(peer, message, at),
        };
        self.apply(actions, now, io);
    }

    fn on_timer(&mut self, now: Duration, timer: u64, io: &mut Io<Wire>) {
        if timer >= PEER_DOWN {
            let peer = self.directory.peer((timer - PEER_DOWN) as NodeIdx);
            if self.core.is_connected(&peer) {
                let actions = self.core.on_peer_down(peer, self.at(now));
                self.apply(actions, now, io);
            }
            return;
        }
        if self.scheduled.is_some_and(|s| s <= now) {
            self.scheduled = None;
        }
        let actions = self.core.on_tick(self.at(now));
        self.apply(actions, now, io);
    }

    fn on_unreachable(&mut self, now: Duration, peer: NodeIdx, io: &mut Io<Wire>) {
        let peer = self.directory.peer(peer);
        let actions = self.core.on_peer_down(peer, self.at(now));
        self.apply(actions, now, io);
    }
}

/// Which senders broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Node 0 sends every round.
    Single,
    /// A random live node sends each round.
    Random,
    /// Rounds from random senders; then a fraction of the nodes crash at
    /// once and rounds continue from random survivors.
    Crash,
}

impl std::str::FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "single" => Ok(Scenario::Single),
            "random" => Ok(Scenario::Random),
            "crash80" | "crash" => Ok(Scenario::Crash),
            other => Err(format!(
                "unknown scenario {other:?} (single, random, crash80)"
            )),
        }
    }
}

/// A scenario's settings.
#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    /// Which senders.
    pub scenario: Scenario,
    /// Nodes.
    pub nodes: usize,
    /// Measured rounds (before the crash, for [`Scenario::Crash`]).
    pub rounds: usize,
    /// Rounds after the crash ([`Scenario::Crash`]).
    pub rounds_after_crash: usize,
    /// Fraction of the nodes that crash ([`Scenario::Crash`]).
    pub crash_fraction: f64,
    /// Seed of keys, joins, senders and latencies.
    pub seed: u64,
    /// The gossip parameters of every node.
    pub gossip: GossipConfig,
    /// Time between two nodes' joins.
    pub join_spacing: Duration,
    /// Time after the last join before the first broadcast.
    pub settle: Duration,
    /// Unmeasured broadcasts after settling (they build the tree: the
    /// first broadcast goes over every link of the overlay).
    pub warmup_rounds: usize,
    /// Time between broadcasts; each is measured over this window.
    pub round_interval: Duration,
    /// The simulator's links.
    pub sim: SimConfig,
    /// After a crash, each survivor's connection to a crashed node is
    /// reported down after a delay drawn uniformly from this range (the
    /// router's pings: `ping_interval` 15 s, `pong_timeout` 10 s). A
    /// message sent to a crashed node is reported sooner, one round trip
    /// later, as a failed write would be.
    pub failure_detection: (Duration, Duration),
}

impl ScenarioConfig {
    /// Defaults for `scenario` on `nodes` nodes.
    pub fn new(scenario: Scenario, nodes: usize, rounds: usize, seed: u64) -> Self {
        Self {
            scenario,
            nodes,
            rounds,
            rounds_after_crash: 20,
            crash_fraction: 0.8,
            seed,
            gossip: GossipConfig::default(),
            join_spacing: Duration::from_millis(5),
            settle: Duration::from_secs(60),
            warmup_rounds: 1,
            round_interval: Duration::from_secs(2),
            sim: SimConfig {
                seed,
                ..SimConfig::default()
            },
            failure_detection: (Duration::from_secs(10), Duration::from_secs(25)),
        }
    }
}

/// One broadcast's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundResult {
    /// "warmup", "steady" or "after-crash".
    pub phase: &'static str,
    /// Round number within the phase (from 1).
    pub round: usize,
    /// The sender.
    pub sender: NodeIdx,
    /// Live nodes but the sender: who should get it.
    pub receivers: usize,
    /// Receivers that delivered it.
    pub delivered: usize,
    /// Receivers that did not.
    pub missed: usize,
    /// Payload messages sent in the round's window.
    pub payload_messages: u64,
    /// Control messages sent in the round's window.
    pub control_messages: u64,
    /// `payload_messages / receivers - 1`.
    pub rmr: f64,
    /// Largest hop count of a delivery.
    pub ldh: u32,
    /// Mean hop count of the deliveries.
    pub mean_hops: f64,
}

impl RoundResult {
    /// Fraction of the receivers that delivered.
    pub fn coverage(&self) -> f64 {
        if self.receivers == 0 {
            1.0
        } else {
            self.delivered as f64 / self.receivers as f64
        }
    }
}

/// The shape of the overlay at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverlayShape {
    /// Mean active view size over live nodes.
    pub mean_active: f64,
    /// Smallest active view.
    pub min_active: usize,
    /// Mean passive view size.
    pub mean_passive: f64,
    /// Live nodes reachable from the first live node over active views.
    pub reachable: usize,
    /// Live nodes.
    pub live: usize,
}

/// The live nodes' size estimates at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeSample {
    /// When: "settled", "end", "after-crash".
    pub phase: &'static str,
    /// The true number of live members.
    pub live: usize,
    /// Mean of the live nodes' estimates.
    pub mean: f64,
    /// Smallest estimate.
    pub min: f64,
    /// Largest estimate.
    pub max: f64,
}

impl SizeSample {
    /// The largest relative error of any node's estimate.
    pub fn worst_error(&self) -> f64 {
        let live = self.live.max(1) as f64;
        ((self.min - live).abs().max((self.max - live).abs())) / live
    }
}

/// The live nodes' size estimates now.
pub fn size_sample(sim: &Sim<SimGossipNode>, phase: &'static str) -> SizeSample {
    let topic = scenario_topic();
    let estimates: Vec<f64> = sim
        .alive()
        .filter_map(|i| sim.node(i).core().size_estimate(&topic))
        .collect();
    let n = estimates.len().max(1) as f64;
    SizeSample {
        phase,
        live: sim.alive().count(),
        mean: estimates.iter().sum::<f64>() / n,
        min: estimates.iter().copied().fold(f64::INFINITY, f64::min),
        max: estimates.iter().copied().fold(0.0, f64::max),
    }
}

/// A scenario's results.
#[derive(Debug, Clone)]
pub struct ScenarioReport {
    /// Network size estimates (see [`reactor_gossip::state::estimate`]).
    pub sizes: Vec<SizeSample>,
    /// Each broadcast, in order.
    pub rounds: Vec<RoundResult>,
    /// The overlay when the broadcasts began.
    pub overlay: OverlayShape,
    /// The overlay at the end.
    pub overlay_end: OverlayShape,
    /// Deliveries of a message already delivered (must be 0).
    pub duplicate_deliveries: u64,
    /// Misbehaviour reports (must be 0: every node is honest).
    pub reports: u64,
    /// Survivors of the crash that knew no live peer at the moment of the
    /// crash (every peer of both their views had crashed): no membership
    /// protocol can bring them back without a new contact.
    pub orphans: Vec<NodeIdx>,
    /// Simulated time at the end.
    pub simulated: Duration,
    /// Events the simulator processed (messages delivered and timers).
    pub events: u64,
}

impl ScenarioReport {
    /// The rounds of `phase`.
    pub fn phase(&self, phase: &str) -> impl Iterator<Item = &RoundResult> {
        let phase = phase.to_string();
        self.rounds.iter().filter(move |r| r.phase == phase)
    }

    /// Mean RMR of `phase`'s rounds.
    pub fn mean_rmr(&self, phase: &str) -> f64 {
        mean(self.phase(phase).map(|r| r.rmr))
    }

    /// Largest LDH of `phase`'s rounds.
    pub fn max_ldh(&self, phase: &str) -> u32 {
        self.phase(phase).map(|r| r.ldh).max().unwrap_or(0)
    }

    /// Missed deliveries over `phase`'s rounds.
    pub fn missed(&self, phase: &str) -> usize {
        self.phase(phase).map(|r| r.missed).sum()
    }

    /// Every round as a table.
    pub fn table(&self) -> Table {
        let mut table = Table::new(&[
            "phase",
            "round",
            "sender",
            "receivers",
            "delivered",
            "missed",
            "coverage",
            "payload",
            "control",
            "rmr",
            "ldh",
            "mean_hops",
        ]);
        for r in &self.rounds {
            table.row(vec![
                r.phase.to_string(),
                r.round.to_string(),
                r.sender.to_string(),
                r.receivers.to_string(),
                r.delivered.to_string(),
                r.missed.to_string(),
                format!("{:.4}", r.coverage()),
                r.payload_messages.to_string(),
                r.control_messages.to_string(),
                format!("{:.4}", r.rmr),
                r.ldh.to_string(),
                format!("{:.2}", r.mean_hops),
            ]);
        }
        table
    }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// splitmix64 of `seed + i`.
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The topic every scenario broadcasts on.
pub fn scenario_topic() -> TopicId {
    TopicId::from_name("switchyard/sim")
}

/// Builds `nodes` simulated gossip nodes (keys from `seed`).
pub fn build_sim(
    nodes: usize,
    seed: u64,
    gossip: &GossipConfig,
    sim: SimConfig,
) -> Sim<SimGossipNode> {
    let keys: Vec<Keypair> = (0..nodes as u64)
        .map(|i| Keypair::from_seed(mix(seed, i)))
        .collect();
    let directory = Arc::new(Directory::new(keys.iter().map(Keypair::peer_id).collect()));
    let base = Instant::now();
    let nodes = keys
        .into_iter()
        .enumerate()
        .map(|(i, key)| {
            SimGossipNode::new(
                key,
                directory.clone(),
                gossip.clone(),
                mix(seed ^ 0x0060_551e, i as u64),
                base,
            )
        })
        .collect();
    Sim::new(nodes, sim)
}

/// Node `i` joins through a random earlier node, `spacing` apart; then the
/// overlay settles for `settle`.
pub fn build_overlay(
    sim: &mut Sim<SimGossipNode>,
    rng: &mut ChaCha12Rng,
    spacing: Duration,
    settle: Duration,
) {
    let topic = scenario_topic();
    let start = sim.now();
    for i in 0..sim.len() as NodeIdx {
        sim.run_until(start + spacing * i);
        let contact = (i > 0).then(|| rng.random_range(0..i));
        sim.with_node(i, |node, now, io| node.join(topic, contact, now, io));
    }
    sim.run_for(settle);
}

/// The overlay's shape over the live nodes.
pub fn overlay_shape(sim: &Sim<SimGossipNode>) -> OverlayShape {
    let topic = scenario_topic();
    let live: Vec<NodeIdx> = sim.alive().collect();
    let mut active_sum = 0usize;
    let mut passive_sum = 0usize;
    let mut min_active = usize::MAX;
    for &i in &live {
        let core = sim.node(i).core();
        let active = core.active_view(&topic).len();
        active_sum += active;
        min_active = min_active.min(active);
        passive_sum += core.passive_view(&topic).len();
    }
    let mut seen = vec![false; sim.len()];
    let mut reachable = 0;
    if let Some(&first) = live.first() {
        let mut stack = vec![first];
        seen[first as usize] = true;
        while let Some(i) = stack.pop() {
            reachable += 1;
            for peer in sim.node(i).core().active_view(&topic) {
                if let Some(j) = sim.node(i).directory.index(&peer) {
                    if sim.is_alive(j) && !seen[j as usize] {
                        seen[j as usize] = true;
                        stack.push(j);
                    }
                }
            }
        }
    }
    let n = live.len().max(1) as f64;
    OverlayShape {
        mean_active: active_sum as f64 / n,
        min_active: if live.is_empty() { 0 } else { min_active },
        mean_passive: passive_sum as f64 / n,
        reachable,
        live: live.len(),
    }
}

fn sum_stats(sim: &Sim<SimGossipNode>) -> GossipStats {
    let mut total = GossipStats::default();
    for node in sim.nodes() {
        let s = node.core().stats();
        total.payload_sent += s.payload_sent;
        total.control_sent += s.control_sent;
    }
    total
}

/// Broadcasts once from `sender` and measures it over `window`.
pub fn broadcast_round(
    sim: &mut Sim<SimGossipNode>,
    sender: NodeIdx,
    phase: &'static str,
    round: usize,
    window: Duration,
) -> RoundResult {
    let topic = scenario_topic();
    let before = sum_stats(sim);
    let payload = Bytes::from(format!("{phase} round {round} from {sender}"));
    let id = sim
        .with_node(sender, |node, now, io| {
            node.publish(topic, payload, now, io)
        })
        .flatten();
    sim.run_for(window);
    let after = sum_stats(sim);
    let mut delivered = 0usize;
    let mut receivers = 0usize;
    let mut ldh = 0u32;
    let mut hops_sum = 0u64;
    for i in sim.alive().collect::<Vec<_>>() {
        if i == sender {
            continue;
        }
        receivers += 1;
        if let Some(hops) = id.and_then(|id| sim.node(i).delivered(&id)) {
            delivered += 1;
            ldh = ldh.max(hops);
            hops_sum += u64::from(hops);
        }
    }
    let payload_messages = after.payload_sent - before.payload_sent;
    RoundResult {
        phase,
        round,
        sender,
        receivers,
        delivered,
        missed: receivers - delivered,
        payload_messages,
        control_messages: after.control_sent - before.control_sent,
        rmr: if receivers == 0 {
            0.0
        } else {
            payload_messages as f64 / receivers as f64 - 1.0
        },
        ldh,
        mean_hops: if delivered == 0 {
            0.0
        } else {
            hops_sum as f64 / delivered as f64
        },
    }
}

/// Runs a whole scenario.
pub fn run_scenario(config: &ScenarioConfig) -> ScenarioReport {
    run_scenario_keeping_sim(config).0
}

/// Runs a whole scenario and returns the simulation too, to look into.
pub fn run_scenario_keeping_sim(config: &ScenarioConfig) -> (ScenarioReport, Sim<SimGossipNode>) {
    let mut rng = ChaCha12Rng::seed_from_u64(config.seed ^ 0x5ce7_a110);
    let mut sim = build_sim(
        config.nodes,
        config.seed,
        &config.gossip,
        config.sim.clone(),
    );
    build_overlay(&mut sim, &mut rng, config.join_spacing, config.settle);
    let overlay = overlay_shape(&sim);
    let mut sizes = vec![size_sample(&sim, "settled")];
    let mut rounds = Vec::new();
    let pick = |sim: &Sim<SimGossipNode>, rng: &mut ChaCha12Rng, scenario: Scenario| -> NodeIdx {
        match scenario {
            Scenario::Single => 0,
            Scenario::Random | Scenario::Crash => {
                let live: Vec<NodeIdx> = sim.alive().collect();
                live.choose(rng).copied().unwrap_or(0)
            }
        }
    };
    for round in 1..=config.warmup_rounds {
        let sender = pick(&sim, &mut rng, config.scenario);
        rounds.push(broadcast_round(
            &mut sim,
            sender,
            "warmup",
            round,
            config.round_interval,
        ));
    }
    for round in 1..=config.rounds {
        let sender = pick(&sim, &mut rng, config.scenario);
        rounds.push(broadcast_round(
            &mut sim,
            sender,
            "steady",
            round,
            config.round_interval,
        ));
    }
    let mut orphans = Vec::new();
    if config.scenario == Scenario::Crash {
        let mut order: Vec<NodeIdx> = (0..sim.len() as NodeIdx).collect();
        order.shuffle(&mut rng);
        let crashed = (sim.len() as f64 * config.crash_fraction).round() as usize;
        for &i in order.iter().take(crashed) {
            sim.crash(i);
        }
        let survivors: Vec<NodeIdx> = sim.alive().collect();
        let topic = scenario_topic();
        orphans = survivors
            .iter()
            .copied()
            .filter(|&j| {
                let core = sim.node(j).core();
                !core
                    .active_view(&topic)
                    .into_iter()
                    .chain(core.passive_view(&topic))
                    .filter_map(|p| sim.node(j).directory.index(&p))
                    .any(|k| sim.is_alive(k))
            })
            .collect();
        let (lo, hi) = config.failure_detection;
        for j in survivors {
            let lost: Vec<NodeIdx> = sim
                .node(j)
                .connected_nodes()
                .into_iter()
                .filter(|&d| !sim.is_alive(d))
                .collect();
            for d in lost {
                let after = lo + (hi.saturating_sub(lo)).mul_f64(rng.random::<f64>());
                sim.with_node(j, |node, _now, io| node.connection_lost(d, after, io));
            }
        }
        for round in 1..=config.rounds_after_crash {
            let sender = pick(&sim, &mut rng, config.scenario);
            rounds.push(broadcast_round(
                &mut sim,
                sender,
                "after-crash",
                round,
                config.round_interval,
            ));
        }
    }
    if config.scenario == Scenario::Crash {
        // Two epochs: one that starts after the crash, and its end.
        sim.run_for(2 * config.gossip.estimate_epoch);
        sizes.push(size_sample(&sim, "after-crash"));
    } else {
        sizes.push(size_sample(&sim, "end"));
    }
    let overlay_end = overlay_shape(&sim);
    let duplicate_deliveries = sim.nodes().iter().map(|n| n.duplicate_deliveries()).sum();
    let reports = sim.nodes().iter().map(|n| n.reports()).sum();
    let stats = sim.stats();
    let report = ScenarioReport {
        sizes,
        rounds,
        overlay,
        overlay_end,
        duplicate_deliveries,
        reports,
        orphans,
        simulated: sim.now(),
        events: stats.delivered + stats.timers,
    };
    (report, sim)
}
