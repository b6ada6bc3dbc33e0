//! Hostile input: unknown channels, oversized and undecodable messages,
//! flow-control violations and network-id mismatches get a clear reason,
//! cost the peer score, and leave other peers unaffected. Nothing panics.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{SECOND, Seq, channel};
use p2p::proto::{self, GoodbyeReason};
use p2p::router::PROTOCOL_VERSION;
use p2p::transport::{Connection, Frame, Transport};
use p2p::{AddAddressError, AddressSource, ChannelId, DropReason, Keypair, PeerAddress};
use testkit::adversary::RawPeer;
use testkit::{Network, recv_within};

fn hello(keypair: &Keypair, network: &str) -> proto::NodeInfo {
    proto::NodeInfo {
        protocol_version: PROTOCOL_VERSION,
        network_id: network.into(),
        peer_id: keypair.peer_id().as_bytes().to_vec().into(),
        channels: vec![proto::ChannelInfo {
            id: 0x10,
            recv_window: 64,
            max_message_size: 0,
            early_credit: p2p::router::EARLY_CREDIT,
        }],
        listen_addresses: vec![],
        software_version: "attacker/0".into(),
    }
}

/// Dials node 0 as a raw peer and completes the hello exchange by hand.
async fn raw_peer(net: &Network, seed: u64, network: &str) -> (Connection, Vec<Frame>) {
    let keypair = Keypair::from_seed(seed);
    let transport = net.hub().transport(keypair.peer_id()).expect("endpoint");
    let mut conn = transport
        .dial(&PeerAddress::memory(net.peer_id(0)))
        .await
        .expect("dial");
    std::mem::forget(transport); // keep the endpoint registered for the test
    conn.sink
        .send(&mut vec![Frame::Hello(Box::new(hello(&keypair, network)))])
        .await
        .expect("hello");
    let mut frames = Vec::new();
    conn.stream.recv(&mut frames).await.expect("their hello");
    (conn, frames)
}

async fn send(conn: &mut Connection, channel: u16, payload: impl Into<Bytes>) {
    conn.sink
        .send(&mut vec![Frame::Data {
            channel: ChannelId(channel),
            payload: payload.into(),
        }])
        .await
        .expect("send");
}

#[tokio::test(start_paused = true)]
async fn hostile_frames_are_refused_counted_and_penalised_while_others_flow() {
    let mut net = Network::builder().seed(31).nodes(2).build().expect("build");
    let desc = p2p::ChannelDescriptor {
        max_message_size: 1024,
        ..channel(0x10, "seq", 1)
    };
    let mut ch = net.open_channel_on_all::<Seq>(desc).expect("open");
    net.start().expect("start");
    net.wait_for_full_mesh(5 * SECOND).await.expect("mesh");
    let (mut attacker, first) = raw_peer(&net, 1_000, "switchyard-local").await;
    assert!(matches!(first.first(), Some(Frame::Hello(_))));
    let bad = Keypair::from_seed(1_000).peer_id();
    net.wait_until("attacker admitted", SECOND, |net| {
        net.router(0).is_connected(bad)
    })
    .await
    .expect("admitted");
    let metrics = net.router(0).metrics().clone();

    send(&mut attacker, 0x99, &b"x"[..]).await; // unknown channel
    send(&mut attacker, 0x10, vec![0u8; 4096]).await; // over max_message_size
    send(&mut attacker, 0x10, vec![0xffu8; 8]).await; // not protobuf
    tokio::time::sleep(Duration::from_millis(10)).await;
    // The receiver drops what does not decode and goes on waiting.
    assert!(
        recv_within(&mut ch[0].1, Duration::from_millis(50))
            .await
            .is_none()
    );
    assert_eq!(metrics.dropped("unknown", DropReason::UnknownChannel), 1);
    assert_eq!(metrics.dropped("seq", DropReason::TooLarge), 1);
    assert_eq!(metrics.dropped("seq", DropReason::Malformed), 1);
    let score = net
        .router(0)
        .score(bad)
        .await
        .expect("score")
        .expect("known");
    assert_eq!(
        score, -40,
        "unknown channel 10 + too large 20 + malformed 10"
    );

    // An honest peer is unaffected.
    ch[1]
        .0
        .send(net.peer_id(0), Seq::new(7))
        .await
        .expect("honest send");
    let got = recv_within(&mut ch[0].1, SECOND)
        .await
        .expect("honest message");
    assert_eq!((got.from, got.message.seq), (net.peer_id(1), 7));

    // Flow control: more than the 64 credits we were granted ends the
    // connection with a protocol-violation goodbye.
    // (Two of the 64 credits went on the oversized and the undecodable
    // message; credit comes back only as the reactor consumes.)
    for _ in 0..65 {
        let mut frame = vec![Frame::Data {
            channel: ChannelId(0x10),
            payload: Seq::new(1).encode_to_vec_bytes(),
        }];
        if attacker.sink.send(&mut frame).await.is_err() {
            break;
        }
    }
    let goodbye = read_until_goodbye(&mut attacker).await;
    assert_eq!(
        goodbye.reason(),
        GoodbyeReason::ProtocolViolation,
        "{goodbye:?}"
    );
    assert!(
        goodbye.detail.contains("flow control"),
        "{}",
        goodbye.detail
    );
    assert_eq!(metrics.dropped("seq", DropReason::FlowControl), 1);
    net.wait_until("attacker gone", SECOND, |net| {
        !net.router(0).is_connected(bad)
    })
    .await
    .expect("gone");
    assert!(
        net.router(0).is_connected(net.peer_id(1)),
        "honest peer still connected"
    );
    net.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn network_id_mismatch_is_refused_with_a_clear_reason() {
    let mut net = Network::builder()
        .seed(32)
        .nodes(1)
        .isolated()
        .build()
        .expect("build");
    net.start().expect("start");
    let (_conn, frames) = raw_peer(&net, 2_000, "some-other-net").await;
    let goodbye = frames.iter().find_map(|f| match f {
        Frame::Goodbye(g) => Some(g.clone()),
        _ => None,
    });
    let goodbye = match goodbye {
        Some(g) => g,
        None => {
            let mut conn = _conn;
            read_until_goodbye(&mut conn).await
        }
    };
    assert_eq!(goodbye.reason(), GoodbyeReason::NetworkMismatch);
    assert!(
        goodbye.detail.contains("some-other-net"),
        "{}",
        goodbye.detail
    );
    let refused = net
        .router(0)
        .metrics()
        .handshakes_refused
        .get_or_create(&p2p::metrics::ReasonLabels {
            reason: "network_mismatch".into(),
        })
        .get();
    assert_eq!(refused, 1);
    assert!(net.router(0).connected_peers().is_empty());
    net.shutdown().await;
}

/// Garbage past the disconnect threshold (-50) ends the connection with a
/// protocol-violation goodbye.
#[tokio::test(start_paused = true)]
async fn repeated_garbage_ends_the_connection() {
    let mut net = Network::builder()
        .seed(33)
        .nodes(1)
        .isolated()
        .build()
        .expect("build");
    let _ch = net
        .open_channel::<Seq>(0, channel(0x10, "seq", 1))
        .expect("open");
    net.start().expect("start");
    let (mut attacker, _) = raw_peer(&net, 3_000, "switchyard-local").await;
    for _ in 0..10 {
        if attacker
            .sink
            .send(&mut vec![Frame::Data {
                channel: ChannelId(0x77),
                payload: Bytes::from_static(b"junk"),
            }])
            .await
            .is_err()
        {
            break;
        }
    }
    let goodbye = read_until_goodbye(&mut attacker).await;
    assert_eq!(
        goodbye.reason(),
        GoodbyeReason::ProtocolViolation,
        "{goodbye:?}"
    );
    assert!(
        goodbye.detail.contains("unknown channel"),
        "{}",
        goodbye.detail
    );
    let bad = Keypair::from_seed(3_000).peer_id();
    net.wait_until("attacker gone", SECOND, |net| {
        !net.router(0).is_connected(bad)
    })
    .await
    .expect("gone");
    assert!(
        net.router(0)
            .score(bad)
            .await
            .expect("score")
            .expect("known")
            <= -50
    );
    net.shutdown().await;
}

/// A reactor's reports disconnect a peer at -50, and its redials are
/// refused while its score stays there (`low_score`); at -100 they ban it:
/// it is told for how long, does not redial while the ban lasts (no storm
/// of refused dials), and reconnects once it expires, on its last chance.
#[tokio::test(start_paused = true)]
async fn reactor_reports_ban_a_peer_and_the_ban_expires() {
    let mut net = Network::builder()
        .seed(34)
        .nodes(2)
        .configure(|_, config| config.peer_manager.ban_duration = Duration::from_secs(30))
        .build()
        .expect("build");
    let ch = net
        .open_channel_on_all::<Seq>(channel(0x10, "seq", 1))
        .expect("open");
    net.start().expect("start");
    net.wait_for_full_mesh(5 * SECOND).await.expect("mesh");
    let n0 = net.peer_id(0);
    let misbehaviour = |penalty| p2p::PeerError::Misbehaviour {
        channel: "seq",
        reason: "lied".into(),
        penalty,
    };
    let refused = |net: &Network, reason: &str| {
        net.router(1)
            .metrics()
            .handshakes_refused
            .get_or_create(&p2p::metrics::ReasonLabels {
                reason: reason.into(),
            })
            .get()
    };
    // Node 1 judges node 0 (who dials it as a persistent peer).
    ch[1].0.report(n0, misbehaviour(60));
    net.wait_until("disconnect at -60", SECOND, |net| {
        !net.router(1).is_connected(n0)
    })
    .await
    .expect("disconnected");
    net.wait_until("a redial refused for its score", 5 * SECOND, |net| {
        refused(net, "low_score") >= 1
    })
    .await
    .expect("node 0 redials and is refused");
    assert!(!net.router(1).is_connected(n0));
    ch[1].0.report(n0, misbehaviour(60));
    let started = tokio::time::Instant::now();
    // Node 0 learns of the ban at its next dial and waits for its end;
    // node 1 lets it in once the ban has expired.
    net.wait_for_full_mesh(90 * SECOND)
        .await
        .expect("reconnect after the ban");
    assert!(
        started.elapsed() >= Duration::from_secs(29),
        "ban lifted after {:?}",
        started.elapsed()
    );
    let banned = refused(&net, "banned");
    assert!(
        (1..=2).contains(&banned),
        "{banned} dials refused for the ban: one tells the dialer, who then waits"
    );
    net.shutdown().await;
}

async fn read_until_goodbye(conn: &mut Connection) -> proto::Goodbye {
    let mut frames = Vec::new();
    loop {
        let result = tokio::time::timeout(5 * SECOND, conn.stream.recv(&mut frames)).await;
        for f in frames.drain(..) {
            if let Frame::Goodbye(g) = f {
                return g;
            }
        }
        match result {
            Ok(Ok(())) => {}
            other => panic!("connection ended without goodbye: {other:?}"),
        }
    }
}

trait EncodeBytes {
    fn encode_to_vec_bytes(&self) -> Bytes;
}

impl EncodeBytes for Seq {
    fn encode_to_vec_bytes(&self) -> Bytes {
        Bytes::from(prost::Message::encode_to_vec(self))
    }
}

/// Issue 14, item 7: gossip and ring contacts (`Router::connect`, a
/// reactor's request) skipped peer exchange's checks and were dialed
/// first. Every source now passes the peer manager's one screen: on a
/// node that does not allow private addresses, a reactor's loopback,
/// private, multicast or unspecified contacts are refused, counted by
/// reason, and never dialed.
#[tokio::test(start_paused = true)]
async fn a_reactors_contacts_pass_the_same_screen_as_exchanged_addresses() {
    let mut net = Network::builder()
        .seed(61)
        .nodes(1)
        .isolated()
        .configure(|_, config| config.peer_manager.allow_private_addresses = false)
        .build()
        .expect("build");
    net.start().expect("start");
    let stranger = |n: u64| Keypair::from_seed(61_000 + n).peer_id();
    let tcp = |n: u64, ip: [u8; 4]| PeerAddress::tcp(stranger(n), (ip, 26656).into());
    let router = net.router(0);
    let results = router
        .connect(
            vec![
                tcp(1, [127, 0, 0, 1]),
                tcp(2, [10, 0, 0, 7]),
                tcp(3, [224, 0, 0, 1]),
                tcp(4, [0, 0, 0, 0]),
                PeerAddress::tcp(stranger(5), ([198, 51, 100, 7], 0).into()),
            ],
            AddressSource::Exchange,
        )
        .await
        .expect("router");
    assert_eq!(
        results,
        vec![
            Err(AddAddressError::NotPublic),
            Err(AddAddressError::NotPublic),
            Err(AddAddressError::Unroutable),
            Err(AddAddressError::Unspecified),
            Err(AddAddressError::PortZero),
        ]
    );
    tokio::time::sleep(SECOND).await;
    let metrics = router.metrics();
    assert_eq!(metrics.addresses_refused("not_public"), 2);
    assert_eq!(metrics.addresses_refused("unroutable"), 1);
    assert_eq!(metrics.addresses_refused("unspecified"), 1);
    assert_eq!(metrics.addresses_refused("port_zero"), 1);
    assert_eq!(metrics.dial_attempts.get(), 0, "nothing was dialed");
    assert_eq!(router.known_peers().await.expect("router"), 0);
    // The operator's own choice is trusted.
    assert!(router.dial(tcp(1, [127, 0, 0, 1])).await.expect("trusted"));
    net.shutdown().await;
}

/// Issue 14, item 8: bans were keyed by PeerId, so a banned attacker came
/// straight back under a fresh key. Each ban charges the peer's network
/// (IPv4 /24), and a network that keeps getting its keys banned is banned
/// itself: a fresh key from a fresh address of it is refused at admission
/// (`prefix_banned`), while other networks are not affected.
#[tokio::test(start_paused = true)]
async fn a_network_whose_keys_keep_getting_banned_is_refused_under_fresh_keys() {
    let mut net = Network::builder()
        .seed(62)
        .nodes(1)
        .isolated()
        .build()
        .expect("build");
    net.start().expect("start");
    let ip = |host: u8| Some(std::net::IpAddr::from([198, 51, 100, host]));
    let mut sybils = Vec::new();
    for n in 1..=3u8 {
        let sybil = RawPeer::connect_from(&net, 0, 62_000 + u64::from(n), &[], ip(n))
            .await
            .expect("connect");
        let id = sybil.peer_id();
        net.wait_until("the sybil to be admitted", 5 * SECOND, |net| {
            net.router(0).is_connected(id)
        })
        .await
        .expect("admitted");
        // Whatever it did, its node banned it.
        assert!(
            net.router(0)
                .disconnect(id, Some(Duration::from_secs(3600)))
                .await
                .expect("router")
        );
        sybils.push(sybil);
    }
    let fresh = RawPeer::connect_from(&net, 0, 62_100, &[], ip(200))
        .await
        .expect("the Hello exchange still happens");
    tokio::time::sleep(SECOND).await;
    assert!(!net.router(0).is_connected(fresh.peer_id()));
    let refused = net
        .router(0)
        .metrics()
        .handshakes_refused
        .get_or_create(&p2p::metrics::ReasonLabels {
            reason: "prefix_banned".into(),
        })
        .get();
    assert_eq!(refused, 1);
    // Another network's fresh key is welcome.
    let other = RawPeer::connect_from(
        &net,
        0,
        62_101,
        &[],
        Some(std::net::IpAddr::from([203, 0, 113, 1])),
    )
    .await
    .expect("connect");
    let id = other.peer_id();
    net.wait_until("another network's key to be admitted", 5 * SECOND, |net| {
        net.router(0).is_connected(id)
    })
    .await
    .expect("admitted");
    drop(sybils);
    net.shutdown().await;
}

/// The reusable mocks of `testkit::adversary` against the router: a swarm
/// of ten fresh keys from one /24 gets the network's inbound share (4),
/// connections that never say `Hello` from that network hold only its
/// pre-admission share while an honest peer from elsewhere is admitted,
/// and a padded message decodes as the message it pads.
#[tokio::test(start_paused = true)]
async fn the_adversary_mocks_meet_the_per_network_limits() {
    use prost::Message as _;
    use testkit::adversary::{Silent, padded, swarm};

    let mut net = Network::builder()
        .seed(63)
        .nodes(1)
        .isolated()
        .build()
        .expect("build");
    net.start().expect("start");
    let network = std::net::Ipv4Addr::new(198, 51, 100, 0);
    let sybils = swarm(&net, 0, 63_000, 10, network, &[]).await;
    tokio::time::sleep(SECOND).await;
    let admitted = sybils
        .iter()
        .filter(|s| net.router(0).is_connected(s.peer_id()))
        .count();
    let share = p2p::PeerManagerConfig::default().max_inbound_per_prefix;
    assert_eq!(admitted, share, "one network's share of inbound slots");

    let mut silent = Vec::new();
    for n in 0..20u8 {
        let ip = std::net::IpAddr::from([192, 0, 2, n + 1]);
        if let Ok(s) = Silent::connect(&net, 0, 63_100 + u64::from(n), Some(ip)).await {
            silent.push(s);
        }
    }
    let honest = RawPeer::connect_from(
        &net,
        0,
        63_200,
        &[],
        Some(std::net::IpAddr::from([203, 0, 113, 7])),
    )
    .await
    .expect("an honest peer's Hello is answered");
    let id = honest.peer_id();
    net.wait_until("the honest peer to be admitted", 5 * SECOND, |net| {
        net.router(0).is_connected(id)
    })
    .await
    .expect("admitted beside the silent connections");
    let prefix_refusals = net
        .router(0)
        .metrics()
        .handshakes_refused
        .get_or_create(&p2p::metrics::ReasonLabels {
            reason: "too_many_handshakes_from_prefix".into(),
        })
        .get();
    assert!(
        prefix_refusals
            >= 20 - p2p::RouterConfig::default().max_pending_handshakes_per_prefix as u64,
        "silent connections over the network's share refused: {prefix_refusals}"
    );

    let message = p2p::proto::Ping { nonce: 7 };
    let frame = padded(&message, 1000, 60_000);
    assert!(frame.len() > 60_000);
    assert_eq!(p2p::proto::Ping::decode(frame).expect("decodes"), message);
    drop((sybils, silent));
    net.shutdown().await;
}
