//! Domain names on the wire: where one ends, a lower-cased copy, and one
//! written from text, within the RFC 1035 limits and with bounded pointer
//! chasing.

use super::Error;

/// RFC 1035 §3.1 limits; hops bound pointer chasing (each hop must also go
/// strictly backwards, so loops are impossible anyway).
const MAX_LABEL: usize = 63;
const MAX_NAME: usize = 255;
const MAX_HOPS: usize = 128;

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

/// End of an uncompressed name at `off`.
pub(super) fn plain_name_end(msg: &[u8], mut off: usize) -> Result<usize, Error> {
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
pub(super) enum Step<'a> {
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
pub(super) fn walk_name<'a>(
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
