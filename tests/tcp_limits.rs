//! DNS over TCP under clients that hold connections, and answers at the
//! size limit of a TCP message.
//!
//! **Slots** (`dns.tcp_max_connections`, 4 here so that no test needs many
//! sockets): a client outside `dns.allow` is closed as it connects and
//! takes no slot; at the cap a new connection takes the slot of the one
//! stalled longest in the middle of a message (slowloris), else of the one
//! idle longest; only when every connection has a query in progress is the
//! new one closed. Each limit that bites is counted in
//! `getapr_limits_hit_total`, which every test checks.
//!
//! **Sizes**: every TCP query gets exactly one answer, whatever its size.
//! A reply cached without OPT of 65,525 to 65,535 bytes would pass 65,535
//! bytes with the OPT an EDNS client is owed: it goes without. A 65,507-byte
//! UDP reply from the upstream (the most a datagram over IPv4 carries,
//! larger than the buffer for the query's offer, or cut by its sender) is
//! asked again over TCP; the client gets that answer, or SERVFAIL within
//! the upstream timeout when TCP fails.
//!
//! Each test prints a `tcp_limits:` line; run with
//! `cargo test --test tcp_limits -- --nocapture`.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::client::{TcpRecv, a_addrs, ip, parse, udp_exchange_within};
use common::fake::{a_reply, reply_to};
use common::{Action, FakeUpstream, TcpClient, Transport, config_toml, query, start_getapr};
use getapr::daemon::Handle;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The connection cap of these tests.
const CAP: usize = 4;
/// How long a connection the daemon closes takes to show as closed: at
/// once, with slack for a loaded machine.
const CLOSES_WITHIN: Duration = Duration::from_secs(1);
/// How long a connection the daemon keeps is watched to stay open.
const STAYS_OPEN: Duration = Duration::from_millis(150);
/// Longer than the daemon waits before a part-read message counts as a
/// stall (1 s).
const PAST_STALLED: Duration = Duration::from_millis(1300);

const TYPE_NULL: u16 = 10;
/// RFC 1035 §4.2.2: the most a TCP length prefix can say.
const MAX_MESSAGE: usize = 65_535;
/// An OPT record without options.
const OPT_LEN: usize = 11;

/// The series of `getapr_limits_hit_total` for `limit`.
fn limit(handle: &Handle, limit: &str) -> u64 {
    let series = format!(r#"getapr_limits_hit_total{{limit="{limit}"}} "#);
    let text = handle.metrics_text();
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// The four TCP limits: not allowed, idle evicted, slow evicted, refused.
fn tcp_limits(handle: &Handle) -> [u64; 4] {
    [
        "tcp_not_allowed",
        "tcp_idle_evicted",
        "tcp_slow_evicted",
        "tcp_refused",
    ]
    .map(|l| limit(handle, l))
}

/// An upstream that answers every name with `192.0.2.1` at once, except
/// names starting with `slow`, answered after 1.5 s.
async fn upstream() -> FakeUpstream {
    FakeUpstream::start(|q, _| {
        let reply = Action::Reply(a_reply(q, 300, &[ip(1)]));
        if q.queries[0].name().to_ascii().starts_with("slow") {
            vec![Action::Delay(Duration::from_millis(1500)), reply]
        } else {
            vec![reply]
        }
    })
    .await
}

async fn daemon(upstream: &FakeUpstream, extra: &str) -> (Handle, SocketAddr) {
    let dns = format!("tcp_max_connections = {CAP}\ntimeout_ms = 3000\n{extra}");
    start_getapr(&config_toml(&[upstream.addr()], &dns)).await
}

/// Asks `name` A on `client` and checks the answer.
async fn ask(client: &mut TcpClient, name: &str) {
    let q = query(name, RecordType::A);
    client.send(&q.bytes()).await;
    let reply = parse(&client.recv().await);
    assert_eq!(reply.metadata.id, q.message().metadata.id, "{name}");
    assert_eq!(a_addrs(&reply), [ip(1)], "{name}: {reply}");
}

/// A fresh connection that gets its query answered.
async fn answered(getapr: SocketAddr, name: &str) -> TcpClient {
    let mut client = TcpClient::connect(getapr).await;
    ask(&mut client, name).await;
    client
}

/// Whether the daemon closed `client` (end of stream or reset) within `wait`.
async fn closed(client: &mut TcpClient, wait: Duration) -> bool {
    match client.recv_within(wait).await {
        TcpRecv::Closed | TcpRecv::Error(_) => true,
        TcpRecv::Timeout => false,
        TcpRecv::Message(m) => panic!("an unasked message: {:?}", Message::from_vec(&m)),
    }
}

/// The same for a raw connection's read half.
async fn read_closed(rd: &mut OwnedReadHalf, wait: Duration) -> bool {
    let mut buf = [0u8; 512];
    match tokio::time::timeout(wait, rd.read(&mut buf)).await {
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(n)) => panic!("{n} unasked bytes"),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_clients_take_no_slot() {
    let upstream = upstream().await;
    let (handle, getapr) = daemon(&upstream, r#"allow = ["127.0.0.1/32"]"#).await;
    // Three times the cap from 127.0.0.2, outside `dns.allow`, all kept
    // open on our side: each is closed by the daemon at once.
    let outside = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let mut refused = Vec::new();
    for _ in 0..3 * CAP {
        refused.push(TcpClient::connect_from(outside, getapr).await);
    }
    for (i, c) in refused.iter_mut().enumerate() {
        assert!(
            closed(c, CLOSES_WITHIN).await,
            "refused connection {i} kept"
        );
    }
    // The allowed client has every slot: CAP connections at once, each
    // answered twice, nobody evicted.
    let mut allowed = Vec::new();
    for i in 0..CAP {
        allowed.push(answered(getapr, &format!("a{i}.example.test")).await);
    }
    for (i, c) in allowed.iter_mut().enumerate() {
        ask(c, &format!("b{i}.example.test")).await;
    }
    assert_eq!(tcp_limits(&handle), [3 * CAP as u64, 0, 0, 0]);
    assert_eq!(
        upstream.queries(Transport::Udp),
        2 * CAP,
        "none from outside"
    );
    println!(
        "tcp_limits: {} connections from outside dns.allow closed at once; {CAP} allowed ones all answered",
        3 * CAP
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_longest_idle_connection_gives_way() {
    let upstream = upstream().await;
    let (handle, getapr) = daemon(&upstream, "").await;
    let mut idle = Vec::new();
    for i in 0..CAP {
        idle.push(answered(getapr, &format!("idle{i}.example.test")).await);
    }
    // One more: the first one, idle longest, gives way.
    let mut newer = answered(getapr, "new.example.test").await;
    assert!(closed(&mut idle[0], CLOSES_WITHIN).await, "idle0 kept");
    for c in &mut idle[1..] {
        assert!(!closed(c, STAYS_OPEN).await, "more than one evicted");
    }
    assert_eq!(tcp_limits(&handle), [0, 1, 0, 0]);
    // The others are still served, and are busier now than `newer`, which
    // goes next.
    for (i, c) in idle[1..].iter_mut().enumerate() {
        ask(c, &format!("again{i}.example.test")).await;
    }
    let _newest = answered(getapr, "newest.example.test").await;
    assert!(closed(&mut newer, CLOSES_WITHIN).await, "newer kept");
    assert_eq!(tcp_limits(&handle), [0, 2, 0, 0]);
    println!("tcp_limits: at the cap of {CAP}, the connection idle longest gave way, twice");
}

/// A connection that sent `bytes` and nothing more.
async fn stalled(getapr: SocketAddr, bytes: &[u8]) -> (OwnedReadHalf, OwnedWriteHalf) {
    let mut stream = TcpStream::connect(getapr).await.expect("connect");
    stream.write_all(bytes).await.expect("send");
    stream.into_split()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_give_way_before_idle_ones() {
    let upstream = upstream().await;
    let (handle, getapr) = daemon(&upstream, "").await;
    let mut idle_a = answered(getapr, "idle-a.example.test").await;
    let mut idle_b = answered(getapr, "idle-b.example.test").await;
    // `trickling` starts a 256-byte message first and then sends one byte
    // every 100 ms; `stuck` starts one after it and sends nothing more.
    let (mut trickling_rd, mut trickling_wr) = stalled(getapr, &[1]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (mut stuck_rd, _stuck_wr) = stalled(getapr, &[1]).await;
    let trickle = tokio::spawn(async move {
        let mut sent = 0;
        while sent < 100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if trickling_wr.write_all(&[0]).await.is_err() {
                break;
            }
            sent += 1;
        }
        trickling_wr
    });
    tokio::time::sleep(PAST_STALLED).await;
    // Both stalled now, and older than the idle ones' last answers are not:
    // the stall counts from its first byte, so `trickling` goes first
    // though its last byte is the newest of all.
    let _first = answered(getapr, "first.example.test").await;
    assert!(
        read_closed(&mut trickling_rd, CLOSES_WITHIN).await,
        "trickling kept"
    );
    assert!(
        !read_closed(&mut stuck_rd, STAYS_OPEN).await,
        "stuck evicted too"
    );
    let _second = answered(getapr, "second.example.test").await;
    assert!(
        read_closed(&mut stuck_rd, CLOSES_WITHIN).await,
        "stuck kept"
    );
    assert_eq!(tcp_limits(&handle), [0, 0, 2, 0]);
    // No stall left: the connection idle longest goes.
    assert!(!closed(&mut idle_a, STAYS_OPEN).await);
    let _third = answered(getapr, "third.example.test").await;
    assert!(closed(&mut idle_a, CLOSES_WITHIN).await, "idle-a kept");
    assert!(!closed(&mut idle_b, STAYS_OPEN).await, "idle-b evicted");
    assert_eq!(tcp_limits(&handle), [0, 1, 2, 0]);
    drop(trickle.await);
    println!(
        "tcp_limits: 2 stalled connections (one trickling a byte every 100 ms) gave way before the idle ones, longest stall first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_connection_is_busy_a_new_one_is_closed() {
    let upstream = upstream().await;
    let (handle, getapr) = daemon(&upstream, "").await;
    // Every slot holds a query the upstream answers after 1.5 s.
    let mut busy = Vec::new();
    let mut ids = Vec::new();
    for i in 0..CAP {
        let mut c = TcpClient::connect(getapr).await;
        let q = query(&format!("slow{i}.example.test"), RecordType::A);
        c.send(&q.bytes()).await;
        ids.push(q.message().metadata.id);
        busy.push(c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let mut refused = TcpClient::connect(getapr).await;
    assert!(
        closed(&mut refused, CLOSES_WITHIN).await,
        "a busy slot gave way"
    );
    let took = started.elapsed();
    assert_eq!(tcp_limits(&handle), [0, 0, 0, 1]);
    // The busy ones get their answers, and then idle: room again.
    for (c, id) in busy.iter_mut().zip(ids) {
        let reply = parse(&c.recv().await);
        assert_eq!((reply.metadata.id, a_addrs(&reply)), (id, vec![ip(1)]));
    }
    let _later = answered(getapr, "later.example.test").await;
    assert_eq!(tcp_limits(&handle), [0, 1, 0, 1]);
    println!(
        "tcp_limits: all {CAP} slots busy: a new connection closed after {:.0} ms; after the answers one idle slot gave way",
        took.as_secs_f64() * 1000.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_connections_and_applies_the_new_cap() {
    let upstream = upstream().await;
    let (handle, getapr) = daemon(&upstream, "").await;
    let reload = |cap: usize| {
        let dns = format!("tcp_max_connections = {cap}\ntimeout_ms = 3000");
        handle.reload(common::daemon::parse(&config_toml(
            &[upstream.addr()],
            &dns,
        )))
    };
    let mut open = Vec::new();
    for i in 0..CAP {
        open.push(answered(getapr, &format!("before{i}.example.test")).await);
    }
    // Raised by two: the connections of before keep their slots and two
    // more fit beside them; the one after that evicts.
    reload(CAP + 2).await.expect("reload");
    for (i, c) in open.iter_mut().enumerate() {
        ask(c, &format!("kept{i}.example.test")).await;
    }
    for i in 0..2 {
        open.push(answered(getapr, &format!("more{i}.example.test")).await);
    }
    assert_eq!(tcp_limits(&handle), [0, 0, 0, 0]);
    open.push(answered(getapr, "over.example.test").await);
    assert_eq!(tcp_limits(&handle), [0, 1, 0, 0]);
    // Lowered below the count: each new connection evicts one, and the
    // count comes down only as connections end.
    reload(2).await.expect("reload");
    open.push(answered(getapr, "lowered.example.test").await);
    assert_eq!(tcp_limits(&handle), [0, 2, 0, 0]);
    println!(
        "tcp_limits: reloads to a cap of {} and of 2 applied to the next connection",
        CAP + 2
    );
}

// --- answers at the size limit -------------------------------------------

/// A reply to `q` of exactly `size` bytes, no OPT: its question as sent,
/// and one NULL record owned by a pointer to it whose RDATA fills the rest.
fn sized_reply(q: &Message, size: usize) -> Vec<u8> {
    let query = q.to_vec().expect("encode query");
    let question = common::question_bytes(&query);
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&q.metadata.id.to_be_bytes());
    out.extend_from_slice(&0x8180u16.to_be_bytes()); // QR RD RA, NOERROR
    for count in [1u16, 1, 0, 0] {
        out.extend_from_slice(&count.to_be_bytes());
    }
    out.extend_from_slice(question);
    let rdata = size - out.len() - 12;
    out.extend_from_slice(&[0xc0, 12]);
    out.extend_from_slice(&TYPE_NULL.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&300u32.to_be_bytes());
    out.extend_from_slice(&u16::try_from(rdata).expect("RDATA fits").to_be_bytes());
    out.resize(size, 0x5a);
    out
}

/// The size asked for in the first label (`s65530.…`), if any.
fn size_in(q: &Message) -> Option<usize> {
    let name = q.queries[0].name().to_ascii();
    name.split('.').next()?.strip_prefix('s')?.parse().ok()
}

/// One query over a fresh TCP connection; the answer or why there is none.
async fn tcp_once(getapr: SocketAddr, q: &[u8], wait: Duration) -> Result<Vec<u8>, TcpRecv> {
    let mut client = TcpClient::connect(getapr).await;
    client.send(q).await;
    match client.recv_within(wait).await {
        TcpRecv::Message(m) => Ok(m),
        other => Err(other),
    }
}

/// Checks that `bytes` answers `q` with the NULL record of a `size`-byte
/// reply; returns whether it carries an OPT.
fn check_sized(bytes: &[u8], q: &Message, size: usize, ctx: &str) -> bool {
    assert!(bytes.len() <= MAX_MESSAGE, "{ctx}: {} bytes", bytes.len());
    let reply = Message::from_vec(bytes).unwrap_or_else(|e| panic!("{ctx}: unparsable: {e}"));
    assert_eq!(reply.metadata.id, q.metadata.id, "{ctx}");
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError, "{ctx}");
    assert!(!reply.metadata.truncation, "{ctx}");
    let rdata_len = match reply.answers.first().map(|r| &r.data) {
        Some(RData::NULL(null)) => null.anything.len(),
        Some(RData::Unknown { rdata, .. }) => rdata.anything.len(),
        other => panic!("{ctx}: not the NULL record: {other:?}"),
    };
    let question = common::question_bytes(bytes).len();
    assert_eq!(rdata_len, size - 12 - question - 12, "{ctx}: RDATA cut");
    reply.edns.is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_of_65525_to_65535_bytes_reach_edns_clients_over_tcp() {
    // UDP gets TC, so the daemon asks again over TCP and caches the reply,
    // which has no OPT.
    let fake = FakeUpstream::start(|q, transport| match (transport, size_in(q)) {
        (Transport::Tcp, Some(size)) => vec![Action::Raw(sized_reply(q, size))],
        _ => {
            let mut tc = reply_to(q);
            tc.metadata.truncation = true;
            vec![Action::Reply(tc)]
        }
    })
    .await;
    let toml = config_toml(&[fake.addr()], "timeout_ms = 1000");
    let (_handle, getapr) = start_getapr(&toml).await;
    let wait = Duration::from_secs(3);
    let mut rows = Vec::new();
    // 65,524 bytes is the largest that takes an OPT; from 65,525 on the
    // OPT would pass 65,535.
    for size in 65_524..=MAX_MESSAGE {
        let name = format!("s{size}.big.test");
        let mut sent = Vec::new();
        // Fresh (a miss), then from the cache, then a client without EDNS.
        for (round, edns) in [("miss", true), ("hit", true), ("no EDNS", false)] {
            let builder = query(&name, RecordType::NULL);
            let builder = if edns { builder } else { builder.no_edns() };
            let q = builder.message();
            let ctx = format!("{size} bytes, {round}");
            let bytes = tcp_once(getapr, &builder.bytes(), wait)
                .await
                .unwrap_or_else(|why| panic!("{ctx}: no answer: {why:?}"));
            let with_opt = check_sized(&bytes, &q, size, &ctx);
            let opt_fits = size + OPT_LEN <= MAX_MESSAGE;
            assert_eq!(with_opt, edns && opt_fits, "{ctx}: OPT");
            sent.push(bytes.len());
        }
        rows.push(format!("{size}→{}/{}/{}", sent[0], sent[1], sent[2]));
    }
    assert_eq!(
        fake.queries(Transport::Tcp),
        12,
        "one TCP exchange per size"
    );
    println!(
        "tcp_limits: cached replies without OPT, answer sizes (miss/hit/no EDNS): {}",
        rows.join(", ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_65507_byte_udp_reply_ends_in_an_answer() {
    const DATAGRAM: usize = 65_507;
    const WHOLE: usize = 65_530;
    // Over UDP a 65,507-byte datagram: a whole reply of that size, or the
    // first 65,507 bytes of a 65,530-byte one (`cut`). Over TCP the
    // 65,530-byte reply, or the connection closed (`tcpclose`), or
    // nothing (`tcpsilent`).
    let fake = FakeUpstream::start(|q, transport| {
        let name = q.queries[0].name().to_ascii();
        match transport {
            Transport::Udp => {
                let mut reply = sized_reply(q, WHOLE);
                if name.starts_with("cut") {
                    reply.truncate(DATAGRAM);
                } else {
                    reply = sized_reply(q, DATAGRAM);
                }
                vec![Action::Raw(reply)]
            }
            Transport::Tcp if name.starts_with("tcpclose") => vec![Action::Close],
            Transport::Tcp if name.starts_with("tcpsilent") => vec![Action::Drop],
            Transport::Tcp => vec![Action::Raw(sized_reply(q, WHOLE))],
        }
    })
    .await;
    let timeout = Duration::from_millis(1000);
    let toml = config_toml(&[fake.addr()], "timeout_ms = 1000");
    let (_handle, getapr) = start_getapr(&toml).await;
    // (name, the client's EDNS offer, over TCP, what it must get)
    let cases: [(&str, Option<u16>, bool, Option<usize>); 7] = [
        // Larger than the 4 KiB buffer for a 1232 offer: asked over TCP.
        ("whole.a.test", Some(1232), true, Some(WHOLE)),
        ("whole.b.test", None, true, Some(WHOLE)),
        // Over UDP the client gets TC; its retry over TCP is a cache hit.
        ("whole.c.test", Some(1232), false, None),
        // Offered 65,535: the buffer takes the datagram whole, and it is
        // kept; cut, it is asked over TCP at once rather than waited on.
        ("whole.d.test", Some(65_535), true, Some(DATAGRAM)),
        ("cut.test", Some(65_535), true, Some(WHOLE)),
        // TCP fails: SERVFAIL, at once or within the upstream timeout.
        ("tcpclose.test", Some(1232), true, None),
        ("tcpsilent.test", Some(1232), true, None),
    ];
    let mut rows = Vec::new();
    for (name, offer, tcp, expect) in cases {
        let builder = query(name, RecordType::NULL);
        let builder = match offer {
            Some(size) => builder.payload(size),
            None => builder.no_edns(),
        };
        let q = builder.message();
        let started = Instant::now();
        let bytes = if tcp {
            tcp_once(getapr, &builder.bytes(), Duration::from_secs(3))
                .await
                .unwrap_or_else(|why| panic!("{name}: no answer: {why:?}"))
        } else {
            udp_exchange_within(getapr, &builder.bytes(), Duration::from_secs(3))
                .await
                .unwrap_or_else(|| panic!("{name}: no answer over UDP"))
        };
        let took = started.elapsed();
        let reply = parse(&bytes);
        match expect {
            Some(size) => {
                check_sized(&bytes, &q, size, name);
                assert!(took < timeout / 2, "{name}: answered after {took:?}");
            }
            None if !tcp => {
                assert!(reply.metadata.truncation, "{name}: {reply}");
                let again = tcp_once(getapr, &builder.bytes(), Duration::from_secs(3))
                    .await
                    .unwrap_or_else(|why| panic!("{name}: no answer over TCP: {why:?}"));
                check_sized(&again, &q, WHOLE, name);
            }
            None => {
                assert_eq!(
                    reply.metadata.response_code,
                    ResponseCode::ServFail,
                    "{name}"
                );
                assert!(
                    took < timeout + timeout / 2,
                    "{name}: SERVFAIL after {took:?}"
                );
            }
        }
        rows.push(format!(
            "{name} {} bytes in {:.0} ms",
            bytes.len(),
            took.as_secs_f64() * 1000.0
        ));
    }
    println!("tcp_limits: 65,507-byte UDP replies: {}", rows.join("; "));
}
