//! Switchyard's TCP + Noise transport against raw TCP and rust-libp2p 0.57
//! (TCP + noise + yamux, `libp2p-stream`), on loopback, every peer in this
//! process, on one multi-thread tokio runtime with two worker threads:
//!
//! 1. bulk throughput of 64 KiB messages on one channel / stream;
//! 2. one-way rate of 128-byte messages through each stack's message API;
//! 3. round-trip latency of 128-byte ping-pong, p50 and p99;
//! 4. connection setup, dial to first message delivered, median.
//!
//! Switchyard runs (1) and (2) with both crypto backends
//! (`CryptoBackend::Ring`, `CryptoBackend::RustCrypto`), (3) and (4) with
//! the default (`Ring`). What each stack does exactly is in the modules of
//! `switchyard_bench::tcp` and in bench/README.md.
//!
//! The machine this runs on is usually shared, so each measurement runs in
//! `--rounds` rounds (default 3), the stacks taking turns within a round;
//! every figure is the median over the rounds, printed with the range.
//!
//! Options: `--secs S` (length of each throughput and ping-pong run,
//! default 2), `--setups N` (connection setups per stack and round, default
//! 50), `--rounds N` (default 3),
//! `--only LIST` (comma-separated of `bulk`, `rate`, `ping`, `setup`;
//! default all), `--stacks LIST` (comma-separated of `switchyard`, `raw`,
//! `libp2p`; default all; for profiling one stack at a time), `--crypto
//! LIST` (Switchyard backends for (1) and (2), comma-separated of `ring`,
//! `rustcrypto`; default both).

use std::time::Duration;

use anyhow::{Context, bail};
use switchyard_bench::compare::report::{Percentiles, Report, Row, Series, show};
use switchyard_bench::compare::{BULK_LEN, PingPlan, SMALL_ENCODED, SMALL_LEN, Throughput};
use switchyard_bench::tcp::{raw, rust_libp2p, switchyard};
use transport_tcp::CryptoBackend;

struct Options {
    secs: f64,
    setups: usize,
    rounds: usize,
    bulk: bool,
    rate: bool,
    ping: bool,
    setup: bool,
    stacks: Stacks,
}

/// Which stacks run, and with which Switchyard crypto backends (1) and (2)
/// run.
#[derive(Clone, Copy)]
struct Stacks {
    switchyard: bool,
    raw: bool,
    libp2p: bool,
    ring: bool,
    rustcrypto: bool,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut o = Options {
        secs: 2.0,
        setups: 50,
        rounds: 3,
        bulk: true,
        rate: true,
        ping: true,
        setup: true,
        stacks: Stacks {
            switchyard: true,
            raw: true,
            libp2p: true,
            ring: true,
            rustcrypto: true,
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
                    ..o.stacks
                };
            }
            "--crypto" => {
                let list = value()?;
                let has = |name: &str| list.split(',').any(|s| s == name);
                (o.stacks.ring, o.stacks.rustcrypto) = (has("ring"), has("rustcrypto"));
            }
            // `cargo bench` passes this to every target.
            "--bench" => {}
            "-h" | "--help" => {
                println!(
                    "tcp_compare [--secs S] [--setups N] [--rounds N] [--only bulk,rate,ping,setup] \
                     [--stacks switchyard,raw,libp2p] [--crypto ring,rustcrypto]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if o.secs <= 0.0 || o.setups == 0 || o.rounds == 0 {
        bail!("--secs, --setups and --rounds must be positive");
    }
    Ok(o)
}

/// Send queue and credit window of the bulk channel, in messages (16 MiB of
/// 64 KiB messages).
const BULK_WINDOW: usize = 256;
/// Send queue and credit window of the small-message channel.
const SMALL_WINDOW: usize = 1024;
/// Raw TCP writes a batch once it holds this much (bulk, small messages).
const RAW_BULK_BATCH: usize = 256 * 1024;
const RAW_SMALL_BATCH: usize = 64 * 1024;

struct Plan {
    secs: Duration,
    rounds: usize,
    setups: usize,
    stacks: Stacks,
}

fn main() -> anyhow::Result<()> {
    let options = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    println!(
        "tcp_compare: Switchyard TCP+Noise vs raw TCP vs rust-libp2p 0.57 (tcp+noise+yamux, libp2p-stream); loopback, one tokio runtime, 2 worker threads"
    );
    println!(
        "available parallelism: {}; {} s per run, {} setups per stack and round, {} rounds (figures are medians over rounds)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        options.secs,
        options.setups,
        options.rounds
    );
    let plan = Plan {
        secs: Duration::from_secs_f64(options.secs),
        rounds: options.rounds,
        setups: options.setups,
        stacks: options.stacks,
    };
    // Everything runs in a spawned task so that it runs on the two workers
    // (the `block_on` thread would be a third).
    let report = runtime.block_on(async move {
        tokio::spawn(async move {
            let mut report = Report::default();
            if options.bulk {
                bulk(&plan, &mut report).await?;
            }
            if options.rate {
                rate(&plan, &mut report).await?;
            }
            if options.ping {
                ping(&plan, &mut report).await?;
            }
            if options.setup {
                setup(&plan, &mut report).await?;
            }
            anyhow::Ok(report)
        })
        .await?
    })?;
    report.print("raw TCP");
    Ok(())
}

fn backend_name(crypto: CryptoBackend) -> &'static str {
    match crypto {
        CryptoBackend::Ring => "ring",
        CryptoBackend::RustCrypto => "rustcrypto",
    }
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
    check: fn(f64, f64, f64) -> bool,
}

/// Runs one-way runs on every selected stack, `plan.rounds` times, and adds
/// a row per Switchyard crypto backend.
async fn one_way(plan: &Plan, report: &mut Report, m: OneWay) -> anyhow::Result<()> {
    let stacks = plan.stacks;
    let mut raw = Series::new(format!("raw tcp ({} KiB batches)", m.raw_batch / 1024));
    let mut libp2p = Series::new("libp2p (one write each)");
    let backends: Vec<CryptoBackend> = [
        (CryptoBackend::Ring, stacks.ring),
        (CryptoBackend::RustCrypto, stacks.rustcrypto),
    ]
    .into_iter()
    .filter(|b| stacks.switchyard && b.1)
    .map(|b| b.0)
    .collect();
    let mut ours: Vec<Series> = backends
        .iter()
        .map(|&c| Series::new(format!("switchyard ({})", backend_name(c))))
        .collect();
    for round in 1..=plan.rounds {
        if stacks.raw {
            let t = raw::one_way(m.len, plan.secs, m.raw_batch).await?;
            show(round, &raw.name, &t);
            raw.values.push((m.figure)(&t));
        }
        if stacks.libp2p {
            let t = rust_libp2p::one_way(m.len, plan.secs).await?;
            show(round, &libp2p.name, &t);
            libp2p.values.push((m.figure)(&t));
        }
        for (series, &crypto) in ours.iter_mut().zip(&backends) {
            let t = switchyard::one_way(crypto, m.len, m.window, plan.secs).await?;
            show(round, &series.name, &t);
            series.values.push((m.figure)(&t));
        }
    }
    println!("  medians over {} rounds:", plan.rounds);
    raw.summary(m.unit);
    libp2p.summary(m.unit);
    for series in &ours {
        series.summary(m.unit);
    }
    let prefix = m.prefix;
    report.result(&format!("{prefix}_raw_tcp"), raw.median(), m.unit);
    report.result(&format!("{prefix}_libp2p"), libp2p.median(), m.unit);
    for (series, &crypto) in ours.iter().zip(&backends) {
        let name = backend_name(crypto);
        report.result(
            &format!("{prefix}_switchyard_{name}"),
            series.median(),
            m.unit,
        );
        report.rows.push(Row {
            figure: format!("{}, switchyard {name}", m.label),
            unit: m.unit,
            switchyard: series.median(),
            raw: raw.median(),
            libp2p: libp2p.median(),
            target: m.target,
            check: Some(m.check),
        });
    }
    Ok(())
}

async fn bulk(plan: &Plan, report: &mut Report) -> anyhow::Result<()> {
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
        target: "≥ 1.5× libp2p, ≥ 0.5× raw",
        check: |sy, raw, libp2p| sy >= 1.5 * libp2p && sy >= 0.5 * raw,
    };
    one_way(plan, report, m).await
}

async fn rate(plan: &Plan, report: &mut Report) -> anyhow::Result<()> {
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
        target: "≥ 500,000/s, ≥ 3× libp2p",
        check: |sy, _raw, libp2p| sy >= 500_000.0 && sy >= 3.0 * libp2p,
    };
    one_way(plan, report, m).await
}

async fn ping(plan: &Plan, report: &mut Report) -> anyhow::Result<()> {
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
        Percentiles::new("raw_tcp"),
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
            let samples = switchyard::ping_pong(CryptoBackend::Ring, SMALL_LEN, ping).await?;
            ours.add(round, samples, q);
        }
    }
    for (what, pick) in [("p50", 0), ("p99", 1)] {
        println!("  {what}, medians over {} rounds:", plan.rounds);
        for p in [&raw, &libp2p, &ours] {
            let series = if pick == 0 { &p.lo } else { &p.hi };
            series.summary("µs");
            report.result(
                &format!("ping_{what}_{}", series.name),
                series.median(),
                "us",
            );
        }
    }
    report.rows.push(Row {
        figure: "(3) ping-pong p50".into(),
        unit: "µs",
        switchyard: ours.lo.median(),
        raw: raw.lo.median(),
        libp2p: libp2p.lo.median(),
        target: "≤ 1.3× raw",
        check: Some(|sy, raw, _| sy <= 1.3 * raw),
    });
    report.rows.push(Row {
        figure: "(3) ping-pong p99".into(),
        unit: "µs",
        switchyard: ours.hi.median(),
        raw: raw.hi.median(),
        libp2p: libp2p.hi.median(),
        target: "",
        check: None,
    });
    Ok(())
}

async fn setup(plan: &Plan, report: &mut Report) -> anyhow::Result<()> {
    let n = plan.setups;
    println!();
    println!(
        "== (4) connection setup: dial to first {SMALL_ENCODED}-byte message delivered, {n} fresh setups per stack and round =="
    );
    let q = (50.0, 90.0);
    let (mut raw, mut libp2p, mut ours) = (
        Percentiles::new("raw_tcp"),
        Percentiles::new("libp2p"),
        Percentiles::new("switchyard"),
    );
    for round in 1..=plan.rounds {
        if plan.stacks.raw {
            raw.add(round, raw::setup(SMALL_LEN, n).await?, q);
        }
        if plan.stacks.libp2p {
            libp2p.add(round, rust_libp2p::setup(SMALL_LEN, n).await?, q);
        }
        if plan.stacks.switchyard {
            let samples = switchyard::setup(CryptoBackend::Ring, SMALL_LEN, n).await?;
            ours.add(round, samples, q);
        }
    }
    println!("  per-round medians, median over {} rounds:", plan.rounds);
    for p in [&raw, &libp2p, &ours] {
        p.lo.summary("µs");
        report.result(&format!("setup_median_{}", p.lo.name), p.lo.median(), "us");
    }
    report.rows.push(Row {
        figure: "(4) setup, median".into(),
        unit: "µs",
        switchyard: ours.lo.median(),
        raw: raw.lo.median(),
        libp2p: libp2p.lo.median(),
        target: "≤ 0.5× libp2p",
        check: Some(|sy, _, libp2p| sy <= 0.5 * libp2p),
    });
    Ok(())
}
