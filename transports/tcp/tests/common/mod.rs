//! TCP on loopback for the testkit: `network()` and
//! `network_with_frame_size()` (`testkit::loopback_networks!`).

testkit::loopback_networks!("tcp", transport_tcp::TcpTransport, transport_tcp::TcpConfig);
