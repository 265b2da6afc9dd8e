//! The fault-injection suite: getapr in front of upstreams that
//! misbehave on purpose (the scriptable `FakeUpstream`, or the tiny
//! responders of `common::bin` for the tests of the binary under signals).
//!
//! Every test is one row of the fault table: it asserts the behaviour and
//! a bound, and records what it measured with [`row`] (printed, and
//! appended to `$CARGO_TARGET_TMPDIR/faults.txt`, which `.ci/run` shows).
//! Bounds are the documented ones where there is one; the measured figures are the
//! evidence, the bounds only catch a regression on a loaded machine.

mod common;

use std::collections::HashSet;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::bin::{config, free_port, responder, serve, signal, tempdir, wait_answer, wait_exit};
use common::client::{a_addrs, ip, parse, udp_exchange_within};
use common::fake::{a_reply, reply_to};
use common::{Action, FakeUpstream, Transport, config_toml, query, start_getapr, udp_exchange};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

/// Records one row of the fault table.
fn row(fault: &str, measured: &str, bound: &str) {
    let line = format!("| {fault} | {measured} | {bound} |");
    println!("FAULT {line}");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults.txt");
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{line}");
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Asks `name` A over UDP and returns the reply and how long it took.
async fn timed(getapr: SocketAddr, name: &str) -> (Message, Duration) {
    let (reply, took) = timed_bytes(getapr, name).await;
    (parse(&reply), took)
}

async fn timed_bytes(getapr: SocketAddr, name: &str) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let reply = udp_exchange(getapr, &query(name, RecordType::A).bytes()).await;
    (reply, started.elapsed())
}

/// Distinct queries an upstream received (a retransmission reuses its
/// query's ID, so it is the same query).
fn distinct_queries(upstream: &FakeUpstream) -> usize {
    upstream
        .received()
        .iter()
        .filter_map(|r| r.bytes.get(..2).map(|id| (r.transport, id.to_vec())))
        .collect::<HashSet<_>>()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_upstreams_servfail_within_the_bound() {
    let first = FakeUpstream::silent().await;
    let second = FakeUpstream::silent().await;
    let toml = config_toml(&[first.addr(), second.addr()], "timeout_ms = 300");
    let (_handle, getapr) = start_getapr(&toml).await;
    let (reply, took) = timed(getapr, "silent.example.test").await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    // Two tries of 300 ms, and slack for a loaded machine.
    assert!(took <= Duration::from_millis(600 + 400), "{took:?}");
    assert!(first.total_queries() >= 1 && second.total_queries() >= 1);
    row(
        "2 silent upstreams, timeout 300 ms: SERVFAIL",
        &ms(took),
        "2 × 300 ms",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_primary_then_the_secondary_answers_within_one_and_a_half_tries() {
    let silent = FakeUpstream::silent().await;
    let good = FakeUpstream::start(|q, _| vec![Action::Reply(a_reply(q, 300, &[ip(1)]))]).await;
    let toml = config_toml(&[silent.addr(), good.addr()], "timeout_ms = 500");
    let (_handle, getapr) = start_getapr(&toml).await;
    let (reply, took) = timed(getapr, "primary.example.test").await;
    assert_eq!(a_addrs(&reply), [ip(1)]);
    assert!(took <= Duration::from_millis(750), "{took:?}");
    row(
        "primary silent, secondary answers (timeout 500 ms)",
        &ms(took),
        "1.5 × 500 ms = 750 ms",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_and_refused_fail_over_and_failures_are_cached() {
    let servfail = FakeUpstream::rcode(ResponseCode::ServFail).await;
    let refused = FakeUpstream::rcode(ResponseCode::Refused).await;
    let good = FakeUpstream::start(|q, _| vec![Action::Reply(a_reply(q, 300, &[ip(2)]))]).await;
    let toml = config_toml(&[servfail.addr(), refused.addr(), good.addr()], "");
    let (_handle, getapr) = start_getapr(&toml).await;
    let (reply, over) = timed(getapr, "over.example.test").await;
    assert_eq!(a_addrs(&reply), [ip(2)]);
    assert_eq!((servfail.total_queries(), refused.total_queries()), (1, 1));

    // Nobody answers: SERVFAIL, then the failure is cached (1 s here), so
    // 50 more clients asking cost the upstreams nothing.
    let toml = config_toml(&[servfail.addr(), refused.addr()], "failure_cache_s = 1");
    let (_handle, getapr) = start_getapr(&toml).await;
    let (reply, first) = timed(getapr, "dead.example.test").await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    let before = (servfail.total_queries(), refused.total_queries());
    let started = Instant::now();
    for _ in 0..50 {
        let (reply, _) = timed(getapr, "dead.example.test").await;
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    }
    let fifty = started.elapsed();
    assert!(fifty < Duration::from_secs(1), "the failure cache expired");
    let after = (servfail.total_queries(), refused.total_queries());
    assert_eq!(before, after, "retried within the failure cache's second");
    tokio::time::sleep(Duration::from_millis(1100) - fifty).await;
    timed(getapr, "dead.example.test").await;
    assert_eq!(
        servfail.total_queries(),
        after.0 + 1,
        "asked again after 1 s"
    );
    row(
        "SERVFAIL then REFUSED then a good upstream",
        &format!("answer in {}, each bad one asked once", ms(over)),
        "next upstream at once",
    );
    row(
        "SERVFAIL and REFUSED only: 1 + 50 queries in 1 s",
        &format!(
            "SERVFAIL in {}; 50 more in {}, 0 upstream queries",
            ms(first),
            ms(fifty)
        ),
        "failure cached 1 s (dns.failure_cache_s)",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_over_udp_then_complete_over_tcp() {
    let upstream = FakeUpstream::start(|q, transport| {
        let reply = if transport == Transport::Udp {
            let mut tc = reply_to(q);
            tc.metadata.truncation = true;
            tc
        } else {
            a_reply(q, 300, &[ip(3), ip(4)])
        };
        vec![Action::Reply(reply)]
    })
    .await;
    let (_handle, getapr) = start_getapr(&config_toml(&[upstream.addr()], "")).await;
    let (reply, took) = timed(getapr, "tc.example.test").await;
    assert_eq!(a_addrs(&reply), [ip(3), ip(4)]);
    assert!(!reply.metadata.truncation);
    assert_eq!(upstream.queries(Transport::Udp), 1);
    assert_eq!(upstream.queries(Transport::Tcp), 1);
    row(
        "TC over UDP, answer over TCP",
        &ms(took),
        "one UDP + one TCP query",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_reply_too_large_to_hold_is_asked_again_over_tcp() {
    // 400 A records, about 6.4 kB, without TC, to a query offering 1232:
    // more than the receive buffer holds (4 KiB for such queries).
    let many: Vec<Ipv4Addr> = (0..400u16)
        .map(|i| Ipv4Addr::new(203, 0, 113, (i % 250) as u8))
        .collect();
    let addrs = many.clone();
    let upstream =
        FakeUpstream::start(move |q, _| vec![Action::Reply(a_reply(q, 300, &addrs))]).await;
    let (_handle, getapr) = start_getapr(&config_toml(&[upstream.addr()], "")).await;
    let started = Instant::now();
    let q = query("big.example.test", RecordType::A).bytes();
    let whole = parse(&common::tcp_exchange(getapr, &q).await);
    let took = started.elapsed();
    assert_eq!(a_addrs(&whole), many);
    assert_eq!(upstream.queries(Transport::Udp), 1);
    assert_eq!(upstream.queries(Transport::Tcp), 1);
    row(
        "6.4 kB over UDP without TC to a 1232-byte offer",
        &format!("asked again over TCP, whole answer in {}", ms(took)),
        "never a cut reply",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_over_udp_then_a_tcp_reset_is_servfail() {
    let upstream = FakeUpstream::start(|q, transport| {
        if transport == Transport::Udp {
            let mut tc = reply_to(q);
            tc.metadata.truncation = true;
            vec![Action::Reply(tc)]
        } else {
            vec![Action::Close]
        }
    })
    .await;
    let toml = config_toml(&[upstream.addr()], "timeout_ms = 1000");
    let (_handle, getapr) = start_getapr(&toml).await;
    let (reply, took) = timed(getapr, "reset.example.test").await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert!(took < Duration::from_millis(1000), "waited for a timeout");
    row(
        "TC over UDP, TCP connection closed",
        &format!("SERVFAIL in {}", ms(took)),
        "before the 1 s timeout",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formerr_to_edns_is_retried_without_it() {
    let upstream = FakeUpstream::start(|q, _| {
        if q.edns.is_some() {
            let mut formerr = reply_to(q);
            formerr.metadata.response_code = ResponseCode::FormErr;
            formerr.edns = None;
            vec![Action::Reply(formerr)]
        } else {
            vec![Action::Reply(a_reply(q, 300, &[ip(5)]))]
        }
    })
    .await;
    let (_handle, getapr) = start_getapr(&config_toml(&[upstream.addr()], "")).await;
    let (reply, took) = timed(getapr, "old.example.test").await;
    assert_eq!(a_addrs(&reply), [ip(5)]);
    let seen = upstream.received_messages();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].edns.is_some() && seen[1].edns.is_none());
    row(
        "FORMERR to an EDNS query",
        &format!("answer in {}, second query without OPT", ms(took)),
        "one retry without EDNS",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_spoofed_replies_poison_nothing() {
    const SPOOFS: usize = 10_000;
    let upstream = FakeUpstream::start(|q, _| {
        let mut actions = Vec::with_capacity(SPOOFS + 2);
        let mut other_name = a_reply(q, 300, &[ip(88)]);
        other_name.queries[0].set_name("other.example.test.".parse().expect("name"));
        for i in 0..SPOOFS {
            actions.push(match i % 3 {
                0 => Action::ReplyWithWrongId(a_reply(q, 300, &[ip(77)])),
                1 => Action::ReplyFromOtherPort(a_reply(q, 300, &[ip(66)])),
                _ => Action::Reply(other_name.clone()),
            });
        }
        actions.push(Action::Delay(Duration::from_millis(20)));
        actions.push(Action::Reply(a_reply(q, 300, &[ip(1)])));
        actions
    })
    .await;
    let toml = config_toml(&[upstream.addr()], "timeout_ms = 5000");
    let (_handle, getapr) = start_getapr(&toml).await;
    let (reply, took) = timed(getapr, "target.example.test").await;
    assert_eq!(a_addrs(&reply), [ip(1)], "a spoof was accepted");
    let (again, _) = timed(getapr, "target.example.test").await;
    assert_eq!(a_addrs(&again), [ip(1)], "a spoof was cached");
    let sent = upstream.total_queries();
    row(
        "10,000 spoofs (wrong ID, other port, other question) before the answer",
        &format!(
            "real answer in {}, 0 poisoned ({sent} upstream datagrams)",
            ms(took)
        ),
        "0 poisoned",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_loss_still_answers_99_percent_within_5_s() {
    const NAMES: usize = 1000;
    // 30 % of the queries reaching the upstream are lost (a fixed
    // xorshift sequence, so every run loses the same share).
    let rng = Arc::new(AtomicU64::new(0x9e37_79b9_7f4a_7c15));
    let upstream = FakeUpstream::start(move |q, _| {
        let mut x = rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        rng.store(x, Ordering::Relaxed);
        if x % 100 < 30 {
            vec![Action::Drop]
        } else {
            vec![Action::Reply(a_reply(q, 300, &[ip(6)]))]
        }
    })
    .await;
    let (_handle, getapr) = start_getapr(&config_toml(&[upstream.addr()], "")).await;
    let started = Instant::now();
    let mut times = Vec::with_capacity(NAMES);
    for batch in 0..NAMES / 250 {
        let clients: Vec<_> = (0..250)
            .map(|i| {
                let q = query(&format!("n{batch}-{i}.loss.example.test"), RecordType::A);
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let reply =
                        udp_exchange_within(getapr, &q.bytes(), Duration::from_secs(5)).await;
                    reply
                        .filter(|r| a_addrs(&parse(r)) == [ip(6)])
                        .map(|_| sent.elapsed())
                })
            })
            .collect();
        for client in clients {
            if let Some(t) = client.await.expect("client") {
                times.push(t);
            }
        }
    }
    times.sort();
    let answered = times.len();
    let p99 = times[times.len() * 99 / 100 - 1];
    let dropped = upstream.total_queries() - NAMES;
    assert!(answered * 100 >= NAMES * 99, "{answered}/{NAMES} answered");
    row(
        "30 % of upstream queries lost, 1,000 names",
        &format!(
            "{:.1} % answered within 5 s (p50 {}, p99 {}), {dropped} retransmissions, {} in all",
            answered as f64 * 100.0 / NAMES as f64,
            ms(times[times.len() / 2]),
            ms(p99),
            ms(started.elapsed())
        ),
        "≥ 99 % within 5 s",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_identical_queries_make_one_upstream_query() {
    let upstream = FakeUpstream::start(|q, _| {
        vec![
            Action::Delay(Duration::from_millis(200)),
            Action::Reply(a_reply(q, 300, &[ip(7)])),
        ]
    })
    .await;
    let (_handle, getapr) = start_getapr(&config_toml(&[upstream.addr()], "")).await;
    let started = Instant::now();
    let clients: Vec<_> = (0..100u16)
        .map(|i| {
            let q = query("same.example.test", RecordType::A).id(0x1000 + i);
            tokio::spawn(async move { udp_exchange(getapr, &q.bytes()).await })
        })
        .collect();
    for client in clients {
        assert_eq!(a_addrs(&parse(&client.await.expect("client"))), [ip(7)]);
    }
    let took = started.elapsed();
    assert_eq!(distinct_queries(&upstream), 1);
    row(
        "100 identical concurrent queries",
        &format!("1 upstream query, all answered in {}", ms(took)),
        "1 upstream query",
    );
}

#[test]
fn an_upstream_that_is_ourselves_is_refused_at_config_time() {
    // Named directly: the config is rejected, with the reason.
    let err = getapr::config::Config::parse(
        "[dns]\nlisten = [\"127.0.0.1:5300\"]\nupstreams = [\"127.0.0.1:5300\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("forwarding loop"), "{err}");
    // Through resolv.conf ("system"): nothing is left, and the daemon
    // refuses to start rather than forward to itself.
    let dir = tempdir("loop");
    let resolv = dir.join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.54\n").unwrap();
    let text = format!(
        "[dns]\nlisten = [\"127.0.0.54:53\"]\nupstreams = [\"system\"]\nresolv_conf = {:?}\n",
        resolv.display().to_string()
    );
    let config = getapr::config::Config::parse(&text).unwrap();
    let err = getapr::dns::upstream::addresses(&config.dns).unwrap_err();
    assert!(err.contains("no upstream left"), "{err}");
    row(
        "upstream = our own listen address",
        "rejected before binding anything (explicit: config error; via resolv.conf: \"no upstream left\")",
        "refused at config time, 0 queries",
    );
}

/// Sends A queries for `names` in a loop from one thread until `stop`,
/// each waiting up to 2 s; counts answered ones and failures (no reply in
/// time, or no A record in the reply).
fn load(port: u16, names: Vec<String>, stop: Arc<AtomicBool>) -> (usize, usize) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let (mut ok, mut failed) = (0, 0);
    let mut buf = [0u8; 1500];
    for (i, name) in names.iter().cycle().enumerate() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let q = query(name, RecordType::A).no_edns().id(i as u16).bytes();
        sock.send(&q).unwrap();
        let answered = loop {
            match sock.recv(&mut buf) {
                // A late reply to an earlier query: skip it.
                Ok(n) if n >= 12 && buf[..2] != q[..2] => continue,
                // NOERROR with one answer.
                Ok(n) => break n >= 12 && buf[3] & 0x0f == 0 && buf[6..8] == [0, 1],
                Err(_) => break false,
            }
        };
        if answered { ok += 1 } else { failed += 1 }
    }
    (ok, failed)
}

/// Runs [`load`] on `threads` threads, each over 20 repeated names and
/// fresh ones, while `during` runs (it may stop the load itself, through
/// the flag it gets); returns (answered, failed).
fn under_load(port: u16, threads: usize, during: impl FnOnce(&AtomicBool)) -> (usize, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let names = (0..200)
                .map(|i| match i % 2 {
                    0 => format!("hot{}.example", i % 20),
                    _ => format!("cold{t}-{i}.example"),
                })
                .collect();
            let stop = Arc::clone(&stop);
            thread::spawn(move || load(port, names, stop))
        })
        .collect();
    during(&stop);
    stop.store(true, Ordering::Relaxed);
    workers
        .into_iter()
        .map(|w| w.join().unwrap())
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
}

#[test]
fn sighup_with_an_invalid_config_under_load_fails_no_query() {
    let dir = tempdir("hup-load");
    let port = free_port();
    let (up, _) = responder([192, 0, 2, 8], Duration::from_millis(5));
    let (other, _) = responder([192, 0, 2, 9], Duration::from_millis(5));
    let path = config(&dir, "getapr.toml", port, up);
    let mut child = serve(&path);
    wait_answer(port, "warm.example");
    let (ok, failed) = under_load(port, 4, |_| {
        thread::sleep(Duration::from_millis(500));
        for i in 0..5 {
            std::fs::write(&path, format!("[dns]\nbogus = {i}\n")).unwrap();
            signal(&child, "-HUP");
            thread::sleep(Duration::from_millis(200));
        }
        // And a valid one (another upstream, so the cache is emptied).
        config(&dir, "getapr.toml", port, other);
        signal(&child, "-HUP");
        thread::sleep(Duration::from_millis(500));
    });
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(3)).success());
    assert!(ok > 100, "the load did not run ({ok} answered)");
    assert_eq!(failed, 0, "{failed} of {} queries failed", ok + failed);
    row(
        "5 SIGHUPs with an invalid config, then a valid one, under load (binary)",
        &format!("{ok} queries answered, 0 failed"),
        "0 failed",
    );
}

#[test]
fn sigterm_under_load_drains_within_2_s() {
    let dir = tempdir("term-load");
    let port = free_port();
    let (up, asked) = responder([192, 0, 2, 10], Duration::from_millis(300));
    let mut child = serve(&config(&dir, "getapr.toml", port, up));
    wait_answer(port, "warm.example");
    let mut exit = Duration::ZERO;
    let mut upstream_queries = 0;
    let (ok, failed) = under_load(port, 16, |stop| {
        thread::sleep(Duration::from_millis(1000));
        // The load sends nothing more: what is in flight now must be
        // answered by the drain.
        stop.store(true, Ordering::Relaxed);
        upstream_queries = asked.load(Ordering::SeqCst);
        let sent = Instant::now();
        signal(&child, "-TERM");
        let status = wait_exit(&mut child, Duration::from_secs(5));
        exit = sent.elapsed();
        assert!(status.success(), "{status:?}");
    });
    assert!(exit <= Duration::from_secs(2), "exited after {exit:?}");
    assert_eq!(failed, 0, "{failed} queries in flight were not answered");
    row(
        "SIGTERM under load, upstream 300 ms (binary)",
        &format!(
            "exited in {}; every query in flight answered ({ok} in all, \
             {upstream_queries} upstream queries)",
            ms(exit)
        ),
        "drained within 2 s",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_probe_engine_does_not_delay_answers() {
    // The engine waits for its STUN server's name, which the upstream
    // never answers (timeout 30 s): it is stuck before its first round.
    let upstream = FakeUpstream::start(|q, _| {
        if q.queries[0].name().to_ascii().starts_with("stun.") {
            vec![Action::Drop]
        } else if q.queries[0].query_type() == RecordType::AAAA {
            vec![Action::Reply(reply_to(q))]
        } else {
            vec![Action::Reply(a_reply(q, 300, &[ip(11)]))]
        }
    })
    .await;
    let toml = config_toml(&[upstream.addr()], "timeout_ms = 30000")
        .replace("stun = []", "stun = [\"stun.stall.example:3478\"]")
        .replace("filter = \"off\"", "filter = \"auto\"");
    let (_handle, getapr) = start_getapr(&toml).await;
    // Wait until the engine is stuck on its lookup.
    let waited = Instant::now();
    while upstream.total_queries() == 0 {
        assert!(waited.elapsed() < Duration::from_secs(5), "no STUN lookup");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut times = Vec::new();
    for i in 0..20 {
        // A miss, then a hit.
        for _ in 0..2 {
            let (reply, took) = timed(getapr, &format!("s{i}.example.test")).await;
            assert_eq!(a_addrs(&reply), [ip(11)], "unfiltered");
            times.push(took);
        }
    }
    times.sort();
    let (median, max) = (times[times.len() / 2], times[times.len() - 1]);
    assert!(median < Duration::from_millis(50), "median {median:?}");
    assert!(max < Duration::from_millis(500), "max {max:?}");
    row(
        "probe engine stalled, filter = auto: 20 misses + 20 hits",
        &format!("unfiltered; median {}, max {}", ms(median), ms(max)),
        "within 50 ms",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stale_when_every_upstream_fails() {
    let down = Arc::new(AtomicBool::new(false));
    let switch = Arc::clone(&down);
    let upstream = FakeUpstream::start(move |q, _| {
        if switch.load(Ordering::SeqCst) {
            vec![Action::Drop]
        } else {
            vec![Action::Reply(a_reply(q, 1, &[ip(12)]))]
        }
    })
    .await;
    let toml = config_toml(&[upstream.addr()], "timeout_ms = 3000");
    let (handle, getapr) = start_getapr(&toml).await;
    let (fresh, _) = timed(getapr, "stale.example.test").await;
    assert_eq!(a_addrs(&fresh), [ip(12)]);
    down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Expired, upstream silent: the stale answer after the 1.8 s timer.
    let (bytes, after_timer) = timed_bytes(getapr, "stale.example.test").await;
    let stale = parse(&bytes);
    assert_eq!(a_addrs(&stale), [ip(12)]);
    assert_eq!(stale.answers[0].ttl, 30);
    let ede = getapr::dns::rewrite::extended_errors(&bytes);
    assert_eq!(ede, [(3, String::new())], "EDE 3 Stale Answer");
    assert!(
        after_timer >= Duration::from_millis(1750),
        "{after_timer:?}"
    );
    assert!(after_timer < Duration::from_millis(2900), "{after_timer:?}");
    // The resolution went on and failed: the next client gets the stale
    // answer at once (failure cache), without a query.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let asked = upstream.total_queries();
    let (again, at_once) = timed(getapr, "stale.example.test").await;
    assert_eq!(a_addrs(&again), [ip(12)]);
    assert!(at_once < Duration::from_millis(200), "{at_once:?}");
    assert_eq!(upstream.total_queries(), asked);
    let metrics = handle.metrics_text();
    assert!(
        metrics.contains("getapr_stale_answers_total 2"),
        "{metrics}"
    );

    // With serve_stale_s = 0, or past its window: SERVFAIL.
    for (extra, expired_for) in [("serve_stale_s = 0", 100), ("serve_stale_s = 1", 1100)] {
        let toml = config_toml(&[upstream.addr()], &format!("timeout_ms = 300\n{extra}"));
        let (_handle, getapr) = start_getapr(&toml).await;
        down.store(false, Ordering::SeqCst);
        timed(getapr, "stale.example.test").await;
        down.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1000 + expired_for)).await;
        let (none, _) = timed(getapr, "stale.example.test").await;
        assert_eq!(
            none.metadata.response_code,
            ResponseCode::ServFail,
            "{extra}"
        );
    }
    row(
        "every upstream silent, answer expired 0.1 s ago",
        &format!(
            "stale answer (TTL 30, EDE 3) after {}; next one at once ({}), no query",
            ms(after_timer),
            ms(at_once)
        ),
        "~1.8 s, then at once; SERVFAIL past dns.serve_stale_s",
    );
}
