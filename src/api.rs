//! The node's HTTP API (axum). Loopback by default: it can disconnect and
//! ban peers, so do not expose it to a network you do not trust.
//!
//! | Route | What |
//! |---|---|
//! | `GET /status` | identity, network, listen addresses, peer counts, uptime |
//! | `GET /peers` | connected peers: direction, observed IP, announced addresses, score |
//! | `POST /peers` | `{"address": "tcp://<peer-id>@host:port"}`: add to the address book and dial |
//! | `DELETE /peers/{peer-id}?ban=10m` | disconnect with a goodbye, optionally ban (at most [`MAX_BAN_DURATION`], a year; the ban is kept in the peer store across restarts) |
//! | `GET /bans` | the bans in force: peer, seconds left, end (Unix seconds) |
//! | `DELETE /bans/{peer-id}` | lift a ban |
//! | `GET /metrics` | Prometheus text format |
//!
//! Every error is JSON, `{"error": "..."}`, with a fitting status code:
//! 400 for a malformed request, 404 for an unknown route or peer, 405 for a
//! method the route does not serve (naming those it does), 413 for a body
//! over the limit (naming the limit: [`MAX_BODY`] for these routes), 422
//! for a well-formed request the node refuses, 503 when the router has
//! stopped. [`json_errors`] holds the whole API to that: any error
//! response that is not JSON (one of axum's own rejections, say) is turned
//! into one.
//! Reactors add routes of their own through
//! [`NodeBuilder::routes`](crate::node::NodeBuilder::routes): the
//! configured node adds gossip's and rooms' ([`crate::gossip`]; 413 for a
//! body over the limit) and the ring's ([`crate::ring`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router as Http};
use p2p::peer_manager::MAX_BAN_DURATION;
use p2p::{AddAddressError, Direction, PeerAddress, PeerId, Router, RouterError};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

/// The largest request body the built-in routes read (64 KiB): a
/// `POST /peers` body is one address.
pub const MAX_BODY: usize = 64 * 1024;

/// What the built-in handlers share.
#[derive(Clone)]
pub struct ApiState {
    router: Router,
    network_id: Arc<str>,
    registry: Arc<Registry>,
    started: Instant,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("peer", &self.router.local_peer_id())
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// State for a node's API.
    pub fn new(router: Router, network_id: String, registry: Registry) -> Self {
        Self {
            router,
            network_id: network_id.into(),
            registry: Arc::new(registry),
            started: Instant::now(),
        }
    }
}

/// The built-in routes.
pub fn routes(state: ApiState) -> Http {
    Http::new()
        .route("/status", get(status))
        .route("/peers", get(peers).post(add_peer))
        .route("/peers/{id}", delete(remove_peer))
        .route("/bans", get(bans))
        .route("/bans/{id}", delete(unban))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .with_state(state)
}

/// Makes every error response of `app` JSON (`{"error": "..."}`), keeping
/// its status: an error a handler wrote is left as it is; one that is not
/// JSON (axum's 405 for a method the route does not serve, a rejection's
/// plain text) gets its text, or for a 405 the methods the route allows,
/// as the message. Apply it to the whole API, after every route is merged.
pub fn json_errors(app: Http) -> Http {
    // Around the whole router, not inside each route: a route's 405 gets
    // its `Allow` header on the way out of the route.
    Http::new()
        .fallback_service(app)
        .layer(axum::middleware::map_response(json_error))
}

async fn json_error(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let allow = parts.headers.get(header::ALLOW).cloned();
    // Error texts are short; more than this is not worth reading.
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = match &allow {
        Some(allow) if status == StatusCode::METHOD_NOT_ALLOWED => format!(
            "method not allowed: this route serves {}",
            allow.to_str().unwrap_or("other methods")
        ),
        _ if !text.is_empty() => text,
        _ => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string(),
    };
    let mut response = ApiError::new(status, message).into_response();
    if let Some(allow) = allow {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}

/// The error for a JSON body the extractor refused: 413 naming the limit
/// for a body over it, 400 with the reason otherwise.
fn json_rejection(error: JsonRejection) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over the limit of {MAX_BODY} bytes"),
        );
    }
    ApiError::new(StatusCode::BAD_REQUEST, error.body_text())
}

/// `GET /metrics` alone.
pub fn metrics_routes(state: ApiState) -> Http {
    Http::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .with_state(state)
}

/// A JSON error with a status code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

impl From<RouterError> for ApiError {
    fn from(error: RouterError) -> Self {
        let status = match error {
            RouterError::Closed => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, error.to_string())
    }
}

/// `GET /status`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    /// This node's PeerId.
    pub peer_id: String,
    /// The network id.
    pub network_id: String,
    /// Software version.
    pub version: String,
    /// Where the transports listen.
    pub listen_addresses: Vec<String>,
    /// What peers are told to dial (`[p2p] external_addresses`, else the
    /// listen addresses that can be dialed).
    #[serde(default)]
    pub announced_addresses: Vec<String>,
    /// Connected peers that dialed us.
    pub inbound_peers: usize,
    /// Connected peers we dialed.
    pub outbound_peers: usize,
    /// Peers in the address book.
    pub known_peers: usize,
    /// Seconds since the API started.
    pub uptime_seconds: u64,
}

async fn status(State(state): State<ApiState>) -> Result<Json<Status>, ApiError> {
    let peers = state.router.peers();
    let inbound = peers
        .iter()
        .filter(|p| p.direction == Direction::Inbound)
        .count();
    Ok(Json(Status {
        peer_id: state.router.local_peer_id().to_string(),
        network_id: state.network_id.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        listen_addresses: state
            .router
            .listen_addresses()
            .iter()
            .map(ToString::to_string)
            .collect(),
        announced_addresses: state
            .router
            .announced_addresses()
            .iter()
            .map(ToString::to_string)
            .collect(),
        inbound_peers: inbound,
        outbound_peers: peers.len() - inbound,
        known_peers: state.router.known_peers().await?,
        uptime_seconds: state.started.elapsed().as_secs(),
    }))
}

/// One entry of `GET /peers`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerEntry {
    /// The peer.
    pub peer_id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// The IP the transport observed, if known.
    pub remote_ip: Option<String>,
    /// What the peer announced as its listen addresses.
    pub listen_addresses: Vec<String>,
    /// What the peer announced as its software.
    pub software_version: String,
    /// The peer manager's score.
    pub score: Option<i64>,
}

async fn peers(State(state): State<ApiState>) -> Result<Json<Vec<PeerEntry>>, ApiError> {
    let mut entries = Vec::new();
    for peer in state.router.peers() {
        entries.push(PeerEntry {
            peer_id: peer.peer.to_string(),
            direction: peer.direction.to_string(),
            remote_ip: peer.remote_ip.map(|ip| ip.to_string()),
            listen_addresses: peer.info.listen_addresses.clone(),
            software_version: peer.info.software_version.clone(),
            score: state.router.score(peer.peer).await?,
        });
    }
    Ok(Json(entries))
}

/// The body of `POST /peers`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AddPeer {
    /// `tcp://<peer-id>@host:port` (or `quic://`, `memory://`).
    pub address: String,
}

/// The answer to `POST /peers`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AddedPeer {
    /// The address, normalised.
    pub address: String,
    /// Whether the address book did not know it yet.
    pub new: bool,
}

async fn add_peer(
    State(state): State<ApiState>,
    body: Result<Json<AddPeer>, JsonRejection>,
) -> Result<Json<AddedPeer>, ApiError> {
    let Json(body) = body.map_err(json_rejection)?;
    let address: PeerAddress = body
        .address
        .parse()
        .map_err(|e: p2p::AddressError| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    match state.router.dial(address.clone()).await {
        Ok(new) => Ok(Json(AddedPeer {
            address: address.to_string(),
            new,
        })),
        Err(RouterError::Address(refused)) => Err(refused_address(refused)),
        Err(other) => Err(other.into()),
    }
}

fn refused_address(error: AddAddressError) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error.to_string())
}

/// The query of `DELETE /peers/{id}`.
#[derive(Debug, Deserialize)]
pub struct RemovePeer {
    /// Ban for this long (`30s`, `10m`, `1h`).
    #[serde(default, with = "humantime_serde")]
    pub ban: Option<Duration>,
}

/// The answer to `DELETE /peers/{id}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RemovedPeer {
    /// The peer.
    pub peer_id: String,
    /// Whether it was connected.
    pub was_connected: bool,
    /// How long it is banned, in seconds, if it was banned.
    pub banned_seconds: Option<u64>,
}

/// The PeerId in a route's path, or a 400 naming it.
fn peer_id(id: &str) -> Result<PeerId, ApiError> {
    id.parse()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("peer id {id:?}: {e}")))
}

/// Refuses a ban the peer manager would not keep as asked: none shorter
/// than a second, none longer than [`MAX_BAN_DURATION`].
fn check_ban(ban: Duration) -> Result<(), ApiError> {
    let max = MAX_BAN_DURATION;
    if ban < Duration::from_secs(1) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("ban={ban:?}: a ban lasts at least 1s"),
        ));
    }
    if ban > max {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "ban={}: longer than the longest ban, {} ({} days, {} seconds)",
                humantime_serde::re::humantime::format_duration(ban),
                humantime_serde::re::humantime::format_duration(max),
                max.as_secs() / 86_400,
                max.as_secs()
            ),
        ));
    }
    Ok(())
}

async fn remove_peer(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<RemovePeer>, QueryRejection>,
) -> Result<Json<RemovedPeer>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let peer = peer_id(&id)?;
    if let Some(ban) = query.ban {
        check_ban(ban)?;
    }
    let was_connected = state.router.disconnect(peer, query.ban).await?;
    if !was_connected && query.ban.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("peer {peer} is not connected"),
        ));
    }
    Ok(Json(RemovedPeer {
        peer_id: peer.to_string(),
        was_connected,
        banned_seconds: query.ban.map(|d| d.as_secs()),
    }))
}

/// One entry of `GET /bans`.
#[derive(Debug, Serialize, Deserialize)]
pub struct BanEntry {
    /// The banned peer.
    pub peer_id: String,
    /// Seconds until the ban ends (rounded up).
    pub remaining_seconds: u64,
    /// When it ends, in seconds since the Unix epoch.
    pub until_unix_seconds: u64,
}

async fn bans(State(state): State<ApiState>) -> Result<Json<Vec<BanEntry>>, ApiError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let bans = state.router.bans().await?;
    Ok(Json(
        bans.into_iter()
            .map(|ban| {
                let remaining = ban
                    .remaining
                    .as_secs()
                    .saturating_add(u64::from(ban.remaining.subsec_nanos() > 0));
                BanEntry {
                    peer_id: ban.peer.to_string(),
                    remaining_seconds: remaining,
                    until_unix_seconds: (now + ban.remaining).as_secs(),
                }
            })
            .collect(),
    ))
}

/// The answer to `DELETE /bans/{id}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Unbanned {
    /// The peer whose ban was lifted.
    pub peer_id: String,
}

async fn unban(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Unbanned>, ApiError> {
    let peer = peer_id(&id)?;
    if !state.router.unban(peer).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("peer {peer} is not banned"),
        ));
    }
    Ok(Json(Unbanned {
        peer_id: peer.to_string(),
    }))
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
