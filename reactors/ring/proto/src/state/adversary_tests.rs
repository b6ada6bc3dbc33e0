//! The attacks of issue 14 item 6, each by a misbehaving peer against the
//! sans-IO core: a hop that forges `Accepted`, a neighbour that lies in its
//! neighbour list, fresh keys that hold a gateway's join slots, and a
//! PeerId that shows a second location.

use super::tests::{Drive, O, UNIX, key, network, sends, transcript};
use super::*;
use crate::negotiation::JoinerSecret;

fn dials(actions: &[O]) -> Vec<PeerId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Output::Connect { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect()
}

fn reported(actions: &[O], who: PeerId) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Output::Report { peer, .. } if *peer == who))
}

/// Makes `peer` a neighbour of `node` at `location` directly.
fn link(node: &mut RingState, peer: PeerId, location: Location, now: Instant) {
    node.connected.insert(peer, None);
    node.neighbors.insert(
        peer,
        Neighbor {
            location,
            load: LoadMeter::new(now),
            their_neighbors: Vec::new(),
            joiner: false,
            prefix: None,
        },
    );
    node.by_location.insert(location, peer);
}

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().expect("an address"))
}

fn challenge(actions: &[O]) -> Option<Challenge> {
    sends(actions).into_iter().find_map(|(_, m)| match m {
        Message::JoinChallenge(c) => Some(c),
        _ => None,
    })
}

fn refusal(actions: &[O]) -> Option<String> {
    sends(actions).into_iter().find_map(|(_, m)| match m {
        Message::JoinRefused { reason } => Some(reason),
        _ => None,
    })
}

/// A requester at `me`, at `max_degree` (4) with two ring links on each
/// side close by, the first of which is `hop`; returns it and the id and
/// target of a long-link request it sent.
fn requester_at(me: Location, hop: PeerId, gateway: PeerId, now: Instant) -> RingState {
    let config = RingConfig {
        target_degree: 2,
        max_degree: 4,
        ..RingConfig::with_gateways([gateway])
    };
    let mut r = RingState::new(key(2), config, 7, now, UNIX);
    r.location = Some(me);
    let unit = u64::MAX / 1000;
    for (i, offset) in [
        unit,
        2 * unit,
        0u64.wrapping_sub(unit),
        0u64.wrapping_sub(2 * unit),
    ]
    .into_iter()
    .enumerate()
    {
        let peer = if i == 0 {
            hop
        } else {
            key(10 + i as u64).peer_id()
        };
        link(
            &mut r,
            peer,
            Location::from_raw(me.raw().wrapping_add(offset)),
            now,
        );
    }
    r
}

/// Sends a long-link request from `r` aimed at `target`; its route id.
fn long_request(r: &mut RingState, target: Location, now: Instant) -> u64 {
    let mut out = Vec::new();
    r.send_connect(Purpose::Long, now, &mut out);
    let id = sends(&out)
        .iter()
        .find_map(|(_, m)| match m {
            Message::Route(route) => Some(route.id),
            _ => None,
        })
        .expect("a connect request went out");
    // The draw is random; aim it where the test needs it.
    if let Some(p) = r.pending_connects.get_mut(&id) {
        p.target = target;
    }
    id
}

fn accepted(
    id: u64,
    me: Location,
    acceptor: &Keypair,
    location: Location,
    signer: Option<(&Keypair, PeerId)>,
) -> Message {
    let addresses = vec![format!("memory://{}", acceptor.peer_id())];
    let signature = match signer {
        Some((k, requester)) => Acceptance {
            route_id: id,
            requester: &requester,
            location,
            already_linked: false,
            addresses: &addresses,
        }
        .sign(k, &network()),
        None => [0; 64],
    };
    Message::Reply(RouteReply {
        id,
        path: vec![me],
        kind: ReplyKind::Accepted {
            acceptor: acceptor.peer_id(),
            location,
            addresses,
            already_linked: false,
            signature,
        },
    })
}

/// A hop on a connect request's way forges the answer: "X accepts you",
/// naming a peer that never saw the request. The requester must neither
/// dial X nor let X past its degree limit when X shows up.
#[test]
fn a_forged_accepted_is_not_acted_on() {
    let now = Instant::now();
    let g = key(1);
    let x = key(50);
    let t_x = transcript(&g, &x, 5, 6);
    let x_loc = t_x.location();
    // The requester sits half a ring from X: X is no ring link of it.
    let me = Location::from_raw(x_loc.raw().wrapping_add(1 << 63));
    let hop = key(10).peer_id();
    let mut r = requester_at(me, hop, g.peer_id(), now);
    let id = long_request(&mut r, x_loc, now);
    // The hop answers for X, which signed nothing.
    let actions = r.on_message(hop, accepted(id, me, &x, x_loc, None), 100, now);
    assert!(
        !dials(&actions).contains(&x.peer_id()),
        "the requester dials the forged acceptor: {actions:?}"
    );
    assert_eq!(r.stats().accepts_forged, 1);
    assert!(!reported(&actions, hop), "the relay is not blamed");
    // X connects anyway (or is made to): it gets no pass past the limit.
    r.on_peer_up(x.peer_id(), None, now);
    let actions = r.on_message(x.peer_id(), Message::Announce(t_x), 200, now);
    assert!(
        !actions.iter().any(|a| matches!(a,
            Output::Event(Event::NeighborUp { peer, .. }) if *peer == x.peer_id())),
        "the forged acceptor is admitted past max_degree: {actions:?}"
    );
    assert_eq!(r.degree(), 4);
}

/// An acceptor (signing) lists an address naming another peer, and text
/// that is no address: the dial goes only to addresses naming the
/// acceptor, so an answer cannot point our dial at a third peer.
#[test]
fn a_dial_goes_only_to_addresses_naming_the_acceptor() {
    let now = Instant::now();
    let g = key(1);
    let acceptor = key(70);
    let victim = key(71).peer_id();
    let location = transcript(&g, &acceptor, 3, 4).location();
    let me = Location::from_raw(location.raw().wrapping_add(1 << 63));
    let hop = key(10).peer_id();
    let mut r = requester_at(me, hop, g.peer_id(), now);
    let requester = r.local();
    let id = long_request(&mut r, location, now);
    let own = format!("memory://{}", acceptor.peer_id());
    let addresses = vec![
        format!("memory://{victim}"),
        "not an address".to_string(),
        own.clone(),
    ];
    let signature = Acceptance {
        route_id: id,
        requester: &requester,
        location,
        already_linked: false,
        addresses: &addresses,
    }
    .sign(&acceptor, &network());
    let reply = Message::Reply(RouteReply {
        id,
        path: vec![me],
        kind: ReplyKind::Accepted {
            acceptor: acceptor.peer_id(),
            location,
            addresses,
            already_linked: false,
            signature,
        },
    });
    let actions = r.on_message(hop, reply, 100, now);
    let connects: Vec<(PeerId, Vec<PeerAddress>)> = actions
        .iter()
        .filter_map(|a| match a {
            Output::Connect { peer, addresses } => Some((*peer, addresses.clone())),
            _ => None,
        })
        .collect();
    let parsed: PeerAddress = own.parse().expect("an address");
    assert_eq!(connects, vec![(acceptor.peer_id(), vec![parsed])]);
}

/// The hop answers for a peer of its own, which signs: the requester takes
/// it only where the route should have ended (no link of ours closer to
/// the target), and only with the location signed.
#[test]
fn a_signed_accept_counts_only_where_the_route_should_end() {
    let now = Instant::now();
    let g = key(1);
    let sybil = key(60);
    let t_s = transcript(&g, &sybil, 7, 8);
    let s_loc = t_s.location();
    let me = Location::from_raw(s_loc.raw().wrapping_add(1 << 63));
    let hop = key(10).peer_id();
    let mut r = requester_at(me, hop, g.peer_id(), now);
    let requester = r.local();
    // Aimed next to us: our own links are far better matches.
    let id = long_request(&mut r, Location::from_raw(me.raw().wrapping_add(7)), now);
    let reply = accepted(id, me, &sybil, s_loc, Some((&sybil, requester)));
    let actions = r.on_message(hop, reply, 100, now);
    assert!(dials(&actions).is_empty(), "{actions:?}");
    assert_eq!(r.stats().accepts_implausible, 1);
    // Aimed at it, the same signed answer is good: dialed, and admitted
    // past max_degree — with the location it signed only.
    let id = long_request(&mut r, s_loc, now);
    let reply = accepted(id, me, &sybil, s_loc, Some((&sybil, requester)));
    let actions = r.on_message(hop, reply, 100, now);
    assert_eq!(dials(&actions), vec![sybil.peer_id()]);
    let admitted = |actions: &[O], who: PeerId| {
        actions
            .iter()
            .any(|a| matches!(a, Output::Event(Event::NeighborUp { peer, .. }) if *peer == who))
    };
    r.on_peer_up(sybil.peer_id(), None, now);
    let actions = r.on_message(sybil.peer_id(), Message::Announce(t_s), 200, now);
    // (Then pruned back to max_degree: it is the only link not a ring link.)
    assert!(admitted(&actions, sybil.peer_id()), "{actions:?}");
    // Signed for one location, shown another: no pass.
    let other = key(61);
    let t_o = transcript(&g, &other, 9, 9);
    let id = long_request(&mut r, t_o.location(), now);
    let elsewhere = Location::from_raw(t_o.location().raw() ^ 1);
    let reply = accepted(id, me, &other, elsewhere, Some((&other, requester)));
    if let Some(p) = r.pending_connects.get_mut(&id) {
        p.target = elsewhere;
    }
    let actions = r.on_message(hop, reply, 100, now);
    assert_eq!(dials(&actions), vec![other.peer_id()]);
    r.on_peer_up(other.peer_id(), None, now);
    let actions = r.on_message(other.peer_id(), Message::Announce(t_o), 200, now);
    assert!(!admitted(&actions, other.peer_id()), "{actions:?}");
}

/// A neighbour's list must be a neighbour list: sorted, without
/// duplicates, without the sender itself, and naming us (we are its
/// neighbour) unless it is full. A list that is not is refused and its
/// sender reported.
#[test]
fn a_neighbour_list_that_cannot_be_true_is_refused_and_reported() {
    let now = Instant::now();
    let mut r = RingState::new(key(2), RingConfig::default(), 7, now, UNIX);
    let me = Location::from_raw(1 << 62);
    r.location = Some(me);
    let liar = key(3).peer_id();
    let liar_loc = Location::from_raw(3 << 61);
    link(&mut r, liar, liar_loc, now);
    let (a, b) = (Location::from_raw(5), Location::from_raw(9));
    let lies = [
        vec![a, a, b, me],     // a duplicate
        vec![b, me, a],        // unsorted
        vec![a, me, liar_loc], // names the sender itself
        vec![a, b],            // leaves us out
    ];
    for lie in lies {
        let actions = r.on_message(liar, Message::Neighbors(lie.clone()), 50, now);
        assert!(reported(&actions, liar), "{lie:?} is taken: {actions:?}");
        assert!(
            r.neighbors[&liar].their_neighbors.is_empty(),
            "{lie:?} is kept for lookahead"
        );
    }
    assert_eq!(r.stats().lists_refused, 4);
    // An honest list is kept; a full one need not name us.
    let honest = vec![a, b, me];
    let actions = r.on_message(liar, Message::Neighbors(honest.clone()), 50, now);
    assert!(!reported(&actions, liar));
    assert_eq!(r.neighbors[&liar].their_neighbors, honest);
    let full: Vec<Location> = (1..=MAX_NEIGHBOR_LIST as u64)
        .map(|i| Location::from_raw(i << 50))
        .collect();
    let actions = r.on_message(liar, Message::Neighbors(full.clone()), 600, now);
    assert!(!reported(&actions, liar));
    assert_eq!(r.neighbors[&liar].their_neighbors, full);
}

/// 64 fresh keys commit to a gateway and disconnect: their slots are freed
/// at once, and an honest joiner is served.
#[test]
fn join_slots_are_freed_when_the_joiner_disconnects() {
    let now = Instant::now();
    let g = key(1);
    let mut gw = RingState::new_gateway(
        g.clone(),
        RingConfig::with_gateways([g.peer_id()]),
        1,
        now,
        UNIX,
    );
    for i in 0..64u64 {
        let sybil = key(1000 + i).peer_id();
        gw.on_peer_up(sybil, None, now);
        let out = gw.on_message(
            sybil,
            Message::JoinCommit {
                commitment: [i as u8; 32],
            },
            40,
            now,
        );
        assert!(challenge(&out).is_some());
        gw.on_peer_down(sybil, now);
    }
    let honest = key(2).peer_id();
    gw.on_peer_up(honest, None, now);
    let out = gw.on_message(
        honest,
        Message::JoinCommit {
            commitment: [9; 32],
        },
        40,
        now,
    );
    assert!(
        challenge(&out).is_some(),
        "the honest joiner is refused: {out:?}"
    );
    // Joiners that stay connected do hold their slots.
    for i in 0..63u64 {
        let sybil = key(2000 + i).peer_id();
        gw.on_peer_up(sybil, None, now);
        gw.on_message(
            sybil,
            Message::JoinCommit {
                commitment: [1; 32],
            },
            40,
            now,
        );
    }
    let late = key(3).peer_id();
    gw.on_peer_up(late, None, now);
    let out = gw.on_message(
        late,
        Message::JoinCommit {
            commitment: [9; 32],
        },
        40,
        now,
    );
    assert!(refusal(&out).is_some_and(|r| r.contains("too many joins")));
}

/// A joiner that dislikes the location its first negotiation gives walks
/// away and tries again with a new commitment: the gateway answers only
/// with the grant it already made, until it expires — also after a
/// restart from its store — so the location cannot be re-rolled under the
/// same key.
#[test]
fn a_joiner_cannot_reroll_its_location_with_the_same_key() {
    let now = Instant::now();
    let g = key(1);
    let config = RingConfig::with_gateways([g.peer_id()]);
    let mut gw = RingState::new_gateway(g.clone(), config.clone(), 1, now, UNIX);
    let mut store = Vec::new();
    let j = key(2);
    let first = JoinerSecret::new(j.peer_id(), [1; 32]);
    gw.on_peer_up(j.peer_id(), None, now);
    let out = gw.on_message(
        j.peer_id(),
        Message::JoinCommit {
            commitment: first.commitment(),
        },
        40,
        now,
    );
    // The grant is stored before the challenge leaves.
    let stored = out.iter().position(|a| {
        matches!(
            a,
            Output::Effect(StoreEffect::Store(StoredRecord::Grant(_)))
        )
    });
    let sent = out.iter().position(|a| matches!(a, Output::Send { .. }));
    assert!(stored.is_some() && stored < sent, "{out:?}");
    store.extend(out.iter().filter_map(|a| match a {
        Output::Effect(StoreEffect::Store(r)) => Some(r.clone()),
        _ => None,
    }));
    let c1 = challenge(&out).expect("a challenge");
    let location1 = first
        .complete(g.peer_id(), &c1, &network())
        .expect("verifies")
        .location();
    gw.on_peer_down(j.peer_id(), now);
    // An hour later, a second try with another value; and after a restart
    // of the gateway from its store.
    let later = now + Duration::from_secs(3600);
    let restarted = {
        let mut gw = RingState::new_gateway(g.clone(), config.clone(), 2, later, UNIX + 3600);
        gw.restored(store.clone(), later);
        gw
    };
    let second = JoinerSecret::new(j.peer_id(), [2; 32]);
    for mut gw in [gw, restarted] {
        gw.on_peer_up(j.peer_id(), None, later);
        let out = gw.on_message(
            j.peer_id(),
            Message::JoinCommit {
                commitment: second.commitment(),
            },
            40,
            later,
        );
        if let Some(c2) = challenge(&out)
            && let Ok(t) = second.complete(g.peer_id(), &c2, &network())
        {
            panic!(
                "a second location for the same key: {} after {}",
                t.location(),
                location1
            );
        }
        assert_eq!(gw.stats().joins_refused_rebind, 1);
        // The first value still gets the first answer.
        let out = gw.on_message(
            j.peer_id(),
            Message::JoinCommit {
                commitment: first.commitment(),
            },
            40,
            later,
        );
        assert_eq!(challenge(&out), Some(c1.clone()));
    }
    // Past the expiry, the PeerId may negotiate anew.
    let expired = now + RingConfig::default().location_ttl;
    let mut gw = RingState::new_gateway(g.clone(), config, 3, now, UNIX);
    gw.restored(store, now);
    gw.on_peer_up(j.peer_id(), None, expired);
    let out = gw.on_message(
        j.peer_id(),
        Message::JoinCommit {
            commitment: second.commitment(),
        },
        40,
        expired,
    );
    let c3 = challenge(&out).expect("a new grant after the expiry");
    assert!(second.complete(g.peer_id(), &c3, &network()).is_ok());
}

/// A joiner restarted mid-negotiation commits to the value it stored, so
/// it completes with the grant the gateway holds for it; once joined, a
/// restart announces the stored location instead of negotiating.
#[test]
fn a_joiner_keeps_its_value_and_its_location_across_restarts() {
    let now = Instant::now();
    let g = key(1);
    let config = RingConfig::with_gateways([g.peer_id()]);
    let mut gw = RingState::new_gateway(g.clone(), config.clone(), 1, now, UNIX);
    let stored = |actions: &[O], into: &mut BTreeMap<RecordKey, StoredRecord>| {
        for a in actions {
            match a {
                Output::Effect(StoreEffect::Store(r)) => {
                    into.insert(r.key(), r.clone());
                }
                Output::Effect(StoreEffect::Forget(k)) => {
                    into.remove(k);
                }
                _ => {}
            }
        }
    };
    let mut disk = BTreeMap::new();
    let mut j = RingState::new(key(2), config.clone(), 2, now, UNIX);
    let out = j.on_peer_up(g.peer_id(), None, now);
    stored(&out, &mut disk);
    let [(_, commit)] = &sends(&out)[..] else {
        panic!("a commitment: {out:?}")
    };
    gw.on_peer_up(key(2).peer_id(), None, now);
    let answer = gw.on_message(key(2).peer_id(), commit.clone(), 40, now);
    // The joiner crashed before the answer came; it starts again.
    let mut j = RingState::new(key(2), config.clone(), 3, now, UNIX);
    j.restored(disk.values().cloned().collect(), now);
    let out = j.on_peer_up(g.peer_id(), None, now);
    assert_eq!(
        sends(&out),
        vec![(g.peer_id(), commit.clone())],
        "the same value"
    );
    let again = gw.on_message(key(2).peer_id(), commit.clone(), 40, now);
    assert_eq!(challenge(&again), challenge(&answer));
    let done = j.on_message(
        g.peer_id(),
        Message::JoinChallenge(challenge(&again).expect("answer")),
        100,
        now,
    );
    stored(&done, &mut disk);
    let location = j.location().expect("joined");
    assert!(disk.contains_key(&RecordKey::Own));
    assert!(!disk.contains_key(&RecordKey::Secret(g.peer_id())));
    // Restarted once more: the location is back, nothing is negotiated.
    let mut j = RingState::new(key(2), config, 4, now, UNIX);
    let back = j.restored(disk.values().cloned().collect(), now);
    assert_eq!(j.location(), Some(location));
    assert!(back.contains(&Output::Event(Event::Joined { location })));
    let out = j.on_peer_up(g.peer_id(), None, now);
    assert!(matches!(&sends(&out)[..], [(_, Message::Announce(t))] if t.location() == location));
}

/// A PeerId that reconnects with a second valid transcript (another
/// location) is refused and reported: peers pin the first location they
/// verified for a PeerId, across disconnections, until it expires.
#[test]
fn a_peer_cannot_show_a_second_location_after_reconnecting() {
    let now = Instant::now();
    let g = key(1);
    let config = RingConfig::with_gateways([g.peer_id()]);
    let mut v = RingState::new_gateway(g.clone(), config, 1, now, UNIX);
    let p = key(4);
    let (t1, t2) = (transcript(&g, &p, 1, 2), transcript(&g, &p, 3, 4));
    assert_ne!(t1.location(), t2.location());
    v.on_peer_up(p.peer_id(), None, now);
    v.on_message(p.peer_id(), Message::Announce(t1.clone()), 200, now);
    assert_eq!(v.neighbors(now)[0].location, t1.location());
    v.on_peer_down(p.peer_id(), now);
    v.on_peer_up(p.peer_id(), None, now);
    let actions = v.on_message(p.peer_id(), Message::Announce(t2.clone()), 200, now);
    assert!(
        reported(&actions, p.peer_id()),
        "a second location is taken: {actions:?}"
    );
    assert!(v.neighbors(now).iter().all(|n| n.location == t1.location()));
    assert_eq!(v.stats().locations_conflicting, 1);
    // The first one is still good.
    v.on_peer_down(p.peer_id(), now);
    v.on_peer_up(p.peer_id(), None, now);
    let actions = v.on_message(p.peer_id(), Message::Announce(t1.clone()), 200, now);
    assert!(!reported(&actions, p.peer_id()));
    assert!(v.is_neighbor(&p.peer_id()));
    // Once the first has expired, a new location is taken, and the link
    // follows it.
    let ttl = RingConfig::default().location_ttl;
    let later = now + ttl;
    let t3 = super::tests::transcript_until(&g, &p, 5, 6, UNIX + 2 * ttl.as_secs());
    let actions = v.on_message(p.peer_id(), Message::Announce(t3.clone()), 200, later);
    assert!(!reported(&actions, p.peer_id()), "{actions:?}");
    assert_eq!(
        v.neighbors(later)
            .iter()
            .find(|n| n.peer == p.peer_id())
            .map(|n| n.location),
        Some(t3.location())
    );
}

/// A node whose location expires leaves its links and negotiates a new
/// one; a gateway fixes its own again at once.
#[test]
fn an_expired_location_is_renegotiated() {
    let now = Instant::now();
    let g = key(1);
    let config = RingConfig::with_gateways([g.peer_id()]);
    let mut gw = RingState::new_gateway(g.clone(), config.clone(), 1, now, UNIX);
    let old = gw.location().expect("a gateway has a location");
    let n = key(5);
    gw.on_peer_up(n.peer_id(), None, now);
    gw.on_message(
        n.peer_id(),
        Message::Announce(transcript(&g, &n, 1, 1)),
        200,
        now,
    );
    assert!(gw.is_neighbor(&n.peer_id()));
    let expiry = gw.next_wakeup().expect("a wake-up");
    assert!(expiry <= now + config.location_ttl);
    let later = now + config.location_ttl;
    let out = gw.on_tick(later);
    let new = gw.location().expect("fixed again");
    assert_ne!(new, old);
    assert!(sends(&out).contains(&(n.peer_id(), Message::Leave)));
    assert!(
        sends(&out).iter().any(|(to, m)| *to == n.peer_id()
            && matches!(m, Message::Announce(t) if t.location() == new))
    );
    assert!(
        out.contains(&Output::Effect(StoreEffect::Store(StoredRecord::Own(
            gw.transcript().cloned().expect("transcript")
        ))))
    );
    // A plain node asks a gateway again.
    let mut j = RingState::new(key(6), config.clone(), 2, now, UNIX);
    j.restored(vec![StoredRecord::Own(transcript(&g, &key(6), 2, 2))], now);
    assert!(j.location().is_some());
    j.on_peer_up(g.peer_id(), None, now);
    let out = j.on_tick(later);
    assert_eq!(j.location(), None);
    assert!(
        sends(&out)
            .iter()
            .any(|(to, m)| *to == g.peer_id() && matches!(m, Message::JoinCommit { .. }))
    );
}

/// A gateway grants `max_joins_per_prefix` new locations per window to one
/// /24; other networks, and the same one in the next window, are served.
#[test]
fn new_locations_per_network_are_limited() {
    let now = Instant::now();
    let g = key(1);
    let config = RingConfig::with_gateways([g.peer_id()]);
    let mut gw = RingState::new_gateway(g.clone(), config.clone(), 1, now, UNIX);
    let mut ask = |seed: u64, from: &str, at: Instant| {
        let peer = key(seed).peer_id();
        gw.on_peer_up(peer, ip(from), at);
        let out = gw.on_message(
            peer,
            Message::JoinCommit {
                commitment: [7; 32],
            },
            40,
            at,
        );
        gw.on_peer_down(peer, at);
        challenge(&out).is_some()
    };
    let served: Vec<bool> = (0..10)
        .map(|i| ask(100 + i, &format!("10.0.0.{i}"), now))
        .collect();
    assert_eq!(
        served.iter().filter(|s| **s).count(),
        config.max_joins_per_prefix
    );
    assert!(ask(200, "10.0.1.1", now), "another /24");
    assert!(ask(201, "2001:db8:1::1", now));
    assert!(
        ask(202, "10.0.0.99", now + config.join_quota_window),
        "the next window"
    );
    assert_eq!(gw.stats().joins_refused_quota, 2);
}

/// At most `max_neighbors_per_prefix` neighbors per network; a new ring
/// link of a full network takes the place of its longest other link.
#[test]
fn one_network_holds_a_bounded_share_of_the_links() {
    let now = Instant::now();
    let g = key(1);
    let config = RingConfig {
        max_degree: 40,
        ..RingConfig::with_gateways([g.peer_id()])
    };
    let mut v = RingState::new_gateway(g.clone(), config.clone(), 1, now, UNIX);
    let me = v.location().expect("located");
    let mut peers: Vec<(Keypair, Transcript)> = (0..40u64)
        .map(|i| {
            let k = key(300 + i);
            let t = transcript(&g, &k, i as u8, 1);
            (k, t)
        })
        .collect();
    // Farthest first, so that the nearest comes last as a ring link.
    peers.sort_by_key(|(_, t)| std::cmp::Reverse(me.distance(t.location())));
    let sybils: Vec<(Keypair, Transcript)> = peers.drain(..6).collect();
    let nearest = peers.pop().expect("peers");
    // The others come from addresses the transport does not know (not
    // counted per network), and hold the ring links.
    for (k, t) in &peers {
        v.on_peer_up(k.peer_id(), None, now);
        v.on_message(k.peer_id(), Message::Announce(t.clone()), 200, now);
    }
    let honest = v.degree();
    assert_eq!(honest, peers.len());
    let mut refused = 0;
    for (i, (k, t)) in sybils.iter().enumerate() {
        v.on_peer_up(k.peer_id(), ip(&format!("10.0.0.{i}")), now);
        let out = v.on_message(k.peer_id(), Message::Announce(t.clone()), 200, now);
        refused += usize::from(
            out.iter()
                .any(|a| matches!(a, Output::Disconnect { peer, .. } if *peer == k.peer_id())),
        );
    }
    assert_eq!(v.degree(), honest + config.max_neighbors_per_prefix);
    assert_eq!(refused, 6 - config.max_neighbors_per_prefix);
    assert_eq!(v.stats().neighbors_refused_prefix, refused as u64);
    // The nearest peer of all, from the same /24: a ring link, it takes the
    // place of the farthest.
    v.on_peer_up(nearest.0.peer_id(), ip("10.0.0.200"), now);
    let out = v.on_message(
        nearest.0.peer_id(),
        Message::Announce(nearest.1.clone()),
        200,
        now,
    );
    assert!(v.is_neighbor(&nearest.0.peer_id()), "{out:?}");
    assert!(!v.is_neighbor(&sybils[0].0.peer_id()));
    assert!(sends(&out).contains(&(sybils[0].0.peer_id(), Message::Leave)));
    assert_eq!(v.degree(), honest + config.max_neighbors_per_prefix);
}
