//! The NAT64 prefixes the host knows, each with where it came from: router
//! advertisements (PREF64, RFC 8781), RFC 7050 discovery, and the config
//! (`dns64.prefixes`).
//!
//! Pure: the engine feeds it with `now`, and publishes [`Known64::list`]
//! (for `/status`) and [`Known64::union`] (for everyone else) in its
//! verdicts.
//!
//! - A PREF64 prefix is kept per (prefix, interface) for its lifetime from
//!   the last advertisement that carried it (a lifetime of 0 withdraws it
//!   at once), with the router that sent it last; it goes with its
//!   interface (gone, down, or left out by `probe.interfaces` /
//!   `probe.exclude_interfaces`). At most [`PER_INTERFACE`] per interface
//!   and [`TOTAL`] in all: a new one beyond that takes the place of the
//!   one refreshed longest ago, and the caller counts it.
//! - RFC 7050 prefixes are replaced whole by each discovery; config
//!   prefixes by each config. Neither expires on its own.

use std::net::Ipv6Addr;
use std::time::Instant;

use ipnet::Ipv6Net;

use crate::inventory::ndopt::Pref64;

/// Most PREF64 prefixes kept per interface.
pub const PER_INTERFACE: usize = 16;
/// Most PREF64 prefixes kept in all.
pub const TOTAL: usize = 64;

/// Where a NAT64 prefix came from, in the order of preference of RFC 9872
/// (router advertisements, then what the operator configured, then
/// RFC 7050 discovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    Ra,
    Config,
    Rfc7050,
}

impl Source {
    /// The name used in `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Ra => "ra",
            Source::Config => "config",
            Source::Rfc7050 => "rfc7050",
        }
    }
}

/// One known prefix, as `/status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nat64Prefix {
    pub source: Source,
    pub prefix: Ipv6Net,
    /// The interface of the advertisement (PREF64 only).
    pub interface: Option<String>,
    /// The router that advertised it last (PREF64 only).
    pub router: Option<Ipv6Addr>,
    /// Until when it may be used; `None`: until its source says otherwise.
    pub expires: Option<Instant>,
}

impl Nat64Prefix {
    /// Equal but for the expiry: a refreshed advertisement changes nothing
    /// a reader decides on.
    pub fn same_but_expiry(&self, other: &Nat64Prefix) -> bool {
        (self.source, self.prefix, &self.interface, self.router)
            == (other.source, other.prefix, &other.interface, other.router)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Advertised {
    prefix: Ipv6Net,
    ifindex: u32,
    interface: String,
    router: Option<Ipv6Addr>,
    expires: Instant,
    /// The last advertisement that carried it: the oldest gives way.
    refreshed: Instant,
}

/// The table. See the module doc.
#[derive(Debug, Clone, Default)]
pub struct Known64 {
    config: Vec<Ipv6Net>,
    rfc7050: Vec<Ipv6Net>,
    ra: Vec<Advertised>,
}

impl Known64 {
    /// Replaces the config prefixes; whether anything changed.
    pub fn set_config(&mut self, prefixes: &[Ipv6Net]) -> bool {
        replace(&mut self.config, prefixes)
    }

    /// Replaces the RFC 7050 prefixes; whether anything changed.
    pub fn set_rfc7050(&mut self, prefixes: &[Ipv6Net]) -> bool {
        replace(&mut self.rfc7050, prefixes)
    }

    /// The PREF64 options of one advertisement on `ifindex` (named
    /// `interface`) from `router`. Returns whether the table changed and
    /// how many prefixes gave way to the bounds.
    pub fn advertised(
        &mut self,
        now: Instant,
        ifindex: u32,
        interface: &str,
        router: Option<Ipv6Addr>,
        options: &[Pref64],
    ) -> (bool, usize) {
        let mut changed = false;
        let mut evicted = 0;
        for o in options {
            let at = (self.ra.iter()).position(|a| a.prefix == o.prefix && a.ifindex == ifindex);
            if o.lifetime.is_zero() {
                if let Some(i) = at {
                    self.ra.remove(i);
                    changed = true;
                }
                continue;
            }
            let entry = Advertised {
                prefix: o.prefix,
                ifindex,
                interface: interface.to_owned(),
                router,
                expires: now + o.lifetime,
                refreshed: now,
            };
            changed = true;
            if let Some(i) = at {
                self.ra[i] = entry;
                continue;
            }
            let on_link = self.ra.iter().filter(|a| a.ifindex == ifindex).count();
            if on_link >= PER_INTERFACE {
                evicted += usize::from(self.evict_oldest(|a| a.ifindex == ifindex));
            } else if self.ra.len() >= TOTAL {
                evicted += usize::from(self.evict_oldest(|_| true));
            }
            self.ra.push(entry);
        }
        (changed, evicted)
    }

    fn evict_oldest(&mut self, pick: impl Fn(&Advertised) -> bool) -> bool {
        let oldest = (self.ra.iter().enumerate())
            .filter(|(_, a)| pick(a))
            .min_by_key(|(_, a)| a.refreshed)
            .map(|(i, _)| i);
        oldest.map(|i| self.ra.remove(i)).is_some()
    }

    /// Drops the PREF64 prefixes whose lifetime ran out by `now`; whether
    /// any did.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.ra.len();
        self.ra.retain(|a| a.expires > now);
        self.ra.len() != before
    }

    /// Keeps the PREF64 prefixes of the interfaces `present(ifindex, name)`
    /// accepts; whether any went.
    pub fn retain_interfaces(&mut self, present: impl Fn(u32, &str) -> bool) -> bool {
        let before = self.ra.len();
        self.ra.retain(|a| present(a.ifindex, &a.interface));
        self.ra.len() != before
    }

    /// When the next PREF64 prefix expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.ra.iter().map(|a| a.expires).min()
    }

    /// Every prefix with its source, ordered by preference (source, then
    /// prefix, then interface).
    pub fn list(&self) -> Vec<Nat64Prefix> {
        let fixed = |source: Source, list: &[Ipv6Net]| -> Vec<Nat64Prefix> {
            (list.iter())
                .map(|&prefix| Nat64Prefix {
                    source,
                    prefix,
                    interface: None,
                    router: None,
                    expires: None,
                })
                .collect()
        };
        let mut out: Vec<Nat64Prefix> = (self.ra.iter())
            .map(|a| Nat64Prefix {
                source: Source::Ra,
                prefix: a.prefix,
                interface: Some(a.interface.clone()),
                router: a.router,
                expires: Some(a.expires),
            })
            .collect();
        out.extend(fixed(Source::Config, &self.config));
        out.extend(fixed(Source::Rfc7050, &self.rfc7050));
        out.sort();
        out
    }

    /// Every prefix once, sorted.
    pub fn union(&self) -> Vec<Ipv6Net> {
        let mut all: Vec<Ipv6Net> = (self.ra.iter().map(|a| a.prefix))
            .chain(self.config.iter().copied())
            .chain(self.rfc7050.iter().copied())
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

fn replace(slot: &mut Vec<Ipv6Net>, prefixes: &[Ipv6Net]) -> bool {
    let mut new = prefixes.to_vec();
    new.sort();
    new.dedup();
    if *slot == new {
        return false;
    }
    *slot = new;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    fn opt(prefix: &str, secs: u64) -> Pref64 {
        Pref64 {
            prefix: net(prefix),
            lifetime: Duration::from_secs(secs),
        }
    }

    const R: Option<Ipv6Addr> = Some(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));

    #[test]
    fn every_source_listed_by_preference_and_united() {
        let t0 = Instant::now();
        let mut k = Known64::default();
        assert!(k.set_config(&[net("64:ff9b::/96")]));
        assert!(!k.set_config(&[net("64:ff9b::/96")]));
        assert!(k.set_rfc7050(&[net("64:ff9b::/96"), net("2001:db8:7050::/96")]));
        let (changed, evicted) = k.advertised(t0, 2, "eth0", R, &[opt("2001:db8:64::/96", 1800)]);
        assert!(changed);
        assert_eq!(evicted, 0);
        let list = k.list();
        let got: Vec<_> = (list.iter())
            .map(|p| (p.source.as_str(), p.prefix.to_string(), p.interface.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("ra", "2001:db8:64::/96".into(), Some("eth0".into())),
                ("config", "64:ff9b::/96".into(), None),
                ("rfc7050", "64:ff9b::/96".into(), None),
                ("rfc7050", "2001:db8:7050::/96".into(), None),
            ]
        );
        assert_eq!(list[0].router, R);
        assert_eq!(list[0].expires, Some(t0 + Duration::from_secs(1800)));
        assert_eq!(
            k.union(),
            [
                net("64:ff9b::/96"),
                net("2001:db8:64::/96"),
                net("2001:db8:7050::/96")
            ]
        );
    }

    #[test]
    fn lifetimes_refresh_expire_and_withdraw() {
        let t0 = Instant::now();
        let mut k = Known64::default();
        k.advertised(t0, 2, "eth0", R, &[opt("2001:db8:64::/96", 600)]);
        k.advertised(t0, 3, "eth1", R, &[opt("2001:db8:64::/96", 60)]);
        assert_eq!(k.list().len(), 2, "one entry per interface");
        assert_eq!(k.next_expiry(), Some(t0 + Duration::from_secs(60)));
        assert!(!k.expire(t0 + Duration::from_secs(59)));
        assert!(k.expire(t0 + Duration::from_secs(60)));
        assert_eq!(k.list().len(), 1);
        // A refresh moves the expiry.
        let t1 = t0 + Duration::from_secs(500);
        k.advertised(t1, 2, "eth0", R, &[opt("2001:db8:64::/96", 600)]);
        assert_eq!(k.next_expiry(), Some(t1 + Duration::from_secs(600)));
        assert!(!k.expire(t0 + Duration::from_secs(700)));
        // Lifetime 0 withdraws at once; withdrawing the unknown changes nothing.
        assert_eq!(
            k.advertised(t1, 2, "eth0", R, &[opt("2001:db8:64::/96", 0)]),
            (true, 0)
        );
        assert!(k.list().is_empty());
        assert_eq!(
            k.advertised(t1, 2, "eth0", R, &[opt("2001:db8:64::/96", 0)]),
            (false, 0)
        );
        assert_eq!(k.next_expiry(), None);
    }

    #[test]
    fn prefixes_go_with_their_interface() {
        let t0 = Instant::now();
        let mut k = Known64::default();
        k.advertised(t0, 2, "eth0", R, &[opt("2001:db8:64::/96", 600)]);
        k.advertised(t0, 3, "wlan0", R, &[opt("64:ff9b::/96", 600)]);
        assert!(!k.retain_interfaces(|_, _| true));
        assert!(k.retain_interfaces(|i, name| i == 2 && name == "eth0"));
        assert_eq!(k.union(), [net("2001:db8:64::/96")]);
    }

    #[test]
    fn bounded_per_interface_and_in_all_the_oldest_gives_way() {
        let t0 = Instant::now();
        let mut k = Known64::default();
        let p = |i: usize| Pref64 {
            prefix: Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, i as u16, 0, 0, 0, 0, 0), 96)
                .unwrap(),
            lifetime: Duration::from_secs(600),
        };
        for i in 0..PER_INTERFACE + 2 {
            let at = t0 + Duration::from_secs(i as u64);
            let (_, evicted) = k.advertised(at, 2, "eth0", R, &[p(i)]);
            assert_eq!(evicted, usize::from(i >= PER_INTERFACE), "{i}");
        }
        let on_eth0 = k.union();
        assert_eq!(on_eth0.len(), PER_INTERFACE);
        assert!(!on_eth0.contains(&p(0).prefix) && !on_eth0.contains(&p(1).prefix));
        // Many interfaces: the total holds.
        let mut evicted = 0;
        for ifindex in 10..20u32 {
            for i in 0..PER_INTERFACE {
                let at = t0 + Duration::from_secs(100 + u64::from(ifindex) * 100 + i as u64);
                evicted += k
                    .advertised(at, ifindex, &format!("if{ifindex}"), R, &[p(i)])
                    .1;
            }
        }
        assert_eq!(k.list().len(), TOTAL);
        assert_eq!(evicted, PER_INTERFACE + 10 * PER_INTERFACE - TOTAL);
        // The oldest (eth0's) went first.
        assert!(
            k.list()
                .iter()
                .all(|e| e.interface.as_deref() != Some("eth0"))
        );
    }
}
