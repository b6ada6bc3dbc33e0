//! In-process transport: a [`MemoryHub`] of named endpoints, for tests and
//! simulations.
//!
//! **Identity is asserted by the hub, not proven.** A [`MemoryTransport`] is
//! registered under a PeerId and every connection it makes is presented to
//! the remote as coming from that PeerId. That is sound only inside one
//! process where the test owns the hub; never bridge a memory hub to
//! anything untrusted.
//!
//! Frames pass between the two ends as Rust values through bounded queues
//! (64 batches per direction), with no encoding. The router's credit keeps
//! the data in flight bounded; the queue bound keeps control frames bounded.
//!
//! Fault injection (the hooks the testkit uses), per pair of peers:
//!
//! * [`MemoryHub::set_latency`]: every batch is delivered `latency` after it
//!   was sent, preserving order;
//! * [`MemoryHub::set_loss`]: each data frame is dropped with probability
//!   `loss`, from a RNG seeded by the hub's seed. Loss models a lossy
//!   network under a reliable session: the lost message's credit is refunded
//!   to the sender, so flow control does not stall; the message itself is
//!   gone (at most once, never a duplicate);
//! * [`MemoryHub::set_bandwidth`]: a sender spends `bytes / rate` on the
//!   wire per batch, so queues build up in the router and its priorities
//!   decide;
//! * [`MemoryHub::set_blackhole`]: everything is silently discarded, as
//!   with a dead peer; only keepalive notices;
//! * [`MemoryHub::cut`] / [`MemoryHub::heal`] and [`MemoryHub::partition`]:
//!   live connections across the cut fail at once and new dials fail until
//!   healed;
//! * [`MemoryHub::crash`]: the endpoint vanishes with all its connections.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use p2p::transport::{
    Connection, ConnectionError, Direction, Frame, FrameSink, FrameStream, Transport,
    TransportError,
};
use p2p::{PeerAddress, PeerId};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Batches buffered per direction of a connection.
const PIPE_BATCHES: usize = 64;
/// Connections waiting to be accepted per endpoint.
const ACCEPT_BACKLOG: usize = 1024;

/// Why a memory endpoint could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    /// The PeerId already has an endpoint.
    #[error("peer {0} already has an endpoint on this hub")]
    AddressInUse(PeerId),
}

/// Conditions of one direction of a pair.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Conditions {
    latency: Duration,
    loss: f64,
    /// Bytes per second; `None` is unlimited.
    bandwidth: Option<u64>,
    /// Everything sent is silently discarded.
    blackhole: bool,
}

#[derive(Debug)]
struct Endpoint {
    generation: u64,
    accept: mpsc::Sender<Connection>,
    ip: Option<IpAddr>,
}

#[derive(Debug, Default)]
struct HubState {
    endpoints: HashMap<PeerId, Endpoint>,
    /// Directed conditions (from, to).
    conditions: BTreeMap<(PeerId, PeerId), Arc<Mutex<Conditions>>>,
    /// Unordered pairs that cannot talk.
    cut: BTreeSet<(PeerId, PeerId)>,
    /// Live connections by unordered pair, to cut them.
    /// Per pair, the cut token of every connection, with a weak handle on
    /// its dialer's pipe so connections that ended are forgotten.
    live: BTreeMap<(PeerId, PeerId), Vec<LiveConnection>>,
}

#[derive(Debug)]
struct HubInner {
    seed: u64,
    counter: AtomicU64,
    state: Mutex<HubState>,
}

/// An in-process network of endpoints. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MemoryHub {
    inner: Arc<HubInner>,
}

fn pair(a: PeerId, b: PeerId) -> (PeerId, PeerId) {
    if a <= b { (a, b) } else { (b, a) }
}

impl MemoryHub {
    /// A hub whose loss decisions derive from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            inner: Arc::new(HubInner {
                seed,
                counter: AtomicU64::new(0),
                state: Mutex::new(HubState::default()),
            }),
        }
    }

    /// Registers an endpoint for `peer`.
    pub fn transport(&self, peer: PeerId) -> Result<MemoryTransport, MemoryError> {
        self.transport_with_ip(peer, None)
    }

    /// Registers an endpoint for `peer` whose connections appear to come
    /// from `ip` (to exercise per-IP limits).
    pub fn transport_with_ip(
        &self,
        peer: PeerId,
        ip: Option<IpAddr>,
    ) -> Result<MemoryTransport, MemoryError> {
        let (accept_tx, accept_rx) = mpsc::channel(ACCEPT_BACKLOG);
        let generation = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let mut state = self.inner.state.lock();
        if state.endpoints.contains_key(&peer) {
            return Err(MemoryError::AddressInUse(peer));
        }
        state.endpoints.insert(
            peer,
            Endpoint {
                generation,
                accept: accept_tx,
                ip,
            },
        );
        Ok(MemoryTransport {
            hub: self.clone(),
            peer,
            generation,
            accept: tokio::sync::Mutex::new(accept_rx),
        })
    }

    fn conditions(&self, from: PeerId, to: PeerId) -> Arc<Mutex<Conditions>> {
        self.inner
            .state
            .lock()
            .conditions
            .entry((from, to))
            .or_default()
            .clone()
    }

    /// Sets the one-way latency between `a` and `b`, both directions. Live
    /// connections follow at once.
    pub fn set_latency(&self, a: PeerId, b: PeerId, latency: Duration) {
        self.conditions(a, b).lock().latency = latency;
        self.conditions(b, a).lock().latency = latency;
    }

    /// Sets the probability that a data frame between `a` and `b` is lost,
    /// both directions.
    pub fn set_loss(&self, a: PeerId, b: PeerId, loss: f64) {
        let loss = loss.clamp(0.0, 1.0);
        self.conditions(a, b).lock().loss = loss;
        self.conditions(b, a).lock().loss = loss;
    }

    /// Limits the bandwidth between `a` and `b` (each direction) to
    /// `bytes_per_second`, or lifts the limit with `None`. A sender spends
    /// the time its batch takes on the wire before it can send again, so a
    /// limited link makes the router's scheduler the one that decides who
    /// goes first.
    pub fn set_bandwidth(&self, a: PeerId, b: PeerId, bytes_per_second: Option<u64>) {
        self.conditions(a, b).lock().bandwidth = bytes_per_second;
        self.conditions(b, a).lock().bandwidth = bytes_per_second;
    }

    /// Makes the path between `a` and `b` silently discard everything, in
    /// both directions, without closing anything (`true`), or restores it
    /// (`false`): a dead peer or a dead path, which only keepalive detects.
    pub fn set_blackhole(&self, a: PeerId, b: PeerId, on: bool) {
        self.conditions(a, b).lock().blackhole = on;
        self.conditions(b, a).lock().blackhole = on;
    }

    /// Cuts `a` from `b`: live connections fail, dials fail until
    /// [`heal`](Self::heal).
    pub fn cut(&self, a: PeerId, b: PeerId) {
        let tokens = {
            let mut state = self.inner.state.lock();
            state.cut.insert(pair(a, b));
            state.live.remove(&pair(a, b)).unwrap_or_default()
        };
        for (token, _) in tokens {
            token.cancel();
        }
    }

    /// Lets `a` and `b` talk again.
    pub fn heal(&self, a: PeerId, b: PeerId) {
        self.inner.state.lock().cut.remove(&pair(a, b));
    }

    /// Cuts every pair of peers in different groups.
    pub fn partition(&self, groups: &[Vec<PeerId>]) {
        for (i, g) in groups.iter().enumerate() {
            for h in &groups[i + 1..] {
                for &a in g {
                    for &b in h {
                        self.cut(a, b);
                    }
                }
            }
        }
    }

    /// Heals every cut.
    pub fn heal_all(&self) {
        self.inner.state.lock().cut.clear();
    }

    /// Removes `peer`'s endpoint and fails all its connections, as if its
    /// process died.
    pub fn crash(&self, peer: PeerId) {
        let tokens: Vec<_> = {
            let mut state = self.inner.state.lock();
            state.endpoints.remove(&peer);
            let keys: Vec<_> = state
                .live
                .keys()
                .filter(|(a, b)| *a == peer || *b == peer)
                .copied()
                .collect();
            keys.into_iter()
                .flat_map(|k| state.live.remove(&k).unwrap_or_default())
                .collect()
        };
        for (token, _) in tokens {
            token.cancel();
        }
    }

    /// Whether `peer` has an endpoint.
    pub fn is_registered(&self, peer: PeerId) -> bool {
        self.inner.state.lock().endpoints.contains_key(&peer)
    }

    fn connect(&self, from: PeerId, to: PeerId) -> Result<Connection, String> {
        let mut state = self.inner.state.lock();
        if state.cut.contains(&pair(from, to)) {
            return Err("link is cut".into());
        }
        let from_ip = state.endpoints.get(&from).and_then(|e| e.ip);
        let to_ip = state.endpoints.get(&to).and_then(|e| e.ip);
        let accept = state
            .endpoints
            .get(&to)
            .map(|e| e.accept.clone())
            .ok_or_else(|| "no endpoint with this PeerId".to_string())?;
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        let (ab_tx, ab_rx) = mpsc::channel(PIPE_BATCHES);
        let (ba_tx, ba_rx) = mpsc::channel(PIPE_BATCHES);
        let live = state.live.entry(pair(from, to)).or_default();
        live.retain(|(t, pipe)| !t.is_cancelled() && pipe.strong_count() > 0);
        live.push((token.clone(), ab_tx.downgrade()));
        let forward = state.conditions.entry((from, to)).or_default().clone();
        let backward = state.conditions.entry((to, from)).or_default().clone();
        drop(state);

        let seed = self.inner.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let dialer = Connection {
            remote: to,
            remote_address: Some(PeerAddress::memory(to)),
            remote_ip: to_ip,
            direction: Direction::Outbound,
            hello_sent: false,
            sink: Box::new(MemorySink::new(
                ab_tx.clone(),
                ba_tx.downgrade(),
                forward,
                token.clone(),
                seed,
            )),
            stream: Box::new(MemoryStream::new(ba_rx, token.clone())),
        };
        let listener = Connection {
            remote: from,
            remote_address: Some(PeerAddress::memory(from)),
            remote_ip: from_ip,
            direction: Direction::Inbound,
            hello_sent: false,
            sink: Box::new(MemorySink::new(
                ba_tx,
                ab_tx.downgrade(),
                backward,
                token.clone(),
                seed ^ 1,
            )),
            stream: Box::new(MemoryStream::new(ab_rx, token.clone())),
        };
        accept.try_send(listener).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => "accept backlog full".to_string(),
            mpsc::error::TrySendError::Closed(_) => "endpoint closed".to_string(),
        })?;
        Ok(dialer)
    }
}

/// A connection's cut token and a weak handle on its dialer's pipe.
type LiveConnection = (CancellationToken, mpsc::WeakSender<Batch>);

/// A batch in flight.
#[derive(Debug)]
struct Batch {
    deliver_at: Option<Instant>,
    frames: Vec<Frame>,
}

struct MemorySink {
    tx: Option<mpsc::Sender<Batch>>,
    /// The opposite pipe, into which refunds for lost frames go. Weak, so
    /// that when the remote's sink closes, our stream ends at once instead
    /// of waiting on keepalive.
    reverse: mpsc::WeakSender<Batch>,
    conditions: Arc<Mutex<Conditions>>,
    cut: CancellationToken,
    rng: ChaCha12Rng,
}

impl MemorySink {
    fn new(
        tx: mpsc::Sender<Batch>,
        reverse: mpsc::WeakSender<Batch>,
        conditions: Arc<Mutex<Conditions>>,
        cut: CancellationToken,
        seed: u64,
    ) -> Self {
        Self {
            tx: Some(tx),
            reverse,
            conditions,
            cut,
            rng: ChaCha12Rng::seed_from_u64(seed),
        }
    }

    async fn send_batch(&mut self, frames: &mut Vec<Frame>) -> Result<(), ConnectionError> {
        let Conditions {
            latency,
            loss,
            bandwidth,
            blackhole,
        } = *self.conditions.lock();
        if blackhole {
            frames.clear();
            return Ok(());
        }
        let mut refunds = Vec::new();
        if loss > 0.0 {
            let rng = &mut self.rng;
            frames.retain(|f| match f {
                Frame::Data { channel, .. } if rng.random::<f64>() < loss => {
                    refunds.push(Frame::Credit {
                        channel: *channel,
                        messages: 1,
                    });
                    false
                }
                _ => true,
            });
        }
        let tx = self.tx.as_ref().ok_or(ConnectionError::Closed)?;
        if let Some(rate) = bandwidth.filter(|r| *r > 0) {
            let bytes: usize = frames.iter().map(Frame::weight).sum();
            let wire_time = Duration::from_secs_f64(bytes as f64 / rate as f64);
            tokio::select! {
                biased;
                _ = self.cut.cancelled() => return Err(ConnectionError::Reset("link cut".into())),
                _ = tokio::time::sleep(wire_time) => {}
            }
        }
        let deliver_at = (!latency.is_zero()).then(|| Instant::now() + latency);
        let batch = Batch {
            deliver_at,
            frames: std::mem::take(frames),
        };
        tokio::select! {
            biased;
            _ = self.cut.cancelled() => return Err(ConnectionError::Reset("link cut".into())),
            sent = tx.send(batch) => sent.map_err(|_| ConnectionError::Closed)?,
        }
        if !refunds.is_empty() {
            // Credit for what the network lost, as if the remote had consumed
            // it; only our own reader drains this pipe, so this cannot
            // deadlock with the remote.
            let refund = Batch {
                deliver_at,
                frames: refunds,
            };
            // If the remote hung up, there is nobody to refund.
            if let Some(reverse) = self.reverse.upgrade() {
                tokio::select! {
                    biased;
                    _ = self.cut.cancelled() => return Err(ConnectionError::Reset("link cut".into())),
                    _ = reverse.send(refund) => {}
                }
            }
        }
        Ok(())
    }
}

impl FrameSink for MemorySink {
    fn send<'a>(
        &'a mut self,
        frames: &'a mut Vec<Frame>,
    ) -> BoxFuture<'a, Result<(), ConnectionError>> {
        Box::pin(self.send_batch(frames))
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        self.tx = None;
        Box::pin(async {})
    }
}

struct MemoryStream {
    rx: mpsc::Receiver<Batch>,
    cut: CancellationToken,
    /// A batch taken from the pipe that is not due yet.
    held: VecDeque<Batch>,
    /// The largest frame accepted, in encoded bytes (none: no limit; the
    /// frames were allocated in this process by the sender).
    frame_limit: Option<usize>,
}

impl MemoryStream {
    fn new(rx: mpsc::Receiver<Batch>, cut: CancellationToken) -> Self {
        Self {
            rx,
            cut,
            held: VecDeque::new(),
            frame_limit: None,
        }
    }

    async fn recv_batch(&mut self, out: &mut Vec<Frame>) -> Result<(), ConnectionError> {
        loop {
            if self.cut.is_cancelled() {
                return Err(ConnectionError::Reset("link cut".into()));
            }
            let batch = match self.held.pop_front() {
                Some(batch) => batch,
                None => tokio::select! {
                    biased;
                    _ = self.cut.cancelled() => return Err(ConnectionError::Reset("link cut".into())),
                    batch = self.rx.recv() => batch.ok_or(ConnectionError::Closed)?,
                },
            };
            if let Some(at) = batch.deliver_at.filter(|at| *at > Instant::now()) {
                self.held.push_front(batch);
                tokio::select! {
                    biased;
                    _ = self.cut.cancelled() => return Err(ConnectionError::Reset("link cut".into())),
                    _ = tokio::time::sleep_until(at) => {}
                }
                continue;
            }
            out.extend(batch.frames);
            // Take whatever else is already due, without waiting.
            while let Ok(next) = self.rx.try_recv() {
                if next.deliver_at.is_some_and(|at| at > Instant::now()) {
                    self.held.push_back(next);
                    break;
                }
                out.extend(next.frames);
            }
            if let Some(max) = self.frame_limit
                && let Some(size) = out.iter().map(Frame::encoded_len).find(|s| *s > max)
            {
                return Err(ConnectionError::FrameTooLarge {
                    size: size as u64,
                    max,
                });
            }
            if !out.is_empty() {
                return Ok(());
            }
        }
    }
}

impl FrameStream for MemoryStream {
    fn recv<'a>(
        &'a mut self,
        out: &'a mut Vec<Frame>,
    ) -> BoxFuture<'a, Result<(), ConnectionError>> {
        Box::pin(self.recv_batch(out))
    }

    fn set_frame_limit(&mut self, limit: Option<usize>) {
        self.frame_limit = limit;
    }
}

/// A memory-hub endpoint for one peer.
#[derive(Debug)]
pub struct MemoryTransport {
    hub: MemoryHub,
    peer: PeerId,
    generation: u64,
    accept: tokio::sync::Mutex<mpsc::Receiver<Connection>>,
}

impl MemoryTransport {
    /// The PeerId this endpoint is registered under.
    pub fn peer_id(&self) -> PeerId {
        self.peer
    }

    /// The hub.
    pub fn hub(&self) -> &MemoryHub {
        &self.hub
    }
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        let mut state = self.hub.inner.state.lock();
        if state
            .endpoints
            .get(&self.peer)
            .is_some_and(|e| e.generation == self.generation)
        {
            state.endpoints.remove(&self.peer);
        }
    }
}

impl Transport for MemoryTransport {
    fn scheme(&self) -> &'static str {
        "memory"
    }

    fn listen_addresses(&self) -> Vec<PeerAddress> {
        vec![PeerAddress::memory(self.peer)]
    }

    fn accept(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(async move {
            let mut accept = self.accept.lock().await;
            accept.recv().await.ok_or(TransportError::Closed)
        })
    }

    fn dial<'a>(
        &'a self,
        address: &'a PeerAddress,
    ) -> BoxFuture<'a, Result<Connection, TransportError>> {
        Box::pin(async move {
            if address.scheme() != "memory" {
                return Err(TransportError::UnsupportedAddress(address.to_string()));
            }
            if !self.hub.is_registered(self.peer) {
                return Err(TransportError::Closed);
            }
            self.hub.connect(self.peer, address.peer).map_err(|reason| {
                TransportError::Unreachable {
                    address: address.to_string(),
                    reason,
                }
            })
        })
    }
}
