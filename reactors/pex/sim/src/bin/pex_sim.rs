//! Grows networks with peer exchange in the simulator and measures them.
//!
//! ```text
//! cargo run --release -p reactor-pex-sim --bin pex_sim -- --nodes 200,1000,5000 --seed 1
//! ```
//!
//! For each size: nodes start one by one, each configured with the seed
//! node's address only; pex and a model of the peer manager's dialer grow
//! the network. Then a share of the nodes crashes and the network heals.
//! Prints one table (and writes it as CSV if asked); its last three columns
//! (dials, failed dials, dials refused by a full node) count the whole run.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use reactor_pex_proto::PexConfig;
use reactor_pex_sim::{Scenario, Snapshot, run_scenario};
use testkit::sim::Table;

#[derive(Debug, Parser)]
#[command(about = "Simulate peer exchange: growth from one seed node, and healing after crashes")]
struct Args {
    /// Network sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "200,1000,5000")]
    nodes: Vec<usize>,
    /// Seed of keys, latencies and every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Outbound connections each node keeps.
    #[arg(long, default_value_t = 10)]
    outbound: usize,
    /// Inbound connections each node accepts.
    #[arg(long, default_value_t = 40)]
    max_inbound: usize,
    /// Share of the nodes that crash.
    #[arg(long, default_value_t = 0.3)]
    crash: f64,
    /// Milliseconds between two joins.
    #[arg(long, default_value_t = 100)]
    join_interval_ms: u64,
    /// Seconds the network runs after the last join, and after the crash.
    #[arg(long, default_value_t = 300)]
    settle_s: u64,
    /// Write the table as CSV here.
    #[arg(long)]
    csv: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut table = Table::new(&[
        "nodes",
        "phase",
        "all_min_peers_after_s",
        "connected_%",
        "coverage_mean_%",
        "coverage_min_%",
        "pex_msgs_per_node",
        "dials",
        "dial_failures",
        "refused_full",
    ]);
    for &nodes in &args.nodes {
        let scenario = Scenario {
            nodes,
            outbound: args.outbound,
            max_inbound: args.max_inbound,
            pex: PexConfig::default(),
            join_interval: Duration::from_millis(args.join_interval_ms),
            settle: Duration::from_secs(args.settle_s),
            crash_share: args.crash,
            seed: args.seed,
            ..Scenario::default()
        };
        let report = run_scenario(&scenario);
        let row = |phase: &str, after: Option<Duration>, s: &Snapshot| {
            vec![
                nodes.to_string(),
                phase.to_string(),
                after.map_or("never".into(), |d| format!("{:.1}", d.as_secs_f64())),
                format!("{:.1}", 100.0 * s.connected_share()),
                format!("{:.1}", 100.0 * s.mean_coverage),
                format!("{:.1}", 100.0 * s.min_coverage),
                format!("{:.1}", s.messages_per_node),
                report.net.dials.to_string(),
                report.net.dial_failures.to_string(),
                report.net.refused_full.to_string(),
            ]
        };
        table.row(row("grown", report.grown_after, &report.grown));
        table.row(row("healed", report.healed_after, &report.healed));
    }
    print!("{}", table.to_text());
    if let Some(path) = args.csv {
        std::fs::write(&path, table.to_csv())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
