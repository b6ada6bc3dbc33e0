//! The one reactor driver (`p2p::reactor::driver`) runs a toy core on real
//! routers over the memory transport: every input the core trait promises
//! arrives, and every output is carried out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use p2p::reactor::driver::{self, Shell};
use p2p::reactor::{Core, CoreInput, Input, Output, Outputs};
use p2p::{
    ChannelDescriptor, ChannelError, ChannelId, ChannelReceiver, ChannelSender, Keypair, PeerError,
    PeerId, Reactor, ReactorContext, Router, RouterBuilder,
};
use parking_lot::Mutex;
use testkit::Network;
use tokio::sync::{mpsc, oneshot};

const SECOND: Duration = Duration::from_secs(1);

/// The toy channel's wire message.
#[derive(Clone, PartialEq, prost::Message)]
struct Num {
    #[prost(uint64, tag = "1")]
    n: u64,
}

type Log = Arc<Mutex<Vec<String>>>;

/// Logs every input as an event; echoes numbers under 100 plus 100;
/// commands are outputs to carry out as they are.
struct Toy;

impl Core for Toy {
    type Message = u64;
    type Wire = Num;
    type Command = Output<u64, String, u64>;
    type Reply = ();
    type Event = String;
    type Effect = u64;
    type Outcome = u64;

    fn handle(&mut self, _now: Instant, input: CoreInput<Self>, out: &mut Outputs<Self>) {
        let text = match input {
            Input::PeerUp(up) => format!("up {} serves={}", up.peer.short(), up.serves),
            Input::PeerDown(peer) => format!("down {}", peer.short()),
            Input::Message {
                from,
                message,
                size,
            } => {
                if message < 100 {
                    out.push(Output::Send {
                        to: from,
                        message: message + 100,
                    });
                }
                format!("message {message} from {} size {size}", from.short())
            }
            Input::Malformed { from, .. } => format!("malformed from {}", from.short()),
            Input::SendFailed {
                message, reason, ..
            } => format!("send failed {message:?} {reason:?}"),
            Input::DialFailed(peer) => format!("dial failed {}", peer.short()),
            Input::Outcome(n) => format!("outcome {n}"),
            Input::Timer => "timer".into(),
        };
        out.push(Output::Event(text));
    }

    fn command(&mut self, _now: Instant, command: Self::Command, out: &mut Outputs<Self>) {
        out.push(command);
    }

    fn next_wakeup(&self) -> Option<Instant> {
        None
    }

    fn decode(&self, wire: Num) -> Result<Option<u64>, PeerError> {
        match wire.n {
            666 => Err(PeerError::MalformedMessage {
                channel: "toy",
                detail: "the number of the beast".into(),
            }),
            n => Ok(Some(n)),
        }
    }

    fn encode(message: u64) -> Num {
        Num { n: message }
    }

    fn wants_back(&self, _message: &u64) -> bool {
        true
    }
}

type Request = (Output<u64, String, u64>, oneshot::Sender<()>);

struct ToyShell {
    log: Log,
}

impl Shell<Toy> for ToyShell {
    type Request = Request;

    fn on_request(
        &mut self,
        core: &mut Toy,
        now: Instant,
        (command, reply): Request,
        out: &mut Outputs<Toy>,
    ) {
        core.command(now, command, out);
        let _ = reply.send(());
    }

    fn on_event(&mut self, _core: &mut Toy, _now: Instant, event: String, _out: &mut Outputs<Toy>) {
        self.log.lock().push(event);
    }

    async fn perform(&mut self, _router: &Router, effect: u64) -> Option<u64> {
        Some(effect * 2)
    }
}

struct ToyReactor {
    log: Log,
    channel: Option<(ChannelSender<Num>, ChannelReceiver<Num>)>,
    requests: Option<mpsc::Receiver<Request>>,
    handle: mpsc::Sender<Request>,
}

#[derive(Clone)]
struct ToyHandle {
    log: Log,
    requests: mpsc::Sender<Request>,
}

impl ToyHandle {
    async fn command(&self, command: Output<u64, String, u64>) {
        let (reply, done) = oneshot::channel();
        self.requests.send((command, reply)).await.expect("running");
        done.await.expect("answered");
    }

    fn logged(&self, line: &str) -> bool {
        self.log.lock().iter().any(|l| l == line)
    }

    fn count(&self, line: &str) -> usize {
        self.log.lock().iter().filter(|l| *l == line).count()
    }
}

impl Reactor for ToyReactor {
    type Handle = ToyHandle;

    fn name(&self) -> &'static str {
        "toy"
    }

    fn open(&mut self, router: &mut RouterBuilder) -> Result<ToyHandle, ChannelError> {
        self.channel = Some(router.open_channel::<Num>(descriptor())?);
        Ok(ToyHandle {
            log: self.log.clone(),
            requests: self.handle.clone(),
        })
    }

    async fn run(self, ctx: ReactorContext) {
        let (Some(channel), requests) = (self.channel, self.requests) else {
            return;
        };
        driver::run(Toy, ToyShell { log: self.log }, channel, requests, ctx).await;
    }
}

fn descriptor() -> ChannelDescriptor {
    ChannelDescriptor {
        id: ChannelId(0x7001),
        name: "toy",
        priority: 1,
        send_queue: 8,
        recv_buffer: 8,
        max_message_size: 1024,
    }
}

fn toy() -> ToyReactor {
    let (handle, requests) = mpsc::channel(8);
    ToyReactor {
        log: Log::default(),
        channel: None,
        requests: Some(requests),
        handle,
    }
}

async fn wait_logged(net: &Network, handle: &ToyHandle, line: &str) {
    net.wait_until(line, 5 * SECOND, |_| handle.logged(line))
        .await
        .unwrap_or_else(|_| panic!("never logged {line:?}: {:?}", handle.log.lock()));
}

#[tokio::test(start_paused = true)]
async fn the_driver_feeds_a_core_every_input_and_carries_out_every_output() {
    // Nodes 0 and 1 run the toy core; node 2 does not open its channel.
    let mut net = Network::builder()
        .seed(15)
        .nodes(3)
        .full_mesh()
        .build()
        .expect("build");
    let h0 = net.reactor(0, toy()).expect("open");
    let h1 = net.reactor(1, toy()).expect("open");
    net.start().expect("start");
    let (n1, n2) = (net.peer_id(1).short(), net.peer_id(2).short());
    let n0 = net.peer_id(0).short();

    // Every peer is announced, with whether it serves the channel.
    wait_logged(&net, &h0, &format!("up {n1} serves=true")).await;
    wait_logged(&net, &h0, &format!("up {n2} serves=false")).await;

    // A command's send arrives with its encoded size; the answer comes back.
    let to = net.peer_id(1);
    h0.command(Output::Send { to, message: 7 }).await;
    wait_logged(&net, &h1, &format!("message 7 from {n0} size 2")).await;
    wait_logged(&net, &h0, &format!("message 107 from {n1} size 2")).await;

    // A send to a stranger comes back, with the message the core asked for.
    let stranger: PeerId = Keypair::from_seed(99).peer_id();
    h0.command(Output::Send {
        to: stranger,
        message: 5,
    })
    .await;
    wait_logged(&net, &h0, "send failed Some(5) NotConnected").await;

    // Connecting to a connected peer announces it again.
    let addresses = vec![net.address(1).clone()];
    h0.command(Output::Connect {
        peer: to,
        addresses,
    })
    .await;
    let again = format!("up {n1} serves=true");
    net.wait_until("re-announced", 5 * SECOND, |_| h0.count(&again) == 2)
        .await
        .expect("announced twice");

    // A connect with no address fails at once.
    h0.command(Output::Connect {
        peer: stranger,
        addresses: Vec::new(),
    })
    .await;
    wait_logged(&net, &h0, &format!("dial failed {}", stranger.short())).await;

    // An effect's outcome is fed back.
    h0.command(Output::Effect(21)).await;
    wait_logged(&net, &h0, "outcome 42").await;

    // A frame the core refuses to decode comes in as malformed, and the
    // core's report costs the sender score.
    h1.command(Output::Send {
        to: net.peer_id(0),
        message: 666,
    })
    .await;
    wait_logged(&net, &h0, &format!("malformed from {n1}")).await;

    // A broadcast reaches every peer serving the channel.
    h1.command(Output::Broadcast(9)).await;
    wait_logged(&net, &h0, &format!("message 9 from {n1} size 2")).await;

    // A disconnect ends the connection: both cores see the peer go.
    h0.command(Output::Disconnect {
        peer: to,
        ban: None,
    })
    .await;
    wait_logged(&net, &h0, &format!("down {n1}")).await;
    wait_logged(&net, &h1, &format!("down {n0}")).await;
    net.shutdown().await;
}
