//! The DNS server: the UDP and TCP listeners, and the path a query takes
//! from its bytes to the answer a client gets.
//!
//! `pipeline` is the path itself, in reading order; `listen` the sockets
//! and framing around it; the other files hold one stage's details each.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use ipnet::IpNet;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use super::cache::Cache;
use super::upstream::Pool;
use crate::metrics::Metrics;
use crate::probe::driver::Input;
use crate::probe::verdicts::Verdicts;
use crate::slots::Slots;

mod batch;
mod failures;
mod learn;
mod listen;
mod lookup;
mod pipeline;
mod view;
mod waiters;

#[cfg(test)]
mod tests;

use failures::Failures;
pub use learn::is_public_name;
pub(crate) use listen::connection;
pub use listen::{serve_tcp, serve_udp};
pub use lookup::LookupError;
pub use pipeline::Step;
pub use view::Cached;
use waiters::Flights;
pub use waiters::{Resolution, Sink, Waiter};

/// What the listeners read on every query; replaced whole on reload.
#[derive(Debug)]
pub struct Settings {
    pub allow: Vec<IpNet>,
    /// Cap on the UDP reply size offered to EDNS clients.
    pub udp_cap: u16,
    pub pool: Arc<Pool>,
    /// `dns.tcp_max_connections`, read as each connection is accepted.
    pub tcp_max_connections: usize,
    /// `[policy]`: how answers are rewritten and `/pairs` sorted.
    pub policy: crate::config::Policy,
    /// `dns.serve_stale_s`; zero = off.
    pub serve_stale: Duration,
    /// `dns.failure_cache_s`; zero = off.
    pub failure_cache: Duration,
    /// `dns64.synthesize`: when AAAA and PTR answers are synthesized
    /// ([`crate::dns::dns64`]).
    pub dns64: crate::config::Synthesize,
}

/// State shared by every listener of the daemon.
#[derive(Debug)]
pub struct Shared {
    pub settings: ArcSwap<Settings>,
    pub cache: Mutex<Cache<Cached>>,
    /// Names whose resolution failed lately.
    failures: Mutex<Failures>,
    /// Lookups in flight, with the clients waiting on each.
    flights: Mutex<Flights>,
    /// What the probe engine knows, read without locks.
    pub verdicts: Arc<ArcSwap<Verdicts>>,
    /// Where answers' addresses go to be probed, while probing runs.
    pub probe_inputs: ArcSwapOption<mpsc::Sender<Input>>,
    /// Every task that owes a client an answer, so shutdown can drain them.
    pub tracker: TaskTracker,
    /// Counters of `/metrics`.
    pub metrics: Metrics,
    /// The TCP connections' slots, kept across reloads (the cap is in the
    /// settings).
    pub(crate) tcp_slots: Arc<Slots>,
}

impl Shared {
    pub fn new(settings: Settings, cache_size: usize) -> Shared {
        let verdicts = Arc::new(ArcSwap::from_pointee(Verdicts::default()));
        Shared {
            settings: ArcSwap::from_pointee(settings),
            cache: Mutex::new(Cache::new(cache_size)),
            failures: Mutex::new(Failures::default()),
            flights: Mutex::new(Flights::default()),
            // The verdict gauges read the snapshot at scrape time.
            metrics: Metrics::new(Arc::clone(&verdicts)),
            verdicts,
            probe_inputs: ArcSwapOption::empty(),
            tracker: TaskTracker::new(),
            tcp_slots: Slots::new(),
        }
    }
}
