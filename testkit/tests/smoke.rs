//! Smoke test: two routers over the memory hub exchange one message.

use std::time::Duration;

use p2p::ChannelDescriptor;
use testkit::{Network, recv_within};

#[derive(Clone, PartialEq, prost::Message)]
struct Seq {
    #[prost(uint64, tag = "1")]
    seq: u64,
}

#[tokio::test(start_paused = true)]
async fn two_nodes_exchange_a_message() {
    let mut net = Network::builder().seed(1).nodes(2).build().expect("build");
    let mut ch = net
        .open_channel_on_all::<Seq>(ChannelDescriptor::new(0x10, "seq"))
        .expect("open");
    net.start().expect("start");
    net.wait_for_full_mesh(Duration::from_secs(5))
        .await
        .expect("mesh");
    let to = net.peer_id(1);
    ch[0].0.send(to, Seq { seq: 42 }).await.expect("send");
    let got = recv_within(&mut ch[1].1, Duration::from_secs(1))
        .await
        .expect("recv");
    assert_eq!(got.message.seq, 42);
    assert_eq!(got.from, net.peer_id(0));
    net.shutdown().await;
}
