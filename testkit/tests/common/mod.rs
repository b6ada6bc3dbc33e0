//! Shared helpers of the promise tests.
#![allow(dead_code)]

use std::time::Duration;

use p2p::ChannelDescriptor;

/// A numbered message with optional padding.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Seq {
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub pad: Vec<u8>,
}

impl Seq {
    pub fn new(seq: u64) -> Self {
        Self {
            seq,
            pad: Vec::new(),
        }
    }

    pub fn padded(seq: u64, len: usize) -> Self {
        Self {
            seq,
            pad: vec![0xab; len],
        }
    }
}

pub fn channel(id: u16, name: &'static str, priority: u8) -> ChannelDescriptor {
    ChannelDescriptor {
        priority,
        ..ChannelDescriptor::new(id, name)
    }
}

pub const SECOND: Duration = Duration::from_secs(1);
