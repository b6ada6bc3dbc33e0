//! The HTTP API of an in-process node: every route, its JSON errors and
//! status codes, and a route added by the application.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use reqwest::StatusCode;
use switchyard::api::{AddedPeer, BanEntry, ErrorBody, PeerEntry, RemovedPeer, Status, Unbanned};
use switchyard::node::{Node, NodeBuilder};
use switchyard::p2p::{Keypair, PeerAddress, RouterConfig};
use switchyard::transport_memory::MemoryHub;

/// Two nodes on one memory hub; `a` serves the API with an extra route.
async fn nodes() -> (Node, Node, SocketAddr) {
    let hub = MemoryHub::new(3);
    let start = |seed: u64, api: bool| {
        let hub = hub.clone();
        async move {
            let key = Keypair::from_seed(seed);
            let transport = hub.transport(key.peer_id()).expect("memory transport");
            let mut builder = NodeBuilder::new(key, RouterConfig::default());
            builder.transport(Arc::new(transport));
            if api {
                builder.http_api("127.0.0.1:0".parse().expect("address"));
                builder.routes(axum::Router::new().route("/hello", get(|| async { "hi" })));
            }
            builder.start().await.expect("start")
        }
    };
    let a = start(1, true).await;
    let b = start(2, false).await;
    let api = a.api_address().expect("API address");
    (a, b, api)
}

fn url(api: SocketAddr, path: &str) -> String {
    format!("http://{api}{path}")
}

/// Sends `request` and reads its JSON answer.
async fn answer<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> T {
    request
        .send()
        .await
        .expect("request sent")
        .json()
        .await
        .expect("a JSON answer")
}

async fn error(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: ErrorBody = response.json().await.expect("a JSON error body");
    (status, body.error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_and_every_error_is_json() {
    let (a, b, api) = nodes().await;
    let http = reqwest::Client::new();

    // The application's own route sits beside the built-in ones.
    let hello = http.get(url(api, "/hello")).send().await.expect("GET");
    assert_eq!(hello.text().await.expect("body"), "hi");

    let status: Status = answer(http.get(url(api, "/status"))).await;
    assert_eq!(status.peer_id, a.peer_id().to_string());
    assert_eq!(status.inbound_peers + status.outbound_peers, 0);

    // POST /peers dials b; /peers then lists it.
    let added: AddedPeer = http
        .post(url(api, "/peers"))
        .json(&serde_json::json!({ "address": PeerAddress::memory(b.peer_id()).to_string() }))
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON");
    assert!(added.new);
    let mut peers: Vec<PeerEntry> = Vec::new();
    for _ in 0..200 {
        peers = answer(http.get(url(api, "/peers"))).await;
        if !peers.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(peers.len(), 1, "b never showed up in /peers");
    assert_eq!(peers[0].peer_id, b.peer_id().to_string());
    assert_eq!(peers[0].direction, "outbound");

    // Malformed requests: 400 with a reason.
    let garbage = http
        .post(url(api, "/peers"))
        .json(&serde_json::json!({ "address": "garbage" }))
        .send()
        .await
        .expect("POST");
    let (code, message) = error(garbage).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(message.contains("garbage"), "{message}");
    let not_json = http
        .post(url(api, "/peers"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("POST");
    assert_eq!(error(not_json).await.0, StatusCode::BAD_REQUEST);
    let bad_id = http
        .delete(url(api, "/peers/not-a-peer-id"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(error(bad_id).await.0, StatusCode::BAD_REQUEST);
    let bad_ban = http
        .delete(url(api, &format!("/peers/{}?ban=forever", b.peer_id())))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(error(bad_ban).await.0, StatusCode::BAD_REQUEST);

    // Well-formed but refused: our own address.
    let own = http
        .post(url(api, "/peers"))
        .json(&serde_json::json!({ "address": PeerAddress::memory(a.peer_id()).to_string() }))
        .send()
        .await
        .expect("POST");
    assert_eq!(error(own).await.0, StatusCode::UNPROCESSABLE_ENTITY);

    // DELETE with a ban disconnects b; a second DELETE finds nobody.
    let removed: RemovedPeer = http
        .delete(url(api, &format!("/peers/{}?ban=10m", b.peer_id())))
        .send()
        .await
        .expect("DELETE")
        .json()
        .await
        .expect("JSON");
    assert!(removed.was_connected);
    assert_eq!(removed.banned_seconds, Some(600));
    let again = http
        .delete(url(api, &format!("/peers/{}", b.peer_id())))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(error(again).await.0, StatusCode::NOT_FOUND);

    // The ban is listed; an absurd one is refused naming the limit; it
    // can be lifted once, and then it is gone.
    let bans: Vec<BanEntry> = answer(http.get(url(api, "/bans"))).await;
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].peer_id, b.peer_id().to_string());
    assert!((599..=600).contains(&bans[0].remaining_seconds), "{bans:?}");
    let absurd = http
        .delete(url(
            api,
            &format!("/peers/{}?ban=99999999999999h", b.peer_id()),
        ))
        .send()
        .await
        .expect("DELETE");
    let (code, message) = error(absurd).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        message.contains("longest ban") && message.contains("365 days"),
        "{message}"
    );
    let lifted: Unbanned = http
        .delete(url(api, &format!("/bans/{}", b.peer_id())))
        .send()
        .await
        .expect("DELETE")
        .json()
        .await
        .expect("JSON");
    assert_eq!(lifted.peer_id, b.peer_id().to_string());
    let again = http
        .delete(url(api, &format!("/bans/{}", b.peer_id())))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(error(again).await.0, StatusCode::NOT_FOUND);
    let bans: Vec<BanEntry> = answer(http.get(url(api, "/bans"))).await;
    assert!(bans.is_empty(), "{bans:?}");

    // Metrics in the Prometheus text format, the router's among them.
    let metrics = http
        .get(url(api, "/metrics"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains("switchyard_p2p_dial_attempts_total"),
        "{metrics}"
    );
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");

    // Every error is JSON and names what was wrong: a body over the limit
    // (413, the limit named), a method the route does not serve (405, the
    // methods it does).
    // Just over the limit: a body the client finishes writing before the
    // server answers (with megabytes, the server's early 413 and close
    // could cut the client's write: a broken pipe instead of the answer).
    let huge = format!("{{\"address\": \"{}\"}}", "x".repeat(80 * 1024));
    let oversized = http
        .post(url(api, "/peers"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("POST");
    let (code, message) = error(oversized).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE, "{message}");
    assert!(message.contains("65536 bytes"), "{message}");
    let put = http.put(url(api, "/status")).send().await.expect("PUT");
    let (code, message) = error(put).await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
    assert!(message.contains("GET"), "{message}");
    // The application's routes are held to it too.
    let post_hello = http.post(url(api, "/hello")).send().await.expect("POST");
    assert_eq!(error(post_hello).await.0, StatusCode::METHOD_NOT_ALLOWED);

    let missing = http.get(url(api, "/nope")).send().await.expect("GET");
    let (code, body) = error(missing).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(body, "no such route");

    a.shutdown().await;
    b.shutdown().await;
    // The API stopped with the node.
    assert!(http.get(url(api, "/status")).send().await.is_err());
}
