//! Extended DNS Errors (RFC 8914): the option codes, adding an option to a
//! message's OPT record, and reading the errors a message carries.

use super::{Header, Message, rtype};

/// EDNS option code of Extended DNS Errors (RFC 8914 §2).
pub const OPTION_EDE: u16 = 15;
/// EDE INFO-CODE 3, "Stale Answer" (RFC 8914 §4.4).
pub const EDE_STALE_ANSWER: u16 = 3;
/// The Extended DNS Error INFO-CODE "Filtered" (RFC 8914 §4.18).
pub const EDE_FILTERED: u16 = 17;

/// `bytes` (a whole message, whose OPT record is at `opt` as
/// [`Reply`](super::Reply) keeps it) with one more EDNS option: appended to the OPT record
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

/// The Extended DNS Errors of a message: `(INFO-CODE, EXTRA-TEXT)`.
pub fn extended_errors(msg: &[u8]) -> Vec<(u16, String)> {
    let Ok(m) = Message::parse(msg) else {
        return Vec::new();
    };
    let Some(e) = m.edns else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut opts = msg.get(e.options).unwrap_or(&[]);
    while opts.len() >= 4 {
        let code = u16::from_be_bytes([opts[0], opts[1]]);
        let len = usize::from(u16::from_be_bytes([opts[2], opts[3]]));
        let Some(value) = opts.get(4..4 + len) else {
            break;
        };
        if code == OPTION_EDE && value.len() >= 2 {
            let info = u16::from_be_bytes([value[0], value[1]]);
            out.push((info, String::from_utf8_lossy(&value[2..]).into_owned()));
        }
        opts = &opts[4 + len..];
    }
    out
}
