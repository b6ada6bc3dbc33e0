//! Shared by the simulator tests.

/// The seeds a test runs with: `default`, or the comma-separated list in
/// `GOSSIP_SEEDS` (a malformed list fails the test).
pub fn seeds(default: &[u64]) -> Vec<u64> {
    testkit::seeds("GOSSIP_SEEDS", default)
}
