//! What the engine is told to do: intervals, targets, STUN servers and the
//! learned-destination budget.

use std::net::SocketAddr;
use std::time::Duration;

/// What the engine is told to do. Built from `config::Probe` by [`EngineConfig::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    pub interval: Duration,
    /// Per probe; the probe's deadline is `now + timeout`.
    pub timeout: Duration,
    /// TCP targets; a RST counts as reachable.
    pub targets: Vec<SocketAddr>,
    /// STUN servers, resolved by the driver.
    pub stun: Vec<SocketAddr>,
    /// Probe addresses seen in answers.
    pub destinations: bool,
    /// Learned-destination probes per second (token bucket refill); 0 = none.
    pub rate: u32,
    /// Token bucket depth.
    pub burst: u32,
    /// Learned destinations kept (LRU).
    pub max_destinations: usize,
    /// Seeds the jitter; pass a random one in the daemon, a fixed one in tests.
    pub seed: u64,
}

impl EngineConfig {
    /// The engine's view of `[probe]`, with the STUN names already resolved
    /// and the defaults for what the file does not set: 20 probes/s, burst
    /// 20, 256 destinations.
    pub fn new(probe: &crate::config::Probe, stun: Vec<SocketAddr>, seed: u64) -> EngineConfig {
        EngineConfig {
            interval: probe.interval,
            timeout: probe.timeout,
            targets: probe.targets.clone(),
            stun,
            destinations: probe.destinations,
            seed,
            ..EngineConfig::default()
        }
    }

    /// docs/interface.md: no targets, no STUN servers and destinations off
    /// means no probe traffic at all (benchmarks and tests rely on it).
    pub(super) fn silent(&self) -> bool {
        self.targets.is_empty() && self.stun.is_empty() && !self.destinations
    }
}

/// The docs/interface.md defaults, except that nothing is probed.
impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(1),
            targets: Vec::new(),
            stun: Vec::new(),
            destinations: false,
            rate: 20,
            burst: 20,
            max_destinations: 256,
            seed: 0,
        }
    }
}
