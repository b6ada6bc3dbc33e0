//! [`TcpTransport`]: listen, accept, dial.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use p2p::transport::{Connection, Direction, Refusal, RefusalCounts, Transport, TransportError};
use p2p::{Endpoint, Keypair, PeerAddress, PeerId};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::TcpConfig;
use crate::connection::{NoiseSink, NoiseStream, Session};
use crate::handshake::{self, HandshakeError, NoiseIdentity};

/// TCP + Noise transport.
pub struct TcpTransport {
    local: PeerId,
    identity: Arc<NoiseIdentity>,
    config: Arc<TcpConfig>,
    prologue: Arc<Vec<u8>>,
    listen: SocketAddr,
    accepted: tokio::sync::Mutex<mpsc::Receiver<Result<Connection, TransportError>>>,
    refusals: RefusalCounts,
    _stop: DropGuard,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("peer", &self.local)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

impl TcpTransport {
    /// Binds `config.listen` and starts accepting. Inbound handshakes run
    /// in their own tasks, bounded per IP and in all, each under
    /// `handshake_timeout`; only authenticated connections reach
    /// [`Transport::accept`].
    pub async fn bind(keypair: &Keypair, config: TcpConfig) -> Result<Self, TransportError> {
        Self::bind_now(keypair, config)
    }

    /// [`bind`](Self::bind) without awaiting (binding a socket does not
    /// block); must be called within a tokio runtime.
    pub fn bind_now(keypair: &Keypair, config: TcpConfig) -> Result<Self, TransportError> {
        let identity =
            Arc::new(
                NoiseIdentity::new(keypair).map_err(|e| TransportError::Handshake {
                    remote: "-".into(),
                    reason: e.to_string(),
                })?,
            );
        // std sets SO_REUSEADDR on Unix, so a restarted node can bind its
        // old port while old connections linger in TIME_WAIT.
        let listener = std::net::TcpListener::bind(config.listen)?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let listen = listener.local_addr()?;
        let config = Arc::new(config);
        let prologue = Arc::new(handshake::prologue(&config.network_id));
        let (tx, rx) = mpsc::channel(config.accept_backlog.max(1));
        let stop = CancellationToken::new();
        let refusals = RefusalCounts::default();
        tokio::spawn(listen_loop(
            listener,
            identity.clone(),
            config.clone(),
            prologue.clone(),
            tx,
            refusals.clone(),
            stop.clone(),
        ));
        Ok(Self {
            local: keypair.peer_id(),
            identity,
            config,
            prologue,
            listen,
            accepted: tokio::sync::Mutex::new(rx),
            refusals,
            _stop: stop.drop_guard(),
        })
    }

    /// The bound socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Dials `addr` expecting `expected` (or anyone, if `None`) and returns
    /// the authenticated connection.
    pub async fn dial_socket(
        &self,
        addr: SocketAddr,
        expected: Option<PeerId>,
    ) -> Result<Connection, TransportError> {
        let attempt = async {
            let mut stream =
                TcpStream::connect(addr)
                    .await
                    .map_err(|e| TransportError::Unreachable {
                        address: addr.to_string(),
                        reason: e.to_string(),
                    })?;
            let _ = stream.set_nodelay(true);
            let (state, remote) = handshake::initiate(
                &mut stream,
                &self.identity,
                &self.prologue,
                self.config.crypto,
                expected,
            )
            .await
            .map_err(|e| match e {
                HandshakeError::WrongPeer { expected, actual } => {
                    TransportError::WrongPeer { expected, actual }
                }
                other @ HandshakeError::OtherNetwork(_) => TransportError::Refused {
                    remote: addr.to_string(),
                    reason: other.refusal(),
                    detail: other.to_string(),
                },
                other => TransportError::Handshake {
                    remote: addr.to_string(),
                    reason: other.to_string(),
                },
            })?;
            Ok(self.connection(stream, state, remote, Direction::Outbound))
        };
        tokio::time::timeout(self.config.handshake_timeout, attempt)
            .await
            .map_err(|_| TransportError::Handshake {
                remote: addr.to_string(),
                reason: format!("no handshake within {:?}", self.config.handshake_timeout),
            })?
    }

    fn connection(
        &self,
        stream: TcpStream,
        session: Session,
        remote: PeerId,
        direction: Direction,
    ) -> Connection {
        into_connection(
            stream,
            session,
            remote,
            direction,
            self.config.max_frame_size,
        )
    }
}

fn into_connection(
    stream: TcpStream,
    session: Session,
    remote: PeerId,
    direction: Direction,
    max_frame: usize,
) -> Connection {
    let peer_addr = stream.peer_addr().ok();
    let (read, write) = stream.into_split();
    let (send, recv) = session.split();
    Connection {
        remote,
        remote_address: peer_addr.map(|a| PeerAddress::tcp(remote, a)),
        remote_ip: peer_addr.map(|a| a.ip()),
        direction,
        sink: Box::new(NoiseSink::new(write, send)),
        stream: Box::new(NoiseStream::new(read, recv, max_frame, &[])),
    }
}

async fn listen_loop(
    listener: TcpListener,
    identity: Arc<NoiseIdentity>,
    config: Arc<TcpConfig>,
    prologue: Arc<Vec<u8>>,
    accepted: mpsc::Sender<Result<Connection, TransportError>>,
    refusals: RefusalCounts,
    stop: CancellationToken,
) {
    let per_prefix = Arc::new(p2p::PrefixSlots::default());
    let all = Arc::new(Semaphore::new(config.max_handshakes.max(1)));
    loop {
        let (mut stream, addr) = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = accepted.closed() => return,
            result = listener.accept() => match result {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "tcp accept failed");
                    // e.g. out of file descriptors: do not spin.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        // Closed at once, and counted: under a flood these are most of
        // what the node turns away.
        let Some(prefix_slot) = per_prefix.acquire(addr.ip(), config.max_handshakes_per_prefix)
        else {
            refusals.count(Refusal::TooManyHandshakesFromPrefix);
            tracing::debug!(%addr, "too many handshakes from this network; closing");
            continue;
        };
        let Ok(permit) = all.clone().try_acquire_owned() else {
            refusals.count(Refusal::TooManyHandshakes);
            tracing::debug!(%addr, "too many handshakes in progress; closing");
            continue;
        };
        let (identity, config, prologue, accepted, refusals, stop) = (
            identity.clone(),
            config.clone(),
            prologue.clone(),
            accepted.clone(),
            refusals.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let _slots = (prefix_slot, permit);
            let _ = stream.set_nodelay(true);
            let handshake = tokio::time::timeout(
                config.handshake_timeout,
                handshake::respond(&mut stream, &identity, &prologue, config.crypto),
            );
            let result = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                result = handshake => result,
            };
            let item = match result {
                Ok(Ok((state, remote))) => Ok(into_connection(
                    stream,
                    state,
                    remote,
                    Direction::Inbound,
                    config.max_frame_size,
                )),
                Ok(Err(e)) => Err(TransportError::Refused {
                    remote: addr.to_string(),
                    reason: e.refusal(),
                    detail: e.to_string(),
                }),
                Err(_) => Err(TransportError::Refused {
                    remote: addr.to_string(),
                    reason: Refusal::HandshakeTimeout,
                    detail: format!("no handshake within {:?}", config.handshake_timeout),
                }),
            };
            if let Err(e) = &item {
                tracing::debug!(%addr, error = %e, "inbound handshake failed");
            }
            // A router that does not take connections fast enough gets
            // none: waiting for room must not hold this IP's handshake slot
            // forever. What it never took is counted here.
            let lost_as = lost_as(&item);
            let sent = tokio::time::timeout(config.handshake_timeout, accepted.send(item)).await;
            if !matches!(sent, Ok(Ok(()))) {
                refusals.count(lost_as);
            }
        });
    }
}

/// What an accept result the router never took counts as: a connection it
/// had no room for, or the refusal the error names.
pub(crate) fn lost_as(item: &Result<Connection, TransportError>) -> Refusal {
    match item {
        Ok(_) => Refusal::AcceptBacklog,
        Err(e) => e.refusal().unwrap_or(Refusal::BadHandshake),
    }
}

impl Transport for TcpTransport {
    fn scheme(&self) -> &'static str {
        "tcp"
    }

    fn listen_addresses(&self) -> Vec<PeerAddress> {
        vec![PeerAddress::tcp(self.local, self.listen)]
    }

    fn refusal_counts(&self) -> Option<RefusalCounts> {
        Some(self.refusals.clone())
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
            let Endpoint::Tcp(host_port) = &address.endpoint else {
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
