//! Grows small-world rings in the simulator and measures them.
//!
//! ```text
//! cargo run --release -p reactor-ring-sim --bin ring_sim -- \
//!     --nodes 300,3000,10000 --seed 1 --csv out.csv --svg hops.svg
//! ```
//!
//! For each size: every node joins through node 0 with the real protocol
//! (negotiation, connect requests, maintenance), the ring settles, and
//! random pairs are routed (`built`; exact routes by default: delivered
//! only at the target). Then, over the churn window, 10 % of the nodes
//! crash and as many new ones join while pairs are routed
//! (`during_churn`; crashes are noticed with the router's keepalive
//! timing); the ring repairs itself and is measured again (`after_churn`).
//! Pairs are drawn among every live node started, joined or still joining;
//! a pair with a node still joining counts as a failure (`not_joined`).
//!
//! Every row says the parameters its figures depend on: the degree
//! asked for (`target-max`), hops to live, the lookahead (hops beyond a
//! neighbor that a routing step sees: 1 with neighbor lists, 0 plain
//! greedy) and the routes' mode (`exact` backtracks at dead ends, `greedy`
//! stops where no neighbor is closer). `--degree 15-30 --htl 64
//! --lookahead 0 --routes greedy` comes closest to freenet-core's topology
//! simulator (`crates/topology-sim`: degree 10–20 up to 3,000 peers, 15–30
//! above; plain greedy; hops to live 5·⌊log₂ N⌋).
//!
//! Prints a table (and writes it as CSV; `sim_s` is the simulated time and
//! `wall_s` the wall time from the start of that size's run to the end of
//! the row's measurement), writes an SVG histogram of hops for the largest
//! size, and fits the growth of mean hops against ln N and ln² N.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use reactor_ring::{RingConfig, RouteMode};
use reactor_ring_sim::{Measurement, Scenario, run_scenario};
use testkit::sim::{Table, svg_bars};

#[derive(Debug, Parser)]
#[command(about = "Simulate the small-world ring and measure routing")]
struct Args {
    /// Ring sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "300,3000,10000")]
    nodes: Vec<usize>,
    /// Seed of keys, latencies and every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Neighbors a node asks for and keeps at most, `TARGET-MAX`.
    #[arg(long, default_value = "20-30", value_parser = parse_degree)]
    degree: (usize, usize),
    /// Hops to live of the measured routes (at most 64).
    #[arg(long, default_value_t = 40)]
    htl: u8,
    /// Hops beyond a neighbor a routing step sees: 1 (neighbor lists) or
    /// 0 (plain greedy).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    lookahead: u8,
    /// How measured routes end: `exact` (only at the target, backtracking
    /// at dead ends) or `greedy` (where no neighbor is closer; a success
    /// only at the target).
    #[arg(long, default_value = "exact", value_parser = ["exact", "greedy"])]
    routes: String,
    /// Random pairs routed per measurement (default: N, at least 2,000).
    #[arg(long)]
    pairs: Option<usize>,
    /// Share of nodes that crash (and join) in the churn phase.
    #[arg(long, default_value_t = 0.1)]
    churn: f64,
    /// Seconds over which the churn phase's crashes, joins and routes are
    /// spread.
    #[arg(long, default_value_t = 60)]
    churn_window_s: u64,
    /// Milliseconds between two joins (fractions allowed).
    #[arg(long, default_value_t = 5.0)]
    join_interval_ms: f64,
    /// Seconds the ring runs after the last join, and after the churn.
    #[arg(long, default_value_t = 60)]
    settle_s: u64,
    /// Write the table as CSV here.
    #[arg(long)]
    csv: Option<std::path::PathBuf>,
    /// Write the hop histogram of the largest size as SVG here.
    #[arg(long)]
    svg: Option<std::path::PathBuf>,
}

/// `TARGET-MAX`, e.g. `15-30`.
fn parse_degree(text: &str) -> Result<(usize, usize), String> {
    let (target, max) = text
        .split_once('-')
        .ok_or_else(|| format!("expected TARGET-MAX, e.g. 20-30; got {text:?}"))?;
    let number = |s: &str| {
        s.trim()
            .parse::<usize>()
            .map_err(|e| format!("{s:?} in {text:?}: {e}"))
    };
    Ok((number(target)?, number(max)?))
}

/// What the figures of a row depend on.
struct Parameters {
    degree: (usize, usize),
    htl: u8,
    lookahead: u8,
    routes: &'static str,
}

fn row(table: &mut Table, n: usize, phase: &str, p: &Parameters, m: &Measurement, wall: Duration) {
    let r = &m.routes;
    let t = &m.topology;
    table.row(vec![
        n.to_string(),
        phase.to_string(),
        format!("{}-{}", p.degree.0, p.degree.1),
        p.htl.to_string(),
        p.lookahead.to_string(),
        p.routes.to_string(),
        t.nodes.to_string(),
        m.joining.to_string(),
        r.sampled.to_string(),
        r.not_joined.to_string(),
        format!("{:.3}", r.success_rate() * 100.0),
        format!("{:.2}", r.mean_hops()),
        r.quantile(0.99).to_string(),
        r.hops.last().copied().unwrap_or(0).to_string(),
        format!("{:.1}", t.degree_mean),
        format!("{}-{}", t.degree_min, t.degree_max),
        format!("{:.1}", t.short_links() * 100.0),
        histogram(&t.link_lengths),
        format!("{:.1}", t.nearest3 * 100.0),
        format!("{:.1}", t.adjacent * 100.0),
        t.components.to_string(),
        format!("{:.0}", m.at.as_secs_f64()),
        format!("{:.1}", wall.as_secs_f64()),
    ]);
}

/// The link-length histogram as percentages, `|`-separated.
fn histogram(bins: &[usize; 5]) -> String {
    let total = bins.iter().sum::<usize>().max(1) as f64;
    bins.iter()
        .map(|b| format!("{:.1}", *b as f64 * 100.0 / total))
        .collect::<Vec<_>>()
        .join("|")
}

/// Least squares of `y = a + b·x`: `(a, b, residual sum of squares)`.
fn fit(points: &[(f64, f64)]) -> (f64, f64, f64) {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let a = my - b * mx;
    let rss = points.iter().map(|(x, y)| (y - a - b * x).powi(2)).sum();
    (a, b, rss)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut table = Table::new(&[
        "n",
        "phase",
        "degree_cfg",
        "htl",
        "lookahead",
        "routes",
        "members",
        "joining",
        "pairs",
        "not_joined",
        "success_%",
        "mean_hops",
        "p99_hops",
        "max_hops",
        "degree",
        "degree_range",
        "links<0.1_%",
        "link_lengths_%(<1e-4|<1e-3|<1e-2|<0.1|>=0.1)",
        "nearest3_%",
        "succ+pred_%",
        "components",
        "sim_s",
        "wall_s",
    ]);
    let parameters = Parameters {
        degree: args.degree,
        htl: args.htl,
        lookahead: args.lookahead,
        routes: if args.routes == "greedy" {
            "greedy"
        } else {
            "exact"
        },
    };
    let config = RingConfig {
        target_degree: args.degree.0,
        max_degree: args.degree.1,
        max_htl: args.htl,
        lookahead: args.lookahead == 1,
        ..RingConfig::default()
    };
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("ring settings: {e}"))?;
    let mut growth = Vec::new();
    let mut largest = None;
    for &n in &args.nodes {
        let scenario = Scenario {
            nodes: n,
            seed: args.seed,
            config: config.clone(),
            join_interval: Duration::from_secs_f64(args.join_interval_ms.max(0.0) / 1000.0),
            settle: Duration::from_secs(args.settle_s),
            pairs: args.pairs.unwrap_or(n.max(2000)),
            route_mode: if parameters.routes == "greedy" {
                RouteMode::Closest
            } else {
                RouteMode::Exact
            },
            churn: args.churn,
            churn_window: Duration::from_secs(args.churn_window_s),
            repair: Duration::from_secs(args.settle_s),
        };
        let wall = Instant::now();
        let report = run_scenario(&scenario);
        let elapsed = wall.elapsed();
        let p = &parameters;
        row(&mut table, n, "built", p, &report.built, report.built_wall);
        if let Some(during) = &report.during_churn {
            row(&mut table, n, "during_churn", p, during, report.during_wall);
        }
        if let Some(churned) = &report.churned {
            row(&mut table, n, "after_churn", p, churned, elapsed);
        }
        eprintln!(
            "n={n}: {} messages, {} unjoined, {} overload disconnects, {} locations refused, wall {:.1}s",
            report.messages,
            report.unjoined,
            report.overloads,
            report.locations_refused,
            elapsed.as_secs_f64()
        );
        eprintln!("n={n}: totals {:?}", report.totals);
        eprintln!("n={n}: network {:?}", report.net);
        growth.push((n as f64, report.built.routes.mean_hops()));
        largest = Some((n, report.built.routes.clone()));
    }
    print!("{}", table.to_text());
    if growth.len() >= 2 {
        let ln: Vec<(f64, f64)> = growth.iter().map(|(n, h)| (n.ln(), *h)).collect();
        let ln2: Vec<(f64, f64)> = growth.iter().map(|(n, h)| (n.ln().powi(2), *h)).collect();
        let (a1, b1, r1) = fit(&ln);
        let (a2, b2, r2) = fit(&ln2);
        println!("growth of mean hops with N:");
        println!("  hops = {a1:.3} + {b1:.3}·ln N     (residual sum of squares {r1:.4})");
        println!("  hops = {a2:.3} + {b2:.4}·ln² N    (residual sum of squares {r2:.4})");
        for (n, h) in &growth {
            println!(
                "  N={n:>7}: mean {h:.3} hops, hops/ln N = {:.3}, hops/ln² N = {:.4}",
                h / n.ln(),
                h / n.ln().powi(2)
            );
        }
    }
    if let Some(path) = &args.csv {
        std::fs::write(path, table.to_csv()).with_context(|| format!("writing {path:?}"))?;
    }
    if let (Some(path), Some((n, routes))) = (&args.svg, largest) {
        let bars: Vec<(String, f64)> = routes
            .histogram()
            .into_iter()
            .enumerate()
            .map(|(h, count)| (h.to_string(), count as f64))
            .collect();
        let svg = svg_bars(
            &format!("Hops of exact routes between random pairs, N = {n}"),
            "hops",
            &bars,
        );
        std::fs::write(path, svg).with_context(|| format!("writing {path:?}"))?;
    }
    Ok(())
}
