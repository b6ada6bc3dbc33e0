//! TLS for QUIC (rustls): TLS 1.3 only, the ring provider, our ALPN, and
//! custom certificate verifiers on both sides.
//!
//! Both verifiers apply the same rules (ADR 0006):
//!
//! 1. exactly one certificate, no chain;
//! 2. it has the strict shape of our Ed25519 certificates (the structural
//!    checks of [`peer_id_of`]), and its key is the PeerId;
//! 3. the TLS 1.3 `CertificateVerify` signature uses `ed25519` and
//!    verifies (`PeerId::verify`, `verify_strict`) with that very key, as
//!    our own parser read it, proving the peer holds the key;
//! 4. the client additionally requires the PeerId it dialed, and records
//!    the PeerId that answered so the dial can fail with `WrongPeer`.
//!
//! The certificate's self-signature is not verified during the handshake:
//! rule 3 already proves that the peer holds the key the PeerId names, over
//! this handshake's transcript, and nothing else in the certificate is
//! used (ADR 0006). Checking it too cost an ed25519 verification per side
//! on the critical path of every connection setup and proved nothing more:
//! anyone who can sign the handshake with a key can also self-sign a
//! certificate with it. Verifying rule 3 with the key our parser read,
//! rather than with webpki's reading of the same DER, leaves no room for
//! the two parsers to disagree on which key was proven.
//!
//! The server requires a client certificate: a client without one fails
//! the handshake (`certificate_required`). Session resumption and 0-RTT are
//! off, so every connection proves both keys afresh.

use std::sync::Arc;

use p2p::PeerId;
use parking_lot::Mutex;
use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ResolvesServerCert;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::certificate::{CertificateError, Identity, peer_id_in};

/// The protocol part of the ALPN; the network id follows it.
pub const ALPN_PREFIX: &str = "switchyard/1/";

/// Longest network id that fits an ALPN protocol name (255 bytes).
pub const MAX_NETWORK_ID_LEN: usize = p2p::MAX_NETWORK_ID_LEN;

// The ALPN (at most 255 bytes) holds the prefix and any network id.
const _: () = assert!(ALPN_PREFIX.len() + MAX_NETWORK_ID_LEN <= 255);

/// The ALPN protocol name of `network_id`: `switchyard/1/<network-id>`.
pub fn alpn(network_id: &str) -> Vec<u8> {
    format!("{ALPN_PREFIX}{network_id}").into_bytes()
}

/// The ring provider, restricted to what we use.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn refuse(e: CertificateError) -> rustls::Error {
    tracing::debug!(error = %e, "peer certificate refused");
    rustls::Error::InvalidCertificate(match e {
        CertificateError::BadSelfSignature => rustls::CertificateError::BadSignature,
        other => rustls::CertificateError::Other(rustls::OtherError(Arc::new(other))),
    })
}

/// Rules 1 and 2 (the self-signature is left to rule 3; see the module
/// docs).
fn check_certificate(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<PeerId, rustls::Error> {
    if !intermediates.is_empty() {
        return Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Other(rustls::OtherError(Arc::new(
                CertificateError::Malformed("expected one self-signed certificate, got a chain"),
            ))),
        ));
    }
    peer_id_in(end_entity).map_err(refuse)
}

/// Rule 3: the handshake signature verifies with the key rules 1 and 2
/// read from `cert`.
fn check_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(rustls::Error::PeerMisbehaved(
            rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
        ));
    }
    let peer = peer_id_in(cert).map_err(refuse)?;
    peer.verify(message, dss.signature()).map_err(|e| {
        tracing::debug!(error = %e, "handshake signature refused");
        rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
    })?;
    Ok(HandshakeSignatureValid::assertion())
}

fn no_tls12() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered)
}

/// The dialer's verifier of the listener's certificate.
#[derive(Debug)]
pub(crate) struct ServerVerifier {
    expected: Option<PeerId>,
    /// The PeerId the certificate named, whether or not it was expected.
    answered: Arc<Mutex<Option<PeerId>>>,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let peer = check_certificate(end_entity, intermediates)?;
        *self.answered.lock() = Some(peer);
        match self.expected {
            Some(expected) if expected != peer => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The listener's verifier of the dialer's certificate.
#[derive(Debug)]
pub(crate) struct ClientVerifier;

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_certificate(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Always presents our certificate when the server asks for one.
#[derive(Debug)]
struct OurCertificate(Arc<CertifiedKey>);

impl ResolvesClientCert for OurCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A node's TLS material, made once: its certificate and signing key, and
/// the ALPN of its network.
#[derive(Debug)]
pub(crate) struct Tls {
    provider: Arc<CryptoProvider>,
    certified: Arc<CertifiedKey>,
    alpn: Vec<u8>,
}

impl Tls {
    pub fn new(identity: &Identity, network_id: &str) -> Result<Self, rustls::Error> {
        let provider = provider();
        let key = provider
            .key_provider
            .load_private_key(identity.private_key())?;
        let certified = Arc::new(CertifiedKey::new(vec![identity.certificate.clone()], key));
        Ok(Self {
            provider,
            certified,
            alpn: alpn(network_id),
        })
    }

    /// The ALPN protocol name we speak.
    pub fn alpn(&self) -> &[u8] {
        &self.alpn
    }

    /// The listener's TLS configuration.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, rustls::Error> {
        let verifier = Arc::new(ClientVerifier);
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(SingleCertAndKey(self.certified.clone())));
        config.alpn_protocols = vec![self.alpn.clone()];
        // No resumption: every connection proves both keys.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config.max_early_data_size = 0;
        Ok(config)
    }

    /// The dialer's TLS configuration for one dial, expecting `expected`;
    /// the PeerId that answered is written to `answered`.
    pub fn client_config(
        &self,
        expected: Option<PeerId>,
        answered: Arc<Mutex<Option<PeerId>>>,
    ) -> Result<rustls::ClientConfig, rustls::Error> {
        let verifier = Arc::new(ServerVerifier { expected, answered });
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(OurCertificate(self.certified.clone())));
        config.alpn_protocols = vec![self.alpn.clone()];
        config.resumption = rustls::client::Resumption::disabled();
        config.enable_early_data = false;
        // The server name is a constant; do not send it.
        config.enable_sni = false;
        Ok(config)
    }
}

/// Always presents our certificate to a client.
#[derive(Debug)]
struct SingleCertAndKey(Arc<CertifiedKey>);

impl ResolvesServerCert for SingleCertAndKey {
    fn resolve(&self, _client_hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}
