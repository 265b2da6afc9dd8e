//! Tests of the test harness itself, against the upstreams directly (no
//! getapr): what `tests/stub.rs` compares with must be what it claims.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::auth::{self, BIG, BIG_TXT_COUNT, DUAL, MEDIUM, MEDIUM_TXT_COUNT};
use common::client::{TcpClient, a_addrs, parse, udp_exchange_within};
use common::compare::differences;
use common::fake::{a_reply, reply_to, rrsig};
use common::{
    Action, AuthUpstream, FakeUpstream, Transport, compare, query, question_bytes, tcp_exchange,
    udp_exchange, udp_silence,
};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use tokio::net::UdpSocket;

/// [`a_addrs`] as a set: these tests compare answers whatever their order.
fn a_set(message: &Message) -> BTreeSet<Ipv4Addr> {
    a_addrs(message).into_iter().collect()
}

#[tokio::test]
async fn auth_answers_a_and_aaaa_alike_over_udp_and_tcp() {
    let auth = AuthUpstream::start().await;
    for qtype in [RecordType::A, RecordType::AAAA] {
        let q = query(DUAL, qtype).bytes();
        let udp = parse(&udp_exchange(auth.addr(), &q).await);
        let tcp = parse(&tcp_exchange(auth.addr(), &q).await);
        assert_eq!(udp.metadata.response_code, ResponseCode::NoError);
        assert!(udp.metadata.authoritative);
        assert_eq!(udp.answers.len(), 3, "{udp}");
        assert!(
            udp.answers.iter().all(|r| r.record_type() == qtype),
            "{udp}"
        );
        compare(&udp, &tcp);
    }
    let a = parse(&udp_exchange(auth.addr(), &query(DUAL, RecordType::A).bytes()).await);
    assert_eq!(a_set(&a), auth::DUAL_V4.into_iter().collect());
    assert_eq!(auth.queries(Transport::Udp), 3);
    assert_eq!(auth.queries(Transport::Tcp), 2);
}

#[tokio::test]
async fn auth_follows_the_cname_chain() {
    let auth = AuthUpstream::start().await;
    let reply = parse(&udp_exchange(auth.addr(), &query(auth::ALIAS, RecordType::A).bytes()).await);
    let cnames = reply
        .answers
        .iter()
        .filter(|r| r.record_type() == RecordType::CNAME)
        .count();
    assert_eq!(cnames, 2, "{reply}");
    assert_eq!(
        a_set(&reply),
        auth::DUAL_V4.into_iter().collect(),
        "{reply}"
    );
}

#[tokio::test]
async fn auth_nxdomain_and_nodata_carry_the_soa() {
    let auth = AuthUpstream::start().await;
    for (name, rcode) in [
        (auth::MISSING, ResponseCode::NXDomain),
        (auth::NODATA, ResponseCode::NoError),
        (auth::V6ONLY, ResponseCode::NoError),
    ] {
        let reply = parse(&udp_exchange(auth.addr(), &query(name, RecordType::A).bytes()).await);
        assert_eq!(reply.metadata.response_code, rcode, "{reply}");
        assert!(reply.answers.is_empty(), "{reply}");
        let soa = reply
            .authorities
            .iter()
            .find_map(|r| match &r.data {
                RData::SOA(soa) => Some(soa),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no SOA in authority: {reply}"));
        assert_eq!(soa.minimum, auth::SOA_MINIMUM);
    }
}

#[tokio::test]
async fn auth_truncates_big_over_udp_and_sends_it_whole_over_tcp() {
    let auth = AuthUpstream::start().await;
    let q = query(BIG, RecordType::TXT).payload(1232).bytes();
    let udp = udp_exchange(auth.addr(), &q).await;
    assert!(udp.len() <= 1232, "UDP reply of {} bytes", udp.len());
    assert!(parse(&udp).metadata.truncation, "no TC over UDP");

    let tcp = tcp_exchange(auth.addr(), &q).await;
    assert!(tcp.len() > 1232, "TCP reply of only {} bytes", tcp.len());
    let tcp = parse(&tcp);
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), BIG_TXT_COUNT);

    let plain = udp_exchange(auth.addr(), &query(BIG, RecordType::TXT).no_edns().bytes()).await;
    assert!(plain.len() <= 512, "{} bytes without EDNS", plain.len());
    let plain = parse(&plain);
    assert!(plain.metadata.truncation);
    assert!(plain.edns.is_none());
}

#[tokio::test]
async fn auth_medium_fits_1232_but_not_512() {
    let auth = AuthUpstream::start().await;
    let edns = udp_exchange(auth.addr(), &query(MEDIUM, RecordType::TXT).bytes()).await;
    assert!(
        edns.len() > 512 && edns.len() <= 1232,
        "{} bytes",
        edns.len()
    );
    let edns = parse(&edns);
    assert!(!edns.metadata.truncation);
    assert_eq!(edns.answers.len(), MEDIUM_TXT_COUNT);

    let plain = udp_exchange(
        auth.addr(),
        &query(MEDIUM, RecordType::TXT).no_edns().bytes(),
    )
    .await;
    assert!(plain.len() <= 512);
    assert!(parse(&plain).metadata.truncation);
}

#[tokio::test]
async fn auth_echoes_the_question_case() {
    let auth = AuthUpstream::start().await;
    let q = query("DuAl.ExAmPlE.TeSt", RecordType::A).bytes();
    let reply = udp_exchange(auth.addr(), &q).await;
    assert_eq!(question_bytes(&reply), question_bytes(&q));
    assert_eq!(parse(&reply).answers.len(), 3);
}

#[tokio::test]
async fn fake_replies_and_counts_per_transport() {
    let fake = FakeUpstream::start(|q, transport| {
        let last = match transport {
            Transport::Udp => 1,
            Transport::Tcp => 2,
        };
        vec![Action::Reply(a_reply(
            q,
            60,
            &[Ipv4Addr::new(192, 0, 2, last)],
        ))]
    })
    .await;
    let q = query("x.test", RecordType::A).id(0x1234).bytes();
    let udp = parse(&udp_exchange(fake.addr(), &q).await);
    let tcp = parse(&tcp_exchange(fake.addr(), &q).await);
    assert_eq!(udp.metadata.id, 0x1234);
    assert_eq!(a_set(&udp), [Ipv4Addr::new(192, 0, 2, 1)].into());
    assert_eq!(a_set(&tcp), [Ipv4Addr::new(192, 0, 2, 2)].into());
    assert_eq!(fake.queries(Transport::Udp), 1);
    assert_eq!(fake.queries(Transport::Tcp), 1);
    assert_eq!(fake.received_messages()[0].metadata.id, 0x1234);
}

#[tokio::test]
async fn fake_spoofs_from_another_port_or_address_and_with_a_wrong_id() {
    let fake = FakeUpstream::start(|q, _| {
        vec![
            Action::ReplyFromOtherPort(a_reply(q, 60, &[Ipv4Addr::new(192, 0, 2, 66)])),
            Action::ReplyWithWrongId(a_reply(q, 60, &[Ipv4Addr::new(192, 0, 2, 77)])),
            Action::ReplyFromAddress(
                Ipv4Addr::new(127, 0, 0, 2).into(),
                a_reply(q, 60, &[Ipv4Addr::new(192, 0, 2, 88)]),
            ),
            Action::Delay(Duration::from_millis(20)),
            Action::Reply(a_reply(q, 60, &[Ipv4Addr::new(192, 0, 2, 1)])),
        ]
    })
    .await;
    // An unconnected socket sees all four datagrams and where they came from.
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let q = query("x.test", RecordType::A).id(7).bytes();
    socket.send_to(&q, fake.addr()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = vec![0; 4096];
    // (same port and address, same address, ID, addresses)
    for _ in 0..4 {
        let (n, from) = tokio::time::timeout(Duration::from_secs(3), socket.recv_from(&mut buf))
            .await
            .expect("datagram")
            .unwrap();
        let reply = parse(&buf[..n]);
        seen.push((
            from == fake.addr(),
            from.ip() == fake.addr().ip(),
            reply.metadata.id,
            a_set(&reply),
        ));
    }
    seen.sort_by_key(|(_, _, _, addrs)| addrs.iter().next().copied());
    assert_eq!(
        seen,
        vec![
            (true, true, 7, [Ipv4Addr::new(192, 0, 2, 1)].into()),
            (false, true, 7, [Ipv4Addr::new(192, 0, 2, 66)].into()),
            (true, true, !7, [Ipv4Addr::new(192, 0, 2, 77)].into()),
            (false, false, 7, [Ipv4Addr::new(192, 0, 2, 88)].into()),
        ]
    );
    // A connected client (the kernel filters other ports) skips the
    // other-port datagram but still gets the wrong ID first.
    let first = parse(&udp_exchange(fake.addr(), &q).await);
    assert_eq!(first.metadata.id, !7);
}

#[tokio::test]
async fn fake_drops_and_delays() {
    let fake = FakeUpstream::start(|q, _| {
        if q.queries[0].name().to_ascii().starts_with("slow") {
            vec![
                Action::Delay(Duration::from_millis(200)),
                Action::Reply(reply_to(q)),
            ]
        } else {
            vec![Action::Drop]
        }
    })
    .await;
    udp_silence(
        fake.addr(),
        &query("quiet.test", RecordType::A).bytes(),
        Duration::from_millis(300),
    )
    .await;
    let started = Instant::now();
    let reply = udp_exchange_within(
        fake.addr(),
        &query("slow.test", RecordType::A).bytes(),
        Duration::from_secs(2),
    )
    .await;
    assert!(reply.is_some());
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(fake.total_queries(), 2);
}

#[tokio::test]
async fn fake_answers_tcp_queries_out_of_order() {
    let fake = FakeUpstream::start(|q, _| {
        let mut actions = Vec::new();
        if q.metadata.id == 1 {
            actions.push(Action::Delay(Duration::from_millis(200)));
        }
        actions.push(Action::Reply(reply_to(q)));
        actions
    })
    .await;
    let mut conn = TcpClient::connect(fake.addr()).await;
    for id in [1, 2, 3] {
        conn.send(&query("x.test", RecordType::A).id(id).bytes())
            .await;
    }
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(parse(&conn.recv().await).metadata.id);
    }
    assert_eq!(ids.last(), Some(&1), "{ids:?}");
}

#[tokio::test]
async fn fake_sends_raw_bytes_and_rrsigs() {
    let fake = FakeUpstream::start(|q, _| {
        if q.queries[0].query_type() == RecordType::TXT {
            return vec![Action::Raw(vec![0xde, 0xad])];
        }
        let mut reply = a_reply(q, 60, &[Ipv4Addr::new(192, 0, 2, 1)]);
        let owner = q.queries[0].name().clone();
        reply.add_answer(rrsig(&owner, RecordType::A, 60, &auth::name("test.")));
        vec![Action::Reply(reply)]
    })
    .await;
    let raw = udp_exchange(fake.addr(), &query("x.test", RecordType::TXT).bytes()).await;
    assert_eq!(raw, vec![0xde, 0xad]);
    let signed = parse(
        &udp_exchange(
            fake.addr(),
            &query("x.test", RecordType::A).dnssec_ok().bytes(),
        )
        .await,
    );
    assert_eq!(signed.answers.len(), 2);
    assert_eq!(signed.answers[1].record_type(), RecordType::RRSIG);
    assert!(signed.edns.as_ref().unwrap().flags().dnssec_ok);
}

#[tokio::test]
async fn compare_allows_only_what_it_says() {
    let auth = AuthUpstream::start().await;
    let q = query(DUAL, RecordType::A).bytes();
    let direct = parse(&udp_exchange(auth.addr(), &q).await);
    assert!(differences(&direct, &direct).is_empty());

    // Allowed: ID, RA, lower TTLs, another EDNS payload size.
    let mut via = direct.clone();
    via.metadata.id = direct.metadata.id.wrapping_add(1);
    via.metadata.recursion_available = !direct.metadata.recursion_available;
    via.answers[0].ttl -= 1;
    via.edns.as_mut().unwrap().set_max_payload(4096);
    assert_eq!(differences(&direct, &via), Vec::<String>::new());

    let changed = |f: &dyn Fn(&mut Message)| {
        let mut via = direct.clone();
        f(&mut via);
        differences(&direct, &via)
    };
    assert_eq!(changed(&|m| m.answers[1].ttl += 1).len(), 1);
    assert_eq!(changed(&|m| m.answers.swap(0, 1)).len(), 2);
    assert_eq!(
        changed(&|m| {
            m.answers.pop();
        })
        .len(),
        1
    );
    assert_eq!(changed(&|m| m.metadata.authoritative = false).len(), 1);
    assert_eq!(changed(&|m| m.metadata.truncation = true).len(), 1);
    assert_eq!(
        changed(&|m| m.metadata.response_code = ResponseCode::ServFail).len(),
        1
    );
    assert_eq!(changed(&|m| m.edns = None).len(), 1);
    assert_eq!(
        changed(&|m| {
            m.edns.as_mut().unwrap().set_dnssec_ok(true);
        })
        .len(),
        1
    );
    assert_eq!(
        changed(&|m| {
            m.queries[0].set_name(auth::name("DUAL.example.test."));
        })
        .len(),
        1
    );
    let mut authority = direct.answers[0].clone();
    authority.name = auth::name("other.example.test.");
    assert_eq!(
        changed(&|m| {
            m.add_authority(authority.clone());
        })
        .len(),
        1
    );
}
