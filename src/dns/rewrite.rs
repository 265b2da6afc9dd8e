//! Applies the probe engine's verdicts to an upstream reply: the A/AAAA
//! records (and the `ipv4hint`/`ipv6hint` of SVCB/HTTPS records) that can
//! work come first, and with `policy.filter = "auto"` those that cannot are
//! removed, as long as the name keeps an address that can work.
//!
//! Pure: no I/O, no clock. The caller ([`crate::dns::server`]) keeps the
//! result with the verdict generation it was computed for.
//!
//! # Judging an address ([`judge`])
//!
//! | verdict | standing |
//! |---|---|
//! | the destination was probed and some path to it is ok | works (with its RTT) |
//! | a destination seen in answers, probed from every source and failed (dead) | cannot |
//! | every probed destination in its /24 or /64 failed | cannot |
//! | an Internet destination whose family has no working source | cannot |
//! | something in its /24 or /64 answered | likely |
//! | otherwise | unknown |
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

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::op::Message as HMessage;
use hickory_proto::rr::rdata::svcb::{SvcParamKey, SvcParamValue};
use hickory_proto::rr::rdata::{SOA, SVCB};
use hickory_proto::rr::{Name, RData, Record as HRecord, RecordType};
use ipnet::IpNet;

use super::wire::{self, HEADER_LEN, Reply, Section, rcode, rtype};
use crate::config::Filter;
use crate::inventory::{Class, classify};
use crate::probe::nat64;
use crate::probe::verdicts::{State, Verdicts, prefix_of};

/// The cap on the TTL of the SOA of a fully filtered answer: a downstream
/// cache keeps the NODATA at most this long, so a host whose IPv6 comes back
/// gets AAAA records again within a minute.
pub const NODATA_TTL: u32 = 60;

/// The Extended DNS Error INFO-CODE "Filtered" (RFC 8914 §4.18).
pub const EDE_FILTERED: u16 = 17;
/// The EDNS option code of Extended DNS Errors (RFC 8914 §2).
pub const OPTION_EDE: u16 = 15;

/// What the rewrite reads.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub verdicts: &'a Verdicts,
    pub filter: Filter,
    pub break_dnssec: bool,
}

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
    fn rank(&self) -> (Standing, bool, Duration) {
        (
            self.standing,
            self.rtt.is_none(),
            self.rtt.unwrap_or_default(),
        )
    }
}

/// What the verdicts say of `addr` as a destination (module doc).
pub fn judge(v: &Verdicts, addr: IpAddr) -> Judgement {
    let via_nat64 = nat64::behind(&v.nat64_prefixes, addr).is_some();
    if let Some(d) = v.destination(addr) {
        match d.state {
            State::Ok => {
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
            State::Failed if d.learned => return Judgement::cannot(Why::Dead),
            _ => {}
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
    Judgement::of(if prefix == State::Ok {
        Standing::Likely
    } else {
        Standing::Unknown
    })
}

/// A global address outside every subnet of the host.
fn is_internet(v: &Verdicts, addr: IpAddr) -> bool {
    matches!(classify(addr), Class::Gua | Class::Global4)
        && !v
            .host
            .addresses
            .iter()
            .any(|a| crate::policy::in_subnet(a, addr))
}

/// The other family's answer for the name, as far as the caller has it.
#[derive(Debug, Clone, Copy)]
pub enum Other<'a> {
    /// Not looked at yet: [`rewrite`] says [`Outcome::NeedOther`] when it
    /// would need it.
    Unasked,
    Reply(&'a Reply),
    /// Not to be had (upstream failure, deadline): nothing is removed.
    Failed,
}

/// What a rewrite did, for the counters and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to change: serve the upstream's reply.
    Same,
    /// The same records in another order.
    Reordered(Reply),
    /// Records removed (`nodata`: none of the asked type is left).
    Filtered {
        reply: Reply,
        removed: usize,
        nodata: bool,
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
) -> Outcome {
    let is_svcb = qtype == rtype::SVCB || qtype == rtype::HTTPS;
    if qtype != rtype::A && qtype != rtype::AAAA && !is_svcb {
        return Outcome::Same;
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
            Outcome::Same
        } else {
            rewrite_hints(reply, ctx, may_filter)
        };
    }
    let v = ctx.verdicts;
    let addrs: Vec<IpAddr> = answer_addresses(reply, qtype);
    if addrs.is_empty() {
        return Outcome::Same;
    }
    let judged: Vec<Judgement> = addrs.iter().map(|&a| judge(v, a)).collect();
    let mut filtered = None;
    if may_filter && judged.iter().any(|j| j.standing == Standing::Cannot) {
        let keeps_one = judged.iter().any(|j| j.standing != Standing::Cannot);
        let go = keeps_one
            || match other {
                Other::Unasked => return Outcome::NeedOther,
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
    let rank = |a: IpAddr, _| judge(v, a).rank();
    match filtered {
        Some((mut reply, removed, why)) => {
            reply.reorder_addresses(rank);
            Outcome::Filtered {
                reply,
                removed,
                nodata: !keeps_one_of(&judged),
                why,
            }
        }
        None => {
            let mut copy = reply.clone();
            if copy.reorder_addresses(rank) {
                Outcome::Reordered(copy)
            } else {
                Outcome::Same
            }
        }
    }
}

fn keeps_one_of(judged: &[Judgement]) -> bool {
    judged.iter().any(|j| j.standing != Standing::Cannot)
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
fn rewrite_hints(reply: &Reply, ctx: &Context<'_>, may_filter: bool) -> Outcome {
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
    let rank = |a: IpAddr, _| judge(v, a).rank();
    match filtered {
        Some((mut reply, removed, why)) => {
            reply.reorder_hints(rank);
            Outcome::Filtered {
                reply,
                removed,
                nodata: false,
                why,
            }
        }
        None => {
            let mut copy = reply.clone();
            if copy.reorder_hints(rank) {
                Outcome::Reordered(copy)
            } else {
                Outcome::Same
            }
        }
    }
}

/// Removes the listed addresses of type `qtype` from the answer; with
/// `nodata`, adds the SOA. `None` when the reply does not survive the round
/// trip through hickory-proto (then nothing is removed).
fn filter_addresses(
    reply: &Reply,
    qtype: u16,
    remove: &[(IpAddr, Why)],
    nodata: bool,
) -> Option<(Reply, usize, String)> {
    let mut m = HMessage::from_vec(reply.bytes()).ok()?;
    m.edns = None;
    let gone = |r: &HRecord| match &r.data {
        RData::A(a) if qtype == rtype::A => remove.iter().any(|(x, _)| *x == IpAddr::V4(a.0)),
        RData::AAAA(a) if qtype == rtype::AAAA => remove.iter().any(|(x, _)| *x == IpAddr::V6(a.0)),
        _ => false,
    };
    let mut removed: Vec<HRecord> = Vec::new();
    let mut kept = Vec::with_capacity(m.answers.len());
    for r in std::mem::take(&mut m.answers) {
        if gone(&r) {
            removed.push(r);
        } else {
            kept.push(r);
        }
    }
    m.answers = kept;
    if removed.is_empty() {
        return None;
    }
    let rt = RecordType::from(qtype);
    // An RRSIG over an RRset that is gone would only confuse (its records
    // are not there to validate); the type covered is its first field.
    let emptied: Vec<Name> = removed
        .iter()
        .map(|r| r.name.clone())
        .filter(|n| {
            !m.answers
                .iter()
                .any(|r| r.record_type() == rt && r.name == *n)
        })
        .collect();
    m.answers.retain(|r| {
        !(r.record_type() == RecordType::RRSIG
            && emptied.contains(&r.name)
            && rrsig_covers(r) == Some(qtype))
    });
    if nodata
        && !m
            .authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA)
    {
        let ttl = removed
            .iter()
            .map(|r| r.ttl)
            .min()
            .unwrap_or(0)
            .min(NODATA_TTL);
        let owner = removed
            .last()
            .map(|r| r.name.clone())
            .unwrap_or_else(Name::root);
        m.authorities.push(synthesized_soa(owner, ttl)?);
    }
    let why = explain(qtype, remove);
    let bytes = with_ede(m.to_vec().ok()?, reply, &why)?;
    Some((Reply::parse(&bytes).ok()?, removed.len(), why))
}

/// Removes the hint addresses that cannot work, record by record, keeping
/// every address of a record none of whose hints can work.
fn filter_hints(reply: &Reply, v: &Verdicts) -> Option<(Reply, usize, String)> {
    let mut m = HMessage::from_vec(reply.bytes()).ok()?;
    m.edns = None;
    let mut removed: Vec<(IpAddr, Why)> = Vec::new();
    for r in &mut m.answers {
        let svcb: &mut SVCB = match &mut r.data {
            RData::SVCB(s) => s,
            RData::HTTPS(h) => &mut h.0,
            _ => continue,
        };
        let addrs: Vec<IpAddr> = svcb
            .svc_params
            .iter()
            .flat_map(|(_, value)| match value {
                SvcParamValue::Ipv4Hint(h) => h.0.iter().map(|a| IpAddr::V4(a.0)).collect(),
                SvcParamValue::Ipv6Hint(h) => h.0.iter().map(|a| IpAddr::V6(a.0)).collect(),
                _ => Vec::new(),
            })
            .collect();
        if !addrs
            .iter()
            .any(|&a| judge(v, a).standing != Standing::Cannot)
        {
            continue;
        }
        let mandatory: Vec<SvcParamKey> = svcb
            .svc_params
            .iter()
            .filter_map(|(_, value)| match value {
                SvcParamValue::Mandatory(m) => Some(m.0.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        let mut drop_keys = Vec::new();
        for (key, value) in &mut svcb.svc_params {
            let mut cut = |a: IpAddr| match judge(v, a).why {
                Some(why) => {
                    removed.push((a, why));
                    false
                }
                None => true,
            };
            let empty = match value {
                SvcParamValue::Ipv4Hint(h) => {
                    let before = h.0.clone();
                    h.0.retain(|a| cut(IpAddr::V4(a.0)));
                    if h.0.is_empty() && mandatory.contains(key) {
                        h.0 = before;
                    }
                    h.0.is_empty()
                }
                SvcParamValue::Ipv6Hint(h) => {
                    let before = h.0.clone();
                    h.0.retain(|a| cut(IpAddr::V6(a.0)));
                    if h.0.is_empty() && mandatory.contains(key) {
                        h.0 = before;
                    }
                    h.0.is_empty()
                }
                _ => false,
            };
            if empty {
                drop_keys.push(*key);
            }
        }
        svcb.svc_params.retain(|(k, _)| !drop_keys.contains(k));
    }
    if removed.is_empty() {
        return None;
    }
    let why = explain(rtype::HTTPS, &removed);
    let bytes = with_ede(m.to_vec().ok()?, reply, &why)?;
    Some((Reply::parse(&bytes).ok()?, removed.len(), why))
}

fn rrsig_covers(r: &HRecord) -> Option<u16> {
    match &r.data {
        RData::Unknown { rdata, .. } => {
            let b = rdata.anything.get(..2)?;
            Some(u16::from_be_bytes([b[0], b[1]]))
        }
        _ => None,
    }
}

/// The SOA of a fully filtered answer (module doc).
fn synthesized_soa(owner: Name, ttl: u32) -> Option<HRecord> {
    let mname = Name::from_ascii("getapr.invalid.").ok()?;
    let rname = Name::from_ascii("filtered.getapr.invalid.").ok()?;
    let soa = SOA::new(mname, rname, 1, 3600, 600, 86400, ttl);
    Some(HRecord::from_rdata(owner, ttl, RData::SOA(soa)))
}

/// The EXTRA-TEXT: what went and why, e.g. `getapr removed 2 AAAA: no
/// working IPv6 source`.
fn explain(qtype: u16, removed: &[(IpAddr, Why)]) -> String {
    let what = match qtype {
        rtype::A => "A",
        rtype::AAAA => "AAAA",
        _ => "hint",
    };
    let mut reasons: Vec<String> = Vec::new();
    for (addr, why) in removed {
        let r = match why {
            Why::Dead => format!("{addr} {why}"),
            other => other.to_string(),
        };
        if !reasons.contains(&r) {
            reasons.push(r);
        }
    }
    let mut text = format!("getapr removed {} {what}: ", removed.len());
    for (i, r) in reasons.iter().enumerate() {
        if i > 0 {
            text.push_str("; ");
        }
        let _ = write!(text, "{r}");
    }
    // RFC 8914 §2: EXTRA-TEXT is for humans; keep it short.
    if text.len() > 200 {
        let mut end = 200;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Appends the upstream's OPT record (or a fresh one) with an Extended DNS
/// Error "Filtered" option to a message that has none, and counts it.
fn with_ede(mut bytes: Vec<u8>, upstream: &Reply, text: &str) -> Option<Vec<u8>> {
    if bytes.len() < HEADER_LEN {
        return None;
    }
    let msg = upstream.message();
    let mut opt = match &msg.edns {
        Some(e) => upstream.bytes().get(e.record.clone())?.to_vec(),
        None => {
            let mut o = vec![0u8];
            o.extend_from_slice(&rtype::OPT.to_be_bytes());
            o.extend_from_slice(&1232u16.to_be_bytes());
            o.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            o
        }
    };
    // Name (1) type (2) class (2) TTL (4), then RDLENGTH.
    let len_at = 9;
    let old = usize::from(u16::from_be_bytes([
        *opt.get(len_at)?,
        *opt.get(len_at + 1)?,
    ]));
    let option_len = u16::try_from(2 + text.len()).ok()?;
    opt.extend_from_slice(&OPTION_EDE.to_be_bytes());
    opt.extend_from_slice(&option_len.to_be_bytes());
    opt.extend_from_slice(&EDE_FILTERED.to_be_bytes());
    opt.extend_from_slice(text.as_bytes());
    let new = u16::try_from(old + 4 + usize::from(option_len)).ok()?;
    opt[len_at..len_at + 2].copy_from_slice(&new.to_be_bytes());
    let arcount = u16::from_be_bytes([bytes[10], bytes[11]]).checked_add(1)?;
    bytes[10..12].copy_from_slice(&arcount.to_be_bytes());
    bytes.extend_from_slice(&opt);
    Some(bytes)
}

/// The Extended DNS Errors of a message: `(INFO-CODE, EXTRA-TEXT)`.
pub fn extended_errors(msg: &[u8]) -> Vec<(u16, String)> {
    let Ok(m) = wire::Message::parse(msg) else {
        return Vec::new();
    };
    let Some(e) = m.edns else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut opts = msg.get(e.options).unwrap_or(&[]);
    while opts.len() >= 4 {
        let code = u16::from_be_bytes([opts[0], opts[1]]);
        let len = usize::from(u16::from_be_bytes([opts[2], opts[3]]));
        let Some(value) = opts.get(4..4 + len) else {
            break;
        };
        if code == OPTION_EDE && value.len() >= 2 {
            let info = u16::from_be_bytes([value[0], value[1]]);
            out.push((info, String::from_utf8_lossy(&value[2..]).into_owned()));
        }
        opts = &opts[4 + len..];
    }
    out
}
