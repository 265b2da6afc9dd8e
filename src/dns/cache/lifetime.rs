//! What may be cached and for how long: a reply's TTLs, capped, and the
//! rules of RFC 2308 for negative answers and failures.

use std::time::Duration;

use crate::dns::wire::{Reply, rcode};

/// Upper bound for positive answers (as Unbound's cache-max-ttl).
pub const MAX_TTL: u32 = 86_400;
/// RFC 2308 §5: negative answers, capped like Unbound's cache-max-negative-ttl.
pub const MAX_NEGATIVE_TTL: u32 = 3_600;
/// RFC 2308 §7.1 allows caching SERVFAIL up to 5 minutes; we keep it to a
/// few seconds so an upstream's hiccup does not outlast itself.
pub const SERVFAIL_TTL: u32 = 5;

/// How long a reply may be served from the cache, `None` when it must not be
/// cached: truncated replies, errors other than SERVFAIL, negative answers
/// without an SOA (RFC 2308 §5), and TTL 0.
pub fn lifetime(reply: &Reply) -> Option<Duration> {
    let header = reply.header();
    if header.tc() {
        return None;
    }
    let ttl = match reply.rcode() {
        rcode::NOERROR if reply.answer_count() > 0 => reply.min_ttl()?.min(MAX_TTL),
        // A negative answer may carry records too (the CNAME chain that
        // led to the missing name): none may be served past its own TTL.
        rcode::NOERROR | rcode::NXDOMAIN => reply
            .negative_ttl()?
            .min(MAX_NEGATIVE_TTL)
            .min(reply.min_ttl().unwrap_or(u32::MAX)),
        rcode::SERVFAIL => SERVFAIL_TTL,
        _ => return None,
    };
    (ttl > 0).then(|| Duration::from_secs(u64::from(ttl)))
}
