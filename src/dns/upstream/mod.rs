//! Forwarding to the upstream resolvers.
//!
//! Every try uses a fresh UDP socket connected to the upstream: `connect`
//! binds it to an ephemeral port Linux picks at random for each socket, so
//! every query gets a random source port (RFC 5452 §9.2) besides its random
//! ID, and the connected socket makes the kernel drop datagrams from any
//! other address or port (we check the peer again anyway). A socket per query
//! costs a few system calls, which the cache-miss path can afford; a pool of
//! long-lived ports would save them but let an off-path attacker learn the
//! ports. A connected socket also reports ICMP port-unreachable at once,
//! so a dead upstream fails over without waiting for the timeout.
//!
//! An upstream with a zone by interface name (`fe80::1%eth0`) is sent to
//! with the index the interface has: looked up when the pool is built, and
//! again when a send fails at once (the interface was re-created under a
//! new index) or while there is no such interface (it may appear later).
//! Until it exists, that upstream fails like an unreachable one.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::wire::{self, Query, Reply, rcode};
use crate::config::Nameserver;
use crate::metrics::{UpstreamFailure, Upstreams};
use crate::sync::lock;

mod addresses;
mod udp;

#[cfg(test)]
mod tests;

pub use addresses::{addresses, resolv_conf_nameservers};
use udp::{Rtt, Udp};

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
}

#[derive(Debug)]
struct Server {
    nameserver: Nameserver,
    /// How logs and metrics show it: `192.0.2.1:53`, `[fe80::1%eth0]:53`.
    label: String,
    /// With a zone by name, the interface's index as last looked up; 0 =
    /// no such interface.
    index: AtomicU32,
    last_warning: Mutex<Option<Instant>>,
    rtt: Mutex<Rtt>,
    /// Its series of `getapr_upstream_latency_seconds`, found once: the
    /// lookup by label formats the address, which cost more than the rest
    /// of the metrics of a cache miss together. A pool reports to the
    /// metrics of one daemon.
    latency: OnceLock<Histogram>,
}

impl Pool {
    /// The upstreams in order; the interfaces of zones by name are looked
    /// up now.
    pub fn new(servers: Vec<Nameserver>, timeout: Duration, max_inflight: usize) -> Pool {
        Pool {
            servers: servers
                .into_iter()
                .map(|nameserver| Server {
                    label: nameserver.to_string(),
                    index: AtomicU32::new(
                        nameserver
                            .interface()
                            .and_then(addresses::index_of)
                            .unwrap_or(0),
                    ),
                    nameserver,
                    last_warning: Mutex::new(None),
                    rtt: Mutex::new(Rtt::default()),
                    latency: OnceLock::new(),
                })
                .collect(),
            preferred: AtomicUsize::new(0),
            timeout,
            max_inflight: max_inflight.max(1),
        }
    }

    /// The upstreams, as configured (a zone by name as the name).
    pub fn addrs(&self) -> impl Iterator<Item = &Nameserver> + '_ {
        self.servers.iter().map(|s| &s.nameserver)
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
                        metrics.failed(&server.label, rcode_failure(rc));
                        self.warn(server, &format!("answered rcode {rc}"));
                        continue;
                    }
                    server
                        .latency
                        .get_or_init(|| metrics.latency_of(&server.label))
                        .observe(sent.elapsed().as_secs_f64());
                    self.preferred.store(idx, Ordering::Relaxed);
                    return Ok(reply);
                }
                Err(e) => {
                    metrics.failed(&server.label, io_failure(&e));
                    self.warn(server, &e.to_string());
                }
            }
        }
        Err(Failure::AllFailed)
    }

    /// One upstream. With a zone by name, a try that failed at once (not
    /// by our timeout) is made once more when the interface has another
    /// index now: it was re-created, and the old index is gone.
    async fn try_server(&self, server: &Server, packet: &mut Vec<u8>) -> io::Result<Reply> {
        let addr = server.target()?;
        match self.try_addr(server, addr, packet).await {
            Err(e) if e.kind() != io::ErrorKind::TimedOut && server.moved(addr) => {
                let addr = server.target()?;
                self.try_addr(server, addr, packet).await
            }
            r => r,
        }
    }

    /// One upstream at `addr`: UDP, then TCP when the reply is truncated,
    /// then once more without EDNS when it answers FORMERR to an OPT (RFC
    /// 6891 §7).
    async fn try_addr(
        &self,
        server: &Server,
        addr: SocketAddr,
        packet: &mut Vec<u8>,
    ) -> io::Result<Reply> {
        let reply = match self.udp(server, addr, packet).await? {
            Udp::Reply(reply) if !reply.header().tc() => reply,
            Udp::Reply(_) | Udp::Oversize => self.tcp(addr, packet).await?,
        };
        if reply.rcode() == rcode::FORMERR && strip_opt(packet) {
            return Box::pin(self.try_addr(server, addr, packet)).await;
        }
        Ok(reply)
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
            tracing::warn!(upstream = %server.label, "upstream failed: {what}");
        }
    }
}

impl Server {
    /// Where to send: the address, with a zone by name the interface's
    /// index (looked up again while there is no such interface). An error
    /// when there is none: the upstream is unreachable for now.
    fn target(&self) -> io::Result<SocketAddr> {
        let Some(name) = self.nameserver.interface() else {
            return Ok(self.nameserver.addr());
        };
        let mut index = self.index.load(Ordering::Relaxed);
        if index == 0 {
            index = self.look_up(name);
        }
        if index == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface {name}"),
            ));
        }
        Ok(self.nameserver.with_index(index))
    }

    /// After a failed send to `tried`: whether the interface of a zone by
    /// name has another index now (looked up again and kept).
    fn moved(&self, tried: SocketAddr) -> bool {
        let Some(name) = self.nameserver.interface() else {
            return false;
        };
        let index = self.look_up(name);
        let old = match tried {
            SocketAddr::V6(v6) => v6.scope_id(),
            SocketAddr::V4(_) => 0,
        };
        index != 0 && index != old
    }

    fn look_up(&self, name: &str) -> u32 {
        let index = addresses::index_of(name).unwrap_or(0);
        self.index.store(index, Ordering::Relaxed);
        index
    }
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
