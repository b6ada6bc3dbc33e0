//! Arbitrary bytes into `transport_quic::peer_id_of`, the reader of the
//! certificate a peer presents in the QUIC handshake (x509-cert on der,
//! then our rules: Ed25519 everywhere, self-issued, a valid key, a
//! self-signature that verifies).
//!
//! The first byte picks what the rest is:
//!
//! * even: the certificate itself, arbitrary bytes;
//! * odd: edits to a real certificate (ours, made as the transport makes
//!   it), three bytes an edit: what (set, insert, remove, truncate),
//!   where, and which byte. This reaches deep into the DER, where random
//!   bytes rarely get.
//!
//! Checks that it never panics; that anything over `MAX_CERTIFICATE_LEN`
//! is refused as too large; that an accepted certificate contains the key
//! it names; and that an edited certificate passes only if the edits
//! changed nothing (DER has one encoding per value, and `verify_strict`
//! one signature per message and key), naming the original key.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use p2p::{Keypair, PeerId};
use transport_quic::{CertificateError, MAX_CERTIFICATE_LEN, ed25519_pkcs8, peer_id_of};

/// Edits applied to the real certificate, at most.
const MAX_EDITS: usize = 8;

/// A real certificate and the PeerId it names, made once.
fn real() -> &'static (Vec<u8>, PeerId) {
    static REAL: OnceLock<(Vec<u8>, PeerId)> = OnceLock::new();
    REAL.get_or_init(|| {
        let keypair = Keypair::from_seed(1);
        let pkcs8 = ed25519_pkcs8(&keypair.secret_bytes()).expect("pkcs8");
        let key = rcgen::KeyPair::try_from(pkcs8.as_slice()).expect("ed25519 key");
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, keypair.peer_id().to_string());
        let certificate = params.self_signed(&key).expect("certificate");
        let der = certificate.der().to_vec();
        assert_eq!(peer_id_of(&der), Ok(keypair.peer_id()), "the control passes");
        (der, keypair.peer_id())
    })
}

/// `peer_id_of` on `bytes`, with the checks that hold for any input.
fn check(bytes: &[u8]) -> Result<PeerId, CertificateError> {
    let result = peer_id_of(bytes);
    match &result {
        Ok(peer) => {
            assert!(bytes.len() <= MAX_CERTIFICATE_LEN);
            assert!(
                bytes.windows(32).any(|w| w == peer.as_bytes()),
                "the accepted certificate does not contain the key it names"
            );
        }
        Err(e) => {
            if bytes.len() > MAX_CERTIFICATE_LEN {
                assert_eq!(*e, CertificateError::TooLarge(bytes.len()));
            }
            assert!(!e.to_string().is_empty());
        }
    }
    result
}

/// The real certificate with `edits` applied.
fn edited(original: &[u8], edits: &[u8]) -> Vec<u8> {
    let mut der = original.to_vec();
    for edit in edits.chunks_exact(3).take(MAX_EDITS) {
        let (what, at, byte) = (edit[0], usize::from(edit[1]), edit[2]);
        // `at` scaled to the certificate (about 300 bytes), and a finer
        // step from the edit kind's high bits.
        let at = (at * der.len() / 256 + usize::from(what >> 2)).min(der.len());
        match what & 3 {
            0 if at < der.len() => der[at] = byte,
            1 => der.insert(at, byte),
            2 if at < der.len() => {
                der.remove(at);
            }
            3 => der.truncate(at),
            _ => {}
        }
    }
    der
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        let _ = check(data);
        return;
    };
    if mode & 1 == 0 {
        let _ = check(rest);
        return;
    }
    let (original, peer) = real();
    let der = edited(original, rest);
    if let Ok(named) = check(&der) {
        assert_eq!(named, *peer, "an edited certificate names another key");
        assert!(der == *original, "an edited certificate passes: {der:02x?}");
    }
});
