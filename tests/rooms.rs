//! Rooms on whole `switchyard` processes: a room's state survives a
//! restart on the same home, and the restarted node fetches only what it
//! missed; `switchyard room new` prints a block a node accepts.

mod common;

use common::{Proc, config, wait_until};
use switchyard::gossip::RoomEntry;

fn room_config(admin: Option<&str>) -> String {
    let admin = admin
        .map(|a| format!("admin = {a:?}\n"))
        .unwrap_or_default();
    format!("[[reactors.gossip.rooms]]\nname = \"lobby\"\n{admin}")
}

fn post(node: &Proc, line: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let status = runtime.block_on(async {
        reqwest::Client::new()
            .post(format!("http://{}/rooms/lobby", node.api))
            .body(line.to_string())
            .send()
            .await
            .expect("POST")
            .status()
    });
    assert!(status.is_success(), "POST /rooms/lobby: {status}");
}

/// The room on `node`, once it is open.
fn lobby(node: &Proc) -> Option<RoomEntry> {
    serde_json::from_str(&node.get_text("/rooms/lobby")).ok()
}

#[test]
fn a_room_keeps_its_height_across_a_restart_and_fetches_only_what_it_missed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a_home, b_home) = (dir.path().join("a"), dir.path().join("b"));
    // a is the room's admin and its writer (the write key is the admin's).
    let a = Proc::start(&config(&a_home, &[], &room_config(None)));
    let b_config = config(&b_home, &[&a.tcp], &room_config(Some(&a.peer_id)));
    let b = Proc::start(&b_config);
    for line in ["one", "two", "three"] {
        post(&a, line);
    }
    wait_until("b to hold the three lines, saved", || {
        lobby(&b).is_some_and(|r| r.height == 3 && r.saved_height == Some(3))
    });
    let before = lobby(&b).expect("open");
    assert!(b.stop());

    // Restarted on the same home: the room opens at its saved head, with
    // nothing fetched.
    let b = Proc::start(&b_config);
    wait_until("b's room to open", || lobby(&b).is_some());
    let after = lobby(&b).expect("open");
    assert_eq!(
        (after.height, &after.hash, after.saved_height),
        (3, &before.hash, Some(3))
    );
    assert_eq!(
        after.lines.as_deref(),
        Some(&["one", "two", "three"].map(String::from)[..])
    );
    // a writes again: b applies that one update on its restored head, and
    // neither adopts a snapshot nor accepts the three it had.
    post(&a, "four");
    wait_until("b to get the fourth line", || {
        lobby(&b).is_some_and(|r| r.height == 4)
    });
    let after = lobby(&b).expect("open");
    assert_eq!(
        after.counters["updates_accepted"], 1,
        "{:?}",
        after.counters
    );
    assert_eq!(
        after.counters["snapshots_adopted"], 0,
        "{:?}",
        after.counters
    );
    assert_eq!(lobby(&a).expect("open").hash, after.hash);
    assert!(b.stop());
    assert!(a.stop());
}

#[test]
fn room_new_prints_a_block_a_node_opens_and_writes_with() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("n");
    let home_arg = home.to_str().expect("utf-8 path");
    // No home yet: said, nothing made.
    let (ok, _, stderr) = common::cli(&["--home", home_arg, "room", "new", "lobby"]);
    assert!(!ok && stderr.contains("switchyard init"), "{stderr}");
    let (ok, _, stderr) = common::cli(&["--home", home_arg, "init"]);
    assert!(ok, "{stderr}");
    let (ok, block, stderr) = common::cli(&["--home", home_arg, "room", "new", "lobby"]);
    assert!(ok, "{stderr}");
    assert!(home.join("room-keys/lobby.key").exists());
    let parsed: toml::Table = toml::from_str(&block).expect("the block is TOML");
    let room = &parsed["reactors"]["gossip"]["rooms"][0];
    let write_key = room["write_key"].as_str().expect("write_key").to_string();
    // A second `room new` of the same name does not overwrite the key.
    let (ok, _, stderr) = common::cli(&["--home", home_arg, "room", "new", "lobby"]);
    assert!(!ok && stderr.contains("never overwritten"), "{stderr}");

    let node = Proc::start(&config(&home, &[], &block));
    assert_eq!(room["admin"].as_str(), Some(node.peer_id.as_str()));
    wait_until("the room to open", || lobby(&node).is_some());
    let entry = lobby(&node).expect("open");
    assert_eq!(entry.write_key, write_key);
    assert!(entry.can_write);
    post(&node, "hello");
    let entry = lobby(&node).expect("open");
    assert_eq!(entry.height, 1);
    assert_eq!(entry.lines, Some(vec!["hello".to_string()]));
    assert!(node.stop());
}

#[test]
fn a_damaged_room_record_is_logged_with_its_reason_and_the_room_starts_from_genesis() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("a");
    let node_config = config(&home, &[], &room_config(None));
    let a = Proc::start(&node_config);
    post(&a, "one");
    wait_until("the line to be saved", || {
        lobby(&a).is_some_and(|r| r.saved_height == Some(1))
    });
    assert!(a.stop());

    // Damage every record of the store, as a bad disk would.
    {
        let (env, [db]) =
            switchyard::p2p::lmdb::open(&home.join("rooms"), 1 << 30, ["rooms"]).expect("open");
        let mut wtxn = env.write_txn().expect("txn");
        let keys: Vec<Vec<u8>> = db
            .iter(&wtxn)
            .expect("iter")
            .map(|entry| entry.expect("entry").0.to_vec())
            .collect();
        assert_eq!(keys.len(), 1);
        for key in keys {
            db.put(&mut wtxn, &key, &[1, 0xff, 0xff, 0x07])
                .expect("put");
        }
        wtxn.commit().expect("commit");
    }
    let log = dir.path().join("a.log");
    let a = Proc::start_logged(&node_config, "warn", &log);
    wait_until("the room to open", || lobby(&a).is_some());
    let room = lobby(&a).expect("open");
    assert_eq!((room.height, room.saved_height), (0, None));
    let text = common::wait_for_log(&log, "does not decode");
    assert!(
        text.contains("room store: a checkpoint does not read"),
        "{text}"
    );
    // It writes on from genesis, and saves again.
    post(&a, "two");
    wait_until("the new line to be saved", || {
        lobby(&a).is_some_and(|r| r.saved_height == Some(1))
    });
    assert!(a.stop());
}
