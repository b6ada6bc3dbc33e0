//! The transport-generic promise suite (`testkit::suite`) over TCP + Noise
//! on loopback sockets, on the real clock, once with each cipher suite:
//! every node offers and accepts only that suite.

mod common;

/// `Noise_XX_25519_AESGCM_SHA256`.
mod aesgcm {
    testkit::promise_suite!(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        super::common::network_with_suites(&[transport_tcp::CipherSuite::AesGcm])
    );
}

/// `Noise_XX_25519_ChaChaPoly_BLAKE2s`.
mod chachapoly {
    testkit::promise_suite!(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        super::common::network_with_suites(&[transport_tcp::CipherSuite::ChaChaPoly])
    );
}
