//! Who may put messages into a channel's receive queue, and how many.
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
//! Two limits hold at every moment, for each channel:
//!
//! * **Per peer:** a peer's reservations over all its connections, the
//!   current one and closed ones whose messages are still queued, never
//!   exceed the channel's window (`recv_buffer`). A peer that reconnects
//!   finds what it left in the queue counted against its new connection:
//!   that connection gets the rest of the window now, and more as the old
//!   messages are consumed, until it holds the whole window again.
//! * **Overall:** all reservations never exceed the queue's capacity. When
//!   they would (many peers came, filled their windows and left), a new
//!   connection gets less than its window and waits for the rest, oldest
//!   connection first, instead of the queue overflowing.
//!
//! So a credit-respecting sender can never make the reader's `try_send`
//! fail with `Full`, and a peer that churns can only hold back its own
//! messages.
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

/// Credit to grant: `messages` more on channel `index` of connection
/// `conn_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grant {
    pub conn_id: u64,
    pub index: usize,
    pub messages: u32,
}

/// One channel's queue.
#[derive(Debug)]
struct ChannelBook {
    /// The most one peer may hold (`recv_buffer`).
    window: u32,
    /// Slots nobody has reserved.
    free: u64,
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
    /// Connections still in the books.
    links: usize,
}

#[derive(Debug)]
struct LinkBook {
    peer: PeerId,
    /// Per channel, the slots this connection reserved.
    reserved: Vec<u32>,
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
    /// Books for channels given as `(window, capacity)`, by channel index.
    pub fn new(channels: impl IntoIterator<Item = (u32, u64)>) -> Self {
        Self {
            channels: channels
                .into_iter()
                .map(|(window, capacity)| ChannelBook {
                    window,
                    free: capacity,
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

    /// `messages` slots that closed connection `conn_id` reserved on channel
    /// `index` are free again (its messages left the queue). They go to the
    /// same peer's current connection if it is owed credit, then to the
    /// connections waiting longest.
    pub fn release(&mut self, conn_id: u64, index: usize, messages: u32) -> Vec<Grant> {
        let mut grants = Vec::new();
        let Some(link) = self.links.get_mut(&conn_id) else {
            return grants;
        };
        let Some(reserved) = link.reserved.get_mut(index) else {
            return grants;
        };
        let freed = messages.min(*reserved);
        *reserved -= freed;
        let peer = link.peer;
        self.give_back(peer, index, freed);
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
        for (index, &reserved) in link.reserved.iter().enumerate() {
            self.give_back(link.peer, index, reserved);
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

    fn give_back(&mut self, peer: PeerId, index: usize, messages: u32) {
        if let Some(committed) = self
            .peers
            .get_mut(&peer)
            .and_then(|b| b.committed.get_mut(index))
        {
            *committed = committed.saturating_sub(messages);
        }
        if let Some(channel) = self.channels.get_mut(index) {
            channel.free += u64::from(messages);
        }
    }

    /// `peer`'s current connection, if it takes credit on channel `index`,
    /// and how much it is owed there.
    fn owed(&self, index: usize, peer: PeerId) -> Option<(u64, u32)> {
        let book = self.peers.get(&peer)?;
        let conn_id = book.current?;
        if !*self.links.get(&conn_id)?.serves.get(index)? {
            return None;
        }
        let window = self.channels.get(index)?.window;
        Some((conn_id, window.saturating_sub(book.committed[index])))
    }

    /// Grants `peer`'s current connection what it is owed on channel
    /// `index`, as far as the queue has room; marks it waiting for the rest.
    fn top_up(&mut self, index: usize, peer: PeerId, grants: &mut Vec<Grant>) {
        let Some((conn_id, owed)) = self.owed(index, peer) else {
            return;
        };
        let channel = &mut self.channels[index];
        let give = u64::from(owed).min(channel.free) as u32;
        if owed > give {
            channel.waiting.insert(conn_id);
        } else {
            channel.waiting.remove(&conn_id);
        }
        if give == 0 {
            return;
        }
        channel.free -= u64::from(give);
        if let Some(book) = self.peers.get_mut(&peer) {
            book.committed[index] += give;
        }
        if let Some(link) = self.links.get_mut(&conn_id) {
            link.reserved[index] += give;
        }
        grants.push(Grant {
            conn_id,
            index,
            messages: give,
        });
    }

    /// Hands free slots of channel `index` to the connections waiting
    /// longest.
    fn serve_waiting(&mut self, index: usize, grants: &mut Vec<Grant>) {
        while self.channels[index].free > 0 {
            let Some(&conn_id) = self.channels[index].waiting.first() else {
                return;
            };
            let peer = self.links.get(&conn_id).map(|l| l.peer);
            match peer {
                Some(peer) if self.owed(index, peer).map(|(c, _)| c) == Some(conn_id) => {
                    self.top_up(index, peer, grants);
                    if self.channels[index].waiting.contains(&conn_id) {
                        // Still owed: the queue has no room left.
                        return;
                    }
                }
                // Not a current connection any more.
                _ => {
                    self.channels[index].waiting.remove(&conn_id);
                }
            }
        }
    }

    /// Checks every invariant the router relies on; for tests.
    #[cfg(test)]
    fn check(&self, capacities: &[u64]) -> Result<(), String> {
        for (index, channel) in self.channels.iter().enumerate() {
            let reserved: u64 = self
                .links
                .values()
                .map(|l| u64::from(l.reserved[index]))
                .sum();
            if reserved + channel.free != capacities[index] {
                return Err(format!(
                    "channel {index}: reserved {reserved} + free {} != capacity {}",
                    channel.free, capacities[index]
                ));
            }
            for (peer, book) in &self.peers {
                let sum: u32 = self
                    .links
                    .values()
                    .filter(|l| l.peer == *peer)
                    .map(|l| l.reserved[index])
                    .sum();
                if sum != book.committed[index] || sum > channel.window {
                    return Err(format!(
                        "channel {index}: peer holds {sum}, booked {}, window {}",
                        book.committed[index], channel.window
                    ));
                }
            }
            if channel.free > 0 && !channel.waiting.is_empty() {
                return Err(format!(
                    "channel {index}: {} free slots while connections wait",
                    channel.free
                ));
            }
            for conn_id in &channel.waiting {
                let peer = self.links.get(conn_id).map(|l| l.peer);
                let owed = peer.and_then(|p| self.owed(index, p));
                if !matches!(owed, Some((c, o)) if c == *conn_id && o > 0) {
                    return Err(format!("channel {index}: {conn_id} waits for nothing"));
                }
            }
        }
        Ok(())
    }

    /// What connection `conn_id` reserved on channel `index`; for tests.
    #[cfg(test)]
    fn reserved(&self, conn_id: u64, index: usize) -> u32 {
        self.links.get(&conn_id).map_or(0, |l| l.reserved[index])
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

type Grants = Vec<(Weak<Link>, usize, u32)>;

impl CreditLedger {
    /// A ledger for channels given as `(window, capacity)`, by channel index.
    pub fn new(channels: impl IntoIterator<Item = (u32, u64)>) -> Self {
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

    /// One message of closed connection `conn_id` on channel `index` left
    /// the receive queue (or was discarded): its slot is free again.
    pub fn release(&self, conn_id: u64, index: usize) {
        let grants = {
            let mut state = self.state.lock();
            let grants = state.slots.release(conn_id, index, 1);
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
            Some((link, g.index, g.messages))
        })
        .collect()
}

/// Outside the lock: a link dropped here (the last `Arc`) unregisters
/// itself, which takes the lock.
fn apply(grants: Grants) {
    for (link, index, messages) in grants {
        // A link that is gone needs nothing: its slots are released when it
        // unregisters, grant included.
        if let Some(link) = link.upgrade() {
            link.grant(index, messages);
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

    fn total(grants: &[Grant], conn_id: u64) -> u32 {
        grants
            .iter()
            .filter(|g| g.conn_id == conn_id)
            .map(|g| g.messages)
            .sum()
    }

    #[test]
    fn a_reconnecting_peer_is_charged_for_what_it_left_in_the_queue() {
        let mut slots = Slots::new([(8, 32)]);
        let p = peer(1);
        assert_eq!(total(&slots.register(p, 1, vec![true]), 1), 8);
        // Connection 1 fills the queue with its 8 messages and closes.
        slots.retire(1);
        assert_eq!(slots.register(p, 2, vec![true]), vec![]);
        // Each of its messages the reactor takes goes to connection 2.
        for taken in 1..=8 {
            let grants = slots.release(1, 0, 1);
            assert_eq!(total(&grants, 2), 1, "message {taken}");
        }
        assert_eq!(slots.reserved(2, 0), 8);
        // Connection 1 ends with nothing left: nothing more to give.
        assert_eq!(slots.unregister(1), vec![]);
        slots.check(&[32]).expect("invariants");
    }

    #[test]
    fn unused_credit_of_a_closed_connection_returns_when_it_ends() {
        let mut slots = Slots::new([(8, 32)]);
        let p = peer(1);
        slots.register(p, 1, vec![true]);
        slots.retire(1);
        // Connection 1 sent 3 messages; 5 credits were never used.
        slots.register(p, 2, vec![true]);
        assert_eq!(total(&slots.unregister(1), 2), 8);
        slots.check(&[32]).expect("invariants");
    }

    #[test]
    fn a_full_queue_makes_new_connections_wait_oldest_first() {
        let mut slots = Slots::new([(8, 20)]);
        assert_eq!(total(&slots.register(peer(1), 1, vec![true]), 1), 8);
        assert_eq!(total(&slots.register(peer(2), 2, vec![true]), 2), 8);
        assert_eq!(total(&slots.register(peer(3), 3, vec![true]), 3), 4);
        assert_eq!(total(&slots.register(peer(4), 4, vec![true]), 4), 0);
        slots.check(&[20]).expect("invariants");
        // Peer 1 leaves: its 8 slots go to connection 3 (4), then 4 (4).
        slots.retire(1);
        let grants = slots.unregister(1);
        assert_eq!((total(&grants, 3), total(&grants, 4)), (4, 4));
        slots.check(&[20]).expect("invariants");
    }

    #[test]
    fn channels_the_remote_does_not_serve_reserve_nothing() {
        let mut slots = Slots::new([(8, 16), (4, 8)]);
        let grants = slots.register(peer(1), 1, vec![false, true]);
        assert_eq!(
            grants,
            vec![Grant {
                conn_id: 1,
                index: 1,
                messages: 4
            }]
        );
        slots.check(&[16, 8]).expect("invariants");
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Peer `p` connects (closing its current connection first).
        Connect(u8),
        /// Peer `p`'s current connection closes.
        Close(u8),
        /// A closed connection releases some slots.
        Release(u8, u32),
        /// A closed connection ends.
        End(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6).prop_map(Op::Connect),
            (0u8..6).prop_map(Op::Close),
            (any::<u8>(), 1u32..10).prop_map(|(i, n)| Op::Release(i, n)),
            any::<u8>().prop_map(Op::End),
        ]
    }

    proptest! {
        /// Whatever peers do, no queue is overcommitted, no peer holds more
        /// than its window, and once every closed connection has ended each
        /// current connection holds its whole window (the queue has room
        /// for all of them).
        #[test]
        fn reservations_never_exceed_the_queue_or_the_window(ops in proptest::collection::vec(op(), 1..200)) {
            const WINDOW: u32 = 8;
            let capacity = u64::from(WINDOW) * 7;
            let mut slots = Slots::new([(WINDOW, capacity)]);
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
                    Op::Release(i, n) if !closed.is_empty() => {
                        let conn = closed[usize::from(i) % closed.len()];
                        slots.release(conn, 0, n);
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
                prop_assert_eq!(slots.reserved(*conn, 0), WINDOW);
            }
        }
    }
}
