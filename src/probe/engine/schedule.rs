//! When probes go out: rounds per source with jitter, learned-destination
//! tries under the token bucket, and the wakeup the driver sleeps until.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

use super::addresses::{forbidden, routable};
use super::state::{InFlight, Role, Round, Source, SourceKey};
use super::{EarlyRound, Engine, Kind, ProbeRequest};

/// The port probed on a gateway: most home routers run their DNS forwarder
/// on it, and any other router answers a closed port with a RST, which
/// proves the link as well.
pub(super) const GATEWAY_PORT: u16 = 53;

impl Engine {
    /// Expires probes past their deadline, then returns the probes due now:
    /// rounds of the sources whose time has come, and learned-destination
    /// tries as far as the token bucket allows.
    pub fn poll(&mut self, now: Instant) -> Vec<ProbeRequest> {
        let mut expired: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        expired.sort_unstable();
        for id in expired {
            if let Some(f) = self.in_flight.remove(&id) {
                self.resolve(f, None);
            }
        }
        self.expire_flights(now);
        self.expire_nat64(now);
        let mut out = Vec::new();
        if self.config.silent() {
            return out;
        }
        let due: Vec<SourceKey> = (self.sources.iter())
            .filter(|(_, s)| s.round.is_none() && s.next_round <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            self.start_round(now, key, &mut out);
        }
        self.start_tries(now, &mut out);
        out
    }

    /// When `poll` has something to do next: a deadline, a round, or enough
    /// tokens for the next queued try.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let deadlines = self.in_flight.values().map(|f| f.deadline);
        let rounds = (self.sources.values())
            .filter(|s| s.round.is_none() && !self.config.silent())
            .map(|s| s.next_round);
        let tries = self
            .learned
            .wakeup(|ip| try_sources(&self.sources, ip).len());
        let nat64 = self.nat64_expiry();
        deadlines.chain(rounds).chain(tries).chain(nat64).min()
    }

    fn start_round(&mut self, now: Instant, key: SourceKey, out: &mut Vec<ProbeRequest>) {
        let Some(src) = self.sources.get(&key) else {
            return;
        };
        let a = &src.address;
        let a_class = a.class;
        let v4 = a.addr.is_ipv4();
        let same_family = |t: &&SocketAddr| t.is_ipv4() == v4 && !forbidden(t.ip());
        let gateways = if v4 { &self.gateways4 } else { &self.gateways6 };
        let mut todo: Vec<(SocketAddr, Role)> = Vec::new();
        if routable(a.class) {
            todo.extend(
                self.config
                    .targets
                    .iter()
                    .filter(same_family)
                    .map(|&t| (t, Role::Target)),
            );
            todo.extend(
                self.config
                    .stun
                    .iter()
                    .filter(same_family)
                    .map(|&t| (t, Role::Stun)),
            );
        }
        for g in gateways
            .iter()
            .filter(|g| g.ifindex == a.ifindex && !forbidden(g.addr))
        {
            let dest = match g.addr {
                IpAddr::V6(ip) => {
                    SocketAddr::V6(SocketAddrV6::new(ip, GATEWAY_PORT, 0, g.scope_id))
                }
                ip => SocketAddr::new(ip, GATEWAY_PORT),
            };
            todo.push((dest, Role::Gateway));
        }
        let n = src.rounds_started;
        let next = now + self.jittered(key, n);
        let Some(src) = self.sources.get_mut(&key) else {
            return;
        };
        src.next_round = next;
        src.rounds_started += 1;
        let early = src.early.take();
        if todo.is_empty() {
            return;
        }
        // The driver takes them after every poll; the cap only bounds an
        // engine whose owner never does.
        if let Some(trigger) = early.filter(|_| self.early_rounds.len() < 1024) {
            self.early_rounds.push(EarlyRound {
                source: key.addr,
                trigger,
            });
        }
        let Some(src) = self.sources.get_mut(&key) else {
            return;
        };
        src.round = Some(Round {
            started: Some(now),
            pending: todo.len(),
            ..Round::default()
        });
        // One target connect of the round carries the path-MTU probe.
        let large = if routable(a_class) {
            self.large_target(key, n)
        } else {
            None
        };
        for (dest, role) in todo {
            let carries = role == Role::Target && Some(dest) == large;
            out.push(self.send(now, key, dest, role, carries));
        }
    }

    /// Learned-destination tries, as far as the token bucket allows.
    fn start_tries(&mut self, now: Instant, out: &mut Vec<ProbeRequest>) {
        while let Some(dest) = self
            .learned
            .next_try(now, |ip| try_sources(&self.sources, ip).len())
        {
            for key in try_sources(&self.sources, dest.ip()) {
                out.push(self.send(now, key, dest, Role::Learned, false));
            }
        }
    }

    fn send(
        &mut self,
        now: Instant,
        source: SourceKey,
        dest: SocketAddr,
        role: Role,
        large: bool,
    ) -> ProbeRequest {
        let id = self.next_id;
        self.next_id += 1;
        let deadline = now + self.config.timeout;
        let kind = match role {
            _ if large => self.large_kind(source, dest),
            Role::Stun => Kind::Stun(dest),
            _ => Kind::Tcp(dest),
        };
        self.in_flight.insert(
            id,
            InFlight {
                source,
                dest,
                role,
                deadline,
                large,
            },
        );
        ProbeRequest {
            id,
            source: source.addr,
            scope_id: source.scope_id,
            kind,
            deadline,
        }
    }

    /// `interval` ± 10 %, from a hash of the seed, the source and the round.
    fn jittered(&self, key: SourceKey, round: u64) -> Duration {
        let bits = match key.addr {
            IpAddr::V4(a) => u128::from(a.to_bits()),
            IpAddr::V6(a) => a.to_bits(),
        };
        let h = [
            (bits >> 64) as u64,
            bits as u64,
            u64::from(key.scope_id),
            round,
        ]
        .into_iter()
        .fold(self.config.seed, |h, x| splitmix64(h ^ x));
        // 53 random bits → [0, 1).
        let unit = (h >> 11) as f64 / (1u64 << 53) as f64;
        self.config.interval.mul_f64(0.9 + 0.2 * unit)
    }
}

/// The routable sources of `ip`'s family: the ones a learned destination
/// is tried from.
fn try_sources(sources: &BTreeMap<SourceKey, Source>, ip: IpAddr) -> Vec<SourceKey> {
    (sources.iter())
        .filter(|(k, s)| k.addr.is_ipv4() == ip.is_ipv4() && routable(s.address.class))
        .map(|(k, _)| *k)
        .collect()
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, well-mixed hash step.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
