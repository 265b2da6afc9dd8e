//! Unit tests of what getapr adds to RFC 6724: the verdicts (failed
//! sources, dead destinations, the RTT rules), RFC 8305 §4 interleaving, and
//! the invariants of [`pairs`] over random inputs.

use std::net::IpAddr;
use std::time::Duration;

use proptest::prelude::*;

use super::tests::{expect, on, src};
use super::*;
use crate::inventory::Snapshot;
use crate::probe::verdicts::{DestinationVerdict, State, Verdicts};
use crate::testutil::{destination_verdict, host, ip, path, source_verdict, verdicts};

// ---- getapr's verdict rules ---------------------------------------------

/// A learned destination that answers from `source` in `rtt_ms`.
fn reached(d: &str, source: &str, rtt_ms: u64) -> DestinationVerdict {
    destination_verdict(
        d,
        true,
        State::Ok,
        vec![path(source, State::Ok, Some(rtt_ms))],
    )
}

fn pair_strings(got: &[Pair]) -> Vec<(String, String)> {
    got.iter()
        .map(|p| (p.destination.to_string(), p.source.addr.to_string()))
        .collect()
}

const DUAL: [&str; 4] = [
    "2001:db8:9::1",
    "2001:db8:9::2",
    "198.51.100.1",
    "198.51.100.2",
];

fn dual_host() -> Snapshot {
    host(vec![src("2001:db8:1::2"), src("192.0.2.2"), src("fe80::2")])
}

fn dsts(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|d| ip(d)).collect()
}

/// The host's own loopback is reached from loopback, never from an
/// interface address (a server that trusts 127.0.0.1 only would refuse
/// that), whatever the verdicts or the other destinations.
#[test]
fn a_loopback_destination_pairs_with_loopback() {
    let h = dual_host();
    let got = pairs(
        &dsts(&["127.0.0.5", "::1", "::ffff:127.0.0.1", "2001:db8:9::1"]),
        &h,
        &Verdicts::default(),
        &Options::default(),
    );
    let mut strings = pair_strings(&got);
    strings.sort();
    assert_eq!(
        strings,
        expect(&[
            ("127.0.0.5", "127.0.0.1"),
            ("2001:db8:9::1", "2001:db8:1::2"),
            ("::1", "::1"),
            ("::ffff:127.0.0.1", "127.0.0.1"),
        ])
    );
    assert!(
        got.iter()
            .filter(|p| p.destination.to_canonical().is_loopback())
            .all(|p| p.source.interface == "lo"),
        "{got:?}"
    );
}

#[test]
fn unknown_keeps_everything() {
    let got = pairs(
        &dsts(&DUAL),
        &dual_host(),
        &Verdicts::default(),
        &Options::default(),
    );
    assert_eq!(
        pair_strings(&got),
        expect(&[
            ("2001:db8:9::1", "2001:db8:1::2"),
            ("198.51.100.1", "192.0.2.2"),
            ("2001:db8:9::2", "2001:db8:1::2"),
            ("198.51.100.2", "192.0.2.2"),
        ])
    );
    // Explicitly unknown verdicts are the same as none.
    let h = dual_host();
    let unknown = verdicts(
        h.addresses
            .iter()
            .map(|a| source_verdict(a, State::Unknown, None))
            .collect(),
        DUAL.iter()
            .map(|d| destination_verdict(d, true, State::Unknown, vec![]))
            .collect(),
    );
    assert_eq!(pairs(&dsts(&DUAL), &h, &unknown, &Options::default()), got);
}

#[test]
fn failed_source_is_dropped() {
    let h = dual_host();
    let v = verdicts(
        vec![source_verdict(&h.addresses[0], State::Failed, None)],
        vec![],
    );
    let got = pairs(&dsts(&DUAL), &h, &v, &Options::default());
    assert_eq!(
        pair_strings(&got),
        expect(&[("198.51.100.1", "192.0.2.2"), ("198.51.100.2", "192.0.2.2")])
    );
}

#[test]
fn failed_source_gives_way_to_another_source() {
    let h = host(vec![on(1, "2001:db8:1::2"), on(2, "2001:db8:2::2")]);
    let v = verdicts(
        vec![source_verdict(&h.addresses[0], State::Failed, None)],
        vec![],
    );
    let got = pairs(&dsts(&["2001:db8:1::1"]), &h, &v, &Options::default());
    assert_eq!(
        pair_strings(&got),
        expect(&[("2001:db8:1::1", "2001:db8:2::2")])
    );
}

#[test]
fn dead_destination_is_dropped() {
    let h = dual_host();
    let v = verdicts(
        vec![],
        vec![
            destination_verdict("2001:db8:9::1", true, State::Failed, vec![]),
            // Not learned (a configured target): not "dead" for answers.
            destination_verdict("198.51.100.1", false, State::Failed, vec![]),
        ],
    );
    let got = pairs(&dsts(&DUAL), &h, &v, &Options::default());
    assert_eq!(
        pair_strings(&got),
        expect(&[
            ("2001:db8:9::2", "2001:db8:1::2"),
            ("198.51.100.1", "192.0.2.2"),
            ("198.51.100.2", "192.0.2.2"),
        ])
    );
}

#[test]
fn rtt_decides_between_rules_8_and_9() {
    // Rule 9 prefers 2001:db8:1::1 (64 bits in common with the source).
    let h = host(vec![src("2001:db8:1::2")]);
    let list = dsts(&["2001:db8:1::1", "2001:db8:9::1"]);
    let plain = pairs(&list, &h, &Verdicts::default(), &Options::default());
    assert_eq!(plain[0].destination, ip("2001:db8:1::1"));
    // Both measured: the lower RTT wins over rule 9.
    let v = verdicts(
        vec![],
        vec![
            reached("2001:db8:1::1", "2001:db8:1::2", 80),
            reached("2001:db8:9::1", "2001:db8:1::2", 20),
        ],
    );
    let got = pairs(&list, &h, &v, &Options::default());
    assert_eq!(got[0].destination, ip("2001:db8:9::1"));
    assert_eq!(got[0].rtt, Some(Duration::from_millis(20)));
    // Only one measured: rule 9 again.
    let one = verdicts(vec![], vec![reached("2001:db8:9::1", "2001:db8:1::2", 20)]);
    let got = pairs(&list, &h, &one, &Options::default());
    assert_eq!(got[0].destination, ip("2001:db8:1::1"));
}

#[test]
fn rtt_within_the_margin_orders_ipv4_and_never_beats_earlier_rules() {
    let h = dual_host();
    let v = verdicts(
        vec![
            source_verdict(&h.addresses[0], State::Ok, Some(50)),
            source_verdict(&h.addresses[1], State::Ok, Some(10)),
        ],
        vec![
            reached("198.51.100.1", "192.0.2.2", 50),
            reached("198.51.100.2", "192.0.2.2", 30),
        ],
    );
    let got = pairs(&dsts(&DUAL), &h, &v, &Options::default());
    // IPv6 stays first (rule 6) although slower than 198.51.100.2: 20 ms
    // is within the margin. Among the A records the faster path comes
    // first.
    assert_eq!(
        pair_strings(&got),
        expect(&[
            ("2001:db8:9::1", "2001:db8:1::2"),
            ("198.51.100.2", "192.0.2.2"),
            ("2001:db8:9::2", "2001:db8:1::2"),
            ("198.51.100.1", "192.0.2.2"),
        ])
    );
    // The IPv6 pairs carry the source's RTT, as no path was measured.
    assert_eq!(got[0].rtt, Some(Duration::from_millis(50)));
}

// ---- the faster-family rule ---------------------------------------------

/// The dual host with its IPv6 and IPv4 sources measured at `v6_ms` and
/// `v4_ms` (`None`: no RTT), and no path measured.
fn source_rtts(v6_ms: Option<u64>, v4_ms: Option<u64>) -> (Snapshot, Verdicts) {
    let h = dual_host();
    let v = verdicts(
        vec![
            source_verdict(&h.addresses[0], State::Ok, v6_ms),
            source_verdict(&h.addresses[1], State::Ok, v4_ms),
        ],
        vec![],
    );
    (h, v)
}

fn destinations(got: &[Pair]) -> Vec<String> {
    got.iter().map(|p| p.destination.to_string()).collect()
}

const V4_FIRST: [&str; 4] = [
    "198.51.100.1",
    "2001:db8:9::1",
    "198.51.100.2",
    "2001:db8:9::2",
];
const V6_FIRST: [&str; 4] = [
    "2001:db8:9::1",
    "198.51.100.1",
    "2001:db8:9::2",
    "198.51.100.2",
];

#[test]
fn slower_family_by_more_than_the_margin_goes_after() {
    // IPv6 at 300 ms, IPv4 at 1 ms: IPv4 leads, and the interleave starts
    // with it.
    let (h, v) = source_rtts(Some(300), Some(1));
    let got = pairs(&dsts(&DUAL), &h, &v, &Options::default());
    assert_eq!(destinations(&got), V4_FIRST);
    assert_eq!(got[0].rtt, Some(Duration::from_millis(1)));
    assert_eq!(got[1].rtt, Some(Duration::from_millis(300)));
    // With two of the first family before the other's turn.
    let two = Options {
        first_family_count: 2,
        ..Options::default()
    };
    let got = pairs(&dsts(&DUAL), &h, &v, &two);
    assert_eq!(
        destinations(&got),
        [
            "198.51.100.1",
            "198.51.100.2",
            "2001:db8:9::1",
            "2001:db8:9::2"
        ]
    );
    // The input order does not decide.
    let reversed: Vec<IpAddr> = dsts(&DUAL).into_iter().rev().collect();
    let got = pairs(&reversed, &h, &v, &Options::default());
    assert_eq!(
        destinations(&got),
        [
            "198.51.100.2",
            "2001:db8:9::2",
            "198.51.100.1",
            "2001:db8:9::1"
        ]
    );
}

#[test]
fn the_lead_is_reported_only_when_the_rtt_rule_changed_it() {
    let lead = |v6: Option<u64>, v4: Option<u64>| {
        let (h, v) = source_rtts(v6, v4);
        ranked_pairs(&dsts(&DUAL), &h, &v, &Options::default()).1
    };
    assert_eq!(
        lead(Some(300), Some(1)),
        Some(RttLead {
            ipv4: true,
            rtt: Duration::from_millis(1),
            other_rtt: Duration::from_millis(300),
        })
    );
    // RFC 6724 puts IPv6 first anyway: the rule changed nothing.
    assert_eq!(lead(Some(1), Some(300)), None);
    // Within the margin, or unmeasured.
    assert_eq!(lead(Some(20), Some(1)), None);
    assert_eq!(lead(None, Some(1)), None);
    // One family only: nothing to lead over.
    let (h, v) = source_rtts(Some(300), Some(1));
    let v4_only = dsts(&["198.51.100.1", "198.51.100.2"]);
    assert_eq!(ranked_pairs(&v4_only, &h, &v, &Options::default()).1, None);
}

#[test]
fn faster_family_beats_precedence_both_ways() {
    // RFC 6724 puts IPv4 (precedence 35) before a ULA (3); a ULA path
    // faster by more than the margin leads.
    let h = host(vec![src("fd00:1::2"), src("192.0.2.2")]);
    let list = dsts(&["198.51.100.1", "fd00:9::1"]);
    let plain = pairs(&list, &h, &Verdicts::default(), &Options::default());
    assert_eq!(destinations(&plain), ["198.51.100.1", "fd00:9::1"]);
    let v = verdicts(
        vec![
            source_verdict(&h.addresses[0], State::Ok, Some(2)),
            source_verdict(&h.addresses[1], State::Ok, Some(80)),
        ],
        vec![],
    );
    let (got, lead) = ranked_pairs(&list, &h, &v, &Options::default());
    assert_eq!(destinations(&got), ["fd00:9::1", "198.51.100.1"]);
    assert_eq!(lead.map(|l| l.ipv4), Some(false));
}

#[test]
fn within_the_margin_rfc6724_decides() {
    let margin = DEFAULT_RTT_MARGIN.as_millis() as u64;
    // Exactly the margin slower: not more, so rule 6 keeps IPv6 first.
    let (h, v) = source_rtts(Some(10 + margin), Some(10));
    let got = pairs(&dsts(&DUAL), &h, &v, &Options::default());
    assert_eq!(destinations(&got), V6_FIRST);
    // One millisecond more and IPv4 leads.
    let (h, v) = source_rtts(Some(11 + margin), Some(10));
    let got = pairs(&dsts(&DUAL), &h, &v, &Options::default());
    assert_eq!(destinations(&got), V4_FIRST);
    // A wider configured margin keeps IPv6 first at 300 ms against 1 ms;
    // a zero margin lets any difference decide.
    let (h, v) = source_rtts(Some(300), Some(1));
    let wide = Options {
        rtt_margin: Duration::from_millis(400),
        ..Options::default()
    };
    assert_eq!(destinations(&pairs(&dsts(&DUAL), &h, &v, &wide)), V6_FIRST);
    let (h, v) = source_rtts(Some(11), Some(10));
    let zero = Options {
        rtt_margin: Duration::ZERO,
        ..Options::default()
    };
    assert_eq!(destinations(&pairs(&dsts(&DUAL), &h, &v, &zero)), V4_FIRST);
    // Equal RTTs with a zero margin: RFC 6724.
    let (h, v) = source_rtts(Some(10), Some(10));
    assert_eq!(destinations(&pairs(&dsts(&DUAL), &h, &v, &zero)), V6_FIRST);
}

#[test]
fn unknown_rtt_never_demotes() {
    // IPv6 unmeasured, IPv4 fast: RFC 6724 (IPv6 first).
    let (h, v) = source_rtts(None, Some(1));
    let got = pairs(&dsts(&DUAL), &h, &v, &Options::default());
    assert_eq!(destinations(&got), V6_FIRST);
    assert_eq!(got[0].rtt, None);
    // IPv4 unmeasured, IPv6 slow: IPv6 still first; an unknown RTT does
    // not count as fast either.
    let (h, v) = source_rtts(Some(300), None);
    let got = pairs(&dsts(&DUAL), &h, &v, &Options::default());
    assert_eq!(destinations(&got), V6_FIRST);
}

#[test]
fn per_destination_rtt_preferred_over_the_sources() {
    // The IPv6 source is fast to the probe targets, but the paths to these
    // destinations are slow: the paths decide, IPv4 leads.
    let h = dual_host();
    let v = verdicts(
        vec![
            source_verdict(&h.addresses[0], State::Ok, Some(5)),
            source_verdict(&h.addresses[1], State::Ok, Some(20)),
        ],
        vec![
            reached("2001:db8:9::1", "2001:db8:1::2", 300),
            reached("2001:db8:9::2", "2001:db8:1::2", 310),
        ],
    );
    let got = pairs(&dsts(&DUAL), &h, &v, &Options::default());
    assert_eq!(destinations(&got), V4_FIRST);
    assert_eq!(got[1].rtt, Some(Duration::from_millis(300)));
    // The other way round: a slow IPv6 source but fast paths to these
    // destinations keeps IPv6 first.
    let v = verdicts(
        vec![
            source_verdict(&h.addresses[0], State::Ok, Some(300)),
            source_verdict(&h.addresses[1], State::Ok, Some(20)),
        ],
        vec![
            reached("2001:db8:9::1", "2001:db8:1::2", 6),
            reached("2001:db8:9::2", "2001:db8:1::2", 7),
        ],
    );
    let got = pairs(&dsts(&DUAL), &h, &v, &Options::default());
    assert_eq!(destinations(&got), V6_FIRST);
    assert_eq!(got[0].rtt, Some(Duration::from_millis(6)));
}

// ---- RFC 8305 §4 interleaving -------------------------------------------

#[test]
fn interleave_by_family() {
    let is4 = |s: &&str| s.contains('.');
    let cases: [(&[&str], usize, &[&str]); 6] = [
        (
            &["a:1", "a:2", "a:3", "4.1", "4.2"],
            1,
            &["a:1", "4.1", "a:2", "4.2", "a:3"],
        ),
        (
            &["a:1", "a:2", "a:3", "4.1", "4.2"],
            2,
            &["a:1", "a:2", "4.1", "a:3", "4.2"],
        ),
        (
            &["4.1", "a:1", "a:2", "4.2"],
            1,
            &["4.1", "a:1", "4.2", "a:2"],
        ),
        (&["a:1", "a:2", "4.1"], 0, &["a:1", "4.1", "a:2"]),
        (
            &["a:1", "4.1", "4.2", "4.3"],
            2,
            &["a:1", "4.1", "4.2", "4.3"],
        ),
        (&[], 1, &[]),
    ];
    for (input, count, want) in cases {
        assert_eq!(
            interleave(input.to_vec(), count, is4),
            want,
            "{input:?} {count}"
        );
    }
}

#[test]
fn pairs_interleave_with_first_family_count_2() {
    let options = Options {
        first_family_count: 2,
        ..Options::default()
    };
    let got = pairs(&dsts(&DUAL), &dual_host(), &Verdicts::default(), &options);
    let order: Vec<String> = got.iter().map(|p| p.destination.to_string()).collect();
    assert_eq!(
        order,
        [
            "2001:db8:9::1",
            "2001:db8:9::2",
            "198.51.100.1",
            "198.51.100.2"
        ]
    );
}

// ---- invariants ----------------------------------------------------------

const POOL: [&str; 12] = [
    "2001:db8:1::1",
    "2001:db8:9::1",
    "2002:c633:6401::1",
    "2001:0:4136:e378::1",
    "fd00:1::1",
    "fe80::1",
    "198.51.100.1",
    "192.0.2.1",
    "10.1.2.3",
    "169.254.9.9",
    "::ffff:198.51.100.7",
    "ff05::1",
];
const SOURCES: [&str; 7] = [
    "2001:db8:1::2",
    "2002:c633:6401::2",
    "fd00:1::2",
    "fe80::2",
    "192.0.2.2",
    "10.1.2.4",
    "169.254.1.1",
];

proptest! {
    #[test]
    fn pairs_only_permute_and_keep_what_can_work(
        picks in proptest::collection::vec(0..POOL.len(), 0..12),
        have in proptest::collection::vec(any::<bool>(), SOURCES.len()),
        update in any::<bool>(),
        count in 0usize..4,
        rtts in proptest::collection::vec(proptest::option::of(0u64..400), SOURCES.len()),
        margin in 0u64..100,
    ) {
        let list: Vec<IpAddr> = picks.iter().map(|&i| ip(POOL[i])).collect();
        let h = host(SOURCES.iter().zip(&have).filter(|(_, h)| **h).map(|(s, _)| src(s)).collect());
        let options = Options {
            table: if update { Table::Update } else { Table::Rfc6724 },
            first_family_count: count,
            rtt_margin: Duration::from_millis(margin),
        };
        // Measured RTTs make the order less total (the RTT rules compare
        // some pairs only); the invariants must hold all the same.
        let measured = verdicts(
            h.addresses
                .iter()
                .zip(&rtts)
                .map(|(a, rtt)| source_verdict(a, State::Ok, *rtt))
                .collect(),
            vec![],
        );
        let got = pairs(&list, &h, &measured, &options);
        // Never adds: every output destination is taken from the input.
        let mut left = list.clone();
        for p in &got {
            let i = left.iter().position(|d| *d == p.destination);
            prop_assert!(i.is_some(), "{} was added", p.destination);
            left.swap_remove(i.unwrap_or_default());
            prop_assert!(h.addresses.contains(&p.source));
        }
        // Keeps every destination that has a usable source.
        let policy = PolicyTable::new(options.table, &h);
        for d in left {
            let route = Route::to(d, &h);
            prop_assert!(select_source(d, &route, &h.addresses, &policy).is_none(), "{d} was dropped");
        }
        // sort_destinations is a permutation of its input.
        let mut sorted: Vec<IpAddr> = sort_destinations(&list, &h, &policy).into_iter().map(|(d, _)| d).collect();
        let mut input = list.clone();
        sorted.sort();
        input.sort();
        prop_assert_eq!(sorted, input);
    }
}

#[test]
fn a_blackholed_family_ranks_last_and_is_not_interleaved() {
    use crate::probe::verdicts::Mtu;
    let h = dual_host();
    let mut v = verdicts(
        h.addresses
            .iter()
            .map(|a| source_verdict(a, State::Ok, None))
            .collect(),
        vec![],
    );
    v.host = std::sync::Arc::new(h.clone());
    let before = pairs(&dsts(&DUAL), &h, &v, &Options::default());
    assert!(before[0].destination.is_ipv6(), "RFC 6724 leads with IPv6");
    v.path_mtu.ipv6 = Mtu::Blackhole;
    let got = pairs(&dsts(&DUAL), &h, &v, &Options::default());
    assert_eq!(
        pair_strings(&got),
        expect(&[
            ("198.51.100.1", "192.0.2.2"),
            ("198.51.100.2", "192.0.2.2"),
            ("2001:db8:9::1", "2001:db8:1::2"),
            ("2001:db8:9::2", "2001:db8:1::2"),
        ])
    );
    // Both families blackholed: the usual order again.
    v.path_mtu.ipv4 = Mtu::Blackhole;
    assert_eq!(pairs(&dsts(&DUAL), &h, &v, &Options::default()), before);
    // `unknown` changes nothing.
    v.path_mtu = Default::default();
    assert_eq!(pairs(&dsts(&DUAL), &h, &v, &Options::default()), before);
}
