//! `switchyard testnet`, through the README's walk from `init` to a
//! three-node testnet: this test reads the walk's commands out of
//! README.md and runs each, in order (paths in a temporary directory, the
//! ports moved to free ones), so the README cannot drift from what works.
//! Background lines (`… &`) keep running; `status` is repeated until the
//! node has its two peers (polling, never a fixed sleep); `curl -N` opens a
//! topic's event stream, `curl -d` publishes (again while the overlay
//! forms) until every stream has the message.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{EXE, PATIENCE, free_port_range, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const README: &str = include_str!("../README.md");
/// The ports the README's walk uses: node i on 26700 + 2i, its API + 1.
const README_BASE: u16 = 26700;

/// The lines of the README's testnet walk.
fn walk() -> Vec<String> {
    let start = README
        .find("<!-- testnet walk")
        .expect("the README has the testnet walk");
    let block = &README[start..];
    let open = block.find("```sh\n").expect("the walk's code block") + "```sh\n".len();
    let close = block[open..].find("```").expect("the code block ends") + open;
    block[open..close]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Splits a command line into words, as a shell would for these lines
/// (single quotes group).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    assert!(!quoted, "unbalanced quote in {line}");
    if any {
        out.push(word);
    }
    out
}

struct Walk {
    dir: PathBuf,
    base: u16,
    nodes: Vec<Child>,
    streams: Vec<Arc<Mutex<String>>>,
    runtime: tokio::runtime::Runtime,
}

impl Drop for Walk {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}

impl Walk {
    /// The line with its paths in the test's directory and its ports moved
    /// to the free range.
    fn localize(&self, line: &str) -> String {
        let mut line = line
            .replace("./solo", &self.dir.join("solo").display().to_string())
            .replace("./testnet", &self.dir.join("testnet").display().to_string());
        for k in (0..6).rev() {
            line = line.replace(&(README_BASE + k).to_string(), &(self.base + k).to_string());
        }
        line
    }

    fn switchyard(&mut self, args: &[String], background: bool) {
        if background {
            let log = self.dir.join(format!("node-{}.log", self.nodes.len()));
            let child = Command::new(EXE)
                .args(args)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log"))
                .spawn()
                .expect("spawn switchyard run");
            self.nodes.push(child);
            return;
        }
        if args.iter().any(|a| a == "status") {
            // Repeated until the node has both other nodes.
            wait_until(&format!("{args:?} to show 2 peers"), || {
                peers_of(&status(args)) == Some(2)
            });
            // And so does every node of the testnet.
            for i in 0..3 {
                let home = self.dir.join(format!("testnet/node{i}"));
                let args = [
                    "--home".to_string(),
                    home.display().to_string(),
                    "status".to_string(),
                ];
                wait_until(&format!("node {i} to have 2 peers"), || {
                    peers_of(&status(&args)) == Some(2)
                });
            }
            return;
        }
        let out = Command::new(EXE)
            .args(args)
            .output()
            .expect("run switchyard");
        assert!(
            out.status.success(),
            "switchyard {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        if args.iter().any(|a| a == "id") {
            let peer = stdout.lines().next().unwrap_or("");
            assert_eq!(peer.len(), 52, "id prints the PeerId first: {stdout}");
        }
        if args.iter().any(|a| a == "--hosts") {
            self.check_host_homes();
        }
        if args.iter().any(|a| a == "--force") {
            self.check_loopback_homes();
        }
    }

    /// The homes written for 10.0.0.1–3: each announces its host, names
    /// the other two, and nothing names a loopback address.
    fn check_host_homes(&self) {
        let config = read(&self.dir.join("testnet/node1/config.toml"));
        assert!(
            config.contains("external_addresses = [\"tcp://10.0.0.2:26658\"]"),
            "{config}"
        );
        assert!(config.contains("listen = \"0.0.0.0:26658\""), "{config}");
        assert!(config.contains("@10.0.0.1:26656\""), "{config}");
        assert!(config.contains("@10.0.0.3:26660\""), "{config}");
        assert!(!config.contains("@127.0.0.1"), "{config}");
        assert!(
            !config.lines().any(|l| l.starts_with("data_dir")),
            "a home can be copied: {config}"
        );
        // The homes are there: a second run without --force refuses.
        let out = Command::new(EXE)
            .args(["testnet", "--nodes", "3", "--out"])
            .arg(self.dir.join("testnet"))
            .output()
            .expect("run switchyard testnet");
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--force"),
            "{out:?}"
        );
    }

    /// The homes rewritten for this machine: distinct loopback ports, the
    /// others as bootstrap peers, new keys.
    fn check_loopback_homes(&self) {
        let mut peers = Vec::new();
        for i in 0..3u16 {
            let config = read(&self.dir.join(format!("testnet/node{i}/config.toml")));
            let port = self.base + 2 * i;
            assert!(
                config.contains(&format!("listen = \"127.0.0.1:{port}\"")),
                "{config}"
            );
            assert!(
                config.contains(&format!("listen = \"127.0.0.1:{}\"", port + 1)),
                "the API: {config}"
            );
            assert!(!config.contains("10.0.0."), "rewritten: {config}");
            assert!(!config.contains("external_addresses = [\""), "{config}");
            let bootstrap = config.matches("@127.0.0.1:").count();
            assert_eq!(bootstrap, 2, "the two others: {config}");
            peers.push(read(
                &self.dir.join(format!("testnet/node{i}/node_key.hex")),
            ));
        }
        peers.sort();
        peers.dedup();
        assert_eq!(peers.len(), 3, "a key each");
    }

    fn curl(&mut self, args: &[String], background: bool) {
        let url = args.last().expect("a URL").clone();
        if args.iter().any(|a| a == "-N") {
            assert!(background, "a stream runs in the background");
            let seen = Arc::new(Mutex::new(String::new()));
            self.streams.push(seen.clone());
            let response = self
                .runtime
                .block_on(async { reqwest::get(&url).await.expect("GET the stream") });
            assert!(response.status().is_success(), "{url}: {response:?}");
            self.runtime.spawn(async move {
                let mut response = response;
                while let Ok(Some(chunk)) = response.chunk().await {
                    seen.lock()
                        .expect("lock")
                        .push_str(&String::from_utf8_lossy(&chunk));
                }
            });
            return;
        }
        let at = args
            .iter()
            .position(|a| a == "-d")
            .expect("curl -d DATA URL");
        let data = args[at + 1].clone();
        let client = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let status = self.runtime.block_on(async {
                client
                    .post(&url)
                    .body(data.clone())
                    .send()
                    .await
                    .expect("POST")
                    .status()
            });
            assert!(status.is_success(), "{url}: {status}");
            // Polled, not slept on: done as soon as every stream has it.
            let poll_until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < poll_until {
                if self.streams.iter().all(|s| {
                    let text = s.lock().expect("lock");
                    text.contains("event: message") && text.contains(&data)
                }) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            assert!(
                Instant::now() < deadline,
                "the message did not reach every stream: {:?}",
                self.streams
            );
        }
    }

    fn stop(&mut self) {
        for node in &self.nodes {
            let pid = Pid::from_raw(i32::try_from(node.id()).expect("pid"));
            kill(pid, Signal::SIGTERM).expect("SIGTERM");
        }
        for (i, node) in self.nodes.iter_mut().enumerate() {
            let deadline = Instant::now() + PATIENCE;
            let status = loop {
                if let Some(status) = node.try_wait().expect("wait") {
                    break status;
                }
                assert!(Instant::now() < deadline, "node {i} did not stop");
                std::thread::sleep(Duration::from_millis(50));
            };
            assert!(status.success(), "node {i} exited with {status}");
        }
        self.nodes.clear();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn status(args: &[String]) -> String {
    let out = Command::new(EXE).args(args).output().expect("run status");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The peer count `switchyard status` prints (`peers        2 (…)`).
fn peers_of(status: &str) -> Option<usize> {
    status.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some("peers")).then(|| words.next()?.parse().ok())?
    })
}

#[test]
fn the_readme_walk_from_init_to_a_three_node_testnet_works() {
    let lines = walk();
    assert!(lines.len() >= 8, "{lines:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut walk = Walk {
        dir: dir.path().to_path_buf(),
        base: free_port_range(6),
        nodes: Vec::new(),
        streams: Vec::new(),
        runtime: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime"),
    };
    for line in &lines {
        let line = walk.localize(line);
        let (line, background) = match line.strip_suffix('&') {
            Some(rest) => (rest.trim().to_string(), true),
            None => (line, false),
        };
        let words = words(&line);
        match words[0].as_str() {
            "switchyard" => walk.switchyard(&words[1..], background),
            "curl" => walk.curl(&words[1..], background),
            other => panic!("the walk runs only switchyard and curl, not {other}"),
        }
    }
    assert_eq!(walk.nodes.len(), 3, "the walk runs three nodes");
    assert_eq!(walk.streams.len(), 2, "and streams on the two others");
    walk.stop();
}

#[test]
fn words_split_like_a_shell() {
    assert_eq!(
        words("curl -d 'hello testnet' http://x"),
        ["curl", "-d", "hello testnet", "http://x"]
    );
    assert_eq!(
        peers_of("peer id  x\npeers        2 (1 inbound, 1 outbound)\n"),
        Some(2)
    );
}

#[test]
fn hosts_set_the_node_count_and_must_match_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("two");
    let run = |args: &[&str], out: &Path| {
        Command::new(EXE)
            .arg("testnet")
            .args(args)
            .arg("--out")
            .arg(out)
            .output()
            .expect("run switchyard testnet")
    };
    let two = run(&["--hosts", "a.example,b.example"], &out);
    assert!(two.status.success(), "{two:?}");
    assert!(out.join("node1/config.toml").exists());
    assert!(!out.join("node2").exists(), "one home per host");
    let config = read(&out.join("node0/config.toml"));
    assert!(config.contains("@b.example:26658\""), "{config}");
    assert!(
        !config.contains("allow_private_addresses = true"),
        "public hosts keep the default: {config}"
    );
    let mismatch = run(&["--nodes", "3", "--hosts", "a,b"], &dir.path().join("m"));
    assert!(!mismatch.status.success());
    assert!(
        String::from_utf8_lossy(&mismatch.stderr).contains("2 hosts for 3 nodes"),
        "{mismatch:?}"
    );
    let both = run(
        &["--hosts", "a", "--starting-ip", "10.0.0.1"],
        &dir.path().join("b"),
    );
    assert!(!both.status.success(), "--hosts and --starting-ip conflict");
    let ips = run(
        &["--nodes", "2", "--starting-ip", "10.0.0.254"],
        &dir.path().join("ip"),
    );
    assert!(ips.status.success(), "{ips:?}");
    let config = read(&dir.path().join("ip/node0/config.toml"));
    assert!(config.contains("@10.0.0.255:26658\""), "{config}");
    assert!(
        config.contains("allow_private_addresses = true"),
        "{config}"
    );
}
