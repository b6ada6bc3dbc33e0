//! The attacks of issue 14 item 6, each by a misbehaving peer against the
//! sans-IO core: a hop that forges `Accepted`, a neighbour that lies in its
//! neighbour list, fresh keys that hold a gateway's join slots, and a
//! PeerId that shows a second location.

use super::*;
use crate::negotiation::JoinerSecret;

fn key(seed: u64) -> Keypair {
    Keypair::from_seed(seed)
}

fn sends(actions: &[Action]) -> Vec<(PeerId, Message)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { to, message } => Some((*to, message.clone())),
            _ => None,
        })
        .collect()
}

fn dials(actions: &[Action]) -> Vec<PeerId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Dial { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect()
}

fn reported(actions: &[Action], who: PeerId) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Report { peer, .. } if *peer == who))
}

/// A transcript for `peer` signed by gateway `g`, from the two values.
fn transcript(g: &Keypair, peer: &Keypair, rj: u8, rg: u8) -> Transcript {
    let secret = JoinerSecret::new(peer.peer_id(), [rj; 32]);
    let c = Challenge::answer(g, &peer.peer_id(), &secret.commitment(), [rg; 32]);
    secret.complete(g.peer_id(), &c).expect("verifies")
}

/// Makes `peer` a neighbour of `node` at `location` directly.
fn link(node: &mut RingState, peer: PeerId, location: Location, now: Instant) {
    node.connected.insert(peer);
    node.neighbors.insert(
        peer,
        Neighbor {
            location,
            load: LoadMeter::new(now),
            their_neighbors: Vec::new(),
            joiner: false,
        },
    );
    node.by_location.insert(location, peer);
}

/// A hop on a connect request's way forges the answer: "X accepts you",
/// naming a peer that never saw the request. The requester must neither
/// dial X nor let X past its degree limit when X shows up.
#[test]
fn a_forged_accepted_is_not_acted_on() {
    let now = Instant::now();
    let g = key(1);
    let config = RingConfig {
        target_degree: 2,
        max_degree: 4,
        ..RingConfig::with_gateways([g.peer_id()])
    };
    let x = key(50);
    let t_x = transcript(&g, &x, 5, 6);
    let x_loc = t_x.location();
    // The requester sits half a ring from X, with two ring links on each
    // side close by: X is no ring link of it, and it is at max_degree.
    let me = Location::from_raw(x_loc.raw().wrapping_add(1 << 63));
    let mut r = RingState::new(key(2).peer_id(), config, 7, now);
    r.location = Some(me);
    let unit = u64::MAX / 1000;
    let hop = key(10).peer_id();
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
    // A long-link request; the forging hop answers it.
    let mut out = Vec::new();
    r.send_connect(Purpose::Long, now, &mut out);
    let id = sends(&out)
        .iter()
        .find_map(|(_, m)| match m {
            Message::Route(route) => Some(route.id),
            _ => None,
        })
        .expect("a connect request went out");
    let forged = Message::Reply(RouteReply {
        id,
        path: vec![me],
        kind: ReplyKind::Accepted {
            acceptor: x.peer_id(),
            location: x_loc,
            addresses: vec![format!("memory://{}", x.peer_id())],
            already_linked: false,
        },
    });
    let actions = r.on_message(hop, forged, 100, now);
    assert!(
        !dials(&actions).contains(&x.peer_id()),
        "the requester dials the forged acceptor: {actions:?}"
    );
    // X connects anyway (or is made to): it gets no pass past the limit.
    r.on_peer_up(x.peer_id(), now);
    let actions = r.on_message(x.peer_id(), Message::Announce(t_x), 200, now);
    assert!(
        !actions.iter().any(|a| matches!(a,
            Action::Event(Event::NeighborUp { peer, .. }) if *peer == x.peer_id())),
        "the forged acceptor is admitted past max_degree: {actions:?}"
    );
    assert_eq!(r.degree(), 4);
}

/// A neighbour's list must be a neighbour list: sorted, without
/// duplicates, without the sender itself, and naming us (we are its
/// neighbour) unless it is full. A list that is not is refused and its
/// sender reported.
#[test]
fn a_neighbour_list_that_cannot_be_true_is_refused_and_reported() {
    let now = Instant::now();
    let mut r = RingState::new(key(2).peer_id(), RingConfig::default(), 7, now);
    let me = Location::from_raw(1 << 62);
    r.location = Some(me);
    let liar = key(3).peer_id();
    let liar_loc = Location::from_raw(3 << 61);
    link(&mut r, liar, liar_loc, now);
    let (a, b) = (Location::from_raw(5), Location::from_raw(9));
    let lies = [
        vec![me, a, a, b],     // a duplicate
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
    // An honest list is kept.
    let honest = vec![a, b, me];
    let actions = r.on_message(liar, Message::Neighbors(honest.clone()), 50, now);
    assert!(!reported(&actions, liar));
    assert_eq!(r.neighbors[&liar].their_neighbors, honest);
}

/// 64 fresh keys commit to a gateway and disconnect: their slots are freed
/// at once, and an honest joiner is served.
#[test]
fn join_slots_are_freed_when_the_joiner_disconnects() {
    let now = Instant::now();
    let g = key(1);
    let mut gw =
        RingState::new_gateway(g.clone(), RingConfig::with_gateways([g.peer_id()]), 1, now);
    for i in 0..64u64 {
        let sybil = key(1000 + i).peer_id();
        gw.on_peer_up(sybil, now);
        let out = gw.on_message(
            sybil,
            Message::JoinCommit {
                commitment: [i as u8; 32],
            },
            40,
            now,
        );
        assert!(matches!(&sends(&out)[..], [(_, Message::JoinChallenge(_))]));
        gw.on_peer_down(sybil, now);
    }
    let honest = key(2).peer_id();
    gw.on_peer_up(honest, now);
    let out = gw.on_message(
        honest,
        Message::JoinCommit {
            commitment: [9; 32],
        },
        40,
        now,
    );
    assert!(
        matches!(&sends(&out)[..], [(_, Message::JoinChallenge(_))]),
        "the honest joiner is refused: {out:?}"
    );
}

/// A joiner that dislikes the location its first negotiation gives walks
/// away and tries again with a new commitment: the gateway answers only
/// with the grant it already made (same value), so the location cannot be
/// re-rolled under the same key.
#[test]
fn a_joiner_cannot_reroll_its_location_with_the_same_key() {
    let now = Instant::now();
    let g = key(1);
    let config = RingConfig::with_gateways([g.peer_id()]);
    let mut gw = RingState::new_gateway(g.clone(), config.clone(), 1, now);
    let j = key(2);
    let first = JoinerSecret::new(j.peer_id(), [1; 32]);
    gw.on_peer_up(j.peer_id(), now);
    let out = gw.on_message(
        j.peer_id(),
        Message::JoinCommit {
            commitment: first.commitment(),
        },
        40,
        now,
    );
    let [(_, Message::JoinChallenge(c1))] = &sends(&out)[..] else {
        panic!("a challenge: {out:?}")
    };
    let location1 = first
        .complete(g.peer_id(), c1)
        .expect("verifies")
        .location();
    gw.on_peer_down(j.peer_id(), now);
    // Long after any cooldown, a second try with another value.
    let later = now + Duration::from_secs(3600);
    let second = JoinerSecret::new(j.peer_id(), [2; 32]);
    gw.on_peer_up(j.peer_id(), later);
    let out = gw.on_message(
        j.peer_id(),
        Message::JoinCommit {
            commitment: second.commitment(),
        },
        40,
        later,
    );
    for (_, m) in sends(&out) {
        if let Message::JoinChallenge(c2) = m
            && let Ok(t) = second.complete(g.peer_id(), &c2)
        {
            panic!(
                "a second location for the same key: {} after {}",
                t.location(),
                location1
            );
        }
    }
}

/// A PeerId that reconnects with a second valid transcript (another
/// location) is refused and reported: peers pin the first location they
/// verified for a PeerId, across disconnections.
#[test]
fn a_peer_cannot_show_a_second_location_after_reconnecting() {
    let now = Instant::now();
    let g = key(1);
    let config = RingConfig::with_gateways([g.peer_id()]);
    let mut v = RingState::new_gateway(g.clone(), config, 1, now);
    let p = key(4);
    let (t1, t2) = (transcript(&g, &p, 1, 2), transcript(&g, &p, 3, 4));
    assert_ne!(t1.location(), t2.location());
    v.on_peer_up(p.peer_id(), now);
    v.on_message(p.peer_id(), Message::Announce(t1.clone()), 200, now);
    assert_eq!(v.neighbors(now)[0].location, t1.location());
    v.on_peer_down(p.peer_id(), now);
    v.on_peer_up(p.peer_id(), now);
    let actions = v.on_message(p.peer_id(), Message::Announce(t2), 200, now);
    assert!(
        reported(&actions, p.peer_id()),
        "a second location is taken: {actions:?}"
    );
    assert!(v.neighbors(now).iter().all(|n| n.location == t1.location()));
    // The first one is still good.
    v.on_peer_down(p.peer_id(), now);
    v.on_peer_up(p.peer_id(), now);
    let actions = v.on_message(p.peer_id(), Message::Announce(t1.clone()), 200, now);
    assert!(!reported(&actions, p.peer_id()));
    assert!(v.is_neighbor(&p.peer_id()));
}
