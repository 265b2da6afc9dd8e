//! Lookups in flight: identical queries merged into one, and the bounded,
//! fair set of upstream slots.
//!
//! A cache miss starts a *flight*: one upstream lookup for its [`Key`],
//! with the clients waiting for it. A query identical to one in flight
//! joins it as a small [`Table`] entry (the client's bytes and where to
//! send the answer), never as a task of its own: the flight's one task fans
//! the answer out. Joiners are capped per flight and in total; past the
//! caps a further identical query is turned away (dnsmasq does the same
//! when its forward records run out), so a client retrying one name at
//! 40k qps while the upstream is down costs a bounded amount of memory.
//!
//! Flights themselves are capped (`dns.max_inflight`). When every slot is
//! taken, a new lookup takes the slot of the oldest flight of the client
//! that holds the most (longest-queue drop: whoever floods the table with
//! names that never get answered loses its own oldest lookups first, and
//! everyone else keeps getting theirs; Unbound's `jostle-timeout` makes
//! room the same way). A client that itself holds the most only takes its
//! own oldest slot, and only one older than [`Limits::jostle`], so a
//! burst of ordinary misses does not churn; otherwise its new query is
//! refused ([`Admission::Busy`]).
//!
//! Pure bookkeeping: the caller passes `now`, owns the waiters (`W`) and
//! the handle that stops an evicted flight's task (`C`).

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::cache::Key;

/// The caps, read from the settings on every admission (a reload changes
/// them for the next query).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Flights at once (`dns.max_inflight`).
    pub flights: usize,
    /// Clients waiting on one flight, its first one included.
    pub per_flight: usize,
    /// Clients waiting on all flights together.
    pub waiters: usize,
    /// How old a client's own flight must be before its new lookup may
    /// take that flight's slot.
    pub jostle: Duration,
}

impl Limits {
    /// Clients that may wait on one flight: a burst of one name from every
    /// device of a large LAN fits, a client retrying in a loop does not
    /// grow it past this.
    pub const PER_FLIGHT: usize = 256;
    /// Waiters in total, per flight slot: a waiter is about 150 bytes, so
    /// the default 1,024 slots bound them at about 1.2 MiB.
    pub const WAITERS_PER_SLOT: usize = 8;
    /// Unbound's `jostle-timeout` default.
    pub const JOSTLE: Duration = Duration::from_millis(200);

    /// The caps for `max_inflight` flight slots.
    pub fn for_slots(max_inflight: usize) -> Limits {
        let flights = max_inflight.max(1);
        Limits {
            flights,
            per_flight: Self::PER_FLIGHT,
            waiters: flights.saturating_mul(Self::WAITERS_PER_SLOT),
            jostle: Self::JOSTLE,
        }
    }
}

/// What became of a query handed to [`Table::admit`].
#[derive(Debug)]
pub enum Admission<W, C> {
    /// It waits on the flight already under way.
    Joined,
    /// It leads a new flight, number `id`, whose task the caller starts.
    /// `evicted`: the flight that gave way to it.
    Lead {
        id: u64,
        evicted: Option<Evicted<W, C>>,
    },
    /// Turned away: its flight, or all flights together, have their most
    /// waiters.
    Dropped(W),
    /// Turned away: every slot is taken and none may give way.
    Busy(W),
}

/// A flight that gave up its slot: its task is to be stopped with
/// `cancel`, and its waiters answered.
#[derive(Debug)]
pub struct Evicted<W, C> {
    pub cancel: C,
    pub waiters: Vec<W>,
}

#[derive(Debug)]
struct Flight<W, C> {
    id: u64,
    client: IpAddr,
    started: Instant,
    waiters: Vec<W>,
    cancel: C,
}

/// Adds `waiter` to `flight` unless the flight, or all flights together
/// (`waiters`), have their most.
fn join<W, C>(
    flight: &mut Flight<W, C>,
    waiters: &mut usize,
    waiter: W,
    limits: Limits,
) -> Admission<W, C> {
    if flight.waiters.len() >= limits.per_flight || *waiters >= limits.waiters {
        return Admission::Dropped(waiter);
    }
    flight.waiters.push(waiter);
    *waiters += 1;
    Admission::Joined
}

/// The flights in progress, by key, with each client's share.
#[derive(Debug)]
pub struct Table<W, C> {
    flights: HashMap<Key, Flight<W, C>>,
    /// Flight ids to keys, for eviction.
    keys: HashMap<u64, Key>,
    /// Each client's flights, oldest (lowest id) first.
    clients: HashMap<IpAddr, BTreeSet<u64>>,
    /// (flights held, client): the last one holds the most.
    load: BTreeSet<(usize, IpAddr)>,
    /// Waiters of every flight together.
    waiters: usize,
    next_id: u64,
}

impl<W, C> Default for Table<W, C> {
    fn default() -> Self {
        Table {
            flights: HashMap::new(),
            keys: HashMap::new(),
            clients: HashMap::new(),
            load: BTreeSet::new(),
            waiters: 0,
            next_id: 0,
        }
    }
}

impl<W, C> Table<W, C> {
    /// Flights in progress.
    pub fn len(&self) -> usize {
        self.flights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flights.is_empty()
    }

    /// Clients waiting on all flights.
    pub fn waiters(&self) -> usize {
        self.waiters
    }

    /// A query for `key` from `client`: it joins the flight for `key`, or
    /// leads a new one (taking a slot from another flight when all are
    /// taken), or is turned away. `cancel` makes the handle that stops a
    /// new flight's task; it is called only for a new flight.
    pub fn admit(
        &mut self,
        key: &Key,
        client: IpAddr,
        waiter: W,
        cancel: impl FnOnce() -> C,
        limits: Limits,
        now: Instant,
    ) -> Admission<W, C> {
        if self.flights.len() < limits.flights {
            // A free slot, the usual case: the key is hashed once, whether
            // the query joins or leads.
            return match self.flights.entry(key.clone()) {
                Entry::Occupied(mut o) => join(o.get_mut(), &mut self.waiters, waiter, limits),
                Entry::Vacant(_) if self.waiters >= limits.waiters => Admission::Dropped(waiter),
                Entry::Vacant(v) => {
                    let id = self.next_id;
                    self.next_id += 1;
                    v.insert(Flight {
                        id,
                        client,
                        started: now,
                        waiters: vec![waiter],
                        cancel: cancel(),
                    });
                    self.keys.insert(id, key.clone());
                    self.waiters += 1;
                    self.shift_load(client, |ids| {
                        ids.insert(id);
                    });
                    Admission::Lead { id, evicted: None }
                }
            };
        }
        if let Some(flight) = self.flights.get_mut(key) {
            return join(flight, &mut self.waiters, waiter, limits);
        }
        if self.waiters >= limits.waiters {
            return Admission::Dropped(waiter);
        }
        let mut evicted = None;
        if self.flights.len() >= limits.flights {
            match self.victim(client, limits.jostle, now) {
                Some(id) => evicted = self.remove(id),
                None => return Admission::Busy(waiter),
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.shift_load(client, |ids| {
            ids.insert(id);
        });
        self.keys.insert(id, key.clone());
        self.waiters += 1;
        self.flights.insert(
            key.clone(),
            Flight {
                id,
                client,
                started: now,
                waiters: vec![waiter],
                cancel: cancel(),
            },
        );
        Admission::Lead { id, evicted }
    }

    /// The flight to give way to a new one from `client`: the oldest of the
    /// client holding the most; the new client's own oldest only when it
    /// is that client and the flight is older than `jostle`.
    fn victim(&self, client: IpAddr, jostle: Duration, now: Instant) -> Option<u64> {
        let &(most, heaviest) = self.load.last()?;
        let own = self.clients.get(&client).map_or(0, BTreeSet::len);
        let from = if own >= most { client } else { heaviest };
        let oldest = *self.clients.get(&from)?.first()?;
        if from == client {
            let key = self.keys.get(&oldest)?;
            let started = self.flights.get(key)?.started;
            if now.saturating_duration_since(started) < jostle {
                return None;
            }
        }
        Some(oldest)
    }

    /// Flight `id` of `key` is over: its waiters, to be answered. Nothing
    /// when it was evicted meanwhile (its waiters went with the eviction).
    pub fn finish(&mut self, key: &Key, id: u64) -> Vec<W> {
        let Some(flight) = self.flights.remove(key) else {
            return Vec::new();
        };
        if flight.id != id {
            // Evicted, and a new flight for the key started since: put it
            // back (rare; taking it out first hashes the key once for the
            // usual case).
            self.flights.insert(key.clone(), flight);
            return Vec::new();
        }
        self.keys.remove(&id);
        self.forget(flight).waiters
    }

    /// Takes out of flight `id` of `key` the waiters `due` picks (in their
    /// order of arrival), leaving the flight running for the others.
    pub fn take(&mut self, key: &Key, id: u64, mut due: impl FnMut(&W) -> bool) -> Vec<W> {
        let Some(flight) = self.flights.get_mut(key).filter(|f| f.id == id) else {
            return Vec::new();
        };
        let taken: Vec<W> = flight.waiters.extract_if(.., |w| due(w)).collect();
        self.waiters -= taken.len();
        taken
    }

    /// The first waiter of flight `id` of `key` that `pick` accepts.
    pub fn first_waiter<T>(
        &self,
        key: &Key,
        id: u64,
        pick: impl FnMut(&W) -> Option<T>,
    ) -> Option<T> {
        let flight = self.flights.get(key).filter(|f| f.id == id)?;
        flight.waiters.iter().find_map(pick)
    }

    fn remove(&mut self, id: u64) -> Option<Evicted<W, C>> {
        let key = self.keys.remove(&id)?;
        let flight = self.flights.remove(&key)?;
        Some(self.forget(flight))
    }

    /// The bookkeeping of a flight taken out of `flights` and `keys`.
    fn forget(&mut self, flight: Flight<W, C>) -> Evicted<W, C> {
        let id = flight.id;
        self.shift_load(flight.client, |ids| {
            ids.remove(&id);
        });
        self.waiters -= flight.waiters.len();
        Evicted {
            cancel: flight.cancel,
            waiters: flight.waiters,
        }
    }

    /// Changes `client`'s set of flights, keeping `load` in step.
    fn shift_load(&mut self, client: IpAddr, change: impl FnOnce(&mut BTreeSet<u64>)) {
        let ids = self.clients.entry(client).or_default();
        self.load.remove(&(ids.len(), client));
        change(ids);
        if ids.is_empty() {
            self.clients.remove(&client);
        } else {
            self.load.insert((ids.len(), client));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::cache_key;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn limits(flights: usize) -> Limits {
        Limits {
            flights,
            per_flight: 3,
            waiters: 10,
            jostle: Duration::from_millis(200),
        }
    }

    type T = Table<u32, &'static str>;

    fn lead(t: &mut T, name: &str, client: IpAddr, w: u32, l: Limits, now: Instant) -> u64 {
        match t.admit(&cache_key(name), client, w, || "cancel", l, now) {
            Admission::Lead { id, evicted: None } => id,
            other => panic!("{name}: expected a new flight, got {other:?}"),
        }
    }

    #[test]
    fn an_evicted_flight_finishing_leaves_the_new_one_of_its_key() {
        let now = Instant::now();
        let l = limits(2);
        let mut t = T::default();
        let old = lead(&mut t, "a.test", ip(66), 1, l, now);
        lead(&mut t, "b.test", ip(66), 2, l, now);
        // Full: another client takes the slot of a.test's flight...
        assert!(matches!(
            t.admit(&cache_key("c.test"), ip(2), 3, || "x", l, now),
            Admission::Lead {
                evicted: Some(_),
                ..
            }
        ));
        t.finish(&cache_key("b.test"), 1);
        // ...and a.test is asked again: a new flight for the same key.
        let new = lead(&mut t, "a.test", ip(3), 4, l, now);
        assert_ne!(old, new);
        // The evicted task ends after it: it takes nothing, and the new
        // flight stays, joinable, with its waiter.
        assert!(t.finish(&cache_key("a.test"), old).is_empty());
        assert_eq!((t.len(), t.waiters()), (2, 2));
        assert!(matches!(
            t.admit(&cache_key("a.test"), ip(4), 5, || "x", l, now),
            Admission::Joined
        ));
        assert_eq!(t.finish(&cache_key("a.test"), new), vec![4, 5]);
        assert_eq!((t.len(), t.waiters()), (1, 1));
    }

    #[test]
    fn identical_queries_join_up_to_the_caps() {
        let now = Instant::now();
        let l = limits(8);
        let mut t = T::default();
        let id = lead(&mut t, "a.test", ip(1), 1, l, now);
        assert!(matches!(
            t.admit(&cache_key("A.test"), ip(2), 2, || "x", l, now),
            Admission::Joined
        ));
        assert!(matches!(
            t.admit(&cache_key("a.test"), ip(1), 3, || "x", l, now),
            Admission::Joined
        ));
        // The fourth waiter passes `per_flight`.
        assert!(matches!(
            t.admit(&cache_key("a.test"), ip(1), 4, || "x", l, now),
            Admission::Dropped(4)
        ));
        assert_eq!((t.len(), t.waiters()), (1, 3));
        assert_eq!(t.finish(&cache_key("a.test"), id), vec![1, 2, 3]);
        assert!(t.is_empty());
        assert_eq!(t.waiters(), 0);
        // A finished flight's id finishes nothing twice.
        assert!(t.finish(&cache_key("a.test"), id).is_empty());
    }

    #[test]
    fn the_total_of_waiters_is_bounded() {
        let now = Instant::now();
        let l = limits(100);
        let mut t = T::default();
        for i in 0..4 {
            let name = format!("n{i}.test");
            lead(&mut t, &name, ip(1), 0, l, now);
            for w in 1..3 {
                t.admit(&cache_key(&name), ip(1), w, || "x", l, now);
            }
        }
        // 4 flights × 3 = 12 > 10: the last two joins were dropped.
        assert_eq!(t.waiters(), 10);
        assert!(matches!(
            t.admit(&cache_key("new.test"), ip(1), 9, || "x", l, now),
            Admission::Dropped(9)
        ));
    }

    #[test]
    fn at_the_cap_the_heaviest_client_gives_way() {
        let now = Instant::now();
        let l = limits(4);
        let mut t = T::default();
        let flood: Vec<u64> = (0..3)
            .map(|i| lead(&mut t, &format!("f{i}.test"), ip(66), 0, l, now))
            .collect();
        lead(&mut t, "legit.test", ip(1), 1, l, now);
        // Full. Another light client takes the flooder's oldest slot at
        // once, however young.
        match t.admit(&cache_key("other.test"), ip(2), 2, || "new", l, now) {
            Admission::Lead {
                evicted: Some(e), ..
            } => assert_eq!((e.cancel, e.waiters), ("cancel", vec![0])),
            other => panic!("{other:?}"),
        }
        assert!(t.finish(&cache_key("f0.test"), flood[0]).is_empty(), "gone");
        assert_eq!(t.len(), 4);
        // The flooder itself may only take its own oldest, and only once
        // it is older than the jostle time.
        assert!(matches!(
            t.admit(&cache_key("f9.test"), ip(66), 9, || "x", l, now),
            Admission::Busy(9)
        ));
        let later = now + Duration::from_millis(250);
        match t.admit(&cache_key("f9.test"), ip(66), 9, || "x", l, later) {
            Admission::Lead {
                evicted: Some(e), ..
            } => assert_eq!(e.waiters, vec![0]),
            other => panic!("{other:?}"),
        }
        assert!(
            t.finish(&cache_key("f1.test"), flood[1]).is_empty(),
            "f1 gave way"
        );
        // The legitimate client's lookup was never touched.
        assert_eq!(t.finish(&cache_key("legit.test"), 3), vec![1]);
    }

    #[test]
    fn a_lone_client_jostles_only_its_stuck_lookups() {
        let now = Instant::now();
        let l = limits(2);
        let mut t = T::default();
        lead(&mut t, "a.test", ip(1), 0, l, now);
        lead(
            &mut t,
            "b.test",
            ip(1),
            1,
            l,
            now + Duration::from_millis(100),
        );
        assert!(matches!(
            t.admit(
                &cache_key("c.test"),
                ip(1),
                2,
                || "x",
                l,
                now + Duration::from_millis(150)
            ),
            Admission::Busy(2)
        ));
        match t.admit(
            &cache_key("c.test"),
            ip(1),
            2,
            || "x",
            l,
            now + Duration::from_millis(201),
        ) {
            Admission::Lead {
                evicted: Some(e), ..
            } => assert_eq!(e.waiters, vec![0], "the oldest went"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn take_leaves_the_rest_waiting() {
        let now = Instant::now();
        let l = limits(8);
        let mut t = T::default();
        let id = lead(&mut t, "a.test", ip(1), 10, l, now);
        t.admit(&cache_key("a.test"), ip(1), 11, || "x", l, now);
        t.admit(&cache_key("a.test"), ip(1), 20, || "x", l, now);
        assert_eq!(
            t.first_waiter(&cache_key("a.test"), id, |w| (*w > 10).then_some(*w)),
            Some(11)
        );
        assert_eq!(t.take(&cache_key("a.test"), id, |w| *w < 15), vec![10, 11]);
        assert_eq!(t.waiters(), 1);
        assert!(
            t.take(&cache_key("a.test"), id + 1, |_| true).is_empty(),
            "wrong id"
        );
        assert_eq!(t.finish(&cache_key("a.test"), id), vec![20]);
    }
}
