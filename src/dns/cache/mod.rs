//! The reply cache: an O(1) LRU with TTL expiry, keyed by [`Key`].
//!
//! Three parts: the store ([`Cache`], `lru`), which knows nothing of DNS
//! beyond its key; the key (`key`: a query's name, type, class and the
//! flags its answer depends on); and [`lifetime()`], which reads a reply to
//! say whether it may be cached and for how long (RFC 2308).
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
//! overwritten in place, so a flood of unique names costs one eviction per
//! insert and nothing more.
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

mod key;
mod lifetime;
mod lru;

pub use key::Key;
pub use lifetime::{MAX_NEGATIVE_TTL, MAX_TTL, SERVFAIL_TTL, lifetime};
pub use lru::{Cache, Stats};

#[cfg(test)]
mod tests;
