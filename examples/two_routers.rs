//! Two routers with a typed channel over the in-process memory transport.
//!
//! Run with `cargo run --example two_routers`.

use std::sync::Arc;

use switchyard::p2p::{ChannelDescriptor, Keypair, PeerAddress, RouterBuilder, RouterConfig};
use switchyard::transport_memory::MemoryHub;

/// One Protobuf message type per channel.
#[derive(Clone, PartialEq, prost::Message)]
struct Greeting {
    #[prost(string, tag = "1")]
    text: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let hub = MemoryHub::new(7);
    let (alice_key, bob_key) = (Keypair::generate(), Keypair::generate());
    let bob_id = bob_key.peer_id();

    let mut alice = RouterBuilder::new(alice_key.clone(), RouterConfig::default());
    alice.transport(Arc::new(hub.transport(alice_key.peer_id())?));
    let (alice_tx, _alice_rx) =
        alice.open_channel::<Greeting>(ChannelDescriptor::new(0x20, "greet"))?;
    let alice = alice.start()?;

    let mut bob = RouterBuilder::new(bob_key, RouterConfig::default());
    bob.transport(Arc::new(hub.transport(bob_id)?));
    let (_bob_tx, mut bob_rx) =
        bob.open_channel::<Greeting>(ChannelDescriptor::new(0x20, "greet"))?;
    let bob = bob.start()?;

    let mut updates = alice.subscribe();
    alice.dial(PeerAddress::memory(bob_id)).await?;
    updates.recv().await?; // bob is up

    alice_tx
        .send(
            bob_id,
            Greeting {
                text: "hello, bob".into(),
            },
        )
        .await?;
    if let Some(envelope) = bob_rx.recv().await {
        println!(
            "bob got {:?} from {}",
            envelope.message.text,
            envelope.from.short()
        );
    }
    alice.shutdown().await;
    bob.shutdown().await;
    Ok(())
}
