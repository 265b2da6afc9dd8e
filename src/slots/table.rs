//! The pure bookkeeping of the slots: a slab of connections with their
//! states and eviction keys, and the choice of whom to evict at the cap.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{STALLED, Waiting};

/// A slot's position in the table, and the admission it belongs to (a
/// position is reused; the serial tells a connection from its successor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Id {
    pub(super) index: usize,
    serial: u64,
}

/// The connections holding a slot.
#[derive(Debug, Default)]
pub(super) struct Table {
    /// A slab: `None` marks a free position, listed in `free`.
    pub(super) entries: Vec<Option<Entry>>,
    /// Each position's [`Keys`], beside the slab so that the eviction
    /// scan reads 16 bytes a slot rather than whole entries.
    keys: Vec<Keys>,
    free: Vec<usize>,
    pub(super) len: usize,
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
pub(super) struct Admitted {
    pub(super) id: Id,
    /// Cancelled when this connection is evicted in turn.
    pub(super) evict: CancellationToken,
    /// The token of the connection evicted for this one, to cancel, and why
    /// it could be.
    pub(super) evicted: Option<(CancellationToken, Waiting)>,
}

#[derive(Debug)]
pub(super) struct Entry {
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
    pub(super) fn admit(&mut self, cap: usize, now: Instant) -> Option<Admitted> {
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
    pub(super) fn begin(&mut self, id: Id, whole: bool) -> bool {
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
    pub(super) fn end(&mut self, id: Id, now: Instant) {
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
    pub(super) fn partial(&mut self, id: Id, now: Instant) {
        if let Some(e) = self.entry_mut(id) {
            e.partial.get_or_insert(now);
            self.sync(id.index);
        }
    }

    pub(super) fn remove(&mut self, id: Id) {
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

    pub(super) fn entry_mut(&mut self, id: Id) -> Option<&mut Entry> {
        (self.entries.get_mut(id.index)?.as_mut()).filter(|e| e.serial == id.serial)
    }
}
