//! An established Noise session over TCP: frames in, frames out.
//!
//! Each direction is a sequence of Noise transport messages, each sent as
//! `u16be(length) ‖ ciphertext` (at most 65,535 bytes, so at most 65,519
//! bytes of plaintext). The plaintexts, concatenated, are a stream of frames
//! (`p2p::transport::encode_frame`: a varint length, then the protobuf
//! `WireFrame`), so a frame may span Noise messages and one Noise message may
//! carry many frames. The writer packs everything the router hands it in one
//! call (whatever is queued) into as few Noise messages as fit and writes
//! them with one syscall: it batches what is waiting, and never waits to
//! batch.
//!
//! The reader checks a frame's announced length against `max_frame_size`
//! before it buffers the frame, so a peer cannot make us allocate more than
//! that plus one Noise message.

use std::sync::Arc;

use bytes::BytesMut;
use futures::future::BoxFuture;
use p2p::transport::{ConnectionError, Frame, FrameSink, FrameStream, decode_frame, encode_frame};
use snow::StatelessTransportState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Largest Noise message.
pub const MAX_NOISE_MESSAGE: usize = 65_535;
/// Authentication tag of each Noise message.
pub const TAG_LEN: usize = 16;
/// Largest plaintext in one Noise message.
pub const MAX_PLAINTEXT: usize = MAX_NOISE_MESSAGE - TAG_LEN;

fn io(e: std::io::Error) -> ConnectionError {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted
        | std::io::ErrorKind::BrokenPipe
        | std::io::ErrorKind::UnexpectedEof => ConnectionError::Reset(e.to_string()),
        _ => ConnectionError::Io(e.to_string()),
    }
}

/// The sending half.
pub(crate) struct NoiseSink {
    write: OwnedWriteHalf,
    state: Arc<StatelessTransportState>,
    nonce: u64,
    plain: BytesMut,
    wire: Vec<u8>,
}

impl NoiseSink {
    pub fn new(write: OwnedWriteHalf, state: Arc<StatelessTransportState>) -> Self {
        Self {
            write,
            state,
            nonce: 0,
            plain: BytesMut::new(),
            wire: Vec::new(),
        }
    }

    /// Encrypts `plain` into Noise messages appended to `wire`.
    fn seal(&mut self) -> Result<(), ConnectionError> {
        for chunk in self.plain.chunks(MAX_PLAINTEXT) {
            let start = self.wire.len();
            let len = chunk.len() + TAG_LEN;
            self.wire.resize(start + 2 + len, 0);
            // `len` is at most MAX_NOISE_MESSAGE, so it fits in u16.
            self.wire[start..start + 2].copy_from_slice(&(len as u16).to_be_bytes());
            let written = self
                .state
                .write_message(self.nonce, chunk, &mut self.wire[start + 2..])
                .map_err(|e| ConnectionError::Protocol(format!("noise encrypt: {e}")))?;
            debug_assert_eq!(written, len);
            self.nonce += 1;
        }
        self.plain.clear();
        Ok(())
    }

    async fn send_frames(&mut self, frames: &mut Vec<Frame>) -> Result<(), ConnectionError> {
        for frame in frames.drain(..) {
            encode_frame(&frame, &mut self.plain);
        }
        self.seal()?;
        let result = self.write.write_all(&self.wire).await.map_err(io);
        self.wire.clear();
        // Keep buffers from one huge batch from pinning memory forever.
        if self.wire.capacity() > 4 * MAX_NOISE_MESSAGE {
            self.wire = Vec::new();
        }
        result
    }
}

impl FrameSink for NoiseSink {
    fn send<'a>(
        &'a mut self,
        frames: &'a mut Vec<Frame>,
    ) -> BoxFuture<'a, Result<(), ConnectionError>> {
        Box::pin(self.send_frames(frames))
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.write.shutdown().await;
        })
    }
}

/// The receiving half.
pub(crate) struct NoiseStream {
    read: OwnedReadHalf,
    state: Arc<StatelessTransportState>,
    nonce: u64,
    wire: BytesMut,
    plain: BytesMut,
    max_frame: usize,
}

impl NoiseStream {
    pub fn new(
        read: OwnedReadHalf,
        state: Arc<StatelessTransportState>,
        max_frame: usize,
        leftover: &[u8],
    ) -> Self {
        Self {
            read,
            state,
            nonce: 0,
            wire: BytesMut::from(leftover),
            plain: BytesMut::new(),
            max_frame,
        }
    }

    /// Decrypts every complete Noise message in `wire` into `plain`.
    fn open(&mut self) -> Result<(), ConnectionError> {
        loop {
            if self.wire.len() < 2 {
                return Ok(());
            }
            let len = usize::from(u16::from_be_bytes([self.wire[0], self.wire[1]]));
            if len < TAG_LEN {
                return Err(ConnectionError::Protocol(format!(
                    "noise message of {len} bytes is shorter than its tag"
                )));
            }
            if self.wire.len() < 2 + len {
                return Ok(());
            }
            let message = self.wire.split_to(2 + len);
            let start = self.plain.len();
            self.plain.resize(start + len - TAG_LEN, 0);
            let n = self
                .state
                .read_message(self.nonce, &message[2..], &mut self.plain[start..])
                .map_err(|e| ConnectionError::Protocol(format!("noise decrypt: {e}")))?;
            self.plain.truncate(start + n);
            self.nonce += 1;
        }
    }

    async fn recv_frames(&mut self, out: &mut Vec<Frame>) -> Result<(), ConnectionError> {
        loop {
            self.open()?;
            while let Some(frame) = decode_frame(&mut self.plain, self.max_frame)? {
                out.push(frame);
            }
            if !out.is_empty() {
                return Ok(());
            }
            self.wire.reserve(64 * 1024);
            let n = self.read.read_buf(&mut self.wire).await.map_err(io)?;
            if n == 0 {
                return Err(if self.wire.is_empty() && self.plain.is_empty() {
                    ConnectionError::Closed
                } else {
                    ConnectionError::Reset("connection closed in the middle of a frame".into())
                });
            }
        }
    }
}

impl FrameStream for NoiseStream {
    fn recv<'a>(
        &'a mut self,
        out: &'a mut Vec<Frame>,
    ) -> BoxFuture<'a, Result<(), ConnectionError>> {
        Box::pin(self.recv_frames(out))
    }
}
