//! Applies the probe engine's verdicts to an upstream reply: the A/AAAA
//! records (and the `ipv4hint`/`ipv6hint` of SVCB/HTTPS records) that can
//! work come first, and with `policy.filter = "auto"` those that cannot are
//! removed, as long as the name keeps an address that can work.
//!
//! Pure: no I/O, no clock. The caller ([`crate::dns::server`]) keeps the
//! result with the verdict generation it was computed for.
//!
//! # Judging an address ([`judge()`])
//!
//! | verdict, first that applies | standing |
//! |---|---|
//! | an Internet destination whose family has no working source | cannot |
//! | a destination seen in answers, probed from every source and failed (dead) | cannot |
//! | the destination was probed and some path to it is ok | works (with its RTT) |
//! | every probed destination in its /24 or /64 failed | cannot |
//! | something in its /24 or /64 answered | likely |
//! | otherwise | unknown |
//!
//! A path to an Internet destination counts only while its source is not
//! judged failed ([`Verdicts::reach`]): what a source found before it
//! failed says nothing now, so an answer follows a failed source in the
//! same snapshot (and generation) that reports it.
//!
//! An *Internet destination* is a global address (by the IANA registries,
//! [`crate::inventory::classify`]) outside every subnet of the host: a LAN
//! server or a private address keeps working when the uplink dies, so the
//! family verdict never removes it. An address inside a discovered NAT64
//! prefix is an IPv4 destination behind the translator (RFC 6052): it is
//! judged by the IPv6 family, and its /64 (the translator's, shared by every
//! IPv4 destination) says nothing about it.
//!
//! # Ordering
//!
//! Within each RRset, and within each hint: works, likely, unknown, cannot;
//! then the lower measured RTT; then the upstream's order (a stable sort).
//! The records' TTL+RDATA slots are swapped in place ([`Reply::reorder_addresses`]),
//! so nothing is re-encoded for ordering. With nothing known every key ties
//! and the reply stays byte for byte the upstream's.
//!
//! # Filtering
//!
//! Only with `filter = "auto"`, only in NOERROR replies, and never in a
//! reply to a DO query that carries RRSIGs unless `break_dnssec` (removing
//! a signed record breaks validation downstream; BIND's filter-aaaa has the
//! same switch). The addresses that *cannot* work are removed when
//!
//! - some address of the same answer can work (is not *cannot*), or
//! - none can, but the other family's answer for the name (A for AAAA and
//!   back) has one that can. The caller supplies that answer ([`Other`]):
//!   from its cache, or asked of the upstreams with a short deadline; when
//!   it is missing or failed, nothing is removed. Removing every address
//!   of a name is never right: then the verdicts are what is wrong.
//!
//! A filtered reply is re-encoded with hickory-proto: the answer loses the
//! removed records (and, with `break_dnssec`, the RRSIGs of an RRset that is
//! gone), every other record stays. When no record of the asked type is
//! left, the reply is NOERROR/NODATA with an SOA in the authority section
//! for negative caching (RFC 2308 §5): synthesized, owned by the name whose
//! records went, under `getapr.invalid.` (RFC 6761 §6.4), its TTL and
//! MINIMUM the lesser of the removed records' TTL and [`NODATA_TTL`] so a
//! downstream cache asks again soon after the verdicts change. Every
//! filtered reply carries Extended DNS Error 17, "Filtered" (RFC 8914), with
//! an EXTRA-TEXT saying what went and why; the OPT record is the upstream's
//! own, copied byte for byte, with the option added.
//!
//! SVCB/HTTPS hints are filtered the same way within one record: a hint
//! address is removed when another hint address of the record (of either
//! family) can work; a hint left empty is removed (RFC 9460 §7.3: hints are
//! optional, clients fall back to A/AAAA), unless the record lists it as
//! mandatory. Reordering hints changes RDATA bytes, so a signed reply's
//! hints are never touched without `break_dnssec`.
//!
//! # Where it is
//!
//! `judge` judges one address; `filter` removes what cannot work and
//! re-encodes the reply; this file decides, answer by answer, what to do
//! ([`rewrite`]) and orders what is left.

mod filter;
mod judge;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_follow;
#[cfg(test)]
mod tests_hints;
#[cfg(test)]
mod tests_random;

use std::net::IpAddr;

use super::wire::{Reply, Section, rcode, rtype};
use crate::config::Filter;
use crate::metrics::FilterReason;
use crate::probe::verdicts::Verdicts;
use filter::{Cut, filter_addresses, filter_hints};

pub use super::wire::{EDE_FILTERED, OPTION_EDE, extended_errors};
pub use filter::NODATA_TTL;
pub use judge::{Judgement, Standing, Why, judge};

/// What the rewrite reads.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub verdicts: &'a Verdicts,
    pub filter: Filter,
    pub break_dnssec: bool,
}

/// The other family's answer for the name, as far as the caller has it.
#[derive(Debug, Clone, Copy)]
pub enum Other<'a> {
    /// Not looked at yet: [`rewrite`] says [`Rewritten::NeedOther`] when it
    /// would need it.
    Unasked,
    Reply(&'a Reply),
    /// Not to be had (upstream failure, deadline): nothing is removed.
    Failed,
}

/// What a rewrite did, for the counters and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewritten {
    /// Nothing to change: serve the upstream's reply.
    Same,
    /// The same records in another order.
    Reordered(Reply),
    /// Records removed (`nodata`: none of the asked type is left).
    /// `reason` is the kind of the first removed address's [`Why`] (the
    /// one `why`, the EDE text, gives first), for the counters of
    /// `/metrics`.
    Filtered {
        reply: Reply,
        removed: usize,
        nodata: bool,
        reason: FilterReason,
        why: String,
    },
    /// Every address would go; the other family's answer decides.
    NeedOther,
}

/// Names whose answers are passed on untouched: `ipv4only.arpa` (RFC 7050,
/// RFC 8880) exists so hosts can see what the DNS64 synthesizes; filtering
/// it would hide the NAT64 prefix from every host behind us. `qname` is in
/// wire format, lower-cased (a cache key's).
pub fn exempt(qname: &[u8]) -> bool {
    qname == b"\x08ipv4only\x04arpa\x00"
}

/// The other address type of an A or AAAA query.
pub fn other_type(qtype: u16) -> Option<u16> {
    match qtype {
        rtype::A => Some(rtype::AAAA),
        rtype::AAAA => Some(rtype::A),
        _ => None,
    }
}

/// Applies the verdicts to `reply`, the upstream's answer to a query of
/// type `qtype` (with the DO bit `do_bit`). See the module doc.
pub fn rewrite(
    reply: &Reply,
    qtype: u16,
    do_bit: bool,
    ctx: &Context<'_>,
    other: Other<'_>,
) -> Rewritten {
    let is_svcb = qtype == rtype::SVCB || qtype == rtype::HTTPS;
    // Generation 0: the engine has published nothing (or is not running),
    // so every address is unknown and nothing could move.
    if (qtype != rtype::A && qtype != rtype::AAAA && !is_svcb) || ctx.verdicts.generation == 0 {
        return Rewritten::Same;
    }
    let msg = reply.message();
    let signed = do_bit
        && msg
            .records
            .iter()
            .any(|r| r.section == Section::Answer && r.rtype == rtype::RRSIG);
    let untouchable = signed && !ctx.break_dnssec;
    let may_filter = ctx.filter == Filter::Auto && !untouchable && reply.rcode() == rcode::NOERROR;
    drop(msg);
    if is_svcb {
        return if untouchable {
            Rewritten::Same
        } else {
            rewrite_hints(reply, ctx, may_filter)
        };
    }
    let v = ctx.verdicts;
    let addrs: Vec<IpAddr> = answer_addresses(reply, qtype);
    if addrs.is_empty() {
        return Rewritten::Same;
    }
    let judged: Vec<Judgement> = addrs.iter().map(|&a| judge(v, a)).collect();
    let mut filtered = None;
    if may_filter && judged.iter().any(|j| j.standing == Standing::Cannot) {
        let keeps_one = judged.iter().any(|j| j.standing != Standing::Cannot);
        let go = keeps_one
            || match other {
                Other::Unasked => return Rewritten::NeedOther,
                Other::Failed => false,
                Other::Reply(o) => {
                    o.rcode() == rcode::NOERROR
                        && (other_type(qtype).map(|t| answer_addresses(o, t)))
                            .unwrap_or_default()
                            .into_iter()
                            .any(|a| judge(v, a).standing != Standing::Cannot)
                }
            };
        if go {
            let remove: Vec<(IpAddr, Why)> = addrs
                .iter()
                .zip(&judged)
                .filter_map(|(&a, j)| Some((a, j.why?)))
                .collect();
            filtered = filter_addresses(reply, qtype, &remove, !keeps_one);
        }
    }
    let nodata = !judged.iter().any(|j| j.standing != Standing::Cannot);
    finish(reply, filtered, nodata, |r| {
        r.reorder_addresses(|a, _| judge(v, a).rank())
    })
}

/// The outcome: the filtered reply (if any) or a copy of the upstream's,
/// put in order by `reorder` (which says whether anything moved).
fn finish(
    upstream: &Reply,
    filtered: Option<Cut>,
    nodata: bool,
    reorder: impl Fn(&mut Reply) -> bool,
) -> Rewritten {
    match filtered {
        Some(Cut {
            mut reply,
            removed,
            reason,
            why,
        }) => {
            reorder(&mut reply);
            Rewritten::Filtered {
                reply,
                removed,
                nodata,
                reason: reason.into(),
                why,
            }
        }
        None => {
            let mut copy = upstream.clone();
            if reorder(&mut copy) {
                Rewritten::Reordered(copy)
            } else {
                Rewritten::Same
            }
        }
    }
}

/// The addresses of the answer's records of type `qtype` (class IN).
fn answer_addresses(reply: &Reply, qtype: u16) -> Vec<IpAddr> {
    reply
        .addresses()
        .into_iter()
        .filter(|a| a.is_ipv4() == (qtype == rtype::A))
        .collect()
}

/// SVCB/HTTPS: filter and order the hints of each record (module doc).
fn rewrite_hints(reply: &Reply, ctx: &Context<'_>, may_filter: bool) -> Rewritten {
    let v = ctx.verdicts;
    let mut filtered = None;
    if may_filter {
        let hints = reply.hints();
        if hints
            .iter()
            .any(|(_, a)| judge(v, *a).standing == Standing::Cannot)
        {
            filtered = filter_hints(reply, v);
        }
    }
    finish(reply, filtered, false, |r| {
        r.reorder_hints(|a, _| judge(v, a).rank())
    })
}
