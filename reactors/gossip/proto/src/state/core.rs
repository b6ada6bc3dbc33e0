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
use crate::state::message::{Contact, MAX_CONTACT_ADDRESSES, MessageId, TopicId, TopicMessage};
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
        TopicMessage::from_wire(wire, self.config().max_payload_size)
            .map_err(|e| e.charge(CHANNEL_NAME))
    }

    fn encode(message: TopicMessage) -> proto::GossipMessage {
        message.into()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use p2p_core::reactor::{Output, PeerUp};
    use p2p_core::{Keypair, PeerAddress, PeerId};

    use super::*;
    use crate::config::GossipConfig;
    use crate::state::GossipOutput;
    use crate::state::message::{Message, SignedMessage};

    const UNIX: u64 = 1_700_000_000_000;

    fn peer(n: u64) -> PeerId {
        Keypair::from_seed(100 + n).peer_id()
    }

    fn node(now: Instant) -> GossipState {
        GossipState::new(
            Keypair::from_seed(100),
            vec![],
            GossipConfig::default(),
            1,
            now,
            UNIX,
        )
    }

    fn feed(
        node: &mut GossipState,
        now: Instant,
        input: CoreInput<GossipState>,
    ) -> Vec<GossipOutput> {
        let mut out = Vec::new();
        node.handle(now, input, &mut out);
        out
    }

    fn up(peer: PeerId, serves: bool) -> CoreInput<GossipState> {
        Input::PeerUp(PeerUp {
            serves,
            addresses: vec![PeerAddress::memory(peer).to_string()],
            ..PeerUp::new(peer)
        })
    }

    #[test]
    fn only_peers_serving_the_channel_become_connections() {
        let now = Instant::now();
        let mut node = node(now);
        assert!(feed(&mut node, now, up(peer(1), false)).is_empty());
        assert!(!node.is_connected(&peer(1)));
        feed(&mut node, now, up(peer(2), true));
        assert!(node.is_connected(&peer(2)));
        feed(&mut node, now, Input::PeerDown(peer(2)));
        assert!(!node.is_connected(&peer(2)));
    }

    #[test]
    fn a_full_queue_is_counted_and_a_peer_gone_ends_the_connection() {
        let now = Instant::now();
        let mut node = node(now);
        feed(&mut node, now, up(peer(1), true));
        let failed = |reason| Input::SendFailed {
            to: peer(1),
            message: None,
            reason,
        };
        feed(&mut node, now, failed(SendFailure::QueueFull));
        assert_eq!(node.stats().send_failures, 1);
        assert!(
            node.is_connected(&peer(1)),
            "a full queue loses one message"
        );
        feed(&mut node, now, failed(SendFailure::NotConnected));
        assert_eq!(node.stats().send_failures, 2);
        assert!(!node.is_connected(&peer(1)));
    }

    #[test]
    fn a_failed_dial_gives_the_connection_up_at_once() {
        let now = Instant::now();
        let mut node = node(now);
        let topic = TopicId::from_name("t");
        let contact = Contact {
            peer: peer(1),
            addresses: vec![PeerAddress::memory(peer(1))],
        };
        let mut out = Vec::new();
        let join = GossipCommand::Join {
            topic,
            bootstrap: vec![contact],
        };
        assert_eq!(
            node.command(now, join, &mut out),
            GossipReply::Joined(Ok(()))
        );
        assert!(matches!(
            out.as_slice(),
            [Output::Connect { peer: p, addresses }] if *p == peer(1) && addresses.len() == 1
        ));
        assert_eq!(node.pending_dials(), 1);
        // A failure for a peer never asked for changes nothing.
        feed(&mut node, now, Input::DialFailed(peer(2)));
        assert_eq!(node.stats().dials_failed, 0);
        // Well before dial_timeout, the wait ends.
        let later = now + Duration::from_millis(10);
        feed(&mut node, later, Input::DialFailed(peer(1)));
        assert_eq!(node.pending_dials(), 0);
        assert_eq!(node.stats().dials_failed, 1);
        assert_eq!(node.stats().pending_dropped, 1, "the held Join");
        // A connected peer is not dropped by a failure of a dial it did
        // not need.
        feed(&mut node, later, up(peer(3), true));
        feed(&mut node, later, Input::DialFailed(peer(3)));
        assert!(node.is_connected(&peer(3)));
    }

    #[test]
    fn a_connected_contact_is_joined_over_its_connection() {
        let now = Instant::now();
        let mut node = node(now);
        feed(&mut node, now, up(peer(1), true));
        let mut out = Vec::new();
        let join = GossipCommand::Join {
            topic: TopicId::from_name("t"),
            bootstrap: vec![Contact::bare(peer(1))],
        };
        node.command(now, join, &mut out);
        assert!(matches!(
            out.as_slice(),
            [Output::Send { to, message }] if *to == peer(1) && matches!(message.message, Message::Join { .. })
        ));
    }

    #[test]
    fn refused_frames_are_counted_and_their_sender_reported() {
        let now = Instant::now();
        let mut node = node(now);
        let topic = TopicId::from_name("t");
        let big = Bytes::from(vec![0u8; node.config().max_payload_size + 1]);
        let signed = SignedMessage::sign(&Keypair::from_seed(7), &topic, UNIX, 1, big);
        let wire = GossipState::encode(TopicMessage {
            topic,
            message: Message::Gossip {
                message: signed,
                hops: 1,
            },
        });
        let error = node.decode(wire).expect_err("oversized");
        assert!(matches!(
            error,
            PeerError::MessageTooLarge {
                channel: CHANNEL_NAME,
                ..
            }
        ));
        let out = feed(
            &mut node,
            now,
            Input::Malformed {
                from: peer(1),
                error,
            },
        );
        assert!(matches!(out.as_slice(), [Output::Report { peer: p, .. }] if *p == peer(1)));
        assert_eq!(node.stats().oversized_refused, 1);

        let garbage = proto::GossipMessage {
            topic: Bytes::from_static(b"short"),
            kind: None,
        };
        let error = node.decode(garbage).expect_err("a topic of 5 bytes");
        feed(
            &mut node,
            now,
            Input::Malformed {
                from: peer(1),
                error,
            },
        );
        assert_eq!(node.stats().malformed_refused, 1);
    }

    #[test]
    fn commands_are_answered_variant_for_variant() {
        let now = Instant::now();
        let mut node = node(now);
        let topic = TopicId::from_name("t");
        let mut out = Vec::new();
        let publish = |payload: &'static [u8]| GossipCommand::Publish {
            topic,
            payload: Bytes::from_static(payload),
        };
        assert_eq!(
            node.command(now, publish(b"early"), &mut out),
            GossipReply::Published(Err(PublishError::NotJoined(topic)))
        );
        let join = GossipCommand::Join {
            topic,
            bootstrap: vec![],
        };
        assert_eq!(
            node.command(now, join, &mut out),
            GossipReply::Joined(Ok(()))
        );
        assert!(matches!(
            node.command(now, publish(b"hello"), &mut out),
            GossipReply::Published(Ok(_))
        ));
        assert_eq!(
            node.command(now, GossipCommand::Leave(topic), &mut out),
            GossipReply::Left
        );
        assert!(!node.is_joined(&topic));
        assert!(node.next_wakeup().is_some_and(|at| at > now));
    }
}
