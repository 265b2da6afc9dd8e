//! The engine under random network behaviour: whatever answers, in whatever
//! order, it never panics, never calls a source ok without a success from
//! it, never probes a forbidden address, and its generations only grow.

use std::collections::HashSet;
use std::net::IpAddr;

use proptest::prelude::*;

use super::addresses::forbidden;
use super::tests::{Lab, STUN6, dest, home, ms, sa, snapshot};
use super::*;
use crate::inventory::Class;
use crate::probe::verdicts::State;
use crate::testutil::ip;

#[derive(Debug, Clone)]
enum Op {
    Advance(u16),
    Answer(usize, u8, u16),
    Learn(u8, bool),
    Inventory(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u16..15_000).prop_map(Op::Advance),
        (any::<usize>(), 0u8..3, 0u16..2000).prop_map(|(i, k, r)| Op::Answer(i, k, r)),
        (any::<u8>(), any::<bool>()).prop_map(|(i, p)| Op::Learn(i, p)),
        (0u8..8).prop_map(Op::Inventory),
    ]
}

proptest! {
    /// Whatever the network does: no panic, no source ok without a
    /// success from it, no probe from or to a forbidden address, and
    /// generations that only grow.
    #[test]
    fn random_results_never_panic_or_invent_success(ops in proptest::collection::vec(op(), 1..120)) {
        let (mut c, _) = home();
        c.stun.push(sa(STUN6));
        c.max_destinations = 8;
        let all = [
            ("2001:db8:1::2", Class::Gua),
            ("192.168.1.2", Class::Rfc1918),
            ("fe80::2", Class::Lla),
        ];
        let mut lab = Lab::new(c, &snapshot(&all, &["192.168.1.1"], &["fe80::1"]));
        let mut out: Vec<ProbeRequest> = Vec::new();
        let mut succeeded: HashSet<(IpAddr, u32)> = HashSet::new();
        let mut generation = 0;
        let dests = ["198.51.100.7", "10.0.0.9", "2001:db8:77::1", "fd00::9", "127.0.0.1", "203.0.113.50"];
        for op in ops {
            match op {
                Op::Advance(d) => lab.now += ms(u64::from(d)),
                Op::Answer(i, kind, rtt) if !out.is_empty() => {
                    let p = out.swap_remove(i % out.len());
                    let outcome = match kind {
                        0 => ProbeResult::Unreachable,
                        1 => ProbeResult::Reachable { rtt: ms(u64::from(rtt)) },
                        _ => ProbeResult::StunMapped { rtt: ms(u64::from(rtt)), mapped: sa("198.51.100.1:1") },
                    };
                    if kind != 0 && lab.now <= p.deadline {
                        succeeded.insert((p.source, p.scope_id));
                    }
                    lab.e.handle(lab.now, p.id, outcome);
                }
                Op::Answer(..) => {}
                Op::Learn(i, public) => lab.e.learn(lab.now, ip(dests[usize::from(i) % dests.len()]), public),
                Op::Inventory(mask) => {
                    let some: Vec<_> = all.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, a)| *a).collect();
                    lab.e.set_inventory(lab.now, &snapshot(&some, &["192.168.1.1"], &["fe80::1"]));
                }
            }
            for p in lab.e.poll(lab.now) {
                prop_assert!(!forbidden(p.source) && !forbidden(dest(&p).ip()), "{p:?}");
                prop_assert!(p.deadline > lab.now);
                out.push(p);
            }
            if let Some(w) = lab.e.next_wakeup() {
                prop_assert!(w >= lab.t0);
            }
            if let Some(v) = lab.e.publish() {
                prop_assert!(v.generation > generation);
                generation = v.generation;
                for s in &v.sources {
                    if s.state == State::Ok {
                        prop_assert!(succeeded.contains(&(s.address, s.scope_id)), "{s:?} ok without a success");
                    }
                }
                for d in &v.destinations {
                    prop_assert_eq!(d.state == State::Ok, d.paths.iter().any(|p| p.state == State::Ok));
                }
            }
        }
    }
}
