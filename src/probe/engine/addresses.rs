//! Which addresses the engine probes, from and to, and which count as the
//! Internet.

use std::net::IpAddr;

use crate::inventory::Class;

/// Never a probe destination or source: loopback, unspecified, multicast,
/// broadcast, 0.0.0.0/8 (RFC 6890) and IPv4-mapped IPv6.
pub(super) fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            a.is_loopback() || a.is_multicast() || a.is_broadcast() || a.octets()[0] == 0
        }
        IpAddr::V6(a) => {
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || a.to_ipv4_mapped().is_some()
        }
    }
}

/// Private, shared or link scope: RFC 1918, 100.64/10 (RFC 6598),
/// 169.254/16 (RFC 3927), fc00::/7 (RFC 4193), fe80::/10 (RFC 4291).
/// Documentation prefixes count as global, as in the inventory.
pub(super) fn local_scope(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let [a0, a1, ..] = a.octets();
            a.is_private() || a.is_link_local() || (a0 == 100 && a1 & 0xC0 == 64)
        }
        IpAddr::V6(a) => a.is_unique_local() || a.is_unicast_link_local(),
    }
}

pub(super) fn global(ip: IpAddr) -> bool {
    !forbidden(ip) && !local_scope(ip)
}

/// Link-scoped sources cannot reach beyond their link.
pub(super) fn routable(class: Class) -> bool {
    !matches!(class, Class::Lla | Class::LinkLocal4)
}
