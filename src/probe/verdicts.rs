//! The verdicts snapshot: what the probe engine found, as readers see it.
//!
//! Immutable once published ([`crate::probe::engine::Engine::publish`]);
//! readers (DNS rewriting, policy, `/status`) load an `Arc<Verdicts>` without
//! locks and may cache work keyed by its generation.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::inventory::{Class, Snapshot, is_global};
use crate::probe::known64::Nat64Prefix;

/// A verdict. For a destination, `Failed` is what the design calls dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum State {
    /// No evidence yet. Never a reason to filter anything.
    #[default]
    Unknown,
    Ok,
    Failed,
}

impl State {
    /// The name used in `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Ok => "ok",
            State::Failed => "failed",
        }
    }

    /// Ok if any is ok; failed if there are some and all failed.
    pub(crate) fn any_ok(states: impl IntoIterator<Item = State>) -> State {
        let mut all = State::Failed;
        let mut seen = false;
        for s in states {
            seen = true;
            match s {
                State::Ok => return State::Ok,
                State::Unknown => all = State::Unknown,
                State::Failed => {}
            }
        }
        if seen { all } else { State::Unknown }
    }
}

/// The immutable snapshot readers load. Every list is sorted by its key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdicts {
    /// Moves only when a reader would decide differently: a state, flag,
    /// source, mapping, destination or NAT64 prefix changed, or an RTT
    /// appeared, vanished or moved by more than 20 % from the value last
    /// published (see [`crate::probe::engine`]).
    pub generation: u64,
    pub sources: Vec<SourceVerdict>,
    pub families: Families,
    /// Whether full-size packets get through, per family.
    pub path_mtu: PathMtu,
    /// Per /24 (IPv4) or /64 (IPv6) of the probed Internet destinations.
    pub prefixes: Vec<PrefixVerdict>,
    /// Configured targets, STUN servers and learned destinations with at
    /// least one probe result.
    pub destinations: Vec<DestinationVerdict>,
    pub flags: Flags,
    /// Every known NAT64 prefix once, sorted: what rewriting, DNS64 and
    /// `/pairs` use.
    pub nat64_prefixes: Vec<Ipv6Net>,
    /// The same prefixes with where each came from, in order of preference
    /// (router advertisement, config, RFC 7050), one entry per (prefix,
    /// source, interface): `/status` lists them.
    pub nat64: Vec<Nat64Prefix>,
    /// The inventory these verdicts were computed on (after the interface
    /// filter): readers need its subnets and gateways for RFC 6724 source
    /// selection and to tell on-link destinations from Internet ones.
    pub host: Arc<Snapshot>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceVerdict {
    pub address: IpAddr,
    pub scope_id: u32,
    pub interface: String,
    pub class: Class,
    /// Reaches the Internet (a link-scoped source: reaches its gateway).
    pub state: State,
    /// Reaches a default gateway on its interface.
    pub link: State,
    /// Smoothed RTT of its verdict probes.
    pub rtt: Option<Duration>,
    /// What a STUN server saw in the last round that asked one.
    pub mapped: Option<SocketAddr>,
}

/// Ok if any routable source of the family is ok; unknown while none is ok
/// and some is unknown (or the inventory is not known yet); failed when all
/// failed or the family has no routable source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Families {
    pub ipv4: State,
    pub ipv6: State,
}

/// What the large-packet probes say of a family's path MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mtu {
    /// No evidence: no working source, no target that ever answered a
    /// large probe, or not yet probed. Never a reason to filter anything.
    #[default]
    Unknown,
    /// A working source got a server's full first flight back.
    Ok,
    /// Small packets get through but a server that once answered a large
    /// probe now sends nothing back, twice in a row, from every working
    /// source of the family.
    Blackhole,
}

impl Mtu {
    /// The name used in `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mtu::Unknown => "unknown",
            Mtu::Ok => "ok",
            Mtu::Blackhole => "blackhole",
        }
    }
}

/// [`Mtu`] per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathMtu {
    pub ipv4: Mtu,
    pub ipv6: Mtu,
}

impl PathMtu {
    /// The verdict of `addr`'s family.
    pub fn of(&self, addr: IpAddr) -> Mtu {
        if addr.is_ipv4() { self.ipv4 } else { self.ipv6 }
    }
}

/// Ok if any destination in it is ok, failed if all are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixVerdict {
    pub prefix: IpNet,
    pub state: State,
}

/// Ok if any path to it is ok, failed (dead) if all are.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationVerdict {
    pub address: IpAddr,
    /// Seen in an answer (rather than only configured).
    pub learned: bool,
    pub state: State,
    /// By source and scope id.
    pub paths: Vec<PathVerdict>,
}

/// A destination's verdict from the paths that still speak for it
/// ([`Verdicts::reach`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reach {
    pub state: State,
    /// The lowest RTT of those paths that are ok.
    pub rtt: Option<Duration>,
}

/// One (source, destination) pair.
#[derive(Debug, Clone, PartialEq)]
pub struct PathVerdict {
    pub source: IpAddr,
    pub scope_id: u32,
    pub state: State,
    pub rtt: Option<Duration>,
}

/// The getapr flags of `/status`, derived from the present verdicts on
/// every publish: nothing is latched, a flag goes false when what it reports
/// stops working (or its source disappears).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Flags {
    /// A `gua` source is ok.
    pub gua_ok: bool,
    /// A `ula` source is ok (it reached an Internet target, so something
    /// translates it).
    pub ula_ok: bool,
    /// An `lla` source reached a gateway on its link.
    pub lla_ok: bool,
    /// A routable IPv4 source is ok.
    pub ipv4_ok: bool,
    /// A private (`rfc1918`/`cgnat`) IPv4 source has an ok path to a global
    /// destination, or STUN saw an IPv4 source as another address.
    pub nat44: bool,
    /// There is evidence either way: an IPv4 source got a STUN answer, or a
    /// private IPv4 source completed a round.
    pub nat44_tried: bool,
    /// A `ula` source has an ok path to a global destination (a ULA is not
    /// routed back unless translated, RFC 4193 §4.1), or STUN saw an IPv6
    /// source as another address (RFC 6296 NPTv6, or NAT66).
    pub nptv6: bool,
    /// An IPv6 source got a STUN answer, or a `ula` source completed a round.
    pub nptv6_tried: bool,
    /// An `rfc1918` source exists.
    pub rfc1918: bool,
    /// A `ula` source exists.
    pub ula_present: bool,
    /// The first IPv4 default gateway.
    pub def_gateway4: Option<String>,
    /// The first IPv6 default gateway, `fe80::1%eth0` when link-local.
    pub def_gateway6: Option<String>,
}

/// The names of the getapr flags in the contract (docs/interface.md), in its
/// order.
pub const FLAG_NAMES: [&str; 10] = [
    "GUA_ok",
    "ULA_ok",
    "LLA_ok",
    "IPv4_ok",
    "NAT44",
    "NAT44_tried",
    "NPTv6",
    "NPTv6_tried",
    "RFC1918",
    "ULA_present",
];

impl Flags {
    /// The boolean flags under their [`FLAG_NAMES`].
    pub fn named(&self) -> [(&'static str, bool); 10] {
        let values = [
            self.gua_ok,
            self.ula_ok,
            self.lla_ok,
            self.ipv4_ok,
            self.nat44,
            self.nat44_tried,
            self.nptv6,
            self.nptv6_tried,
            self.rfc1918,
            self.ula_present,
        ];
        std::array::from_fn(|i| (FLAG_NAMES[i], values[i]))
    }
}

impl Verdicts {
    /// The verdict on the source `addr` with `scope_id` (which tells a
    /// link-local address on one interface from the same one on another),
    /// if the engine knows that source.
    pub fn source(&self, addr: IpAddr, scope_id: u32) -> Option<&SourceVerdict> {
        let key = (addr, scope_id);
        let i = self
            .sources
            .binary_search_by(|s| (s.address, s.scope_id).cmp(&key))
            .ok()?;
        self.sources.get(i)
    }

    /// The verdict on `addr` if it was probed.
    pub fn destination(&self, addr: IpAddr) -> Option<&DestinationVerdict> {
        let i = self
            .destinations
            .binary_search_by(|d| d.address.cmp(&addr))
            .ok()?;
        self.destinations.get(i)
    }

    /// A dead destination: a learned one whose [`Verdicts::reach`] is
    /// `Failed`, so an answer need not offer it. A configured target (or
    /// STUN server) that fails is not dead in this sense: it was not taken
    /// from an answer, and its failure speaks for the sources, not for what
    /// DNS returns.
    pub fn is_dead(&self, addr: IpAddr) -> bool {
        self.destination(addr)
            .is_some_and(|d| d.learned && self.reach_of(d).state == State::Failed)
    }

    /// An Internet destination: an IPv4 destination behind a discovered
    /// NAT64 prefix (RFC 6052), or a global address (by the IANA
    /// registries, [`is_global`]) outside every subnet of the host. A LAN
    /// server or a private address keeps working when the uplink dies; an
    /// Internet destination needs a source that reaches the Internet.
    pub fn is_internet(&self, addr: IpAddr) -> bool {
        crate::probe::nat64::behind(&self.nat64_prefixes, addr).is_some()
            || (is_global(addr) && !self.host.addresses.iter().any(|a| a.contains(addr)))
    }

    /// The verdict on `addr` as a destination, from the paths that still
    /// speak for it (the published [`DestinationVerdict::state`] counts
    /// every path); unknown if it was never probed.
    ///
    /// A path's probes tell whether its destination answered *through its
    /// source*. When that source is now judged not to reach the Internet
    /// (its state is `Failed`), what its paths to Internet destinations
    /// said, ok or failed, was learned through something that no longer
    /// works: an ok there would keep an address the host cannot reach, a
    /// failure would blame the destination for the source's fault. Such
    /// paths say nothing until their source works again; the rest decide
    /// as usual. The source's state and the path are in the same snapshot,
    /// so a reader follows a failed source (and so a failed family, which
    /// is failed only when all its sources are) in the very snapshot that
    /// reports it. Paths to other destinations (on-link, private) are
    /// their own evidence: a dead uplink does not stop them.
    pub fn reach(&self, addr: IpAddr) -> Reach {
        self.destination(addr)
            .map_or_else(Reach::default, |d| self.reach_of(d))
    }

    fn reach_of(&self, d: &DestinationVerdict) -> Reach {
        let internet = self.is_internet(d.address);
        let speaks = |p: &&PathVerdict| !internet || !self.source_failed(p.source, p.scope_id);
        let ok_rtt = |paths: &mut dyn Iterator<Item = &PathVerdict>| {
            paths
                .filter(|p| p.state == State::Ok)
                .filter_map(|p| p.rtt)
                .min()
        };
        if d.paths.iter().all(|p| speaks(&p)) {
            return Reach {
                state: d.state,
                rtt: ok_rtt(&mut d.paths.iter()),
            };
        }
        Reach {
            state: State::any_ok(d.paths.iter().filter(speaks).map(|p| p.state)),
            rtt: ok_rtt(&mut d.paths.iter().filter(speaks)),
        }
    }

    /// Whether the source `addr` with `scope_id` is judged not to reach
    /// the Internet. A source without a verdict is not: nothing says so.
    fn source_failed(&self, addr: IpAddr, scope_id: u32) -> bool {
        self.source(addr, scope_id)
            .is_some_and(|s| s.state == State::Failed)
    }

    /// The verdict on the prefix [`prefix_of`] `addr`; unknown if unprobed.
    /// It is the published one ([`Verdicts::prefixes`]) unless a
    /// destination in the prefix has a path [`Verdicts::reach`] leaves
    /// out; then it is taken again from the destinations' reach (ok if one
    /// is ok, failed if all failed), for the same reason.
    pub fn prefix_state(&self, addr: IpAddr) -> State {
        let p = prefix_of(addr);
        let published = match self.prefixes.binary_search_by(|v| v.prefix.cmp(&p)) {
            Ok(i) => self.prefixes[i].state,
            Err(_) => State::Unknown,
        };
        let start = self
            .destinations
            .partition_point(|d| d.address < p.network());
        let within: Vec<&DestinationVerdict> = self.destinations[start..]
            .iter()
            .take_while(|d| p.contains(&d.address))
            // A translated address's /64 is the translator's, shared by
            // every IPv4 destination behind it: not a verdict of the prefix.
            .filter(|d| crate::probe::nat64::behind(&self.nat64_prefixes, d.address).is_none())
            .collect();
        let reaches: Vec<Reach> = within.iter().map(|d| self.reach_of(d)).collect();
        if within.iter().zip(&reaches).all(|(d, r)| r.state == d.state) {
            return published;
        }
        State::any_ok(reaches.iter().map(|r| r.state))
    }

    /// Where `self` and the published `old` differ in an RTT by 20 % or
    /// less, keeps the old value, so that only a real move makes them
    /// unequal (the generation rule).
    pub(super) fn keep_close_rtts(&mut self, old: &Verdicts) {
        fn close(new: &mut Option<Duration>, old: Option<Duration>) {
            if let (Some(n), Some(o)) = (*new, old)
                && n.abs_diff(o) <= o / 5
            {
                *new = Some(o);
            }
        }
        for s in &mut self.sources {
            if let Some(o) = old.source(s.address, s.scope_id) {
                close(&mut s.rtt, o.rtt);
            }
        }
        for d in &mut self.destinations {
            let Some(od) = old.destination(d.address) else {
                continue;
            };
            for p in &mut d.paths {
                if let Some(o) = od.path(p.source, p.scope_id) {
                    close(&mut p.rtt, o.rtt);
                }
            }
        }
    }
}

/// Whether an unmodified application reaches an IPv4 literal
/// (`/status` `ipv4_literals`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Literals {
    /// A native IPv4 source works.
    Native,
    /// IPv4 works only through a CLAT (464XLAT, RFC 6877).
    Clat,
    /// No IPv4 works, but a NAT64 prefix is known and IPv6 works: only
    /// through `/pairs` (the NAT64 address of the literal).
    Nat64Pairs,
    /// Not at all.
    None,
    /// The IPv4 family is not known yet.
    Unknown,
}

impl Ipv4Literals {
    /// The name used in `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Ipv4Literals::Native => "native",
            Ipv4Literals::Clat => "clat",
            Ipv4Literals::Nat64Pairs => "nat64_pairs",
            Ipv4Literals::None => "none",
            Ipv4Literals::Unknown => "unknown",
        }
    }
}

/// RFC 7335: the IPv4 Service Continuity Prefix, 192.0.0.0/29, from which
/// a CLAT (clatd, Android) takes its IPv4 address.
pub const CLAT_PREFIX: Ipv4Net = Ipv4Net::new_assert(std::net::Ipv4Addr::new(192, 0, 0, 0), 29);

fn is_clat(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V4(a) if CLAT_PREFIX.contains(&a))
}

impl Verdicts {
    /// A CLAT is present: an up interface of the host carries an IPv4
    /// address from [`CLAT_PREFIX`].
    pub fn clat(&self) -> bool {
        self.host.addresses.iter().any(|a| is_clat(a.addr))
    }

    /// Whether an unmodified application reaches an IPv4 literal: through
    /// a working native IPv4 source, else through a working CLAT, else
    /// only through `/pairs` (no IPv4 works, a NAT64 prefix is known and
    /// IPv6 works); unknown while the IPv4 family is.
    pub fn ipv4_literals(&self) -> Ipv4Literals {
        let ok4 = |clat: bool| {
            self.sources.iter().any(|s| {
                s.address.is_ipv4()
                    && s.state == State::Ok
                    && !matches!(s.class, Class::Lla | Class::LinkLocal4)
                    && is_clat(s.address) == clat
            })
        };
        if ok4(false) {
            Ipv4Literals::Native
        } else if ok4(true) {
            Ipv4Literals::Clat
        } else if self.families.ipv4 == State::Unknown {
            Ipv4Literals::Unknown
        } else if self.nat64_available() {
            Ipv4Literals::Nat64Pairs
        } else {
            Ipv4Literals::None
        }
    }

    /// No IPv4 works (the family failed), IPv6 works and a NAT64 prefix is
    /// known: IPv4 destinations are reached through NAT64.
    pub fn nat64_available(&self) -> bool {
        self.families.ipv4 == State::Failed
            && self.families.ipv6 == State::Ok
            && !self.nat64_prefixes.is_empty()
    }

    /// The NAT64 prefix to reach IPv4 destinations through: a router's
    /// (PREF64), else a configured one, else one RFC 7050 found (RFC 9872's
    /// order); the first of [`Verdicts::nat64_prefixes`] when the sources
    /// are not known.
    pub fn preferred_nat64(&self) -> Option<Ipv6Net> {
        self.nat64
            .first()
            .map(|p| p.prefix)
            .or_else(|| self.nat64_prefixes.first().copied())
    }

    /// [`Verdicts`] equal to `old` but for the expiry of NAT64 prefixes:
    /// nothing a reader decides on changed (the generation stays).
    pub(crate) fn same_but_expiries(&self, old: &Verdicts) -> bool {
        if self.nat64.len() != old.nat64.len()
            || !(self.nat64.iter().zip(&old.nat64)).all(|(a, b)| a.same_but_expiry(b))
        {
            return false;
        }
        let mut probe = self.clone();
        probe.nat64.clone_from(&old.nat64);
        probe == *old
    }
}

impl DestinationVerdict {
    /// The path from the source `source` with `scope_id`, if it was probed.
    pub fn path(&self, source: IpAddr, scope_id: u32) -> Option<&PathVerdict> {
        let key = (source, scope_id);
        let i = self
            .paths
            .binary_search_by(|p| (p.source, p.scope_id).cmp(&key))
            .ok()?;
        self.paths.get(i)
    }
}

/// The destination prefix verdicts are kept for: /24 for IPv4, /64 for IPv6
/// (the usual subnet sizes, RFC 4291 §2.5.1).
pub fn prefix_of(addr: IpAddr) -> IpNet {
    match addr {
        IpAddr::V4(a) => IpNet::V4(Ipv4Net::new_assert(a, 24).trunc()),
        IpAddr::V6(a) => IpNet::V6(Ipv6Net::new_assert(a, 64).trunc()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{address, destination_verdict, path, source_verdict, verdicts};

    #[test]
    fn any_ok_table() {
        use State::{Failed, Ok, Unknown};
        let cases: [(&[State], State); 7] = [
            (&[], Unknown),
            (&[Failed], Failed),
            (&[Failed, Failed], Failed),
            (&[Failed, Unknown], Unknown),
            (&[Unknown, Failed, Ok], Ok),
            (&[Ok], Ok),
            (&[Unknown], Unknown),
        ];
        for (states, want) in cases {
            assert_eq!(State::any_ok(states.iter().copied()), want, "{states:?}");
        }
        assert_eq!(
            [Unknown, Ok, Failed].map(State::as_str),
            ["unknown", "ok", "failed"]
        );
    }

    #[test]
    fn prefixes_are_24_and_64() {
        assert_eq!(
            prefix_of("192.0.2.77".parse().unwrap()),
            "192.0.2.0/24".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            prefix_of("2001:db8:1:2:3::4".parse().unwrap()),
            "2001:db8:1:2::/64".parse::<IpNet>().unwrap()
        );
    }

    /// One source, 192.0.2.2, and one configured target reached from it,
    /// both at `ms`.
    fn with_rtt(ms: u64) -> Verdicts {
        let target = destination_verdict(
            "192.0.2.1",
            false,
            State::Ok,
            vec![path("192.0.2.2", State::Ok, Some(ms))],
        );
        let source = source_verdict(&address("192.0.2.2"), State::Ok, Some(ms));
        verdicts(vec![source], vec![target])
    }

    #[test]
    fn dead_is_a_learned_destination_that_failed() {
        let d = |addr: &str, learned: bool, state: State| {
            destination_verdict(addr, learned, state, vec![])
        };
        let v = verdicts(
            vec![],
            vec![
                d("192.0.2.1", true, State::Failed),
                d("192.0.2.2", false, State::Failed),
                d("192.0.2.3", true, State::Ok),
                d("192.0.2.4", true, State::Unknown),
                d("2001:db8::1", true, State::Failed),
            ],
        );
        for (addr, dead) in [
            ("192.0.2.1", true),
            // A configured target that fails is no reason to drop an answer.
            ("192.0.2.2", false),
            ("192.0.2.3", false),
            ("192.0.2.4", false),
            ("2001:db8::1", true),
            // Never probed.
            ("192.0.2.5", false),
        ] {
            assert_eq!(v.is_dead(addr.parse().unwrap()), dead, "{addr}");
        }
    }

    #[test]
    fn sources_and_paths_are_found_by_address_and_scope_id() {
        let source = |address: &str, scope_id: u32, interface: &str| SourceVerdict {
            address: address.parse().unwrap(),
            scope_id,
            interface: interface.into(),
            class: Class::Lla,
            state: State::Ok,
            link: State::Ok,
            rtt: None,
            mapped: None,
        };
        let path = |s: &str, scope_id: u32, ms: u64| PathVerdict {
            source: s.parse().unwrap(),
            scope_id,
            state: State::Ok,
            rtt: Some(Duration::from_millis(ms)),
        };
        // The same link-local address on two interfaces, sorted by key.
        let v = Verdicts {
            sources: vec![
                source("192.0.2.2", 0, "eth0"),
                source("fe80::2", 2, "eth0"),
                source("fe80::2", 3, "eth1"),
            ],
            destinations: vec![DestinationVerdict {
                address: "fe80::1".parse().unwrap(),
                learned: false,
                state: State::Ok,
                paths: vec![path("fe80::2", 2, 5), path("fe80::2", 3, 7)],
            }],
            ..Verdicts::default()
        };
        let fe80_2: IpAddr = "fe80::2".parse().unwrap();
        let interface = |scope_id| v.source(fe80_2, scope_id).map(|s| s.interface.as_str());
        assert_eq!(interface(2), Some("eth0"));
        assert_eq!(interface(3), Some("eth1"));
        assert_eq!(interface(0), None);
        assert!(v.source("192.0.2.2".parse().unwrap(), 0).is_some());
        assert!(v.source("192.0.2.9".parse().unwrap(), 0).is_none());
        let d = v.destination("fe80::1".parse().unwrap()).unwrap();
        let rtt = |scope_id| d.path(fe80_2, scope_id).and_then(|p| p.rtt);
        assert_eq!(rtt(2), Some(Duration::from_millis(5)));
        assert_eq!(rtt(3), Some(Duration::from_millis(7)));
        assert_eq!(rtt(4), None);
    }

    /// A host on 2001:db8:1::/64 and 2001:db8:2::/64 (two uplinks) and
    /// 192.168.1.0/24, with the 2001:db8:1::2 source failed and the others
    /// ok, and the NAT64 prefix 64:ff9b::/96.
    fn two_uplinks(destinations: Vec<DestinationVerdict>) -> Verdicts {
        let addrs = ["2001:db8:1::2", "2001:db8:2::2", "192.168.1.2"].map(address);
        let states = [State::Failed, State::Ok, State::Ok];
        let sources = (addrs.iter().zip(states))
            .map(|(a, s)| source_verdict(a, s, Some(5)))
            .collect();
        let mut v = verdicts(sources, destinations);
        v.host = Arc::new(crate::testutil::host(addrs.to_vec()));
        v.nat64_prefixes = vec!["64:ff9b::/96".parse().unwrap()];
        v
    }

    #[test]
    fn internet_destinations_are_global_off_link_or_behind_nat64() {
        let v = two_uplinks(vec![]);
        for (addr, internet) in [
            ("2001:db8:ffff::80", true),
            ("203.0.113.80", true),
            // On a subnet of the host, or private: not the Internet.
            ("2001:db8:1::99", false),
            ("2001:db8:2::99", false),
            ("192.168.1.10", false),
            ("10.0.0.7", false),
            ("fd00::1", false),
            // 192.0.2.33 behind the NAT64 prefix.
            ("64:ff9b::c000:221", true),
        ] {
            assert_eq!(v.is_internet(address(addr).addr), internet, "{addr}");
        }
    }

    #[test]
    fn reach_leaves_out_paths_through_a_failed_source() {
        let d = |addr: &str, paths| destination_verdict(addr, true, State::Ok, paths);
        let v = two_uplinks(vec![
            // Ok only through the failed source.
            d(
                "2001:db8:ffff::80",
                vec![path("2001:db8:1::2", State::Ok, Some(5))],
            ),
            // Ok through both: the working source's RTT.
            d(
                "2001:db8:ffff::81",
                vec![
                    path("2001:db8:1::2", State::Ok, Some(5)),
                    path("2001:db8:2::2", State::Ok, Some(40)),
                ],
            ),
            // Ok through the failed one, failed through the working one.
            d(
                "2001:db8:ffff::82",
                vec![
                    path("2001:db8:1::2", State::Ok, Some(5)),
                    path("2001:db8:2::2", State::Failed, None),
                ],
            ),
            // On-link: its path is its own evidence.
            d(
                "2001:db8:1::99",
                vec![path("2001:db8:1::2", State::Ok, Some(1))],
            ),
            // From a source the snapshot has no verdict on.
            d(
                "2001:db8:ffff::83",
                vec![path("2001:db8:3::2", State::Ok, Some(7))],
            ),
        ]);
        let reach = |addr: &str| v.reach(address(addr).addr);
        let of = |state, ms: Option<u64>| Reach {
            state,
            rtt: ms.map(Duration::from_millis),
        };
        assert_eq!(reach("2001:db8:ffff::80"), of(State::Unknown, None));
        assert_eq!(reach("2001:db8:ffff::81"), of(State::Ok, Some(40)));
        assert_eq!(reach("2001:db8:ffff::82"), of(State::Failed, None));
        assert_eq!(reach("2001:db8:1::99"), of(State::Ok, Some(1)));
        assert_eq!(reach("2001:db8:ffff::83"), of(State::Ok, Some(7)));
        assert_eq!(reach("2001:db8:ffff::99"), Reach::default());
        // Dead is judged on the reach: failed from the working source.
        assert!(v.is_dead(address("2001:db8:ffff::82").addr));
        assert!(!v.is_dead(address("2001:db8:ffff::80").addr));
    }

    #[test]
    fn a_failure_through_a_failed_source_kills_neither_destination_nor_prefix() {
        let failed_through_failed = destination_verdict(
            "2001:db8:ffff::80",
            true,
            State::Failed,
            vec![path("2001:db8:1::2", State::Failed, None)],
        );
        let mut v = two_uplinks(vec![failed_through_failed]);
        v.prefixes = vec![PrefixVerdict {
            prefix: "2001:db8:ffff::/64".parse().unwrap(),
            state: State::Failed,
        }];
        assert!(!v.is_dead(address("2001:db8:ffff::80").addr));
        assert_eq!(
            v.prefix_state(address("2001:db8:ffff::1").addr),
            State::Unknown
        );
        // With the source working again the failure speaks: the published
        // prefix verdict is the one.
        let gua = address("2001:db8:1::2").addr;
        for s in v.sources.iter_mut().filter(|s| s.address == gua) {
            s.state = State::Ok;
        }
        assert!(v.is_dead(address("2001:db8:ffff::80").addr));
        assert_eq!(
            v.prefix_state(address("2001:db8:ffff::1").addr),
            State::Failed
        );
        // A prefix with no destination listed keeps its published verdict.
        v.prefixes.push(PrefixVerdict {
            prefix: "2001:db8:eeee::/64".parse().unwrap(),
            state: State::Ok,
        });
        v.prefixes.sort_by_key(|p| p.prefix);
        assert_eq!(v.prefix_state(address("2001:db8:eeee::1").addr), State::Ok);
    }

    #[test]
    fn rtts_within_20_percent_are_the_same_to_readers() {
        let old = with_rtt(100);
        for (ms, same) in [
            (80, true),
            (100, true),
            (120, true),
            (79, false),
            (121, false),
        ] {
            let mut new = with_rtt(ms);
            new.keep_close_rtts(&old);
            assert_eq!(new == old, same, "{ms} ms");
        }
        // Appearing or vanishing is always a change.
        let mut none = with_rtt(100);
        none.sources[0].rtt = None;
        none.keep_close_rtts(&old);
        assert_ne!(none, old);
    }

    /// A host with these IPv4 addresses (and a working GUA), each source
    /// in the state given, the IPv4 family as the engine would say.
    fn literals(v4: &[(&str, State)], nat64: bool) -> Verdicts {
        let mut addrs: Vec<_> = v4.iter().map(|(a, _)| address(a)).collect();
        addrs.push(address("2001:db8:1::2"));
        let mut sources: Vec<_> = (v4.iter().zip(&addrs))
            .map(|((_, s), a)| source_verdict(a, *s, None))
            .collect();
        sources.push(source_verdict(&address("2001:db8:1::2"), State::Ok, None));
        let mut v = verdicts(sources, vec![]);
        v.families = Families {
            ipv4: State::any_ok(v4.iter().map(|(_, s)| *s)),
            ipv6: State::Ok,
        };
        if v4.is_empty() {
            v.families.ipv4 = State::Failed;
        }
        v.host = Arc::new(Snapshot {
            addresses: addrs,
            ..Snapshot::default()
        });
        if nat64 {
            v.nat64_prefixes = vec!["64:ff9b::/96".parse().unwrap()];
        }
        v
    }

    #[test]
    fn ipv4_literals_native_clat_nat64_pairs_none_unknown() {
        use Ipv4Literals::*;
        let cases = [
            (vec![("192.168.1.2", State::Ok)], true, Native, false),
            (
                vec![("192.168.1.2", State::Ok), ("192.0.0.2", State::Ok)],
                true,
                Native,
                true,
            ),
            (
                vec![("192.168.1.2", State::Failed), ("192.0.0.2", State::Ok)],
                true,
                Clat,
                true,
            ),
            (vec![("192.0.0.4", State::Failed)], true, Nat64Pairs, true),
            (vec![], true, Nat64Pairs, false),
            (vec![], false, None, false),
            (vec![("192.0.0.2", State::Unknown)], true, Unknown, true),
            // 192.0.0.8 (RFC 7600) is outside 192.0.0.0/29: no CLAT.
            (vec![("192.0.0.8", State::Failed)], false, None, false),
        ];
        for (v4, nat64, want, clat) in cases {
            let v = literals(&v4, nat64);
            assert_eq!(v.ipv4_literals(), want, "{v4:?} nat64 {nat64}");
            assert_eq!(v.clat(), clat, "{v4:?}");
        }
        assert_eq!(Verdicts::default().ipv4_literals(), Unknown);
    }
}
