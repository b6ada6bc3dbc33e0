//! The ring on the node: `GET /ring` shows this node's place on the
//! small-world ring of `[reactors.ring]`.
//!
//! ```text
//! {
//!   "location": "0.3172841",        // null until a gateway negotiated it
//!   "gateway": false,
//!   "neighbors": [
//!     { "peer_id": "…", "location": "0.3190122", "distance": "0.0017281",
//!       "load_share": 0.12, "load_bytes": 5120.0, "load_messages": 40.0 },
//!     …                               // closest first
//!   ],
//!   "counters": { "routes_delivered": 12, "locations_refused": 0, … }
//! }
//! ```
//!
//! Locations and distances are in the ring's stable text form (a fraction
//! of the ring in `[0, 1)`; see `reactor_ring::Location`). The load
//! columns are what each neighbour made this node handle (decayed), the
//! figures the ring disconnects an over-consuming neighbour on.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router as Http;
use axum::extract::State;
use axum::routing::get;
use reactor_ring::{RingHandle, RingStats};
use serde::{Deserialize, Serialize};

/// `GET /ring`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RingView {
    /// Our location, once negotiated.
    pub location: Option<String>,
    /// Whether this node is a gateway.
    pub gateway: bool,
    /// Our neighbours, closest first.
    pub neighbors: Vec<RingNeighbor>,
    /// The ring's counters by name.
    pub counters: BTreeMap<String, u64>,
}

/// One neighbour in `GET /ring`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RingNeighbor {
    /// Its PeerId.
    pub peer_id: String,
    /// Its verified location.
    pub location: String,
    /// Its distance from us, the shorter way round.
    pub distance: String,
    /// Its share of the bytes all neighbours made us handle.
    pub load_share: f64,
    /// Bytes it made us handle (decayed).
    pub load_bytes: f64,
    /// Messages it made us handle (decayed).
    pub load_messages: f64,
}

#[derive(Clone)]
struct RingApi {
    handle: RingHandle,
    gateway: bool,
}

/// The `GET /ring` route over a running ring reactor's handle.
pub fn routes(handle: RingHandle, gateway: bool) -> Http {
    Http::new()
        .route("/ring", get(view))
        .with_state(RingApi { handle, gateway })
}

async fn view(State(api): State<RingApi>) -> Json<RingView> {
    let neighbors = api
        .handle
        .neighbors()
        .into_iter()
        .map(|n| RingNeighbor {
            peer_id: n.peer.to_string(),
            location: n.location.to_string(),
            distance: n.distance.to_string(),
            load_share: n.load_share,
            load_bytes: n.load_bytes,
            load_messages: n.load_messages,
        })
        .collect();
    Json(RingView {
        location: api.handle.location().map(|l| l.to_string()),
        gateway: api.gateway,
        neighbors,
        counters: counters(&api.handle.stats()),
    })
}

fn counters(stats: &RingStats) -> BTreeMap<String, u64> {
    stats
        .counters()
        .iter()
        .map(|(name, _, value)| (name.to_string(), *value))
        .chain([("neighbors".to_string(), stats.neighbors)])
        .collect()
}
