//! rust-libp2p 0.57 over any of its transports: one `libp2p-stream` stream
//! per measurement carrying length-prefixed messages (a `u32` big-endian
//! length, then the encoded [`Msg`]). A [`Libp2pStack`] says how to build a
//! swarm and where it listens.
//!
//! Each side is a `Swarm<libp2p_stream::Behaviour>` polled by its own task.
//! Writers write one message per `write_all`, as an application writing
//! messages to a stream does ([`one_way`]), or, in the buffered variant
//! ([`one_way_buffered`]), take messages from a queue the application fills
//! and write them through a 64 KiB `futures::io::BufWriter` flushed whenever
//! the queue is empty — the batching Switchyard's connection writer does;
//! readers read through a 64 KiB `futures::io::BufReader`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::BytesMut;
use futures::io::{BufReader, BufWriter};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol, Swarm};
use libp2p_stream::{Behaviour, Control, IncomingStreams};
use prost::Message;
use tokio::task::JoinHandle;

use super::{MAX_MESSAGE, Msg, Pacer, PingPlan, Tally, Throughput, nanos, payload};

/// One rust-libp2p transport stack.
#[derive(Debug, Clone)]
pub struct Libp2pStack {
    /// Builds a swarm with a new identity and this stack's transport, and
    /// `libp2p_stream::Behaviour` as its behaviour.
    pub swarm: fn() -> anyhow::Result<Swarm<Behaviour>>,
    /// Where a listener listens, e.g. `/ip4/127.0.0.1/tcp/0`.
    pub listen: &'static str,
    /// The protocol of the measurement streams.
    pub protocol: StreamProtocol,
}

/// A swarm polled by its own task; the task ends when this is dropped.
struct Node {
    peer: PeerId,
    control: Control,
    driver: JoinHandle<()>,
}

impl Node {
    fn run(mut swarm: Swarm<Behaviour>) -> Self {
        let peer = *swarm.local_peer_id();
        let control = swarm.behaviour().new_control();
        let driver = tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        });
        Self {
            peer,
            control,
            driver,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A listening swarm, and its address (with `/p2p/<peer>`).
async fn listener(stack: &Libp2pStack) -> anyhow::Result<(Swarm<Behaviour>, Multiaddr)> {
    let mut swarm = (stack.swarm)()?;
    swarm.listen_on(stack.listen.parse()?)?;
    let address = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    let peer = *swarm.local_peer_id();
    Ok((swarm, address.with(Protocol::P2p(peer))))
}

/// A dialer (`a`) and a listener (`b`) whose `stack.protocol` streams
/// arrive in the returned `IncomingStreams`; the dial is queued but not yet
/// driven.
async fn pair(
    stack: &Libp2pStack,
) -> anyhow::Result<(Swarm<Behaviour>, Node, IncomingStreams, Multiaddr)> {
    let (b_swarm, address) = listener(stack).await?;
    let mut b = Node::run(b_swarm);
    let incoming = b
        .control
        .accept(stack.protocol.clone())
        .map_err(|e| anyhow::anyhow!("registering the protocol: {e}"))?;
    Ok(((stack.swarm)()?, b, incoming, address))
}

/// `a` dials `b` and opens a stream; returns both ends.
async fn stream_pair(stack: &Libp2pStack) -> anyhow::Result<(Node, Node, Stream, Stream)> {
    let (mut a_swarm, b, mut incoming, address) = pair(stack).await?;
    a_swarm.dial(address)?;
    let mut a = Node::run(a_swarm);
    let (outbound, inbound) = tokio::join!(
        a.control.open_stream(b.peer, stack.protocol.clone()),
        incoming.next()
    );
    let outbound = outbound.map_err(|e| anyhow::anyhow!("opening a stream: {e}"))?;
    let (_, inbound) = inbound.context("no inbound stream")?;
    Ok((a, b, outbound, inbound))
}

/// Writes `message` as one length-prefixed write.
async fn write_message<W: AsyncWrite + Unpin>(
    write: &mut W,
    message: &Msg,
    buf: &mut BytesMut,
) -> anyhow::Result<()> {
    buf.clear();
    let len = message.encoded_len();
    buf.reserve(4 + len);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    message.encode(buf)?;
    write.write_all(buf).await?;
    Ok(())
}

/// Reads one length-prefixed message.
async fn read_message<R: AsyncRead + Unpin>(
    read: &mut R,
    buf: &mut BytesMut,
) -> anyhow::Result<Msg> {
    let mut header = [0u8; 4];
    read.read_exact(&mut header).await?;
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_MESSAGE {
        bail!("message of {len} bytes exceeds {MAX_MESSAGE}");
    }
    buf.clear();
    buf.resize(len, 0);
    read.read_exact(buf).await?;
    Ok(Msg::decode(buf.split().freeze())?)
}

/// One-way run of `len`-byte payloads for `duration`.
pub async fn one_way(
    stack: Libp2pStack,
    len: usize,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    let (a, b, mut outbound, inbound) = stream_pair(&stack).await?;
    let receiver = tokio::spawn(async move {
        let mut read = BufReader::with_capacity(64 * 1024, inbound);
        let mut buf = BytesMut::new();
        let mut tally = Tally::default();
        while !tally.record(&read_message(&mut read, &mut buf).await?)? {}
        anyhow::Ok((tally, Instant::now()))
    });
    let mut pacer = Pacer::new(duration);
    let start = pacer.start();
    let sender = tokio::spawn(async move {
        let data = payload(len);
        let mut buf = BytesMut::new();
        loop {
            let seq = pacer.next_seq();
            let message = Msg {
                seq,
                data: data.clone(),
            };
            write_message(&mut outbound, &message, &mut buf).await?;
            if seq == super::LAST {
                outbound.flush().await?;
                return anyhow::Ok(outbound);
            }
        }
    });
    let (tally, end) = receiver.await??;
    drop(sender.await??);
    drop((a, b));
    Ok(Throughput::new(tally, start, end))
}

/// [`one_way`] with the batching of Switchyard's writer: the sending task
/// puts messages in a queue of `queue` messages (as an application hands
/// them to Switchyard's channel), and a writer task takes them, writes each
/// into a 64 KiB `BufWriter` around the stream, and flushes whenever the
/// queue is empty (and at the last message).
pub async fn one_way_buffered(
    stack: Libp2pStack,
    len: usize,
    duration: Duration,
    queue: usize,
) -> anyhow::Result<Throughput> {
    let (a, b, outbound, inbound) = stream_pair(&stack).await?;
    let receiver = tokio::spawn(async move {
        let mut read = BufReader::with_capacity(64 * 1024, inbound);
        let mut buf = BytesMut::new();
        let mut tally = Tally::default();
        while !tally.record(&read_message(&mut read, &mut buf).await?)? {}
        anyhow::Ok((tally, Instant::now()))
    });
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(queue.max(1));
    let writer = tokio::spawn(async move {
        let mut out = BufWriter::with_capacity(64 * 1024, outbound);
        let mut buf = BytesMut::new();
        while let Some(message) = rx.recv().await {
            let last = message.seq == super::LAST;
            write_message(&mut out, &message, &mut buf).await?;
            if last || rx.is_empty() {
                out.flush().await?;
            }
            if last {
                return anyhow::Ok(out);
            }
        }
        bail!("the sending task ended before its last message")
    });
    let mut pacer = Pacer::new(duration);
    let start = pacer.start();
    let sender = tokio::spawn(async move {
        let data = payload(len);
        loop {
            let seq = pacer.next_seq();
            let message = Msg {
                seq,
                data: data.clone(),
            };
            tx.send(message)
                .await
                .map_err(|_| anyhow::anyhow!("the writer task ended"))?;
            if seq == super::LAST {
                return anyhow::Ok(());
            }
        }
    });
    let (tally, end) = receiver.await??;
    sender.await??;
    drop(writer.await??);
    drop((a, b));
    Ok(Throughput::new(tally, start, end))
}

/// Ping-pong of `len`-byte payloads: one write and a flush each way.
pub async fn ping_pong(stack: Libp2pStack, len: usize, plan: PingPlan) -> anyhow::Result<Vec<u64>> {
    let (a, b, outbound, inbound) = stream_pair(&stack).await?;
    let echo = tokio::spawn(async move {
        let (read, mut write) = inbound.split();
        let mut read = BufReader::with_capacity(64 * 1024, read);
        let (mut rbuf, mut wbuf) = (BytesMut::new(), BytesMut::new());
        while let Ok(message) = read_message(&mut read, &mut rbuf).await {
            write_message(&mut write, &message, &mut wbuf).await?;
            write.flush().await?;
        }
        anyhow::Ok(())
    });
    let (read, mut write) = outbound.split();
    let mut read = BufReader::with_capacity(64 * 1024, read);
    let (mut rbuf, mut wbuf) = (BytesMut::new(), BytesMut::new());
    let data = payload(len);
    let mut samples = Vec::with_capacity(plan.max);
    let mut seq = 0;
    let mut sampling_since = None;
    loop {
        seq += 1;
        let t0 = Instant::now();
        let message = Msg {
            seq,
            data: data.clone(),
        };
        write_message(&mut write, &message, &mut wbuf).await?;
        write.flush().await?;
        let back = read_message(&mut read, &mut rbuf).await?;
        let rtt = t0.elapsed();
        if back.seq != seq {
            bail!("sent ping {seq}, got {}", back.seq);
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
    write.close().await?;
    drop((read, write));
    echo.await??;
    drop((a, b));
    Ok(samples)
}

/// Connection setup, `iterations` times with fresh swarms (built, and the
/// listener listening, before the clock starts). The clock runs from
/// `Swarm::dial` on `a` through `Control::open_stream` and the first
/// message's write to its arrival at `b`.
pub async fn setup(stack: Libp2pStack, len: usize, iterations: usize) -> anyhow::Result<Vec<u64>> {
    let data = payload(len);
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let (mut a_swarm, b, mut incoming, address) = pair(&stack).await?;
        let server = tokio::spawn(async move {
            let (_, stream) = incoming.next().await.context("no inbound stream")?;
            let mut read = BufReader::with_capacity(64 * 1024, stream);
            let message = read_message(&mut read, &mut BytesMut::new()).await?;
            anyhow::Ok((Instant::now(), message.seq))
        });
        let t0 = Instant::now();
        a_swarm.dial(address)?;
        let mut a = Node::run(a_swarm);
        let mut stream = a
            .control
            .open_stream(b.peer, stack.protocol.clone())
            .await
            .map_err(|e| anyhow::anyhow!("opening a stream: {e}"))?;
        let message = Msg {
            seq: i as u64 + 1,
            data: data.clone(),
        };
        write_message(&mut stream, &message, &mut BytesMut::new()).await?;
        stream.flush().await?;
        let (t1, seq) = server.await??;
        if seq != i as u64 + 1 {
            bail!("setup {i}: got message {seq}");
        }
        samples.push(nanos(t1.saturating_duration_since(t0)));
        drop(stream);
        drop((a, b));
    }
    Ok(samples)
}
