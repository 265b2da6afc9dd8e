//! [`System`]: the inventory of the calling thread's network namespace, read
//! from two rtnetlink dumps and three `/proc/net` tables, and [`assemble`],
//! the pure function that turns those into a [`Snapshot`].

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::netlink::{self, Addr4, Link};
use super::procfs::{self, DefaultRoute, Inet6, ifa};
use super::{Address, Class, Gateway, Inventory, Snapshot, classify};

/// The host's own interfaces, addresses and default routes.
///
/// Each [`Inventory::snapshot`] costs two netlink dumps (links, IPv4
/// addresses) and three small file reads (`/proc/net/if_inet6`,
/// `/proc/net/route`, `/proc/net/ipv6_route`): about 0.1 ms on a PC,
/// but blocking, so async callers run it on a blocking thread (as
/// [`watch`](super::watch) does).
#[derive(Debug, Clone, Copy, Default)]
pub struct System;

/// How often a dump torn by a concurrent change is read again before the
/// error is passed on.
const RETRIES: usize = 3;

impl Inventory for System {
    fn snapshot(&self) -> io::Result<Snapshot> {
        let mut tries = 0;
        loop {
            match read() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted && tries < RETRIES => tries += 1,
                other => return other,
            }
        }
    }
}

fn read() -> io::Result<Snapshot> {
    let links = netlink::dump_links().map_err(|e| context("rtnetlink link dump", e))?;
    let addrs4 = netlink::dump_addrs4().map_err(|e| context("rtnetlink IPv4 address dump", e))?;
    // Without IPv6 (booted with ipv6.disable=1) the IPv6 tables do not exist.
    let inet6 = proc_text("/proc/net/if_inet6", true)?;
    let routes4 = proc_text("/proc/net/route", false)?;
    let routes6 = proc_text("/proc/net/ipv6_route", true)?;
    Ok(assemble(
        &links,
        &addrs4,
        &procfs::if_inet6(&inet6),
        &procfs::route(&routes4),
        &procfs::ipv6_route(&routes6),
    ))
}

fn proc_text(path: &str, may_be_missing: bool) -> io::Result<String> {
    match fs::read(path) {
        // Interface names need not be UTF-8; netlink names are read the
        // same lossy way, so the two still match.
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if may_be_missing && e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(context(path, e)),
    }
}

fn context(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Builds a snapshot from what the kernel reported.
///
/// - Only interfaces that are up, running and not loopback count
///   ([`Link::usable`]); their addresses and default routes are kept, every
///   other interface's are dropped. Loopback and unspecified addresses are
///   never sources, whatever interface holds them.
/// - IPv6 addresses that are tentative (DAD running, RFC 4862 §5.4) or
///   DAD-failed (§5.4.5) are left out: the kernel will not send from them.
///   Deprecated and temporary ones are kept, flagged. Optimistic ones
///   (RFC 4429) are usable and kept.
/// - Link-local IPv6 addresses and gateways get the interface index as
///   scope id (RFC 4007 §11: a link-local address means nothing without
///   its zone).
/// - Addresses are ordered by interface index, then IPv4 before IPv6, then
///   address; gateways by route metric, lowest (preferred) first, each
///   (address, interface) once. The order is deterministic, so two
///   snapshots of the same state compare equal.
pub fn assemble(
    links: &[Link],
    addrs4: &[Addr4],
    inet6: &[Inet6],
    routes4: &[DefaultRoute<Ipv4Addr>],
    routes6: &[DefaultRoute<Ipv6Addr>],
) -> Snapshot {
    let usable: HashMap<u32, &Link> = links
        .iter()
        .filter(|l| l.usable())
        .map(|l| (l.index, l))
        .collect();
    let by_name: HashMap<&str, &Link> = usable.values().map(|l| (l.name.as_str(), *l)).collect();

    let v4 = addrs4.iter().filter_map(|a| {
        let link = usable.get(&a.index)?;
        Some(address(IpAddr::V4(a.addr), a.prefix_len, link, 0))
    });
    let v6 = inet6.iter().filter_map(|a| {
        let link = usable.get(&a.ifindex)?;
        (a.flags & (ifa::TENTATIVE | ifa::DADFAILED) == 0)
            .then(|| address(IpAddr::V6(a.addr), a.prefix_len, link, a.flags))
    });
    let mut addresses: Vec<Address> = v4
        .chain(v6)
        .filter(|a| !a.addr.is_loopback() && !a.addr.is_unspecified())
        .collect();
    addresses.sort_by_key(|a| (a.ifindex, a.addr));
    addresses.dedup();

    Snapshot {
        addresses,
        gateways4: gateways(routes4, &by_name),
        gateways6: gateways(routes6, &by_name),
    }
}

fn address(addr: IpAddr, prefix_len: u8, link: &Link, flags: u32) -> Address {
    let class = classify(addr);
    let v6 = addr.is_ipv6();
    Address {
        addr,
        prefix_len,
        interface: link.name.clone(),
        ifindex: link.index,
        scope_id: scope_id(class, link.index),
        class,
        // IFA_F_SECONDARY (same bit) means something else for IPv4.
        deprecated: v6 && flags & ifa::DEPRECATED != 0,
        temporary: v6 && flags & ifa::TEMPORARY != 0,
    }
}

fn scope_id(class: Class, ifindex: u32) -> u32 {
    if class == Class::Lla { ifindex } else { 0 }
}

fn gateways<A: Into<IpAddr> + Copy>(
    routes: &[DefaultRoute<A>],
    by_name: &HashMap<&str, &Link>,
) -> Vec<Gateway> {
    let mut seen = HashSet::new();
    routes
        .iter()
        .filter_map(|r| {
            let link = by_name.get(r.interface.as_str())?;
            let addr: IpAddr = r.gateway.into();
            seen.insert((addr, link.index)).then(|| Gateway {
                addr,
                interface: link.name.clone(),
                ifindex: link.index,
                scope_id: scope_id(classify(addr), link.index),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::netlink::{IFF_LOOPBACK, IFF_RUNNING, IFF_UP};

    const UP: u32 = IFF_UP | IFF_RUNNING;

    fn link(index: u32, name: &str, flags: u32) -> Link {
        Link {
            index,
            name: name.into(),
            flags,
        }
    }

    fn a4(addr: &str, prefix_len: u8, index: u32) -> Addr4 {
        Addr4 {
            addr: addr.parse().unwrap(),
            prefix_len,
            index,
            flags: 0x80,
        }
    }

    fn a6(addr: &str, ifindex: u32, flags: u32) -> Inet6 {
        Inet6 {
            addr: addr.parse().unwrap(),
            ifindex,
            prefix_len: 64,
            flags,
            interface: String::new(),
        }
    }

    fn route<A: std::str::FromStr>(gw: &str, iface: &str, metric: u32) -> DefaultRoute<A>
    where
        A::Err: std::fmt::Debug,
    {
        DefaultRoute {
            gateway: gw.parse().unwrap(),
            interface: iface.into(),
            metric,
        }
    }

    /// lo (1), eth0 (2, up), eth1 (3, up without carrier), wlan0 (4, down),
    /// wg0 (5, up).
    fn links() -> Vec<Link> {
        vec![
            link(1, "lo", UP | IFF_LOOPBACK),
            link(2, "eth0", UP),
            link(3, "eth1", IFF_UP),
            link(4, "wlan0", 0),
            link(5, "wg0", UP),
        ]
    }

    #[test]
    fn assembles_usable_addresses_with_classes_and_flags() {
        let addrs4 = [
            a4("127.0.0.1", 8, 1),
            a4("192.168.1.2", 24, 2),
            a4("100.64.7.9", 10, 5),
            a4("10.1.1.1", 8, 3),
            a4("10.2.2.2", 8, 4),
            a4("169.254.3.4", 16, 2),
        ];
        let inet6 = [
            a6("::1", 1, ifa::PERMANENT),
            a6("2001:db8:1::2", 2, ifa::PERMANENT),
            a6("2001:db8:1::dead", 2, ifa::DEPRECATED | ifa::PERMANENT),
            a6("2001:db8:1::7e", 2, ifa::TEMPORARY),
            a6("2001:db8:1::beef", 2, ifa::TENTATIVE | ifa::PERMANENT),
            a6("2001:db8:1::bad", 2, ifa::DADFAILED | ifa::TENTATIVE),
            a6("2001:db8:1::0b", 2, ifa::OPTIMISTIC),
            a6("fe80::2", 2, ifa::PERMANENT),
            a6("fd00::5", 5, ifa::PERMANENT | ifa::NODAD),
            a6("2001:db8:3::3", 3, ifa::PERMANENT),
            a6("2001:db8:4::4", 4, ifa::PERMANENT),
            a6("2001:db8:9::9", 9, ifa::PERMANENT), // vanished link
        ];
        let snap = assemble(&links(), &addrs4, &inet6, &[], &[]);
        let got: Vec<String> = snap.addresses.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            got,
            [
                "169.254.3.4/16 eth0 linklocal4",
                "192.168.1.2/24 eth0 rfc1918",
                "2001:db8:1::2/64 eth0 gua",
                "2001:db8:1::b/64 eth0 gua",
                "2001:db8:1::7e/64 eth0 gua temporary",
                "2001:db8:1::dead/64 eth0 gua deprecated",
                "fe80::2/64 eth0 lla",
                "100.64.7.9/10 wg0 cgnat",
                "fd00::5/64 wg0 ula",
            ]
        );
        let lla = &snap.addresses[6];
        assert_eq!((lla.ifindex, lla.scope_id), (2, 2));
        assert!(
            snap.addresses
                .iter()
                .filter(|a| a.class != Class::Lla)
                .all(|a| a.scope_id == 0)
        );
    }

    #[test]
    fn ipv4_secondary_is_not_temporary() {
        let mut a = a4("192.0.2.9", 24, 2);
        a.flags = ifa::TEMPORARY; // IFA_F_SECONDARY
        let snap = assemble(&links(), &[a], &[], &[], &[]);
        assert!(!snap.addresses[0].temporary);
    }

    #[test]
    fn gateways_on_usable_links_by_metric_with_scope() {
        let routes4 = [
            route("10.0.0.1", "eth1", 50), // no carrier
            route("192.0.2.1", "eth0", 100),
            route("100.64.0.1", "wg0", 600),
            route("192.0.2.1", "eth0", 200), // same gateway, second route
        ];
        let routes6 = [
            route("fe80::1", "eth0", 1024),
            route("2001:db8:ff::1", "wg0", 2048),
            route("fe80::1", "wlan0", 1), // down
            route("fe80::9", "", 1),      // no device
        ];
        let snap = assemble(&links(), &[], &[], &routes4, &routes6);
        let g4: Vec<_> = snap.gateways4.iter().map(|g| g.to_string()).collect();
        assert_eq!(g4, ["192.0.2.1", "100.64.0.1"]);
        assert_eq!(snap.gateways4[0].ifindex, 2);
        assert_eq!(snap.gateways4[0].scope_id, 0);
        assert_eq!(
            snap.gateways6,
            [
                Gateway {
                    addr: "fe80::1".parse().unwrap(),
                    interface: "eth0".into(),
                    ifindex: 2,
                    scope_id: 2,
                },
                Gateway {
                    addr: "2001:db8:ff::1".parse().unwrap(),
                    interface: "wg0".into(),
                    ifindex: 5,
                    scope_id: 0,
                },
            ]
        );
        assert_eq!(snap.gateways6[0].to_string(), "fe80::1%eth0");
    }

    #[test]
    fn assembled_from_captured_proc_text() {
        let inet6 = procfs::if_inet6(
            "20010db8000100000000000000000002 02 40 00 80     eth0\n\
             20010db800010000000000000000beef 02 40 00 c0     eth0\n\
             fe80000000000000021122fffe334455 02 40 20 80     eth0\n",
        );
        let routes6 = procfs::ipv6_route(
            "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000003 00000000 00450003     eth0\n",
        );
        let routes4 = procfs::route_with(
            "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n",
            u32::to_le_bytes,
        );
        let snap = assemble(
            &links(),
            &[a4("192.0.2.2", 24, 2)],
            &inet6,
            &routes4,
            &routes6,
        );
        assert_eq!(snap.addresses.len(), 3);
        assert_eq!(
            snap.gateways4[0].addr,
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(snap.gateways6[0].scope_id, 2);
    }

    /// This machine, whatever it looks like: the snapshot reads, and holds
    /// no loopback address.
    #[test]
    fn system_snapshot_reads() {
        let snap = System.snapshot().expect("snapshot of this host");
        assert!(snap.addresses.iter().all(|a| !a.addr.is_loopback()));
        assert!(snap.addresses.iter().all(|a| a.interface != "lo"));
    }
}
