//! The failure cache (RFC 9520): names whose resolution failed lately
//! fail again at once, without a query to the upstreams.

use crate::sync::lock;
use std::collections::HashMap;
use std::time::Instant;

use super::{Settings, Shared};
use crate::dns::cache::Key;

/// Names remembered as failed (RFC 9520 §3.2 wants the cache bounded).
const MAX_FAILURES: usize = 4096;

/// Names whose resolution failed, until when (RFC 9520 §3.2: resolvers
/// MUST cache resolution failures, for at least 1 s and at most 5 min).
/// Bounded: when full of live entries, a new failure is not remembered.
#[derive(Debug, Default)]
pub(super) struct Failures {
    until: HashMap<Key, Instant>,
}

impl Failures {
    pub(super) fn recent(&self, key: &Key, now: Instant) -> bool {
        self.until.get(key).is_some_and(|&until| now < until)
    }

    pub(super) fn insert(&mut self, key: Key, until: Instant, now: Instant) {
        if self.until.len() >= MAX_FAILURES {
            self.until.retain(|_, t| *t > now);
            if self.until.len() >= MAX_FAILURES {
                return;
            }
        }
        self.until.insert(key, until);
    }
}

impl Shared {
    /// Whether `key`'s resolution failed less than `dns.failure_cache_s`
    /// ago.
    pub(super) fn failed_recently(&self, key: &Key, now: Instant, settings: &Settings) -> bool {
        !settings.failure_cache.is_zero() && lock(&self.failures).recent(key, now)
    }
}
