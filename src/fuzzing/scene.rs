//! The scene the server-path targets set from their first bytes: a
//! daemon's state that cannot reach the network (an upstream pool of no
//! servers), its ACL, UDP cap, policy and verdicts, the client's address,
//! and a cache prefilled with answers for the name a query asks.

use crate::sync::lock;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::verdicts;
use crate::config::{Config, Filter};
use crate::dns::cache::{self, Key};
use crate::dns::rewrite;
use crate::dns::server::{Cached, Settings, Shared};
use crate::dns::upstream::Pool;
use crate::dns::wire::{self, CLASS_IN, HEADER_LEN, Header, Query, Reply, rtype};

/// The addresses of the answers the cache is filled with: Internet ones,
/// which the family verdicts judge, and one behind the well-known NAT64
/// prefix. No private one: it would keep every answer from being wholly
/// filtered, a path the `query` target must reach.
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

/// A daemon's shared state that cannot reach the network, set up by
/// `setup`: bit 0 refuses the client by the ACL, bits 1-2 pick the UDP cap,
/// bit 3 turns the filter off, bit 4 sets `break_dnssec`. The verdicts,
/// by `pick` (`verdicts`), judge [`V4`] and [`V6`].
pub(super) fn offline(setup: u8, pick: u8) -> Arc<Shared> {
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
        dns64: Config::default().dns64.synthesize,
    };
    let shared = Shared::new(settings, 64);
    let known: Vec<IpAddr> = (V4.iter().map(|&a| IpAddr::V4(a)))
        .chain(V6.iter().map(|&a| IpAddr::V6(a)))
        .collect();
    shared.verdicts.store(Arc::new(verdicts(pick, &known)));
    Arc::new(shared)
}

pub(super) fn udp_cap(setup: u8) -> u16 {
    [512, 1232, 4096, 65535][usize::from(setup >> 1 & 3)]
}

/// The client: loopback, or (bit 5 of `setup`) loopback as an IPv4 client
/// of an IPv6 socket shows it.
pub(super) fn peer(setup: u8) -> IpAddr {
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
pub(super) fn prefill(shared: &Shared, query: &Query<'_>, fill: u8) {
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
