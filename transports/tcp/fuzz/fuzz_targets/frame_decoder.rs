//! Arbitrary bytes into `p2p::transport::decode_frame`, the length-delimited
//! frame decoder the TCP transport runs on decrypted Noise plaintext.
//!
//! Checks that it never panics, that every frame it returns re-encodes with
//! `encode_frame` and decodes back to an equal frame, and that feeding the
//! same bytes in chunks gives the same frames and the same outcome as feeding
//! them all at once.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use p2p::transport::{Frame, decode_frame, encode_frame};

/// Small on purpose: lengths above it must be refused from the prefix alone.
const MAX_FRAME: usize = 64 * 1024;

/// Decodes until the buffer has no complete frame (`Ok(None)`) or an error.
/// Returns the frames and the outcome as a string (`None` or the error).
fn decode_all(buf: &mut BytesMut, frames: &mut Vec<Frame>) -> Option<String> {
    loop {
        match decode_frame(buf, MAX_FRAME) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return None,
            Err(e) => return Some(format!("{e:?}")),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks a chunk size for the incremental pass.
    let (chunk, bytes) = match data.split_first() {
        Some((c, rest)) => (usize::from(*c).max(1), rest),
        None => (1, data),
    };

    // All at once.
    let mut whole = BytesMut::from(bytes);
    let mut frames = Vec::new();
    let outcome = decode_all(&mut whole, &mut frames);

    // Every decoded frame round-trips through the encoder.
    for frame in &frames {
        let mut out = BytesMut::new();
        encode_frame(frame, &mut out);
        let encoded_len = out.len();
        let again = decode_frame(&mut out, usize::MAX)
            .unwrap_or_else(|e| panic!("re-encoded {frame:?} does not decode: {e:?}"))
            .unwrap_or_else(|| panic!("re-encoded {frame:?} is incomplete ({encoded_len} bytes)"));
        assert!(
            again == *frame,
            "round trip changed the frame: {frame:?} -> {again:?}"
        );
        assert!(out.is_empty(), "encode_frame wrote trailing bytes");
    }

    // In chunks, as the transport sees it arrive from the socket. Stops at
    // the first error, as the connection does.
    let mut buf = BytesMut::new();
    let mut chunked = Vec::new();
    let mut chunked_outcome = None;
    for piece in bytes.chunks(chunk) {
        buf.extend_from_slice(piece);
        chunked_outcome = decode_all(&mut buf, &mut chunked);
        if chunked_outcome.is_some() {
            break;
        }
    }
    assert_eq!(
        outcome, chunked_outcome,
        "chunked decoding (chunk {chunk}) ended differently"
    );
    assert!(
        frames == chunked,
        "chunked decoding (chunk {chunk}) gave other frames: {frames:?} vs {chunked:?}"
    );
    if outcome.is_none() {
        assert_eq!(whole, buf, "chunked decoding left other bytes");
    }
});
