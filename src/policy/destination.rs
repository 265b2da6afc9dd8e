//! RFC 6724 §6 destination address ordering, with getapr's two RTT rules
//! (the faster family before rule 6, RFC 8305 §4's lower RTT between rules
//! 8 and 9), and the stable sort that applies them.

use std::cmp::Ordering;
use std::net::IpAddr;
use std::time::Duration;

use super::prefer;
use super::source::{Route, select_source};
use super::table::{PolicyTable, common_prefix_len, is_encapsulated, scope};
use crate::inventory::{Address, Snapshot};

/// RFC 6724 §6: `destinations` in the order to try them, each with the
/// source §5 picks for it (`None` when it has none: those sort last, by rule
/// 1). No verdicts and no RTTs: this is RFC 6724 alone.
pub fn sort_destinations<'a>(
    destinations: &[IpAddr],
    host: &'a Snapshot,
    policy: &PolicyTable,
) -> Vec<(IpAddr, Option<&'a Address>)> {
    let ranked = destinations
        .iter()
        .map(|&d| {
            let route = Route::to(d, host);
            let source = select_source(d, &route, &host.addresses, policy);
            Ranked::new(d, source, None, policy)
        })
        .collect();
    // No RTTs, so the margin of the faster-family rule never matters.
    sort_ranked(ranked, Duration::ZERO)
        .into_iter()
        .map(|r| (r.destination, r.source))
        .collect()
}

/// A destination with its chosen source and everything §6 compares,
/// computed once.
#[derive(Debug, Clone)]
pub(super) struct Ranked<'a> {
    pub(super) destination: IpAddr,
    pub(super) source: Option<&'a Address>,
    pub(super) rtt: Option<Duration>,
    pub(super) ipv6: bool,
    pub(super) scope: u8,
    pub(super) label: u8,
    pub(super) precedence: u8,
    pub(super) encapsulated: bool,
    /// Scope, label, deprecation and common prefix length of the source.
    pub(super) source_scope: u8,
    pub(super) source_label: u8,
    pub(super) source_deprecated: bool,
    pub(super) common_prefix: u32,
}

impl<'a> Ranked<'a> {
    pub(super) fn new(
        destination: IpAddr,
        source: Option<&'a Address>,
        rtt: Option<Duration>,
        policy: &PolicyTable,
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

/// `Less` when `da` should be tried before `db`; `rtt_margin` is how much
/// slower than the other family's pair a pair must be to go after it
/// ([`faster_family`]).
pub(super) fn compare_destinations(
    da: &Ranked<'_>,
    db: &Ranked<'_>,
    rtt_margin: Duration,
) -> Ordering {
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
        .then_with(|| faster_family(da, db, rtt_margin))
        .then_with(|| higher_precedence(da, db))
        .then_with(|| native_transport(da, db))
        .then_with(|| smaller_scope(da, db))
        .then_with(|| lower_rtt(da, db))
        .then_with(|| longest_prefix(da, db))
    // RFC 6724 §6 rule 10: otherwise, leave the order unchanged (the sort
    // is stable).
}

// RFC 6724 §6 rule 1: avoid unusable destinations (here: no source).
pub(super) fn usable(da: &Ranked<'_>, db: &Ranked<'_>) -> Ordering {
    prefer(da.source.is_some(), db.source.is_some())
}

// RFC 6724 §6 rule 2: prefer matching scope.
pub(super) fn matching_scope(da: &Ranked<'_>, db: &Ranked<'_>) -> Ordering {
    prefer(da.scope == da.source_scope, db.scope == db.source_scope)
}

// RFC 6724 §6 rule 3: avoid deprecated addresses (as the source).
pub(super) fn avoid_deprecated(da: &Ranked<'_>, db: &Ranked<'_>) -> Ordering {
    prefer(!da.source_deprecated, !db.source_deprecated)
}

// RFC 6724 §6 rule 5: prefer matching label.
pub(super) fn matching_label(da: &Ranked<'_>, db: &Ranked<'_>) -> Ordering {
    prefer(da.label == da.source_label, db.label == db.source_label)
}

// getapr, before rule 6: of two pairs of different families, the one whose
// measured RTT exceeds the other's by more than `margin` goes after it, so
// a slow family no longer leads just because its precedence is higher.
// Within the margin, or with an RTT unknown on either side, the rule ties
// and RFC 6724 decides: an unknown RTT never demotes. Pairs of one family
// tie here; the lower-RTT rule after rule 8 orders them.
pub(super) fn faster_family(da: &Ranked<'_>, db: &Ranked<'_>, margin: Duration) -> Ordering {
    if da.ipv6 == db.ipv6 {
        return Ordering::Equal;
    }
    match (da.rtt, db.rtt) {
        (Some(a), Some(b)) if b > a.saturating_add(margin) => Ordering::Less,
        (Some(a), Some(b)) if a > b.saturating_add(margin) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

// RFC 6724 §6 rule 6: prefer higher precedence.
pub(super) fn higher_precedence(da: &Ranked<'_>, db: &Ranked<'_>) -> Ordering {
    db.precedence.cmp(&da.precedence)
}

// RFC 6724 §6 rule 7: prefer native transport (6to4 and Teredo encapsulate).
pub(super) fn native_transport(da: &Ranked<'_>, db: &Ranked<'_>) -> Ordering {
    prefer(!da.encapsulated, !db.encapsulated)
}

// RFC 6724 §6 rule 8: prefer smaller scope.
pub(super) fn smaller_scope(da: &Ranked<'_>, db: &Ranked<'_>) -> Ordering {
    da.scope.cmp(&db.scope)
}

// getapr, between rules 8 and 9 (RFC 8305 §4): prefer the lower measured
// RTT, when both are measured.
pub(super) fn lower_rtt(da: &Ranked<'_>, db: &Ranked<'_>) -> Ordering {
    match (da.rtt, db.rtt) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => Ordering::Equal,
    }
}

// RFC 6724 §6 rule 9: use longest matching prefix. IPv6 only (see the
// `policy` module doc).
pub(super) fn longest_prefix(da: &Ranked<'_>, db: &Ranked<'_>) -> Ordering {
    if da.ipv6 && db.ipv6 {
        db.common_prefix.cmp(&da.common_prefix)
    } else {
        Ordering::Equal
    }
}

/// Stable merge sort by [`compare_destinations`]. It never panics on a
/// comparator that is not a total order (ours is not: see the `policy`
/// module doc), and keeps equal elements in their original order (rule 10).
pub(super) fn sort_ranked(v: Vec<Ranked<'_>>, rtt_margin: Duration) -> Vec<Ranked<'_>> {
    if v.len() <= 1 {
        return v;
    }
    let mut left = v;
    let right = left.split_off(left.len() / 2);
    let (left, right) = (
        sort_ranked(left, rtt_margin),
        sort_ranked(right, rtt_margin),
    );
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_right = match (left.peek(), right.peek()) {
            (Some(l), Some(r)) => compare_destinations(r, l, rtt_margin) == Ordering::Less,
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
