//! One UDP try of one upstream: retransmission timed by the upstream's
//! measured RTT, receive buffers sized to the query's EDNS offer, and what
//! counts as its reply.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::{Pool, Server, new_id};
use crate::dns::wire::{self, Query, Reply, flag, rcode};
use crate::sync::lock;

/// What a UDP try got.
pub(super) enum Udp {
    Reply(Reply),
    /// A reply too large for the receive buffer, so not read whole, or
    /// cut by its sender.
    Oversize,
}

impl Pool {
    /// One UDP try: the query is sent again (same port and ID, so a late
    /// reply to an earlier send still counts) each time the retransmission
    /// timeout passes, doubling it, until the try's timeout.
    pub(super) async fn udp(
        &self,
        server: &Server,
        addr: SocketAddr,
        packet: &mut [u8],
    ) -> io::Result<Udp> {
        let id = new_id(packet);
        let sock = connected(addr, packet)?;
        let query = Query::parse(packet).ok();
        let question = query.as_ref().map_or(&[][..], |q| q.question());
        let offered = query
            .as_ref()
            .and_then(|q| q.edns())
            .map_or(0, |e| e.udp_size);
        let size = usize::from(offered).max(SMALL_REPLY) + 1;
        let sent = tokio::time::Instant::now();
        let deadline = sent + self.timeout;
        let mut rto = lock(&server.rtt).rto(self.timeout);
        let mut resend = sent + rto;
        let mut sends = 1u32;
        loop {
            let Ok(ready) = tokio::time::timeout_at(resend.min(deadline), wait(&sock)).await else {
                if resend >= deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
                }
                sock.send(packet).await?;
                sends += 1;
                rto *= 2;
                resend = tokio::time::Instant::now() + rto;
                continue;
            };
            if !ready? {
                continue;
            }
            let got = with_buffer(size, |buf| -> io::Result<Option<Udp>> {
                let (n, from) = match sock.try_recv_from(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    r => r?,
                };
                Ok(judge(buf, n, same_peer(from, addr), id, question))
            })?;
            match got {
                Some(Udp::Reply(r)) => {
                    if sends == 1 {
                        lock(&server.rtt).sample(sent.elapsed());
                    }
                    return Ok(Udp::Reply(r));
                }
                Some(Udp::Oversize) => return Ok(Udp::Oversize),
                None => {}
            }
        }
    }
}

/// Whether a datagram from `from` comes from `upstream`. The kernel
/// reports the scope id of a link-local sender (the interface it came in
/// on), and none for any other, whatever zone the upstream was written
/// with.
pub(super) fn same_peer(from: SocketAddr, upstream: SocketAddr) -> bool {
    match (from, upstream) {
        (SocketAddr::V6(f), SocketAddr::V6(u)) => {
            f.ip() == u.ip()
                && f.port() == u.port()
                && (!u.ip().is_unicast_link_local() || f.scope_id() == u.scope_id())
        }
        _ => from == upstream,
    }
}

/// Waits until `sock` has a datagram to read (`true`) or fails with the
/// socket's pending error: ICMP port-unreachable and the like.
///
/// The error is waited for explicitly: tokio's readable state does not
/// include it, and when the ICMP error comes back before the socket is
/// registered (it does on loopback: it is handled within the `send`), the
/// reactor sees only the error, never a readable edge, and a wait for
/// readability alone would last until the timeout. `false`: an error edge
/// with no error pending; the wait goes on.
async fn wait(sock: &UdpSocket) -> io::Result<bool> {
    let ready = sock.ready(Interest::READABLE | Interest::ERROR).await?;
    if ready.is_error() {
        if let Some(e) = sock.take_error()? {
            return Err(e);
        }
        if !ready.is_readable() {
            // Clears the error state, so the next wait waits.
            let _ = sock.try_io(Interest::ERROR, || {
                Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
            });
            return Ok(false);
        }
    }
    Ok(ready.is_readable())
}

/// What a datagram of `n` bytes received into `buf` is to the exchange:
/// its reply, a reply too large to take whole, or nothing (the wait goes
/// on). A reply from anyone else, or to another query, is nothing: a
/// spoofed packet must not end the exchange.
fn judge(buf: &[u8], n: usize, from_upstream: bool, id: u16, question: &[u8]) -> Option<Udp> {
    let got = buf.get(..n)?;
    if !from_upstream || !wire::answers(got, id, question) {
        return None;
    }
    if n == buf.len() {
        // Larger than offered and than the buffer (RFC 6891 §7 forbids
        // it): what arrived is cut, so ask over TCP.
        return Some(Udp::Oversize);
    }
    match Reply::parse(got) {
        Ok(r) => Some(Udp::Reply(r)),
        Err(_) if is_bare_formerr(got) => Some(Udp::Reply(bare_formerr(got))),
        // As large as a datagram over IPv4 can be, and broken: its sender
        // cut a larger answer to fit (a buffer sized to a large offer took
        // it whole). No later datagram will be whole either, so ask over
        // TCP rather than wait.
        Err(_) if n >= MAX_UDP_PAYLOAD => Some(Udp::Oversize),
        Err(_) => None,
    }
}

/// A fresh socket connected to `addr`, `packet` sent on it, and then
/// registered with the runtime to wait for the reply.
///
/// `connect` binds the socket itself, to a port Linux picks at random from
/// `ip_local_port_range` as an explicit bind to port 0 would (the same
/// `get_port(sk, 0)` path; RFC 6056), so there is no `bind` call. The first
/// send goes out before the registration: tokio only sends on a socket once
/// the reactor has reported it writable, which for a new socket is a trip
/// through the event loop for nothing.
fn connected(addr: SocketAddr, packet: &[u8]) -> io::Result<UdpSocket> {
    let ty = socket2::Type::DGRAM.nonblocking();
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        ty,
        Some(socket2::Protocol::UDP),
    )?;
    sock.connect(&addr.into())?;
    sock.send(packet)?;
    UdpSocket::from_std(sock.into())
}

/// The first retransmission of a UDP query to an upstream not measured
/// yet (Unbound starts from 376 ms).
pub(super) const INITIAL_RTO: Duration = Duration::from_millis(400);
/// The least wait before a retransmission, however close the upstream.
pub(super) const MIN_RTO: Duration = Duration::from_millis(100);

/// An upstream's smoothed round-trip time and its variation, as TCP keeps
/// them (RFC 6298 §2), to time retransmissions of a lost UDP query within
/// one try: a lost datagram costs about one retransmission timeout, not
/// the whole `dns.timeout_ms`. A recursive upstream's time includes its
/// own resolution, so cold names push the timeout up, as they should.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Rtt {
    /// `None` until the first sample.
    smoothed: Option<(Duration, Duration)>,
}

impl Rtt {
    /// The retransmission timeout: SRTT + 4 RTTVAR, at least [`MIN_RTO`],
    /// at most `ceiling` (the try's timeout).
    pub(super) fn rto(self, ceiling: Duration) -> Duration {
        let rto = self
            .smoothed
            .map_or(INITIAL_RTO, |(srtt, var)| (srtt + 4 * var).max(MIN_RTO));
        rto.min(ceiling)
    }

    /// Takes a sample from a reply to a query sent once (Karn's algorithm:
    /// after a retransmission nobody knows which send was answered).
    pub(super) fn sample(&mut self, r: Duration) {
        self.smoothed = Some(match self.smoothed {
            None => (r, r / 2),
            Some((srtt, var)) => ((srtt * 7 + r) / 8, (var * 3 + srtt.abs_diff(r)) / 4),
        });
    }
}

/// The least a receive buffer holds: a reply to a query that offers up
/// to 4096 bytes, or none, fits.
const SMALL_REPLY: usize = 4096;

/// The largest UDP payload over IPv4 (65,535 − 20 − 8); over IPv6 it is
/// 65,527.
const MAX_UDP_PAYLOAD: usize = 65_507;

thread_local! {
    /// The thread's receive buffer for upstream replies. A reply is read
    /// and parsed (copied into its [`Reply`]) without awaiting in between,
    /// so one buffer per thread serves every exchange of the thread: no
    /// allocation, zeroing or free per cache miss, and no buffer per
    /// exchange in flight. It grows to the largest size asked (at most
    /// 64 KiB, for a query offering 65,535 bytes) and stays.
    static RECEIVE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Calls `f` with `size` bytes of the thread's receive buffer. A reply may
/// be as large as the EDNS size the query offered, so `size` is that (at
/// least [`SMALL_REPLY`]) and one byte more: the kernel cuts a larger
/// datagram to the buffer, so a full buffer tells a reply too large to
/// have been read whole.
fn with_buffer<T>(size: usize, f: impl FnOnce(&mut [u8]) -> T) -> T {
    RECEIVE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < size {
                buf.resize(size, 0);
            }
            f(&mut buf[..size])
        }
        // Only if `f` itself asked for the buffer, which it does not.
        Err(_) => f(&mut vec![0u8; size]),
    })
}

/// An old server's FORMERR may carry no question (RFC 6891 §7).
fn is_bare_formerr(msg: &[u8]) -> bool {
    wire::Header::parse(msg).is_some_and(|h| h.qdcount == 0 && h.rcode() == rcode::FORMERR)
}

fn bare_formerr(msg: &[u8]) -> Reply {
    // Rebuild it with the question so the caller can handle it like any
    // reply; only the rcode matters, it is never cached or relayed as is.
    let mut b = msg.get(..wire::HEADER_LEN).unwrap_or(&[]).to_vec();
    b.resize(wire::HEADER_LEN, 0);
    b[2..4].copy_from_slice(&(flag::QR | rcode::FORMERR).to_be_bytes());
    b[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&[0, 0, 1, 0, 1]);
    Reply::parse(&b).unwrap_or_else(|_| unreachable_reply())
}

fn unreachable_reply() -> Reply {
    // A fixed, valid message: root NS query reply header.
    #[allow(clippy::expect_used)]
    Reply::parse(&[0, 0, 0x81, 0x82, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1])
        .expect("a fixed valid reply parses")
}
