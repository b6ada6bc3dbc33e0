//! Rooms over gossip on the memory transport, paused clock: members
//! converge to one state hash under loss, after a partition heals, and a
//! late joiner gets the state. Every duration below is simulated.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use p2p::{Keypair, PeerId, RouterConfig};
use reactor_gossip::room::{ChatLog, RoomConfig, RoomHandle, RoomKeys, Rooms, RoomsHandle};
use reactor_gossip::{Gossip, GossipConfig, GossipHandle, HyParViewConfig};
use testkit::Network;

const SECOND: Duration = Duration::from_secs(1);

fn links(n: usize, seed: u64) -> Vec<(usize, usize)> {
    common::ring_with_chords(n, 1, seed ^ 0x4007)
}

fn router_config(_: usize, config: &mut RouterConfig) {
    // The default 10 ordinary outbound slots: gossip's own dials are
    // requests (`Router::connect`), made past them.
    config.peer_manager.max_outbound = 10;
}

fn gossip_config() -> GossipConfig {
    GossipConfig {
        hyparview: HyParViewConfig {
            shuffle_interval: 10 * SECOND,
            merge_probability: 0.5,
            ..HyParViewConfig::default()
        },
        ..GossipConfig::default()
    }
}

fn room_config() -> RoomConfig {
    RoomConfig {
        head_interval: 2 * SECOND,
        ..RoomConfig::default()
    }
}

struct Setup {
    net: Network,
    gossip: Vec<GossipHandle>,
    rooms: Vec<RoomsHandle>,
    keys: RoomKeys,
    write: Keypair,
}

async fn setup(seed: u64, n: usize) -> Setup {
    let mut net = Network::builder()
        .seed(seed)
        .nodes(n)
        .links(links(n, seed))
        .configure(router_config)
        .build()
        .expect("build");
    let mut gossip = Vec::new();
    let mut rooms = Vec::new();
    for i in 0..n {
        let key = testkit::node_keypair(seed, i);
        assert_eq!(key.peer_id(), net.peer_id(i));
        let g = net
            .reactor(i, Gossip::new(key, gossip_config()).expect("config"))
            .expect("gossip");
        let r = net
            .reactor(i, Rooms::new(g.clone(), room_config()))
            .expect("rooms");
        gossip.push(g);
        rooms.push(r);
    }
    net.start().expect("start");
    net.wait_until("links", 30 * SECOND, |net| {
        (0..n).all(|i| !net.router(i).connected_peers().is_empty())
    })
    .await
    .expect("links");
    let admin = Keypair::from_seed(seed ^ 0xad);
    let write = Keypair::from_seed(seed ^ 0x3e);
    let keys = RoomKeys::new(admin.peer_id(), "chat", write.peer_id());
    Setup {
        net,
        gossip,
        rooms,
        keys,
        write,
    }
}

impl Setup {
    async fn open(&self, i: usize) -> RoomHandle {
        self.rooms[i]
            .open(
                self.keys.clone(),
                Some(self.write.clone()),
                None,
                Arc::new(ChatLog),
                Vec::<PeerId>::new(),
            )
            .await
            .expect("open")
    }
}

/// Waits until every room in `rooms` has the same head holding `lines`
/// lines; returns the lines.
async fn converge(rooms: &[RoomHandle], lines: usize, deadline: Duration) -> Vec<String> {
    let start = tokio::time::Instant::now();
    loop {
        let views: Vec<_> = rooms.iter().map(RoomHandle::view).collect();
        let hashes: BTreeSet<_> = views.iter().map(|v| v.hash).collect();
        let got = ChatLog::lines(&views[0].state);
        if hashes.len() == 1 && got.len() >= lines {
            return got;
        }
        if start.elapsed() > deadline {
            let summary: Vec<(u64, usize)> = views
                .iter()
                .map(|v| (v.height, ChatLog::lines(&v.state).len()))
                .collect();
            panic!(
                "no convergence after {deadline:?}: {} heads, (height, lines) {summary:?}",
                hashes.len()
            );
        }
        tokio::time::sleep(500 * Duration::from_millis(1)).await;
    }
}

fn assert_each_once(lines: &[String], expected: &BTreeSet<String>) {
    let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
    for line in lines {
        *counts.entry(line).or_default() += 1;
    }
    for line in expected {
        assert_eq!(counts.get(line), Some(&1), "{line:?} in {lines:?}");
    }
    assert_eq!(lines.len(), expected.len(), "{lines:?}");
}

async fn wait_for_neighbours(setup: &Setup, nodes: &[usize]) {
    for _ in 0..120 {
        if nodes.iter().all(|&i| {
            let s = setup.gossip[i].stats();
            s.neighbor_up > s.neighbor_down
        }) {
            return;
        }
        tokio::time::sleep(SECOND).await;
    }
    panic!("members without a neighbour");
}

/// Twelve members write 36 lines while 10 % of the messages on every link
/// are lost: catch-up and head exchanges make every member end with the
/// same state, every line exactly once.
#[tokio::test(start_paused = true)]
async fn rooms_converge_under_loss() {
    for seed in common::seeds(&[11]) {
        under_loss(seed).await;
    }
}

async fn under_loss(seed: u64) {
    let n = 12;
    let s = setup(seed, n).await;
    for a in 0..n {
        for b in a + 1..n {
            s.net.set_loss(a, b, 0.1);
        }
    }
    let mut rooms = Vec::new();
    for i in 0..n {
        rooms.push(s.open(i).await);
    }
    wait_for_neighbours(&s, &(0..n).collect::<Vec<_>>()).await;
    let mut expected = BTreeSet::new();
    for k in 0..3 {
        for (i, room) in rooms.iter().enumerate() {
            let line = format!("node {i} line {k}");
            room.write(line.clone()).await.expect("write");
            expected.insert(line);
            tokio::time::sleep(100 * Duration::from_millis(1)).await;
        }
    }
    let lines = converge(&rooms, expected.len(), 120 * SECOND).await;
    assert_each_once(&lines, &expected);
    let stats: Vec<_> = rooms.iter().map(|r| r.view().stats).collect();
    eprintln!(
        "under 10 % loss: catch-ups {}, snapshots {}, reorgs {}, reposts {}",
        stats.iter().map(|s| s.catch_ups_sent).sum::<u64>(),
        stats.iter().map(|s| s.snapshots_adopted).sum::<u64>(),
        stats.iter().map(|s| s.reorgs).sum::<u64>(),
        stats.iter().map(|s| s.reposts).sum::<u64>(),
    );
    let mut net = s.net;
    net.shutdown().await;
}

/// Two halves write apart during a partition and diverge; once it heals,
/// the overlays merge, the shorter branch loses, its writers re-post their
/// lines on the winner, and every member ends with every line once.
#[tokio::test(start_paused = true)]
async fn rooms_converge_after_partition_and_heal() {
    for seed in common::seeds(&[12]) {
        partition_and_heal(seed).await;
    }
}

async fn partition_and_heal(seed: u64) {
    let n = 12;
    let s = setup(seed, n).await;
    let mut rooms = Vec::new();
    for i in 0..n {
        rooms.push(s.open(i).await);
    }
    wait_for_neighbours(&s, &(0..n).collect::<Vec<_>>()).await;
    let left: Vec<usize> = (0..n / 2).collect();
    let right: Vec<usize> = (n / 2..n).collect();
    s.net.partition(&[&left, &right]);
    // Each side repairs its overlay.
    tokio::time::sleep(30 * SECOND).await;
    let mut expected = BTreeSet::new();
    for (i, room) in rooms.iter().enumerate() {
        let line = format!("node {i} during the partition");
        room.write(line.clone()).await.expect("write");
        expected.insert(line);
    }
    // Left writes twice as much: its branch will be the longer one.
    for &i in &left {
        let line = format!("node {i} again");
        rooms[i].write(line.clone()).await.expect("write");
        expected.insert(line);
    }
    tokio::time::sleep(10 * SECOND).await;
    let left_hash = rooms[0].view().hash;
    let right_hash = rooms[n - 1].view().hash;
    assert_ne!(left_hash, right_hash, "the halves diverged");
    assert!(left.iter().all(|&i| rooms[i].view().hash == left_hash));
    assert!(right.iter().all(|&i| rooms[i].view().hash == right_hash));

    s.net.heal_all();
    let lines = converge(&rooms, expected.len(), 300 * SECOND).await;
    assert_each_once(&lines, &expected);
    let reposts: u64 = rooms.iter().map(|r| r.view().stats.reposts).sum();
    let reorgs: u64 = rooms.iter().map(|r| r.view().stats.reorgs).sum();
    eprintln!("after the partition: {reposts} reposts, {reorgs} reorgs");
    assert!(
        reposts >= right.len() as u64,
        "the losing side re-posted ({reposts})"
    );
    let mut net = s.net;
    net.shutdown().await;
}

/// A member that opens the room after 40 lines were written gets the
/// state from a neighbour and then follows new writes.
#[tokio::test(start_paused = true)]
async fn a_late_joiner_gets_the_state() {
    for seed in common::seeds(&[13]) {
        late_joiner(seed).await;
    }
}

async fn late_joiner(seed: u64) {
    let n = 8;
    let s = setup(seed, n).await;
    let mut rooms = Vec::new();
    for i in 0..n - 1 {
        rooms.push(s.open(i).await);
    }
    wait_for_neighbours(&s, &(0..n - 1).collect::<Vec<_>>()).await;
    let mut expected = BTreeSet::new();
    for k in 0..40 {
        let line = format!("line {k}");
        rooms[k % (n - 1)].write(line.clone()).await.expect("write");
        expected.insert(line);
        tokio::time::sleep(50 * Duration::from_millis(1)).await;
    }
    converge(&rooms, expected.len(), 60 * SECOND).await;
    rooms.push(s.open(n - 1).await);
    let lines = converge(&rooms, expected.len(), 60 * SECOND).await;
    assert_each_once(&lines, &expected);
    let joined = rooms[n - 1].view().stats;
    assert!(
        joined.catch_ups_sent >= 1 && joined.updates_accepted + joined.snapshots_adopted >= 1,
        "{joined:?}"
    );
    rooms[n - 1].write("the late joiner").await.expect("write");
    expected.insert("the late joiner".into());
    let lines = converge(&rooms, expected.len(), 60 * SECOND).await;
    assert_each_once(&lines, &expected);
    let mut net = s.net;
    net.shutdown().await;
}

/// The takeover of issue 14: a connected peer that is no member sends one
/// member an unsolicited snapshot at height 2^62 naming itself the write
/// key. Before the fix the member adopted it and the takeover spread;
/// now every member keeps its hash, write key and lines, and the admin's
/// writer can still write.
#[tokio::test(start_paused = true)]
async fn a_raw_peer_cannot_take_over_a_room_with_a_snapshot() {
    use prost::Message as _;
    use reactor_gossip::room::{ROOM_CHANNEL_ID, Stamp, Update, UpdateKind, state_digest, wire};
    use reactor_gossip::room_proto as proto;

    let s = setup(5, 3).await;
    let mut rooms = Vec::new();
    for i in 0..3 {
        rooms.push(s.open(i).await);
    }
    wait_for_neighbours(&s, &[0, 1, 2]).await;
    rooms[0].write("honest").await.expect("write");
    converge(&rooms, 1, 30 * SECOND).await;
    let before: Vec<_> = rooms.iter().map(RoomHandle::view).collect();

    let mut attacker = testkit::adversary::RawPeer::connect(&s.net, 0, 666, &[ROOM_CHANNEL_ID])
        .await
        .expect("the attacker connects");
    let mut state = Vec::new();
    reactor_gossip::room::Reducer::reduce(&ChatLog, &mut state, b"owned").expect("a line");
    let head = Update::sign(
        &attacker.keypair,
        s.keys.room,
        reactor_gossip::room::StateHash::from_bytes([9; 32]),
        UpdateKind::Rotate(attacker.peer_id()),
        Stamp {
            height: 1 << 62,
            epoch: 1 << 20,
            digest: state_digest(&state),
        },
    );
    let snapshot = proto::RoomMessage {
        room: s.keys.room.as_bytes().to_vec().into(),
        kind: Some(proto::room_message::Kind::Snapshot(proto::Snapshot {
            state: state.into(),
            head: Some(wire::update_to_wire(&head)),
            rotation: None,
        })),
    };
    assert!(snapshot.encoded_len() > 0);
    attacker
        .send(ROOM_CHANNEL_ID, &snapshot)
        .await
        .expect("the snapshot is sent");
    tokio::time::sleep(10 * SECOND).await;
    for (room, was) in rooms.iter().zip(&before) {
        let now = room.view();
        assert_eq!(now.hash, was.hash);
        assert_eq!(now.write_key, was.write_key);
        assert_eq!(ChatLog::lines(&now.state), vec!["honest"]);
    }
    assert!(rooms[0].view().stats.unsolicited >= 1);
    rooms[1]
        .write("still ours")
        .await
        .expect("the writer still writes");
    assert_eq!(converge(&rooms, 2, 30 * SECOND).await.len(), 2);
}
