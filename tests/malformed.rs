//! Malformed input from clients and from upstreams.
//!
//! **Client side.** A table of cases (name, bytes, expected outcome) sent
//! over UDP and over TCP, then TCP framing abuse and seeded random packets.
//! The outcomes follow the RFCs:
//!
//! | input | outcome |
//! |---|---|
//! | fewer than 12 bytes | dropped: no header to answer with; over TCP the connection is closed |
//! | QR=1 | dropped silently (RFC 1035 §4.1.1: answering a reply can loop two servers) |
//! | opcode ≠ QUERY | NOTIMP, opcode echoed (RFC 1035 §4.1.1) |
//! | unparsable, readable header | FORMERR (RFC 1035 §4.1.1), nothing forwarded |
//! | two OPT, OPT not at the root or outside the additional section | FORMERR (RFC 6891 §6.1.1) |
//! | EDNS version > 0 | BADVERS: extended rcode 16 in an OPT (RFC 6891 §6.1.3) |
//! | EDNS buffer size < 512 | treated as 512 (RFC 6891 §6.2.5): a 450-byte answer comes whole |
//! | bytes after the last record | ignored, the query answered (as Unbound's `parse_packet` does) |
//!
//! After every case a fresh valid query must be answered at once, and over
//! TCP a query on the same connection too when it stays open (the stream
//! is still in step).
//!
//! **Upstream side.** Each case is a [`FakeUpstream`] script: the bad reply
//! first, the valid one [`DELAY`] later. The client must get the valid
//! answer (the wait went on), and asking again must be a cache hit with the
//! valid answer (nothing bad was cached). Over TCP the same, after a TC
//! reply over UDP. Two cases are well-formed replies, relayed rather than
//! ignored: a CNAME loop (a stub does not chase CNAMEs; loop detection,
//! RFC 1034 §3.6.2, belongs to whoever follows the chain) and a UDP reply
//! larger than the size the query offered, without TC (RFC 6891 §7 says a
//! responder must not send it; it matches the query and parses, so it is
//! kept and fitted to each client: TC over UDP, whole over TCP).
//!
//! Each test prints one `malformed:` line to quote; run with
//! `cargo test --test malformed -- --nocapture`.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::client::{TcpRecv, a_addrs, parse, udp_exchange_within};
use common::fake::{a_reply, reply_to};
use common::{
    Action, FakeUpstream, TcpClient, Transport, config_toml, query, question_bytes, start_getapr,
    tcp_exchange, udp_exchange,
};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// How long "no reply" is waited for.
const SILENCE: Duration = Duration::from_millis(250);
/// Bound on "answered at once": generous, the machine is shared.
const PROMPT: Duration = Duration::from_secs(2);
/// How long a fake upstream holds the valid reply back after a bad one.
const DELAY: Duration = Duration::from_millis(50);
/// The upstream timeout the daemon runs with: far above [`DELAY`].
const DNS_EXTRA: &str = "timeout_ms = 1500";

// --- raw messages ----------------------------------------------------------

const QR: u16 = 0x8000;
const RD: u16 = 0x0100;
const RA: u16 = 0x0080;
const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_NULL: u16 = 10;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;

fn header(flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut out = vec![0, 0];
    for v in [flags, counts[0], counts[1], counts[2], counts[3]] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

/// Dotted text in wire format, unchecked (so labels and names may be too
/// long); "" is the root.
fn name(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in text.split('.').filter(|l| !l.is_empty()) {
        out.push(u8::try_from(label.len()).expect("label length fits a byte"));
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A name of labels of these lengths (filled with 'a').
fn long_name(labels: &[usize]) -> Vec<u8> {
    let text: Vec<String> = labels.iter().map(|&n| "a".repeat(n)).collect();
    name(&text.join("."))
}

fn question(qname: &[u8], qtype: u16) -> Vec<u8> {
    let mut out = qname.to_vec();
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out
}

/// A record of class IN, TTL 300, with RDLENGTH the length of `rdata`.
fn rr(owner: &[u8], rtype: u16, rdata: &[u8]) -> Vec<u8> {
    let len = u16::try_from(rdata.len()).expect("RDATA fits 65535 bytes");
    rr_claiming(owner, rtype, len, rdata)
}

/// A record whose RDLENGTH says `len`, whatever follows.
fn rr_claiming(owner: &[u8], rtype: u16, len: u16, rdata: &[u8]) -> Vec<u8> {
    let mut out = owner.to_vec();
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&300u32.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(rdata);
    out
}

/// An OPT record (RFC 6891 §6.1.2) with this payload size, version and
/// RDATA, at the root unless `owner` says otherwise.
fn opt_owned(owner: &[u8], size: u16, version: u8, rdata: &[u8]) -> Vec<u8> {
    let mut out = owner.to_vec();
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&[0, version, 0, 0]);
    out.extend_from_slice(&u16::try_from(rdata.len()).expect("short").to_be_bytes());
    out.extend_from_slice(rdata);
    out
}

fn opt(size: u16, version: u8) -> Vec<u8> {
    opt_owned(&[0], size, version, &[])
}

/// An OPT whose only option claims 8 bytes and carries 4.
fn opt_overrun() -> Vec<u8> {
    opt_owned(&[0], 1232, 0, &[0, 12, 0, 8, 0, 0, 0, 0])
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A pointer (RFC 1035 §4.1.4) to `offset`.
fn pointer(offset: usize) -> [u8; 2] {
    let offset = u16::try_from(offset).expect("offset fits 14 bits");
    assert!(offset < 0x4000, "offset fits 14 bits");
    (0xc000 | offset).to_be_bytes()
}

/// `prefix` followed by a NULL record whose RDATA is the name "x." and a
/// chain of `links` pointers, each to the one before (the first to "x."),
/// then a record of `rtype` owned by a pointer to the last link: its owner
/// takes `links + 1` hops to resolve.
fn pointer_chain(prefix: &[u8], links: usize, rtype: u16, rdata: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    // Root owner, then type, class, TTL, RDLENGTH: the RDATA starts 11 on.
    let rdata_at = out.len() + 11;
    let mut chain = name("x");
    let mut previous = rdata_at;
    for _ in 0..links {
        let at = rdata_at + chain.len();
        chain.extend_from_slice(&pointer(previous));
        previous = at;
    }
    out.extend(rr(&[0], TYPE_NULL, &chain));
    out.extend(rr(&pointer(previous), rtype, rdata));
    out
}

/// Sets the message ID (the first two bytes, when there are two).
fn with_id(mut bytes: Vec<u8>, id: u16) -> Vec<u8> {
    if let Some(head) = bytes.get_mut(..2) {
        head.copy_from_slice(&id.to_be_bytes());
    }
    bytes
}

fn id_of(bytes: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
}

// --- the client side: the table ---------------------------------------------

/// What the daemon must do with a client's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Formerr,
    Dropped,
    NotImp,
    BadVers,
    /// A valid query after all: forwarded and answered whole.
    Answered,
}

impl Expect {
    fn label(self) -> &'static str {
        match self {
            Expect::Formerr => "FORMERR",
            Expect::Dropped => "dropped",
            Expect::NotImp => "NOTIMP",
            Expect::BadVers => "BADVERS",
            Expect::Answered => "answered",
        }
    }
}

#[derive(Debug)]
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    expect: Expect,
}

fn case(name: &'static str, bytes: Vec<u8>, expect: Expect) -> Case {
    Case {
        name,
        bytes,
        expect,
    }
}

/// The upstream's answer to every client-side query: 25 A records, about
/// 450 bytes with the question and an OPT, so it fits 512 bytes whole.
fn answer_addrs() -> Vec<Ipv4Addr> {
    (1..=25).map(|i| Ipv4Addr::new(192, 0, 2, i)).collect()
}

/// The malformed client messages (and the valid ones at the limits), with
/// their names under `zone`, which keeps the UDP and TCP runs apart.
fn client_cases(zone: &str) -> Vec<Case> {
    use Expect::*;
    let qname = |label: &str| name(&format!("{label}.{zone}"));
    let q = question(&qname("q"), TYPE_A);
    let edns = opt(1232, 0);
    let valid = concat(&[&header(RD, [1, 0, 0, 1]), &q, &edns]);
    let head = |counts| header(RD, counts);
    // Offset of what follows the header and the question.
    let after_q = 12 + q.len();
    vec![
        // Short headers.
        case("0 bytes", Vec::new(), Dropped),
        case("1 byte", vec![0x4d], Dropped),
        case("11 bytes", valid[..11].to_vec(), Dropped),
        // Counts that lie.
        case("QDCOUNT 1, no question", head([1, 0, 0, 0]), Formerr),
        case("QDCOUNT 0", concat(&[&head([0, 0, 0, 1]), &edns]), Formerr),
        case(
            "QDCOUNT 2, two questions",
            concat(&[&head([2, 0, 0, 0]), &q, &q]),
            Formerr,
        ),
        case(
            "QDCOUNT 2, one question",
            concat(&[&head([2, 0, 0, 0]), &q]),
            Formerr,
        ),
        case(
            "ANCOUNT 1, no answer",
            concat(&[&head([1, 1, 0, 0]), &q]),
            Formerr,
        ),
        case(
            "ARCOUNT 2, one OPT",
            concat(&[&head([1, 0, 0, 2]), &q, &edns]),
            Formerr,
        ),
        case(
            "every count 65535",
            concat(&[&head([0xffff; 4]), &q, &edns]),
            Formerr,
        ),
        case(
            "question without its class",
            concat(&[&head([1, 0, 0, 0]), &qname("q"), &[0, 1]]),
            Formerr,
        ),
        // Compression pointers.
        case(
            "question name: pointer to itself",
            concat(&[&head([1, 0, 0, 0]), &pointer(12), &[0, 1, 0, 1]]),
            Formerr,
        ),
        case(
            "question name: pointer into the header",
            concat(&[&head([1, 0, 0, 0]), &pointer(4), &[0, 1, 0, 1]]),
            Formerr,
        ),
        case(
            "question name: a label, then a pointer back to it",
            concat(&[&head([1, 0, 0, 0]), &[1, b'a'], &pointer(12), &[0, 1, 0, 1]]),
            Formerr,
        ),
        case(
            "record owner: pointer to itself",
            concat(&[
                &head([1, 0, 0, 1]),
                &q,
                &rr(&pointer(after_q), TYPE_NULL, &[]),
            ]),
            Formerr,
        ),
        case(
            "record owners: two pointers to each other",
            {
                // The first record's RDATA points to the second's owner, which
                // points back.
                let first_rdata = after_q + 11;
                let second = after_q + 13;
                concat(&[
                    &head([1, 0, 0, 2]),
                    &q,
                    &rr(&[0], TYPE_NULL, &pointer(second)),
                    &rr(&pointer(first_rdata), TYPE_NULL, &[]),
                ])
            },
            Formerr,
        ),
        case(
            "record owner: forward pointer",
            // To the "x." in the RDATA of the record it owns.
            concat(&[
                &head([1, 0, 0, 1]),
                &q,
                &rr(&pointer(after_q + 12), TYPE_NULL, &name("x")),
            ]),
            Formerr,
        ),
        case(
            "record owner: pointer past the end",
            concat(&[
                &head([1, 0, 0, 1]),
                &q,
                &rr(&pointer(0x3fff), TYPE_NULL, &[]),
            ]),
            Formerr,
        ),
        case(
            "record owner: pointer cut in half",
            concat(&[&head([1, 0, 0, 1]), &q, &[0xc0]]),
            Formerr,
        ),
        case(
            "record owner: 129 pointer hops",
            pointer_chain(&concat(&[&head([1, 0, 0, 2]), &q]), 128, TYPE_NULL, &[]),
            Formerr,
        ),
        case(
            "record owner: 128 pointer hops (the limit)",
            pointer_chain(&concat(&[&head([1, 0, 0, 2]), &q]), 127, TYPE_NULL, &[]),
            Answered,
        ),
        // Labels and names.
        case(
            "question label of 64 bytes (type 0x40)",
            concat(&[&head([1, 0, 0, 0]), &question(&long_name(&[64]), TYPE_A)]),
            Formerr,
        ),
        case(
            "question label type 0x80",
            concat(&[&head([1, 0, 0, 0]), &[0x80, b'a', 0, 0, 1, 0, 1]]),
            Formerr,
        ),
        case(
            "question label of 191 bytes (type 0x80)",
            concat(&[&head([1, 0, 0, 0]), &question(&long_name(&[191]), TYPE_A)]),
            Formerr,
        ),
        case(
            "question name of 256 bytes",
            concat(&[
                &head([1, 0, 0, 1]),
                &question(&name_of_length(256, zone), TYPE_A),
                &edns,
            ]),
            Formerr,
        ),
        case(
            "question name of 257 bytes in 1-byte labels",
            concat(&[
                &head([1, 0, 0, 0]),
                &question(&long_name(&[1; 128]), TYPE_A),
            ]),
            Formerr,
        ),
        case(
            "question name of 255 bytes (the limit)",
            concat(&[
                &head([1, 0, 0, 1]),
                &question(&name_of_length(255, zone), TYPE_A),
                &edns,
            ]),
            Answered,
        ),
        case(
            "question label running past the end",
            concat(&[&head([1, 0, 0, 0]), &[5, b'a', b'b']]),
            Formerr,
        ),
        case(
            "record owner of 320 bytes",
            concat(&[
                &head([1, 0, 0, 1]),
                &q,
                &rr(&long_name(&[63; 5]), TYPE_NULL, &[]),
            ]),
            Formerr,
        ),
        // RDATA.
        case(
            "RDLENGTH past the end",
            concat(&[
                &head([1, 0, 0, 1]),
                &q,
                &rr_claiming(&[0], TYPE_NULL, 10, &[1, 2]),
            ]),
            Formerr,
        ),
        case(
            "RDLENGTH 65535",
            concat(&[
                &head([1, 0, 0, 1]),
                &q,
                &rr_claiming(&[0], TYPE_NULL, 0xffff, &[1; 40]),
            ]),
            Formerr,
        ),
        case(
            "A record of 3 bytes",
            concat(&[
                &head([1, 0, 0, 1]),
                &q,
                &rr(&pointer(12), TYPE_A, &[192, 0, 2]),
            ]),
            Formerr,
        ),
        case(
            "AAAA record of 15 bytes",
            concat(&[
                &head([1, 0, 0, 1]),
                &q,
                &rr(&pointer(12), TYPE_AAAA, &[0x20; 15]),
            ]),
            Formerr,
        ),
        // OPT.
        case(
            "two OPT records",
            concat(&[&head([1, 0, 0, 2]), &q, &edns, &edns]),
            Formerr,
        ),
        case(
            "OPT owned by a name, not the root",
            concat(&[
                &head([1, 0, 0, 1]),
                &q,
                &opt_owned(&name("x"), 1232, 0, &[]),
            ]),
            Formerr,
        ),
        case(
            "OPT in the answer section",
            concat(&[&head([1, 1, 0, 0]), &q, &edns]),
            Formerr,
        ),
        case(
            "OPT in the authority section",
            concat(&[&head([1, 0, 1, 0]), &q, &edns]),
            Formerr,
        ),
        case(
            "EDNS option running past the OPT record",
            concat(&[&head([1, 0, 0, 1]), &q, &opt_overrun()]),
            Formerr,
        ),
        case(
            "EDNS version 1",
            concat(&[&head([1, 0, 0, 1]), &q, &opt(1232, 1)]),
            BadVers,
        ),
        case(
            "EDNS version 255",
            concat(&[&head([1, 0, 0, 1]), &q, &opt(4096, 255)]),
            BadVers,
        ),
        case(
            "EDNS buffer size 0",
            concat(&[
                &head([1, 0, 0, 1]),
                &question(&qname("b0"), TYPE_A),
                &opt(0, 0),
            ]),
            Answered,
        ),
        case(
            "EDNS buffer size 511",
            concat(&[
                &head([1, 0, 0, 1]),
                &question(&qname("b511"), TYPE_A),
                &opt(511, 0),
            ]),
            Answered,
        ),
        case(
            "bytes after the last record",
            concat(&[
                &head([1, 0, 0, 1]),
                &question(&qname("tail"), TYPE_A),
                &edns,
                &[0xde, 0xad, 0xbe, 0xef],
            ]),
            Answered,
        ),
        // Header bits.
        case(
            "QR=1 on a valid query",
            with_flags(&valid, QR | RD),
            Dropped,
        ),
        case(
            "QR=1 with garbage after the header",
            concat(&[&header(QR, [1, 1, 1, 1]), &[0xff; 20]]),
            Dropped,
        ),
        case(
            "QR=1 and opcode 3",
            with_flags(&valid, QR | (3 << 11)),
            Dropped,
        ),
        case("opcode 1 (IQUERY)", with_flags(&valid, 1 << 11), NotImp),
        case("opcode 2 (STATUS)", with_flags(&valid, 2 << 11), NotImp),
        case(
            "opcode 4 (NOTIFY)",
            with_flags(&valid, (4 << 11) | RD),
            NotImp,
        ),
        case("opcode 5 (UPDATE)", with_flags(&valid, 5 << 11), NotImp),
        case(
            "opcode 15 with garbage after the header",
            concat(&[&header(15 << 11, [1, 0, 0, 0]), &[0xc0; 9]]),
            NotImp,
        ),
        case(
            "question without type and class",
            concat(&[&head([1, 0, 0, 0]), &[0]]),
            Formerr,
        ),
        case(
            "record cut inside its TTL",
            concat(&[&head([1, 0, 0, 1]), &q, &rr(&[0], TYPE_NULL, &[])[..6]]),
            Formerr,
        ),
    ]
}

/// A name under `zone` of exactly `total` bytes in wire format, made of
/// 63-byte labels and one shorter one.
fn name_of_length(total: usize, zone: &str) -> Vec<u8> {
    let zone = name(zone);
    let mut rest = total - zone.len();
    let mut labels = Vec::new();
    while rest > 64 + 1 {
        labels.push(63);
        rest -= 64;
    }
    assert!((2..=64).contains(&rest), "no label fits {rest} bytes");
    labels.push(rest - 1);
    let mut out = long_name(&labels);
    out.pop();
    out.extend(zone);
    assert_eq!(out.len(), total);
    out
}

fn with_flags(message: &[u8], flags: u16) -> Vec<u8> {
    let mut out = message.to_vec();
    out[2..4].copy_from_slice(&flags.to_be_bytes());
    out
}

// --- the client side: running the table --------------------------------------

/// getapr in front of a fake upstream that answers every query with
/// [`answer_addrs`], and the checks made after every case.
struct ClientSide {
    getapr: SocketAddr,
    upstream: FakeUpstream,
    _handle: getapr::daemon::Handle,
    /// Valid queries sent after the cases, and the slowest answer.
    probes: usize,
    slowest: Duration,
}

impl ClientSide {
    async fn start() -> ClientSide {
        let upstream =
            FakeUpstream::start(|q, _| vec![Action::Reply(a_reply(q, 300, &answer_addrs()))]).await;
        let (handle, getapr) = start_getapr(&config_toml(&[upstream.addr()], DNS_EXTRA)).await;
        ClientSide {
            getapr,
            upstream,
            _handle: handle,
            probes: 0,
            slowest: Duration::ZERO,
        }
    }

    /// A valid query for a fresh name (so it goes upstream) must be
    /// answered within [`PROMPT`], over a fresh socket or connection.
    async fn still_answering(&mut self, transport: Transport, ctx: &str) {
        self.probes += 1;
        let q = query(&format!("ok{}.probe.test", self.probes), RecordType::A).bytes();
        let started = Instant::now();
        let reply = match transport {
            Transport::Udp => udp_exchange(self.getapr, &q).await,
            Transport::Tcp => tcp_exchange(self.getapr, &q).await,
        };
        let took = started.elapsed();
        check_reply(
            &format!("valid query after {ctx}"),
            &q,
            &reply,
            Expect::Answered,
        );
        assert!(
            took <= PROMPT,
            "valid query after {ctx} answered after {took:?}"
        );
        self.slowest = self.slowest.max(took);
    }
}

/// Checks a reply against what the case expects of it.
fn check_reply(ctx: &str, query: &[u8], reply: &[u8], expect: Expect) {
    let m = Message::from_vec(reply)
        .unwrap_or_else(|e| panic!("{ctx}: undecodable reply ({e}): {reply:02x?}"));
    assert_eq!(Some(m.metadata.id), id_of(query), "{ctx}: reply ID");
    assert_eq!(m.metadata.message_type, MessageType::Response, "{ctx}");
    let rcode = m.metadata.response_code;
    match expect {
        Expect::Formerr => assert_eq!(rcode, ResponseCode::FormErr, "{ctx}: {m}"),
        Expect::NotImp => {
            assert_eq!(rcode, ResponseCode::NotImp, "{ctx}: {m}");
            assert_eq!(reply[2] & 0x78, query[2] & 0x78, "{ctx}: opcode not echoed");
        }
        Expect::BadVers => {
            // hickory names extended rcode 16 BADSIG; it is BADVERS in
            // answer to an OPT (RFC 6891 §9).
            assert_eq!(u16::from(rcode), 16, "{ctx}: {m}");
            let edns = m.edns.as_ref().unwrap_or_else(|| panic!("{ctx}: no OPT"));
            assert_eq!(edns.version(), 0, "{ctx}: we speak version 0");
        }
        Expect::Answered => {
            assert_eq!(rcode, ResponseCode::NoError, "{ctx}: {m}");
            assert!(!m.metadata.truncation, "{ctx}: truncated: {m}");
            assert_eq!(a_addrs(&m), answer_addrs(), "{ctx}: {m}");
            assert_eq!(question_bytes(reply), question_bytes(query), "{ctx}");
        }
        Expect::Dropped => panic!("{ctx}: expected no reply, got {m}"),
    }
}

/// Outcomes counted for the summary line.
#[derive(Debug, Default)]
struct Tally(BTreeMap<String, usize>);

impl Tally {
    fn count(&mut self, outcome: impl Into<String>) {
        *self.0.entry(outcome.into()).or_default() += 1;
    }

    fn total(&self) -> usize {
        self.0.values().sum()
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut by_count: Vec<_> = self.0.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let parts: Vec<String> = by_count.iter().map(|(k, n)| format!("{n} {k}")).collect();
        f.write_str(&parts.join(", "))
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn case_id(i: usize) -> u16 {
    0x4d00 + u16::try_from(i).expect("few cases")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_messages_over_udp() {
    let mut s = ClientSide::start().await;
    let mut tally = Tally::default();
    for (i, c) in client_cases("udp.malformed.test").into_iter().enumerate() {
        let ctx = format!("client/udp case {i} {:?}", c.name);
        let bytes = with_id(c.bytes, case_id(i));
        let forwarded = s.upstream.total_queries();
        let wait = if c.expect == Expect::Dropped {
            SILENCE
        } else {
            common::client::TIMEOUT
        };
        match (c.expect, udp_exchange_within(s.getapr, &bytes, wait).await) {
            (Expect::Dropped, None) => {}
            (_, None) => panic!("{ctx}: no reply within {wait:?}"),
            (expect, Some(reply)) => check_reply(&ctx, &bytes, &reply, expect),
        }
        if c.expect != Expect::Answered {
            assert_eq!(s.upstream.total_queries(), forwarded, "{ctx}: forwarded");
        }
        tally.count(c.expect.label());
        s.still_answering(Transport::Udp, &ctx).await;
    }
    println!(
        "malformed: client/udp {} cases: {tally}; a valid query after each answered within {} (max)",
        tally.total(),
        ms(s.slowest)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_messages_over_tcp() {
    let mut s = ClientSide::start().await;
    let mut tally = Tally::default();
    for (i, c) in client_cases("tcp.malformed.test").into_iter().enumerate() {
        let ctx = format!("client/tcp case {i} {:?}", c.name);
        let bytes = with_id(c.bytes, case_id(i));
        let forwarded = s.upstream.total_queries();
        let mut conn = TcpClient::connect(s.getapr).await;
        conn.send(&bytes).await;
        let short = bytes.len() < 12;
        let wait = if c.expect == Expect::Dropped {
            SILENCE
        } else {
            common::client::TIMEOUT
        };
        // Without a header the stream is not trusted any more: closed.
        let open = match (c.expect, conn.recv_within(wait).await) {
            (Expect::Dropped, TcpRecv::Closed) if short => false,
            (Expect::Dropped, TcpRecv::Timeout) if !short => true,
            (Expect::Dropped, got) => panic!(
                "{ctx}: expected {}, got {got:?}",
                if short {
                    "the connection closed"
                } else {
                    "no reply"
                }
            ),
            (expect, TcpRecv::Message(reply)) => {
                check_reply(&ctx, &bytes, &reply, expect);
                true
            }
            (_, got) => panic!("{ctx}: no reply: {got:?}"),
        };
        if c.expect != Expect::Answered {
            assert_eq!(s.upstream.total_queries(), forwarded, "{ctx}: forwarded");
        }
        if open {
            // The connection is still in step: the next message is read
            // where it starts.
            let next = query(&format!("next{i}.tcp.malformed.test"), RecordType::A).bytes();
            conn.send(&next).await;
            let reply = conn.recv().await;
            check_reply(
                &format!("{ctx}, next query"),
                &next,
                &reply,
                Expect::Answered,
            );
        }
        tally.count(c.expect.label());
        s.still_answering(Transport::Tcp, &ctx).await;
    }
    println!(
        "malformed: client/tcp {} cases: {tally} (dropped: under 12 bytes closes the connection, QR=1 keeps it in step); a valid query after each answered within {} (max)",
        tally.total(),
        ms(s.slowest)
    );
}

// --- the client side: TCP framing ------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_framing_abuse() {
    let mut s = ClientSide::start().await;
    let q = |label: &str, id: u16| {
        query(&format!("{label}.framing.malformed.test"), RecordType::A)
            .id(id)
            .bytes()
    };
    let valid = q("frame", 1);
    let framed = |m: &[u8]| {
        let len = u16::try_from(m.len()).expect("fits a frame");
        concat(&[&len.to_be_bytes(), m])
    };
    let mut tally = Tally::default();

    // Lengths below a header: the connection is closed, nothing answered.
    for (name, frame) in [
        ("length 0", vec![0, 0]),
        ("length 5", framed(&valid[..5])),
        ("length 11", framed(&valid[..11])),
    ] {
        let mut conn = TcpClient::connect(s.getapr).await;
        conn.send_raw(&frame).await;
        let got = conn.recv_within(common::client::TIMEOUT).await;
        assert!(matches!(got, TcpRecv::Closed), "{name}: {got:?}");
        tally.count("closed");
        s.still_answering(Transport::Tcp, name).await;
    }

    // A length beyond the bytes sent: the daemon waits for the rest (until
    // its idle timeout), answers nothing, and closes at our FIN.
    for (name, frame) in [
        (
            "length 100, 40 bytes sent",
            concat(&[&[0, 100], &valid[..40]]),
        ),
        (
            "length 65535, 12 bytes sent",
            concat(&[&[0xff, 0xff], &valid[..12]]),
        ),
    ] {
        let mut conn = TcpClient::connect(s.getapr).await;
        conn.send_raw(&frame).await;
        let got = conn.recv_within(SILENCE).await;
        assert!(matches!(got, TcpRecv::Timeout), "{name}: {got:?}");
        conn.shutdown().await;
        let got = conn.recv_within(common::client::TIMEOUT).await;
        assert!(matches!(got, TcpRecv::Closed), "{name}, after FIN: {got:?}");
        tally.count("waited, closed at FIN");
        s.still_answering(Transport::Tcp, name).await;
    }

    // Bytes after the message inside its frame are ignored (Unbound's
    // parse_packet does the same), up to the largest frame.
    for (name, message) in [
        (
            "7 bytes after the message",
            concat(&[&q("trail", 2), &[0xde; 7]]),
        ),
        ("padded to 65535 bytes", {
            let mut m = q("padded", 3);
            m.resize(65_535, 0xee);
            m
        }),
    ] {
        let mut conn = TcpClient::connect(s.getapr).await;
        conn.send(&message).await;
        check_reply(name, &message, &conn.recv().await, Expect::Answered);
        tally.count("answered");
        s.still_answering(Transport::Tcp, name).await;
    }

    // A stray byte after a frame: the frame is answered, and the half
    // length prefix ends with the connection at our FIN.
    {
        let name = "a stray byte after the frame";
        let mut conn = TcpClient::connect(s.getapr).await;
        conn.send_raw(&concat(&[&framed(&valid), &[0]])).await;
        check_reply(name, &valid, &conn.recv().await, Expect::Answered);
        conn.shutdown().await;
        let got = conn.recv_within(common::client::TIMEOUT).await;
        assert!(matches!(got, TcpRecv::Closed), "{name}, after FIN: {got:?}");
        tally.count("answered");
        s.still_answering(Transport::Tcp, name).await;
    }

    // One frame written a byte at a time, and two frames in one write.
    {
        let name = "one frame in 1-byte writes";
        let message = q("drip", 4);
        let mut conn = TcpClient::connect(s.getapr).await;
        for byte in framed(&message) {
            conn.send_raw(&[byte]).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        check_reply(name, &message, &conn.recv().await, Expect::Answered);
        tally.count("answered");
    }
    {
        let name = "two frames in one write";
        let (a, b) = (q("two-a", 5), q("two-b", 6));
        let mut conn = TcpClient::connect(s.getapr).await;
        conn.send_raw(&concat(&[&framed(&a), &framed(&b)])).await;
        let mut got: Vec<Vec<u8>> = vec![conn.recv().await, conn.recv().await];
        got.sort_by_key(|r| id_of(r));
        check_reply(name, &a, &got[0], Expect::Answered);
        check_reply(name, &b, &got[1], Expect::Answered);
        tally.count("answered");
    }

    // 100 queries pipelined in one write: 100 answers, each once.
    let pipelined = 100;
    {
        let queries: Vec<Vec<u8>> = (0..pipelined)
            .map(|i| q(&format!("p{i}"), 0x6000 + i))
            .collect();
        let mut conn = TcpClient::connect(s.getapr).await;
        let all: Vec<u8> = queries.iter().flat_map(|m| framed(m)).collect();
        conn.send_raw(&all).await;
        let mut seen = HashSet::new();
        for _ in 0..pipelined {
            let reply = conn.recv().await;
            let id = id_of(&reply).expect("a reply has an ID");
            let i = usize::from(id.wrapping_sub(0x6000));
            let sent = queries
                .get(i)
                .unwrap_or_else(|| panic!("reply to no query: ID {id:#x}"));
            check_reply("pipelined", sent, &reply, Expect::Answered);
            assert!(seen.insert(id), "two replies to ID {id:#x}");
        }
        tally.count("answered");
    }
    println!(
        "malformed: client/tcp framing {} cases: {tally} ({pipelined} pipelined queries: {pipelined} answers); a valid query after each answered within {} (max)",
        tally.total(),
        ms(s.slowest)
    );
}

// --- the client side: random packets ---------------------------------------

/// Seeded, so a failure can be replayed: a third fully random bytes, a third
/// a query header (QR=0, QUERY, QDCOUNT 1) and random bytes, a third a valid
/// query with 1 to 4 bytes changed (never the ID).
fn random_packets(seed: u64, n: usize, zone: &str) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let valid = query(&format!("random.{zone}"), RecordType::A).bytes();
    (0..n)
        .map(|i| {
            let mut p: Vec<u8> = match i % 3 {
                0 => {
                    let len = rng.random_range(0..64);
                    (0..len).map(|_| rng.random()).collect()
                }
                1 => {
                    let counts = [
                        1,
                        rng.random_range(0..3),
                        rng.random_range(0..3),
                        rng.random_range(0..3),
                    ];
                    let len = rng.random_range(0..80);
                    concat(&[
                        &header(RD, counts),
                        &(0..len).map(|_| rng.random()).collect::<Vec<u8>>(),
                    ])
                }
                _ => {
                    let mut m = valid.clone();
                    for _ in 0..rng.random_range(1..=4) {
                        let at = rng.random_range(2..m.len());
                        m[at] = rng.random();
                    }
                    m
                }
            };
            p = with_id(p, 0x5200 + u16::try_from(i).expect("few packets"));
            p
        })
        .collect()
}

/// Under 12 bytes or QR=1: no answer may come.
fn must_drop(packet: &[u8]) -> bool {
    packet.len() < 12 || packet[2] & 0x80 != 0
}

/// The rcode's mnemonic as the RFCs spell it (hickory says BADSIG for 16,
/// which is BADVERS in answer to an OPT).
fn rcode_label(reply: &[u8]) -> String {
    match u16::from(parse(reply).metadata.response_code) {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        16 => "BADVERS".into(),
        other => format!("rcode {other}"),
    }
}

const SEED: u64 = 0x6765_7461_7072;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_client_packets() {
    let mut s = ClientSide::start().await;
    let mut udp = Tally::default();
    let packets = random_packets(SEED, 300, "udp.random.test");
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    socket.connect(s.getapr).await.expect("connect");
    let mut buf = vec![0; 65_535];
    for (i, p) in packets.iter().enumerate() {
        let ctx = format!("random UDP packet {i} (seed {SEED:#x}): {p:02x?}");
        socket.send(p).await.expect("send");
        if must_drop(p) {
            udp.count("dropped");
            continue;
        }
        // Replies to earlier packets were all taken, so this one is next.
        let n = tokio::time::timeout(common::client::TIMEOUT, socket.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{ctx}: no reply"))
            .expect("receive");
        let reply = &buf[..n];
        assert_eq!(
            id_of(reply),
            id_of(p),
            "{ctx}: a reply to another packet (a dropped one?)"
        );
        assert_eq!(
            parse(reply).metadata.message_type,
            MessageType::Response,
            "{ctx}"
        );
        udp.count(rcode_label(reply));
    }
    let stray = tokio::time::timeout(SILENCE, socket.recv(&mut buf)).await;
    assert!(
        stray.is_err(),
        "a reply to a dropped packet: {:02x?}",
        &buf[..12]
    );
    s.still_answering(Transport::Udp, "random UDP packets")
        .await;

    let mut tcp = Tally::default();
    let sentinel = query("sentinel.tcp.random.test", RecordType::A)
        .id(0xfeed)
        .bytes();
    for (i, p) in random_packets(SEED + 1, 90, "tcp.random.test")
        .iter()
        .enumerate()
    {
        let ctx = format!("random TCP packet {i} (seed {:#x}): {p:02x?}", SEED + 1);
        let mut conn = TcpClient::connect(s.getapr).await;
        conn.send(p).await;
        if p.len() < 12 {
            let got = conn.recv_within(common::client::TIMEOUT).await;
            assert!(matches!(got, TcpRecv::Closed), "{ctx}: {got:?}");
            tcp.count("dropped");
        } else if must_drop(p) {
            // Whatever comes first must be the answer to what follows.
            conn.send(&sentinel).await;
            check_reply(&ctx, &sentinel, &conn.recv().await, Expect::Answered);
            tcp.count("dropped");
        } else {
            let reply = conn.recv().await;
            assert_eq!(id_of(&reply), id_of(p), "{ctx}");
            assert_eq!(
                parse(&reply).metadata.message_type,
                MessageType::Response,
                "{ctx}"
            );
            tcp.count(rcode_label(&reply));
        }
    }
    s.still_answering(Transport::Tcp, "random TCP packets")
        .await;
    println!(
        "malformed: client/random udp {} packets: {udp}; tcp {} packets: {tcp}; every reply well-formed, to its own packet",
        udp.total(),
        tcp.total()
    );
}

// --- the upstream side -------------------------------------------------------

/// The address of the valid answer, and of what no client may ever see.
const VALID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const POISON: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 66);

/// What the daemon must make of a bad reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Not a reply to the query: the wait goes on to the valid one.
    Ignored,
    /// Well-formed, relayed as it is (see the module doc).
    CnameLoop,
    /// Well-formed but larger than asked for: kept, fitted to each client.
    Oversize,
}

struct UpstreamCase {
    name: &'static str,
    /// What the fake sends before the valid reply.
    bad: fn(&Message) -> Vec<Action>,
    verdict: Verdict,
}

fn ignored(name: &'static str, bad: fn(&Message) -> Vec<Action>) -> UpstreamCase {
    UpstreamCase {
        name,
        bad,
        verdict: Verdict::Ignored,
    }
}

fn raw(bytes: Vec<u8>) -> Vec<Action> {
    vec![Action::Raw(bytes)]
}

/// The question of `q` as it came (name case kept).
fn question_of(q: &Message) -> Vec<u8> {
    question_bytes(&q.to_vec().expect("encode query")).to_vec()
}

/// A reply header to `q` (its ID; QR, RD, RA and `flags`).
fn reply_head(q: &Message, flags: u16, counts: [u16; 4]) -> Vec<u8> {
    with_id(header(QR | RD | RA | flags, counts), q.metadata.id)
}

/// A reply to `q`: header, its question, then `records` as they are.
fn reply_raw(q: &Message, counts: [u16; 4], records: &[&[u8]]) -> Vec<u8> {
    let mut out = concat(&[&reply_head(q, 0, counts), &question_of(q)]);
    for r in records {
        out.extend_from_slice(r);
    }
    out
}

/// A well-formed reply to `q` with the poisoned address.
fn poison(q: &Message) -> Message {
    a_reply(q, 300, &[POISON])
}

fn poison_bytes(q: &Message) -> Vec<u8> {
    poison(q).to_vec().expect("encode")
}

/// The poisoned A record, owned by a pointer to the question.
fn poison_a() -> Vec<u8> {
    rr(&pointer(12), TYPE_A, &POISON.octets())
}

/// Where the first record of a reply to `q` starts.
fn records_at(q: &Message) -> usize {
    12 + question_of(q).len()
}

fn renamed(q: &Message, name: &str) -> Vec<Action> {
    let mut m = poison(q);
    m.queries[0].set_name(Name::from_ascii(name).expect("name"));
    vec![Action::Reply(m)]
}

/// The cases. Every bad reply carries [`POISON`] where it carries an
/// address, so taking one shows in the answer.
fn upstream_cases() -> Vec<UpstreamCase> {
    vec![
        ignored("empty datagram", |_| raw(Vec::new())),
        ignored("1 byte", |q| raw(poison_bytes(q)[..1].to_vec())),
        ignored("11 bytes of a reply", |q| {
            raw(poison_bytes(q)[..11].to_vec())
        }),
        ignored("header only, QDCOUNT 0", |q| raw(reply_head(q, 0, [0; 4]))),
        ignored(
            "header only, counts claiming a question and an answer",
            |q| raw(reply_head(q, 0, [1, 1, 0, 0])),
        ),
        ignored("QR=0", |q| {
            let mut b = poison_bytes(q);
            b[2] &= 0x7f;
            raw(b)
        }),
        ignored("wrong ID", |q| vec![Action::ReplyWithWrongId(poison(q))]),
        ignored("another question name", |q| {
            renamed(q, "other.upstream.test.")
        }),
        ignored("the question in another case", |q| {
            renamed(q, &q.queries[0].name().to_ascii().to_uppercase())
        }),
        ignored("another question type", |q| {
            let mut m = poison(q);
            m.queries[0].set_query_type(RecordType::AAAA);
            vec![Action::Reply(m)]
        }),
        ignored("opcode NOTIFY", |q| {
            let mut b = poison_bytes(q);
            b[2] |= 4 << 3;
            raw(b)
        }),
        ignored("from another port", |q| {
            vec![Action::ReplyFromOtherPort(poison(q))]
        }),
        ignored("from another address (127.0.0.2)", |q| {
            vec![Action::ReplyFromAddress(
                Ipv4Addr::new(127, 0, 0, 2).into(),
                poison(q),
            )]
        }),
        ignored("ANCOUNT 2, one answer", |q| {
            raw(reply_raw(q, [1, 2, 0, 0], &[&poison_a()]))
        }),
        // 10,000 records cannot fit in a message (65,535 bytes at most; a
        // UDP datagram on loopback takes 65,507): the count claims 10,000
        // and the 4,000 that fit follow.
        ignored("ANCOUNT 10,000, the 4,000 records that fit", |q| {
            let records = poison_a().repeat(4000);
            raw(reply_raw(q, [1, 10_000, 0, 0], &[&records]))
        }),
        ignored("answer owner: pointer to itself", |q| {
            let own = rr(&pointer(records_at(q)), TYPE_A, &POISON.octets());
            raw(reply_raw(q, [1, 1, 0, 0], &[&own]))
        }),
        ignored("answer owner: forward pointer", |q| {
            // To the "x." in the RDATA of the record after it.
            let ahead = records_at(q) + 16 + 11;
            let a = rr(&pointer(ahead), TYPE_A, &POISON.octets());
            raw(reply_raw(
                q,
                [1, 2, 0, 0],
                &[&a, &rr(&[0], TYPE_NULL, &name("x"))],
            ))
        }),
        ignored("answer owner: pointer past the end", |q| {
            let a = rr(&pointer(0x3fff), TYPE_A, &POISON.octets());
            raw(reply_raw(q, [1, 1, 0, 0], &[&a]))
        }),
        ignored("answer owner: 129 pointer hops", |q| {
            raw(pointer_chain(
                &reply_raw(q, [1, 2, 0, 0], &[]),
                128,
                TYPE_A,
                &POISON.octets(),
            ))
        }),
        ignored("answer owner: label type 0x40", |q| {
            let a = rr(&[0x40, b'a', 0], TYPE_A, &POISON.octets());
            raw(reply_raw(q, [1, 1, 0, 0], &[&a]))
        }),
        ignored("answer owner: label type 0x80", |q| {
            let a = rr(&[0x80, b'a', 0], TYPE_A, &POISON.octets());
            raw(reply_raw(q, [1, 1, 0, 0], &[&a]))
        }),
        ignored("answer owner of 320 bytes", |q| {
            let a = rr(&long_name(&[63; 5]), TYPE_A, &POISON.octets());
            raw(reply_raw(q, [1, 1, 0, 0], &[&a]))
        }),
        ignored("RDLENGTH past the end", |q| {
            let cut = rr_claiming(&pointer(12), TYPE_NULL, 40, &[1, 2, 3, 4]);
            raw(reply_raw(q, [1, 2, 0, 0], &[&poison_a(), &cut]))
        }),
        ignored("A record of 3 bytes", |q| {
            let a = rr(&pointer(12), TYPE_A, &POISON.octets()[..3]);
            raw(reply_raw(q, [1, 1, 0, 0], &[&a]))
        }),
        ignored("AAAA record of 15 bytes", |q| {
            let aaaa = rr(&pointer(12), TYPE_AAAA, &[0x20; 15]);
            raw(reply_raw(q, [1, 2, 0, 0], &[&poison_a(), &aaaa]))
        }),
        ignored("two OPT records", |q| {
            raw(reply_raw(
                q,
                [1, 1, 0, 2],
                &[&poison_a(), &opt(1232, 0), &opt(1232, 0)],
            ))
        }),
        ignored("OPT owned by a name, not the root", |q| {
            let owned = opt_owned(&name("x"), 1232, 0, &[]);
            raw(reply_raw(q, [1, 1, 0, 1], &[&poison_a(), &owned]))
        }),
        ignored("OPT in the answer section", |q| {
            raw(reply_raw(q, [1, 2, 0, 0], &[&poison_a(), &opt(1232, 0)]))
        }),
        ignored("EDNS option running past the OPT record", |q| {
            raw(reply_raw(q, [1, 1, 0, 1], &[&poison_a(), &opt_overrun()]))
        }),
        ignored("CNAME target running past its RDATA", |q| {
            let cname = rr(&pointer(12), TYPE_CNAME, &[1, b'b']);
            raw(reply_raw(q, [1, 2, 0, 0], &[&cname, &poison_a()]))
        }),
        ignored("question name cut short", |q| {
            raw(concat(&[
                &reply_head(q, 0, [1, 0, 0, 0]),
                &question_of(q)[..5],
            ]))
        }),
        ignored("every proper prefix of a reply", |q| {
            let full = poison_bytes(q);
            (0..full.len())
                .map(|n| Action::Raw(full[..n].to_vec()))
                .collect()
        }),
        ignored("64 random datagrams, half with the ID and QR=1", |q| {
            let mut rng = StdRng::seed_from_u64(SEED);
            (0..64)
                .map(|i| {
                    let len = rng.random_range(0..200);
                    let mut p: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                    if i % 2 == 1 && p.len() >= 3 {
                        p = with_id(p, q.metadata.id);
                        p[2] |= 0x80;
                    }
                    Action::Raw(p)
                })
                .collect()
        }),
        UpstreamCase {
            name: "CNAME loop",
            bad: |q| {
                let owner = q.queries[0].name().clone();
                let other = Name::from_ascii("loop.upstream.test.").expect("name");
                let mut m = reply_to(q);
                m.add_answer(Record::from_rdata(
                    owner.clone(),
                    300,
                    RData::CNAME(CNAME(other.clone())),
                ));
                m.add_answer(Record::from_rdata(other, 300, RData::CNAME(CNAME(owner))));
                vec![Action::Reply(m)]
            },
            verdict: Verdict::CnameLoop,
        },
        UpstreamCase {
            name: "3 kB without TC to a query offering 1232",
            bad: |q| vec![Action::Reply(a_reply(q, 300, &oversize_addrs()))],
            verdict: Verdict::Oversize,
        },
    ]
}

/// 200 addresses: about 3.3 kB of answer.
fn oversize_addrs() -> Vec<Ipv4Addr> {
    (0..200u8).map(|i| Ipv4Addr::new(203, 0, 113, i)).collect()
}

/// The fake's script: for `u<i>.<side>.upstream.test`, case `i`'s bad
/// reply, then the valid one after [`DELAY`]; on the TCP side only after a
/// TC reply over UDP. Any other name gets the valid reply at once.
fn upstream_script(
    cases: Arc<Vec<UpstreamCase>>,
) -> impl Fn(&Message, Transport) -> Vec<Action> + Send + Sync + 'static {
    move |q, transport| {
        let valid = Action::Reply(a_reply(q, 300, &[VALID]));
        let name = q.queries[0].name().to_ascii();
        let mut labels = name.split('.');
        let case = labels
            .next()
            .and_then(|l| l.strip_prefix('u')?.parse::<usize>().ok());
        let Some(case) = case.and_then(|i| cases.get(i)) else {
            return vec![valid];
        };
        if labels.next() == Some("tcp") && transport == Transport::Udp {
            let mut tc = reply_to(q);
            tc.metadata.truncation = true;
            return vec![Action::Reply(tc)];
        }
        let mut actions = (case.bad)(q);
        actions.extend([Action::Delay(DELAY), valid]);
        actions
    }
}

fn queries_for(fake: &FakeUpstream, name: &str) -> usize {
    let name = Name::from_ascii(name).expect("name");
    fake.received_messages()
        .iter()
        .filter(|m| m.queries.first().is_some_and(|q| *q.name() == name))
        .count()
}

/// Runs every upstream case with the daemon reaching the fake over `side`.
async fn upstream_replies(side: Transport) {
    let side_label = match side {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    };
    let cases = Arc::new(upstream_cases());
    let fake = FakeUpstream::start(upstream_script(Arc::clone(&cases))).await;
    let (_handle, getapr) = start_getapr(&config_toml(&[fake.addr()], DNS_EXTRA)).await;
    let (mut waits, mut slowest_next) = (Vec::new(), Duration::ZERO);
    let mut relayed = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let ctx = format!("upstream/{side_label} case {i} {:?}", c.name);
        let qname = format!("u{i}.{side_label}.upstream.test.");
        let q = query(&qname, RecordType::A).bytes();
        let started = Instant::now();
        let first = parse(&udp_exchange(getapr, &q).await);
        let took = started.elapsed();
        // Asked again (over TCP, so nothing is truncated): from the cache.
        let asked = queries_for(&fake, &qname);
        let again = parse(&tcp_exchange(getapr, &q).await);
        assert_eq!(
            queries_for(&fake, &qname),
            asked,
            "{ctx}: not answered from the cache"
        );
        match c.verdict {
            Verdict::Ignored => {
                assert_eq!(
                    first.metadata.response_code,
                    ResponseCode::NoError,
                    "{ctx}: {first}"
                );
                assert_eq!(
                    a_addrs(&first),
                    [VALID],
                    "{ctx}: not the valid answer: {first}"
                );
                assert!(
                    took >= DELAY,
                    "{ctx}: answered after {took:?}, before the valid reply was sent"
                );
                assert_eq!(
                    a_addrs(&again),
                    [VALID],
                    "{ctx}: a bad reply was cached: {again}"
                );
                waits.push(took);
            }
            Verdict::CnameLoop => {
                assert_eq!(
                    first.metadata.response_code,
                    ResponseCode::NoError,
                    "{ctx}: {first}"
                );
                let cnames = |m: &Message| {
                    m.answers
                        .iter()
                        .filter(|r| r.record_type() == RecordType::CNAME)
                        .count()
                };
                assert_eq!(
                    (cnames(&first), first.answers.len()),
                    (2, 2),
                    "{ctx}: {first}"
                );
                assert_eq!(again.answers, first.answers, "{ctx}");
                relayed.push("CNAME loop relayed");
            }
            Verdict::Oversize => {
                assert!(
                    first.metadata.truncation && first.answers.is_empty(),
                    "{ctx}: not truncated for a 1232-byte client: {first}"
                );
                assert_eq!(
                    a_addrs(&again),
                    oversize_addrs(),
                    "{ctx}: not whole over TCP"
                );
                relayed.push("oversize kept: TC over UDP, whole over TCP");
            }
        }
        let next = query(&format!("ok{i}.{side_label}.upstream.test"), RecordType::A).bytes();
        let started = Instant::now();
        let reply = parse(&udp_exchange(getapr, &next).await);
        let took = started.elapsed();
        assert_eq!(
            a_addrs(&reply),
            [VALID],
            "next valid query after {ctx}: {reply}"
        );
        assert!(
            took <= PROMPT,
            "next valid query after {ctx} answered after {took:?}"
        );
        slowest_next = slowest_next.max(took);
    }
    let min = waits.iter().min().copied().unwrap_or_default();
    let max = waits.iter().max().copied().unwrap_or_default();
    println!(
        "malformed: upstream/{side_label} {} cases: {} ignored, the valid answer after {}..{} (valid reply sent {} after the bad), 0 bad cached; {}; the next valid query answered within {} (max)",
        cases.len(),
        waits.len(),
        ms(min),
        ms(max),
        ms(DELAY),
        relayed.join(", "),
        ms(slowest_next)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_replies_over_udp() {
    upstream_replies(Transport::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_replies_over_tcp() {
    upstream_replies(Transport::Tcp).await;
}
