//! Switchyard's QUIC transport against raw quinn and rust-libp2p 0.57's
//! QUIC transport (`libp2p-stream`), on loopback, every peer in this
//! process, on one multi-thread tokio runtime with two worker threads:
//!
//! 1. bulk throughput of 64 KiB messages on one channel / stream;
//! 2. one-way rate of 128-byte messages through each stack's message API;
//! 3. round-trip latency of 128-byte ping-pong, p50 and p99;
//! 4. connection setup, dial to first message delivered, median.
//!
//! What each stack does exactly is in the modules of
//! `switchyard_quic_compare` and in bench/README.md. The layout, the
//! message and the report are `tcp_compare`'s (`switchyard_bench::compare`).
//!
//! The machine this runs on is usually shared, so each measurement runs in
//! `--rounds` rounds (default 3), the stacks taking turns within a round;
//! every figure is the median over the rounds, printed with the range.
//! Before the first round of (1), (2) and (4) each stack runs once
//! unrecorded (`--warmup` seconds, or 5 setups); (3) starts every run with
//! 1,000 unrecorded round trips.
//!
//! Options: `--secs S` (length of each throughput and ping-pong run,
//! default 2), `--setups N` (connection setups per stack and round, default
//! 50), `--rounds N` (default 3), `--warmup S` (default 0.5), `--only LIST`
//! (comma-separated of `bulk`, `rate`, `ping`, `setup`; default all),
//! `--stacks LIST` (comma-separated of `switchyard`, `raw`, `libp2p`;
//! default all; for profiling one stack at a time), `--quick` (a smoke run
//! of a few seconds: `--secs 0.25 --setups 5 --rounds 1 --warmup 0.1`;
//! options after it override it).

use std::time::Duration;

use anyhow::{Context, bail};
use switchyard_bench::compare::report::{Percentiles, Report, Row, Series, show};
use switchyard_bench::compare::{BULK_LEN, PingPlan, SMALL_ENCODED, SMALL_LEN, Throughput};
use switchyard_quic_compare::{raw, rust_libp2p, switchyard};

struct Options {
    secs: f64,
    setups: usize,
    rounds: usize,
    warmup: f64,
    bulk: bool,
    rate: bool,
    ping: bool,
    setup: bool,
    stacks: Stacks,
}

/// Which stacks run.
#[derive(Clone, Copy)]
struct Stacks {
    switchyard: bool,
    raw: bool,
    libp2p: bool,
}

impl Stacks {
    /// The selected stacks, in the order they take turns.
    fn selected(self) -> Vec<Stack> {
        [
            (Stack::Raw, self.raw),
            (Stack::Libp2p, self.libp2p),
            (Stack::Switchyard, self.switchyard),
        ]
        .into_iter()
        .filter(|s| s.1)
        .map(|s| s.0)
        .collect()
    }
}

/// One of the three stacks compared.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stack {
    Raw,
    Libp2p,
    Switchyard,
}

impl Stack {
    /// Index of the stack's figures in `[raw, libp2p, switchyard]`.
    fn index(self) -> usize {
        self as usize
    }
}

fn parse_args() -> anyhow::Result<Options> {
    let mut o = Options {
        secs: 2.0,
        setups: 50,
        rounds: 3,
        warmup: 0.5,
        bulk: true,
        rate: true,
        ping: true,
        setup: true,
        stacks: Stacks {
            switchyard: true,
            raw: true,
            libp2p: true,
        },
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .map(|v| v.replace('_', ""))
                .with_context(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--secs" => o.secs = value()?.parse().context("--secs")?,
            "--setups" => o.setups = value()?.parse().context("--setups")?,
            "--rounds" => o.rounds = value()?.parse().context("--rounds")?,
            "--warmup" => o.warmup = value()?.parse().context("--warmup")?,
            "--quick" => (o.secs, o.setups, o.rounds, o.warmup) = (0.25, 5, 1, 0.1),
            "--only" => {
                let list = value()?;
                let has = |name: &str| list.split(',').any(|s| s == name);
                (o.bulk, o.rate, o.ping, o.setup) =
                    (has("bulk"), has("rate"), has("ping"), has("setup"));
            }
            "--stacks" => {
                let list = value()?;
                let has = |name: &str| list.split(',').any(|s| s == name);
                o.stacks = Stacks {
                    switchyard: has("switchyard"),
                    raw: has("raw"),
                    libp2p: has("libp2p"),
                };
            }
            // `cargo bench` passes this to every target.
            "--bench" => {}
            "-h" | "--help" => {
                println!(
                    "quic_compare [--quick] [--secs S] [--setups N] [--rounds N] [--warmup S] \
                     [--only bulk,rate,ping,setup] [--stacks switchyard,raw,libp2p]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if o.secs <= 0.0 || o.setups == 0 || o.rounds == 0 || o.warmup < 0.0 {
        bail!("--secs, --setups and --rounds must be positive, --warmup not negative");
    }
    Ok(o)
}

/// Send queue and credit window of the bulk channel, in messages (16 MiB of
/// 64 KiB messages).
const BULK_WINDOW: usize = 256;
/// Send queue and credit window of the small-message channel.
const SMALL_WINDOW: usize = 1024;
/// Raw quinn hands quinn a batch once it holds this much (bulk, small
/// messages).
const RAW_BULK_BATCH: usize = 256 * 1024;
const RAW_SMALL_BATCH: usize = 64 * 1024;
/// Unrecorded setups per stack before the first round of (4).
const WARMUP_SETUPS: usize = 5;

struct Plan {
    secs: Duration,
    warmup: Duration,
    rounds: usize,
    setups: usize,
    stacks: Stacks,
}

/// The targets: Switchyard's bulk throughput at least these
/// multiples of raw quinn's and libp2p's; its setup median at most this
/// multiple of libp2p's.
const BULK_VS_RAW: f64 = 0.8;
const BULK_VS_LIBP2P: f64 = 1.5;
const SETUP_VS_LIBP2P: f64 = 0.5;

/// Which stack a target compares Switchyard with.
#[derive(Clone, Copy)]
enum Against {
    Raw,
    Libp2p,
}

/// One of the targets: Switchyard's figure against a multiple of
/// another stack's.
struct Target {
    what: &'static str,
    against: Against,
    bound: f64,
    /// Whether the ratio must be at least (throughput) or at most (time)
    /// the bound.
    at_least: bool,
}

const BULK_TARGETS: &[Target] = &[
    Target {
        what: "(1) bulk throughput ≥ 0.8× raw quinn",
        against: Against::Raw,
        bound: BULK_VS_RAW,
        at_least: true,
    },
    Target {
        what: "(1) bulk throughput ≥ 1.5× libp2p QUIC",
        against: Against::Libp2p,
        bound: BULK_VS_LIBP2P,
        at_least: true,
    },
];

const SETUP_TARGETS: &[Target] = &[Target {
    what: "(4) setup median ≤ 0.5× libp2p QUIC",
    against: Against::Libp2p,
    bound: SETUP_VS_LIBP2P,
    at_least: false,
}];

/// The table, and each target judged: (target, ratio, met).
#[derive(Default)]
struct Results {
    report: Report,
    verdicts: Vec<(&'static str, f64, bool)>,
}

impl Results {
    /// Adds `row` to the table and judges `targets` on its figures.
    fn row(&mut self, row: Row, targets: &[Target]) {
        for t in targets {
            let other = match t.against {
                Against::Raw => row.raw,
                Against::Libp2p => row.libp2p,
            };
            if let Some(ratio) = row.switchyard.zip(other).map(|(sy, other)| sy / other) {
                let met = if t.at_least {
                    ratio >= t.bound
                } else {
                    ratio <= t.bound
                };
                self.verdicts.push((t.what, ratio, met));
            }
        }
        self.report.rows.push(row);
    }

    /// The table, the `RESULT` lines, then one line per target.
    fn print(&self) {
        self.report.print("raw quinn");
        if self.verdicts.is_empty() {
            return;
        }
        println!();
        println!("targets (issue 4):");
        for (what, ratio, met) in &self.verdicts {
            let verdict = if *met { "met" } else { "MISSED" };
            println!("  {what:<40} {ratio:>5.2}×  {verdict}");
        }
    }
}

fn main() -> anyhow::Result<()> {
    let options = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    println!(
        "quic_compare: Switchyard QUIC vs raw quinn vs rust-libp2p 0.57 (quic-v1, libp2p-stream); loopback, one tokio runtime, 2 worker threads"
    );
    println!("{}", switchyard_bench::machine::describe());
    println!(
        "available parallelism: {}; {} s per run, {} setups per stack and round, {} rounds (figures are medians over rounds), {} s warm-up",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        options.secs,
        options.setups,
        options.rounds,
        options.warmup
    );
    let plan = Plan {
        secs: Duration::from_secs_f64(options.secs),
        warmup: Duration::from_secs_f64(options.warmup),
        rounds: options.rounds,
        setups: options.setups,
        stacks: options.stacks,
    };
    // Everything runs in a spawned task so that it runs on the two workers
    // (the `block_on` thread would be a third).
    let results = runtime.block_on(async move {
        tokio::spawn(async move {
            let mut results = Results::default();
            if options.bulk {
                bulk(&plan, &mut results).await?;
            }
            if options.rate {
                rate(&plan, &mut results).await?;
            }
            if options.ping {
                ping(&plan, &mut results).await?;
            }
            if options.setup {
                setup(&plan, &mut results).await?;
            }
            anyhow::Ok(results)
        })
        .await?
    })?;
    results.print();
    Ok(())
}

/// What one one-way measurement runs and how it is judged.
struct OneWay {
    len: usize,
    window: usize,
    raw_batch: usize,
    prefix: &'static str,
    label: &'static str,
    unit: &'static str,
    figure: fn(&Throughput) -> f64,
    target: &'static str,
    check: Option<fn(f64, f64, f64) -> bool>,
    targets: &'static [Target],
}

/// One one-way run of `stack`.
async fn run_one_way(stack: Stack, m: &OneWay, duration: Duration) -> anyhow::Result<Throughput> {
    match stack {
        Stack::Raw => raw::one_way(m.len, duration, m.raw_batch).await,
        Stack::Libp2p => rust_libp2p::one_way(m.len, duration).await,
        Stack::Switchyard => switchyard::one_way(m.len, m.window, duration).await,
    }
}

/// Runs one-way runs on every selected stack: one unrecorded warm-up run
/// each, then `plan.rounds` rounds.
async fn one_way(plan: &Plan, out: &mut Results, m: OneWay) -> anyhow::Result<()> {
    let stacks = plan.stacks;
    let mut series = [
        Series::new(format!("raw quinn ({} KiB batches)", m.raw_batch / 1024)),
        Series::new("libp2p (one write each)"),
        Series::new("switchyard"),
    ];
    if !plan.warmup.is_zero() {
        for stack in stacks.selected() {
            let t = run_one_way(stack, &m, plan.warmup).await?;
            show(0, &format!("{} (warm-up)", series[stack.index()].name), &t);
        }
    }
    for round in 1..=plan.rounds {
        for stack in stacks.selected() {
            let t = run_one_way(stack, &m, plan.secs).await?;
            let series = &mut series[stack.index()];
            show(round, &series.name, &t);
            series.values.push((m.figure)(&t));
        }
    }
    println!("  medians over {} rounds:", plan.rounds);
    for s in &series {
        s.summary(m.unit);
    }
    let [raw, libp2p, ours] = &series;
    let prefix = m.prefix;
    out.report
        .result(&format!("{prefix}_raw_quinn"), raw.median(), m.unit);
    out.report
        .result(&format!("{prefix}_libp2p"), libp2p.median(), m.unit);
    out.report
        .result(&format!("{prefix}_switchyard"), ours.median(), m.unit);
    out.row(
        Row {
            figure: m.label.to_string(),
            unit: m.unit,
            switchyard: ours.median(),
            raw: raw.median(),
            libp2p: libp2p.median(),
            target: m.target,
            check: m.check,
        },
        m.targets,
    );
    Ok(())
}

async fn bulk(plan: &Plan, out: &mut Results) -> anyhow::Result<()> {
    println!();
    println!(
        "== (1) bulk: {BULK_LEN}-byte payloads, one channel/stream, {} s each ==",
        plan.secs.as_secs_f64()
    );
    let m = OneWay {
        len: BULK_LEN,
        window: BULK_WINDOW,
        raw_batch: RAW_BULK_BATCH,
        prefix: "bulk",
        label: "(1) bulk 64 KiB",
        unit: "MB/s",
        figure: Throughput::mb_per_sec,
        target: "≥ 0.8× raw, ≥ 1.5× libp2p",
        check: Some(|sy, raw, libp2p| sy >= BULK_VS_RAW * raw && sy >= BULK_VS_LIBP2P * libp2p),
        targets: BULK_TARGETS,
    };
    one_way(plan, out, m).await
}

async fn rate(plan: &Plan, out: &mut Results) -> anyhow::Result<()> {
    println!();
    println!(
        "== (2) one-way rate: {SMALL_ENCODED}-byte messages through the message API, {} s each ==",
        plan.secs.as_secs_f64()
    );
    let m = OneWay {
        len: SMALL_LEN,
        window: SMALL_WINDOW,
        raw_batch: RAW_SMALL_BATCH,
        prefix: "rate",
        label: "(2) 128 B messages",
        unit: "msg/s",
        figure: Throughput::messages_per_sec,
        target: "",
        check: None,
        targets: &[],
    };
    one_way(plan, out, m).await
}

async fn ping(plan: &Plan, out: &mut Results) -> anyhow::Result<()> {
    println!();
    println!(
        "== (3) ping-pong: {SMALL_ENCODED}-byte messages, 1,000 warm-up round trips, then {} s or 200,000 samples ==",
        plan.secs.as_secs_f64()
    );
    let ping = PingPlan {
        warmup: 1000,
        duration: plan.secs,
        max: 200_000,
    };
    let q = (50.0, 99.0);
    let (mut raw, mut libp2p, mut ours) = (
        Percentiles::new("raw_quinn"),
        Percentiles::new("libp2p"),
        Percentiles::new("switchyard"),
    );
    for round in 1..=plan.rounds {
        if plan.stacks.raw {
            raw.add(round, raw::ping_pong(SMALL_LEN, ping).await?, q);
        }
        if plan.stacks.libp2p {
            libp2p.add(round, rust_libp2p::ping_pong(SMALL_LEN, ping).await?, q);
        }
        if plan.stacks.switchyard {
            ours.add(round, switchyard::ping_pong(SMALL_LEN, ping).await?, q);
        }
    }
    for (what, pick) in [("p50", 0), ("p99", 1)] {
        println!("  {what}, medians over {} rounds:", plan.rounds);
        for p in [&raw, &libp2p, &ours] {
            let series = if pick == 0 { &p.lo } else { &p.hi };
            series.summary("µs");
            out.report.result(
                &format!("ping_{what}_{}", series.name),
                series.median(),
                "us",
            );
        }
    }
    let median = |p: &Percentiles, lo: bool| if lo { p.lo.median() } else { p.hi.median() };
    for (figure, lo) in [("p50", true), ("p99", false)] {
        let row = Row {
            figure: format!("(3) ping-pong {figure}"),
            unit: "µs",
            switchyard: median(&ours, lo),
            raw: median(&raw, lo),
            libp2p: median(&libp2p, lo),
            target: "",
            check: None,
        };
        out.row(row, &[]);
    }
    Ok(())
}

/// `n` setups of `stack`.
async fn run_setups(stack: Stack, n: usize) -> anyhow::Result<Vec<u64>> {
    match stack {
        Stack::Raw => raw::setup(SMALL_LEN, n).await,
        Stack::Libp2p => rust_libp2p::setup(SMALL_LEN, n).await,
        Stack::Switchyard => switchyard::setup(SMALL_LEN, n).await,
    }
}

async fn setup(plan: &Plan, out: &mut Results) -> anyhow::Result<()> {
    let n = plan.setups;
    println!();
    println!(
        "== (4) connection setup: dial to first {SMALL_ENCODED}-byte message delivered, {n} fresh setups per stack and round =="
    );
    let q = (50.0, 90.0);
    let mut stacks = [
        Percentiles::new("raw_quinn"),
        Percentiles::new("libp2p"),
        Percentiles::new("switchyard"),
    ];
    if !plan.warmup.is_zero() {
        for stack in plan.stacks.selected() {
            run_setups(stack, WARMUP_SETUPS).await?;
        }
    }
    for round in 1..=plan.rounds {
        for stack in plan.stacks.selected() {
            stacks[stack.index()].add(round, run_setups(stack, n).await?, q);
        }
    }
    println!("  per-round medians, median over {} rounds:", plan.rounds);
    for p in &stacks {
        p.lo.summary("µs");
        out.report
            .result(&format!("setup_median_{}", p.lo.name), p.lo.median(), "us");
    }
    let [raw, libp2p, ours] = &stacks;
    let row = Row {
        figure: "(4) setup, median".into(),
        unit: "µs",
        switchyard: ours.lo.median(),
        raw: raw.lo.median(),
        libp2p: libp2p.lo.median(),
        target: "≤ 0.5× libp2p",
        check: Some(|sy, _, libp2p| sy <= SETUP_VS_LIBP2P * libp2p),
    };
    out.row(row, SETUP_TARGETS);
    Ok(())
}
