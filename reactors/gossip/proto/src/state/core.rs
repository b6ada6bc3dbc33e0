//! [`GossipState`] as a [`Core`]: the one shape every driver runs
//! (`p2p_core::reactor::driver` on the router, `testkit::sim::net` in the
//! simulator).
//!
//! What the inputs mean to gossip:
//!
//! - [`Input::PeerUp`] of a peer that serves the gossip channel makes it a
//!   connection the topics may use (its announced addresses that name it
//!   become its contact); peers that do not serve the channel are ignored.
//!   A `PeerUp` for a peer already connected (the driver's answer to
//!   [`Output::Connect`] for a connected peer) flushes what waited for it.
//! - [`Input::PeerDown`] ends the connection: every topic drops the peer.
//! - [`Input::Message`] is a checked [`TopicMessage`];
//!   [`Input::Malformed`] is counted (`oversized_refused` or
//!   `malformed_refused`) and its sender reported.
//! - [`Input::SendFailed`] is counted (`send_failures`); a send to a peer
//!   that is not connected (any more) also ends the connection, as a peer
//!   down would. A full queue loses the message only: Plumtree's
//!   announcements recover a lost payload.
//! - [`Input::DialFailed`] gives up a connection asked for at once,
//!   instead of after `dial_timeout`.
//!
//! Gossip has no effects: [`Core::Effect`] and [`Core::Outcome`] are `()`.

use std::time::Instant;

use bytes::Bytes;
use p2p_core::PeerError;
use p2p_core::reactor::{Core, CoreInput, Input, Outputs, SendFailure};

use crate::CHANNEL_NAME;
use crate::proto;
use crate::state::message::{
    Contact, MAX_CONTACT_ADDRESSES, MessageId, TopicId, TopicMessage, WireError,
};
use crate::state::{Event, GossipState, JoinError, PublishError};

/// An application's request to the gossip core ([`Core::command`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipCommand {
    /// Join `topic` through `bootstrap` ([`GossipState::join`]).
    Join {
        /// The topic.
        topic: TopicId,
        /// Members, or peers that may be.
        bootstrap: Vec<Contact>,
    },
    /// Leave `topic` ([`GossipState::leave`]).
    Leave(TopicId),
    /// Publish `payload` on `topic` ([`GossipState::publish`]).
    Publish {
        /// The topic.
        topic: TopicId,
        /// The application's bytes.
        payload: Bytes,
    },
}

/// The answer to a [`GossipCommand`], variant for variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipReply {
    /// To [`GossipCommand::Join`].
    Joined(Result<(), JoinError>),
    /// To [`GossipCommand::Leave`].
    Left,
    /// To [`GossipCommand::Publish`]: the message's id.
    Published(Result<MessageId, PublishError>),
}

/// The [`PeerError`] a refused frame charges its sender with.
pub fn wire_error(error: WireError) -> PeerError {
    match error {
        WireError::TooLarge { size, max } => PeerError::MessageTooLarge {
            channel: CHANNEL_NAME,
            size,
            max,
        },
        WireError::Malformed(detail) => PeerError::MalformedMessage {
            channel: CHANNEL_NAME,
            detail,
        },
    }
}

impl Core for GossipState {
    type Message = TopicMessage;
    type Wire = proto::GossipMessage;
    type Command = GossipCommand;
    type Reply = GossipReply;
    type Event = Event;
    type Effect = ();
    type Outcome = ();

    fn handle(&mut self, now: Instant, input: CoreInput<Self>, out: &mut Outputs<Self>) {
        match input {
            Input::PeerUp(up) => {
                if up.serves {
                    let addresses = up.addresses_naming_peer(MAX_CONTACT_ADDRESSES);
                    out.extend(self.on_peer_up(up.peer, addresses, now));
                }
            }
            Input::PeerDown(peer) => out.extend(self.on_peer_down(peer, now)),
            Input::Message { from, message, .. } => out.extend(self.on_message(from, message, now)),
            Input::Malformed { from, error } => out.extend(self.on_refused(from, error)),
            Input::Timer => out.extend(self.on_tick(now)),
            Input::SendFailed { to, reason, .. } => {
                self.stats.send_failures += 1;
                if reason == SendFailure::NotConnected {
                    out.extend(self.on_peer_down(to, now));
                }
            }
            Input::DialFailed(peer) => out.extend(self.on_dial_failed(peer, now)),
            Input::Outcome(()) => {}
        }
    }

    fn command(
        &mut self,
        now: Instant,
        command: GossipCommand,
        out: &mut Outputs<Self>,
    ) -> GossipReply {
        match command {
            GossipCommand::Join { topic, bootstrap } => {
                GossipReply::Joined(self.join(topic, bootstrap, now, out))
            }
            GossipCommand::Leave(topic) => {
                self.leave(topic, now, out);
                GossipReply::Left
            }
            GossipCommand::Publish { topic, payload } => {
                GossipReply::Published(self.publish(topic, payload, now, out))
            }
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        Some(self.wakeup())
    }

    fn decode(&self, wire: proto::GossipMessage) -> Result<Option<TopicMessage>, PeerError> {
        TopicMessage::from_wire(wire, self.config().max_payload_size).map_err(wire_error)
    }

    fn encode(message: TopicMessage) -> proto::GossipMessage {
        message.into()
    }
}
