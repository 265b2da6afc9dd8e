//! Lookups in flight under clients that push against their bounds: the
//! joiners of one lookup are capped (the rest dropped and counted), and at
//! `dns.max_inflight` the client holding the most lookups gives way, so a
//! flood of names that never get answered cannot starve anyone else.

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::client::{a_addrs, ip, parse};
use common::fake::a_reply;
use common::http::limit_hits;
use common::{Action, FakeUpstream, config_toml, query, start_getapr};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;

/// A UDP socket bound to `source` (any 127/8 address is local on Linux,
/// so each is a client of its own).
async fn client(source: [u8; 4]) -> UdpSocket {
    UdpSocket::bind(SocketAddr::new(IpAddr::from(source), 0))
        .await
        .expect("bind a loopback client")
}

/// Collects every reply that arrives on `sock` within `wait`, by ID.
async fn replies(sock: &UdpSocket, wait: Duration) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
        out.push((u16::from_be_bytes([buf[0], buf[1]]), buf[..n].to_vec()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_queries_past_the_cap_are_dropped_and_counted() {
    let upstream = FakeUpstream::start(|q, _| {
        vec![
            Action::Delay(Duration::from_millis(300)),
            Action::Reply(a_reply(q, 300, &[ip(7)])),
        ]
    })
    .await;
    let (handle, getapr) = start_getapr(&config_toml(&[upstream.addr()], "")).await;
    let sock = client([127, 0, 0, 1]).await;
    sock.connect(getapr).await.expect("connect");
    // One name, 300 fresh IDs, all sent before the upstream answers (in
    // bursts of 20, so the kernel's socket buffer drops none).
    for id in 0..300u16 {
        let q = query("same.example.test", RecordType::A).id(id);
        sock.send(&q.bytes()).await.expect("send");
        if id % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let got = replies(&sock, Duration::from_millis(1500)).await;
    let ids: HashSet<u16> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(got.len(), ids.len(), "one answer per query at most");
    for (_, bytes) in &got {
        assert_eq!(a_addrs(&parse(bytes)), [ip(7)]);
    }
    // The per-lookup cap is 256: the first 256 wait, 44 are dropped.
    assert_eq!(got.len(), 256, "answered");
    assert_eq!(upstream.received().len(), 1, "one upstream query");
    assert_eq!(limit_hits(&handle, "dns_joiner_dropped"), 44);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unanswered_names_gives_way_to_other_clients() {
    // Names under flood.test are never answered; the rest at once.
    let upstream = FakeUpstream::start(|q, _| {
        let name = q
            .queries
            .first()
            .map(|q| q.name().to_ascii())
            .unwrap_or_default();
        if name.ends_with("flood.test.") {
            vec![Action::Drop]
        } else {
            vec![Action::Reply(a_reply(q, 300, &[ip(9)]))]
        }
    })
    .await;
    let (handle, getapr) = start_getapr(&config_toml(
        &[upstream.addr()],
        "max_inflight = 8\ntimeout_ms = 5000",
    ))
    .await;
    let flooder = client([127, 0, 0, 2]).await;
    flooder.connect(getapr).await.expect("connect");
    for i in 0..40u16 {
        let q = query(&format!("n{i}.flood.test"), RecordType::A).id(i);
        flooder.send(&q.bytes()).await.expect("send");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Every slot is the flooder's, and it keeps sending new names; another
    // client's misses still get in, each in one upstream round trip.
    let legit = client([127, 0, 0, 3]).await;
    legit.connect(getapr).await.expect("connect");
    let mut buf = vec![0u8; 4096];
    for i in 0..20u16 {
        for j in 0..2u16 {
            let q = query(&format!("m{i}-{j}.flood.test"), RecordType::A).id(100 + 2 * i + j);
            flooder.send(&q.bytes()).await.expect("send");
        }
        let q = query(&format!("n{i}.legit.test"), RecordType::A).id(1000 + i);
        legit.send(&q.bytes()).await.expect("send");
        let n = tokio::time::timeout(Duration::from_millis(500), legit.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("legit query {i} unanswered"))
            .expect("recv");
        assert_eq!(a_addrs(&parse(&buf[..n])), [ip(9)], "legit query {i}");
    }
    // The flooder's lookups that gave way, and its new ones refused while
    // all its slots were young, got SERVFAIL: an answer each, no more.
    let flood_answers = replies(&flooder, Duration::from_millis(300)).await;
    let ids: HashSet<u16> = flood_answers.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids.len(),
        flood_answers.len(),
        "one answer per query at most"
    );
    for (_, bytes) in &flood_answers {
        assert_eq!(parse(bytes).metadata.response_code, ResponseCode::ServFail);
    }
    let evicted = limit_hits(&handle, "dns_lookup_evicted");
    let refused = limit_hits(&handle, "dns_lookup_refused");
    assert!(
        evicted >= 20,
        "at least one flood lookup per legit miss: {evicted}"
    );
    assert!(
        refused >= 32,
        "the flooder's first burst past its 8 slots: {refused}"
    );
    assert_eq!(flood_answers.len() as u64, evicted + refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_client_at_the_cap_jostles_only_its_stuck_lookups() {
    let upstream = FakeUpstream::silent().await;
    let (handle, getapr) = start_getapr(&config_toml(
        &[upstream.addr()],
        "max_inflight = 2\ntimeout_ms = 5000",
    ))
    .await;
    let sock = client([127, 0, 0, 1]).await;
    sock.connect(getapr).await.expect("connect");
    for (id, name) in [(1u16, "a.stuck.test"), (2, "b.stuck.test")] {
        sock.send(&query(name, RecordType::A).id(id).bytes())
            .await
            .expect("send");
    }
    // At once: both slots are young, so the third is refused.
    sock.send(&query("c.stuck.test", RecordType::A).id(3).bytes())
        .await
        .expect("send");
    let got = replies(&sock, Duration::from_millis(100)).await;
    assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [3]);
    assert_eq!(
        parse(&got[0].1).metadata.response_code,
        ResponseCode::ServFail
    );
    // Past the jostle time (200 ms) the oldest, a.stuck.test, gives way.
    tokio::time::sleep(Duration::from_millis(200)).await;
    sock.send(&query("d.stuck.test", RecordType::A).id(4).bytes())
        .await
        .expect("send");
    let got = replies(&sock, Duration::from_millis(100)).await;
    assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [1]);
    assert_eq!(
        parse(&got[0].1).metadata.response_code,
        ResponseCode::ServFail
    );
    assert_eq!(limit_hits(&handle, "dns_lookup_refused"), 1);
    assert_eq!(limit_hits(&handle, "dns_lookup_evicted"), 1);
}
