//! Compose your own node: a key, the TCP transport, peer exchange, and a
//! home-made reactor, in a few lines.
//!
//! `cargo run --example custom_node`
//!
//! Two nodes start on loopback; the second knows the first as a bootstrap
//! peer. The `Greeter` reactor says hello to every peer that comes up and
//! hands the greetings it receives to the application through its handle.

use std::sync::Arc;
use std::time::Duration;

use switchyard::node::NodeBuilder;
use switchyard::p2p::{
    ChannelDescriptor, ChannelError, ChannelReceiver, ChannelSender, Keypair, PeerId, PeerStatus,
    Reactor, ReactorContext, RouterBuilder, RouterConfig,
};
use switchyard::reactor_pex::{Pex, PexConfig};
use switchyard::transport_tcp::{TcpConfig, TcpTransport};
use tokio::sync::mpsc;

/// The reactor's one message.
#[derive(Clone, PartialEq, prost::Message)]
struct Greeting {
    #[prost(string, tag = "1")]
    text: String,
}

/// Says hello to every peer that comes up.
struct Greeter {
    name: String,
    channel: Option<(ChannelSender<Greeting>, ChannelReceiver<Greeting>)>,
    greetings: mpsc::Sender<(PeerId, String)>,
}

/// What the application holds: the greetings received.
#[derive(Clone)]
struct GreeterHandle {
    greetings: Arc<tokio::sync::Mutex<mpsc::Receiver<(PeerId, String)>>>,
}

impl GreeterHandle {
    async fn next(&self) -> Option<(PeerId, String)> {
        self.greetings.lock().await.recv().await
    }
}

impl Greeter {
    fn new(name: &str) -> Self {
        let (greetings, _) = mpsc::channel(1);
        Self {
            name: name.into(),
            channel: None,
            greetings,
        }
    }
}

impl Reactor for Greeter {
    type Handle = GreeterHandle;

    fn name(&self) -> &'static str {
        "greeter"
    }

    fn open(&mut self, router: &mut RouterBuilder) -> Result<GreeterHandle, ChannelError> {
        self.channel = Some(router.open_channel(ChannelDescriptor::new(0x40, "greeter"))?);
        let (tx, rx) = mpsc::channel(64);
        self.greetings = tx;
        Ok(GreeterHandle {
            greetings: Arc::new(tokio::sync::Mutex::new(rx)),
        })
    }

    async fn run(self, ctx: ReactorContext) {
        let Some((tx, mut rx)) = self.channel else {
            return;
        };
        let mut updates = ctx.router.subscribe();
        loop {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                update = updates.recv() => match update {
                    Ok(u) if matches!(u.status, PeerStatus::Up { .. }) => {
                        let text = format!("hello from {}", self.name);
                        // try_send: a slow peer never blocks the reactor.
                        let _ = tx.try_send(u.peer, Greeting { text });
                    }
                    Ok(_) => {}
                    Err(_) => return,
                },
                envelope = rx.recv() => match envelope {
                    Some(e) => {
                        if self.greetings.try_send((e.from, e.message.text)).is_err() {
                            // The application is not reading: drop, as the
                            // router would.
                        }
                    }
                    None => return,
                },
            }
        }
    }
}

/// A node on loopback with peer exchange and a greeter.
async fn node(
    name: &str,
    bootstrap: Option<switchyard::p2p::PeerAddress>,
) -> anyhow::Result<(switchyard::node::Node, GreeterHandle)> {
    let key = Keypair::generate();
    let mut config = RouterConfig {
        network_id: "example".into(),
        ..RouterConfig::default()
    };
    config.peer_manager.bootstrap_peers.extend(bootstrap);
    // Both nodes are on loopback: let peer exchange learn loopback
    // addresses (a public node leaves this off).
    config.peer_manager.allow_private_addresses = true;
    let tcp = TcpConfig {
        network_id: "example".into(),
        ..TcpConfig::default()
    };
    let transport = TcpTransport::bind(&key, tcp).await?;
    let mut builder = NodeBuilder::new(key, config);
    builder.transport(Arc::new(transport));
    builder.reactor(Pex::new(PexConfig::default())?)?;
    let greeter = builder.reactor(Greeter::new(name))?;
    Ok((builder.start().await?, greeter))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (alice, alice_greeter) = node("alice", None).await?;
    let (bob, bob_greeter) =
        node("bob", alice.router().listen_addresses().first().cloned()).await?;
    for (who, handle) in [("alice", &alice_greeter), ("bob", &bob_greeter)] {
        match tokio::time::timeout(Duration::from_secs(10), handle.next()).await {
            Ok(Some((from, text))) => println!("{who} got {text:?} from {}", from.short()),
            _ => anyhow::bail!("{who} got no greeting"),
        }
    }
    bob.shutdown().await;
    alice.shutdown().await;
    Ok(())
}
