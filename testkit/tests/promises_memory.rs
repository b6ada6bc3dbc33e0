//! The transport-generic promise suite (`testkit::suite`) over the memory
//! transport, on tokio's paused clock.

testkit::promise_suite!(
    #[tokio::test(start_paused = true)]
    testkit::Network::builder()
);
