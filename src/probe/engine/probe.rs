//! The engine's side of the driver interface: a probe to send and how it
//! ended.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// A probe the driver must send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRequest {
    /// Quote it in [`Engine::handle`](super::Engine::handle).
    pub id: u64,
    /// Bind to this address (and scope id, non-zero only for link-local).
    pub source: IpAddr,
    pub scope_id: u32,
    pub kind: Kind,
    /// Not answered by then = `Unreachable`.
    pub deadline: Instant,
}

/// What to send, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// TCP connect; a link-local destination carries its scope id.
    Tcp(SocketAddr),
    /// STUN Binding request over UDP (RFC 8489).
    Stun(SocketAddr),
    /// A target probe carrying the path-MTU probe: a TCP connect within
    /// `connect` (reported as for [`Kind::Tcp`], by the deadline), then,
    /// when connected, a ClientHello of [`LARGE_HELLO`](super::LARGE_HELLO)
    /// bytes and the server's first flight read for up to `flight` counted
    /// from the hello (not from the SYN: on a slow path the handshake
    /// alone would eat the budget), reported a second time with the same
    /// id as [`ProbeResult::Flight`].
    /// With `mss`, a proof: the socket's segments (and, through the SYN's
    /// MSS option, the server's) are at most that many bytes.
    Large {
        target: SocketAddr,
        connect: Duration,
        flight: Duration,
        mss: Option<u32>,
    },
}

/// How a probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    /// Connected, or refused: a RST proves the path as well as a SYN-ACK.
    Reachable { rtt: Duration },
    /// Timeout, ICMP unreachable, no route.
    Unreachable,
    /// A STUN Binding success response and the address it saw us as.
    StunMapped { rtt: Duration, mapped: SocketAddr },
    /// The second report of a [`Kind::Large`] probe that connected (in
    /// `rtt`): it sent its hello and then read `bytes`; `stalled` when it
    /// stopped at the flight deadline with the connection still open, not
    /// because the server closed it or because enough arrived.
    Flight {
        rtt: Duration,
        bytes: usize,
        stalled: bool,
    },
}
