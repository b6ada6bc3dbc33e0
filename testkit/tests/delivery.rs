//! Delivery promises that need the memory hub's fault hooks: at most once
//! under loss and cuts, priorities without starvation on a slow link. The
//! transport-generic promises are in `testkit::suite` (promises_memory.rs).

mod common;

use std::time::Duration;

use common::{SECOND, Seq, channel};
use p2p::SendError;
use testkit::{Network, recv_within};

/// Under 5% loss and a reconnect every 10,000 messages, 100,000 numbered
/// messages arrive in strictly increasing order: nothing twice, nothing
/// reordered, and the gaps are only the losses.
#[tokio::test(start_paused = true)]
async fn at_most_once_under_loss_and_reconnects() {
    const TOTAL: u64 = 100_000;
    let mut net = Network::builder().seed(11).nodes(2).build().expect("build");
    let mut ch = net
        .open_channel_on_all::<Seq>(channel(0x10, "seq", 1))
        .expect("open");
    net.start().expect("start");
    net.wait_for_full_mesh(5 * SECOND).await.expect("mesh");
    net.set_loss(0, 1, 0.05);
    let (tx, _) = ch.remove(0);
    let (_, mut rx) = ch.remove(0);
    let to = net.peer_id(1);
    let receiver = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(env) = recv_within(&mut rx, 10 * SECOND).await {
            seen.push(env.message.seq);
        }
        seen
    });
    let mut refused = 0u64;
    for seq in 0..TOTAL {
        if seq > 0 && seq % 10_000 == 0 {
            // Reconnect: cut the link, heal it, let the persistent peer redial.
            net.partition(&[&[0], &[1]]);
            net.heal_all();
        }
        loop {
            match tx.send(to, Seq::new(seq)).await {
                Ok(()) => break,
                Err(SendError::NotConnected(_)) => {
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    // This seq was never queued; sending it again is not a
                    // retransmission by the router.
                }
                Err(e) => panic!("unexpected send error {e}"),
            }
        }
    }
    let seen = receiver.await.expect("receiver");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "a sequence number was delivered twice or out of order"
    );
    // Losses are about 5% plus what was queued when links were cut.
    assert!(
        seen.len() as u64 > TOTAL * 80 / 100,
        "only {} of {TOTAL} arrived",
        seen.len()
    );
    assert!(
        (seen.len() as u64) < TOTAL,
        "loss of 5% must lose something"
    );
    assert!(refused > 0, "reconnects must have happened");
    net.shutdown().await;
}

/// A saturating priority-8 channel does not stop a priority-1 channel on the
/// same connection, which keeps at least most of its weighted share (1/9 of
/// the bytes).
#[tokio::test(start_paused = true)]
async fn no_starvation_low_priority_keeps_its_share() {
    let mut net = Network::builder().seed(13).nodes(2).build().expect("build");
    // Windows larger than a writer batch, so credit is not what limits either
    // channel: priorities act on the link (ADR 0002).
    let wide = |id, name, priority| p2p::ChannelDescriptor {
        recv_buffer: 512,
        send_queue: 512,
        ..channel(id, name, priority)
    };
    let mut low = net
        .open_channel_on_all::<Seq>(wide(0x10, "low", 1))
        .expect("open");
    let mut high = net
        .open_channel_on_all::<Seq>(wide(0x11, "high", 8))
        .expect("open");
    net.start().expect("start");
    net.wait_for_full_mesh(5 * SECOND).await.expect("mesh");
    // 1 MB/s: the link, not the receiver, is the bottleneck, so the writer's
    // scheduler decides who goes first.
    net.set_bandwidth(0, 1, Some(1_000_000));
    let to = net.peer_id(1);
    let spawn_flood = |tx: p2p::ChannelSender<Seq>| {
        tokio::spawn(async move {
            let mut seq = 0;
            while tx.send(to, Seq::padded(seq, 512)).await.is_ok() {
                seq += 1;
            }
        })
    };
    let f1 = spawn_flood(low[0].0.clone());
    let f2 = spawn_flood(high[0].0.clone());
    let (mut low_rx, mut high_rx) = (low.remove(1).1, high.remove(1).1);
    let (mut low_n, mut high_n) = (0u64, 0u64);
    while low_n + high_n < 20_000 {
        tokio::select! {
            Some(_) = low_rx.recv() => low_n += 1,
            Some(_) = high_rx.recv() => high_n += 1,
        }
    }
    let share = low_n as f64 / (low_n + high_n) as f64;
    // Weighted share: 1/9 = 0.111 of the bytes (both send equal sizes).
    assert!(
        share >= 0.09,
        "low priority got {share:.3} of the messages, expected about 0.111"
    );
    assert!(share <= 0.2, "priority had no effect: low got {share:.3}");
    net.shutdown().await;
    f1.abort();
    f2.abort();
}
