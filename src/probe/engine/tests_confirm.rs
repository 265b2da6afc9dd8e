//! Unit tests of the early rounds in virtual time: the quick confirmation
//! of a bad round, stuck connects, gateway changes, and what they cost.

use std::net::{IpAddr, SocketAddr};

use super::tests::{Lab, V6_TARGET, config, dest, fail_first, sa, snapshot, up};
use super::*;
use crate::inventory::Class;
use crate::probe::verdicts::State;
use crate::testutil::ip;

const GUA: &str = "2001:db8:1::2";
const V4: &str = "192.168.1.2";

fn dual() -> Lab {
    let snap = snapshot(&[(GUA, Class::Gua), (V4, Class::Rfc1918)], &[], &[]);
    Lab::new(config(), &snap)
}

/// The network answers IPv4 always and IPv6 until `broken` s.
fn v6_breaks_at(broken: f64) -> impl FnMut(f64, &ProbeRequest) -> Option<ProbeResult> {
    move |t, p| (dest(p).is_ipv4() || t < broken).then(|| ProbeResult::Reachable { rtt: ms(5) })
}

/// The first instant at which `src` is failed, stepping 50 ms up to `until`.
fn failed_at(
    lab: &mut Lab,
    src: &str,
    until: f64,
    mut net: impl FnMut(f64, &ProbeRequest) -> Option<ProbeResult>,
) -> Option<f64> {
    let mut t = (lab.now - lab.t0).as_secs_f64();
    while t < until {
        t += 0.05;
        lab.run(t, &mut net);
        if lab.source(src).state == State::Failed {
            return Some(t);
        }
    }
    None
}

fn ms(n: u64) -> std::time::Duration {
    std::time::Duration::from_millis(n)
}

#[test]
fn a_bad_round_is_confirmed_one_second_later_not_an_interval() {
    let mut lab = dual();
    lab.run(5.0, v6_breaks_at(5.0));
    assert_eq!(lab.source(GUA).state, State::Ok);
    let _ = lab.e.take_early_rounds();
    // The next round starts within [9, 11] s; it and its confirmation fail.
    let failed = failed_at(&mut lab, GUA, 20.0, v6_breaks_at(5.0)).expect("fails");
    let v6_rounds: Vec<f64> = (lab.sent.iter())
        .filter(|(_, p)| dest(p) == sa(V6_TARGET))
        .map(|(t, _)| (*t - lab.t0).as_secs_f64())
        .collect();
    eprintln!("IPv6 rounds at {v6_rounds:?}, failed at {failed:.2} s");
    let [.., first_bad, confirm] = v6_rounds[..] else {
        panic!("two bad rounds expected: {v6_rounds:?}")
    };
    assert!((confirm - first_bad - 1.0).abs() < 1e-6, "{v6_rounds:?}");
    assert!(
        failed <= first_bad + 2.0 + 0.05,
        "failed at {failed}, first bad round at {first_bad}"
    );
    assert_eq!(
        lab.e.take_early_rounds(),
        vec![EarlyRound {
            source: ip(GUA),
            trigger: Trigger::Miss
        }]
    );
    // IPv4 saw no early round and stays ok.
    assert_eq!(lab.source(V4).state, State::Ok);
}

#[test]
fn one_lost_round_flaps_nothing_and_the_schedule_goes_on() {
    let snap = snapshot(&[(GUA, Class::Gua)], &[], &[]);
    let mut lab = Lab::new(config(), &snap);
    lab.run(5.0, |_, _| up(5));
    let gen_before = lab.verdicts().generation;
    // The first round after 5 s is lost, its confirmation answered.
    lab.run(40.0, fail_first(1, 5));
    assert_eq!(lab.source(GUA).state, State::Ok);
    assert_eq!(
        lab.verdicts().generation,
        gen_before,
        "nothing a reader sees moved"
    );
    let early = lab.e.take_early_rounds();
    assert_eq!(early.len(), 1, "{early:?}");
    // After the confirmation, rounds are an interval apart again.
    let starts: Vec<f64> = lab
        .sent
        .iter()
        .map(|(t, _)| (*t - lab.t0).as_secs_f64())
        .collect();
    for w in starts.windows(2).skip(2) {
        assert!((9.0..=11.0).contains(&(w[1] - w[0])), "{starts:?}");
    }
}

#[test]
fn a_stuck_connect_starts_a_round_of_its_family_at_once() {
    let mut lab = dual();
    lab.run(3.0, v6_breaks_at(3.0));
    assert_eq!(lab.source(GUA).state, State::Ok);
    let sent_before = lab.sent.len();
    // IPv6 broke at 3 s; an application's SYN is stuck by 4.2 s.
    lab.run(4.2, v6_breaks_at(3.0));
    let at = lab.now;
    assert_eq!(
        lab.e.syn_stuck(at, sa("[2001:db8:abcd::1]:443")),
        Some(vec![ip(GUA)])
    );
    let failed =
        failed_at(&mut lab, GUA, 9.0, v6_breaks_at(3.0)).expect("fails before the next round");
    eprintln!("stuck connect seen at 4.2 s, IPv6 source failed at {failed:.2} s");
    assert!(failed <= 4.2 + 2.0 + 0.05, "{failed}");
    let new: Vec<IpAddr> = lab.sent[sent_before..]
        .iter()
        .map(|(_, p)| p.source)
        .collect();
    assert!(
        new.iter().all(|s| *s == ip(GUA)),
        "only IPv6 was probed: {new:?}"
    );
    assert_eq!(
        lab.e.take_early_rounds(),
        vec![
            EarlyRound {
                source: ip(GUA),
                trigger: Trigger::SynSent
            },
            EarlyRound {
                source: ip(GUA),
                trigger: Trigger::Miss
            },
        ]
    );
}

#[test]
fn stuck_connects_that_say_nothing_are_ignored() {
    let mut c = config();
    c.stun = vec![sa("[2001:db8:ffff::3]:3478")];
    let snap = snapshot(
        &[(GUA, Class::Gua), (V4, Class::Rfc1918)],
        &["192.168.1.1"],
        &["2001:db8:1::1"],
    );
    let mut lab = Lab::new(c, &snap);
    lab.run(3.0, |_, _| up(5));
    let now = lab.now;
    for d in [
        "192.168.7.7:443",         // private
        "[fd00::1]:443",           // ULA
        "[fe80::1]:443",           // link-local
        "198.18.0.1:443",          // benchmarking, not global
        "127.0.0.1:443",           // loopback
        V6_TARGET,                 // the engine's own probe
        "[2001:db8:ffff::3]:3478", // its STUN server
        "[2001:db8:1::1]:53",      // its gateway probe
    ] {
        assert_eq!(lab.e.syn_stuck(now, sa(d)), None, "{d}");
    }
    // A failed family is not confirmed again: its rounds go on as usual.
    lab.run(30.0, v6_breaks_at(3.0));
    assert_eq!(lab.source(GUA).state, State::Failed);
    let now = lab.now;
    assert_eq!(
        lab.e.syn_stuck(now, sa("[2001:db8:abcd::1]:443")),
        Some(vec![])
    );
    // A round in flight is not doubled.
    let snap = snapshot(&[(GUA, Class::Gua)], &[], &[]);
    let mut lab = Lab::new(config(), &snap);
    let t0 = lab.t0;
    assert!(!lab.e.poll(t0).is_empty());
    assert_eq!(
        lab.e.syn_stuck(t0, sa("[2001:db8:abcd::1]:443")),
        Some(vec![])
    );
    // A silent engine takes no signal at all.
    let mut silent = Engine::new(EngineConfig::default());
    silent.set_inventory(t0, &snap);
    assert!(!silent.wants_stuck_connects());
    assert_eq!(silent.syn_stuck(t0, sa("[2001:db8:abcd::1]:443")), None);
}

#[test]
fn stuck_connects_to_a_dead_server_cost_one_round_per_interval() {
    let snap = snapshot(&[(GUA, Class::Gua)], &[], &[]);
    let mut lab = Lab::new(config(), &snap);
    lab.run(2.0, |_, _| up(5));
    // An application retries a dead server every second for 120 s; the
    // family works.
    let mut taken = 0;
    for s in 0..120 {
        lab.run(2.0 + f64::from(s), |_, _| up(5));
        let now = lab.now;
        let started = lab.e.syn_stuck(now, sa("[2001:db8:dead::1]:443"));
        taken += usize::from(!started.expect("a signal").is_empty());
    }
    let rounds = lab.sent.len();
    eprintln!(
        "stuck connects every second for 120 s: {taken} early rounds, {rounds} rounds in all"
    );
    // 3 at once, then one per 10 s interval.
    assert!((14..=16).contains(&taken), "{taken}");
    assert_eq!(lab.source(GUA).state, State::Ok);
}

#[test]
fn a_gateway_change_probes_its_family_at_once() {
    let before = snapshot(
        &[(GUA, Class::Gua), (V4, Class::Rfc1918)],
        &["192.168.1.1"],
        &["2001:db8:1::1"],
    );
    let mut lab = Lab::new(config(), &before);
    lab.run(3.0, |_, _| up(5));
    let _ = lab.e.take_early_rounds();
    let after = snapshot(
        &[(GUA, Class::Gua), (V4, Class::Rfc1918)],
        &["192.168.1.1"],
        &["2001:db8:1::9"],
    );
    let now = lab.now;
    lab.e.set_inventory(now, &after);
    let probes = lab.e.poll(now);
    assert!(!probes.is_empty());
    assert!(probes.iter().all(|p| p.source == ip(GUA)), "{probes:?}");
    assert_eq!(
        lab.e.take_early_rounds(),
        vec![EarlyRound {
            source: ip(GUA),
            trigger: Trigger::Gateway
        }]
    );
    // The same inventory again changes nothing.
    lab.e.set_inventory(now, &after);
    assert!(lab.e.poll(now).iter().all(|p| p.deadline > now));
    assert!(lab.e.take_early_rounds().is_empty());
}

#[test]
fn idle_healthy_host_sends_no_more_than_one_round_per_interval() {
    let mut lab = dual();
    lab.run(600.0, |_, _| up(5));
    let per_source = |src: &str| lab.sent.iter().filter(|(_, p)| p.source == ip(src)).count();
    let (v6, v4) = (per_source(GUA), per_source(V4));
    let large = (lab.sent.iter())
        .filter(|(_, p)| matches!(p.kind, Kind::Large { .. }))
        .count();
    eprintln!(
        "600 s idle and healthy, 10 s interval: {v6} IPv6 probes, {v4} IPv4 probes, \
         {large} of them carrying a path-MTU probe"
    );
    // One target per family: at most one probe per 9 s (the jitter's floor).
    assert!(v6 <= 600 / 9 + 1 && v4 <= 600 / 9 + 1, "{v6} {v4}");
    assert!(lab.e.take_early_rounds().is_empty());
}

#[test]
fn a_stuck_connect_to_a_learned_destination_tries_it_again_at_once() {
    let mut lab = dual();
    let server = ip("2001:db8:abcd::80");
    lab.e.learn(lab.t0, server, true);
    lab.run(3.0, v6_breaks_at(3.0));
    let v = lab.verdicts();
    assert_eq!(v.destination(server).map(|d| d.state), Some(State::Ok));
    let tries_before = lab
        .sent
        .iter()
        .filter(|(_, p)| dest(p).ip() == server)
        .count();
    lab.run(4.2, v6_breaks_at(3.0));
    let now = lab.now;
    assert!(lab.e.syn_stuck(now, SocketAddr::new(server, 80)).is_some());
    // 443 times out after 1 s, 80 follows at once and times out too.
    lab.run(6.3, v6_breaks_at(3.0));
    let v = lab.verdicts();
    let tries: Vec<f64> = (lab.sent.iter())
        .filter(|(_, p)| dest(p).ip() == server)
        .map(|(t, _)| (*t - lab.t0).as_secs_f64())
        .collect();
    eprintln!("tries of the learned destination at {tries:?}");
    assert_eq!(tries.len(), tries_before + 2, "{tries:?}");
    assert_eq!(v.destination(server).map(|d| d.state), Some(State::Failed));
    // Found dead: further stuck connects do not try it again.
    let now = lab.now;
    assert!(lab.e.syn_stuck(now, SocketAddr::new(server, 80)).is_some());
    lab.run(8.0, v6_breaks_at(3.0));
    let after = lab
        .sent
        .iter()
        .filter(|(_, p)| dest(p).ip() == server)
        .count();
    assert_eq!(after, tries.len());
    // IPv6 is repaired at 8 s: the next round (10 s ± 10 % after 5.2 s) finds the
    // source ok again, and the destination it found dead is tried at once,
    // although no answer names it again.
    let mut revived = None;
    while lab.now < lab.at(17.0) {
        let t = (lab.now - lab.t0).as_secs_f64() + 0.05;
        lab.run(t, |_, _| up(5));
        if revived.is_none()
            && lab.verdicts().destination(server).map(|d| d.state) == Some(State::Ok)
        {
            revived = Some(t);
        }
    }
    let source_ok = lab
        .sent
        .iter()
        .rev()
        .find(|(_, p)| dest(p) == sa(V6_TARGET))
        .map(|(t, _)| (*t - lab.t0).as_secs_f64());
    eprintln!("repaired at 8 s: source round at {source_ok:?}, destination ok at {revived:?}");
    let (Some(round), Some(revived)) = (source_ok, revived) else {
        panic!(
            "the destination never came back: {:?}",
            lab.verdicts().destination(server)
        );
    };
    assert!(revived <= round + 0.1, "{revived} {round}");
}
