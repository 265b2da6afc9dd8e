//! Parsers of the kernel's `/proc/net` tables: IPv6 addresses with their
//! flags, and the IPv4 and IPv6 default routes.
//!
//! Pure and total: they take the file's text, skip any line they cannot read
//! whole (the header, a truncated last line, a future format) and never
//! panic. Fields are split on whitespace, not cut at fixed columns: the
//! kernel pads with `%02x` and `%8s`, which widen for an ifindex above 0xff
//! or a long interface name.
//!
//! `/proc/net` is `/proc/self/net`: it shows the network namespace of the
//! reading thread, which is what `ip netns exec` and the tests rely on.

use std::net::{Ipv4Addr, Ipv6Addr};

/// `IFA_F_*` flags of an address (linux/if_addr.h).
pub mod ifa {
    /// IPv6: a temporary (privacy, RFC 8981) address; IPv4: a secondary one.
    pub const TEMPORARY: u32 = 0x01;
    pub const NODAD: u32 = 0x02;
    /// RFC 4429 optimistic DAD: usable while DAD runs.
    pub const OPTIMISTIC: u32 = 0x04;
    /// Duplicate address detection failed (RFC 4862 §5.4.5): unusable.
    pub const DADFAILED: u32 = 0x08;
    /// Preferred lifetime over (RFC 4862 §5.5.4): usable, not preferred.
    pub const DEPRECATED: u32 = 0x20;
    /// DAD still running (RFC 4862 §5.4): the kernel will not send from it.
    pub const TENTATIVE: u32 = 0x40;
    pub const PERMANENT: u32 = 0x80;
}

/// `RTF_*` route flags (linux/route.h, linux/ipv6_route.h).
mod rtf {
    pub const GATEWAY: u32 = 0x0002;
    pub const REJECT: u32 = 0x0200;
}

/// One line of `/proc/net/if_inet6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inet6 {
    pub addr: Ipv6Addr,
    pub ifindex: u32,
    pub prefix_len: u8,
    /// `IFA_F_*` bits; see [`ifa`]. Older kernels print only the low byte,
    /// which holds every flag read here.
    pub flags: u32,
    pub interface: String,
}

/// A default route's next hop, from `/proc/net/route` or
/// `/proc/net/ipv6_route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute<A> {
    pub gateway: A,
    pub interface: String,
    pub metric: u32,
}

/// Reads `/proc/net/if_inet6`:
/// `ADDR(32 hex) IFINDEX PREFIXLEN SCOPE FLAGS NAME`, numbers in hex
/// (net/ipv6/addrconf.c, `if6_seq_show`).
pub fn if_inet6(text: &str) -> Vec<Inet6> {
    text.lines().filter_map(inet6_line).collect()
}

fn inet6_line(line: &str) -> Option<Inet6> {
    let mut f = line.split_whitespace();
    let addr = hex_v6(f.next()?)?;
    let ifindex = hex_u32(f.next()?)?;
    let prefix_len = u8::try_from(hex_u32(f.next()?)?)
        .ok()
        .filter(|&p| p <= 128)?;
    let _scope = hex_u32(f.next()?)?;
    let flags = hex_u32(f.next()?)?;
    let interface = f.next()?.to_owned();
    Some(Inet6 {
        addr,
        ifindex,
        prefix_len,
        flags,
        interface,
    })
}

/// Reads the IPv4 default routes from `/proc/net/route` (main table only,
/// net/ipv4/fib_trie.c `fib_route_seq_show`): destination 0, mask 0,
/// `RTF_GATEWAY` set, not a reject route, a non-zero gateway. Ordered by
/// metric, lowest (preferred) first.
///
/// Addresses there are `%08X` of the address as the kernel stores it, in
/// network byte order, read as a host integer: `010200C0` is 192.0.2.1 on a
/// little-endian machine and `C0000201` on a big-endian one (MIPS routers).
pub fn route(text: &str) -> Vec<DefaultRoute<Ipv4Addr>> {
    route_with(text, u32::to_ne_bytes)
}

/// [`route`] with the host byte order made explicit, so the tests read
/// captured x86 text the same way on any machine.
pub(crate) fn route_with(
    text: &str,
    host_bytes: fn(u32) -> [u8; 4],
) -> Vec<DefaultRoute<Ipv4Addr>> {
    let mut routes: Vec<_> = text
        .lines()
        .filter_map(|line| route_line(line, host_bytes))
        .collect();
    routes.sort_by_key(|r| r.metric);
    routes
}

fn route_line(line: &str, host_bytes: fn(u32) -> [u8; 4]) -> Option<DefaultRoute<Ipv4Addr>> {
    // Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT
    let f: Vec<&str> = line.split_whitespace().collect();
    let [iface, dest, gw, flags, _refcnt, _use, metric, mask, ..] = f.as_slice() else {
        return None;
    };
    let dest = hex_u32(dest)?;
    let mask = hex_u32(mask)?;
    let flags = hex_u32(flags)?;
    let gateway = Ipv4Addr::from(host_bytes(hex_u32(gw)?));
    let metric = metric.parse::<u32>().ok()?;
    let default = dest == 0 && mask == 0;
    let via = flags & rtf::GATEWAY != 0 && flags & rtf::REJECT == 0 && !gateway.is_unspecified();
    (default && via).then(|| DefaultRoute {
        gateway,
        interface: (*iface).to_owned(),
        metric,
    })
}

/// Reads the IPv6 default routes from `/proc/net/ipv6_route`
/// (net/ipv6/route.c, `ipv6_route_native_seq_show`):
/// `DST DSTLEN SRC SRCLEN NEXTHOP METRIC REFCNT USE FLAGS DEV`.
/// A default route is ::/0 with a non-zero next hop that is not a reject
/// route. Source-specific defaults (SRCLEN > 0, RFC 8678 style multihoming)
/// are kept: their next hop is still a gateway worth probing. Ordered by
/// metric, lowest first.
pub fn ipv6_route(text: &str) -> Vec<DefaultRoute<Ipv6Addr>> {
    let mut routes: Vec<_> = text.lines().filter_map(ipv6_route_line).collect();
    routes.sort_by_key(|r| r.metric);
    routes
}

fn ipv6_route_line(line: &str) -> Option<DefaultRoute<Ipv6Addr>> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let [
        dst,
        dst_len,
        _src,
        _src_len,
        next_hop,
        metric,
        _refcnt,
        _use,
        flags,
        rest @ ..,
    ] = f.as_slice()
    else {
        return None;
    };
    let dst = hex_v6(dst)?;
    let dst_len = hex_u32(dst_len)?;
    let gateway = hex_v6(next_hop)?;
    let metric = hex_u32(metric)?;
    let flags = hex_u32(flags)?;
    // A route without a device prints an empty `%8s`, i.e. no last field.
    let interface = rest.first().map_or_else(String::new, |s| (*s).to_owned());
    let default = dst.is_unspecified() && dst_len == 0;
    let via = !gateway.is_unspecified() && flags & rtf::REJECT == 0;
    (default && via).then_some(DefaultRoute {
        gateway,
        interface,
        metric,
    })
}

/// A hex number of at most 8 digits, no sign or prefix.
fn hex_u32(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// 32 hex digits, the kernel's `%pi6` without colons.
fn hex_v6(s: &str) -> Option<Ipv6Addr> {
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(s, 16).ok().map(Ipv6Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A host with two uplinks and a bridge, captured on an x86 kernel 6.x:
    /// eth0 has a stable GUA, a temporary one, a deprecated one and a
    /// tentative one; eth1 has a DAD-failed one; wlan0 has ifindex 0x10f
    /// (wider than `%02x`) and a name longer than `%8s`.
    const IF_INET6: &str = "\
20010db8000100000000000000000002 02 40 00 80     eth0
20010db80001000011c2f8ad3e6ab219 02 40 00 01     eth0
20010db800010000000000000000dead 02 40 00 a0     eth0
20010db800010000000000000000beef 02 40 00 c0     eth0
fe80000000000000021122fffe334455 02 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
fd00000000000000000000000000000a 03 40 00 88     eth1
fd00000000000000000000000000000b 03 40 00 80     eth1
2001db800020000000000000000000aa 10f 40 00 80 wlan0-long-name
";

    #[test]
    fn if_inet6_sample() {
        let got = if_inet6(IF_INET6);
        assert_eq!(got.len(), 9);
        assert_eq!(
            got[0],
            Inet6 {
                addr: "2001:db8:1::2".parse().unwrap(),
                ifindex: 2,
                prefix_len: 64,
                flags: ifa::PERMANENT,
                interface: "eth0".into(),
            }
        );
        assert_eq!(got[1].flags, ifa::TEMPORARY);
        assert_eq!(got[2].flags, ifa::DEPRECATED | ifa::PERMANENT);
        assert_eq!(got[3].flags, ifa::TENTATIVE | ifa::PERMANENT);
        assert_eq!(
            got[4].addr,
            "fe80::211:22ff:fe33:4455".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(got[5].addr, Ipv6Addr::LOCALHOST);
        assert_eq!(got[5].prefix_len, 128);
        assert_eq!(got[6].flags, ifa::DADFAILED | ifa::PERMANENT);
        assert_eq!(got[6].interface, "eth1");
        assert_eq!(got[8].ifindex, 0x10f);
        assert_eq!(got[8].interface, "wlan0-long-name");
    }

    #[test]
    fn if_inet6_skips_broken_lines() {
        let text = "\
not a line
20010db8000100000000000000000002 02 81 00 80     eth0
20010db80001000000000000000002 02 40 00 80     eth0
20010db8000100000000000000000002 02 40 00 80
20010db8000100000000000000000002 zz 40 00 80     eth0
+0010db8000100000000000000000002 02 40 00 80     eth0
20010db8000100000000000000000003 02 40 00 80     eth0";
        let got = if_inet6(text);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].addr, "2001:db8:1::3".parse::<Ipv6Addr>().unwrap());
    }

    /// x86 `/proc/net/route`: a default via 192.0.2.1 on eth0 (metric 100),
    /// a backup default via 10.0.0.1 on wwan0 (metric 700), connected
    /// routes, a host route via a gateway, and an unreachable default
    /// (`ip route add unreachable default metric 9999`).
    const ROUTE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
wwan0\t00000000\t0100000A\t0003\t0\t0\t700\t00000000\t0\t0\t0
eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
*\t00000000\t00000000\t0201\t0\t0\t9999\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
wwan0\t0000000A\t00000000\t0001\t0\t0\t700\t000000FF\t0\t0\t0
eth0\t0A3364CB\t010200C0\t0007\t0\t0\t0\t FFFFFFFF\t0\t0\t0
";

    #[test]
    fn route_sample() {
        let got = route_with(ROUTE, u32::to_le_bytes);
        assert_eq!(
            got,
            vec![
                DefaultRoute {
                    gateway: Ipv4Addr::new(192, 0, 2, 1),
                    interface: "eth0".into(),
                    metric: 100,
                },
                DefaultRoute {
                    gateway: Ipv4Addr::new(10, 0, 0, 1),
                    interface: "wwan0".into(),
                    metric: 700,
                },
            ]
        );
    }

    #[test]
    fn route_big_endian_host() {
        // The same route as a MIPS big-endian router prints it.
        let text = "eth0\t00000000\tC0000201\t0003\t0\t0\t0\t00000000\t0\t0\t0";
        let got = route_with(text, u32::to_be_bytes);
        assert_eq!(got[0].gateway, Ipv4Addr::new(192, 0, 2, 1));
    }

    /// `/proc/net/ipv6_route` of a host that learned a link-local default
    /// router by RA on eth0 (flags RTF_UP|RTF_GATEWAY|RTF_DEFAULT|
    /// RTF_ADDRCONF, metric 1024), has a static default via a GUA next hop
    /// on eth1 (metric 2048), a source-specific default on wg0, connected
    /// routes, local routes, multicast, and the kernel's unreachable
    /// default on lo.
    const IPV6_ROUTE: &str = "\
20010db8000100000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db80002000000000000000000fe 00000800 00000001 00000000 00000003     eth1
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000003 00000000 00450003     eth0
00000000000000000000000000000000 00 fd000000000000990000000000000000 38 fe800000000000000000000000000009 00000400 00000001 00000000 00000003      wg0
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo
20010db8000100000000000000000002 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000003 00000000 80200001     eth0
ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000003 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db80002000000000000000000ff ffffffff 00000001 00000000 00200203     eth1
";

    #[test]
    fn ipv6_route_sample() {
        let got = ipv6_route(IPV6_ROUTE);
        let want = [
            ("fe80::1", "eth0", 0x400),
            ("fe80::9", "wg0", 0x400),
            ("2001:db8:2::fe", "eth1", 0x800),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, (addr, iface, metric)) in got.iter().zip(want) {
            assert_eq!(g.gateway, addr.parse::<Ipv6Addr>().unwrap());
            assert_eq!(g.interface, iface);
            assert_eq!(g.metric, metric);
        }
    }

    #[test]
    fn ipv6_route_without_device() {
        let text = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003";
        let got = ipv6_route(text);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].interface, "");
    }

    #[test]
    fn empty_and_header_only() {
        assert!(if_inet6("").is_empty());
        assert!(route("").is_empty());
        assert!(route(ROUTE.lines().next().unwrap()).is_empty());
        assert!(ipv6_route("\n\n").is_empty());
    }

    proptest! {
        #[test]
        fn parsers_are_total(text in ".{0,400}") {
            let _ = if_inet6(&text);
            let _ = route(&text);
            let _ = ipv6_route(&text);
        }

        /// Lines made of the right alphabet reach the deeper parsing paths.
        #[test]
        fn parsers_are_total_on_plausible_lines(
            text in "([0-9a-fA-F]{0,33}[ \t]{1,3}){0,12}[a-z0-9*]{0,16}(\n([0-9a-fA-F]{0,33}[ \t]{1,3}){0,12}){0,4}"
        ) {
            let _ = if_inet6(&text);
            let _ = route(&text);
            let _ = ipv6_route(&text);
        }

        /// Whatever the input, every address read back has a sane prefix.
        #[test]
        fn prefix_lengths_fit(lines in proptest::collection::vec(
            ("[0-9a-f]{32}", 0u32..0x200, 0u32..0x100, 0u32..0x100), 0..8)
        ) {
            let text: String = lines
                .iter()
                .map(|(a, i, p, f)| format!("{a} {i:02x} {p:02x} 00 {f:02x} eth0\n"))
                .collect();
            let got = if_inet6(&text);
            prop_assert_eq!(got.len(), lines.iter().filter(|l| l.2 <= 128).count());
            for e in got {
                prop_assert!(e.prefix_len <= 128);
            }
        }
    }
}
