//! Rounds that start before their time: a quick confirmation after a bad
//! round, a round at once when an application's connect is stuck in
//! SYN-SENT towards the Internet, and one when a family's default gateways
//! change. The verdict rule does not change (two bad rounds in a row fail a
//! source); only the wait for the second round does.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::Engine;
use super::addresses::{forbidden, routable};
use super::state::SourceKey;
use crate::inventory::class::is_global;
use crate::probe::verdicts::State;

/// How long after the start of a bad round its confirmation starts. A
/// failed round usually ends at its timeout, so the confirmation follows at
/// once; an ICMP error ends it early, and the gap keeps a blip of a few
/// milliseconds from being seen twice.
pub(super) const CONFIRM_GAP: Duration = Duration::from_secs(1);

/// Stuck connects start at most this many rounds per family in a row
/// (the bucket's depth), and one more per `interval`: an application that
/// keeps trying a dead server costs at most one extra round per interval.
const STUCK_BURST: f64 = 3.0;

/// Why a round started before its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// The source's last round was a miss: the second round that decides
    /// whether it failed follows at once instead of an interval later.
    Miss,
    /// A connect of its family stuck in SYN-SENT towards a global address.
    SynSent,
    /// The default gateways of its family changed.
    Gateway,
    /// A large probe stalled: the second one that decides whether the
    /// family has a path-MTU blackhole follows at once.
    PathMtu,
}

impl Trigger {
    /// The metric label and log word.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Miss => "miss",
            Trigger::SynSent => "syn_sent",
            Trigger::Gateway => "gateway",
            Trigger::PathMtu => "path_mtu",
        }
    }
}

/// A round started early, for the driver's log line and metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarlyRound {
    pub source: IpAddr,
    pub trigger: Trigger,
}

/// A token bucket of rounds per family, refilled one per `interval`.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct StuckBudget {
    tokens: f64,
    refilled: Option<Instant>,
}

impl StuckBudget {
    fn take(&mut self, now: Instant, interval: Duration) -> bool {
        let per_sec = 1.0 / interval.as_secs_f64().max(1e-3);
        self.tokens = match self.refilled {
            None => STUCK_BURST,
            Some(t) => (self.tokens + now.saturating_duration_since(t).as_secs_f64() * per_sec)
                .min(STUCK_BURST),
        };
        self.refilled = Some(now);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

impl Engine {
    /// Whether the driver should watch for stuck connects at all: not
    /// when the engine sends nothing.
    pub fn wants_stuck_connects(&self) -> bool {
        !self.config.silent()
    }

    /// A connect from this host to `dest` has been in SYN-SENT for a while
    /// (the driver reads the kernel's socket table). When `dest` is a
    /// global address that is not one of the engine's own probe
    /// destinations, it is a signal (`Some`): every routable source of its
    /// family that is not already failed and not in a round starts one now,
    /// as far as the family's budget allows, and those sources are
    /// returned; and when `dest` is a learned destination not yet found
    /// dead, it is tried again at once (under the learned-destination rate
    /// limit), since its own verdict would keep it in answers. `None`: no
    /// signal (a local or own destination, or a silent engine).
    pub fn syn_stuck(&mut self, now: Instant, dest: SocketAddr) -> Option<Vec<IpAddr>> {
        let ip = dest.ip();
        let own = (self.config.targets.iter())
            .chain(&self.config.stun)
            .any(|t| t.ip() == ip)
            || self
                .gateways4
                .iter()
                .chain(&self.gateways6)
                .any(|g| g.addr == ip);
        if self.config.silent() || forbidden(ip) || !is_global(ip) || own {
            return None;
        }
        // A learned destination that still counts as reachable is tried
        // again now: its own verdict may keep it in answers otherwise.
        let paths: Vec<State> = (self.paths.iter())
            .filter(|((_, d), p)| *d == ip && !p.gateway)
            .map(|(_, p)| p.health.state)
            .collect();
        let dead = !paths.is_empty() && paths.iter().all(|s| *s == State::Failed);
        if !dead {
            self.learned.hurry(ip);
        }
        let keys: Vec<SourceKey> = (self.sources.iter())
            .filter(|(k, s)| {
                k.addr.is_ipv4() == ip.is_ipv4()
                    && routable(s.address.class)
                    && s.health.state != State::Failed
                    && s.round.is_none()
            })
            .map(|(k, _)| *k)
            .collect();
        let family = usize::from(ip.is_ipv6());
        if keys.is_empty() || !self.stuck_budget[family].take(now, self.config.interval) {
            return Some(Vec::new());
        }
        for key in &keys {
            self.start_early(now, *key, Trigger::SynSent);
        }
        Some(keys.into_iter().map(|k| k.addr).collect())
    }

    /// `source` works again after it had failed: the learned destinations
    /// it found dead are tried again now. They died with it, most likely,
    /// and a destination is otherwise tried again only when an answer is
    /// learned anew, which a cached answer is not.
    pub(super) fn revive_learned(&mut self, source: SourceKey) {
        let dead: Vec<IpAddr> = (self.paths.iter())
            .filter(|((s, d), p)| {
                *s == source
                    && !p.gateway
                    && p.health.state == State::Failed
                    && self.learned.contains(*d)
            })
            .map(|((_, d), _)| *d)
            .collect();
        for ip in dead {
            self.learned.hurry(ip);
        }
    }

    /// The rounds started early since the last call.
    pub fn take_early_rounds(&mut self) -> Vec<EarlyRound> {
        std::mem::take(&mut self.early_rounds)
    }

    /// Makes `key`'s next round due at `at` (if that is sooner than planned)
    /// and remembers why, for [`Engine::take_early_rounds`].
    pub(super) fn start_early(&mut self, at: Instant, key: SourceKey, trigger: Trigger) {
        if let Some(src) = self.sources.get_mut(&key)
            && at < src.next_round
        {
            src.next_round = at;
            src.early = Some(trigger);
        }
    }
}
