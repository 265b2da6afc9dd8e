//! Judging one address against the verdicts: [`judge`] gives its
//! [`Standing`] (works, likely, unknown, cannot) and, when it cannot work,
//! [`Why`].

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::inventory::is_global;
use crate::metrics::FilterReason;
use crate::probe::nat64;
use crate::probe::verdicts::{State, Verdicts, prefix_of};

/// How likely an address is to work; the order is the order of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Standing {
    Works,
    Likely,
    Unknown,
    Cannot,
}

/// Why an address cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Its family has no working source (IPv4, or IPv6 incl. NAT64).
    NoSource { ipv4: bool },
    /// Every probed destination of its prefix failed.
    DeadPrefix(IpNet),
    /// Probed from every source, reached from none.
    Dead,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::NoSource { ipv4: true } => f.write_str("no working IPv4 source"),
            Why::NoSource { ipv4: false } => f.write_str("no working IPv6 source"),
            Why::DeadPrefix(p) => write!(f, "nothing in {p} answers"),
            Why::Dead => f.write_str("unreachable from every source"),
        }
    }
}

impl From<Why> for FilterReason {
    /// The label of `/metrics`: the kind of reason, without the prefix.
    fn from(why: Why) -> FilterReason {
        match why {
            Why::NoSource { .. } => FilterReason::NoSource,
            Why::DeadPrefix(_) => FilterReason::DeadPrefix,
            Why::Dead => FilterReason::Dead,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judgement {
    pub standing: Standing,
    /// The lowest RTT of an ok path to it, when it works.
    pub rtt: Option<Duration>,
    pub why: Option<Why>,
}

impl Judgement {
    fn of(standing: Standing) -> Judgement {
        Judgement {
            standing,
            rtt: None,
            why: None,
        }
    }

    fn cannot(why: Why) -> Judgement {
        Judgement {
            standing: Standing::Cannot,
            rtt: None,
            why: Some(why),
        }
    }

    /// The sort key within an RRset (ties keep the upstream's order).
    pub(super) fn rank(&self) -> (Standing, bool, Duration) {
        (
            self.standing,
            self.rtt.is_none(),
            self.rtt.unwrap_or_default(),
        )
    }
}

/// What the verdicts say of `addr` as a destination (the table in [the
/// module doc](super)).
pub fn judge(v: &Verdicts, addr: IpAddr) -> Judgement {
    let via_nat64 = nat64::behind(&v.nat64_prefixes, addr).is_some();
    if v.is_dead(addr) {
        return Judgement::cannot(Why::Dead);
    }
    if let Some(d) = v.destination(addr)
        && d.state == State::Ok
    {
        let rtt = (d.paths.iter())
            .filter(|p| p.state == State::Ok)
            .filter_map(|p| p.rtt)
            .min();
        return Judgement {
            standing: Standing::Works,
            rtt,
            why: None,
        };
    }
    // The family first: when it has no working source, its prefixes fail
    // too, but the family is the reason to give.
    if via_nat64 || is_internet(v, addr) {
        let ipv4 = addr.is_ipv4();
        let family = if ipv4 {
            v.families.ipv4
        } else {
            v.families.ipv6
        };
        if family == State::Failed {
            return Judgement::cannot(Why::NoSource { ipv4 });
        }
    }
    let prefix = if via_nat64 {
        State::Unknown
    } else {
        v.prefix_state(addr)
    };
    if prefix == State::Failed {
        return Judgement::cannot(Why::DeadPrefix(prefix_of(addr)));
    }
    Judgement::of(if prefix == State::Ok {
        Standing::Likely
    } else {
        Standing::Unknown
    })
}

/// A global address outside every subnet of the host.
fn is_internet(v: &Verdicts, addr: IpAddr) -> bool {
    is_global(addr)
        && !v
            .host
            .addresses
            .iter()
            .any(|a| crate::policy::in_subnet(a, addr))
}
