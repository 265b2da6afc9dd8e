//! The host's interfaces, addresses and default gateways.
//!
//! A [`Snapshot`] lists the usable source addresses (IPv4 and IPv6, with
//! prefix length, interface, scope id, [`Class`] and the IPv6 flags that
//! matter) and the IPv4 and IPv6 default gateways. The probe engine gets it
//! through the [`Inventory`] trait, so its tests use a fake (any
//! `Fn() -> io::Result<Snapshot>` is one); [`System`] is the real host.
//!
//! # Where the data comes from, and why
//!
//! | what | source |
//! |---|---|
//! | interfaces: index, name, up/running/loopback | rtnetlink `RTM_GETLINK` dump |
//! | IPv4 addresses | rtnetlink `RTM_GETADDR` dump (`AF_INET`) |
//! | IPv6 addresses and `IFA_F_*` flags | `/proc/net/if_inet6` |
//! | IPv4 default gateways | `/proc/net/route` |
//! | IPv6 default gateways | `/proc/net/ipv6_route` |
//!
//! The goal is a small static binary for home routers with no new
//! dependency and no `unsafe`. The `/proc/net` tables are plain text with
//! pure parsers ([`procfs`]). They have no IPv4 address table and no
//! interface flags, though, and the usual way to get those, `getifaddrs(3)`,
//! is FFI. The options were: the `netdev` crate (a cross-platform interface
//! library that pulls in its own netlink stack, far more than this needs),
//! `nix` with its `net` feature (a safe `getifaddrs`, one more dependency
//! for about thirty lines), or speaking rtnetlink directly over a `socket2`
//! socket, which is already a dependency. The last one is what
//! [`netlink`] does: two dump requests, a pure and total parser of the
//! replies (property-tested), about 230 lines. It is also right in any network
//! namespace (a netlink socket and `/proc/self/net` belong to the caller's
//! namespace, where `/sys/class/net` belongs to whoever mounted `/sys`).
//!
//! # Changes: a poll, not events
//!
//! [`watch`] takes a snapshot every [`POLL`] (2 s) and publishes it only
//! when it differs from the last one. rtnetlink can push change events, but
//! subscribing needs a `bind` with a `sockaddr_nl` or a `setsockopt`
//! (`NETLINK_ADD_MEMBERSHIP`) that `socket2` has no safe call for, so it
//! would mean `unsafe` or a netlink crate plus its async glue (rustix,
//! already a dependency, has a safe `bind` for `sockaddr_nl` now, which
//! [`ndopt`] uses for router advertisement options: the kernel sends those
//! only as events, there is nothing to poll). A poll is
//! within the "seen within seconds" the design asks for (a change shows
//! after 2 s at worst), costs two small dumps and three small file reads
//! per round, cannot miss an event or fall out of sync after a netlink
//! buffer overrun (`ENOBUFS`), and is trivially testable with a fake.
//!
//! # Rules
//!
//! Only interfaces that are up, running (carrier) and not loopback count;
//! tentative and DAD-failed IPv6 addresses are left out; deprecated and
//! temporary ones are kept and flagged; see [`system::assemble`] for the
//! whole list. Classification follows the IANA special-purpose registries,
//! with the lab-friendly departures listed in [`class`].

use std::fmt;
use std::io;
use std::net::IpAddr;

pub mod class;
pub mod ndopt;
pub mod netlink;
pub mod procfs;
pub mod system;
mod watch;

pub use class::{classify, classify_v4, classify_v6, is_global};
pub use system::System;
pub use watch::{POLL, watch};

/// Something that can say what the host's interfaces look like now.
///
/// `snapshot` may block briefly (it reads the kernel's tables); call it from
/// a blocking thread in async code, as [`watch`] does.
pub trait Inventory {
    fn snapshot(&self) -> io::Result<Snapshot>;
}

/// Any closure is an inventory: the fake for tests.
impl<F> Inventory for F
where
    F: Fn() -> io::Result<Snapshot>,
{
    fn snapshot(&self) -> io::Result<Snapshot> {
        self()
    }
}

/// What an address is, by the IANA special-purpose registries (bit masks,
/// never string prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// IPv6 global unicast (2000::/3 minus special blocks; 2001:db8::/32 counts as global).
    Gua,
    /// IPv6 unique local, fc00::/7.
    Ula,
    /// IPv6 link-local, fe80::/10.
    Lla,
    /// IPv4 private, RFC 1918.
    Rfc1918,
    /// IPv4 shared address space, 100.64.0.0/10 (RFC 6598).
    Cgnat,
    /// IPv4 global.
    Global4,
    /// IPv4 link-local, 169.254.0.0/16.
    LinkLocal4,
    /// Anything else: loopback, unspecified, multicast, IPv4-mapped,
    /// site-local, benchmarking, reserved space.
    Other,
}

impl Class {
    /// The name used in `/status` (`gua`, `ula`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Gua => "gua",
            Class::Ula => "ula",
            Class::Lla => "lla",
            Class::Rfc1918 => "rfc1918",
            Class::Cgnat => "cgnat",
            Class::Global4 => "global4",
            Class::LinkLocal4 => "linklocal4",
            Class::Other => "other",
        }
    }
}

/// One usable source address of the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub interface: String,
    pub ifindex: u32,
    /// Non-zero only for link-local addresses (the interface index).
    pub scope_id: u32,
    pub class: Class,
    /// IPv6 flags; deprecated and temporary addresses are kept (flagged),
    /// tentative and DAD-failed ones are left out of the snapshot.
    pub deprecated: bool,
    pub temporary: bool,
}

/// A default route's next hop.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Gateway {
    pub addr: IpAddr,
    pub interface: String,
    pub ifindex: u32,
    /// Interface index for a link-local IPv6 gateway, else 0.
    pub scope_id: u32,
}

/// Everything the probe engine and the policy need to know about the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub addresses: Vec<Address>,
    pub gateways4: Vec<Gateway>,
    pub gateways6: Vec<Gateway>,
}

impl Snapshot {
    /// The part of the snapshot on the interfaces chosen by name: those in
    /// `include` (all when it is empty) and not in `exclude`. A name ending
    /// in `*` matches every interface that starts with what precedes it
    /// (`veth*`, `docker*`). Exclusion wins over inclusion.
    pub fn filter(&self, include: &[String], exclude: &[String]) -> Snapshot {
        let chosen = |name: &str| {
            (include.is_empty() || include.iter().any(|p| name_matches(p, name)))
                && !exclude.iter().any(|p| name_matches(p, name))
        };
        Snapshot {
            addresses: self
                .addresses
                .iter()
                .filter(|a| chosen(&a.interface))
                .cloned()
                .collect(),
            gateways4: self
                .gateways4
                .iter()
                .filter(|g| chosen(&g.interface))
                .cloned()
                .collect(),
            gateways6: self
                .gateways6
                .iter()
                .filter(|g| chosen(&g.interface))
                .cloned()
                .collect(),
        }
    }
}

fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `2001:db8::2/64 eth0 gua deprecated`: for logs.
impl Address {
    /// `ip` lies in this address's subnet (its address and prefix length;
    /// an IPv4-mapped address counts as IPv4). Other families never do.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ipnet::IpNet::new(self.addr.to_canonical(), self.prefix_len).is_ok_and(|n| n.contains(&ip))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} {} {}",
            self.addr, self.prefix_len, self.interface, self.class
        )?;
        if self.temporary {
            f.write_str(" temporary")?;
        }
        if self.deprecated {
            f.write_str(" deprecated")?;
        }
        Ok(())
    }
}

/// `192.0.2.1`, or `fe80::1%eth0` for a link-local gateway: the form of
/// `def_gateway4` / `def_gateway6` in `/status` (RFC 4007 §11 zone syntax).
impl fmt::Display for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scope_id != 0 {
            write!(f, "{}%{}", self.addr, self.interface)
        } else {
            write!(f, "{}", self.addr)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(a: &str, interface: &str) -> Address {
        let addr: IpAddr = a.parse().unwrap();
        Address {
            addr,
            prefix_len: 64,
            interface: interface.into(),
            ifindex: 0,
            scope_id: 0,
            class: classify(addr),
            deprecated: false,
            temporary: false,
        }
    }

    fn gw(a: &str, interface: &str) -> Gateway {
        Gateway {
            addr: a.parse().unwrap(),
            interface: interface.into(),
            ifindex: 0,
            scope_id: 0,
        }
    }

    fn sample() -> Snapshot {
        Snapshot {
            addresses: vec![
                addr("2001:db8::1", "eth0"),
                addr("192.0.2.2", "eth0"),
                addr("fd00::1", "wg0"),
                addr("172.17.0.1", "docker0"),
                addr("fe80::1", "veth12"),
            ],
            gateways4: vec![gw("192.0.2.1", "eth0"), gw("100.64.0.1", "wg0")],
            gateways6: vec![gw("fe80::1", "eth0")],
        }
    }

    fn names(s: &Snapshot) -> Vec<&str> {
        s.addresses.iter().map(|a| a.interface.as_str()).collect()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn filter_empty_keeps_everything() {
        assert_eq!(sample().filter(&[], &[]), sample());
    }

    #[test]
    fn filter_include_exclude_and_wildcards() {
        let s = sample();
        let only_eth0 = s.filter(&strings(&["eth0"]), &[]);
        assert_eq!(names(&only_eth0), ["eth0", "eth0"]);
        assert_eq!(only_eth0.gateways4.len(), 1);
        assert_eq!(only_eth0.gateways6.len(), 1);

        let no_containers = s.filter(&[], &strings(&["docker*", "veth*"]));
        assert_eq!(names(&no_containers), ["eth0", "eth0", "wg0"]);
        assert_eq!(no_containers.gateways4.len(), 2);

        // Exclusion wins; a pattern that matches nothing removes nothing.
        let both = s.filter(&strings(&["eth*", "wg0"]), &strings(&["eth0", "nope"]));
        assert_eq!(names(&both), ["wg0"]);
        assert!(both.gateways6.is_empty());

        // No `*` means an exact name, not a prefix.
        assert!(s.filter(&strings(&["eth"]), &[]).addresses.is_empty());
        // A lone `*` matches every name.
        assert_eq!(s.filter(&strings(&["*"]), &[]), s);
    }

    #[test]
    fn display() {
        let mut a = addr("2001:db8::2", "eth0");
        a.deprecated = true;
        a.temporary = true;
        assert_eq!(
            a.to_string(),
            "2001:db8::2/64 eth0 gua temporary deprecated"
        );
        let mut g = gw("fe80::1", "eth0");
        assert_eq!(g.to_string(), "fe80::1");
        g.scope_id = 2;
        assert_eq!(g.to_string(), "fe80::1%eth0");
    }

    #[test]
    fn a_closure_is_an_inventory() {
        let fake = || Ok(sample());
        assert_eq!(fake.snapshot().unwrap(), sample());
    }
}
