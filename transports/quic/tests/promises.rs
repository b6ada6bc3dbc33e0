//! The transport-generic promise suite (`testkit::suite`) over QUIC on
//! loopback sockets, on the real clock.

mod common;

testkit::promise_suite!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    common::network()
);
