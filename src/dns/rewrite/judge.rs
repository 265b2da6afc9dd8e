//! Judging one address against the verdicts: [`judge`] gives its
//! [`Standing`] (works, likely, unknown, cannot) and, when it cannot work,
//! [`Why`].

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::metrics::FilterReason;
use crate::probe::nat64;
use crate::probe::verdicts::{Mtu, State, Verdicts, prefix_of};

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
    /// Its family's path drops full-size packets: connects succeed but
    /// transfers stall.
    Blackhole { ipv4: bool },
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::NoSource { ipv4: true } => f.write_str("no working IPv4 source"),
            Why::NoSource { ipv4: false } => f.write_str("no working IPv6 source"),
            Why::DeadPrefix(p) => write!(f, "nothing in {p} answers"),
            Why::Dead => f.write_str("unreachable from every source"),
            Why::Blackhole { ipv4: true } => f.write_str("IPv4 path MTU blackhole"),
            Why::Blackhole { ipv4: false } => f.write_str("IPv6 path MTU blackhole"),
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
            Why::Blackhole { .. } => FilterReason::PathMtu,
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
///
/// Everything comes from the one snapshot `v`: the family, then the
/// destination's own paths as far as they still speak for it
/// ([`Verdicts::reach`]: not through a source now judged failed), then its
/// prefix. So an answer follows a source or family verdict in the same
/// generation that `/status` shows it, without waiting for the
/// destination's own re-probe.
pub fn judge(v: &Verdicts, addr: IpAddr) -> Judgement {
    // The family first: when it has no working source, no path to an
    // Internet destination speaks for it and its prefixes fail too, but
    // the family is the reason to give.
    if v.is_internet(addr) {
        let ipv4 = addr.is_ipv4();
        let family = if ipv4 {
            v.families.ipv4
        } else {
            v.families.ipv6
        };
        if family == State::Failed {
            return Judgement::cannot(Why::NoSource { ipv4 });
        }
        // Connects work, transfers stall: no path of the family works for
        // an application, whatever the destination's own probes said.
        if v.path_mtu.of(addr) == Mtu::Blackhole {
            return Judgement::cannot(Why::Blackhole { ipv4 });
        }
    }
    if v.is_dead(addr) {
        return Judgement::cannot(Why::Dead);
    }
    let reach = v.reach(addr);
    if reach.state == State::Ok {
        return Judgement {
            standing: Standing::Works,
            rtt: reach.rtt,
            why: None,
        };
    }
    // An address inside a NAT64 prefix is judged by the IPv6 family only:
    // its /64 is the translator's.
    let prefix = if nat64::behind(&v.nat64_prefixes, addr).is_some() {
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
