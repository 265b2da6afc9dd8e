//! The engine's bookkeeping per source, per round, per probe in flight and
//! per path, with the hysteresis rule and RTT smoothing they share.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::confirm::Trigger;
use crate::inventory::Address;
use crate::probe::verdicts::State;

/// Consecutive misses that make a verdict `Failed`.
pub(super) const FAIL_AFTER: u8 = 2;

/// ok at the first success, failed after [`FAIL_AFTER`] misses in a row.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Hysteresis {
    pub(super) state: State,
    pub(super) misses: u8,
}

impl Hysteresis {
    pub(super) fn success(&mut self) {
        *self = Hysteresis {
            state: State::Ok,
            misses: 0,
        };
    }

    pub(super) fn miss(&mut self) {
        self.misses = self.misses.saturating_add(1);
        if self.misses >= FAIL_AFTER {
            self.state = State::Failed;
        }
    }
}

/// RFC 6298 §2.3: SRTT ← 7/8 SRTT + 1/8 R; the first sample is taken as is.
pub(super) fn smooth(srtt: Option<Duration>, r: Duration) -> Duration {
    srtt.map_or(r, |s| s.saturating_mul(7).saturating_add(r) / 8)
}

/// A source as the kernel tells sources apart: link-local addresses repeat
/// across interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct SourceKey {
    pub(super) addr: IpAddr,
    pub(super) scope_id: u32,
}

/// A source address and what the engine knows of it.
#[derive(Debug)]
pub(super) struct Source {
    pub(super) address: Address,
    pub(super) health: Hysteresis,
    pub(super) link: Hysteresis,
    pub(super) rtt: Option<Duration>,
    pub(super) next_round: Instant,
    pub(super) rounds_started: u64,
    pub(super) rounds_done: u64,
    pub(super) round: Option<Round>,
    pub(super) mapped: Option<SocketAddr>,
    pub(super) stun_answered: bool,
    /// Why `next_round` was brought forward, until that round starts.
    pub(super) early: Option<Trigger>,
    /// Large probes: ok at a full flight, failed (a blackhole) after two
    /// stalls in a row towards targets known to answer them.
    pub(super) mtu: Hysteresis,
}

impl Source {
    pub(super) fn new(address: Address, now: Instant) -> Source {
        Source {
            address,
            health: Hysteresis::default(),
            link: Hysteresis::default(),
            rtt: None,
            next_round: now,
            rounds_started: 0,
            rounds_done: 0,
            round: None,
            mapped: None,
            stun_answered: false,
            early: None,
            mtu: Hysteresis::default(),
        }
    }
}

/// Evidence from the probes of the round in progress: per kind, `None`
/// until one ends, then whether any got through.
#[derive(Debug, Default)]
pub(super) struct Round {
    pub(super) started: Option<Instant>,
    pub(super) pending: usize,
    pub(super) verdict: Option<bool>,
    pub(super) link: Option<bool>,
    pub(super) stun: Option<bool>,
    pub(super) mapped: Option<SocketAddr>,
}

/// Adds one probe's end to a round's evidence: any success makes it a success.
pub(super) fn tally(t: &mut Option<bool>, ok: bool) {
    *t = Some(t.unwrap_or(false) || ok);
}

/// Why a probe was sent, which decides what its result speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Target,
    Stun,
    Gateway,
    Learned,
}

/// A probe sent and not yet answered or expired.
#[derive(Debug)]
pub(super) struct InFlight {
    pub(super) source: SourceKey,
    pub(super) dest: SocketAddr,
    pub(super) role: Role,
    pub(super) deadline: Instant,
    /// A target connect that carries the path-MTU probe (`Kind::Large`).
    pub(super) large: bool,
}

/// One (source, destination) path; `gateway` marks the link probes, which
/// are kept out of the destination verdicts.
#[derive(Debug, Default)]
pub(super) struct Path {
    pub(super) health: Hysteresis,
    pub(super) rtt: Option<Duration>,
    pub(super) gateway: bool,
}
