//! A deterministic discrete-event simulator for sans-IO protocol cores.
//!
//! A reactor's core (gossip, ring, ...) is a state machine with no I/O;
//! wrap it in a [`SimNode`] and [`Sim`] runs thousands of them in one
//! thread: messages arrive after a seeded per-link latency, timers fire in
//! simulated time, crashed nodes drop what is sent to them and their
//! senders are told. One seed gives one run, event for event.
//!
//! The simulator knows nothing of channels, credit or transports: it
//! measures an algorithm (how many messages, how many hops, who missed
//! what), not the router. Every message sent is delivered exactly once
//! after its link's latency unless the receiver has crashed (then the
//! sender gets [`SimNode::on_unreachable`] one round trip later, as a
//! broken connection would tell it), or [`SimConfig::loss`] drops it.
//!
//! ```
//! use std::time::Duration;
//! use testkit::sim::{Io, NodeIdx, Sim, SimConfig, SimNode};
//!
//! /// Floods a number once.
//! #[derive(Default)]
//! struct Flood { peers: Vec<NodeIdx>, seen: bool }
//!
//! impl SimNode for Flood {
//!     type Message = u64;
//!     fn on_message(&mut self, _now: Duration, _from: NodeIdx, m: u64, io: &mut Io<u64>) {
//!         if !std::mem::replace(&mut self.seen, true) {
//!             for p in &self.peers { io.send(*p, m); }
//!         }
//!     }
//! }
//!
//! let nodes = (0..10u32).map(|i| Flood { peers: vec![(i + 1) % 10], seen: false }).collect();
//! let mut sim = Sim::new(nodes, SimConfig::default());
//! sim.with_node(0, |node, _now, io| { node.seen = true; io.send(1, 7) });
//! sim.run_until_idle(Duration::from_secs(10));
//! assert!((0..10).all(|i| sim.node(i).seen));
//! assert_eq!(sim.stats().delivered, 10);
//! ```

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

pub mod net;

/// A node's index in the simulation (0-based).
pub type NodeIdx = u32;

/// A sans-IO core as the simulator drives it. Each method gets the
/// simulated time and an [`Io`] to send messages and set timers through.
pub trait SimNode {
    /// What nodes send each other.
    type Message;

    /// Called once for each node by [`Sim::start_all`] (or [`Sim::start`]).
    fn on_start(&mut self, now: Duration, io: &mut Io<Self::Message>) {
        let _ = (now, io);
    }

    /// A message from `from` arrived.
    fn on_message(
        &mut self,
        now: Duration,
        from: NodeIdx,
        message: Self::Message,
        io: &mut Io<Self::Message>,
    );

    /// A timer set with [`Io::timer`] fired.
    fn on_timer(&mut self, now: Duration, timer: u64, io: &mut Io<Self::Message>) {
        let _ = (now, timer, io);
    }

    /// A message to `peer` was not delivered: `peer` has crashed.
    fn on_unreachable(&mut self, now: Duration, peer: NodeIdx, io: &mut Io<Self::Message>) {
        let _ = (now, peer, io);
    }
}

/// What a node asks the simulator to do.
#[derive(Debug)]
pub struct Io<M> {
    sends: Vec<(NodeIdx, M, Duration)>,
    timers: Vec<(Duration, u64)>,
}

impl<M> Default for Io<M> {
    fn default() -> Self {
        Self {
            sends: Vec::new(),
            timers: Vec::new(),
        }
    }
}

impl<M> Io<M> {
    /// Sends `message` to `to`; it arrives after the link's latency.
    pub fn send(&mut self, to: NodeIdx, message: M) {
        self.sends.push((to, message, Duration::ZERO));
    }

    /// Sends `message` to `to` once `delay` has passed (it waited in a
    /// queue); it arrives `delay` plus the link's latency from now. A
    /// node that keeps each link's delays from decreasing keeps the
    /// link's order.
    pub fn send_after(&mut self, to: NodeIdx, message: M, delay: Duration) {
        self.sends.push((to, message, delay));
    }

    /// Fires [`SimNode::on_timer`] with `timer` after `after`.
    pub fn timer(&mut self, after: Duration, timer: u64) {
        self.timers.push((after, timer));
    }
}

/// The simulator's settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed of latencies and loss.
    pub seed: u64,
    /// The shortest one-way latency of a link.
    pub latency_min: Duration,
    /// The longest one-way latency of a link. Each link's latency is drawn
    /// once, uniformly in `[latency_min, latency_max]`, from the seed.
    pub latency_max: Duration,
    /// Probability that a message is lost in transit (no notice to anyone).
    pub loss: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            latency_min: Duration::from_millis(10),
            latency_max: Duration::from_millis(50),
            loss: 0.0,
        }
    }
}

/// Counters of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Messages sent by live nodes.
    pub sent: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Messages lost to [`SimConfig::loss`].
    pub lost: u64,
    /// Messages sent to crashed nodes.
    pub unreachable: u64,
    /// Timers fired.
    pub timers: u64,
}

enum Event<M> {
    Deliver {
        from: NodeIdx,
        to: NodeIdx,
        /// Boxed, so that the queue's entries stay small whatever the
        /// message (a heap moves its entries at every push and pop).
        message: Box<M>,
    },
    Timer {
        node: NodeIdx,
        timer: u64,
    },
    Unreachable {
        node: NodeIdx,
        peer: NodeIdx,
    },
}

struct Scheduled<M> {
    at: Duration,
    seq: u64,
    event: Event<M>,
}

impl<M> PartialEq for Scheduled<M> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<M> Eq for Scheduled<M> {}
impl<M> PartialOrd for Scheduled<M> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<M> Ord for Scheduled<M> {
    /// Reversed: the earliest event is the greatest, for `BinaryHeap`.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Nodes, a clock and an event queue.
pub struct Sim<N: SimNode> {
    nodes: Vec<N>,
    alive: Vec<bool>,
    now: Duration,
    seq: u64,
    queue: BinaryHeap<Scheduled<N::Message>>,
    config: SimConfig,
    rng: ChaCha12Rng,
    stats: SimStats,
}

impl<N: SimNode> std::fmt::Debug for Sim<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("nodes", &self.nodes.len())
            .field("now", &self.now)
            .field("queued", &self.queue.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<N: SimNode> Sim<N> {
    /// A simulation of `nodes` at time zero; none is started.
    pub fn new(nodes: Vec<N>, config: SimConfig) -> Self {
        let alive = vec![true; nodes.len()];
        Self {
            nodes,
            alive,
            now: Duration::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            rng: ChaCha12Rng::seed_from_u64(config.seed ^ 0x51u64.rotate_left(56)),
            config,
            stats: SimStats::default(),
        }
    }

    /// The number of nodes, crashed ones included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The simulated time.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Counters so far.
    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// Node `i`.
    pub fn node(&self, i: NodeIdx) -> &N {
        &self.nodes[i as usize]
    }

    /// Node `i`, to inspect or change outside an event.
    pub fn node_mut(&mut self, i: NodeIdx) -> &mut N {
        &mut self.nodes[i as usize]
    }

    /// Every node, crashed ones included.
    pub fn nodes(&self) -> &[N] {
        &self.nodes
    }

    /// Whether node `i` is alive.
    pub fn is_alive(&self, i: NodeIdx) -> bool {
        self.alive[i as usize]
    }

    /// The live nodes' indices.
    pub fn alive(&self) -> impl Iterator<Item = NodeIdx> + '_ {
        (0..self.nodes.len() as NodeIdx).filter(|i| self.alive[*i as usize])
    }

    /// The one-way latency of the link between `a` and `b` (symmetric,
    /// fixed for the run by the seed).
    pub fn latency(&self, a: NodeIdx, b: NodeIdx) -> Duration {
        let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
        let span = self
            .config
            .latency_max
            .saturating_sub(self.config.latency_min)
            .as_micros() as u64;
        let h = mix(self.config.seed ^ mix(lo, hi), 0);
        let jitter = if span == 0 { 0 } else { h % (span + 1) };
        self.config.latency_min + Duration::from_micros(jitter)
    }

    /// Starts every live node.
    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() as NodeIdx {
            self.start(i);
        }
    }

    /// Calls node `i`'s [`SimNode::on_start`] now.
    pub fn start(&mut self, i: NodeIdx) {
        self.with_node(i, |node, now, io| node.on_start(now, io));
    }

    /// Runs `f` on live node `i` now, as if an event arrived (to inject an
    /// application command such as "broadcast this"), and carries out what
    /// it asks.
    pub fn with_node<R>(
        &mut self,
        i: NodeIdx,
        f: impl FnOnce(&mut N, Duration, &mut Io<N::Message>) -> R,
    ) -> Option<R> {
        if !self.alive[i as usize] {
            return None;
        }
        let mut io = Io::default();
        let result = f(&mut self.nodes[i as usize], self.now, &mut io);
        self.apply(i, io);
        Some(result)
    }

    /// Crashes node `i`: it handles nothing from now on, and whoever sends
    /// to it is told one round trip later.
    pub fn crash(&mut self, i: NodeIdx) {
        self.alive[i as usize] = false;
    }

    /// Processes the next event, if any; returns whether there was one.
    pub fn step(&mut self) -> bool {
        let Some(next) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(next.at);
        match next.event {
            Event::Deliver { from, to, message } => {
                if self.alive[to as usize] {
                    self.stats.delivered += 1;
                    self.with_node(to, |node, now, io| node.on_message(now, from, *message, io));
                } else {
                    self.stats.unreachable += 1;
                    let back = self.latency(from, to);
                    self.schedule(
                        back,
                        Event::Unreachable {
                            node: from,
                            peer: to,
                        },
                    );
                }
            }
            Event::Timer { node, timer } => {
                if self.alive[node as usize] {
                    self.stats.timers += 1;
                    self.with_node(node, |n, now, io| n.on_timer(now, timer, io));
                }
            }
            Event::Unreachable { node, peer } => {
                self.with_node(node, |n, now, io| n.on_unreachable(now, peer, io));
            }
        }
        true
    }

    /// Runs every event up to and including time `until`, then sets the
    /// clock to `until`.
    pub fn run_until(&mut self, until: Duration) {
        while self.queue.peek().is_some_and(|e| e.at <= until) {
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs for `duration` of simulated time.
    pub fn run_for(&mut self, duration: Duration) {
        self.run_until(self.now + duration);
    }

    /// Runs until no event is left or `limit` of simulated time has passed
    /// (periodic timers keep a queue from ever emptying); returns whether
    /// the queue emptied.
    pub fn run_until_idle(&mut self, limit: Duration) -> bool {
        let until = self.now + limit;
        while self.queue.peek().is_some_and(|e| e.at <= until) {
            self.step();
        }
        self.queue.is_empty()
    }

    fn apply(&mut self, from: NodeIdx, io: Io<N::Message>) {
        for (to, message, delay) in io.sends {
            self.stats.sent += 1;
            if self.config.loss > 0.0 && self.rng.random_bool(self.config.loss.min(1.0)) {
                self.stats.lost += 1;
                continue;
            }
            let latency = self.latency(from, to);
            let message = Box::new(message);
            self.schedule(delay + latency, Event::Deliver { from, to, message });
        }
        for (after, timer) in io.timers {
            self.schedule(after, Event::Timer { node: from, timer });
        }
    }

    fn schedule(&mut self, after: Duration, event: Event<N::Message>) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at: self.now + after,
            seq: self.seq,
            event,
        });
    }
}

/// splitmix64 of `seed + i`.
pub(crate) fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A table of results, printed aligned for people and as CSV for tools.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (one cell per header).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The rows so far.
    pub fn rows(&self) -> &[Vec<String>] {
        &self.rows
    }

    /// Aligned text, headers first.
    pub fn to_text(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(String::len).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate().take(columns) {
                if i > 0 {
                    out.push_str("  ");
                }
                out.push_str(&format!("{cell:>w$}", w = widths[i]));
            }
            out.push('\n');
            out
        };
        let mut out = line(&self.headers);
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }

    /// CSV, headers first; cells with a comma or quote are quoted.
    pub fn to_csv(&self) -> String {
        let cell = |c: &String| {
            if c.contains([',', '"', '\n']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.clone()
            }
        };
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let cells: Vec<String> = row.iter().map(cell).collect();
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }
}

/// An SVG bar chart of `bars` (label, value), for histograms in reports.
pub fn svg_bars(title: &str, x_label: &str, bars: &[(String, f64)]) -> String {
    let (width, height, margin) = (640.0, 360.0, 48.0);
    let max = bars.iter().map(|b| b.1).fold(0.0f64, f64::max).max(1e-9);
    let n = bars.len().max(1) as f64;
    let bar_w = (width - 2.0 * margin) / n;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <text x=\"{x}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">{title}</text>\n\
         <text x=\"{x}\" y=\"{yl}\" text-anchor=\"middle\">{x_label}</text>\n",
        x = width / 2.0,
        yl = height - 8.0,
        title = escape(title),
        x_label = escape(x_label),
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let h = (height - 2.0 * margin) * value / max;
        let x = margin + i as f64 * bar_w;
        let y = height - margin - h;
        svg.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"#4a7ab5\"><title>{l}: {value}</title></rect>\n\
             <text x=\"{cx:.1}\" y=\"{ly:.1}\" text-anchor=\"middle\">{l}</text>\n",
            w = (bar_w - 2.0).max(1.0),
            cx = x + bar_w / 2.0,
            ly = height - margin + 14.0,
            l = escape(label),
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pings its successor on start; counts and answers.
    #[derive(Default)]
    struct Echo {
        got: Vec<(Duration, NodeIdx, u32)>,
        unreachable: Vec<NodeIdx>,
        timers: Vec<(Duration, u64)>,
    }

    impl SimNode for Echo {
        type Message = u32;
        fn on_message(&mut self, now: Duration, from: NodeIdx, m: u32, io: &mut Io<u32>) {
            self.got.push((now, from, m));
            if m == 0 {
                io.send(from, 1);
            }
        }
        fn on_timer(&mut self, now: Duration, timer: u64, _io: &mut Io<u32>) {
            self.timers.push((now, timer));
        }
        fn on_unreachable(&mut self, _now: Duration, peer: NodeIdx, _io: &mut Io<u32>) {
            self.unreachable.push(peer);
        }
    }

    fn sim(seed: u64) -> Sim<Echo> {
        let nodes = (0..4).map(|_| Echo::default()).collect();
        Sim::new(
            nodes,
            SimConfig {
                seed,
                ..SimConfig::default()
            },
        )
    }

    #[test]
    fn messages_arrive_after_the_links_latency_and_timers_fire_in_order() {
        let mut s = sim(3);
        s.with_node(0, |_, _, io| {
            io.send(1, 0);
            io.timer(Duration::from_secs(2), 9);
            io.timer(Duration::from_secs(1), 8);
        });
        s.run_until_idle(Duration::from_secs(10));
        let l = s.latency(0, 1);
        assert!((Duration::from_millis(10)..=Duration::from_millis(50)).contains(&l));
        assert_eq!(s.latency(1, 0), l, "latency is symmetric");
        assert_eq!(s.node(1).got, vec![(l, 0, 0)]);
        assert_eq!(s.node(0).got, vec![(2 * l, 1, 1)]);
        assert_eq!(
            s.node(0).timers,
            vec![(Duration::from_secs(1), 8), (Duration::from_secs(2), 9)]
        );
        assert_eq!(s.stats().delivered, 2);
    }

    #[test]
    fn a_crashed_node_gets_nothing_and_its_sender_is_told() {
        let mut s = sim(1);
        s.crash(2);
        s.with_node(0, |_, _, io| io.send(2, 0));
        s.run_until_idle(Duration::from_secs(1));
        assert!(s.node(2).got.is_empty());
        assert_eq!(s.node(0).unreachable, vec![2]);
        assert_eq!(s.stats().unreachable, 1);
        assert!(s.with_node(2, |_, _, _| ()).is_none());
    }

    #[test]
    fn the_same_seed_gives_the_same_run_and_another_seed_other_latencies() {
        let run = |seed| {
            let mut s = sim(seed);
            for i in 0..4 {
                s.with_node(i, |_, _, io| {
                    for j in 0..4 {
                        io.send(j, 0);
                    }
                });
            }
            s.run_until_idle(Duration::from_secs(1));
            s.nodes().iter().map(|n| n.got.clone()).collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        let latencies = |seed| {
            let s = sim(seed);
            (0..4).map(|j| s.latency(0, j)).collect::<Vec<_>>()
        };
        assert_ne!(latencies(5), latencies(6));
    }

    #[test]
    fn tables_print_aligned_and_as_csv() {
        let mut t = Table::new(&["n", "rmr"]);
        t.row(vec!["1000".into(), "0.08".into()]);
        t.row(vec!["10,000".into(), "0.1".into()]);
        assert_eq!(t.to_text(), "     n   rmr\n  1000  0.08\n10,000   0.1\n");
        assert_eq!(t.to_csv(), "n,rmr\n1000,0.08\n\"10,000\",0.1\n");
        let svg = svg_bars("hops", "hops", &[("1".into(), 3.0), ("2".into(), 1.0)]);
        assert!(svg.starts_with("<svg") && svg.contains("<rect"));
    }
}
