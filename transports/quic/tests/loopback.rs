//! The QUIC transport on real loopback sockets: who may connect, what a
//! hostile or broken peer can do to a listener, how connections end.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use p2p::transport::{
    Connection, ConnectionError, Frame, GoodbyeReason, Refusal, Transport, TransportError,
};
use p2p::{ChannelId, Keypair, PeerAddress, PeerStatus};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::UdpSocket;
use transport_quic::{CLOSE_FRAMING, QuicConfig, QuicTransport};

const SECOND: Duration = Duration::from_secs(1);

fn config(network: &str) -> QuicConfig {
    QuicConfig {
        network_id: network.into(),
        handshake_timeout: 5 * SECOND,
        ..QuicConfig::default()
    }
}

fn bind(seed: u64, config: QuicConfig) -> (Keypair, QuicTransport) {
    let keypair = Keypair::from_seed(seed);
    let transport = QuicTransport::bind_now(&keypair, config).expect("bind loopback");
    (keypair, transport)
}

async fn accept(transport: &QuicTransport) -> Result<Connection, TransportError> {
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

/// Receives until `n` frames have arrived.
async fn recv_n(conn: &mut Connection, n: usize) -> Vec<Frame> {
    let mut all = Vec::new();
    while all.len() < n {
        all.extend(recv(conn).await.expect("frames"));
    }
    all
}

/// Receives until a goodbye: the frames before it and the goodbye. Nothing
/// may follow the goodbye in its batch, and the stream may not end first.
async fn recv_until_goodbye(conn: &mut Connection) -> (Vec<Frame>, p2p::proto::Goodbye) {
    let mut got = Vec::new();
    loop {
        let frames = match recv(conn).await {
            Ok(frames) => frames,
            Err(e) => panic!("no goodbye: {e}"),
        };
        let mut goodbye = None;
        for frame in frames {
            match frame {
                Frame::Goodbye(g) => goodbye = Some(g),
                other => {
                    assert!(goodbye.is_none(), "{other:?} after the goodbye");
                    got.push(other);
                }
            }
        }
        if let Some(g) = goodbye {
            return (got, g);
        }
    }
}

/// Dials `to` from `from` and accepts it; the dialer sends a first control
/// frame, as the router's `Hello` would be, so channel streams are read.
async fn connect(
    from: &QuicTransport,
    to: &QuicTransport,
    to_key: &Keypair,
) -> (Connection, Connection) {
    let mut out = from
        .dial(&PeerAddress::quic(to_key.peer_id(), to.local_addr()))
        .await
        .expect("dial");
    let mut inc = accept(to).await.expect("accept");
    send(&mut out, Frame::Ping(0)).await;
    send(&mut inc, Frame::Ping(0)).await;
    assert!(matches!(recv_n(&mut inc, 1).await[0], Frame::Ping(0)));
    assert!(matches!(recv_n(&mut out, 1).await[0], Frame::Ping(0)));
    (out, inc)
}

/// Small and large payloads mixed on one channel (large ones leave the
/// sink as their own buffer behind a separately encoded head) arrive
/// whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_large_payloads_keep_their_bytes_and_order() {
    let (_, a) = bind(21, config("net"));
    let (kb, b) = bind(22, config("net"));
    let (mut out, mut inc) = connect(&a, &b, &kb).await;
    let sizes = [0usize, 100, 2048, 2049, 70_000, 5, 300_000, 1, 65_536, 0];
    let payload =
        |i: usize, len: usize| -> Vec<u8> { (0..len).map(|j| (i * 31 + j) as u8).collect() };
    let mut batch: Vec<Frame> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| data(9, &payload(i, len)))
        .collect();
    out.sink.send(&mut batch).await.expect("send");
    let got = recv_n(&mut inc, sizes.len()).await;
    for (i, (frame, &len)) in got.iter().zip(&sizes).enumerate() {
        let Frame::Data {
            channel,
            payload: p,
        } = frame
        else {
            panic!("frame {i}: {frame:?}");
        };
        assert_eq!(channel.0, 9);
        assert_eq!(p.as_ref(), payload(i, len).as_slice(), "frame {i}");
    }
}

/// A channel whose stream window is full does not hold back the sink: the
/// frames quinn cannot take at once move, with every later frame of that
/// channel, to a writer task, and everything arrives in order per channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_over_its_stream_window_keeps_its_order_and_holds_back_no_other() {
    let small_window = QuicConfig {
        stream_receive_window: 16 * 1024,
        ..config("net")
    };
    let (_, a) = bind(23, small_window.clone());
    let (kb, b) = bind(24, small_window);
    let (mut out, mut inc) = connect(&a, &b, &kb).await;
    let payload = |channel: u16, i: usize| -> Vec<u8> {
        (0..4096)
            .map(|j| (i * 7 + j + usize::from(channel)) as u8)
            .collect()
    };
    let mut sent = 0;
    for round in 0..3 {
        // Each batch alone is ten times channel 1's stream window; nobody
        // reads yet, so quinn cannot take it all.
        let mut batch = Vec::new();
        for i in 0..40 {
            batch.push(data(1, &payload(1, round * 40 + i)));
        }
        batch.push(data(2, &payload(2, round)));
        sent += batch.len();
        tokio::time::timeout(2 * SECOND, out.sink.send(&mut batch))
            .await
            .expect("a full stream window does not block the sink")
            .expect("send");
    }
    let got = recv_n(&mut inc, sent).await;
    assert_eq!(got.len(), sent);
    let (mut ones, mut twos) = (0, 0);
    for frame in &got {
        let Frame::Data {
            channel,
            payload: p,
        } = frame
        else {
            panic!("{frame:?}");
        };
        match channel.0 {
            1 => {
                assert_eq!(
                    p.as_ref(),
                    payload(1, ones).as_slice(),
                    "channel 1, frame {ones}"
                );
                ones += 1;
            }
            2 => {
                assert_eq!(
                    p.as_ref(),
                    payload(2, twos).as_slice(),
                    "channel 2, frame {twos}"
                );
                twos += 1;
            }
            other => panic!("channel {other}"),
        }
    }
    assert_eq!((ones, twos), (120, 3));
}

/// Protocol version 3: the listener opens the control stream in 0.5-RTT
/// data with its `Hello` (set with `carry_hello`) behind the version byte,
/// so the dialer's stream yields that `Hello` first, before the dialer has
/// sent anything; the listener's connection says it was sent, the
/// dialer's that its own was not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_sends_its_hello_with_its_handshake() {
    let (_, a) = bind(1, config("net"));
    let (kb, b) = bind(2, config("net"));
    let hello = Frame::Hello(Box::new(p2p::proto::NodeInfo {
        protocol_version: p2p::router::PROTOCOL_VERSION,
        network_id: "net".into(),
        peer_id: kb.peer_id().as_bytes().to_vec().into(),
        software_version: "listener".into(),
        ..Default::default()
    }));
    b.carry_hello(&hello);
    let mut out = a
        .dial(&PeerAddress::quic(kb.peer_id(), b.local_addr()))
        .await
        .expect("dial");
    assert_eq!(recv_n(&mut out, 1).await, vec![hello]);
    let inc = accept(&b).await.expect("accept");
    assert!(inc.hello_sent && !out.hello_sent);
}

/// Both sides learn the other's proven PeerId, and control and channel
/// frames flow both ways, each channel in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_proves_both_identities_and_frames_flow() {
    let (ka, a) = bind(1, config("net"));
    let (kb, b) = bind(2, config("net"));
    let (mut out, mut inc) = connect(&a, &b, &kb).await;
    assert_eq!(out.remote, kb.peer_id());
    assert_eq!(inc.remote, ka.peer_id());
    assert_eq!(inc.remote_ip, Some(a.local_addr().ip()));
    assert_eq!(
        out.remote_address,
        Some(PeerAddress::quic(kb.peer_id(), b.local_addr()))
    );
    let mut batch = Vec::new();
    for i in 0..100u32 {
        batch.push(data(7, &i.to_be_bytes()));
        batch.push(data(8, &(1000 + i).to_be_bytes()));
    }
    batch.push(Frame::Credit {
        channel: ChannelId(7),
        messages: 3,
    });
    out.sink.send(&mut batch).await.expect("send");
    let got = recv_n(&mut inc, 201).await;
    for channel in [7u16, 8] {
        let seq: Vec<u32> = got
            .iter()
            .filter_map(|f| match f {
                Frame::Data {
                    channel: c,
                    payload,
                } if c.0 == channel => Some(u32::from_be_bytes(
                    payload[..4].try_into().expect("4 bytes"),
                )),
                _ => None,
            })
            .collect();
        let base = if channel == 7 { 0 } else { 1000 };
        assert_eq!(
            seq,
            (base..base + 100).collect::<Vec<_>>(),
            "channel {channel}"
        );
    }
    assert!(
        got.iter()
            .any(|f| matches!(f, Frame::Credit { messages: 3, .. }))
    );
    send(&mut inc, Frame::Pong(9)).await;
    assert!(matches!(recv_n(&mut out, 1).await[0], Frame::Pong(9)));
}

/// Dialing an address whose PeerId is not the key that answers fails with
/// `WrongPeer`, naming both; the listener hands nothing to its router.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_expected_peer_id_fails_the_dial() {
    let (_, a) = bind(1, config("net"));
    let (kb, b) = bind(2, config("net"));
    let impostor = Keypair::from_seed(3).peer_id();
    let err = a
        .dial(&PeerAddress::quic(impostor, b.local_addr()))
        .await
        .expect_err("another key answers");
    match &err {
        TransportError::WrongPeer { expected, actual } => {
            assert_eq!((*expected, *actual), (impostor, kb.peer_id()));
        }
        other => panic!("expected WrongPeer, got {other}"),
    }
    assert!(accept(&b).await.is_err());
}

/// Nodes of different network ids fail the TLS handshake (no common
/// ALPN); the dialer's error says so and the listener hands nothing on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_network_id_never_connects() {
    let (_, a) = bind(1, config("one"));
    let (kb, b) = bind(2, config("two"));
    let err = a
        .dial(&PeerAddress::quic(kb.peer_id(), b.local_addr()))
        .await
        .expect_err("different networks");
    assert!(
        err.refusal() == Some(Refusal::NetworkMismatch) && err.to_string().contains("network id"),
        "{err}"
    );
    let err = accept(&b).await.expect_err("different networks");
    assert_eq!(err.refusal(), Some(Refusal::NetworkMismatch), "{err}");
}

/// Accepts any server certificate: for hostile clients.
#[derive(Debug)]
struct AcceptAnything;

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![
            SignatureScheme::ED25519,
            SignatureScheme::ECDSA_NISTP256_SHA256,
        ]
    }
}

/// A raw quinn client on `network`, presenting `certificate` (or none).
fn raw_client(
    network: &str,
    certificate: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> (quinn::Endpoint, quinn::ClientConfig) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything));
    let mut tls = match certificate {
        Some((cert, key)) => builder
            .with_client_auth_cert(vec![cert], key)
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![transport_quic::alpn(network)];
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic client config");
    let endpoint =
        quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).expect("client endpoint");
    (endpoint, quinn::ClientConfig::new(Arc::new(crypto)))
}

/// `keypair`'s certificate as the transport makes it, for a raw client.
fn our_certificate(keypair: &Keypair) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let pkcs8 = transport_quic::ed25519_pkcs8(&keypair.secret_bytes()).expect("pkcs8");
    let der = PrivatePkcs8KeyDer::from(pkcs8.clone());
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)
        .expect("ed25519 key");
    let cert = rcgen::CertificateParams::default()
        .self_signed(&key)
        .expect("certificate");
    (
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8)),
    )
}

/// A raw client's connection is refused by the listener's verifier: it
/// fails at the handshake, or is closed right after it, and never
/// reaches the router.
async fn refused(
    endpoint: &quinn::Endpoint,
    client: quinn::ClientConfig,
    to: SocketAddr,
) -> String {
    let connecting = endpoint
        .connect_with(client, to, "switchyard")
        .expect("connect");
    match tokio::time::timeout(10 * SECOND, connecting)
        .await
        .expect("handshake ends within 10 s")
    {
        Err(e) => e.to_string(),
        // In TLS 1.3 the client finishes before the server has checked
        // its certificate; the server's refusal closes it at once.
        Ok(conn) => tokio::time::timeout(10 * SECOND, conn.closed())
            .await
            .expect("closed within 10 s")
            .to_string(),
    }
}

/// A client that presents no certificate is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused() {
    let (_, b) = bind(2, config("net"));
    let (endpoint, client) = raw_client("net", None);
    let reason = refused(&endpoint, client, b.local_addr()).await;
    assert!(reason.contains("certificate"), "{reason}");
    let err = accept(&b).await.expect_err("never handed on");
    assert!(err.to_string().contains("certificate"), "{err}");
}

/// A client whose certificate carries another kind of key (ECDSA P-256)
/// is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_with_another_key_type_is_refused() {
    let (_, b) = bind(2, config("net"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("p256");
    let cert = rcgen::CertificateParams::default()
        .self_signed(&key)
        .expect("certificate");
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let (endpoint, client) = raw_client("net", Some((cert.der().clone(), key_der)));
    // The listener accepts only `ed25519` handshake signatures, so the
    // client cannot even offer its P-256 certificate.
    let reason = refused(&endpoint, client, b.local_addr()).await;
    assert!(reason.contains("certificate"), "{reason}");
    let err = accept(&b).await.expect_err("never handed on");
    assert!(err.to_string().contains("certificate"), "{err}");
}

/// A tiny deterministic generator for test bytes.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Thousands of garbage datagrams (random bytes, and random bytes dressed
/// as QUIC long- and short-header packets) sent to the listener's port do
/// not disturb an established connection, and the listener still accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_do_not_disturb_an_existing_connection() {
    let (_, a) = bind(1, config("net"));
    let (kb, b) = bind(2, config("net"));
    let (mut out, mut inc) = connect(&a, &b, &kb).await;
    let attacker = UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    let target = b.local_addr();
    let mut rng = XorShift(0x5eed_1234_abcd);
    for i in 0..5_000u32 {
        let len = 1 + (rng.next() % 1400) as usize;
        let mut datagram: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        match i % 3 {
            // A long-header Initial of QUIC v1 with random contents.
            0 if len > 8 => {
                datagram[0] = 0xc0 | (datagram[0] & 0x0f);
                datagram[1..5].copy_from_slice(&1u32.to_be_bytes());
            }
            // A short-header packet.
            1 => datagram[0] = 0x40 | (datagram[0] & 0x3f),
            _ => {}
        }
        attacker
            .send_to(&datagram, target)
            .await
            .expect("send garbage");
        if i % 500 == 0 {
            // Frames keep flowing during the flood.
            send(&mut out, data(1, &i.to_be_bytes())).await;
            let got = recv_n(&mut inc, 1).await;
            assert!(
                matches!(&got[0], Frame::Data { payload, .. } if payload[..] == i.to_be_bytes())
            );
        }
    }
    send(&mut inc, data(2, b"after the flood")).await;
    let got = recv_n(&mut out, 1).await;
    assert!(matches!(&got[0], Frame::Data { payload, .. } if &payload[..] == b"after the flood"));
    // The listener still accepts honest peers.
    let (_, c) = bind(3, config("net"));
    connect(&c, &b, &kb).await;
}

/// 500 authenticated connections to one listener at once, each carrying
/// its own frame to the right place, all alive together at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_connections_to_one_listener() {
    const N: usize = 500;
    let (kb, b) = bind(
        2,
        QuicConfig {
            handshake_timeout: 30 * SECOND,
            max_handshakes_per_prefix: 64,
            accept_backlog: N,
            ..config("net")
        },
    );
    let (_, a) = bind(
        1,
        QuicConfig {
            handshake_timeout: 30 * SECOND,
            ..config("net")
        },
    );
    let a = Arc::new(a);
    let target = PeerAddress::quic(kb.peer_id(), b.local_addr());
    // At most 32 handshakes in flight (the listener allows 64 per IP).
    let permits = Arc::new(tokio::sync::Semaphore::new(32));
    let mut dials = Vec::with_capacity(N);
    for i in 0..N {
        let (a, target, permits) = (a.clone(), target.clone(), permits.clone());
        dials.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore");
            let mut conn = a.dial(&target).await.expect("dial");
            let mut frames = vec![Frame::Ping(0), data(1, &(i as u32).to_be_bytes())];
            conn.sink.send(&mut frames).await.expect("send");
            conn
        }));
    }
    let mut seen = vec![false; N];
    let mut accepted = Vec::with_capacity(N);
    for _ in 0..N {
        let mut conn = accept(&b).await.expect("accept");
        let frames = recv_n(&mut conn, 2).await;
        let Some(Frame::Data { payload, .. }) = frames.get(1) else {
            panic!("expected ping then data, got {frames:?}");
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
    for conn in &mut accepted {
        send(conn, Frame::Ping(1)).await;
    }
    for conn in &mut dialed {
        assert!(matches!(recv_n(conn, 1).await[0], Frame::Ping(1)));
    }
}

/// A goodbye reaches the peer with its reason and detail, after the data
/// sent before it, and closes the connection: both sides see it end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goodbye_carries_its_reason_and_closes_the_connection() {
    let (_, a) = bind(1, config("net"));
    let (kb, b) = bind(2, config("net"));
    let (mut out, mut inc) = connect(&a, &b, &kb).await;
    let mut frames: Vec<Frame> = (0..50u32).map(|i| data(3, &i.to_be_bytes())).collect();
    frames.push(Frame::goodbye(GoodbyeReason::Shutdown, "going away"));
    out.sink.send(&mut frames).await.expect("send");
    let (got, goodbye) = recv_until_goodbye(&mut inc).await;
    assert_eq!(goodbye.reason(), GoodbyeReason::Shutdown);
    assert_eq!(goodbye.detail, "going away");
    assert_eq!(got.len(), 50, "data sent before the goodbye arrived first");
    assert!(matches!(recv(&mut inc).await, Err(ConnectionError::Closed)));
    // Sending after a goodbye fails; the dialer's stream ends too.
    let mut more = vec![Frame::Ping(1)];
    assert!(out.sink.send(&mut more).await.is_err());
    assert!(recv(&mut out).await.is_err());
}

/// A receiver that reads nothing until the sender has given up waiting and
/// closed the connection still gets the data first, then the goodbye, then
/// the end: the goodbye waits for the channel streams even when the
/// connection's close is already known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goodbye_read_after_the_close_still_comes_after_the_data() {
    let quick_close = QuicConfig {
        close_timeout: Duration::from_millis(200),
        ..config("net")
    };
    let (_, a) = bind(5, quick_close.clone());
    let (kb, b) = bind(6, quick_close);
    let (mut out, mut inc) = connect(&a, &b, &kb).await;
    let mut frames: Vec<Frame> = (0..50u32).map(|i| data(3, &i.to_be_bytes())).collect();
    frames.push(Frame::goodbye(GoodbyeReason::Shutdown, "going away"));
    // Waits for the peer to close, up to `close_timeout`, then closes.
    out.sink.send(&mut frames).await.expect("send");
    // The receiver's side has seen the close, and drained it, before it
    // reads anything: its transport has no connection left.
    tokio::time::timeout(10 * SECOND, b.wait_idle())
        .await
        .expect("the receiver sees the close within 10 s");
    let (got, goodbye) = recv_until_goodbye(&mut inc).await;
    assert_eq!(goodbye.reason(), GoodbyeReason::Shutdown);
    assert_eq!(got.len(), 50, "data sent before the goodbye arrived first");
    for (i, frame) in got.iter().enumerate() {
        assert!(
            matches!(frame, Frame::Data { payload, .. } if payload.as_ref() == (i as u32).to_be_bytes()),
            "frame {i}: {frame:?}"
        );
    }
    assert!(matches!(recv(&mut inc).await, Err(ConnectionError::Closed)));
}

/// A frame announcing more than `max_frame_size` ends the connection with
/// `FrameTooLarge`, decided from its length prefix, and the sender learns
/// the connection was closed over a framing violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_ends_the_connection() {
    let (_, a) = bind(1, config("net"));
    let (kb, b) = bind(
        2,
        QuicConfig {
            max_frame_size: 1024,
            ..config("net")
        },
    );
    let (mut out, mut inc) = connect(&a, &b, &kb).await;
    send(&mut out, data(1, &[0u8; 100])).await;
    assert_eq!(recv_n(&mut inc, 1).await.len(), 1);
    send(&mut out, data(1, &[0u8; 100_000])).await;
    match recv(&mut inc).await {
        Err(ConnectionError::FrameTooLarge { size, max }) => {
            assert!(size > 100_000 && max == 1024, "{size} {max}");
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    match recv(&mut out).await {
        Err(ConnectionError::Reset(reason)) => assert!(reason.contains("framing"), "{reason}"),
        other => panic!("expected a reset over framing, got {other:?}"),
    }
}

/// The control stream a listener opens (in 0.5-RTT data), its version
/// byte read.
async fn control_stream(conn: &quinn::Connection) -> (quinn::SendStream, quinn::RecvStream) {
    let (send, mut recv) = conn.accept_bi().await.expect("control");
    let mut version = [0u8; 1];
    recv.read_exact(&mut version).await.expect("version");
    assert_eq!(version[0], transport_quic::CONTROL_STREAM_VERSION);
    (send, recv)
}

/// A raw peer with a valid identity that opens a second stream for the
/// same channel breaks the framing: the listener's router sees a protocol
/// error and the peer gets `CLOSE_FRAMING` with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_stream_for_a_channel_is_a_violation() {
    let (_, b) = bind(2, config("net"));
    let (endpoint, client) = raw_client("net", Some(our_certificate(&Keypair::from_seed(5))));
    let conn = endpoint
        .connect_with(client, b.local_addr(), "switchyard")
        .expect("connect")
        .await
        .expect("handshake");
    let (mut control, _control_recv) = control_stream(&conn).await;
    let mut first = vec![];
    let mut ping = bytes::BytesMut::new();
    p2p::transport::encode_frame(&Frame::Ping(1), &mut ping);
    first.extend_from_slice(&ping);
    control.write_all(&first).await.expect("control");
    let mut inc = accept(&b).await.expect("accept");
    assert_eq!(inc.remote, Keypair::from_seed(5).peer_id());
    assert!(matches!(recv_n(&mut inc, 1).await[0], Frame::Ping(1)));
    for _ in 0..2 {
        let mut stream = conn.open_uni().await.expect("uni");
        let mut bytes = bytes::BytesMut::from(&9u16.to_be_bytes()[..]);
        p2p::transport::encode_frame(&data(9, b"x"), &mut bytes);
        stream.write_all(&bytes).await.expect("write");
    }
    let mut frames = Vec::new();
    let err = loop {
        match recv(&mut inc).await {
            Ok(more) => frames.extend(more),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(&err, ConnectionError::Protocol(r) if r.contains("second stream for channel 9")),
        "{err:?}"
    );
    assert!(frames.len() <= 1, "{frames:?}");
    match conn.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(CLOSE_FRAMING));
        }
        other => panic!("expected an application close, got {other}"),
    }
}

/// A raw peer with a valid identity starts a 1 MiB frame on each of 20
/// channel streams and never finishes one: each is within
/// `max_frame_size`, but together they pass the connection's reassembly
/// budget (by default one largest frame, 16 MiB + 64), so the listener
/// closes the connection, where before it buffered up to 264 streams ×
/// 16 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_frames_over_the_reassembly_budget_end_the_connection() {
    const MIB: usize = 1024 * 1024;
    let (_, b) = bind(2, config("net"));
    let (endpoint, client) = raw_client("net", Some(our_certificate(&Keypair::from_seed(6))));
    let conn = endpoint
        .connect_with(client, b.local_addr(), "switchyard")
        .expect("connect")
        .await
        .expect("handshake");
    let (mut control, _control_recv) = control_stream(&conn).await;
    let mut first = vec![];
    let mut ping = bytes::BytesMut::new();
    p2p::transport::encode_frame(&Frame::Ping(1), &mut ping);
    first.extend_from_slice(&ping);
    control.write_all(&first).await.expect("control");
    let mut inc = accept(&b).await.expect("accept");
    assert!(matches!(recv_n(&mut inc, 1).await[0], Frame::Ping(1)));
    let attack = {
        let conn = conn.clone();
        tokio::spawn(async move {
            // Held open: a finished stream would end mid-frame, another
            // violation.
            let mut streams = Vec::new();
            for channel in 0..20u16 {
                let Ok(mut stream) = conn.open_uni().await else {
                    break;
                };
                let mut head = bytes::BytesMut::from(&channel.to_be_bytes()[..]);
                p2p::transport::encode_data_head(ChannelId(channel), MIB, &mut head);
                let mut bytes = head.to_vec();
                bytes.resize(bytes.len() + MIB - 1, 0x41);
                if stream.write_all(&bytes).await.is_err() {
                    break;
                }
                streams.push(stream);
            }
            std::future::pending::<()>().await;
            drop(streams);
        })
    };
    let mut frames = Vec::new();
    let err = loop {
        match recv(&mut inc).await {
            Ok(more) => frames.extend(more),
            Err(e) => break e,
        }
    };
    assert!(
        err.to_string().contains("reassembly budget"),
        "expected the reassembly budget to end the connection, got {err:?}"
    );
    assert!(frames.is_empty(), "no frame was complete: {frames:?}");
    match conn.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(CLOSE_FRAMING));
        }
        other => panic!("expected an application close, got {other}"),
    }
    attack.abort();
}

/// The same attack on a node: its router counts the violation
/// (`transport_violations_total{reason="reassembly_budget"}`) and the
/// attacker pays for it in score.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_counts_and_penalises_a_reassembly_violation() {
    const MIB: usize = 1024 * 1024;
    let keypair = Keypair::from_seed(2);
    let transport = QuicTransport::bind_now(&keypair, config("net")).expect("bind");
    let listen = transport.local_addr();
    let mut builder = p2p::RouterBuilder::new(
        keypair,
        p2p::RouterConfig {
            network_id: "net".into(),
            ..p2p::RouterConfig::default()
        },
    );
    builder.transport(Arc::new(transport));
    let router = builder.start().expect("start");
    let mut updates = router.subscribe();

    let attacker = Keypair::from_seed(7);
    let (endpoint, client) = raw_client("net", Some(our_certificate(&attacker)));
    let conn = endpoint
        .connect_with(client, listen, "switchyard")
        .expect("connect")
        .await
        .expect("handshake");
    let (mut control, _control_recv) = control_stream(&conn).await;
    let hello = p2p::proto::NodeInfo {
        protocol_version: p2p::router::PROTOCOL_VERSION,
        network_id: "net".into(),
        peer_id: attacker.peer_id().as_bytes().to_vec().into(),
        ..Default::default()
    };
    let mut first = bytes::BytesMut::new();
    p2p::transport::encode_frame(&Frame::Hello(Box::new(hello)), &mut first);
    control.write_all(&first).await.expect("hello");
    let admitted = next_update(&mut updates).await;
    assert_eq!(admitted.peer, attacker.peer_id());
    assert!(
        matches!(admitted.status, PeerStatus::Up { .. }),
        "{admitted:?}"
    );
    let mut streams = Vec::new();
    for channel in 0..20u16 {
        let Ok(mut stream) = conn.open_uni().await else {
            break;
        };
        let mut bytes = bytes::BytesMut::from(&channel.to_be_bytes()[..]);
        p2p::transport::encode_data_head(ChannelId(channel), MIB, &mut bytes);
        bytes.resize(bytes.len() + MIB - 1, 0x41);
        if stream.write_all(&bytes).await.is_err() {
            break;
        }
        streams.push(stream);
    }
    // The connection's task counts the violation before it ends; the
    // supervisor then removes the peer and announces it.
    let removed = next_update(&mut updates).await;
    assert_eq!(removed.peer, attacker.peer_id());
    match &removed.status {
        PeerStatus::Down { reason } => {
            assert!(reason.contains("reassembly budget"), "{reason}");
        }
        other => panic!("expected the attacker removed, got {other:?}"),
    }
    assert!(!router.is_connected(attacker.peer_id()));
    assert_eq!(router.metrics().violations("reassembly_budget"), 1);
    let score = router.score(attacker.peer_id()).await.expect("router");
    assert!(
        score.is_some_and(|s| s < 0),
        "the attacker's score: {score:?}"
    );
    router.shutdown().await;
}

/// `max_reassembly_bytes` below `max_frame_size` could never reassemble a
/// frame that large: the transport refuses to bind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reassembly_budget_below_the_largest_frame_is_refused() {
    let result = QuicTransport::bind_now(
        &Keypair::from_seed(1),
        QuicConfig {
            max_frame_size: 2 * 1024 * 1024,
            max_reassembly_bytes: 1024 * 1024,
            ..config("net")
        },
    );
    let err = result.expect_err("refused");
    assert!(err.to_string().contains("max_reassembly_bytes"), "{err}");
}

/// The next peer update, within 10 s.
async fn next_update(updates: &mut p2p::PeerUpdates) -> p2p::PeerUpdate {
    tokio::time::timeout(10 * SECOND, updates.recv())
        .await
        .expect("a peer update within 10 s")
        .expect("the router is running")
}

/// A UDP relay between a dialer and a listener that can stop forwarding
/// (a dead peer or path), keeping both sockets open.
async fn freezable_relay(target: SocketAddr) -> (SocketAddr, Arc<AtomicBool>) {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("front"));
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("back"));
    let addr = front.local_addr().expect("addr");
    let frozen = Arc::new(AtomicBool::new(false));
    let client = Arc::new(parking_lot::Mutex::new(None::<SocketAddr>));
    {
        let (front, back, frozen, client) =
            (front.clone(), back.clone(), frozen.clone(), client.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *client.lock() = Some(from);
                if !frozen.load(Ordering::SeqCst) {
                    let _ = back.send_to(&buf[..n], target).await;
                }
            }
        });
    }
    {
        let frozen = frozen.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, _)) = back.recv_from(&mut buf).await {
                let to = *client.lock();
                if let (Some(to), false) = (to, frozen.load(Ordering::SeqCst)) {
                    let _ = front.send_to(&buf[..n], to).await;
                }
            }
        });
    }
    (addr, frozen)
}

/// A peer that goes silent without closing is detected by the QUIC idle
/// timeout on both sides, while keep-alives hold an idle but healthy
/// connection open past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_peer_is_detected_by_the_idle_timeout() {
    let short = |network: &str| QuicConfig {
        idle_timeout: 2 * SECOND,
        keep_alive_interval: SECOND / 2,
        ..config(network)
    };
    let (_, a) = bind(1, short("net"));
    let (kb, b) = bind(2, short("net"));
    let (relay, frozen) = freezable_relay(b.local_addr()).await;
    let mut out = a
        .dial(&PeerAddress::quic(kb.peer_id(), relay))
        .await
        .expect("dial via relay");
    let mut inc = accept(&b).await.expect("accept");
    send(&mut out, Frame::Ping(1)).await;
    assert!(matches!(recv_n(&mut inc, 1).await[0], Frame::Ping(1)));
    // Idle for twice the idle timeout: keep-alives keep it open.
    tokio::time::sleep(4 * SECOND).await;
    send(&mut out, data(1, b"still here")).await;
    assert_eq!(recv_n(&mut inc, 1).await.len(), 1);
    frozen.store(true, Ordering::SeqCst);
    for conn in [&mut out, &mut inc] {
        match recv(conn).await {
            Err(ConnectionError::Timeout(reason)) => assert!(reason.contains("idle"), "{reason}"),
            other => panic!("expected an idle timeout, got {other:?}"),
        }
    }
}

/// Every dial the listener refuses for its handshake limits is counted:
/// sixteen dialers from one address at once, against one handshake at a
/// time per network, and each one that failed shows in the counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refused_handshake_is_counted() {
    let (kb, b) = bind(
        2,
        QuicConfig {
            max_handshakes_per_prefix: 1,
            ..config("net")
        },
    );
    let counts = b.refusal_counts().expect("QUIC counts its refusals");
    let target = PeerAddress::quic(kb.peer_id(), b.local_addr());
    let dialers: Vec<_> = (0..16).map(|i| bind(100 + i, config("net")).1).collect();
    let results = futures::future::join_all(dialers.iter().map(|d| d.dial(&target))).await;
    let failed = results.iter().filter(|r| r.is_err()).count() as u64;
    assert!(
        failed >= 1,
        "no dial met the limit: the test proves nothing"
    );
    assert_eq!(
        counts.get(Refusal::TooManyHandshakesFromPrefix) + counts.get(Refusal::TooManyHandshakes),
        failed,
        "{results:?}"
    );
}
