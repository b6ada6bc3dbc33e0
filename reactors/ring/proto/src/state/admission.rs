//! Admitting peers with verified locations as neighbors: announcements
//! checked against the location pinned for the PeerId, the degree and
//! per-network limits, neighbor lists checked before they steer routes.

use super::*;

impl RingState {
    pub(super) fn on_announce(
        &mut self,
        from: PeerId,
        transcript: Transcript,
        now: Instant,
        actions: &mut Out,
    ) {
        let location = match self.check_location(from, &transcript, now) {
            Ok(location) => location,
            Err(error) => {
                self.stats.locations_refused += 1;
                if matches!(error, LocationError::Conflicting { .. }) {
                    self.stats.locations_conflicting += 1;
                }
                actions.push(Output::Report {
                    peer: from,
                    error: PeerError::Protocol(format!("ring location does not verify: {error}")),
                });
                actions.push(Output::Event(Event::LocationRefused { peer: from, error }));
                return;
            }
        };
        match self.known.get(&from) {
            // A second announcement of the same location changes nothing.
            Some(l) if *l == location => return,
            // The peer's old location expired and it has a new one: the
            // old link goes.
            Some(_) => {
                if self
                    .neighbors
                    .get(&from)
                    .is_some_and(|n| n.location != location)
                {
                    self.remove_neighbor(&from, actions);
                }
                self.leaving.remove(&from);
            }
            None => {}
        }
        if self
            .neighbors
            .get(&from)
            .is_some_and(|n| n.location == location)
        {
            self.known.insert(from, location);
            return;
        }
        if !self.connected.contains_key(&from) {
            // The announcement overtook the router's `Up` for this peer:
            // keep the location and admit the peer when it comes up.
            // Dropping it left the link half-open, as the peer announces
            // only once.
            if self.known.len() < MAX_EARLY_KNOWN {
                self.known.insert(from, location);
            }
            return;
        }
        self.known.insert(from, location);
        self.consider(from, location, now, actions);
    }

    /// The location `transcript` proves for `from`, if `from` may have it:
    /// the transcript must verify (signature, trusted gateway, network,
    /// not expired), and be the one pinned for `from` unless that pin has
    /// ended. A transcript met before is checked by its digest alone.
    fn check_location(
        &mut self,
        from: PeerId,
        transcript: &Transcript,
        now: Instant,
    ) -> Result<Location, LocationError> {
        let unix = self.unix_now(now);
        let digest = transcript.digest();
        if let Some(pin) = self.pins.get(&from) {
            if pin.digest == digest {
                if pin.expires.saturating_add(CLOCK_SKEW_SECS) <= unix {
                    return Err(LocationError::Expired {
                        expires: pin.expires,
                        now: unix,
                    });
                }
                self.stats.locations_verified += 1;
                return Ok(pin.location);
            }
            // A pin binds until shortly before its expiry, so that a peer
            // whose clock runs ahead of ours can move on to its next
            // location; a gateway grants that only after the expiry.
            let until = pin.expires.saturating_sub(CLOCK_SKEW_SECS);
            if unix < until {
                return Err(LocationError::Conflicting {
                    pinned: pin.location,
                    until,
                });
            }
        }
        let location = transcript.verify(&from, &self.config.gateways, &self.network, unix)?;
        self.stats.locations_verified += 1;
        self.pin(from, location, transcript.expires, digest);
        Ok(location)
    }

    /// Pins `location` for `peer`, forgetting the oldest pins past
    /// [`MAX_PINS`].
    fn pin(&mut self, peer: PeerId, location: Location, expires: u64, digest: [u8; 32]) {
        if let Some(old) = self.pins.remove(&peer) {
            self.pin_order.remove(&old.seq);
        }
        let seq = self.next_pin;
        self.next_pin += 1;
        self.pins.insert(
            peer,
            Pin {
                location,
                expires,
                digest,
                seq,
            },
        );
        self.pin_order.insert(seq, peer);
        while self.pins.len() > MAX_PINS {
            let Some((_, oldest)) = self.pin_order.pop_first() else {
                break;
            };
            self.pins.remove(&oldest);
            self.stats.pins_evicted += 1;
        }
    }

    /// Admits a connected peer with a verified location as a neighbor, or
    /// refuses it: past `max_degree` only if we expected it with this
    /// location, serve it as a joiner, or it would be one of our ring
    /// links; past `max_neighbors_per_prefix` of its network never, but a
    /// new ring link takes the place of that network's longest other link.
    pub(super) fn consider(
        &mut self,
        peer: PeerId,
        location: Location,
        now: Instant,
        actions: &mut Out,
    ) {
        if self.neighbors.contains_key(&peer) || Some(location) == self.location {
            return;
        }
        let expected = self
            .expected
            .remove(&peer)
            .is_some_and(|e| e.location == location);
        let joiner = self.joiners.contains_key(&peer);
        let ring_link = self.location.is_none() || self.would_be_adjacent(location);
        let wanted =
            expected || joiner || ring_link || self.counted_degree() < self.config.max_degree;
        if !wanted {
            self.stats.neighbors_refused += 1;
            disconnect(peer, self.config.prune_ban, DisconnectReason::Full, actions);
            return;
        }
        let prefix = self.connected.get(&peer).copied().flatten();
        if !joiner
            && let Some(p) = prefix
            && self.neighbors_in(p) >= self.config.max_neighbors_per_prefix
        {
            let displaced = if self.location.is_some() && ring_link {
                self.longest_unprotected_in(p, now)
            } else {
                None
            };
            match displaced {
                Some(other) => self.drop_link(other, now, actions),
                None => {
                    self.stats.neighbors_refused += 1;
                    self.stats.neighbors_refused_prefix += 1;
                    disconnect(
                        peer,
                        self.config.prune_ban,
                        DisconnectReason::NetworkFull { prefix: p },
                        actions,
                    );
                    return;
                }
            }
        }
        self.joiner_neighbors += usize::from(joiner);
        self.neighbors.insert(
            peer,
            Neighbor {
                location,
                load: LoadMeter::new(now),
                their_neighbors: Vec::new(),
                joiner,
                prefix,
            },
        );
        self.by_location.insert(location, peer);
        self.list_dirty = true;
        if self.location.is_some() {
            actions.push(Output::Send {
                to: peer,
                message: Message::Neighbors(self.neighbor_list()),
            });
        }
        self.stats.neighbors_added += 1;
        self.stats.neighbors = self.neighbors.len() as u64;
        actions.push(Output::Event(Event::NeighborUp { peer, location }));
        if self.location.is_some() {
            self.prune(self.config.max_degree, now, actions);
            self.fill_degree(now, actions);
        }
    }

    /// Awaits `peer` at `location` until `until`, forgetting the one due
    /// first past [`MAX_EXPECTED`].
    pub(super) fn expect(&mut self, peer: PeerId, location: Location, until: Instant) {
        self.expected.insert(peer, Expected { until, location });
        while self.expected.len() > MAX_EXPECTED {
            let Some(first) = self
                .expected
                .iter()
                .min_by_key(|(_, e)| e.until)
                .map(|(p, _)| *p)
            else {
                break;
            };
            self.expected.remove(&first);
            self.stats.expected_evicted += 1;
        }
    }

    /// Neighbors from network `prefix`, joiners in their grace aside.
    fn neighbors_in(&self, prefix: IpPrefix) -> usize {
        self.neighbors
            .values()
            .filter(|n| n.prefix == Some(prefix) && !n.joiner)
            .count()
    }

    /// The longest link to network `prefix` that is not a ring link nor a
    /// joiner's.
    fn longest_unprotected_in(&self, prefix: IpPrefix, now: Instant) -> Option<PeerId> {
        let me = self.location?;
        let ring = self.ring_peers();
        self.neighbors
            .iter()
            .filter(|(p, n)| {
                n.prefix == Some(prefix)
                    && !n.joiner
                    && !ring.contains(p)
                    && self.joiners.get(*p).is_none_or(|u| *u <= now)
            })
            .max_by_key(|(_, n)| (me.distance(n.location), n.location))
            .map(|(p, _)| *p)
    }

    /// Brings every network back to `max_neighbors_per_prefix` links (a
    /// gateway's joiners count once their grace ends), dropping the longest
    /// that are not ring links.
    pub(super) fn trim_prefixes(&mut self, now: Instant, actions: &mut Out) {
        let mut counts: BTreeMap<IpPrefix, usize> = BTreeMap::new();
        for n in self.neighbors.values().filter(|n| !n.joiner) {
            if let Some(p) = n.prefix {
                *counts.entry(p).or_default() += 1;
            }
        }
        for (prefix, mut count) in counts {
            while count > self.config.max_neighbors_per_prefix {
                let Some(peer) = self.longest_unprotected_in(prefix, now) else {
                    break;
                };
                self.drop_link(peer, now, actions);
                count -= 1;
            }
        }
    }

    /// A neighbor's list of its neighbors' locations, checked: an honest
    /// list is sorted, has no duplicates, does not name its sender, and
    /// names us (we are its neighbor) unless it is full. One that is not is
    /// refused — not used for lookahead — and its sender reported.
    pub(super) fn on_neighbor_list(
        &mut self,
        from: PeerId,
        list: Vec<Location>,
        actions: &mut Out,
    ) {
        let me = self.location;
        let Some(n) = self.neighbors.get_mut(&from) else {
            self.stats.messages_dropped += 1;
            return;
        };
        let problem = if !list.windows(2).all(|w| w[0] < w[1]) {
            Some("a neighbor list not sorted, or with duplicates")
        } else if list.binary_search(&n.location).is_ok() {
            Some("a neighbor list naming itself")
        } else if let Some(me) = me
            && list.len() < MAX_NEIGHBOR_LIST
            && list.binary_search(&me).is_err()
        {
            Some("a neighbor list that leaves out the receiver, its neighbor")
        } else {
            None
        };
        match problem {
            None => n.their_neighbors = list,
            Some(what) => {
                n.their_neighbors.clear();
                self.stats.lists_refused += 1;
                actions.push(Output::Report {
                    peer: from,
                    error: PeerError::Misbehaviour {
                        channel: CHANNEL,
                        reason: format!("sent {what}"),
                        penalty: LIST_PENALTY,
                    },
                });
            }
        }
    }

    /// Our neighbors' locations, as we tell our neighbors.
    pub(super) fn neighbor_list(&self) -> Vec<Location> {
        self.by_location
            .keys()
            .take(MAX_NEIGHBOR_LIST)
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

    pub(super) fn remove_neighbor(&mut self, peer: &PeerId, actions: &mut Out) -> bool {
        let Some(n) = self.neighbors.remove(peer) else {
            return false;
        };
        self.joiner_neighbors -= usize::from(n.joiner);
        if self.by_location.get(&n.location) == Some(peer) {
            self.by_location.remove(&n.location);
        }
        self.list_dirty = true;
        self.stats.neighbors = self.neighbors.len() as u64;
        actions.push(Output::Event(Event::NeighborDown { peer: *peer }));
        true
    }
}
