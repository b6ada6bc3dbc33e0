//! The router's connections, modelled for any [`Core`]: the one simulated
//! network every reactor's simulator runs on.
//!
//! [`NetNode`] wraps a core as a [`SimNode`] and gives it the inputs the
//! router's driver (`p2p::reactor::driver`) would, from a model of the
//! router's connections:
//!
//! - **Connections.** [`Output::Connect`] sends an `Open` that the other
//!   side acknowledges: both see [`Input::PeerUp`] (the dialed node at
//!   once, the dialer one round trip after it dialed). Dialing a crashed
//!   node comes back as [`Input::DialFailed`] one round trip later.
//!   [`Output::Disconnect`] (and a fatal [`Output::Report`], as the peer
//!   manager would) closes the connection: [`Input::PeerDown`] at once
//!   here, and at the other side once the `Close` arrives, after
//!   everything sent before it. A ban refuses the peer's `Open`s for its
//!   length, and a node with `max_inbound` inbound connections refuses
//!   more.
//! - **Failure detection, with the router's keepalive timing.** When a
//!   node crashes ([`Sim::crash_node`]), each peer connected to it notices
//!   as the router's keepalive would: after its next ping (a phase in
//!   `[0, ping_interval)`, fixed by the seed per pair) plus `pong_timeout`
//!   ([`ConnectionModel::from_router`]). A peer that sends to it first
//!   learns one round trip after the send, as a reset connection tells it.
//! - **Send queues, optionally.** With [`ConnectionModel::queue`] set, each
//!   link drains one message per `per_message` plus its size over
//!   `bytes_per_second`, and holds at most `capacity` waiting messages: a
//!   send beyond is dropped and the core told, as the real `try_send` does
//!   ([`Input::SendFailed`] with [`SendFailure::QueueFull`]). Without it,
//!   links never fill.
//! - **Order.** Messages on a connection arrive in order, after the link's
//!   latency (and their wait in the queue).
//!
//! What the model leaves out: the handshake's cost and the peer manager's
//! slots and scores (a node accepts every `Open` it has not banned), the
//! router's credit (receivers are never slow), and decoding (messages
//! travel as values; [`Core::wire_size`] gives their size).
//!
//! ```
//! # fn main() {}
//! // See reactor-gossip-sim, reactor-ring-sim and reactor-pex-sim for
//! // whole scenarios; the unit tests below show the model on a toy core.
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use p2p::reactor::{Core, Input, Output, Outputs, PeerUp, SendFailure};
use p2p::{PeerAddress, PeerId, RouterConfig};

use super::{Io, NodeIdx, Sim, SimNode, mix};

/// The core's own timer.
const CORE_TIMER: u64 = 0;
/// Timers `KEEPALIVE + i` end the connection to crashed node `i`.
const KEEPALIVE: u64 = 1 << 32;

/// Send queues on the simulated links.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueModel {
    /// Messages a link holds waiting (the channel's `send_queue`).
    pub capacity: usize,
    /// Time to put one message on the wire, whatever its size.
    pub per_message: Duration,
    /// The link's bandwidth, in bytes per second (0: unlimited).
    pub bytes_per_second: u64,
}

impl QueueModel {
    fn service(&self, size: usize) -> Duration {
        let bytes = if self.bytes_per_second == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(
                (size as u128 * 1_000_000_000 / u128::from(self.bytes_per_second))
                    .min(u128::from(u64::MAX)) as u64,
            )
        };
        self.per_message + bytes
    }
}

/// How the simulated router behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionModel {
    /// The router's keepalive ping interval.
    pub ping_interval: Duration,
    /// How long the router waits for a pong before closing.
    pub pong_timeout: Duration,
    /// Send queues, if they are modelled.
    pub queue: Option<QueueModel>,
    /// Inbound connections a node accepts at most (the peer manager's
    /// `max_inbound`); an `Open` beyond is refused. Unlimited by default.
    pub max_inbound: usize,
    /// Seed of the keepalive phases.
    pub seed: u64,
}

impl Default for ConnectionModel {
    fn default() -> Self {
        Self::from_router(&RouterConfig::default())
    }
}

impl ConnectionModel {
    /// The keepalive timing of `config`, without send queues.
    pub fn from_router(config: &RouterConfig) -> Self {
        Self {
            ping_interval: config.ping_interval,
            pong_timeout: config.pong_timeout,
            queue: None,
            max_inbound: usize::MAX,
            seed: 0,
        }
    }

    /// How long after `crashed` crashed its peer `peer` notices.
    pub fn detection(&self, crashed: NodeIdx, peer: NodeIdx) -> Duration {
        let interval = self.ping_interval.as_micros().max(1) as u64;
        let phase = mix(self.seed, (u64::from(crashed) << 32) | u64::from(peer)) % interval;
        Duration::from_micros(phase) + self.pong_timeout
    }
}

/// What a simulated network counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages queued on a connection.
    pub sent: u64,
    /// Sends dropped because the link's queue was full.
    pub queue_full: u64,
    /// Sends to a peer not connected.
    pub not_connected: u64,
    /// Messages that arrived after their connection closed (dropped).
    pub arrived_closed: u64,
    /// Dials started.
    pub dials: u64,
    /// Dials that failed (no address, or the peer had crashed).
    pub dial_failures: u64,
    /// `Open`s refused because the dialer was banned.
    pub refused_banned: u64,
    /// `Open`s refused because the node had `max_inbound` inbound
    /// connections.
    pub refused_full: u64,
    /// Connections opened (counted once, at the dialed side).
    pub connections: u64,
    /// Connections closed by a core (a disconnect or a fatal report).
    pub closed: u64,
    /// Connections ended by failure detection (keepalive or reset).
    pub failed: u64,
    /// Peers reported.
    pub reports: u64,
}

/// PeerIds by node index and back, and the IP each node connects from.
#[derive(Debug, Default)]
pub struct Directory {
    ids: Vec<PeerId>,
    ips: Vec<Option<IpAddr>>,
    index: HashMap<PeerId, NodeIdx, BuildKeyHasher>,
}

impl Directory {
    /// Adds a node; returns its index.
    pub fn add(&mut self, peer: PeerId, ip: Option<IpAddr>) -> NodeIdx {
        let idx = self.ids.len() as NodeIdx;
        self.ids.push(peer);
        self.ips.push(ip);
        self.index.insert(peer, idx);
        idx
    }

    /// The PeerId of node `i`.
    pub fn peer(&self, i: NodeIdx) -> PeerId {
        self.ids[i as usize]
    }

    /// The node index of `peer`.
    pub fn index(&self, peer: &PeerId) -> Option<NodeIdx> {
        self.index.get(peer).copied()
    }

    /// The IP node `i` connects from, if it was given one.
    pub fn ip(&self, i: NodeIdx) -> Option<IpAddr> {
        self.ips[i as usize]
    }

    /// Node `i`'s listen address (a memory address naming its PeerId).
    pub fn address(&self, i: NodeIdx) -> PeerAddress {
        PeerAddress::memory(self.peer(i))
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Hashes a PeerId by its first 8 bytes: a public key is already
/// uniformly distributed, and SipHash showed in the simulators' profiles.
#[derive(Debug, Default, Clone, Copy)]
struct BuildKeyHasher;

#[derive(Debug, Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
    }
}

impl std::hash::BuildHasher for BuildKeyHasher {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher::default()
    }
}

/// What every node of one simulated network shares: who is who, the
/// model, the counters.
#[derive(Debug)]
pub struct Net {
    /// Who is who.
    pub directory: RefCell<Directory>,
    /// How the router behaves.
    pub model: ConnectionModel,
    /// What the network counted.
    pub stats: RefCell<NetStats>,
    /// When the simulation's time zero is, as an `Instant`.
    base: Instant,
}

impl Net {
    /// A network with `model`, whose time zero is `base`.
    pub fn new(model: ConnectionModel, base: Instant) -> Rc<Self> {
        Rc::new(Self {
            directory: RefCell::new(Directory::default()),
            model,
            stats: RefCell::new(NetStats::default()),
            base,
        })
    }

    /// The instant at simulated time `now`.
    pub fn instant(&self, now: Duration) -> Instant {
        self.base + now
    }

    /// The PeerId of node `i`.
    pub fn peer(&self, i: NodeIdx) -> PeerId {
        self.directory.borrow().peer(i)
    }

    /// The node index of `peer`.
    pub fn index(&self, peer: &PeerId) -> Option<NodeIdx> {
        self.directory.borrow().index(peer)
    }

    /// The counters so far.
    pub fn stats(&self) -> NetStats {
        *self.stats.borrow()
    }
}

/// The application beside a simulated core: it gets the core's events and
/// carries out its effects.
pub trait Host<C: Core> {
    /// An event of node `node`'s core.
    fn on_event(&mut self, node: NodeIdx, now: Duration, event: C::Event);

    /// Carries out an effect of node `node`'s core; the result is fed
    /// back. Default: none.
    fn perform(&mut self, node: NodeIdx, now: Duration, effect: C::Effect) -> Option<C::Outcome> {
        let _ = (node, now, effect);
        None
    }
}

/// A host that drops every event and has no effects.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ignore;

impl<C: Core> Host<C> for Ignore {
    fn on_event(&mut self, _node: NodeIdx, _now: Duration, _event: C::Event) {}
}

/// What simulated nodes send each other.
#[derive(Debug, Clone)]
pub enum Wire<M> {
    /// A dial.
    Open,
    /// The dialed node accepted.
    OpenAck,
    /// The connection is closed (or the dial refused).
    Close,
    /// A message on the core's channel, and its size on the wire.
    Data {
        /// The message.
        message: M,
        /// Its encoded size, from [`Core::wire_size`].
        size: usize,
    },
}

#[derive(Debug, Default)]
struct Link {
    inbound: bool,
    /// When each waiting message leaves (with a queue model).
    departures: VecDeque<Duration>,
    /// When the last message sent leaves.
    last: Duration,
}

/// A core on the simulated network (see the module docs).
pub struct NetNode<C: Core, H> {
    core: C,
    host: H,
    idx: NodeIdx,
    net: Rc<Net>,
    links: BTreeMap<NodeIdx, Link>,
    dialing: BTreeSet<NodeIdx>,
    bans: BTreeMap<NodeIdx, Duration>,
    bootstrap: Vec<NodeIdx>,
    timer_at: Option<Duration>,
}

impl<C: Core, H> std::fmt::Debug for NetNode<C, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetNode")
            .field("idx", &self.idx)
            .field("links", &self.links.len())
            .finish_non_exhaustive()
    }
}

impl<C: Core, H: Host<C>> NetNode<C, H> {
    /// Node `idx` of `net` (already in its directory) running `core`
    /// beside `host`.
    pub fn new(idx: NodeIdx, core: C, host: H, net: Rc<Net>) -> Self {
        Self {
            core,
            host,
            idx,
            net,
            links: BTreeMap::new(),
            dialing: BTreeSet::new(),
            bans: BTreeMap::new(),
            bootstrap: Vec::new(),
            timer_at: None,
        }
    }

    /// Dials `peers` when started, as the router dials its configured
    /// bootstrap peers.
    pub fn with_bootstrap(mut self, peers: Vec<NodeIdx>) -> Self {
        self.bootstrap = peers;
        self
    }

    /// The core.
    pub fn core(&self) -> &C {
        &self.core
    }

    /// The core, to change outside an event (its outputs are not carried
    /// out: use [`command`](Self::command) for that).
    pub fn core_mut(&mut self) -> &mut C {
        &mut self.core
    }

    /// The host.
    pub fn host(&self) -> &H {
        &self.host
    }

    /// The host, to change.
    pub fn host_mut(&mut self) -> &mut H {
        &mut self.host
    }

    /// This node's index.
    pub fn idx(&self) -> NodeIdx {
        self.idx
    }

    /// The nodes this one is connected to.
    pub fn connected(&self) -> impl Iterator<Item = NodeIdx> + '_ {
        self.links.keys().copied()
    }

    /// Whether this node is connected to `peer`.
    pub fn is_connected(&self, peer: NodeIdx) -> bool {
        self.links.contains_key(&peer)
    }

    /// Runs an application command now (through
    /// [`Sim::with_node`]) and carries out what follows.
    pub fn command(
        &mut self,
        now: Duration,
        command: C::Command,
        io: &mut Io<Wire<C::Message>>,
    ) -> C::Reply {
        let mut out = Vec::new();
        let reply = self.core.command(self.net.instant(now), command, &mut out);
        self.execute(now, out, io);
        reply
    }

    /// Feeds the core `input` now and carries out what follows.
    pub fn feed(
        &mut self,
        now: Duration,
        input: Input<C::Message, C::Outcome>,
        io: &mut Io<Wire<C::Message>>,
    ) {
        let mut out = Vec::new();
        self.core.handle(self.net.instant(now), input, &mut out);
        self.execute(now, out, io);
    }

    /// Dials node `peer`, as the router dials a bootstrap peer.
    pub fn dial(&mut self, now: Duration, peer: NodeIdx, io: &mut Io<Wire<C::Message>>) {
        let _ = now;
        if peer != self.idx && !self.links.contains_key(&peer) && self.dialing.insert(peer) {
            self.net.stats.borrow_mut().dials += 1;
            io.send(peer, Wire::Open);
        }
    }

    fn peer_up(&self, peer: NodeIdx, inbound: bool) -> PeerUp {
        let directory = self.net.directory.borrow();
        PeerUp {
            peer: directory.peer(peer),
            serves: true,
            inbound,
            addresses: vec![directory.address(peer).to_string()],
            ip: directory.ip(peer),
        }
    }

    fn up(&mut self, now: Duration, peer: NodeIdx, inbound: bool, io: &mut Io<Wire<C::Message>>) {
        self.links.insert(
            peer,
            Link {
                inbound,
                departures: VecDeque::new(),
                last: now,
            },
        );
        let up = self.peer_up(peer, inbound);
        self.feed(now, Input::PeerUp(up), io);
    }

    fn down(&mut self, now: Duration, peer: NodeIdx, io: &mut Io<Wire<C::Message>>) {
        if self.links.remove(&peer).is_some() {
            let id = self.net.peer(peer);
            self.feed(now, Input::PeerDown(id), io);
        }
    }

    /// Closes the connection to `peer` from this side.
    fn close(
        &mut self,
        now: Duration,
        peer: NodeIdx,
        out: &mut Outputs<C>,
        io: &mut Io<Wire<C::Message>>,
    ) {
        if let Some(link) = self.links.remove(&peer) {
            self.net.stats.borrow_mut().closed += 1;
            // The goodbye goes after what was queued before it.
            io.send_after(peer, Wire::Close, link.last.saturating_sub(now));
            let id = self.net.peer(peer);
            self.core
                .handle(self.net.instant(now), Input::PeerDown(id), out);
        }
    }

    /// Queues `message` on the link to `peer`; `Err` if it was dropped.
    fn send(
        &mut self,
        now: Duration,
        peer: NodeIdx,
        message: C::Message,
        io: &mut Io<Wire<C::Message>>,
    ) -> Result<(), (C::Message, SendFailure)> {
        let size = self.core.wire_size(&message);
        let Some(link) = self.links.get_mut(&peer) else {
            self.net.stats.borrow_mut().not_connected += 1;
            return Err((message, SendFailure::NotConnected));
        };
        let leaves = match &self.net.model.queue {
            None => now,
            Some(queue) => {
                while link.departures.front().is_some_and(|d| *d <= now) {
                    link.departures.pop_front();
                }
                if link.departures.len() >= queue.capacity {
                    self.net.stats.borrow_mut().queue_full += 1;
                    return Err((message, SendFailure::QueueFull));
                }
                let leaves = link.last.max(now) + queue.service(size);
                link.departures.push_back(leaves);
                leaves
            }
        };
        link.last = link.last.max(leaves);
        self.net.stats.borrow_mut().sent += 1;
        io.send_after(
            peer,
            Wire::Data { message, size },
            leaves.saturating_sub(now),
        );
        Ok(())
    }

    /// Carries out `outputs` and whatever they lead to, in order, then
    /// sets the core's timer.
    fn execute(&mut self, now: Duration, outputs: Outputs<C>, io: &mut Io<Wire<C::Message>>) {
        let at = self.net.instant(now);
        let mut queue = VecDeque::from(outputs);
        let mut out = Vec::new();
        while let Some(output) = queue.pop_front() {
            match output {
                Output::Send { to, message } => {
                    let failed = match self.net.index(&to) {
                        Some(peer) => self.send(now, peer, message, io).err(),
                        None => {
                            self.net.stats.borrow_mut().not_connected += 1;
                            Some((message, SendFailure::NotConnected))
                        }
                    };
                    if let Some((message, reason)) = failed {
                        let message = self.core.wants_back(&message).then_some(message);
                        let input = Input::SendFailed {
                            to,
                            message,
                            reason,
                        };
                        self.core.handle(at, input, &mut out);
                    }
                }
                Output::Broadcast(message) => {
                    let peers: Vec<NodeIdx> = self.links.keys().copied().collect();
                    for peer in peers {
                        if let Err((_, reason)) = self.send(now, peer, message.clone(), io) {
                            let to = self.net.peer(peer);
                            let input = Input::SendFailed {
                                to,
                                message: None,
                                reason,
                            };
                            self.core.handle(at, input, &mut out);
                        }
                    }
                }
                Output::Connect { peer, addresses } => {
                    let target = self.net.index(&peer);
                    match target {
                        Some(i) if self.links.contains_key(&i) => {
                            let inbound = self.links[&i].inbound;
                            let up = self.peer_up(i, inbound);
                            self.core.handle(at, Input::PeerUp(up), &mut out);
                        }
                        Some(i)
                            if i != self.idx
                                && addresses
                                    .iter()
                                    .any(|a| *a == self.net.directory.borrow().address(i)) =>
                        {
                            self.dial(now, i, io);
                        }
                        _ => {
                            self.net.stats.borrow_mut().dial_failures += 1;
                            self.core.handle(at, Input::DialFailed(peer), &mut out);
                        }
                    }
                }
                Output::Disconnect { peer, ban } => {
                    if let Some(i) = self.net.index(&peer) {
                        if let Some(ban) = ban {
                            self.bans.insert(i, now + ban);
                        }
                        self.close(now, i, &mut out, io);
                    }
                }
                Output::Report { peer, error } => {
                    self.net.stats.borrow_mut().reports += 1;
                    if error.is_fatal()
                        && let Some(i) = self.net.index(&peer)
                    {
                        self.close(now, i, &mut out, io);
                    }
                }
                Output::Event(event) => self.host.on_event(self.idx, now, event),
                Output::Effect(effect) => {
                    if let Some(outcome) = self.host.perform(self.idx, now, effect) {
                        self.core.handle(at, Input::Outcome(outcome), &mut out);
                    }
                }
            }
            queue.extend(out.drain(..));
        }
        self.arm_timer(now, io);
    }

    fn arm_timer(&mut self, now: Duration, io: &mut Io<Wire<C::Message>>) {
        let Some(wake) = self.core.next_wakeup() else {
            return;
        };
        let base = self.net.instant(Duration::ZERO);
        let wake = wake.saturating_duration_since(base).max(now);
        if self.timer_at.is_none_or(|t| wake < t) {
            io.timer(wake - now, CORE_TIMER);
            self.timer_at = Some(wake);
        }
    }
}

impl<C: Core, H: Host<C>> SimNode for NetNode<C, H> {
    type Message = Wire<C::Message>;

    fn on_start(&mut self, now: Duration, io: &mut Io<Self::Message>) {
        for peer in std::mem::take(&mut self.bootstrap) {
            self.dial(now, peer, io);
        }
        self.arm_timer(now, io);
    }

    fn on_message(
        &mut self,
        now: Duration,
        from: NodeIdx,
        message: Self::Message,
        io: &mut Io<Self::Message>,
    ) {
        match message {
            Wire::Open => {
                if self.bans.get(&from).is_some_and(|until| *until > now) {
                    self.net.stats.borrow_mut().refused_banned += 1;
                    io.send(from, Wire::Close);
                    return;
                }
                let inbound = self.links.values().filter(|l| l.inbound).count();
                if !self.links.contains_key(&from) && inbound >= self.net.model.max_inbound {
                    self.net.stats.borrow_mut().refused_full += 1;
                    io.send(from, Wire::Close);
                    return;
                }
                self.dialing.remove(&from);
                io.send(from, Wire::OpenAck);
                if !self.links.contains_key(&from) {
                    self.net.stats.borrow_mut().connections += 1;
                    self.up(now, from, true, io);
                }
            }
            Wire::OpenAck => {
                if self.dialing.remove(&from) && !self.links.contains_key(&from) {
                    self.up(now, from, false, io);
                }
            }
            Wire::Close => {
                self.dialing.remove(&from);
                self.down(now, from, io);
            }
            Wire::Data { message, size } => {
                if self.links.contains_key(&from) {
                    let id = self.net.peer(from);
                    self.feed(
                        now,
                        Input::Message {
                            from: id,
                            message,
                            size,
                        },
                        io,
                    );
                } else {
                    self.net.stats.borrow_mut().arrived_closed += 1;
                }
            }
        }
    }

    fn on_timer(&mut self, now: Duration, timer: u64, io: &mut Io<Self::Message>) {
        if timer == CORE_TIMER {
            // A timer superseded by an earlier one, which has fired and
            // armed the next: the core's timer is pending at `timer_at`.
            // Re-arming here would start a second chain of timers, and
            // every superseded timer another.
            if self.timer_at.is_some_and(|at| at > now) {
                return;
            }
            self.timer_at = None;
            let due = self
                .core
                .next_wakeup()
                .is_some_and(|w| w <= self.net.instant(now));
            if due {
                self.feed(now, Input::Timer, io);
            } else {
                self.arm_timer(now, io);
            }
        } else if let Ok(peer) = NodeIdx::try_from(timer - KEEPALIVE)
            && self.links.contains_key(&peer)
        {
            self.net.stats.borrow_mut().failed += 1;
            self.down(now, peer, io);
        }
    }

    fn on_unreachable(&mut self, now: Duration, peer: NodeIdx, io: &mut Io<Self::Message>) {
        if self.dialing.remove(&peer) {
            self.net.stats.borrow_mut().dial_failures += 1;
            let id = self.net.peer(peer);
            self.feed(now, Input::DialFailed(id), io);
        }
        if self.links.contains_key(&peer) {
            self.net.stats.borrow_mut().failed += 1;
            self.down(now, peer, io);
        }
    }
}

impl<C: Core, H: Host<C>> Sim<NetNode<C, H>> {
    /// Crashes node `i`: it handles nothing from now on, and each node
    /// connected to it notices with the router's keepalive timing
    /// ([`ConnectionModel::detection`]), or one round trip after it next
    /// sends to it.
    pub fn crash_node(&mut self, i: NodeIdx) {
        let peers: Vec<NodeIdx> = self.node(i).connected().collect();
        for peer in peers {
            let after = self.node(peer).net.model.detection(i, peer);
            self.with_node(peer, |_, _, io| io.timer(after, KEEPALIVE + u64::from(i)));
        }
        self.crash(i);
    }
}

#[cfg(test)]
mod tests;
