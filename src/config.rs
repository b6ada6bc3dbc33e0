//! The node's configuration: one TOML file, every field optional.
//!
//! ```toml
//! network_id = "my-net"
//!
//! [transports.tcp]
//! listen = "0.0.0.0:7400"
//!
//! [peers]
//! bootstrap = ["tcp://<peer-id>@203.0.113.7:7400"]
//! ```
//!
//! A missing field takes its default, so an empty file (or no file: use
//! [`Config::default`]) is a working single-node configuration.
//! [`default_config_toml`] renders every field with its default and a
//! comment; `switchyard init` writes it, and a test proves that parsing it
//! gives back exactly [`Config::default`], so the comments cannot drift
//! from the code.
//!
//! # Errors name the field
//!
//! Unknown fields are errors, not warnings: a misspelt `max_outbund` would
//! otherwise leave the default in force without a word. The TOML parser's
//! message names the unknown field or the wrongly typed value and shows its
//! line; [`Config::validate`] then checks ranges and relations between fields
//! and names the dotted path of the first bad one:
//!
//! ```text
//! invalid value for peers.max_outbound: must be at least 1 (got 0)
//! ```
//!
//! # The data directory
//!
//! [`Config::data_dir`] resolves, first match wins:
//!
//! 1. `data_dir` in the file;
//! 2. the `SWITCHYARD_HOME` environment variable ([`DATA_DIR_ENV`]);
//! 3. `$HOME/.switchyard`;
//! 4. `./.switchyard`.
//!
//! A relative `data_dir` is relative to the working directory; `~` is not
//! expanded (and refused, so the mistake is not silent). A relative
//! `key_file` is relative to the data directory.
//!
//! # One network id
//!
//! The network id is written once, at the top level. [`Config::router_config`],
//! [`Config::tcp_config`] and [`Config::quic_config`] copy it into the
//! router's `Hello`, the Noise prologue and the QUIC ALPN, so the three can
//! never disagree. `limits.max_frame_size` likewise applies to both
//! transports.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use p2p::{Endpoint, PeerAddress, PeerId, PeerManagerConfig, RouterConfig};
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use toml::Spanned;
use toml::de::{DeTable, DeValue};
use transport_quic::QuicConfig;
use transport_tcp::TcpConfig;

/// The environment variable naming the data directory when the file does
/// not.
pub const DATA_DIR_ENV: &str = "SWITCHYARD_HOME";

/// The data directory's name under `$HOME` (or the working directory).
pub const DEFAULT_DATA_DIR_NAME: &str = ".switchyard";

/// The smallest `limits.max_frame_size`: a frame must hold the largest
/// `Hello` a peer may send (1024 channels, 32 addresses of 512 bytes).
pub const MIN_FRAME_SIZE: usize = 64 * 1024;

/// The largest `limits.max_frame_size`: the router refuses any message
/// larger than [`p2p::router::MAX_MESSAGE_SIZE`], so larger frames only
/// let a peer make us buffer more.
pub const MAX_FRAME_SIZE: usize = p2p::router::MAX_MESSAGE_SIZE + 64;

/// The most addresses one peer-exchange response may carry; the pex
/// reactor's own bound, which the configuration may lower but not raise.
const MAX_PEX_ADDRESSES_PER_RESPONSE: usize = reactor_pex::MAX_ADDRESSES_PER_RESPONSE;

/// The longest duration accepted anywhere. No timer of the node needs
/// more, and a cap keeps `Instant` arithmetic far from overflow and turns
/// a typo such as `"10000d"` into an error.
const MAX_DURATION: Duration = Duration::from_secs(31_557_600); // 1 year

/// Why a configuration could not be loaded or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The text is not TOML, has an unknown field, or a value of the wrong
    /// type. The message is the TOML parser's: it names the field and
    /// shows the line.
    #[error("cannot parse {}{}: {message}", describe(path), at_field(field))]
    Parse {
        /// The file, when the text came from one.
        path: Option<PathBuf>,
        /// The dotted path of the key or value the parser stopped at, when
        /// it could be located (not for a TOML syntax error).
        field: Option<String>,
        /// The parser's explanation.
        message: String,
    },
    /// A value parsed but is out of range or contradicts another field.
    #[error("{}invalid value for {field}: {reason}", prefix(path))]
    Invalid {
        /// The file, when the text came from one.
        path: Option<PathBuf>,
        /// The dotted path of the field, e.g. `peers.max_outbound` or
        /// `peers.bootstrap[1]`.
        field: String,
        /// What is wrong and what is expected.
        reason: String,
    },
}

fn describe(path: &Option<PathBuf>) -> String {
    match path {
        Some(path) => format!("config file {}", path.display()),
        None => "config".into(),
    }
}

fn at_field(field: &Option<String>) -> String {
    match field {
        Some(field) => format!(" (field {field})"),
        None => String::new(),
    }
}

fn prefix(path: &Option<PathBuf>) -> String {
    match path {
        Some(path) => format!("config file {}: ", path.display()),
        None => String::new(),
    }
}

impl ConfigError {
    /// The dotted path of the offending field (`peers.max_outbound`,
    /// `peers.bootstrap[1]`), when the error has one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            ConfigError::Parse { field, .. } => field.as_deref(),
            ConfigError::Io { .. } => None,
        }
    }

    fn in_file(self, file: &Path) -> Self {
        match self {
            ConfigError::Parse { field, message, .. } => ConfigError::Parse {
                path: Some(file.to_path_buf()),
                field,
                message,
            },
            ConfigError::Invalid { field, reason, .. } => ConfigError::Invalid {
                path: Some(file.to_path_buf()),
                field,
                reason,
            },
            io @ ConfigError::Io { .. } => io,
        }
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: None,
        field: field.into(),
        reason: reason.into(),
    }
}

/// The whole configuration of a node. See the [module docs](self) for the
/// file's layout and rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the key and the peer store live; `None` resolves as described
    /// in [`Config::data_dir`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Nodes with different network ids refuse each other (default
    /// `switchyard-local`). At most 242 bytes, the room left in the QUIC
    /// ALPN.
    pub network_id: String,
    /// The node's secret key, hex-encoded (default `node_key.hex`);
    /// relative to the data directory unless absolute.
    pub key_file: PathBuf,
    /// `[transports.tcp]` and `[transports.quic]`.
    pub transports: TransportsSection,
    /// `[peers]`: who to dial at start and the connection limits.
    pub peers: PeersSection,
    /// `[limits]`: the router's timeouts and sizes.
    pub limits: LimitsSection,
    /// `[reactors.*]`: one section per reactor.
    pub reactors: ReactorsSection,
    /// `[api]`: the HTTP API.
    pub api: ApiSection,
    /// `[metrics]`: where Prometheus scrapes.
    pub metrics: MetricsSection,
    /// `[log]`: log format and filter.
    pub log: LogSection,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: None,
            network_id: TcpConfig::default().network_id,
            key_file: PathBuf::from("node_key.hex"),
            transports: TransportsSection::default(),
            peers: PeersSection::default(),
            limits: LimitsSection::default(),
            reactors: ReactorsSection::default(),
            api: ApiSection::default(),
            metrics: MetricsSection::default(),
            log: LogSection::default(),
        }
    }
}

/// `[transports]`: which transports run and how. At least one must be
/// enabled.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportsSection {
    /// `[transports.tcp]`.
    pub tcp: TcpSection,
    /// `[transports.quic]`.
    pub quic: QuicSection,
}

/// `[transports.tcp]`: TCP with a Noise handshake. Maps onto
/// [`TcpConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpSection {
    /// Run the TCP transport (default true).
    pub enabled: bool,
    /// Where to listen (default `0.0.0.0:26656`).
    pub listen: SocketAddr,
    /// Deadline for the whole Noise handshake (default 10 s).
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Handshakes in progress from one network, an IPv4 /24 or IPv6 /48
    /// (default 8).
    pub max_handshakes_per_prefix: usize,
    /// Handshakes in progress in all (default 256).
    pub max_handshakes: usize,
}

impl Default for TcpSection {
    fn default() -> Self {
        let tcp = TcpConfig::default();
        Self {
            enabled: true,
            listen: SocketAddr::from(([0, 0, 0, 0], 26656)),
            handshake_timeout: tcp.handshake_timeout,
            max_handshakes_per_prefix: tcp.max_handshakes_per_prefix,
            max_handshakes: tcp.max_handshakes,
        }
    }
}

/// `[transports.quic]`: QUIC with TLS 1.3. Maps onto [`QuicConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuicSection {
    /// Run the QUIC transport (default false).
    pub enabled: bool,
    /// Where to listen, UDP (default `0.0.0.0:26657`).
    pub listen: SocketAddr,
    /// Deadline for the QUIC + TLS handshake (default 10 s).
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A connection silent for this long is dead (default 30 s).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Send a QUIC PING after this much silence (default 10 s); must be
    /// below `idle_timeout`.
    #[serde(with = "humantime_serde")]
    pub keep_alive_interval: Duration,
    /// Handshakes in progress from one network, an IPv4 /24 or IPv6 /48
    /// (default 8).
    pub max_handshakes_per_prefix: usize,
    /// Handshakes in progress in all (default 256).
    pub max_handshakes: usize,
    /// Bytes of partial frames one connection may make us buffer over all
    /// its streams (default 16 MiB + 64); more closes it. At least
    /// `limits.max_frame_size`.
    pub max_reassembly_bytes: usize,
}

impl Default for QuicSection {
    fn default() -> Self {
        let quic = QuicConfig::default();
        Self {
            enabled: false,
            listen: SocketAddr::from(([0, 0, 0, 0], 26657)),
            handshake_timeout: quic.handshake_timeout,
            idle_timeout: quic.idle_timeout,
            keep_alive_interval: quic.keep_alive_interval,
            max_handshakes_per_prefix: quic.max_handshakes_per_prefix,
            max_handshakes: quic.max_handshakes,
            max_reassembly_bytes: quic.max_reassembly_bytes,
        }
    }
}

/// `[peers]`: initial peers and connection limits. Maps onto
/// [`PeerManagerConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeersSection {
    /// Addresses added to the address book at start
    /// (`tcp://<peer-id>@host:port` or `quic://…`); dialed like any other.
    #[serde(
        deserialize_with = "deserialize_bootstrap",
        serialize_with = "serialize_peers"
    )]
    pub bootstrap: Vec<PeerAddress>,
    /// Peers always redialed, never evicted, admitted even when full.
    #[serde(
        deserialize_with = "deserialize_persistent",
        serialize_with = "serialize_peers"
    )]
    pub persistent: Vec<PeerAddress>,
    /// Connected inbound peers at most (default 40; 0 accepts none).
    pub max_inbound: usize,
    /// Connected outbound peers at most (default 10).
    pub max_outbound: usize,
    /// Outbound connections reactors may open past `max_outbound` for
    /// peers they need (gossip neighbours, ring links; default 32).
    pub max_requested_outbound: usize,
    /// Connected inbound peers from one network, an IPv4 /24 or IPv6 /48,
    /// at most (default 4).
    pub max_inbound_per_prefix: usize,
    /// Endpoints (port and peer) one host, IP or DNS name, may have in the
    /// address book when learned from peers (default 2), so one host cannot
    /// fill it. Bootstrap, persistent and API addresses are exempt.
    pub max_ports_per_host: usize,
    /// Take loopback, private and link-local addresses from peers (peer
    /// exchange, gossip and ring contacts) and the peer store (default
    /// false: on a public node they are mistakes or attacks on the local
    /// network). Bootstrap, persistent and API addresses may always be
    /// private. A devnet or a private network turns this on.
    pub allow_private_addresses: bool,
    /// How long a misbehaving peer (or network) stays banned (default 10 min).
    #[serde(with = "humantime_serde")]
    pub ban_duration: Duration,
    /// Scores of peers and networks halve every this long, so a peer that
    /// stops misbehaving recovers (default 1 h).
    #[serde(with = "humantime_serde")]
    pub score_half_life: Duration,
}

impl Default for PeersSection {
    fn default() -> Self {
        let peers = PeerManagerConfig::default();
        Self {
            bootstrap: peers.bootstrap_peers,
            persistent: peers.persistent_peers,
            max_inbound: peers.max_inbound,
            max_outbound: peers.max_outbound,
            max_requested_outbound: peers.max_requested_outbound,
            max_inbound_per_prefix: peers.max_inbound_per_prefix,
            max_ports_per_host: peers.max_ports_per_host,
            allow_private_addresses: peers.allow_private_addresses,
            ban_duration: peers.ban_duration,
            score_half_life: peers.score_half_life,
        }
    }
}

fn deserialize_bootstrap<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PeerAddress>, D::Error> {
    deserialize_peers(d, "peers.bootstrap")
}

fn deserialize_persistent<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PeerAddress>, D::Error> {
    deserialize_peers(d, "peers.persistent")
}

/// Parses each string, naming the field and index of a bad one. Each
/// element is parsed as it is read, so the parser's error points at the
/// bad element, not at the whole list.
fn deserialize_peers<'de, D: Deserializer<'de>>(
    d: D,
    field: &'static str,
) -> Result<Vec<PeerAddress>, D::Error> {
    d.deserialize_seq(PeerList { field })
}

struct PeerList {
    field: &'static str,
}

impl<'de> Visitor<'de> for PeerList {
    type Value = Vec<PeerAddress>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of addresses such as [\"tcp://<peer-id>@203.0.113.7:26656\"]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut addresses = Vec::new();
        while let Some(address) = seq.next_element_seed(PeerItem {
            field: self.field,
            index: addresses.len(),
        })? {
            addresses.push(address);
        }
        Ok(addresses)
    }
}

struct PeerItem {
    field: &'static str,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for PeerItem {
    type Value = PeerAddress;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<PeerAddress, D::Error> {
        // Parsing inside the visitor lets the parser attach the element's
        // position to the error.
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for PeerItem {
    type Value = PeerAddress;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an address such as \"tcp://<peer-id>@203.0.113.7:26656\"")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<PeerAddress, E> {
        text.parse()
            .map_err(|e| E::custom(format!("{}[{}]: {e}", self.field, self.index)))
    }
}

fn serialize_peers<S: Serializer>(peers: &[PeerAddress], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(peers.iter().map(ToString::to_string))
}

/// `[limits]`: the router's timeouts and sizes. Maps onto
/// [`RouterConfig`]; `max_frame_size` onto both transports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Deadline for the router's `Hello` exchange, after the transport's
    /// own handshake (default 10 s).
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Deadline for dialing one address (default 10 s).
    #[serde(with = "humantime_serde")]
    pub dial_timeout: Duration,
    /// Inbound `Hello` exchanges in progress at once (default 64).
    pub max_pending_handshakes: usize,
    /// Inbound `Hello` exchanges in progress at once from one network, an
    /// IPv4 /24 or IPv6 /48 (default 8).
    pub max_pending_handshakes_per_prefix: usize,
    /// Ping a connection that has received nothing for this long
    /// (default 15 s).
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// Close a connection whose ping got no answer within this (default
    /// 10 s).
    #[serde(with = "humantime_serde")]
    pub pong_timeout: Duration,
    /// Time a closing connection gets to send its goodbye (default 2 s).
    #[serde(with = "humantime_serde")]
    pub close_grace: Duration,
    /// Largest frame accepted from a peer, in bytes, on every transport
    /// (default 16 MiB + 64, between [`MIN_FRAME_SIZE`] and
    /// [`MAX_FRAME_SIZE`]).
    pub max_frame_size: usize,
    /// Bytes one peer may make the node hold in its receive queues, over
    /// all channels, counting the credit it holds at each channel's largest
    /// message (default 16 MiB, at least [`MIN_FRAME_SIZE`]). Split between
    /// the channels; every channel keeps room for one largest message.
    pub recv_bytes_per_peer: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let router = RouterConfig::default();
        Self {
            handshake_timeout: router.handshake_timeout,
            dial_timeout: router.dial_timeout,
            max_pending_handshakes: router.max_pending_handshakes,
            max_pending_handshakes_per_prefix: router.max_pending_handshakes_per_prefix,
            ping_interval: router.ping_interval,
            pong_timeout: router.pong_timeout,
            close_grace: router.close_grace,
            max_frame_size: TcpConfig::default().max_frame_size,
            recv_bytes_per_peer: router.recv_bytes_per_peer,
        }
    }
}

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

/// `[reactors.gossip]`: topic gossip (HyParView + Plumtree) and replicated
/// rooms on top of it. The HTTP API publishes, streams and writes
/// ([`crate::gossip`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GossipSection {
    /// Run gossip (default true; with no topic it only answers peers).
    pub enabled: bool,
    /// Topics joined at start and kept (default none); more can be joined
    /// through the API.
    pub topics: Vec<String>,
    /// Largest payload published or accepted, in bytes (default 64 KiB).
    pub max_payload_size: usize,
    /// Neighbours per topic (HyParView's active view, default 6).
    pub active_view: usize,
    /// Known members kept per topic (the passive view, default 30).
    pub passive_view: usize,
    /// Topics joined at once at most, rooms included (default 64).
    pub max_topics: usize,
    /// Largest room state, in bytes (default 5 MiB).
    pub max_room_state: usize,
    /// Messages per second one origin may have delivered and forwarded
    /// here, per topic, on average (default 100; 0: no limit). Messages
    /// over it are dropped and counted as `rate_limited`.
    pub origin_rate: u32,
    /// How many messages one origin may send in a burst (default 200).
    pub origin_burst: u32,
    /// Origins whose rate is tracked per topic (default 4096); a new one
    /// beyond it replaces the one heard from least recently.
    pub max_origins: usize,
    /// New messages per second one neighbour may push, per topic, whatever
    /// their origins (default 2,000, in bursts of twice that; 0: no
    /// limit). Over it a message is dropped and counted as
    /// `neighbor_rate_limited`, so set it above what a topic carries.
    pub neighbor_rate: u32,
    /// Origins new to this node per second one neighbour may introduce
    /// (default 20, in bursts of 200; 0: no limit), so fresh keys do not
    /// multiply `origin_rate`.
    pub neighbor_new_origins: u32,
    /// `[[reactors.gossip.rooms]]`: rooms opened at start.
    pub rooms: Vec<RoomSection>,
}

impl Default for GossipSection {
    fn default() -> Self {
        let gossip = reactor_gossip::GossipConfig::default();
        Self {
            enabled: true,
            topics: Vec::new(),
            max_payload_size: gossip.max_payload_size,
            active_view: gossip.hyparview.active_view_capacity,
            passive_view: gossip.hyparview.passive_view_capacity,
            max_topics: gossip.max_topics,
            max_room_state: reactor_gossip::room::RoomConfig::default().max_state_size,
            origin_rate: gossip.plumtree.origin_rate,
            origin_burst: gossip.plumtree.origin_burst,
            max_origins: gossip.plumtree.max_origins,
            neighbor_rate: gossip.plumtree.neighbor_rate,
            neighbor_new_origins: gossip.plumtree.neighbor_new_origins,
            rooms: Vec::new(),
        }
    }
}

impl GossipSection {
    /// As the gossip reactor's configuration.
    pub fn gossip_config(&self) -> reactor_gossip::GossipConfig {
        let mut config = reactor_gossip::GossipConfig {
            max_payload_size: self.max_payload_size,
            max_topics: self.max_topics,
            ..Default::default()
        };
        config.hyparview.active_view_capacity = self.active_view;
        config.hyparview.passive_view_capacity = self.passive_view;
        config.hyparview.join_contacts = config.hyparview.join_contacts.min(self.active_view);
        config.plumtree.origin_rate = self.origin_rate;
        config.plumtree.origin_burst = self.origin_burst;
        config.plumtree.max_origins = self.max_origins;
        config.plumtree.neighbor_rate = self.neighbor_rate;
        config.plumtree.neighbor_burst = self.neighbor_rate.saturating_mul(2);
        config.plumtree.neighbor_new_origins = self.neighbor_new_origins;
        config.plumtree.neighbor_new_origins_burst = self.neighbor_new_origins.saturating_mul(10);
        config
    }

    /// As the rooms reactor's configuration.
    pub fn room_config(&self) -> reactor_gossip::room::RoomConfig {
        reactor_gossip::room::RoomConfig {
            max_state_size: self.max_room_state,
            ..Default::default()
        }
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
/// routing); `GET /ring` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RingSection {
    /// Run the ring (default false).
    pub enabled: bool,
    /// Serve as a gateway: fix our own location and negotiate joiners'
    /// (default false).
    pub gateway: bool,
    /// The gateways we join through and whose signatures on locations we
    /// trust (`tcp://<peer-id>@host:port`; dialed at start). A non-gateway
    /// needs at least one.
    #[serde(
        deserialize_with = "deserialize_ring_gateways",
        serialize_with = "serialize_peers"
    )]
    pub gateways: Vec<PeerAddress>,
    /// Below this many neighbours the node asks for links (default 20).
    pub target_degree: usize,
    /// Above this many it drops its worst-placed links (default 30).
    pub max_degree: usize,
    /// Time between maintenance rounds, ± 25 % (default 10 s).
    #[serde(with = "humantime_serde")]
    pub maintenance_interval: Duration,
    /// A neighbour causing more than this share of the bytes we handle
    /// for neighbours is disconnected (default 0.5).
    pub max_load_share: f64,
    /// Neighbours from one network (IPv4 /24, IPv6 /48) at most, so one
    /// network cannot fill our links (default 4).
    pub max_neighbors_per_prefix: usize,
    /// Gateway: new locations granted to joiners of one network per
    /// `join_quota_window` (default 8).
    pub max_joins_per_prefix: usize,
    /// Gateway: the window of `max_joins_per_prefix` (default 1 h).
    #[serde(with = "humantime_serde")]
    pub join_quota_window: Duration,
    /// Gateway: how long a location it grants holds; a PeerId gets the
    /// same one until then, also across restarts (default 7 days).
    #[serde(with = "humantime_serde")]
    pub location_ttl: Duration,
}

impl Default for RingSection {
    fn default() -> Self {
        let ring = reactor_ring::RingConfig::default();
        Self {
            enabled: false,
            gateway: false,
            gateways: Vec::new(),
            target_degree: ring.target_degree,
            max_degree: ring.max_degree,
            maintenance_interval: ring.maintenance_interval,
            max_load_share: ring.load.max_share,
            max_neighbors_per_prefix: ring.max_neighbors_per_prefix,
            max_joins_per_prefix: ring.max_joins_per_prefix,
            join_quota_window: ring.join_quota_window,
            location_ttl: ring.location_ttl,
        }
    }
}

impl RingSection {
    /// As the ring reactor's configuration, trusting the listed gateways
    /// and `own` (a gateway trusts its own signature).
    pub fn ring_config(&self, own: Option<PeerId>) -> reactor_ring::RingConfig {
        let mut config = reactor_ring::RingConfig::with_gateways(
            self.gateways.iter().map(|a| a.peer).chain(own),
        );
        config.target_degree = self.target_degree;
        config.max_degree = self.max_degree;
        config.maintenance_interval = self.maintenance_interval;
        config.load.max_share = self.max_load_share;
        config.max_neighbors_per_prefix = self.max_neighbors_per_prefix;
        config.max_joins_per_prefix = self.max_joins_per_prefix;
        config.join_quota_window = self.join_quota_window;
        config.location_ttl = self.location_ttl;
        config
    }
}

fn deserialize_ring_gateways<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<PeerAddress>, D::Error> {
    deserialize_peers(d, "reactors.ring.gateways")
}

/// `[reactors.pex]`: peer exchange, how a node learns addresses beyond its
/// bootstrap peers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PexSection {
    /// Run peer exchange (default true).
    pub enabled: bool,
    /// Below this many connected peers, ask peers for addresses
    /// (default 8).
    pub min_peers: usize,
    /// Ask at most this often, per peer (default 30 s).
    #[serde(with = "humantime_serde")]
    pub request_interval: Duration,
    /// Addresses sent in one response at most (default and maximum 100).
    pub max_addresses_per_response: usize,
    /// A peer asking more often than this is refused and penalised
    /// (default 15 s; at most `request_interval`).
    #[serde(with = "humantime_serde")]
    pub min_request_gap: Duration,
    /// Seed mode, for bootstrap nodes (default false): disconnect an
    /// inbound peer once its request is answered, so any number of nodes
    /// can join through this node's inbound slots.
    pub seed_mode: bool,
}

impl PexSection {
    /// As the pex reactor's configuration.
    pub fn pex_config(&self) -> reactor_pex::PexConfig {
        reactor_pex::PexConfig {
            min_peers: self.min_peers,
            request_interval: self.request_interval,
            max_addresses_per_response: self.max_addresses_per_response,
            min_request_gap: self.min_request_gap,
            seed_mode: self.seed_mode,
        }
    }
}

impl Default for PexSection {
    fn default() -> Self {
        let pex = reactor_pex::PexConfig::default();
        Self {
            enabled: true,
            min_peers: pex.min_peers,
            request_interval: pex.request_interval,
            max_addresses_per_response: pex.max_addresses_per_response,
            min_request_gap: pex.min_request_gap,
            seed_mode: pex.seed_mode,
        }
    }
}

/// `[api]`: the HTTP API (status, peers, reactors' routes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Serve the API (default true).
    pub enabled: bool,
    /// Where to listen (default `127.0.0.1:26658`: loopback only, since the
    /// API can dial and ban peers).
    pub listen: SocketAddr,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 26658)),
        }
    }
}

/// `[metrics]`: Prometheus text format at `/metrics`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// A separate address for `/metrics`; `None` (the default) serves it on
    /// the API's address (and not at all when the API is disabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

/// `[log]`: how logs are written (to standard error).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// Human-readable text or one JSON object per line (default text).
    pub format: LogFormat,
    /// A `tracing` env-filter directive such as `info` or
    /// `info,p2p::router=debug` (default `info`).
    pub filter: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

/// The log format: `"text"` or `"json"` in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl Config {
    /// Parses and [validates](Self::validate) a configuration.
    ///
    /// ```
    /// use switchyard::config::Config;
    ///
    /// let config = Config::from_toml_str("[peers]\nmax_outbound = 4\n")?;
    /// assert_eq!(config.router_config().peer_manager.max_outbound, 4);
    /// assert_eq!(config.network_id, "switchyard-local"); // the default
    /// # Ok::<(), switchyard::config::ConfigError>(())
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: None,
            field: e.span().and_then(|span| field_at(text, &span)),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates the file at `path`; every error names
    /// the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text).map_err(|e| e.in_file(path))
    }

    /// Checks ranges and relations between fields; the error names the
    /// first bad field by its dotted path. [`from_toml_str`](Self::from_toml_str)
    /// and [`load`](Self::load) call it; call it again after changing a
    /// loaded configuration in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_top_level()?;
        self.validate_transports()?;
        self.validate_peers()?;
        self.validate_limits()?;
        self.validate_reactors()?;
        self.validate_addresses_differ()?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            return Err(invalid(
                "log.filter",
                format!(
                    "{:?} is not a tracing filter directive such as \"info\" or \"info,p2p=debug\": {e}",
                    self.log.filter
                ),
            ));
        }
        Ok(())
    }

    fn validate_top_level(&self) -> Result<(), ConfigError> {
        if let Some(dir) = &self.data_dir {
            if dir.as_os_str().is_empty() {
                return Err(invalid(
                    "data_dir",
                    "must not be empty; leave it out for the default",
                ));
            }
            if dir.starts_with("~") {
                return Err(invalid(
                    "data_dir",
                    format!(
                        "\"~\" is not expanded; write the full path (got {:?})",
                        dir.display().to_string()
                    ),
                ));
            }
        }
        if self.network_id.is_empty() {
            return Err(invalid("network_id", "must not be empty"));
        }
        let max = transport_quic::MAX_NETWORK_ID_LEN;
        if self.network_id.len() > max {
            return Err(invalid(
                "network_id",
                format!(
                    "must be at most {max} bytes, so it fits the QUIC ALPN (got {} bytes)",
                    self.network_id.len()
                ),
            ));
        }
        if self.key_file.as_os_str().is_empty() {
            return Err(invalid("key_file", "must not be empty"));
        }
        Ok(())
    }

    fn validate_transports(&self) -> Result<(), ConfigError> {
        let tcp = &self.transports.tcp;
        let quic = &self.transports.quic;
        if !tcp.enabled && !quic.enabled {
            return Err(invalid(
                "transports",
                "no transport is enabled; set transports.tcp.enabled or transports.quic.enabled to true",
            ));
        }
        duration("transports.tcp.handshake_timeout", tcp.handshake_timeout)?;
        at_least(
            "transports.tcp.max_handshakes_per_prefix",
            tcp.max_handshakes_per_prefix,
            1,
        )?;
        at_least("transports.tcp.max_handshakes", tcp.max_handshakes, 1)?;
        duration("transports.quic.handshake_timeout", quic.handshake_timeout)?;
        duration("transports.quic.idle_timeout", quic.idle_timeout)?;
        duration(
            "transports.quic.keep_alive_interval",
            quic.keep_alive_interval,
        )?;
        if quic.keep_alive_interval >= quic.idle_timeout {
            return Err(invalid(
                "transports.quic.keep_alive_interval",
                format!(
                    "must be shorter than transports.quic.idle_timeout ({}), or idle connections die (got {})",
                    human(quic.idle_timeout),
                    human(quic.keep_alive_interval)
                ),
            ));
        }
        at_least(
            "transports.quic.max_handshakes_per_prefix",
            quic.max_handshakes_per_prefix,
            1,
        )?;
        at_least("transports.quic.max_handshakes", quic.max_handshakes, 1)?;
        Ok(())
    }

    fn validate_peers(&self) -> Result<(), ConfigError> {
        let peers = &self.peers;
        for (name, list) in [
            ("peers.bootstrap", &peers.bootstrap),
            ("peers.persistent", &peers.persistent),
        ] {
            for (i, address) in list.iter().enumerate() {
                self.check_dialable(&format!("{name}[{i}]"), address)?;
            }
        }
        at_least("peers.max_outbound", peers.max_outbound, 1)?;
        at_least(
            "peers.max_inbound_per_prefix",
            peers.max_inbound_per_prefix,
            1,
        )?;
        at_least("peers.max_ports_per_host", peers.max_ports_per_host, 1)?;
        duration("peers.ban_duration", peers.ban_duration)?;
        duration("peers.score_half_life", peers.score_half_life)?;
        Ok(())
    }

    /// An address must use a transport this node runs.
    fn check_dialable(&self, field: &str, address: &PeerAddress) -> Result<(), ConfigError> {
        let (section, enabled) = match address.endpoint {
            Endpoint::Tcp(_) => ("tcp", self.transports.tcp.enabled),
            Endpoint::Quic(_) => ("quic", self.transports.quic.enabled),
            Endpoint::Memory | Endpoint::Libp2p(_) => {
                return Err(invalid(
                    field,
                    format!(
                        "{address}: a node dials tcp:// or quic:// addresses only, not {}://",
                        address.scheme()
                    ),
                ));
            }
        };
        if !enabled {
            return Err(invalid(
                field,
                format!("{address}: transports.{section}.enabled is false, so it cannot be dialed"),
            ));
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        duration("limits.handshake_timeout", limits.handshake_timeout)?;
        duration("limits.dial_timeout", limits.dial_timeout)?;
        at_least(
            "limits.max_pending_handshakes",
            limits.max_pending_handshakes,
            1,
        )?;
        at_least(
            "limits.max_pending_handshakes_per_prefix",
            limits.max_pending_handshakes_per_prefix,
            1,
        )?;
        duration("limits.ping_interval", limits.ping_interval)?;
        duration("limits.pong_timeout", limits.pong_timeout)?;
        duration("limits.close_grace", limits.close_grace)?;
        let size = limits.max_frame_size;
        if !(MIN_FRAME_SIZE..=MAX_FRAME_SIZE).contains(&size) {
            return Err(invalid(
                "limits.max_frame_size",
                format!(
                    "must be between {MIN_FRAME_SIZE} (room for a Hello) and {MAX_FRAME_SIZE} (the largest message plus framing) bytes (got {size})"
                ),
            ));
        }
        at_least(
            "limits.recv_bytes_per_peer",
            limits.recv_bytes_per_peer,
            MIN_FRAME_SIZE,
        )?;
        let quic = &self.transports.quic;
        if quic.max_reassembly_bytes < size {
            return Err(invalid(
                "transports.quic.max_reassembly_bytes",
                format!(
                    "must be at least limits.max_frame_size ({size}), or a frame that large could never be reassembled (got {})",
                    quic.max_reassembly_bytes
                ),
            ));
        }
        Ok(())
    }

    fn validate_reactors(&self) -> Result<(), ConfigError> {
        let pex = &self.reactors.pex;
        let reachable = self.peers.max_inbound + self.peers.max_outbound;
        if pex.enabled && pex.min_peers > reachable {
            return Err(invalid(
                "reactors.pex.min_peers",
                format!(
                    "can never be reached: peers.max_inbound + peers.max_outbound is {reachable} (got {})",
                    pex.min_peers
                ),
            ));
        }
        duration("reactors.pex.request_interval", pex.request_interval)?;
        let max = MAX_PEX_ADDRESSES_PER_RESPONSE;
        let n = pex.max_addresses_per_response;
        if !(1..=max).contains(&n) {
            return Err(invalid(
                "reactors.pex.max_addresses_per_response",
                format!("must be between 1 and {max} (got {n})"),
            ));
        }
        duration("reactors.pex.min_request_gap", pex.min_request_gap)?;
        if pex.min_request_gap > pex.request_interval {
            return Err(invalid(
                "reactors.pex.min_request_gap",
                format!(
                    "must not exceed reactors.pex.request_interval ({}), or nodes with this config refuse each other's requests (got {})",
                    human(pex.request_interval),
                    human(pex.min_request_gap)
                ),
            ));
        }
        self.validate_gossip()?;
        self.validate_ring()
    }

    fn validate_gossip(&self) -> Result<(), ConfigError> {
        let gossip = &self.reactors.gossip;
        if !gossip.enabled {
            if !gossip.rooms.is_empty() {
                return Err(invalid(
                    "reactors.gossip.rooms",
                    "rooms run on gossip: set reactors.gossip.enabled = true or remove the rooms",
                ));
            }
            return Ok(());
        }
        let max_payload = p2p::router::MAX_MESSAGE_SIZE - reactor_gossip::MESSAGE_OVERHEAD;
        if !(1..=max_payload).contains(&gossip.max_payload_size) {
            return Err(invalid(
                "reactors.gossip.max_payload_size",
                format!(
                    "must be between 1 and {max_payload} bytes (got {})",
                    gossip.max_payload_size
                ),
            ));
        }
        if !(1..=64).contains(&gossip.active_view) {
            return Err(invalid(
                "reactors.gossip.active_view",
                format!("must be between 1 and 64 (got {})", gossip.active_view),
            ));
        }
        if gossip.passive_view > 1024 {
            return Err(invalid(
                "reactors.gossip.passive_view",
                format!("must be at most 1024 (got {})", gossip.passive_view),
            ));
        }
        if gossip.origin_rate > 0 && gossip.origin_burst == 0 {
            return Err(invalid(
                "reactors.gossip.origin_burst",
                "must be at least 1 while origin_rate limits origins (a burst of 0 drops every message)",
            ));
        }
        if !(1..=1 << 20).contains(&gossip.max_origins) {
            return Err(invalid(
                "reactors.gossip.max_origins",
                format!("must be between 1 and 1048576 (got {})", gossip.max_origins),
            ));
        }
        let joined = gossip.topics.len() + gossip.rooms.len();
        if gossip.max_topics < joined.max(1) {
            return Err(invalid(
                "reactors.gossip.max_topics",
                format!(
                    "must be at least 1 and hold the {joined} topics and rooms configured (got {})",
                    gossip.max_topics
                ),
            ));
        }
        let room_max = p2p::router::MAX_MESSAGE_SIZE - 64 * 1024;
        if !(1024..=room_max).contains(&gossip.max_room_state) {
            return Err(invalid(
                "reactors.gossip.max_room_state",
                format!(
                    "must be between 1024 and {room_max} bytes, so a snapshot fits in one message (got {})",
                    gossip.max_room_state
                ),
            ));
        }
        for (i, topic) in gossip.topics.iter().enumerate() {
            check_name(&format!("reactors.gossip.topics[{i}]"), topic)?;
            if gossip.topics[..i].contains(topic) {
                return Err(invalid(
                    format!("reactors.gossip.topics[{i}]"),
                    format!("{topic:?} is listed twice"),
                ));
            }
        }
        for (i, room) in gossip.rooms.iter().enumerate() {
            let field = |name: &str| format!("reactors.gossip.rooms[{i}].{name}");
            check_name(&field("name"), &room.name)?;
            if gossip.rooms[..i].iter().any(|r| r.name == room.name) {
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

    fn validate_ring(&self) -> Result<(), ConfigError> {
        let ring = &self.reactors.ring;
        if !ring.enabled {
            return Ok(());
        }
        if !ring.gateway && ring.gateways.is_empty() {
            return Err(invalid(
                "reactors.ring.gateways",
                "a ring node joins through a gateway: list at least one, or set reactors.ring.gateway = true",
            ));
        }
        for (i, address) in ring.gateways.iter().enumerate() {
            self.check_dialable(&format!("reactors.ring.gateways[{i}]"), address)?;
        }
        duration(
            "reactors.ring.maintenance_interval",
            ring.maintenance_interval,
        )?;
        if !(ring.max_load_share > 0.0 && ring.max_load_share <= 1.0) {
            return Err(invalid(
                "reactors.ring.max_load_share",
                format!("must be in (0, 1] (got {})", ring.max_load_share),
            ));
        }
        for (field, value) in [
            (
                "reactors.ring.max_neighbors_per_prefix",
                ring.max_neighbors_per_prefix,
            ),
            (
                "reactors.ring.max_joins_per_prefix",
                ring.max_joins_per_prefix,
            ),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        duration("reactors.ring.join_quota_window", ring.join_quota_window)?;
        if ring.location_ttl < reactor_ring::config::MIN_LOCATION_TTL {
            return Err(invalid(
                "reactors.ring.location_ttl",
                format!(
                    "must be at least {} (got {})",
                    human(reactor_ring::config::MIN_LOCATION_TTL),
                    human(ring.location_ttl)
                ),
            ));
        }
        if ring.target_degree < 2 || ring.target_degree > ring.max_degree {
            return Err(invalid(
                "reactors.ring.target_degree",
                format!(
                    "must be at least 2 (successor and predecessor) and at most reactors.ring.max_degree ({}) (got {})",
                    ring.max_degree, ring.target_degree
                ),
            ));
        }
        let reachable =
            self.peers.max_inbound + self.peers.max_outbound + self.peers.max_requested_outbound;
        if ring.target_degree > reachable {
            return Err(invalid(
                "reactors.ring.target_degree",
                format!(
                    "can never be reached: peers.max_inbound + peers.max_outbound + peers.max_requested_outbound is {reachable} (got {})",
                    ring.target_degree
                ),
            ));
        }
        if let Err(e) = ring.ring_config(None).validate() {
            return Err(invalid("reactors.ring", e.to_string()));
        }
        Ok(())
    }

    /// The TCP sockets this node listens on (TCP transport, API, metrics)
    /// must not collide; QUIC listens on UDP and collides with none.
    fn validate_addresses_differ(&self) -> Result<(), ConfigError> {
        let mut sockets = Vec::new();
        if self.transports.tcp.enabled {
            sockets.push(("transports.tcp.listen", self.transports.tcp.listen));
        }
        if self.api.enabled {
            sockets.push(("api.listen", self.api.listen));
        }
        if let Some(listen) = self.metrics.listen {
            sockets.push(("metrics.listen", listen));
        }
        for (i, &(field, addr)) in sockets.iter().enumerate() {
            if let Some((other, _)) = sockets[..i].iter().find(|(_, a)| collide(*a, addr)) {
                return Err(invalid(
                    field,
                    format!("{addr} is the same TCP port as {other}"),
                ));
            }
        }
        Ok(())
    }

    /// The router's settings: the network id, `[limits]` and `[peers]`;
    /// every other field keeps [`RouterConfig::default`].
    pub fn router_config(&self) -> RouterConfig {
        let limits = &self.limits;
        let peers = &self.peers;
        RouterConfig {
            network_id: self.network_id.clone(),
            handshake_timeout: limits.handshake_timeout,
            dial_timeout: limits.dial_timeout,
            max_pending_handshakes: limits.max_pending_handshakes,
            max_pending_handshakes_per_prefix: limits.max_pending_handshakes_per_prefix,
            ping_interval: limits.ping_interval,
            pong_timeout: limits.pong_timeout,
            close_grace: limits.close_grace,
            recv_bytes_per_peer: limits.recv_bytes_per_peer,
            peer_manager: PeerManagerConfig {
                max_inbound: peers.max_inbound,
                max_outbound: peers.max_outbound,
                max_requested_outbound: peers.max_requested_outbound,
                max_inbound_per_prefix: peers.max_inbound_per_prefix,
                max_ports_per_host: peers.max_ports_per_host,
                allow_private_addresses: peers.allow_private_addresses,
                ban_duration: peers.ban_duration,
                score_half_life: peers.score_half_life,
                persistent_peers: peers.persistent.clone(),
                bootstrap_peers: peers.bootstrap.clone(),
                ..PeerManagerConfig::default()
            },
            ..RouterConfig::default()
        }
    }

    /// The TCP transport's settings, or `None` when it is disabled.
    pub fn tcp_config(&self) -> Option<TcpConfig> {
        let tcp = &self.transports.tcp;
        tcp.enabled.then(|| TcpConfig {
            listen: tcp.listen,
            network_id: self.network_id.clone(),
            handshake_timeout: tcp.handshake_timeout,
            max_handshakes_per_prefix: tcp.max_handshakes_per_prefix,
            max_handshakes: tcp.max_handshakes,
            max_frame_size: self.limits.max_frame_size,
            ..TcpConfig::default()
        })
    }

    /// The QUIC transport's settings, or `None` when it is disabled.
    pub fn quic_config(&self) -> Option<QuicConfig> {
        let quic = &self.transports.quic;
        quic.enabled.then(|| QuicConfig {
            listen: quic.listen,
            network_id: self.network_id.clone(),
            handshake_timeout: quic.handshake_timeout,
            idle_timeout: quic.idle_timeout,
            keep_alive_interval: quic.keep_alive_interval,
            max_handshakes_per_prefix: quic.max_handshakes_per_prefix,
            max_handshakes: quic.max_handshakes,
            max_frame_size: self.limits.max_frame_size,
            max_reassembly_bytes: quic.max_reassembly_bytes,
            ..QuicConfig::default()
        })
    }

    /// The data directory: `data_dir` if set, else `$SWITCHYARD_HOME`,
    /// else `$HOME/.switchyard`, else `./.switchyard`. Empty environment
    /// variables count as unset.
    pub fn data_dir(&self) -> PathBuf {
        resolve_data_dir(
            self.data_dir.as_deref(),
            std::env::var_os(DATA_DIR_ENV),
            std::env::var_os("HOME"),
        )
    }

    /// The key file: `key_file` if absolute, else joined to
    /// [`data_dir`](Self::data_dir).
    pub fn key_path(&self) -> PathBuf {
        if self.key_file.is_absolute() {
            self.key_file.clone()
        } else {
            self.data_dir().join(&self.key_file)
        }
    }

    /// This configuration as a TOML file in which every field appears with
    /// its value and a comment saying what it does. Parsing the text gives
    /// back this configuration (paths must be UTF-8).
    /// [`default_config_toml`] is this for [`Config::default`].
    pub fn to_commented_toml(&self) -> String {
        let tcp = &self.transports.tcp;
        let quic = &self.transports.quic;
        let peers = &self.peers;
        let limits = &self.limits;
        let pex = &self.reactors.pex;
        let gossip = &self.reactors.gossip;
        let ring = &self.reactors.ring;
        let data_dir = match &self.data_dir {
            Some(dir) => format!("data_dir = {}", quote(&dir.to_string_lossy())),
            None => "# data_dir = \"/var/lib/switchyard\"".into(),
        };
        let metrics_listen = match self.metrics.listen {
            Some(addr) => format!("listen = {}", quote(&addr.to_string())),
            None => "# listen = \"127.0.0.1:26660\"".into(),
        };
        format!(
            r#"# Switchyard node configuration.
#
# Every field is optional: a field left out takes the default shown in the
# file `switchyard init` writes, and with no file at all the node runs on
# those defaults. Unknown fields are errors, so a typo is reported rather
# than ignored. Durations are written "500ms", "10s", "2m", "1h"; sizes are
# in bytes. Peer addresses are tcp://<peer-id>@<host>:<port> or quic://...;
# `switchyard id` prints a node's peer id.

# Where the key and the peer store live. Unset: $SWITCHYARD_HOME, else
# $HOME/.switchyard, else ./.switchyard. Relative to the working directory.
{data_dir}
# Nodes talk only to nodes with the same network id (at most 242 bytes).
network_id = {network_id}
# The node's secret key (hex); relative to data_dir unless absolute.
key_file = {key_file}

# TCP with a Noise handshake: the default transport.
[transports.tcp]
# Run the TCP transport.
enabled = {tcp_enabled}
# Address and port to listen on; 0.0.0.0 accepts from every interface.
listen = {tcp_listen}
# Deadline for the whole Noise handshake of one connection.
handshake_timeout = {tcp_handshake_timeout}
# Handshakes in progress from one IP at most; more are closed at once.
max_handshakes_per_prefix = {tcp_max_handshakes_per_prefix}
# Handshakes in progress in all at most.
max_handshakes = {tcp_max_handshakes}

# QUIC with TLS 1.3 over UDP; each channel gets its own stream.
[transports.quic]
# Run the QUIC transport.
enabled = {quic_enabled}
# UDP address and port to listen (and dial) from.
listen = {quic_listen}
# Deadline for the QUIC and TLS handshake of one connection.
handshake_timeout = {quic_handshake_timeout}
# A connection that hears nothing from its peer for this long is dead.
idle_timeout = {quic_idle_timeout}
# Send a PING after this much quiet; must be below idle_timeout.
keep_alive_interval = {quic_keep_alive_interval}
# Handshakes in progress from one IP at most; more are refused at once.
max_handshakes_per_prefix = {quic_max_handshakes_per_prefix}
# Handshakes in progress in all at most.
max_handshakes = {quic_max_handshakes}
# Bytes of unfinished frames one connection may make us buffer over all its
# streams; more closes it. At least limits.max_frame_size.
max_reassembly_bytes = {quic_max_reassembly_bytes}

# Who to dial at start, and how many connections to keep.
[peers]
# Added to the address book at start and dialed like any other peer,
# e.g. ["tcp://<peer-id>@203.0.113.7:26656"].
bootstrap = {bootstrap}
# Always redialed, never evicted, admitted even when the limits are full.
persistent = {persistent}
# Connected inbound peers at most (0: accept none).
max_inbound = {max_inbound}
# Connected outbound peers at most; the node dials until it has this many.
max_outbound = {max_outbound}
# Outbound connections reactors may add past max_outbound for peers they
# need (gossip neighbours, ring links).
max_requested_outbound = {max_requested_outbound}
# Connected inbound peers from one network (an IPv4 /24 or IPv6 /48) at most.
max_inbound_per_prefix = {max_inbound_per_prefix}
# Endpoints one host (IP or name) may have in the address book when
# learned from peers, whatever the port, so one host cannot flood it.
max_ports_per_host = {max_ports_per_host}
# Take loopback, private and link-local addresses from peers and the peer
# store. Leave off on a public node; a devnet or private network turns it
# on. Bootstrap, persistent and API addresses may always be private.
allow_private_addresses = {allow_private_addresses}
# How long a peer (or a network) that misbehaved badly enough stays banned.
ban_duration = {ban_duration}
# Scores of peers and networks halve every this long: misbehaviour is
# forgiven in time.
score_half_life = {score_half_life}

# The router: timeouts and sizes that apply to every connection.
[limits]
# Deadline for the Hello exchange that follows the transport's handshake.
handshake_timeout = {handshake_timeout}
# Deadline for dialing one address.
dial_timeout = {dial_timeout}
# Inbound Hello exchanges in progress at once; more are refused.
max_pending_handshakes = {max_pending_handshakes}
# ... and from one network (an IPv4 /24 or IPv6 /48), so one cannot take them all.
max_pending_handshakes_per_prefix = {max_pending_handshakes_per_prefix}
# Ping a connection that has received nothing for this long.
ping_interval = {ping_interval}
# Close a connection that receives nothing for this long after a ping.
pong_timeout = {pong_timeout}
# Time a closing connection gets to send its goodbye.
close_grace = {close_grace}
# Largest frame accepted from a peer, in bytes, on every transport
# ({min_frame} to {max_frame}; the default is 16 MiB plus framing).
max_frame_size = {max_frame_size}
# Bytes one peer may make us hold in receive queues, over all channels
# (what it sent and no reactor took yet, and what its credit allows at
# each channel's largest message). All peers: this times (max_inbound +
# max_outbound + max_requested_outbound + persistent peers + 1).
recv_bytes_per_peer = {recv_bytes_per_peer}

# Peer exchange: how a node learns addresses beyond its bootstrap peers.
[reactors.pex]
# Run peer exchange.
enabled = {pex_enabled}
# Below this many connected peers, ask peers for more addresses.
min_peers = {min_peers}
# Ask one peer at most this often.
request_interval = {request_interval}
# Addresses sent in one response at most (1 to 100).
max_addresses_per_response = {max_addresses_per_response}
# A peer asking more often than this is refused and penalised.
min_request_gap = {min_request_gap}
# Seed mode, for bootstrap nodes: disconnect an inbound peer once its
# request is answered, so any number of nodes can join through this one.
seed_mode = {seed_mode}

# Topic gossip (HyParView + Plumtree) and replicated chat rooms on it.
# The API publishes (POST /gossip/topics/<name>/messages), streams
# (GET .../messages, server-sent events) and reads and writes rooms.
[reactors.gossip]
# Run gossip; with no topic it only answers other nodes.
enabled = {gossip_enabled}
# Topics joined at start and kept, e.g. ["chat"]; the API can join more.
topics = {gossip_topics}
# Largest payload published or accepted, in bytes.
max_payload_size = {gossip_max_payload_size}
# Neighbours per topic (HyParView's active view).
active_view = {gossip_active_view}
# Known members kept per topic (HyParView's passive view, at most 1024).
passive_view = {gossip_passive_view}
# Topics joined at once at most, rooms included.
max_topics = {gossip_max_topics}
# Largest room state, in bytes.
max_room_state = {gossip_max_room_state}
# Messages per second one origin may have delivered and forwarded here,
# per topic, on average (0: no limit); beyond it they are dropped.
origin_rate = {gossip_origin_rate}
# Messages one origin may send in a burst.
origin_burst = {gossip_origin_burst}
# Origins whose rate is tracked per topic.
max_origins = {gossip_max_origins}
# New messages per second one neighbour may push, per topic, whatever their
# origins (bursts of twice that; 0: no limit). Set it above what a topic
# carries.
neighbor_rate = {gossip_neighbor_rate}
# Origins new to this node per second one neighbour may introduce (bursts
# of ten times that; 0: no limit), so fresh keys do not multiply origin_rate.
neighbor_new_origins = {gossip_neighbor_new_origins}
{rooms}
# The small-world ring: a location negotiated with a gateway, links drawn
# from Kleinberg's distribution, greedy routing. GET /ring shows it.
[reactors.ring]
# Run the ring.
enabled = {ring_enabled}
# Serve as a gateway: fix our own location and negotiate joiners'.
gateway = {ring_gateway}
# Gateways to join through and trust, e.g. ["tcp://<peer-id>@203.0.113.7:26656"]
# (dialed at start); a node that is not a gateway needs at least one.
gateways = {ring_gateways}
# Below this many neighbours, ask for more links.
target_degree = {ring_target_degree}
# Above this many, drop the worst-placed links.
max_degree = {ring_max_degree}
# Time between maintenance rounds (± 25 %).
maintenance_interval = {ring_maintenance_interval}
# Disconnect a neighbour causing more than this share of the bytes we
# handle for neighbours (0 to 1).
max_load_share = {ring_max_load_share}
# Neighbours from one network (IPv4 /24, IPv6 /48) at most.
max_neighbors_per_prefix = {ring_max_neighbors_per_prefix}
# Gateway: new locations granted to one network per join_quota_window.
max_joins_per_prefix = {ring_max_joins_per_prefix}
# Gateway: the window of max_joins_per_prefix.
join_quota_window = {ring_join_quota_window}
# Gateway: how long a granted location holds (kept in data_dir/ring, so a
# joiner gets the same one until then, across restarts).
location_ttl = {ring_location_ttl}

# The HTTP API: status, peers, and the reactors' routes.
[api]
# Serve the API.
enabled = {api_enabled}
# Keep it on loopback: the API can dial and ban peers.
listen = {api_listen}

# Prometheus metrics, served at /metrics.
[metrics]
# A separate address for /metrics. Unset: on the API's address (and not at
# all when the API is disabled).
{metrics_listen}

# Logs, written to standard error.
[log]
# "text" for people, "json" for one JSON object per line.
format = {log_format}
# Which logs to keep: a tracing filter such as "info" or "info,p2p=debug".
filter = {log_filter}
"#,
            network_id = quote(&self.network_id),
            key_file = quote(&self.key_file.to_string_lossy()),
            tcp_enabled = tcp.enabled,
            tcp_listen = quote(&tcp.listen.to_string()),
            tcp_handshake_timeout = quote(&human(tcp.handshake_timeout)),
            tcp_max_handshakes_per_prefix = tcp.max_handshakes_per_prefix,
            tcp_max_handshakes = tcp.max_handshakes,
            quic_enabled = quic.enabled,
            quic_listen = quote(&quic.listen.to_string()),
            quic_handshake_timeout = quote(&human(quic.handshake_timeout)),
            quic_idle_timeout = quote(&human(quic.idle_timeout)),
            quic_keep_alive_interval = quote(&human(quic.keep_alive_interval)),
            quic_max_handshakes_per_prefix = quic.max_handshakes_per_prefix,
            quic_max_handshakes = quic.max_handshakes,
            quic_max_reassembly_bytes = quic.max_reassembly_bytes,
            bootstrap = address_list(&peers.bootstrap),
            persistent = address_list(&peers.persistent),
            max_inbound = peers.max_inbound,
            max_outbound = peers.max_outbound,
            max_requested_outbound = peers.max_requested_outbound,
            max_inbound_per_prefix = peers.max_inbound_per_prefix,
            max_ports_per_host = peers.max_ports_per_host,
            allow_private_addresses = peers.allow_private_addresses,
            ban_duration = quote(&human(peers.ban_duration)),
            score_half_life = quote(&human(peers.score_half_life)),
            handshake_timeout = quote(&human(limits.handshake_timeout)),
            dial_timeout = quote(&human(limits.dial_timeout)),
            max_pending_handshakes = limits.max_pending_handshakes,
            max_pending_handshakes_per_prefix = limits.max_pending_handshakes_per_prefix,
            ping_interval = quote(&human(limits.ping_interval)),
            pong_timeout = quote(&human(limits.pong_timeout)),
            close_grace = quote(&human(limits.close_grace)),
            min_frame = MIN_FRAME_SIZE,
            max_frame = MAX_FRAME_SIZE,
            max_frame_size = limits.max_frame_size,
            recv_bytes_per_peer = limits.recv_bytes_per_peer,
            pex_enabled = pex.enabled,
            min_peers = pex.min_peers,
            request_interval = quote(&human(pex.request_interval)),
            max_addresses_per_response = pex.max_addresses_per_response,
            min_request_gap = quote(&human(pex.min_request_gap)),
            seed_mode = pex.seed_mode,
            gossip_enabled = gossip.enabled,
            gossip_topics = string_list(&gossip.topics),
            gossip_max_payload_size = gossip.max_payload_size,
            gossip_active_view = gossip.active_view,
            gossip_passive_view = gossip.passive_view,
            gossip_max_topics = gossip.max_topics,
            gossip_max_room_state = gossip.max_room_state,
            gossip_origin_rate = gossip.origin_rate,
            gossip_origin_burst = gossip.origin_burst,
            gossip_max_origins = gossip.max_origins,
            gossip_neighbor_rate = gossip.neighbor_rate,
            gossip_neighbor_new_origins = gossip.neighbor_new_origins,
            rooms = room_tables(&gossip.rooms),
            ring_enabled = ring.enabled,
            ring_gateway = ring.gateway,
            ring_gateways = address_list(&ring.gateways),
            ring_target_degree = ring.target_degree,
            ring_max_degree = ring.max_degree,
            ring_maintenance_interval = quote(&human(ring.maintenance_interval)),
            ring_max_load_share = toml::Value::Float(ring.max_load_share),
            ring_max_neighbors_per_prefix = ring.max_neighbors_per_prefix,
            ring_max_joins_per_prefix = ring.max_joins_per_prefix,
            ring_join_quota_window = quote(&human(ring.join_quota_window)),
            ring_location_ttl = quote(&human(ring.location_ttl)),
            api_enabled = self.api.enabled,
            api_listen = quote(&self.api.listen.to_string()),
            log_format = quote(self.log.format.as_str()),
            log_filter = quote(&self.log.filter),
        )
    }
}

/// The commented configuration file `switchyard init` writes: every field
/// with its default. Parsing it gives exactly [`Config::default`].
pub fn default_config_toml() -> String {
    Config::default().to_commented_toml()
}

/// The dotted path of the key, or of the innermost value, whose span
/// contains `span`: the parser's errors carry a position, not a path, and
/// an unknown `enabled` or a mistyped `listen` means little without its
/// section.
fn field_at(text: &str, span: &Range<usize>) -> Option<String> {
    let document = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    table_field_at(document.get_ref(), span, &mut path).then(|| path.concat())
}

fn table_field_at(table: &DeTable<'_>, span: &Range<usize>, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        let segment = if path.is_empty() {
            key.get_ref().to_string()
        } else {
            format!(".{}", key.get_ref())
        };
        path.push(segment);
        if contains(&key.span(), span) || value_field_at(value, span, path) {
            return true;
        }
        path.pop();
    }
    false
}

/// Tables defined by a `[header]` do not span their keys, so the search
/// descends into every table and array rather than only into values that
/// contain `span`.
fn value_field_at(
    value: &Spanned<DeValue<'_>>,
    span: &Range<usize>,
    path: &mut Vec<String>,
) -> bool {
    match value.get_ref() {
        DeValue::Table(table) => table_field_at(table, span, path) || contains(&value.span(), span),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(format!("[{i}]"));
                if value_field_at(item, span, path) {
                    return true;
                }
                path.pop();
            }
            contains(&value.span(), span)
        }
        _ => contains(&value.span(), span),
    }
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// A TOML basic string, escaped.
fn quote(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// A duration as humantime writes it: "10s", "1m 30s", "250ms".
fn human(d: Duration) -> String {
    humantime_serde::re::humantime::format_duration(d).to_string()
}

fn string_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", items.join(", "))
}

/// `[[reactors.gossip.rooms]]` tables, or a commented example when there
/// are none.
fn room_tables(rooms: &[RoomSection]) -> String {
    const NAME: &str = "# The room's name, also its API path: /rooms/<name>.\n";
    const ADMIN: &str = "# The admin, who may rotate the write key (default: this node).\n";
    const WRITE_KEY: &str =
        "# The shared write key at genesis (default: write_key_file's, else the admin's).\n";
    const WRITE_KEY_FILE: &str =
        "# The write key's secret (hex), for a node that may write; relative to data_dir.\n";
    if rooms.is_empty() {
        let example = [
            "[[reactors.gossip.rooms]]\n".to_string(),
            format!("# {NAME}name = \"lobby\"\n"),
            format!("# {ADMIN}admin = \"<peer-id>\"\n"),
            format!("# {WRITE_KEY}write_key = \"<peer-id>\"\n"),
            format!("# {WRITE_KEY_FILE}write_key_file = \"lobby_write_key.hex\"\n"),
        ]
        .concat();
        let commented: String = example.lines().map(|l| format!("# {l}\n")).collect();
        return format!("# Chat rooms opened at start, one table each, e.g.:\n{commented}");
    }
    let mut out = String::from("# Chat rooms opened at start.\n");
    for room in rooms {
        out.push_str("[[reactors.gossip.rooms]]\n");
        out.push_str(&format!("{NAME}name = {}\n", quote(&room.name)));
        if let Some(admin) = &room.admin {
            out.push_str(&format!("{ADMIN}admin = {}\n", quote(admin)));
        }
        if let Some(key) = &room.write_key {
            out.push_str(&format!("{WRITE_KEY}write_key = {}\n", quote(key)));
        }
        if let Some(file) = &room.write_key_file {
            out.push_str(&format!(
                "{WRITE_KEY_FILE}write_key_file = {}\n",
                quote(&file.to_string_lossy())
            ));
        }
    }
    out
}

fn address_list(addresses: &[PeerAddress]) -> String {
    if addresses.is_empty() {
        return "[]".into();
    }
    let mut out = String::from("[\n");
    for address in addresses {
        out.push_str("    ");
        out.push_str(&quote(&address.to_string()));
        out.push_str(",\n");
    }
    out.push(']');
    out
}

/// What is wrong with a topic or room name, if anything: a name is 1 to
/// 128 bytes of printable characters, usable as one segment of an API path.
pub fn name_problem(name: &str) -> Option<String> {
    (name.is_empty() || name.len() > 128 || name.chars().any(|c| c.is_control() || c == '/')).then(
        || format!("{name:?}: a name is 1 to 128 bytes, with no '/' and no control characters"),
    )
}

fn check_name(field: &str, name: &str) -> Result<(), ConfigError> {
    name_problem(name).map_or(Ok(()), |problem| Err(invalid(field, problem)))
}

fn at_least(field: &str, value: usize, min: usize) -> Result<(), ConfigError> {
    if value < min {
        return Err(invalid(
            field,
            format!("must be at least {min} (got {value})"),
        ));
    }
    Ok(())
}

/// Durations are positive and at most a year.
fn duration(field: &str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(invalid(
            field,
            "must be longer than zero, e.g. \"10s\" (got 0s)",
        ));
    }
    if value > MAX_DURATION {
        return Err(invalid(
            field,
            format!("must be at most 1year (got {})", human(value)),
        ));
    }
    Ok(())
}

/// Two TCP listeners collide when they share a non-zero port and an IP,
/// counting the unspecified address as every IP.
fn collide(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn resolve_data_dir(
    configured: Option<&Path>,
    switchyard_home: Option<OsString>,
    home: Option<OsString>,
) -> PathBuf {
    if let Some(dir) = configured {
        return dir.to_path_buf();
    }
    if let Some(dir) = switchyard_home.filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match home.filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(DEFAULT_DATA_DIR_NAME),
        None => PathBuf::from(".").join(DEFAULT_DATA_DIR_NAME),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_precedence() {
        let os = |s: &str| Some(OsString::from(s));
        let file = Path::new("/from/file");
        assert_eq!(
            resolve_data_dir(Some(file), os("/env"), os("/home/u")),
            file
        );
        assert_eq!(
            resolve_data_dir(None, os("/env"), os("/home/u")),
            Path::new("/env")
        );
        assert_eq!(
            resolve_data_dir(None, os(""), os("/home/u")),
            Path::new("/home/u/.switchyard")
        );
        assert_eq!(
            resolve_data_dir(None, None, None),
            Path::new("./.switchyard")
        );
    }

    #[test]
    fn colliding_sockets() {
        let a = |s: &str| s.parse::<SocketAddr>().expect("socket address");
        assert!(collide(a("0.0.0.0:1"), a("127.0.0.1:1")));
        assert!(collide(a("127.0.0.1:1"), a("127.0.0.1:1")));
        assert!(!collide(a("127.0.0.1:1"), a("127.0.0.2:1")));
        assert!(!collide(a("127.0.0.1:0"), a("127.0.0.1:0")));
        assert!(!collide(a("127.0.0.1:1"), a("127.0.0.1:2")));
    }
}
