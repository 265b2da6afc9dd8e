//! The rewrite over random verdicts and answers: it only removes or
//! reorders, never strands a name that could work, and orders by standing
//! then RTT.

use std::net::IpAddr;

use hickory_proto::rr::{RData, Record as HRecord, RecordType};
use proptest::prelude::*;

use super::tests::{DUAL, a, aaaa, cname, hmsg, message, name, verdicts, with_destination};
use super::*;
use crate::probe::verdicts::State;
use crate::testutil::ip;

/// Address pools the generated answers and verdicts draw from.
const V4: [&str; 4] = ["203.0.113.1", "203.0.113.2", "198.51.100.1", "192.168.1.50"];
const V6: [&str; 4] = [
    "2001:db8:ffff::1",
    "2001:db8:ffff::2",
    "2001:db8:eeee::1",
    "64:ff9b::cb00:7101",
];

fn state(i: u8) -> State {
    [State::Unknown, State::Ok, State::Failed][usize::from(i % 3)]
}

fn arb_verdicts() -> impl Strategy<Value = Verdicts> {
    (
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec((0usize..8, any::<u8>(), 1u64..200), 0..6),
        any::<bool>(),
    )
        .prop_map(|(f4, f6, dests, nat64)| {
            let mut v = verdicts(state(f4), state(f6));
            if nat64 {
                v.nat64_prefixes = vec!["64:ff9b::/96".parse().unwrap()];
            }
            for (i, s, rtt) in dests {
                let addr = if i < 4 { V4[i] } else { V6[i - 4] };
                if v.destination(ip(addr)).is_none() {
                    v = with_destination(v, addr, state(s), Some(rtt));
                }
            }
            v
        })
}

/// An answer: a CNAME or not, then addresses of the type drawn from
/// the pool (duplicates allowed), plus an unrelated TXT.
fn arb_answer(qtype: u16) -> impl Strategy<Value = Reply> {
    (
        any::<bool>(),
        proptest::collection::vec(0usize..4, 0..5),
        1u32..1000,
    )
        .prop_map(move |(with_cname, picks, ttl)| {
            let owner = if with_cname {
                "t.cdn.example.net."
            } else {
                DUAL
            };
            let mut answers = Vec::new();
            if with_cname {
                answers.push(cname(DUAL, owner));
            }
            for p in picks {
                answers.push(if qtype == rtype::A {
                    a(owner, V4[p], ttl)
                } else {
                    aaaa(owner, V6[p], ttl)
                });
            }
            let mut m = message(DUAL, qtype, answers, true);
            let txt = hickory_proto::rr::rdata::TXT::new(vec!["keep me".to_string()]);
            m.additionals.push(HRecord::from_rdata(
                name("x.example.com."),
                7,
                RData::TXT(txt),
            ));
            Reply::parse(&m.to_vec().unwrap()).unwrap()
        })
}

fn non_address_records(r: &Reply) -> Vec<HRecord> {
    let m = hmsg(r);
    let mut v: Vec<HRecord> = (m.answers.iter().chain(&m.authorities).chain(&m.additionals))
        .filter(|r| {
            !matches!(
                r.record_type(),
                RecordType::A | RecordType::AAAA | RecordType::SOA
            )
        })
        .cloned()
        .collect();
    v.sort_by_key(|r| r.to_string());
    v
}

fn sorted(mut v: Vec<IpAddr>) -> Vec<IpAddr> {
    v.sort();
    v
}

fn result(o: &Rewritten, upstream: &Reply) -> Reply {
    match o {
        Rewritten::Same | Rewritten::NeedOther => upstream.clone(),
        Rewritten::Reordered(r) | Rewritten::Filtered { reply: r, .. } => r.clone(),
    }
}

fn can_work(v: &Verdicts, addrs: &[IpAddr]) -> bool {
    addrs
        .iter()
        .any(|&a| judge(v, a).standing != Standing::Cannot)
}

proptest! {
    #[test]
    fn rewrites_only_remove_or_reorder_and_never_strand_a_name(
        v in arb_verdicts(),
        a_reply in arb_answer(rtype::A),
        aaaa_reply in arb_answer(rtype::AAAA),
        do_bit in any::<bool>(),
        filter_on in any::<bool>(),
    ) {
        let c = Context {
            verdicts: &v,
            filter: if filter_on { Filter::Auto } else { Filter::Off },
            break_dnssec: false,
        };
        let mut after = Vec::new();
        for (r, qtype, other) in [(&a_reply, rtype::A, &aaaa_reply), (&aaaa_reply, rtype::AAAA, &a_reply)] {
            let o = rewrite(r, qtype, do_bit, &c, Other::Reply(other));
            prop_assert_ne!(&o, &Rewritten::NeedOther);
            let out = result(&o, r);
            // It parses and its other records are the upstream's.
            prop_assert!(Reply::parse(out.bytes()).is_ok());
            prop_assert_eq!(non_address_records(&out), non_address_records(r));
            let (before, now) = (r.addresses(), out.addresses());
            match &o {
                Rewritten::Filtered { removed, nodata, .. } => {
                    prop_assert!(filter_on);
                    // A sub-multiset, smaller by `removed`, and every
                    // address removed is one that cannot work.
                    let mut rest = before.clone();
                    for x in &now {
                        let i = rest.iter().position(|y| y == x);
                        prop_assert!(i.is_some(), "{} was added", x);
                        rest.remove(i.unwrap());
                    }
                    prop_assert_eq!(rest.len(), *removed);
                    prop_assert!(rest.iter().all(|&x| judge(&v, x).standing == Standing::Cannot));
                    prop_assert_eq!(*nodata, now.is_empty());
                    if *nodata {
                        prop_assert!(out.negative_ttl().is_some(), "NODATA carries an SOA");
                    }
                    prop_assert!(extended_errors(out.bytes()).iter().any(|e| e.0 == EDE_FILTERED));
                }
                _ => prop_assert_eq!(sorted(before.clone()), sorted(now.clone())),
            }
            after.push(now);
        }
        // Never strand a name: if some address of it could work, some
        // still does.
        let all_before: Vec<IpAddr> = a_reply.addresses().into_iter().chain(aaaa_reply.addresses()).collect();
        let all_after: Vec<IpAddr> = after.concat();
        if can_work(&v, &all_before) {
            prop_assert!(can_work(&v, &all_after), "stranded: {:?} -> {:?}", all_before, all_after);
        }
    }

    #[test]
    fn orders_by_standing_then_rtt(v in arb_verdicts(), r in arb_answer(rtype::A)) {
        let c = Context { verdicts: &v, filter: Filter::Off, break_dnssec: false };
        let out = result(&rewrite(&r, rtype::A, false, &c, Other::Unasked), &r);
        let ranks: Vec<_> = out.addresses().iter().map(|&a| judge(&v, a).rank()).collect();
        prop_assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{:?}", ranks);
    }
}
