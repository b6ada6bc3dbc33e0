//! End-to-end tests of whole `switchyard` processes over TCP on loopback.
//!
//! Each test starts real `switchyard run` processes with generated configs
//! (ports 0, read back from the process's own output, so tests never race
//! for a port), talks to them through their HTTP API, and stops them with
//! SIGTERM. Waiting has generous deadlines; nothing asserts on how long
//! anything took.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use switchyard::api::{PeerEntry, Status};

const EXE: &str = env!("CARGO_BIN_EXE_switchyard");
/// Deadline for anything a test waits for.
const PATIENCE: Duration = Duration::from_secs(60);

/// A running `switchyard run`.
struct Proc {
    child: Child,
    peer_id: String,
    tcp: String,
    api: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Starts a node from `config` and reads its PeerId, TCP address and API
    /// address from what it prints.
    fn start(config: &Path) -> Proc {
        let mut child = Command::new(EXE)
            .arg("--config")
            .arg(config)
            .arg("run")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn switchyard run");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut peer_id, mut tcp, mut api) = (None, None, None);
        while api.is_none() {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => panic!("node exited before printing its API address"),
            };
            if let Some(rest) = line.strip_prefix("switchyard node ") {
                peer_id = Some(rest.trim().to_string());
            } else if let Some(rest) = line.trim().strip_prefix("listening on ") {
                tcp = Some(rest.trim().to_string());
            } else if let Some(rest) = line.trim().strip_prefix("HTTP API on http://") {
                api = Some(rest.trim().parse().expect("API address"));
            }
        }
        // Keep draining stdout so the node never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Proc {
            child,
            peer_id: peer_id.expect("peer id line"),
            tcp: tcp.expect("listen line"),
            api: api.expect("api line"),
        }
    }

    /// SIGTERM, then waits: whether it exited successfully.
    fn stop(mut self) -> bool {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        kill(pid, Signal::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.success();
            }
            assert!(Instant::now() < deadline, "node did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        serde_json::from_str(&self.get_text(path)).expect("JSON")
    }

    fn get_text(&self, path: &str) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            reqwest::get(format!("http://{}{path}", self.api))
                .await
                .expect("GET")
                .text()
                .await
                .expect("body")
        })
    }

    fn peers(&self) -> Vec<String> {
        let mut peers: Vec<String> = self
            .get::<Vec<PeerEntry>>("/peers")
            .into_iter()
            .map(|p| p.peer_id)
            .collect();
        peers.sort();
        peers
    }
}

/// Writes a config for a loopback node in `home` and returns its path.
fn config(home: &Path, bootstrap: &[&str], extra: &str) -> PathBuf {
    std::fs::create_dir_all(home).expect("home");
    let bootstrap: Vec<String> = bootstrap.iter().map(|b| format!("{b:?}")).collect();
    let text = format!(
        r#"data_dir = {home:?}
network_id = "e2e"

[transports.tcp]
listen = "127.0.0.1:0"

[peers]
bootstrap = [{bootstrap}]

[reactors.pex]
request_interval = "1s"
min_request_gap = "500ms"

[api]
listen = "127.0.0.1:0"
{extra}
"#,
        home = home.display().to_string(),
        bootstrap = bootstrap.join(", "),
    );
    let path = home.join("config.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The value of the unlabelled sample `name` in Prometheus text.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics: {text}"))
}

/// Waits until `condition` holds.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

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

/// A base port with `n` free ports after it (checked by binding them).
fn free_port_range(n: u16) -> u16 {
    for _ in 0..100 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = probe.local_addr().expect("addr").port();
        drop(probe);
        if base.checked_add(n).is_none() {
            continue;
        }
        let all: Vec<_> = (base..base + n)
            .map(|p| std::net::TcpListener::bind(("127.0.0.1", p)))
            .collect();
        if all.iter().all(Result::is_ok) {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}
