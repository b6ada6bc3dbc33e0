//! What the gossip reactor's shell promises the application, on two
//! routers over the memory transport on tokio's paused clock: a
//! subscription read too slowly loses events, counted and told with
//! `Lagged`; a topic whose subscriptions are all dropped is left.

use std::time::Duration;

use p2p::PeerId;
use reactor_gossip::{
    Gossip, GossipConfig, PlumtreeConfig, SUBSCRIPTION_BUFFER, Subscription, TopicEvent, TopicId,
};
use testkit::Network;

const SECOND: Duration = Duration::from_secs(1);

/// Reads `subscription` until `want` matches an event, for at most
/// `deadline` of simulated time; the events read.
async fn read_until(
    subscription: &mut Subscription,
    deadline: Duration,
    mut want: impl FnMut(&TopicEvent) -> bool,
) -> Vec<TopicEvent> {
    let end = tokio::time::Instant::now() + deadline;
    let mut seen = Vec::new();
    while tokio::time::Instant::now() < end {
        while let Some(event) = subscription.try_recv() {
            let done = want(&event);
            seen.push(event);
            if done {
                return seen;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no such event within {deadline:?}; read {seen:?}");
}

#[tokio::test(start_paused = true)]
async fn a_slow_subscription_is_told_it_lagged_and_a_topic_nobody_reads_is_left() {
    let seed = 3;
    let mut net = Network::builder()
        .seed(seed)
        .nodes(2)
        .links(vec![(0, 1)])
        .build()
        .expect("build");
    // No per-origin limit: one origin publishes more than a subscription
    // buffers.
    let config = GossipConfig {
        plumtree: PlumtreeConfig {
            origin_rate: 0,
            ..PlumtreeConfig::default()
        },
        ..GossipConfig::default()
    };
    let handles = net
        .reactor_on_all(|i| {
            Gossip::new(testkit::node_keypair(seed, i), config.clone()).expect("config")
        })
        .expect("open gossip");
    net.start().expect("start");
    net.wait_connected(0, 1, 10 * SECOND).await.expect("link");
    let (p0, p1) = (net.peer_id(0), net.peer_id(1));
    let topic = TopicId::from_name("shell");
    let mut publisher = handles[0]
        .subscribe(topic, Vec::<PeerId>::new())
        .await
        .expect("subscribe");
    let mut reader = handles[1]
        .subscribe(topic, vec![p0])
        .await
        .expect("subscribe");
    read_until(&mut publisher, 10 * SECOND, |e| {
        *e == TopicEvent::NeighborUp(p1)
    })
    .await;
    read_until(&mut reader, 10 * SECOND, |e| {
        *e == TopicEvent::NeighborUp(p0)
    })
    .await;

    // Ten more messages than the reader's buffer, while it reads nothing.
    let sent = SUBSCRIPTION_BUFFER + 10;
    for k in 0..sent {
        handles[0]
            .publish(topic, format!("message {k}"))
            .await
            .expect("publish");
    }
    net.wait_until("every message to reach node 1", 30 * SECOND, |_| {
        handles[1].stats().delivered == sent as u64
    })
    .await
    .expect("delivered");
    assert_eq!(handles[1].stats().app_events_dropped, 10);
    for _ in 0..SUBSCRIPTION_BUFFER {
        assert!(matches!(reader.try_recv(), Some(TopicEvent::Received(_))));
    }
    assert_eq!(reader.try_recv(), None);
    // The next event is preceded by how many were lost.
    handles[0].publish(topic, "after").await.expect("publish");
    let events = read_until(
        &mut reader,
        10 * SECOND,
        |e| matches!(e, TopicEvent::Received(m) if m.payload.as_ref() == b"after"),
    )
    .await;
    assert_eq!(events.first(), Some(&TopicEvent::Lagged(10)));

    // Nobody reads node 1's topic any more: its next event makes node 1
    // leave, and node 0 sees its neighbour go.
    drop(reader);
    handles[0].publish(topic, "unread").await.expect("publish");
    read_until(&mut publisher, 10 * SECOND, |e| {
        *e == TopicEvent::NeighborDown(p1)
    })
    .await;
    assert_eq!(
        handles[1].size_estimate(topic).await.expect("running"),
        None,
        "node 1 left the topic"
    );
    net.shutdown().await;
}
