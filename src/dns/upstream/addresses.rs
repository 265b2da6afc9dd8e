//! Which upstreams to forward to: the configured list, with `system`
//! expanded to the nameservers of the resolv.conf.

use std::net::SocketAddr;
use std::path::Path;

use crate::config;

/// Turns the configured upstream list into addresses: `system` expands to
/// the nameservers of the resolv.conf, minus our own listen addresses (a
/// forwarding loop to ourselves would turn one query into a storm).
pub fn addresses(dns: &config::Dns) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for u in &dns.upstreams {
        match u {
            config::Upstream::Addr(a) => out.push(*a),
            config::Upstream::System => {
                let text = std::fs::read_to_string(&dns.resolv_conf)
                    .map_err(|e| format!("{}: {e}", dns.resolv_conf.display()))?;
                let found = resolv_conf_nameservers(&text);
                let before = found.len();
                out.extend(
                    found
                        .into_iter()
                        .filter(|&a| !config::is_own(a, &dns.listen)),
                );
                if before == 0 {
                    return Err(format!(
                        "{}: no nameserver lines for upstreams = [\"system\"]",
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

/// `nameserver` lines of a resolv.conf (resolv.conf(5)): an IPv4 or IPv6
/// address, port 53. Zones (`fe80::1%eth0`) are skipped: they need an
/// interface index we do not resolve here.
pub fn resolv_conf_nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let ip: std::net::IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}
