//! Whole `switchyard` processes for the package's integration tests: start
//! one from a generated config, read its addresses from what it prints,
//! talk to its HTTP API, stop it with SIGTERM.

#![allow(dead_code)] // each test file uses its own part

pub mod noise;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use switchyard::api::PeerEntry;

pub const EXE: &str = env!("CARGO_BIN_EXE_switchyard");
/// Deadline for anything a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A running `switchyard run`.
pub struct Proc {
    pub child: Child,
    pub peer_id: String,
    pub tcp: String,
    pub api: SocketAddr,
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
    pub fn start(config: &Path) -> Proc {
        // NODE_LOG=debug shows a failing test's node logs.
        let filter = std::env::var("NODE_LOG").unwrap_or_else(|_| "warn".into());
        Self::spawn(config, &filter, Stdio::inherit())
    }

    /// Starts a node from `config` logging at `filter` into the file `log`
    /// (its standard error).
    pub fn start_logged(config: &Path, filter: &str, log: &Path) -> Proc {
        let file = std::fs::File::create(log).expect("log file");
        Self::spawn(config, filter, Stdio::from(file))
    }

    fn spawn(config: &Path, filter: &str, stderr: Stdio) -> Proc {
        let mut child = Command::new(EXE)
            .arg("--config")
            .arg(config)
            .arg("run")
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
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
        // Keep draining stdout so the node never blocks on a full pipe
        // (and show it when NODE_LOG asks for logs).
        let show = std::env::var_os("NODE_LOG").is_some();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if show {
                    eprintln!("node: {line}");
                }
            }
        });
        Proc {
            child,
            peer_id: peer_id.expect("peer id line"),
            tcp: tcp.expect("listen line"),
            api: api.expect("api line"),
        }
    }

    /// SIGTERM, then waits: whether it exited successfully.
    pub fn stop(mut self) -> bool {
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

    pub fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        serde_json::from_str(&self.get_text(path)).expect("JSON")
    }

    pub fn get_text(&self, path: &str) -> String {
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

    pub fn peers(&self) -> Vec<String> {
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
pub fn config(home: &Path, bootstrap: &[&str], extra: &str) -> PathBuf {
    config_on("e2e", home, bootstrap, extra)
}

/// [`config`] for a node of network `network`.
pub fn config_on(network: &str, home: &Path, bootstrap: &[&str], extra: &str) -> PathBuf {
    std::fs::create_dir_all(home).expect("home");
    let bootstrap: Vec<String> = bootstrap.iter().map(|b| format!("{b:?}")).collect();
    let text = format!(
        r#"data_dir = {home:?}
network_id = {network:?}

[transports.tcp]
listen = "127.0.0.1:0"

[peers]
bootstrap = [{bootstrap}]
# Every node is on loopback.
allow_private_addresses = true
max_ports_per_host = 8
max_inbound_per_prefix = 8

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

/// The value of the sample `series` (a name with its labels, as
/// `/metrics` prints them), or 0 if absent.
pub fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(series)?;
            rest.starts_with(' ').then(|| rest.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// Waits until the file at `path` contains `needle`; returns its text.
pub fn wait_for_log(path: &Path, needle: &str) -> String {
    let mut text = String::new();
    wait_until(&format!("{needle:?} in {}", path.display()), || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.contains(needle)
    });
    text
}

/// The value of the unlabelled sample `name` in Prometheus text.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics: {text}"))
}

/// The node process's resident memory, in bytes.
pub fn rss(node: &Proc) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.child.id()))
        .expect("the node's /proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// Runs the `switchyard` CLI with `args`; its exit status, stdout, stderr.
pub fn cli(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(EXE)
        .args(args)
        .output()
        .expect("run switchyard");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until `condition` holds.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A base port with `n` free ports after it (checked by binding them).
pub fn free_port_range(n: u16) -> u16 {
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
