//! DNS64 in the stub from PREF64 router advertisements, in the network lab
//! (root): issue 20's acceptance test. An IPv6-only host (no IPv4 address
//! at all) behind the router's NAT64 (tayga, [`lab::NAT64_PREFIX`]); the
//! router sends RAs with a PREF64 option (RFC 8781, `tests/lab/ra.py`)
//! every [`RA_INTERVAL`] with a lifetime of [`RA_LIFETIME_S`]; getapr runs
//! in the host namespace with the default `[dns64] synthesize = "auto"`.
//! See `tests/common/lab.rs` and `tests/common/labdns.rs` for the lab,
//! the zones and the servers.
//!
//! - [`pref64_router_advertisements_reach_the_host_kernel`]: the lab's own
//!   plumbing, no daemon: the host's kernel passes the RA's PREF64 option
//!   up as RTM_NEWNDUSEROPT, and the RAs leave the host's routes alone.
//! - [`ra_prefix_in_status_within_an_interval_and_gone_after_its_lifetime`]
//!   (bullet 1): `/status` lists the prefix with source `ra`, the host's
//!   interface, the router and the time left within one RA interval, DNS64
//!   turns active, the prefix goes when its lifetime runs out after the
//!   RAs stop, and an RA with lifetime 0 withdraws it at once.
//! - [`plain_upstream_ipv4_only_names_synthesized_for_apps_and_pairs`]
//!   (bullets 2, 3 with a plain upstream, 4): Knot (no DNS64) as the
//!   upstream; an IPv4-only name gets the synthesized AAAA, glibc and
//!   Python connect through the NAT64 in under 1 s, a dual-stack name's
//!   AAAA and `ipv4only.arpa` pass untouched, a signed IPv4-only name asked
//!   with DO gets no synthesized AAAA, and `/pairs` of an IPv4 literal
//!   and of an IPv4-only name gives the NAT64 pair.
//! - [`dns64_upstream_answers_are_not_synthesized_twice`] (bullet 3 with
//!   Unbound doing DNS64): getapr's AAAA answers equal Unbound's.
//!
//! Each test collects every unmet expectation and prints every measurement
//! before failing, so one run shows all that is wrong. Run with
//! `--nocapture --test-threads=1` to see the measured times undisturbed.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use serde_json::Value;

use common::lab::{self, Connect, HOST6, Lab, Ns, Pref64Ras, RaSender, STUN4};
use common::labdns::{
    self, DUAL6, GetaprConfig, KNOT6, LabDns, LabGetapr, UNBOUND6, V4ONLY4, addresses, ask, dns,
    getent_ahosts, kdig, python_connect, summary,
};
use common::query;

/// getapr's DNS listener in the host namespace.
const STUB: &str = "127.0.0.53";
/// The sidecar, where `/status` and `/pairs` are asked.
const HTTP_PORT: u16 = 8080;
/// Between two RAs, and the PREF64 lifetime they carry (RFC 8781 §4.1
/// wants at least 3 intervals).
const RA_INTERVAL: Duration = Duration::from_secs(3);
const RA_LIFETIME_S: u32 = 16;
/// How long verdicts and the like may take before the test stops waiting
/// (a margin for a loaded machine, not an acceptance bound).
const PATIENCE: Duration = Duration::from_secs(10);
/// How early or late the prefix may go around its expiry: `expires_in_s`
/// and the RA times are whole seconds and the status is polled.
const EXPIRY_SLACK: Duration = Duration::from_millis(2000);
/// The host's LAN interface.
const HOST_IF: &str = "eth0";

fn stub() -> SocketAddr {
    SocketAddr::new(STUB.parse().expect("an IP"), 53)
}

fn prefix() -> &'static str {
    lab::NAT64_PREFIX
}

fn ras() -> Pref64Ras {
    Pref64Ras::new(prefix(), RA_LIFETIME_S, RA_INTERVAL)
}

/// The lab of every test here: IPv6-only host, NAT64 in the router.
fn nat64_lab() -> Lab {
    Lab::builder().without_ipv4().nat64().build()
}

/// getapr in the host namespace with `upstream` and the sidecar on
/// [`HTTP_PORT`], `[dns64]` left at its default.
fn start_getapr(lab: &Lab, dns: &LabDns, upstream: IpAddr) -> LabGetapr {
    let mut config = GetaprConfig::new(upstream);
    config.http_port = Some(HTTP_PORT);
    LabGetapr::start(lab, dns, config)
}

/// Collects unmet expectations, so that one run reports all of them.
#[derive(Default)]
struct Expectations(Vec<String>);

impl Expectations {
    fn check(&mut self, ok: bool, message: impl FnOnce() -> String) -> bool {
        if !ok {
            let message = message();
            eprintln!("UNMET: {message}");
            self.0.push(message);
        }
        ok
    }

    fn finish(self, test: &str, getapr: Option<&LabGetapr>) {
        assert!(
            self.0.is_empty(),
            "{test}: {} unmet expectation(s):\n  - {}\ngetapr's log:\n{}",
            self.0.len(),
            self.0.join("\n  - "),
            getapr.map_or_else(|| "(no daemon)".to_owned(), LabGetapr::log)
        );
    }
}

/// `curl -s -m 2 -w '\n%{http_code}' URL` in the host namespace: (status,
/// body); status 0 when nothing answered.
fn curl(lab: &Lab, url: &str) -> (u16, String) {
    let out = lab.exec(
        Ns::Host,
        &["curl", "-s", "-m", "2", "-w", "\n%{http_code}", url],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// `GET /status` as JSON, or what came instead.
fn status(lab: &Lab) -> Result<Value, String> {
    match curl(lab, &format!("http://127.0.0.1:{HTTP_PORT}/status")) {
        (200, body) => serde_json::from_str(&body).map_err(|e| format!("not JSON ({e}): {body}")),
        (code, body) => Err(format!("HTTP {code}: {body}")),
    }
}

/// Polls `/status` every 50 ms until `done` likes it, up to `within`:
/// the status and when (after `since`) it came, or the last answer.
fn poll_status(
    lab: &Lab,
    since: Instant,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Result<(Duration, Value), String> {
    let deadline = Instant::now() + within;
    loop {
        let answer = status(lab);
        let at = Instant::now();
        if let Ok(s) = &answer
            && done(s)
        {
            return Ok((at.saturating_duration_since(since), s.clone()));
        }
        if at >= deadline {
            return Err(match answer {
                Ok(s) => s.to_string(),
                Err(e) => e,
            });
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The `/status` `nat64` entries of `prefix` from `source`.
fn nat64_entries<'a>(status: &'a Value, prefix: &str, source: &str) -> Vec<&'a Value> {
    status["nat64"].as_array().map_or_else(Vec::new, |list| {
        list.iter()
            .filter(|e| e["prefix"] == prefix && e["source"] == source)
            .collect()
    })
}

fn lists_prefix(status: &Value, prefix: &str) -> bool {
    status["nat64_prefixes"]
        .as_array()
        .is_some_and(|l| l.iter().any(|p| p == prefix))
}

fn dns64_active(status: &Value) -> bool {
    status["dns64"]["active"] == true
}

/// Waits for `/status` to say DNS64 is active (the host's IPv4 failed, its
/// IPv6 works, the RA's prefix known); records an unmet expectation with
/// the last status when it does not within [`PATIENCE`].
fn wait_dns64_active(lab: &Lab, since: Instant, expect: &mut Expectations) -> bool {
    match poll_status(lab, since, PATIENCE, dns64_active) {
        Ok((took, s)) => {
            eprintln!(
                "MEASURED dns64 active after {took:?}: \"dns64\": {}",
                s["dns64"]
            );
            true
        }
        Err(last) => expect.check(false, || {
            format!(
                "/status should say \"dns64\": {{\"synthesize\": \"auto\", \"active\": true}} \
                 within {PATIENCE:?} (IPv6-only host, RA prefix {}); last: {last}",
                prefix()
            )
        }),
    }
}

/// The AAAA addresses of an answer, sorted.
fn aaaa_set(reply: &Message) -> Vec<IpAddr> {
    let mut set: Vec<IpAddr> = addresses(&reply.answers)
        .into_iter()
        .filter(IpAddr::is_ipv6)
        .collect();
    set.sort();
    set
}

/// The AAAA records' lines of a `kdig` answer section.
fn kdig_aaaa(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| !l.starts_with(';') && l.contains("\tAAAA\t"))
        .map(str::to_owned)
        .collect()
}

/// Where `addr` lies inside [`lab::NAT64_PREFIX`].
fn in_nat64_prefix(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V6(v6) => v6.segments()[..6] == [0x2001, 0xdb8, 0x64, 0, 0, 0],
        IpAddr::V4(_) => false,
    }
}

/// The ip6.arpa name of `addr` (RFC 3596 §2.5).
fn ip6_arpa(addr: Ipv6Addr) -> String {
    let mut name = String::new();
    for byte in addr.octets().iter().rev() {
        name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
    }
    name + "ip6.arpa."
}

/// The host's LAN interface index.
fn host_ifindex(lab: &Lab) -> u32 {
    let out = lab.run(Ns::Host, &["ip", "-o", "link", "show", "dev", HOST_IF]);
    out.split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ifindex in {out:?}"))
}

/// The host's IPv6 routes, for comparing before and after RAs.
fn host_routes6(lab: &Lab) -> String {
    lab.run(Ns::Host, &["ip", "-6", "route", "show", "table", "all"])
}

/// The lab's plumbing, no daemon: the router's RAs with PREF64 reach the
/// host and its kernel passes the option up over rtnetlink (what getapr
/// reads), with the router's link-local address; and the RAs (router
/// lifetime 0) leave the host's routes as the lab made them.
#[test]
fn pref64_router_advertisements_reach_the_host_kernel() {
    if !lab::root_or_skip("dns64_lab::pref64_router_advertisements_reach_the_host_kernel") {
        return;
    }
    let lab = Lab::builder().without_ipv4().without_services().build();
    let routes_before = host_routes6(&lab);
    let mut sender: Option<RaSender> = None;
    let lines = lab.watch_nd_user_options(Ns::Host, PATIENCE, || {
        sender = Some(lab.send_pref64_ras(Ns::Router, ras()));
    });
    eprintln!("RTM_NEWNDUSEROPT in the host: {lines:?}");
    let want = format!(
        "pref64 {} {} {} {RA_LIFETIME_S}",
        host_ifindex(&lab),
        lab.router_link_local(),
        prefix()
    );
    assert!(
        lines.contains(&want),
        "the host's kernel should pass the PREF64 option up as `{want}`, got {lines:?}"
    );
    // Two more RAs, then the routes again.
    let sender = sender.expect("the sender started");
    let seen = sender.sent().len();
    let deadline = Instant::now() + RA_INTERVAL * 3;
    while sender.sent().len() < seen + 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert!(sender.sent().len() >= seen + 2, "ra.py stopped sending");
    let routes_after = host_routes6(&lab);
    assert_eq!(
        routes_before, routes_after,
        "the RAs (router lifetime 0) changed the host's IPv6 routes"
    );
    let accept_ra = lab.run(
        Ns::Host,
        &[
            "sysctl",
            "-n",
            &format!("net.ipv6.conf.{HOST_IF}.accept_ra"),
        ],
    );
    assert_eq!(accept_ra.trim(), "1");
}

/// Bullet 1: `/status` lists the RA's prefix within one RA interval, with
/// its source, interface, router and time left; DNS64 turns active; the
/// prefix stays while RAs refresh it and goes when its lifetime runs out
/// after they stop.
#[test]
fn ra_prefix_in_status_within_an_interval_and_gone_after_its_lifetime() {
    const TEST: &str =
        "dns64_lab::ra_prefix_in_status_within_an_interval_and_gone_after_its_lifetime";
    if !lab::root_or_skip(TEST) {
        return;
    }
    let lab = nat64_lab();
    let servers = LabDns::start(&lab);
    let getapr = start_getapr(&lab, &servers, KNOT6.into());
    let mut expect = Expectations::default();

    let before = match poll_status(&lab, Instant::now(), PATIENCE, |_| true) {
        Ok((_, s)) => s,
        Err(last) => panic!(
            "the sidecar does not serve /status: {last}\nlog:\n{}",
            getapr.log()
        ),
    };
    eprintln!(
        "before RAs: \"nat64\": {}, \"nat64_prefixes\": {}, \"dns64\": {}",
        before["nat64"], before["nat64_prefixes"], before["dns64"]
    );
    expect.check(nat64_entries(&before, prefix(), "ra").is_empty(), || {
        format!("no RA was sent yet, but /status lists one: {before}")
    });
    expect.check(before["dns64"]["synthesize"] == "auto", || {
        format!(
            "\"dns64\".\"synthesize\" should be \"auto\" (the default), got {}",
            before["dns64"]
        )
    });

    let mut sender = lab.send_pref64_ras(Ns::Router, ras());
    let first = sender.first_sent();
    let seen = poll_status(&lab, first, PATIENCE, |s| {
        !nat64_entries(s, prefix(), "ra").is_empty()
    });
    match &seen {
        Ok((took, s)) => {
            eprintln!(
                "MEASURED RA prefix in /status {took:?} after the first RA: \"nat64\": {}",
                s["nat64"]
            );
            expect.check(*took <= RA_INTERVAL, || {
                format!("/status listed the RA's prefix after {took:?}, more than one RA interval ({RA_INTERVAL:?})")
            });
            let entries = nat64_entries(s, prefix(), "ra");
            expect.check(entries.len() == 1, || {
                format!("one \"ra\" entry expected for {}: {}", prefix(), s["nat64"])
            });
            let entry = entries[0];
            let router = lab.router_link_local().to_string();
            expect.check(entry["interface"] == HOST_IF, || {
                format!("the entry's interface should be {HOST_IF:?}: {entry}")
            });
            expect.check(entry["router"] == router.as_str(), || {
                format!("the entry's router should be {router:?} (the RA's source): {entry}")
            });
            let left = entry["expires_in_s"].as_f64();
            expect.check(
                left.is_some_and(|l| l > 0.0 && l <= f64::from(RA_LIFETIME_S)),
                || format!("expires_in_s should be in (0, {RA_LIFETIME_S}]: {entry}"),
            );
            expect.check(lists_prefix(s, prefix()), || {
                format!(
                    "\"nat64_prefixes\" should list {}: {}",
                    prefix(),
                    s["nat64_prefixes"]
                )
            });
        }
        Err(last) => {
            expect.check(false, || {
                format!(
                    "/status never listed {} with source \"ra\" within {PATIENCE:?} of the first RA; last: {last}",
                    prefix()
                )
            });
        }
    }
    if wait_dns64_active(&lab, first, &mut expect)
        && let Ok(s) = status(&lab)
    {
        eprintln!(
            "\"CLAT\": {}, \"ipv4_literals\": {}, \"IPv4_ok\": {}, \"GUA_ok\": {}",
            s["CLAT"], s["ipv4_literals"], s["IPv4_ok"], s["GUA_ok"]
        );
        expect.check(s["dns64"]["synthesize"] == "auto", || {
            format!(
                "\"dns64\" should say \"synthesize\": \"auto\": {}",
                s["dns64"]
            )
        });
        expect.check(s["CLAT"] == false, || {
            format!(
                "no CLAT in this lab: \"CLAT\" should be false, got {}",
                s["CLAT"]
            )
        });
        expect.check(s["ipv4_literals"] == "nat64_pairs", || {
            format!(
                "IPv4 literals work here only through /pairs: \"ipv4_literals\" should be \"nat64_pairs\", got {}",
                s["ipv4_literals"]
            )
        });
    }

    // The RAs refresh the lifetime: after two more, the time left is
    // counted from the latest one, not from the first.
    if seen.is_ok() {
        let count = sender.sent().len();
        let deadline = Instant::now() + RA_INTERVAL * 3;
        while sender.sent().len() < count + 2 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        thread::sleep(Duration::from_millis(300));
        let since_last = sender.last_sent().elapsed();
        if let Ok(s) = status(&lab)
            && let Some(entry) = nat64_entries(&s, prefix(), "ra").first()
        {
            let left = entry["expires_in_s"].as_f64().unwrap_or(-1.0);
            let want = f64::from(RA_LIFETIME_S) - since_last.as_secs_f64() - 1.5;
            eprintln!(
                "after {} RAs ({since_last:?} since the last): expires_in_s {left}",
                sender.sent().len()
            );
            expect.check(left >= want, || {
                format!("the RAs should refresh the lifetime: expires_in_s {left} {since_last:?} after the last RA (want at least {want:.1}): {entry}")
            });
        } else {
            expect.check(false, || {
                "the RA prefix left /status while RAs still came".to_owned()
            });
        }
    }

    // The RAs stop: the prefix stays until its lifetime (from the last RA)
    // runs out, then goes, and DNS64 with it. (Not checked when the
    // prefix never showed.)
    let last = sender.stop();
    if seen.is_ok() {
        let lifetime = Duration::from_secs(u64::from(RA_LIFETIME_S));
        let gone = poll_status(&lab, last, lifetime + PATIENCE, |s| {
            nat64_entries(s, prefix(), "ra").is_empty()
        });
        match gone {
            Ok((after, s)) => {
                eprintln!(
                    "MEASURED RA prefix gone {after:?} after the last RA (lifetime {lifetime:?}): \"nat64\": {}, \"nat64_prefixes\": {}, \"dns64\": {}",
                    s["nat64"], s["nat64_prefixes"], s["dns64"]
                );
                expect.check(after + EXPIRY_SLACK >= lifetime, || {
                    format!("the prefix went {after:?} after the last RA, before its lifetime {lifetime:?} ran out")
                });
                expect.check(after <= lifetime + EXPIRY_SLACK, || {
                    format!("the prefix went {after:?} after the last RA, later than its lifetime {lifetime:?} (+{EXPIRY_SLACK:?})")
                });
                expect.check(!lists_prefix(&s, prefix()), || {
                    format!(
                        "\"nat64_prefixes\" should no longer list {}: {}",
                        prefix(),
                        s["nat64_prefixes"]
                    )
                });
                expect.check(s["dns64"]["active"] == false, || {
                    format!(
                        "without a NAT64 prefix DNS64 should not be active: {}",
                        s["dns64"]
                    )
                });
            }
            Err(last_status) => {
                expect.check(false, || {
                    format!(
                        "the RA prefix did not go within {:?} of the last RA: {last_status}",
                        lifetime + PATIENCE
                    )
                });
            }
        }
    }

    // An RA with lifetime 0 withdraws the prefix at once (RFC 8781 §4).
    if seen.is_ok() {
        withdrawal(&lab, &mut expect);
    }
    expect.finish(TEST, Some(&getapr));
}

/// RAs again, then one with lifetime 0: the prefix goes within an RA
/// interval.
fn withdrawal(lab: &Lab, expect: &mut Expectations) {
    let mut sender = lab.send_pref64_ras(Ns::Router, ras());
    let back = poll_status(lab, sender.first_sent(), PATIENCE, |s| {
        !nat64_entries(s, prefix(), "ra").is_empty()
    });
    sender.stop();
    if back.is_ok() {
        let withdraw = lab.send_pref64_ras(Ns::Router, Pref64Ras::new(prefix(), 0, RA_INTERVAL));
        match poll_status(lab, withdraw.first_sent(), PATIENCE, |s| {
            nat64_entries(s, prefix(), "ra").is_empty()
        }) {
            Ok((took, _)) => {
                eprintln!("MEASURED RA prefix withdrawn {took:?} after an RA with lifetime 0");
                expect.check(took <= RA_INTERVAL, || {
                    format!(
                        "an RA with lifetime 0 should withdraw the prefix at once; it took {took:?}"
                    )
                });
            }
            Err(last_status) => {
                expect.check(false, || {
                    format!("an RA with lifetime 0 did not withdraw the prefix within {PATIENCE:?}: {last_status}")
                });
            }
        }
    } else {
        expect.check(false, || {
            "the prefix did not come back with new RAs; the withdrawal (lifetime 0) was not checked".to_owned()
        });
    }
}

/// Bullets 2, 3 (plain upstream) and 4, with Knot (no DNS64) as getapr's
/// upstream and the RA as the only source of the NAT64 prefix.
#[test]
fn plain_upstream_ipv4_only_names_synthesized_for_apps_and_pairs() {
    const TEST: &str = "dns64_lab::plain_upstream_ipv4_only_names_synthesized_for_apps_and_pairs";
    if !lab::root_or_skip(TEST) {
        return;
    }
    labdns::assert_glibc_uses_resolv_conf();
    let lab = nat64_lab();
    let servers = LabDns::start(&lab);
    let getapr = start_getapr(&lab, &servers, KNOT6.into());
    let _sender = lab.send_pref64_ras(Ns::Router, ras());
    let mut expect = Expectations::default();
    let started = Instant::now();
    wait_dns64_active(&lab, started, &mut expect);
    if let Ok(s) = status(&lab) {
        eprintln!("\"nat64\": {}", s["nat64"]);
        let others: Vec<&Value> = s["nat64"].as_array().map_or_else(Vec::new, |l| {
            l.iter().filter(|e| e["source"] != "ra").collect()
        });
        expect.check(others.is_empty(), || {
            format!("the RA is the only source of a NAT64 prefix here (Knot does no DNS64; getapr's own RFC 7050 lookup must not see its own synthesis): {others:?}")
        });
    }

    // (2) An IPv4-only name: the plain upstream has no AAAA; getapr
    // synthesizes one from the A record and the RA's prefix.
    let v4only = labdns::name("v4only");
    let synthesized = IpAddr::from(lab::nat64(V4ONLY4));
    let direct = ask(
        &lab,
        Ns::Host,
        dns(KNOT6),
        &query(&v4only, RecordType::AAAA),
    );
    expect.check(aaaa_set(&direct).is_empty(), || {
        format!(
            "Knot itself should have no AAAA for {v4only}: {}",
            summary(&direct)
        )
    });
    let aaaa = ask(&lab, Ns::Host, stub(), &query(&v4only, RecordType::AAAA));
    eprintln!("AAAA {v4only} through getapr: {}", summary(&aaaa));
    expect.check(
        aaaa.metadata.response_code == ResponseCode::NoError && aaaa_set(&aaaa) == [synthesized],
        || {
            format!(
                "AAAA {v4only} through getapr should be the synthesized {synthesized}, got {}",
                summary(&aaaa)
            )
        },
    );
    let ttls: Vec<u32> = aaaa.answers.iter().map(|r| r.ttl).collect();
    expect.check(ttls.iter().all(|&t| t <= labdns::SOA_MINIMUM), || {
        format!(
            "synthesized TTLs should be at most min(A TTL, SOA minimum) = {} (RFC 6147 §5.1.7): {ttls:?}",
            labdns::SOA_MINIMUM
        )
    });
    expect.check(!aaaa.metadata.authentic_data, || {
        "a synthesized answer must not carry AD (RFC 6147 §5.5)".to_owned()
    });
    let a = ask(&lab, Ns::Host, stub(), &query(&v4only, RecordType::A));
    eprintln!(
        "A {v4only} through getapr (no IPv4 here: filtering it is allowed): {}",
        summary(&a)
    );

    // Cache consistency: a client's A answer is the same whether or not
    // DNS64 asked for the A records first (beside a AAAA miss).
    let a_first = labdns::name("cold-a.v4wild");
    let aaaa_first = labdns::name("cold-b.v4wild");
    let plain_a = ask(&lab, Ns::Host, stub(), &query(&a_first, RecordType::A));
    let _ = ask(
        &lab,
        Ns::Host,
        stub(),
        &query(&aaaa_first, RecordType::AAAA),
    );
    let after_dns64_a = ask(&lab, Ns::Host, stub(), &query(&aaaa_first, RecordType::A));
    eprintln!(
        "A {a_first} (asked first): {}\nA {aaaa_first} (after its AAAA): {}",
        summary(&plain_a),
        summary(&after_dns64_a)
    );
    expect.check(
        addresses(&plain_a.answers) == addresses(&after_dns64_a.answers)
            && plain_a.metadata.response_code == after_dns64_a.metadata.response_code,
        || {
            format!(
                "the A answer of an IPv4-only name should not depend on whether DNS64 asked for it first: A {a_first} {} vs A {aaaa_first} after its AAAA {}",
                summary(&plain_a),
                summary(&after_dns64_a)
            )
        },
    );

    // RFC 7050's name is never synthesized.
    let wka = "ipv4only.arpa.";
    let wka_reply = ask(&lab, Ns::Host, stub(), &query(wka, RecordType::AAAA));
    eprintln!("AAAA {wka} through getapr: {}", summary(&wka_reply));
    expect.check(aaaa_set(&wka_reply).is_empty(), || {
        format!(
            "AAAA {wka} must not be synthesized (RFC 7050 discovery sees the upstream's own answer): {}",
            summary(&wka_reply)
        )
    });

    // Beyond the acceptance bullets (issue 20, Deliver 2): the PTR of the
    // synthesized address is answered from the IPv4's in-addr.arpa (RFC
    // 6147 §5.3.1; with a CNAME to it, or with the ip6.arpa owner).
    let in_addr = format!("{}.{}.", V4ONLY4.octets()[3], labdns::REVERSE_ZONE);
    let premise = ask(
        &lab,
        Ns::Host,
        dns(KNOT6),
        &query(&in_addr, RecordType::PTR),
    );
    expect.check(
        premise.answers.iter().any(|r| r.data.to_string() == v4only),
        || {
            format!(
                "Knot should answer PTR {in_addr} with {v4only} (the test's premise): {}",
                summary(&premise)
            )
        },
    );
    let reverse = ip6_arpa(lab::nat64(V4ONLY4));
    let ptr = ask(&lab, Ns::Host, stub(), &query(&reverse, RecordType::PTR));
    eprintln!("PTR {reverse} through getapr: {}", summary(&ptr));
    let targets: Vec<String> = ptr
        .answers
        .iter()
        .filter(|r| r.record_type() == RecordType::PTR)
        .map(|r| r.data.to_string())
        .collect();
    expect.check(targets == [v4only.clone()], || {
        format!(
            "PTR {reverse} should be answered from {}.{}'s PTR ({v4only}), got {}",
            V4ONLY4.octets()[3],
            labdns::REVERSE_ZONE,
            summary(&ptr)
        )
    });

    // (3) A dual-stack name's real AAAA passes untouched, nothing added.
    let dual = labdns::name("dual");
    let dual_direct = ask(&lab, Ns::Host, dns(KNOT6), &query(&dual, RecordType::AAAA));
    let dual_through = ask(&lab, Ns::Host, stub(), &query(&dual, RecordType::AAAA));
    eprintln!("AAAA {dual} through getapr: {}", summary(&dual_through));
    expect.check(
        aaaa_set(&dual_through) == [IpAddr::from(DUAL6)]
            && aaaa_set(&dual_through) == aaaa_set(&dual_direct),
        || {
            format!(
                "AAAA {dual} should be Knot's own [{DUAL6}] untouched, got {}",
                summary(&dual_through)
            )
        },
    );

    // (3) A signed IPv4-only name asked with DO (kdig +dnssec): no
    // synthesis (RFC 6147 §5.5), neither on the miss nor after an answer
    // without DO (which may be synthesized) is cached.
    let signed = labdns::signed_name("v4only");
    let signed_a = kdig(
        &lab,
        Ns::Host,
        IpAddr::from(KNOT6),
        &["+dnssec", "A", &signed],
    );
    expect.check(signed_a.contains("\tRRSIG\tA "), || {
        format!("Knot should sign A {signed} (the test's premise):\n{signed_a}")
    });
    let stub_ip: IpAddr = STUB.parse().expect("an IP");
    let with_do = kdig(&lab, Ns::Host, stub_ip, &["+dnssec", "AAAA", &signed]);
    eprintln!("kdig +dnssec AAAA {signed} through getapr:\n{with_do}");
    expect.check(kdig_aaaa(&with_do).is_empty(), || {
        format!(
            "kdig +dnssec AAAA {signed} (signed A) must get no synthesized AAAA: {:?}",
            kdig_aaaa(&with_do)
        )
    });
    let without_do = ask(&lab, Ns::Host, stub(), &query(&signed, RecordType::AAAA));
    eprintln!(
        "AAAA {signed} without DO through getapr (synthesis allowed): {}",
        summary(&without_do)
    );
    let again = kdig(&lab, Ns::Host, stub_ip, &["+dnssec", "AAAA", &signed]);
    expect.check(kdig_aaaa(&again).is_empty(), || {
        format!(
            "kdig +dnssec AAAA {signed} after a query without DO must still get no synthesized AAAA (cache): {:?}",
            kdig_aaaa(&again)
        )
    });

    // (2) Unmodified applications through glibc, getapr as the resolver.
    lab.write_netns_resolv_conf(Ns::Host, &format!("nameserver {STUB}"));
    let getent = getent_ahosts(&lab, v4only.trim_end_matches('.'));
    eprintln!("getent ahosts {v4only}: {getent:?}");
    expect.check(getent.contains(&synthesized), || {
        format!("getent ahosts {v4only} should list the synthesized {synthesized}, got {getent:?}")
    });
    // A name nobody asked for yet (getapr's cache misses: AAAA, then A),
    // then the warm one.
    let cold = labdns::name("cold-1.v4wild");
    for name in [cold.as_str(), v4only.as_str()] {
        let connect = python_connect(&lab, name.trim_end_matches('.'), 80);
        eprintln!(
            "MEASURED socket.create_connection(({name}, 80)) through getapr and NAT64: {connect:?}"
        );
        expect.check(
            connect.connected && connect.detail == synthesized.to_string(),
            || format!("socket.create_connection(({name}, 80)) should connect to {synthesized} through the NAT64, got {connect:?}"),
        );
        expect.check(connect.seconds < 1.0, || {
            format!(
                "socket.create_connection(({name}, 80)) took {:.3} s, not under 1 s",
                connect.seconds
            )
        });
    }
    let service_log = servers.service_log();
    expect.check(
        service_log
            .iter()
            .any(|l| l.starts_with(&format!("tcp {V4ONLY4}:80 {}:", lab::ROUTER_WAN4))),
        || format!("inet should have seen the connections to {V4ONLY4}:80 from the router's NAT44 address, saw {service_log:?}"),
    );

    // (4) /pairs of an IPv4 literal on this IPv6-only host: the NAT64
    // destination with a working IPv6 source.
    check_nat64_pairs(&lab, &STUN4.to_string(), STUN4, &mut expect);
    // ... and of an IPv4-only name: its A record's NAT64 address.
    check_nat64_pairs(&lab, &labdns::name("v4only"), V4ONLY4, &mut expect);
    expect.finish(TEST, Some(&getapr));
}

/// Bullet 4: `/pairs?host=203.0.113.20` (or an IPv4-only name, `v4` its
/// A record) gives the NAT64 pair first, and the pair reaches the
/// destination.
fn check_nat64_pairs(lab: &Lab, host: &str, v4: Ipv4Addr, expect: &mut Expectations) {
    let literal = v4;
    let nat64_dest = lab::nat64(literal);
    if v4 == STUN4 {
        assert_eq!(
            nat64_dest,
            "2001:db8:64::cb00:7114"
                .parse::<Ipv6Addr>()
                .expect("an IPv6 address")
        );
    }
    let url = format!("http://127.0.0.1:{HTTP_PORT}/pairs?host={host}");
    let (code, body) = curl(lab, &url);
    eprintln!("GET {url}: HTTP {code}: {body}");
    let json: Value = match (code, serde_json::from_str(&body)) {
        (200, Ok(json)) => json,
        _ => {
            expect.check(false, || {
                format!("GET {url} should answer 200 with JSON: HTTP {code}: {body}")
            });
            return;
        }
    };
    let pairs = json["pairs"].as_array().cloned().unwrap_or_default();
    let working_v6: Vec<String> = status(lab)
        .ok()
        .and_then(|s| s["sources"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|s| s["state"] == "ok" && s["address"].as_str().is_some_and(|a| a.contains(':')))
        .filter_map(|s| s["address"].as_str().map(str::to_owned))
        .collect();
    let Some(first) = pairs.first() else {
        expect.check(false, || {
            format!("GET {url} should list the NAT64 pair, got no pairs: {body}")
        });
        return;
    };
    let source = first["source"].as_str().unwrap_or_default().to_owned();
    expect.check(
        first["family"] == "ipv6"
            && first["destination"] == nat64_dest.to_string().as_str()
            && first["nat64"] == literal.to_string().as_str()
            && first["port"] == 443,
        || {
            format!(
                "the first pair of {literal} should be family ipv6, destination {nat64_dest}, port 443, \"nat64\": \"{literal}\": {first}"
            )
        },
    );
    expect.check(
        working_v6.contains(&source) && source == HOST6.to_string(),
        || format!("the NAT64 pair's source should be the host's working IPv6 source {HOST6} (working per /status: {working_v6:?}): {first}"),
    );
    // The pair works: a connect from its source reaches the literal's
    // host through the NAT64 (an RST from inet is an answer: nothing
    // listens on 443 there).
    if let Ok(src) = source.parse::<IpAddr>() {
        let reached = lab.tcp_connect(
            Ns::Host,
            SocketAddr::new(nat64_dest.into(), 443),
            Some(src),
            Duration::from_secs(3),
        );
        eprintln!("TCP from {src} to [{nat64_dest}]:443: {reached:?}");
        expect.check(
            matches!(reached, Connect::Connected | Connect::Refused),
            || format!("the NAT64 pair should reach {literal} through tayga, got {reached:?}"),
        );
    }
}

/// Bullet 3 with a DNS64 upstream (Unbound synthesizing with the same
/// prefix): getapr adds nothing, its AAAA answers are Unbound's.
#[test]
fn dns64_upstream_answers_are_not_synthesized_twice() {
    const TEST: &str = "dns64_lab::dns64_upstream_answers_are_not_synthesized_twice";
    if !lab::root_or_skip(TEST) {
        return;
    }
    let lab = nat64_lab();
    let servers = LabDns::start_with_dns64(&lab);
    let getapr = start_getapr(&lab, &servers, UNBOUND6.into());
    let _sender = lab.send_pref64_ras(Ns::Router, ras());
    let mut expect = Expectations::default();
    wait_dns64_active(&lab, Instant::now(), &mut expect);
    // RFC 7050 through Unbound finds the same prefix: both sources shown.
    match poll_status(&lab, Instant::now(), PATIENCE, |s| {
        !nat64_entries(s, prefix(), "rfc7050").is_empty()
            && !nat64_entries(s, prefix(), "ra").is_empty()
    }) {
        Ok((_, s)) => eprintln!("\"nat64\": {}", s["nat64"]),
        Err(last) => {
            expect.check(false, || {
                format!("/status should list {} from both \"ra\" and \"rfc7050\" (Unbound does DNS64): {last}", prefix())
            });
        }
    }
    let synthesized = IpAddr::from(lab::nat64(V4ONLY4));
    // A fresh name first (getapr's miss), then one already asked.
    for label in ["cold-2.v4wild", "v4only"] {
        let name = labdns::name(label);
        let through = ask(&lab, Ns::Host, stub(), &query(&name, RecordType::AAAA));
        let unbound = ask(
            &lab,
            Ns::Host,
            dns(UNBOUND6),
            &query(&name, RecordType::AAAA),
        );
        eprintln!(
            "AAAA {name}: through getapr {}; Unbound {}",
            summary(&through),
            summary(&unbound)
        );
        expect.check(aaaa_set(&unbound) == [synthesized], || {
            format!(
                "Unbound should synthesize [{synthesized}] for {name} (the test's premise): {}",
                summary(&unbound)
            )
        });
        expect.check(aaaa_set(&through) == aaaa_set(&unbound), || {
            format!(
                "AAAA {name} through getapr should equal Unbound's synthesized set {:?} (nothing synthesized twice), got {}",
                aaaa_set(&unbound),
                summary(&through)
            )
        });
        let records = through.answers.len();
        expect.check(records == aaaa_set(&unbound).len(), || {
            format!(
                "AAAA {name}: {records} answer records, Unbound gave {}",
                unbound.answers.len()
            )
        });
    }
    let dual = labdns::name("dual");
    let through = ask(&lab, Ns::Host, stub(), &query(&dual, RecordType::AAAA));
    let added: Vec<IpAddr> = aaaa_set(&through)
        .into_iter()
        .filter(in_nat64_prefix)
        .collect();
    expect.check(
        aaaa_set(&through) == [IpAddr::from(DUAL6)] && added.is_empty(),
        || {
            format!(
                "AAAA {dual} through getapr should be [{DUAL6}] only, got {}",
                summary(&through)
            )
        },
    );
    expect.finish(TEST, Some(&getapr));
}

/// The pure helpers of this file.
#[test]
fn helpers_read_kdig_and_the_prefix() {
    let out = ";; QUESTION SECTION:\n;; v4only.signed.example.\t\tIN\tAAAA\n\n\
               ;; ANSWER SECTION:\nv4only.signed.example.\t300\tIN\tAAAA\t2001:db8:64::cb00:7152\n";
    assert_eq!(kdig_aaaa(out).len(), 1);
    assert!(kdig_aaaa(";; QUESTION SECTION:\n;; x.\t\tIN\tAAAA\n").is_empty());
    assert!(in_nat64_prefix(&IpAddr::from(lab::nat64(V4ONLY4))));
    assert!(!in_nat64_prefix(&IpAddr::from(DUAL6)));
    assert!(!in_nat64_prefix(&IpAddr::from(Ipv4Addr::LOCALHOST)));
    let s: Value = serde_json::json!({
        "nat64": [{"prefix": "2001:db8:64::/96", "source": "ra", "interface": "eth0",
                   "router": "fe80::1", "expires_in_s": 12}],
        "nat64_prefixes": ["2001:db8:64::/96"],
        "dns64": {"synthesize": "auto", "active": true}
    });
    assert_eq!(nat64_entries(&s, "2001:db8:64::/96", "ra").len(), 1);
    assert!(nat64_entries(&s, "2001:db8:64::/96", "rfc7050").is_empty());
    assert!(lists_prefix(&s, "2001:db8:64::/96"));
    assert!(dns64_active(&s));
    assert_eq!(
        ip6_arpa(lab::nat64(V4ONLY4)),
        "2.5.1.7.0.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.4.6.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
    );
}
