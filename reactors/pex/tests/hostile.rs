//! A hostile peer against a node running pex, over the memory transport on
//! the paused clock: it floods requests, answers with too many or garbage
//! addresses, or with one host's many ports. Node 0 runs pex; node 1 speaks
//! the pex channel by hand.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use p2p::transport::{Connection, Transport, TransportError};
use p2p::{
    ChannelReceiver, ChannelSender, Keypair, OpenedReactor, PeerAddress, PeerId, PeerManagerConfig,
    ReactorContext, RouterBuilder, RouterConfig,
};
use reactor_pex::proto::PexMessage;
use reactor_pex::{AddressRefusal, Message, Pex, PexConfig, PexHandle, PexStats};
use testkit::{Network, recv_within};
use tokio_util::sync::CancellationToken;
use transport_memory::{MemoryHub, MemoryTransport};

const SECOND: Duration = Duration::from_secs(1);

/// Node 0 runs pex; node 1 (which dials node 0) holds the raw channel.
struct Setup {
    net: Network,
    pex: PexHandle,
    tx: ChannelSender<PexMessage>,
    rx: ChannelReceiver<PexMessage>,
    n0: PeerId,
    n1: PeerId,
}

async fn setup(seed: u64) -> Setup {
    setup_with(seed, |_, _| {}).await
}

/// [`setup`], with node `i`'s router config adjusted by `configure`.
async fn setup_with(seed: u64, configure: impl FnMut(usize, &mut RouterConfig) + 'static) -> Setup {
    let mut net = Network::builder()
        .seed(seed)
        .nodes(2)
        .links(vec![(1, 0)])
        .configure(configure)
        .build()
        .expect("build");
    let pex = net
        .reactor(0, Pex::new(PexConfig::default()).expect("valid"))
        .expect("open pex");
    let (tx, rx) = net
        .open_channel::<PexMessage>(1, Pex::channel_descriptor())
        .expect("raw channel");
    net.start().expect("start");
    net.wait_connected(0, 1, 5 * SECOND)
        .await
        .expect("connected");
    let (n0, n1) = (net.peer_id(0), net.peer_id(1));
    Setup {
        net,
        pex,
        tx,
        rx,
        n0,
        n1,
    }
}

impl Setup {
    /// The next request node 0 sends node 1 (node 0 has fewer than
    /// `min_peers`, so it asks at once, then every 30 s).
    async fn next_request(&mut self) -> u64 {
        let envelope = recv_within(&mut self.rx, 60 * SECOND)
            .await
            .expect("node 0 asks node 1");
        match Message::from_wire(envelope.message) {
            Some(Message::Request { id }) => id,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    async fn respond(&self, id: u64, addresses: Vec<String>) {
        self.tx
            .send(
                self.n0,
                Message::Response {
                    id,
                    addresses,
                    observed: None,
                }
                .into(),
            )
            .await
            .expect("sent");
    }

    async fn stats_when(&self, what: &str, done: impl Fn(&PexStats) -> bool) -> PexStats {
        self.net
            .wait_until(what, 5 * SECOND, |_| done(&self.pex.stats()))
            .await
            .expect(what);
        self.pex.stats()
    }

    async fn score_of_node_1(&self) -> i64 {
        self.net
            .router(0)
            .score(self.n1)
            .await
            .expect("router")
            .unwrap_or(0)
    }

    async fn known_peers(&self) -> usize {
        self.net.router(0).known_peers().await.expect("router")
    }
}

fn stranger(n: u64) -> PeerId {
    Keypair::from_seed(10_000 + n).peer_id()
}

/// Node 1 sends requests back to back. Node 0 answers the first and
/// refuses the next four unanswered, each costing node 1 10 points; the
/// fifth reaches the disconnect threshold and the connection; node 1
/// dials back, and is refused at admission while its score is at the
/// threshold (ADR 0004 §10: the penalty counts against its next
/// connections).
#[tokio::test(start_paused = true)]
async fn a_request_flood_is_refused_past_the_rate_limit_and_keeps_the_flooder_out() {
    let mut s = setup(71).await;
    s.next_request().await;
    for id in 1..=5 {
        s.tx.send(s.n0, Message::Request { id }.into())
            .await
            .expect("sent");
    }
    let stats = s
        .stats_when("five requests handled", |st| {
            st.requests_served + st.requests_refused == 5
        })
        .await;
    assert_eq!((stats.requests_served, stats.requests_refused), (1, 4));
    let answer = recv_within(&mut s.rx, SECOND).await.expect("one answer");
    assert!(matches!(
        Message::from_wire(answer.message),
        Some(Message::Response { id: 1, .. })
    ));
    assert!(
        recv_within(&mut s.rx, 2 * SECOND).await.is_none(),
        "the refused requests get no answer"
    );
    tokio::time::sleep(SECOND).await; // reports reach the peer manager
    assert_eq!(s.score_of_node_1().await, -40);
    assert!(s.net.router(0).is_connected(s.n1));

    // One more reaches the disconnect threshold (-50).
    let n1 = s.n1;
    s.tx.send(s.n0, Message::Request { id: 6 }.into())
        .await
        .expect("sent");
    s.net
        .wait_until("node 1 to be disconnected", 5 * SECOND, |net| {
            !net.router(0).is_connected(n1)
        })
        .await
        .expect("disconnected");
    assert_eq!(s.score_of_node_1().await, -50);

    // Node 1 dials back (node 0 is its persistent peer), but a peer
    // disconnected for its score stays out until the score decays
    // (it halves every hour): it cannot come back to flood on.
    tokio::time::sleep(30 * SECOND).await;
    assert!(!s.net.router(0).is_connected(n1), "refused at admission");
    let refused = s
        .net
        .router(0)
        .metrics()
        .handshakes_refused
        .get_or_create(&p2p::metrics::ReasonLabels {
            reason: "low_score".into(),
        })
        .get();
    assert!(refused >= 1, "refusals counted as low_score: {refused}");
    assert_eq!(s.score_of_node_1().await, -50);
    assert_eq!(s.pex.stats().requests_served, 1);
    s.net.shutdown().await;
}

/// A response of 101 addresses breaks the protocol's limit: refused whole
/// (nothing learned), and node 1 loses 50 points and its connection.
#[tokio::test(start_paused = true)]
async fn a_response_of_101_addresses_is_refused_whole_and_reported() {
    let mut s = setup(72).await;
    let id = s.next_request().await;
    let before = s.pex.stats();
    let known = s.known_peers().await;
    let addresses = (0..101)
        .map(|n| PeerAddress::memory(stranger(n)).to_string())
        .collect();
    s.respond(id, addresses).await;
    let stats = s
        .stats_when("the response refused", |st| st.responses_refused == 1)
        .await;
    assert_eq!(stats.addresses_learned, before.addresses_learned);
    assert_eq!(stats.responses_accepted, 0);
    assert_eq!(s.known_peers().await, known);
    tokio::time::sleep(SECOND).await;
    assert_eq!(s.score_of_node_1().await, -50);
    s.net.shutdown().await;
}

/// One garbage entry among good ones: the whole response is refused,
/// nothing from it is learned, and node 1 loses 20 points.
#[tokio::test(start_paused = true)]
async fn a_response_with_a_garbage_entry_is_refused_whole_and_reported() {
    let mut s = setup(73).await;
    let id = s.next_request().await;
    let known = s.known_peers().await;
    let addresses = vec![
        PeerAddress::memory(stranger(1)).to_string(),
        PeerAddress::memory(stranger(2)).to_string(),
        "tcp://garbage".to_string(),
    ];
    s.respond(id, addresses).await;
    let stats = s
        .stats_when("the response refused", |st| st.responses_refused == 1)
        .await;
    assert_eq!(stats.responses_accepted, 0);
    assert_eq!(s.known_peers().await, known);
    tokio::time::sleep(SECOND).await;
    assert_eq!(s.score_of_node_1().await, -20);
    assert!(s.net.router(0).is_connected(s.n1));
    s.net.shutdown().await;
}

/// Node 1 answers with 50 peers on 50 ports of one host: two reach the
/// book (the peer manager's `max_ports_per_host`, the screen every
/// reactor's addresses pass). In the next answer, 50 more ports of that
/// host reach nothing, while an address on another host does. Nothing is
/// reported: the addresses are well-formed, only too concentrated.
#[tokio::test(start_paused = true)]
async fn one_host_cannot_put_more_than_max_ports_per_host_in_the_book() {
    let mut s = setup(74).await;
    let id = s.next_request().await;
    let known = s.known_peers().await;
    let on_host = |range: std::ops::Range<u64>| -> Vec<String> {
        range
            .map(|n| format!("tcp://{}@203.0.113.7:{}", stranger(n), 7000 + n))
            .collect()
    };
    s.respond(id, on_host(0..50)).await;
    let stats = s
        .stats_when("the first answer", |st| st.responses_accepted == 1)
        .await;
    assert_eq!(stats.addresses_refused.get(AddressRefusal::PeerManager), 48);
    assert_eq!(
        s.net.router(0).metrics().addresses_refused("host_limit"),
        48
    );
    assert_eq!(s.known_peers().await, known + 2);

    // Node 0 still has fewer than min_peers: it asks again 30 s later.
    let id = s.next_request().await;
    let mut second = on_host(50..100);
    second.push(format!("tcp://{}@198.51.100.1:7000", stranger(100)));
    s.respond(id, second).await;
    let stats = s
        .stats_when("the second answer", |st| st.responses_accepted == 2)
        .await;
    assert_eq!(stats.addresses_refused.get(AddressRefusal::PeerManager), 98);
    assert_eq!(
        s.net.router(0).metrics().addresses_refused("host_limit"),
        98
    );
    assert_eq!(s.known_peers().await, known + 3);
    assert_eq!(stats.responses_refused, 0);
    assert_eq!(s.score_of_node_1().await, 0);
    s.net.shutdown().await;
}

/// Item 7 of issue 14: a peer's loopback, private and link-local addresses
/// were learned and dialed (an attacker could point a node at its own
/// local network). On a node that does not allow private addresses, they
/// reach neither the book nor a dial; each refusal is counted by reason.
#[tokio::test(start_paused = true)]
async fn private_and_loopback_addresses_from_a_peer_never_reach_the_book() {
    let mut s = setup_with(77, |_, config| {
        config.peer_manager.allow_private_addresses = false;
    })
    .await;
    let id = s.next_request().await;
    let known = s.known_peers().await;
    let before = s.pex.stats();
    let addresses = vec![
        format!("tcp://{}@127.0.0.1:26656", stranger(1)),
        format!("tcp://{}@10.1.2.3:26656", stranger(2)),
        format!("quic://{}@192.168.0.9:26656", stranger(3)),
        format!("tcp://{}@[fe80::1]:26656", stranger(4)),
        format!("tcp://{}@localhost:26656", stranger(5)),
        format!("tcp://{}@198.51.100.1:26656", stranger(6)),
    ];
    s.respond(id, addresses).await;
    let stats = s
        .stats_when("the answer", |st| st.responses_accepted == 1)
        .await;
    assert_eq!(stats.addresses_refused.get(AddressRefusal::PeerManager), 5);
    assert_eq!(stats.addresses_learned, before.addresses_learned + 1);
    assert_eq!(s.net.router(0).metrics().addresses_refused("not_public"), 5);
    assert_eq!(s.known_peers().await, known + 1);
    let book = s
        .net
        .router(0)
        .sample_addresses(100, None)
        .await
        .expect("router");
    assert!(
        book.iter()
            .all(|a| a.ip().is_none_or(|ip| !ip.is_loopback())),
        "{book:?}"
    );
    assert_eq!(s.score_of_node_1().await, 0, "not a violation");
    s.net.shutdown().await;
}

/// A response nobody asked for is reported and ignored.
#[tokio::test(start_paused = true)]
async fn an_unsolicited_response_is_reported_and_ignored() {
    let mut s = setup(75).await;
    let id = s.next_request().await;
    let known = s.known_peers().await;
    s.respond(id + 1, vec![PeerAddress::memory(stranger(1)).to_string()])
        .await;
    let stats = s
        .stats_when("the response refused", |st| st.responses_refused == 1)
        .await;
    assert_eq!(stats.responses_accepted, 0);
    assert_eq!(s.known_peers().await, known);
    tokio::time::sleep(SECOND).await;
    assert_eq!(s.score_of_node_1().await, -10);
    s.net.shutdown().await;
}

/// A memory transport that announces other listen addresses, as a TCP
/// node bound to `0.0.0.0` would.
struct Announcing {
    inner: MemoryTransport,
    announce: Vec<PeerAddress>,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Transport for Announcing {
    fn scheme(&self) -> &'static str {
        self.inner.scheme()
    }

    fn listen_addresses(&self) -> Vec<PeerAddress> {
        self.announce.clone()
    }

    fn accept(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        self.inner.accept()
    }

    fn dial<'a>(
        &'a self,
        address: &'a PeerAddress,
    ) -> BoxFuture<'a, Result<Connection, TransportError>> {
        self.inner.dial(address)
    }
}

/// Node 1 dials node 0 and announces `tcp://<node 1>@0.0.0.0:7400`; node 0
/// saw the connection come from 198.51.100.7, so it learns
/// `tcp://<node 1>@198.51.100.7:7400`, an address others can dial.
#[tokio::test(start_paused = true)]
async fn an_announced_unspecified_ip_is_learned_as_the_observed_one() {
    let hub = MemoryHub::new(76);
    let (k0, k1) = (Keypair::from_seed(760), Keypair::from_seed(761));
    let (p0, p1) = (k0.peer_id(), k1.peer_id());
    let observed: IpAddr = "198.51.100.7".parse().expect("ip");
    let t0 = hub
        .transport_with_ip(p0, Some("192.0.2.1".parse().expect("ip")))
        .expect("endpoint 0");
    let t1 = hub
        .transport_with_ip(p1, Some(observed))
        .expect("endpoint 1");

    let mut b0 = RouterBuilder::new(
        k0,
        RouterConfig {
            seed: 1,
            ..RouterConfig::default()
        },
    );
    b0.transport(Arc::new(t0));
    let (pex, opened) =
        OpenedReactor::open(Pex::new(PexConfig::default()).expect("valid"), &mut b0).expect("open");
    let r0 = b0.start().expect("start 0");
    let shutdown = CancellationToken::new();
    let task = opened.spawn(ReactorContext {
        router: r0.clone(),
        shutdown: shutdown.clone(),
        seed: 1,
    });

    let mut b1 = RouterBuilder::new(
        k1,
        RouterConfig {
            seed: 2,
            peer_manager: PeerManagerConfig {
                bootstrap_peers: vec![PeerAddress::memory(p0)],
                ..PeerManagerConfig::default()
            },
            ..RouterConfig::default()
        },
    );
    let unspecified = format!("tcp://{p1}@0.0.0.0:7400").parse().expect("address");
    b1.transport(Arc::new(Announcing {
        inner: t1,
        announce: vec![unspecified],
    }));
    let r1 = b1.start().expect("start 1");

    let deadline = tokio::time::Instant::now() + 5 * SECOND;
    while pex.stats().addresses_learned == 0 {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", pex.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(r0.peer_ip(p1), Some(observed));
    let book = r0.sample_addresses(10, None).await.expect("router");
    let expected: PeerAddress = format!("tcp://{p1}@198.51.100.7:7400")
        .parse()
        .expect("address");
    assert_eq!(book, vec![expected]);
    assert_eq!(pex.stats().addresses_refused.total(), 0);

    shutdown.cancel();
    task.await.expect("pex task");
    r1.shutdown().await;
    r0.shutdown().await;
}
