//! TCP on loopback for the testkit: `network()` and
//! `network_with_frame_size()` (`testkit::loopback_networks!`), and
//! `network_with_suites()`, whose nodes offer and accept only the given
//! cipher suites.

testkit::loopback_networks!("tcp", transport_tcp::TcpTransport, transport_tcp::TcpConfig);

/// A network over TCP on loopback (as [`network`]) whose nodes offer and
/// accept exactly `suites`, in this order.
#[allow(dead_code)]
pub fn network_with_suites(
    suites: &'static [transport_tcp::CipherSuite],
) -> testkit::NetworkBuilder {
    testkit::loopback::network(testkit::loopback::Loopback::new(
        "tcp",
        move |keypair, config, listen| {
            let transport = transport_tcp::TcpTransport::bind_now(
                keypair,
                transport_tcp::TcpConfig {
                    listen,
                    network_id: config.network_id.clone(),
                    handshake_timeout: std::time::Duration::from_secs(5),
                    suites: suites.to_vec(),
                    ..transport_tcp::TcpConfig::default()
                },
            )
            .map_err(|e| e.to_string())?;
            Ok(std::sync::Arc::new(transport))
        },
    ))
}
