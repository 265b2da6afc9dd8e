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
//! Some rounds start early (`confirm`): a round that was a miss is
//! followed by the next one 1 s after its start (`CONFIRM_GAP`)
//! instead of an interval later; an application's connect stuck in SYN-SENT
//! towards a global address ([`Engine::syn_stuck`]) starts a round of every
//! routable source of its family that has not failed, at once (at most 3 in
//! a row per family, then one per `interval`); a change of a family's
//! default gateways starts a round of its sources. Each is reported by
//! [`Engine::take_early_rounds`]. A healthy idle host sees none of them.
//!
//! Learned destinations are tried from every routable source of their
//! family, on port 443; a try that reaches nothing is followed at once by
//! one on port 80. They are retried only while they are being asked for:
//! [`Engine::learn`] queues a try when the last one is older than
//! `interval`, or at once when an application's connect to one not yet
//! found dead is stuck, and when a source that had failed works again (for
//! the destinations it found dead). Tries share a token bucket (`rate` probes per second,
//! `burst` deep), and the table keeps the `max_destinations` most recently
//! learned addresses.
//!
//! # Verdict rule (hysteresis)
//!
//! Sources, links and (source, destination) paths all follow one rule
//! ([`State`](super::verdicts::State)): **ok at the first success; failed after two consecutive
//! misses; unknown until one or the other.** For a source a miss is a
//! completed round in which every Internet probe failed (a round with none
//! is no evidence); a success is any Internet probe answered, or a learned
//! global destination reached (global as the inventory's
//! [`is_global`](crate::inventory::class::is_global) says: not, for
//! example, the benchmarking range 198.18.0.0/15). For a path a miss is one failed probe, so a
//! learned destination is dead (`Failed`) once two tries (443, then 80)
//! reached it from no source, and revives at the next success. One lost
//! round therefore never flips an ok source (its confirmation must fail
//! too); a break shows one round plus its confirmation after the first
//! round that sees it, that is within `2 × timeout` of a stuck connect, or
//! of the next scheduled round on an idle host; a repair shows at the first
//! answer, at the latest one interval later.
//!
//! # Generation rule
//!
//! [`Engine::publish`] returns a new snapshot, with `generation + 1`, only
//! when a reader would decide differently: any state, flag, source, gateway,
//! mapping, destination or NAT64 prefix changed, or an RTT appeared,
//! vanished or moved by more than 20 % from the value last published. RTT
//! wobble below that is not published at all.
//!
//! # Where things are
//!
//! In each round of a routable source one target connect also carries a
//! large probe, for path-MTU blackholes; `mtu` has its rule.
//!
//! `config` and `probe` hold the types the daemon and the driver see;
//! `addresses` which addresses are probed; `state` the bookkeeping and the
//! hysteresis; `schedule` rounds, tries and wakeups; `confirm` the rounds
//! started early and why; `results` what a probe's
//! end changes; `publish` the snapshot and its flags. This file holds the
//! engine and its inputs (inventory, learned addresses, NAT64 prefixes).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use ipnet::Ipv6Net;

use super::known64::Known64;
use super::learned::Table;
use super::verdicts::Verdicts;
use crate::inventory::ndopt::Pref64;
use crate::inventory::{Gateway, Snapshot};

mod addresses;
mod config;
mod confirm;
mod mtu;
mod probe;
mod publish;
mod results;
mod schedule;
mod state;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_confirm;
#[cfg(test)]
mod tests_mtu;
#[cfg(test)]
mod tests_nat64;
#[cfg(test)]
mod tests_random;

pub use config::EngineConfig;
pub use confirm::{EarlyRound, Trigger};
pub use mtu::{FLIGHT_BYTES, LARGE_HELLO};
pub use probe::{Kind, ProbeRequest, ProbeResult};

use addresses::{forbidden, local_scope};
use confirm::StuckBudget;
use state::{InFlight, Path, Role, Source, SourceKey};

/// The engine. See the module doc for the rules.
#[derive(Debug, Default)]
pub struct Engine {
    config: EngineConfig,
    inventory_known: bool,
    sources: BTreeMap<SourceKey, Source>,
    gateways4: Vec<Gateway>,
    gateways6: Vec<Gateway>,
    host: Arc<Snapshot>,
    in_flight: HashMap<u64, InFlight>,
    next_id: u64,
    paths: HashMap<(SourceKey, IpAddr), Path>,
    learned: Table,
    /// The NAT64 prefixes known, by source.
    known64: Known64,
    /// Their union, sorted: what the verdicts use.
    nat64: Vec<Ipv6Net>,
    published: Arc<Verdicts>,
    dirty: bool,
    /// Rounds started by stuck connects, per family (IPv4, IPv6).
    stuck_budget: [StuckBudget; 2],
    early_rounds: Vec<EarlyRound>,
    /// Targets that once sent a full first flight to a large probe: they
    /// speak TLS, so their silence can mean a blackhole.
    answers_large: HashSet<IpAddr>,
    /// (source, target) pairs whose large probe stalled while the target
    /// had not yet answered large: their next probe is a proof, with small
    /// segments ([`PROOF_MSS`](mtu::PROOF_MSS)).
    suspects: HashSet<(SourceKey, std::net::SocketAddr)>,
    /// Large probes connected, awaiting their flight: source, target,
    /// until when, and whether it is a proof.
    flights: HashMap<u64, (SourceKey, std::net::SocketAddr, Instant, bool)>,
}

impl Engine {
    /// A fresh engine: no sources until [`Engine::set_inventory`]; its
    /// snapshot (generation 0) says unknown everywhere and no flag set.
    pub fn new(config: EngineConfig) -> Engine {
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
        // A family whose default gateways changed (a new uplink, a lost
        // one, a router's address moved) is probed again at once.
        let moved = [
            self.inventory_known && self.gateways4 != snapshot.gateways4,
            self.inventory_known && self.gateways6 != snapshot.gateways6,
        ];
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
        // A router's NAT64 prefix goes with its interface: gone, down, or
        // left out by the interface filter (the snapshot is filtered).
        let present: HashSet<(u32, &str)> = (snapshot.addresses.iter())
            .map(|a| (a.ifindex, a.interface.as_str()))
            .collect();
        if self
            .known64
            .retain_interfaces(|i, name| present.contains(&(i, name)))
        {
            self.nat64 = self.known64.union();
        }
        let again: Vec<SourceKey> = (self.sources.iter())
            .filter(|(k, s)| moved[usize::from(k.addr.is_ipv6())] && s.round.is_none())
            .map(|(k, _)| *k)
            .collect();
        for key in again {
            self.start_early(now, key, confirm::Trigger::Gateway);
        }
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

    /// The NAT64 prefixes found by RFC 7050 discovery; they replace the
    /// last ones found.
    pub fn set_nat64_prefixes(&mut self, prefixes: Vec<Ipv6Net>) {
        if self.known64.set_rfc7050(&prefixes) {
            self.nat64_changed();
        }
    }

    /// The NAT64 prefixes of the config (`dns64.prefixes`); they replace
    /// the last ones.
    pub fn set_config_nat64(&mut self, prefixes: &[Ipv6Net]) {
        if self.known64.set_config(prefixes) {
            self.nat64_changed();
        }
    }

    /// The PREF64 options (RFC 8781) of a router advertisement that came
    /// in on `ifindex` from `router`. Ignored when the interface is not in
    /// the inventory (down, or left out by the interface filter): its
    /// prefixes would go at once anyway. Returns how many known prefixes
    /// gave way to the table's bounds ([`crate::probe::known64`]).
    pub fn router_advertisement(
        &mut self,
        now: Instant,
        ifindex: u32,
        router: Option<std::net::Ipv6Addr>,
        options: &[Pref64],
    ) -> usize {
        let Some(name) = (self.host.addresses.iter())
            .find(|a| a.ifindex == ifindex)
            .map(|a| a.interface.clone())
        else {
            return 0;
        };
        let (changed, evicted) = self
            .known64
            .advertised(now, ifindex, &name, router, options);
        if changed {
            self.nat64_changed();
        }
        evicted
    }

    /// When the next NAT64 prefix learned from a router expires.
    pub(super) fn nat64_expiry(&self) -> Option<Instant> {
        self.known64.next_expiry()
    }

    /// Drops the NAT64 prefixes whose lifetime ran out by `now`.
    pub(super) fn expire_nat64(&mut self, now: Instant) {
        if self.known64.expire(now) {
            self.nat64_changed();
        }
    }

    fn nat64_changed(&mut self) {
        self.nat64 = self.known64.union();
        self.dirty = true;
    }
}
