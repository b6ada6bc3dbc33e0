//! The IP peers see us at, once enough of them agree.
//!
//! A node behind NAT, or listening on `0.0.0.0`, does not know the IP the
//! rest of the network reaches it at. Every pex `Response` carries the IP
//! the responder sees the requester's connection come from
//! (`observed_ip`); [`ObservedIp`] counts those observations and names an
//! IP once **`quorum` distinct networks** report it: observers are counted
//! by the /24 (IPv4) or /48 (IPv6) of the IP *we* see them at
//! ([`IpPrefix`]), not by identity, so one attacker with many keys in one
//! network is one vote, however many peers it runs.
//!
//! Rules:
//! - only answers to our own requests count (the core takes a response
//!   only from a peer it asked), one vote per observer, its latest;
//! - an observation is taken only if the observed IP is of the same
//!   *scope* as the observer's (both public, both private — RFC 1918,
//!   CGNAT, link-local, unique local — or both loopback): a public peer
//!   that "sees" us at a private or unspecified IP is lying or confused,
//!   and an address agreed on by peers of one scope is one peers of that
//!   scope can reach; unspecified, multicast and broadcast IPs never count;
//! - the IP reported by the most distinct networks wins if they are at
//!   least `quorum`; a tie keeps the IP in use, else the smaller IP;
//! - a vote lasts [`VOTE_TTL`] (30 minutes; peers are asked again every
//!   few minutes) and at most [`MAX_VOTES`] observers are remembered (the
//!   oldest vote goes first).
//!
//! So an attacker cannot choose our address without controlling `quorum`
//! networks *and* outnumbering (in networks) the honest observers; what it
//! can do with that is make us announce an address where we cannot be
//! reached, which costs us inbound peers but not the ones we dial.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use p2p_core::{IpPrefix, PeerId};

/// How long an observation counts.
pub const VOTE_TTL: Duration = Duration::from_secs(30 * 60);
/// Observers remembered at most.
pub const MAX_VOTES: usize = 256;

/// Where an IP is reachable from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This host only.
    Loopback,
    /// A private network: RFC 1918, shared (CGNAT, 100.64/10),
    /// link-local, IPv6 unique local.
    Private,
    /// The Internet.
    Public,
}

/// The scope of `ip`; `None` for an IP no one can be reached at
/// (unspecified, multicast, broadcast).
pub fn scope(ip: IpAddr) -> Option<Scope> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() {
                None
            } else if v4.is_loopback() {
                Some(Scope::Loopback)
            } else if v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
            {
                Some(Scope::Private)
            } else {
                Some(Scope::Public)
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_unspecified() || v6.is_multicast() {
                None
            } else if v6.is_loopback() {
                Some(Scope::Loopback)
            } else if (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80 {
                Some(Scope::Private)
            } else {
                Some(Scope::Public)
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Vote {
    observed: IpAddr,
    network: IpPrefix,
    at: Instant,
}

/// Observations of our IP, and the one agreed on (see the module docs).
#[derive(Debug, Clone)]
pub struct ObservedIp {
    quorum: usize,
    votes: BTreeMap<PeerId, Vote>,
    current: Option<IpAddr>,
}

impl ObservedIp {
    /// No observation yet; an IP needs `quorum` distinct networks (0: never
    /// any IP).
    pub fn new(quorum: usize) -> Self {
        Self {
            quorum,
            votes: BTreeMap::new(),
            current: None,
        }
    }

    /// The IP agreed on, if any.
    pub fn current(&self) -> Option<IpAddr> {
        self.current
    }

    /// Observers whose vote counts now.
    pub fn votes(&self) -> usize {
        self.votes.len()
    }

    /// `observer`, which we see at `observer_ip`, sees us at `observed`.
    /// Returns whether the observation was taken (see the scope rule), and
    /// the new agreed IP if it changed.
    pub fn observe(
        &mut self,
        observer: PeerId,
        observer_ip: IpAddr,
        observed: IpAddr,
        now: Instant,
    ) -> (bool, Option<Option<IpAddr>>) {
        let observed = observed.to_canonical();
        let taken =
            self.quorum > 0 && scope(observed).is_some() && scope(observed) == scope(observer_ip);
        if taken {
            if self.votes.len() >= MAX_VOTES && !self.votes.contains_key(&observer) {
                let oldest = self
                    .votes
                    .iter()
                    .min_by_key(|(_, v)| v.at)
                    .map(|(peer, _)| *peer);
                if let Some(oldest) = oldest {
                    self.votes.remove(&oldest);
                }
            }
            self.votes.insert(
                observer,
                Vote {
                    observed,
                    network: IpPrefix::of(observer_ip),
                    at: now,
                },
            );
        }
        (taken, self.expire(now))
    }

    /// Forgets votes older than [`VOTE_TTL`]; returns the new agreed IP if
    /// it changed.
    pub fn expire(&mut self, now: Instant) -> Option<Option<IpAddr>> {
        self.votes
            .retain(|_, v| now.saturating_duration_since(v.at) < VOTE_TTL);
        let agreed = self.tally();
        (agreed != self.current).then(|| {
            self.current = agreed;
            agreed
        })
    }

    /// When the oldest vote expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.votes.values().map(|v| v.at + VOTE_TTL).min()
    }

    fn tally(&self) -> Option<IpAddr> {
        if self.quorum == 0 {
            return None;
        }
        let mut networks: BTreeMap<IpAddr, BTreeSet<IpPrefix>> = BTreeMap::new();
        for vote in self.votes.values() {
            networks
                .entry(vote.observed)
                .or_default()
                .insert(vote.network);
        }
        let best = networks.values().map(BTreeSet::len).max()?;
        if best < self.quorum {
            return None;
        }
        let tied: Vec<IpAddr> = networks
            .iter()
            .filter(|(_, n)| n.len() == best)
            .map(|(ip, _)| *ip)
            .collect();
        match self.current {
            Some(current) if tied.contains(&current) => Some(current),
            _ => tied.first().copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_core::Keypair;

    fn peer(n: u64) -> PeerId {
        Keypair::from_seed(n).peer_id()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn an_ip_is_agreed_once_quorum_networks_report_it() {
        let now = Instant::now();
        let mut observed = ObservedIp::new(3);
        let us = ip("203.0.113.7");
        assert_eq!(
            observed.observe(peer(1), ip("198.51.100.1"), us, now),
            (true, None)
        );
        // Another observer in the same /24 adds no network.
        assert_eq!(
            observed.observe(peer(2), ip("198.51.100.2"), us, now),
            (true, None)
        );
        assert_eq!(
            observed.observe(peer(3), ip("192.0.2.9"), us, now),
            (true, None)
        );
        assert_eq!(observed.current(), None);
        assert_eq!(
            observed.observe(peer(4), ip("8.8.4.4"), us, now),
            (true, Some(Some(us)))
        );
        assert_eq!(observed.current(), Some(us));
        // Votes expire: with fewer than quorum networks left, no IP.
        let later = now + VOTE_TTL / 2;
        observed.observe(peer(5), ip("1.1.1.1"), us, later);
        assert_eq!(observed.next_expiry(), Some(now + VOTE_TTL));
        // At now + TTL the first four are gone; 1.1.1.1's is one network.
        assert_eq!(observed.expire(now + VOTE_TTL), Some(None));
        assert_eq!(observed.votes(), 1);
        assert_eq!(observed.expire(later + VOTE_TTL), None);
        assert_eq!(observed.votes(), 0);
    }

    #[test]
    fn a_lying_minority_does_not_move_the_address() {
        let now = Instant::now();
        let mut observed = ObservedIp::new(3);
        let (us, lie) = (ip("203.0.113.7"), ip("192.0.2.66"));
        for (n, from) in ["1.0.0.1", "2.0.0.1", "3.0.0.1", "4.0.0.1"]
            .iter()
            .enumerate()
        {
            observed.observe(peer(n as u64), ip(from), us, now);
        }
        for (n, from) in ["5.0.0.1", "6.0.0.1", "7.0.0.1"].iter().enumerate() {
            observed.observe(peer(10 + n as u64), ip(from), lie, now);
        }
        assert_eq!(observed.current(), Some(us));
    }

    #[test]
    fn a_lying_majority_from_one_network_is_one_vote() {
        let now = Instant::now();
        let mut observed = ObservedIp::new(3);
        let (us, lie) = (ip("203.0.113.7"), ip("192.0.2.66"));
        // 100 identities in one /24, and 100 in one /48, say `lie`: two
        // networks.
        for n in 0..100u64 {
            observed.observe(peer(100 + n), ip(&format!("9.9.9.{n}")), lie, now);
            let v6 = ip(&format!("2001:db8:1:{n:x}::1"));
            observed.observe(peer(300 + n), v6, lie, now);
        }
        assert_eq!(observed.current(), None);
        for (n, from) in ["1.0.0.1", "2.0.0.1", "3.0.0.1"].iter().enumerate() {
            observed.observe(peer(n as u64), ip(from), us, now);
        }
        assert_eq!(observed.current(), Some(us));
        // A tie (a third network for `lie`) keeps the IP in use; a fourth
        // moves it: a majority of networks decides.
        observed.observe(peer(10), ip("5.0.0.1"), lie, now);
        assert_eq!(observed.current(), Some(us));
        observed.observe(peer(11), ip("6.0.0.1"), lie, now);
        assert_eq!(observed.current(), Some(lie));
    }

    #[test]
    fn observations_across_scopes_or_of_unusable_ips_are_not_taken() {
        let now = Instant::now();
        let mut observed = ObservedIp::new(1);
        // A public peer that sees us at a private, loopback or unspecified IP.
        for lie in [
            "10.0.0.5",
            "127.0.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "::",
            "fe80::1",
        ] {
            assert_eq!(
                observed.observe(peer(1), ip("198.51.100.1"), ip(lie), now),
                (false, None),
                "{lie}"
            );
        }
        // A peer on our LAN sees our LAN address; loopback sees loopback.
        assert_eq!(
            observed.observe(peer(2), ip("192.168.1.9"), ip("192.168.1.5"), now),
            (true, Some(Some(ip("192.168.1.5"))))
        );
        let mut local = ObservedIp::new(1);
        assert!(
            local
                .observe(peer(3), ip("127.0.0.1"), ip("127.0.0.1"), now)
                .0
        );
        // An IPv4-mapped IPv6 observation is the IPv4 address.
        let mut mapped = ObservedIp::new(1);
        mapped.observe(peer(4), ip("198.51.100.1"), ip("::ffff:203.0.113.7"), now);
        assert_eq!(mapped.current(), Some(ip("203.0.113.7")));
        // Quorum 0: off.
        let mut off = ObservedIp::new(0);
        assert_eq!(
            off.observe(peer(5), ip("1.0.0.1"), ip("2.0.0.1"), now),
            (false, None)
        );
    }

    #[test]
    fn observers_are_bounded_oldest_first() {
        let now = Instant::now();
        let mut observed = ObservedIp::new(1);
        for n in 0..(MAX_VOTES as u64 + 10) {
            let from = ip(&format!("{}.{}.0.1", 1 + n / 200, n % 200));
            observed.observe(
                peer(n),
                from,
                ip("203.0.113.7"),
                now + Duration::from_secs(n),
            );
        }
        assert_eq!(observed.votes(), MAX_VOTES);
    }
}
