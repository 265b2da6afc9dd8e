//! The RFC 6724 policy tables (precedence and label, §2.1), address scope
//! (§3.1) and CommonPrefixLen (§2.2): what source and destination rules compare.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::Ipv6Net;

use crate::inventory::{Address, Class, Snapshot};

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

/// The policy table in use (RFC 6724 §2.1), with the host's known-local ULA
/// /48s for [`Table::Update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTable {
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
/// ULA at 30 (known-local ULA /48s are added by [`PolicyTable`]).
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

impl PolicyTable {
    /// The table, plus (for [`Table::Update`]) the /48s of the host's ULAs.
    pub fn new(table: Table, host: &Snapshot) -> PolicyTable {
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
        PolicyTable { table, local_ulas }
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

pub(super) const SCOPE_LINK: u8 = 0x2;
pub(super) const SCOPE_SITE: u8 = 0x5;
pub(super) const SCOPE_GLOBAL: u8 = 0xe;

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
pub(super) fn is_encapsulated(addr: IpAddr) -> bool {
    let x = u128::from(as_v6(addr));
    prefix_matches(x, 0x2002 << 112, 16) || prefix_matches(x, 0x2001 << 112, 32)
}

/// RFC 6724 §2.2 CommonPrefixLen(S, D), up to the end of S's prefix: 64
/// bits for IPv6, S's prefix length for IPv4; 0 across families.
pub(super) fn common_prefix_len(source: &Address, dst: IpAddr) -> u32 {
    match (source.addr.to_canonical(), dst.to_canonical()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let cap = u32::from(source.prefix_len).min(32);
            (u32::from(s) ^ u32::from(d)).leading_zeros().min(cap)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => (u128::from(s) ^ u128::from(d)).leading_zeros().min(64),
        _ => 0,
    }
}
