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
//! connection, and connections admitted before the reload keep their
//! slots in the same table. A lowered cap is reached as connections end: each
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

mod table;

#[cfg(test)]
mod tests;

use table::{Admitted, Id, Table};

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
