//! The connection cap, and which connection gives up its slot when a new
//! one arrives at the cap.
//!
//! A connection is *waiting* from the moment it is accepted until its
//! request head is in, and again after each answer until the next head
//! (keep-alive); it is *busy* while its request is answered. At the cap,
//! the connection that has waited longest for a request head gives up its
//! slot to the new one: a slow client (slowloris) or an idle keep-alive
//! one cannot hold a slot against a client whose head comes at once, and
//! trickling bytes does not help, because the wait counts from its start.
//! nginx frees slots the same way when `worker_connections` run out (it
//! closes the oldest idle keep-alive connections). Only when every slot is
//! busy is the new connection refused.
//!
//! [`Table`] is the bookkeeping, pure (the caller passes `now`); [`Slots`]
//! shares it between the accept loop and the connections.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// The slots of all listen addresses.
#[derive(Debug)]
pub(super) struct Slots {
    table: Mutex<Table>,
}

impl Slots {
    pub(super) fn new(cap: usize) -> Arc<Slots> {
        Arc::new(Slots {
            table: Mutex::new(Table::new(cap)),
        })
    }

    /// A slot for a connection accepted now, evicting the one that waited
    /// longest if need be; `None` when every slot is busy.
    pub(super) fn admit(self: &Arc<Self>, now: Instant) -> Option<Slot> {
        let Admitted { id, evict, evicted } = self.lock().admit(now)?;
        if let Some(victim) = evicted {
            tracing::debug!(
                "http: at the connection cap, the longest waiting connection gives way"
            );
            victim.cancel();
        }
        Some(Slot {
            slots: Arc::clone(self),
            id,
            evict,
            asked: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Nothing panics while holding it; a poisoned table is still whole.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection's slot; given back when dropped.
#[derive(Debug)]
pub(super) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    evict: CancellationToken,
    /// Whether a request head came on this connection.
    asked: AtomicBool,
}

impl Slot {
    /// Marks the connection busy while the returned guard lives (a request
    /// head is in); waiting again from the moment it is dropped. `None`
    /// when the connection was evicted already.
    pub(super) fn busy(&self) -> Option<Busy<'_>> {
        self.asked.store(true, Ordering::Relaxed);
        // Not `then_some(Busy(self))`: that drops a `Busy`, which locks the
        // table, while the table is still locked.
        let held = self.slots.lock().busy(self.id);
        held.then(|| Busy(self))
    }

    /// Completes when a new connection took this one's slot.
    pub(super) fn evicted(&self) -> WaitForCancellationFuture<'_> {
        self.evict.cancelled()
    }

    /// Whether a request head came on this connection: if not, nothing was
    /// written on it yet.
    pub(super) fn asked(&self) -> bool {
        self.asked.load(Ordering::Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().remove(self.id);
    }
}

/// A request in progress on a [`Slot`].
#[derive(Debug)]
pub(super) struct Busy<'a>(&'a Slot);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.slots.lock().wait(self.0.id, Instant::now());
    }
}

/// The connections holding a slot.
#[derive(Debug)]
struct Table {
    cap: usize,
    next: u64,
    entries: Vec<Entry>,
}

/// What [`Table::admit`] did.
#[derive(Debug)]
struct Admitted {
    id: u64,
    /// Cancelled when this connection is evicted in turn.
    evict: CancellationToken,
    /// The token of the connection evicted for this one, to cancel.
    evicted: Option<CancellationToken>,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    /// `Some` while waiting for a request head, since when.
    waiting: Option<Instant>,
    evict: CancellationToken,
}

impl Table {
    fn new(cap: usize) -> Table {
        Table {
            cap,
            next: 0,
            entries: Vec::with_capacity(cap),
        }
    }

    /// Admits a connection accepted at `now`, waiting. At the cap, the
    /// connection it replaces is removed here, so that its slot is free at
    /// once (its task ends soon after). `None` when every slot is busy.
    fn admit(&mut self, now: Instant) -> Option<Admitted> {
        let mut evicted = None;
        if self.entries.len() >= self.cap {
            let longest = self
                .entries
                .iter()
                .enumerate()
                .filter_map(|(i, e)| Some((e.waiting?, i)))
                .min()?
                .1;
            evicted = Some(self.entries.swap_remove(longest).evict);
        }
        let id = self.next;
        self.next += 1;
        let evict = CancellationToken::new();
        self.entries.push(Entry {
            id,
            waiting: Some(now),
            evict: evict.clone(),
        });
        Some(Admitted { id, evict, evicted })
    }

    /// Marks `id` busy; false when it was evicted.
    fn busy(&mut self, id: u64) -> bool {
        self.entry_mut(id).map(|e| e.waiting = None).is_some()
    }

    /// Marks `id` waiting for its next request head since `now`.
    fn wait(&mut self, id: u64, now: Instant) {
        if let Some(e) = self.entry_mut(id) {
            e.waiting = Some(now);
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(i) = self.entries.iter().position(|e| e.id == id) {
            self.entries.swap_remove(i);
        }
    }

    fn entry_mut(&mut self, id: u64) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    fn holds(table: &Table, id: u64) -> bool {
        table.entries.iter().any(|e| e.id == id)
    }

    #[test]
    fn below_the_cap_nobody_is_evicted() {
        let t0 = Instant::now();
        let mut table = Table::new(3);
        for ms in 0..3 {
            assert!(table.admit(at(t0, ms)).unwrap().evicted.is_none());
        }
        assert_eq!(table.entries.len(), 3);
    }

    #[test]
    fn at_the_cap_the_longest_waiting_gives_way() {
        let t0 = Instant::now();
        let mut table = Table::new(3);
        let slow = table.admit(at(t0, 0)).unwrap();
        let idle = table.admit(at(t0, 10)).unwrap().id;
        let fresh = table.admit(at(t0, 20)).unwrap().id;
        // `idle` was answered and waits for its next head since 30 ms:
        // `slow`, waiting since 0 ms (whatever it trickled), goes first.
        assert!(table.busy(idle));
        table.wait(idle, at(t0, 30));
        let new = table.admit(at(t0, 40)).unwrap();
        new.evicted.expect("one gives way").cancel();
        assert!(slow.evict.is_cancelled(), "the evicted one is `slow`");
        assert!(!holds(&table, slow.id));
        // The evicted one can no longer become busy.
        assert!(!table.busy(slow.id));
        // Next: `fresh` (20 ms), then `idle` (30 ms), then `new` (40 ms).
        for gone in [fresh, idle, new.id] {
            assert!(table.admit(at(t0, 50)).unwrap().evicted.is_some());
            assert!(!holds(&table, gone), "{gone} should be evicted");
        }
    }

    #[test]
    fn busy_connections_are_never_evicted() {
        let t0 = Instant::now();
        let mut table = Table::new(2);
        let a = table.admit(at(t0, 0)).unwrap().id;
        let b = table.admit(at(t0, 1)).unwrap().id;
        assert!(table.busy(a));
        // Only `b` waits: it goes, though `a` is older.
        let c = table.admit(at(t0, 2)).unwrap();
        assert!(c.evicted.is_some());
        assert!(!holds(&table, b) && holds(&table, a));
        assert!(table.busy(c.id));
        // Both busy: refused, and nobody is evicted.
        assert!(table.admit(at(t0, 3)).is_none());
        assert_eq!(table.entries.len(), 2);
        // A slot comes back when a connection ends.
        table.remove(a);
        assert!(table.admit(at(t0, 4)).unwrap().evicted.is_none());
    }

    #[test]
    fn slots_cancel_the_evicted_and_give_back_on_drop() {
        let slots = Slots::new(1);
        let first = slots.admit(Instant::now()).unwrap();
        assert!(!first.asked());
        let second = slots.admit(Instant::now()).unwrap();
        assert!(first.evict.is_cancelled());
        assert!(
            first.busy().is_none(),
            "an evicted connection stays evicted"
        );
        assert!(first.asked());
        // Dropping the evicted slot leaves the new one's place alone.
        drop(first);
        let busy = second.busy().expect("not evicted");
        assert!(
            slots.admit(Instant::now()).is_none(),
            "the one slot is busy"
        );
        // Answered: waiting again, so it gives way to the next one.
        drop(busy);
        let third = slots.admit(Instant::now()).unwrap();
        assert!(second.evict.is_cancelled());
        drop((second, third));
        assert!(slots.lock().entries.is_empty());
    }
}
