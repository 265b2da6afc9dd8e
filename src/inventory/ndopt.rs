//! Router advertisement options the kernel hands to userspace: rtnetlink
//! `RTM_NEWNDUSEROPT` messages, and in them the PREF64 option (RFC 8781),
//! the NAT64 prefix a router announces.
//!
//! Linux processes router advertisements itself, and passes the options it
//! does not act on (RDNSS, DNSSL, captive portal, PREF64) to the multicast
//! group `RTNLGRP_ND_USEROPT` of `NETLINK_ROUTE`, one message per option
//! (`ndisc_ra_useropt`): `struct nduseroptmsg` (16 bytes: family, pad,
//! `nduseropt_opts_len`, ifindex, ICMPv6 type and code, pad), the option's
//! bytes as they came on the wire, then attributes, of which
//! `NDUSEROPT_SRCADDR` is the router's (link-local) address. Joining that
//! group needs no privilege and no raw socket: a `bind` with the group's
//! bit in `nl_groups` ([`subscribe`], through rustix's safe `bind` for
//! `sockaddr_nl`). The kernel only does this on interfaces where it
//! accepts router advertisements (`accept_ra`).
//!
//! [`datagram`] and [`pref64`] are pure and total (property-tested and
//! fuzzed: `fuzz/fuzz_targets/ndopt.rs`); only [`subscribe`] and
//! [`RaSocket`] touch a socket.

use std::io;
use std::net::Ipv6Addr;
use std::time::Duration;

use ipnet::Ipv6Net;

use super::netlink::{AF_NETLINK, NETLINK_ROUTE, attrs, message};

/// `RTM_NEWNDUSEROPT` (linux/rtnetlink.h).
pub const RTM_NEWNDUSEROPT: u16 = 68;
/// `RTNLGRP_ND_USEROPT` (linux/rtnetlink.h): a group number; its bit in the
/// legacy `nl_groups` mask is `1 << (group - 1)`.
pub const RTNLGRP_ND_USEROPT: u32 = 20;
/// `sizeof(struct nduseroptmsg)`.
const NDUSEROPTMSG_LEN: usize = 16;
/// `NDUSEROPT_SRCADDR`: the address the advertisement came from.
const NDUSEROPT_SRCADDR: u16 = 1;
const AF_INET6: u8 = 10;
/// ICMPv6 Router Advertisement (RFC 4861 §4.2).
const ND_ROUTER_ADVERT: u8 = 134;
/// The PREF64 option's type (RFC 8781 §4, IANA).
pub const ND_OPT_PREF64: u8 = 38;

/// One PREF64 option: the prefix and how long it may be used (0: withdrawn).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pref64 {
    pub prefix: Ipv6Net,
    pub lifetime: Duration,
}

/// The PREF64 options of one `RTM_NEWNDUSEROPT` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserOpts {
    /// The interface the advertisement came in on.
    pub ifindex: u32,
    /// The router's address (`NDUSEROPT_SRCADDR`), if the kernel sent it.
    pub router: Option<Ipv6Addr>,
    pub pref64: Vec<Pref64>,
}

/// The RTM_NEWNDUSEROPT messages of one datagram from the group that
/// carry at least one valid PREF64 option. Messages of other types, of
/// another family or ICMPv6 type, and malformed ones are skipped; a
/// malformed netlink header ends the datagram.
pub fn datagram(buf: &[u8]) -> Vec<UserOpts> {
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let Some((msg, next)) = message(rest) else {
            break;
        };
        rest = next;
        if msg.kind != RTM_NEWNDUSEROPT {
            continue;
        }
        if let Some(opts) = useropt(msg.body)
            && !opts.pref64.is_empty()
        {
            out.push(opts);
        }
    }
    out
}

/// Parses an `RTM_NEWNDUSEROPT` body: `nduseroptmsg`, `opts_len` bytes of
/// ND options (RFC 4861 §4.6: type, length in units of 8 bytes, value),
/// then attributes. `None` unless it is an IPv6 router advertisement's with
/// options that fit the body.
pub fn useropt(body: &[u8]) -> Option<UserOpts> {
    let head = body.first_chunk::<NDUSEROPTMSG_LEN>()?;
    let opts_len = usize::from(u16::from_ne_bytes([head[2], head[3]]));
    let ifindex = i32::from_ne_bytes([head[4], head[5], head[6], head[7]]);
    if head[0] != AF_INET6 || head[8] != ND_ROUTER_ADVERT || head[9] != 0 || ifindex <= 0 {
        return None;
    }
    let opts = body.get(NDUSEROPTMSG_LEN..NDUSEROPTMSG_LEN + opts_len)?;
    // The attributes follow the options (whose length is a multiple of 8,
    // so they stay 4-aligned).
    let tail = &body[NDUSEROPTMSG_LEN + opts_len..];
    let router = attrs(tail).find_map(|(kind, value)| {
        (kind == NDUSEROPT_SRCADDR)
            .then(|| value.first_chunk::<16>().map(|a| Ipv6Addr::from(*a)))
            .flatten()
    });
    let mut pref64 = Vec::new();
    let mut rest = opts;
    // RFC 4861 §4.6: a zero length is malformed and ends the options.
    while let [kind, len, ..] = *rest {
        let n = usize::from(len) * 8;
        if n == 0 || n > rest.len() {
            break;
        }
        if kind == ND_OPT_PREF64 {
            pref64.extend(self::pref64(&rest[..n]));
        }
        rest = &rest[n..];
    }
    Some(UserOpts {
        ifindex: ifindex.unsigned_abs(),
        router,
        pref64,
    })
}

/// The NAT64 prefix length of a Prefix Length Code (RFC 8781 §4).
pub fn plc_length(plc: u8) -> Option<u8> {
    Some(match plc {
        0 => 96,
        1 => 64,
        2 => 56,
        3 => 48,
        4 => 40,
        5 => 32,
        _ => return None,
    })
}

/// One PREF64 option, type and length bytes included (RFC 8781 §4): a
/// 13-bit Scaled Lifetime (units of 8 s) and a 3-bit Prefix Length Code,
/// then the highest 96 bits of the prefix.
///
/// `None` when the receiver must ignore it: not type 38, a length of 1
/// (§4: "MUST ignore"; a length above 2 uses the first 16 bytes), fewer
/// than 16 bytes, a PLC other than 0–5, or bits 64–71 set, which RFC 6052
/// §2.2 reserves (zero) in every IPv4-embedded address. Bits past the
/// prefix length are ignored (cleared).
pub fn pref64(opt: &[u8]) -> Option<Pref64> {
    let o = opt.first_chunk::<16>()?;
    if o[0] != ND_OPT_PREF64 || o[1] < 2 {
        return None;
    }
    let word = u16::from_be_bytes([o[2], o[3]]);
    let len = plc_length((word & 0x7) as u8)?;
    let mut bits = [0u8; 16];
    bits[..12].copy_from_slice(&o[4..16]);
    let prefix = Ipv6Net::new(Ipv6Addr::from(bits), len).ok()?.trunc();
    if prefix.network().octets()[8] != 0 {
        return None;
    }
    Some(Pref64 {
        prefix,
        lifetime: Duration::from_secs(u64::from(word >> 3) * 8),
    })
}

/// A PREF64 option's bytes (for tests and fuzz seeds): `lifetime` is
/// rounded down to units of 8 s and capped at the 13-bit maximum.
pub fn encode_pref64(prefix: Ipv6Net, lifetime: Duration) -> [u8; 16] {
    let plc: u16 = match prefix.prefix_len() {
        96 => 0,
        64 => 1,
        56 => 2,
        48 => 3,
        40 => 4,
        32 => 5,
        _ => 7,
    };
    let scaled = (lifetime.as_secs() / 8).min(0x1fff) as u16;
    let mut o = [0u8; 16];
    o[0] = ND_OPT_PREF64;
    o[1] = 2;
    o[2..4].copy_from_slice(&(scaled << 3 | plc).to_be_bytes());
    o[4..16].copy_from_slice(&prefix.network().octets()[..12]);
    o
}

/// An `RTM_NEWNDUSEROPT` message (header included) as the kernel builds
/// it, for tests and fuzz seeds.
pub fn encode_message(ifindex: i32, opts: &[u8], router: Option<Ipv6Addr>) -> Vec<u8> {
    let mut body = vec![0u8; NDUSEROPTMSG_LEN];
    body[0] = AF_INET6;
    body[2..4].copy_from_slice(&(opts.len() as u16).to_ne_bytes());
    body[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    body[8] = ND_ROUTER_ADVERT;
    body.extend_from_slice(opts);
    if let Some(r) = router {
        body.extend_from_slice(&20u16.to_ne_bytes());
        body.extend_from_slice(&NDUSEROPT_SRCADDR.to_ne_bytes());
        body.extend_from_slice(&r.octets());
    }
    let len = 16 + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&RTM_NEWNDUSEROPT.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&body);
    m.resize((m.len() + 3) & !3, 0);
    m
}

/// An rtnetlink socket of the calling thread's network namespace, joined
/// to `RTNLGRP_ND_USEROPT`.
pub fn subscribe() -> io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(
        Domain::from(AF_NETLINK),
        Type::RAW.cloexec(),
        Some(Protocol::from(NETLINK_ROUTE)),
    )?;
    let groups = 1u32 << (RTNLGRP_ND_USEROPT - 1);
    rustix::net::bind(
        &sock,
        &rustix::net::netlink::SocketAddrNetlink::new(0, groups),
    )?;
    Ok(sock)
}

/// [`subscribe`]'s socket, read by a blocking thread: tokio's `AsyncFd`
/// would register the descriptor with `unsafe` (its safe constructor is
/// deprecated as unsound), and one thread asleep in `recvfrom` costs
/// nothing while no advertisement comes.
#[derive(Debug)]
pub struct RaSocket {
    sock: socket2::Socket,
    buf: Vec<u8>,
}

impl RaSocket {
    /// Joins the group; [`RaSocket::recv`] returns at least every `poll`,
    /// so that its thread can see it is no longer wanted.
    pub fn open(poll: Duration) -> io::Result<RaSocket> {
        let sock = subscribe()?;
        sock.set_read_timeout(Some(poll))?;
        Ok(RaSocket {
            sock,
            // One option per message, at most 2 KiB (255 × 8 bytes).
            buf: vec![0u8; 8 * 1024],
        })
    }

    /// Blocks for the next datagram the kernel sends and returns its PREF64
    /// options (empty when it held none, or came from anyone but the kernel,
    /// port id 0); `None` when nothing came within the poll period.
    /// `ENOBUFS` (the socket overran; advertisements were lost, the next
    /// ones bring them back) is an error the caller may log and read on
    /// after.
    pub fn recv(&mut self) -> io::Result<Option<Vec<UserOpts>>> {
        let read = rustix::net::recvfrom(
            &self.sock,
            &mut self.buf[..],
            rustix::net::RecvFlags::empty(),
        );
        let (n, _, from) = match read {
            Ok(got) => got,
            Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INTR => {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let kernel = from
            .and_then(|a| rustix::net::netlink::SocketAddrNetlink::try_from(a).ok())
            .is_some_and(|a| a.pid() == 0);
        if !kernel {
            return Ok(Some(Vec::new()));
        }
        Ok(Some(datagram(&self.buf[..n.min(self.buf.len())])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    const ROUTER: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

    #[test]
    fn a_pref64_message_as_the_kernel_sends_it() {
        let opt = encode_pref64(net("2001:db8:64::/96"), Duration::from_secs(1800));
        let got = datagram(&encode_message(3, &opt, Some(ROUTER)));
        assert_eq!(
            got,
            [UserOpts {
                ifindex: 3,
                router: Some(ROUTER),
                pref64: vec![Pref64 {
                    prefix: net("2001:db8:64::/96"),
                    lifetime: Duration::from_secs(1800),
                }],
            }]
        );
    }

    #[test]
    fn every_prefix_length_code() {
        for (plc, prefix) in [
            (0, "2001:db8:122:344::/96"),
            (1, "2001:db8:122:344::/64"),
            (2, "2001:db8:122:300::/56"),
            (3, "2001:db8:122::/48"),
            (4, "2001:db8:100::/40"),
            (5, "2001:db8::/32"),
        ] {
            let mut o = encode_pref64(net("2001:db8:122:344::/96"), Duration::from_secs(600));
            o[3] = (o[3] & !7) | plc;
            let p = pref64(&o).unwrap_or_else(|| panic!("plc {plc}"));
            // Bits past the prefix length are ignored.
            assert_eq!(p.prefix, net(prefix), "plc {plc}");
            assert_eq!(p.lifetime, Duration::from_secs(600));
            assert_eq!(plc_length(plc), Some(p.prefix.prefix_len()));
        }
        for plc in 6..=7 {
            let mut o = encode_pref64(net("64:ff9b::/96"), Duration::from_secs(600));
            o[3] |= plc;
            assert_eq!(pref64(&o), None, "plc {plc}");
        }
    }

    #[test]
    fn lifetime_is_scaled_by_eight_and_zero_withdraws() {
        let mut o = encode_pref64(net("64:ff9b::/96"), Duration::ZERO);
        assert_eq!(pref64(&o).unwrap().lifetime, Duration::ZERO);
        o[2] = 0xff;
        o[3] = 0xf8;
        assert_eq!(pref64(&o).unwrap().lifetime, Duration::from_secs(8191 * 8));
        assert_eq!(
            encode_pref64(net("64:ff9b::/96"), Duration::from_secs(1_000_000))[2..4],
            [0xff, 0xf8]
        );
    }

    #[test]
    fn bad_lengths_and_reserved_bits_are_ignored() {
        let o = encode_pref64(net("64:ff9b::/96"), Duration::from_secs(600));
        assert_eq!(pref64(&o[..15]), None, "short");
        assert_eq!(pref64(&[]), None);
        let mut one = o;
        one[1] = 1;
        assert_eq!(pref64(&one), None, "length 1 must be ignored");
        // Length 3: the first 16 bytes count.
        let mut long = o.to_vec();
        long[1] = 3;
        long.extend_from_slice(&[0xaa; 8]);
        assert_eq!(pref64(&long).unwrap().prefix, net("64:ff9b::/96"));
        let mut other = o;
        other[0] = 25; // RDNSS
        assert_eq!(pref64(&other), None);
        // Bits 64-71 set in a /96.
        let u = encode_pref64(net("2001:db8:0:0:100::/96"), Duration::from_secs(600));
        assert_eq!(pref64(&u), None);
    }

    #[test]
    fn several_options_and_messages_in_one_datagram() {
        let mut opts = Vec::new();
        // An RDNSS option (type 25, length 3) first, skipped.
        opts.extend_from_slice(&[25, 3, 0, 0, 0, 0, 0x0e, 0x10]);
        opts.extend_from_slice(&ROUTER.octets());
        opts.extend(encode_pref64(
            net("2001:db8:64::/96"),
            Duration::from_secs(240),
        ));
        opts.extend(encode_pref64(net("2001:db8:6400::/40"), Duration::ZERO));
        let mut d = encode_message(2, &opts, None);
        // A message of another type and one with only RDNSS: skipped.
        let mut link = encode_message(2, &[], None);
        link[4..6].copy_from_slice(&16u16.to_ne_bytes()); // RTM_NEWLINK
        d.extend(link);
        d.extend(encode_message(2, &[25, 1, 0, 0, 0, 0, 0, 0], Some(ROUTER)));
        d.extend(encode_message(
            7,
            &encode_pref64(net("64:ff9b::/96"), Duration::from_secs(8)),
            Some(ROUTER),
        ));
        let got = datagram(&d);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].ifindex, got[0].router), (2, None));
        assert_eq!(
            got[0].pref64,
            [
                Pref64 {
                    prefix: net("2001:db8:64::/96"),
                    lifetime: Duration::from_secs(240)
                },
                Pref64 {
                    prefix: net("2001:db8:6400::/40"),
                    lifetime: Duration::ZERO
                },
            ]
        );
        assert_eq!((got[1].ifindex, got[1].router), (7, Some(ROUTER)));
    }

    #[test]
    fn malformed_options_and_headers() {
        let opt = encode_pref64(net("64:ff9b::/96"), Duration::from_secs(600));
        // A zero-length option ends the list; what follows is not read.
        let mut opts = vec![3, 0, 0, 0, 0, 0, 0, 0];
        opts.extend(opt);
        assert!(datagram(&encode_message(2, &opts, None)).is_empty());
        // An option longer than what is left.
        let mut cut = opt.to_vec();
        cut[1] = 4;
        assert!(datagram(&encode_message(2, &cut, None)).is_empty());
        // opts_len past the body.
        let mut m = encode_message(2, &opt, None);
        m[18..20].copy_from_slice(&200u16.to_ne_bytes());
        assert!(datagram(&m).is_empty());
        // Not an RA, not IPv6, no interface.
        for (at, value) in [(24, 133u8), (16, 2), (20, 0)] {
            let mut m = encode_message(2, &opt, None);
            m[at] = value;
            if at == 20 {
                m[20..24].copy_from_slice(&0i32.to_ne_bytes());
            }
            assert!(datagram(&m).is_empty(), "byte {at}");
        }
        // A negative interface index.
        let m = encode_message(-3, &opt, None);
        assert!(datagram(&m).is_empty());
        // A truncated datagram: nothing, no panic.
        let m = encode_message(2, &opt, Some(ROUTER));
        assert!(datagram(&m[..m.len() - 9]).is_empty());
        // A short SRCADDR attribute is no router.
        let mut m = encode_message(2, &opt, Some(ROUTER));
        let l = m.len();
        m[l - 20..l - 18].copy_from_slice(&8u16.to_ne_bytes());
        assert_eq!(datagram(&m)[0].router, None);
    }

    /// The real kernel: joining the group needs no privilege, and a read
    /// with nothing to read returns at the poll period.
    #[test]
    fn subscribes_on_this_kernel() {
        let mut s = RaSocket::open(Duration::from_millis(20)).expect("join RTNLGRP_ND_USEROPT");
        // An RA may come on a real host; then it is a datagram, not an error.
        assert!(s.recv().is_ok());
    }

    proptest! {
        #[test]
        fn parser_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = datagram(&bytes);
            let _ = useropt(&bytes);
            let _ = pref64(&bytes);
        }

        /// Well-framed messages with random options reach the option parser.
        #[test]
        fn option_parser_is_total(
            opts in proptest::collection::vec(any::<u8>(), 0..200),
            ifindex in any::<i32>(),
        ) {
            for got in datagram(&encode_message(ifindex, &opts, Some(ROUTER))) {
                prop_assert!(got.ifindex > 0);
                for p in got.pref64 {
                    prop_assert!([32, 40, 48, 56, 64, 96].contains(&p.prefix.prefix_len()));
                    prop_assert_eq!(p.prefix.network().octets()[8], 0);
                }
            }
        }

        /// What is encoded is read back.
        #[test]
        fn round_trip(bits in any::<u128>(), plc in 0u8..6, lifetime in 0u64..70_000) {
            let len = plc_length(plc).unwrap();
            let mut octets = bits.to_be_bytes();
            octets[8] = 0;
            let prefix = Ipv6Net::new(Ipv6Addr::from(octets), len).unwrap().trunc();
            let got = pref64(&encode_pref64(prefix, Duration::from_secs(lifetime))).unwrap();
            prop_assert_eq!(got.prefix, prefix);
            prop_assert_eq!(got.lifetime.as_secs(), (lifetime / 8).min(8191) * 8);
        }
    }
}
