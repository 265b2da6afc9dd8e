//! The `rewrite` target: answers rewritten by arbitrary verdicts.

use std::net::IpAddr;

use crate::config::Filter;
use crate::dns::rewrite::{self, Context, Other, Rewritten};
use crate::dns::wire::{self, Reply, rtype};

/// Runs [`rewrite::rewrite`] over arbitrary bytes (a reply, after one byte that
/// picks the verdicts), under every policy and with every kind of
/// [`Other`]: what comes out must parse, render, and never hold an address
/// the upstream did not send. Never panics.
pub fn rewrite(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(reply) = Reply::parse(rest) else {
        return;
    };
    let mut seen: Vec<IpAddr> = reply.addresses();
    seen.extend(reply.hints().into_iter().map(|(_, a)| a));
    seen.sort();
    seen.dedup();
    let v = super::verdicts(pick, &seen);
    let question = reply.message().question().to_vec();
    let shape = wire::Shape {
        id: 1,
        rd: true,
        question: &question,
        edns: Some(wire::ClientEdns {
            do_bit: true,
            udp_size: 1232,
        }),
        limit: None,
        advertise: 1232,
    };
    let mut out = Vec::new();
    for (filter, break_dnssec) in [
        (Filter::Auto, false),
        (Filter::Auto, true),
        (Filter::Off, false),
    ] {
        let ctx = Context {
            verdicts: &v,
            filter,
            break_dnssec,
        };
        for qtype in [rtype::A, rtype::AAAA, rtype::HTTPS] {
            for do_bit in [false, true] {
                for other in [Other::Unasked, Other::Failed, Other::Reply(&reply)] {
                    let got = match rewrite::rewrite(&reply, qtype, do_bit, &ctx, other) {
                        Rewritten::Reordered(r) | Rewritten::Filtered { reply: r, .. } => r,
                        Rewritten::Same | Rewritten::NeedOther => continue,
                    };
                    if let Err(e) = Reply::parse(got.bytes()) {
                        panic!("a rewritten reply must parse: {e}");
                    }
                    for a in got.addresses() {
                        assert!(seen.contains(&a), "{a} was not in the upstream's reply");
                    }
                    got.render(&shape, 1, &mut out);
                    assert!(
                        wire::Message::parse(&out).is_ok(),
                        "a rewritten reply renders"
                    );
                }
            }
        }
    }
}
