use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{
    Edns, Message as HMessage, MessageType, OpCode, Query as HQuery, ResponseCode,
};
use hickory_proto::rr::rdata::null::NULL;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::svcb::{IpHint, Mandatory, SvcParamKey, SvcParamValue};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, HTTPS, SVCB};
use hickory_proto::rr::{Name, RData, Record as HRecord, RecordType};
use proptest::prelude::*;

use super::*;
use crate::dns::wire;
use crate::inventory::{Address, Snapshot, classify};
use crate::probe::verdicts::State;
use crate::probe::verdicts::{DestinationVerdict, Families, PathVerdict, PrefixVerdict};

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

fn cname(owner: &str, target: &str) -> HRecord {
    HRecord::from_rdata(name(owner), 300, RData::CNAME(CNAME(name(target))))
}

/// An RRSIG-shaped record: only its type-covered field matters here.
fn rrsig(owner: &str, covered: u16) -> HRecord {
    let mut data = covered.to_be_bytes().to_vec();
    data.extend_from_slice(&[13, 2, 0, 0, 1, 44, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    data.extend_from_slice(b"fakesignature");
    let rdata = RData::Unknown {
        code: RecordType::RRSIG,
        rdata: NULL::with(data),
    };
    HRecord::from_rdata(name(owner), 300, rdata)
}

fn message(qname: &str, qtype: u16, answers: Vec<HRecord>, edns: bool) -> HMessage {
    let mut m = HMessage::new(0x4242, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.add_query(HQuery::query(name(qname), RecordType::from(qtype)));
    m.answers = answers;
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.options_mut()
            .insert(EdnsOption::Unknown(3, b"nsid-of-upstream".to_vec()));
        m.set_edns(e);
    }
    m
}

fn reply(qname: &str, qtype: u16, answers: Vec<HRecord>) -> Reply {
    Reply::parse(&message(qname, qtype, answers, true).to_vec().unwrap()).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A dual-stack host: 192.168.1.2/24 and 2001:db8:1::2/64 on eth0.
fn host() -> Arc<Snapshot> {
    let addr = |s: &str, len| Address {
        addr: ip(s),
        prefix_len: len,
        interface: "eth0".into(),
        ifindex: 2,
        scope_id: 0,
        class: classify(ip(s)),
        deprecated: false,
        temporary: false,
    };
    Arc::new(Snapshot {
        addresses: vec![addr("192.168.1.2", 24), addr("2001:db8:1::2", 64)],
        ..Snapshot::default()
    })
}

fn verdicts(ipv4: State, ipv6: State) -> Verdicts {
    Verdicts {
        generation: 1,
        families: Families { ipv4, ipv6 },
        host: host(),
        ..Verdicts::default()
    }
}

/// `v` plus a learned destination with one path of `state` (and RTT).
fn with_destination(mut v: Verdicts, addr: &str, state: State, rtt_ms: Option<u64>) -> Verdicts {
    v.destinations.push(DestinationVerdict {
        address: ip(addr),
        learned: true,
        state,
        paths: vec![PathVerdict {
            source: ip("192.168.1.2"),
            scope_id: 0,
            state,
            rtt: rtt_ms.map(Duration::from_millis),
        }],
    });
    v.destinations.sort_by_key(|d| d.address);
    v
}

fn ctx(v: &Verdicts) -> Context<'_> {
    Context {
        verdicts: v,
        filter: Filter::Auto,
        break_dnssec: false,
    }
}

fn hmsg(r: &Reply) -> HMessage {
    HMessage::from_vec(r.bytes()).unwrap()
}

fn filtered(o: Rewritten) -> (Reply, usize, bool, String) {
    match o {
        Rewritten::Filtered {
            reply,
            removed,
            nodata,
            why,
            ..
        } => (reply, removed, nodata, why),
        other => panic!("expected a filtered reply, got {other:?}"),
    }
}

const DUAL: &str = "dual.example.com.";

fn dual_a() -> Reply {
    reply(DUAL, rtype::A, vec![a(DUAL, "203.0.113.80", 300)])
}

fn dual_aaaa() -> Reply {
    reply(
        DUAL,
        rtype::AAAA,
        vec![aaaa(DUAL, "2001:db8:ffff::80", 300)],
    )
}

#[test]
fn nothing_known_leaves_the_reply_as_it_is() {
    let r = reply(
        DUAL,
        rtype::AAAA,
        vec![
            aaaa(DUAL, "2001:db8:ffff::81", 300),
            aaaa(DUAL, "2001:db8:ffff::80", 300),
        ],
    );
    let v = Verdicts::default();
    for other in [Other::Unasked, Other::Failed, Other::Reply(&dual_a())] {
        assert_eq!(
            rewrite(&r, rtype::AAAA, false, &ctx(&v), other),
            Rewritten::Same
        );
    }
    // Families known and fine: still nothing to change.
    let v = verdicts(State::Ok, State::Ok);
    assert_eq!(
        rewrite(&r, rtype::AAAA, false, &ctx(&v), Other::Unasked),
        Rewritten::Same
    );
}

#[test]
fn broken_ipv6_turns_aaaa_into_nodata_with_soa_and_ede_when_ipv4_works() {
    let v = verdicts(State::Ok, State::Failed);
    let r = dual_aaaa();
    assert_eq!(
        rewrite(&r, rtype::AAAA, false, &ctx(&v), Other::Unasked),
        Rewritten::NeedOther,
        "every address would go: the A answer decides"
    );
    let a_reply = dual_a();
    let (out, removed, nodata, why) = filtered(rewrite(
        &r,
        rtype::AAAA,
        false,
        &ctx(&v),
        Other::Reply(&a_reply),
    ));
    assert_eq!((removed, nodata), (1, true));
    assert!(why.contains("no working IPv6 source"), "{why}");
    let m = hmsg(&out);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty(), "{:?}", m.answers);
    let soa: Vec<&HRecord> = (m.authorities.iter())
        .filter(|r| r.record_type() == RecordType::SOA)
        .collect();
    assert_eq!(soa.len(), 1, "one SOA for negative caching");
    assert_eq!(soa[0].name, name(DUAL));
    assert!(soa[0].ttl <= NODATA_TTL);
    let RData::SOA(s) = &soa[0].data else {
        unreachable!()
    };
    assert_eq!(s.minimum, soa[0].ttl);
    assert_eq!(out.negative_ttl(), Some(NODATA_TTL));
    let ede = extended_errors(out.bytes());
    assert_eq!(ede.len(), 1);
    assert_eq!(ede[0].0, EDE_FILTERED);
    assert!(ede[0].1.contains("AAAA"), "{ede:?}");
    // The upstream's own OPT (payload size, NSID) is kept.
    let e = m.edns.as_ref().expect("OPT kept");
    assert_eq!(e.max_payload(), 1232);
    assert!(
        e.option(hickory_proto::rr::rdata::opt::EdnsCode::NSID)
            .is_some()
    );
    // The A answer itself is untouched.
    assert_eq!(
        rewrite(&a_reply, rtype::A, false, &ctx(&v), Other::Reply(&r)),
        Rewritten::Same
    );
}

#[test]
fn nothing_is_removed_when_no_address_of_the_name_could_work() {
    let r = dual_aaaa();
    // The A answer is missing, failed, NXDOMAIN, empty, or cannot work
    // either: keep the AAAA.
    let v = verdicts(State::Failed, State::Failed);
    assert_eq!(
        rewrite(&r, rtype::AAAA, false, &ctx(&v), Other::Reply(&dual_a())),
        Rewritten::Same
    );
    let v = verdicts(State::Ok, State::Failed);
    assert_eq!(
        rewrite(&r, rtype::AAAA, false, &ctx(&v), Other::Failed),
        Rewritten::Same
    );
    let empty = reply(DUAL, rtype::A, vec![]);
    assert_eq!(
        rewrite(&r, rtype::AAAA, false, &ctx(&v), Other::Reply(&empty)),
        Rewritten::Same
    );
    let mut nx = message(DUAL, rtype::A, vec![a(DUAL, "203.0.113.80", 300)], true);
    nx.metadata.response_code = ResponseCode::NXDomain;
    let nx = Reply::parse(&nx.to_vec().unwrap()).unwrap();
    assert_eq!(
        rewrite(&r, rtype::AAAA, false, &ctx(&v), Other::Reply(&nx)),
        Rewritten::Same
    );
    // An IPv6-only name keeps its AAAA.
    let v6only = reply(
        "v6.example.com.",
        rtype::AAAA,
        vec![aaaa("v6.example.com.", "2001:db8:ffff::6", 60)],
    );
    let no_a = reply("v6.example.com.", rtype::A, vec![]);
    assert_eq!(
        rewrite(&v6only, rtype::AAAA, false, &ctx(&v), Other::Reply(&no_a)),
        Rewritten::Same
    );
}

#[test]
fn a_dead_destination_goes_and_the_rest_is_ordered_by_standing_then_rtt() {
    let v = verdicts(State::Ok, State::Ok);
    let v = with_destination(v, "203.0.113.1", State::Failed, None);
    let v = with_destination(v, "203.0.113.3", State::Ok, Some(40));
    let v = with_destination(v, "203.0.113.4", State::Ok, Some(10));
    let r = reply(
        DUAL,
        rtype::A,
        vec![
            a(DUAL, "203.0.113.1", 300),
            a(DUAL, "203.0.113.2", 300),
            a(DUAL, "203.0.113.3", 300),
            a(DUAL, "203.0.113.4", 300),
        ],
    );
    let (out, removed, nodata, why) =
        filtered(rewrite(&r, rtype::A, false, &ctx(&v), Other::Unasked));
    assert_eq!((removed, nodata), (1, false));
    assert!(
        why.contains("203.0.113.1 unreachable from every source"),
        "{why}"
    );
    assert_eq!(
        out.addresses(),
        [ip("203.0.113.4"), ip("203.0.113.3"), ip("203.0.113.2")],
        "working by RTT, then the unprobed one"
    );
    assert_eq!(extended_errors(out.bytes())[0].0, EDE_FILTERED);
    // With filtering off the dead one is kept, last.
    let off = Context {
        filter: Filter::Off,
        ..ctx(&v)
    };
    let Rewritten::Reordered(out) = rewrite(&r, rtype::A, false, &off, Other::Unasked) else {
        panic!("reordered only")
    };
    assert_eq!(
        out.addresses(),
        [
            ip("203.0.113.4"),
            ip("203.0.113.3"),
            ip("203.0.113.2"),
            ip("203.0.113.1")
        ]
    );
    assert!(extended_errors(out.bytes()).is_empty());
}

#[test]
fn a_prefix_that_answers_ranks_above_the_unknown_and_a_dead_prefix_goes() {
    let mut v = verdicts(State::Ok, State::Ok);
    v.prefixes = vec![
        PrefixVerdict {
            prefix: "198.51.100.0/24".parse().unwrap(),
            state: State::Ok,
        },
        PrefixVerdict {
            prefix: "203.0.113.0/24".parse().unwrap(),
            state: State::Failed,
        },
    ];
    let r = reply(
        DUAL,
        rtype::A,
        vec![
            a(DUAL, "192.0.2.9", 300),
            a(DUAL, "203.0.113.9", 300),
            a(DUAL, "198.51.100.9", 300),
        ],
    );
    let (out, removed, _, why) = filtered(rewrite(&r, rtype::A, false, &ctx(&v), Other::Unasked));
    assert_eq!(removed, 1);
    assert!(why.contains("nothing in 203.0.113.0/24 answers"), "{why}");
    assert_eq!(out.addresses(), [ip("198.51.100.9"), ip("192.0.2.9")]);
}

#[test]
fn a_dead_family_is_the_reason_given_before_its_dead_prefixes() {
    let mut v = verdicts(State::Ok, State::Failed);
    v.prefixes = vec![PrefixVerdict {
        prefix: "2001:db8:ffff::/64".parse().unwrap(),
        state: State::Failed,
    }];
    assert_eq!(
        judge(&v, ip("2001:db8:ffff::80")).why,
        Some(Why::NoSource { ipv4: false })
    );
    v.families.ipv6 = State::Ok;
    assert_eq!(
        judge(&v, ip("2001:db8:ffff::80")).why,
        Some(Why::DeadPrefix("2001:db8:ffff::/64".parse().unwrap()))
    );
}

#[test]
fn lan_and_private_destinations_survive_a_dead_uplink() {
    let v = verdicts(State::Failed, State::Failed);
    let r = reply(
        "nas.example.com.",
        rtype::A,
        vec![
            a("nas.example.com.", "192.168.1.10", 300),
            a("nas.example.com.", "10.0.0.7", 300),
        ],
    );
    assert_eq!(judge(&v, ip("192.168.1.10")).standing, Standing::Unknown);
    assert_eq!(judge(&v, ip("10.0.0.7")).standing, Standing::Unknown);
    // A global address inside the host's own /64 is on-link.
    assert_eq!(judge(&v, ip("2001:db8:1::99")).standing, Standing::Unknown);
    assert_eq!(judge(&v, ip("2001:db8:2::99")).standing, Standing::Cannot);
    assert_eq!(
        rewrite(&r, rtype::A, false, &ctx(&v), Other::Unasked),
        Rewritten::Same
    );
}

#[test]
fn cnames_and_other_records_stay_when_the_addresses_go() {
    let v = verdicts(State::Ok, State::Failed);
    let target = "edge.cdn.example.net.";
    let r = reply(
        "www.example.com.",
        rtype::AAAA,
        vec![
            cname("www.example.com.", target),
            aaaa(target, "2001:db8:ffff::1", 20),
            aaaa(target, "2001:db8:ffff::2", 20),
        ],
    );
    let other = reply(
        "www.example.com.",
        rtype::A,
        vec![
            cname("www.example.com.", target),
            a(target, "203.0.113.1", 20),
        ],
    );
    let (out, removed, nodata, _) = filtered(rewrite(
        &r,
        rtype::AAAA,
        false,
        &ctx(&v),
        Other::Reply(&other),
    ));
    assert_eq!((removed, nodata), (2, true));
    let m = hmsg(&out);
    assert_eq!(m.answers, vec![cname("www.example.com.", target)]);
    let soa = &m.authorities[0];
    assert_eq!(
        (soa.name.clone(), soa.ttl),
        (name(target), 20),
        "owned by the name whose records went"
    );
}

#[test]
fn signed_answers_to_do_queries_are_only_reordered_unless_break_dnssec() {
    let v = verdicts(State::Ok, State::Failed);
    let r = reply(
        DUAL,
        rtype::AAAA,
        vec![
            aaaa(DUAL, "2001:db8:ffff::80", 300),
            rrsig(DUAL, rtype::AAAA),
        ],
    );
    let a_reply = dual_a();
    assert_eq!(
        rewrite(&r, rtype::AAAA, true, &ctx(&v), Other::Reply(&a_reply)),
        Rewritten::Same,
        "DO + RRSIG: untouched"
    );
    // Without DO the RRSIG is nobody's concern.
    filtered(rewrite(
        &r,
        rtype::AAAA,
        false,
        &ctx(&v),
        Other::Reply(&a_reply),
    ));
    let breaking = Context {
        break_dnssec: true,
        ..ctx(&v)
    };
    let (out, _, nodata, _) = filtered(rewrite(
        &r,
        rtype::AAAA,
        true,
        &breaking,
        Other::Reply(&a_reply),
    ));
    assert!(nodata);
    assert!(
        hmsg(&out).answers.is_empty(),
        "the RRSIG of the gone RRset goes too"
    );
}

#[test]
fn nat64_answers_are_judged_by_ipv6_and_not_by_the_translator_prefix() {
    // An IPv6-only host behind NAT64: IPv4 failed, IPv6 ok.
    let mut v = verdicts(State::Failed, State::Ok);
    v.nat64_prefixes = vec!["64:ff9b::/96".parse().unwrap()];
    // One dead IPv4 site behind the translator condemns its /64 in the
    // prefix table only if someone wrote it there; the engine does not,
    // and the rewrite ignores it anyway.
    v.prefixes = vec![PrefixVerdict {
        prefix: "64:ff9b::/64".parse().unwrap(),
        state: State::Failed,
    }];
    let synth = reply(
        "v4only.example.com.",
        rtype::AAAA,
        vec![aaaa("v4only.example.com.", "64:ff9b::cb00:7150", 300)],
    );
    let a_reply = reply(
        "v4only.example.com.",
        rtype::A,
        vec![a("v4only.example.com.", "203.0.113.80", 300)],
    );
    assert_eq!(
        rewrite(&synth, rtype::AAAA, false, &ctx(&v), Other::Reply(&a_reply)),
        Rewritten::Same,
        "synthesized AAAA kept"
    );
    let (out, _, nodata, _) = filtered(rewrite(
        &a_reply,
        rtype::A,
        false,
        &ctx(&v),
        Other::Reply(&synth),
    ));
    assert!(
        nodata,
        "the A records cannot work without IPv4; the synthesized AAAA can"
    );
    assert!(out.addresses().is_empty());
    // IPv6 broken too: the synthesized address cannot work either.
    v.families.ipv6 = State::Failed;
    assert_eq!(
        judge(&v, ip("64:ff9b::cb00:7150")).why,
        Some(Why::NoSource { ipv4: false })
    );
    assert!(exempt(b"\x08ipv4only\x04arpa\x00"));
    assert!(!exempt(b"\x03www\x08ipv4only\x04arpa\x00"));
}

#[test]
fn only_a_aaaa_and_svcb_answers_and_noerror_are_touched() {
    let v = verdicts(State::Ok, State::Failed);
    let mut nx = message(DUAL, rtype::AAAA, vec![], true);
    nx.metadata.response_code = ResponseCode::NXDomain;
    let nx = Reply::parse(&nx.to_vec().unwrap()).unwrap();
    assert_eq!(
        rewrite(&nx, rtype::AAAA, false, &ctx(&v), Other::Unasked),
        Rewritten::Same
    );
    let txt = reply(DUAL, rtype::TXT, vec![]);
    assert_eq!(
        rewrite(&txt, rtype::TXT, false, &ctx(&v), Other::Unasked),
        Rewritten::Same
    );
    // SERVFAIL with stray records is not touched either.
    let mut sf = message(
        DUAL,
        rtype::AAAA,
        vec![aaaa(DUAL, "2001:db8:ffff::80", 1)],
        true,
    );
    sf.metadata.response_code = ResponseCode::ServFail;
    let sf = Reply::parse(&sf.to_vec().unwrap()).unwrap();
    assert_eq!(
        rewrite(&sf, rtype::AAAA, false, &ctx(&v), Other::Reply(&dual_a())),
        Rewritten::Same
    );
}

#[test]
fn a_reply_without_opt_gets_one_for_the_ede() {
    let v = verdicts(State::Ok, State::Failed);
    let bare = message(
        DUAL,
        rtype::AAAA,
        vec![aaaa(DUAL, "2001:db8:ffff::80", 300)],
        false,
    );
    let r = Reply::parse(&bare.to_vec().unwrap()).unwrap();
    let (out, ..) = filtered(rewrite(
        &r,
        rtype::AAAA,
        false,
        &ctx(&v),
        Other::Reply(&dual_a()),
    ));
    assert_eq!(extended_errors(out.bytes())[0].0, EDE_FILTERED);
}

fn https(owner: &str, params: Vec<(SvcParamKey, SvcParamValue)>) -> HRecord {
    let svcb = SVCB::new(1, name("."), params);
    HRecord::from_rdata(name(owner), 300, RData::HTTPS(HTTPS(svcb)))
}

fn v4hint(list: &[&str]) -> (SvcParamKey, SvcParamValue) {
    let hint = list.iter().map(|s| A(s.parse().unwrap())).collect();
    (SvcParamKey::Ipv4Hint, SvcParamValue::Ipv4Hint(IpHint(hint)))
}

fn v6hint(list: &[&str]) -> (SvcParamKey, SvcParamValue) {
    let hint = list.iter().map(|s| AAAA(s.parse().unwrap())).collect();
    (SvcParamKey::Ipv6Hint, SvcParamValue::Ipv6Hint(IpHint(hint)))
}

#[test]
fn https_hints_are_ordered_and_filtered_like_addresses() {
    let v = verdicts(State::Ok, State::Ok);
    let v = with_destination(v, "203.0.113.2", State::Ok, Some(5));
    let v = with_destination(v, "203.0.113.3", State::Failed, None);
    let owner = "svc.example.com.";
    let r = reply(
        owner,
        rtype::HTTPS,
        vec![https(
            owner,
            vec![
                v4hint(&["203.0.113.1", "203.0.113.2"]),
                v6hint(&["2001:db8:ffff::1"]),
            ],
        )],
    );
    let Rewritten::Reordered(out) = rewrite(&r, rtype::HTTPS, false, &ctx(&v), Other::Unasked)
    else {
        panic!("reordered")
    };
    assert_eq!(
        out.hints(),
        [
            (wire::IPV4HINT, ip("203.0.113.2")),
            (wire::IPV4HINT, ip("203.0.113.1")),
            (wire::IPV6HINT, ip("2001:db8:ffff::1"))
        ]
    );
    // A dead address goes; a hint left empty goes; the record stays.
    let r = reply(
        owner,
        rtype::HTTPS,
        vec![https(
            owner,
            vec![v4hint(&["203.0.113.3"]), v6hint(&["2001:db8:ffff::1"])],
        )],
    );
    let (out, removed, nodata, _) =
        filtered(rewrite(&r, rtype::HTTPS, false, &ctx(&v), Other::Unasked));
    assert_eq!((removed, nodata), (1, false));
    assert_eq!(out.hints(), [(wire::IPV6HINT, ip("2001:db8:ffff::1"))]);
    assert_eq!(hmsg(&out).answers.len(), 1);
    // When no hint address of the record can work, all are kept.
    let r = reply(
        owner,
        rtype::HTTPS,
        vec![https(owner, vec![v4hint(&["203.0.113.3"])])],
    );
    assert_eq!(
        rewrite(&r, rtype::HTTPS, false, &ctx(&v), Other::Unasked),
        Rewritten::Same
    );
    // A mandatory hint is never emptied.
    let mandatory = (
        SvcParamKey::Mandatory,
        SvcParamValue::Mandatory(Mandatory(vec![SvcParamKey::Ipv4Hint])),
    );
    let r = reply(
        owner,
        rtype::HTTPS,
        vec![https(
            owner,
            vec![
                mandatory,
                v4hint(&["203.0.113.3"]),
                v6hint(&["2001:db8:ffff::1"]),
            ],
        )],
    );
    let kept = match rewrite(&r, rtype::HTTPS, false, &ctx(&v), Other::Unasked) {
        Rewritten::Same => r.hints(),
        Rewritten::Filtered { reply, .. } | Rewritten::Reordered(reply) => reply.hints(),
        Rewritten::NeedOther => unreachable!(),
    };
    assert!(
        kept.contains(&(wire::IPV4HINT, ip("203.0.113.3"))),
        "{kept:?}"
    );
    // Signed, DO: hints untouched even when they could be ordered.
    let r = reply(
        owner,
        rtype::HTTPS,
        vec![
            https(owner, vec![v4hint(&["203.0.113.1", "203.0.113.2"])]),
            rrsig(owner, rtype::HTTPS),
        ],
    );
    assert_eq!(
        rewrite(&r, rtype::HTTPS, true, &ctx(&v), Other::Unasked),
        Rewritten::Same
    );
}

#[test]
fn a_mandatory_hint_kept_whole_is_not_counted_as_removed() {
    let v = verdicts(State::Ok, State::Ok);
    let v = with_destination(v, "203.0.113.3", State::Failed, None);
    let v = with_destination(v, "2001:db8:ffff::3", State::Failed, None);
    let owner = "svc.example.com.";
    let mandatory = || {
        (
            SvcParamKey::Mandatory,
            SvcParamValue::Mandatory(Mandatory(vec![SvcParamKey::Ipv4Hint])),
        )
    };
    // The mandatory ipv4hint keeps its only address, dead as it is:
    // nothing goes, so nothing is reported.
    let r = reply(
        owner,
        rtype::HTTPS,
        vec![https(
            owner,
            vec![
                mandatory(),
                v4hint(&["203.0.113.3"]),
                v6hint(&["2001:db8:ffff::1"]),
            ],
        )],
    );
    let o = rewrite(&r, rtype::HTTPS, false, &ctx(&v), Other::Unasked);
    assert!(
        !matches!(o, Rewritten::Filtered { .. }),
        "nothing was removed: {o:?}"
    );
    // A dead IPv6 hint address beside it does go: the count and the EDE
    // text name it alone.
    let r = reply(
        owner,
        rtype::HTTPS,
        vec![https(
            owner,
            vec![
                mandatory(),
                v4hint(&["203.0.113.3"]),
                v6hint(&["2001:db8:ffff::1", "2001:db8:ffff::3"]),
            ],
        )],
    );
    let (out, removed, nodata, why) =
        filtered(rewrite(&r, rtype::HTTPS, false, &ctx(&v), Other::Unasked));
    assert_eq!(
        out.hints(),
        [
            (wire::IPV4HINT, ip("203.0.113.3")),
            (wire::IPV6HINT, ip("2001:db8:ffff::1"))
        ]
    );
    assert_eq!(removed, r.hints().len() - out.hints().len());
    assert_eq!((removed, nodata), (1, false));
    assert!(why.starts_with("getapr removed 1 hint: "), "{why}");
    assert!(why.contains("2001:db8:ffff::3"), "{why}");
    assert!(!why.contains("203.0.113.3"), "{why}");
    assert_eq!(extended_errors(out.bytes()), [(EDE_FILTERED, why)]);
}

// ---- properties ------------------------------------------------------

/// Address pools the generated answers and verdicts draw from.
const V4: [&str; 4] = ["203.0.113.1", "203.0.113.2", "198.51.100.1", "192.168.1.50"];
const V6: [&str; 4] = [
    "2001:db8:ffff::1",
    "2001:db8:ffff::2",
    "2001:db8:eeee::1",
    "64:ff9b::cb00:7101",
];

fn state(i: u8) -> State {
    [State::Unknown, State::Ok, State::Failed][usize::from(i % 3)]
}

fn arb_verdicts() -> impl Strategy<Value = Verdicts> {
    (
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec((0usize..8, any::<u8>(), 1u64..200), 0..6),
        any::<bool>(),
    )
        .prop_map(|(f4, f6, dests, nat64)| {
            let mut v = verdicts(state(f4), state(f6));
            if nat64 {
                v.nat64_prefixes = vec!["64:ff9b::/96".parse().unwrap()];
            }
            for (i, s, rtt) in dests {
                let addr = if i < 4 { V4[i] } else { V6[i - 4] };
                if v.destination(ip(addr)).is_none() {
                    v = with_destination(v, addr, state(s), Some(rtt));
                }
            }
            v
        })
}

/// An answer: a CNAME or not, then addresses of the type drawn from
/// the pool (duplicates allowed), plus an unrelated TXT.
fn arb_answer(qtype: u16) -> impl Strategy<Value = Reply> {
    (
        any::<bool>(),
        proptest::collection::vec(0usize..4, 0..5),
        1u32..1000,
    )
        .prop_map(move |(with_cname, picks, ttl)| {
            let owner = if with_cname {
                "t.cdn.example.net."
            } else {
                DUAL
            };
            let mut answers = Vec::new();
            if with_cname {
                answers.push(cname(DUAL, owner));
            }
            for p in picks {
                answers.push(if qtype == rtype::A {
                    a(owner, V4[p], ttl)
                } else {
                    aaaa(owner, V6[p], ttl)
                });
            }
            let mut m = message(DUAL, qtype, answers, true);
            let txt = hickory_proto::rr::rdata::TXT::new(vec!["keep me".to_string()]);
            m.additionals.push(HRecord::from_rdata(
                name("x.example.com."),
                7,
                RData::TXT(txt),
            ));
            Reply::parse(&m.to_vec().unwrap()).unwrap()
        })
}

fn non_address_records(r: &Reply) -> Vec<HRecord> {
    let m = hmsg(r);
    let mut v: Vec<HRecord> = (m.answers.iter().chain(&m.authorities).chain(&m.additionals))
        .filter(|r| {
            !matches!(
                r.record_type(),
                RecordType::A | RecordType::AAAA | RecordType::SOA
            )
        })
        .cloned()
        .collect();
    v.sort_by_key(|r| r.to_string());
    v
}

fn sorted(mut v: Vec<IpAddr>) -> Vec<IpAddr> {
    v.sort();
    v
}

fn result(o: &Rewritten, upstream: &Reply) -> Reply {
    match o {
        Rewritten::Same | Rewritten::NeedOther => upstream.clone(),
        Rewritten::Reordered(r) | Rewritten::Filtered { reply: r, .. } => r.clone(),
    }
}

fn can_work(v: &Verdicts, addrs: &[IpAddr]) -> bool {
    addrs
        .iter()
        .any(|&a| judge(v, a).standing != Standing::Cannot)
}

proptest! {
    #[test]
    fn rewrites_only_remove_or_reorder_and_never_strand_a_name(
        v in arb_verdicts(),
        a_reply in arb_answer(rtype::A),
        aaaa_reply in arb_answer(rtype::AAAA),
        do_bit in any::<bool>(),
        filter_on in any::<bool>(),
    ) {
        let c = Context {
            verdicts: &v,
            filter: if filter_on { Filter::Auto } else { Filter::Off },
            break_dnssec: false,
        };
        let mut after = Vec::new();
        for (r, qtype, other) in [(&a_reply, rtype::A, &aaaa_reply), (&aaaa_reply, rtype::AAAA, &a_reply)] {
            let o = rewrite(r, qtype, do_bit, &c, Other::Reply(other));
            prop_assert_ne!(&o, &Rewritten::NeedOther);
            let out = result(&o, r);
            // It parses and its other records are the upstream's.
            prop_assert!(Reply::parse(out.bytes()).is_ok());
            prop_assert_eq!(non_address_records(&out), non_address_records(r));
            let (before, now) = (r.addresses(), out.addresses());
            match &o {
                Rewritten::Filtered { removed, nodata, .. } => {
                    prop_assert!(filter_on);
                    // A sub-multiset, smaller by `removed`, and every
                    // address removed is one that cannot work.
                    let mut rest = before.clone();
                    for x in &now {
                        let i = rest.iter().position(|y| y == x);
                        prop_assert!(i.is_some(), "{} was added", x);
                        rest.remove(i.unwrap());
                    }
                    prop_assert_eq!(rest.len(), *removed);
                    prop_assert!(rest.iter().all(|&x| judge(&v, x).standing == Standing::Cannot));
                    prop_assert_eq!(*nodata, now.is_empty());
                    if *nodata {
                        prop_assert!(out.negative_ttl().is_some(), "NODATA carries an SOA");
                    }
                    prop_assert!(extended_errors(out.bytes()).iter().any(|e| e.0 == EDE_FILTERED));
                }
                _ => prop_assert_eq!(sorted(before.clone()), sorted(now.clone())),
            }
            after.push(now);
        }
        // Never strand a name: if some address of it could work, some
        // still does.
        let all_before: Vec<IpAddr> = a_reply.addresses().into_iter().chain(aaaa_reply.addresses()).collect();
        let all_after: Vec<IpAddr> = after.concat();
        if can_work(&v, &all_before) {
            prop_assert!(can_work(&v, &all_after), "stranded: {:?} -> {:?}", all_before, all_after);
        }
    }

    #[test]
    fn orders_by_standing_then_rtt(v in arb_verdicts(), r in arb_answer(rtype::A)) {
        let c = Context { verdicts: &v, filter: Filter::Off, break_dnssec: false };
        let out = result(&rewrite(&r, rtype::A, false, &c, Other::Unasked), &r);
        let ranks: Vec<_> = out.addresses().iter().map(|&a| judge(&v, a).rank()).collect();
        prop_assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{:?}", ranks);
    }
}
