//! The shell around [`PexState`]: the [`Pex`] reactor, its handle, and
//! the address book's work (sampling for a requester, adding what a peer
//! told us), done through the router. The loop that feeds the core is the
//! one reactor driver, `p2p::reactor::driver::run`.

use std::time::Instant;

use p2p::reactor::Outputs;
use p2p::reactor::driver::{self, Shell};
use p2p::{
    AddressSource, ChannelDescriptor, ChannelError, ChannelId, ChannelReceiver, ChannelSender,
    Reactor, ReactorContext, Router, RouterBuilder,
};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::CHANNEL_ID;
use crate::config::{PexConfig, PexConfigError};
use crate::proto::PexMessage;
use crate::state::{Effect, Outcome, PexState};
use crate::stats::{PexCollector, PexStats};

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
        let Some(channel) = self.channel else {
            tracing::warn!("pex reactor run without being opened; it does nothing");
            return;
        };
        let core = PexState::new(self.config, ctx.seed, p2p::reactor::now());
        let shell = PexShell { stats: self.stats };
        driver::run(
            core,
            shell,
            channel,
            None::<tokio::sync::mpsc::Receiver<()>>,
            ctx,
        )
        .await;
    }
}

/// Pex's shell: publishes the counters and does the address book's work.
struct PexShell {
    stats: watch::Sender<PexStats>,
}

impl Shell<PexState> for PexShell {
    type Request = ();

    fn on_request(&mut self, _: &mut PexState, _: Instant, (): (), _: &mut Outputs<PexState>) {}

    fn on_event(
        &mut self,
        _: &mut PexState,
        _: Instant,
        event: std::convert::Infallible,
        _: &mut Outputs<PexState>,
    ) {
        match event {}
    }

    /// The router's calls are answered by its supervisor, which never
    /// waits on reactors. If the router is gone there is no answer (and
    /// the driver stops at its next step).
    async fn perform(&mut self, router: &Router, effect: Effect) -> Option<Outcome> {
        match effect {
            Effect::Sample { to, id, max } => {
                let addresses = router.sample_addresses(max, Some(to)).await.ok()?;
                Some(Outcome::Sampled { to, id, addresses })
            }
            Effect::AddAddresses { from, addresses } => {
                let results = router
                    .add_addresses(addresses, AddressSource::ExchangeFrom(from))
                    .await
                    .ok()?;
                Some(Outcome::Added(results))
            }
            Effect::Announce { ip } => {
                let announced = router.set_observed_ip(ip);
                let announced: Vec<String> = announced.iter().map(ToString::to_string).collect();
                match ip {
                    Some(ip) => tracing::info!(
                        %ip,
                        announced = %announced.join(" "),
                        "peers agree on the IP they see us at; announcing it"
                    ),
                    None => tracing::info!(
                        announced = %announced.join(" "),
                        "peers no longer agree on the IP they see us at"
                    ),
                }
                None
            }
        }
    }

    fn after_step(&mut self, core: &PexState) {
        self.stats.send_if_modified(|published| {
            let changed = published != core.stats();
            if changed {
                *published = core.stats().clone();
            }
            changed
        });
    }
}
