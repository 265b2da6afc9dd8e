//! Learned destinations: addresses seen in answers, and the tries to reach
//! them, in a bounded LRU table under one token bucket.
//!
//! Pure bookkeeping for [`crate::probe::engine`], which decides what may be
//! learned and sends the probes. A *try* is one probe from each of `width`
//! sources to the same address and port; it takes `width` tokens.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Web ports, tried in turn; the first that answers is kept.
const PORTS: [u16; 2] = [443, 80];

#[derive(Debug, Default)]
pub(super) struct Table {
    entries: HashMap<IpAddr, Entry>,
    /// Addresses due for a try, oldest first (stale ones are skipped).
    queue: VecDeque<IpAddr>,
    /// LRU clock: bumped by every `learn`.
    clock: u64,
    tokens: f64,
    refilled: Option<Instant>,
    rate: f64,
    burst: f64,
    capacity: usize,
    interval: Duration,
}

#[derive(Debug, Default)]
struct Entry {
    used: u64,
    /// Index into [`PORTS`] for the next try.
    port: usize,
    last_try: Option<Instant>,
    /// Probes of the current try still out, and whether one got through.
    pending: usize,
    reached: bool,
    /// A failed try may be followed by one on the other port, once.
    retry: bool,
    queued: bool,
}

impl Table {
    /// `rate` probes per second, `burst` deep, `capacity` addresses; an
    /// address is tried at most once per `interval` (plus its follow-up).
    pub(super) fn new(rate: u32, burst: u32, capacity: usize, interval: Duration) -> Table {
        let (rate, burst) = (f64::from(rate), f64::from(burst.max(1)));
        Table {
            rate,
            burst,
            capacity,
            interval,
            tokens: burst,
            ..Table::default()
        }
    }

    pub(super) fn contains(&self, ip: IpAddr) -> bool {
        self.entries.contains_key(&ip)
    }

    #[cfg(test)]
    pub(super) fn addresses(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self.entries.keys().copied().collect();
        v.sort();
        v
    }

    /// `ip` was seen in an answer: it becomes the most recently used, and a
    /// try is queued unless one ran within `interval` or is under way.
    /// Returns the address evicted to make room, if any.
    pub(super) fn learn(&mut self, now: Instant, ip: IpAddr) -> Option<IpAddr> {
        if self.capacity == 0 || self.rate == 0.0 {
            return None;
        }
        let full = !self.entries.contains_key(&ip) && self.entries.len() >= self.capacity;
        // A scan: a few hundred entries, once per new address.
        let evicted = full
            .then(|| {
                self.entries
                    .iter()
                    .min_by_key(|(_, e)| e.used)
                    .map(|(ip, _)| *ip)
            })
            .flatten();
        if let Some(old) = evicted {
            self.entries.remove(&old);
        }
        self.clock += 1;
        self.refilled.get_or_insert(now);
        let e = self.entries.entry(ip).or_default();
        e.used = self.clock;
        let stale = e.last_try.is_none_or(|t| now >= t + self.interval);
        if !e.queued && e.pending == 0 && stale {
            e.queued = true;
            e.retry = true;
            self.queue.push_back(ip);
        }
        evicted
    }

    /// Queues a try of `ip` at the front of the line now, whatever the
    /// interval, unless one is queued or under way: an application's
    /// connect to it is stuck. False when `ip` is not in the table or a
    /// try is already coming.
    pub(super) fn hurry(&mut self, ip: IpAddr) -> bool {
        let Some(e) = self.entries.get_mut(&ip) else {
            return false;
        };
        if e.queued || e.pending > 0 {
            return false;
        }
        e.queued = true;
        e.retry = true;
        self.queue.push_front(ip);
        true
    }

    /// The next try the bucket can pay for now: its destination, after
    /// taking `width(ip)` tokens. An address with no source (`width` 0) is
    /// dropped from the queue. A try wider than the bucket borrows from the
    /// future rather than never running.
    pub(super) fn next_try(
        &mut self,
        now: Instant,
        width: impl Fn(IpAddr) -> usize,
    ) -> Option<SocketAddr> {
        self.refill(now);
        while let Some(&ip) = self.queue.front() {
            let n = width(ip);
            let Some(e) = self.entries.get_mut(&ip).filter(|e| e.queued && n > 0) else {
                self.queue.pop_front();
                if let Some(e) = self.entries.get_mut(&ip) {
                    e.queued = false;
                }
                continue;
            };
            // The epsilon absorbs float rounding at the instant `wakeup` named.
            if self.tokens + 1e-9 < (n as f64).min(self.burst) {
                return None;
            }
            self.tokens -= n as f64;
            self.queue.pop_front();
            *e = Entry {
                queued: false,
                pending: n,
                reached: false,
                last_try: Some(now),
                ..*e
            };
            return Some(SocketAddr::new(ip, PORTS[e.port]));
        }
        None
    }

    /// When the bucket will pay for the try at the front of the queue.
    pub(super) fn wakeup(&self, width: impl Fn(IpAddr) -> usize) -> Option<Instant> {
        let ip = *self.queue.front()?;
        let at = self.refilled?;
        let need = (width(ip) as f64).min(self.burst);
        // Rounded up to the next nanosecond, so that waking then finds them.
        let wait = ((need - self.tokens).max(0.0) / self.rate).min(3600.0);
        Some(at + Duration::from_nanos((wait * 1e9).ceil() as u64))
    }

    /// One probe of `ip`'s current try ended (or its source went away).
    pub(super) fn result(&mut self, ip: IpAddr, ok: bool) {
        let Some(e) = self.entries.get_mut(&ip) else {
            return;
        };
        e.pending = e.pending.saturating_sub(1);
        e.reached |= ok;
        if e.pending > 0 {
            return;
        }
        if e.reached {
            e.retry = false;
            return;
        }
        // Nothing answered on this port: the next try uses the other one,
        // and the first failed try is followed up at once.
        e.port = (e.port + 1) % PORTS.len();
        if std::mem::take(&mut e.retry) && !e.queued {
            e.queued = true;
            self.queue.push_back(ip);
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = self
            .refilled
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = Some(now);
    }
}
