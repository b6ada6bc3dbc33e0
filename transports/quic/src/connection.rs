//! An established QUIC connection as a [`FrameSink`] and a [`FrameStream`].
//!
//! Streams (ADR 0006):
//!
//! * **Control.** One bidirectional stream, opened by the listener in
//!   0.5-RTT data, which first writes [`CONTROL_STREAM_VERSION`] and then
//!   its `Hello` (protocol version 3). It carries `Hello`, `Credit`,
//!   `Ping`, `Pong` and `Goodbye` frames, in order, encoded with
//!   [`encode_frame`]. A `Data` frame on it is a violation.
//! * **Channels.** Each channel gets its own unidirectional stream per
//!   direction, opened by the sender on the channel's first `Data` frame.
//!   The stream starts with the channel id as `u16` big-endian, then carries
//!   that channel's `Data` frames (`encode_frame`) and nothing else. A second
//!   stream for the same channel, a frame of another kind or another
//!   channel, or a frame over `max_frame_size` is a violation.
//!
//! QUIC's per-stream flow control is thus per-channel backpressure, and a
//! stalled channel stream holds back only its own channel: the sink writes
//! a channel's frames itself while quinn takes them at once and hands the
//! channel to a writer task of its own the first time quinn cannot, and the
//! receiving half reads every stream, without a task per stream, only when
//! the router asks for frames (the router's reader never waits on a
//! reactor, ADR 0002, so nothing is buffered beyond QUIC's windows and one
//! frame per stream).
//!
//! Partial frames are bounded over the whole connection: the bytes the
//! control stream's and every channel stream's buffer hold between reads
//! are at most `max_reassembly_bytes` (a frame may take `max_frame_size`,
//! but a peer may open `max_channels` + 8 streams and start one on each).
//! Past it the connection closes as for a violation, with
//! `ConnectionError::ReassemblyTooLarge`, which the router counts
//! (`transport_violations_total{reason="reassembly_budget"}`).
//!
//! A violation closes the connection with [`CLOSE_FRAMING`] and the reason;
//! the local router sees `ConnectionError::Protocol` first. A `Goodbye`
//! closes it with [`CLOSE_GOODBYE_BASE`] + the reason and the detail: the
//! channel writers finish first, then the goodbye goes on the control
//! stream, and the sender waits (within `close_timeout`) for it all to be
//! acknowledged and for the peer to close. The receiver queues the goodbye
//! only after the peer's (finished) channel streams are read to their end,
//! so data sent before a goodbye arrives before it; a peer that sees the
//! close first gets the same `Goodbye` from the close code.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use p2p::ChannelId;
use p2p::transport::{
    ConnectionError, Frame, FrameSink, FrameStream, GoodbyeReason, decode_frame, encode_data_head,
    encode_frame,
};
use quinn::{RecvStream, SendStream, VarInt};
use tokio::sync::mpsc;

/// The first byte the dialer writes on the control stream.
pub const CONTROL_STREAM_VERSION: u8 = 1;

/// Application close code: closed without a goodbye.
pub const CLOSE_NO_GOODBYE: u32 = 0;
/// Application close code: the peer broke our stream framing; the reason
/// says how.
pub const CLOSE_FRAMING: u32 = 1;
/// Application close code of a goodbye: this plus the `GoodbyeReason`; the
/// reason bytes are the goodbye's detail.
pub const CLOSE_GOODBYE_BASE: u32 = 0x100;

/// Longest close reason we send (a CONNECTION_CLOSE must fit one packet).
const MAX_CLOSE_REASON: usize = 512;

/// Most bytes taken from a stream in one read.
const READ_CHUNK: usize = 64 * 1024;

/// Most queued frames a channel writer hands quinn in one call.
const WRITE_BATCH: usize = 64;

/// Bound of a channel writer's queue: the router's cap on the credit a
/// peer can grant on one channel (ADR 0002, `MAX_WINDOW` in the router).
/// A `Data` frame reaches this queue only after the router spent a credit
/// on it, and the peer returns that credit only once the frame has been
/// written out and read; so the queue never holds more than the window the
/// peer granted (at most this many messages, each within the peer's
/// `max_message_size`). Reaching the bound would be an accounting fault.
const CHANNEL_QUEUE: usize = 1 << 16;

fn close_reason(text: &str) -> Vec<u8> {
    let mut end = text.len().min(MAX_CLOSE_REASON);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.as_bytes()[..end].to_vec()
}

/// What a connection closed by quinn means to the router.
pub(crate) fn connection_error(e: &quinn::ConnectionError) -> ConnectionError {
    use quinn::ConnectionError as Q;
    match e {
        Q::ApplicationClosed(close) => {
            let reason = String::from_utf8_lossy(&close.reason);
            match close.error_code.into_inner() {
                code if code == u64::from(CLOSE_NO_GOODBYE) => ConnectionError::Closed,
                code if code == u64::from(CLOSE_FRAMING) => ConnectionError::Reset(format!(
                    "the peer closed the connection over a framing violation: {reason}"
                )),
                code => ConnectionError::Reset(format!(
                    "the peer closed the connection with code {code:#x}: {reason}"
                )),
            }
        }
        Q::LocallyClosed => ConnectionError::Closed,
        Q::TimedOut => {
            ConnectionError::Timeout("no packet from the peer within the QUIC idle timeout".into())
        }
        Q::Reset => ConnectionError::Reset("the peer reset the connection".into()),
        Q::TransportError(e) => ConnectionError::Protocol(format!("QUIC: {e}")),
        Q::ConnectionClosed(close) => {
            ConnectionError::Reset(format!("the peer closed the connection: {close}"))
        }
        other => ConnectionError::Reset(other.to_string()),
    }
}

/// The goodbye a peer's application close carries, if it is one.
fn goodbye_of(e: &quinn::ConnectionError) -> Option<Frame> {
    let quinn::ConnectionError::ApplicationClosed(close) = e else {
        return None;
    };
    let reason = close
        .error_code
        .into_inner()
        .checked_sub(u64::from(CLOSE_GOODBYE_BASE))?;
    let reason = GoodbyeReason::try_from(i32::try_from(reason).ok()?).ok()?;
    Some(Frame::goodbye(
        reason,
        String::from_utf8_lossy(&close.reason).into_owned(),
    ))
}

fn write_error(conn: &quinn::Connection, e: quinn::WriteError) -> ConnectionError {
    match e {
        quinn::WriteError::ConnectionLost(e) => connection_error(&e),
        quinn::WriteError::Stopped(code) => {
            ConnectionError::Reset(format!("the peer stopped reading our stream (code {code})"))
        }
        other => conn
            .close_reason()
            .map(|e| connection_error(&e))
            .unwrap_or_else(|| ConnectionError::Io(other.to_string())),
    }
}

/// The sending half: control frames on the control stream, `Data` frames
/// on their channel's stream.
///
/// A channel's frames are written by the sink itself, in the router's
/// writer task, as long as quinn takes each batch at once (the common
/// case: the peer's stream window has room). The first time quinn cannot
/// (the stream limit is reached, or the channel's stream window is full),
/// the channel's stream moves to a writer task of its own, which waits for
/// quinn while the sink goes on with the other channels; the channel's
/// frames go through that task from then on, so their order holds.
///
/// `send` is not cancel-safe: a cancelled call may have sent part of its
/// batch (the router cancels only when the connection is ending).
/// Dropping the sink closes the connection.
pub(crate) struct QuicSink {
    conn: quinn::Connection,
    control: SendStream,
    control_buf: BytesMut,
    data_buf: BytesMut,
    channels: HashMap<u16, ChannelOut>,
    writers: Vec<tokio::task::JoinHandle<()>>,
    close_timeout: Duration,
    /// The close code and reason once a goodbye was sent.
    goodbye: Option<(VarInt, Vec<u8>)>,
    /// No more frames: a goodbye was sent or the sink was closed.
    finished: bool,
}

/// Where one channel's frames go.
enum ChannelOut {
    /// The sink writes the stream; `staging` holds the current `send`'s
    /// frames.
    Direct {
        stream: SendStream,
        staging: Staging,
    },
    /// A writer task owns the stream.
    Task(mpsc::Sender<Encoded>),
}

/// One write's worth of a channel's frames: small frames (and large
/// frames' heads) copied into one buffer, so quinn gets one chunk per batch
/// instead of dozens of 100-byte ones; large payloads as they are, without
/// a copy.
#[derive(Default)]
struct Staging {
    small: BytesMut,
    batch: Vec<Bytes>,
}

impl Staging {
    fn push(&mut self, Encoded { head, payload }: Encoded) {
        if head.len() <= COALESCE_MAX {
            self.small.extend_from_slice(&head);
        } else {
            self.cut();
            self.batch.push(head);
        }
        if !payload.is_empty() {
            if payload.len() <= COALESCE_MAX {
                self.small.extend_from_slice(&payload);
            } else {
                self.cut();
                self.batch.push(payload);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.small.is_empty() && self.batch.is_empty()
    }

    /// Moves the small-frame buffer into the batch.
    fn cut(&mut self) {
        if !self.small.is_empty() {
            self.batch.push(self.small.split().freeze());
        }
    }

    /// The staged chunks, in order.
    fn take(&mut self) -> Vec<Bytes> {
        self.cut();
        std::mem::take(&mut self.batch)
    }
}

impl QuicSink {
    pub fn new(conn: quinn::Connection, control: SendStream, close_timeout: Duration) -> Self {
        Self {
            conn,
            control,
            control_buf: BytesMut::new(),
            data_buf: BytesMut::new(),
            channels: HashMap::new(),
            writers: Vec::new(),
            close_timeout,
            goodbye: None,
            finished: false,
        }
    }

    fn closed_error(&self) -> ConnectionError {
        self.conn
            .close_reason()
            .map(|e| connection_error(&e))
            .unwrap_or(ConnectionError::Closed)
    }

    /// Stages or queues one `Data` frame for its channel, opening the
    /// channel's stream on its first frame.
    fn queue_data(&mut self, frame: &Frame, channel: u16) -> Result<(), ConnectionError> {
        let encoded = match frame {
            // A large payload goes to quinn as the message's own `Bytes`,
            // behind its frame head: no copy.
            Frame::Data { payload, .. } if payload.len() > COALESCE_MAX => {
                encode_data_head(ChannelId(channel), payload.len(), &mut self.data_buf);
                Encoded {
                    head: self.data_buf.split().freeze(),
                    payload: payload.clone(),
                }
            }
            _ => {
                encode_frame(frame, &mut self.data_buf);
                Encoded {
                    head: self.data_buf.split().freeze(),
                    payload: Bytes::new(),
                }
            }
        };
        let out = match self.channels.entry(channel) {
            Entry::Occupied(out) => out.into_mut(),
            // Opening a stream waits only when the peer's stream limit is
            // reached; then the writer task waits for it, alone.
            Entry::Vacant(slot) => slot.insert(match self.conn.open_uni().now_or_never() {
                Some(Ok(stream)) => {
                    let mut staging = Staging::default();
                    staging.small.extend_from_slice(&channel.to_be_bytes());
                    ChannelOut::Direct { stream, staging }
                }
                Some(Err(e)) => return Err(connection_error(&e)),
                None => ChannelOut::Task(spawn_writer(
                    &self.conn,
                    &mut self.writers,
                    channel,
                    None,
                    Vec::new(),
                )),
            }),
        };
        match out {
            ChannelOut::Direct { staging, .. } => {
                staging.push(encoded);
                Ok(())
            }
            ChannelOut::Task(queue) => match queue.try_send(encoded) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => Err(ConnectionError::Io(format!(
                    "channel {channel}: more than {CHANNEL_QUEUE} frames queued, beyond any credit"
                ))),
                // The writer ended: its stream or the connection failed.
                Err(mpsc::error::TrySendError::Closed(_)) => Err(self
                    .conn
                    .close_reason()
                    .map(|e| connection_error(&e))
                    .unwrap_or_else(|| {
                        ConnectionError::Reset(format!("the stream of channel {channel} failed"))
                    })),
            },
        }
    }

    /// Writes what the current `send` staged on each direct channel; what
    /// quinn does not take at once moves the channel to a writer task.
    fn flush_staged(&mut self) -> Result<(), ConnectionError> {
        let mut blocked = Vec::new();
        for (&channel, out) in &mut self.channels {
            let ChannelOut::Direct { stream, staging } = out else {
                continue;
            };
            if staging.is_empty() {
                continue;
            }
            let mut chunks = staging.take();
            let mut written = 0;
            while written < chunks.len() {
                match stream.write_chunks(&mut chunks[written..]).now_or_never() {
                    Some(Ok(w)) if w.bytes > 0 || w.chunks > 0 => written += w.chunks,
                    // Blocked: the peer's window (or ours) is full.
                    Some(Ok(_)) | None => break,
                    Some(Err(e)) => return Err(write_error(&self.conn, e)),
                }
            }
            if written < chunks.len() {
                blocked.push((channel, chunks.split_off(written)));
            }
        }
        for (channel, pending) in blocked {
            if let Some(ChannelOut::Direct { stream, .. }) = self.channels.remove(&channel) {
                let queue = spawn_writer(
                    &self.conn,
                    &mut self.writers,
                    channel,
                    Some(stream),
                    pending,
                );
                self.channels.insert(channel, ChannelOut::Task(queue));
            }
        }
        Ok(())
    }

    async fn send_frames(&mut self, frames: &mut Vec<Frame>) -> Result<(), ConnectionError> {
        if self.finished {
            frames.clear();
            return Err(self.closed_error());
        }
        let mut goodbye = None;
        let mut result = Ok(());
        for frame in frames.drain(..) {
            match &frame {
                Frame::Data { channel, .. } => {
                    result = self.queue_data(&frame, channel.0);
                    if result.is_err() {
                        break;
                    }
                }
                Frame::Goodbye(g) => {
                    encode_frame(&frame, &mut self.control_buf);
                    goodbye = Some(g.clone());
                    // Nothing goes after a goodbye.
                    break;
                }
                _ => encode_frame(&frame, &mut self.control_buf),
            }
        }
        frames.clear();
        // What was staged before a failure still goes out.
        let flushed = self.flush_staged();
        result?;
        flushed?;
        if let Some(goodbye) = goodbye {
            let code = CLOSE_GOODBYE_BASE.saturating_add(goodbye.reason.max(0).unsigned_abs());
            self.goodbye = Some((VarInt::from_u32(code), close_reason(&goodbye.detail)));
            self.finish(true).await;
            if let Some((code, reason)) = &self.goodbye {
                self.conn.close(*code, reason);
            }
            return Ok(());
        }
        if !self.control_buf.is_empty() {
            let bytes = self.control_buf.split().freeze();
            self.control
                .write_chunk(bytes)
                .await
                .map_err(|e| write_error(&self.conn, e))?;
        }
        Ok(())
    }

    /// Flushes every stream and finishes it: the channel streams first
    /// (the writer tasks drain their queues), then the control stream gets
    /// what is pending (a goodbye, say) after their data. Waits up to
    /// `close_timeout` for the peer to acknowledge it all and, after a
    /// goodbye, for the peer to close the connection: closing first would
    /// discard whatever the peer has received but not yet read.
    async fn finish(&mut self, await_peer_close: bool) {
        self.finished = true;
        // Dropping the queues' senders tells each writer to drain, finish
        // its stream and wait for the acknowledgement; the sink finishes
        // its own streams (everything staged was written by `send`).
        let mut acknowledged = Vec::new();
        for (_, out) in self.channels.drain() {
            if let ChannelOut::Direct { mut stream, .. } = out
                && stream.finish().is_ok()
            {
                acknowledged.push(stream.stopped());
            }
        }
        let writers = std::mem::take(&mut self.writers);
        let pending = self.control_buf.split().freeze();
        let control = &mut self.control;
        let conn = &self.conn;
        let drain = async {
            futures::future::join(
                futures::future::join_all(writers),
                futures::future::join_all(acknowledged),
            )
            .await;
            if !pending.is_empty() && control.write_chunk(pending).await.is_err() {
                return;
            }
            let _ = control.finish();
            let _ = control.stopped().await;
            if await_peer_close {
                conn.closed().await;
            }
        };
        let _ = tokio::time::timeout(self.close_timeout, drain).await;
    }
}

impl FrameSink for QuicSink {
    fn send<'a>(
        &'a mut self,
        frames: &'a mut Vec<Frame>,
    ) -> BoxFuture<'a, Result<(), ConnectionError>> {
        Box::pin(self.send_frames(frames))
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if !self.finished {
                self.finish(false).await;
            }
        })
    }
}

impl Drop for QuicSink {
    fn drop(&mut self) {
        let (code, reason) = self
            .goodbye
            .take()
            .unwrap_or_else(|| (VarInt::from_u32(CLOSE_NO_GOODBYE), b"closed".to_vec()));
        self.conn.close(code, &reason);
    }
}

/// Frames up to this size are copied into one buffer per write batch;
/// larger payloads are handed to quinn as they are.
const COALESCE_MAX: usize = 2048;

/// One encoded `Data` frame: `head` followed by `payload` (empty when the
/// whole frame, small, is in `head`).
struct Encoded {
    head: Bytes,
    payload: Bytes,
}

/// Hands `channel`'s stream (if the sink has one) and `pending` chunks to a
/// new writer task, which takes every later frame of the channel.
fn spawn_writer(
    conn: &quinn::Connection,
    writers: &mut Vec<tokio::task::JoinHandle<()>>,
    channel: u16,
    stream: Option<SendStream>,
    pending: Vec<Bytes>,
) -> mpsc::Sender<Encoded> {
    let (tx, rx) = mpsc::channel(CHANNEL_QUEUE);
    writers.push(tokio::spawn(write_channel(
        conn.clone(),
        channel,
        stream,
        pending,
        rx,
    )));
    tx
}

/// Writes one channel's frames on its stream: `stream` if the sink opened
/// it (with `pending`, what quinn did not take at once, first), else a
/// stream it opens itself. When the sink drops the queue, finishes the
/// stream and waits for the peer's acknowledgement.
async fn write_channel(
    conn: quinn::Connection,
    channel: u16,
    stream: Option<SendStream>,
    mut pending: Vec<Bytes>,
    mut queue: mpsc::Receiver<Encoded>,
) {
    let result: Result<(), String> = async {
        let mut staging = Staging::default();
        let mut stream = match stream {
            Some(stream) => stream,
            None => {
                // Waits while the peer's stream limit is reached: this
                // channel stalls, the others do not.
                let stream = conn.open_uni().await.map_err(|e| e.to_string())?;
                staging.small.extend_from_slice(&channel.to_be_bytes());
                stream
            }
        };
        stream
            .write_all_chunks(&mut pending)
            .await
            .map_err(|e| e.to_string())?;
        while let Some(first) = queue.recv().await {
            let mut taken = 1;
            staging.push(first);
            while taken < WRITE_BATCH {
                let Ok(next) = queue.try_recv() else { break };
                staging.push(next);
                taken += 1;
            }
            let mut batch = staging.take();
            stream
                .write_all_chunks(&mut batch)
                .await
                .map_err(|e| e.to_string())?;
        }
        stream.finish().map_err(|e| e.to_string())?;
        stream.stopped().await.map_err(|e| e.to_string())?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(channel, error = %e, "quic channel writer stopped");
    }
}

/// Most frames one `recv` returns; the rest stay in quinn (or in a
/// stream's reassembly buffer) for the next call.
const RECV_BATCH: usize = 256;

type ReadResult = Result<Option<Bytes>, quinn::ReadError>;

/// One channel stream being read: its reassembly buffer and, once read,
/// its channel id.
struct ChannelReader {
    stream: RecvStream,
    buf: BytesMut,
    channel: Option<u16>,
}

/// What one of the receiving half's sources brought.
enum Ready {
    /// A chunk of the control stream, with the stream.
    Control(RecvStream, ReadResult),
    /// A channel stream the peer opened.
    Accepted(Result<RecvStream, quinn::ConnectionError>),
    /// A chunk of a channel stream, with its reader.
    Channel(ChannelReader, ReadResult),
}

type Source = BoxFuture<'static, Ready>;

async fn next_chunk(stream: &mut RecvStream) -> ReadResult {
    let chunk = stream.read_chunk(READ_CHUNK, true).await;
    chunk.map(|c| c.map(|c| c.bytes))
}

/// Reads the next chunk of the control stream.
fn read_control(mut stream: RecvStream) -> Source {
    Box::pin(async move {
        let chunk = next_chunk(&mut stream).await;
        Ready::Control(stream, chunk)
    })
}

/// Waits for the peer's next channel stream.
fn accept_next(conn: quinn::Connection) -> Source {
    Box::pin(async move { Ready::Accepted(conn.accept_uni().await) })
}

/// Reads the next chunk of a channel stream.
fn read_channel(mut reader: ChannelReader) -> Source {
    Box::pin(async move {
        let chunk = next_chunk(&mut reader.stream).await;
        Ready::Channel(reader, chunk)
    })
}

/// Whether channel streams are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepting {
    /// Not before the first control frame is out.
    NotYet,
    Open,
    /// Not after a goodbye.
    Stopped,
}

/// The receiving half: the control stream and every channel stream, read
/// by `recv` itself in the router's reader task, with no task per stream
/// and no queue in between; each call polls only the streams that have
/// something. Nothing is read ahead of `recv`: between calls, QUIC flow
/// control holds the peer back.
///
/// Channel streams are accepted only once the first control frame (the
/// router's `Hello`) is returned, so it always comes first even if a
/// channel's packets overtake it. A `Goodbye` is returned only after the
/// peer's channel streams, which the peer finishes before it writes the
/// goodbye, have been read to their end (waiting at most `goodbye_wait`),
/// so data sent before a goodbye is delivered before it.
///
/// `recv` is cancel-safe: every partial read lives in `self`.
pub(crate) struct QuicStream {
    conn: quinn::Connection,
    /// The largest frame accepted now.
    max_frame: usize,
    /// The transport's own limit (`max_frame_size`).
    frame_limit: usize,
    /// The most bytes of partial frames kept over all streams
    /// (`max_reassembly_bytes`).
    max_reassembly: usize,
    /// Bytes of partial frames kept now: what the control stream's and
    /// every channel stream's buffer holds between reads.
    reassembling: usize,
    goodbye_wait: Duration,
    /// Reads in progress: the control stream (unless parked), the
    /// acceptor (while accepting) and every channel stream.
    sources: FuturesUnordered<Source>,
    control_buf: BytesMut,
    /// The control stream while a goodbye waits for the channel streams.
    parked_control: Option<RecvStream>,
    accepting: Accepting,
    /// Channel streams being read.
    channel_readers: usize,
    /// Channels whose stream was opened; a second one is a violation.
    seen: HashSet<u16>,
    /// A goodbye held back until the channel streams are read to their end
    /// or the deadline passes.
    draining: Option<(Frame, Pin<Box<tokio::time::Sleep>>)>,
    pending_error: Option<ConnectionError>,
    goodbye_seen: bool,
}

impl QuicStream {
    pub fn new(
        conn: quinn::Connection,
        control: RecvStream,
        max_frame: usize,
        max_reassembly: usize,
        goodbye_wait: Duration,
    ) -> Self {
        let sources = FuturesUnordered::new();
        sources.push(read_control(control));
        Self {
            conn,
            max_frame,
            frame_limit: max_frame,
            max_reassembly,
            reassembling: 0,
            goodbye_wait,
            sources,
            control_buf: BytesMut::new(),
            parked_control: None,
            accepting: Accepting::NotYet,
            channel_readers: 0,
            seen: HashSet::new(),
            draining: None,
            pending_error: None,
            goodbye_seen: false,
        }
    }

    /// A framing violation: closes the connection telling the peer why, and
    /// returns the error for the router.
    fn violation(&self, error: ConnectionError) -> ConnectionError {
        let reason = close_reason(&error.to_string());
        tracing::debug!(error = %error, "quic framing violation; closing");
        self.conn.close(VarInt::from_u32(CLOSE_FRAMING), &reason);
        error
    }

    /// The connection is closed: says why, as a goodbye if it carried one
    /// that was not yet returned.
    fn closed(&mut self, out: &mut Vec<Frame>) -> Result<(), ConnectionError> {
        let Some(reason) = self.conn.close_reason() else {
            return Err(ConnectionError::Closed);
        };
        if !self.goodbye_seen
            && let Some(goodbye) = goodbye_of(&reason)
        {
            self.goodbye_seen = true;
            out.push(goodbye);
            return Ok(());
        }
        Err(match reason {
            quinn::ConnectionError::ApplicationClosed(ref c)
                if c.error_code.into_inner() >= u64::from(CLOSE_GOODBYE_BASE) =>
            {
                ConnectionError::Closed
            }
            other => connection_error(&other),
        })
    }

    /// A buffer that held `before` bytes of partial frames now holds
    /// `after`: more than `max_reassembly` over all streams closes the
    /// connection. A peer can otherwise start a frame on every stream it
    /// may open (`max_channels` + 8) and never finish it, up to
    /// `max_frame_size` each.
    fn reassembled(&mut self, before: usize, after: usize) -> Result<(), ConnectionError> {
        self.reassembling = (self.reassembling + after).saturating_sub(before);
        if self.reassembling > self.max_reassembly {
            return Err(self.violation(ConnectionError::ReassemblyTooLarge {
                size: self.reassembling as u64,
                max: self.max_reassembly,
            }));
        }
        Ok(())
    }

    fn add_reader(&mut self, stream: RecvStream) {
        self.read_on(ChannelReader {
            stream,
            buf: BytesMut::new(),
            channel: None,
        });
    }

    /// Reads `reader`'s next chunk.
    fn read_on(&mut self, reader: ChannelReader) {
        self.channel_readers += 1;
        self.sources.push(read_channel(reader));
    }

    /// Control frames decoded from what the control stream brought, up to
    /// a goodbye; reads on unless a goodbye parks the stream.
    fn take_control(
        &mut self,
        stream: RecvStream,
        chunk: ReadResult,
        out: &mut Vec<Frame>,
    ) -> Result<(), ConnectionError> {
        let before = self.control_buf.len();
        match chunk {
            Ok(Some(bytes)) => self.control_buf.extend_from_slice(&bytes),
            // The peer closed its sending side: the connection is over.
            Ok(None) if self.control_buf.is_empty() => return Err(ConnectionError::Closed),
            Ok(None) => {
                let detail = "the control stream ended in the middle of a frame";
                return Err(self.violation(ConnectionError::Protocol(detail.into())));
            }
            Err(quinn::ReadError::ConnectionLost(_)) => return self.closed(out),
            Err(e) => return Err(ConnectionError::Reset(format!("control stream: {e}"))),
        }
        loop {
            match decode_frame(&mut self.control_buf, self.max_frame) {
                Ok(Some(Frame::Data { channel, .. })) => {
                    let detail =
                        format!("a data frame for channel {channel} on the control stream");
                    return Err(self.violation(ConnectionError::Protocol(detail)));
                }
                Ok(Some(frame @ Frame::Goodbye(_))) => {
                    self.reassembled(before, self.control_buf.len())?;
                    self.start_draining(frame);
                    self.parked_control = Some(stream);
                    return Ok(());
                }
                Ok(Some(frame)) => {
                    out.push(frame);
                    if self.accepting == Accepting::NotYet {
                        self.accepting = Accepting::Open;
                        self.sources.push(accept_next(self.conn.clone()));
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(self.violation(e)),
            }
        }
        self.reassembled(before, self.control_buf.len())?;
        self.sources.push(read_control(stream));
        Ok(())
    }

    /// Before a goodbye: takes every stream the peer has opened (all of
    /// them, since the peer finished its streams before writing it), stops
    /// accepting, and holds the goodbye until they are read.
    fn start_draining(&mut self, goodbye: Frame) {
        if self.accepting == Accepting::Open {
            while let Some(Ok(stream)) = self.conn.accept_uni().now_or_never() {
                self.add_reader(stream);
            }
        }
        self.accepting = Accepting::Stopped;
        let deadline = Box::pin(tokio::time::sleep(self.goodbye_wait));
        self.draining = Some((goodbye, deadline));
    }

    /// Decodes what a channel stream's read brought and reads on.
    fn take_chunk(
        &mut self,
        mut reader: ChannelReader,
        chunk: ReadResult,
        out: &mut Vec<Frame>,
    ) -> Result<(), ConnectionError> {
        self.channel_readers -= 1;
        let before = reader.buf.len();
        let ended = match chunk {
            Ok(Some(bytes)) => {
                reader.buf.extend_from_slice(&bytes);
                false
            }
            Ok(None) => true,
            // While a goodbye waits for the channel streams, a stream with
            // nothing left is simply done: what quinn still held was read.
            Err(quinn::ReadError::ConnectionLost(_)) if self.draining.is_some() => {
                self.reassembling = self.reassembling.saturating_sub(before);
                return Ok(());
            }
            Err(quinn::ReadError::ConnectionLost(_)) => return self.closed(out),
            Err(e) => {
                return Err(ConnectionError::Reset(match reader.channel {
                    Some(channel) => format!("the stream of channel {channel}: {e}"),
                    None => format!("channel stream: {e}"),
                }));
            }
        };
        let channel = match reader.channel {
            Some(channel) => channel,
            None if reader.buf.len() < 2 => {
                if ended {
                    let detail = "a channel stream ended before its channel id".to_string();
                    return Err(self.violation(ConnectionError::Protocol(detail)));
                }
                self.reassembled(before, reader.buf.len())?;
                self.read_on(reader);
                return Ok(());
            }
            None => {
                let header = reader.buf.split_to(2);
                let channel = u16::from_be_bytes([header[0], header[1]]);
                if !self.seen.insert(channel) {
                    let detail = format!("a second stream for channel {channel}");
                    return Err(self.violation(ConnectionError::Protocol(detail)));
                }
                reader.channel = Some(channel);
                channel
            }
        };
        loop {
            match decode_frame(&mut reader.buf, self.max_frame) {
                Ok(Some(frame @ Frame::Data { channel: c, .. })) if c.0 == channel => {
                    out.push(frame);
                }
                Ok(Some(frame)) => {
                    let detail = format!("{frame:?} on the stream of channel {channel}");
                    return Err(self.violation(ConnectionError::Protocol(detail)));
                }
                Ok(None) => break,
                Err(e) => return Err(self.violation(e)),
            }
        }
        self.reassembled(before, reader.buf.len())?;
        match ended {
            false => self.read_on(reader),
            true if reader.buf.is_empty() => {}
            true => {
                let detail =
                    format!("the stream of channel {channel} ended in the middle of a frame");
                return Err(self.violation(ConnectionError::Protocol(detail)));
            }
        }
        Ok(())
    }

    fn take(&mut self, ready: Ready, out: &mut Vec<Frame>) -> Result<(), ConnectionError> {
        match ready {
            Ready::Control(stream, chunk) => self.take_control(stream, chunk, out),
            Ready::Accepted(Ok(stream)) => {
                // Taken while accepting, or while a goodbye drains (the
                // stream was opened before it).
                self.add_reader(stream);
                if self.accepting == Accepting::Open {
                    self.sources.push(accept_next(self.conn.clone()));
                }
                Ok(())
            }
            // The acceptor left over from before a goodbye.
            Ready::Accepted(Err(_)) if self.accepting == Accepting::Stopped => Ok(()),
            Ready::Accepted(Err(_)) => self.closed(out),
            Ready::Channel(reader, chunk) => self.take_chunk(reader, chunk, out),
        }
    }

    /// Returns the held goodbye once the channel streams are read or the
    /// wait is over, and reads the control stream on.
    fn poll_goodbye(&mut self, cx: &mut Context<'_>, out: &mut Vec<Frame>) {
        let Some((_, deadline)) = &mut self.draining else {
            return;
        };
        if self.channel_readers == 0 || deadline.as_mut().poll(cx).is_ready() {
            if let Some((goodbye, _)) = self.draining.take() {
                self.goodbye_seen = true;
                out.push(goodbye);
            }
            if let Some(control) = self.parked_control.take() {
                self.sources.push(read_control(control));
            }
        }
    }

    fn poll_sources(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Vec<Frame>,
    ) -> Result<(), ConnectionError> {
        let start = out.len();
        let limit = start + RECV_BATCH;
        while out.len() < limit {
            match self.sources.poll_next_unpin(cx) {
                Poll::Ready(Some(ready)) => self.take(ready, out)?,
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        if out.len() < limit {
            self.poll_goodbye(cx, out);
        }
        if out.len() == start && self.sources.is_empty() && self.draining.is_none() {
            // Nothing is left to read and nothing could wake us: the
            // connection is over.
            return self.closed(out);
        }
        Ok(())
    }

    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Vec<Frame>,
    ) -> Poll<Result<(), ConnectionError>> {
        if let Some(e) = self.pending_error.take() {
            return Poll::Ready(Err(e));
        }
        let start = out.len();
        match self.poll_sources(cx, out) {
            Ok(()) if out.len() > start => Poll::Ready(Ok(())),
            Ok(()) => Poll::Pending,
            // Frames before the error go first.
            Err(e) if out.len() > start => {
                self.pending_error = Some(e);
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl FrameStream for QuicStream {
    fn recv<'a>(
        &'a mut self,
        out: &'a mut Vec<Frame>,
    ) -> BoxFuture<'a, Result<(), ConnectionError>> {
        Box::pin(futures::future::poll_fn(move |cx| self.poll_recv(cx, out)))
    }

    fn set_frame_limit(&mut self, limit: Option<usize>) {
        self.max_frame = limit.map_or(self.frame_limit, |l| l.min(self.frame_limit));
    }
}
