//! The peer manager: which peers we know, which we dial, which connections we
//! keep, and whom we ban.
//!
//! [`PeerManager`] is a sans-IO state machine with one owner (the router's
//! task). It does no I/O, holds no lock and reads no clock: time comes in as
//! `Instant` arguments, and every random choice (backoff jitter, tie-breaks)
//! comes from a `ChaCha12Rng` seeded by the `u64` given to [`PeerManager::new`].
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
//!   peers from one network — an IPv4 /24 or an IPv6 /48
//!   ([`IpPrefix`](crate::IpPrefix)) — never exceed
//!   `max_inbound_per_prefix` (connections without an IP are not limited),
//!   dials in flight never exceed `max_concurrent_dials`. An evicted peer's
//!   slot is freed at once, before the router has closed its connection.
//! - **One address screen.** Every address enters the book through
//!   [`add_address`](PeerManager::add_address) (or
//!   [`request`](PeerManager::request), or [`load`](PeerManager::load)),
//!   whichever reactor or operator it comes from, and passes the same
//!   checks ([`AddAddressError`], each refusal counted by the router under
//!   `switchyard_p2p_addresses_refused_total{reason}`): not ourselves, not
//!   an unspecified IP, not port 0, not multicast, broadcast or reserved;
//!   not loopback, private, link-local or shared (RFC 6598), nor a name
//!   such as `localhost`, unless the source is trusted (config or
//!   operator: [`AddressSource::is_trusted`]) or `allow_private_addresses`
//!   is on; at most `max_ports_per_host` endpoints per host (IP or name)
//!   from untrusted sources; not a banned peer; not in a banned network
//!   (untrusted sources); at most `max_addresses_per_peer` per peer (config
//!   addresses exempt); and a place in the tables.
//! - **The address book** is two tables of buckets, as in Bitcoin's addrman
//!   and CometBFT's address book: *new* (heard of) and *tried* (dialed
//!   successfully). A peer heard of goes into the new bucket chosen by the
//!   network (/16) of whoever told us ([`AddressSource::ExchangeFrom`]) and
//!   by its own address's network: one source network reaches at most
//!   [`NEW_BUCKETS_PER_SOURCE`] (16) of the `new_buckets` (256). A peer we
//!   dialed successfully moves to the tried bucket chosen by its address's
//!   network: one network reaches at most [`TRIED_BUCKETS_PER_GROUP`] (4) of
//!   the `tried_buckets` (64). Buckets hold `bucket_size` (32) peers. Every
//!   choice is a keyed hash (SHA-256) under a secret drawn from the seed, so
//!   an attacker cannot aim its addresses at a bucket.
//! - **Eviction respects sources.** A full new bucket makes room only by
//!   forgetting a *terrible* entry (negative score, or 3 failed dials in a
//!   row) or the oldest entry from the newcomer's own source network; an
//!   untrusted newcomer that finds neither is refused
//!   ([`AddAddressError::BucketFull`]). So one source can churn its own
//!   entries but never push out what other sources told us. A full tried
//!   bucket moves back to new a terrible entry or the least recently tried
//!   one of the newcomer's own network; otherwise the newcomer stays in
//!   new. Connected, dialing, requested, trusted and persistent peers are
//!   never displaced.
//! - **Dials.** `next_dial` never returns a peer that is connected, being
//!   dialed, banned, or backing off, nor an address in a banned network.
//!   Ordinary dials stop at `max_outbound` counting connected outbound
//!   peers and dials in flight. Persistent peers are dialed first, then
//!   requested peers (a reactor's [`request`](PeerManager::request), up to
//!   `max_outbound + max_requested_outbound`; best score first, ties to a
//!   random seeded rank), then the book chooses — not uniformly over
//!   addresses: the tried or the new table (half each), then a *network*
//!   uniformly among those with a dialable peer in that table (the /16 of
//!   an IPv4 address, the /32 of an IPv6 one, the domain of a DNS name; an
//!   address without a host, `memory://`, counts in the network of the peer
//!   that told us, so a chain of Sybils telling each other's addresses stays
//!   one network), then a peer of it uniformly. Peers with a negative score
//!   are dialed only when no other is dialable.
//! - **Backoff.** After the n-th consecutive failed dial a peer waits
//!   `min(min_retry · 2^(n−1), max_retry) · (1 ± retry_jitter)`, and its next
//!   dial tries its next address. A connection resets the count. After a
//!   disconnection any peer waits `min_retry` before it is redialed, so a
//!   peer that hangs up on us is not hammered. A remote that refuses us
//!   ([`PeerManager::remote_refused`]: its goodbye right after `Hello` is
//!   `Rejected` or `Duplicate`) costs the same backoff, growing with each
//!   refusal in a row until a connection lasts; one that bans us
//!   (`Banned`) is not dialed before its ban ends — as long as its goodbye
//!   says, at most [`MAX_BAN_DURATION`], or `max_retry` if it does not say.
//!   Persistent peers too: whoever refuses us is not hammered.
//! - **Persistent peers** are always redialed (after a failure, with
//!   backoff; after a disconnection, after `min_retry`), are never evicted
//!   and never forgotten, and sit outside the tables. They are admitted even
//!   when their direction is full by evicting the worst-scored
//!   non-persistent peer of that direction (if there is none, they are
//!   rejected like anyone else), are exempt from the per-prefix limit, from
//!   network bans and from starting penalised, and are dialed past
//!   `max_outbound` when such an eviction is possible. Their addresses come
//!   only from the config, the operator or the store: a peer exchange cannot
//!   add or redirect them.
//! - **Upgrades.** When inbound is full, a newcomer whose score is strictly
//!   higher than the worst-scored connected non-persistent inbound peer takes
//!   its slot. Outbound slots are not upgraded (we chose those peers).
//! - **Scores decay** toward zero: they halve every `score_half_life` (1 h),
//!   time being passed in. A peer that stops misbehaving recovers.
//! - **Bans** last until their end (`ban_duration` for a report at or below
//!   `ban_threshold`); a banned peer is neither dialed nor admitted, and its
//!   exchanged addresses are refused. Bans apply to persistent peers too; a
//!   persistent peer is redialed when its ban ends. No ban lasts longer than
//!   [`MAX_BAN_DURATION`] (one year). Bans are persisted: the router saves
//!   them in the peer store ([`PeerManager::take_bans_changed`],
//!   [`PeerManager::bans`]) with their wall-clock end, and restores them at
//!   start ([`PeerManager::load_bans`]), so a restart does not lift them.
//!   [`PeerManager::unban`] lifts one; the peer comes back on its last
//!   chance, as after a ban that ended.
//! - **Networks pay for their keys.** Every penalty a peer earns is charged
//!   to the network (/24, /48) of its latest connection too, and every ban
//!   `-ban_threshold` (100) points; the network's score decays like a
//!   peer's. At or below `prefix_ban_threshold` (-300: three keys banned in
//!   quick succession, more if spread out) the network is banned for
//!   `ban_duration`: its
//!   connections are refused ([`RejectReason::PrefixBanned`]), its
//!   addresses neither learned from peers nor dialed. A key we never had a
//!   connection with starts at half its network's score (never at or below
//!   `disconnect_threshold`), so a fresh key no longer brings full credit.
//! - **A second connection** to a connected peer is
//!   [`RejectReason::AlreadyConnected`]; the router breaks simultaneous-dial
//!   ties itself. A connection to ourselves is
//!   [`RejectReason::SelfConnection`].
//!
//! # What is bounded, and what an attacker can do
//!
//! - **Address floods and eclipse attempts** (a peer, or a chain of Sybils,
//!   sending made-up or its own addresses): the tables hold at most
//!   `(new_buckets + tried_buckets) · bucket_size` peers (10,240 by
//!   default) of at most `max_addresses_per_peer` addresses (16). One
//!   source network fills at most 16 new buckets (512 peers) and displaces
//!   only its own entries; its addresses weigh in dials by the networks
//!   they are in. An attacker feeding 10,000 reachable addresses of its own
//!   network holds on average a few percent of a node's outbound slots, and
//!   never half of them (`tests.rs`, `eclipse`); one with addresses in 16
//!   networks holds a minority on average. What it cannot avoid is the
//!   arithmetic: an attacker with reachable addresses in as many /16s as
//!   the honest peers a node knows gets half of the dials from the tables.
//!   It can fill a known peer's address list with 16 bad addresses; dials
//!   rotate through them and stay on an address that works.
//! - **Connection floods** (many ids, or many connections from one
//!   network): bounded by `max_inbound` and `max_inbound_per_prefix`. A
//!   fresh id starts at its network's score (0 for a clean network), so it
//!   evicts only inbound peers with a lower score. A peer that only ever
//!   connected to us, with score 0 and no address, is forgotten when it
//!   disconnects; idle peers without an address kept for their score are at
//!   most the tried table's size, those closest to 0 forgotten first.
//! - **Fresh keys after a ban**: the network they come from carries the
//!   ban's charge, so its next keys start penalised, and repeated bans ban
//!   the network. To keep misbehaving at the old pace an attacker needs a
//!   fresh network (/24 or /48) every few bans, not a fresh key.
//! - **Bans** are kept apart from the book (forgetting a peer keeps its ban),
//!   at most as many as the tables hold; beyond that, expired bans go first,
//!   then the one ending soonest. Network records are at most
//!   [`MAX_PREFIX_RECORDS`] (4,096): those decayed to nothing go first, then
//!   the least recently charged, then the ban ending soonest.
//! - The book may exceed the tables only by the persistent peers, the
//!   connected peers without an address (bounded by the connection limits),
//!   idle peers kept for their score, and addresses the operator added by
//!   hand (a trusted address always finds room).
//! - Work per call is linear in the number of known peers (≤ ~12,000 by
//!   default); no call allocates more than its result or a list of
//!   candidates.

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
pub use self::admission::{Admission, Direction, RejectReason, RemoteRefusal, ReportOutcome};
pub use self::book::{NEW_BUCKETS_PER_SOURCE, TRIED_BUCKETS_PER_GROUP};
pub use self::config::{MAX_BAN_DURATION, PeerManagerConfig, PeerManagerConfigError};
pub use self::prefixes::MAX_PREFIX_RECORDS;
pub use self::state::PeerManager;
pub use p2p_core::PeerError;
