//! Unit tests of DNS64: when it is on, when an answer is synthesized, the
//! AAAA records at every prefix length, TTLs, exclusions, CNAME chains,
//! DNSSEC, `ipv4only.arpa`, PTR under a prefix, and a property test that
//! the synthesizer is total on any upstream bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{
    Edns, Message as HMessage, MessageType, OpCode, Query as HQuery, ResponseCode,
};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA};
use hickory_proto::rr::{Name, RData, Record as HRecord, RecordType};
use proptest::prelude::*;

use super::*;
use crate::dns::rewrite::tests::rrsig;
use crate::dns::wire::rcode;
use crate::probe::nat64::{WELL_KNOWN_PREFIX, embed};
use crate::probe::verdicts::Families;
use crate::testutil::wire_name;

const NSP: &str = "2001:db8:64::/96";
const NAME: &str = "v4only.example.";

fn net(s: &str) -> Ipv6Net {
    s.parse().unwrap()
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn a(owner: &str, ip: &str, ttl: u32) -> HRecord {
    let ip: Ipv4Addr = ip.parse().unwrap();
    HRecord::from_rdata(name(owner), ttl, RData::A(A(ip)))
}

fn aaaa(owner: &str, ip: &str, ttl: u32) -> HRecord {
    let ip: Ipv6Addr = ip.parse().unwrap();
    HRecord::from_rdata(name(owner), ttl, RData::AAAA(AAAA(ip)))
}

fn cname(owner: &str, target: &str, ttl: u32) -> HRecord {
    HRecord::from_rdata(name(owner), ttl, RData::CNAME(CNAME(name(target))))
}

fn ptr(owner: &str, target: &str, ttl: u32) -> HRecord {
    HRecord::from_rdata(name(owner), ttl, RData::PTR(PTR(name(target))))
}

/// An SOA of `ttl` whose MINIMUM is `minimum`.
fn soa(owner: &str, ttl: u32, minimum: u32) -> HRecord {
    let soa = SOA::new(
        name("ns.example."),
        name("host.example."),
        1,
        3600,
        600,
        86400,
        minimum,
    );
    HRecord::from_rdata(name(owner), ttl, RData::SOA(soa))
}

/// A reply to `qname`/`qtype` with these sections, AD and AA set, an OPT
/// record (DO as given).
fn reply_with(
    qname: &str,
    qtype: u16,
    rc: ResponseCode,
    answers: Vec<HRecord>,
    authorities: Vec<HRecord>,
    do_bit: bool,
) -> Reply {
    let mut m = HMessage::new(0x4242, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.metadata.authentic_data = true;
    m.metadata.authoritative = true;
    m.metadata.response_code = rc;
    m.add_query(HQuery::query(name(qname), RecordType::from(qtype)));
    m.answers = answers;
    m.authorities = authorities;
    let mut e = Edns::new();
    e.set_max_payload(1232);
    e.set_dnssec_ok(do_bit);
    m.set_edns(e);
    Reply::parse(&m.to_vec().unwrap()).unwrap()
}

/// NODATA to AAAA with an SOA whose negative TTL is `neg`.
fn nodata(qname: &str, neg: u32) -> Reply {
    reply_with(
        qname,
        rtype::AAAA,
        ResponseCode::NoError,
        vec![],
        vec![soa("example.", 3600, neg)],
        false,
    )
}

fn a_reply(qname: &str, answers: Vec<HRecord>) -> Reply {
    reply_with(
        qname,
        rtype::A,
        ResponseCode::NoError,
        answers,
        vec![],
        false,
    )
}

fn hmsg(r: &Reply) -> HMessage {
    HMessage::from_vec(r.bytes()).unwrap()
}

/// The answer section as (owner, TTL, data) text.
fn answers(r: &Reply) -> Vec<(String, u32, String)> {
    hmsg(r)
        .answers
        .iter()
        .map(|r| (r.name.to_string(), r.ttl, r.data.to_string()))
        .collect()
}

fn aaaa_of(r: &Reply) -> Vec<Ipv6Addr> {
    hmsg(r)
        .answers
        .iter()
        .filter_map(|r| match r.data {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// `need` for an AAAA query of `qname` (dotted) under `prefixes`.
fn need_aaaa(qname: &str, upstream: &Reply, prefixes: &[Ipv6Net], do_bit: bool) -> Option<Need> {
    need(&wire_name(qname), rtype::AAAA, do_bit, upstream, prefixes)
}

fn synth_aaaa(upstream: &Reply, a: &Reply, prefixes: &[Ipv6Net]) -> Option<Synthesized> {
    synthesize(rtype::AAAA, upstream, 0, a, 0, prefixes, false)
}

/// The nibble-form ip6.arpa name of `v6`, dotted.
fn ip6_arpa(v6: Ipv6Addr) -> String {
    let mut s = String::new();
    for b in v6.octets().iter().rev() {
        s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
    }
    s + "ip6.arpa."
}

fn with(ipv4: State, ipv6: State, prefixes: &[&str]) -> Verdicts {
    Verdicts {
        families: Families { ipv4, ipv6 },
        nat64_prefixes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
        ..Verdicts::default()
    }
}
#[test]
fn auto_synthesizes_only_without_ipv4_with_ipv6_and_a_prefix() {
    use State::{Failed, Ok, Unknown};
    let wkp = ["64:ff9b::/96"];
    assert!(active(Synthesize::Auto, &with(Failed, Ok, &wkp)));
    for (v4, v6) in [(Ok, Ok), (Unknown, Ok), (Failed, Failed), (Failed, Unknown)] {
        assert!(
            !active(Synthesize::Auto, &with(v4, v6, &wkp)),
            "{v4:?} {v6:?}"
        );
    }
    assert!(!active(Synthesize::Auto, &with(Failed, Ok, &[])));
    assert!(active(Synthesize::On, &with(Ok, Ok, &wkp)));
    assert!(!active(Synthesize::On, &with(Failed, Ok, &[])));
    assert!(!active(Synthesize::Off, &with(Failed, Ok, &wkp)));
}

// RFC 6052 §2.4's examples for 192.0.2.33, and the Well-Known Prefix.
use crate::probe::nat64::tests::TABLE;

#[test]
fn synthesizes_at_every_prefix_length() {
    let upstream = nodata(NAME, 60);
    let a = a_reply(NAME, vec![a(NAME, "192.0.2.33", 300)]);
    for (prefix, want) in TABLE {
        let p = [net(prefix)];
        assert_eq!(
            need_aaaa(NAME, &upstream, &p, false),
            Some(Need {
                qname: wire_name(NAME),
                qtype: rtype::A
            })
        );
        let s = synth_aaaa(&upstream, &a, &p).expect(prefix);
        assert_eq!(
            aaaa_of(&s.reply),
            vec![want.parse::<Ipv6Addr>().unwrap()],
            "{prefix}"
        );
        assert_eq!(s.reply.rcode(), rcode::NOERROR);
    }
}

#[test]
fn one_aaaa_per_a_record_and_prefix_the_first_prefix_first() {
    let upstream = nodata(NAME, 60);
    let a = a_reply(
        NAME,
        vec![a(NAME, "192.0.2.1", 300), a(NAME, "198.51.100.2", 300)],
    );
    let prefixes = [net(NSP), WELL_KNOWN_PREFIX];
    let s = synth_aaaa(&upstream, &a, &prefixes).unwrap();
    let want: Vec<Ipv6Addr> = [
        "2001:db8:64::192.0.2.1",
        "64:ff9b::192.0.2.1",
        "2001:db8:64::198.51.100.2",
        "64:ff9b::198.51.100.2",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    assert_eq!(aaaa_of(&s.reply), want);
}

#[test]
fn ttl_is_the_lesser_of_the_a_ttl_and_the_negative_ttl() {
    let p = [net(NSP)];
    // (A TTL, SOA TTL, SOA MINIMUM, expected)
    for (a_ttl, soa_ttl, minimum, want) in [
        (300, 3600, 60, 60),
        (300, 120, 900, 120),
        (30, 3600, 60, 30),
        (300, 3600, 3600, 300),
    ] {
        let upstream = reply_with(
            NAME,
            rtype::AAAA,
            ResponseCode::NoError,
            vec![],
            vec![soa("example.", soa_ttl, minimum)],
            false,
        );
        let a = a_reply(NAME, vec![a(NAME, "192.0.2.1", a_ttl)]);
        let s = synth_aaaa(&upstream, &a, &p).unwrap();
        assert_eq!(answers(&s.reply)[0].1, want, "{a_ttl} {soa_ttl} {minimum}");
        assert_eq!(s.ttl, want);
    }
}

#[test]
fn without_an_soa_the_ttl_is_at_most_600() {
    let p = [net(NSP)];
    for (a_ttl, want) in [(3000, 600), (100, 100)] {
        let upstream = reply_with(
            NAME,
            rtype::AAAA,
            ResponseCode::NoError,
            vec![],
            vec![],
            false,
        );
        let a = a_reply(NAME, vec![a(NAME, "192.0.2.1", a_ttl)]);
        let s = synth_aaaa(&upstream, &a, &p).unwrap();
        assert_eq!(answers(&s.reply)[0].1, want, "{a_ttl}");
        assert_eq!(NO_SOA_TTL, 600);
    }
}

#[test]
fn ttls_count_the_ages_of_both_answers() {
    // The A answer has been cached 20 s (280 s left), the NODATA 10 s
    // (50 s of its 60 left): 50 s left, written as 60 since the sender
    // takes the NODATA's 10 s off again.
    let upstream = nodata(NAME, 60);
    let a = a_reply(NAME, vec![a(NAME, "192.0.2.1", 300)]);
    let s = synthesize(rtype::AAAA, &upstream, 10, &a, 20, &[net(NSP)], false).unwrap();
    assert_eq!(s.ttl, 50);
    assert_eq!(answers(&s.reply)[0].1, 60);
    // The A record is what runs out first.
    let s = synthesize(
        rtype::AAAA,
        &nodata(NAME, 3600),
        10,
        &a,
        290,
        &[net(NSP)],
        false,
    )
    .unwrap();
    assert_eq!(s.ttl, 10);
    assert_eq!(answers(&s.reply)[0].1, 20);
}

#[test]
fn mapped_aaaa_records_count_as_none() {
    let p = [net(NSP)];
    let mapped = reply_with(
        NAME,
        rtype::AAAA,
        ResponseCode::NoError,
        vec![aaaa(NAME, "::ffff:192.0.2.1", 300)],
        vec![],
        false,
    );
    assert!(need_aaaa(NAME, &mapped, &p, false).is_some());
    let a = a_reply(NAME, vec![a(NAME, "192.0.2.1", 300)]);
    let s = synth_aaaa(&mapped, &a, &p).unwrap();
    assert_eq!(
        aaaa_of(&s.reply),
        vec!["2001:db8:64::192.0.2.1".parse::<Ipv6Addr>().unwrap()]
    );
    // A real AAAA beside a mapped one: the upstream's answer stands.
    let mixed = reply_with(
        NAME,
        rtype::AAAA,
        ResponseCode::NoError,
        vec![
            aaaa(NAME, "::ffff:192.0.2.1", 300),
            aaaa(NAME, "2001:db8::1", 300),
        ],
        vec![],
        false,
    );
    assert_eq!(need_aaaa(NAME, &mixed, &p, false), None);
}

#[test]
fn the_well_known_prefix_never_carries_private_ipv4() {
    let upstream = nodata(NAME, 60);
    let private = a_reply(
        NAME,
        vec![a(NAME, "10.1.2.3", 300), a(NAME, "192.168.1.1", 300)],
    );
    assert_eq!(synth_aaaa(&upstream, &private, &[WELL_KNOWN_PREFIX]), None);
    // A network-specific prefix carries any.
    let s = synth_aaaa(&upstream, &private, &[net(NSP)]).unwrap();
    assert_eq!(aaaa_of(&s.reply).len(), 2);
    // Mixed: only the global one under the WKP, both under the NSP.
    let mixed = a_reply(
        NAME,
        vec![a(NAME, "10.1.2.3", 300), a(NAME, "192.0.2.1", 300)],
    );
    let s = synth_aaaa(&upstream, &mixed, &[WELL_KNOWN_PREFIX, net(NSP)]).unwrap();
    let want: Vec<Ipv6Addr> = [
        "2001:db8:64::10.1.2.3",
        "64:ff9b::192.0.2.1",
        "2001:db8:64::192.0.2.1",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    assert_eq!(aaaa_of(&s.reply), want);
}

#[test]
fn nxdomain_stays_nxdomain_and_servfail_is_treated_as_empty() {
    let p = [net(NSP)];
    let nx = reply_with(
        NAME,
        rtype::AAAA,
        ResponseCode::NXDomain,
        vec![],
        vec![soa("example.", 60, 60)],
        false,
    );
    assert_eq!(need_aaaa(NAME, &nx, &p, false), None);
    let fail = reply_with(
        NAME,
        rtype::AAAA,
        ResponseCode::ServFail,
        vec![],
        vec![],
        false,
    );
    assert!(need_aaaa(NAME, &fail, &p, false).is_some());
    let a = a_reply(NAME, vec![a(NAME, "192.0.2.1", 300)]);
    let s = synth_aaaa(&fail, &a, &p).unwrap();
    assert_eq!(s.reply.rcode(), rcode::NOERROR);
    assert_eq!(aaaa_of(&s.reply).len(), 1);
    // An A answer with nothing to synthesize from: the upstream's stands.
    let a_nx = reply_with(
        NAME,
        rtype::A,
        ResponseCode::NXDomain,
        vec![],
        vec![],
        false,
    );
    assert_eq!(synth_aaaa(&fail, &a_nx, &p), None);
    assert_eq!(
        synth_aaaa(&nodata(NAME, 60), &a_reply(NAME, vec![]), &p),
        None
    );
}

#[test]
fn the_cname_chain_of_the_a_answer_is_kept_with_the_aaaa_at_its_end() {
    let alias = "www.v4only.example.";
    let upstream = reply_with(
        alias,
        rtype::AAAA,
        ResponseCode::NoError,
        vec![cname(alias, NAME, 120)],
        vec![soa("example.", 3600, 60)],
        false,
    );
    let a = a_reply(
        alias,
        vec![cname(alias, NAME, 120), a(NAME, "192.0.2.1", 300)],
    );
    let s = synth_aaaa(&upstream, &a, &[net(NSP)]).unwrap();
    assert_eq!(
        answers(&s.reply),
        vec![
            (alias.to_string(), 120, NAME.to_string()),
            (NAME.to_string(), 60, "2001:db8:64::c000:201".to_string()),
        ]
    );
}

#[test]
fn an_upstream_that_synthesizes_is_never_synthesized_again() {
    let p = [net(NSP)];
    let v6 = embed(p[0], Ipv4Addr::new(192, 0, 2, 1))
        .unwrap()
        .to_string();
    let already = reply_with(
        NAME,
        rtype::AAAA,
        ResponseCode::NoError,
        vec![aaaa(NAME, &v6, 300)],
        vec![],
        false,
    );
    assert_eq!(need_aaaa(NAME, &already, &p, false), None);
    // Nor is a real AAAA answer touched.
    let real = reply_with(
        NAME,
        rtype::AAAA,
        ResponseCode::NoError,
        vec![aaaa(NAME, "2001:db8::1", 300)],
        vec![],
        false,
    );
    assert_eq!(need_aaaa(NAME, &real, &p, false), None);
}

#[test]
fn a_signed_answer_to_a_do_query_is_never_synthesized() {
    let p = [net(NSP)];
    let upstream = nodata(NAME, 60);
    let signed_a = reply_with(
        NAME,
        rtype::A,
        ResponseCode::NoError,
        vec![a(NAME, "192.0.2.1", 300), rrsig(NAME, rtype::A)],
        vec![],
        true,
    );
    assert!(need_aaaa(NAME, &upstream, &p, true).is_some());
    assert_eq!(
        synthesize(rtype::AAAA, &upstream, 0, &signed_a, 0, &p, true),
        None
    );
    // Without DO the client validates nothing: synthesized, the RRSIG gone.
    let s = synthesize(rtype::AAAA, &upstream, 0, &signed_a, 0, &p, false).unwrap();
    assert_eq!(answers(&s.reply).len(), 1);
    // A signed NODATA (its NSEC proof) to a DO query: not even asked.
    let signed_nodata = reply_with(
        NAME,
        rtype::AAAA,
        ResponseCode::NoError,
        vec![],
        vec![soa("example.", 3600, 60), rrsig("example.", rtype::SOA)],
        true,
    );
    assert_eq!(need_aaaa(NAME, &signed_nodata, &p, true), None);
    assert!(need_aaaa(NAME, &signed_nodata, &p, false).is_some());
}

#[test]
fn ipv4only_arpa_is_never_synthesized() {
    let q = "ipv4only.arpa.";
    let upstream = nodata(q, 60);
    assert_eq!(need_aaaa(q, &upstream, &[net(NSP)], false), None);
    assert_eq!(need_aaaa(q, &upstream, &[WELL_KNOWN_PREFIX], false), None);
}

#[test]
fn nothing_without_prefixes_and_nothing_for_other_types() {
    let upstream = nodata(NAME, 60);
    assert_eq!(need_aaaa(NAME, &upstream, &[], false), None);
    let a = a_reply(NAME, vec![]);
    assert_eq!(
        need(&wire_name(NAME), rtype::A, false, &a, &[net(NSP)]),
        None
    );
    assert_eq!(
        need(&wire_name(NAME), rtype::TXT, false, &upstream, &[net(NSP)]),
        None
    );
}

#[test]
fn the_synthesized_answer_clears_aa_and_ad_and_keeps_edns() {
    let upstream = nodata(NAME, 60);
    let a = a_reply(NAME, vec![a(NAME, "192.0.2.1", 300)]);
    let s = synth_aaaa(&upstream, &a, &[net(NSP)]).unwrap();
    let m = hmsg(&s.reply);
    assert!(!m.metadata.authentic_data);
    assert!(!m.metadata.authoritative);
    assert!(m.authorities.is_empty());
    assert_eq!(m.queries[0].query_type(), RecordType::AAAA);
    assert_eq!(m.queries[0].name(), &name(NAME));
    assert!(s.reply.message().edns.is_some());
}

#[test]
fn ptr_under_a_prefix_maps_to_in_addr_arpa() {
    let p = [net(NSP)];
    let v6 = embed(p[0], Ipv4Addr::new(192, 0, 2, 33)).unwrap();
    let qname = ip6_arpa(v6);
    let v4 = ptr_target(&wire_name(&qname), &p);
    assert_eq!(v4, Some(Ipv4Addr::new(192, 0, 2, 33)));
    // Upper-case nibbles (as a client may send them) read the same.
    assert_eq!(ptr_target(&wire_name(&qname.to_uppercase()), &p), v4);
    assert_eq!(
        in_addr_name(v4.unwrap()),
        wire_name("33.2.0.192.in-addr.arpa.")
    );
    let upstream = reply_with(
        &qname,
        rtype::PTR,
        ResponseCode::NXDomain,
        vec![],
        vec![soa("ip6.arpa.", 3600, 300)],
        false,
    );
    let need = need(&wire_name(&qname), rtype::PTR, false, &upstream, &p).unwrap();
    assert_eq!(
        need,
        Need {
            qname: wire_name("33.2.0.192.in-addr.arpa."),
            qtype: rtype::PTR
        }
    );
    let inaddr = "33.2.0.192.in-addr.arpa.";
    let other = reply_with(
        inaddr,
        rtype::PTR,
        ResponseCode::NoError,
        vec![ptr(inaddr, "host.example.", 900)],
        vec![],
        false,
    );
    let s = synthesize(rtype::PTR, &upstream, 0, &other, 0, &p, false).unwrap();
    assert_eq!(s.reply.rcode(), rcode::NOERROR);
    assert_eq!(
        answers(&s.reply),
        vec![
            (qname.clone(), 300, inaddr.to_string()),
            (inaddr.to_string(), 900, "host.example.".to_string()),
        ]
    );
    // No PTR for the IPv4 either: the upstream's answer stands.
    let none = reply_with(
        inaddr,
        rtype::PTR,
        ResponseCode::NXDomain,
        vec![],
        vec![],
        false,
    );
    assert_eq!(
        synthesize(rtype::PTR, &upstream, 0, &none, 0, &p, false),
        None
    );
}

#[test]
fn ptr_outside_every_prefix_or_with_an_answer_is_forwarded_as_is() {
    let p = [net(NSP)];
    let outside = ip6_arpa("2001:db8:1::c000:221".parse().unwrap());
    assert_eq!(ptr_target(&wire_name(&outside), &p), None);
    let nx = reply_with(
        &outside,
        rtype::PTR,
        ResponseCode::NXDomain,
        vec![],
        vec![],
        false,
    );
    assert_eq!(need(&wire_name(&outside), rtype::PTR, false, &nx, &p), None);
    // Under the prefix, but the upstream has a PTR record: it stands.
    let inside = ip6_arpa(embed(p[0], Ipv4Addr::new(192, 0, 2, 33)).unwrap());
    let has = reply_with(
        &inside,
        rtype::PTR,
        ResponseCode::NoError,
        vec![ptr(&inside, "nat64.example.", 300)],
        vec![],
        false,
    );
    assert_eq!(need(&wire_name(&inside), rtype::PTR, false, &has, &p), None);
    // Partial names, in-addr.arpa names and the WKP with a private IPv4.
    assert_eq!(
        ptr_target(&wire_name("4.6.0.0.8.b.d.0.1.0.0.2.ip6.arpa."), &p),
        None
    );
    assert_eq!(ptr_target(&wire_name("33.2.0.192.in-addr.arpa."), &p), None);
    let private = ip6_arpa(embed(WELL_KNOWN_PREFIX, Ipv4Addr::new(10, 0, 0, 1)).unwrap());
    assert_eq!(ptr_target(&wire_name(&private), &[WELL_KNOWN_PREFIX]), None);
    let global = ip6_arpa(embed(WELL_KNOWN_PREFIX, Ipv4Addr::new(192, 0, 2, 1)).unwrap());
    assert_eq!(
        ptr_target(&wire_name(&global), &[WELL_KNOWN_PREFIX]),
        Some(Ipv4Addr::new(192, 0, 2, 1))
    );
}

/// Valid answers to start the property test from.
fn seeds() -> Vec<Vec<u8>> {
    let inside = ip6_arpa(embed(net(NSP), Ipv4Addr::new(192, 0, 2, 33)).unwrap());
    [
        nodata(NAME, 60),
        a_reply(
            NAME,
            vec![
                cname(NAME, "x.example.", 60),
                a("x.example.", "192.0.2.1", 300),
            ],
        ),
        reply_with(
            &inside,
            rtype::PTR,
            ResponseCode::NXDomain,
            vec![],
            vec![soa("ip6.arpa.", 60, 60)],
            true,
        ),
        reply_with(
            "33.2.0.192.in-addr.arpa.",
            rtype::PTR,
            ResponseCode::NoError,
            vec![ptr("33.2.0.192.in-addr.arpa.", "h.example.", 9)],
            vec![],
            true,
        ),
    ]
    .iter()
    .map(|r| r.bytes().to_vec())
    .collect()
}

proptest! {
    /// Any upstream bytes (valid answers with bytes changed, cut or
    /// extended): `need` and `synthesize` return, never panic, and what
    /// they build is a valid reply.
    #[test]
    fn total_on_any_upstream_bytes(
        first in 0usize..4,
        second in 0usize..4,
        edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..8),
        cut in proptest::option::of(any::<u16>()),
        tail in proptest::collection::vec(any::<u8>(), 0..8),
        ages in (any::<u32>(), any::<u32>()),
        do_bit in any::<bool>(),
        qtype in prop_oneof![Just(rtype::AAAA), Just(rtype::PTR), Just(rtype::A)],
    ) {
        let seeds = seeds();
        let mut bytes = seeds[first].clone();
        for (at, b) in &edits {
            let n = bytes.len();
            bytes[usize::from(*at) % n] = *b;
        }
        if let Some(c) = cut {
            bytes.truncate(usize::from(c) % (bytes.len() + 1));
        }
        bytes.extend_from_slice(&tail);
        let prefixes = [net(NSP), WELL_KNOWN_PREFIX, net("2001:db8::/32")];
        let other = Reply::parse(&seeds[second]).unwrap();
        if let Ok(upstream) = Reply::parse(&bytes) {
            let qname = upstream.message().question_parts().map(|(n, _, _)| n.to_ascii_lowercase());
            if let Some(qname) = qname {
                let _ = need(&qname, qtype, do_bit, &upstream, &prefixes);
            }
            for (u, o) in [(&upstream, &other), (&other, &upstream)] {
                if let Some(s) = synthesize(qtype, u, ages.0, o, ages.1, &prefixes, do_bit) {
                    prop_assert!(Reply::parse(s.reply.bytes()).is_ok());
                }
            }
        }
    }
}
