//! The baseline: raw quinn on loopback, configured as `transport-quic`
//! configures its connections ([`endpoint`]), carrying the same
//! application messages without Switchyard: no router, no control stream,
//! no `Frame` encoding, no credit. Each message is `u32` big-endian length
//! ‖ the prost-encoded [`Msg`].
//!
//! * One-way runs write on one unidirectional stream. Writers batch as a
//!   `BufWriter` would: messages are appended to a buffer handed to quinn
//!   (`write_chunk`, no copy) once it holds `batch` bytes and at the end.
//! * Ping-pong runs use one bidirectional stream, one `write_chunk` per
//!   message each way.
//! * Readers take chunks of up to 64 KiB (`read_chunk`), append them to a
//!   buffer and decode every complete message, as the transport's readers
//!   do.
//! * Setup runs either plain server-authenticated TLS or, as Switchyard,
//!   mutual TLS ([`Auth`]).
//!
//! Every function takes the run's socket buffers, `buffers`: the bytes each
//! socket asks the kernel for, each way (`None`: the kernel's defaults).

pub mod endpoint;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, BytesMut};
use prost::Message;
use quinn::{RecvStream, SendStream, VarInt};
use switchyard_bench::compare::{
    LAST, MAX_MESSAGE, Msg, Pacer, PingPlan, Tally, Throughput, nanos, payload,
};

pub use self::endpoint::Auth;
use self::endpoint::Dialer;

/// Most bytes taken from a stream in one read (as in `transport-quic`).
const READ_CHUNK: usize = 64 * 1024;

/// Appends `message` as `u32be(length) ‖ message`.
fn push_message(message: &Msg, out: &mut BytesMut) {
    let len = message.encoded_len();
    out.reserve(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    // A `BytesMut` grows as needed, so encoding cannot run out of room.
    let _ = message.encode(out);
}

/// Reads length-prefixed messages off a stream.
struct MessageReader {
    stream: RecvStream,
    buf: BytesMut,
}

impl MessageReader {
    fn new(stream: RecvStream) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(128 * 1024),
        }
    }

    /// The next message.
    async fn next(&mut self) -> anyhow::Result<Msg> {
        loop {
            if self.buf.len() >= 4 {
                let mut header = [0u8; 4];
                header.copy_from_slice(&self.buf[..4]);
                let len = u32::from_be_bytes(header) as usize;
                if len > MAX_MESSAGE {
                    bail!("message of {len} bytes exceeds {MAX_MESSAGE}");
                }
                if self.buf.len() >= 4 + len {
                    self.buf.advance(4);
                    let body = self.buf.split_to(len).freeze();
                    return Msg::decode(body).context("undecodable message");
                }
            }
            match self.stream.read_chunk(READ_CHUNK, true).await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk.bytes),
                None => bail!("the stream ended"),
            }
        }
    }
}

/// A dialer connected to a listener: both endpoints and both ends of the
/// connection.
struct Pair {
    dialer: Dialer,
    listener: quinn::Endpoint,
    client: quinn::Connection,
    server: quinn::Connection,
}

impl Pair {
    /// Fresh endpoints, connected (server-authenticated TLS).
    async fn connect(buffers: Option<usize>) -> anyhow::Result<Self> {
        let listener = endpoint::listener(Auth::Server, buffers)?;
        let dialer = Dialer::new(Auth::Server, buffers)?;
        let to = listener.local_addr()?;
        let (client, server) = tokio::join!(dialer.connect(to), endpoint::accept(&listener));
        Ok(Self {
            client: client?,
            server: server?,
            dialer,
            listener,
        })
    }

    fn close(self) {
        self.client.close(VarInt::from_u32(0), b"done");
        self.server.close(VarInt::from_u32(0), b"done");
        self.dialer.close();
        self.listener.close(VarInt::from_u32(0), b"done");
    }
}

async fn send_for(
    mut stream: SendStream,
    mut pacer: Pacer,
    len: usize,
    batch: usize,
) -> anyhow::Result<SendStream> {
    let data = payload(len);
    let mut out = BytesMut::with_capacity(batch + MAX_MESSAGE);
    loop {
        let seq = pacer.next_seq();
        push_message(
            &Msg {
                seq,
                data: data.clone(),
            },
            &mut out,
        );
        if out.len() >= batch || seq == LAST {
            stream.write_chunk(out.split().freeze()).await?;
        }
        if seq == LAST {
            return Ok(stream);
        }
    }
}

/// One-way run of `len`-byte payloads for `duration` on one
/// unidirectional stream, the writer handing quinn `batch` bytes at a time.
pub async fn one_way(
    len: usize,
    duration: Duration,
    batch: usize,
    buffers: Option<usize>,
) -> anyhow::Result<Throughput> {
    let pair = Pair::connect(buffers).await?;
    let server = pair.server.clone();
    let receiver = tokio::spawn(async move {
        let mut reader = MessageReader::new(server.accept_uni().await?);
        let mut tally = Tally::default();
        while !tally.record(&reader.next().await?)? {}
        anyhow::Ok((tally, Instant::now()))
    });
    let stream = pair.client.open_uni().await?;
    let pacer = Pacer::new(duration);
    let start = pacer.start();
    let sender = tokio::spawn(send_for(stream, pacer, len, batch));
    let (tally, end) = receiver.await??;
    // Keep the stream open until everything was read.
    drop(sender.await??);
    pair.close();
    Ok(Throughput::new(tally, start, end))
}

/// Ping-pong of `len`-byte payloads on one bidirectional stream: one
/// message, one write each way.
pub async fn ping_pong(
    len: usize,
    plan: PingPlan,
    buffers: Option<usize>,
) -> anyhow::Result<Vec<u64>> {
    let pair = Pair::connect(buffers).await?;
    let server = pair.server.clone();
    let echo = tokio::spawn(async move {
        let (mut write, read) = server.accept_bi().await?;
        let mut reader = MessageReader::new(read);
        let mut out = BytesMut::new();
        while let Ok(message) = reader.next().await {
            push_message(&message, &mut out);
            write.write_chunk(out.split().freeze()).await?;
        }
        anyhow::Ok(())
    });
    let (mut write, read) = pair.client.open_bi().await?;
    let mut reader = MessageReader::new(read);
    let data = payload(len);
    let mut out = BytesMut::new();
    let mut samples = Vec::with_capacity(plan.max);
    let mut seq = 0;
    let mut sampling_since = None;
    loop {
        seq += 1;
        let t0 = Instant::now();
        push_message(
            &Msg {
                seq,
                data: data.clone(),
            },
            &mut out,
        );
        write.write_chunk(out.split().freeze()).await?;
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
    write.finish()?;
    echo.await??;
    pair.close();
    Ok(samples)
}

/// Connection setup, `iterations` times with fresh endpoints (bound, and
/// the certificates made, before the clock starts), with `auth`. The clock
/// runs from the dial through the handshake, `open_uni` and one message's
/// write to its arrival at the listener (its stream accepted, the message
/// read and decoded).
pub async fn setup(
    len: usize,
    iterations: usize,
    auth: Auth,
    buffers: Option<usize>,
) -> anyhow::Result<Vec<u64>> {
    let data = payload(len);
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let listener = endpoint::listener(auth, buffers)?;
        let dialer = Dialer::new(auth, buffers)?;
        let to = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let conn = endpoint::accept(&listener).await?;
            let mut reader = MessageReader::new(conn.accept_uni().await?);
            let message = reader.next().await?;
            anyhow::Ok((Instant::now(), message.seq, conn, listener))
        });
        let t0 = Instant::now();
        let client = dialer.connect(to).await?;
        let mut stream = client.open_uni().await?;
        let mut out = BytesMut::new();
        push_message(
            &Msg {
                seq: i as u64 + 1,
                data: data.clone(),
            },
            &mut out,
        );
        stream.write_chunk(out.freeze()).await?;
        let (t1, seq, server_conn, listener) = server.await??;
        if seq != i as u64 + 1 {
            bail!("setup {i}: got message {seq}");
        }
        samples.push(nanos(t1.saturating_duration_since(t0)));
        client.close(VarInt::from_u32(0), b"done");
        server_conn.close(VarInt::from_u32(0), b"done");
        dialer.close();
        listener.close(VarInt::from_u32(0), b"done");
    }
    Ok(samples)
}
