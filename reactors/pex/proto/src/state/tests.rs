use std::collections::BTreeMap;

use p2p_core::Keypair;
use proptest::prelude::*;

use super::*;

const SECOND: Duration = Duration::from_secs(1);

/// Peers 0..320, derived once: key derivation is the slow part of the
/// property test otherwise.
static PEERS: std::sync::LazyLock<Vec<PeerId>> =
    std::sync::LazyLock::new(|| (0..320).map(|n| Keypair::from_seed(n).peer_id()).collect());

fn peer(n: u64) -> PeerId {
    PEERS[n as usize]
}

fn new_state(config: PexConfig) -> (PexState, Instant) {
    let t0 = Instant::now();
    (PexState::new(config, 42, t0), t0)
}

/// (to, id) of every request in `actions`.
fn requests(actions: &[Action]) -> Vec<(PeerId, u64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                to,
                message: Message::Request { id },
            } => Some((*to, *id)),
            _ => None,
        })
        .collect()
}

fn reports(actions: &[Action]) -> Vec<(PeerId, PeerError)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Report { peer, error } => Some((*peer, error.clone())),
            _ => None,
        })
        .collect()
}

fn added(actions: &[Action]) -> Vec<PeerAddress> {
    actions
        .iter()
        .flat_map(|a| match a {
            Action::Effect(Effect::AddAddresses { addresses, .. }) => addresses.clone(),
            _ => Vec::new(),
        })
        .collect()
}

/// Brings `p` up (serving pex) with `connected` peers and returns the id
/// of the request sent to it, if any.
fn up(state: &mut PexState, p: PeerId, connected: usize, now: Instant) -> Option<u64> {
    requests(&state.on_peer_up(PeerUp::new(p), connected, now))
        .first()
        .map(|(_, id)| *id)
}

fn tcp(p: PeerId, host: &str, port: u16) -> String {
    format!("tcp://{p}@{host}:{port}")
}

#[test]
fn a_new_peer_is_asked_at_once_only_while_below_min_peers() {
    let (mut state, t0) = new_state(PexConfig::default());
    assert!(up(&mut state, peer(1), 1, t0).is_some());
    assert!(up(&mut state, peer(2), 7, t0).is_some());
    assert_eq!(up(&mut state, peer(3), 8, t0), None, "at min_peers");
    let not_pex = PeerUp {
        serves: false,
        ..PeerUp::new(peer(4))
    };
    assert!(requests(&state.on_peer_up(not_pex, 2, t0)).is_empty());
    assert_eq!(state.stats().requests_sent, 2);
}

#[test]
fn periodic_requests_come_every_interval_below_min_and_every_ten_intervals_above() {
    let (mut state, t0) = new_state(PexConfig::default());
    assert!(state.on_tick(t0, 0).is_empty(), "nobody to ask yet");
    assert_eq!(state.next_wakeup(), t0 + 30 * SECOND);
    let id = up(&mut state, peer(1), 1, t0 + SECOND).expect("asked on up");
    state.on_response(peer(1), id, vec![], t0 + 2 * SECOND);
    assert!(state.on_tick(t0 + 29 * SECOND, 1).is_empty(), "not due yet");
    let asked = requests(&state.on_tick(t0 + 30 * SECOND, 1));
    assert_eq!(asked.len(), 1);
    state.on_response(peer(1), asked[0].1, vec![], t0 + 31 * SECOND);
    // At min_peers the next request is ten intervals after the last.
    assert_eq!(state.next_wakeup(), t0 + 60 * SECOND);
    assert!(state.on_tick(t0 + 60 * SECOND, 8).is_empty());
    assert_eq!(state.next_wakeup(), t0 + 330 * SECOND);
    assert!(state.on_tick(t0 + 329 * SECOND, 8).is_empty());
    assert_eq!(requests(&state.on_tick(t0 + 330 * SECOND, 8)).len(), 1);
}

#[test]
fn the_peer_asked_least_recently_is_asked_and_never_twice_within_the_gap() {
    let config = PexConfig {
        min_peers: 100,
        request_interval: 10 * SECOND,
        min_request_gap: 10 * SECOND,
        ..PexConfig::default()
    };
    let (mut state, t0) = new_state(config);
    let mut last: BTreeMap<PeerId, Instant> = BTreeMap::new();
    for n in 1..=3 {
        let id = up(&mut state, peer(n), n as usize, t0).expect("asked");
        state.on_response(peer(n), id, vec![], t0);
        last.insert(peer(n), t0);
    }
    let mut order = Vec::new();
    for k in 1..=9u32 {
        let now = t0 + k * 10 * SECOND;
        for (to, id) in requests(&state.on_tick(now, 3)) {
            let gap = now - last[&to];
            assert!(gap >= 10 * SECOND, "{to} asked again after {gap:?}");
            last.insert(to, now);
            order.push(to);
            state.on_response(to, id, vec![], now);
        }
    }
    assert_eq!(order.len(), 9);
    // Round robin: each peer once in every three requests.
    for window in order.chunks(3) {
        let distinct: BTreeSet<_> = window.iter().collect();
        assert_eq!(distinct.len(), 3, "{order:?}");
    }
}

#[test]
fn a_peer_with_a_request_outstanding_is_not_asked_again_until_it_times_out() {
    let (mut state, t0) = new_state(PexConfig::default());
    up(&mut state, peer(1), 1, t0).expect("asked");
    assert!(requests(&state.on_tick(t0 + 20 * SECOND, 1)).is_empty());
    // At 30 s the request times out and the periodic request is due.
    let asked = requests(&state.on_tick(t0 + 30 * SECOND, 1));
    assert_eq!(asked.len(), 1);
    assert_eq!(state.stats().requests_unanswered, 1);
}

#[test]
fn requests_beyond_the_rate_limit_are_refused_and_reported() {
    let (mut state, t0) = new_state(PexConfig::default());
    let flooder = peer(1);
    up(&mut state, flooder, 1, t0);
    let first = state.on_request(flooder, 1, t0);
    assert!(
        matches!(first.as_slice(), [Action::Effect(Effect::Sample { to, id: 1, max: 100 })] if *to == flooder)
    );
    for k in 1..=5u32 {
        let actions = state.on_request(flooder, 1 + u64::from(k), t0 + k * SECOND);
        let reported = reports(&actions);
        assert_eq!(reported.len(), 1);
        assert_eq!(reported[0].1.penalty(), FLOOD_PENALTY);
        assert!(!reported[0].1.is_fatal());
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::Effect(Effect::Sample { .. })))
        );
    }
    assert_eq!(state.stats().requests_refused, 5);
    // Reconnecting does not reset the limit.
    state.on_peer_down(flooder, 0);
    up(&mut state, flooder, 1, t0 + 10 * SECOND);
    assert_eq!(
        reports(&state.on_request(flooder, 9, t0 + 10 * SECOND)).len(),
        1
    );
    // After min_request_gap since the last answered one, it is answered.
    let later = state.on_request(flooder, 10, t0 + 15 * SECOND);
    assert!(matches!(
        later.as_slice(),
        [Action::Effect(Effect::Sample { .. })]
    ));
    assert_eq!(state.stats().requests_served, 2);
}

#[test]
fn a_response_never_carries_more_than_the_cap_nor_the_requesters_own_address() {
    let requester = peer(1);
    let book: Vec<PeerAddress> = (1..300u64).map(|n| PeerAddress::memory(peer(n))).collect();
    for (cap, expected) in [(100, 100), (10, 10)] {
        let (mut state, _) = new_state(PexConfig {
            max_addresses_per_response: cap,
            ..PexConfig::default()
        });
        let actions = state.on_sample(requester, 5, book.clone());
        let [
            Action::Send {
                to,
                message:
                    Message::Response {
                        id: 5,
                        addresses,
                        observed: None,
                    },
            },
        ] = actions.as_slice()
        else {
            panic!("{actions:?}");
        };
        assert_eq!(*to, requester);
        assert_eq!(addresses.len(), expected);
        assert!(!addresses.contains(&PeerAddress::memory(requester).to_string()));
    }
}

#[test]
fn unsolicited_responses_are_reported_and_ignored() {
    let (mut state, t0) = new_state(PexConfig::default());
    let p = peer(1);
    let good = vec![PeerAddress::memory(peer(7)).to_string()];
    state.on_peer_up(
        PeerUp {
            serves: true,
            ..PeerUp::new(p)
        },
        9, // at min_peers: not asked on up
        t0,
    );
    // Never asked.
    let actions = state.on_response(p, 1, good.clone(), t0);
    assert_eq!(reports(&actions)[0].1.penalty(), UNSOLICITED_PENALTY);
    assert!(added(&actions).is_empty());
    // Asked, but answered with another id, then twice.
    let id = up(&mut state, p, 1, t0).expect("asked");
    assert_eq!(
        reports(&state.on_response(p, id + 1, good.clone(), t0)).len(),
        1
    );
    assert_eq!(added(&state.on_response(p, id, good.clone(), t0)).len(), 1);
    assert_eq!(reports(&state.on_response(p, id, good, t0)).len(), 1);
    assert_eq!(state.stats().responses_refused, 3);
    assert_eq!(state.stats().responses_accepted, 1);
}

#[test]
fn an_answer_outlives_its_connection_and_a_late_one_is_ignored_without_report() {
    let (mut state, t0) = new_state(PexConfig::default());
    let good = vec![PeerAddress::memory(peer(7)).to_string()];
    // The connection is replaced (down, up) while our request is out: the
    // answer still counts, and the new connection is not asked again.
    let id = up(&mut state, peer(1), 1, t0).expect("asked");
    state.on_peer_down(peer(1), 0);
    assert_eq!(up(&mut state, peer(1), 1, t0), None);
    let actions = state.on_response(peer(1), id, good.clone(), t0);
    assert_eq!(added(&actions), vec![PeerAddress::memory(peer(7))]);
    // An answer after we gave up waiting: ignored, not reported.
    let id = requests(&state.on_tick(t0 + 30 * SECOND, 1))[0].1;
    state.on_tick(t0 + 60 * SECOND, 1);
    assert_eq!(state.stats().requests_unanswered, 1);
    let actions = state.on_response(peer(1), id, good.clone(), t0 + 61 * SECOND);
    assert!(actions.is_empty(), "{actions:?}");
    // From a peer gone that we never asked: ignored, not reported.
    let actions = state.on_response(peer(2), 1, vec!["garbage".into()], t0);
    assert!(actions.is_empty());
    assert_eq!(state.stats().responses_late, 2);
    assert_eq!(state.stats().responses_refused, 0);
}

#[test]
fn oversized_responses_are_refused_whole_before_parsing() {
    let (mut state, t0) = new_state(PexConfig::default());
    let p = peer(1);
    let many: Vec<String> = (0..101u16)
        .map(|i| tcp(peer(2), "10.0.0.1", i + 1))
        .collect();
    let id = up(&mut state, p, 1, t0).expect("asked");
    let actions = state.on_response(p, id, many, t0);
    let reported = reports(&actions);
    assert!(
        matches!(reported[0].1, PeerError::Protocol(_)),
        "{reported:?}"
    );
    assert!(added(&actions).is_empty());

    let (mut state, t0) = new_state(PexConfig::default());
    let id = up(&mut state, p, 1, t0).expect("asked");
    let long = format!("tcp://{}@{}.example:1", peer(2), "a".repeat(600));
    let actions = state.on_response(p, id, vec![tcp(peer(3), "10.0.0.1", 1), long], t0);
    assert!(matches!(reports(&actions)[0].1, PeerError::Protocol(_)));
    assert!(added(&actions).is_empty());
    assert_eq!(state.stats().addresses_refused.total(), 0, "nothing parsed");
}

#[test]
fn one_malformed_entry_spoils_the_response_but_an_unknown_scheme_does_not() {
    let (mut state, t0) = new_state(PexConfig::default());
    let p = peer(1);
    let id = up(&mut state, p, 1, t0).expect("asked");
    let entries = vec![
        PeerAddress::memory(peer(2)).to_string(),
        "tcp://not-a-peer@10.0.0.1:1".to_string(),
    ];
    let actions = state.on_response(p, id, entries, t0);
    assert_eq!(reports(&actions)[0].1.penalty(), MALFORMED_PENALTY);
    assert!(added(&actions).is_empty());

    let id = requests(&state.on_tick(t0 + 30 * SECOND, 1))[0].1;
    let entries = vec![
        PeerAddress::memory(peer(2)).to_string(),
        format!("webrtc://{}@10.0.0.1:1", peer(3)),
    ];
    let actions = state.on_response(p, id, entries, t0 + 30 * SECOND);
    assert!(reports(&actions).is_empty());
    assert_eq!(added(&actions), vec![PeerAddress::memory(peer(2))]);
    assert_eq!(
        state
            .stats()
            .addresses_refused
            .get(AddressRefusal::UnknownScheme),
        1
    );
}

/// Pex checks only the message: duplicates. Everything that applies to
/// any address is the peer manager's one screen, which every reactor's
/// addresses pass; its refusals come back and are counted here too.
#[test]
fn a_response_is_checked_for_duplicates_and_the_peer_managers_refusals_counted() {
    let (mut state, t0) = new_state(PexConfig::default());
    let p = peer(1);
    let id = up(&mut state, p, 1, t0).expect("asked");
    let entries = vec![
        tcp(peer(2), "0.0.0.0", 7400),  // for the peer manager
        tcp(peer(2), "10.0.0.2", 7400), // for the peer manager
        tcp(peer(2), "10.0.0.2", 7400), // duplicate
        tcp(p, "203.0.113.1", 7400),    // the sender's own
    ];
    let actions = state.on_response(p, id, entries, t0);
    assert!(reports(&actions).is_empty());
    assert!(matches!(
        actions.as_slice(),
        [Action::Effect(Effect::AddAddresses { from, .. })] if *from == p
    ));
    let kept: Vec<String> = added(&actions).iter().map(ToString::to_string).collect();
    assert_eq!(
        kept,
        vec![
            tcp(peer(2), "0.0.0.0", 7400),
            tcp(peer(2), "10.0.0.2", 7400),
            tcp(p, "203.0.113.1", 7400),
        ]
    );
    state.on_added(&[
        Err(AddAddressError::Unspecified),
        Err(AddAddressError::NotPublic),
        Ok(true),
    ]);
    let stats = state.stats();
    assert_eq!(stats.addresses_refused.get(AddressRefusal::Duplicate), 1);
    assert_eq!(stats.addresses_refused.get(AddressRefusal::PeerManager), 2);
    assert_eq!(stats.addresses_refused.total(), 3);
    assert_eq!(stats.addresses_learned, 1);
}

#[test]
fn announced_addresses_are_checked_and_an_unspecified_ip_takes_the_observed_one() {
    let (mut state, t0) = new_state(PexConfig::default());
    let p = peer(1);
    let up = PeerUp {
        peer: p,
        serves: true,
        inbound: false,
        addresses: vec![
            tcp(p, "0.0.0.0", 7400),
            format!("quic://{p}@[::]:7401"),
            tcp(peer(2), "10.0.0.2", 1), // names someone else
            "nonsense".into(),
            PeerAddress::memory(p).to_string(),
        ],
        ip: Some("198.51.100.4".parse().unwrap()),
    };
    let actions = state.on_peer_up(up.clone(), 1, t0);
    let kept: Vec<String> = added(&actions).iter().map(ToString::to_string).collect();
    assert_eq!(
        kept,
        vec![
            tcp(p, "198.51.100.4", 7400),
            format!("quic://{p}@198.51.100.4:7401"),
            PeerAddress::memory(p).to_string(),
        ]
    );
    let refused = &state.stats().addresses_refused;
    assert_eq!(refused.get(AddressRefusal::ForeignPeer), 1);
    assert_eq!(refused.get(AddressRefusal::Malformed), 1);
    assert!(
        reports(&actions).is_empty(),
        "announcements are not reported"
    );

    // Without an observed IP, an unspecified one stays unspecified (and
    // the peer manager's screen refuses it).
    let (mut state, t0) = new_state(PexConfig::default());
    let blind = PeerUp { ip: None, ..up };
    let kept = added(&state.on_peer_up(blind, 1, t0));
    assert_eq!(kept[0], tcp(p, "0.0.0.0", 7400).parse().unwrap());
}

#[test]
fn wire_messages_convert_both_ways_and_an_empty_one_is_ignored() {
    for message in [
        Message::Request { id: 3 },
        Message::Response {
            id: 4,
            addresses: vec!["memory://x".into()],
            observed: None,
        },
    ] {
        let wire: proto::PexMessage = message.clone().into();
        assert_eq!(Message::from_wire(wire), Some(message));
    }
    let (mut state, t0) = new_state(PexConfig::default());
    assert!(
        state
            .on_message(peer(1), proto::PexMessage { kind: None }, t0)
            .is_empty()
    );
}

// ---------------------------------------------------------------------
// Hostile sequences.

#[derive(Debug, Clone)]
enum Event {
    Up(u64, bool),
    Down(u64),
    Request(u64, u64),
    /// A response from a peer; `true`: with the id we asked (if any).
    Response(u64, bool, Vec<String>),
    Tick(u64),
    Sample(u64, usize),
}

fn entry() -> impl Strategy<Value = String> {
    let hosts = prop::sample::select(vec![
        "10.0.0.1",
        "10.0.0.2",
        "0.0.0.0",
        "[::]",
        "[::ffff:10.0.0.1]",
        "seed.example.org",
    ]);
    prop_oneof![
        6 => (0u64..8, hosts, 0u16..6, prop::sample::select(vec!["tcp", "quic"]))
            .prop_map(|(p, h, port, s)| format!("{s}://{}@{h}:{port}", peer(p))),
        2 => (0u64..8).prop_map(|p| PeerAddress::memory(peer(p)).to_string()),
        1 => (0u64..8).prop_map(|p| format!("libp2p://{}@/ip4/10.0.0.1/tcp/{p}", peer(p))),
        1 => (0u64..8).prop_map(|p| format!("webrtc://{}@x", peer(p))),
        1 => ".{0,40}",
        1 => Just("a".repeat(600)),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (1u64..6, any::<bool>()).prop_map(|(p, s)| Event::Up(p, s)),
        (1u64..6).prop_map(Event::Down),
        (1u64..6, 0u64..4).prop_map(|(p, id)| Event::Request(p, id)),
        (
            1u64..6,
            any::<bool>(),
            prop::collection::vec(entry(), 0..130)
        )
            .prop_map(|(p, ok, e)| Event::Response(p, ok, e)),
        (0u64..40).prop_map(Event::Tick),
        (1u64..6, 0usize..400).prop_map(|(p, n)| Event::Sample(p, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever peers do: nothing panics; a response we send never has
    /// more than the cap; we answer each peer at most once per
    /// `min_request_gap` and ask each peer at most once per gap; each
    /// batch of addresses is at most 100, without duplicates, and names
    /// the peer that sent it.
    #[test]
    fn hostile_sequences_never_break_the_bounds(
        events in prop::collection::vec(event(), 1..80),
        cap in 1usize..=100,
    ) {
        let config = PexConfig {
            max_addresses_per_response: cap,
            ..PexConfig::default()
        };
        let gap = config.min_request_gap;
        let (mut state, t0) = new_state(config.clone());
        let mut now = t0;
        let mut up_peers = BTreeSet::new();
        let mut asked: BTreeMap<PeerId, (Instant, u64)> = BTreeMap::new();
        let mut served: BTreeMap<PeerId, Instant> = BTreeMap::new();
        for event in events {
            let actions = match event {
                Event::Up(n, serves_pex) => {
                    up_peers.insert(n);
                    let up = PeerUp { serves: serves_pex, ..PeerUp::new(peer(n)) };
                    state.on_peer_up(up, up_peers.len(), now)
                }
                Event::Down(n) => {
                    up_peers.remove(&n);
                    state.on_peer_down(peer(n), up_peers.len());
                    Vec::new()
                }
                Event::Request(n, id) => state.on_request(peer(n), id, now),
                Event::Response(n, use_id, entries) => {
                    let id = match asked.get(&peer(n)) {
                        Some((_, id)) if use_id => *id,
                        _ => 999,
                    };
                    state.on_response(peer(n), id, entries, now)
                }
                Event::Tick(secs) => {
                    now += Duration::from_secs(secs);
                    state.on_tick(now, up_peers.len())
                }
                Event::Sample(n, count) => {
                    let book = (0..count as u64).map(|i| PeerAddress::memory(peer(i % 50))).collect();
                    state.on_sample(peer(n), 1, book)
                }
            };
            for action in actions {
                match action {
                    Action::Send { message: Message::Response { addresses, .. }, .. } => {
                        prop_assert!(addresses.len() <= cap);
                        prop_assert!(addresses.iter().all(|a| a.len() <= MAX_ADDRESS_LEN));
                    }
                    Action::Send { to, message: Message::Request { id } } => {
                        if let Some((at, _)) = asked.get(&to) {
                            prop_assert!(now - *at >= gap, "asked {} twice within {:?}", to, now - *at);
                        }
                        asked.insert(to, (now, id));
                    }
                    Action::Effect(Effect::Sample { to, max, .. }) => {
                        prop_assert!(max <= cap);
                        if let Some(at) = served.get(&to) {
                            prop_assert!(now - *at >= gap, "served {} twice within {:?}", to, now - *at);
                        }
                        served.insert(to, now);
                    }
                    Action::Effect(Effect::AddAddresses { from, addresses }) => {
                        prop_assert!(addresses.len() <= MAX_ANNOUNCED_ADDRESSES.max(MAX_ADDRESSES_PER_RESPONSE));
                        prop_assert!(up_peers.iter().any(|n| peer(*n) == from) || asked.contains_key(&from));
                        let distinct: BTreeSet<&PeerAddress> = addresses.iter().collect();
                        prop_assert_eq!(distinct.len(), addresses.len());
                        let results = vec![Ok(true); addresses.len()];
                        state.on_added(&results);
                    }
                    Action::Report { error, .. } => prop_assert!(error.penalty() > 0),
                    Action::Disconnect { peer, .. } => {
                        prop_assert!(false, "disconnected {} without seed mode", peer)
                    }
                    other => prop_assert!(false, "pex never dials nor broadcasts: {:?}", other),
                }
            }
            prop_assert!(state.next_wakeup() >= t0);
        }
    }
}

fn disconnects(actions: &[Action]) -> Vec<PeerId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Disconnect { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect()
}

#[test]
fn seed_mode_frees_inbound_slots_after_answering_and_keeps_outbound_peers() {
    let (mut state, t0) = new_state(PexConfig {
        seed_mode: true,
        ..PexConfig::default()
    });
    let inbound = |n| PeerUp {
        inbound: true,
        ..PeerUp::new(peer(n))
    };
    state.on_peer_up(inbound(1), 1, t0);
    state.on_peer_up(inbound(2), 2, t0);
    state.on_peer_up(PeerUp::new(peer(3)), 3, t0);
    state.on_peer_up(inbound(4), 4, t0);
    // Peer 1 asks and is answered; it leaves SEED_LINGER later.
    assert!(matches!(
        state.on_request(peer(1), 9, t0).as_slice(),
        [Action::Effect(Effect::Sample { .. })]
    ));
    assert!(state.next_wakeup() <= t0 + SEED_LINGER);
    assert!(disconnects(&state.on_tick(t0 + SEED_LINGER / 2, 4)).is_empty());
    assert_eq!(
        disconnects(&state.on_tick(t0 + SEED_LINGER, 4)),
        vec![peer(1)]
    );
    // Peer 4 goes by itself: nothing to do for it any more.
    state.on_peer_down(peer(4), 3);
    // Peer 2 asked nothing: it goes after SEED_MAX_STAY. Peer 3, whom we
    // dialed, stays.
    assert!(disconnects(&state.on_tick(t0 + SEED_MAX_STAY / 2, 3)).is_empty());
    assert_eq!(
        disconnects(&state.on_tick(t0 + SEED_MAX_STAY, 3)),
        vec![peer(2)]
    );
    assert!(disconnects(&state.on_tick(t0 + SEED_MAX_STAY * 4, 3)).is_empty());
    assert_eq!(state.stats().seed_disconnects, 2);
}

#[test]
fn without_seed_mode_inbound_peers_stay() {
    let (mut state, t0) = new_state(PexConfig::default());
    state.on_peer_up(
        PeerUp {
            inbound: true,
            ..PeerUp::new(peer(1))
        },
        1,
        t0,
    );
    state.on_request(peer(1), 1, t0);
    assert!(disconnects(&state.on_tick(t0 + SEED_MAX_STAY * 2, 1)).is_empty());
}

/// Brings `p` up at `ip` (serving pex), asks it, and returns the request id.
fn up_at(state: &mut PexState, p: PeerId, ip: &str, now: Instant) -> u64 {
    let mut up = PeerUp::new(p);
    up.ip = Some(ip.parse().unwrap());
    let connected = state.peers().count() + 1;
    state.on_peer_up(up, connected, now);
    state.asked.remove(&p);
    match state.request(p, now) {
        Action::Send {
            message: Message::Request { id },
            ..
        } => id,
        other => panic!("{other:?}"),
    }
}

fn respond(state: &mut PexState, p: PeerId, id: u64, observed: &str, now: Instant) -> Vec<Action> {
    let message = Message::Response {
        id,
        addresses: vec![],
        observed: Some(observed.parse().unwrap()),
    };
    state.on_decoded(p, message, now)
}

fn announced(actions: &[Action]) -> Option<Option<IpAddr>> {
    actions.iter().find_map(|a| match a {
        Action::Effect(Effect::Announce { ip }) => Some(*ip),
        _ => None,
    })
}

#[test]
fn answers_tell_the_requester_the_ip_we_see_it_at() {
    let (mut state, t0) = new_state(PexConfig::default());
    let mut up = PeerUp::new(peer(1));
    up.ip = Some("198.51.100.7".parse().unwrap());
    state.on_peer_up(up, 1, t0);
    let actions = state.on_sample(peer(1), 9, vec![]);
    let [Action::Send { message, .. }] = actions.as_slice() else {
        panic!("{actions:?}");
    };
    assert_eq!(
        *message,
        Message::Response {
            id: 9,
            addresses: vec![],
            observed: Some("198.51.100.7".parse().unwrap()),
        }
    );
    // The field survives the wire; a length other than 4 or 16 says
    // nothing.
    let wire = proto::PexMessage::from(message.clone());
    assert_eq!(Message::from_wire(wire.clone()), Some(message.clone()));
    let mut odd = wire;
    if let Some(proto::pex_message::Kind::Response(r)) = &mut odd.kind {
        r.observed_ip = vec![1, 2, 3];
    }
    assert!(matches!(
        Message::from_wire(odd),
        Some(Message::Response { observed: None, .. })
    ));
}

#[test]
fn our_ip_is_announced_once_three_networks_agree_and_liars_do_not_move_it() {
    let (mut state, t0) = new_state(PexConfig::default());
    let us = "203.0.113.7";
    // A lying majority from one network: many identities, one vote.
    for n in 0..6 {
        let id = up_at(&mut state, peer(10 + n), &format!("9.9.9.{n}"), t0);
        assert_eq!(
            announced(&respond(&mut state, peer(10 + n), id, "192.0.2.66", t0)),
            None
        );
    }
    // Honest peers in three networks.
    for (n, ip) in ["1.0.0.1", "2.0.0.1"].iter().enumerate() {
        let id = up_at(&mut state, peer(n as u64), ip, t0);
        assert_eq!(
            announced(&respond(&mut state, peer(n as u64), id, us, t0)),
            None
        );
    }
    let id = up_at(&mut state, peer(2), "3.0.0.1", t0);
    assert_eq!(
        announced(&respond(&mut state, peer(2), id, us, t0)),
        Some(Some(us.parse().unwrap()))
    );
    assert_eq!(state.observed_ip(), Some(us.parse().unwrap()));
    assert_eq!(state.stats().observed_ip, Some(us.parse().unwrap()));
    // A lying minority in two more networks changes nothing.
    for (n, ip) in ["4.0.0.1", "5.0.0.1"].iter().enumerate() {
        let p = peer(20 + n as u64);
        let id = up_at(&mut state, p, ip, t0);
        assert_eq!(
            announced(&respond(&mut state, p, id, "192.0.2.66", t0)),
            None
        );
    }
    assert_eq!(state.observed_ip(), Some(us.parse().unwrap()));
    // An answer nobody asked for, and a peer that "sees" us at a private
    // IP, do not count.
    let before = state.stats().observations_refused;
    respond(&mut state, peer(0), 999, "192.0.2.66", t0);
    let id = up_at(&mut state, peer(30), "6.0.0.1", t0);
    respond(&mut state, peer(30), id, "10.0.0.1", t0);
    assert_eq!(state.stats().observations_refused, before + 2);
    // Votes expire: the agreed IP is withdrawn on the tick after.
    let later = t0 + crate::observed::VOTE_TTL;
    assert!(state.next_wakeup() <= later);
    let actions = state.on_tick(later, state.peers().count());
    assert_eq!(announced(&actions), Some(None));
    assert_eq!(state.observed_ip(), None);
}
