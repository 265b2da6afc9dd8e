//! Unit tests of RFC 6724 alone: the policy tables and scopes, source
//! selection (§5) and destination ordering (§6), with the RFC's examples.
//! The sources built here (on ifindex 1) are shared with `tests_pairs`.

use std::cmp::Ordering;
use std::net::IpAddr;
use std::time::Duration;

use super::destination::{
    Ranked, avoid_deprecated, compare_destinations, higher_precedence, longest_prefix,
    matching_label, matching_scope, native_transport, smaller_scope,
};
use super::source::is_candidate;
use super::table::{SCOPE_GLOBAL, SCOPE_LINK, SCOPE_SITE, common_prefix_len, is_encapsulated};
use super::*;
use crate::inventory::{Address, Gateway, Snapshot};
use crate::testutil::{address, host, ip};

/// A source on eth0 with ifindex 1, the interface these tests' routes name:
/// /24 for IPv4, /64 for IPv6, scope id 1 when RFC 6724 calls it link-local
/// IPv6 (the loopback too).
pub(super) fn src(s: &str) -> Address {
    let a = address(s);
    Address {
        ifindex: 1,
        scope_id: u32::from(scope(a.addr) == SCOPE_LINK && a.addr.is_ipv6()),
        ..a
    }
}

pub(super) fn deprecated(s: &str) -> Address {
    Address {
        deprecated: true,
        ..src(s)
    }
}

pub(super) fn temporary(s: &str) -> Address {
    Address {
        temporary: true,
        ..src(s)
    }
}

pub(super) fn on(ifindex: u32, s: &str) -> Address {
    Address {
        ifindex,
        interface: format!("eth{ifindex}"),
        ..src(s)
    }
}

pub(super) fn rfc6724() -> PolicyTable {
    PolicyTable::new(Table::Rfc6724, &Snapshot::default())
}

/// `select_source` with no route knowledge, candidates in both orders.
fn select(dst: &str, candidates: &[Address]) -> Option<IpAddr> {
    let forward = select_source(ip(dst), &Route::default(), candidates, &rfc6724()).map(|a| a.addr);
    let reversed: Vec<Address> = candidates.iter().rev().cloned().collect();
    let backward = select_source(ip(dst), &Route::default(), &reversed, &rfc6724()).map(|a| a.addr);
    assert_eq!(forward, backward, "{dst}: the order of candidates decided");
    forward
}

/// `sort_destinations` as (destination, source) strings; checks that the
/// reversed input gives the same answer when `both_ways`.
pub(super) fn order(
    dsts: &[&str],
    sources: Vec<Address>,
    both_ways: bool,
) -> Vec<(String, String)> {
    let h = host(sources);
    let run = |dsts: Vec<IpAddr>| -> Vec<(String, String)> {
        sort_destinations(&dsts, &h, &rfc6724())
            .into_iter()
            .map(|(d, s)| (d.to_string(), s.map_or("-".into(), |s| s.addr.to_string())))
            .collect()
    };
    let forward = run(dsts.iter().map(|d| ip(d)).collect());
    if both_ways {
        let backward = run(dsts.iter().rev().map(|d| ip(d)).collect());
        assert_eq!(forward, backward, "{dsts:?}: the input order decided");
    }
    forward
}

pub(super) fn expect(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(d, s)| (d.to_string(), s.to_string()))
        .collect()
}

// ---- policy table and scope ------------------------------------------

#[test]
fn rfc6724_policy_table() {
    let p = rfc6724();
    let cases = [
        ("::1", (50, 0)),
        ("2001:db8::1", (40, 1)),
        ("::ffff:192.0.2.1", (35, 4)),
        ("192.0.2.1", (35, 4)),
        ("127.0.0.1", (35, 4)),
        ("2002:c633:6401::1", (30, 2)),
        ("2001:0:4136:e378::1", (5, 5)),
        ("2001:1::1", (40, 1)), // outside 2001::/32
        ("fd00:1::1", (3, 13)),
        ("fc00::1", (3, 13)),
        ("::192.0.2.1", (1, 3)),
        ("fec0::1", (1, 11)),
        ("3ffe::1", (1, 12)),
        ("fe80::1", (40, 1)),
        ("ff02::1", (40, 1)),
    ];
    for (a, want) in cases {
        assert_eq!(p.classify(ip(a)), want, "{a}");
    }
}

#[test]
fn update_policy_table_and_known_local_ulas() {
    let h = host(vec![src("fd12:3456:789a:1::2"), src("2001:db8:1::2")]);
    let p = PolicyTable::new(Table::Update, &h);
    let cases = [
        ("::1", (50, 0)),
        ("2001:db8::1", (40, 1)),
        ("192.0.2.1", (20, 4)),
        ("2002:c633:6401::1", (5, 2)),
        ("2001:0:4136:e378::1", (5, 5)),
        ("fd00:1::1", (30, 13)),
        // The /48 of the host's own ULA is known-local.
        ("fd12:3456:789a:ffff::1", (45, 14)),
        ("fd12:3456:789b::1", (30, 13)),
        ("fec0::1", (1, 11)),
    ];
    for (a, want) in cases {
        assert_eq!(p.classify(ip(a)), want, "{a}");
    }
    // The RFC 6724 table knows nothing of local ULAs.
    let old = PolicyTable::new(Table::Rfc6724, &h);
    assert_eq!(old.classify(ip("fd12:3456:789a:ffff::1")), (3, 13));
}

#[test]
fn update_table_puts_ula_before_ipv4() {
    let sources = vec![src("fd12:3456:789a:1::2"), src("192.0.2.2")];
    let h = host(sources);
    let dsts = [ip("192.0.2.1"), ip("fd00:9::1"), ip("fd12:3456:789a:2::1")];
    let got = |table| -> Vec<IpAddr> {
        sort_destinations(&dsts, &h, &PolicyTable::new(table, &h))
            .into_iter()
            .map(|(d, _)| d)
            .collect()
    };
    // RFC 6724: IPv4 35 > ULA 3. Update: known-local 45 > ULA 30 > IPv4 20.
    // (fd00:9::1 has no matching label with the known-local source: rule 5.)
    assert_eq!(got(Table::Rfc6724)[0], ip("192.0.2.1"));
    assert_eq!(got(Table::Update)[0], ip("fd12:3456:789a:2::1"));
}

#[test]
fn scopes() {
    let cases = [
        ("127.0.0.1", SCOPE_LINK),
        ("169.254.1.2", SCOPE_LINK),
        ("10.1.2.3", SCOPE_GLOBAL),
        ("8.8.8.8", SCOPE_GLOBAL),
        ("224.0.0.1", SCOPE_GLOBAL),
        ("::ffff:169.254.1.2", SCOPE_LINK),
        ("::1", SCOPE_LINK),
        ("fe80::1", SCOPE_LINK),
        ("febf::1", SCOPE_LINK),
        ("fec0::1", SCOPE_SITE),
        ("fd00::1", SCOPE_GLOBAL),
        ("2001:db8::1", SCOPE_GLOBAL),
        ("ff01::1", 0x1),
        ("ff02::1", SCOPE_LINK),
        ("ff04::1", 0x4),
        ("ff05::1", SCOPE_SITE),
        ("ff08::1", 0x8),
        ("ff0e::1", SCOPE_GLOBAL),
    ];
    for (a, want) in cases {
        assert_eq!(scope(ip(a)), want, "{a}");
    }
}

#[test]
fn common_prefix_lengths() {
    let cases = [
        ("fe80::1", "fe80::2", 64),
        ("fe81::1", "fe80::2", 15),
        ("2001:db8:1::2", "2001:db8:1::1", 64), // capped at the /64
        ("2001:db8:3f44::2", "2001:db8:3ffe::1", 40),
        ("192.0.2.2", "192.0.2.1", 24), // capped at the /24
        ("10.2.3.4", "10.255.0.1", 8),
        ("10.2.3.4", "23.1.1.1", 3),
        ("192.0.2.2", "2001:db8::1", 0),
    ];
    for (s, d, want) in cases {
        assert_eq!(common_prefix_len(&src(s), ip(d)), want, "{s} {d}");
    }
}

// ---- RFC 6724 §10.1: source selection examples -------------------------

#[test]
fn rfc6724_10_1_source_examples() {
    let cases: [(&str, Vec<Address>, &str, &str); 7] = [
        (
            "2001:db8:1::1",
            vec![src("2001:db8:3::1"), src("fe80::1")],
            "2001:db8:3::1",
            "prefer appropriate scope",
        ),
        (
            "ff05::1",
            vec![src("2001:db8:3::1"), src("fe80::1")],
            "2001:db8:3::1",
            "prefer appropriate scope",
        ),
        (
            "2001:db8:1::1",
            vec![deprecated("2001:db8:1::1"), src("2001:db8:2::1")],
            "2001:db8:1::1",
            "prefer same address",
        ),
        (
            "fe80::1",
            vec![deprecated("fe80::2"), src("2001:db8:1::1")],
            "fe80::2",
            "prefer appropriate scope",
        ),
        (
            "2001:db8:1::1",
            vec![src("2001:db8:1::2"), src("2001:db8:3::2")],
            "2001:db8:1::2",
            "longest matching prefix",
        ),
        (
            "2002:c633:6401::1",
            vec![
                temporary("2002:c633:6401::d5e3:7953:13eb:22e8"),
                src("2001:db8:1::2"),
            ],
            "2002:c633:6401::d5e3:7953:13eb:22e8",
            "prefer matching label",
        ),
        (
            "2001:db8:1::d5e3:0:0:1",
            vec![
                src("2001:db8:1::2"),
                temporary("2001:db8:1::d5e3:7953:13eb:22e8"),
            ],
            "2001:db8:1::d5e3:7953:13eb:22e8",
            "prefer temporary address",
        ),
    ];
    for (dst, candidates, want, rule) in cases {
        assert_eq!(select(dst, &candidates), Some(ip(want)), "{dst}: {rule}");
    }
}

/// §10.1's sixth example (care-of 2001:db8:1::2 or home 2001:db8:3::2 for
/// 2001:db8:1::1) gives the home address by rule 4. getapr knows no home
/// addresses, so rule 8 decides: the documented departure.
#[test]
fn rfc6724_10_1_home_address_example_falls_to_rule_8() {
    let candidates = [src("2001:db8:1::2"), src("2001:db8:3::2")];
    assert_eq!(
        select("2001:db8:1::1", &candidates),
        Some(ip("2001:db8:1::2"))
    );
}

// ---- RFC 6724 §10.2: destination selection examples --------------------

#[test]
fn rfc6724_10_2_prefer_matching_scope_first() {
    // RFC: 2001:db8:1::1 (src 2001:db8:1::2) then 198.51.100.121 (src
    // 169.254.13.78). Here a link-local source is no candidate for a
    // global destination (§4 as getapr applies it), so the IPv4
    // destination has no source and is last by rule 1: the same order.
    let got = order(
        &["2001:db8:1::1", "198.51.100.121"],
        vec![src("2001:db8:1::2"), src("fe80::1"), src("169.254.13.78")],
        true,
    );
    assert_eq!(
        got,
        expect(&[("2001:db8:1::1", "2001:db8:1::2"), ("198.51.100.121", "-")])
    );
}

#[test]
fn rfc6724_10_2_prefer_matching_scope_second() {
    // RFC: 198.51.100.121 (src 198.51.100.117) then 2001:db8:1::1 (src
    // fe80::1); the same order, the IPv6 one without a source (see above).
    let got = order(
        &["2001:db8:1::1", "198.51.100.121"],
        vec![src("fe80::1"), src("198.51.100.117")],
        true,
    );
    assert_eq!(
        got,
        expect(&[("198.51.100.121", "198.51.100.117"), ("2001:db8:1::1", "-")])
    );
}

#[test]
fn rfc6724_10_2_prefer_higher_precedence() {
    let got = order(
        &["2001:db8:1::1", "10.1.2.3"],
        vec![src("2001:db8:1::2"), src("fe80::1"), src("10.1.2.4")],
        true,
    );
    assert_eq!(
        got,
        expect(&[("2001:db8:1::1", "2001:db8:1::2"), ("10.1.2.3", "10.1.2.4")])
    );
}

#[test]
fn rfc6724_10_2_prefer_smaller_scope() {
    let got = order(
        &["2001:db8:1::1", "fe80::1"],
        vec![src("2001:db8:1::2"), src("fe80::2")],
        true,
    );
    assert_eq!(
        got,
        expect(&[("fe80::1", "fe80::2"), ("2001:db8:1::1", "2001:db8:1::2")])
    );
}

/// §10.2's fifth example puts 2001:db8:1::1 (src home 2001:db8:3::1)
/// before fe80::1 by rule 4. Without home addresses rule 8 decides.
#[test]
fn rfc6724_10_2_home_address_example_falls_to_rule_8() {
    let got = order(
        &["2001:db8:1::1", "fe80::1"],
        vec![src("2001:db8:1::2"), src("2001:db8:3::1"), src("fe80::2")],
        true,
    );
    assert_eq!(
        got,
        expect(&[("fe80::1", "fe80::2"), ("2001:db8:1::1", "2001:db8:1::2")])
    );
}

#[test]
fn rfc6724_10_2_avoid_deprecated_addresses() {
    let got = order(
        &["2001:db8:1::1", "fe80::1"],
        vec![src("2001:db8:1::2"), deprecated("fe80::2")],
        true,
    );
    assert_eq!(
        got,
        expect(&[("2001:db8:1::1", "2001:db8:1::2"), ("fe80::1", "fe80::2")])
    );
}

#[test]
fn rfc6724_10_2_longest_matching_prefix() {
    let got = order(
        &["2001:db8:1::1", "2001:db8:3ffe::1"],
        vec![
            src("2001:db8:1::2"),
            src("2001:db8:3f44::2"),
            src("fe80::2"),
        ],
        true,
    );
    assert_eq!(
        got,
        expect(&[
            ("2001:db8:1::1", "2001:db8:1::2"),
            ("2001:db8:3ffe::1", "2001:db8:3f44::2")
        ])
    );
}

#[test]
fn rfc6724_10_2_prefer_matching_label() {
    let got = order(
        &["2002:c633:6401::1", "2001:db8:1::1"],
        vec![src("2002:c633:6401::2"), src("fe80::2")],
        true,
    );
    assert_eq!(
        got,
        expect(&[
            ("2002:c633:6401::1", "2002:c633:6401::2"),
            ("2001:db8:1::1", "2002:c633:6401::2")
        ])
    );
}

#[test]
fn rfc6724_10_2_prefer_higher_precedence_6to4() {
    let got = order(
        &["2002:c633:6401::1", "2001:db8:1::1"],
        vec![
            src("2002:c633:6401::2"),
            src("2001:db8:1::2"),
            src("fe80::2"),
        ],
        true,
    );
    assert_eq!(
        got,
        expect(&[
            ("2001:db8:1::1", "2001:db8:1::2"),
            ("2002:c633:6401::1", "2002:c633:6401::2")
        ])
    );
}

// ---- §5 rules, one table each -------------------------------------------

#[test]
fn source_candidates_follow_section_4() {
    let all = [
        src("192.0.2.2"),
        src("169.254.1.2"),
        src("2001:db8:1::2"),
        on(2, "fe80::2"),
    ];
    let route = Route::default();
    let cands = |dst: &str, route: &Route| -> Vec<IpAddr> {
        all.iter()
            .filter(|a| is_candidate(a, ip(dst), route))
            .map(|a| a.addr)
            .collect()
    };
    assert_eq!(cands("198.51.100.1", &route), [ip("192.0.2.2")]);
    assert_eq!(cands("::ffff:198.51.100.1", &route), [ip("192.0.2.2")]);
    assert_eq!(
        cands("169.254.9.9", &route),
        [ip("192.0.2.2"), ip("169.254.1.2")]
    );
    assert_eq!(cands("2001:db8:9::1", &route), [ip("2001:db8:1::2")]);
    assert_eq!(
        cands("fe80::9", &route),
        [ip("2001:db8:1::2"), ip("fe80::2")]
    );
    // A link-local destination on a known interface: only its sources.
    let on2 = Route {
        ifindex: Some(2),
        next_hop: None,
    };
    assert_eq!(cands("fe80::9", &on2), [ip("fe80::2")]);
    let on1 = Route {
        ifindex: Some(1),
        next_hop: None,
    };
    assert_eq!(cands("fe80::9", &on1), [ip("2001:db8:1::2")]);
}

#[test]
fn source_rule_3_avoid_deprecated() {
    let candidates = [deprecated("2001:db8:1::2"), src("2001:db8:1::3")];
    assert_eq!(
        select("2001:db8:1::1", &candidates),
        Some(ip("2001:db8:1::3"))
    );
}

#[test]
fn source_rule_5_prefer_outgoing_interface() {
    // Rule 8 alone would pick 2001:db8:1::2 (a longer match).
    let candidates = [on(1, "2001:db8:1::2"), on(2, "2001:db8:2::2")];
    let route = Route {
        ifindex: Some(2),
        next_hop: None,
    };
    let got = select_source(ip("2001:db8:1:9::1"), &route, &candidates, &rfc6724());
    assert_eq!(got.map(|a| a.addr), Some(ip("2001:db8:2::2")));
}

#[test]
fn source_rule_5_5_prefer_the_next_hops_prefix() {
    // Same interface; rule 8 alone would pick 10.0.0.5 (8.8.8.8 shares
    // 6 bits with 10/8 and none with 192/8).
    let h = Snapshot {
        addresses: vec![src("10.0.0.5"), src("192.168.1.5")],
        gateways4: vec![Gateway {
            addr: ip("192.168.1.1"),
            interface: "eth0".into(),
            ifindex: 1,
            scope_id: 0,
        }],
        gateways6: vec![],
    };
    let route = Route::to(ip("8.8.8.8"), &h);
    assert_eq!(
        route,
        Route {
            ifindex: Some(1),
            next_hop: Some(ip("192.168.1.1"))
        }
    );
    let got = select_source(ip("8.8.8.8"), &route, &h.addresses, &rfc6724());
    assert_eq!(got.map(|a| a.addr), Some(ip("192.168.1.5")));
    let without = select_source(ip("8.8.8.8"), &Route::default(), &h.addresses, &rfc6724());
    assert_eq!(without.map(|a| a.addr), Some(ip("10.0.0.5")));
}

#[test]
fn source_rule_7_prefer_temporary_before_rule_8() {
    // Rule 7 over rule 8: the temporary one shares less with the destination.
    let candidates = [src("2001:db8:1::2"), temporary("2001:db8:1::8000:0:0:2")];
    assert_eq!(
        select("2001:db8:1::3", &candidates),
        Some(ip("2001:db8:1::8000:0:0:2"))
    );
}

#[test]
fn route_to_on_link_and_via_gateway() {
    let h = Snapshot {
        addresses: vec![on(1, "192.0.2.2"), on(2, "2001:db8:1::2")],
        gateways4: vec![],
        gateways6: vec![Gateway {
            addr: ip("fe80::1"),
            interface: "eth3".into(),
            ifindex: 3,
            scope_id: 3,
        }],
    };
    assert_eq!(Route::to(ip("192.0.2.77"), &h).ifindex, Some(1));
    assert_eq!(Route::to(ip("198.51.100.1"), &h), Route::default());
    assert_eq!(Route::to(ip("2001:db8:1::9"), &h).ifindex, Some(2));
    assert_eq!(
        Route::to(ip("2001:db8:9::9"), &h),
        Route {
            ifindex: Some(3),
            next_hop: Some(ip("fe80::1"))
        }
    );
    assert_eq!(Route::to(ip("fe80::9"), &h), Route::default());
}

// ---- §6 rules, one table each -------------------------------------------

#[test]
fn destination_rule_1_unusable_last() {
    // 198.51.100.1 has no IPv4 source at all.
    let got = order(
        &["198.51.100.1", "2001:db8:1::1"],
        vec![src("2001:db8:1::2")],
        true,
    );
    assert_eq!(
        got,
        expect(&[("2001:db8:1::1", "2001:db8:1::2"), ("198.51.100.1", "-")])
    );
}

#[test]
fn destination_rule_3_avoid_deprecated_source() {
    // Rule 6 alone would put IPv6 (40) before IPv4 (35).
    let got = order(
        &["2001:db8:1::1", "192.0.2.1"],
        vec![deprecated("2001:db8:1::2"), src("192.0.2.2")],
        true,
    );
    assert_eq!(
        got,
        expect(&[
            ("192.0.2.1", "192.0.2.2"),
            ("2001:db8:1::1", "2001:db8:1::2")
        ])
    );
}

#[test]
fn destination_rules_on_hand_built_pairs() {
    // Rules that default tables cannot isolate, checked on the rule
    // functions: (rule, function, a better than b).
    let p = rfc6724();
    let s6 = src("2001:db8:1::2");
    let base = Ranked::new(ip("2001:db8:1::1"), Some(&s6), None, &p);
    let with = |f: &dyn Fn(&mut Ranked<'_>)| {
        let mut r = base.clone();
        f(&mut r);
        r
    };
    type Rule = fn(&Ranked<'_>, &Ranked<'_>) -> Ordering;
    let cases: [(&str, Rule, Ranked<'_>, Ranked<'_>); 7] = [
        (
            "2 matching scope",
            matching_scope,
            base.clone(),
            with(&|r| r.source_scope = SCOPE_LINK),
        ),
        (
            "3 deprecated",
            avoid_deprecated,
            base.clone(),
            with(&|r| r.source_deprecated = true),
        ),
        (
            "5 label",
            matching_label,
            base.clone(),
            with(&|r| r.source_label = 2),
        ),
        (
            "6 precedence",
            higher_precedence,
            base.clone(),
            with(&|r| r.precedence = 30),
        ),
        (
            "7 native",
            native_transport,
            base.clone(),
            with(&|r| r.encapsulated = true),
        ),
        (
            "8 smaller scope",
            smaller_scope,
            // Both scopes match their sources, so rule 2 ties.
            with(&|r| {
                r.scope = SCOPE_SITE;
                r.source_scope = SCOPE_SITE;
            }),
            base.clone(),
        ),
        (
            "9 longest prefix",
            longest_prefix,
            base.clone(),
            with(&|r| r.common_prefix = 40),
        ),
    ];
    for (rule, f, better, worse) in cases {
        assert_eq!(f(&better, &worse), Ordering::Less, "rule {rule}");
        assert_eq!(f(&worse, &better), Ordering::Greater, "rule {rule}");
        assert_eq!(f(&better, &better), Ordering::Equal, "rule {rule}");
        assert_eq!(
            compare_destinations(&better, &worse, Duration::ZERO),
            Ordering::Less,
            "rule {rule}"
        );
    }
    assert!(is_encapsulated(ip("2002:c633:6401::1")));
    assert!(is_encapsulated(ip("2001:0:4136:e378::1")));
    assert!(!is_encapsulated(ip("2001:db8::1")));
    assert!(!is_encapsulated(ip("192.0.2.1")));
}

#[test]
fn destination_rule_9_is_ipv6_only() {
    // As in Go: a 10/8 source does not make 10.x or 23.x closer.
    let dsts = ["54.83.193.112", "23.23.172.185", "10.9.9.9", "10.1.2.200"];
    let got = order(&dsts, vec![src("10.1.2.4")], false);
    let got: Vec<&str> = got.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(got, dsts);
}

#[test]
fn destination_rule_10_keeps_the_order() {
    let dsts = ["192.0.2.9", "192.0.2.1", "198.51.100.1", "192.0.2.9"];
    let got = order(&dsts, vec![src("192.0.2.2")], false);
    let got: Vec<&str> = got.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(got, dsts);
}
