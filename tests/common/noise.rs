//! A Noise XX initiator written from ADR 0004, not the transport's code:
//! the attacker of `tests/attacks.rs` and `tests/memory.rs`. It offers the
//! ChaCha suite alone in the suite preamble (which every node accepts),
//! completes the handshake under any identity, then sends and reads frames
//! (or any bytes at all).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::BytesMut;
use p2p::Keypair;
use p2p::transport::{Frame, decode_frame, encode_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use transport_tcp::CipherSuite;
use transport_tcp::handshake::{identity_payload, prologue, split_payload};
use transport_tcp::preamble::{ANSWER_LEN, Answer, Offer, network_tag};

/// The suite this client runs.
const SUITE: CipherSuite = CipherSuite::ChaChaPoly;

/// Plaintext per Noise transport message (65,535 less the 16-byte tag).
const MAX_PLAIN: usize = 65_535 - 16;

/// One side of a Noise session over TCP.
pub struct NoiseClient {
    stream: TcpStream,
    session: snow::TransportState,
    /// Plaintext received and not yet decoded into frames.
    plain: BytesMut,
}

impl NoiseClient {
    /// Connects from `from` to `to` and completes the Noise handshake for
    /// `network` under the identity derived from `seed`.
    pub async fn connect(
        from: Ipv4Addr,
        to: SocketAddr,
        network: &str,
        seed: u64,
    ) -> std::io::Result<Self> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
        let mut stream = socket.connect(to).await?;
        let keypair = Keypair::from_seed(seed);
        // The suite preamble (ADR 0004, section 2a): offer ChaCha alone;
        // the listener answers before message 2.
        let offer = Offer::new(network_tag(network), &[SUITE]).encode();
        let answer = Answer::Accept(SUITE).encode();
        stream.write_all(&offer).await?;
        let params: snow::params::NoiseParams =
            SUITE.noise_name().parse().map_err(std::io::Error::other)?;
        let static_key = snow::Builder::new(params.clone())
            .generate_keypair()
            .map_err(std::io::Error::other)?;
        let prologue = prologue(network, &offer, &answer);
        let mut state = snow::Builder::new(params)
            .local_private_key(&static_key.private)
            .and_then(|b| b.prologue(&prologue))
            .and_then(|b| b.build_initiator())
            .map_err(std::io::Error::other)?;
        let mut buf = vec![0u8; 1024];
        let n = state
            .write_message(&[], &mut buf)
            .map_err(std::io::Error::other)?;
        write_message(&mut stream, &buf[..n]).await?;
        let mut answered = [0u8; ANSWER_LEN];
        stream.read_exact(&mut answered).await?;
        if answered != answer {
            return Err(std::io::Error::other(format!(
                "the listener answered {:?}, not {SUITE}",
                Answer::decode(answered)
            )));
        }
        let incoming = read_message(&mut stream).await?;
        let mut payload = vec![0u8; 1024];
        let n = state
            .read_message(&incoming, &mut payload)
            .map_err(std::io::Error::other)?;
        // Protocol version 3: behind the listener's identity comes its
        // `Hello`, the first frame of the connection (ADR 0004 §3.2).
        let (_identity, first) = split_payload(&payload[..n]).map_err(std::io::Error::other)?;
        let plain = BytesMut::from(first);
        let identity = identity_payload(&keypair, &static_key.public);
        let n = state
            .write_message(&identity, &mut buf)
            .map_err(std::io::Error::other)?;
        write_message(&mut stream, &buf[..n]).await?;
        let session = state.into_transport_mode().map_err(std::io::Error::other)?;
        Ok(Self {
            stream,
            session,
            plain,
        })
    }

    /// Encrypts and sends `plain`, in as many Noise messages as it takes.
    pub async fn send(&mut self, plain: &[u8]) -> std::io::Result<()> {
        let mut sealed = vec![0u8; 65_535];
        for chunk in plain.chunks(MAX_PLAIN) {
            let n = self
                .session
                .write_message(chunk, &mut sealed)
                .map_err(std::io::Error::other)?;
            write_message(&mut self.stream, &sealed[..n]).await?;
        }
        Ok(())
    }

    /// Sends `frames`, encoded as ADR 0002 says (a varint length, then the
    /// `WireFrame`).
    pub async fn send_frames(&mut self, frames: &[Frame]) -> std::io::Result<()> {
        let mut plain = BytesMut::new();
        for frame in frames {
            encode_frame(frame, &mut plain);
        }
        self.send(&plain).await
    }

    /// Reads until one whole frame has arrived. Frames that arrived in the
    /// same Noise messages are kept for the next call.
    pub async fn recv_frame(&mut self) -> std::io::Result<Frame> {
        let mut opened = vec![0u8; 65_535];
        loop {
            if let Some(frame) =
                decode_frame(&mut self.plain, 16 << 20).map_err(std::io::Error::other)?
            {
                return Ok(frame);
            }
            let sealed = read_message(&mut self.stream).await?;
            let n = self
                .session
                .read_message(&sealed, &mut opened)
                .map_err(std::io::Error::other)?;
            self.plain.extend_from_slice(&opened[..n]);
        }
    }
}

async fn write_message(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(message.len()).map_err(std::io::Error::other)?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(message).await
}

async fn read_message(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut message).await?;
    Ok(message)
}
