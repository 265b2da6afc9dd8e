//! The message view: the header, the records located by [`Message::parse`]
//! and the EDNS OPT record, over the bytes as they came.

use std::ops::Range;

use super::name::{name_end, plain_name_end};
use super::{CLASS_IN, Error, HEADER_LEN, be16, be32, flag, rtype};

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
