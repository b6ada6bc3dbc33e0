//! Greedy routing with lookahead, the visited set and backtracking, and
//! the replies that travel back along a route's path.

use super::*;

impl RingState {
    pub(super) fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// How far `x` is from `target` under `mode` (smaller is better).
    pub(super) fn metric(target: Location, mode: RouteMode, x: Location) -> u64 {
        let raw = match mode {
            RouteMode::Closest | RouteMode::Exact => return target.distance(x).raw(),
            RouteMode::Successor => target.clockwise_to(x),
            RouteMode::Predecessor => x.clockwise_to(target),
        };
        if raw == 0 { u64::MAX } else { raw }
    }

    /// One routing step at this node, which holds `route` (its path ends
    /// with our location).
    pub(super) fn step(&mut self, mut route: Route, now: Instant, actions: &mut Out) {
        let Some(me) = self.location else {
            return;
        };
        if !route.visited.contains(&me) {
            if route.visited.len() >= usize::from(MAX_HTL) {
                return self.fail(route, "visited set full", now, actions);
            }
            route.visited.push(me);
        }
        if route.mode == RouteMode::Exact && route.target == me {
            return self.deliver(route, now, actions);
        }
        // A gateway routes through the joiners it is serving (they have few
        // links yet) only when it has nobody else.
        let visited = &route.visited;
        let with_joiners = self.joiner_neighbors > 0
            && self
                .neighbors
                .values()
                .all(|n| n.joiner || visited.contains(&n.location));
        let usable = |n: &Neighbor| (with_joiners || !n.joiner) && !visited.contains(&n.location);
        if route.walk > 0 {
            // In location order, so that a seed gives the same walk.
            let mut candidates: Vec<(Location, PeerId)> = self
                .neighbors
                .iter()
                .filter(|(_, n)| usable(n))
                .map(|(p, n)| (n.location, *p))
                .collect();
            candidates.sort_unstable_by_key(|(l, _)| *l);
            if !candidates.is_empty() {
                route.walk -= 1;
                let (l, p) = candidates[self.rng.random_range(0..candidates.len())];
                return self.forward(route, p, l, now, actions);
            }
        }
        // Closest and exact routes look one hop further (unless configured
        // off): a neighbor scores the best of its own location and its
        // neighbors' (those the route has not visited). Successor and predecessor routes stay plain
        // greedy, which is what makes them find the true neighbors on the
        // ring. One pass over the neighbors, no allocation: this is the
        // simulator's hottest loop.
        let lookahead =
            self.config.lookahead && matches!(route.mode, RouteMode::Closest | RouteMode::Exact);
        let skip = |m: &Location| *m == me || visited.contains(m);
        let mut best: Option<((u64, u64, Location), PeerId)> = None;
        for (p, n) in &self.neighbors {
            if !usable(n) {
                continue;
            }
            let direct = Self::metric(route.target, route.mode, n.location);
            let mut score = direct;
            if lookahead
                && score > 0
                && let Some(d) = nearest_in(&n.their_neighbors, route.target, skip)
            {
                score = score.min(d);
            }
            let key = (score, direct, n.location);
            if best.as_ref().is_none_or(|(k, _)| key < *k) {
                best = Some((key, *p));
            }
        }
        match (route.mode, best) {
            (RouteMode::Exact, Some(((_, _, l), p))) => self.forward(route, p, l, now, actions),
            (RouteMode::Exact, None) => self.backtrack(route, now, actions),
            (_, Some(((score, _, l), p))) if score < Self::metric(route.target, route.mode, me) => {
                self.forward(route, p, l, now, actions)
            }
            _ => self.deliver(route, now, actions),
        }
    }

    pub(super) fn forward(
        &mut self,
        mut route: Route,
        to: PeerId,
        location: Location,
        now: Instant,
        actions: &mut Out,
    ) {
        if route.htl == 0 {
            return self.fail(route, "out of hops", now, actions);
        }
        route.htl -= 1;
        route.path.push(location);
        self.stats.routes_forwarded += 1;
        actions.push(Output::Send {
            to,
            message: Message::Route(route),
        });
    }

    pub(super) fn backtrack(&mut self, mut route: Route, now: Instant, actions: &mut Out) {
        route.path.pop();
        let Some(back) = route.path.last().copied() else {
            return self.fail(route, "no peer left to try", now, actions);
        };
        if route.htl == 0 {
            route.path.push(self.location.unwrap_or_default());
            return self.fail(route, "out of hops", now, actions);
        }
        let Some(to) = self.peer_at(&back) else {
            route.path.push(self.location.unwrap_or_default());
            return self.fail(route, "the way back is gone", now, actions);
        };
        route.htl -= 1;
        self.stats.routes_backtracked += 1;
        actions.push(Output::Send {
            to,
            message: Message::Route(route),
        });
    }

    /// The route ends here unsuccessfully: tell its origin along the path.
    pub(super) fn fail(&mut self, route: Route, reason: &str, now: Instant, actions: &mut Out) {
        self.stats.routes_failed += 1;
        let mut path = route.path;
        path.pop();
        let reply = RouteReply {
            id: route.id,
            path,
            kind: ReplyKind::Failed {
                reason: reason.to_string(),
            },
        };
        if route.origin == self.local {
            self.on_own_reply(reply, false, now, actions);
        } else {
            self.send_reply(reply, actions);
        }
    }

    pub(super) fn deliver(&mut self, route: Route, now: Instant, actions: &mut Out) {
        let Some(me) = self.location else {
            return;
        };
        self.stats.routes_delivered += 1;
        let mut back = route.path.clone();
        back.pop();
        match route.payload {
            Payload::App(payload) => actions.push(Output::Event(Event::Delivered {
                id: route.id,
                origin: route.origin,
                target: route.target,
                path_hops: route.path.len().saturating_sub(1),
                htl_left: route.htl,
                payload,
            })),
            Payload::Connect { location } => {
                let joiner = route.origin;
                let accept = |already_linked: bool, state: &Self| {
                    let addresses = state.addresses.clone();
                    let signature = Acceptance {
                        route_id: route.id,
                        requester: &joiner,
                        location: me,
                        already_linked,
                        addresses: &addresses,
                    }
                    .sign(&state.keypair, &state.network);
                    ReplyKind::Accepted {
                        acceptor: state.local,
                        location: me,
                        addresses,
                        already_linked,
                        signature,
                    }
                };
                let kind = if joiner == self.local {
                    ReplyKind::Failed {
                        reason: "the route ended at its origin".into(),
                    }
                } else if self.neighbors.contains_key(&joiner) {
                    accept(true, self)
                } else if matches!(route.mode, RouteMode::Successor | RouteMode::Predecessor)
                    || self.would_be_adjacent(location)
                    || self.counted_degree() + self.expected.len() < self.config.max_degree
                {
                    self.stats.connects_accepted += 1;
                    // The requester's location is its claim until its
                    // transcript proves it; the pass past our degree limit
                    // holds only for that location.
                    self.expect(joiner, location, now + self.config.request_timeout * 3);
                    accept(false, self)
                } else {
                    self.stats.connects_refused += 1;
                    ReplyKind::Refused {
                        acceptor: self.local,
                    }
                };
                let reply = RouteReply {
                    id: route.id,
                    path: back,
                    kind,
                };
                if joiner == self.local {
                    self.on_own_reply(reply, false, now, actions);
                } else {
                    self.send_reply(reply, actions);
                }
            }
        }
    }

    /// Sends `reply` to the last entry of its path (a neighbor's location).
    pub(super) fn send_reply(&mut self, reply: RouteReply, actions: &mut Out) {
        let next = reply.path.last().and_then(|l| self.peer_at(l));
        match next {
            Some(to) => actions.push(Output::Send {
                to,
                message: Message::Reply(reply),
            }),
            None => self.stats.messages_dropped += 1,
        }
    }

    pub(super) fn on_reply(&mut self, mut reply: RouteReply, now: Instant, actions: &mut Out) {
        if reply.path.len() == 1 {
            return self.on_own_reply(reply, true, now, actions);
        }
        reply.path.pop();
        self.send_reply(reply, actions);
    }

    /// A reply to a route of ours. `refill`: ask for more links if short
    /// (not for a route that ended where it started, which could loop).
    pub(super) fn on_own_reply(
        &mut self,
        reply: RouteReply,
        refill: bool,
        now: Instant,
        actions: &mut Out,
    ) {
        let pending = self.pending_connects.remove(&reply.id);
        match (reply.kind, pending) {
            (ReplyKind::Failed { reason }, None) => {
                actions.push(Output::Event(Event::RouteFailed {
                    id: reply.id,
                    reason,
                }));
            }
            (
                ReplyKind::Accepted {
                    acceptor,
                    location,
                    addresses,
                    already_linked,
                    signature,
                },
                Some(pending),
            ) => {
                if !already_linked
                    && acceptor != self.local
                    && !self.neighbors.contains_key(&acceptor)
                {
                    let signed = Acceptance {
                        route_id: reply.id,
                        requester: &self.local,
                        location,
                        already_linked,
                        addresses: &addresses,
                    }
                    .verify(&acceptor, &self.network, &signature);
                    if !signed {
                        // Forged by a hop on the way back, which we cannot
                        // tell from the neighbor that relayed it: ignored,
                        // nobody blamed.
                        self.stats.accepts_forged += 1;
                    } else if !self.plausible(&pending, location) {
                        self.stats.accepts_implausible += 1;
                    } else {
                        self.link_to(acceptor, location, addresses, now, actions);
                    }
                }
                if refill {
                    self.fill_degree(now, actions);
                }
            }
            (_, Some(_)) if refill => self.fill_degree(now, actions),
            _ => {}
        }
    }
}

impl RingState {
    /// Whether an acceptor at `location` is where `pending`'s route should
    /// have ended: greedy routing over ring links reaches the peer that
    /// best matches the target, so no link of ours may match it better. A
    /// hop that answers for a peer of its own is caught here unless that
    /// peer happens to be a better match than all our links.
    fn plausible(&self, pending: &PendingConnect, location: Location) -> bool {
        let theirs = Self::metric(pending.target, pending.mode, location);
        self.by_location
            .keys()
            .all(|l| Self::metric(pending.target, pending.mode, *l) >= theirs)
    }

    /// `acceptor` signed that it takes us at `location`: await it there
    /// (past our degree limit), and dial it unless it is connected.
    fn link_to(
        &mut self,
        acceptor: PeerId,
        location: Location,
        addresses: Vec<String>,
        now: Instant,
        actions: &mut Out,
    ) {
        self.expect(acceptor, location, now + self.config.request_timeout * 3);
        if self.connected.contains_key(&acceptor) {
            // Connected already (for another reason): admit it and
            // announce again so it admits us.
            if let Some(known) = self.known.get(&acceptor).copied() {
                self.consider(acceptor, known, now, actions);
            }
            if let Some(t) = &self.transcript {
                actions.push(Output::Send {
                    to: acceptor,
                    message: Message::Announce(t.clone()),
                });
            }
        } else {
            // Only addresses that name the acceptor: a relayed answer
            // cannot point our dial at a third peer. None left, and the
            // driver tells us at once (`Input::DialFailed`).
            let addresses: Vec<PeerAddress> = addresses
                .iter()
                .filter_map(|a| a.parse::<PeerAddress>().ok())
                .filter(|a| a.peer == acceptor)
                .collect();
            actions.push(Output::Connect {
                peer: acceptor,
                addresses,
            });
        }
    }
}

/// The smallest distance from `target` to an entry of `sorted` (ascending
/// locations) that `skip` does not exclude. The nearest entry on each side
/// of the target is found by counting the entries below it, then the walk
/// goes outward past excluded entries: on each side distance grows with
/// every step, so the first entry kept on either side is that side's best.
///
/// The count is a linear scan, not a binary search: a list holds at most
/// 64 locations, and a scan's loads do not depend on each other, so the
/// cache misses of a routing step's many lists overlap instead of coming
/// one after another (at 10,000 simulated nodes this was the hottest line).
pub(super) fn nearest_in(
    sorted: &[Location],
    target: Location,
    skip: impl Fn(&Location) -> bool,
) -> Option<u64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let start = sorted.iter().filter(|l| **l < target).count();
    let mut best: Option<u64> = None;
    // Clockwise: start, start + 1, ...; counter-clockwise: start − 1, ...
    for k in 0..n {
        let l = &sorted[(start + k) % n];
        if !skip(l) {
            best = Some(target.clockwise_to(*l).min(l.clockwise_to(target)));
            break;
        }
    }
    for k in 1..=n {
        let l = &sorted[(start + n - k) % n];
        if !skip(l) {
            let d = target.clockwise_to(*l).min(l.clockwise_to(target));
            best = Some(best.map_or(d, |b| b.min(d)));
            break;
        }
    }
    best
}
