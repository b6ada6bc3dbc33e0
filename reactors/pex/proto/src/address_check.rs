//! The checks an address passes in peer exchange before the peer manager
//! sees it: those about the message (duplicates, foreign announcements,
//! unknown schemes, malformed entries). Every check that applies to any
//! address, whichever reactor it comes from — ourselves, unspecified IPs,
//! port 0, private and loopback addresses, the per-host limit, bans — is
//! the peer manager's one screen ([`p2p::AddAddressError`]).

use std::fmt;
use std::net::IpAddr;

use p2p_core::PeerAddress;
use p2p_core::address::{Endpoint, Host};

/// Why an address was not added to the address book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressRefusal {
    /// It appeared earlier in the same message.
    Duplicate,
    /// A peer announced it in its `Hello` but it names another peer.
    ForeignPeer,
    /// Its transport scheme is unknown to this node (skipped, not a
    /// violation: newer nodes may know more transports).
    UnknownScheme,
    /// An announced address that does not parse (a malformed address in a
    /// response refuses the whole response instead).
    Malformed,
    /// The peer manager's screen refused it (ourselves, an unspecified IP,
    /// port 0, a private address, the per-host limit, a banned peer or
    /// network, a full bucket, ...); the router counts it by reason under
    /// `switchyard_p2p_addresses_refused_total{reason}`.
    PeerManager,
}

impl AddressRefusal {
    /// Every reason, in order.
    pub const ALL: [AddressRefusal; 5] = [
        AddressRefusal::Duplicate,
        AddressRefusal::ForeignPeer,
        AddressRefusal::UnknownScheme,
        AddressRefusal::Malformed,
        AddressRefusal::PeerManager,
    ];

    /// A stable label for metrics (`"duplicate"`).
    pub fn as_str(self) -> &'static str {
        match self {
            AddressRefusal::Duplicate => "duplicate",
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use p2p_core::{Keypair, PeerId};

    fn peer(seed: u64) -> PeerId {
        Keypair::from_seed(seed).peer_id()
    }

    fn addr(text: &str) -> PeerAddress {
        text.parse().unwrap()
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
}
