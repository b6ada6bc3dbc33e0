//! The gossip core in testkit's discrete-event simulator, and the
//! scenarios of issue 6 (single sender, random sender, 80 % crash) that
//! the `gossip_sim` binary and the tests run. A crate of its own
//! (`reactor-gossip-sim`), so that the reactor a node links carries no
//! simulator, testkit or command-line parser (ADR 0001).
//!
//! Each simulated node is a [`GossipState`] — the very core the reactor
//! runs, signatures included — on `testkit::sim::net`, the one model of
//! the router's connections every reactor's simulator shares
//! ([`SimGossipNode`] is a [`NetNode`] with a [`Deliveries`] host that
//! records what reached the application). What the model does:
//!
//! - **Connections.** [`Output::Connect`](p2p::reactor::Output::Connect)
//!   opens a connection that the other side acknowledges (one round
//!   trip); a crashed peer is reported as a failed dial instead.
//!   A disconnect closes it at once here and at the other side once the
//!   close arrives. Every node listens at a memory address naming its
//!   PeerId, and contacts carry it, as on the router.
//! - **Failures.** When nodes crash ([`Sim::crash_node`]), each peer
//!   connected to one notices with the router's keepalive timing (a ping
//!   phase in `[0, ping_interval)` fixed per pair, plus `pong_timeout`:
//!   10–25 s with the router's defaults), or one round trip after it next
//!   sends to it, as a reset connection tells it.
//!
//! Latencies are seeded per link (10–50 ms by default); a run is a
//! function of its seed.
//!
//! # Metrics, as iroh-gossip's simulator computes them
//!
//! The definitions are those of iroh-gossip's `src/proto/sim.rs` (the
//! anchor of issue 6), so that a figure can sit beside iroh's:
//!
//! - **RMR** (relative message redundancy) of a broadcast:
//!   `payload messages received / (nodes that delivered − 1) − 1`, where
//!   payload messages are the copies of any payload (eager pushes and
//!   graft answers) received by any node during the round (control
//!   messages — `IHave`, `Graft`, `Prune`, membership — are counted apart),
//!   and the nodes that delivered exclude the sender. 0 when fewer than two
//!   nodes delivered.
//! - **LDH** (last delivery hop): the largest number of links a delivered
//!   copy travelled past the first — iroh's round counter, 0 at a
//!   neighbour of the sender. (`mean_hops` counts every link: 1 at a
//!   neighbour.)
//! - **Missed**: live nodes (but the sender) that did not deliver it.
//!
//! Every round is measured, the first one included: it builds the tree
//! (it floods every link of the overlay, RMR about 4), so it is reported
//! on its own line as well as in the mean over all rounds, which is what
//! iroh reports. A round is measured over `round_interval` (2 s), or, as
//! iroh does, until every live node delivered (at most `round_interval`;
//! [`RoundEnd::LastDelivery`]); the next broadcast starts when it ends.
//!
//! What else differs from iroh's simulator is a parameter: how long the
//! overlay settles before the first broadcast (`settle`: ours 60 s, iroh's
//! 20 × its largest latency, 1 s at 10–50 ms), how nodes join
//! ([`Bootstrap`]: ours each through a random earlier node, 5 ms apart;
//! iroh's all through the first node at once), and the protocols'
//! parameters (ADR 0009).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use p2p::{Keypair, RouterConfig};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use testkit::sim::net::{ConnectionModel, Host, Net, NetNode};
use testkit::sim::{NodeIdx, Sim, SimConfig, Table};

use reactor_gossip::{
    Contact, Event, GossipCommand, GossipConfig, GossipReply, GossipState, GossipStats, MessageId,
    TopicId,
};

/// What a simulated node's application saw: every delivery and its hop
/// count.
#[derive(Debug, Default)]
pub struct Deliveries {
    delivered: HashMap<MessageId, u32>,
    duplicates: u64,
    /// The broadcast being measured, shared by every node's host.
    watch: Rc<RefCell<RoundWatch>>,
}

/// The broadcast a round measures, and how many nodes delivered it so far.
#[derive(Debug, Default)]
pub struct RoundWatch {
    /// The message.
    pub id: Option<MessageId>,
    /// Deliveries of it.
    pub delivered: usize,
}

impl Deliveries {
    /// A host that also counts its deliveries of `watch`'s message.
    pub fn watching(watch: Rc<RefCell<RoundWatch>>) -> Self {
        Self {
            watch,
            ..Self::default()
        }
    }

    /// Whether message `id` was delivered here, and at which hop count.
    pub fn delivered(&self, id: &MessageId) -> Option<u32> {
        self.delivered.get(id).copied()
    }

    /// Deliveries of a message already delivered (the core promises none).
    pub fn duplicate_deliveries(&self) -> u64 {
        self.duplicates
    }
}

impl Host<GossipState> for Deliveries {
    fn on_event(&mut self, _node: NodeIdx, _now: Duration, event: Event) {
        if let Event::Received(delivery) = event {
            let mut watch = self.watch.borrow_mut();
            if watch.id == Some(delivery.id) {
                watch.delivered += 1;
            }
            if self.delivered.insert(delivery.id, delivery.hops).is_some() {
                self.duplicates += 1;
            }
        }
    }
}

/// A [`GossipState`] on the simulated network.
pub type SimGossipNode = NetNode<GossipState, Deliveries>;

/// A simulated gossip network: the nodes, and who is who.
#[derive(Debug)]
pub struct GossipNet {
    /// The simulation.
    pub sim: Sim<SimGossipNode>,
    /// The network the nodes share (directory, connection model, counters).
    pub net: Rc<Net>,
    /// The broadcast being measured.
    pub watch: Rc<RefCell<RoundWatch>>,
}

/// The Unix time (ms) simulated time zero stands for.
pub const SIM_UNIX_EPOCH_MS: u64 = 1_700_000_000_000;

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

/// Whom each node joins through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootstrap {
    /// A random node that joined before it (ours).
    RandomEarlier,
    /// The first node, as iroh-gossip's simulator joins (`BootstrapMode::Single`).
    First,
}

impl std::str::FromStr for Bootstrap {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "random" => Ok(Bootstrap::RandomEarlier),
            "first" => Ok(Bootstrap::First),
            other => Err(format!("unknown bootstrap {other:?} (random, first)")),
        }
    }
}

/// When a round's measurement ends (and the next broadcast starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundEnd {
    /// After `round_interval`, whatever happened (ours).
    Window,
    /// When every live node but the sender delivered, or after
    /// `round_interval` (iroh's simulator: at most 5 s).
    LastDelivery,
}

impl std::str::FromStr for RoundEnd {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "window" => Ok(RoundEnd::Window),
            "last-delivery" => Ok(RoundEnd::LastDelivery),
            other => Err(format!(
                "unknown round end {other:?} (window, last-delivery)"
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
    /// Whom each node joins through.
    pub bootstrap: Bootstrap,
    /// Time between two nodes' joins.
    pub join_spacing: Duration,
    /// Time after the last join before the first broadcast (ours 60 s;
    /// iroh's simulator settles 20 × its largest latency: 1 s at
    /// 10–50 ms).
    pub settle: Duration,
    /// Broadcasts after settling reported as the "warmup" phase: the first
    /// builds the tree (it goes over every link of the overlay). Measured
    /// like every round, and in the mean over all rounds.
    pub warmup_rounds: usize,
    /// Time between broadcasts; each is measured over this window (or
    /// until every live node delivered, with [`RoundEnd::LastDelivery`]).
    pub round_interval: Duration,
    /// When a round's measurement ends.
    pub round_end: RoundEnd,
    /// The simulator's links.
    pub sim: SimConfig,
    /// The router as the simulated network models it: after a crash, each
    /// survivor notices a crashed peer with the router's keepalive timing
    /// (`ping_interval` 15 s, `pong_timeout` 10 s: 10–25 s), or one round
    /// trip after it next sends to it.
    pub connections: ConnectionModel,
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
            bootstrap: Bootstrap::RandomEarlier,
            join_spacing: Duration::from_millis(5),
            settle: Duration::from_secs(60),
            warmup_rounds: 1,
            round_interval: Duration::from_secs(2),
            round_end: RoundEnd::Window,
            sim: SimConfig {
                seed,
                ..SimConfig::default()
            },
            connections: ConnectionModel {
                seed,
                ..ConnectionModel::from_router(&RouterConfig::default())
            },
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
    /// Payload messages received by any node during the round.
    pub payload_messages: u64,
    /// Control messages received by any node during the round.
    pub control_messages: u64,
    /// iroh's RMR: `payload_messages / (delivered - 1) - 1` ([`rmr`]).
    pub rmr: f64,
    /// iroh's LDH: the most links past the first a delivered copy
    /// travelled (0 at the sender's neighbours).
    pub ldh: u32,
    /// Mean number of links the delivered copies travelled (1 at the
    /// sender's neighbours).
    pub mean_hops: f64,
    /// How long the round was measured.
    pub duration: Duration,
}

/// iroh-gossip's relative message redundancy: `payload` messages received
/// for `delivered` deliveries (the sender excluded), `payload /
/// (delivered - 1) - 1`; 0 when fewer than two nodes delivered.
pub fn rmr(payload: u64, delivered: usize) -> f64 {
    if delivered < 2 {
        0.0
    } else {
        payload as f64 / (delivered - 1) as f64 - 1.0
    }
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

    /// The first round: the one that builds the tree.
    pub fn first(&self) -> Option<&RoundResult> {
        self.rounds.first()
    }

    /// Mean RMR over every round, the first included (iroh's mean).
    pub fn mean_rmr_all(&self) -> f64 {
        mean(self.rounds.iter().map(|r| r.rmr))
    }

    /// Largest LDH over every round.
    pub fn max_ldh_all(&self) -> u32 {
        self.rounds.iter().map(|r| r.ldh).max().unwrap_or(0)
    }

    /// One line for the first round, one per phase, and one for every
    /// round (the first included, as iroh-gossip's simulator reports).
    pub fn summary(&self) -> Table {
        let mut table = Table::new(&[
            "rounds_of",
            "rounds",
            "mean_rmr",
            "max_ldh",
            "missed",
            "min_coverage",
            "mean_ms",
        ]);
        let mut row = |name: &str, rounds: Vec<&RoundResult>| {
            if rounds.is_empty() {
                return;
            }
            let n = rounds.len() as f64;
            table.row(vec![
                name.to_string(),
                rounds.len().to_string(),
                format!("{:.4}", mean(rounds.iter().map(|r| r.rmr))),
                rounds.iter().map(|r| r.ldh).max().unwrap_or(0).to_string(),
                rounds.iter().map(|r| r.missed).sum::<usize>().to_string(),
                format!(
                    "{:.4}",
                    rounds.iter().map(|r| r.coverage()).fold(1.0, f64::min)
                ),
                format!(
                    "{:.0}",
                    rounds
                        .iter()
                        .map(|r| r.duration.as_secs_f64() * 1000.0)
                        .sum::<f64>()
                        / n
                ),
            ]);
        };
        row("first", self.first().into_iter().collect());
        for phase in ["warmup", "steady", "after-crash"] {
            row(phase, self.phase(phase).collect());
        }
        row("all", self.rounds.iter().collect());
        table
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
            "ms",
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
                r.duration.as_millis().to_string(),
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

/// Builds `nodes` simulated gossip nodes (keys from `seed`), each
/// listening at a memory address naming its PeerId, on links `sim` with
/// connections as `connections` models them.
pub fn build_sim(
    nodes: usize,
    seed: u64,
    gossip: &GossipConfig,
    sim: SimConfig,
    connections: ConnectionModel,
) -> GossipNet {
    let base = Instant::now();
    let net = Net::new(connections, base);
    let watch = Rc::new(RefCell::new(RoundWatch::default()));
    let nodes = (0..nodes as u64)
        .map(|i| {
            let keypair = Keypair::from_seed(mix(seed, i));
            let idx = net.directory.borrow_mut().add(keypair.peer_id(), None);
            let address = net.directory.borrow().address(idx);
            let core = GossipState::new(
                keypair,
                vec![address],
                gossip.clone(),
                mix(seed ^ 0x0060_551e, i),
                base,
                SIM_UNIX_EPOCH_MS,
            );
            let host = Deliveries::watching(watch.clone());
            NetNode::new(idx, core, host, net.clone())
        })
        .collect();
    GossipNet {
        sim: Sim::new(nodes, sim),
        net,
        watch,
    }
}

impl GossipNet {
    /// Node `i` joins `topic` through node `contact` (or no one).
    pub fn join(&mut self, i: NodeIdx, topic: TopicId, contact: Option<NodeIdx>) {
        let bootstrap = contact
            .map(|c| {
                let directory = self.net.directory.borrow();
                vec![Contact {
                    peer: directory.peer(c),
                    addresses: vec![directory.address(c)],
                }]
            })
            .unwrap_or_default();
        self.sim.with_node(i, |node, now, io| {
            node.command(now, GossipCommand::Join { topic, bootstrap }, io)
        });
    }

    /// Node `i` publishes `payload` on `topic`: the message's id, unless
    /// it is crashed or the core refused.
    pub fn publish(&mut self, i: NodeIdx, topic: TopicId, payload: Bytes) -> Option<MessageId> {
        let command = GossipCommand::Publish { topic, payload };
        match self
            .sim
            .with_node(i, |node, now, io| node.command(now, command, io))
        {
            Some(GossipReply::Published(Ok(id))) => Some(id),
            _ => None,
        }
    }

    /// The node index of `peer`.
    pub fn index(&self, peer: &p2p::PeerId) -> Option<NodeIdx> {
        self.net.index(peer)
    }
}

/// Node `i` joins through `bootstrap` (node 0 through no one), `spacing`
/// apart; then the overlay settles for `settle`.
pub fn build_overlay(
    network: &mut GossipNet,
    rng: &mut ChaCha12Rng,
    bootstrap: Bootstrap,
    spacing: Duration,
    settle: Duration,
) {
    let topic = scenario_topic();
    let start = network.sim.now();
    for i in 0..network.sim.len() as NodeIdx {
        network.sim.run_until(start + spacing * i);
        let contact = (i > 0).then(|| match bootstrap {
            Bootstrap::RandomEarlier => rng.random_range(0..i),
            Bootstrap::First => 0,
        });
        network.join(i, topic, contact);
    }
    network.sim.run_for(settle);
}

/// The overlay's shape over the live nodes.
pub fn overlay_shape(network: &GossipNet) -> OverlayShape {
    let sim = &network.sim;
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
                if let Some(j) = network.index(&peer)
                    && sim.is_alive(j)
                    && !seen[j as usize]
                {
                    seen[j as usize] = true;
                    stack.push(j);
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
        total.payload_received += s.payload_received;
        total.control_received += s.control_received;
    }
    total
}

/// Broadcasts once from `sender` and measures it over `window`, or until
/// every live node but the sender delivered it (at most `window`) with
/// [`RoundEnd::LastDelivery`].
pub fn broadcast_round(
    network: &mut GossipNet,
    sender: NodeIdx,
    phase: &'static str,
    round: usize,
    window: Duration,
    end: RoundEnd,
) -> RoundResult {
    let topic = scenario_topic();
    let before = sum_stats(&network.sim);
    let start = network.sim.now();
    let payload = Bytes::from(format!("{phase} round {round} from {sender}"));
    let id = network.publish(sender, topic, payload);
    *network.watch.borrow_mut() = RoundWatch { id, delivered: 0 };
    let receivers = network.sim.alive().filter(|i| *i != sender).count();
    match end {
        RoundEnd::Window => network.sim.run_for(window),
        RoundEnd::LastDelivery => {
            let step = Duration::from_millis(1);
            while network.watch.borrow().delivered < receivers && network.sim.now() < start + window
            {
                network.sim.run_for(step);
            }
        }
    }
    let sim = &network.sim;
    let after = sum_stats(sim);
    let mut delivered = 0usize;
    let mut ldh = 0u32;
    let mut hops_sum = 0u64;
    for i in sim.alive() {
        if i == sender {
            continue;
        }
        if let Some(hops) = id.and_then(|id| sim.node(i).host().delivered(&id)) {
            delivered += 1;
            ldh = ldh.max(hops.saturating_sub(1));
            hops_sum += u64::from(hops);
        }
    }
    let payload_messages = after.payload_received - before.payload_received;
    RoundResult {
        phase,
        round,
        sender,
        receivers,
        delivered,
        missed: receivers - delivered,
        payload_messages,
        control_messages: after.control_received - before.control_received,
        rmr: rmr(payload_messages, delivered),
        ldh,
        mean_hops: if delivered == 0 {
            0.0
        } else {
            hops_sum as f64 / delivered as f64
        },
        duration: sim.now() - start,
    }
}

/// Runs a whole scenario.
pub fn run_scenario(config: &ScenarioConfig) -> ScenarioReport {
    run_scenario_keeping_sim(config).0
}

/// Runs a whole scenario and returns the network too, to look into.
pub fn run_scenario_keeping_sim(config: &ScenarioConfig) -> (ScenarioReport, GossipNet) {
    let mut rng = ChaCha12Rng::seed_from_u64(config.seed ^ 0x5ce7_a110);
    let mut network = build_sim(
        config.nodes,
        config.seed,
        &config.gossip,
        config.sim.clone(),
        config.connections.clone(),
    );
    build_overlay(
        &mut network,
        &mut rng,
        config.bootstrap,
        config.join_spacing,
        config.settle,
    );
    let overlay = overlay_shape(&network);
    let mut sizes = vec![size_sample(&network.sim, "settled")];
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
        let sender = pick(&network.sim, &mut rng, config.scenario);
        rounds.push(broadcast_round(
            &mut network,
            sender,
            "warmup",
            round,
            config.round_interval,
            config.round_end,
        ));
    }
    for round in 1..=config.rounds {
        let sender = pick(&network.sim, &mut rng, config.scenario);
        rounds.push(broadcast_round(
            &mut network,
            sender,
            "steady",
            round,
            config.round_interval,
            config.round_end,
        ));
    }
    let mut orphans = Vec::new();
    if config.scenario == Scenario::Crash {
        let sim = &mut network.sim;
        let mut order: Vec<NodeIdx> = (0..sim.len() as NodeIdx).collect();
        order.shuffle(&mut rng);
        let crashed = (sim.len() as f64 * config.crash_fraction).round() as usize;
        let crashed: Vec<NodeIdx> = order.into_iter().take(crashed).collect();
        for &i in &crashed {
            sim.crash(i);
        }
        let survivors: Vec<NodeIdx> = sim.alive().collect();
        let topic = scenario_topic();
        orphans = survivors
            .iter()
            .copied()
            .filter(|&j| {
                let core = network.sim.node(j).core();
                !core
                    .active_view(&topic)
                    .into_iter()
                    .chain(core.passive_view(&topic))
                    .filter_map(|p| network.index(&p))
                    .any(|k| network.sim.is_alive(k))
            })
            .collect();
        // Each survivor connected to a crashed node notices as the
        // router's keepalive would (or sooner, by sending to it).
        for &i in &crashed {
            network.sim.crash_node(i);
        }
        for round in 1..=config.rounds_after_crash {
            let sender = pick(&network.sim, &mut rng, config.scenario);
            rounds.push(broadcast_round(
                &mut network,
                sender,
                "after-crash",
                round,
                config.round_interval,
                config.round_end,
            ));
        }
    }
    if config.scenario == Scenario::Crash {
        // Two epochs: one that starts after the crash, and its end.
        network.sim.run_for(2 * config.gossip.estimate_epoch);
        sizes.push(size_sample(&network.sim, "after-crash"));
    } else {
        sizes.push(size_sample(&network.sim, "end"));
    }
    let overlay_end = overlay_shape(&network);
    let sim = &network.sim;
    let duplicate_deliveries = sim
        .nodes()
        .iter()
        .map(|n| n.host().duplicate_deliveries())
        .sum();
    let reports = network.net.stats().reports;
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
    (report, network)
}
