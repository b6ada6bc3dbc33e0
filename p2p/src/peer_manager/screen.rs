//! What an address must be to enter the address book, whichever source it
//! comes from: not ours, reachable (a specified IP, a port), routable, and
//! public unless the source is trusted or private addresses are allowed.
//! The per-host limit and bans are checked by the book itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::address_book::AddAddressError;
use crate::address::{Host, PeerAddress};

/// Where an IP (or name) can be reached from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// The internet.
    Public,
    /// This machine or its local network only: loopback, private
    /// (RFC 1918, IPv6 unique local), link-local, shared (RFC 6598), and
    /// names such as `localhost`.
    Local,
    /// Nowhere: multicast, broadcast, reserved, "this network".
    Never,
}

/// How far `ip` reaches. Unspecified IPs are the caller's business.
pub(crate) fn reach_of_ip(ip: IpAddr) -> Reach {
    match ip.to_canonical() {
        IpAddr::V4(v4) => reach_of_v4(v4),
        IpAddr::V6(v6) => reach_of_v6(v6),
    }
}

fn reach_of_v4(ip: Ipv4Addr) -> Reach {
    let [a, b, _, _] = ip.octets();
    if a == 0 || ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Reach::Never
    } else if ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b))
    {
        Reach::Local
    } else {
        Reach::Public
    }
}

fn reach_of_v6(ip: Ipv6Addr) -> Reach {
    let first = ip.segments()[0];
    if ip.is_multicast() {
        Reach::Never
    } else if ip.is_loopback()
        || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (first & 0xffc0) == 0xfec0
    // site-local (deprecated), fec0::/10
    {
        Reach::Local
    } else {
        Reach::Public
    }
}

/// How far a DNS name reaches, judged by its text only (what it resolves
/// to is not known before a dial): `localhost` and names under
/// `.localhost`, `.local` (mDNS) and `.home.arpa` are local.
fn reach_of_name(name: &str) -> Reach {
    let name = name.trim_end_matches('.');
    let local = name == "localhost"
        || [".localhost", ".local", ".home.arpa"]
            .iter()
            .any(|suffix| name.ends_with(suffix));
    if local { Reach::Local } else { Reach::Public }
}

/// Whether `address` may be dialed at all, and whether it may be dialed
/// given `private_ok` (a trusted source, or `allow_private_addresses`).
pub(crate) fn check(address: &PeerAddress, private_ok: bool) -> Result<(), AddAddressError> {
    let Some((host, port)) = address.host_port() else {
        // memory://, or a multiaddr naming no host: nothing to judge.
        return Ok(());
    };
    let reach = match host {
        Host::Ip(ip) if ip.is_unspecified() => return Err(AddAddressError::Unspecified),
        Host::Ip(ip) => reach_of_ip(ip),
        Host::Dns(name) => reach_of_name(&name),
    };
    if port == Some(0) {
        return Err(AddAddressError::PortZero);
    }
    match reach {
        Reach::Never => Err(AddAddressError::Unroutable),
        Reach::Local if !private_ok => Err(AddAddressError::NotPublic),
        Reach::Local | Reach::Public => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    fn addr(text: &str) -> PeerAddress {
        let p = Keypair::from_seed(1).peer_id();
        text.replace("P", &p.to_string()).parse().unwrap()
    }

    #[test]
    fn ips_reach_as_their_ranges_say() {
        for (ip, reach) in [
            ("8.8.8.8", Reach::Public),
            ("203.0.113.7", Reach::Public),
            ("2001:db8::1", Reach::Public),
            ("127.0.0.1", Reach::Local),
            ("10.1.2.3", Reach::Local),
            ("172.16.0.1", Reach::Local),
            ("172.32.0.1", Reach::Public),
            ("192.168.1.1", Reach::Local),
            ("169.254.1.1", Reach::Local),
            ("100.64.0.1", Reach::Local),
            ("100.128.0.1", Reach::Public),
            ("::1", Reach::Local),
            ("fd00::1", Reach::Local),
            ("fe80::1", Reach::Local),
            ("::ffff:127.0.0.1", Reach::Local),
            ("::ffff:8.8.8.8", Reach::Public),
            ("224.0.0.1", Reach::Never),
            ("255.255.255.255", Reach::Never),
            ("240.0.0.1", Reach::Never),
            ("0.1.2.3", Reach::Never),
            ("ff02::1", Reach::Never),
        ] {
            assert_eq!(reach_of_ip(ip.parse().unwrap()), reach, "{ip}");
        }
    }

    #[test]
    fn the_screen_refuses_by_reason_and_lets_trusted_sources_be_private() {
        for (text, private_ok, expected) in [
            ("tcp://P@8.8.8.8:1", false, Ok(())),
            ("tcp://P@0.0.0.0:1", true, Err(AddAddressError::Unspecified)),
            ("quic://P@[::]:1", true, Err(AddAddressError::Unspecified)),
            ("tcp://P@8.8.8.8:0", true, Err(AddAddressError::PortZero)),
            (
                "tcp://P@224.0.0.1:1",
                true,
                Err(AddAddressError::Unroutable),
            ),
            (
                "tcp://P@127.0.0.1:1",
                false,
                Err(AddAddressError::NotPublic),
            ),
            ("tcp://P@127.0.0.1:1", true, Ok(())),
            (
                "tcp://P@localhost:1",
                false,
                Err(AddAddressError::NotPublic),
            ),
            (
                "tcp://P@box.local:1",
                false,
                Err(AddAddressError::NotPublic),
            ),
            ("tcp://P@seed.example.org:1", false, Ok(())),
            (
                "libp2p://P@/ip4/192.168.0.1/tcp/1",
                false,
                Err(AddAddressError::NotPublic),
            ),
            (
                "libp2p://P@/ip4/0.0.0.0/tcp/1",
                true,
                Err(AddAddressError::Unspecified),
            ),
            ("memory://P", false, Ok(())),
        ] {
            assert_eq!(check(&addr(text), private_ok), expected, "{text}");
        }
    }
}
