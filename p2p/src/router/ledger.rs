//! Who may put messages into a channel's receive queue: how many, and how
//! many bytes.
//!
//! Each channel has one receive queue shared by every peer, with a capacity
//! fixed when the router starts. A peer puts a message into it only against
//! credit we granted, so the queue cannot overflow as long as the credit we
//! grant never adds up to more than its capacity. The ledger keeps that sum.
//!
//! A connection *reserves* slots of a channel's queue: the credit the remote
//! has not used yet, its messages waiting in the queue, and the messages the
//! reactor took whose credit we have not returned yet. Granting credit
//! reserves slots. They are released when a message of a *closed*
//! connection leaves the queue (there is nobody to return its credit to),
//! and, for whatever is left, when the connection's [`Link`] is dropped
//! (after its last queued message is gone).
//!
//! It reserves **bytes** the same way, because a count of messages bounds
//! memory only by `window × max_message_size`, 50 MiB per peer with the
//! node's channels. The connection hands out a credit only while its byte
//! reservation covers it at the channel's `max_message_size` (the most the
//! remote can send with it), and counts what arrived at its real size, so
//! small messages leave room for more credit. What the remote can make us
//! hold on a channel, queued or in flight, never exceeds the bytes reserved
//! for it ([`Link`] keeps that promise lock-free).
//!
//! Limits that hold at every moment, for each channel:
//!
//! * **Per peer:** a peer's reservations over all its connections, the
//!   current one and closed ones whose messages are still queued, never
//!   exceed the channel's window (`recv_buffer`) in messages, nor its share
//!   of the per-peer byte budget ([`byte_windows`]) in bytes. A peer that
//!   reconnects finds what it left in the queue counted against its new
//!   connection: that connection gets the rest now, and more as the old
//!   messages are consumed, until it holds the whole window again.
//! * **Overall:** all reservations never exceed the queue's capacity, in
//!   messages and in bytes (a window's worth for every peer that can be
//!   connected at once, and a few for peers that left). When they would
//!   (many peers came, filled their windows and left), a new connection
//!   gets less than its window and waits for the rest, oldest connection
//!   first, instead of the queue overflowing.
//!
//! So a credit-respecting sender can never make the reader's `try_send`
//! fail with `Full`, a peer that churns can only hold back its own
//! messages, and the bytes all peers can make us hold in receive queues are
//! at most the per-peer budget times the peers the queues make room for.
//!
//! [`Slots`] is the sans-IO core: it returns the grants to make.
//! [`CreditLedger`] keeps it behind a lock and hands the grants to the links
//! after releasing the lock. Only slow paths take that lock: a connection
//! that starts, closes or ends, and messages of closed connections.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::identity::PeerId;
use crate::router::link::Link;

/// Splits `budget` bytes between channels given as `(window,
/// max_message_size)`: each gets the same share ("water level"), but never
/// more than its window of largest messages could hold (what one channel
/// cannot use goes to the others) and never less than one largest message
/// (so every channel can always carry one). Returns each channel's byte
/// window, in order. Their sum is `budget`, unless a window of every channel
/// fits in less, or one message of every channel needs more.
pub(crate) fn byte_windows(channels: &[(u32, u64)], budget: u64) -> Vec<u64> {
    let bounds: Vec<(u64, u64)> = channels
        .iter()
        .map(|&(window, max)| {
            let max = max.max(1);
            (max, max.saturating_mul(u64::from(window.max(1))))
        })
        .collect();
    let total = |level: u64| -> u64 {
        bounds
            .iter()
            .map(|&(low, high)| level.clamp(low, high))
            .fold(0u64, u64::saturating_add)
    };
    // The highest level whose total is within the budget (the total grows
    // with the level), found by bisection.
    let (mut low, mut high) = (0u64, bounds.iter().map(|b| b.1).max().unwrap_or(0));
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        if total(mid) <= budget {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    bounds
        .iter()
        .map(|&(min, max)| low.clamp(min, max))
        .collect()
}

/// What one channel's queue holds, and what one peer may hold in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelLimits {
    /// The most messages one peer may hold (`recv_buffer`).
    pub window: u32,
    /// Messages the queue holds.
    pub capacity: u64,
    /// The most bytes one peer may hold (its share of the per-peer budget).
    pub byte_window: u64,
    /// Bytes all peers may hold together.
    pub byte_capacity: u64,
}

/// Credit to grant: `messages` more slots on channel `index` of connection
/// `conn_id`, and `bytes` more bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grant {
    pub conn_id: u64,
    pub index: usize,
    pub messages: u32,
    pub bytes: u64,
}

/// One channel's queue.
#[derive(Debug)]
struct ChannelBook {
    /// The most one peer may hold (`recv_buffer`).
    window: u32,
    /// The most bytes one peer may hold.
    byte_window: u64,
    /// Slots nobody has reserved.
    free: u64,
    /// Bytes nobody has reserved.
    free_bytes: u64,
    /// Current connections owed credit the queue could not give yet, oldest
    /// (smallest connection id) first.
    waiting: BTreeSet<u64>,
}

#[derive(Debug)]
struct PeerBook {
    /// The connection that takes new credit: the latest one, unless it
    /// closed.
    current: Option<u64>,
    /// Per channel, reserved slots over all this peer's connections.
    committed: Vec<u32>,
    /// Per channel, reserved bytes over all this peer's connections.
    committed_bytes: Vec<u64>,
    /// Connections still in the books.
    links: usize,
}

#[derive(Debug)]
struct LinkBook {
    peer: PeerId,
    /// Per channel, the slots this connection reserved.
    reserved: Vec<u32>,
    /// Per channel, the bytes this connection reserved.
    reserved_bytes: Vec<u64>,
    /// Per channel, whether the remote announced it (and so can send on it).
    serves: Vec<bool>,
}

/// The reservations of every channel's receive queue.
#[derive(Debug)]
pub(crate) struct Slots {
    channels: Vec<ChannelBook>,
    peers: HashMap<PeerId, PeerBook>,
    links: HashMap<u64, LinkBook>,
}

impl Slots {
    /// Books for channels with these limits, by channel index.
    pub fn new(channels: impl IntoIterator<Item = ChannelLimits>) -> Self {
        Self {
            channels: channels
                .into_iter()
                .map(|c| ChannelBook {
                    window: c.window,
                    byte_window: c.byte_window,
                    free: c.capacity,
                    free_bytes: c.byte_capacity,
                    waiting: BTreeSet::new(),
                })
                .collect(),
            peers: HashMap::new(),
            links: HashMap::new(),
        }
    }

    /// Connection `conn_id` to `peer` was admitted and becomes the peer's
    /// current connection. Returns its initial credit: per channel it
    /// `serves`, the window minus what the peer's other connections still
    /// hold, as far as the queue has room.
    pub fn register(&mut self, peer: PeerId, conn_id: u64, serves: Vec<bool>) -> Vec<Grant> {
        let n = self.channels.len();
        let book = self.peers.entry(peer).or_insert_with(|| PeerBook {
            current: None,
            committed: vec![0; n],
            committed_bytes: vec![0; n],
            links: 0,
        });
        book.links += 1;
        if let Some(previous) = book.current.replace(conn_id) {
            for channel in &mut self.channels {
                channel.waiting.remove(&previous);
            }
        }
        let mut serves = serves;
        serves.resize(n, false);
        self.links.insert(
            conn_id,
            LinkBook {
                peer,
                reserved: vec![0; n],
                reserved_bytes: vec![0; n],
                serves,
            },
        );
        let mut grants = Vec::new();
        for index in 0..n {
            self.top_up(index, peer, &mut grants);
        }
        grants
    }

    /// Connection `conn_id` closed: it takes no more credit. What it
    /// reserved stays reserved until released.
    pub fn retire(&mut self, conn_id: u64) {
        let Some(peer) = self.links.get(&conn_id).map(|l| l.peer) else {
            return;
        };
        if let Some(book) = self.peers.get_mut(&peer)
            && book.current == Some(conn_id)
        {
            book.current = None;
            for channel in &mut self.channels {
                channel.waiting.remove(&conn_id);
            }
        }
    }

    /// `messages` slots and `bytes` bytes that closed connection `conn_id`
    /// reserved on channel `index` are free again (its messages left the
    /// queue). They go to the same peer's current connection if it is owed
    /// credit, then to the connections waiting longest.
    pub fn release(&mut self, conn_id: u64, index: usize, messages: u32, bytes: u64) -> Vec<Grant> {
        let mut grants = Vec::new();
        let Some(link) = self.links.get_mut(&conn_id) else {
            return grants;
        };
        let (Some(reserved), Some(reserved_bytes)) = (
            link.reserved.get_mut(index),
            link.reserved_bytes.get_mut(index),
        ) else {
            return grants;
        };
        let freed = messages.min(*reserved);
        *reserved -= freed;
        let freed_bytes = bytes.min(*reserved_bytes);
        *reserved_bytes -= freed_bytes;
        let peer = link.peer;
        self.give_back(peer, index, freed, freed_bytes);
        self.top_up(index, peer, &mut grants);
        self.serve_waiting(index, &mut grants);
        grants
    }

    /// Connection `conn_id` is gone: everything it still reserved is free.
    pub fn unregister(&mut self, conn_id: u64) -> Vec<Grant> {
        let mut grants = Vec::new();
        self.retire(conn_id);
        let Some(link) = self.links.remove(&conn_id) else {
            return grants;
        };
        for (index, (&reserved, &bytes)) in
            link.reserved.iter().zip(&link.reserved_bytes).enumerate()
        {
            self.give_back(link.peer, index, reserved, bytes);
        }
        if let Some(book) = self.peers.get_mut(&link.peer) {
            book.links -= 1;
            if book.links == 0 {
                self.peers.remove(&link.peer);
            }
        }
        for index in 0..self.channels.len() {
            self.top_up(index, link.peer, &mut grants);
            self.serve_waiting(index, &mut grants);
        }
        grants
    }

    fn give_back(&mut self, peer: PeerId, index: usize, messages: u32, bytes: u64) {
        if let Some(book) = self.peers.get_mut(&peer) {
            if let Some(committed) = book.committed.get_mut(index) {
                *committed = committed.saturating_sub(messages);
            }
            if let Some(committed) = book.committed_bytes.get_mut(index) {
                *committed = committed.saturating_sub(bytes);
            }
        }
        if let Some(channel) = self.channels.get_mut(index) {
            channel.free += u64::from(messages);
            channel.free_bytes += bytes;
        }
    }

    /// `peer`'s current connection, if it takes credit on channel `index`,
    /// and how many slots and bytes it is owed there.
    fn owed(&self, index: usize, peer: PeerId) -> Option<(u64, u32, u64)> {
        let book = self.peers.get(&peer)?;
        let conn_id = book.current?;
        if !*self.links.get(&conn_id)?.serves.get(index)? {
            return None;
        }
        let channel = self.channels.get(index)?;
        Some((
            conn_id,
            channel.window.saturating_sub(book.committed[index]),
            channel
                .byte_window
                .saturating_sub(book.committed_bytes[index]),
        ))
    }

    /// Grants `peer`'s current connection what it is owed on channel
    /// `index`, as far as the queue has room; marks it waiting for the rest.
    fn top_up(&mut self, index: usize, peer: PeerId, grants: &mut Vec<Grant>) {
        let Some((conn_id, owed, owed_bytes)) = self.owed(index, peer) else {
            return;
        };
        let channel = &mut self.channels[index];
        let give = u64::from(owed).min(channel.free) as u32;
        let give_bytes = owed_bytes.min(channel.free_bytes);
        if owed > give || owed_bytes > give_bytes {
            channel.waiting.insert(conn_id);
        } else {
            channel.waiting.remove(&conn_id);
        }
        if give == 0 && give_bytes == 0 {
            return;
        }
        channel.free -= u64::from(give);
        channel.free_bytes -= give_bytes;
        if let Some(book) = self.peers.get_mut(&peer) {
            book.committed[index] += give;
            book.committed_bytes[index] += give_bytes;
        }
        if let Some(link) = self.links.get_mut(&conn_id) {
            link.reserved[index] += give;
            link.reserved_bytes[index] += give_bytes;
        }
        grants.push(Grant {
            conn_id,
            index,
            messages: give,
            bytes: give_bytes,
        });
    }

    /// Hands free slots and bytes of channel `index` to the connections
    /// waiting longest. A connection that still waits for one kind (say
    /// bytes) does not hold back the next one's share of the other.
    fn serve_waiting(&mut self, index: usize, grants: &mut Vec<Grant>) {
        let waiting: Vec<u64> = self.channels[index].waiting.iter().copied().collect();
        for conn_id in waiting {
            let channel = &self.channels[index];
            if channel.free == 0 && channel.free_bytes == 0 {
                return;
            }
            let peer = self.links.get(&conn_id).map(|l| l.peer);
            match peer {
                Some(peer) if self.owed(index, peer).map(|(c, ..)| c) == Some(conn_id) => {
                    self.top_up(index, peer, grants);
                }
                // Not a current connection any more.
                _ => {
                    self.channels[index].waiting.remove(&conn_id);
                }
            }
        }
    }

    /// Checks every invariant the router relies on; for tests. `capacities`
    /// are each channel's `(messages, bytes)`.
    #[cfg(test)]
    fn check(&self, capacities: &[(u64, u64)]) -> Result<(), String> {
        for (index, channel) in self.channels.iter().enumerate() {
            let reserved: u64 = self
                .links
                .values()
                .map(|l| u64::from(l.reserved[index]))
                .sum();
            let reserved_bytes: u64 = self.links.values().map(|l| l.reserved_bytes[index]).sum();
            let (capacity, byte_capacity) = capacities[index];
            if reserved + channel.free != capacity {
                return Err(format!(
                    "channel {index}: reserved {reserved} + free {} != capacity {capacity}",
                    channel.free
                ));
            }
            if reserved_bytes + channel.free_bytes != byte_capacity {
                return Err(format!(
                    "channel {index}: reserved {reserved_bytes} + free {} != {byte_capacity} bytes",
                    channel.free_bytes
                ));
            }
            for (peer, book) in &self.peers {
                let links = || self.links.values().filter(|l| l.peer == *peer);
                let sum: u32 = links().map(|l| l.reserved[index]).sum();
                let bytes: u64 = links().map(|l| l.reserved_bytes[index]).sum();
                if sum != book.committed[index] || sum > channel.window {
                    return Err(format!(
                        "channel {index}: peer holds {sum}, booked {}, window {}",
                        book.committed[index], channel.window
                    ));
                }
                if bytes != book.committed_bytes[index] || bytes > channel.byte_window {
                    return Err(format!(
                        "channel {index}: peer holds {bytes} bytes, booked {}, window {}",
                        book.committed_bytes[index], channel.byte_window
                    ));
                }
            }
            for conn_id in &channel.waiting {
                let peer = self.links.get(conn_id).map(|l| l.peer);
                let owed = peer.and_then(|p| self.owed(index, p));
                let Some((c, owed, owed_bytes)) = owed else {
                    return Err(format!("channel {index}: {conn_id} waits for nothing"));
                };
                if c != *conn_id || (owed == 0 && owed_bytes == 0) {
                    return Err(format!("channel {index}: {conn_id} waits for nothing"));
                }
                if (owed > 0 && channel.free > 0) || (owed_bytes > 0 && channel.free_bytes > 0) {
                    return Err(format!(
                        "channel {index}: {conn_id} waits while the queue has room for it"
                    ));
                }
            }
        }
        Ok(())
    }

    /// What connection `conn_id` reserved on channel `index`, in slots and
    /// bytes; for tests.
    #[cfg(test)]
    fn reserved(&self, conn_id: u64, index: usize) -> (u32, u64) {
        self.links
            .get(&conn_id)
            .map_or((0, 0), |l| (l.reserved[index], l.reserved_bytes[index]))
    }
}

#[derive(Debug)]
struct LedgerState {
    slots: Slots,
    links: HashMap<u64, Weak<Link>>,
}

/// The router's [`Slots`], shared by the supervisor, the connections and the
/// channel receivers.
#[derive(Debug)]
pub(crate) struct CreditLedger {
    state: Mutex<LedgerState>,
}

type Grants = Vec<(Weak<Link>, Grant)>;

impl CreditLedger {
    /// A ledger for channels with these limits, by channel index.
    pub fn new(channels: impl IntoIterator<Item = ChannelLimits>) -> Self {
        Self {
            state: Mutex::new(LedgerState {
                slots: Slots::new(channels),
                links: HashMap::new(),
            }),
        }
    }

    /// `link` was admitted: books it as its peer's current connection and
    /// grants its initial credit.
    pub fn register(&self, link: &Arc<Link>) {
        let serves = (0..link.channel_count()).map(|i| link.serves(i)).collect();
        let grants = {
            let mut state = self.state.lock();
            state.links.insert(link.conn_id, Arc::downgrade(link));
            let grants = state.slots.register(link.peer, link.conn_id, serves);
            resolve(&state, grants)
        };
        apply(grants);
    }

    /// Connection `conn_id` closed and takes no more credit.
    pub fn retire(&self, conn_id: u64) {
        self.state.lock().slots.retire(conn_id);
    }

    /// One message of `bytes` bytes of closed connection `conn_id` on
    /// channel `index` left the receive queue (or was discarded): its slot
    /// and bytes are free again.
    pub fn release(&self, conn_id: u64, index: usize, bytes: u64) {
        self.release_many(conn_id, index, 1, bytes);
    }

    /// `messages` slots and `bytes` bytes of closed connection `conn_id` on
    /// channel `index` are free again: credit it can no longer use.
    pub fn release_many(&self, conn_id: u64, index: usize, messages: u32, bytes: u64) {
        let grants = {
            let mut state = self.state.lock();
            let grants = state.slots.release(conn_id, index, messages, bytes);
            resolve(&state, grants)
        };
        apply(grants);
    }

    /// Connection `conn_id` is gone: frees all it held.
    pub fn unregister(&self, conn_id: u64) {
        let grants = {
            let mut state = self.state.lock();
            state.links.remove(&conn_id);
            let grants = state.slots.unregister(conn_id);
            resolve(&state, grants)
        };
        apply(grants);
    }
}

fn resolve(state: &LedgerState, grants: Vec<Grant>) -> Grants {
    grants
        .into_iter()
        .filter_map(|g| {
            let link = state.links.get(&g.conn_id)?.clone();
            Some((link, g))
        })
        .collect()
}

/// Outside the lock: a link dropped here (the last `Arc`) unregisters
/// itself, which takes the lock.
fn apply(grants: Grants) {
    for (link, grant) in grants {
        // A link that is gone needs nothing: its slots are released when it
        // unregisters, grant included.
        if let Some(link) = link.upgrade() {
            link.grant(grant.index, grant.messages, grant.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use proptest::prelude::*;

    fn peer(i: u64) -> PeerId {
        Keypair::from_seed(i).peer_id()
    }

    /// Bytes of one message in the tests that count messages: bytes then
    /// follow messages exactly.
    const MSG: u64 = 100;

    /// A channel whose byte limits are those of `MSG`-byte messages.
    fn limits(window: u32, capacity: u64) -> ChannelLimits {
        ChannelLimits {
            window,
            capacity,
            byte_window: u64::from(window) * MSG,
            byte_capacity: capacity * MSG,
        }
    }

    fn sizes(capacity: u64) -> (u64, u64) {
        (capacity, capacity * MSG)
    }

    fn bytes(grants: &[Grant], conn_id: u64) -> u64 {
        grants
            .iter()
            .filter(|g| g.conn_id == conn_id)
            .map(|g| g.bytes)
            .sum()
    }

    fn total(grants: &[Grant], conn_id: u64) -> u32 {
        grants
            .iter()
            .filter(|g| g.conn_id == conn_id)
            .map(|g| g.messages)
            .sum()
    }

    #[test]
    fn a_reconnecting_peer_is_charged_for_what_it_left_in_the_queue() {
        let mut slots = Slots::new([limits(8, 32)]);
        let p = peer(1);
        assert_eq!(total(&slots.register(p, 1, vec![true]), 1), 8);
        // Connection 1 fills the queue with its 8 messages and closes.
        slots.retire(1);
        assert_eq!(slots.register(p, 2, vec![true]), vec![]);
        // Each of its messages the reactor takes goes to connection 2.
        for taken in 1..=8 {
            let grants = slots.release(1, 0, 1, MSG);
            assert_eq!(total(&grants, 2), 1, "message {taken}");
        }
        assert_eq!(slots.reserved(2, 0), (8, 8 * MSG));
        // Connection 1 ends with nothing left: nothing more to give.
        assert_eq!(slots.unregister(1), vec![]);
        slots.check(&[sizes(32)]).expect("invariants");
    }

    #[test]
    fn unused_credit_of_a_closed_connection_returns_when_it_ends() {
        let mut slots = Slots::new([limits(8, 32)]);
        let p = peer(1);
        slots.register(p, 1, vec![true]);
        slots.retire(1);
        // Connection 1 sent 3 messages; 5 credits were never used.
        slots.register(p, 2, vec![true]);
        assert_eq!(total(&slots.unregister(1), 2), 8);
        slots.check(&[sizes(32)]).expect("invariants");
    }

    #[test]
    fn a_full_queue_makes_new_connections_wait_oldest_first() {
        let mut slots = Slots::new([limits(8, 20)]);
        assert_eq!(total(&slots.register(peer(1), 1, vec![true]), 1), 8);
        assert_eq!(total(&slots.register(peer(2), 2, vec![true]), 2), 8);
        assert_eq!(total(&slots.register(peer(3), 3, vec![true]), 3), 4);
        assert_eq!(total(&slots.register(peer(4), 4, vec![true]), 4), 0);
        slots.check(&[sizes(20)]).expect("invariants");
        // Peer 1 leaves: its 8 slots go to connection 3 (4), then 4 (4).
        slots.retire(1);
        let grants = slots.unregister(1);
        assert_eq!((total(&grants, 3), total(&grants, 4)), (4, 4));
        slots.check(&[sizes(20)]).expect("invariants");
    }

    #[test]
    fn channels_the_remote_does_not_serve_reserve_nothing() {
        let mut slots = Slots::new([limits(8, 16), limits(4, 8)]);
        let grants = slots.register(peer(1), 1, vec![false, true]);
        assert_eq!(
            grants,
            vec![Grant {
                conn_id: 1,
                index: 1,
                messages: 4,
                bytes: 4 * MSG,
            }]
        );
        slots.check(&[sizes(16), sizes(8)]).expect("invariants");
    }

    #[test]
    fn the_budget_is_split_evenly_with_what_a_channel_cannot_use_going_to_the_others() {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        // The node's channels: pex, ring, gossip and rooms, as (window,
        // max_message_size).
        let room = 5 * MIB + 64 * KIB;
        let node = [(4, 64 * KIB), (64, 24 * KIB), (128, 65 * KIB), (8, room)];
        let windows = byte_windows(&node, 16 * MIB);
        // pex and ring get their whole windows; gossip and rooms share the
        // rest equally (rooms: one snapshot, and room for small messages).
        assert_eq!(windows[0], 256 * KIB);
        assert_eq!(windows[1], 1536 * KIB);
        assert_eq!(windows[2], windows[3]);
        assert!(windows[3] > room);
        assert!(windows.iter().sum::<u64>() <= 16 * MIB);
        assert!(windows.iter().sum::<u64>() > 16 * MIB - 4);
        // A small budget still leaves every channel one largest message.
        let windows = byte_windows(&node, MIB);
        assert_eq!(windows, vec![64 * KIB, 24 * KIB, 65 * KIB, room]);
        // A large one gives every channel its whole window.
        let windows = byte_windows(&node, 1 << 40);
        assert_eq!(windows[3], 8 * room);
        assert_eq!(windows[2], 128 * 65 * KIB);
    }

    #[test]
    fn a_peer_holds_at_most_its_byte_window_across_reconnections() {
        // 8 slots, but bytes for 3 messages of 1000.
        let mut slots = Slots::new([ChannelLimits {
            window: 8,
            capacity: 32,
            byte_window: 3000,
            byte_capacity: 32 * 3000,
        }]);
        let p = peer(1);
        let grants = slots.register(p, 1, vec![true]);
        assert_eq!((total(&grants, 1), bytes(&grants, 1)), (8, 3000));
        // Connection 1 sent two messages of 1000 and 500 bytes, still
        // queued, and closed: its reservation stays until they are taken.
        slots.retire(1);
        assert_eq!(slots.register(p, 2, vec![true]), vec![]);
        let grants = slots.release(1, 0, 1, 1000);
        assert_eq!((total(&grants, 2), bytes(&grants, 2)), (1, 1000));
        let grants = slots.release(1, 0, 1, 500);
        assert_eq!((total(&grants, 2), bytes(&grants, 2)), (1, 500));
        // Its unused credit and bytes follow when it ends.
        let grants = slots.unregister(1);
        assert_eq!((total(&grants, 2), bytes(&grants, 2)), (6, 1500));
        assert_eq!(slots.reserved(2, 0), (8, 3000));
        slots.check(&[(32, 32 * 3000)]).expect("invariants");
    }

    #[test]
    fn full_byte_capacity_makes_new_connections_wait_oldest_first() {
        // Slots for everyone, bytes for two and a third of a window.
        let mut slots = Slots::new([ChannelLimits {
            window: 8,
            capacity: 100,
            byte_window: 3000,
            byte_capacity: 7000,
        }]);
        let capacities = [(100, 7000)];
        for conn in 1..=2 {
            let grants = slots.register(peer(conn), conn, vec![true]);
            assert_eq!((total(&grants, conn), bytes(&grants, conn)), (8, 3000));
        }
        let grants = slots.register(peer(3), 3, vec![true]);
        assert_eq!((total(&grants, 3), bytes(&grants, 3)), (8, 1000));
        let grants = slots.register(peer(4), 4, vec![true]);
        assert_eq!((total(&grants, 4), bytes(&grants, 4)), (8, 0));
        slots.check(&capacities).expect("invariants");
        // Peer 1 leaves: its bytes go to connection 3 (2000), then 4.
        slots.retire(1);
        let grants = slots.unregister(1);
        assert_eq!((bytes(&grants, 3), bytes(&grants, 4)), (2000, 1000));
        slots.check(&capacities).expect("invariants");
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Peer `p` connects (closing its current connection first).
        Connect(u8),
        /// Peer `p`'s current connection closes.
        Close(u8),
        /// A closed connection releases some slots and bytes.
        Release(u8, u32, u64),
        /// A closed connection ends.
        End(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6).prop_map(Op::Connect),
            (0u8..6).prop_map(Op::Close),
            (any::<u8>(), 1u32..10, 0u64..5000).prop_map(|(i, n, b)| Op::Release(i, n, b)),
            any::<u8>().prop_map(Op::End),
        ]
    }

    proptest! {
        /// Whatever peers do, no queue is overcommitted in messages or
        /// bytes, no peer holds more than its windows, and once every
        /// closed connection has ended each current connection holds its
        /// whole windows (the queue has room for all of them).
        #[test]
        fn reservations_never_exceed_the_queue_or_the_window(ops in proptest::collection::vec(op(), 1..200)) {
            const WINDOW: u32 = 8;
            const BYTE_WINDOW: u64 = 3000;
            let capacity = (u64::from(WINDOW) * 7, BYTE_WINDOW * 7);
            let mut slots = Slots::new([ChannelLimits {
                window: WINDOW,
                capacity: capacity.0,
                byte_window: BYTE_WINDOW,
                byte_capacity: capacity.1,
            }]);
            let mut next = 0u64;
            let mut current: HashMap<u8, u64> = HashMap::new();
            let mut closed: Vec<u64> = Vec::new();
            for op in ops {
                match op {
                    Op::Connect(p) => {
                        if let Some(old) = current.remove(&p) {
                            slots.retire(old);
                            closed.push(old);
                        }
                        next += 1;
                        slots.register(peer(u64::from(p)), next, vec![true]);
                        current.insert(p, next);
                    }
                    Op::Close(p) => {
                        if let Some(old) = current.remove(&p) {
                            slots.retire(old);
                            closed.push(old);
                        }
                    }
                    Op::Release(i, n, b) if !closed.is_empty() => {
                        let conn = closed[usize::from(i) % closed.len()];
                        slots.release(conn, 0, n, b);
                    }
                    Op::End(i) if !closed.is_empty() => {
                        let conn = closed.swap_remove(usize::from(i) % closed.len());
                        slots.unregister(conn);
                    }
                    _ => {}
                }
                prop_assert_eq!(slots.check(&[capacity]), Ok(()));
            }
            for conn in closed {
                slots.unregister(conn);
            }
            prop_assert_eq!(slots.check(&[capacity]), Ok(()));
            for conn in current.values() {
                prop_assert_eq!(slots.reserved(*conn, 0), (WINDOW, BYTE_WINDOW));
            }
        }
    }
}
