//! The links: successor and predecessor, Kleinberg long links, the degree
//! bounds and the replacement of the worst-placed link.

use super::*;

impl RingState {
    /// Our current successor and predecessor (the neighbors nearest
    /// clockwise and counter-clockwise).
    pub(super) fn adjacent(&self) -> (Option<Adjacent>, Option<Adjacent>) {
        let Some(me) = self.location else {
            return (None, None);
        };
        use std::ops::Bound::{Excluded, Unbounded};
        let succ = self
            .by_location
            .range((Excluded(me), Unbounded))
            .next()
            .or_else(|| self.by_location.range(..me).next())
            .map(|(l, p)| (*l, *p));
        let pred = self
            .by_location
            .range(..me)
            .next_back()
            .or_else(|| {
                self.by_location
                    .range((Excluded(me), Unbounded))
                    .next_back()
            })
            .map(|(l, p)| (*l, *p));
        (succ, pred)
    }

    pub(super) fn adjacent_peers(&self) -> Vec<PeerId> {
        let (s, p) = self.adjacent();
        s.into_iter().chain(p).map(|(_, p)| p).collect()
    }

    /// Our ring links: the [`RING_LINKS`] neighbors nearest clockwise and
    /// the [`RING_LINKS`] nearest counter-clockwise (fewer on a small
    /// ring). Never pruned.
    pub(super) fn ring_peers(&self) -> Vec<PeerId> {
        let Some(me) = self.location else {
            return Vec::new();
        };
        use std::ops::Bound::{Excluded, Unbounded};
        let clockwise = self
            .by_location
            .range((Excluded(me), Unbounded))
            .chain(self.by_location.range(..me))
            .take(RING_LINKS);
        let counter = self
            .by_location
            .range(..me)
            .rev()
            .chain(self.by_location.range((Excluded(me), Unbounded)).rev())
            .take(RING_LINKS);
        let mut peers: Vec<PeerId> = clockwise.chain(counter).map(|(_, p)| *p).collect();
        peers.sort_unstable();
        peers.dedup();
        peers
    }

    /// Whether a peer at `location` would be one of our ring links: fewer
    /// than [`RING_LINKS`] neighbors lie between it and us on one side.
    pub(super) fn would_be_adjacent(&self, location: Location) -> bool {
        let Some(me) = self.location else {
            return true;
        };
        let cw = me.clockwise_to(location);
        let ccw = location.clockwise_to(me);
        if cw == 0 {
            return false;
        }
        let closer_cw = self
            .by_location
            .keys()
            .filter(|l| {
                let d = me.clockwise_to(**l);
                d != 0 && d < cw
            })
            .take(RING_LINKS)
            .count();
        let closer_ccw = self
            .by_location
            .keys()
            .filter(|l| {
                let d = l.clockwise_to(me);
                d != 0 && d < ccw
            })
            .take(RING_LINKS)
            .count();
        closer_cw < RING_LINKS || closer_ccw < RING_LINKS
    }

    /// Where our next-nearest peer on the side of `first` (our successor
    /// or predecessor) should be, from `first`'s neighbor list: the peer
    /// just beyond `first` on that side, unless it is us or linked already.
    fn missing_second(&self, first: Option<Adjacent>, clockwise: bool) -> Option<Location> {
        let me = self.location?;
        let (location, peer) = first?;
        let list = &self.neighbors.get(&peer)?.their_neighbors;
        let beyond = |l: &Location| {
            if clockwise {
                location.clockwise_to(*l)
            } else {
                l.clockwise_to(location)
            }
        };
        let second = list
            .iter()
            .filter(|l| beyond(l) != 0)
            .min_by_key(|l| beyond(l))
            .copied()?;
        // Past us (a ring of three or fewer), or already a neighbor.
        let past_us = beyond(&me) != 0 && beyond(&second) >= beyond(&me);
        (!past_us && !self.by_location.contains_key(&second)).then_some(second)
    }

    /// The typical gap between peers here, from our successor and
    /// predecessor: Kleinberg's shortest link length (about 1/N).
    pub(super) fn spacing(&self) -> Distance {
        let Some(me) = self.location else {
            return Distance::MAX;
        };
        let (succ, pred) = self.adjacent();
        let gaps: Vec<u64> = succ
            .into_iter()
            .chain(pred)
            .map(|(l, _)| me.distance(l).raw())
            .collect();
        if gaps.is_empty() {
            return Distance::from_f64(0.001);
        }
        let mean = gaps.iter().map(|g| u128::from(*g)).sum::<u128>() / gaps.len() as u128;
        Distance::from_raw(u64::try_from(mean).unwrap_or(u64::MAX).max(1 << 14))
    }

    /// A link length drawn from Kleinberg's harmonic distribution,
    /// p(d) ∝ 1/d on [spacing, ½].
    pub(super) fn kleinberg_distance(&mut self) -> Distance {
        let min = self.spacing().as_f64().clamp(1e-15, 0.5);
        let u: f64 = self.rng.random();
        Distance::from_f64(min * (0.5 / min).powf(u))
    }

    pub(super) fn pending(&self, purpose: Purpose) -> usize {
        self.pending_connects
            .values()
            .filter(|p| p.purpose == purpose)
            .count()
    }

    /// A maintenance round: check the successor and predecessor, keep the
    /// degree between `target_degree` and `max_degree`, and every
    /// [`REPLACE_EVERY`] rounds drop the worst-placed link (if above the
    /// target) and ask for a fresh Kleinberg link in its place.
    pub(super) fn maintain(&mut self, now: Instant, actions: &mut Out) {
        if self.rounds.is_multiple_of(ADJACENCY_EVERY) || self.adjacent_peers().len() < 2 {
            self.check_adjacency(now, actions);
        }
        self.trim_prefixes(now, actions);
        self.prune(self.config.max_degree, now, actions);
        self.fill_degree(now, actions);
        if self.rounds.is_multiple_of(REPLACE_EVERY) {
            let degree = self.counted_degree();
            if degree > self.config.target_degree {
                self.prune(degree - 1, now, actions);
            }
            if self.counted_degree() >= self.config.target_degree
                && self.pending(Purpose::Replace) + self.pending(Purpose::Long) == 0
            {
                self.send_connect(Purpose::Replace, now, actions);
            }
        }
    }

    /// Asks for the peers just after and just before us (routes in
    /// [`RouteMode::Successor`] and [`RouteMode::Predecessor`] mode); the
    /// current ones answer "already linked" in one hop.
    pub(super) fn check_adjacency(&mut self, now: Instant, actions: &mut Out) {
        if self.neighbors.is_empty() {
            return;
        }
        if self.pending(Purpose::Successor) == 0 {
            self.send_connect(Purpose::Successor, now, actions);
        }
        if self.pending(Purpose::Predecessor) == 0 {
            self.send_connect(Purpose::Predecessor, now, actions);
        }
        // The second nearest on each side, when our successor's or
        // predecessor's neighbor list shows one we are not linked to: no
        // message at all while the ring links are in place.
        let (succ, pred) = self.adjacent();
        if self.pending(Purpose::SecondSuccessor) == 0 && self.missing_second(succ, true).is_some()
        {
            self.send_connect(Purpose::SecondSuccessor, now, actions);
        }
        if self.pending(Purpose::SecondPredecessor) == 0
            && self.missing_second(pred, false).is_some()
        {
            self.send_connect(Purpose::SecondPredecessor, now, actions);
        }
    }

    /// Asks for long links while below the target degree; waits for the
    /// successor and predecessor first (they give the spacing).
    pub(super) fn fill_degree(&mut self, now: Instant, actions: &mut Out) {
        if self.neighbors.is_empty()
            || self.pending(Purpose::Successor) + self.pending(Purpose::Predecessor) > 0
        {
            return;
        }
        let have = self.counted_degree() + self.expected.len() + self.pending(Purpose::Long);
        let want = self.config.target_degree.saturating_sub(have);
        let room = self
            .config
            .max_pending_connects
            .saturating_sub(self.pending_connects.len());
        let count = want.min(room).min(self.connect_budget);
        self.connect_budget -= count;
        for _ in 0..count {
            self.send_connect(Purpose::Long, now, actions);
        }
    }

    pub(super) fn send_connect(&mut self, purpose: Purpose, now: Instant, actions: &mut Out) {
        let Some(me) = self.location else {
            return;
        };
        let (target, mode, walk) = match purpose {
            Purpose::Successor => (me, RouteMode::Successor, 0),
            Purpose::Predecessor => (me, RouteMode::Predecessor, 0),
            // The first peer past our successor (predecessor): a successor
            // (predecessor) route to the successor's (predecessor's)
            // location.
            Purpose::SecondSuccessor | Purpose::SecondPredecessor => {
                let (succ, pred) = self.adjacent();
                let (first, mode) = if purpose == Purpose::SecondSuccessor {
                    (succ, RouteMode::Successor)
                } else {
                    (pred, RouteMode::Predecessor)
                };
                let Some((first, _)) = first else {
                    return;
                };
                (first, mode, 0)
            }
            Purpose::Long | Purpose::Replace => {
                let d = self.kleinberg_distance();
                let dir = if self.rng.random_bool(0.5) {
                    Direction::Clockwise
                } else {
                    Direction::CounterClockwise
                };
                (
                    me.step(d, dir),
                    RouteMode::Closest,
                    self.config.connect_random_walk,
                )
            }
        };
        let id = self.take_id();
        self.pending_connects.insert(
            id,
            PendingConnect {
                purpose,
                deadline: now + self.config.request_timeout,
                target,
                mode,
            },
        );
        self.stats.connects_sent += 1;
        let route = Route {
            id,
            origin: self.local,
            target,
            mode,
            htl: self.config.max_htl,
            walk,
            visited: Vec::new(),
            path: vec![me],
            payload: Payload::Connect { location: me },
        };
        self.step(route, now, actions);
    }

    /// Drops the worst-placed links until at most `limit` remain. The
    /// successor, the predecessor and joiners within their grace are kept.
    pub(super) fn prune(&mut self, limit: usize, now: Instant, actions: &mut Out) {
        while self.counted_degree() > limit {
            let Some((peer, _)) = self.worst_placed(now) else {
                return;
            };
            self.stats.links_pruned += 1;
            self.drop_link(peer, now, actions);
        }
    }

    /// Drops the link to `peer`: it is told (`Leave`), and the connection
    /// drains for [`LINK_DRAIN`] before we close it.
    pub(super) fn drop_link(&mut self, peer: PeerId, now: Instant, actions: &mut Out) {
        let Some(location) = self.neighbors.get(&peer).map(|n| n.location) else {
            return;
        };
        self.remove_neighbor(&peer, actions);
        self.known.remove(&peer);
        self.leaving.insert(
            peer,
            Leaving {
                location,
                until: now + LINK_DRAIN,
                initiator: true,
            },
        );
        actions.push(Output::Send {
            to: peer,
            message: Message::Leave,
        });
    }

    /// The link whose length is closest, on a log scale, to another link's
    /// on the same side: the most redundant one under Kleinberg's
    /// distribution, which is uniform in log-distance.
    pub(super) fn worst_placed(&self, now: Instant) -> Option<(PeerId, Distance)> {
        let me = self.location?;
        let protected: BTreeSet<PeerId> = self
            .ring_peers()
            .into_iter()
            .chain(
                self.joiners
                    .iter()
                    .filter(|(_, u)| **u > now)
                    .map(|(p, _)| *p),
            )
            .collect();
        let mut sides: [Vec<(f64, PeerId)>; 2] = [Vec::new(), Vec::new()];
        for (location, peer) in &self.by_location {
            let cw = me.clockwise_to(*location);
            let side = usize::from(cw > 1 << 63);
            let d = me.distance(*location).as_f64().max(1e-20);
            sides[side].push((d.ln(), *peer));
        }
        let mut worst: Option<((f64, f64), PeerId)> = None;
        for side in &mut sides {
            side.sort_by(|a, b| a.0.total_cmp(&b.0));
            for i in 0..side.len() {
                let (x, peer) = side[i];
                if protected.contains(&peer) {
                    continue;
                }
                let below = if i > 0 {
                    x - side[i - 1].0
                } else {
                    f64::INFINITY
                };
                let above = side.get(i + 1).map_or(f64::INFINITY, |n| n.0 - x);
                let key = (below.min(above), below.max(above));
                if worst.as_ref().is_none_or(|(k, _)| key < *k) {
                    worst = Some((key, peer));
                }
            }
        }
        let (_, peer) = worst?;
        let location = self.neighbors.get(&peer)?.location;
        Some((peer, me.distance(location)))
    }
}
