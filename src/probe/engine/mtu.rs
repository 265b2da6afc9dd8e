//! Path-MTU blackholes: a large probe per routable source and round, and
//! the rule that turns its results into a family's [`Mtu`].
//!
//! # Probe
//!
//! In each round of a routable source, the connect to one configured target
//! of its family on port 443 (an ordinary TLS server) carries the probe,
//! so path-MTU detection adds no connection. The driver reports it twice:
//! the connect, as any target probe (it counts for the round, which does
//! not wait for more), then, having sent a ClientHello padded to
//! [`LARGE_HELLO`] bytes (so its first segment is full-size), what came
//! back within `timeout` of the hello ([`ProbeResult::Flight`]).
//!
//! # Rule
//!
//! - A target *answers large* once a probe got [`FLIGHT_BYTES`] back from
//!   it; the engine remembers that for the rest of its life. Full-size
//!   segments then reached it and came back from it: it speaks TLS and the
//!   path carried them.
//! - A source's `mtu` verdict is ok at a full flight, and misses when a
//!   probe *stalled*: it connected (small packets pass, on that very path),
//!   sent its hello, and at the deadline the connection was open with fewer
//!   than [`FLIGHT_BYTES`] read. A stall counts only towards a target that
//!   answered large before. Two misses in a row make it failed; the first
//!   starts the next round at once (`Trigger::PathMtu`), as a missed round
//!   does.
//! - Anything else is no evidence: a connect that fails (the small probes
//!   judge that), a server that closes or resets after a short reply (it
//!   does not speak TLS, or refused us), a stall towards a target never
//!   seen answering large.
//! - A family's [`Mtu`], from its routable sources that are ok: `Ok` if
//!   one of them is ok, else `Blackhole` if one failed, else `Unknown`.
//!
//! So a target that does not speak TLS can never make a blackhole: its
//! silence counts only after it once sent a full flight, which it never
//! does. The price: a blackhole already there when getapr starts, before
//! any target answered large, stays `unknown`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Engine;
use super::addresses::{forbidden, routable};
use super::confirm::Trigger;
use super::state::InFlight;
use super::{Kind, ProbeResult};
use crate::probe::verdicts::{Mtu, PathMtu, SourceVerdict, State};

/// The size of the ClientHello record: above the MSS of a 1,500-byte
/// Ethernet MTU (1,460 for IPv4, 1,440 for IPv6), so that the first
/// segment is full-size whatever the path's MSS is.
pub const LARGE_HELLO: usize = 1_600;

/// Bytes of the first flight that prove large segments came back: more
/// than one full-size segment of any common MTU. A TLS server's first
/// flight (hello, certificate chain) is 2.5 to 6 KB.
pub const FLIGHT_BYTES: usize = 2_000;

/// Added to a large probe's deadline over its connect and flight budgets,
/// so that the driver always reports before the engine expires it.
pub(super) const LARGE_GRACE: Duration = Duration::from_millis(500);

/// The port a large probe goes to: TLS.
const TLS_PORT: u16 = 443;

impl Engine {
    /// The target a large probe from `key` goes to in its round number
    /// `round`: one of its family on port 443, taken in turn among those
    /// that answered large before, else among all of them.
    pub(super) fn large_target(
        &self,
        key: super::state::SourceKey,
        round: u64,
    ) -> Option<SocketAddr> {
        let v4 = key.addr.is_ipv4();
        let all: Vec<SocketAddr> = (self.config.targets.iter())
            .filter(|t| t.is_ipv4() == v4 && t.port() == TLS_PORT && !forbidden(t.ip()))
            .copied()
            .collect();
        let proven: Vec<SocketAddr> = (all.iter())
            .filter(|t| self.answers_large.contains(&t.ip()))
            .copied()
            .collect();
        let pick = if proven.is_empty() { all } else { proven };
        let n = u64::try_from(pick.len()).ok().filter(|n| *n > 0)?;
        let i = usize::try_from(round % n).ok()?;
        pick.get(i).copied()
    }

    /// The probe kind of a large probe to `dest`.
    pub(super) fn large_kind(&self, dest: SocketAddr) -> Kind {
        let t = self.config.timeout;
        Kind::Large {
            target: dest,
            connect: t,
            flight: t,
        }
    }

    /// A large probe connected at `now`: its flight is awaited until the
    /// flight budget (and a grace) is over.
    pub(super) fn await_flight(&mut self, now: Instant, id: u64, f: &InFlight) {
        let until = now + self.config.timeout + LARGE_GRACE;
        // The driver reports each flight once; the cap only bounds an
        // engine whose driver never does.
        if self.flights.len() < 1024 {
            self.flights.insert(id, (f.source, f.dest, until));
        }
    }

    /// The second report of a large probe: what its flight says of the
    /// path MTU. Unknown ids (no connect, or expired) are ignored.
    pub(super) fn resolve_flight(&mut self, now: Instant, id: u64, outcome: ProbeResult) {
        let Some((source, dest, until)) = self.flights.remove(&id) else {
            return;
        };
        let ProbeResult::Flight { bytes, stalled, .. } = outcome else {
            return;
        };
        if now > until {
            return;
        }
        let proven = self.answers_large.contains(&dest.ip());
        let Some(src) = self.sources.get_mut(&source) else {
            return;
        };
        if !routable(src.address.class) {
            return;
        }
        if bytes >= FLIGHT_BYTES {
            src.mtu.success();
            self.answers_large.insert(dest.ip());
        } else if stalled && proven {
            src.mtu.miss();
            if src.mtu.state != State::Failed {
                self.start_early(now, source, Trigger::PathMtu);
            }
        } else {
            return;
        }
        self.dirty = true;
    }

    /// Forgets flights no longer awaited.
    pub(super) fn expire_flights(&mut self, now: Instant) {
        self.flights.retain(|_, (_, _, until)| *until > now);
    }

    /// The [`Mtu`] of each family from its ok routable sources.
    pub(super) fn path_mtu(&self, sources: &[SourceVerdict]) -> PathMtu {
        let family = |v4: bool| {
            let states: Vec<State> = (self.sources.iter())
                .filter(|(k, s)| {
                    k.addr.is_ipv4() == v4
                        && routable(s.address.class)
                        && sources
                            .iter()
                            .any(|v| v.address == k.addr && v.state == State::Ok)
                })
                .map(|(_, s)| s.mtu.state)
                .collect();
            if states.contains(&State::Ok) {
                Mtu::Ok
            } else if states.contains(&State::Failed) {
                Mtu::Blackhole
            } else {
                Mtu::Unknown
            }
        };
        PathMtu {
            ipv4: family(true),
            ipv6: family(false),
        }
    }
}
