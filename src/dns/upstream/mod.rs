//! Forwarding to the upstream resolvers.
//!
//! Every try uses a fresh UDP socket bound to port 0 and connected to the
//! upstream: Linux picks a random ephemeral port for each bind, so every
//! query gets a random source port (RFC 5452 §9.2) besides its random ID,
//! and the connected socket makes the kernel drop datagrams from any other
//! address or port (we check the peer again anyway). A socket per query
//! costs a few system calls, which the cache-miss path can afford; a pool of
//! long-lived ports would save them but let an off-path attacker learn the
//! ports. A connected socket also reports ICMP port-unreachable at once,
//! so a dead upstream fails over without waiting for the timeout.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::wire::{self, Query, Reply, flag, rcode};
use crate::config;
use crate::metrics::{UpstreamFailure, Upstreams};
use crate::sync::lock;

/// How often a failing upstream is worth a log line.
const WARN_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("every upstream failed")]
    AllFailed,
    /// Refused by the flight table: every slot taken, none may give way.
    #[error("too many upstream queries in flight")]
    Busy,
}

/// The upstream resolvers and the queries in flight to them.
#[derive(Debug)]
pub struct Pool {
    servers: Vec<Server>,
    /// Index of the upstream that answered last: tried first.
    preferred: AtomicUsize,
    timeout: Duration,
    max_inflight: usize,
    /// Receive buffers of finished UDP exchanges, for the next ones.
    buffers: Mutex<Vec<Box<[u8]>>>,
}

/// Receive buffers kept for reuse; beyond this many exchanges in flight at
/// once, buffers are freed after use.
///
/// A UDP reply may be as large as the EDNS size the query offered, so the
/// buffer is sized to that, but never under [`SMALL_REPLY`]: nearly every
/// query offers 1232 bytes or less (or has no EDNS: 512), and those
/// buffers are the ones kept. A buffer allocated per cache miss and freed
/// between the small allocations of the cache entries it produced would
/// fragment the heap, and a 64 KiB buffer per exchange would let a burst
/// of 1,000 misses in flight take 64 MiB. Eight kept buffers are 32 KiB.
const KEEP_BUFFERS: usize = 8;

/// The least a receive buffer holds: a reply to a query that offers up
/// to 4096 bytes, or none, fits.
const SMALL_REPLY: usize = 4096;

/// The largest UDP payload over IPv4 (65,535 − 20 − 8); over IPv6 it is
/// 65,527.
const MAX_UDP_PAYLOAD: usize = 65_507;

/// A receive buffer that goes back to its pool when dropped.
struct Buffer<'a> {
    pool: &'a Mutex<Vec<Box<[u8]>>>,
    bytes: Option<Box<[u8]>>,
}

impl Buffer<'_> {
    /// Room for a reply of `size` bytes (at least [`SMALL_REPLY`]) and one
    /// byte more: the kernel cuts a larger datagram to the buffer, so a
    /// full buffer tells a reply too large to have been read whole.
    fn get(pool: &Mutex<Vec<Box<[u8]>>>, size: usize) -> Buffer<'_> {
        let len = size.max(SMALL_REPLY) + 1;
        let kept = if len == SMALL_REPLY + 1 {
            lock(pool).pop()
        } else {
            None
        };
        Buffer {
            pool,
            bytes: Some(kept.unwrap_or_else(|| vec![0u8; len].into_boxed_slice())),
        }
    }

    fn bytes(&mut self) -> &mut [u8] {
        self.bytes.as_deref_mut().unwrap_or(&mut [])
    }
}

impl Drop for Buffer<'_> {
    fn drop(&mut self) {
        if let Some(bytes) = self.bytes.take().filter(|b| b.len() == SMALL_REPLY + 1) {
            let mut pool = lock(self.pool);
            if pool.len() < KEEP_BUFFERS {
                pool.push(bytes);
            }
        }
    }
}

#[derive(Debug)]
struct Server {
    addr: SocketAddr,
    last_warning: Mutex<Option<Instant>>,
    rtt: Mutex<Rtt>,
}

/// The first retransmission of a UDP query to an upstream not measured
/// yet (Unbound starts from 376 ms).
const INITIAL_RTO: Duration = Duration::from_millis(400);
/// The least wait before a retransmission, however close the upstream.
const MIN_RTO: Duration = Duration::from_millis(100);

/// An upstream's smoothed round-trip time and its variation, as TCP keeps
/// them (RFC 6298 §2), to time retransmissions of a lost UDP query within
/// one try: a lost datagram costs about one retransmission timeout, not
/// the whole `dns.timeout_ms`. A recursive upstream's time includes its
/// own resolution, so cold names push the timeout up, as they should.
#[derive(Debug, Clone, Copy, Default)]
struct Rtt {
    /// `None` until the first sample.
    smoothed: Option<(Duration, Duration)>,
}

impl Rtt {
    /// The retransmission timeout: SRTT + 4 RTTVAR, at least [`MIN_RTO`],
    /// at most `ceiling` (the try's timeout).
    fn rto(self, ceiling: Duration) -> Duration {
        let rto = self
            .smoothed
            .map_or(INITIAL_RTO, |(srtt, var)| (srtt + 4 * var).max(MIN_RTO));
        rto.min(ceiling)
    }

    /// Takes a sample from a reply to a query sent once (Karn's algorithm:
    /// after a retransmission nobody knows which send was answered).
    fn sample(&mut self, r: Duration) {
        self.smoothed = Some(match self.smoothed {
            None => (r, r / 2),
            Some((srtt, var)) => ((srtt * 7 + r) / 8, (var * 3 + srtt.abs_diff(r)) / 4),
        });
    }
}

/// Turns the configured upstream list into addresses: `system` expands to
/// the nameservers of the resolv.conf, minus our own listen addresses (a
/// forwarding loop to ourselves would turn one query into a storm).
pub fn addresses(dns: &config::Dns) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for u in &dns.upstreams {
        match u {
            config::Upstream::Addr(a) => out.push(*a),
            config::Upstream::System => {
                let text = std::fs::read_to_string(&dns.resolv_conf)
                    .map_err(|e| format!("{}: {e}", dns.resolv_conf.display()))?;
                let found = resolv_conf_nameservers(&text);
                let before = found.len();
                out.extend(
                    found
                        .into_iter()
                        .filter(|&a| !config::is_own(a, &dns.listen)),
                );
                if before == 0 {
                    return Err(format!(
                        "{}: no nameserver lines for upstreams = [\"system\"]",
                        dns.resolv_conf.display()
                    ));
                }
            }
        }
    }
    out.dedup();
    if out.is_empty() {
        // On systemd hosts the uplink's servers are listed here.
        const RESOLVED: &str = "/run/systemd/resolve/resolv.conf";
        let hint = if Path::new(RESOLVED).exists() && dns.resolv_conf != Path::new(RESOLVED) {
            format!(" (or dns.resolv_conf = \"{RESOLVED}\")")
        } else {
            String::new()
        };
        return Err(format!(
            "no upstream left: the nameservers of {} are this daemon's own listen addresses; \
             set dns.upstreams to the real resolvers{hint}",
            dns.resolv_conf.display()
        ));
    }
    Ok(out)
}

/// `nameserver` lines of a resolv.conf (resolv.conf(5)): an IPv4 or IPv6
/// address, port 53. Zones (`fe80::1%eth0`) are skipped: they need an
/// interface index we do not resolve here.
pub fn resolv_conf_nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let ip: std::net::IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

impl Pool {
    pub fn new(addrs: Vec<SocketAddr>, timeout: Duration, max_inflight: usize) -> Pool {
        Pool {
            servers: addrs
                .into_iter()
                .map(|addr| Server {
                    addr,
                    last_warning: Mutex::new(None),
                    rtt: Mutex::new(Rtt::default()),
                })
                .collect(),
            preferred: AtomicUsize::new(0),
            timeout,
            max_inflight: max_inflight.max(1),
            buffers: Mutex::new(Vec::new()),
        }
    }

    pub fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.servers.iter().map(|s| s.addr)
    }

    /// Lookups in flight at once (`dns.max_inflight`): the server's
    /// flight table ([`super::flight`]) holds to it.
    pub fn max_inflight(&self) -> usize {
        self.max_inflight
    }

    /// Resolves `client_query` (the client's bytes) through the upstreams,
    /// counting each try in `metrics`. Identical queries are merged and
    /// bounded before they get here, by the server's flights.
    pub async fn resolve(
        &self,
        client_query: &[u8],
        metrics: &Upstreams,
    ) -> Result<Reply, Failure> {
        self.exchange(client_query, metrics).await
    }

    /// Tries the upstreams in order, starting with the one that answered
    /// last; moves on after a timeout, a network error, SERVFAIL or REFUSED.
    async fn exchange(&self, client_query: &[u8], metrics: &Upstreams) -> Result<Reply, Failure> {
        let Ok(query) = Query::parse(client_query) else {
            return Err(Failure::AllFailed);
        };
        let mut packet = Vec::with_capacity(client_query.len());
        query.forward(0, &mut packet);
        let n = self.servers.len();
        let first = self.preferred.load(Ordering::Relaxed) % n.max(1);
        for i in 0..n {
            let idx = (first + i) % n;
            let server = &self.servers[idx];
            let sent = Instant::now();
            match self.try_server(server, &mut packet).await {
                Ok(reply) => {
                    let rc = reply.rcode();
                    if rc == rcode::SERVFAIL || rc == rcode::REFUSED {
                        metrics.failed(server.addr, rcode_failure(rc));
                        self.warn(server, &format!("answered rcode {rc}"));
                        continue;
                    }
                    metrics.answered(server.addr, sent.elapsed());
                    self.preferred.store(idx, Ordering::Relaxed);
                    return Ok(reply);
                }
                Err(e) => {
                    metrics.failed(server.addr, io_failure(&e));
                    self.warn(server, &e.to_string());
                }
            }
        }
        Err(Failure::AllFailed)
    }

    /// One upstream: UDP, then TCP when the reply is truncated, then once
    /// more without EDNS when it answers FORMERR to an OPT (RFC 6891 §7).
    async fn try_server(&self, server: &Server, packet: &mut Vec<u8>) -> io::Result<Reply> {
        let reply = match self.udp(server, packet).await? {
            Udp::Reply(reply) if !reply.header().tc() => reply,
            Udp::Reply(_) | Udp::Oversize => self.tcp(server.addr, packet).await?,
        };
        if reply.rcode() == rcode::FORMERR && strip_opt(packet) {
            return Box::pin(self.try_server(server, packet)).await;
        }
        Ok(reply)
    }

    /// One UDP try: the query is sent again (same port and ID, so a late
    /// reply to an earlier send still counts) each time the retransmission
    /// timeout passes, doubling it, until the try's timeout.
    async fn udp(&self, server: &Server, packet: &mut [u8]) -> io::Result<Udp> {
        let addr = server.addr;
        let id = new_id(packet);
        let local: SocketAddr = match addr {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let sock = UdpSocket::bind(local).await?;
        sock.connect(addr).await?;
        sock.send(packet).await?;
        let query = Query::parse(packet).ok();
        let question = query.as_ref().map_or(&[][..], |q| q.question());
        let offered = query
            .as_ref()
            .and_then(|q| q.edns())
            .map_or(0, |e| e.udp_size);
        let mut buffer = Buffer::get(&self.buffers, usize::from(offered));
        let buf = buffer.bytes();
        let sent = tokio::time::Instant::now();
        let deadline = sent + self.timeout;
        let mut rto = lock(&server.rtt).rto(self.timeout);
        let mut resend = sent + rto;
        let mut sends = 1u32;
        loop {
            let Ok(received) =
                tokio::time::timeout_at(resend.min(deadline), sock.recv_from(buf)).await
            else {
                if resend >= deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
                }
                sock.send(packet).await?;
                sends += 1;
                rto *= 2;
                resend = tokio::time::Instant::now() + rto;
                continue;
            };
            let (n, from) = received?;
            // A reply from anyone else, or to another query, is ignored and
            // the wait goes on: a spoofed packet must not end the exchange.
            let got = &buf[..n];
            if from != addr || !wire::answers(got, id, question) {
                continue;
            }
            if n == buf.len() {
                // Larger than offered and than the buffer (RFC 6891 §7
                // forbids it): what arrived is cut, so ask over TCP.
                return Ok(Udp::Oversize);
            }
            match Reply::parse(got) {
                Ok(r) => {
                    if sends == 1 {
                        lock(&server.rtt).sample(sent.elapsed());
                    }
                    return Ok(Udp::Reply(r));
                }
                Err(_) if is_bare_formerr(got) => return Ok(Udp::Reply(bare_formerr(got))),
                // As large as a datagram over IPv4 can be, and broken: its
                // sender cut a larger answer to fit (a buffer sized to a
                // large offer took it whole). No later datagram will be
                // whole either, so ask over TCP rather than wait.
                Err(_) if n >= MAX_UDP_PAYLOAD => return Ok(Udp::Oversize),
                Err(_) => continue,
            }
        }
    }

    async fn tcp(&self, addr: SocketAddr, packet: &mut [u8]) -> io::Result<Reply> {
        let id = new_id(packet);
        let question = question_of(packet).to_vec();
        let exchange = async {
            let mut stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut framed = Vec::with_capacity(packet.len() + 2);
            framed.extend_from_slice(&(packet.len() as u16).to_be_bytes());
            framed.extend_from_slice(packet);
            stream.write_all(&framed).await?;
            loop {
                let len = usize::from(stream.read_u16().await?);
                let mut buf = vec![0u8; len];
                stream.read_exact(&mut buf).await?;
                if wire::answers(&buf, id, &question)
                    && let Ok(r) = Reply::parse(&buf)
                {
                    return Ok(r);
                }
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timed out over TCP"))?
    }

    fn warn(&self, server: &Server, what: &str) {
        let mut last = lock(&server.last_warning);
        let now = Instant::now();
        if last.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
            *last = Some(now);
            tracing::warn!(upstream = %server.addr, "upstream failed: {what}");
        }
    }
}

/// What a UDP try got.
enum Udp {
    Reply(Reply),
    /// A reply too large for the receive buffer, so not read whole, or
    /// cut by its sender.
    Oversize,
}

/// The failure reason of an answer the pool does not accept.
fn rcode_failure(rc: u16) -> UpstreamFailure {
    if rc == rcode::REFUSED {
        UpstreamFailure::Refused
    } else {
        UpstreamFailure::Servfail
    }
}

/// The failure reason of a try that got no reply: our own timeouts (UDP
/// and TCP) say `TimedOut`; everything else is the network's doing.
fn io_failure(e: &io::Error) -> UpstreamFailure {
    if e.kind() == io::ErrorKind::TimedOut {
        UpstreamFailure::Timeout
    } else {
        UpstreamFailure::Network
    }
}

/// A fresh ID from the thread's CSPRNG (ChaCha, seeded by the OS), written
/// into the packet.
fn new_id(packet: &mut [u8]) -> u16 {
    let id: u16 = rand::random();
    if let Some(h) = packet.get_mut(..2) {
        h.copy_from_slice(&id.to_be_bytes());
    }
    id
}

fn question_of(packet: &[u8]) -> &[u8] {
    Query::parse(packet).map(|q| q.question()).unwrap_or(&[])
}

/// Drops the OPT record of a query we built (it is last, and alone in the
/// additional section). Returns whether there was one.
fn strip_opt(packet: &mut Vec<u8>) -> bool {
    let Ok(q) = Query::parse(packet) else {
        return false;
    };
    let Some(start) = q.edns().map(|e| e.record.start) else {
        return false;
    };
    packet.truncate(start);
    if let Some(ar) = packet.get_mut(10..12) {
        ar.copy_from_slice(&0u16.to_be_bytes());
    }
    true
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmission_timeout_follows_the_measured_rtt() {
        let ms = Duration::from_millis;
        let timeout = ms(2000);
        let mut rtt = Rtt::default();
        assert_eq!(rtt.rto(timeout), INITIAL_RTO);
        assert_eq!(rtt.rto(ms(300)), ms(300), "never past the try's timeout");
        // A first sample of 80 ms: SRTT 80, RTTVAR 40, RTO 240.
        rtt.sample(ms(80));
        assert_eq!(rtt.rto(timeout), ms(240));
        // A steady close upstream: the RTO falls to the floor.
        for _ in 0..50 {
            rtt.sample(ms(1));
        }
        assert_eq!(rtt.rto(timeout), MIN_RTO);
        // A slow one (a recursive upstream resolving cold names) pushes it up.
        for _ in 0..50 {
            rtt.sample(ms(600));
        }
        let slow = rtt.rto(timeout);
        assert!(slow >= ms(600) && slow < timeout, "{slow:?}");
    }

    #[test]
    fn resolv_conf_lines() {
        let text = "# comment\nnameserver 192.0.2.1\nnameserver   2001:db8::53 \n\
                    nameserver fe80::1%eth0\nsearch example\nnameserver bogus\noptions ndots:2\n";
        assert_eq!(
            resolv_conf_nameservers(text),
            vec![
                "192.0.2.1:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:53".parse().unwrap()
            ]
        );
    }

    fn dns_with_resolv_conf(text: &str, tag: &str) -> config::Dns {
        let path = std::env::temp_dir().join(format!("getapr-resolv-{tag}-{}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let toml = format!(
            "[dns]\nlisten = [\"127.0.0.53:53\"]\nupstreams = [\"system\", \"192.0.2.9\"]\nresolv_conf = {:?}\n",
            path.display().to_string()
        );
        config::Config::parse(&toml).unwrap().dns
    }

    #[test]
    fn system_upstreams_skip_ourselves() {
        let dns = dns_with_resolv_conf("nameserver 127.0.0.53\nnameserver 192.0.2.53\n", "mixed");
        assert_eq!(
            addresses(&dns).unwrap(),
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "192.0.2.9:53".parse().unwrap()
            ]
        );
        let mut only_us = dns_with_resolv_conf("nameserver 127.0.0.53\n", "self");
        only_us.upstreams.truncate(1);
        let err = addresses(&only_us).unwrap_err();
        assert!(err.contains("no upstream left"), "{err}");
        let mut missing = only_us.clone();
        missing.resolv_conf = "/nonexistent/resolv.conf".into();
        assert!(
            addresses(&missing)
                .unwrap_err()
                .starts_with("/nonexistent/resolv.conf: ")
        );
    }

    /// Whether an upstream reaches one of our listeners, asked both ways
    /// the daemon asks it: an explicit `dns.upstreams` entry (refused by
    /// the config as a loop) and a `nameserver` line behind `"system"`
    /// (left out of the upstreams). Both must give the same answer.
    #[test]
    fn config_and_resolv_conf_agree_on_own_addresses() {
        // (listen, upstream on port 53, reaches ourselves)
        let cases = [
            // Listeners are bound IPV6_V6ONLY: `[::]` receives no IPv4.
            ("[::]:53", "127.0.0.1", false),
            ("[::]:53", "::1", true),
            ("0.0.0.0:53", "127.0.0.1", true),
            ("0.0.0.0:53", "127.8.9.10", true),
            ("0.0.0.0:53", "::1", false),
            // An IPv4-mapped address is sent over IPv4.
            ("0.0.0.0:53", "::ffff:127.0.0.1", true),
            ("[::]:53", "::ffff:127.0.0.1", false),
            // Sending to the unspecified address reaches loopback.
            ("127.0.0.1:53", "0.0.0.0", true),
            ("[::1]:53", "::", true),
            ("[::]:53", "0.0.0.0", false),
            ("127.0.0.53:53", "127.0.0.53", true),
            ("127.0.0.53:53", "127.0.0.1", false),
            ("0.0.0.0:5353", "127.0.0.1", false),
        ];
        for (i, (listen, upstream, own)) in cases.into_iter().enumerate() {
            let case = format!("listen {listen}, upstream {upstream}");
            let toml = format!("[dns]\nlisten = [{listen:?}]\nupstreams = [{upstream:?}]\n");
            let refused = config::Config::parse(&toml).is_err_and(|e| e.message.contains("loop"));
            assert_eq!(refused, own, "config: {case}");

            let path = std::env::temp_dir().join(format!("getapr-own-{i}-{}", std::process::id()));
            std::fs::write(&path, format!("nameserver {upstream}\n")).unwrap();
            let toml = format!(
                "[dns]\nlisten = [{listen:?}]\nupstreams = [\"system\", \"192.0.2.9\"]\nresolv_conf = {:?}\n",
                path.display().to_string()
            );
            let dns = config::Config::parse(&toml).unwrap().dns;
            let kept = addresses(&dns).unwrap();
            std::fs::remove_file(&path).unwrap();
            let ip: std::net::IpAddr = upstream.parse().unwrap();
            assert_eq!(
                !kept.contains(&SocketAddr::new(ip, 53)),
                own,
                "resolv.conf: {case}"
            );
        }
    }

    #[test]
    fn strip_opt_removes_the_record() {
        let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1];
        q.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0x80, 0, 0, 0]);
        assert!(strip_opt(&mut q));
        assert_eq!(q.len(), 17);
        let parsed = Query::parse(&q).unwrap();
        assert!(parsed.edns().is_none());
        assert!(!strip_opt(&mut q));
    }
}
