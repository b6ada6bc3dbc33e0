//! `switchyard`: run a node, write its configuration, run a local devnet,
//! and ask a running node's HTTP API for its status and peers.

mod client;
mod devnet;
mod output;
mod testnet;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use switchyard::config::{Config, LogFormat, default_config_toml};

use crate::output::outln;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A modular peer-to-peer networking stack"
)]
struct Cli {
    /// Data directory: config.toml, the node key, the peer store. Default:
    /// $SWITCHYARD_HOME, else ~/.switchyard.
    #[arg(long, global = true, env = "SWITCHYARD_HOME")]
    home: Option<PathBuf>,
    /// Configuration file (default: <home>/config.toml if it exists,
    /// else the embedded defaults).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Which logs to keep (`run`): a tracing filter such as `info` or
    /// `info,p2p=debug`. Overrides `RUST_LOG` and `[log] filter`.
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    /// How logs are written (`run`): `text` or `json`. Overrides
    /// `[log] format`.
    #[arg(long, global = true, value_name = "FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
    /// Whether `--home` was given on the command line.
    #[arg(skip)]
    home_given: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Write a commented config.toml and a node key into the data directory.
    Init {
        /// Overwrite an existing config.toml (the key is never overwritten).
        #[arg(long)]
        force: bool,
    },
    /// Run a node until SIGINT or SIGTERM.
    Run,
    /// Print this node's PeerId and listen addresses (from its key; the
    /// home must exist).
    Id,
    /// Run N node processes on loopback, bootstrapped from the first, and
    /// show each node's peers live. Ctrl-C stops them all.
    Devnet {
        /// Number of nodes.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// First port: node i listens on base+2i (TCP) and base+2i+1 (API).
        #[arg(long, default_value_t = 27100)]
        base_port: u16,
        /// Where the nodes' data directories go (default: `--home` if
        /// given, else a fresh temporary directory, removed at exit unless
        /// a node crashed).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Stop after this many seconds (0: run until Ctrl-C).
        #[arg(long, default_value_t = 0)]
        seconds: u64,
    },
    /// Write N ready node homes (keys, configs naming each other as
    /// bootstrap peers, distinct ports) for a test network on N hosts, or
    /// on this one.
    Testnet {
        /// Number of nodes (default: one per --hosts entry, else 4).
        #[arg(long)]
        nodes: Option<usize>,
        /// Where the homes go (`<out>/node0`, `node1`, ...); must be
        /// missing or empty unless --force.
        #[arg(long, default_value = "./testnet")]
        out: PathBuf,
        /// The host (name or IP) of each node, in order, comma-separated
        /// (default: 127.0.0.1 for every node).
        #[arg(long, value_delimiter = ',', conflicts_with = "starting_ip")]
        hosts: Vec<String>,
        /// Node i is at this IP plus i (10.0.0.1, 10.0.0.2, ...).
        #[arg(long)]
        starting_ip: Option<std::net::IpAddr>,
        /// First port: node i listens on base+2i (TCP) and serves its API
        /// on 127.0.0.1:base+2i+1.
        #[arg(long, default_value_t = 26656)]
        base_port: u16,
        /// The network id every node gets.
        #[arg(long, default_value = "switchyard-testnet")]
        network_id: String,
        /// Replace the node directories of a non-empty --out.
        #[arg(long)]
        force: bool,
    },
    /// Print a running node's status (GET /status).
    Status {
        /// The node's API address (default: api.listen from the config).
        #[arg(long)]
        api: Option<SocketAddr>,
        /// Print the API's JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a running node's peers (GET /peers).
    Peers {
        /// The node's API address (default: api.listen from the config).
        #[arg(long)]
        api: Option<SocketAddr>,
        /// Print the API's JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ban a peer on a running node: disconnected, refused and not dialed
    /// until the ban ends, across restarts (DELETE /peers/{peer}?ban=…).
    Ban {
        /// The peer's PeerId.
        peer: String,
        /// How long (`30s`, `10m`, `24h`, `7days`; at most a year).
        #[arg(long = "for", default_value = "24h")]
        duration: String,
        /// The node's API address (default: api.listen from the config).
        #[arg(long)]
        api: Option<SocketAddr>,
    },
    /// Lift a peer's ban on a running node (DELETE /bans/{peer}).
    Unban {
        /// The peer's PeerId.
        peer: String,
        /// The node's API address (default: api.listen from the config).
        #[arg(long)]
        api: Option<SocketAddr>,
    },
    /// Print a running node's bans (GET /bans).
    Bans {
        /// The node's API address (default: api.listen from the config).
        #[arg(long)]
        api: Option<SocketAddr>,
    },
    /// Print a completion script for a shell: `switchyard completions bash
    /// > ~/.local/share/bash-completion/completions/switchyard`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Rooms: replicated chat rooms over gossip.
    #[command(subcommand)]
    Room(RoomCommand),
}

#[derive(Subcommand)]
enum RoomCommand {
    /// Make a room's write key and print the [[reactors.gossip.rooms]]
    /// block that opens it (this node is the admin unless --admin).
    New {
        /// The room's name.
        name: String,
        /// Where to save the write key (default:
        /// <home>/room-keys/<name>.key). An existing file is never
        /// overwritten.
        #[arg(long, value_name = "PATH")]
        key_file: Option<PathBuf>,
        /// The admin's PeerId (default: this node's).
        #[arg(long, value_name = "PEER_ID")]
        admin: Option<switchyard::p2p::PeerId>,
    },
}

fn main() -> std::process::ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    // `devnet` puts its directories in `--home` when it is given on the
    // command line, not when it only comes from $SWITCHYARD_HOME (that is a
    // node's home, not a place for a devnet).
    cli.home_given = matches.value_source("home") == Some(clap::parser::ValueSource::CommandLine);
    match real_main(cli).and_then(|()| Ok(output::flush()?)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader of our output went away (`| head -1`): nothing is
        // wrong, and there is nobody to tell.
        Err(error) if output::is_broken_pipe(&error) => std::process::ExitCode::SUCCESS,
        Err(error) if JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) => {
            tracing::error!(error = %error_text(&error), "switchyard stopped on an error");
            std::process::ExitCode::FAILURE
        }
        Err(error) => {
            output::error_line(format_args!("error: {}", error_text(&error)));
            std::process::ExitCode::FAILURE
        }
    }
}

/// `error` and its causes, outermost first, joined by `": "`; a cause
/// whose text the message already contains is left out. Many errors
/// (ours, thiserror's `{source}` idiom, the transports') print their
/// source in their own message and return it as their source too, so
/// printing every cause would say the OS error twice (`Address already in
/// use (os error 98): Address already in use (os error 98)`).
fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match cli.command {
        Command::Init { force } => init(cli.home, force),
        Command::Run => {
            let mut config = load_config(cli.home, cli.config.as_deref())?;
            if let Some(format) = cli.log_format.as_deref() {
                config.log.format = match format {
                    "json" => LogFormat::Json,
                    _ => LogFormat::Text,
                };
            }
            init_logs(&config, cli.log_level.as_deref())?;
            runtime.block_on(run(config))
        }
        Command::Id => {
            let config = load_config(cli.home, cli.config.as_deref())?;
            id(&config)
        }
        Command::Devnet {
            nodes,
            base_port,
            dir,
            seconds,
        } => {
            // `--home` is where the devnet's directories go; `--config` the
            // config every node starts from.
            let home = cli.home.filter(|_| cli.home_given);
            let dir = match (dir, home) {
                (Some(dir), Some(home)) if dir != home => anyhow::bail!(
                    "--dir {} and --home {} name different directories; give one",
                    dir.display(),
                    home.display()
                ),
                (dir, home) => dir.or(home),
            };
            runtime.block_on(devnet::run(devnet::Options {
                nodes,
                base_port,
                dir,
                config: cli.config,
                seconds,
            }))
        }
        Command::Status { api, json } => {
            let api = api_address(api, cli.home, cli.config.as_deref())?;
            runtime.block_on(client::status(api, json))
        }
        Command::Peers { api, json } => {
            let api = api_address(api, cli.home, cli.config.as_deref())?;
            runtime.block_on(client::peers(api, json))
        }
        Command::Ban {
            peer,
            duration,
            api,
        } => {
            let api = api_address(api, cli.home, cli.config.as_deref())?;
            runtime.block_on(client::ban(api, &peer, &duration))
        }
        Command::Unban { peer, api } => {
            let api = api_address(api, cli.home, cli.config.as_deref())?;
            runtime.block_on(client::unban(api, &peer))
        }
        Command::Bans { api } => {
            let api = api_address(api, cli.home, cli.config.as_deref())?;
            runtime.block_on(client::bans(api))
        }
        Command::Room(RoomCommand::New {
            name,
            key_file,
            admin,
        }) => {
            let config = load_config(cli.home, cli.config.as_deref())?;
            let made = switchyard::room::new_room(&config, &name, admin, key_file.as_deref())?;
            outln!("{}", made.block.trim_end())?;
            Ok(())
        }
        Command::Completions { shell } => completions(shell),
        Command::Testnet {
            nodes,
            out,
            hosts,
            starting_ip,
            base_port,
            network_id,
            force,
        } => testnet::run(testnet::Options {
            nodes: nodes.unwrap_or(if hosts.is_empty() { 4 } else { hosts.len() }),
            out,
            hosts,
            starting_ip,
            base_port,
            network_id,
            force,
        }),
    }
}

/// Writes the completion script of `shell` to standard output (through
/// [`output`], so `| head` or a full disk end it as any other output).
fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "switchyard", &mut script);
    let script = String::from_utf8(script).context("the completion script is not UTF-8")?;
    output::text(&script)?;
    Ok(())
}

/// The configuration: `--config`, else `<home>/config.toml` if present,
/// else the defaults. `--home` overrides `data_dir`.
fn load_config(home: Option<PathBuf>, path: Option<&Path>) -> anyhow::Result<Config> {
    let default_path = home
        .clone()
        .unwrap_or_else(|| Config::default().data_dir())
        .join("config.toml");
    let mut config = match path {
        Some(path) => Config::load(path)?,
        None if default_path.exists() => Config::load(&default_path)?,
        None => Config::default(),
    };
    if let Some(home) = home {
        config.data_dir = Some(home);
    }
    config.validate()?;
    Ok(config)
}

fn api_address(
    given: Option<SocketAddr>,
    home: Option<PathBuf>,
    path: Option<&Path>,
) -> anyhow::Result<SocketAddr> {
    match given {
        Some(api) => Ok(api),
        None => Ok(load_config(home, path)?.api.listen),
    }
}

/// Starts the logger: `--log-level`, else `RUST_LOG`, else `[log] filter`.
fn init_logs(config: &Config, level: Option<&str>) -> anyhow::Result<()> {
    let filter = match level {
        Some(level) => tracing_subscriber::EnvFilter::try_new(level)
            .with_context(|| format!("--log-level {level:?}"))?,
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.filter))
            .context("log.filter")?,
    };
    // Logs go to standard error: standard output is the command's own
    // output. A failed write of a log line is not reported on the same
    // broken stream (tracing-subscriber would `eprintln!` it).
    // Colour only for a terminal: never escape codes in a file or a pipe.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false);
    let result = match config.log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("starting the logger: {e}"))?;
    JSON_LOGS.store(
        config.log.format == LogFormat::Json,
        std::sync::atomic::Ordering::Relaxed,
    );
    Ok(())
}

/// Whether logs are JSON lines: standard error then carries nothing else,
/// the final error included (as a JSON event).
static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn init(home: Option<PathBuf>, force: bool) -> anyhow::Result<()> {
    let mut config = Config::default();
    if let Some(home) = home {
        config.data_dir = Some(home);
    }
    let dir = config.data_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("config.toml");
    if path.exists() && !force {
        anyhow::bail!("{} exists; pass --force to overwrite it", path.display());
    }
    let text = if config == Config::default() {
        default_config_toml()?
    } else {
        config.to_commented_toml()?
    };
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    let key = switchyard::launch::load_key(&config)?;
    outln!("wrote {}", path.display())?;
    outln!(
        "node key {} (PeerId {})",
        config.key_path().display(),
        key.peer_id()
    )?;
    Ok(())
}

/// Prints the node's PeerId and addresses. It reads the key and creates
/// nothing: a home or key that is not there is an error saying how to make
/// it (`init`, or `run`).
fn id(config: &Config) -> anyhow::Result<()> {
    let home = config.data_dir();
    if !home.is_dir() {
        anyhow::bail!(
            "the home {} does not exist: `switchyard --home {} init` creates it, with a key",
            home.display(),
            home.display()
        );
    }
    let path = config.key_path();
    if !path.exists() {
        anyhow::bail!(
            "no node key at {}: `switchyard init` (or the first `run`) creates one",
            path.display()
        );
    }
    let key = switchyard::p2p::Keypair::load(&path).context("node key")?;
    let peer = key.peer_id();
    outln!("{peer}")?;
    // What peers should dial: the external addresses if set, else the
    // listen addresses.
    let external = config.p2p.addresses(peer)?;
    if !external.is_empty() {
        for address in external {
            outln!("{address}")?;
        }
        return Ok(());
    }
    let mut unspecified = false;
    for (scheme, listen) in [
        ("tcp", config.tcp_config().map(|c| c.listen)),
        ("quic", config.quic_config().map(|c| c.listen)),
    ] {
        if let Some(listen) = listen {
            unspecified |= listen.ip().is_unspecified();
            outln!("{}", p2p_address(scheme, peer, listen))?;
        }
    }
    if unspecified {
        output::error_line(format_args!(
            "note: {} is not an address peers can dial; give them this host's address, or set [p2p] external_addresses",
            std::net::Ipv4Addr::UNSPECIFIED
        ));
    }
    Ok(())
}

fn p2p_address(scheme: &str, peer: switchyard::p2p::PeerId, listen: SocketAddr) -> String {
    match scheme {
        "quic" => switchyard::p2p::PeerAddress::quic(peer, listen).to_string(),
        _ => switchyard::p2p::PeerAddress::tcp(peer, listen).to_string(),
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    // Handlers first: a signal that arrives while the node starts (or just
    // after it says it runs) must stop it gracefully, not kill it.
    let signals = Signals::install()?;
    let node = switchyard::launch::start(&config).await?;
    let listen: Vec<String> = node
        .router()
        .listen_addresses()
        .iter()
        .map(ToString::to_string)
        .collect();
    // Plain values, one per field: a log reader gets `127.0.0.1:26658`,
    // not Rust's `Some(127.0.0.1:26658)`.
    tracing::info!(
        peer = %node.peer_id(),
        network = node.network_id(),
        listen = %listen.join(" "),
        api = node.api_address().map(tracing::field::display),
        metrics = node.metrics_address().map(tracing::field::display),
        "node running"
    );
    // Standard output is a summary for whoever started the node (in text
    // mode: with JSON logs, the "node running" event says it all and
    // nothing plain is written); a reader that goes away does not stop the
    // node.
    let summary = config.log.format == LogFormat::Text;
    if summary {
        output::notice(format_args!("switchyard node {}", node.peer_id()));
        for address in &listen {
            output::notice(format_args!("  listening on {address}"));
        }
        if let Some(api) = node.api_address() {
            output::notice(format_args!("  HTTP API on http://{api}"));
        }
    }
    let signal = signals.wait().await;
    tracing::info!(signal, "shutting down");
    node.shutdown().await;
    tracing::info!(signal, "node stopped");
    if summary {
        output::notice(format_args!("stopped ({signal})"));
    }
    Ok(())
}

/// SIGINT and SIGTERM handlers, installed before the node starts.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("installing a SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing a SIGTERM handler")?,
        })
    }

    /// Waits for SIGINT or SIGTERM; returns which.
    async fn wait(mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
