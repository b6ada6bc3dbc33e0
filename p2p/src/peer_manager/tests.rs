//! Each test is named for the promise it checks (see the module docs).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::address::PeerAddress;
use crate::identity::{Keypair, PeerId};
use crate::peer_store::{MemoryPeerStore, PeerStore};

/// Peer `n`'s id; memoized, as key derivation dominates the proptest's time.
fn id(n: u64) -> PeerId {
    thread_local! {
        static IDS: std::cell::RefCell<std::collections::BTreeMap<u64, PeerId>> =
            const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
    }
    IDS.with(|ids| {
        *ids.borrow_mut()
            .entry(n)
            .or_insert_with(|| Keypair::from_seed(n).peer_id())
    })
}

fn addr(n: u64) -> PeerAddress {
    PeerAddress::memory(id(n))
}

fn ip(n: u8) -> Option<IpAddr> {
    Some(IpAddr::from([10, 0, 0, n]))
}

const LOCAL: u64 = 0;
const ADMIT: Admission = Admission::Admit { evict: None };

fn manager(config: PeerManagerConfig, now: Instant) -> PeerManager {
    PeerManager::new(id(LOCAL), config, 7, now)
}

fn no_jitter() -> PeerManagerConfig {
    PeerManagerConfig {
        retry_jitter: 0.0,
        ..PeerManagerConfig::default()
    }
}

/// Dials everything `next_dial` hands out at `now`.
fn drain_dials(m: &mut PeerManager, now: Instant) -> Vec<PeerId> {
    std::iter::from_fn(|| m.next_dial(now))
        .map(|a| a.peer)
        .collect()
}

#[test]
fn backoff_doubles_up_to_max_retry_and_resets_after_a_connection() {
    let mut now = Instant::now();
    let config = PeerManagerConfig {
        max_retry: Duration::from_secs(2),
        ..no_jitter()
    };
    let mut m = manager(config, now);
    m.add_address(addr(1), AddressSource::Manual).unwrap();
    for expected_ms in [250, 500, 1000, 2000, 2000, 2000] {
        assert_eq!(m.next_dial(now), Some(addr(1)));
        m.dial_failed(id(1), now);
        assert_eq!(m.next_dial(now), None, "backing off");
        let at = m.next_dial_at().unwrap();
        assert_eq!(at - now, Duration::from_millis(expected_ms));
        assert_eq!(m.next_dial(at - Duration::from_millis(1)), None);
        now = at;
    }
    assert_eq!(m.next_dial(now), Some(addr(1)));
    assert_eq!(m.dialed(id(1), now), ADMIT);
    m.disconnected(id(1), now);
    now += Duration::from_millis(250);
    assert_eq!(m.next_dial(now), Some(addr(1)));
    m.dial_failed(id(1), now);
    assert_eq!(
        m.next_dial_at().unwrap() - now,
        Duration::from_millis(250),
        "backoff reset"
    );
}

#[test]
fn backoff_jitter_stays_within_bounds() {
    let now = Instant::now();
    let mut m = manager(PeerManagerConfig::default(), now);
    let mut delays = std::collections::BTreeSet::new();
    for n in 1..=50 {
        m.add_address(addr(n), AddressSource::Manual).unwrap();
        let peer = m.next_dial(now).unwrap().peer;
        m.dial_failed(peer, now);
    }
    // Every peer failed once: min_retry ± 20 %.
    for n in 1..=50 {
        m.ban(id(n), Duration::ZERO, now);
    }
    let mut probe = now;
    while let Some(at) = m.next_dial_at() {
        let delay = at - now;
        assert!(
            delay >= Duration::from_millis(200) && delay <= Duration::from_millis(300),
            "{delay:?}"
        );
        delays.insert(delay);
        probe = probe.max(at);
        // Consume everything ready at `at`.
        while m.next_dial(at).is_some() {}
        for (peer, _) in m.connected().collect::<Vec<_>>() {
            m.disconnected(peer, at);
        }
        if probe > now + Duration::from_millis(300) {
            break;
        }
    }
    assert!(delays.len() > 10, "jitter spreads retries: {delays:?}");
}

#[test]
fn persistent_peers_are_redialed_after_disconnect_and_after_failures() {
    let mut now = Instant::now();
    let config = PeerManagerConfig {
        persistent_peers: vec![addr(1)],
        ..no_jitter()
    };
    let mut m = manager(config.clone(), now);
    // Failures: redialed after each backoff, never given up, never forgotten.
    for _ in 0..20 {
        assert_eq!(m.next_dial(now), Some(addr(1)));
        m.dial_failed(id(1), now);
        assert_eq!(m.next_dial(now), None);
        now = m.next_dial_at().unwrap();
    }
    assert_eq!(m.next_dial(now), Some(addr(1)));
    assert_eq!(m.dialed(id(1), now), ADMIT);
    m.disconnected(id(1), now);
    assert_eq!(m.next_dial(now), None);
    assert_eq!(m.next_dial_at(), Some(now + Duration::from_millis(250)));
    assert_eq!(m.next_dial(now + Duration::from_millis(250)), Some(addr(1)));

    // No outbound slot and nobody to evict: not dialed, and a connection the
    // router made anyway is rejected and retried after min_retry.
    let mut m = manager(
        PeerManagerConfig {
            max_outbound: 0,
            ..config
        },
        now,
    );
    assert_eq!(m.next_dial(now), None);
    assert_eq!(
        m.dialed(id(1), now),
        Admission::Reject(RejectReason::OutboundFull)
    );
    assert_eq!(m.next_dial_at(), Some(now + Duration::from_millis(250)));
}

#[test]
fn persistent_peers_are_dialed_first_then_best_score() {
    let now = Instant::now();
    let config = PeerManagerConfig {
        persistent_peers: vec![addr(9)],
        bootstrap_peers: (1..=5).map(addr).collect(),
        ..no_jitter()
    };
    let mut m = manager(config, now);
    m.report(id(1), -50, now); // score 50
    m.report(id(2), 10, now); // score -10
    let order = drain_dials(&mut m, now);
    assert_eq!(order[0], id(9));
    assert_eq!(order[1], id(1));
    assert_eq!(order.last(), Some(&id(2)));
}

#[test]
fn bans_expire() {
    let now = Instant::now();
    let mut m = manager(no_jitter(), now);
    m.add_address(addr(1), AddressSource::Manual).unwrap();
    let until = m.ban(id(1), Duration::from_secs(10), now);
    assert_eq!(until, now + Duration::from_secs(10));
    assert!(m.is_banned(id(1), now));
    assert_eq!(m.next_dial(now), None);
    assert_eq!(m.next_dial_at(), Some(until));
    assert_eq!(
        m.accepted(id(1), ip(1), now),
        Admission::Reject(RejectReason::Banned)
    );
    assert_eq!(
        m.add_address(
            PeerAddress::tcp(id(1), ([1, 2, 3, 4], 5).into()),
            AddressSource::Exchange
        ),
        Err(AddAddressError::Banned(id(1)))
    );
    assert!(!m.is_banned(id(1), until));
    assert_eq!(m.next_dial(until), Some(addr(1)));
    assert_eq!(m.dialed(id(1), until), ADMIT);
}

#[test]
fn reported_peers_are_disconnected_then_banned_at_the_threshold() {
    let now = Instant::now();
    let mut m = manager(no_jitter(), now);
    assert_eq!(m.accepted(id(1), ip(1), now), ADMIT);
    assert_eq!(m.report(id(1), 10, now), ReportOutcome::Noted);
    assert_eq!(m.report(id(1), 40, now), ReportOutcome::Disconnect);
    assert_eq!(m.score(id(1)), Some(-50));
    assert_eq!(m.report(id(1), 49, now), ReportOutcome::Disconnect);
    let until = now + Duration::from_secs(600);
    assert_eq!(m.report(id(1), 1, now), ReportOutcome::Ban { until });
    assert!(m.is_banned(id(1), now));
    m.disconnected(id(1), now);
    assert_eq!(
        m.accepted(id(1), ip(1), now),
        Admission::Reject(RejectReason::Banned)
    );
    assert_eq!(m.accepted(id(1), ip(1), until), ADMIT, "ban expired");
    // A report about an unknown peer can still ban it.
    assert!(matches!(
        m.report(id(2), 1000, now),
        ReportOutcome::Ban { .. }
    ));
}

#[test]
fn inbound_limit_holds_under_a_storm_of_500_distinct_peers() {
    let now = Instant::now();
    let mut m = manager(PeerManagerConfig::default(), now);
    let mut admitted = 0;
    for n in 1..=500u64 {
        let ip = Some(IpAddr::from([10, 1, (n / 256) as u8, (n % 256) as u8]));
        match m.accepted(id(n), ip, now) {
            Admission::Admit { evict: None } => admitted += 1,
            Admission::Reject(RejectReason::InboundFull) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(m.inbound_count() <= 40);
    }
    assert_eq!(admitted, 40);
    assert_eq!(m.connected().count(), 40);
    m.assert_consistent();
}

#[test]
fn per_ip_limit_holds_under_a_storm_from_one_ip() {
    let now = Instant::now();
    let mut m = manager(PeerManagerConfig::default(), now);
    let verdicts: Vec<_> = (1..=500).map(|n| m.accepted(id(n), ip(1), now)).collect();
    assert_eq!(verdicts.iter().filter(|v| **v == ADMIT).count(), 4);
    assert!(
        verdicts[4..]
            .iter()
            .all(|v| *v == Admission::Reject(RejectReason::IpLimit))
    );
    // Another IP and connections without an IP are only bound by max_inbound.
    assert_eq!(m.accepted(id(501), ip(2), now), ADMIT);
    let without_ip = (502..=600)
        .filter(|n| m.accepted(id(*n), None, now) == ADMIT)
        .count();
    assert_eq!(without_ip, 40 - 5);
    // A freed slot is usable again by that IP.
    m.disconnected(id(1), now);
    assert_eq!(m.accepted(id(1000), ip(1), now), ADMIT);
    assert_eq!(
        m.accepted(id(1001), ip(1), now),
        Admission::Reject(RejectReason::IpLimit)
    );
    m.assert_consistent();
}

#[test]
fn outbound_limit_and_max_concurrent_dials_hold() {
    let now = Instant::now();
    let config = PeerManagerConfig {
        bootstrap_peers: (1..=100).map(addr).collect(),
        ..no_jitter()
    };
    let mut m = manager(config, now);
    let first = drain_dials(&mut m, now);
    assert_eq!(first.len(), 8, "max_concurrent_dials");
    for peer in &first {
        assert_eq!(m.dialed(*peer, now), ADMIT);
    }
    let second = drain_dials(&mut m, now);
    assert_eq!(second.len(), 2, "max_outbound counts connected + dialing");
    for peer in &second {
        assert_eq!(m.dialed(*peer, now), ADMIT);
    }
    assert_eq!(m.outbound_count(), 10);
    assert_eq!(m.next_dial(now), None);
    // An unsolicited outbound connection beyond the limit is refused.
    assert_eq!(
        m.dialed(id(100), now),
        Admission::Reject(RejectReason::OutboundFull)
    );
    // A freed slot is refilled (after the disconnected peer's min_retry, by others).
    m.disconnected(first[0], now);
    let refill = m.next_dial(now).unwrap().peer;
    assert_ne!(refill, first[0]);
    assert_eq!(m.next_dial(now), None);
    m.assert_consistent();
}

#[test]
fn requested_peers_are_dialed_first_and_past_max_outbound_up_to_their_budget() {
    let mut now = Instant::now();
    let config = PeerManagerConfig {
        max_outbound: 1,
        max_requested_outbound: 2,
        ..no_jitter()
    };
    let mut m = manager(config, now);
    // A well-scored ordinary peer fills the one ordinary slot.
    m.add_address(addr(1), AddressSource::Manual).unwrap();
    m.report(id(1), 10, now); // scores do not matter to requests...
    m.add_address(addr(2), AddressSource::Manual).unwrap();
    m.report(id(2), 20, now);
    assert_eq!(m.next_dial(now), Some(addr(1)));
    assert_eq!(m.dialed(id(1), now), ADMIT);
    m.add_address(addr(9), AddressSource::Manual).unwrap();
    assert_eq!(m.next_dial(now), None, "the ordinary slots are full");

    // ...a requested peer goes first, past max_outbound, even the worst.
    assert_eq!(
        m.request(vec![addr(2), addr(3)], AddressSource::Exchange),
        vec![Ok(false), Ok(true)]
    );
    let dials = drain_dials(&mut m, now);
    assert_eq!(
        dials,
        vec![id(3), id(2)],
        "requested peers, best score first"
    );
    assert_eq!(m.dialed(id(3), now), ADMIT);
    assert_eq!(m.dialed(id(2), now), ADMIT);
    assert_eq!(m.outbound_count(), 3);

    // The budget is spent: another request waits for a slot.
    m.request(vec![addr(4)], AddressSource::Exchange);
    assert_eq!(
        m.next_dial(now),
        None,
        "max_outbound + max_requested_outbound"
    );
    // An ordinary peer's connection cannot take a requested slot.
    m.disconnected(id(3), now);
    assert_eq!(
        m.dialed(id(9), now),
        Admission::Reject(RejectReason::OutboundFull)
    );
    // A freed slot goes to the waiting request, not to ordinary peer 9.
    assert_eq!(m.next_dial(now), Some(addr(4)));
    m.dial_failed(id(4), now);

    // A failed requested dial ends the request: after its backoff, peer 4
    // is an ordinary peer again and the ordinary slots are still full.
    now += Duration::from_secs(1);
    assert_eq!(m.next_dial(now), None);
    // Asked again, it is dialed again.
    m.request(vec![addr(4)], AddressSource::Exchange);
    assert_eq!(m.next_dial(now), Some(addr(4)));
    m.assert_consistent();
}

#[test]
fn inbound_full_evicts_the_worst_peer_for_a_strictly_better_one() {
    let now = Instant::now();
    let config = PeerManagerConfig {
        max_inbound: 2,
        ..no_jitter()
    };
    let mut m = manager(config, now);
    assert_eq!(m.accepted(id(1), ip(1), now), ADMIT);
    assert_eq!(m.accepted(id(2), ip(2), now), ADMIT);
    m.report(id(2), 10, now);
    // A fresh peer (score 0) outranks peer 2 (score -10).
    assert_eq!(
        m.accepted(id(3), ip(3), now),
        Admission::Admit { evict: Some(id(2)) }
    );
    assert_eq!(m.inbound_count(), 2);
    assert!(!m.is_connected(id(2)));
    assert_eq!(
        m.accepted(id(2), ip(2), now),
        Admission::Reject(RejectReason::AlreadyConnected)
    );
    // Equal scores do not evict.
    assert_eq!(
        m.accepted(id(4), ip(4), now),
        Admission::Reject(RejectReason::InboundFull)
    );
    m.disconnected(id(2), now);
    m.report(id(5), -5, now);
    m.add_address(addr(5), AddressSource::Manual).unwrap();
    m.report(id(5), -5, now);
    assert!(matches!(
        m.accepted(id(5), ip(5), now),
        Admission::Admit { evict: Some(_) }
    ));
    assert_eq!(m.inbound_count(), 2);
    m.assert_consistent();
}

#[test]
fn persistent_peers_are_admitted_when_full_by_evicting_a_non_persistent_peer() {
    let now = Instant::now();
    let config = PeerManagerConfig {
        max_inbound: 1,
        max_outbound: 1,
        max_inbound_per_ip: 1,
        persistent_peers: vec![addr(10), addr(11), addr(12)],
        bootstrap_peers: vec![addr(1)],
        ..no_jitter()
    };
    let mut m = manager(config, now);
    assert_eq!(m.accepted(id(2), ip(1), now), ADMIT);
    // Persistent: exempt from the per-IP limit, evicts the ordinary peer.
    assert_eq!(
        m.accepted(id(10), ip(1), now),
        Admission::Admit { evict: Some(id(2)) }
    );
    // Only persistent peers left: nobody to evict.
    assert_eq!(
        m.accepted(id(11), ip(2), now),
        Admission::Reject(RejectReason::InboundFull)
    );
    // Outbound: an ordinary peer holds the only slot.
    assert_eq!(m.dialed(id(1), now), ADMIT);
    let dial = m.next_dial(now).unwrap();
    assert!(
        dial.peer == id(11) || dial.peer == id(12),
        "persistent peers dialed past the limit"
    );
    assert_eq!(
        m.next_dial(now),
        None,
        "one evictable outbound peer, one persistent dial past the limit"
    );
    assert_eq!(
        m.dialed(dial.peer, now),
        Admission::Admit { evict: Some(id(1)) }
    );
    assert_eq!(m.outbound_count(), 1);
    m.assert_consistent();
}

#[test]
fn next_dial_at_reports_the_earliest_backoff_or_ban_end() {
    let now = Instant::now();
    let mut m = manager(no_jitter(), now);
    assert_eq!(m.next_dial_at(), None, "nothing waiting");
    for n in 1..=3 {
        m.add_address(addr(n), AddressSource::Manual).unwrap();
    }
    for _ in 0..3 {
        let peer = m.next_dial(now).unwrap().peer;
        m.dial_failed(peer, now);
    }
    assert_eq!(m.next_dial_at(), Some(now + Duration::from_millis(250)));
    // A ban longer than the backoff postpones that peer.
    m.ban(id(1), Duration::from_secs(5), now);
    m.ban(id(2), Duration::from_secs(3), now);
    m.ban(id(3), Duration::from_secs(4), now);
    assert_eq!(m.next_dial_at(), Some(now + Duration::from_secs(3)));
    assert_eq!(m.next_dial(now + Duration::from_secs(3)), Some(addr(2)));
    assert_eq!(m.next_dial_at(), Some(now + Duration::from_secs(4)));
    // Elapsed waits are cleared by next_dial, so a driver blocked by limits
    // does not spin.
    let later = now + Duration::from_secs(60);
    let config = PeerManagerConfig {
        max_concurrent_dials: 1,
        ..no_jitter()
    };
    let mut m = manager(config, now);
    m.add_address(addr(1), AddressSource::Manual).unwrap();
    m.add_address(addr(2), AddressSource::Manual).unwrap();
    let first = m.next_dial(now).unwrap().peer;
    m.dial_failed(first, now);
    let second = m.next_dial(now).unwrap().peer;
    assert_eq!(m.next_dial(later), None, "dial slot taken");
    assert_eq!(m.next_dial_at(), None);
    m.dial_failed(second, later);
    assert_eq!(m.next_dial(later), Some(addr(first_n(first))));
}

fn first_n(peer: PeerId) -> u64 {
    (1..=100).find(|n| id(*n) == peer).unwrap_or(0)
}

/// Runs a fixed scenario and returns what `next_dial` handed out.
fn dial_sequence(seed: u64) -> Vec<Option<PeerAddress>> {
    let mut now = Instant::now();
    let config = PeerManagerConfig {
        bootstrap_peers: (1..=40).map(addr).collect(),
        persistent_peers: vec![addr(50)],
        max_outbound: 4,
        max_concurrent_dials: 2,
        ..PeerManagerConfig::default()
    };
    let mut m = PeerManager::new(id(LOCAL), config, seed, now);
    let mut sequence = Vec::new();
    for step in 0..400u64 {
        let dial = m.next_dial(now);
        if let Some(a) = &dial {
            if step % 3 == 0 {
                m.dial_failed(a.peer, now);
            } else if let Admission::Admit {
                evict: Some(victim),
            } = m.dialed(a.peer, now)
            {
                m.disconnected(victim, now);
            }
        }
        let first_connected = m.connected().map(|(p, _)| p).next();
        if step % 7 == 0
            && let Some(peer) = first_connected
        {
            m.disconnected(peer, now);
        }
        sequence.push(dial);
        now = m
            .next_dial_at()
            .map_or(now + Duration::from_millis(100), |at| at.max(now));
    }
    sequence
}

#[test]
fn same_seed_and_same_calls_give_the_same_dials() {
    let a = dial_sequence(11);
    assert_eq!(a, dial_sequence(11));
    assert!(a.iter().flatten().count() > 50);
    assert_ne!(a, dial_sequence(12), "the seed matters (ties and jitter)");
}

#[test]
fn load_after_a_restart_makes_stored_peers_dialable() {
    let now = Instant::now();
    let store = MemoryPeerStore::new();
    {
        let mut node_store = store.clone();
        let mut m = manager(no_jitter(), now);
        for n in 1..=3 {
            m.add_address(addr(n), AddressSource::Exchange).unwrap();
        }
        m.report(id(2), -7, now);
        assert_eq!(m.accepted(id(4), ip(4), now), ADMIT);
        m.report(id(4), 20, now); // an address-less peer with a score
        node_store.save(&m.take_dirty()).unwrap();
        assert!(m.take_dirty().is_empty(), "nothing changed since");
    }
    let mut restarted = manager(no_jitter(), now);
    assert_eq!(restarted.known_peers(), 0);
    restarted.load(store.load().unwrap());
    assert_eq!(restarted.score(id(2)), Some(7));
    assert_eq!(restarted.score(id(4)), Some(-20));
    assert!(
        restarted.take_dirty().is_empty(),
        "loading marks nothing dirty"
    );
    let dialed = drain_dials(&mut restarted, now);
    assert_eq!(dialed[0], id(2), "best score first");
    let mut sorted = dialed.clone();
    sorted.sort();
    let mut expected = vec![id(1), id(2), id(3)];
    expected.sort();
    assert_eq!(sorted, expected);
}

#[test]
fn self_connections_and_self_addresses_are_rejected() {
    let now = Instant::now();
    let mut m = manager(no_jitter(), now);
    assert_eq!(
        m.add_address(addr(LOCAL), AddressSource::Manual),
        Err(AddAddressError::SelfAddress)
    );
    assert_eq!(
        m.accepted(id(LOCAL), None, now),
        Admission::Reject(RejectReason::SelfConnection)
    );
    assert_eq!(
        m.dialed(id(LOCAL), now),
        Admission::Reject(RejectReason::SelfConnection)
    );
    assert_eq!(m.accepted(id(1), None, now), ADMIT);
    assert_eq!(
        m.accepted(id(1), None, now),
        Admission::Reject(RejectReason::AlreadyConnected)
    );
    assert_eq!(
        m.dialed(id(1), now),
        Admission::Reject(RejectReason::AlreadyConnected)
    );
}

#[test]
fn address_floods_are_bounded_by_max_addresses_and_max_addresses_per_peer() {
    let now = Instant::now();
    let config = PeerManagerConfig {
        max_addresses: 100,
        persistent_peers: vec![addr(5000)],
        ..no_jitter()
    };
    let mut m = manager(config, now);
    m.add_address(addr(1), AddressSource::Manual).unwrap();
    assert_eq!(m.next_dial(now), Some(addr(5000)));
    assert_eq!(m.dialed(id(5000), now), ADMIT);
    assert_eq!(m.next_dial(now), Some(addr(1)));
    assert_eq!(m.dialed(id(1), now), ADMIT);
    m.report(id(2), -10, now);
    for n in 2..=2000 {
        m.add_address(addr(n), AddressSource::Exchange).unwrap();
        assert!(m.known_peers() <= 101, "{}", m.known_peers());
    }
    assert!(m.is_connected(id(1)) && m.is_persistent(id(5000)));
    assert!(!m.addresses(id(5000)).is_empty());
    let forgotten = m.take_forgotten();
    assert_eq!(forgotten.len(), 100, "the forgotten list is bounded too");
    assert!(!forgotten.contains(&id(1)) && !forgotten.contains(&id(5000)));

    // One peer: at most 16 addresses.
    let peer = id(1);
    let results: Vec<_> = (0..20u16)
        .map(|port| {
            m.add_address(
                PeerAddress::tcp(peer, ([10, 0, 0, 1], port).into()),
                AddressSource::Exchange,
            )
        })
        .collect();
    assert_eq!(m.addresses(peer).len(), 16);
    assert_eq!(
        results[19],
        Err(AddAddressError::TooManyAddressesForPeer { peer, max: 16 })
    );
    // Exchanged addresses never redirect a persistent peer.
    let bogus = PeerAddress::tcp(id(5000), ([6, 6, 6, 6], 1).into());
    assert_eq!(m.add_address(bogus, AddressSource::Exchange), Ok(false));
    assert_eq!(m.addresses(id(5000)), vec![addr(5000)]);
}

#[test]
fn dials_rotate_addresses_after_failures_and_stay_on_one_that_works() {
    let mut now = Instant::now();
    let mut m = manager(no_jitter(), now);
    let a = PeerAddress::tcp(id(1), ([10, 0, 0, 1], 1).into());
    let b = PeerAddress::tcp(id(1), ([10, 0, 0, 1], 2).into());
    m.add_address(a.clone(), AddressSource::Manual).unwrap();
    m.add_address(b.clone(), AddressSource::Manual).unwrap();
    assert_eq!(m.next_dial(now), Some(a));
    m.dial_failed(id(1), now);
    now = m.next_dial_at().unwrap();
    assert_eq!(m.next_dial(now), Some(b.clone()));
    assert_eq!(m.dialed(id(1), now), ADMIT);
    m.disconnected(id(1), now);
    now = m.next_dial_at().unwrap();
    assert_eq!(m.next_dial(now), Some(b));
}

#[test]
fn take_dirty_and_records_list_what_to_persist() {
    let now = Instant::now();
    let config = PeerManagerConfig {
        persistent_peers: vec![addr(9)],
        ..no_jitter()
    };
    let mut m = manager(config, now);
    let dirty = m.take_dirty();
    assert_eq!(dirty.len(), 1);
    assert!(dirty[0].persistent);
    m.add_address(addr(1), AddressSource::Manual).unwrap();
    assert_eq!(m.add_address(addr(1), AddressSource::Manual), Ok(false));
    m.report(id(9), 3, now);
    let dirty = m.take_dirty();
    assert_eq!(dirty.iter().map(|r| r.peer).collect::<Vec<_>>().len(), 2);
    // An inbound-only peer with no score is not worth persisting, and is
    // forgotten when it leaves.
    assert_eq!(m.accepted(id(2), None, now), ADMIT);
    assert_eq!(m.records().len(), 2);
    m.disconnected(id(2), now);
    assert_eq!(m.known_peers(), 2);
}

#[derive(Debug, Clone)]
enum Op {
    Add(u64),
    Request(u64),
    NextDial,
    DialFailed(u64),
    Dialed(u64),
    Accepted(u64, u8),
    Disconnected(u64),
    Report(u64, i64),
    Ban(u64, u64),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let peer = 1..=30u64;
    prop_oneof![
        1 => peer.clone().prop_map(Op::Add),
        1 => peer.clone().prop_map(Op::Request),
        3 => Just(Op::NextDial),
        1 => peer.clone().prop_map(Op::DialFailed),
        2 => peer.clone().prop_map(Op::Dialed),
        3 => (peer.clone(), 0..4u8).prop_map(|(p, i)| Op::Accepted(p, i)),
        2 => peer.clone().prop_map(Op::Disconnected),
        1 => (peer.clone(), -30..80i64).prop_map(|(p, x)| Op::Report(p, x)),
        1 => (peer, 0..5_000u64).prop_map(|(p, ms)| Op::Ban(p, ms)),
        1 => (0..3_000u64).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn limits_hold_and_banned_peers_are_never_dialed(seed in any::<u64>(), ops in proptest::collection::vec(op(), 1..300)) {
        let mut now = Instant::now();
        let config = PeerManagerConfig {
            max_inbound: 3,
            max_outbound: 2,
            max_requested_outbound: 1,
            max_inbound_per_ip: 2,
            max_concurrent_dials: 2,
            max_addresses: 12,
            ban_threshold: -60,
            disconnect_threshold: -30,
            persistent_peers: vec![addr(1), addr(2)],
            bootstrap_peers: vec![addr(3), addr(4)],
            ..PeerManagerConfig::default()
        };
        let mut m = PeerManager::new(id(LOCAL), config, seed, now);
        for op in ops {
            match op {
                Op::Add(p) => { let _ = m.add_address(addr(p), AddressSource::Exchange); }
                Op::Request(p) => { let _ = m.request(vec![addr(p)], AddressSource::Exchange); }
                Op::NextDial => {
                    let was_connected: Vec<_> = m.connected().map(|(p, _)| p).collect();
                    if let Some(a) = m.next_dial(now) {
                        prop_assert!(!m.is_banned(a.peer, now), "banned peer dialed");
                        prop_assert!(!was_connected.contains(&a.peer), "connected peer dialed");
                    }
                }
                Op::DialFailed(p) => m.dial_failed(id(p), now),
                Op::Dialed(p) => {
                    if let Admission::Admit { evict: Some(victim) } = m.dialed(id(p), now) {
                        m.disconnected(victim, now);
                    }
                }
                Op::Accepted(p, i) => {
                    let verdict = m.accepted(id(p), if i == 0 { None } else { ip(i) }, now);
                    if m.is_banned(id(p), now) {
                        prop_assert_eq!(verdict, Admission::Reject(RejectReason::Banned));
                    }
                }
                Op::Disconnected(p) => m.disconnected(id(p), now),
                Op::Report(p, x) => { m.report(id(p), x, now); }
                Op::Ban(p, ms) => { m.ban(id(p), Duration::from_millis(ms), now); }
                Op::Advance(ms) => now += Duration::from_millis(ms),
            }
            m.assert_consistent();
            prop_assert!(m.inbound_count() <= 3);
            // max_outbound + max_requested_outbound.
            prop_assert!(m.outbound_count() <= 3);
            prop_assert!(m.dialing_count() <= 2);
            prop_assert_eq!(m.connected().count(), m.inbound_count() + m.outbound_count());
            prop_assert!(m.known_peers() <= 12 + 2 + 3 + 2 + 2);
            prop_assert!(m.is_persistent(id(1)) && m.is_persistent(id(2)));
        }
    }
}
