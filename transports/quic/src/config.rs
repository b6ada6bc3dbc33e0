//! Settings of the QUIC transport.

use std::net::SocketAddr;
use std::time::Duration;

/// QUIC transport settings. Every field has a default.
#[derive(Debug, Clone)]
pub struct QuicConfig {
    /// Where to listen (default `127.0.0.1:0`: loopback, any free port).
    /// The same UDP socket dials.
    pub listen: SocketAddr,
    /// Carried in the ALPN (`switchyard/1/<network-id>`): nodes of
    /// different networks cannot complete a TLS handshake. At most
    /// [`MAX_NETWORK_ID_LEN`](crate::MAX_NETWORK_ID_LEN) bytes.
    pub network_id: String,
    /// Deadline for the QUIC + TLS handshake and the control stream's
    /// opening (default 10 s).
    pub handshake_timeout: Duration,
    /// Handshakes in progress from one network (an IPv4 /24 or IPv6 /48,
    /// [`p2p::IpPrefix`]; default 8); more connection attempts from that
    /// network are refused at once.
    pub max_handshakes_per_prefix: usize,
    /// Handshakes in progress in all (default 256).
    pub max_handshakes: usize,
    /// Authenticated inbound connections waiting for the router (default 128).
    pub accept_backlog: usize,
    /// Largest frame accepted, checked against a frame's length prefix
    /// before it is buffered (default: the router's absolute largest
    /// message, 16 MiB, plus framing). Each channel stream reassembles one
    /// frame at a time, so set it to the largest `max_message_size` among
    /// the node's channels plus 64 (see ADR 0006, "Limits").
    pub max_frame_size: usize,
    /// Bytes of partial frames one connection may make us buffer, over its
    /// control stream and all its channel streams (default: 16 MiB + 64,
    /// one largest frame, as much as TCP's one partial frame can hold).
    /// Each stream reassembles one frame at a time, so honest peers
    /// buffer at most one partial frame per channel in use; more closes
    /// the connection (`ConnectionError::ReassemblyTooLarge`, counted by
    /// the router as `transport_violations_total{reason="reassembly_budget"}`).
    /// At least `max_frame_size`; set it to the sum of the largest
    /// `max_message_size` of the channels a peer may send on at once if
    /// several of them carry large messages.
    pub max_reassembly_bytes: usize,
    /// Channels a peer may open streams for at once (default 256): the
    /// QUIC limit on concurrent unidirectional streams is this plus a
    /// little slack. A channel beyond it waits for a stream and stalls alone.
    pub max_channels: u32,
    /// Bytes a peer may have in flight on one channel stream before it
    /// must wait for us to read (QUIC stream flow control; default 1 MiB).
    pub stream_receive_window: u32,
    /// Bytes a peer may have in flight on the whole connection (QUIC
    /// connection flow control; default 16 MiB).
    pub receive_window: u32,
    /// A connection with no packet from the peer for this long is dead
    /// (QUIC idle timeout, the smaller of both sides' wins; default 30 s).
    pub idle_timeout: Duration,
    /// Send a QUIC PING when nothing was sent for this long, so an idle but
    /// healthy connection does not hit the idle timeout (default 10 s).
    pub keep_alive_interval: Duration,
    /// UDP socket send and receive buffers asked of the kernel (default
    /// 2 MiB; Linux caps them at `net.core.rmem_max` / `wmem_max`). The
    /// kernel's default (about 200 KiB) drops datagrams when many
    /// connections burst at once, and each drop costs a retransmission
    /// timeout.
    pub socket_buffer_size: usize,
    /// How long a closing connection waits for its last stream data (and a
    /// goodbye) to be acknowledged before it closes anyway (default 1 s).
    pub close_timeout: Duration,
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            network_id: "switchyard-local".into(),
            handshake_timeout: Duration::from_secs(10),
            max_handshakes_per_prefix: 8,
            max_handshakes: 256,
            accept_backlog: 128,
            max_frame_size: p2p::router::MAX_MESSAGE_SIZE + 64,
            max_reassembly_bytes: p2p::router::MAX_MESSAGE_SIZE + 64,
            max_channels: 256,
            stream_receive_window: 1024 * 1024,
            receive_window: 16 * 1024 * 1024,
            idle_timeout: Duration::from_secs(30),
            keep_alive_interval: Duration::from_secs(10),
            socket_buffer_size: 2 * 1024 * 1024,
            close_timeout: Duration::from_secs(1),
        }
    }
}
