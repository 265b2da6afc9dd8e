//! The DNS server: the UDP and TCP listeners, and the path a query takes
//! from its bytes to the answer a client gets.
//!
//! - `listen`: sockets and framing: the UDP loop, TCP accept behind the ACL
//!   and the connection slots, RFC 7766 connections and their framing. It
//!   hands each message to the pipeline and sends or frames what comes back.
//! - `pipeline`: a query's path, top to bottom: triage (ACL, error
//!   answers, cache hits), the flight a miss joins or leads, the upstreams,
//!   the answer rewritten under the verdicts and rendered for each client,
//!   serve-stale on failure.
//! - `view`: what the verdicts make of an upstream reply (the rewrite),
//!   cached beside it, and the other family's answer the rewrite may need.
//! - `waiters`: who waits on a flight and where each answer goes.
//! - `failures`: the failure cache (RFC 9520).
//! - `lookup`: the daemon's own lookups through the same cache and flights.
//! - `learn`: the addresses of answers handed to the probe engine.

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
