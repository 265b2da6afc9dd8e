//! The cache key: a query's lower-cased name, type, class and the DO and CD
//! flags, with short names stored inline.

use std::fmt;
use std::hash::{Hash, Hasher};

/// A cache key: lower-cased wire-format qname, qtype, qclass, DO and CD.
///
/// DO and CD are part of the key because the upstream's answer depends on
/// them (RRSIGs present or not, validation done or not), so a reply to one
/// must never answer the other.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    name: Name,
    qtype: u16,
    qclass: u16,
    do_bit: bool,
    cd: bool,
}

impl Key {
    /// Builds a key from an uncompressed wire-format name (length-prefixed
    /// labels, normally ending with the root label).
    ///
    /// Only ASCII `A`–`Z` inside label contents is lower-cased (RFC 4343 §3:
    /// case-insensitive comparison is ASCII-only); length octets are copied
    /// as they are, even when they happen to be in `0x41..=0x5A`. The caller
    /// is expected to have validated the name; on malformed input (a length
    /// running past the end, label-type bits set) this still never panics
    /// and returns a deterministic key, which simply matches nothing valid.
    pub fn new(qname_wire: &[u8], qtype: u16, qclass: u16, do_bit: bool, cd: bool) -> Key {
        Key {
            name: Name::lowercased(qname_wire),
            qtype,
            qclass,
            do_bit,
            cd,
        }
    }

    /// The lower-cased wire-format name.
    pub fn qname(&self) -> &[u8] {
        self.name.as_bytes()
    }

    pub fn qtype(&self) -> u16 {
        self.qtype
    }

    pub fn qclass(&self) -> u16 {
        self.qclass
    }

    pub fn do_bit(&self) -> bool {
        self.do_bit
    }

    pub fn cd(&self) -> bool {
        self.cd
    }

    /// Whether the name is stored inside the key rather than on the heap.
    #[cfg(test)]
    pub(super) fn is_inline(&self) -> bool {
        matches!(self.name, Name::Inline { .. })
    }
}

/// Two writes to the hasher, the name's bytes and the rest packed in one
/// word, rather than a derived one per field (a length prefix, the bytes and
/// four small fields): SipHash's cost on a cache hit is mostly per write.
/// The name's length goes into the word, so different keys still feed
/// different streams.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let name = self.name.as_bytes();
        state.write(name);
        state.write_u64(
            u64::from(self.qtype)
                | u64::from(self.qclass) << 16
                | u64::from(self.do_bit) << 32
                | u64::from(self.cd) << 33
                | (name.len() as u64) << 40,
        );
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("qname", &format_args!("{}", self.qname().escape_ascii()))
            .field("qtype", &self.qtype)
            .field("qclass", &self.qclass)
            .field("do_bit", &self.do_bit)
            .field("cd", &self.cd)
            .finish()
    }
}

/// Wire names up to this many bytes are stored inside the key.
///
/// 30 makes `Key` 40 bytes on 64-bit targets and covers names of up to 28
/// characters (`www.google-analytics.com` is 26 on the wire). Inline names
/// mean building a key for a lookup does not allocate. It also costs less
/// memory than a boxed name: 40 bytes against 24 + a 32-byte malloc chunk.
pub(super) const INLINE: usize = 30;

/// A name's bytes, inline when short. Equality and hashing look only at the
/// bytes, so the representation never leaks into key identity.
#[derive(Clone)]
enum Name {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Name {
    fn lowercased(wire: &[u8]) -> Name {
        let mut name = if wire.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..wire.len()].copy_from_slice(wire);
            Name::Inline {
                // Cannot truncate: wire.len() <= INLINE < 256.
                len: wire.len() as u8,
                bytes,
            }
        } else {
            Name::Heap(wire.into())
        };
        lowercase_labels(name.as_bytes_mut());
        name
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Name::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Name::Heap(bytes) => bytes,
        }
    }

    fn as_bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Name::Inline { len, bytes } => &mut bytes[..usize::from(*len)],
            Name::Heap(bytes) => bytes,
        }
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Name {}

/// Lower-cases label contents, stepping over length octets.
///
/// In a well-formed name (labels of at most 63 bytes, the root label last)
/// no length octet is an ASCII capital, so the whole name is lower-cased
/// in one pass; otherwise label by label, leaving the length octets and
/// what follows a root label as they are.
fn lowercase_labels(name: &mut [u8]) {
    let mut at = 0;
    while let Some(&len) = name.get(at) {
        if len == 0 || len >= b'A' {
            break;
        }
        at += 1 + usize::from(len);
    }
    if at + 1 == name.len() && name[at] == 0 {
        name.make_ascii_lowercase();
        return;
    }
    let mut at = 0;
    while at < name.len() {
        let len = usize::from(name[at]);
        if len == 0 {
            break;
        }
        let start = at + 1;
        let end = (start + len).min(name.len());
        name[start..end].make_ascii_lowercase();
        at = end;
    }
}
