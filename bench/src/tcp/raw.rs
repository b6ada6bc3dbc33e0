//! The baseline: tokio `TcpStream`s on loopback carrying the same frames as
//! the Switchyard TCP transport (a varint length, then the protobuf
//! `WireFrame` of a `Frame::Data`, built with `p2p::transport::encode_frame`
//! and read with `decode_frame`), without Noise and without a router.
//!
//! Writers batch: frames are appended to a buffer that is written with one
//! `write_all` when it holds at least `batch` bytes (and at the end), as a
//! `BufWriter` would. Readers read into a buffer of 64 KiB more than they
//! hold and decode every complete frame, as the transport's reader does.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use p2p::ChannelId;
use p2p::transport::{Frame, decode_frame, encode_frame};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::compare::{LAST, MAX_MESSAGE, Msg, Pacer, PingPlan, Tally, Throughput, nanos, payload};

const CHANNEL: ChannelId = ChannelId(0x10);
/// Largest frame a reader accepts (the transport's default margin).
const MAX_FRAME: usize = MAX_MESSAGE + 64;

/// Reads frames off a byte stream.
struct FrameReader<R> {
    read: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    fn new(read: R) -> Self {
        Self {
            read,
            buf: BytesMut::with_capacity(128 * 1024),
        }
    }

    /// The next message.
    async fn next(&mut self) -> anyhow::Result<Msg> {
        loop {
            if let Some(frame) = decode_frame(&mut self.buf, MAX_FRAME)? {
                let Frame::Data { payload, .. } = frame else {
                    bail!("unexpected frame {frame:?}");
                };
                return Msg::decode(payload).context("undecodable message");
            }
            self.buf.reserve(64 * 1024);
            if self.read.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed");
            }
        }
    }
}

/// Appends `message` as one data frame.
fn push_frame(message: &Msg, out: &mut BytesMut) {
    let frame = Frame::Data {
        channel: CHANNEL,
        payload: Bytes::from(message.encode_to_vec()),
    };
    encode_frame(&frame, out);
}

/// A connected pair of sockets, `(dialer, listener side)`, with
/// `TCP_NODELAY` on both.
async fn connected() -> anyhow::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (client, (server, _)) = (client?, accepted?);
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    Ok((client, server))
}

async fn send_for<W: AsyncWrite + Unpin>(
    mut write: W,
    mut pacer: Pacer,
    len: usize,
    batch: usize,
) -> anyhow::Result<W> {
    let data = payload(len);
    let mut out = BytesMut::with_capacity(batch + MAX_FRAME);
    loop {
        let seq = pacer.next_seq();
        push_frame(
            &Msg {
                seq,
                data: data.clone(),
            },
            &mut out,
        );
        if out.len() >= batch || seq == LAST {
            write.write_all(&out).await?;
            out.clear();
        }
        if seq == LAST {
            return Ok(write);
        }
    }
}

/// One-way run of `len`-byte payloads for `duration`, the writer batching
/// up to `batch` bytes per write.
pub async fn one_way(len: usize, duration: Duration, batch: usize) -> anyhow::Result<Throughput> {
    let (client, server) = connected().await?;
    let receiver = tokio::spawn(async move {
        let mut reader = FrameReader::new(server);
        let mut tally = Tally::default();
        while !tally.record(&reader.next().await?)? {}
        anyhow::Ok((tally, Instant::now()))
    });
    let pacer = Pacer::new(duration);
    let start = pacer.start();
    let sender = tokio::spawn(send_for(client, pacer, len, batch));
    let (tally, end) = receiver.await??;
    // Keep the socket open until everything was read.
    drop(sender.await??);
    Ok(Throughput::new(tally, start, end))
}

/// Ping-pong of `len`-byte payloads: one frame, one write each way.
pub async fn ping_pong(len: usize, plan: PingPlan) -> anyhow::Result<Vec<u64>> {
    let (client, server) = connected().await?;
    let echo = tokio::spawn(async move {
        let (read, mut write) = server.into_split();
        let mut reader = FrameReader::new(read);
        let mut out = BytesMut::new();
        while let Ok(message) = reader.next().await {
            push_frame(&message, &mut out);
            write.write_all(&out).await?;
            out.clear();
        }
        anyhow::Ok(())
    });
    let (read, mut write) = client.into_split();
    let mut reader = FrameReader::new(read);
    let data = payload(len);
    let mut out = BytesMut::new();
    let mut samples = Vec::with_capacity(plan.max);
    let mut seq = 0;
    let mut sampling_since = None;
    loop {
        seq += 1;
        let t0 = Instant::now();
        push_frame(
            &Msg {
                seq,
                data: data.clone(),
            },
            &mut out,
        );
        write.write_all(&out).await?;
        out.clear();
        let back = reader.next().await?;
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
    drop(write);
    drop(reader);
    echo.await??;
    Ok(samples)
}

/// Connection setup, `iterations` times: a fresh listener each time; the
/// clock runs from `connect` to the first message's arrival at the
/// listener's side.
pub async fn setup(len: usize, iterations: usize) -> anyhow::Result<Vec<u64>> {
    let data = payload(len);
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let mut reader = FrameReader::new(stream);
            let message = reader.next().await?;
            anyhow::Ok((Instant::now(), message.seq))
        });
        let t0 = Instant::now();
        let mut client = TcpStream::connect(addr).await?;
        client.set_nodelay(true)?;
        let mut out = BytesMut::new();
        push_frame(
            &Msg {
                seq: i as u64 + 1,
                data: data.clone(),
            },
            &mut out,
        );
        client.write_all(&out).await?;
        let (t1, seq) = server.await??;
        if seq != i as u64 + 1 {
            bail!("setup {i}: got message {seq}");
        }
        samples.push(nanos(t1.saturating_duration_since(t0)));
    }
    Ok(samples)
}
