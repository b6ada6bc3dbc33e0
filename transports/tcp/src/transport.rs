//! [`TcpTransport`]: listen, accept, dial.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use p2p::transport::{Connection, Direction, Refusal, RefusalCounts, Transport, TransportError};
use p2p::{Endpoint, Keypair, PeerAddress, PeerId};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::TcpConfig;
use crate::connection::{NoiseSink, NoiseStream};
use crate::handshake::{self, Established, HandshakeError, Local, NoiseIdentity};
use crate::suite::{CipherSuite, check_suites};

/// After refusing a dialer, how long the listener reads and discards what
/// the dialer already sent (its first Noise message) before it closes, so
/// that the close is a FIN behind the answer rather than a reset that may
/// overtake it. At most [`LINGER_BYTES`].
const LINGER: Duration = Duration::from_secs(1);
/// Most bytes read while lingering.
const LINGER_BYTES: usize = 4096;
/// The read buffer of a handshake: one read takes a whole flight (the
/// offer and message 1, or the answer and message 2, each under 1.1 KiB)
/// instead of one read per field. What it holds past the handshake (the
/// first transport messages, if they came in the same read) goes to the
/// connection's reader.
const HANDSHAKE_BUFFER: usize = 2048;

/// Wraps a socket for a handshake: reads through [`HANDSHAKE_BUFFER`],
/// writes straight through.
fn buffered(stream: TcpStream) -> BufReader<TcpStream> {
    BufReader::with_capacity(HANDSHAKE_BUFFER, stream)
}

/// The socket of a finished handshake, and the bytes it read past it.
fn unbuffered(stream: BufReader<TcpStream>) -> (TcpStream, Vec<u8>) {
    let leftover = stream.buffer().to_vec();
    (stream.into_inner(), leftover)
}

/// Connections established per suite, in [`CipherSuite::ALL`] order.
#[derive(Debug, Default)]
struct SuiteCounts([AtomicU64; CipherSuite::ALL.len()]);

impl SuiteCounts {
    fn slot(&self, suite: CipherSuite) -> &AtomicU64 {
        // Every suite is in ALL.
        let i = CipherSuite::ALL
            .iter()
            .position(|s| *s == suite)
            .unwrap_or_default();
        &self.0[i]
    }
}

/// TCP + Noise transport.
pub struct TcpTransport {
    local: PeerId,
    handshake: Arc<Local>,
    config: Arc<TcpConfig>,
    established: Arc<SuiteCounts>,
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
    /// [`Transport::accept`]. Fails if `config.suites` is empty, names a
    /// suite twice or more than 8 suites.
    pub async fn bind(keypair: &Keypair, config: TcpConfig) -> Result<Self, TransportError> {
        Self::bind_now(keypair, config)
    }

    /// [`bind`](Self::bind) without awaiting (binding a socket does not
    /// block); must be called within a tokio runtime.
    pub fn bind_now(keypair: &Keypair, config: TcpConfig) -> Result<Self, TransportError> {
        check_suites(&config.suites).map_err(|e| {
            TransportError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("TcpConfig::suites: {e}"),
            ))
        })?;
        let identity = NoiseIdentity::new(keypair).map_err(|e| TransportError::Handshake {
            remote: "-".into(),
            reason: e.to_string(),
        })?;
        let handshake = Arc::new(Local::new(
            identity,
            &config.network_id,
            config.suites.clone(),
            config.crypto,
        ));
        // std sets SO_REUSEADDR on Unix, so a restarted node can bind its
        // old port while old connections linger in TIME_WAIT.
        let listener = std::net::TcpListener::bind(config.listen)?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let listen = listener.local_addr()?;
        let config = Arc::new(config);
        let established = Arc::new(SuiteCounts::default());
        let (tx, rx) = mpsc::channel(config.accept_backlog.max(1));
        let stop = CancellationToken::new();
        let refusals = RefusalCounts::default();
        tokio::spawn(listen_loop(
            listener,
            Listening {
                handshake: handshake.clone(),
                config: config.clone(),
                established: established.clone(),
                accepted: tx,
                refusals: refusals.clone(),
                stop: stop.clone(),
            },
        ));
        Ok(Self {
            local: keypair.peer_id(),
            handshake,
            config,
            established,
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

    /// The cipher suites this transport offers and accepts, in order of
    /// preference.
    pub fn suites(&self) -> &[CipherSuite] {
        &self.handshake.suites
    }

    /// How many connections, dialed or accepted, completed their handshake
    /// under `suite` since the transport was bound.
    pub fn established(&self, suite: CipherSuite) -> u64 {
        self.established.slot(suite).load(Ordering::Relaxed)
    }

    /// Dials `addr` expecting `expected` (or anyone, if `None`) and returns
    /// the authenticated connection.
    pub async fn dial_socket(
        &self,
        addr: SocketAddr,
        expected: Option<PeerId>,
    ) -> Result<Connection, TransportError> {
        let attempt = async {
            let stream =
                TcpStream::connect(addr)
                    .await
                    .map_err(|e| TransportError::Unreachable {
                        address: addr.to_string(),
                        reason: e.to_string(),
                    })?;
            let _ = stream.set_nodelay(true);
            let mut stream = buffered(stream);
            let established = handshake::initiate(&mut stream, &self.handshake, expected)
                .await
                .map_err(|e| match e {
                    HandshakeError::WrongPeer { expected, actual } => {
                        TransportError::WrongPeer { expected, actual }
                    }
                    other => dial_error(addr.to_string(), other),
                })?;
            self.established
                .slot(established.suite)
                .fetch_add(1, Ordering::Relaxed);
            Ok(self.connection(stream, established, Direction::Outbound))
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
        stream: BufReader<TcpStream>,
        established: Established,
        direction: Direction,
    ) -> Connection {
        tracing::debug!(
            peer = %established.remote.short(),
            suite = %established.suite,
            ?direction,
            "tcp handshake done"
        );
        into_connection(stream, established, direction, self.config.max_frame_size)
    }
}

/// A failed dial as the router sees it: a refusal the listener answered in
/// the suite preamble, with its reason, or any other handshake failure.
fn dial_error(remote: String, e: HandshakeError) -> TransportError {
    if e.answered().is_some() {
        TransportError::Refused {
            remote,
            reason: e.refusal(),
            detail: e.to_string(),
        }
    } else {
        TransportError::Handshake {
            remote,
            reason: e.to_string(),
        }
    }
}

/// After a refusal: closes our side (a FIN behind the answer), then reads
/// and discards what the dialer sent, until it closes too, for at most
/// [`LINGER`] and [`LINGER_BYTES`]. Closing with its bytes unread would
/// reset the connection, and a reset may reach the dialer before it has
/// read why it was refused.
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(LINGER, async {
        let mut buf = [0u8; 512];
        let mut read = 0;
        while read < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}

/// A connection over `stream` with the keys of `established`; the remote's
/// `Hello`, if it came in the handshake, is the first frame its stream
/// yields.
fn into_connection(
    stream: BufReader<TcpStream>,
    established: Established,
    direction: Direction,
    max_frame: usize,
) -> Connection {
    let (stream, leftover) = unbuffered(stream);
    let peer_addr = stream.peer_addr().ok();
    let (read, write) = stream.into_split();
    let (send, recv) = established.session.split();
    let remote = established.remote;
    Connection {
        remote,
        remote_address: peer_addr.map(|a| PeerAddress::tcp(remote, a)),
        remote_ip: peer_addr.map(|a| a.ip()),
        direction,
        hello_sent: established.hello_sent,
        sink: Box::new(NoiseSink::new(write, send)),
        stream: Box::new(NoiseStream::new(
            read,
            recv,
            max_frame,
            &leftover,
            &established.remote_hello,
        )),
    }
}

/// What the accept loop and its handshake tasks share.
#[derive(Clone)]
struct Listening {
    handshake: Arc<Local>,
    config: Arc<TcpConfig>,
    established: Arc<SuiteCounts>,
    accepted: mpsc::Sender<Result<Connection, TransportError>>,
    refusals: RefusalCounts,
    stop: CancellationToken,
}

async fn listen_loop(listener: TcpListener, listening: Listening) {
    let Listening {
        config,
        accepted,
        refusals,
        stop,
        ..
    } = listening.clone();
    let per_prefix = Arc::new(p2p::PrefixSlots::default());
    let all = Arc::new(Semaphore::new(config.max_handshakes.max(1)));
    loop {
        let (stream, addr) = tokio::select! {
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
        let Listening {
            handshake,
            config,
            established,
            accepted,
            refusals,
            stop,
        } = listening.clone();
        tokio::spawn(async move {
            let slots = (prefix_slot, permit);
            let _ = stream.set_nodelay(true);
            let mut stream = buffered(stream);
            let handshake = tokio::time::timeout(
                config.handshake_timeout,
                handshake::respond(&mut stream, &handshake),
            );
            let result = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                result = handshake => result,
            };
            let mut refused = None;
            let item = match result {
                Ok(Ok(done)) => {
                    established.slot(done.suite).fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        peer = %done.remote.short(),
                        suite = %done.suite,
                        %addr,
                        "tcp handshake done (inbound)"
                    );
                    Ok(into_connection(
                        stream,
                        done,
                        Direction::Inbound,
                        config.max_frame_size,
                    ))
                }
                Ok(Err(e)) => {
                    if e.answered().is_some() {
                        refused = Some(stream.into_inner());
                    }
                    Err(TransportError::Refused {
                        remote: addr.to_string(),
                        reason: e.refusal(),
                        detail: e.to_string(),
                    })
                }
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
            if let Some(stream) = refused {
                // The slots are free while we wait for the dialer to go.
                drop(slots);
                linger(stream).await;
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

    /// Carried in Noise message 2 (as a listener) or 3 (as a dialer) when
    /// it fits in a handshake message ([`handshake::MAX_HANDSHAKE_MESSAGE`]).
    fn carry_hello(&self, hello: &p2p::transport::Frame) {
        self.handshake.hello.set(hello);
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

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;
    use p2p::ChannelId;
    use p2p::transport::{Frame, FrameSink};
    use tokio::io::AsyncWrite;

    use crate::suite::CipherSuite;

    /// Passes its first write through and holds every later one until the
    /// test sends it.
    struct HoldBack {
        inner: TcpStream,
        writes: usize,
        held: Vec<u8>,
    }

    impl tokio::io::AsyncRead for HoldBack {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for HoldBack {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let this = &mut *self;
            if this.writes == 0 {
                let result = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
                if let std::task::Poll::Ready(Ok(n)) = &result
                    && *n == buf.len()
                {
                    this.writes += 1;
                }
                return result;
            }
            this.held.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (dialed, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (dialed.expect("connect"), accepted.expect("accept").0)
    }

    /// The listener reads its handshake through a buffer; bytes the dialer
    /// sent right behind message 3, in the same segment (its first
    /// transport message), land in that buffer and must reach the
    /// connection's reader.
    #[tokio::test]
    async fn bytes_read_past_the_handshake_reach_the_connection() {
        let local = |seed: u64| {
            let identity = NoiseIdentity::new(&Keypair::from_seed(seed)).expect("identity");
            Local::new(
                identity,
                "net",
                vec![CipherSuite::AesGcm],
                Default::default(),
            )
        };
        let (dialer_local, listener_local) = (local(1), local(2));
        let (dialed, accepted) = pair().await;
        let _ = dialed.set_nodelay(true);

        let listener = async {
            let mut stream = buffered(accepted);
            let done = handshake::respond(&mut stream, &listener_local)
                .await
                .expect("handshake");
            let mut conn = into_connection(stream, done, Direction::Inbound, 1 << 20);
            let mut frames = Vec::new();
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                conn.stream.recv(&mut frames),
            )
            .await
            .expect("the frame arrives")
            .expect("recv");
            frames
        };
        let dialer = async {
            let mut hold = HoldBack {
                inner: dialed,
                writes: 0,
                held: Vec::new(),
            };
            let done = handshake::initiate(&mut hold, &dialer_local, None)
                .await
                .expect("handshake");
            // Message 3 is held. Seal the first transport message through a
            // scratch socket pair, then send both in one write.
            let (send, _) = done.session.split();
            let (scratch_out, mut scratch_in) = pair().await;
            let (_, write) = scratch_out.into_split();
            let mut sink = NoiseSink::new(write, send);
            let frame = Frame::Data {
                channel: ChannelId(9),
                payload: Bytes::from_static(b"right behind message 3"),
            };
            sink.send(&mut vec![frame.clone()]).await.expect("seal");
            drop(sink);
            let mut sealed = Vec::new();
            scratch_in.read_to_end(&mut sealed).await.expect("sealed");
            let mut flight = std::mem::take(&mut hold.held);
            assert_eq!(flight.len(), 163, "message 3 was held");
            flight.extend_from_slice(&sealed);
            hold.inner.write_all(&flight).await.expect("send");
            (frame, hold.inner)
        };
        let (frames, (frame, _socket)) = tokio::join!(listener, dialer);
        assert_eq!(frames, vec![frame]);
    }
}
