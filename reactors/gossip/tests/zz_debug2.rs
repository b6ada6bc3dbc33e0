use reactor_gossip::sim::*;
#[test]
fn shape() {
    for seed in 1..=4 {
        let config = ScenarioConfig::new(Scenario::Single, 200, 1, seed);
        let r = run_scenario(&config);
        eprintln!("SHAPE seed {seed}: {:?}", r.overlay);
    }
}
