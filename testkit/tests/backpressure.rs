//! Backpressure isolation and drop accounting.

mod common;

use std::time::Duration;

use common::{SECOND, Seq, channel};
use p2p::{DropReason, SendError, TrySendError};
use testkit::{Network, recv_within};

/// Node 1's reactor stops reading channel A. Node 0's sender of A to node 1
/// sees `send` wait and `try_send` return `Full`, while channel B to node 1
/// and channel A to node 2 keep flowing; queues stay within their bounds.
#[tokio::test(start_paused = true)]
async fn backpressure_isolation_per_peer_and_channel() {
    let mut net = Network::builder().seed(21).nodes(3).build().expect("build");
    let a = channel(0x10, "a", 1);
    let mut ch_a = net.open_channel_on_all::<Seq>(a.clone()).expect("open a");
    let mut ch_b = net
        .open_channel_on_all::<Seq>(channel(0x11, "b", 1))
        .expect("open b");
    net.start().expect("start");
    net.wait_for_full_mesh(5 * SECOND).await.expect("mesh");
    let (n1, n2) = (net.peer_id(1), net.peer_id(2));
    let tx_a = ch_a[0].0.clone();
    let tx_b = ch_b[0].0.clone();

    // Fill A toward node 1, whose reactor never reads A.
    let mut queued = 0usize;
    let full = loop {
        match tx_a.try_send(n1, Seq::new(queued as u64)) {
            Ok(()) => queued += 1,
            Err(e) => break e,
        }
        if queued % 64 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(
            queued < 10_000,
            "queue toward a stalled reactor never filled"
        );
    };
    assert!(matches!(full, TrySendError::Full { .. }), "{full:?}");
    // Bounded: the remote's window plus our send queue.
    assert_eq!(queued, a.recv_buffer + a.send_queue);
    let blocked = tokio::time::timeout(SECOND, tx_a.send(n1, Seq::new(0))).await;
    assert!(blocked.is_err(), "send must wait while the queue is full");

    // B to node 1 and A to node 2 flow.
    for seq in 0..1_000 {
        tx_b.send(n1, Seq::new(seq)).await.expect("b to node 1");
        tx_a.send(n2, Seq::new(seq)).await.expect("a to node 2");
        let got_b = recv_within(&mut ch_b[1].1, SECOND)
            .await
            .expect("b arrives");
        let got_a = recv_within(&mut ch_a[2].1, SECOND)
            .await
            .expect("a arrives at node 2");
        assert_eq!((got_b.message.seq, got_a.message.seq), (seq, seq));
    }

    // Memory stays bounded: node 1 holds at most its window of A.
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

    // Reading A again releases the queue, in order.
    for seq in 0..queued as u64 {
        let env = recv_within(&mut ch_a[1].1, 5 * SECOND)
            .await
            .expect("a drains");
        assert_eq!(env.message.seq, seq);
    }
    net.shutdown().await;
}

/// Every kind of drop is counted under its reason.
#[tokio::test(start_paused = true)]
async fn every_drop_is_counted_with_its_reason() {
    let mut net = Network::builder().seed(22).nodes(2).build().expect("build");
    let small = p2p::ChannelDescriptor {
        send_queue: 4,
        recv_buffer: 4,
        max_message_size: 1024,
        ..channel(0x10, "small", 1)
    };
    let mut ch = net.open_channel_on_all::<Seq>(small.clone()).expect("open");
    let (_, mut other) = net
        .open_channel::<Seq>(1, channel(0x11, "other", 1))
        .expect("open other");
    net.start().expect("start");
    net.wait_for_full_mesh(5 * SECOND).await.expect("mesh");
    let metrics = net.router(0).metrics().clone();
    let tx = ch[0].0.clone();
    let n1 = net.peer_id(1);

    // too_large: refused before queuing.
    let err = tx
        .send(n1, Seq::padded(0, 2048))
        .await
        .expect_err("too large");
    assert!(matches!(err, SendError::TooLarge { .. }), "{err}");
    assert_eq!(metrics.dropped("small", DropReason::TooLarge), 1);

    // not_connected.
    let stranger = p2p::Keypair::from_seed(999).peer_id();
    assert!(matches!(
        tx.try_send(stranger, Seq::new(0)),
        Err(TrySendError::Send(SendError::NotConnected(_)))
    ));
    assert_eq!(metrics.dropped("small", DropReason::NotConnected), 1);

    // queue_full: window 4 + queue 4, then one more.
    let mut n = 0;
    while tx.try_send(n1, Seq::new(n)).is_ok() {
        n += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(metrics.dropped("small", DropReason::QueueFull), 1);
    let report = tx.broadcast(Seq::new(0));
    assert_eq!(report.full, vec![n1]);
    assert_eq!(metrics.dropped("small", DropReason::QueueFull), 2);

    // peer_gone: what is queued when the connection dies.
    net.partition(&[&[0], &[1]]);
    net.wait_until("node 0 to see node 1 gone", 5 * SECOND, |net| {
        !net.router(0).is_connected(n1)
    })
    .await
    .expect("down");
    assert_eq!(
        metrics.dropped("small", DropReason::PeerGone),
        small.send_queue as u64
    );

    // receiver_closed: node 1 dropped its receiver of "other"; node 0 sends
    // on a channel node 1 announced but no longer reads.
    net.heal_all();
    net.wait_for_full_mesh(5 * SECOND)
        .await
        .expect("mesh again");
    drop(ch.remove(1));
    tokio::time::sleep(Duration::from_millis(10)).await;
    // The receiver of "small" on node 1 was dropped with messages in it, or
    // got some after: all of them count as receiver_closed on node 1.
    tx.send(n1, Seq::new(1)).await.expect("send");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let node1 = net.router(1).metrics().clone();
    assert!(node1.dropped("small", DropReason::ReceiverClosed) >= 1);
    assert!(other.try_recv().is_none());
    net.shutdown().await;
}

/// A peer announces a smaller `max_message_size` for a channel than ours:
/// larger messages are refused at the sender (counted `too_large`) instead
/// of being sent only to be dropped and held against us.
#[tokio::test(start_paused = true)]
async fn the_remote_max_message_size_is_honoured_at_the_sender() {
    let mut net = Network::builder().seed(23).nodes(2).build().expect("build");
    let big = p2p::ChannelDescriptor {
        max_message_size: 4096,
        ..channel(0x10, "sized", 1)
    };
    let small = p2p::ChannelDescriptor {
        max_message_size: 100,
        ..big.clone()
    };
    let (tx, _rx0) = net.open_channel::<Seq>(0, big).expect("open");
    let (_tx1, mut rx) = net.open_channel::<Seq>(1, small).expect("open");
    net.start().expect("start");
    net.wait_for_full_mesh(5 * SECOND).await.expect("mesh");
    let n1 = net.peer_id(1);
    let err = tx
        .send(n1, Seq::padded(1, 500))
        .await
        .expect_err("too large for node 1");
    assert!(matches!(err, SendError::TooLarge { max: 100, .. }), "{err}");
    let report = tx.broadcast(Seq::padded(2, 500));
    assert_eq!(report.too_large, vec![n1]);
    let metrics = net.router(0).metrics();
    assert_eq!(metrics.dropped("sized", DropReason::TooLarge), 2);
    tx.send(n1, Seq::padded(3, 50)).await.expect("small enough");
    assert_eq!(
        recv_within(&mut rx, SECOND).await.map(|e| e.message.seq),
        Some(3)
    );
    // Node 1 never saw an oversized message, so node 0 was not penalised.
    assert_eq!(
        net.router(1).score(net.peer_id(0)).await.expect("score"),
        Some(0)
    );
    net.shutdown().await;
}
