//! One live connection as the rest of the router sees it: its outbox, the
//! credit we granted the remote per channel, and its metric handles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::channel::{ChannelDescriptor, ChannelId};
use crate::identity::PeerId;
use crate::metrics::{DropReason, LinkChannelMetrics, Metrics};
use crate::peer_manager::Direction;
use crate::proto;
use crate::router::outbox::{Outbox, QueueConfig};
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
#[derive(Debug)]
struct Granted {
    /// Messages the remote may still send before we return credit.
    remaining: AtomicU32,
    /// Messages the reactor consumed that we have not yet returned.
    pending: AtomicU32,
    /// Return credit once this many messages were consumed.
    threshold: u32,
}

/// A connection to one peer.
#[derive(Debug)]
pub(crate) struct Link {
    pub peer: PeerId,
    pub conn_id: u64,
    pub direction: Direction,
    pub remote_info: proto::NodeInfo,
    pub outbox: Outbox,
    pub metrics: Vec<LinkChannelMetrics>,
    /// Cancelled when the connection must end now (no goodbye).
    pub close: CancellationToken,
    granted: Vec<Granted>,
    channels: Vec<(ChannelId, &'static str)>,
    /// Per channel, the largest message the remote accepts.
    remote_max: Vec<usize>,
}

impl Link {
    pub fn new(
        peer: PeerId,
        conn_id: u64,
        direction: Direction,
        remote_info: proto::NodeInfo,
        descriptors: &[ChannelDescriptor],
        metrics: &Metrics,
        close: CancellationToken,
    ) -> Self {
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
            })
            .collect();
        let granted = descriptors
            .iter()
            .map(|d| {
                let window = d.recv_buffer as u32;
                Granted {
                    remaining: AtomicU32::new(window),
                    pending: AtomicU32::new(0),
                    threshold: (window / 2).max(1),
                }
            })
            .collect();
        Self {
            peer,
            conn_id,
            direction,
            remote_info,
            outbox: Outbox::new(&queues),
            metrics: descriptors
                .iter()
                .map(|d| metrics.link_channel(d.name, peer))
                .collect(),
            close,
            granted,
            channels: descriptors.iter().map(|d| (d.id, d.name)).collect(),
            remote_max,
        }
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
    /// `index`: return credit to the remote in batches of half a window.
    pub fn consumed(&self, index: usize) {
        let granted = &self.granted[index];
        let pending = granted.pending.fetch_add(1, Ordering::AcqRel) + 1;
        if pending >= granted.threshold {
            let messages = granted.pending.swap(0, Ordering::AcqRel);
            if messages > 0 {
                // Grant before telling the remote, so its next message finds
                // the credit in place.
                granted.remaining.fetch_add(messages, Ordering::AcqRel);
                self.outbox.push_control(Frame::Credit {
                    channel: self.channels[index].0,
                    messages,
                });
            }
        }
    }

    /// Closes the outbox after `goodbye`; counts every queued message as
    /// dropped (`peer_gone`).
    pub fn close_with(&self, goodbye: Option<Frame>, metrics: &Metrics) {
        for (index, n) in self.outbox.close(goodbye) {
            self.metrics[index].queue_depth.dec_by(n as i64);
            metrics.drop_many(self.channels[index].1, DropReason::PeerGone, n as u64);
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
