//! Peer exchange (pex): nodes tell each other the addresses they know, so
//! a network grows from one bootstrap peer.
//!
//! [`Pex`] is a [`Reactor`](p2p::Reactor): open it on a node and the one
//! reactor driver (`p2p::reactor::driver`) runs its sans-IO core
//! ([`PexState`], in the tokio-free crate `reactor-pex-proto`) beside a
//! thin shell ([`reactor`]). It feeds the peer manager through
//! [`Router::add_addresses`](p2p::Router::add_addresses) with
//! [`AddressSource::ExchangeFrom`](p2p::AddressSource::ExchangeFrom)`(the
//! peer that told us)`; the peer manager screens every address (the one
//! screen every reactor's addresses pass), places it in its address book's
//! buckets by the teller's network, and does the dialing, the slots and the
//! backoff.
//!
//! # The protocol
//!
//! One channel, id `0x0010` (`"pex"`), one Protobuf message
//! (`proto/pex.proto`, package `switchyard.pex.v1`): a `PexMessage` that is
//! either a `Request { id }` or a `Response { id, addresses, observed_ip }`.
//!
//! # What is sent
//!
//! - **Requests.** While the node has fewer than `min_peers` connected
//!   peers it asks one peer every `request_interval` (30 s), and asks every
//!   peer that comes up at once; at or above `min_peers` it still asks one
//!   peer every `10 × request_interval`, so the book stays fresh. The peer
//!   asked is the one asked least recently (ties at random, from the
//!   reactor's seed). It never asks a peer with a request outstanding, nor
//!   one it asked within `min_request_gap` (15 s). A request unanswered for
//!   `request_interval` is given up.
//! - **Responses.** Each accepted request gets exactly one response with
//!   the request's id and at most `max_addresses_per_response` (100, never
//!   more) addresses sampled at random from the address book: one per
//!   peer, never the requester's own, never a banned peer's or one with a
//!   negative score.
//! - **Announced addresses.** When a peer comes up, the listen addresses
//!   it announced in its `Hello` (at most 32) are checked like exchanged
//!   ones and added; an unspecified IP (`0.0.0.0`, `::`) is replaced by the
//!   IP the transport observed for the connection. So the bootstrap node
//!   learns dialable addresses of the nodes that dial it.
//! - **The IP we see you at.** Every response also carries the IP the
//!   responder sees the requester's connection come from
//!   (`observed_ip`). A node counts these observations from the peers it
//!   asked ([`observed`]): once `observed_quorum` (3) distinct networks
//!   (the /24 or /48 of the IP *we* see each observer at, so many
//!   identities in one network are one vote) report the same IP, of the
//!   same scope as theirs (public, private or loopback), the node
//!   announces that IP with its listen ports in every later `Hello`
//!   ([`Router::set_observed_ip`](p2p::Router::set_observed_ip)), ahead of
//!   its listen addresses — unless `external_addresses` are configured,
//!   which win. The IP reported by the most networks wins; a vote lasts 30
//!   minutes. Logged at INFO when it changes;
//!   `switchyard_pex_observed_address{ip}` shows it. An unspecified,
//!   multicast or broadcast IP never counts.
//! - Sends never wait ([`ChannelSender::try_send`](p2p::ChannelSender::try_send)):
//!   a full send queue drops the message (counted by the router); a
//!   dropped request simply times out.
//!
//! # What is refused
//!
//! - A **request** sooner than `min_request_gap` after the requester's
//!   last answered one gets no answer and is reported
//!   ([`FLOOD_PENALTY`](state::FLOOD_PENALTY) points). The limit is per
//!   PeerId and survives reconnection.
//! - A **response** is refused as a whole — nothing from it used — and
//!   reported when:
//!   it answers no request of ours (unsolicited, a wrong id, or a second
//!   answer: [`UNSOLICITED_PENALTY`](state::UNSOLICITED_PENALTY));
//!   it has more than 100 addresses or one longer than 512 bytes (checked
//!   first, before parsing anything; a fatal
//!   [`PeerError::Protocol`](p2p::PeerError::Protocol): the peer is
//!   disconnected);
//!   an address does not parse ([`MALFORMED_PENALTY`](state::MALFORMED_PENALTY)).
//!   One malformed entry spoils the whole response on purpose: an honest
//!   node only hands out addresses it parsed itself, so garbage means a
//!   broken or hostile peer whose other entries deserve no trust either.
//!   An address with a transport scheme we do not know is skipped, not
//!   malformed, so newer nodes can hand out new kinds of address.
//!   An answer is matched to our latest request to that PeerId, not to a
//!   connection: one sent back over a connection that replaced the one we
//!   asked on is taken. One that comes after we gave up waiting, or from a
//!   peer gone whose request we forgot, is ignored and not reported.
//! - An **address** is dropped, and counted by [`AddressRefusal`], when it
//!   repeats an earlier entry of the same message, or (an announced one)
//!   names another peer or does not parse. Everything that applies to any
//!   address, whoever sends it, is the peer manager's screen
//!   ([`p2p::AddAddressError`]): ourselves, an unspecified IP, port 0,
//!   multicast, loopback or private addresses (unless the node allows
//!   them, `allow_private_addresses`), more than `max_ports_per_host` (2)
//!   endpoints per host (IP or DNS name) in the whole book, banned peers
//!   and networks, a full bucket. What it refuses is counted here as
//!   [`AddressRefusal::PeerManager`] and by the router by reason
//!   (`switchyard_p2p_addresses_refused_total{reason}`).
//!
//! Every counter is in [`PexStats`], from [`PexHandle::stats`].
//!
//! # What an attacker can do, and what stops it
//!
//! - **Flood requests**: each costs it score; five early requests in a
//!   row reach the default disconnect threshold (-50), ten a ban. It gets
//!   one answer per `min_request_gap` at most, and it cannot have more than
//!   4 messages in flight on the channel (the channel's credit).
//! - **Poison the book, eclipse the node**: a malformed or oversized
//!   response is refused whole and costs score. Well-formed made-up peers
//!   are accepted — nothing can tell them apart — but at most 100 per
//!   response, only in answer to our requests (one peer every 30 s while we
//!   are short of peers, every 5 minutes otherwise). In the peer manager's
//!   book, what one peer tells us reaches only the few buckets of its
//!   network (/16), where it can displace only what its own network told
//!   us, and dials weigh addresses by their networks, not their number: an
//!   attacker feeding 10,000 addresses of its own never holds half of a
//!   node's outbound peers (see the peer manager's docs).
//! - **One host's many ports**: at most `max_ports_per_host` endpoints per
//!   host reach the book from peers, so a peer cannot make us fill the
//!   book with, or dial, many ports of one machine (its own sybils, or a
//!   victim's). Addresses given in the config or by the operator are not
//!   limited.
//! - **Point us at a local network**: loopback, private and link-local
//!   addresses from peers are refused unless the node allows them.
//! - **Choose the address we announce**: it needs `observed_quorum`
//!   networks, and more networks than the honest observers, all answering
//!   our own requests; a public observer naming a private or unusable IP
//!   is not counted. What it wins is an address where we may not be
//!   reachable (fewer inbound peers); our own dials are unaffected, and a
//!   configured `external_addresses` is never overridden.
//! - **Limits**: the per-host limit keys on the exact IP or name, so an
//!   attacker with many IPs (an IPv6 /64, many DNS names) gets more places
//!   in the book — but not more weight in dials, which count networks. A
//!   fresh PeerId costs nothing, so the request rate limit is per
//!   connection slot in effect, bounded by the peer manager's per-network
//!   inbound limit, and penalties charge the requester's network as well.
//!   Exchanged addresses never touch persistent peers (the peer manager
//!   ignores them).

pub mod reactor;
pub mod stats;

pub use reactor::{Pex, PexHandle};
pub use reactor_pex_proto::config::MAX_OBSERVED_QUORUM;
pub use reactor_pex_proto::state::PeerUp;
pub use reactor_pex_proto::{
    Action, AddressRefusal, CHANNEL_ID, Effect, MAX_ADDRESS_LEN, MAX_ADDRESSES_PER_RESPONSE,
    Message, ObservedIp, Outcome, PexConfig, PexConfigError, PexState, PexStats, RefusedAddresses,
    address_check, config, observed, proto, state,
};
