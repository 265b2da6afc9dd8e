//! The `wire` target: the DNS message views, forwarding, rendering and
//! reordering over arbitrary bytes.

use crate::dns::wire::{
    ClientEdns, Header, Message, Query, Reply, Shape, error_reply, header_shape, rcode,
};

/// Runs every wire entry point over arbitrary bytes: queries are forwarded
/// and answered with errors, replies rendered for four kinds of client and
/// reordered; what comes out must parse. Never panics.
pub fn wire(data: &[u8]) {
    let mut out = Vec::new();
    if let Ok(q) = Query::parse(data) {
        q.forward(0x1234, &mut out);
        let fwd = out.clone();
        assert!(Query::parse(&fwd).is_ok(), "a forwarded query must parse");
        for cap in [None, Some(512), Some(1232)] {
            error_reply(&q.shape(cap), q.header().opcode(), rcode::BADVERS, &mut out);
        }
    }
    if let Some(h) = Header::parse(data) {
        error_reply(&header_shape(&h), h.opcode(), rcode::FORMERR, &mut out);
    }
    if let Ok(mut r) = Reply::parse(data) {
        let _ = (r.min_ttl(), r.negative_ttl(), r.rcode(), r.addresses());
        let question = r.message().question().to_vec();
        let shape = |edns, limit| Shape {
            id: 7,
            rd: true,
            question: &question,
            edns,
            limit,
            advertise: 1232,
        };
        let edns = Some(ClientEdns {
            do_bit: true,
            udp_size: 1232,
        });
        for (client, limit) in [
            (None, Some(512)),
            (edns, Some(1232)),
            (edns, None),
            (None, None),
        ] {
            r.render(&shape(client, limit), 5, &mut out);
            if let Err(e) = Message::parse(&out) {
                panic!(
                    "a rendered reply must parse: {e} (client {client:?}, limit {limit:?}): {out:?}"
                );
            }
        }
        let before = r.addresses();
        r.reorder_addresses(|a, i| (a.is_ipv4(), usize::MAX - i));
        let mut after = r.addresses();
        let mut sorted = before;
        sorted.sort();
        after.sort();
        assert_eq!(sorted, after, "reordering keeps the addresses");
        r.render(&shape(edns, None), 1, &mut out);
        assert!(Message::parse(&out).is_ok(), "a reordered reply renders");
    }
}
