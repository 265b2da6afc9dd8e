//! Which (source, destination) pairs to try, best first: RFC 6724 default
//! address selection over the host's real addresses, with getapr's verdicts
//! applied, then interleaved by family as RFC 8305 §4 asks.
//!
//! Pure: no I/O, no clock. The caller hands in the destinations (from DNS),
//! the inventory [`Snapshot`] and the published [`Verdicts`].
//!
//! # What [`pairs`] does
//!
//! 1. Drops every destination whose verdict is dead (a learned destination
//!    whose state is `Failed`), and leaves every `failed` source out of the
//!    candidate sets, so a pair never has a failed source (the next best
//!    source is chosen instead, which is what a multihomed host needs when
//!    one uplink dies). `Unknown` never removes anything.
//! 2. Picks a source for each destination with the rules of RFC 6724 §5
//!    ([`select_source`]); a destination with no candidate source is dropped
//!    (§6 rule 1 would sort it last; `/pairs` only lists what can be tried).
//! 3. Orders the pairs with RFC 6724 §6 rules 1–10, plus RFC 8305 §4's RTT
//!    rule between rules 8 and 9: when both pairs have a measured RTT (per
//!    path to that destination, else per source), the lower one wins.
//! 4. Interleaves the families ([`interleave`]).
//!
//! # Choices
//!
//! - **Rule 9 (longest matching prefix) applies to IPv6 pairs only**, as in
//!   Go's `net/addrselect.go`. RFC 6724 §6 applies it to any two
//!   destinations of one family, but for IPv4 the common prefix with a
//!   private source says nothing about distance (Go issue 13283: a 10/8
//!   source made every 23/8 destination "closer"), and it would undo DNS
//!   round-robin among A records. glibc limits it to IPv4 destinations inside
//!   the source's subnet; musl applies it to IPv4 too.
//! - **CommonPrefixLen** (§2.2) stops at the end of the source's prefix: at
//!   64 bits for IPv6 (the interface identifier is the other 64, RFC 4291
//!   §2.5.1; a DHCPv6 /128 would otherwise count its interface id) and at
//!   the source's prefix length for IPv4.
//! - **Rule 4 (home addresses)** never applies: getapr has no Mobile IPv6.
//! - **Rule 5 and 5.5** need the route to the destination, which the
//!   inventory only knows roughly ([`Route::to`]): a destination inside a
//!   source's subnet leaves by that interface; anything else by the first
//!   default gateway of its family. A source counts as "assigned by the next
//!   hop" (rule 5.5) when it is on the gateway's interface and the gateway is
//!   inside its subnet; with a link-local IPv6 gateway that is never known,
//!   so the rule ties.
//! - **Candidate sets** (§4): same family as the destination (an IPv4-mapped
//!   destination counts as IPv4); a link-local source (fe80::/10,
//!   169.254/16) only for a destination of link-local scope; for such a
//!   destination, only sources on its interface when the interface is known.
//! - **Sorting** uses a stable merge sort of our own, not `slice::sort_by`:
//!   the RTT rule and rule 9 compare only some pairs, so the order is not
//!   total, and the standard sorts may panic on such a comparator.

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use ipnet::Ipv6Net;

use crate::inventory::{Address, Class, Gateway, Snapshot};
use crate::probe::verdicts::{State, Verdicts};

/// Which policy table (RFC 6724 §2.1) to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Table {
    /// The default policy table of RFC 6724 §2.1.
    #[default]
    Rfc6724,
    /// draft-ietf-6man-rfc6724-update: ULA above IPv4 (precedence 30),
    /// IPv4 at 20, 6to4 at 5, and the host's own ULA /48s ("known-local")
    /// at precedence 45 with label 14.
    Update,
}

/// What [`pairs`] is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub table: Table,
    /// RFC 8305 §4 "First Address Family Count": how many addresses of the
    /// first family come before the other family gets a turn. 0 counts as 1.
    pub first_family_count: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            table: Table::Rfc6724,
            first_family_count: 1,
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
}

/// The pairs to try for `destinations`, best first (see the module doc).
pub fn pairs(
    destinations: &[IpAddr],
    host: &Snapshot,
    verdicts: &Verdicts,
    options: &Options,
) -> Vec<Pair> {
    let policy = Policy::new(options.table, host);
    // getapr: a failed source is never part of a pair.
    let usable: Vec<Address> = host
        .addresses
        .iter()
        .filter(|a| source_state(verdicts, a) != State::Failed)
        .cloned()
        .collect();
    let ranked: Vec<Ranked<'_>> = destinations
        .iter()
        .filter(|d| !is_dead(verdicts, **d))
        .filter_map(|&d| {
            let route = Route::to(d, host);
            let source = select_source(d, &route, &usable, &policy)?;
            Some(Ranked::new(
                d,
                Some(source),
                rtt(verdicts, source, d),
                &policy,
            ))
        })
        .collect();
    let sorted = sort_ranked(ranked);
    let pairs = sorted
        .into_iter()
        .filter_map(|r| {
            Some(Pair {
                source: r.source?.clone(),
                destination: r.destination,
                rtt: r.rtt,
            })
        })
        .collect();
    interleave(pairs, options.first_family_count, |p| {
        p.destination.to_canonical().is_ipv4()
    })
}

/// RFC 6724 §6: `destinations` in the order to try them, each with the
/// source §5 picks for it (`None` when it has none: those sort last, by rule
/// 1). No verdicts and no RTTs: this is RFC 6724 alone.
pub fn sort_destinations<'a>(
    destinations: &[IpAddr],
    host: &'a Snapshot,
    policy: &Policy,
) -> Vec<(IpAddr, Option<&'a Address>)> {
    let ranked = destinations
        .iter()
        .map(|&d| {
            let route = Route::to(d, host);
            let source = select_source(d, &route, &host.addresses, policy);
            Ranked::new(d, source, None, policy)
        })
        .collect();
    sort_ranked(ranked)
        .into_iter()
        .map(|r| (r.destination, r.source))
        .collect()
}

/// What is known about how a packet to the destination would leave the
/// host: RFC 6724 rules 5 and 5.5, and the zone of a link-local
/// destination (§4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Route {
    /// The outgoing interface (index), if known.
    pub ifindex: Option<u32>,
    /// The next hop (gateway), if the destination is not on-link.
    pub next_hop: Option<IpAddr>,
}

impl Route {
    /// The route as far as the inventory tells: on-link when a source's
    /// subnet holds `dst` (longest prefix wins), else via the first default
    /// gateway of the family. A link-local destination from DNS has no zone,
    /// so its interface stays unknown.
    pub fn to(dst: IpAddr, host: &Snapshot) -> Route {
        let dst = dst.to_canonical();
        if scope(dst) <= SCOPE_LINK {
            return Route::default();
        }
        let on_link = host
            .addresses
            .iter()
            .filter(|a| a.prefix_len > 0 && in_subnet(a, dst))
            .max_by_key(|a| a.prefix_len);
        if let Some(a) = on_link {
            return Route {
                ifindex: Some(a.ifindex),
                next_hop: None,
            };
        }
        let gateways: &[Gateway] = if dst.is_ipv4() {
            &host.gateways4
        } else {
            &host.gateways6
        };
        gateways.first().map_or(Route::default(), |g| Route {
            ifindex: Some(g.ifindex),
            next_hop: Some(g.addr),
        })
    }
}

/// RFC 6724 §5: the best source for `dst` among `candidates`, or `None` when
/// §4 admits none. Ties keep the earlier candidate (§5 leaves the tiebreak
/// to the implementation).
pub fn select_source<'a>(
    dst: IpAddr,
    route: &Route,
    candidates: &'a [Address],
    policy: &Policy,
) -> Option<&'a Address> {
    let dst = dst.to_canonical();
    let mut best: Option<&'a Address> = None;
    for sa in candidates.iter().filter(|a| is_candidate(a, dst, route)) {
        best = match best {
            Some(sb) if compare_sources(sa, sb, dst, route, policy) != Ordering::Less => Some(sb),
            _ => Some(sa),
        };
    }
    best
}

/// RFC 6724 §4: the candidate set for `dst`.
fn is_candidate(source: &Address, dst: IpAddr, route: &Route) -> bool {
    let (src, dst) = (source.addr.to_canonical(), dst.to_canonical());
    if src.is_ipv4() != dst.is_ipv4() {
        return false;
    }
    let link_scoped_dst = scope(dst) <= SCOPE_LINK;
    // A link-local source can only talk to its own link.
    if scope(src) <= SCOPE_LINK && !link_scoped_dst {
        return false;
    }
    // §4: for a link-local destination, only sources on its link.
    if link_scoped_dst && route.ifindex.is_some_and(|i| i != source.ifindex) {
        return false;
    }
    true
}

/// `Less` when `sa` is the better source for `dst`.
fn compare_sources(
    sa: &Address,
    sb: &Address,
    dst: IpAddr,
    route: &Route,
    policy: &Policy,
) -> Ordering {
    same_address(sa, sb, dst)
        .then_with(|| appropriate_scope(sa, sb, dst))
        .then_with(|| avoid_deprecated_source(sa, sb))
        // RFC 6724 §5 rule 4: prefer home addresses. getapr has no Mobile
        // IPv6, so no address is a home address and the rule never decides.
        .then_with(|| outgoing_interface(sa, sb, route))
        .then_with(|| next_hop(sa, sb, route))
        .then_with(|| matching_label_source(sa, sb, dst, policy))
        .then_with(|| temporary(sa, sb))
        .then_with(|| longest_prefix_source(sa, sb, dst))
}

/// `Less` when `a` holds and `b` does not: "prefer the one that has it".
fn prefer(a: bool, b: bool) -> Ordering {
    b.cmp(&a)
}

// RFC 6724 §5 rule 1: prefer same address.
fn same_address(sa: &Address, sb: &Address, dst: IpAddr) -> Ordering {
    prefer(sa.addr.to_canonical() == dst, sb.addr.to_canonical() == dst)
}

// RFC 6724 §5 rule 2: prefer appropriate scope. The smaller scope wins if it
// still reaches the destination's scope; otherwise the larger one.
fn appropriate_scope(sa: &Address, sb: &Address, dst: IpAddr) -> Ordering {
    let (a, b, d) = (scope(sa.addr), scope(sb.addr), scope(dst));
    match a.cmp(&b) {
        Ordering::Less if a < d => Ordering::Greater,
        Ordering::Less => Ordering::Less,
        Ordering::Greater if b < d => Ordering::Less,
        Ordering::Greater => Ordering::Greater,
        Ordering::Equal => Ordering::Equal,
    }
}

// RFC 6724 §5 rule 3: avoid deprecated addresses.
fn avoid_deprecated_source(sa: &Address, sb: &Address) -> Ordering {
    prefer(!sa.deprecated, !sb.deprecated)
}

// RFC 6724 §5 rule 5: prefer the outgoing interface.
fn outgoing_interface(sa: &Address, sb: &Address, route: &Route) -> Ordering {
    match route.ifindex {
        Some(i) => prefer(sa.ifindex == i, sb.ifindex == i),
        None => Ordering::Equal,
    }
}

// RFC 6724 §5 rule 5.5 (RFC 8028): prefer an address in a prefix advertised
// by the next hop. Known only when the gateway is inside the source's
// subnet on the gateway's interface (see the module doc).
fn next_hop(sa: &Address, sb: &Address, route: &Route) -> Ordering {
    let (Some(gw), Some(i)) = (route.next_hop, route.ifindex) else {
        return Ordering::Equal;
    };
    let from_hop = |s: &Address| s.ifindex == i && in_subnet(s, gw.to_canonical());
    prefer(from_hop(sa), from_hop(sb))
}

// RFC 6724 §5 rule 6: prefer matching label.
fn matching_label_source(sa: &Address, sb: &Address, dst: IpAddr, policy: &Policy) -> Ordering {
    let d = policy.label(dst);
    prefer(policy.label(sa.addr) == d, policy.label(sb.addr) == d)
}

// RFC 6724 §5 rule 7: prefer temporary addresses (RFC 8981 privacy).
fn temporary(sa: &Address, sb: &Address) -> Ordering {
    prefer(sa.temporary, sb.temporary)
}

// RFC 6724 §5 rule 8: use longest matching prefix.
fn longest_prefix_source(sa: &Address, sb: &Address, dst: IpAddr) -> Ordering {
    common_prefix_len(sb, dst).cmp(&common_prefix_len(sa, dst))
}

/// A destination with its chosen source and everything §6 compares,
/// computed once.
#[derive(Debug, Clone)]
struct Ranked<'a> {
    destination: IpAddr,
    source: Option<&'a Address>,
    rtt: Option<Duration>,
    ipv6: bool,
    scope: u8,
    label: u8,
    precedence: u8,
    encapsulated: bool,
    /// Scope, label, deprecation and common prefix length of the source.
    source_scope: u8,
    source_label: u8,
    source_deprecated: bool,
    common_prefix: u32,
}

impl<'a> Ranked<'a> {
    fn new(
        destination: IpAddr,
        source: Option<&'a Address>,
        rtt: Option<Duration>,
        policy: &Policy,
    ) -> Self {
        let d = destination.to_canonical();
        let (precedence, label) = policy.classify(d);
        Ranked {
            destination,
            source,
            rtt,
            ipv6: d.is_ipv6(),
            scope: scope(d),
            label,
            precedence,
            encapsulated: is_encapsulated(d),
            source_scope: source.map_or(0, |s| scope(s.addr)),
            source_label: source.map_or(0, |s| policy.label(s.addr)),
            source_deprecated: source.is_some_and(|s| s.deprecated),
            common_prefix: source.map_or(0, |s| common_prefix_len(s, d)),
        }
    }
}

/// `Less` when `da` should be tried before `db`.
fn compare_destinations(da: &Ranked<'_>, db: &Ranked<'_>) -> Ordering {
    let by_rule_1 = usable(da, db);
    if by_rule_1 != Ordering::Equal || da.source.is_none() {
        // Rules 2–9 need a source on both sides.
        return by_rule_1;
    }
    matching_scope(da, db)
        .then_with(|| avoid_deprecated(da, db))
        // RFC 6724 §6 rule 4: prefer home addresses. Never decides here
        // (no Mobile IPv6).
        .then_with(|| matching_label(da, db))
        .then_with(|| higher_precedence(da, db))
        .then_with(|| native_transport(da, db))
        .then_with(|| smaller_scope(da, db))
        .then_with(|| lower_rtt(da, db))
        .then_with(|| longest_prefix(da, db))
    // RFC 6724 §6 rule 10: otherwise, leave the order unchanged (the sort
    // is stable).
}

// RFC 6724 §6 rule 1: avoid unusable destinations (here: no source).
fn usable(da: &Ranked<'_>, db: &Ranked<'_>) -> Ordering {
    prefer(da.source.is_some(), db.source.is_some())
}

// RFC 6724 §6 rule 2: prefer matching scope.
fn matching_scope(da: &Ranked<'_>, db: &Ranked<'_>) -> Ordering {
    prefer(da.scope == da.source_scope, db.scope == db.source_scope)
}

// RFC 6724 §6 rule 3: avoid deprecated addresses (as the source).
fn avoid_deprecated(da: &Ranked<'_>, db: &Ranked<'_>) -> Ordering {
    prefer(!da.source_deprecated, !db.source_deprecated)
}

// RFC 6724 §6 rule 5: prefer matching label.
fn matching_label(da: &Ranked<'_>, db: &Ranked<'_>) -> Ordering {
    prefer(da.label == da.source_label, db.label == db.source_label)
}

// RFC 6724 §6 rule 6: prefer higher precedence.
fn higher_precedence(da: &Ranked<'_>, db: &Ranked<'_>) -> Ordering {
    db.precedence.cmp(&da.precedence)
}

// RFC 6724 §6 rule 7: prefer native transport (6to4 and Teredo encapsulate).
fn native_transport(da: &Ranked<'_>, db: &Ranked<'_>) -> Ordering {
    prefer(!da.encapsulated, !db.encapsulated)
}

// RFC 6724 §6 rule 8: prefer smaller scope.
fn smaller_scope(da: &Ranked<'_>, db: &Ranked<'_>) -> Ordering {
    da.scope.cmp(&db.scope)
}

// getapr, between rules 8 and 9 (RFC 8305 §4): prefer the lower measured
// RTT, when both are measured.
fn lower_rtt(da: &Ranked<'_>, db: &Ranked<'_>) -> Ordering {
    match (da.rtt, db.rtt) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => Ordering::Equal,
    }
}

// RFC 6724 §6 rule 9: use longest matching prefix. IPv6 only (module doc).
fn longest_prefix(da: &Ranked<'_>, db: &Ranked<'_>) -> Ordering {
    if da.ipv6 && db.ipv6 {
        db.common_prefix.cmp(&da.common_prefix)
    } else {
        Ordering::Equal
    }
}

/// Stable merge sort by [`compare_destinations`]. It never panics on a
/// comparator that is not a total order (ours is not: see the module doc),
/// and keeps equal elements in their original order (rule 10).
fn sort_ranked(v: Vec<Ranked<'_>>) -> Vec<Ranked<'_>> {
    if v.len() <= 1 {
        return v;
    }
    let mut left = v;
    let right = left.split_off(left.len() / 2);
    let (left, right) = (sort_ranked(left), sort_ranked(right));
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_right = match (left.peek(), right.peek()) {
            (Some(l), Some(r)) => compare_destinations(r, l) == Ordering::Less,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (None, None) => break,
        };
        let next = if take_right {
            right.next()
        } else {
            left.next()
        };
        out.extend(next);
    }
    out
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

/// The policy table in use (RFC 6724 §2.1), with the host's known-local ULA
/// /48s for [`Table::Update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    table: Table,
    local_ulas: Vec<Ipv6Net>,
}

/// One row: prefix, prefix length, precedence, label.
type Row = (u128, u8, u8, u8);

/// RFC 6724 §2.1.
const RFC6724: [Row; 9] = [
    (0x0000_0000_0000_0000_0000_0000_0000_0001, 128, 50, 0), // ::1/128
    (0, 0, 40, 1),                                           // ::/0
    (0x0000_0000_0000_0000_0000_ffff_0000_0000, 96, 35, 4),  // ::ffff:0:0/96
    (0x2002 << 112, 16, 30, 2),                              // 2002::/16
    (0x2001 << 112, 32, 5, 5),                               // 2001::/32
    (0xfc00 << 112, 7, 3, 13),                               // fc00::/7
    (0, 96, 1, 3),                                           // ::/96
    (0xfec0 << 112, 10, 1, 11),                              // fec0::/10
    (0x3ffe << 112, 16, 1, 12),                              // 3ffe::/16
];

/// draft-ietf-6man-rfc6724-update: the same rows, IPv4 at 20, 6to4 at 5,
/// ULA at 30 (known-local ULA /48s are added by [`Policy`]).
const UPDATE: [Row; 9] = [
    (0x0000_0000_0000_0000_0000_0000_0000_0001, 128, 50, 0),
    (0, 0, 40, 1),
    (0x0000_0000_0000_0000_0000_ffff_0000_0000, 96, 20, 4),
    (0x2002 << 112, 16, 5, 2),
    (0x2001 << 112, 32, 5, 5),
    (0xfc00 << 112, 7, 30, 13),
    (0, 96, 1, 3),
    (0xfec0 << 112, 10, 1, 11),
    (0x3ffe << 112, 16, 1, 12),
];

/// draft-ietf-6man-rfc6724-update: precedence and label of known-local ULAs.
const KNOWN_LOCAL_ULA: (u8, u8) = (45, 14);

impl Policy {
    /// The table, plus (for [`Table::Update`]) the /48s of the host's ULAs.
    pub fn new(table: Table, host: &Snapshot) -> Policy {
        let mut local_ulas: Vec<Ipv6Net> = match table {
            Table::Rfc6724 => Vec::new(),
            Table::Update => host
                .addresses
                .iter()
                .filter(|a| a.class == Class::Ula)
                .filter_map(|a| match a.addr {
                    IpAddr::V6(v6) => Some(Ipv6Net::new_assert(v6, 48).trunc()),
                    IpAddr::V4(_) => None,
                })
                .collect(),
        };
        local_ulas.sort();
        local_ulas.dedup();
        Policy { table, local_ulas }
    }

    /// (precedence, label) of `addr`; IPv4 as IPv4-mapped (§3.1).
    pub fn classify(&self, addr: IpAddr) -> (u8, u8) {
        let v6 = as_v6(addr);
        if self.local_ulas.iter().any(|n| n.contains(&v6)) {
            return KNOWN_LOCAL_ULA;
        }
        let rows: &[Row] = match self.table {
            Table::Rfc6724 => &RFC6724,
            Table::Update => &UPDATE,
        };
        let x = u128::from(v6);
        rows.iter()
            .filter(|(prefix, len, _, _)| prefix_matches(x, *prefix, *len))
            .max_by_key(|(_, len, _, _)| *len)
            .map_or((40, 1), |&(_, _, precedence, label)| (precedence, label))
    }

    pub fn precedence(&self, addr: IpAddr) -> u8 {
        self.classify(addr).0
    }

    pub fn label(&self, addr: IpAddr) -> u8 {
        self.classify(addr).1
    }
}

fn prefix_matches(x: u128, prefix: u128, len: u8) -> bool {
    len == 0 || (x ^ prefix) >> (128 - u32::from(len.min(128))) == 0
}

/// IPv4 as IPv4-mapped IPv6 (RFC 6724 §3.1).
fn as_v6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

const SCOPE_LINK: u8 = 0x2;
const SCOPE_SITE: u8 = 0x5;
const SCOPE_GLOBAL: u8 = 0xe;

/// RFC 6724 §3.1 (and RFC 4007, RFC 4291 §2.7): the scope of an address.
/// IPv4 loopback and 169.254/16 are link-local, every other IPv4 address
/// (private ones too, §3.2) global.
pub fn scope(addr: IpAddr) -> u8 {
    match addr.to_canonical() {
        IpAddr::V4(v4) if v4.is_loopback() || v4.is_link_local() => SCOPE_LINK,
        IpAddr::V4(_) => SCOPE_GLOBAL,
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_multicast() {
                (first & 0x000f) as u8
            } else if v6.is_loopback() || first & 0xffc0 == 0xfe80 {
                SCOPE_LINK
            } else if first & 0xffc0 == 0xfec0 {
                SCOPE_SITE
            } else {
                SCOPE_GLOBAL
            }
        }
    }
}

/// RFC 6724 §6 rule 7: reached through an encapsulating transition
/// mechanism (6to4 2002::/16, Teredo 2001::/32).
fn is_encapsulated(addr: IpAddr) -> bool {
    let x = u128::from(as_v6(addr));
    prefix_matches(x, 0x2002 << 112, 16) || prefix_matches(x, 0x2001 << 112, 32)
}

/// RFC 6724 §2.2 CommonPrefixLen(S, D), up to the end of S's prefix: 64
/// bits for IPv6, S's prefix length for IPv4; 0 across families.
fn common_prefix_len(source: &Address, dst: IpAddr) -> u32 {
    match (source.addr.to_canonical(), dst.to_canonical()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let cap = u32::from(source.prefix_len).min(32);
            (u32::from(s) ^ u32::from(d)).leading_zeros().min(cap)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => (u128::from(s) ^ u128::from(d)).leading_zeros().min(64),
        _ => 0,
    }
}

/// `addr` lies in the subnet of `source` (its address and prefix length).
pub(crate) fn in_subnet(source: &Address, addr: IpAddr) -> bool {
    let len = source.prefix_len;
    match (source.addr.to_canonical(), addr) {
        (IpAddr::V4(s), IpAddr::V4(a)) => {
            len <= 32 && (len == 0 || (u32::from(s) ^ u32::from(a)) >> (32 - u32::from(len)) == 0)
        }
        (IpAddr::V6(s), IpAddr::V6(a)) => {
            len <= 128 && prefix_matches(u128::from(a), u128::from(s), len)
        }
        _ => false,
    }
}

/// The verdict on a source; unknown if it has none.
fn source_state(verdicts: &Verdicts, source: &Address) -> State {
    source_verdict(verdicts, source).map_or(State::Unknown, |v| v.state)
}

fn source_verdict<'v>(
    verdicts: &'v Verdicts,
    source: &Address,
) -> Option<&'v crate::probe::verdicts::SourceVerdict> {
    let key = (source.addr, source.scope_id);
    verdicts
        .sources
        .binary_search_by(|v| (v.address, v.scope_id).cmp(&key))
        .ok()
        .and_then(|i| verdicts.sources.get(i))
}

/// getapr: a dead destination is a learned one whose verdict is `Failed`.
fn is_dead(verdicts: &Verdicts, dst: IpAddr) -> bool {
    verdicts
        .destination(dst)
        .is_some_and(|d| d.learned && d.state == State::Failed)
}

/// The RTT of the path from `source` to `dst`, else of `source`.
fn rtt(verdicts: &Verdicts, source: &Address, dst: IpAddr) -> Option<Duration> {
    let path = verdicts.destination(dst).and_then(|d| {
        d.paths
            .iter()
            .find(|p| p.source == source.addr && p.scope_id == source.scope_id)
            .and_then(|p| p.rtt)
    });
    path.or_else(|| source_verdict(verdicts, source).and_then(|v| v.rtt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::classify;
    use crate::probe::verdicts::{DestinationVerdict, PathVerdict, SourceVerdict};
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A source on eth0 (ifindex 1): /64 for IPv6, /24 for IPv4.
    fn src(s: &str) -> Address {
        let addr = ip(s);
        Address {
            addr,
            prefix_len: if addr.is_ipv4() { 24 } else { 64 },
            interface: "eth0".into(),
            ifindex: 1,
            scope_id: if scope(addr) == SCOPE_LINK && addr.is_ipv6() {
                1
            } else {
                0
            },
            class: classify(addr),
            deprecated: false,
            temporary: false,
        }
    }

    fn deprecated(s: &str) -> Address {
        Address {
            deprecated: true,
            ..src(s)
        }
    }

    fn temporary(s: &str) -> Address {
        Address {
            temporary: true,
            ..src(s)
        }
    }

    fn on(ifindex: u32, s: &str) -> Address {
        Address {
            ifindex,
            interface: format!("eth{ifindex}"),
            ..src(s)
        }
    }

    fn host(addresses: Vec<Address>) -> Snapshot {
        Snapshot {
            addresses,
            ..Snapshot::default()
        }
    }

    fn rfc6724() -> Policy {
        Policy::new(Table::Rfc6724, &Snapshot::default())
    }

    /// `select_source` with no route knowledge, candidates in both orders.
    fn select(dst: &str, candidates: &[Address]) -> Option<IpAddr> {
        let forward =
            select_source(ip(dst), &Route::default(), candidates, &rfc6724()).map(|a| a.addr);
        let reversed: Vec<Address> = candidates.iter().rev().cloned().collect();
        let backward =
            select_source(ip(dst), &Route::default(), &reversed, &rfc6724()).map(|a| a.addr);
        assert_eq!(forward, backward, "{dst}: the order of candidates decided");
        forward
    }

    /// `sort_destinations` as (destination, source) strings; checks that the
    /// reversed input gives the same answer when `both_ways`.
    fn order(dsts: &[&str], sources: Vec<Address>, both_ways: bool) -> Vec<(String, String)> {
        let h = host(sources);
        let run = |dsts: Vec<IpAddr>| -> Vec<(String, String)> {
            sort_destinations(&dsts, &h, &rfc6724())
                .into_iter()
                .map(|(d, s)| (d.to_string(), s.map_or("-".into(), |s| s.addr.to_string())))
                .collect()
        };
        let forward = run(dsts.iter().map(|d| ip(d)).collect());
        if both_ways {
            let backward = run(dsts.iter().rev().map(|d| ip(d)).collect());
            assert_eq!(forward, backward, "{dsts:?}: the input order decided");
        }
        forward
    }

    fn expect(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(d, s)| (d.to_string(), s.to_string()))
            .collect()
    }

    // ---- policy table and scope ------------------------------------------

    #[test]
    fn rfc6724_policy_table() {
        let p = rfc6724();
        let cases = [
            ("::1", (50, 0)),
            ("2001:db8::1", (40, 1)),
            ("::ffff:192.0.2.1", (35, 4)),
            ("192.0.2.1", (35, 4)),
            ("127.0.0.1", (35, 4)),
            ("2002:c633:6401::1", (30, 2)),
            ("2001:0:4136:e378::1", (5, 5)),
            ("2001:1::1", (40, 1)), // outside 2001::/32
            ("fd00:1::1", (3, 13)),
            ("fc00::1", (3, 13)),
            ("::192.0.2.1", (1, 3)),
            ("fec0::1", (1, 11)),
            ("3ffe::1", (1, 12)),
            ("fe80::1", (40, 1)),
            ("ff02::1", (40, 1)),
        ];
        for (a, want) in cases {
            assert_eq!(p.classify(ip(a)), want, "{a}");
        }
    }

    #[test]
    fn update_policy_table_and_known_local_ulas() {
        let h = host(vec![src("fd12:3456:789a:1::2"), src("2001:db8:1::2")]);
        let p = Policy::new(Table::Update, &h);
        let cases = [
            ("::1", (50, 0)),
            ("2001:db8::1", (40, 1)),
            ("192.0.2.1", (20, 4)),
            ("2002:c633:6401::1", (5, 2)),
            ("2001:0:4136:e378::1", (5, 5)),
            ("fd00:1::1", (30, 13)),
            // The /48 of the host's own ULA is known-local.
            ("fd12:3456:789a:ffff::1", (45, 14)),
            ("fd12:3456:789b::1", (30, 13)),
            ("fec0::1", (1, 11)),
        ];
        for (a, want) in cases {
            assert_eq!(p.classify(ip(a)), want, "{a}");
        }
        // The RFC 6724 table knows nothing of local ULAs.
        let old = Policy::new(Table::Rfc6724, &h);
        assert_eq!(old.classify(ip("fd12:3456:789a:ffff::1")), (3, 13));
    }

    #[test]
    fn update_table_puts_ula_before_ipv4() {
        let sources = vec![src("fd12:3456:789a:1::2"), src("192.0.2.2")];
        let h = host(sources);
        let dsts = [ip("192.0.2.1"), ip("fd00:9::1"), ip("fd12:3456:789a:2::1")];
        let got = |table| -> Vec<IpAddr> {
            sort_destinations(&dsts, &h, &Policy::new(table, &h))
                .into_iter()
                .map(|(d, _)| d)
                .collect()
        };
        // RFC 6724: IPv4 35 > ULA 3. Update: known-local 45 > ULA 30 > IPv4 20.
        // (fd00:9::1 has no matching label with the known-local source: rule 5.)
        assert_eq!(got(Table::Rfc6724)[0], ip("192.0.2.1"));
        assert_eq!(got(Table::Update)[0], ip("fd12:3456:789a:2::1"));
    }

    #[test]
    fn scopes() {
        let cases = [
            ("127.0.0.1", SCOPE_LINK),
            ("169.254.1.2", SCOPE_LINK),
            ("10.1.2.3", SCOPE_GLOBAL),
            ("8.8.8.8", SCOPE_GLOBAL),
            ("224.0.0.1", SCOPE_GLOBAL),
            ("::ffff:169.254.1.2", SCOPE_LINK),
            ("::1", SCOPE_LINK),
            ("fe80::1", SCOPE_LINK),
            ("febf::1", SCOPE_LINK),
            ("fec0::1", SCOPE_SITE),
            ("fd00::1", SCOPE_GLOBAL),
            ("2001:db8::1", SCOPE_GLOBAL),
            ("ff01::1", 0x1),
            ("ff02::1", SCOPE_LINK),
            ("ff04::1", 0x4),
            ("ff05::1", SCOPE_SITE),
            ("ff08::1", 0x8),
            ("ff0e::1", SCOPE_GLOBAL),
        ];
        for (a, want) in cases {
            assert_eq!(scope(ip(a)), want, "{a}");
        }
    }

    #[test]
    fn common_prefix_lengths() {
        let cases = [
            ("fe80::1", "fe80::2", 64),
            ("fe81::1", "fe80::2", 15),
            ("2001:db8:1::2", "2001:db8:1::1", 64), // capped at the /64
            ("2001:db8:3f44::2", "2001:db8:3ffe::1", 40),
            ("192.0.2.2", "192.0.2.1", 24), // capped at the /24
            ("10.2.3.4", "10.255.0.1", 8),
            ("10.2.3.4", "23.1.1.1", 3),
            ("192.0.2.2", "2001:db8::1", 0),
        ];
        for (s, d, want) in cases {
            assert_eq!(common_prefix_len(&src(s), ip(d)), want, "{s} {d}");
        }
    }

    // ---- RFC 6724 §10.1: source selection examples -------------------------

    #[test]
    fn rfc6724_10_1_source_examples() {
        let cases: [(&str, Vec<Address>, &str, &str); 7] = [
            (
                "2001:db8:1::1",
                vec![src("2001:db8:3::1"), src("fe80::1")],
                "2001:db8:3::1",
                "prefer appropriate scope",
            ),
            (
                "ff05::1",
                vec![src("2001:db8:3::1"), src("fe80::1")],
                "2001:db8:3::1",
                "prefer appropriate scope",
            ),
            (
                "2001:db8:1::1",
                vec![deprecated("2001:db8:1::1"), src("2001:db8:2::1")],
                "2001:db8:1::1",
                "prefer same address",
            ),
            (
                "fe80::1",
                vec![deprecated("fe80::2"), src("2001:db8:1::1")],
                "fe80::2",
                "prefer appropriate scope",
            ),
            (
                "2001:db8:1::1",
                vec![src("2001:db8:1::2"), src("2001:db8:3::2")],
                "2001:db8:1::2",
                "longest matching prefix",
            ),
            (
                "2002:c633:6401::1",
                vec![
                    temporary("2002:c633:6401::d5e3:7953:13eb:22e8"),
                    src("2001:db8:1::2"),
                ],
                "2002:c633:6401::d5e3:7953:13eb:22e8",
                "prefer matching label",
            ),
            (
                "2001:db8:1::d5e3:0:0:1",
                vec![
                    src("2001:db8:1::2"),
                    temporary("2001:db8:1::d5e3:7953:13eb:22e8"),
                ],
                "2001:db8:1::d5e3:7953:13eb:22e8",
                "prefer temporary address",
            ),
        ];
        for (dst, candidates, want, rule) in cases {
            assert_eq!(select(dst, &candidates), Some(ip(want)), "{dst}: {rule}");
        }
    }

    /// §10.1's sixth example (care-of 2001:db8:1::2 or home 2001:db8:3::2 for
    /// 2001:db8:1::1) gives the home address by rule 4. getapr knows no home
    /// addresses, so rule 8 decides: the documented departure.
    #[test]
    fn rfc6724_10_1_home_address_example_falls_to_rule_8() {
        let candidates = [src("2001:db8:1::2"), src("2001:db8:3::2")];
        assert_eq!(
            select("2001:db8:1::1", &candidates),
            Some(ip("2001:db8:1::2"))
        );
    }

    // ---- RFC 6724 §10.2: destination selection examples --------------------

    #[test]
    fn rfc6724_10_2_prefer_matching_scope_first() {
        // RFC: 2001:db8:1::1 (src 2001:db8:1::2) then 198.51.100.121 (src
        // 169.254.13.78). Here a link-local source is no candidate for a
        // global destination (§4 as getapr applies it), so the IPv4
        // destination has no source and is last by rule 1: the same order.
        let got = order(
            &["2001:db8:1::1", "198.51.100.121"],
            vec![src("2001:db8:1::2"), src("fe80::1"), src("169.254.13.78")],
            true,
        );
        assert_eq!(
            got,
            expect(&[("2001:db8:1::1", "2001:db8:1::2"), ("198.51.100.121", "-")])
        );
    }

    #[test]
    fn rfc6724_10_2_prefer_matching_scope_second() {
        // RFC: 198.51.100.121 (src 198.51.100.117) then 2001:db8:1::1 (src
        // fe80::1); the same order, the IPv6 one without a source (see above).
        let got = order(
            &["2001:db8:1::1", "198.51.100.121"],
            vec![src("fe80::1"), src("198.51.100.117")],
            true,
        );
        assert_eq!(
            got,
            expect(&[("198.51.100.121", "198.51.100.117"), ("2001:db8:1::1", "-")])
        );
    }

    #[test]
    fn rfc6724_10_2_prefer_higher_precedence() {
        let got = order(
            &["2001:db8:1::1", "10.1.2.3"],
            vec![src("2001:db8:1::2"), src("fe80::1"), src("10.1.2.4")],
            true,
        );
        assert_eq!(
            got,
            expect(&[("2001:db8:1::1", "2001:db8:1::2"), ("10.1.2.3", "10.1.2.4")])
        );
    }

    #[test]
    fn rfc6724_10_2_prefer_smaller_scope() {
        let got = order(
            &["2001:db8:1::1", "fe80::1"],
            vec![src("2001:db8:1::2"), src("fe80::2")],
            true,
        );
        assert_eq!(
            got,
            expect(&[("fe80::1", "fe80::2"), ("2001:db8:1::1", "2001:db8:1::2")])
        );
    }

    /// §10.2's fifth example puts 2001:db8:1::1 (src home 2001:db8:3::1)
    /// before fe80::1 by rule 4. Without home addresses rule 8 decides.
    #[test]
    fn rfc6724_10_2_home_address_example_falls_to_rule_8() {
        let got = order(
            &["2001:db8:1::1", "fe80::1"],
            vec![src("2001:db8:1::2"), src("2001:db8:3::1"), src("fe80::2")],
            true,
        );
        assert_eq!(
            got,
            expect(&[("fe80::1", "fe80::2"), ("2001:db8:1::1", "2001:db8:1::2")])
        );
    }

    #[test]
    fn rfc6724_10_2_avoid_deprecated_addresses() {
        let got = order(
            &["2001:db8:1::1", "fe80::1"],
            vec![src("2001:db8:1::2"), deprecated("fe80::2")],
            true,
        );
        assert_eq!(
            got,
            expect(&[("2001:db8:1::1", "2001:db8:1::2"), ("fe80::1", "fe80::2")])
        );
    }

    #[test]
    fn rfc6724_10_2_longest_matching_prefix() {
        let got = order(
            &["2001:db8:1::1", "2001:db8:3ffe::1"],
            vec![
                src("2001:db8:1::2"),
                src("2001:db8:3f44::2"),
                src("fe80::2"),
            ],
            true,
        );
        assert_eq!(
            got,
            expect(&[
                ("2001:db8:1::1", "2001:db8:1::2"),
                ("2001:db8:3ffe::1", "2001:db8:3f44::2")
            ])
        );
    }

    #[test]
    fn rfc6724_10_2_prefer_matching_label() {
        let got = order(
            &["2002:c633:6401::1", "2001:db8:1::1"],
            vec![src("2002:c633:6401::2"), src("fe80::2")],
            true,
        );
        assert_eq!(
            got,
            expect(&[
                ("2002:c633:6401::1", "2002:c633:6401::2"),
                ("2001:db8:1::1", "2002:c633:6401::2")
            ])
        );
    }

    #[test]
    fn rfc6724_10_2_prefer_higher_precedence_6to4() {
        let got = order(
            &["2002:c633:6401::1", "2001:db8:1::1"],
            vec![
                src("2002:c633:6401::2"),
                src("2001:db8:1::2"),
                src("fe80::2"),
            ],
            true,
        );
        assert_eq!(
            got,
            expect(&[
                ("2001:db8:1::1", "2001:db8:1::2"),
                ("2002:c633:6401::1", "2002:c633:6401::2")
            ])
        );
    }

    // ---- §5 rules, one table each -------------------------------------------

    #[test]
    fn source_candidates_follow_section_4() {
        let all = [
            src("192.0.2.2"),
            src("169.254.1.2"),
            src("2001:db8:1::2"),
            on(2, "fe80::2"),
        ];
        let route = Route::default();
        let cands = |dst: &str, route: &Route| -> Vec<IpAddr> {
            all.iter()
                .filter(|a| is_candidate(a, ip(dst), route))
                .map(|a| a.addr)
                .collect()
        };
        assert_eq!(cands("198.51.100.1", &route), [ip("192.0.2.2")]);
        assert_eq!(cands("::ffff:198.51.100.1", &route), [ip("192.0.2.2")]);
        assert_eq!(
            cands("169.254.9.9", &route),
            [ip("192.0.2.2"), ip("169.254.1.2")]
        );
        assert_eq!(cands("2001:db8:9::1", &route), [ip("2001:db8:1::2")]);
        assert_eq!(
            cands("fe80::9", &route),
            [ip("2001:db8:1::2"), ip("fe80::2")]
        );
        // A link-local destination on a known interface: only its sources.
        let on2 = Route {
            ifindex: Some(2),
            next_hop: None,
        };
        assert_eq!(cands("fe80::9", &on2), [ip("fe80::2")]);
        let on1 = Route {
            ifindex: Some(1),
            next_hop: None,
        };
        assert_eq!(cands("fe80::9", &on1), [ip("2001:db8:1::2")]);
    }

    #[test]
    fn source_rule_3_avoid_deprecated() {
        let candidates = [deprecated("2001:db8:1::2"), src("2001:db8:1::3")];
        assert_eq!(
            select("2001:db8:1::1", &candidates),
            Some(ip("2001:db8:1::3"))
        );
    }

    #[test]
    fn source_rule_5_prefer_outgoing_interface() {
        // Rule 8 alone would pick 2001:db8:1::2 (a longer match).
        let candidates = [on(1, "2001:db8:1::2"), on(2, "2001:db8:2::2")];
        let route = Route {
            ifindex: Some(2),
            next_hop: None,
        };
        let got = select_source(ip("2001:db8:1:9::1"), &route, &candidates, &rfc6724());
        assert_eq!(got.map(|a| a.addr), Some(ip("2001:db8:2::2")));
    }

    #[test]
    fn source_rule_5_5_prefer_the_next_hops_prefix() {
        // Same interface; rule 8 alone would pick 10.0.0.5 (8.8.8.8 shares
        // 6 bits with 10/8 and none with 192/8).
        let h = Snapshot {
            addresses: vec![src("10.0.0.5"), src("192.168.1.5")],
            gateways4: vec![Gateway {
                addr: ip("192.168.1.1"),
                interface: "eth0".into(),
                ifindex: 1,
                scope_id: 0,
            }],
            gateways6: vec![],
        };
        let route = Route::to(ip("8.8.8.8"), &h);
        assert_eq!(
            route,
            Route {
                ifindex: Some(1),
                next_hop: Some(ip("192.168.1.1"))
            }
        );
        let got = select_source(ip("8.8.8.8"), &route, &h.addresses, &rfc6724());
        assert_eq!(got.map(|a| a.addr), Some(ip("192.168.1.5")));
        let without = select_source(ip("8.8.8.8"), &Route::default(), &h.addresses, &rfc6724());
        assert_eq!(without.map(|a| a.addr), Some(ip("10.0.0.5")));
    }

    #[test]
    fn source_rule_7_prefer_temporary_before_rule_8() {
        // Rule 7 over rule 8: the temporary one shares less with the destination.
        let candidates = [src("2001:db8:1::2"), temporary("2001:db8:1::8000:0:0:2")];
        assert_eq!(
            select("2001:db8:1::3", &candidates),
            Some(ip("2001:db8:1::8000:0:0:2"))
        );
    }

    #[test]
    fn route_to_on_link_and_via_gateway() {
        let h = Snapshot {
            addresses: vec![on(1, "192.0.2.2"), on(2, "2001:db8:1::2")],
            gateways4: vec![],
            gateways6: vec![Gateway {
                addr: ip("fe80::1"),
                interface: "eth3".into(),
                ifindex: 3,
                scope_id: 3,
            }],
        };
        assert_eq!(Route::to(ip("192.0.2.77"), &h).ifindex, Some(1));
        assert_eq!(Route::to(ip("198.51.100.1"), &h), Route::default());
        assert_eq!(Route::to(ip("2001:db8:1::9"), &h).ifindex, Some(2));
        assert_eq!(
            Route::to(ip("2001:db8:9::9"), &h),
            Route {
                ifindex: Some(3),
                next_hop: Some(ip("fe80::1"))
            }
        );
        assert_eq!(Route::to(ip("fe80::9"), &h), Route::default());
    }

    // ---- §6 rules, one table each -------------------------------------------

    #[test]
    fn destination_rule_1_unusable_last() {
        // 198.51.100.1 has no IPv4 source at all.
        let got = order(
            &["198.51.100.1", "2001:db8:1::1"],
            vec![src("2001:db8:1::2")],
            true,
        );
        assert_eq!(
            got,
            expect(&[("2001:db8:1::1", "2001:db8:1::2"), ("198.51.100.1", "-")])
        );
    }

    #[test]
    fn destination_rule_3_avoid_deprecated_source() {
        // Rule 6 alone would put IPv6 (40) before IPv4 (35).
        let got = order(
            &["2001:db8:1::1", "192.0.2.1"],
            vec![deprecated("2001:db8:1::2"), src("192.0.2.2")],
            true,
        );
        assert_eq!(
            got,
            expect(&[
                ("192.0.2.1", "192.0.2.2"),
                ("2001:db8:1::1", "2001:db8:1::2")
            ])
        );
    }

    #[test]
    fn destination_rules_on_hand_built_pairs() {
        // Rules that default tables cannot isolate, checked on the rule
        // functions: (rule, function, a better than b).
        let p = rfc6724();
        let s6 = src("2001:db8:1::2");
        let base = Ranked::new(ip("2001:db8:1::1"), Some(&s6), None, &p);
        let with = |f: &dyn Fn(&mut Ranked<'_>)| {
            let mut r = base.clone();
            f(&mut r);
            r
        };
        type Rule = fn(&Ranked<'_>, &Ranked<'_>) -> Ordering;
        let cases: [(&str, Rule, Ranked<'_>, Ranked<'_>); 7] = [
            (
                "2 matching scope",
                matching_scope,
                base.clone(),
                with(&|r| r.source_scope = SCOPE_LINK),
            ),
            (
                "3 deprecated",
                avoid_deprecated,
                base.clone(),
                with(&|r| r.source_deprecated = true),
            ),
            (
                "5 label",
                matching_label,
                base.clone(),
                with(&|r| r.source_label = 2),
            ),
            (
                "6 precedence",
                higher_precedence,
                base.clone(),
                with(&|r| r.precedence = 30),
            ),
            (
                "7 native",
                native_transport,
                base.clone(),
                with(&|r| r.encapsulated = true),
            ),
            (
                "8 smaller scope",
                smaller_scope,
                // Both scopes match their sources, so rule 2 ties.
                with(&|r| {
                    r.scope = SCOPE_SITE;
                    r.source_scope = SCOPE_SITE;
                }),
                base.clone(),
            ),
            (
                "9 longest prefix",
                longest_prefix,
                base.clone(),
                with(&|r| r.common_prefix = 40),
            ),
        ];
        for (rule, f, better, worse) in cases {
            assert_eq!(f(&better, &worse), Ordering::Less, "rule {rule}");
            assert_eq!(f(&worse, &better), Ordering::Greater, "rule {rule}");
            assert_eq!(f(&better, &better), Ordering::Equal, "rule {rule}");
            assert_eq!(
                compare_destinations(&better, &worse),
                Ordering::Less,
                "rule {rule}"
            );
        }
        assert!(is_encapsulated(ip("2002:c633:6401::1")));
        assert!(is_encapsulated(ip("2001:0:4136:e378::1")));
        assert!(!is_encapsulated(ip("2001:db8::1")));
        assert!(!is_encapsulated(ip("192.0.2.1")));
    }

    #[test]
    fn destination_rule_9_is_ipv6_only() {
        // Go issue 13283: a 10/8 source does not make 10.x or 23.x closer.
        let dsts = ["54.83.193.112", "23.23.172.185", "10.9.9.9", "10.1.2.200"];
        let got = order(&dsts, vec![src("10.1.2.4")], false);
        let got: Vec<&str> = got.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(got, dsts);
    }

    #[test]
    fn destination_rule_10_keeps_the_order() {
        let dsts = ["192.0.2.9", "192.0.2.1", "198.51.100.1", "192.0.2.9"];
        let got = order(&dsts, vec![src("192.0.2.2")], false);
        let got: Vec<&str> = got.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(got, dsts);
    }

    // ---- getapr's verdict rules ---------------------------------------------

    fn source_verdict(a: &Address, state: State, rtt_ms: Option<u64>) -> SourceVerdict {
        SourceVerdict {
            address: a.addr,
            scope_id: a.scope_id,
            interface: a.interface.clone(),
            class: a.class,
            state,
            link: State::Unknown,
            rtt: rtt_ms.map(Duration::from_millis),
            mapped: None,
        }
    }

    fn destination_verdict(
        d: &str,
        learned: bool,
        state: State,
        paths: &[(&str, u64)],
    ) -> DestinationVerdict {
        DestinationVerdict {
            address: ip(d),
            learned,
            state,
            paths: paths
                .iter()
                .map(|(s, ms)| PathVerdict {
                    source: ip(s),
                    scope_id: 0,
                    state: State::Ok,
                    rtt: Some(Duration::from_millis(*ms)),
                })
                .collect(),
        }
    }

    fn verdicts(
        mut sources: Vec<SourceVerdict>,
        mut destinations: Vec<DestinationVerdict>,
    ) -> Verdicts {
        sources.sort_by_key(|a| (a.address, a.scope_id));
        destinations.sort_by_key(|a| a.address);
        Verdicts {
            sources,
            destinations,
            ..Verdicts::default()
        }
    }

    fn pair_strings(got: &[Pair]) -> Vec<(String, String)> {
        got.iter()
            .map(|p| (p.destination.to_string(), p.source.addr.to_string()))
            .collect()
    }

    const DUAL: [&str; 4] = [
        "2001:db8:9::1",
        "2001:db8:9::2",
        "198.51.100.1",
        "198.51.100.2",
    ];

    fn dual_host() -> Snapshot {
        host(vec![src("2001:db8:1::2"), src("192.0.2.2"), src("fe80::2")])
    }

    fn dsts(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|d| ip(d)).collect()
    }

    #[test]
    fn unknown_keeps_everything() {
        let got = pairs(
            &dsts(&DUAL),
            &dual_host(),
            &Verdicts::default(),
            &Options::default(),
        );
        assert_eq!(
            pair_strings(&got),
            expect(&[
                ("2001:db8:9::1", "2001:db8:1::2"),
                ("198.51.100.1", "192.0.2.2"),
                ("2001:db8:9::2", "2001:db8:1::2"),
                ("198.51.100.2", "192.0.2.2"),
            ])
        );
        // Explicitly unknown verdicts are the same as none.
        let h = dual_host();
        let unknown = verdicts(
            h.addresses
                .iter()
                .map(|a| source_verdict(a, State::Unknown, None))
                .collect(),
            DUAL.iter()
                .map(|d| destination_verdict(d, true, State::Unknown, &[]))
                .collect(),
        );
        assert_eq!(pairs(&dsts(&DUAL), &h, &unknown, &Options::default()), got);
    }

    #[test]
    fn failed_source_is_dropped() {
        let h = dual_host();
        let v = verdicts(
            vec![source_verdict(&h.addresses[0], State::Failed, None)],
            vec![],
        );
        let got = pairs(&dsts(&DUAL), &h, &v, &Options::default());
        assert_eq!(
            pair_strings(&got),
            expect(&[("198.51.100.1", "192.0.2.2"), ("198.51.100.2", "192.0.2.2")])
        );
    }

    #[test]
    fn failed_source_gives_way_to_another_source() {
        let h = host(vec![on(1, "2001:db8:1::2"), on(2, "2001:db8:2::2")]);
        let v = verdicts(
            vec![source_verdict(&h.addresses[0], State::Failed, None)],
            vec![],
        );
        let got = pairs(&dsts(&["2001:db8:1::1"]), &h, &v, &Options::default());
        assert_eq!(
            pair_strings(&got),
            expect(&[("2001:db8:1::1", "2001:db8:2::2")])
        );
    }

    #[test]
    fn dead_destination_is_dropped() {
        let h = dual_host();
        let v = verdicts(
            vec![],
            vec![
                destination_verdict("2001:db8:9::1", true, State::Failed, &[]),
                // Not learned (a configured target): not "dead" for answers.
                destination_verdict("198.51.100.1", false, State::Failed, &[]),
            ],
        );
        let got = pairs(&dsts(&DUAL), &h, &v, &Options::default());
        assert_eq!(
            pair_strings(&got),
            expect(&[
                ("2001:db8:9::2", "2001:db8:1::2"),
                ("198.51.100.1", "192.0.2.2"),
                ("198.51.100.2", "192.0.2.2"),
            ])
        );
    }

    #[test]
    fn rtt_decides_between_rules_8_and_9() {
        // Rule 9 prefers 2001:db8:1::1 (64 bits in common with the source).
        let h = host(vec![src("2001:db8:1::2")]);
        let list = dsts(&["2001:db8:1::1", "2001:db8:9::1"]);
        let plain = pairs(&list, &h, &Verdicts::default(), &Options::default());
        assert_eq!(plain[0].destination, ip("2001:db8:1::1"));
        // Both measured: the lower RTT wins over rule 9.
        let v = verdicts(
            vec![],
            vec![
                destination_verdict("2001:db8:1::1", true, State::Ok, &[("2001:db8:1::2", 80)]),
                destination_verdict("2001:db8:9::1", true, State::Ok, &[("2001:db8:1::2", 20)]),
            ],
        );
        let got = pairs(&list, &h, &v, &Options::default());
        assert_eq!(got[0].destination, ip("2001:db8:9::1"));
        assert_eq!(got[0].rtt, Some(Duration::from_millis(20)));
        // Only one measured: rule 9 again.
        let one = verdicts(
            vec![],
            vec![destination_verdict(
                "2001:db8:9::1",
                true,
                State::Ok,
                &[("2001:db8:1::2", 20)],
            )],
        );
        let got = pairs(&list, &h, &one, &Options::default());
        assert_eq!(got[0].destination, ip("2001:db8:1::1"));
    }

    #[test]
    fn rtt_orders_ipv4_and_never_beats_earlier_rules() {
        let h = dual_host();
        let v = verdicts(
            vec![
                source_verdict(&h.addresses[0], State::Ok, Some(90)),
                source_verdict(&h.addresses[1], State::Ok, Some(10)),
            ],
            vec![
                destination_verdict("198.51.100.1", true, State::Ok, &[("192.0.2.2", 50)]),
                destination_verdict("198.51.100.2", true, State::Ok, &[("192.0.2.2", 30)]),
            ],
        );
        let got = pairs(&dsts(&DUAL), &h, &v, &Options::default());
        // IPv6 stays first (rule 6 before the RTT rule) although slower;
        // among the A records the faster path comes first.
        assert_eq!(
            pair_strings(&got),
            expect(&[
                ("2001:db8:9::1", "2001:db8:1::2"),
                ("198.51.100.2", "192.0.2.2"),
                ("2001:db8:9::2", "2001:db8:1::2"),
                ("198.51.100.1", "192.0.2.2"),
            ])
        );
        // The IPv6 pairs carry the source's RTT, as no path was measured.
        assert_eq!(got[0].rtt, Some(Duration::from_millis(90)));
    }

    // ---- RFC 8305 §4 interleaving -------------------------------------------

    #[test]
    fn interleave_by_family() {
        let is4 = |s: &&str| s.contains('.');
        let cases: [(&[&str], usize, &[&str]); 6] = [
            (
                &["a:1", "a:2", "a:3", "4.1", "4.2"],
                1,
                &["a:1", "4.1", "a:2", "4.2", "a:3"],
            ),
            (
                &["a:1", "a:2", "a:3", "4.1", "4.2"],
                2,
                &["a:1", "a:2", "4.1", "a:3", "4.2"],
            ),
            (
                &["4.1", "a:1", "a:2", "4.2"],
                1,
                &["4.1", "a:1", "4.2", "a:2"],
            ),
            (&["a:1", "a:2", "4.1"], 0, &["a:1", "4.1", "a:2"]),
            (
                &["a:1", "4.1", "4.2", "4.3"],
                2,
                &["a:1", "4.1", "4.2", "4.3"],
            ),
            (&[], 1, &[]),
        ];
        for (input, count, want) in cases {
            assert_eq!(
                interleave(input.to_vec(), count, is4),
                want,
                "{input:?} {count}"
            );
        }
    }

    #[test]
    fn pairs_interleave_with_first_family_count_2() {
        let options = Options {
            first_family_count: 2,
            ..Options::default()
        };
        let got = pairs(&dsts(&DUAL), &dual_host(), &Verdicts::default(), &options);
        let order: Vec<String> = got.iter().map(|p| p.destination.to_string()).collect();
        assert_eq!(
            order,
            [
                "2001:db8:9::1",
                "2001:db8:9::2",
                "198.51.100.1",
                "198.51.100.2"
            ]
        );
    }

    // ---- invariants ----------------------------------------------------------

    const POOL: [&str; 12] = [
        "2001:db8:1::1",
        "2001:db8:9::1",
        "2002:c633:6401::1",
        "2001:0:4136:e378::1",
        "fd00:1::1",
        "fe80::1",
        "198.51.100.1",
        "192.0.2.1",
        "10.1.2.3",
        "169.254.9.9",
        "::ffff:198.51.100.7",
        "ff05::1",
    ];
    const SOURCES: [&str; 7] = [
        "2001:db8:1::2",
        "2002:c633:6401::2",
        "fd00:1::2",
        "fe80::2",
        "192.0.2.2",
        "10.1.2.4",
        "169.254.1.1",
    ];

    proptest! {
        #[test]
        fn pairs_only_permute_and_keep_what_can_work(
            picks in proptest::collection::vec(0..POOL.len(), 0..12),
            have in proptest::collection::vec(any::<bool>(), SOURCES.len()),
            update in any::<bool>(),
            count in 0usize..4,
        ) {
            let list: Vec<IpAddr> = picks.iter().map(|&i| ip(POOL[i])).collect();
            let h = host(SOURCES.iter().zip(&have).filter(|(_, h)| **h).map(|(s, _)| src(s)).collect());
            let options = Options {
                table: if update { Table::Update } else { Table::Rfc6724 },
                first_family_count: count,
            };
            let got = pairs(&list, &h, &Verdicts::default(), &options);
            // Never adds: every output destination is taken from the input.
            let mut left = list.clone();
            for p in &got {
                let i = left.iter().position(|d| *d == p.destination);
                prop_assert!(i.is_some(), "{} was added", p.destination);
                left.swap_remove(i.unwrap_or_default());
                prop_assert!(h.addresses.contains(&p.source));
            }
            // Keeps every destination that has a usable source.
            let policy = Policy::new(options.table, &h);
            for d in left {
                let route = Route::to(d, &h);
                prop_assert!(select_source(d, &route, &h.addresses, &policy).is_none(), "{d} was dropped");
            }
            // sort_destinations is a permutation of its input.
            let mut sorted: Vec<IpAddr> = sort_destinations(&list, &h, &policy).into_iter().map(|(d, _)| d).collect();
            let mut input = list.clone();
            sorted.sort();
            input.sort();
            prop_assert_eq!(sorted, input);
        }
    }
}
