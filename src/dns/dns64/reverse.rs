//! Reverse names (RFC 6147 §5.3.1): the IPv4 address behind a nibble-form
//! `ip6.arpa` name under a NAT64 prefix, and its `in-addr.arpa` name.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;

use crate::probe::nat64::{extract, may_embed};

const IP6_ARPA: &[u8] = b"\x03ip6\x04arpa\x00";

/// The IPv4 address embedded in the address a full nibble-form
/// `ip6.arpa` name (wire format, any case) stands for, when that address
/// lies in one of `prefixes` (the first that holds it) and the prefix may
/// carry it ([`may_embed`]). `None` for any other name.
pub fn ptr_target(qname: &[u8], prefixes: &[Ipv6Net]) -> Option<Ipv4Addr> {
    let (labels, suffix) = qname.split_at_checked(64)?;
    if !suffix.eq_ignore_ascii_case(IP6_ARPA) {
        return None;
    }
    let mut octets = [0u8; 16];
    // The least significant nibble comes first.
    for (i, pair) in labels.chunks_exact(2).enumerate() {
        let [1, digit] = *pair else { return None };
        let nibble = char::from(digit).to_digit(16)? as u8;
        let at = 31 - i;
        octets[at / 2] |= if at % 2 == 0 { nibble << 4 } else { nibble };
    }
    let v6 = Ipv6Addr::from(octets);
    prefixes.iter().find_map(|&p| {
        let v4 = extract(p, v6)?;
        may_embed(p, v4).then_some(v4)
    })
}

/// The `in-addr.arpa` name of `v4` in wire format.
pub fn in_addr_name(v4: Ipv4Addr) -> Vec<u8> {
    let mut out = Vec::with_capacity(30);
    let mut label = String::with_capacity(3);
    for o in v4.octets().into_iter().rev() {
        label.clear();
        let _ = write!(label, "{o}");
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.extend_from_slice(b"\x07in-addr\x04arpa\x00");
    out
}
