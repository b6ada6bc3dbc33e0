//! Where a Switchyard QUIC connection setup spends its time: runs the
//! setup of `quic_compare` (4) (fresh routers, `Router::dial` to the first
//! 128-byte message at the receiver) `--setups N` times (default 100) with a
//! tracing layer that timestamps every event the filter lets through, and
//! prints each event's median offset from the dial, in order.
//!
//! The filter is `SETUP_PHASES` (an `EnvFilter`, default
//! `transport_quic=trace,p2p=debug`); add e.g. `quinn_proto=trace` to see
//! the packets. `--stack raw` runs the raw-quinn setup instead, with mutual
//! TLS as Switchyard (only quinn's own events then); `--stack raw-server`
//! the raw-quinn setup with server authentication only. Every stack's
//! sockets ask for `QuicConfig`'s default buffers.
//!
//! Events are recorded, not printed, so the layer costs a clock read and a
//! push per event.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use p2p::{
    ChannelReceiver, ChannelSender, Keypair, PeerId, PeerStatus, Router, RouterBuilder,
    RouterConfig,
};
use switchyard_bench::compare::switchyard::descriptor;
use switchyard_bench::compare::{Msg, SMALL_LEN, payload};
use switchyard_quic_compare::raw::Auth;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};
use transport_quic::{QuicConfig, QuicTransport};

/// Every event since the last drain: when, and `target: message`.
static EVENTS: Mutex<Vec<(Instant, String)>> = Mutex::new(Vec::new());

struct Recorder;

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: LayerContext<'_, S>) {
        let now = Instant::now();
        let mut message = Message(String::new());
        event.record(&mut message);
        let line = format!("{}: {}", event.metadata().target(), message.0);
        if let Ok(mut events) = EVENTS.lock() {
            events.push((now, line));
        }
    }
}

fn drain() -> Vec<(Instant, String)> {
    EVENTS
        .lock()
        .map(|mut e| std::mem::take(&mut *e))
        .unwrap_or_default()
}

struct Node {
    router: Router,
    id: PeerId,
    tx: ChannelSender<Msg>,
    rx: ChannelReceiver<Msg>,
}

fn node(seed: u64) -> anyhow::Result<Node> {
    let key = Keypair::from_seed(seed);
    let transport = QuicTransport::bind_now(&key, QuicConfig::default())?;
    let mut builder = RouterBuilder::new(
        key.clone(),
        RouterConfig {
            seed,
            close_grace: Duration::from_millis(100),
            ..RouterConfig::default()
        },
    );
    builder.transport(std::sync::Arc::new(transport));
    let (tx, rx) = builder.open_channel::<Msg>(descriptor(64))?;
    Ok(Node {
        router: builder.start()?,
        id: key.peer_id(),
        tx,
        rx,
    })
}

/// One setup: the events after the dial, as offsets from it, and the total.
async fn switchyard_setup(i: u64) -> anyhow::Result<(Vec<(Duration, String)>, Duration)> {
    let a = node(10_000 + 2 * i)?;
    let mut b = node(10_001 + 2 * i)?;
    let address = b
        .router
        .listen_addresses()
        .first()
        .cloned()
        .context("no listen address")?;
    let mut updates = a.router.subscribe();
    tokio::time::sleep(Duration::from_millis(5)).await;
    drain();
    let t0 = Instant::now();
    a.router.dial(address).await?;
    loop {
        let update = updates.recv().await?;
        match update.status {
            PeerStatus::Up { .. } if update.peer == b.id => break,
            PeerStatus::Down { reason } if update.peer == b.id => bail!("setup failed: {reason}"),
            _ => {}
        }
    }
    tracing::info!(target: "bench", "a: peer up, sending");
    a.tx.send(
        b.id,
        Msg {
            seq: i + 1,
            data: payload(SMALL_LEN),
        },
    )
    .await?;
    let _first = b.rx.recv().await.context("router closed")?;
    let total = t0.elapsed();
    tracing::info!(target: "bench", "b: message delivered");
    let events = drain()
        .into_iter()
        .filter(|(at, _)| *at >= t0)
        .map(|(at, line)| (at - t0, line))
        .collect();
    futures::join!(a.router.shutdown(), b.router.shutdown());
    Ok((events, total))
}

async fn raw_setup(auth: Auth) -> anyhow::Result<(Vec<(Duration, String)>, Duration)> {
    let buffers = Some(QuicConfig::default().socket_buffer_size);
    let t = switchyard_quic_compare::raw::setup(SMALL_LEN, 1, auth, buffers).await?;
    let total = Duration::from_nanos(t.first().copied().unwrap_or(0));
    let events = drain();
    let Some(first) = events.first().map(|e| e.0) else {
        return Ok((Vec::new(), total));
    };
    Ok((
        events
            .into_iter()
            .map(|(at, line)| (at - first, line))
            .collect(),
        total,
    ))
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let mut setups = 100u64;
    let mut raw = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--setups" => setups = args.next().context("--setups N")?.parse()?,
            "--stack" => {
                raw = match args.next().as_deref() {
                    Some("raw") => Some(Auth::Mutual),
                    Some("raw-server") => Some(Auth::Server),
                    Some("switchyard") => None,
                    other => bail!("--stack: switchyard, raw or raw-server, not {other:?}"),
                }
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    println!("{}", switchyard_bench::machine::describe());
    let filter = EnvFilter::try_from_env("SETUP_PHASES")
        .unwrap_or_else(|_| EnvFilter::new("transport_quic=trace,p2p=debug,bench=info"));
    tracing_subscriber::registry()
        .with(Recorder.with_filter(filter))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        tokio::spawn(async move {
            // Offsets of each event's k-th occurrence within a setup.
            let mut offsets: HashMap<(String, usize), Vec<Duration>> = HashMap::new();
            let mut totals = Vec::new();
            for i in 0..setups + 5 {
                let (events, total) = if let Some(auth) = raw {
                    raw_setup(auth).await?
                } else {
                    switchyard_setup(i).await?
                };
                if i < 5 {
                    continue;
                }
                totals.push(total);
                let mut seen: HashMap<String, usize> = HashMap::new();
                for (at, line) in events {
                    let k = seen.entry(line.clone()).or_default();
                    offsets.entry((line, *k)).or_default().push(at);
                    *k += 1;
                }
            }
            let mut rows: Vec<_> = offsets
                .into_iter()
                .filter(|(_, v)| v.len() as u64 * 10 >= setups)
                .map(|((line, k), mut v)| (median(&mut v), v.len(), line, k))
                .collect();
            rows.sort();
            println!("median offset from the dial, over {setups} setups (events seen in at least a tenth):");
            for (at, n, line, k) in rows {
                let nth = if k > 0 { format!(" (#{})", k + 1) } else { String::new() };
                println!("{:>9.1} µs  {n:>4}×  {line}{nth}", at.as_secs_f64() * 1e6);
            }
            println!("median total: {:.1} µs", median(&mut totals).as_secs_f64() * 1e6);
            anyhow::Ok(())
        })
        .await?
    })
}
