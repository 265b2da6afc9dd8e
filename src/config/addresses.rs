//! What the configured addresses mean at run time: which peers an `allow`
//! list admits, and which upstreams would reach this daemon itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use ipnet::IpNet;

/// Whether `peer` is inside `allow` (`dns.allow`, `http.allow`). An
/// IPv4-mapped IPv6 peer (`::ffff:192.0.2.1`, what a dual-stack socket
/// reports for an IPv4 client) is that IPv4 address (RFC 4291 §2.5.5.2),
/// so that `192.0.2.0/24` covers it too.
pub fn allows(allow: &[IpNet], peer: IpAddr) -> bool {
    let peer = peer.to_canonical();
    allow.iter().any(|net| net.contains(&peer))
}

/// Would forwarding to `upstream` reach this daemon's own listeners?
///
/// A listener receives what is sent to its port at its address, or, when
/// that address is unspecified, at any local address of its family. IPv6
/// listeners are bound `IPV6_V6ONLY` (so that `[::]:53` and `0.0.0.0:53`
/// can both be listed), so `[::]` receives no IPv4. Of the local addresses
/// only loopback is known without I/O (127.0.0.0/8, `::1`); this host's
/// other interface addresses are not checked.
///
/// On the sending side, an IPv4-mapped upstream (`::ffff:127.0.0.1`) is
/// sent over IPv4, and an unspecified one means loopback: Linux connects
/// `0.0.0.0` to 127.0.0.1 and `::` to `::1`. A link-local address is ours
/// only on the same link (scope id). An upstream with a zone by interface
/// name ([`super::Nameserver`]) is asked with the index its interface has
/// (`dns::upstream::addresses` looks it up: validation asks the OS nothing).
pub(crate) fn is_own(upstream: SocketAddr, listen: &[SocketAddr]) -> bool {
    let to = destination(upstream);
    listen.iter().any(|l| {
        l.port() == to.port()
            && match (l, to) {
                (SocketAddr::V4(l), SocketAddr::V4(to)) => {
                    l.ip() == to.ip() || l.ip().is_unspecified() && to.ip().is_loopback()
                }
                (SocketAddr::V6(l), SocketAddr::V6(to)) => {
                    let same_link =
                        l.scope_id() == 0 || to.scope_id() == 0 || l.scope_id() == to.scope_id();
                    l.ip() == to.ip() && same_link
                        || l.ip().is_unspecified() && to.ip().is_loopback()
                }
                _ => false,
            }
    })
}

/// Where datagrams sent to `upstream` go: IPv4-mapped addresses over IPv4,
/// the unspecified address to loopback.
fn destination(upstream: SocketAddr) -> SocketAddr {
    let port = upstream.port();
    match (upstream.ip().to_canonical(), upstream) {
        (IpAddr::V4(ip), _) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, port).into(),
        (IpAddr::V6(ip), _) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, port).into(),
        (IpAddr::V6(ip), SocketAddr::V6(v6)) => {
            SocketAddrV6::new(ip, port, 0, v6.scope_id()).into()
        }
        (ip, _) => SocketAddr::new(ip, port),
    }
}
