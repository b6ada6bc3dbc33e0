//! Switchyard through the router, over any transport: two routers on
//! loopback, each with one transport made by a [`MakeTransport`], one typed
//! channel of [`Msg`]. Senders use `ChannelSender::send().await` (so the
//! channel's send queue and the remote's credit window apply), receivers
//! `ChannelReceiver::recv().await`. Router defaults, except `close_grace`
//! 100 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::future::BoxFuture;
use p2p::transport::Transport;
use p2p::{
    ChannelDescriptor, ChannelId, ChannelReceiver, ChannelSender, Keypair, PeerId, PeerStatus,
    Router, RouterBuilder, RouterConfig,
};

use super::{MAX_MESSAGE, Msg, Pacer, PingPlan, Tally, Throughput, nanos, payload};

/// Makes a node's transport, bound to a free loopback port, from the
/// node's key.
pub type MakeTransport =
    dyn Fn(&Keypair) -> BoxFuture<'static, anyhow::Result<Arc<dyn Transport>>> + Send + Sync;

/// Send queue and credit window of the channel of the ping-pong and setup
/// runs, in messages.
pub const LATENCY_WINDOW: usize = 64;

/// The benchmark channel with a send queue and a credit window of
/// `window` messages.
pub fn descriptor(window: usize) -> ChannelDescriptor {
    ChannelDescriptor {
        id: ChannelId(0x10),
        name: "compare",
        priority: 1,
        send_queue: window,
        recv_buffer: window,
        max_message_size: MAX_MESSAGE,
    }
}

/// One router with the benchmark channel open.
struct Node {
    router: Router,
    id: PeerId,
    tx: ChannelSender<Msg>,
    rx: ChannelReceiver<Msg>,
}

async fn node(
    seed: u64,
    transport: &MakeTransport,
    channel: ChannelDescriptor,
) -> anyhow::Result<Node> {
    let key = Keypair::from_seed(seed);
    let transport = transport(&key).await.context("binding the transport")?;
    let mut builder = RouterBuilder::new(
        key.clone(),
        RouterConfig {
            seed,
            close_grace: Duration::from_millis(100),
            ..RouterConfig::default()
        },
    );
    builder.transport(transport);
    let (tx, rx) = builder.open_channel::<Msg>(channel)?;
    Ok(Node {
        router: builder.start()?,
        id: key.peer_id(),
        tx,
        rx,
    })
}

/// Two routers, `a` dialing `b`, both up.
async fn connected(
    seed: u64,
    transport: &MakeTransport,
    channel: ChannelDescriptor,
) -> anyhow::Result<(Node, Node)> {
    let a = node(seed, transport, channel.clone()).await?;
    let b = node(seed + 1, transport, channel).await?;
    let address = b
        .router
        .listen_addresses()
        .first()
        .cloned()
        .context("no listen address")?;
    a.router.dial(address).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(a.router.is_connected(b.id) && b.router.is_connected(a.id)) {
        if Instant::now() > deadline {
            bail!("routers did not connect within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok((a, b))
}

/// Prints how many of the messages `from` sent to `to` on the benchmark
/// channel its sending tasks wrote through (ADR 0002 "Write-through")
/// rather than queueing for the connection's writer task.
fn print_written_through(what: &str, from: &Router, to: PeerId) {
    let metrics = from.metrics();
    let labels = p2p::metrics::ChannelPeerLabels {
        channel: descriptor(0).name.to_string(),
        peer: to.to_string(),
    };
    let sent = metrics.messages_sent.get_or_create(&labels).get();
    let through = metrics
        .messages_written_through
        .get_or_create(&labels)
        .get();
    println!(
        "  {what}: {through} of {sent} messages written through ({:.1} %)",
        100.0 * through as f64 / sent.max(1) as f64
    );
}

async fn shutdown(a: Node, b: Node) {
    futures::join!(a.router.shutdown(), b.router.shutdown());
}

/// One-way run of `len`-byte payloads for `duration` on a channel with a
/// `window`-message queue and credit window.
pub async fn one_way(
    transport: &MakeTransport,
    len: usize,
    window: usize,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    let (a, mut b) = connected(100, transport, descriptor(window)).await?;
    let mut rx = b.rx;
    let receiver = tokio::spawn(async move {
        let mut tally = Tally::default();
        loop {
            let envelope = rx.recv().await.context("router closed during the run")?;
            if tally.record(&envelope.message)? {
                return anyhow::Ok((tally, Instant::now(), rx));
            }
        }
    });
    let (tx, to) = (a.tx.clone(), b.id);
    let mut pacer = Pacer::new(duration);
    let start = pacer.start();
    let sender = tokio::spawn(async move {
        let data = payload(len);
        loop {
            let seq = pacer.next_seq();
            tx.send(
                to,
                Msg {
                    seq,
                    data: data.clone(),
                },
            )
            .await?;
            if seq == super::LAST {
                return anyhow::Ok(());
            }
        }
    });
    sender.await??;
    let (tally, end, rx) = receiver.await??;
    b.rx = rx;
    print_written_through("one-way sender", &a.router, b.id);
    shutdown(a, b).await;
    Ok(Throughput::new(tally, start, end))
}

/// Ping-pong of `len`-byte payloads: `a` sends, `b`'s task sends each
/// message straight back.
pub async fn ping_pong(
    transport: &MakeTransport,
    len: usize,
    plan: PingPlan,
) -> anyhow::Result<Vec<u64>> {
    let (mut a, mut b) = connected(200, transport, descriptor(LATENCY_WINDOW)).await?;
    let (mut b_rx, b_tx) = (b.rx, b.tx.clone());
    let echo = tokio::spawn(async move {
        while let Some(envelope) = b_rx.recv().await {
            if b_tx.send(envelope.from, envelope.message).await.is_err() {
                break;
            }
        }
        b_rx
    });
    let data = payload(len);
    let mut samples = Vec::with_capacity(plan.max);
    let mut seq = 0;
    let mut sampling_since = None;
    loop {
        seq += 1;
        let t0 = Instant::now();
        a.tx.send(
            b.id,
            Msg {
                seq,
                data: data.clone(),
            },
        )
        .await?;
        let back = a.rx.recv().await.context("router closed during the run")?;
        let rtt = t0.elapsed();
        if back.message.seq != seq {
            bail!("sent ping {seq}, got {}", back.message.seq);
        }
        if seq <= plan.warmup {
            continue;
        }
        let since = *sampling_since.get_or_insert(t0);
        samples.push(nanos(rtt));
        if samples.len() >= plan.max || since.elapsed() >= plan.duration {
            break;
        }
    }
    print_written_through("ping-pong pinger", &a.router, b.id);
    print_written_through("ping-pong echo", &b.router, a.id);
    futures::join!(a.router.shutdown(), b.router.shutdown());
    b.rx = echo.await?;
    drop((a, b));
    Ok(samples)
}

/// Connection setup, `iterations` times with fresh routers and transports
/// (bound and started before the clock starts). The clock runs from
/// `Router::dial` on `a` to the arrival at `b`'s receiver of the first
/// message, which `a` sends as soon as its peer-update subscription
/// reports `b` up.
pub async fn setup(
    transport: &MakeTransport,
    len: usize,
    iterations: usize,
) -> anyhow::Result<Vec<u64>> {
    let data = payload(len);
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let seed = 1_000 + 2 * i as u64;
        let a = node(seed, transport, descriptor(LATENCY_WINDOW)).await?;
        let mut b = node(seed + 1, transport, descriptor(LATENCY_WINDOW)).await?;
        let address = b
            .router
            .listen_addresses()
            .first()
            .cloned()
            .context("no listen address")?;
        let mut updates = a.router.subscribe();
        let t0 = Instant::now();
        a.router.dial(address).await?;
        loop {
            let update = updates.recv().await?;
            match update.status {
                PeerStatus::Up { .. } if update.peer == b.id => break,
                PeerStatus::Down { reason } if update.peer == b.id => {
                    bail!("setup {i}: connection failed: {reason}")
                }
                _ => {}
            }
        }
        a.tx.send(
            b.id,
            Msg {
                seq: i as u64 + 1,
                data: data.clone(),
            },
        )
        .await?;
        let first = b.rx.recv().await.context("router closed")?;
        let t1 = Instant::now();
        if first.message.seq != i as u64 + 1 {
            bail!("setup {i}: got message {}", first.message.seq);
        }
        samples.push(nanos(t1 - t0));
        shutdown(a, b).await;
    }
    Ok(samples)
}
