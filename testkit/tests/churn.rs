//! Receive-queue accounting under churn: what a peer left in a channel's
//! shared receive queue counts against it after it reconnects, and the queue
//! cannot overflow however peers come and go, so `receiver_full` stays at
//! zero and honest peers keep the credit they were granted.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{SECOND, Seq, channel};
use p2p::{ChannelDescriptor, ChannelReceiver, ChannelSender, DropReason, PeerAddress, PeerId};
use testkit::Network;

/// A small window, so that a few reconnections would overflow the queue.
const WINDOW: usize = 8;

fn small_channel() -> ChannelDescriptor {
    ChannelDescriptor {
        recv_buffer: WINDOW,
        send_queue: WINDOW,
        ..channel(0x10, "chan", 1)
    }
}

/// Node 0 takes 2 inbound and 1 outbound peer, so each channel's receive
/// queue holds `WINDOW × (2 + 1 + 1)` messages.
fn small_receiver(i: usize, config: &mut p2p::RouterConfig) {
    if i == 0 {
        config.peer_manager.max_inbound = 2;
        config.peer_manager.max_outbound = 1;
        // No reactor here asks for connections: no room for them either,
        // so the queue is sized for 2 + 1 + 0 + 1 peers' windows.
        config.peer_manager.max_requested_outbound = 0;
    }
}

/// Queues as much as `tx` takes toward `to`, giving the writer time to
/// spend whatever credit it has; returns how many messages were queued.
async fn fill(tx: &ChannelSender<Seq>, to: PeerId, seq: &mut u64) -> usize {
    let mut queued = 0;
    for _ in 0..4 {
        while tx.try_send(to, Seq::new(*seq)).is_ok() {
            *seq += 1;
            queued += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    queued
}

/// Takes every message waiting in `rx` without waiting; counts them per
/// sender.
fn drain(rx: &mut ChannelReceiver<Seq>) -> HashMap<PeerId, usize> {
    let mut from = HashMap::new();
    while let Some(envelope) = rx.try_recv() {
        *from.entry(envelope.from).or_default() += 1;
    }
    from
}

/// Node 0 disconnects node 1, a persistent peer of node 1, and waits until
/// node 1 is back.
async fn reconnect(net: &Network, churner: usize) {
    let peer = net.peer_id(churner);
    assert!(
        net.router(0).disconnect(peer, None).await.expect("router"),
        "node {churner} was connected"
    );
    net.wait_until("the churner to go", 5 * SECOND, |net| {
        !net.router(0).is_connected(peer)
    })
    .await
    .expect("down");
    net.wait_connected(0, churner, 10 * SECOND)
        .await
        .expect("the churner reconnects");
}

/// Node 1 reconnects to node 0 twelve times, each time sending as fast as
/// its credit allows, while node 0's reactor does not read. Then node 2,
/// connected all along, sends its window. Nothing is dropped as
/// `receiver_full`, node 2's whole window is queued, and node 1 never has
/// more than its window in node 0's queue, whatever its reconnections
/// (nothing is read before the end, so what is queued then is all node 1
/// ever got in). Over several seeds.
#[tokio::test(start_paused = true)]
async fn a_churning_peer_cannot_fill_the_receive_queue() {
    for seed in [61, 64, 65, 66] {
        churn_against_a_stalled_reactor(seed).await;
    }
}

async fn churn_against_a_stalled_reactor(seed: u64) {
    let mut net = Network::builder()
        .seed(seed)
        .nodes(3)
        .links(vec![(1, 0), (2, 0)])
        .configure(small_receiver)
        .build()
        .expect("build");
    let mut ch = net
        .open_channel_on_all::<Seq>(small_channel())
        .expect("open");
    net.start().expect("start");
    net.wait_connected(0, 1, 5 * SECOND).await.expect("1 up");
    net.wait_connected(0, 2, 5 * SECOND).await.expect("2 up");
    let n0 = net.peer_id(0);
    let mut seq = 0;
    for _ in 0..12 {
        fill(&ch[1].0, n0, &mut seq).await;
        reconnect(&net, 1).await;
    }
    fill(&ch[1].0, n0, &mut seq).await;

    // The honest peer sends within the credit it holds since it connected.
    for i in 0..WINDOW as u64 {
        tokio::time::timeout(SECOND, ch[2].0.send(n0, Seq::new(i)))
            .await
            .expect("node 2 has room")
            .expect("node 2 connected");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    let metrics = net.router(0).metrics();
    assert_eq!(
        metrics.dropped("chan", DropReason::ReceiverFull),
        0,
        "seed {seed}"
    );
    let from = drain(&mut ch[0].1);
    assert_eq!(
        from.get(&net.peer_id(2)),
        Some(&WINDOW),
        "seed {seed}: {from:?}"
    );
    let churned = from.get(&net.peer_id(1)).copied().unwrap_or(0);
    assert!(
        churned <= WINDOW,
        "seed {seed}: node 1 had {churned} messages queued, more than its window of {WINDOW}"
    );
    net.shutdown().await;
}

/// After node 1's reconnections, node 0's reactor drains the queue: node 1's
/// current connection is then owed, and gets, its whole window again, no
/// more and no less, without any message of node 1 being read meanwhile.
#[tokio::test(start_paused = true)]
async fn a_reconnected_peer_gets_its_full_window_back_once_the_reactor_drains() {
    let mut net = Network::builder()
        .seed(62)
        .nodes(2)
        .links(vec![(1, 0)])
        .configure(small_receiver)
        .build()
        .expect("build");
    let mut ch = net
        .open_channel_on_all::<Seq>(small_channel())
        .expect("open");
    net.start().expect("start");
    net.wait_connected(0, 1, 5 * SECOND).await.expect("up");
    let (n0, n1) = (net.peer_id(0), net.peer_id(1));
    let mut seq = 0;
    for _ in 0..5 {
        fill(&ch[1].0, n0, &mut seq).await;
        reconnect(&net, 1).await;
    }
    fill(&ch[1].0, n0, &mut seq).await;
    let backlog = drain(&mut ch[0].1).get(&n1).copied().unwrap_or(0);
    assert!(
        backlog <= WINDOW,
        "node 1 had {backlog} messages queued, more than its window of {WINDOW}"
    );

    // The reactor is drained. Node 1 sends again; node 0 reads nothing until
    // node 1 has stalled.
    fill(&ch[1].0, n0, &mut seq).await;
    fill(&ch[1].0, n0, &mut seq).await;
    let window = drain(&mut ch[0].1).get(&n1).copied().unwrap_or(0);
    assert_eq!(window, WINDOW, "node 1's window after the drain");
    assert_eq!(
        net.router(0)
            .metrics()
            .dropped("chan", DropReason::ReceiverFull),
        0
    );
    net.shutdown().await;
}

/// Six different peers connect to node 0 one after another, each sends as
/// fast as its credit allows and leaves, while node 0's reactor does not
/// read. What they left behind cannot crowd out node 7, connected all
/// along: its window is queued in full and nothing is dropped as
/// `receiver_full`. The queue never holds more than it was sized for.
#[tokio::test(start_paused = true)]
async fn peers_that_come_and_go_cannot_fill_the_receive_queue() {
    let mut net = Network::builder()
        .seed(63)
        .nodes(8)
        .links(vec![(7, 0)])
        .configure(small_receiver)
        .build()
        .expect("build");
    let mut ch = net
        .open_channel_on_all::<Seq>(small_channel())
        .expect("open");
    net.start().expect("start");
    net.wait_connected(0, 7, 5 * SECOND).await.expect("7 up");
    let n0 = net.peer_id(0);
    let mut seq = 0;
    for (i, (tx, _)) in ch.iter().enumerate().take(7).skip(1) {
        net.router(i)
            .dial(PeerAddress::memory(n0))
            .await
            .expect("dial");
        net.wait_connected(0, i, 5 * SECOND).await.expect("up");
        fill(tx, n0, &mut seq).await;
        net.stop(i).await;
        let gone = net.peer_id(i);
        net.wait_until("the peer to go", 5 * SECOND, |net| {
            !net.router(0).is_connected(gone)
        })
        .await
        .expect("down");
    }

    for i in 0..WINDOW as u64 {
        tokio::time::timeout(SECOND, ch[7].0.send(n0, Seq::new(i)))
            .await
            .expect("node 7 has room")
            .expect("node 7 connected");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    assert_eq!(
        net.router(0)
            .metrics()
            .dropped("chan", DropReason::ReceiverFull),
        0
    );
    let from = drain(&mut ch[0].1);
    assert_eq!(from.get(&net.peer_id(7)), Some(&WINDOW), "{from:?}");
    let total: usize = from.values().sum();
    assert!(
        total <= WINDOW * 4,
        "{total} messages queued in a queue sized for {}",
        WINDOW * 4
    );
    net.shutdown().await;
}
