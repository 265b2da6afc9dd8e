//! Unit tests of the metrics: each family as `/metrics` shows it, the
//! counter tables' indexes, and the verdict gauges read at scrape time.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::queries::{QTYPES, RCODES, qtype_index, rcode_index};
use super::*;
use crate::inventory::Class;
use crate::probe::verdicts::{SourceVerdict, State, Verdicts};

fn metrics() -> Metrics {
    Metrics::new(Arc::new(ArcSwap::from_pointee(Verdicts::default())))
}

fn has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "no line {line:?} in:\n{text}"
    );
}

#[test]
fn a_counted_query_shows_in_the_text() {
    let m = metrics();
    m.query(3, 28);
    m.query(3, 28);
    m.query(0, 4242);
    m.query(16, 1);
    m.query(9, 1);
    let text = m.encode();
    has(
        &text,
        r#"getapr_dns_queries_total{rcode="NXDOMAIN",qtype="AAAA"} 2"#,
    );
    has(
        &text,
        r#"getapr_dns_queries_total{rcode="NOERROR",qtype="other"} 1"#,
    );
    has(
        &text,
        r#"getapr_dns_queries_total{rcode="BADVERS",qtype="A"} 1"#,
    );
    has(
        &text,
        r#"getapr_dns_queries_total{rcode="other",qtype="A"} 1"#,
    );
    assert!(text.contains(r#"getapr_build_info{version=""#), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn the_index_tables_agree_with_the_names() {
    for (i, (code, _)) in RCODES.iter().enumerate() {
        assert_eq!(rcode_index(*code), i, "rcode {code}");
    }
    for (i, (code, _)) in QTYPES.iter().enumerate() {
        assert_eq!(qtype_index(*code), i, "qtype {code}");
    }
    assert_eq!(rcode_index(6), RCODES.len());
    assert_eq!(qtype_index(0), QTYPES.len());
}

#[test]
fn rewrites_start_at_zero_and_count_by_reason() {
    let m = metrics();
    let text = m.encode();
    for (action, reason) in [
        ("reordered", "verdicts"),
        ("filtered", "no_source"),
        ("filtered", "dead_prefix"),
        ("filtered", "dead"),
        ("filtered", "path_mtu_blackhole"),
    ] {
        has(
            &text,
            &format!(r#"getapr_answers_rewritten_total{{action="{action}",reason="{reason}"}} 0"#),
        );
    }
    m.rewritten(Rewrite::Filtered(FilterReason::NoSource));
    m.rewritten(Rewrite::Filtered(FilterReason::DeadPrefix));
    m.rewritten(Rewrite::Filtered(FilterReason::PathMtu));
    m.rewritten(Rewrite::Reordered);
    m.rewritten(Rewrite::Reordered);
    let text = m.encode();
    has(
        &text,
        r#"getapr_answers_rewritten_total{action="filtered",reason="no_source"} 1"#,
    );
    has(
        &text,
        r#"getapr_answers_rewritten_total{action="filtered",reason="dead_prefix"} 1"#,
    );
    has(
        &text,
        r#"getapr_answers_rewritten_total{action="filtered",reason="path_mtu_blackhole"} 1"#,
    );
    has(
        &text,
        r#"getapr_answers_rewritten_total{action="reordered",reason="verdicts"} 2"#,
    );
}

#[test]
fn limits_start_at_zero_and_count_each_bite() {
    let m = metrics();
    let text = m.encode();
    for limit in Limit::ALL {
        has(
            &text,
            &format!(r#"getapr_limits_hit_total{{limit="{}"}} 0"#, limit.as_str()),
        );
    }
    m.limit_hit(Limit::JoinerDropped);
    m.limit_hit(Limit::JoinerDropped);
    m.limit_hit(Limit::HttpBusy);
    let text = m.encode();
    has(
        &text,
        r#"getapr_limits_hit_total{limit="dns_joiner_dropped"} 2"#,
    );
    has(&text, r#"getapr_limits_hit_total{limit="http_busy"} 1"#);
    assert_eq!(m.limit_count(Limit::HttpBusy), 1);
    assert_eq!(m.limit_count(Limit::TcpRefused), 0);
    for (i, limit) in Limit::ALL.iter().enumerate() {
        assert_eq!(*limit as usize, i, "ALL is in declaration order");
    }
}

#[test]
fn pairs_rtt_first_counts_by_family() {
    let m = metrics();
    let text = m.encode();
    has(&text, r#"getapr_pairs_rtt_first_total{family="ipv4"} 0"#);
    has(&text, r#"getapr_pairs_rtt_first_total{family="ipv6"} 0"#);
    m.pairs_rtt_first(true);
    m.pairs_rtt_first(true);
    m.pairs_rtt_first(false);
    let text = m.encode();
    has(&text, r#"getapr_pairs_rtt_first_total{family="ipv4"} 2"#);
    has(&text, r#"getapr_pairs_rtt_first_total{family="ipv6"} 1"#);
}

#[test]
fn upstreams_and_probes_by_label() {
    let m = metrics();
    let up: SocketAddr = "[2001:db8::53]:53".parse().unwrap();
    m.upstreams.answered(up, Duration::from_millis(3));
    m.upstreams.failed(up, UpstreamFailure::Timeout);
    m.upstreams.failed(up, UpstreamFailure::Timeout);
    m.upstreams.failed(up, UpstreamFailure::Servfail);
    let src: IpAddr = "192.0.2.7".parse().unwrap();
    m.probes.sent(src);
    m.probes.sent(src);
    m.probes.failed(src);
    let text = m.encode();
    has(
        &text,
        r#"getapr_upstream_latency_seconds_count{upstream="[2001:db8::53]:53"} 1"#,
    );
    has(
        &text,
        r#"getapr_upstream_latency_seconds_bucket{le="0.0032",upstream="[2001:db8::53]:53"} 1"#,
    );
    has(
        &text,
        r#"getapr_upstream_failures_total{upstream="[2001:db8::53]:53",reason="timeout"} 2"#,
    );
    has(
        &text,
        r#"getapr_upstream_failures_total{upstream="[2001:db8::53]:53",reason="servfail"} 1"#,
    );
    has(&text, r#"getapr_probes_sent_total{source="192.0.2.7"} 2"#);
    has(&text, r#"getapr_probes_failed_total{source="192.0.2.7"} 1"#);
}

fn source(addr: &str, interface: &str, class: Class, state: State) -> SourceVerdict {
    SourceVerdict {
        address: addr.parse().unwrap(),
        scope_id: 0,
        interface: interface.to_string(),
        class,
        state,
        link: State::Unknown,
        rtt: None,
        mapped: None,
    }
}

#[test]
fn verdict_gauges_read_the_published_snapshot() {
    let verdicts = Arc::new(ArcSwap::from_pointee(Verdicts::default()));
    let m = Metrics::new(Arc::clone(&verdicts));
    // Nothing published: the families and flags are there, unknown and
    // false; no source, and no empty source families.
    let text = m.encode();
    assert!(!text.contains("getapr_source_"), "{text}");
    has(&text, "getapr_verdict_generation 0");
    has(
        &text,
        r#"getapr_family_state{family="ipv6",state="unknown"} 1"#,
    );
    has(&text, r#"getapr_family_state{family="ipv6",state="ok"} 0"#);
    has(&text, r#"getapr_flag{name="GUA_ok"} 0"#);
    has(
        &text,
        r#"getapr_path_mtu_state{family="ipv6",state="unknown"} 1"#,
    );

    let mut v = Verdicts {
        generation: 7,
        ..Verdicts::default()
    };
    let mut gua = source("2001:db8::7", "eth0", Class::Gua, State::Ok);
    gua.rtt = Some(Duration::from_millis(12));
    v.sources = vec![
        source("192.0.2.7", "eth0", Class::Global4, State::Failed),
        gua,
        source("fe80::7", "wlan0", Class::Lla, State::Unknown),
    ];
    v.families.ipv4 = State::Failed;
    v.families.ipv6 = State::Ok;
    v.path_mtu.ipv6 = crate::probe::verdicts::Mtu::Blackhole;
    v.flags.gua_ok = true;
    v.flags.rfc1918 = false;
    verdicts.store(Arc::new(v));

    // Read at scrape time: no call told the metrics about the change.
    let text = m.encode();
    has(&text, "# TYPE getapr_verdict_generation gauge");
    has(&text, "getapr_verdict_generation 7");
    for (state, value) in [("unknown", 0), ("ok", 0), ("blackhole", 1)] {
        has(
            &text,
            &format!(r#"getapr_path_mtu_state{{family="ipv6",state="{state}"}} {value}"#),
        );
    }
    has(
        &text,
        r#"getapr_path_mtu_state{family="ipv4",state="unknown"} 1"#,
    );
    for (state, value) in [("unknown", 0), ("ok", 1), ("failed", 0)] {
        has(
            &text,
            &format!(
                r#"getapr_source_state{{source="2001:db8::7",interface="eth0",class="gua",state="{state}"}} {value}"#
            ),
        );
    }
    has(
        &text,
        r#"getapr_source_state{source="192.0.2.7",interface="eth0",class="global4",state="failed"} 1"#,
    );
    has(
        &text,
        r#"getapr_source_state{source="fe80::7",interface="wlan0",class="lla",state="unknown"} 1"#,
    );
    has(
        &text,
        r#"getapr_family_state{family="ipv4",state="failed"} 1"#,
    );
    has(&text, r#"getapr_family_state{family="ipv6",state="ok"} 1"#);
    has(&text, r#"getapr_flag{name="GUA_ok"} 1"#);
    has(&text, r#"getapr_flag{name="RFC1918"} 0"#);
    has(&text, "# TYPE getapr_source_rtt_seconds gauge");
    has(&text, "# UNIT getapr_source_rtt_seconds seconds");
    has(
        &text,
        r#"getapr_source_rtt_seconds{source="2001:db8::7"} 0.012"#,
    );
    // Only measured RTTs are exported.
    assert_eq!(text.matches("getapr_source_rtt_seconds{").count(), 1);
    assert_eq!(text.matches("getapr_flag{").count(), 10);
}
