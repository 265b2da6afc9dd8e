//! getapr as a faithful forwarding stub.
//!
//! Each test starts an in-process upstream and getapr on `127.0.0.1:0` and
//! compares what a client gets through getapr with what it gets from the
//! upstream directly, field by field (see `common::compare`), or checks the
//! one behaviour that has no upstream counterpart (REFUSED, NOTIMP, ...).

mod common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::auth::{self, ALIAS, BIG, BIG_TXT_COUNT, DUAL, MEDIUM, MISSING, NODATA, V6ONLY};
use common::client::{TcpClient, TcpRecv, a_addrs, ip, parse, udp_exchange_within};
use common::fake::{a_reply, rrsig};
use common::{
    Action, AuthUpstream, FakeUpstream, QueryBuilder, Transport, compare, config_toml, query,
    question_bytes, spawn_getapr, start_getapr, tcp_exchange, udp_exchange, udp_silence,
};
use getapr::daemon::Handle;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};

/// How long "no reply" is waited for.
const SILENCE: Duration = Duration::from_millis(300);

/// getapr in front of the authoritative upstream.
struct Setup {
    auth: AuthUpstream,
    getapr: SocketAddr,
    handle: Handle,
}

async fn setup(dns_extra: &str) -> Setup {
    let auth = AuthUpstream::start().await;
    let (handle, getapr) = start_getapr(&config_toml(&[auth.addr()], dns_extra)).await;
    Setup {
        auth,
        getapr,
        handle,
    }
}

/// The same query (same ID) to the upstream and through getapr, over UDP.
/// Checks what compare() leaves out: the ID and question bytes come back
/// as the client sent them, and RA=1 (dns::server).
async fn direct_and_via(
    upstream: SocketAddr,
    getapr: SocketAddr,
    q: &QueryBuilder,
) -> (Message, Message) {
    let bytes = q.bytes();
    let direct = parse(&udp_exchange(upstream, &bytes).await);
    let via_bytes = udp_exchange(getapr, &bytes).await;
    check_echo(&bytes, &via_bytes);
    (direct, parse(&via_bytes))
}

fn check_echo(query: &[u8], reply: &[u8]) {
    let reply_msg = parse(reply);
    assert_eq!(
        reply_msg.metadata.id,
        u16::from_be_bytes([query[0], query[1]]),
        "reply ID is not the client's"
    );
    assert_eq!(reply_msg.metadata.message_type, MessageType::Response);
    assert_eq!(
        question_bytes(reply),
        question_bytes(query),
        "question not echoed byte for byte"
    );
    assert!(
        reply_msg.metadata.recursion_available,
        "RA=0 in {reply_msg}"
    );
}

fn has_soa(message: &Message) -> bool {
    message
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA)
}

// --- answers forwarded as the upstream gave them ------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_and_aaaa_with_several_records() {
    let s = setup("").await;
    for qtype in [RecordType::A, RecordType::AAAA] {
        let q = query(DUAL, qtype);
        let (direct, via) = direct_and_via(s.auth.addr(), s.getapr, &q).await;
        assert_eq!(via.answers.len(), 3, "{via}");
        compare(&direct, &via);

        let direct_tcp = parse(&tcp_exchange(s.auth.addr(), &q.bytes()).await);
        let via_tcp = tcp_exchange(s.getapr, &q.bytes()).await;
        check_echo(&q.bytes(), &via_tcp);
        compare(&direct_tcp, &parse(&via_tcp));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cname_chain() {
    let s = setup("").await;
    for qtype in [RecordType::A, RecordType::AAAA] {
        let (direct, via) = direct_and_via(s.auth.addr(), s.getapr, &query(ALIAS, qtype)).await;
        assert_eq!(
            via.answers.len(),
            5,
            "2 CNAMEs and 3 addresses expected: {via}"
        );
        compare(&direct, &via);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_with_soa() {
    let s = setup("").await;
    let (direct, via) =
        direct_and_via(s.auth.addr(), s.getapr, &query(MISSING, RecordType::A)).await;
    assert_eq!(via.metadata.response_code, ResponseCode::NXDomain);
    assert!(has_soa(&via), "no SOA in {via}");
    compare(&direct, &via);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodata() {
    let s = setup("").await;
    for name in [NODATA, V6ONLY] {
        let (direct, via) =
            direct_and_via(s.auth.addr(), s.getapr, &query(name, RecordType::A)).await;
        assert_eq!(via.metadata.response_code, ResponseCode::NoError);
        assert!(via.answers.is_empty() && has_soa(&via), "{via}");
        compare(&direct, &via);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_query_keeps_rrsigs_and_the_cache_keeps_do_apart() {
    // A validating resolver: with DO it adds RRSIGs and sets AD.
    let upstream = FakeUpstream::start(|q, _| {
        let mut reply = a_reply(q, 300, &[ip(1), ip(2)]);
        let dnssec_ok = q.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        if dnssec_ok {
            let owner = q.queries[0].name().clone();
            reply.add_answer(rrsig(
                &owner,
                RecordType::A,
                300,
                &auth::name("example.test."),
            ));
            reply.metadata.authentic_data = true;
        }
        vec![Action::Reply(reply)]
    })
    .await;
    let (_handle, getapr) = start_getapr(&config_toml(&[upstream.addr()], "")).await;

    let signed = query("signed.example.test", RecordType::A).dnssec_ok();
    let (direct, via) = direct_and_via(upstream.addr(), getapr, &signed).await;
    assert!(
        via.answers
            .iter()
            .any(|r| r.record_type() == RecordType::RRSIG),
        "RRSIG lost: {via}"
    );
    compare(&direct, &via);
    let forwarded = upstream.received_messages();
    assert!(
        forwarded
            .last()
            .and_then(|m| m.edns.as_ref())
            .is_some_and(|e| e.flags().dnssec_ok),
        "getapr did not forward the DO bit: {forwarded:?}"
    );

    // Same name without DO, after the DO answer is cached: no RRSIGs.
    let plain = query("signed.example.test", RecordType::A);
    let (direct, via) = direct_and_via(upstream.addr(), getapr, &plain).await;
    assert!(
        via.answers
            .iter()
            .all(|r| r.record_type() != RecordType::RRSIG),
        "a non-DO query got the cached DO answer: {via}"
    );
    compare(&direct, &via);
}

// --- sizes: truncation and TCP -------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answer_tc_over_udp_full_over_tcp() {
    let s = setup("").await;
    let q = query(BIG, RecordType::TXT).payload(1232);

    let via_udp = udp_exchange(s.getapr, &q.bytes()).await;
    check_echo(&q.bytes(), &via_udp);
    assert!(
        via_udp.len() <= 1232,
        "UDP reply of {} bytes > 1232",
        via_udp.len()
    );
    let via_udp = parse(&via_udp);
    assert!(via_udp.metadata.truncation, "TC=0: {via_udp}");
    assert_eq!(via_udp.metadata.response_code, ResponseCode::NoError);
    assert!(
        via_udp.answers.is_empty()
            && via_udp.authorities.is_empty()
            && via_udp.additionals.is_empty(),
        "a truncated reply should be header + question + OPT: {via_udp}"
    );
    assert!(
        via_udp.edns.is_some(),
        "no OPT in the truncated reply to an EDNS client"
    );
    assert!(
        s.auth.queries(Transport::Tcp) >= 1,
        "the upstream set TC but getapr never asked it over TCP"
    );

    let direct_tcp = parse(&tcp_exchange(s.auth.addr(), &q.bytes()).await);
    let via_tcp = tcp_exchange(s.getapr, &q.bytes()).await;
    check_echo(&q.bytes(), &via_tcp);
    let via_tcp = parse(&via_tcp);
    assert_eq!(via_tcp.answers.len(), BIG_TXT_COUNT);
    compare(&direct_tcp, &via_tcp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_edns_gets_at_most_512_bytes_and_no_opt() {
    let s = setup("").await;

    // A miss (NODATA) and a hit on an entry an EDNS client made (DUAL).
    let miss = query(NODATA, RecordType::A).no_edns();
    let (direct, via) = direct_and_via(s.auth.addr(), s.getapr, &miss).await;
    assert!(
        via.edns.is_none(),
        "OPT in a reply to a client without EDNS: {via}"
    );
    compare(&direct, &via);
    let (direct, via) = direct_and_via(s.auth.addr(), s.getapr, &query(DUAL, RecordType::A)).await;
    compare(&direct, &via);
    let hit = query(DUAL, RecordType::A).no_edns();
    let (direct, via) = direct_and_via(s.auth.addr(), s.getapr, &hit).await;
    assert!(
        via.edns.is_none(),
        "OPT in a reply (from the cache) to a client without EDNS: {via}"
    );
    compare(&direct, &via);

    let big = query(BIG, RecordType::TXT).no_edns();
    truncated_without_opt(s.getapr, &big).await;

    // MEDIUM fits 1232 but not 512: cached from an EDNS query, then asked
    // without EDNS, the reply must still fit the second client.
    let edns = query(MEDIUM, RecordType::TXT);
    let (direct, via) = direct_and_via(s.auth.addr(), s.getapr, &edns).await;
    compare(&direct, &via);
    let plain = query(MEDIUM, RecordType::TXT).no_edns();
    truncated_without_opt(s.getapr, &plain).await;
}

/// Asks `q` (without EDNS) over UDP and checks the reply is truncated to
/// at most 512 bytes, with TC=1, no OPT and the question echoed.
async fn truncated_without_opt(getapr: SocketAddr, q: &QueryBuilder) {
    let reply = udp_exchange(getapr, &q.bytes()).await;
    check_echo(&q.bytes(), &reply);
    assert!(
        reply.len() <= 512,
        "{} bytes to a client without EDNS",
        reply.len()
    );
    let reply = parse(&reply);
    assert!(reply.metadata.truncation, "TC=0: {reply}");
    assert!(
        reply.edns.is_none(),
        "OPT in a reply to a client without EDNS: {reply}"
    );
}

/// dns::wire: the UDP limit is the client's advertised size,
/// capped by `udp_max_size` (default 1232).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_limit_is_the_clients_size_capped_by_udp_max_size() {
    let q = query(BIG, RecordType::TXT).payload(4096);

    let s = setup("").await;
    let reply = udp_exchange(s.getapr, &q.bytes()).await;
    check_echo(&q.bytes(), &reply);
    assert!(
        reply.len() <= 1232,
        "{} bytes over the default cap",
        reply.len()
    );
    assert!(
        parse(&reply).metadata.truncation,
        "TC=0 over the default cap"
    );

    let s = setup("udp_max_size = 4096").await;
    let direct = parse(&tcp_exchange(s.auth.addr(), &q.bytes()).await);
    let reply = udp_exchange(s.getapr, &q.bytes()).await;
    check_echo(&q.bytes(), &reply);
    assert!(reply.len() > 1232, "only {} bytes", reply.len());
    let reply = parse(&reply);
    assert!(
        !reply.metadata.truncation,
        "TC=1 although client and cap take 4096: {reply}"
    );
    compare(&direct, &reply);
}

/// The other direction of "the reply fits the client": RFC 6891 §6.1.1, a
/// query with an OPT record gets one back, even when the cache entry (keyed
/// without regard to EDNS) was made for a client without EDNS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edns_client_gets_opt_from_an_entry_cached_without_edns() {
    let s = setup("").await;
    let plain = query(DUAL, RecordType::A).no_edns();
    let (direct, via) = direct_and_via(s.auth.addr(), s.getapr, &plain).await;
    compare(&direct, &via);
    let edns = query(DUAL, RecordType::A);
    let (direct, via) = direct_and_via(s.auth.addr(), s.getapr, &edns).await;
    assert!(
        via.edns.is_some(),
        "no OPT in the reply to an EDNS query: {via}"
    );
    compare(&direct, &via);
}

// --- case and cache --------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_case_name_echoed_on_miss_and_on_cache_hit() {
    let s = setup("").await;
    let miss = query("V6oNlY.eXaMpLe.TeSt", RecordType::AAAA);
    let (direct, via) = direct_and_via(s.auth.addr(), s.getapr, &miss).await;
    compare(&direct, &via);

    let (direct, via) = direct_and_via(s.auth.addr(), s.getapr, &query(DUAL, RecordType::A)).await;
    compare(&direct, &via);
    let asked = s.auth.total_queries();
    let mixed = query("DuAl.ExAmPlE.TeSt", RecordType::A);
    // direct_and_via checks the question bytes, so the case, of the hit.
    let (direct, via) = direct_and_via(s.auth.addr(), s.getapr, &mixed).await;
    compare(&direct, &via);
    assert_eq!(
        s.auth.total_queries(),
        asked + 1, // the direct query
        "the mixed-case query was not a cache hit (the cache key is the lower-cased name)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_query_served_from_cache_with_lower_ttl() {
    let s = setup("").await;
    let q = query(DUAL, RecordType::A);
    let (direct, first) = direct_and_via(s.auth.addr(), s.getapr, &q).await;
    compare(&direct, &first);
    let asked = s.auth.total_queries();

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = udp_exchange(s.getapr, &q.bytes()).await;
    check_echo(&q.bytes(), &second);
    let second = parse(&second);
    assert_eq!(
        s.auth.total_queries(),
        asked,
        "the second query reached the upstream"
    );
    compare(&direct, &second);
    for record in &second.answers {
        assert!(
            record.ttl < auth::TTL && record.ttl >= auth::TTL - 5,
            "TTL {} after 1.1 s in the cache; expected {}..{}",
            record.ttl,
            auth::TTL - 5,
            auth::TTL - 1
        );
    }
}

/// RFC 2308: NXDOMAIN is cached too, and served with its SOA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_answer_served_from_cache() {
    let s = setup("").await;
    let q = query(MISSING, RecordType::A);
    let (direct, first) = direct_and_via(s.auth.addr(), s.getapr, &q).await;
    compare(&direct, &first);
    let asked = s.auth.total_queries();
    let second = parse(&udp_exchange(s.getapr, &q.bytes()).await);
    assert_eq!(s.auth.total_queries(), asked, "the NXDOMAIN was not cached");
    compare(&direct, &second);
    for soa in second
        .authorities
        .iter()
        .filter(|r| r.record_type() == RecordType::SOA)
    {
        assert!(
            soa.ttl <= auth::SOA_TTL,
            "SOA TTL {} above the upstream's",
            soa.ttl
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_size_zero_sends_every_query_upstream() {
    let s = setup("cache_size = 0").await;
    let q = query(DUAL, RecordType::A);
    let direct = parse(&udp_exchange(s.auth.addr(), &q.bytes()).await);
    for i in 1..=3 {
        let via = udp_exchange(s.getapr, &q.bytes()).await;
        check_echo(&q.bytes(), &via);
        compare(&direct, &parse(&via));
        assert_eq!(
            s.auth.total_queries(),
            1 + i,
            "query {i} did not reach the upstream"
        );
    }
}

// --- access control and message checks -----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_outside_allow_gets_refused() {
    let s = setup(r#"allow = ["192.0.2.0/24"]"#).await;
    let q = query(DUAL, RecordType::A);
    let reply = udp_exchange(s.getapr, &q.bytes()).await;
    let reply = parse(&reply);
    assert_eq!(reply.metadata.id, q.message().metadata.id);
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::Refused,
        "{reply}"
    );
    assert!(reply.answers.is_empty(), "{reply}");
    assert_eq!(
        s.auth.total_queries(),
        0,
        "a refused query reached the upstream"
    );
}

/// Over TCP a client outside `dns.allow` is closed as it connects: it
/// would otherwise hold a connection slot (tests/tcp_limits.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_outside_allow_is_closed_over_tcp() {
    let s = setup(r#"allow = ["192.0.2.0/24"]"#).await;
    let q = query(DUAL, RecordType::A);
    let mut client = TcpClient::connect(s.getapr).await;
    let _ = client.try_send(&q.bytes()).await;
    let got = client.recv_within(Duration::from_secs(2)).await;
    assert!(
        matches!(got, TcpRecv::Closed | TcpRecv::Error(_)),
        "a refused TCP client got {got:?}"
    );
    assert_eq!(
        s.auth.total_queries(),
        0,
        "a refused query reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr1_dropped() {
    let s = setup("").await;
    let mut response = query(DUAL, RecordType::A).message();
    response.metadata.message_type = MessageType::Response;
    udp_silence(s.getapr, &response.to_vec().unwrap(), SILENCE).await;
    // Still serving, and nothing was forwarded for the QR=1 packet.
    let (direct, via) = direct_and_via(s.auth.addr(), s.getapr, &query(DUAL, RecordType::A)).await;
    compare(&direct, &via);
    assert_eq!(s.auth.total_queries(), 2, "the QR=1 packet was forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_and_update_get_notimp() {
    let s = setup("").await;
    for op_code in [OpCode::Notify, OpCode::Update] {
        let q = query(auth::ZONE, RecordType::SOA).op_code(op_code);
        let reply = parse(&udp_exchange(s.getapr, &q.bytes()).await);
        assert_eq!(reply.metadata.id, q.message().metadata.id);
        assert_eq!(reply.metadata.message_type, MessageType::Response);
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NotImp,
            "{op_code:?}: {reply}"
        );
    }
    assert_eq!(
        s.auth.total_queries(),
        0,
        "a non-QUERY opcode was forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_with_a_readable_header_gets_formerr() {
    let s = setup("").await;
    // ID 0xbeef, RD, QDCOUNT=1, then a label that runs past the end.
    let mut garbage = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    garbage.extend_from_slice(&[0x05, b'a', b'b']);
    let reply = udp_exchange(s.getapr, &garbage).await;
    assert!(
        reply.len() >= 12,
        "reply shorter than a header: {reply:02x?}"
    );
    let reply = parse(&reply);
    assert_eq!(reply.metadata.id, 0xbeef);
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::FormErr,
        "{reply}"
    );

    // Not even a header: dropped.
    udp_silence(s.getapr, &[0xbe, 0xef, 0x01], SILENCE).await;
    assert_eq!(s.auth.total_queries(), 0, "garbage was forwarded");
}

// --- upstream failures ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_when_the_first_upstream_never_answers() {
    let silent = FakeUpstream::silent().await;
    let auth = AuthUpstream::start().await;
    let (_handle, getapr) = start_getapr(&config_toml(
        &[silent.addr(), auth.addr()],
        "timeout_ms = 300",
    ))
    .await;
    let started = Instant::now();
    let (direct, via) = direct_and_via(auth.addr(), getapr, &query(DUAL, RecordType::A)).await;
    let elapsed = started.elapsed();
    compare(&direct, &via);
    assert!(
        silent.total_queries() >= 1,
        "the first upstream was never tried"
    );
    assert!(
        elapsed < Duration::from_millis(300 + 1000),
        "took {elapsed:?}"
    );
}

/// The upstream that answered last is tried first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_upstream_tried_first_after_a_failover() {
    let silent = FakeUpstream::silent().await;
    let auth = AuthUpstream::start().await;
    let (_handle, getapr) = start_getapr(&config_toml(
        &[silent.addr(), auth.addr()],
        "timeout_ms = 300",
    ))
    .await;
    let (direct, via) = direct_and_via(auth.addr(), getapr, &query(DUAL, RecordType::A)).await;
    compare(&direct, &via);
    let tried = silent.total_queries();

    let started = Instant::now();
    let (direct, via) = direct_and_via(auth.addr(), getapr, &query(V6ONLY, RecordType::AAAA)).await;
    let elapsed = started.elapsed();
    compare(&direct, &via);
    assert_eq!(
        silent.total_queries(),
        tried,
        "the dead upstream was tried first again"
    );
    assert!(elapsed < Duration::from_millis(250), "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_on_servfail_and_refused() {
    for rcode in [ResponseCode::ServFail, ResponseCode::Refused] {
        let failing = FakeUpstream::rcode(rcode).await;
        let auth = AuthUpstream::start().await;
        let (_handle, getapr) = start_getapr(&config_toml(
            &[failing.addr(), auth.addr()],
            "timeout_ms = 300",
        ))
        .await;
        let (direct, via) = direct_and_via(auth.addr(), getapr, &query(DUAL, RecordType::A)).await;
        assert_eq!(
            failing.total_queries(),
            1,
            "{rcode}: first upstream not tried once"
        );
        compare(&direct, &via);
    }
}

// --- concurrency (identical queries merged: tests/faults.rs) ---------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_pipelining_answers_as_they_complete() {
    // slow → 192.0.2.1 after 400 ms; fast1 → .2 and fast2 → .3 at once.
    let upstream = FakeUpstream::start(|q, _| {
        let name = q.queries[0].name().to_ascii();
        let mut actions = Vec::new();
        let last = if name.starts_with("slow") {
            actions.push(Action::Delay(Duration::from_millis(400)));
            1
        } else if name.starts_with("fast1") {
            2
        } else {
            3
        };
        actions.push(Action::Reply(a_reply(q, 300, &[ip(last)])));
        actions
    })
    .await;
    let (_handle, getapr) = start_getapr(&config_toml(&[upstream.addr()], "")).await;

    let queries = [
        (query("slow.example.test", RecordType::A).id(0x101), ip(1)),
        (query("fast1.example.test", RecordType::A).id(0x102), ip(2)),
        (query("fast2.example.test", RecordType::A).id(0x103), ip(3)),
    ];
    let mut conn = TcpClient::connect(getapr).await;
    for (q, _) in &queries {
        conn.send(&q.bytes()).await;
    }
    let mut order = Vec::new();
    let mut replies = HashMap::new();
    for _ in &queries {
        let reply = conn.recv().await;
        let id = parse(&reply).metadata.id;
        order.push(id);
        replies.insert(id, reply);
    }
    for (q, addr) in &queries {
        let id = q.message().metadata.id;
        let reply = replies
            .get(&id)
            .unwrap_or_else(|| panic!("no reply with ID {id:#x}; got {order:x?}"));
        check_echo(&q.bytes(), reply);
        assert_eq!(
            a_addrs(&parse(reply)),
            [*addr],
            "reply {id:#x} carries another answer"
        );
    }
    assert_eq!(
        order.last(),
        Some(&0x101),
        "the slow query held up the ones behind it (reply order {order:x?})"
    );
}

// --- what is sent upstream -------------------------------------------------

/// dns::upstream and dns::wire: a fresh ID per upstream query,
/// the question bytes as the client sent them, and no COOKIE or ECS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_query_has_a_fresh_id_and_no_cookie_or_ecs() {
    let upstream = FakeUpstream::start(|q, _| vec![Action::Reply(a_reply(q, 300, &[ip(1)]))]).await;
    let (_handle, getapr) = start_getapr(&config_toml(&[upstream.addr()], "")).await;
    let mut client_ids = Vec::new();
    for i in 0..4u16 {
        let q = query(&format!("Id{i}.ExAmPlE.tEsT"), RecordType::A)
            .id(0x2000 + i)
            .edns_option(EdnsOption::Unknown(10, vec![1, 2, 3, 4, 5, 6, 7, 8]))
            .edns_option(EdnsOption::Subnet(ClientSubnet::new(
                Ipv4Addr::new(198, 51, 100, 0).into(),
                24,
                0,
            )));
        client_ids.push(0x2000 + i);
        let reply = udp_exchange(getapr, &q.bytes()).await;
        check_echo(&q.bytes(), &reply);
        let received = upstream.received();
        let forwarded = &received.last().expect("nothing forwarded").bytes;
        assert_eq!(
            question_bytes(forwarded),
            question_bytes(&q.bytes()),
            "question not forwarded byte for byte"
        );
        let forwarded = parse(forwarded);
        let edns = forwarded.edns.as_ref().expect("EDNS dropped upstream");
        assert!(
            edns.option(EdnsCode::Cookie).is_none(),
            "COOKIE forwarded: {edns:?}"
        );
        assert!(
            edns.option(EdnsCode::Subnet).is_none(),
            "ECS forwarded: {edns:?}"
        );
    }
    let upstream_ids: Vec<u16> = upstream
        .received_messages()
        .iter()
        .map(|m| m.metadata.id)
        .collect();
    assert_ne!(
        upstream_ids, client_ids,
        "the client's IDs were forwarded unchanged"
    );
    // Four random IDs are all equal once in 2^48 runs.
    assert!(
        upstream_ids.windows(2).any(|w| w[0] != w[1]),
        "every upstream query had the same ID: {upstream_ids:x?}"
    );
}

// --- limits, reload, shutdown ------------------------------------------------

/// dns::server: a cap on TCP connections. At the cap a new
/// connection takes the slot of the one idle longest, which is closed;
/// tests/tcp_limits.rs has the rest (stalled and busy connections, the
/// ACL, reload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connection_cap() {
    let s = setup("tcp_max_connections = 2").await;
    let q = query(DUAL, RecordType::A).bytes();
    let mut first = TcpClient::connect(s.getapr).await;
    let mut second = TcpClient::connect(s.getapr).await;
    for conn in [&mut first, &mut second] {
        conn.send(&q).await;
        check_echo(&q, &conn.recv().await);
    }
    let mut third = TcpClient::connect(s.getapr).await;
    third.send(&q).await;
    check_echo(&q, &third.recv().await);
    match first.recv_within(Duration::from_secs(2)).await {
        TcpRecv::Closed | TcpRecv::Error(_) => {}
        other => panic!("the connection idle longest was not closed: {other:?}"),
    }
    second.send(&q).await;
    check_echo(&q, &second.recv().await);
}

/// SIGHUP reloads; the daemon side of it is `Handle::reload`,
/// which applies a new config to the running listeners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_new_config() {
    let s = setup("").await;
    let (direct, via) = direct_and_via(s.auth.addr(), s.getapr, &query(DUAL, RecordType::A)).await;
    compare(&direct, &via);

    let other = FakeUpstream::start(|q, _| vec![Action::Reply(a_reply(q, 300, &[ip(99)]))]).await;
    let refusing = config_toml(&[other.addr()], r#"allow = ["192.0.2.0/24"]"#);
    s.handle
        .reload(common::daemon::parse(&refusing))
        .await
        .expect("reload");
    let reply = parse(&udp_exchange(s.getapr, &query(V6ONLY, RecordType::A).bytes()).await);
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::Refused,
        "the new allow list is not applied: {reply}"
    );

    let open = config_toml(&[other.addr()], "");
    s.handle
        .reload(common::daemon::parse(&open))
        .await
        .expect("reload");
    let reply =
        parse(&udp_exchange(s.getapr, &query("new.example.test", RecordType::A).bytes()).await);
    assert_eq!(
        a_addrs(&reply),
        [ip(99)],
        "the new upstream is not used: {reply}"
    );
    assert_eq!(other.total_queries(), 1);
}

/// Shutdown drains the queries in flight, then `run()` returns Ok
/// and nothing answers any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_queries_in_flight() {
    let upstream = FakeUpstream::start(|q, _| {
        vec![
            Action::Delay(Duration::from_millis(500)),
            Action::Reply(a_reply(q, 300, &[ip(1)])),
        ]
    })
    .await;
    let running = spawn_getapr(&config_toml(&[upstream.addr()], "")).await;
    let addr = running.addr;
    let q = query("slow.example.test", RecordType::A);
    let bytes = q.bytes();
    let client = tokio::spawn(async move { udp_exchange(addr, &bytes).await });
    let deadline = Instant::now() + Duration::from_secs(2);
    while upstream.total_queries() == 0 {
        assert!(
            Instant::now() < deadline,
            "the query never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let started = Instant::now();
    running.handle.shutdown();
    let result = tokio::time::timeout(Duration::from_secs(3), running.run)
        .await
        .expect("run() did not return within 3 s of shutdown")
        .expect("run() task");
    let stopped = Instant::now();
    assert!(result.is_ok(), "run() after shutdown: {result:?}");
    assert!(
        stopped - started < Duration::from_secs(2),
        "drain took {:?}",
        stopped - started
    );
    // In a test the daemon's tasks outlive run(), so timing shows the
    // drain: the upstream answers 500 ms after it got the query, and run()
    // must not return before that answer has been relayed.
    let asked = upstream.received()[0].at;
    assert!(
        stopped >= asked + Duration::from_millis(500),
        "run() returned {:?} after the query reached the upstream, before its answer (500 ms)",
        stopped - asked
    );
    let reply = client.await.expect("client task");
    check_echo(&q.bytes(), &reply);
    assert_eq!(
        a_addrs(&parse(&reply)),
        [ip(1)],
        "the query in flight was not answered"
    );
    udp_silence(addr, &query(DUAL, RecordType::A).bytes(), SILENCE).await;
}

/// The drain is bounded: a query whose upstream never answers
/// does not hold shutdown beyond 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_on_a_hung_query_after_2_s() {
    let silent = FakeUpstream::silent().await;
    let running = spawn_getapr(&config_toml(&[silent.addr()], "timeout_ms = 10000")).await;
    let addr = running.addr;
    let pending = tokio::spawn(async move {
        udp_exchange_within(
            addr,
            &query(DUAL, RecordType::A).bytes(),
            Duration::from_secs(5),
        )
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(2);
    while silent.total_queries() == 0 {
        assert!(
            Instant::now() < deadline,
            "the query never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    running.handle.shutdown();
    let result = tokio::time::timeout(Duration::from_secs(4), running.run)
        .await
        .expect("run() did not return within 4 s of shutdown")
        .expect("run() task");
    assert!(result.is_ok(), "run() after shutdown: {result:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed <= Duration::from_millis(2500),
        "shutdown took {elapsed:?} with a hung query (bound: 2 s)"
    );
    pending.abort();
}
