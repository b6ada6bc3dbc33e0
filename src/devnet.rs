//! `switchyard devnet`: N `switchyard run` processes on loopback, each with
//! its own ports and data directory, every node bootstrapped from the first;
//! a live table of each node's peers, ring location and room; Ctrl-C (or
//! `--seconds`) stops them all with SIGTERM, so each says goodbye to its
//! peers and flushes its peer store.
//!
//! The directories go in `--dir`, else `--home` (given on the command
//! line), else a temporary directory; each node's config starts from
//! `--config` if given (its own directory, key, ports, peers and reactors
//! are then set for the devnet), else from the defaults. Each node's output
//! goes to `node-i/node.log`, its pid to `node-i/node.pid`. A node that
//! exits on its own is reported and started again, up to three times (then
//! shown as down); the others keep running. A devnet in which a node
//! crashed exits with an error at the end and keeps its directory, even a
//! temporary one, so the logs it points at are there.
//!
//! The table of nodes: on a terminal it is redrawn in place every second
//! (ANSI cursor control: back to its first line, clear below, line wrap
//! off while it is drawn so each row stays one line), under the node list
//! and the `curl` hints, which stay visible; a node's crash or restart is
//! shown under the table. When standard output is not a terminal (a file,
//! a pipe), a plain table without escape codes is printed when its
//! contents change (the elapsed time aside), each under a `t=<s>s` line;
//! crashes and restarts go to standard error. Its columns are single
//! words separated by spaces: `node peer-id state peers known
//! ring-location ring-nbrs room-height listening`, `-` for what a node
//! did not answer.
//!
//! Every node runs every reactor: peer exchange; gossip, joined to the
//! topic `devnet` and the chat room `devnet` (admin: node 0; every node
//! holds the room's write key, written next to each node's key); and the
//! ring, with node 0 as its gateway.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use switchyard::api::Status;
use switchyard::config::{Config, RoomSection};
use switchyard::gossip::RoomEntry;
use switchyard::p2p::{Keypair, PeerAddress, PeerId};
use switchyard::ring::RingView;
use tokio::process::{Child, Command};

use crate::output::{self, OutputError, outln};

/// How long a node gets to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The gossip topic every devnet node joins.
const DEVNET_TOPIC: &str = "devnet";
/// The chat room every devnet node opens (and may write).
const DEVNET_ROOM: &str = "devnet";
/// The room's shared write key, in each node's data directory.
const ROOM_KEY_FILE: &str = "room_write_key.hex";

/// How many times a node that exits on its own is started again before it
/// is left down.
const MAX_RESTARTS: u32 = 3;

struct DevNode {
    peer: PeerId,
    home: PathBuf,
    config: PathBuf,
    tcp: SocketAddr,
    api: SocketAddr,
    /// `None` once it crashed more than [`MAX_RESTARTS`] times.
    child: Option<Child>,
    /// Times it exited on its own.
    crashes: u32,
}

impl DevNode {
    fn log(&self) -> PathBuf {
        self.home.join("node.log")
    }

    /// Starts (or restarts) the node's process, its output appended to
    /// its `node.log`, its pid in `node.pid`.
    fn spawn(&mut self, exe: &Path) -> anyhow::Result<()> {
        let log_path = self.log();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let child = Command::new(exe)
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("log file")?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.home.display()))?;
        if let Some(pid) = child.id() {
            let pid_path = self.home.join("node.pid");
            std::fs::write(&pid_path, format!("{pid}\n"))
                .with_context(|| format!("writing {}", pid_path.display()))?;
        }
        self.child = Some(child);
        Ok(())
    }
}

/// Writes a devnet node's config (commented, like `switchyard init`'s) and
/// returns where it is.
fn write_config(
    base: &Config,
    home: &Path,
    nodes: usize,
    tcp: SocketAddr,
    api: SocketAddr,
    bootstrap: Option<&PeerAddress>,
    room_admin: PeerId,
) -> anyhow::Result<PathBuf> {
    // The base config (`--config`, else the defaults) with what makes it a
    // devnet node: its own directory, key, ports and peers.
    let mut config = base.clone();
    config.data_dir = Some(home.to_path_buf());
    config.key_file = Config::default().key_file;
    config.transports.tcp.listen = tcp;
    config.api.listen = api;
    config.peers.bootstrap.extend(bootstrap.cloned());
    // Every node shares 127.0.0.1: take loopback addresses from peers, let
    // peer exchange hand out all of them, and let the bootstrap node take
    // every other node at once.
    config.peers.allow_private_addresses = true;
    config.peers.max_ports_per_host = config.peers.max_ports_per_host.max(nodes);
    config.peers.max_inbound = config.peers.max_inbound.max(nodes);
    config.peers.max_inbound_per_prefix = config.peers.max_inbound_per_prefix.max(nodes);
    config.limits.max_pending_handshakes_per_prefix =
        config.limits.max_pending_handshakes_per_prefix.max(nodes);
    config.transports.tcp.max_handshakes_per_prefix =
        config.transports.tcp.max_handshakes_per_prefix.max(nodes);
    config.reactors.gossip.topics = vec![DEVNET_TOPIC.into()];
    config.reactors.gossip.rooms = vec![RoomSection {
        name: DEVNET_ROOM.into(),
        admin: Some(room_admin.to_string()),
        write_key: None,
        write_key_file: Some(ROOM_KEY_FILE.into()),
    }];
    let ring = &mut config.reactors.ring;
    ring.enabled = true;
    ring.gateway = bootstrap.is_none();
    ring.gateways.extend(bootstrap.cloned());
    // One network (127.0.0.0/24) for every node: let it hold every link
    // and every location.
    let ring = &mut ring.config;
    ring.max_neighbors_per_prefix = ring.max_neighbors_per_prefix.max(nodes);
    ring.max_joins_per_prefix = ring.max_joins_per_prefix.max(nodes);
    config.validate()?;
    let text = format!(
        "# Written by `switchyard devnet`.\n\n{}",
        config.to_commented_toml()?
    );
    let path = home.join("config.toml");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// What `switchyard devnet` was asked for.
#[derive(Debug)]
pub struct Options {
    /// Number of nodes.
    pub nodes: usize,
    /// Node i listens on `base_port + 2i` (TCP) and `+ 1` (API).
    pub base_port: u16,
    /// Where the nodes' directories go (`--dir`, or `--home`); a fresh
    /// temporary directory if neither.
    pub dir: Option<PathBuf>,
    /// A config file every node's config starts from (`--config`).
    pub config: Option<PathBuf>,
    /// Stop after this many seconds (0: at Ctrl-C).
    pub seconds: u64,
}

/// Runs the devnet until Ctrl-C or `seconds` (0: no limit). A node that
/// exits on its own is reported and started again (up to
/// [`MAX_RESTARTS`] times, then left down); the others keep running. If
/// one did, the devnet fails at the end, keeping its directory (and the
/// logs in it) even when it was a temporary one.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let Options {
        nodes,
        base_port,
        dir,
        config,
        seconds,
    } = options;
    anyhow::ensure!(
        (1..=64).contains(&nodes),
        "--nodes must be between 1 and 64"
    );
    anyhow::ensure!(
        u32::from(base_port) + 2 * nodes as u32 <= 65535,
        "--base-port {base_port} leaves no room for {nodes} nodes"
    );
    let base = match &config {
        Some(path) => Config::load(path)?,
        None => Config {
            network_id: "switchyard-devnet".into(),
            ..Config::default()
        },
    };
    let mut temp = None;
    let root = match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            dir
        }
        None => temp
            .insert(tempfile::tempdir().context("creating a temporary directory")?)
            .path()
            .to_path_buf(),
    };
    let exe = std::env::current_exe().context("finding the switchyard executable")?;
    let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let mut bootstrap = None;
    let mut room_admin = None;
    let room_key = Keypair::load_or_generate(&root.join(ROOM_KEY_FILE))
        .context("the devnet room's write key")?;
    let mut running: Vec<DevNode> = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let home = root.join(format!("node-{i}"));
        std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
        let key_path = home.join("node_key.hex");
        let peer = Keypair::load_or_generate(&key_path)
            .context("node key")?
            .peer_id();
        let room_key_path = home.join(ROOM_KEY_FILE);
        room_key
            .save(&room_key_path)
            .with_context(|| format!("writing {}", room_key_path.display()))?;
        let admin = *room_admin.get_or_insert(peer);
        let tcp = loopback(base_port + 2 * i as u16);
        let api = loopback(base_port + 2 * i as u16 + 1);
        let config = write_config(&base, &home, nodes, tcp, api, bootstrap.as_ref(), admin)
            .with_context(|| format!("node {i}'s config"))?;
        if i == 0 {
            bootstrap = Some(PeerAddress::tcp(peer, tcp));
        }
        // A fresh log per devnet run; restarts append to it.
        let log = home.join("node.log");
        std::fs::write(&log, "").with_context(|| format!("creating {}", log.display()))?;
        let mut node = DevNode {
            peer,
            home,
            config,
            tcp,
            api,
            child: None,
            crashes: 0,
        };
        node.spawn(&exe)
            .with_context(|| format!("starting node {i}"))?;
        running.push(node);
    }
    // A failed write to standard output (`devnet | head -3`) stops the
    // devnet like Ctrl-C does: every node gets SIGTERM first.
    let mut screen = Screen::new(std::io::stdout().is_terminal());
    let watched = async {
        show_nodes(&running, &root)?;
        let started = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            tokio::select! {
                _ = &mut ctrl_c => return Ok(()),
                _ = tick.tick() => {}
            }
            for event in restart_crashed(&mut running, &exe) {
                screen.event(event);
            }
            let rows = table_rows(&running).await;
            screen.show(started.elapsed(), rows)?;
            if seconds > 0 && started.elapsed() >= Duration::from_secs(seconds) {
                return Ok(());
            }
        }
    };
    let watched: Result<(), OutputError> = watched.await;
    let clean = stop_all(&mut running).await;
    let crashes: u32 = running.iter().map(|n| n.crashes).sum();
    if crashes > 0 || !clean {
        // Keep the logs that say what happened.
        let root = temp.map_or(root, tempfile::TempDir::keep);
        watched?;
        let crashed: Vec<String> = running
            .iter()
            .enumerate()
            .filter(|(_, n)| n.crashes > 0)
            .map(|(i, n)| format!("node {i} ({} times)", n.crashes))
            .collect();
        if crashes > 0 {
            anyhow::bail!(
                "{} exited on its own; the logs are kept in {}",
                crashed.join(", "),
                root.display()
            );
        }
        anyhow::bail!(
            "some nodes did not stop cleanly; the logs are kept in {}",
            root.display()
        );
    }
    watched?;
    outln!("devnet stopped cleanly")?;
    Ok(())
}

/// Starts every node whose process has ended on its own again, up to
/// [`MAX_RESTARTS`] times (then it is left down); returns what happened,
/// a line each.
fn restart_crashed(nodes: &mut [DevNode], exe: &Path) -> Vec<String> {
    let mut events = Vec::new();
    for (i, node) in nodes.iter_mut().enumerate() {
        let Some(child) = node.child.as_mut() else {
            continue;
        };
        let status = match child.try_wait() {
            Ok(Some(status)) => status,
            Ok(None) => continue,
            Err(error) => {
                events.push(format!("node {i}: {error}"));
                continue;
            }
        };
        node.crashes += 1;
        node.child = None;
        let log = node.log();
        if node.crashes > MAX_RESTARTS {
            events.push(format!(
                "node {i} exited on its own ({status}) {} times; left down (log {})",
                node.crashes,
                log.display()
            ));
            continue;
        }
        events.push(format!(
            "node {i} exited on its own ({status}); starting it again ({} of {MAX_RESTARTS}; log {})",
            node.crashes,
            log.display()
        ));
        if let Err(error) = node.spawn(exe) {
            events.push(format!("node {i}: cannot start it again: {error:#}"));
        }
    }
    events
}

/// Prints where each node is and what to try.
fn show_nodes(running: &[DevNode], root: &Path) -> Result<(), OutputError> {
    let nodes = running.len();
    outln!(
        "switchyard devnet: {nodes} node processes on loopback, data in {} (Ctrl-C to stop)",
        root.display()
    )?;
    for (i, node) in running.iter().enumerate() {
        outln!(
            "  node {i}: {}  api http://{}  log {}",
            PeerAddress::tcp(node.peer, node.tcp),
            node.api,
            node.home.join("node.log").display()
        )?;
    }
    if let Some(first) = running.first() {
        outln!(
            "  try: curl -d 'hello' http://{api}/rooms/{DEVNET_ROOM}   (then GET it on any node)\n       \
             curl -N http://{api}/gossip/topics/{DEVNET_TOPIC}/messages   (and POST to it on another)\n       \
             curl http://{api}/ring",
            api = first.api
        )?;
    }
    Ok(())
}

/// The table's column names.
const COLUMNS: [&str; 9] = [
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

/// One row per node, a word per column of [`COLUMNS`].
async fn table_rows(nodes: &[DevNode]) -> Vec<[String; 9]> {
    let room_path = format!("/rooms/{DEVNET_ROOM}");
    let mut rows = Vec::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        let dash = || "-".to_string();
        if node.child.is_none() {
            rows.push([
                i.to_string(),
                node.peer.short(),
                format!("down({})", node.crashes),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                node.tcp.to_string(),
            ]);
            continue;
        }
        let status = crate::client::get::<Status>(node.api, "/status").await;
        let (peers, known) = match &status {
            Ok(s) => (
                (s.inbound_peers + s.outbound_peers).to_string(),
                s.known_peers.to_string(),
            ),
            Err(_) => (dash(), dash()),
        };
        let ring = crate::client::get::<RingView>(node.api, "/ring").await;
        let (location, neighbors) = match &ring {
            Ok(r) => (
                // Six decimals are plenty to tell nodes apart.
                r.location
                    .as_deref()
                    .map_or_else(|| "joining".to_string(), |l| l.chars().take(8).collect()),
                r.neighbors.len().to_string(),
            ),
            Err(_) => (dash(), dash()),
        };
        let height = match crate::client::get::<RoomEntry>(node.api, &room_path).await {
            Ok(room) => room.height.to_string(),
            Err(_) => dash(),
        };
        let state = match (&status, node.crashes) {
            (Err(_), _) => "starting".to_string(),
            (Ok(_), 0) => "up".to_string(),
            (Ok(_), n) => format!("up({n})"),
        };
        rows.push([
            i.to_string(),
            node.peer.short(),
            state,
            peers,
            known,
            location,
            neighbors,
            height,
            node.tcp.to_string(),
        ]);
    }
    rows
}

/// The table as aligned lines: the column names, then a line per row.
fn render_table(rows: &[[String; 9]]) -> String {
    let mut widths = COLUMNS.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.zip(widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            if i + 1 < COLUMNS.len() {
                text.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
            }
        }
        text.push('\n');
        text
    };
    let mut out = line(&mut COLUMNS.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// ANSI: back to the start of the line `n` lines up (CPL).
fn cursor_up(n: usize) -> String {
    format!("\x1b[{n}F")
}
/// ANSI: clear from the cursor to the end of the screen (ED).
const CLEAR_BELOW: &str = "\x1b[J";
/// ANSI: no line wrap while the table is drawn, so a row wider than the
/// terminal stays one line (and the redraw goes back the right number of
/// lines); wrap on again after it (DECAWM).
const WRAP_OFF: &str = "\x1b[?7l";
const WRAP_ON: &str = "\x1b[?7h";

/// How many crash and restart lines a terminal shows under the table.
const EVENTS_SHOWN: usize = 5;

/// Where the table goes: redrawn in place on a terminal, printed plain on
/// change otherwise.
struct Screen {
    tty: bool,
    /// Lines of the last frame drawn (terminal).
    drawn: usize,
    /// The last rows printed (not a terminal).
    last: Option<Vec<[String; 9]>>,
    /// The latest crash and restart lines (terminal).
    events: VecDeque<String>,
}

impl Screen {
    fn new(tty: bool) -> Self {
        Self {
            tty,
            drawn: 0,
            last: None,
            events: VecDeque::new(),
        }
    }

    /// A crash or restart: under the table on a terminal (so the redraw
    /// stays in place), else on standard error.
    fn event(&mut self, line: String) {
        if self.tty {
            if self.events.len() == EVENTS_SHOWN {
                self.events.pop_front();
            }
            self.events.push_back(line);
        } else {
            output::error_line(format_args!("{line}"));
        }
    }

    /// Shows the table at `elapsed`.
    fn show(&mut self, elapsed: Duration, rows: Vec<[String; 9]>) -> Result<(), OutputError> {
        let frame = if self.tty {
            let frame = self.frame(elapsed, &rows);
            self.drawn = frame.matches('\n').count();
            frame
        } else {
            if self.last.as_ref() == Some(&rows) {
                return Ok(());
            }
            let text = format!("\nt={}s\n{}", elapsed.as_secs(), render_table(&rows));
            self.last = Some(rows);
            text
        };
        output::text(&frame)
    }

    /// The terminal frame: back over the last one, then the table and the
    /// latest events.
    fn frame(&self, elapsed: Duration, rows: &[[String; 9]]) -> String {
        let mut frame = String::new();
        if self.drawn > 0 {
            frame.push_str(&cursor_up(self.drawn));
        }
        frame.push_str(CLEAR_BELOW);
        frame.push_str(WRAP_OFF);
        frame.push_str(&format!("\nt={}s\n", elapsed.as_secs()));
        frame.push_str(&render_table(rows));
        for event in &self.events {
            frame.push_str(event);
            frame.push('\n');
        }
        frame.push_str(WRAP_ON);
        frame
    }
}

/// Sends SIGTERM to every node, waits for each to exit (killing it after
/// [`STOP_GRACE`]), and says whether all exited successfully.
async fn stop_all(nodes: &mut [DevNode]) -> bool {
    for node in nodes.iter() {
        if let Some(pid) = node
            .child
            .as_ref()
            .and_then(Child::id)
            .and_then(|id| i32::try_from(id).ok())
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    let mut clean = true;
    for (i, node) in nodes.iter_mut().enumerate() {
        let Some(child) = node.child.as_mut() else {
            continue;
        };
        match tokio::time::timeout(STOP_GRACE, child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            // Stopped by our SIGTERM before it installed its handler (a
            // devnet stopped as it starts): stopped as asked.
            Ok(Ok(status)) if status.signal() == Some(Signal::SIGTERM as i32) => {}
            Ok(Ok(status)) => {
                output::error_line(format_args!("node {i} exited with {status}"));
                clean = false;
            }
            Ok(Err(error)) => {
                output::error_line(format_args!("node {i}: {error}"));
                clean = false;
            }
            Err(_) => {
                output::error_line(format_args!(
                    "node {i} did not stop within {STOP_GRACE:?}; killing it"
                ));
                let _ = child.kill().await;
                clean = false;
            }
        }
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: usize, peers: &str) -> [String; 9] {
        [
            i.to_string(),
            "abcdefgh".into(),
            "up".into(),
            peers.into(),
            "3".into(),
            "0.123456".into(),
            "2".into(),
            "0".into(),
            "127.0.0.1:27100".into(),
        ]
    }

    #[test]
    fn the_table_is_aligned_words() {
        let text = render_table(&[row(0, "3"), row(10, "12")]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), COLUMNS);
        for line in &lines[1..] {
            assert_eq!(line.split_whitespace().count(), COLUMNS.len(), "{line}");
        }
        // Aligned: every column starts where its name does.
        let at = lines[0].find("peers").expect("peers");
        assert_eq!(&lines[2][at..at + 2], "12");
    }

    #[test]
    fn a_terminal_frame_redraws_over_the_last_one() {
        let mut screen = Screen::new(true);
        let first = screen.frame(Duration::from_secs(1), &[row(0, "1")]);
        assert!(!first.contains("\x1b[1F"), "nothing to go back over");
        screen.drawn = first.matches('\n').count();
        screen.event("node 0 exited on its own".into());
        let second = screen.frame(Duration::from_secs(2), &[row(0, "1")]);
        assert!(
            second.starts_with(&format!("\x1b[{}F\x1b[J", screen.drawn)),
            "{second:?}"
        );
        assert!(second.contains("node 0 exited on its own"));
        assert!(second.contains(WRAP_OFF) && second.ends_with(WRAP_ON));
    }
}
