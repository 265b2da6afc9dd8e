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
}
