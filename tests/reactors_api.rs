//! Gossip, rooms and the ring on real nodes built from a [`Config`], over
//! TCP on loopback, through the HTTP API: a message published on one node
//! streams out of another as server-sent events, a room write reaches
//! every node with the same state hash, a node without the write key is
//! refused, and every node gets a ring location and neighbours.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use switchyard::api::ErrorBody;
use switchyard::config::{Config, RoomSection};
use switchyard::gossip::{GossipOverview, Published, RoomEntry, TopicChange, Written};
use switchyard::node::Node;
use switchyard::p2p::{Keypair, PeerAddress, PeerId};
use switchyard::ring::RingView;
use tokio::sync::mpsc;

/// Polls `condition` every 100 ms for up to 60 s.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

struct TestNode {
    node: Node,
    api: SocketAddr,
}

impl TestNode {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    fn tcp(&self) -> PeerAddress {
        self.node
            .router()
            .listen_addresses()
            .iter()
            .find(|a| a.scheme() == "tcp")
            .cloned()
            .expect("a TCP listen address")
    }
}

fn config(home: &Path, gateway: Option<&PeerAddress>, room: RoomSection) -> Config {
    let mut config = Config {
        data_dir: Some(home.to_path_buf()),
        network_id: "reactors-api-test".into(),
        ..Config::default()
    };
    config.transports.tcp.listen = "127.0.0.1:0".parse().expect("address");
    config.api.listen = "127.0.0.1:0".parse().expect("address");
    // Every node is on loopback: peer exchange, gossip and ring contacts
    // are loopback addresses.
    config.peers.allow_private_addresses = true;
    config.peers.max_ports_per_host = 8;
    config.peers.max_inbound_per_prefix = 8;
    config.peers.bootstrap.extend(gateway.cloned());
    config.reactors.gossip.topics = vec!["chat".into()];
    config.reactors.gossip.rooms = vec![room];
    let ring = &mut config.reactors.ring;
    ring.enabled = true;
    ring.gateway = gateway.is_none();
    ring.gateways.extend(gateway.cloned());
    ring.config.maintenance_interval = Duration::from_secs(1);
    config.validate().expect("valid config");
    config
}

async fn start(config: &Config) -> TestNode {
    let node = switchyard::launch::start(config)
        .await
        .expect("node starts");
    let api = node.api_address().expect("API address");
    TestNode { node, api }
}

/// Reads a server-sent event stream into `(event, data)` pairs.
async fn read_events(
    mut response: reqwest::Response,
    out: mpsc::UnboundedSender<(String, String)>,
) {
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut event, mut data) = (String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = v.trim().to_string();
                }
            }
            if !event.is_empty() && out.send((event, data)).is_err() {
                return;
            }
        }
    }
}

async fn error(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: ErrorBody = response.json().await.expect("a JSON error body");
    (status, body.error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_rooms_and_ring_work_through_the_api() {
    let dir = tempfile::tempdir().expect("temp dir");
    let homes: Vec<_> = (0..3)
        .map(|i| dir.path().join(format!("node-{i}")))
        .collect();
    for home in &homes {
        std::fs::create_dir_all(home).expect("home");
    }
    // The room's shared write key: nodes 0 and 1 hold it, node 2 only
    // knows its public half.
    let write_key = Keypair::from_seed(77);
    for home in &homes[..2] {
        write_key
            .save(&home.join("lobby.hex"))
            .expect("save the write key");
    }
    let admin = Keypair::load_or_generate(&homes[0].join("node_key.hex"))
        .expect("node 0 key")
        .peer_id();
    let room = |holds_key: bool| RoomSection {
        name: "lobby".into(),
        admin: Some(admin.to_string()),
        write_key: Some(write_key.peer_id().to_string()),
        write_key_file: holds_key.then(|| "lobby.hex".into()),
    };

    let gateway = start(&config(&homes[0], None, room(true))).await;
    let seed = gateway.tcp();
    let a = start(&config(&homes[1], Some(&seed), room(true))).await;
    let b = start(&config(&homes[2], Some(&seed), room(false))).await;
    let nodes = [&gateway, &a, &b];
    let http = reqwest::Client::new();

    // --- gossip: b streams "chat", a publishes until b sees it -----------
    let response = http
        .get(b.url("/gossip/topics/chat/messages"))
        .send()
        .await
        .expect("GET stream");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let (events_tx, mut events) = mpsc::unbounded_channel();
    tokio::spawn(read_events(response, events_tx));
    let origin = a.node.peer_id().to_string();
    let mut received = None;
    for n in 0..300 {
        let published: Published = http
            .post(a.url("/gossip/topics/chat/messages"))
            .body(format!("hello {n}"))
            .send()
            .await
            .expect("POST")
            .json()
            .await
            .expect("JSON");
        assert_eq!(published.id.len(), 64, "{published:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        while let Ok((event, data)) = events.try_recv() {
            if event == "message" {
                received = Some(data);
            }
        }
        if received.is_some() {
            break;
        }
    }
    let received: serde_json::Value =
        serde_json::from_str(&received.expect("b's stream got a message from a")).expect("JSON");
    assert_eq!(received["origin"], origin.as_str());
    assert!(
        received["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("hello ")),
        "{received}"
    );

    // Publishing to a topic the node has not joined, or too much, is refused.
    let (status, message) = error(
        http.post(a.url("/gossip/topics/elsewhere/messages"))
            .body("x")
            .send()
            .await
            .expect("POST"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{message}");
    assert!(message.contains("not joined"), "{message}");
    // Streaming one is refused too, at once, not an endless empty stream.
    let (status, message) = error(
        http.get(a.url("/gossip/topics/elsewhere/messages"))
            // An endless stream would hold the test: the answer must come
            // at once.
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("GET"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{message}");
    assert!(message.contains("not joined"), "{message}");
    // Just over the payload limit, and far over it (refused before it is
    // read): 413 either way, with a JSON error naming the limit.
    for size in [64 * 1024 + 1, 1024 * 1024] {
        let (status, message) = error(
            http.post(a.url("/gossip/topics/chat/messages"))
                .body(vec![b'x'; size])
                .send()
                .await
                .expect("POST"),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{message}");
        assert!(message.contains("65536"), "{size} bytes: {message}");
    }

    // Joining, listing and leaving a topic.
    let joined: TopicChange = http
        .put(a.url("/gossip/topics/news"))
        .send()
        .await
        .expect("PUT")
        .json()
        .await
        .expect("JSON");
    assert!(joined.changed);
    let overview: GossipOverview = http
        .get(a.url("/gossip"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let names: Vec<&str> = overview.topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["chat", "news"]);
    assert!(
        overview.counters["published"] >= 1,
        "{:?}",
        overview.counters
    );
    let left: TopicChange = http
        .delete(a.url("/gossip/topics/news"))
        .send()
        .await
        .expect("DELETE")
        .json()
        .await
        .expect("JSON");
    assert!(left.changed);
    let (status, _) = error(
        http.delete(a.url("/gossip/topics/news"))
            .send()
            .await
            .expect("DELETE"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // --- rooms: a writes, every node converges; b may not write -----------
    let written: Written = http
        .post(a.url("/rooms/lobby"))
        .body("hi from a")
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON");
    assert!(written.height >= 1);
    let mut heads = Vec::new();
    eventually("every node shows a's line with one state hash", || {
        let http = http.clone();
        let urls: Vec<String> = nodes.iter().map(|n| n.url("/rooms/lobby")).collect();
        async move {
            let mut rooms = Vec::new();
            for url in urls {
                let Ok(response) = http.get(url).send().await else {
                    return false;
                };
                let Ok(room) = response.json::<RoomEntry>().await else {
                    return false;
                };
                rooms.push(room);
            }
            rooms.iter().all(|r| {
                r.lines.as_deref() == Some(&["hi from a".to_string()][..])
                    && r.hash == rooms[0].hash
            })
        }
    })
    .await;
    for node in nodes {
        let room: RoomEntry = http
            .get(node.url("/rooms/lobby"))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON");
        assert_eq!(room.write_key, write_key.peer_id().to_string());
        assert_eq!(room.admin, admin.to_string());
        heads.push((room.hash, room.can_write));
    }
    assert_eq!(
        heads.iter().map(|(_, w)| *w).collect::<Vec<_>>(),
        [true, true, false]
    );
    let (status, message) = error(
        http.post(b.url("/rooms/lobby"))
            .body("let me in")
            .send()
            .await
            .expect("POST"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{message}");
    let (status, _) = error(http.get(a.url("/rooms/nowhere")).send().await.expect("GET")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = error(
        http.post(a.url("/rooms/lobby"))
            .body(vec![0xff, 0xfe])
            .send()
            .await
            .expect("POST"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // --- ring: every node has a location and the others as neighbours -----
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.node.peer_id()).collect();
    for (i, node) in nodes.iter().enumerate() {
        let url = node.url("/ring");
        let others: Vec<String> = ids
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, id)| id.to_string())
            .collect();
        eventually("a ring location and both other nodes as neighbours", || {
            let (http, url, others) = (http.clone(), url.clone(), others.clone());
            async move {
                let Ok(response) = http.get(url).send().await else {
                    return false;
                };
                let Ok(view) = response.json::<RingView>().await else {
                    return false;
                };
                view.location.is_some()
                    && others
                        .iter()
                        .all(|o| view.neighbors.iter().any(|n| &n.peer_id == o))
            }
        })
        .await;
        let view: RingView = http
            .get(node.url("/ring"))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON");
        assert_eq!(view.gateway, i == 0);
        assert_eq!(view.counters["locations_refused"], 0);
        for neighbor in &view.neighbors {
            let distance: f64 = neighbor.distance.parse().expect("a distance");
            assert!((0.0..=0.5).contains(&distance), "{neighbor:?}");
        }
    }
    let gateway_view: RingView = http
        .get(gateway.url("/ring"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert!(gateway_view.counters["joins_served"] >= 2);

    for node in [b, a, gateway] {
        node.node.shutdown().await;
    }
}
