//! The send side of one connection: a bounded FIFO per channel, the credit
//! the remote granted per channel, and a deficit-round-robin scheduler that
//! picks which channel's message goes next.
//!
//! Senders push into a channel's queue under a short lock; the connection's
//! writer task takes batches out. Nobody holds the lock across an `.await`.
//! The scheduler never reorders messages of one channel (each queue is a
//! FIFO) and never starves a channel: every channel with a message and
//! credit gets `priority × QUANTUM` bytes per round.
//!
//! # Write-through
//!
//! The outbox also holds the connection's [`FrameSink`] while the writer is
//! idle (ADR 0002, "Write-through"). The sink is in exactly one of these
//! hands at a time, and only the holder touches it:
//!
//! * the **writer task**, while it has work (the default);
//! * **parked** in the outbox, once the writer found nothing to send and
//!   went to sleep;
//! * **borrowed** by one sending task, for one frame: a sender whose
//!   channel's queue is empty and that holds credit, finding the sink
//!   parked, takes it under the lock (taking the credit too), and outside
//!   the lock encodes and writes its frame by polling the transport's
//!   `send` **once**. If that poll completes, the sender parks the sink
//!   again (waking the writer if anyone asked for it meanwhile); if it
//!   would wait (transport backpressure), the half-done write, an owned
//!   future holding the sink, goes **in flight**: into the outbox, for the
//!   writer to finish before anything else.
//!
//! So a sender never awaits while holding the sink: a `send` future dropped
//! at any point has either not taken the sink or already given it back, and
//! a frame is written once, whole, or counted as dropped with the
//! connection. What arrives while the sink is borrowed or in flight is
//! queued and goes after it, so FIFO per channel and the goodbye's place
//! behind what was queued before it hold; the fast path is taken only when
//! the writer is idle, so under load every frame goes through deficit round
//! robin as before.
//!
//! # Batching is kept
//!
//! A write-through makes the connection *warm*: until the peer sends data
//! ([`Outbox::peer_spoke`]) or [`WARM_WINDOW`] passes, further sends queue
//! and wake the writer even though it is idle. The first send after
//! idleness goes through; the rest of a burst batches in the writer, as
//! before write-through. A request/response exchange gets its answer
//! before its next request, so each request writes through.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::channel::ChannelId;
use crate::transport::{ConnectionError, Frame, FrameSink};

/// Bytes a channel of priority 1 may send per round.
pub(crate) const QUANTUM: i64 = 1024;

/// Why a push failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The queue is full.
    Full,
    /// The connection is closing or closed.
    Closed,
    /// The remote does not serve this channel.
    Unsupported,
    /// Larger than the remote accepts on this channel.
    TooLarge {
        /// The remote's limit.
        max: usize,
    },
}

/// A channel's send queue on one connection.
#[derive(Debug)]
pub(crate) struct ChannelQueue {
    pub id: ChannelId,
    quantum: i64,
    deficit: i64,
    messages: VecDeque<Bytes>,
    max_messages: usize,
    /// Messages the remote lets us send; `None` if it does not serve the
    /// channel.
    credit: Option<u32>,
    /// The largest credit the remote may have outstanding (its window).
    window: u32,
    /// A sender found the queue full and waits for room.
    waiters: bool,
}

/// Configuration of one channel's queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueConfig {
    pub id: ChannelId,
    pub priority: u8,
    pub max_messages: usize,
    /// The remote's receive window on this channel, `None` if it does not
    /// serve it: the most credit it may ever have granted and not seen used.
    pub remote_window: Option<u32>,
    /// Credit held at the start (at most the window); the rest comes in
    /// `Credit` frames.
    pub initial_credit: u32,
}

/// What [`Outbox::try_push`] did with a message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued for the writer.
    Queued,
    /// Written through: the transport took the frame.
    Written,
    /// Written through, but the transport must wait before it takes the
    /// whole frame: the writer finishes the write (and counts it).
    HandedOver,
    /// Written through, and the transport failed: the frame is lost with
    /// the connection.
    Failed(ConnectionError),
}

/// The sink and the writer's batch buffer, as they move between the writer
/// and a writing-through sender.
pub(crate) struct Parked {
    pub sink: Box<dyn FrameSink>,
    pub batch: Vec<Frame>,
}

/// A write-through that could not complete at once.
pub(crate) struct InFlight {
    /// The channel index of the frame being written.
    pub index: usize,
    /// Its payload bytes.
    pub bytes: u64,
    /// Finishes the write and gives the sink back.
    pub future: BoxFuture<'static, (Parked, Result<(), ConnectionError>)>,
}

/// Where the connection's sink is.
enum SinkSlot {
    /// With the writer task (or not yet given to the outbox).
    Writer,
    /// Parked by the idle writer.
    Parked(Parked),
    /// Taken by a sender for one write-through.
    Borrowed,
    /// A write-through the writer must finish.
    InFlight(InFlight),
    /// The writer ended; a borrower drops the sink when it is done.
    Gone,
}

impl std::fmt::Debug for SinkSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SinkSlot::Writer => "Writer",
            SinkSlot::Parked(_) => "Parked",
            SinkSlot::Borrowed => "Borrowed",
            SinkSlot::InFlight(_) => "InFlight",
            SinkSlot::Gone => "Gone",
        })
    }
}

/// What the writer found when it came to take the sink back.
pub(crate) enum Unparked {
    /// The sink, idle.
    Sink(Parked),
    /// A write-through to finish first.
    InFlight(InFlight),
    /// A sender is writing through; it wakes the writer when done.
    Borrowed,
}

/// What [`Outbox::next_batch`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Batch {
    /// Frames were appended.
    Ready,
    /// Nothing to send now; the writer should wait for a wake-up.
    Idle,
    /// The outbox is closed and drained: the writer should end.
    Closed,
}

#[derive(Debug)]
struct State {
    queues: Vec<ChannelQueue>,
    control: VecDeque<Frame>,
    cursor: usize,
    in_service: bool,
    closed: bool,
    writer_idle: bool,
    sink: SinkSlot,
    /// When the last write-through borrowed the sink. With
    /// [`Outbox::warm`] it decides whether the next send may write
    /// through (see [`WARM_WINDOW`]).
    last_write_through: Option<Instant>,
}

/// How long after a write-through a send to the same connection queues
/// for the writer instead of writing through, unless the peer has been
/// heard from since (see "Batching is kept" in the module docs).
///
/// Longer than the gap between two sends of a burst (well under a
/// microsecond to a few microseconds) and than the writer's wake-up, so
/// that a burst's sends after the first batch in the writer; short enough
/// that sparse traffic (one message every few tens of microseconds or
/// more) writes through.
pub(crate) const WARM_WINDOW: Duration = Duration::from_micros(50);

/// One connection's outbound queues.
#[derive(Debug)]
pub(crate) struct Outbox {
    /// A write-through happened and neither [`WARM_WINDOW`] has passed nor
    /// has the peer been heard from since ([`peer_spoke`](Self::peer_spoke)).
    /// Outside the lock so that the reader clears it without taking it;
    /// a hint only: it decides between two correct paths.
    warm: AtomicBool,
    state: Mutex<State>,
    writer_wake: Notify,
    room: Vec<Notify>,
    /// Cancelled by [`close`](Self::close).
    closing: tokio_util::sync::CancellationToken,
}

impl Outbox {
    pub fn new(configs: &[QueueConfig]) -> Self {
        let queues = configs
            .iter()
            .map(|c| ChannelQueue {
                id: c.id,
                quantum: QUANTUM * i64::from(c.priority.max(1)),
                deficit: 0,
                messages: VecDeque::new(),
                max_messages: c.max_messages,
                credit: c.remote_window.map(|w| c.initial_credit.min(w)),
                window: c.remote_window.unwrap_or(0),
                waiters: false,
            })
            .collect();
        Self {
            state: Mutex::new(State {
                queues,
                control: VecDeque::new(),
                cursor: 0,
                in_service: false,
                closed: false,
                writer_idle: false,
                sink: SinkSlot::Writer,
                last_write_through: None,
            }),
            warm: AtomicBool::new(false),
            writer_wake: Notify::new(),
            room: configs.iter().map(|_| Notify::new()).collect(),
            closing: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Whether the remote serves channel `index`.
    pub fn serves(&self, index: usize) -> bool {
        self.state
            .lock()
            .queues
            .get(index)
            .is_some_and(|q| q.credit.is_some())
    }

    /// Queues `payload` on channel `index` if there is room, or writes it
    /// through when the writer is idle, the channel's queue empty, its
    /// credit not, and no other write-through just happened; gives the
    /// payload back if neither can be done.
    ///
    /// Never waits: a write-through polls the transport once and hands
    /// what is left to the writer.
    pub fn try_push(&self, index: usize, payload: Bytes) -> Result<Pushed, (PushError, Bytes)> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        if state.closed {
            return Err((PushError::Closed, payload));
        }
        let Some(queue) = state.queues.get_mut(index) else {
            return Err((PushError::Unsupported, payload));
        };
        let Some(credit) = queue.credit else {
            return Err((PushError::Unsupported, payload));
        };
        if queue.messages.len() >= queue.max_messages {
            queue.waiters = true;
            return Err((PushError::Full, payload));
        }
        if state.writer_idle
            && queue.messages.is_empty()
            && credit > 0
            && matches!(state.sink, SinkSlot::Parked(_))
            // Polling a transport needs a runtime (its timers and I/O); a
            // caller outside one only queues.
            && tokio::runtime::Handle::try_current().is_ok()
            && self.cold(state.last_write_through)
        {
            // The writer is idle, so nothing else is sendable (no control
            // frame, no other channel with a message and credit): this
            // frame is what DRR would send next. Its credit is taken here,
            // as `next_batch` takes it.
            queue.credit = Some(credit - 1);
            let channel = queue.id;
            if let SinkSlot::Parked(parked) = std::mem::replace(&mut state.sink, SinkSlot::Borrowed)
            {
                // Warm before the write, so that a reply the reader sees
                // after it makes the next send cold again.
                state.last_write_through = Some(Instant::now());
                self.warm.store(true, Ordering::Relaxed);
                drop(guard);
                return Ok(self.write_through(index, channel, payload, parked));
            }
        }
        queue.messages.push_back(payload);
        let wake = std::mem::replace(&mut state.writer_idle, false);
        drop(guard);
        if wake {
            self.writer_wake.notify_one();
        }
        Ok(Pushed::Queued)
    }

    /// Whether a send may write through as far as batching goes: no
    /// write-through since the peer was last heard from, or the last one
    /// [`WARM_WINDOW`] ago or more. Otherwise the send queues and wakes the
    /// writer, which takes what the burst queues behind it as one batch.
    fn cold(&self, last_write_through: Option<Instant>) -> bool {
        !self.warm.load(Ordering::Relaxed)
            || last_write_through.is_none_or(|at| at.elapsed() >= WARM_WINDOW)
    }

    /// The connection's reader received data from the peer: the next send
    /// may write through again. (Control frames do not count: a stream's
    /// `Credit` answers the stream itself.) In a request/response exchange the
    /// answer comes before the next request, so every request writes
    /// through; a burst does not wait for answers, so it batches.
    pub fn peer_spoke(&self) {
        if self.warm.load(Ordering::Relaxed) {
            self.warm.store(false, Ordering::Relaxed);
        }
    }

    /// Writes one data frame through the borrowed sink: one poll, then the
    /// sink goes back to the outbox, parked or (if the transport must wait)
    /// in flight for the writer.
    fn write_through(
        &self,
        index: usize,
        channel: ChannelId,
        payload: Bytes,
        mut parked: Parked,
    ) -> Pushed {
        let bytes = payload.len() as u64;
        parked.batch.push(Frame::Data { channel, payload });
        let mut future: BoxFuture<'static, (Parked, Result<(), ConnectionError>)> =
            Box::pin(async move {
                let Parked {
                    mut sink,
                    mut batch,
                } = parked;
                let result = sink.send(&mut batch).await;
                batch.clear();
                (Parked { sink, batch }, result)
            });
        // The writer polls again with its own waker if this one is pending,
        // so the waker of this first poll need not be kept.
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        match Pin::new(&mut future).poll(&mut cx) {
            Poll::Ready((parked, result)) => {
                self.give_back(parked);
                match result {
                    Ok(()) => Pushed::Written,
                    Err(e) => Pushed::Failed(e),
                }
            }
            Poll::Pending => {
                let mut state = self.state.lock();
                if matches!(state.sink, SinkSlot::Gone) {
                    // The writer ended meanwhile: nobody will finish the
                    // write, and the connection is going.
                    drop(state);
                    drop(future);
                    return Pushed::Failed(ConnectionError::Closed);
                }
                state.sink = SinkSlot::InFlight(InFlight {
                    index,
                    bytes,
                    future,
                });
                state.writer_idle = false;
                drop(state);
                self.writer_wake.notify_one();
                Pushed::HandedOver
            }
        }
    }

    /// A borrower returns the sink: parked again, and the writer woken if
    /// something was queued (or closed) while it was borrowed.
    fn give_back(&self, parked: Parked) {
        let mut state = self.state.lock();
        if matches!(state.sink, SinkSlot::Gone) {
            drop(state);
            // The writer ended: the sink goes with the connection.
            drop(parked);
            return;
        }
        state.sink = SinkSlot::Parked(parked);
        let wake = !state.writer_idle;
        drop(state);
        if wake {
            self.writer_wake.notify_one();
        }
    }

    /// The idle writer parks the sink. Gives it back if work came in since
    /// [`next_batch`](Self::next_batch) found none: the writer goes on.
    pub fn park(&self, parked: Parked) -> Option<Parked> {
        let mut state = self.state.lock();
        if !state.writer_idle || !matches!(state.sink, SinkSlot::Writer) {
            return Some(parked);
        }
        state.sink = SinkSlot::Parked(parked);
        None
    }

    /// The writer, woken, takes the sink back: idle, or with a
    /// write-through to finish first; or learns that a sender has it.
    pub fn unpark(&self) -> Unparked {
        let mut state = self.state.lock();
        match std::mem::replace(&mut state.sink, SinkSlot::Writer) {
            SinkSlot::Parked(parked) => Unparked::Sink(parked),
            SinkSlot::InFlight(in_flight) => Unparked::InFlight(in_flight),
            other @ (SinkSlot::Borrowed | SinkSlot::Gone | SinkSlot::Writer) => {
                state.sink = other;
                Unparked::Borrowed
            }
        }
    }

    /// The writer ended. Whatever the outbox holds of the sink is dropped
    /// (a borrowed one when its borrower is done); returns the channel
    /// index of a write-through left unfinished, whose frame is lost.
    pub fn writer_gone(&self) -> Option<usize> {
        let slot = std::mem::replace(&mut self.state.lock().sink, SinkSlot::Gone);
        match slot {
            SinkSlot::InFlight(in_flight) => Some(in_flight.index),
            _ => None,
        }
    }

    /// Queues `payload` on channel `index`, waiting for room.
    pub async fn push(&self, index: usize, mut payload: Bytes) -> Result<Pushed, PushError> {
        let Some(room) = self.room.get(index) else {
            return Err(PushError::Unsupported);
        };
        // Most pushes find room: try before registering for a wake-up,
        // which costs more than the push itself (about 8 % of a 128-byte
        // message's instructions over the memory transport).
        match self.try_push(index, payload) {
            Ok(pushed) => return Ok(pushed),
            Err((PushError::Full, back)) => payload = back,
            Err((other, _)) => return Err(other),
        }
        loop {
            let notified = room.notified();
            tokio::pin!(notified);
            // Register before looking, so a wake-up between the look and the
            // wait is not lost.
            notified.as_mut().enable();
            match self.try_push(index, payload) {
                Ok(pushed) => return Ok(pushed),
                Err((PushError::Full, back)) => payload = back,
                Err((other, _)) => return Err(other),
            }
            notified.await;
        }
    }

    /// Queues a control frame; control frames go before data.
    ///
    /// The control queue stays bounded whatever the remote does: a pong
    /// replaces a pong not yet sent (a ping flood earns one answer per
    /// writer batch), and credit for a channel adds to credit for the same
    /// channel not yet sent. So it holds at most one credit frame per
    /// channel, one ping, one pong and the goodbye.
    pub fn push_control(&self, frame: Frame) {
        let wake = {
            let mut state = self.state.lock();
            if state.closed {
                return;
            }
            let merged = state
                .control
                .iter_mut()
                .any(|queued| match (queued, &frame) {
                    (Frame::Pong(old), Frame::Pong(new)) | (Frame::Ping(old), Frame::Ping(new)) => {
                        *old = *new;
                        true
                    }
                    (
                        Frame::Credit { channel, messages },
                        Frame::Credit {
                            channel: c,
                            messages: m,
                        },
                    ) if channel == c => {
                        *messages = messages.saturating_add(*m);
                        true
                    }
                    _ => false,
                });
            if !merged {
                state.control.push_back(frame);
            }
            std::mem::replace(&mut state.writer_idle, false)
        };
        if wake {
            self.writer_wake.notify_one();
        }
    }

    /// The remote returned `messages` credits on channel `index`. An error
    /// means the remote granted more than its own window: a protocol
    /// violation.
    pub fn add_credit(&self, index: usize, messages: u32) -> Result<(), ()> {
        let wake = {
            let mut state = self.state.lock();
            let Some(queue) = state.queues.get_mut(index) else {
                return Err(());
            };
            let Some(credit) = queue.credit.as_mut() else {
                return Err(());
            };
            let total = credit.saturating_add(messages);
            if total > queue.window {
                return Err(());
            }
            *credit = total;
            !queue.messages.is_empty() && std::mem::replace(&mut state.writer_idle, false)
        };
        if wake {
            self.writer_wake.notify_one();
        }
        Ok(())
    }

    /// Closes the outbox after `goodbye` (if any) is sent. Returns, per
    /// channel index, the number of queued messages that will never be sent.
    pub fn close(&self, goodbye: Option<Frame>) -> Vec<(usize, usize)> {
        let dropped = {
            let mut state = self.state.lock();
            if state.closed {
                return Vec::new();
            }
            state.closed = true;
            // A sender borrowing the sink wakes the writer when it gives it
            // back, so the goodbye goes out after its frame.
            state.writer_idle = false;
            if let Some(frame) = goodbye {
                state.control.push_back(frame);
            }
            state
                .queues
                .iter_mut()
                .enumerate()
                .filter(|(_, q)| !q.messages.is_empty())
                .map(|(i, q)| {
                    let n = q.messages.len();
                    q.messages.clear();
                    (i, n)
                })
                .collect()
        };
        self.closing.cancel();
        self.writer_wake.notify_one();
        for room in &self.room {
            room.notify_waiters();
        }
        dropped
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closing.is_cancelled()
    }

    /// Cancelled when [`close`](Self::close) is called.
    pub fn closing(&self) -> &tokio_util::sync::CancellationToken {
        &self.closing
    }

    /// Waits until the writer may have something to do.
    pub async fn wait_for_work(&self) {
        self.writer_wake.notified().await;
    }

    /// Appends up to `max_frames` frames (and about `max_bytes`) to `out`:
    /// control frames first, then data chosen by deficit round robin among
    /// channels that have both a message and credit. `sent` receives, per
    /// channel index, how many messages and bytes were taken.
    pub fn next_batch(
        &self,
        out: &mut Vec<Frame>,
        sent: &mut [(u64, u64)],
        max_frames: usize,
        max_bytes: usize,
    ) -> Batch {
        let mut freed = Vec::new();
        let result = {
            let mut guard = self.state.lock();
            let state = &mut *guard;
            let mut bytes = 0usize;
            while out.len() < max_frames {
                match state.control.pop_front() {
                    Some(frame) => out.push(frame),
                    None => break,
                }
            }
            let n = state.queues.len();
            let mut idle_scan = 0;
            while !state.closed
                && n > 0
                && out.len() < max_frames
                && bytes < max_bytes
                && idle_scan < n
            {
                let cursor = state.cursor;
                let queue = &mut state.queues[cursor];
                let credit = queue.credit.unwrap_or(0);
                if queue.messages.is_empty() || credit == 0 {
                    // A channel that cannot send keeps no deficit: it must
                    // not bank bytes while blocked and burst past the
                    // others later.
                    queue.deficit = 0;
                    state.cursor = (cursor + 1) % n;
                    state.in_service = false;
                    idle_scan += 1;
                    continue;
                }
                if !state.in_service {
                    queue.deficit += queue.quantum;
                    state.in_service = true;
                }
                let head = queue.messages.front().map_or(0, |m| m.len()) as i64;
                if queue.deficit >= head {
                    let Some(payload) = queue.messages.pop_front() else {
                        break;
                    };
                    queue.deficit -= head;
                    queue.credit = Some(credit - 1);
                    bytes += payload.len();
                    if let Some(s) = sent.get_mut(cursor) {
                        s.0 += 1;
                        s.1 += payload.len() as u64;
                    }
                    if queue.waiters {
                        queue.waiters = false;
                        freed.push(cursor);
                    }
                    out.push(Frame::Data {
                        channel: queue.id,
                        payload,
                    });
                    idle_scan = 0;
                } else {
                    // Eligible but short of deficit: it earns another quantum
                    // on its next turn, so this is progress, not an idle
                    // channel. (Counting it as idle would let a scan over
                    // such channels end the batch with a message ready.)
                    state.cursor = (cursor + 1) % n;
                    state.in_service = false;
                    idle_scan = 0;
                }
            }
            if !out.is_empty() {
                Batch::Ready
            } else if state.closed {
                Batch::Closed
            } else {
                state.writer_idle = true;
                Batch::Idle
            }
        };
        for index in freed {
            self.room[index].notify_waiters();
        }
        result
    }

    /// Messages queued on channel `index`.
    #[cfg(test)]
    pub fn queued(&self, index: usize) -> usize {
        self.state.lock().queues[index].messages.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(configs: &[(u16, u8, usize, Option<u32>)]) -> Outbox {
        let configs: Vec<_> = configs
            .iter()
            .map(|&(id, priority, max_messages, remote_window)| QueueConfig {
                id: ChannelId(id),
                priority,
                max_messages,
                remote_window,
                initial_credit: remote_window.unwrap_or(0),
            })
            .collect();
        Outbox::new(&configs)
    }

    fn payload(channel: u8, seq: u32, len: usize) -> Bytes {
        let mut v = vec![channel; len.max(5)];
        v[1..5].copy_from_slice(&seq.to_be_bytes());
        Bytes::from(v)
    }

    fn drain(outbox: &Outbox, max_frames: usize) -> Vec<Frame> {
        let mut out = Vec::new();
        let mut sent = vec![(0, 0); 8];
        let _ = outbox.next_batch(&mut out, &mut sent, max_frames, usize::MAX);
        out
    }

    #[test]
    fn fifo_within_a_channel_under_mixed_priorities() {
        let ob = outbox(&[(1, 1, 100, Some(1000)), (2, 8, 100, Some(1000))]);
        for seq in 0..50 {
            ob.try_push(0, payload(1, seq, 100)).expect("room");
            ob.try_push(1, payload(2, seq, 300)).expect("room");
        }
        let mut next = [0u32; 2];
        loop {
            let frames = drain(&ob, 7);
            if frames.is_empty() {
                break;
            }
            for f in frames {
                let Frame::Data { channel, payload } = f else {
                    panic!("data")
                };
                let idx = usize::from(channel.0 - 1);
                let seq = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
                assert_eq!(seq, next[idx], "channel {channel} out of order");
                next[idx] += 1;
            }
        }
        assert_eq!(next, [50, 50]);
    }

    #[test]
    fn low_priority_gets_its_weighted_share_under_saturation() {
        let ob = outbox(&[
            (1, 1, 10_000, Some(u32::MAX)),
            (2, 4, 10_000, Some(u32::MAX)),
        ]);
        for seq in 0..4000 {
            ob.try_push(0, payload(1, seq, 256)).expect("room");
            ob.try_push(1, payload(2, seq, 256)).expect("room");
        }
        let mut bytes = [0usize; 2];
        for _ in 0..200 {
            for f in drain(&ob, 16) {
                let Frame::Data { channel, payload } = f else {
                    panic!("data")
                };
                bytes[usize::from(channel.0 - 1)] += payload.len();
            }
        }
        let low_share = bytes[0] as f64 / (bytes[0] + bytes[1]) as f64;
        // Weighted share is 1/5 = 0.2.
        assert!((0.18..=0.22).contains(&low_share), "low share {low_share}");
    }

    #[test]
    fn no_credit_no_send_and_credit_resumes() {
        let ob = outbox(&[(1, 1, 10, Some(2))]);
        for seq in 0..5 {
            ob.try_push(0, payload(1, seq, 10)).expect("room");
        }
        assert_eq!(drain(&ob, 100).len(), 2);
        assert_eq!(drain(&ob, 100).len(), 0);
        ob.add_credit(0, 2).expect("within window");
        assert_eq!(drain(&ob, 100).len(), 2);
        assert!(
            ob.add_credit(0, 3).is_err(),
            "more than the window is a violation"
        );
    }

    #[test]
    fn a_sender_starts_with_its_initial_credit_and_never_exceeds_the_window() {
        let ob = Outbox::new(&[QueueConfig {
            id: ChannelId(1),
            priority: 1,
            max_messages: 10,
            remote_window: Some(4),
            initial_credit: 0,
        }]);
        for seq in 0..6 {
            ob.try_push(0, payload(1, seq, 10)).expect("room");
        }
        assert_eq!(
            drain(&ob, 100).len(),
            0,
            "no credit before the first Credit"
        );
        ob.add_credit(0, 3).expect("within window");
        ob.add_credit(0, 1).expect("up to the window");
        assert!(ob.add_credit(0, 1).is_err(), "beyond the window");
        assert_eq!(drain(&ob, 100).len(), 4);
    }

    #[test]
    fn full_queue_refuses_and_unsupported_channel_is_reported() {
        let ob = outbox(&[(1, 1, 2, Some(10)), (2, 1, 2, None)]);
        ob.try_push(0, payload(1, 0, 1)).expect("room");
        ob.try_push(0, payload(1, 1, 1)).expect("room");
        assert_eq!(
            ob.try_push(0, payload(1, 2, 1)).map_err(|e| e.0),
            Err(PushError::Full)
        );
        assert_eq!(
            ob.try_push(1, payload(2, 0, 1)).map_err(|e| e.0),
            Err(PushError::Unsupported)
        );
        assert_eq!(ob.close(None), vec![(0, 2)]);
        assert_eq!(
            ob.try_push(0, payload(1, 3, 1)).map_err(|e| e.0),
            Err(PushError::Closed)
        );
    }

    #[test]
    fn control_frames_go_first_and_goodbye_is_sent_after_close() {
        let ob = outbox(&[(1, 1, 10, Some(10))]);
        ob.try_push(0, payload(1, 0, 1)).expect("room");
        ob.push_control(Frame::Credit {
            channel: ChannelId(1),
            messages: 3,
        });
        let frames = drain(&ob, 10);
        assert!(matches!(frames[0], Frame::Credit { .. }));
        assert_eq!(frames.len(), 2);
        ob.close(Some(Frame::goodbye(
            crate::proto::GoodbyeReason::Shutdown,
            "bye",
        )));
        let mut out = Vec::new();
        let mut sent = vec![(0, 0); 1];
        assert_eq!(
            ob.next_batch(&mut out, &mut sent, 10, usize::MAX),
            Batch::Ready
        );
        assert!(matches!(out[0], Frame::Goodbye(_)));
        out.clear();
        assert_eq!(
            ob.next_batch(&mut out, &mut sent, 10, usize::MAX),
            Batch::Closed
        );
    }

    #[test]
    fn a_large_message_behind_a_short_deficit_is_still_sent() {
        // Regression: a message bigger than two quanta on one of several
        // channels used to leave the writer idle with the message queued.
        let ob = outbox(&[(1, 1, 10, Some(10)), (2, 1, 10, Some(10))]);
        ob.try_push(1, payload(2, 0, 5_000)).expect("room");
        let frames = drain(&ob, 100);
        assert_eq!(frames.len(), 1, "the 5,000-byte message goes in one batch");
        assert_eq!(ob.queued(1), 0);
    }

    #[test]
    fn a_ping_flood_queues_one_pong_and_credit_coalesces() {
        let ob = outbox(&[(1, 1, 10, Some(10))]);
        for nonce in 0..100_000 {
            ob.push_control(Frame::Pong(nonce));
        }
        for _ in 0..10 {
            ob.push_control(Frame::Credit {
                channel: ChannelId(1),
                messages: 3,
            });
        }
        let frames = drain(&ob, 1000);
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert!(matches!(frames[0], Frame::Pong(99_999)));
        assert!(matches!(frames[1], Frame::Credit { messages: 30, .. }));
    }

    #[tokio::test]
    async fn push_waits_for_room_then_completes() {
        let ob = std::sync::Arc::new(outbox(&[(1, 1, 1, Some(10))]));
        ob.try_push(0, payload(1, 0, 1)).expect("room");
        let waiter = {
            let ob = ob.clone();
            tokio::spawn(async move { ob.push(0, payload(1, 1, 1)).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert_eq!(drain(&ob, 1).len(), 1);
        assert_eq!(waiter.await.ok(), Some(Ok(Pushed::Queued)));
        assert_eq!(ob.queued(0), 1);
    }

    /// A sink that records what it sends; while `stalled` it takes nothing
    /// and waits (transport backpressure) until released.
    struct RecordingSink {
        sent: std::sync::Arc<Mutex<Vec<Frame>>>,
        gate: std::sync::Arc<tokio::sync::Semaphore>,
    }

    impl FrameSink for RecordingSink {
        fn send<'a>(
            &'a mut self,
            frames: &'a mut Vec<Frame>,
        ) -> BoxFuture<'a, Result<(), ConnectionError>> {
            Box::pin(async move {
                let permit = self
                    .gate
                    .acquire()
                    .await
                    .map_err(|_| ConnectionError::Closed)?;
                drop(permit);
                self.sent.lock().append(frames);
                Ok(())
            })
        }

        fn close(&mut self) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
    }

    fn recording() -> (
        Parked,
        std::sync::Arc<Mutex<Vec<Frame>>>,
        std::sync::Arc<tokio::sync::Semaphore>,
    ) {
        let sent = std::sync::Arc::new(Mutex::new(Vec::new()));
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
        let parked = Parked {
            sink: Box::new(RecordingSink {
                sent: sent.clone(),
                gate: gate.clone(),
            }),
            batch: Vec::new(),
        };
        (parked, sent, gate)
    }

    /// The writer's idle step: nothing to send, so the sink is parked.
    fn go_idle(ob: &Outbox, parked: Parked) {
        let mut out = Vec::new();
        let mut sent = vec![(0, 0); 8];
        assert_eq!(
            ob.next_batch(&mut out, &mut sent, 16, usize::MAX),
            Batch::Idle
        );
        assert!(ob.park(parked).is_none(), "parked");
    }

    fn seqs(frames: &[Frame]) -> Vec<(u16, u32)> {
        frames
            .iter()
            .filter_map(|f| match f {
                Frame::Data { channel, payload } => Some((
                    channel.0,
                    u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]),
                )),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn an_idle_writer_lets_a_sender_write_through_taking_credit() {
        let ob = outbox(&[(1, 1, 10, Some(2)), (2, 1, 10, Some(10))]);
        let (parked, sent, _gate) = recording();
        go_idle(&ob, parked);
        assert_eq!(ob.try_push(0, payload(1, 0, 10)), Ok(Pushed::Written));
        assert_eq!(seqs(&sent.lock()), vec![(1, 0)]);
        // The sink is parked again: once the peer answered, the next one
        // writes through too, and the credit (2) is spent as the writer
        // would spend it.
        ob.peer_spoke();
        assert_eq!(ob.try_push(0, payload(1, 1, 10)), Ok(Pushed::Written));
        ob.peer_spoke();
        assert_eq!(ob.try_push(0, payload(1, 2, 10)), Ok(Pushed::Queued));
        assert_eq!(ob.queued(0), 1);
        // No credit: the queued message waits for the writer, and a later
        // one queues behind it (FIFO), even with credit back.
        ob.add_credit(0, 1).expect("within window");
        assert_eq!(ob.try_push(0, payload(1, 3, 10)), Ok(Pushed::Queued));
        let Unparked::Sink(mut parked) = ob.unpark() else {
            panic!("the sink was parked")
        };
        let mut flags = vec![(0, 0); 2];
        assert_eq!(
            ob.next_batch(&mut parked.batch, &mut flags, 16, usize::MAX),
            Batch::Ready
        );
        assert_eq!(seqs(&parked.batch), vec![(1, 2)], "one credit, one message");
        // While the writer holds the sink nobody writes through.
        assert_eq!(ob.try_push(1, payload(2, 0, 10)), Ok(Pushed::Queued));
    }

    #[tokio::test]
    async fn a_write_through_that_must_wait_is_handed_to_the_writer_before_anything_else() {
        let ob = outbox(&[(1, 1, 10, Some(10))]);
        let (parked, sent, gate) = recording();
        go_idle(&ob, parked);
        // The transport has no room: the write cannot finish in one poll.
        let held = gate.acquire().await.expect("gate");
        assert_eq!(ob.try_push(0, payload(1, 0, 10)), Ok(Pushed::HandedOver));
        // Meanwhile a message and a goodbye are queued behind it.
        assert_eq!(ob.try_push(0, payload(1, 1, 10)), Ok(Pushed::Queued));
        ob.close(Some(Frame::goodbye(
            crate::proto::GoodbyeReason::Shutdown,
            "bye",
        )));
        let Unparked::InFlight(in_flight) = ob.unpark() else {
            panic!("the write is in flight")
        };
        assert_eq!((in_flight.index, in_flight.bytes), (0, 10));
        drop(held);
        let (mut parked, result) = in_flight.future.await;
        assert!(result.is_ok());
        assert_eq!(seqs(&sent.lock()), vec![(1, 0)], "written once, whole");
        let mut flags = vec![(0, 0); 1];
        assert_eq!(
            ob.next_batch(&mut parked.batch, &mut flags, 16, usize::MAX),
            Batch::Ready
        );
        // Close dropped the queued message (counted by the caller); the
        // goodbye goes after the written-through frame.
        assert!(matches!(parked.batch.as_slice(), [Frame::Goodbye(_)]));
    }

    #[tokio::test]
    async fn a_push_while_the_sink_is_borrowed_wakes_the_writer_when_it_is_returned() {
        let ob = std::sync::Arc::new(outbox(&[(1, 1, 10, Some(10)), (2, 1, 10, Some(10))]));
        let (parked, _sent, _gate) = recording();
        go_idle(&ob, parked);
        // A sender borrows the sink (as `try_push` does) ...
        let parked = {
            let mut state = ob.state.lock();
            let SinkSlot::Parked(parked) = std::mem::replace(&mut state.sink, SinkSlot::Borrowed)
            else {
                panic!("parked")
            };
            parked
        };
        // ... another queues meanwhile and asks for the writer, who finds
        // the sink borrowed ...
        assert_eq!(ob.try_push(1, payload(2, 0, 10)), Ok(Pushed::Queued));
        ob.wait_for_work().await;
        assert!(matches!(ob.unpark(), Unparked::Borrowed));
        // ... and is woken again when the borrower gives it back.
        ob.give_back(parked);
        ob.wait_for_work().await;
        assert!(matches!(ob.unpark(), Unparked::Sink(_)));
    }

    /// The writer's busy step: takes the sink back, sends one batch
    /// through it, and returns what it sent.
    async fn writer_batch(ob: &Outbox) -> (Parked, Vec<Frame>) {
        let Unparked::Sink(mut parked) = ob.unpark() else {
            panic!("the sink was parked")
        };
        let mut flags = vec![(0, 0); 8];
        let _ = ob.next_batch(&mut parked.batch, &mut flags, 64, usize::MAX);
        let frames = parked.batch.clone();
        parked
            .sink
            .send(&mut parked.batch)
            .await
            .expect("recording sink");
        (parked, frames)
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_after_a_write_through_batches_in_the_writer() {
        let ob = outbox(&[(1, 1, 100, Some(100)), (2, 1, 100, Some(100))]);
        let (parked, sent, _gate) = recording();
        go_idle(&ob, parked);
        // The first send after idleness writes through ...
        assert_eq!(ob.try_push(0, payload(1, 0, 10)), Ok(Pushed::Written));
        // ... the rest of the burst, on any channel, queues for the writer,
        // though the writer is idle and the sink parked.
        for seq in 1..20 {
            assert_eq!(ob.try_push(0, payload(1, seq, 10)), Ok(Pushed::Queued));
        }
        assert_eq!(ob.try_push(1, payload(2, 0, 10)), Ok(Pushed::Queued));
        ob.wait_for_work().await;
        let (parked, frames) = writer_batch(&ob).await;
        assert_eq!(frames.len(), 20, "the burst went as one batch");
        go_idle(&ob, parked);
        assert_eq!(seqs(&sent.lock()).len(), 21);
        // Still warm: a send right after the batch queues too.
        assert_eq!(ob.try_push(0, payload(1, 20, 10)), Ok(Pushed::Queued));
        let (parked, _) = writer_batch(&ob).await;
        go_idle(&ob, parked);
        // After the window a lone send writes through again.
        tokio::time::advance(WARM_WINDOW).await;
        assert_eq!(ob.try_push(0, payload(1, 21, 10)), Ok(Pushed::Written));
        let order: Vec<u32> = seqs(&sent.lock())
            .into_iter()
            .filter(|&(c, _)| c == 1)
            .map(|(_, s)| s)
            .collect();
        assert_eq!(order, (0..22).collect::<Vec<_>>(), "FIFO on channel 1");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_from_the_peer_lets_the_next_send_write_through() {
        let ob = outbox(&[(1, 1, 100, Some(100))]);
        let (parked, sent, _gate) = recording();
        go_idle(&ob, parked);
        // Request/response: each request follows the peer's answer to the
        // previous one, well within the window, and each writes through.
        for seq in 0..10 {
            assert_eq!(ob.try_push(0, payload(1, seq, 10)), Ok(Pushed::Written));
            ob.peer_spoke();
        }
        assert_eq!(seqs(&sent.lock()).len(), 10);
        // Without an answer the next one queues.
        assert_eq!(ob.try_push(0, payload(1, 10, 10)), Ok(Pushed::Written));
        assert_eq!(ob.try_push(0, payload(1, 11, 10)), Ok(Pushed::Queued));
    }

    #[tokio::test]
    async fn a_goodbye_during_a_write_through_goes_after_its_frame() {
        let ob = outbox(&[(1, 1, 10, Some(10))]);
        let (parked, sent, _gate) = recording();
        go_idle(&ob, parked);
        // A sender borrows the sink (as `try_push` does) ...
        let mut parked = {
            let mut state = ob.state.lock();
            let SinkSlot::Parked(parked) = std::mem::replace(&mut state.sink, SinkSlot::Borrowed)
            else {
                panic!("parked")
            };
            parked
        };
        // ... the connection is closed meanwhile, with a goodbye ...
        ob.close(Some(Frame::goodbye(
            crate::proto::GoodbyeReason::Shutdown,
            "bye",
        )));
        // ... the sender's frame is written and the sink given back ...
        parked.batch.push(Frame::Data {
            channel: ChannelId(1),
            payload: payload(1, 0, 10),
        });
        parked.sink.send(&mut parked.batch).await.expect("sent");
        ob.give_back(parked);
        // ... which wakes the writer, whose last batch is the goodbye.
        ob.wait_for_work().await;
        let (_parked, frames) = writer_batch(&ob).await;
        assert!(matches!(frames.as_slice(), [Frame::Goodbye(_)]));
        let sent = sent.lock();
        assert!(matches!(
            sent.as_slice(),
            [Frame::Data { .. }, Frame::Goodbye(_)]
        ));
    }

    #[test]
    fn outside_a_runtime_a_push_only_queues() {
        let ob = outbox(&[(1, 1, 10, Some(10))]);
        let (parked, sent, _gate) = recording();
        go_idle(&ob, parked);
        assert_eq!(ob.try_push(0, payload(1, 0, 10)), Ok(Pushed::Queued));
        assert!(sent.lock().is_empty());
    }
}
