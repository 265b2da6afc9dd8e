//! Applications' TCP connects stuck in SYN-SENT, read from the kernel's
//! socket table: what `ss -tan state syn-sent` shows, through the same
//! `NETLINK_SOCK_DIAG` dump (`SOCK_DIAG_BY_FAMILY` with an
//! `inet_diag_req_v2` whose state mask is `TCPF_SYN_SENT`). It needs no
//! privilege and sends nothing on the network: it is the passive signal
//! that a family broke while applications use it, between probe rounds.
//!
//! Like [`crate::inventory::netlink`], the socket is a plain `socket2` one
//! and the layouts are the kernel's stable UAPI (linux/netlink.h,
//! linux/sock_diag.h, linux/inet_diag.h), in host byte order except the
//! ports and addresses, which are in network order. The request builder
//! and the reply parser are pure and total; only [`dump`] touches a socket.

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const AF_NETLINK: i32 = 16;
const NETLINK_SOCK_DIAG: i32 = 4;
const IPPROTO_TCP: u8 = 6;
const SOCK_DIAG_BY_FAMILY: u16 = 20;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x01;
/// `NLM_F_ROOT | NLM_F_MATCH`.
const NLM_F_DUMP: u16 = 0x300;

/// `TCP_SYN_SENT` (include/net/tcp_states.h) and its bit in the state mask.
const TCP_SYN_SENT: u8 = 2;
const TCPF_SYN_SENT: u32 = 1 << TCP_SYN_SENT;

/// `sizeof(struct inet_diag_req_v2)` and `sizeof(struct inet_diag_msg)`.
const REQ_LEN: usize = 56;
const MSG_LEN: usize = 72;

/// `EPROTO` on Linux (asm-generic/errno.h).
const EPROTO: i32 = 71;

/// One connect in SYN-SENT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SynSent {
    /// The bound source address and port.
    pub source: SocketAddr,
    /// Where the SYN goes. An IPv4-mapped IPv6 address (a dual-stack
    /// socket connecting over IPv4) is given as the IPv4 address.
    pub dest: SocketAddr,
    /// SYNs retransmitted so far (`idiag_retrans`).
    pub retransmits: u8,
}

impl SynSent {
    /// Unanswered for longer than a healthy handshake takes: the kernel
    /// retransmits the first SYN after its initial RTO (1 s, RFC 6298
    /// §2.1), so one retransmission means no answer for a second or more.
    pub fn stuck(&self) -> bool {
        self.retransmits >= 1
    }
}

/// Every TCP socket of this network namespace in SYN-SENT, both families.
pub fn dump() -> io::Result<Vec<SynSent>> {
    let sock = Socket::new(
        Domain::from(AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(NETLINK_SOCK_DIAG)),
    )?;
    // The kernel answers a dump at once; the timeout only keeps a blocking
    // thread from hanging on one that never does.
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    for (seq, family) in [(1, AF_INET), (2, AF_INET6)] {
        sock.send(&request(family, seq))?;
        loop {
            let n = (&sock).read(&mut buf)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "sock_diag: empty read during a dump",
                ));
            }
            if let Some(end) = absorb(&buf[..n], seq, &mut out) {
                end?;
                break;
            }
        }
    }
    Ok(out)
}

/// A dump request for the TCP sockets of `family` in SYN-SENT.
fn request(family: u8, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + REQ_LEN;
    let mut m = Vec::with_capacity(len);
    // A header and a 56-byte body: it fits in a u32.
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // sdiag_family, sdiag_protocol, idiag_ext (no extensions), pad.
    m.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]);
    m.extend_from_slice(&TCPF_SYN_SENT.to_ne_bytes());
    // inet_diag_sockid: all zero, i.e. any socket.
    m.resize(len, 0);
    m
}

/// Takes one datagram of the dump numbered `seq`, adding its sockets to
/// `out`. `None`: more to come. `Some(Ok(()))`: the dump is complete.
/// `Some(Err(_))`: the kernel reported an error or the datagram is
/// malformed. Messages of other dumps are skipped, and so are sockets in
/// another state (the kernel filters, but the parser does not rely on it).
fn absorb(datagram: &[u8], seq: u32, out: &mut Vec<SynSent>) -> Option<io::Result<()>> {
    let mut rest = datagram;
    while !rest.is_empty() {
        let Some((kind, msg_seq, body, next)) = message(rest) else {
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "sock_diag: malformed message in a dump",
            )));
        };
        rest = next;
        if msg_seq != seq {
            continue;
        }
        match kind {
            NLMSG_DONE => {
                return Some(match errno(body) {
                    0 => Ok(()),
                    e => Err(io::Error::from_raw_os_error(e)),
                });
            }
            NLMSG_ERROR => {
                let e = errno(body);
                return Some(Err(io::Error::from_raw_os_error(if e == 0 {
                    EPROTO
                } else {
                    e
                })));
            }
            SOCK_DIAG_BY_FAMILY => out.extend(diag_msg(body)),
            _ => {}
        }
    }
    None
}

/// The positive errno at the start of an `NLMSG_ERROR` or `NLMSG_DONE`
/// body (the kernel sends it negated); 0 when there is none.
fn errno(body: &[u8]) -> i32 {
    body.first_chunk::<4>()
        .map_or(0, |b| i32::from_ne_bytes(*b).saturating_neg())
}

/// Splits the first netlink message off `buf`: its type, sequence number,
/// body, and what follows it. `None` if the header or its length is
/// inconsistent with `buf`.
fn message(buf: &[u8]) -> Option<(u16, u32, &[u8], &[u8])> {
    let hdr = buf.first_chunk::<NLMSG_HDRLEN>()?;
    let len = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
    if len < NLMSG_HDRLEN || len > buf.len() {
        return None;
    }
    let kind = u16::from_ne_bytes([hdr[4], hdr[5]]);
    let seq = u32::from_ne_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
    let next = buf.get((len + 3) & !3..).unwrap_or(&[]);
    Some((kind, seq, &buf[NLMSG_HDRLEN..len], next))
}

/// Parses an `inet_diag_msg` (attributes after it are ignored): `None` for
/// a short body, an unknown family or a state other than SYN-SENT.
fn diag_msg(body: &[u8]) -> Option<SynSent> {
    let m = body.first_chunk::<MSG_LEN>()?;
    let (family, state, retransmits) = (m[0], m[1], m[3]);
    if state != TCP_SYN_SENT {
        return None;
    }
    // inet_diag_sockid at offset 4: sport, dport, src[16], dst[16].
    let sport = u16::from_be_bytes([m[4], m[5]]);
    let dport = u16::from_be_bytes([m[6], m[7]]);
    let addr = |at: usize| -> Option<IpAddr> {
        let raw: [u8; 16] = m.get(at..at + 16)?.try_into().ok()?;
        match family {
            AF_INET => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
            AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(raw))),
            _ => None,
        }
    };
    let (source, dest) = (addr(8)?, addr(24)?);
    // Both ends IPv4-mapped: an IPv4 connect of a dual-stack socket.
    let (source, dest) = match (source.to_canonical(), dest.to_canonical()) {
        (s @ IpAddr::V4(_), d @ IpAddr::V4(_)) => (s, d),
        _ => (source, dest),
    };
    Some(SynSent {
        source: SocketAddr::new(source, sport),
        dest: SocketAddr::new(dest, dport),
        retransmits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + body.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0x2u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&4242u32.to_ne_bytes());
        m.extend_from_slice(body);
        m.resize((m.len() + 3) & !3, 0);
        m
    }

    /// An `inet_diag_msg` as the kernel writes it, with one attribute after.
    fn diag(
        family: u8,
        state: u8,
        retrans: u8,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
    ) -> Vec<u8> {
        let raw = |ip: IpAddr| -> [u8; 16] {
            match ip {
                IpAddr::V4(a) => {
                    let mut r = [0; 16];
                    r[..4].copy_from_slice(&a.octets());
                    r
                }
                IpAddr::V6(a) => a.octets(),
            }
        };
        let mut b = vec![family, state, 1, retrans];
        b.extend_from_slice(&sport.to_be_bytes());
        b.extend_from_slice(&dport.to_be_bytes());
        b.extend_from_slice(&raw(src));
        b.extend_from_slice(&raw(dst));
        b.extend_from_slice(&[0; 4 + 8]); // if, cookie
        b.extend_from_slice(&[0; 20]); // expires, rqueue, wqueue, uid, inode
        assert_eq!(b.len(), MSG_LEN);
        b.extend_from_slice(&[8, 0, 1, 0, 0, 0, 0, 0]); // an attribute, ignored
        b
    }

    fn done(seq: u32, err: i32) -> Vec<u8> {
        msg(NLMSG_DONE, seq, &(-err).to_ne_bytes())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn request_layout() {
        let r = request(AF_INET6, 9);
        assert_eq!(r.len(), 72);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), SOCK_DIAG_BY_FAMILY);
        assert_eq!(u16::from_ne_bytes([r[6], r[7]]), 0x301);
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 9);
        assert_eq!(&r[16..20], &[AF_INET6, IPPROTO_TCP, 0, 0]);
        assert_eq!(u32::from_ne_bytes(r[20..24].try_into().unwrap()), 4);
        assert!(r[24..].iter().all(|&b| b == 0));
    }

    #[test]
    fn parses_a_dump_over_two_datagrams() {
        let mut one = msg(
            SOCK_DIAG_BY_FAMILY,
            2,
            &diag(
                AF_INET6,
                TCP_SYN_SENT,
                1,
                ip("2001:db8:1::2"),
                40000,
                ip("2001:db8:ffff::10"),
                443,
            ),
        );
        // A dual-stack socket connecting over IPv4.
        one.extend(msg(
            SOCK_DIAG_BY_FAMILY,
            2,
            &diag(
                AF_INET6,
                TCP_SYN_SENT,
                0,
                ip("::ffff:192.168.1.2"),
                40001,
                ip("::ffff:203.0.113.10"),
                80,
            ),
        ));
        // Another dump's message, and a socket in another state: skipped.
        one.extend(msg(
            SOCK_DIAG_BY_FAMILY,
            7,
            &diag(
                AF_INET6,
                TCP_SYN_SENT,
                3,
                ip("2001:db8:1::2"),
                1,
                ip("2001:db8::1"),
                1,
            ),
        ));
        one.extend(msg(
            SOCK_DIAG_BY_FAMILY,
            2,
            &diag(AF_INET6, 1, 3, ip("2001:db8:1::2"), 1, ip("2001:db8::1"), 1),
        ));
        let mut out = Vec::new();
        assert!(absorb(&one, 2, &mut out).is_none());
        let mut two = msg(
            SOCK_DIAG_BY_FAMILY,
            2,
            &diag(
                AF_INET,
                TCP_SYN_SENT,
                2,
                ip("192.168.1.2"),
                40002,
                ip("203.0.113.10"),
                443,
            ),
        );
        two.extend(done(2, 0));
        assert!(absorb(&two, 2, &mut out).unwrap().is_ok());
        let sa = |s: &str| -> SocketAddr { s.parse().unwrap() };
        assert_eq!(
            out,
            vec![
                SynSent {
                    source: sa("[2001:db8:1::2]:40000"),
                    dest: sa("[2001:db8:ffff::10]:443"),
                    retransmits: 1
                },
                SynSent {
                    source: sa("192.168.1.2:40001"),
                    dest: sa("203.0.113.10:80"),
                    retransmits: 0
                },
                SynSent {
                    source: sa("192.168.1.2:40002"),
                    dest: sa("203.0.113.10:443"),
                    retransmits: 2
                },
            ]
        );
        assert_eq!(
            out.iter().map(SynSent::stuck).collect::<Vec<_>>(),
            [true, false, true]
        );
    }

    #[test]
    fn kernel_errors_and_malformed_datagrams_are_reported() {
        let mut out = Vec::new();
        let e = absorb(&done(1, 13), 1, &mut out).unwrap().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(13));
        let e = absorb(&msg(NLMSG_ERROR, 1, &(-2i32).to_ne_bytes()), 1, &mut out)
            .unwrap()
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(2));
        // An ACK where a dump was expected.
        let e = absorb(&msg(NLMSG_ERROR, 1, &0i32.to_ne_bytes()), 1, &mut out)
            .unwrap()
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(EPROTO));
        // A length past the datagram's end, a length below the header's.
        let mut bad = msg(SOCK_DIAG_BY_FAMILY, 1, &[0; 8]);
        bad[0] = 200;
        let e = absorb(&bad, 1, &mut out).unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        bad[0] = 3;
        assert!(absorb(&bad, 1, &mut out).unwrap().is_err());
        // Short bodies and unknown families are skipped, not errors.
        let mut short = msg(SOCK_DIAG_BY_FAMILY, 1, &[AF_INET, TCP_SYN_SENT, 0, 1]);
        short.extend(msg(
            SOCK_DIAG_BY_FAMILY,
            1,
            &diag(99, TCP_SYN_SENT, 1, ip("192.0.2.1"), 1, ip("192.0.2.2"), 2),
        ));
        short.extend(done(1, 0));
        assert!(absorb(&short, 1, &mut out).unwrap().is_ok());
        assert!(out.is_empty());
    }

    /// The real kernel: a dump of this namespace succeeds (loopback answers
    /// SYNs at once, so nothing here is stuck).
    #[test]
    fn dumps_from_this_kernel() {
        let all = dump().expect("sock_diag dump");
        assert!(
            all.iter().all(|s| s.source.is_ipv4() == s.dest.is_ipv4()),
            "{all:?}"
        );
    }

    proptest! {
        #[test]
        fn parser_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut out = Vec::new();
            let _ = absorb(&bytes, 1, &mut out);
            let _ = diag_msg(&bytes);
        }

        /// Well-framed messages with random bodies reach the body parser,
        /// and whatever it returns has both ends in one family.
        #[test]
        fn body_parser_is_total(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..6),
            kinds in proptest::collection::vec(prop_oneof![Just(SOCK_DIAG_BY_FAMILY), Just(NLMSG_DONE), Just(NLMSG_ERROR), any::<u16>()], 6),
        ) {
            let mut d = Vec::new();
            for (body, kind) in bodies.iter().zip(&kinds) {
                d.extend(msg(*kind, 1, body));
            }
            let mut out = Vec::new();
            let _ = absorb(&d, 1, &mut out);
            for s in out {
                prop_assert_eq!(s.source.is_ipv4(), s.dest.is_ipv4());
            }
        }
    }
}
