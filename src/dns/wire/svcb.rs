//! The address hints of SVCB and HTTPS records (RFC 9460): where they
//! are in the RDATA and the addresses they hold.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use super::name::plain_name_end;
use super::{Record, Reply, Section, be16, rtype};

/// SvcParamKeys of the address hints (RFC 9460 §7.3).
pub const IPV4HINT: u16 = 4;
pub const IPV6HINT: u16 = 6;

/// The `ipv4hint` and `ipv6hint` values of an SVCB or HTTPS record (RFC
/// 9460 §2.2): `(key, value range)`, each value a whole number of
/// addresses. Empty for any other record, and for RDATA that does not
/// parse: the target name must be uncompressed (§2.2) and the parameters
/// must fill the RDATA exactly.
pub fn svcb_hints(bytes: &[u8], r: &Record) -> Vec<(u16, Range<usize>)> {
    if r.rtype != rtype::SVCB && r.rtype != rtype::HTTPS {
        return Vec::new();
    }
    let mut hints = Vec::new();
    let Ok(mut at) = plain_name_end(bytes, r.rdata.start + 2) else {
        return hints;
    };
    while at < r.rdata.end {
        let (Some(key), Some(len)) = (be16(bytes, at), be16(bytes, at + 2)) else {
            return Vec::new();
        };
        let value = at + 4..at + 4 + usize::from(len);
        if value.end > r.rdata.end {
            return Vec::new();
        }
        let size = match key {
            IPV4HINT => 4,
            IPV6HINT => 16,
            _ => 0,
        };
        if size > 0 && !value.is_empty() && value.len() % size == 0 {
            hints.push((key, value.clone()));
        }
        at = value.end;
    }
    if at != r.rdata.end || r.rdata.len() < 3 {
        return Vec::new();
    }
    hints
}

/// The addresses in a hint value of `key`.
pub(super) fn hint_addresses(key: u16, value: &[u8]) -> Vec<IpAddr> {
    match key {
        IPV4HINT => value
            .chunks_exact(4)
            .map(|c| IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])))
            .collect(),
        _ => value
            .chunks_exact(16)
            .filter_map(|c| <[u8; 16]>::try_from(c).ok())
            .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
            .collect(),
    }
}

impl Reply {
    /// The addresses in the hints of the answer's SVCB/HTTPS records, in
    /// wire order, each with its key.
    pub fn hints(&self) -> Vec<(u16, IpAddr)> {
        let msg = self.message();
        let mut out = Vec::new();
        for r in msg.records.iter().filter(|r| r.section == Section::Answer) {
            for (key, range) in svcb_hints(self.bytes(), r) {
                let value = self.bytes().get(range).unwrap_or(&[]);
                out.extend(hint_addresses(key, value).into_iter().map(|a| (key, a)));
            }
        }
        out
    }
}
