//! Settings of the QUIC transport.

use std::net::SocketAddr;
use std::time::Duration;

use p2p::transport::TransportError;
use quinn::{IdleTimeout, TransportConfig, VarInt};

/// Unidirectional streams a peer may open beyond `max_channels`.
const STREAM_SLACK: u32 = 8;

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

impl QuicConfig {
    /// The quinn transport settings this config gives one side of a
    /// connection, exactly as [`QuicTransport`](crate::QuicTransport)
    /// uses them: stream and connection receive windows, at most
    /// `max_channels` + 8 unidirectional streams, the idle timeout and
    /// keep-alive, no datagrams. The listener opens the one bidirectional
    /// (control) stream (protocol version 3), so only a dialer
    /// (`listener: false`) allows one.
    ///
    /// Public so that a baseline over raw quinn (`bench/quic-compare`)
    /// runs with the same settings rather than a copy of them.
    ///
    /// Fails if `idle_timeout` is beyond what QUIC can carry (2^62 ms).
    pub fn transport_config(&self, listener: bool) -> Result<TransportConfig, TransportError> {
        let idle = IdleTimeout::try_from(self.idle_timeout).map_err(|_| {
            crate::transport::invalid(format!("idle_timeout {:?} is too long", self.idle_timeout))
        })?;
        let mut transport = TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(VarInt::from_u32(u32::from(!listener)))
            .max_concurrent_uni_streams(VarInt::from_u32(
                self.max_channels.saturating_add(STREAM_SLACK),
            ))
            .stream_receive_window(VarInt::from_u32(self.stream_receive_window))
            .receive_window(VarInt::from_u32(self.receive_window))
            .max_idle_timeout(Some(idle))
            .keep_alive_interval(Some(self.keep_alive_interval))
            .datagram_receive_buffer_size(None);
        Ok(transport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings follow the config; the only difference between the two
    /// sides is the bidirectional stream. (quinn's `TransportConfig` shows
    /// its settings only through `Debug`.)
    #[test]
    fn transport_config_follows_the_config() {
        let config = QuicConfig {
            max_channels: 10,
            stream_receive_window: 12_345,
            receive_window: 67_890,
            ..QuicConfig::default()
        };
        let listener = format!("{:?}", config.transport_config(true).expect("listener"));
        let dialer = format!("{:?}", config.transport_config(false).expect("dialer"));
        assert!(
            listener.contains("max_concurrent_uni_streams: 18"),
            "{listener}"
        );
        assert!(
            listener.contains("stream_receive_window: 12345"),
            "{listener}"
        );
        assert!(listener.contains("receive_window: 67890"), "{listener}");
        // The listener opens the control stream (protocol version 3).
        assert!(
            listener.contains("max_concurrent_bidi_streams: 0"),
            "{listener}"
        );
        assert!(
            dialer.contains("max_concurrent_bidi_streams: 1"),
            "{dialer}"
        );
        assert_eq!(
            listener.replace(
                "max_concurrent_bidi_streams: 0",
                "max_concurrent_bidi_streams: 1"
            ),
            dialer
        );
    }

    #[test]
    fn an_idle_timeout_quic_cannot_carry_is_refused() {
        let config = QuicConfig {
            idle_timeout: Duration::MAX,
            ..QuicConfig::default()
        };
        let err = config.transport_config(true).expect_err("too long");
        assert!(err.to_string().contains("idle_timeout"), "{err}");
    }
}
