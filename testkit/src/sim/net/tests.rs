//! The connection model on a toy core that records what it is fed.

use std::rc::Rc;
use std::time::{Duration, Instant};

use p2p::reactor::{Core, Input, Output, Outputs, SendFailure};
use p2p::{Keypair, PeerError, PeerId};

use super::{ConnectionModel, Host, Net, NetNode, QueueModel};
use crate::sim::{NodeIdx, Sim, SimConfig};

/// Records every input; commands become outputs as they are.
#[derive(Debug, Default)]
struct Recorder {
    seen: Vec<(Duration, String)>,
    base: Option<Instant>,
}

type Out = Output<u32, u32, ()>;

impl Core for Recorder {
    type Message = u32;
    type Wire = u32;
    type Command = Out;
    type Reply = ();
    type Event = u32;
    type Effect = ();
    type Outcome = ();

    fn handle(&mut self, now: Instant, input: Input<u32, ()>, out: &mut Outputs<Self>) {
        let at = now - self.base.expect("base set");
        let text = match input {
            Input::PeerUp(up) => format!("up {} inbound={}", up.peer.short(), up.inbound),
            Input::PeerDown(peer) => format!("down {}", peer.short()),
            Input::Message { message, .. } => {
                out.push(Output::Event(message));
                format!("message {message}")
            }
            Input::SendFailed {
                message, reason, ..
            } => format!("failed {message:?} {reason:?}"),
            Input::DialFailed(peer) => format!("dial failed {}", peer.short()),
            other => format!("{other:?}"),
        };
        self.seen.push((at, text));
    }

    fn command(&mut self, _now: Instant, command: Out, out: &mut Outputs<Self>) {
        out.push(command);
    }

    fn next_wakeup(&self) -> Option<Instant> {
        None
    }

    fn decode(&self, wire: u32) -> Result<Option<u32>, PeerError> {
        Ok(Some(wire))
    }

    fn encode(message: u32) -> u32 {
        message
    }

    fn wants_back(&self, _message: &u32) -> bool {
        true
    }
}

#[derive(Debug, Default)]
struct Events(Vec<(NodeIdx, u32)>);

impl Host<Recorder> for Events {
    fn on_event(&mut self, node: NodeIdx, _now: Duration, event: u32) {
        self.0.push((node, event));
    }
}

fn network(n: u32, model: ConnectionModel) -> (Sim<NetNode<Recorder, Events>>, Rc<Net>) {
    let base = Instant::now();
    let net = Net::new(model, base);
    let nodes = (0..n)
        .map(|i| {
            let idx = net
                .directory
                .borrow_mut()
                .add(Keypair::from_seed(u64::from(i) + 1).peer_id(), None);
            let core = Recorder {
                seen: Vec::new(),
                base: Some(base),
            };
            NetNode::new(idx, core, Events::default(), net.clone())
        })
        .collect();
    let config = SimConfig {
        latency_min: Duration::from_millis(10),
        latency_max: Duration::from_millis(10),
        ..SimConfig::default()
    };
    let mut sim = Sim::new(nodes, config);
    sim.start_all();
    (sim, net)
}

fn connect(sim: &mut Sim<NetNode<Recorder, Events>>, net: &Net, from: NodeIdx, to: NodeIdx) {
    let peer = net.peer(to);
    let addresses = vec![net.directory.borrow().address(to)];
    sim.with_node(from, |n, now, io| {
        n.command(now, Output::Connect { peer, addresses }, io)
    });
}

fn seen(sim: &Sim<NetNode<Recorder, Events>>, i: NodeIdx) -> Vec<String> {
    sim.node(i)
        .core()
        .seen
        .iter()
        .map(|(_, s)| s.clone())
        .collect()
}

fn short(net: &Net, i: NodeIdx) -> String {
    net.peer(i).short()
}

#[test]
fn a_connect_comes_up_on_both_sides_after_one_round_trip() {
    let (mut sim, net) = network(2, ConnectionModel::default());
    connect(&mut sim, &net, 0, 1);
    sim.run_for(Duration::from_secs(1));
    let dialed = &sim.node(1).core().seen;
    let dialer = &sim.node(0).core().seen;
    assert_eq!(
        dialed[0],
        (
            Duration::from_millis(10),
            format!("up {} inbound=true", short(&net, 0))
        )
    );
    assert_eq!(
        dialer[0],
        (
            Duration::from_millis(20),
            format!("up {} inbound=false", short(&net, 1))
        )
    );
    // Connecting again re-announces the peer.
    connect(&mut sim, &net, 0, 1);
    assert_eq!(seen(&sim, 0).len(), 2);
    assert_eq!(net.stats().connections, 1);
}

#[test]
fn messages_arrive_in_order_and_sends_to_strangers_fail() {
    let (mut sim, net) = network(3, ConnectionModel::default());
    connect(&mut sim, &net, 0, 1);
    sim.run_for(Duration::from_secs(1));
    let to = net.peer(1);
    for m in 1..=5 {
        sim.with_node(0, |n, now, io| {
            n.command(now, Output::Send { to, message: m }, io)
        });
    }
    let stranger = net.peer(2);
    sim.with_node(0, |n, now, io| {
        n.command(
            now,
            Output::Send {
                to: stranger,
                message: 9,
            },
            io,
        )
    });
    sim.run_for(Duration::from_secs(1));
    let got: Vec<u32> = sim.node(1).host().0.iter().map(|(_, m)| *m).collect();
    assert_eq!(got, vec![1, 2, 3, 4, 5]);
    assert!(seen(&sim, 0).contains(&"failed Some(9) NotConnected".to_string()));
}

#[test]
fn a_crash_is_noticed_with_the_routers_keepalive_timing() {
    let model = ConnectionModel::default();
    let (mut sim, net) = network(3, model.clone());
    connect(&mut sim, &net, 0, 1);
    connect(&mut sim, &net, 2, 1);
    sim.run_for(Duration::from_secs(1));
    let crashed_at = sim.now();
    sim.crash_node(1);
    sim.run_for(Duration::from_secs(60));
    for i in [0, 2] {
        let (at, what) = sim.node(i).core().seen.last().cloned().expect("inputs");
        assert_eq!(what, format!("down {}", short(&net, 1)));
        let after = at - crashed_at;
        assert_eq!(after, model.detection(1, i));
        assert!(after >= model.pong_timeout && after < model.ping_interval + model.pong_timeout);
    }
    assert_eq!(net.stats().failed, 2);
}

#[test]
fn a_full_queue_drops_the_send_and_tells_the_core() {
    let model = ConnectionModel {
        queue: Some(QueueModel {
            capacity: 2,
            per_message: Duration::from_millis(100),
            bytes_per_second: 0,
        }),
        ..ConnectionModel::default()
    };
    let (mut sim, net) = network(2, model);
    connect(&mut sim, &net, 0, 1);
    sim.run_for(Duration::from_secs(1));
    let to = net.peer(1);
    for m in 1..=4 {
        sim.with_node(0, |n, now, io| {
            n.command(now, Output::Send { to, message: m }, io)
        });
    }
    sim.run_for(Duration::from_secs(1));
    let got: Vec<u32> = sim.node(1).host().0.iter().map(|(_, m)| *m).collect();
    assert_eq!(got, vec![1, 2]);
    let failed: Vec<String> = seen(&sim, 0)
        .into_iter()
        .filter(|s| s.starts_with("failed"))
        .collect();
    assert_eq!(
        failed,
        vec![
            format!("failed Some(3) {:?}", SendFailure::QueueFull),
            format!("failed Some(4) {:?}", SendFailure::QueueFull),
        ]
    );
    assert_eq!(net.stats().queue_full, 2);
    // Once the queue drains, sends go through again.
    sim.with_node(0, |n, now, io| {
        n.command(now, Output::Send { to, message: 5 }, io)
    });
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.node(1).host().0.last().map(|(_, m)| *m), Some(5));
}

#[test]
fn a_ban_refuses_the_peer_until_it_ends_and_a_fatal_report_closes() {
    let (mut sim, net) = network(2, ConnectionModel::default());
    connect(&mut sim, &net, 0, 1);
    sim.run_for(Duration::from_secs(1));
    let peer = net.peer(0);
    sim.with_node(1, |n, now, io| {
        n.command(
            now,
            Output::Disconnect {
                peer,
                ban: Some(Duration::from_secs(30)),
            },
            io,
        )
    });
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        seen(&sim, 0).last(),
        Some(&format!("down {}", short(&net, 1)))
    );
    connect(&mut sim, &net, 0, 1);
    sim.run_for(Duration::from_secs(1));
    assert!(!sim.node(0).is_connected(1));
    assert_eq!(net.stats().refused_banned, 1);
    sim.run_for(Duration::from_secs(30));
    connect(&mut sim, &net, 0, 1);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.node(0).is_connected(1) && sim.node(1).is_connected(0));
    let peer: PeerId = net.peer(1);
    let error = PeerError::Protocol("lies".into());
    sim.with_node(0, |n, now, io| {
        n.command(now, Output::Report { peer, error }, io)
    });
    sim.run_for(Duration::from_secs(1));
    assert!(!sim.node(0).is_connected(1) && !sim.node(1).is_connected(0));
}

#[test]
fn dialing_a_crashed_node_fails_after_a_round_trip() {
    let (mut sim, net) = network(2, ConnectionModel::default());
    sim.crash_node(1);
    connect(&mut sim, &net, 0, 1);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        sim.node(0).core().seen,
        vec![(
            Duration::from_millis(20),
            format!("dial failed {}", short(&net, 1))
        )]
    );
}

#[test]
fn a_node_with_max_inbound_connections_refuses_more() {
    let model = ConnectionModel {
        max_inbound: 1,
        ..ConnectionModel::default()
    };
    let (mut sim, net) = network(3, model);
    connect(&mut sim, &net, 0, 2);
    sim.run_for(Duration::from_secs(1));
    connect(&mut sim, &net, 1, 2);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.node(0).is_connected(2));
    assert!(!sim.node(1).is_connected(2) && !sim.node(2).is_connected(1));
    assert_eq!(net.stats().refused_full, 1);
}

/// Ticks every second; each command adds one earlier deadline.
#[derive(Debug)]
struct Ticker {
    next: Instant,
    extra: std::collections::BTreeSet<Instant>,
    inputs: u64,
}

impl Core for Ticker {
    type Message = u32;
    type Wire = u32;
    type Command = Duration;
    type Reply = ();
    type Event = u32;
    type Effect = ();
    type Outcome = ();

    fn handle(&mut self, now: Instant, input: Input<u32, ()>, _out: &mut Outputs<Self>) {
        if input == Input::Timer {
            self.inputs += 1;
            if now >= self.next {
                self.next = now + Duration::from_secs(1);
            }
            self.extra.retain(|at| *at > now);
        }
    }

    fn command(&mut self, now: Instant, after: Duration, _out: &mut Outputs<Self>) {
        self.extra.insert(now + after);
    }

    fn next_wakeup(&self) -> Option<Instant> {
        Some(
            self.extra
                .first()
                .map_or(self.next, |at| self.next.min(*at)),
        )
    }

    fn decode(&self, wire: u32) -> Result<Option<u32>, PeerError> {
        Ok(Some(wire))
    }

    fn encode(message: u32) -> u32 {
        message
    }
}

#[test]
fn a_superseded_timer_starts_no_second_chain() {
    let base = Instant::now();
    let net = Net::new(ConnectionModel::default(), base);
    let idx = net
        .directory
        .borrow_mut()
        .add(Keypair::from_seed(1).peer_id(), None);
    let core = Ticker {
        next: base + Duration::from_secs(1),
        extra: Default::default(),
        inputs: 0,
    };
    let node = NetNode::new(idx, core, super::Ignore, net.clone());
    let mut sim = Sim::new(vec![node], SimConfig::default());
    sim.start_all();
    // Ten deadlines, each earlier than the last: ten timers superseded.
    for tenths in (1..=9).rev() {
        sim.with_node(0, |n, now, io| {
            n.command(now, Duration::from_millis(100 * tenths), io)
        });
    }
    sim.run_until(Duration::from_millis(100_500));
    let inputs = sim.node(0).core().inputs;
    assert_eq!(inputs, 9 + 100, "each deadline once, each tick once");
    // Each superseded timer fires once more, and does nothing.
    assert!(
        sim.stats().timers <= inputs + 10,
        "{} timers for {inputs} inputs",
        sim.stats().timers
    );
}
