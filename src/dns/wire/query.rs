//! A client's query: parsing it, the [`Shape`] every reply to it is fitted
//! to, the query forwarded upstream, and matching the upstream's reply.

use super::{CLASSIC_UDP_SIZE, Edns, Error, HEADER_LEN, Header, Message, be16, flag, rcode};

/// EDNS option codes stripped from forwarded queries: a client's cookie is
/// meaningless to the upstream (RFC 7873 §5.1: cookies are per
/// client/server pair) and its subnet must not leak past the stub.
pub(super) const OPT_ECS: u16 = 8;
pub(super) const OPT_COOKIE: u16 = 10;

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
