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

use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::probe::verdicts::Verdicts;

mod limits;
mod probes;
mod queries;
mod rewrites;
mod upstreams;
mod verdicts;

#[cfg(test)]
mod tests;

pub use limits::Limit;
use limits::LimitLabels;
pub use probes::Probes;
use queries::Queries;
use rewrites::RewriteLabels;
pub use rewrites::{FilterReason, Rewrite};
pub use upstreams::{UpstreamFailure, Upstreams};
pub use verdicts::VerdictGauges;

/// `getapr_build_info`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// `getapr_dns64_synthesized`: the query type answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct QtypeLabels {
    qtype: &'static str,
}

/// `getapr_pairs_rtt_first`: the family put first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FamilyLabels {
    family: &'static str,
}

/// Every metric family of the daemon.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `dns_queries` by rcode and qtype.
    queries: Queries,
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
    rewrites: [Counter; 5],
    /// Probes sent and failed per source, early rounds, stuck connects.
    pub probes: Probes,
    /// `limits_hit` by [`Limit`]: every series exists from the start.
    limits: [Counter; Limit::ALL.len()],
    /// `pairs_rtt_first`, IPv4 then IPv6; both exist from the start.
    pairs_rtt_first: [Counter; 2],
    /// `dns64_synthesized`, AAAA then PTR; both exist from the start.
    dns64_synthesized: [Counter; 2],
}

impl Metrics {
    /// The families, with the verdict gauges reading `verdicts` (the
    /// snapshot the probe engine publishes into) at every scrape.
    pub fn new(verdicts: Arc<ArcSwap<Verdicts>>) -> Metrics {
        let mut registry = Registry::with_prefix("getapr");
        let queries = Queries::new();
        registry.register(
            "dns_queries",
            "Answers sent to clients, by rcode and query type",
            queries.family.clone(),
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
        let upstreams = Upstreams::new();
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
        let probes = Probes::new();
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
        registry.register(
            "probe_early_rounds",
            "Probe rounds started before their interval, by trigger: miss (confirming a bad round), syn_sent (an application's connect stuck), gateway (default gateways changed), path_mtu (confirming a stalled large probe)",
            probes.early_rounds.clone(),
        );
        registry.register(
            "stuck_connects",
            "Applications' TCP connects seen stuck in SYN-SENT towards a global address, by family",
            probes.stuck_connects.clone(),
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
        let rtt_first = Family::<FamilyLabels, Counter>::default();
        let pairs_rtt_first = ["ipv4", "ipv6"]
            .map(|family| rtt_first.get_or_create(&FamilyLabels { family }).clone());
        registry.register(
            "pairs_rtt_first",
            "/pairs answers led by this family because the other family's best pair was \
             slower by more than policy.rtt_margin_ms (RFC 6724 alone would have led with it)",
            rtt_first,
        );
        let synthesized = Family::<QtypeLabels, Counter>::default();
        let dns64_synthesized =
            ["AAAA", "PTR"].map(|qtype| synthesized.get_or_create(&QtypeLabels { qtype }).clone());
        registry.register(
            "dns64_synthesized",
            "Answers sent with records DNS64 synthesized (RFC 6147): AAAA from A records \
             under a NAT64 prefix, PTR under a prefix from the IPv4's in-addr.arpa",
            synthesized,
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
            cache_hits,
            cache_misses,
            cache_evictions,
            stale_answers,
            upstreams,
            rewrites,
            probes,
            limits,
            pairs_rtt_first,
            dns64_synthesized,
        }
    }

    /// Counts an answer sent with records DNS64 synthesized, by its query
    /// type (AAAA or PTR; nothing else is synthesized).
    pub fn dns64_synthesized(&self, qtype: u16) {
        let i = usize::from(qtype != crate::dns::wire::rtype::AAAA);
        self.dns64_synthesized[i].inc();
    }

    /// How many answers DNS64 synthesized so far: AAAA and PTR.
    pub fn dns64_synthesized_count(&self) -> [u64; 2] {
        self.dns64_synthesized.each_ref().map(Counter::get)
    }

    /// Counts a `/pairs` answer whose leading family the RTT rule chose
    /// ([`crate::policy::RttLead`]).
    pub fn pairs_rtt_first(&self, ipv4: bool) {
        self.pairs_rtt_first[usize::from(!ipv4)].inc();
    }

    /// Counts one bite of a limit (see [`Limit`]).
    pub fn limit_hit(&self, limit: Limit) {
        self.limits[limit as usize].inc();
    }

    /// The counter of `limit`, for a task that counts without the rest of
    /// the metrics (the probe driver).
    pub fn limit_counter(&self, limit: Limit) -> Counter {
        self.limits[limit as usize].clone()
    }

    /// How often `limit` has bitten so far (for tests and the flood suite).
    pub fn limit_count(&self, limit: Limit) -> u64 {
        self.limits[limit as usize].get()
    }

    /// Counts an answer sent to a client: `rcode` is the 12-bit one (EDNS
    /// extended rcodes such as BADVERS included).
    pub fn query(&self, rcode: u16, qtype: u16) {
        self.queries.count(rcode, qtype, 1);
    }

    /// Counts `n` answers alike at once (a batch's).
    pub fn queries_by(&self, rcode: u16, qtype: u16, n: u64) {
        self.queries.count(rcode, qtype, n);
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
