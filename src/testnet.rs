//! `switchyard testnet`: writes N ready home directories for a test network
//! (as `cometbft testnet` does), to copy to N hosts or run side by side on
//! one.
//!
//! Each `DIR/node<i>` holds a node key (`node_key.hex`) and a commented
//! `config.toml` (as `switchyard init` writes it) with:
//!
//! * the network id (`--network-id`, default `switchyard-testnet`);
//! * distinct ports: node `i` listens for peers (TCP) on `base + 2i` and
//!   serves its HTTP API on `127.0.0.1:base + 2i + 1`;
//! * every other node as a bootstrap peer, at its host (`--hosts a,b,c`,
//!   one per node; or `--starting-ip`, node `i` at that IP plus `i`; by
//!   default every node at `127.0.0.1`);
//! * the gossip topic `testnet` joined at start;
//! * a node on a loopback IP listens on it; any other listens on `0.0.0.0`
//!   and announces its host as `[p2p] external_addresses`;
//! * when the hosts are loopback or private addresses: private addresses
//!   allowed, and the per-host and per-network limits raised to N, since
//!   all the nodes share a host or a network.
//!
//! No `data_dir` is written: run a node with `switchyard --home
//! DIR/node<i> run`, wherever the directory was copied. `DIR` must be
//! missing or empty, unless `--force`, which replaces the `node<i>`
//! directories (their keys and peer stores) and leaves anything else.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use switchyard::config::Config;
use switchyard::p2p::{Keypair, PeerAddress};

use crate::output::outln;

/// The gossip topic every testnet node joins.
pub const TESTNET_TOPIC: &str = "testnet";

/// What `switchyard testnet` was asked for.
#[derive(Debug)]
pub struct Options {
    /// Number of nodes.
    pub nodes: usize,
    /// Where the homes go.
    pub out: PathBuf,
    /// One host (name or IP) per node.
    pub hosts: Vec<String>,
    /// Node `i` at this IP plus `i`.
    pub starting_ip: Option<IpAddr>,
    /// Node `i` listens on `base_port + 2i`, its API on `+ 1`.
    pub base_port: u16,
    /// The network id.
    pub network_id: String,
    /// Replace the `node<i>` directories of a non-empty `out`.
    pub force: bool,
}

/// `ip + n`, if it does not overflow.
fn add_to_ip(ip: IpAddr, n: usize) -> Option<IpAddr> {
    let n = u32::try_from(n).ok()?;
    Some(match ip {
        IpAddr::V4(v4) => IpAddr::V4(u32::from(v4).checked_add(n)?.into()),
        IpAddr::V6(v6) => IpAddr::V6(u128::from(v6).checked_add(u128::from(n))?.into()),
    })
}

/// Whether `ip` is on this host or a private network (the address book
/// refuses those unless `allow_private_addresses`).
fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_local(IpAddr::V4(v4)))
        }
    }
}

/// `host:port` as an address's authority (an IPv6 literal in brackets).
fn authority(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

/// The hosts of the nodes, one each.
fn hosts(options: &Options) -> anyhow::Result<Vec<String>> {
    let n = options.nodes;
    match (&options.hosts[..], options.starting_ip) {
        ([], None) => Ok(vec![IpAddr::from([127, 0, 0, 1]).to_string(); n]),
        ([], Some(start)) => (0..n)
            .map(|i| {
                add_to_ip(start, i)
                    .map(|ip| ip.to_string())
                    .with_context(|| format!("--starting-ip {start} has no room for {n} nodes"))
            })
            .collect(),
        (hosts, None) => {
            anyhow::ensure!(
                hosts.len() == n,
                "--hosts names {} hosts for {n} nodes; give one per node",
                hosts.len()
            );
            for host in hosts {
                let name = !host.is_empty() && !host.contains([':', '/', '@', ' ', '[', ']']);
                anyhow::ensure!(
                    name || host.parse::<IpAddr>().is_ok(),
                    "--hosts: {host:?} is not a host name or an IP address"
                );
            }
            Ok(hosts.to_vec())
        }
        (_, Some(_)) => anyhow::bail!("give --hosts or --starting-ip, not both"),
    }
}

/// One node of the testnet as the others see it.
struct Planned {
    home: PathBuf,
    key: Keypair,
    host: String,
    p2p_port: u16,
    api: SocketAddr,
}

impl Planned {
    fn address(&self) -> anyhow::Result<PeerAddress> {
        let text = format!(
            "tcp://{}@{}",
            self.key.peer_id(),
            authority(&self.host, self.p2p_port)
        );
        text.parse()
            .map_err(|e| anyhow::anyhow!("{text}: not an address: {e}"))
    }
}

/// Whether `dir` is missing or an empty directory.
fn is_empty_dir(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

/// Writes the homes and prints what to run.
pub fn run(options: Options) -> anyhow::Result<()> {
    let n = options.nodes;
    anyhow::ensure!((1..=64).contains(&n), "--nodes must be between 1 and 64");
    anyhow::ensure!(
        u32::from(options.base_port) + 2 * n as u32 <= 65535,
        "--base-port {} leaves no room for {n} nodes",
        options.base_port
    );
    anyhow::ensure!(options.base_port > 0, "--base-port must not be 0");
    let hosts = hosts(&options)?;
    let out = &options.out;
    if !is_empty_dir(out)? && !options.force {
        anyhow::bail!(
            "{} exists and is not empty; pass --force to replace its node directories",
            out.display()
        );
    }
    let base = Config {
        network_id: options.network_id.clone(),
        ..Config::default()
    };
    // Local hosts share one host or one private network: let the address
    // book take them and the per-host and per-network limits hold them all.
    let ips: Vec<Option<IpAddr>> = hosts.iter().map(|h| h.parse().ok()).collect();
    let local = ips.iter().flatten().any(|ip| is_local(*ip));
    let mut planned = Vec::with_capacity(n);
    for (i, host) in hosts.iter().enumerate() {
        let home = out.join(format!("node{i}"));
        if home.exists() {
            std::fs::remove_dir_all(&home)
                .with_context(|| format!("removing the old {}", home.display()))?;
        }
        std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
        let key = Keypair::load_or_generate(&home.join(&base.key_file)).context("node key")?;
        let port = options.base_port + 2 * i as u16;
        planned.push(Planned {
            home,
            key,
            host: host.clone(),
            p2p_port: port,
            api: SocketAddr::from(([127, 0, 0, 1], port + 1)),
        });
    }
    let addresses = planned
        .iter()
        .map(Planned::address)
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (i, node) in planned.iter().enumerate() {
        let mut config = base.clone();
        let ip = ips[i];
        config.transports.tcp.listen = match ip {
            Some(ip) if ip.is_loopback() => SocketAddr::new(ip, node.p2p_port),
            Some(IpAddr::V6(_)) => SocketAddr::from(([0u16; 8], node.p2p_port)),
            _ => SocketAddr::from(([0, 0, 0, 0], node.p2p_port)),
        };
        if !ip.is_some_and(|ip| ip.is_loopback()) {
            config.p2p.external_addresses =
                vec![format!("tcp://{}", authority(&node.host, node.p2p_port))];
        }
        config.api.listen = node.api;
        config.peers.bootstrap = addresses
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, a)| a.clone())
            .collect();
        if local {
            config.peers.allow_private_addresses = true;
            config.peers.max_ports_per_host = config.peers.max_ports_per_host.max(n);
            config.peers.max_inbound = config.peers.max_inbound.max(n);
            config.peers.max_inbound_per_prefix = config.peers.max_inbound_per_prefix.max(n);
            config.limits.max_pending_handshakes_per_prefix =
                config.limits.max_pending_handshakes_per_prefix.max(n);
            config.transports.tcp.max_handshakes_per_prefix =
                config.transports.tcp.max_handshakes_per_prefix.max(n);
        }
        config.reactors.gossip.topics = vec![TESTNET_TOPIC.into()];
        config
            .validate()
            .with_context(|| format!("node {i}'s config"))?;
        let text = format!(
            "# Written by `switchyard testnet`: node {i} of {n}. Run it with\n# `switchyard --home <this directory> run`.\n\n{}",
            config.to_commented_toml()?
        );
        let path = node.home.join("config.toml");
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    outln!(
        "wrote {n} node homes in {} (network {})",
        out.display(),
        options.network_id
    )?;
    for (node, address) in planned.iter().zip(&addresses) {
        outln!(
            "  {}  {}  api http://{}",
            node.home.display(),
            address,
            node.api
        )?;
    }
    outln!("run each with `switchyard --home <dir> run` (on its host: copy the directory there)")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_count_up_and_stop_at_the_end() {
        let v4: IpAddr = "10.0.0.254".parse().expect("ip");
        assert_eq!(add_to_ip(v4, 1), Some("10.0.0.255".parse().expect("ip")));
        assert_eq!(add_to_ip(v4, 2), Some("10.0.1.0".parse().expect("ip")));
        let last: IpAddr = "255.255.255.255".parse().expect("ip");
        assert_eq!(add_to_ip(last, 1), None);
        let v6: IpAddr = "fd00::ffff".parse().expect("ip");
        assert_eq!(add_to_ip(v6, 1), Some("fd00::1:0".parse().expect("ip")));
    }

    #[test]
    fn local_addresses_are_recognised() {
        for local in ["127.0.0.1", "10.1.2.3", "192.168.0.7", "::1", "fd00::1"] {
            assert!(is_local(local.parse().expect("ip")), "{local}");
        }
        for public in ["203.0.113.7", "2001:db8::1", "8.8.8.8"] {
            assert!(!is_local(public.parse().expect("ip")), "{public}");
        }
    }

    #[test]
    fn an_ipv6_host_is_bracketed() {
        assert_eq!(authority("::1", 7), "[::1]:7");
        assert_eq!(authority("a.example", 7), "a.example:7");
    }
}
