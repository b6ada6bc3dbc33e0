//! The [`Reactor`] trait: how a network service plugs into a node.
//!
//! A reactor is a network service — peer exchange, gossip, the ring. It has
//! two moments:
//!
//! 1. **open**, before the router starts: it opens its typed channels on the
//!    [`RouterBuilder`] and returns a [`Reactor::Handle`], the typed API the
//!    application keeps;
//! 2. **run**, once the router is running: it runs as one task with a
//!    [`ReactorContext`] (the [`Router`], a shutdown token and a seed) until
//!    the token is cancelled or its channels close.
//!
//! [`OpenedReactor`] is the type-erased form between the two moments, what
//! a node builder (or the testkit) keeps until it starts the router.
//!
//! Promises: a reactor sees exactly the messages its channels deliver
//! (at most once, with backpressure; see [`crate::channel`]). A reactor
//! that returns early only stops itself; the router and other reactors
//! keep running. When the shutdown token is cancelled a reactor should
//! return promptly: the node waits for it before the router says goodbye
//! to its peers.

use std::future::Future;
use std::pin::Pin;

use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::channel::ChannelError;
use crate::router::{Router, RouterBuilder};

pub mod driver;

pub use driver::{Shell, now, unix_time};
pub use p2p_core::reactor::{Core, CoreInput, Input, Output, Outputs, PeerUp, SendFailure};

/// A network service: opens channels, runs as a task, hands the application
/// a typed handle.
///
/// Write the algorithm as a sans-IO [`Core`] in a crate without tokio, and
/// make `run` build it and hand it to [`driver::run`] with the reactor's
/// [`Shell`] (STYLE.md, ADR 0001).
pub trait Reactor: Send + 'static {
    /// What the application holds to use the reactor (cheap to clone).
    type Handle: Clone + Send + Sync + 'static;

    /// A short, stable name for logs and metrics (`"pex"`).
    fn name(&self) -> &'static str;

    /// Opens the reactor's channels on the router being built and returns
    /// its handle. Called once, before the router starts.
    fn open(&mut self, router: &mut RouterBuilder) -> Result<Self::Handle, ChannelError>;

    /// Registers the reactor's own metrics (a node serves them at
    /// `/metrics`). Called after [`open`](Self::open). Default: none.
    fn register_metrics(&self, registry: &mut Registry) {
        let _ = registry;
    }

    /// Runs until `ctx.shutdown` is cancelled (or there is nothing left to
    /// do). Called once, after [`open`](Self::open), with the started router.
    fn run(self, ctx: ReactorContext) -> impl Future<Output = ()> + Send + 'static;
}

/// What a running reactor gets.
#[derive(Debug, Clone)]
pub struct ReactorContext {
    /// The running router: peer updates, connected peers, dialing, the
    /// address book.
    pub router: Router,
    /// Cancelled when the node shuts down; return soon after.
    pub shutdown: CancellationToken,
    /// Seed for the reactor's randomness, so a seeded node is reproducible.
    pub seed: u64,
}

type RunFn =
    Box<dyn FnOnce(ReactorContext) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static>;

/// A reactor whose channels are open, waiting for the router to start.
pub struct OpenedReactor {
    name: &'static str,
    run: RunFn,
}

impl std::fmt::Debug for OpenedReactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedReactor")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl OpenedReactor {
    /// Opens `reactor`'s channels on `router`: its handle, and the reactor
    /// ready to [`spawn`](Self::spawn) once the router runs.
    pub fn open<R: Reactor>(
        reactor: R,
        router: &mut RouterBuilder,
    ) -> Result<(R::Handle, OpenedReactor), ChannelError> {
        Self::open_with_metrics(reactor, router, None)
    }

    /// [`open`](Self::open), and registers the reactor's metrics in
    /// `registry` if given.
    pub fn open_with_metrics<R: Reactor>(
        mut reactor: R,
        router: &mut RouterBuilder,
        registry: Option<&mut Registry>,
    ) -> Result<(R::Handle, OpenedReactor), ChannelError> {
        let handle = reactor.open(router)?;
        if let Some(registry) = registry {
            reactor.register_metrics(registry);
        }
        let name = reactor.name();
        let run: RunFn = Box::new(move |ctx| Box::pin(reactor.run(ctx)));
        Ok((handle, OpenedReactor { name, run }))
    }

    /// The reactor's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Spawns the reactor's task on the current tokio runtime.
    pub fn spawn(self, ctx: ReactorContext) -> JoinHandle<()> {
        let name = self.name;
        let run = (self.run)(ctx);
        tokio::spawn(async move {
            run.await;
            tracing::debug!(reactor = name, "reactor stopped");
        })
    }
}
