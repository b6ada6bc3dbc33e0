//! Peer addresses: which transport, which peer, which endpoint.
//!
//! ```text
//! memory://<peer-id>
//! tcp://<peer-id>@127.0.0.1:7400
//! quic://<peer-id>@[::1]:7401
//! tcp://<peer-id>@seed.example.org:7400
//! libp2p://<peer-id>@/ip4/127.0.0.1/tcp/4001
//! ```
//!
//! Every address names the PeerId expected to answer: a transport that
//! dials it must fail when a different key answers. There is one parser
//! ([`FromStr`]) and one printer ([`Display`](fmt::Display)); they
//! round-trip. Parsing is bounded (addresses longer than
//! [`MAX_ADDRESS_LEN`] are refused before any work) and never panics.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::identity::{IdentityError, PeerId};
use crate::ip_prefix::IpPrefix;

/// The longest address text accepted.
pub const MAX_ADDRESS_LEN: usize = 512;

/// Why an address did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// No `scheme://` prefix.
    #[error("address {0:?} has no scheme; expected e.g. tcp://<peer-id>@127.0.0.1:7400")]
    MissingScheme(String),
    /// A scheme Switchyard does not know.
    #[error("unknown transport scheme {0:?}; expected memory, tcp, quic or libp2p")]
    UnknownScheme(String),
    /// No `<peer-id>@` part where the scheme needs one.
    #[error("address {0:?} names no peer; expected <scheme>://<peer-id>@<endpoint>")]
    MissingPeer(String),
    /// The peer part is not a PeerId.
    #[error("address {address:?}: {reason}")]
    BadPeer {
        /// The whole address.
        address: String,
        /// Why the peer part is invalid.
        reason: String,
    },
    /// The endpoint part is malformed.
    #[error("address {address:?}: bad endpoint: {reason}")]
    BadEndpoint {
        /// The whole address.
        address: String,
        /// Why the endpoint is invalid.
        reason: String,
    },
    /// Longer than [`MAX_ADDRESS_LEN`].
    #[error("address of {0} bytes exceeds the limit of {MAX_ADDRESS_LEN}")]
    TooLong(usize),
}

/// A host: an IP address or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Host {
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A DNS name, resolved when dialing.
    Dns(String),
}

/// A host and a port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    /// The host.
    pub host: Host,
    /// The port.
    pub port: u16,
}

impl HostPort {
    /// The socket address, if the host is an IP address.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match &self.host {
            Host::Ip(ip) => Some(SocketAddr::new(*ip, self.port)),
            Host::Dns(_) => None,
        }
    }
}

impl From<SocketAddr> for HostPort {
    fn from(addr: SocketAddr) -> Self {
        Self {
            host: Host::Ip(addr.ip()),
            port: addr.port(),
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            Host::Dns(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

/// Where a peer is reached, by transport.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// The in-process memory hub; the PeerId is the endpoint's name.
    Memory,
    /// TCP + Noise.
    Tcp(HostPort),
    /// QUIC.
    Quic(HostPort),
    /// A libp2p multiaddr (kept as text; the libp2p transport parses it).
    Libp2p(String),
}

impl Endpoint {
    /// The scheme naming this endpoint's transport.
    pub fn scheme(&self) -> &'static str {
        match self {
            Endpoint::Memory => "memory",
            Endpoint::Tcp(_) => "tcp",
            Endpoint::Quic(_) => "quic",
            Endpoint::Libp2p(_) => "libp2p",
        }
    }
}

/// A peer's address: the transport, the PeerId expected to answer, and the
/// endpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerAddress {
    /// The peer that must answer at this address.
    pub peer: PeerId,
    /// Where to reach it.
    pub endpoint: Endpoint,
}

impl PeerAddress {
    /// `memory://<peer>`.
    pub fn memory(peer: PeerId) -> Self {
        Self {
            peer,
            endpoint: Endpoint::Memory,
        }
    }

    /// `tcp://<peer>@<addr>`.
    pub fn tcp(peer: PeerId, addr: SocketAddr) -> Self {
        Self {
            peer,
            endpoint: Endpoint::Tcp(addr.into()),
        }
    }

    /// `quic://<peer>@<addr>`.
    pub fn quic(peer: PeerId, addr: SocketAddr) -> Self {
        Self {
            peer,
            endpoint: Endpoint::Quic(addr.into()),
        }
    }

    /// The transport scheme.
    pub fn scheme(&self) -> &'static str {
        self.endpoint.scheme()
    }

    /// The endpoint's IP address, when it has one.
    pub fn ip(&self) -> Option<IpAddr> {
        match &self.endpoint {
            Endpoint::Tcp(hp) | Endpoint::Quic(hp) => match hp.host {
                Host::Ip(ip) => Some(ip),
                Host::Dns(_) => None,
            },
            Endpoint::Memory | Endpoint::Libp2p(_) => None,
        }
    }

    /// Where the address points: its host (an IP in canonical form, so
    /// `::ffff:192.0.2.1` is `192.0.2.1`, or a lowercase DNS name) and its
    /// port, if it names one. For a libp2p multiaddr, its first `/ip4`,
    /// `/ip6` or `/dns*` component and its first `/tcp` or `/udp` port.
    /// `None` for an address without a host (`memory://`, a multiaddr
    /// that names none).
    pub fn host_port(&self) -> Option<(Host, Option<u16>)> {
        match &self.endpoint {
            Endpoint::Tcp(hp) | Endpoint::Quic(hp) => {
                let host = match &hp.host {
                    Host::Ip(ip) => Host::Ip(ip.to_canonical()),
                    Host::Dns(name) => Host::Dns(name.to_ascii_lowercase()),
                };
                Some((host, Some(hp.port)))
            }
            Endpoint::Libp2p(multiaddr) => multiaddr_host_port(multiaddr),
            Endpoint::Memory => None,
        }
    }
}

/// The first `/ip4`, `/ip6` or `/dns*` component of a multiaddr, and the
/// first `/tcp` or `/udp` port.
fn multiaddr_host_port(multiaddr: &str) -> Option<(Host, Option<u16>)> {
    let mut parts = multiaddr.split('/').skip(1);
    let mut host = None;
    let mut port = None;
    while let Some(protocol) = parts.next() {
        let value = parts.next();
        match (protocol, value) {
            ("ip4" | "ip6", Some(v)) if host.is_none() => {
                host = v
                    .parse::<IpAddr>()
                    .ok()
                    .map(|ip| Host::Ip(ip.to_canonical()));
            }
            ("dns" | "dns4" | "dns6" | "dnsaddr", Some(v)) if host.is_none() => {
                host = Some(Host::Dns(v.to_ascii_lowercase()));
            }
            ("tcp" | "udp", Some(v)) if port.is_none() => port = v.parse().ok(),
            _ => {}
        }
    }
    host.map(|host| (host, port))
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.endpoint {
            Endpoint::Memory => write!(f, "memory://{}", self.peer),
            Endpoint::Tcp(hp) => write!(f, "tcp://{}@{hp}", self.peer),
            Endpoint::Quic(hp) => write!(f, "quic://{}@{hp}", self.peer),
            Endpoint::Libp2p(multiaddr) => write!(f, "libp2p://{}@{multiaddr}", self.peer),
        }
    }
}

impl FromStr for PeerAddress {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong(text.len()));
        }
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| AddressError::MissingScheme(text.to_string()))?;
        let bad_peer = |e: IdentityError| AddressError::BadPeer {
            address: text.to_string(),
            reason: e.to_string(),
        };
        let bad_endpoint = |reason: &str| AddressError::BadEndpoint {
            address: text.to_string(),
            reason: reason.to_string(),
        };
        if scheme == "memory" {
            let peer = rest.parse().map_err(bad_peer)?;
            return Ok(Self::memory(peer));
        }
        if !matches!(scheme, "tcp" | "quic" | "libp2p") {
            return Err(AddressError::UnknownScheme(scheme.to_string()));
        }
        let (peer, endpoint) = rest
            .split_once('@')
            .ok_or_else(|| AddressError::MissingPeer(text.to_string()))?;
        let peer: PeerId = peer.parse().map_err(bad_peer)?;
        let endpoint = match scheme {
            "tcp" => Endpoint::Tcp(parse_host_port(endpoint).map_err(|r| bad_endpoint(&r))?),
            "quic" => Endpoint::Quic(parse_host_port(endpoint).map_err(|r| bad_endpoint(&r))?),
            _ => {
                if !endpoint.starts_with('/') || endpoint.len() < 2 {
                    return Err(bad_endpoint(
                        "a libp2p endpoint is a multiaddr such as /ip4/127.0.0.1/tcp/4001",
                    ));
                }
                if endpoint
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(bad_endpoint("multiaddr contains whitespace"));
                }
                Endpoint::Libp2p(endpoint.to_string())
            }
        };
        Ok(Self { peer, endpoint })
    }
}

fn parse_host_port(text: &str) -> Result<HostPort, String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or("IPv6 address opened with '[' but never closed")?;
        let port = after
            .strip_prefix(':')
            .ok_or("expected :port after the IPv6 address")?;
        let ip: std::net::Ipv6Addr = ip.parse().map_err(|_| format!("bad IPv6 address {ip:?}"))?;
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or("expected host:port")?;
        let host = if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
            Host::Ip(IpAddr::V4(ip))
        } else if is_dns_name(host) {
            Host::Dns(host.to_ascii_lowercase())
        } else {
            return Err(format!(
                "{host:?} is neither an IP address nor a DNS name (IPv6 goes in brackets)"
            ));
        };
        (host, port)
    };
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    Ok(HostPort { host, port })
}

/// Letters, digits, '-' and '.', labels of 1–63 characters, at most 253 in all.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && !name.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Why an address was not added: the one address screen every source
/// passes, whichever reactor it comes from. Each refusal is counted by the
/// router under `switchyard_p2p_addresses_refused_total{reason}`, with
/// [`reason`](Self::reason) as the label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddAddressError {
    /// The address names this node.
    #[error("address names this node")]
    SelfAddress,
    /// Its IP is unspecified (`0.0.0.0`, `::`).
    #[error("address has an unspecified IP")]
    Unspecified,
    /// Its port is 0.
    #[error("address has port 0")]
    PortZero,
    /// Its IP can never be a peer's: multicast, broadcast or reserved.
    #[error("address is multicast, broadcast or reserved")]
    Unroutable,
    /// Its IP (or name) is loopback, private, link-local or shared
    /// (carrier-grade NAT), and `allow_private_addresses` is off. Trusted
    /// sources are exempt.
    #[error("address is loopback, private or link-local (allow_private_addresses is off)")]
    NotPublic,
    /// Its host (IP or DNS name) already has `max_ports_per_host` distinct
    /// endpoints in the book. Trusted sources are exempt.
    #[error("host already has {max} endpoints in the address book (max_ports_per_host)")]
    HostLimit {
        /// The limit.
        max: usize,
    },
    /// The peer it names is banned.
    #[error("peer {0} is banned")]
    Banned(PeerId),
    /// Its IP is in a network banned for repeated offences. Trusted
    /// sources are exempt.
    #[error("network {0} is banned")]
    PrefixBanned(IpPrefix),
    /// The peer already has `max_addresses_per_peer` addresses.
    #[error("peer {peer} already has {max} addresses (max_addresses_per_peer)")]
    TooManyAddressesForPeer {
        /// The peer.
        peer: PeerId,
        /// The limit.
        max: usize,
    },
    /// The address book's bucket for this address and its source is full
    /// of addresses that may not be displaced (from other sources, or
    /// connected, or reachable).
    #[error("address book bucket is full of addresses from other sources")]
    BucketFull,
}

impl AddAddressError {
    /// Every reason label, in declaration order.
    pub const REASONS: [&'static str; 10] = [
        "self_address",
        "unspecified",
        "port_zero",
        "unroutable",
        "not_public",
        "host_limit",
        "banned",
        "prefix_banned",
        "peer_address_limit",
        "bucket_full",
    ];

    /// A stable label for metrics (`"not_public"`).
    pub fn reason(&self) -> &'static str {
        match self {
            AddAddressError::SelfAddress => "self_address",
            AddAddressError::Unspecified => "unspecified",
            AddAddressError::PortZero => "port_zero",
            AddAddressError::Unroutable => "unroutable",
            AddAddressError::NotPublic => "not_public",
            AddAddressError::HostLimit { .. } => "host_limit",
            AddAddressError::Banned(_) => "banned",
            AddAddressError::PrefixBanned(_) => "prefix_banned",
            AddAddressError::TooManyAddressesForPeer { .. } => "peer_address_limit",
            AddAddressError::BucketFull => "bucket_full",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use proptest::prelude::*;

    fn peer() -> PeerId {
        Keypair::from_seed(3).peer_id()
    }

    #[test]
    fn every_scheme_round_trips() {
        let p = peer();
        for text in [
            format!("memory://{p}"),
            format!("tcp://{p}@127.0.0.1:7400"),
            format!("quic://{p}@[::1]:7401"),
            format!("tcp://{p}@seed.example.org:7400"),
            format!("libp2p://{p}@/ip4/127.0.0.1/tcp/4001"),
        ] {
            let addr: PeerAddress = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(addr.to_string(), text);
            assert_eq!(addr.peer, p);
        }
    }

    #[test]
    fn ip_is_reported_for_ip_endpoints_only() {
        let p = peer();
        let tcp: PeerAddress = format!("tcp://{p}@10.1.2.3:1").parse().expect("parse");
        assert_eq!(tcp.ip(), Some("10.1.2.3".parse().expect("ip")));
        assert_eq!(PeerAddress::memory(p).ip(), None);
    }

    #[test]
    fn hosts_and_ports_are_read_from_every_kind_of_endpoint() {
        let p = peer();
        let addr = |text: String| text.parse::<PeerAddress>().expect("parse");
        let ip = |text: &str| Host::Ip(text.parse().expect("ip"));
        assert_eq!(
            addr(format!("tcp://{p}@[::ffff:192.0.2.1]:7400")).host_port(),
            Some((ip("192.0.2.1"), Some(7400)))
        );
        assert_eq!(
            addr(format!("quic://{p}@Seed.Example.org:1")).host_port(),
            Some((Host::Dns("seed.example.org".into()), Some(1)))
        );
        assert_eq!(
            addr(format!("libp2p://{p}@/ip4/10.0.0.1/udp/9/quic-v1")).host_port(),
            Some((ip("10.0.0.1"), Some(9)))
        );
        assert_eq!(
            addr(format!("libp2p://{p}@/dnsaddr/boot.example")).host_port(),
            Some((Host::Dns("boot.example".into()), None))
        );
        assert_eq!(PeerAddress::memory(p).host_port(), None);
        assert_eq!(addr(format!("libp2p://{p}@/p2p-circuit")).host_port(), None);
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        let p = peer();
        let cases = [
            ("127.0.0.1:7400".to_string(), "no scheme"),
            (format!("udp://{p}@1.2.3.4:5"), "unknown transport scheme"),
            ("tcp://127.0.0.1:7400".to_string(), "names no peer"),
            ("tcp://nobody@127.0.0.1:7400".to_string(), "invalid peer id"),
            (format!("tcp://{p}@127.0.0.1"), "bad endpoint"),
            (format!("tcp://{p}@127.0.0.1:99999"), "bad port"),
            (format!("quic://{p}@[::1:7401"), "never closed"),
            (format!("tcp://{p}@bad_host!:1"), "neither an IP"),
            (format!("libp2p://{p}@ip4/1.2.3.4"), "multiaddr"),
            (
                format!("tcp://{p}@{}:1", "a".repeat(600)),
                "exceeds the limit",
            ),
        ];
        for (text, expected) in cases {
            let err = text.parse::<PeerAddress>().expect_err(&text).to_string();
            assert!(err.contains(expected), "{text}: {err:?} lacks {expected:?}");
        }
    }

    proptest! {
        #[test]
        fn tcp_addresses_round_trip(seed in any::<u64>(), ip in any::<std::net::IpAddr>(), port in any::<u16>()) {
            let addr = PeerAddress::tcp(Keypair::from_seed(seed).peer_id(), SocketAddr::new(ip, port));
            prop_assert_eq!(addr.to_string().parse::<PeerAddress>(), Ok(addr));
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(text in "(memory|tcp|quic|libp2p)://.{0,120}") {
            let _ = text.parse::<PeerAddress>();
        }
    }
}
