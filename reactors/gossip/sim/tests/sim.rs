//! Small versions of the simulator scenarios (issue 6): the gossip core on
//! 200 nodes over seeded 10–50 ms links, several seeds. The large runs are
//! the `gossip_sim` binary's (see the crate docs for the commands).

mod common;

use reactor_gossip_sim::{Scenario, ScenarioConfig, ScenarioReport, run_scenario};

const NODES: usize = 200;

fn run(scenario: Scenario, seed: u64) -> ScenarioReport {
    let config = ScenarioConfig::new(scenario, NODES, 6, seed);
    let report = run_scenario(&config);
    assert_eq!(
        report.duplicate_deliveries, 0,
        "seed {seed}: a message reached an application twice"
    );
    assert_eq!(
        report.reports, 0,
        "seed {seed}: an honest node was reported"
    );
    assert_eq!(
        report.overlay.reachable, NODES,
        "seed {seed}: the overlay is connected"
    );
    assert!(
        report.overlay.min_active >= 1,
        "seed {seed}: {:?}",
        report.overlay
    );
    report
}

/// One sender: once the first broadcast has built the tree, every node
/// gets every message, almost always exactly once (RMR ≤ 0.1), within a
/// few hops of the sender.
#[test]
fn single_sender_delivers_everything_over_a_tree() {
    for seed in common::seeds(&[1, 2, 3]) {
        let report = run(Scenario::Single, seed);
        let table = report.table().to_text();
        assert_eq!(
            report.missed("warmup") + report.missed("steady"),
            0,
            "seed {seed}\n{table}"
        );
        assert!(report.mean_rmr("steady") <= 0.1, "seed {seed}\n{table}");
        assert!(report.max_ldh("steady") <= 12, "seed {seed}\n{table}");
        // Every node's estimate of the overlay's size, from the sketch of
        // the last complete epoch (128 slots: about 9 % error).
        let size = report.sizes.last().expect("sampled");
        assert!(size.worst_error() < 0.3, "seed {seed}: {size:?}");
    }
}

/// A random sender each round: the one tree serves every sender.
#[test]
fn random_senders_share_the_tree() {
    for seed in common::seeds(&[1, 2, 3]) {
        let report = run(Scenario::Random, seed);
        let table = report.table().to_text();
        assert_eq!(report.missed("steady"), 0, "seed {seed}\n{table}");
        assert!(report.mean_rmr("steady") <= 0.4, "seed {seed}\n{table}");
        assert!(report.max_ldh("steady") <= 16, "seed {seed}\n{table}");
    }
}

/// 80 % of the nodes crash at once. Once the survivors' routers have
/// noticed (10–25 s of pings) and HyParView has refilled the active views
/// from the passive ones, every survivor gets each broadcast — except the
/// orphans, survivors whose every known peer crashed, which no membership
/// protocol can reach without a new contact (at 10,000 nodes they are
/// under 0.5 %: see the `gossip_sim` figures in the crate docs).
#[test]
fn after_80_percent_crash_the_survivors_repair_the_overlay() {
    for seed in common::seeds(&[1, 2]) {
        let mut config = ScenarioConfig::new(Scenario::Crash, NODES, 3, seed);
        config.rounds_after_crash = 25;
        let report = run_scenario(&config);
        let table = report.table().to_text();
        assert_eq!(report.duplicate_deliveries, 0);
        let orphans = report.orphans.len();
        assert!(orphans <= 2, "seed {seed}: orphans {:?}", report.orphans);
        // Rounds 2 s apart: from 30 s after the crash on, repaired.
        let repaired: Vec<_> = report.phase("after-crash").skip(15).collect();
        assert!(!repaired.is_empty());
        for round in repaired
            .into_iter()
            .filter(|r| !report.orphans.contains(&r.sender))
        {
            assert!(
                round.missed <= orphans,
                "seed {seed}, round {}: {} missed, orphans {:?}\n{table}",
                round.round,
                round.missed,
                report.orphans
            );
        }
    }
}
