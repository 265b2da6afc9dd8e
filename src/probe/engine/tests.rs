//! Unit tests of the engine in virtual time: the hysteresis and generation
//! rules, the flags, learned destinations and the schedule. The builders and
//! the `Lab` event loop are shared with `tests_random`.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::schedule::GATEWAY_PORT;
use super::state::{SourceKey, smooth};
use super::*;
use crate::inventory::{Address, Class, Snapshot};
use crate::probe::verdicts::{Families, Flags, SourceVerdict, State, Verdicts};
use crate::testutil::{address, gateway, ip};

pub(super) const V4_TARGET: &str = "192.0.2.1:443";
pub(super) const V6_TARGET: &str = "[2001:db8:ffff::1]:443";
const STUN4: &str = "192.0.2.3:3478";
pub(super) const STUN6: &str = "[2001:db8:ffff::3]:3478";

pub(super) fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// 10 s rounds, 1 s timeout, one TCP target per family, no STUN.
pub(super) fn config() -> EngineConfig {
    EngineConfig {
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(1),
        targets: vec![sa(V4_TARGET), sa(V6_TARGET)],
        stun: vec![],
        destinations: true,
        rate: 20,
        burst: 20,
        max_destinations: 256,
        seed: 7,
    }
}

/// A source as `address` builds it, of the class the test spells out (the
/// one `classify` gives), so each test shows what kind of source it probes
/// from.
fn addr(s: &str, class: Class) -> Address {
    Address {
        class,
        ..address(s)
    }
}

pub(super) fn snapshot(addresses: &[(&str, Class)], gw4: &[&str], gw6: &[&str]) -> Snapshot {
    Snapshot {
        addresses: addresses.iter().map(|&(a, c)| addr(a, c)).collect(),
        gateways4: gw4.iter().map(|g| gateway(g)).collect(),
        gateways6: gw6.iter().map(|g| gateway(g)).collect(),
    }
}

pub(super) fn dest(p: &ProbeRequest) -> SocketAddr {
    match p.kind {
        Kind::Tcp(d) | Kind::Stun(d) | Kind::Large { target: d, .. } => d,
    }
}

pub(super) fn up(rtt: u64) -> Option<ProbeResult> {
    Some(ProbeResult::Reachable { rtt: ms(rtt) })
}

/// A network that loses the first `n` probes it sees, then answers every
/// one in `rtt` ms.
pub(super) fn fail_first(
    n: usize,
    rtt: u64,
) -> impl FnMut(f64, &ProbeRequest) -> Option<ProbeResult> {
    let mut seen = 0;
    move |_, _| {
        seen += 1;
        (seen > n).then(|| ProbeResult::Reachable { rtt: ms(rtt) })
    }
}

/// An engine in virtual time: `t0` plus offsets in seconds.
pub(super) struct Lab {
    pub(super) e: Engine,
    pub(super) t0: Instant,
    pub(super) now: Instant,
    pub(super) sent: Vec<(Instant, ProbeRequest)>,
}

impl Lab {
    pub(super) fn new(config: EngineConfig, snapshot: &Snapshot) -> Lab {
        let t0 = Instant::now();
        let mut e = Engine::new(config);
        e.set_inventory(t0, snapshot);
        Lab {
            e,
            t0,
            now: t0,
            sent: Vec::new(),
        }
    }

    pub(super) fn at(&self, secs: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(secs)
    }

    fn secs(&self) -> f64 {
        (self.now - self.t0).as_secs_f64()
    }

    /// The event loop up to `until`: wake when the engine asks, poll,
    /// and let `net` answer each probe at once (`None`: no answer, so
    /// it expires at its deadline).
    pub(super) fn run(
        &mut self,
        until: f64,
        mut net: impl FnMut(f64, &ProbeRequest) -> Option<ProbeResult>,
    ) {
        let end = self.at(until);
        for _ in 0..1_000_000 {
            match self.e.next_wakeup() {
                Some(t) if t <= end => self.now = self.now.max(t),
                _ => {
                    self.now = end;
                    return;
                }
            }
            for p in self.e.poll(self.now) {
                self.sent.push((self.now, p.clone()));
                if let Some(o) = net(self.secs(), &p) {
                    // The driver reports a large probe's connect first.
                    if let ProbeResult::Flight { rtt, .. } = o {
                        self.e
                            .handle(self.now, p.id, ProbeResult::Reachable { rtt });
                    }
                    self.e.handle(self.now, p.id, o);
                }
            }
        }
        panic!("event loop does not advance at {}", self.secs());
    }

    pub(super) fn verdicts(&mut self) -> Arc<Verdicts> {
        self.e.publish();
        self.e.verdicts()
    }

    pub(super) fn source(&mut self, s: &str) -> SourceVerdict {
        let v = self.verdicts();
        v.sources
            .iter()
            .find(|v| v.address == ip(s))
            .cloned()
            .expect("source in verdicts")
    }

    fn flags(&mut self) -> Flags {
        self.verdicts().flags.clone()
    }
}

#[test]
fn fresh_engine_and_fresh_sources_are_unknown_never_failed() {
    let e = Engine::new(config());
    let v = e.verdicts();
    assert_eq!(v.generation, 0);
    assert_eq!(
        v.families,
        Families {
            ipv4: State::Unknown,
            ipv6: State::Unknown
        }
    );
    assert_eq!(v.flags, Flags::default());

    let snap = snapshot(
        &[
            ("2001:db8:1::2", Class::Gua),
            ("192.168.1.2", Class::Rfc1918),
        ],
        &[],
        &[],
    );
    let mut lab = Lab::new(config(), &snap);
    let v = lab.verdicts();
    assert_eq!(v.generation, 1);
    assert!(
        v.sources
            .iter()
            .all(|s| s.state == State::Unknown && s.link == State::Unknown)
    );
    assert_eq!(
        v.families,
        Families {
            ipv4: State::Unknown,
            ipv6: State::Unknown
        }
    );
    assert!(!v.flags.nat44_tried && !v.flags.nptv6_tried && !v.flags.gua_ok && !v.flags.ipv4_ok);

    // One round with no answer at all is still no verdict (the first
    // round ends at its 1 s timeout, its confirmation runs from 1 to 2 s).
    lab.run(1.5, |_, _| None);
    let v = lab.verdicts();
    assert!(v.sources.iter().all(|s| s.state == State::Unknown), "{v:?}");
    assert_eq!(v.families.ipv6, State::Unknown);
    // The second makes it failed.
    lab.run(2.5, |_, _| None);
    assert_eq!(lab.source("2001:db8:1::2").state, State::Failed);
    assert_eq!(lab.verdicts().families.ipv6, State::Failed);
}

#[test]
fn hysteresis_fails_after_two_bad_rounds_and_recovers_at_the_first_success() {
    let snap = snapshot(&[("2001:db8:1::2", Class::Gua)], &[], &[]);
    let mut lab = Lab::new(config(), &snap);
    // Round k starts within [9k, 11k] s and ends 1 s later at most, so
    // the checks at 5, 15, 25, 35 s fall between rounds.
    lab.run(5.0, |_, _| up(10));
    assert_eq!(lab.source("2001:db8:1::2").state, State::Ok);
    lab.run(15.0, fail_first(1, 10));
    assert_eq!(
        lab.source("2001:db8:1::2").state,
        State::Ok,
        "one bad round is not enough"
    );
    lab.run(25.0, |_, _| None);
    assert_eq!(lab.source("2001:db8:1::2").state, State::Failed);
    assert!(!lab.flags().gua_ok);
    lab.run(35.0, |_, _| up(10));
    assert_eq!(lab.source("2001:db8:1::2").state, State::Ok);
    assert!(lab.flags().gua_ok);
}

#[test]
fn one_answered_target_is_enough_and_resets_the_count() {
    let mut c = config();
    c.targets.push(sa("[2001:db8:eeee::1]:443"));
    let snap = snapshot(&[("2001:db8:1::2", Class::Gua)], &[], &[]);
    let mut lab = Lab::new(c, &snap);
    let first_only = |_: f64, p: &ProbeRequest| {
        (dest(p) == sa(V6_TARGET)).then(|| ProbeResult::Reachable { rtt: ms(5) })
    };
    // Every other round reaches the first target: fail, success (the
    // quick confirmation), fail, success; never two misses in a row.
    let mut rounds = 0;
    lab.run(25.0, |t, p| {
        if dest(p) == sa(V6_TARGET) {
            rounds += 1;
        }
        if rounds % 2 == 0 {
            first_only(t, p)
        } else {
            None
        }
    });
    assert_eq!(lab.source("2001:db8:1::2").state, State::Ok);
    let v = lab.verdicts();
    assert_eq!(
        v.destination(ip("2001:db8:eeee::1")).unwrap().state,
        State::Failed
    );
    assert_eq!(v.destination(sa(V6_TARGET).ip()).unwrap().state, State::Ok);
    assert_eq!(v.prefix_state(ip("2001:db8:eeee::99")), State::Failed);
    assert_eq!(v.prefix_state(ip("2001:db8:ffff::99")), State::Ok);
    assert_eq!(v.prefix_state(ip("2001:db8:abcd::1")), State::Unknown);
}

#[test]
fn rtt_is_smoothed_as_tcp_srtt() {
    // RFC 6298 §2.2–2.3 with α = 1/8.
    assert_eq!(smooth(None, ms(100)), ms(100));
    assert_eq!(
        smooth(Some(ms(100)), ms(200)),
        Duration::from_micros(112_500)
    );
    assert_eq!(
        smooth(Some(Duration::from_micros(112_500)), ms(200)),
        Duration::from_nanos(123_437_500)
    );
    assert_eq!(
        smooth(Some(Duration::MAX), Duration::MAX),
        Duration::MAX / 8,
        "saturates, no panic"
    );

    let mut c = config();
    c.targets = vec![sa(V4_TARGET)];
    let snap = snapshot(&[("203.0.113.2", Class::Global4)], &[], &[]);
    let mut lab = Lab::new(c, &snap);
    let key = SourceKey {
        addr: ip("203.0.113.2"),
        scope_id: 0,
    };
    lab.run(5.0, |_, _| up(100));
    lab.run(15.0, |_, _| up(200));
    assert_eq!(
        lab.e.sources[&key].rtt,
        Some(Duration::from_micros(112_500))
    );
    lab.run(25.0, |_, _| up(200));
    assert_eq!(
        lab.e.sources[&key].rtt,
        Some(Duration::from_nanos(123_437_500))
    );
    assert_eq!(
        lab.e.paths[&(key, sa(V4_TARGET).ip())].rtt,
        Some(Duration::from_nanos(123_437_500))
    );
}

#[test]
fn generation_moves_on_state_and_big_rtt_changes_only() {
    let mut c = config();
    c.targets = vec![sa(V4_TARGET)];
    let snap = snapshot(&[("203.0.113.2", Class::Global4)], &[], &[]);
    let mut lab = Lab::new(c, &snap);
    assert_eq!(lab.e.publish().unwrap().generation, 1, "new sources");
    assert!(lab.e.publish().is_none(), "nothing happened");

    lab.run(5.0, |_, _| up(100));
    let v = lab.e.publish().unwrap();
    assert_eq!(
        (v.generation, v.sources[0].state, v.sources[0].rtt),
        (2, State::Ok, Some(ms(100)))
    );

    // 100 → 112.5 → 110.9 ms: within 20 % of the published 100 ms.
    lab.run(15.0, |_, _| up(200));
    assert!(lab.e.publish().is_none());
    lab.run(25.0, |_, _| up(100));
    assert!(lab.e.publish().is_none());
    assert_eq!(lab.e.verdicts().sources[0].rtt, Some(ms(100)));
    // 110.9 → 159.5 ms: more than 20 % away from 100 ms.
    lab.run(35.0, |_, _| up(500));
    let v = lab.e.publish().unwrap();
    assert_eq!(v.generation, 3);
    assert!(v.sources[0].rtt > Some(ms(120)));

    // A miss that changes no state publishes nothing (its confirmation
    // succeeds at about the same RTT); the failure does.
    lab.run(45.0, fail_first(1, 160));
    assert!(lab.e.publish().is_none());
    lab.run(58.0, |_, _| None);
    let v = lab.e.publish().unwrap();
    assert_eq!((v.generation, v.sources[0].state), (4, State::Failed));
}

/// Dual stack behind NAT44: GUA, RFC 1918 and link-local sources,
/// a v4 gateway and a link-local v6 gateway, STUN over IPv4.
pub(super) fn home() -> (EngineConfig, Snapshot) {
    let mut c = config();
    c.stun = vec![sa(STUN4)];
    let snap = snapshot(
        &[
            ("2001:db8:1::2", Class::Gua),
            ("192.168.1.2", Class::Rfc1918),
            ("fe80::2", Class::Lla),
        ],
        &["192.168.1.1"],
        &["fe80::1"],
    );
    (c, snap)
}

fn stun_maps_to(to: &str) -> impl FnMut(f64, &ProbeRequest) -> Option<ProbeResult> {
    let to = sa(to);
    move |_, p| match p.kind {
        Kind::Stun(_) => Some(ProbeResult::StunMapped {
            rtt: ms(20),
            mapped: to,
        }),
        Kind::Tcp(_) | Kind::Large { .. } => up(10),
    }
}

#[test]
fn flag_table() {
    // (a) Dual stack behind NAT44, all answering.
    let (c, snap) = home();
    let mut lab = Lab::new(c, &snap);
    lab.run(5.0, stun_maps_to("198.51.100.9:40000"));
    let a = lab.flags();
    let want_a = Flags {
        gua_ok: true,
        ula_ok: false,
        lla_ok: true,
        ipv4_ok: true,
        nat44: true,
        nat44_tried: true,
        nptv6: false,
        nptv6_tried: false,
        rfc1918: true,
        ula_present: false,
        def_gateway4: Some("192.168.1.1".into()),
        def_gateway6: Some("fe80::1%eth0".into()),
    };
    assert_eq!(a, want_a);
    let v = lab.verdicts();
    assert!(v.sources.iter().all(|s| s.state == State::Ok), "{v:?}");
    assert_eq!(
        v.families,
        Families {
            ipv4: State::Ok,
            ipv6: State::Ok
        }
    );

    // (b) The same network, dead: present flags drop, "tried" stays.
    lab.run(25.0, |_, _| None);
    let b = lab.flags();
    let want_b = Flags {
        gua_ok: false,
        lla_ok: false,
        ipv4_ok: false,
        nat44: false,
        ..want_a.clone()
    };
    assert_eq!(b, want_b);
    assert_eq!(
        lab.verdicts().families,
        Families {
            ipv4: State::Failed,
            ipv6: State::Failed
        }
    );

    // (c) ULA-only v6 behind NPTv6, a global IPv4 address, no gateways.
    let snap = snapshot(
        &[("fd00:1::2", Class::Ula), ("203.0.113.2", Class::Global4)],
        &[],
        &[],
    );
    let mut lab = Lab::new(config(), &snap);
    lab.run(5.0, |_, _| up(10));
    let want_c = Flags {
        gua_ok: false,
        ula_ok: true,
        lla_ok: false,
        ipv4_ok: true,
        nat44: false,
        nat44_tried: false,
        nptv6: true,
        nptv6_tried: true,
        rfc1918: false,
        ula_present: true,
        def_gateway4: None,
        def_gateway6: None,
    };
    assert_eq!(lab.flags(), want_c);
}

#[test]
fn nat44_from_stun_alone() {
    let mut c = config();
    c.targets = vec![];
    c.stun = vec![sa(STUN4)];
    let snap = snapshot(&[("203.0.113.2", Class::Global4)], &[], &[]);
    // STUN sees us as ourselves: tried, no NAT.
    let mut lab = Lab::new(c.clone(), &snap);
    lab.run(5.0, stun_maps_to("203.0.113.2:5000"));
    let f = lab.flags();
    assert!(f.nat44_tried && !f.nat44 && f.ipv4_ok);
    // As another address: NAT44 (a global source, so STUN is the only way to tell).
    let mut lab = Lab::new(c, &snap);
    lab.run(5.0, stun_maps_to("198.51.100.9:5000"));
    assert!(lab.flags().nat44);
    assert_eq!(
        lab.source("203.0.113.2").mapped,
        Some(sa("198.51.100.9:5000"))
    );
    // A round in which STUN does not answer clears the mapping.
    lab.run(15.0, |_, _| None);
    assert!(!lab.flags().nat44);
    assert_eq!(lab.source("203.0.113.2").mapped, None);
}

#[test]
fn nptv6_from_a_ula_reaching_a_global_target_or_from_stun() {
    let snap = snapshot(&[("fd00:1::2", Class::Ula)], &[], &[]);
    let mut lab = Lab::new(config(), &snap);
    lab.run(5.0, |_, _| None);
    let f = lab.flags();
    assert!(f.nptv6_tried && !f.nptv6 && f.ula_present && !f.ula_ok);
    lab.run(15.0, |_, _| up(10));
    let f = lab.flags();
    assert!(f.nptv6 && f.ula_ok);

    // A GUA source that STUN sees as another address: NAT66/NPTv6.
    let mut c = config();
    c.stun = vec![sa(STUN6)];
    let snap = snapshot(&[("2001:db8:1::2", Class::Gua)], &[], &[]);
    let mut lab = Lab::new(c, &snap);
    lab.run(5.0, stun_maps_to("[2001:db8:1::2]:5000"));
    assert!(lab.flags().nptv6_tried && !lab.flags().nptv6);
    let mut lab = Lab::new(lab.e.config.clone(), &snap);
    lab.run(5.0, stun_maps_to("[2001:db8:99::2]:5000"));
    assert!(lab.flags().nptv6);
}

#[test]
fn gateways_are_link_evidence_not_internet() {
    let (mut c, snap) = home();
    c.stun.clear();
    let mut lab = Lab::new(c, &snap);
    let gateways_only = |_: f64, p: &ProbeRequest| {
        (dest(p).port() == GATEWAY_PORT).then(|| ProbeResult::Reachable { rtt: ms(1) })
    };
    lab.run(25.0, gateways_only);
    let gua = lab.source("2001:db8:1::2");
    assert_eq!((gua.state, gua.link), (State::Failed, State::Ok));
    let lla = lab.source("fe80::2");
    assert_eq!((lla.state, lla.link), (State::Ok, State::Ok));
    let f = lab.flags();
    assert!(f.lla_ok && !f.gua_ok && !f.ipv4_ok);
    // Gateways are not Internet destinations.
    assert!(
        lab.verdicts()
            .destinations
            .iter()
            .all(|d| d.address != ip("192.168.1.1"))
    );
    // The link-local gateway is probed with its zone, from both v6 sources.
    let to_gw6: Vec<_> = (lab.sent.iter())
        .filter(|(t, p)| *t == lab.t0 && dest(p).ip() == ip("fe80::1"))
        .map(|(_, p)| (p.source, p.scope_id, dest(p)))
        .collect();
    let gw = SocketAddr::V6(SocketAddrV6::new(
        "fe80::1".parse().unwrap(),
        GATEWAY_PORT,
        0,
        2,
    ));
    assert_eq!(
        to_gw6,
        vec![(ip("2001:db8:1::2"), 0, gw), (ip("fe80::2"), 2, gw)]
    );
}

#[test]
fn learned_destination_dies_after_two_tries_and_revives() {
    let mut c = config();
    c.targets.clear();
    let snap = snapshot(
        &[
            ("203.0.113.2", Class::Global4),
            ("10.0.0.2", Class::Rfc1918),
        ],
        &[],
        &[],
    );
    let mut lab = Lab::new(c, &snap);
    let d = ip("198.51.100.7");
    lab.e.learn(lab.now, d, true);
    lab.run(5.0, |_, _| None);
    let ports: Vec<_> = lab
        .sent
        .iter()
        .map(|(t, p)| ((*t - lab.t0).as_secs(), p.source, dest(p)))
        .collect();
    assert_eq!(
        ports,
        vec![
            (0, ip("10.0.0.2"), sa("198.51.100.7:443")),
            (0, ip("203.0.113.2"), sa("198.51.100.7:443")),
            (1, ip("10.0.0.2"), sa("198.51.100.7:80")),
            (1, ip("203.0.113.2"), sa("198.51.100.7:80")),
        ],
        "one try on 443, then one on 80"
    );
    let v = lab.verdicts();
    assert_eq!(v.destination(d).unwrap().state, State::Failed, "dead");
    assert!(v.destination(d).unwrap().learned);
    assert_eq!(v.prefix_state(ip("198.51.100.200")), State::Failed);
    // Learned destinations never fail a source.
    assert_eq!(lab.source("203.0.113.2").state, State::Unknown);

    // Asked for again within the interval of the last try (at 1 s): no
    // new try.
    lab.e.learn(lab.now, d, true);
    lab.run(11.5, |_, _| None);
    assert_eq!(lab.sent.len(), 4);
    // After it: a try, answered from one source only: alive again.
    lab.e.learn(lab.now, d, true);
    lab.run(12.0, |_, p| {
        (p.source == ip("203.0.113.2")).then(|| ProbeResult::Reachable { rtt: ms(30) })
    });
    assert_eq!(lab.sent.len(), 6);
    assert_eq!(
        dest(&lab.sent[5].1).port(),
        443,
        "back to 443 after 80 failed"
    );
    let v = lab.verdicts();
    assert_eq!(v.destination(d).unwrap().state, State::Ok);
    assert_eq!(v.prefix_state(d), State::Ok);
    // A global destination reached is Internet evidence for the source.
    assert_eq!(lab.source("203.0.113.2").state, State::Ok);
    assert!(lab.flags().ipv4_ok);
}

#[test]
fn learned_destinations_respect_the_scope_rules() {
    let snap = snapshot(
        &[
            ("203.0.113.2", Class::Global4),
            ("2001:db8:1::2", Class::Gua),
        ],
        &[],
        &[],
    );
    let mut c = config();
    c.targets.clear();
    let mut lab = Lab::new(c, &snap);
    let never = [
        "127.0.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "::1",
        "::",
        "ff02::1",
        "fe80::1",
        "169.254.1.1",
        "::ffff:192.0.2.1",
    ];
    let not_from_public = [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.0.1",
        "100.64.0.1",
        "fd00::1",
    ];
    for a in never {
        lab.e.learn(lab.now, ip(a), false);
    }
    for a in not_from_public {
        lab.e.learn(lab.now, ip(a), true);
    }
    lab.run(5.0, |_, _| up(1));
    assert!(lab.sent.is_empty(), "{:?}", lab.sent);
    // Private addresses in answers to private names are fair game.
    for a in not_from_public {
        lab.e.learn(lab.now, ip(a), false);
    }
    lab.run(6.0, |_, _| up(1));
    let probed: HashSet<IpAddr> = lab.sent.iter().map(|(_, p)| dest(p).ip()).collect();
    assert_eq!(probed, not_from_public.iter().map(|a| ip(a)).collect());
    // Private destinations are no Internet evidence.
    assert_eq!(lab.source("203.0.113.2").state, State::Unknown);
    // And with destinations off, nothing is learned.
    let mut c = config();
    c.destinations = false;
    let mut lab = Lab::new(c, &snap);
    lab.e.learn(lab.now, ip("198.51.100.7"), true);
    assert!(lab.e.learned.addresses().is_empty());
}

#[test]
fn only_global_destinations_are_internet_evidence() {
    // Answered from every source, a learned destination in the benchmarking
    // range 198.18.0.0/15 (RFC 2544; not globally reachable, RFC 6890, and
    // the range proxies hand out as fake answers) or in 192.0.0.0/24 proves
    // nothing about the Internet: neither the global source's verdict nor
    // NAT44 for the private one. A global destination proves both.
    let mut c = config();
    c.targets.clear();
    let snap = snapshot(
        &[
            ("203.0.113.2", Class::Global4),
            ("10.0.0.2", Class::Rfc1918),
        ],
        &[],
        &[],
    );
    let mut lab = Lab::new(c, &snap);
    for a in ["198.18.0.7", "198.19.255.1", "192.0.0.170"] {
        lab.e.learn(lab.now, ip(a), true);
    }
    lab.run(5.0, |_, _| up(10));
    assert_eq!(lab.sent.len(), 6, "probed from both sources");
    let v = lab.verdicts();
    assert_eq!(v.destination(ip("198.18.0.7")).unwrap().state, State::Ok);
    assert_eq!(lab.source("203.0.113.2").state, State::Unknown);
    assert!(!lab.flags().nat44 && !lab.flags().ipv4_ok);

    lab.e.learn(lab.now, ip("198.51.100.7"), true);
    lab.run(6.0, |_, _| up(10));
    assert_eq!(lab.source("203.0.113.2").state, State::Ok);
    assert!(lab.flags().nat44 && lab.flags().ipv4_ok);
}

#[test]
fn rate_limit_holds_for_learned_destinations() {
    let mut c = config();
    c.targets.clear();
    (c.rate, c.burst) = (5, 5);
    let snap = snapshot(&[("203.0.113.2", Class::Global4)], &[], &[]);
    let mut lab = Lab::new(c, &snap);
    for i in 0..40u8 {
        lab.e
            .learn(lab.now, IpAddr::from([198, 51, 100, i + 1]), true);
    }
    lab.run(20.0, |_, _| up(5));
    let times: Vec<f64> = lab
        .sent
        .iter()
        .map(|(t, _)| (*t - lab.t0).as_secs_f64())
        .collect();
    assert_eq!(times.len(), 40, "every destination tried once");
    // Token bucket: by time t at most burst + rate·t probes.
    for (n, t) in times.iter().enumerate() {
        assert!(
            (n + 1) as f64 <= 5.0 + 5.0 * t + 1e-6,
            "probe {} at {t} s",
            n + 1
        );
    }
    // And no second is crowded beyond burst + rate.
    for w in 0..20 {
        let in_window = times
            .iter()
            .filter(|&&t| t >= w as f64 && t < w as f64 + 1.0)
            .count();
        assert!(in_window <= 10, "{in_window} probes in second {w}");
    }
    assert!(
        times[39] <= 7.0 + 1e-6,
        "and the bucket is used at its rate: {}",
        times[39]
    );
}

#[test]
fn learned_table_is_a_bounded_lru() {
    let mut c = config();
    c.targets.clear();
    c.max_destinations = 4;
    let snap = snapshot(&[("203.0.113.2", Class::Global4)], &[], &[]);
    let mut lab = Lab::new(c, &snap);
    let d = |i: u8| IpAddr::from([198, 51, 100, i]);
    for i in 1..=4 {
        lab.e.learn(lab.now, d(i), true);
    }
    lab.run(0.5, |_, _| up(5));
    lab.e.learn(lab.now, d(1), true); // 1 is now the most recent
    lab.e.learn(lab.now, d(5), true); // evicts 2
    lab.e.learn(lab.now, d(6), true); // evicts 3
    assert_eq!(lab.e.learned.addresses(), vec![d(1), d(4), d(5), d(6)]);
    // Evicted destinations leave the verdicts too.
    let v = lab.verdicts();
    assert!(v.destination(d(2)).is_none() && v.destination(d(4)).is_some());
    for i in 7..=100 {
        lab.e.learn(lab.now, d(i), true);
    }
    assert_eq!(lab.e.learned.addresses().len(), 4);
}

#[test]
fn vanished_sources_are_dropped_and_new_ones_probed_at_once() {
    let a = snapshot(&[("2001:db8:1::2", Class::Gua)], &[], &[]);
    let mut lab = Lab::new(config(), &a);
    lab.run(5.0, |_, _| up(10));
    // A round in flight when the address goes away.
    lab.now = lab.e.next_wakeup().unwrap();
    let late: Vec<u64> = lab.e.poll(lab.now).iter().map(|p| p.id).collect();
    assert!(!late.is_empty());
    let b = snapshot(&[("2001:db8:2::2", Class::Gua)], &[], &[]);
    lab.e.set_inventory(lab.now, &b);
    for id in late {
        lab.e
            .handle(lab.now, id, ProbeResult::Reachable { rtt: ms(1) });
    }
    let v = lab.verdicts();
    assert_eq!(v.sources.len(), 1);
    assert_eq!(
        (v.sources[0].address, v.sources[0].state),
        (ip("2001:db8:2::2"), State::Unknown)
    );
    assert!(
        v.destinations
            .iter()
            .all(|d| d.paths.iter().all(|p| p.source == ip("2001:db8:2::2")))
    );
    // Probed at the very next poll, not an interval later.
    assert_eq!(lab.e.next_wakeup(), Some(lab.now));
    let probes = lab.e.poll(lab.now);
    assert_eq!(probes.len(), 1);
    assert_eq!(probes[0].source, ip("2001:db8:2::2"));
}

#[test]
fn jitter_is_within_ten_percent_and_reproducible() {
    let snap = snapshot(&[("203.0.113.2", Class::Global4)], &[], &[]);
    let starts = |seed: u64| {
        let mut c = config();
        c.seed = seed;
        let mut lab = Lab::new(c, &snap);
        lab.run(200.0, |_, _| up(1));
        lab.sent
            .iter()
            .map(|(t, _)| (*t - lab.t0).as_secs_f64())
            .collect::<Vec<_>>()
    };
    let a = starts(1);
    assert_eq!(a, starts(1));
    assert_ne!(a, starts(2));
    assert!(a.len() >= 18);
    for w in a.windows(2) {
        let gap = w[1] - w[0];
        assert!((9.0..=11.0).contains(&gap), "{gap}");
    }
}

#[test]
fn silent_config_sends_nothing() {
    let mut c = config();
    c.targets.clear();
    c.destinations = false;
    let (_, snap) = home();
    let mut lab = Lab::new(c, &snap);
    lab.e.learn(lab.now, ip("198.51.100.7"), true);
    assert_eq!(lab.e.next_wakeup(), None);
    assert!(lab.e.poll(lab.now).is_empty());
    // Configured loopback targets are skipped too.
    let mut c = config();
    c.targets = vec![sa("127.0.0.1:443"), sa("[::1]:443")];
    let mut lab = Lab::new(c, &snapshot(&[("203.0.113.2", Class::Global4)], &[], &[]));
    assert!(lab.e.poll(lab.now).is_empty());
}

#[test]
fn late_answers_count_as_unreachable() {
    let snap = snapshot(&[("203.0.113.2", Class::Global4)], &[], &[]);
    let mut lab = Lab::new(config(), &snap);
    let p = lab.e.poll(lab.now).remove(0);
    lab.e.handle(
        p.deadline + ms(1),
        p.id,
        ProbeResult::Reachable { rtt: ms(1001) },
    );
    assert_eq!(lab.source("203.0.113.2").state, State::Unknown);
    assert_eq!(lab.e.paths.values().next().unwrap().health.misses, 1);
    // And an id it does not know is ignored.
    lab.e
        .handle(lab.now, 9999, ProbeResult::Reachable { rtt: ms(1) });
}
