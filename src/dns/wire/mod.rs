//! Views over DNS wire bytes and the few in-place edits the stub needs.
//!
//! Everything here is total: any byte string yields `Ok` or `Err`, never a
//! panic (every index goes through `get`, and the fuzz target in `fuzz/`
//! holds us to it). Nothing is re-encoded: a reply is forwarded and cached as
//! the upstream's bytes, and the edits (ID, question case, TTL decrement, OPT
//! removal, A/AAAA slot swaps) patch fixed-size fields or cut a tail.

mod ede;
mod message;
mod name;
mod order;
mod query;
mod reply;
mod svcb;
#[cfg(test)]
mod tests;

pub(crate) use ede::with_option;
pub use ede::{EDE_FILTERED, EDE_STALE_ANSWER, OPTION_EDE, extended_errors};
pub use message::{Edns, Header, Message, Record, Section};
pub use name::{name_end, name_lower, write_name};
pub use query::{ClientEdns, Query, Shape, answers, header_shape};
pub use reply::{MAX_MESSAGE, Reply, error_reply, servfail_for};
pub use svcb::{IPV4HINT, IPV6HINT, svcb_hints};

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

pub const CLASS_IN: u16 = 1;

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

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}
