//! QUIC on loopback for the testkit: `network()` and
//! `network_with_frame_size()` (`testkit::loopback_networks!`).

testkit::loopback_networks!(
    "quic",
    transport_quic::QuicTransport,
    transport_quic::QuicConfig
);
