//! Early data (protocol version 3, ADR 0002 "Early data"): a sender starts
//! with `EARLY_CREDIT` messages of credit on each channel, so its first
//! messages leave with its `Hello`. They are delivered when the peer is
//! admitted; dropped and counted (`early_refused`) when it is refused —
//! banned, over the limits, of another network; dropped and counted
//! (`early_no_room`) beyond what the receiver holds; and what a node holds
//! before admission stays within `max_pending_handshakes ×
//! MAX_EARLY_BYTES`, however many dial at once.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use common::{SECOND, Seq, channel};
use p2p::proto::{self, GoodbyeReason};
use p2p::router::{EARLY_CREDIT, MAX_EARLY_BYTES, PROTOCOL_VERSION};
use p2p::transport::{Connection, ConnectionError, Frame, Transport};
use p2p::{ChannelDescriptor, ChannelId, DropReason, Keypair, PeerAddress, RouterConfig};
use prost::Message;
use testkit::{Network, recv_within};
use transport_memory::MemoryTransport;

const CHANNEL: u16 = 0x10;

fn hello(keypair: &Keypair, network: &str) -> proto::NodeInfo {
    proto::NodeInfo {
        protocol_version: PROTOCOL_VERSION,
        network_id: network.into(),
        peer_id: keypair.peer_id().as_bytes().to_vec().into(),
        channels: vec![proto::ChannelInfo {
            id: u32::from(CHANNEL),
            recv_window: 64,
            max_message_size: 0,
            early_credit: p2p::router::EARLY_CREDIT,
        }],
        listen_addresses: vec![],
        software_version: "early/0".into(),
    }
}

/// The network id of the test nodes.
fn net_id() -> String {
    RouterConfig::default().network_id
}

fn data(seq: u64, pad: usize) -> Frame {
    Frame::Data {
        channel: ChannelId(CHANNEL),
        payload: Bytes::from(Seq::padded(seq, pad).encode_to_vec()),
    }
}

/// Dials node 0 under `seed` (from `ip`, if given) and sends, in one go
/// and without waiting for anything, a `Hello` for `network` and `early`.
async fn dial_with_early(
    net: &Network,
    seed: u64,
    ip: Option<IpAddr>,
    network: &str,
    early: Vec<Frame>,
) -> Result<(MemoryTransport, Connection), ConnectionError> {
    let keypair = Keypair::from_seed(seed);
    let endpoint = net
        .hub()
        .transport_with_ip(keypair.peer_id(), ip)
        .map_err(|e| ConnectionError::Reset(e.to_string()))?;
    let mut conn = endpoint
        .dial(&PeerAddress::memory(net.peer_id(0)))
        .await
        .map_err(|e| ConnectionError::Reset(e.to_string()))?;
    let mut frames = vec![Frame::Hello(Box::new(hello(&keypair, network)))];
    frames.extend(early);
    conn.sink.send(&mut frames).await?;
    Ok((endpoint, conn))
}

/// Frames from the node until its goodbye (or the end).
async fn until_goodbye(conn: &mut Connection) -> Option<proto::Goodbye> {
    loop {
        let mut frames = Vec::new();
        match tokio::time::timeout(5 * SECOND, conn.stream.recv(&mut frames)).await {
            Ok(Ok(())) => {
                if let Some(g) = frames.into_iter().find_map(|f| match f {
                    Frame::Goodbye(g) => Some(g),
                    _ => None,
                }) {
                    return Some(g);
                }
            }
            _ => return None,
        }
    }
}

type Channels = Vec<(p2p::ChannelSender<Seq>, p2p::ChannelReceiver<Seq>)>;

fn one_node(window: usize) -> (Network, Channels) {
    let mut net = Network::builder()
        .seed(31)
        .nodes(1)
        .isolated()
        .build()
        .expect("build");
    let channels = net
        .open_channel_on_all::<Seq>(ChannelDescriptor {
            recv_buffer: window,
            ..channel(CHANNEL, "early", 1)
        })
        .expect("channel");
    net.start().expect("start");
    (net, channels)
}

/// A dialer's early messages, sent with its `Hello` before any credit,
/// reach the reactor in order once the node admits it; nothing is dropped.
/// One message past the early credit, on a channel whose whole window is
/// the early credit, is a violation: the allowance is exact.
#[tokio::test(start_paused = true)]
async fn early_data_is_delivered_when_the_peer_is_admitted() {
    let (net, mut channels) = one_node(64);
    let early = (0..u64::from(EARLY_CREDIT)).map(|i| data(i, 100)).collect();
    let (_endpoint, _conn) = dial_with_early(&net, 900, None, &net_id(), early)
        .await
        .expect("dial");
    let from = Keypair::from_seed(900).peer_id();
    for i in 0..u64::from(EARLY_CREDIT) {
        let envelope = recv_within(&mut channels[0].1, 5 * SECOND)
            .await
            .expect("an early message");
        assert_eq!((envelope.from, envelope.message.seq), (from, i));
    }
    let metrics = net.router(0).metrics();
    for reason in [
        DropReason::EarlyNoRoom,
        DropReason::EarlyRefused,
        DropReason::FlowControl,
    ] {
        assert_eq!(metrics.dropped("early", reason), 0, "{reason:?}");
    }
    assert_eq!(
        metrics.early_data_bytes.get(),
        0,
        "nothing held after admission"
    );
    drop(net);

    // A window of exactly the early credit: the node grants nothing more,
    // so one more message is over the allowance.
    let window = EARLY_CREDIT as usize;
    let (net, _channels) = one_node(window);
    let early = (0..=u64::from(EARLY_CREDIT)).map(|i| data(i, 10)).collect();
    let (_endpoint, mut conn) = dial_with_early(&net, 901, None, &net_id(), early)
        .await
        .expect("dial");
    let goodbye = until_goodbye(&mut conn).await.expect("a goodbye");
    assert_eq!(goodbye.reason(), GoodbyeReason::ProtocolViolation);
    assert_eq!(
        net.router(0)
            .metrics()
            .dropped("early", DropReason::FlowControl),
        1
    );
}

/// A refused connection's early data is dropped and counted
/// (`early_refused`): a banned peer, a peer over the inbound limit, and a
/// peer of another network.
#[tokio::test(start_paused = true)]
async fn early_data_of_a_refused_connection_is_dropped_and_counted() {
    let mut net = Network::builder()
        .seed(32)
        .nodes(1)
        .isolated()
        .configure(|_, config: &mut RouterConfig| config.peer_manager.max_inbound = 1)
        .build()
        .expect("build");
    let _channels = net
        .open_channel_on_all::<Seq>(channel(CHANNEL, "early", 1))
        .expect("channel");
    net.start().expect("start");
    let refused = |net: &Network| {
        net.router(0)
            .metrics()
            .dropped("early", DropReason::EarlyRefused)
    };

    // Banned: the node bans the key; it comes with early data.
    let banned = Keypair::from_seed(910).peer_id();
    net.router(0)
        .disconnect(banned, Some(3600 * SECOND))
        .await
        .expect("ban");
    let (_e, mut conn) =
        dial_with_early(&net, 910, None, &net_id(), vec![data(0, 10), data(1, 10)])
            .await
            .expect("dial");
    assert_eq!(
        until_goodbye(&mut conn).await.map(|g| g.reason()),
        Some(GoodbyeReason::Banned)
    );
    assert_eq!(refused(&net), 2, "the banned peer's two early messages");

    // Over the limits: one inbound peer is admitted, the next is refused.
    let (_e1, _conn1) = dial_with_early(&net, 911, None, &net_id(), vec![data(0, 10)])
        .await
        .expect("dial");
    let (_e2, mut conn2) = dial_with_early(
        &net,
        912,
        None,
        &net_id(),
        vec![data(0, 10), data(1, 10), data(2, 10)],
    )
    .await
    .expect("dial");
    assert_eq!(
        until_goodbye(&mut conn2).await.map(|g| g.reason()),
        Some(GoodbyeReason::Rejected)
    );
    assert_eq!(refused(&net), 5, "and the refused peer's three");

    // Another network: refused at the `Hello`.
    let (_e3, mut conn3) = dial_with_early(&net, 913, None, "elsewhere", vec![data(0, 10)])
        .await
        .expect("dial");
    assert_eq!(
        until_goodbye(&mut conn3).await.map(|g| g.reason()),
        Some(GoodbyeReason::NetworkMismatch)
    );
    assert_eq!(refused(&net), 6, "and the other network's one");
    assert_eq!(net.router(0).metrics().early_data_bytes.get(), 0);
}

/// Two hundred dialers, each from its own network, send a `Hello` and
/// three times `MAX_EARLY_BYTES` of early data at once. The node holds at
/// most `MAX_EARLY_BYTES` per connection in its handshake, and at most
/// `max_pending_handshakes` such connections, whatever the scheduling:
/// the high-water mark of held early data stays within the product. Every
/// early message of an admitted peer is delivered or counted.
#[tokio::test(start_paused = true)]
async fn many_dialers_with_early_data_stay_within_the_bound() {
    const DIALERS: u64 = 200;
    const PENDING: usize = 16;
    let mut net = Network::builder()
        .seed(33)
        .nodes(1)
        .isolated()
        .configure(|_, config: &mut RouterConfig| {
            config.max_pending_handshakes = PENDING;
            config.peer_manager.max_inbound = 1000;
        })
        .build()
        .expect("build");
    // Large messages on a wide window: early credit, not the window,
    // limits what each dialer sends before admission.
    let mut channels = net
        .open_channel_on_all::<Seq>(ChannelDescriptor {
            recv_buffer: 64,
            max_message_size: 1 << 20,
            ..channel(CHANNEL, "early", 1)
        })
        .expect("channel");
    net.start().expect("start");

    // Each early message is three quarters of the cap: one fits, the
    // rest of the four are beyond it.
    let pad = MAX_EARLY_BYTES * 3 / 4;
    let id = net_id();
    let mut tasks = Vec::new();
    for i in 0..DIALERS {
        let early = (0..u64::from(EARLY_CREDIT)).map(|s| data(s, pad)).collect();
        let ip = IpAddr::V4(Ipv4Addr::new(10, (i / 200) as u8, (i % 200) as u8, 1));
        let dial = dial_with_early(&net, 2_000 + i, Some(ip), &id, early);
        tasks.push(dial);
    }
    let connections = futures::future::join_all(tasks).await;
    // Let every handshake finish and every early message land.
    tokio::time::sleep(5 * SECOND).await;

    let metrics = net.router(0).metrics();
    let peak = metrics.early_data_bytes_max.get();
    let bound = (PENDING * MAX_EARLY_BYTES) as i64;
    assert!(peak > 0, "early data was held");
    assert!(
        peak <= bound,
        "held {peak} bytes of early data, over {bound}"
    );
    assert_eq!(metrics.early_data_bytes.get(), 0, "nothing held at the end");

    let mut delivered = 0u64;
    while channels[0].1.try_recv().is_some() {
        delivered += 1;
    }
    let admitted = net.router(0).connected_peers().len() as u64;
    let no_room = metrics.dropped("early", DropReason::EarlyNoRoom);
    let refused = metrics.dropped("early", DropReason::EarlyRefused);
    let too_many = metrics.handshakes_refused("too_many_handshakes");
    assert!(admitted > 0);
    assert_eq!(
        delivered + no_room,
        admitted * u64::from(EARLY_CREDIT),
        "each admitted peer's early messages, delivered or counted"
    );
    assert!(delivered >= admitted, "at least the first of each fits");
    assert_eq!(refused, 0);
    assert_eq!(
        admitted + too_many,
        DIALERS,
        "every dialer admitted or refused for the handshake limit: {connections:?}",
        connections = connections.iter().filter(|c| c.is_err()).count()
    );
    assert_eq!(metrics.dropped("early", DropReason::ReceiverFull), 0);
    assert_eq!(metrics.dropped("early", DropReason::FlowControl), 0);
}
