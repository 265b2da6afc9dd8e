//! NAT64 prefix discovery (RFC 7050) over the address format of RFC 6052.
//!
//! Pure: the driver asks the upstreams for the AAAA records of
//! `ipv4only.arpa` and hands the addresses to [`discover`]; [`embed`] and
//! [`extract`] translate between an IPv4 address and its IPv6 form under a
//! prefix.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;

/// RFC 7050 §2.2: the well-known name whose only A records are these two
/// (RFC 7050 §8.2, IANA special-purpose 192.0.0.170/31).
pub const WELL_KNOWN_NAME: &str = "ipv4only.arpa";
pub const WELL_KNOWN: [Ipv4Addr; 2] =
    [Ipv4Addr::new(192, 0, 0, 170), Ipv4Addr::new(192, 0, 0, 171)];

/// RFC 6052 §2.1: the Well-Known Prefix.
pub const WELL_KNOWN_PREFIX: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);

/// RFC 6052 §3.1: the Well-Known Prefix MUST NOT represent non-global IPv4
/// addresses (private, shared, loopback...), so such an address is never
/// embedded under it; a network-specific prefix may carry any.
pub fn may_embed(prefix: Ipv6Net, v4: Ipv4Addr) -> bool {
    prefix != WELL_KNOWN_PREFIX || crate::inventory::is_global(IpAddr::V4(v4))
}

/// RFC 6052 §2.2: the only prefix lengths an IPv4-embedded address may use.
pub const LENGTHS: [u8; 6] = [32, 40, 48, 56, 64, 96];

/// The byte positions of the four IPv4 octets inside the IPv6 address for a
/// prefix length (RFC 6052 §2.2, Figure 1). Bits 64–71 (byte 8, the
/// "u" octet) are never used: the IPv4 address is split around it.
fn positions(prefix_len: u8) -> Option<[usize; 4]> {
    Some(match prefix_len {
        32 => [4, 5, 6, 7],
        40 => [5, 6, 7, 9],
        48 => [6, 7, 9, 10],
        56 => [7, 9, 10, 11],
        64 => [9, 10, 11, 12],
        96 => [12, 13, 14, 15],
        _ => return None,
    })
}

/// The IPv4-embedded IPv6 address of `v4` under `prefix` (RFC 6052 §2.2):
/// prefix bits, the IPv4 octets around the zero u octet, zero suffix.
/// `None` when the prefix length is not one of [`LENGTHS`].
pub fn embed(prefix: Ipv6Net, v4: Ipv4Addr) -> Option<Ipv6Addr> {
    let at = positions(prefix.prefix_len())?;
    let mut out = prefix.network().octets();
    // §2.2: the u octet and the suffix are zero.
    out[usize::from(prefix.prefix_len() / 8)..].fill(0);
    for (i, b) in at.into_iter().zip(v4.octets()) {
        out[i] = b;
    }
    Some(Ipv6Addr::from(out))
}

/// The IPv4 address embedded in `v6` under `prefix` (RFC 6052 §2.3), or
/// `None` when `v6` is outside the prefix, the length is not one of
/// [`LENGTHS`], or the u octet (bits 64–71) is not zero as §2.2 requires.
pub fn extract(prefix: Ipv6Net, v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let at = positions(prefix.prefix_len())?;
    if !prefix.contains(&v6) {
        return None;
    }
    let o = v6.octets();
    if prefix.prefix_len() < 96 && o[8] != 0 {
        return None;
    }
    Some(Ipv4Addr::from(at.map(|i| o[i])))
}

/// The IPv4 destination behind `addr` when it lies in one of the NAT64
/// `prefixes` (RFC 6052 §2.3), else `None`.
pub fn behind(prefixes: &[Ipv6Net], addr: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = addr else {
        return None;
    };
    prefixes.iter().find_map(|&p| extract(p, v6))
}

/// The NAT64 prefixes revealed by the AAAA records of `ipv4only.arpa`
/// (RFC 7050 §3), sorted and without duplicates.
///
/// Each address is searched for 192.0.0.170 or 192.0.0.171 at every
/// RFC 6052 position. RFC 7050 §3 wants the other well-known address to
/// settle an address that matches at more than one position: a candidate
/// prefix is kept when the other address shows up under that same prefix.
/// When nothing settles it (a DNS64 that synthesized one record only), all
/// candidates are kept: a wrong extra prefix only makes de-synthesis a
/// little more eager, a missing one makes it fail.
pub fn discover(aaaa: &[Ipv6Addr]) -> Vec<Ipv6Net> {
    let candidates = |a: Ipv6Addr| {
        LENGTHS.into_iter().filter_map(move |len| {
            let prefix = Ipv6Net::new(a, len).ok()?.trunc();
            let v4 = extract(prefix, a)?;
            WELL_KNOWN.contains(&v4).then_some((prefix, v4))
        })
    };
    let mut found = Vec::new();
    for &a in aaaa {
        let mine: Vec<_> = candidates(a).collect();
        let settled: Vec<_> = mine
            .iter()
            .filter(|(p, v4)| {
                aaaa.iter()
                    .any(|&b| b != a && candidates(b).any(|(q, w)| q == *p && w != *v4))
            })
            .collect();
        match settled.as_slice() {
            [] => found.extend(mine.iter().map(|(p, _)| *p)),
            some => found.extend(some.iter().map(|(p, _)| *p)),
        }
    }
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }
    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// RFC 6052 §2.4, the table of examples for 192.0.2.33, plus the
    /// well-known prefix of §2.1 (DNS64's tests synthesize from it too).
    pub(crate) const TABLE: [(&str, &str); 7] = [
        ("2001:db8::/32", "2001:db8:c000:221::"),
        ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
        ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
        ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
        ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
        ("2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"),
        ("64:ff9b::/96", "64:ff9b::192.0.2.33"),
    ];

    #[test]
    fn rfc6052_examples_embed_and_extract_at_every_length() {
        let v4 = Ipv4Addr::new(192, 0, 2, 33);
        for (prefix, want) in TABLE {
            assert_eq!(embed(net(prefix), v4), Some(v6(want)), "{prefix}");
            assert_eq!(extract(net(prefix), v6(want)), Some(v4), "{prefix}");
        }
    }

    #[test]
    fn the_well_known_prefix_carries_only_global_ipv4() {
        let nsp = net("2001:db8:64::/96");
        for (v4, global) in [
            ("192.0.2.33", true),
            ("198.51.100.7", true),
            ("10.1.2.3", false),
            ("192.168.1.1", false),
            ("100.64.0.1", false),
            ("127.0.0.1", false),
        ] {
            let v4: Ipv4Addr = v4.parse().unwrap();
            assert_eq!(may_embed(WELL_KNOWN_PREFIX, v4), global, "{v4}");
            assert!(may_embed(nsp, v4), "{v4}");
        }
    }

    #[test]
    fn behind_finds_the_ipv4_destination_under_any_known_prefix() {
        let prefixes: Vec<Ipv6Net> = vec![
            "64:ff9b::/96".parse().unwrap(),
            "2001:db8:64::/48".parse().unwrap(),
        ];
        let v4 = Ipv4Addr::new(198, 51, 100, 7);
        for p in &prefixes {
            let v6 = embed(*p, v4).unwrap();
            assert_eq!(behind(&prefixes, IpAddr::V6(v6)), Some(v4), "{p}");
        }
        assert_eq!(behind(&prefixes, "2001:db8:1::7".parse().unwrap()), None);
        assert_eq!(behind(&prefixes, IpAddr::V4(v4)), None);
        assert_eq!(behind(&[], "64:ff9b::c633:6407".parse().unwrap()), None);
    }

    #[test]
    fn extract_refuses_outside_prefix_bad_length_and_nonzero_u_octet() {
        assert_eq!(
            extract(net("2001:db8::/32"), v6("2001:db9:c000:221::")),
            None
        );
        assert_eq!(
            extract(net("2001:db8::/33"), v6("2001:db8:c000:221::")),
            None
        );
        assert_eq!(embed(net("2001:db8::/33"), Ipv4Addr::LOCALHOST), None);
        // Byte 8 is the u octet for every length but 96.
        assert_eq!(
            extract(net("2001:db8::/32"), v6("2001:db8:c000:221:100::")),
            None
        );
        assert_eq!(
            extract(net("2001:db8:0:0:100::/96"), v6("2001:db8::100:0:c000:221")),
            Some(Ipv4Addr::new(192, 0, 2, 33))
        );
    }

    #[test]
    fn discovers_the_prefix_at_every_length() {
        for (prefix, _) in TABLE {
            let p = net(prefix);
            let aaaa: Vec<_> = WELL_KNOWN.iter().map(|&w| embed(p, w).unwrap()).collect();
            assert_eq!(discover(&aaaa), vec![p], "{prefix}");
            // One record alone is enough too.
            assert_eq!(discover(&aaaa[..1]), vec![p], "{prefix}");
        }
    }

    #[test]
    fn discovers_several_prefixes_and_ignores_plain_addresses() {
        let aaaa = [
            v6("64:ff9b::c000:aa"),
            v6("64:ff9b::c000:ab"),
            v6("2001:db8:c000:aa::"),
            v6("2001:db8::1"),
        ];
        assert_eq!(
            discover(&aaaa),
            vec![net("64:ff9b::/96"), net("2001:db8::/32")]
        );
        assert_eq!(discover(&[v6("2001:db8::1")]), vec![]);
        assert_eq!(discover(&[]), vec![]);
    }

    #[test]
    fn the_other_well_known_address_settles_an_ambiguous_position() {
        // Under the /96 prefix 2001:db8:c000:aa::, 192.0.0.170 lands where
        // a /32 prefix would put it too; 192.0.0.171 under the same /96
        // shows that the /96 reading is the right one.
        let p = net("2001:db8:c000:aa::/96");
        let a = embed(p, WELL_KNOWN[0]).unwrap();
        assert_eq!(a, v6("2001:db8:c000:aa::c000:aa"));
        assert_eq!(discover(&[a]), vec![net("2001:db8::/32"), p]);
        assert_eq!(discover(&[a, embed(p, WELL_KNOWN[1]).unwrap()]), vec![p]);
    }
}
