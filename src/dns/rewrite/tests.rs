//! Unit tests of the rewrite of A and AAAA answers: what is removed and
//! why, the order of what is left, the synthesized SOA and the EDE, and the
//! answers left alone. The hickory record builders and the verdicts of a
//! dual-stack host here are shared with `tests_hints` and `tests_random`.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::op::{
    Edns, Message as HMessage, MessageType, OpCode, Query as HQuery, ResponseCode,
};
use hickory_proto::rr::rdata::null::NULL;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record as HRecord, RecordType};

use super::*;
use crate::probe::verdicts::{Families, PrefixVerdict, State};
use crate::testutil::{address, destination_verdict, host, ip, path};

pub(super) fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

pub(super) fn a(owner: &str, ip: &str, ttl: u32) -> HRecord {
    let ip: Ipv4Addr = ip.parse().unwrap();
    HRecord::from_rdata(name(owner), ttl, RData::A(A(ip)))
}

pub(super) fn aaaa(owner: &str, ip: &str, ttl: u32) -> HRecord {
    let ip: Ipv6Addr = ip.parse().unwrap();
    HRecord::from_rdata(name(owner), ttl, RData::AAAA(AAAA(ip)))
}

pub(super) fn cname(owner: &str, target: &str) -> HRecord {
    HRecord::from_rdata(name(owner), 300, RData::CNAME(CNAME(name(target))))
}

/// An RRSIG-shaped record: only its type-covered field matters here.
pub(crate) fn rrsig(owner: &str, covered: u16) -> HRecord {
    let mut data = covered.to_be_bytes().to_vec();
    data.extend_from_slice(&[13, 2, 0, 0, 1, 44, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    data.extend_from_slice(b"fakesignature");
    let rdata = RData::Unknown {
        code: RecordType::RRSIG,
        rdata: NULL::with(data),
    };
    HRecord::from_rdata(name(owner), 300, rdata)
}

pub(super) fn message(qname: &str, qtype: u16, answers: Vec<HRecord>, edns: bool) -> HMessage {
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

pub(super) fn reply(qname: &str, qtype: u16, answers: Vec<HRecord>) -> Reply {
    Reply::parse(&message(qname, qtype, answers, true).to_vec().unwrap()).unwrap()
}

/// Verdicts with the families in these states, for a dual-stack host:
/// 192.168.1.2/24 and 2001:db8:1::2/64 on eth0.
pub(super) fn verdicts(ipv4: State, ipv6: State) -> Verdicts {
    let host = host(vec![address("192.168.1.2"), address("2001:db8:1::2")]);
    Verdicts {
        generation: 1,
        families: Families { ipv4, ipv6 },
        host: Arc::new(host),
        ..Verdicts::default()
    }
}

/// `v` plus a learned destination with one path of `state` (and RTT) from
/// the host's IPv4 address.
pub(super) fn with_destination(
    mut v: Verdicts,
    addr: &str,
    state: State,
    rtt_ms: Option<u64>,
) -> Verdicts {
    let paths = vec![path("192.168.1.2", state, rtt_ms)];
    v.destinations
        .push(destination_verdict(addr, true, state, paths));
    v.destinations.sort_by_key(|d| d.address);
    v
}

pub(super) fn ctx(v: &Verdicts) -> Context<'_> {
    Context {
        verdicts: v,
        filter: Filter::Auto,
        break_dnssec: false,
    }
}

pub(super) fn hmsg(r: &Reply) -> HMessage {
    HMessage::from_vec(r.bytes()).unwrap()
}

pub(super) fn filtered(o: Rewritten) -> (Reply, usize, bool, String) {
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

pub(super) const DUAL: &str = "dual.example.com.";

pub(super) fn dual_a() -> Reply {
    reply(DUAL, rtype::A, vec![a(DUAL, "203.0.113.80", 300)])
}

pub(super) fn dual_aaaa() -> Reply {
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

#[test]
fn a_path_mtu_blackhole_filters_its_family_when_the_other_works() {
    use crate::probe::verdicts::Mtu;
    let mut v = verdicts(State::Ok, State::Ok);
    v.path_mtu.ipv6 = Mtu::Blackhole;
    // Even a destination reached by its own (small) probes cannot work.
    let v = {
        let mut v = v;
        let paths = vec![path("2001:db8:1::2", State::Ok, Some(5))];
        v.destinations.push(destination_verdict(
            "2001:db8:ffff::80",
            true,
            State::Ok,
            paths,
        ));
        v
    };
    assert_eq!(
        judge(&v, ip("2001:db8:ffff::80")).why,
        Some(Why::Blackhole { ipv4: false })
    );
    assert_eq!(judge(&v, ip("203.0.113.80")).standing, Standing::Unknown);
    let (out, removed, nodata, why) = filtered(rewrite(
        &dual_aaaa(),
        rtype::AAAA,
        false,
        &ctx(&v),
        Other::Reply(&dual_a()),
    ));
    assert_eq!((removed, nodata), (1, true));
    assert!(why.contains("IPv6 path MTU blackhole"), "{why}");
    let ede = extended_errors(out.bytes());
    assert_eq!(ede[0].0, EDE_FILTERED);
    assert!(ede[0].1.contains("path MTU blackhole"), "{ede:?}");
    assert_eq!(
        FilterReason::from(Why::Blackhole { ipv4: false }),
        FilterReason::PathMtu
    );
    // IPv4 does not work either: the AAAA stays (better a stalling path
    // than none).
    let mut dead4 = v.clone();
    dead4.families.ipv4 = State::Failed;
    assert_eq!(
        rewrite(
            &dual_aaaa(),
            rtype::AAAA,
            false,
            &ctx(&dead4),
            Other::Reply(&dual_a())
        ),
        Rewritten::Same
    );
    // A LAN destination of the family is not behind the blackholed path.
    assert_eq!(judge(&v, ip("2001:db8:1::99")).why, None);
    // `unknown` and `ok` filter nothing.
    for mtu in [Mtu::Unknown, Mtu::Ok] {
        let mut v = v.clone();
        v.path_mtu.ipv6 = mtu;
        assert_eq!(judge(&v, ip("2001:db8:ffff::80")).standing, Standing::Works);
    }
}
