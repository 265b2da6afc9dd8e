//! The Prometheus metrics of `GET /metrics`, kept with `prometheus-client`
//! (the exposition format is its job, not ours).
//!
//! One [`Metrics`] lives in [`crate::dns::server::Shared`]; the code that
//! sees an event bumps the matching family with a one-line call. Label values
//! are a closed set (rcodes, qtypes, reasons) or bounded by configuration
//! (upstreams, the host's source addresses), so the series stay few.

use std::fmt;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Answers sent to clients, by rcode and question type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct QueryLabels {
    pub rcode: String,
    pub qtype: String,
}

/// One upstream, as `IP:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
}

/// Why an upstream try failed: `timeout`, `servfail`, `refused`, `network`,
/// `truncated`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct UpstreamFailureLabels {
    pub upstream: String,
    pub reason: String,
}

/// What was done to an answer (`reordered` or `filtered`) and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RewriteLabels {
    pub action: String,
    pub reason: String,
}

/// One source address of the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

/// `getapr_build_info`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs (a loopback resolver) to 3.2 s (past the default 2 s timeout).
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_05, 2.0, 17,
    ))
}

/// Every metric family of the daemon.
pub struct Metrics {
    registry: Registry,
    pub queries: Family<QueryLabels, Counter>,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub cache_evictions: Counter,
    pub upstream_latency: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    pub upstream_failures: Family<UpstreamFailureLabels, Counter>,
    pub rewritten: Family<RewriteLabels, Counter>,
    pub probes_sent: Family<SourceLabels, Counter>,
    pub probes_failed: Family<SourceLabels, Counter>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("getapr"),
            queries: Family::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_evictions: Counter::default(),
            upstream_latency: Family::new_with_constructor(latency_histogram),
            upstream_failures: Family::default(),
            rewritten: Family::default(),
            probes_sent: Family::default(),
            probes_failed: Family::default(),
        };
        let registry = &mut m.registry;
        registry.register(
            "dns_queries",
            "Answers sent to clients, by rcode and query type",
            m.queries.clone(),
        );
        registry.register(
            "cache_hits",
            "Queries answered from the cache",
            m.cache_hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Queries that went to the upstreams",
            m.cache_misses.clone(),
        );
        registry.register(
            "cache_evictions",
            "Live cache entries dropped to make room",
            m.cache_evictions.clone(),
        );
        registry.register(
            "upstream_latency_seconds",
            "Time from sending a query to an upstream to its accepted reply",
            m.upstream_latency.clone(),
        );
        registry.register(
            "upstream_failures",
            "Upstream tries that failed, by reason",
            m.upstream_failures.clone(),
        );
        registry.register(
            "answers_rewritten",
            "A/AAAA/SVCB answers reordered or filtered, by reason",
            m.rewritten.clone(),
        );
        registry.register(
            "probes_sent",
            "Probes sent, by source address",
            m.probes_sent.clone(),
        );
        registry.register(
            "probes_failed",
            "Probes that got no answer in time, by source address",
            m.probes_failed.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        registry.register("build_info", "The running getapr", build);
        m
    }

    /// Counts an answer sent to a client.
    pub fn query(&self, rcode: u8, qtype: u16) {
        self.queries
            .get_or_create(&QueryLabels {
                rcode: rcode_name(rcode).to_string(),
                qtype: qtype_name(qtype),
            })
            .inc();
    }

    /// The registry in the Prometheus text format (`# EOF` ended, as
    /// OpenMetrics, which Prometheus reads too).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The registry, for collectors added by the daemon (verdict gauges).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }
}

/// RFC 1035/6895 rcode mnemonics; others by number.
fn rcode_name(rcode: u8) -> &'static str {
    match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => "other",
    }
}

/// The common qtypes by name; the rest count as `other`, so a client
/// cannot grow the label set.
fn qtype_name(qtype: u16) -> String {
    let name = match qtype {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        43 => "DS",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        _ => "other",
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_query_shows_in_the_text() {
        let m = Metrics::new();
        m.query(3, 28);
        m.query(3, 28);
        m.query(0, 4242);
        let text = m.encode();
        assert!(
            text.contains(r#"getapr_dns_queries_total{rcode="NXDOMAIN",qtype="AAAA"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"getapr_dns_queries_total{rcode="NOERROR",qtype="other"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"getapr_build_info{version=""#), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
