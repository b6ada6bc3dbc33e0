//! Switchyard's router over the memory transport against a raw bounded
//! `tokio::sync::mpsc` pipe, on one multi-thread tokio runtime with two
//! worker threads:
//!
//! * (d) idle memory per connection, measured first while the process is
//!   fresh: 1 hub router and N client routers are started with no
//!   connections (baseline), then every client connects to the hub; the
//!   growth divided by N is the cost of one connection, both ends;
//! * (a) single-channel throughput and (b) one-way latency under that load,
//!   router vs. raw pipe, same task layout;
//! * (c) 8 saturated channels of priorities 1,1,2,2,4,4,8,8: total rate and
//!   each channel's share of bytes against its weighted share; then (c')
//!   the same with the memory link limited to 16 MiB/s, so that the link
//!   rather than the CPU is the bottleneck and the scheduler decides;
//! * (e) small messages: the rate of 128-byte messages (one sender task
//!   with `send().await`, credit window 1,024) and the round trip of a
//!   128-byte ping-pong, router vs. raw mpsc, both through the same
//!   Switchyard runs as `tcp_compare` (`compare::switchyard`) with the
//!   memory transport underneath.
//!
//! Options: `--messages N` (default 2000000), `--mixed-secs S` (default 3),
//! `--small-secs S` (default 2), `--connections N` (default 1000), `--only
//! LIST` (comma-separated of `memory`, `throughput`, `mixed`, `small`;
//! default all).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use p2p::{Keypair, PeerAddress, Router, RouterBuilder, RouterConfig};
use switchyard_bench::{
    BenchMsg, PAYLOAD_LEN, Pair, RAW_CAPACITY, RAW_LEN, RunStats, SAMPLE_EVERY, descriptor,
    encoded_len, payload, run_raw, run_router,
};
use transport_memory::MemoryHub;

// ---------------------------------------------------------------------------
// Live-heap counter, for the idle-memory figure next to RSS (RSS depends on
// what the allocator keeps; live heap bytes do not). Counting is switched
// off for good after the memory phase, so the throughput runs pay only a
// relaxed load per allocation.

static COUNTING: AtomicBool = AtomicBool::new(true);
static LIVE_HEAP: AtomicI64 = AtomicI64::new(0);

struct CountingAlloc;

#[allow(unsafe_code)]
// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            LIVE_HEAP.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            LIVE_HEAP.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_HEAP.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: forwarded as is; `ptr` came from this allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            LIVE_HEAP.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

fn live_heap() -> i64 {
    LIVE_HEAP.load(Ordering::Relaxed)
}

/// VmRSS of this process, in bytes.
fn rss() -> anyhow::Result<i64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS in /proc/self/status")?;
    let kib: i64 = line
        .split_whitespace()
        .nth(1)
        .context("malformed VmRSS line")?
        .parse()
        .context("malformed VmRSS value")?;
    Ok(kib * 1024)
}

// ---------------------------------------------------------------------------

struct Options {
    messages: u64,
    mixed_secs: f64,
    small_secs: f64,
    connections: usize,
    memory: bool,
    throughput: bool,
    mixed: bool,
    small: bool,
    /// Only the router's half of one part of (e), for counting its
    /// instructions per message (`perf stat -e instructions`).
    small_part: Option<SmallPart>,
}

/// One part of (e), run alone by `--only small-rate` or
/// `--only small-pingpong`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SmallPart {
    Rate,
    PingPong,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut o = Options {
        messages: 2_000_000,
        mixed_secs: 3.0,
        small_secs: 2.0,
        connections: 1000,
        memory: true,
        throughput: true,
        mixed: true,
        small: true,
        small_part: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .map(|v| v.replace('_', ""))
                .with_context(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--messages" => o.messages = value()?.parse().context("--messages")?,
            "--mixed-secs" => o.mixed_secs = value()?.parse().context("--mixed-secs")?,
            "--small-secs" => o.small_secs = value()?.parse().context("--small-secs")?,
            "--connections" => o.connections = value()?.parse().context("--connections")?,
            "--only" => {
                let list = value()?;
                o.memory = list.split(',').any(|s| s == "memory");
                o.throughput = list.split(',').any(|s| s == "throughput");
                o.mixed = list.split(',').any(|s| s == "mixed");
                o.small = list.split(',').any(|s| s == "small");
                if list == "small-rate" || list == "small-pingpong" {
                    o.small = true;
                    o.small_part = Some(if list == "small-rate" {
                        SmallPart::Rate
                    } else {
                        SmallPart::PingPong
                    });
                }
            }
            // `cargo bench` passes this to every target.
            "--bench" => {}
            "-h" | "--help" => {
                println!(
                    "router_vs_mpsc [--messages N] [--mixed-secs S] [--small-secs S] \
                     [--connections N] [--only memory,throughput,mixed,small]\n\
                     --only small-rate | small-pingpong: only the router's half of that \
                     part of (e), printing its message count (for perf stat)"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if o.messages == 0 || o.connections == 0 || o.mixed_secs <= 0.0 || o.small_secs <= 0.0 {
        bail!("--messages, --connections, --mixed-secs and --small-secs must be positive");
    }
    Ok(o)
}

struct Report {
    results: Vec<String>,
}

impl Report {
    fn result(&mut self, name: &str, value: impl std::fmt::Display, unit: &str) {
        self.results.push(format!("RESULT {name}={value} {unit}"));
    }
}

fn main() -> anyhow::Result<()> {
    let options = parse_args()?;
    if !options.memory {
        COUNTING.store(false, Ordering::Relaxed);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let mut report = Report {
        results: Vec::new(),
    };
    println!(
        "switchyard router vs. raw tokio mpsc: memory transport, one tokio runtime, 2 worker threads"
    );
    println!("{}", switchyard_bench::machine::describe());
    runtime.block_on(async {
        if options.memory {
            idle_memory(options.connections, &mut report).await?;
        }
        COUNTING.store(false, Ordering::Relaxed);
        if options.throughput {
            throughput(options.messages, &mut report).await?;
        }
        if options.mixed {
            mixed(options.mixed_secs, None, &mut report).await?;
            mixed(options.mixed_secs, Some(LIMITED_BANDWIDTH), &mut report).await?;
        }
        if options.small {
            // On a spawned task, so that it runs on the two workers (the
            // `block_on` thread would be a third), as in `tcp_compare`.
            let secs = Duration::from_secs_f64(options.small_secs);
            let results = tokio::spawn(small(secs, options.small_part)).await??;
            report.results.extend(results);
        }
        anyhow::Ok(())
    })?;
    println!();
    for line in &report.results {
        println!("{line}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// (d) idle memory per connection

async fn idle_memory(connections: usize, report: &mut Report) -> anyhow::Result<()> {
    println!();
    println!("== (d) idle memory per connection ==");
    let hub = MemoryHub::new(42);
    let channel = descriptor(0x10, "bench", 1);
    let start_router = |seed: u64, hub_node: bool| -> anyhow::Result<Router> {
        let key = Keypair::from_seed(seed);
        let mut config = RouterConfig {
            seed,
            close_grace: Duration::from_millis(200),
            ..RouterConfig::default()
        };
        if hub_node {
            config.peer_manager.max_inbound = connections + 16;
            config.max_pending_handshakes = connections + 16;
        }
        let mut builder = RouterBuilder::new(key.clone(), config);
        builder.transport(Arc::new(hub.transport(key.peer_id())?));
        // The halves are dropped: idle connections carry nothing, and the
        // per-connection state does not depend on whether a reactor holds
        // them.
        let _ = builder.open_channel::<BenchMsg>(channel.clone())?;
        Ok(builder.start()?)
    };

    let (rss0, heap0) = (rss()?, live_heap());
    let server = start_router(1_000_000, true)?;
    let server_id = server.local_peer_id();
    let mut clients = Vec::with_capacity(connections);
    for i in 0..connections {
        clients.push(start_router(2_000_000 + i as u64, false)?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss1, heap1) = (rss()?, live_heap());

    let connecting = Instant::now();
    for client in &clients {
        client.dial(PeerAddress::memory(server_id)).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let up = server.connected_peers().len();
        if up == connections && clients.iter().all(|c| c.is_connected(server_id)) {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {up} of {connections} connections up after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = connecting.elapsed();
    // Let handshake tasks end and their buffers go before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss2, heap2) = (rss()?, live_heap());
    let up = server.connected_peers().len();

    let n = connections as f64;
    let routers = (connections + 1) as f64;
    let rss_per_conn = (rss2 - rss1) as f64 / n;
    let heap_per_conn = (heap2 - heap1) as f64 / n;
    let rss_per_router = (rss1 - rss0) as f64 / routers;
    let heap_per_router = (heap1 - heap0) as f64 / routers;
    let kib = |b: f64| b / 1024.0;
    println!(
        "setup: 1 hub router + {connections} client routers on one memory hub, 1 channel each \
         (send_queue 1024, recv_buffer 1024); all started with no connection (baseline), \
         then every client dialed the hub ({up} connections up in {:.2} s), then 1 s idle",
        took.as_secs_f64()
    );
    println!(
        "'per connection' = growth from baseline / {connections}: BOTH ends of a connection (client side + hub side), no router's fixed cost"
    );
    println!("{:<34} {:>14} {:>14}", "", "RSS", "live heap");
    println!(
        "{:<34} {:>11.1} MiB {:>11.1} MiB",
        "before any router",
        rss0 as f64 / 1048576.0,
        heap0 as f64 / 1048576.0
    );
    println!(
        "{:<34} {:>11.1} MiB {:>11.1} MiB",
        format!("{} routers, no connections", connections + 1),
        rss1 as f64 / 1048576.0,
        heap1 as f64 / 1048576.0
    );
    println!(
        "{:<34} {:>11.1} MiB {:>11.1} MiB",
        format!("+ {connections} idle connections"),
        rss2 as f64 / 1048576.0,
        heap2 as f64 / 1048576.0
    );
    println!(
        "{:<34} {:>11.1} KiB {:>11.1} KiB",
        "per connection (both ends)",
        kib(rss_per_conn),
        kib(heap_per_conn)
    );
    println!(
        "{:<34} {:>11.1} KiB {:>11.1} KiB",
        "per router, fixed (for reference)",
        kib(rss_per_router),
        kib(heap_per_router)
    );
    let verdict = if rss_per_conn <= 32.0 * 1024.0 {
        "within"
    } else {
        "OVER"
    };
    println!("target: idle memory per connection <= 32 KiB -> RSS figure is {verdict} target");
    report.result(
        "idle_rss_per_connection_both_ends",
        format!("{:.1}", kib(rss_per_conn)),
        "KiB",
    );
    report.result(
        "idle_heap_per_connection_both_ends",
        format!("{:.1}", kib(heap_per_conn)),
        "KiB",
    );
    report.result(
        "router_fixed_rss",
        format!("{:.1}", kib(rss_per_router)),
        "KiB",
    );
    report.result(
        "router_fixed_heap",
        format!("{:.1}", kib(heap_per_router)),
        "KiB",
    );
    report.result("idle_connections_measured", up, "connections");

    // Shut everything down at once: each shutdown waits up to close_grace.
    let mut all = clients;
    all.push(server);
    futures::future::join_all(all.iter().map(Router::shutdown)).await;
    Ok(())
}

// ---------------------------------------------------------------------------
// (a) + (b) throughput and latency under load

async fn throughput(n: u64, report: &mut Report) -> anyhow::Result<()> {
    println!();
    println!(
        "== (a) throughput, (b) one-way latency under load: one channel, one sender task, one receiver task =="
    );
    println!(
        "router: 2 routers over the memory transport, prost message ({} B encoded: {PAYLOAD_LEN} B payload + fixed64 seq + fixed64 send time), send().await; \
         send_queue 1024, recv_buffer 1024, max_message_size 64 KiB",
        encoded_len()
    );
    println!(
        "raw:    tokio::sync::mpsc::channel::<Vec<u8>>({RAW_CAPACITY}), {RAW_LEN} B Vec per message (seq, send time, payload), no Protobuf"
    );
    println!(
        "{n} messages per pipe; latency = receive time - send timestamp, every {SAMPLE_EVERY}th message; both pipes run saturated, so latency is mostly queueing"
    );
    let mut pair = Pair::connect(&[descriptor(0x10, "bench", 1)], 1).await?;
    let tx = pair.txs[0].clone();
    let mut rx = pair.rxs.pop().context("the pair has one receiver")?;
    let to = pair.receiver_id;

    // Warm-up, not reported.
    let warm = (n / 10).clamp(1, 200_000);
    run_raw(warm).await?;
    rx = run_router(tx.clone(), rx, to, warm).await?.1;

    let mut raw = run_raw(n).await?;
    let (mut ours, _rx) = run_router(tx, rx, to, n).await?;

    let us = |ns: u64| ns as f64 / 1000.0;
    let row = |name: &str, s: &mut RunStats| {
        let (p50, p99) = (s.percentile(50.0), s.percentile(99.0));
        println!(
            "{name:<12} {:>14.0} {:>10.1} {:>12.1} {:>12.1} {:>9.3}",
            s.rate(),
            s.rate() * PAYLOAD_LEN as f64 / 1e6,
            us(p50),
            us(p99),
            s.elapsed.as_secs_f64()
        );
        (p50, p99)
    };
    println!(
        "{:<12} {:>14} {:>10} {:>12} {:>12} {:>9}",
        "pipe", "msgs/s", "payload MB/s", "p50 us", "p99 us", "secs"
    );
    let (raw50, raw99) = row("raw mpsc", &mut raw);
    let (our50, our99) = row("router", &mut ours);
    let ratio = ours.rate() / raw.rate();
    let lat50 = our50 as f64 / raw50.max(1) as f64;
    let lat99 = our99 as f64 / raw99.max(1) as f64;
    println!(
        "{:<12} {:>14.3} {:>10} {:>12.2} {:>12.2}",
        "router/raw", ratio, "", lat50, lat99
    );
    println!("(throughput ratio: higher is better; latency ratios: lower is better)");
    report.result("throughput_router", format!("{:.0}", ours.rate()), "msgs/s");
    report.result(
        "throughput_raw_mpsc",
        format!("{:.0}", raw.rate()),
        "msgs/s",
    );
    report.result(
        "throughput_ratio_router_over_raw",
        format!("{ratio:.3}"),
        "x",
    );
    report.result("latency_p50_router", format!("{:.1}", us(our50)), "us");
    report.result("latency_p99_router", format!("{:.1}", us(our99)), "us");
    report.result("latency_p50_raw_mpsc", format!("{:.1}", us(raw50)), "us");
    report.result("latency_p99_raw_mpsc", format!("{:.1}", us(raw99)), "us");
    report.result(
        "latency_p50_ratio_router_over_raw",
        format!("{lat50:.2}"),
        "x",
    );
    report.result(
        "latency_p99_ratio_router_over_raw",
        format!("{lat99:.2}"),
        "x",
    );
    pair.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// (c) mixed priorities

#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

const PRIORITIES: [u8; 8] = [1, 1, 2, 2, 4, 4, 8, 8];
const NAMES: [&str; 8] = [
    "mix0", "mix1", "mix2", "mix3", "mix4", "mix5", "mix6", "mix7",
];

/// Bandwidth of the limited variant of (c), in bytes per second.
const LIMITED_BANDWIDTH: u64 = 16 * 1024 * 1024;

async fn mixed(secs: f64, bandwidth: Option<u64>, report: &mut Report) -> anyhow::Result<()> {
    println!();
    let prefix = match bandwidth {
        None => {
            println!(
                "== (c) 8 channels, priorities 1,1,2,2,4,4,8,8, each saturated by its own sender task; memory link unlimited =="
            );
            "mixed"
        }
        Some(rate) => {
            println!(
                "== (c') the same with the memory link limited to {:.0} MiB/s per direction (MemoryHub::set_bandwidth), so the link, not the CPU, is the bottleneck ==",
                rate as f64 / 1048576.0
            );
            "mixed_limited"
        }
    };
    let descriptors: Vec<_> = (0..8)
        .map(|i| descriptor(0x20 + i as u16, NAMES[i], PRIORITIES[i]))
        .collect();
    let mut pair = Pair::connect(&descriptors, 3).await?;
    pair.hub
        .set_bandwidth(pair.sender_id, pair.receiver_id, bandwidth);
    let to = pair.receiver_id;
    let counts: Arc<Vec<Padded>> = Arc::new((0..8).map(|_| Padded::default()).collect());
    let mut tasks = Vec::new();
    for tx in pair.txs.clone() {
        let body = payload();
        tasks.push(tokio::spawn(async move {
            for seq in 1.. {
                let message = BenchMsg {
                    seq,
                    // Non-zero so that every message encodes to the same size.
                    sent_ns: 1,
                    payload: body.clone(),
                };
                if tx.send(to, message).await.is_err() {
                    break;
                }
            }
        }));
    }
    for (i, mut rx) in pair.rxs.drain(..).enumerate() {
        let counts = counts.clone();
        tasks.push(tokio::spawn(async move {
            while rx.recv().await.is_some() {
                counts[i].0.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let snapshot =
        |c: &[Padded]| -> Vec<u64> { c.iter().map(|p| p.0.load(Ordering::Relaxed)).collect() };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (c0, t0) = (snapshot(&counts), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let (c1, t1) = (snapshot(&counts), Instant::now());
    for task in &tasks {
        task.abort();
    }
    let window = (t1 - t0).as_secs_f64();
    let got: Vec<u64> = c0.iter().zip(&c1).map(|(a, b)| b - a).collect();
    let total: u64 = got.iter().sum();
    let weight: u32 = PRIORITIES.iter().map(|&p| u32::from(p)).sum();
    let rate = total as f64 / window;
    println!(
        "measured over {window:.2} s after 0.5 s warm-up; every message is {} B encoded, so byte shares = message shares",
        encoded_len()
    );
    println!(
        "{:<8} {:>8} {:>12} {:>10} {:>10} {:>16}",
        "channel", "priority", "messages", "share", "expected", "share/expected"
    );
    let mut worst: f64 = 0.0;
    for i in 0..8 {
        let share = got[i] as f64 / total.max(1) as f64;
        let expected = f64::from(PRIORITIES[i]) / f64::from(weight);
        worst = worst.max((share / expected - 1.0).abs());
        println!(
            "{:<8} {:>8} {:>12} {:>9.2}% {:>9.2}% {:>16.2}",
            NAMES[i],
            PRIORITIES[i],
            got[i],
            share * 100.0,
            expected * 100.0,
            share / expected
        );
        report.result(
            &format!("{prefix}_share_{}_prio{}", NAMES[i], PRIORITIES[i]),
            format!("{share:.4}"),
            &format!("fraction (expected {expected:.4})"),
        );
    }
    println!(
        "total: {rate:.0} msgs/s ({:.1} MB/s payload); largest deviation from the weighted share: {:.0}%",
        rate * PAYLOAD_LEN as f64 / 1e6,
        worst * 100.0
    );
    report.result(&format!("{prefix}_total"), format!("{rate:.0}"), "msgs/s");
    report.result(
        &format!("{prefix}_max_share_deviation"),
        format!("{:.3}", worst),
        "fraction of expected",
    );
    pair.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// (e) small messages: 128-byte rate and ping-pong

/// The credit window (and send queue) of the 128-byte rate run.
const SMALL_WINDOW: usize = 1024;

/// A memory transport on a hub shared by every node this maker makes.
fn memory_transport(hub: MemoryHub) -> Box<switchyard_bench::compare::switchyard::MakeTransport> {
    Box::new(move |key: &Keypair| {
        let made = hub
            .transport(key.peer_id())
            .map(|t| Arc::new(t) as Arc<dyn p2p::transport::Transport>)
            .map_err(anyhow::Error::from);
        Box::pin(async move { made })
    })
}

/// Raw baseline of the rate run: one bounded mpsc pipe of the same
/// capacity carrying the encoded 128-byte message, for `duration`.
async fn raw_small_rate(duration: Duration) -> anyhow::Result<f64> {
    use prost::Message;
    use switchyard_bench::compare::{LAST, Msg, Pacer, SMALL_LEN, payload};
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(SMALL_WINDOW);
    let receiver = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(bytes) = rx.recv().await {
            let msg = Msg::decode(bytes)?;
            n += 1;
            if msg.seq == LAST {
                return anyhow::Ok((n, Instant::now()));
            }
        }
        bail!("raw pipe closed early")
    });
    let mut pacer = Pacer::new(duration);
    let start = pacer.start();
    let data = payload(SMALL_LEN);
    loop {
        let seq = pacer.next_seq();
        let msg = Msg {
            seq,
            data: data.clone(),
        };
        tx.send(bytes::Bytes::from(msg.encode_to_vec()))
            .await
            .map_err(|_| anyhow::anyhow!("raw receiver gone"))?;
        if seq == LAST {
            break;
        }
    }
    let (n, end) = receiver.await??;
    Ok(n as f64 / end.duration_since(start).as_secs_f64())
}

/// Raw baseline of the ping-pong: two bounded mpsc pipes and an echo task.
async fn raw_ping_pong(plan: switchyard_bench::compare::PingPlan) -> anyhow::Result<Vec<u64>> {
    use prost::Message;
    use switchyard_bench::compare::{Msg, SMALL_LEN, nanos, payload};
    let (to_echo, mut echo_rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
    let (echo_tx, mut back) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
    let echo = tokio::spawn(async move {
        while let Some(bytes) = echo_rx.recv().await {
            let msg = Msg::decode(bytes)?;
            if echo_tx
                .send(bytes::Bytes::from(msg.encode_to_vec()))
                .await
                .is_err()
            {
                break;
            }
        }
        anyhow::Ok(())
    });
    let data = payload(SMALL_LEN);
    let mut samples = Vec::with_capacity(plan.max);
    let mut sampling_since = None;
    let mut seq = 0;
    loop {
        seq += 1;
        let t0 = Instant::now();
        let msg = Msg {
            seq,
            data: data.clone(),
        };
        to_echo
            .send(bytes::Bytes::from(msg.encode_to_vec()))
            .await
            .map_err(|_| anyhow::anyhow!("echo gone"))?;
        let answer = Msg::decode(back.recv().await.context("echo closed")?)?;
        let rtt = t0.elapsed();
        if answer.seq != seq {
            bail!("sent ping {seq}, got {}", answer.seq);
        }
        if seq <= plan.warmup {
            continue;
        }
        let since = *sampling_since.get_or_insert(t0);
        samples.push(nanos(rtt));
        if samples.len() >= plan.max || since.elapsed() >= plan.duration {
            break;
        }
    }
    drop(to_echo);
    echo.await??;
    Ok(samples)
}

async fn small(duration: Duration, part: Option<SmallPart>) -> anyhow::Result<Vec<String>> {
    use switchyard_bench::compare::{PingPlan, SMALL_ENCODED, SMALL_LEN, percentile, switchyard};
    let mut results = Report {
        results: Vec::new(),
    };
    let plan = PingPlan {
        warmup: 1000,
        duration,
        max: 200_000,
    };
    match part {
        Some(SmallPart::Rate) => {
            let make = memory_transport(MemoryHub::new(7));
            let ours = switchyard::one_way(&*make, SMALL_LEN, SMALL_WINDOW, duration).await?;
            println!(
                "router 128 B rate alone: {} messages, {:.0} msgs/s",
                ours.tally.messages,
                ours.messages_per_sec()
            );
            results.result("small_rate_messages", ours.tally.messages, "messages");
            return Ok(results.results);
        }
        Some(SmallPart::PingPong) => {
            let make = memory_transport(MemoryHub::new(7));
            let mut rtt = switchyard::ping_pong(&*make, SMALL_LEN, plan).await?;
            let trips = plan.warmup + rtt.len() as u64;
            println!(
                "router 128 B ping-pong alone: {trips} round trips, p50 {:.1} us",
                percentile(&mut rtt, 50.0) as f64 / 1000.0
            );
            results.result("pingpong_round_trips", trips, "round trips");
            return Ok(results.results);
        }
        None => {}
    }
    println!();
    println!(
        "== (e) small messages over memory: {SMALL_ENCODED}-byte rate ({} s, one sender, send().await, window {SMALL_WINDOW}) and ping-pong (1,000 warm-up round trips, then {} s or 200,000 samples) ==",
        duration.as_secs_f64(),
        duration.as_secs_f64()
    );
    println!(
        "router: two routers on one memory hub, compare::switchyard runs (as tcp_compare); raw: tokio mpsc pipes of the same capacity carrying the prost-encoded message"
    );
    let hub = MemoryHub::new(7);
    let make = memory_transport(hub);
    let ours = switchyard::one_way(&*make, SMALL_LEN, SMALL_WINDOW, duration).await?;
    let raw = raw_small_rate(duration).await?;
    let mut our_rtt = switchyard::ping_pong(&*make, SMALL_LEN, plan).await?;
    let mut raw_rtt = raw_ping_pong(plan).await?;
    let us = |ns: u64| ns as f64 / 1000.0;
    let (o50, o99) = (
        percentile(&mut our_rtt, 50.0),
        percentile(&mut our_rtt, 99.0),
    );
    let (r50, r99) = (
        percentile(&mut raw_rtt, 50.0),
        percentile(&mut raw_rtt, 99.0),
    );
    println!(
        "{:<12} {:>14} {:>12} {:>12}",
        "pipe", "128 B msgs/s", "rtt p50 us", "rtt p99 us"
    );
    println!(
        "{:<12} {:>14.0} {:>12.1} {:>12.1}",
        "raw mpsc",
        raw,
        us(r50),
        us(r99)
    );
    println!(
        "{:<12} {:>14.0} {:>12.1} {:>12.1}",
        "router",
        ours.messages_per_sec(),
        us(o50),
        us(o99)
    );
    println!(
        "{:<12} {:>14.3} {:>12.2} {:>12.2}",
        "router/raw",
        ours.messages_per_sec() / raw,
        o50 as f64 / r50.max(1) as f64,
        o99 as f64 / r99.max(1) as f64
    );
    results.result(
        "small_rate_router",
        format!("{:.0}", ours.messages_per_sec()),
        "msgs/s",
    );
    results.result("small_rate_raw_mpsc", format!("{raw:.0}"), "msgs/s");
    results.result("pingpong_p50_router", format!("{:.1}", us(o50)), "us");
    results.result("pingpong_p99_router", format!("{:.1}", us(o99)), "us");
    results.result("pingpong_p50_raw_mpsc", format!("{:.1}", us(r50)), "us");
    results.result("pingpong_p99_raw_mpsc", format!("{:.1}", us(r99)), "us");
    Ok(results.results)
}
