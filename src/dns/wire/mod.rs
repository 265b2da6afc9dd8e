//! Views over DNS wire bytes and the few in-place edits the stub needs.
//!
//! Everything here is total: any byte string yields `Ok` or `Err`, never a
//! panic (every index goes through `get`, and the fuzz target in `fuzz/`
//! holds us to it). Nothing is re-encoded: a reply is forwarded and cached as
//! the upstream's bytes, and the edits (ID, question case, TTL decrement, OPT
//! removal, A/AAAA slot swaps) patch fixed-size fields or cut a tail.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

pub const HEADER_LEN: usize = 12;
/// RFC 1035 §4.2.1: the UDP payload a client without EDNS can take.
pub const CLASSIC_UDP_SIZE: usize = 512;

/// Header flag bits (RFC 1035 §4.1.1, RFC 4035 §3.2).
pub mod flag {
    pub const QR: u16 = 0x8000;
    pub const OPCODE: u16 = 0x7800;
    pub const AA: u16 = 0x0400;
    pub const TC: u16 = 0x0200;
    pub const RD: u16 = 0x0100;
    pub const RA: u16 = 0x0080;
    pub const AD: u16 = 0x0020;
    pub const CD: u16 = 0x0010;
    pub const RCODE: u16 = 0x000f;
}

/// Record types the stub looks at.
pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const MX: u16 = 15;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const OPT: u16 = 41;
    pub const RRSIG: u16 = 46;
    pub const SVCB: u16 = 64;
    pub const HTTPS: u16 = 65;
}

pub mod rcode {
    pub const NOERROR: u16 = 0;
    pub const FORMERR: u16 = 1;
    pub const SERVFAIL: u16 = 2;
    pub const NXDOMAIN: u16 = 3;
    pub const NOTIMP: u16 = 4;
    pub const REFUSED: u16 = 5;
    /// RFC 6891 §9: extended rcode 16, carried as 1 in the OPT TTL's top byte.
    pub const BADVERS: u16 = 16;
}

/// EDNS option codes stripped from forwarded queries: a client's cookie is
/// meaningless to the upstream (RFC 7873 §5.1: cookies are per
/// client/server pair) and its subnet must not leak past the stub.
const OPT_ECS: u16 = 8;
const OPT_COOKIE: u16 = 10;

pub const CLASS_IN: u16 = 1;
/// RFC 1035 §3.1 limits; hops bound pointer chasing (each hop must also go
/// strictly backwards, so loops are impossible anyway).
const MAX_LABEL: usize = 63;
const MAX_NAME: usize = 255;
const MAX_HOPS: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("message shorter than its header")]
    ShortHeader,
    #[error("message ends inside a field")]
    Truncated,
    #[error("bad domain name")]
    BadName,
    #[error("question count is not 1")]
    QuestionCount,
    #[error("more than one OPT record")]
    DuplicateOpt,
    #[error("OPT record not at the root or not in the additional section")]
    MisplacedOpt,
    #[error("EDNS options do not fill the OPT record exactly")]
    BadOption,
    #[error("address record with a wrong RDATA length")]
    BadAddress,
    #[error("not a reply")]
    NotReply,
    #[error("longer than a DNS message can be (65535 bytes)")]
    TooLong,
}

/// The fixed 12-byte header (all zeros by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    pub fn parse(msg: &[u8]) -> Option<Header> {
        Some(Header {
            id: be16(msg, 0)?,
            flags: be16(msg, 2)?,
            qdcount: be16(msg, 4)?,
            ancount: be16(msg, 6)?,
            nscount: be16(msg, 8)?,
            arcount: be16(msg, 10)?,
        })
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        for v in [
            self.id,
            self.flags,
            self.qdcount,
            self.ancount,
            self.nscount,
            self.arcount,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }

    pub fn qr(&self) -> bool {
        self.flags & flag::QR != 0
    }
    pub fn opcode(&self) -> u8 {
        ((self.flags & flag::OPCODE) >> 11) as u8
    }
    pub fn tc(&self) -> bool {
        self.flags & flag::TC != 0
    }
    pub fn rd(&self) -> bool {
        self.flags & flag::RD != 0
    }
    pub fn cd(&self) -> bool {
        self.flags & flag::CD != 0
    }
    pub fn rcode(&self) -> u16 {
        self.flags & flag::RCODE
    }
}

/// The EDNS OPT pseudo-record (RFC 6891 §6.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    pub ext_rcode: u8,
    pub version: u8,
    pub do_bit: bool,
    /// The whole record, name byte to end of RDATA.
    pub record: Range<usize>,
    pub options: Range<usize>,
    /// How many additional records precede it.
    pub index_in_additional: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Answer,
    Authority,
    Additional,
}

/// One resource record located in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub section: Section,
    pub name: usize,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    /// Offset of the TTL field; TTL, RDLENGTH and RDATA follow contiguously.
    pub ttl_at: usize,
    pub rdata: Range<usize>,
}

/// A message's question and records, located but not copied.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub bytes: &'a [u8],
    pub header: Header,
    /// The question entry (name, type, class): `HEADER_LEN..question_end`,
    /// or empty when QDCOUNT is 0.
    pub question_end: usize,
    pub records: Vec<Record>,
    pub edns: Option<Edns>,
    /// End of the last record; bytes after it are ignored.
    pub end: usize,
}

impl<'a> Message<'a> {
    /// Locates every field. Rejects what a stub must not pass on: lying
    /// counts, bad names, more than one question, OPT misuse, A/AAAA with a
    /// wrong length.
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, Error> {
        let header = Header::parse(bytes).ok_or(Error::ShortHeader)?;
        if header.qdcount > 1 {
            return Err(Error::QuestionCount);
        }
        let mut off = HEADER_LEN;
        if header.qdcount == 1 {
            // A question name can only be uncompressed: nothing precedes it
            // that a pointer could reference.
            off = plain_name_end(bytes, off)?;
            off = off.checked_add(4).ok_or(Error::Truncated)?;
            if off > bytes.len() {
                return Err(Error::Truncated);
            }
        }
        let question_end = off;
        let total =
            usize::from(header.ancount) + usize::from(header.nscount) + usize::from(header.arcount);
        // Each record needs at least 11 bytes: refuse lying counts before
        // allocating for them.
        if total > bytes.len().saturating_sub(off) / 11 {
            return Err(Error::Truncated);
        }
        let mut records = Vec::with_capacity(total);
        let mut edns = None;
        for i in 0..total {
            let section = if i < usize::from(header.ancount) {
                Section::Answer
            } else if i < usize::from(header.ancount) + usize::from(header.nscount) {
                Section::Authority
            } else {
                Section::Additional
            };
            let name = off;
            off = name_end(bytes, off)?;
            let rtype = be16(bytes, off).ok_or(Error::Truncated)?;
            let class = be16(bytes, off + 2).ok_or(Error::Truncated)?;
            let ttl = be32(bytes, off + 4).ok_or(Error::Truncated)?;
            let rdlen = usize::from(be16(bytes, off + 8).ok_or(Error::Truncated)?);
            let rdata = off + 10..off + 10 + rdlen;
            if rdata.end > bytes.len() {
                return Err(Error::Truncated);
            }
            if class == CLASS_IN
                && ((rtype == rtype::A && rdlen != 4) || (rtype == rtype::AAAA && rdlen != 16))
            {
                return Err(Error::BadAddress);
            }
            if rtype == rtype::OPT {
                if section != Section::Additional || bytes.get(name) != Some(&0) {
                    return Err(Error::MisplacedOpt);
                }
                if edns.is_some() {
                    return Err(Error::DuplicateOpt);
                }
                if !options_fit(bytes.get(rdata.clone()).unwrap_or(&[])) {
                    return Err(Error::BadOption);
                }
                let first_additional = usize::from(header.ancount) + usize::from(header.nscount);
                edns = Some(Edns {
                    udp_size: class,
                    ext_rcode: (ttl >> 24) as u8,
                    version: (ttl >> 16) as u8,
                    do_bit: ttl & 0x8000 != 0,
                    record: name..rdata.end,
                    options: rdata.clone(),
                    // Bounded by arcount, a u16.
                    index_in_additional: (i - first_additional) as u16,
                });
            }
            records.push(Record {
                section,
                name,
                rtype,
                class,
                ttl,
                ttl_at: off + 4,
                rdata: rdata.clone(),
            });
            off = rdata.end;
        }
        Ok(Message {
            bytes,
            header,
            question_end,
            records,
            edns,
            end: off,
        })
    }

    /// The question entry's bytes (name, type, class), empty without one.
    pub fn question(&self) -> &'a [u8] {
        self.bytes.get(HEADER_LEN..self.question_end).unwrap_or(&[])
    }

    /// The question's name, type and class.
    pub fn question_parts(&self) -> Option<(&'a [u8], u16, u16)> {
        let q = self.question();
        let split = q.len().checked_sub(4)?;
        let (name, tail) = q.split_at(split);
        Some((name, be16(tail, 0)?, be16(tail, 2)?))
    }

    /// The 12-bit rcode: header bits plus the OPT extension (RFC 6891 §6.1.3).
    pub fn rcode(&self) -> u16 {
        let ext = self.edns.as_ref().map_or(0, |e| u16::from(e.ext_rcode));
        (ext << 4) | self.header.rcode()
    }
}

/// What a client asked, as the server and the upstream need it.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub msg: Message<'a>,
}

impl<'a> Query<'a> {
    /// Parses a client query: exactly one question, QR clear.
    pub fn parse(bytes: &'a [u8]) -> Result<Query<'a>, Error> {
        let msg = Message::parse(bytes)?;
        if msg.header.qdcount != 1 {
            return Err(Error::QuestionCount);
        }
        Ok(Query { msg })
    }

    pub fn header(&self) -> Header {
        self.msg.header
    }

    pub fn question(&self) -> &'a [u8] {
        self.msg.question()
    }

    /// Name, type, class. Always present: parse required one question.
    pub fn parts(&self) -> (&'a [u8], u16, u16) {
        self.msg.question_parts().unwrap_or((&[0], 0, 0))
    }

    pub fn edns(&self) -> Option<&Edns> {
        self.msg.edns.as_ref()
    }

    pub fn do_bit(&self) -> bool {
        self.edns().is_some_and(|e| e.do_bit)
    }

    /// The client's reply shape: its ID, RD bit, question bytes and EDNS.
    /// `udp_cap` caps the size an EDNS client may ask for; `None` for TCP.
    pub fn shape(&self, udp_cap: Option<u16>) -> Shape<'a> {
        let edns = self.edns().map(|e| ClientEdns {
            do_bit: e.do_bit,
            udp_size: e.udp_size,
        });
        let limit = udp_cap.map(|cap| match &edns {
            // RFC 6891 §6.2.5: values below 512 are treated as 512.
            Some(e) => usize::from(e.udp_size.max(512).min(cap.max(512))),
            None => CLASSIC_UDP_SIZE,
        });
        Shape {
            id: self.header().id,
            rd: self.header().rd(),
            question: self.question(),
            edns,
            limit,
            advertise: udp_cap.unwrap_or(1232).max(512),
        }
    }

    /// The query to send upstream: a fresh ID, the client's flags and
    /// question byte for byte, and its OPT minus cookie and client-subnet
    /// options. Other records of the query are not forwarded.
    pub fn forward(&self, id: u16, out: &mut Vec<u8>) {
        out.clear();
        let h = self.header();
        Header {
            id,
            flags: h.flags & !flag::QR,
            qdcount: 1,
            ancount: 0,
            nscount: 0,
            arcount: u16::from(self.edns().is_some()),
        }
        .write(out);
        out.extend_from_slice(self.question());
        if let Some(e) = self.edns() {
            let bytes = self.msg.bytes;
            // Name (root), type, class, TTL: the 9 bytes before RDLENGTH.
            let fixed = bytes.get(e.record.start..e.record.start + 9).unwrap_or(&[]);
            out.extend_from_slice(fixed);
            let len_at = out.len();
            out.extend_from_slice(&[0, 0]);
            let mut opts = bytes.get(e.options.clone()).unwrap_or(&[]);
            while let (Some(code), Some(len)) = (be16(opts, 0), be16(opts, 2)) {
                let end = (4 + usize::from(len)).min(opts.len());
                if code != OPT_COOKIE && code != OPT_ECS {
                    out.extend_from_slice(&opts[..end]);
                }
                opts = &opts[end..];
            }
            let rdlen = (out.len() - len_at - 2) as u16;
            out[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
        }
    }
}

/// The client side of an exchange, which every reply is fitted to.
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    pub id: u16,
    pub rd: bool,
    /// The client's question entry, case preserved.
    pub question: &'a [u8],
    pub edns: Option<ClientEdns>,
    /// Largest reply the client takes over UDP; `None` over TCP.
    pub limit: Option<usize>,
    /// Our UDP payload size, advertised in OPT records we write.
    pub advertise: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientEdns {
    pub do_bit: bool,
    pub udp_size: u16,
}

/// EDNS option code of Extended DNS Errors (RFC 8914 §2).
pub const OPTION_EDE: u16 = 15;
/// EDE INFO-CODE 3, "Stale Answer" (RFC 8914 §4.4).
pub const EDE_STALE_ANSWER: u16 = 3;

/// `bytes` (a whole message, whose OPT record is at `opt` as
/// [`Reply`] keeps it) with one more EDNS option: appended to the OPT record
/// when it is the message's last record, or in a fresh OPT when there is
/// none. `None` when the OPT is followed by other records (editing it would
/// move them) or the message would grow past 65535 bytes.
pub(crate) fn with_option(
    bytes: &[u8],
    opt: Option<(u16, u16)>,
    code: u16,
    value: &[u8],
) -> Option<Vec<u8>> {
    let header = Header::parse(bytes)?;
    let mut out = bytes.to_vec();
    let option_len = u16::try_from(value.len()).ok()?;
    match opt {
        Some((start, before)) => {
            if before.checked_add(1)? != header.arcount {
                return None;
            }
            // Name (1 byte: the root), type, class, TTL, then RDLENGTH.
            let rdlen_at = usize::from(start) + 9;
            let rdlen = u16::from_be_bytes([*out.get(rdlen_at)?, *out.get(rdlen_at + 1)?]);
            let rdlen = rdlen.checked_add(4)?.checked_add(option_len)?;
            out[rdlen_at..rdlen_at + 2].copy_from_slice(&rdlen.to_be_bytes());
        }
        None => {
            out.push(0);
            out.extend_from_slice(&rtype::OPT.to_be_bytes());
            out.extend_from_slice(&1232u16.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0]);
            out.extend_from_slice(&option_len.checked_add(4)?.to_be_bytes());
            let arcount = header.arcount.checked_add(1)?;
            out[10..12].copy_from_slice(&arcount.to_be_bytes());
        }
    }
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&option_len.to_be_bytes());
    out.extend_from_slice(value);
    (out.len() <= usize::from(u16::MAX)).then_some(out)
}

/// A validated upstream reply, kept as its bytes plus the offsets needed to
/// fit it to any client: this is both the cache entry and the fresh answer.
///
/// Every cached answer is one of these, so it is kept small: one
/// allocation holds the message and, after it, the offset of every TTL
/// field but OPT's (`u16` big-endian each: a DNS message is at most 65535
/// bytes), and the offsets beside it are `u16` too. That is 32 bytes here
/// plus the message and 2 bytes a record, where separate `usize` fields and
/// a `Vec` of offsets took 80 and a second allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    data: Box<[u8]>,
    /// The message is `data[..len]`; TTL offsets follow.
    len: u16,
    question_end: u16,
    /// Where an OPT record starts and how many additional records precede it.
    opt: Option<(u16, u16)>,
    ext_rcode: u8,
}

impl Reply {
    /// Validates a reply; trailing bytes after the last record are dropped.
    pub fn parse(bytes: &[u8]) -> Result<Reply, Error> {
        let msg = Message::parse(bytes)?;
        if !msg.header.qr() {
            return Err(Error::NotReply);
        }
        if msg.header.qdcount != 1 {
            return Err(Error::QuestionCount);
        }
        if !names_avoid_edited_bytes(&msg) {
            return Err(Error::BadName);
        }
        let body = bytes.get(..msg.end).unwrap_or(bytes);
        let short = |n: usize| u16::try_from(n).map_err(|_| Error::TooLong);
        let len = short(body.len())?;
        let ttls = msg.records.iter().filter(|r| r.rtype != rtype::OPT);
        let mut data = Vec::with_capacity(body.len() + 2 * ttls.clone().count());
        data.extend_from_slice(body);
        for r in ttls {
            data.extend_from_slice(&short(r.ttl_at)?.to_be_bytes());
        }
        let opt = match &msg.edns {
            Some(e) => Some((short(e.record.start)?, e.index_in_additional)),
            None => None,
        };
        Ok(Reply {
            data: data.into_boxed_slice(),
            len,
            question_end: short(msg.question_end)?,
            opt,
            ext_rcode: msg.edns.as_ref().map_or(0, |e| e.ext_rcode),
        })
    }

    pub fn bytes(&self) -> &[u8] {
        self.data.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// The message, for the in-place edits (never the offsets after it).
    fn body_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.len);
        self.data.get_mut(..len).unwrap_or(&mut [])
    }

    /// A copy to serve past its TTL (RFC 8767 §4): every TTL set to `ttl`
    /// and, when the OPT record is the last one or there is none, an
    /// Extended DNS Error 3 "Stale Answer" (RFC 8914 §4.4) added to it.
    pub fn stale(&self, ttl: u32) -> Reply {
        let mut bytes = self.bytes().to_vec();
        for at in self.ttl_offsets() {
            if let Some(field) = bytes.get_mut(at..at + 4) {
                field.copy_from_slice(&ttl.to_be_bytes());
            }
        }
        let ede = EDE_STALE_ANSWER.to_be_bytes();
        let bytes = with_option(&bytes, self.opt, OPTION_EDE, &ede).unwrap_or(bytes);
        // These bytes parsed before and only their TTLs and OPT changed.
        Reply::parse(&bytes).unwrap_or_else(|_| self.clone())
    }

    /// Where the TTL field of every record but OPT starts.
    fn ttl_offsets(&self) -> impl Iterator<Item = usize> + '_ {
        self.data
            .get(usize::from(self.len)..)
            .unwrap_or(&[])
            .chunks_exact(2)
            .map(|c| usize::from(u16::from_be_bytes([c[0], c[1]])))
    }

    pub fn header(&self) -> Header {
        // parse() checked the header is there.
        Header::parse(self.bytes()).unwrap_or_default()
    }

    /// The 12-bit rcode.
    pub fn rcode(&self) -> u16 {
        (u16::from(self.ext_rcode) << 4) | self.header().rcode()
    }

    pub fn message(&self) -> Message<'_> {
        // parse() already accepted these bytes; a failure here would be a
        // bug, and an empty message is the harmless answer to it.
        Message::parse(self.bytes()).unwrap_or(Message {
            bytes: &[],
            header: self.header(),
            question_end: HEADER_LEN,
            records: Vec::new(),
            edns: None,
            end: 0,
        })
    }

    /// The smallest TTL of all records but OPT, `None` when there are none.
    pub fn min_ttl(&self) -> Option<u32> {
        self.ttl_offsets()
            .filter_map(|at| be32(self.bytes(), at))
            .min()
    }

    /// RFC 2308 §5: the negative-caching TTL is the lesser of the SOA's TTL
    /// and its MINIMUM field. `None` without an SOA in the authority section.
    pub fn negative_ttl(&self) -> Option<u32> {
        let msg = self.message();
        msg.records
            .iter()
            .filter(|r| r.section == Section::Authority && r.rtype == rtype::SOA)
            .filter_map(|r| {
                // MINIMUM is the last 32-bit field of the SOA RDATA.
                let minimum = be32(self.bytes(), r.rdata.end.checked_sub(4)?)?;
                (r.rdata.len() >= 22).then_some(r.ttl.min(minimum))
            })
            .min()
    }

    pub fn answer_count(&self) -> u16 {
        self.header().ancount
    }

    /// Writes this reply fitted to `shape` into `out`: the client's ID, RD
    /// bit and question bytes (its case), RA set, every TTL lowered by `age`
    /// seconds, no OPT for a client that sent none, and TC with an empty
    /// body when it exceeds the client's UDP limit. Never more than 65,535
    /// bytes, the most a TCP length prefix can say.
    pub fn render(&self, shape: &Shape<'_>, age: u32, out: &mut Vec<u8>) {
        out.clear();
        let h = self.header();
        let mut arcount = h.arcount;
        let mut len = usize::from(self.len);
        if shape.edns.is_none()
            && let Some((start, before)) = self.opt
        {
            let start = usize::from(start);
            // RFC 6891 §7: no OPT in a reply to a query without one. Records
            // after the OPT (rare; additional data only) go with it, so no
            // compression pointer can dangle.
            len = start;
            arcount = before;
        }
        // RFC 6891 §7: an EDNS query gets an OPT back, even when the cached
        // reply came from a query without one; unless the OPT would take
        // the message past 65,535 bytes: then the answer goes without it
        // (the client learns only that this answer carries no EDNS), as
        // an answer with no OPT is one every client reads.
        let add_opt = shape
            .edns
            .filter(|_| self.opt.is_none() && len + OPT_LEN <= MAX_MESSAGE);
        let mut size = len;
        if add_opt.is_some() {
            arcount = arcount.saturating_add(1);
            size += OPT_LEN;
        }
        let question_end = usize::from(self.question_end);
        if shape.question.len() + HEADER_LEN != question_end {
            // Only a caller pairing a reply with another name's question
            // gets here; fail safe rather than send a corrupt message.
            return error_reply(shape, h.opcode(), rcode::SERVFAIL, out);
        }
        if shape.limit.is_some_and(|limit| size > limit) {
            let flags = (h.flags & !flag::RCODE) | h.rcode() | flag::TC;
            return write_bare(shape, flags, self.ext_rcode, out);
        }
        let flags = (h.flags & !flag::RD) | flag::RA | if shape.rd { flag::RD } else { 0 };
        Header {
            id: shape.id,
            flags,
            arcount,
            ..h
        }
        .write(out);
        out.extend_from_slice(shape.question);
        out.extend_from_slice(self.bytes().get(question_end..len).unwrap_or(&[]));
        if let Some(e) = add_opt {
            write_opt(out, shape.advertise, self.ext_rcode, e.do_bit);
        }
        if age > 0 {
            for at in self.ttl_offsets() {
                if let Some(ttl) = be32(out, at) {
                    out[at..at + 4].copy_from_slice(&ttl.saturating_sub(age).to_be_bytes());
                }
            }
        }
        debug_assert!(out.len() <= MAX_MESSAGE, "rendered {} bytes", out.len());
    }

    /// Stable-sorts the A and AAAA records of each answer RRset in place by
    /// `rank(address, position in the upstream's order)`, swapping TTL+RDATA
    /// slots: these records carry no names, so no compression pointer moves.
    /// Returns whether the order changed.
    pub fn reorder_addresses<K: Ord>(&mut self, mut rank: impl FnMut(IpAddr, usize) -> K) -> bool {
        let groups = self.address_groups();
        let mut changed = false;
        for group in groups {
            let mut keyed: Vec<(K, usize)> = group
                .iter()
                .enumerate()
                .filter_map(|(i, r)| Some((rank(address(self.bytes(), r)?, i), i)))
                .collect();
            if keyed.len() != group.len() {
                continue;
            }
            keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
            if keyed.iter().enumerate().all(|(pos, (_, i))| pos == *i) {
                continue;
            }
            let slots: Vec<Vec<u8>> = group
                .iter()
                .map(|r| {
                    self.bytes()
                        .get(r.ttl_at..r.rdata.end)
                        .unwrap_or(&[])
                        .to_vec()
                })
                .collect();
            for (pos, (_, from)) in keyed.iter().enumerate() {
                let dst = &group[pos];
                if let Some(d) = self.body_mut().get_mut(dst.ttl_at..dst.rdata.end)
                    && d.len() == slots[*from].len()
                {
                    d.copy_from_slice(&slots[*from]);
                    changed = true;
                }
            }
        }
        changed
    }

    /// Stable-sorts the addresses inside every `ipv4hint` and `ipv6hint` of
    /// the answer's SVCB/HTTPS records by `rank(address, position)`, in
    /// place (a hint is a list of fixed-size addresses). Returns whether
    /// anything moved.
    pub fn reorder_hints<K: Ord>(&mut self, mut rank: impl FnMut(IpAddr, usize) -> K) -> bool {
        let hints: Vec<(u16, Range<usize>)> = self
            .message()
            .records
            .iter()
            .filter(|r| r.section == Section::Answer)
            .flat_map(|r| svcb_hints(self.bytes(), r))
            .collect();
        let mut changed = false;
        for (key, range) in hints {
            let Some(value) = self.body_mut().get_mut(range) else {
                continue;
            };
            let addrs = hint_addresses(key, value);
            let mut keyed: Vec<(K, usize)> = (addrs.iter().enumerate())
                .map(|(i, &a)| (rank(a, i), i))
                .collect();
            keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
            if keyed.iter().enumerate().all(|(pos, (_, i))| pos == *i) {
                continue;
            }
            let size = value.len() / addrs.len().max(1);
            let old = value.to_vec();
            for (pos, (_, from)) in keyed.iter().enumerate() {
                value[pos * size..(pos + 1) * size]
                    .copy_from_slice(&old[from * size..(from + 1) * size]);
            }
            changed = true;
        }
        changed
    }

    /// The addresses in the hints of the answer's SVCB/HTTPS records, in
    /// wire order, each with its key.
    pub fn hints(&self) -> Vec<(u16, IpAddr)> {
        let msg = self.message();
        let mut out = Vec::new();
        for r in msg.records.iter().filter(|r| r.section == Section::Answer) {
            for (key, range) in svcb_hints(self.bytes(), r) {
                let value = self.bytes().get(range).unwrap_or(&[]);
                out.extend(hint_addresses(key, value).into_iter().map(|a| (key, a)));
            }
        }
        out
    }

    /// The addresses of the answer section in wire order.
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.message()
            .records
            .iter()
            .filter(|r| r.section == Section::Answer)
            .filter_map(|r| address(self.bytes(), r))
            .collect()
    }

    /// Answer-section A records grouped by owner name, then AAAA likewise.
    fn address_groups(&self) -> Vec<Vec<Record>> {
        let msg = self.message();
        let mut groups: Vec<(Vec<u8>, u16, Vec<Record>)> = Vec::new();
        for r in msg.records.iter().filter(|r| {
            r.section == Section::Answer
                && r.class == CLASS_IN
                && (r.rtype == rtype::A || r.rtype == rtype::AAAA)
        }) {
            let Some(owner) = name_lower(self.bytes(), r.name) else {
                continue;
            };
            match groups
                .iter_mut()
                .find(|(o, t, _)| *t == r.rtype && *o == owner)
            {
                Some((_, _, g)) => g.push(r.clone()),
                None => groups.push((owner, r.rtype, vec![r.clone()])),
            }
        }
        groups
            .into_iter()
            .map(|(_, _, g)| g)
            .filter(|g| g.len() > 1)
            .collect()
    }
}

/// A reply with no records but the question (and an OPT for EDNS clients):
/// truncation (RFC 1035 §4.1.1 TC) and the stub's own error answers.
fn write_bare(shape: &Shape<'_>, flags: u16, ext_rcode: u8, out: &mut Vec<u8>) {
    out.clear();
    let flags = (flags & !(flag::RD | flag::AA))
        | flag::QR
        | flag::RA
        | if shape.rd { flag::RD } else { 0 };
    Header {
        id: shape.id,
        flags,
        qdcount: u16::from(!shape.question.is_empty()),
        ancount: 0,
        nscount: 0,
        arcount: u16::from(shape.edns.is_some()),
    }
    .write(out);
    out.extend_from_slice(shape.question);
    if let Some(e) = shape.edns {
        write_opt(out, shape.advertise, ext_rcode, e.do_bit);
    }
}

/// Size of an OPT record with no options.
const OPT_LEN: usize = 11;

/// The largest DNS message: what a TCP length prefix can say (RFC 1035
/// §4.2.2), and what [`Reply`] keeps.
pub const MAX_MESSAGE: usize = u16::MAX as usize;

/// An OPT record with no options (RFC 6891 §6.1.2).
fn write_opt(out: &mut Vec<u8>, udp_size: u16, ext_rcode: u8, do_bit: bool) {
    out.push(0);
    out.extend_from_slice(&rtype::OPT.to_be_bytes());
    out.extend_from_slice(&udp_size.to_be_bytes());
    out.push(ext_rcode);
    out.push(0); // version 0
    out.extend_from_slice(&(if do_bit { 0x8000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
}

/// The stub's own answer with `rcode` (12-bit; BADVERS goes into the OPT):
/// the client's question if it had a readable one, an OPT if it sent one.
pub fn error_reply(shape: &Shape<'_>, opcode: u8, rcode: u16, out: &mut Vec<u8>) {
    let flags = (u16::from(opcode) << 11 & flag::OPCODE) | (rcode & flag::RCODE);
    write_bare(shape, flags, (rcode >> 4) as u8, out);
}

/// SERVFAIL with the ID, RD bit and question of `msg`, one of our own
/// answers that cannot be sent as it is; no OPT, which every client reads.
pub fn servfail_for(msg: &[u8], out: &mut Vec<u8>) {
    let header = Header::parse(msg).unwrap_or_default();
    let question = (header.qdcount == 1)
        .then(|| name_end(msg, HEADER_LEN).ok())
        .flatten()
        .and_then(|end| msg.get(HEADER_LEN..end + 4))
        .unwrap_or(&[]);
    let shape = Shape {
        question,
        limit: None,
        ..header_shape(&header)
    };
    error_reply(&shape, 0, rcode::SERVFAIL, out);
}

/// Appends `name` (dotted text, trailing dot optional) in wire format;
/// `None` when a label is empty or over 63 bytes or the name over 255.
pub fn write_name(name: &str, out: &mut Vec<u8>) -> Option<()> {
    let start = out.len();
    let name = name.strip_suffix('.').unwrap_or(name);
    if !name.is_empty() {
        for label in name.split('.') {
            if label.is_empty() || label.len() > MAX_LABEL {
                out.truncate(start);
                return None;
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    if out.len() - start > MAX_NAME {
        out.truncate(start);
        return None;
    }
    Some(())
}

/// The reply shape for a message that is not a usable query: its ID and RD
/// bit, and no question.
pub fn header_shape(header: &Header) -> Shape<'static> {
    Shape {
        id: header.id,
        rd: header.rd(),
        question: &[],
        edns: None,
        limit: Some(CLASSIC_UDP_SIZE),
        advertise: 1232,
    }
}

/// Whether `reply` answers the query we sent: QR set, same ID, and the same
/// question byte for byte (so a 0x20-mixed case must be echoed exactly).
/// An upstream that does not know EDNS may answer FORMERR without a question
/// (RFC 6891 §7); that is accepted so the caller can retry without OPT.
pub fn answers(reply: &[u8], id: u16, question: &[u8]) -> bool {
    let Some(h) = Header::parse(reply) else {
        return false;
    };
    if !h.qr() || h.id != id || h.opcode() != 0 {
        return false;
    }
    if h.qdcount == 0 {
        return h.rcode() == rcode::FORMERR;
    }
    h.qdcount == 1 && reply.get(HEADER_LEN..HEADER_LEN + question.len()) == Some(question)
}

fn address(bytes: &[u8], r: &Record) -> Option<IpAddr> {
    let d = bytes.get(r.rdata.clone())?;
    match (r.rtype, d.len()) {
        (rtype::A, 4) => Some(IpAddr::V4(Ipv4Addr::new(d[0], d[1], d[2], d[3]))),
        (rtype::AAAA, 16) => {
            let a: [u8; 16] = d.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => None,
    }
}

/// SvcParamKeys of the address hints (RFC 9460 §7.3).
pub const IPV4HINT: u16 = 4;
pub const IPV6HINT: u16 = 6;

/// The `ipv4hint` and `ipv6hint` values of an SVCB or HTTPS record (RFC
/// 9460 §2.2): `(key, value range)`, each value a whole number of
/// addresses. Empty for any other record, and for RDATA that does not
/// parse: the target name must be uncompressed (§2.2) and the parameters
/// must fill the RDATA exactly.
pub fn svcb_hints(bytes: &[u8], r: &Record) -> Vec<(u16, Range<usize>)> {
    if r.rtype != rtype::SVCB && r.rtype != rtype::HTTPS {
        return Vec::new();
    }
    let mut hints = Vec::new();
    let Ok(mut at) = plain_name_end(bytes, r.rdata.start + 2) else {
        return hints;
    };
    while at < r.rdata.end {
        let (Some(key), Some(len)) = (be16(bytes, at), be16(bytes, at + 2)) else {
            return Vec::new();
        };
        let value = at + 4..at + 4 + usize::from(len);
        if value.end > r.rdata.end {
            return Vec::new();
        }
        let size = match key {
            IPV4HINT => 4,
            IPV6HINT => 16,
            _ => 0,
        };
        if size > 0 && !value.is_empty() && value.len() % size == 0 {
            hints.push((key, value.clone()));
        }
        at = value.end;
    }
    if at != r.rdata.end || r.rdata.len() < 3 {
        return Vec::new();
    }
    hints
}

/// The addresses in a hint value of `key`.
fn hint_addresses(key: u16, value: &[u8]) -> Vec<IpAddr> {
    match key {
        IPV4HINT => value
            .chunks_exact(4)
            .map(|c| IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])))
            .collect(),
        _ => value
            .chunks_exact(16)
            .filter_map(|c| <[u8; 16]>::try_from(c).ok())
            .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
            .collect(),
    }
}

/// Whether EDNS options fill an OPT record's RDATA exactly (RFC 6891
/// §6.1.2: code, length, data, repeated). An option that runs past the
/// record makes the message malformed, as libknot has it
/// (`knot_edns_check_record`); passing it on would hand the upstream a
/// query it must refuse.
fn options_fit(mut options: &[u8]) -> bool {
    while !options.is_empty() {
        let Some(rest) = be16(options, 2).and_then(|len| options.get(4 + usize::from(len)..))
        else {
            return false;
        };
        options = rest;
    }
    true
}

/// End of an uncompressed name at `off`.
fn plain_name_end(msg: &[u8], mut off: usize) -> Result<usize, Error> {
    let start = off;
    loop {
        let len = usize::from(*msg.get(off).ok_or(Error::Truncated)?);
        if len == 0 {
            off += 1;
            break;
        }
        if len > MAX_LABEL {
            return Err(Error::BadName);
        }
        off += 1 + len;
        if off - start > MAX_NAME - 1 {
            return Err(Error::BadName);
        }
    }
    if off > msg.len() {
        return Err(Error::Truncated);
    }
    Ok(off)
}

/// End (in place) of a possibly compressed name at `off`, after checking
/// the whole name: pointers go strictly backwards and the name they lead to
/// lies wholly before them, at most `MAX_HOPS` of them, labels ≤ 63 bytes,
/// name ≤ 255 bytes, no reserved label types.
pub fn name_end(msg: &[u8], off: usize) -> Result<usize, Error> {
    let mut end = None;
    walk_name(msg, off, |step| {
        if let Step::End(at) = step {
            end = Some(at);
        }
    })?;
    end.ok_or(Error::BadName)
}

/// The name at `off`, decompressed and lower-cased (wire format).
pub fn name_lower(msg: &[u8], off: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(32);
    walk_name(msg, off, |step| {
        if let Step::Label(_, label) = step {
            out.push(label.len() as u8);
            out.extend(label.iter().map(u8::to_ascii_lowercase));
        }
    })
    .ok()?;
    out.push(0);
    Some(out)
}

/// What a name walk meets, with positions in the message.
enum Step<'a> {
    /// A label: the offset of its length byte, and its content.
    Label(usize, &'a [u8]),
    /// A compression pointer at this offset.
    Pointer(usize),
    /// The root label (terminator) at this offset.
    Root(usize),
    /// Where the name ends in place (after its terminator or first pointer).
    End(usize),
}

/// Walks a name, reporting every byte range it reads.
fn walk_name<'a>(
    msg: &'a [u8],
    mut off: usize,
    mut visit: impl FnMut(Step<'a>),
) -> Result<(), Error> {
    let mut total = 1usize;
    let mut hops = 0usize;
    let mut in_place = true;
    // After a jump, the name must lie wholly before the pointer: a name
    // running on into the pointer's own record could change under our TTL
    // and slot edits.
    let mut bound = msg.len();
    loop {
        if off >= bound {
            return Err(if bound == msg.len() {
                Error::Truncated
            } else {
                Error::BadName
            });
        }
        let len = msg[off];
        match len & 0xc0 {
            0x00 if len == 0 => {
                visit(Step::Root(off));
                if in_place {
                    visit(Step::End(off + 1));
                }
                return Ok(());
            }
            0x00 => {
                let end = off + 1 + usize::from(len);
                if end > bound {
                    return Err(if bound == msg.len() {
                        Error::Truncated
                    } else {
                        Error::BadName
                    });
                }
                total += 1 + usize::from(len);
                if total > MAX_NAME {
                    return Err(Error::BadName);
                }
                visit(Step::Label(off, &msg[off + 1..end]));
                off = end;
            }
            0xc0 => {
                if off + 2 > bound {
                    return Err(if bound == msg.len() {
                        Error::Truncated
                    } else {
                        Error::BadName
                    });
                }
                let target = usize::from(u16::from_be_bytes([msg[off], msg[off + 1]]) & 0x3fff);
                visit(Step::Pointer(off));
                if in_place {
                    visit(Step::End(off + 2));
                    in_place = false;
                }
                hops += 1;
                if target >= off || hops > MAX_HOPS {
                    return Err(Error::BadName);
                }
                bound = off;
                off = target;
            }
            // 0x40 and 0x80: extended and reserved label types (RFC 6891 §5).
            _ => return Err(Error::BadName),
        }
    }
}

/// Whether any name the stub or a client follows runs through bytes that
/// `Reply` edits in place (header, TTL, and the A/AAAA slots): such a message is
/// valid only by accident and would change meaning under the edit.
fn names_avoid_edited_bytes(msg: &Message<'_>) -> bool {
    // Ascending, since records are sequential: type..rdlength of every
    // record, plus A/AAAA RDATA.
    let mut edited: Vec<Range<usize>> = Vec::with_capacity(msg.records.len() * 2 + 1);
    // The header: ID, flags and counts are rewritten for every client.
    edited.push(0..HEADER_LEN);
    for r in &msg.records {
        edited.push(r.ttl_at - 4..r.rdata.start);
        if r.rtype == rtype::A || r.rtype == rtype::AAAA {
            edited.push(r.rdata.clone());
        }
        // SVCB/HTTPS address hints are reordered in place too.
        edited.extend(svcb_hints(msg.bytes, r).into_iter().map(|(_, v)| v));
    }
    let hits = |range: Range<usize>| {
        let i = edited.partition_point(|e| e.end <= range.start);
        edited.get(i).is_some_and(|e| e.start < range.end)
    };
    let clean = |at: usize| {
        let mut ok = true;
        let walked = walk_name(msg.bytes, at, |step| {
            let range = match step {
                Step::Label(pos, label) => pos..pos + 1 + label.len(),
                Step::Pointer(pos) => pos..pos + 2,
                Step::Root(pos) => pos..pos + 1,
                Step::End(_) => return,
            };
            ok &= !hits(range);
        });
        walked.is_ok() && ok
    };
    // A name in RDATA must also end inside the RDATA: one that runs past
    // it reads other records' bytes (or bytes past the message, which a
    // stored reply no longer has).
    let within = |at: usize, r: &Record| {
        at < r.rdata.end && name_end(msg.bytes, at).is_ok_and(|end| end <= r.rdata.end)
    };
    let rdata_name = |at: usize, r: &Record| within(at, r) && clean(at);
    msg.records.iter().all(|r| {
        clean(r.name)
            && match r.rtype {
                // RFC 3597 §4: only the RFC 1035 types may be compressed.
                rtype::NS | rtype::CNAME | rtype::PTR => rdata_name(r.rdata.start, r),
                rtype::MX => rdata_name(r.rdata.start + 2, r),
                rtype::SOA => {
                    rdata_name(r.rdata.start, r)
                        && name_end(msg.bytes, r.rdata.start).is_ok_and(|at| rdata_name(at, r))
                }
                _ => true,
            }
    })
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Runs every entry point over arbitrary bytes; the fuzz target and the
/// corpus test call this, and it must never panic.
#[doc(hidden)]
pub fn exercise(data: &[u8]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        // Regression (found by the fuzzer): an owner name reached by a
        // pointer into a TTL field changed when the cache lowered the TTL,
        // so the rendered reply no longer parsed.
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
        // Regression: an option running past the OPT record was accepted,
        // and forward() passed the broken option on to the upstream.
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
        let ede = |bytes: &[u8]| crate::dns::rewrite::extended_errors(bytes);
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
        // An EDNS client advertising 4096 gets the full answer under a 1232 cap? No:
        // 40 A records fit in 1232, so it gets them all.
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
        fn exercise_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            exercise(&data);
        }

        #[test]
        fn exercise_on_mutated_replies(flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..6)) {
            let mut m = reply(&[[192, 0, 2, 1], [192, 0, 2, 2]], 300, true);
            for (at, v) in flips {
                let n = m.len();
                m[at % n] = v;
            }
            exercise(&m);
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
        // read as a name: found by the rewrite fuzz target (a reply kept
        // without its trailing bytes no longer parsed).
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
}
