//! Removing what cannot work, re-encoded with hickory-proto: A/AAAA
//! records (with the RRSIGs of an RRset that is gone and the synthesized
//! SOA of a NODATA), SVCB/HTTPS hint addresses, and the Extended DNS Error
//! that says what went and why.

use std::fmt::Write as _;
use std::net::IpAddr;

use hickory_proto::op::Message as HMessage;
use hickory_proto::rr::rdata::svcb::{SvcParamKey, SvcParamValue};
use hickory_proto::rr::rdata::{SOA, SVCB};
use hickory_proto::rr::{Name, RData, Record as HRecord, RecordType};

use super::judge::{Standing, Why, judge};
use crate::dns::wire::{self, EDE_FILTERED, OPTION_EDE, Reply, rtype};
use crate::probe::verdicts::Verdicts;

/// The cap on the TTL of the SOA of a fully filtered answer: a downstream
/// cache keeps the NODATA at most this long, so a host whose IPv6 comes back
/// gets AAAA records again within a minute.
pub const NODATA_TTL: u32 = 60;

/// Removes the listed addresses of type `qtype` from the answer; with
/// `nodata`, adds the SOA. `None` when the reply does not survive the round
/// trip through hickory-proto (then nothing is removed).
pub(super) fn filter_addresses(
    reply: &Reply,
    qtype: u16,
    remove: &[(IpAddr, Why)],
    nodata: bool,
) -> Option<Cut> {
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
    Some(Cut {
        reply: Reply::parse(&bytes).ok()?,
        removed: removed.len(),
        reason: remove.first()?.1,
        why,
    })
}

/// Removes the hint addresses that cannot work, record by record, keeping
/// every address of a record none of whose hints can work.
pub(super) fn filter_hints(reply: &Reply, v: &Verdicts) -> Option<Cut> {
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
            let keep_whole = mandatory.contains(key);
            let empty = match value {
                SvcParamValue::Ipv4Hint(h) => {
                    cut(&mut h.0, |a| IpAddr::V4(a.0), v, keep_whole, &mut removed)
                }
                SvcParamValue::Ipv6Hint(h) => {
                    cut(&mut h.0, |a| IpAddr::V6(a.0), v, keep_whole, &mut removed)
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
    Some(Cut {
        reply: Reply::parse(&bytes).ok()?,
        removed: removed.len(),
        reason: removed.first()?.1,
        why,
    })
}

/// Removes the addresses of one hint that cannot work, each added to
/// `removed` with its reason. A mandatory hint that would be left empty is
/// kept whole instead, and none of its addresses counts as removed: the
/// EDE text and the counters report only what really went. Says whether
/// the hint is empty.
fn cut<T>(
    hint: &mut Vec<T>,
    addr: impl Fn(&T) -> IpAddr,
    v: &Verdicts,
    mandatory: bool,
    removed: &mut Vec<(IpAddr, Why)>,
) -> bool {
    let whys: Vec<Option<Why>> = hint.iter().map(|a| judge(v, addr(a)).why).collect();
    if mandatory && whys.iter().all(Option::is_some) {
        return hint.is_empty();
    }
    // `retain` visits every element once, in order, so `whys` lines up.
    let mut whys = whys.into_iter();
    hint.retain(|a| match whys.next().flatten() {
        Some(why) => {
            removed.push((addr(a), why));
            false
        }
        None => true,
    });
    hint.is_empty()
}

/// A filtered reply: how many records went, the first one's reason and the
/// EDE text.
pub(super) struct Cut {
    pub(super) reply: Reply,
    pub(super) removed: usize,
    pub(super) reason: Why,
    pub(super) why: String,
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

/// The SOA of a fully filtered answer (see "Filtering" in [the module
/// doc](super)).
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
/// Error "Filtered" option to a message that has none.
fn with_ede(mut bytes: Vec<u8>, upstream: &Reply, text: &str) -> Option<Vec<u8>> {
    let arcount = wire::Header::parse(&bytes)?.arcount;
    let opt = match &upstream.message().edns {
        Some(e) => {
            let start = u16::try_from(bytes.len()).ok()?;
            bytes.extend_from_slice(upstream.bytes().get(e.record.clone())?);
            bytes[10..12].copy_from_slice(&arcount.checked_add(1)?.to_be_bytes());
            Some((start, arcount))
        }
        None => None,
    };
    let mut value = EDE_FILTERED.to_be_bytes().to_vec();
    value.extend_from_slice(text.as_bytes());
    wire::with_option(&bytes, opt, OPTION_EDE, &value)
}
