//! The one shape of every reactor's algorithm: a [`Core`] is a state
//! machine with no I/O. It is fed [`Input`]s and application commands with
//! the current time, and answers with [`Output`]s; randomness comes from
//! a seed given when it is built. Nothing in it waits, spawns, reads a
//! clock or touches a socket, and its crate does not depend on tokio (the
//! compiler enforces the rule; ADR 0001).
//!
//! Two drivers run every core:
//!
//! - on the router, `p2p::reactor::driver::run` — one task that feeds the
//!   core the router's peer updates, its channel's messages, its timer and
//!   the application's requests, and carries out its outputs (sends that
//!   never wait, dials, disconnects, reports);
//! - in the simulator, `testkit::sim::net` — the same inputs from a model
//!   of the router's connections (open and acknowledge, close, failure
//!   detection with the router's keepalive timing, optional drops when a
//!   send queue is full), for 10,000 nodes in one process.
//!
//! The shape follows iroh-gossip's `handle(InEvent, now) -> OutEvents` and
//! quinn-proto's `poll_timeout`: inputs in, outputs out, and one wake-up
//! time the driver sleeps until.
//!
//! What a core may rely on, whichever driver runs it:
//!
//! - [`Input::PeerUp`] comes before any message from that peer is handed
//!   in and before a send to it can succeed; [`Input::PeerDown`] follows
//!   it once the connection ends. A peer may come up again later (a new
//!   connection). After missed updates the router's driver resynchronises:
//!   the core may see `PeerDown` for a peer it never saw twice, never a
//!   second `PeerUp` without a `PeerDown` between, except in answer to
//!   [`Output::Connect`] for a peer already connected (which re-announces
//!   it).
//! - Messages from one peer arrive in the order it sent them, at most once
//!   each. A send may be dropped (the peer's queue is full, or it left):
//!   the core hears of it through [`Input::SendFailed`], with the message
//!   itself if [`Core::wants_back`] asked for it.
//! - [`Input::Timer`] comes at or after [`Core::next_wakeup`]; the driver
//!   asks for the wake-up time again after every input.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::address::PeerAddress;
use crate::identity::PeerId;
use crate::peer_error::PeerError;

/// A connected peer, as the router announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerUp {
    /// The peer.
    pub peer: PeerId,
    /// Whether the peer opened this core's channel. Peers that do not are
    /// announced too (peer exchange counts every connection), and a send
    /// to them fails.
    pub serves: bool,
    /// Whether the peer dialed us.
    pub inbound: bool,
    /// The listen addresses the peer announced, as it wrote them:
    /// unchecked text, parsed (and screened) by whoever uses them.
    pub addresses: Vec<String>,
    /// The IP the connection comes from, if it has one.
    pub ip: Option<IpAddr>,
}

impl PeerUp {
    /// `peer`, serving the channel, outbound, with no addresses or IP.
    pub fn new(peer: PeerId) -> Self {
        Self {
            peer,
            serves: true,
            inbound: false,
            addresses: Vec::new(),
            ip: None,
        }
    }

    /// The announced addresses that parse and name this peer, at most
    /// `max`.
    pub fn addresses_naming_peer(&self, max: usize) -> Vec<PeerAddress> {
        self.addresses
            .iter()
            .filter_map(|a| a.parse::<PeerAddress>().ok())
            .filter(|a| a.peer == self.peer)
            .take(max)
            .collect()
    }
}

/// Why a send did not reach the peer's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// The peer's send queue on the channel is full (the router counts
    /// the drop as `queue_full`).
    QueueFull,
    /// The peer is not connected, or does not serve the channel.
    NotConnected,
    /// The encoded message is larger than the channel allows (or, with
    /// the peer, than the peer accepts).
    TooLarge,
}

/// What a core is fed, besides application commands.
#[derive(Debug, Clone, PartialEq)]
pub enum Input<M, O> {
    /// A connection to a peer is up.
    PeerUp(PeerUp),
    /// The connection to a peer ended.
    PeerDown(PeerId),
    /// A message arrived on the core's channel.
    Message {
        /// Who sent it (authenticated by the transport).
        from: PeerId,
        /// The message, decoded by [`Core::decode`].
        message: M,
        /// Its encoded size in bytes (0 where a driver does not encode,
        /// unless [`Core::wire_size`] says otherwise).
        size: usize,
    },
    /// A frame on the core's channel that [`Core::decode`] refused. The
    /// core decides what to count and whom to report.
    Malformed {
        /// Who sent it.
        from: PeerId,
        /// Why it was refused.
        error: PeerError,
    },
    /// The time returned by [`Core::next_wakeup`] has come.
    Timer,
    /// A send was not queued.
    SendFailed {
        /// The peer it was for.
        to: PeerId,
        /// The message, if [`Core::wants_back`] asked for it.
        message: Option<M>,
        /// Why.
        reason: SendFailure,
    },
    /// An [`Output::Connect`] could not be carried out: no usable address,
    /// or the dial could not even start. (A dial that starts and fails
    /// later is not reported; the core times out its wait.)
    DialFailed(PeerId),
    /// The result of an [`Output::Effect`].
    Outcome(O),
}

/// What a core asks its driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output<M, E, F> {
    /// Queue `message` for `to`; never waits. A failure comes back as
    /// [`Input::SendFailed`].
    Send {
        /// The peer.
        to: PeerId,
        /// The message.
        message: M,
    },
    /// Queue `message` for every connected peer that serves the channel.
    Broadcast(M),
    /// Connect to `peer` (a reactor's request: the peer manager dials it
    /// first). If it is connected already, the driver announces it again
    /// with [`Input::PeerUp`].
    Connect {
        /// The peer.
        peer: PeerId,
        /// Where it may be reached; empty means "only if connected".
        addresses: Vec<PeerAddress>,
    },
    /// Close the connection to `peer`, and ban it for `ban` if given.
    Disconnect {
        /// The peer.
        peer: PeerId,
        /// How long to refuse it afterwards.
        ban: Option<Duration>,
    },
    /// Charge `peer` with `error` (its score drops; a fatal error closes
    /// the connection).
    Report {
        /// The peer.
        peer: PeerId,
        /// What it did.
        error: PeerError,
    },
    /// Something for the application (a delivery, a neighbour change).
    Event(E),
    /// Something only this reactor's driver knows how to do (write a
    /// record to its store, query the address book); its result, if any,
    /// comes back as [`Input::Outcome`].
    Effect(F),
}

/// The outputs a [`Core`] appends to.
pub type Outputs<C> = Vec<Output<<C as Core>::Message, <C as Core>::Event, <C as Core>::Effect>>;

/// The inputs a [`Core`] is fed.
pub type CoreInput<C> = Input<<C as Core>::Message, <C as Core>::Outcome>;

/// A reactor's algorithm as a sans-IO state machine (see the module docs).
pub trait Core {
    /// What the core sends and receives, decoded.
    type Message: Clone;
    /// The message's wire form on the core's channel (a Protobuf message;
    /// the router's driver requires `prost::Message + Default`).
    type Wire;
    /// A request from the application.
    type Command;
    /// The answer to a [`Command`](Self::Command), given at once.
    type Reply;
    /// What the core tells the application.
    type Event;
    /// Reactor-specific work for the driver ([`Output::Effect`]); `()`
    /// if none.
    type Effect;
    /// The result of an effect ([`Input::Outcome`]); `()` if none.
    type Outcome;

    /// Handles one input at time `now`, appending what follows to `out`.
    fn handle(&mut self, now: Instant, input: CoreInput<Self>, out: &mut Outputs<Self>);

    /// Handles an application command at time `now`: the reply comes back
    /// at once, and what follows is appended to `out`.
    fn command(
        &mut self,
        now: Instant,
        command: Self::Command,
        out: &mut Outputs<Self>,
    ) -> Self::Reply;

    /// When the core next needs [`Input::Timer`]; `None` if never.
    fn next_wakeup(&self) -> Option<Instant>;

    /// Decodes a frame from the channel: `Ok(None)` for a message of a
    /// kind this version ignores (an unknown variant), `Err` for one the
    /// sender should not have sent (it comes back as [`Input::Malformed`]).
    fn decode(&self, wire: Self::Wire) -> Result<Option<Self::Message>, PeerError>;

    /// Encodes a message for the channel.
    fn encode(message: Self::Message) -> Self::Wire;

    /// Whether a failed send of `message` should hand it back in
    /// [`Input::SendFailed`] (the driver then keeps a copy while sending).
    /// Default: never.
    fn wants_back(&self, message: &Self::Message) -> bool {
        let _ = message;
        false
    }

    /// The size `message` would have on the wire, for drivers that do not
    /// encode (the simulator). Default: 0, for cores that never read the
    /// size.
    fn wire_size(&self, message: &Self::Message) -> usize {
        let _ = message;
        0
    }
}
