//! Peer exchange in the testkit simulator (issue 15).
