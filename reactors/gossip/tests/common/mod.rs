//! Shared by the network tests.

#![allow(dead_code)]

/// The seeds a test runs with: `default`, or the comma-separated list in
/// `GOSSIP_SEEDS` (a malformed list fails the test).
pub fn seeds(default: &[u64]) -> Vec<u64> {
    testkit::seeds("GOSSIP_SEEDS", default)
}

/// `n` nodes on a ring (so the graph is connected) plus `chords` random
/// chords per node, drawn from `seed`: the links of a test network.
pub fn ring_with_chords(n: usize, chords: usize, seed: u64) -> Vec<(usize, usize)> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(seed);
    let mut pairs = std::collections::BTreeSet::new();
    for i in 0..n {
        pairs.insert((i, (i + 1) % n));
        for _ in 0..chords {
            let j = rng.random_range(0..n);
            if j != i && !pairs.contains(&(j, i)) {
                pairs.insert((i, j));
            }
        }
    }
    pairs.into_iter().collect()
}
