//! The UDP and TCP listeners: access control, limits, the cache-hit fast
//! path, and handing misses to the upstream pool.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cache::{self, Cache, Key};
use super::upstream::{Failure, Outcome, Pool};
use super::wire::{self, Header, Query, Reply, rcode};
use crate::probe::driver::Input;
use crate::probe::verdicts::Verdicts;

/// RFC 7766 §6.2.3 asks servers to keep idle connections open "at least a
/// few seconds"; 10 s is what Unbound and dnsmasq use by default.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries of one TCP connection being resolved at once; reading pauses
/// beyond this, so one client cannot pile up unbounded work.
const TCP_PIPELINE: usize = 128;

/// What the listeners read on every query; replaced whole on reload.
#[derive(Debug)]
pub struct Settings {
    pub allow: Vec<IpNet>,
    /// Cap on the UDP reply size offered to EDNS clients.
    pub udp_cap: u16,
    pub pool: Arc<Pool>,
    pub tcp_slots: Arc<Semaphore>,
    /// `[policy]`: how answers are rewritten and `/pairs` sorted.
    pub policy: crate::config::Policy,
}

/// State shared by every listener of the daemon.
#[derive(Debug)]
pub struct Shared {
    pub settings: ArcSwap<Settings>,
    pub cache: Mutex<Cache<Arc<Reply>>>,
    /// What the probe engine knows, read without locks.
    pub verdicts: Arc<ArcSwap<Verdicts>>,
    /// Where answers' addresses go to be probed, while probing runs.
    pub probe_inputs: ArcSwapOption<mpsc::Sender<Input>>,
    /// Every task that owes a client an answer, so shutdown can drain them.
    pub tracker: TaskTracker,
}

/// What to do with a received message.
#[derive(Debug)]
pub enum Step {
    /// Nothing (not a query, or not even a header).
    Drop,
    /// Send what was written into the output buffer.
    Reply,
    /// Not in the cache: resolve through the upstreams.
    Forward(Key),
}

impl Shared {
    pub fn new(settings: Settings, cache_size: usize) -> Shared {
        Shared {
            settings: ArcSwap::from_pointee(settings),
            cache: Mutex::new(Cache::new(cache_size)),
            verdicts: Arc::new(ArcSwap::from_pointee(Verdicts::default())),
            probe_inputs: ArcSwapOption::empty(),
            tracker: TaskTracker::new(),
        }
    }

    /// Decides on a message without awaiting: the error answers, the ACL and
    /// cache hits are written to `out` at once.
    pub fn triage(&self, packet: &[u8], peer: IpAddr, udp: bool, out: &mut Vec<u8>) -> Step {
        let Some(header) = Header::parse(packet) else {
            return Step::Drop;
        };
        // A reply sent to a server is never answered: answering could start
        // a loop between two servers (RFC 1035 §4.1.1 QR).
        if header.qr() {
            return Step::Drop;
        }
        let settings = self.settings.load();
        let cap = udp.then_some(settings.udp_cap);
        let query = Query::parse(packet);
        // The error answers carry the question when there is a readable one.
        let shape = match &query {
            Ok(q) => q.shape(cap),
            Err(_) => wire::header_shape(&header),
        };
        let peer = canonical(peer);
        if !settings.allow.iter().any(|net| net.contains(&peer)) {
            wire::error_reply(&shape, header.opcode(), rcode::REFUSED, out);
            return Step::Reply;
        }
        if header.opcode() != 0 {
            wire::error_reply(&shape, header.opcode(), rcode::NOTIMP, out);
            return Step::Reply;
        }
        let Ok(query) = query else {
            wire::error_reply(&shape, 0, rcode::FORMERR, out);
            return Step::Reply;
        };
        // RFC 6891 §6.1.3: we speak EDNS version 0 only.
        if query.edns().is_some_and(|e| e.version > 0) {
            wire::error_reply(&shape, 0, rcode::BADVERS, out);
            return Step::Reply;
        }
        let (name, qtype, qclass) = query.parts();
        let key = Key::new(name, qtype, qclass, query.do_bit(), header.cd());
        let mut cache = cache::lock(&self.cache);
        if let Some((reply, age)) = cache.get(&key, Instant::now()) {
            reply.render(&shape, age_secs(age), out);
            return Step::Reply;
        }
        Step::Forward(key)
    }

    /// Resolves a cache miss and writes the answer fitted to the client.
    pub async fn forward(&self, pool: &Arc<Pool>, key: Key, packet: &[u8], udp: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let Ok(query) = Query::parse(packet) else {
            return out;
        };
        let cap = udp.then_some(self.settings.load().udp_cap);
        let shape = query.shape(cap);
        match self.resolve(pool, key.clone(), packet).await {
            Ok(reply) => {
                // Clients' answers only: the daemon's own lookups (STUN
                // servers, ipv4only.arpa) are no destinations to probe.
                self.learn(&key, &reply);
                reply.render(&shape, 0, &mut out);
            }
            Err(e) => {
                if matches!(*e, Failure::Busy) {
                    tracing::debug!("upstream queries at their cap; answering SERVFAIL");
                }
                wire::error_reply(&shape, 0, rcode::SERVFAIL, &mut out);
            }
        }
        out
    }

    /// Asks the upstreams (merged with identical queries in flight) and
    /// caches the answer.
    async fn resolve(&self, pool: &Arc<Pool>, key: Key, packet: &[u8]) -> Outcome {
        let reply = pool.resolve(key.clone(), packet).await?;
        if let Some(ttl) = cache::lifetime(&reply) {
            cache::lock(&self.cache).insert(key, Arc::clone(&reply), Instant::now(), ttl);
        }
        Ok(reply)
    }
}

impl Shared {
    /// The daemon's own lookups (STUN server names, NAT64 discovery, the
    /// sidecar): the same cache and upstreams as a client's query, no second
    /// resolver.
    pub async fn lookup(&self, name: &str, qtype: u16) -> Result<Arc<Reply>, LookupError> {
        let mut packet = Vec::with_capacity(64);
        Header {
            id: rand::random(),
            flags: wire::flag::RD,
            qdcount: 1,
            ancount: 0,
            nscount: 0,
            arcount: 0,
        }
        .write(&mut packet);
        wire::write_name(name, &mut packet).ok_or(LookupError::BadName)?;
        packet.extend_from_slice(&qtype.to_be_bytes());
        packet.extend_from_slice(&1u16.to_be_bytes());
        let query = Query::parse(&packet).map_err(|_| LookupError::BadName)?;
        let (qname, _, qclass) = query.parts();
        let key = Key::new(qname, qtype, qclass, false, false);
        if let Some((reply, _)) = cache::lock(&self.cache).get(&key, Instant::now()) {
            return Ok(Arc::clone(reply));
        }
        let pool = Arc::clone(&self.settings.load().pool);
        self.resolve(&pool, key, &packet)
            .await
            .map_err(|_| LookupError::Upstreams)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("not a valid domain name")]
    BadName,
    #[error("the upstreams failed")]
    Upstreams,
}

impl Shared {
    /// Hands the addresses of a fresh A/AAAA answer to the probe engine.
    /// Never waits: when the engine is behind, addresses are dropped (they
    /// come again with the next miss). Cache hits do not learn, so the hot
    /// path stays free of parsing.
    fn learn(&self, key: &Key, reply: &Reply) {
        if key.qtype() != wire::rtype::A && key.qtype() != wire::rtype::AAAA {
            return;
        }
        let Some(tx) = self.probe_inputs.load_full() else {
            return;
        };
        let public_name = is_public_name(key.qname());
        for addr in reply.addresses() {
            if tx.try_send(Input::Learn { addr, public_name }).is_err() {
                return;
            }
        }
    }
}

/// Whether a (wire-format, lower-cased) name is a public one: not a single
/// label and not under a name reserved for local use (RFC 6761 `local`,
/// `localhost`, `test`, `invalid`; RFC 8375 `home.arpa`; ICANN's
/// `internal`; the common `lan` and `localdomain`), nor a reverse name.
pub fn is_public_name(wire_name: &[u8]) -> bool {
    let mut labels = Vec::new();
    let mut rest = wire_name;
    while let Some((&len, tail)) = rest.split_first() {
        if len == 0 || usize::from(len) > tail.len() {
            break;
        }
        labels.push(&tail[..usize::from(len)]);
        rest = &tail[usize::from(len)..];
    }
    let tld = labels.last().copied().unwrap_or_default();
    let second = labels
        .len()
        .checked_sub(2)
        .map(|i| labels[i])
        .unwrap_or_default();
    labels.len() >= 2
        && !matches!(
            tld,
            b"local" | b"localhost" | b"test" | b"invalid" | b"internal" | b"lan" | b"localdomain"
        )
        && !(tld == b"arpa" && matches!(second, b"home" | b"in-addr" | b"ip6"))
}

fn age_secs(age: Duration) -> u32 {
    u32::try_from(age.as_secs()).unwrap_or(u32::MAX)
}

/// An IPv4 client reaching an IPv6 socket shows up as ::ffff:a.b.c.d; the
/// ACL is written in plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Answers UDP queries on `socket` until `stop`.
pub async fn serve_udp(shared: Arc<Shared>, socket: Arc<UdpSocket>, stop: CancellationToken) {
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(1232);
    loop {
        let (n, peer) = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                // ICMP errors from earlier replies and the like surface
                // here; they concern one client, not the socket.
                Err(e) => {
                    tracing::debug!("udp receive: {e}");
                    continue;
                }
            },
        };
        let packet = &buf[..n];
        match shared.triage(packet, peer.ip(), true, &mut out) {
            Step::Drop => {}
            Step::Reply => {
                let _ = socket.send_to(&out, peer).await;
            }
            Step::Forward(key) => {
                let shared2 = Arc::clone(&shared);
                let socket = Arc::clone(&socket);
                let packet = packet.to_vec();
                let pool = Arc::clone(&shared.settings.load().pool);
                shared.tracker.spawn(async move {
                    let reply = shared2.forward(&pool, key, &packet, true).await;
                    if !reply.is_empty() {
                        let _ = socket.send_to(&reply, peer).await;
                    }
                });
            }
        }
    }
}

/// Accepts TCP connections on `listener` until `stop`, up to the
/// configured number at once (further ones are closed at once).
pub async fn serve_tcp(shared: Arc<Shared>, listener: TcpListener, stop: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("tcp accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slots = Arc::clone(&shared.settings.load().tcp_slots);
        let Ok(slot) = slots.try_acquire_owned() else {
            tracing::debug!(%peer, "tcp connection cap reached; closing");
            continue;
        };
        let shared2 = Arc::clone(&shared);
        let stop = stop.clone();
        shared.tracker.spawn(async move {
            connection(shared2, stream, peer, stop).await;
            drop(slot);
        });
    }
}

/// One TCP connection (RFC 7766): length-prefixed messages, several queries
/// in flight, each answered as soon as it is ready.
async fn connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_PIPELINE);
    let writer = shared.tracker.spawn(async move {
        let mut framed = Vec::new();
        while let Some(msg) = rx.recv().await {
            let Ok(len) = u16::try_from(msg.len()) else {
                continue;
            };
            framed.clear();
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(&msg);
            if wr.write_all(&framed).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let pipeline = Arc::new(Semaphore::new(TCP_PIPELINE));
    let mut out = Vec::new();
    loop {
        let read = async {
            let len = usize::from(rd.read_u16().await?);
            let mut msg = vec![0u8; len];
            rd.read_exact(&mut msg).await?;
            Ok::<_, std::io::Error>(msg)
        };
        let msg = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            r = tokio::time::timeout(TCP_IDLE, read) => match r {
                Ok(Ok(m)) => m,
                _ => break,
            },
        };
        match shared.triage(&msg, peer.ip(), false, &mut out) {
            Step::Drop => {
                // Without a header there is no way to answer, and the
                // stream cannot be trusted to be in sync any more.
                if msg.len() < wire::HEADER_LEN {
                    break;
                }
            }
            Step::Reply => {
                if tx.send(std::mem::take(&mut out)).await.is_err() {
                    break;
                }
            }
            Step::Forward(key) => {
                let Ok(permit) = Arc::clone(&pipeline).acquire_owned().await else {
                    break;
                };
                let shared2 = Arc::clone(&shared);
                let tx = tx.clone();
                let pool = Arc::clone(&shared.settings.load().pool);
                shared.tracker.spawn(async move {
                    let reply = shared2.forward(&pool, key, &msg, false).await;
                    if !reply.is_empty() {
                        let _ = tx.send(reply).await;
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire_name(dotted: &str) -> Vec<u8> {
        let mut out = Vec::new();
        wire::write_name(dotted, &mut out).unwrap();
        out
    }

    #[test]
    fn public_names() {
        for name in [
            "www.example.com",
            "a.b.example.org.",
            "example.net",
            "ipv4only.arpa",
        ] {
            assert!(is_public_name(&wire_name(name)), "{name}");
        }
        for name in [
            "printer",
            "nas.local",
            "router.home.arpa",
            "x.lan",
            "db.internal",
            "host.localdomain",
            "a.test",
            "1.1.168.192.in-addr.arpa",
            "localhost",
            "",
        ] {
            assert!(!is_public_name(&wire_name(name)), "{name}");
        }
        assert!(!is_public_name(&[5, b'a']), "malformed");
    }
}
