//! The handles of a typed channel: [`ChannelSender`] and
//! [`ChannelReceiver`], which reach into the router's links. The channel's
//! vocabulary (ids, descriptors, errors) and its delivery promises are in
//! [`crate::channel`], which knows nothing of the router.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use tokio::sync::mpsc;

use crate::channel::{BroadcastReport, ChannelDescriptor, Envelope, SendError, TrySendError};
use crate::identity::PeerId;
use crate::metrics::DropReason;
use crate::peer_manager::PeerError;
use crate::router::link::{Inbound, PushError};
use crate::router::shared::Shared;

/// Messages up to this size are encoded into a per-thread arena chunk.
const ARENA_MAX_MESSAGE: usize = 1024;
/// Size of one arena chunk.
const ARENA_CHUNK: usize = 16 * 1024;

thread_local! {
    static ENCODE_ARENA: std::cell::RefCell<bytes::BytesMut> =
        std::cell::RefCell::new(bytes::BytesMut::new());
}

/// Encodes `message` (of `size` bytes) into a `Bytes`.
///
/// Small messages share 16 KiB chunks allocated per thread: one allocation
/// (and one cross-thread free when the receiver drops it) per chunk instead
/// of per message, which halves the allocator traffic on the hot path. The
/// cost: a small message that a receiver keeps (e.g. a `bytes::Bytes` field
/// decoded without copying) keeps its chunk, at most 16 KiB, alive.
fn encode_small<M: Message>(message: &M, size: usize) -> Bytes {
    if size > ARENA_MAX_MESSAGE {
        return Bytes::from(message.encode_to_vec());
    }
    ENCODE_ARENA.with(|arena| {
        let mut arena = arena.borrow_mut();
        if arena.capacity() < size {
            *arena = bytes::BytesMut::with_capacity(ARENA_CHUNK);
        }
        match message.encode(&mut *arena) {
            Ok(()) => arena.split().freeze(),
            // Unreachable: the arena has room. Fall back rather than panic.
            Err(_) => {
                arena.clear();
                Bytes::from(message.encode_to_vec())
            }
        }
    })
}

/// The sending half of a typed channel. Cheap to clone.
pub struct ChannelSender<M> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) index: usize,
    pub(crate) descriptor: ChannelDescriptor,
    pub(crate) _message: PhantomData<fn(M)>,
}

impl<M> Clone for ChannelSender<M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            index: self.index,
            descriptor: self.descriptor.clone(),
            _message: PhantomData,
        }
    }
}

impl<M> fmt::Debug for ChannelSender<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelSender({})", self.descriptor.name)
    }
}

impl<M: Message> ChannelSender<M> {
    /// The channel's descriptor.
    pub fn descriptor(&self) -> &ChannelDescriptor {
        &self.descriptor
    }

    fn encode(&self, message: &M) -> Result<Bytes, SendError> {
        let size = message.encoded_len();
        if size > self.descriptor.max_message_size {
            self.shared
                .metrics
                .drop(self.descriptor.name, DropReason::TooLarge);
            return Err(SendError::TooLarge {
                channel: self.descriptor.name,
                size,
                max: self.descriptor.max_message_size,
            });
        }
        Ok(encode_small(message, size))
    }

    fn drop_for(&self, reason: DropReason) {
        self.shared.metrics.drop(self.descriptor.name, reason);
    }

    fn map_push_error(&self, peer: PeerId, size: usize, error: PushError) -> TrySendError {
        match error {
            PushError::TooLarge { max } => {
                self.drop_for(DropReason::TooLarge);
                SendError::TooLarge {
                    channel: self.descriptor.name,
                    size,
                    max,
                }
                .into()
            }
            PushError::Full => {
                self.drop_for(DropReason::QueueFull);
                TrySendError::Full {
                    peer,
                    channel: self.descriptor.name,
                }
            }
            PushError::Closed => {
                self.drop_for(DropReason::NotConnected);
                SendError::NotConnected(peer).into()
            }
            PushError::Unsupported => {
                self.drop_for(DropReason::Unsupported);
                SendError::Unsupported {
                    peer,
                    channel: self.descriptor.name,
                }
                .into()
            }
        }
    }

    /// Queues `message` for `peer`, waiting while the peer's queue for this
    /// channel is full (backpressure). Cancel-safe: if the future is dropped
    /// before it completes, the message was not queued.
    pub async fn send(&self, peer: PeerId, message: M) -> Result<(), SendError> {
        let payload = self.encode(&message)?;
        let Some(link) = self.shared.link(peer) else {
            self.drop_for(DropReason::NotConnected);
            return Err(if self.shared.is_shut_down() {
                SendError::Closed
            } else {
                SendError::NotConnected(peer)
            });
        };
        let size = payload.len();
        link.push(self.index, payload)
            .await
            .map_err(|e| match self.map_push_error(peer, size, e) {
                TrySendError::Send(e) => e,
                // `push` waits instead of reporting Full.
                TrySendError::Full { .. } => SendError::NotConnected(peer),
            })
    }

    /// Queues `message` for `peer` if there is room now; never waits.
    pub fn try_send(&self, peer: PeerId, message: M) -> Result<(), TrySendError> {
        let payload = self.encode(&message)?;
        let Some(link) = self.shared.link(peer) else {
            self.drop_for(DropReason::NotConnected);
            return Err(SendError::NotConnected(peer).into());
        };
        let size = payload.len();
        link.try_push(self.index, payload)
            .map_err(|e| self.map_push_error(peer, size, e))
    }

    /// Queues `message` for every connected peer that serves this channel,
    /// without waiting on any of them; says who took it and whose queue was
    /// full.
    pub fn broadcast(&self, message: M) -> BroadcastReport {
        let mut report = BroadcastReport::default();
        let Ok(payload) = self.encode(&message) else {
            return report;
        };
        for link in self.shared.links() {
            if !link.serves(self.index) {
                continue;
            }
            match link.try_push(self.index, payload.clone()) {
                Ok(()) => report.queued.push(link.peer),
                Err(PushError::Full) => {
                    self.drop_for(DropReason::QueueFull);
                    report.full.push(link.peer);
                }
                Err(PushError::TooLarge { .. }) => {
                    self.drop_for(DropReason::TooLarge);
                    report.too_large.push(link.peer);
                }
                // The link closed between the snapshot and the push.
                Err(PushError::Closed | PushError::Unsupported) => {
                    self.drop_for(DropReason::NotConnected);
                }
            }
        }
        report
    }

    /// Reports misbehaviour of `peer`: lowers its score, and may disconnect
    /// or ban it.
    pub fn report(&self, peer: PeerId, error: PeerError) {
        self.shared.report(peer, error);
    }
}

/// The receiving half of a typed channel.
pub struct ChannelReceiver<M> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) index: usize,
    pub(crate) descriptor: ChannelDescriptor,
    pub(crate) inbound: mpsc::Receiver<Inbound>,
    pub(crate) _message: PhantomData<fn() -> M>,
}

impl<M> fmt::Debug for ChannelReceiver<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelReceiver({})", self.descriptor.name)
    }
}

impl<M: Message + Default> ChannelReceiver<M> {
    /// The next message from any peer, or `None` once the router has shut
    /// down and every received message has been taken. Messages that do not
    /// decode are dropped, counted and reported, and `recv` goes on waiting.
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Envelope<M>> {
        loop {
            let inbound = tokio::select! {
                biased;
                inbound = self.inbound.recv() => inbound?,
                _ = self.shared.shutdown.cancelled() => self.inbound.try_recv().ok()?,
            };
            if let Some(envelope) = self.accept(inbound) {
                return Some(envelope);
            }
        }
    }

    /// The next message if one is waiting; never waits.
    pub fn try_recv(&mut self) -> Option<Envelope<M>> {
        while let Ok(inbound) = self.inbound.try_recv() {
            if let Some(envelope) = self.accept(inbound) {
                return Some(envelope);
            }
        }
        None
    }

    fn accept(&self, inbound: Inbound) -> Option<Envelope<M>> {
        inbound.link.consumed(self.index, inbound.payload.len());
        match M::decode(inbound.payload) {
            Ok(message) => Some(Envelope {
                from: inbound.link.peer,
                message,
            }),
            Err(e) => {
                self.shared
                    .metrics
                    .drop(self.descriptor.name, DropReason::Malformed);
                self.shared.report(
                    inbound.link.peer,
                    PeerError::MalformedMessage {
                        channel: self.descriptor.name,
                        detail: e.to_string(),
                    },
                );
                None
            }
        }
    }

    /// The channel's descriptor.
    pub fn descriptor(&self) -> &ChannelDescriptor {
        &self.descriptor
    }
}

impl<M> Drop for ChannelReceiver<M> {
    fn drop(&mut self) {
        self.inbound.close();
        while let Ok(inbound) = self.inbound.try_recv() {
            inbound.link.consumed(self.index, inbound.payload.len());
            self.shared
                .metrics
                .drop(self.descriptor.name, DropReason::ReceiverClosed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Blob {
        #[prost(bytes = "vec", tag = "1")]
        data: Vec<u8>,
    }

    proptest! {
        /// Arena encoding gives the same bytes as a plain encode, across
        /// chunk boundaries and for messages too big for the arena.
        #[test]
        fn arena_encoding_matches_plain_encoding(sizes in proptest::collection::vec(0usize..3000, 1..64)) {
            let mut encoded = Vec::new();
            for (i, size) in sizes.iter().enumerate() {
                let blob = Blob { data: vec![i as u8; *size] };
                encoded.push((blob.clone(), encode_small(&blob, blob.encoded_len())));
            }
            for (blob, bytes) in encoded {
                let plain = blob.encode_to_vec();
                prop_assert_eq!(bytes.as_ref(), plain.as_slice());
                prop_assert_eq!(Blob::decode(bytes).ok(), Some(blob));
            }
        }
    }
}
