//! Builders the unit tests share: DNS names, records and cache keys as
//! bytes.

use crate::dns::cache::Key;
use crate::dns::wire::{CLASS_IN, Header, rtype};

// ---- DNS wire bytes -------------------------------------------------------

/// A name in wire form from dotted text: "www.example.com" is
/// `\x03www\x07example\x03com\x00`, "" is the root. Unchecked beyond the
/// label length, so a test can build names the parsers must refuse.
pub(crate) fn wire_name(dotted: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in dotted.split('.').filter(|l| !l.is_empty()) {
        out.push(u8::try_from(label.len()).unwrap());
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A message header: `counts` are QD, AN, NS and AR.
pub(crate) fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
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

/// A question for `qname`, `qtype`, class IN.
pub(crate) fn question(qname: &str, qtype: u16) -> Vec<u8> {
    let mut q = wire_name(qname);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q
}

/// A resource record of class IN; `owner` is wire bytes, so it may be a
/// compression pointer.
pub(crate) fn rr(owner: &[u8], record_type: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
    let mut out = owner.to_vec();
    out.extend_from_slice(&record_type.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
    out
}

/// The cache key of an A query in class IN for `name`, DO and CD clear.
pub(crate) fn cache_key(name: &str) -> Key {
    Key::new(&wire_name(name), rtype::A, CLASS_IN, false, false)
}
