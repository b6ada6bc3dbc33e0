//! Gossip and rooms on the node: the topics and rooms of
//! `[reactors.gossip]`, and their HTTP routes.
//!
//! | Route | What |
//! |---|---|
//! | `GET /gossip` | joined topics with their size estimates; gossip's counters |
//! | `PUT /gossip/topics/{name}` | join a topic and stay in it |
//! | `DELETE /gossip/topics/{name}` | leave it (every stream of it ends) |
//! | `POST /gossip/topics/{name}/messages` | publish the request body (the topic must be joined) |
//! | `GET /gossip/topics/{name}/messages` | a joined topic's messages as server-sent events (a topic not joined: 404, as `POST` says) |
//! | `GET /rooms` | the open rooms |
//! | `GET /rooms/{name}` | a room's head: state hash, height, write key, the height saved on disk, counters, the chat lines |
//! | `POST /rooms/{name}` | append the body (one UTF-8 line) to a room this node may write |
//!
//! A topic is named by a string; its id is the hash of the name
//! ([`TopicId::from_name`]), so every node that joins `"chat"` meets in
//! the same overlay. A stream's events are `message` (`{"origin", "id",
//! "hops", "text"}` for a UTF-8 payload, `"hex"` otherwise),
//! `neighbor-up` / `neighbor-down` (`{"peer"}`) and `lagged`
//! (`{"missed"}`, when the client reads slower than messages arrive: the
//! node drops rather than buffers, and gossip counts the drop in
//! `app_events_dropped`). Like every gossip delivery, a stream gets a
//! message at most once and only while it is open; it does not get the
//! node's own publications.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router as Http;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures::Stream;
use p2p::{Keypair, PeerId};
use parking_lot::Mutex;
use reactor_gossip::room::{ChatLog, RoomHandle, RoomKeys, RoomsError, RoomsHandle};
use reactor_gossip::{GossipError, GossipHandle, PublishError, Subscription, TopicEvent, TopicId};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::api::ApiError;

/// The topics the node stays in and the rooms it opened, with the handles
/// to reach gossip and rooms. Cheap to clone.
#[derive(Clone)]
pub struct GossipService {
    inner: Arc<Inner>,
}

struct Inner {
    gossip: GossipHandle,
    rooms: Option<RoomsHandle>,
    max_payload_size: usize,
    /// Topics joined through the config or `PUT`: a task holds each one's
    /// subscription (and reads it, so it never lags).
    topics: Mutex<BTreeMap<String, JoinHandle<()>>>,
    open_rooms: Mutex<BTreeMap<String, OpenRoom>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for (_, task) in std::mem::take(&mut *self.topics.lock()) {
            task.abort();
        }
    }
}

#[derive(Clone)]
struct OpenRoom {
    handle: RoomHandle,
    admin: PeerId,
    /// The write key this node holds, if any.
    writer: Option<PeerId>,
}

impl std::fmt::Debug for GossipService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipService")
            .field(
                "topics",
                &self.inner.topics.lock().keys().collect::<Vec<_>>(),
            )
            .field(
                "rooms",
                &self.inner.open_rooms.lock().keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A room to open: [`GossipService::open_room`].
#[derive(Debug, Clone)]
pub struct RoomSpec {
    /// Its name (with `admin`, what identifies it).
    pub name: String,
    /// The admin's PeerId.
    pub admin: PeerId,
    /// The write key in force at genesis.
    pub write_key: PeerId,
    /// The write key's secret, if this node may write.
    pub writer: Option<Keypair>,
    /// The admin key's secret, if this node is the admin.
    pub admin_key: Option<Keypair>,
}

impl GossipService {
    /// A service over a running (or about to run) gossip reactor and,
    /// optionally, the rooms reactor next to it. `max_payload_size` is
    /// gossip's, so the API refuses a larger body before reading it all.
    pub fn new(gossip: GossipHandle, rooms: Option<RoomsHandle>, max_payload_size: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                gossip,
                rooms,
                max_payload_size,
                topics: Mutex::new(BTreeMap::new()),
                open_rooms: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Joins `name` and stays in it until [`leave`](Self::leave). Returns
    /// whether it was not joined yet. Needs the reactors running.
    pub async fn join(&self, name: &str) -> Result<bool, GossipError> {
        if self.inner.topics.lock().contains_key(name) {
            return Ok(false);
        }
        let subscription = self.subscribe(name).await?;
        let task = tokio::spawn(hold(name.to_string(), subscription));
        let previous = self.inner.topics.lock().insert(name.to_string(), task);
        // A concurrent join of the same name: keep one holder.
        Ok(match previous {
            Some(previous) => {
                previous.abort();
                false
            }
            None => true,
        })
    }

    /// Leaves `name` if the node joined it through [`join`](Self::join):
    /// every subscription of it ends, API streams included. Returns
    /// whether it had; a topic only streamed is left alone.
    pub async fn leave(&self, name: &str) -> Result<bool, GossipError> {
        let Some(task) = self.inner.topics.lock().remove(name) else {
            // Not joined through `join`: leave API streams alone.
            return Ok(false);
        };
        task.abort();
        self.inner
            .gossip
            .unsubscribe(TopicId::from_name(name))
            .await?;
        Ok(true)
    }

    /// The topics joined through [`join`](Self::join).
    pub fn topics(&self) -> Vec<String> {
        self.inner.topics.lock().keys().cloned().collect()
    }

    async fn subscribe(&self, name: &str) -> Result<Subscription, GossipError> {
        self.inner
            .gossip
            .subscribe(TopicId::from_name(name), Vec::<PeerId>::new())
            .await
    }

    /// Opens a chat room ([`ChatLog`]). Needs the reactors running.
    pub async fn open_room(&self, spec: RoomSpec) -> Result<(), RoomsError> {
        let rooms = self.inner.rooms.as_ref().ok_or(RoomsError::Stopped)?;
        let keys = RoomKeys::new(spec.admin, &spec.name, spec.write_key);
        let writer = spec.writer.as_ref().map(Keypair::peer_id);
        let handle = rooms
            .open(
                keys,
                spec.writer,
                spec.admin_key,
                Arc::new(ChatLog),
                Vec::<PeerId>::new(),
            )
            .await?;
        self.inner.open_rooms.lock().insert(
            spec.name,
            OpenRoom {
                handle,
                admin: spec.admin,
                writer,
            },
        );
        Ok(())
    }

    fn room(&self, name: &str) -> Result<OpenRoom, ApiError> {
        self.inner
            .open_rooms
            .lock()
            .get(name)
            .cloned()
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no room {name:?} is open on this node"),
                )
            })
    }

    /// The routes of the [module docs](self).
    pub fn routes(&self) -> Http {
        let body_limit = self.inner.max_payload_size + 1;
        Http::new()
            .route("/gossip", get(overview))
            .route(
                "/gossip/topics/{name}",
                axum::routing::put(join_topic).delete(leave_topic),
            )
            .route("/gossip/topics/{name}/messages", get(stream).post(publish))
            .route("/rooms", get(rooms))
            .route("/rooms/{name}", get(room).post(write_room))
            .layer(DefaultBodyLimit::max(body_limit))
            .with_state(self.clone())
    }
}

/// Keeps a subscription open and reads it, so a held topic never lags.
async fn hold(name: String, mut subscription: Subscription) {
    while let Some(event) = subscription.recv().await {
        if let TopicEvent::Received(message) = event {
            tracing::debug!(
                topic = %name,
                origin = %message.origin.short(),
                bytes = message.payload.len(),
                "gossip message"
            );
        }
    }
}

fn gossip_error(error: GossipError) -> ApiError {
    let status = match &error {
        GossipError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        GossipError::Publish(PublishError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        GossipError::Publish(PublishError::Busy { .. }) => StatusCode::TOO_MANY_REQUESTS,
        GossipError::Publish(PublishError::NotJoined(_)) | GossipError::Join(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
    };
    ApiError::new(status, error.to_string())
}

fn rooms_error(error: RoomsError) -> ApiError {
    let status = match &error {
        RoomsError::Stopped | RoomsError::Gossip(GossipError::Stopped) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        RoomsError::NotOpen(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ApiError::new(status, error.to_string())
}

fn check_topic(name: &str) -> Result<(), ApiError> {
    crate::config::name_problem(name).map_or(Ok(()), |problem| {
        Err(ApiError::new(StatusCode::BAD_REQUEST, problem))
    })
}

/// `GET /gossip`.
#[derive(Debug, Serialize, Deserialize)]
pub struct GossipOverview {
    /// Topics the node stays in (config and `PUT`), with estimates.
    pub topics: Vec<TopicEntry>,
    /// Gossip's counters by name (`delivered`, `forged_rejected`, …).
    pub counters: BTreeMap<String, u64>,
}

/// One topic of `GET /gossip`.
#[derive(Debug, Serialize, Deserialize)]
pub struct TopicEntry {
    /// The name.
    pub name: String,
    /// The topic id (hex).
    pub id: String,
    /// The estimated number of members, this node included.
    pub size_estimate: Option<f64>,
}

async fn overview(State(service): State<GossipService>) -> Result<Json<GossipOverview>, ApiError> {
    let mut topics = Vec::new();
    for name in service.topics() {
        let id = TopicId::from_name(&name);
        let size_estimate = service
            .inner
            .gossip
            .size_estimate(id)
            .await
            .map_err(gossip_error)?;
        topics.push(TopicEntry {
            name,
            id: id.to_string(),
            size_estimate,
        });
    }
    let counters = service
        .inner
        .gossip
        .stats()
        .counters()
        .iter()
        .map(|(name, _, value)| (name.to_string(), *value))
        .collect();
    Ok(Json(GossipOverview { topics, counters }))
}

/// The answer to `PUT` and `DELETE /gossip/topics/{name}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct TopicChange {
    /// The topic.
    pub name: String,
    /// Whether this changed anything (not joined before a `PUT`, held
    /// before a `DELETE`).
    pub changed: bool,
}

async fn join_topic(
    State(service): State<GossipService>,
    Path(name): Path<String>,
) -> Result<Json<TopicChange>, ApiError> {
    check_topic(&name)?;
    let changed = service.join(&name).await.map_err(gossip_error)?;
    Ok(Json(TopicChange { name, changed }))
}

async fn leave_topic(
    State(service): State<GossipService>,
    Path(name): Path<String>,
) -> Result<Json<TopicChange>, ApiError> {
    check_topic(&name)?;
    let changed = service.leave(&name).await.map_err(gossip_error)?;
    if !changed {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("topic {name:?} is not joined (PUT /gossip/topics/{name} joins it)"),
        ));
    }
    Ok(Json(TopicChange { name, changed }))
}

/// The answer to `POST /gossip/topics/{name}/messages`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Published {
    /// The message's id (hex).
    pub id: String,
}

/// The error for a body the extractor refused: over the limit, named.
fn body_rejection(error: BytesRejection, max: usize) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over the limit of {max} bytes (reactors.gossip.max_payload_size)"),
        );
    }
    ApiError::new(error.status(), error.body_text())
}

async fn publish(
    State(service): State<GossipService>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Published>, ApiError> {
    let body = body.map_err(|e| body_rejection(e, service.inner.max_payload_size))?;
    check_topic(&name)?;
    let id = service
        .inner
        .gossip
        .publish(TopicId::from_name(&name), body)
        .await
        .map_err(|e| match e {
            GossipError::Publish(PublishError::NotJoined(_)) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("topic {name:?} is not joined: PUT /gossip/topics/{name} first"),
            ),
            other => gossip_error(other),
        })?;
    Ok(Json(Published { id: id.to_string() }))
}

async fn stream(
    State(service): State<GossipService>,
    Path(name): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    check_topic(&name)?;
    // A stream of a topic not joined would stay empty for ever: say so, as
    // a publish does.
    if !service.inner.topics.lock().contains_key(&name) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("topic {name:?} is not joined: PUT /gossip/topics/{name} first"),
        ));
    }
    let subscription = service.subscribe(&name).await.map_err(gossip_error)?;
    let events = futures::stream::unfold(subscription, |mut subscription| async move {
        let event = subscription.recv().await?;
        Some((Ok(sse_event(event)), subscription))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn sse_event(event: TopicEvent) -> Event {
    let (kind, data) = match event {
        TopicEvent::Received(message) => {
            let mut data = serde_json::json!({
                "origin": message.origin.to_string(),
                "id": message.id.to_string(),
                "hops": message.hops,
            });
            match std::str::from_utf8(&message.payload) {
                Ok(text) => data["text"] = text.into(),
                Err(_) => data["hex"] = data_encoding::HEXLOWER.encode(&message.payload).into(),
            }
            ("message", data)
        }
        TopicEvent::NeighborUp(peer) => (
            "neighbor-up",
            serde_json::json!({ "peer": peer.to_string() }),
        ),
        TopicEvent::NeighborDown(peer) => (
            "neighbor-down",
            serde_json::json!({ "peer": peer.to_string() }),
        ),
        TopicEvent::Lagged(missed) => ("lagged", serde_json::json!({ "missed": missed })),
    };
    Event::default().event(kind).data(data.to_string())
}

/// A room in `GET /rooms` and `GET /rooms/{name}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RoomEntry {
    /// The name.
    pub name: String,
    /// The room id (hex).
    pub room: String,
    /// The admin's PeerId.
    pub admin: String,
    /// The head's state hash (hex): equal on two nodes, equal states.
    pub hash: String,
    /// The head's height.
    pub height: u64,
    /// The write key in force.
    pub write_key: String,
    /// Whether this node holds that key (a rotation by the admin can
    /// take it away).
    pub can_write: bool,
    /// The state's size in bytes.
    pub state_bytes: usize,
    /// The height of the room's last checkpoint on disk (none: nothing
    /// saved since it opened); the room resumes there after a restart.
    #[serde(default)]
    pub saved_height: Option<u64>,
    /// The room's counters since it opened (`updates_accepted`,
    /// `catch_ups_sent`, `snapshots_adopted`, `reposts`, …).
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
    /// The chat lines (`GET /rooms/{name}` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<String>>,
}

fn room_counters(stats: &reactor_gossip::room::RoomStats) -> BTreeMap<String, u64> {
    [
        ("updates_accepted", stats.updates_accepted),
        ("updates_refused", stats.updates_refused),
        ("duplicates", stats.duplicates),
        ("reorgs", stats.reorgs),
        ("reposts", stats.reposts),
        ("catch_ups_sent", stats.catch_ups_sent),
        ("catch_ups_served", stats.catch_ups_served),
        ("snapshots_served", stats.snapshots_served),
        ("snapshots_adopted", stats.snapshots_adopted),
        ("snapshots_refused", stats.snapshots_refused),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

fn room_entry(name: &str, room: &OpenRoom, lines: bool) -> RoomEntry {
    let view = room.handle.view();
    RoomEntry {
        name: name.to_string(),
        room: room.handle.room().to_string(),
        admin: room.admin.to_string(),
        hash: view.hash.to_string(),
        height: view.height,
        write_key: view.write_key.to_string(),
        can_write: room.writer == Some(view.write_key),
        state_bytes: view.state.len(),
        saved_height: view.saved_height,
        counters: room_counters(&view.stats),
        lines: lines.then(|| ChatLog::lines(&view.state)),
    }
}

async fn rooms(State(service): State<GossipService>) -> Json<Vec<RoomEntry>> {
    let open: Vec<(String, OpenRoom)> = service
        .inner
        .open_rooms
        .lock()
        .iter()
        .map(|(n, r)| (n.clone(), r.clone()))
        .collect();
    Json(
        open.iter()
            .map(|(name, room)| room_entry(name, room, false))
            .collect(),
    )
}

async fn room(
    State(service): State<GossipService>,
    Path(name): Path<String>,
) -> Result<Json<RoomEntry>, ApiError> {
    let room = service.room(&name)?;
    Ok(Json(room_entry(&name, &room, true)))
}

/// The answer to `POST /rooms/{name}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Written {
    /// The update's id (hex).
    pub update: String,
    /// The head after it.
    pub hash: String,
    /// Its height.
    pub height: u64,
}

async fn write_room(
    State(service): State<GossipService>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Written>, ApiError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a chat line is at most {} bytes",
                reactor_gossip::room::MAX_LINE
            ),
        ),
        status => ApiError::new(status, e.body_text()),
    })?;
    let room = service.room(&name)?;
    if std::str::from_utf8(&body).is_err() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a chat line is UTF-8 text",
        ));
    }
    if body.len() > reactor_gossip::room::MAX_LINE {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a chat line is at most {} bytes (got {})",
                reactor_gossip::room::MAX_LINE,
                body.len()
            ),
        ));
    }
    let update = room.handle.write(body).await.map_err(rooms_error)?;
    let view = room.handle.view();
    Ok(Json(Written {
        update: update.to_string(),
        hash: view.hash.to_string(),
        height: view.height,
    }))
}
