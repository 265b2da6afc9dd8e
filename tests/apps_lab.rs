//! Applications that use the pairs, against the real daemon in the network
//! lab: the Python package's `getapr.create_connection` and
//! `getapr.open_connection` (`python/`), and `getapr connect`, each beside
//! what an unmodified application gets from `socket.create_connection`.
//!
//! (a) Two IPv6 uplinks; the first one (the one an unbound socket routes
//! through) dies. The pairs' clients connect from the other prefix in
//! under 1 s; the kernel's choice of source keeps using the dead uplink.
//! (b) One uplink whose IPv6 is broken: all three connect over IPv4 in
//! under 1 s.
//!
//! The zones' listeners in the lab's inet namespace (`LabDns`) log the
//! peer address of each connection they accept: that is the address the
//! server saw. Needs root; skips loudly otherwise.

mod common;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::lab::{self, Family, HOST4, HOST6, HOST6_2, Lab, Ns};
use common::labdns::{self, GetaprConfig, KNOT4, LabDns, LabGetapr};

const HTTP_PORT: u16 = 8080;

/// The bound the issue sets for a client that uses the pairs.
const QUICK: Duration = Duration::from_secs(1);

/// How long verdicts may take before the test gives up (a margin for a
/// loaded machine, not an acceptance bound).
const PATIENCE: Duration = Duration::from_secs(10);

/// The connect timeout every client is given.
const TIMEOUT_S: &str = "5";

fn dual() -> String {
    labdns::name("dual").trim_end_matches('.').to_owned()
}

fn api() -> String {
    format!("http://127.0.0.1:{HTTP_PORT}")
}

fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// What one client did: its local address when it connected, how long it
/// took, and the peer address the service logged for it (if it connected).
#[derive(Debug)]
struct Outcome {
    client: &'static str,
    local: Option<IpAddr>,
    took: Duration,
    seen: Option<String>,
    detail: String,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.local, &self.seen) {
            (Some(local), Some(seen)) => write!(
                f,
                "{}: connected from {local} in {:.3} s, the server saw {seen}",
                self.client,
                self.took.as_secs_f64()
            ),
            _ => write!(
                f,
                "{}: {} after {:.3} s",
                self.client,
                self.detail,
                self.took.as_secs_f64()
            ),
        }
    }
}

/// The peer of the first connection to the dual-stack name's port 80
/// logged after the `before`th service line (the probes' connections to
/// the targets are logged too).
fn seen_after(dns: &LabDns, before: usize) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let ours = [
        format!("tcp [{}]:80 ", labdns::DUAL6),
        format!("tcp {}:80 ", labdns::DUAL4),
    ];
    loop {
        let log = dns.service_log();
        let mut lines = log.iter().skip(before);
        if let Some(line) = lines.find(|l| ours.iter().any(|o| l.starts_with(o.as_str()))) {
            return line.split_whitespace().nth(2).map(str::to_owned);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `tests/lab/apps.py MODE dual 80`: the Python clients.
fn python(lab: &Lab, dns: &LabDns, mode: &'static str) -> Outcome {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/lab/apps.py");
    let before = dns.service_log().len();
    let mut command = lab.command(Ns::Host, &["python3"]);
    command
        .arg(&script)
        .args([mode, &dual(), "80", TIMEOUT_S])
        .env("PYTHONPATH", python_dir())
        .env("GETAPR_API", api())
        .stdin(Stdio::null());
    let out = command.output().expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let words: Vec<&str> = stdout.split_whitespace().collect();
    let client = match mode {
        "getapr" => "getapr.create_connection",
        "asyncio" => "getapr.open_connection",
        _ => "socket.create_connection",
    };
    match words.as_slice() {
        ["connected", local, secs] => Outcome {
            client,
            local: local.parse().ok(),
            took: Duration::from_secs_f64(secs.parse().unwrap_or(f64::NAN)),
            seen: seen_after(dns, before),
            detail: stderr,
        },
        ["failed", secs, ..] => Outcome {
            client,
            local: None,
            took: Duration::from_secs_f64(secs.parse().unwrap_or(f64::NAN)),
            seen: None,
            detail: format!("{stdout} {stderr}"),
        },
        _ => panic!("{client}: unexpected output {stdout:?}, stderr {stderr:?}"),
    }
}

/// `getapr connect dual 80` with stdin closed: it connects, the service
/// accepts and closes, and getapr exits 0.
fn connect_cli(lab: &Lab, dns: &LabDns) -> Outcome {
    let before = dns.service_log().len();
    let host = dual();
    let api = api();
    let mut command = lab.command(
        Ns::Host,
        &[
            env!("CARGO_BIN_EXE_getapr"),
            "connect",
            host.as_str(),
            "80",
            "--api",
            api.as_str(),
            "--timeout",
            TIMEOUT_S,
        ],
    );
    command.stdin(Stdio::null());
    let start = Instant::now();
    let out = command.output().expect("run getapr connect");
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if !out.status.success() {
        return Outcome {
            client: "getapr connect",
            local: None,
            took,
            seen: None,
            detail: format!("{}: {stderr}", out.status),
        };
    }
    let seen = seen_after(dns, before);
    // The CLI prints nothing but the peer's bytes: the local address is
    // the one the server saw (IPv6 is not translated in the lab).
    let local = seen
        .as_deref()
        .and_then(|s| s.rsplit_once(':'))
        .and_then(|(a, _)| a.trim_matches(['[', ']']).parse().ok());
    Outcome {
        client: "getapr connect",
        local,
        took,
        seen,
        detail: stderr,
    }
}

fn start(lab: &Lab, dns: &LabDns) -> LabGetapr {
    let mut config = GetaprConfig::new(KNOT4);
    config.http_port = Some(HTTP_PORT);
    let getapr = LabGetapr::start(lab, dns, config);
    lab.write_netns_resolv_conf(Ns::Host, "nameserver 127.0.0.53");
    getapr
}

fn wait_source(getapr: &LabGetapr, since: Instant, state: &str, source: IpAddr) -> Duration {
    getapr
        .wait(since, &[state, &format!("source={source}")], PATIENCE)
        .0
}

/// Asserts that `outcome` connected from `source` in under [`QUICK`], with
/// the server seeing `seen` (an address, as the service prints it).
fn assert_quick_from(outcome: &Outcome, source: IpAddr, seen: &str) {
    assert_eq!(outcome.local, Some(source), "{outcome}");
    assert!(
        outcome.seen.as_deref().is_some_and(|s| s.contains(seen)),
        "the server should have seen {seen}: {outcome}"
    );
    assert!(outcome.took < QUICK, "{outcome}: not under {QUICK:?}");
}

/// (a) The multihome case: after the first uplink dies, the pairs'
/// clients leave from the second prefix at once, while the kernel's
/// choice waits on the dead uplink.
#[test]
fn clients_of_the_pairs_leave_by_the_working_uplink() {
    if !lab::root_or_skip("clients_of_the_pairs_leave_by_the_working_uplink") {
        return;
    }
    labdns::assert_glibc_uses_resolv_conf();
    let lab = Lab::builder().second_uplink().build();
    let dns = LabDns::start(&lab);
    let begin = Instant::now();
    let getapr = start(&lab, &dns);
    for source in [IpAddr::from(HOST6), HOST6_2.into(), HOST4.into()] {
        let t = wait_source(&getapr, begin, "ok", source);
        eprintln!("(a) {source} ok after {t:?}");
    }
    // The first uplink is the one an unbound socket's route goes through
    // (`default via ROUTER_LLA`): break it, so that the kernel's choice is
    // the dead one whichever source it picks for the socket.
    let route = lab.run(
        Ns::Host,
        &["ip", "-6", "route", "get", &labdns::DUAL6.to_string()],
    );
    eprintln!("(a) an unbound socket's route: {}", route.trim());
    assert!(
        route.contains(&lab.router_link_local().to_string()),
        "an unbound socket should route through the first router: {route}"
    );
    let broke = Instant::now();
    lab.drop_forwarding(Ns::Router, Family::V6, true);
    let t = wait_source(&getapr, broke, "failed", HOST6.into());
    eprintln!("(a) the first uplink dropped IPv6: {HOST6} failed after {t:?}");

    let outcomes = [
        python(&lab, &dns, "getapr"),
        python(&lab, &dns, "asyncio"),
        connect_cli(&lab, &dns),
        python(&lab, &dns, "stdlib"),
    ];
    for outcome in &outcomes {
        eprintln!("MEASURED (a) {outcome}");
    }
    let seen = format!("[{HOST6_2}]");
    for outcome in &outcomes[..3] {
        assert_quick_from(outcome, HOST6_2.into(), &seen);
    }
    // The unmodified application: its first attempt goes out over the
    // dead uplink and waits (it may get out over IPv4 after the timeout).
    let kernel = &outcomes[3];
    assert!(
        kernel.took >= QUICK,
        "socket.create_connection should have waited on the dead uplink: {kernel}"
    );
}

/// (b) A host whose IPv6 is broken upstream: the pairs' clients connect
/// over IPv4 in under 1 s.
#[test]
fn clients_of_the_pairs_use_ipv4_when_ipv6_is_broken() {
    if !lab::root_or_skip("clients_of_the_pairs_use_ipv4_when_ipv6_is_broken") {
        return;
    }
    labdns::assert_glibc_uses_resolv_conf();
    let lab = Lab::new();
    let dns = LabDns::start(&lab);
    let begin = Instant::now();
    let getapr = start(&lab, &dns);
    for source in [IpAddr::from(HOST6), HOST4.into()] {
        wait_source(&getapr, begin, "ok", source);
    }
    let broke = Instant::now();
    lab.drop_ipv6_forwarding(true);
    let t = wait_source(&getapr, broke, "failed", HOST6.into());
    eprintln!("(b) IPv6 dropped: {HOST6} failed after {t:?}");

    let outcomes = [
        python(&lab, &dns, "getapr"),
        python(&lab, &dns, "asyncio"),
        connect_cli(&lab, &dns),
    ];
    // For comparison only: the stub filters the AAAA here, so the kernel's
    // choice is quick too.
    eprintln!("MEASURED (b) {}", python(&lab, &dns, "stdlib"));
    let router = lab::ROUTER_WAN4.to_string();
    for outcome in &outcomes {
        eprintln!("MEASURED (b) {outcome}");
        assert!(
            outcome
                .seen
                .as_deref()
                .is_some_and(|s| s.starts_with(&router)),
            "the server should have seen the router's IPv4 WAN address {router} (NAT44): {outcome}"
        );
        assert!(outcome.took < QUICK, "{outcome}: not under {QUICK:?}");
    }
    for outcome in &outcomes[..2] {
        assert_eq!(outcome.local, Some(HOST4.into()), "{outcome}");
    }
}
