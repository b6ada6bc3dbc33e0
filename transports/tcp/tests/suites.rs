//! Cipher suites over real loopback sockets: which suite two nodes agree
//! on, what a man in the middle who rewrites the suite preamble achieves
//! (a failed handshake), what malformed and oversized preambles do to a
//! listener (a refusal with a reason, no panic), and how the router counts
//! a dialer of another network.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use p2p::transport::{Connection, Frame, Refusal as Reason, Transport, TransportError};
use p2p::{ChannelId, Keypair, PeerAddress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use transport_tcp::preamble::{self, ANSWER_LEN, Answer, OFFER_HEAD_LEN, Offer, Refusal};
use transport_tcp::{CipherSuite, TcpConfig, TcpTransport};

use CipherSuite::{AesGcm, ChaChaPoly};

const SECOND: Duration = Duration::from_secs(1);
const AES_FIRST: &[CipherSuite] = &[AesGcm, ChaChaPoly];
const CHACHA_FIRST: &[CipherSuite] = &[ChaChaPoly, AesGcm];
const CHACHA_ONLY: &[CipherSuite] = &[ChaChaPoly];
const AES_ONLY: &[CipherSuite] = &[AesGcm];

fn bind(seed: u64, network: &str, suites: &[CipherSuite]) -> (Keypair, TcpTransport) {
    let keypair = Keypair::from_seed(seed);
    let config = TcpConfig {
        network_id: network.into(),
        handshake_timeout: 2 * SECOND,
        suites: suites.to_vec(),
        ..TcpConfig::default()
    };
    let transport = TcpTransport::bind_now(&keypair, config).expect("bind loopback");
    (keypair, transport)
}

async fn accept(transport: &TcpTransport) -> Result<Connection, TransportError> {
    tokio::time::timeout(10 * SECOND, transport.accept())
        .await
        .expect("accept within 10 s")
}

/// A frame each way over `out` (dialed) and `inc` (accepted).
async fn frames_flow(out: &mut Connection, inc: &mut Connection) {
    one_frame(out, inc, "up").await;
    one_frame(inc, out, "down").await;
}

async fn one_frame(from: &mut Connection, to: &mut Connection, word: &'static str) {
    let mut frames = vec![Frame::Data {
        channel: ChannelId(7),
        payload: Bytes::from_static(word.as_bytes()),
    }];
    from.sink.send(&mut frames).await.expect("send");
    let mut got = Vec::new();
    tokio::time::timeout(10 * SECOND, to.stream.recv(&mut got))
        .await
        .expect("recv within 10 s")
        .expect("recv");
    assert!(
        matches!(&got[0], Frame::Data { payload, .. } if &payload[..] == word.as_bytes()),
        "{got:?}"
    );
}

/// `a` dials `b`; both sides get a connection, and frames flow.
async fn connect(a: &TcpTransport, kb: &Keypair, b: &TcpTransport) {
    let mut out = a
        .dial(&PeerAddress::tcp(kb.peer_id(), b.local_addr()))
        .await
        .expect("dial");
    let mut inc = accept(b).await.expect("accept");
    frames_flow(&mut out, &mut inc).await;
}

/// An AES-preferring node and a ChaCha-only node agree on ChaCha, whichever
/// dials (the dialer's first choice refused: one retry; or the listener
/// taking the dialer's first choice); two AES-preferring nodes use AES-GCM,
/// and two that both accept both follow the dialer's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aes_preferring_node_and_a_chacha_only_node_agree_on_chacha() {
    let (ka, a) = bind(1, "net", AES_FIRST);
    let (kb, b) = bind(2, "net", CHACHA_ONLY);
    connect(&a, &kb, &b).await;
    connect(&b, &ka, &a).await;
    for t in [&a, &b] {
        assert_eq!((t.established(ChaChaPoly), t.established(AesGcm)), (2, 0));
    }

    let (kc, c) = bind(3, "net", AES_FIRST);
    connect(&a, &kc, &c).await;
    assert_eq!(c.established(AesGcm), 1);
    assert_eq!(a.established(AesGcm), 1);

    // Both accept both: the dialer's order decides.
    let (kd, d) = bind(4, "net", CHACHA_FIRST);
    connect(&d, &kc, &c).await;
    assert_eq!(c.established(ChaChaPoly), 1);
    connect(&c, &kd, &d).await;
    assert_eq!(d.established(AesGcm), 1);
}

/// No suite in common: the listener refuses with `no_common_suite`, and
/// both sides say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_common_suite_is_refused_with_its_reason() {
    let (_, a) = bind(1, "net", AES_ONLY);
    let (kb, b) = bind(2, "net", CHACHA_ONLY);
    let err = a
        .dial(&PeerAddress::tcp(kb.peer_id(), b.local_addr()))
        .await
        .expect_err("no common suite");
    assert_eq!(err.refusal(), Some(Reason::NoCommonSuite), "{err}");
    let err = accept(&b).await.expect_err("refused");
    assert!(
        err.refusal() == Some(Reason::NoCommonSuite)
            && err.to_string().contains("[aesgcm]")
            && err.to_string().contains("[chachapoly]"),
        "{err}"
    );
}

/// A suite list that is empty, too long or names a suite twice is refused
/// when the transport is bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_refuses_a_bad_suite_list() {
    for suites in [vec![], vec![AesGcm, AesGcm], vec![ChaChaPoly; 9]] {
        let config = TcpConfig {
            suites: suites.clone(),
            ..TcpConfig::default()
        };
        let err = TcpTransport::bind_now(&Keypair::from_seed(1), config).expect_err("refused");
        assert!(err.to_string().contains("suites"), "{suites:?}: {err}");
    }
}

/// How a man in the middle rewrites the first bytes of each direction.
#[derive(Clone, Copy)]
struct Rewrite {
    /// The dialer's offer, decoded, to the offer forwarded.
    offer: fn(Offer) -> Offer,
    /// The listener's answer to the answer forwarded.
    answer: fn([u8; ANSWER_LEN]) -> [u8; ANSWER_LEN],
}

/// A proxy in front of `target` that rewrites the preamble of the
/// connections through it (reading exactly the offer, and exactly the
/// answer, before anything else) and forwards every other byte as it is.
async fn man_in_the_middle(target: SocketAddr, rewrite: Rewrite) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
    let addr = listener.local_addr().expect("proxy addr");
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let Ok(mut outbound) = TcpStream::connect(target).await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let (mut ir, mut iw) = inbound.split();
                let (mut or, mut ow) = outbound.split();
                let up = async {
                    let mut head = [0u8; preamble::MAX_OFFER_LEN];
                    ir.read_exact(&mut head[..OFFER_HEAD_LEN]).await?;
                    let len = preamble::offer_len(&head).map_err(std::io::Error::other)?;
                    ir.read_exact(&mut head[OFFER_HEAD_LEN..len]).await?;
                    let offer = Offer::decode(&head[..len]).map_err(std::io::Error::other)?;
                    ow.write_all(&(rewrite.offer)(offer).encode()).await?;
                    tokio::io::copy(&mut ir, &mut ow).await?;
                    ow.shutdown().await
                };
                let down = async {
                    let mut answer = [0u8; ANSWER_LEN];
                    or.read_exact(&mut answer).await?;
                    iw.write_all(&(rewrite.answer)(answer)).await?;
                    tokio::io::copy(&mut or, &mut iw).await?;
                    iw.shutdown().await
                };
                let _ = tokio::join!(up, down);
            });
        }
    });
    addr
}

/// Dials `b` through a man in the middle who applies `rewrite`; the
/// dialer's result, and the listener's.
async fn through(
    a: &TcpTransport,
    kb: &Keypair,
    b: &TcpTransport,
    rewrite: Rewrite,
) -> (
    Result<Connection, TransportError>,
    Result<Connection, TransportError>,
) {
    let proxy = man_in_the_middle(b.local_addr(), rewrite).await;
    let dialed = a.dial(&PeerAddress::tcp(kb.peer_id(), proxy)).await;
    let accepted = accept(b).await;
    (dialed, accepted)
}

fn offering(offer: &Offer, suites: &[CipherSuite]) -> Offer {
    Offer::new(offer.network_tag, suites)
}

/// A man in the middle who rewrites the offer or the answer makes the
/// handshake fail on both sides, as a Noise error: the offer and the
/// answer are bound into the prologue. That holds even where the rewrite
/// leaves the choice as it was (only the prologue can catch that one),
/// and where it would downgrade two AES-preferring nodes to ChaCha. The
/// same proxy forwarding the preamble untouched is harmless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downgrade_of_the_preamble_in_flight_fails_the_handshake() {
    let untouched = Rewrite {
        offer: |o| o,
        answer: |a| a,
    };
    let cases: [(&str, &[CipherSuite], Rewrite); 4] = [
        // Strip AES-GCM from an AES-first offer: the listener would pick
        // ChaCha.
        (
            "offer stripped of aesgcm",
            AES_FIRST,
            Rewrite {
                offer: |o| offering(&o, &[ChaChaPoly]),
                answer: |a| a,
            },
        ),
        // Reverse the dialer's order: the listener would pick ChaCha.
        (
            "offer reordered",
            AES_FIRST,
            Rewrite {
                offer: |o| offering(&o, &[ChaChaPoly, AesGcm]),
                answer: |a| a,
            },
        ),
        // Strip AES-GCM from a ChaCha-first offer: the choice stays ChaCha
        // and both sides run the same messages; only the prologue differs.
        (
            "offer stripped, choice unchanged",
            CHACHA_FIRST,
            Rewrite {
                offer: |o| offering(&o, &[ChaChaPoly]),
                answer: |a| a,
            },
        ),
        // Tell the dialer the listener chose ChaCha when it chose AES-GCM.
        (
            "answer rewritten to chachapoly",
            AES_FIRST,
            Rewrite {
                offer: |o| o,
                answer: |_| Answer::Accept(ChaChaPoly).encode(),
            },
        ),
    ];
    let (_, b) = bind(2, "net", AES_FIRST);
    let kb = Keypair::from_seed(2);
    for (i, (what, dialer_suites, rewrite)) in cases.into_iter().enumerate() {
        let (_, a) = bind(10 + i as u64, "net", dialer_suites);
        let (dialed, accepted) = through(&a, &kb, &b, rewrite).await;
        let err = dialed
            .err()
            .unwrap_or_else(|| panic!("{what}: the dial succeeded"));
        // The dialer cannot decrypt message 2 (or message 2 never fits):
        // a failed handshake, not a refusal the listener answered.
        assert!(
            matches!(&err, TransportError::Handshake { reason, .. }
                if reason.contains("prologues differ") || reason.contains("noise")),
            "{what}: {err}"
        );
        let accepted = accepted
            .err()
            .unwrap_or_else(|| panic!("{what}: the listener accepted"));
        assert_eq!(
            accepted.refusal(),
            Some(Reason::BadHandshake),
            "{what}: {accepted}"
        );
        assert_eq!(a.established(AesGcm) + a.established(ChaChaPoly), 0);

        // Control: the same proxy, forwarding the preamble as it is.
        let (dialed, accepted) = through(&a, &kb, &b, untouched).await;
        let (mut out, mut inc) = (dialed.expect(what), accepted.expect(what));
        frames_flow(&mut out, &mut inc).await;
        assert_eq!(a.established(dialer_suites[0]), 1, "{what}");
    }
    assert_eq!(b.established(AesGcm), 3);
    assert_eq!(b.established(ChaChaPoly), 1);
}

/// Sends `bytes` to the listener as a dialer would, and returns the
/// answer it gets (if any) and whether the listener then closed.
async fn send_preamble(addr: SocketAddr, bytes: &[u8]) -> (Option<[u8; ANSWER_LEN]>, bool) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut answer = [0u8; ANSWER_LEN];
    let answer = match tokio::time::timeout(10 * SECOND, s.read_exact(&mut answer)).await {
        Ok(Ok(_)) => Some(answer),
        _ => None,
    };
    let mut rest = [0u8; 64];
    let closed = matches!(
        tokio::time::timeout(10 * SECOND, s.read(&mut rest)).await,
        Ok(Ok(0) | Err(_))
    );
    (answer, closed)
}

/// Malformed, oversized and foreign preambles are refused without a panic,
/// each with the refusal the listener answers and reports, and the
/// listener keeps accepting honest dialers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_preambles_are_refused() {
    let (kb, b) = bind(2, "net", AES_FIRST);
    let addr = b.local_addr();
    let tag = preamble::network_tag("net");
    let with = |head: &[u8], ids: &[u8]| {
        let mut v = head.to_vec();
        v.extend_from_slice(ids);
        v
    };
    let mut head = vec![preamble::PREAMBLE_VERSION];
    head.extend_from_slice(&tag);
    let bad = Refusal::BadPreamble;
    let cases: Vec<(&str, Vec<u8>, Refusal)> = vec![
        // A protocol version 2 dialer: a Noise message length first.
        ("version 2 handshake", with(&[0x00, 0x20], &[0x42; 32]), bad),
        ("version 2 of the preamble", with(&[2], &[0; 40]), bad),
        ("no suite", with(&head, &[0]), bad),
        // Announces 200 suites and sends them: refused from the count,
        // before any of them is read.
        ("200 suites", with(&head, &[200; 201]), bad),
        (
            "9 suites",
            with(&head, &[9, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
            bad,
        ),
        ("a suite twice", with(&head, &[2, 1, 1]), bad),
        ("reserved suite 0", with(&head, &[1, 0]), bad),
        (
            "unknown suites only",
            with(&head, &[2, 0x7f, 0xff]),
            Refusal::NoCommonSuite,
        ),
        (
            "another network",
            Offer::new(preamble::network_tag("other"), AES_FIRST).encode(),
            Refusal::NetworkMismatch,
        ),
    ];
    for (what, bytes, refusal) in cases {
        let (answer, closed) = send_preamble(addr, &bytes).await;
        assert_eq!(
            answer.map(Answer::decode),
            Some(Ok(Answer::Refuse(refusal))),
            "{what}"
        );
        assert!(closed, "{what}: the listener did not close");
        let err = accept(&b).await.expect_err(what);
        let counted_as = match refusal {
            Refusal::BadPreamble => Reason::BadHandshake,
            Refusal::NoCommonSuite => Reason::NoCommonSuite,
            Refusal::NetworkMismatch => Reason::NetworkMismatch,
        };
        assert_eq!(err.refusal(), Some(counted_as), "{what}: {err}");
    }

    // Cut short: a head announcing 2 suites and one of them, then
    // silence. No answer; the deadline closes it.
    let (answer, _) = send_preamble(addr, &with(&head, &[2, 1])[..OFFER_HEAD_LEN + 1]).await;
    assert_eq!(answer, None);
    let err = accept(&b).await.expect_err("cut short");
    assert_eq!(err.refusal(), Some(Reason::HandshakeTimeout), "{err}");

    let (_, a) = bind(1, "net", CHACHA_ONLY);
    connect(&a, &kb, &b).await;
}

/// Over routers: a dialer of another network is refused before `Hello`
/// and counted by the listener as `network_mismatch`, not `accept_error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_counts_another_network_as_network_mismatch() {
    let mut net = common::network()
        .seed(40)
        .nodes(2)
        .isolated()
        .configure(|i, c| {
            if i == 1 {
                c.network_id = "another-network".into();
            }
        })
        .build()
        .expect("build");
    net.start().expect("start");
    let address = net.address(1).clone();
    net.router(0).dial(address).await.expect("queue the dial");
    net.wait_until("the refusal counted", 10 * SECOND, |net| {
        refused(net, "network_mismatch") >= 1
    })
    .await
    .expect("network_mismatch counted");
    assert_eq!(refused(&net, "accept_error"), 0);
    net.shutdown().await;
}

/// Node 1's `handshakes_refused_total{reason}`.
fn refused(net: &testkit::Network, reason: &str) -> u64 {
    net.router(1)
        .metrics()
        .handshakes_refused
        .get_or_create(&p2p::metrics::ReasonLabels {
            reason: reason.into(),
        })
        .get()
}
