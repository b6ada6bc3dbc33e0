//! What an operator of real `switchyard` processes sees and can do: the log
//! lines that tell what happens, the refusals counted by cause.

mod common;

use common::{Proc, config, config_on, free_port_range, sample, wait_for_log};
use switchyard::p2p::Keypair;

/// The lines of `log` that contain every one of `words`.
fn lines_with<'a>(log: &'a str, words: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .collect()
}

#[test]
fn the_log_tells_of_peers_wrong_networks_wrong_keys_and_unreachable_bootstrap_peers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a_log = dir.path().join("a.log");
    let a = Proc::start_logged(&config(&dir.path().join("a"), &[], ""), "info", &a_log);
    let (_, a_host) = a.tcp.split_once('@').expect("peer@host");

    // B is on another network and bootstraps from A, from a name that does
    // not resolve and from a port where nobody listens.
    let ghost = Keypair::from_seed(99).peer_id();
    let closed = free_port_range(1);
    let unresolvable = format!("tcp://{ghost}@no-such-host.invalid:26656");
    let unreachable = format!("tcp://{ghost}@127.0.0.1:{closed}");
    let b_log = dir.path().join("b.log");
    let b = Proc::start_logged(
        &config_on(
            "another-network",
            &dir.path().join("b"),
            &[&a.tcp, &unresolvable, &unreachable],
            "",
        ),
        "info",
        &b_log,
    );
    let log = wait_for_log(&b_log, "cannot resolve");
    assert!(
        !lines_with(&log, &["WARN", "dial failed", "no-such-host.invalid"]).is_empty(),
        "{log}"
    );
    let log = wait_for_log(&b_log, &format!("127.0.0.1:{closed}"));
    assert!(
        !lines_with(
            &log,
            &["WARN", "dial failed", &format!("127.0.0.1:{closed}")]
        )
        .is_empty(),
        "{log}"
    );
    let log = wait_for_log(&b_log, "another network id");
    assert!(
        !lines_with(&log, &["WARN", "dial failed", "another network id"]).is_empty(),
        "{log}"
    );
    // The listener tells it and counts it under its own reason.
    let log = wait_for_log(&a_log, "from another network id");
    assert!(
        !lines_with(&log, &["WARN", "from another network id"]).is_empty(),
        "{log}"
    );
    let metrics = a.get_text("/metrics");
    let series =
        |reason: &str| format!("switchyard_p2p_handshakes_refused_total{{reason=\"{reason}\"}}");
    assert!(
        sample(&metrics, &series("network_mismatch")) >= 1,
        "{metrics}"
    );
    assert_eq!(sample(&metrics, &series("accept_error")), 0, "{metrics}");

    // C is on A's network and knows A under its right key and a wrong one.
    let wrong_key = format!("tcp://{ghost}@{a_host}");
    let c_log = dir.path().join("c.log");
    let c = Proc::start_logged(
        &config(&dir.path().join("c"), &[&a.tcp, &wrong_key], ""),
        "info",
        &c_log,
    );
    let log = wait_for_log(&c_log, "answered");
    assert!(
        !lines_with(
            &log,
            &["WARN", "dial failed", &ghost.to_string(), "answered"]
        )
        .is_empty(),
        "{log}"
    );
    let log = wait_for_log(&a_log, &format!("peer={}", c.peer_id));
    assert!(
        !lines_with(&log, &["INFO", "peer up", &c.peer_id]).is_empty(),
        "{log}"
    );
    let c_id = c.peer_id.clone();
    assert!(c.stop());
    // A hears C's goodbye, and says why C is gone.
    let log = wait_for_log(&a_log, "peer down");
    let down = lines_with(&log, &["INFO", "peer down", &c_id]);
    assert!(
        down.iter()
            .any(|l| l.contains("goodbye") && l.contains("Shutdown")),
        "{log}"
    );
    assert!(b.stop());
    assert!(a.stop());
}

#[test]
fn a_ban_holds_across_a_restart_and_the_cli_manages_bans() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a_home = dir.path().join("a");
    let b_home = dir.path().join("b");
    let a = Proc::start(&config(&a_home, &[], ""));
    let b = Proc::start(&config(&b_home, &[&a.tcp], ""));
    common::wait_until("b to connect to a", || a.peers() == vec![b.peer_id.clone()]);
    let api = a.api.to_string();

    let (ok, stdout, stderr) = common::cli(&["ban", &b.peer_id, "--for", "1h", "--api", &api]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("banned") && stdout.contains("3600"),
        "{stdout}"
    );
    common::wait_until("a to drop b", || a.peers().is_empty());
    // An absurd ban is refused with the limit, in one line.
    let (ok, _, stderr) =
        common::cli(&["ban", &b.peer_id, "--for", "99999999999999h", "--api", &api]);
    assert!(!ok);
    assert!(stderr.contains("longest ban"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // Both restart; b redials a at once (its backoff is not stored), and
    // a, which kept the ban in its peer store, refuses it.
    assert!(b.stop());
    assert!(a.stop());
    let a = Proc::start(&config(&a_home, &[], ""));
    let api = a.api.to_string();
    let (ok, stdout, stderr) = common::cli(&["bans", "--api", &api]);
    assert!(ok, "{stderr}");
    let b = Proc::start(&config(&b_home, &[&a.tcp], ""));
    assert!(
        stdout.contains(&b.peer_id) && stdout.contains("1 bans"),
        "{stdout}"
    );
    common::wait_until("a to refuse the banned b after its restart", || {
        sample(
            &a.get_text("/metrics"),
            "switchyard_p2p_handshakes_refused_total{reason=\"banned\"}",
        ) >= 1
    });
    assert!(a.peers().is_empty());

    let (ok, stdout, stderr) = common::cli(&["unban", &b.peer_id, "--api", &api]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("lifted"), "{stdout}");
    let (ok, stdout, _) = common::cli(&["bans", "--api", &api]);
    assert!(ok && stdout.contains("0 bans"), "{stdout}");
    let (ok, _, stderr) = common::cli(&["unban", &b.peer_id, "--api", &api]);
    assert!(!ok && stderr.contains("not banned"), "{stderr}");
    assert!(b.stop());
    assert!(a.stop());
}

#[test]
fn a_node_on_0_0_0_0_announces_its_external_address_and_no_peer_stores_the_unspecified_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port_range(1);
    // A listens on every interface and says where it is reached.
    let a_config = config(
        &dir.path().join("a"),
        &[],
        &format!("\n[p2p]\nexternal_addresses = [\"tcp://127.0.0.1:{port}\"]\n"),
    );
    let text = std::fs::read_to_string(&a_config).expect("config").replace(
        "[transports.tcp]\nlisten = \"127.0.0.1:0\"",
        &format!("[transports.tcp]\nlisten = \"0.0.0.0:{port}\""),
    );
    assert!(text.contains(&format!("0.0.0.0:{port}")), "{text}");
    std::fs::write(&a_config, text).expect("config");
    let a = Proc::start(&a_config);
    let external = format!("tcp://{}@127.0.0.1:{port}", a.peer_id);
    let status: switchyard::api::Status = a.get("/status");
    assert_eq!(status.announced_addresses, vec![external.clone()]);
    assert!(status.listen_addresses[0].contains("0.0.0.0"), "{status:?}");

    // B learns A's announced address from its Hello.
    let b = Proc::start(&config(&dir.path().join("b"), &[&external], ""));
    common::wait_until("b to connect to a", || b.peers() == vec![a.peer_id.clone()]);
    let peers: Vec<switchyard::api::PeerEntry> = b.get("/peers");
    assert_eq!(peers[0].listen_addresses, vec![external.clone()]);

    // C listens on every interface and says nothing: it announces its
    // port on 0.0.0.0, A stores the IP it observed instead (peer
    // exchange), and `id` warns.
    let c_config = config(&dir.path().join("c"), &[&external], "");
    let text = std::fs::read_to_string(&c_config).expect("config").replace(
        "[transports.tcp]\nlisten = \"127.0.0.1:0\"",
        "[transports.tcp]\nlisten = \"0.0.0.0:0\"",
    );
    assert!(text.contains("0.0.0.0:0"), "{text}");
    std::fs::write(&c_config, text).expect("config");
    let c = Proc::start(&c_config);
    let status: switchyard::api::Status = c.get("/status");
    assert_eq!(status.announced_addresses, status.listen_addresses);
    common::wait_until("a to see c", || a.peers().contains(&c.peer_id));
    common::wait_until("b to learn an address by peer exchange", || {
        b.get_text("/metrics")
            .lines()
            .any(|l| l.starts_with("switchyard_pex_addresses_learned_total") && !l.ends_with(" 0"))
    });
    let refused = b.get_text("/metrics");
    assert_eq!(
        sample(
            &refused,
            "switchyard_p2p_addresses_refused_total{reason=\"unspecified\"}"
        ),
        0,
        "an unspecified address reached the address book's screen: {refused}"
    );
    let (ok, stdout, stderr) = common::cli(&["--config", c_config.to_str().expect("utf-8"), "id"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("0.0.0.0") && stderr.contains("external_addresses"),
        "{stderr}"
    );
    for node in [c, b, a] {
        assert!(node.stop());
    }
}
