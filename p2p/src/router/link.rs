//! One live connection as the rest of the router sees it: its outbox, the
//! credit we granted the remote per channel, and its metric handles.
//!
//! Credit we grant comes from the router's [`CreditLedger`]: the connection
//! starts with none, the ledger grants its initial credit when the
//! supervisor admits it, and a closed connection's consumed messages give
//! their slots back to the ledger instead of to the remote.
//!
//! The ledger reserves slots and bytes for the connection; the link turns
//! slots into credit only as far as the bytes cover them. A credit in the
//! remote's hands is counted at the channel's `max_message_size` (the most
//! it can send with it), a message in the receive queue at its size. So
//! on each channel `queued bytes + outstanding credit × max_message_size ≤
//! reserved bytes`, whatever the remote sends, and a slot the bytes cannot
//! cover stays pending until messages are consumed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::channel::{ChannelDescriptor, ChannelId};
use crate::identity::PeerId;
use crate::metrics::{DropReason, LinkChannelMetrics, Metrics};
use crate::peer_manager::Direction;
use crate::proto;
use crate::router::ledger::CreditLedger;
use crate::router::outbox::{Outbox, Pushed, QueueConfig};
use crate::router::shared::ChannelTable;
use crate::transport::Frame;

pub(crate) use crate::router::outbox::PushError;

/// What one received message spent of the credit we granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credit {
    /// Credit with room reserved behind it: the message goes into the
    /// receive queue.
    Backed,
    /// Early credit that no reservation covers yet: the message is dropped
    /// (`early_no_room`), as the protocol allows.
    Unbacked,
    /// No credit at all: the remote sent more than it was allowed.
    Exceeded,
}

/// Packs backed and unbacked credit into one word.
const fn pack(backed: u32, unbacked: u32) -> u64 {
    ((unbacked as u64) << 32) | backed as u64
}

/// Backed and unbacked credit from one word.
const fn unpack(word: u64) -> (u32, u32) {
    (word as u32, (word >> 32) as u32)
}

/// A received message on its way to a channel's receiver. Holding the link
/// lets the receiver return credit to the right connection.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub link: Arc<Link>,
    pub payload: Bytes,
}

/// Receive-side credit of one channel on one connection.
///
/// `backed + pending + (messages of this connection in the receive
/// queue) ≤ reserved`, and the ledger never lets reservations exceed the
/// queue's capacity. In bytes, `committed ≤ reserved_bytes`.
#[derive(Debug, Default)]
struct Granted {
    /// Credit in the remote's hands (including what it sent that has not
    /// arrived yet), as one word so that both halves move together:
    /// the low 32 bits are *backed* credit, messages the remote may still
    /// send for which room is reserved; the high 32 bits are *unbacked*
    /// credit, the early credit of protocol version 3 that no reservation
    /// covers yet. New room backs unbacked credit first, and only what is
    /// left over goes out in `Credit` frames.
    credit: AtomicU64,
    /// Messages the reactor consumed, or credit the ledger granted, that we
    /// have not yet returned (or cannot yet: the bytes do not cover it).
    pending: AtomicU32,
    /// Slots of the channel's receive queue the ledger gave this connection:
    /// what we let the remote have outstanding, at most the window. Credit
    /// is returned once half of what the bytes cover is pending.
    reserved: AtomicU32,
    /// Bytes the ledger gave this connection on the channel.
    reserved_bytes: AtomicU64,
    /// Bytes the remote can make us hold: its messages in the receive
    /// queue at their size, and the credit it holds at `max_message_size`.
    committed: AtomicU64,
}

/// A connection to one peer.
#[derive(Debug)]
pub(crate) struct Link {
    pub peer: PeerId,
    pub conn_id: u64,
    pub direction: Direction,
    pub remote_info: proto::NodeInfo,
    /// The remote IP the transport observed, if it knows one.
    pub remote_ip: Option<std::net::IpAddr>,
    /// The scheme of the transport that carries it (the `transport`
    /// label), once [`set_transport`](Self::set_transport) named it.
    pub transport: &'static str,
    pub outbox: Outbox,
    pub metrics: Vec<LinkChannelMetrics>,
    /// Cancelled when the connection must end now (no goodbye).
    pub close: CancellationToken,
    /// The router's metrics, for a write-through's frame lost on a failed
    /// write (the writer counts its own losses through its caller's).
    drops: Metrics,
    granted: Vec<Granted>,
    channels: Vec<(ChannelId, &'static str)>,
    /// Per channel, our `max_message_size`: what one credit can bring.
    max_sizes: Vec<u64>,
    /// Per channel, the largest message the remote accepts.
    remote_max: Vec<usize>,
    ledger: Arc<CreditLedger>,
}

impl Link {
    /// A connection that grants no credit yet: register it with the
    /// table's ledger to grant its initial credit.
    pub fn new(
        peer: PeerId,
        conn_id: u64,
        direction: Direction,
        remote_info: proto::NodeInfo,
        table: &ChannelTable,
        metrics: &Metrics,
        close: CancellationToken,
    ) -> Self {
        let descriptors = table.descriptors();
        let announced = |d: &ChannelDescriptor| {
            remote_info
                .channels
                .iter()
                .find(|c| c.id == u32::from(d.id.0))
        };
        let remote_max = descriptors
            .iter()
            .map(
                |d| match announced(d).map(|c| c.max_message_size as usize) {
                    Some(max) if max > 0 => max.min(d.max_message_size),
                    _ => d.max_message_size,
                },
            )
            .collect();
        let queues: Vec<QueueConfig> = descriptors
            .iter()
            .map(|d| QueueConfig {
                id: d.id,
                priority: d.priority,
                max_messages: d.send_queue,
                remote_window: announced(d).map(|c| c.recv_window.min(crate::router::MAX_WINDOW)),
                // Protocol 3: the early credit, on channels both serve; the
                // remote grants the rest in `Credit` frames once it has
                // admitted us.
                initial_credit: announced(d).map_or(0, |c| {
                    c.early_credit
                        .min(crate::router::EARLY_CREDIT)
                        .min(c.recv_window)
                }),
            })
            .collect();
        // The remote starts with the same early credit on each channel we
        // both serve: unbacked until the ledger reserves room for it.
        let granted = descriptors
            .iter()
            .zip(&table.early_credit)
            .map(|(d, &early)| Granted {
                credit: AtomicU64::new(pack(0, announced(d).map_or(0, |_| early))),
                ..Granted::default()
            })
            .collect();
        Self {
            peer,
            conn_id,
            direction,
            remote_info,
            remote_ip: None,
            transport: "",
            outbox: Outbox::new(&queues),
            metrics: descriptors
                .iter()
                .map(|d| metrics.link_channel(d.name, peer))
                .collect(),
            close,
            drops: metrics.clone(),
            granted,
            channels: descriptors.iter().map(|d| (d.id, d.name)).collect(),
            max_sizes: descriptors
                .iter()
                .map(|d| d.max_message_size.max(1) as u64)
                .collect(),
            remote_max,
            ledger: table.ledger.clone(),
        }
    }

    /// Names the transport that carries this connection (its scheme, the
    /// `transport` label): its bytes count toward that transport's
    /// `transport_bytes_*_total` from now on. Called before the link is
    /// shared.
    pub fn set_transport(&mut self, transport: &'static str, metrics: &Metrics) {
        self.transport = transport;
        for m in &mut self.metrics {
            metrics.attach_transport(m, transport);
        }
    }

    /// Number of channels (ours, whether or not the remote serves them).
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Whether the remote serves channel `index`.
    pub fn serves(&self, index: usize) -> bool {
        self.outbox.serves(index)
    }

    /// The channels both sides serve.
    pub fn common_channels(&self) -> Vec<ChannelId> {
        (0..self.channels.len())
            .filter(|&i| self.serves(i))
            .map(|i| self.channels[i].0)
            .collect()
    }

    fn check_size(&self, index: usize, payload: &Bytes) -> Result<(), PushError> {
        match self.remote_max.get(index) {
            Some(&max) if payload.len() > max => Err(PushError::TooLarge { max }),
            _ => Ok(()),
        }
    }

    pub fn try_push(&self, index: usize, payload: Bytes) -> Result<(), PushError> {
        self.check_size(index, &payload)?;
        let size = payload.len() as u64;
        // Count before the push, so the writer's decrement can never run
        // first and show a negative depth.
        self.metrics[index].queue_depth.inc();
        match self.outbox.try_push(index, payload) {
            // Queued for the writer, which counts it: the common case.
            Ok(Pushed::Queued) => Ok(()),
            Ok(pushed) => {
                self.pushed(index, size, pushed);
                Ok(())
            }
            Err((e, _)) => {
                self.metrics[index].queue_depth.dec();
                Err(e)
            }
        }
    }

    pub async fn push(&self, index: usize, payload: Bytes) -> Result<(), PushError> {
        self.check_size(index, &payload)?;
        let size = payload.len() as u64;
        self.metrics[index].queue_depth.inc();
        match self.outbox.push(index, payload).await {
            // Queued for the writer, which counts it: the common case.
            Ok(Pushed::Queued) => Ok(()),
            Ok(pushed) => {
                self.pushed(index, size, pushed);
                Ok(())
            }
            Err(e) => {
                self.metrics[index].queue_depth.dec();
                Err(e)
            }
        }
    }

    /// Accounts for a message of `size` bytes the outbox took: a queued or
    /// handed-over one is the writer's to count; a written-through one is
    /// sent (and counted as such); a failed write-through is dropped with
    /// the connection, which ends now, as when the writer's write fails.
    fn pushed(&self, index: usize, size: u64, pushed: Pushed) {
        let m = &self.metrics[index];
        match pushed {
            Pushed::Queued => {}
            Pushed::HandedOver => {
                m.written_through.inc();
            }
            Pushed::Written => {
                m.written_through.inc();
                count_sent(m, 1, size);
            }
            Pushed::Failed(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "write-through failed");
                m.queue_depth.dec();
                self.drops
                    .drop(self.channels[index].1, DropReason::PeerGone);
                self.close.cancel();
            }
        }
    }

    /// What a message of `size` bytes counts for on channel `index`: its
    /// size, but no more than a credit was charged (a larger one is
    /// dropped at once).
    fn counted(&self, index: usize, size: usize) -> u64 {
        (size as u64).min(self.max_sizes[index])
    }

    /// Takes one unit of the credit we granted on channel `index` for a
    /// message of `size` bytes. A backed credit was charged at
    /// `max_message_size`; from now on the message counts at its size.
    ///
    /// Backed credit is spent first: the remote cannot tell its credits
    /// apart, and what it may send in all is the same either way.
    pub fn take_credit(&self, index: usize, size: usize) -> Credit {
        let granted = &self.granted[index];
        let spent = granted
            .credit
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                match unpack(word) {
                    (0, 0) => None,
                    (0, unbacked) => Some(pack(0, unbacked - 1)),
                    (backed, unbacked) => Some(pack(backed - 1, unbacked)),
                }
            });
        match spent.map(unpack) {
            Err(_) => Credit::Exceeded,
            Ok((0, _)) => Credit::Unbacked,
            Ok(_) => {
                let refund = self.max_sizes[index] - self.counted(index, size);
                sub(&granted.committed, refund);
                Credit::Backed
            }
        }
    }

    /// Backed and unbacked credit the remote holds on channel `index`.
    #[cfg(test)]
    fn credit(&self, index: usize) -> (u32, u32) {
        unpack(self.granted[index].credit.load(Ordering::Acquire))
    }

    /// The reactor consumed (or we discarded) one message of `size` bytes
    /// of channel `index`. On an open connection, its credit goes back to
    /// the remote, in batches of half what the connection can have
    /// outstanding. On a closed one its slot and bytes go back to the
    /// ledger: to the peer's next connection if that one is owed credit, or
    /// to another peer.
    pub fn consumed(&self, index: usize, size: usize) {
        let bytes = self.counted(index, size);
        if self.outbox.is_closed() {
            self.ledger.release(self.conn_id, index, bytes);
            return;
        }
        let granted = &self.granted[index];
        sub(&granted.committed, bytes);
        let pending = granted.pending.fetch_add(1, Ordering::AcqRel) + 1;
        if pending >= self.threshold(index) {
            self.return_credit(index);
        }
    }

    /// Pending credit worth sending: half of what the connection may have
    /// outstanding, the smaller of its slots and of the largest messages
    /// its bytes cover. With nothing of this connection in the queue and
    /// nothing in flight, all its slots are pending and its bytes are free,
    /// so credit never stalls below this threshold.
    fn threshold(&self, index: usize) -> u32 {
        let granted = &self.granted[index];
        let slots = granted.reserved.load(Ordering::Acquire);
        let covered = granted.reserved_bytes.load(Ordering::Acquire) / self.max_sizes[index];
        (u64::from(slots).min(covered) / 2).max(1) as u32
    }

    /// The ledger reserved `messages` more slots and `bytes` more bytes for
    /// this connection on channel `index`: the remote may have that many
    /// more outstanding. The credit goes out at once, with whatever else is
    /// pending, so the remote gets its whole window even while our reactor
    /// reads nothing. (The ledger grants a connection at most a window over
    /// its life, so this costs at most that many frames, and they coalesce
    /// in the outbox.)
    pub fn grant(&self, index: usize, messages: u32, bytes: u64) {
        let Some(granted) = self.granted.get(index) else {
            return;
        };
        granted.reserved.fetch_add(messages, Ordering::AcqRel);
        granted.reserved_bytes.fetch_add(bytes, Ordering::AcqRel);
        granted.pending.fetch_add(messages, Ordering::AcqRel);
        self.return_credit(index);
    }

    /// Sends the pending credit of channel `index`, as much of it as the
    /// reserved bytes cover at `max_message_size` each. Several threads may
    /// return credit at once (the reader, reactors, the ledger): each takes
    /// pending credit first, then charges its bytes, and puts back what the
    /// bytes no longer cover, so no credit is sent twice or uncovered.
    fn return_credit(&self, index: usize) {
        let granted = &self.granted[index];
        let max = self.max_sizes[index];
        loop {
            let committed = granted.committed.load(Ordering::Acquire);
            let reserved = granted.reserved_bytes.load(Ordering::Acquire);
            let covered =
                (reserved.saturating_sub(committed) / max).min(u64::from(u32::MAX)) as u32;
            if covered == 0 {
                return;
            }
            let Ok(before) =
                granted
                    .pending
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |pending| {
                        (pending > 0).then(|| pending - pending.min(covered))
                    })
            else {
                return;
            };
            let messages = before.min(covered);
            let charge = u64::from(messages) * max;
            let charged =
                granted
                    .committed
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                        let total = c.checked_add(charge)?;
                        (total <= granted.reserved_bytes.load(Ordering::Acquire)).then_some(total)
                    });
            if charged.is_err() {
                // Another thread handed out credit meanwhile: look again.
                granted.pending.fetch_add(messages, Ordering::AcqRel);
                continue;
            }
            // Grant before telling the remote, so its next message finds the
            // credit in place. Room backs the remote's unbacked early credit
            // first: it holds that credit already, so only the rest is news.
            let before = granted
                .credit
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                    let (backed, unbacked) = unpack(word);
                    let absorbed = unbacked.min(messages);
                    Some(pack(backed.saturating_add(messages), unbacked - absorbed))
                })
                .unwrap_or_else(|word| word);
            let absorbed = unpack(before).1.min(messages);
            if messages > absorbed {
                self.outbox.push_control(Frame::Credit {
                    channel: self.channels[index].0,
                    messages: messages - absorbed,
                });
            }
            return;
        }
    }

    /// Closes the outbox after `goodbye`; counts every queued message as
    /// dropped (`peer_gone`). The connection takes no more credit from the
    /// ledger.
    pub fn close_with(&self, goodbye: Option<Frame>, metrics: &Metrics) {
        for (index, n) in self.outbox.close(goodbye) {
            self.metrics[index].queue_depth.dec_by(n as i64);
            metrics.drop_many(self.channels[index].1, DropReason::PeerGone, n as u64);
        }
        self.ledger.retire(self.conn_id);
        self.release_unspent();
    }

    /// The connection is closed: nothing it receives from now on is
    /// delivered, so the credit the remote still holds (and what we had
    /// not returned yet) will never fill the queue. Its slots and bytes go
    /// back to the ledger at once — to the peer's next connection first —
    /// instead of when this link is dropped after its last queued message.
    /// What stays reserved are the messages it left in the queue. A frame
    /// that arrives after this finds no credit; the reader sees the link
    /// closed and drops it as `peer_gone`, not as a violation.
    fn release_unspent(&self) {
        for (index, granted) in self.granted.iter().enumerate() {
            let (backed, _unbacked) = unpack(granted.credit.swap(0, Ordering::AcqRel));
            let pending = granted.pending.swap(0, Ordering::AcqRel);
            let slots = backed.saturating_add(pending);
            sub(
                &granted.committed,
                u64::from(backed) * self.max_sizes[index],
            );
            // What the queued messages do not take of the reserved bytes.
            let committed = granted.committed.load(Ordering::Acquire);
            let bytes = granted
                .reserved_bytes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |reserved| {
                    Some(reserved.min(committed))
                })
                .map_or(0, |reserved| reserved.saturating_sub(committed));
            let _ = granted
                .reserved
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
                    Some(r.saturating_sub(slots))
                });
            if slots > 0 || bytes > 0 {
                self.ledger.release_many(self.conn_id, index, slots, bytes);
            }
        }
    }

    /// Counts what a writer took for a batch that never left as dropped
    /// (`peer_gone`).
    pub fn record_unsent(&self, taken: &mut [(u64, u64)], metrics: &Metrics) {
        for (index, (messages, bytes)) in taken.iter_mut().enumerate() {
            if *messages > 0 {
                self.metrics[index].queue_depth.dec_by(*messages as i64);
                metrics.drop_many(self.channels[index].1, DropReason::PeerGone, *messages);
                *messages = 0;
                *bytes = 0;
            }
        }
    }

    /// Records what a writer batch sent.
    pub fn record_sent(&self, sent: &mut [(u64, u64)]) {
        for (index, (messages, bytes)) in sent.iter_mut().enumerate() {
            if *messages > 0 {
                count_sent(&self.metrics[index], *messages, *bytes);
                *messages = 0;
                *bytes = 0;
            }
        }
    }
}

/// Counts `messages` of `bytes` handed to the transport, by the writer or
/// written through: the one place every sent message is counted.
fn count_sent(m: &LinkChannelMetrics, messages: u64, bytes: u64) {
    m.messages_sent.inc_by(messages);
    m.bytes_sent.inc_by(bytes);
    m.transport_bytes_sent.inc_by(bytes);
    m.queue_depth.dec_by(messages as i64);
}

/// Subtracts `n` from `counter`, never below zero.
fn sub(counter: &AtomicU64, n: u64) {
    if n > 0 {
        let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
            Some(c.saturating_sub(n))
        });
    }
}

impl Drop for Link {
    /// The last `Inbound` of this connection is gone, and so is every other
    /// holder: whatever it still reserved in the receive queues is free.
    fn drop(&mut self) {
        self.ledger.unregister(self.conn_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::ChannelDescriptor;
    use crate::identity::Keypair;
    use crate::router::shared::ChannelSlot;
    use proptest::prelude::*;

    const WINDOW: usize = 64;
    const MAX: usize = 1000;
    /// Bytes for ten of the largest messages.
    const BUDGET: u64 = 10 * MAX as u64;

    /// A connection on one channel of `WINDOW` messages of at most `MAX`
    /// bytes, with a per-peer budget of `BUDGET`, admitted.
    fn admitted() -> Arc<Link> {
        admitted_with(BUDGET, WINDOW * 4)
    }

    /// The same with a per-peer budget of `budget` bytes and a receive
    /// queue of `capacity` messages.
    fn admitted_with(budget: u64, capacity: usize) -> Arc<Link> {
        let descriptor = ChannelDescriptor {
            recv_buffer: WINDOW,
            max_message_size: MAX,
            ..ChannelDescriptor::new(0x10, "test")
        };
        let (inbound, _) = tokio::sync::mpsc::channel(capacity);
        let table = ChannelTable::new(
            vec![ChannelSlot {
                descriptor,
                inbound,
                capacity,
            }],
            budget,
        );
        let info = proto::NodeInfo {
            channels: vec![proto::ChannelInfo {
                id: 0x10,
                recv_window: 64,
                max_message_size: 0,
                early_credit: crate::router::EARLY_CREDIT,
            }],
            ..Default::default()
        };
        let link = Arc::new(Link::new(
            Keypair::from_seed(1).peer_id(),
            1,
            Direction::Inbound,
            info,
            &table,
            &Metrics::default(),
            CancellationToken::new(),
        ));
        table.ledger.register(&link);
        link
    }

    /// The early credit the remote starts with (protocol version 3).
    const EARLY: u64 = crate::router::EARLY_CREDIT as u64;

    /// Credit the link sent since the last call.
    fn credit_sent(link: &Link) -> u64 {
        let (mut frames, mut sent) = (Vec::new(), vec![(0, 0)]);
        let _ = link
            .outbox
            .next_batch(&mut frames, &mut sent, 1024, usize::MAX);
        frames
            .iter()
            .map(|f| match f {
                Frame::Credit { messages, .. } => u64::from(*messages),
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn credit_covers_the_largest_messages_within_the_byte_window() {
        let link = admitted();
        // 64 slots, but bytes for 10 messages of MAX: 10 credits, of which
        // the remote holds the early ones from the start.
        assert_eq!(EARLY + credit_sent(&link), 10);
        assert_eq!(link.credit(0), (10, 0), "the early credit is backed");
        // The remote spends them on the largest messages; nothing more
        // comes while they wait in the queue.
        for _ in 0..10 {
            assert_eq!(link.take_credit(0, MAX), Credit::Backed);
        }
        assert_eq!(link.take_credit(0, 1), Credit::Exceeded, "no credit left");
        assert_eq!(credit_sent(&link), 0);
        // The reactor takes five: their credit goes back.
        for _ in 0..5 {
            link.consumed(0, MAX);
        }
        assert_eq!(credit_sent(&link), 5);
    }

    /// A closed connection gives the credit its remote still holds back to
    /// the ledger at once, so the peer's next connection (a reconnection,
    /// or the winner of a simultaneous dial) gets its window — and backs
    /// its early credit — while the old link still lives (its reader task,
    /// or a message it left in the queue, holds it). What the old one left
    /// queued stays reserved until taken. A frame that reaches the closed
    /// link afterwards finds no credit.
    #[test]
    fn a_closed_connection_gives_its_unspent_credit_to_the_next() {
        let descriptor = ChannelDescriptor {
            recv_buffer: WINDOW,
            max_message_size: MAX,
            ..ChannelDescriptor::new(0x10, "test")
        };
        let (inbound, _) = tokio::sync::mpsc::channel(WINDOW * 4);
        let table = ChannelTable::new(
            vec![ChannelSlot {
                descriptor,
                inbound,
                capacity: WINDOW * 4,
            }],
            BUDGET,
        );
        let info = proto::NodeInfo {
            channels: vec![proto::ChannelInfo {
                id: 0x10,
                recv_window: 64,
                max_message_size: 0,
                early_credit: crate::router::EARLY_CREDIT,
            }],
            ..Default::default()
        };
        let peer = Keypair::from_seed(1).peer_id();
        let link = |conn_id| {
            let link = Arc::new(Link::new(
                peer,
                conn_id,
                Direction::Inbound,
                info.clone(),
                &table,
                &Metrics::default(),
                CancellationToken::new(),
            ));
            table.ledger.register(&link);
            link
        };
        let old = link(1);
        assert_eq!(old.credit(0), (10, 0));
        // Three messages arrive and stay queued; then we close it.
        for _ in 0..3 {
            assert_eq!(old.take_credit(0, MAX), Credit::Backed);
        }
        old.close_with(None, &Metrics::default());
        assert_eq!(old.credit(0), (0, 0));
        assert_eq!(old.take_credit(0, 1), Credit::Exceeded);
        // The new connection gets what the three queued ones leave: 7.
        let new = link(2);
        assert_eq!(new.credit(0), (7, 0), "early credit backed at once");
        assert_eq!(EARLY + credit_sent(&new), 7);
        // The old connection's queued messages are taken: their room goes
        // to the new one.
        for _ in 0..3 {
            old.consumed(0, MAX);
        }
        assert_eq!(credit_sent(&new), 3);
    }

    /// The early credit is capped by what the byte budget covers, so an
    /// empty ledger always backs it.
    #[test]
    fn the_early_credit_is_what_the_bytes_cover() {
        let link = admitted_with(2 * MAX as u64, WINDOW * 4);
        assert_eq!(link.credit(0), (2, 0));
        assert_eq!(credit_sent(&link), 0, "the remote holds all it may");
    }

    /// With room in the queue for fewer messages than the early credit
    /// (the queue is full of other peers' messages), the early messages
    /// beyond the room are dropped, not a violation; room that frees up
    /// backs the remote's early credit before any `Credit` frame goes
    /// out; and the remote can never send more than its early credit plus
    /// the credit it was sent.
    #[test]
    fn early_credit_beyond_the_room_is_unbacked_until_room_frees_up() {
        // A queue of two messages: two of the four early credits are
        // backed.
        let link = admitted_with(BUDGET, 2);
        assert_eq!(link.credit(0), (2, EARLY as u32 - 2));
        assert_eq!(credit_sent(&link), 0, "the remote holds all it may");
        assert_eq!(link.take_credit(0, MAX), Credit::Backed);
        assert_eq!(link.take_credit(0, MAX), Credit::Backed);
        // The reactor takes both: their room backs the two early credits
        // the remote still holds, so no credit is sent.
        link.consumed(0, MAX);
        link.consumed(0, MAX);
        assert_eq!(credit_sent(&link), 0);
        assert_eq!(link.credit(0), (2, 0));
        assert_eq!(link.take_credit(0, MAX), Credit::Backed);
        assert_eq!(link.take_credit(0, MAX), Credit::Backed);
        assert_eq!(link.take_credit(0, 1), Credit::Exceeded);

        // The same, but the remote sends all four at once: two go into the
        // queue, two are dropped.
        let link = admitted_with(BUDGET, 2);
        let spent: Vec<Credit> = (0..EARLY).map(|_| link.take_credit(0, MAX)).collect();
        assert_eq!(
            spent,
            [
                Credit::Backed,
                Credit::Backed,
                Credit::Unbacked,
                Credit::Unbacked
            ]
        );
        assert_eq!(link.take_credit(0, 1), Credit::Exceeded);
        link.consumed(0, MAX);
        link.consumed(0, MAX);
        assert_eq!(credit_sent(&link), 2, "the room comes back as credit");
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// The remote sends a message of this many bytes, if it has credit.
        Send(usize),
        /// The reactor takes the oldest queued message.
        Take,
    }

    proptest! {
        /// Whatever the remote sends and whenever the reactor reads, with
        /// room for more or fewer messages than the early credit: what it
        /// can make us hold (queued messages at their size, backed credit
        /// in its hands at `MAX`) stays within the byte window; it holds
        /// exactly the credit we count (backed and unbacked), never more
        /// than the window; a message on its credit is never a violation;
        /// and once the reactor has taken everything it holds the credit
        /// for the messages the bytes and the queue cover again (less than
        /// one batch of returns may be pending), all of it backed when that
        /// is at least the early credit.
        #[test]
        fn the_remote_never_holds_more_than_the_byte_window(
            room in 1u64..12,
            capacity in 1usize..8,
            steps in proptest::collection::vec(
                prop_oneof![(0usize..=MAX).prop_map(Step::Send), Just(Step::Take)],
                1..300,
            )
        ) {
            let budget = room * MAX as u64;
            let link = admitted_with(budget, capacity);
            // The early credit we announce: capped by what the bytes cover.
            let mut credit = EARLY.min(room) + credit_sent(&link);
            let mut queued = std::collections::VecDeque::new();
            for step in steps {
                match step {
                    Step::Send(size) if credit > 0 => {
                        credit -= 1;
                        match link.take_credit(0, size) {
                            Credit::Backed => queued.push_back(size),
                            Credit::Unbacked => {}
                            Credit::Exceeded => prop_assert!(false, "a message on its credit refused"),
                        }
                    }
                    Step::Send(size) => prop_assert_eq!(link.take_credit(0, size), Credit::Exceeded),
                    Step::Take => {
                        if let Some(size) = queued.pop_front() {
                            link.consumed(0, size);
                        }
                    }
                }
                credit += credit_sent(&link);
                let (backed, unbacked) = link.credit(0);
                prop_assert_eq!(credit, u64::from(backed) + u64::from(unbacked));
                let held = queued.iter().sum::<usize>() as u64 + u64::from(backed) * MAX as u64;
                prop_assert!(held <= budget, "the remote can make us hold {held} bytes");
                prop_assert!(queued.len() as u64 + credit <= WINDOW as u64);
            }
            while let Some(size) = queued.pop_front() {
                link.consumed(0, size);
            }
            credit += credit_sent(&link);
            let (backed, unbacked) = link.credit(0);
            // Credit goes back in batches of half what the connection may
            // have outstanding: less than one batch may still be pending.
            let slots = room.min(capacity as u64);
            prop_assert!(u64::from(backed) <= slots);
            prop_assert!(slots - u64::from(backed) < (slots / 2).max(1), "{backed} of {slots}");
            prop_assert_eq!(credit, u64::from(backed) + u64::from(unbacked));
            if slots >= EARLY.min(room) {
                prop_assert_eq!(unbacked, 0);
            }
        }
    }
}
