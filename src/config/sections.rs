//! The node's own sections: `[transports.*]`, `[peers]`, `[limits]`,
//! `[api]`, `[metrics]` and `[log]`, each with its defaults (taken from the
//! settings type it maps onto) and the checks that involve it alone.
//! Checks between sections live with [`Config`](super::Config).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use p2p::{PeerAddress, PeerManagerConfig, RouterConfig};
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use transport_quic::QuicConfig;
use transport_tcp::{CipherSuite, TcpConfig};

use super::error::{ConfigError, at_least, duration, human, invalid};
use super::{MAX_FRAME_SIZE, MIN_FRAME_SIZE};

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
    /// The cipher suites offered when dialing and accepted when listening,
    /// in order of preference, e.g. `["aesgcm", "chachapoly"]`. Unset (the
    /// default): AES-GCM then ChaCha on a CPU with AES and carry-less
    /// multiply instructions, ChaCha alone otherwise
    /// ([`CipherSuite::default_preference`]). At least one, none twice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suites: Option<Vec<TcpSuite>>,
}

/// A cipher suite's name in `transports.tcp.suites`: `"aesgcm"`
/// (`Noise_XX_25519_AESGCM_SHA256`) or `"chachapoly"`
/// (`Noise_XX_25519_ChaChaPoly_BLAKE2s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TcpSuite {
    /// `Noise_XX_25519_AESGCM_SHA256`.
    AesGcm,
    /// `Noise_XX_25519_ChaChaPoly_BLAKE2s`.
    ChaChaPoly,
}

impl From<TcpSuite> for CipherSuite {
    fn from(suite: TcpSuite) -> Self {
        match suite {
            TcpSuite::AesGcm => CipherSuite::AesGcm,
            TcpSuite::ChaChaPoly => CipherSuite::ChaChaPoly,
        }
    }
}

impl TcpSection {
    /// The suites this section sets, or the default preference.
    pub fn cipher_suites(&self) -> Vec<CipherSuite> {
        self.suites
            .as_ref()
            .map_or_else(CipherSuite::default_preference, |suites| {
                suites.iter().map(|&s| s.into()).collect()
            })
    }
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
            suites: None,
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

impl TransportsSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let tcp = &self.tcp;
        let quic = &self.quic;
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
        if let Some(suites) = &tcp.suites {
            let suites: Vec<CipherSuite> = suites.iter().map(|&s| s.into()).collect();
            transport_tcp::suite::check_suites(&suites)
                .map_err(|e| invalid("transports.tcp.suites", e))?;
        }
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
        at_least("transports.quic.max_handshakes", quic.max_handshakes, 1)
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
        deserialize_with = "deserialize_peer_list",
        serialize_with = "serialize_peer_list"
    )]
    pub bootstrap: Vec<PeerAddress>,
    /// Peers always redialed, never evicted, admitted even when full.
    #[serde(
        deserialize_with = "deserialize_peer_list",
        serialize_with = "serialize_peer_list"
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

impl PeersSection {
    /// The limits; whether the addresses can be dialed depends on the
    /// transports and is [`Config`](super::Config)'s check.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        at_least("peers.max_outbound", self.max_outbound, 1)?;
        at_least(
            "peers.max_inbound_per_prefix",
            self.max_inbound_per_prefix,
            1,
        )?;
        at_least("peers.max_ports_per_host", self.max_ports_per_host, 1)?;
        duration("peers.ban_duration", self.ban_duration)?;
        duration("peers.score_half_life", self.score_half_life)
    }
}

/// A list of peer addresses, each parsed as it is read, so an error points
/// at the bad element (the parser adds its position; the path, with its
/// index, comes from `serde_path_to_error`).
pub(super) struct PeerList;

impl<'de> DeserializeSeed<'de> for PeerList {
    type Value = Vec<PeerAddress>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PeerList {
    type Value = Vec<PeerAddress>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of addresses such as [\"tcp://<peer-id>@203.0.113.7:26656\"]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut addresses = Vec::new();
        while let Some(address) = seq.next_element_seed(PeerItem)? {
            addresses.push(address);
        }
        Ok(addresses)
    }
}

struct PeerItem;

impl<'de> DeserializeSeed<'de> for PeerItem {
    type Value = PeerAddress;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<PeerAddress, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for PeerItem {
    type Value = PeerAddress;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an address such as \"tcp://<peer-id>@203.0.113.7:26656\"")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<PeerAddress, E> {
        text.parse().map_err(E::custom)
    }
}

pub(super) fn deserialize_peer_list<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<PeerAddress>, D::Error> {
    PeerList.deserialize(d)
}

pub(super) fn serialize_peer_list<S: Serializer>(
    peers: &[PeerAddress],
    s: S,
) -> Result<S::Ok, S::Error> {
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

impl LimitsSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        duration("limits.handshake_timeout", self.handshake_timeout)?;
        duration("limits.dial_timeout", self.dial_timeout)?;
        at_least(
            "limits.max_pending_handshakes",
            self.max_pending_handshakes,
            1,
        )?;
        at_least(
            "limits.max_pending_handshakes_per_prefix",
            self.max_pending_handshakes_per_prefix,
            1,
        )?;
        duration("limits.ping_interval", self.ping_interval)?;
        duration("limits.pong_timeout", self.pong_timeout)?;
        duration("limits.close_grace", self.close_grace)?;
        let size = self.max_frame_size;
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
            self.recv_bytes_per_peer,
            MIN_FRAME_SIZE,
        )
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

impl LogSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match tracing_subscriber::EnvFilter::try_new(&self.filter) {
            Ok(_) => Ok(()),
            Err(e) => Err(invalid(
                "log.filter",
                format!(
                    "{:?} is not a tracing filter directive such as \"info\" or \"info,p2p=debug\": {e}",
                    self.filter
                ),
            )),
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

/// `[p2p]`: how this node presents itself to its peers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pSection {
    /// The addresses announced to peers in `Hello`, which they store and
    /// dial: `"tcp://host:port"` or `"quic://host:port"` (this node's
    /// PeerId is added; a full `tcp://<peer-id>@host:port` must name this
    /// node), for a node behind NAT or listening on `0.0.0.0`. Empty (the
    /// default): the transports' listen addresses, without those on an
    /// unspecified IP (`0.0.0.0`, `::`), which nobody can dial.
    pub external_addresses: Vec<String>,
}

impl P2pSection {
    /// Each address must parse, use a transport `transports` enables,
    /// and be dialable (not an unspecified IP, not port 0).
    pub(super) fn validate(&self, tcp: bool, quic: bool) -> Result<(), ConfigError> {
        // Any PeerId does to check the rest of the address.
        let placeholder = p2p::Keypair::from_seed(0).peer_id();
        for (i, text) in self.external_addresses.iter().enumerate() {
            let field = format!("p2p.external_addresses[{i}]");
            let address = external_address(text, None, placeholder)
                .map_err(|reason| invalid(&field, reason))?;
            let (scheme, enabled) = match address.scheme() {
                "tcp" => ("tcp", tcp),
                _ => ("quic", quic),
            };
            if !enabled {
                return Err(invalid(
                    &field,
                    format!(
                        "{text:?}: transports.{scheme}.enabled is false, so nobody could dial it"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The announced addresses of node `peer`.
    pub fn addresses(&self, peer: p2p::PeerId) -> Result<Vec<PeerAddress>, ConfigError> {
        self.external_addresses
            .iter()
            .enumerate()
            .map(|(i, text)| {
                external_address(text, Some(peer), peer)
                    .map_err(|reason| invalid(format!("p2p.external_addresses[{i}]"), reason))
            })
            .collect()
    }
}

/// `text` (`scheme://host:port`, or a full address) as an address of
/// `peer`; a full address must name `must_name` if given.
fn external_address(
    text: &str,
    must_name: Option<p2p::PeerId>,
    peer: p2p::PeerId,
) -> Result<PeerAddress, String> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(format!(
            "{text:?} is not \"tcp://host:port\" or \"quic://host:port\""
        ));
    };
    if scheme != "tcp" && scheme != "quic" {
        return Err(format!(
            "{text:?}: a node is dialed over tcp:// or quic://, not {scheme}://"
        ));
    }
    let address: PeerAddress = if rest.contains('@') {
        text.parse().map_err(|e| format!("{text:?}: {e}"))?
    } else {
        format!("{scheme}://{peer}@{rest}")
            .parse()
            .map_err(|e| format!("{text:?}: {e}"))?
    };
    if let Some(own) = must_name
        && address.peer != own
    {
        return Err(format!(
            "{text:?} names another PeerId than this node's ({own})"
        ));
    }
    if address.ip().is_some_and(|ip| ip.is_unspecified()) {
        return Err(format!(
            "{text:?}: an unspecified IP cannot be dialed; give the address peers reach this node at"
        ));
    }
    if matches!(address.host_port(), Some((_, Some(0))) | Some((_, None))) {
        return Err(format!("{text:?}: give the port peers reach this node on"));
    }
    Ok(address)
}
