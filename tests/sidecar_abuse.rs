//! The HTTP sidecar under abuse. Slowloris
//! clients, oversize heads and a flood of `/pairs` must not take the
//! sidecar from anyone else: `/healthz` keeps answering 200 at once and
//! the DNS path keeps answering, while the abusers get 431 or the
//! documented 503 with `Retry-After` (src/api/mod.rs, "Limits"). A flood
//! from outside `http.allow` gets 403 and costs no lookup at all
//! (src/api/mod.rs, "Who may ask").
//!
//! The real daemon runs in process with DNS and HTTP on `127.0.0.1:0` and
//! a [`FakeUpstream`] on loopback. The tests run one at a time (their
//! latency and memory figures are their own) and print what they measured.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::fake::a_reply;
use common::http::{Response, Sidecar, exchange, exchange_from, limit_hits, sidecar, sidecar_with};
use common::{Action, FakeUpstream, query, udp_exchange};
use getapr::api::Limits;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// One test at a time: each measures latency and memory of the process.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// What `/healthz` may take, each time, while the sidecar is abused:
/// generous, for a loaded two-core machine (it takes well under 10 ms
/// when the sidecar is idle).
const HEALTHZ_BOUND: Duration = Duration::from_millis(500);

/// How long a client waits for any answer before calling it a hang.
const HANG: Duration = Duration::from_secs(15);

/// Names under this suffix answer after [`PAIRS_DELAY`]: each `/pairs`
/// of such a name costs the sidecar that long.
const SLOW: &str = ".slow.abuse.test.";
const PAIRS_DELAY: Duration = Duration::from_millis(100);

/// A fast upstream that answers every A query with 192.0.2.1, AAAA with
/// no records, names under [`SLOW`] after [`PAIRS_DELAY`].
async fn upstream() -> FakeUpstream {
    FakeUpstream::start(|q: &Message, _| {
        let name = q.queries[0].name().to_ascii();
        let reply = if q.queries[0].query_type() == RecordType::A {
            a_reply(q, 60, &["192.0.2.1".parse().unwrap()])
        } else {
            common::fake::reply_to(q)
        };
        if name.ends_with(SLOW) {
            vec![Action::Delay(PAIRS_DELAY), Action::Reply(reply)]
        } else {
            vec![Action::Reply(reply)]
        }
    })
    .await
}

// ---------------------------------------------------------------------------
// (a) Slowloris.

/// Slowloris clients, more than the connection cap (64).
const ATTACKERS: usize = 200;
/// How often each sends one more byte of its head.
const PACE: Duration = Duration::from_millis(1000);

/// What the slowloris clients saw.
#[derive(Debug, Default)]
struct Trickle {
    /// Connections opened.
    connects: AtomicUsize,
    /// Connections the server ended (with a 503, or closed).
    ended: AtomicUsize,
}

/// One slowloris client: connects and sends a request head one byte every
/// [`PACE`], never finishing it; when the server ends the connection, it
/// connects again a [`PACE`] later (a slow client, not a connect flood),
/// until `stop`.
async fn slowloris(addr: SocketAddr, stop: CancellationToken, seen: Arc<Trickle>) {
    let head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    while !stop.is_cancelled() {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            tokio::time::sleep(PACE).await;
            continue;
        };
        seen.connects.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 1024];
        // The filler byte never ends the head.
        for &byte in head.iter().chain(std::iter::repeat(&b'a')) {
            if stream.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                // An answer (503, 408) or a close: this connection is over.
                _ = stream.read(&mut buf) => break,
                () = tokio::time::sleep(PACE) => {}
            }
        }
        seen.ended.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PACE) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_starves_neither_healthz_nor_dns() {
    let _one = SERIAL.lock().await;
    let fake = upstream().await;
    let s = sidecar(fake.addr(), Limits::default()).await;
    let stop = CancellationToken::new();
    let seen = Arc::new(Trickle::default());
    let mut attackers = JoinSet::new();
    for _ in 0..ATTACKERS {
        attackers.spawn(slowloris(s.http, stop.clone(), Arc::clone(&seen)));
    }
    // Every attacker is connected and has trickled a few bytes: the cap is
    // full of slow heads, far from their 10 s header timeout.
    let started = Instant::now();
    while seen.connects.load(Ordering::Relaxed) < ATTACKERS {
        assert!(started.elapsed() < HANG, "{seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(2 * PACE).await;

    let (healthz, dns) = probe(&s, 60, Duration::from_millis(30)).await;
    stop.cancel();
    while attackers.join_next().await.is_some() {}
    println!(
        "slowloris: {ATTACKERS} clients, one byte every {PACE:?}: {} connections, {} ended by the server",
        seen.connects.load(Ordering::Relaxed),
        seen.ended.load(Ordering::Relaxed)
    );
    // The attack reached the cap: the server ended connections long
    // before their header timeout.
    let cap = Limits::default().connections;
    assert!(
        seen.ended.load(Ordering::Relaxed) >= ATTACKERS - cap,
        "{seen:?}"
    );
    // Each gave way before its head was in, and so got a counted 503
    // (the header timeout, whose 408 is not one, is far off).
    let busy = limit_hits(&s.handle, "http_busy");
    println!("slowloris: getapr_limits_hit_total{{limit=\"http_busy\"}} {busy}");
    assert!(
        busy >= seen.ended.load(Ordering::Relaxed) as u64,
        "{busy}: {seen:?}"
    );
    healthz.check("slowloris: /healthz");
    dns.report("slowloris: DNS");
    s.handle.shutdown();
}

// ---------------------------------------------------------------------------
// What the innocent clients see meanwhile.

/// Latencies of one kind of request.
#[derive(Debug, Default)]
struct Latencies {
    samples: Vec<Duration>,
    /// Requests that did not get their 200, and what they got.
    failures: Vec<String>,
}

impl Latencies {
    fn summary(&self) -> String {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let at = |q: f64| {
            sorted
                .get(((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or_default()
        };
        format!(
            "n={}, median {:?}, p99 {:?}, max {:?}",
            sorted.len(),
            at(0.5),
            at(0.99),
            at(1.0)
        )
    }

    fn report(&self, what: &str) {
        println!("{what}: {}", self.summary());
        assert!(
            self.failures.is_empty(),
            "{what}: {} failed: {:?}",
            self.failures.len(),
            self.failures
        );
        assert!(!self.samples.is_empty(), "{what}: nothing was asked");
    }

    /// Reports, then asserts that every request was fast.
    fn check(&self, what: &str) {
        self.report(what);
        let max = self.samples.iter().max().copied().unwrap_or_default();
        assert!(max < HEALTHZ_BOUND, "{what}: {}", self.summary());
    }
}

/// Asks `/healthz` and a DNS query of a new name `n` times, `gap` apart;
/// returns their latencies.
async fn probe(s: &Sidecar, n: usize, gap: Duration) -> (Latencies, Latencies) {
    let done = CancellationToken::new();
    done.cancel();
    probe_until(s, n, gap, &done).await
}

/// Like [`probe`], going on until `done` (at most `10 * n` rounds).
async fn probe_until(
    s: &Sidecar,
    n: usize,
    gap: Duration,
    done: &CancellationToken,
) -> (Latencies, Latencies) {
    static NAMES: AtomicUsize = AtomicUsize::new(0);
    let mut healthz = Latencies::default();
    let mut dns = Latencies::default();
    for round in 0.. {
        if round >= n && (done.is_cancelled() || round >= 10 * n) {
            break;
        }
        let asked = Instant::now();
        match exchange(s.http, &get_request("/healthz"), HANG).await {
            Ok(r) if r.status == 200 && r.body == "ok" => healthz.samples.push(asked.elapsed()),
            other => healthz.failures.push(format!("{other:?}")),
        }
        let name = format!("dns{}.abuse.test.", NAMES.fetch_add(1, Ordering::Relaxed));
        let asked = Instant::now();
        let reply = udp_exchange(s.dns, &query(&name, RecordType::A).bytes()).await;
        let took = asked.elapsed();
        match Message::from_vec(&reply) {
            Ok(m) if m.metadata.response_code == ResponseCode::NoError && !m.answers.is_empty() => {
                dns.samples.push(took);
            }
            other => dns.failures.push(format!("{name}: {other:?}")),
        }
        tokio::time::sleep(gap).await;
    }
    (healthz, dns)
}

fn get_request(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").into_bytes()
}

// ---------------------------------------------------------------------------
// (b) Oversize heads.

/// A request head of `size` bytes (a long header line), ended.
fn head_of(size: usize) -> Vec<u8> {
    let start = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Filler: ";
    let end = b"\r\nConnection: close\r\n\r\n";
    let mut head = start.to_vec();
    head.resize(size - end.len(), b'a');
    head.extend_from_slice(end);
    head
}

/// The process's resident set (VmRSS), in bytes: the daemon runs in it.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// Oversize heads sent at once, of 1 MiB each: if the sidecar kept them,
/// the process would grow by this many MiB.
const BIG_HEADS: usize = 64;
/// How much the process may grow meanwhile: a quarter of that.
const RSS_BOUND: usize = 16 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_heads_get_431_and_are_not_kept() {
    let _one = SERIAL.lock().await;
    let fake = upstream().await;
    let s = sidecar(fake.addr(), Limits::default()).await;
    for size in [16 << 10, 1 << 20] {
        let r = exchange(s.http, &head_of(size), HANG).await;
        let r = r.unwrap_or_else(|e| panic!("a {size}-byte head: {e}"));
        assert_eq!(r.status, 431, "a {size}-byte head: {r:?}");
    }

    let big: Arc<[u8]> = head_of(1 << 20).into();
    let before = rss();
    let peak = Arc::new(AtomicUsize::new(before));
    let sampling = CancellationToken::new();
    let sampler = tokio::spawn({
        let (peak, sampling) = (Arc::clone(&peak), sampling.clone());
        async move {
            while !sampling.is_cancelled() {
                peak.fetch_max(rss(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let mut senders = JoinSet::new();
    for _ in 0..BIG_HEADS {
        let (big, addr) = (Arc::clone(&big), s.http);
        senders.spawn(async move { exchange(addr, &big, HANG).await });
    }
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(outcome) = senders.join_next().await {
        let outcome = match outcome.expect("no panic") {
            Ok(r) => format!("{}", r.status),
            Err(e) => e,
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    sampling.cancel();
    sampler.await.unwrap();
    let (peak, after) = (peak.load(Ordering::Relaxed).max(rss()), rss());
    let mib = |b: usize| b as f64 / f64::from(1 << 20);
    println!(
        "oversize: {BIG_HEADS} heads of 1 MiB at once: {outcomes:?}; VmRSS before {:.1} MiB, peak {:.1} MiB, after {:.1} MiB",
        mib(before),
        mib(peak),
        mib(after)
    );
    assert_eq!(outcomes.get("431"), Some(&BIG_HEADS), "{outcomes:?}");
    assert!(
        peak.saturating_sub(before) < RSS_BOUND,
        "the sidecar kept what it should have refused: {:.1} MiB more",
        mib(peak - before)
    );

    let r = exchange(s.http, &get_request("/healthz"), HANG).await;
    assert_eq!(r.map(|r| r.status), Ok(200), "the next request is served");
    s.handle.shutdown();
}

// ---------------------------------------------------------------------------
// (c) A thousand `/pairs` at once.

const FLOOD: usize = 1000;

/// Raises this process's soft limit of open files to its hard limit: the
/// flood holds a thousand client sockets and the daemon's own.
fn raise_nofile() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit).expect("the soft limit can rise to the hard one");
    let open = getrlimit(Resource::Nofile).current;
    assert!(
        open.is_none_or(|n| n > 2 * FLOOD as u64),
        "RLIMIT_NOFILE {open:?}: too low for {FLOOD} connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_pairs_get_answers_and_healthz_stays_fast() {
    let _one = SERIAL.lock().await;
    raise_nofile();
    let fake = upstream().await;
    let s = sidecar(fake.addr(), Limits::default()).await;
    let mut flood = JoinSet::new();
    for i in 0..FLOOD {
        let addr = s.http;
        flood.spawn(async move {
            let request = get_request(&format!("/pairs?host=p{i}{SLOW}"));
            exchange(addr, &request, HANG).await
        });
    }
    let done = CancellationToken::new();
    let ((healthz, dns), busy_seen) = tokio::join!(
        probe_until(&s, 5, Duration::from_millis(20), &done),
        async {
            let started = Instant::now();
            let mut outcomes = Vec::with_capacity(FLOOD);
            while let Some(outcome) = flood.join_next().await {
                outcomes.push(outcome.expect("no panic"));
            }
            done.cancel();
            println!("pairs flood: all answered in {:?}", started.elapsed());
            tally(&outcomes)
        }
    );
    // Every 503 a client saw is counted (and any lost in a reset).
    let busy = limit_hits(&s.handle, "http_busy");
    println!("pairs flood: 503s seen {busy_seen}, counted {busy}");
    assert!(busy >= busy_seen, "{busy} < {busy_seen}");
    healthz.check("pairs flood: /healthz");
    dns.report("pairs flood: DNS");
    s.handle.shutdown();
}

/// Counts the flood's answers by status and message; every one must be a
/// 200 with pairs or a 503 with `Retry-After`. Returns the 503s.
fn tally(outcomes: &[Result<Response, String>]) -> u64 {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    for outcome in outcomes {
        let key = match outcome {
            Ok(r) if r.status == 200 && r.json()["pairs"].is_array() => "200".to_string(),
            Ok(r) if r.status == 503 && r.header("retry-after").is_some() => {
                format!("503 {}", r.json()["error"])
            }
            other => {
                wrong.push(format!("{other:?}"));
                "wrong".to_string()
            }
        };
        *counts.entry(key).or_default() += 1;
    }
    println!("pairs flood: {FLOOD} at once: {counts:?}");
    assert!(
        wrong.is_empty(),
        "{} wrong: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(counts.contains_key("200"), "none was served: {counts:?}");
    counts
        .iter()
        .filter(|(k, _)| k.starts_with("503"))
        .map(|(_, &n)| n as u64)
        .sum()
}

// ---------------------------------------------------------------------------
// (d) A flood from outside `http.allow`.

/// A client that `http.allow = ["127.0.0.1/32"]` leaves out (all of
/// 127.0.0.0/8 is this host's on Linux).
const OUTSIDER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_outside_http_allow_gets_403_and_no_lookup() {
    let _one = SERIAL.lock().await;
    raise_nofile();
    let fake = upstream().await;
    let s = sidecar_with(fake.addr(), Limits::default(), "allow = [\"127.0.0.1/32\"]").await;
    let before = rss();
    let mut flood = JoinSet::new();
    for i in 0..FLOOD {
        let addr = s.http;
        flood.spawn(async move {
            // Names the upstream answers after 100 ms: were they looked
            // up, the flood would hold `/pairs` turns and DNS lookups.
            let request = get_request(&format!("/pairs?host=out{i}{SLOW}"));
            exchange_from(Some(OUTSIDER), addr, &request, HANG).await
        });
    }
    let done = CancellationToken::new();
    let ((healthz, dns), outcomes) = tokio::join!(
        probe_until(&s, 5, Duration::from_millis(20), &done),
        async {
            let started = Instant::now();
            let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
            while let Some(outcome) = flood.join_next().await {
                let key = match outcome.expect("no panic") {
                    Ok(r) if r.status == 403 => "403".to_string(),
                    Ok(r) => format!("{} {}", r.status, r.body),
                    Err(e) => e,
                };
                *outcomes.entry(key).or_default() += 1;
            }
            done.cancel();
            println!("outsider flood: all refused in {:?}", started.elapsed());
            outcomes
        }
    );
    let forbidden = limit_hits(&s.handle, "http_forbidden");
    let asked: Vec<String> = fake
        .received_messages()
        .iter()
        .map(|m| m.queries[0].name().to_ascii())
        .filter(|n| n.starts_with("out"))
        .collect();
    println!(
        "outsider flood: {FLOOD} /pairs at once from {OUTSIDER}: {outcomes:?}; \
         counted {forbidden}; upstream queries for them {}; VmRSS before {:.1} MiB, after {:.1} MiB",
        asked.len(),
        before as f64 / f64::from(1 << 20),
        rss() as f64 / f64::from(1 << 20),
    );
    assert_eq!(outcomes.get("403"), Some(&FLOOD), "{outcomes:?}");
    assert_eq!(forbidden, FLOOD as u64);
    assert!(
        asked.is_empty(),
        "looked up: {:?}",
        &asked[..asked.len().min(5)]
    );
    assert_eq!(limit_hits(&s.handle, "http_busy"), 0);
    healthz.check("outsider flood: /healthz");
    dns.report("outsider flood: DNS");
    s.handle.shutdown();
}
