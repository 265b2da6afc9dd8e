//! Entry points of the fuzz targets that run the server's own paths over
//! arbitrary bytes (`fuzz/fuzz_targets/{query,reply_cache,tcp_framing}.rs`;
//! `tests/fuzz_corpus.rs` replays their corpora). Each checks what a client
//! relies on, not only that nothing panics: every answer parses, is a
//! reply with the query's ID, fits the size the client can take, and
//! carries no TTL above the upstream's.
//!
//! Nothing here reaches the network: the daemon's state has an upstream
//! pool of no servers, so a cache miss fails at once with SERVFAIL, and a
//! TCP connection runs over an in-memory pipe.
//!
//! The first bytes of each input set the scene (documented per function);
//! the rest is what the outside sends.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::cache::{self, Cache, Key};
use super::rewrite::{self, Context, Other, Outcome};
use super::server::{self, Cached, Settings, Shared, Step};
use super::upstream::Pool;
use super::wire::{
    self, CLASS_IN, CLASSIC_UDP_SIZE, ClientEdns, HEADER_LEN, Header, Message, Query, Reply, Shape,
    rcode, rtype,
};
use crate::config::{Config, Filter};
use crate::probe::verdicts::{
    DestinationVerdict, Families, PathVerdict, PrefixVerdict, State, Verdicts, prefix_of,
};
use crate::sync::lock;

/// The addresses of the answers the cache is filled with: Internet ones,
/// which the family verdicts judge, and one behind the well-known NAT64
/// prefix. No private one: it would keep every answer from being wholly
/// filtered, a path [`query`] must reach.
const V4: [Ipv4Addr; 2] = [Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(5, 6, 7, 8)];
const V6: [Ipv6Addr; 3] = [
    Ipv6Addr::new(0x2606, 0x4700, 0, 0, 0, 0, 0, 0x1111),
    Ipv6Addr::new(0x2a00, 0x1450, 0x4001, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0x0102, 0x0304),
];
/// The TTL of the cached answers.
const FILLED_TTL: u32 = 300;
/// The target of the CNAME some cached answers start with.
const ALIAS: &[u8] = b"\x05alias\x07example\x00";

/// Verdicts picked by one byte, for `addrs` (an answer's addresses): bits
/// 0-1 the IPv4 family's state, bits 2-3 the IPv6 family's (unknown, ok,
/// failed, failed); bits 4-5 where the addresses' own states start in the
/// rotation unknown, ok, failed, none (no verdict), one step per address
/// in sorted order; bit 6 a verdict on each address's /24 or /64, rotating
/// too; bit 7 the well-known NAT64 prefix. Generation 1, so the rewrite
/// acts.
#[doc(hidden)]
pub fn verdicts(pick: u8, addrs: &[IpAddr]) -> Verdicts {
    let states = [State::Unknown, State::Ok, State::Failed, State::Failed];
    let family = |bits: u8| states[usize::from(bits & 3)];
    let start = usize::from(pick >> 4 & 3);
    let mut seen = addrs.to_vec();
    seen.sort();
    seen.dedup();
    let destinations = (seen.iter().enumerate())
        .filter_map(|(i, &address)| {
            let state = *states[..3].get((start + i) % 4)?;
            Some(DestinationVerdict {
                address,
                learned: true,
                state,
                paths: vec![PathVerdict {
                    source: address,
                    scope_id: 0,
                    state,
                    rtt: Some(Duration::from_millis(i as u64)),
                }],
            })
        })
        .collect();
    let mut prefixes: Vec<IpNet> = seen.iter().map(|&a| prefix_of(a)).collect();
    prefixes.sort();
    prefixes.dedup();
    prefixes.retain(|_| pick & 0x40 != 0);
    let nat64 = Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);
    Verdicts {
        generation: 1,
        families: Families {
            ipv4: family(pick),
            ipv6: family(pick >> 2),
        },
        destinations,
        prefixes: (prefixes.into_iter().enumerate())
            .map(|(i, prefix)| PrefixVerdict {
                prefix,
                state: states[(start + i + 1) % 3],
            })
            .collect(),
        nat64_prefixes: if pick & 0x80 != 0 {
            vec![nat64]
        } else {
            Vec::new()
        },
        ..Verdicts::default()
    }
}

/// A daemon's shared state that cannot reach the network, set up by
/// `setup`: bit 0 refuses the client by the ACL, bits 1-2 pick the UDP cap,
/// bit 3 turns the filter off, bit 4 sets `break_dnssec`. The verdicts,
/// by `pick`, judge [`V4`] and [`V6`].
fn offline(setup: u8, pick: u8) -> Arc<Shared> {
    let allow = if setup & 1 == 0 {
        vec![IpNet::V4(Ipv4Net::default()), IpNet::V6(Ipv6Net::default())]
    } else {
        vec![IpNet::V4(Ipv4Net::new_assert(
            Ipv4Addr::new(10, 0, 0, 0),
            8,
        ))]
    };
    let mut policy = Config::default().policy;
    policy.filter = if setup & 8 != 0 {
        Filter::Off
    } else {
        Filter::Auto
    };
    policy.break_dnssec = setup & 0x10 != 0;
    let settings = Settings {
        allow,
        udp_cap: udp_cap(setup),
        pool: Arc::new(Pool::new(Vec::new(), Duration::from_secs(1), 8)),
        tcp_max_connections: 1,
        policy,
        // The defaults: a miss fails at once (no upstream), which the
        // failure cache then remembers.
        serve_stale: Config::default().dns.serve_stale,
        failure_cache: Config::default().dns.failure_cache,
    };
    let shared = Shared::new(settings, 64);
    let known: Vec<IpAddr> = (V4.iter().map(|&a| IpAddr::V4(a)))
        .chain(V6.iter().map(|&a| IpAddr::V6(a)))
        .collect();
    shared.verdicts.store(Arc::new(verdicts(pick, &known)));
    Arc::new(shared)
}

fn udp_cap(setup: u8) -> u16 {
    [512, 1232, 4096, 65535][usize::from(setup >> 1 & 3)]
}

/// The client: loopback, or (bit 5 of `setup`) loopback as an IPv4 client
/// of an IPv6 socket shows it.
fn peer(setup: u8) -> IpAddr {
    if setup & 0x20 != 0 {
        IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped())
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
}

/// Fills the cache for the name `query` asks, as `fill` says: bit 0 its
/// own type, bit 1 the other family (A for AAAA and back); bit 2 puts an
/// RRSIG beside the records, bit 3 a CNAME before them, bit 7 an OPT
/// after them; bits 4-6 are the entries' age in seconds, so answers from
/// them lower the TTLs.
fn prefill(shared: &Shared, query: &Query<'_>, fill: u8) {
    let (name, qtype, qclass) = query.parts();
    let (do_bit, cd) = (query.do_bit(), query.header().cd());
    let age = Duration::from_secs(u64::from(fill >> 4 & 7));
    let now = Instant::now();
    let inserted = now.checked_sub(age).unwrap_or(now);
    let mut types = Vec::new();
    if fill & 1 != 0 {
        types.push(qtype);
    }
    if fill & 2 != 0 {
        types.extend(rewrite::other_type(qtype));
    }
    for t in types {
        let mut question = name.to_vec();
        question.extend_from_slice(&t.to_be_bytes());
        question.extend_from_slice(&qclass.to_be_bytes());
        let Some(reply) = upstream_answer(&question, fill) else {
            continue;
        };
        let Some(ttl) = cache::lifetime(&reply) else {
            continue;
        };
        let key = Key::new(name, t, qclass, do_bit, cd);
        let entry = Cached::new(Arc::new(reply));
        lock(&shared.cache).insert(key, entry, inserted, ttl);
    }
}

/// An upstream's answer to `question` (name, type, class), records as
/// [`prefill`]'s `fill` says: the asked type's from [`V4`] or [`V6`], an
/// HTTPS/SVCB record with hints of both, or a TXT record for other types.
fn upstream_answer(question: &[u8], fill: u8) -> Option<Reply> {
    let split = question.len().checked_sub(4)?;
    let (name, tail) = question.split_at(split);
    let qtype = u16::from_be_bytes([tail[0], tail[1]]);
    let mut records = Vec::new();
    let mut count = 0u16;
    let mut owner = name;
    let mut push = |owner: &[u8], rt: u16, rdata: &[u8]| {
        records.extend_from_slice(owner);
        records.extend_from_slice(&rt.to_be_bytes());
        records.extend_from_slice(&CLASS_IN.to_be_bytes());
        records.extend_from_slice(&FILLED_TTL.to_be_bytes());
        records.extend_from_slice(&u16::try_from(rdata.len()).unwrap_or(0).to_be_bytes());
        records.extend_from_slice(rdata);
        count += 1;
    };
    if fill & 8 != 0 {
        push(owner, rtype::CNAME, ALIAS);
        owner = ALIAS;
    }
    match qtype {
        rtype::A => V4.iter().for_each(|a| push(owner, rtype::A, &a.octets())),
        rtype::AAAA => V6
            .iter()
            .for_each(|a| push(owner, rtype::AAAA, &a.octets())),
        rtype::SVCB | rtype::HTTPS => {
            // Priority 1, target ".", ipv4hint and ipv6hint (RFC 9460 §2.2).
            let mut rdata = vec![0, 1, 0];
            rdata.extend_from_slice(&wire::IPV4HINT.to_be_bytes());
            rdata.extend_from_slice(&8u16.to_be_bytes());
            V4[..2]
                .iter()
                .for_each(|a| rdata.extend_from_slice(&a.octets()));
            rdata.extend_from_slice(&wire::IPV6HINT.to_be_bytes());
            rdata.extend_from_slice(&32u16.to_be_bytes());
            V6[..2]
                .iter()
                .for_each(|a| rdata.extend_from_slice(&a.octets()));
            push(owner, qtype, &rdata);
        }
        _ => push(owner, rtype::TXT, b"\x04fuzz"),
    }
    if fill & 4 != 0 {
        // Type covered, algorithm 13, 2 labels, original TTL, expiration,
        // inception, key tag, signer, signature (RFC 4034 §3.1).
        let mut rdata = qtype.to_be_bytes().to_vec();
        rdata.extend_from_slice(&[13, 2]);
        rdata.extend_from_slice(&FILLED_TTL.to_be_bytes());
        rdata.extend_from_slice(&[0x70, 0, 0, 0, 0x60, 0, 0, 0, 0x12, 0x34]);
        rdata.extend_from_slice(b"\x07example\x00");
        rdata.extend_from_slice(&[0x5a; 64]);
        push(owner, rtype::RRSIG, &rdata);
    }
    let opt = fill & 0x80 != 0;
    let mut bytes = Vec::with_capacity(HEADER_LEN + question.len() + records.len() + 11);
    Header {
        id: 0,
        flags: wire::flag::QR | wire::flag::RD | wire::flag::RA,
        qdcount: 1,
        ancount: count,
        nscount: 0,
        arcount: u16::from(opt),
    }
    .write(&mut bytes);
    bytes.extend_from_slice(question);
    bytes.extend_from_slice(&records);
    if opt {
        bytes.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0x80, 0, 0, 0]);
    }
    Reply::parse(&bytes).ok()
}

/// A client's query through [`Shared::triage`] and, when that forwards it,
/// [`Shared::forward`] (which fails over to SERVFAIL at once: no upstream),
/// on a daemon set up by `data[0]` ([`offline`]; [`peer`]; bit 6: over TCP)
/// with the verdicts `data[1]` picks and the cache `data[2]` fills for the
/// asked name ([`prefill`]). The rest is the query.
#[doc(hidden)]
pub fn query(data: &[u8]) {
    let &[setup, pick, fill, ref packet @ ..] = data else {
        return;
    };
    let shared = offline(setup, pick);
    if let Ok(q) = Query::parse(packet) {
        prefill(&shared, &q, fill);
    }
    let udp = setup & 0x40 == 0;
    let cap = udp.then_some(udp_cap(setup));
    let mut out = Vec::new();
    match shared.triage(packet, peer(setup), udp, &mut out) {
        Step::Drop => assert!(
            Header::parse(packet).is_none_or(|h| h.qr()),
            "a query with a header went unanswered"
        ),
        Step::Reply => check_answer(packet, &out, cap),
        Step::Forward(key) => {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            else {
                return;
            };
            let pool = Arc::clone(&shared.settings.load().pool);
            let answer = rt.block_on(shared.forward(&pool, key, packet, peer(setup), udp));
            assert!(!answer.is_empty(), "a forwarded query went unanswered");
            check_answer(packet, &answer, cap);
        }
    }
}

/// What every answer to `query` must be: a DNS message, a reply with the
/// query's ID and (when it had a readable one) its question byte for byte,
/// within the UDP size the client can take (512 without EDNS, RFC 1035
/// §4.2.1; its EDNS size within our cap and never below 512, RFC 6891
/// §6.2.5), and when truncated, without records.
fn check_answer(query: &[u8], answer: &[u8], udp_cap: Option<u16>) {
    let msg =
        Message::parse(answer).unwrap_or_else(|e| panic!("an answer must parse: {e}: {answer:?}"));
    assert!(msg.header.qr(), "an answer without QR");
    let asked = Header::parse(query).map(|h| h.id);
    assert_eq!(Some(msg.header.id), asked, "an answer to another ID");
    let parsed = Query::parse(query).ok();
    if let Some(q) = &parsed {
        assert_eq!(
            msg.question(),
            q.question(),
            "an answer to another question"
        );
    }
    if let Some(cap) = udp_cap {
        let limit = match parsed.as_ref().and_then(Query::edns) {
            None => CLASSIC_UDP_SIZE,
            Some(e) => usize::from(e.udp_size.min(cap)).max(CLASSIC_UDP_SIZE),
        };
        assert!(
            answer.len() <= limit,
            "{} bytes over UDP to a client that takes {limit}",
            answer.len()
        );
    }
    if msg.header.tc() {
        assert!(
            msg.records.iter().all(|r| r.rtype == rtype::OPT),
            "a truncated answer with records"
        );
    }
}

/// An upstream's reply (`data[2..]`) as the server keeps and serves it:
/// validated ([`Reply::parse`]), rewritten under the verdicts `data[0]`
/// picks for its addresses, cached for [`cache::lifetime`], and rendered
/// from the cache for clients with and without EDNS, small and large
/// sizes, UDP and TCP. `data[1]`: bit 0 the DO bit, bit 1 the filter off,
/// bit 2 `break_dnssec`, bits 3-4 the other family's answer (failed, this
/// reply, not asked), bits 5-7 how far into its lifetime it is served.
#[doc(hidden)]
pub fn reply_cache(data: &[u8]) {
    let &[pick, client, ref bytes @ ..] = data else {
        return;
    };
    let Ok(upstream) = Reply::parse(bytes) else {
        return;
    };
    let msg = upstream.message();
    let Some((qname, qtype, qclass)) = msg.question_parts() else {
        return;
    };
    let question = msg.question().to_vec();
    let highest = (msg.records.iter())
        .filter(|r| r.rtype != rtype::OPT)
        .map(|r| r.ttl)
        .max()
        .unwrap_or(0);
    let mut addrs = upstream.addresses();
    addrs.extend(upstream.hints().into_iter().map(|(_, a)| a));
    let v = verdicts(pick, &addrs);
    let do_bit = client & 1 != 0;
    let ctx = Context {
        verdicts: &v,
        filter: if client & 2 != 0 {
            Filter::Off
        } else {
            Filter::Auto
        },
        break_dnssec: client & 4 != 0,
    };
    let other = match client >> 3 & 3 {
        0 => Other::Failed,
        1 => Other::Reply(&upstream),
        _ => Other::Unasked,
    };
    let view = match rewrite::rewrite(&upstream, qtype, do_bit, &ctx, other) {
        Outcome::Reordered(r) | Outcome::Filtered { reply: r, .. } => r,
        Outcome::Same | Outcome::NeedOther => upstream.clone(),
    };
    let Some(lifetime) = cache::lifetime(&upstream) else {
        // Not cached: served once, fresh.
        render_for_clients(&view, &question, do_bit, 0, highest);
        return;
    };
    check_lifetime(&upstream, lifetime, highest);
    let key = Key::new(qname, qtype, qclass, do_bit, false);
    let mut cache = Cache::new(4);
    let now = Instant::now();
    cache.insert(key.clone(), Arc::new(view), now, lifetime);
    let ttl = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
    for age in [0, ttl.saturating_sub(1) / 7 * u32::from(client >> 5)] {
        let at = now + Duration::from_secs(u64::from(age));
        let Some((served, got)) = cache.get(&key, at) else {
            panic!("an entry of lifetime {ttl} s gone at age {age} s");
        };
        assert_eq!(got.as_secs(), u64::from(age));
        render_for_clients(served, &question, do_bit, age, highest);
    }
    assert!(
        cache.get(&key, now + lifetime).is_none(),
        "served past its lifetime"
    );
}

/// A cache lifetime keeps within the reply's own TTLs, and what must not
/// be cached is not.
fn check_lifetime(upstream: &Reply, lifetime: Duration, highest: u32) {
    let secs = lifetime.as_secs();
    assert!(!upstream.header().tc(), "a truncated reply cached");
    match upstream.rcode() {
        rcode::SERVFAIL => assert_eq!(secs, u64::from(cache::SERVFAIL_TTL)),
        rcode::NOERROR | rcode::NXDOMAIN => {
            assert!(
                secs > 0 && secs <= u64::from(highest),
                "cached {secs} s, TTLs up to {highest}"
            );
            assert!(secs <= u64::from(cache::MAX_TTL));
            if upstream.answer_count() > 0 && upstream.rcode() == rcode::NOERROR {
                assert!(upstream.min_ttl().is_some_and(|t| u64::from(t) >= secs));
            }
        }
        rc => panic!("a reply with rcode {rc} cached"),
    }
}

/// Renders `reply` at `age` for clients with and without EDNS, small and
/// large sizes, over UDP (with the caps the config allows) and TCP, and
/// checks each answer: it parses, carries the client's ID and question,
/// has an OPT exactly when the client sent one (RFC 6891 §7), fits the
/// client's size, is empty when we truncated it, and no TTL in it exceeds the
/// upstream's highest less the age.
fn render_for_clients(reply: &Reply, question: &[u8], do_bit: bool, age: u32, highest: u32) {
    let edns = |udp_size| Some(ClientEdns { do_bit, udp_size });
    let mut out = Vec::new();
    for (client, cap) in [
        (None, Some(1232)),
        (edns(0), Some(1232)),
        (edns(512), Some(512)),
        (edns(1232), Some(1232)),
        (edns(4096), Some(1232)),
        (edns(65535), Some(65535)),
        (None, None),
        (edns(1232), None),
    ] {
        let limit = cap.map(|cap: u16| match client {
            None => CLASSIC_UDP_SIZE,
            Some(e) => usize::from(e.udp_size.max(512).min(cap.max(512))),
        });
        let shape = Shape {
            id: 0xbeef,
            rd: true,
            question,
            edns: client,
            limit,
            advertise: cap.unwrap_or(1232).max(512),
        };
        reply.render(&shape, age, &mut out);
        let msg = Message::parse(&out)
            .unwrap_or_else(|e| panic!("a rendered answer must parse: {e}: {out:?}"));
        assert!(msg.header.qr() && msg.header.id == 0xbeef);
        assert_eq!(msg.question(), question);
        assert_eq!(msg.edns.is_some(), client.is_some(), "OPT iff the client's");
        if let Some(limit) = limit {
            assert!(
                out.len() <= limit,
                "{} bytes for a limit of {limit}",
                out.len()
            );
        }
        // An upstream's TC reply is passed on as it came (RFC 2181 §9
        // allows partial data); one we truncated is empty.
        if msg.header.tc() && !reply.header().tc() {
            assert!(msg.records.iter().all(|r| r.rtype == rtype::OPT));
        }
        for r in msg.records.iter().filter(|r| r.rtype != rtype::OPT) {
            assert!(
                r.ttl <= highest.saturating_sub(age),
                "TTL {} served at age {age} from an upstream's TTLs up to {highest}",
                r.ttl
            );
        }
    }
}

/// A TCP connection ([`server::connection`]) fed a byte stream in chunks,
/// over an in-memory pipe. `data[0]`: bits 0-1 how the client ends (0, 3:
/// it closes; 1: the daemon is stopped; 2: it goes silent, and the idle
/// timeout must end the connection), bits 2-3 the pipe's buffer size;
/// `data[1..4]` the daemon, verdicts and cache as for [`query`] (the cache
/// filled for every query in the stream); `data[4] % 8` how many of the
/// next bytes are chunk sizes (each byte + 1, in turn; none: one write);
/// the rest is the stream.
///
/// Run it on a current-thread runtime with a paused clock
/// (`Builder::start_paused`): the idle timeout then passes as soon as
/// nothing else can run, and a connection that never ends fails the run
/// after an hour of that clock instead of hanging it.
///
/// Every frame the daemon writes must be whole and a reply to a frame the
/// client sent; when the client closes, each query frame before the first
/// one too short for a header gets exactly one.
#[doc(hidden)]
pub async fn tcp_framing(data: &[u8]) {
    let &[end, setup, pick, fill, sizes, ref rest @ ..] = data else {
        return;
    };
    let (sizes, stream) = rest.split_at(usize::from(sizes % 8).min(rest.len()));
    let sent = frames(stream).0;
    let shared = offline(setup, pick);
    for q in sent.iter().filter_map(|f| Query::parse(f).ok()) {
        prefill(&shared, &q, fill);
    }
    let buffer = [64, 512, 4096, 65536][usize::from(end >> 2 & 3)];
    let (client, daemon) = tokio::io::duplex(buffer);
    let (rd, wr) = tokio::io::split(daemon);
    let (mut from_daemon, mut to_daemon) = tokio::io::split(client);
    let stop = CancellationToken::new();
    let Some(slot) = shared.tcp_slots.admit(1, Instant::now()).slot else {
        panic!("the one slot of a fresh daemon is free");
    };
    let serve = server::connection(Arc::clone(&shared), rd, wr, peer(setup), slot, stop.clone());
    let send = async {
        let mut left = stream;
        let mut turn = sizes.iter().cycle();
        while !left.is_empty() {
            let size = turn.next().map_or(left.len(), |&s| usize::from(s) + 1);
            let (chunk, tail) = left.split_at(size.min(left.len()));
            if to_daemon.write_all(chunk).await.is_err() {
                break;
            }
            left = tail;
            // Lets the daemon read what arrived so far: a partial frame.
            tokio::task::yield_now().await;
        }
        match end & 3 {
            1 => stop.cancel(),
            2 => {}
            _ => {
                let _ = to_daemon.shutdown().await;
            }
        }
    };
    let receive = async {
        let mut got = Vec::new();
        let _ = from_daemon.read_to_end(&mut got).await;
        got
    };
    let run = async { tokio::join!(serve, send, receive).2 };
    let Ok(got) = tokio::time::timeout(Duration::from_secs(3600), run).await else {
        panic!("the connection did not end");
    };
    let (answers, trailing) = frames(&got);
    assert!(trailing.is_empty(), "a partial frame written: {trailing:?}");
    let ids = |frames: &[&[u8]]| -> Vec<u16> {
        let mut ids: Vec<u16> = frames
            .iter()
            .filter_map(|f| Header::parse(f))
            .map(|h| h.id)
            .collect();
        ids.sort_unstable();
        ids
    };
    let asked = ids(&sent);
    for a in &answers {
        let msg =
            Message::parse(a).unwrap_or_else(|e| panic!("a framed answer must parse: {e}: {a:?}"));
        assert!(msg.header.qr(), "a framed answer without QR");
        assert!(
            asked.binary_search(&msg.header.id).is_ok(),
            "an answer to an ID never sent"
        );
    }
    if end & 3 == 0 || end & 3 == 3 {
        let answerable: Vec<&[u8]> = (sent.iter())
            .take_while(|f| f.len() >= HEADER_LEN)
            .filter(|f| Header::parse(f).is_some_and(|h| !h.qr()))
            .copied()
            .collect();
        assert_eq!(ids(&answers), ids(&answerable), "every query answered once");
    }
}

/// The whole length-prefixed frames at the start of `stream`, and what
/// follows them (a partial frame).
fn frames(mut stream: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut out = Vec::new();
    while let [hi, lo, rest @ ..] = stream {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        let Some(frame) = rest.get(..len) else {
            break;
        };
        out.push(frame);
        stream = &rest[len..];
    }
    (out, stream)
}
