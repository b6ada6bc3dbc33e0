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
//! * the input is at most [`MAX_CERTIFICATE_LEN`] bytes, checked before
//!   any parsing, and is one DER `Certificate` with nothing after it;
//! * the DER is strict (the `der` crate under `x509-cert`): definite,
//!   minimal lengths; every declared length is checked against the bytes
//!   that remain before anything is read or allocated for it; the
//!   `TBSCertificate` decodes as RFC 5280 lays it out (`x509-cert`);
//! * the subject public key and both signature algorithm fields are
//!   Ed25519 (OID 1.3.101.112, no parameters), the key a 32-byte and the
//!   signature a 64-byte BIT STRING with no unused bits;
//! * the issuer equals the subject, and the signature over the
//!   `TBSCertificate`, as the bytes it was received in, verifies with the
//!   subject key (`verify_strict`);
//! * the key is a valid ed25519 point (`PeerId::from_bytes`).
//!
//! Each refusal is a [`CertificateError`] that says which rule failed; a
//! DER error carries the decoder's reason and byte offset.
//!
//! That the peer *holds* the key is proven separately, by the TLS 1.3
//! `CertificateVerify` signature (see `tls.rs`). During a handshake only
//! the structural checks run ([`peer_id_in`]): the handshake signature
//! proves the key, so the self-signature adds nothing there.
//!
//! The private key goes to rustls and rcgen as PKCS#8 (RFC 8410 §7, the
//! v2 form with the public key), encoded by ed25519-dalek
//! ([`ed25519_pkcs8`]).

use ed25519_dalek::pkcs8::EncodePrivateKey;
use p2p::{Keypair, PeerId};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_cert::TbsCertificate;
use x509_cert::der::asn1::BitStringRef;
use x509_cert::der::oid::db::rfc8410::ID_ED_25519;
use x509_cert::der::{Decode, Reader, SliceReader};
use x509_cert::spki::AlgorithmIdentifier;

/// Largest certificate we parse. Ours is about 300 bytes.
pub const MAX_CERTIFICATE_LEN: usize = 4096;

/// Why a certificate was refused, or ours could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The DER does not have the expected structure (a rule of ours).
    #[error("malformed certificate: {0}")]
    Malformed(&'static str),
    /// The bytes are not strict DER for an X.509 certificate: the
    /// decoder's reason, with the byte offset where it failed.
    #[error("malformed certificate DER: {0}")]
    Der(String),
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
    /// Our key or certificate could not be made.
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
        let pkcs8 = ed25519_pkcs8(&keypair.secret_bytes())?;
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

/// The PKCS#8 encoding of an ed25519 secret seed: RFC 8410's
/// `OneAsymmetricKey` (v2), with the public key, as ed25519-dalek writes
/// it. rustls (ring) and rcgen load it, and ring checks that the public key
/// matches the seed.
pub fn ed25519_pkcs8(seed: &[u8; 32]) -> Result<Vec<u8>, CertificateError> {
    let document = ed25519_dalek::SigningKey::from_bytes(seed)
        .to_pkcs8_der()
        .map_err(|e| CertificateError::Generate(format!("PKCS#8: {e}")))?;
    Ok(document.as_bytes().to_vec())
}

/// Checks that `der` is a self-signed Ed25519 certificate (the rules in the
/// module docs) and returns the PeerId its key names.
pub fn peer_id_of(der: &[u8]) -> Result<PeerId, CertificateError> {
    let parsed = parse(der)?;
    parsed
        .peer
        .verify(parsed.tbs, parsed.signature)
        .map_err(|_| CertificateError::BadSelfSignature)?;
    Ok(parsed.peer)
}

/// The PeerId a certificate names, after the structural checks of
/// [`peer_id_of`] but without verifying the self-signature. The TLS
/// verifiers use this: the handshake signature, verified with the key read
/// here, proves the PeerId (see `tls.rs`), so an ed25519 verification per
/// side is saved on every connection setup.
pub(crate) fn peer_id_in(der: &[u8]) -> Result<PeerId, CertificateError> {
    parse(der).map(|parsed| parsed.peer)
}

/// What the structural checks return: the key, and the signed bytes and
/// signature, not yet verified.
struct Parsed<'a> {
    peer: PeerId,
    /// The `TBSCertificate` exactly as received (tag and length included).
    tbs: &'a [u8],
    signature: &'a [u8],
}

fn der_error(e: x509_cert::der::Error) -> CertificateError {
    CertificateError::Der(e.to_string())
}

/// Ed25519's `AlgorithmIdentifier` (RFC 8410 §3): the OID and no
/// parameters.
fn is_ed25519<P>(algorithm: &AlgorithmIdentifier<P>) -> bool {
    algorithm.oid == ID_ED_25519 && algorithm.parameters.is_none()
}

/// The structural checks of [`peer_id_of`].
fn parse(der: &[u8]) -> Result<Parsed<'_>, CertificateError> {
    if der.len() > MAX_CERTIFICATE_LEN {
        return Err(CertificateError::TooLarge(der.len()));
    }
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm,
    // signatureValue }. The TBS is kept as the bytes received, since the
    // signature covers exactly those; the sequence must hold these three
    // fields and nothing more, and nothing may follow it.
    let mut reader = SliceReader::new(der).map_err(der_error)?;
    let (tbs, algorithm, signature) = reader
        .sequence(|fields| {
            let tbs = fields.tlv_bytes()?;
            let algorithm: AlgorithmIdentifier<x509_cert::der::asn1::AnyRef<'_>> =
                fields.decode()?;
            let signature: BitStringRef<'_> = fields.decode()?;
            Ok::<_, x509_cert::der::Error>((tbs, algorithm, signature))
        })
        .map_err(der_error)?;
    reader.finish().map_err(der_error)?;
    if !is_ed25519(&algorithm) {
        return Err(CertificateError::NotEd25519("signature algorithm"));
    }
    let signature = match signature.as_bytes() {
        Some(signature) if signature.len() == 64 => signature,
        _ => return Err(CertificateError::Malformed("signature is not 64 bytes")),
    };

    let fields = TbsCertificate::from_der(tbs).map_err(der_error)?;
    if !is_ed25519(fields.signature()) {
        return Err(CertificateError::NotEd25519("TBS signature algorithm"));
    }
    if fields.issuer() != fields.subject() {
        return Err(CertificateError::NotSelfIssued);
    }
    let spki = fields.subject_public_key_info();
    if !is_ed25519(&spki.algorithm) {
        return Err(CertificateError::NotEd25519("public key"));
    }
    let key = match spki.subject_public_key.as_bytes() {
        Some(key) if key.len() == 32 => key,
        _ => return Err(CertificateError::Malformed("public key is not 32 bytes")),
    };
    let peer = PeerId::from_bytes(key).map_err(|_| CertificateError::BadKey)?;
    Ok(Parsed {
        peer,
        tbs,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use data_encoding::HEXLOWER;

    fn certificate(seed: u64) -> CertificateDer<'static> {
        Identity::new(&Keypair::from_seed(seed))
            .expect("certificate")
            .certificate
    }

    fn hex(s: &str) -> Vec<u8> {
        HEXLOWER.decode(s.as_bytes()).expect("hex")
    }

    /// `der` with its outermost header (`30 82 hi lo`) rewritten for a body
    /// of `body` bytes.
    fn with_outer_body(der: &[u8], body: Vec<u8>) -> Vec<u8> {
        assert_eq!(&der[..2], &[0x30, 0x82], "a two-byte outer length");
        let len = u16::try_from(body.len()).expect("small");
        let mut out = vec![0x30, 0x82];
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn our_certificate_names_our_peer_id() {
        let keypair = Keypair::from_seed(7);
        let identity = Identity::new(&keypair).expect("certificate");
        assert!(identity.certificate.len() < 1024);
        assert_eq!(peer_id_of(&identity.certificate), Ok(keypair.peer_id()));
    }

    /// rcgen's serial number, name and key differ with every key: the
    /// strict reader accepts what we make for any of them.
    #[test]
    fn every_certificate_we_make_is_accepted() {
        for seed in 0..64 {
            let der = certificate(seed);
            assert_eq!(
                peer_id_of(&der),
                Ok(Keypair::from_seed(seed).peer_id()),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn a_changed_byte_anywhere_is_refused_or_names_another_key() {
        let der = certificate(8);
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
        let a = certificate(1);
        let b = certificate(2);
        // Same length: swap the signature bit strings (the last 64 bytes).
        let mut forged = a.to_vec();
        let n = forged.len();
        forged[n - 64..].copy_from_slice(&b[b.len() - 64..]);
        assert_eq!(peer_id_of(&forged), Err(CertificateError::BadSelfSignature));
        // The structural checks alone do not see it: the handshake
        // signature is what proves the key there.
        assert_eq!(peer_id_in(&forged), Ok(Keypair::from_seed(1).peer_id()));
    }

    #[test]
    fn truncated_and_oversized_certificates_are_refused() {
        let der = certificate(3);
        for len in 0..der.len() {
            assert!(
                matches!(peer_id_of(&der[..len]), Err(CertificateError::Der(_))),
                "prefix of {len} passes"
            );
        }
        let mut long = der.to_vec();
        long.push(0);
        let err = peer_id_of(&long).expect_err("trailing byte");
        assert!(
            matches!(&err, CertificateError::Der(reason) if reason.contains("trailing")),
            "{err}"
        );
        assert_eq!(
            peer_id_of(&vec![0x30; MAX_CERTIFICATE_LEN + 1]),
            Err(CertificateError::TooLarge(MAX_CERTIFICATE_LEN + 1))
        );
    }

    /// DER has one encoding per value: a length in more bytes than it
    /// needs is refused, even where no signature covers it.
    #[test]
    fn a_non_minimal_length_is_refused() {
        let der = certificate(4);
        // The signature is the last field: `03 41 00` and 64 bytes.
        let n = der.len();
        assert_eq!(&der[n - 67..n - 64], &[0x03, 0x41, 0x00]);
        let mut body = der[4..n - 67].to_vec();
        body.extend_from_slice(&[0x03, 0x81, 0x41, 0x00]);
        body.extend_from_slice(&der[n - 64..]);
        let stretched = with_outer_body(&der, body);
        assert!(
            matches!(peer_id_in(&stretched), Err(CertificateError::Der(_))),
            "{:?}",
            peer_id_in(&stretched)
        );
    }

    /// A length that claims far more than the input holds is refused from
    /// the header, before anything is read or allocated for it.
    #[test]
    fn a_length_beyond_the_input_is_refused() {
        let der = certificate(5);
        let mut huge = vec![0x30, 0x84, 0x0f, 0xff, 0xff, 0xff];
        huge.extend_from_slice(&der[4..]);
        assert!(matches!(peer_id_of(&huge), Err(CertificateError::Der(_))));
    }

    /// A certificate for an Ed25519 key that another key signed.
    #[test]
    fn a_certificate_issued_by_another_key_is_refused() {
        let issuer_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("issuer key");
        let mut issuer_params = rcgen::CertificateParams::default();
        issuer_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "issuer");
        let issuer = issuer_params.self_signed(&issuer_key).expect("issuer");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "subject");
        let der = params
            .signed_by(&key, &issuer, &issuer_key)
            .expect("certificate")
            .der()
            .clone();
        assert_eq!(peer_id_of(&der), Err(CertificateError::NotSelfIssued));
        assert_eq!(peer_id_in(&der), Err(CertificateError::NotSelfIssued));
    }

    /// A self-signed certificate with an ECDSA P-256 key.
    #[test]
    fn another_key_type_is_refused() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("p256");
        let der = rcgen::CertificateParams::default()
            .self_signed(&key)
            .expect("certificate")
            .der()
            .clone();
        assert!(matches!(
            peer_id_of(&der),
            Err(CertificateError::NotEd25519(_))
        ));
    }

    #[test]
    fn pkcs8_of_a_seed_matches_rfc_8410() {
        // RFC 8410 §10.3's example key: its seed, and its public key as
        // the second example carries it.
        let seed = hex("d4ee72dbf913584ad5b6d8f1f769f8ad3afe7c28cbf1d4fbe097a88f44755842");
        let public = hex("19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1");
        let seed: [u8; 32] = seed.try_into().expect("32 bytes");
        // OneAsymmetricKey { version v2(1), Ed25519, OCTET STRING { seed },
        // [1] publicKey }: the RFC's second example without its
        // attributes.
        let mut expected = hex("3051020101300506032b657004220420");
        expected.extend_from_slice(&seed);
        expected.extend_from_slice(&hex("812100"));
        expected.extend_from_slice(&public);
        let der = ed25519_pkcs8(&seed).expect("pkcs8");
        assert_eq!(der, expected);
    }

    #[test]
    fn pkcs8_loads_into_rustls_and_back_into_the_same_key() {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let keypair = Keypair::from_seed(11);
        let der = ed25519_pkcs8(&keypair.secret_bytes()).expect("pkcs8");
        let back = ed25519_dalek::SigningKey::from_pkcs8_der(&der).expect("decodes");
        assert_eq!(back.to_bytes(), keypair.secret_bytes());
        let provider = rustls::crypto::ring::default_provider();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der));
        let signer = provider
            .key_provider
            .load_private_key(key)
            .expect("ring loads it");
        assert_eq!(signer.algorithm(), rustls::SignatureAlgorithm::ED25519);
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = peer_id_of(&bytes);
        }

        /// Arbitrary edits of a real certificate: accepted only unchanged.
        #[test]
        fn edits_of_a_real_certificate_pass_only_unchanged(
            edits in proptest::collection::vec((proptest::prelude::any::<u16>(), proptest::prelude::any::<u8>()), 1..4),
        ) {
            let der = certificate(12);
            let mut edited = der.to_vec();
            for (at, byte) in edits {
                let at = usize::from(at) % edited.len();
                edited[at] = byte;
            }
            if let Ok(peer) = peer_id_of(&edited) {
                proptest::prop_assert_eq!(peer, Keypair::from_seed(12).peer_id());
                proptest::prop_assert_eq!(&edited[..], &der[..]);
            }
        }
    }
}
