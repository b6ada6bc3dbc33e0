//! quinn endpoints for the raw baseline, configured as `transport-quic`
//! configures its own, minus the identity rules:
//!
//! * the same quinn `TransportConfig`: the one `transport-quic` builds
//!   (`QuicConfig::transport_config`) from `QuicConfig::default()`
//!   (stream and connection receive windows, stream limits, idle timeout,
//!   keep-alive, no datagrams), migration off; the run's socket buffers
//!   ([`SocketBuffers`](crate::buffers::SocketBuffers));
//! * the same rustls crypto provider (ring, its default suites: both ends
//!   agree on `TLS13_AES_256_GCM_SHA384`, AES-256-GCM, as Switchyard's
//!   do), TLS 1.3 only, no resumption, no 0-RTT, so that every connection
//!   makes a full handshake and the packet protection is the same cipher;
//! * without Switchyard's identity rules: the listener presents a
//!   self-signed ed25519 certificate (rcgen) and the dialer's verifier
//!   accepts any certificate, checking only the handshake signature
//!   ([`Auth::Server`]); or, as Switchyard does, both sides present one and
//!   both check the other's handshake signature ([`Auth::Mutual`], mutual
//!   TLS: the client's certificate and `CertificateVerify` go in its second
//!   flight, with its Finished).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{TransportConfig, VarInt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use transport_quic::QuicConfig;

/// The ALPN both sides speak.
const ALPN: &[u8] = b"switchyard-bench/raw-quinn";

/// The TLS server name the dialer uses (the verifier ignores it).
const SERVER_NAME: &str = "raw-quinn";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Who proves a key in the TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// The listener only (plain server-authenticated TLS).
    Server,
    /// Both sides (mutual TLS), as Switchyard's QUIC transport does.
    Mutual,
}

/// A fresh self-signed ed25519 certificate and its key.
fn certificate() -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let certificate = rcgen::CertificateParams::new(vec![SERVER_NAME.into()])?.self_signed(&key)?;
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((certificate.der().clone(), private))
}

/// `transport-quic`'s own quinn transport settings for one side
/// (`QuicConfig::transport_config`, from `QuicConfig::default()`), except
/// that the raw client opens its one bidirectional stream itself (in
/// Switchyard the listener opens it, in 0.5-RTT data): the listener allows
/// one, the dialer none.
fn transport_config(listener: bool) -> anyhow::Result<TransportConfig> {
    let mut config = QuicConfig::default()
        .transport_config(listener)
        .context("transport-quic's transport config")?;
    config.max_concurrent_bidi_streams(quinn::VarInt::from_u32(u32::from(listener)));
    Ok(config)
}

/// A UDP socket on a free loopback port, its buffers asking for `buffers`
/// bytes each way (`None`: the kernel's defaults), as a quinn endpoint.
fn endpoint(
    server: Option<quinn::ServerConfig>,
    buffers: Option<usize>,
) -> anyhow::Result<quinn::Endpoint> {
    let config = QuicConfig::default();
    let socket = std::net::UdpSocket::bind(config.listen)?;
    if let Some(bytes) = buffers {
        let state = quinn::udp::UdpSocketState::new((&socket).into())?;
        state.set_recv_buffer_size((&socket).into(), bytes)?;
        state.set_send_buffer_size((&socket).into(), bytes)?;
    }
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )?)
}

/// A listening endpoint with a fresh self-signed certificate; under
/// [`Auth::Mutual`] it requires a client certificate and checks the
/// client's handshake signature.
pub fn listener(auth: Auth, buffers: Option<usize>) -> anyhow::Result<quinn::Endpoint> {
    let (certificate, private) = certificate()?;
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match auth {
        Auth::Server => builder.with_no_client_auth(),
        Auth::Mutual => builder.with_client_cert_verifier(Arc::new(AnyClient { algorithms })),
    };
    let mut tls = builder.with_single_cert(vec![certificate], private)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    tls.send_tls13_tickets = 0;
    tls.max_early_data_size = 0;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    server.transport_config(Arc::new(transport_config(true)?));
    server.migration(false);
    endpoint(Some(server), buffers)
}

/// A dialing endpoint; [`Dialer::connect`] dials a [`listener`].
pub struct Dialer {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
}

impl Dialer {
    /// A dialing endpoint on a free loopback port; under [`Auth::Mutual`]
    /// with a fresh self-signed certificate of its own (made now, before
    /// any clock starts).
    pub fn new(auth: Auth, buffers: Option<usize>) -> anyhow::Result<Self> {
        let provider = provider();
        let verifier = Arc::new(AnyServer {
            algorithms: provider.signature_verification_algorithms,
        });
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut tls = match auth {
            Auth::Server => builder.with_no_client_auth(),
            Auth::Mutual => {
                let (certificate, private) = certificate()?;
                builder.with_client_auth_cert(vec![certificate], private)?
            }
        };
        tls.alpn_protocols = vec![ALPN.to_vec()];
        tls.resumption = rustls::client::Resumption::disabled();
        tls.enable_early_data = false;
        tls.enable_sni = false;
        let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
        config.transport_config(Arc::new(transport_config(false)?));
        Ok(Self {
            endpoint: endpoint(None, buffers)?,
            config,
        })
    }

    /// Dials `to` and completes the handshake.
    pub async fn connect(&self, to: SocketAddr) -> anyhow::Result<quinn::Connection> {
        let connecting = self
            .endpoint
            .connect_with(self.config.clone(), to, SERVER_NAME)?;
        Ok(connecting.await?)
    }

    /// Closes every connection of this endpoint.
    pub fn close(&self) {
        self.endpoint.close(VarInt::from_u32(0), b"done");
    }
}

/// The next connection `listener` accepts, handshake completed.
pub async fn accept(listener: &quinn::Endpoint) -> anyhow::Result<quinn::Connection> {
    let incoming = listener.accept().await.context("listener closed")?;
    Ok(incoming.await?)
}

/// Accepts any server certificate; checks the TLS 1.3 handshake signature
/// against it, so the handshake does the usual signature work.
#[derive(Debug)]
struct AnyServer {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_not_offered()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Both verifiers speak TLS 1.3 only.
fn tls12_not_offered() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls12NotOffered,
    ))
}

/// The listener's verifier of client certificates under [`Auth::Mutual`]:
/// requires one, accepts any, and checks the TLS 1.3 handshake signature
/// against it, so the listener does the signature work Switchyard's does.
#[derive(Debug)]
struct AnyClient {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClient {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_not_offered()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cipher the tables state for raw quinn and Switchyard: the ring
    /// provider's first TLS 1.3 suite, which both ends prefer.
    #[test]
    fn the_ring_provider_prefers_aes_256_gcm() {
        let first = provider().cipher_suites.first().map(|s| s.suite());
        assert_eq!(first, Some(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384));
    }

    /// Mutual TLS completes, and the listener sees the client's
    /// certificate; a listener that requires one refuses a client without.
    #[tokio::test]
    async fn mutual_tls_proves_the_client_and_requires_its_certificate() {
        let listener = listener(Auth::Mutual, None).expect("listener");
        let to = listener.local_addr().expect("addr");
        let dialer = Dialer::new(Auth::Mutual, None).expect("dialer");
        let (client, server) = tokio::join!(dialer.connect(to), accept(&listener));
        client.expect("client handshake");
        let server = server.expect("server handshake");
        let proven = server
            .peer_identity()
            .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
            .map_or(0, |certs| certs.len());
        assert_eq!(proven, 1, "the listener saw no client certificate");

        let anonymous = Dialer::new(Auth::Server, None).expect("dialer");
        let (client, server) = tokio::join!(anonymous.connect(to), accept(&listener));
        assert!(
            client.is_err() || server.is_err(),
            "a client without a certificate was accepted"
        );
    }
}
