//! One live connection as the rest of the router sees it: its outbox, the
//! credit we granted the remote per channel, and its metric handles.
//!
//! Credit we grant comes from the router's [`CreditLedger`]: the connection
//! starts with none, the ledger grants its initial credit when the
//! supervisor admits it, and a closed connection's consumed messages give
//! their slots back to the ledger instead of to the remote.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::channel::{ChannelDescriptor, ChannelId};
use crate::identity::PeerId;
use crate::metrics::{DropReason, LinkChannelMetrics, Metrics};
use crate::peer_manager::Direction;
use crate::proto;
use crate::router::ledger::CreditLedger;
use crate::router::outbox::{Outbox, QueueConfig};
use crate::router::shared::ChannelTable;
use crate::transport::Frame;

pub(crate) use crate::router::outbox::PushError;

/// A received message on its way to a channel's receiver. Holding the link
/// lets the receiver return credit to the right connection.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub link: Arc<Link>,
    pub payload: Bytes,
}

/// Receive-side credit of one channel on one connection.
///
/// `remaining + pending + (messages of this connection in the receive
/// queue) ≤ reserved`, and the ledger never lets reservations exceed the
/// queue's capacity.
#[derive(Debug, Default)]
struct Granted {
    /// Messages the remote may still send before we return credit
    /// (including what it sent that has not arrived yet).
    remaining: AtomicU32,
    /// Messages the reactor consumed, or credit the ledger granted, that we
    /// have not yet returned.
    pending: AtomicU32,
    /// Slots of the channel's receive queue the ledger gave this connection:
    /// what we let the remote have outstanding, at most the window. Credit
    /// is returned once half of it is pending.
    reserved: AtomicU32,
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
    pub outbox: Outbox,
    pub metrics: Vec<LinkChannelMetrics>,
    /// Cancelled when the connection must end now (no goodbye).
    pub close: CancellationToken,
    granted: Vec<Granted>,
    channels: Vec<(ChannelId, &'static str)>,
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
                // Protocol 2: the remote grants every credit in `Credit`
                // frames, the first ones once it admitted us.
                initial_credit: 0,
            })
            .collect();
        let granted = descriptors.iter().map(|_| Granted::default()).collect();
        Self {
            peer,
            conn_id,
            direction,
            remote_info,
            remote_ip: None,
            outbox: Outbox::new(&queues),
            metrics: descriptors
                .iter()
                .map(|d| metrics.link_channel(d.name, peer))
                .collect(),
            close,
            granted,
            channels: descriptors.iter().map(|d| (d.id, d.name)).collect(),
            remote_max,
            ledger: table.ledger.clone(),
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
        // Count before the push, so the writer's decrement can never run
        // first and show a negative depth.
        self.metrics[index].queue_depth.inc();
        self.outbox.try_push(index, payload).map_err(|(e, _)| {
            self.metrics[index].queue_depth.dec();
            e
        })
    }

    pub async fn push(&self, index: usize, payload: Bytes) -> Result<(), PushError> {
        self.check_size(index, &payload)?;
        self.metrics[index].queue_depth.inc();
        self.outbox.push(index, payload).await.inspect_err(|_| {
            self.metrics[index].queue_depth.dec();
        })
    }

    /// Takes one unit of the credit we granted on channel `index`; `false`
    /// means the remote sent more than we allowed.
    pub fn take_credit(&self, index: usize) -> bool {
        // Only the connection's reader decrements, so load-then-subtract
        // cannot go below zero.
        let remaining = &self.granted[index].remaining;
        if remaining.load(Ordering::Acquire) == 0 {
            return false;
        }
        remaining.fetch_sub(1, Ordering::AcqRel);
        true
    }

    /// The reactor consumed (or we discarded) one message of channel
    /// `index`. On an open connection, its credit goes back to the remote,
    /// in batches of half what the connection reserved. On a closed one its
    /// slot goes back to the ledger: to the peer's next connection if that
    /// one is owed credit, or to another peer.
    pub fn consumed(&self, index: usize) {
        if self.outbox.is_closed() {
            self.ledger.release(self.conn_id, index);
            return;
        }
        let granted = &self.granted[index];
        let pending = granted.pending.fetch_add(1, Ordering::AcqRel) + 1;
        // With nothing of this connection in the queue and nothing in
        // flight, everything it reserved is pending, so credit never stalls
        // below this threshold.
        let threshold = (granted.reserved.load(Ordering::Acquire) / 2).max(1);
        if pending >= threshold {
            self.return_credit(index);
        }
    }

    /// The ledger reserved `messages` more slots for this connection on
    /// channel `index`: the remote may have that many more outstanding. The
    /// credit goes out at once, with whatever else is pending, so the remote
    /// gets its whole window even while our reactor reads nothing. (The
    /// ledger grants a connection at most a window over its life, so this
    /// costs at most that many frames, and they coalesce in the outbox.)
    pub fn grant(&self, index: usize, messages: u32) {
        let Some(granted) = self.granted.get(index) else {
            return;
        };
        granted.reserved.fetch_add(messages, Ordering::AcqRel);
        granted.pending.fetch_add(messages, Ordering::AcqRel);
        self.return_credit(index);
    }

    /// Sends the pending credit of channel `index`.
    fn return_credit(&self, index: usize) {
        let granted = &self.granted[index];
        let messages = granted.pending.swap(0, Ordering::AcqRel);
        if messages > 0 {
            // Grant before telling the remote, so its next message finds the
            // credit in place.
            granted.remaining.fetch_add(messages, Ordering::AcqRel);
            self.outbox.push_control(Frame::Credit {
                channel: self.channels[index].0,
                messages,
            });
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
                let m = &self.metrics[index];
                m.messages_sent.inc_by(*messages);
                m.bytes_sent.inc_by(*bytes);
                m.queue_depth.dec_by(*messages as i64);
                *messages = 0;
                *bytes = 0;
            }
        }
    }
}

impl Drop for Link {
    /// The last `Inbound` of this connection is gone, and so is every other
    /// holder: whatever it still reserved in the receive queues is free.
    fn drop(&mut self) {
        self.ledger.unregister(self.conn_id);
    }
}
