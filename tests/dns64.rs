//! DNS64 in the stub (RFC 6147), through the real daemon in process against
//! a scripted upstream without DNS64: AAAA records synthesized from A
//! records under the NAT64 prefix, what is never synthesized (real AAAA
//! records, an upstream's own DNS64 answer, NXDOMAIN, `ipv4only.arpa`, a
//! signed answer to a DO query), CNAME chains, PTR under the prefix, and
//! cached answers that follow the verdicts at once.
//!
//! The prefix reaches the stub the way the probe engine publishes it: in
//! the verdicts (`Verdicts::nat64_prefixes`), set here by the test.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::client::parse;
use common::fake::reply_to;
use common::{Action, FakeUpstream, config_toml, query, udp_exchange};
use getapr::daemon::Handle;
use getapr::probe::verdicts::{Families, State, Verdicts};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::null::NULL;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

const PREFIX: &str = "2001:db8:64::/96";
/// A only (192.0.2.10).
const V4ONLY: &str = "v4only.example.test.";
const V4ONLY_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// A and AAAA.
const DUAL: &str = "dual.example.test.";
const DUAL_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// CNAME → [`V4ONLY`].
const ALIAS: &str = "alias.example.test.";
/// An AAAA already inside the prefix: the upstream is a DNS64 itself.
const ALREADY: &str = "already.example.test.";
/// A signed A RRset (RRSIG with DO); its AAAA NODATA carries none.
const SIGNED: &str = "signed.example.test.";
/// AAAA: SERVFAIL; A: 192.0.2.12.
const BROKEN: &str = "broken.example.test.";
const MISSING: &str = "missing.example.test.";
/// A and AAAA NODATA that may be cached for 1 s only.
const SHORT: &str = "short.example.test.";
const IPV4ONLY: &str = "ipv4only.arpa.";
/// The IPv4 address whose NAT64 address's `ip6.arpa` name the upstream
/// refuses (an authoritative-only server that has no such zone).
const REFUSING_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
/// The SOA of every negative answer: TTL 3600, MINIMUM 60.
const NEGATIVE_TTL: u32 = 60;
const TTL: u32 = 300;

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn soa() -> Record {
    soa_of(3600, NEGATIVE_TTL)
}

/// The zone's SOA with this TTL and MINIMUM.
fn soa_of(ttl: u32, minimum: u32) -> Record {
    let soa = SOA::new(
        name("ns.example.test."),
        name("hostmaster.example.test."),
        1,
        3600,
        600,
        86400,
        minimum,
    );
    Record::from_rdata(name("example.test."), ttl, RData::SOA(soa))
}

fn rrsig(owner: &str, covered: RecordType) -> Record {
    let mut data = u16::from(covered).to_be_bytes().to_vec();
    data.extend_from_slice(&[13, 2, 0, 0, 1, 44, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    data.extend_from_slice(b"fakesignature");
    let rdata = RData::Unknown {
        code: RecordType::RRSIG,
        rdata: NULL::with(data),
    };
    Record::from_rdata(name(owner), TTL, rdata)
}

fn a(owner: &str, v4: Ipv4Addr) -> Record {
    Record::from_rdata(name(owner), TTL, RData::A(A(v4)))
}

fn aaaa(owner: &str, v6: Ipv6Addr) -> Record {
    Record::from_rdata(name(owner), TTL, RData::AAAA(AAAA(v6)))
}

/// The nibble-form ip6.arpa name of `v6`.
fn ip6_arpa(v6: Ipv6Addr) -> String {
    let mut s = String::new();
    for b in v6.octets().iter().rev() {
        s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
    }
    s + "ip6.arpa."
}

fn synthesized(v4: Ipv4Addr) -> Ipv6Addr {
    let [a, b, c, d] = v4.octets();
    Ipv6Addr::new(
        0x2001,
        0xdb8,
        0x64,
        0,
        0,
        0,
        u16::from_be_bytes([a, b]),
        u16::from_be_bytes([c, d]),
    )
}

/// The scripted upstream's zone: a plain resolver without DNS64.
fn zone(q: &Message) -> Message {
    let mut r = reply_to(q);
    let query = &q.queries[0];
    let qname = query.name().to_lowercase().to_string();
    let qtype = query.query_type();
    let do_bit = q.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
    let nodata = |r: &mut Message| r.authorities.push(soa());
    match (qname.as_str(), qtype) {
        (V4ONLY, RecordType::A) => r.answers.push(a(V4ONLY, V4ONLY_V4)),
        (DUAL, RecordType::A) => r.answers.push(a(DUAL, Ipv4Addr::new(192, 0, 2, 1))),
        (DUAL, RecordType::AAAA) => r.answers.push(aaaa(DUAL, DUAL_V6)),
        (ALIAS, RecordType::A | RecordType::AAAA) => {
            let c = Record::from_rdata(name(ALIAS), 120, RData::CNAME(CNAME(name(V4ONLY))));
            r.answers.push(c);
            if qtype == RecordType::A {
                r.answers.push(a(V4ONLY, V4ONLY_V4));
            } else {
                nodata(&mut r);
            }
        }
        (ALREADY, RecordType::A) => r.answers.push(a(ALREADY, Ipv4Addr::new(192, 0, 2, 11))),
        (ALREADY, RecordType::AAAA) => r
            .answers
            .push(aaaa(ALREADY, synthesized(Ipv4Addr::new(192, 0, 2, 11)))),
        (SIGNED, RecordType::A) => {
            r.answers.push(a(SIGNED, Ipv4Addr::new(192, 0, 2, 13)));
            if do_bit {
                r.answers.push(rrsig(SIGNED, RecordType::A));
            }
        }
        (BROKEN, RecordType::A) => r.answers.push(a(BROKEN, Ipv4Addr::new(192, 0, 2, 12))),
        (BROKEN, RecordType::AAAA) => r.metadata.response_code = ResponseCode::ServFail,
        (IPV4ONLY, RecordType::A) => {
            r.answers.push(a(IPV4ONLY, Ipv4Addr::new(192, 0, 0, 170)));
            r.answers.push(a(IPV4ONLY, Ipv4Addr::new(192, 0, 0, 171)));
        }
        ("10.2.0.192.in-addr.arpa.", RecordType::PTR) => r.answers.push(Record::from_rdata(
            query.name().clone(),
            900,
            RData::PTR(PTR(name(V4ONLY))),
        )),
        (SHORT, RecordType::A) => {
            let mut record = a(SHORT, Ipv4Addr::new(192, 0, 2, 14));
            record.ttl = 1;
            r.answers.push(record);
        }
        (SHORT, _) => r.authorities.push(soa_of(1, 1)),
        (MISSING, _) => {
            r.metadata.response_code = ResponseCode::NXDomain;
            nodata(&mut r);
        }
        ("20.2.0.192.in-addr.arpa.", RecordType::PTR) => r.answers.push(Record::from_rdata(
            query.name().clone(),
            900,
            RData::PTR(PTR(name(DUAL))),
        )),
        (n, _) if n == ip6_arpa(synthesized(REFUSING_V4)) => {
            r.metadata.response_code = ResponseCode::Refused;
        }
        (n, _) if n.ends_with(".ip6.arpa.") => {
            r.metadata.response_code = ResponseCode::NXDomain;
            nodata(&mut r);
        }
        _ => nodata(&mut r),
    }
    r
}

struct Setup {
    upstream: FakeUpstream,
    getapr: SocketAddr,
    handle: Handle,
}

/// getapr with `[dns64]` as given, forwarding to the scripted zone.
async fn setup(dns64: &str) -> Setup {
    setup_slow(dns64, Duration::ZERO).await
}

/// [`setup`] with an upstream that answers each query `delay` late.
async fn setup_slow(dns64: &str, delay: Duration) -> Setup {
    setup_with(dns64, delay, Arc::new(AtomicBool::new(false))).await
}

/// [`setup_slow`] with an upstream that answers nothing while `down`.
async fn setup_with(dns64: &str, delay: Duration, down: Arc<AtomicBool>) -> Setup {
    let upstream = FakeUpstream::start(move |q, _| {
        if down.load(Ordering::SeqCst) {
            vec![Action::Drop]
        } else {
            vec![Action::Delay(delay), Action::Reply(zone(q))]
        }
    })
    .await;
    let toml = format!(
        "{}\n[dns64]\n{dns64}\n",
        config_toml(&[upstream.addr()], "")
    );
    let (handle, getapr) = common::start_getapr(&toml).await;
    Setup {
        upstream,
        getapr,
        handle,
    }
}

impl Setup {
    /// Publishes verdicts as the probe engine would: a new generation.
    fn publish(&self, ipv4: State, ipv6: State, prefixes: &[&str]) {
        let cell = self.handle.verdicts();
        let v = Verdicts {
            generation: cell.load().generation + 1,
            families: Families { ipv4, ipv6 },
            nat64_prefixes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
            ..Verdicts::default()
        };
        cell.store(Arc::new(v));
    }

    async fn ask(&self, qname: &str, qtype: RecordType) -> Message {
        parse(&udp_exchange(self.getapr, &query(qname, qtype).bytes()).await)
    }

    async fn ask_do(&self, qname: &str, qtype: RecordType) -> Message {
        let q = query(qname, qtype).dnssec_ok();
        parse(&udp_exchange(self.getapr, &q.bytes()).await)
    }

    /// `getapr_dns64_synthesized_total` for `qtype`.
    fn synthesized(&self, qtype: &str) -> u64 {
        let text = self.handle.metrics_text();
        let line = format!("getapr_dns64_synthesized_total{{qtype=\"{qtype}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line} in\n{text}"))
    }
}

/// The A and AAAA addresses of `m`'s answer section, in order.
fn addresses(m: &Message) -> Vec<IpAddr> {
    common::labdns::addresses(&m.answers)
}

fn one_synthesized(m: &Message, v4: Ipv4Addr) {
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m}");
    assert_eq!(addresses(m), vec![IpAddr::V6(synthesized(v4))], "{m}");
    assert!(!m.metadata.authentic_data, "AD clear: {m}");
    assert!(m.metadata.recursion_available, "RA: {m}");
}

fn nodata(m: &Message) {
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m}");
    assert!(addresses(m).is_empty(), "nothing synthesized: {m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv4_only_name_gets_aaaa_records_under_the_prefix() {
    let s = setup("synthesize = \"on\"").await;
    s.publish(State::Ok, State::Ok, &[PREFIX]);
    let m = s.ask(V4ONLY, RecordType::AAAA).await;
    one_synthesized(&m, V4ONLY_V4);
    // §5.1.7: the lesser of the A TTL (300) and the NODATA's (60).
    assert_eq!(m.answers[0].ttl, NEGATIVE_TTL, "{m}");
    let asked = s.upstream.total_queries();
    // The second answer comes from the cache: the same, no query.
    let again = s.ask(V4ONLY, RecordType::AAAA).await;
    one_synthesized(&again, V4ONLY_V4);
    assert_eq!(s.upstream.total_queries(), asked, "answered from the cache");
    assert_eq!(s.synthesized("AAAA"), 2);
    // The A answer itself is the upstream's.
    let a = s.ask(V4ONLY, RecordType::A).await;
    assert_eq!(addresses(&a), vec![IpAddr::V4(V4ONLY_V4)]);
    // SERVFAIL to AAAA counts as no AAAA (§5.1.2).
    // Again, while the failure cache (RFC 9520) holds the failed lookup.
    for _ in 0..2 {
        one_synthesized(
            &s.ask(BROKEN, RecordType::AAAA).await,
            Ipv4Addr::new(192, 0, 2, 12),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_aaaa_and_an_upstreams_own_dns64_answer_pass_untouched() {
    let s = setup("synthesize = \"on\"").await;
    s.publish(State::Ok, State::Ok, &[PREFIX]);
    let m = s.ask(DUAL, RecordType::AAAA).await;
    assert_eq!(addresses(&m), vec![IpAddr::V6(DUAL_V6)], "{m}");
    let m = s.ask(ALREADY, RecordType::AAAA).await;
    assert_eq!(
        addresses(&m),
        vec![IpAddr::V6(synthesized(Ipv4Addr::new(192, 0, 2, 11)))],
        "nothing synthesized twice: {m}"
    );
    assert_eq!(s.synthesized("AAAA"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_ipv4only_arpa_and_signed_answers_to_do_queries_are_left_alone() {
    let s = setup("synthesize = \"on\"").await;
    s.publish(State::Ok, State::Ok, &[PREFIX]);
    let m = s.ask(MISSING, RecordType::AAAA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{m}");
    nodata(&s.ask(IPV4ONLY, RecordType::AAAA).await);
    // DO and a signed A answer: the upstream's NODATA (§5.5)...
    nodata(&s.ask_do(SIGNED, RecordType::AAAA).await);
    // ...while a client that validates nothing gets the synthesized one.
    one_synthesized(
        &s.ask(SIGNED, RecordType::AAAA).await,
        Ipv4Addr::new(192, 0, 2, 13),
    );
    assert_eq!(s.synthesized("AAAA"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cname_chain_is_kept_with_the_aaaa_at_its_end() {
    let s = setup("synthesize = \"on\"").await;
    s.publish(State::Ok, State::Ok, &[PREFIX]);
    let m = s.ask(ALIAS, RecordType::AAAA).await;
    assert_eq!(m.answers.len(), 2, "{m}");
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME, "{m}");
    assert_eq!(m.answers[1].name, name(V4ONLY), "{m}");
    assert_eq!(addresses(&m), vec![IpAddr::V6(synthesized(V4ONLY_V4))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answers_follow_the_verdicts_at_once() {
    let s = setup("synthesize = \"auto\"").await;
    // auto: IPv4 works, so nothing is synthesized.
    s.publish(State::Ok, State::Ok, &[PREFIX]);
    nodata(&s.ask(V4ONLY, RecordType::AAAA).await);
    // IPv4 fails, IPv6 works: the cached NODATA is synthesized now.
    s.publish(State::Failed, State::Ok, &[PREFIX]);
    one_synthesized(&s.ask(V4ONLY, RecordType::AAAA).await, V4ONLY_V4);
    // The prefix moves: the next answer is under the new one.
    s.publish(State::Failed, State::Ok, &["64:ff9b::/96"]);
    let m = s.ask(V4ONLY, RecordType::AAAA).await;
    let wkp: Ipv6Addr = "64:ff9b::192.0.2.10".parse().unwrap();
    assert_eq!(addresses(&m), vec![IpAddr::V6(wkp)], "{m}");
    // IPv4 is back: the upstream's NODATA again, at once.
    s.publish(State::Ok, State::Ok, &[PREFIX]);
    nodata(&s.ask(V4ONLY, RecordType::AAAA).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_never_synthesizes() {
    let s = setup("synthesize = \"off\"").await;
    s.publish(State::Failed, State::Ok, &[PREFIX]);
    nodata(&s.ask(V4ONLY, RecordType::AAAA).await);
    let ptr = ip6_arpa(synthesized(V4ONLY_V4));
    let m = s.ask(&ptr, RecordType::PTR).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ptr_under_the_prefix_is_answered_from_in_addr_arpa() {
    let s = setup("synthesize = \"on\"").await;
    s.publish(State::Ok, State::Ok, &[PREFIX]);
    let qname = ip6_arpa(synthesized(V4ONLY_V4));
    let m = s.ask(&qname, RecordType::PTR).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m}");
    assert_eq!(m.answers.len(), 2, "{m}");
    assert_eq!(
        m.answers[0].data,
        RData::CNAME(CNAME(name("10.2.0.192.in-addr.arpa."))),
        "{m}"
    );
    assert_eq!(m.answers[1].data, RData::PTR(PTR(name(V4ONLY))), "{m}");
    assert_eq!(s.synthesized("PTR"), 1);
    // An upstream that refuses the ip6.arpa name (it has no such zone)
    // fails that lookup: the name is still answered from in-addr.arpa.
    let m = s
        .ask(&ip6_arpa(synthesized(REFUSING_V4)), RecordType::PTR)
        .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m}");
    assert_eq!(m.answers.len(), 2, "{m}");
    assert_eq!(m.answers[1].data, RData::PTR(PTR(name(DUAL))), "{m}");
    assert_eq!(s.synthesized("PTR"), 2);
    // Outside the prefix: the upstream's answer.
    let outside = ip6_arpa("2001:db8:1::c000:20a".parse().unwrap());
    let m = s.ask(&outside, RecordType::PTR).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_of_one_lookup_all_get_the_synthesized_answer_from_one_a_query() {
    let s = setup_slow("synthesize = \"on\"", Duration::from_millis(100)).await;
    s.publish(State::Ok, State::Ok, &[PREFIX]);
    let asks: Vec<_> = (0..5)
        .map(|_| {
            let q = query(V4ONLY, RecordType::AAAA).bytes();
            let getapr = s.getapr;
            tokio::spawn(async move { udp_exchange(getapr, &q).await })
        })
        .collect();
    for ask in asks {
        one_synthesized(&parse(&ask.await.unwrap()), V4ONLY_V4);
    }
    // A client's A query now joins the cache the synthesis filled.
    let a = s.ask(V4ONLY, RecordType::A).await;
    assert_eq!(addresses(&a), vec![IpAddr::V4(V4ONLY_V4)]);
    let types: Vec<RecordType> = s
        .upstream
        .received_messages()
        .iter()
        .map(|m| m.queries[0].query_type())
        .collect();
    assert_eq!(
        (
            types.iter().filter(|t| **t == RecordType::AAAA).count(),
            types.iter().filter(|t| **t == RecordType::A).count()
        ),
        (1, 1),
        "one AAAA and one A query upstream: {types:?}"
    );
    assert_eq!(s.synthesized("AAAA"), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filter_judges_synthesized_aaaa_by_the_ipv6_family() {
    let upstream = FakeUpstream::start(|q, _| vec![Action::Reply(zone(q))]).await;
    let toml = config_toml(&[upstream.addr()], "").replace("filter = \"off\"", "filter = \"auto\"");
    let toml = format!("{toml}\n[dns64]\nsynthesize = \"on\"\n");
    let (handle, getapr) = common::start_getapr(&toml).await;
    let s = Setup {
        upstream,
        getapr,
        handle,
    };
    // IPv6 works: the synthesized AAAA stays.
    s.publish(State::Failed, State::Ok, &[PREFIX]);
    one_synthesized(&s.ask(V4ONLY, RecordType::AAAA).await, V4ONLY_V4);
    // IPv6 fails while the A record can work: the AAAA goes (EDE 17).
    s.publish(State::Ok, State::Failed, &[PREFIX]);
    let raw = udp_exchange(s.getapr, &query(V4ONLY, RecordType::AAAA).bytes()).await;
    let m = parse(&raw);
    nodata(&m);
    let ede = getapr::dns::rewrite::extended_errors(&raw);
    assert!(
        ede.iter()
            .any(|(code, _)| *code == getapr::dns::rewrite::EDE_FILTERED),
        "filtered: {ede:?} {m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_answer_is_synthesized_from_the_stale_a_answer() {
    let down = Arc::new(AtomicBool::new(false));
    let s = setup_with("synthesize = \"on\"", Duration::ZERO, Arc::clone(&down)).await;
    s.publish(State::Ok, State::Ok, &[PREFIX]);
    let v4 = Ipv4Addr::new(192, 0, 2, 14);
    one_synthesized(&s.ask(SHORT, RecordType::AAAA).await, v4);
    down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Both answers expired, the upstream is silent: after the client
    // response timer, the stale NODATA synthesized from the stale A
    // answer, with no lookup of the failing upstream.
    let started = std::time::Instant::now();
    one_synthesized(&s.ask(SHORT, RecordType::AAAA).await, v4);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "{took:?}");
    assert_eq!(s.synthesized("AAAA"), 2);
}

/// `dns64.prefixes` alone (no published prefix) synthesizes: the config's
/// prefixes reach the verdicts through the probe side (issue 20, part 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_prefixes_synthesize() {
    let s = setup("synthesize = \"on\"\nprefixes = [\"2001:db8:64::/96\"]").await;
    one_synthesized(&s.ask(V4ONLY, RecordType::AAAA).await, V4ONLY_V4);
}
