//! The per-peer byte budget (issue 14, item 4): credit is counted in
//! messages, but a peer gets only as much as its share of
//! `recv_bytes_per_peer` covers at each channel's `max_message_size`, so
//! channels of large messages cannot make a node hold `window ×
//! max_message_size` for every peer.

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use common::{SECOND, Seq, channel};
use p2p::transport::Frame;
use p2p::{ChannelDescriptor, ChannelId, DropReason};
use testkit::Network;
use testkit::adversary::RawPeer;

const MIB: usize = 1024 * 1024;
/// `RouterConfig::default().recv_bytes_per_peer`.
const BUDGET: usize = 16 * MIB;

/// A channel of 64 messages of up to 1 MiB: 64 MiB of credit per peer
/// counted in messages alone.
fn large(id: u16, name: &'static str) -> ChannelDescriptor {
    ChannelDescriptor {
        recv_buffer: 64,
        max_message_size: MIB,
        ..channel(id, name, 1)
    }
}

/// Node 0 serves two channels of 1 MiB messages and never reads them. An
/// admitted peer spends every credit it gets on 1 MiB messages, on both,
/// until no more credit comes. What it made the node hold is at most the
/// default per-peer budget (16 MiB), where windows alone allowed 128 MiB,
/// and nothing was dropped as `receiver_full`. Then an honest peer still
/// gets its share on the same channel.
#[tokio::test(start_paused = true)]
async fn a_peer_cannot_make_a_stalled_node_hold_more_than_its_byte_budget() {
    let mut net = Network::builder()
        .seed(71)
        .nodes(2)
        .isolated()
        .build()
        .expect("build");
    let mut a = net.open_channel_on_all::<Seq>(large(0x10, "a")).expect("a");
    let _b = net.open_channel_on_all::<Seq>(large(0x11, "b")).expect("b");
    net.start().expect("start");
    let budget = BUDGET;

    let mut attacker = RawPeer::connect(&net, 0, 7_000, &[0x10, 0x11])
        .await
        .expect("admitted");
    let payload = Bytes::from(vec![0x41; MIB]);
    // The early credit of protocol version 3 is the peer's from the
    // start; the rest comes in `Credit` frames.
    let mut credit: HashMap<ChannelId, u32> = [ChannelId(0x10), ChannelId(0x11)]
        .into_iter()
        .map(|c| (c, p2p::router::EARLY_CREDIT))
        .collect();
    let mut sent = 0usize;
    loop {
        let frames = attacker.recv_frames(SECOND).await.expect("connected");
        if frames.is_empty() && credit.values().all(|c| *c == 0) {
            // No more credit is coming: the node holds all it will.
            break;
        }
        for frame in frames {
            if let Frame::Credit { channel, messages } = frame {
                *credit.entry(channel).or_default() += messages;
            }
        }
        let mut data = Vec::new();
        for (channel, credit) in &mut credit {
            for _ in 0..std::mem::take(credit) {
                data.push(Frame::Data {
                    channel: *channel,
                    payload: payload.clone(),
                });
                sent += MIB;
            }
        }
        attacker.send_frames(data).await.expect("send");
        assert!(
            sent <= budget,
            "the peer was given credit for {} MiB, over the budget of {} MiB",
            sent / MIB,
            budget / MIB
        );
    }
    assert_eq!(sent, budget, "the peer gets its whole budget");
    let metrics = net.router(0).metrics();
    assert_eq!(metrics.dropped("a", DropReason::ReceiverFull), 0);
    assert_eq!(metrics.dropped("b", DropReason::ReceiverFull), 0);
    assert_eq!(metrics.dropped("a", DropReason::FlowControl), 0);

    // Node 1, honest, sends 1 MiB messages on channel a: it gets as much
    // credit as the attacker got there.
    net.router(1)
        .dial(net.address(0).clone())
        .await
        .expect("dial");
    net.wait_connected(1, 0, 5 * SECOND).await.expect("up");
    let n0 = net.peer_id(0);
    let mut queued = 0;
    while tokio::time::timeout(SECOND, a[1].0.send(n0, Seq::padded(queued, MIB - 16)))
        .await
        .is_ok()
    {
        queued += 1;
    }
    tokio::time::sleep(SECOND).await;
    let mut from_honest = 0;
    while let Some(envelope) = a[0].1.try_recv() {
        if envelope.from == net.peer_id(1) {
            from_honest += 1;
        }
    }
    assert_eq!(
        from_honest * MIB,
        budget / 2,
        "the honest peer's share of channel a"
    );
    net.shutdown().await;
}
