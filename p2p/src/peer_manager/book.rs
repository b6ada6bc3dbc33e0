//! The address book's two tables, in the manner of Bitcoin's `addrman`
//! and CometBFT's address book: *new* holds peers we have heard of,
//! *tried* peers we have dialed successfully. Each table is an array of
//! buckets of at most `bucket_size` peers.
//!
//! - A new peer's bucket is chosen by the network (/16) of the peer that
//!   told us about it (its *source group*) and by its own address group:
//!   one source group reaches at most [`NEW_BUCKETS_PER_SOURCE`] buckets,
//!   whatever it sends.
//! - A tried peer's bucket is chosen by its address group: one group
//!   reaches at most [`TRIED_BUCKETS_PER_GROUP`] buckets.
//! - Every choice is a keyed hash (SHA-256) under a per-node secret drawn
//!   from the peer manager's seeded randomness, so an attacker cannot tell
//!   which bucket its addresses land in, nor aim at another's.
//!
//! The tables only place peers; what may displace what, and how dials
//! choose, is the peer manager's (`state.rs`).

use sha2::{Digest, Sha256};

use crate::address::{Host, PeerAddress};
use crate::identity::PeerId;
use crate::ip_prefix::IpGroup;

/// New-table buckets one source group can reach at most.
pub const NEW_BUCKETS_PER_SOURCE: usize = 16;
/// Tried-table buckets one address group can reach at most.
pub const TRIED_BUCKETS_PER_GROUP: usize = 4;

/// What addresses are grouped by: a network, for IPs; the registered
/// domain (last two labels), for DNS names; the peer itself for addresses
/// without a host (`memory://`), which name no network; and one group for
/// every address whose source a reactor did not name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Group {
    Ip(IpGroup),
    Name(String),
    Peer(PeerId),
    Unnamed,
}

impl Group {
    /// The group `address` is in.
    pub fn of_address(address: &PeerAddress) -> Self {
        match address.host_port() {
            Some((Host::Ip(ip), _)) => Group::Ip(IpGroup::of(ip)),
            Some((Host::Dns(name), _)) => {
                let labels: Vec<&str> = name.trim_end_matches('.').rsplit('.').take(2).collect();
                Group::Name(labels.into_iter().rev().collect::<Vec<_>>().join("."))
            }
            None => Group::Peer(address.peer),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Group::Ip(IpGroup::V4(ip)) => {
                out.push(1);
                out.extend_from_slice(&ip.octets());
            }
            Group::Ip(IpGroup::V6(ip)) => {
                out.push(2);
                out.extend_from_slice(&ip.octets());
            }
            Group::Name(name) => {
                out.push(3);
                out.extend_from_slice(&(name.len() as u32).to_be_bytes());
                out.extend_from_slice(name.as_bytes());
            }
            Group::Peer(peer) => {
                out.push(4);
                out.extend_from_slice(peer.as_bytes());
            }
            Group::Unnamed => out.push(5),
        }
    }
}

/// Which table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Table {
    New,
    Tried,
}

/// Where a peer sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub table: Table,
    pub bucket: usize,
}

/// The two tables. Buckets keep their peers in insertion order (oldest
/// first).
#[derive(Debug)]
pub(crate) struct Tables {
    key: [u8; 32],
    new: Vec<Vec<PeerId>>,
    tried: Vec<Vec<PeerId>>,
    bucket_size: usize,
}

impl Tables {
    /// Empty tables of the given shape (each number at least 1), keyed by
    /// `key`.
    pub fn new(
        key: [u8; 32],
        new_buckets: usize,
        tried_buckets: usize,
        bucket_size: usize,
    ) -> Self {
        Self {
            key,
            new: vec![Vec::new(); new_buckets.max(1)],
            tried: vec![Vec::new(); tried_buckets.max(1)],
            bucket_size: bucket_size.max(1),
        }
    }

    fn hash(&self, domain: &[u8], parts: &[&[u8]]) -> u64 {
        let mut hasher = Sha256::new();
        hasher.update(self.key);
        hasher.update(domain);
        for part in parts {
            hasher.update((part.len() as u32).to_be_bytes());
            hasher.update(part);
        }
        let digest = hasher.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }

    /// The new-table bucket of an address in `group` heard from `source`:
    /// one of at most [`NEW_BUCKETS_PER_SOURCE`] buckets for that source.
    pub fn new_bucket(&self, source: &Group, group: &Group) -> usize {
        let (mut s, mut g) = (Vec::new(), Vec::new());
        source.encode(&mut s);
        group.encode(&mut g);
        let per_source = NEW_BUCKETS_PER_SOURCE.min(self.new.len()) as u64;
        let inner = self.hash(b"new/inner", &[&g, &s]) % per_source;
        (self.hash(b"new", &[&s, &inner.to_be_bytes()]) % self.new.len() as u64) as usize
    }

    /// The tried-table bucket of `peer`, whose address is in `group`: one
    /// of at most [`TRIED_BUCKETS_PER_GROUP`] buckets for that group.
    pub fn tried_bucket(&self, group: &Group, peer: &PeerId) -> usize {
        let mut g = Vec::new();
        group.encode(&mut g);
        let per_group = TRIED_BUCKETS_PER_GROUP.min(self.tried.len()) as u64;
        let inner = self.hash(b"tried/inner", &[peer.as_bytes()]) % per_group;
        (self.hash(b"tried", &[&g, &inner.to_be_bytes()]) % self.tried.len() as u64) as usize
    }

    fn buckets(&self, table: Table) -> &Vec<Vec<PeerId>> {
        match table {
            Table::New => &self.new,
            Table::Tried => &self.tried,
        }
    }

    fn buckets_mut(&mut self, table: Table) -> &mut Vec<Vec<PeerId>> {
        match table {
            Table::New => &mut self.new,
            Table::Tried => &mut self.tried,
        }
    }

    /// The peers of a bucket, oldest first.
    pub fn bucket(&self, slot: Slot) -> &[PeerId] {
        self.buckets(slot.table)
            .get(slot.bucket)
            .map_or(&[], Vec::as_slice)
    }

    /// Whether a bucket holds `bucket_size` peers or more.
    pub fn is_full(&self, slot: Slot) -> bool {
        self.bucket(slot).len() >= self.bucket_size
    }

    pub fn push(&mut self, slot: Slot, peer: PeerId) {
        if let Some(bucket) = self.buckets_mut(slot.table).get_mut(slot.bucket) {
            bucket.push(peer);
        }
    }

    pub fn remove(&mut self, slot: Slot, peer: PeerId) {
        if let Some(bucket) = self.buckets_mut(slot.table).get_mut(slot.bucket) {
            bucket.retain(|p| *p != peer);
        }
    }

    /// Every bucket of `table` with its index, in order.
    pub fn iter(&self, table: Table) -> impl Iterator<Item = (usize, &[PeerId])> {
        self.buckets(table)
            .iter()
            .enumerate()
            .map(|(i, b)| (i, b.as_slice()))
    }

    /// Peers in `table`.
    pub fn len(&self, table: Table) -> usize {
        self.buckets(table).iter().map(Vec::len).sum()
    }

    /// Peers both tables hold when every bucket is full.
    pub fn capacity(&self) -> usize {
        (self.new.len() + self.tried.len()).saturating_mul(self.bucket_size)
    }

    /// Peers the tried table holds when every bucket is full.
    pub fn tried_capacity(&self) -> usize {
        self.tried.len().saturating_mul(self.bucket_size)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use std::collections::BTreeSet;
    use std::net::IpAddr;

    fn ip_group(a: u8, b: u8) -> Group {
        Group::Ip(IpGroup::of(IpAddr::from([a, b, 1, 1])))
    }

    #[test]
    fn one_source_reaches_few_new_buckets_and_one_group_few_tried_ones() {
        let tables = Tables::new([7; 32], 256, 64, 32);
        let source = ip_group(66, 1);
        let reached: BTreeSet<usize> = (0..=255u8)
            .flat_map(|a| (0..8u8).map(move |b| (a, b)))
            .map(|(a, b)| tables.new_bucket(&source, &ip_group(a, b)))
            .collect();
        assert!(reached.len() <= NEW_BUCKETS_PER_SOURCE, "{reached:?}");
        assert!(reached.len() >= NEW_BUCKETS_PER_SOURCE / 2, "{reached:?}");
        let sources: BTreeSet<usize> = (0..=255u8)
            .map(|a| tables.new_bucket(&ip_group(a, 0), &ip_group(9, 9)))
            .collect();
        assert!(sources.len() > 100, "sources spread: {}", sources.len());

        let group = ip_group(66, 1);
        let tried: BTreeSet<usize> = (0..500)
            .map(|n| tables.tried_bucket(&group, &Keypair::from_seed(n).peer_id()))
            .collect();
        assert!(tried.len() <= TRIED_BUCKETS_PER_GROUP, "{tried:?}");
    }

    #[test]
    fn the_key_decides_the_buckets() {
        let a = Tables::new([1; 32], 256, 64, 32);
        let b = Tables::new([2; 32], 256, 64, 32);
        let differ = (0..=255u8)
            .filter(|x| {
                let (s, g) = (ip_group(*x, 1), ip_group(1, *x));
                a.new_bucket(&s, &g) != b.new_bucket(&s, &g)
            })
            .count();
        assert!(differ > 200, "{differ}");
    }

    #[test]
    fn names_group_by_their_last_two_labels_and_memory_by_peer() {
        let p = Keypair::from_seed(1).peer_id();
        let addr = |t: String| t.parse::<PeerAddress>().unwrap();
        assert_eq!(
            Group::of_address(&addr(format!("tcp://{p}@a.b.Example.org:1"))),
            Group::Name("example.org".into())
        );
        assert_eq!(Group::of_address(&PeerAddress::memory(p)), Group::Peer(p));
        assert_eq!(
            Group::of_address(&addr(format!("quic://{p}@[2001:db8:5::1]:1"))),
            Group::Ip(IpGroup::of("2001:db8::".parse().unwrap()))
        );
    }
}
