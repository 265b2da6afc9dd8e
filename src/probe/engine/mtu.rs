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
//! - A stall towards a target never seen answering large makes the pair
//!   a *suspect*: the next large probe from that source to that target is
//!   a *proof*, sent with segments of at most [`PROOF_MSS`] bytes each way
//!   (TCP_MAXSEG before the SYN: the server's segments are cut to it too),
//!   which pass any blackhole of a path IPv6 allows (1,280 bytes). A full
//!   flight to the proof shows the target speaks TLS (it answers large
//!   from then on) and that the stall before was the path's: a miss. A
//!   proof that stalls too is no evidence (the target does not speak TLS,
//!   or the path drops even small segments: the small probes judge that).
//! - Anything else is no evidence: a connect that fails (the small probes
//!   judge that), a server that closes or resets after a short reply (it
//!   does not speak TLS, or refused us).
//! - A family's [`Mtu`], from its routable sources that are ok: `Ok` if
//!   one of them is ok, else `Blackhole` if one failed, else `Unknown`.
//!
//! So a target that does not speak TLS can never make a blackhole: its
//! silence counts only after it once sent a full flight, which it never
//! does. A blackhole already there when getapr starts is found all the
//! same: the first stall makes a suspect, its proof (one round later) a
//! miss, and the early round it starts the second miss.

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

/// The segment size of a proof probe, both ways: a 1,280-byte IPv6
/// packet (the smallest MTU IPv6 allows) holds 1,220 bytes of TCP payload
/// without options; 1,200 leaves room for the timestamp option.
pub const PROOF_MSS: u32 = 1_200;

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

    /// The probe kind of a large probe from `source` to `dest`: a proof
    /// (small segments) when the pair is a suspect.
    pub(super) fn large_kind(&self, source: super::state::SourceKey, dest: SocketAddr) -> Kind {
        let t = self.config.timeout;
        let proof = self.suspects.contains(&(source, dest));
        Kind::Large {
            target: dest,
            connect: t,
            flight: t,
            mss: proof.then_some(PROOF_MSS),
        }
    }

    /// A large probe connected at `now`: its flight is awaited until the
    /// flight budget (and a grace) is over.
    pub(super) fn await_flight(&mut self, now: Instant, id: u64, f: &InFlight) {
        let until = now + self.config.timeout + LARGE_GRACE;
        let proof = self.suspects.contains(&(f.source, f.dest));
        // The driver reports each flight once; the cap only bounds an
        // engine whose driver never does.
        if self.flights.len() < 1024 {
            self.flights.insert(id, (f.source, f.dest, until, proof));
        }
    }

    /// The second report of a large probe: what its flight says of the
    /// path MTU. Unknown ids (no connect, or expired) are ignored.
    pub(super) fn resolve_flight(&mut self, now: Instant, id: u64, outcome: ProbeResult) {
        let Some((source, dest, until, proof)) = self.flights.remove(&id) else {
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
        if proof {
            self.suspects.remove(&(source, dest));
            if bytes < FLIGHT_BYTES {
                return;
            }
            // Small segments came back where large ones stalled: the
            // target speaks TLS, and the stall was the path's.
            self.answers_large.insert(dest.ip());
            src.mtu.miss();
            if src.mtu.state != State::Failed {
                self.start_early(now, source, Trigger::PathMtu);
            }
        } else if bytes >= FLIGHT_BYTES {
            src.mtu.success();
            self.answers_large.insert(dest.ip());
        } else if stalled && !proven {
            // Bounded like the flights: sources times targets in practice.
            if self.suspects.len() < 1024 {
                self.suspects.insert((source, dest));
            }
            return;
        } else if stalled {
            src.mtu.miss();
            if src.mtu.state != State::Failed {
                self.start_early(now, source, Trigger::PathMtu);
            }
        } else {
            return;
        }
        self.dirty = true;
    }

    /// Forgets flights no longer awaited, and suspects whose source is gone.
    pub(super) fn expire_flights(&mut self, now: Instant) {
        self.flights.retain(|_, (_, _, until, _)| *until > now);
        let sources = &self.sources;
        self.suspects.retain(|(s, _)| sources.contains_key(s));
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
