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

/// Write-through (ADR 0002) keeps FIFO and DRR. A bulk channel (priority
/// 1) and a priority channel (priority 8) get bursts of 200 messages each
/// every second on a 1 MB/s link, so while a burst drains the writer is
/// busy and the scheduler decides; a third channel sends a message every
/// 30 ms, so some of its sends find the writer idle and write through, and
/// others land in a burst and queue. Every stream arrives whole and in
/// order; while both burst channels have backlog, the bulk channel gets
/// about its weighted share (1/9); the third channel's sends did take the
/// write-through path (`messages_written_through_total`); nothing is
/// dropped.
#[tokio::test(start_paused = true)]
async fn write_through_keeps_fifo_and_drr_while_two_channels_compete() {
    const BURSTS: u64 = 12;
    const BURST: u64 = 200;
    // Writer batches of 8 frames: the receiver sees a batch's frames at
    // once (in any order across channels), so the share is measured to
    // within a batch.
    let mut net = Network::builder()
        .seed(16)
        .nodes(2)
        .router_config(p2p::RouterConfig {
            max_batch_frames: 8,
            ..p2p::RouterConfig::default()
        })
        .build()
        .expect("build");
    let wide = |id, name, priority| p2p::ChannelDescriptor {
        recv_buffer: 512,
        send_queue: 512,
        ..channel(id, name, priority)
    };
    let mut bulk = net
        .open_channel_on_all::<Seq>(wide(0x10, "bulk", 1))
        .expect("open");
    let mut prio = net
        .open_channel_on_all::<Seq>(wide(0x11, "prio", 8))
        .expect("open");
    let mut side = net
        .open_channel_on_all::<Seq>(wide(0x12, "side", 1))
        .expect("open");
    net.start().expect("start");
    net.wait_for_full_mesh(5 * SECOND).await.expect("mesh");
    net.set_bandwidth(0, 1, Some(1_000_000));
    let to = net.peer_id(1);
    let (bulk_tx, prio_tx, side_tx) = (bulk[0].0.clone(), prio[0].0.clone(), side[0].0.clone());
    let bursts = tokio::spawn(async move {
        for b in 0..BURSTS {
            for i in 0..BURST {
                let seq = b * BURST + i;
                bulk_tx.try_send(to, Seq::padded(seq, 512)).expect("room");
                prio_tx.try_send(to, Seq::padded(seq, 512)).expect("room");
            }
            tokio::time::sleep(SECOND).await;
        }
    });
    let side_sends = BURSTS * SECOND.as_millis() as u64 / 30;
    let side_task = tokio::spawn(async move {
        for seq in 0..side_sends {
            side_tx.send(to, Seq::padded(seq, 64)).await.expect("send");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });
    let (mut bulk_rx, mut prio_rx, mut side_rx) =
        (bulk.remove(1).1, prio.remove(1).1, side.remove(1).1);
    let mut next = [0u64; 3];
    // Bulk messages that arrived, in each burst, before the priority
    // channel's burst was complete.
    let mut bulk_while_both = 0u64;
    let total = 2 * BURSTS * BURST + side_sends;
    while next.iter().sum::<u64>() < total {
        let (c, env) = tokio::select! {
            Some(env) = bulk_rx.recv() => (0, env),
            Some(env) = prio_rx.recv() => (1, env),
            Some(env) = side_rx.recv() => (2, env),
        };
        assert_eq!(env.message.seq, next[c], "channel {c} out of order");
        next[c] += 1;
        if c == 0 && next[1] < (env.message.seq / BURST + 1) * BURST {
            // The priority channel has not finished this burst yet.
            bulk_while_both += 1;
        }
    }
    bursts.await.expect("bursts");
    side_task.await.expect("side");
    assert_eq!(next, [BURSTS * BURST, BURSTS * BURST, side_sends]);
    let share = bulk_while_both as f64 / (bulk_while_both + BURSTS * BURST) as f64;
    // Weighted share 1/9 = 0.111 (equal sizes).
    assert!(
        (0.08..=0.17).contains(&share),
        "bulk got {share:.3} while both had backlog, expected about 0.111"
    );
    let metrics = net.router(0).metrics();
    let written_through = |name: &str| {
        metrics
            .messages_written_through
            .get_or_create(&p2p::metrics::ChannelPeerLabels {
                channel: name.to_string(),
                peer: to.to_string(),
            })
            .get()
    };
    let side_through = written_through("side");
    assert!(
        side_through > 0,
        "no send of the side channel took the write-through path"
    );
    assert!(
        side_through < side_sends,
        "every side send wrote through: none met a busy writer, the test shows nothing"
    );
    for name in ["bulk", "prio", "side"] {
        for reason in [p2p::DropReason::PeerGone, p2p::DropReason::QueueFull] {
            assert_eq!(
                metrics.dropped(name, reason),
                0,
                "{name} dropped ({reason:?})"
            );
        }
    }
    net.shutdown().await;
}

/// `send` stays cancel-safe with write-through: under the paused clock,
/// 2,000 sends on a slow link (so writes wait on the transport and get
/// handed to the writer) with a 4-message queue (so sends wait for room)
/// are each given a seeded random deadline and dropped when it passes.
/// Exactly the sends that completed arrive, once each and in order; a
/// dropped send's message never arrives; nothing is counted as dropped.
#[tokio::test(start_paused = true)]
async fn dropping_send_futures_at_random_points_loses_and_duplicates_nothing() {
    use rand::{Rng, SeedableRng};
    const SENDS: u64 = 2_000;
    let mut net = Network::builder().seed(17).nodes(2).build().expect("build");
    let narrow = p2p::ChannelDescriptor {
        send_queue: 4,
        recv_buffer: 8,
        ..channel(0x10, "cancel", 1)
    };
    let mut ch = net.open_channel_on_all::<Seq>(narrow).expect("open");
    net.start().expect("start");
    net.wait_for_full_mesh(5 * SECOND).await.expect("mesh");
    net.set_bandwidth(0, 1, Some(200_000));
    let to = net.peer_id(1);
    let tx = ch[0].0.clone();
    let mut rx = ch.remove(1).1;
    let (arrivals, mut arrived_rx) = tokio::sync::mpsc::unbounded_channel();
    let receiver = tokio::spawn(async move {
        while let Some(env) = rx.recv().await {
            if arrivals.send(env.message.seq).is_err() {
                break;
            }
        }
    });
    let sender = tokio::spawn(async move {
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        let mut completed = Vec::new();
        for seq in 0..SENDS {
            // From "dropped before its first poll" to "plenty of time".
            let deadline = Duration::from_micros(rng.random_range(0..4_000));
            let send = tx.send(to, Seq::padded(seq, 200));
            if let Ok(result) = tokio::time::timeout(deadline, send).await {
                result.expect("send");
                completed.push(seq);
            }
            if rng.random_bool(0.1) {
                tokio::time::sleep(Duration::from_micros(rng.random_range(0..3_000))).await;
            }
        }
        completed
    });
    let completed = sender.await.expect("sender");
    assert!(
        completed.len() > 100 && completed.len() < SENDS as usize - 100,
        "the deadlines should cut some sends and let others complete: {} of {SENDS} completed",
        completed.len()
    );
    // Everything in flight lands well within this (paused) time.
    tokio::time::sleep(30 * SECOND).await;
    let mut arrived = Vec::new();
    while let Ok(seq) = arrived_rx.try_recv() {
        arrived.push(seq);
    }
    assert_eq!(
        arrived, completed,
        "exactly the completed sends, in order, once each"
    );
    let metrics = net.router(0).metrics();
    for reason in [p2p::DropReason::PeerGone, p2p::DropReason::QueueFull] {
        assert_eq!(metrics.dropped("cancel", reason), 0, "{reason:?}");
    }
    let through = metrics
        .messages_written_through
        .get_or_create(&p2p::metrics::ChannelPeerLabels {
            channel: "cancel".to_string(),
            peer: to.to_string(),
        })
        .get();
    assert!(through > 0, "no send wrote through");
    net.shutdown().await;
    receiver.abort();
}
