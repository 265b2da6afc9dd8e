//! Which upstreams to forward to: the configured list, with `system`
//! expanded to the nameservers of the resolv.conf, and the interface index
//! of a zone by name (`fe80::1%eth0`).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;

use crate::config::{self, Nameserver};

const DNS_PORT: u16 = 53;

/// Turns the configured upstream list into nameservers: `system` expands to
/// the nameservers of the resolv.conf, minus our own listen addresses (a
/// forwarding loop to ourselves would turn one query into a storm). A
/// configured upstream with a zone by name that is our own listen address
/// is refused here, where its interface's index is looked up (the config's
/// validation asks the OS nothing).
pub fn addresses(dns: &config::Dns) -> Result<Vec<Nameserver>, String> {
    let mut out = Vec::new();
    for u in &dns.upstreams {
        match u {
            config::Upstream::Addr(a) => {
                if is_own(a, &dns.listen) {
                    return Err(format!(
                        "dns.upstreams: upstream {a} is this daemon's own listen address \
                         (forwarding loop)"
                    ));
                }
                out.push(a.clone());
            }
            config::Upstream::System => {
                let text = std::fs::read_to_string(&dns.resolv_conf)
                    .map_err(|e| format!("{}: {e}", dns.resolv_conf.display()))?;
                let found = resolv_conf_nameservers(&text);
                let before = found.len();
                out.extend(found.into_iter().filter(|a| !is_own(a, &dns.listen)));
                if before == 0 {
                    return Err(format!(
                        "{}: no usable nameserver lines for upstreams = [\"system\"] \
                         (an IP; a link-local IPv6 address with its %interface)",
                        dns.resolv_conf.display()
                    ));
                }
            }
        }
    }
    out.dedup();
    if out.is_empty() {
        // On systemd hosts the uplink's servers are listed here.
        const RESOLVED: &str = "/run/systemd/resolve/resolv.conf";
        let hint = if Path::new(RESOLVED).exists() && dns.resolv_conf != Path::new(RESOLVED) {
            format!(" (or dns.resolv_conf = \"{RESOLVED}\")")
        } else {
            String::new()
        };
        return Err(format!(
            "no upstream left: the nameservers of {} are this daemon's own listen addresses; \
             set dns.upstreams to the real resolvers{hint}",
            dns.resolv_conf.display()
        ));
    }
    Ok(out)
}

/// [`config::is_own`] for a nameserver: a zone by name is on the link its
/// interface has now; an interface that does not exist has no listener.
fn is_own(server: &Nameserver, listen: &[SocketAddr]) -> bool {
    match server.interface() {
        None => config::is_own(server.addr(), listen),
        Some(name) => index_of(name).is_some_and(|i| config::is_own(server.with_index(i), listen)),
    }
}

/// The index the interface `name` has now; `None` when there is none of
/// that name (yet).
pub(super) fn index_of(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok().filter(|&i| i != 0)
}

/// `nameserver` lines of a resolv.conf (resolv.conf(5)): an IPv4 or IPv6
/// address, port 53. An IPv6 address may have a zone, by interface name as
/// NetworkManager and systemd write it (`fe80::1%wlan0`) or by index
/// (`fe80::1%3`); a link-local one without a zone, or with a zone that is
/// no interface name, cannot be sent to and is skipped.
pub fn resolv_conf_nameservers(text: &str) -> Vec<Nameserver> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            nameserver(words.next()?)
        })
        .collect()
}

fn nameserver(word: &str) -> Option<Nameserver> {
    if let Some((ip, zone)) = word.split_once('%') {
        let ip: Ipv6Addr = ip.parse().ok()?;
        return Nameserver::zoned(ip, DNS_PORT, zone)
            .ok()
            .filter(|s| !is_unzoned_link_local(s));
    }
    let ip: IpAddr = word.parse().ok()?;
    Some(Nameserver::from(SocketAddr::new(ip, DNS_PORT))).filter(|s| !is_unzoned_link_local(s))
}

/// A link-local IPv6 address without its link (`fe80::1`, or `%0`).
fn is_unzoned_link_local(server: &Nameserver) -> bool {
    server.interface().is_none()
        && matches!(server.addr(), SocketAddr::V6(v6)
            if v6.ip().is_unicast_link_local() && v6.scope_id() == 0)
}
