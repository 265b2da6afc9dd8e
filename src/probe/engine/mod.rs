//! The probe engine: which sources, families, prefixes and destinations work.
//!
//! Pure, in the quinn-proto style: no sockets and no clock. The driver feeds
//! it the inventory ([`Engine::set_inventory`]), addresses seen in answers
//! ([`Engine::learn`]) and probe outcomes ([`Engine::handle`]); it asks
//! [`Engine::poll`] for the probes due now, sleeps until
//! [`Engine::next_wakeup`], and after each step takes [`Engine::publish`]'s
//! new snapshot, if any, and stores it where readers load it without locks.
//!
//! # Schedule
//!
//! Every source runs a *round* every `interval` ± 10 % (the jitter is a hash
//! of the seed, the source and the round number, so runs are reproducible).
//! A new source runs its first round at once. A round of a routable source
//! (any class but `lla` and `linklocal4`) probes the configured targets and
//! the STUN servers of its family (its *Internet probes*) and the default
//! gateways of its family on its own interface (its *link probes*, kept
//! apart: they tell "the link works" from "the Internet works"). A
//! link-scoped source cannot leave its link, so its round probes only its
//! interface's gateways, and those decide its verdict. A probe not answered
//! by its deadline is `Unreachable`. With no targets, no STUN servers and
//! learned destinations off the engine sends nothing at all, gateways
//! included.
//!
//! Learned destinations are tried from every routable source of their
//! family, on port 443; a try that reaches nothing is followed at once by
//! one on port 80. They are retried only while they are being asked for:
//! [`Engine::learn`] queues a try when the last one is older than
//! `interval`. Tries share a token bucket (`rate` probes per second,
//! `burst` deep), and the table keeps the `max_destinations` most recently
//! learned addresses.
//!
//! # Verdict rule (hysteresis)
//!
//! Sources, links and (source, destination) paths all follow one rule
//! ([`State`]): **ok at the first success; failed after two consecutive
//! misses; unknown until one or the other.** For a source a miss is a
//! completed round in which every Internet probe failed (a round with none
//! is no evidence); a success is any Internet probe answered, or a learned
//! global destination reached. For a path a miss is one failed probe, so a
//! learned destination is dead (`Failed`) once two tries (443, then 80)
//! reached it from no source, and revives at the next success. One lost
//! round therefore never flips an ok source; a dead path shows within two
//! rounds plus the timeout, a repaired one at the first answer.
//!
//! # Generation rule
//!
//! [`Engine::publish`] returns a new snapshot, with `generation + 1`, only
//! when a reader would decide differently: any state, flag, source, gateway,
//! mapping, destination or NAT64 prefix changed, or an RTT appeared,
//! vanished or moved by more than 20 % from the value last published. RTT
//! wobble below that is not published at all.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv6Net};

use super::learned::Table;
use super::verdicts::{
    DestinationVerdict, Families, Flags, PathVerdict, PrefixVerdict, SourceVerdict, State,
    Verdicts, prefix_of,
};
use crate::inventory::{Address, Class, Gateway, Snapshot};

/// Consecutive misses that make a verdict `Failed`.
const FAIL_AFTER: u8 = 2;
/// The port probed on a gateway: most home routers run their DNS forwarder
/// on it, and any other router answers a closed port with a RST, which
/// proves the link as well.
const GATEWAY_PORT: u16 = 53;

/// What the engine is told to do. Built from `config::Probe` by [`Config::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
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

impl Config {
    /// The engine's view of `[probe]`, with the STUN names already resolved
    /// and the defaults for what the file does not set: 20 probes/s, burst
    /// 20, 256 destinations.
    pub fn new(probe: &crate::config::Probe, stun: Vec<SocketAddr>, seed: u64) -> Config {
        Config {
            interval: probe.interval,
            timeout: probe.timeout,
            targets: probe.targets.clone(),
            stun,
            destinations: probe.destinations,
            seed,
            ..Config::default()
        }
    }

    /// docs/interface.md: no targets, no STUN servers and destinations off
    /// means no probe traffic at all (benchmarks and tests rely on it).
    fn silent(&self) -> bool {
        self.targets.is_empty() && self.stun.is_empty() && !self.destinations
    }
}

/// The docs/interface.md defaults, except that nothing is probed.
impl Default for Config {
    fn default() -> Config {
        Config {
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

/// A probe the driver must send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Quote it in [`Engine::handle`].
    pub id: u64,
    /// Bind to this address (and scope id, non-zero only for link-local).
    pub source: IpAddr,
    pub scope_id: u32,
    pub kind: Kind,
    /// Not answered by then = `Unreachable`.
    pub deadline: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// TCP connect; a link-local destination carries its scope id.
    Tcp(SocketAddr),
    /// STUN Binding request over UDP (RFC 8489).
    Stun(SocketAddr),
}

/// How a probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Connected, or refused: a RST proves the path as well as a SYN-ACK.
    Reachable { rtt: Duration },
    /// Timeout, ICMP unreachable, no route.
    Unreachable,
    /// A STUN Binding success response and the address it saw us as.
    StunMapped { rtt: Duration, mapped: SocketAddr },
}

/// Never a probe destination or source: loopback, unspecified, multicast,
/// broadcast, 0.0.0.0/8 (RFC 6890) and IPv4-mapped IPv6.
fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            a.is_loopback() || a.is_multicast() || a.is_broadcast() || a.octets()[0] == 0
        }
        IpAddr::V6(a) => {
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || a.to_ipv4_mapped().is_some()
        }
    }
}

/// Private, shared or link scope: RFC 1918, 100.64/10 (RFC 6598),
/// 169.254/16 (RFC 3927), fc00::/7 (RFC 4193), fe80::/10 (RFC 4291).
/// Documentation prefixes count as global, as in the inventory.
fn local_scope(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let [a0, a1, ..] = a.octets();
            a.is_private() || a.is_link_local() || (a0 == 100 && a1 & 0xC0 == 64)
        }
        IpAddr::V6(a) => a.is_unique_local() || a.is_unicast_link_local(),
    }
}

fn global(ip: IpAddr) -> bool {
    !forbidden(ip) && !local_scope(ip)
}

/// Link-scoped sources cannot reach beyond their link.
fn routable(class: Class) -> bool {
    !matches!(class, Class::Lla | Class::LinkLocal4)
}

/// ok at the first success, failed after [`FAIL_AFTER`] misses in a row.
#[derive(Debug, Clone, Copy, Default)]
struct Hysteresis {
    state: State,
    misses: u8,
}

impl Hysteresis {
    fn success(&mut self) {
        *self = Hysteresis {
            state: State::Ok,
            misses: 0,
        };
    }

    fn miss(&mut self) {
        self.misses = self.misses.saturating_add(1);
        if self.misses >= FAIL_AFTER {
            self.state = State::Failed;
        }
    }
}

/// RFC 6298 §2.3: SRTT ← 7/8 SRTT + 1/8 R; the first sample is taken as is.
fn smooth(srtt: Option<Duration>, r: Duration) -> Duration {
    srtt.map_or(r, |s| s.saturating_mul(7).saturating_add(r) / 8)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SourceKey {
    addr: IpAddr,
    scope_id: u32,
}

#[derive(Debug)]
struct Source {
    address: Address,
    health: Hysteresis,
    link: Hysteresis,
    rtt: Option<Duration>,
    next_round: Instant,
    rounds_started: u64,
    rounds_done: u64,
    round: Option<Round>,
    mapped: Option<SocketAddr>,
    stun_answered: bool,
}

/// Evidence from the probes of the round in progress: per kind, `None`
/// until one ends, then whether any got through.
#[derive(Debug, Default)]
struct Round {
    pending: usize,
    verdict: Option<bool>,
    link: Option<bool>,
    stun: Option<bool>,
    mapped: Option<SocketAddr>,
}

fn tally(t: &mut Option<bool>, ok: bool) {
    *t = Some(t.unwrap_or(false) || ok);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Target,
    Stun,
    Gateway,
    Learned,
}

#[derive(Debug)]
struct InFlight {
    source: SourceKey,
    dest: SocketAddr,
    role: Role,
    deadline: Instant,
}

#[derive(Debug, Default)]
struct Path {
    health: Hysteresis,
    rtt: Option<Duration>,
    gateway: bool,
}

/// The engine. See the module doc for the rules.
#[derive(Debug, Default)]
pub struct Engine {
    config: Config,
    inventory_known: bool,
    sources: BTreeMap<SourceKey, Source>,
    gateways4: Vec<Gateway>,
    gateways6: Vec<Gateway>,
    host: Arc<Snapshot>,
    in_flight: HashMap<u64, InFlight>,
    next_id: u64,
    paths: HashMap<(SourceKey, IpAddr), Path>,
    learned: Table,
    nat64: Vec<Ipv6Net>,
    published: Arc<Verdicts>,
    dirty: bool,
}

impl Engine {
    /// A fresh engine: no sources until [`Engine::set_inventory`]; its
    /// snapshot (generation 0) says unknown everywhere and no flag set.
    pub fn new(config: Config) -> Engine {
        let c = &config;
        let learned = Table::new(c.rate, c.burst, c.max_destinations, c.interval);
        Engine {
            config,
            learned,
            ..Engine::default()
        }
    }

    /// Takes a new inventory. Vanished sources are dropped with their
    /// probes and paths; new ones start unknown and are probed at the next
    /// `poll`, without waiting for an interval.
    pub fn set_inventory(&mut self, now: Instant, snapshot: &Snapshot) {
        self.inventory_known = true;
        self.host = Arc::new(snapshot.clone());
        self.gateways4 = snapshot.gateways4.clone();
        self.gateways6 = snapshot.gateways6.clone();
        let mut keep = BTreeMap::new();
        for a in snapshot.addresses.iter().filter(|a| !forbidden(a.addr)) {
            let key = SourceKey {
                addr: a.addr,
                scope_id: a.scope_id,
            };
            let mut s = self
                .sources
                .remove(&key)
                .unwrap_or_else(|| Source::new(a.clone(), now));
            s.address = a.clone();
            keep.insert(key, s);
        }
        let gone: Vec<SourceKey> = std::mem::replace(&mut self.sources, keep)
            .into_keys()
            .collect();
        for key in gone {
            let dropped: Vec<InFlight> = self
                .in_flight
                .extract_if(|_, f| f.source == key)
                .map(|(_, f)| f)
                .collect();
            for f in dropped.into_iter().filter(|f| f.role == Role::Learned) {
                // The try goes on without this source.
                self.learned.result(f.dest.ip(), false);
            }
        }
        let gateways: Vec<IpAddr> = self
            .gateways4
            .iter()
            .chain(&self.gateways6)
            .map(|g| g.addr)
            .collect();
        self.paths.retain(|(s, d), p| {
            self.sources.contains_key(s) && (!p.gateway || gateways.contains(d))
        });
        self.dirty = true;
    }

    /// An address seen in an A/AAAA answer; `public_name` when the query
    /// name is a public one. Call it for every answer served, cache hits
    /// included: a destination is re-tried at most once per interval and
    /// only while someone asks for it. Ignored when destinations are off,
    /// for addresses never probed (loopback, unspecified, multicast,
    /// link-local: an answer carries no zone) and for private, shared or
    /// ULA addresses in answers to public names (rebinding, or a split
    /// horizon we must not poke at).
    pub fn learn(&mut self, now: Instant, addr: IpAddr, public_name: bool) {
        let link_local = match addr {
            IpAddr::V4(a) => a.is_link_local(),
            IpAddr::V6(a) => a.is_unicast_link_local(),
        };
        if !self.config.destinations
            || forbidden(addr)
            || link_local
            || (public_name && local_scope(addr))
        {
            return;
        }
        if let Some(gone) = self.learned.learn(now, addr) {
            self.in_flight
                .retain(|_, f| !(f.role == Role::Learned && f.dest.ip() == gone));
            let configured = (self.config.targets.iter())
                .chain(&self.config.stun)
                .any(|t| t.ip() == gone);
            if !configured {
                self.paths.retain(|(_, d), _| *d != gone);
                self.dirty = true;
            }
        }
    }

    /// The NAT64 prefixes found by the driver (RFC 7050), published as is.
    pub fn set_nat64_prefixes(&mut self, mut prefixes: Vec<Ipv6Net>) {
        prefixes.sort();
        prefixes.dedup();
        self.nat64 = prefixes;
        self.dirty = true;
    }

    /// Expires probes past their deadline, then returns the probes due now:
    /// rounds of the sources whose time has come, and learned-destination
    /// tries as far as the token bucket allows.
    pub fn poll(&mut self, now: Instant) -> Vec<Probe> {
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

    /// Takes the outcome of probe `id`. Unknown ids (expired, or their
    /// source is gone) are ignored; an answer after the deadline counts as
    /// `Unreachable`, as if `poll` had expired it first.
    pub fn handle(&mut self, now: Instant, id: u64, outcome: Outcome) {
        let Some(f) = self.in_flight.remove(&id) else {
            return;
        };
        let answer = match outcome {
            _ if now > f.deadline => None,
            Outcome::Reachable { rtt } => Some((rtt, None)),
            Outcome::StunMapped { rtt, mapped } => Some((rtt, Some(mapped))),
            Outcome::Unreachable => None,
        };
        self.resolve(f, answer);
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
        deadlines.chain(rounds).chain(tries).min()
    }

    /// A new snapshot when something a reader cares about changed since the
    /// last one (module doc, "Generation rule"); `None` otherwise.
    pub fn publish(&mut self) -> Option<Arc<Verdicts>> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        let old = &self.published;
        let mut v = self.build();
        v.generation = old.generation;
        v.keep_close_rtts(old);
        if v == **old {
            return None;
        }
        v.generation += 1;
        self.published = Arc::new(v);
        Some(self.published.clone())
    }

    /// The last published snapshot.
    pub fn verdicts(&self) -> Arc<Verdicts> {
        self.published.clone()
    }

    fn start_round(&mut self, now: Instant, key: SourceKey, out: &mut Vec<Probe>) {
        let Some(src) = self.sources.get(&key) else {
            return;
        };
        let a = &src.address;
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
        if todo.is_empty() {
            return;
        }
        src.round = Some(Round {
            pending: todo.len(),
            ..Round::default()
        });
        for (dest, role) in todo {
            out.push(self.send(now, key, dest, role));
        }
    }

    /// Learned-destination tries, as far as the token bucket allows.
    fn start_tries(&mut self, now: Instant, out: &mut Vec<Probe>) {
        while let Some(dest) = self
            .learned
            .next_try(now, |ip| try_sources(&self.sources, ip).len())
        {
            for key in try_sources(&self.sources, dest.ip()) {
                out.push(self.send(now, key, dest, Role::Learned));
            }
        }
    }

    fn send(&mut self, now: Instant, source: SourceKey, dest: SocketAddr, role: Role) -> Probe {
        let id = self.next_id;
        self.next_id += 1;
        let deadline = now + self.config.timeout;
        self.in_flight.insert(
            id,
            InFlight {
                source,
                dest,
                role,
                deadline,
            },
        );
        let kind = if role == Role::Stun {
            Kind::Stun(dest)
        } else {
            Kind::Tcp(dest)
        };
        Probe {
            id,
            source: source.addr,
            scope_id: source.scope_id,
            kind,
            deadline,
        }
    }

    /// Applies one probe's outcome; `answer` is `None` for a failure.
    fn resolve(&mut self, f: InFlight, answer: Option<(Duration, Option<SocketAddr>)>) {
        self.dirty = true;
        let ok = answer.is_some();
        let dest = f.dest.ip();
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
            } else if f.role == Role::Learned && !link_scoped && global(dest) {
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
        if round.verdict == Some(false) {
            src.health.miss();
        }
        if round.link == Some(false) && !link_scoped {
            src.link.miss();
        }
        if round.stun.is_some() {
            // The mapping is what this round's STUN answers said, or
            // nothing if none answered: present, not latched.
            src.mapped = round.mapped;
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

    fn build(&self) -> Verdicts {
        let sources: Vec<SourceVerdict> = (self.sources.iter())
            .map(|(k, s)| {
                let link_scoped = !routable(s.address.class);
                SourceVerdict {
                    address: k.addr,
                    scope_id: k.scope_id,
                    interface: s.address.interface.clone(),
                    class: s.address.class,
                    state: s.health.state,
                    link: if link_scoped {
                        s.health.state
                    } else {
                        s.link.state
                    },
                    rtt: s.rtt,
                    mapped: s.mapped,
                }
            })
            .collect();

        let family = |v4: bool| {
            let states: Vec<State> = (sources.iter())
                .filter(|s| s.address.is_ipv4() == v4 && routable(s.class))
                .map(|s| s.state)
                .collect();
            match states.is_empty() {
                _ if !self.inventory_known => State::Unknown,
                true => State::Failed,
                false => State::any_ok(states),
            }
        };
        let families = Families {
            ipv4: family(true),
            ipv6: family(false),
        };

        let mut by_dest: BTreeMap<IpAddr, Vec<PathVerdict>> = BTreeMap::new();
        for ((k, d), p) in self.paths.iter().filter(|(_, p)| !p.gateway) {
            let pv = PathVerdict {
                source: k.addr,
                scope_id: k.scope_id,
                state: p.health.state,
                rtt: p.rtt,
            };
            by_dest.entry(*d).or_default().push(pv);
        }
        let destinations: Vec<DestinationVerdict> = (by_dest.into_iter())
            .map(|(address, mut paths)| {
                paths.sort_by_key(|p| (p.source, p.scope_id));
                let state = State::any_ok(paths.iter().map(|p| p.state));
                DestinationVerdict {
                    address,
                    learned: self.learned.contains(address),
                    state,
                    paths,
                }
            })
            .collect();

        let mut by_prefix: BTreeMap<IpNet, Vec<State>> = BTreeMap::new();
        // An address inside a NAT64 prefix is an IPv4 destination behind
        // the translator: its /64 is the translator's, shared by all of
        // them, so one dead IPv4 site must not condemn the rest.
        let translated = |a: &IpAddr| super::nat64::behind(&self.nat64, *a).is_some();
        for d in destinations.iter().filter(|d| !translated(&d.address)) {
            by_prefix
                .entry(prefix_of(d.address))
                .or_default()
                .push(d.state);
        }
        let prefixes = (by_prefix.into_iter())
            .map(|(prefix, states)| PrefixVerdict {
                prefix,
                state: State::any_ok(states),
            })
            .collect();

        let flags = self.flags(&sources);
        Verdicts {
            generation: 0,
            sources,
            families,
            prefixes,
            destinations,
            flags,
            nat64_prefixes: self.nat64.clone(),
            host: Arc::clone(&self.host),
        }
    }

    fn flags(&self, sources: &[SourceVerdict]) -> Flags {
        let ok = |class: Class| {
            sources
                .iter()
                .any(|s| s.class == class && s.state == State::Ok)
        };
        let exists = |class: Class| sources.iter().any(|s| s.class == class);
        let private4 = |c: Class| matches!(c, Class::Rfc1918 | Class::Cgnat);
        // Some source of a class has an ok path to a global destination.
        let reaches_global = |pick: &dyn Fn(Class) -> bool| {
            (self.paths.iter()).any(|((k, d), p)| {
                p.health.state == State::Ok
                    && global(*d)
                    && self.sources.get(k).is_some_and(|s| pick(s.address.class))
            })
        };
        let translated = |v4: bool| {
            sources
                .iter()
                .any(|s| s.address.is_ipv4() == v4 && s.mapped.is_some_and(|m| m.ip() != s.address))
        };
        let tried = |v4: bool, pick: &dyn Fn(Class) -> bool| {
            (self.sources.iter()).any(|(k, s)| {
                k.addr.is_ipv4() == v4
                    && (s.stun_answered || (pick(s.address.class) && s.rounds_done > 0))
            })
        };
        Flags {
            gua_ok: ok(Class::Gua),
            ula_ok: ok(Class::Ula),
            lla_ok: ok(Class::Lla),
            ipv4_ok: sources
                .iter()
                .any(|s| s.address.is_ipv4() && routable(s.class) && s.state == State::Ok),
            nat44: reaches_global(&private4) || translated(true),
            nat44_tried: tried(true, &private4),
            nptv6: reaches_global(&|c| c == Class::Ula) || translated(false),
            nptv6_tried: tried(false, &|c| c == Class::Ula),
            rfc1918: exists(Class::Rfc1918),
            ula_present: exists(Class::Ula),
            def_gateway4: self.gateways4.first().map(gateway_name),
            def_gateway6: self.gateways6.first().map(gateway_name),
        }
    }
}

impl Source {
    fn new(address: Address, now: Instant) -> Source {
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
        }
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

/// `192.168.1.1`, `2001:db8::1`, or `fe80::1%eth0` (RFC 4007 §11 zone
/// syntax) for a link-local gateway.
fn gateway_name(g: &Gateway) -> String {
    match g.addr {
        IpAddr::V6(a) if a.is_unicast_link_local() || g.scope_id != 0 => {
            format!("{a}%{}", g.interface)
        }
        a => a.to_string(),
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, well-mixed hash step.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    const V4_TARGET: &str = "192.0.2.1:443";
    const V6_TARGET: &str = "[2001:db8:ffff::1]:443";
    const STUN4: &str = "192.0.2.3:3478";
    const STUN6: &str = "[2001:db8:ffff::3]:3478";

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// 10 s rounds, 1 s timeout, one TCP target per family, no STUN.
    fn config() -> Config {
        Config {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            targets: vec![sa(V4_TARGET), sa(V6_TARGET)],
            stun: vec![],
            destinations: true,
            rate: 20,
            burst: 20,
            max_destinations: 256,
            seed: 7,
        }
    }

    /// A source on eth0 (index 2) unless link-local, which gets scope 2.
    fn addr(s: &str, class: Class) -> Address {
        let addr = ip(s);
        let scope_id = if matches!(class, Class::Lla) { 2 } else { 0 };
        Address {
            addr,
            prefix_len: if addr.is_ipv4() { 24 } else { 64 },
            interface: "eth0".into(),
            ifindex: 2,
            scope_id,
            class,
            deprecated: false,
            temporary: false,
        }
    }

    fn gateway(s: &str) -> Gateway {
        let addr = ip(s);
        let ll = matches!(addr, IpAddr::V6(a) if a.is_unicast_link_local());
        Gateway {
            addr,
            interface: "eth0".into(),
            ifindex: 2,
            scope_id: if ll { 2 } else { 0 },
        }
    }

    fn snapshot(addresses: &[(&str, Class)], gw4: &[&str], gw6: &[&str]) -> Snapshot {
        Snapshot {
            addresses: addresses.iter().map(|&(a, c)| addr(a, c)).collect(),
            gateways4: gw4.iter().map(|g| gateway(g)).collect(),
            gateways6: gw6.iter().map(|g| gateway(g)).collect(),
        }
    }

    fn dest(p: &Probe) -> SocketAddr {
        match p.kind {
            Kind::Tcp(d) | Kind::Stun(d) => d,
        }
    }

    fn up(rtt: u64) -> Option<Outcome> {
        Some(Outcome::Reachable { rtt: ms(rtt) })
    }

    /// An engine in virtual time: `t0` plus offsets in seconds.
    struct Lab {
        e: Engine,
        t0: Instant,
        now: Instant,
        sent: Vec<(Instant, Probe)>,
    }

    impl Lab {
        fn new(config: Config, snapshot: &Snapshot) -> Lab {
            let t0 = Instant::now();
            let mut e = Engine::new(config);
            e.set_inventory(t0, snapshot);
            Lab {
                e,
                t0,
                now: t0,
                sent: Vec::new(),
            }
        }

        fn at(&self, secs: f64) -> Instant {
            self.t0 + Duration::from_secs_f64(secs)
        }

        fn secs(&self) -> f64 {
            (self.now - self.t0).as_secs_f64()
        }

        /// The event loop up to `until`: wake when the engine asks, poll,
        /// and let `net` answer each probe at once (`None`: no answer, so
        /// it expires at its deadline).
        fn run(&mut self, until: f64, mut net: impl FnMut(f64, &Probe) -> Option<Outcome>) {
            let end = self.at(until);
            for _ in 0..1_000_000 {
                match self.e.next_wakeup() {
                    Some(t) if t <= end => self.now = self.now.max(t),
                    _ => {
                        self.now = end;
                        return;
                    }
                }
                for p in self.e.poll(self.now) {
                    self.sent.push((self.now, p.clone()));
                    if let Some(o) = net(self.secs(), &p) {
                        self.e.handle(self.now, p.id, o);
                    }
                }
            }
            panic!("event loop does not advance at {}", self.secs());
        }

        fn verdicts(&mut self) -> Arc<Verdicts> {
            self.e.publish();
            self.e.verdicts()
        }

        fn source(&mut self, s: &str) -> SourceVerdict {
            let v = self.verdicts();
            v.sources
                .iter()
                .find(|v| v.address == ip(s))
                .cloned()
                .expect("source in verdicts")
        }

        fn flags(&mut self) -> Flags {
            self.verdicts().flags.clone()
        }
    }

    #[test]
    fn fresh_engine_and_fresh_sources_are_unknown_never_failed() {
        let e = Engine::new(config());
        let v = e.verdicts();
        assert_eq!(v.generation, 0);
        assert_eq!(
            v.families,
            Families {
                ipv4: State::Unknown,
                ipv6: State::Unknown
            }
        );
        assert_eq!(v.flags, Flags::default());

        let snap = snapshot(
            &[
                ("2001:db8:1::2", Class::Gua),
                ("192.168.1.2", Class::Rfc1918),
            ],
            &[],
            &[],
        );
        let mut lab = Lab::new(config(), &snap);
        let v = lab.verdicts();
        assert_eq!(v.generation, 1);
        assert!(
            v.sources
                .iter()
                .all(|s| s.state == State::Unknown && s.link == State::Unknown)
        );
        assert_eq!(
            v.families,
            Families {
                ipv4: State::Unknown,
                ipv6: State::Unknown
            }
        );
        assert!(
            !v.flags.nat44_tried && !v.flags.nptv6_tried && !v.flags.gua_ok && !v.flags.ipv4_ok
        );

        // One round with no answer at all is still no verdict.
        lab.run(5.0, |_, _| None);
        let v = lab.verdicts();
        assert!(v.sources.iter().all(|s| s.state == State::Unknown), "{v:?}");
        assert_eq!(v.families.ipv6, State::Unknown);
        // The second makes it failed.
        lab.run(15.0, |_, _| None);
        assert_eq!(lab.source("2001:db8:1::2").state, State::Failed);
        assert_eq!(lab.verdicts().families.ipv6, State::Failed);
    }

    #[test]
    fn hysteresis_fails_after_two_bad_rounds_and_recovers_at_the_first_success() {
        let snap = snapshot(&[("2001:db8:1::2", Class::Gua)], &[], &[]);
        let mut lab = Lab::new(config(), &snap);
        // Round k starts within [9k, 11k] s and ends 1 s later at most, so
        // the checks at 5, 15, 25, 35 s fall between rounds.
        lab.run(5.0, |_, _| up(10));
        assert_eq!(lab.source("2001:db8:1::2").state, State::Ok);
        lab.run(15.0, |_, _| None);
        assert_eq!(
            lab.source("2001:db8:1::2").state,
            State::Ok,
            "one bad round is not enough"
        );
        lab.run(25.0, |_, _| None);
        assert_eq!(lab.source("2001:db8:1::2").state, State::Failed);
        assert!(!lab.flags().gua_ok);
        lab.run(35.0, |_, _| up(10));
        assert_eq!(lab.source("2001:db8:1::2").state, State::Ok);
        assert!(lab.flags().gua_ok);
    }

    #[test]
    fn one_answered_target_is_enough_and_resets_the_count() {
        let mut c = config();
        c.targets.push(sa("[2001:db8:eeee::1]:443"));
        let snap = snapshot(&[("2001:db8:1::2", Class::Gua)], &[], &[]);
        let mut lab = Lab::new(c, &snap);
        let first_only = |_: f64, p: &Probe| {
            (dest(p) == sa(V6_TARGET)).then(|| Outcome::Reachable { rtt: ms(5) })
        };
        lab.run(5.0, |_, _| None);
        lab.run(15.0, first_only);
        lab.run(25.0, |_, _| None);
        // fail, success, fail: never two misses in a row.
        assert_eq!(lab.source("2001:db8:1::2").state, State::Ok);
        let v = lab.verdicts();
        assert_eq!(
            v.destination(ip("2001:db8:eeee::1")).unwrap().state,
            State::Failed
        );
        assert_eq!(v.destination(sa(V6_TARGET).ip()).unwrap().state, State::Ok);
        assert_eq!(v.prefix_state(ip("2001:db8:eeee::99")), State::Failed);
        assert_eq!(v.prefix_state(ip("2001:db8:ffff::99")), State::Ok);
        assert_eq!(v.prefix_state(ip("2001:db8:abcd::1")), State::Unknown);
    }

    #[test]
    fn rtt_is_smoothed_as_tcp_srtt() {
        // RFC 6298 §2.2–2.3 with α = 1/8.
        assert_eq!(smooth(None, ms(100)), ms(100));
        assert_eq!(
            smooth(Some(ms(100)), ms(200)),
            Duration::from_micros(112_500)
        );
        assert_eq!(
            smooth(Some(Duration::from_micros(112_500)), ms(200)),
            Duration::from_nanos(123_437_500)
        );
        assert_eq!(
            smooth(Some(Duration::MAX), Duration::MAX),
            Duration::MAX / 8,
            "saturates, no panic"
        );

        let mut c = config();
        c.targets = vec![sa(V4_TARGET)];
        let snap = snapshot(&[("203.0.113.2", Class::Global4)], &[], &[]);
        let mut lab = Lab::new(c, &snap);
        let key = SourceKey {
            addr: ip("203.0.113.2"),
            scope_id: 0,
        };
        lab.run(5.0, |_, _| up(100));
        lab.run(15.0, |_, _| up(200));
        assert_eq!(
            lab.e.sources[&key].rtt,
            Some(Duration::from_micros(112_500))
        );
        lab.run(25.0, |_, _| up(200));
        assert_eq!(
            lab.e.sources[&key].rtt,
            Some(Duration::from_nanos(123_437_500))
        );
        assert_eq!(
            lab.e.paths[&(key, sa(V4_TARGET).ip())].rtt,
            Some(Duration::from_nanos(123_437_500))
        );
    }

    #[test]
    fn generation_moves_on_state_and_big_rtt_changes_only() {
        let mut c = config();
        c.targets = vec![sa(V4_TARGET)];
        let snap = snapshot(&[("203.0.113.2", Class::Global4)], &[], &[]);
        let mut lab = Lab::new(c, &snap);
        assert_eq!(lab.e.publish().unwrap().generation, 1, "new sources");
        assert!(lab.e.publish().is_none(), "nothing happened");

        lab.run(5.0, |_, _| up(100));
        let v = lab.e.publish().unwrap();
        assert_eq!(
            (v.generation, v.sources[0].state, v.sources[0].rtt),
            (2, State::Ok, Some(ms(100)))
        );

        // 100 → 112.5 → 110.9 ms: within 20 % of the published 100 ms.
        lab.run(15.0, |_, _| up(200));
        assert!(lab.e.publish().is_none());
        lab.run(25.0, |_, _| up(100));
        assert!(lab.e.publish().is_none());
        assert_eq!(lab.e.verdicts().sources[0].rtt, Some(ms(100)));
        // 110.9 → 159.5 ms: more than 20 % away from 100 ms.
        lab.run(35.0, |_, _| up(500));
        let v = lab.e.publish().unwrap();
        assert_eq!(v.generation, 3);
        assert!(v.sources[0].rtt > Some(ms(120)));

        // A miss that changes no state publishes nothing; the failure does.
        lab.run(45.0, |_, _| None);
        assert!(lab.e.publish().is_none());
        lab.run(55.0, |_, _| None);
        let v = lab.e.publish().unwrap();
        assert_eq!((v.generation, v.sources[0].state), (4, State::Failed));
    }

    /// Dual stack behind NAT44: GUA, RFC 1918 and link-local sources,
    /// a v4 gateway and a link-local v6 gateway, STUN over IPv4.
    fn home() -> (Config, Snapshot) {
        let mut c = config();
        c.stun = vec![sa(STUN4)];
        let snap = snapshot(
            &[
                ("2001:db8:1::2", Class::Gua),
                ("192.168.1.2", Class::Rfc1918),
                ("fe80::2", Class::Lla),
            ],
            &["192.168.1.1"],
            &["fe80::1"],
        );
        (c, snap)
    }

    fn stun_maps_to(to: &str) -> impl FnMut(f64, &Probe) -> Option<Outcome> {
        let to = sa(to);
        move |_, p| match p.kind {
            Kind::Stun(_) => Some(Outcome::StunMapped {
                rtt: ms(20),
                mapped: to,
            }),
            Kind::Tcp(_) => up(10),
        }
    }

    #[test]
    fn flag_table() {
        // (a) Dual stack behind NAT44, all answering.
        let (c, snap) = home();
        let mut lab = Lab::new(c, &snap);
        lab.run(5.0, stun_maps_to("198.51.100.9:40000"));
        let a = lab.flags();
        let want_a = Flags {
            gua_ok: true,
            ula_ok: false,
            lla_ok: true,
            ipv4_ok: true,
            nat44: true,
            nat44_tried: true,
            nptv6: false,
            nptv6_tried: false,
            rfc1918: true,
            ula_present: false,
            def_gateway4: Some("192.168.1.1".into()),
            def_gateway6: Some("fe80::1%eth0".into()),
        };
        assert_eq!(a, want_a);
        let v = lab.verdicts();
        assert!(v.sources.iter().all(|s| s.state == State::Ok), "{v:?}");
        assert_eq!(
            v.families,
            Families {
                ipv4: State::Ok,
                ipv6: State::Ok
            }
        );

        // (b) The same network, dead: present flags drop, "tried" stays.
        lab.run(25.0, |_, _| None);
        let b = lab.flags();
        let want_b = Flags {
            gua_ok: false,
            lla_ok: false,
            ipv4_ok: false,
            nat44: false,
            ..want_a.clone()
        };
        assert_eq!(b, want_b);
        assert_eq!(
            lab.verdicts().families,
            Families {
                ipv4: State::Failed,
                ipv6: State::Failed
            }
        );

        // (c) ULA-only v6 behind NPTv6, a global IPv4 address, no gateways.
        let snap = snapshot(
            &[("fd00:1::2", Class::Ula), ("203.0.113.2", Class::Global4)],
            &[],
            &[],
        );
        let mut lab = Lab::new(config(), &snap);
        lab.run(5.0, |_, _| up(10));
        let want_c = Flags {
            gua_ok: false,
            ula_ok: true,
            lla_ok: false,
            ipv4_ok: true,
            nat44: false,
            nat44_tried: false,
            nptv6: true,
            nptv6_tried: true,
            rfc1918: false,
            ula_present: true,
            def_gateway4: None,
            def_gateway6: None,
        };
        assert_eq!(lab.flags(), want_c);
    }

    #[test]
    fn nat44_from_stun_alone() {
        let mut c = config();
        c.targets = vec![];
        c.stun = vec![sa(STUN4)];
        let snap = snapshot(&[("203.0.113.2", Class::Global4)], &[], &[]);
        // STUN sees us as ourselves: tried, no NAT.
        let mut lab = Lab::new(c.clone(), &snap);
        lab.run(5.0, stun_maps_to("203.0.113.2:5000"));
        let f = lab.flags();
        assert!(f.nat44_tried && !f.nat44 && f.ipv4_ok);
        // As another address: NAT44 (a global source, so STUN is the only way to tell).
        let mut lab = Lab::new(c, &snap);
        lab.run(5.0, stun_maps_to("198.51.100.9:5000"));
        assert!(lab.flags().nat44);
        assert_eq!(
            lab.source("203.0.113.2").mapped,
            Some(sa("198.51.100.9:5000"))
        );
        // A round in which STUN does not answer clears the mapping.
        lab.run(15.0, |_, _| None);
        assert!(!lab.flags().nat44);
        assert_eq!(lab.source("203.0.113.2").mapped, None);
    }

    #[test]
    fn nptv6_from_a_ula_reaching_a_global_target_or_from_stun() {
        let snap = snapshot(&[("fd00:1::2", Class::Ula)], &[], &[]);
        let mut lab = Lab::new(config(), &snap);
        lab.run(5.0, |_, _| None);
        let f = lab.flags();
        assert!(f.nptv6_tried && !f.nptv6 && f.ula_present && !f.ula_ok);
        lab.run(15.0, |_, _| up(10));
        let f = lab.flags();
        assert!(f.nptv6 && f.ula_ok);

        // A GUA source that STUN sees as another address: NAT66/NPTv6.
        let mut c = config();
        c.stun = vec![sa(STUN6)];
        let snap = snapshot(&[("2001:db8:1::2", Class::Gua)], &[], &[]);
        let mut lab = Lab::new(c, &snap);
        lab.run(5.0, stun_maps_to("[2001:db8:1::2]:5000"));
        assert!(lab.flags().nptv6_tried && !lab.flags().nptv6);
        let mut lab = Lab::new(lab.e.config.clone(), &snap);
        lab.run(5.0, stun_maps_to("[2001:db8:99::2]:5000"));
        assert!(lab.flags().nptv6);
    }

    #[test]
    fn gateways_are_link_evidence_not_internet() {
        let (mut c, snap) = home();
        c.stun.clear();
        let mut lab = Lab::new(c, &snap);
        let gateways_only = |_: f64, p: &Probe| {
            (dest(p).port() == GATEWAY_PORT).then(|| Outcome::Reachable { rtt: ms(1) })
        };
        lab.run(25.0, gateways_only);
        let gua = lab.source("2001:db8:1::2");
        assert_eq!((gua.state, gua.link), (State::Failed, State::Ok));
        let lla = lab.source("fe80::2");
        assert_eq!((lla.state, lla.link), (State::Ok, State::Ok));
        let f = lab.flags();
        assert!(f.lla_ok && !f.gua_ok && !f.ipv4_ok);
        // Gateways are not Internet destinations.
        assert!(
            lab.verdicts()
                .destinations
                .iter()
                .all(|d| d.address != ip("192.168.1.1"))
        );
        // The link-local gateway is probed with its zone, from both v6 sources.
        let to_gw6: Vec<_> = (lab.sent.iter())
            .filter(|(t, p)| *t == lab.t0 && dest(p).ip() == ip("fe80::1"))
            .map(|(_, p)| (p.source, p.scope_id, dest(p)))
            .collect();
        let gw = SocketAddr::V6(SocketAddrV6::new(
            "fe80::1".parse().unwrap(),
            GATEWAY_PORT,
            0,
            2,
        ));
        assert_eq!(
            to_gw6,
            vec![(ip("2001:db8:1::2"), 0, gw), (ip("fe80::2"), 2, gw)]
        );
    }

    #[test]
    fn learned_destination_dies_after_two_tries_and_revives() {
        let mut c = config();
        c.targets.clear();
        let snap = snapshot(
            &[
                ("203.0.113.2", Class::Global4),
                ("10.0.0.2", Class::Rfc1918),
            ],
            &[],
            &[],
        );
        let mut lab = Lab::new(c, &snap);
        let d = ip("198.51.100.7");
        lab.e.learn(lab.now, d, true);
        lab.run(5.0, |_, _| None);
        let ports: Vec<_> = lab
            .sent
            .iter()
            .map(|(t, p)| ((*t - lab.t0).as_secs(), p.source, dest(p)))
            .collect();
        assert_eq!(
            ports,
            vec![
                (0, ip("10.0.0.2"), sa("198.51.100.7:443")),
                (0, ip("203.0.113.2"), sa("198.51.100.7:443")),
                (1, ip("10.0.0.2"), sa("198.51.100.7:80")),
                (1, ip("203.0.113.2"), sa("198.51.100.7:80")),
            ],
            "one try on 443, then one on 80"
        );
        let v = lab.verdicts();
        assert_eq!(v.destination(d).unwrap().state, State::Failed, "dead");
        assert!(v.destination(d).unwrap().learned);
        assert_eq!(v.prefix_state(ip("198.51.100.200")), State::Failed);
        // Learned destinations never fail a source.
        assert_eq!(lab.source("203.0.113.2").state, State::Unknown);

        // Asked for again within the interval of the last try (at 1 s): no
        // new try.
        lab.e.learn(lab.now, d, true);
        lab.run(11.5, |_, _| None);
        assert_eq!(lab.sent.len(), 4);
        // After it: a try, answered from one source only: alive again.
        lab.e.learn(lab.now, d, true);
        lab.run(12.0, |_, p| {
            (p.source == ip("203.0.113.2")).then(|| Outcome::Reachable { rtt: ms(30) })
        });
        assert_eq!(lab.sent.len(), 6);
        assert_eq!(
            dest(&lab.sent[5].1).port(),
            443,
            "back to 443 after 80 failed"
        );
        let v = lab.verdicts();
        assert_eq!(v.destination(d).unwrap().state, State::Ok);
        assert_eq!(v.prefix_state(d), State::Ok);
        // A global destination reached is Internet evidence for the source.
        assert_eq!(lab.source("203.0.113.2").state, State::Ok);
        assert!(lab.flags().ipv4_ok);
    }

    #[test]
    fn learned_destinations_respect_the_scope_rules() {
        let snap = snapshot(
            &[
                ("203.0.113.2", Class::Global4),
                ("2001:db8:1::2", Class::Gua),
            ],
            &[],
            &[],
        );
        let mut c = config();
        c.targets.clear();
        let mut lab = Lab::new(c, &snap);
        let never = [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "ff02::1",
            "fe80::1",
            "169.254.1.1",
            "::ffff:192.0.2.1",
        ];
        let not_from_public = [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.0.1",
            "100.64.0.1",
            "fd00::1",
        ];
        for a in never {
            lab.e.learn(lab.now, ip(a), false);
        }
        for a in not_from_public {
            lab.e.learn(lab.now, ip(a), true);
        }
        lab.run(5.0, |_, _| up(1));
        assert!(lab.sent.is_empty(), "{:?}", lab.sent);
        // Private addresses in answers to private names are fair game.
        for a in not_from_public {
            lab.e.learn(lab.now, ip(a), false);
        }
        lab.run(6.0, |_, _| up(1));
        let probed: HashSet<IpAddr> = lab.sent.iter().map(|(_, p)| dest(p).ip()).collect();
        assert_eq!(probed, not_from_public.iter().map(|a| ip(a)).collect());
        // Private destinations are no Internet evidence.
        assert_eq!(lab.source("203.0.113.2").state, State::Unknown);
        // And with destinations off, nothing is learned.
        let mut c = config();
        c.destinations = false;
        let mut lab = Lab::new(c, &snap);
        lab.e.learn(lab.now, ip("198.51.100.7"), true);
        assert!(lab.e.learned.addresses().is_empty());
    }

    #[test]
    fn rate_limit_holds_for_learned_destinations() {
        let mut c = config();
        c.targets.clear();
        (c.rate, c.burst) = (5, 5);
        let snap = snapshot(&[("203.0.113.2", Class::Global4)], &[], &[]);
        let mut lab = Lab::new(c, &snap);
        for i in 0..40u8 {
            lab.e
                .learn(lab.now, IpAddr::from([198, 51, 100, i + 1]), true);
        }
        lab.run(20.0, |_, _| up(5));
        let times: Vec<f64> = lab
            .sent
            .iter()
            .map(|(t, _)| (*t - lab.t0).as_secs_f64())
            .collect();
        assert_eq!(times.len(), 40, "every destination tried once");
        // Token bucket: by time t at most burst + rate·t probes.
        for (n, t) in times.iter().enumerate() {
            assert!(
                (n + 1) as f64 <= 5.0 + 5.0 * t + 1e-6,
                "probe {} at {t} s",
                n + 1
            );
        }
        // And no second is crowded beyond burst + rate.
        for w in 0..20 {
            let in_window = times
                .iter()
                .filter(|&&t| t >= w as f64 && t < w as f64 + 1.0)
                .count();
            assert!(in_window <= 10, "{in_window} probes in second {w}");
        }
        assert!(
            times[39] <= 7.0 + 1e-6,
            "and the bucket is used at its rate: {}",
            times[39]
        );
    }

    #[test]
    fn learned_table_is_a_bounded_lru() {
        let mut c = config();
        c.targets.clear();
        c.max_destinations = 4;
        let snap = snapshot(&[("203.0.113.2", Class::Global4)], &[], &[]);
        let mut lab = Lab::new(c, &snap);
        let d = |i: u8| IpAddr::from([198, 51, 100, i]);
        for i in 1..=4 {
            lab.e.learn(lab.now, d(i), true);
        }
        lab.run(0.5, |_, _| up(5));
        lab.e.learn(lab.now, d(1), true); // 1 is now the most recent
        lab.e.learn(lab.now, d(5), true); // evicts 2
        lab.e.learn(lab.now, d(6), true); // evicts 3
        assert_eq!(lab.e.learned.addresses(), vec![d(1), d(4), d(5), d(6)]);
        // Evicted destinations leave the verdicts too.
        let v = lab.verdicts();
        assert!(v.destination(d(2)).is_none() && v.destination(d(4)).is_some());
        for i in 7..=100 {
            lab.e.learn(lab.now, d(i), true);
        }
        assert_eq!(lab.e.learned.addresses().len(), 4);
    }

    #[test]
    fn vanished_sources_are_dropped_and_new_ones_probed_at_once() {
        let a = snapshot(&[("2001:db8:1::2", Class::Gua)], &[], &[]);
        let mut lab = Lab::new(config(), &a);
        lab.run(5.0, |_, _| up(10));
        // A round in flight when the address goes away.
        lab.now = lab.e.next_wakeup().unwrap();
        let late: Vec<u64> = lab.e.poll(lab.now).iter().map(|p| p.id).collect();
        assert!(!late.is_empty());
        let b = snapshot(&[("2001:db8:2::2", Class::Gua)], &[], &[]);
        lab.e.set_inventory(lab.now, &b);
        for id in late {
            lab.e.handle(lab.now, id, Outcome::Reachable { rtt: ms(1) });
        }
        let v = lab.verdicts();
        assert_eq!(v.sources.len(), 1);
        assert_eq!(
            (v.sources[0].address, v.sources[0].state),
            (ip("2001:db8:2::2"), State::Unknown)
        );
        assert!(
            v.destinations
                .iter()
                .all(|d| d.paths.iter().all(|p| p.source == ip("2001:db8:2::2")))
        );
        // Probed at the very next poll, not an interval later.
        assert_eq!(lab.e.next_wakeup(), Some(lab.now));
        let probes = lab.e.poll(lab.now);
        assert_eq!(probes.len(), 1);
        assert_eq!(probes[0].source, ip("2001:db8:2::2"));
    }

    #[test]
    fn jitter_is_within_ten_percent_and_reproducible() {
        let snap = snapshot(&[("203.0.113.2", Class::Global4)], &[], &[]);
        let starts = |seed: u64| {
            let mut c = config();
            c.seed = seed;
            let mut lab = Lab::new(c, &snap);
            lab.run(200.0, |_, _| up(1));
            lab.sent
                .iter()
                .map(|(t, _)| (*t - lab.t0).as_secs_f64())
                .collect::<Vec<_>>()
        };
        let a = starts(1);
        assert_eq!(a, starts(1));
        assert_ne!(a, starts(2));
        assert!(a.len() >= 18);
        for w in a.windows(2) {
            let gap = w[1] - w[0];
            assert!((9.0..=11.0).contains(&gap), "{gap}");
        }
    }

    #[test]
    fn silent_config_sends_nothing() {
        let mut c = config();
        c.targets.clear();
        c.destinations = false;
        let (_, snap) = home();
        let mut lab = Lab::new(c, &snap);
        lab.e.learn(lab.now, ip("198.51.100.7"), true);
        assert_eq!(lab.e.next_wakeup(), None);
        assert!(lab.e.poll(lab.now).is_empty());
        // Configured loopback targets are skipped too.
        let mut c = config();
        c.targets = vec![sa("127.0.0.1:443"), sa("[::1]:443")];
        let mut lab = Lab::new(c, &snapshot(&[("203.0.113.2", Class::Global4)], &[], &[]));
        assert!(lab.e.poll(lab.now).is_empty());
    }

    #[test]
    fn late_answers_count_as_unreachable() {
        let snap = snapshot(&[("203.0.113.2", Class::Global4)], &[], &[]);
        let mut lab = Lab::new(config(), &snap);
        let p = lab.e.poll(lab.now).remove(0);
        lab.e.handle(
            p.deadline + ms(1),
            p.id,
            Outcome::Reachable { rtt: ms(1001) },
        );
        assert_eq!(lab.source("203.0.113.2").state, State::Unknown);
        assert_eq!(lab.e.paths.values().next().unwrap().health.misses, 1);
        // And an id it does not know is ignored.
        lab.e
            .handle(lab.now, 9999, Outcome::Reachable { rtt: ms(1) });
    }

    #[derive(Debug, Clone)]
    enum Op {
        Advance(u16),
        Answer(usize, u8, u16),
        Learn(u8, bool),
        Inventory(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u16..15_000).prop_map(Op::Advance),
            (any::<usize>(), 0u8..3, 0u16..2000).prop_map(|(i, k, r)| Op::Answer(i, k, r)),
            (any::<u8>(), any::<bool>()).prop_map(|(i, p)| Op::Learn(i, p)),
            (0u8..8).prop_map(Op::Inventory),
        ]
    }

    proptest! {
        /// Whatever the network does: no panic, no source ok without a
        /// success from it, no probe from or to a forbidden address, and
        /// generations that only grow.
        #[test]
        fn random_results_never_panic_or_invent_success(ops in proptest::collection::vec(op(), 1..120)) {
            let (mut c, _) = home();
            c.stun.push(sa(STUN6));
            c.max_destinations = 8;
            let all = [
                ("2001:db8:1::2", Class::Gua),
                ("192.168.1.2", Class::Rfc1918),
                ("fe80::2", Class::Lla),
            ];
            let mut lab = Lab::new(c, &snapshot(&all, &["192.168.1.1"], &["fe80::1"]));
            let mut out: Vec<Probe> = Vec::new();
            let mut succeeded: HashSet<(IpAddr, u32)> = HashSet::new();
            let mut generation = 0;
            let dests = ["198.51.100.7", "10.0.0.9", "2001:db8:77::1", "fd00::9", "127.0.0.1", "203.0.113.50"];
            for op in ops {
                match op {
                    Op::Advance(d) => lab.now += ms(u64::from(d)),
                    Op::Answer(i, kind, rtt) if !out.is_empty() => {
                        let p = out.swap_remove(i % out.len());
                        let outcome = match kind {
                            0 => Outcome::Unreachable,
                            1 => Outcome::Reachable { rtt: ms(u64::from(rtt)) },
                            _ => Outcome::StunMapped { rtt: ms(u64::from(rtt)), mapped: sa("198.51.100.1:1") },
                        };
                        if kind != 0 && lab.now <= p.deadline {
                            succeeded.insert((p.source, p.scope_id));
                        }
                        lab.e.handle(lab.now, p.id, outcome);
                    }
                    Op::Answer(..) => {}
                    Op::Learn(i, public) => lab.e.learn(lab.now, ip(dests[usize::from(i) % dests.len()]), public),
                    Op::Inventory(mask) => {
                        let some: Vec<_> = all.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, a)| *a).collect();
                        lab.e.set_inventory(lab.now, &snapshot(&some, &["192.168.1.1"], &["fe80::1"]));
                    }
                }
                for p in lab.e.poll(lab.now) {
                    prop_assert!(!forbidden(p.source) && !forbidden(dest(&p).ip()), "{p:?}");
                    prop_assert!(p.deadline > lab.now);
                    out.push(p);
                }
                if let Some(w) = lab.e.next_wakeup() {
                    prop_assert!(w >= lab.t0);
                }
                if let Some(v) = lab.e.publish() {
                    prop_assert!(v.generation > generation);
                    generation = v.generation;
                    for s in &v.sources {
                        if s.state == State::Ok {
                            prop_assert!(succeeded.contains(&(s.address, s.scope_id)), "{s:?} ok without a success");
                        }
                    }
                    for d in &v.destinations {
                        prop_assert_eq!(d.state == State::Ok, d.paths.iter().any(|p| p.state == State::Ok));
                    }
                }
            }
        }
    }
}
