//! Shared by the network tests.

#![allow(dead_code)]

use p2p::Keypair;

/// splitmix64 of `seed + i`, as `testkit` derives node keys.
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Node `i`'s keypair in a testkit network built with `seed`.
///
/// The testkit does not hand out its nodes' keys (and a reactor cannot get
/// the router's), so this repeats its derivation; callers check the result
/// against `Network::peer_id`, so a change in the testkit fails loudly.
pub fn node_keypair(seed: u64, i: usize) -> Keypair {
    Keypair::from_seed(mix(seed, i as u64))
}

/// The seeds a test runs with: `default`, or the comma-separated list in
/// `GOSSIP_SEEDS` (a malformed list fails the test).
pub fn seeds(default: &[u64]) -> Vec<u64> {
    testkit::seeds("GOSSIP_SEEDS", default)
}
