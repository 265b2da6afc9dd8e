//! The UDP and TCP listeners: access control, limits, the cache-hit fast
//! path, and handing misses to the upstream pool.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cache::{self, Cache, Key};
use super::flight::{self, Admission, Limits};
use super::rewrite::{self, Context, Other};
use super::upstream::{Failure, Pool};
use super::wire::{self, Header, Query, Reply, Shape, rcode};
use crate::config::Filter;
use crate::metrics::{Limit, Metrics, Rewrite};
use crate::probe::driver::Input;
use crate::probe::verdicts::{State, Verdicts};
use crate::slots::{Busy, Slot, Slots, Waiting};
use crate::sync::lock;

/// RFC 7766 §6.2.3 asks servers to keep idle connections open "at least a
/// few seconds"; 10 s is what Unbound and dnsmasq use by default. It also
/// bounds the wait for a client to take each answer written to it.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries of one TCP connection being resolved at once; reading pauses
/// beyond this, so one client cannot pile up unbounded work.
const TCP_PIPELINE: usize = 128;
/// How long an answer whose every address would be filtered waits for the
/// name's other family (module doc of [`rewrite`]); past it the answer goes
/// out unfiltered. The other query usually runs beside the first one (see
/// [`Shared::forward`]), so this bounds a slow upstream, not the usual case.
const OTHER_FAMILY_DEADLINE: Duration = Duration::from_millis(500);
/// RFC 8767 §5: with a stale answer at hand, a client waits this long for
/// the upstreams before it gets the stale one (the RFC's "client response
/// timer": 1.8 s, under the common 2 s stub timeout).
const CLIENT_RESPONSE_TIMER: Duration = Duration::from_millis(1800);
/// RFC 8767 §4: the TTL of a stale answer.
const STALE_TTL: u32 = 30;
/// Names remembered as failed (RFC 9520 §3.2 wants the cache bounded).
const MAX_FAILURES: usize = 4096;

/// What the listeners read on every query; replaced whole on reload.
#[derive(Debug)]
pub struct Settings {
    pub allow: Vec<IpNet>,
    /// Cap on the UDP reply size offered to EDNS clients.
    pub udp_cap: u16,
    pub pool: Arc<Pool>,
    /// `dns.tcp_max_connections`, read as each connection is accepted.
    pub tcp_max_connections: usize,
    /// `[policy]`: how answers are rewritten and `/pairs` sorted.
    pub policy: crate::config::Policy,
    /// `dns.serve_stale_s`; zero = off.
    pub serve_stale: Duration,
    /// `dns.failure_cache_s`; zero = off.
    pub failure_cache: Duration,
}

/// State shared by every listener of the daemon.
#[derive(Debug)]
pub struct Shared {
    pub settings: ArcSwap<Settings>,
    pub cache: Mutex<Cache<Cached>>,
    /// Names whose resolution failed lately.
    failures: Mutex<Failures>,
    /// Lookups in flight, with the clients waiting on each.
    flights: Mutex<Flights>,
    /// What the probe engine knows, read without locks.
    pub verdicts: Arc<ArcSwap<Verdicts>>,
    /// Where answers' addresses go to be probed, while probing runs.
    pub probe_inputs: ArcSwapOption<mpsc::Sender<Input>>,
    /// Every task that owes a client an answer, so shutdown can drain them.
    pub tracker: TaskTracker,
    /// Counters of `/metrics`.
    pub metrics: Metrics,
    /// The TCP connections' slots, kept across reloads (the cap is in the
    /// settings).
    pub(crate) tcp_slots: Arc<Slots>,
}

/// A cache entry: the upstream's reply, and what the verdicts made of it
/// for one [`Stamp`] (recomputed when the stamp moves, not per answer).
#[derive(Debug)]
pub struct Cached {
    pub reply: Arc<Reply>,
    view: Option<(Stamp, View)>,
}

impl Cached {
    pub fn new(reply: Arc<Reply>) -> Cached {
        Cached { reply, view: None }
    }
}

/// An answer as the verdicts make it, and what they did to it (counted
/// each time it is sent, not each time it is computed).
#[derive(Debug, Clone)]
struct View {
    reply: Arc<Reply>,
    rewrite: Option<Rewrite>,
}

/// What a rewritten view depends on: the verdicts and the `[policy]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    generation: u64,
    filter: Filter,
    break_dnssec: bool,
}

impl Stamp {
    fn new(verdicts: &Verdicts, policy: &crate::config::Policy) -> Stamp {
        Stamp {
            generation: verdicts.generation,
            filter: policy.filter,
            break_dnssec: policy.break_dnssec,
        }
    }
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
        let verdicts = Arc::new(ArcSwap::from_pointee(Verdicts::default()));
        Shared {
            settings: ArcSwap::from_pointee(settings),
            cache: Mutex::new(Cache::new(cache_size)),
            failures: Mutex::new(Failures::default()),
            flights: Mutex::new(Flights::default()),
            // The verdict gauges read the snapshot at scrape time.
            metrics: Metrics::new(Arc::clone(&verdicts)),
            verdicts,
            probe_inputs: ArcSwapOption::empty(),
            tracker: TaskTracker::new(),
            tcp_slots: Slots::new(),
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
        let qtype = query.as_ref().map_or(0, |q| q.parts().1);
        if !crate::config::allows(&settings.allow, peer) {
            self.error_answer(&shape, header.opcode(), rcode::REFUSED, qtype, out);
            return Step::Reply;
        }
        if header.opcode() != 0 {
            self.error_answer(&shape, header.opcode(), rcode::NOTIMP, qtype, out);
            return Step::Reply;
        }
        let Ok(query) = query else {
            self.error_answer(&shape, 0, rcode::FORMERR, qtype, out);
            return Step::Reply;
        };
        // RFC 6891 §6.1.3: we speak EDNS version 0 only.
        if query.edns().is_some_and(|e| e.version > 0) {
            self.error_answer(&shape, 0, rcode::BADVERS, qtype, out);
            return Step::Reply;
        }
        let (name, qtype, qclass) = query.parts();
        let key = Key::new(name, qtype, qclass, query.do_bit(), header.cd());
        let now = Instant::now();
        let verdicts = self.verdicts.load();
        let stamp = Stamp::new(&verdicts, &settings.policy);
        let mut cache = lock(&self.cache);
        let Some((entry, age)) = cache.get(&key, now) else {
            self.metrics.cache_misses.inc();
            // A name that failed lately, with no stale answer to give, gets
            // SERVFAIL here: clients retrying it cost no flight (RFC 9520).
            if self.failed_recently(&key, now, &settings)
                && (settings.serve_stale.is_zero()
                    || cache.get_stale(&key, now, settings.serve_stale).is_none())
            {
                self.error_answer(&shape, 0, rcode::SERVFAIL, qtype, out);
                return Step::Reply;
            }
            return Step::Forward(key);
        };
        self.metrics.cache_hits.inc();
        if let Some((s, view)) = &entry.view
            && *s == stamp
        {
            self.answer(view, qtype, &shape, age_secs(age), out);
            return Step::Reply;
        }
        // The verdicts moved since this entry was last answered from.
        let upstream = Arc::clone(&entry.reply);
        let ctx = context(&verdicts, &settings.policy);
        match view_from_cache(&mut cache, &key, &upstream, &ctx, stamp, now) {
            Some(view) => {
                self.answer(&view, qtype, &shape, age_secs(age), out);
                Step::Reply
            }
            // Every address would go and the other family is not cached:
            // that needs a lookup, which is the slow path's business.
            None => Step::Forward(key),
        }
    }

    /// Resolves a cache miss (or a hit whose rewrite needs the name's other
    /// family) for one client and returns the answer fitted to it: the
    /// client waits on the flight for `key` like any other ([`Self::submit`]).
    /// Over TCP every query gets exactly one answer, so a query turned
    /// away gets SERVFAIL here.
    pub async fn forward(
        self: &Arc<Self>,
        pool: &Arc<Pool>,
        key: Key,
        packet: &[u8],
        client: IpAddr,
        udp: bool,
    ) -> Vec<u8> {
        let (tx, rx) = oneshot::channel();
        self.submit(pool, key, client, packet, Sink::Reply { tx, udp });
        match rx.await {
            Ok(out) => out,
            // The flight's task ended without answering (shutdown).
            Err(_) => {
                let mut out = Vec::new();
                self.servfail(packet, udp, &mut out);
                out
            }
        }
    }

    /// Hands a query that needs the upstreams (or the other family's
    /// answer) to the flight for its key: it joins the one in progress, or
    /// leads a new one whose task answers every client that waited on it.
    /// Never awaits; `client` is whom the flight counts against when slots
    /// run out ([`flight`]).
    pub fn submit(
        self: &Arc<Self>,
        pool: &Arc<Pool>,
        key: Key,
        client: IpAddr,
        packet: &[u8],
        to: Sink,
    ) {
        // An IPv4 client reaching an IPv6 socket shows up as ::ffff:a.b.c.d.
        let client = client.to_canonical();
        let now = Instant::now();
        let waiter = Waiter {
            packet: packet.into(),
            since: now,
            to,
        };
        let limits = Limits::for_slots(pool.max_inflight());
        let mut stop = None;
        let admission = lock(&self.flights).admit(
            &key,
            client,
            waiter,
            || {
                let (tx, rx) = oneshot::channel();
                stop = Some(rx);
                tx
            },
            limits,
            now,
        );
        match admission {
            Admission::Joined => {}
            Admission::Lead { id, evicted } => {
                if let Some(e) = evicted {
                    self.metrics.limit_hit(Limit::LookupEvicted);
                    tracing::debug!(
                        "lookups at dns.max_inflight: the oldest of the busiest client gives way"
                    );
                    // The evicted task answers these; if it has just ended
                    // (a race with its own finish), it looks here first.
                    let _ = e.cancel.send(e.waiters);
                }
                let Some(stop) = stop else { return };
                let flight = Flight {
                    shared: Arc::clone(self),
                    pool: Arc::clone(pool),
                    key,
                    id,
                    packet: packet.to_vec(),
                    client,
                };
                self.tracker.spawn(flight.run(stop));
            }
            Admission::Dropped(w) => {
                self.metrics.limit_hit(Limit::JoinerDropped);
                // Over UDP the client's retry is its timeout, as for a lost
                // packet (dnsmasq drops such queries too).
                if !matches!(w.to, Sink::Udp { .. }) {
                    self.refuse(w);
                }
            }
            Admission::Busy(w) => {
                self.metrics.limit_hit(Limit::LookupRefused);
                tracing::debug!("lookups at dns.max_inflight; answering SERVFAIL");
                self.refuse(w);
            }
        }
    }

    /// Answers a waiter turned away without a lookup: SERVFAIL to a client,
    /// [`Failure::Busy`] to the daemon's own lookup.
    fn refuse(&self, w: Waiter) {
        let mut out = Vec::new();
        match w.to {
            Sink::Lookup(tx) => {
                let _ = tx.send(Err(Arc::new(Failure::Busy)));
            }
            Sink::Udp { socket, peer } => {
                self.servfail(&w.packet, true, &mut out);
                // Never waits: a full socket buffer loses it like a drop.
                let _ = socket.try_send_to(&out, peer);
            }
            Sink::Reply { tx, udp } => {
                self.servfail(&w.packet, udp, &mut out);
                let _ = tx.send(out);
            }
        }
    }

    /// SERVFAIL for the query in `packet`, fitted to it, in `out`.
    fn servfail(&self, packet: &[u8], udp: bool, out: &mut Vec<u8>) {
        if let Ok(query) = Query::parse(packet) {
            let cap = udp.then(|| self.settings.load().udp_cap);
            let qtype = query.parts().1;
            self.error_answer(&query.shape(cap), 0, rcode::SERVFAIL, qtype, out);
        }
    }

    /// Whether `key`'s resolution failed less than `dns.failure_cache_s`
    /// ago.
    fn failed_recently(&self, key: &Key, now: Instant, settings: &Settings) -> bool {
        !settings.failure_cache.is_zero() && lock(&self.failures).recent(key, now)
    }

    /// Writes `view` fitted to the client into `out`, and counts it.
    fn answer(&self, view: &View, qtype: u16, shape: &Shape<'_>, age: u32, out: &mut Vec<u8>) {
        view.reply.render(shape, age, out);
        self.metrics.query(view.reply.rcode(), qtype);
        if let Some(rewrite) = view.rewrite {
            self.metrics.rewritten(rewrite);
        }
    }

    /// Writes the stub's own error answer into `out`, and counts it.
    fn error_answer(&self, shape: &Shape<'_>, opcode: u8, rc: u16, qtype: u16, out: &mut Vec<u8>) {
        wire::error_reply(shape, opcode, rc, out);
        self.metrics.query(rc, qtype);
    }

    /// When the verdicts already say the asked family cannot work, the
    /// answer is likely to be filtered, which needs the other family's
    /// answer: ask for it at once, beside the client's query, so the
    /// filtering costs no extra round trip.
    fn other_family_beside(
        self: &Arc<Self>,
        key: &Key,
        policy: &crate::config::Policy,
    ) -> Option<tokio::task::JoinHandle<Option<Arc<Reply>>>> {
        let other = rewrite::other_type(key.qtype())?;
        let verdicts = self.verdicts.load();
        let family = if key.qtype() == wire::rtype::A {
            verdicts.families.ipv4
        } else {
            verdicts.families.ipv6
        };
        if policy.filter != Filter::Auto || family != State::Failed || rewrite::exempt(key.qname())
        {
            return None;
        }
        let shared = Arc::clone(self);
        let name = key.qname().to_vec();
        let qclass = key.qclass();
        Some(tokio::spawn(async move {
            shared.lookup_wire(&name, other, qclass).await.ok()
        }))
    }

    /// The reply to send for `upstream` under the present verdicts: the
    /// cached view when it is current, else computed (asking for the other
    /// family when the rewrite needs it) and kept in the cache entry.
    async fn view(
        self: &Arc<Self>,
        key: &Key,
        upstream: &Arc<Reply>,
        policy: &crate::config::Policy,
        beside: Option<tokio::task::JoinHandle<Option<Arc<Reply>>>>,
    ) -> View {
        let verdicts = self.verdicts.load_full();
        let stamp = Stamp::new(&verdicts, policy);
        let ctx = context(&verdicts, policy);
        if let Some(view) = view_from_cache(
            &mut lock(&self.cache),
            key,
            upstream,
            &ctx,
            stamp,
            Instant::now(),
        ) {
            return view;
        }
        let Some(other_type) = rewrite::other_type(key.qtype()) else {
            return View {
                reply: Arc::clone(upstream),
                rewrite: None,
            };
        };
        let lookup = async {
            match beside {
                Some(task) => task.await.ok().flatten(),
                None => (self
                    .lookup_wire(key.qname(), other_type, key.qclass())
                    .await)
                    .ok(),
            }
        };
        let other = tokio::time::timeout(OTHER_FAMILY_DEADLINE, lookup)
            .await
            .ok()
            .flatten();
        let outcome = match &other {
            Some(o) => rewrite::rewrite(upstream, key.qtype(), key.do_bit(), &ctx, Other::Reply(o)),
            None => rewrite::rewrite(upstream, key.qtype(), key.do_bit(), &ctx, Other::Failed),
        };
        let view = into_view(outcome, upstream, key);
        // A view made without the other answer is not kept: the next
        // answer may have it.
        if other.is_some()
            && let Some(entry) = lock(&self.cache).peek_mut(key, Instant::now())
            && Arc::ptr_eq(&entry.reply, upstream)
        {
            entry.view = Some((stamp, view.clone()));
        }
        view
    }

    /// Asks the upstreams and caches the answer. A name whose resolution
    /// failed less than `dns.failure_cache_s` ago fails again at once,
    /// without a query (RFC 9520 §3: no retry storm against dead
    /// upstreams).
    async fn resolve(&self, pool: &Pool, key: &Key, packet: &[u8]) -> Outcome {
        let hold = {
            let settings = self.settings.load();
            if self.failed_recently(key, Instant::now(), &settings) {
                return Err(Arc::new(Failure::AllFailed));
            }
            settings.failure_cache
        };
        let reply = match pool.resolve(packet, &self.metrics.upstreams).await {
            Ok(reply) => Arc::new(reply),
            Err(e) => {
                if !hold.is_zero() {
                    let now = Instant::now();
                    lock(&self.failures).insert(key.clone(), now + hold, now);
                }
                return Err(Arc::new(e));
            }
        };
        if let Some(ttl) = cache::lifetime(&reply) {
            let entry = Cached::new(Arc::clone(&reply));
            if lock(&self.cache).insert(key.clone(), entry, Instant::now(), ttl) {
                self.metrics.cache_evictions.inc();
            }
        }
        Ok(reply)
    }
}

/// A client (or the daemon itself) waiting on a flight.
#[derive(Debug)]
pub struct Waiter {
    /// The client's query, for fitting the answer to it.
    packet: Box<[u8]>,
    /// When it arrived: with a stale answer at hand, a client waits
    /// [`CLIENT_RESPONSE_TIMER`] at most.
    since: Instant,
    to: Sink,
}

impl Waiter {
    /// A client (not the daemon's own lookup): it gets a rendered answer.
    fn is_client(&self) -> bool {
        !matches!(self.to, Sink::Lookup(_))
    }

    /// Whether its answer goes over UDP (and so is fitted to the UDP size).
    fn udp(&self) -> bool {
        matches!(self.to, Sink::Udp { .. } | Sink::Reply { udp: true, .. })
    }
}

impl Sink {
    /// Sends a client its answer (the daemon's own lookups get theirs
    /// from [`Flight::answer`] directly).
    async fn send(self, answer: Vec<u8>) {
        match self {
            Sink::Udp { socket, peer } => {
                let _ = socket.send_to(&answer, peer).await;
            }
            Sink::Reply { tx, .. } => {
                let _ = tx.send(answer);
            }
            Sink::Lookup(_) => {}
        }
    }
}

/// The wake-up time of an optional timer (a disabled `select!` branch
/// still builds its future).
fn wake(at: Option<Instant>) -> tokio::time::Instant {
    let at = at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
    tokio::time::Instant::from_std(at)
}

/// Where a waiter's answer goes.
#[derive(Debug)]
pub enum Sink {
    /// A UDP client: sent from the listening socket it came in on.
    Udp {
        socket: Arc<UdpSocket>,
        peer: SocketAddr,
    },
    /// A caller awaiting the rendered answer ([`Shared::forward`]); `udp`
    /// picks the size it is fitted to.
    Reply {
        tx: oneshot::Sender<Vec<u8>>,
        udp: bool,
    },
    /// The daemon's own lookup: the upstream's reply as it came.
    Lookup(oneshot::Sender<Outcome>),
}

/// A lookup's end, shared by every waiter of its flight.
pub type Outcome = Result<Arc<Reply>, Arc<Failure>>;

/// The flight table of [`Shared`]; a flight's task is stopped by sending
/// it the waiters it is to answer.
type Flights = flight::Table<Waiter, oneshot::Sender<Vec<Waiter>>>;

/// Whom the daemon's own lookups (the sidecar, STUN server names, NAT64
/// discovery) count against in the flight table: no client has it.
const DAEMON: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// One lookup in flight: its task resolves the key once and answers every
/// waiter; with an expired answer at hand, a client that has waited
/// [`CLIENT_RESPONSE_TIMER`] gets that one meanwhile (RFC 8767 §5) while
/// the lookup goes on to refresh the cache.
struct Flight {
    shared: Arc<Shared>,
    pool: Arc<Pool>,
    key: Key,
    id: u64,
    packet: Vec<u8>,
    /// The client that started it.
    client: IpAddr,
}

/// What a flight ended with: the reply and its age in the cache, or why
/// there is none.
type Ending = Result<(Arc<Reply>, u32), Arc<Failure>>;

impl Flight {
    async fn run(self, mut stop: oneshot::Receiver<Vec<Waiter>>) {
        let shared = &self.shared;
        let settings = shared.settings.load_full();
        let (cached, stale) = {
            let now = Instant::now();
            let mut cache = lock(&shared.cache);
            let fresh =
                (cache.get(&self.key, now)).map(|(e, age)| (Arc::clone(&e.reply), age_secs(age)));
            let stale = (fresh.is_none() && !settings.serve_stale.is_zero())
                .then(|| cache.get_stale(&self.key, now, settings.serve_stale))
                .flatten()
                .map(|(e, _)| Arc::new(e.reply.stale(STALE_TTL)));
            (fresh, stale)
        };
        let mut stale = stale.map(|reply| Stale { reply, view: None });
        let mut beside = None;
        let ending = match cached {
            Some(hit) => Ok(hit),
            None => {
                // A client's lookup only: the daemon's own lookups are
                // never rewritten, and one of them asking for the other
                // family would start a lookup that asks for this one,
                // without end when both fail at once.
                if self.client != DAEMON {
                    beside = shared.other_family_beside(&self.key, &settings.policy);
                }
                let resolution = shared.resolve(&self.pool, &self.key, &self.packet);
                tokio::pin!(resolution);
                loop {
                    let due = stale.as_ref().and_then(|_| self.first_due());
                    tokio::select! {
                        r = &mut resolution => break r.map(|reply| (reply, 0)),
                        waiters = &mut stop => {
                            // Evicted: its slot went to another lookup.
                            let waiters = waiters.unwrap_or_default();
                            self.answer(waiters, Err(Arc::new(Failure::Busy)), &mut stale, None).await;
                            return;
                        }
                        () = tokio::time::sleep_until(wake(due)), if due.is_some() => {
                            let cutoff = Instant::now().checked_sub(CLIENT_RESPONSE_TIMER);
                            let waiters = lock(&shared.flights).take(&self.key, self.id, |w| {
                                w.is_client() && cutoff.is_some_and(|c| w.since <= c)
                            });
                            self.answer(waiters, Err(Arc::new(Failure::AllFailed)), &mut stale, None).await;
                        }
                    }
                }
            }
        };
        let waiters = {
            let mut flights = lock(&shared.flights);
            let waiters = flights.finish(&self.key, self.id);
            if waiters.is_empty() {
                // Evicted as it finished: its waiters were sent here.
                stop.try_recv().unwrap_or_default()
            } else {
                waiters
            }
        };
        if let Ok((reply, 0)) = &ending
            && self.client != DAEMON
        {
            // Clients' answers only: the daemon's own lookups (STUN
            // servers, ipv4only.arpa) are no destinations to probe.
            shared.learn(&self.key, reply);
        }
        self.answer(waiters, ending, &mut stale, beside).await;
    }

    /// When the first client waiting on this flight has waited
    /// [`CLIENT_RESPONSE_TIMER`].
    fn first_due(&self) -> Option<Instant> {
        lock(&self.shared.flights).first_waiter(&self.key, self.id, |w| {
            w.is_client().then_some(w.since + CLIENT_RESPONSE_TIMER)
        })
    }

    /// Answers `waiters`: the reply (rewritten under the present verdicts,
    /// once for all of them), or on failure the stale answer when there is
    /// one, else SERVFAIL; the daemon's own lookups get the outcome as it is.
    async fn answer(
        &self,
        waiters: Vec<Waiter>,
        ending: Ending,
        stale: &mut Option<Stale>,
        beside: Option<tokio::task::JoinHandle<Option<Arc<Reply>>>>,
    ) {
        let shared = &self.shared;
        let mut clients = Vec::with_capacity(waiters.len());
        for w in waiters {
            match w.to {
                Sink::Lookup(tx) => {
                    let _ = tx.send(ending.clone().map(|(reply, _)| reply));
                }
                _ => clients.push(w),
            }
        }
        if clients.is_empty() {
            return;
        }
        let settings = shared.settings.load_full();
        let policy = &settings.policy;
        let (view, age) = match (&ending, stale) {
            (Ok((reply, age)), _) => (shared.view(&self.key, reply, policy, beside).await, *age),
            (Err(_), Some(stale)) => {
                let view = match &stale.view {
                    Some(view) => view.clone(),
                    None => {
                        let view = shared.view(&self.key, &stale.reply, policy, None).await;
                        stale.view = Some(view.clone());
                        view
                    }
                };
                shared.metrics.stale_answers.inc_by(clients.len() as u64);
                (view, 0)
            }
            (Err(_), None) => {
                for w in clients {
                    let mut out = Vec::new();
                    shared.servfail(&w.packet, w.udp(), &mut out);
                    w.to.send(out).await;
                }
                return;
            }
        };
        let udp_cap = settings.udp_cap;
        for w in clients {
            let Ok(query) = Query::parse(&w.packet) else {
                continue;
            };
            let mut out = Vec::new();
            let shape = query.shape(w.udp().then_some(udp_cap));
            shared.answer(&view, query.parts().1, &shape, age, &mut out);
            w.to.send(out).await;
        }
    }
}

/// An expired answer at hand for a flight, TTLs set to [`STALE_TTL`], and
/// its view, made the first time it is served.
struct Stale {
    reply: Arc<Reply>,
    view: Option<View>,
}

/// Names whose resolution failed, until when (RFC 9520 §3.2: resolvers
/// MUST cache resolution failures, for at least 1 s and at most 5 min).
/// Bounded: when full of live entries, a new failure is not remembered.
#[derive(Debug, Default)]
struct Failures {
    until: HashMap<Key, Instant>,
}

impl Failures {
    fn recent(&self, key: &Key, now: Instant) -> bool {
        self.until.get(key).is_some_and(|&until| now < until)
    }

    fn insert(&mut self, key: Key, until: Instant, now: Instant) {
        if self.until.len() >= MAX_FAILURES {
            self.until.retain(|_, t| *t > now);
            if self.until.len() >= MAX_FAILURES {
                return;
            }
        }
        self.until.insert(key, until);
    }
}

fn context<'a>(verdicts: &'a Verdicts, policy: &crate::config::Policy) -> Context<'a> {
    Context {
        verdicts,
        filter: policy.filter,
        break_dnssec: policy.break_dnssec,
    }
}

/// The view of `upstream` for `stamp`, from the entry when it is current,
/// else computed with the other family's answer from the cache and kept.
/// `None` when the rewrite needs the other family and the cache lacks it.
fn view_from_cache(
    cache: &mut Cache<Cached>,
    key: &Key,
    upstream: &Arc<Reply>,
    ctx: &Context<'_>,
    stamp: Stamp,
    now: Instant,
) -> Option<View> {
    if let Some(entry) = cache.peek_mut(key, now)
        && Arc::ptr_eq(&entry.reply, upstream)
        && let Some((s, view)) = &entry.view
        && *s == stamp
    {
        return Some(view.clone());
    }
    let (qtype, do_bit) = (key.qtype(), key.do_bit());
    let mut outcome = if rewrite::exempt(key.qname()) {
        rewrite::Outcome::Same
    } else {
        rewrite::rewrite(upstream, qtype, do_bit, ctx, Other::Unasked)
    };
    if outcome == rewrite::Outcome::NeedOther {
        let other_type = rewrite::other_type(qtype)?;
        // The other family as a client asked it (same DO and CD), else as
        // the daemon asks it.
        let other = [
            Key::new(key.qname(), other_type, key.qclass(), do_bit, key.cd()),
            Key::new(key.qname(), other_type, key.qclass(), false, false),
        ]
        .iter()
        .find_map(|k| cache.peek_mut(k, now).map(|e| Arc::clone(&e.reply)))?;
        outcome = rewrite::rewrite(upstream, qtype, do_bit, ctx, Other::Reply(&other));
    }
    let view = into_view(outcome, upstream, key);
    if let Some(entry) = cache.peek_mut(key, now)
        && Arc::ptr_eq(&entry.reply, upstream)
    {
        entry.view = Some((stamp, view.clone()));
    }
    Some(view)
}

fn into_view(outcome: rewrite::Outcome, upstream: &Arc<Reply>, key: &Key) -> View {
    let (reply, rewrite) = match outcome {
        rewrite::Outcome::Same | rewrite::Outcome::NeedOther => (Arc::clone(upstream), None),
        rewrite::Outcome::Reordered(r) => (Arc::new(r), Some(Rewrite::Reordered)),
        rewrite::Outcome::Filtered {
            reply,
            removed,
            nodata,
            reason,
            why,
        } => {
            tracing::debug!(
                qtype = key.qtype(),
                removed,
                nodata,
                "answer filtered: {why}"
            );
            (Arc::new(reply), Some(Rewrite::Filtered(reason)))
        }
    };
    View { reply, rewrite }
}

impl Shared {
    /// The daemon's own lookups (STUN server names, NAT64 discovery, the
    /// sidecar): the same cache and upstreams as a client's query, no second
    /// resolver.
    pub async fn lookup(
        self: &Arc<Self>,
        name: &str,
        qtype: u16,
    ) -> Result<Arc<Reply>, LookupError> {
        let mut qname = Vec::with_capacity(64);
        wire::write_name(name, &mut qname).ok_or(LookupError::BadName)?;
        self.lookup_wire(&qname, qtype, wire::CLASS_IN).await
    }

    /// [`Shared::lookup`] of a name in wire format: upstream's reply as it
    /// came (never rewritten), from the cache when it is there.
    async fn lookup_wire(
        self: &Arc<Self>,
        qname: &[u8],
        qtype: u16,
        qclass: u16,
    ) -> Result<Arc<Reply>, LookupError> {
        let mut packet = Vec::with_capacity(HEADER_LEN_HINT + qname.len());
        Header {
            id: rand::random(),
            flags: wire::flag::RD,
            qdcount: 1,
            ancount: 0,
            nscount: 0,
            arcount: 0,
        }
        .write(&mut packet);
        packet.extend_from_slice(qname);
        packet.extend_from_slice(&qtype.to_be_bytes());
        packet.extend_from_slice(&qclass.to_be_bytes());
        let query = Query::parse(&packet).map_err(|_| LookupError::BadName)?;
        let (qname, _, qclass) = query.parts();
        let key = Key::new(qname, qtype, qclass, false, false);
        if let Some((entry, _)) = lock(&self.cache).get(&key, Instant::now()) {
            return Ok(Arc::clone(&entry.reply));
        }
        let pool = Arc::clone(&self.settings.load().pool);
        let (tx, rx) = oneshot::channel();
        self.submit(&pool, key, DAEMON, &packet, Sink::Lookup(tx));
        match rx.await {
            Ok(Ok(reply)) => Ok(reply),
            _ => Err(LookupError::Upstreams),
        }
    }
}

/// Header plus type and class.
const HEADER_LEN_HINT: usize = wire::HEADER_LEN + 4;

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
                let pool = Arc::clone(&shared.settings.load().pool);
                let to = Sink::Udp {
                    socket: Arc::clone(&socket),
                    peer,
                };
                shared.submit(&pool, key, peer.ip(), packet, to);
            }
        }
    }
}

/// Accepts TCP connections on `listener` until `stop`. A client outside
/// `dns.allow` is closed at once, before it takes a slot or a task. At
/// `dns.tcp_max_connections` a new connection takes the slot of one that
/// stalled in the middle of a message, else of the one idle longest; it is
/// closed only when every connection is busy (see the crate's `slots`).
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
        let Some(slot) = admit(&shared, peer.ip()) else {
            continue;
        };
        let shared2 = Arc::clone(&shared);
        let stop = stop.clone();
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        shared.tracker.spawn(async move {
            connection(shared2, rd, wr, peer.ip(), slot, stop).await;
        });
        // The new connection reads its first message (most clients send it
        // with the connection) before the next one can take its slot: in a
        // burst of connections at the cap, it is busy, not evicted.
        tokio::task::yield_now().await;
    }
}

/// The ACL, then a slot for a TCP connection from `peer`, each limit that
/// bites counted; `None` closes the connection.
fn admit(shared: &Shared, peer: IpAddr) -> Option<Slot> {
    let cap = {
        let settings = shared.settings.load();
        if !crate::config::allows(&settings.allow, peer) {
            shared.metrics.limit_hit(Limit::TcpNotAllowed);
            return None;
        }
        settings.tcp_max_connections
    };
    let admission = shared.tcp_slots.admit(cap, Instant::now());
    match admission.evicted {
        Some(Waiting::Stalled) => shared.metrics.limit_hit(Limit::TcpSlowEvicted),
        Some(Waiting::Idle) => shared.metrics.limit_hit(Limit::TcpIdleEvicted),
        None => {}
    }
    if admission.slot.is_none() {
        tracing::debug!(%peer, "tcp connections at their cap and all busy; closing");
        shared.metrics.limit_hit(Limit::TcpRefused);
    }
    admission.slot
}

/// One TCP connection (RFC 7766): length-prefixed messages, several queries
/// in flight, each answered as soon as it is ready. It ends when the client
/// closes, `stop` fires, nothing arrives for [`TCP_IDLE`], an answer is not
/// taken within [`TCP_IDLE`], or a new connection takes its `slot`.
///
/// The slot is told what the connection does: part of a message in
/// ([`Slot::partial`], once per message, not per read), a whole message
/// (busy until it is dealt with), each query resolved or answer queued
/// (busy until written), so that it is evicted only while waiting.
///
/// Generic over the two halves of the stream so the fuzz target
/// `tcp_framing` ([`super::fuzz`]) can drive it through an in-memory pipe
/// on a paused clock; the listener hands it a `TcpStream`'s owned halves.
pub(super) async fn connection<R, W>(
    shared: Arc<Shared>,
    mut rd: R,
    mut wr: W,
    peer: IpAddr,
    slot: Slot,
    stop: CancellationToken,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let slot = Arc::new(slot);
    let (answers, mut rx) = mpsc::channel::<Answer>(TCP_PIPELINE);
    let tx = Answers {
        tx: answers,
        slot: Arc::clone(&slot),
    };
    let writer = shared.tracker.spawn(async move {
        let mut framed = Vec::new();
        while let Some(answer) = rx.recv().await {
            frame(&answer.msg, &mut framed);
            // A client that does not read its answers keeps its slot busy:
            // it gets as long for each answer as for a query.
            match tokio::time::timeout(TCP_IDLE, wr.write_all(&framed)).await {
                Ok(Ok(())) => drop(answer),
                _ => return,
            }
        }
        let _ = wr.shutdown().await;
    });
    let pipeline = Arc::new(Pipeline {
        permits: Arc::new(Semaphore::new(TCP_PIPELINE)),
        slot: Arc::clone(&slot),
    });
    let mut out = Vec::new();
    loop {
        let read = async {
            // The first byte of a message starts its clock, whatever
            // trickles after it.
            let mut len = [0u8; 2];
            let n = rd.read(&mut len).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            slot.partial(Instant::now());
            if n == 1 {
                rd.read_exact(&mut len[1..]).await?;
            }
            let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
            rd.read_exact(&mut msg).await?;
            Ok::<_, std::io::Error>(msg)
        };
        let msg = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = slot.evicted() => break,
            // The writer gave up on the client.
            () = tx.tx.closed() => break,
            r = tokio::time::timeout(TCP_IDLE, read) => match r {
                Ok(Ok(m)) => m,
                _ => break,
            },
        };
        // Evicted as the message came in: the connection is closing.
        let Some(busy) = slot.whole() else {
            break;
        };
        match shared.triage(&msg, peer, false, &mut out) {
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
                    let reply = shared2.forward(&pool, key, &msg, peer, false).await;
                    if !reply.is_empty() {
                        let _ = tx.send(reply).await;
                    }
                    drop(permit);
                });
            }
        }
        drop(busy);
    }
    drop(tx);
    let _ = writer.await;
}

/// Where a TCP connection's answers go to be written: each keeps the
/// connection busy until it is written (or dropped).
#[derive(Debug, Clone)]
struct Answers {
    tx: mpsc::Sender<Answer>,
    slot: Arc<Slot>,
}

#[derive(Debug)]
struct Answer {
    msg: Vec<u8>,
    _busy: Option<Busy>,
}

impl Answers {
    /// Queues `msg`; the error when the writer is gone.
    async fn send(&self, msg: Vec<u8>) -> Result<(), mpsc::error::SendError<Answer>> {
        let answer = Answer {
            msg,
            _busy: self.slot.busy(),
        };
        self.tx.send(answer).await
    }
}

/// The [`TCP_PIPELINE`] queries of a connection being resolved at once;
/// each permit keeps the connection busy.
#[derive(Debug)]
struct Pipeline {
    permits: Arc<Semaphore>,
    slot: Arc<Slot>,
}

#[derive(Debug)]
struct Permit {
    _permit: OwnedSemaphorePermit,
    _busy: Option<Busy>,
}

impl Pipeline {
    async fn acquire_owned(self: Arc<Self>) -> Result<Permit, AcquireError> {
        let permit = Arc::clone(&self.permits).acquire_owned().await?;
        Ok(Permit {
            _permit: permit,
            _busy: self.slot.busy(),
        })
    }
}

/// `msg` with its length prefix (RFC 1035 §4.2.2) into `framed`. A message
/// over 65,535 bytes has no prefix: rendering never makes one (see
/// [`Reply::render`]), but should one come, the client gets SERVFAIL for
/// its query rather than no answer at all.
fn frame(msg: &[u8], framed: &mut Vec<u8>) {
    framed.clear();
    let servfail;
    let msg = if msg.len() > usize::from(u16::MAX) {
        tracing::warn!(
            len = msg.len(),
            "an answer too large for TCP; SERVFAIL instead"
        );
        let mut out = Vec::new();
        wire::servfail_for(msg, &mut out);
        servfail = out;
        &servfail[..]
    } else {
        msg
    };
    let len = u16::try_from(msg.len()).unwrap_or(u16::MAX);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(msg);
}
#[cfg(test)]
mod tests {
    use super::*;

    fn wire_name(dotted: &str) -> Vec<u8> {
        let mut out = Vec::new();
        wire::write_name(dotted, &mut out).unwrap();
        out
    }

    /// A daemon's state with no upstream, open to every client, one TCP
    /// slot.
    fn offline() -> Arc<Shared> {
        let settings = Settings {
            allow: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
            udp_cap: 1232,
            pool: Arc::new(Pool::new(Vec::new(), Duration::from_secs(1), 8)),
            tcp_max_connections: 1,
            policy: crate::config::Config::default().policy,
            serve_stale: Duration::ZERO,
            failure_cache: Duration::ZERO,
        };
        Arc::new(Shared::new(settings, 16))
    }

    /// `connection()` over an in-memory pipe of `buffer` bytes each way;
    /// the client's end, and the connection's task.
    fn connected(
        shared: &Arc<Shared>,
        buffer: usize,
    ) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<()>) {
        let (client, daemon) = tokio::io::duplex(buffer);
        let (rd, wr) = tokio::io::split(daemon);
        let slot = shared.tcp_slots.admit(1, Instant::now()).slot.unwrap();
        let peer = IpAddr::from([127, 0, 0, 1]);
        let stop = CancellationToken::new();
        let task = tokio::spawn(connection(Arc::clone(shared), rd, wr, peer, slot, stop));
        (client, task)
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_does_not_read_its_answers_is_closed() {
        let shared = offline();
        let (mut client, task) = connected(&shared, 64);
        // STATUS queries, answered NOTIMP at once: 14 bytes framed each,
        // more than the pipe holds, and the client reads none.
        let mut status = Vec::new();
        for id in 0..32u16 {
            status.extend_from_slice(&[0, 12]);
            status.extend_from_slice(&id.to_be_bytes());
            status.extend_from_slice(&[0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        }
        let (mut rd, mut wr) = tokio::io::split(&mut client);
        let _ = tokio::time::timeout(Duration::from_secs(1), wr.write_all(&status)).await;
        // The writer waits TCP_IDLE for the client, then gives up: the
        // connection ends and its slot is free, not held for ever.
        let ended = tokio::time::timeout(TCP_IDLE * 3, task).await;
        assert!(ended.is_ok(), "the connection still holds its slot");
        assert!(shared.tcp_slots.admit(1, Instant::now()).evicted.is_none());
        let mut got = Vec::new();
        let _ = rd.read_to_end(&mut got).await;
        // What the pipe had room for, and no more.
        assert!((1..=64).contains(&got.len()), "{} bytes", got.len());
    }

    #[tokio::test(start_paused = true)]
    async fn an_evicted_connection_ends_at_once() {
        let shared = offline();
        let (mut client, task) = connected(&shared, 512);
        tokio::task::yield_now().await;
        let newer = shared.tcp_slots.admit(1, Instant::now());
        assert!(newer.slot.is_some());
        assert_eq!(newer.evicted, Some(Waiting::Idle));
        // Well before the idle timeout.
        let ended = tokio::time::timeout(TCP_IDLE / 10, task).await;
        assert!(ended.is_ok(), "the evicted connection goes on");
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty(), "closed without a word");
    }

    #[test]
    fn a_message_too_large_to_frame_becomes_servfail() {
        let mut msg = Vec::new();
        Header {
            id: 0x1234,
            flags: wire::flag::QR | wire::flag::RD,
            qdcount: 1,
            ancount: 1,
            nscount: 0,
            arcount: 0,
        }
        .write(&mut msg);
        msg.extend_from_slice(&wire_name("big.example.test"));
        msg.extend_from_slice(&[0, 10, 0, 1]);
        let question = msg[wire::HEADER_LEN..].to_vec();
        msg.resize(70_000, 0);
        let mut framed = Vec::new();
        frame(&msg, &mut framed);
        let len = usize::from(u16::from_be_bytes([framed[0], framed[1]]));
        assert_eq!(len, framed.len() - 2, "one whole frame");
        let m = wire::Message::parse(&framed[2..]).unwrap();
        assert_eq!((m.header.id, m.header.rcode()), (0x1234, rcode::SERVFAIL));
        assert_eq!(m.question(), &question[..]);
        // What fits goes as it is.
        frame(&msg[..wire::MAX_MESSAGE], &mut framed);
        assert_eq!(&framed[..2], &[0xff, 0xff]);
        assert_eq!(&framed[2..], &msg[..wire::MAX_MESSAGE]);
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
