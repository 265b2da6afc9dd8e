//! `/metrics` through the real stub, in process: each kind of query moves
//! exactly the counters it should, by exactly one. The text is read with
//! `Handle::metrics_text` (what the sidecar serves), so these tests need
//! no HTTP listener; upstreams are the in-process ones of `tests/common`,
//! on loopback.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::auth::{DUAL, DUAL_V4, MISSING, ZONE};
use common::client::{TcpRecv, parse};
use common::{
    AuthUpstream, FakeUpstream, TcpClient, config_toml, query, start_getapr, tcp_exchange,
};
use common::{udp_exchange, udp_silence};
use getapr::daemon::Handle;
use getapr::inventory::Class;
use getapr::probe::verdicts::{
    DestinationVerdict, Families, PathVerdict, SourceVerdict, State, Verdicts,
};
use hickory_proto::op::{OpCode, ResponseCode};
use hickory_proto::rr::RecordType;

/// One reading of `/metrics`.
struct Scrape(String);

impl Scrape {
    fn of(handle: &Handle) -> Scrape {
        Scrape(handle.metrics_text())
    }

    /// The value of `series` (name and labels, as printed); 0 when the
    /// series does not exist yet.
    fn value(&self, series: &str) -> f64 {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// How much `series` moved since `before`.
    fn moved(&self, before: &Scrape, series: &str) -> f64 {
        self.value(series) - before.value(series)
    }
}

/// Asserts how much each series moved between two scrapes.
#[track_caller]
fn assert_moved(before: &Scrape, after: &Scrape, expected: &[(&str, f64)]) {
    for (series, by) in expected {
        assert_eq!(
            after.moved(before, series),
            *by,
            "{series} moved by {} instead of {by}; now:\n{}",
            after.moved(before, series),
            after.0
        );
    }
}

fn answers(rcode: &str, qtype: &str) -> String {
    format!(r#"getapr_dns_queries_total{{rcode="{rcode}",qtype="{qtype}"}}"#)
}

fn latency_count(upstream: SocketAddr) -> String {
    format!(r#"getapr_upstream_latency_seconds_count{{upstream="{upstream}"}}"#)
}

fn failures(upstream: SocketAddr, reason: &str) -> String {
    format!(r#"getapr_upstream_failures_total{{upstream="{upstream}",reason="{reason}"}}"#)
}

fn rewritten(action: &str, reason: &str) -> String {
    format!(r#"getapr_answers_rewritten_total{{action="{action}",reason="{reason}"}}"#)
}

const HITS: &str = "getapr_cache_hits_total";
const MISSES: &str = "getapr_cache_misses_total";
const EVICTIONS: &str = "getapr_cache_evictions_total";

async fn rcode_of(getapr: SocketAddr, q: &common::QueryBuilder) -> ResponseCode {
    parse(&udp_exchange(getapr, &q.bytes()).await)
        .metadata
        .response_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_answer_is_counted_once_by_rcode_and_qtype() {
    let auth = AuthUpstream::start().await;
    let (handle, getapr) = start_getapr(&config_toml(&[auth.addr()], "")).await;
    let up = auth.addr();

    let s0 = Scrape::of(&handle);
    assert_eq!(
        rcode_of(getapr, &query(DUAL, RecordType::A)).await,
        ResponseCode::NoError
    );
    let s1 = Scrape::of(&handle);
    assert_moved(
        &s0,
        &s1,
        &[
            (&answers("NOERROR", "A"), 1.0),
            (MISSES, 1.0),
            (HITS, 0.0),
            (&latency_count(up), 1.0),
        ],
    );

    // The same question again: from the cache, over UDP and over TCP.
    rcode_of(getapr, &query(DUAL, RecordType::A)).await;
    tcp_exchange(getapr, &query(DUAL, RecordType::A).bytes()).await;
    let s2 = Scrape::of(&handle);
    assert_moved(
        &s1,
        &s2,
        &[
            (&answers("NOERROR", "A"), 2.0),
            (HITS, 2.0),
            (MISSES, 0.0),
            (&latency_count(up), 0.0),
        ],
    );

    // A forwarded answer over TCP, and a name that does not exist (the
    // second time from the negative cache).
    tcp_exchange(getapr, &query(DUAL, RecordType::AAAA).bytes()).await;
    for _ in 0..2 {
        assert_eq!(
            rcode_of(getapr, &query(MISSING, RecordType::A)).await,
            ResponseCode::NXDomain
        );
    }
    let s3 = Scrape::of(&handle);
    assert_moved(
        &s2,
        &s3,
        &[
            (&answers("NOERROR", "AAAA"), 1.0),
            (&answers("NXDOMAIN", "A"), 2.0),
            (&answers("NOERROR", "A"), 0.0),
            (MISSES, 2.0),
            (HITS, 1.0),
            (&latency_count(up), 2.0),
        ],
    );

    // The stub's own error answers: no cache lookup, no upstream.
    let notify = query(ZONE, RecordType::SOA).op_code(OpCode::Notify);
    assert_eq!(rcode_of(getapr, &notify).await, ResponseCode::NotImp);
    // A readable header, then a label running past the end.
    let mut garbage = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    garbage.extend_from_slice(&[0x05, b'a', b'b']);
    assert_eq!(
        parse(&udp_exchange(getapr, &garbage).await)
            .metadata
            .response_code,
        ResponseCode::FormErr
    );
    // Not even a header: dropped, so not an answer.
    udp_silence(getapr, &[0xbe, 0xef, 0x01], Duration::from_millis(200)).await;
    let s4 = Scrape::of(&handle);
    assert_moved(
        &s3,
        &s4,
        &[
            (&answers("NOTIMP", "SOA"), 1.0),
            (&answers("FORMERR", "other"), 1.0),
            (HITS, 0.0),
            (MISSES, 0.0),
            (&latency_count(up), 0.0),
        ],
    );
    let total = |s: &Scrape| {
        s.0.lines()
            .filter(|l| l.starts_with("getapr_dns_queries_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert_eq!(total(&s4), 8.0, "one per answer sent:\n{}", s4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_clients_are_counted_without_touching_the_cache() {
    let auth = AuthUpstream::start().await;
    let toml = config_toml(&[auth.addr()], r#"allow = ["192.0.2.0/24"]"#);
    let (handle, getapr) = start_getapr(&toml).await;
    let before = Scrape::of(&handle);
    assert_eq!(
        rcode_of(getapr, &query(DUAL, RecordType::A)).await,
        ResponseCode::Refused
    );
    // Over TCP the connection is closed before anything is read.
    let mut tcp = TcpClient::connect(getapr).await;
    let _ = tcp.try_send(&query(DUAL, RecordType::AAAA).bytes()).await;
    let got = tcp.recv_within(Duration::from_secs(2)).await;
    assert!(
        matches!(got, TcpRecv::Closed | TcpRecv::Error(_)),
        "a refused TCP client got {got:?}"
    );
    let after = Scrape::of(&handle);
    assert_moved(
        &before,
        &after,
        &[
            (&answers("REFUSED", "A"), 1.0),
            (&answers("REFUSED", "AAAA"), 0.0),
            (r#"getapr_limits_hit_total{limit="tcp_not_allowed"}"#, 1.0),
            (HITS, 0.0),
            (MISSES, 0.0),
            (&latency_count(auth.addr()), 0.0),
        ],
    );
    assert_eq!(auth.total_queries(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_by_upstream_and_reason() {
    let silent = FakeUpstream::silent().await;
    let servfail = FakeUpstream::rcode(ResponseCode::ServFail).await;
    let refused = FakeUpstream::rcode(ResponseCode::Refused).await;
    // A port nobody listens on: the connected socket gets ICMP
    // port-unreachable, a network failure.
    let closed = {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.local_addr().unwrap()
    };
    let auth = AuthUpstream::start().await;
    let upstreams = [
        silent.addr(),
        servfail.addr(),
        refused.addr(),
        closed,
        auth.addr(),
    ];
    let (handle, getapr) = start_getapr(&config_toml(&upstreams, "timeout_ms = 300")).await;
    let before = Scrape::of(&handle);
    assert_eq!(
        rcode_of(getapr, &query(DUAL, RecordType::A)).await,
        ResponseCode::NoError
    );
    let after = Scrape::of(&handle);
    assert_moved(
        &before,
        &after,
        &[
            (&failures(silent.addr(), "timeout"), 1.0),
            (&failures(servfail.addr(), "servfail"), 1.0),
            (&failures(refused.addr(), "refused"), 1.0),
            (&failures(closed, "network"), 1.0),
            (&latency_count(auth.addr()), 1.0),
            // A failed try has no latency: only accepted replies do.
            (&latency_count(silent.addr()), 0.0),
            (&latency_count(servfail.addr()), 0.0),
            (&answers("NOERROR", "A"), 1.0),
        ],
    );
    assert_eq!(
        after.0.matches("getapr_upstream_failures_total{").count(),
        4,
        "{}",
        after.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_times_out_gives_a_counted_servfail() {
    let silent = FakeUpstream::silent().await;
    let (handle, getapr) = start_getapr(&config_toml(&[silent.addr()], "timeout_ms = 200")).await;
    let before = Scrape::of(&handle);
    assert_eq!(
        rcode_of(getapr, &query(DUAL, RecordType::AAAA)).await,
        ResponseCode::ServFail
    );
    let after = Scrape::of(&handle);
    assert_moved(
        &before,
        &after,
        &[
            (&answers("SERVFAIL", "AAAA"), 1.0),
            (&failures(silent.addr(), "timeout"), 1.0),
            (&latency_count(silent.addr()), 0.0),
            (MISSES, 1.0),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cache_counts_each_eviction() {
    let auth = AuthUpstream::start().await;
    let (handle, getapr) = start_getapr(&config_toml(&[auth.addr()], "cache_size = 1")).await;
    let before = Scrape::of(&handle);
    rcode_of(getapr, &query(DUAL, RecordType::A)).await;
    let first = Scrape::of(&handle);
    assert_moved(&before, &first, &[(EVICTIONS, 0.0)]);
    // Each new name pushes out the fresh one before it.
    rcode_of(getapr, &query(DUAL, RecordType::AAAA)).await;
    rcode_of(getapr, &query(DUAL, RecordType::A)).await;
    let after = Scrape::of(&handle);
    assert_moved(
        &first,
        &after,
        &[(EVICTIONS, 2.0), (MISSES, 2.0), (HITS, 0.0)],
    );
}

/// Publishes verdicts as the probe engine would: a new generation.
fn publish(handle: &Handle, mut v: Verdicts) {
    let cell = handle.verdicts();
    v.generation = cell.load().generation + 1;
    cell.store(Arc::new(v));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_answers_count_under_their_reason_each_time_they_are_sent() {
    let auth = AuthUpstream::start().await;
    let toml = config_toml(&[auth.addr()], "").replace("filter = \"off\"", "filter = \"auto\"");
    let (handle, getapr) = start_getapr(&toml).await;
    let before = Scrape::of(&handle);
    // IPv6 has no working source: the AAAA answer loses its addresses.
    publish(
        &handle,
        Verdicts {
            families: Families {
                ipv4: State::Ok,
                ipv6: State::Failed,
            },
            ..Verdicts::default()
        },
    );
    let m = parse(&udp_exchange(getapr, &query(DUAL, RecordType::AAAA).bytes()).await);
    assert!(m.answers.is_empty(), "filtered: {m}");
    let once = Scrape::of(&handle);
    assert_moved(
        &before,
        &once,
        &[
            (&rewritten("filtered", "no_source"), 1.0),
            (&rewritten("filtered", "dead"), 0.0),
            (&rewritten("reordered", "verdicts"), 0.0),
            (&answers("NOERROR", "AAAA"), 1.0),
            (MISSES, 1.0),
        ],
    );
    // From the cache: the view is kept, the answer is counted again. The
    // A answer, fetched beside the AAAA one, is not rewritten.
    udp_exchange(getapr, &query(DUAL, RecordType::AAAA).bytes()).await;
    udp_exchange(getapr, &query(DUAL, RecordType::A).bytes()).await;
    let twice = Scrape::of(&handle);
    assert_moved(
        &once,
        &twice,
        &[
            (&rewritten("filtered", "no_source"), 1.0),
            (&rewritten("reordered", "verdicts"), 0.0),
            (HITS, 2.0),
            (MISSES, 0.0),
        ],
    );
    // The verdict gauges show what was published, read at scrape time.
    assert_eq!(
        twice.value(r#"getapr_family_state{family="ipv6",state="failed"}"#),
        1.0
    );
    assert_eq!(
        twice.value("getapr_verdict_generation"),
        before.value("getapr_verdict_generation") + 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_answers_count_and_sources_show_as_state_sets() {
    let auth = AuthUpstream::start().await;
    let (handle, getapr) = start_getapr(&config_toml(&[auth.addr()], "")).await;
    let source: IpAddr = "192.0.2.100".parse().unwrap();
    // The last A record answered; the first did not.
    let path = |state, rtt| PathVerdict {
        source,
        scope_id: 0,
        state,
        rtt,
    };
    let v = Verdicts {
        families: Families {
            ipv4: State::Ok,
            ipv6: State::Ok,
        },
        sources: vec![SourceVerdict {
            address: source,
            scope_id: 0,
            interface: "eth0".to_string(),
            class: Class::Global4,
            state: State::Ok,
            link: State::Ok,
            rtt: Some(Duration::from_millis(3)),
            mapped: None,
        }],
        destinations: vec![
            DestinationVerdict {
                address: IpAddr::V4(DUAL_V4[0]),
                learned: true,
                state: State::Failed,
                paths: vec![path(State::Failed, None)],
            },
            DestinationVerdict {
                address: IpAddr::V4(DUAL_V4[2]),
                learned: true,
                state: State::Ok,
                paths: vec![path(State::Ok, Some(Duration::from_millis(3)))],
            },
        ],
        ..Verdicts::default()
    };
    publish(&handle, v);
    let before = Scrape::of(&handle);
    udp_exchange(getapr, &query(DUAL, RecordType::A).bytes()).await;
    let after = Scrape::of(&handle);
    assert_moved(
        &before,
        &after,
        &[
            (&rewritten("reordered", "verdicts"), 1.0),
            (&rewritten("filtered", "dead"), 0.0),
        ],
    );
    let state = |s: &str| {
        format!(
            r#"getapr_source_state{{source="192.0.2.100",interface="eth0",class="global4",state="{s}"}}"#
        )
    };
    assert_eq!(after.value(&state("ok")), 1.0, "{}", after.0);
    assert!(after.0.contains(&format!("{} 0", state("failed"))));
    assert!(after.0.contains(&format!("{} 0", state("unknown"))));
    assert_eq!(
        after.value(r#"getapr_source_rtt_seconds{source="192.0.2.100"}"#),
        0.003
    );
}
