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

/// An IP in network `n`: distinct `n` are distinct /24s (and /16s).
fn ip(n: u8) -> Option<IpAddr> {
    Some(IpAddr::from([10, n, 0, 1]))
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
    assert_eq!(m.dialed(id(1), None, now), ADMIT);
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

/// A remote that refuses us at admission (`Rejected`) costs a failed
/// dial's backoff, growing with each refusal in a row; one that bans us is
/// not dialed until its ban ends (as long as it says, capped; else
/// `max_retry`). A connection that lasts resets the streak.
#[test]
fn a_remote_refusal_backs_off_and_a_remote_ban_waits_for_its_end() {
    let mut now = Instant::now();
    let config = PeerManagerConfig {
        max_retry: Duration::from_secs(600),
        ..no_jitter()
    };
    let mut m = manager(config, now);
    m.add_address(addr(1), AddressSource::Manual).unwrap();
    for expected_ms in [250, 500, 1000, 2000, 4000] {
        assert_eq!(m.next_dial(now), Some(addr(1)));
        assert_eq!(m.dialed(id(1), None, now), ADMIT);
        m.remote_refused(id(1), RemoteRefusal::Rejected, now);
        assert!(!m.is_connected(id(1)));
        assert_eq!(m.next_dial(now), None, "backing off");
        let at = m.next_dial_at().unwrap();
        assert_eq!(at - now, Duration::from_millis(expected_ms));
        now = at;
    }
    // A connection that ends normally resets the streak.
    assert_eq!(m.next_dial(now), Some(addr(1)));
    assert_eq!(m.dialed(id(1), None, now), ADMIT);
    m.disconnected(id(1), now);
    now += Duration::from_millis(250);
    assert_eq!(m.next_dial(now), Some(addr(1)));
    assert_eq!(m.dialed(id(1), None, now), ADMIT);
    m.remote_refused(id(1), RemoteRefusal::Rejected, now);
    assert_eq!(m.next_dial_at().unwrap() - now, Duration::from_millis(250));
    now = m.next_dial_at().unwrap();

    // Banned for an hour, as the remote said.
    assert_eq!(m.next_dial(now), Some(addr(1)));
    assert_eq!(m.dialed(id(1), None, now), ADMIT);
    let hour = Duration::from_secs(3600);
    m.remote_refused(
        id(1),
        RemoteRefusal::Banned {
            remaining: Some(hour),
        },
        now,
    );
    assert_eq!(m.next_dial_at().unwrap() - now, hour);
    assert_eq!(m.next_dial(now + hour - Duration::from_secs(1)), None);
    now += hour;
    // Banned without saying for how long: max_retry.
    assert_eq!(m.next_dial(now), Some(addr(1)));
    assert_eq!(m.dialed(id(1), None, now), ADMIT);
    m.remote_refused(id(1), RemoteRefusal::Banned { remaining: None }, now);
    assert_eq!(m.next_dial_at().unwrap() - now, Duration::from_secs(600));
    now += Duration::from_secs(600);
    // An absurd ban is capped.
    assert_eq!(m.next_dial(now), Some(addr(1)));
    assert_eq!(m.dialed(id(1), None, now), ADMIT);
    let forever = Duration::from_secs(u64::MAX / 4);
    m.remote_refused(
        id(1),
        RemoteRefusal::Banned {
            remaining: Some(forever),
        },
        now,
    );
    assert_eq!(m.next_dial_at().unwrap() - now, MAX_BAN_DURATION);
    m.assert_consistent();
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
    assert_eq!(m.dialed(id(1), None, now), ADMIT);
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
        m.dialed(id(1), None, now),
        Admission::Reject(RejectReason::OutboundFull)
    );
    assert_eq!(m.next_dial_at(), Some(now + Duration::from_millis(250)));
}

#[test]
fn persistent_peers_are_dialed_first_and_negative_scores_last() {
    let now = Instant::now();
    let config = PeerManagerConfig {
        persistent_peers: vec![addr(9)],
        bootstrap_peers: (1..=5).map(addr).collect(),
        ..no_jitter()
    };
    let mut m = manager(config, now);
    m.report(id(2), 10, now); // score -10
    let order = drain_dials(&mut m, now);
    assert_eq!(order.len(), 6);
    assert_eq!(order[0], id(9));
    assert_eq!(order.last(), Some(&id(2)), "a negative score goes last");
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
    assert_eq!(m.dialed(id(1), None, until), ADMIT);
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
    // It served its sentence and is back on its last chance: one more
    // penalty disconnects it.
    assert_eq!(m.score(id(1)), Some(-49));
    assert_eq!(m.report(id(1), 1, until), ReportOutcome::Disconnect);
    // A report about an unknown peer can still ban it.
    assert!(matches!(
        m.report(id(2), 1000, now),
        ReportOutcome::Ban { .. }
    ));
}

#[test]
fn a_peer_disconnected_for_its_score_stays_out_until_the_score_decays() {
    // The attack: a peer at the disconnect threshold reconnects at once
    // and is admitted with full credit; only bans used to be checked.
    let now = Instant::now();
    let mut m = manager(no_jitter(), now);
    assert_eq!(m.accepted(id(1), ip(1), now), ADMIT);
    assert_eq!(m.report(id(1), 50, now), ReportOutcome::Disconnect);
    m.disconnected(id(1), now);
    assert_eq!(
        m.accepted(id(1), ip(1), now),
        Admission::Reject(RejectReason::LowScore)
    );
    // Nor do we dial it: its address stays in the book, not in the dials.
    let _ = m.add_address(addr(1), AddressSource::Exchange);
    assert_eq!(m.next_dial(now), None);
    assert_eq!(
        m.dialed(id(1), None, now),
        Admission::Reject(RejectReason::LowScore)
    );
    // Scores halve every hour: at -25 it is let in again, and the penalty
    // still counts (one more report of 25 disconnects it).
    let later = now + Duration::from_secs(3600);
    assert_eq!(m.score(id(1)), Some(-50));
    assert_eq!(m.accepted(id(1), ip(1), later), ADMIT);
    assert_eq!(m.report(id(1), 25, later), ReportOutcome::Disconnect);
}

#[test]
fn a_persistent_peer_is_let_in_whatever_its_score() {
    let now = Instant::now();
    let config = PeerManagerConfig {
        persistent_peers: vec![addr(1)],
        ..no_jitter()
    };
    let mut m = manager(config, now);
    assert_eq!(m.accepted(id(1), ip(1), now), ADMIT);
    assert_eq!(m.report(id(1), 60, now), ReportOutcome::Disconnect);
    m.disconnected(id(1), now);
    assert_eq!(m.accepted(id(1), ip(1), now), ADMIT);
}

#[test]
fn inbound_limit_holds_under_a_storm_of_500_distinct_peers() {
    let now = Instant::now();
    let mut m = manager(PeerManagerConfig::default(), now);
    let mut admitted = 0;
    for n in 1..=500u64 {
        let ip = Some(IpAddr::from([10, (n / 256) as u8, (n % 256) as u8, 1]));
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

/// Item 8 of issue 14: the inbound limit counted exact IPs, so each fresh
/// address of one network bought a fresh slot. It counts networks (IPv4
/// /24, IPv6 /48) now.
#[test]
fn per_prefix_limit_holds_under_a_storm_from_one_network() {
    let now = Instant::now();
    let mut m = manager(PeerManagerConfig::default(), now);
    // 500 keys from 250 addresses of one /24.
    let verdicts: Vec<_> = (1..=500)
        .map(|n| {
            let ip = IpAddr::from([198, 51, 100, (n % 250) as u8]);
            m.accepted(id(n), Some(ip), now)
        })
        .collect();
    assert_eq!(verdicts.iter().filter(|v| **v == ADMIT).count(), 4);
    assert!(
        verdicts[4..]
            .iter()
            .all(|v| *v == Admission::Reject(RejectReason::PrefixLimit))
    );
    // IPv6: one /48 is one network, whatever the /64.
    for n in 0..6u16 {
        let ip = IpAddr::from([0x2001, 0xdb8, 7, n, 0, 0, 0, 1]);
        let verdict = m.accepted(id(2000 + u64::from(n)), Some(ip), now);
        let expected = if n < 4 {
            ADMIT
        } else {
            Admission::Reject(RejectReason::PrefixLimit)
        };
        assert_eq!(verdict, expected, "/64 number {n}");
    }
    for n in 2000..2004 {
        m.disconnected(id(n), now);
    }
    // Another network and connections without an IP are only bound by
    // max_inbound.
    assert_eq!(m.accepted(id(501), ip(2), now), ADMIT);
    let without_ip = (502..=600)
        .filter(|n| m.accepted(id(*n), None, now) == ADMIT)
        .count();
    assert_eq!(without_ip, 40 - 5);
    // A freed slot is usable again by that network, from another address.
    m.disconnected(id(1), now);
    let other = Some(IpAddr::from([198, 51, 100, 77]));
    assert_eq!(m.accepted(id(1000), other, now), ADMIT);
    assert_eq!(
        m.accepted(id(1001), other, now),
        Admission::Reject(RejectReason::PrefixLimit)
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
        assert_eq!(m.dialed(*peer, None, now), ADMIT);
    }
    let second = drain_dials(&mut m, now);
    assert_eq!(second.len(), 2, "max_outbound counts connected + dialing");
    for peer in &second {
        assert_eq!(m.dialed(*peer, None, now), ADMIT);
    }
    assert_eq!(m.outbound_count(), 10);
    assert_eq!(m.next_dial(now), None);
    // An unsolicited outbound connection beyond the limit is refused.
    assert_eq!(
        m.dialed(id(100), None, now),
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
    // An ordinary peer fills the one ordinary slot.
    m.add_address(addr(1), AddressSource::Manual).unwrap();
    m.report(id(1), 10, now); // scores do not matter to requests...
    assert_eq!(m.next_dial(now), Some(addr(1)));
    assert_eq!(m.dialed(id(1), None, now), ADMIT);
    m.add_address(addr(2), AddressSource::Manual).unwrap();
    m.report(id(2), 20, now);
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
    assert_eq!(m.dialed(id(3), None, now), ADMIT);
    assert_eq!(m.dialed(id(2), None, now), ADMIT);
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
        m.dialed(id(9), None, now),
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
        max_inbound_per_prefix: 1,
        persistent_peers: vec![addr(10), addr(11), addr(12)],
        bootstrap_peers: vec![addr(1)],
        ..no_jitter()
    };
    let mut m = manager(config, now);
    assert_eq!(m.accepted(id(2), ip(1), now), ADMIT);
    // Persistent: exempt from the per-prefix limit, evicts the ordinary peer.
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
    assert_eq!(m.dialed(id(1), None, now), ADMIT);
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
        m.dialed(dial.peer, None, now),
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
            } = m.dialed(a.peer, None, now)
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
        m.dialed(id(LOCAL), None, now),
        Admission::Reject(RejectReason::SelfConnection)
    );
    assert_eq!(m.accepted(id(1), None, now), ADMIT);
    assert_eq!(
        m.accepted(id(1), None, now),
        Admission::Reject(RejectReason::AlreadyConnected)
    );
    assert_eq!(
        m.dialed(id(1), None, now),
        Admission::Reject(RejectReason::AlreadyConnected)
    );
}

#[test]
fn address_floods_are_bounded_by_the_tables_and_max_addresses_per_peer() {
    let now = Instant::now();
    let config = PeerManagerConfig {
        new_buckets: 4,
        tried_buckets: 1,
        bucket_size: 20,
        persistent_peers: vec![addr(5000)],
        ..no_jitter()
    };
    let mut m = manager(config, now);
    m.add_address(addr(1), AddressSource::Manual).unwrap();
    assert_eq!(m.next_dial(now), Some(addr(5000)));
    assert_eq!(m.dialed(id(5000), None, now), ADMIT);
    assert_eq!(m.next_dial(now), Some(addr(1)));
    assert_eq!(m.dialed(id(1), None, now), ADMIT);
    for n in 2..=2000 {
        let _ = m.add_address(addr(n), AddressSource::Exchange);
        // Four buckets of 20 and one of 20, the persistent peer.
        assert!(m.known_peers() <= 101, "{}", m.known_peers());
        m.assert_consistent();
    }
    assert!(m.is_connected(id(1)) && m.is_persistent(id(5000)));
    assert!(!m.addresses(id(5000)).is_empty());
    let forgotten = m.take_forgotten();
    assert_eq!(forgotten.len(), 100, "the forgotten list is bounded too");
    assert!(!forgotten.contains(&id(1)) && !forgotten.contains(&id(5000)));

    // One peer: at most 16 addresses.
    let peer = id(1);
    let results: Vec<_> = (0..20u8)
        .map(|n| {
            m.add_address(
                PeerAddress::tcp(peer, ([198, 51, 100, n], 7000).into()),
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
    m.assert_consistent();
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
    assert_eq!(m.dialed(id(1), None, now), ADMIT);
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

fn tcp(n: u64, ip: [u8; 4]) -> PeerAddress {
    PeerAddress::tcp(id(n), (ip, 26656).into())
}

/// Item 7 of issue 14: a full book forgot the worst-scored never-connected
/// peers, whoever sent them, so one source flooding the book pushed out
/// what every other source had told us. A source now reaches only its own
/// buckets, and may displace only its own (or dead) entries there.
#[test]
fn one_source_cannot_push_out_addresses_heard_from_other_sources() {
    let now = Instant::now();
    let mut m = manager(no_jitter(), now);
    // 30 honest peers, each in a network of its own, tell us about 10
    // honest peers each.
    let mut honest = Vec::new();
    for source in 0..30u64 {
        let teller = 1000 + source;
        let ip = [30 + source as u8, 1, 1, 1];
        assert_eq!(m.accepted(id(teller), Some(ip.into()), now), ADMIT);
        for k in 0..10u64 {
            let n = 2000 + source * 10 + k;
            let address = tcp(n, [140 + source as u8, k as u8, 1, 1]);
            assert_eq!(
                m.add_address(address, AddressSource::ExchangeFrom(id(teller))),
                Ok(true)
            );
            honest.push(id(n));
        }
    }
    // One attacker tells us about 20,000 of its own, spread over 64 /16s.
    assert_eq!(m.accepted(id(9999), Some([66, 0, 0, 1].into()), now), ADMIT);
    for n in 0..20_000u64 {
        let ip = [
            66 + (n % 64) as u8,
            (n / 64 % 250) as u8,
            (n / 16_000) as u8,
            2,
        ];
        let _ = m.add_address(tcp(100_000 + n, ip), AddressSource::ExchangeFrom(id(9999)));
    }
    for peer in &honest {
        assert!(
            !m.addresses(*peer).is_empty(),
            "honest peer {peer} forgotten"
        );
    }
    let (new, tried) = m.table_sizes();
    assert!(
        new - honest.len() <= NEW_BUCKETS_PER_SOURCE * 32,
        "one source holds {} entries",
        new - honest.len()
    );
    assert_eq!(tried, 0);
    m.assert_consistent();
}

/// Item 7: every source passes one screen, each refusal with its reason;
/// private and loopback addresses only from trusted sources or when
/// allowed.
#[test]
fn every_address_passes_one_screen_whatever_its_source() {
    let now = Instant::now();
    let mut m = manager(no_jitter(), now);
    assert_eq!(m.accepted(id(1), Some([203, 0, 113, 9].into()), now), ADMIT);
    let sources = [
        AddressSource::Exchange,
        AddressSource::ExchangeFrom(id(1)),
        AddressSource::Store,
    ];
    let cases: [(PeerAddress, AddAddressError); 7] = [
        (addr(LOCAL), AddAddressError::SelfAddress),
        (tcp(10, [0, 0, 0, 0]), AddAddressError::Unspecified),
        (
            PeerAddress::tcp(id(11), ([8, 8, 8, 8], 0).into()),
            AddAddressError::PortZero,
        ),
        (tcp(12, [224, 0, 0, 1]), AddAddressError::Unroutable),
        (tcp(13, [127, 0, 0, 1]), AddAddressError::NotPublic),
        (tcp(14, [192, 168, 1, 7]), AddAddressError::NotPublic),
        (
            "libp2p://PEER@/ip6/fe80::1/tcp/1"
                .replace("PEER", &id(15).to_string())
                .parse()
                .unwrap(),
            AddAddressError::NotPublic,
        ),
    ];
    for source in sources {
        for (address, reason) in &cases {
            assert_eq!(
                m.add_address(address.clone(), source),
                Err(*reason),
                "{address} from {source:?}"
            );
        }
        // A reactor's request is screened the same way and requests nothing.
        let results = m.request(vec![tcp(13, [127, 0, 0, 1])], source);
        assert_eq!(results, vec![Err(AddAddressError::NotPublic)]);
        assert_eq!(m.next_dial(now), None, "nothing requested");
    }
    // Per host: at most max_ports_per_host (2) endpoints, whoever sends them.
    let host = |n: u64, port: u16| PeerAddress::tcp(id(n), ([198, 51, 100, 1], port).into());
    assert_eq!(
        m.add_address(host(20, 1), AddressSource::Exchange),
        Ok(true)
    );
    assert_eq!(
        m.add_address(host(21, 2), AddressSource::ExchangeFrom(id(1))),
        Ok(true)
    );
    assert_eq!(
        m.request(vec![host(22, 3)], AddressSource::Exchange),
        vec![Err(AddAddressError::HostLimit { max: 2 })]
    );
    // The operator's addresses are trusted: private, and past the host limit.
    assert_eq!(
        m.add_address(tcp(13, [127, 0, 0, 1]), AddressSource::Manual),
        Ok(true)
    );
    assert_eq!(m.add_address(host(23, 4), AddressSource::Manual), Ok(true));
    // The structural checks hold for everyone.
    assert_eq!(
        m.add_address(tcp(24, [0, 0, 0, 0]), AddressSource::Manual),
        Err(AddAddressError::Unspecified)
    );
    // A node that allows private addresses takes them from peers.
    let mut devnet = manager(
        PeerManagerConfig {
            allow_private_addresses: true,
            ..no_jitter()
        },
        now,
    );
    assert_eq!(
        devnet.add_address(tcp(13, [127, 0, 0, 1]), AddressSource::Exchange),
        Ok(true)
    );
    assert_eq!(
        devnet.add_address(tcp(12, [224, 0, 0, 1]), AddressSource::Exchange),
        Err(AddAddressError::Unroutable)
    );
    // Addresses without a host (memory) are not IPs: unaffected.
    assert_eq!(m.add_address(addr(30), AddressSource::Exchange), Ok(true));
    m.assert_consistent();
}

/// A peer we dialed successfully moves from the new table to the tried
/// table, and stays there after it disconnects.
#[test]
fn a_peer_we_dialed_moves_to_the_tried_table() {
    let now = Instant::now();
    let mut m = manager(no_jitter(), now);
    let address = tcp(1, [8, 8, 4, 4]);
    m.add_address(address.clone(), AddressSource::Exchange)
        .unwrap();
    assert_eq!(m.table_of(id(1)), Some(super::book::Table::New));
    assert_eq!(m.next_dial(now), Some(address.clone()));
    assert_eq!(m.dialed(id(1), address.ip(), now), ADMIT);
    assert_eq!(m.table_of(id(1)), Some(super::book::Table::Tried));
    assert_eq!(m.table_sizes(), (0, 1));
    m.disconnected(id(1), now);
    assert_eq!(m.table_of(id(1)), Some(super::book::Table::Tried));
    // An inbound connection proves nothing about a listen address.
    m.add_address(tcp(2, [8, 8, 4, 5]), AddressSource::Exchange)
        .unwrap();
    assert_eq!(m.accepted(id(2), Some([8, 8, 4, 5].into()), now), ADMIT);
    assert_eq!(m.table_of(id(2)), Some(super::book::Table::New));
    m.assert_consistent();
}

/// Item 8 of issue 14: bans were keyed by PeerId alone, so a banned
/// attacker came back under a fresh key with full credit. Every penalty
/// now charges the peer's network (/24) too, and repeated offences ban
/// the network: its fresh keys, its other addresses and its addresses in
/// the book are refused until the ban ends.
#[test]
fn repeated_offences_from_one_network_ban_the_network() {
    let now = Instant::now();
    let mut m = manager(no_jitter(), now);
    let at = |host: u8| Some(IpAddr::from([198, 51, 100, host]));
    // Three keys from one /24 misbehave until banned.
    for n in 1..=3u64 {
        assert_eq!(m.accepted(id(n), at(n as u8), now), ADMIT, "key {n}");
        let outcome = m.report(id(n), 100, now);
        assert!(matches!(outcome, ReportOutcome::Ban { .. }), "{outcome:?}");
        m.disconnected(id(n), now);
    }
    assert!(m.is_prefix_banned(IpAddr::from([198, 51, 100, 200]), now));
    assert_eq!(m.prefix_score(IpAddr::from([198, 51, 100, 1])), -300);
    // A fresh key, from a fresh address of that network: refused.
    assert_eq!(
        m.accepted(id(4), at(99), now),
        Admission::Reject(RejectReason::PrefixBanned)
    );
    // Its addresses are neither learned nor dialed.
    let in_network = tcp(5, [198, 51, 100, 50]);
    assert!(matches!(
        m.add_address(in_network.clone(), AddressSource::Exchange),
        Err(AddAddressError::PrefixBanned(_))
    ));
    // Even an address the operator gives is not dialed until the ban ends.
    let trusted = tcp(8, [198, 51, 100, 60]);
    assert_eq!(
        m.add_address(trusted.clone(), AddressSource::Manual),
        Ok(true)
    );
    assert_eq!(m.next_dial(now), None);
    assert_eq!(m.next_dial_at(), Some(now + Duration::from_secs(600)));
    // Another network is not affected.
    assert_eq!(
        m.accepted(id(6), at(1).map(|_| [198, 51, 101, 1].into()), now),
        ADMIT
    );
    // The ban ends.
    let later = now + Duration::from_secs(600);
    assert!(!m.is_prefix_banned(IpAddr::from([198, 51, 100, 200]), later));
    assert!(matches!(
        m.accepted(id(4), at(99), later),
        Admission::Admit { .. }
    ));
    assert_eq!(m.next_dial(later), Some(trusted));
    m.assert_consistent();
}

/// Item 8: a fresh key started at score 0 whatever its network had done. A
/// key we never had a connection with now starts at half its network's
/// score: one more offence and it is out.
#[test]
fn a_fresh_key_from_a_penalised_network_starts_penalised() {
    let now = Instant::now();
    let mut m = manager(no_jitter(), now);
    let at = |host: u8| Some(IpAddr::from([198, 51, 100, host]));
    assert_eq!(m.accepted(id(1), at(1), now), ADMIT);
    assert_eq!(m.report(id(1), 60, now), ReportOutcome::Disconnect);
    m.disconnected(id(1), now);
    // A new key from the same /24 starts at -30 and is disconnected by
    // what would only have been noted for a key from elsewhere.
    assert_eq!(m.accepted(id(2), at(2), now), ADMIT);
    assert_eq!(m.score(id(2)), Some(-30));
    assert_eq!(m.report(id(2), 20, now), ReportOutcome::Disconnect);
    assert_eq!(m.accepted(id(3), Some([203, 0, 113, 1].into()), now), ADMIT);
    assert_eq!(m.score(id(3)), Some(0));
    assert_eq!(m.report(id(3), 20, now), ReportOutcome::Noted);
    // It never starts at or below the disconnect threshold.
    for _ in 0..5 {
        m.report(id(2), 20, now);
    }
    assert_eq!(m.accepted(id(7), at(7), now), ADMIT);
    assert_eq!(m.score(id(7)), Some(-49));
    // A fresh key from a penalised network does not outrank anyone.
    let full = PeerManagerConfig {
        max_inbound: 2,
        ..no_jitter()
    };
    let mut m = manager(full, now);
    assert_eq!(m.accepted(id(1), at(1), now), ADMIT);
    assert_eq!(m.accepted(id(8), at(8), now), ADMIT);
    m.report(id(8), 30, now);
    m.disconnected(id(8), now);
    assert_eq!(m.accepted(id(9), Some([203, 0, 113, 9].into()), now), ADMIT);
    // Peer 1 at -10, its network at -40: fresh keys from it start at -20.
    m.report(id(1), 10, now);
    assert_eq!(m.score(id(1)), Some(-10));
    assert_eq!(
        m.accepted(id(2), at(2), now),
        Admission::Reject(RejectReason::InboundFull)
    );
    // A fresh key from elsewhere (0) outranks peer 1.
    assert_eq!(
        m.accepted(id(3), Some([203, 0, 114, 1].into()), now),
        Admission::Admit { evict: Some(id(1)) }
    );
    m.assert_consistent();
}

/// Item 8: scores never recovered, so an honest peer that once misbehaved
/// stayed marked for ever. Scores (and networks' records) halve every
/// `score_half_life` (1 h).
#[test]
fn scores_decay_toward_zero() {
    let now = Instant::now();
    let hour = Duration::from_secs(3600);
    let mut m = manager(no_jitter(), now);
    assert_eq!(m.accepted(id(1), ip(1), now), ADMIT);
    assert_eq!(m.report(id(1), 80, now), ReportOutcome::Disconnect);
    m.disconnected(id(1), now);
    assert_eq!(m.report(id(2), -40, now), ReportOutcome::Noted);
    m.add_address(addr(2), AddressSource::Manual).unwrap();
    m.report(id(2), -40, now);
    assert_eq!(m.score(id(1)), Some(-80));
    assert_eq!(m.prefix_score(ip(1).unwrap()), -80);
    // An hour later, halfway back; ten hours later, forgiven.
    m.next_dial(now + hour);
    assert_eq!(m.score(id(1)), Some(-40));
    assert_eq!(m.score(id(2)), Some(20));
    assert_eq!(m.prefix_score(ip(1).unwrap()), -40);
    assert_eq!(m.report(id(1), 10, now + hour), ReportOutcome::Noted);
    m.next_dial(now + 11 * hour);
    assert_eq!(m.score(id(1)), Some(0));
    assert_eq!(m.prefix_score(ip(1).unwrap()), 0);
    // The store gets the decayed score.
    let records = m.records();
    let record = records.iter().find(|r| r.peer == id(2)).unwrap();
    assert_eq!(record.score, 0);
}

#[derive(Debug, Clone)]
enum Op {
    Add(u64),
    /// Peer, network, told by (0: unnamed), private.
    AddTcp(u64, u8, u64, bool),
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
        2 => (peer.clone(), 0..4u8, 0..30u64, any::<bool>()).prop_map(|(p, n, t, private)| Op::AddTcp(p, n, t, private)),
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
            max_inbound_per_prefix: 2,
            max_concurrent_dials: 2,
            new_buckets: 2,
            tried_buckets: 1,
            bucket_size: 4,
            prefix_ban_threshold: -100,
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
                Op::AddTcp(p, net, teller, private) => {
                    let ip = if private { [10, net, 0, 1] } else { [50, net, 0, 1] };
                    let source = if teller == 0 { AddressSource::Exchange } else { AddressSource::ExchangeFrom(id(teller)) };
                    let result = m.add_address(PeerAddress::tcp(id(p), (ip, 7000).into()), source);
                    if private {
                        prop_assert!(result.is_err() || m.is_persistent(id(p)), "{result:?}");
                    }
                }
                Op::Request(p) => { let _ = m.request(vec![addr(p)], AddressSource::Exchange); }
                Op::NextDial => {
                    let was_connected: Vec<_> = m.connected().map(|(p, _)| p).collect();
                    if let Some(a) = m.next_dial(now) {
                        prop_assert!(!m.is_banned(a.peer, now), "banned peer dialed");
                        if let Some(ip) = a.ip() && !m.is_persistent(a.peer) {
                            prop_assert!(!m.is_prefix_banned(ip, now), "address in a banned network dialed");
                        }
                        prop_assert!(!was_connected.contains(&a.peer), "connected peer dialed");
                    }
                }
                Op::DialFailed(p) => m.dial_failed(id(p), now),
                Op::Dialed(p) => {
                    let ip = m.addresses(id(p)).first().and_then(PeerAddress::ip);
                    if let Admission::Admit { evict: Some(victim) } = m.dialed(id(p), ip, now) {
                        m.disconnected(victim, now);
                    }
                }
                Op::Accepted(p, i) => {
                    let verdict = m.accepted(id(p), if i == 0 { None } else { ip(i) }, now);
                    if m.is_banned(id(p), now) {
                        prop_assert_eq!(verdict, Admission::Reject(RejectReason::Banned));
                    } else if i != 0 && !m.is_persistent(id(p)) && m.is_prefix_banned(ip(i).unwrap(), now) {
                        prop_assert!(!matches!(verdict, Admission::Admit { .. }), "{verdict:?}");
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
            // Tables (12) and trusted peers beyond them (2 bootstrap),
            // persistent peers (2), connected peers without an address
            // (3 + 3) and idle ones kept for their score (the tried
            // table's 4).
            prop_assert!(m.known_peers() <= 12 + 2 + 2 + 6 + 4, "{}", m.known_peers());
            prop_assert!(m.is_persistent(id(1)) && m.is_persistent(id(2)));
        }
    }
}

/// Item 7 of issue 14 (eclipse): a simulated node and its dial loop, with
/// 200 honest peers and an attacker that feeds it 10,000 reachable
/// addresses of its own from its own connection, and 100 more from every
/// attacker peer the node dials. Before the address book had tables, the
/// attacker held every outbound slot within minutes.
mod eclipse {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha12Rng;
    use std::collections::BTreeSet;
    use std::net::SocketAddr;

    const HONEST: u64 = 200;
    const HONEST_BASE: u64 = 100_000;
    const ATTACKER_BASE: u64 = 200_000;
    const ATTACKER_ADDRESSES: u64 = 10_000;

    /// Where the peers live.
    #[derive(Clone, Copy, Debug)]
    enum World {
        /// Honest peers each in a network of their own; the attacker's
        /// addresses (and its own node) spread over this many /16s.
        Ip { attacker_networks: u64 },
        /// Everyone on the memory transport: addresses name no network.
        Memory,
    }

    impl World {
        fn honest(self, i: u64) -> PeerAddress {
            let peer = id(HONEST_BASE + i);
            match self {
                World::Ip { .. } => {
                    let ip = IpAddr::from([20 + (i / 200) as u8, (i % 200) as u8, 1, 1]);
                    PeerAddress::tcp(peer, SocketAddr::new(ip, 26656))
                }
                World::Memory => PeerAddress::memory(peer),
            }
        }

        /// Attacker address `i`; `ATTACKER_ADDRESSES` is the attacker's
        /// own node.
        fn attacker(self, i: u64) -> PeerAddress {
            let peer = id(ATTACKER_BASE + i);
            match self {
                World::Ip { attacker_networks } => {
                    let rest = i / attacker_networks;
                    let ip = IpAddr::from([
                        66,
                        (i % attacker_networks) as u8,
                        (rest / 250) as u8,
                        1 + (rest % 250) as u8,
                    ]);
                    PeerAddress::tcp(peer, SocketAddr::new(ip, 26656))
                }
                World::Memory => PeerAddress::memory(peer),
            }
        }
    }

    /// Runs the victim for 1,500 simulated seconds — a dial round a second;
    /// each second, one chance in ten that one of its outbound connections
    /// (whoever's) drops — and returns the attacker's share of its outbound
    /// peers at each second after the first 300.
    fn attacker_share(seed: u64, world: World) -> Vec<f64> {
        let mut now = Instant::now();
        let config = PeerManagerConfig {
            bootstrap_peers: (0..3).map(|i| world.honest(i)).collect(),
            ..PeerManagerConfig::default()
        };
        let mut m = PeerManager::new(id(LOCAL), config, seed, now);
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        let attackers: BTreeSet<PeerId> = (0..=ATTACKER_ADDRESSES)
            .map(|i| id(ATTACKER_BASE + i))
            .collect();
        let own = world.attacker(ATTACKER_ADDRESSES);
        assert_eq!(m.accepted(own.peer, own.ip(), now), ADMIT);
        let from_own = AddressSource::ExchangeFrom(own.peer);
        for i in 0..ATTACKER_ADDRESSES {
            let _ = m.add_address(world.attacker(i), from_own);
        }
        let mut shares = Vec::new();
        for second in 0..1_500u64 {
            while let Some(address) = m.next_dial(now) {
                // Every dial succeeds: the attacker's addresses are its own.
                let peer = address.peer;
                if let Admission::Admit {
                    evict: Some(victim),
                } = m.dialed(peer, address.ip(), now)
                {
                    m.disconnected(victim, now);
                }
                // Every peer answers a request: honest ones with 20 honest
                // addresses, the attacker's with 100 of the attacker's.
                let from = AddressSource::ExchangeFrom(peer);
                if attackers.contains(&peer) {
                    for _ in 0..100 {
                        let i = rng.random_range(0..ATTACKER_ADDRESSES);
                        let _ = m.add_address(world.attacker(i), from);
                    }
                } else {
                    for _ in 0..20 {
                        let i = rng.random_range(0..HONEST);
                        let _ = m.add_address(world.honest(i), from);
                    }
                }
            }
            if second % 30 == 0 {
                for _ in 0..100 {
                    let i = rng.random_range(0..ATTACKER_ADDRESSES);
                    let _ = m.add_address(world.attacker(i), from_own);
                }
            }
            let outbound: Vec<PeerId> = m
                .connected()
                .filter(|(_, d)| *d == Direction::Outbound)
                .map(|(p, _)| p)
                .collect();
            if second >= 300 {
                let bad = outbound.iter().filter(|p| attackers.contains(p)).count();
                shares.push(bad as f64 / outbound.len().max(1) as f64);
            }
            if !outbound.is_empty() && rng.random_bool(0.1) {
                m.disconnected(outbound[rng.random_range(0..outbound.len())], now);
            }
            now += Duration::from_secs(1);
        }
        m.assert_consistent();
        shares
    }

    fn mean(shares: &[f64]) -> f64 {
        shares.iter().sum::<f64>() / shares.len() as f64
    }

    fn highest(shares: &[f64]) -> f64 {
        shares.iter().copied().fold(0.0, f64::max)
    }

    /// The attacker's addresses are all in its own network (as loopback
    /// peers would be): it never holds half the victim's outbound peers.
    #[test]
    fn an_attacker_feeding_10000_addresses_of_its_own_never_holds_half_the_outbound_peers() {
        for seed in [1, 2] {
            let shares = attacker_share(
                seed,
                World::Ip {
                    attacker_networks: 1,
                },
            );
            assert!(
                highest(&shares) < 0.5,
                "seed {seed}: attacker held {:.0} % of outbound peers at worst",
                highest(&shares) * 100.0
            );
        }
    }

    /// On the memory transport addresses name no network: each weighs as
    /// the network of whoever told us (the root of the chain of tellers),
    /// so the attacker's whole chain of Sybils is one network against the
    /// victim's three bootstrap peers' — a quarter of the dials, far from
    /// half on average.
    #[test]
    fn an_attacker_feeding_10000_memory_addresses_holds_a_minority_of_outbound_peers() {
        for seed in [1, 2] {
            let shares = attacker_share(seed, World::Memory);
            assert!(
                mean(&shares) < 0.35,
                "seed {seed}: attacker held {:.0} % of outbound peers on average",
                mean(&shares) * 100.0
            );
        }
    }

    /// An attacker with reachable addresses in 16 networks weighs 16
    /// networks against the honest ones: on average far from half.
    #[test]
    fn an_attacker_in_16_networks_holds_a_minority_of_outbound_peers_on_average() {
        for seed in [1, 2] {
            let shares = attacker_share(
                seed,
                World::Ip {
                    attacker_networks: 16,
                },
            );
            assert!(
                mean(&shares) < 0.3,
                "seed {seed}: attacker held {:.0} % of outbound peers on average",
                mean(&shares) * 100.0
            );
        }
    }
}
