//! The peer manager: which peers we know, which we dial, which connections we
//! keep, and whom we ban.
//!
//! [`PeerManager`] is a sans-IO state machine with one owner (the router's
//! task). It does no I/O, holds no lock and reads no clock: time comes in as
//! `Instant` arguments, and every random choice (backoff jitter, tie-breaks)
//! comes from a `StdRng` seeded by the `u64` given to [`PeerManager::new`].
//! Its maps are ordered, so the same seed and the same calls always give the
//! same results.
//!
//! # The driver's loop
//!
//! 1. At start: [`PeerManager::new`] with the config, then
//!    [`PeerManager::load`] the records of the [`PeerStore`](crate::peer_store::PeerStore).
//! 2. Call [`PeerManager::next_dial`] until it returns `None`, dialing each
//!    address; report each outcome with [`PeerManager::dialed`] or
//!    [`PeerManager::dial_failed`]. Sleep until [`PeerManager::next_dial_at`]
//!    or the next event, whichever comes first.
//! 3. Ask [`PeerManager::accepted`] about every authenticated inbound
//!    connection. On [`Admission::Reject`] close it; on
//!    `Admission::Admit { evict: Some(peer) }` close `peer`'s connection.
//! 4. Report every closed connection with [`PeerManager::disconnected`] and
//!    every misbehaviour with [`PeerManager::report`].
//! 5. Now and then, save [`PeerManager::take_dirty`] and remove
//!    [`PeerManager::take_forgotten`] in the store (write-behind).
//!
//! # Promises
//!
//! - **Connection limits hold at every moment.** Connected inbound peers
//!   never exceed `max_inbound`, connected outbound peers never exceed
//!   `max_outbound + max_requested_outbound` (and only peers a reactor
//!   [requested](PeerManager::request) go past `max_outbound`), inbound
//!   peers from one IP never exceed `max_inbound_per_ip` (connections
//!   without an IP are not limited), dials in flight never exceed
//!   `max_concurrent_dials`. An evicted peer's slot is freed at once,
//!   before the router has closed its connection.
//! - **Dials.** `next_dial` never returns a peer that is connected, being
//!   dialed, banned, or backing off. Ordinary dials stop at `max_outbound`
//!   counting connected outbound peers and dials in flight. Persistent peers
//!   are dialed first, then requested peers (a reactor's
//!   [`request`](PeerManager::request), up to `max_outbound +
//!   max_requested_outbound`), then the best scores; ties go to a random
//!   (seeded) rank, so a peer cannot win them by choosing its id.
//! - **Backoff.** After the n-th consecutive failed dial a peer waits
//!   `min(min_retry · 2^(n−1), max_retry) · (1 ± retry_jitter)`, and its next
//!   dial tries its next address. A connection resets the count. After a
//!   disconnection any peer waits `min_retry` before it is redialed, so a
//!   peer that hangs up on us is not hammered.
//! - **Persistent peers** are always redialed (after a failure, with
//!   backoff; after a disconnection, after `min_retry`), are never evicted
//!   and never forgotten. They are admitted even when their direction is full
//!   by evicting the worst-scored non-persistent peer of that direction (if
//!   there is none, they are rejected like anyone else), are exempt from the
//!   per-IP limit, and are dialed past `max_outbound` when such an eviction
//!   is possible. Their addresses come only from the config, the operator or
//!   the store: a peer exchange cannot add or redirect them.
//! - **Upgrades.** When inbound is full, a newcomer whose score is strictly
//!   higher than the worst-scored connected non-persistent inbound peer takes
//!   its slot. Outbound slots are not upgraded (we chose those peers).
//! - **Bans** last until their end (`ban_duration` for a report at or below
//!   `ban_threshold`); a banned peer is neither dialed nor admitted, and its
//!   exchanged addresses are refused. Bans apply to persistent peers too; a
//!   persistent peer is redialed when its ban ends. Bans are not persisted:
//!   a restart lifts them, but the low score is stored, so the next report
//!   bans again.
//! - **A second connection** to a connected peer is
//!   [`RejectReason::AlreadyConnected`]; the router breaks simultaneous-dial
//!   ties itself. A connection to ourselves is
//!   [`RejectReason::SelfConnection`].
//!
//! # What is bounded, and what an attacker can do
//!
//! - **Address floods** (peer exchange sending made-up peers): the book holds
//!   at most `max_addresses` peers (default 10 000) of at most
//!   `max_addresses_per_peer` addresses (default 16). A new peer beyond the
//!   limit forgets the worst-scored peer that is not persistent, connected or
//!   being dialed; at equal score a never-connected peer goes before one we
//!   have been connected to. An attacker can therefore churn the
//!   never-connected part of the book, but cannot displace persistent or
//!   connected peers, nor better-scored ones with equal-scored fakes. It can
//!   fill a known peer's address list with 16 bad addresses; dials rotate
//!   through them and stay on an address that works.
//! - **Connection floods** (many ids, or many connections from one IP):
//!   bounded by `max_inbound` and `max_inbound_per_ip`. A fresh id has score
//!   0, so it evicts only inbound peers with a negative score. A peer that
//!   only ever connected to us, with score 0 and no address, is forgotten
//!   when it disconnects.
//! - **Bans** are kept apart from the book (forgetting a peer keeps its ban),
//!   at most `max(max_addresses, 1)` of them; beyond that, expired bans go
//!   first, then the one ending soonest.
//! - The book may exceed `max_addresses` only by the persistent peers and
//!   by connected peers it could not make room for (bounded by the
//!   connection limits).
//! - Work per call is linear in the number of known peers (≤ 10 000 by
//!   default); no call allocates more than its result.

mod address_book;
mod admission;
mod backoff;
mod book;
mod config;
mod prefixes;
mod screen;
mod state;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

pub use self::address_book::{AddAddressError, AddressSource};
pub use self::admission::{Admission, Direction, RejectReason, ReportOutcome};
pub use self::book::{NEW_BUCKETS_PER_SOURCE, TRIED_BUCKETS_PER_GROUP};
pub use self::config::{PeerManagerConfig, PeerManagerConfigError};
pub use self::prefixes::MAX_PREFIX_RECORDS;
pub use self::state::PeerManager;
