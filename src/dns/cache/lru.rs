//! The store: an O(1) LRU of values with per-entry TTL and a stale window,
//! over a slab linked by `u32` indices and a hash table of slots.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use hashbrown::HashTable;

use super::key::Key;

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

    /// [`get_stale`](Self::get_stale), and whether the entry is fresh: one
    /// lookup where `get` and then `get_stale` would take two.
    pub fn get_fresh_or_stale(
        &mut self,
        key: &Key,
        now: Instant,
        max_stale: Duration,
    ) -> Option<(&V, Duration, bool)> {
        let idx = self.find_live(key, now, max_stale)?;
        let node = &self.nodes[slot(idx)];
        let fresh = is_live(node.expires, Duration::ZERO, now);
        let age = now.saturating_duration_since(node.inserted);
        Some((&self.nodes[slot(idx)].value, age, fresh))
    }

    /// The fresh entry for `key`, to look at or change, without marking it
    /// used or counting a hit or miss: for the daemon's own bookkeeping
    /// (the rewritten view of an entry, the other family of a name).
    pub fn peek_mut(&mut self, key: &Key, now: Instant) -> Option<&mut V> {
        let idx = self.map.get(&self.nodes, key)?;
        let node = &mut self.nodes[slot(idx)];
        is_live(node.expires, Duration::ZERO, now).then_some(&mut node.value)
    }

    /// [`peek_mut`](Self::peek_mut) with the entry's age: the fresh entry
    /// for `key`, neither promoted nor counted (DNS64 reads the A answer a
    /// synthesized AAAA is made from, and its age, this way).
    pub fn peek_aged(&mut self, key: &Key, now: Instant) -> Option<(&mut V, Duration)> {
        let idx = self.map.get(&self.nodes, key)?;
        let node = &mut self.nodes[slot(idx)];
        let age = now.saturating_duration_since(node.inserted);
        is_live(node.expires, Duration::ZERO, now).then_some((&mut node.value, age))
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
        let idx = self.find_live(key, now, window)?;
        let node = &self.nodes[slot(idx)];
        // A caller whose `now` was taken before the insert sees age 0.
        let age = now.saturating_duration_since(node.inserted);
        Some((&node.value, age))
    }

    /// The entry for `key` if it is live within `window`, counted as a hit
    /// and promoted; else counted as a miss.
    fn find_live(&mut self, key: &Key, now: Instant, window: Duration) -> Option<u32> {
        let Some(idx) = self.map.get(&self.nodes, key) else {
            self.stats.misses += 1;
            return None;
        };
        if !is_live(self.nodes[slot(idx)].expires, window, now) {
            self.stats.misses += 1;
            return None;
        }
        self.stats.hits += 1;
        self.promote(idx);
        Some(idx)
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
/// keys are the nodes' own. A `HashMap<Key, u32>` would keep a second copy
/// of every key (40 bytes, and a second heap name for long ones) per
/// bucket; this keeps 4 bytes.
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

/// Views of the insides for the unit tests, which check the invariants.
#[cfg(test)]
impl<V> Cache<V> {
    /// Keys from most to least recently used, checking the list and map
    /// agree on the way.
    pub(super) fn keys_mru(&self) -> Vec<Key> {
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

    /// Slots the slab has room for without growing.
    pub(super) fn slab_capacity(&self) -> usize {
        self.nodes.capacity()
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
