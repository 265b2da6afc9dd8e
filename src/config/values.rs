//! Parsers of single values (addresses, upstreams, networks, interface
//! names, STUN servers): each gives the value or says what is wrong with it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

use super::types::{HostPort, Nameserver, Upstream};

const DNS_PORT: u16 = 53;

pub(super) fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        if let Some(reason) = named_zone(s) {
            reason
        } else if !s.starts_with('[') && s.matches(':').count() > 1 {
            "is not IP:PORT (write IPv6 as [IPv6]:PORT)".to_owned()
        } else {
            "is not IP:PORT".to_owned()
        }
    })
}

/// A socket address we send to: port 0 cannot be reached, and a link-local
/// IPv6 address is ambiguous without the interface it is on.
pub(super) fn remote_addr(s: &str) -> Result<SocketAddr, String> {
    let addr = socket_addr(s)?;
    check_remote(addr)
}

fn check_remote(addr: SocketAddr) -> Result<SocketAddr, String> {
    match addr {
        _ if addr.port() == 0 => Err("has port 0".to_owned()),
        SocketAddr::V6(v6) if v6.ip().is_unicast_link_local() && v6.scope_id() == 0 => {
            Err("is link-local and needs a zone (interface index), e.g. fe80::1%2".to_owned())
        }
        _ => Ok(addr),
    }
}

/// `system`, `IP` (port 53), `IP:PORT` or `[IPv6]:PORT`. An unbracketed IPv6
/// literal is always all address: `2001:db8::53` is that host on port 53.
/// An IPv6 address may have a zone, by interface index or name:
/// `fe80::1%2`, `fe80::1%eth0`, `[fe80::1%eth0]:53`; a link-local one must.
pub(super) fn upstream(s: &str) -> Result<Upstream, String> {
    if s == "system" {
        return Ok(Upstream::System);
    }
    let server = if let Ok(addr) = s.parse::<SocketAddr>() {
        Nameserver::from(addr)
    } else if let Ok(ip) = s.parse::<IpAddr>() {
        Nameserver::from(SocketAddr::new(ip, DNS_PORT))
    } else if let Some(zoned) = zoned_ipv6(s) {
        zoned?
    } else {
        return Err("is not \"system\", IP, IP:PORT or [IPv6]:PORT".to_owned());
    };
    if server.addr().port() == 0 {
        return Err("has port 0".to_owned());
    }
    if server.interface().is_none()
        && let SocketAddr::V6(v6) = server.addr()
        && v6.ip().is_unicast_link_local()
        && v6.scope_id() == 0
    {
        return Err(
            "is link-local and needs a zone (its interface), e.g. fe80::1%eth0 or fe80::1%2"
                .to_owned(),
        );
    }
    Ok(Upstream::Addr(server))
}

/// An IPv6 address with a zone: `fe80::1%eth0` or `fe80::1%2` (port 53),
/// `[fe80::1%eth0]:PORT` (std parses only a numeric zone, and only inside
/// brackets with a port). `None`: not of that shape.
fn zoned_ipv6(s: &str) -> Option<Result<Nameserver, String>> {
    let (ip, zone, port) = match s.strip_prefix('[') {
        Some(rest) => {
            let (inner, port) = rest.split_once("]:")?;
            let (ip, zone) = inner.split_once('%')?;
            (ip, zone, port.parse::<u16>().ok()?)
        }
        None => {
            let (ip, zone) = s.split_once('%')?;
            (ip, zone, DNS_PORT)
        }
    };
    Some(Nameserver::zoned(ip.parse().ok()?, port, zone))
}

/// An IPv6 zone as written after `%`.
pub(super) enum Zone {
    /// All digits: an interface index (`%2`).
    Index(u32),
    /// An interface name (`%eth0`), by the rules of [`interface`] without
    /// the trailing `*`.
    Name(String),
}

/// What the zone `z` (the text after `%`) is, or why it is neither.
pub(super) fn zone_of(z: &str) -> Result<Zone, String> {
    if !z.is_empty() && z.bytes().all(|b| b.is_ascii_digit()) {
        return z
            .parse()
            .map(Zone::Index)
            .map_err(|_| format!("has zone {z:?}: too large for an interface index"));
    }
    if !is_interface_name(z) {
        return Err(format!(
            "has zone {z:?}: not an interface name (at most 15 characters, no `/`, `:`, \
             `*` or blanks) or index"
        ));
    }
    Ok(Zone::Name(z.to_owned()))
}

/// Explains a zone that names an interface instead of numbering it.
fn named_zone(s: &str) -> Option<String> {
    let (_, zone) = s.split_once('%')?;
    let zone = zone.split(']').next().unwrap_or(zone);
    (!zone.is_empty() && zone.parse::<u32>().is_err()).then(|| {
        format!(
            "has zone {zone:?}: only a numeric zone (interface index, e.g. %2) is accepted; \
             see `ip link` for the index"
        )
    })
}

/// A CIDR, or a bare IP meaning that one host.
pub(super) fn network(s: &str) -> Result<IpNet, String> {
    match (s.parse::<IpNet>(), s.parse::<IpAddr>()) {
        (Ok(net), _) => Ok(net.trunc()),
        (_, Ok(ip)) => Ok(IpNet::from(ip)),
        _ => Err("is not a CIDR (e.g. 192.0.2.0/24) or an IP".to_owned()),
    }
}

/// A NAT64 prefix: an IPv6 CIDR of an RFC 6052 §2.2 length whose bits
/// 64–71 (the "u" octet) are zero, host bits cleared as in `network`.
pub(super) fn nat64_prefix(s: &str) -> Result<ipnet::Ipv6Net, String> {
    let net = s
        .parse::<ipnet::Ipv6Net>()
        .map_err(|_| "is not an IPv6 prefix (e.g. 64:ff9b::/96)".to_owned())?
        .trunc();
    if !crate::probe::nat64::LENGTHS.contains(&net.prefix_len()) {
        return Err("has a length RFC 6052 does not allow (32, 40, 48, 56, 64 or 96)".to_owned());
    }
    if net.network().octets()[8] != 0 {
        return Err("sets bits 64-71, which RFC 6052 §2.2 reserves (must be zero)".to_owned());
    }
    Ok(net)
}

/// An interface name (Linux: at most 15 bytes, no `/`, `:` or blanks) or a
/// prefix of one ending in `*`.
pub(super) fn interface(s: &str) -> Result<String, String> {
    let name = s.strip_suffix('*').unwrap_or(s);
    if !(is_interface_name(name) || name.is_empty() && s.ends_with('*')) {
        return Err(
            "is not an interface name (at most 15 characters, `*` only at the end)".to_owned(),
        );
    }
    Ok(s.to_owned())
}

/// A Linux interface name: 1 to 15 bytes, no `/`, `:` or blanks (and no
/// `*`, which our lists use for prefixes).
fn is_interface_name(name: &str) -> bool {
    let bad = |c: char| c == '/' || c == ':' || c == '*' || c.is_whitespace();
    !name.is_empty() && name.len() <= 15 && !name.contains(bad)
}

pub(super) fn host_port(s: &str) -> Result<HostPort, String> {
    const SHAPE: &str = "is not HOST:PORT, IP:PORT or [IPv6]:PORT";
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (ip, port) = rest.split_once("]:").ok_or(SHAPE)?;
        ip.parse::<Ipv6Addr>().map_err(|_| SHAPE)?;
        (ip, port)
    } else {
        let (host, port) = s.rsplit_once(':').ok_or(SHAPE)?;
        if host.contains(':') {
            return Err(format!("{SHAPE} (write IPv6 as [IPv6]:PORT)"));
        }
        if host.parse::<Ipv4Addr>().is_err() && !is_dns_name(host) {
            return Err(format!("has an invalid host name {host:?}"));
        }
        (host, port)
    };
    match port.parse::<u16>() {
        Ok(0) => Err("has port 0".to_owned()),
        Ok(port) => Ok(HostPort {
            host: host.to_owned(),
            port,
        }),
        Err(_) => Err(format!("has an invalid port {port:?}")),
    }
}

/// RFC 1123 §2.1 host names: letters, digits and inner hyphens, labels of
/// 1–63 and names of at most 253 characters. RFC 3696 §2: the top-level
/// label is not all digits, which also keeps `1.2.3.256` from passing.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(label_ok)
        && !name
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
}
