//! Building the synthesized answer (AAAA from A, PTR through a CNAME to
//! `in-addr.arpa`), re-encoded with hickory-proto, and the tests on the
//! upstream's answer that decide whether there is anything to build.

use std::net::Ipv6Addr;

use hickory_proto::op::{Message as HMessage, ResponseCode};
use hickory_proto::rr::rdata::{AAAA, CNAME};
use hickory_proto::rr::{DNSClass, RData, Record as HRecord};
use ipnet::Ipv6Net;

use crate::dns::wire::{self, Reply, Section, rcode, rtype};
use crate::probe::nat64::{embed, may_embed};

/// RFC 6147 §5.1.7: the TTL cap of a synthesized record when the AAAA
/// answer carries no SOA to take the negative-caching TTL from.
pub const NO_SOA_TTL: u32 = 600;

/// RFC 6147 §5.1.4: AAAA records in this prefix (IPv4-mapped addresses)
/// are treated as absent.
const EXCLUDED_AAAA: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96);

/// A synthesized answer and how long it holds from now (the least of its
/// records' remaining TTLs): the caller keeps it no longer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synthesized {
    pub reply: Reply,
    pub ttl: u32,
}

/// Whether an AAAA answer leaves room for synthesis: NOERROR without an
/// AAAA record outside the exclusion set, or an rcode other than NOERROR
/// and NXDOMAIN (RFC 6147 §5.1.2).
pub(super) fn no_usable_aaaa(upstream: &Reply) -> bool {
    match upstream.rcode() {
        rcode::NOERROR => upstream
            .addresses()
            .into_iter()
            .all(|a| matches!(a, std::net::IpAddr::V6(v6) if EXCLUDED_AAAA.contains(&v6))),
        rcode::NXDOMAIN => false,
        _ => true,
    }
}

/// Whether the answer section holds a record of type `t`.
pub(super) fn has_answer_of(reply: &Reply, t: u16) -> bool {
    reply
        .message()
        .records
        .iter()
        .any(|r| r.section == Section::Answer && r.rtype == t)
}

/// Whether the reply carries an RRSIG (in the answer section only with
/// `answer_only`).
pub(super) fn signed(reply: &Reply, answer_only: bool) -> bool {
    reply
        .message()
        .records
        .iter()
        .any(|r| r.rtype == rtype::RRSIG && (!answer_only || r.section == Section::Answer))
}

/// The synthesized answer to a query of `qtype` (AAAA or PTR) whose
/// upstream answer `upstream` (in the cache for `upstream_age` seconds)
/// left room for it ([`super::need`]), from `other`, the answer of the
/// second lookup (in the cache for `other_age` seconds). `None` when
/// there is nothing to synthesize from, or the client set DO and an
/// answer is signed: then the upstream's answer stands.
///
/// The TTLs are written so that the caller, which lowers every TTL of an
/// answer by the age of the upstream's answer when it sends it, sends
/// the right ones: a record's remaining TTL plus `upstream_age`.
pub fn synthesize(
    qtype: u16,
    upstream: &Reply,
    upstream_age: u32,
    other: &Reply,
    other_age: u32,
    prefixes: &[Ipv6Net],
    do_bit: bool,
) -> Option<Synthesized> {
    if do_bit && (signed(upstream, false) || signed(other, true)) {
        return None;
    }
    if other.rcode() != rcode::NOERROR {
        return None;
    }
    // §5.1.7: no synthesized record outlives the AAAA answer's negative
    // caching; the PTR's CNAME follows the same rule.
    let cap = upstream
        .negative_ttl()
        .unwrap_or(NO_SOA_TTL)
        .saturating_sub(upstream_age);
    let from = HMessage::from_vec(other.bytes()).ok()?;
    let mut holds = u32::MAX;
    let mut ttl = |ttl: u32, capped: bool| {
        let left = ttl.saturating_sub(other_age);
        let left = if capped { left.min(cap) } else { left };
        holds = holds.min(left);
        left.saturating_add(upstream_age)
    };
    let mut answers = Vec::new();
    let mut made = 0usize;
    match qtype {
        rtype::AAAA => {
            for r in from.answers.iter().filter(|r| r.dns_class == DNSClass::IN) {
                match &r.data {
                    RData::CNAME(_) => {
                        let mut c = r.clone();
                        c.ttl = ttl(r.ttl, false);
                        answers.push(c);
                    }
                    RData::A(a) => {
                        let out = ttl(r.ttl, true);
                        for &p in prefixes {
                            if !may_embed(p, a.0) {
                                continue;
                            }
                            let Some(v6) = embed(p, a.0) else { continue };
                            answers.push(HRecord::from_rdata(
                                r.name.clone(),
                                out,
                                RData::AAAA(AAAA(v6)),
                            ));
                            made += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
        rtype::PTR => {
            let ptrs: Vec<&HRecord> = from
                .answers
                .iter()
                .filter(|r| {
                    r.dns_class == DNSClass::IN && matches!(r.data, RData::CNAME(_) | RData::PTR(_))
                })
                .collect();
            if !ptrs.iter().any(|r| matches!(r.data, RData::PTR(_))) {
                return None;
            }
            let owner = HMessage::from_vec(upstream.bytes())
                .ok()?
                .queries
                .first()?
                .name()
                .clone();
            let target = from.queries.first()?.name().clone();
            let least = ptrs.iter().map(|r| r.ttl).min()?;
            answers.push(HRecord::from_rdata(
                owner,
                ttl(least, true),
                RData::CNAME(CNAME(target)),
            ));
            for r in ptrs {
                let mut c = r.clone();
                c.ttl = ttl(r.ttl, false);
                answers.push(c);
            }
            made = 1;
        }
        _ => return None,
    }
    if made == 0 {
        return None;
    }
    let reply = build(upstream, answers)?;
    Some(Synthesized { reply, ttl: holds })
}

/// The upstream's answer with `answers` as its answer section: NOERROR,
/// AA, TC and AD clear, no authority or additional records, and a fresh
/// OPT record (the upstream's payload size and DO bit, no options) when
/// it had one. `None` when the result is no valid [`Reply`] (too long).
fn build(upstream: &Reply, answers: Vec<HRecord>) -> Option<Reply> {
    let mut m = HMessage::from_vec(upstream.bytes()).ok()?;
    let edns = upstream
        .message()
        .edns
        .map(|e| (e.udp_size.max(512), e.do_bit));
    m.edns = None;
    m.signature = None;
    m.answers = answers;
    m.authorities.clear();
    m.additionals.clear();
    m.metadata.response_code = ResponseCode::NoError;
    m.metadata.authoritative = false;
    m.metadata.truncation = false;
    m.metadata.authentic_data = false;
    let mut bytes = m.to_vec().ok()?;
    if let Some((size, do_bit)) = edns {
        let arcount = wire::Header::parse(&bytes)?.arcount.checked_add(1)?;
        bytes
            .get_mut(10..12)?
            .copy_from_slice(&arcount.to_be_bytes());
        bytes.push(0);
        bytes.extend_from_slice(&rtype::OPT.to_be_bytes());
        bytes.extend_from_slice(&size.to_be_bytes());
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&(if do_bit { 0x8000u16 } else { 0 }).to_be_bytes());
        bytes.extend_from_slice(&[0, 0]);
    }
    Reply::parse(&bytes).ok()
}
