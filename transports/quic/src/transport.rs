//! [`QuicTransport`]: listen, accept, dial.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use p2p::transport::{
    CarriedHello, Connection, Direction, Refusal, RefusalCounts, Transport, TransportError,
};
use p2p::{Endpoint, Keypair, PeerAddress, PeerId};
use parking_lot::Mutex;
use quinn::crypto::rustls::{HandshakeData, QuicClientConfig, QuicServerConfig};
use quinn::{TransportConfig, VarInt};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::certificate::{Identity, peer_id_in};
use crate::config::QuicConfig;
use crate::connection::{
    CLOSE_FRAMING, CLOSE_NO_GOODBYE, CONTROL_STREAM_VERSION, QuicSink, QuicStream,
};
use crate::tls::{MAX_NETWORK_ID_LEN, Tls};

/// The TLS server name the dialer uses. Certificates carry no names and
/// the verifier ignores it; it is not sent (no SNI).
const SERVER_NAME: &str = "switchyard";

/// The TLS alert a server sends when no ALPN matches (RFC 8446 §6.2),
/// carried in QUIC as the crypto error 0x100 + alert (RFC 9001 §4.8).
const NO_APPLICATION_PROTOCOL: u8 = 0x78;

/// QUIC transport: one UDP socket listens and dials.
pub struct QuicTransport {
    local: PeerId,
    endpoint: quinn::Endpoint,
    tls: Arc<Tls>,
    config: Arc<QuicConfig>,
    client_transport: Arc<TransportConfig>,
    listen: SocketAddr,
    accepted: tokio::sync::Mutex<mpsc::Receiver<Result<Connection, TransportError>>>,
    refusals: RefusalCounts,
    /// Our `Hello`, sent by the listener in 0.5-RTT data.
    hello: CarriedHello,
    _stop: DropGuard,
}

impl std::fmt::Debug for QuicTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicTransport")
            .field("peer", &self.local)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

pub(crate) fn invalid(reason: String) -> TransportError {
    TransportError::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        reason,
    ))
}

/// Asks for larger socket buffers; a kernel that refuses leaves its
/// defaults, which work, with more loss under bursts.
fn size_buffers(socket: &std::net::UdpSocket, bytes: usize) {
    let result = quinn::udp::UdpSocketState::new(socket.into()).and_then(|state| {
        state.set_recv_buffer_size(socket.into(), bytes)?;
        state.set_send_buffer_size(socket.into(), bytes)
    });
    if let Err(e) = result {
        tracing::debug!(error = %e, bytes, "cannot size the UDP socket buffers");
    }
}

/// The PeerId proven by the TLS handshake, and a check that the peer
/// speaks our ALPN (rustls already refuses a mismatch; this makes the
/// rule local).
fn authenticated(conn: &quinn::Connection, tls: &Tls) -> Result<PeerId, String> {
    let alpn = conn
        .handshake_data()
        .and_then(|data| data.downcast::<HandshakeData>().ok())
        .and_then(|data| data.protocol);
    if alpn.as_deref() != Some(tls.alpn()) {
        return Err("the peer did not agree on our ALPN".into());
    }
    let certificates = conn
        .peer_identity()
        .and_then(|identity| {
            identity
                .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or("the peer presented no certificate")?;
    let [certificate] = certificates.as_slice() else {
        return Err(format!(
            "the peer presented {} certificates, not one",
            certificates.len()
        ));
    };
    // The verifier accepted this certificate and the handshake signature
    // made with its key (rustls does not complete a handshake otherwise).
    peer_id_in(certificate).map_err(|e| e.to_string())
}

fn into_connection(
    conn: quinn::Connection,
    control: (quinn::SendStream, quinn::RecvStream),
    remote: PeerId,
    direction: Direction,
    config: &QuicConfig,
) -> Connection {
    let peer_addr = conn.remote_address();
    let (send, recv) = control;
    Connection {
        remote,
        remote_address: Some(PeerAddress::quic(remote, peer_addr)),
        remote_ip: Some(peer_addr.ip()),
        direction,
        hello_sent: false,
        sink: Box::new(QuicSink::new(conn.clone(), send, config.close_timeout)),
        stream: Box::new(QuicStream::new(
            conn,
            recv,
            config.max_frame_size,
            config.max_reassembly_bytes,
            config.close_timeout,
        )),
    }
}

impl QuicTransport {
    /// Binds `config.listen` (UDP) and starts accepting. Inbound
    /// handshakes run in their own tasks, bounded per IP and in all, each
    /// under `handshake_timeout`; only authenticated connections whose
    /// control stream is open reach [`Transport::accept`].
    pub async fn bind(keypair: &Keypair, config: QuicConfig) -> Result<Self, TransportError> {
        Self::bind_now(keypair, config)
    }

    /// [`bind`](Self::bind) without awaiting (binding a socket does not
    /// block); must be called within a tokio runtime.
    pub fn bind_now(keypair: &Keypair, config: QuicConfig) -> Result<Self, TransportError> {
        if config.network_id.len() > MAX_NETWORK_ID_LEN {
            return Err(invalid(format!(
                "network id of {} bytes exceeds {MAX_NETWORK_ID_LEN}, the room left in the ALPN",
                config.network_id.len()
            )));
        }
        if config.max_reassembly_bytes < config.max_frame_size {
            return Err(invalid(format!(
                "max_reassembly_bytes {} is less than max_frame_size {}: a frame that large could never be reassembled",
                config.max_reassembly_bytes, config.max_frame_size
            )));
        }
        let identity = Identity::new(keypair).map_err(|e| invalid(e.to_string()))?;
        let tls = Arc::new(
            Tls::new(&identity, &config.network_id)
                .map_err(|e| invalid(format!("TLS identity: {e}")))?,
        );
        let server_tls = tls
            .server_config()
            .map_err(|e| invalid(format!("TLS server: {e}")))?;
        let server_crypto = QuicServerConfig::try_from(server_tls)
            .map_err(|e| invalid(format!("QUIC server: {e}")))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server.transport_config(Arc::new(config.transport_config(true)?));
        // The per-IP handshake limit and `remote_ip` assume a connection
        // stays on the path it was accepted on.
        server.migration(false);
        let client_transport = Arc::new(config.transport_config(false)?);

        let socket = std::net::UdpSocket::bind(config.listen)?;
        size_buffers(&socket, config.socket_buffer_size);
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        let listen = endpoint.local_addr()?;
        let config = Arc::new(config);
        let (tx, rx) = mpsc::channel(config.accept_backlog.max(1));
        let stop = CancellationToken::new();
        let refusals = RefusalCounts::default();
        let hello = CarriedHello::default();
        tokio::spawn(accept_loop(
            endpoint.clone(),
            (tls.clone(), hello.clone()),
            config.clone(),
            tx,
            refusals.clone(),
            stop.clone(),
        ));
        Ok(Self {
            local: keypair.peer_id(),
            endpoint,
            tls,
            config,
            client_transport,
            listen,
            accepted: tokio::sync::Mutex::new(rx),
            refusals,
            hello,
            _stop: stop.drop_guard(),
        })
    }

    /// The bound socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Waits until no connection of this transport is left: each one
    /// closed, by either side, and through QUIC's draining period (three
    /// probe timeouts after the close), after which quinn forgets it.
    /// Returns at once if there is none. It closes nothing itself; a
    /// caller that wants its goodbyes delivered before the process exits
    /// closes its connections and then waits here (bounded by a timeout of
    /// its own: a peer that never answers keeps a connection until the
    /// idle timeout).
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }

    /// Dials `addr` expecting `expected` (or anyone, if `None`) and returns
    /// the authenticated connection.
    pub async fn dial_socket(
        &self,
        addr: SocketAddr,
        expected: Option<PeerId>,
    ) -> Result<Connection, TransportError> {
        let handshake = |reason: String| TransportError::Handshake {
            remote: addr.to_string(),
            reason,
        };
        let answered = Arc::new(Mutex::new(None));
        let tls = self
            .tls
            .client_config(expected, answered.clone())
            .map_err(|e| handshake(format!("TLS client: {e}")))?;
        let crypto =
            QuicClientConfig::try_from(tls).map_err(|e| handshake(format!("QUIC client: {e}")))?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        client.transport_config(self.client_transport.clone());
        let attempt = async {
            let connecting = self
                .endpoint
                .connect_with(client, addr, SERVER_NAME)
                .map_err(|e| TransportError::Unreachable {
                    address: addr.to_string(),
                    reason: e.to_string(),
                })?;
            let conn = match connecting.await {
                Ok(conn) => conn,
                Err(e) => {
                    let answered = *answered.lock();
                    return Err(self.dial_error(addr, expected, answered, &e));
                }
            };
            let remote = authenticated(&conn, &self.tls).map_err(handshake)?;
            if let Some(expected) = expected.filter(|&e| e != remote) {
                conn.close(VarInt::from_u32(CLOSE_NO_GOODBYE), b"wrong peer");
                return Err(TransportError::WrongPeer {
                    expected,
                    actual: remote,
                });
            }
            // The listener opened the control stream in 0.5-RTT data, with
            // its `Hello` behind the version byte: both came with its
            // handshake flight.
            let (send, mut recv) = conn
                .accept_bi()
                .await
                .map_err(|e| handshake(format!("control stream: {e}")))?;
            let mut version = [0u8; 1];
            recv.read_exact(&mut version)
                .await
                .map_err(|e| handshake(format!("control stream: {e}")))?;
            if version[0] != CONTROL_STREAM_VERSION {
                let reason = format!("control stream version {} is not ours", version[0]);
                conn.close(VarInt::from_u32(CLOSE_FRAMING), reason.as_bytes());
                return Err(handshake(reason));
            }
            Ok(into_connection(
                conn,
                (send, recv),
                remote,
                Direction::Outbound,
                &self.config,
            ))
        };
        tokio::time::timeout(self.config.handshake_timeout, attempt)
            .await
            .map_err(|_| {
                handshake(format!(
                    "no handshake within {:?}",
                    self.config.handshake_timeout
                ))
            })?
    }

    fn dial_error(
        &self,
        addr: SocketAddr,
        expected: Option<PeerId>,
        answered: Option<PeerId>,
        e: &quinn::ConnectionError,
    ) -> TransportError {
        if let (Some(expected), Some(actual)) = (expected, answered)
            && expected != actual
        {
            return TransportError::WrongPeer { expected, actual };
        }
        let no_alpn = quinn::TransportErrorCode::crypto(NO_APPLICATION_PROTOCOL);
        let reason = match e {
            quinn::ConnectionError::ConnectionClosed(close) if close.error_code == no_alpn => {
                return TransportError::Refused {
                    remote: addr.to_string(),
                    reason: Refusal::NetworkMismatch,
                    detail: format!(
                        "the peer is not on network id {:?} (or speaks another protocol version): no common ALPN",
                        self.config.network_id
                    ),
                };
            }
            quinn::ConnectionError::TimedOut => {
                return TransportError::Unreachable {
                    address: addr.to_string(),
                    reason: "no answer (QUIC handshake timed out)".into(),
                };
            }
            other => other.to_string(),
        };
        TransportError::Handshake {
            remote: addr.to_string(),
            reason,
        }
    }
}

impl Drop for QuicTransport {
    fn drop(&mut self) {
        // Connections already made live on; new ones are refused.
        self.endpoint.set_server_config(None);
    }
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    (tls, hello): (Arc<Tls>, CarriedHello),
    config: Arc<QuicConfig>,
    accepted: mpsc::Sender<Result<Connection, TransportError>>,
    refusals: RefusalCounts,
    stop: CancellationToken,
) {
    let per_prefix = Arc::new(p2p::PrefixSlots::default());
    let all = Arc::new(Semaphore::new(config.max_handshakes.max(1)));
    loop {
        let incoming = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = accepted.closed() => return,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => return,
            },
        };
        let addr = incoming.remote_address();
        let Some(prefix_slot) = per_prefix.acquire(addr.ip(), config.max_handshakes_per_prefix)
        else {
            refusals.count(Refusal::TooManyHandshakesFromPrefix);
            tracing::debug!(%addr, "too many handshakes from this IP; refusing");
            incoming.refuse();
            continue;
        };
        let Ok(permit) = all.clone().try_acquire_owned() else {
            refusals.count(Refusal::TooManyHandshakes);
            tracing::debug!(%addr, "too many handshakes in progress; refusing");
            incoming.refuse();
            continue;
        };
        // Accepting here, not in the task, lets quinn answer the client's
        // first flight without waiting for the task to be scheduled.
        let connecting = incoming.accept();
        let first = hello.get();
        let (tls, config, accepted, refusals, stop) = (
            tls.clone(),
            config.clone(),
            accepted.clone(),
            refusals.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let _slots = (prefix_slot, permit);
            let handshake = tokio::time::timeout(
                config.handshake_timeout,
                accept_one(addr, connecting, &tls, &config, first),
            );
            let result = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                result = handshake => result,
            };
            let item = result.unwrap_or_else(|_| {
                Err(TransportError::Refused {
                    remote: addr.to_string(),
                    reason: Refusal::HandshakeTimeout,
                    detail: format!("no handshake within {:?}", config.handshake_timeout),
                })
            });
            if let Err(e) = &item {
                tracing::debug!(%addr, error = %e, "inbound handshake failed");
            }
            // A router that does not take connections fast enough gets
            // none: waiting for room must not hold this IP's handshake slot
            // forever. What it never took is counted here.
            let lost_as = match &item {
                Ok(_) => Refusal::AcceptBacklog,
                Err(e) => e.refusal().unwrap_or(Refusal::BadHandshake),
            };
            let sent = tokio::time::timeout(config.handshake_timeout, accepted.send(item)).await;
            if !matches!(sent, Ok(Ok(()))) {
                refusals.count(lost_as);
            }
        });
    }
}

/// What a failed inbound QUIC handshake counts as in
/// `handshakes_refused_total`: the network id is in the ALPN, so a dialer
/// of another network fails TLS with `no_application_protocol`.
fn inbound_refusal(e: &quinn::ConnectionError) -> Refusal {
    let no_alpn = quinn::TransportErrorCode::crypto(NO_APPLICATION_PROTOCOL);
    match e {
        quinn::ConnectionError::TransportError(t) if t.code == no_alpn => Refusal::NetworkMismatch,
        quinn::ConnectionError::ConnectionClosed(c) if c.error_code == no_alpn => {
            Refusal::NetworkMismatch
        }
        quinn::ConnectionError::TimedOut => Refusal::HandshakeTimeout,
        quinn::ConnectionError::Reset | quinn::ConnectionError::LocallyClosed => Refusal::Io,
        _ => Refusal::BadHandshake,
    }
}

/// One inbound connection: the QUIC + TLS handshake (the verifier checks
/// the dialer's certificate), during which we open the control stream and
/// send its version byte and our `Hello` (`hello`, when the router set it)
/// as 0.5-RTT data, so the dialer has them when its handshake ends.
async fn accept_one(
    addr: SocketAddr,
    connecting: Result<quinn::Connecting, quinn::ConnectionError>,
    tls: &Tls,
    config: &QuicConfig,
    hello: bytes::Bytes,
) -> Result<Connection, TransportError> {
    let handshake = |reason: String| TransportError::Refused {
        remote: addr.to_string(),
        reason: Refusal::BadHandshake,
        detail: reason,
    };
    let refused = |e: quinn::ConnectionError| TransportError::Refused {
        remote: addr.to_string(),
        reason: inbound_refusal(&e),
        detail: match inbound_refusal(&e) {
            Refusal::NetworkMismatch => format!(
                "no common ALPN ({e}): the dialer is on another network id or protocol version"
            ),
            _ => e.to_string(),
        },
    };
    let connecting = connecting.map_err(refused)?;
    // A server's `into_0rtt` always succeeds: 0.5-RTT data, sent before
    // the client's certificate is checked. Our `Hello` holds nothing a
    // dialer with a fresh key would not get by finishing the handshake.
    let (conn, established) = match connecting.into_0rtt() {
        Ok((conn, accepted)) => (conn, Some(accepted)),
        Err(connecting) => (connecting.await.map_err(refused)?, None),
    };
    let hello_sent = !hello.is_empty();
    let mut first = Vec::with_capacity(1 + hello.len());
    first.push(CONTROL_STREAM_VERSION);
    first.extend_from_slice(&hello);
    let (mut send, recv) = conn.open_bi().await.map_err(refused)?;
    send.write_all(&first)
        .await
        .map_err(|e| handshake(format!("control stream: {e}")))?;
    // It resolves when the handshake completes or fails (its value says
    // whether the client's 0-RTT was accepted, which tells a server
    // nothing); a failed handshake left a close reason.
    if let Some(established) = established {
        established.await;
    }
    if let Some(reason) = conn.close_reason() {
        return Err(refused(reason));
    }
    let remote = authenticated(&conn, tls).map_err(&handshake)?;
    let mut conn = into_connection(conn, (send, recv), remote, Direction::Inbound, config);
    conn.hello_sent = hello_sent;
    Ok(conn)
}

impl Transport for QuicTransport {
    fn scheme(&self) -> &'static str {
        "quic"
    }

    fn listen_addresses(&self) -> Vec<PeerAddress> {
        vec![PeerAddress::quic(self.local, self.listen)]
    }

    fn refusal_counts(&self) -> Option<RefusalCounts> {
        Some(self.refusals.clone())
    }

    /// Sent by a listener on the control stream it opens in 0.5-RTT data,
    /// so the dialer has it when its handshake ends (ADR 0006).
    fn carry_hello(&self, hello: &p2p::transport::Frame) {
        self.hello.set(hello);
    }

    fn accept(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(async move {
            let mut accepted = self.accepted.lock().await;
            accepted.recv().await.unwrap_or(Err(TransportError::Closed))
        })
    }

    fn dial<'a>(
        &'a self,
        address: &'a PeerAddress,
    ) -> BoxFuture<'a, Result<Connection, TransportError>> {
        Box::pin(async move {
            let Endpoint::Quic(host_port) = &address.endpoint else {
                return Err(TransportError::UnsupportedAddress(address.to_string()));
            };
            let socket = match host_port.socket_addr() {
                Some(socket) => socket,
                None => {
                    let target = host_port.to_string();
                    tokio::net::lookup_host(target.as_str())
                        .await
                        .map_err(|e| TransportError::Unreachable {
                            address: address.to_string(),
                            reason: format!("cannot resolve {target}: {e}"),
                        })?
                        .next()
                        .ok_or_else(|| TransportError::Unreachable {
                            address: address.to_string(),
                            reason: "the name resolves to no address".into(),
                        })?
                }
            };
            self.dial_socket(socket, Some(address.peer)).await
        })
    }
}
