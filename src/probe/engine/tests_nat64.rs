//! NAT64 prefixes in the engine: every source published with its origin,
//! a router's prefix at once and gone at its expiry (the engine wakes for
//! it), with its interface, and the generation rule for refreshes.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use ipnet::Ipv6Net;

use super::tests::{config, snapshot};
use super::*;
use crate::inventory::Class;
use crate::inventory::ndopt::Pref64;
use crate::probe::known64::Source;

fn net(s: &str) -> Ipv6Net {
    s.parse().unwrap()
}

fn pref64(prefix: &str, secs: u64) -> Vec<Pref64> {
    vec![Pref64 {
        prefix: net(prefix),
        lifetime: Duration::from_secs(secs),
    }]
}

const ROUTER: Option<Ipv6Addr> = Some(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));

/// An IPv6-only host on eth0 (ifindex 2).
fn engine(t0: Instant) -> Engine {
    let mut e = Engine::new(config());
    e.set_inventory(
        t0,
        &snapshot(
            &[("2001:db8:1::2", Class::Gua), ("fe80::2", Class::Lla)],
            &[],
            &["fe80::1"],
        ),
    );
    e.publish();
    e
}

#[test]
fn every_source_is_published_with_its_origin_and_a_router_prefix_at_once() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    e.set_config_nat64(&[net("64:ff9b::/96")]);
    e.set_nat64_prefixes(vec![net("2001:db8:7050::/96"), net("64:ff9b::/96")]);
    let v = e.publish().expect("new prefixes are published");
    assert_eq!(
        v.nat64_prefixes,
        [net("64:ff9b::/96"), net("2001:db8:7050::/96")]
    );
    let g = v.generation;
    assert_eq!(
        e.router_advertisement(t0, 2, ROUTER, &pref64("2001:db8:64::/96", 1800)),
        0
    );
    let v = e.publish().expect("published at once");
    assert!(v.generation > g);
    let got: Vec<_> = (v.nat64.iter())
        .map(|p| (p.source, p.prefix, p.interface.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (Source::Ra, net("2001:db8:64::/96"), Some("eth0")),
            (Source::Config, net("64:ff9b::/96"), None),
            (Source::Rfc7050, net("64:ff9b::/96"), None),
            (Source::Rfc7050, net("2001:db8:7050::/96"), None),
        ]
    );
    assert_eq!(v.nat64[0].router, ROUTER);
    assert_eq!(v.nat64[0].expires, Some(t0 + Duration::from_secs(1800)));
    assert_eq!(v.preferred_nat64(), Some(net("2001:db8:64::/96")));
    assert_eq!(v.nat64_prefixes.len(), 3);
}

#[test]
fn an_advertised_prefix_expires_on_time_and_the_engine_wakes_for_it() {
    let t0 = Instant::now();
    let mut e = Engine::new(EngineConfig {
        targets: vec![],
        destinations: false,
        ..config()
    });
    e.set_inventory(t0, &snapshot(&[("2001:db8:1::2", Class::Gua)], &[], &[]));
    e.router_advertisement(t0, 2, ROUTER, &pref64("2001:db8:64::/96", 240));
    assert_eq!(
        e.publish().unwrap().nat64_prefixes,
        [net("2001:db8:64::/96")]
    );
    // A silent engine sleeps until the expiry, no longer.
    let expiry = t0 + Duration::from_secs(240);
    assert_eq!(e.next_wakeup(), Some(expiry));
    e.poll(expiry - Duration::from_millis(1));
    assert!(e.publish().is_none());
    e.poll(expiry);
    let v = e.publish().expect("the expiry is published");
    assert!(v.nat64_prefixes.is_empty() && v.nat64.is_empty());
    assert_eq!(e.next_wakeup(), None);
}

#[test]
fn a_refresh_publishes_the_new_expiry_under_the_same_generation() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    e.router_advertisement(t0, 2, ROUTER, &pref64("2001:db8:64::/96", 600));
    let g = e.publish().unwrap().generation;
    let t1 = t0 + Duration::from_secs(200);
    e.router_advertisement(t1, 2, ROUTER, &pref64("2001:db8:64::/96", 600));
    let v = e.publish().expect("the new expiry is shown");
    assert_eq!(v.generation, g, "nothing a reader decides on moved");
    assert_eq!(v.nat64[0].expires, Some(t1 + Duration::from_secs(600)));
    // Lifetime 0 withdraws it: that is a change.
    e.router_advertisement(t1, 2, ROUTER, &pref64("2001:db8:64::/96", 0));
    let v = e.publish().unwrap();
    assert!(v.generation > g);
    assert!(v.nat64_prefixes.is_empty());
}

#[test]
fn a_prefix_goes_with_its_interface_and_unknown_interfaces_are_ignored() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    // ifindex 9 is not in the (filtered) inventory.
    e.router_advertisement(t0, 9, ROUTER, &pref64("64:ff9b::/96", 600));
    e.router_advertisement(t0, 2, ROUTER, &pref64("2001:db8:64::/96", 600));
    e.set_config_nat64(&[net("2001:db8:c0::/96")]);
    assert_eq!(
        e.publish().unwrap().nat64_prefixes,
        [net("2001:db8:64::/96"), net("2001:db8:c0::/96")]
    );
    // eth0 goes (down, or excluded by probe.interfaces).
    e.set_inventory(t0, &snapshot(&[], &[], &[]));
    let v = e.publish().unwrap();
    assert_eq!(v.nat64_prefixes, [net("2001:db8:c0::/96")]);
    assert_eq!(v.nat64[0].source, Source::Config);
}

#[test]
fn a_full_table_reports_what_gave_way() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    let mut evicted = 0;
    for i in 0..20u16 {
        let p = Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, i, 0, 0, 0, 0, 0), 96).unwrap();
        let at = t0 + Duration::from_secs(u64::from(i));
        evicted += e.router_advertisement(
            at,
            2,
            ROUTER,
            &[Pref64 {
                prefix: p,
                lifetime: Duration::from_secs(600),
            }],
        );
    }
    assert_eq!(evicted, 4);
    assert_eq!(e.publish().unwrap().nat64.len(), 16);
}
