//! Joining (the negotiation, both sides) and admitting peers with verified
//! locations as neighbors.

use super::*;

impl RingState {
    pub(super) fn maybe_start_join(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.location.is_some() || self.joining.is_some() || self.join_retry_at.is_some() {
            return;
        }
        let gateways: Vec<PeerId> = self
            .connected
            .iter()
            .filter(|p| self.config.gateways.listed.contains(p))
            .copied()
            .collect();
        if gateways.is_empty() {
            return;
        }
        let gateway = gateways[self.rng.random_range(0..gateways.len())];
        let secret = JoinerSecret::new(self.local, self.nonce());
        actions.push(Action::Send {
            to: gateway,
            message: Message::JoinCommit {
                commitment: secret.commitment(),
            },
        });
        self.joining = Some(Joining {
            gateway,
            secret,
            deadline: now + self.config.request_timeout,
        });
    }

    pub(super) fn on_join_commit(
        &mut self,
        from: PeerId,
        commitment: [u8; 32],
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        let refuse = |reason: &str| Action::Send {
            to: from,
            message: Message::JoinRefused {
                reason: reason.to_string(),
            },
        };
        let Some(signer) = self.signer.clone() else {
            self.stats.joins_refused += 1;
            actions.push(refuse("not a gateway"));
            return;
        };
        if let Some(last) = self.cooldowns.get(&from)
            && now.saturating_duration_since(*last) < self.config.join_cooldown
        {
            self.stats.joins_refused += 1;
            actions.push(refuse("negotiated too recently"));
            return;
        }
        if self.joiners.len() >= self.config.max_pending_joins {
            self.expire_joiners(now);
            if self.joiners.len() >= self.config.max_pending_joins {
                self.stats.joins_refused += 1;
                actions.push(refuse("too many joins in progress"));
                return;
            }
        }
        if self.cooldowns.len() >= MAX_COOLDOWNS {
            let cooldown = self.config.join_cooldown;
            self.cooldowns
                .retain(|_, at| now.saturating_duration_since(*at) < cooldown);
            while self.cooldowns.len() >= MAX_COOLDOWNS {
                let oldest = self
                    .cooldowns
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(p, _)| *p);
                match oldest {
                    Some(p) => self.cooldowns.remove(&p),
                    None => break,
                };
            }
        }
        let value = self.nonce();
        let challenge = Challenge::answer(&signer, &from, &commitment, value);
        self.cooldowns.insert(from, now);
        self.joiners.insert(from, now + self.config.join_grace);
        if let Some(n) = self.neighbors.get_mut(&from)
            && !n.joiner
        {
            n.joiner = true;
            self.joiner_neighbors += 1;
        }
        self.stats.joins_served += 1;
        actions.push(Action::Send {
            to: from,
            message: Message::JoinChallenge(challenge),
        });
    }

    pub(super) fn on_join_challenge(
        &mut self,
        from: PeerId,
        challenge: Challenge,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        let Some(joining) = self.joining.take_if(|j| j.gateway == from) else {
            self.stats.messages_dropped += 1;
            return;
        };
        match joining.secret.complete(from, &challenge) {
            Ok(transcript) => {
                let location = transcript.location();
                self.location = Some(location);
                self.transcript = Some(transcript.clone());
                // Neighbors admitted before we had a location are re-keyed
                // (nothing changes: by_location holds theirs).
                for peer in self.connected.clone() {
                    actions.push(Action::Send {
                        to: peer,
                        message: Message::Announce(transcript.clone()),
                    });
                }
                actions.push(Action::Event(Event::Joined { location }));
                self.list_dirty = true;
                self.connect_budget = 2 * self.config.target_degree;
                self.check_adjacency(now, actions);
            }
            Err(error) => {
                self.join_retry_at = Some(now + self.config.maintenance_interval);
                actions.push(Action::Report {
                    peer: from,
                    error: PeerError::Protocol(format!("ring join challenge: {error}")),
                });
            }
        }
    }

    pub(super) fn on_announce(
        &mut self,
        from: PeerId,
        transcript: Transcript,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        if self.neighbors.contains_key(&from) || self.known.contains_key(&from) {
            // A location is fixed for the life of a PeerId: a second
            // announcement changes nothing.
            return;
        }
        let location = match transcript.verify(&from, &self.config.gateways) {
            Ok(location) => location,
            Err(error) => {
                self.stats.locations_refused += 1;
                actions.push(Action::Report {
                    peer: from,
                    error: PeerError::Protocol(format!("ring location does not verify: {error}")),
                });
                actions.push(Action::Event(Event::LocationRefused { peer: from, error }));
                return;
            }
        };
        self.stats.locations_verified += 1;
        if !self.connected.contains(&from) {
            // The announcement overtook the router's `Up` for this peer:
            // keep the location (fixed for the life of a PeerId) and admit
            // the peer when it comes up. Dropping it left the link
            // half-open, as the peer announces only once.
            if self.known.len() < MAX_EARLY_KNOWN {
                self.known.insert(from, location);
            }
            return;
        }
        self.known.insert(from, location);
        self.consider(from, location, now, actions);
    }

    /// Admits a connected peer with a verified location as a neighbor, or
    /// refuses it.
    pub(super) fn consider(
        &mut self,
        peer: PeerId,
        location: Location,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        if self.neighbors.contains_key(&peer) || Some(location) == self.location {
            return;
        }
        let wanted = self.expected.remove(&peer).is_some()
            || self.joiners.contains_key(&peer)
            || self.location.is_none()
            || self.would_be_adjacent(location)
            || self.counted_degree() < self.config.max_degree;
        if !wanted {
            self.stats.neighbors_refused += 1;
            actions.push(Action::Disconnect {
                peer,
                ban: Some(self.config.prune_ban),
                reason: DisconnectReason::Full,
            });
            return;
        }
        let joiner = self.joiners.contains_key(&peer);
        self.joiner_neighbors += usize::from(joiner);
        self.neighbors.insert(
            peer,
            Neighbor {
                location,
                load: LoadMeter::new(now),
                their_neighbors: Vec::new(),
                joiner,
            },
        );
        self.by_location.insert(location, peer);
        self.list_dirty = true;
        if self.location.is_some() {
            actions.push(Action::Send {
                to: peer,
                message: Message::Neighbors(self.neighbor_list()),
            });
        }
        self.stats.neighbors_added += 1;
        self.stats.neighbors = self.neighbors.len() as u64;
        actions.push(Action::Event(Event::NeighborUp { peer, location }));
        if self.location.is_some() {
            self.prune(self.config.max_degree, now, actions);
            self.fill_degree(now, actions);
        }
    }

    /// Our neighbors' locations, as we tell our neighbors.
    pub(super) fn neighbor_list(&self) -> Vec<Location> {
        self.by_location
            .keys()
            .take(usize::from(MAX_HTL))
            .copied()
            .collect()
    }

    /// Whether routes and replies from `peer` are handled: a neighbor, or
    /// a link being drained.
    pub(super) fn is_linked(&self, peer: &PeerId) -> bool {
        self.neighbors.contains_key(peer) || self.leaving.contains_key(peer)
    }

    /// The neighbor (or draining link) at `location`, for the way back.
    pub(super) fn peer_at(&self, location: &Location) -> Option<PeerId> {
        self.by_location.get(location).copied().or_else(|| {
            self.leaving
                .iter()
                .find(|(_, l)| l.location == *location)
                .map(|(p, _)| *p)
        })
    }

    pub(super) fn remove_neighbor(&mut self, peer: &PeerId, actions: &mut Vec<Action>) -> bool {
        let Some(n) = self.neighbors.remove(peer) else {
            return false;
        };
        self.joiner_neighbors -= usize::from(n.joiner);
        if self.by_location.get(&n.location) == Some(peer) {
            self.by_location.remove(&n.location);
        }
        self.list_dirty = true;
        self.stats.neighbors = self.neighbors.len() as u64;
        actions.push(Action::Event(Event::NeighborDown { peer: *peer }));
        true
    }
}
