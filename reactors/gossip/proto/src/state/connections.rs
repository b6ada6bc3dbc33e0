//! Which peers the core has a connection to, and the connections it asked
//! the driver for.
//!
//! The router owns connections; gossip only asks. When a topic sends to a
//! peer with no connection (a joiner at the end of a walk, a passive peer
//! asked to be a neighbour, a shuffle's origin), the message is held here,
//! at most `max_pending_messages` per peer, and the driver is asked once
//! to [`Connect`](p2p_core::reactor::Output::Connect). The held messages go out when
//! the peer comes up; if it does not within `dial_timeout` (or the driver
//! reports the dial failed), they are dropped and the topics are told the
//! peer is unreachable. A connection
//! the core asked for and no topic needs any more (out of every active
//! view) is released after `release_after`
//! ([`Disconnect`](p2p_core::reactor::Output::Disconnect)); connections the core did
//! not ask for (dialed by the peer, by the peer manager, by other
//! reactors) are never released by gossip.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use p2p_core::reactor::Output;
use p2p_core::{PeerAddress, PeerId};

use crate::config::GossipConfig;
use crate::state::GossipOutput;
use crate::state::message::{Contact, TopicMessage};
use crate::stats::GossipStats;

#[derive(Debug)]
struct Connection {
    addresses: Vec<PeerAddress>,
    /// We asked for it, so we may release it.
    requested: bool,
    /// Since when no topic has needed it.
    idle_since: Option<Instant>,
    /// A release was asked for; waiting for the peer to go down.
    releasing: bool,
    /// When it came up.
    since: Instant,
}

#[derive(Debug)]
struct PendingDial {
    deadline: Instant,
    queue: Vec<TopicMessage>,
}

/// Connected peers offered to the topics.
#[derive(Debug, Default)]
pub(crate) struct Candidates {
    /// Every connected peer.
    pub(crate) connected: Vec<Contact>,
    /// Long-lived connections we did not ask for.
    pub(crate) stable: Vec<Contact>,
}

/// What a peer-down notice meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Down {
    /// A connection we were waiting for could not be made.
    DialFailed,
    /// A connection we had broke (or one we never knew of).
    Lost,
}

#[derive(Debug)]
pub(crate) struct Connections {
    peers: BTreeMap<PeerId, Connection>,
    pending: BTreeMap<PeerId, PendingDial>,
    limits: Limits,
}

/// The connection settings of [`GossipConfig`].
#[derive(Debug, Clone, Copy)]
struct Limits {
    dial_timeout: Duration,
    release_after: Duration,
    max_pending_dials: usize,
    max_pending_messages: usize,
}

/// Emits a send and counts it.
pub(crate) fn emit_send(
    to: PeerId,
    message: TopicMessage,
    stats: &mut GossipStats,
    actions: &mut Vec<GossipOutput>,
) {
    if message.message.is_payload() {
        stats.payload_sent += 1;
    } else {
        stats.control_sent += 1;
    }
    actions.push(Output::Send { to, message });
}

impl Connections {
    pub(crate) fn new(config: &GossipConfig) -> Self {
        Self {
            peers: BTreeMap::new(),
            pending: BTreeMap::new(),
            limits: Limits {
                dial_timeout: config.dial_timeout,
                release_after: config.release_after,
                max_pending_dials: config.max_pending_dials,
                max_pending_messages: config.max_pending_messages,
            },
        }
    }

    pub(crate) fn is_connected(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    /// Connected peers as contacts (for a join when no other contact is
    /// known), and those up for at least `stable_after` and not asked for
    /// by us (bridges to merge overlays through).
    pub(crate) fn candidates(&self, now: Instant, stable_after: Duration) -> Candidates {
        let mut candidates = Candidates::default();
        for (peer, c) in &self.peers {
            let contact = Contact {
                peer: *peer,
                addresses: c.addresses.clone(),
            };
            if !c.requested && now.saturating_duration_since(c.since) >= stable_after {
                candidates.stable.push(contact.clone());
            }
            candidates.connected.push(contact);
        }
        candidates
    }

    /// Stable connections last at least this long (temporary ones the
    /// peer asked for are released well before).
    pub(crate) fn stable_after(&self) -> Duration {
        3 * self.limits.release_after
    }

    /// The addresses `peer`'s connection announced (none if not
    /// connected).
    pub(crate) fn addresses(&self, peer: &PeerId) -> Vec<PeerAddress> {
        self.peers
            .get(peer)
            .map(|c| c.addresses.clone())
            .unwrap_or_default()
    }

    pub(crate) fn peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.peers.keys().copied()
    }

    pub(crate) fn pending_dials(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Sends now if connected; otherwise holds the message and asks for a
    /// connection (once per peer).
    pub(crate) fn send(
        &mut self,
        to: PeerId,
        dial: Vec<PeerAddress>,
        message: TopicMessage,
        now: Instant,
        stats: &mut GossipStats,
        actions: &mut Vec<GossipOutput>,
    ) {
        if self.peers.contains_key(&to) {
            emit_send(to, message, stats, actions);
            return;
        }
        if let Some(pending) = self.pending.get_mut(&to) {
            if pending.queue.len() < self.limits.max_pending_messages {
                pending.queue.push(message);
            } else {
                stats.pending_dropped += 1;
            }
            return;
        }
        if self.pending.len() >= self.limits.max_pending_dials {
            stats.pending_dropped += 1;
            return;
        }
        self.pending.insert(
            to,
            PendingDial {
                deadline: now + self.limits.dial_timeout,
                queue: vec![message],
            },
        );
        stats.dials_requested += 1;
        actions.push(Output::Connect {
            peer: to,
            addresses: dial,
        });
    }

    /// `peer` is connected: flush what waited for it.
    pub(crate) fn on_up(
        &mut self,
        peer: PeerId,
        addresses: Vec<PeerAddress>,
        now: Instant,
        stats: &mut GossipStats,
        actions: &mut Vec<GossipOutput>,
    ) {
        let pending = self.pending.remove(&peer);
        let connection = self.peers.entry(peer).or_insert(Connection {
            addresses: Vec::new(),
            requested: pending.is_some(),
            idle_since: None,
            releasing: false,
            since: now,
        });
        if !addresses.is_empty() {
            connection.addresses = addresses;
        }
        connection.releasing = false;
        if let Some(pending) = pending {
            for message in pending.queue {
                emit_send(peer, message, stats, actions);
            }
        }
    }

    /// A message came from `peer`, so a connection exists.
    pub(crate) fn on_message_from(
        &mut self,
        peer: PeerId,
        now: Instant,
        stats: &mut GossipStats,
        actions: &mut Vec<GossipOutput>,
    ) {
        if !self.peers.contains_key(&peer) {
            self.on_up(peer, Vec::new(), now, stats, actions);
        }
    }

    /// The driver could not dial `peer`: a connection we were waiting for
    /// is given up at once (its held messages dropped), as at its
    /// deadline. Whether we were waiting for it.
    pub(crate) fn dial_failed(&mut self, peer: &PeerId, stats: &mut GossipStats) -> bool {
        let Some(pending) = self.pending.remove(peer) else {
            return false;
        };
        stats.dials_failed += 1;
        stats.pending_dropped += pending.queue.len() as u64;
        true
    }

    pub(crate) fn on_down(&mut self, peer: &PeerId, stats: &mut GossipStats) -> Down {
        if self.pending.remove(peer).is_some() {
            self.peers.remove(peer);
            stats.dials_failed += 1;
            return Down::DialFailed;
        }
        self.peers.remove(peer);
        Down::Lost
    }

    /// Gives up on dials past their deadline (returned), and releases
    /// connections we asked for that `needed` says no topic uses.
    pub(crate) fn on_tick(
        &mut self,
        now: Instant,
        needed: impl Fn(&PeerId) -> bool,
        stats: &mut GossipStats,
        actions: &mut Vec<GossipOutput>,
    ) -> Vec<PeerId> {
        let mut failed = Vec::new();
        self.pending.retain(|peer, p| {
            let keep = p.deadline > now;
            if !keep {
                failed.push(*peer);
                stats.dials_failed += 1;
                stats.pending_dropped += p.queue.len() as u64;
            }
            keep
        });
        for (peer, connection) in &mut self.peers {
            if !connection.requested || connection.releasing {
                continue;
            }
            if needed(peer) {
                connection.idle_since = None;
                continue;
            }
            let since = *connection.idle_since.get_or_insert(now);
            if now.duration_since(since) >= self.limits.release_after {
                connection.releasing = true;
                stats.connections_released += 1;
                actions.push(Output::Disconnect {
                    peer: *peer,
                    ban: None,
                });
            }
        }
        failed
    }
}
