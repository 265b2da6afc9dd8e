//! Which addresses the engine probes, from and to. What counts as the
//! Internet is the inventory's rule, [`crate::inventory::class::is_global`].

use std::net::IpAddr;

use crate::inventory::{Class, classify};

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

/// Private, shared or link scope, by the inventory's classes: RFC 1918,
/// 100.64/10 (RFC 6598), 169.254/16 (RFC 3927), fc00::/7 (RFC 4193),
/// fe80::/10 (RFC 4291).
pub(super) fn local_scope(ip: IpAddr) -> bool {
    matches!(
        classify(ip),
        Class::Rfc1918 | Class::Cgnat | Class::LinkLocal4 | Class::Ula | Class::Lla
    )
}

/// Link-scoped sources cannot reach beyond their link.
pub(super) fn routable(class: Class) -> bool {
    !matches!(class, Class::Lla | Class::LinkLocal4)
}
