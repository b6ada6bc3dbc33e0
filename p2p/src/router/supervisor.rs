//! The supervisor: the one task that owns the peer manager, the peer store
//! and the table of connected peers. Every other task talks to it through
//! three bounded queues ([`Inboxes`]): misbehaviour reports (never waited
//! for: a full queue drops the report, counted as
//! `peer_reports_dropped_total`), connection lifecycle (connection tasks
//! wait for room) and the router handle's commands (callers wait), read in
//! that order of priority — a connection's report before its close.
//! It never waits on a peer, a reactor or a subscriber (peer updates go out
//! on a broadcast channel that drops for laggards instead of blocking).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::address::PeerAddress;
use crate::identity::PeerId;
use crate::ip_prefix::{PrefixSlot, PrefixSlots};
use crate::metrics::DirectionLabels;
use crate::peer_manager::PeerError;
use crate::peer_manager::{
    AddAddressError, AddressSource, Admission, Direction, PeerManager, RemoteRefusal, ReportOutcome,
};
use crate::peer_store::BanRecord;
use crate::proto::{self, GoodbyeReason};
use crate::router::connection::{self, ConnectionLimits, Early, HandshakeError};
use crate::router::link::Link;
use crate::router::shared::{ChannelTable, Shared};
use crate::router::store_writer::StoreWriter;
use crate::router::{PeerStatus, PeerUpdate, RouterConfig};
use crate::transport::{Connection, Frame, Refusal, RefusalCounts, Transport, TransportError};

/// The supervisor's queues, one per kind of event, so that a flood of one
/// kind cannot delay another and a report never waits.
#[derive(Debug)]
pub(crate) struct Inboxes {
    pub lifecycle: mpsc::Receiver<Event>,
    pub commands: mpsc::Receiver<Event>,
    pub reports: mpsc::Receiver<Event>,
}

/// Slots of the lifecycle queue (connections ready, failed, closed).
pub(crate) const LIFECYCLE_QUEUE: usize = 1024;
/// Slots of the command queue (the router handle's requests).
pub(crate) const COMMAND_QUEUE: usize = 256;
/// Slots of the report queue; a report beyond is dropped and counted.
pub(crate) const REPORT_QUEUE: usize = 1024;

/// Something the supervisor must handle.
#[derive(Debug)]
pub(crate) enum Event {
    /// A connection passed the `Hello` exchange.
    Ready(Box<ReadyConnection>),
    /// An outbound dial or its handshake failed.
    DialFailed {
        peer: PeerId,
        address: PeerAddress,
        error: String,
        kind: DialFailure,
    },
    /// A connection ended.
    Closed {
        peer: PeerId,
        conn_id: u64,
        reason: String,
        refusal: Option<RemoteRefusal>,
        at_admission: bool,
    },
    /// A peer misbehaved.
    Report { peer: PeerId, error: PeerError },
    /// A request from the router's handle.
    Command(Command),
}

/// What kind of failure ended a dial: what the log says about it and how
/// the peer manager backs off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DialFailure {
    /// Nobody answered, the name did not resolve, the link broke.
    Unreachable,
    /// Another key answered than the address names.
    WrongPeer,
    /// The peer is on another network id (or protocol version).
    NetworkMismatch,
    /// The dial or the handshake took too long.
    Timeout,
    /// Any other handshake failure.
    Handshake,
}

impl DialFailure {
    fn of_transport(error: &TransportError) -> Self {
        match error {
            TransportError::WrongPeer { .. } => DialFailure::WrongPeer,
            TransportError::Refused {
                reason: Refusal::NetworkMismatch,
                ..
            } => DialFailure::NetworkMismatch,
            TransportError::Refused {
                reason: Refusal::HandshakeTimeout,
                ..
            } => DialFailure::Timeout,
            TransportError::Unreachable { .. } | TransportError::Io(_) => DialFailure::Unreachable,
            _ => DialFailure::Handshake,
        }
    }

    fn of_hello(error: &HandshakeError) -> Self {
        match error.label {
            "network_mismatch" | "version_mismatch" => DialFailure::NetworkMismatch,
            "peer_id_mismatch" => DialFailure::WrongPeer,
            "io" => DialFailure::Unreachable,
            _ => DialFailure::Handshake,
        }
    }

    /// A failure that says the configuration is wrong somewhere: worth a
    /// WARN whoever the peer is.
    fn is_misconfiguration(self) -> bool {
        matches!(self, DialFailure::WrongPeer | DialFailure::NetworkMismatch)
    }
}

/// A connection that passed the `Hello` exchange.
#[derive(Debug)]
pub(crate) struct ReadyConnection {
    conn: Connection,
    info: proto::NodeInfo,
    early: Early,
    /// An inbound connection keeps its handshake slots until the
    /// supervisor has admitted or refused it, so early data held meanwhile
    /// stays within `max_pending_handshakes × MAX_EARLY_BYTES`.
    _slots: Option<HandshakeSlots>,
    /// The scheme of the transport that made it.
    transport: &'static str,
}

/// Requests from the [`Router`](crate::router::Router) handle.
#[derive(Debug)]
pub(crate) enum Command {
    AddAddresses {
        addresses: Vec<PeerAddress>,
        source: AddressSource,
        /// A reactor wants these peers connected (`Router::connect`).
        request: bool,
        reply: oneshot::Sender<Vec<Result<bool, AddAddressError>>>,
    },
    SampleAddresses {
        max: usize,
        exclude: Option<PeerId>,
        reply: oneshot::Sender<Vec<PeerAddress>>,
    },
    KnownPeers {
        reply: oneshot::Sender<usize>,
    },
    Disconnect {
        peer: PeerId,
        ban: Option<Duration>,
        reply: oneshot::Sender<bool>,
    },
    Score {
        peer: PeerId,
        reply: oneshot::Sender<Option<i64>>,
    },
    Bans {
        reply: oneshot::Sender<Vec<crate::router::Ban>>,
    },
    Unban {
        peer: PeerId,
        reply: oneshot::Sender<bool>,
    },
}

pub(crate) struct Supervisor {
    pub shared: Arc<Shared>,
    pub config: RouterConfig,
    pub table: Arc<ChannelTable>,
    pub local_info: proto::NodeInfo,
    pub peer_manager: PeerManager,
    pub store: StoreWriter,
    pub transports: Vec<Arc<dyn Transport>>,
    pub inboxes: Inboxes,
    pub tracker: TaskTracker,
    /// Cancelled after the graceful part of shutdown: ends every connection.
    pub hard_stop: CancellationToken,
    pub next_conn_id: u64,
}

impl Supervisor {
    pub async fn run(mut self) {
        let limits = HandshakeLimits {
            timeout: self.config.handshake_timeout,
            all: Arc::new(Semaphore::new(self.config.max_pending_handshakes)),
            per_prefix: Arc::new(PrefixSlots::default()),
            max_per_prefix: self.config.max_pending_handshakes_per_prefix,
        };
        for transport in &self.transports {
            self.tracker.spawn(accept_loop(
                self.shared.clone(),
                transport.clone(),
                self.local_info.clone(),
                limits.clone(),
                self.tracker.clone(),
            ));
        }
        let period = self.config.store_flush_interval;
        let mut flush = tokio::time::interval_at(Instant::now() + period, period);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.start_dials();
            let wake = self
                .peer_manager
                .next_dial_at()
                .map(Instant::from_std)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                _ = self.shared.shutdown.cancelled() => break,
                // Reports first: a connection task reports a violation
                // before it ends, and its report must be charged before its
                // close forgets the peer; reports are cheap and bounded.
                // Then connections (they hold sockets), then the handle's
                // requests.
                Some(event) = self.inboxes.reports.recv() => self.on_event(event),
                Some(event) = self.inboxes.lifecycle.recv() => self.on_event(event),
                Some(event) = self.inboxes.commands.recv() => self.on_event(event),
                _ = tokio::time::sleep_until(wake) => {}
                _ = flush.tick() => self.flush_store(),
            }
        }
        self.stop().await;
    }

    fn now(&self) -> std::time::Instant {
        Instant::now().into_std()
    }

    fn start_dials(&mut self) {
        let now = self.now();
        while let Some(address) = self.peer_manager.next_dial(now) {
            let Some(transport) = self
                .transports
                .iter()
                .find(|t| t.scheme() == address.scheme())
                .cloned()
            else {
                tracing::warn!(%address, "cannot dial: no transport is enabled for this address");
                self.shared.metrics.dial_failures.inc();
                self.peer_manager.dial_failed(address.peer, now);
                continue;
            };
            self.shared.metrics.dial_attempts.inc();
            self.tracker.spawn(dial(
                self.shared.clone(),
                transport,
                address,
                self.local_info.clone(),
                self.config.dial_timeout,
                self.config.handshake_timeout,
            ));
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Ready(ready) => {
                let ReadyConnection {
                    conn,
                    info,
                    early,
                    transport,
                    ..
                } = *ready;
                self.on_ready(conn, info, early, transport);
            }
            Event::DialFailed {
                peer,
                address,
                error,
                kind,
            } => {
                // A peer the operator named (bootstrap, persistent, the
                // API) that cannot be reached is news; one that peer
                // exchange told us about is routine.
                if kind.is_misconfiguration() || self.peer_manager.is_trusted(peer) {
                    tracing::warn!(peer = %peer, %address, %error, "dial failed");
                } else {
                    tracing::debug!(peer = %peer, %address, %error, "dial failed");
                }
                self.shared.metrics.dial_failures.inc();
                let now = self.now();
                self.peer_manager.dial_failed(peer, now);
            }
            Event::Closed {
                peer,
                conn_id,
                reason,
                refusal,
                at_admission,
            } => self.on_closed(peer, conn_id, &reason, refusal, at_admission),
            Event::Report { peer, error } => self.on_report(peer, error),
            Event::Command(command) => self.on_command(command),
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = self.now();
        match command {
            Command::AddAddresses {
                addresses,
                source,
                request,
                reply,
            } => {
                let results: Vec<Result<bool, AddAddressError>> = if request {
                    self.peer_manager.request(addresses, source)
                } else {
                    addresses
                        .into_iter()
                        .map(|address| self.peer_manager.add_address(address, source))
                        .collect()
                };
                // One screen for every source: each refusal is counted here,
                // whichever reactor (or the operator) sent the address.
                for error in results.iter().filter_map(|r| r.as_ref().err()) {
                    self.shared.metrics.address_refused(error.reason());
                }
                let _ = reply.send(results);
            }
            Command::SampleAddresses {
                max,
                exclude,
                reply,
            } => {
                let _ = reply.send(self.peer_manager.sample_addresses(max, exclude, now));
            }
            Command::KnownPeers { reply } => {
                let _ = reply.send(self.peer_manager.known_peers());
            }
            Command::Disconnect { peer, ban, reply } => {
                let detail = "requested by the operator";
                let goodbye = match ban {
                    Some(duration) => {
                        let until = self.peer_manager.ban(peer, duration, now);
                        tracing::info!(
                            peer = %peer,
                            ban_seconds = until.saturating_duration_since(now).as_secs(),
                            "peer banned by the operator"
                        );
                        Frame::banned(detail, Some(until.saturating_duration_since(now)))
                    }
                    None => Frame::goodbye(GoodbyeReason::DisconnectRequested, detail),
                };
                let connected = self.disconnect_with(peer, goodbye);
                let _ = reply.send(connected);
            }
            Command::Score { peer, reply } => {
                let _ = reply.send(self.peer_manager.score(peer));
            }
            Command::Bans { reply } => {
                let bans = self
                    .peer_manager
                    .bans(now)
                    .into_iter()
                    .map(|(peer, until)| crate::router::Ban {
                        peer,
                        remaining: until.saturating_duration_since(now),
                    })
                    .collect();
                let _ = reply.send(bans);
            }
            Command::Unban { peer, reply } => {
                let lifted = self.peer_manager.unban(peer, now);
                if lifted {
                    tracing::info!(peer = %peer, "ban lifted by the operator");
                    // Saved now, not at the next flush: an unban should
                    // hold across a crash as much as a ban does.
                    self.flush_store();
                }
                let _ = reply.send(lifted);
            }
        }
    }

    fn on_report(&mut self, peer: PeerId, error: PeerError) {
        let now = self.now();
        let outcome = self.peer_manager.report(peer, error.penalty(), now);
        let detail = error.to_string();
        match outcome {
            ReportOutcome::Ban { until } => {
                tracing::info!(peer = %peer, %detail, "banning peer");
                let remaining = until.saturating_duration_since(now);
                self.disconnect_with(peer, Frame::banned(detail, Some(remaining)));
            }
            ReportOutcome::Disconnect => {
                self.disconnect(peer, GoodbyeReason::ProtocolViolation, &detail);
            }
            ReportOutcome::Noted if error.is_fatal() => {
                self.disconnect(peer, GoodbyeReason::ProtocolViolation, &detail);
            }
            ReportOutcome::Noted => {}
        }
    }

    /// Says goodbye to `peer` and closes its connection; the reader reports
    /// `Closed` when it is gone. Returns whether it was connected.
    fn disconnect(&mut self, peer: PeerId, reason: GoodbyeReason, detail: &str) -> bool {
        self.disconnect_with(peer, Frame::goodbye(reason, detail))
    }

    /// [`disconnect`](Self::disconnect) with this goodbye.
    fn disconnect_with(&mut self, peer: PeerId, goodbye: Frame) -> bool {
        match self.shared.link(peer) {
            Some(link) => {
                link.close_with(Some(goodbye), &self.shared.metrics);
                true
            }
            None => false,
        }
    }

    fn on_ready(
        &mut self,
        conn: Connection,
        info: proto::NodeInfo,
        early: Early,
        transport: &'static str,
    ) {
        let peer = conn.remote;
        let now = self.now();
        if let Some(existing) = self.shared.link(peer) {
            // Both sides dialed at once. Both keep the connection dialed by
            // the smaller PeerId, so they agree without talking.
            let dialer = |direction| match direction {
                Direction::Outbound => self.shared.local,
                Direction::Inbound => peer,
            };
            if dialer(existing.direction) <= dialer(conn.direction) {
                if conn.direction == Direction::Outbound {
                    // Ends the dial in the peer manager's books.
                    let _ = self.peer_manager.dialed(peer, conn.remote_ip, now);
                }
                self.refuse(
                    conn,
                    early,
                    transport,
                    GoodbyeReason::Duplicate,
                    "duplicate",
                );
                return;
            }
            // The peer keeps its slot in the peer manager: the new
            // connection takes the old one's place without a new admission,
            // so a limit reached meanwhile cannot leave us with neither.
            let kept = self
                .peer_manager
                .replaced(peer, conn.direction, conn.remote_ip, now);
            self.unlink(&existing, "replaced by a simultaneous connection");
            existing.close_with(
                Some(Frame::goodbye(GoodbyeReason::Duplicate, "replaced")),
                &self.shared.metrics,
            );
            if !kept {
                // Not connected in the peer manager's books (evicted or
                // being evicted): admit the new connection afresh below.
                self.peer_manager.disconnected(peer, now);
            } else {
                self.admit_link(conn, info, early, transport);
                return;
            }
        }
        let admission = match conn.direction {
            Direction::Outbound => self.peer_manager.dialed(peer, conn.remote_ip, now),
            Direction::Inbound => self.peer_manager.accepted(peer, conn.remote_ip, now),
        };
        let evict = match admission {
            Admission::Reject(reason) => {
                tracing::debug!(peer = %peer.short(), %reason, "connection refused");
                let goodbye = match reason {
                    crate::peer_manager::RejectReason::Banned => GoodbyeReason::Banned,
                    _ => GoodbyeReason::Rejected,
                };
                let label = reason.label();
                let ban_remaining = self.peer_manager.ban_remaining(peer, now);
                let err = HandshakeError {
                    reason: goodbye,
                    detail: reason.to_string(),
                    label,
                    ban_remaining,
                };
                self.refuse_with(conn, early, transport, err);
                return;
            }
            Admission::Admit { evict } => evict,
        };
        if let Some(victim) = evict
            && !self.disconnect(victim, GoodbyeReason::Evicted, "evicted for a better peer")
        {
            self.peer_manager.disconnected(victim, now);
        }
        self.admit_link(conn, info, early, transport);
    }

    /// Makes `conn`, admitted by the peer manager, a live link and starts
    /// its tasks.
    fn admit_link(
        &mut self,
        conn: Connection,
        info: proto::NodeInfo,
        early: Early,
        transport: &'static str,
    ) {
        let peer = conn.remote;
        self.next_conn_id += 1;
        let mut link = Link::new(
            peer,
            self.next_conn_id,
            conn.direction,
            info,
            &self.table,
            &self.shared.metrics,
            connection::connection_token(&self.hard_stop),
        );
        link.remote_ip = conn.remote_ip;
        link.set_transport(transport, &self.shared.metrics);
        let link = Arc::new(link);
        self.shared.peers.write().insert(peer, link.clone());
        // Any previous connection of this peer is closed by now, so this one
        // is charged for what that one left in the receive queues. Its
        // initial credit is queued before the writer starts.
        self.table.ledger.register(&link);
        self.direction_gauge(conn.direction).inc();
        self.shared.metrics.handshake_ok(transport);
        self.shared.metrics.connection_gauge(transport).inc();
        let channels = link.common_channels();
        tracing::info!(
            peer = %peer,
            direction = %conn.direction,
            address = conn.remote_address.as_ref().map(tracing::field::display),
            software = link.remote_info.software_version.as_str(),
            "peer up"
        );
        let shared = self.shared.clone();
        let table = self.table.clone();
        let limits = ConnectionLimits {
            max_batch_frames: self.config.max_batch_frames,
            max_batch_bytes: self.config.max_batch_bytes,
            close_grace: self.config.close_grace,
            ping_interval: self.config.ping_interval,
            pong_timeout: self.config.pong_timeout,
        };
        let direction = conn.direction;
        self.tracker.spawn(async move {
            let conn_id = link.conn_id;
            let ended = connection::run(
                shared.clone(),
                table,
                link,
                conn.sink,
                conn.stream,
                early,
                limits,
            )
            .await;
            let closed = Event::Closed {
                peer,
                conn_id,
                reason: ended.reason,
                refusal: ended.refusal,
                at_admission: ended.at_admission,
            };
            tokio::select! {
                biased;
                _ = shared.lifecycle.send(closed) => {}
                _ = shared.shutdown.cancelled() => {}
            }
        });
        let _ = self.shared.updates.send(PeerUpdate {
            peer,
            status: PeerStatus::Up {
                channels,
                direction,
            },
        });
    }

    fn on_closed(
        &mut self,
        peer: PeerId,
        conn_id: u64,
        reason: &str,
        refusal: Option<RemoteRefusal>,
        at_admission: bool,
    ) {
        let Some(link) = self.shared.link(peer).filter(|l| l.conn_id == conn_id) else {
            // An older connection that was already replaced.
            return;
        };
        let Some(refusal) = refusal else {
            self.remove_link(&link, reason);
            return;
        };
        // The remote refused us (at admission, or by a ban): not redialed
        // until the backoff (or the ban) ends, and a dial that it refused
        // at once is a failed dial.
        if link.direction == Direction::Outbound && at_admission {
            self.shared.metrics.dial_failures.inc();
        }
        match refusal {
            RemoteRefusal::Banned { remaining } => tracing::warn!(
                peer = %peer,
                ban_seconds = remaining.map(|d| d.as_secs()),
                %reason,
                "the peer has banned this node; not dialing it until the ban ends"
            ),
            RemoteRefusal::Rejected => tracing::info!(
                peer = %peer,
                %reason,
                "the peer refused the connection; backing off"
            ),
        }
        let now = self.now();
        self.peer_manager.remote_refused(peer, refusal, now);
        self.unlink(&link, reason);
    }

    /// Takes `link` out of the table and tells everyone the peer is down.
    fn remove_link(&mut self, link: &Link, reason: &str) {
        let now = self.now();
        self.peer_manager.disconnected(link.peer, now);
        self.unlink(link, reason);
    }

    /// Removes `link` from the router's tables (not the peer manager's) and
    /// tells subscribers the peer is down.
    fn unlink(&mut self, link: &Link, reason: &str) {
        self.shared.peers.write().remove(&link.peer);
        self.direction_gauge(link.direction).dec();
        self.shared.metrics.connection_gauge(link.transport).dec();
        for m in &link.metrics {
            self.shared.metrics.remove_link_channel(m);
        }
        tracing::info!(peer = %link.peer, direction = %link.direction, %reason, "peer down");
        let _ = self.shared.updates.send(PeerUpdate {
            peer: link.peer,
            status: PeerStatus::Down {
                reason: reason.to_string(),
            },
        });
    }

    fn direction_gauge(&self, direction: Direction) -> prometheus_client::metrics::gauge::Gauge {
        self.shared
            .metrics
            .peers
            .get_or_create(&DirectionLabels {
                direction: direction.to_string(),
            })
            .clone()
    }

    fn refuse(
        &self,
        conn: Connection,
        early: Early,
        transport: &'static str,
        reason: GoodbyeReason,
        label: &'static str,
    ) {
        let err = HandshakeError {
            reason,
            detail: label.to_string(),
            label,
            ban_remaining: None,
        };
        self.refuse_with(conn, early, transport, err);
    }

    /// Refuses a connection that passed the `Hello` exchange: counts it
    /// and its early data, and tells the remote why.
    fn refuse_with(
        &self,
        conn: Connection,
        early: Early,
        transport: &'static str,
        err: HandshakeError,
    ) {
        self.shared.metrics.refused(transport, err.label);
        early.refused(&self.shared);
        let mut sink = conn.sink;
        self.tracker.spawn(async move {
            connection::refuse(sink.as_mut(), &err).await;
        });
    }

    /// Hands what changed to the store's writer, never waiting for the
    /// disk.
    fn flush_store(&mut self) {
        let dirty = self.peer_manager.take_dirty();
        let forgotten = self.peer_manager.take_forgotten();
        let bans = self.changed_bans();
        self.store.flush(dirty, forgotten, bans);
    }

    /// Every ban in force with its wall-clock end, if any ban changed since
    /// the last save.
    fn changed_bans(&mut self) -> Option<Vec<BanRecord>> {
        if !self.peer_manager.take_bans_changed() {
            return None;
        }
        let now = self.now();
        let wall = std::time::SystemTime::now();
        Some(
            self.peer_manager
                .bans(now)
                .into_iter()
                .map(|(peer, until)| BanRecord {
                    peer,
                    until: wall + until.saturating_duration_since(now),
                })
                .collect(),
        )
    }

    /// Graceful shutdown: goodbye to every peer, a grace period for the
    /// goodbyes to go out, then every task is stopped and awaited, and the
    /// peer store is flushed.
    async fn stop(mut self) {
        self.tracker.close();
        if self
            .shared
            .abrupt
            .load(std::sync::atomic::Ordering::Acquire)
        {
            self.hard_stop.cancel();
            self.tracker.wait().await;
            for link in self.shared.links() {
                self.remove_link(&link, "router killed");
            }
            // As a crash: only what earlier flushes handed over is written
            // (waited for, so the store is closed when this returns).
            self.store.finish(Vec::new(), Vec::new(), None).await;
            return;
        }
        for link in self.shared.links() {
            link.close_with(
                Some(Frame::goodbye(
                    GoodbyeReason::Shutdown,
                    "node shutting down",
                )),
                &self.shared.metrics,
            );
        }
        if tokio::time::timeout(self.config.close_grace, self.tracker.wait())
            .await
            .is_err()
        {
            self.hard_stop.cancel();
            self.tracker.wait().await;
        }
        self.hard_stop.cancel();
        for link in self.shared.links() {
            self.remove_link(&link, "router shut down");
        }
        let dirty = self.peer_manager.take_dirty();
        let forgotten = self.peer_manager.take_forgotten();
        let bans = self.changed_bans();
        self.store.finish(dirty, forgotten, bans).await;
    }
}

/// Accepts connections until the transport closes or the router stops. An
/// error on one attempt is logged and counted; the loop goes on.
/// What bounds inbound handshakes before admission: a deadline, slots in
/// all, and slots per source network.
#[derive(Clone)]
struct HandshakeLimits {
    timeout: Duration,
    all: Arc<Semaphore>,
    per_prefix: Arc<PrefixSlots>,
    max_per_prefix: usize,
}

/// The slots one inbound handshake holds until it ends.
#[derive(Debug)]
struct HandshakeSlots {
    _all: OwnedSemaphorePermit,
    _prefix: Option<PrefixSlot>,
}

impl HandshakeLimits {
    /// Takes a slot for a connection from `ip`, or says which limit
    /// refuses it.
    fn acquire(&self, ip: Option<std::net::IpAddr>) -> Result<HandshakeSlots, &'static str> {
        let prefix = match ip {
            Some(ip) => Some(
                self.per_prefix
                    .acquire(ip, self.max_per_prefix)
                    .ok_or("too_many_handshakes_from_prefix")?,
            ),
            None => None,
        };
        let all = self
            .all
            .clone()
            .try_acquire_owned()
            .map_err(|_| "too_many_handshakes")?;
        Ok(HandshakeSlots {
            _all: all,
            _prefix: prefix,
        })
    }
}

/// Adds what a transport refused on its own since the last call to
/// `handshakes_refused_total`.
struct TransportRefusals {
    scheme: &'static str,
    counts: Option<RefusalCounts>,
    seen: [u64; Refusal::ALL.len()],
}

impl TransportRefusals {
    fn new(transport: &dyn Transport) -> Self {
        Self {
            scheme: transport.scheme(),
            counts: transport.refusal_counts(),
            seen: [0; Refusal::ALL.len()],
        }
    }

    fn sync(&mut self, shared: &Shared) {
        let Some(counts) = &self.counts else {
            return;
        };
        for (reason, seen) in Refusal::ALL.iter().zip(self.seen.iter_mut()) {
            let now = counts.get(*reason);
            if now > *seen {
                shared
                    .metrics
                    .refused_many(self.scheme, reason.label(), now - *seen);
                *seen = now;
            }
        }
    }
}

/// How often the transports' own refusal counts are added to the metrics
/// when nothing is accepted meanwhile.
const REFUSAL_SYNC: Duration = Duration::from_secs(1);

async fn accept_loop(
    shared: Arc<Shared>,
    transport: Arc<dyn Transport>,
    local_info: proto::NodeInfo,
    limits: HandshakeLimits,
    tracker: TaskTracker,
) {
    let mut refusals = TransportRefusals::new(transport.as_ref());
    let mut sync = tokio::time::interval(REFUSAL_SYNC);
    sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let result = tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => {
                refusals.sync(&shared);
                return;
            }
            result = transport.accept() => result,
            _ = sync.tick(), if refusals.counts.is_some() => {
                refusals.sync(&shared);
                continue;
            }
        };
        refusals.sync(&shared);
        match result {
            Ok(conn) => match limits.acquire(conn.remote_ip) {
                Ok(slots) => {
                    tracker.spawn(inbound_handshake(
                        shared.clone(),
                        conn,
                        local_info.clone(),
                        limits.timeout,
                        slots,
                        transport.scheme(),
                    ));
                }
                Err(label) => {
                    shared.metrics.refused(transport.scheme(), label);
                    tracing::debug!(
                        peer = %conn.remote.short(),
                        ip = ?conn.remote_ip,
                        reason = label,
                        "refused before hello: pending handshakes at their limit"
                    );
                }
            },
            Err(TransportError::Closed) => {
                tracing::debug!(
                    scheme = transport.scheme(),
                    "transport closed; accept loop ends"
                );
                return;
            }
            Err(e) => {
                let label = e.refusal_label();
                shared.metrics.refused(transport.scheme(), label);
                if e.refusal() == Some(Refusal::NetworkMismatch) {
                    if let Some(held) = shared.log_gate.allow("inbound_network_mismatch") {
                        tracing::warn!(
                            scheme = transport.scheme(),
                            error = %e,
                            similar_held_back = held,
                            "inbound connection from another network id refused"
                        );
                    }
                } else {
                    tracing::debug!(scheme = transport.scheme(), error = %e, reason = label, "accept failed");
                }
                // An error that repeats at once (e.g. out of file descriptors)
                // must not spin the loop.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn inbound_handshake(
    shared: Arc<Shared>,
    mut conn: Connection,
    local_info: proto::NodeInfo,
    timeout: Duration,
    slots: HandshakeSlots,
    transport: &'static str,
) {
    let local_info = shared.hello(&local_info);
    let peer = conn.remote;
    let result = tokio::select! {
        biased;
        _ = shared.shutdown.cancelled() => return,
        result = tokio::time::timeout(timeout, connection::handshake(&mut conn, &local_info, &shared)) => result,
    };
    match result {
        Ok(Ok((info, early))) => {
            let event = Event::Ready(Box::new(ReadyConnection {
                conn,
                info,
                early,
                _slots: Some(slots),
                transport,
            }));
            tokio::select! {
                biased;
                _ = shared.shutdown.cancelled() => {}
                _ = shared.lifecycle.send(event) => {}
            }
        }
        Ok(Err(e)) => {
            shared.metrics.refused(transport, e.label);
            match e.label {
                "network_mismatch" | "version_mismatch" | "peer_id_mismatch" => {
                    if let Some(held) = shared.log_gate.allow(e.label) {
                        tracing::warn!(
                            peer = %peer,
                            ip = conn.remote_ip.map(tracing::field::display),
                            error = %e.detail,
                            reason = e.label,
                            similar_held_back = held,
                            "inbound connection refused"
                        );
                    }
                }
                _ => tracing::debug!(peer = %peer.short(), error = %e, "inbound handshake failed"),
            }
        }
        Err(_) => {
            shared.metrics.refused(transport, "handshake_timeout");
            tracing::debug!(peer = %peer.short(), "inbound handshake timed out");
        }
    }
}

async fn dial(
    shared: Arc<Shared>,
    transport: Arc<dyn Transport>,
    address: PeerAddress,
    local_info: proto::NodeInfo,
    dial_timeout: Duration,
    handshake_timeout: Duration,
) {
    let local_info = shared.hello(&local_info);
    let peer = address.peer;
    let attempt = async {
        let mut conn = tokio::time::timeout(dial_timeout, transport.dial(&address))
            .await
            .map_err(|_| ("dial timed out".to_string(), DialFailure::Timeout))?
            .map_err(|e| (e.to_string(), DialFailure::of_transport(&e)))?;
        if conn.remote != peer {
            return Err((
                format!("dialed {peer} but {} answered", conn.remote),
                DialFailure::WrongPeer,
            ));
        }
        let (info, early) = tokio::time::timeout(
            handshake_timeout,
            connection::handshake(&mut conn, &local_info, &shared),
        )
        .await
        .map_err(|_| ("handshake timed out".to_string(), DialFailure::Timeout))?
        .map_err(|e| (e.to_string(), DialFailure::of_hello(&e)))?;
        Ok::<_, (String, DialFailure)>(Event::Ready(Box::new(ReadyConnection {
            conn,
            info,
            early,
            _slots: None,
            transport: transport.scheme(),
        })))
    };
    let event = tokio::select! {
        biased;
        _ = shared.shutdown.cancelled() => return,
        result = attempt => match result {
            Ok(event) => event,
            Err((error, kind)) => Event::DialFailed { peer, address, error, kind },
        },
    };
    tokio::select! {
        biased;
        _ = shared.shutdown.cancelled() => {}
        _ = shared.lifecycle.send(event) => {}
    }
}
