//! Unit tests of the path-MTU rule in virtual time: a large probe per
//! round, blackhole after two stalls towards a target that answered large
//! before, never from a target that does not speak TLS.

use super::tests::{Lab, config, dest, snapshot};
use super::*;
use crate::inventory::Class;
use crate::probe::verdicts::{Mtu, PathMtu, State};

const GUA: &str = "2001:db8:1::2";
const V4: &str = "192.168.1.2";

fn dual() -> Lab {
    let snap = snapshot(&[(GUA, Class::Gua), (V4, Class::Rfc1918)], &[], &[]);
    Lab::new(config(), &snap)
}

fn ms(n: u64) -> std::time::Duration {
    std::time::Duration::from_millis(n)
}

fn is_large(p: &ProbeRequest) -> bool {
    matches!(p.kind, Kind::Large { .. })
}

const FULL: ProbeResult = ProbeResult::Flight {
    rtt: std::time::Duration::from_millis(5),
    bytes: 6_000,
    stalled: false,
};
const STALL: ProbeResult = ProbeResult::Flight {
    rtt: std::time::Duration::from_millis(5),
    bytes: 0,
    stalled: true,
};

/// Small probes always answered; large ones get a full flight except over
/// IPv6 between `from` and `to` s, where they stall.
fn v6_blackhole(from: f64, to: f64) -> impl FnMut(f64, &ProbeRequest) -> Option<ProbeResult> {
    move |t, p| {
        let hole = dest(p).is_ipv6() && (from..to).contains(&t);
        Some(match (is_large(p), hole) {
            (false, _) => ProbeResult::Reachable { rtt: ms(5) },
            (true, false) => FULL,
            (true, true) => STALL,
        })
    }
}

fn mtu(lab: &mut Lab) -> PathMtu {
    lab.verdicts().path_mtu
}

/// The first instant the IPv6 path MTU is `want`, stepping 50 ms.
fn v6_mtu_at(
    lab: &mut Lab,
    want: Mtu,
    until: f64,
    mut net: impl FnMut(f64, &ProbeRequest) -> Option<ProbeResult>,
) -> Option<f64> {
    let mut t = (lab.now - lab.t0).as_secs_f64();
    while t < until {
        t += 0.05;
        lab.run(t, &mut net);
        if mtu(lab).ipv6 == want {
            return Some(t);
        }
    }
    None
}

#[test]
fn every_round_sends_one_large_probe_with_a_budget_counted_from_the_hello() {
    let mut lab = dual();
    lab.run(0.5, v6_blackhole(99.0, 99.0));
    let large: Vec<&ProbeRequest> = (lab.sent.iter())
        .map(|(_, p)| p)
        .filter(|p| is_large(p))
        .collect();
    assert_eq!(large.len(), 2, "one per source: {large:?}");
    assert_eq!(
        lab.sent.len(),
        2,
        "and no other probe: the target's carries it"
    );
    for p in large {
        let Kind::Large {
            target,
            connect,
            flight,
            mss,
        } = p.kind
        else {
            unreachable!()
        };
        assert_eq!(target.port(), 443);
        assert_eq!(target.is_ipv4(), p.source.is_ipv4());
        assert_eq!((connect, flight), (ms(1000), ms(1000)));
        assert_eq!(mss, None, "full-size segments, not a proof");
        assert_eq!(
            p.deadline - lab.t0,
            ms(1000),
            "the connect's, as any target's"
        );
    }
    assert_eq!(
        mtu(&mut lab),
        PathMtu {
            ipv4: Mtu::Ok,
            ipv6: Mtu::Ok
        }
    );
}

#[test]
fn a_blackhole_shows_after_a_stall_and_its_confirmation_and_heals_at_once() {
    let mut lab = dual();
    lab.run(5.0, v6_blackhole(5.0, 40.0));
    assert_eq!(mtu(&mut lab).ipv6, Mtu::Ok);
    let _ = lab.e.take_early_rounds();
    let at = v6_mtu_at(&mut lab, Mtu::Blackhole, 40.0, v6_blackhole(5.0, 40.0)).expect("found");
    let stalls: Vec<f64> = (lab.sent.iter())
        .filter(|(t, p)| is_large(p) && dest(p).is_ipv6() && *t >= lab.at(5.0))
        .map(|(t, _)| (*t - lab.t0).as_secs_f64())
        .collect();
    eprintln!("IPv6 large probes at {stalls:?}; blackhole at {at:.2} s");
    let [first, confirm, ..] = stalls[..] else {
        panic!("two large probes expected: {stalls:?}")
    };
    assert!(confirm - first < 0.1, "the confirmation follows at once");
    assert!(at <= confirm + 0.1, "blackhole at the confirmation's stall");
    assert!(
        (lab.e.take_early_rounds().iter()).any(|r| r.trigger == Trigger::PathMtu),
        "the confirmation is an early round"
    );
    // Small probes still answer: the family and IPv4 are untouched.
    let v = lab.verdicts();
    assert_eq!(v.families.ipv6, State::Ok);
    assert_eq!(v.path_mtu.ipv4, Mtu::Ok);
    // Repaired at 40 s: ok at the next round's full flight.
    let healed = v6_mtu_at(&mut lab, Mtu::Ok, 80.0, v6_blackhole(5.0, 40.0)).expect("heals");
    eprintln!("healed at {healed:.2} s (repair at 40 s, 10 s interval)");
    assert!(healed <= 40.0 + 11.05, "within one interval of the repair");
}

#[test]
fn one_stall_flaps_nothing() {
    let mut lab = dual();
    lab.run(5.0, v6_blackhole(99.0, 99.0));
    let before = lab.verdicts().generation;
    // One large probe stalls; its confirmation gets a full flight.
    let mut stalled = false;
    lab.run(40.0, |t, p| {
        Some(if !is_large(p) {
            ProbeResult::Reachable { rtt: ms(5) }
        } else if dest(p).is_ipv6() && t > 5.0 && !stalled {
            stalled = true;
            STALL
        } else {
            FULL
        })
    });
    assert!(stalled);
    assert_eq!(mtu(&mut lab).ipv6, Mtu::Ok);
    assert_eq!(
        lab.verdicts().generation,
        before,
        "nothing a reader sees moved"
    );
}

#[test]
fn a_target_that_never_answered_large_never_makes_a_blackhole() {
    // Silent after the hello (not TLS), from the start, for a long time.
    let mut lab = dual();
    lab.run(300.0, |_, p| {
        Some(if is_large(p) {
            STALL
        } else {
            ProbeResult::Reachable { rtt: ms(5) }
        })
    });
    let v = lab.verdicts();
    assert_eq!(v.families.ipv6, State::Ok);
    assert_eq!(
        v.path_mtu,
        PathMtu {
            ipv4: Mtu::Unknown,
            ipv6: Mtu::Unknown
        }
    );
    assert!(
        lab.e.take_early_rounds().is_empty(),
        "no confirmation rounds either"
    );
}

#[test]
fn short_replies_closed_connects_and_expiry_are_no_evidence() {
    let mut lab = dual();
    lab.run(5.0, v6_blackhole(99.0, 99.0));
    assert_eq!(mtu(&mut lab).ipv6, Mtu::Ok);
    // From then on the IPv6 target answers a large probe with a short
    // reply and closes (an alert), or closes with nothing, or the driver
    // never reports the flight: none of it is a stall.
    let mut n = 0;
    lab.run(200.0, |_, p| {
        if !is_large(p) {
            return Some(ProbeResult::Reachable { rtt: ms(5) });
        }
        if dest(p).is_ipv4() {
            return Some(FULL);
        }
        n += 1;
        let closed = |bytes| ProbeResult::Flight {
            rtt: ms(5),
            bytes,
            stalled: false,
        };
        Some(match n % 3 {
            0 => closed(7),
            1 => closed(0),
            _ => ProbeResult::Reachable { rtt: ms(5) },
        })
    });
    assert!(n >= 9, "{n}");
    assert_eq!(mtu(&mut lab).ipv6, Mtu::Ok);
    assert_eq!(lab.verdicts().families.ipv6, State::Ok);
    // A flight reported late, or for an id never connected, is ignored.
    let at = lab.now;
    lab.e.handle(at, 999_999, STALL);
    assert_eq!(mtu(&mut lab).ipv6, Mtu::Ok);
}

#[test]
fn a_family_without_a_working_source_has_no_mtu_verdict() {
    let mut lab = dual();
    lab.run(5.0, v6_blackhole(99.0, 99.0));
    // IPv6 dies entirely: small and large probes get nothing.
    lab.run(60.0, |_, p| {
        (dest(p).is_ipv4()).then_some(if is_large(p) {
            FULL
        } else {
            ProbeResult::Reachable { rtt: ms(5) }
        })
    });
    let v = lab.verdicts();
    assert_eq!(v.families.ipv6, State::Failed);
    assert_eq!(v.path_mtu.ipv6, Mtu::Unknown, "the family verdict says it");
    assert_eq!(v.path_mtu.ipv4, Mtu::Ok);
}

#[test]
fn large_probes_go_to_targets_that_answered_large_first() {
    let mut c = config();
    c.targets.push("[2001:db8:ffff::9]:443".parse().unwrap());
    c.targets.push("[2001:db8:ffff::a]:80".parse().unwrap());
    let snap = snapshot(&[(GUA, Class::Gua)], &[], &[]);
    let mut lab = Lab::new(c, &snap);
    let good: std::net::IpAddr = "2001:db8:ffff::9".parse().unwrap();
    lab.run(100.0, |_, p| {
        Some(match (is_large(p), dest(p).ip() == good) {
            (false, _) => ProbeResult::Reachable { rtt: ms(5) },
            (true, true) => FULL,
            (true, false) => STALL,
        })
    });
    let large: Vec<std::net::SocketAddr> = (lab.sent.iter())
        .filter(|(_, p)| is_large(p))
        .map(|(_, p)| dest(p))
        .collect();
    assert!(large.iter().all(|d| d.port() == 443), "{large:?}");
    // Until the good one answered, in turn; from then on only it.
    let first_good = large.iter().position(|d| d.ip() == good).expect("tried");
    assert!(first_good <= 1, "{large:?}");
    assert!(
        large[first_good..].iter().all(|d| d.ip() == good),
        "{large:?}"
    );
    assert_eq!(mtu(&mut lab).ipv6, Mtu::Ok);
}

/// Small probes answered; over IPv6 every full-size probe stalls from the
/// start, while a proof (small segments) gets its full flight.
fn v6_blackhole_from_start(t: f64, p: &ProbeRequest) -> Option<ProbeResult> {
    let _ = t;
    Some(match p.kind {
        Kind::Large { mss: Some(m), .. } => {
            assert!(m <= 1_220, "a proof fits a 1,280-byte IPv6 packet: {m}");
            FULL
        }
        Kind::Large { mss: None, .. } if dest(p).is_ipv6() => STALL,
        Kind::Large { mss: None, .. } => FULL,
        _ => ProbeResult::Reachable { rtt: ms(5) },
    })
}

#[test]
fn a_blackhole_there_from_the_start_is_found_through_a_proof_with_small_segments() {
    let mut lab = dual();
    let at = v6_mtu_at(&mut lab, Mtu::Blackhole, 60.0, v6_blackhole_from_start)
        .expect("a blackhole from the start is found");
    let v6: Vec<(f64, Option<u32>)> = (lab.sent.iter())
        .filter(|(_, p)| dest(p).is_ipv6())
        .filter_map(|(t, p)| match p.kind {
            Kind::Large { mss, .. } => Some(((*t - lab.t0).as_secs_f64(), mss)),
            _ => None,
        })
        .collect();
    eprintln!("IPv6 large probes (s, mss) {v6:?}; blackhole at {at:.2} s");
    let proofs = v6.iter().filter(|(_, m)| m.is_some()).count();
    assert_eq!(proofs, 1, "one proof makes the target known: {v6:?}");
    assert_eq!(v6[0].1, None, "the first probe is full-size: {v6:?}");
    assert_eq!(
        v6[1].1,
        Some(mtu::PROOF_MSS),
        "the stall's next is the proof: {v6:?}"
    );
    assert!(at < 25.0, "found within about two intervals: {at:.2} s");
    assert_eq!(lab.verdicts().path_mtu.ipv4, Mtu::Ok);
    assert_eq!(lab.verdicts().families.ipv6, State::Ok, "small probes work");
}
