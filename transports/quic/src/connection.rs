//! An established QUIC connection as a [`FrameSink`] and a [`FrameStream`].
//!
//! Streams (ADR 0006):
//!
//! * **Control.** One bidirectional stream, opened by the dialer, which
//!   first writes [`CONTROL_STREAM_VERSION`]. It carries `Hello`, `Credit`,
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
//! stalled channel stream holds back only its own channel: the sink hands
//! each channel's frames to that channel's writer task and returns, and the
//! stream reads every stream in its own task.
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

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::future::BoxFuture;
use p2p::ChannelId;
use p2p::transport::{
    ConnectionError, Frame, FrameSink, FrameStream, GoodbyeReason, decode_frame, encode_data_head,
    encode_frame,
};
use parking_lot::Mutex;
use quinn::{RecvStream, SendStream, VarInt};
use tokio::sync::{mpsc, oneshot};

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

/// Frames decoded by the reader tasks and not yet taken by the router.
/// The router's reader never waits on a reactor (credit guarantees room,
/// ADR 0002), so this queue is a hand-off, not a buffer: when it is full
/// the reader tasks stop reading and QUIC flow control holds the peer back.
/// Its bound caps what we hold beyond QUIC's windows at this many frames
/// (each at most `max_frame_size`).
const FRAME_QUEUE: usize = 64;

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
/// to their channel's writer task.
///
/// `send` is not cancel-safe: a cancelled call may have sent part of its
/// batch (the router cancels only when the connection is ending).
/// Dropping the sink closes the connection.
pub(crate) struct QuicSink {
    conn: quinn::Connection,
    control: SendStream,
    control_buf: BytesMut,
    data_buf: BytesMut,
    channels: HashMap<u16, mpsc::Sender<Encoded>>,
    writers: Vec<tokio::task::JoinHandle<()>>,
    close_timeout: Duration,
    /// The close code and reason once a goodbye was sent.
    goodbye: Option<(VarInt, Vec<u8>)>,
    /// No more frames: a goodbye was sent or the sink was closed.
    finished: bool,
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

    /// Queues one `Data` frame on its channel's writer, starting the writer
    /// (and so the stream) on the channel's first frame.
    fn queue_data(&mut self, frame: &Frame, channel: u16) -> Result<(), ConnectionError> {
        let bytes = match frame {
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
        let queue = match self.channels.get(&channel) {
            Some(queue) => queue,
            None => {
                let (tx, rx) = mpsc::channel(CHANNEL_QUEUE);
                self.writers
                    .push(tokio::spawn(write_channel(self.conn.clone(), channel, rx)));
                self.channels.entry(channel).or_insert(tx)
            }
        };
        match queue.try_send(bytes) {
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
        }
    }

    async fn send_frames(&mut self, frames: &mut Vec<Frame>) -> Result<(), ConnectionError> {
        if self.finished {
            frames.clear();
            return Err(self.closed_error());
        }
        let mut goodbye = None;
        for frame in frames.drain(..) {
            match &frame {
                Frame::Data { channel, .. } => self.queue_data(&frame, channel.0)?,
                Frame::Goodbye(g) => {
                    encode_frame(&frame, &mut self.control_buf);
                    goodbye = Some(g.clone());
                    // Nothing goes after a goodbye.
                    break;
                }
                _ => encode_frame(&frame, &mut self.control_buf),
            }
        }
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

    /// Flushes every stream and finishes it: the channel writers drain
    /// their queues, then the control stream gets what is pending (a
    /// goodbye, say) after their data. Waits up to `close_timeout` for the
    /// peer to acknowledge it all and, after a goodbye, for the peer to
    /// close the connection: closing first would discard whatever the peer
    /// has received but not yet read.
    async fn finish(&mut self, await_peer_close: bool) {
        self.finished = true;
        // Dropping the queues' senders tells each writer to drain, finish
        // its stream and wait for the acknowledgement.
        self.channels.clear();
        let writers = std::mem::take(&mut self.writers);
        let pending = self.control_buf.split().freeze();
        let control = &mut self.control;
        let conn = &self.conn;
        let drain = async {
            for writer in writers {
                let _ = writer.await;
            }
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

/// Writes one channel's frames on its own stream, opened on the first
/// frame; when the sink drops the queue, finishes the stream and waits for
/// the peer's acknowledgement.
async fn write_channel(conn: quinn::Connection, channel: u16, mut queue: mpsc::Receiver<Encoded>) {
    let result: Result<(), String> = async {
        // Waits while the peer's stream limit is reached: this channel
        // stalls, the others do not.
        let mut stream = conn.open_uni().await.map_err(|e| e.to_string())?;
        let mut batch = Vec::with_capacity(WRITE_BATCH + 1);
        // Small frames (and large frames' heads) are copied into one
        // buffer, so quinn gets one chunk per batch instead of dozens of
        // 100-byte ones; large payloads go as they are, without a copy.
        let mut small = BytesMut::new();
        small.extend_from_slice(&channel.to_be_bytes());
        while let Some(first) = queue.recv().await {
            let mut taken = 0;
            let mut next = Some(first);
            while let Some(Encoded { head, payload }) = next.take() {
                taken += 1;
                if head.len() <= COALESCE_MAX {
                    small.extend_from_slice(&head);
                } else {
                    if !small.is_empty() {
                        batch.push(small.split().freeze());
                    }
                    batch.push(head);
                }
                if !payload.is_empty() {
                    if payload.len() <= COALESCE_MAX {
                        small.extend_from_slice(&payload);
                    } else {
                        batch.push(small.split().freeze());
                        batch.push(payload);
                    }
                }
                if taken < WRITE_BATCH {
                    next = queue.try_recv().ok();
                }
            }
            if !small.is_empty() {
                batch.push(small.split().freeze());
            }
            stream
                .write_all_chunks(&mut batch)
                .await
                .map_err(|e| e.to_string())?;
            batch.clear();
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

type Item = Result<Frame, ConnectionError>;

/// The receiving half: frames from the control stream and every channel
/// stream, merged in one bounded queue by reader tasks.
pub(crate) struct QuicStream {
    conn: quinn::Connection,
    frames: mpsc::Receiver<Item>,
    pending_error: Option<ConnectionError>,
    goodbye_seen: bool,
}

impl QuicStream {
    /// Starts the reader tasks. Channel streams are accepted only once the
    /// first control frame (the router's `Hello`) is queued, so it always
    /// comes first even if a channel's packets overtake it.
    ///
    /// A `Goodbye` is queued only after the peer's channel streams, which
    /// the peer finishes before it writes the goodbye, have been read to
    /// their end (waiting at most `goodbye_wait`), so data sent before a
    /// goodbye is delivered before it.
    pub fn new(
        conn: quinn::Connection,
        control: RecvStream,
        max_frame: usize,
        goodbye_wait: Duration,
    ) -> Self {
        let (tx, frames) = mpsc::channel(FRAME_QUEUE);
        let (first, first_seen) = oneshot::channel();
        let (drain, drain_requested) = oneshot::channel();
        let (alive, readers_done) = mpsc::channel(1);
        tokio::spawn(read_control(
            conn.clone(),
            control,
            tx.clone(),
            ControlLimits {
                max_frame,
                goodbye_wait,
            },
            Barrier {
                first: Some(first),
                drain: Some(drain),
                readers_done,
            },
        ));
        tokio::spawn(accept_channels(
            conn.clone(),
            tx,
            max_frame,
            first_seen,
            drain_requested,
            alive,
        ));
        Self {
            conn,
            frames,
            pending_error: None,
            goodbye_seen: false,
        }
    }

    fn take(&mut self, item: Item, out: &mut Vec<Frame>) -> Result<(), ConnectionError> {
        let frame = item?;
        if matches!(frame, Frame::Goodbye(_)) {
            self.goodbye_seen = true;
        }
        out.push(frame);
        Ok(())
    }

    async fn recv_frames(&mut self, out: &mut Vec<Frame>) -> Result<(), ConnectionError> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        let Some(first) = self.frames.recv().await else {
            // Every reader task ended, so the connection is closed (or
            // this stream's tasks were told to stop): say why.
            let Some(reason) = self.conn.close_reason() else {
                return Err(ConnectionError::Closed);
            };
            if !self.goodbye_seen {
                if let Some(goodbye) = goodbye_of(&reason) {
                    self.goodbye_seen = true;
                    out.push(goodbye);
                    return Ok(());
                }
            }
            return Err(match reason {
                quinn::ConnectionError::ApplicationClosed(ref c)
                    if c.error_code.into_inner() >= u64::from(CLOSE_GOODBYE_BASE) =>
                {
                    ConnectionError::Closed
                }
                other => connection_error(&other),
            });
        };
        self.take(first, out)?;
        while let Ok(item) = self.frames.try_recv() {
            if let Err(e) = self.take(item, out) {
                self.pending_error = Some(e);
                break;
            }
        }
        Ok(())
    }
}

impl FrameStream for QuicStream {
    fn recv<'a>(
        &'a mut self,
        out: &'a mut Vec<Frame>,
    ) -> BoxFuture<'a, Result<(), ConnectionError>> {
        Box::pin(self.recv_frames(out))
    }
}

/// Reports a framing violation to the router, then closes the connection
/// telling the peer why.
async fn violation(conn: &quinn::Connection, tx: &mpsc::Sender<Item>, error: ConnectionError) {
    let reason = close_reason(&error.to_string());
    tracing::debug!(error = %error, "quic framing violation; closing");
    let _ = tx.send(Err(error)).await;
    conn.close(VarInt::from_u32(CLOSE_FRAMING), &reason);
}

enum Read {
    /// More bytes were appended.
    More,
    /// The stream finished.
    End,
    /// The connection closed, or nobody reads our frames any more.
    Stop,
    /// The stream failed.
    Failed(String),
}

/// Reads the next chunk of `stream` into `buf`.
async fn read_more(stream: &mut RecvStream, buf: &mut BytesMut, tx: &mpsc::Sender<Item>) -> Read {
    let chunk = tokio::select! {
        chunk = stream.read_chunk(READ_CHUNK, true) => chunk,
        _ = tx.closed() => return Read::Stop,
    };
    match chunk {
        Ok(Some(chunk)) => {
            buf.extend_from_slice(&chunk.bytes);
            Read::More
        }
        Ok(None) => Read::End,
        Err(quinn::ReadError::ConnectionLost(_)) => Read::Stop,
        Err(e) => Read::Failed(e.to_string()),
    }
}

struct ControlLimits {
    max_frame: usize,
    goodbye_wait: Duration,
}

/// How the control reader orders its frames against the channel streams.
struct Barrier {
    /// Told once the first control frame is queued: channel streams are
    /// accepted from then on.
    first: Option<oneshot::Sender<()>>,
    /// Asks the acceptor to take every stream the peer has opened, start
    /// their readers and stop; it answers on the enclosed sender.
    drain: Option<oneshot::Sender<oneshot::Sender<()>>>,
    /// Ends (`None`) once the acceptor and every channel reader are done.
    readers_done: mpsc::Receiver<Infallible>,
}

impl Barrier {
    /// Before a goodbye: lets every channel stream be read to its end.
    async fn drain_channels(&mut self, wait: Duration) {
        if self.first.is_some() {
            // No channel stream has been accepted yet, and none may carry
            // anything before the first control frame.
            return;
        }
        let Some(drain) = self.drain.take() else {
            return;
        };
        let (reply, drained) = oneshot::channel();
        if drain.send(reply).is_err() {
            return;
        }
        let readers_done = &mut self.readers_done;
        let _ = tokio::time::timeout(wait, async {
            let _ = drained.await;
            while readers_done.recv().await.is_some() {}
        })
        .await;
    }
}

async fn read_control(
    conn: quinn::Connection,
    mut stream: RecvStream,
    tx: mpsc::Sender<Item>,
    limits: ControlLimits,
    mut barrier: Barrier,
) {
    let mut buf = BytesMut::new();
    loop {
        loop {
            match decode_frame(&mut buf, limits.max_frame) {
                Ok(Some(Frame::Data { channel, .. })) => {
                    let detail =
                        format!("a data frame for channel {channel} on the control stream");
                    return violation(&conn, &tx, ConnectionError::Protocol(detail)).await;
                }
                Ok(Some(frame)) => {
                    if matches!(frame, Frame::Goodbye(_)) {
                        barrier.drain_channels(limits.goodbye_wait).await;
                    }
                    if tx.send(Ok(frame)).await.is_err() {
                        return;
                    }
                    if let Some(first) = barrier.first.take() {
                        let _ = first.send(());
                    }
                }
                Ok(None) => break,
                Err(e) => return violation(&conn, &tx, e).await,
            }
        }
        match read_more(&mut stream, &mut buf, &tx).await {
            Read::More => {}
            Read::Stop => return,
            // The peer closed its sending side: the connection is over.
            Read::End if buf.is_empty() => {
                let _ = tx.send(Err(ConnectionError::Closed)).await;
                return;
            }
            Read::End => {
                let detail = "the control stream ended in the middle of a frame".to_string();
                return violation(&conn, &tx, ConnectionError::Protocol(detail)).await;
            }
            Read::Failed(e) => {
                let _ = tx
                    .send(Err(ConnectionError::Reset(format!("control stream: {e}"))))
                    .await;
                return;
            }
        }
    }
}

/// Accepts the peer's channel streams (after the first control frame) and
/// reads each in its own task. Their number is bounded by the QUIC stream
/// limit (`max_channels` plus slack).
async fn accept_channels(
    conn: quinn::Connection,
    tx: mpsc::Sender<Item>,
    max_frame: usize,
    first_seen: oneshot::Receiver<()>,
    mut drain_requested: oneshot::Receiver<oneshot::Sender<()>>,
    alive: mpsc::Sender<Infallible>,
) {
    tokio::select! {
        seen = first_seen => if seen.is_err() { return },
        _ = tx.closed() => return,
    }
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let start = |stream: RecvStream| {
        tokio::spawn(read_channel(
            conn.clone(),
            stream,
            tx.clone(),
            max_frame,
            seen.clone(),
            alive.clone(),
        ));
    };
    loop {
        tokio::select! {
            stream = conn.accept_uni() => match stream {
                Ok(stream) => start(stream),
                Err(_) => return,
            },
            request = &mut drain_requested => {
                if let Ok(reply) = request {
                    // A goodbye arrived: take the streams already opened
                    // (all of them, since the peer finished its streams
                    // before writing it), and stop.
                    while let Some(Ok(stream)) = conn.accept_uni().now_or_never() {
                        start(stream);
                    }
                    let _ = reply.send(());
                }
                return;
            },
            _ = tx.closed() => return,
        }
    }
}

async fn read_channel(
    conn: quinn::Connection,
    mut stream: RecvStream,
    tx: mpsc::Sender<Item>,
    max_frame: usize,
    seen: Arc<Mutex<HashSet<u16>>>,
    _alive: mpsc::Sender<Infallible>,
) {
    let mut buf = BytesMut::new();
    while buf.len() < 2 {
        match read_more(&mut stream, &mut buf, &tx).await {
            Read::More => {}
            Read::Stop => return,
            Read::End => {
                let detail = "a channel stream ended before its channel id".to_string();
                return violation(&conn, &tx, ConnectionError::Protocol(detail)).await;
            }
            Read::Failed(e) => {
                let _ = tx
                    .send(Err(ConnectionError::Reset(format!("channel stream: {e}"))))
                    .await;
                return;
            }
        }
    }
    let header = buf.split_to(2);
    let channel = u16::from_be_bytes([header[0], header[1]]);
    if !seen.lock().insert(channel) {
        let detail = format!("a second stream for channel {channel}");
        return violation(&conn, &tx, ConnectionError::Protocol(detail)).await;
    }
    loop {
        loop {
            match decode_frame(&mut buf, max_frame) {
                Ok(Some(frame @ Frame::Data { channel: c, .. })) if c.0 == channel => {
                    if tx.send(Ok(frame)).await.is_err() {
                        return;
                    }
                }
                Ok(Some(frame)) => {
                    let detail = format!("{frame:?} on the stream of channel {channel}");
                    return violation(&conn, &tx, ConnectionError::Protocol(detail)).await;
                }
                Ok(None) => break,
                Err(e) => return violation(&conn, &tx, e).await,
            }
        }
        match read_more(&mut stream, &mut buf, &tx).await {
            Read::More => {}
            Read::Stop => return,
            Read::End if buf.is_empty() => return,
            Read::End => {
                let detail =
                    format!("the stream of channel {channel} ended in the middle of a frame");
                return violation(&conn, &tx, ConnectionError::Protocol(detail)).await;
            }
            Read::Failed(e) => {
                let _ = tx
                    .send(Err(ConnectionError::Reset(format!(
                        "the stream of channel {channel}: {e}"
                    ))))
                    .await;
                return;
            }
        }
    }
}
