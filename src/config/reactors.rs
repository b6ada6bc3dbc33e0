//! `[reactors.*]`: one section per reactor. Each embeds the reactor's own
//! configuration type, deserialized by the reactor's crate (its `serde`
//! feature) and checked by its `validate()`, beside the few keys that are
//! the node's: whether the reactor runs, and what the node dials or opens
//! for it. An error of the reactor's validation is reported under the
//! file's dotted path (`reactors.ring.max_load_share`).
//!
//! The node adds to a reactor's own checks only what is the node's
//! policy: no duration beyond a year ([`MAX_DURATION`](super::error)),
//! and the bounds the node documents beyond the reactor's (a pex
//! `min_request_gap` longer than zero, at most 2^20 gossip origins
//! tracked). The ranges are checked whether or not the reactor is enabled,
//! so a file that enables it later is not a surprise; relations to the
//! rest of the node (peers that can be reached, addresses that can be
//! dialed) are checked by [`Config`](super::Config), for enabled reactors.

use std::path::PathBuf;

use p2p::{PeerAddress, PeerId};
use reactor_gossip::GossipConfig;
use reactor_gossip::room::RoomConfig;
use reactor_pex::PexConfig;
use reactor_ring::{Gateways, RingConfig};
use serde::{Deserialize, Deserializer, Serialize};

use super::embed::{self, section_keys};
use super::error::{ConfigError, at_most_a_year, check_name, duration, invalid};
use super::sections::{PeerList, serialize_peer_list};

/// The most origins whose rate gossip tracks per topic that the node
/// accepts: each costs a token bucket per topic.
pub(super) const MAX_GOSSIP_ORIGINS: usize = 1 << 20;

/// The room state's bounds: at least 1 KiB, and at most what one message
/// carries beside a snapshot's framing.
pub(super) const MIN_ROOM_STATE: usize = 1024;
/// See [`MIN_ROOM_STATE`].
pub(super) const MAX_ROOM_STATE: usize = p2p::router::MAX_MESSAGE_SIZE - 64 * 1024;

/// `[reactors]`: one section per reactor.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReactorsSection {
    /// `[reactors.pex]`: peer exchange.
    pub pex: PexSection,
    /// `[reactors.gossip]`: topic gossip and replicated rooms.
    pub gossip: GossipSection,
    /// `[reactors.ring]`: the small-world ring.
    pub ring: RingSection,
}

impl ReactorsSection {
    /// Each reactor's own checks and the node's bounds on them.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.pex.validate()?;
        self.gossip.validate()?;
        self.ring.validate()
    }
}

/// `[reactors.pex]`: peer exchange, how a node learns addresses beyond its
/// bootstrap peers. Every key but `enabled` is [`PexConfig`]'s.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PexSection {
    /// Run peer exchange (default true).
    pub enabled: bool,
    /// The reactor's settings.
    #[serde(flatten)]
    pub config: PexConfig,
}

section_keys!(PexSection { enabled });

impl Default for PexSection {
    fn default() -> Self {
        Self {
            enabled: true,
            config: PexConfig::default(),
        }
    }
}

impl<'de> Deserialize<'de> for PexSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut section = Self::default();
        section.config = embed::deserialize(d, &mut section)?;
        Ok(section)
    }
}

impl PexSection {
    fn validate(&self) -> Result<(), ConfigError> {
        let config = &self.config;
        at_most_a_year("reactors.pex.request_interval", config.request_interval)?;
        // The reactor takes a gap of zero as "no limit"; the node wants
        // peers that ask too often refused.
        duration("reactors.pex.min_request_gap", config.min_request_gap)?;
        config
            .validate()
            .map_err(|e| invalid(format!("reactors.pex.{}", e.field()), e.to_string()))
    }
}

/// `[reactors.gossip]`: topic gossip (HyParView + Plumtree) and replicated
/// rooms on top of it. The HTTP API publishes, streams and writes
/// ([`crate::gossip`]). The keys beside `enabled`, `topics`,
/// `max_room_state` and the rooms are [`GossipConfig`]'s.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GossipSection {
    /// Run gossip (default true; with no topic it only answers peers).
    pub enabled: bool,
    /// Topics joined at start and kept (default none); more can be joined
    /// through the API.
    pub topics: Vec<String>,
    /// Largest room state, in bytes (default 5 MiB): the rooms reactor's
    /// [`RoomConfig::max_state_size`].
    pub max_room_state: usize,
    /// The gossip reactor's settings.
    #[serde(flatten)]
    pub config: GossipConfig,
    /// `[[reactors.gossip.rooms]]`: rooms opened at start.
    pub rooms: Vec<RoomSection>,
}

section_keys!(GossipSection {
    enabled,
    topics,
    max_room_state,
    rooms,
});

impl Default for GossipSection {
    fn default() -> Self {
        Self {
            enabled: true,
            topics: Vec::new(),
            max_room_state: RoomConfig::default().max_state_size,
            config: GossipConfig::default(),
            rooms: Vec::new(),
        }
    }
}

impl<'de> Deserialize<'de> for GossipSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut section = Self::default();
        section.config = embed::deserialize(d, &mut section)?;
        Ok(section)
    }
}

impl GossipSection {
    /// As the rooms reactor's configuration.
    pub fn room_config(&self) -> RoomConfig {
        RoomConfig {
            max_state_size: self.max_room_state,
            ..RoomConfig::default()
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled && !self.rooms.is_empty() {
            return Err(invalid(
                "reactors.gossip.rooms",
                "rooms run on gossip: set reactors.gossip.enabled = true or remove the rooms",
            ));
        }
        let origins = self.config.plumtree.max_origins;
        if !(1..=MAX_GOSSIP_ORIGINS).contains(&origins) {
            return Err(invalid(
                "reactors.gossip.max_origins",
                format!("must be between 1 and {MAX_GOSSIP_ORIGINS} (got {origins})"),
            ));
        }
        if let Err(e) = self.config.validate() {
            let key = e.serialized_field();
            let got = toml::Table::try_from(&self.config)
                .ok()
                .and_then(|table| table.get(key).map(ToString::to_string));
            let reason = match got {
                Some(got) => format!("{} (got {got})", e.reason),
                None => e.to_string(),
            };
            return Err(invalid(format!("reactors.gossip.{key}"), reason));
        }
        if !(MIN_ROOM_STATE..=MAX_ROOM_STATE).contains(&self.max_room_state) {
            return Err(invalid(
                "reactors.gossip.max_room_state",
                format!(
                    "must be between {MIN_ROOM_STATE} and {MAX_ROOM_STATE} bytes, so a snapshot fits in one message (got {})",
                    self.max_room_state
                ),
            ));
        }
        let joined = self.topics.len() + self.rooms.len();
        if self.enabled && self.config.max_topics < joined {
            return Err(invalid(
                "reactors.gossip.max_topics",
                format!(
                    "must hold the {joined} topics and rooms configured (got {})",
                    self.config.max_topics
                ),
            ));
        }
        for (i, topic) in self.topics.iter().enumerate() {
            check_name(&format!("reactors.gossip.topics[{i}]"), topic)?;
            if self.topics[..i].contains(topic) {
                return Err(invalid(
                    format!("reactors.gossip.topics[{i}]"),
                    format!("{topic:?} is listed twice"),
                ));
            }
        }
        for (i, room) in self.rooms.iter().enumerate() {
            let field = |name: &str| format!("reactors.gossip.rooms[{i}].{name}");
            check_name(&field("name"), &room.name)?;
            if self.rooms[..i].iter().any(|r| r.name == room.name) {
                return Err(invalid(
                    field("name"),
                    format!("room {:?} is listed twice", room.name),
                ));
            }
            for (name, id) in [("admin", &room.admin), ("write_key", &room.write_key)] {
                if let Some(id) = id {
                    id.parse::<PeerId>().map_err(|e| {
                        invalid(field(name), format!("{id:?} is not a peer id: {e}"))
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// `[[reactors.gossip.rooms]]`: a chat room (the example room of
/// `reactor_gossip::room`) opened at start. Its id is derived from the
/// admin's PeerId and the name, so every node naming the same two opens
/// the same room.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomSection {
    /// The room's name, also its path in the API (`/rooms/<name>`).
    pub name: String,
    /// The admin's PeerId, who may rotate the write key (default: this
    /// node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    /// The PeerId of the shared write key in force at genesis (default:
    /// the key in `write_key_file`, else the admin's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_key: Option<String>,
    /// The write key's secret (hex, like `key_file`; relative to the data
    /// directory), for a node that may write. Without it the node writes
    /// only if the write key is its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_key_file: Option<PathBuf>,
}

/// `[reactors.ring]`: the small-world ring (negotiated locations, greedy
/// routing); `GET /ring` shows it. The keys beside `enabled`, `gateway`
/// and `gateways` are [`RingConfig`]'s.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RingSection {
    /// Run the ring (default false).
    pub enabled: bool,
    /// Serve as a gateway: fix our own location and negotiate joiners'
    /// (default false).
    pub gateway: bool,
    /// The gateways we join through and whose signatures on locations we
    /// trust (`tcp://<peer-id>@host:port`; dialed at start). A non-gateway
    /// needs at least one. [`RingSection::ring_config`] puts their PeerIds
    /// in [`RingConfig::gateways`].
    #[serde(serialize_with = "serialize_peer_list")]
    pub gateways: Vec<PeerAddress>,
    /// The ring reactor's settings; its `gateways` are set from the
    /// section's by [`RingSection::ring_config`].
    #[serde(flatten)]
    pub config: RingConfig,
}

section_keys!(RingSection {
    enabled,
    gateway,
    gateways with PeerList,
});

impl<'de> Deserialize<'de> for RingSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut section = Self::default();
        section.config = embed::deserialize(d, &mut section)?;
        Ok(section)
    }
}

impl RingSection {
    /// As the ring reactor's configuration, trusting the listed gateways
    /// and `own` (a gateway trusts its own signature).
    pub fn ring_config(&self, own: Option<PeerId>) -> RingConfig {
        RingConfig {
            gateways: Gateways::listed(self.gateways.iter().map(|a| a.peer).chain(own)),
            ..self.config.clone()
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled && !self.gateway && self.gateways.is_empty() {
            return Err(invalid(
                "reactors.ring.gateways",
                "a ring node joins through a gateway: list at least one, or set reactors.ring.gateway = true",
            ));
        }
        let config = &self.config;
        for (field, value) in [
            ("maintenance_interval", config.maintenance_interval),
            ("join_quota_window", config.join_quota_window),
            ("location_ttl", config.location_ttl),
        ] {
            at_most_a_year(&format!("reactors.ring.{field}"), value)?;
        }
        config
            .validate()
            .map_err(|e| invalid(format!("reactors.ring.{}", e.field()), e.to_string()))
    }
}
