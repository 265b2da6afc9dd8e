//! The reply cache: an O(1) LRU with TTL expiry, keyed by [`Key`].
//!
//! Pure: no I/O and no clock. Every call that needs the time takes `now`, so
//! tests drive it with made-up instants and the server decides which clock
//! and which lock to use.
//!
//! Layout: a hash table of `u32` slots (hashbrown's `HashTable`, the keys
//! being the nodes' own) points into a slab (`Vec<Node<V>>`) whose
//! nodes form a doubly linked recency list through `u32` indices. That keeps
//! every operation O(1) without `unsafe`, without a pointer per link and
//! without an allocation per entry beyond the slab itself. Once the cache is
//! full the slab never grows again: the least recently used slot is
//! overwritten in place, so a flood of unique names (the case that sinks
//! dnsmasq from 139k to 14k QPS) costs one eviction per insert and nothing
//! more.
//!
//! Expired entries are not scanned for. [`Cache::get`] refuses them and does
//! not promote them, so they drift to the LRU tail and are the first to be
//! overwritten; an insert for the same key overwrites them in place. They are
//! deliberately *not* dropped by `get`: the usual flow after a miss is to ask
//! the upstream, and if that fails RFC 8767 §4 wants the stale answer, which
//! [`Cache::get_stale`] can only give if it is still there.
//!
//! The map keeps std's `RandomState` (SipHash-1-3 with a per-process random
//! key): names are chosen by whoever sends queries, and a predictable hash
//! would let them build collision chains. The hash is a few tens of
//! nanoseconds of a ~2 µs cache hit, not worth trading away.

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use hashbrown::HashTable;
use std::time::{Duration, Instant};

/// A cache key: lower-cased wire-format qname, qtype, qclass, DO and CD.
///
/// DO and CD are part of the key because the upstream's answer depends on
/// them (RRSIGs present or not, validation done or not), so a reply to one
/// must never answer the other.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key {
    name: Name,
    qtype: u16,
    qclass: u16,
    do_bit: bool,
    cd: bool,
}

impl Key {
    /// Builds a key from an uncompressed wire-format name (length-prefixed
    /// labels, normally ending with the root label).
    ///
    /// Only ASCII `A`–`Z` inside label contents is lower-cased (RFC 4343 §3:
    /// case-insensitive comparison is ASCII-only); length octets are copied
    /// as they are, even when they happen to be in `0x41..=0x5A`. The caller
    /// is expected to have validated the name; on malformed input (a length
    /// running past the end, label-type bits set) this still never panics
    /// and returns a deterministic key, which simply matches nothing valid.
    pub fn new(qname_wire: &[u8], qtype: u16, qclass: u16, do_bit: bool, cd: bool) -> Key {
        Key {
            name: Name::lowercased(qname_wire),
            qtype,
            qclass,
            do_bit,
            cd,
        }
    }

    /// The lower-cased wire-format name.
    pub fn qname(&self) -> &[u8] {
        self.name.as_bytes()
    }

    pub fn qtype(&self) -> u16 {
        self.qtype
    }

    pub fn qclass(&self) -> u16 {
        self.qclass
    }

    pub fn do_bit(&self) -> bool {
        self.do_bit
    }

    pub fn cd(&self) -> bool {
        self.cd
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("qname", &format_args!("{}", self.qname().escape_ascii()))
            .field("qtype", &self.qtype)
            .field("qclass", &self.qclass)
            .field("do_bit", &self.do_bit)
            .field("cd", &self.cd)
            .finish()
    }
}

/// Wire names up to this many bytes are stored inside the key.
///
/// 30 makes `Key` 40 bytes on 64-bit targets and covers names of up to 28
/// characters (`www.google-analytics.com` is 26 on the wire). Inline names
/// mean building a key for a lookup does not allocate. It also costs less
/// memory than a boxed name: 40 bytes against 24 + a 32-byte malloc chunk.
const INLINE: usize = 30;

/// A name's bytes, inline when short. Equality and hashing look only at the
/// bytes, so the representation never leaks into key identity.
#[derive(Clone)]
enum Name {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Name {
    fn lowercased(wire: &[u8]) -> Name {
        let mut name = if wire.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..wire.len()].copy_from_slice(wire);
            Name::Inline {
                // Cannot truncate: wire.len() <= INLINE < 256.
                len: wire.len() as u8,
                bytes,
            }
        } else {
            Name::Heap(wire.into())
        };
        lowercase_labels(name.as_bytes_mut());
        name
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Name::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Name::Heap(bytes) => bytes,
        }
    }

    fn as_bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Name::Inline { len, bytes } => &mut bytes[..usize::from(*len)],
            Name::Heap(bytes) => bytes,
        }
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Name {}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

/// Lower-cases label contents, stepping over length octets.
fn lowercase_labels(name: &mut [u8]) {
    let mut at = 0;
    while at < name.len() {
        let len = usize::from(name[at]);
        if len == 0 {
            break;
        }
        let start = at + 1;
        let end = (start + len).min(name.len());
        name[start..end].make_ascii_lowercase();
        at = end;
    }
}

/// Cumulative counters. They are never reset (not even by
/// [`Cache::clear`]), so they can be exported as Prometheus counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lookups (`get`, `get_stale`) that returned an entry.
    pub hits: u64,
    /// Lookups that returned nothing, whether the key was absent or too old.
    pub misses: u64,
    /// Values stored, including ones that replaced an entry for the same key.
    pub inserts: u64,
    /// Entries dropped for room while still fresh (or, for `resize`, which has
    /// no clock, any entry dropped). A steadily rising count means the cache
    /// is too small.
    pub evictions: u64,
    /// Entries dropped or overwritten after their TTL had passed.
    pub expired: u64,
}

/// Marks the end of the recency list.
const NIL: u32 = u32::MAX;

/// Slab indices are `u32` (half the size of `usize` links), so the largest
/// capacity is the number of indices that are not `NIL`.
const MAX_CAPACITY: usize = u32::MAX as usize;

/// An LRU cache of `V` with per-entry TTL; see the module documentation.
pub struct Cache<V> {
    map: Index,
    /// Dense: `nodes[..len]` are all live, so no slot needs an `Option`.
    nodes: Vec<Node<V>>,
    /// Most recently used.
    head: u32,
    /// Least recently used: the next to go.
    tail: u32,
    capacity: usize,
    stats: Stats,
}

struct Node<V> {
    key: Key,
    value: V,
    inserted: Instant,
    /// `None` when `inserted + ttl` does not fit in an `Instant`: never expires.
    expires: Option<Instant>,
    prev: u32,
    next: u32,
}

impl<V> Cache<V> {
    /// An empty cache holding at most `capacity` entries; 0 disables it.
    ///
    /// Nothing is allocated up front: an idle daemon with a large configured
    /// cache should not pay for it. Growth up to `capacity` is amortised
    /// O(1); once full, the slab is reused and never grows.
    /// Capacities above `u32::MAX` are clamped to it.
    pub fn new(capacity: usize) -> Cache<V> {
        Cache {
            map: Index::default(),
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity: capacity.min(MAX_CAPACITY),
            stats: Stats::default(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries held, including expired ones not yet overwritten.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The entry for `key` if it is fresh (`age < ttl`), with its age, and
    /// marks it most recently used.
    ///
    /// An expired entry is neither returned nor promoted; it stays for
    /// [`get_stale`](Self::get_stale) until it is overwritten.
    pub fn get(&mut self, key: &Key, now: Instant) -> Option<(&V, Duration)> {
        self.lookup(key, now, Duration::ZERO)
    }

    /// Like [`get`](Self::get), but also returns an entry whose TTL ran out
    /// less than `max_stale` ago (RFC 8767 serve-stale). The end of the
    /// window is exclusive, as the TTL is for `get`, so
    /// `get_stale(key, now, Duration::ZERO)` is exactly `get(key, now)`.
    ///
    /// A stale entry that is served is promoted: it is in use.
    pub fn get_stale(
        &mut self,
        key: &Key,
        now: Instant,
        max_stale: Duration,
    ) -> Option<(&V, Duration)> {
        self.lookup(key, now, max_stale)
    }

    /// The fresh entry for `key`, to look at or change, without marking it
    /// used or counting a hit or miss: for the daemon's own bookkeeping
    /// (the rewritten view of an entry, the other family of a name).
    pub fn peek_mut(&mut self, key: &Key, now: Instant) -> Option<&mut V> {
        let idx = self.map.get(&self.nodes, key)?;
        let node = &mut self.nodes[slot(idx)];
        is_live(node.expires, Duration::ZERO, now).then_some(&mut node.value)
    }

    /// Stores `value` for `key` as the most recently used entry, fresh until
    /// `now + ttl`.
    ///
    /// An entry for the same key is overwritten in place. Otherwise, when
    /// the cache is full, the least recently used entry is overwritten. With
    /// capacity 0 this does nothing.
    ///
    /// Returns whether a fresh entry was evicted to make room (what
    /// [`Stats::evictions`] counts; an expired one overwritten does not
    /// count), so the caller can export it without reading the stats.
    pub fn insert(&mut self, key: Key, value: V, now: Instant, ttl: Duration) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let expires = now.checked_add(ttl);
        self.stats.inserts += 1;
        let hash = self.map.hash(&key);
        let (idx, evicted) = match self.map.find(&self.nodes, hash, &key) {
            Some(idx) => {
                let node = &mut self.nodes[slot(idx)];
                if !is_live(node.expires, Duration::ZERO, now) {
                    self.stats.expired += 1;
                }
                node.value = value;
                node.inserted = now;
                node.expires = expires;
                self.promote(idx);
                return false;
            }
            None if self.nodes.len() < self.capacity => {
                let idx = index(self.nodes.len());
                self.nodes.push(Node {
                    key,
                    value,
                    inserted: now,
                    expires,
                    prev: NIL,
                    next: NIL,
                });
                self.map.insert(&self.nodes, hash, idx);
                (idx, false)
            }
            None => {
                // Full: the LRU slot is reused as it is, so neither the slab
                // nor the map grows under a flood of new names.
                let idx = self.tail;
                self.unlink(idx);
                let node = &mut self.nodes[slot(idx)];
                let evicted = is_live(node.expires, Duration::ZERO, now);
                if evicted {
                    self.stats.evictions += 1;
                } else {
                    self.stats.expired += 1;
                }
                let old = std::mem::replace(&mut node.key, key);
                node.value = value;
                node.inserted = now;
                node.expires = expires;
                self.map.remove(self.map.hash(&old), idx);
                self.map.insert(&self.nodes, hash, idx);
                (idx, evicted)
            }
        };
        self.push_front(idx);
        evicted
    }

    /// Removes the entry for `key`, fresh or not, and returns its value.
    pub fn remove(&mut self, key: &Key) -> Option<V> {
        let hash = self.map.hash(key);
        let idx = self.map.find(&self.nodes, hash, key)?;
        self.map.remove(hash, idx);
        self.unlink(idx);
        Some(self.take(idx).value)
    }

    /// Drops every entry. Counters are kept; allocations too, for refilling.
    pub fn clear(&mut self) {
        self.map.clear();
        self.nodes.clear();
        self.head = NIL;
        self.tail = NIL;
    }

    /// Changes the capacity, dropping least recently used entries to fit,
    /// and gives back memory when shrinking (this runs on a config reload,
    /// not on the hot path, so the O(n) rehash is fine).
    pub fn resize(&mut self, capacity: usize) {
        let capacity = capacity.min(MAX_CAPACITY);
        let shrinking = capacity < self.capacity;
        self.capacity = capacity;
        while self.nodes.len() > capacity {
            let idx = self.tail;
            self.unlink(idx);
            self.map
                .remove(self.map.hash(&self.nodes[slot(idx)].key), idx);
            self.take(idx);
            self.stats.evictions += 1;
        }
        if shrinking {
            self.nodes.shrink_to(capacity);
            self.map.shrink_to(&self.nodes, capacity);
        }
    }

    fn lookup(&mut self, key: &Key, now: Instant, window: Duration) -> Option<(&V, Duration)> {
        let Some(idx) = self.map.get(&self.nodes, key) else {
            self.stats.misses += 1;
            return None;
        };
        let node = &self.nodes[slot(idx)];
        if !is_live(node.expires, window, now) {
            self.stats.misses += 1;
            return None;
        }
        // A caller whose `now` was taken before the insert sees age 0.
        let age = now.saturating_duration_since(node.inserted);
        self.stats.hits += 1;
        self.promote(idx);
        Some((&self.nodes[slot(idx)].value, age))
    }

    fn promote(&mut self, idx: u32) {
        if self.head != idx {
            self.unlink(idx);
            self.push_front(idx);
        }
    }

    fn push_front(&mut self, idx: u32) {
        let old_head = self.head;
        {
            let node = &mut self.nodes[slot(idx)];
            node.prev = NIL;
            node.next = old_head;
        }
        if old_head == NIL {
            self.tail = idx;
        } else {
            self.nodes[slot(old_head)].prev = idx;
        }
        self.head = idx;
    }

    fn unlink(&mut self, idx: u32) {
        let (prev, next) = {
            let node = &self.nodes[slot(idx)];
            (node.prev, node.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[slot(prev)].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[slot(next)].prev = prev;
        }
    }

    /// Takes an already unlinked node, already out of the map, out of the
    /// slab, moving the last node into its slot so the slab stays dense.
    fn take(&mut self, idx: u32) -> Node<V> {
        let last = index(self.nodes.len() - 1);
        let node = self.nodes.swap_remove(slot(idx));
        if slot(idx) < self.nodes.len() {
            let (prev, next) = {
                let moved = &self.nodes[slot(idx)];
                (moved.prev, moved.next)
            };
            if prev == NIL {
                self.head = idx;
            } else {
                self.nodes[slot(prev)].next = idx;
            }
            if next == NIL {
                self.tail = idx;
            } else {
                self.nodes[slot(next)].prev = idx;
            }
            let hash = self.map.hash(&self.nodes[slot(idx)].key);
            self.map.renumber(hash, last, idx);
        }
        node
    }
}

/// The map from keys to slab slots: a hash table of bare `u32` slots whose
/// keys are the nodes' own. A `HashMap<Key, u32>` kept a second copy of
/// every key (40 bytes, and a second heap name for long ones) per bucket;
/// this keeps 4 bytes.
#[derive(Default)]
struct Index {
    table: HashTable<u32>,
    hasher: RandomState,
}

impl Index {
    fn hash(&self, key: &Key) -> u64 {
        self.hasher.hash_one(key)
    }

    fn get<V>(&self, nodes: &[Node<V>], key: &Key) -> Option<u32> {
        self.find(nodes, self.hash(key), key)
    }

    fn find<V>(&self, nodes: &[Node<V>], hash: u64, key: &Key) -> Option<u32> {
        self.table
            .find(hash, |&i| nodes.get(slot(i)).is_some_and(|n| n.key == *key))
            .copied()
    }

    /// Adds `idx`, whose node already holds the key hashed to `hash`.
    fn insert<V>(&mut self, nodes: &[Node<V>], hash: u64, idx: u32) {
        let hasher = &self.hasher;
        self.table.insert_unique(hash, idx, |&i| {
            nodes.get(slot(i)).map_or(0, |n| hasher.hash_one(&n.key))
        });
    }

    fn remove(&mut self, hash: u64, idx: u32) {
        if let Ok(entry) = self.table.find_entry(hash, |&i| i == idx) {
            entry.remove();
        }
    }

    /// The node at `from` moved to `to`.
    fn renumber(&mut self, hash: u64, from: u32, to: u32) {
        if let Some(i) = self.table.find_mut(hash, |&i| i == from) {
            *i = to;
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.len()
    }

    fn clear(&mut self) {
        self.table.clear();
    }

    fn shrink_to<V>(&mut self, nodes: &[Node<V>], capacity: usize) {
        let hasher = &self.hasher;
        self.table.shrink_to(capacity, |&i| {
            nodes.get(slot(i)).map_or(0, |n| hasher.hash_one(&n.key))
        });
    }
}

impl<V> fmt::Debug for Cache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Whether an entry is still servable `window` after its TTL ran out.
fn is_live(expires: Option<Instant>, window: Duration, now: Instant) -> bool {
    match expires.and_then(|at| at.checked_add(window)) {
        Some(deadline) => now < deadline,
        // The deadline is beyond what `Instant` can represent.
        None => true,
    }
}

fn slot(idx: u32) -> usize {
    // Cannot truncate: usize is at least 32 bits on every target std supports.
    idx as usize
}

fn index(slot: usize) -> u32 {
    // Cannot truncate: slots are < capacity <= MAX_CAPACITY = u32::MAX.
    slot as u32
}

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
        // A negative answer may carry records too (the CNAME chain that
        // led to the missing name): none may be served past its own TTL.
        rcode::NOERROR | rcode::NXDOMAIN => reply
            .negative_ttl()?
            .min(MAX_NEGATIVE_TTL)
            .min(reply.min_ttl().unwrap_or(u32::MAX)),
        rcode::SERVFAIL => SERVFAIL_TTL,
        _ => return None,
    };
    (ttl > 0).then(|| std::time::Duration::from_secs(u64::from(ttl)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    const A: u16 = 1;
    const AAAA: u16 = 28;
    const IN: u16 = 1;

    fn key(name: &str) -> Key {
        Key::new(&wire(name), A, IN, false, false)
    }

    /// "www.example.com" → \x03www\x07example\x03com\x00
    fn wire(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in name.split('.').filter(|l| !l.is_empty()) {
            out.push(u8::try_from(label.len()).unwrap());
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    impl<V> Cache<V> {
        /// Keys from most to least recently used, checking the list and map
        /// agree on the way.
        fn keys_mru(&self) -> Vec<Key> {
            assert_eq!(self.map.len(), self.nodes.len());
            assert!(self.nodes.len() <= self.capacity);
            let mut keys = Vec::new();
            let mut prev = NIL;
            let mut at = self.head;
            while at != NIL {
                let node = &self.nodes[slot(at)];
                assert_eq!(node.prev, prev);
                assert_eq!(self.map.get(&self.nodes, &node.key), Some(at));
                keys.push(node.key.clone());
                prev = at;
                at = node.next;
            }
            assert_eq!(self.tail, prev);
            assert_eq!(keys.len(), self.nodes.len());
            keys
        }
    }

    #[test]
    fn evicts_least_recently_used() {
        let now = Instant::now();
        let mut cache = Cache::new(2);
        cache.insert(key("a"), 1, now, secs(60));
        cache.insert(key("b"), 2, now, secs(60));
        cache.insert(key("c"), 3, now, secs(60));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.keys_mru(), [key("c"), key("b")]);
        assert!(cache.get(&key("a"), now).is_none());
        assert_eq!(cache.get(&key("b"), now).map(|(v, _)| *v), Some(2));
        assert_eq!(cache.get(&key("c"), now).map(|(v, _)| *v), Some(3));
    }

    #[test]
    fn get_promotes() {
        let now = Instant::now();
        let mut cache = Cache::new(3);
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            cache.insert(key(name), i, now, secs(60));
        }
        assert!(cache.get(&key("a"), now).is_some());
        assert_eq!(cache.keys_mru(), [key("a"), key("c"), key("b")]);
        cache.insert(key("d"), 3, now, secs(60));
        assert_eq!(cache.keys_mru(), [key("d"), key("a"), key("c")]);
    }

    #[test]
    fn expires_exactly_at_ttl() {
        let t0 = Instant::now();
        let ttl = secs(30);
        let mut cache = Cache::new(4);
        cache.insert(key("a"), (), t0, ttl);
        let just_before = t0 + ttl - Duration::from_nanos(1);
        assert_eq!(
            cache.get(&key("a"), just_before),
            Some((&(), ttl - Duration::from_nanos(1)))
        );
        assert_eq!(cache.get(&key("a"), t0 + ttl), None);
        assert_eq!(cache.get(&key("a"), t0 + ttl + secs(1)), None);
    }

    #[test]
    fn zero_ttl_is_never_fresh() {
        let t0 = Instant::now();
        let mut cache = Cache::new(4);
        cache.insert(key("a"), (), t0, Duration::ZERO);
        assert_eq!(cache.get(&key("a"), t0), None);
        assert!(cache.get_stale(&key("a"), t0, secs(1)).is_some());
    }

    #[test]
    fn huge_ttl_never_expires() {
        let t0 = Instant::now();
        let mut cache = Cache::new(4);
        cache.insert(key("a"), (), t0, Duration::MAX);
        assert!(
            cache
                .get(&key("a"), t0 + secs(86_400 * 365 * 100))
                .is_some()
        );
    }

    #[test]
    fn returns_age_since_insert() {
        let t0 = Instant::now();
        let mut cache = Cache::new(4);
        cache.insert(key("a"), 'x', t0, secs(300));
        assert_eq!(cache.get(&key("a"), t0), Some((&'x', Duration::ZERO)));
        let later = t0 + Duration::from_millis(12_345);
        assert_eq!(
            cache.get(&key("a"), later),
            Some((&'x', Duration::from_millis(12_345)))
        );
        // Reinserting restarts the clock.
        cache.insert(key("a"), 'y', later, secs(300));
        assert_eq!(cache.get(&key("a"), later + secs(1)), Some((&'y', secs(1))));
        // A `now` from before the insert does not underflow.
        assert_eq!(cache.get(&key("a"), t0), Some((&'y', Duration::ZERO)));
    }

    #[test]
    fn stale_window() {
        let t0 = Instant::now();
        let ttl = secs(10);
        let max_stale = secs(30);
        let mut cache = Cache::new(4);
        cache.insert(key("a"), 1, t0, ttl);

        // Fresh entries come back from get_stale too.
        assert_eq!(
            cache.get_stale(&key("a"), t0, max_stale),
            Some((&1, secs(0)))
        );
        // Expired for get, but get leaves it in place for get_stale.
        assert_eq!(cache.get(&key("a"), t0 + ttl), None);
        assert_eq!(cache.len(), 1);
        assert_eq!(
            cache.get_stale(&key("a"), t0 + ttl, max_stale),
            Some((&1, ttl))
        );
        let last = t0 + ttl + max_stale - Duration::from_nanos(1);
        assert!(cache.get_stale(&key("a"), last, max_stale).is_some());
        assert_eq!(
            cache.get_stale(&key("a"), t0 + ttl + max_stale, max_stale),
            None
        );
        // With no window it is exactly get.
        assert_eq!(cache.get_stale(&key("a"), t0 + ttl, Duration::ZERO), None);
    }

    #[test]
    fn expired_entries_are_not_promoted_and_go_first() {
        let t0 = Instant::now();
        let mut cache = Cache::new(2);
        cache.insert(key("old"), 1, t0, secs(1));
        cache.insert(key("new"), 2, t0, secs(100));
        let now = t0 + secs(5);
        assert!(cache.get(&key("old"), now).is_none());
        assert_eq!(cache.keys_mru(), [key("new"), key("old")]);
        cache.insert(key("next"), 3, now, secs(100));
        assert_eq!(cache.keys_mru(), [key("next"), key("new")]);
        let stats = cache.stats();
        assert_eq!((stats.expired, stats.evictions), (1, 0));
    }

    #[test]
    fn capacity_zero_disables() {
        let now = Instant::now();
        let mut cache = Cache::new(0);
        cache.insert(key("a"), 1, now, secs(60));
        assert!(cache.is_empty());
        assert_eq!(cache.get(&key("a"), now), None);
        assert_eq!(cache.stats().inserts, 0);

        let mut cache = Cache::new(2);
        cache.insert(key("a"), 1, now, secs(60));
        cache.resize(0);
        assert!(cache.is_empty());
        cache.insert(key("b"), 2, now, secs(60));
        assert!(cache.is_empty());
        assert_eq!(cache.get(&key("b"), now), None);
    }

    #[test]
    fn resize_down_keeps_most_recent() {
        let now = Instant::now();
        let mut cache = Cache::new(5);
        for name in ["a", "b", "c", "d", "e"] {
            cache.insert(key(name), (), now, secs(60));
        }
        cache.get(&key("a"), now);
        cache.resize(2);
        assert_eq!(cache.capacity(), 2);
        assert_eq!(cache.keys_mru(), [key("a"), key("e")]);
        assert_eq!(cache.stats().evictions, 3);
        cache.resize(3);
        cache.insert(key("f"), (), now, secs(60));
        assert_eq!(cache.keys_mru(), [key("f"), key("a"), key("e")]);
    }

    #[test]
    fn replacing_keeps_len_and_promotes() {
        let t0 = Instant::now();
        let mut cache = Cache::new(3);
        cache.insert(key("a"), 1, t0, secs(60));
        cache.insert(key("b"), 2, t0, secs(60));
        cache.insert(key("a"), 10, t0 + secs(1), secs(60));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.keys_mru(), [key("a"), key("b")]);
        assert_eq!(cache.get(&key("a"), t0 + secs(2)), Some((&10, secs(1))));
        assert_eq!(cache.stats().evictions, 0);
    }

    #[test]
    fn remove_and_clear() {
        let now = Instant::now();
        let mut cache = Cache::new(4);
        for (i, name) in ["a", "b", "c", "d"].into_iter().enumerate() {
            cache.insert(key(name), i, now, secs(60));
        }
        // Removing from the middle moves the last slab node; all links hold.
        assert_eq!(cache.remove(&key("b")), Some(1));
        assert_eq!(cache.remove(&key("b")), None);
        assert_eq!(cache.keys_mru(), [key("d"), key("c"), key("a")]);
        assert_eq!(cache.remove(&key("d")), Some(3));
        assert_eq!(cache.keys_mru(), [key("c"), key("a")]);
        cache.clear();
        assert!(cache.is_empty());
        assert_eq!(cache.keys_mru(), Vec::<Key>::new());
        assert_eq!(cache.get(&key("a"), now), None);
        cache.insert(key("e"), 4, now, secs(60));
        assert_eq!(cache.keys_mru(), [key("e")]);
    }

    #[test]
    fn counts() {
        let t0 = Instant::now();
        let mut cache = Cache::new(2);
        assert!(!cache.insert(key("a"), (), t0, secs(10)));
        assert!(!cache.insert(key("b"), (), t0, secs(100)));
        cache.get(&key("a"), t0); // hit
        cache.get(&key("x"), t0); // miss
        cache.get(&key("a"), t0 + secs(10)); // miss, expired
        cache.get_stale(&key("a"), t0 + secs(10), secs(5)); // hit
        // Replaces the expired "a": no eviction.
        assert!(!cache.insert(key("a"), (), t0 + secs(10), secs(10)));
        // Evicts the fresh "b", and says so.
        assert!(cache.insert(key("c"), (), t0 + secs(10), secs(10)));
        assert_eq!(
            cache.stats(),
            Stats {
                hits: 2,
                misses: 2,
                inserts: 4,
                evictions: 1,
                expired: 1,
            }
        );
        cache.clear();
        assert_eq!(cache.stats().inserts, 4);
    }

    #[test]
    fn key_lowercases_label_bytes_only() {
        let upper = Key::new(b"\x03WwW\x07ExAmPlE\x03COM\x00", A, IN, false, false);
        assert_eq!(upper.qname(), b"\x03www\x07example\x03com\x00");
        assert_eq!(upper, key("www.example.com"));

        // A length octet must survive even when it looks like 'A'..'Z'. Real
        // labels stop at 63, so a long name stands in: 0x0A then 'A'..'J',
        // and length octets equal to b'A' (65) and b'Z' (90) in malformed
        // input, which lower-casing would turn into 'a' (97) and 'z' (122).
        let k = Key::new(b"\x0aABCDEFGHIJ\x00", A, IN, false, false);
        assert_eq!(k.qname(), b"\x0aabcdefghij\x00");
        let mut long = vec![b'A'];
        long.extend(std::iter::repeat_n(b'Q', 65));
        long.push(b'Z');
        long.extend(std::iter::repeat_n(b'R', 90));
        long.push(0);
        let k = Key::new(&long, A, IN, false, false);
        assert_eq!(k.qname()[0], b'A');
        assert_eq!(k.qname()[66], b'Z');
        assert!(k.qname()[1..66].iter().all(|&b| b == b'q'));
        assert!(k.qname()[67..157].iter().all(|&b| b == b'r'));

        // Only ASCII letters change; other bytes in labels are left alone.
        let k = Key::new(b"\x04A-\xc9_\x00", A, IN, false, false);
        assert_eq!(k.qname(), b"\x04a-\xc9_\x00");
    }

    #[test]
    fn key_is_total_over_malformed_names() {
        for wire in [&b""[..], b"\x05ab", b"\xc0\x0c", b"\x3fA", b"\x00ABC"] {
            let k = Key::new(wire, A, IN, false, false);
            assert_eq!(k.qname().len(), wire.len());
        }
        // Bytes after the root label are not part of a label.
        assert_eq!(
            Key::new(b"\x00ABC", A, IN, false, false).qname(),
            b"\x00ABC"
        );
    }

    #[test]
    fn long_names_are_heap_backed_and_equal_by_bytes() {
        let name = "a-rather-long-label.another-long-label.example.com";
        let k = key(name);
        assert!(k.qname().len() > INLINE);
        assert!(matches!(k.name, Name::Heap(_)));
        assert_eq!(k, key(&name.to_ascii_uppercase()));
        assert!(matches!(key("short.example").name, Name::Inline { .. }));

        let now = Instant::now();
        let mut cache = Cache::new(2);
        cache.insert(k, 1, now, secs(60));
        assert!(cache.get(&key(&name.to_ascii_uppercase()), now).is_some());
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn key_is_compact() {
        assert_eq!(size_of::<Key>(), 40);
    }

    #[test]
    fn flags_type_and_class_distinguish_keys() {
        let name = wire("example.com");
        let base = Key::new(&name, A, IN, false, false);
        let variants = [
            Key::new(&name, AAAA, IN, false, false),
            Key::new(&name, A, 3, false, false),
            Key::new(&name, A, IN, true, false),
            Key::new(&name, A, IN, false, true),
        ];
        let now = Instant::now();
        let mut cache = Cache::new(8);
        cache.insert(base.clone(), 0, now, secs(60));
        for (i, k) in variants.iter().enumerate() {
            assert_ne!(&base, k);
            assert_eq!(cache.get(k, now), None);
            cache.insert(k.clone(), i + 1, now, secs(60));
        }
        assert_eq!(cache.len(), 5);
        assert_eq!(cache.get(&base, now).map(|(v, _)| *v), Some(0));
        for (i, k) in variants.iter().enumerate() {
            assert_eq!(cache.get(k, now).map(|(v, _)| *v), Some(i + 1));
        }
    }

    #[test]
    fn unique_name_flood_stays_bounded() {
        let t0 = Instant::now();
        let mut cache = Cache::new(1000);
        for i in 0..200_000u32 {
            let name = format!("n{i}.flood.example");
            cache.insert(key(&name), i, t0, secs(60));
            assert!(cache.len() <= 1000);
        }
        assert_eq!(cache.len(), 1000);
        assert!(cache.nodes.capacity() <= 1024);
        assert_eq!(cache.stats().evictions, 199_000);
        // The survivors are exactly the last 1000, most recent first.
        let expected: Vec<Key> = (199_000..200_000u32)
            .rev()
            .map(|i| key(&format!("n{i}.flood.example")))
            .collect();
        assert_eq!(cache.keys_mru(), expected);
    }

    /// The reference: a VecDeque with the most recently used entry first.
    struct Model {
        capacity: usize,
        entries: VecDeque<(Key, u32, Instant, Duration)>,
        stats: Stats,
    }

    impl Model {
        fn position(&self, key: &Key) -> Option<usize> {
            self.entries.iter().position(|(k, ..)| k == key)
        }

        fn lookup(&mut self, key: &Key, now: Instant, window: Duration) -> Option<(u32, Duration)> {
            let Some(at) = self.position(key) else {
                self.stats.misses += 1;
                return None;
            };
            let (_, value, inserted, ttl) = self.entries[at].clone();
            let age = now.saturating_duration_since(inserted);
            if now >= inserted + ttl + window {
                self.stats.misses += 1;
                return None;
            }
            self.stats.hits += 1;
            let entry = self.entries.remove(at).unwrap();
            self.entries.push_front(entry);
            Some((value, age))
        }

        fn insert(&mut self, key: Key, value: u32, now: Instant, ttl: Duration) {
            if self.capacity == 0 {
                return;
            }
            self.stats.inserts += 1;
            let dropped = if let Some(at) = self.position(&key) {
                self.entries.remove(at)
            } else if self.entries.len() == self.capacity {
                self.entries.pop_back()
            } else {
                None
            };
            if let Some((old, _, inserted, old_ttl)) = dropped {
                if now >= inserted + old_ttl {
                    self.stats.expired += 1;
                } else if old != key {
                    self.stats.evictions += 1;
                }
            }
            self.entries.push_front((key, value, now, ttl));
        }

        fn remove(&mut self, key: &Key) -> Option<u32> {
            let at = self.position(key)?;
            self.entries.remove(at).map(|(_, v, ..)| v)
        }

        fn resize(&mut self, capacity: usize) {
            self.capacity = capacity;
            while self.entries.len() > capacity {
                self.entries.pop_back();
                self.stats.evictions += 1;
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert {
            name: u8,
            qtype: u16,
            value: u32,
            ttl_ms: u64,
        },
        Get {
            name: u8,
            qtype: u16,
        },
        GetStale {
            name: u8,
            qtype: u16,
            max_stale_ms: u64,
        },
        Remove {
            name: u8,
            qtype: u16,
        },
        Advance {
            ms: u64,
        },
        Resize {
            capacity: usize,
        },
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few names and two types so that hits, replacements and evictions
        // all happen often; TTLs and steps in the same range so entries
        // expire mid-sequence, including exactly on the boundary.
        let name = 0u8..10;
        let qtype = prop_oneof![Just(A), Just(AAAA)];
        prop_oneof![
            6 => (name.clone(), qtype.clone(), any::<u32>(), 0u64..50)
                .prop_map(|(name, qtype, value, ttl_ms)| Op::Insert { name, qtype, value, ttl_ms }),
            5 => (name.clone(), qtype.clone()).prop_map(|(name, qtype)| Op::Get { name, qtype }),
            2 => (name.clone(), qtype.clone(), 0u64..30)
                .prop_map(|(name, qtype, max_stale_ms)| Op::GetStale { name, qtype, max_stale_ms }),
            1 => (name, qtype).prop_map(|(name, qtype)| Op::Remove { name, qtype }),
            3 => (0u64..20).prop_map(|ms| Op::Advance { ms }),
            1 => (0usize..8).prop_map(|capacity| Op::Resize { capacity }),
            1 => Just(Op::Clear),
        ]
    }

    fn model_key(name: u8, qtype: u16) -> Key {
        // Mixed case on the way in, to exercise lower-casing as well.
        let name = if name.is_multiple_of(2) {
            format!("Host{name}.Example")
        } else {
            format!("host{name}.example")
        };
        Key::new(&wire(&name), qtype, IN, false, false)
    }

    proptest! {
        #[test]
        fn behaves_like_a_model_lru(
            capacity in 0usize..6,
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            let mut now = Instant::now();
            let mut cache = Cache::new(capacity);
            let mut model = Model { capacity, entries: VecDeque::new(), stats: Stats::default() };
            for op in ops {
                match op {
                    Op::Insert { name, qtype, value, ttl_ms } => {
                        let ttl = Duration::from_millis(ttl_ms);
                        cache.insert(model_key(name, qtype), value, now, ttl);
                        model.insert(model_key(name, qtype), value, now, ttl);
                    }
                    Op::Get { name, qtype } => {
                        let key = model_key(name, qtype);
                        let got = cache.get(&key, now).map(|(v, age)| (*v, age));
                        prop_assert_eq!(got, model.lookup(&key, now, Duration::ZERO));
                    }
                    Op::GetStale { name, qtype, max_stale_ms } => {
                        let key = model_key(name, qtype);
                        let window = Duration::from_millis(max_stale_ms);
                        let got = cache.get_stale(&key, now, window).map(|(v, age)| (*v, age));
                        prop_assert_eq!(got, model.lookup(&key, now, window));
                    }
                    Op::Remove { name, qtype } => {
                        let key = model_key(name, qtype);
                        prop_assert_eq!(cache.remove(&key), model.remove(&key));
                    }
                    Op::Advance { ms } => now += Duration::from_millis(ms),
                    Op::Resize { capacity } => {
                        cache.resize(capacity);
                        model.resize(capacity);
                    }
                    Op::Clear => {
                        cache.clear();
                        model.entries.clear();
                    }
                }
                prop_assert!(cache.len() <= cache.capacity());
                prop_assert_eq!(cache.len(), model.entries.len());
                let order: Vec<Key> = model.entries.iter().map(|(k, ..)| k.clone()).collect();
                prop_assert_eq!(cache.keys_mru(), order);
                prop_assert_eq!(cache.stats(), model.stats);
            }
        }
    }
}

#[cfg(test)]
mod lifetime_tests {
    use super::*;
    use crate::dns::wire::Reply;

    /// A reply to `a.test` A: header flags, answer TTLs, and optionally an
    /// SOA (TTL, MINIMUM) in the authority section.
    fn reply(flags: u16, answers: &[u32], soa: Option<(u32, u32)>) -> Reply {
        let mut m = vec![0, 1];
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&[
            0,
            1,
            0,
            answers.len() as u8,
            0,
            u8::from(soa.is_some()),
            0,
            0,
        ]);
        m.extend_from_slice(&[1, b'a', 4, b't', b'e', b's', b't', 0, 0, 1, 0, 1]);
        for ttl in answers {
            m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&[0, 4, 192, 0, 2, 1]);
        }
        if let Some((ttl, minimum)) = soa {
            m.extend_from_slice(&[0xc0, 14, 0, 6, 0, 1]);
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&[0, 22, 0, 0]);
            for v in [1u32, 2, 3, 4, minimum] {
                m.extend_from_slice(&v.to_be_bytes());
            }
        }
        Reply::parse(&m).unwrap()
    }

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[test]
    fn positive_answers_live_for_their_smallest_ttl() {
        assert_eq!(lifetime(&reply(0x8180, &[300, 60], None)), secs(60));
        assert_eq!(
            lifetime(&reply(0x8180, &[999_999], None)),
            secs(u64::from(MAX_TTL))
        );
        assert_eq!(
            lifetime(&reply(0x8180, &[0, 60], None)),
            None,
            "TTL 0 is not cached"
        );
    }

    #[test]
    fn negative_answers_follow_rfc2308() {
        assert_eq!(
            lifetime(&reply(0x8183, &[], Some((3600, 120)))),
            secs(120),
            "NXDOMAIN"
        );
        assert_eq!(
            lifetime(&reply(0x8180, &[], Some((30, 120)))),
            secs(30),
            "NODATA"
        );
        assert_eq!(
            lifetime(&reply(0x8183, &[], Some((86_400, 86_400)))),
            secs(u64::from(MAX_NEGATIVE_TTL))
        );
        assert_eq!(
            lifetime(&reply(0x8183, &[], None)),
            None,
            "no SOA, no negative caching"
        );
        // NXDOMAIN at the end of a CNAME of TTL 10 (the fuzz seed
        // reply_cache/nxdomain-cname-short-ttl): cached 10 s, not 100.
        assert_eq!(
            lifetime(&reply(0x8183, &[10], Some((100, 100)))),
            secs(10),
            "a record in a negative answer outlived"
        );
    }

    #[test]
    fn failures_and_truncation() {
        assert_eq!(
            lifetime(&reply(0x8182, &[], None)),
            secs(u64::from(SERVFAIL_TTL))
        );
        assert_eq!(lifetime(&reply(0x8185, &[], None)), None, "REFUSED");
        assert_eq!(lifetime(&reply(0x8381, &[60], None)), None, "TC");
    }
}
