//! The pairs `/pairs` lists: RFC 6724 selection with getapr's verdicts
//! applied, then the families interleaved as RFC 8305 §4 asks.

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::destination::{Ranked, compare_destinations, faster_family, sort_ranked};
use super::source::{Route, select_source};
use super::table::{PolicyTable, Table};
use crate::inventory::{Address, Class, Snapshot};
use crate::probe::nat64;
use crate::probe::verdicts::{Mtu, State, Verdicts};

/// What [`pairs`] is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub table: Table,
    /// RFC 8305 §4 "First Address Family Count": how many addresses of the
    /// first family come before the other family gets a turn. 0 counts as 1.
    pub first_family_count: usize,
    /// A pair whose RTT exceeds that of a pair of the other family by more
    /// than this goes after it, ahead of RFC 6724's precedence rule.
    pub rtt_margin: Duration,
}

/// The default of `policy.rtt_margin_ms` (docs/interface.md says why this
/// value).
pub const DEFAULT_RTT_MARGIN: Duration = Duration::from_millis(25);

impl Default for Options {
    fn default() -> Self {
        Options {
            table: Table::Rfc6724,
            first_family_count: 1,
            rtt_margin: DEFAULT_RTT_MARGIN,
        }
    }
}

/// One pair to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub source: Address,
    pub destination: IpAddr,
    /// The measured RTT of this path, else of the source; `None` if neither
    /// was measured.
    pub rtt: Option<Duration>,
    /// The IPv4 destination this pair reaches through NAT64, when the
    /// destination is its NAT64 address (see [`nat64_destinations`]).
    pub nat64: Option<Ipv4Addr>,
}

/// The faster-family rule decided which family leads `/pairs`: RFC 6724
/// alone would have put the other family's best pair first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttLead {
    /// The family that leads now.
    pub ipv4: bool,
    /// The RTT of its best pair.
    pub rtt: Duration,
    /// The RTT of the other family's best pair, which RFC 6724 preferred.
    pub other_rtt: Duration,
}

/// The pairs to try for `destinations`, best first (see the
/// `policy` module doc).
pub fn pairs(
    destinations: &[IpAddr],
    host: &Snapshot,
    verdicts: &Verdicts,
    options: &Options,
) -> Vec<Pair> {
    ranked_pairs(destinations, host, verdicts, options).0
}

/// [`pairs`], and whether the faster-family rule chose the leading family
/// (for the sidecar's log line and metric).
pub fn ranked_pairs(
    destinations: &[IpAddr],
    host: &Snapshot,
    verdicts: &Verdicts,
    options: &Options,
) -> (Vec<Pair>, Option<RttLead>) {
    let policy = PolicyTable::new(options.table, host);
    // getapr: a failed source is never part of a pair.
    let usable: Vec<Address> = host
        .addresses
        .iter()
        .filter(|a| source_state(verdicts, a) != State::Failed)
        .cloned()
        .collect();
    let loopback = [
        loopback(Ipv4Addr::LOCALHOST.into()),
        loopback(Ipv6Addr::LOCALHOST.into()),
    ];
    let (destinations, behind) = nat64_destinations(destinations, host, verdicts);
    let ranked: Vec<Ranked<'_>> = destinations
        .iter()
        .filter(|d| !verdicts.is_dead(**d))
        .filter_map(|&d| {
            // The inventory leaves `lo` out (it reaches nothing else), but
            // a loopback destination is reached from loopback only, as the
            // kernel's own route (`local ... dev lo src 127.0.0.1`) does.
            let source = match d.to_canonical() {
                IpAddr::V4(v4) if v4.is_loopback() => &loopback[0],
                IpAddr::V6(v6) if v6.is_loopback() => &loopback[1],
                _ => select_source(d, &Route::to(d, host), &usable, &policy)?,
            };
            Some(Ranked::new(
                d,
                Some(source),
                rtt(verdicts, source, d),
                &policy,
            ))
        })
        .collect();
    // getapr: pairs through a path-MTU blackhole connect but stall, so
    // they go after every other pair, not interleaved with them.
    let (stalling, working): (Vec<Ranked<'_>>, Vec<Ranked<'_>>) = ranked
        .into_iter()
        .partition(|r| blackholed(verdicts, r.destination));
    let sorted = sort_ranked(working, options.rtt_margin);
    let lead = rtt_lead(&sorted, options.rtt_margin);
    let to_pairs = |sorted: Vec<Ranked<'_>>| -> Vec<Pair> {
        let pairs = sorted
            .into_iter()
            .filter_map(|r| {
                Some(Pair {
                    source: r.source?.clone(),
                    destination: r.destination,
                    rtt: r.rtt,
                    nat64: (behind.iter())
                        .find(|(v6, _)| IpAddr::V6(*v6) == r.destination)
                        .map(|(_, v4)| *v4),
                })
            })
            .collect();
        interleave(pairs, options.first_family_count, |p| {
            p.destination.to_canonical().is_ipv4()
        })
    };
    let mut pairs = to_pairs(sorted);
    pairs.extend(to_pairs(sort_ranked(stalling, options.rtt_margin)));
    (pairs, lead)
}

/// getapr: on a network where IPv4 reaches nothing but NAT64 does
/// ([`Verdicts::nat64_available`]: the IPv4 family failed, IPv6 works, a
/// NAT64 prefix is known), each IPv4 destination outside the host's own
/// subnets becomes its NAT64 address (RFC 6052) under the preferred prefix
/// ([`Verdicts::preferred_nat64`]: a router's, else the config's, else
/// RFC 7050's), so it pairs with a working IPv6 source. Never loopback,
/// link-local, multicast or broadcast, and never a non-global IPv4 under
/// the Well-Known Prefix (RFC 6052 §3.1, [`nat64::may_embed`]). The same
/// NAT64 address given by DNS too (a DNS64 answer for the same name) is
/// listed once. Returns the destinations and which of them are NAT64
/// addresses of which IPv4 destination.
pub fn nat64_destinations(
    destinations: &[IpAddr],
    host: &Snapshot,
    verdicts: &Verdicts,
) -> (Vec<IpAddr>, Vec<(Ipv6Addr, Ipv4Addr)>) {
    let prefix = verdicts
        .preferred_nat64()
        .filter(|_| verdicts.nat64_available());
    let Some(prefix) = prefix else {
        return (destinations.to_vec(), Vec::new());
    };
    let translate = |v4: Ipv4Addr| {
        let local = v4.is_loopback()
            || v4.is_link_local()
            || v4.is_multicast()
            || v4.is_broadcast()
            || v4.is_unspecified()
            || host.addresses.iter().any(|a| a.contains(IpAddr::V4(v4)));
        if local || !nat64::may_embed(prefix, v4) {
            return None;
        }
        nat64::embed(prefix, v4)
    };
    let mut out: Vec<IpAddr> = Vec::with_capacity(destinations.len());
    let mut behind = Vec::new();
    for &d in destinations {
        let d = match d.to_canonical() {
            IpAddr::V4(v4) => match translate(v4) {
                Some(v6) => {
                    if !behind.iter().any(|(a, _)| *a == v6) {
                        behind.push((v6, v4));
                    }
                    IpAddr::V6(v6)
                }
                None => d,
            },
            IpAddr::V6(_) => d,
        };
        if !out.contains(&d) {
            out.push(d);
        }
    }
    (out, behind)
}

/// The source for a loopback destination of `addr`'s family.
fn loopback(addr: IpAddr) -> Address {
    Address {
        addr,
        prefix_len: if addr.is_ipv4() { 8 } else { 128 },
        interface: "lo".to_owned(),
        ifindex: 0,
        scope_id: 0,
        class: Class::Other,
        deprecated: false,
        temporary: false,
    }
}

/// An Internet destination of a family whose path drops full-size packets.
fn blackholed(verdicts: &Verdicts, d: IpAddr) -> bool {
    verdicts.is_internet(d) && verdicts.path_mtu.of(d.to_canonical()) == Mtu::Blackhole
}

/// Whether the faster-family rule put the first pair ahead of the other
/// family's best one where RFC 6724 (the same comparison without that rule:
/// an infinite margin) would have put it after.
fn rtt_lead(sorted: &[Ranked<'_>], margin: Duration) -> Option<RttLead> {
    let first = sorted.first()?;
    let other = sorted.iter().find(|r| r.ipv6 != first.ipv6)?;
    let decided = faster_family(first, other, margin) == Ordering::Less
        && compare_destinations(first, other, Duration::MAX) == Ordering::Greater;
    if !decided {
        return None;
    }
    Some(RttLead {
        ipv4: !first.ipv6,
        rtt: first.rtt?,
        other_rtt: other.rtt?,
    })
}

/// RFC 8305 §4: the family of the first item goes first, `first_count` of
/// it (at least 1), then the families alternate; when one runs out, the rest
/// of the other follows. The order within a family is kept.
pub fn interleave<T>(items: Vec<T>, first_count: usize, is_ipv4: impl Fn(&T) -> bool) -> Vec<T> {
    let Some(first_v4) = items.first().map(&is_ipv4) else {
        return items;
    };
    let total = items.len();
    let (first, other): (Vec<T>, Vec<T>) = items.into_iter().partition(|i| is_ipv4(i) == first_v4);
    let mut first = first.into_iter();
    let mut other = other.into_iter();
    let mut out = Vec::with_capacity(total);
    out.extend(first.by_ref().take(first_count.max(1)));
    loop {
        let (o, f) = (other.next(), first.next());
        if o.is_none() && f.is_none() {
            break;
        }
        out.extend(o);
        out.extend(f);
    }
    out
}

/// The verdict on a source; unknown if it has none.
fn source_state(verdicts: &Verdicts, source: &Address) -> State {
    verdicts
        .source(source.addr, source.scope_id)
        .map_or(State::Unknown, |v| v.state)
}

/// The RTT of the path from `source` to `dst`, else of `source`.
fn rtt(verdicts: &Verdicts, source: &Address, dst: IpAddr) -> Option<Duration> {
    let path = verdicts
        .destination(dst)
        .and_then(|d| d.path(source.addr, source.scope_id))
        .and_then(|p| p.rtt);
    path.or_else(|| {
        verdicts
            .source(source.addr, source.scope_id)
            .and_then(|v| v.rtt)
    })
}
