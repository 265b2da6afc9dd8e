//! RFC 6724 §5 source address selection: the route a packet would take,
//! the candidate set (§4) and the rules that pick one source.

use std::cmp::Ordering;
use std::net::IpAddr;

use super::prefer;
use super::table::{PolicyTable, SCOPE_LINK, common_prefix_len, scope};
use crate::inventory::{Address, Gateway, Snapshot};

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
            .filter(|a| a.prefix_len > 0 && a.contains(dst))
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
    policy: &PolicyTable,
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
pub(super) fn is_candidate(source: &Address, dst: IpAddr, route: &Route) -> bool {
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
    policy: &PolicyTable,
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
// subnet on the gateway's interface (see the `policy` module doc).
fn next_hop(sa: &Address, sb: &Address, route: &Route) -> Ordering {
    let (Some(gw), Some(i)) = (route.next_hop, route.ifindex) else {
        return Ordering::Equal;
    };
    let from_hop = |s: &Address| s.ifindex == i && s.contains(gw.to_canonical());
    prefer(from_hop(sa), from_hop(sb))
}

// RFC 6724 §5 rule 6: prefer matching label.
fn matching_label_source(
    sa: &Address,
    sb: &Address,
    dst: IpAddr,
    policy: &PolicyTable,
) -> Ordering {
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
