//! Switchyard's TCP + Noise transport against raw TCP and rust-libp2p 0.57
//! (TCP + noise + yamux, `libp2p-stream`), on loopback, every peer in this
//! process, on one multi-thread tokio runtime with two worker threads:
//!
//! 1. bulk throughput of 64 KiB messages on one channel / stream;
//! 2. one-way rate of 128-byte messages through each stack's message API;
//! 3. round-trip latency of 128-byte ping-pong, p50 and p99;
//! 4. connection setup, dial to first message delivered, median; beside
//!    raw TCP and rust-libp2p, a bare snow XX handshake of each suite over
//!    raw TCP carrying the first message in Noise message 3
//!    ([`switchyard_bench::tcp::snow_xx`]).
//!
//! Switchyard runs (1) and (2) with every selected cipher suite on every
//! selected crypto backend (by default both suites, `aesgcm` and
//! `chachapoly`, on both backends, `ring` and `rustcrypto`), and (3) and
//! (4) with each suite on ring. Both nodes offer and accept only the suite
//! of the run. rust-libp2p runs (2) twice: one unbuffered `write_all` per
//! message, and through a queue and a `BufWriter` flushed when the queue is
//! empty (the batching Switchyard does); the table quotes the better.
//! Every output starts with the machine (CPU model, `nproc`, cipher
//! instructions, load average) and each stack's cipher; every row of the
//! final table names each stack's suite, cipher and window. After (1), the ceiling each
//! cipher sets on this machine ([`switchyard_bench::ceiling`], from the raw
//! TCP median) is printed with Switchyard's share of it.
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
//! `libp2p`, `snow`; default all; for profiling one stack at a time), `--suites
//! LIST` (comma-separated of `aesgcm`, `chachapoly`; default both),
//! `--crypto LIST` (Switchyard backends for (1) and (2), comma-separated of
//! `ring`, `rustcrypto`; default both).

use std::time::Duration;

use anyhow::{Context, bail};
use switchyard_bench::ceiling;
use switchyard_bench::compare::report::{Check, Percentiles, Report, Row, Series, group, show};
use switchyard_bench::compare::switchyard::LATENCY_WINDOW;
use switchyard_bench::compare::{BULK_LEN, PingPlan, SMALL_ENCODED, SMALL_LEN, Throughput};
use switchyard_bench::tcp::switchyard::Variant;
use switchyard_bench::tcp::{raw, rust_libp2p, snow_xx, switchyard};
use transport_tcp::{CipherSuite, CryptoBackend};

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

/// Which stacks run, and which Switchyard variants.
#[derive(Clone)]
struct Stacks {
    switchyard: bool,
    raw: bool,
    libp2p: bool,
    /// The bare snow handshake of (4).
    snow: bool,
    suites: Vec<CipherSuite>,
    backends: Vec<CryptoBackend>,
}

impl Stacks {
    /// The variants of (1) and (2): every suite on every backend.
    fn variants(&self) -> Vec<Variant> {
        if !self.switchyard {
            return Vec::new();
        }
        self.suites
            .iter()
            .flat_map(|&suite| {
                self.backends
                    .iter()
                    .map(move |&crypto| Variant { suite, crypto })
            })
            .collect()
    }

    /// The variants of (3) and (4): every suite on one backend (ring if
    /// selected).
    fn latency_variants(&self) -> Vec<Variant> {
        if !self.switchyard {
            return Vec::new();
        }
        let crypto = if self.backends.contains(&CryptoBackend::Ring) {
            CryptoBackend::Ring
        } else {
            CryptoBackend::RustCrypto
        };
        self.suites
            .iter()
            .map(|&suite| Variant { suite, crypto })
            .collect()
    }
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
            snow: true,
            suites: vec![CipherSuite::AesGcm, CipherSuite::ChaChaPoly],
            backends: vec![CryptoBackend::Ring, CryptoBackend::RustCrypto],
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
                (
                    o.stacks.switchyard,
                    o.stacks.raw,
                    o.stacks.libp2p,
                    o.stacks.snow,
                ) = (has("switchyard"), has("raw"), has("libp2p"), has("snow"));
            }
            "--suites" => {
                // `replace('_', "")` above is for numbers; names have none.
                o.stacks.suites = value()?
                    .split(',')
                    .map(|s| s.parse::<CipherSuite>())
                    .collect::<Result<_, _>>()
                    .context("--suites")?;
            }
            "--crypto" => {
                let list = value()?;
                o.stacks.backends = list
                    .split(',')
                    .map(|s| match s {
                        "ring" => Ok(CryptoBackend::Ring),
                        "rustcrypto" => Ok(CryptoBackend::RustCrypto),
                        other => bail!("--crypto: unknown backend {other:?}"),
                    })
                    .collect::<anyhow::Result<_>>()?;
            }
            // `cargo bench` passes this to every target.
            "--bench" => {}
            "-h" | "--help" => {
                println!(
                    "tcp_compare [--secs S] [--setups N] [--rounds N] [--only bulk,rate,ping,setup] \
                     [--stacks switchyard,raw,libp2p,snow] [--suites aesgcm,chachapoly] [--crypto ring,rustcrypto]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if o.secs <= 0.0 || o.setups == 0 || o.rounds == 0 {
        bail!("--secs, --setups and --rounds must be positive");
    }
    if o.stacks.switchyard && (o.stacks.suites.is_empty() || o.stacks.backends.is_empty()) {
        bail!("--suites and --crypto need at least one value each");
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
/// The worker threads of the runtime: the cores the ceiling is computed on.
const WORKERS: usize = 2;
/// rust-libp2p's Noise protocol and cipher (fixed by libp2p's noise spec;
/// it cannot run AES-GCM), and yamux's window (its default config).
const LIBP2P_SUITE: &str = "Noise_XX_25519_ChaChaPoly_SHA256";
const LIBP2P_CIPHER: &str = "ChaCha20-Poly1305 (ring, via snow)";
const YAMUX_WINDOW: &str = "yamux stream window 256 KiB, auto-tuned (default config)";

struct Plan {
    secs: Duration,
    rounds: usize,
    setups: usize,
    stacks: Stacks,
}

fn main() -> anyhow::Result<()> {
    let options = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    println!(
        "tcp_compare: Switchyard TCP+Noise vs raw TCP vs rust-libp2p 0.57 (tcp+noise+yamux, libp2p-stream); loopback, one tokio runtime, {WORKERS} worker threads"
    );
    println!("{}", switchyard_bench::machine::describe());
    println!(
        "{} s per run, {} setups per stack and round, {} rounds (figures are medians over rounds)",
        options.secs, options.setups, options.rounds
    );
    println!(
        "ciphers: raw TCP none; rust-libp2p {LIBP2P_SUITE}, {LIBP2P_CIPHER} (cannot run AES-GCM); bare snow (setup only) and Switchyard the suite each row names (both nodes offer only that suite)"
    );
    println!(
        "windows: Switchyard credit window = send queue = {BULK_WINDOW} messages for bulk (16 MiB), {SMALL_WINDOW} for 128 B messages, {LATENCY_WINDOW} for ping-pong and setup; {YAMUX_WINDOW}"
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

/// What one one-way measurement runs and how it is judged.
struct OneWay {
    len: usize,
    window: usize,
    raw_batch: usize,
    /// Whether libp2p also runs with a `BufWriter` (for small messages).
    libp2p_buffered: bool,
    prefix: &'static str,
    label: &'static str,
    unit: &'static str,
    figure: fn(&Throughput) -> f64,
    /// The target and its check, per suite.
    target: fn(CipherSuite) -> (&'static str, Option<Check>),
}

/// The medians of one one-way measurement.
struct OneWayResult {
    raw: Option<f64>,
    ours: Vec<(Variant, Option<f64>)>,
}

/// Runs one-way runs on every selected stack, `plan.rounds` times, and adds
/// a row per Switchyard variant.
async fn one_way(plan: &Plan, report: &mut Report, m: OneWay) -> anyhow::Result<OneWayResult> {
    let stacks = &plan.stacks;
    let mut raw = Series::new(format!("raw tcp ({} KiB batches)", m.raw_batch / 1024));
    let mut libp2p = Series::new("libp2p (one write each)");
    let mut buffered = Series::new("libp2p (BufWriter, queue)");
    let variants = stacks.variants();
    let mut ours: Vec<Series> = variants
        .iter()
        .map(|v| Series::new(format!("switchyard ({})", v.name())))
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
            if m.libp2p_buffered {
                let t = rust_libp2p::one_way_buffered(m.len, plan.secs, m.window).await?;
                show(round, &buffered.name, &t);
                buffered.values.push((m.figure)(&t));
            }
        }
        for (series, &variant) in ours.iter_mut().zip(&variants) {
            let t = switchyard::one_way(variant, m.len, m.window, plan.secs).await?;
            show(round, &series.name, &t);
            series.values.push((m.figure)(&t));
        }
    }
    println!("  medians over {} rounds:", plan.rounds);
    raw.summary(m.unit);
    libp2p.summary(m.unit);
    buffered.summary(m.unit);
    for series in &ours {
        series.summary(m.unit);
    }
    let prefix = m.prefix;
    report.result(&format!("{prefix}_raw_tcp"), raw.median(), m.unit);
    report.result(&format!("{prefix}_libp2p"), libp2p.median(), m.unit);
    report.result(
        &format!("{prefix}_libp2p_buffered"),
        buffered.median(),
        m.unit,
    );
    // The better libp2p variant.
    let best_libp2p = match (libp2p.median(), buffered.median()) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let mut result = OneWayResult {
        raw: raw.median(),
        ours: Vec::new(),
    };
    for (series, &variant) in ours.iter().zip(&variants) {
        let name = variant.name().replace(' ', "_");
        report.result(
            &format!("{prefix}_switchyard_{name}"),
            series.median(),
            m.unit,
        );
        let (target, check) = (m.target)(variant.suite);
        report.rows.push(Row {
            figure: format!(
                "{}, switchyard {} [{}]",
                m.label,
                variant.name(),
                variant.cipher()
            ),
            unit: m.unit,
            switchyard: series.median(),
            raw: raw.median(),
            libp2p: best_libp2p,
            second: None,
            stacks: stacks_note(variant, Some(m.window), m.len),
            target,
            check,
        });
        result.ours.push((variant, series.median()));
    }
    Ok(result)
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
        libp2p_buffered: false,
        prefix: "bulk",
        label: "(1) bulk 64 KiB",
        unit: "MB/s",
        figure: Throughput::mb_per_sec,
        target: |suite| match suite {
            CipherSuite::AesGcm => (
                "≥ 0.5× raw, ≥ 1.5× libp2p",
                Some(|f| Some(f.switchyard? >= 0.5 * f.raw? && f.switchyard? >= 1.5 * f.libp2p?)),
            ),
            CipherSuite::ChaChaPoly => ("≥ 85 % of the ChaCha ceiling (see (1'))", None),
        },
    };
    let result = one_way(plan, report, m).await?;
    let Some(raw) = result.raw else {
        return Ok(());
    };
    // (1') The ceiling each cipher sets, from the raw median; measured on
    // a blocking thread, in that thread's CPU time.
    println!();
    println!(
        "== (1') the ceiling each cipher sets on {WORKERS} cores, from raw TCP's median {} MB/s ==",
        group(raw)
    );
    let suites = plan.stacks.suites.clone();
    let costs = tokio::task::spawn_blocking(move || {
        suites
            .into_iter()
            .map(|suite| Ok((suite, ceiling::cost(suite, 10_000)?)))
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await??;
    for (suite, cost) in costs {
        let bound = cost.ceiling(raw, WORKERS as f64);
        println!(
            "  {} (ring): seal {:.3} + open {:.3} CPU-ns/B -> ceiling {} MB/s = {:.2}× raw",
            ceiling::cipher_name(suite),
            cost.seal_ns,
            cost.open_ns,
            group(bound),
            bound / raw
        );
        report.result(&format!("bulk_ceiling_{suite}"), Some(bound), "MB/s");
        for (variant, median) in result.ours.iter().filter(|(v, _)| v.suite == suite) {
            let Some(median) = median else { continue };
            let share = median / bound;
            let verdict = match suite {
                CipherSuite::ChaChaPoly if share >= 0.85 => " (target ≥ 85 %: met)",
                CipherSuite::ChaChaPoly => " (target ≥ 85 %: **not met**)",
                CipherSuite::AesGcm => "",
            };
            println!(
                "    switchyard ({}): {} MB/s = {:.0} % of the ceiling{verdict}",
                variant.name(),
                group(*median),
                share * 100.0
            );
            report.result(
                &format!("bulk_share_of_ceiling_{}", variant.name().replace(' ', "_")),
                Some(share * 100.0),
                "%",
            );
        }
    }
    Ok(())
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
        libp2p_buffered: true,
        prefix: "rate",
        label: "(2) 128 B messages",
        unit: "msg/s",
        figure: Throughput::messages_per_sec,
        target: |_| {
            (
                "≥ 0.5× raw, ≥ 2× the better libp2p",
                Some(|f| Some(f.switchyard? >= 0.5 * f.raw? && f.switchyard? >= 2.0 * f.libp2p?)),
            )
        },
    };
    one_way(plan, report, m).await.map(|_| ())
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
    let (mut raw, mut libp2p) = (Percentiles::new("raw_tcp"), Percentiles::new("libp2p"));
    let variants = plan.stacks.latency_variants();
    let mut ours: Vec<Percentiles> = variants
        .iter()
        .map(|v| Percentiles::new(&format!("switchyard_{}", v.suite)))
        .collect();
    for round in 1..=plan.rounds {
        if plan.stacks.raw {
            raw.add(round, raw::ping_pong(SMALL_LEN, ping).await?, q);
        }
        if plan.stacks.libp2p {
            libp2p.add(round, rust_libp2p::ping_pong(SMALL_LEN, ping).await?, q);
        }
        for (p, &variant) in ours.iter_mut().zip(&variants) {
            let samples = switchyard::ping_pong(variant, SMALL_LEN, ping).await?;
            p.add(round, samples, q);
        }
    }
    for (what, pick) in [("p50", 0), ("p99", 1)] {
        println!("  {what}, medians over {} rounds:", plan.rounds);
        for p in [&raw, &libp2p].into_iter().chain(&ours) {
            let series = if pick == 0 { &p.lo } else { &p.hi };
            series.summary("µs");
            report.result(
                &format!("ping_{what}_{}", series.name),
                series.median(),
                "us",
            );
        }
    }
    for (p, variant) in ours.iter().zip(&variants) {
        report.rows.push(Row {
            figure: format!("(3) ping-pong p50 [{}]", variant.cipher()),
            unit: "µs",
            switchyard: p.lo.median(),
            raw: raw.lo.median(),
            libp2p: libp2p.lo.median(),
            second: None,
            stacks: stacks_note(*variant, Some(LATENCY_WINDOW), SMALL_LEN),
            target: "≤ 1.3× raw",
            check: Some(|f| Some(f.switchyard? <= 1.3 * f.raw?)),
        });
        report.rows.push(Row {
            figure: format!("(3) ping-pong p99 [{}]", variant.cipher()),
            unit: "µs",
            switchyard: p.hi.median(),
            raw: raw.hi.median(),
            libp2p: libp2p.hi.median(),
            second: None,
            stacks: stacks_note(*variant, Some(LATENCY_WINDOW), SMALL_LEN),
            target: "",
            check: None,
        });
    }
    Ok(())
}

async fn setup(plan: &Plan, report: &mut Report) -> anyhow::Result<()> {
    let n = plan.setups;
    println!();
    println!(
        "== (4) connection setup: dial to first {SMALL_ENCODED}-byte message delivered, {n} fresh setups per stack and round =="
    );
    let q = (50.0, 90.0);
    let (mut raw, mut libp2p) = (Percentiles::new("raw_tcp"), Percentiles::new("libp2p"));
    let variants = plan.stacks.latency_variants();
    let mut ours: Vec<Percentiles> = variants
        .iter()
        .map(|v| Percentiles::new(&format!("switchyard_{}", v.suite)))
        .collect();
    // The bare handshake of each selected suite.
    let bare_suites = if plan.stacks.snow {
        plan.stacks.suites.clone()
    } else {
        Vec::new()
    };
    let mut bare: Vec<Percentiles> = bare_suites
        .iter()
        .map(|suite| Percentiles::new(&format!("snow_xx_{suite}")))
        .collect();
    for round in 1..=plan.rounds {
        if plan.stacks.raw {
            raw.add(round, raw::setup(SMALL_LEN, n).await?, q);
        }
        if plan.stacks.libp2p {
            libp2p.add(round, rust_libp2p::setup(SMALL_LEN, n).await?, q);
        }
        for (p, &suite) in bare.iter_mut().zip(&bare_suites) {
            p.add(round, snow_xx::setup(suite, SMALL_LEN, n).await?, q);
        }
        for (p, &variant) in ours.iter_mut().zip(&variants) {
            let samples = switchyard::setup(variant, SMALL_LEN, n).await?;
            p.add(round, samples, q);
        }
    }
    println!("  per-round medians, median over {} rounds:", plan.rounds);
    for p in [&raw, &libp2p].into_iter().chain(&bare).chain(&ours) {
        p.lo.summary("µs");
        report.result(&format!("setup_median_{}", p.lo.name), p.lo.median(), "us");
    }
    for (p, variant) in ours.iter().zip(&variants) {
        let bare_median = bare_suites
            .iter()
            .position(|&suite| suite == variant.suite)
            .and_then(|i| bare[i].lo.median());
        report.rows.push(Row {
            figure: format!("(4) setup, median [{}]", variant.cipher()),
            unit: "µs",
            switchyard: p.lo.median(),
            raw: raw.lo.median(),
            libp2p: libp2p.lo.median(),
            second: Some((
                format!("bare snow {}", variant.suite.noise_name()),
                bare_median,
            )),
            stacks: format!(
                "{}; bare snow: the same suite and resolvers, no preamble, no identity payloads",
                stacks_note(*variant, Some(LATENCY_WINDOW), SMALL_LEN)
            ),
            target: "≤ 0.35× libp2p, ≤ 1.25× bare snow XX",
            check: Some(|f| {
                Some(f.switchyard? <= 0.35 * f.libp2p? && f.switchyard? <= 1.25 * f.second?)
            }),
        });
    }
    Ok(())
}

/// What each stack of a row ran: Switchyard's suite, cipher and credit
/// window (`window` messages of `len` payload bytes), raw TCP's nothing,
/// rust-libp2p's suite, cipher and yamux window.
fn stacks_note(variant: Variant, window: Option<usize>, len: usize) -> String {
    let window = window.map_or_else(String::new, |w| {
        format!(
            ", credit window = send queue = {w} messages ({} KiB of payload)",
            w * len / 1024
        )
    });
    format!(
        "switchyard: {}, {}{window}; raw TCP: no encryption; libp2p: {LIBP2P_SUITE}, {LIBP2P_CIPHER}, {YAMUX_WINDOW}",
        variant.suite.noise_name(),
        variant.cipher(),
    )
}
