//! The router's promises, written once and run over every transport.
//!
//! Each function takes a [`NetworkBuilder`] that says which transport to
//! use (the memory hub, or a [`TransportFactory`](crate::TransportFactory))
//! and checks one promise of ARCHITECTURE.md / ADR 0002 end to end: what is
//! delivered, in which order, what backpressure does, which drops are
//! counted, how connections end. None of them uses a fault hook of the
//! memory hub, so every transport must pass all of them. A transport crate
//! runs the whole suite with one macro line:
//!
//! ```text
//! testkit::promise_suite!(
//!     #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//!     testkit::Network::builder().transport(my_factory())
//! );
//! ```
//!
//! Deadlines are generous (seconds) so that they hold on a loaded machine
//! over real sockets; on the memory transport they are simulated time.

use std::collections::BTreeMap;
use std::time::Duration;

use p2p::{ChannelDescriptor, DropReason, PeerStatus, SendError, TrySendError};

use crate::{Network, NetworkBuilder, recv_within};

/// Waits until `count` messages of `channel` wait in node `node`'s send
/// queue to `peer`: every message the remote's window allowed has gone
/// out. A condition, not a sleep: over real sockets the time it takes is
/// not ours to guess.
async fn wait_queued(net: &Network, node: usize, channel: &str, peer: p2p::PeerId, count: usize) {
    let labels = p2p::metrics::ChannelPeerLabels {
        channel: channel.to_string(),
        peer: peer.to_string(),
    };
    net.wait_until("the window's messages to go out", 10 * SECOND, |net| {
        net.router(node)
            .metrics()
            .send_queue_depth
            .get_or_create(&labels)
            .get()
            == count as i64
    })
    .await
    .expect("the send queue holds what the window did not take");
}

const SECOND: Duration = Duration::from_secs(1);

/// A numbered message with optional padding.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Seq {
    /// The sequence number.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    /// Padding, to give the message a size.
    #[prost(bytes = "vec", tag = "2")]
    pub pad: Vec<u8>,
}

impl Seq {
    /// `seq` with `len` bytes of padding.
    pub fn padded(seq: u64, len: usize) -> Self {
        Self {
            seq,
            pad: vec![0xab; len],
        }
    }
}

fn channel(id: u16, name: &'static str, priority: u8) -> ChannelDescriptor {
    ChannelDescriptor {
        priority,
        ..ChannelDescriptor::new(id, name)
    }
}

/// Runs every promise of the suite as a `#[test]` over the network that
/// `$builder` (an expression giving a [`NetworkBuilder`]) describes, under
/// the test attribute given first.
#[macro_export]
macro_rules! promise_suite {
    (#[$test:meta] $builder:expr) => {
        $crate::promise_suite!(@each #[$test] $builder;
            two_nodes_exchange_a_message,
            fifo_per_peer_and_channel_under_mixed_priorities,
            at_most_once_across_reconnects,
            backpressure_isolation_per_peer_and_channel,
            every_drop_is_counted_with_its_reason,
            the_remote_max_message_size_is_honoured_at_the_sender,
            large_messages_arrive_intact,
            different_networks_never_connect,
            graceful_shutdown_says_goodbye_and_ends_every_task,
            a_crashed_and_restarted_node_is_redialed
        );
    };
    (@each #[$test:meta] $builder:expr; $($name:ident),*) => {
        $(
            #[$test]
            async fn $name() {
                $crate::suite::$name($builder).await;
            }
        )*
    };
}

/// Two nodes connect and exchange a message each way; the envelope names
/// the authenticated sender.
pub async fn two_nodes_exchange_a_message(net: NetworkBuilder) {
    let mut net = net.seed(1).nodes(2).full_mesh().build().expect("build");
    let mut ch = net
        .open_channel_on_all::<Seq>(channel(0x10, "seq", 1))
        .expect("open");
    net.start().expect("start");
    net.wait_for_full_mesh(10 * SECOND).await.expect("mesh");
    ch[0]
        .0
        .send(net.peer_id(1), Seq::padded(42, 0))
        .await
        .expect("send");
    let got = recv_within(&mut ch[1].1, 5 * SECOND).await.expect("recv");
    assert_eq!((got.message.seq, got.from), (42, net.peer_id(0)));
    ch[1]
        .0
        .send(net.peer_id(0), Seq::padded(43, 0))
        .await
        .expect("send back");
    let got = recv_within(&mut ch[0].1, 5 * SECOND).await.expect("recv");
    assert_eq!((got.message.seq, got.from), (43, net.peer_id(1)));
    net.shutdown().await;
}

/// Three channels of priorities 1, 4 and 8, from two senders at once: each
/// (peer, channel) stream arrives complete and in order.
pub async fn fifo_per_peer_and_channel_under_mixed_priorities(net: NetworkBuilder) {
    const EACH: u64 = 2_000;
    let mut net = net.seed(12).nodes(3).full_mesh().build().expect("build");
    let descriptors = [
        channel(0x10, "low", 1),
        channel(0x11, "mid", 4),
        channel(0x12, "high", 8),
    ];
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for d in &descriptors {
        let mut on_all = net.open_channel_on_all::<Seq>(d.clone()).expect("open");
        receivers.push(on_all.remove(1).1);
        senders.push([on_all.remove(0).0, on_all.remove(0).0]);
    }
    net.start().expect("start");
    net.wait_for_full_mesh(10 * SECOND).await.expect("mesh");
    let target = net.peer_id(1);
    let mut tasks = Vec::new();
    for pair in senders {
        for tx in pair {
            tasks.push(tokio::spawn(async move {
                for seq in 0..EACH {
                    tx.send(target, Seq::padded(seq, (seq % 300) as usize))
                        .await
                        .expect("send");
                }
            }));
        }
    }
    for (c, rx) in receivers.iter_mut().enumerate() {
        let mut next = BTreeMap::new();
        for _ in 0..2 * EACH {
            let env = recv_within(rx, 10 * SECOND).await.expect("message");
            let expected = next.entry(env.from).or_insert(0u64);
            assert_eq!(env.message.seq, *expected, "channel {c} out of order");
            *expected += 1;
        }
        assert!(next.values().all(|&n| n == EACH));
    }
    for task in tasks {
        task.await.expect("sender");
    }
    net.shutdown().await;
}

/// The receiving node drops the connection again and again while the
/// sender streams numbered messages: what arrives is strictly increasing
/// (nothing twice, nothing reordered), and delivery resumes after every
/// reconnection.
pub async fn at_most_once_across_reconnects(net: NetworkBuilder) {
    const TOTAL: u64 = 20_000;
    let mut net = net.seed(11).nodes(2).full_mesh().build().expect("build");
    let mut ch = net
        .open_channel_on_all::<Seq>(channel(0x10, "seq", 1))
        .expect("open");
    net.start().expect("start");
    net.wait_for_full_mesh(10 * SECOND).await.expect("mesh");
    let (tx, _) = ch.remove(0);
    let (_, mut rx) = ch.remove(0);
    let (n0, n1) = (net.peer_id(0), net.peer_id(1));
    let receiver = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(env) = recv_within(&mut rx, 5 * SECOND).await {
            seen.push(env.message.seq);
        }
        seen
    });
    let mut refused = 0u64;
    for seq in 0..TOTAL {
        if seq > 0 && seq % 4_000 == 0 {
            // Node 1 hangs up; node 0 redials its persistent peer.
            net.router(1)
                .disconnect(n0, None)
                .await
                .expect("disconnect");
        }
        loop {
            match tx.send(n1, Seq::padded(seq, 16)).await {
                Ok(()) => break,
                Err(SendError::NotConnected(_)) => {
                    // Never queued, so sending it again is not a
                    // retransmission by the router.
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => panic!("unexpected send error {e}"),
            }
        }
    }
    let seen = receiver.await.expect("receiver");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "a message was delivered twice or out of order"
    );
    assert!(refused > 0, "reconnections must have happened");
    assert_eq!(
        seen.last().copied(),
        Some(TOTAL - 1),
        "delivery resumed after the last reconnection"
    );
    net.shutdown().await;
}

/// Node 1's reactor stops reading channel A. Node 0's sender of A to node 1
/// sees `try_send` return `Full` after exactly the remote window plus the
/// send queue, and `send` wait; channel B to node 1 and channel A to node 2
/// keep flowing; reading A again releases everything in order.
pub async fn backpressure_isolation_per_peer_and_channel(net: NetworkBuilder) {
    let mut net = net.seed(21).nodes(3).full_mesh().build().expect("build");
    let a = channel(0x10, "a", 1);
    let mut ch_a = net.open_channel_on_all::<Seq>(a.clone()).expect("open a");
    let mut ch_b = net
        .open_channel_on_all::<Seq>(channel(0x11, "b", 1))
        .expect("open b");
    net.start().expect("start");
    net.wait_for_full_mesh(10 * SECOND).await.expect("mesh");
    let (n1, n2) = (net.peer_id(1), net.peer_id(2));
    let tx_a = ch_a[0].0.clone();
    let tx_b = ch_b[0].0.clone();

    // Fill A toward node 1 with `send` (which waits for room), then probe
    // with `try_send` until it is refused.
    let mut queued = 0usize;
    while queued < a.recv_buffer + a.send_queue {
        tokio::time::timeout(5 * SECOND, tx_a.send(n1, Seq::padded(queued as u64, 0)))
            .await
            .expect("room within the window and the queue")
            .expect("send");
        queued += 1;
    }
    // The window's messages go out; then nothing more fits.
    wait_queued(&net, 0, "a", n1, a.send_queue).await;
    let full = tx_a.try_send(n1, Seq::padded(queued as u64, 0));
    assert!(matches!(full, Err(TrySendError::Full { .. })), "{full:?}");
    let blocked = tokio::time::timeout(SECOND / 2, tx_a.send(n1, Seq::padded(0, 0))).await;
    assert!(blocked.is_err(), "send must wait while the queue is full");

    for seq in 0..500 {
        tx_b.send(n1, Seq::padded(seq, 0))
            .await
            .expect("b to node 1");
        tx_a.send(n2, Seq::padded(seq, 0))
            .await
            .expect("a to node 2");
        let got_b = recv_within(&mut ch_b[1].1, 5 * SECOND).await.expect("b");
        let got_a = recv_within(&mut ch_a[2].1, 5 * SECOND).await.expect("a");
        assert_eq!((got_b.message.seq, got_a.message.seq), (seq, seq));
    }

    // Node 1 holds at most its window of A.
    let received = net
        .router(1)
        .metrics()
        .messages_received
        .get_or_create(&p2p::metrics::ChannelPeerLabels {
            channel: "a".into(),
            peer: net.peer_id(0).to_string(),
        })
        .get();
    assert_eq!(received, a.recv_buffer as u64);

    for seq in 0..queued as u64 {
        let env = recv_within(&mut ch_a[1].1, 5 * SECOND)
            .await
            .expect("drain");
        assert_eq!(env.message.seq, seq);
    }
    net.shutdown().await;
}

/// Each kind of drop is counted under its reason: too large, not
/// connected, queue full, receiver closed, and peer gone.
pub async fn every_drop_is_counted_with_its_reason(net: NetworkBuilder) {
    let mut net = net.seed(22).nodes(2).full_mesh().build().expect("build");
    let small = ChannelDescriptor {
        send_queue: 4,
        recv_buffer: 4,
        max_message_size: 1024,
        ..channel(0x10, "small", 1)
    };
    let mut ch = net.open_channel_on_all::<Seq>(small.clone()).expect("open");
    let (tx_other, _) = net
        .open_channel::<Seq>(0, channel(0x11, "other", 1))
        .expect("open other");
    let (_, rx_other) = net
        .open_channel::<Seq>(1, channel(0x11, "other", 1))
        .expect("open other");
    net.start().expect("start");
    net.wait_for_full_mesh(10 * SECOND).await.expect("mesh");
    let metrics = net.router(0).metrics().clone();
    let tx = ch[0].0.clone();
    let n1 = net.peer_id(1);

    let err = tx
        .send(n1, Seq::padded(0, 2048))
        .await
        .expect_err("too large");
    assert!(matches!(err, SendError::TooLarge { .. }), "{err}");
    assert_eq!(metrics.dropped("small", DropReason::TooLarge), 1);

    let stranger = p2p::Keypair::from_seed(999).peer_id();
    assert!(matches!(
        tx.try_send(stranger, Seq::padded(0, 0)),
        Err(TrySendError::Send(SendError::NotConnected(_)))
    ));
    assert_eq!(metrics.dropped("small", DropReason::NotConnected), 1);

    // Node 1 never reads "small": window 4 + queue 4 fill, then refusals.
    for seq in 0..8 {
        tokio::time::timeout(5 * SECOND, tx.send(n1, Seq::padded(seq, 0)))
            .await
            .expect("room")
            .expect("send");
    }
    wait_queued(&net, 0, "small", n1, small.send_queue).await;
    assert!(tx.try_send(n1, Seq::padded(8, 0)).is_err());
    assert_eq!(metrics.dropped("small", DropReason::QueueFull), 1);
    let report = tx.broadcast(Seq::padded(9, 0));
    assert_eq!(report.full, vec![n1]);
    assert_eq!(metrics.dropped("small", DropReason::QueueFull), 2);

    // Node 1 drops its receiver of "other": what arrives there is counted.
    drop(rx_other);
    tx_other
        .send(n1, Seq::padded(0, 0))
        .await
        .expect("send other");
    let node1 = net.router(1).metrics().clone();
    net.wait_until("receiver_closed to be counted", 5 * SECOND, |_| {
        node1.dropped("other", DropReason::ReceiverClosed) >= 1
    })
    .await
    .expect("receiver_closed");

    // Node 1 crashes with four messages queued toward it: peer_gone.
    net.crash(1).await;
    net.wait_until("node 0 to see node 1 gone", 10 * SECOND, |net| {
        !net.router(0).is_connected(n1)
    })
    .await
    .expect("down");
    assert_eq!(
        metrics.dropped("small", DropReason::PeerGone),
        small.send_queue as u64
    );
    drop(ch.remove(1));
    net.shutdown().await;
}

/// A peer announces a smaller `max_message_size` than ours: larger
/// messages are refused at the sender (counted `too_large`), smaller ones
/// arrive, and the receiver never penalises us.
pub async fn the_remote_max_message_size_is_honoured_at_the_sender(net: NetworkBuilder) {
    let mut net = net.seed(23).nodes(2).full_mesh().build().expect("build");
    let big = ChannelDescriptor {
        max_message_size: 4096,
        ..channel(0x10, "sized", 1)
    };
    let small = ChannelDescriptor {
        max_message_size: 100,
        ..big.clone()
    };
    let (tx, _rx0) = net.open_channel::<Seq>(0, big).expect("open");
    let (_tx1, mut rx) = net.open_channel::<Seq>(1, small).expect("open");
    net.start().expect("start");
    net.wait_for_full_mesh(10 * SECOND).await.expect("mesh");
    let n1 = net.peer_id(1);
    let err = tx
        .send(n1, Seq::padded(1, 500))
        .await
        .expect_err("too large");
    assert!(matches!(err, SendError::TooLarge { max: 100, .. }), "{err}");
    assert_eq!(tx.broadcast(Seq::padded(2, 500)).too_large, vec![n1]);
    assert_eq!(
        net.router(0)
            .metrics()
            .dropped("sized", DropReason::TooLarge),
        2
    );
    tx.send(n1, Seq::padded(3, 50)).await.expect("small enough");
    let got = recv_within(&mut rx, 5 * SECOND).await;
    assert_eq!(got.map(|e| e.message.seq), Some(3));
    assert_eq!(
        net.router(1).score(net.peer_id(0)).await.expect("score"),
        Some(0)
    );
    net.shutdown().await;
}

/// Messages of up to the channel's maximum (here 1 MiB, many times a
/// transport's packet or record) arrive whole and unaltered, interleaved
/// with small messages on another channel.
pub async fn large_messages_arrive_intact(net: NetworkBuilder) {
    const MAX: usize = 1 << 20;
    let mut net = net.seed(24).nodes(2).full_mesh().build().expect("build");
    let big = ChannelDescriptor {
        max_message_size: MAX + 64,
        ..channel(0x10, "big", 1)
    };
    let mut ch_big = net.open_channel_on_all::<Seq>(big).expect("open");
    let mut ch_small = net
        .open_channel_on_all::<Seq>(channel(0x11, "small", 4))
        .expect("open");
    net.start().expect("start");
    net.wait_for_full_mesh(10 * SECOND).await.expect("mesh");
    let n1 = net.peer_id(1);
    let sizes = [0, 1, 1_000, 65_519, 65_520, 200_000, MAX];
    let pattern = |seq: u64, len: usize| Seq {
        seq,
        pad: (0..len).map(|i| (i as u64 ^ seq) as u8).collect(),
    };
    for (seq, &len) in sizes.iter().enumerate() {
        ch_big[0]
            .0
            .send(n1, pattern(seq as u64, len))
            .await
            .expect("send big");
        ch_small[0]
            .0
            .send(n1, Seq::padded(seq as u64, 10))
            .await
            .expect("send small");
    }
    for (seq, &len) in sizes.iter().enumerate() {
        let got = recv_within(&mut ch_big[1].1, 10 * SECOND)
            .await
            .expect("big");
        assert_eq!(
            got.message,
            pattern(seq as u64, len),
            "message {seq} altered"
        );
        let small = recv_within(&mut ch_small[1].1, 10 * SECOND)
            .await
            .expect("small");
        assert_eq!(small.message.seq, seq as u64);
    }
    net.shutdown().await;
}

/// A node configured for another network id never connects, however often
/// it is dialed; the nodes of the same network do.
pub async fn different_networks_never_connect(net: NetworkBuilder) {
    let mut net = net
        .seed(25)
        .nodes(3)
        .full_mesh()
        .configure(|i, config| {
            if i == 2 {
                config.network_id = "another-network".into();
            }
        })
        .build()
        .expect("build");
    net.start().expect("start");
    net.wait_connected(0, 1, 10 * SECOND)
        .await
        .expect("same network");
    net.wait_until("node 0 to fail a dial to node 2", 10 * SECOND, |net| {
        net.router(0).metrics().dial_failures.get() > 0
    })
    .await
    .expect("node 0 dials node 2 and fails");
    let (p0, p1, p2) = (net.peer_id(0), net.peer_id(1), net.peer_id(2));
    assert!(!net.router(0).is_connected(p2));
    assert!(!net.router(1).is_connected(p2));
    assert!(!net.router(2).is_connected(p0) && !net.router(2).is_connected(p1));
    assert!(
        net.router(0).metrics().dial_failures.get() > 0,
        "node 0 kept trying and failing"
    );
    net.shutdown().await;
}

/// A graceful shutdown tells each peer why (a goodbye) and ends every task
/// of the router.
pub async fn graceful_shutdown_says_goodbye_and_ends_every_task(net: NetworkBuilder) {
    let mut net = net.seed(26).nodes(3).full_mesh().build().expect("build");
    let _ch = net
        .open_channel_on_all::<Seq>(channel(0x10, "seq", 1))
        .expect("open");
    net.start().expect("start");
    net.wait_for_full_mesh(10 * SECOND).await.expect("mesh");
    let mut updates = net.router(1).subscribe();
    let n0 = net.peer_id(0);
    net.stop(0).await;
    let reason = tokio::time::timeout(5 * SECOND, async {
        loop {
            match updates.recv().await {
                Ok(u) if u.peer == n0 => {
                    if let PeerStatus::Down { reason } = u.status {
                        return reason;
                    }
                }
                Ok(_) => {}
                Err(e) => return format!("updates ended: {e}"),
            }
        }
    })
    .await
    .expect("node 1 sees node 0 go");
    assert!(
        reason.contains("goodbye") && reason.contains("Shutdown"),
        "node 1 learnt why: {reason}"
    );
    assert!(net.try_router(0).is_none());
    for i in 1..3 {
        let router = net.router(i).clone();
        net.stop(i).await;
        assert_eq!(router.running_tasks(), 0, "node {i} left tasks running");
    }
}

/// A node that crashes and restarts with the same key and data directory
/// is redialed by its persistent peer, and messages flow again.
pub async fn a_crashed_and_restarted_node_is_redialed(net: NetworkBuilder) {
    let mut net = net.seed(27).nodes(2).full_mesh().build().expect("build");
    let d = channel(0x10, "seq", 1);
    let mut ch = net.open_channel_on_all::<Seq>(d.clone()).expect("open");
    net.start().expect("start");
    net.wait_for_full_mesh(10 * SECOND).await.expect("mesh");
    net.crash(1).await;
    net.wait_until("node 0 to see the crash", 20 * SECOND, |net| {
        !net.router(0).is_connected(net.peer_id(1))
    })
    .await
    .expect("crash noticed");
    net.restart(1).await.expect("restart");
    let (_, mut rx) = net.open_channel::<Seq>(1, d).expect("open again");
    net.start_node(1).expect("start again");
    net.wait_for_full_mesh(20 * SECOND).await.expect("redialed");
    ch[0]
        .0
        .send(net.peer_id(1), Seq::padded(7, 0))
        .await
        .expect("send");
    let got = recv_within(&mut rx, 5 * SECOND).await;
    assert_eq!(got.map(|e| e.message.seq), Some(7));
    drop(ch.remove(1));
    net.shutdown().await;
}
