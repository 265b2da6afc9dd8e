//! [`Reply`], a validated upstream reply kept as its bytes and rendered
//! for each client, and the stub's own answers (errors, truncation,
//! SERVFAIL).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use super::ede::{EDE_STALE_ANSWER, OPTION_EDE, with_option};
use super::name::{Step, name_end, walk_name};
use super::svcb::svcb_hints;
use super::{
    Error, HEADER_LEN, Header, Message, Record, Section, Shape, be32, flag, header_shape, rcode,
    rtype,
};

/// A validated upstream reply, kept as its bytes plus the offsets needed to
/// fit it to any client: this is both the cache entry and the fresh answer.
///
/// Every cached answer is one of these, so it is kept small: one
/// allocation holds the message and, after it, the offset of every TTL
/// field but OPT's (`u16` big-endian each: a DNS message is at most 65535
/// bytes), and the offsets beside it are `u16` too. That is 32 bytes here
/// plus the message and 2 bytes a record, against 80 and a second
/// allocation for `usize` fields and a `Vec` of offsets.
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
    pub(super) fn body_mut(&mut self) -> &mut [u8] {
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

    /// The addresses of the answer section in wire order.
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.message()
            .records
            .iter()
            .filter(|r| r.section == Section::Answer)
            .filter_map(|r| address(self.bytes(), r))
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
pub(super) const OPT_LEN: usize = 11;

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

pub(super) fn address(bytes: &[u8], r: &Record) -> Option<IpAddr> {
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
    // stored reply does not keep).
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
