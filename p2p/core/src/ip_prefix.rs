//! Network prefixes and groups: what per-source limits count, since one
//! attacker holds many addresses of one network far more cheaply than
//! addresses of many networks (keys cost nothing at all).
//!
//! An IPv4 address counts by its /24, an IPv6 address by its /48 (a
//! typical site allocation); an IPv4-mapped IPv6 address counts as the
//! IPv4 address it maps. Limits keyed by a [`PeerId`](crate::PeerId) or by
//! an exact IP are free to evade; limits keyed by [`IpPrefix`] cost an
//! attacker a network per slot.
//!
//! An [`IpGroup`] is coarser: the /16 of an IPv4 address, the /32 of an
//! IPv6 one (roughly, one provider's allocation). The address book buckets
//! addresses by the group they are in and the group of the peer that told
//! us about them, so that one provider's addresses cannot fill it.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// The prefix length an IPv4 address is counted by.
pub const IPV4_PREFIX_LEN: u8 = 24;
/// The prefix length an IPv6 address is counted by.
pub const IPV6_PREFIX_LEN: u8 = 48;

/// The network an address belongs to, for per-source limits: the /24 of
/// an IPv4 address, the /48 of an IPv6 one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpPrefix {
    /// An IPv4 /24 (the last octet zero).
    V4(Ipv4Addr),
    /// An IPv6 /48 (the last 80 bits zero).
    V6(Ipv6Addr),
}

impl IpPrefix {
    /// The prefix `ip` is counted by.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::v4(v4),
                None => {
                    let s = v6.segments();
                    Self::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
                }
            },
        }
    }

    fn v4(ip: Ipv4Addr) -> Self {
        let [a, b, c, _] = ip.octets();
        Self::V4(Ipv4Addr::new(a, b, c, 0))
    }
}

impl From<IpAddr> for IpPrefix {
    fn from(ip: IpAddr) -> Self {
        Self::of(ip)
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(ip) => write!(f, "{ip}/{IPV4_PREFIX_LEN}"),
            Self::V6(ip) => write!(f, "{ip}/{IPV6_PREFIX_LEN}"),
        }
    }
}

impl fmt::Debug for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpPrefix({self})")
    }
}

/// The prefix length of an IPv4 [`IpGroup`].
pub const IPV4_GROUP_LEN: u8 = 16;
/// The prefix length of an IPv6 [`IpGroup`].
pub const IPV6_GROUP_LEN: u8 = 32;

/// The wider network an address belongs to, for the address book's
/// buckets: the /16 of an IPv4 address, the /32 of an IPv6 one (an
/// IPv4-mapped IPv6 address as the IPv4 address it maps).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpGroup {
    /// An IPv4 /16 (the last two octets zero).
    V4(Ipv4Addr),
    /// An IPv6 /32 (the last 96 bits zero).
    V6(Ipv6Addr),
}

impl IpGroup {
    /// The group `ip` belongs to.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let [a, b, _, _] = v4.octets();
                Self::V4(Ipv4Addr::new(a, b, 0, 0))
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                Self::V6(Ipv6Addr::new(s[0], s[1], 0, 0, 0, 0, 0, 0))
            }
        }
    }
}

impl From<IpAddr> for IpGroup {
    fn from(ip: IpAddr) -> Self {
        Self::of(ip)
    }
}

impl fmt::Display for IpGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(ip) => write!(f, "{ip}/{IPV4_GROUP_LEN}"),
            Self::V6(ip) => write!(f, "{ip}/{IPV6_GROUP_LEN}"),
        }
    }
}

impl fmt::Debug for IpGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpGroup({self})")
    }
}

/// Counts something in progress per [`IpPrefix`] (inbound handshakes, in a
/// transport and in the router), up to a limit; a slot is given back when
/// its guard drops.
#[derive(Debug, Default)]
pub struct PrefixSlots {
    counts: parking_lot::Mutex<HashMap<IpPrefix, usize>>,
}

/// One slot taken from [`PrefixSlots`]; dropping it gives it back.
#[derive(Debug)]
pub struct PrefixSlot {
    slots: Arc<PrefixSlots>,
    prefix: IpPrefix,
}

impl PrefixSlots {
    /// Takes a slot for `ip`'s prefix if fewer than `max` are taken.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<PrefixSlot> {
        let prefix = IpPrefix::of(ip);
        let mut counts = self.counts.lock();
        let count = counts.entry(prefix).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(PrefixSlot {
            slots: self.clone(),
            prefix,
        })
    }

    /// Slots taken for `ip`'s prefix.
    pub fn taken(&self, ip: IpAddr) -> usize {
        self.counts
            .lock()
            .get(&IpPrefix::of(ip))
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for PrefixSlot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock();
        if let Some(count) = counts.get_mut(&self.prefix) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.prefix);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn addresses_count_by_their_24_or_48() {
        assert_eq!(IpPrefix::of(ip("10.1.2.3")), IpPrefix::of(ip("10.1.2.250")));
        assert_ne!(IpPrefix::of(ip("10.1.2.3")), IpPrefix::of(ip("10.1.3.3")));
        assert_eq!(
            IpPrefix::of(ip("2001:db8:1:ffff::1")),
            IpPrefix::of(ip("2001:db8:1:2::9"))
        );
        assert_ne!(
            IpPrefix::of(ip("2001:db8:1::1")),
            IpPrefix::of(ip("2001:db8:2::1"))
        );
        assert_eq!(
            IpPrefix::of(ip("::ffff:192.0.2.7")),
            IpPrefix::of(ip("192.0.2.8"))
        );
        assert_eq!(IpPrefix::of(ip("192.0.2.7")).to_string(), "192.0.2.0/24");
        assert_eq!(
            IpPrefix::of(ip("2001:db8:1:2::9")).to_string(),
            "2001:db8:1::/48"
        );
    }

    #[test]
    fn groups_are_the_16_or_32() {
        assert_eq!(IpGroup::of(ip("10.1.2.3")), IpGroup::of(ip("10.1.200.9")));
        assert_ne!(IpGroup::of(ip("10.1.2.3")), IpGroup::of(ip("10.2.2.3")));
        assert_eq!(
            IpGroup::of(ip("2001:db8:1::1")),
            IpGroup::of(ip("2001:db8:ffff::9"))
        );
        assert_ne!(
            IpGroup::of(ip("2001:db8::1")),
            IpGroup::of(ip("2001:db9::1"))
        );
        assert_eq!(
            IpGroup::of(ip("::ffff:192.0.2.7")),
            IpGroup::of(ip("192.0.99.8"))
        );
        assert_eq!(IpGroup::of(ip("192.0.2.7")).to_string(), "192.0.0.0/16");
        assert_eq!(
            IpGroup::of(ip("2001:db8:1:2::9")).to_string(),
            "2001:db8::/32"
        );
    }

    #[test]
    fn slots_are_counted_per_prefix_and_given_back_on_drop() {
        let slots = Arc::new(PrefixSlots::default());
        let a = slots.acquire(ip("10.0.0.1"), 2).expect("first");
        let _b = slots.acquire(ip("10.0.0.2"), 2).expect("second, same /24");
        assert!(slots.acquire(ip("10.0.0.3"), 2).is_none(), "a third");
        assert!(slots.acquire(ip("10.0.1.3"), 2).is_some(), "another /24");
        drop(a);
        assert_eq!(slots.taken(ip("10.0.0.9")), 1);
        assert!(slots.acquire(ip("10.0.0.3"), 2).is_some());
    }
}
