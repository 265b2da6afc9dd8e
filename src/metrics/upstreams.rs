//! The upstream families: latency of accepted replies and failed tries,
//! per upstream, handed to the upstream pool.

use std::fmt::Display;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// One upstream, as `IP:PORT` (`[fe80::1%eth0]:53` with a zone).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct UpstreamLabels {
    upstream: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct UpstreamFailureLabels {
    upstream: String,
    reason: &'static str,
}

/// The upstream families, cloned into the pool's exchange tasks (a clone
/// shares the series).
#[derive(Debug, Clone)]
pub struct Upstreams {
    pub(super) latency: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    pub(super) failures: Family<UpstreamFailureLabels, Counter>,
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
    pub(super) fn new() -> Upstreams {
        Upstreams {
            latency: Family::new_with_constructor(latency_histogram),
            failures: Family::default(),
        }
    }

    /// The latency series of `upstream`: the pool keeps it and observes
    /// into it directly, without formatting and looking up the label for
    /// every reply.
    pub fn latency_of(&self, upstream: impl Display) -> Histogram {
        self.latency
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_string(),
            })
            .clone()
    }

    /// `upstream` gave a reply the pool accepted, `took` after the try began.
    pub fn answered(&self, upstream: impl Display, took: Duration) {
        self.latency
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn failed(&self, upstream: impl Display, reason: UpstreamFailure) {
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
