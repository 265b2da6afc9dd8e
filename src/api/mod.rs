//! The HTTP sidecar: `GET /pairs`, `/status`, `/metrics` and `/healthz` on
//! every `http.listen` address (docs/interface.md, "HTTP sidecar").
//!
//! # Why hyper, and no router
//!
//! hyper 1 with only its `http1` and `server` features (plus hyper-util's
//! tokio glue and http-body-util's `Full`) is the HTTP/1.1 server that
//! everything else in Rust builds on, and it has what the safety rules need
//! built in: a cap on the request head (`max_buf_size`, `max_header_size`,
//! answered with 431), a header read timeout (slowloris; it runs while an
//! idle keep-alive connection waits for its next request too) and graceful
//! shutdown. A framework would add a router for four fixed paths and, for
//! axum, tower and its layers: binary size on a home router for nothing
//! the sidecar uses. HTTP/2 is left out for the same reason (curl and every
//! client library speak HTTP/1.1 to `http://` URLs).
//!
//! # Who may ask
//!
//! `/pairs` resolves names through the daemon's upstreams and shows the
//! host's own addresses, so the sidecar answers only clients inside
//! `http.allow` (default: loopback, like `dns.allow`), checked against the
//! peer address of each connection as it is accepted, before anything
//! else: a client outside gets a fixed `403 Forbidden` at once, without
//! its request being read, a slot taken, a task spawned or a name looked
//! up (like the busy answer below; a client whose request was already sent
//! may see a reset after the 403). The check is per connection because the
//! peer address is all it needs and it is known at the accept: refusing
//! there costs one write, where refusing per request would first give a
//! refused client a slot, which could push an allowed client's waiting
//! connection out (see `slots`), and a task that reads its head. Every
//! path gets the 403, `/healthz` too: an outside health checker is let in
//! by listing its address, as for anything else. After a reload narrows
//! `http.allow`, each request on a connection accepted before is checked
//! again and gets a 403 that closes the connection. An IPv4-mapped peer
//! (`::ffff:a.b.c.d`) counts as its IPv4 address ([`crate::config::allows`]).
//! The `Host`/`Origin` guard (`guard`) runs after, on each request.
//!
//! Every 403 the sidecar sends counts in `getapr_limits_hit_total{limit=
//! "http_forbidden"}`, every 503 in `{limit="http_busy"}`.
//!
//! # Limits
//!
//! They keep the sidecar answering, and its memory small, whatever its
//! clients do; the DNS path shares nothing with it but the runtime.
//!
//! - Request head: 8 KiB ([`MAX_HEAD`]); beyond it hyper answers 431 and
//!   closes the connection: nothing more than that is buffered or read.
//! - Header read timeout: 10 s ([`Limits::header_timeout`]), also for an
//!   idle keep-alive connection; then the connection is closed.
//! - At most 64 connections at once over all listen addresses
//!   ([`Limits::connections`]): with 8 KiB of head each, about 0.5 MiB of
//!   buffers, plus the answers being written. A connection *waits* while
//!   its request head has not all come (from the accept, and again after
//!   each answer on a keep-alive connection), and is *busy* while its
//!   request is answered. When a connection arrives at the cap, the one
//!   that has waited longest for its head gives its slot up (the crate's
//!   `slots`, shared with DNS over TCP; for HTTP a slowloris head counts
//!   as waiting like an idle keep-alive connection, since hyper does not
//!   tell how much of a head came): a slowloris client, however slowly it
//!   trickles, or an idle keep-alive one cannot keep a client whose
//!   request comes at once from being answered. nginx does the same when `worker_connections` run out (it
//!   closes its oldest idle keep-alive connections). The connection that
//!   gives way gets the busy answer below if it sent no complete head yet,
//!   and is closed without a word if it was answered and idles (HTTP/1.1
//!   lets a server close an idle connection, RFC 9112 §9.6; clients retry
//!   on a fresh one). Each accepted connection reads its head before the
//!   next is accepted, so a burst of connections does not evict a client
//!   whose request arrived with its connection.
//! - Only when all 64 are busy does a new connection get a fixed
//!   `503 Service Unavailable` with `Retry-After: 1` and `Connection:
//!   close` at once, without reading its request: reading and parsing is
//!   the work the cap exists to bound, and a client sees why (rather than a
//!   connection that hangs in the backlog). A client whose request was
//!   already sent may see a reset after the 503.
//! - `/pairs` is the one route that waits (for the upstreams): at most 8
//!   are worked on at once ([`Limits::pairs`]) and 24 more wait in line,
//!   first come first served ([`Limits::pairs_queue`]); beyond that
//!   `/pairs` gets 503 with `Retry-After: 1` at once. So `/pairs` keeps at
//!   most 32 connections busy, and `/healthz`, `/status` and `/metrics`,
//!   which never wait, always find a slot: a `/pairs` flood never delays
//!   them.
//! - Only `GET` (405 with `Allow: GET`); the guard runs before routing.
//! - `/pairs` costs at most one lookup per family, through the daemon's own
//!   cache and upstreams ([`crate::dns::server::Shared::lookup`], merged with
//!   identical queries in flight), and never starts a probe: it reads the
//!   published verdicts.
//!
//! `tests/sidecar_abuse.rs` holds the sidecar to this: 200 slowloris
//! clients, heads of 1 MiB and 1,000 concurrent `/pairs` (and as many from
//! outside `http.allow`, which must cause no lookup), while `/healthz` and
//! DNS queries must be answered at once.

pub mod guard;
pub mod json;
pub mod query;
mod routes;

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::Synthesize;
use crate::dns::server::Shared;
use crate::inventory::Snapshot;
use crate::metrics::Limit;
use crate::slots::Slots;

/// The largest request head (request line and headers) read.
pub const MAX_HEAD: usize = 8 * 1024;

/// The sidecar's resource limits (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a request head may take to arrive, from the moment the
    /// connection waits for it.
    pub header_timeout: Duration,
    /// Connections served at once, over all listen addresses.
    pub connections: usize,
    /// `/pairs` requests worked on at once.
    pub pairs: usize,
    /// `/pairs` requests waiting in line for one of those; more get 503.
    /// With [`Limits::pairs`] well below [`Limits::connections`], so that
    /// `/pairs` cannot hold every connection busy.
    pub pairs_queue: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            connections: 64,
            pairs: 8,
            pairs_queue: 24,
        }
    }
}

/// What the sidecar's listeners share; replaced parts on reload.
#[derive(Debug)]
pub struct Api {
    shared: Arc<Shared>,
    limits: Limits,
    slots: Arc<Slots>,
    /// Permits to wait for a [`Api::pairs_running`] permit: the line.
    pairs_line: Semaphore,
    /// Permits to work on a `/pairs` request.
    pairs_running: Semaphore,
    /// The sidecar's listen addresses (as configured and as bound), which
    /// the guard accepts as `Host`.
    hosts: ArcSwap<Vec<IpAddr>>,
    /// `http.allow`: the clients answered at all.
    allow: ArcSwap<Vec<IpNet>>,
    /// `probe.interfaces` and `probe.exclude_interfaces`, for the inventory
    /// `/pairs` reads itself while probing is off.
    interfaces: ArcSwap<(Vec<String>, Vec<String>)>,
    /// That inventory, read at most every [`INVENTORY_TTL`].
    inventory: tokio::sync::Mutex<Option<(Instant, Arc<Snapshot>)>>,
    /// The family the RTT rule put first in the last `/pairs` answer that
    /// had both (4 or 6; 0: RFC 6724 chose), so that a change is logged
    /// once, not with every answer.
    rtt_lead: AtomicU8,
    /// `dns64.synthesize`, for `/status` (0 auto, 1 on, 2 off).
    dns64: AtomicU8,
}

/// How long `/pairs` reuses the host's inventory when it reads it itself
/// (the probe engine's watch polls every 2 s too).
const INVENTORY_TTL: Duration = Duration::from_secs(2);

impl Api {
    pub fn new(shared: Arc<Shared>, limits: Limits) -> Api {
        Api {
            shared,
            limits,
            slots: Slots::new(),
            pairs_line: Semaphore::new(limits.pairs + limits.pairs_queue),
            pairs_running: Semaphore::new(limits.pairs),
            hosts: ArcSwap::from_pointee(Vec::new()),
            // Nobody until the daemon sets `http.allow`: a sidecar wired
            // without it refuses rather than answers everyone.
            allow: ArcSwap::from_pointee(Vec::new()),
            interfaces: ArcSwap::from_pointee((Vec::new(), Vec::new())),
            inventory: tokio::sync::Mutex::new(None),
            rtt_lead: AtomicU8::new(0),
            dns64: AtomicU8::new(0),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The addresses the guard accepts as `Host` besides loopback (and the
    /// connection's own).
    pub fn hosts(&self) -> Vec<IpAddr> {
        self.hosts.load().to_vec()
    }

    /// Replaces [`Api::hosts`].
    pub fn set_hosts(&self, hosts: Vec<IpAddr>) {
        self.hosts.store(Arc::new(hosts));
    }

    /// `http.allow` as set last.
    pub fn allow(&self) -> Vec<IpNet> {
        self.allow.load().to_vec()
    }

    /// Replaces `http.allow`: new connections are checked against it at
    /// once, and so is each next request on those already open.
    pub fn set_allow(&self, allow: Vec<IpNet>) {
        self.allow.store(Arc::new(allow));
    }

    /// Whether `peer` is inside `http.allow`.
    fn allows(&self, peer: IpAddr) -> bool {
        crate::config::allows(&self.allow.load(), peer)
    }

    /// Answers a connection with one of the fixed answers below and closes
    /// it, counting it.
    fn refuse(&self, stream: TcpStream, fixed: Fixed) {
        let (answer, limit) = match fixed {
            Fixed::Forbidden => (FORBIDDEN, Limit::HttpForbidden),
            Fixed::Busy => (BUSY, Limit::HttpBusy),
        };
        self.shared.metrics.limit_hit(limit);
        write_and_close(stream, answer);
    }

    /// `dns64.synthesize`, which `/status` shows with whether the stub
    /// synthesizes now.
    pub fn set_dns64(&self, mode: Synthesize) {
        let code = match mode {
            Synthesize::Auto => 0,
            Synthesize::On => 1,
            Synthesize::Off => 2,
        };
        self.dns64.store(code, std::sync::atomic::Ordering::Relaxed);
    }

    /// `dns64.synthesize` as set last.
    pub fn dns64(&self) -> Synthesize {
        match self.dns64.load(std::sync::atomic::Ordering::Relaxed) {
            1 => Synthesize::On,
            2 => Synthesize::Off,
            _ => Synthesize::Auto,
        }
    }

    /// The interface filter of `[probe]`, applied to the inventory `/pairs`
    /// reads while probing is off.
    pub fn set_interfaces(&self, include: Vec<String>, exclude: Vec<String>) {
        self.interfaces.store(Arc::new((include, exclude)));
        // The next request reads the inventory again, through the new filter.
        if let Ok(mut cached) = self.inventory.try_lock() {
            *cached = None;
        }
    }
}

/// Accepts connections on `listener` until `stop`; each is served in its
/// own task (tracked by the daemon's drain), within [`Limits`].
pub async fn serve(api: Arc<Api>, listener: TcpListener, stop: CancellationToken) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(api.limits.header_timeout)
        .max_buf_size(MAX_HEAD)
        .max_header_size(MAX_HEAD)
        .keep_alive(true);
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: wait instead of spinning.
                    tracing::warn!("http: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // First, before the connection costs anything more.
        let peer = peer.ip();
        if !api.allows(peer) {
            tracing::debug!("http: {peer} is outside http.allow: 403");
            api.refuse(stream, Fixed::Forbidden);
            continue;
        }
        let admission = api.slots.admit(api.limits.connections, Instant::now());
        if admission.evicted.is_some() {
            tracing::debug!(
                "http: at the connection cap, the longest waiting connection gives way"
            );
        }
        let Some(slot) = admission.slot else {
            tracing::debug!("http: every connection is busy: 503");
            api.refuse(stream, Fixed::Busy);
            continue;
        };
        let local = stream.local_addr().ok().map(|a| a.ip());
        let api = Arc::clone(&api);
        let stop = stop.clone();
        let builder = builder.clone();
        let tracker = api.shared.tracker.clone();
        tracker.spawn(async move {
            let slot = Arc::new(slot);
            let service = service_fn(|req| {
                let api = Arc::clone(&api);
                let slot = Arc::clone(&slot);
                async move {
                    let Some(_busy) = slot.busy() else {
                        // Evicted as the head came in: the task drops the
                        // connection as soon as it sees that, so this
                        // answer may or may not go out first (it counts
                        // either way: the cap bit).
                        return Ok::<_, Infallible>(api.gone());
                    };
                    Ok(api.respond(req, local, peer).await)
                }
            });
            let mut conn = builder.serve_connection(TokioIo::new(stream), service);
            let result = tokio::select! {
                r = &mut conn => r,
                () = slot.evicted() => {
                    // Nothing was written on a connection that sent no
                    // head yet: it gets the busy answer. One that was
                    // answered and idles is closed, as keep-alive allows.
                    if !slot.asked() {
                        api.refuse(conn.into_parts().io.into_inner(), Fixed::Busy);
                    }
                    return;
                }
                () = stop.cancelled() => {
                    // Finishes the request in flight, closes an idle one.
                    std::pin::Pin::new(&mut conn).graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!("http: connection ended: {e}");
            }
        });
        // The new connection reads its head (most clients send it with
        // the connection) before the next one can take its slot.
        tokio::task::yield_now().await;
    }
}

/// The fixed answers, written to a connection instead of serving it.
#[derive(Debug, Clone, Copy)]
enum Fixed {
    /// Its peer is outside `http.allow`: [`FORBIDDEN`].
    Forbidden,
    /// Every connection is busy, or this one gave way before its head
    /// came: [`BUSY`].
    Busy,
}

/// The answer beyond the connection cap, and to a connection that gives
/// up its slot before its head came, written without reading anything.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
connection: close\r\n\
retry-after: 1\r\n\
content-length: 49\r\n\
\r\n\
{\"error\": \"too many connections to the sidecar\"}\n";

/// Why a client outside `http.allow` is refused, also in the 403 of a
/// request on a connection accepted before a reload narrowed it.
const NOT_ALLOWED: &str = "this client's address is not in http.allow";

/// The answer to a connection from outside `http.allow`, written without
/// reading anything; its body is [`NOT_ALLOWED`].
const FORBIDDEN: &[u8] = b"HTTP/1.1 403 Forbidden\r\n\
content-type: application/json\r\n\
connection: close\r\n\
content-length: 56\r\n\
\r\n\
{\"error\": \"this client's address is not in http.allow\"}\n";

fn write_and_close(stream: TcpStream, answer: &[u8]) {
    // A fresh socket's send buffer is empty, so this small write completes
    // at once or not at all; nothing here waits.
    let _ = stream.try_write(answer);
    // What already arrived is read and dropped, so that closing sends a FIN
    // after the answer rather than a reset (a close with unread data resets).
    let mut sink = [0u8; 2048];
    for _ in 0..4 {
        match stream.try_read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head and the body of a fixed answer, its length checked.
    fn split(answer: &[u8]) -> (&str, &str) {
        let text = std::str::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len(), "{head}");
        (head, body)
    }

    #[test]
    fn the_busy_answer_is_well_formed() {
        let (head, body) = split(BUSY);
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert_eq!(
            body,
            json::error("too many connections to the sidecar") + "\n"
        );
    }

    #[test]
    fn the_forbidden_answer_is_well_formed() {
        let (head, body) = split(FORBIDDEN);
        assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        // The same words as the 403 a request gets after a reload.
        assert_eq!(body, json::error(NOT_ALLOWED) + "\n");
    }
}
