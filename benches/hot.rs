//! Criterion benches of the hot pieces: the wire work of a cache
//! hit, cache lookup and insert (with eviction), and the policy ordering of
//! a typical answer (2 A + 2 AAAA, 3 sources). `cargo bench --bench hot`.
//!
//! The peer comparison (getapr against dnsmasq, Unbound, SmartDNS) is
//! `scripts/bench/peers.py`; these numbers are for watching our own regressions.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

use getapr::dns::cache::{Cache, Key};
use getapr::dns::wire::{self, Reply};
use getapr::inventory::{Address, Class, Gateway, Snapshot};
use getapr::policy::{self, Options};
use getapr::probe::verdicts::{Families, SourceVerdict, State, Verdicts};

const NAME: &str = "www.example.com.";

fn query(qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(NAME).unwrap(), qtype));
    m.to_bytes().unwrap()
}

/// The upstream's reply to an A query with four addresses.
fn reply_a4() -> Vec<u8> {
    let name = Name::from_ascii(NAME).unwrap();
    let mut m = Message::new(0x1234, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.add_query(Query::query(name.clone(), RecordType::A));
    for i in 1..=4 {
        m.add_answer(Record::from_rdata(
            name.clone(),
            300,
            RData::A(A(Ipv4Addr::new(192, 0, 2, i))),
        ));
    }
    m.to_bytes().unwrap()
}

fn wire_benches(c: &mut Criterion) {
    let q = query(RecordType::A);
    let r = reply_a4();
    let reply = Reply::parse(&r).unwrap();
    c.bench_function("wire/parse query", |b| {
        b.iter(|| black_box(wire::Query::parse(black_box(&q)).is_ok()))
    });
    c.bench_function("wire/parse reply (4 A)", |b| {
        b.iter(|| black_box(Reply::parse(black_box(&r)).is_ok()))
    });
    c.bench_function("wire/render a cached reply for a client", |b| {
        let parsed = wire::Query::parse(&q).unwrap();
        let shape = parsed.shape(Some(1232));
        let mut out = Vec::with_capacity(512);
        b.iter(|| {
            out.clear();
            reply.render(black_box(&shape), 17, &mut out);
            black_box(out.len())
        })
    });
    c.bench_function("wire/reorder 4 A in place (last first)", |b| {
        b.iter_batched_ref(
            || reply.clone(),
            |r| black_box(r.reorder_addresses(|_, i| usize::MAX - i)),
            BatchSize::SmallInput,
        )
    });
}

fn key(i: u32) -> Key {
    let mut name = Vec::with_capacity(32);
    wire::write_name(&format!("n{i}.example.com"), &mut name).unwrap();
    Key::new(&name, 1, 1, false, false)
}

fn cache_benches(c: &mut Criterion) {
    const N: u32 = 10_000;
    let reply = Arc::new(Reply::parse(&reply_a4()).unwrap());
    let now = Instant::now();
    let ttl = Duration::from_secs(300);
    let mut cache: Cache<Arc<Reply>> = Cache::new(N as usize);
    for i in 0..N {
        cache.insert(key(i), Arc::clone(&reply), now, ttl);
    }
    let keys: Vec<Key> = (0..N).map(key).collect();
    let mut i = 0usize;
    c.bench_function("cache/get hit (10k entries)", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            black_box(cache.get(&keys[i], now).is_some())
        })
    });
    let mut next = N;
    let fresh: Vec<Key> = (N..N + 1_000_000).map(key).collect();
    c.bench_function("cache/insert with eviction (full, unique names)", |b| {
        b.iter(|| {
            let k = fresh[(next - N) as usize % fresh.len()].clone();
            next += 1;
            cache.insert(k, Arc::clone(&reply), now, ttl);
        })
    });
}

fn address(addr: &str, prefix_len: u8, class: Class) -> Address {
    Address {
        addr: addr.parse().unwrap(),
        prefix_len,
        interface: "eth0".into(),
        ifindex: 2,
        scope_id: 0,
        class,
        deprecated: false,
        temporary: false,
    }
}

fn policy_benches(c: &mut Criterion) {
    let sources = vec![
        address("2001:db8:1::2", 64, Class::Gua),
        address("fd00:1::2", 64, Class::Ula),
        address("192.168.1.2", 24, Class::Rfc1918),
    ];
    let host = Snapshot {
        addresses: sources.clone(),
        gateways4: vec![Gateway {
            addr: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1)),
            interface: "eth0".into(),
            ifindex: 2,
            scope_id: 0,
        }],
        gateways6: vec![Gateway {
            addr: "fe80::1".parse().unwrap(),
            interface: "eth0".into(),
            ifindex: 2,
            scope_id: 2,
        }],
    };
    let verdicts = Verdicts {
        generation: 7,
        sources: sources
            .iter()
            .enumerate()
            .map(|(i, a)| SourceVerdict {
                address: a.addr,
                scope_id: 0,
                interface: a.interface.clone(),
                class: a.class,
                state: if i == 1 { State::Failed } else { State::Ok },
                link: State::Ok,
                rtt: Some(Duration::from_millis(10 + i as u64)),
                mapped: None,
            })
            .collect(),
        families: Families {
            ipv4: State::Ok,
            ipv6: State::Ok,
        },
        host: Arc::new(host.clone()),
        ..Verdicts::default()
    };
    let destinations = [
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)),
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x10)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xeeee, 0, 0, 0, 0, 0x10)),
    ];
    let options = Options::default();
    c.bench_function("policy/pairs (2 A + 2 AAAA, 3 sources)", |b| {
        b.iter(|| {
            black_box(policy::pairs(
                black_box(&destinations),
                &host,
                &verdicts,
                &options,
            ))
        })
    });
}

criterion_group!(benches, wire_benches, cache_benches, policy_benches);
criterion_main!(benches);
