//! Connection caps: the slots of DNS over TCP and of the HTTP sidecar, and
//! which connection gives up its slot when a new one arrives at the cap.
//!
//! A connection holding a slot is, at any moment, one of:
//!
//! - *busy*: work of it is in progress (a DNS query being resolved or its
//!   answer being written; an HTTP request being answered);
//! - *stalled*: it sent part of a message and not the rest for
//!   [`STALLED`] or longer (slowloris). Only DNS over TCP reports this: the
//!   sidecar's HTTP parser does not tell how much of a head came;
//! - *idle*: neither: waiting for its next message since it was accepted or
//!   since its last work ended. A message begun less than [`STALLED`] ago
//!   counts as idle since it began: a client whose query came in two TCP
//!   segments is not a slowloris.
//!
//! At the cap, a new connection takes the slot of the connection stalled
//! longest, else of the one idle longest; only when every slot is busy is
//! the new one refused. Each wait counts from its start (the first byte of
//! the message, or the end of the last work), so trickling bytes does not
//! refresh it, and a connection that only waits cannot keep one whose
//! message comes at once from being served. RFC 7766 §6.2.3 lets a DNS
//! server close idle connections; nginx frees slots the same way when
//! `worker_connections` run out (it closes its oldest idle keep-alive
//! connections).
//!
//! [`Table`] is the bookkeeping, pure (the caller passes `now`); [`Slots`]
//! shares it between an accept loop and its connections. The cap is passed
//! on each admission, so a reload that changes it applies to the next
//! connection, and the connections of before the reload keep their slots
//! in the same table. A lowered cap is reached as connections end: each
//! admission over it still evicts only one.
//!
//! Costs: a state change is O(1) (the table is a slab indexed by the
//! slot's position, so nothing is searched per query or per byte read; it
//! also updates the slot's two eviction keys); choosing whom to evict is
//! one pass over those keys, 16 bytes a slot, O(cap), and happens only for
//! a connection accepted at the cap (the test
//! `eviction_at_the_default_and_the_largest_cap` prints what it takes).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// How long a message may stay part-read before its connection counts as
/// stalled: above a lost segment's retransmission (200 ms at the least on
/// Linux) and well above what any client's query takes to arrive whole.
pub const STALLED: Duration = Duration::from_secs(1);

/// Why an evicted connection was not busy, in the order they give way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Waiting {
    /// It had sent part of a message and not the rest for [`STALLED`].
    Stalled,
    /// It waited for its next message.
    Idle,
}

/// The slots of one kind of connection (all listen addresses together).
#[derive(Debug, Default)]
pub struct Slots {
    table: Mutex<Table>,
}

/// What [`Slots::admit`] did.
#[derive(Debug)]
pub struct Admission {
    /// The new connection's slot; `None` when every slot is busy.
    pub slot: Option<Slot>,
    /// Why the connection that gave way to it was not busy, if one did.
    pub evicted: Option<Waiting>,
}

impl Slots {
    pub fn new() -> Arc<Slots> {
        Arc::new(Slots::default())
    }

    /// A slot for a connection accepted at `now`, evicting another if
    /// there are `cap` already (its [`Slot::evicted`] completes).
    pub fn admit(self: &Arc<Self>, cap: usize, now: Instant) -> Admission {
        let Some(Admitted { id, evict, evicted }) = self.lock().admit(cap, now) else {
            return Admission {
                slot: None,
                evicted: None,
            };
        };
        let evicted = evicted.map(|(token, why)| {
            token.cancel();
            why
        });
        Admission {
            slot: Some(Slot {
                slots: Arc::clone(self),
                id,
                evict,
                asked: AtomicBool::new(false),
            }),
            evicted,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Nothing panics while holding it; a poisoned table is still whole.
        crate::sync::lock(&self.table)
    }
}

/// One connection's slot; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    id: Id,
    evict: CancellationToken,
    /// Whether work ever began on this connection.
    asked: AtomicBool,
}

impl Slot {
    /// Marks the connection busy while the returned guard lives (guards
    /// add up: the connection waits again once the last one is dropped).
    /// `None` when the connection was evicted already.
    pub fn busy(&self) -> Option<Busy> {
        self.asked.store(true, Ordering::Relaxed);
        let held = self.slots.lock().begin(self.id, false);
        held.then(|| self.guard())
    }

    /// The first bytes of a message came at `now`: stalled from
    /// [`STALLED`] later, until [`Slot::whole`].
    pub fn partial(&self, now: Instant) {
        self.slots.lock().partial(self.id, now);
    }

    /// The message begun at [`Slot::partial`] is whole: [`Slot::busy`]
    /// in the same step, so that the connection is never seen waiting
    /// between the two.
    pub fn whole(&self) -> Option<Busy> {
        self.asked.store(true, Ordering::Relaxed);
        let held = self.slots.lock().begin(self.id, true);
        held.then(|| self.guard())
    }

    fn guard(&self) -> Busy {
        Busy {
            slots: Arc::clone(&self.slots),
            id: self.id,
        }
    }

    /// Completes when a new connection took this one's slot.
    pub fn evicted(&self) -> WaitForCancellationFuture<'_> {
        self.evict.cancelled()
    }

    /// Whether work ever began on this connection (for HTTP: whether a
    /// request head came, so something was written on it).
    pub fn asked(&self) -> bool {
        self.asked.load(Ordering::Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().remove(self.id);
    }
}

/// Work in progress on a [`Slot`]; owned, so it can go with the work.
#[derive(Debug)]
pub struct Busy {
    slots: Arc<Slots>,
    id: Id,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.slots.lock().end(self.id, Instant::now());
    }
}

/// A slot's position in the table, and the admission it belongs to (a
/// position is reused; the serial tells a connection from its successor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Id {
    index: usize,
    serial: u64,
}

/// The connections holding a slot.
#[derive(Debug, Default)]
struct Table {
    /// A slab: `None` marks a free position, listed in `free`.
    entries: Vec<Option<Entry>>,
    /// Each position's [`Keys`], beside the slab so that the eviction
    /// scan reads 16 bytes a slot rather than whole entries.
    keys: Vec<Keys>,
    free: Vec<usize>,
    len: usize,
    next: u64,
    /// The first admission's time: keys count nanoseconds from it.
    base: Option<Instant>,
}

/// When a position's connection began to wait, as the eviction scan
/// compares it: nanoseconds from [`Table::base`], `u64::MAX` for none
/// (busy, or a free position).
#[derive(Debug, Clone, Copy)]
struct Keys {
    /// The first byte of its part-read message, if it waits on one.
    stall: u64,
    /// Since when it waits: the end of its last work, or the start of a
    /// part-read message if later (a message begun is activity until it
    /// stalls).
    idle: u64,
}

impl Keys {
    const NONE: Keys = Keys {
        stall: u64::MAX,
        idle: u64::MAX,
    };
}

/// What [`Table::admit`] did.
#[derive(Debug)]
struct Admitted {
    id: Id,
    /// Cancelled when this connection is evicted in turn.
    evict: CancellationToken,
    /// The token of the connection evicted for this one, to cancel, and why
    /// it could be.
    evicted: Option<(CancellationToken, Waiting)>,
}

#[derive(Debug)]
struct Entry {
    serial: u64,
    /// Guards of work in progress; busy while above zero.
    busy: u32,
    /// Since when part of a message is in, while the rest is not.
    partial: Option<Instant>,
    /// Since when it waits (accepted, or its last work ended).
    idle: Instant,
    evict: CancellationToken,
}

impl Table {
    /// Admits a connection accepted at `now`, idle. With `cap` or more
    /// connections, the one that gives way is removed here, so that its
    /// slot is free at once (its task ends soon after). `None` when every
    /// slot is busy.
    fn admit(&mut self, cap: usize, now: Instant) -> Option<Admitted> {
        let base = *self.base.get_or_insert(now);
        let mut evicted = None;
        if self.len >= cap {
            let (index, why) = self.longest_waiting(now, base)?;
            let gone = self.entries[index].take()?;
            self.keys[index] = Keys::NONE;
            self.free.push(index);
            self.len -= 1;
            evicted = Some((gone.evict, why));
        }
        let serial = self.next;
        self.next += 1;
        let evict = CancellationToken::new();
        let entry = Entry {
            serial,
            busy: 0,
            partial: None,
            idle: now,
            evict: evict.clone(),
        };
        let index = match self.free.pop() {
            Some(i) => {
                self.entries[i] = Some(entry);
                i
            }
            None => {
                self.entries.push(Some(entry));
                self.keys.push(Keys::NONE);
                self.entries.len() - 1
            }
        };
        self.sync(index);
        self.len += 1;
        Some(Admitted {
            id: Id { index, serial },
            evict,
            evicted,
        })
    }

    /// The connection that gives way at `now`: the one stalled longest,
    /// else the one idle longest; `None` when all are busy. One pass over
    /// the keys.
    fn longest_waiting(&self, now: Instant, base: Instant) -> Option<(usize, Waiting)> {
        // A message begun before base + STALLED cannot have stalled yet.
        let stalled_from = (now.checked_sub(STALLED))
            .filter(|&t| t >= base)
            .map(|t| self.ticks(t));
        let (mut stall, mut idle) = ((u64::MAX, 0), (u64::MAX, 0));
        for (i, k) in self.keys.iter().enumerate() {
            if k.stall < stall.0 {
                stall = (k.stall, i);
            }
            if k.idle < idle.0 {
                idle = (k.idle, i);
            }
        }
        if stalled_from.is_some_and(|t| stall.0 <= t) {
            Some((stall.1, Waiting::Stalled))
        } else {
            (idle.0 < u64::MAX).then_some((idle.1, Waiting::Idle))
        }
    }

    /// Work on `id` begins (and its message is whole, if `whole`); false
    /// when it was evicted.
    fn begin(&mut self, id: Id, whole: bool) -> bool {
        let Some(e) = self.entry_mut(id) else {
            return false;
        };
        e.busy = e.busy.saturating_add(1);
        if whole {
            e.partial = None;
        }
        self.sync(id.index);
        true
    }

    /// Work on `id` ended at `now`: idle from then if it was the last.
    fn end(&mut self, id: Id, now: Instant) {
        if let Some(e) = self.entry_mut(id) {
            e.busy = e.busy.saturating_sub(1);
            if e.busy == 0 {
                e.idle = now;
            }
            self.sync(id.index);
        }
    }

    /// Part of a message of `id` came at `now`; a later part does not move
    /// the time.
    fn partial(&mut self, id: Id, now: Instant) {
        if let Some(e) = self.entry_mut(id) {
            e.partial.get_or_insert(now);
            self.sync(id.index);
        }
    }

    fn remove(&mut self, id: Id) {
        if self.entry_mut(id).is_some() {
            self.entries[id.index] = None;
            self.keys[id.index] = Keys::NONE;
            self.free.push(id.index);
            self.len -= 1;
        }
    }

    /// Recomputes the keys of the connection at `index` after a change.
    fn sync(&mut self, index: usize) {
        let keys = match self.entries.get(index) {
            Some(Some(e)) if e.busy == 0 => {
                let idle = self.ticks(e.idle);
                match e.partial {
                    Some(p) => {
                        let p = self.ticks(p);
                        Keys {
                            stall: p,
                            idle: p.max(idle),
                        }
                    }
                    None => Keys {
                        stall: u64::MAX,
                        idle,
                    },
                }
            }
            _ => Keys::NONE,
        };
        if let Some(k) = self.keys.get_mut(index) {
            *k = keys;
        }
    }

    /// `t` as a key: nanoseconds from the base (u64 lasts 584 years).
    fn ticks(&self, t: Instant) -> u64 {
        let since = self
            .base
            .map_or(Duration::ZERO, |b| t.saturating_duration_since(b));
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX - 1)
    }

    fn entry_mut(&mut self, id: Id) -> Option<&mut Entry> {
        (self.entries.get_mut(id.index)?.as_mut()).filter(|e| e.serial == id.serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    fn holds(table: &mut Table, id: Id) -> bool {
        table.entry_mut(id).is_some()
    }

    #[test]
    fn below_the_cap_nobody_is_evicted() {
        let t0 = Instant::now();
        let mut table = Table::default();
        for ms in 0..3 {
            assert!(table.admit(3, at(t0, ms)).unwrap().evicted.is_none());
        }
        assert_eq!(table.len, 3);
    }

    #[test]
    fn at_the_cap_the_longest_waiting_gives_way() {
        let t0 = Instant::now();
        let mut table = Table::default();
        let slow = table.admit(3, at(t0, 0)).unwrap();
        let idle = table.admit(3, at(t0, 10)).unwrap().id;
        let fresh = table.admit(3, at(t0, 20)).unwrap().id;
        // `idle` was answered and waits for its next message since 30 ms:
        // `slow`, waiting since 0 ms, goes first.
        assert!(table.begin(idle, false));
        table.end(idle, at(t0, 30));
        let new = table.admit(3, at(t0, 40)).unwrap();
        let (token, why) = new.evicted.expect("one gives way");
        token.cancel();
        assert_eq!(why, Waiting::Idle);
        assert!(slow.evict.is_cancelled(), "the evicted one is `slow`");
        assert!(!holds(&mut table, slow.id));
        // The evicted one can no longer become busy.
        assert!(!table.begin(slow.id, false));
        // Next: `fresh` (20 ms), then `idle` (30 ms), then `new` (40 ms).
        for gone in [fresh, idle, new.id] {
            assert!(table.admit(3, at(t0, 50)).unwrap().evicted.is_some());
            assert!(!holds(&mut table, gone), "{gone:?} should be evicted");
        }
    }

    #[test]
    fn busy_connections_are_never_evicted() {
        let t0 = Instant::now();
        let mut table = Table::default();
        let a = table.admit(2, at(t0, 0)).unwrap().id;
        let b = table.admit(2, at(t0, 1)).unwrap().id;
        assert!(table.begin(a, false));
        // Only `b` waits: it goes, though `a` is older.
        let c = table.admit(2, at(t0, 2)).unwrap();
        assert!(c.evicted.is_some());
        assert!(!holds(&mut table, b) && holds(&mut table, a));
        assert!(table.begin(c.id, false));
        // Both busy: refused, and nobody is evicted.
        assert!(table.admit(2, at(t0, 3)).is_none());
        assert_eq!(table.len, 2);
        // A slot comes back when a connection ends.
        table.remove(a);
        assert!(table.admit(2, at(t0, 4)).unwrap().evicted.is_none());
    }

    #[test]
    fn busy_counts_every_guard() {
        let t0 = Instant::now();
        let mut table = Table::default();
        let a = table.admit(1, at(t0, 0)).unwrap().id;
        // Two queries in flight; one answered: still busy.
        assert!(table.begin(a, false) && table.begin(a, false));
        table.end(a, at(t0, 5));
        assert!(table.admit(1, at(t0, 6)).is_none(), "one is still busy");
        table.end(a, at(t0, 7));
        let (_, why) = table.admit(1, at(t0, 8)).unwrap().evicted.unwrap();
        assert_eq!(why, Waiting::Idle);
    }

    #[test]
    fn stalled_connections_give_way_before_idle_ones() {
        let t0 = Instant::now();
        let stalled = STALLED.as_millis() as u64;
        let mut table = Table::default();
        let idle = table.admit(3, at(t0, 0)).unwrap().id;
        let slow = table.admit(3, at(t0, 100)).unwrap().id;
        let trickling = table.admit(3, at(t0, 200)).unwrap().id;
        // `slow` began a message at 300 ms, `trickling` at 400 ms and sends
        // a byte every 100 ms after: the later parts do not move its time.
        table.partial(slow, at(t0, 300));
        for ms in (400..2000).step_by(100) {
            table.partial(trickling, at(t0, ms));
        }
        // Before STALLED has passed, a part-read message is no stall: the
        // one idle since 0 ms goes first.
        let now = at(t0, 300 + stalled - 1);
        let first = table.admit(3, now).unwrap();
        assert_eq!(first.evicted.map(|e| e.1), Some(Waiting::Idle));
        assert!(!holds(&mut table, idle));
        // Then both are stalled: the one stalled longest goes, though the
        // other sent its last byte earlier, and before the idle newcomer.
        let now = at(t0, 400 + stalled);
        let second = table.admit(3, now).unwrap();
        assert_eq!(second.evicted.map(|e| e.1), Some(Waiting::Stalled));
        assert!(!holds(&mut table, slow) && holds(&mut table, trickling));
        let third = table.admit(3, now).unwrap();
        assert_eq!(third.evicted.map(|e| e.1), Some(Waiting::Stalled));
        assert!(!holds(&mut table, trickling));
        assert!(holds(&mut table, first.id) && holds(&mut table, second.id));
    }

    #[test]
    fn a_whole_message_ends_the_stall_and_counts_as_work() {
        let t0 = Instant::now();
        let stalled = STALLED.as_millis() as u64;
        let mut table = Table::default();
        let a = table.admit(2, at(t0, 0)).unwrap().id;
        let b = table.admit(2, at(t0, 10)).unwrap().id;
        table.partial(a, at(t0, 20));
        // `a`'s message came whole and was answered at 30 ms, after `b`
        // arrived: `b` waits longer, so it goes.
        assert!(table.begin(a, true));
        table.end(a, at(t0, 30));
        let c = table.admit(2, at(t0, 30 + stalled)).unwrap();
        assert_eq!(c.evicted.map(|e| e.1), Some(Waiting::Idle));
        assert!(holds(&mut table, a) && !holds(&mut table, b));
        // A message part-read while another query is in flight: busy, then
        // stalled from the message's first byte once the answer is out,
        // and then evicted ahead of the idle one.
        let t1 = at(t0, 40 + stalled);
        table.partial(a, at(t1, 0));
        assert!(table.begin(a, false));
        assert!(table.admit(2, at(t1, 10)).unwrap().evicted.is_some());
        assert!(holds(&mut table, a), "busy, so not evicted");
        table.end(a, at(t1, 20 + stalled));
        let (_, why) = table
            .admit(2, at(t1, 20 + stalled))
            .unwrap()
            .evicted
            .unwrap();
        assert_eq!(why, Waiting::Stalled);
        assert!(!holds(&mut table, a));
    }

    #[test]
    fn the_cap_is_read_on_each_admission() {
        let t0 = Instant::now();
        let mut table = Table::default();
        for ms in 0..3 {
            assert!(table.admit(3, at(t0, ms)).unwrap().evicted.is_none());
        }
        // Raised: room again. Lowered below the count: each admission
        // evicts one, so the count stays until connections end.
        assert!(table.admit(4, at(t0, 3)).unwrap().evicted.is_none());
        assert!(table.admit(2, at(t0, 4)).unwrap().evicted.is_some());
        assert_eq!(table.len, 4);
    }

    #[test]
    fn positions_are_reused_and_old_ids_do_not_match() {
        let t0 = Instant::now();
        let mut table = Table::default();
        let a = table.admit(8, t0).unwrap().id;
        table.remove(a);
        let b = table.admit(8, t0).unwrap().id;
        assert_eq!(a.index, b.index, "the freed position is reused");
        assert!(!table.begin(a, false), "the old id is gone");
        table.end(a, t0);
        table.remove(a);
        assert!(holds(&mut table, b), "b is untouched by a's id");
        assert_eq!((table.len, table.entries.len()), (1, 1));
    }

    #[test]
    fn slots_cancel_the_evicted_and_give_back_on_drop() {
        let slots = Slots::new();
        let first = slots.admit(1, Instant::now()).slot.unwrap();
        assert!(!first.asked());
        let second = slots.admit(1, Instant::now()).slot.unwrap();
        assert!(first.evict.is_cancelled());
        assert!(
            first.busy().is_none(),
            "an evicted connection stays evicted"
        );
        assert!(first.asked());
        // Dropping the evicted slot leaves the new one's place alone.
        drop(first);
        let busy = second.busy().expect("not evicted");
        let refused = slots.admit(1, Instant::now());
        assert!(refused.slot.is_none(), "the one slot is busy");
        assert!(refused.evicted.is_none());
        // Answered: waiting again, so it gives way to the next one.
        drop(busy);
        let third = slots.admit(1, Instant::now());
        assert_eq!(third.evicted, Some(Waiting::Idle));
        assert!(second.evict.is_cancelled());
        drop((second, third));
        assert_eq!(slots.lock().len, 0);
    }

    /// What eviction costs: a scan of every slot, at the default cap and
    /// the largest. Prints the times (`-- --nocapture`; build optimized
    /// for a figure that means anything).
    #[test]
    fn eviction_at_the_default_and_the_largest_cap() {
        for cap in [256, 65_535] {
            let t0 = Instant::now();
            let mut table = Table::default();
            for i in 0..cap {
                table.admit(cap, at(t0, i as u64)).unwrap();
            }
            let rounds = 200u32;
            let started = Instant::now();
            for _ in 0..rounds {
                assert!(table.admit(cap, at(t0, 1 << 20)).unwrap().evicted.is_some());
            }
            let each = started.elapsed() / rounds;
            println!("slots: eviction among {cap} slots takes {each:?}");
            assert_eq!(table.len, cap);
        }
    }
}
