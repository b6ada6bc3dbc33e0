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
//! [`default_config_toml`] renders every field with its default, a
//! comment and its range; `switchyard init` writes it.
//!
//! # Where things live
//!
//! * this module: [`Config`], loading, the checks between sections, and
//!   the settings it hands to the router and the transports;
//! * [`sections`]: the node's own sections (`[transports.*]`, `[peers]`,
//!   `[limits]`, `[api]`, `[metrics]`, `[log]`);
//! * [`reactors`]: `[reactors.*]`, each embedding its reactor's own
//!   configuration type (`PexConfig`, `GossipConfig`, `RingConfig`), which
//!   the reactor's crate deserializes (its `serde` feature) and validates;
//! * `template`: the commented file, rendered from the configuration's
//!   serialization with one table of comments and ranges, held to the
//!   schema by tests (the table names exactly the serialized fields, the
//!   file parses back to its configuration, and every documented range is
//!   enforced);
//! * [`error`]: [`ConfigError`] and the position of a field in the text.
//!
//! # Errors name the field
//!
//! Unknown fields are errors, not warnings: a misspelt `max_outbund` would
//! otherwise leave the default in force without a word. A parse error
//! names the dotted path of the unknown field or the wrongly typed value
//! (tracked by `serde_path_to_error`) and carries the TOML parser's
//! message, which shows the line and column. [`Config::validate`] then
//! checks ranges and relations between fields and names the dotted path
//! of the first bad one; parsed from text, the error also says where the
//! text sets it:
//!
//! ```text
//! config line 2, column 1: invalid value for peers.max_outbound: must be at least 1 (got 0)
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

pub mod error;
pub mod reactors;
pub mod sections;

mod embed;
mod template;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use p2p::{Endpoint, PeerAddress, PeerManagerConfig, RouterConfig};
use serde::{Deserialize, Serialize};
use transport_quic::QuicConfig;
use transport_tcp::TcpConfig;

use error::invalid;
pub use error::{ConfigError, Position, name_problem};
pub use reactors::{GossipSection, PexSection, ReactorsSection, RingSection, RoomSection};
pub use sections::{
    ApiSection, LimitsSection, LogFormat, LogSection, MetricsSection, P2pSection, PeersSection,
    QuicSection, TcpSection, TcpSuite, TransportsSection,
};
pub use template::default_config_toml;

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
    /// `[p2p]`: the addresses this node announces.
    pub p2p: P2pSection,
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
            p2p: P2pSection::default(),
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
        let document = toml::Deserializer::parse(text).map_err(|e| ConfigError::parse(None, e))?;
        let config: Config = serde_path_to_error::deserialize(document)
            .map_err(|e| ConfigError::parse(Some(e.path().to_string()), e.into_inner()))?;
        config.validate().map_err(|e| e.located_in(text))?;
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
    ///
    /// Each section checks its own fields (a reactor's section through the
    /// reactor's own validation); this adds the relations between
    /// sections: addresses dialed over an enabled transport, frames that
    /// fit the QUIC reassembly budget, peer counts a reactor can reach, and
    /// listeners that do not collide.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_top_level()?;
        self.transports.validate()?;
        self.p2p
            .validate(self.transports.tcp.enabled, self.transports.quic.enabled)?;
        for (name, list) in [
            ("peers.bootstrap", &self.peers.bootstrap),
            ("peers.persistent", &self.peers.persistent),
        ] {
            for (i, address) in list.iter().enumerate() {
                self.check_dialable(&format!("{name}[{i}]"), address)?;
            }
        }
        self.peers.validate()?;
        self.limits.validate()?;
        let quic = &self.transports.quic;
        let frame = self.limits.max_frame_size;
        if quic.max_reassembly_bytes < frame {
            return Err(invalid(
                "transports.quic.max_reassembly_bytes",
                format!(
                    "must be at least limits.max_frame_size ({frame}), or a frame that large could never be reassembled (got {})",
                    quic.max_reassembly_bytes
                ),
            ));
        }
        self.validate_reactor_reach()?;
        self.reactors.validate()?;
        self.validate_ring_links()?;
        self.validate_addresses_differ()?;
        self.log.validate()
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

    /// An enabled reactor's peer counts must be reachable with `[peers]`.
    fn validate_reactor_reach(&self) -> Result<(), ConfigError> {
        let peers = &self.peers;
        let pex = &self.reactors.pex;
        let reachable = peers.max_inbound + peers.max_outbound;
        if pex.enabled && pex.config.min_peers > reachable {
            return Err(invalid(
                "reactors.pex.min_peers",
                format!(
                    "can never be reached: peers.max_inbound + peers.max_outbound is {reachable} (got {})",
                    pex.config.min_peers
                ),
            ));
        }
        Ok(())
    }

    /// An enabled ring dials its gateways, and needs its degree reachable.
    fn validate_ring_links(&self) -> Result<(), ConfigError> {
        let ring = &self.reactors.ring;
        if !ring.enabled {
            return Ok(());
        }
        for (i, address) in ring.gateways.iter().enumerate() {
            self.check_dialable(&format!("reactors.ring.gateways[{i}]"), address)?;
        }
        let peers = &self.peers;
        let reachable = peers.max_inbound + peers.max_outbound + peers.max_requested_outbound;
        if ring.config.target_degree > reachable {
            return Err(invalid(
                "reactors.ring.target_degree",
                format!(
                    "can never be reached: peers.max_inbound + peers.max_outbound + peers.max_requested_outbound is {reachable} (got {})",
                    ring.config.target_degree
                ),
            ));
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
            suites: tcp.cipher_suites(),
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
