//! A node from a [`Config`]: what `switchyard run` starts.
//!
//! The key is loaded from `key_file` (generated on first start), the peer
//! store lives in `<data_dir>/peers` (heed), each enabled transport binds
//! its listen address, peer exchange runs if enabled, and the HTTP API
//! serves on `api.listen`.

use std::sync::Arc;

use anyhow::Context;
use p2p::{HeedPeerStore, Keypair};
use transport_quic::QuicTransport;
use transport_tcp::TcpTransport;

use crate::config::Config;
use crate::node::{Node, NodeBuilder};

/// Loads the node's key, or generates and saves one.
pub fn load_key(config: &Config) -> anyhow::Result<Keypair> {
    let path = config.key_path();
    Keypair::load_or_generate(&path).with_context(|| format!("node key {}", path.display()))
}

/// Builds the node `config` describes, ready to start. Binds the
/// transports' listen sockets.
pub async fn node_builder(config: &Config) -> anyhow::Result<NodeBuilder> {
    config.validate()?;
    let data_dir = config.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let keypair = load_key(config)?;
    let mut builder = NodeBuilder::new(keypair.clone(), config.router_config());
    if let Some(tcp) = config.tcp_config() {
        let listen = tcp.listen;
        let transport = TcpTransport::bind(&keypair, tcp)
            .await
            .with_context(|| format!("transports.tcp.listen: cannot listen on {listen}"))?;
        builder.transport(Arc::new(transport));
    }
    if let Some(quic) = config.quic_config() {
        let listen = quic.listen;
        let transport = QuicTransport::bind(&keypair, quic)
            .await
            .with_context(|| format!("transports.quic.listen: cannot listen on {listen}"))?;
        builder.transport(Arc::new(transport));
    }
    let store_dir = data_dir.join("peers");
    let store = HeedPeerStore::open(&store_dir)
        .with_context(|| format!("peer store {}", store_dir.display()))?;
    builder.peer_store(Box::new(store));
    if config.reactors.pex.enabled {
        let pex =
            reactor_pex::Pex::new(config.reactors.pex.pex_config()).context("reactors.pex")?;
        builder.reactor(pex)?;
    }
    if config.api.enabled {
        builder.http_api(config.api.listen);
    }
    Ok(builder)
}

/// Starts the node `config` describes.
pub async fn start(config: &Config) -> anyhow::Result<Node> {
    Ok(node_builder(config).await?.start().await?)
}
