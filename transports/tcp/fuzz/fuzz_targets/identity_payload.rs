//! Arbitrary bytes into `transport_tcp::handshake::decode_identity`, which
//! checks the identity payload a peer sends inside the Noise handshake
//! (version byte, ed25519 public key, signature over the Noise static key).
//!
//! The last 32 bytes of the input are the Noise static key (fewer if the
//! input is shorter), the rest is the payload. It must never panic, and it
//! must never accept a payload of the wrong length or version, nor return a
//! PeerId other than the one in the payload. As a control, for inputs of at
//! most 32 bytes, a payload signed by a keypair derived from the key must be
//! accepted.

#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p::Keypair;
use transport_tcp::handshake::{
    IDENTITY_PAYLOAD_LEN, IDENTITY_PAYLOAD_VERSION, decode_identity, identity_payload,
};

fuzz_target!(|data: &[u8]| {
    let split = data.len().saturating_sub(32);
    let (payload, key) = data.split_at(split);

    if let Ok(peer) = decode_identity(payload, key) {
        assert_eq!(payload.len(), IDENTITY_PAYLOAD_LEN);
        assert_eq!(payload[0], IDENTITY_PAYLOAD_VERSION);
        assert_eq!(&payload[1..33], peer.as_bytes());
    }

    // Control, only for inputs that are all key (signing and verifying are
    // slow under the sanitizer): a genuine payload for this key verifies, a
    // cut or extended one does not.
    if payload.is_empty() {
        let mut secret = [0u8; 32];
        secret[..key.len()].copy_from_slice(key);
        let keypair = Keypair::from_secret_bytes(secret);
        let genuine = identity_payload(&keypair, key);
        let peer = decode_identity(&genuine, key).expect("a genuine payload verifies");
        assert_eq!(peer, keypair.peer_id());
        assert!(decode_identity(&genuine[..IDENTITY_PAYLOAD_LEN - 1], key).is_err());
        let mut longer = genuine.to_vec();
        longer.push(0);
        assert!(decode_identity(&longer, key).is_err());
    }
});
