//! The limits of `getapr_limits_hit_total`: each bound on what clients can
//! make the daemon hold, and its label.

use prometheus_client::encoding::EncodeLabelSet;

/// `getapr_limits_hit_total{limit}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct LimitLabels {
    pub(super) limit: &'static str,
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
    /// A NAT64 prefix learned from router advertisements gave way to a new
    /// one: 16 per interface, 64 in all (the one refreshed longest ago).
    Nat64Prefixes,
}

impl Limit {
    pub const ALL: [Limit; 10] = [
        Limit::JoinerDropped,
        Limit::LookupEvicted,
        Limit::LookupRefused,
        Limit::TcpIdleEvicted,
        Limit::TcpSlowEvicted,
        Limit::TcpRefused,
        Limit::TcpNotAllowed,
        Limit::HttpForbidden,
        Limit::HttpBusy,
        Limit::Nat64Prefixes,
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
            Limit::Nat64Prefixes => "nat64_prefixes",
        }
    }
}
