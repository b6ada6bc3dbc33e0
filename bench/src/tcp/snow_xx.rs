//! The setup baseline of the Noise handshake alone: a bare snow
//! `Noise_XX_25519_*` handshake over raw tokio TCP, carrying one
//! application message inside Noise message 3, with nothing else — no
//! suite preamble, no identity payloads (Switchyard signs its Noise static
//! key with the node's ed25519 key in messages 2 and 3 and checks the
//! peer's), no `Hello`, no router.
//!
//! It runs the same suite as the Switchyard run beside it
//! ([`CipherSuite::noise_name`]), through the same snow resolvers as
//! Switchyard's ring backend (ring for X25519, the cipher and SHA-256,
//! snow's own code for BLAKE2s), so the difference between the two is what
//! Switchyard adds on top of the handshake.
//!
//! Each Noise message goes on the wire as `u16be(length) ‖ message` (the
//! Noise specification's framing). Both static keys are made before the
//! clock starts, as a Switchyard node's are when its transport is bound;
//! everything the handshake itself does — the `HandshakeState`s, the
//! ephemeral keys, the three messages — is inside the clock.

use std::time::Instant;

use anyhow::{Context, bail};
use prost::Message;
use snow::resolvers::{BoxedCryptoResolver, DefaultResolver, FallbackResolver, RingResolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use transport_tcp::CipherSuite;

use crate::compare::{MAX_MESSAGE, Msg, nanos, payload};

/// Largest Noise message read (the Noise limit; a length above it is
/// refused before anything is allocated).
const MAX_NOISE_MESSAGE: usize = 65_535;

/// The resolvers of Switchyard's ring backend: ring first, snow's own
/// code for what ring lacks (BLAKE2s).
fn resolver() -> BoxedCryptoResolver {
    Box::new(FallbackResolver::new(
        Box::new(RingResolver),
        Box::new(DefaultResolver),
    ))
}

fn builder(suite: CipherSuite) -> anyhow::Result<snow::Builder<'static>> {
    let params = suite
        .noise_name()
        .parse()
        .with_context(|| format!("snow does not know {}", suite.noise_name()))?;
    Ok(snow::Builder::with_resolver(params, resolver()))
}

/// Writes one Noise message, `u16be(length) ‖ message`, in one write.
async fn write_noise(stream: &mut TcpStream, message: &[u8]) -> anyhow::Result<()> {
    let len = u16::try_from(message.len()).context("Noise message over 65,535 bytes")?;
    let mut out = Vec::with_capacity(2 + message.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    stream.write_all(&out).await?;
    Ok(())
}

/// Reads one Noise message into `buf`.
async fn read_noise<'a>(stream: &mut TcpStream, buf: &'a mut [u8]) -> anyhow::Result<&'a [u8]> {
    let len = usize::from(stream.read_u16().await?);
    let limit = buf.len();
    let Some(message) = buf.get_mut(..len) else {
        bail!("Noise message of {len} bytes exceeds the {limit}-byte limit");
    };
    stream.read_exact(message).await?;
    Ok(message)
}

/// The listener's side: accept, read message 1, write message 2, read
/// message 3 and decode the application message in its payload. Returns
/// when it was delivered and its sequence number.
async fn respond(
    listener: TcpListener,
    suite: CipherSuite,
    private: Vec<u8>,
) -> anyhow::Result<(Instant, u64)> {
    let (mut stream, _) = listener.accept().await?;
    stream.set_nodelay(true)?;
    let mut noise = builder(suite)?
        .local_private_key(&private)?
        .build_responder()?;
    let mut inbound = vec![0u8; MAX_NOISE_MESSAGE];
    let mut outbound = vec![0u8; MAX_NOISE_MESSAGE];
    let mut payload = vec![0u8; MAX_NOISE_MESSAGE];
    let message = read_noise(&mut stream, &mut inbound).await?;
    noise.read_message(message, &mut payload)?;
    let len = noise.write_message(&[], &mut outbound)?;
    write_noise(&mut stream, &outbound[..len]).await?;
    let message = read_noise(&mut stream, &mut inbound).await?;
    let len = noise.read_message(message, &mut payload)?;
    if !noise.is_handshake_finished() {
        bail!("the handshake did not finish with message 3");
    }
    let delivered = Msg::decode(&payload[..len]).context("undecodable message")?;
    Ok((Instant::now(), delivered.seq))
}

/// Connection setup, `iterations` times: a fresh listener and fresh static
/// keys each time (made before the clock starts); the clock runs from
/// `connect` through Noise messages 1 and 2 to the arrival at the listener
/// of message 3, whose payload is the first message (`len` bytes of data,
/// 128 bytes encoded for the small message), and its decryption and
/// decoding there.
pub async fn setup(suite: CipherSuite, len: usize, iterations: usize) -> anyhow::Result<Vec<u64>> {
    let data = payload(len);
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let seq = i as u64 + 1;
        let first = Msg {
            seq,
            data: data.clone(),
        }
        .encode_to_vec();
        if first.len() > MAX_MESSAGE {
            bail!("a first message of {} bytes is too large", first.len());
        }
        let (dialer_key, listener_key) = (
            builder(suite)?.generate_keypair()?,
            builder(suite)?.generate_keypair()?,
        );
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(respond(listener, suite, listener_key.private));

        let t0 = Instant::now();
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut noise = builder(suite)?
            .local_private_key(&dialer_key.private)?
            .build_initiator()?;
        let mut inbound = vec![0u8; MAX_NOISE_MESSAGE];
        let mut outbound = vec![0u8; MAX_NOISE_MESSAGE];
        let mut scratch = vec![0u8; MAX_NOISE_MESSAGE];
        let n = noise.write_message(&[], &mut outbound)?;
        write_noise(&mut stream, &outbound[..n]).await?;
        let message = read_noise(&mut stream, &mut inbound).await?;
        noise.read_message(message, &mut scratch)?;
        let n = noise.write_message(&first, &mut outbound)?;
        write_noise(&mut stream, &outbound[..n]).await?;
        let (t1, got) = server.await??;
        if got != seq {
            bail!("setup {i}: got message {got}");
        }
        samples.push(nanos(t1.saturating_duration_since(t0)));
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::SMALL_LEN;

    /// Both suites complete the handshake and deliver the message in
    /// message 3 (a wrong sequence number or an undecodable payload fails
    /// `setup`).
    #[tokio::test]
    async fn both_suites_deliver_the_first_message_in_message_3() {
        for suite in CipherSuite::ALL {
            let samples = setup(suite, SMALL_LEN, 2).await.expect("setup");
            assert_eq!(samples.len(), 2, "{suite}");
        }
    }

    /// A length prefix above what the reader holds is refused before any
    /// read of the body.
    #[tokio::test]
    async fn an_oversized_noise_message_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let writer = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(&[0xff, 0xff, 1, 2, 3]).await.expect("write");
            s
        });
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut small = vec![0u8; 16];
        match read_noise(&mut stream, &mut small).await {
            Err(err) => assert!(err.to_string().contains("exceeds"), "{err}"),
            Ok(message) => panic!("read a {}-byte message", message.len()),
        }
        drop(writer.await);
    }
}
