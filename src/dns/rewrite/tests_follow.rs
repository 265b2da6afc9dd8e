//! Answers follow the source and family verdicts of the snapshot they are
//! judged with: a destination probed ok through a source that has since
//! failed no longer counts as working. First on built snapshots, then with
//! the probe engine itself in virtual time, whose generation must move in
//! the very publish that reports the source failed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tests::{DUAL, aaaa, ctx, dual_a, dual_aaaa, filtered, reply, verdicts};
use super::*;
use crate::probe::engine::{Engine, EngineConfig, Kind, ProbeResult};
use crate::probe::verdicts::State;
use crate::testutil::{address, destination_verdict, host, ip, path, source_verdict};

const GUA: &str = "2001:db8:1::2";
const GUA2: &str = "2001:db8:2::2";
const V4: &str = "192.168.1.2";
const DUAL6: &str = "2001:db8:ffff::80";

/// A dual-stack host (192.168.1.2/24, 2001:db8:1::2/64, and a second
/// uplink's 2001:db8:2::2/64) with these source states, IPv4 ok, and
/// DUAL6 probed with these paths; the families as the engine derives them.
fn snapshot(gua: State, gua2: Option<State>, paths: Vec<PathVerdictSpec>) -> Verdicts {
    let mut v = verdicts(State::Ok, State::Unknown);
    let mut addresses = vec![address(V4), address(GUA)];
    let mut sources = vec![
        source_verdict(&address(V4), State::Ok, Some(5)),
        source_verdict(&address(GUA), gua, Some(5)),
    ];
    if let Some(s) = gua2 {
        addresses.push(address(GUA2));
        sources.push(source_verdict(&address(GUA2), s, Some(5)));
    }
    v.families.ipv6 = State::any_ok(sources.iter().skip(1).map(|s| s.state));
    sources.sort_by_key(|s| (s.address, s.scope_id));
    v.sources = sources;
    v.host = Arc::new(host(addresses));
    let paths: Vec<_> = (paths.iter())
        .map(|&(source, state, rtt)| path(source, state, rtt))
        .collect();
    let state = State::any_ok(paths.iter().map(|p| p.state));
    v.destinations = vec![destination_verdict(DUAL6, true, state, paths)];
    v
}

type PathVerdictSpec = (&'static str, State, Option<u64>);

#[test]
fn an_ok_destination_through_a_failed_only_source_is_its_family_s_failure() {
    // The state the engine publishes when the source has just failed and
    // the destination was not probed since: its path still says ok.
    let v = snapshot(State::Failed, None, vec![(GUA, State::Ok, Some(20))]);
    assert_eq!(v.families.ipv6, State::Failed);
    assert_eq!(v.destination(ip(DUAL6)).unwrap().state, State::Ok);
    let j = judge(&v, ip(DUAL6));
    assert_eq!(j.standing, Standing::Cannot);
    assert_eq!(j.why, Some(Why::NoSource { ipv4: false }));
    // So the AAAA goes, with the family as the reason, since IPv4 works.
    let a = dual_a();
    let (out, removed, nodata, why) = filtered(rewrite(
        &dual_aaaa(),
        rtype::AAAA,
        false,
        &ctx(&v),
        Other::Reply(&a),
    ));
    assert_eq!((removed, nodata), (1, true));
    assert!(out.addresses().is_empty());
    assert!(why.contains("no working IPv6 source"), "{why}");
    // The same snapshot with the source still ok: the destination works.
    let ok = snapshot(State::Ok, None, vec![(GUA, State::Ok, Some(20))]);
    assert_eq!(judge(&ok, ip(DUAL6)).standing, Standing::Works);
    assert_eq!(judge(&ok, ip(DUAL6)).rtt, Some(Duration::from_millis(20)));
}

#[test]
fn another_working_source_keeps_the_destination_with_its_own_rtt() {
    // Two uplinks: the first failed, its path still says ok at 5 ms; the
    // second's path is ok at 40 ms, and that is the RTT that counts.
    let v = snapshot(
        State::Failed,
        Some(State::Ok),
        vec![(GUA, State::Ok, Some(5)), (GUA2, State::Ok, Some(40))],
    );
    assert_eq!(v.families.ipv6, State::Ok);
    let j = judge(&v, ip(DUAL6));
    assert_eq!(j.standing, Standing::Works);
    assert_eq!(j.rtt, Some(Duration::from_millis(40)));
}

#[test]
fn only_the_working_source_s_paths_decide() {
    // The failed uplink's stale ok does not keep a destination the working
    // uplink cannot reach: that one is dead.
    let v = snapshot(
        State::Failed,
        Some(State::Ok),
        vec![(GUA, State::Ok, Some(5)), (GUA2, State::Failed, None)],
    );
    assert_eq!(judge(&v, ip(DUAL6)).why, Some(Why::Dead));
    // And a failure seen only through the failed uplink blames nobody: with
    // the other uplink not judged yet, the destination is unknown, not
    // dead, and its /64 is not dead either.
    let v = snapshot(
        State::Failed,
        Some(State::Unknown),
        vec![(GUA, State::Failed, None)],
    );
    assert_eq!(v.families.ipv6, State::Unknown);
    let mut with_prefix = v.clone();
    with_prefix.prefixes = vec![crate::probe::verdicts::PrefixVerdict {
        prefix: "2001:db8:ffff::/64".parse().unwrap(),
        state: State::Failed,
    }];
    for v in [v, with_prefix] {
        assert_eq!(judge(&v, ip(DUAL6)).standing, Standing::Unknown);
        assert_eq!(
            judge(&v, ip("2001:db8:ffff::81")).standing,
            Standing::Unknown
        );
    }
}

#[test]
fn a_dead_destination_of_a_failed_family_gives_the_family_as_the_reason() {
    let v = snapshot(State::Failed, None, vec![(GUA, State::Failed, None)]);
    assert_eq!(
        judge(&v, ip(DUAL6)).why,
        Some(Why::NoSource { ipv4: false })
    );
}

#[test]
fn on_link_destinations_keep_their_own_paths_when_the_uplink_fails() {
    // A server on the host's own /64 (and a private one) answered probes:
    // the source's Internet verdict says nothing about them.
    let mut v = snapshot(State::Failed, None, vec![]);
    v.sources[0].state = State::Failed;
    v.families.ipv4 = State::Failed;
    v.destinations = vec![
        destination_verdict(
            "192.168.1.10",
            true,
            State::Ok,
            vec![path(V4, State::Ok, Some(1))],
        ),
        destination_verdict(
            "2001:db8:1::99",
            true,
            State::Ok,
            vec![path(GUA, State::Ok, Some(1))],
        ),
    ];
    for lan in ["192.168.1.10", "2001:db8:1::99"] {
        assert_eq!(judge(&v, ip(lan)).standing, Standing::Works, "{lan}");
    }
}

// ---- the engine, in virtual time ------------------------------------------

/// The probe engine of a dual-stack host (IPv4 192.168.1.2, IPv6
/// 2001:db8:1::2, no gateways), probing one target per family every second
/// with a 500 ms timeout: every probe answers at once in 10 ms while its
/// family's uplink is up, and expires unanswered while it is down.
struct Run {
    e: Engine,
    now: Instant,
    ipv6_up: bool,
    /// Every snapshot published, in order.
    published: Vec<Arc<Verdicts>>,
}

impl Run {
    fn new() -> Run {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let config = EngineConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            targets: vec![sa("203.0.113.10:443"), sa("[2001:db8:ffff::10]:443")],
            destinations: true,
            seed: 7,
            ..EngineConfig::default()
        };
        let mut e = Engine::new(config);
        let now = Instant::now();
        e.set_inventory(now, &host(vec![address(V4), address(GUA)]));
        Run {
            e,
            now,
            ipv6_up: true,
            published: Vec::new(),
        }
    }

    /// Lets `secs` pass in steps of 10 ms.
    fn run(&mut self, secs: f64) {
        let end = self.now + Duration::from_secs_f64(secs);
        while self.now < end {
            for p in self.e.poll(self.now) {
                let (Kind::Tcp(dest) | Kind::Large { target: dest, .. }) = p.kind else {
                    continue;
                };
                if dest.is_ipv4() || self.ipv6_up {
                    let rtt = Duration::from_millis(10);
                    self.e
                        .handle(self.now, p.id, ProbeResult::Reachable { rtt });
                }
            }
            if let Some(v) = self.e.publish() {
                self.published.push(v);
            }
            self.now += Duration::from_millis(10);
        }
    }

    fn last(&self) -> Arc<Verdicts> {
        self.published.last().cloned().expect("something published")
    }
}

fn gua_state(v: &Verdicts) -> State {
    v.source(ip(GUA), 0).map_or(State::Unknown, |s| s.state)
}

#[test]
fn engine_snapshots_move_the_answer_in_the_generation_that_fails_the_source() {
    let mut run = Run::new();
    // An answer teaches the engine DUAL6, once: afterwards only cached
    // answers are served, so it is never probed again.
    run.e.learn(run.now, ip(DUAL6), true);
    run.run(3.0);
    let healthy = run.last();
    assert_eq!(gua_state(&healthy), State::Ok);
    assert_eq!(judge(&healthy, ip(DUAL6)).standing, Standing::Works);
    let aaaa_kept = rewrite(
        &dual_aaaa(),
        rtype::AAAA,
        false,
        &ctx(&healthy),
        Other::Unasked,
    );
    assert!(!matches!(aaaa_kept, Rewritten::Filtered { .. }));

    // IPv6 breaks: two rounds later the source fails.
    let from = run.published.len();
    run.ipv6_up = false;
    run.run(4.0);
    let after: Vec<Arc<Verdicts>> = run.published[from..].to_vec();
    let first_failed = after
        .iter()
        .position(|v| gua_state(v) == State::Failed)
        .expect("the IPv6 source fails within 4 s");
    let failed = &after[first_failed];
    let before = if first_failed == 0 {
        &healthy
    } else {
        &after[first_failed - 1]
    };
    // The publish that reports the failure moves the generation (so every
    // cached view is redone), and DUAL6's own verdict has not moved: only
    // the source's says the AAAA cannot work now.
    assert!(failed.generation > before.generation);
    assert_eq!(gua_state(before), State::Ok);
    assert_eq!(failed.families.ipv6, State::Failed);
    let d = failed.destination(ip(DUAL6)).expect("DUAL6 was probed");
    assert_eq!(d.state, State::Ok, "DUAL6 itself was not probed again");
    assert_eq!(
        judge(failed, ip(DUAL6)).why,
        Some(Why::NoSource { ipv4: false })
    );
    assert_eq!(judge(before, ip(DUAL6)).standing, Standing::Works);
    // In every snapshot the answer agrees with the source's state.
    for v in &run.published {
        let works = judge(v, ip(DUAL6)).standing == Standing::Works;
        assert_eq!(
            works,
            gua_state(v) == State::Ok,
            "generation {}",
            v.generation
        );
    }

    // The repair: the first answered round makes the source ok again, and
    // the same snapshot makes DUAL6 work again.
    let from = run.published.len();
    run.ipv6_up = true;
    run.run(2.0);
    let back = run.published[from..]
        .iter()
        .find(|v| gua_state(v) == State::Ok)
        .expect("the IPv6 source is ok again within 2 s");
    assert!(back.generation > failed.generation);
    assert_eq!(judge(back, ip(DUAL6)).standing, Standing::Works);
    let r = reply(DUAL, rtype::AAAA, vec![aaaa(DUAL, DUAL6, 300)]);
    assert!(!matches!(
        rewrite(&r, rtype::AAAA, false, &ctx(back), Other::Unasked),
        Rewritten::Filtered { .. }
    ));
}
