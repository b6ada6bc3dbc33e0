//! The checks an address passes before the peer manager sees it, and the
//! per-host limit that spans the whole address book.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::net::IpAddr;

use p2p::address::{Endpoint, Host};
use p2p::{PeerAddress, PeerId};

/// Hosts the per-host limit remembers at most; beyond it the host seen
/// first is forgotten.
pub(crate) const MAX_TRACKED_HOSTS: usize = 8192;

/// Why an address was not handed to the peer manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressRefusal {
    /// It names this node.
    SelfAddress,
    /// Its IP is unspecified (`0.0.0.0`, `::`) and no IP was observed to
    /// replace it.
    Unspecified,
    /// Its port is 0.
    PortZero,
    /// It appeared earlier in the same message.
    Duplicate,
    /// Its host already has `max_ports_per_host` endpoints in the book.
    HostLimit,
    /// A peer announced it in its `Hello` but it names another peer.
    ForeignPeer,
    /// Its transport scheme is unknown to this node (skipped, not a
    /// violation: newer nodes may know more transports).
    UnknownScheme,
    /// An announced address that does not parse (a malformed address in a
    /// response refuses the whole response instead).
    Malformed,
    /// The peer manager refused it (banned peer, full book, too many
    /// addresses for that peer).
    PeerManager,
}

impl AddressRefusal {
    /// Every reason, in order.
    pub const ALL: [AddressRefusal; 9] = [
        AddressRefusal::SelfAddress,
        AddressRefusal::Unspecified,
        AddressRefusal::PortZero,
        AddressRefusal::Duplicate,
        AddressRefusal::HostLimit,
        AddressRefusal::ForeignPeer,
        AddressRefusal::UnknownScheme,
        AddressRefusal::Malformed,
        AddressRefusal::PeerManager,
    ];

    /// A stable label for metrics (`"host_limit"`).
    pub fn as_str(self) -> &'static str {
        match self {
            AddressRefusal::SelfAddress => "self_address",
            AddressRefusal::Unspecified => "unspecified",
            AddressRefusal::PortZero => "port_zero",
            AddressRefusal::Duplicate => "duplicate",
            AddressRefusal::HostLimit => "host_limit",
            AddressRefusal::ForeignPeer => "foreign_peer",
            AddressRefusal::UnknownScheme => "unknown_scheme",
            AddressRefusal::Malformed => "malformed",
            AddressRefusal::PeerManager => "peer_manager",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for AddressRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an address points: its host and, if it names one, its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    pub host: Host,
    pub port: Option<u16>,
}

/// The host and port of `address`; `None` for addresses without a host
/// (`memory://`, a libp2p multiaddr that names none).
pub(crate) fn host_port(address: &PeerAddress) -> Option<HostPort> {
    match &address.endpoint {
        Endpoint::Tcp(hp) | Endpoint::Quic(hp) => Some(HostPort {
            host: canonical(hp.host.clone()),
            port: Some(hp.port),
        }),
        Endpoint::Libp2p(multiaddr) => multiaddr_host_port(multiaddr),
        Endpoint::Memory => None,
    }
}

/// One host, one key: `::ffff:192.0.2.1` is `192.0.2.1`.
fn canonical(host: Host) -> Host {
    match host {
        Host::Ip(ip) => Host::Ip(ip.to_canonical()),
        Host::Dns(name) => Host::Dns(name.to_ascii_lowercase()),
    }
}

/// The first `/ip4`, `/ip6` or `/dns*` component of a multiaddr, and the
/// first `/tcp` or `/udp` port.
fn multiaddr_host_port(multiaddr: &str) -> Option<HostPort> {
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
    host.map(|host| HostPort { host, port })
}

/// `address` with an unspecified IP replaced by `observed` (what a peer
/// that listens on `0.0.0.0` announces, seen from our side); `None` if it
/// has no IP to replace.
pub(crate) fn with_observed_ip(address: &PeerAddress, observed: IpAddr) -> Option<PeerAddress> {
    let endpoint = match &address.endpoint {
        Endpoint::Tcp(hp) | Endpoint::Quic(hp) => {
            let mut hp = hp.clone();
            match hp.host {
                Host::Ip(ip) if ip.is_unspecified() => hp.host = Host::Ip(observed),
                _ => return None,
            }
            match address.endpoint {
                Endpoint::Quic(_) => Endpoint::Quic(hp),
                _ => Endpoint::Tcp(hp),
            }
        }
        Endpoint::Libp2p(multiaddr) => {
            let mut parts: Vec<String> = multiaddr.split('/').map(str::to_string).collect();
            let at = parts.iter().position(|p| p == "ip4" || p == "ip6")?;
            let ip: IpAddr = parts.get(at + 1)?.parse().ok()?;
            if !ip.is_unspecified() {
                return None;
            }
            parts[at] = if observed.is_ipv4() { "ip4" } else { "ip6" }.into();
            parts[at + 1] = observed.to_string();
            Endpoint::Libp2p(parts.join("/"))
        }
        Endpoint::Memory => return None,
    };
    Some(PeerAddress {
        peer: address.peer,
        endpoint,
    })
}

/// Whether `address` points at an unspecified IP or at port 0: nothing a
/// dial could reach.
pub(crate) fn unreachable(address: &PeerAddress) -> Option<AddressRefusal> {
    let hp = host_port(address)?;
    if matches!(hp.host, Host::Ip(ip) if ip.is_unspecified()) {
        return Some(AddressRefusal::Unspecified);
    }
    if hp.port == Some(0) {
        return Some(AddressRefusal::PortZero);
    }
    None
}

/// Endpoints per host that peer exchange has put in the address book:
/// host → at most `max_per_host` distinct (port, peer) pairs. At most
/// [`MAX_TRACKED_HOSTS`] hosts; a new host beyond that forgets the host
/// first seen (first in, first out), so the map stays bounded while an
/// attacker needs thousands of fresh hosts to make one forgotten.
#[derive(Debug)]
pub(crate) struct HostLimiter {
    max_per_host: usize,
    capacity: usize,
    hosts: BTreeMap<Host, BTreeSet<(Option<u16>, PeerId)>>,
    /// The hosts of `hosts`, oldest first (always the same set).
    order: VecDeque<Host>,
}

impl HostLimiter {
    pub fn new(max_per_host: usize, capacity: usize) -> Self {
        Self {
            max_per_host,
            capacity: capacity.max(1),
            hosts: BTreeMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Takes a place for `peer` at `hp`: true if it already had one or one
    /// was free.
    pub fn admit(&mut self, hp: &HostPort, peer: PeerId) -> bool {
        let key = (hp.port, peer);
        if let Some(endpoints) = self.hosts.get_mut(&hp.host) {
            if endpoints.contains(&key) {
                return true;
            }
            if endpoints.len() >= self.max_per_host {
                return false;
            }
            endpoints.insert(key);
            return true;
        }
        if self.max_per_host == 0 {
            return false;
        }
        while self.hosts.len() >= self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.hosts.remove(&oldest);
                }
                None => break,
            }
        }
        self.hosts.insert(hp.host.clone(), BTreeSet::from([key]));
        self.order.push_back(hp.host.clone());
        true
    }

    /// Gives back `peer`'s place at `hp` (the peer manager refused it). An
    /// emptied host stays listed until it is the oldest, which keeps
    /// `order` exact.
    pub fn release(&mut self, hp: &HostPort, peer: PeerId) {
        if let Some(endpoints) = self.hosts.get_mut(&hp.host) {
            endpoints.remove(&(hp.port, peer));
        }
    }

    /// Endpoints held for `host`.
    #[cfg(test)]
    pub fn endpoints(&self, host: &Host) -> usize {
        self.hosts.get(host).map_or(0, BTreeSet::len)
    }

    /// Hosts tracked.
    #[cfg(test)]
    pub fn hosts(&self) -> usize {
        debug_assert_eq!(self.hosts.len(), self.order.len());
        self.hosts.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use p2p::Keypair;

    fn peer(seed: u64) -> PeerId {
        Keypair::from_seed(seed).peer_id()
    }

    fn addr(text: &str) -> PeerAddress {
        text.parse().unwrap()
    }

    #[test]
    fn hosts_and_ports_are_read_from_every_kind_of_endpoint() {
        let p = peer(1);
        let hp = host_port(&addr(&format!("tcp://{p}@[::ffff:192.0.2.1]:7400"))).unwrap();
        assert_eq!(hp.host, Host::Ip("192.0.2.1".parse().unwrap()));
        assert_eq!(hp.port, Some(7400));
        let hp = host_port(&addr(&format!("quic://{p}@Seed.Example.org:1"))).unwrap();
        assert_eq!(hp.host, Host::Dns("seed.example.org".into()));
        let hp = host_port(&addr(&format!("libp2p://{p}@/ip4/10.0.0.1/udp/9/quic-v1"))).unwrap();
        assert_eq!(hp.host, Host::Ip("10.0.0.1".parse().unwrap()));
        assert_eq!(hp.port, Some(9));
        let hp = host_port(&addr(&format!("libp2p://{p}@/dnsaddr/boot.example"))).unwrap();
        assert_eq!((hp.host, hp.port), (Host::Dns("boot.example".into()), None));
        assert_eq!(host_port(&addr(&format!("memory://{p}"))), None);
        assert_eq!(
            host_port(&addr(&format!("libp2p://{p}@/p2p-circuit"))),
            None
        );
    }

    #[test]
    fn unspecified_ips_and_port_zero_are_unreachable() {
        let p = peer(1);
        for (text, expected) in [
            (
                format!("tcp://{p}@0.0.0.0:1"),
                Some(AddressRefusal::Unspecified),
            ),
            (
                format!("quic://{p}@[::]:1"),
                Some(AddressRefusal::Unspecified),
            ),
            (
                format!("tcp://{p}@1.2.3.4:0"),
                Some(AddressRefusal::PortZero),
            ),
            (
                format!("libp2p://{p}@/ip4/0.0.0.0/tcp/1"),
                Some(AddressRefusal::Unspecified),
            ),
            (format!("tcp://{p}@1.2.3.4:1"), None),
            (format!("memory://{p}"), None),
        ] {
            assert_eq!(unreachable(&addr(&text)), expected, "{text}");
        }
    }

    #[test]
    fn an_unspecified_ip_is_replaced_by_the_observed_one() {
        let p = peer(1);
        let seen: IpAddr = "198.51.100.9".parse().unwrap();
        let cases = [
            (
                format!("tcp://{p}@0.0.0.0:7400"),
                Some(format!("tcp://{p}@198.51.100.9:7400")),
            ),
            (
                format!("quic://{p}@[::]:7401"),
                Some(format!("quic://{p}@198.51.100.9:7401")),
            ),
            (
                format!("libp2p://{p}@/ip6/::/tcp/4001"),
                Some(format!("libp2p://{p}@/ip4/198.51.100.9/tcp/4001")),
            ),
            (format!("tcp://{p}@1.2.3.4:7400"), None),
            (format!("memory://{p}"), None),
        ];
        for (text, expected) in cases {
            let got = with_observed_ip(&addr(&text), seen).map(|a| a.to_string());
            assert_eq!(got, expected, "{text}");
        }
    }

    #[test]
    fn a_host_holds_at_most_max_per_host_endpoints() {
        let mut limiter = HostLimiter::new(2, 16);
        let host = Host::Ip("203.0.113.7".parse().unwrap());
        let at = |port| HostPort {
            host: host.clone(),
            port: Some(port),
        };
        assert!(limiter.admit(&at(1), peer(1)));
        assert!(limiter.admit(&at(2), peer(2)));
        assert!(limiter.admit(&at(1), peer(1)), "a known endpoint stays");
        assert!(!limiter.admit(&at(3), peer(3)));
        assert!(!limiter.admit(&at(1), peer(4)), "same port, other peer");
        limiter.release(&at(2), peer(2));
        assert!(limiter.admit(&at(3), peer(3)));
        assert_eq!(limiter.endpoints(&host), 2);
    }

    #[test]
    fn the_oldest_host_is_forgotten_beyond_capacity() {
        let mut limiter = HostLimiter::new(1, 3);
        let at = |i: u8| HostPort {
            host: Host::Ip(IpAddr::from([10, 0, 0, i])),
            port: Some(1),
        };
        for i in 0..3 {
            assert!(limiter.admit(&at(i), peer(u64::from(i))));
        }
        assert!(!limiter.admit(&at(0), peer(9)));
        assert!(limiter.admit(&at(3), peer(3)));
        assert_eq!(limiter.hosts(), 3);
        assert!(limiter.admit(&at(0), peer(9)), "host 0 was forgotten");
        assert_eq!(limiter.hosts(), 3);
    }
}
