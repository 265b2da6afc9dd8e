use std::net::IpAddr;

use proptest::prelude::*;

use super::query::{OPT_COOKIE, OPT_ECS};
use super::reply::{OPT_LEN, address};
use super::*;

/// Wire name from dotted text ("" is the root).
fn name(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in text.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    Header {
        id,
        flags,
        qdcount: counts[0],
        ancount: counts[1],
        nscount: counts[2],
        arcount: counts[3],
    }
    .write(&mut out);
    out
}

fn rr(owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
    let mut out = owner.to_vec();
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
    out
}

fn opt(udp: u16, do_bit: bool, options: &[(u16, &[u8])]) -> Vec<u8> {
    let mut rdata = Vec::new();
    for (code, data) in options {
        rdata.extend_from_slice(&code.to_be_bytes());
        rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
        rdata.extend_from_slice(data);
    }
    let mut out = vec![0];
    out.extend_from_slice(&rtype::OPT.to_be_bytes());
    out.extend_from_slice(&udp.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(if do_bit { 0x8000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(&rdata);
    out
}

fn question(qname: &str, qtype: u16) -> Vec<u8> {
    let mut q = name(qname);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q
}

fn query(qname: &str, qtype: u16, edns: Option<Vec<u8>>) -> Vec<u8> {
    let mut m = header(0xabcd, flag::RD, [1, 0, 0, u16::from(edns.is_some())]);
    m.extend(question(qname, qtype));
    m.extend(edns.unwrap_or_default());
    m
}

/// A reply for `www.example.test` A with the given addresses, an SOA in
/// authority and an OPT; answer owners are pointers to the question.
fn reply(addrs: &[[u8; 4]], ttl: u32, with_opt: bool) -> Vec<u8> {
    let mut m = header(
        0x1111,
        flag::QR | flag::RD | flag::RA,
        [1, addrs.len() as u16, 0, u16::from(with_opt)],
    );
    m.extend(question("www.example.test", rtype::A));
    for a in addrs {
        m.extend(rr(&[0xc0, 12], rtype::A, ttl, a));
    }
    if with_opt {
        m.extend(opt(1232, false, &[]));
    }
    m
}

fn soa_rdata(minimum: u32) -> Vec<u8> {
    let mut r = name("ns.example.test");
    r.extend(name("admin.example.test"));
    for v in [1u32, 7200, 3600, 1_209_600, minimum] {
        r.extend_from_slice(&v.to_be_bytes());
    }
    r
}

#[test]
fn short_headers_are_not_messages() {
    for len in [0, 1, 11] {
        assert!(Header::parse(&vec![0; len]).is_none());
        assert_eq!(
            Message::parse(&vec![0; len]).unwrap_err(),
            Error::ShortHeader
        );
    }
    assert!(Header::parse(&[0; 12]).is_some());
}

#[test]
fn bad_names_are_rejected() {
    let q = |n: &[u8]| {
        let mut m = header(1, 0, [1, 0, 0, 0]);
        m.extend_from_slice(n);
        m.extend_from_slice(&[0, 1, 0, 1]);
        Message::parse(&m).map(|_| ())
    };
    assert_eq!(q(&[64]), Err(Error::BadName), "label > 63");
    let long: Vec<u8> = std::iter::repeat_n(
        [63u8]
            .iter()
            .chain([b'a'; 63].iter())
            .copied()
            .collect::<Vec<_>>(),
        5,
    )
    .flatten()
    .chain([0])
    .collect();
    assert_eq!(q(&long), Err(Error::BadName), "name > 255");
    assert_eq!(
        q(&[0xc0, 12]),
        Err(Error::BadName),
        "question names are never compressed"
    );
    assert_eq!(q(&[3, b'a', b'b']), Err(Error::Truncated));
    // In records: loops, forward pointers, pointers past the end, and
    // the reserved label types 0x40/0x80.
    let with_answer_owner = |owner: &[u8]| {
        let mut m = header(1, flag::QR, [1, 1, 0, 0]);
        m.extend(question("a.test", rtype::A));
        m.extend(rr(owner, rtype::A, 1, &[1, 2, 3, 4]));
        Message::parse(&m).map(|_| ())
    };
    assert!(with_answer_owner(&[0xc0, 12]).is_ok());
    assert_eq!(
        with_answer_owner(&[0xc0, 24]),
        Err(Error::BadName),
        "self pointer"
    );
    assert_eq!(
        with_answer_owner(&[0xc0, 200]),
        Err(Error::BadName),
        "forward pointer"
    );
    assert_eq!(with_answer_owner(&[0x40, 0]), Err(Error::BadName));
    assert_eq!(with_answer_owner(&[0x80, 0]), Err(Error::BadName));
    assert_eq!(with_answer_owner(&[0xc0]), Err(Error::Truncated));
}

#[test]
fn names_may_not_run_through_edited_bytes() {
    // A case the fuzzer found: an owner name reached by a pointer into a
    // TTL field changes when the cache lowers the TTL, and the rendered
    // reply would not parse.
    let mut m = header(1, flag::QR, [1, 2, 0, 0]);
    m.extend(question("a.test", rtype::A));
    let first = m.len();
    m.extend(rr(&[0xc0, 12], rtype::A, 0x0100_0000, &[192, 0, 2, 1]));
    // TTL bytes at first+6.. read as a label of length 1 and the root.
    m.extend(rr(
        &[0xc0, (first + 6) as u8],
        rtype::A,
        60,
        &[192, 0, 2, 2],
    ));
    assert!(Message::parse(&m).is_ok(), "valid DNS by the letter");
    assert_eq!(Reply::parse(&m).unwrap_err(), Error::BadName);
    // A name after a jump must end before the pointer that led there.
    let mut m = header(1, flag::QR, [1, 1, 0, 0]);
    m.extend(question("a.test", rtype::A));
    let at = m.len();
    m.extend_from_slice(&[1, b'x', 0xc0, at as u8]);
    assert_eq!(name_end(&m, at), Err(Error::BadName));
}

#[test]
fn pointer_chains_are_bounded() {
    // 200 pointers each to the previous one: more hops than allowed.
    let mut m = header(1, flag::QR, [1, 0, 0, 0]);
    m.extend(question("a.test", rtype::A));
    let first = m.len();
    m.extend_from_slice(&[1, b'x', 0]);
    let mut prev = first;
    for _ in 0..200 {
        let at = m.len();
        m.extend_from_slice(&[0xc0 | (prev >> 8) as u8, prev as u8]);
        prev = at;
    }
    assert_eq!(name_end(&m, prev), Err(Error::BadName));
    assert_eq!(name_end(&m, first + 3), Ok(first + 5), "one hop is fine");
    assert_eq!(name_lower(&m, first + 3), Some(vec![1, b'x', 0]));
}

#[test]
fn lying_counts_and_bad_addresses() {
    let mut m = reply(&[[192, 0, 2, 1]], 60, false);
    m[7] = 2; // ancount 2, one record present
    assert_eq!(Message::parse(&m).unwrap_err(), Error::Truncated);
    let mut m = header(1, flag::QR, [1, 1, 0, 0]);
    m.extend(question("a.test", rtype::A));
    let mut bad_a = m.clone();
    bad_a.extend(rr(&[0xc0, 12], rtype::A, 1, &[1, 2, 3]));
    assert_eq!(Message::parse(&bad_a).unwrap_err(), Error::BadAddress);
    m.extend(rr(&[0xc0, 12], rtype::AAAA, 1, &[0; 15]));
    assert_eq!(Message::parse(&m).unwrap_err(), Error::BadAddress);
    let mut rdlen_past_end = reply(&[[192, 0, 2, 1]], 60, false);
    let n = rdlen_past_end.len();
    rdlen_past_end[n - 5] = 9;
    assert_eq!(
        Message::parse(&rdlen_past_end).unwrap_err(),
        Error::Truncated
    );
}

#[test]
fn opt_rules() {
    let mut two = query("a.test", rtype::A, Some(opt(1232, false, &[])));
    two[11] = 2;
    two.extend(opt(1232, false, &[]));
    assert_eq!(Query::parse(&two).unwrap_err(), Error::DuplicateOpt);
    let mut not_root = header(1, 0, [1, 0, 0, 1]);
    not_root.extend(question("a.test", rtype::A));
    not_root.extend(rr(&name("x"), rtype::OPT, 0, &[]));
    assert_eq!(Query::parse(&not_root).unwrap_err(), Error::MisplacedOpt);
    let mut in_answer = header(1, 0, [1, 1, 0, 0]);
    in_answer.extend(question("a.test", rtype::A));
    in_answer.extend(opt(1232, false, &[]));
    assert_eq!(Query::parse(&in_answer).unwrap_err(), Error::MisplacedOpt);
    // An option running past the OPT record makes the query malformed:
    // forward() would pass the broken option on to the upstream.
    let mut overrun = query("a.test", rtype::A, Some(opt(1232, false, &[(12, &[0; 4])])));
    let n = overrun.len();
    overrun[n - 5] = 5; // the option claims 5 bytes, 4 follow
    assert_eq!(Query::parse(&overrun).unwrap_err(), Error::BadOption);
    let mut partial = query("a.test", rtype::A, Some(opt(1232, false, &[(12, &[])])));
    let n = partial.len();
    partial.truncate(n - 1); // 3 bytes of an option header
    partial[n - 5] = 3; // RDLENGTH
    assert_eq!(Query::parse(&partial).unwrap_err(), Error::BadOption);
    let q = query("a.test", rtype::A, Some(opt(4096, true, &[])));
    let q = Query::parse(&q).unwrap();
    let e = q.edns().unwrap();
    assert_eq!((e.udp_size, e.do_bit, e.version), (4096, true, 0));
}

#[test]
fn forward_strips_cookie_and_subnet_only() {
    let q = query(
        "MiXeD.test",
        rtype::AAAA,
        Some(opt(
            1232,
            true,
            &[
                (OPT_COOKIE, &[1; 8]),
                (12, &[0; 4]),
                (OPT_ECS, &[0, 1, 24, 0, 192, 0, 2]),
                (3, &[]),
            ],
        )),
    );
    let parsed = Query::parse(&q).unwrap();
    let mut out = Vec::new();
    parsed.forward(0x4242, &mut out);
    let f = Query::parse(&out).unwrap();
    assert_eq!(f.header().id, 0x4242);
    assert_eq!(f.header().flags, flag::RD);
    assert_eq!(f.question(), parsed.question(), "question byte for byte");
    let e = f.edns().unwrap();
    assert!(e.do_bit);
    assert_eq!(
        &out[e.options.clone()],
        &[0, 12, 0, 4, 0, 0, 0, 0, 0, 3, 0, 0]
    );
    // Without EDNS the query stays without it.
    let plain = query("a.test", rtype::A, None);
    Query::parse(&plain).unwrap().forward(1, &mut out);
    assert_eq!(&out[2..], &plain[2..]);
}

#[test]
fn a_stale_copy_has_ttl_30_and_says_it_is_stale() {
    let ede = |bytes: &[u8]| extended_errors(bytes);
    for with_opt in [true, false] {
        let fresh =
            Reply::parse(&reply(&[[192, 0, 2, 1], [192, 0, 2, 2]], 3600, with_opt)).unwrap();
        let stale = fresh.stale(30);
        assert_eq!(stale.min_ttl(), Some(30), "opt {with_opt}");
        assert_eq!(stale.addresses().len(), 2);
        assert_eq!(ede(stale.bytes()), [(EDE_STALE_ANSWER, String::new())]);
        // A client without EDNS gets no OPT, so no EDE; one with EDNS
        // gets the EDE.
        let mut out = Vec::new();
        let plain = query("www.example.test", rtype::A, None);
        stale.render(
            &Query::parse(&plain).unwrap().shape(Some(1232)),
            0,
            &mut out,
        );
        let m = Message::parse(&out).unwrap();
        assert!(m.edns.is_none() && m.header.ancount == 2);
        let edns = query("www.example.test", rtype::A, Some(opt(1232, false, &[])));
        stale.render(&Query::parse(&edns).unwrap().shape(Some(1232)), 0, &mut out);
        assert_eq!(ede(&out), [(EDE_STALE_ANSWER, String::new())]);
    }
    // An OPT followed by another record is left alone: TTLs still 30.
    let mut m = header(0x1111, flag::QR, [1, 0, 0, 2]);
    m.extend(question("www.example.test", rtype::A));
    m.extend(opt(1232, false, &[]));
    m.extend(rr(&[0xc0, 12], rtype::A, 600, &[192, 0, 2, 3]));
    let stale = Reply::parse(&m).unwrap().stale(30);
    assert_eq!(stale.min_ttl(), Some(30));
    assert!(ede(stale.bytes()).is_empty());
}

#[test]
fn render_fits_the_client() {
    let r = Reply::parse(&reply(&[[192, 0, 2, 1], [192, 0, 2, 2]], 300, true)).unwrap();
    let client = query("WWW.Example.TEST", rtype::A, None);
    let client = Query::parse(&client).unwrap();
    let mut out = Vec::new();
    r.render(&client.shape(Some(1232)), 100, &mut out);
    let m = Message::parse(&out).unwrap();
    assert_eq!(m.header.id, 0xabcd);
    assert_eq!(m.question(), client.question(), "case preserved");
    assert!(m.edns.is_none(), "no OPT for a client without EDNS");
    assert_eq!(m.header.arcount, 0);
    assert!(m.header.flags & flag::RA != 0);
    assert!(m.records.iter().all(|r| r.ttl == 200), "TTL lowered by age");
    // An EDNS client keeps the OPT.
    let e = query("www.example.test", rtype::A, Some(opt(1232, false, &[])));
    let e = Query::parse(&e).unwrap();
    r.render(&e.shape(None), 0, &mut out);
    assert_eq!(&out[2..], &r.bytes()[2..]);
    // A reply cached without OPT gains one for an EDNS client.
    let bare = Reply::parse(&reply(&[[192, 0, 2, 1]], 300, false)).unwrap();
    bare.render(&e.shape(None), 0, &mut out);
    let m = Message::parse(&out).unwrap();
    assert_eq!(m.header.arcount, 1);
    assert_eq!(m.edns.map(|e| (e.udp_size, e.do_bit)), Some((1232, false)));
    // RD follows the client.
    let mut no_rd = query("www.example.test", rtype::A, None);
    no_rd[2] = 0;
    r.render(&Query::parse(&no_rd).unwrap().shape(None), 0, &mut out);
    assert!(!Header::parse(&out).unwrap().rd());
}

/// RFC 1035 §3.3.10: any RDATA up to 65,535 bytes.
const NULL: u16 = 10;

/// A reply for `www.example.test` NULL of exactly `size` bytes, no OPT:
/// one record whose RDATA fills the rest.
fn reply_of_size(size: usize) -> Vec<u8> {
    let mut m = header(0x1111, flag::QR | flag::RD | flag::RA, [1, 1, 0, 0]);
    m.extend(question("www.example.test", NULL));
    let rdata = vec![0x5a; size - m.len() - 12];
    m.extend(rr(&[0xc0, 12], NULL, 300, &rdata));
    assert_eq!(m.len(), size);
    m
}

#[test]
fn over_tcp_an_added_opt_never_takes_a_reply_past_65535_bytes() {
    let client = query("www.example.test", NULL, Some(opt(1232, true, &[])));
    let client = Query::parse(&client).unwrap();
    let plain = query("www.example.test", NULL, None);
    let plain = Query::parse(&plain).unwrap();
    let mut out = Vec::new();
    for size in 65_520..=MAX_MESSAGE {
        let r = Reply::parse(&reply_of_size(size)).unwrap();
        r.render(&client.shape(None), 5, &mut out);
        let m = Message::parse(&out).unwrap_or_else(|e| panic!("{size}: {e}"));
        assert!(out.len() <= MAX_MESSAGE, "{size}: rendered {}", out.len());
        assert_eq!((m.header.id, m.header.ancount), (0xabcd, 1), "{size}");
        assert!(!m.header.tc(), "{size}: nothing is truncated over TCP");
        // The OPT comes while it fits: up to 65,524 bytes.
        let fits = size + OPT_LEN <= MAX_MESSAGE;
        assert_eq!(m.edns.is_some(), fits, "{size}");
        assert_eq!(out.len(), if fits { size + OPT_LEN } else { size });
        r.render(&plain.shape(None), 0, &mut out);
        assert_eq!(out.len(), size, "a client without EDNS gets it as it is");
    }
}

#[test]
fn servfail_for_keeps_the_id_rd_and_question() {
    let client = query("WWW.Example.test", NULL, Some(opt(1232, false, &[])));
    let client = Query::parse(&client).unwrap();
    let r = Reply::parse(&reply_of_size(1_000)).unwrap();
    let mut answer = Vec::new();
    r.render(&client.shape(None), 0, &mut answer);
    let mut out = Vec::new();
    servfail_for(&answer, &mut out);
    let m = Message::parse(&out).unwrap();
    assert_eq!(m.header.id, 0xabcd);
    assert_eq!(m.header.rcode(), rcode::SERVFAIL);
    assert!(m.header.qr() && m.header.rd());
    assert_eq!(m.question(), client.question(), "case kept");
    assert_eq!((m.header.ancount, m.header.arcount), (0, 0));
    // Without a readable question: still an answer with the ID.
    servfail_for(&answer[..12], &mut out);
    let m = Message::parse(&out).unwrap();
    assert_eq!((m.header.id, m.header.qdcount), (0xabcd, 0));
}

#[test]
fn truncation_leaves_header_question_and_opt() {
    let addrs: Vec<[u8; 4]> = (0..40).map(|i| [198, 51, 100, i]).collect();
    let r = Reply::parse(&reply(&addrs, 60, true)).unwrap();
    assert!(r.bytes().len() > 512);
    let plain = query("www.example.test", rtype::A, None);
    let mut out = Vec::new();
    r.render(
        &Query::parse(&plain).unwrap().shape(Some(1232)),
        0,
        &mut out,
    );
    let m = Message::parse(&out).unwrap();
    assert!(m.header.tc());
    assert_eq!(
        (
            m.header.qdcount,
            m.header.ancount,
            m.header.nscount,
            m.header.arcount
        ),
        (1, 0, 0, 0)
    );
    assert!(out.len() <= 512);
    // An EDNS client advertising 4096 under a 1232 cap gets all 40 A
    // records: they fit in 1232 bytes.
    let big = query("www.example.test", rtype::A, Some(opt(4096, true, &[])));
    let big = Query::parse(&big).unwrap();
    r.render(&big.shape(Some(1232)), 0, &mut out);
    assert_eq!(Message::parse(&out).unwrap().header.ancount, 40);
    // Advertising 600 while the reply is larger: TC, with an OPT echoing DO.
    let small = query("www.example.test", rtype::A, Some(opt(600, true, &[])));
    let small = Query::parse(&small).unwrap();
    r.render(&small.shape(Some(1232)), 0, &mut out);
    let m = Message::parse(&out).unwrap();
    assert!(m.header.tc());
    let e = m.edns.unwrap();
    assert!(e.do_bit);
    assert_eq!(e.udp_size, 1232);
    // Over TCP nothing is truncated.
    r.render(&small.shape(None), 0, &mut out);
    assert!(!Header::parse(&out).unwrap().tc());
}

#[test]
fn ttls_for_the_cache() {
    let r = Reply::parse(&reply(&[[192, 0, 2, 1], [192, 0, 2, 2]], 300, true)).unwrap();
    assert_eq!(r.min_ttl(), Some(300), "OPT's TTL field is not a TTL");
    assert_eq!(r.negative_ttl(), None);
    let mut m = header(1, flag::QR | rcode::NXDOMAIN, [1, 0, 1, 0]);
    m.extend(question("nx.example.test", rtype::A));
    m.extend(rr(&name("example.test"), rtype::SOA, 3600, &soa_rdata(120)));
    let r = Reply::parse(&m).unwrap();
    assert_eq!(
        r.negative_ttl(),
        Some(120),
        "RFC 2308 §5: min(SOA TTL, MINIMUM)"
    );
    assert_eq!(r.rcode(), rcode::NXDOMAIN);
}

#[test]
fn answers_checks_id_question_and_qr() {
    let q = query("MiX.test", rtype::A, None);
    let qn = Query::parse(&q).unwrap().question().to_vec();
    let mut r = header(7, flag::QR, [1, 0, 0, 0]);
    r.extend_from_slice(&qn);
    assert!(answers(&r, 7, &qn));
    assert!(!answers(&r, 8, &qn), "wrong id");
    let lower = question("mix.test", rtype::A);
    assert!(!answers(&r, 7, &lower), "0x20 case must be echoed exactly");
    r[2] = 0;
    assert!(!answers(&r, 7, &qn), "QR clear");
    let formerr = header(7, flag::QR | rcode::FORMERR, [0, 0, 0, 0]);
    assert!(answers(&formerr, 7, &qn));
}

#[test]
fn reorder_swaps_slots_within_an_rrset() {
    let mut m = header(1, flag::QR, [1, 3, 0, 0]);
    m.extend(question("www.example.test", rtype::A));
    m.extend(rr(&[0xc0, 12], rtype::A, 10, &[192, 0, 2, 1]));
    m.extend(rr(&[0xc0, 12], rtype::A, 20, &[192, 0, 2, 2]));
    m.extend(rr(&[0xc0, 12], rtype::A, 30, &[192, 0, 2, 3]));
    let mut r = Reply::parse(&m).unwrap();
    assert!(r.reorder_addresses(|a, _| std::cmp::Reverse(a)));
    let msg = r.message();
    let got: Vec<(IpAddr, u32)> = msg
        .records
        .iter()
        .map(|x| (address(r.bytes(), x).unwrap(), x.ttl))
        .collect();
    assert_eq!(
        got,
        vec![
            ("192.0.2.3".parse().unwrap(), 30),
            ("192.0.2.2".parse().unwrap(), 20),
            ("192.0.2.1".parse().unwrap(), 10)
        ],
        "TTL travels with its address"
    );
    assert!(
        !r.reorder_addresses(|a, _| std::cmp::Reverse(a)),
        "already in order"
    );
}

#[test]
fn error_replies() {
    let q = query("a.test", rtype::A, Some(opt(1232, true, &[])));
    let q = Query::parse(&q).unwrap();
    let mut out = Vec::new();
    error_reply(&q.shape(Some(1232)), 0, rcode::BADVERS, &mut out);
    let m = Message::parse(&out).unwrap();
    assert_eq!(m.rcode(), rcode::BADVERS);
    assert!(m.header.qr());
    assert_eq!(m.question(), q.question());
    let h = Header::parse(&[9, 9, 0x29, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    error_reply(&header_shape(&h), h.opcode(), rcode::NOTIMP, &mut out);
    let m = Message::parse(&out).unwrap();
    assert_eq!(
        (m.header.id, m.header.opcode(), m.rcode()),
        (0x0909, 5, rcode::NOTIMP)
    );
}

proptest! {
    #[test]
    fn the_fuzz_entry_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        crate::fuzzing::wire(&data);
    }

    #[test]
    fn the_fuzz_entry_on_mutated_replies(flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..6)) {
        let mut m = reply(&[[192, 0, 2, 1], [192, 0, 2, 2]], 300, true);
        for (at, v) in flips {
            let n = m.len();
            m[at % n] = v;
        }
        crate::fuzzing::wire(&m);
    }

    #[test]
    fn reorder_keeps_the_multiset(addrs in proptest::collection::vec(any::<[u8; 4]>(), 1..20), seed in any::<u64>()) {
        let mut r = Reply::parse(&reply(&addrs, 60, true)).unwrap();
        let mut before = r.addresses();
        r.reorder_addresses(|a, i| (u64::from(a.is_ipv4()) ^ seed).wrapping_mul(i as u64 + 1));
        let mut after = r.addresses();
        before.sort();
        after.sort();
        prop_assert_eq!(before, after);
        prop_assert_eq!(r.bytes().len(), reply(&addrs, 60, true).len());
    }
}

#[test]
fn a_name_in_rdata_must_end_inside_it() {
    // An NS record with empty RDATA and, after the message, bytes that
    // read as a name (a case the rewrite fuzz target found): a reply kept
    // without its trailing bytes would not parse.
    let mut m = header(1, flag::QR, [1, 1, 0, 0]);
    m.extend(question("a.example", rtype::A));
    m.extend(rr(&name("a.example"), rtype::NS, 60, &[]));
    m.extend([1, b'x', 0]);
    assert_eq!(Reply::parse(&m), Err(Error::BadName));
    // A CNAME whose target runs past its RDATA.
    let mut m = header(1, flag::QR, [1, 1, 0, 0]);
    m.extend(question("a.example", rtype::CNAME));
    m.extend(rr(&name("a.example"), rtype::CNAME, 60, &[1, b'b']));
    m.extend([0]);
    assert!(Reply::parse(&m).is_err());
    // The same with the name inside: fine.
    let mut m = header(1, flag::QR, [1, 1, 0, 0]);
    m.extend(question("a.example", rtype::CNAME));
    m.extend(rr(&name("a.example"), rtype::CNAME, 60, &[1, b'b', 0]));
    assert!(Reply::parse(&m).is_ok());
}
