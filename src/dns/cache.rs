//! TEMPORARY stand-in with the agreed API; replaced by the O(1) LRU.
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    name: Box<[u8]>,
    qtype: u16,
    qclass: u16,
    do_bit: bool,
    cd: bool,
}

impl Key {
    pub fn new(qname_wire: &[u8], qtype: u16, qclass: u16, do_bit: bool, cd: bool) -> Key {
        Key {
            name: qname_wire.to_ascii_lowercase().into(),
            qtype,
            qclass,
            do_bit,
            cd,
        }
    }
}

#[derive(Debug)]
pub struct Cache<V> {
    map: HashMap<Key, (V, Instant, Instant)>,
    capacity: usize,
}

impl<V> Cache<V> {
    pub fn new(capacity: usize) -> Self {
        Cache {
            map: HashMap::new(),
            capacity,
        }
    }
    pub fn get(&mut self, key: &Key, now: Instant) -> Option<(&V, Duration)> {
        let (v, at, exp) = self.map.get(key)?;
        (now < *exp).then(|| (v, now - *at))
    }
    pub fn insert(&mut self, key: Key, value: V, now: Instant, ttl: Duration) {
        if self.capacity == 0 {
            return;
        }
        if self.map.len() >= self.capacity {
            self.map.clear();
        }
        self.map.insert(key, (value, now, now + ttl));
    }
    pub fn resize(&mut self, capacity: usize) {
        self.capacity = capacity;
        self.map.clear();
    }
    pub fn clear(&mut self) {
        self.map.clear();
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

// ---- cache policy (kept when the LRU lands) ----

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
pub fn lifetime(reply: &super::wire::Reply) -> Option<std::time::Duration> {
    use super::wire::rcode;
    let header = reply.header();
    if header.tc() {
        return None;
    }
    let ttl = match reply.rcode() {
        rcode::NOERROR if reply.answer_count() > 0 => reply.min_ttl()?.min(MAX_TTL),
        rcode::NOERROR | rcode::NXDOMAIN => reply.negative_ttl()?.min(MAX_NEGATIVE_TTL),
        rcode::SERVFAIL => SERVFAIL_TTL,
        _ => return None,
    };
    (ttl > 0).then(|| std::time::Duration::from_secs(u64::from(ttl)))
}

/// Locks the cache; a panic elsewhere while it was held leaves at worst a
/// stale entry, so poisoning is not fatal.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
