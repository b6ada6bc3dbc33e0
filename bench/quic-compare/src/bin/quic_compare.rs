//! Switchyard's QUIC transport against raw quinn and rust-libp2p 0.57's
//! QUIC transport (`libp2p-stream`), on loopback, every peer in this
//! process, on one multi-thread tokio runtime with two worker threads:
//!
//! 1. bulk throughput of 64 KiB messages on one channel / stream;
//! 2. one-way rate of 128-byte messages through each stack's message API;
//! 3. round-trip latency of 128-byte ping-pong, p50 and p99;
//! 4. connection setup, dial to first message delivered, median; raw quinn
//!    runs it twice, with server authentication only and with mutual TLS
//!    (client certificates, as Switchyard), the second baseline of the row.
//!
//! What each stack does exactly is in the modules of
//! `switchyard_quic_compare` and in bench/README.md. The layout, the
//! message and the report are `tcp_compare`'s (`switchyard_bench::compare`).
//!
//! The machine this runs on is usually shared, so each measurement runs in
//! `--rounds` rounds (default 3), the stacks taking turns within a round;
//! every figure is the median over the rounds, printed with the range.
//!
//! Every stack gets the same UDP socket buffers by default: the kernel's
//! defaults, the only ones rust-libp2p's QUIC can have
//! (`switchyard_quic_compare::buffers`). Every output starts with the
//! machine (CPU model, `nproc`, load average), the buffers each stack was
//! granted and each stack's cipher; every row of the table repeats them.
//! Before the first round of (1), (2) and (4) each stack runs once
//! unrecorded (`--warmup` seconds, or 5 setups); (3) starts every run with
//! 1,000 unrecorded round trips.
//!
//! Options: `--secs S` (length of each throughput and ping-pong run,
//! default 2), `--setups N` (connection setups per stack and round, default
//! 50), `--rounds N` (default 3), `--warmup S` (default 0.5), `--only LIST`
//! (comma-separated of `bulk`, `rate`, `ping`, `setup`; default all),
//! `--stacks LIST` (comma-separated of `switchyard`, `raw`, `libp2p`;
//! default all; for profiling one stack at a time), `--socket-buffers
//! os|BYTES` (default `os`: every stack the kernel's defaults; `BYTES`:
//! Switchyard and raw quinn ask for that many, libp2p keeps the kernel's
//! defaults, as the table then says), `--quick` (a smoke run
//! of a few seconds: `--secs 0.25 --setups 5 --rounds 1 --warmup 0.1`;
//! options after it override it).

use std::time::Duration;

use anyhow::{Context, bail};
use switchyard_bench::compare::report::{Check, Percentiles, Report, Row, Series, show};
use switchyard_bench::compare::switchyard::LATENCY_WINDOW;
use switchyard_bench::compare::{BULK_LEN, PingPlan, SMALL_ENCODED, SMALL_LEN, Throughput};
use switchyard_quic_compare::buffers::{self, SocketBuffers};
use switchyard_quic_compare::raw::Auth;
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
    buffers: SocketBuffers,
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

    /// The stacks of (4): raw quinn twice (server authentication, then
    /// mutual TLS), then the others.
    fn setup(self) -> Vec<Stack> {
        let mut stacks = self.selected();
        if self.raw {
            stacks.insert(1, Stack::RawMutual);
        }
        stacks
    }
}

/// One of the three stacks compared, and raw quinn with mutual TLS (setup
/// only).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stack {
    Raw,
    Libp2p,
    Switchyard,
    RawMutual,
}

impl Stack {
    /// Index of the stack's figures in `[raw, libp2p, switchyard,
    /// raw_mutual]`.
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
        buffers: SocketBuffers::Os,
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
            "--socket-buffers" => o.buffers = value()?.parse()?,
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
                     [--only bulk,rate,ping,setup] [--stacks switchyard,raw,libp2p] [--socket-buffers os|BYTES]"
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
    /// What raw quinn's sockets ask for (`None`: the kernel's defaults).
    raw_buffers: Option<usize>,
    /// What Switchyard's sockets ask for (`QuicConfig::socket_buffer_size`).
    our_buffers: usize,
    /// What each stack ran, for the table's last column.
    note: String,
}

/// Which figure of a row a target compares Switchyard with.
#[derive(Clone, Copy)]
enum Against {
    Raw,
    Libp2p,
    /// The row's second baseline (raw quinn with mutual TLS for setup).
    Second,
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

impl Target {
    const fn at_least(what: &'static str, against: Against, bound: f64) -> Self {
        Self {
            what,
            against,
            bound,
            at_least: true,
        }
    }

    const fn at_most(what: &'static str, against: Against, bound: f64) -> Self {
        Self {
            what,
            against,
            bound,
            at_least: false,
        }
    }
}

/// The targets of issue 16 (protocol v3).
const BULK_TARGETS: &[Target] = &[
    Target::at_least("(1) bulk ≥ 0.9× raw quinn", Against::Raw, 0.9),
    Target::at_least("(1) bulk ≥ 1.5× libp2p QUIC", Against::Libp2p, 1.5),
];
const RATE_TARGETS: &[Target] = &[Target::at_least(
    "(2) 128 B messages ≥ 0.5× raw quinn",
    Against::Raw,
    0.5,
)];
const P50_TARGETS: &[Target] = &[
    Target::at_most("(3) ping-pong p50 ≤ 1.5× raw quinn", Against::Raw, 1.5),
    Target::at_most("(3) ping-pong p50 ≤ libp2p QUIC", Against::Libp2p, 1.0),
];
const P99_TARGETS: &[Target] = &[Target::at_most(
    "(3) ping-pong p99 ≤ 2× raw quinn",
    Against::Raw,
    2.0,
)];
const SETUP_TARGETS: &[Target] = &[
    Target::at_most(
        "(4) setup ≤ 1.15× raw quinn, mutual TLS",
        Against::Second,
        1.15,
    ),
    Target::at_most("(4) setup ≤ 0.5× libp2p QUIC", Against::Libp2p, 0.5),
];

/// The table, and each target judged: (target, ratio, met).
#[derive(Default)]
struct Results {
    report: Report,
    verdicts: Vec<(&'static str, f64, bool)>,
}

impl Results {
    /// Adds `row` to the table and judges `targets` on its figures.
    fn row(&mut self, row: Row, targets: &[Target]) {
        let figures = row.figures();
        for t in targets {
            let other = match t.against {
                Against::Raw => figures.raw,
                Against::Libp2p => figures.libp2p,
                Against::Second => figures.second,
            };
            if let Some(ratio) = figures.switchyard.zip(other).map(|(sy, other)| sy / other) {
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
        println!("targets (issue 16):");
        for (what, ratio, met) in &self.verdicts {
            let verdict = if *met { "met" } else { "MISSED" };
            println!("  {what:<44} {ratio:>5.2}×  {verdict}");
        }
    }
}

/// Every stack's TLS cipher suite: Switchyard's and raw quinn's ring
/// providers both prefer AES-256-GCM; libp2p-tls (aws-lc-rs) puts
/// ChaCha20-Poly1305 first on both sides, and its TLS configuration cannot
/// be replaced, so it cannot run AES-256-GCM.
const CIPHERS: &str = "switchyard and raw quinn: TLS13_AES_256_GCM_SHA384, AES-256-GCM (rustls, ring); libp2p: TLS13_CHACHA20_POLY1305_SHA256, ChaCha20-Poly1305 (rustls, aws-lc-rs; libp2p-tls fixes it)";

/// Flow-control windows: Switchyard's channel credit and its QUIC windows
/// (`QuicConfig::default()`, which raw quinn shares), libp2p-quic's.
fn windows(credit: usize) -> String {
    format!(
        "switchyard credit window = send queue = {credit} messages; QUIC windows: switchyard and raw quinn 1 MiB per stream, 16 MiB per connection; libp2p 10 MB per stream, 15 MB per connection"
    )
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
        "{} s per run, {} setups per stack and round, {} rounds (figures are medians over rounds), {} s warm-up",
        options.secs, options.setups, options.rounds, options.warmup
    );
    println!("ciphers: {CIPHERS}");
    println!("{}", buffers::describe(options.buffers)?);
    let plan = Plan {
        secs: Duration::from_secs_f64(options.secs),
        warmup: Duration::from_secs_f64(options.warmup),
        rounds: options.rounds,
        setups: options.setups,
        stacks: options.stacks,
        raw_buffers: options.buffers.raw_ask(),
        our_buffers: options.buffers.switchyard_ask()?,
        note: format!("{CIPHERS}; {}", buffers::note(options.buffers)),
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
    check: Option<Check>,
    targets: &'static [Target],
}

/// One one-way run of `stack`.
async fn run_one_way(
    plan: &Plan,
    stack: Stack,
    m: &OneWay,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    match stack {
        Stack::Raw => raw::one_way(m.len, duration, m.raw_batch, plan.raw_buffers).await,
        Stack::Libp2p => rust_libp2p::one_way(m.len, duration).await,
        Stack::Switchyard => switchyard::one_way(m.len, m.window, duration, plan.our_buffers).await,
        Stack::RawMutual => bail!("raw quinn with mutual TLS runs setups only"),
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
            let t = run_one_way(plan, stack, &m, plan.warmup).await?;
            show(0, &format!("{} (warm-up)", series[stack.index()].name), &t);
        }
    }
    for round in 1..=plan.rounds {
        for stack in stacks.selected() {
            let t = run_one_way(plan, stack, &m, plan.secs).await?;
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
            second: None,
            stacks: format!("{}; {}", windows(m.window), plan.note),
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
        target: "≥ 0.9× raw, ≥ 1.5× libp2p",
        check: Some(|f| Some(f.switchyard? >= 0.9 * f.raw? && f.switchyard? >= 1.5 * f.libp2p?)),
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
        target: "≥ 0.5× raw",
        check: Some(|f| Some(f.switchyard? >= 0.5 * f.raw?)),
        targets: RATE_TARGETS,
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
            raw.add(
                round,
                raw::ping_pong(SMALL_LEN, ping, plan.raw_buffers).await?,
                q,
            );
        }
        if plan.stacks.libp2p {
            libp2p.add(round, rust_libp2p::ping_pong(SMALL_LEN, ping).await?, q);
        }
        if plan.stacks.switchyard {
            let samples = switchyard::ping_pong(SMALL_LEN, ping, plan.our_buffers).await?;
            ours.add(round, samples, q);
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
    let p50: Check = |f| Some(f.switchyard? <= 1.5 * f.raw? && f.switchyard? <= f.libp2p?);
    let p99: Check = |f| Some(f.switchyard? <= 2.0 * f.raw?);
    for (figure, lo, target, check, targets) in [
        ("p50", true, "≤ 1.5× raw, ≤ libp2p", p50, P50_TARGETS),
        ("p99", false, "≤ 2× raw", p99, P99_TARGETS),
    ] {
        let row = Row {
            figure: format!("(3) ping-pong {figure}"),
            unit: "µs",
            switchyard: median(&ours, lo),
            raw: median(&raw, lo),
            libp2p: median(&libp2p, lo),
            second: None,
            stacks: format!("{}; {}", windows(LATENCY_WINDOW), plan.note),
            target,
            check: Some(check),
        };
        out.row(row, targets);
    }
    Ok(())
}

/// `n` setups of `stack`.
async fn run_setups(plan: &Plan, stack: Stack, n: usize) -> anyhow::Result<Vec<u64>> {
    match stack {
        Stack::Raw => raw::setup(SMALL_LEN, n, Auth::Server, plan.raw_buffers).await,
        Stack::RawMutual => raw::setup(SMALL_LEN, n, Auth::Mutual, plan.raw_buffers).await,
        Stack::Libp2p => rust_libp2p::setup(SMALL_LEN, n).await,
        Stack::Switchyard => switchyard::setup(SMALL_LEN, n, plan.our_buffers).await,
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
        Percentiles::new("raw_quinn_mtls"),
    ];
    if !plan.warmup.is_zero() {
        for stack in plan.stacks.setup() {
            run_setups(plan, stack, WARMUP_SETUPS).await?;
        }
    }
    for round in 1..=plan.rounds {
        for stack in plan.stacks.setup() {
            stacks[stack.index()].add(round, run_setups(plan, stack, n).await?, q);
        }
    }
    println!("  per-round medians, median over {} rounds:", plan.rounds);
    for p in &stacks {
        p.lo.summary("µs");
        out.report
            .result(&format!("setup_median_{}", p.lo.name), p.lo.median(), "us");
    }
    let [raw, libp2p, ours, mutual] = &stacks;
    let row = Row {
        figure: "(4) setup, median".into(),
        unit: "µs",
        switchyard: ours.lo.median(),
        raw: raw.lo.median(),
        libp2p: libp2p.lo.median(),
        second: Some(("raw quinn, mutual TLS".into(), mutual.lo.median())),
        stacks: format!(
            "raw quinn: server authentication only; second: client certificates too, as switchyard and libp2p; {}; {}",
            windows(LATENCY_WINDOW),
            plan.note
        ),
        target: "≤ 1.15× raw mutual TLS, ≤ 0.5× libp2p",
        check: Some(|f| {
            Some(f.switchyard? <= 1.15 * f.second? && f.switchyard? <= 0.5 * f.libp2p?)
        }),
    };
    out.row(row, SETUP_TARGETS);
    Ok(())
}
