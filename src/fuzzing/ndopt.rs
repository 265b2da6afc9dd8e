//! The `ndopt` target: rtnetlink ND user option messages (router
//! advertisement options, RFC 8781 PREF64) and the table they feed.

use std::time::{Duration, Instant};

use crate::inventory::ndopt;
use crate::probe::known64::{self, Known64};

/// Parses any bytes as a datagram of the `RTNLGRP_ND_USEROPT` group, as one
/// message body and as one option, and feeds what parses into the table of
/// advertised NAT64 prefixes. Checks that every prefix has an RFC 6052
/// length with bits 64–71 clear, that the interface index is positive, and
/// that the table keeps its bounds.
pub fn ndopt(data: &[u8]) {
    let mut all = ndopt::datagram(data);
    all.extend(ndopt::useropt(data));
    if let Some(p) = ndopt::pref64(data) {
        all.push(ndopt::UserOpts {
            ifindex: 1,
            router: None,
            pref64: vec![p],
        });
    }
    let t0 = Instant::now();
    let mut table = Known64::default();
    for (i, ra) in all.iter().enumerate() {
        assert!(ra.ifindex > 0, "interface index {}", ra.ifindex);
        for p in &ra.pref64 {
            assert!(
                crate::probe::nat64::LENGTHS.contains(&p.prefix.prefix_len()),
                "{p:?}"
            );
            assert_eq!(p.prefix.network().octets()[8], 0, "{p:?}");
            assert_eq!(p.prefix, p.prefix.trunc(), "host bits set: {p:?}");
        }
        // Interfaces folded onto a few, so the per-interface bound bites.
        let ifindex = ra.ifindex % 5;
        let name = format!("if{ifindex}");
        let at = t0 + Duration::from_secs(i as u64);
        table.advertised(at, ifindex, &name, ra.router, &ra.pref64);
    }
    let list = table.list();
    assert!(list.len() <= known64::TOTAL);
    for ifindex in 0..5 {
        let name = format!("if{ifindex}");
        let on = (list.iter())
            .filter(|p| p.interface.as_deref() == Some(name.as_str()))
            .count();
        assert!(on <= known64::PER_INTERFACE, "{on} on {name}");
    }
}
