//! Two rtnetlink dumps: the links (index, name, flags) and the IPv4
//! addresses, over a plain `socket2` socket.
//!
//! `/proc/net` has no table of IPv4 addresses and none of interface flags,
//! and `getifaddrs(3)` needs `unsafe` FFI (or a new dependency that wraps
//! it). An `AF_NETLINK` socket needs neither: `socket2` (already a
//! dependency) opens it, `send` without an address goes to the kernel
//! (port id 0, `netlink_sendmsg`), `Read` receives, and everything in
//! between is bytes. The message layouts are the kernel's stable UAPI
//! (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h),
//! in host byte order.
//!
//! The request builders and the reply parser are pure and total; only
//! [`dump_links`] and [`dump_addrs4`] touch a socket.

use std::io::{self, Read};
use std::net::Ipv4Addr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

const AF_INET: u8 = 2;
pub(super) const AF_NETLINK: i32 = 16;
pub(super) const NETLINK_ROUTE: i32 = 0;

pub(super) const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x01;
/// `NLM_F_ROOT | NLM_F_MATCH`.
const NLM_F_DUMP: u16 = 0x300;
/// The dump was interrupted by a change; its contents may be inconsistent.
const NLM_F_DUMP_INTR: u16 = 0x10;

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;

/// `sizeof(struct ifinfomsg)` and `sizeof(struct ifaddrmsg)`.
const IFINFOMSG_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;

const IFLA_IFNAME: u16 = 3;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
/// `NLA_F_NESTED | NLA_F_NET_BYTEORDER` live in the type's top bits.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// `IFF_*` (linux/if.h).
pub const IFF_UP: u32 = 0x1;
pub const IFF_LOOPBACK: u32 = 0x8;
/// Operationally up (RFC 2863 `up` or `unknown`): carrier present.
pub const IFF_RUNNING: u32 = 0x40;

/// One interface from an `RTM_NEWLINK` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `IFF_*` bits.
    pub flags: u32,
}

impl Link {
    /// Administratively up, with carrier, and not a loopback: the only
    /// interfaces whose addresses can be sources of probes.
    pub fn usable(&self) -> bool {
        self.flags & (IFF_UP | IFF_RUNNING) == IFF_UP | IFF_RUNNING
            && self.flags & IFF_LOOPBACK == 0
    }
}

/// One IPv4 address from an `RTM_NEWADDR` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr4 {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    pub index: u32,
    /// `IFA_F_*` bits (the `IFA_FLAGS` attribute when present).
    pub flags: u32,
}

/// Dumps every link of the calling thread's network namespace.
pub fn dump_links() -> io::Result<Vec<Link>> {
    dump(
        &request(RTM_GETLINK, 1, &[0; IFINFOMSG_LEN]),
        1,
        |kind, body| (kind == RTM_NEWLINK).then(|| link(body)).flatten(),
    )
}

/// Dumps every IPv4 address of the calling thread's network namespace.
pub fn dump_addrs4() -> io::Result<Vec<Addr4>> {
    let mut ifaddrmsg = [0; IFADDRMSG_LEN];
    ifaddrmsg[0] = AF_INET;
    dump(&request(RTM_GETADDR, 2, &ifaddrmsg), 2, |kind, body| {
        (kind == RTM_NEWADDR).then(|| addr4(body)).flatten()
    })
}

/// Sends a dump request and collects what `pick` makes of each message until
/// `NLMSG_DONE`.
fn dump<T>(req: &[u8], seq: u32, pick: impl Fn(u16, &[u8]) -> Option<T>) -> io::Result<Vec<T>> {
    let sock = Socket::new(
        Domain::from(AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(NETLINK_ROUTE)),
    )?;
    // The kernel answers a dump at once; the timeout only keeps a blocking
    // thread from hanging forever on a kernel that never does.
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    sock.send(req)?;
    // A dump datagram is at most 32 KiB (netlink_dump caps its skb there),
    // so this never truncates one.
    let mut buf = vec![0u8; 64 * 1024];
    let mut dump = Dump::new(seq);
    loop {
        let n = (&sock).read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "rtnetlink: empty read during a dump",
            ));
        }
        if let Some(end) = dump.absorb(&buf[..n], &pick) {
            return end;
        }
    }
}

/// A dump request: `nlmsghdr` followed by the family header `body`.
fn request(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + body.len();
    let mut m = Vec::with_capacity(len);
    // `len` is a header plus a 16-byte body: it fits in a u32.
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

/// The state of one dump: what was collected so far.
struct Dump<T> {
    seq: u32,
    items: Vec<T>,
    interrupted: bool,
}

impl<T> Dump<T> {
    fn new(seq: u32) -> Self {
        Dump {
            seq,
            items: Vec::new(),
            interrupted: false,
        }
    }

    /// Takes one datagram. `None`: more to come. `Some(Ok(items))`: the dump
    /// is complete. `Some(Err(_))`: the kernel reported an error, the dump
    /// was interrupted by a change (`ErrorKind::Interrupted`: try again), or
    /// the datagram is malformed.
    fn absorb(
        &mut self,
        datagram: &[u8],
        pick: impl Fn(u16, &[u8]) -> Option<T>,
    ) -> Option<io::Result<Vec<T>>> {
        let mut rest = datagram;
        while !rest.is_empty() {
            let Some((msg, next)) = message(rest) else {
                return Some(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "rtnetlink: malformed message in a dump",
                )));
            };
            rest = next;
            if msg.seq != self.seq {
                continue; // not ours (a stale reply cannot happen on a fresh socket)
            }
            self.interrupted |= msg.flags & NLM_F_DUMP_INTR != 0;
            match msg.kind {
                NLMSG_DONE => return Some(self.finish(errno(msg.body))),
                NLMSG_ERROR => {
                    let e = errno(msg.body);
                    return Some(Err(io::Error::from_raw_os_error(if e == 0 {
                        // An ACK where a dump was expected.
                        EPROTO
                    } else {
                        e
                    })));
                }
                kind => self.items.extend(pick(kind, msg.body)),
            }
        }
        None
    }

    fn finish(&mut self, err: i32) -> io::Result<Vec<T>> {
        if err != 0 {
            Err(io::Error::from_raw_os_error(err))
        } else if self.interrupted {
            Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "rtnetlink: dump interrupted by a change",
            ))
        } else {
            Ok(std::mem::take(&mut self.items))
        }
    }
}

/// `EPROTO` on Linux (asm-generic/errno.h).
const EPROTO: i32 = 71;

/// The positive errno at the start of an `NLMSG_ERROR` or `NLMSG_DONE`
/// body (the kernel sends it negated); 0 when there is none.
fn errno(body: &[u8]) -> i32 {
    body.first_chunk::<4>()
        .map_or(0, |b| i32::from_ne_bytes(*b).saturating_neg())
}

pub(super) struct Message<'a> {
    pub(super) kind: u16,
    pub(super) flags: u16,
    pub(super) seq: u32,
    pub(super) body: &'a [u8],
}

/// Splits the first netlink message off `buf`: the message and what follows
/// it (after `NLMSG_ALIGN` padding). `None` if the header or its length is
/// inconsistent with `buf`.
pub(super) fn message(buf: &[u8]) -> Option<(Message<'_>, &[u8])> {
    let hdr = buf.first_chunk::<NLMSG_HDRLEN>()?;
    let len = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
    if len < NLMSG_HDRLEN || len > buf.len() {
        return None;
    }
    let msg = Message {
        kind: u16::from_ne_bytes([hdr[4], hdr[5]]),
        flags: u16::from_ne_bytes([hdr[6], hdr[7]]),
        seq: u32::from_ne_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]),
        body: &buf[NLMSG_HDRLEN..len],
    };
    let next = buf.get(align4(len)..).unwrap_or(&[]);
    Some((msg, next))
}

/// Parses an `RTM_NEWLINK` body: `ifinfomsg` then attributes.
fn link(body: &[u8]) -> Option<Link> {
    let head = body.first_chunk::<IFINFOMSG_LEN>()?;
    let index = u32::from_ne_bytes([head[4], head[5], head[6], head[7]]);
    let flags = u32::from_ne_bytes([head[8], head[9], head[10], head[11]]);
    let name = attrs(&body[IFINFOMSG_LEN..]).find_map(|(kind, value)| {
        (kind == IFLA_IFNAME).then(|| {
            // NUL-terminated; names need not be UTF-8, so lossily, the same
            // way the /proc tables are read.
            let raw = value.split(|&b| b == 0).next().unwrap_or(value);
            String::from_utf8_lossy(raw).into_owned()
        })
    })?;
    Some(Link { index, name, flags })
}

/// Parses an `RTM_NEWADDR` body of family `AF_INET`: `ifaddrmsg` then
/// attributes.
fn addr4(body: &[u8]) -> Option<Addr4> {
    let head = body.first_chunk::<IFADDRMSG_LEN>()?;
    if head[0] != AF_INET || head[1] > 32 {
        return None;
    }
    let mut local = None;
    let mut address = None;
    let mut flags = u32::from(head[2]);
    for (kind, value) in attrs(&body[IFADDRMSG_LEN..]) {
        match (kind, value.first_chunk::<4>()) {
            (IFA_LOCAL, Some(v)) => local = Some(Ipv4Addr::from(*v)),
            (IFA_ADDRESS, Some(v)) => address = Some(Ipv4Addr::from(*v)),
            // IFA_FLAGS extends the u8 `ifa_flags` to 32 bits and wins.
            (IFA_FLAGS, Some(v)) => flags = u32::from_ne_bytes(*v),
            _ => {}
        }
    }
    // On a point-to-point link (PPPoE, a tunnel) IFA_ADDRESS is the peer and
    // IFA_LOCAL ours; elsewhere they are equal (linux/if_addr.h).
    Some(Addr4 {
        addr: local.or(address)?,
        prefix_len: head[1],
        index: u32::from_ne_bytes([head[4], head[5], head[6], head[7]]),
        flags,
    })
}

/// The `rtattr`s of `buf` as (type, value); stops at the first malformed one.
pub(super) fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let hdr = buf.first_chunk::<4>()?;
        let len = usize::from(u16::from_ne_bytes([hdr[0], hdr[1]]));
        let kind = u16::from_ne_bytes([hdr[2], hdr[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            buf = &[];
            return None;
        }
        let value = &buf[4..len];
        buf = buf.get(align4(len)..).unwrap_or(&[]);
        Some((kind, value))
    })
}

pub(super) const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        a.resize(align4(a.len()), 0);
        a
    }

    fn msg(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + body.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&4242u32.to_ne_bytes());
        m.extend_from_slice(body);
        m.resize(align4(m.len()), 0);
        m
    }

    fn newlink(index: u32, flags: u32, name: &str) -> Vec<u8> {
        let mut body = vec![0u8; IFINFOMSG_LEN];
        body[4..8].copy_from_slice(&index.to_ne_bytes());
        body[8..12].copy_from_slice(&flags.to_ne_bytes());
        body.extend(attr(4, &1500u32.to_ne_bytes())); // IFLA_MTU, ignored
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        body.extend(attr(IFLA_IFNAME, &n));
        body
    }

    fn newaddr(index: u32, plen: u8, local: [u8; 4], peer: Option<[u8; 4]>, flags: u32) -> Vec<u8> {
        let mut body = vec![AF_INET, plen, (flags & 0xff) as u8, 0];
        body.extend_from_slice(&index.to_ne_bytes());
        body.extend(attr(IFA_ADDRESS, &peer.unwrap_or(local)));
        body.extend(attr(IFA_LOCAL, &local));
        body.extend(attr(IFA_FLAGS, &flags.to_ne_bytes()));
        body
    }

    fn done(seq: u32, err: i32) -> Vec<u8> {
        msg(NLMSG_DONE, 0x2, seq, &(-err).to_ne_bytes())
    }

    fn pick_link(kind: u16, body: &[u8]) -> Option<Link> {
        (kind == RTM_NEWLINK).then(|| link(body)).flatten()
    }

    fn pick_addr(kind: u16, body: &[u8]) -> Option<Addr4> {
        (kind == RTM_NEWADDR).then(|| addr4(body)).flatten()
    }

    #[test]
    fn request_layout() {
        let r = request(RTM_GETADDR, 7, &[AF_INET, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(r.len(), 24);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 24);
        assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), RTM_GETADDR);
        assert_eq!(u16::from_ne_bytes(r[6..8].try_into().unwrap()), 0x301);
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 7);
        assert_eq!(r[16], AF_INET);
    }

    #[test]
    fn link_dump_over_two_datagrams() {
        let mut d1 = msg(RTM_NEWLINK, 0x2, 1, &newlink(1, 0x49, "lo"));
        d1.extend(msg(RTM_NEWLINK, 0x2, 1, &newlink(2, 0x11043, "eth0")));
        let mut d2 = msg(RTM_NEWLINK, 0x2, 1, &newlink(3, 0x1002, "eth1"));
        d2.extend(done(1, 0));
        let mut dump = Dump::new(1);
        assert!(dump.absorb(&d1, pick_link).is_none());
        let links = dump.absorb(&d2, pick_link).unwrap().unwrap();
        let got: Vec<_> = links
            .iter()
            .map(|l| (l.index, l.name.as_str(), l.usable()))
            .collect();
        assert_eq!(
            got,
            [(1, "lo", false), (2, "eth0", true), (3, "eth1", false)]
        );
    }

    #[test]
    fn usable_needs_up_and_running_and_not_loopback() {
        let l = |flags| Link {
            index: 1,
            name: "x".into(),
            flags,
        };
        assert!(l(IFF_UP | IFF_RUNNING).usable());
        assert!(!l(IFF_UP).usable(), "no carrier");
        assert!(!l(IFF_RUNNING).usable(), "admin down");
        assert!(!l(IFF_UP | IFF_RUNNING | IFF_LOOPBACK).usable());
    }

    #[test]
    fn addr_dump_prefers_ifa_local_and_ifa_flags() {
        let mut d = msg(
            RTM_NEWADDR,
            0x2,
            2,
            &newaddr(2, 24, [192, 0, 2, 2], None, 0x80),
        );
        // ppp0: our address 100.64.1.2, the peer 100.64.0.1.
        d.extend(msg(
            RTM_NEWADDR,
            0x2,
            2,
            &newaddr(5, 32, [100, 64, 1, 2], Some([100, 64, 0, 1]), 0x280),
        ));
        // A message of another sequence number is skipped.
        d.extend(msg(
            RTM_NEWADDR,
            0x2,
            99,
            &newaddr(9, 8, [10, 0, 0, 1], None, 0),
        ));
        d.extend(done(2, 0));
        let got = Dump::new(2).absorb(&d, pick_addr).unwrap().unwrap();
        assert_eq!(
            got,
            [
                Addr4 {
                    addr: Ipv4Addr::new(192, 0, 2, 2),
                    prefix_len: 24,
                    index: 2,
                    flags: 0x80
                },
                Addr4 {
                    addr: Ipv4Addr::new(100, 64, 1, 2),
                    prefix_len: 32,
                    index: 5,
                    flags: 0x280
                },
            ]
        );
    }

    #[test]
    fn addr_without_attributes_or_of_other_family_is_skipped() {
        let mut bare = vec![AF_INET, 24, 0, 0];
        bare.extend_from_slice(&2u32.to_ne_bytes());
        assert_eq!(addr4(&bare), None);
        let mut v6 = newaddr(2, 64, [1, 2, 3, 4], None, 0);
        v6[0] = 10; // AF_INET6
        assert_eq!(addr4(&v6), None);
        let mut long = newaddr(2, 33, [1, 2, 3, 4], None, 0);
        long[1] = 33;
        assert_eq!(addr4(&long), None);
    }

    #[test]
    fn kernel_errors_are_reported() {
        let e = Dump::<Link>::new(1)
            .absorb(&msg(NLMSG_ERROR, 0, 1, &(-1i32).to_ne_bytes()), pick_link)
            .unwrap()
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(1));
        let e = Dump::<Link>::new(1)
            .absorb(&done(1, 16), pick_link)
            .unwrap()
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(16));
    }

    #[test]
    fn interrupted_dump_says_so() {
        let mut d = msg(
            RTM_NEWLINK,
            0x2 | NLM_F_DUMP_INTR,
            1,
            &newlink(2, 0x43, "eth0"),
        );
        d.extend(done(1, 0));
        let e = Dump::new(1).absorb(&d, pick_link).unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Interrupted);
    }

    #[test]
    fn truncated_datagram_is_an_error() {
        let d = msg(RTM_NEWLINK, 0x2, 1, &newlink(2, 0x43, "eth0"));
        let e = Dump::new(1)
            .absorb(&d[..d.len() - 8], pick_link)
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    /// The real kernel, in whatever namespace the tests run: loopback is
    /// always there, and never usable.
    #[test]
    fn dumps_from_this_kernel() {
        let links = dump_links().expect("rtnetlink link dump");
        let lo = links.iter().find(|l| l.name == "lo").expect("lo");
        assert!(!lo.usable());
        let addrs = dump_addrs4().expect("rtnetlink address dump");
        if lo.flags & IFF_UP != 0 {
            assert!(
                addrs
                    .iter()
                    .any(|a| a.index == lo.index && a.addr.is_loopback())
            );
        }
    }

    proptest! {
        #[test]
        fn parser_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Dump::new(1).absorb(&bytes, pick_link);
            let _ = Dump::new(1).absorb(&bytes, pick_addr);
            let _ = link(&bytes);
            let _ = addr4(&bytes);
        }

        /// Well-framed messages with random bodies reach the body parsers.
        #[test]
        fn body_parsers_are_total(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..96), 0..6),
            kinds in proptest::collection::vec(prop_oneof![Just(RTM_NEWLINK), Just(RTM_NEWADDR), Just(NLMSG_DONE), Just(NLMSG_ERROR), any::<u16>()], 6),
        ) {
            let mut d = Vec::new();
            for (body, kind) in bodies.iter().zip(&kinds) {
                d.extend(msg(*kind, 0x2, 1, body));
            }
            let _ = Dump::new(1).absorb(&d, pick_link);
            let _ = Dump::new(1).absorb(&d, pick_addr);
        }
    }
}
