//! Criterion: single-channel throughput of the router over the memory
//! transport next to a raw bounded `tokio::sync::mpsc` pipe, 100,000
//! messages of a 256-byte payload per iteration, one sender task and one
//! receiver task, on a tokio runtime with 2 worker threads.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchyard_bench::{Pair, descriptor, run_raw, run_router};

const MESSAGES: u64 = 100_000;

fn single_channel(c: &mut Criterion) {
    println!("{}", switchyard_bench::machine::describe());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut pair = runtime
        .block_on(Pair::connect(&[descriptor(0x10, "bench", 1)], 1))
        .expect("connected router pair");
    let tx = pair.txs[0].clone();
    let to = pair.receiver_id;
    let mut rx = Some(pair.rxs.pop().expect("one receiver"));

    let mut group = c.benchmark_group("single_channel_256B_memory");
    group.throughput(Throughput::Elements(MESSAGES));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(8));

    group.bench_function("raw_mpsc_vec_u8", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let stats = run_raw(MESSAGES).await.expect("raw run");
                    total += stats.elapsed;
                }
                total
            })
        })
    });

    group.bench_function("router_memory_transport", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let receiver = rx.take().expect("receiver returned by the last run");
                    let started = Instant::now();
                    let (_, back) = run_router(tx.clone(), receiver, to, MESSAGES)
                        .await
                        .expect("router run");
                    total += started.elapsed();
                    rx = Some(back);
                }
                total
            })
        })
    });
    group.finish();

    runtime.block_on(pair.shutdown());
}

criterion_group!(benches, single_channel);
criterion_main!(benches);
