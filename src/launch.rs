//! A node from a [`Config`]: what `switchyard run` starts.
//!
//! The key is loaded from `key_file` (generated on first start), the peer
//! store lives in `<data_dir>/peers` (heed), the ring's (its location, a
//! gateway's grants) in `<data_dir>/ring` (heed), the rooms' checkpoints in
//! `<data_dir>/rooms` (heed), each enabled transport binds
//! its listen address, the enabled reactors run (peer exchange, gossip
//! with rooms, the ring), and the HTTP API serves on `api.listen` with the
//! reactors' routes ([`crate::gossip`], [`crate::ring`]). Once the node
//! runs, it joins the configured topics and opens the configured rooms.

use std::sync::Arc;

use anyhow::Context;
use p2p::{HeedPeerStore, Keypair, PeerId};
use reactor_gossip::Gossip;
use reactor_gossip::room::{HeedRoomStore, Rooms};
use reactor_ring::{HeedRingStore, Ring};
use transport_quic::QuicTransport;
use transport_tcp::TcpTransport;

use crate::config::{Config, RoomSection};
use crate::gossip::{GossipService, RoomSpec};
use crate::node::{Node, NodeBuilder, NodeError};

/// Loads the node's key, or generates and saves one.
pub fn load_key(config: &Config) -> anyhow::Result<Keypair> {
    let path = config.key_path();
    // The key file's errors name the file.
    Keypair::load_or_generate(&path).context("node key")
}

/// A node being built from a [`Config`], with what must happen once it
/// runs.
#[derive(Debug)]
pub struct Launch {
    /// The node, ready to start.
    pub builder: NodeBuilder,
    /// The gossip service, if gossip is enabled.
    pub gossip: Option<GossipService>,
    topics: Vec<String>,
    rooms: Vec<RoomSpec>,
}

impl Launch {
    /// Starts the node, then joins the configured topics and opens the
    /// configured rooms.
    pub async fn start(self) -> anyhow::Result<Node> {
        let node = self.builder.start().await.map_err(|error| {
            // Name the setting that chose the address.
            let field = match &error {
                NodeError::Api { .. } => Some("api.listen"),
                NodeError::Metrics { .. } => Some("metrics.listen"),
                _ => None,
            };
            match field {
                Some(field) => anyhow::Error::new(error).context(field),
                None => anyhow::Error::new(error),
            }
        })?;
        if let Some(gossip) = &self.gossip {
            let joined = async {
                for topic in &self.topics {
                    gossip
                        .join(topic)
                        .await
                        .with_context(|| format!("joining gossip topic {topic:?}"))?;
                }
                for room in self.rooms {
                    let name = room.name.clone();
                    gossip
                        .open_room(room)
                        .await
                        .with_context(|| format!("opening room {name:?}"))?;
                }
                anyhow::Ok(())
            };
            if let Err(error) = joined.await {
                node.shutdown().await;
                return Err(error);
            }
        }
        Ok(node)
    }
}

/// Builds the node `config` describes, ready to start. Binds the
/// transports' listen sockets.
pub async fn node_builder(config: &Config) -> anyhow::Result<Launch> {
    config.validate()?;
    let data_dir = config.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let keypair = load_key(config)?;
    let ring = &config.reactors.ring;
    let mut router_config = config.router_config();
    router_config.external_addresses = config.p2p.addresses(keypair.peer_id())?;
    if ring.enabled {
        // The ring negotiates a location with a gateway it is connected to.
        let bootstrap = &mut router_config.peer_manager.bootstrap_peers;
        for gateway in &ring.gateways {
            if !bootstrap.contains(gateway) {
                bootstrap.push(gateway.clone());
            }
        }
    }
    let mut builder = NodeBuilder::new(keypair.clone(), router_config);
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
            reactor_pex::Pex::new(config.reactors.pex.config.clone()).context("reactors.pex")?;
        builder.reactor(pex)?;
    }
    let mut launch = Launch {
        builder,
        gossip: None,
        topics: Vec::new(),
        rooms: Vec::new(),
    };
    let section = &config.reactors.gossip;
    if section.enabled {
        let gossip_config = section.config.clone();
        let gossip = Gossip::new(keypair.clone(), gossip_config.clone())
            .map_err(|e| anyhow::anyhow!("reactors.gossip: {e}"))?;
        let gossip = launch.builder.reactor(gossip)?;
        // Rooms resume at their saved head after a restart.
        let rooms_dir = data_dir.join("rooms");
        let room_store = HeedRoomStore::open(&rooms_dir)
            .with_context(|| format!("room store {}", rooms_dir.display()))?;
        let rooms = launch.builder.reactor(
            Rooms::new(gossip.clone(), section.room_config()).with_store(Box::new(room_store)),
        )?;
        let service = GossipService::new(gossip, Some(rooms), gossip_config.max_payload_size);
        launch.builder.routes(service.routes());
        launch.gossip = Some(service);
        launch.topics = section.topics.clone();
        for (i, room) in section.rooms.iter().enumerate() {
            launch.rooms.push(
                room_spec(config, &keypair, room)
                    .with_context(|| format!("reactors.gossip.rooms[{i}] ({:?})", room.name))?,
            );
        }
    }
    if ring.enabled {
        let own = ring.gateway.then(|| keypair.peer_id());
        let ring_config = ring.ring_config(own);
        // The ring keeps its location (and a gateway its grants) across
        // restarts, so neither moves nor lets a joiner draw another.
        let ring_dir = data_dir.join("ring");
        let ring_store = HeedRingStore::open(&ring_dir)
            .with_context(|| format!("ring store {}", ring_dir.display()))?;
        let reactor = if ring.gateway {
            Ring::gateway(keypair.clone(), ring_config)
        } else {
            Ring::new(keypair.clone(), ring_config)
        }
        .map_err(|e| anyhow::anyhow!("reactors.ring: {e}"))?
        .with_store(Box::new(ring_store));
        let handle = launch.builder.reactor(reactor)?;
        launch
            .builder
            .routes(crate::ring::routes(handle, ring.gateway));
    }
    if config.api.enabled {
        launch.builder.http_api(config.api.listen);
    }
    if let Some(listen) = config.metrics.listen {
        launch.builder.metrics_http(listen);
    }
    Ok(launch)
}

/// The room a `[[reactors.gossip.rooms]]` table describes, with the keys
/// this node holds.
fn room_spec(config: &Config, keypair: &Keypair, room: &RoomSection) -> anyhow::Result<RoomSpec> {
    let parse = |field: &str, id: &Option<String>| -> anyhow::Result<Option<PeerId>> {
        id.as_deref()
            .map(|id| {
                id.parse::<PeerId>()
                    .with_context(|| format!("{field} {id:?}"))
            })
            .transpose()
    };
    let me = keypair.peer_id();
    if room.admin.is_none() {
        // Every node that leaves admin out is the admin of its own room:
        // two such nodes are in two different rooms of the same name.
        tracing::warn!(
            room = %room.name,
            admin = %me,
            "room configured without admin: this node is its admin, and nodes whose config names another admin (or none) are in another room; set admin = \"{me}\" on every node that should share it"
        );
    }
    let admin = parse("admin", &room.admin)?.unwrap_or(me);
    let file_key = match &room.write_key_file {
        Some(file) => {
            let path = if file.is_absolute() {
                file.clone()
            } else {
                config.data_dir().join(file)
            };
            // The key file's errors name the file.
            Some(Keypair::load(&path).context("write_key_file")?)
        }
        None => None,
    };
    let write_key = match (parse("write_key", &room.write_key)?, &file_key) {
        (Some(key), _) => key,
        (None, Some(file_key)) => file_key.peer_id(),
        (None, None) => admin,
    };
    let writer = match file_key {
        Some(key) if key.peer_id() == write_key => Some(key),
        Some(key) => anyhow::bail!(
            "write_key_file holds the key of {}, not write_key {write_key}",
            key.peer_id()
        ),
        None => (write_key == me).then(|| keypair.clone()),
    };
    Ok(RoomSpec {
        name: room.name.clone(),
        admin,
        write_key,
        writer,
        admin_key: (admin == me).then(|| keypair.clone()),
    })
}

/// Starts the node `config` describes.
pub async fn start(config: &Config) -> anyhow::Result<Node> {
    node_builder(config).await?.start().await
}
