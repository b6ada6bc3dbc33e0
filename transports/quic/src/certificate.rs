//! The certificate that carries a node's identity, and the strict reader
//! that turns a peer's certificate back into a [`PeerId`].
//!
//! A node's certificate is an X.509 v3 certificate made by `rcgen`,
//! self-signed with the node's ed25519 identity key, whose subject public
//! key is that same key. The PeerId *is* that key, so nothing else in the
//! certificate matters: names, validity dates and extensions are not
//! checked (identity does not depend on a clock). What is checked, by
//! [`peer_id_of`], before any signature:
//!
//! * the DER is one `Certificate` of at most [`MAX_CERTIFICATE_LEN`] bytes,
//!   with nothing after it;
//! * the subject public key and both signature algorithm fields are
//!   Ed25519 (OID 1.3.101.112, no parameters);
//! * the issuer equals the subject, and the signature over the
//!   `TBSCertificate` verifies with the subject key (`verify_strict`);
//! * the key is a valid ed25519 point (`PeerId::from_bytes`).
//!
//! That the peer *holds* the key is proven separately, by the TLS 1.3
//! `CertificateVerify` signature (see `tls.rs`). During a handshake only
//! the structural checks run ([`peer_id_in`]): the handshake signature
//! proves the key, so the self-signature adds nothing there.

use p2p::{Keypair, PeerId};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Largest certificate we parse. Ours is about 300 bytes.
pub const MAX_CERTIFICATE_LEN: usize = 4096;

/// `AlgorithmIdentifier { id-Ed25519 }` (RFC 8410 §3): the OID and no
/// parameters.
const ED25519_ALGORITHM: [u8; 7] = [0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];

/// A PKCS#8 v1 `PrivateKeyInfo` for an ed25519 seed (RFC 8410 §7) is this
/// prefix followed by the 32-byte seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Why a certificate was refused, or ours could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The DER does not have the expected structure.
    #[error("malformed certificate: {0}")]
    Malformed(&'static str),
    /// The certificate is over [`MAX_CERTIFICATE_LEN`].
    #[error("certificate of {0} bytes exceeds {MAX_CERTIFICATE_LEN}")]
    TooLarge(usize),
    /// A key or signature algorithm other than Ed25519.
    #[error("certificate {0} is not Ed25519")]
    NotEd25519(&'static str),
    /// Issuer and subject differ.
    #[error("certificate is not self-issued")]
    NotSelfIssued,
    /// The key is not a valid ed25519 public key.
    #[error("certificate key is not a valid ed25519 public key")]
    BadKey,
    /// The self-signature does not verify.
    #[error("certificate self-signature does not verify")]
    BadSelfSignature,
    /// rcgen could not make our certificate.
    #[error("cannot make the certificate: {0}")]
    Generate(String),
}

/// A node's certificate and its private key, as rustls takes them.
pub(crate) struct Identity {
    pub certificate: CertificateDer<'static>,
    pub pkcs8: Vec<u8>,
}

impl Identity {
    /// Makes the self-signed certificate of `keypair`.
    pub fn new(keypair: &Keypair) -> Result<Self, CertificateError> {
        let pkcs8 = ed25519_pkcs8(&keypair.secret_bytes());
        let der = PrivatePkcs8KeyDer::from(pkcs8.as_slice());
        let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)
            .map_err(|e| CertificateError::Generate(e.to_string()))?;
        let mut params = rcgen::CertificateParams::default();
        let mut name = rcgen::DistinguishedName::new();
        // For people reading the certificate; verifiers ignore it.
        name.push(rcgen::DnType::CommonName, keypair.peer_id().to_string());
        params.distinguished_name = name;
        let certificate = params
            .self_signed(&key)
            .map_err(|e| CertificateError::Generate(e.to_string()))?;
        Ok(Self {
            certificate: certificate.der().clone(),
            pkcs8,
        })
    }

    /// The private key in the form rustls loads.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.clone()))
    }
}

/// The PKCS#8 v1 encoding of an ed25519 secret seed.
pub fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = Vec::with_capacity(ED25519_PKCS8_PREFIX.len() + seed.len());
    der.extend_from_slice(&ED25519_PKCS8_PREFIX);
    der.extend_from_slice(seed);
    der
}

/// Checks that `der` is a self-signed Ed25519 certificate (the rules in the
/// module docs) and returns the PeerId its key names.
pub fn peer_id_of(der: &[u8]) -> Result<PeerId, CertificateError> {
    let (peer, tbs, signature) = parse(der)?;
    peer.verify(tbs, signature)
        .map_err(|_| CertificateError::BadSelfSignature)?;
    Ok(peer)
}

/// The PeerId a certificate names, after the structural checks of
/// [`peer_id_of`] but without verifying the self-signature. The TLS
/// verifiers use this: the handshake signature, verified with the key read
/// here, proves the PeerId (see `tls.rs`), so an ed25519 verification per
/// side is saved on every connection setup.
pub(crate) fn peer_id_in(der: &[u8]) -> Result<PeerId, CertificateError> {
    parse(der).map(|(peer, _, _)| peer)
}

/// The structural checks of [`peer_id_of`]: the key, the signed TBS bytes
/// and the signature, not yet verified.
fn parse(der: &[u8]) -> Result<(PeerId, &[u8], &[u8]), CertificateError> {
    if der.len() > MAX_CERTIFICATE_LEN {
        return Err(CertificateError::TooLarge(der.len()));
    }
    let mut outer = Reader::new(der);
    let certificate = outer.expect(SEQUENCE, "certificate")?;
    outer.finish("trailing bytes after the certificate")?;

    let mut certificate = Reader::new(certificate.content);
    let tbs = certificate.expect(SEQUENCE, "tbsCertificate")?;
    let algorithm = certificate.expect(SEQUENCE, "signatureAlgorithm")?;
    let signature = certificate.expect(BIT_STRING, "signatureValue")?;
    certificate.finish("trailing fields in the certificate")?;
    if algorithm.whole != ED25519_ALGORITHM {
        return Err(CertificateError::NotEd25519("signature algorithm"));
    }
    let signature = match signature.content {
        [0, signature @ ..] if signature.len() == 64 => signature,
        _ => return Err(CertificateError::Malformed("signature is not 64 bytes")),
    };

    let mut fields = Reader::new(tbs.content);
    if fields.peek_tag() == Some(VERSION_TAG) {
        fields.expect(VERSION_TAG, "version")?;
    }
    fields.expect(INTEGER, "serialNumber")?;
    let inner_algorithm = fields.expect(SEQUENCE, "signature")?;
    let issuer = fields.expect(SEQUENCE, "issuer")?;
    fields.expect(SEQUENCE, "validity")?;
    let subject = fields.expect(SEQUENCE, "subject")?;
    let spki = fields.expect(SEQUENCE, "subjectPublicKeyInfo")?;
    // Extensions and unique ids may follow; none of them matters here.
    if inner_algorithm.whole != ED25519_ALGORITHM {
        return Err(CertificateError::NotEd25519("TBS signature algorithm"));
    }
    if issuer.whole != subject.whole {
        return Err(CertificateError::NotSelfIssued);
    }

    let mut spki = Reader::new(spki.content);
    let key_algorithm = spki.expect(SEQUENCE, "key algorithm")?;
    let key = spki.expect(BIT_STRING, "subjectPublicKey")?;
    spki.finish("trailing fields in subjectPublicKeyInfo")?;
    if key_algorithm.whole != ED25519_ALGORITHM {
        return Err(CertificateError::NotEd25519("public key"));
    }
    let key = match key.content {
        [0, key @ ..] if key.len() == 32 => key,
        _ => return Err(CertificateError::Malformed("public key is not 32 bytes")),
    };
    let peer = PeerId::from_bytes(key).map_err(|_| CertificateError::BadKey)?;
    Ok((peer, tbs.whole, signature))
}

const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const SEQUENCE: u8 = 0x30;
/// `[0] EXPLICIT Version`.
const VERSION_TAG: u8 = 0xa0;

/// One DER element: its content, and its whole encoding (tag and length
/// included).
struct Element<'a> {
    content: &'a [u8],
    whole: &'a [u8],
}

/// A strict DER reader over a slice: definite lengths of at most two
/// bytes, minimal encodings, single-byte tags; never reads past the end.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn finish(&self, what: &'static str) -> Result<(), CertificateError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CertificateError::Malformed(what))
        }
    }

    /// Takes the next element, which must have tag `tag`.
    fn expect(&mut self, tag: u8, what: &'static str) -> Result<Element<'a>, CertificateError> {
        let bytes = self.rest;
        let malformed = || CertificateError::Malformed(what);
        let (&found, after_tag) = bytes.split_first().ok_or_else(malformed)?;
        if found != tag {
            return Err(malformed());
        }
        let (&first, after_len) = after_tag.split_first().ok_or_else(malformed)?;
        let (len, body) = match first {
            0x00..=0x7f => (usize::from(first), after_len),
            0x81 => match after_len {
                [len @ 0x80..=0xff, body @ ..] => (usize::from(*len), body),
                _ => return Err(malformed()),
            },
            0x82 => match after_len {
                [hi @ 0x01..=0xff, lo, body @ ..] => {
                    (usize::from(*hi) << 8 | usize::from(*lo), body)
                }
                _ => return Err(malformed()),
            },
            _ => return Err(malformed()),
        };
        if body.len() < len {
            return Err(malformed());
        }
        let header = bytes.len() - body.len();
        let (whole, rest) = bytes.split_at(header + len);
        self.rest = rest;
        Ok(Element {
            content: &body[..len],
            whole,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_certificate_names_our_peer_id() {
        let keypair = Keypair::from_seed(7);
        let identity = Identity::new(&keypair).expect("certificate");
        assert!(identity.certificate.len() < 1024);
        assert_eq!(peer_id_of(&identity.certificate), Ok(keypair.peer_id()));
    }

    #[test]
    fn a_changed_byte_anywhere_is_refused_or_names_another_key() {
        let keypair = Keypair::from_seed(8);
        let der = Identity::new(&keypair).expect("certificate").certificate;
        for i in 0..der.len() {
            let mut bad = der.to_vec();
            bad[i] ^= 0x01;
            // The only way to pass is to name the same key with a valid
            // self-signature, which a one-bit change cannot do.
            assert!(peer_id_of(&bad).is_err(), "byte {i} flipped still passes");
        }
    }

    #[test]
    fn the_accepted_path_reads_the_same_peer_and_keeps_the_structural_checks() {
        let keypair = Keypair::from_seed(9);
        let der = Identity::new(&keypair).expect("certificate").certificate;
        assert_eq!(peer_id_in(&der), Ok(keypair.peer_id()));
        assert!(peer_id_in(&der[..der.len() - 1]).is_err());
        let mut long = der.to_vec();
        long.push(0);
        assert!(peer_id_in(&long).is_err());
    }

    #[test]
    fn another_keys_signature_is_refused() {
        let a = Identity::new(&Keypair::from_seed(1))
            .expect("a")
            .certificate;
        let b = Identity::new(&Keypair::from_seed(2))
            .expect("b")
            .certificate;
        // Same length: swap the signature bit strings (the last 64 bytes).
        let mut forged = a.to_vec();
        let n = forged.len();
        forged[n - 64..].copy_from_slice(&b[b.len() - 64..]);
        assert_eq!(peer_id_of(&forged), Err(CertificateError::BadSelfSignature));
    }

    #[test]
    fn truncated_and_oversized_certificates_are_refused() {
        let der = Identity::new(&Keypair::from_seed(3))
            .expect("c")
            .certificate;
        for len in 0..der.len() {
            assert!(peer_id_of(&der[..len]).is_err(), "prefix of {len} passes");
        }
        let mut long = der.to_vec();
        long.push(0);
        assert!(peer_id_of(&long).is_err());
        assert!(matches!(
            peer_id_of(&vec![0x30; MAX_CERTIFICATE_LEN + 1]),
            Err(CertificateError::TooLarge(_))
        ));
    }

    #[test]
    fn pkcs8_of_a_seed_matches_rfc_8410() {
        // RFC 8410 §10.3's example private key.
        let seed: [u8; 32] = [
            0xd4, 0xee, 0x72, 0xdb, 0xf9, 0x13, 0x58, 0x4a, 0xd5, 0xb6, 0xd8, 0xf1, 0xf7, 0x69,
            0xf8, 0xad, 0x3a, 0xfe, 0x7c, 0x28, 0xcb, 0xf1, 0xd4, 0xfb, 0xe0, 0x97, 0xa8, 0x8f,
            0x44, 0x75, 0x58, 0x42,
        ];
        let expected = "MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC";
        let der = ed25519_pkcs8(&seed);
        assert_eq!(base64(&der), expected);
    }

    fn base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = peer_id_of(&bytes);
        }
    }
}
