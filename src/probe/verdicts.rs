//! The verdicts snapshot: what the probe engine found, as readers see it.
//!
//! Immutable once published ([`crate::probe::engine::Engine::publish`]);
//! readers (DNS rewriting, policy, `/status`) load an `Arc<Verdicts>` without
//! locks and may cache work keyed by its generation.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::inventory::{Class, Snapshot};

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
    /// Per /24 (IPv4) or /64 (IPv6) of the probed Internet destinations.
    pub prefixes: Vec<PrefixVerdict>,
    /// Configured targets, STUN servers and learned destinations with at
    /// least one probe result.
    pub destinations: Vec<DestinationVerdict>,
    pub flags: Flags,
    pub nat64_prefixes: Vec<Ipv6Net>,
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
    pub paths: Vec<PathVerdict>,
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

/// The names of the getapr flags in the contract (docs/interface.md), which are
/// the Python getapr's, in its order.
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
    /// The verdict on `addr` if it was probed.
    pub fn destination(&self, addr: IpAddr) -> Option<&DestinationVerdict> {
        let i = self
            .destinations
            .binary_search_by(|d| d.address.cmp(&addr))
            .ok()?;
        self.destinations.get(i)
    }

    /// The verdict on the prefix [`prefix_of`] `addr`; unknown if unprobed.
    pub fn prefix_state(&self, addr: IpAddr) -> State {
        let p = prefix_of(addr);
        match self.prefixes.binary_search_by(|v| v.prefix.cmp(&p)) {
            Ok(i) => self.prefixes[i].state,
            Err(_) => State::Unknown,
        }
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
            let key = (s.address, s.scope_id);
            if let Ok(i) = old
                .sources
                .binary_search_by(|o| (o.address, o.scope_id).cmp(&key))
            {
                close(&mut s.rtt, old.sources[i].rtt);
            }
        }
        for d in &mut self.destinations {
            let Some(od) = old.destination(d.address) else {
                continue;
            };
            for p in &mut d.paths {
                let key = (p.source, p.scope_id);
                if let Ok(i) = od
                    .paths
                    .binary_search_by(|o| (o.source, o.scope_id).cmp(&key))
                {
                    close(&mut p.rtt, od.paths[i].rtt);
                }
            }
        }
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

    fn with_rtt(ms: u64) -> Verdicts {
        let address: IpAddr = "192.0.2.2".parse().unwrap();
        let rtt = Some(Duration::from_millis(ms));
        Verdicts {
            sources: vec![SourceVerdict {
                address,
                scope_id: 0,
                interface: "eth0".into(),
                class: Class::Global4,
                state: State::Ok,
                link: State::Unknown,
                rtt,
                mapped: None,
            }],
            destinations: vec![DestinationVerdict {
                address: "192.0.2.1".parse().unwrap(),
                learned: false,
                state: State::Ok,
                paths: vec![PathVerdict {
                    source: address,
                    scope_id: 0,
                    state: State::Ok,
                    rtt,
                }],
            }],
            ..Verdicts::default()
        }
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
}
