use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use p2p::{Keypair, PeerId};
use proptest::prelude::*;

use super::ChatLog;
use super::chain::*;
use super::update::*;

static ADMIN: std::sync::LazyLock<Keypair> = std::sync::LazyLock::new(|| Keypair::from_seed(500));
static WRITE: std::sync::LazyLock<Keypair> = std::sync::LazyLock::new(|| Keypair::from_seed(501));
static PEERS: std::sync::LazyLock<Vec<PeerId>> = std::sync::LazyLock::new(|| {
    (600..604)
        .map(|n| Keypair::from_seed(n).peer_id())
        .collect()
});

fn keys() -> RoomKeys {
    RoomKeys::new(ADMIN.peer_id(), "test", WRITE.peer_id())
}

fn member(config: RoomConfig, writer: bool, admin: bool) -> RoomState {
    RoomState::new(
        keys(),
        writer.then(|| WRITE.clone()),
        admin.then(|| ADMIN.clone()),
        Arc::new(ChatLog),
        config,
        1,
        Instant::now(),
    )
}

fn line(state: &RoomState) -> Vec<String> {
    ChatLog::lines(state.state())
}

fn published(actions: &[RoomAction]) -> Vec<Update> {
    actions
        .iter()
        .filter_map(|a| match a {
            RoomAction::Publish(u) => Some(u.clone()),
            _ => None,
        })
        .collect()
}

fn sent(actions: &[RoomAction]) -> Vec<(PeerId, RoomMessage)> {
    actions
        .iter()
        .filter_map(|a| match a {
            RoomAction::Send { to, message } => Some((*to, message.clone())),
            _ => None,
        })
        .collect()
}

fn write(room: &mut RoomState, text: &'static str) -> Update {
    let (_, actions) = room
        .write(Bytes::from_static(text.as_bytes()), Instant::now())
        .expect("write");
    published(&actions).remove(0)
}

#[test]
fn a_write_is_applied_and_named_by_the_next_update() {
    let mut a = member(RoomConfig::default(), true, false);
    let first = write(&mut a, "hello");
    assert_eq!(first.parent, keys().genesis());
    assert_eq!(a.hash(), keys().genesis().child(&first.id()));
    assert_eq!(a.height(), 1);
    let second = write(&mut a, "world");
    assert_eq!(second.parent, keys().genesis().child(&first.id()));
    assert_eq!(line(&a), vec!["hello", "world"]);
    // A reader applies them too.
    let mut b = member(RoomConfig::default(), false, false);
    let now = Instant::now();
    b.on_update(PEERS[0], first, now);
    b.on_update(PEERS[0], second, now);
    assert_eq!((b.hash(), line(&b)), (a.hash(), line(&a)));
    assert_eq!(
        b.write(Bytes::from_static(b"x"), now),
        Err(RoomError::NotWriter)
    );
}

#[test]
fn a_missing_parent_is_caught_up_in_one_stream() {
    let now = Instant::now();
    let mut a = member(RoomConfig::default(), true, false);
    let mut b = member(RoomConfig::default(), false, false);
    let texts = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let updates: Vec<Update> = texts.iter().map(|t| write(&mut a, t)).collect();
    for u in &updates[..3] {
        b.on_update(PEERS[0], u.clone(), now);
    }
    // The last update arrives alone: b asks a for what it misses.
    let actions = b.on_update(PEERS[0], updates[7].clone(), now);
    let request = sent(&actions);
    assert!(matches!(request.as_slice(), [(p, RoomMessage::CatchUp { .. })] if *p == PEERS[0]));
    let answer = a.on_message(PEERS[1], request[0].1.clone(), now);
    let answer = sent(&answer);
    let [(to, RoomMessage::Updates { updates: stream })] = answer.as_slice() else {
        panic!("expected one stream, got {answer:?}");
    };
    assert_eq!(*to, PEERS[1]);
    assert_eq!(stream.len(), 5, "only what b misses");
    b.on_message(
        PEERS[0],
        RoomMessage::Updates {
            updates: stream.clone(),
        },
        now,
    );
    assert_eq!((b.hash(), b.height()), (a.hash(), 8));
    assert_eq!(line(&b), texts);
    assert_eq!(b.stats().catch_ups_sent, 1);
}

#[test]
fn a_long_gap_is_answered_with_a_snapshot() {
    let now = Instant::now();
    let config = RoomConfig {
        retain: 8,
        catch_up_max_updates: 4,
        ..RoomConfig::default()
    };
    let mut a = member(config.clone(), true, false);
    let mut b = member(config, false, false);
    let texts: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
    for t in &texts {
        a.write(Bytes::from(t.clone()), now).expect("write");
    }
    let answer = sent(&a.on_message(
        PEERS[1],
        RoomMessage::CatchUp {
            known: vec![keys().genesis()],
        },
        now,
    ));
    let [(_, snapshot @ RoomMessage::Snapshot { height: 20, .. })] = answer.as_slice() else {
        panic!("expected a snapshot, got {answer:?}");
    };
    b.on_message(PEERS[0], snapshot.clone(), now);
    assert_eq!((b.hash(), b.height()), (a.hash(), 20));
    assert_eq!(line(&b), texts);
    assert_eq!(b.stats().snapshots_adopted, 1);
    // And it follows from there.
    let next = write(&mut a, "after");
    b.on_update(PEERS[0], next, now);
    assert_eq!(b.hash(), a.hash());
}

#[test]
fn a_rotation_removes_the_old_write_key() {
    let now = Instant::now();
    let mut admin = member(RoomConfig::default(), false, true);
    let mut old_writer = member(RoomConfig::default(), true, false);
    let first = write(&mut old_writer, "before");
    admin.on_update(PEERS[0], first.clone(), now);
    let new_key = Keypair::from_seed(502);
    let rotation = published(&admin.rotate(new_key.peer_id(), now).expect("admin"));
    assert_eq!(admin.write_key(), new_key.peer_id());
    // The old key's next write (on the rotated state) is refused.
    old_writer.on_update(PEERS[0], rotation[0].clone(), now);
    assert_eq!(
        old_writer.write(Bytes::from_static(b"after"), now),
        Err(RoomError::NotWriter)
    );
    let stale = Update::sign(
        &WRITE,
        keys().room,
        admin.hash(),
        UpdateKind::Write(Bytes::from_static(b"sneaky")),
    );
    admin.on_update(PEERS[0], stale, now);
    assert_eq!(admin.stats().updates_refused, 1);
    assert_eq!(line(&admin), vec!["before"]);
    // The new writer can.
    old_writer.set_writer(Some(new_key));
    let ok = write(&mut old_writer, "new era");
    admin.on_update(PEERS[0], ok, now);
    assert_eq!(line(&admin), vec!["before", "new era"]);
    // A non-admin cannot rotate.
    assert_eq!(old_writer.rotate(PEERS[0], now), Err(RoomError::NotAdmin));
}

#[test]
fn the_state_cap_refuses_writes_and_makes_foreign_oversized_writes_no_ops() {
    let now = Instant::now();
    let small = RoomConfig {
        max_state_size: 16,
        ..RoomConfig::default()
    };
    let mut capped = member(small, true, false);
    let mut roomy = member(RoomConfig::default(), true, false);
    let first = write(&mut capped, "0123456789");
    assert!(matches!(
        capped.write(Bytes::from_static(b"0123456789"), now),
        Err(RoomError::TooLarge { size: 28, max: 16 })
    ));
    // A writer with a larger cap (misconfigured) writes past it: the
    // capped member keeps the update in its history as a no-op.
    roomy.on_update(PEERS[0], first, now);
    let big = write(&mut roomy, "0123456789");
    capped.on_update(PEERS[0], big, now);
    assert_eq!(capped.height(), 2);
    assert_eq!(capped.hash(), roomy.hash());
    assert_eq!(line(&capped), vec!["0123456789"]);
    assert_eq!(capped.stats().writes_ignored, 1);
}

#[test]
fn a_write_on_a_losing_branch_is_reposted_by_its_author() {
    let config = RoomConfig {
        repost_after: Duration::from_secs(1),
        ..RoomConfig::default()
    };
    let start = Instant::now();
    let mut a = member(config.clone(), true, false);
    let mut b = member(config, true, false);
    let ua = write(&mut a, "from a");
    let ub = write(&mut b, "from b");
    a.on_update(PEERS[1], ub.clone(), start);
    b.on_update(PEERS[0], ua.clone(), start);
    assert_eq!(a.hash(), b.hash(), "one fork choice");
    assert_eq!(line(&a).len(), 1);
    // The loser's author re-posts its line on the winner.
    let mut reposts = Vec::new();
    for room in [&mut a, &mut b] {
        let actions = room.on_tick(&[], start + Duration::from_secs(2));
        reposts.extend(published(&actions));
    }
    assert_eq!(reposts.len(), 1);
    for u in &reposts {
        a.on_update(PEERS[1], u.clone(), start);
        b.on_update(PEERS[0], u.clone(), start);
    }
    assert_eq!(a.hash(), b.hash());
    let mut lines = line(&a);
    lines.sort();
    assert_eq!(lines, vec!["from a", "from b"]);
    // Settled: nothing more to re-post.
    assert!(published(&a.on_tick(&[], start + Duration::from_secs(20))).is_empty());
    assert!(published(&b.on_tick(&[], start + Duration::from_secs(20))).is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any tree of updates (concurrent writers forking anywhere), delivered
    /// in any order, gives every member the same head and state.
    #[test]
    fn members_holding_the_same_updates_agree_whatever_the_order(
        parents in proptest::collection::vec(any::<prop::sample::Index>(), 1..24),
        order_a in Just(()).prop_perturb(|_, mut rng| rng.random::<u64>()),
        order_b in Just(()).prop_perturb(|_, mut rng| rng.random::<u64>()),
    ) {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut states = vec![keys().genesis()];
        let mut updates = Vec::new();
        for (i, parent) in parents.iter().enumerate() {
            let parent = states[parent.index(states.len())];
            let body = Bytes::from(format!("u{i}"));
            let update = Update::sign(&WRITE, keys().room, parent, UpdateKind::Write(body));
            states.push(parent.child(&update.id()));
            updates.push(update);
        }
        let deliver = |seed: u64| {
            let mut shuffled = updates.clone();
            shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            let mut room = member(RoomConfig::default(), false, false);
            for u in shuffled {
                room.on_update(PEERS[0], u, Instant::now());
            }
            (room.hash(), room.height(), room.state().to_vec())
        };
        let a = deliver(order_a);
        let b = deliver(order_b);
        prop_assert_eq!(&a, &b);
        let in_order = {
            let mut room = member(RoomConfig::default(), false, false);
            for u in &updates {
                room.on_update(PEERS[0], u.clone(), Instant::now());
            }
            (room.hash(), room.height(), room.state().to_vec())
        };
        prop_assert_eq!(a, in_order);
    }
}
