//! `/pairs` on NAT64 networks: IPv4 destinations become their NAT64
//! addresses when no IPv4 works, under the preferred prefix.

use std::net::{IpAddr, Ipv4Addr};

use super::tests::src;
use super::*;
use crate::probe::known64::{Nat64Prefix, Source};
use crate::probe::verdicts::{Families, State, Verdicts};
use crate::testutil::{host, ip, source_verdict, verdicts};

fn prefix(source: Source, p: &str) -> Nat64Prefix {
    Nat64Prefix {
        source,
        prefix: p.parse().unwrap(),
        interface: None,
        router: None,
        expires: None,
    }
}

/// An IPv6-only host (plus a dead IPv4 source when `v4`) whose IPv6
/// works, with these NAT64 prefixes.
fn nat64_net(
    v4: bool,
    ipv4: State,
    prefixes: Vec<Nat64Prefix>,
) -> (crate::inventory::Snapshot, Verdicts) {
    let mut addrs = vec![src("2001:db8:1::2")];
    if v4 {
        addrs.push(src("192.168.1.2"));
    }
    let h = host(addrs);
    let mut v = verdicts(
        h.addresses
            .iter()
            .map(|a| {
                let state = if a.addr.is_ipv4() { ipv4 } else { State::Ok };
                source_verdict(a, state, None)
            })
            .collect(),
        vec![],
    );
    v.families = Families {
        ipv4,
        ipv6: State::Ok,
    };
    let mut union: Vec<_> = prefixes.iter().map(|p| p.prefix).collect();
    union.sort();
    union.dedup();
    v.nat64_prefixes = union;
    v.nat64 = prefixes;
    (h, v)
}

fn shown(got: &[Pair]) -> Vec<(String, String, Option<Ipv4Addr>)> {
    got.iter()
        .map(|p| {
            (
                p.destination.to_string(),
                p.source.addr.to_string(),
                p.nat64,
            )
        })
        .collect()
}

#[test]
fn an_ipv4_literal_becomes_its_nat64_address_under_the_routers_prefix() {
    let (h, v) = nat64_net(
        false,
        State::Failed,
        vec![
            prefix(Source::Ra, "2001:db8:64::/96"),
            prefix(Source::Config, "2001:db8:c0::/96"),
            prefix(Source::Rfc7050, "64:ff9b::/96"),
        ],
    );
    let got = pairs(&[ip("203.0.113.20")], &h, &v, &Options::default());
    assert_eq!(
        shown(&got),
        [(
            "2001:db8:64::cb00:7114".to_string(),
            "2001:db8:1::2".to_string(),
            Some(Ipv4Addr::new(203, 0, 113, 20))
        )]
    );
}

#[test]
fn config_before_rfc7050_and_every_prefix_length() {
    for (len, want) in [
        ("2001:db8::/32", "2001:db8:cb00:7114::"),
        ("2001:db8:100::/40", "2001:db8:1cb:71:14::"),
        ("2001:db8:122:344::/64", "2001:db8:122:344:cb:71:1400:0"),
    ] {
        let (h, v) = nat64_net(
            true,
            State::Failed,
            vec![
                prefix(Source::Config, len),
                prefix(Source::Rfc7050, "64:ff9b::/96"),
            ],
        );
        let got = pairs(&[ip("203.0.113.20")], &h, &v, &Options::default());
        assert_eq!(got.len(), 1, "{len}");
        assert_eq!(got[0].destination, ip(want), "{len}");
        assert_eq!(got[0].source.addr, ip("2001:db8:1::2"));
    }
}

#[test]
fn nothing_is_translated_while_ipv4_works_or_is_unknown_or_ipv6_fails() {
    for ipv4 in [State::Ok, State::Unknown] {
        let (h, v) = nat64_net(true, ipv4, vec![prefix(Source::Ra, "64:ff9b::/96")]);
        let got = pairs(&[ip("203.0.113.20")], &h, &v, &Options::default());
        assert_eq!(got[0].destination, ip("203.0.113.20"), "{ipv4:?}");
        assert_eq!(got[0].nat64, None);
    }
    let (h, mut v) = nat64_net(
        false,
        State::Failed,
        vec![prefix(Source::Ra, "64:ff9b::/96")],
    );
    v.families.ipv6 = State::Unknown;
    assert!(pairs(&[ip("203.0.113.20")], &h, &v, &Options::default()).is_empty());
    // No prefix known: no pair at all on an IPv6-only host.
    let (h, v) = nat64_net(false, State::Failed, vec![]);
    assert!(pairs(&[ip("203.0.113.20")], &h, &v, &Options::default()).is_empty());
}

#[test]
fn the_well_known_prefix_never_carries_a_private_ipv4_and_local_ones_stay() {
    let (h, v) = nat64_net(
        true,
        State::Failed,
        vec![prefix(Source::Ra, "64:ff9b::/96")],
    );
    let (d, behind) = nat64_destinations(
        &[
            ip("10.1.2.3"),
            ip("192.168.1.9"), // on the host's own subnet
            ip("127.0.0.1"),
            ip("169.254.1.1"),
            ip("224.0.0.1"),
            ip("198.51.100.7"),
        ],
        &h,
        &v,
    );
    assert_eq!(
        d,
        [
            ip("10.1.2.3"),
            ip("192.168.1.9"),
            ip("127.0.0.1"),
            ip("169.254.1.1"),
            ip("224.0.0.1"),
            ip("64:ff9b::c633:6407"),
        ]
    );
    assert_eq!(behind.len(), 1);
    // A network-specific prefix carries a private one.
    let (h, v) = nat64_net(
        false,
        State::Failed,
        vec![prefix(Source::Ra, "2001:db8:64::/96")],
    );
    let got = pairs(&[ip("10.1.2.3")], &h, &v, &Options::default());
    assert_eq!(got[0].destination, ip("2001:db8:64::a01:203"));
    assert_eq!(got[0].nat64, Some(Ipv4Addr::new(10, 1, 2, 3)));
}

#[test]
fn a_synthesized_aaaa_for_the_same_destination_is_listed_once() {
    let (h, v) = nat64_net(
        false,
        State::Failed,
        vec![prefix(Source::Ra, "64:ff9b::/96")],
    );
    // The DNS64 answer (AAAA) and the A record of one IPv4-only name, an
    // IPv4-mapped spelling too, and a native AAAA.
    let dests: Vec<IpAddr> = vec![
        ip("64:ff9b::cb00:7114"),
        ip("203.0.113.20"),
        ip("::ffff:203.0.113.20"),
        ip("2001:db8:9::1"),
    ];
    let got = pairs(&dests, &h, &v, &Options::default());
    let mut s = shown(&got);
    s.sort();
    assert_eq!(
        s,
        [
            ("2001:db8:9::1".into(), "2001:db8:1::2".into(), None),
            (
                "64:ff9b::cb00:7114".into(),
                "2001:db8:1::2".into(),
                Some(Ipv4Addr::new(203, 0, 113, 20))
            ),
        ]
    );
}

#[test]
fn without_source_detail_the_first_prefix_serves() {
    let (h, mut v) = nat64_net(false, State::Failed, vec![]);
    v.nat64_prefixes = vec!["2001:db8:64::/96".parse().unwrap()];
    let got = pairs(&[ip("203.0.113.20")], &h, &v, &Options::default());
    assert_eq!(got[0].destination, ip("2001:db8:64::cb00:7114"));
}
