//! Runs the gossip core at scale in testkit's simulator and prints RMR,
//! LDH and missed deliveries per broadcast (issue 6's scenarios).
//!
//! ```text
//! cargo run --release -p reactor-gossip-sim --bin gossip_sim -- \
//!     --nodes 10000 --rounds 10 --scenario single --seed 1 --csv out.csv
//! ```

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use reactor_gossip_sim::{Scenario, ScenarioConfig, run_scenario};
use testkit::sim::Table;

/// Gossip simulator: HyParView + Plumtree over seeded 10–50 ms links.
#[derive(Debug, Parser)]
struct Args {
    /// Nodes in the overlay.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Measured broadcasts (before the crash for crash80).
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// single | random | crash80.
    #[arg(long, default_value = "single")]
    scenario: Scenario,
    /// Seed of keys, joins, senders and latencies.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Writes every round as CSV here.
    #[arg(long)]
    csv: Option<std::path::PathBuf>,
    /// Broadcasts after the crash (crash80).
    #[arg(long, default_value_t = 20)]
    rounds_after_crash: usize,
    /// Unmeasured broadcasts that build the tree.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Seconds the overlay settles after the last join.
    #[arg(long, default_value_t = 60)]
    settle_secs: u64,
    /// Milliseconds between two joins.
    #[arg(long, default_value_t = 5)]
    join_spacing_ms: u64,
    /// Milliseconds between broadcasts (each is measured over this window).
    #[arg(long, default_value_t = 2000)]
    round_interval_ms: u64,
    /// Overrides plumtree.graft_timeout (ms).
    #[arg(long)]
    graft_timeout_ms: Option<u64>,
    /// Overrides plumtree.ihave_delay (ms).
    #[arg(long)]
    ihave_delay_ms: Option<u64>,
    /// Overrides plumtree.optimization_threshold (0: off).
    #[arg(long)]
    optimization_threshold: Option<u32>,
    /// Overrides hyparview.active_view_capacity.
    #[arg(long)]
    active_view: Option<usize>,
    /// Overrides hyparview.passive_view_capacity.
    #[arg(long)]
    passive_view: Option<usize>,
    /// Overrides hyparview.merge_probability.
    #[arg(long)]
    merge_probability: Option<f64>,
    /// Overrides estimate_interval (ms).
    #[arg(long)]
    estimate_interval_ms: Option<u64>,
    /// Overrides estimate_sketch_size (0: no size estimation).
    #[arg(long)]
    estimate_sketch_size: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = ScenarioConfig::new(args.scenario, args.nodes, args.rounds, args.seed);
    config.rounds_after_crash = args.rounds_after_crash;
    config.warmup_rounds = args.warmup;
    config.settle = Duration::from_secs(args.settle_secs);
    config.join_spacing = Duration::from_millis(args.join_spacing_ms);
    config.round_interval = Duration::from_millis(args.round_interval_ms);
    if let Some(ms) = args.graft_timeout_ms {
        config.gossip.plumtree.graft_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = args.ihave_delay_ms {
        config.gossip.plumtree.ihave_delay = Duration::from_millis(ms);
    }
    if let Some(t) = args.optimization_threshold {
        config.gossip.plumtree.optimization_threshold = t;
    }
    if let Some(n) = args.active_view {
        config.gossip.hyparview.active_view_capacity = n;
    }
    if let Some(n) = args.passive_view {
        config.gossip.hyparview.passive_view_capacity = n;
    }
    if let Some(p) = args.merge_probability {
        config.gossip.hyparview.merge_probability = p;
    }
    if let Some(ms) = args.estimate_interval_ms {
        config.gossip.estimate_interval = Duration::from_millis(ms);
    }
    if let Some(k) = args.estimate_sketch_size {
        config.gossip.estimate_sketch_size = k;
    }
    config.gossip.validate()?;

    let wall = Instant::now();
    let report = run_scenario(&config);
    let elapsed = wall.elapsed();

    println!(
        "scenario {:?}, {} nodes, seed {}, latency {:?}..{:?}",
        args.scenario, args.nodes, args.seed, config.sim.latency_min, config.sim.latency_max
    );
    let shape = |s: &reactor_gossip_sim::OverlayShape| {
        format!(
            "live {}, reachable {}, active view mean {:.2} (min {}), passive view mean {:.2}",
            s.live, s.reachable, s.mean_active, s.min_active, s.mean_passive
        )
    };
    println!("overlay before broadcasts: {}", shape(&report.overlay));
    println!("overlay at the end:        {}", shape(&report.overlay_end));
    println!();
    let table = report.table();
    print!("{}", table.to_text());
    println!();

    let mut summary = Table::new(&[
        "phase",
        "rounds",
        "mean_rmr",
        "max_ldh",
        "missed",
        "min_coverage",
    ]);
    for phase in ["warmup", "steady", "after-crash"] {
        let rounds: Vec<_> = report.phase(phase).collect();
        if rounds.is_empty() {
            continue;
        }
        let min_coverage = rounds.iter().map(|r| r.coverage()).fold(1.0, f64::min);
        summary.row(vec![
            phase.to_string(),
            rounds.len().to_string(),
            format!("{:.4}", report.mean_rmr(phase)),
            report.max_ldh(phase).to_string(),
            report.missed(phase).to_string(),
            format!("{:.4}", min_coverage),
        ]);
    }
    print!("{}", summary.to_text());
    if args.scenario == Scenario::Crash {
        println!(
            "survivors that knew no live peer at the crash (orphans): {} {:?}",
            report.orphans.len(),
            report.orphans
        );
    }
    println!(
        "duplicate deliveries {}, misbehaviour reports {}, simulated {:.1} s, {} events, wall {:.1} s",
        report.duplicate_deliveries,
        report.reports,
        report.simulated.as_secs_f64(),
        report.events,
        elapsed.as_secs_f64()
    );
    let mut sizes = Table::new(&[
        "size_estimate",
        "live",
        "mean",
        "min",
        "max",
        "mean_error",
        "worst_error",
    ]);
    for sample in &report.sizes {
        sizes.row(vec![
            sample.phase.to_string(),
            sample.live.to_string(),
            format!("{:.0}", sample.mean),
            format!("{:.0}", sample.min),
            format!("{:.0}", sample.max),
            format!(
                "{:.3}",
                (sample.mean - sample.live as f64).abs() / sample.live.max(1) as f64
            ),
            format!("{:.3}", sample.worst_error()),
        ]);
    }
    print!("{}", sizes.to_text());
    if let Some(path) = args.csv {
        std::fs::write(&path, table.to_csv())
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
