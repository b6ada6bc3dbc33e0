//! The life of one connection: the `Hello` exchange, then one reader task and
//! one writer task.
//!
//! The reader never waits on a reactor: a data frame is admitted only
//! against credit we granted, so the channel's receive queue always has room
//! for it. The writer never waits on a sender: it takes batches out of the
//! outbox and waits only on the transport.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::channel::ChannelId;
use crate::identity::PeerId;
use crate::metrics::DropReason;
use crate::peer_manager::{PeerError, RemoteRefusal};
use crate::proto::{self, GoodbyeReason};
use crate::router::link::{Credit, Inbound, Link};
use crate::router::outbox::{Batch, Parked, Unparked};
use crate::router::shared::{ChannelTable, Shared};
use crate::router::{MAX_EARLY_BYTES, MAX_HELLO_SIZE};
use crate::transport::{Connection, ConnectionError, Frame, FrameSink, FrameStream};

/// Largest number of channels a peer may announce.
const MAX_ANNOUNCED_CHANNELS: usize = 1024;
/// Largest number of listen addresses a peer may announce.
const MAX_ANNOUNCED_ADDRESSES: usize = 32;

/// Why a handshake failed.
#[derive(Debug, Clone)]
pub(crate) struct HandshakeError {
    /// The goodbye reason we give the remote.
    pub reason: GoodbyeReason,
    /// Words for the log and the remote.
    pub detail: String,
    /// A metric label.
    pub label: &'static str,
    /// With `Banned`: how long the ban still lasts, told to the remote.
    pub ban_remaining: Option<Duration>,
}

impl HandshakeError {
    fn new(reason: GoodbyeReason, label: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            label,
            ban_remaining: None,
        }
    }

    /// The goodbye that tells the remote why.
    fn goodbye(&self) -> Frame {
        match self.reason {
            GoodbyeReason::Banned => Frame::banned(self.detail.clone(), self.ban_remaining),
            reason => Frame::goodbye(reason, self.detail.clone()),
        }
    }
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.label)
    }
}

/// Exchanges `Hello` frames and checks the remote's: same network, same
/// protocol version, the authenticated PeerId, sane announcements. On a
/// mismatch the remote gets a goodbye saying why. Returns the remote's
/// `NodeInfo` and what arrived right behind its `Hello` ([`Early`]).
///
/// Our `Hello` is sent first, unless the transport already carried it in
/// its handshake ([`Connection::hello_sent`]). Frames that came in the same
/// read as the remote's `Hello` are the peer's early data: kept up to
/// [`MAX_EARLY_BYTES`] of payload, the rest dropped at admission. On a
/// failure, early data is dropped and counted (`early_refused`).
pub(crate) async fn handshake(
    conn: &mut Connection,
    ours: &proto::NodeInfo,
    shared: &Shared,
) -> Result<(proto::NodeInfo, Early), HandshakeError> {
    if !conn.hello_sent {
        let mut out = vec![Frame::Hello(Box::new(ours.clone()))];
        conn.sink.send(&mut out).await.map_err(|e| {
            HandshakeError::new(
                GoodbyeReason::Unspecified,
                "io",
                format!("sending hello: {e}"),
            )
        })?;
    }
    let mut frames = Vec::new();
    conn.stream.set_frame_limit(Some(MAX_HELLO_SIZE));
    let received = conn.stream.recv(&mut frames).await;
    conn.stream.set_frame_limit(None);
    received.map_err(|e| match e {
        ConnectionError::FrameTooLarge { size, max } => HandshakeError::new(
            GoodbyeReason::ProtocolViolation,
            "hello_too_large",
            format!("a first frame of {size} bytes exceeds the hello limit of {max} bytes"),
        ),
        e => HandshakeError::new(
            GoodbyeReason::Unspecified,
            "io",
            format!("waiting for hello: {e}"),
        ),
    })?;
    let mut frames = frames.into_iter();
    let first = frames.next();
    let early = Early::new(frames.collect(), &shared.metrics);
    let mut theirs = match first {
        Some(Frame::Hello(info)) => *info,
        Some(Frame::Goodbye(g)) => {
            early.refused(shared);
            return Err(HandshakeError::new(
                GoodbyeReason::Unspecified,
                "remote_goodbye",
                format!("remote refused: {:?} {}", g.reason(), g.detail),
            ));
        }
        other => {
            let err = HandshakeError::new(
                GoodbyeReason::ProtocolViolation,
                "protocol",
                format!("expected hello, got {other:?}"),
            );
            early.refused(shared);
            refuse(conn.sink.as_mut(), &err).await;
            return Err(err);
        }
    };
    if let Err(err) = check_hello(conn.remote, ours, &theirs) {
        early.refused(shared);
        refuse(conn.sink.as_mut(), &err).await;
        return Err(err);
    }
    // Kept for the connection's life: a view into the frame would keep the
    // whole `Hello` (up to 64 KiB) and whatever shared its buffer.
    theirs.peer_id = bytes::Bytes::copy_from_slice(&theirs.peer_id);
    Ok((theirs, early))
}

/// What a peer sent behind its `Hello` before we admitted it: frames that
/// came in the same read (the transport holds the rest until the
/// connection's reader starts). Data among them was sent on the protocol's
/// early credit ([`EARLY_CREDIT`](crate::router::EARLY_CREDIT)).
#[derive(Debug)]
pub(crate) struct Early {
    /// The frames kept, in order: data up to [`MAX_EARLY_BYTES`] of
    /// payload, and every control frame.
    pub frames: Vec<Frame>,
    /// The channels of data frames that came beyond [`MAX_EARLY_BYTES`],
    /// already dropped: each still spent a credit, charged at admission.
    pub over: Vec<ChannelId>,
    /// The kept payload bytes, counted in `early_data_bytes` while held.
    held: Held,
}

/// Early data bytes counted in a gauge until dropped.
#[derive(Debug)]
struct Held {
    gauge: prometheus_client::metrics::gauge::Gauge,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.dec_by(self.bytes as i64);
    }
}

impl Early {
    /// Keeps data frames while their payloads add up to at most
    /// [`MAX_EARLY_BYTES`]; of later ones only the channel is kept.
    pub fn new(all: Vec<Frame>, metrics: &crate::metrics::Metrics) -> Self {
        let (mut frames, mut over) = (Vec::with_capacity(all.len()), Vec::new());
        let mut bytes = 0usize;
        for frame in all {
            match frame {
                // Once over, every later message is too, so what is kept
                // is a prefix of what came.
                Frame::Data {
                    channel,
                    ref payload,
                } if !over.is_empty() || bytes + payload.len() > MAX_EARLY_BYTES => {
                    over.push(channel);
                }
                Frame::Data { ref payload, .. } => {
                    bytes += payload.len();
                    frames.push(frame);
                }
                other => frames.push(other),
            }
        }
        metrics.early_held(bytes);
        Self {
            frames,
            over,
            held: Held {
                gauge: metrics.early_data_bytes.clone(),
                bytes,
            },
        }
    }

    /// The connection will not be admitted: counts each data frame as
    /// dropped (`early_refused`) under its channel.
    pub fn refused(self, shared: &Shared) {
        let channels = self
            .frames
            .iter()
            .filter_map(|f| match f {
                Frame::Data { channel, .. } => Some(*channel),
                _ => None,
            })
            .chain(self.over.iter().copied());
        let table = shared.channels.get();
        for channel in channels {
            let name = table
                .and_then(|t| t.index_of(channel.0).map(|i| t.slots[i].descriptor.name))
                .unwrap_or("unknown");
            shared.metrics.drop(name, DropReason::EarlyRefused);
        }
    }
}

fn check_hello(
    remote: PeerId,
    ours: &proto::NodeInfo,
    theirs: &proto::NodeInfo,
) -> Result<(), HandshakeError> {
    if theirs.network_id != ours.network_id {
        return Err(HandshakeError::new(
            GoodbyeReason::NetworkMismatch,
            "network_mismatch",
            format!(
                "network id mismatch: we are {:?}, peer is {:?}",
                ours.network_id, theirs.network_id
            ),
        ));
    }
    if theirs.protocol_version != ours.protocol_version {
        return Err(HandshakeError::new(
            GoodbyeReason::VersionMismatch,
            "version_mismatch",
            format!(
                "protocol version mismatch: we speak {}, peer speaks {}",
                ours.protocol_version, theirs.protocol_version
            ),
        ));
    }
    if theirs.peer_id.as_ref() != remote.as_bytes() {
        return Err(HandshakeError::new(
            GoodbyeReason::ProtocolViolation,
            "peer_id_mismatch",
            "hello names a PeerId other than the authenticated one",
        ));
    }
    if theirs.channels.len() > MAX_ANNOUNCED_CHANNELS
        || theirs.listen_addresses.len() > MAX_ANNOUNCED_ADDRESSES
        || theirs.software_version.len() > 256
    {
        return Err(HandshakeError::new(
            GoodbyeReason::ProtocolViolation,
            "oversized_hello",
            "hello announces too many channels or addresses",
        ));
    }
    let mut ids = std::collections::HashSet::with_capacity(theirs.channels.len());
    if let Some(c) = theirs.channels.iter().find(|c| !ids.insert(c.id)) {
        return Err(HandshakeError::new(
            GoodbyeReason::ProtocolViolation,
            "bad_channel",
            format!("hello announces channel {} twice", c.id),
        ));
    }
    if theirs.network_id.len() > crate::MAX_NETWORK_ID_LEN
        || theirs.listen_addresses.iter().any(|a| a.len() > 512)
    {
        return Err(HandshakeError::new(
            GoodbyeReason::ProtocolViolation,
            "oversized_hello",
            "hello has an over-long network id or listen address",
        ));
    }
    if let Some(c) = theirs
        .channels
        .iter()
        .find(|c| c.id > u32::from(u16::MAX) || c.recv_window == 0)
    {
        return Err(HandshakeError::new(
            GoodbyeReason::ProtocolViolation,
            "bad_channel",
            format!(
                "hello announces channel {} with window {}",
                c.id, c.recv_window
            ),
        ));
    }
    Ok(())
}

/// Best effort: tell the remote why, then close.
pub(crate) async fn refuse(sink: &mut dyn FrameSink, err: &HandshakeError) {
    let mut out = vec![err.goodbye()];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        if sink.send(&mut out).await.is_ok() {
            sink.close().await;
        }
    })
    .await;
}

/// Limits of one connection's tasks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    pub max_batch_frames: usize,
    pub max_batch_bytes: usize,
    /// How long a closing writer may take to flush its goodbye.
    pub close_grace: Duration,
    /// Silence after which we ping.
    pub ping_interval: Duration,
    /// Silence after a ping after which the connection is dead.
    pub pong_timeout: Duration,
}

/// How a connection ended.
#[derive(Debug)]
pub(crate) struct Ended {
    /// Why, for the log and peer updates.
    pub reason: String,
    /// The remote refused us or banned us, by its goodbye.
    pub refusal: Option<RemoteRefusal>,
    /// The remote's goodbye was its first word after `Hello`: it refused
    /// the connection at admission.
    pub at_admission: bool,
}

impl Ended {
    fn plain(reason: String) -> Self {
        Self {
            reason,
            refusal: None,
            at_admission: false,
        }
    }
}

/// What a remote's goodbye means for our redials: `Banned` always (for as
/// long as it says); `Rejected` and `Duplicate` when they are its first
/// word after `Hello` — it refused the connection at admission.
fn refusal_of(goodbye: &proto::Goodbye, first: bool) -> Option<RemoteRefusal> {
    match goodbye.reason() {
        GoodbyeReason::Banned => Some(RemoteRefusal::Banned {
            remaining: (goodbye.ban_seconds > 0).then(|| Duration::from_secs(goodbye.ban_seconds)),
        }),
        GoodbyeReason::Rejected | GoodbyeReason::Duplicate if first => {
            Some(RemoteRefusal::Rejected)
        }
        _ => None,
    }
}

/// Runs a connection until it ends; returns why it ended.
pub(crate) async fn run(
    shared: Arc<Shared>,
    table: Arc<ChannelTable>,
    link: Arc<Link>,
    sink: Box<dyn FrameSink>,
    stream: Box<dyn FrameStream>,
    early: Early,
    limits: ConnectionLimits,
) -> Ended {
    let mut writer = tokio::spawn(write_loop(shared.clone(), link.clone(), sink, limits));
    let reason = read_loop(&shared, &table, &link, stream, early, limits).await;
    // Whatever ended the reader, nothing more will be sent but the goodbye
    // the reader may have queued.
    link.close_with(None, &shared.metrics);
    if tokio::time::timeout(limits.close_grace, &mut writer)
        .await
        .is_err()
    {
        // The writer watches this token at every await, so it ends now; wait
        // for it so no task outlives the connection.
        link.close.cancel();
        let _ = writer.await;
    }
    link.close.cancel();
    reason
}

async fn write_loop(
    shared: Arc<Shared>,
    link: Arc<Link>,
    sink: Box<dyn FrameSink>,
    limits: ConnectionLimits,
) {
    // The sink and the batch buffer (which grows with the first batch; an
    // idle connection allocates nothing here) travel together: with the
    // writer while it works, parked in the outbox while it sleeps, where a
    // sender may borrow them to write one frame through (see `outbox`).
    let mut held = Some(Parked {
        sink,
        batch: Vec::new(),
    });
    let mut sent = vec![(0u64, 0u64); link.metrics.len()];
    // Once the outbox is closed the goodbye gets `close_grace` to leave: a
    // peer that stopped reading cannot hold a disconnect (or a ban) open.
    let grace_over = async {
        link.outbox.closing().cancelled().await;
        tokio::time::sleep(limits.close_grace).await;
    };
    tokio::pin!(grace_over);
    loop {
        let Some(parked) = held.as_mut() else {
            // The sink is parked in the outbox: wait for work, then take it
            // back (finishing a write-through first if one was handed over).
            tokio::select! {
                biased;
                _ = link.close.cancelled() => break,
                _ = link.outbox.wait_for_work() => {}
            }
            match link.outbox.unpark() {
                Unparked::Sink(parked) => held = Some(parked),
                Unparked::Borrowed => {}
                Unparked::InFlight(in_flight) => {
                    // Counted as taken: lost if the connection ends first.
                    if let Some(s) = sent.get_mut(in_flight.index) {
                        s.0 += 1;
                        s.1 += in_flight.bytes;
                    }
                    let (parked, result) = tokio::select! {
                        biased;
                        _ = link.close.cancelled() => break,
                        _ = &mut grace_over => break,
                        done = in_flight.future => done,
                    };
                    held = Some(parked);
                    match result {
                        Ok(()) => link.record_sent(&mut sent),
                        Err(e) => {
                            tracing::debug!(peer = %link.peer, error = %e, "writer stopped");
                            break;
                        }
                    }
                }
            }
            continue;
        };
        match link.outbox.next_batch(
            &mut parked.batch,
            &mut sent,
            limits.max_batch_frames,
            limits.max_batch_bytes,
        ) {
            Batch::Ready => {
                let result = tokio::select! {
                    biased;
                    _ = link.close.cancelled() => break,
                    _ = &mut grace_over => break,
                    result = parked.sink.send(&mut parked.batch) => result,
                };
                parked.batch.clear();
                match result {
                    Ok(()) => link.record_sent(&mut sent),
                    Err(e) => {
                        tracing::debug!(peer = %link.peer, error = %e, "writer stopped");
                        break;
                    }
                }
            }
            Batch::Idle => {
                if let Some(parked) = held.take() {
                    // Work that came in since `next_batch` keeps the sink
                    // here; otherwise it waits in the outbox.
                    held = link.outbox.park(parked);
                }
            }
            Batch::Closed => {
                tokio::select! {
                    _ = &mut grace_over => {}
                    _ = parked.sink.close() => {}
                }
                break;
            }
        }
    }
    // From here no sender can take the sink; one still writing through
    // drops it when done. A write-through left unfinished is lost.
    if let Some(index) = link.outbox.writer_gone()
        && let Some(s) = sent.get_mut(index)
    {
        s.0 += 1;
    }
    // Messages taken into a batch (or a write-through) that never left are
    // lost with the connection; count them.
    link.record_unsent(&mut sent, &shared.metrics);
    link.close.cancel();
}

enum Step {
    Continue,
    End(String),
}

async fn read_loop(
    shared: &Shared,
    table: &ChannelTable,
    link: &Arc<Link>,
    mut stream: Box<dyn FrameStream>,
    early: Early,
    limits: ConnectionLimits,
) -> Ended {
    let Early {
        mut frames,
        mut over,
        held,
    } = early;
    // Admitted: what it holds goes into the receive queues (or is dropped)
    // in the first pass below, under the ledger's accounting.
    drop(held);
    // Frames received so far: a goodbye as the first one is a refusal.
    let mut received = 0u64;
    // Keepalive: one timer, moved only when it fires, so the data path pays
    // a clock read per batch and nothing more.
    let mut last_received = Instant::now();
    // When we pinged, if nothing has been received since.
    let mut ping_sent: Option<Instant> = None;
    let mut nonce = 0u64;
    let keepalive = tokio::time::sleep(limits.ping_interval);
    tokio::pin!(keepalive);
    loop {
        if frames.iter().any(|f| matches!(f, Frame::Data { .. })) {
            // The peer sent data (an answer, in a request/response
            // exchange): our next send may write through.
            link.outbox.peer_spoke();
        }
        for frame in frames.drain(..) {
            if let Frame::Goodbye(goodbye) = &frame {
                return Ended {
                    reason: format!(
                        "remote said goodbye: {:?} {}",
                        goodbye.reason(),
                        goodbye.detail
                    ),
                    refusal: refusal_of(goodbye, received == 0),
                    at_admission: received == 0,
                };
            }
            received += 1;
            if let Step::End(reason) = on_frame(shared, table, link, frame) {
                return Ended::plain(reason);
            }
        }
        // Early data beyond what we hold before admission: it came behind
        // the frames above, and spent its credit like any data.
        for channel in over.drain(..) {
            if let Step::End(reason) = on_dropped_early(shared, table, link, channel) {
                return Ended::plain(reason);
            }
        }
        let result = tokio::select! {
            biased;
            _ = link.close.cancelled() => return Ended::plain("connection closed by this node".to_string()),
            result = stream.recv(&mut frames) => result,
            _ = &mut keepalive => {
                let now = Instant::now();
                match ping_sent {
                    Some(sent) => {
                        if now >= sent + limits.pong_timeout {
                            return Ended::plain(format!(
                                "keepalive: nothing received for {:?} after a ping",
                                limits.pong_timeout
                            ));
                        }
                        keepalive.as_mut().reset(sent + limits.pong_timeout);
                    }
                    _ if now >= last_received + limits.ping_interval => {
                        nonce += 1;
                        link.outbox.push_control(Frame::Ping(nonce));
                        ping_sent = Some(now);
                        keepalive.as_mut().reset(now + limits.pong_timeout);
                    }
                    None => keepalive.as_mut().reset(last_received + limits.ping_interval),
                }
                continue;
            }
        };
        match result {
            Ok(()) => {
                last_received = Instant::now();
                if ping_sent.take().is_some() {
                    keepalive
                        .as_mut()
                        .reset(last_received + limits.ping_interval);
                }
            }
            Err(ConnectionError::Closed) => {
                return Ended::plain("remote closed the connection".to_string());
            }
            Err(
                e @ (ConnectionError::Protocol(_)
                | ConnectionError::FrameTooLarge { .. }
                | ConnectionError::ReassemblyTooLarge { .. }),
            ) => {
                // Bytes that break the transport's framing or crypto, or a
                // frame (or partial frames) over the limit, are the peer's
                // doing: it pays for them as for any other protocol
                // violation, so reconnecting to repeat them costs it its
                // score.
                shared.metrics.violation(match e {
                    ConnectionError::FrameTooLarge { .. } => "frame_too_large",
                    ConnectionError::ReassemblyTooLarge { .. } => "reassembly_budget",
                    _ => "protocol",
                });
                let detail = e.to_string();
                shared.report(link.peer, PeerError::Protocol(detail.clone()));
                return Ended::plain(detail);
            }
            Err(e) => return Ended::plain(e.to_string()),
        }
    }
}

/// A data frame of `channel` that came before admission beyond
/// [`MAX_EARLY_BYTES`] and was dropped: it spends a credit all the same
/// (returned at once if it was backed), and is counted `early_no_room`.
fn on_dropped_early(
    shared: &Shared,
    table: &ChannelTable,
    link: &Arc<Link>,
    channel: ChannelId,
) -> Step {
    let Some(index) = table.index_of(channel.0) else {
        shared.metrics.drop("unknown", DropReason::UnknownChannel);
        shared.report(link.peer, PeerError::UnknownChannel(channel));
        return Step::Continue;
    };
    let name = table.slots[index].descriptor.name;
    match link.take_credit(index, 0) {
        Credit::Backed => link.consumed(index, 0),
        Credit::Unbacked => {}
        Credit::Exceeded if link.outbox.is_closed() => {}
        Credit::Exceeded => {
            shared.metrics.drop(name, DropReason::FlowControl);
            return violation(shared, link, PeerError::FlowControlViolation(channel));
        }
    }
    shared.metrics.drop(name, DropReason::EarlyNoRoom);
    Step::Continue
}

fn on_frame(shared: &Shared, table: &ChannelTable, link: &Arc<Link>, frame: Frame) -> Step {
    match frame {
        Frame::Data { channel, payload } => {
            let Some(index) = table.index_of(channel.0) else {
                shared.metrics.drop("unknown", DropReason::UnknownChannel);
                shared.report(link.peer, PeerError::UnknownChannel(channel));
                return Step::Continue;
            };
            let slot = &table.slots[index];
            let name = slot.descriptor.name;
            let size = payload.len();
            match link.take_credit(index, size) {
                Credit::Backed => {}
                Credit::Unbacked => {
                    // Sent on the early credit, with no room reserved for
                    // it: the peer's share of the queue is taken.
                    shared.metrics.drop(name, DropReason::EarlyNoRoom);
                    return Step::Continue;
                }
                Credit::Exceeded if link.outbox.is_closed() => {
                    // We closed the connection and gave its credit back.
                    shared.metrics.drop(name, DropReason::PeerGone);
                    return Step::Continue;
                }
                Credit::Exceeded => {
                    shared.metrics.drop(name, DropReason::FlowControl);
                    return violation(shared, link, PeerError::FlowControlViolation(channel));
                }
            }
            if size > slot.descriptor.max_message_size {
                shared.metrics.drop(name, DropReason::TooLarge);
                link.consumed(index, size);
                shared.report(
                    link.peer,
                    PeerError::MessageTooLarge {
                        channel: name,
                        size,
                        max: slot.descriptor.max_message_size,
                    },
                );
                return Step::Continue;
            }
            if link.outbox.is_closed() {
                // We are disconnecting this peer (a ban, a violation, a
                // shutdown): what it still sends is not delivered.
                shared.metrics.drop(name, DropReason::PeerGone);
                link.consumed(index, size);
                return Step::Continue;
            }
            let metrics = &link.metrics[index];
            metrics.messages_received.inc();
            metrics.bytes_received.inc_by(size as u64);
            metrics.transport_bytes_received.inc_by(size as u64);
            let inbound = Inbound {
                link: link.clone(),
                payload,
            };
            if let Err(e) = slot.inbound.try_send(inbound) {
                let reason = match e {
                    tokio::sync::mpsc::error::TrySendError::Full(_) => DropReason::ReceiverFull,
                    tokio::sync::mpsc::error::TrySendError::Closed(_) => DropReason::ReceiverClosed,
                };
                shared.metrics.drop(name, reason);
                link.consumed(index, size);
            }
            Step::Continue
        }
        Frame::Credit { channel, messages } => {
            let Some(index) = table.index_of(channel.0).filter(|&i| link.serves(i)) else {
                return violation(
                    shared,
                    link,
                    PeerError::Protocol(format!(
                        "credit on channel {channel}, which we do not both serve"
                    )),
                );
            };
            if link.outbox.add_credit(index, messages).is_ok() {
                Step::Continue
            } else {
                violation(
                    shared,
                    link,
                    PeerError::Protocol(format!(
                        "credit of {messages} on channel {channel} takes our outstanding credit past the receive window you announced"
                    )),
                )
            }
        }
        // Taken by the read loop before it gets here; kept for
        // completeness.
        Frame::Goodbye(goodbye) => Step::End(format!(
            "remote said goodbye: {:?} {}",
            goodbye.reason(),
            goodbye.detail
        )),
        Frame::Hello(_) => violation(shared, link, PeerError::Protocol("second hello".into())),
        Frame::Ping(nonce) => {
            link.outbox.push_control(Frame::Pong(nonce));
            Step::Continue
        }
        // Any frame proves the peer alive; a pong needs nothing more.
        Frame::Pong(_) => Step::Continue,
    }
}

/// A fatal protocol violation: report it, say goodbye, end the reader.
fn violation(shared: &Shared, link: &Link, error: PeerError) -> Step {
    let detail = error.to_string();
    tracing::info!(peer = %link.peer.short(), %detail, "protocol violation; disconnecting");
    shared.report(link.peer, error);
    link.close_with(
        Some(Frame::goodbye(
            GoodbyeReason::ProtocolViolation,
            detail.clone(),
        )),
        &shared.metrics,
    );
    Step::End(detail)
}

/// A fresh token for a connection, cancelled when the router stops hard.
pub(crate) fn connection_token(hard_stop: &CancellationToken) -> CancellationToken {
    hard_stop.child_token()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    fn info(network_id: &str) -> proto::NodeInfo {
        proto::NodeInfo {
            protocol_version: crate::router::PROTOCOL_VERSION,
            network_id: network_id.into(),
            ..proto::NodeInfo::default()
        }
    }

    #[test]
    fn a_hello_with_a_network_id_over_the_one_limit_is_refused() {
        let peer = Keypair::from_seed(1).peer_id();
        let longest = "n".repeat(crate::MAX_NETWORK_ID_LEN);
        let mut theirs = info(&longest);
        theirs.peer_id = peer.as_bytes().to_vec().into();
        assert!(check_hello(peer, &info(&longest), &theirs).is_ok());
        let over = "n".repeat(crate::MAX_NETWORK_ID_LEN + 1);
        let mut theirs = info(&over);
        theirs.peer_id = peer.as_bytes().to_vec().into();
        let error = check_hello(peer, &info(&over), &theirs).expect_err("refused");
        assert_eq!(error.label, "oversized_hello");
    }
}
