//! Address classes by the IANA special-purpose address registries.
//!
//! Each registry row is a (network, prefix length) pair matched with a bit
//! mask over the address as an integer; the first matching row of a table
//! wins, so more specific rows come first. Nothing here looks at strings: a
//! string prefix test would take `fc::1` for a ULA.
//!
//! [`is_global`] is the crate's one rule for "a global address": what the
//! probe engine counts as Internet evidence and what DNS rewriting treats as
//! an Internet destination.
//!
//! Sources: the IANA IPv4 and IPv6 Special-Purpose Address Registries
//! (RFC 6890, RFC 8190), read 2025.
//!
//! Deliberate departures from the registries' "Globally Reachable" column,
//! so that the lab and real deployments classify the way the probe engine
//! and the policy need:
//!
//! - Documentation prefixes count as global: IPv4 192.0.2.0/24,
//!   198.51.100.0/24, 203.0.113.0/24 (RFC 5737) are [`Class::Global4`];
//!   IPv6 2001:db8::/32 (RFC 3849) and 3fff::/20 (RFC 9637) are
//!   [`Class::Gua`]. The network lab is built on them and must look like the
//!   Internet to the engine.
//! - NAT64 prefixes are [`Class::Gua`]: 64:ff9b::/96 (RFC 6052) and the
//!   local-use 64:ff9b:1::/48 (RFC 8215). As destinations they are reached
//!   through the default route and a translator, exactly like a global
//!   address, and need a GUA source to work.
//! - 6to4 2002::/16 (RFC 3056) and Teredo 2001::/32 (RFC 4380) are
//!   [`Class::Gua`]: global unicast reached through relays. The RFC 6724
//!   policy table gives them their low precedence; classification does not
//!   have to.
//! - Inside IETF Protocol Assignments 2001::/23 only the rows IANA marks
//!   globally reachable are [`Class::Gua`] (the PCP, TURN and DNS-SD SRP
//!   anycast addresses, AMT, AS112-v6, ORCHIDv2, DETs, plus Teredo above);
//!   the rest of the /23 (benchmarking 2001:2::/48, deprecated ORCHID
//!   2001:10::/28, unassigned space) is [`Class::Other`].
//! - Benchmarking space (198.18.0.0/15, RFC 2544; 2001:2::/48, RFC 5180) is
//!   [`Class::Other`]: it is not documentation and not routed anywhere.
//! - IPv4-mapped (::ffff:0:0/96), loopback, unspecified, multicast,
//!   deprecated site-local fec0::/10 (RFC 3879), discard-only 100::/64 and
//!   everything outside 2000::/3, fc00::/7 and fe80::/10 (for example SRv6
//!   SIDs 5f00::/16, RFC 9602) are [`Class::Other`]. A mapped address is
//!   never classified by the IPv4 address inside it: on the wire it is not
//!   an IPv6 destination at all.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Class;

/// Classifies an address; see the module documentation for the rules.
pub fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(a) => classify_v4(a),
        IpAddr::V6(a) => classify_v6(a),
    }
}

/// A global address: [`Class::Gua`] or [`Class::Global4`]. That is the
/// registries' "Globally Reachable" with the departures of the module doc:
/// documentation and NAT64 prefixes count, while benchmarking space
/// (198.18.0.0/15, 2001:2::/48), the rest of the IETF protocol assignments
/// (192.0.0.0/24, 2001::/23), reserved 240.0.0.0/4, site-local, discard-only,
/// IPv4-compatible and unassigned IPv6 space do not, nor does anything
/// private, shared, link-local, loopback or multicast.
pub fn is_global(ip: IpAddr) -> bool {
    matches!(classify(ip), Class::Gua | Class::Global4)
}

/// Classifies an IPv4 address: the first row of the `V4` table that contains it,
/// else [`Class::Global4`].
pub fn classify_v4(a: Ipv4Addr) -> Class {
    let x = u32::from(a);
    V4.iter()
        .find(|row| row.contains(x))
        .map_or(Class::Global4, |row| row.class)
}

/// Classifies an IPv6 address: the first row of the `V6` table that contains it,
/// else [`Class::Other`] (the remaining space is reserved or multicast).
pub fn classify_v6(a: Ipv6Addr) -> Class {
    let x = u128::from(a);
    V6.iter()
        .find(|row| row.contains(x))
        .map_or(Class::Other, |row| row.class)
}

struct Row4 {
    net: u32,
    len: u32,
    class: Class,
}

impl Row4 {
    const fn contains(&self, x: u32) -> bool {
        // `checked_shl` keeps a /0 row (mask 0) from overflowing the shift.
        let mask = match u32::MAX.checked_shl(32 - self.len) {
            Some(m) => m,
            None => 0,
        };
        x & mask == self.net
    }
}

struct Row6 {
    net: u128,
    len: u32,
    class: Class,
}

impl Row6 {
    const fn contains(&self, x: u128) -> bool {
        let mask = match u128::MAX.checked_shl(128 - self.len) {
            Some(m) => m,
            None => 0,
        };
        x & mask == self.net
    }
}

const fn r4(a: [u8; 4], len: u32, class: Class) -> Row4 {
    Row4 {
        net: u32::from_be_bytes(a),
        len,
        class,
    }
}

const fn r6(net: u128, len: u32, class: Class) -> Row6 {
    Row6 { net, len, class }
}

/// IANA IPv4 Special-Purpose Address Registry, plus RFC 1918 and RFC 6598,
/// most specific first. Anything not listed is [`Class::Global4`].
const V4: &[Row4] = &[
    // "This network", RFC 791 §3.2.
    r4([0, 0, 0, 0], 8, Class::Other),
    // Private-Use, RFC 1918.
    r4([10, 0, 0, 0], 8, Class::Rfc1918),
    // Shared Address Space (carrier-grade NAT), RFC 6598.
    r4([100, 64, 0, 0], 10, Class::Cgnat),
    // Loopback, RFC 1122 §3.2.1.3.
    r4([127, 0, 0, 0], 8, Class::Other),
    // Link Local, RFC 3927.
    r4([169, 254, 0, 0], 16, Class::LinkLocal4),
    // Private-Use, RFC 1918.
    r4([172, 16, 0, 0], 12, Class::Rfc1918),
    // Port Control Protocol Anycast, RFC 7723 (globally reachable).
    r4([192, 0, 0, 9], 32, Class::Global4),
    // TURN Anycast, RFC 8155 (globally reachable).
    r4([192, 0, 0, 10], 32, Class::Global4),
    // IETF Protocol Assignments, RFC 6890 §2.1: DS-Lite 192.0.0.0/29
    // (RFC 6333), the dummy address 192.0.0.8 (RFC 7600), the NAT64
    // discovery addresses 192.0.0.170/171 (RFC 7050, RFC 8880), ...
    r4([192, 0, 0, 0], 24, Class::Other),
    // Documentation TEST-NET-1, RFC 5737: global for the lab.
    r4([192, 0, 2, 0], 24, Class::Global4),
    // Private-Use, RFC 1918.
    r4([192, 168, 0, 0], 16, Class::Rfc1918),
    // Benchmarking, RFC 2544.
    r4([198, 18, 0, 0], 15, Class::Other),
    // Documentation TEST-NET-2 and TEST-NET-3, RFC 5737: global for the lab.
    r4([198, 51, 100, 0], 24, Class::Global4),
    r4([203, 0, 113, 0], 24, Class::Global4),
    // Multicast, RFC 5771.
    r4([224, 0, 0, 0], 4, Class::Other),
    // Reserved, RFC 1112 §4, including Limited Broadcast 255.255.255.255
    // (RFC 919 §7).
    r4([240, 0, 0, 0], 4, Class::Other),
];

/// IANA IPv6 Special-Purpose Address Registry and the RFC 4291 address
/// architecture, most specific first. Anything not listed is
/// [`Class::Other`].
const V6: &[Row6] = &[
    // Unspecified and Loopback, RFC 4291 §2.5.2 and §2.5.3.
    r6(0, 128, Class::Other),
    r6(1, 128, Class::Other),
    // IPv4-mapped, RFC 4291 §2.5.5.2.
    r6(0xffff_0000_0000, 96, Class::Other),
    // IPv4-IPv6 translation (NAT64 well-known prefix), RFC 6052 §2.1, and
    // local-use translation, RFC 8215: destinations behind a translator.
    r6(0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96, Class::Gua),
    r6(0x0064_ff9b_0001_0000_0000_0000_0000_0000, 48, Class::Gua),
    // Discard-Only, RFC 6666.
    r6(0x0100_0000_0000_0000_0000_0000_0000_0000, 64, Class::Other),
    // The globally reachable rows inside IETF Protocol Assignments:
    // PCP anycast (RFC 7723), TURN anycast (RFC 8155), DNS-SD SRP anycast
    // (RFC 9665), AMT (RFC 7450), AS112-v6 (RFC 7535), ORCHIDv2 (RFC 7343),
    // Drone Remote ID DETs (RFC 9374), and Teredo (RFC 4380, our choice).
    r6(0x2001_0001_0000_0000_0000_0000_0000_0001, 128, Class::Gua),
    r6(0x2001_0001_0000_0000_0000_0000_0000_0002, 128, Class::Gua),
    r6(0x2001_0001_0000_0000_0000_0000_0000_0003, 128, Class::Gua),
    r6(0x2001_0003_0000_0000_0000_0000_0000_0000, 32, Class::Gua),
    r6(0x2001_0004_0112_0000_0000_0000_0000_0000, 48, Class::Gua),
    r6(0x2001_0020_0000_0000_0000_0000_0000_0000, 28, Class::Gua),
    r6(0x2001_0030_0000_0000_0000_0000_0000_0000, 28, Class::Gua),
    r6(0x2001_0000_0000_0000_0000_0000_0000_0000, 32, Class::Gua),
    // IETF Protocol Assignments, RFC 2928: benchmarking 2001:2::/48
    // (RFC 5180), deprecated ORCHID 2001:10::/28 (RFC 4843), unassigned.
    r6(0x2001_0000_0000_0000_0000_0000_0000_0000, 23, Class::Other),
    // Documentation, RFC 3849 and RFC 9637: global for the lab. (Both are
    // inside 2000::/3 and would be Gua anyway; listed to say so.)
    r6(0x2001_0db8_0000_0000_0000_0000_0000_0000, 32, Class::Gua),
    r6(0x3fff_0000_0000_0000_0000_0000_0000_0000, 20, Class::Gua),
    // Global Unicast, RFC 4291 §2.4 (IANA allocates from 2000::/3 only);
    // includes 6to4 2002::/16 (RFC 3056).
    r6(0x2000_0000_0000_0000_0000_0000_0000_0000, 3, Class::Gua),
    // Unique Local, RFC 4193 §3.1 (the whole /7, L bit 0 or 1).
    r6(0xfc00_0000_0000_0000_0000_0000_0000_0000, 7, Class::Ula),
    // Link-Local Unicast, RFC 4291 §2.5.6. fec0::/10 (site-local, RFC 3879)
    // is the next /10 and falls through to Other.
    r6(0xfe80_0000_0000_0000_0000_0000_0000_0000, 10, Class::Lla),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Class {
        classify(s.parse().unwrap())
    }

    #[test]
    fn ipv4_table() {
        let table = [
            // RFC 1918 and its edges.
            ("10.0.0.0", Class::Rfc1918),
            ("10.255.255.255", Class::Rfc1918),
            ("9.255.255.255", Class::Global4),
            ("11.0.0.0", Class::Global4),
            ("172.15.255.255", Class::Global4),
            ("172.16.0.0", Class::Rfc1918),
            ("172.31.255.255", Class::Rfc1918),
            ("172.32.0.0", Class::Global4),
            ("192.168.0.1", Class::Rfc1918),
            ("192.167.255.255", Class::Global4),
            ("192.169.0.0", Class::Global4),
            // Shared address space 100.64.0.0/10 and its edges.
            ("100.63.255.255", Class::Global4),
            ("100.64.0.0", Class::Cgnat),
            ("100.100.100.100", Class::Cgnat),
            ("100.127.255.255", Class::Cgnat),
            ("100.128.0.0", Class::Global4),
            // Link-local 169.254.0.0/16 and its edges.
            ("169.253.255.255", Class::Global4),
            ("169.254.0.0", Class::LinkLocal4),
            ("169.254.169.254", Class::LinkLocal4),
            ("169.254.255.255", Class::LinkLocal4),
            ("169.255.0.0", Class::Global4),
            // Documentation counts as global.
            ("192.0.2.1", Class::Global4),
            ("198.51.100.7", Class::Global4),
            ("203.0.113.255", Class::Global4),
            // Global.
            ("1.1.1.1", Class::Global4),
            ("8.8.8.8", Class::Global4),
            ("223.255.255.255", Class::Global4),
            // IETF protocol assignments: mostly other, two anycast rows global.
            ("192.0.0.0", Class::Other),
            ("192.0.0.8", Class::Other),
            ("192.0.0.9", Class::Global4),
            ("192.0.0.10", Class::Global4),
            ("192.0.0.170", Class::Other),
            ("192.0.0.171", Class::Other),
            ("192.0.1.0", Class::Global4),
            // Benchmarking.
            ("198.18.0.1", Class::Other),
            ("198.19.255.255", Class::Other),
            ("198.17.255.255", Class::Global4),
            ("198.20.0.0", Class::Global4),
            // Other.
            ("0.0.0.0", Class::Other),
            ("0.255.255.255", Class::Other),
            ("127.0.0.1", Class::Other),
            ("127.255.255.255", Class::Other),
            ("224.0.0.1", Class::Other),
            ("239.255.255.250", Class::Other),
            ("240.0.0.1", Class::Other),
            ("255.255.255.255", Class::Other),
        ];
        for (addr, want) in table {
            assert_eq!(c(addr), want, "{addr}");
        }
    }

    #[test]
    fn ipv6_table() {
        let table = [
            // Global unicast, documentation and transition prefixes.
            ("2001:db8::1", Class::Gua),
            ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", Class::Gua),
            ("3fff::1", Class::Gua),
            ("3fff:fff::1", Class::Gua),
            ("2606:4700:4700::1111", Class::Gua),
            ("2000::", Class::Gua),
            ("3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Class::Gua),
            ("2002:c000:201::1", Class::Gua),
            ("64:ff9b::192.0.2.1", Class::Gua),
            ("64:ff9b::a00:1", Class::Gua),
            ("64:ff9b:1::1", Class::Gua),
            ("64:ff9b:1:ffff::1", Class::Gua),
            ("64:ff9b:2::1", Class::Other),
            ("64:ff9b::1:0:0:1", Class::Other),
            // 2001::/23 rows.
            ("2001::1", Class::Gua),
            ("2001:0:ffff::1", Class::Gua),
            ("2001:1::1", Class::Gua),
            ("2001:1::2", Class::Gua),
            ("2001:1::3", Class::Gua),
            ("2001:1::4", Class::Other),
            ("2001:2::1", Class::Other),
            ("2001:3::1", Class::Gua),
            ("2001:4:112::1", Class::Gua),
            ("2001:4:113::1", Class::Other),
            ("2001:10::1", Class::Other),
            ("2001:20::1", Class::Gua),
            ("2001:2f:ffff::1", Class::Gua),
            ("2001:30::1", Class::Gua),
            ("2001:3f::1", Class::Gua),
            ("2001:40::1", Class::Other),
            ("2001:1ff::1", Class::Other),
            ("2001:200::1", Class::Gua),
            // ULA: the whole fc00::/7.
            ("fc00::1", Class::Ula),
            ("fd00::1", Class::Ula),
            ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Class::Ula),
            ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Class::Other),
            ("fe00::1", Class::Other),
            // Link-local fe80::/10, and site-local fec0::/10 next to it.
            ("fe80::1", Class::Lla),
            ("fe80::fc00:ff:fe00:1", Class::Lla),
            ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Class::Lla),
            ("fec0::1", Class::Other),
            ("feff::1", Class::Other),
            // `fc::1` starts with "fc" but is not a ULA.
            ("fc::1", Class::Other),
            // Other.
            ("::", Class::Other),
            ("::1", Class::Other),
            ("::2", Class::Other),
            ("::ffff:192.0.2.1", Class::Other),
            ("::ffff:10.0.0.1", Class::Other),
            ("::192.0.2.1", Class::Other),
            ("100::1", Class::Other),
            ("5f00::1", Class::Other),
            ("4000::1", Class::Other),
            ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Class::Other),
            ("ff02::1", Class::Other),
            ("ff0e::1", Class::Other),
            ("ff05::1:3", Class::Other),
        ];
        for (addr, want) in table {
            assert_eq!(c(addr), want, "{addr}");
        }
    }

    #[test]
    fn global_excludes_every_range_not_globally_reachable() {
        let global = [
            "8.8.8.8",
            "192.0.0.9",
            "192.0.0.10",
            "192.0.2.1",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.100.1",
            "203.0.113.1",
            "223.255.255.255",
            "2001:db8::1",
            "3fff::1",
            "2606:4700:4700::1111",
            "64:ff9b::808:808",
            "64:ff9b:1::1",
            "2002::1",
            "2001::1",
            "2001:1::1",
            "2001:3::1",
            "2001:4:112::1",
            "2001:20::1",
            "2001:30::1",
        ];
        // Not global; each of these is an address a hand-written "neither
        // private nor special" test would call global.
        let not_global = [
            // Benchmarking, RFC 2544: not globally reachable (RFC 6890).
            "198.18.0.0",
            "198.18.0.1",
            "198.19.255.255",
            // IETF Protocol Assignments other than the two anycast rows.
            "192.0.0.0",
            "192.0.0.8",
            "192.0.0.170",
            "192.0.0.171",
            "192.0.0.255",
            // Reserved 240.0.0.0/4, up to the limited broadcast.
            "240.0.0.1",
            "255.255.255.254",
            // IPv6: outside the NAT64 prefixes, discard-only, the rest of
            // 2001::/23, site-local, IPv4-compatible, unassigned.
            "64:ff9b:2::1",
            "100::1",
            "2001:1::4",
            "2001:2::1",
            "2001:10::1",
            "2001:40::1",
            "fec0::1",
            "::192.0.2.1",
            "::2",
            "4000::1",
            "5f00::1",
            "1fff::1",
            // And the ranges both rules always agreed on.
            "0.0.0.1",
            "10.0.0.1",
            "100.64.0.1",
            "127.0.0.1",
            "169.254.0.1",
            "172.16.0.1",
            "192.168.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:8.8.8.8",
            "fc00::1",
            "fe80::1",
            "ff0e::1",
        ];
        for a in global {
            assert!(is_global(a.parse().unwrap()), "{a}");
        }
        for a in not_global {
            assert!(!is_global(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn every_class_is_reachable() {
        let seen: std::collections::BTreeSet<Class> = [
            "2001:db8::1",
            "fd00::1",
            "fe80::1",
            "10.0.0.1",
            "100.64.0.1",
            "192.0.2.1",
            "169.254.0.1",
            "::1",
        ]
        .into_iter()
        .map(c)
        .collect();
        assert_eq!(seen.len(), 8);
    }

    #[test]
    fn tables_are_well_formed() {
        // Every row's network has no bits set past its prefix length, else
        // it could never match.
        for row in V4 {
            assert!(row.len <= 32);
            assert!(row.contains(row.net), "{:#x}/{}", row.net, row.len);
        }
        for row in V6 {
            assert!(row.len <= 128);
            assert!(row.contains(row.net), "{:#x}/{}", row.net, row.len);
        }
    }
}
