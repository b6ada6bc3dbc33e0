//! Attacks on a running `switchyard` node before admission, reproduced as
//! the security review ran them (issue 14, item 3): an independent Noise
//! client on loopback, against a node process, from source addresses of
//! other /24 networks (the whole of 127.0.0.0/8 reaches loopback).
//!
//! - Idle connections that finished Noise under fresh keys, from one
//!   network, must not take every pre-admission slot: honest handshakes
//!   from another network still receive the node's `Hello`.
//! - `Hello` frames announced at 16 MiB must be refused from their length
//!   (at most 64 KiB is read before admission), so the node's memory does
//!   not grow with them.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use common::noise::NoiseClient;
use common::{Proc, config, rss, wait_until};
use p2p::transport::Frame;

const NETWORK: &str = "e2e";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The sum of `handshakes_refused_total` samples whose reason is `reason`.
fn refused(node: &Proc, reason: &str) -> u64 {
    let label = format!("reason=\"{reason}\"");
    node.get_text("/metrics")
        .lines()
        .filter(|l| l.starts_with("switchyard_p2p_handshakes_refused_total") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn start_node(dir: &std::path::Path) -> (Proc, SocketAddr) {
    let node = Proc::start(&config(&dir.join("victim"), &[], ""));
    let socket = node
        .tcp
        .rsplit('@')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a tcp://peer@ip:port address: {}", node.tcp));
    (node, socket)
}

#[test]
fn idle_connections_from_one_network_leave_room_for_honest_handshakes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, target) = start_node(dir.path());
    runtime().block_on(async {
        // 70 connections from 127.1.0.1 finish Noise under fresh keys, one
        // after another, and never send a Hello: before the fix they held
        // all 64 of the router's pre-admission slots for 10 s.
        let mut idle = Vec::new();
        let mut seed = 10_000;
        while idle.len() < 70 && seed < 12_000 {
            seed += 1;
            match NoiseClient::connect(Ipv4Addr::new(127, 1, 0, 1), target, NETWORK, seed).await {
                Ok(client) => idle.push(client),
                // The transport's own per-network cap on Noise handshakes
                // in progress: wait for one to finish, as an attacker would.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        assert_eq!(idle.len(), 70, "the attack needs its connections");
        // Honest handshakes, from 127.0.0.1, while the idle ones stay open.
        let mut hellos = 0;
        for seed in 0..5 {
            let mut client =
                NoiseClient::connect(Ipv4Addr::LOCALHOST, target, NETWORK, 20_000 + seed)
                    .await
                    .expect("an honest Noise handshake");
            let frame = tokio::time::timeout(Duration::from_secs(5), client.recv_frame()).await;
            if matches!(frame, Ok(Ok(Frame::Hello(_)))) {
                hellos += 1;
            }
        }
        assert_eq!(hellos, 5, "honest handshakes got no Hello under the attack");
        drop(idle);
    });
    assert!(
        refused(&node, "too_many_handshakes_from_prefix") > 0,
        "the attacker's network was not capped: {}",
        node.get_text("/metrics")
    );
}

#[test]
fn hello_frames_announced_at_16_mib_do_not_inflate_the_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, target) = start_node(dir.path());
    let before = rss(&node);
    const ANNOUNCED: u64 = 16 * 1024 * 1024 - 1024;
    const SENT: usize = 15 * 1024 * 1024;
    runtime().block_on(async {
        // 64 connections from 8 networks (8 each: the per-network cap),
        // each announcing a 16 MiB frame and sending 15 MiB of it, then
        // holding the connection open (within the handshake deadline).
        let release = tokio_util::sync::CancellationToken::new();
        let (sent_tx, mut sent) = tokio::sync::mpsc::channel::<()>(64);
        let mut attacks = Vec::new();
        for network in 0..8u8 {
            for n in 0..8u64 {
                let from = Ipv4Addr::new(127, 2, network, 1);
                let seed = 30_000 + u64::from(network) * 100 + n;
                let (release, sent_tx) = (release.clone(), sent_tx.clone());
                attacks.push(tokio::spawn(async move {
                    if let Ok(mut client) = NoiseClient::connect(from, target, NETWORK, seed).await
                    {
                        let mut body = BytesMut::new();
                        prost::encoding::encode_varint(ANNOUNCED, &mut body);
                        body.resize(body.len() + SENT, 0x41);
                        // The node may close the connection at any point.
                        let _ = client.send(&body).await;
                        let _ = sent_tx.send(()).await;
                        release.cancelled().await;
                    } else {
                        let _ = sent_tx.send(()).await;
                    }
                }));
            }
        }
        drop(sent_tx);
        // Every attacker has sent all it could: measure while they hold on.
        for _ in 0..attacks.len() {
            sent.recv().await;
        }
        let during = rss(&node);
        release.cancel();
        for attack in attacks {
            let _ = attack.await;
        }
        assert!(
            during < before + 100 * 1024 * 1024,
            "the node grew from {before} to {during} bytes"
        );
    });
    let after = rss(&node);
    assert!(
        after < before + 100 * 1024 * 1024,
        "the node grew from {before} to {after} bytes"
    );
    wait_until("the oversized hellos to be refused and counted", || {
        refused(&node, "hello_too_large") >= 32
    });
}

/// A connection flood is counted by cause in `/metrics`, not lost: the
/// connections the TCP transport closes at once for its per-network limit
/// (they never reach the router), and those that sit past the handshake
/// deadline (issue 17 item 12: 29,987 closed connections showed as +43).
#[test]
fn a_connection_flood_is_counted_by_cause() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config(&dir.path().join("victim"), &[], "");
    let text = std::fs::read_to_string(&path).expect("config").replace(
        "[transports.tcp]\nlisten = \"127.0.0.1:0\"\n",
        "[transports.tcp]\nlisten = \"127.0.0.1:0\"\nmax_handshakes_per_prefix = 2\nhandshake_timeout = \"1s\"\n",
    );
    assert!(text.contains("max_handshakes_per_prefix = 2"), "{text}");
    std::fs::write(&path, text).expect("config");
    let node = Proc::start(&path);
    let target: SocketAddr = node
        .tcp
        .rsplit('@')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("tcp address");
    let idle: Vec<std::net::TcpStream> = (0..20)
        .map(|_| std::net::TcpStream::connect(target).expect("connect"))
        .collect();
    wait_until("18 connections refused for the network's limit", || {
        refused(&node, "too_many_handshakes_from_prefix") == 18
    });
    wait_until("the 2 idle handshakes refused at the deadline", || {
        refused(&node, "handshake_timeout") == 2
    });
    assert_eq!(refused(&node, "accept_error"), 0);
    drop(idle);
    assert!(node.stop());
}
