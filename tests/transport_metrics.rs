//! The per-transport metrics of a running node, over real TCP and QUIC on
//! loopback: `handshakes_total{transport, outcome}`,
//! `transport_bytes_{sent,received}_total{transport}` and
//! `connections{transport}` move with what the node does on each transport.

mod common;

use std::path::Path;

use common::{Proc, config, config_on, sample, wait_until};
use switchyard::api::Status;

const QUIC: &str = "\n[transports.quic]\nenabled = true\nlisten = \"127.0.0.1:0\"\n";

/// A config with only QUIC (TCP off) in `home`.
fn quic_only(network: &str, home: &Path, bootstrap: &[&str]) -> std::path::PathBuf {
    let path = config_on(network, home, bootstrap, QUIC);
    let text = std::fs::read_to_string(&path).expect("config");
    let text = text.replace(
        "[transports.tcp]\nlisten = \"127.0.0.1:0\"",
        "[transports.tcp]\nenabled = false",
    );
    assert!(text.contains("enabled = false"), "{text}");
    std::fs::write(&path, text).expect("config");
    path
}

fn series(name: &str, labels: &str) -> String {
    format!("switchyard_p2p_{name}{{{labels}}}")
}

fn handshakes(metrics: &str, transport: &str, outcome: &str) -> u64 {
    sample(
        metrics,
        &series(
            "handshakes_total",
            &format!("transport=\"{transport}\",outcome=\"{outcome}\""),
        ),
    )
}

fn per_transport(metrics: &str, name: &str, transport: &str) -> u64 {
    sample(
        metrics,
        &series(name, &format!("transport=\"{transport}\"")),
    )
}

#[test]
fn handshakes_bytes_and_connections_are_counted_per_transport() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Proc::start(&config(&dir.path().join("hub"), &[], QUIC));
    let status: Status = hub.get("/status");
    let listening = |scheme: &str| {
        status
            .listen_addresses
            .iter()
            .find(|a| a.starts_with(scheme))
            .unwrap_or_else(|| panic!("the hub listens on {scheme}"))
            .clone()
    };
    let (hub_tcp, hub_quic) = (listening("tcp://"), listening("quic://"));
    // Declared at start: both transports' series are there at zero.
    let metrics = hub.get_text("/metrics");
    for transport in ["tcp", "quic"] {
        for line in [
            format!(
                "{} 0",
                series("connections", &format!("transport=\"{transport}\""))
            ),
            format!(
                "{} 0",
                series(
                    "handshakes_total",
                    &format!("transport=\"{transport}\",outcome=\"ok\"")
                )
            ),
            format!(
                "{} 0",
                series(
                    "transport_bytes_sent_total",
                    &format!("transport=\"{transport}\"")
                )
            ),
        ] {
            assert!(metrics.contains(&line), "{line} missing: {metrics}");
        }
    }
    assert!(
        !metrics.contains("transport=\"memory\""),
        "only the node's transports are declared"
    );

    // One peer over TCP, one over QUIC (its TCP off, so it can only use
    // QUIC).
    let over_tcp = Proc::start(&config(&dir.path().join("tcp"), &[&hub_tcp], ""));
    let over_quic = Proc::start(&quic_only("e2e", &dir.path().join("quic"), &[&hub_quic]));
    wait_until(
        "one connection on each transport, with bytes both ways",
        || {
            let m = hub.get_text("/metrics");
            ["tcp", "quic"].iter().all(|t| {
                per_transport(&m, "connections", t) == 1
                    && handshakes(&m, t, "ok") >= 1
                    && per_transport(&m, "transport_bytes_sent_total", t) > 0
                    && per_transport(&m, "transport_bytes_received_total", t) > 0
            })
        },
    );

    // A node of another network is refused on each transport, counted
    // under the transport and under the reason.
    let stranger_home = dir.path().join("stranger");
    let stranger = Proc::start(&config_on(
        "another-network",
        &stranger_home,
        &[&hub_tcp, &hub_quic],
        QUIC,
    ));
    wait_until("a network mismatch on each transport", || {
        let m = hub.get_text("/metrics");
        handshakes(&m, "tcp", "network_mismatch") >= 1
            && handshakes(&m, "quic", "network_mismatch") >= 1
    });
    assert!(stranger.stop());
    // Summed over the transports, the outcome is the reason's count.
    wait_until(
        "handshakes_total to add up to handshakes_refused_total",
        || {
            let m = hub.get_text("/metrics");
            let refused = sample(
                &m,
                &series("handshakes_refused_total", "reason=\"network_mismatch\""),
            );
            refused
                == handshakes(&m, "tcp", "network_mismatch")
                    + handshakes(&m, "quic", "network_mismatch")
        },
    );

    // The QUIC peer leaves: its transport's gauge goes back to zero, the
    // TCP one stays.
    assert!(over_quic.stop());
    wait_until("the QUIC connection to be gone", || {
        let m = hub.get_text("/metrics");
        per_transport(&m, "connections", "quic") == 0
            && per_transport(&m, "connections", "tcp") == 1
    });
    assert!(over_tcp.stop());
    assert!(hub.stop());
}
