use std::collections::VecDeque;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::key::INLINE;
use super::*;
use crate::testutil::{cache_key, wire_name};

const A: u16 = 1;
const AAAA: u16 = 28;
const IN: u16 = 1;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn evicts_least_recently_used() {
    let now = Instant::now();
    let mut cache = Cache::new(2);
    cache.insert(cache_key("a"), 1, now, secs(60));
    cache.insert(cache_key("b"), 2, now, secs(60));
    cache.insert(cache_key("c"), 3, now, secs(60));
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.keys_mru(), [cache_key("c"), cache_key("b")]);
    assert!(cache.get(&cache_key("a"), now).is_none());
    assert_eq!(cache.get(&cache_key("b"), now).map(|(v, _)| *v), Some(2));
    assert_eq!(cache.get(&cache_key("c"), now).map(|(v, _)| *v), Some(3));
}

#[test]
fn get_promotes() {
    let now = Instant::now();
    let mut cache = Cache::new(3);
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        cache.insert(cache_key(name), i, now, secs(60));
    }
    assert!(cache.get(&cache_key("a"), now).is_some());
    assert_eq!(
        cache.keys_mru(),
        [cache_key("a"), cache_key("c"), cache_key("b")]
    );
    cache.insert(cache_key("d"), 3, now, secs(60));
    assert_eq!(
        cache.keys_mru(),
        [cache_key("d"), cache_key("a"), cache_key("c")]
    );
}

#[test]
fn expires_exactly_at_ttl() {
    let t0 = Instant::now();
    let ttl = secs(30);
    let mut cache = Cache::new(4);
    cache.insert(cache_key("a"), (), t0, ttl);
    let just_before = t0 + ttl - Duration::from_nanos(1);
    assert_eq!(
        cache.get(&cache_key("a"), just_before),
        Some((&(), ttl - Duration::from_nanos(1)))
    );
    assert_eq!(cache.get(&cache_key("a"), t0 + ttl), None);
    assert_eq!(cache.get(&cache_key("a"), t0 + ttl + secs(1)), None);
}

#[test]
fn zero_ttl_is_never_fresh() {
    let t0 = Instant::now();
    let mut cache = Cache::new(4);
    cache.insert(cache_key("a"), (), t0, Duration::ZERO);
    assert_eq!(cache.get(&cache_key("a"), t0), None);
    assert!(cache.get_stale(&cache_key("a"), t0, secs(1)).is_some());
}

#[test]
fn huge_ttl_never_expires() {
    let t0 = Instant::now();
    let mut cache = Cache::new(4);
    cache.insert(cache_key("a"), (), t0, Duration::MAX);
    assert!(
        cache
            .get(&cache_key("a"), t0 + secs(86_400 * 365 * 100))
            .is_some()
    );
}

#[test]
fn returns_age_since_insert() {
    let t0 = Instant::now();
    let mut cache = Cache::new(4);
    cache.insert(cache_key("a"), 'x', t0, secs(300));
    assert_eq!(cache.get(&cache_key("a"), t0), Some((&'x', Duration::ZERO)));
    let later = t0 + Duration::from_millis(12_345);
    assert_eq!(
        cache.get(&cache_key("a"), later),
        Some((&'x', Duration::from_millis(12_345)))
    );
    // Reinserting restarts the clock.
    cache.insert(cache_key("a"), 'y', later, secs(300));
    assert_eq!(
        cache.get(&cache_key("a"), later + secs(1)),
        Some((&'y', secs(1)))
    );
    // A `now` from before the insert does not underflow.
    assert_eq!(cache.get(&cache_key("a"), t0), Some((&'y', Duration::ZERO)));
}

#[test]
fn peek_aged_gives_the_age_without_promoting_or_counting() {
    let t0 = Instant::now();
    let mut cache = Cache::new(2);
    cache.insert(cache_key("a"), 'a', t0, secs(10));
    cache.insert(cache_key("b"), 'b', t0, secs(10));
    let before = cache.stats();
    let (v, age) = cache.peek_aged(&cache_key("a"), t0 + secs(3)).unwrap();
    assert_eq!((*v, age), ('a', secs(3)));
    assert_eq!(
        cache.peek_aged(&cache_key("a"), t0 + secs(10)),
        None,
        "expired"
    );
    assert_eq!(cache.peek_aged(&cache_key("c"), t0), None);
    assert_eq!(cache.stats(), before, "neither a hit nor a miss");
    // Not promoted: "a" is still the least recently used.
    cache.insert(cache_key("c"), 'c', t0, secs(10));
    assert_eq!(cache.get(&cache_key("a"), t0), None);
}

#[test]
fn stale_window() {
    let t0 = Instant::now();
    let ttl = secs(10);
    let max_stale = secs(30);
    let mut cache = Cache::new(4);
    cache.insert(cache_key("a"), 1, t0, ttl);

    // Fresh entries come back from get_stale too.
    assert_eq!(
        cache.get_stale(&cache_key("a"), t0, max_stale),
        Some((&1, secs(0)))
    );
    // Expired for get, but get leaves it in place for get_stale.
    assert_eq!(cache.get(&cache_key("a"), t0 + ttl), None);
    assert_eq!(cache.len(), 1);
    assert_eq!(
        cache.get_stale(&cache_key("a"), t0 + ttl, max_stale),
        Some((&1, ttl))
    );
    let last = t0 + ttl + max_stale - Duration::from_nanos(1);
    assert!(cache.get_stale(&cache_key("a"), last, max_stale).is_some());
    assert_eq!(
        cache.get_stale(&cache_key("a"), t0 + ttl + max_stale, max_stale),
        None
    );
    // With no window it is exactly get.
    assert_eq!(
        cache.get_stale(&cache_key("a"), t0 + ttl, Duration::ZERO),
        None
    );
}

#[test]
fn expired_entries_are_not_promoted_and_go_first() {
    let t0 = Instant::now();
    let mut cache = Cache::new(2);
    cache.insert(cache_key("old"), 1, t0, secs(1));
    cache.insert(cache_key("new"), 2, t0, secs(100));
    let now = t0 + secs(5);
    assert!(cache.get(&cache_key("old"), now).is_none());
    assert_eq!(cache.keys_mru(), [cache_key("new"), cache_key("old")]);
    cache.insert(cache_key("next"), 3, now, secs(100));
    assert_eq!(cache.keys_mru(), [cache_key("next"), cache_key("new")]);
    let stats = cache.stats();
    assert_eq!((stats.expired, stats.evictions), (1, 0));
}

#[test]
fn capacity_zero_disables() {
    let now = Instant::now();
    let mut cache = Cache::new(0);
    cache.insert(cache_key("a"), 1, now, secs(60));
    assert!(cache.is_empty());
    assert_eq!(cache.get(&cache_key("a"), now), None);
    assert_eq!(cache.stats().inserts, 0);

    let mut cache = Cache::new(2);
    cache.insert(cache_key("a"), 1, now, secs(60));
    cache.resize(0);
    assert!(cache.is_empty());
    cache.insert(cache_key("b"), 2, now, secs(60));
    assert!(cache.is_empty());
    assert_eq!(cache.get(&cache_key("b"), now), None);
}

#[test]
fn resize_down_keeps_most_recent() {
    let now = Instant::now();
    let mut cache = Cache::new(5);
    for name in ["a", "b", "c", "d", "e"] {
        cache.insert(cache_key(name), (), now, secs(60));
    }
    cache.get(&cache_key("a"), now);
    cache.resize(2);
    assert_eq!(cache.capacity(), 2);
    assert_eq!(cache.keys_mru(), [cache_key("a"), cache_key("e")]);
    assert_eq!(cache.stats().evictions, 3);
    cache.resize(3);
    cache.insert(cache_key("f"), (), now, secs(60));
    assert_eq!(
        cache.keys_mru(),
        [cache_key("f"), cache_key("a"), cache_key("e")]
    );
}

#[test]
fn replacing_keeps_len_and_promotes() {
    let t0 = Instant::now();
    let mut cache = Cache::new(3);
    cache.insert(cache_key("a"), 1, t0, secs(60));
    cache.insert(cache_key("b"), 2, t0, secs(60));
    cache.insert(cache_key("a"), 10, t0 + secs(1), secs(60));
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.keys_mru(), [cache_key("a"), cache_key("b")]);
    assert_eq!(
        cache.get(&cache_key("a"), t0 + secs(2)),
        Some((&10, secs(1)))
    );
    assert_eq!(cache.stats().evictions, 0);
}

#[test]
fn remove_and_clear() {
    let now = Instant::now();
    let mut cache = Cache::new(4);
    for (i, name) in ["a", "b", "c", "d"].into_iter().enumerate() {
        cache.insert(cache_key(name), i, now, secs(60));
    }
    // Removing from the middle moves the last slab node; all links hold.
    assert_eq!(cache.remove(&cache_key("b")), Some(1));
    assert_eq!(cache.remove(&cache_key("b")), None);
    assert_eq!(
        cache.keys_mru(),
        [cache_key("d"), cache_key("c"), cache_key("a")]
    );
    assert_eq!(cache.remove(&cache_key("d")), Some(3));
    assert_eq!(cache.keys_mru(), [cache_key("c"), cache_key("a")]);
    cache.clear();
    assert!(cache.is_empty());
    assert_eq!(cache.keys_mru(), Vec::<Key>::new());
    assert_eq!(cache.get(&cache_key("a"), now), None);
    cache.insert(cache_key("e"), 4, now, secs(60));
    assert_eq!(cache.keys_mru(), [cache_key("e")]);
}

#[test]
fn counts() {
    let t0 = Instant::now();
    let mut cache = Cache::new(2);
    assert!(!cache.insert(cache_key("a"), (), t0, secs(10)));
    assert!(!cache.insert(cache_key("b"), (), t0, secs(100)));
    cache.get(&cache_key("a"), t0); // hit
    cache.get(&cache_key("x"), t0); // miss
    cache.get(&cache_key("a"), t0 + secs(10)); // miss, expired
    cache.get_stale(&cache_key("a"), t0 + secs(10), secs(5)); // hit
    // Replaces the expired "a": no eviction.
    assert!(!cache.insert(cache_key("a"), (), t0 + secs(10), secs(10)));
    // Evicts the fresh "b", and says so.
    assert!(cache.insert(cache_key("c"), (), t0 + secs(10), secs(10)));
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
    assert_eq!(upper, cache_key("www.example.com"));

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
    let k = cache_key(name);
    assert!(k.qname().len() > INLINE);
    assert!(!k.is_inline(), "a long name is on the heap");
    assert_eq!(k, cache_key(&name.to_ascii_uppercase()));
    assert!(cache_key("short.example").is_inline());

    let now = Instant::now();
    let mut cache = Cache::new(2);
    cache.insert(k, 1, now, secs(60));
    assert!(
        cache
            .get(&cache_key(&name.to_ascii_uppercase()), now)
            .is_some()
    );
}

#[test]
#[cfg(target_pointer_width = "64")]
fn key_is_compact() {
    assert_eq!(size_of::<Key>(), 40);
}

#[test]
fn flags_type_and_class_distinguish_keys() {
    let name = wire_name("example.com");
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
        cache.insert(cache_key(&name), i, t0, secs(60));
        assert!(cache.len() <= 1000);
    }
    assert_eq!(cache.len(), 1000);
    assert!(cache.slab_capacity() <= 1024);
    assert_eq!(cache.stats().evictions, 199_000);
    // The survivors are exactly the last 1000, most recent first.
    let expected: Vec<Key> = (199_000..200_000u32)
        .rev()
        .map(|i| cache_key(&format!("n{i}.flood.example")))
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
    Key::new(&wire_name(&name), qtype, IN, false, false)
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

/// What a reply may be cached for.
mod lifetime {
    use std::time::Duration;

    use crate::dns::cache::{MAX_NEGATIVE_TTL, MAX_TTL, SERVFAIL_TTL, lifetime};
    use crate::dns::wire::{Reply, rtype};
    use crate::testutil::{header, question, rr};

    /// A reply to `a.test` A: header flags, answer TTLs, and optionally an
    /// SOA (TTL, MINIMUM) in the authority section, owned by `test`.
    fn reply(flags: u16, answers: &[u32], soa: Option<(u32, u32)>) -> Reply {
        let counts = [1, answers.len() as u16, u16::from(soa.is_some()), 0];
        let mut m = header(1, flags, counts);
        m.extend(question("a.test", rtype::A));
        for &ttl in answers {
            m.extend(rr(&[0xc0, 12], rtype::A, ttl, &[192, 0, 2, 1]));
        }
        if let Some((ttl, minimum)) = soa {
            // Root MNAME and RNAME, then SERIAL to MINIMUM.
            let mut rdata = vec![0, 0];
            for v in [1u32, 2, 3, 4, minimum] {
                rdata.extend_from_slice(&v.to_be_bytes());
            }
            m.extend(rr(&[0xc0, 14], rtype::SOA, ttl, &rdata));
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

#[test]
fn key_hash_follows_equality() {
    use std::hash::{BuildHasher, RandomState};
    let hasher = RandomState::new();
    let hash = |k: &Key| hasher.hash_one(k);
    let short = wire_name("short.example");
    let long = wire_name("a-rather-long-label.another-long-label.example.com");
    // Equal keys hash alike, inline or on the heap, whatever the case.
    for name in [
        "short.example",
        "a-rather-long-label.another-long-label.example.com",
    ] {
        assert_eq!(
            hash(&cache_key(name)),
            hash(&cache_key(&name.to_ascii_uppercase()))
        );
    }
    // Every field goes into the hash: keys that differ in one field only
    // hash apart (a 64-bit collision here would be a broken hash).
    for name in [&short, &long] {
        let base = hash(&Key::new(name, A, IN, false, false));
        for other in [
            Key::new(name, AAAA, IN, false, false),
            Key::new(name, A, 3, false, false),
            Key::new(name, A, IN, true, false),
            Key::new(name, A, IN, false, true),
            Key::new(&name[1..], A, IN, false, false),
        ] {
            assert_ne!(base, hash(&other), "{other:?}");
        }
    }
    // Where the name ends is part of what is hashed: moving a byte from
    // the name into the type changes the hash.
    assert_ne!(
        hash(&Key::new(b"\x01a\x00", 0x0001, IN, false, false)),
        hash(&Key::new(b"\x01a", 0x0000, 0x0101, false, false))
    );
    // Longer than any valid name: hashed too, and by all its bytes.
    let huge = vec![b'a'; 300];
    let mut other = huge.clone();
    other[299] = b'b';
    assert_ne!(
        hash(&Key::new(&huge, A, IN, false, false)),
        hash(&Key::new(&other, A, IN, false, false))
    );
}

#[test]
fn get_fresh_or_stale_tells_which() {
    let now = Instant::now();
    let mut cache = Cache::new(4);
    let k = cache_key("a.example");
    assert!(cache.get_fresh_or_stale(&k, now, secs(30)).is_none());
    cache.insert(k.clone(), 1, now, secs(10));
    let (v, age, fresh) = cache
        .get_fresh_or_stale(&k, now + secs(3), secs(30))
        .unwrap();
    assert_eq!((*v, age, fresh), (1, secs(3), true));
    // Expired 5 s ago: within a 30 s window, stale; outside a 2 s one, gone.
    let (v, age, fresh) = cache
        .get_fresh_or_stale(&k, now + secs(15), secs(30))
        .unwrap();
    assert_eq!((*v, age, fresh), (1, secs(15), false));
    assert!(
        cache
            .get_fresh_or_stale(&k, now + secs(15), secs(2))
            .is_none()
    );
    // With no window it is `get`.
    assert!(
        cache
            .get_fresh_or_stale(&k, now + secs(15), Duration::ZERO)
            .is_none()
    );
    assert!(
        cache
            .get_fresh_or_stale(&k, now + secs(9), Duration::ZERO)
            .is_some()
    );
}
