//! The driver: connects [`PexState`] to the pex channel, the router's peer
//! updates, a timer and the [`PexHandle`].

use std::collections::{BTreeSet, VecDeque};

use p2p::{
    AddressSource, ChannelDescriptor, ChannelError, ChannelId, ChannelReceiver, ChannelSender,
    Direction, PeerId, PeerStatus, PeerUpdate, PeerUpdatesError, Reactor, ReactorContext, Router,
    RouterBuilder,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::CHANNEL_ID;
use crate::config::{PexConfig, PexConfigError};
use crate::proto::PexMessage;
use crate::state::{Action, PeerUp, PexState};
use crate::stats::{PexCollector, PexStats};
use prometheus_client::registry::Registry;

/// The peer exchange reactor. Open it on a node (or in the testkit) and
/// keep its [`PexHandle`].
///
/// ```no_run
/// # fn example(builder: &mut p2p::RouterBuilder) -> Result<(), Box<dyn std::error::Error>> {
/// use reactor_pex::{Pex, PexConfig};
///
/// let pex = Pex::new(PexConfig::default())?;
/// let (handle, opened) = p2p::OpenedReactor::open(pex, builder)?;
/// // ... start the router, then `opened.spawn(ctx)` ...
/// println!("{:?}", handle.stats());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Pex {
    config: PexConfig,
    channel: Option<(ChannelSender<PexMessage>, ChannelReceiver<PexMessage>)>,
    stats: watch::Sender<PexStats>,
}

/// What the application keeps of a running [`Pex`]: its counters.
#[derive(Debug, Clone)]
pub struct PexHandle {
    stats: watch::Receiver<PexStats>,
}

impl PexHandle {
    /// What peer exchange has done so far (requests, responses, addresses
    /// learned and refused by reason).
    pub fn stats(&self) -> PexStats {
        self.stats.borrow().clone()
    }
}

impl Pex {
    /// A pex reactor with `config`, refused if the config is invalid.
    pub fn new(config: PexConfig) -> Result<Self, PexConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            channel: None,
            stats: watch::Sender::new(PexStats::default()),
        })
    }

    /// The pex channel: id `0x0010`, priority 1, 16 messages queued per
    /// peer, 4 in flight from each peer, messages up to 64 KiB (a full
    /// response is at most 100 × 515 bytes).
    pub fn channel_descriptor() -> ChannelDescriptor {
        ChannelDescriptor {
            id: ChannelId(CHANNEL_ID),
            name: "pex",
            priority: 1,
            send_queue: 16,
            recv_buffer: 4,
            max_message_size: 64 * 1024,
        }
    }
}

impl Reactor for Pex {
    type Handle = PexHandle;

    fn name(&self) -> &'static str {
        "pex"
    }

    fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(PexCollector {
            stats: self.stats.subscribe(),
        }));
    }

    fn open(&mut self, router: &mut RouterBuilder) -> Result<PexHandle, ChannelError> {
        let channel = router.open_channel::<PexMessage>(Self::channel_descriptor())?;
        self.channel = Some(channel);
        Ok(PexHandle {
            stats: self.stats.subscribe(),
        })
    }

    async fn run(self, ctx: ReactorContext) {
        let Some((tx, rx)) = self.channel else {
            tracing::warn!("pex reactor run without being opened; it does nothing");
            return;
        };
        let state = PexState::new(self.config, ctx.seed, now());
        let driver = Driver {
            router: ctx.router,
            tx,
            state,
            stats: self.stats,
        };
        driver.run(rx, ctx.shutdown).await;
    }
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

struct Driver {
    router: Router,
    tx: ChannelSender<PexMessage>,
    state: PexState,
    stats: watch::Sender<PexStats>,
}

impl Driver {
    async fn run(mut self, mut rx: ChannelReceiver<PexMessage>, shutdown: CancellationToken) {
        let mut updates = self.router.subscribe();
        // Peers that came up before we subscribed.
        let actions = self.resync();
        self.execute(actions).await;
        loop {
            let wake = tokio::time::Instant::from_std(self.state.next_wakeup());
            let actions = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                update = updates.recv() => match update {
                    Ok(update) => self.on_update(update),
                    Err(PeerUpdatesError::Lagged(missed)) => {
                        tracing::debug!(missed, "pex lagged behind peer updates; resynchronising");
                        self.resync()
                    }
                    Err(PeerUpdatesError::Closed) => break,
                },
                envelope = rx.recv() => match envelope {
                    Some(envelope) => self.state.on_message(envelope.from, envelope.message, now()),
                    None => break,
                },
                _ = tokio::time::sleep_until(wake) => {
                    let connected = self.router.connected_peers().len();
                    self.state.on_tick(now(), connected)
                }
            };
            self.execute(actions).await;
            self.stats.send_if_modified(|published| {
                let changed = published != self.state.stats();
                if changed {
                    *published = self.state.stats().clone();
                }
                changed
            });
        }
    }

    fn on_update(&mut self, update: PeerUpdate) -> Vec<Action> {
        let connected = self.router.connected_peers().len();
        match update.status {
            PeerStatus::Up {
                channels,
                direction,
            } => {
                let serves_pex = channels.contains(&ChannelId(CHANNEL_ID));
                let inbound = direction == Direction::Inbound;
                self.peer_up(update.peer, serves_pex, inbound, connected)
            }
            PeerStatus::Down { .. } => {
                self.state.on_peer_down(update.peer, connected);
                Vec::new()
            }
        }
    }

    fn peer_up(
        &mut self,
        peer: PeerId,
        serves_pex: bool,
        inbound: bool,
        connected: usize,
    ) -> Vec<Action> {
        let listen_addresses = self
            .router
            .peer_info(peer)
            .map(|info| info.listen_addresses)
            .unwrap_or_default();
        let up = PeerUp {
            peer,
            serves_pex,
            listen_addresses,
            observed_ip: self.router.peer_ip(peer),
            inbound,
        };
        self.state.on_peer_up(up, connected, now())
    }

    /// Brings the core in line with the router's connected peers, after
    /// missed updates (or at start).
    fn resync(&mut self) -> Vec<Action> {
        let peers = self.router.peers();
        let connected: BTreeSet<PeerId> = peers.iter().map(|p| p.peer).collect();
        let count = connected.len();
        let known: BTreeSet<PeerId> = self.state.peers().collect();
        for gone in known.difference(&connected) {
            self.state.on_peer_down(*gone, count);
        }
        let mut actions = Vec::new();
        for new in connected.difference(&known) {
            let serves_pex = self
                .router
                .peer_info(*new)
                .is_some_and(|info| info.channels.iter().any(|c| c.id == u32::from(CHANNEL_ID)));
            let inbound = peers
                .iter()
                .any(|p| p.peer == *new && p.direction == Direction::Inbound);
            actions.extend(self.peer_up(*new, serves_pex, inbound, count));
        }
        actions
    }

    /// Carries out `actions` and whatever they lead to. Sends never wait;
    /// the router calls (sampling, adding addresses) are answered by its
    /// supervisor, which never waits on reactors.
    async fn execute(&mut self, actions: Vec<Action>) {
        let mut queue = VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Send { to, message } => {
                    // A full queue or a peer gone: the router counts the
                    // drop; an unanswered request times out in the core.
                    if let Err(error) = self.tx.try_send(to, message.into()) {
                        tracing::debug!(peer = %to.short(), %error, "pex message not sent");
                    }
                }
                Action::Sample { to, id, max } => {
                    let Ok(addresses) = self.router.sample_addresses(max, Some(to)).await else {
                        return;
                    };
                    queue.extend(self.state.on_sample(to, id, addresses));
                }
                Action::AddAddresses { from, addresses } => {
                    let Ok(results) = self
                        .router
                        .add_addresses(addresses, AddressSource::ExchangeFrom(from))
                        .await
                    else {
                        return;
                    };
                    self.state.on_added(&results);
                }
                Action::Disconnect { peer } => {
                    tracing::debug!(peer = %peer.short(), "pex seed mode: freeing an inbound slot");
                    if self.router.disconnect(peer, None).await.is_err() {
                        return;
                    }
                }
                Action::Report { peer, error } => {
                    tracing::debug!(peer = %peer.short(), %error, "pex reports peer");
                    self.tx.report(peer, error);
                }
            }
        }
    }
}
