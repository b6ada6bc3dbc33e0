//! The UDP socket buffers every stack of `quic_compare` gets, so that no
//! stack loses datagrams the others keep.
//!
//! rust-libp2p's QUIC transport (libp2p-quic 0.14) binds its sockets
//! itself and has no setting for their buffers: its sockets always have
//! the kernel's defaults (`net.core.rmem_default` / `wmem_default` on
//! Linux). So the default, [`SocketBuffers::Os`], gives every stack those
//! defaults: raw quinn's sockets are left as bound, and Switchyard's
//! transport, which always sizes its sockets (`QuicConfig::
//! socket_buffer_size`), is asked for half of `rmem_default`, because
//! Linux doubles what `SO_RCVBUF` / `SO_SNDBUF` ask for (the doubled value
//! is what an unsized socket has and what `getsockopt` reports).
//! [`SocketBuffers::Ask`] gives Switchyard and raw quinn the buffers
//! `QuicConfig` asks for by default (2 MiB), as a node runs, and libp2p
//! still its defaults; the table says so.
//!
//! [`effective`] reads back what the kernel granted, on a probe socket
//! sized the way each stack's sockets are.

use std::fmt;

use anyhow::Context;

/// The socket buffers of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketBuffers {
    /// Every stack with the kernel's default buffers.
    Os,
    /// Switchyard and raw quinn ask the kernel for this many bytes each way;
    /// libp2p cannot be given them and keeps the kernel's defaults.
    Ask(usize),
}

impl SocketBuffers {
    /// What raw quinn's sockets ask for: nothing (the kernel's default),
    /// or the bytes asked.
    pub fn raw_ask(self) -> Option<usize> {
        match self {
            Self::Os => None,
            Self::Ask(bytes) => Some(bytes),
        }
    }

    /// What Switchyard's transport is configured to ask for
    /// (`QuicConfig::socket_buffer_size`): under [`SocketBuffers::Os`],
    /// half the kernel's default receive buffer, which the kernel doubles
    /// back to the default.
    pub fn switchyard_ask(self) -> anyhow::Result<usize> {
        match self {
            Self::Os => Ok(os_default("rmem_default")? / 2),
            Self::Ask(bytes) => Ok(bytes),
        }
    }

    /// Whether every stack gets the same buffers.
    pub fn equal(self) -> bool {
        self == Self::Os
    }
}

impl fmt::Display for SocketBuffers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Os => f.write_str("os"),
            Self::Ask(bytes) => write!(f, "{bytes}"),
        }
    }
}

impl std::str::FromStr for SocketBuffers {
    type Err = anyhow::Error;

    /// `os`, or a number of bytes (at least 1,024).
    fn from_str(s: &str) -> anyhow::Result<Self> {
        if s == "os" {
            return Ok(Self::Os);
        }
        let bytes: usize = s
            .parse()
            .with_context(|| format!("--socket-buffers: {s:?} is neither `os` nor a byte count"))?;
        anyhow::ensure!(
            bytes >= 1024,
            "--socket-buffers: {bytes} bytes is too small"
        );
        Ok(Self::Ask(bytes))
    }
}

/// A kernel default from `/proc/sys/net/core/<name>` (Linux only).
fn os_default(name: &str) -> anyhow::Result<usize> {
    let path = format!("/proc/sys/net/core/{name}");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {path} (the kernel's default socket buffer)"))?;
    text.trim()
        .parse()
        .with_context(|| format!("{path} holds {text:?}"))
}

/// The receive and send buffers the kernel grants a loopback UDP socket
/// that asks for `ask` bytes each way (`None`: asks nothing), read back
/// with `getsockopt`.
pub fn effective(ask: Option<usize>) -> anyhow::Result<(usize, usize)> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    if let Some(bytes) = ask {
        state.set_recv_buffer_size((&socket).into(), bytes)?;
        state.set_send_buffer_size((&socket).into(), bytes)?;
    }
    Ok((
        state.recv_buffer_size((&socket).into())?,
        state.send_buffer_size((&socket).into())?,
    ))
}

/// One line per stack: what it asks for and what the kernel grants.
pub fn describe(buffers: SocketBuffers) -> anyhow::Result<String> {
    let show = |(recv, send): (usize, usize)| format!("receive {recv} B, send {send} B");
    let ours = buffers.switchyard_ask()?;
    let raw = match buffers.raw_ask() {
        Some(bytes) => format!("asks {bytes} B"),
        None => "asks nothing".to_string(),
    };
    Ok(format!(
        "UDP socket buffers ({}): switchyard asks {ours} B -> {}; raw quinn {raw} -> {}; libp2p cannot be given any (libp2p-quic 0.14 binds its own sockets) -> {}",
        if buffers.equal() {
            "equal for every stack: the kernel's defaults"
        } else {
            "NOT equal: libp2p keeps the kernel's defaults"
        },
        show(effective(Some(ours))?),
        show(effective(buffers.raw_ask())?),
        show(effective(None)?),
    ))
}

/// A short note for the table's last column.
pub fn note(buffers: SocketBuffers) -> String {
    let granted =
        |ask| effective(ask).map_or_else(|_| "?".to_string(), |(recv, _)| format!("{recv} B"));
    match buffers {
        SocketBuffers::Os => format!(
            "UDP buffers: every stack the kernel default ({} receive)",
            granted(None)
        ),
        SocketBuffers::Ask(bytes) => format!(
            "UDP buffers: switchyard and raw quinn ask {bytes} B ({} granted), libp2p the kernel default ({}; it cannot be given others)",
            granted(Some(bytes)),
            granted(None)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        assert_eq!("os".parse::<SocketBuffers>().ok(), Some(SocketBuffers::Os));
        assert_eq!(
            "2097152".parse::<SocketBuffers>().ok(),
            Some(SocketBuffers::Ask(2_097_152))
        );
        assert!("12".parse::<SocketBuffers>().is_err());
        assert!("lots".parse::<SocketBuffers>().is_err());
    }

    /// Under `Os`, Switchyard's ask is doubled by the kernel back to what
    /// an unsized socket has, which is what libp2p's sockets have.
    #[cfg(target_os = "linux")]
    #[test]
    fn under_os_every_stack_gets_the_same_buffers() {
        let ask = SocketBuffers::Os.switchyard_ask().expect("rmem_default");
        let ours = effective(Some(ask)).expect("sized probe");
        let default = effective(None).expect("unsized probe");
        assert_eq!(ours.0, default.0, "receive buffers differ");
        if os_default("rmem_default").ok() == os_default("wmem_default").ok() {
            assert_eq!(ours.1, default.1, "send buffers differ");
        }
    }
}
