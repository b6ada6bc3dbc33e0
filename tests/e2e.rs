//! End-to-end tests of whole `switchyard` processes over TCP on loopback.
//!
//! Each test starts real `switchyard run` processes with generated configs
//! (ports 0, read back from the process's own output, so tests never race
//! for a port), talks to them through their HTTP API, and stops them with
//! SIGTERM. Waiting has generous deadlines; nothing asserts on how long
//! anything took.

mod common;

use std::process::Command;

use common::{EXE, Proc, config, free_port_range, metric, wait_until};
use switchyard::api::Status;

#[test]
fn three_nodes_find_each_other_through_one_bootstrap_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let boot = Proc::start(&config(&dir.path().join("n0"), &[], ""));
    let a = Proc::start(&config(&dir.path().join("n1"), &[&boot.tcp], ""));
    let b = Proc::start(&config(&dir.path().join("n2"), &[&boot.tcp], ""));
    // a and b only know the bootstrap node; peer exchange tells them of
    // each other, and /peers shows the full triangle.
    let procs = [&boot, &a, &b];
    wait_until("every node to list the other two in /peers", || {
        procs.iter().all(|p| {
            let mut others: Vec<String> = procs
                .iter()
                .filter(|q| q.peer_id != p.peer_id)
                .map(|q| q.peer_id.clone())
                .collect();
            others.sort();
            p.peers() == others
        })
    });
    let status: Status = a.get("/status");
    assert_eq!(status.peer_id, a.peer_id);
    assert_eq!(status.network_id, "e2e");
    assert_eq!(status.inbound_peers + status.outbound_peers, 2);
    // a learned b's address by peer exchange (or b learned a's): the
    // counters say so at /metrics, next to the router's.
    let learned: u64 = [&a, &b]
        .iter()
        .map(|p| {
            metric(
                &p.get_text("/metrics"),
                "switchyard_pex_addresses_learned_total",
            )
        })
        .sum();
    assert!(learned >= 1, "no address learned through peer exchange");
    let metrics = boot.get_text("/metrics");
    assert!(
        metrics.contains("switchyard_p2p_peers{direction=\"inbound\"} 2"),
        "{metrics}"
    );
    for p in [boot, a, b] {
        assert!(p.stop(), "a node exited with an error after SIGTERM");
    }
}

#[test]
fn a_bad_config_exits_non_zero_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("[peers]\nmax_outbound = 0\n", "peers.max_outbound"),
        ("[peers]\nmax_outbund = 4\n", "max_outbund"),
        ("[api]\nlisten = \"not an address\"\n", "listen"),
    ];
    for (i, (text, field)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&path, text).expect("write");
        let out = Command::new(EXE)
            .arg("--home")
            .arg(dir.path())
            .arg("--config")
            .arg(&path)
            .arg("run")
            .output()
            .expect("run switchyard");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?} was accepted");
        assert!(
            stderr.contains(field),
            "the error for {text:?} does not name {field}: {stderr}"
        );
    }
}

#[test]
fn a_restarted_node_reconnects_from_its_stored_peers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let anchor = Proc::start(&config(&dir.path().join("anchor"), &[], ""));
    let home = dir.path().join("node");
    let node = Proc::start(&config(&home, &[&anchor.tcp], ""));
    wait_until("the node to connect to the anchor", || {
        node.peers() == vec![anchor.peer_id.clone()]
    });
    assert!(node.stop(), "node exited with an error");
    // The same data directory, no bootstrap peer any more: the only way
    // back to the anchor is the peer store.
    let node = Proc::start(&config(&home, &[], ""));
    wait_until("the restarted node to redial the anchor", || {
        node.peers() == vec![anchor.peer_id.clone()]
    });
    assert!(node.stop());
    assert!(anchor.stop());
}

#[test]
fn devnet_starts_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_range(6);
    let out = Command::new(EXE)
        .args(["devnet", "--nodes", "3", "--seconds", "6", "--base-port"])
        .arg(base.to_string())
        .arg("--dir")
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run devnet");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "devnet failed: {stdout}\n{stderr}");
    assert!(stdout.contains("devnet stopped cleanly"), "{stdout}");
    for i in 0..3 {
        let log = std::fs::read_to_string(dir.path().join(format!("node-{i}/node.log")))
            .expect("node log");
        assert!(log.contains("stopped (SIGTERM)"), "node {i} log: {log}");
    }
}

#[test]
fn devnet_honours_home_and_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("devnet-home");
    let base_config = dir.path().join("base.toml");
    std::fs::write(
        &base_config,
        "network_id = \"my-devnet\"\n\n[peers]\nmax_outbound = 7\n",
    )
    .expect("write");
    let base = free_port_range(2);
    let out = Command::new(EXE)
        .arg("--home")
        .arg(&home)
        .arg("--config")
        .arg(&base_config)
        .args(["devnet", "--nodes", "1", "--seconds", "2", "--base-port"])
        .arg(base.to_string())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run devnet");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let config = std::fs::read_to_string(home.join("node-0/config.toml"))
        .expect("the devnet's node directory is in --home");
    assert!(config.contains("network_id = \"my-devnet\""), "{config}");
    assert!(config.contains("max_outbound = 7"), "{config}");
}

#[test]
fn a_crashed_devnet_node_is_restarted_and_the_logs_are_kept() {
    use std::io::{BufRead, BufReader};
    let base = free_port_range(4);
    let mut devnet = Command::new(EXE)
        .args(["devnet", "--nodes", "2", "--seconds", "12", "--base-port"])
        .arg(base.to_string())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run devnet");
    let stdout = devnet.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let header = lines.next().expect("a header").expect("a line");
    let root = std::path::PathBuf::from(
        header
            .split_once("data in ")
            .and_then(|(_, rest)| rest.split_once(" (Ctrl-C"))
            .map(|(dir, _)| dir)
            .expect("the data directory in the header"),
    );
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    // Node 1 runs (its API answers); then it dies.
    wait_until("node 1's API", || {
        std::net::TcpStream::connect(("127.0.0.1", base + 3)).is_ok()
    });
    let pid: i32 = std::fs::read_to_string(root.join("node-1/node.pid"))
        .expect("node 1's pid file")
        .trim()
        .parse()
        .expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill node 1");
    let out = devnet.wait_with_output().expect("devnet");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("node 1 exited on its own"), "{stderr}");
    assert!(stderr.contains("starting it again"), "{stderr}");
    assert!(
        stderr.contains(&format!("kept in {}", root.display())),
        "{stderr}"
    );
    // The logs are still there: node 1 started twice, and node 0 ran on
    // until the end and stopped cleanly.
    let log1 = std::fs::read_to_string(root.join("node-1/node.log")).expect("node 1's log");
    assert_eq!(log1.matches("switchyard node ").count(), 2, "{log1}");
    assert!(log1.contains("stopped (SIGTERM)"), "{log1}");
    let log0 = std::fs::read_to_string(root.join("node-0/node.log")).expect("node 0's log");
    assert_eq!(log0.matches("switchyard node ").count(), 1, "{log0}");
    assert!(log0.contains("stopped (SIGTERM)"), "{log0}");
    std::fs::remove_dir_all(&root).expect("remove the kept directory");
}

/// The tables a piped devnet printed: each `t=<s>s` line, then the column
/// names, then a row per node, every line whitespace-separated words.
fn devnet_tables(stdout: &str, nodes: usize) -> Vec<Vec<Vec<String>>> {
    let columns = [
        "node",
        "peer-id",
        "state",
        "peers",
        "known",
        "ring-location",
        "ring-nbrs",
        "room-height",
        "listening",
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    let mut tables = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let Some(t) = line.strip_prefix("t=").and_then(|t| t.strip_suffix('s')) else {
            continue;
        };
        t.parse::<u64>().expect("t=<seconds>s");
        // A table cut short by the end of the output is not complete yet.
        let Some(block) = lines.get(at + 1..at + 2 + nodes) else {
            continue;
        };
        let header: Vec<&str> = block[0].split_whitespace().collect();
        assert_eq!(header, columns, "{stdout}");
        let rows: Vec<Vec<String>> = block[1..]
            .iter()
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect();
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.len(), columns.len(), "row {i}: {stdout}");
            assert_eq!(row[0], i.to_string(), "{stdout}");
        }
        tables.push(rows);
    }
    tables
}

#[test]
fn a_piped_devnet_prints_plain_tables_when_they_change() {
    use std::io::Read;
    let base = free_port_range(4);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut devnet = Command::new(EXE)
        .args(["devnet", "--nodes", "2", "--base-port"])
        .arg(base.to_string())
        .arg("--dir")
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run devnet");
    let mut stdout = devnet.stdout.take().expect("stdout");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        })
    };
    let text = || String::from_utf8_lossy(&seen.lock().expect("lock")).into_owned();
    wait_until("a table where both nodes have their peer", || {
        devnet_tables(&text(), 2)
            .last()
            .is_some_and(|rows| rows.iter().all(|r| r[2] == "up" && r[3] == "1"))
    });
    let pid = nix::unistd::Pid::from_raw(i32::try_from(devnet.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let status = devnet.wait().expect("devnet");
    reader.join().expect("reader");
    let bytes = seen.lock().expect("lock").clone();
    let stdout = String::from_utf8(bytes).expect("UTF-8");
    assert!(status.success(), "{stdout}");
    assert!(!stdout.contains('\u{1b}'), "an escape code: {stdout:?}");
    assert!(stdout.contains("try: curl"), "{stdout}");
    let tables = devnet_tables(&stdout, 2);
    assert!(!tables.is_empty(), "{stdout}");
    // Printed on change only: no two tables in a row are the same.
    for pair in tables.windows(2) {
        assert_ne!(pair[0], pair[1], "{stdout}");
    }
    assert!(stdout.contains("devnet stopped cleanly"), "{stdout}");
}
