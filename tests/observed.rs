//! Addresses peers observe for us (issue 17, "An announce address"): a
//! node on `0.0.0.0` announces the IP its peers agree they see it at,
//! once `observed_quorum` distinct networks agree. On loopback every peer
//! is one network (127.0.0.0/24), so one node asks for a quorum of 1 and
//! another keeps the default 3.

mod common;

use common::{Proc, config, free_port_range, sample, wait_until};
use switchyard::api::Status;

/// A config in `home` listening on `0.0.0.0:port` with `pex` settings.
fn wildcard(
    home: &std::path::Path,
    port: u16,
    bootstrap: &[&str],
    pex: &str,
) -> std::path::PathBuf {
    let path = config(home, bootstrap, "");
    let text = std::fs::read_to_string(&path)
        .expect("config")
        .replace(
            "[transports.tcp]\nlisten = \"127.0.0.1:0\"",
            &format!("[transports.tcp]\nlisten = \"0.0.0.0:{port}\""),
        )
        .replace("[reactors.pex]\n", &format!("[reactors.pex]\n{pex}"));
    assert!(text.contains(&format!("0.0.0.0:{port}")), "{text}");
    std::fs::write(&path, text).expect("config");
    path
}

#[test]
fn a_node_announces_the_ip_enough_networks_observe_and_one_network_is_not_enough() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_port_range(2);
    let a = Proc::start(&wildcard(
        &dir.path().join("a"),
        base,
        &[],
        "observed_quorum = 1\n",
    ));
    let status: Status = a.get("/status");
    assert_eq!(status.announced_addresses, status.listen_addresses);
    let a_loopback = format!("tcp://{}@127.0.0.1:{base}", a.peer_id);
    // b is on loopback: it sees a's connection come from 127.0.0.1, and
    // says so in its answer to a's request.
    let b = Proc::start(&config(&dir.path().join("b"), &[&a_loopback], ""));
    wait_until("a to announce the IP b observes", || {
        a.get::<Status>("/status")
            .announced_addresses
            .contains(&a_loopback)
    });
    let status: Status = a.get("/status");
    assert_eq!(status.announced_addresses[0], a_loopback);
    assert!(
        status.announced_addresses[1..] == status.listen_addresses[..],
        "{status:?}"
    );
    let metrics = a.get_text("/metrics");
    assert_eq!(
        sample(
            &metrics,
            "switchyard_pex_observed_address{ip=\"127.0.0.1\"}"
        ),
        1,
        "{metrics}"
    );

    // c keeps the default quorum of 3: its observers (a, b) are all in one
    // network, so it announces only its listen address.
    let c = Proc::start(&wildcard(
        &dir.path().join("c"),
        base + 1,
        &[&a_loopback],
        "",
    ));
    wait_until("c to take an observation", || {
        sample(
            &c.get_text("/metrics"),
            "switchyard_pex_observations_taken_total",
        ) >= 1
    });
    let status: Status = c.get("/status");
    assert_eq!(status.announced_addresses, status.listen_addresses);
    let metrics = c.get_text("/metrics");
    assert_eq!(
        sample(&metrics, "switchyard_pex_observed_address{ip=\"\"}"),
        0,
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_pex_observed_address{ip=\"\"} 0"),
        "{metrics}"
    );
    for node in [c, b, a] {
        assert!(node.stop());
    }
}
