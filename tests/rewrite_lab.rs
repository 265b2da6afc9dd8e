//! Answers rewritten by real verdicts in the network lab (root): the real daemon serves
//! glibc, `kdig` and raw queries in the lab's host namespace, with Knot
//! (and Unbound doing DNS64) in inet as its upstream, while the router
//! breaks IPv6 or translates it (NAT64). See `tests/common/labdns.rs` for
//! the zones and servers.
//!
//! Run with `--nocapture --test-threads=1` to see the measured connect
//! times and query latencies (`GETAPR_LAB_LATENCY_RUNS=N` per latency
//! class, 11 by default; `--release` measures the optimized daemon).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Record, RecordType};

use common::compare::differences;
use common::lab::{self, Connect, HOST4, HOST6, Lab, Ns};
use common::labdns::{
    self, DUAL4, DUAL6, GetaprConfig, KNOT4, LabDns, LabGetapr, MULTI_DEAD, MULTI_LIVE,
    PROBE_INTERVAL, PROBE_TIMEOUT, UNBOUND6, V4ONLY4, V6ONLY6, addresses, ask, dns, exchange,
    filtered_problems, getent_ahosts, kdig, python_connect, rrsigs_cover, summary,
};
use common::query;

/// getapr's listen address in the host namespace.
const STUB: &str = "127.0.0.53";

fn stub() -> SocketAddr {
    SocketAddr::new(STUB.parse().expect("an IP"), 53)
}

/// How long a source's verdict may take: three rounds to fail (with their
/// timeouts), and a margin for a loaded machine.
const VERDICT: Duration = Duration::from_secs(8);

/// Waits for getapr's first verdicts on the host's GUA and IPv4 sources
/// (each `ok` or `failed` as given; IPv4 skipped when `v4` is None).
fn wait_verdicts(getapr: &LabGetapr, since: Instant, v6: &str, v4: Option<&str>) {
    let (t, _) = getapr.wait(since, &[v6, &format!("source={HOST6}")], VERDICT);
    eprintln!("getapr: GUA source {HOST6} {v6} after {t:?}");
    if let Some(v4) = v4 {
        let (t, _) = getapr.wait(since, &[v4, &format!("source={HOST4}")], VERDICT);
        eprintln!("getapr: IPv4 source {HOST4} {v4} after {t:?}");
    }
}

/// Collects unmet expectations, so that one run reports all of them (and
/// prints every measurement) before failing.
#[derive(Default)]
struct Expectations(Vec<String>);

impl Expectations {
    fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            let message = message();
            eprintln!("UNMET: {message}");
            self.0.push(message);
        }
    }

    fn finish(self, test: &str) {
        assert!(
            self.0.is_empty(),
            "{test}: {} unmet expectation(s):\n  - {}",
            self.0.len(),
            self.0.join("\n  - ")
        );
    }
}

/// Runs per latency class: `GETAPR_LAB_LATENCY_RUNS`, 11 by default.
fn latency_runs() -> usize {
    std::env::var("GETAPR_LAB_LATENCY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| (1..=1000).contains(&n))
        .unwrap_or(11)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn us(d: Duration) -> String {
    format!("{} µs", d.as_micros())
}

/// Median exchange times of query latency classes through getapr, with
/// fresh names under `*.wild` for the misses.
fn measure_latencies(lab: &Lab, runs: usize) -> Vec<(String, Duration, usize)> {
    let nonce: u32 = rand::random();
    let wild = |i: usize, what: &str| format!("{what}{i}-{nonce:08x}.wild.{}.", labdns::ZONE);
    // (label, query, timed?) in the order sent.
    let mut plan: Vec<(&str, common::QueryBuilder, bool)> = Vec::new();
    for i in 0..runs {
        let a_miss = wild(i, "am");
        plan.push(("A, cache miss", query(&a_miss, RecordType::A), true));
        plan.push(("A, cache hit", query(&a_miss, RecordType::A), true));
        let aaaa_alone = wild(i, "q6");
        plan.push((
            "AAAA, cache miss, A not cached",
            query(&aaaa_alone, RecordType::AAAA),
            true,
        ));
        plan.push((
            "AAAA, cache hit",
            query(&aaaa_alone, RecordType::AAAA),
            true,
        ));
        let a_first = wild(i, "a4");
        plan.push(("(A first)", query(&a_first, RecordType::A), false));
        plan.push((
            "AAAA, cache miss, A cached",
            query(&a_first, RecordType::AAAA),
            true,
        ));
    }
    let queries: Vec<common::QueryBuilder> = plan.iter().map(|(_, q, _)| q.clone()).collect();
    let replies = exchange(lab, Ns::Host, stub(), &queries);
    let mut classes: Vec<(String, Vec<Duration>, usize)> = Vec::new();
    for ((label, _, timed), reply) in plan.iter().zip(replies) {
        if !timed {
            continue;
        }
        let Some((took, reply)) = reply else {
            panic!("no reply through getapr to a latency query ({label})");
        };
        let filtered = filtered_problems(&reply).is_empty();
        let at = match classes.iter().position(|(l, _, _)| l == label) {
            Some(at) => at,
            None => {
                classes.push(((*label).to_owned(), Vec::new(), 0));
                classes.len() - 1
            }
        };
        classes[at].1.push(took);
        classes[at].2 += usize::from(filtered);
    }
    classes
        .into_iter()
        .map(|(label, times, filtered)| (label, median(times), filtered))
        .collect()
}

/// Knot's reply to the same query, asked from the host namespace.
fn direct(lab: &Lab, q: &common::QueryBuilder) -> Message {
    ask(lab, Ns::Host, dns(KNOT4), q)
}

#[test]
fn broken_ipv6_filters_aaaa_for_glibc_and_kdig() {
    if !lab::root_or_skip("rewrite_lab::broken_ipv6_filters_aaaa_for_glibc_and_kdig") {
        return;
    }
    labdns::assert_glibc_uses_resolv_conf();
    let lab = Lab::new();
    let dns_servers = LabDns::start(&lab);
    // The router silently drops forwarded IPv6; Knot is asked over IPv4.
    lab.drop_ipv6_forwarding(true);
    let start = Instant::now();
    let getapr = LabGetapr::start(&lab, &dns_servers, GetaprConfig::new(KNOT4));
    wait_verdicts(&getapr, start, "failed", Some("ok"));
    lab.write_netns_resolv_conf(Ns::Host, &format!("nameserver {STUB}"));
    let mut expect = Expectations::default();

    let dual = labdns::name("dual");
    let v6only = labdns::name("v6only");

    // glibc: only IPv4.
    let getent = getent_ahosts(&lab, &dual);
    eprintln!("getent ahosts {dual} through getapr: {getent:?}");
    expect.check(getent.contains(&IpAddr::from(DUAL4)), || {
        format!("getent ahosts {dual} through getapr should list {DUAL4}, got {getent:?}")
    });
    expect.check(getent.iter().all(IpAddr::is_ipv4), || {
        format!(
            "getent ahosts {dual} through getapr should list only IPv4 addresses on a host whose IPv6 is blackholed (AAAA filtered), got {getent:?}"
        )
    });

    // kdig, as a person would look.
    let shown = kdig(
        &lab,
        Ns::Host,
        STUB.parse().unwrap(),
        &["AAAA", &dual, "+edns"],
    );
    eprintln!("kdig @{STUB} AAAA {dual} +edns:\n{shown}");
    expect.check(shown.contains("status: NOERROR"), || {
        format!("kdig AAAA {dual} through getapr should show status NOERROR:\n{shown}")
    });
    expect.check(shown.contains("EDE: 17 (Filtered)"), || {
        format!("kdig AAAA {dual} through getapr should show \"EDE: 17 (Filtered)\":\n{shown}")
    });

    // The same, parsed.
    let aaaa = ask(&lab, Ns::Host, stub(), &query(&dual, RecordType::AAAA));
    eprintln!("AAAA {dual} through getapr: {}", summary(&aaaa));
    let problems = filtered_problems(&aaaa);
    expect.check(problems.is_empty(), || {
        format!(
            "AAAA {dual} through getapr on a host whose IPv6 is blackholed should be filtered (NOERROR, NODATA, SOA TTL <= 60, EDE 17): {}; reply: {}",
            problems.join("; "),
            summary(&aaaa)
        )
    });
    let a = ask(&lab, Ns::Host, stub(), &query(&dual, RecordType::A));
    expect.check(
        a.metadata.response_code == ResponseCode::NoError
            && addresses(&a.answers) == [IpAddr::from(DUAL4)],
        || {
            format!(
                "A {dual} through getapr should be untouched ([{DUAL4}]), got {}",
                summary(&a)
            )
        },
    );
    let only6 = ask(&lab, Ns::Host, stub(), &query(&v6only, RecordType::AAAA));
    eprintln!("AAAA {v6only} through getapr: {}", summary(&only6));
    expect.check(addresses(&only6.answers) == [IpAddr::from(V6ONLY6)], || {
        format!(
            "AAAA {v6only} (an IPv6-only name) should keep its AAAA {V6ONLY6} even with IPv6 broken, got {}",
            summary(&only6)
        )
    });

    // What an application feels: connect through getapr...
    let via = python_connect(&lab, &dual, 80);
    // ...and with resolv.conf pointing straight at the upstream.
    lab.write_netns_resolv_conf(Ns::Host, &format!("nameserver {KNOT4}"));
    let straight = python_connect(&lab, &dual, 80);
    lab.write_netns_resolv_conf(Ns::Host, &format!("nameserver {STUB}"));
    eprintln!(
        "MEASURED connect to {dual}:80 (create_connection, timeout=5): through getapr {:.3} s ({}), straight to Knot {:.3} s ({})",
        via.seconds, via.detail, straight.seconds, straight.detail
    );
    expect.check(via.connected && via.seconds < 1.0, || {
        format!("through getapr, connecting to {dual}:80 should take well under 1 s, got {via:?}")
    });
    expect.check(straight.connected && straight.seconds >= 4.5, || {
        format!(
            "straight to the upstream, connecting to {dual}:80 should wait out the 5 s timeout on IPv6 first (the lab's blackhole), got {straight:?}"
        )
    });

    // The price of filtering: query latencies through getapr.
    let runs = latency_runs();
    let upstream = exchange(
        &lab,
        Ns::Host,
        dns(KNOT4),
        &(0..runs)
            .map(|_| query(&dual, RecordType::A))
            .collect::<Vec<_>>(),
    );
    let upstream = median(upstream.into_iter().flatten().map(|(t, _)| t).collect());
    eprintln!("MEASURED query latency (median of {runs}, from Python in the host netns):");
    eprintln!("  straight to Knot (A, through NAT44): {}", us(upstream));
    for (label, took, filtered) in measure_latencies(&lab, runs) {
        let note = if label.starts_with("AAAA") {
            format!(" ({filtered}/{runs} filtered)")
        } else {
            String::new()
        };
        eprintln!("  through getapr, {label}: {}{note}", us(took));
    }
    expect.finish("broken_ipv6_filters_aaaa_for_glibc_and_kdig");
}

/// Sorts every section's records, so that two replies compare as the same
/// records whatever their order (reordering is allowed on a healthy host).
fn sorted(mut message: Message) -> Message {
    for section in [
        &mut message.answers,
        &mut message.authorities,
        &mut message.additionals,
    ] {
        section.sort_by_key(Record::to_string);
    }
    message
}

/// Every record's TTL set to 0, for a comparison of everything else.
fn without_ttls(mut message: Message) -> Message {
    for section in [
        &mut message.answers,
        &mut message.authorities,
        &mut message.additionals,
    ] {
        for record in section.iter_mut() {
            record.ttl = 0;
        }
    }
    message
}

#[test]
fn healthy_host_answers_untouched_and_ipv6_first() {
    if !lab::root_or_skip("rewrite_lab::healthy_host_answers_untouched_and_ipv6_first") {
        return;
    }
    labdns::assert_glibc_uses_resolv_conf();
    let lab = Lab::new();
    let dns_servers = LabDns::start(&lab);
    let start = Instant::now();
    let getapr = LabGetapr::start(&lab, &dns_servers, GetaprConfig::new(KNOT4));
    wait_verdicts(&getapr, start, "ok", Some("ok"));
    lab.write_netns_resolv_conf(Ns::Host, &format!("nameserver {STUB}"));
    let mut expect = Expectations::default();

    let questions = [
        query(&labdns::name("dual"), RecordType::A),
        query(&labdns::name("dual"), RecordType::AAAA),
        query(&labdns::name("v6only"), RecordType::AAAA),
        query(&labdns::name("v6only"), RecordType::A),
        query(&labdns::name("v4only"), RecordType::A),
        query(&labdns::name("v4only"), RecordType::AAAA),
        query(&labdns::name("multi"), RecordType::A),
        query(&labdns::name("nothing-here"), RecordType::AAAA),
        query(&labdns::signed_name("dual"), RecordType::AAAA).dnssec_ok(),
        query(&labdns::signed_name("dual"), RecordType::A).dnssec_ok(),
    ];
    for q in &questions {
        let upstream = direct(&lab, q);
        let via = ask(&lab, Ns::Host, stub(), q);
        let question = &q.message().queries[0];
        eprintln!("{question}: via getapr {}", summary(&via));
        let diffs = differences(&sorted(upstream.clone()), &sorted(via.clone()));
        expect.check(diffs.is_empty(), || {
            format!(
                "on a healthy host, {question} through getapr should carry the upstream's records untouched: {}\n--- Knot ---\n{upstream}--- getapr ---\n{via}",
                diffs.join("; ")
            )
        });
    }

    let dual = labdns::name("dual");
    let getent = getent_ahosts(&lab, &dual);
    eprintln!("getent ahosts {dual} through getapr: {getent:?}");
    expect.check(
        getent.first() == Some(&IpAddr::from(DUAL6)) && getent.contains(&IpAddr::from(DUAL4)),
        || {
            format!(
                "on a healthy dual-stack host, getent ahosts {dual} should list {DUAL6} first and {DUAL4} too, got {getent:?}"
            )
        },
    );
    let via = python_connect(&lab, &dual, 80);
    eprintln!("connect to {dual}:80 through getapr, healthy host: {via:?}");
    expect.check(via.connected && via.detail == DUAL6.to_string(), || {
        format!("on a healthy host, {dual}:80 should be reached over IPv6 ({DUAL6}), got {via:?}")
    });

    // The baseline for the price of filtering: the same latency classes on
    // a host where nothing is filtered.
    let runs = latency_runs();
    eprintln!("MEASURED query latency on the healthy host (median of {runs}, nothing filtered):");
    for (label, took, filtered) in measure_latencies(&lab, runs) {
        eprintln!("  through getapr, {label}: {}", us(took));
        expect.check(filtered == 0, || {
            format!(
                "on a healthy host nothing should be filtered, but {filtered} {label} replies were"
            )
        });
    }
    expect.finish("healthy_host_answers_untouched_and_ipv6_first");
}

#[test]
fn dead_destination_is_no_longer_first() {
    if !lab::root_or_skip("rewrite_lab::dead_destination_is_no_longer_first") {
        return;
    }
    let lab = Lab::new();
    let dns_servers = LabDns::start(&lab);
    let multi = labdns::name("multi");
    let q = query(&multi, RecordType::A);

    // The lab as the test needs it: Knot lists the dead address first, and
    // it times out while the others answer.
    let upstream = direct(&lab, &q);
    let order = addresses(&upstream.answers);
    assert_eq!(
        order.first(),
        Some(&IpAddr::from(MULTI_DEAD)),
        "lab: Knot should list {MULTI_DEAD} first for {multi}: {}",
        summary(&upstream)
    );
    let blackholed = lab.tcp_connect(
        Ns::Host,
        SocketAddr::new(MULTI_DEAD.into(), 443),
        None,
        PROBE_TIMEOUT,
    );
    assert_eq!(
        blackholed,
        Connect::TimedOut,
        "lab: {MULTI_DEAD}:443 should time out"
    );
    for live in MULTI_LIVE {
        let to = SocketAddr::new(live.into(), 443);
        assert_eq!(
            lab.tcp_connect(Ns::Host, to, None, Duration::from_secs(3)),
            Connect::Connected,
            "lab: {to} should accept"
        );
    }

    let before = dns_servers.dead_packets(&lab);
    let start = Instant::now();
    let mut config = GetaprConfig::new(KNOT4);
    config.destinations = true;
    let getapr = LabGetapr::start(&lab, &dns_servers, config);
    wait_verdicts(&getapr, start, "ok", Some("ok"));

    // One query teaches getapr the addresses; probes (443, then 80, from
    // the IPv4 source) find the first one dead within a few rounds.
    let asked = Instant::now();
    let first = ask(&lab, Ns::Host, stub(), &q);
    eprintln!("A {multi} through getapr, first time: {}", summary(&first));
    let within = PROBE_INTERVAL * 10;
    let dead = IpAddr::from(MULTI_DEAD);
    let probes = |dns_servers: &LabDns| {
        let now = dns_servers.dead_packets(&lab);
        (now.0 - before.0, now.1 - before.1)
    };
    let mut last = first;
    // (a) It is no longer first (working addresses come first)...
    let mut not_first = None;
    // (b) docs/interface.md: once probes found it dead from every source, it is
    // removed, since two working addresses remain.
    let mut removed = None;
    while removed.is_none() && asked.elapsed() <= within {
        let order = addresses(&last.answers);
        if not_first.is_none() && !order.is_empty() && order.first() != Some(&dead) {
            not_first = Some((asked.elapsed(), order.clone(), probes(&dns_servers)));
        }
        if !order.is_empty() && !order.contains(&dead) {
            removed = Some((asked.elapsed(), order, probes(&dns_servers)));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        last = ask(&lab, Ns::Host, stub(), &q);
    }
    let show = |(t, order, (p443, p80)): &(Duration, Vec<IpAddr>, (u64, u64))| {
        format!("after {t:?}: {order:?} (probes dropped so far: {p443} to 443, {p80} to 80)")
    };
    eprintln!(
        "A {multi} through getapr: {MULTI_DEAD} no longer first {}; removed {}",
        not_first.as_ref().map_or_else(|| "never".to_owned(), show),
        removed.as_ref().map_or_else(|| "never".to_owned(), show),
    );
    let (p443, p80) = probes(&dns_servers);
    let tail = format!(
        "last answer {}; getapr's packets to {MULTI_DEAD} dropped in inet: {p443} to 443, {p80} to 80\nlog:\n{}",
        summary(&last),
        getapr.log()
    );
    let Some((_, first_order, _)) = &not_first else {
        panic!(
            "{MULTI_DEAD} (probes time out from every source) should no longer come first in A {multi} within {within:?} of the first query; {tail}"
        );
    };
    let dead_at = first_order.iter().position(|ip| *ip == dead);
    assert!(
        dead_at.is_none() || dead_at == Some(first_order.len() - 1),
        "once no longer first, the dead {MULTI_DEAD} should be last or gone in A {multi}, got {first_order:?}"
    );
    let Some((_, order, (p443, p80))) = &removed else {
        panic!(
            "{MULTI_DEAD}, dead from every source, should be removed from A {multi} (two working addresses remain) within {within:?} of the first query; {tail}"
        );
    };
    assert!(
        *p443 >= 1 && *p80 >= 1,
        "{MULTI_DEAD} was removed from A {multi} before probes tried it on 443 and then 80 ({p443} and {p80} packets dropped): not found dead by probes"
    );
    for live in MULTI_LIVE {
        assert!(
            order.contains(&IpAddr::from(live)),
            "the working {live} must stay in A {multi}, got {order:?}"
        );
    }
    assert_eq!(last.metadata.response_code, ResponseCode::NoError);
}

/// A DO query's reply carries the AAAA and an RRSIG over it.
fn signed_aaaa_problems(reply: &Message) -> Vec<String> {
    let mut problems = Vec::new();
    if reply.metadata.response_code != ResponseCode::NoError {
        problems.push(format!("rcode {:?}", reply.metadata.response_code));
    }
    if addresses(&reply.answers) != [IpAddr::from(DUAL6)] {
        problems.push(format!(
            "answer addresses {:?}, expected [{DUAL6}]",
            addresses(&reply.answers)
        ));
    }
    if !rrsigs_cover(&reply.answers).contains(&RecordType::AAAA) {
        problems.push(format!(
            "no RRSIG over the AAAA (RRSIGs cover {:?})",
            rrsigs_cover(&reply.answers)
        ));
    }
    problems
}

#[test]
fn dnssec_answers_kept_unless_break_dnssec() {
    if !lab::root_or_skip("rewrite_lab::dnssec_answers_kept_unless_break_dnssec") {
        return;
    }
    let lab = Lab::new();
    let dns_servers = LabDns::start(&lab);
    lab.drop_ipv6_forwarding(true);
    let signed = labdns::signed_name("dual");
    let do_query = query(&signed, RecordType::AAAA).dnssec_ok();
    let mut expect = Expectations::default();

    // break_dnssec = false (the default): a DO query keeps AAAA + RRSIG...
    let start = Instant::now();
    let getapr = LabGetapr::start(&lab, &dns_servers, GetaprConfig::new(KNOT4));
    wait_verdicts(&getapr, start, "failed", Some("ok"));
    let kept = ask(&lab, Ns::Host, stub(), &do_query);
    eprintln!("DO AAAA {signed}, break_dnssec = false: {}", summary(&kept));
    let problems = signed_aaaa_problems(&kept);
    expect.check(problems.is_empty(), || {
        format!(
            "with break_dnssec = false, a DO query for AAAA {signed} should keep its AAAA and RRSIG even with IPv6 broken: {}",
            problems.join("; ")
        )
    });
    // ...while the same name without DO is filtered: the guard is what
    // kept it, not a filter that is off.
    let plain = ask(&lab, Ns::Host, stub(), &query(&signed, RecordType::AAAA));
    eprintln!("AAAA {signed} without DO: {}", summary(&plain));
    let problems = filtered_problems(&plain);
    expect.check(problems.is_empty(), || {
        format!(
            "AAAA {signed} without DO should be filtered with IPv6 broken: {}; reply: {}",
            problems.join("; "),
            summary(&plain)
        )
    });
    getapr.stop();

    // break_dnssec = true: filtered like the rest.
    let start = Instant::now();
    let mut config = GetaprConfig::new(KNOT4);
    config.break_dnssec = true;
    let getapr = LabGetapr::start(&lab, &dns_servers, config);
    wait_verdicts(&getapr, start, "failed", Some("ok"));
    let broken = ask(&lab, Ns::Host, stub(), &do_query);
    eprintln!(
        "DO AAAA {signed}, break_dnssec = true: {}",
        summary(&broken)
    );
    let problems = filtered_problems(&broken);
    expect.check(problems.is_empty(), || {
        format!(
            "with break_dnssec = true, a DO query for AAAA {signed} should be filtered (NODATA + SOA + EDE 17) with IPv6 broken: {}; reply: {}",
            problems.join("; "),
            summary(&broken)
        )
    });
    expect.check(addresses(&broken.answers).is_empty(), || {
        format!(
            "with break_dnssec = true the AAAA of {signed} must go: {}",
            summary(&broken)
        )
    });
    expect.finish("dnssec_answers_kept_unless_break_dnssec");
}

#[test]
fn ipv6_only_host_behind_nat64_keeps_synthesized_aaaa() {
    if !lab::root_or_skip("rewrite_lab::ipv6_only_host_behind_nat64_keeps_synthesized_aaaa") {
        return;
    }
    labdns::assert_glibc_uses_resolv_conf();
    let lab = Lab::builder().without_ipv4().nat64().build();
    let dns_servers = LabDns::start_with_dns64(&lab);
    let start = Instant::now();
    let mut config = GetaprConfig::new(UNBOUND6);
    // Where the sidecar will serve /status; nothing listens there until it
    // exists, and the log line is the evidence meanwhile.
    config.http_port = Some(8053);
    let getapr = LabGetapr::start(&lab, &dns_servers, config);
    wait_verdicts(&getapr, start, "ok", None);
    let mut expect = Expectations::default();

    let (via, said) = getapr.nat64_prefix_reported(&lab, lab::NAT64_PREFIX, VERDICT);
    eprintln!(
        "NAT64 prefix {} reported by {via}: {said}",
        lab::NAT64_PREFIX
    );

    // RFC 7050's name goes through untouched.
    let wka = query("ipv4only.arpa", RecordType::AAAA);
    let upstream = ask(&lab, Ns::Host, dns(UNBOUND6), &wka);
    let through = ask(&lab, Ns::Host, stub(), &wka);
    // Both getapr and Unbound answer from their caches here, each counting
    // the age in whole seconds on its own clock: TTLs may differ by one.
    let ttl_skew = upstream
        .answers
        .iter()
        .zip(&through.answers)
        .any(|(d, v)| v.ttl > d.ttl + 1);
    expect.check(!ttl_skew, || {
        format!("AAAA ipv4only.arpa: getapr's TTLs exceed Unbound's by more than 1 s:\n{upstream}{through}")
    });
    let diffs = differences(
        &sorted(without_ttls(upstream)),
        &sorted(without_ttls(through)),
    );
    expect.check(diffs.is_empty(), || {
        format!(
            "AAAA ipv4only.arpa should pass through getapr untouched: {}",
            diffs.join("; ")
        )
    });

    let v4only = labdns::name("v4only");
    let synthesized = IpAddr::from(lab::nat64(V4ONLY4));
    let aaaa = ask(&lab, Ns::Host, stub(), &query(&v4only, RecordType::AAAA));
    eprintln!(
        "AAAA {v4only} through getapr (DNS64 upstream): {}",
        summary(&aaaa)
    );
    expect.check(addresses(&aaaa.answers) == [synthesized], || {
        format!(
            "the synthesized AAAA {synthesized} of {v4only} should be kept on an IPv6-only host behind NAT64, got {}",
            summary(&aaaa)
        )
    });
    let a = ask(&lab, Ns::Host, stub(), &query(&v4only, RecordType::A));
    eprintln!(
        "A {v4only} through getapr (the host has no IPv4; filtering it is allowed): {}",
        summary(&a)
    );

    lab.write_netns_resolv_conf(Ns::Host, &format!("nameserver {STUB}"));
    let connect = python_connect(&lab, &v4only, 80);
    eprintln!("MEASURED connect to {v4only}:80 through getapr and NAT64: {connect:?}");
    expect.check(
        connect.connected && connect.detail == synthesized.to_string(),
        || format!("connecting to {v4only}:80 should succeed through {synthesized} (NAT64), got {connect:?}"),
    );
    let seen = dns_servers.service_log();
    expect.check(
        seen.iter()
            .any(|l| l.starts_with(&format!("tcp {V4ONLY4}:80 {}:", lab::ROUTER_WAN4))),
        || format!("inet should have seen the connection to {V4ONLY4}:80 from the router's NAT44 address, saw {seen:?}"),
    );
    expect.finish("ipv6_only_host_behind_nat64_keeps_synthesized_aaaa");
}

/// The files the lab DNS writes stay inside the lab's directory.
#[test]
fn lab_dns_directory_is_removed() {
    if !lab::root_or_skip("rewrite_lab::lab_dns_directory_is_removed") {
        return;
    }
    let lab = Lab::builder().without_services().build();
    let dns_servers = LabDns::start(&lab);
    let dir = dns_servers.dir().to_path_buf();
    assert!(dir.join("knot.conf").exists());
    let signed = kdig(
        &lab,
        Ns::Inet,
        KNOT4.into(),
        &["+dnssec", "AAAA", &labdns::signed_name("dual")],
    );
    assert!(signed.contains("\tRRSIG\tAAAA "), "Knot signs: {signed}");
    drop(dns_servers);
    assert!(!Path::new(&dir).exists(), "{} left behind", dir.display());
}

/// The checkers above, on replies built here (no root needed): a proper
/// filtered reply passes, and each way of falling short is named.
#[test]
fn filtered_reply_checker_accepts_the_spec_and_names_each_shortfall() {
    use hickory_proto::op::{Edns, MessageType, OpCode};
    use hickory_proto::rr::rdata::opt::EdnsOption;
    use hickory_proto::rr::rdata::{AAAA, SOA};
    use hickory_proto::rr::{Name, RData};

    let zone = Name::from_ascii("lab.example.").unwrap();
    let build = |soa_ttl: Option<u32>, ede: Option<(u16, &str)>, answer: bool| {
        let mut reply = Message::new(7, MessageType::Response, OpCode::Query);
        reply.metadata.response_code = ResponseCode::NoError;
        if answer {
            reply.add_answer(Record::from_rdata(
                Name::from_ascii("dual.lab.example.").unwrap(),
                300,
                RData::AAAA(AAAA(DUAL6)),
            ));
        }
        if let Some(ttl) = soa_ttl {
            let soa = SOA::new(zone.clone(), zone.clone(), 1, 3600, 600, 86400, 300);
            reply.add_authority(Record::from_rdata(zone.clone(), ttl, RData::SOA(soa)));
        }
        let mut edns = Edns::new();
        if let Some((code, text)) = ede {
            let mut data = code.to_be_bytes().to_vec();
            data.extend_from_slice(text.as_bytes());
            edns.options_mut().insert(EdnsOption::Unknown(15, data));
        }
        reply.set_edns(edns);
        // Through the wire, as the tests see replies.
        common::client::parse(&reply.to_vec().unwrap())
    };

    let good = build(Some(60), Some((17, "no working IPv6 source")), false);
    assert_eq!(filtered_problems(&good), Vec::<String>::new());
    assert_eq!(
        labdns::extended_errors(&good),
        [(17, "no working IPv6 source".to_owned())]
    );

    let cases = [
        (
            build(Some(60), Some((17, "x")), true),
            "expected none (NODATA)",
        ),
        (build(None, Some((17, "x")), false), "no SOA"),
        (build(Some(300), Some((17, "x")), false), "at most 60"),
        (build(Some(60), None, false), "no Extended DNS Error 17"),
        (
            build(Some(60), Some((18, "x")), false),
            "no Extended DNS Error 17",
        ),
        (build(Some(60), Some((17, "")), false), "no EXTRA-TEXT"),
    ];
    for (reply, expected) in cases {
        let problems = filtered_problems(&reply);
        assert!(
            problems.len() == 1 && problems[0].contains(expected),
            "expected one problem with {expected:?}, got {problems:?}"
        );
    }
    let mut refused = build(Some(60), Some((17, "x")), false);
    refused.metadata.response_code = ResponseCode::Refused;
    assert!(filtered_problems(&refused)[0].contains("expected NOERROR"));
}
