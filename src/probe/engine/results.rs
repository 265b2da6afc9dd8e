//! What a probe's result does to the verdicts: the path, the source and the
//! round it belongs to.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::addresses::routable;
use super::confirm::{CONFIRM_GAP, Trigger};
use super::state::{InFlight, Role, smooth, tally};
use super::{Engine, ProbeResult};
use crate::inventory::class::is_global;
use crate::probe::verdicts::State;

impl Engine {
    /// Takes the outcome of probe `id`. Unknown ids (expired, or their
    /// source is gone) are ignored; an answer after the deadline counts as
    /// `Unreachable`, as if `poll` had expired it first.
    pub fn handle(&mut self, now: Instant, id: u64, outcome: ProbeResult) {
        if matches!(outcome, ProbeResult::Flight { .. }) {
            self.resolve_flight(now, id, outcome);
            return;
        }
        let Some(f) = self.in_flight.remove(&id) else {
            return;
        };
        if f.large && now <= f.deadline && matches!(outcome, ProbeResult::Reachable { .. }) {
            self.await_flight(now, id, &f);
        }
        let answer = match outcome {
            _ if now > f.deadline => None,
            ProbeResult::Reachable { rtt } => Some((rtt, None)),
            ProbeResult::StunMapped { rtt, mapped } => Some((rtt, Some(mapped))),
            ProbeResult::Unreachable | ProbeResult::Flight { .. } => None,
        };
        self.resolve(f, answer);
    }

    /// Applies one probe's outcome; `answer` is `None` for a failure.
    pub(super) fn resolve(&mut self, f: InFlight, answer: Option<(Duration, Option<SocketAddr>)>) {
        self.dirty = true;
        let ok = answer.is_some();
        let dest = f.dest.ip();
        let revives = ok
            && self.sources.get(&f.source).is_some_and(|s| {
                let link_scoped = !routable(s.address.class);
                s.health.state == State::Failed
                    && !link_scoped
                    && (matches!(f.role, Role::Target | Role::Stun)
                        || (f.role == Role::Learned && is_global(dest)))
            });
        if revives {
            self.revive_learned(f.source);
        }
        let path = self.paths.entry((f.source, dest)).or_default();
        path.gateway = f.role == Role::Gateway;
        match answer {
            Some((rtt, _)) => {
                path.health.success();
                path.rtt = Some(smooth(path.rtt, rtt));
            }
            None => path.health.miss(),
        }
        if f.role == Role::Learned {
            self.learned.result(dest, ok);
        }
        let Some(src) = self.sources.get_mut(&f.source) else {
            return;
        };
        let link_scoped = !routable(src.address.class);
        // Does this probe speak for the source's verdict?
        let verdict = match f.role {
            Role::Target | Role::Stun => !link_scoped,
            Role::Gateway => link_scoped,
            Role::Learned => false,
        };
        if let Some((rtt, mapped)) = answer {
            if verdict {
                src.health.success();
                src.rtt = Some(smooth(src.rtt, rtt));
            } else if f.role == Role::Gateway {
                src.link.success();
            } else if f.role == Role::Learned && !link_scoped && is_global(dest) {
                src.health.success();
            }
            if let (Role::Stun, Some(m)) = (f.role, mapped) {
                src.mapped = Some(m);
            }
        }
        if f.role == Role::Stun {
            src.stun_answered |= ok;
        }
        let Some(round) = src.round.as_mut().filter(|_| f.role != Role::Learned) else {
            return;
        };
        match f.role {
            _ if verdict => tally(&mut round.verdict, ok),
            Role::Gateway => tally(&mut round.link, ok),
            _ => {}
        }
        if f.role == Role::Stun {
            tally(&mut round.stun, ok);
            round.mapped = answer.and_then(|(_, m)| m).or(round.mapped);
        }
        round.pending = round.pending.saturating_sub(1);
        if round.pending > 0 {
            return;
        }
        let round = std::mem::take(round);
        src.round = None;
        src.rounds_done += 1;
        let mut confirm = None;
        if round.verdict == Some(false) {
            src.health.miss();
            if src.health.state != State::Failed {
                confirm = round.started.map(|t| t + CONFIRM_GAP);
            }
        }
        if round.link == Some(false) && !link_scoped {
            src.link.miss();
        }
        if round.stun.is_some() {
            // The mapping is what this round's STUN answers said, or
            // nothing if none answered: present, not latched.
            src.mapped = round.mapped;
        }
        if let Some(at) = confirm {
            self.start_early(at, f.source, Trigger::Miss);
        }
    }
}
