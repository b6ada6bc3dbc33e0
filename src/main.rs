//! `switchyard`: today, an in-process devnet of routers over the memory
//! transport that gossip numbered pings and print a live table.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchyard::p2p::{ChannelDescriptor, PeerStatus};
use switchyard::testkit::Network;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A modular peer-to-peer networking stack"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run N routers in this process over the memory transport, full mesh,
    /// each broadcasting a ping per tick; print each node's peers and counts.
    Devnet {
        /// Number of nodes.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Stop after this many seconds (0: run until Ctrl-C).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Seed of keys and randomness.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// The devnet's one message.
#[derive(Clone, PartialEq, prost::Message)]
struct Ping {
    #[prost(uint64, tag = "1")]
    seq: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Devnet {
            nodes,
            seconds,
            seed,
        } => devnet(nodes, seconds, seed).await,
    }
}

async fn devnet(nodes: usize, seconds: u64, seed: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        (2..=64).contains(&nodes),
        "--nodes must be between 2 and 64"
    );
    let mut net = Network::builder()
        .seed(seed)
        .nodes(nodes)
        .full_mesh()
        .build()?;
    let channels = net
        .open_channel_on_all::<Ping>(ChannelDescriptor::new(0x01, "ping"))
        .context("opening the ping channel")?;
    net.start()?;
    println!("switchyard devnet: {nodes} nodes over the memory transport (Ctrl-C to stop)");
    for i in 0..nodes {
        println!("  node {i}: {}", net.router(i).listen_addresses()[0]);
    }
    let mut received = vec![0u64; nodes];
    let mut counters = Vec::new();
    let mut senders = Vec::new();
    for (i, (tx, mut rx)) in channels.into_iter().enumerate() {
        senders.push(tx);
        let (count_tx, count_rx) = tokio::sync::watch::channel(0u64);
        counters.push(count_rx);
        tokio::spawn(async move {
            let mut n = 0;
            while rx.recv().await.is_some() {
                n += 1;
                let _ = count_tx.send(n);
            }
        });
        let mut updates = net.router(i).subscribe();
        tokio::spawn(async move {
            while let Ok(update) = updates.recv().await {
                if let PeerStatus::Down { reason } = update.status {
                    tracing::info!(node = i, peer = %update.peer.short(), %reason, "peer down");
                }
            }
        });
    }
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut seq = 0u64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = tick.tick() => {}
        }
        for tx in &senders {
            tx.broadcast(Ping { seq });
        }
        seq += 1;
        if seq % 10 == 0 {
            println!(
                "\n t={:>3}s  node  peer-id   peers  pings-received",
                started.elapsed().as_secs()
            );
            for (i, counter) in counters.iter().enumerate() {
                received[i] = *counter.borrow();
                println!(
                    "         {i:>4}  {}  {:>5}  {:>14}",
                    net.peer_id(i).short(),
                    net.router(i).connected_peers().len(),
                    received[i]
                );
            }
        }
        if seconds > 0 && started.elapsed() >= Duration::from_secs(seconds) {
            break;
        }
    }
    net.shutdown().await;
    println!("\nstopped cleanly; pings received per node: {received:?}");
    Ok(())
}
