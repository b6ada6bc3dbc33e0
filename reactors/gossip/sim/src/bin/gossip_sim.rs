//! Runs the gossip core at scale in testkit's simulator and prints RMR,
//! LDH and missed deliveries per broadcast (issue 6's scenarios), with
//! iroh-gossip's definitions (see the crate docs).
//!
//! ```text
//! cargo run --release -p reactor-gossip-sim --bin gossip_sim -- \
//!     --nodes 10000 --rounds 10 --scenario single --seed 1 --csv out.csv
//! # as iroh-gossip's simulator runs it: 10 rounds, the first included,
//! # 1 s settle (20 x 50 ms), everyone joining through node 0 at once,
//! # each round until the last delivery (at most 5 s)
//! cargo run --release -p reactor-gossip-sim --bin gossip_sim -- \
//!     --nodes 10000 --warmup 1 --rounds 9 --scenario single --seed 1 \
//!     --settle-ms 1000 --bootstrap first --join-spacing-ms 0 \
//!     --round-end last-delivery --round-interval-ms 5000
//! ```

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use reactor_gossip_sim::{Bootstrap, RoundEnd, Scenario, ScenarioConfig, run_scenario};
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
    /// Broadcasts reported as the warmup phase (the first builds the
    /// tree); measured like the others.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Milliseconds the overlay settles after the last join (iroh's
    /// simulator: 20 x its largest latency, 1000 at 10-50 ms).
    #[arg(long, default_value_t = 60_000)]
    settle_ms: u64,
    /// Whom each node joins through: random (a random earlier node) or
    /// first (node 0, as iroh's simulator).
    #[arg(long, default_value = "random")]
    bootstrap: Bootstrap,
    /// Milliseconds between two joins.
    #[arg(long, default_value_t = 5)]
    join_spacing_ms: u64,
    /// Milliseconds between broadcasts (each is measured over this
    /// window, or until the last delivery with --round-end last-delivery).
    #[arg(long, default_value_t = 2000)]
    round_interval_ms: u64,
    /// When a round ends: window (after --round-interval-ms) or
    /// last-delivery (when every live node delivered, as iroh's
    /// simulator; at most --round-interval-ms).
    #[arg(long, default_value = "window")]
    round_end: RoundEnd,
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
    config.settle = Duration::from_millis(args.settle_ms);
    config.bootstrap = args.bootstrap;
    config.join_spacing = Duration::from_millis(args.join_spacing_ms);
    config.round_interval = Duration::from_millis(args.round_interval_ms);
    config.round_end = args.round_end;
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
        "scenario {:?}, {} nodes, seed {}, latency {:?}..{:?}, settle {:?}, bootstrap {:?} every {:?}, rounds end {:?} (at most {:?})",
        args.scenario,
        args.nodes,
        args.seed,
        config.sim.latency_min,
        config.sim.latency_max,
        config.settle,
        config.bootstrap,
        config.join_spacing,
        config.round_end,
        config.round_interval,
    );
    println!(
        "RMR = payload messages received / (nodes that delivered - 1) - 1; LDH = links past the first (iroh-gossip's definitions)"
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

    print!("{}", report.summary().to_text());
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
