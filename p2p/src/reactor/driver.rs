//! The one driver that runs any [`Core`] on the router.
//!
//! [`run`] is a single task. It starts with the shell's
//! [`Shell::on_start`] (a reactor restoring what it kept) and the peers
//! already connected, then feeds the core, in this order of priority:
//! shutdown; the router's peer updates (resynchronising from
//! [`Router::peers`] when it lagged behind them); the application's
//! requests (through the reactor's [`Shell`]); messages on the core's
//! channel, decoded by [`Core::decode`]; and its timer
//! ([`Core::next_wakeup`]). After each input it carries out the core's
//! outputs, and what they lead to, before taking the next input:
//!
//! - **sends never wait**: [`ChannelSender::try_send`]; a full queue or a
//!   peer gone comes back as [`Input::SendFailed`] (the router counts the
//!   drop);
//! - **dials** go through [`Router::connect`] as a reactor's request; a
//!   peer already connected is announced again with [`Input::PeerUp`];
//! - **disconnects** and **reports** go to the router;
//! - **events** and **effects** go to the [`Shell`], the reactor's own
//!   thin part: it owns the application's handles (replies, subscriptions,
//!   snapshots) and does what only that reactor knows (its store, the
//!   address book).
//!
//! The shell may wait (an effect may ask the router's supervisor, which
//! never waits on reactors); the core never does.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::time::Instant;

use prost::Message as _;
use tokio::sync::mpsc;

use crate::channel::{ChannelId, SendError, TrySendError};
use crate::identity::PeerId;
use crate::reactor::ReactorContext;
use crate::router::channel::{ChannelReceiver, ChannelSender};
use crate::router::{PeerStatus, PeerUpdate, PeerUpdatesError, Router};
use p2p_core::reactor::{Core, Input, Output, Outputs, PeerUp, SendFailure};

/// The current time as cores see it: tokio's clock (so a test on a paused
/// clock moves the cores' time with it), as a `std` instant.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Seconds and milliseconds since the Unix epoch, from the operating
/// system's clock (0 if it is set before 1970). Cores that need wall time
/// (expiries, timestamps) read it once, when they are built, and count
/// from there on the monotonic clock.
pub fn unix_time() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// A reactor's thin, reactor-specific part beside its [`Core`]: what the
/// application's handles ask, what the core tells the application, and
/// the effects only this reactor knows how to carry out.
pub trait Shell<C: Core>: Send + 'static {
    /// What the reactor's handles send the driver.
    type Request: Send + 'static;

    /// Called once, before the core sees its first input (the first peer
    /// announced): the shell may bring the core up to date from what only
    /// the reactor keeps (the ring restores its location from its store),
    /// appending what follows to `out`, which is carried out before any
    /// input. Default: nothing.
    fn on_start(&mut self, core: &mut C, now: Instant, out: &mut Outputs<C>) {
        let _ = (core, now, out);
    }

    /// Handles one request from a handle: usually calls
    /// [`Core::command`] and answers the handle.
    fn on_request(
        &mut self,
        core: &mut C,
        now: Instant,
        request: Self::Request,
        out: &mut Outputs<C>,
    );

    /// Hands an event of the core's to the application. It may feed the
    /// core a command in return (gossip leaves a topic nobody reads).
    fn on_event(&mut self, core: &mut C, now: Instant, event: C::Event, out: &mut Outputs<C>);

    /// Carries out a reactor-specific effect; its result, if any, is fed
    /// back to the core. Default: there are none.
    fn perform(
        &mut self,
        router: &Router,
        effect: C::Effect,
    ) -> impl Future<Output = Option<C::Outcome>> + Send {
        let _ = (router, effect);
        async { None }
    }

    /// Called after each step (an input and everything it led to, and the
    /// start: [`on_start`](Self::on_start) and the first peers announced):
    /// publish what the handles read (counters, a snapshot).
    fn after_step(&mut self, core: &C) {
        let _ = core;
    }
}

/// Runs `core` on the router until `ctx.shutdown` is cancelled, the
/// router stops or the channel closes. `requests` are the handles'
/// requests (`None` if the reactor takes none); when every handle is gone
/// the reactor keeps serving its peers.
pub async fn run<C, S>(
    core: C,
    shell: S,
    channel: (ChannelSender<C::Wire>, ChannelReceiver<C::Wire>),
    requests: Option<mpsc::Receiver<S::Request>>,
    ctx: ReactorContext,
) where
    C: Core + Send + 'static,
    C::Message: Send,
    C::Wire: prost::Message + Default + Send + 'static,
    C::Event: Send,
    C::Effect: Send,
    C::Outcome: Send,
    S: Shell<C>,
{
    let (tx, mut rx) = channel;
    let channel_id = tx.descriptor().id;
    let mut driver = Driver {
        router: ctx.router,
        tx,
        channel_id,
        core,
        shell,
        up: BTreeMap::new(),
    };
    let mut updates = driver.router.subscribe();
    let mut requests = requests;
    let mut out = Vec::new();
    driver.shell.on_start(&mut driver.core, now(), &mut out);
    driver.execute(out).await;
    driver.resync().await;
    driver.shell.after_step(&driver.core);
    loop {
        let wake = driver
            .core
            .next_wakeup()
            .map(tokio::time::Instant::from_std);
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break,
            update = updates.recv() => match update {
                Ok(update) => driver.on_update(update).await,
                Err(PeerUpdatesError::Lagged(missed)) => {
                    tracing::debug!(
                        channel = driver.tx.descriptor().name,
                        missed,
                        "reactor lagged behind peer updates; resynchronising"
                    );
                    driver.resync().await;
                }
                Err(PeerUpdatesError::Closed) => break,
            },
            request = recv_request(&mut requests) => match request {
                Some(request) => driver.on_request(request).await,
                // Every handle is gone: keep serving the peers.
                None => requests = None,
            },
            envelope = rx.recv() => match envelope {
                Some(envelope) => driver.on_envelope(envelope.from, envelope.message).await,
                None => break,
            },
            _ = sleep => driver.feed(Input::Timer).await,
        }
        driver.shell.after_step(&driver.core);
    }
}

async fn recv_request<R>(requests: &mut Option<mpsc::Receiver<R>>) -> Option<R> {
    match requests {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

struct Driver<C: Core, S> {
    router: Router,
    tx: ChannelSender<C::Wire>,
    channel_id: ChannelId,
    core: C,
    shell: S,
    /// Peers announced to the core as up, as they were announced (a
    /// connection's announcement does not change while it lasts).
    up: BTreeMap<PeerId, PeerUp>,
}

impl<C, S> Driver<C, S>
where
    C: Core + Send + 'static,
    C::Message: Send,
    C::Wire: prost::Message + Default + Send + 'static,
    C::Event: Send,
    C::Effect: Send,
    C::Outcome: Send,
    S: Shell<C>,
{
    /// Feeds one input and carries out what follows.
    async fn feed(&mut self, input: Input<C::Message, C::Outcome>) {
        let mut out = Vec::new();
        self.core.handle(now(), input, &mut out);
        self.execute(out).await;
    }

    async fn on_request(&mut self, request: S::Request) {
        let mut out = Vec::new();
        self.shell
            .on_request(&mut self.core, now(), request, &mut out);
        self.execute(out).await;
    }

    async fn on_envelope(&mut self, from: PeerId, wire: C::Wire) {
        let size = wire.encoded_len();
        let input = match self.core.decode(wire) {
            Ok(Some(message)) => Input::Message {
                from,
                message,
                size,
            },
            Ok(None) => return,
            Err(error) => Input::Malformed { from, error },
        };
        self.feed(input).await;
    }

    async fn on_update(&mut self, update: PeerUpdate) {
        match update.status {
            PeerStatus::Up {
                channels,
                direction,
            } => {
                let up = self.peer_up(
                    update.peer,
                    channels.contains(&self.channel_id),
                    direction == crate::Direction::Inbound,
                );
                self.up.insert(update.peer, up.clone());
                self.feed(Input::PeerUp(up)).await;
            }
            PeerStatus::Down { .. } => {
                if self.up.remove(&update.peer).is_some() {
                    self.feed(Input::PeerDown(update.peer)).await;
                }
            }
        }
    }

    fn peer_up(&self, peer: PeerId, serves: bool, inbound: bool) -> PeerUp {
        PeerUp {
            peer,
            serves,
            inbound,
            addresses: self
                .router
                .peer_info(peer)
                .map(|info| info.listen_addresses)
                .unwrap_or_default(),
            ip: self.router.peer_ip(peer),
        }
    }

    /// Brings the core in line with the router's connected peers, at start
    /// and after missed updates.
    async fn resync(&mut self) {
        let peers = self.router.peers();
        let connected: BTreeSet<PeerId> = peers.iter().map(|p| p.peer).collect();
        let gone: Vec<PeerId> = self
            .up
            .keys()
            .filter(|p| !connected.contains(p))
            .copied()
            .collect();
        for peer in gone {
            self.up.remove(&peer);
            self.feed(Input::PeerDown(peer)).await;
        }
        let id = u32::from(self.channel_id.0);
        for peer in peers {
            if self.up.contains_key(&peer.peer) {
                continue;
            }
            let up = PeerUp {
                peer: peer.peer,
                serves: peer.info.channels.iter().any(|c| c.id == id),
                inbound: peer.direction == crate::Direction::Inbound,
                addresses: peer.info.listen_addresses,
                ip: peer.remote_ip,
            };
            self.up.insert(peer.peer, up.clone());
            self.feed(Input::PeerUp(up)).await;
        }
    }

    /// Carries out `outputs` and whatever they lead to, in order.
    async fn execute(&mut self, outputs: Outputs<C>) {
        let mut queue = VecDeque::from(outputs);
        let mut out = Vec::new();
        while let Some(output) = queue.pop_front() {
            let now = now();
            match output {
                Output::Send { to, message } => {
                    let back = self.core.wants_back(&message).then(|| message.clone());
                    if let Err(error) = self.tx.try_send(to, C::encode(message)) {
                        let reason = match error {
                            TrySendError::Full { .. } => SendFailure::QueueFull,
                            TrySendError::Send(SendError::Closed) => return,
                            TrySendError::Send(SendError::TooLarge { .. }) => SendFailure::TooLarge,
                            TrySendError::Send(_) => SendFailure::NotConnected,
                        };
                        tracing::debug!(peer = %to.short(), %error, "reactor message not sent");
                        let input = Input::SendFailed {
                            to,
                            message: back,
                            reason,
                        };
                        self.core.handle(now, input, &mut out);
                    }
                }
                Output::Broadcast(message) => {
                    let report = self.tx.broadcast(C::encode(message));
                    for to in report.full {
                        let input = Input::SendFailed {
                            to,
                            message: None,
                            reason: SendFailure::QueueFull,
                        };
                        self.core.handle(now, input, &mut out);
                    }
                }
                Output::Connect { peer, addresses } => {
                    if let Some(up) = self
                        .up
                        .get(&peer)
                        .filter(|_| self.router.is_connected(peer))
                    {
                        self.core.handle(now, Input::PeerUp(up.clone()), &mut out);
                    } else if addresses.is_empty()
                        || self
                            .router
                            .connect(addresses, crate::AddressSource::Exchange)
                            .await
                            .is_err()
                    {
                        self.core.handle(now, Input::DialFailed(peer), &mut out);
                    }
                }
                Output::Disconnect { peer, ban } => {
                    tracing::debug!(peer = %peer.short(), ?ban, "reactor disconnects peer");
                    if self.router.disconnect(peer, ban).await.is_err() {
                        return;
                    }
                }
                Output::Report { peer, error } => {
                    tracing::debug!(peer = %peer.short(), %error, "reactor reports peer");
                    self.tx.report(peer, error);
                }
                Output::Event(event) => self.shell.on_event(&mut self.core, now, event, &mut out),
                Output::Effect(effect) => {
                    if let Some(outcome) = self.shell.perform(&self.router, effect).await {
                        self.core.handle(now, Input::Outcome(outcome), &mut out);
                    }
                }
            }
            queue.extend(out.drain(..));
        }
    }
}
