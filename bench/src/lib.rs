//! Shared pieces of Switchyard's benchmarks: the benchmark message, a pair of
//! routers connected over the in-process memory hub, the single-channel
//! throughput run through the router, and the same run through a raw bounded
//! `tokio::sync::mpsc` pipe (the baseline).
//!
//! Used by the `router_vs_mpsc` binary and the criterion bench `router`.
//! The TCP comparison (Switchyard TCP + Noise, raw TCP, rust-libp2p) used by
//! the `tcp_compare` binary is in [`tcp`]; what it shares with the QUIC
//! comparison (`bench/quic-compare/`, a crate of its own) is in [`compare`].

pub mod ceiling;
pub mod compare;
pub mod machine;
pub mod tcp;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use p2p::{
    ChannelDescriptor, ChannelId, ChannelReceiver, ChannelSender, Keypair, PeerAddress, PeerId,
    Router, RouterBuilder, RouterConfig,
};
use tokio::sync::mpsc;
use transport_memory::MemoryHub;

/// Payload bytes per message.
pub const PAYLOAD_LEN: usize = 256;
/// Bytes of one raw-pipe message: seq (8) + send timestamp (8) + payload.
pub const RAW_LEN: usize = 16 + PAYLOAD_LEN;
/// Latency is sampled on every message whose seq is a multiple of this.
pub const SAMPLE_EVERY: u64 = 16;
/// Capacity of the raw mpsc pipe, equal to the router channel's queues.
pub const RAW_CAPACITY: usize = 1024;

/// The benchmark message. Fixed-width integers keep every encoding the same
/// size (9 + 9 + 3 + 256 = 277 bytes, as long as `seq` and `sent_ns` are not
/// zero: proto3 omits zero fields), so message shares equal byte shares.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BenchMsg {
    /// Sequence number, from 0, per sender.
    #[prost(fixed64, tag = "1")]
    pub seq: u64,
    /// Send time in nanoseconds since the run's start `Instant`.
    #[prost(fixed64, tag = "2")]
    pub sent_ns: u64,
    /// `PAYLOAD_LEN` bytes.
    #[prost(bytes = "bytes", tag = "3")]
    pub payload: Bytes,
}

/// Encoded size of a [`BenchMsg`] with non-zero `seq` and `sent_ns`.
pub fn encoded_len() -> usize {
    use prost::Message;
    BenchMsg {
        seq: 1,
        sent_ns: 1,
        payload: payload(),
    }
    .encoded_len()
}

/// A `PAYLOAD_LEN`-byte payload.
pub fn payload() -> Bytes {
    Bytes::from((0..PAYLOAD_LEN).map(|i| i as u8).collect::<Vec<u8>>())
}

/// The benchmark channel: send queue 1024, receive buffer (credit window)
/// 1024, 64 KiB messages.
pub fn descriptor(id: u16, name: &'static str, priority: u8) -> ChannelDescriptor {
    ChannelDescriptor {
        id: ChannelId(id),
        name,
        priority,
        send_queue: 1024,
        recv_buffer: 1024,
        max_message_size: 64 * 1024,
    }
}

/// Two routers on one memory hub, connected, with the same channels open on
/// both. Traffic flows from `sender` to `receiver`.
pub struct Pair {
    /// The sending router.
    pub sender: Router,
    /// The receiving router.
    pub receiver: Router,
    /// The sending router's PeerId.
    pub sender_id: PeerId,
    /// The receiving router's PeerId.
    pub receiver_id: PeerId,
    /// The hub both routers are on (for its fault hooks, e.g. bandwidth).
    pub hub: MemoryHub,
    /// Senders of each channel on the sending router.
    pub txs: Vec<ChannelSender<BenchMsg>>,
    /// Receivers of each channel on the receiving router.
    pub rxs: Vec<ChannelReceiver<BenchMsg>>,
    /// The unused halves (the sending router's receivers, the receiving
    /// router's senders), kept open for the pair's life.
    _unused_rx: Vec<ChannelReceiver<BenchMsg>>,
    _unused_tx: Vec<ChannelSender<BenchMsg>>,
}

impl Pair {
    /// Starts two routers over a fresh hub, opens `channels` on both, dials
    /// and waits (up to 10 s) until each sees the other.
    pub async fn connect(channels: &[ChannelDescriptor], seed: u64) -> anyhow::Result<Self> {
        let hub = MemoryHub::new(seed);
        let (mut unused_rx, mut unused_tx) = (Vec::new(), Vec::new());
        let (sk, rk) = (
            Keypair::from_seed(seed.wrapping_mul(2)),
            Keypair::from_seed(seed.wrapping_mul(2) + 1),
        );
        let (sender_id, receiver_id) = (sk.peer_id(), rk.peer_id());

        let mut sb = RouterBuilder::new(
            sk,
            RouterConfig {
                seed,
                ..RouterConfig::default()
            },
        );
        sb.transport(Arc::new(hub.transport(sender_id)?));
        let mut txs = Vec::new();
        for d in channels {
            let (tx, rx) = sb.open_channel::<BenchMsg>(d.clone())?;
            unused_rx.push(rx);
            txs.push(tx);
        }

        let mut rb = RouterBuilder::new(
            rk,
            RouterConfig {
                seed: seed + 1,
                ..RouterConfig::default()
            },
        );
        rb.transport(Arc::new(hub.transport(receiver_id)?));
        let mut rxs = Vec::new();
        for d in channels {
            let (tx, rx) = rb.open_channel::<BenchMsg>(d.clone())?;
            unused_tx.push(tx);
            rxs.push(rx);
        }

        let sender = sb.start()?;
        let receiver = rb.start()?;
        sender.dial(PeerAddress::memory(receiver_id)).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(sender.is_connected(receiver_id) && receiver.is_connected(sender_id)) {
            if Instant::now() > deadline {
                bail!("routers did not connect within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(Self {
            sender,
            receiver,
            sender_id,
            receiver_id,
            hub,
            txs,
            rxs,
            _unused_rx: unused_rx,
            _unused_tx: unused_tx,
        })
    }

    /// Shuts both routers down, concurrently.
    pub async fn shutdown(self) {
        futures::join!(self.sender.shutdown(), self.receiver.shutdown());
    }
}

/// What one throughput run measured.
#[derive(Debug, Clone)]
pub struct RunStats {
    /// Messages received.
    pub messages: u64,
    /// From just before the sender started to the last message received.
    pub elapsed: Duration,
    /// One-way latencies (receive time − send timestamp) of every
    /// `SAMPLE_EVERY`-th message, in nanoseconds, unsorted.
    pub latencies_ns: Vec<u64>,
}

impl RunStats {
    /// Messages per second.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p`-th percentile (0–100) of the sampled latencies, in ns.
    pub fn percentile(&mut self, p: f64) -> u64 {
        if self.latencies_ns.is_empty() {
            return 0;
        }
        self.latencies_ns.sort_unstable();
        let n = self.latencies_ns.len();
        let i = ((n as f64 * p / 100.0) as usize).min(n - 1);
        self.latencies_ns[i]
    }
}

fn since(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

/// Sends `n` messages from one task with `send().await` and receives them in
/// another; checks that they arrive complete and in order. Gives the receiver
/// back for the next run.
pub async fn run_router(
    tx: ChannelSender<BenchMsg>,
    mut rx: ChannelReceiver<BenchMsg>,
    to: PeerId,
    n: u64,
) -> anyhow::Result<(RunStats, ChannelReceiver<BenchMsg>)> {
    let body = payload();
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        for seq in 0..n {
            let message = BenchMsg {
                seq,
                sent_ns: since(start),
                payload: body.clone(),
            };
            tx.send(to, message).await?;
        }
        anyhow::Ok(())
    });
    let receiver = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity((n / SAMPLE_EVERY + 1) as usize);
        for expected in 0..n {
            let envelope = rx.recv().await.context("router closed during the run")?;
            let m = envelope.message;
            if m.seq != expected {
                bail!("expected seq {expected}, got {}", m.seq);
            }
            if m.seq % SAMPLE_EVERY == 0 {
                latencies.push(since(start).saturating_sub(m.sent_ns));
            }
        }
        Ok((start.elapsed(), latencies, rx))
    });
    sender.await??;
    let (elapsed, latencies_ns, rx) = receiver.await??;
    Ok((
        RunStats {
            messages: n,
            elapsed,
            latencies_ns,
        },
        rx,
    ))
}

/// The baseline: the same task layout over a bounded
/// `mpsc::channel::<Vec<u8>>(RAW_CAPACITY)` carrying `RAW_LEN`-byte vectors
/// (seq, send timestamp, payload), no Protobuf.
pub async fn run_raw(n: u64) -> anyhow::Result<RunStats> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(RAW_CAPACITY);
    let body = payload();
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        for seq in 0..n {
            let mut v = Vec::with_capacity(RAW_LEN);
            v.extend_from_slice(&seq.to_le_bytes());
            v.extend_from_slice(&since(start).to_le_bytes());
            v.extend_from_slice(&body);
            tx.send(v)
                .await
                .map_err(|_| anyhow::anyhow!("raw pipe closed"))?;
        }
        anyhow::Ok(())
    });
    let receiver = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity((n / SAMPLE_EVERY + 1) as usize);
        for expected in 0..n {
            let v = rx.recv().await.context("raw pipe closed during the run")?;
            let field = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&v[i..i + 8]);
                u64::from_le_bytes(b)
            };
            let seq = field(0);
            if seq != expected {
                bail!("expected seq {expected}, got {seq}");
            }
            if seq % SAMPLE_EVERY == 0 {
                latencies.push(since(start).saturating_sub(field(8)));
            }
        }
        Ok((start.elapsed(), latencies))
    });
    sender.await??;
    let (elapsed, latencies_ns) = receiver.await??;
    Ok(RunStats {
        messages: n,
        elapsed,
        latencies_ns,
    })
}
