//! The `query` target: a client's query through the server's triage and
//! forwarding, on a daemon with no upstream and a prefilled cache.

use std::sync::Arc;

use super::scene::{offline, peer, prefill, udp_cap};
use crate::dns::server::Step;
use crate::dns::wire::{CLASSIC_UDP_SIZE, Header, Message, Query, rtype};

/// A client's query through `Shared::triage` and, when that forwards it,
/// `Shared::forward` (which fails over to SERVFAIL at once: no upstream),
/// on a daemon set up by `data[0]` (`scene::offline`; `scene::peer`; bit 6:
/// over TCP) with the verdicts `data[1]` picks and the cache `data[2]` fills
/// for the asked name (`scene::prefill`). The rest is the query.
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
