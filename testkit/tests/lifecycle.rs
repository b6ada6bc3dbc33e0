//! Peer manager behaviour through the router, restarts, shutdown,
//! determinism, and the Tendermint v0.35 lessons (dial/accept loops that
//! one error stops; subscribers that stall the peer manager).

mod common;

use std::time::Duration;

use common::{SECOND, Seq, channel};
use p2p::transport::{Frame, Transport};
use p2p::{Keypair, PeerAddress, PeerStatus, PeerUpdatesError};
use testkit::{Network, StoreKind, recv_within};

/// Dialing an absent persistent peer backs off exponentially; once it is
/// up the connection forms, and after it crashes and comes back the redial
/// is quick again (the backoff was reset by the successful connection).
#[tokio::test(start_paused = true)]
async fn backoff_grows_and_resets() {
    let mut net = Network::builder().seed(41).nodes(2).build().expect("build");
    net.start_node(0).expect("start 0");
    tokio::time::sleep(Duration::from_secs(60)).await;
    let attempts = net.router(0).metrics().dial_attempts.get();
    // 250 ms doubling with ±20% jitter: about 8 attempts in a minute, not 240.
    assert!(
        (5..=12).contains(&attempts),
        "{attempts} dial attempts in 60 s"
    );
    net.start_node(1).expect("start 1");
    net.wait_for_full_mesh(70 * SECOND)
        .await
        .expect("connects once the peer is up");
    net.crash(1).await;
    net.restart(1).await.expect("restart");
    net.start_node(1).expect("start 1 again");
    let t = tokio::time::Instant::now();
    net.wait_for_full_mesh(10 * SECOND).await.expect("redial");
    assert!(
        t.elapsed() <= Duration::from_secs(2),
        "redial took {:?} after a reset",
        t.elapsed()
    );
    net.shutdown().await;
}

/// A node that dialed a peer by hand (not persistent, not in its config)
/// finds it again after a crash and restart, from its heed peer store.
#[tokio::test(start_paused = true)]
async fn restart_reloads_the_peer_store() {
    let mut net = Network::builder()
        .seed(42)
        .nodes(2)
        .isolated()
        .store(StoreKind::Heed)
        .build()
        .expect("build");
    net.start().expect("start");
    net.router(0)
        .dial(PeerAddress::memory(net.peer_id(1)))
        .await
        .expect("dial");
    net.wait_for_full_mesh(5 * SECOND).await.expect("connected");
    // A crash keeps what the periodic flush (every 10 s) wrote.
    tokio::time::sleep(11 * SECOND).await;
    net.crash(0).await;
    net.wait_until("node 1 sees node 0 gone", 5 * SECOND, |net| {
        net.router(1).connected_peers().is_empty()
    })
    .await
    .expect("down");
    net.restart(0).await.expect("restart");
    net.start_node(0).expect("start again");
    net.wait_for_full_mesh(10 * SECOND)
        .await
        .expect("redialed from the store");
    net.shutdown().await;
}

/// A graceful stop flushes the store at once; a crash before the first
/// periodic flush after learning a peer forgets it.
#[tokio::test(start_paused = true)]
async fn graceful_stop_flushes_the_store_and_a_crash_does_not() {
    for crash in [false, true] {
        let mut net = Network::builder()
            .seed(47)
            .nodes(2)
            .isolated()
            .store(StoreKind::Heed)
            .build()
            .expect("build");
        net.start().expect("start");
        net.router(0)
            .dial(PeerAddress::memory(net.peer_id(1)))
            .await
            .expect("dial");
        net.wait_for_full_mesh(5 * SECOND).await.expect("connected");
        if crash {
            net.crash(0).await;
        } else {
            net.stop(0).await;
        }
        net.restart(0).await.expect("restart");
        net.start_node(0).expect("start again");
        let reconnected = net.wait_for_full_mesh(10 * SECOND).await.is_ok();
        assert_eq!(reconnected, !crash, "crash={crash}");
        net.shutdown().await;
    }
}

/// 500 peers dial one node at once: the inbound limit (40) holds, the rest
/// are refused with a reason, and the node still serves its peers.
#[tokio::test(start_paused = true)]
async fn inbound_limit_holds_under_a_storm_of_500_dialers() {
    let mut net = Network::builder().seed(43).nodes(2).build().expect("build");
    let mut ch = net
        .open_channel_on_all::<Seq>(channel(0x10, "seq", 1))
        .expect("open");
    net.start().expect("start");
    net.wait_for_full_mesh(5 * SECOND).await.expect("mesh");
    let target = PeerAddress::memory(net.peer_id(1));
    let mut storm = Vec::new();
    for i in 0..500u64 {
        let node = Keypair::from_seed(10_000 + i);
        let transport = net.hub().transport(node.peer_id()).expect("endpoint");
        let mut conn = transport.dial(&target).await.expect("dial");
        let hello = p2p::proto::NodeInfo {
            protocol_version: p2p::router::PROTOCOL_VERSION,
            network_id: "switchyard-local".into(),
            peer_id: node.peer_id().as_bytes().to_vec().into(),
            channels: vec![],
            listen_addresses: vec![],
            software_version: "storm".into(),
        };
        let _ = conn
            .sink
            .send(&mut vec![Frame::Hello(Box::new(hello))])
            .await;
        storm.push((transport, conn));
    }
    tokio::time::sleep(SECOND).await;
    let router = net.router(1);
    let inbound = router.connected_peers().len();
    // 40 inbound slots; node 0 holds one of them.
    assert_eq!(inbound, 40, "connected peers");
    let refused: u64 = ["inbound_full", "too_many_handshakes"]
        .iter()
        .map(|r| {
            router
                .metrics()
                .handshakes_refused
                .get_or_create(&p2p::metrics::ReasonLabels {
                    reason: (*r).into(),
                })
                .get()
        })
        .sum();
    assert_eq!(refused, 500 - 39, "every refused dialer is counted");
    ch[0]
        .0
        .send(net.peer_id(1), Seq::new(5))
        .await
        .expect("send");
    assert_eq!(
        recv_within(&mut ch[1].1, SECOND)
            .await
            .map(|e| e.message.seq),
        Some(5)
    );
    drop(storm);
    net.shutdown().await;
}

/// Ten peers behind one IP: at most `max_inbound_per_prefix` (4) get in,
/// the rest are refused as `prefix_limit`.
#[tokio::test(start_paused = true)]
async fn per_prefix_inbound_limit_holds() {
    let mut net = Network::builder()
        .seed(48)
        .nodes(1)
        .isolated()
        .build()
        .expect("build");
    net.start().expect("start");
    let target = PeerAddress::memory(net.peer_id(0));
    let ip: std::net::IpAddr = "10.0.0.1".parse().expect("ip");
    let mut kept = Vec::new();
    for i in 0..10u64 {
        let node = Keypair::from_seed(40_000 + i);
        let transport = net
            .hub()
            .transport_with_ip(node.peer_id(), Some(ip))
            .expect("endpoint");
        let mut conn = transport.dial(&target).await.expect("dial");
        let hello = p2p::proto::NodeInfo {
            protocol_version: p2p::router::PROTOCOL_VERSION,
            network_id: "switchyard-local".into(),
            peer_id: node.peer_id().as_bytes().to_vec().into(),
            channels: vec![],
            listen_addresses: vec![],
            software_version: "one-ip".into(),
        };
        let _ = conn
            .sink
            .send(&mut vec![Frame::Hello(Box::new(hello))])
            .await;
        kept.push((transport, conn));
    }
    tokio::time::sleep(SECOND).await;
    assert_eq!(net.router(0).connected_peers().len(), 4);
    let refused = |reason: &str| {
        net.router(0)
            .metrics()
            .handshakes_refused
            .get_or_create(&p2p::metrics::ReasonLabels {
                reason: reason.into(),
            })
            .get()
    };
    // At most 8 Hello exchanges from one network at once: the other 2
    // are refused before their Hello, the rest at admission.
    assert_eq!(refused("too_many_handshakes_from_prefix"), 2);
    assert_eq!(refused("prefix_limit"), 4);
    drop(kept);
    net.shutdown().await;
}

/// Tendermint v0.35 lesson: one error could stop the dial or accept loop
/// for good. Here 50 failed dials and 20 failed handshakes later, the node
/// still dials and accepts.
#[tokio::test(start_paused = true)]
async fn dial_and_accept_loops_survive_errors() {
    let mut net = Network::builder()
        .seed(44)
        .nodes(3)
        .isolated()
        .build()
        .expect("build");
    net.start().expect("start");
    for i in 0..50 {
        let ghost = PeerAddress::memory(Keypair::from_seed(20_000 + i).peer_id());
        net.router(0).dial(ghost).await.expect("queued");
    }
    for i in 0..20u64 {
        let node = Keypair::from_seed(30_000 + i);
        let transport = net.hub().transport(node.peer_id()).expect("endpoint");
        let mut conn = transport
            .dial(&PeerAddress::memory(net.peer_id(0)))
            .await
            .expect("dial");
        let _ = conn
            .sink
            .send(&mut vec![Frame::Data {
                channel: p2p::ChannelId(1),
                payload: bytes::Bytes::new(),
            }])
            .await;
    }
    tokio::time::sleep(5 * SECOND).await;
    assert!(net.router(0).metrics().dial_failures.get() >= 50);
    net.router(0)
        .dial(PeerAddress::memory(net.peer_id(1)))
        .await
        .expect("dial");
    net.router(2)
        .dial(PeerAddress::memory(net.peer_id(0)))
        .await
        .expect("dial");
    net.wait_connected(0, 1, 5 * SECOND)
        .await
        .expect("dial loop alive");
    net.wait_connected(2, 0, 5 * SECOND)
        .await
        .expect("accept loop alive");
    net.shutdown().await;
}

/// Tendermint v0.35 lesson: subscribers were notified under the peer
/// manager's lock, so one slow subscriber halted it. Here a subscriber that
/// never reads lags (and is told so) while the router carries on.
#[tokio::test(start_paused = true)]
async fn slow_subscriber_does_not_stall_the_router() {
    let mut net = Network::builder()
        .seed(45)
        .nodes(6)
        .isolated()
        .configure(|_, c| c.peer_update_buffer = 2)
        .build()
        .expect("build");
    net.start().expect("start");
    let mut stalled = net.router(0).subscribe();
    for i in 1..6 {
        net.router(0)
            .dial(PeerAddress::memory(net.peer_id(i)))
            .await
            .expect("dial");
    }
    for i in 1..6 {
        net.wait_connected(0, i, 5 * SECOND)
            .await
            .expect("connects despite the stalled subscriber");
    }
    assert_eq!(stalled.recv().await, Err(PeerUpdatesError::Lagged(3)));
    assert!(matches!(stalled.recv().await, Ok(u) if matches!(u.status, PeerStatus::Up { .. })));
    net.shutdown().await;
}

/// Shutdown says goodbye, ends every task and closes the receivers.
#[tokio::test(start_paused = true)]
async fn graceful_shutdown_ends_every_task() {
    let mut net = Network::builder().seed(46).nodes(2).build().expect("build");
    let mut ch = net
        .open_channel_on_all::<Seq>(channel(0x10, "seq", 1))
        .expect("open");
    net.start().expect("start");
    net.wait_for_full_mesh(5 * SECOND).await.expect("mesh");
    let mut updates = net.router(1).subscribe();
    let router = net.router(0).clone();
    assert!(router.running_tasks() > 0);
    router.shutdown().await;
    assert_eq!(router.running_tasks(), 0, "every task ended");
    assert!(ch[0].1.recv().await.is_none(), "receiver closed");
    let down = updates.recv().await.expect("update");
    match down.status {
        PeerStatus::Down { reason } => assert!(reason.contains("Shutdown"), "{reason}"),
        other => panic!("expected down, got {other:?}"),
    }
    net.shutdown().await;
}

/// The same scenario and seed give the same event trace; five seeds pass.
#[tokio::test(start_paused = true)]
async fn determinism_same_seed_same_trace_across_a_seed_sweep() {
    for seed in [1u64, 2, 3, 4, 5] {
        let first = scenario(seed).await;
        let second = scenario(seed).await;
        assert_eq!(first, second, "seed {seed} is not reproducible");
        assert!(
            first.iter().any(|e| e.what.starts_with("recv")),
            "seed {seed} delivered nothing"
        );
    }
    assert_ne!(
        scenario(1).await,
        scenario(2).await,
        "different seeds give different runs"
    );
}

/// Five nodes, lossy links with latency, a partition and a heal, numbered
/// messages: returns the trace.
async fn scenario(seed: u64) -> Vec<testkit::TraceEvent> {
    let mut net = Network::builder()
        .seed(seed)
        .nodes(5)
        .build()
        .expect("build");
    let mut ch = net
        .open_channel_on_all::<Seq>(channel(0x10, "seq", 1))
        .expect("open");
    net.start().expect("start");
    net.wait_for_full_mesh(10 * SECOND).await.expect("mesh");
    for a in 0..5 {
        for b in a + 1..5 {
            net.set_latency(a, b, Duration::from_millis(5 + (seed % 7) * (a + b) as u64));
            net.set_loss(a, b, 0.1);
        }
    }
    net.partition(&[&[0, 1], &[2, 3, 4]]);
    tokio::time::sleep(SECOND).await;
    net.heal_all();
    net.wait_for_full_mesh(30 * SECOND).await.expect("heals");
    for seq in 0..200u64 {
        let report = ch[(seq % 5) as usize].0.broadcast(Seq::new(seq));
        net.record(
            (seq % 5) as usize,
            format!("sent {seq} to {}", report.queued.len()),
        );
    }
    for (i, (_, rx)) in ch.iter_mut().enumerate() {
        while let Some(env) = recv_within(rx, Duration::from_millis(500)).await {
            let from = net.index_of(env.from).expect("ours");
            net.record(i, format!("recv {} from {from}", env.message.seq));
        }
    }
    let trace = net.trace();
    net.shutdown().await;
    trace
}

/// Keepalive: a path that silently drops everything is detected by ping
/// and pong timeout on both sides (15 s + 10 s by default), and the peers
/// reconnect once the path works again. An idle but healthy connection
/// stays up.
#[tokio::test(start_paused = true)]
async fn keepalive_detects_a_dead_path_and_keeps_a_healthy_one() {
    let mut net = Network::builder().seed(49).nodes(3).build().expect("build");
    net.start().expect("start");
    net.wait_for_full_mesh(5 * SECOND).await.expect("mesh");
    let mut updates = net.router(1).subscribe();
    net.set_blackhole(0, 1, true);
    let t = tokio::time::Instant::now();
    net.wait_until("both sides to notice", 30 * SECOND, |net| {
        !net.router(0).is_connected(net.peer_id(1)) && !net.router(1).is_connected(net.peer_id(0))
    })
    .await
    .expect("dead path detected");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(20) && took <= Duration::from_secs(26),
        "took {took:?}"
    );
    let reason = loop {
        match updates.recv().await.expect("update").status {
            PeerStatus::Down { reason } => break reason,
            PeerStatus::Up { .. } => {}
        }
    };
    assert!(reason.contains("keepalive"), "{reason}");
    // Node 2's connections were idle all along and are still up.
    assert!(
        net.router(2).is_connected(net.peer_id(0)) && net.router(2).is_connected(net.peer_id(1))
    );
    net.set_blackhole(0, 1, false);
    net.wait_for_full_mesh(30 * SECOND)
        .await
        .expect("reconnects");
    net.shutdown().await;
}

/// A disconnect (here a ban) completes within `close_grace` even when the
/// peer has stopped reading and our writer cannot get the goodbye out: a
/// slow or hostile peer cannot keep a connection we want closed.
#[tokio::test(start_paused = true)]
async fn a_ban_completes_even_if_the_peer_stops_reading() {
    let mut net = Network::builder().seed(47).nodes(2).build().expect("build");
    let chans = net
        .open_channel_on_all::<Seq>(channel(0x10, "a", 1))
        .expect("open");
    net.start().expect("start");
    net.wait_for_full_mesh(5 * SECOND).await.expect("mesh");
    let n1 = net.peer_id(1);
    // Node 1 stops reading: node 0's writes toward it crawl at 1 byte/s.
    net.set_bandwidth(0, 1, Some(1));
    for seq in 0..32 {
        let _ = chans[0].0.try_send(n1, Seq::padded(seq, 1_000));
    }
    tokio::time::sleep(SECOND).await;
    let mut updates = net.router(0).subscribe();
    let was_connected = net
        .router(0)
        .disconnect(n1, Some(Duration::from_secs(3_600)))
        .await
        .expect("disconnect");
    assert!(was_connected);
    let down = tokio::time::timeout(5 * SECOND, async {
        loop {
            match updates.recv().await {
                Ok(u) if u.peer == n1 && matches!(u.status, PeerStatus::Down { .. }) => {
                    return true;
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await;
    assert_eq!(down, Ok(true), "the banned peer's connection must end");
    assert!(!net.router(0).is_connected(n1));
    net.shutdown().await;
}

/// Two nodes that dial each other at the same moment settle on one
/// connection that both keep, even when node 0 accepts no inbound
/// connections at all: the connection that wins the tie-break takes the
/// other's place in the peer manager instead of being admitted afresh (a
/// fresh admission could refuse it after the other was closed, leaving
/// neither).
#[tokio::test(start_paused = true)]
async fn simultaneous_dials_settle_on_one_connection() {
    for seed in 0..6 {
        let mut net = Network::builder()
            .seed(seed)
            .nodes(2)
            .links(vec![(0, 1), (1, 0)])
            .configure(|i, c| {
                if i == 0 {
                    c.peer_manager.max_inbound = 0;
                }
            })
            .build()
            .expect("build");
        let mut ch = net
            .open_channel_on_all::<Seq>(channel(0x10, "seq", 1))
            .expect("open");
        net.start().expect("start");
        net.wait_for_full_mesh(10 * SECOND)
            .await
            .expect("connected");
        let settled = net.trace().len();
        tokio::time::sleep(30 * SECOND).await;
        assert!(
            net.router(0).is_connected(net.peer_id(1))
                && net.router(1).is_connected(net.peer_id(0)),
            "seed {seed}: the connection did not last: {:?}",
            net.trace()
        );
        assert_eq!(
            net.trace().len(),
            settled,
            "seed {seed}: connections kept churning: {:?}",
            net.trace()
        );
        ch[0]
            .0
            .send(net.peer_id(1), Seq::new(seed))
            .await
            .expect("send");
        let got = recv_within(&mut ch[1].1, SECOND).await;
        assert_eq!(got.map(|e| e.message.seq), Some(seed));
        net.shutdown().await;
    }
}

/// Connections refused so far by `router` for `reason`.
fn refused(router: &p2p::Router, reason: &str) -> u64 {
    router
        .metrics()
        .handshakes_refused
        .get_or_create(&p2p::metrics::ReasonLabels {
            reason: reason.to_string(),
        })
        .get()
}

/// A peer that bans us says for how long, and we do not dial it again
/// before the ban ends (no redial storm against a ban); then we connect.
#[tokio::test(start_paused = true)]
async fn a_peer_that_bans_us_is_not_redialed_until_the_ban_ends() {
    let mut net = Network::builder()
        .seed(48)
        .nodes(2)
        .links(vec![(1, 0)])
        .build()
        .expect("build");
    net.start().expect("start");
    net.wait_for_full_mesh(5 * SECOND).await.expect("mesh");
    let n1 = net.peer_id(1);
    let ban = Duration::from_secs(600);
    assert!(net.router(0).disconnect(n1, Some(ban)).await.expect("ban"));
    tokio::time::sleep(SECOND).await;
    let attempts = net.router(1).metrics().dial_attempts.get();
    tokio::time::sleep(ban - 2 * SECOND).await;
    assert_eq!(
        net.router(1).metrics().dial_attempts.get(),
        attempts,
        "the banned node redialed before the ban ended"
    );
    assert_eq!(refused(net.router(0), "banned"), 0);
    net.wait_for_full_mesh(60 * SECOND)
        .await
        .expect("reconnects once the ban has ended");
    net.shutdown().await;
}

/// A dial the remote refuses at admission (here: it takes no inbound
/// connection) is a failed dial: counted as one, and backed off
/// exponentially, not retried every `min_retry`.
#[tokio::test(start_paused = true)]
async fn a_dial_refused_at_admission_is_a_failure_and_backs_off() {
    let mut net = Network::builder()
        .seed(49)
        .nodes(2)
        .links(vec![(1, 0)])
        .configure(|i, c| {
            if i == 0 {
                c.peer_manager.max_inbound = 0;
            }
        })
        .build()
        .expect("build");
    net.start().expect("start");
    tokio::time::sleep(Duration::from_secs(60)).await;
    let metrics = net.router(1).metrics();
    let (attempts, failures) = (metrics.dial_attempts.get(), metrics.dial_failures.get());
    // 250 ms doubling with ±20% jitter: about 8 attempts in a minute, not 240.
    assert!(
        (5..=12).contains(&attempts),
        "{attempts} dial attempts in 60 s"
    );
    assert!(
        failures + 1 >= attempts && failures <= attempts,
        "{failures} failures of {attempts} refused dials"
    );
    assert!(refused(net.router(0), "inbound_full") <= attempts);
    net.shutdown().await;
}

/// Bans are kept in the peer store: after a graceful restart (memory and
/// heed stores alike) the banned peer is still refused and listed, and a
/// lifted ban stays lifted across the next restart.
#[tokio::test(start_paused = true)]
async fn bans_survive_a_restart() {
    for store in [StoreKind::Memory, StoreKind::Heed] {
        let mut net = Network::builder()
            .seed(50)
            .nodes(2)
            .links(vec![(1, 0)])
            .store(store)
            .build()
            .expect("build");
        net.start().expect("start");
        net.wait_for_full_mesh(5 * SECOND).await.expect("mesh");
        let n1 = net.peer_id(1);
        let day = Duration::from_secs(86_400);
        net.router(0).disconnect(n1, Some(day)).await.expect("ban");
        net.stop(0).await;
        net.restart(0).await.expect("restart");
        net.start_node(0).expect("start again");
        let bans = net.router(0).bans().await.expect("bans");
        assert_eq!(bans.len(), 1, "{store:?}: {bans:?}");
        assert_eq!(bans[0].peer, n1);
        assert!(
            bans[0].remaining > day - Duration::from_secs(60),
            "{bans:?}"
        );
        // Node 1 redials (after its own restart it has forgotten the
        // goodbye's wait) and is refused.
        net.stop(1).await;
        net.restart(1).await.expect("restart 1");
        net.start_node(1).expect("start 1 again");
        tokio::time::sleep(5 * SECOND).await;
        assert!(refused(net.router(0), "banned") >= 1, "{store:?}");
        assert!(!net.router(0).is_connected(n1));
        assert!(net.router(0).unban(n1).await.expect("unban"));
        net.stop(0).await;
        net.restart(0).await.expect("restart");
        net.start_node(0).expect("start again");
        assert!(
            net.router(0).bans().await.expect("bans").is_empty(),
            "{store:?}"
        );
        net.shutdown().await;
    }
}
