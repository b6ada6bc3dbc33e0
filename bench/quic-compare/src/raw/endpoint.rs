//! quinn endpoints for the raw baseline, configured as `transport-quic`
//! configures its own, minus the identity rules:
//!
//! * the same quinn `TransportConfig`: the one `transport-quic` builds
//!   (`QuicConfig::transport_config`) from `QuicConfig::default()`
//!   (stream and connection receive windows, stream limits, idle timeout,
//!   keep-alive, no datagrams), the same socket buffer size, migration off;
//! * the same rustls crypto provider (ring), TLS 1.3 only, no resumption,
//!   no 0-RTT, so that every connection makes a full handshake and the
//!   packet protection is the same cipher suite;
//! * but a plain server-authenticated handshake: the listener presents a
//!   self-signed ed25519 certificate (rcgen) and the dialer's verifier
//!   accepts any certificate, checking only the handshake signature; no
//!   client certificate.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{TransportConfig, VarInt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use transport_quic::QuicConfig;

/// The ALPN both sides speak.
const ALPN: &[u8] = b"switchyard-bench/raw-quinn";

/// The TLS server name the dialer uses (the verifier ignores it).
const SERVER_NAME: &str = "raw-quinn";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
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

/// A UDP socket on a free loopback port with `transport-quic`'s buffer
/// sizes, as a quinn endpoint.
fn endpoint(server: Option<quinn::ServerConfig>) -> anyhow::Result<quinn::Endpoint> {
    let config = QuicConfig::default();
    let socket = std::net::UdpSocket::bind(config.listen)?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    state.set_recv_buffer_size((&socket).into(), config.socket_buffer_size)?;
    state.set_send_buffer_size((&socket).into(), config.socket_buffer_size)?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )?)
}

/// A listening endpoint with a fresh self-signed certificate.
pub fn listener() -> anyhow::Result<quinn::Endpoint> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let certificate = rcgen::CertificateParams::new(vec![SERVER_NAME.into()])?.self_signed(&key)?;
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![certificate.der().clone()], private)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    tls.send_tls13_tickets = 0;
    tls.max_early_data_size = 0;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    server.transport_config(Arc::new(transport_config(true)?));
    server.migration(false);
    endpoint(Some(server))
}

/// A dialing endpoint; [`Dialer::connect`] dials a [`listener`].
pub struct Dialer {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
}

impl Dialer {
    /// A dialing endpoint on a free loopback port.
    pub fn new() -> anyhow::Result<Self> {
        let provider = provider();
        let verifier = Arc::new(AnyServer {
            algorithms: provider.signature_verification_algorithms,
        });
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        tls.alpn_protocols = vec![ALPN.to_vec()];
        tls.resumption = rustls::client::Resumption::disabled();
        tls.enable_early_data = false;
        tls.enable_sni = false;
        let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
        config.transport_config(Arc::new(transport_config(false)?));
        Ok(Self {
            endpoint: endpoint(None)?,
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
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
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
