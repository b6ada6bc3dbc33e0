use std::collections::VecDeque;
use std::net::IpAddr;

use proptest::prelude::*;

use super::*;
use crate::negotiation::Gateways;

/// One output of the core.
pub(super) type O = Output<Message, Event, StoreEffect>;

/// The core's one entry point ([`Core::handle`], [`Core::command`]) as one
/// call per kind of input, returning what followed: what a test drives by
/// hand.
pub(super) trait Drive {
    fn on_peer_up(&mut self, peer: PeerId, ip: Option<IpAddr>, now: Instant) -> Vec<O>;
    fn on_peer_down(&mut self, peer: PeerId, now: Instant) -> Vec<O>;
    fn on_message(&mut self, from: PeerId, message: Message, size: usize, now: Instant) -> Vec<O>;
    fn on_tick(&mut self, now: Instant) -> Vec<O>;
    fn route(
        &mut self,
        target: Location,
        mode: RouteMode,
        payload: Vec<u8>,
        now: Instant,
    ) -> Result<(u64, Vec<O>), RouteError>;
    fn restored(&mut self, records: Vec<StoredRecord>, now: Instant) -> Vec<O>;
}

impl Drive for RingState {
    fn on_peer_up(&mut self, peer: PeerId, ip: Option<IpAddr>, now: Instant) -> Vec<O> {
        let up = p2p_core::reactor::PeerUp {
            ip,
            ..p2p_core::reactor::PeerUp::new(peer)
        };
        feed(self, now, Input::PeerUp(up))
    }
    fn on_peer_down(&mut self, peer: PeerId, now: Instant) -> Vec<O> {
        feed(self, now, Input::PeerDown(peer))
    }
    fn on_message(&mut self, from: PeerId, message: Message, size: usize, now: Instant) -> Vec<O> {
        let input = Input::Message {
            from,
            message,
            size,
        };
        feed(self, now, input)
    }
    fn on_tick(&mut self, now: Instant) -> Vec<O> {
        feed(self, now, Input::Timer)
    }
    fn route(
        &mut self,
        target: Location,
        mode: RouteMode,
        payload: Vec<u8>,
        now: Instant,
    ) -> Result<(u64, Vec<O>), RouteError> {
        let mut out = Vec::new();
        let command = Command::Route {
            target,
            mode,
            payload,
        };
        let id = self.command(now, command, &mut out)?;
        Ok((id, out))
    }
    fn restored(&mut self, records: Vec<StoredRecord>, now: Instant) -> Vec<O> {
        let mut out = Vec::new();
        self.restore(records, now, &mut out);
        out
    }
}

/// Feeds `input` to `state`; what followed.
pub(super) fn feed(state: &mut RingState, now: Instant, input: CoreInput<RingState>) -> Vec<O> {
    let mut out = Vec::new();
    state.handle(now, input, &mut out);
    out
}

pub(super) fn key(seed: u64) -> Keypair {
    Keypair::from_seed(seed)
}

/// The Unix time these tests start at.
pub(super) const UNIX: u64 = 1_800_000_000;

/// The network tag of the default configuration.
pub(super) fn network() -> NetworkTag {
    NetworkTag::new(&RingConfig::default().network_id)
}

/// A transcript for `peer` signed by gateway `g` from the two values,
/// expiring a default `location_ttl` after [`UNIX`].
pub(super) fn transcript(g: &Keypair, peer: &Keypair, rj: u8, rg: u8) -> Transcript {
    let expires = UNIX + RingConfig::default().location_ttl.as_secs();
    transcript_until(g, peer, rj, rg, expires)
}

/// Like [`transcript`], expiring at `expires`.
pub(super) fn transcript_until(
    g: &Keypair,
    peer: &Keypair,
    rj: u8,
    rg: u8,
    expires: u64,
) -> Transcript {
    let secret = crate::negotiation::JoinerSecret::new(peer.peer_id(), [rj; 32]);
    let c = Challenge::answer(
        g,
        &network(),
        &peer.peer_id(),
        &secret.commitment(),
        [rg; 32],
        expires,
    );
    secret
        .complete(g.peer_id(), &c, &network())
        .expect("verifies")
}

pub(super) fn sends(actions: &[O]) -> Vec<(PeerId, Message)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Output::Send { to, message } => Some((*to, message.clone())),
            _ => None,
        })
        .collect()
}

fn events(actions: &[O]) -> Vec<Event> {
    actions
        .iter()
        .filter_map(|a| match a {
            Output::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// Nodes with fixed locations and hand-made links, and a synchronous
/// message pump: what a test needs to drive routing step by step.
struct Graph {
    nodes: Vec<RingState>,
    ids: Vec<PeerId>,
    now: Instant,
    events: Vec<(usize, Event)>,
    transmissions: usize,
}

impl Graph {
    fn new(locations: &[u64]) -> Self {
        let now = Instant::now();
        let config = RingConfig {
            max_htl: MAX_HTL,
            ..RingConfig::default()
        };
        let keys: Vec<Keypair> = (0..locations.len() as u64).map(|i| key(100 + i)).collect();
        let ids: Vec<PeerId> = keys.iter().map(Keypair::peer_id).collect();
        let nodes = keys
            .into_iter()
            .zip(locations)
            .enumerate()
            .map(|(i, (k, l))| {
                let mut s = RingState::new(k, config.clone(), i as u64, now, UNIX);
                s.location = Some(Location::from_raw(*l));
                s
            })
            .collect();
        Self {
            nodes,
            ids,
            now,
            events: Vec::new(),
            transmissions: 0,
        }
    }

    fn link(&mut self, a: usize, b: usize) {
        for (x, y) in [(a, b), (b, a)] {
            let location = self.nodes[y].location.unwrap_or_default();
            let peer = self.ids[y];
            let node = &mut self.nodes[x];
            node.neighbors.insert(
                peer,
                Neighbor {
                    location,
                    load: LoadMeter::new(self.now),
                    their_neighbors: Vec::new(),
                    joiner: false,
                    prefix: None,
                },
            );
            node.by_location.insert(location, peer);
        }
    }

    fn index(&self, peer: PeerId) -> usize {
        self.ids
            .iter()
            .position(|p| *p == peer)
            .expect("known peer")
    }

    /// Delivers every send until none is left.
    fn pump(&mut self, from: usize, actions: Vec<O>) {
        let mut queue: VecDeque<(usize, O)> = actions.into_iter().map(|a| (from, a)).collect();
        while let Some((at, action)) = queue.pop_front() {
            match action {
                Output::Send { to, message } => {
                    self.transmissions += 1;
                    let to = self.index(to);
                    let size = message.encoded_len();
                    let from_id = self.ids[at];
                    let out = self.nodes[to].on_message(from_id, message, size, self.now);
                    queue.extend(out.into_iter().map(|a| (to, a)));
                }
                Output::Event(e) => self.events.push((at, e)),
                _ => {}
            }
        }
    }

    fn route(&mut self, from: usize, to: usize) -> u64 {
        let target = self.nodes[to].location.unwrap_or_default();
        let (id, actions) = self.nodes[from]
            .route(target, RouteMode::Exact, vec![7], self.now)
            .expect("joined");
        self.pump(from, actions);
        id
    }

    fn delivered_at(&self, id: u64) -> Option<usize> {
        self.events.iter().find_map(|(at, e)| match e {
            Event::Delivered { id: d, .. } if *d == id => Some(*at),
            _ => None,
        })
    }

    fn failed(&self, id: u64) -> bool {
        self.events
            .iter()
            .any(|(_, e)| matches!(e, Event::RouteFailed { id: f, .. } if *f == id))
    }
}

#[test]
fn a_joiner_negotiates_with_the_gateway_and_both_verify_each_other() {
    let now = Instant::now();
    let g = key(1);
    let config = RingConfig::with_gateways([g.peer_id()]);
    let jid = key(2).peer_id();
    let mut gw = RingState::new_gateway(g.clone(), config.clone(), 1, now, UNIX);
    let mut j = RingState::new(key(2), config, 2, now, UNIX);
    // Both see the connection; the gateway announces, the joiner commits.
    let from_g = gw.on_peer_up(jid, None, now);
    let from_j = j.on_peer_up(g.peer_id(), None, now);
    assert!(matches!(sends(&from_g)[..], [(_, Message::Announce(_))]));
    let [(_, commit)] = &sends(&from_j)[..] else {
        panic!("one commit expected: {from_j:?}")
    };
    assert!(matches!(commit, Message::JoinCommit { .. }));
    let [(_, announce)] = &sends(&from_g)[..] else {
        unreachable!()
    };
    let up = j.on_message(g.peer_id(), announce.clone(), 100, now);
    assert!(j.is_neighbor(&g.peer_id()), "{up:?}");
    let challenge = gw.on_message(jid, commit.clone(), 40, now);
    let [(_, challenge)] = &sends(&challenge)[..] else {
        panic!("one challenge expected")
    };
    let joined = j.on_message(g.peer_id(), challenge.clone(), 100, now);
    let location = j.location().expect("joined");
    assert!(events(&joined).contains(&Event::Joined { location }));
    // It reveals by announcing, then asks for its successor and
    // predecessor through the gateway.
    let out = sends(&joined);
    let Some((_, Message::Announce(t))) = out.first() else {
        panic!("announce first: {out:?}")
    };
    assert_eq!(
        t.verify(&jid, &Gateways::listed([g.peer_id()]), &network(), UNIX),
        Ok(location)
    );
    let modes: Vec<RouteMode> = out
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Route(r) => Some(r.mode),
            _ => None,
        })
        .collect();
    assert_eq!(modes, vec![RouteMode::Successor, RouteMode::Predecessor]);
    let admitted = gw.on_message(jid, Message::Announce(t.clone()), 200, now);
    assert!(gw.is_neighbor(&jid), "{admitted:?}");
    assert_eq!(gw.stats().joins_served, 1);
    assert_eq!(gw.stats().locations_verified, 1);
    // A second negotiation by the same PeerId gets the same answer.
    let again = gw.on_message(jid, commit.clone(), 40, now);
    assert_eq!(sends(&again), vec![(jid, challenge.clone())]);
    assert_eq!(gw.stats().joins_repeated, 1);
}

/// An announcement that overtakes the router's `Up` for its peer is kept
/// and the peer admitted when it comes up: the peer announces only once,
/// so dropping it left the link half-open (seen in `reactors_api`).
#[test]
fn an_announcement_before_the_peer_is_up_admits_it_when_it_comes_up() {
    let now = Instant::now();
    let g = key(1);
    let mut gw = RingState::new_gateway(
        g.clone(),
        RingConfig::with_gateways([g.peer_id()]),
        1,
        now,
        UNIX,
    );
    let peer = key(4);
    let early = gw.on_message(
        peer.peer_id(),
        Message::Announce(transcript(&g, &peer, 7, 8)),
        200,
        now,
    );
    assert!(!gw.is_neighbor(&peer.peer_id()), "{early:?}");
    assert_eq!(gw.stats().locations_verified, 1);
    let up = gw.on_peer_up(peer.peer_id(), None, now);
    assert!(gw.is_neighbor(&peer.peer_id()), "{up:?}");
    assert_eq!(gw.stats().neighbors_added, 1);
}

#[test]
fn a_forged_or_foreign_location_is_refused_and_reported() {
    let now = Instant::now();
    let g = key(1);
    let mut node = RingState::new_gateway(
        g.clone(),
        RingConfig::with_gateways([g.peer_id()]),
        1,
        now,
        UNIX,
    );
    let liar = key(3);
    let honest = key(4);
    let expires = UNIX + 3600;
    // Self-signed by a key that is not a trusted gateway.
    let self_made = Transcript::self_negotiated(&liar, &network(), [1; 32], [2; 32], expires);
    // A real transcript, altered afterwards to move the location.
    let mut ground = transcript(&g, &liar, 5, 6);
    ground.gateway_value[0] ^= 1;
    // Somebody else's valid transcript, replayed.
    let theirs = transcript(&g, &honest, 7, 8);
    // A real one, expired.
    let expired = transcript_until(&g, &liar, 9, 9, UNIX - CLOCK_SKEW_SECS);
    // A real one signed for another network.
    let foreign = {
        let secret = crate::negotiation::JoinerSecret::new(liar.peer_id(), [1; 32]);
        let other = NetworkTag::new("another network");
        let c = Challenge::answer(
            &g,
            &other,
            &liar.peer_id(),
            &secret.commitment(),
            [1; 32],
            expires,
        );
        secret.complete(g.peer_id(), &c, &other).expect("verifies")
    };
    node.on_peer_up(liar.peer_id(), None, now);
    for forged in [self_made, ground, theirs, expired, foreign] {
        let actions = node.on_message(liar.peer_id(), Message::Announce(forged), 200, now);
        assert!(
            actions.iter().any(|a| matches!(a,
                Output::Report { peer, error: PeerError::Protocol(reason) }
                    if *peer == liar.peer_id() && reason.contains("does not verify"))),
            "{actions:?}"
        );
        assert!(
            events(&actions)
                .iter()
                .any(|e| matches!(e, Event::LocationRefused { .. }))
        );
        assert!(!node.is_neighbor(&liar.peer_id()));
    }
    assert_eq!(node.stats().locations_refused, 5);
}

/// The core takes only peers that serve the ring channel: the driver
/// announces every connection, and a gateway that does not serve the
/// channel is no place to negotiate.
#[test]
fn a_peer_that_does_not_serve_the_channel_is_ignored() {
    let now = Instant::now();
    let g = key(1);
    let mut j = RingState::new(
        key(2),
        RingConfig::with_gateways([g.peer_id()]),
        2,
        now,
        UNIX,
    );
    let up = p2p_core::reactor::PeerUp {
        serves: false,
        ..p2p_core::reactor::PeerUp::new(g.peer_id())
    };
    let out = feed(&mut j, now, Input::PeerUp(up));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(j.connected().count(), 0);
    let out = j.on_peer_up(g.peer_id(), None, now);
    assert!(matches!(
        &sends(&out)[..],
        [(_, Message::JoinCommit { .. })]
    ));
}

/// A frame the core refuses to decode (a bound broken) is a protocol
/// violation: fed back as `Malformed`, it is counted and its sender
/// reported with a fatal error.
#[test]
fn a_malformed_frame_is_counted_and_its_sender_reported() {
    let now = Instant::now();
    let mut s = RingState::new(key(1), RingConfig::default(), 1, now, UNIX);
    let route = Message::Route(Route {
        id: 1,
        origin: key(2).peer_id(),
        target: Location::ZERO,
        mode: RouteMode::Closest,
        htl: 3,
        walk: 0,
        visited: Vec::new(),
        path: vec![Location::ZERO],
        payload: Payload::App(Vec::new()),
    });
    let mut wire = RingState::encode(route);
    if let Some(proto::ring_message::Kind::Route(r)) = &mut wire.kind {
        r.htl = u32::from(MAX_HTL) + 1;
    }
    let error = s.decode(wire).expect_err("htl above the bound");
    assert!(error.is_fatal(), "{error}");
    let from = key(3).peer_id();
    let out = feed(&mut s, now, Input::Malformed { from, error });
    assert!(
        matches!(&out[..], [Output::Report { peer, error }] if *peer == from && error.is_fatal()),
        "{out:?}"
    );
    assert_eq!(s.stats().messages_dropped, 1);
    // A kind this version does not know is ignored, not an error.
    assert_eq!(s.decode(proto::RingMessage { kind: None }), Ok(None));
}

/// A route that could not be queued comes back whole (`wants_back`) and
/// goes to the next best neighbor, never to the one that failed; other
/// messages are not handed back.
#[test]
fn a_route_that_could_not_be_sent_goes_to_the_next_neighbor() {
    let tenth = u64::MAX / 10;
    let mut g = Graph::new(&[0, 4 * tenth, 3 * tenth, 5 * tenth]);
    g.link(0, 1);
    g.link(0, 2);
    let target = Location::from_raw(5 * tenth);
    let now = g.now;
    let (_, out) = g.nodes[0]
        .route(target, RouteMode::Closest, vec![1], now)
        .expect("joined");
    let [(to, message)] = &sends(&out)[..] else {
        panic!("one send: {out:?}")
    };
    assert_eq!(*to, g.ids[1], "the closest neighbor first");
    assert!(g.nodes[0].wants_back(message));
    assert!(!g.nodes[0].wants_back(&Message::Leave));
    let failed = Input::SendFailed {
        to: *to,
        message: Some(message.clone()),
        reason: p2p_core::reactor::SendFailure::QueueFull,
    };
    let out = feed(&mut g.nodes[0], now, failed);
    let [(to, Message::Route(route))] = &sends(&out)[..] else {
        panic!("the route again: {out:?}")
    };
    assert_eq!(*to, g.ids[2], "the next best neighbor");
    assert!(route.visited.contains(&Location::from_raw(4 * tenth)));
    assert_eq!(route.path.len(), 2);
    // A failed send of anything else changes nothing.
    let failed = Input::SendFailed {
        to: g.ids[1],
        message: None,
        reason: p2p_core::reactor::SendFailure::NotConnected,
    };
    assert!(feed(&mut g.nodes[0], now, failed).is_empty());
}

/// A store write that failed is counted; the core goes on with the
/// record in memory.
#[test]
fn a_failed_store_write_is_counted() {
    let now = Instant::now();
    let g = key(1);
    let mut gw = RingState::new_gateway(
        g.clone(),
        RingConfig::with_gateways([g.peer_id()]),
        1,
        now,
        UNIX,
    );
    let location = gw.location();
    let out = feed(&mut gw, now, Input::Outcome(StoreOutcome::Failed));
    assert!(out.is_empty());
    assert_eq!(gw.stats().store_failures, 1);
    assert_eq!(gw.location(), location);
}

/// The size the simulator charges is the size on the wire.
#[test]
fn wire_size_is_the_encoded_size() {
    let now = Instant::now();
    let g = key(1);
    let s = RingState::new(key(2), RingConfig::default(), 1, now, UNIX);
    let messages = [
        Message::Leave,
        Message::Announce(transcript(&g, &key(2), 1, 2)),
        Message::Neighbors(vec![Location::from_raw(1), Location::from_raw(1 << 40)]),
        Message::JoinRefused {
            reason: "no".into(),
        },
    ];
    for m in messages {
        let wire = RingState::encode(m.clone());
        assert_eq!(s.wire_size(&m), prost::Message::encoded_len(&wire));
    }
}

#[test]
fn greedy_routing_backtracks_out_of_a_dead_end() {
    // Locations (in units of 2⁻⁶⁴ · 10¹⁶, roughly tenths): E is the target,
    // D the peer closest to it but a dead end behind C.
    let tenth = u64::MAX / 10;
    let (a, b, c, d, e, f) = (0, 1, 2, 3, 4, 5);
    let mut g = Graph::new(&[
        0,
        2 * tenth,
        7 * tenth,
        5 * tenth + tenth / 2,
        5 * tenth,
        tenth,
    ]);
    g.link(a, b);
    g.link(a, c);
    g.link(c, d);
    g.link(b, f);
    g.link(f, e);
    let id = g.route(a, e);
    assert_eq!(g.delivered_at(id), Some(e), "{:?}", g.events);
    let backtracked: u64 = g.nodes.iter().map(|n| n.stats().routes_backtracked).sum();
    assert_eq!(backtracked, 2, "D back to C, C back to A");
    // A → C → D → C → A → B → F → E.
    assert_eq!(g.transmissions, 7);
}

#[test]
fn a_route_fails_back_to_its_origin_only_when_the_target_is_unreachable() {
    let tenth = u64::MAX / 10;
    let mut g = Graph::new(&[0, 2 * tenth, 7 * tenth, 5 * tenth]);
    g.link(0, 1);
    g.link(0, 2);
    g.link(1, 2);
    // Node 3 is linked to nobody.
    let id = g.route(0, 3);
    assert_eq!(g.delivered_at(id), None);
    assert!(g.failed(id), "the origin is told: {:?}", g.events);
}

#[test]
fn lookahead_takes_the_neighbor_whose_neighbor_is_the_target() {
    let tenth = u64::MAX / 10;
    // From 0 to 3: neighbor 1 is closer to the target than neighbor 2, but
    // 2 is linked to the target.
    let mut g = Graph::new(&[0, 4 * tenth, 2 * tenth, 5 * tenth]);
    g.link(0, 1);
    g.link(0, 2);
    g.link(2, 3);
    g.link(1, 3);
    let two = g.ids[2];
    let target = g.nodes[3].location.unwrap_or_default();
    if let Some(n) = g.nodes[0].neighbors.get_mut(&two) {
        n.their_neighbors = vec![target];
    }
    let id = g.route(0, 3);
    assert_eq!(g.delivered_at(id), Some(3));
    assert_eq!(g.transmissions, 2);
    assert_eq!(g.nodes[2].stats().routes_forwarded, 1, "went through 2");
    // Without lookahead the same route is plain greedy: through 1, the
    // neighbor closest to the target.
    g.nodes[0].config.lookahead = false;
    let id = g.route(0, 3);
    assert_eq!(g.delivered_at(id), Some(3));
    assert_eq!(g.transmissions, 4);
    assert_eq!(g.nodes[1].stats().routes_forwarded, 1, "went through 1");
}

#[test]
fn closest_peers_and_neighbors_are_sorted_by_distance() {
    let tenth = u64::MAX / 10;
    let mut g = Graph::new(&[0, 3 * tenth, 9 * tenth, tenth]);
    for other in 1..4 {
        g.link(0, other);
    }
    let near = g.nodes[0].closest_peers(Location::from_raw(8 * tenth), 3);
    assert_eq!(
        near.iter().map(|(p, _)| g.index(*p)).collect::<Vec<_>>(),
        vec![2, 0, 3]
    );
    let list = g.nodes[0].neighbors(g.now);
    assert_eq!(
        list.iter().map(|n| g.index(n.peer)).collect::<Vec<_>>(),
        vec![3, 2, 1]
    );
}

#[test]
fn a_neighbor_above_its_share_is_disconnected_and_the_report_says_why() {
    let tenth = u64::MAX / 10;
    let mut g = Graph::new(&[0, tenth, 2 * tenth, 3 * tenth, 4 * tenth, 5 * tenth]);
    for other in 1..6 {
        g.link(0, other);
    }
    g.nodes[0].config.load = crate::LoadConfig {
        min_total_bytes: 10_000.0,
        ..crate::LoadConfig::default()
    };
    let now = g.now;
    let me = g.nodes[0].location.unwrap_or_default();
    let (flooder, flooder_id) = (1, g.ids[1]);
    let flooder_location = g.nodes[flooder].location.unwrap_or_default();
    let route = |id| {
        Message::Route(Route {
            id,
            origin: flooder_id,
            target: Location::from_raw(9 * tenth),
            mode: RouteMode::Closest,
            htl: 10,
            walk: 0,
            visited: vec![flooder_location],
            path: vec![flooder_location, me],
            payload: Payload::App(vec![0; 500]),
        })
    };
    // Honest traffic from the others first: 1,000 bytes each.
    for (k, peer) in g.ids.clone().into_iter().enumerate().skip(2) {
        g.nodes[0].on_message(peer, route(k as u64), 1000, now);
    }
    let mut report = None;
    for id in 0..100 {
        let actions = g.nodes[0].on_message(flooder_id, route(100 + id), 1000, now);
        if let Some(Output::Disconnect { peer, ban }) = actions
            .iter()
            .find(|a| matches!(a, Output::Disconnect { .. }))
        {
            assert_eq!(*peer, flooder_id);
            assert_eq!(*ban, Some(crate::LoadConfig::default().ban));
            let r = events(&actions).into_iter().find_map(|e| match e {
                Event::Overloaded(r) => Some(r),
                _ => None,
            });
            report = Some(r.expect("the report comes with the disconnect"));
            break;
        }
    }
    let report = report.expect("the flooder is disconnected");
    assert!(
        report.share > 0.5 && report.total_bytes >= 10_000.0,
        "{report}"
    );
    assert!(report.to_string().contains("limit 50.0%"), "{report}");
    assert!(!g.nodes[0].is_neighbor(&flooder_id));
    assert_eq!(g.nodes[0].stats().overload_disconnects, 1);
}

#[test]
fn the_worst_placed_link_is_the_most_redundant_one() {
    let unit = u64::MAX / 1000;
    // The ring links at ±0.001 and ±0.002 are protected; of the links at
    // 0.1, 0.11 and 0.3 (clockwise), 0.1 and 0.11 are redundant with each
    // other, and 0.11 sits closer to 0.3.
    let mut g = Graph::new(&[
        0,
        unit,
        u64::MAX - unit,
        2 * unit,
        u64::MAX - 2 * unit,
        100 * unit,
        110 * unit,
        300 * unit,
    ]);
    for other in 1..8 {
        g.link(0, other);
    }
    let (worst, _) = g.nodes[0].worst_placed(g.now).expect("a prunable link");
    assert_eq!(g.index(worst), 6);
    // Pruning to 6 links sends it a Leave and keeps the link draining.
    let mut actions = Vec::new();
    let now = g.now;
    g.nodes[0].prune(6, now, &mut actions);
    assert!(sends(&actions).contains(&(g.ids[6], Message::Leave)));
    assert_eq!(g.nodes[0].degree(), 6);
    let later = g.nodes[0].on_tick(now + LINK_DRAIN);
    assert!(later.iter().any(|a| matches!(a,
        Output::Disconnect { peer, ban: Some(ban) }
            if *peer == g.ids[6] && *ban == RingConfig::default().prune_ban)));
}

#[test]
fn ring_links_are_the_two_nearest_on_each_side() {
    let unit = u64::MAX / 1000;
    // Node 0 at 0.5 with neighbors at +1, +2, +3 and -1, -4 units.
    let mid = 500 * unit;
    let mut g = Graph::new(&[
        mid,
        mid + unit,
        mid + 2 * unit,
        mid + 3 * unit,
        mid - unit,
        mid - 4 * unit,
    ]);
    for other in 1..6 {
        g.link(0, other);
    }
    let mut ring = g.nodes[0].ring_peers();
    ring.sort_unstable();
    let mut expected = vec![g.ids[1], g.ids[2], g.ids[4], g.ids[5]];
    expected.sort_unstable();
    assert_eq!(ring, expected);
    // Between the first and second on a side: a ring link; past the
    // second: not one.
    let node = &g.nodes[0];
    assert!(node.would_be_adjacent(Location::from_raw(mid + unit + unit / 2)));
    assert!(!node.would_be_adjacent(Location::from_raw(mid + 2 * unit + unit / 2)));
    assert!(node.would_be_adjacent(Location::from_raw(mid - 2 * unit)));
    assert!(!node.would_be_adjacent(Location::from_raw(mid - 5 * unit)));
}

#[test]
fn a_missing_second_successor_is_asked_for_from_the_successors_list() {
    let unit = u64::MAX / 1000;
    let mid = 500 * unit;
    let mut g = Graph::new(&[mid, mid + unit, mid - unit]);
    g.link(0, 1);
    g.link(0, 2);
    let succ = g.ids[1];
    // The successor's list names a peer at +2 units that we do not link:
    // a successor route to the successor's location goes out for it.
    let second = Location::from_raw(mid + 2 * unit);
    let me = Location::from_raw(mid);
    let now = g.now;
    let actions = g.nodes[0].on_message(succ, Message::Neighbors(vec![me, second]), 0, now);
    assert!(actions.is_empty());
    let mut actions = Vec::new();
    g.nodes[0].check_adjacency(now, &mut actions);
    let connects: Vec<Route> = sends(&actions)
        .into_iter()
        .filter_map(|(_, m)| match m {
            Message::Route(r) if matches!(r.payload, Payload::Connect { .. }) => Some(r),
            _ => None,
        })
        .collect();
    assert!(
        connects
            .iter()
            .any(|r| r.mode == RouteMode::Successor && r.target == Location::from_raw(mid + unit))
    );
    // Once linked, nothing more is asked for on that side.
    let mut h = Graph::new(&[mid, mid + unit, mid - unit, mid + 2 * unit]);
    for other in 1..4 {
        h.link(0, other);
    }
    let _ = h.nodes[0].on_message(h.ids[1], Message::Neighbors(vec![me, second]), 0, now);
    let mut actions = Vec::new();
    h.nodes[0].check_adjacency(now, &mut actions);
    assert!(!sends(&actions).iter().any(|(_, m)| matches!(m,
        Message::Route(r) if r.mode == RouteMode::Successor && r.target == Location::from_raw(mid + unit))));
}

#[test]
fn kleinberg_draws_are_uniform_in_log_distance() {
    let now = Instant::now();
    let mut s = RingState::new(key(1), RingConfig::default(), 9, now, UNIX);
    s.location = Some(Location::ZERO);
    // Spacing 10⁻⁴: draws in [10⁻⁴, 0.5], so about ln(10)/ln(5000) of them
    // fall in each decade.
    let spacing = Location::from_f64(1e-4).unwrap_or_default();
    s.by_location.insert(spacing, key(2).peer_id());
    s.by_location.insert(
        Location::from_raw(0u64.wrapping_sub(spacing.raw())),
        key(3).peer_id(),
    );
    let draws: Vec<f64> = (0..20_000)
        .map(|_| s.kleinberg_distance().as_f64())
        .collect();
    assert!(draws.iter().all(|d| (0.99e-4..=0.5).contains(d)));
    let expected = 10f64.ln() / 5000f64.ln();
    for decade in [1e-4, 1e-3, 1e-2] {
        let share = draws
            .iter()
            .filter(|d| (decade..decade * 10.0).contains(*d))
            .count() as f64
            / draws.len() as f64;
        assert!(
            (share - expected).abs() < 0.02,
            "decade {decade}: {share} vs {expected}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The binary-search lookahead finds what a full scan finds.
    #[test]
    fn nearest_in_matches_a_full_scan(
        set in proptest::collection::btree_set(any::<u64>(), 0..30),
        target: u64,
        skipped in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let sorted: Vec<Location> = set.into_iter().map(Location::from_raw).collect();
        let excluded: Vec<Location> = if sorted.is_empty() {
            Vec::new()
        } else {
            skipped.iter().map(|i| sorted[i.index(sorted.len())]).collect()
        };
        let target = Location::from_raw(target);
        let skip = |l: &Location| excluded.contains(l);
        let scan = sorted
            .iter()
            .filter(|l| !skip(l))
            .map(|l| target.distance(*l).raw())
            .min();
        prop_assert_eq!(super::nearest_in(&sorted, target, skip), scan);
    }

    /// On any graph, an exact route is delivered at its target exactly
    /// when the target is reachable from the origin, and otherwise fails
    /// back to the origin: the depth-first search with backtracking
    /// visits the whole component within its hops to live.
    #[test]
    fn exact_routes_succeed_exactly_when_the_target_is_reachable(
        locations in proptest::collection::btree_set(any::<u64>(), 2..16),
        edges in proptest::collection::vec((0usize..16, 0usize..16), 0..40),
        from in 0usize..16, to in 0usize..16,
    ) {
        let locations: Vec<u64> = locations.into_iter().collect();
        let n = locations.len();
        let (from, to) = (from % n, to % n);
        prop_assume!(from != to);
        let mut g = Graph::new(&locations);
        let mut adjacency = vec![Vec::new(); n];
        for (a, b) in edges {
            let (a, b) = (a % n, b % n);
            if a != b {
                g.link(a, b);
                adjacency[a].push(b);
                adjacency[b].push(a);
            }
        }
        let mut seen = vec![false; n];
        let mut stack = vec![from];
        seen[from] = true;
        while let Some(x) = stack.pop() {
            for &y in &adjacency[x] {
                if !seen[y] { seen[y] = true; stack.push(y); }
            }
        }
        let id = g.route(from, to);
        if seen[to] {
            prop_assert_eq!(g.delivered_at(id), Some(to));
        } else {
            prop_assert_eq!(g.delivered_at(id), None);
            prop_assert!(g.failed(id));
        }
        prop_assert!(g.transmissions <= 2 * n + 2 * n, "{} transmissions", g.transmissions);
    }

    /// Successor routes end at the first peer clockwise from the target
    /// when every peer is linked to its ring neighbors (plus random links).
    #[test]
    fn successor_routes_find_the_next_peer_on_a_linked_ring(
        locations in proptest::collection::btree_set(any::<u64>(), 3..20),
        extra in proptest::collection::vec((0usize..20, 0usize..20), 0..20),
        from in 0usize..20, target: u64,
    ) {
        let locations: Vec<u64> = locations.into_iter().collect();
        let n = locations.len();
        let from = from % n;
        let mut g = Graph::new(&locations);
        for i in 0..n { g.link(i, (i + 1) % n); }
        for (a, b) in extra { if a % n != b % n { g.link(a % n, b % n); } }
        let target = Location::from_raw(target);
        let expected = (0..n)
            .min_by_key(|i| {
                let cw = target.clockwise_to(Location::from_raw(locations[*i]));
                if cw == 0 { u64::MAX } else { cw }
            })
            .unwrap_or(0);
        let me = g.nodes[from].location.unwrap_or_default();
        let route = Route {
            id: 1, origin: g.ids[from], target, mode: RouteMode::Successor, htl: MAX_HTL,
            walk: 0, visited: Vec::new(), path: vec![me], payload: Payload::App(vec![]),
        };
        let mut actions = Vec::new();
        let now = g.now;
        g.nodes[from].step(route, now, &mut actions);
        g.pump(from, actions);
        prop_assert_eq!(g.delivered_at(1), Some(expected));
    }
}
