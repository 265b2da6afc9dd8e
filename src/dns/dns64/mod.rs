//! DNS64 in the stub (RFC 6147): when it is on ([`active`]), AAAA records
//! synthesized from A records under the NAT64 prefixes (RFC 6052), and
//! PTR queries under a prefix's `ip6.arpa` answered from the embedded
//! IPv4's `in-addr.arpa`.
//!
//! Pure: the mode comes from the config, the prefixes and family states
//! from the verdicts, the replies and their ages (seconds in the cache)
//! from the caller ([`crate::dns::server`]), which keeps the result as the
//! view of the upstream's answer for one verdict generation.
//!
//! # When
//!
//! [`need`] reads the upstream's answer to the client's query and says
//! whether synthesis applies and which second lookup it takes:
//!
//! - AAAA: the answer is NOERROR with no usable AAAA (none, or only
//!   addresses of the §5.1.4 exclusion set `::ffff:0:0/96`), or its rcode
//!   is neither NOERROR nor NXDOMAIN (§5.1.2: treated as empty). NXDOMAIN
//!   stays NXDOMAIN; any usable AAAA (a DNS64 upstream's included: nothing
//!   is synthesized twice) is the upstream's answer. Then the A records of
//!   the same name are asked for, with the client's DO and CD.
//! - PTR: the name is a full nibble-form `ip6.arpa` name of an address
//!   inside one of the prefixes that embeds an IPv4 address the prefix may
//!   carry ([`may_embed`]), and the upstream has no PTR record for it
//!   (NXDOMAIN, NODATA or an error). Then the PTR records of the IPv4's
//!   `in-addr.arpa` name are asked for.
//! - Never for `ipv4only.arpa` (RFC 7050 discovery must see the upstream's
//!   own answer), never when the client set DO and either answer carries
//!   RRSIGs (§5.5: a validator downstream would reject the synthesized
//!   data), and never while [`active`] is false.
//!
//! # What
//!
//! [`synthesize`] builds the answer, re-encoded with hickory-proto:
//! NOERROR, the question as asked, AA and AD clear (§5.5: synthesized data
//! is not authenticated), no authority or additional records, and an OPT
//! record (no options) when the upstream's answer had one.
//!
//! - AAAA: the CNAME records of the A answer in its order (§5.1.6), then
//!   for every A record, one AAAA per prefix (the order of the prefixes,
//!   the preferred one first) owned by the A record's name, at the end of
//!   the chain. An A record a prefix may not carry ([`may_embed`]: the
//!   Well-Known Prefix carries only global IPv4) gets no AAAA under it.
//!   TTL (§5.1.7): the lesser of the A record's TTL and the AAAA answer's
//!   negative-caching TTL (RFC 2308: the lesser of its SOA's TTL and
//!   MINIMUM), 600 s without an SOA.
//! - PTR: a CNAME from the asked `ip6.arpa` name to the `in-addr.arpa`
//!   name (§5.3.1), then the `in-addr.arpa` answer's records (its PTR
//!   records, and the CNAMEs of a classless delegation, RFC 2317). The
//!   CNAME's TTL is the least of those records', capped like an AAAA's.
//!
//! When the second answer has nothing to synthesize from (no A or PTR
//! record, an error), the client gets the upstream's answer as it was.
//!
//! [`may_embed`]: crate::probe::nat64::may_embed

mod reverse;
mod synth;
#[cfg(test)]
mod tests;

use ipnet::Ipv6Net;

use crate::config::Synthesize;
use crate::dns::wire::{Reply, rtype};
use crate::probe::verdicts::{State, Verdicts};

pub use reverse::{in_addr_name, ptr_target};
pub use synth::{NO_SOA_TTL, Synthesized, synthesize};

/// The second lookup a synthesis takes: the name (wire format) and type
/// to ask for, with the client's DO and CD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub qname: Vec<u8>,
    pub qtype: u16,
}

/// Whether the upstream's answer `upstream` to the client's query for
/// `qname` (wire format, lower-cased: a cache key's), `qtype`, with the DO
/// bit `do_bit`, is to be synthesized under `prefixes` (empty when
/// [`active`] is false), and the lookup that takes. See the module doc.
pub fn need(
    qname: &[u8],
    qtype: u16,
    do_bit: bool,
    upstream: &Reply,
    prefixes: &[Ipv6Net],
) -> Option<Need> {
    if prefixes.is_empty() || (do_bit && synth::signed(upstream, false)) {
        return None;
    }
    match qtype {
        rtype::AAAA if !crate::dns::rewrite::exempt(qname) && synth::no_usable_aaaa(upstream) => {
            Some(Need {
                qname: qname.to_vec(),
                qtype: rtype::A,
            })
        }
        rtype::PTR if !synth::has_answer_of(upstream, rtype::PTR) => {
            let v4 = ptr_target(qname, prefixes)?;
            Some(Need {
                qname: in_addr_name(v4),
                qtype: rtype::PTR,
            })
        }
        _ => None,
    }
}

/// Whether a failed upstream lookup of this type (timeouts, SERVFAIL,
/// REFUSED: no reply to read) may still be synthesized: AAAA (§5.1.2
/// counts it as an answer without AAAA records) and PTR (the `ip6.arpa`
/// name of a NAT64 address is the DNS64's to answer, §5.3.1, and an
/// upstream that is only authoritative refuses it). [`need`] then reads
/// the failure as a SERVFAIL reply without records.
pub fn answers_failures(qtype: u16) -> bool {
    qtype == rtype::AAAA || qtype == rtype::PTR
}

/// Whether the stub synthesizes now under `mode`: `On` whenever a NAT64
/// prefix is known; `Auto` only when, besides, the host's IPv4 is known to
/// fail (no native IPv4, no CLAT: a CLAT gives a working IPv4 source) and
/// its IPv6 works, so NAT64 is the only way to IPv4-only names.
pub fn active(mode: Synthesize, v: &Verdicts) -> bool {
    if v.nat64_prefixes.is_empty() {
        return false;
    }
    match mode {
        Synthesize::Off => false,
        Synthesize::On => true,
        Synthesize::Auto => v.families.ipv4 == State::Failed && v.families.ipv6 == State::Ok,
    }
}
