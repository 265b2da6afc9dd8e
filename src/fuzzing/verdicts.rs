//! The verdict picker: one input byte chooses the probe engine's verdicts
//! for an answer's addresses, so a target reaches every rewrite decision.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use ipnet::{IpNet, Ipv6Net};

use crate::probe::verdicts::{
    DestinationVerdict, Families, PathVerdict, PrefixVerdict, State, Verdicts, prefix_of,
};

/// Verdicts picked by one byte, for `addrs` (an answer's addresses): bits
/// 0-1 the IPv4 family's state, bits 2-3 the IPv6 family's (unknown, ok,
/// failed, failed); bits 4-5 where the addresses' own states start in the
/// rotation unknown, ok, failed, none (no verdict), one step per address
/// in sorted order; bit 6 a verdict on each address's /24 or /64, rotating
/// too; bit 7 the well-known NAT64 prefix. Generation 1, so the rewrite
/// acts.
pub fn verdicts(pick: u8, addrs: &[IpAddr]) -> Verdicts {
    let states = [State::Unknown, State::Ok, State::Failed, State::Failed];
    let family = |bits: u8| states[usize::from(bits & 3)];
    let start = usize::from(pick >> 4 & 3);
    let mut seen = addrs.to_vec();
    seen.sort();
    seen.dedup();
    let destinations = (seen.iter().enumerate())
        .filter_map(|(i, &address)| {
            let state = *states[..3].get((start + i) % 4)?;
            Some(DestinationVerdict {
                address,
                learned: true,
                state,
                paths: vec![PathVerdict {
                    source: address,
                    scope_id: 0,
                    state,
                    rtt: Some(Duration::from_millis(i as u64)),
                }],
            })
        })
        .collect();
    let mut prefixes: Vec<IpNet> = seen.iter().map(|&a| prefix_of(a)).collect();
    prefixes.sort();
    prefixes.dedup();
    prefixes.retain(|_| pick & 0x40 != 0);
    let nat64 = Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);
    Verdicts {
        generation: 1,
        families: Families {
            ipv4: family(pick),
            ipv6: family(pick >> 2),
        },
        destinations,
        prefixes: (prefixes.into_iter().enumerate())
            .map(|(i, prefix)| PrefixVerdict {
                prefix,
                state: states[(start + i + 1) % 3],
            })
            .collect(),
        nat64_prefixes: if pick & 0x80 != 0 {
            vec![nat64]
        } else {
            Vec::new()
        },
        ..Verdicts::default()
    }
}
