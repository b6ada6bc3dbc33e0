//! The TCP transport on real loopback sockets: who may connect, what a
//! hostile or broken peer can do to a listener, and what a cut connection
//! delivers.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use p2p::transport::{Connection, ConnectionError, Frame, Refusal, Transport, TransportError};
use p2p::{ChannelDescriptor, ChannelId, Keypair, PeerAddress, SendError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use transport_tcp::preamble::{self, Answer, Offer};
use transport_tcp::{CipherSuite, TcpConfig, TcpTransport};

const SECOND: Duration = Duration::from_secs(1);

fn config(network: &str) -> TcpConfig {
    TcpConfig {
        network_id: network.into(),
        handshake_timeout: SECOND,
        ..TcpConfig::default()
    }
}

/// The offer an honest dialer of `network` offering `suites` sends.
fn offer(network: &str, suites: &[CipherSuite]) -> Vec<u8> {
    Offer::new(preamble::network_tag(network), suites).encode()
}

fn bind(seed: u64, config: TcpConfig) -> (Keypair, TcpTransport) {
    let keypair = Keypair::from_seed(seed);
    let transport = TcpTransport::bind_now(&keypair, config).expect("bind loopback");
    (keypair, transport)
}

async fn accept(transport: &TcpTransport) -> Result<Connection, TransportError> {
    tokio::time::timeout(10 * SECOND, transport.accept())
        .await
        .expect("accept within 10 s")
}

fn data(channel: u16, payload: &[u8]) -> Frame {
    Frame::Data {
        channel: ChannelId(channel),
        payload: Bytes::copy_from_slice(payload),
    }
}

async fn send(conn: &mut Connection, frame: Frame) {
    let mut frames = vec![frame];
    conn.sink.send(&mut frames).await.expect("send");
}

async fn recv(conn: &mut Connection) -> Result<Vec<Frame>, ConnectionError> {
    let mut frames = Vec::new();
    tokio::time::timeout(10 * SECOND, conn.stream.recv(&mut frames))
        .await
        .expect("recv within 10 s")?;
    Ok(frames)
}

/// Reads until the listener closes the socket; `true` if it did within
/// `deadline`.
async fn closed_by_listener(stream: &mut TcpStream, deadline: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(deadline, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Both sides learn the other's proven PeerId, and frames flow both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_proves_both_identities_and_frames_flow() {
    let (ka, a) = bind(1, config("net"));
    let (kb, b) = bind(2, config("net"));
    let mut out = a
        .dial(&PeerAddress::tcp(kb.peer_id(), b.local_addr()))
        .await
        .expect("dial");
    let mut inc = accept(&b).await.expect("accept");
    assert_eq!(out.remote, kb.peer_id());
    assert_eq!(inc.remote, ka.peer_id());
    send(&mut out, data(7, b"ping")).await;
    let got = recv(&mut inc).await.expect("frame");
    assert!(
        matches!(&got[0], Frame::Data { channel, payload } if channel.0 == 7 && &payload[..] == b"ping")
    );
    send(&mut inc, Frame::Pong(9)).await;
    let got = recv(&mut out).await.expect("frame");
    assert!(matches!(got[0], Frame::Pong(9)));
}

/// Protocol version 3: each side's `Hello`, set with `carry_hello`, rides
/// in its last handshake message (listener: message 2, dialer: message 3)
/// and is the first frame the other side's stream yields, before anything
/// is sent on the connection; both connections say so (`hello_sent`). A
/// `Hello` too large for a handshake message is not carried, and the
/// router sends it as a frame instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_side_carries_its_hello_in_the_handshake() {
    let hello = |key: &Keypair, software: &str| {
        Frame::Hello(Box::new(p2p::proto::NodeInfo {
            protocol_version: p2p::router::PROTOCOL_VERSION,
            network_id: "net".into(),
            peer_id: key.peer_id().as_bytes().to_vec().into(),
            software_version: software.into(),
            ..Default::default()
        }))
    };
    let (ka, a) = bind(1, config("net"));
    let (kb, b) = bind(2, config("net"));
    a.carry_hello(&hello(&ka, "dialer"));
    b.carry_hello(&hello(&kb, "listener"));
    let mut out = a
        .dial(&PeerAddress::tcp(kb.peer_id(), b.local_addr()))
        .await
        .expect("dial");
    let mut inc = accept(&b).await.expect("accept");
    assert!(out.hello_sent && inc.hello_sent);
    assert_eq!(
        recv(&mut out).await.expect("hello"),
        vec![hello(&kb, "listener")]
    );
    assert_eq!(
        recv(&mut inc).await.expect("hello"),
        vec![hello(&ka, "dialer")]
    );

    // Too large for a 1 KiB handshake message: left to the router.
    let (kc, c) = bind(3, config("net"));
    c.carry_hello(&hello(&kc, &"x".repeat(2000)));
    let out = c
        .dial(&PeerAddress::tcp(kb.peer_id(), b.local_addr()))
        .await
        .expect("dial");
    let inc = accept(&b).await.expect("accept");
    assert!(!out.hello_sent, "too large to carry");
    assert!(inc.hello_sent, "the listener's still fits");
}

/// Dialing an address whose PeerId is not the key that answers fails with
/// `WrongPeer`, naming both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_expected_peer_id_fails_the_dial() {
    let (_, a) = bind(1, config("net"));
    let (kb, b) = bind(2, config("net"));
    let impostor = Keypair::from_seed(3).peer_id();
    let err = a
        .dial(&PeerAddress::tcp(impostor, b.local_addr()))
        .await
        .expect_err("another key answers");
    match &err {
        TransportError::WrongPeer { expected, actual } => {
            assert_eq!((*expected, *actual), (impostor, kb.peer_id()));
        }
        other => panic!("expected WrongPeer, got {other}"),
    }
    let text = err.to_string();
    assert!(text.contains(&impostor.to_string()) && text.contains(&kb.peer_id().to_string()));
    // The listener never hands the half-made connection to its router.
    assert!(accept(&b).await.is_err());
}

/// Nodes of different network ids cannot complete a handshake: the
/// listener tells the network tag in the preamble apart and refuses with
/// `network_mismatch`, and both sides get an error that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_network_id_fails_the_handshake() {
    let (_, a) = bind(1, config("one"));
    let (kb, b) = bind(2, config("two"));
    let err = a
        .dial(&PeerAddress::tcp(kb.peer_id(), b.local_addr()))
        .await
        .expect_err("different networks");
    assert!(
        err.refusal() == Some(Refusal::NetworkMismatch)
            && err.to_string().contains("another network id"),
        "{err}"
    );
    // The listener tells it from the network tag in the preamble, and
    // says which network it is on.
    let err = accept(&b).await.expect_err("different networks");
    assert_eq!(err.refusal(), Some(Refusal::NetworkMismatch), "{err}");
    assert_eq!(err.refusal_label(), "network_mismatch");
    assert!(err.to_string().contains("\"two\""), "{err}");
}

/// A truncated first message, an oversized length, and well-framed garbage
/// behind a valid offer each fail the handshake with an error; the listener
/// keeps accepting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_garbage_handshakes_are_refused() {
    let (kb, b) = bind(2, config("net"));
    let addr = b.local_addr();
    let hello = offer("net", &[CipherSuite::ChaChaPoly]);

    // Truncated: announces 32 bytes, sends 10, hangs up.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&hello).await.expect("write");
    s.write_all(&[0, 32]).await.expect("write");
    s.write_all(&[7; 10]).await.expect("write");
    drop(s);
    let err = accept(&b).await.expect_err("truncated");
    assert_eq!(err.refusal(), Some(Refusal::Io), "{err}");

    // Oversized: a length above the 1 KiB handshake limit.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&hello).await.expect("write");
    s.write_all(&[0xff, 0xff]).await.expect("write");
    let err = accept(&b).await.expect_err("oversized");
    assert!(err.to_string().contains("exceeds"), "{err}");
    assert_eq!(err.refusal(), Some(Refusal::BadHandshake), "{err}");
    assert!(closed_by_listener(&mut s, 5 * SECOND).await);

    // Well framed garbage: any 32 bytes pass as an ephemeral key, but the
    // third message does not decrypt.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&hello).await.expect("write");
    s.write_all(&[0, 32]).await.expect("write");
    s.write_all(&[0x42; 32]).await.expect("write");
    let mut answer = [0u8; preamble::ANSWER_LEN];
    s.read_exact(&mut answer).await.expect("the answer");
    assert_eq!(
        Answer::decode(answer),
        Ok(Answer::Accept(CipherSuite::ChaChaPoly))
    );
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.expect("message 2 length");
    let mut msg2 = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg2).await.expect("message 2");
    s.write_all(&[0, 64]).await.expect("write");
    s.write_all(&[0x42; 64]).await.expect("write");
    let err = accept(&b).await.expect_err("garbage");
    assert!(err.to_string().contains("noise"), "{err}");
    assert_eq!(err.refusal_label(), "bad_handshake", "{err}");
    assert!(closed_by_listener(&mut s, 5 * SECOND).await);

    // Still accepting honest peers.
    let (_, a) = bind(1, config("net"));
    a.dial(&PeerAddress::tcp(kb.peer_id(), addr))
        .await
        .expect("honest dial");
    assert!(accept(&b).await.is_ok());
}

/// A frame announcing more than `max_frame_size` ends the connection with
/// `FrameTooLarge`, decided from its length prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_ends_the_connection() {
    let (_, a) = bind(1, config("net"));
    let (kb, b) = bind(
        2,
        TcpConfig {
            max_frame_size: 1024,
            ..config("net")
        },
    );
    let mut out = a
        .dial(&PeerAddress::tcp(kb.peer_id(), b.local_addr()))
        .await
        .expect("dial");
    let mut inc = accept(&b).await.expect("accept");
    send(&mut out, data(1, &[0u8; 100])).await;
    assert_eq!(recv(&mut inc).await.expect("small frame").len(), 1);
    send(&mut out, data(1, &[0u8; 100_000])).await;
    match recv(&mut inc).await {
        Err(ConnectionError::FrameTooLarge { size, max }) => {
            assert!(size > 100_000 && max == 1024, "{size} {max}");
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
}

/// A peer that trickles its handshake a byte at a time and a peer that
/// never sends anything are both closed at the handshake deadline, while an
/// honest peer connects and exchanges frames in the meantime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_silent_handshakes_are_closed_at_the_deadline() {
    let (kb, b) = bind(2, config("net"));
    let addr = b.local_addr();
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let trickler = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let mut bytes = offer("net", &[CipherSuite::ChaChaPoly]);
        bytes.extend_from_slice(&[0, 32]);
        bytes.extend_from_slice(&[0x42; 32]);
        for byte in bytes {
            if s.write_all(&[byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The whole message went out: the deadline did not close us.
        false
    });

    let (_, a) = bind(1, config("net"));
    let mut out = a
        .dial(&PeerAddress::tcp(kb.peer_id(), addr))
        .await
        .expect("honest dial while the others hang");
    let mut inc = loop {
        match accept(&b).await {
            Ok(conn) => break conn,
            // The silent and trickling handshakes fail here as they expire.
            Err(TransportError::Refused { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    };
    send(&mut out, data(1, b"still flowing")).await;
    assert_eq!(recv(&mut inc).await.expect("frame").len(), 1);

    assert!(
        closed_by_listener(&mut silent, 10 * SECOND).await,
        "the silent peer was not closed"
    );
    assert!(
        trickler.await.expect("trickler"),
        "the trickling peer finished its message instead of being cut off"
    );
}

/// 1,000 authenticated connections to one listener at once, each carrying
/// its own frame to the right place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections_to_one_listener() {
    const N: usize = 1_000;
    let (kb, b) = bind(
        2,
        TcpConfig {
            handshake_timeout: 30 * SECOND,
            max_handshakes_per_prefix: 64,
            accept_backlog: N,
            ..config("net")
        },
    );
    let (_, a) = bind(
        1,
        TcpConfig {
            handshake_timeout: 30 * SECOND,
            ..config("net")
        },
    );
    let a = Arc::new(a);
    let target = PeerAddress::tcp(kb.peer_id(), b.local_addr());
    // Dial with at most 32 handshakes in flight (the listener allows 64 per
    // IP); every connection stays open until the end.
    let permits = Arc::new(tokio::sync::Semaphore::new(32));
    let mut dials = Vec::with_capacity(N);
    for i in 0..N {
        let (a, target, permits) = (a.clone(), target.clone(), permits.clone());
        dials.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore");
            let mut conn = a.dial(&target).await.expect("dial");
            send(&mut conn, data(1, &(i as u32).to_be_bytes())).await;
            conn
        }));
    }
    let mut seen = vec![false; N];
    let mut accepted = Vec::with_capacity(N);
    for _ in 0..N {
        let mut conn = accept(&b).await.expect("accept");
        let frames = recv(&mut conn).await.expect("frame");
        let Some(Frame::Data { payload, .. }) = frames.first() else {
            panic!("expected data, got {frames:?}");
        };
        let index = u32::from_be_bytes(payload[..4].try_into().expect("4 bytes")) as usize;
        assert!(!seen[index], "connection {index} seen twice");
        seen[index] = true;
        accepted.push(conn);
    }
    let mut dialed = Vec::with_capacity(N);
    for d in dials {
        dialed.push(d.await.expect("dial task"));
    }
    assert!(seen.iter().all(|&s| s));
    // All 1,000 are alive at once: each answers on its own connection.
    for conn in &mut accepted {
        send(conn, Frame::Ping(1)).await;
    }
    for conn in &mut dialed {
        assert!(matches!(recv(conn).await.expect("pong")[0], Frame::Ping(1)));
    }
}

/// A proxy that forwards bytes, and breaks the first connection after a
/// budget of bytes toward the listener: cuts it (`freeze` false) or stops
/// forwarding in both directions while holding both sockets open, as a dead
/// peer or a dead path would (`freeze` true).
async fn cutting_proxy(
    target: SocketAddr,
    cut_after: usize,
    freeze: bool,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
    let addr = listener.local_addr().expect("proxy addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let Ok(mut outbound) = TcpStream::connect(target).await else {
                continue;
            };
            tokio::spawn(async move {
                if n > 0 {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    return;
                }
                let (mut ir, mut iw) = inbound.split();
                let (mut or, mut ow) = outbound.split();
                let up = async {
                    let mut budget = cut_after;
                    let mut buf = vec![0u8; 16 * 1024];
                    while budget > 0 {
                        let Ok(read) = ir.read(&mut buf).await else {
                            return;
                        };
                        if read == 0 {
                            return;
                        }
                        let take = read.min(budget);
                        if ow.write_all(&buf[..take]).await.is_err() {
                            return;
                        }
                        budget -= take;
                    }
                };
                let down = tokio::io::copy(&mut or, &mut iw);
                tokio::select! {
                    _ = up => {}
                    _ = down => {}
                }
                if freeze {
                    // Both sockets stay open; nothing moves any more.
                    std::future::pending::<()>().await;
                }
                // Dropping both sockets here cuts the connection mid-stream.
            });
        }
    });
    (addr, connections)
}

/// A connection cut in the middle of a large message delivers nothing
/// twice and nothing corrupt: what arrives is strictly increasing and every
/// message is whole; after the router redials, delivery resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_message_delivers_nothing_twice_or_corrupt() {
    const TOTAL: u64 = 120;
    const SIZE: usize = 50_000;
    let mut net = common::network()
        .seed(31)
        .nodes(2)
        .isolated()
        .build()
        .expect("build");
    let d = ChannelDescriptor {
        max_message_size: SIZE + 64,
        ..ChannelDescriptor::new(0x10, "big")
    };
    let mut ch = net
        .open_channel_on_all::<testkit::suite::Seq>(d)
        .expect("open");
    net.start().expect("start");
    let p2p::Endpoint::Tcp(host_port) = &net.address(1).endpoint else {
        panic!("node 1 listens on tcp");
    };
    let listen = host_port.socket_addr().expect("a socket address");
    // About 20 messages in, and not on a message boundary.
    let (proxy, connections) = cutting_proxy(listen, 20 * SIZE + 12_345, false).await;
    net.router(0)
        .dial(PeerAddress::tcp(net.peer_id(1), proxy))
        .await
        .expect("dial via proxy");
    net.wait_connected(0, 1, 10 * SECOND)
        .await
        .expect("connect");
    let pattern = |seq: u64| testkit::suite::Seq {
        seq,
        pad: (0..SIZE)
            .map(|i| (i as u64).wrapping_mul(seq + 1) as u8)
            .collect(),
    };
    let (tx, _) = ch.remove(0);
    let (_, mut rx) = ch.remove(0);
    let n1 = net.peer_id(1);
    let receiver = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(env) = testkit::recv_within(&mut rx, 10 * SECOND).await {
            assert_eq!(env.message, pattern(env.message.seq), "corrupt message");
            seen.push(env.message.seq);
            if env.message.seq == TOTAL - 1 {
                break;
            }
        }
        seen
    });
    for seq in 0..TOTAL {
        loop {
            match tx.send(n1, pattern(seq)).await {
                Ok(()) => break,
                Err(SendError::NotConnected(_)) => tokio::time::sleep(SECOND / 20).await,
                Err(e) => panic!("{e}"),
            }
        }
    }
    let seen = receiver.await.expect("receiver");
    assert!(
        connections.load(Ordering::SeqCst) >= 2,
        "the cut connection was replaced"
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "delivered twice or out of order: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&(TOTAL - 1)));
    assert!(
        (seen.len() as u64) < TOTAL,
        "the cut lost what was in flight"
    );
    net.shutdown().await;
}

/// A peer that goes silent without closing (the proxy stops forwarding
/// and holds the sockets) is detected by keepalive: no pong within
/// `pong_timeout` after a ping ends the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_detects_a_silent_peer_over_tcp() {
    let mut net = common::network()
        .seed(32)
        .nodes(2)
        .isolated()
        .configure(|_, c| {
            c.ping_interval = SECOND;
            c.pong_timeout = SECOND;
        })
        .build()
        .expect("build");
    let mut ch = net
        .open_channel_on_all::<testkit::suite::Seq>(ChannelDescriptor::new(0x10, "seq"))
        .expect("open");
    net.start().expect("start");
    let p2p::Endpoint::Tcp(host_port) = &net.address(1).endpoint else {
        panic!("node 1 listens on tcp");
    };
    let listen = host_port.socket_addr().expect("a socket address");
    let (proxy, _) = cutting_proxy(listen, 8_000, true).await;
    let n1 = net.peer_id(1);
    let mut updates = net.router(0).subscribe();
    net.router(0)
        .dial(PeerAddress::tcp(n1, proxy))
        .await
        .expect("dial via proxy");
    net.wait_connected(0, 1, 10 * SECOND)
        .await
        .expect("connect");
    // Spend the proxy's budget: from here on the path is dead.
    ch[0]
        .0
        .send(n1, testkit::suite::Seq::padded(1, 10_000))
        .await
        .expect("send");
    let reason = tokio::time::timeout(30 * SECOND, async {
        loop {
            match updates.recv().await {
                Ok(u) if u.peer == n1 => {
                    if let p2p::PeerStatus::Down { reason } = u.status {
                        return reason;
                    }
                }
                Ok(_) => {}
                Err(e) => return format!("updates ended: {e}"),
            }
        }
    })
    .await
    .expect("node 0 notices the dead peer");
    assert!(reason.contains("keepalive"), "{reason}");
    drop(ch.remove(1));
    net.shutdown().await;
}

/// A peer that completes the handshake and Hello, then sends a frame over
/// the listener's `max_frame_size`, is disconnected and loses score: a
/// transport-level violation costs as much as a router-level one, so
/// reconnecting to repeat it ends in a ban.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_limit_costs_the_peer_its_score() {
    let mut net = common::network_with_frame_size(4_096)
        .seed(33)
        .nodes(1)
        .isolated()
        .build()
        .expect("build");
    let _ch = net
        .open_channel_on_all::<testkit::suite::Seq>(ChannelDescriptor::new(0x10, "seq"))
        .expect("open");
    net.start().expect("start");
    let (attacker_key, attacker) = bind(1_000, config("switchyard-local"));
    let mut conn = attacker.dial(net.address(0)).await.expect("dial");
    let hello = p2p::proto::NodeInfo {
        protocol_version: p2p::router::PROTOCOL_VERSION,
        network_id: "switchyard-local".into(),
        peer_id: attacker_key.peer_id().as_bytes().to_vec().into(),
        channels: vec![p2p::proto::ChannelInfo {
            id: 0x10,
            recv_window: 64,
            ..Default::default()
        }],
        ..Default::default()
    };
    send(&mut conn, Frame::Hello(Box::new(hello))).await;
    assert!(matches!(
        recv(&mut conn).await.expect("hello")[0],
        Frame::Hello(_)
    ));
    let bad = attacker_key.peer_id();
    net.wait_until("attacker admitted", 10 * SECOND, |net| {
        net.router(0).is_connected(bad)
    })
    .await
    .expect("admitted");
    send(&mut conn, data(0x10, &[0u8; 10_000])).await;
    net.wait_until("attacker disconnected", 10 * SECOND, |net| {
        !net.router(0).is_connected(bad)
    })
    .await
    .expect("disconnected");
    let score = net.router(0).score(bad).await.expect("score");
    assert!(score.is_some_and(|s| s < 0), "score {score:?}");
    net.shutdown().await;
}

/// A small message that arrives right behind a large one must not share
/// the large one's buffer: the router keeps each received message until
/// its reactor takes it and counts it at its own size, so a byte of it
/// must not keep megabytes alive after the large message is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_frame_behind_a_large_one_does_not_share_its_buffer() {
    let (_, a) = bind(1, config("net"));
    let (kb, b) = bind(2, config("net"));
    let mut out = a
        .dial(&PeerAddress::tcp(kb.peer_id(), b.local_addr()))
        .await
        .expect("dial");
    let mut inc = accept(&b).await.expect("accept");
    let mut frames = vec![data(1, &vec![7u8; 1 << 20]), data(2, b"tiny")];
    out.sink.send(&mut frames).await.expect("send");
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(recv(&mut inc).await.expect("frames"));
    }
    let (Frame::Data { payload: large, .. }, Frame::Data { payload: small, .. }) =
        (&got[0], &got[1])
    else {
        panic!("two data frames: {got:?}");
    };
    assert_eq!((large.len(), &small[..]), (1 << 20, &b"tiny"[..]));
    // Were they in one buffer, the small one would sit a few bytes past the
    // end of the large one.
    let end = large.as_ptr() as usize + large.len();
    let at = small.as_ptr() as usize;
    assert!(
        !(end..end + 4096).contains(&at),
        "the small frame lies {} bytes past the large one, in its buffer",
        at - end
    );
}

/// Polls `condition` for up to 10 s.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + 10 * SECOND;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every connection the listener turns away is counted by its cause:
/// over its per-network limit, over its global limit (both closed at once,
/// never reaching `accept`, so counted in the transport's own counts), and
/// past the handshake deadline (reported through `accept`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refused_handshake_is_counted_by_cause() {
    let (_, b) = bind(
        2,
        TcpConfig {
            max_handshakes_per_prefix: 2,
            max_handshakes: 3,
            ..config("net")
        },
    );
    let counts = b.refusal_counts().expect("TCP counts its refusals");
    let addr = b.local_addr();
    // Ten idle connections from one network: two hold its slots, eight
    // are closed at once.
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
    }
    eventually("eight refused for the network's limit", || {
        counts.get(Refusal::TooManyHandshakesFromPrefix) == 8
    })
    .await;
    // Two from other networks: one takes the last of the three slots, the
    // other is closed for the global limit.
    for net in [2u8, 3] {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from(([127, net, 0, 1], 0)))
            .expect("bind a source address");
        idle.push(socket.connect(addr).await.expect("connect"));
    }
    eventually("one refused for the global limit", || {
        counts.get(Refusal::TooManyHandshakes) == 1
    })
    .await;
    // The three that hold slots never send a byte: each is refused at the
    // deadline.
    for _ in 0..3 {
        let err = accept(&b).await.expect_err("an idle handshake");
        assert_eq!(err.refusal(), Some(Refusal::HandshakeTimeout), "{err}");
    }
    assert_eq!(counts.get(Refusal::TooManyHandshakesFromPrefix), 8);
    assert_eq!(counts.get(Refusal::TooManyHandshakes), 1);
    drop(idle);
}
