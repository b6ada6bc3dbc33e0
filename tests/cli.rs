//! The `switchyard` command line as a user meets it: what it prints, where,
//! and how it exits when its output goes nowhere.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{EXE, PATIENCE, free_port_range};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `switchyard --home <home> init`, which must succeed.
fn init(home: &Path) {
    let out = Command::new(EXE)
        .arg("--home")
        .arg(home)
        .arg("init")
        .output()
        .expect("run switchyard init");
    assert!(out.status.success(), "init failed: {out:?}");
}

/// A pipe whose reading end is already closed: the first write to it
/// fails with `EPIPE`, as after `| head -1` has exited.
fn closed_pipe() -> Stdio {
    let (reader, writer) = nix::unistd::pipe().expect("pipe");
    drop(reader);
    Stdio::from(writer)
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A config for a loopback node with its API on `api`.
fn node_config(home: &Path, api: u16, extra: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(home).expect("home");
    let text = format!(
        "data_dir = {home:?}\nnetwork_id = \"cli\"\n\n[transports.tcp]\nlisten = \"127.0.0.1:0\"\n\n[api]\nlisten = \"127.0.0.1:{api}\"\n{extra}",
        home = home.display().to_string(),
    );
    let path = home.join("config.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Waits for `child` to exit; its status code.
fn wait_exit(child: &mut std::process::Child) -> Option<i32> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm(child: &std::process::Child) {
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    kill(pid, Signal::SIGTERM).expect("SIGTERM");
}

/// Runs a node from `config` until its API on `api` answers, stops it with
/// SIGTERM, and returns its exit code, stdout and stderr.
fn run_node(config: &Path, api: u16) -> (Option<i32>, String, String) {
    let mut child = Command::new(EXE)
        .arg("--config")
        .arg(config)
        .arg("run")
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchyard run");
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", api)).is_err() {
        if child.try_wait().expect("wait").is_some() {
            let out = child.wait_with_output().expect("output");
            panic!("the node exited: {out:?}");
        }
        assert!(Instant::now() < deadline, "the node's API never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    sigterm(&child);
    let code = wait_exit(&mut child);
    let out = child.wait_with_output().expect("output");
    (
        code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr_of(&out),
    )
}

/// Every line of `text` as a JSON object; panics on a line that is not.
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\n{text}"));
            assert!(value.is_object(), "{line}");
            value
        })
        .collect()
}

/// The JSON event whose message is `message`.
fn event<'a>(events: &'a [serde_json::Value], message: &str) -> &'a serde_json::Value {
    events
        .iter()
        .find(|e| e["fields"]["message"] == message)
        .unwrap_or_else(|| panic!("no {message:?} event in {events:?}"))
}

#[test]
fn logs_go_to_stderr_without_colour_when_it_is_not_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = free_port_range(1);
    let config = node_config(&dir.path().join("n1"), api, "");
    let (code, stdout, stderr) = run_node(&config, api);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("node running"), "{stderr}");
    assert!(
        !stdout.contains("node running"),
        "a log line on stdout: {stdout}"
    );
    assert!(stdout.starts_with("switchyard node "), "{stdout}");
    assert!(stdout.contains("stopped (SIGTERM)"), "{stdout}");
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI escape codes in logs that are not on a terminal: {stderr:?}"
    );
}

#[test]
fn json_logs_are_pure_json_with_plain_field_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = free_port_range(1);
    let config = node_config(&dir.path().join("n1"), api, "\n[log]\nformat = \"json\"\n");
    let (code, stdout, stderr) = run_node(&config, api);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "", "plain lines beside JSON logs");
    let events = json_lines(&stderr);
    let running = &event(&events, "node running")["fields"];
    assert_eq!(running["api"], format!("127.0.0.1:{api}"), "{running}");
    let listen = running["listen"].as_str().expect("listen is a string");
    assert!(
        listen.starts_with("tcp://") && listen.contains("@127.0.0.1:"),
        "{listen}"
    );
    event(&events, "node stopped");
    // No field anywhere holds Rust debug text.
    for line in stderr.lines() {
        assert!(
            !line.contains("Some(") && !line.contains("[\\\""),
            "debug text in a log field: {line}"
        );
    }

    // A node that cannot start says why, in JSON too.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let config = node_config(&dir.path().join("n2"), port, "\n[log]\nformat = \"json\"\n");
    let out = Command::new(EXE)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("RUST_LOG", "info")
        .output()
        .expect("run switchyard");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let events = json_lines(&stderr_of(&out));
    let last = events.last().expect("an error event");
    assert_eq!(last["level"], "ERROR", "{last}");
    let error = last["fields"]["error"].as_str().expect("error field");
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
}

#[test]
fn a_full_disk_on_stdout_is_a_one_line_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("n1");
    init(&home);
    let full = std::fs::File::create("/dev/full").expect("/dev/full");
    let out = Command::new(EXE)
        .arg("--home")
        .arg(&home)
        .arg("id")
        .stdout(full)
        .output()
        .expect("run switchyard id");
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    assert!(
        stderr.starts_with("error: writing to standard output:")
            && stderr.contains("No space left on device"),
        "{stderr}"
    );
}

#[test]
fn a_closed_pipe_on_stdout_exits_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("n1");
    init(&home);
    let out = Command::new(EXE)
        .arg("--home")
        .arg(&home)
        .arg("id")
        .stdout(closed_pipe())
        .output()
        .expect("run switchyard id");
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(stderr_of(&out), "", "EPIPE must be quiet");
}

#[test]
fn a_node_whose_stdout_reader_left_runs_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = free_port_range(1);
    let config = node_config(&dir.path().join("n1"), api, "");
    let mut child = Command::new(EXE)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchyard run");
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", api)).is_err() {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            panic!("the node exited ({status}): {}", stderr_of(&out));
        }
        assert!(Instant::now() < deadline, "the node's API never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    sigterm(&child);
    let code = wait_exit(&mut child);
    let out = child.wait_with_output().expect("output");
    let stderr = stderr_of(&out);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Unable to write"), "{stderr}");
}

#[test]
fn a_devnet_whose_reader_left_stops_its_nodes_and_exits_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_range(2);
    let out = Command::new(EXE)
        .args(["devnet", "--nodes", "1", "--seconds", "30", "--base-port"])
        .arg(base.to_string())
        .arg("--dir")
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(closed_pipe())
        .output()
        .expect("run devnet");
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(stderr_of(&out), "");
    // The node was stopped, not left behind: its port is free again.
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", base)).is_ok(),
        "node 0 still holds its port"
    );
}

/// Runs `switchyard --config <config> run`, which must fail; its stderr.
fn failed_run(config: &Path) -> String {
    let out = Command::new(EXE)
        .arg("--config")
        .arg(config)
        .arg("run")
        .env("RUST_LOG", "off")
        .output()
        .expect("run switchyard");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    stderr_of(&out)
}

#[test]
fn startup_errors_say_the_os_error_once_and_name_the_right_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let api = free_port_range(1);

    // [metrics] listen on a busy port: named as the metrics server.
    let config = node_config(
        &dir.path().join("metrics"),
        api,
        &format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let stderr = failed_run(&config);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(
        stderr.matches("Address already in use").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("metrics.listen") && stderr.contains("metrics server"),
        "{stderr}"
    );
    assert!(!stderr.contains("HTTP API"), "{stderr}");

    // The TCP port.
    let home = dir.path().join("tcp");
    let config = node_config(&home, api, "");
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(&config, text).expect("config");
    let stderr = failed_run(&config);
    assert_eq!(
        stderr.matches("Address already in use").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("transports.tcp.listen"), "{stderr}");

    // A room's missing write key file.
    let home = dir.path().join("room");
    let config = node_config(
        &home,
        api,
        "\n[[reactors.gossip.rooms]]\nname = \"r\"\nwrite_key_file = \"missing.hex\"\n",
    );
    let stderr = failed_run(&config);
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("missing.hex").count(), 1, "{stderr}");
    assert!(stderr.contains("write_key_file"), "{stderr}");
}

#[test]
fn id_on_a_missing_home_says_so_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("nope");
    let out = Command::new(EXE)
        .arg("--home")
        .arg(&home)
        .arg("id")
        .output()
        .expect("run switchyard id");
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("does not exist") && stderr.contains("init"),
        "{stderr}"
    );
    assert!(!home.exists(), "id created the home");

    // A home without a key: no key is made either.
    std::fs::create_dir_all(&home).expect("home");
    let out = Command::new(EXE)
        .arg("--home")
        .arg(&home)
        .arg("id")
        .output()
        .expect("run switchyard id");
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no node key"), "{stderr}");
    assert_eq!(std::fs::read_dir(&home).expect("read").count(), 0);

    // After init, id prints the key's PeerId.
    init(&home);
    let out = Command::new(EXE)
        .arg("--home")
        .arg(&home)
        .arg("id")
        .output()
        .expect("run switchyard id");
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty());
}

#[test]
fn log_flags_override_the_config_and_status_and_peers_speak_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = free_port_range(1);
    // Text logs in the file, and a room without an admin.
    let config = node_config(
        &dir.path().join("n1"),
        api,
        "\n[[reactors.gossip.rooms]]\nname = \"lobby\"\n",
    );
    let mut child = Command::new(EXE)
        .arg("--config")
        .arg(&config)
        .args(["--log-format", "json", "--log-level", "info", "run"])
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchyard run");
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", api)).is_err() {
        assert!(child.try_wait().expect("wait").is_none(), "the node exited");
        assert!(Instant::now() < deadline, "the node's API never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let api_arg = format!("127.0.0.1:{api}");
    let status = Command::new(EXE)
        .args(["status", "--json", "--api", &api_arg])
        .output()
        .expect("status");
    let status: serde_json::Value =
        serde_json::from_slice(&status.stdout).expect("status --json is JSON");
    assert_eq!(status["network_id"], "cli", "{status}");
    let peers = Command::new(EXE)
        .args(["peers", "--json", "--api", &api_arg])
        .output()
        .expect("peers");
    let peers: serde_json::Value =
        serde_json::from_slice(&peers.stdout).expect("peers --json is JSON");
    assert!(peers.is_array(), "{peers}");
    sigterm(&child);
    assert_eq!(wait_exit(&mut child), Some(0));
    let out = child.wait_with_output().expect("output");
    // --log-format json won over the file, --log-level info over RUST_LOG.
    let events = json_lines(&stderr_of(&out));
    event(&events, "node running");
    let warning = events
        .iter()
        .find(|e| {
            e["level"] == "WARN"
                && e["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("without admin"))
        })
        .unwrap_or_else(|| panic!("no warning about the room's admin: {events:?}"));
    assert_eq!(warning["fields"]["room"], "lobby");
}

#[test]
fn completions_name_every_subcommand_and_option() {
    let out = Command::new(EXE)
        .args(["completions", "bash"])
        .output()
        .expect("run switchyard completions");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let script = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(script.contains("complete -F _switchyard"), "{script}");
    for word in [
        "init",
        "run",
        "id",
        "devnet",
        "testnet",
        "status",
        "peers",
        "ban",
        "unban",
        "bans",
        "completions",
        "--home",
        "--log-format",
    ] {
        assert!(
            script
                .split(|c: char| c.is_whitespace() || c == '"')
                .any(|w| w == word),
            "{word} is not completed:\n{script}"
        );
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = Command::new(EXE)
            .args(["completions", shell])
            .output()
            .expect("run switchyard completions");
        assert!(out.status.success(), "{shell}: {}", stderr_of(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("devnet"),
            "{shell}"
        );
    }
    let out = Command::new(EXE)
        .args(["completions", "tcsh"])
        .output()
        .expect("run switchyard completions");
    assert!(!out.status.success(), "an unknown shell is refused");
}
