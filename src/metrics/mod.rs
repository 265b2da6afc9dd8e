//! The Prometheus metrics of `GET /metrics`, kept with `prometheus-client`
//! (the exposition format is its job, not ours).
//!
//! One [`Metrics`] lives in [`crate::dns::server::Shared`]; the code that
//! sees an event bumps the matching family with a one-line call. Label values
//! are a closed set (rcodes, qtypes, reasons) or bounded by configuration
//! (upstreams) or the host (its source addresses), so the series stay few:
//! nothing a client sends can add a series.
//!
//! The verdicts are not pushed: [`VerdictGauges`] reads the snapshot the
//! probe engine last published when `/metrics` is scraped, so the gauges can
//! never disagree with `/status`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::probe::verdicts::{State, Verdicts};

/// Answers sent to clients, by rcode and question type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct QueryLabels {
    rcode: &'static str,
    qtype: &'static str,
}

/// One upstream, as `IP:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamFailureLabels {
    upstream: String,
    reason: &'static str,
}

/// What was done to an answer and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RewriteLabels {
    action: &'static str,
    reason: &'static str,
}

/// One source address of the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

/// `getapr_build_info`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Every metric family of the daemon.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    queries: Family<QueryLabels, Counter>,
    /// The counters of `queries` by (rcode, qtype) index, each taken from
    /// the family on first use: counting an answer is then an atomic load
    /// and an increment, where `Family::get_or_create` takes a lock and
    /// hashes the label set. Filled lazily so that only the pairs seen
    /// become series (eager filling would export 8 × 16 zeros).
    query_counters: Box<[[OnceLock<Counter>; QTYPES.len() + 1]; RCODES.len() + 1]>,
    /// Client queries found in the cache (fresh).
    pub cache_hits: Counter,
    /// Client queries not in the cache, which go on to the upstreams.
    pub cache_misses: Counter,
    /// Fresh cache entries overwritten to make room for another.
    pub cache_evictions: Counter,
    /// Expired answers served because every upstream failed (RFC 8767).
    pub stale_answers: Counter,
    /// Per upstream: latency of accepted replies and failed tries.
    pub upstreams: Upstreams,
    /// `answers_rewritten` by [`Rewrite::index`]; all four series exist
    /// from the start, so `rate()` sees the first rewrite.
    rewrites: [Counter; 4],
    /// Probes sent and failed, per source.
    pub probes: Probes,
    /// `limits_hit` by [`Limit`]: every series exists from the start.
    limits: [Counter; Limit::ALL.len()],
}

impl Metrics {
    /// The families, with the verdict gauges reading `verdicts` (the
    /// snapshot the probe engine publishes into) at every scrape.
    pub fn new(verdicts: Arc<ArcSwap<Verdicts>>) -> Metrics {
        let mut registry = Registry::with_prefix("getapr");
        let queries = Family::<QueryLabels, Counter>::default();
        registry.register(
            "dns_queries",
            "Answers sent to clients, by rcode and query type",
            queries.clone(),
        );
        let cache_hits = Counter::default();
        registry.register(
            "cache_hits",
            "Client queries answered from the cache",
            cache_hits.clone(),
        );
        let cache_misses = Counter::default();
        registry.register(
            "cache_misses",
            "Client queries not found in the cache",
            cache_misses.clone(),
        );
        let cache_evictions = Counter::default();
        registry.register(
            "cache_evictions",
            "Fresh cache entries dropped to make room for another",
            cache_evictions.clone(),
        );
        let stale_answers = Counter::default();
        registry.register(
            "stale_answers",
            "Expired cached answers served because every upstream failed (RFC 8767)",
            stale_answers.clone(),
        );
        let upstreams = Upstreams {
            latency: Family::new_with_constructor(latency_histogram),
            failures: Family::default(),
        };
        registry.register_with_unit(
            "upstream_latency",
            "Time from sending a query to an upstream to its accepted reply",
            Unit::Seconds,
            upstreams.latency.clone(),
        );
        registry.register(
            "upstream_failures",
            "Upstream tries that failed, by reason",
            upstreams.failures.clone(),
        );
        let rewritten = Family::<RewriteLabels, Counter>::default();
        let rewrites = Rewrite::LABELS.map(|(action, reason)| {
            rewritten
                .get_or_create(&RewriteLabels { action, reason })
                .clone()
        });
        registry.register(
            "answers_rewritten",
            "A/AAAA/SVCB/HTTPS answers sent reordered or filtered, by reason",
            rewritten,
        );
        let probes = Probes {
            sent: Family::default(),
            failed: Family::default(),
        };
        registry.register(
            "probes_sent",
            "Probes sent, by source address",
            probes.sent.clone(),
        );
        registry.register(
            "probes_failed",
            "Probes that found no path (timeout, unreachable), by source address",
            probes.failed.clone(),
        );
        let limited = Family::<LimitLabels, Counter>::default();
        let limits = Limit::ALL.map(|limit| {
            limited
                .get_or_create(&LimitLabels {
                    limit: limit.as_str(),
                })
                .clone()
        });
        registry.register(
            "limits_hit",
            "Times a bound on what clients can make the daemon hold gave way, by limit",
            limited,
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The running getapr", build);
        registry.register_collector(Box::new(VerdictGauges(verdicts)));
        Metrics {
            registry,
            queries,
            query_counters: Box::new(std::array::from_fn(|_| {
                std::array::from_fn(|_| OnceLock::new())
            })),
            cache_hits,
            cache_misses,
            cache_evictions,
            stale_answers,
            upstreams,
            rewrites,
            probes,
            limits,
        }
    }

    /// Counts one bite of a limit (see [`Limit`]).
    pub fn limit_hit(&self, limit: Limit) {
        self.limits[limit as usize].inc();
    }

    /// How often `limit` has bitten so far (for tests and the flood suite).
    pub fn limit_count(&self, limit: Limit) -> u64 {
        self.limits[limit as usize].get()
    }

    /// Counts an answer sent to a client: `rcode` is the 12-bit one (EDNS
    /// extended rcodes such as BADVERS included).
    pub fn query(&self, rcode: u16, qtype: u16) {
        let (r, q) = (rcode_index(rcode), qtype_index(qtype));
        self.query_counters[r][q]
            .get_or_init(|| {
                let labels = QueryLabels {
                    rcode: RCODES.get(r).map_or("other", |x| x.1),
                    qtype: QTYPES.get(q).map_or("other", |x| x.1),
                };
                self.queries.get_or_create(&labels).clone()
            })
            .inc();
    }

    /// Counts an answer sent with its addresses reordered or filtered.
    pub fn rewritten(&self, rewrite: Rewrite) {
        self.rewrites[rewrite.index()].inc();
    }

    /// The registry in the Prometheus text format (`# EOF` ended, as
    /// OpenMetrics, which Prometheus reads too).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail, and neither can our collector.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// `getapr_limits_hit_total{limit}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

/// A bound on what clients can make the daemon hold, at the moment it
/// gives way: each is a series of `getapr_limits_hit_total`, so an operator
/// sees an attack (or a buggy client) in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Limit {
    /// A UDP query identical to a lookup in flight was dropped: that
    /// lookup already had its most waiting clients, or every lookup in
    /// flight together had.
    JoinerDropped,
    /// A lookup in flight gave way to a new one at `dns.max_inflight`
    /// (the oldest of the client holding the most); its clients got
    /// SERVFAIL.
    LookupEvicted,
    /// A new lookup was refused (SERVFAIL) at `dns.max_inflight`: its
    /// client holds the most lookups already and none of them has waited
    /// long enough to give way.
    LookupRefused,
    /// An idle TCP client connection was closed to make room for a new one
    /// at `dns.tcp_max_connections`.
    TcpIdleEvicted,
    /// A TCP client connection that had sent part of a message and stalled
    /// was closed to make room for a new one.
    TcpSlowEvicted,
    /// A new TCP connection was closed at once: every slot was busy with
    /// queries being answered.
    TcpRefused,
    /// A TCP connection from outside `dns.allow` was closed before it took
    /// a slot.
    TcpNotAllowed,
    /// The sidecar answered 403: a client from outside `http.allow`, or a
    /// request the Host/Origin guard against DNS rebinding turned away.
    HttpForbidden,
    /// An HTTP request got 503: the sidecar's connections or `/pairs`
    /// lookups were at their bound.
    HttpBusy,
}

impl Limit {
    pub const ALL: [Limit; 9] = [
        Limit::JoinerDropped,
        Limit::LookupEvicted,
        Limit::LookupRefused,
        Limit::TcpIdleEvicted,
        Limit::TcpSlowEvicted,
        Limit::TcpRefused,
        Limit::TcpNotAllowed,
        Limit::HttpForbidden,
        Limit::HttpBusy,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::JoinerDropped => "dns_joiner_dropped",
            Limit::LookupEvicted => "dns_lookup_evicted",
            Limit::LookupRefused => "dns_lookup_refused",
            Limit::TcpIdleEvicted => "tcp_idle_evicted",
            Limit::TcpSlowEvicted => "tcp_slow_evicted",
            Limit::TcpRefused => "tcp_refused",
            Limit::TcpNotAllowed => "tcp_not_allowed",
            Limit::HttpForbidden => "http_forbidden",
            Limit::HttpBusy => "http_busy",
        }
    }
}

/// What the rewrite did to an answer that was sent (see
/// [`crate::dns::rewrite::Outcome`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// Addresses put in the order the verdicts give.
    Reordered,
    /// Addresses removed; the reason of the first one removed (the one the
    /// Extended DNS Error text gives first).
    Filtered(FilterReason),
}

/// Why an address was removed from an answer, as far as the `reason` label
/// tells it: the kind of reason, never the prefix or address itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterReason {
    /// Its family has no working source.
    NoSource,
    /// Every probed destination of its prefix failed.
    DeadPrefix,
    /// Probed from every source, reached from none.
    Dead,
}

impl Rewrite {
    /// `action` and `reason` by [`Rewrite::index`]: never the prefix or
    /// address itself, which would make a series per destination.
    const LABELS: [(&'static str, &'static str); 4] = [
        ("reordered", "verdicts"),
        ("filtered", "no_source"),
        ("filtered", "dead_prefix"),
        ("filtered", "dead"),
    ];

    fn index(self) -> usize {
        match self {
            Rewrite::Reordered => 0,
            Rewrite::Filtered(FilterReason::NoSource) => 1,
            Rewrite::Filtered(FilterReason::DeadPrefix) => 2,
            Rewrite::Filtered(FilterReason::Dead) => 3,
        }
    }
}

/// The upstream families, cloned into the pool's exchange tasks (a clone
/// shares the series).
#[derive(Debug, Clone)]
pub struct Upstreams {
    latency: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    failures: Family<UpstreamFailureLabels, Counter>,
}

/// Why one try of one upstream failed (the pool then tries the next).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// No reply in time, over UDP or over TCP after truncation.
    Timeout,
    /// A socket error: ICMP unreachable, connection refused or reset.
    Network,
    /// Answered SERVFAIL.
    Servfail,
    /// Answered REFUSED.
    Refused,
}

impl UpstreamFailure {
    fn as_str(self) -> &'static str {
        match self {
            UpstreamFailure::Timeout => "timeout",
            UpstreamFailure::Network => "network",
            UpstreamFailure::Servfail => "servfail",
            UpstreamFailure::Refused => "refused",
        }
    }
}

impl Upstreams {
    /// `upstream` gave a reply the pool accepted, `took` after the try began.
    pub fn answered(&self, upstream: SocketAddr, took: Duration) {
        self.latency
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn failed(&self, upstream: SocketAddr, reason: UpstreamFailure) {
        self.failures
            .get_or_create(&UpstreamFailureLabels {
                upstream: upstream.to_string(),
                reason: reason.as_str(),
            })
            .inc();
    }
}

fn latency_histogram() -> Histogram {
    // 50 µs (a loopback resolver) to 3.2 s (past the default 2 s timeout).
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

/// The probe families, handed to the probe driver.
#[derive(Debug, Clone)]
pub struct Probes {
    sent: Family<SourceLabels, Counter>,
    failed: Family<SourceLabels, Counter>,
}

impl Probes {
    pub fn sent(&self, source: IpAddr) {
        self.sent.get_or_create(&source_labels(source)).inc();
    }

    pub fn failed(&self, source: IpAddr) {
        self.failed.get_or_create(&source_labels(source)).inc();
    }
}

fn source_labels(source: IpAddr) -> SourceLabels {
    SourceLabels {
        source: source.to_string(),
    }
}

/// RFC 1035 §4.1.1 and RFC 6891 §9 (BADVERS) rcodes by name; the rest
/// count as `other`.
const RCODES: [(u16, &str); 7] = [
    (0, "NOERROR"),
    (1, "FORMERR"),
    (2, "SERVFAIL"),
    (3, "NXDOMAIN"),
    (4, "NOTIMP"),
    (5, "REFUSED"),
    (16, "BADVERS"),
];

/// The common qtypes by name; the rest count as `other`, so a client
/// cannot grow the label set.
const QTYPES: [(u16, &str); 15] = [
    (1, "A"),
    (2, "NS"),
    (5, "CNAME"),
    (6, "SOA"),
    (12, "PTR"),
    (15, "MX"),
    (16, "TXT"),
    (28, "AAAA"),
    (33, "SRV"),
    (35, "NAPTR"),
    (43, "DS"),
    (48, "DNSKEY"),
    (64, "SVCB"),
    (65, "HTTPS"),
    (255, "ANY"),
];

/// Index into [`RCODES`]; `RCODES.len()` for `other`.
fn rcode_index(rcode: u16) -> usize {
    match rcode {
        0..=5 => usize::from(rcode),
        16 => 6,
        _ => RCODES.len(),
    }
}

/// Index into [`QTYPES`]; `QTYPES.len()` for `other`.
fn qtype_index(qtype: u16) -> usize {
    match qtype {
        1 => 0,
        2 => 1,
        5 => 2,
        6 => 3,
        12 => 4,
        15 => 5,
        16 => 6,
        28 => 7,
        33 => 8,
        35 => 9,
        43 => 10,
        48 => 11,
        64 => 12,
        65 => 13,
        255 => 14,
        _ => QTYPES.len(),
    }
}

/// The verdict gauges, computed from the published snapshot at scrape time.
///
/// A source's or family's state is three-valued (unknown, ok, failed), so
/// it is exported as a state set, the way node_exporter exports a systemd
/// unit's state and kube-state-metrics a pod's phase: one series per state,
/// 1 for the present one and 0 for the others. A `_up` gauge would have to
/// drop the source or invent a value for "not probed yet": absence reads
/// the same as "no such source" and breaks `absent()` alerts, and a -1
/// poisons `sum`/`avg`. With the state set, `getapr_source_state{state="ok"}`
/// is the 1/0 "up" gauge, `{state="failed"} == 1` the alert, and every
/// series keeps existing when the state moves, so nothing goes stale.
#[derive(Debug)]
pub struct VerdictGauges(pub Arc<ArcSwap<Verdicts>>);

const STATES: [State; 3] = [State::Unknown, State::Ok, State::Failed];

impl Collector for VerdictGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let v = self.0.load();

        let e = encoder.encode_descriptor(
            "verdict_generation",
            "Generation of the published verdicts; moves when a verdict changes.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(v.generation).encode(e)?;

        // Families without a sample are left out, as the registry does.
        if !v.sources.is_empty() {
            let e = encoder.encode_descriptor(
                "source_state",
                "Whether a source address reaches the Internet (a link-scoped one: its \
                 gateway); 1 for its present state.",
                None,
                MetricType::Gauge,
            )?;
            encode_sources(&v, e)?;
        }

        let mut e = encoder.encode_descriptor(
            "family_state",
            "Whether an address family has a working source; 1 for its present state.",
            None,
            MetricType::Gauge,
        )?;
        for (family, present) in [("ipv4", v.families.ipv4), ("ipv6", v.families.ipv6)] {
            for state in STATES {
                let labels = [("family", family), ("state", state.as_str())];
                ConstGauge::new(i64::from(present == state)).encode(e.encode_family(&labels)?)?;
            }
        }

        let mut e = encoder.encode_descriptor(
            "flag",
            "The getapr flags of /status, 1 when set.",
            None,
            MetricType::Gauge,
        )?;
        for (name, set) in v.flags.named() {
            ConstGauge::new(i64::from(set)).encode(e.encode_family(&[("name", name)])?)?;
        }

        if v.sources.iter().any(|s| s.rtt.is_some()) {
            let unit = Unit::Seconds;
            let mut e = encoder.encode_descriptor(
                "source_rtt",
                "Smoothed RTT of a source's verdict probes, when measured.",
                Some(&unit),
                MetricType::Gauge,
            )?;
            for s in &v.sources {
                if let Some(rtt) = s.rtt {
                    let source = s.address.to_string();
                    let labels = [("source", source.as_str())];
                    ConstGauge::new(rtt.as_secs_f64()).encode(e.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

/// `source_state`: the state set of every source.
fn encode_sources(v: &Verdicts, mut e: MetricEncoder<'_>) -> fmt::Result {
    for s in &v.sources {
        let source = s.address.to_string();
        for state in STATES {
            let labels = [
                ("source", source.as_str()),
                ("interface", s.interface.as_str()),
                ("class", s.class.as_str()),
                ("state", state.as_str()),
            ];
            ConstGauge::new(i64::from(s.state == state)).encode(e.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Class;
    use crate::probe::verdicts::SourceVerdict;

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
        ] {
            has(
                &text,
                &format!(
                    r#"getapr_answers_rewritten_total{{action="{action}",reason="{reason}"}} 0"#
                ),
            );
        }
        m.rewritten(Rewrite::Filtered(FilterReason::NoSource));
        m.rewritten(Rewrite::Filtered(FilterReason::DeadPrefix));
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
        v.flags.gua_ok = true;
        v.flags.rfc1918 = false;
        verdicts.store(Arc::new(v));

        // Read at scrape time: no call told the metrics about the change.
        let text = m.encode();
        has(&text, "# TYPE getapr_verdict_generation gauge");
        has(&text, "getapr_verdict_generation 7");
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
}
