//! Peer exchange grows and heals a simulated network (small sizes; the
//! `pex_sim` binary runs the large ones).

use std::time::Duration;

use reactor_pex_sim::{Scenario, run_scenario};

fn small() -> Scenario {
    Scenario {
        nodes: 150,
        settle: Duration::from_secs(200),
        ..Scenario::default()
    }
}

#[test]
fn a_network_grows_from_one_seed_node_and_heals_after_a_third_crashes() {
    let report = run_scenario(&small());
    // Every node reaches `min_peers` connections, from nothing but the
    // seed's address, and knows a good share of the network.
    assert!(report.grown_after.is_some(), "{report:#?}");
    assert_eq!(report.grown.connected_share(), 1.0, "{report:#?}");
    assert!(report.grown.mean_coverage > 0.5, "{report:#?}");
    assert!(report.grown.min_coverage > 0.1, "{report:#?}");
    // A third crash: the survivors find enough live peers again.
    assert!(report.healed_after.is_some(), "{report:#?}");
    assert_eq!(report.healed.connected_share(), 1.0, "{report:#?}");
    assert!(report.healed.live < report.grown.live);
    // Pex stays cheap: a few dozen messages per node over minutes.
    assert!(report.healed.messages_per_node < 40.0, "{report:#?}");
}

#[test]
fn one_seed_gives_one_run() {
    let a = run_scenario(&Scenario {
        nodes: 60,
        ..small()
    });
    let b = run_scenario(&Scenario {
        nodes: 60,
        ..small()
    });
    assert_eq!(a.grown, b.grown);
    assert_eq!(a.healed, b.healed);
    assert_eq!(a.net, b.net);
    let c = run_scenario(&Scenario {
        nodes: 60,
        seed: 2,
        ..small()
    });
    assert_ne!(a.net, c.net, "another seed, another run");
}
