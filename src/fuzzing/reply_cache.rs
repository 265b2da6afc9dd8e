//! The `reply_cache` target: an upstream's reply validated, rewritten,
//! cached for its lifetime and rendered for eight kinds of client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::verdicts;
use crate::config::Filter;
use crate::dns::cache::{self, Cache, Key};
use crate::dns::rewrite::{self, Context, Other, Rewritten};
use crate::dns::wire::{CLASSIC_UDP_SIZE, ClientEdns, Message, Reply, Shape, rcode, rtype};

/// An upstream's reply (`data[2..]`) as the server keeps and serves it:
/// validated ([`Reply::parse`]), rewritten under the verdicts `data[0]`
/// picks for its addresses, cached for [`cache::lifetime`], and rendered
/// from the cache for clients with and without EDNS, small and large
/// sizes, UDP and TCP. `data[1]`: bit 0 the DO bit, bit 1 the filter off,
/// bit 2 `break_dnssec`, bits 3-4 the other family's answer (failed, this
/// reply, not asked), bits 5-7 how far into its lifetime it is served.
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
        Rewritten::Reordered(r) | Rewritten::Filtered { reply: r, .. } => r,
        Rewritten::Same | Rewritten::NeedOther => upstream.clone(),
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
