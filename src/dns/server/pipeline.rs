//! A query's path, top to bottom: [`Shared::triage`] answers what it can
//! without awaiting (ACL, error answers, cache hits, recently failed
//! names); a miss goes to [`Shared::submit`], which joins it to the flight
//! for its key or starts one; the flight's task resolves once through the
//! upstreams (serving a stale answer to clients that waited too long),
//! rewrites the reply under the verdicts (DNS64's synthesis included,
//! [`view`](super::view)) and renders it for every waiter.

use crate::sync::lock;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Shared;
use super::lookup::DAEMON;
use super::view::{Cached, Env, Stamp, View, age_secs, dns64_prefixes, view_from_cache};
use super::waiters::{Resolution, Sink, Waiter};
use crate::dns::cache::{self, Key};
use crate::dns::flight::{Admission, Limits};
use crate::dns::upstream::{Failure, Pool};
use crate::dns::wire::{self, Header, Query, Reply, Shape, rcode};
use crate::metrics::Limit;

/// RFC 8767 §5: with a stale answer at hand, a client waits this long for
/// the upstreams before it gets the stale one (the RFC's "client response
/// timer": 1.8 s, under the common 2 s stub timeout).
const CLIENT_RESPONSE_TIMER: Duration = Duration::from_millis(1800);
/// RFC 8767 §4: the TTL of a stale answer.
const STALE_TTL: u32 = 30;

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

/// What the queries of one batch read alike, read once for all of them: the
/// settings, the verdicts and the clock (a batch is a few microseconds of
/// work), the last client's standing with `dns.allow`; and what they add to
/// the metrics, added once when the batch is done ([`Shared::settle`]).
#[derive(Debug)]
pub(super) struct Moment {
    settings: arc_swap::Guard<Arc<super::Settings>>,
    verdicts: arc_swap::Guard<Arc<crate::probe::verdicts::Verdicts>>,
    stamp: Stamp,
    now: Instant,
    /// The last client asked about and whether `dns.allow` lets it in.
    allowed: Option<(IpAddr, bool)>,
    hits: u64,
    misses: u64,
    /// Answers counted but not yet added: a run of one (rcode, qtype)
    /// pair, which in a batch is mostly a single pair.
    answers: Option<(u16, u16, u64)>,
}

impl Shared {
    /// A [`Moment`] for the messages received now.
    pub(super) fn moment(&self) -> Moment {
        let settings = self.settings.load();
        let verdicts = self.verdicts.load();
        let stamp = Stamp::new(&verdicts, &settings);
        Moment {
            settings,
            verdicts,
            stamp,
            now: Instant::now(),
            allowed: None,
            hits: 0,
            misses: 0,
            answers: None,
        }
    }

    /// Adds what a [`Moment`]'s queries counted to the metrics.
    pub(super) fn settle(&self, moment: Moment) {
        if moment.hits > 0 {
            self.metrics.cache_hits.inc_by(moment.hits);
        }
        if moment.misses > 0 {
            self.metrics.cache_misses.inc_by(moment.misses);
        }
        if let Some((rcode, qtype, n)) = moment.answers {
            self.metrics.queries_by(rcode, qtype, n);
        }
    }

    /// Decides on a message without awaiting: the error answers, the ACL and
    /// cache hits are written to `out` at once.
    pub fn triage(&self, packet: &[u8], peer: IpAddr, udp: bool, out: &mut Vec<u8>) -> Step {
        let mut moment = self.moment();
        let step = self.triage_at(&mut moment, packet, peer, udp, out);
        self.settle(moment);
        step
    }

    /// [`Self::triage`] for one message of a batch read at `moment`.
    pub(super) fn triage_at(
        &self,
        moment: &mut Moment,
        packet: &[u8],
        peer: IpAddr,
        udp: bool,
        out: &mut Vec<u8>,
    ) -> Step {
        let Some(header) = Header::parse(packet) else {
            return Step::Drop;
        };
        // A reply sent to a server is never answered: answering could start
        // a loop between two servers (RFC 1035 §4.1.1 QR).
        if header.qr() {
            return Step::Drop;
        }
        let settings = &*moment.settings;
        let cap = udp.then_some(settings.udp_cap);
        let query = Query::parse(packet);
        // The error answers carry the question when there is a readable one.
        let shape = match &query {
            Ok(q) => q.shape(cap),
            Err(_) => wire::header_shape(&header),
        };
        let qtype = query.as_ref().map_or(0, |q| q.parts().1);
        let allowed = match moment.allowed {
            Some((last, allowed)) if last == peer => allowed,
            _ => {
                let allowed = crate::config::allows(&settings.allow, peer);
                moment.allowed = Some((peer, allowed));
                allowed
            }
        };
        if !allowed {
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
        let now = moment.now;
        let stamp = moment.stamp;
        let mut cache = lock(&self.cache);
        let Some((entry, age)) = cache.get(&key, now) else {
            moment.misses += 1;
            // A name that failed lately, with no stale answer to give, gets
            // SERVFAIL here: clients retrying it cost no flight (RFC 9520).
            if self.failed_recently(&key, now, settings)
                && (settings.serve_stale.is_zero()
                    || cache.get_stale(&key, now, settings.serve_stale).is_none())
                // DNS64 answers a failed AAAA lookup from the A records
                // (RFC 6147 §5.1.2), and a failed PTR under a prefix from
                // in-addr.arpa, which the flight looks up.
                && (!crate::dns::dns64::answers_failures(qtype)
                    || dns64_prefixes(&moment.verdicts, settings).is_empty())
            {
                self.error_answer(&shape, 0, rcode::SERVFAIL, qtype, out);
                return Step::Reply;
            }
            return Step::Forward(key);
        };
        moment.hits += 1;
        if let Some((s, view)) = &entry.view
            && *s == stamp
            && view.holds(now)
        {
            view.reply.render(&shape, age_secs(age), out);
            moment.count(&self.metrics, view.reply.rcode(), qtype);
            if let Some(rewrite) = view.rewrite {
                self.metrics.rewritten(rewrite);
            }
            if view.synthesized {
                self.metrics.dns64_synthesized(qtype);
            }
            return Step::Reply;
        }
        // The verdicts moved since this entry was last answered from (or
        // the answer DNS64 made it from ran out).
        let upstream = Arc::clone(&entry.reply);
        let env = Env::new(&moment.verdicts, settings, stamp);
        match view_from_cache(&mut cache, &key, &upstream, age_secs(age), &env, now) {
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
    /// run out ([`flight`](crate::dns::flight)).
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
        let packet: Arc<[u8]> = packet.into();
        let waiter = Waiter {
            packet: Arc::clone(&packet),
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
                    packet,
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
}

/// One lookup in flight: its task resolves the key once and answers every
/// waiter; with an expired answer at hand, a client that has waited
/// [`CLIENT_RESPONSE_TIMER`] gets that one meanwhile (RFC 8767 §5) while
/// the lookup goes on to refresh the cache.
struct Flight {
    shared: Arc<Shared>,
    pool: Arc<Pool>,
    key: Key,
    id: u64,
    packet: Arc<[u8]>,
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
            match cache.get_fresh_or_stale(&self.key, now, settings.serve_stale) {
                Some((e, age, true)) => (Some((Arc::clone(&e.reply), age_secs(age))), None),
                Some((e, _, false)) => (None, Some(Arc::new(e.reply.stale(STALE_TTL)))),
                None => (None, None),
            }
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
                    beside = shared.other_family_beside(&self.key, &settings);
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
}

impl Shared {
    /// Asks the upstreams and caches the answer. A name whose resolution
    /// failed less than `dns.failure_cache_s` ago fails again at once,
    /// without a query (RFC 9520 §3: no retry storm against dead
    /// upstreams).
    async fn resolve(&self, pool: &Pool, key: &Key, packet: &[u8]) -> Resolution {
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

impl Flight {
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
        let mut clients = waiters;
        for w in clients.extract_if(.., |w| !w.is_client()) {
            if let Sink::Lookup(tx) = w.to {
                let _ = tx.send(ending.clone().map(|(reply, _)| reply));
            }
        }
        if clients.is_empty() {
            return;
        }
        let settings = shared.settings.load_full();
        let (view, age) = match (&ending, stale) {
            (Ok((reply, age)), _) => (
                shared.view(&self.key, reply, *age, &settings, beside).await,
                *age,
            ),
            (Err(_), Some(stale)) => {
                let view = match &stale.view {
                    Some(view) => view.clone(),
                    None => {
                        let view = shared
                            .stale_view(&self.key, &stale.reply, &settings, STALE_TTL)
                            .await;
                        stale.view = Some(view.clone());
                        view
                    }
                };
                shared.metrics.stale_answers.inc_by(clients.len() as u64);
                (view, 0)
            }
            (Err(e), None) => {
                // RFC 6147 §5.1.2: an AAAA lookup that failed counts as
                // one without AAAA records; a failed PTR under a NAT64
                // prefix is still answered from in-addr.arpa (§5.3.1).
                let made = match **e {
                    Failure::AllFailed => {
                        shared
                            .dns64_after_failure(&self.key, &self.packet, &settings, beside)
                            .await
                    }
                    Failure::Busy => None,
                };
                if let Some(view) = made {
                    (view, 0)
                } else {
                    for w in clients {
                        let mut out = Vec::new();
                        shared.servfail(&w.packet, w.udp(), &mut out);
                        w.to.send(out).await;
                    }
                    return;
                }
            }
        };
        let udp_cap = settings.udp_cap;
        // What a rendered answer takes at most besides the upstream's bytes
        // (an OPT record added for the client), so the answer is written
        // into one allocation rather than grown from empty three times.
        const ROOM: usize = 64;
        let capacity = view.reply.bytes().len() + ROOM;
        for w in clients {
            let Ok(query) = Query::parse(&w.packet) else {
                continue;
            };
            let mut out = Vec::with_capacity(capacity);
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

/// The wake-up time of an optional timer (a disabled `select!` branch
/// still builds its future).
fn wake(at: Option<Instant>) -> tokio::time::Instant {
    let at = at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
    tokio::time::Instant::from_std(at)
}

impl Shared {
    /// SERVFAIL for the query in `packet`, fitted to it, in `out`.
    fn servfail(&self, packet: &[u8], udp: bool, out: &mut Vec<u8>) {
        if let Ok(query) = Query::parse(packet) {
            let cap = udp.then(|| self.settings.load().udp_cap);
            let qtype = query.parts().1;
            self.error_answer(&query.shape(cap), 0, rcode::SERVFAIL, qtype, out);
        }
    }

    /// Writes `view` fitted to the client into `out`, and counts it.
    fn answer(&self, view: &View, qtype: u16, shape: &Shape<'_>, age: u32, out: &mut Vec<u8>) {
        view.reply.render(shape, age, out);
        self.metrics.query(view.reply.rcode(), qtype);
        if let Some(rewrite) = view.rewrite {
            self.metrics.rewritten(rewrite);
        }
        if view.synthesized {
            self.metrics.dns64_synthesized(qtype);
        }
    }

    /// Writes the stub's own error answer into `out`, and counts it.
    fn error_answer(&self, shape: &Shape<'_>, opcode: u8, rc: u16, qtype: u16, out: &mut Vec<u8>) {
        wire::error_reply(shape, opcode, rc, out);
        self.metrics.query(rc, qtype);
    }
}

impl Moment {
    /// Counts an answer sent: added to the run of its pair, else the run
    /// goes to the metrics and a new one starts (see [`Shared::settle`]).
    fn count(&mut self, metrics: &crate::metrics::Metrics, rcode: u16, qtype: u16) {
        match &mut self.answers {
            Some((r, q, n)) if *r == rcode && *q == qtype => *n += 1,
            pending => {
                if let Some((r, q, n)) = pending.replace((rcode, qtype, 1)) {
                    metrics.queries_by(r, q, n);
                }
            }
        }
    }
}
