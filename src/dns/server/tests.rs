use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::listen::{TCP_IDLE, connection, frame};
use super::{Settings, Shared, is_public_name};
use crate::dns::upstream::Pool;
use crate::dns::wire::{self, rcode};
use crate::slots::Waiting;
use crate::testutil::{header, question, wire_name};

/// A daemon's state with no upstream, open to every client, one TCP
/// slot.
fn offline() -> Arc<Shared> {
    let settings = Settings {
        allow: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
        udp_cap: 1232,
        pool: Arc::new(Pool::new(Vec::new(), Duration::from_secs(1), 8)),
        tcp_max_connections: 1,
        policy: crate::config::Config::default().policy,
        serve_stale: Duration::ZERO,
        failure_cache: Duration::ZERO,
        dns64: crate::config::Synthesize::Off,
    };
    Arc::new(Shared::new(settings, 16))
}

/// `connection()` over an in-memory pipe of `buffer` bytes each way;
/// the client's end, and the connection's task.
fn connected(
    shared: &Arc<Shared>,
    buffer: usize,
) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<()>) {
    let (client, daemon) = tokio::io::duplex(buffer);
    let (rd, wr) = tokio::io::split(daemon);
    let slot = shared.tcp_slots.admit(1, Instant::now()).slot.unwrap();
    let peer = IpAddr::from([127, 0, 0, 1]);
    let stop = CancellationToken::new();
    let task = tokio::spawn(connection(Arc::clone(shared), rd, wr, peer, slot, stop));
    (client, task)
}

#[tokio::test(start_paused = true)]
async fn a_client_that_does_not_read_its_answers_is_closed() {
    let shared = offline();
    let (mut client, task) = connected(&shared, 64);
    // STATUS queries, answered NOTIMP at once: 14 bytes framed each,
    // more than the pipe holds, and the client reads none.
    let mut status = Vec::new();
    for id in 0..32u16 {
        status.extend_from_slice(&[0, 12]);
        status.extend_from_slice(&id.to_be_bytes());
        status.extend_from_slice(&[0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
    let (mut rd, mut wr) = tokio::io::split(&mut client);
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.write_all(&status)).await;
    // The writer waits TCP_IDLE for the client, then gives up: the
    // connection ends and its slot is free, not held for ever.
    let ended = tokio::time::timeout(TCP_IDLE * 3, task).await;
    assert!(ended.is_ok(), "the connection still holds its slot");
    assert!(shared.tcp_slots.admit(1, Instant::now()).evicted.is_none());
    let mut got = Vec::new();
    let _ = rd.read_to_end(&mut got).await;
    // What the pipe had room for, and no more.
    assert!((1..=64).contains(&got.len()), "{} bytes", got.len());
}

#[tokio::test(start_paused = true)]
async fn an_evicted_connection_ends_at_once() {
    let shared = offline();
    let (mut client, task) = connected(&shared, 512);
    tokio::task::yield_now().await;
    let newer = shared.tcp_slots.admit(1, Instant::now());
    assert!(newer.slot.is_some());
    assert_eq!(newer.evicted, Some(Waiting::Idle));
    // Well before the idle timeout.
    let ended = tokio::time::timeout(TCP_IDLE / 10, task).await;
    assert!(ended.is_ok(), "the evicted connection goes on");
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert!(got.is_empty(), "closed without a word");
}

#[test]
fn a_message_too_large_to_frame_becomes_servfail() {
    let mut msg = header(0x1234, wire::flag::QR | wire::flag::RD, [1, 1, 0, 0]);
    // A question of type NULL (10).
    msg.extend(question("big.example.test", 10));
    let asked = msg[wire::HEADER_LEN..].to_vec();
    msg.resize(70_000, 0);
    let mut framed = Vec::new();
    frame(&msg, &mut framed);
    let len = usize::from(u16::from_be_bytes([framed[0], framed[1]]));
    assert_eq!(len, framed.len() - 2, "one whole frame");
    let m = wire::Message::parse(&framed[2..]).unwrap();
    assert_eq!((m.header.id, m.header.rcode()), (0x1234, rcode::SERVFAIL));
    assert_eq!(m.question(), &asked[..]);
    // What fits goes as it is.
    frame(&msg[..wire::MAX_MESSAGE], &mut framed);
    assert_eq!(&framed[..2], &[0xff, 0xff]);
    assert_eq!(&framed[2..], &msg[..wire::MAX_MESSAGE]);
}

#[test]
fn public_names() {
    for name in [
        "www.example.com",
        "a.b.example.org.",
        "example.net",
        "ipv4only.arpa",
    ] {
        assert!(is_public_name(&wire_name(name)), "{name}");
    }
    for name in [
        "printer",
        "nas.local",
        "router.home.arpa",
        "x.lan",
        "db.internal",
        "host.localdomain",
        "a.test",
        "1.1.168.192.in-addr.arpa",
        "localhost",
        "",
    ] {
        assert!(!is_public_name(&wire_name(name)), "{name}");
    }
    assert!(!is_public_name(&[5, b'a']), "malformed");
}

/// More queries than a batch holds, from many clients at once, with
/// datagrams to drop among them: every client gets exactly the answers to
/// its own queries, those answered at once (NOTIMP, sent together after
/// the batch) and those that went to a flight (SERVFAIL: no upstream).
#[tokio::test]
async fn a_burst_of_udp_queries_each_answered_to_its_own_client() {
    use tokio::net::UdpSocket;
    let shared = offline();
    let server = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = server.local_addr().unwrap();
    let mut clients = Vec::new();
    for _ in 0..40 {
        clients.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    }
    // All of it is queued before the server reads: 140 datagrams, so
    // batches come full and then partial.
    for round in 0..3u16 {
        for (i, client) in clients.iter().enumerate() {
            let id = u16::try_from(i).unwrap() * 8 + round;
            let msg = if round == 2 {
                let mut q = header(id, wire::flag::RD, [1, 0, 0, 0]);
                q.extend(question(&format!("c{i}.example.test"), 1));
                q
            } else {
                // STATUS (opcode 2): NOTIMP at once.
                header(id, 2 << 11, [0, 0, 0, 0])
            };
            client.send_to(&msg, addr).await.unwrap();
            if i % 2 == 0 {
                client.send_to(&[0xde, 0xad], addr).await.unwrap();
            }
        }
    }
    let stop = CancellationToken::new();
    let task = tokio::spawn(super::serve_udp(
        Arc::clone(&shared),
        Arc::clone(&server),
        stop.clone(),
    ));
    let mut buf = vec![0; 2048];
    for (i, client) in clients.iter().enumerate() {
        let mut got = Vec::new();
        for _ in 0..3 {
            let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("client {i}: an answer is missing"))
                .unwrap();
            let h = wire::Header::parse(&buf[..n]).unwrap();
            assert!(h.qr(), "client {i}: not an answer");
            got.push((h.id, h.rcode()));
        }
        got.sort_unstable();
        let base = u16::try_from(i).unwrap() * 8;
        assert_eq!(
            got,
            [
                (base, rcode::NOTIMP),
                (base + 1, rcode::NOTIMP),
                (base + 2, rcode::SERVFAIL)
            ],
            "client {i}"
        );
    }
    // And nothing else came.
    for (i, client) in clients.iter().enumerate() {
        let more = tokio::time::timeout(Duration::from_millis(50), client.recv(&mut buf)).await;
        assert!(more.is_err(), "client {i}: an answer too many");
    }
    stop.cancel();
    task.await.unwrap();
}
