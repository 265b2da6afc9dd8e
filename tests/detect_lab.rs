//! How fast verdicts follow the network at the shipped probe settings
//! (root, network lab): getapr runs in the lab's host namespace with the
//! default `[probe]` timing (a round every 15 s, 1 s timeout, learned
//! destinations on), its targets and STUN servers pointed at the lab's
//! "Internet", and Knot in inet as its upstream (`tests/common/labdns.rs`).
//!
//! - `ipv6_break_at_default_settings`: an application connects to a
//!   dual-stack name every second (Python `socket.create_connection`, 5 s
//!   timeout, resolving through getapr); IPv6 breaks at the router and is
//!   repaired, at a different point of the round cycle each time. Prints
//!   the time from the break until the AAAA is filtered and from the
//!   repair until it is back, per cycle (`GETAPR_DETECT_CYCLES`, 2 by
//!   default).
//! - `idle_probe_traffic`: probe packets the router sees from an idle host
//!   in 60 s (`GETAPR_IDLE_S`), counted by nftables: TCP SYNs to the
//!   Internet, SYNs to the gateway, STUN requests. With `GETAPR_BASE_BIN`
//!   set to another getapr binary it measures that one too, in the same
//!   lab, for a before/after comparison.
//!
//! Run with `--nocapture --test-threads=1` to see the figures.

mod common;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::rr::RecordType;

use common::lab::{self, HOST4, HOST6, Lab, LabChild, Ns};
use common::labdns::{self, DUAL6, KNOT4, LabDns, LabGetapr, addresses, ask};
use common::query;

/// getapr's listen address in the host namespace.
const STUB: &str = "127.0.0.53";

/// The targets the issue sets: filtered within 5 s of the break, back
/// within 20 s of the repair.
const FILTER_TARGET: Duration = Duration::from_secs(5);
const RECOVER_TARGET: Duration = Duration::from_secs(20);

/// The shipped `[probe]` settings but for where the probes go: the lab's
/// TCP target and STUN server. No `interval_ms`, `timeout_ms` or
/// `destinations`: their defaults are what is measured.
fn config_text() -> String {
    format!(
        "[dns]\nlisten = [\"{STUB}:53\"]\nupstreams = [\"{KNOT4}\"]\n\
         [http]\nlisten = []\n\
         [probe]\ntargets = [\"{}:443\", \"[{}]:443\"]\n\
         stun = [\"{}:{port}\", \"[{}]:{port}\"]\n\
         [policy]\nfilter = \"auto\"\n",
        lab::TARGET4,
        lab::TARGET6,
        lab::STUN4,
        lab::STUN6,
        port = lab::STUN_PORT,
    )
}

fn write_config(dns: &LabDns) -> PathBuf {
    let path = dns.dir().join("detect.toml");
    std::fs::write(&path, config_text())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

fn wall() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Whether getapr's answer to AAAA `name` holds [`DUAL6`].
fn has_aaaa(lab: &Lab, name: &str) -> bool {
    let stub = SocketAddr::new(STUB.parse().expect("an IP"), 53);
    let reply = ask(lab, Ns::Host, stub, &query(name, RecordType::AAAA));
    addresses(&reply.answers).contains(&IpAddr::from(DUAL6))
}

/// Polls AAAA `name` through getapr about every 100 ms until it holds
/// [`DUAL6`] (`want`) or not, for up to `within`: how long after `since`
/// that was first seen.
fn aaaa_becomes(
    lab: &Lab,
    name: &str,
    want: bool,
    since: Instant,
    within: Duration,
) -> Option<Duration> {
    while since.elapsed() < within {
        let asked = Instant::now();
        if has_aaaa(lab, name) == want {
            // The answer is as old as the query: count from when it was asked.
            return Some(asked.saturating_duration_since(since));
        }
        std::thread::sleep(Duration::from_millis(100).saturating_sub(asked.elapsed()));
    }
    None
}

/// An application that connects to `name`:80 every second, each connect in
/// a thread of its own with a 5 s timeout per address (as
/// `socket.create_connection` does), printing `START OUTCOME SECONDS PEER`.
fn start_app(lab: &Lab, name: &str) -> (LabChild, Arc<Mutex<Vec<String>>>) {
    let script = "import socket, sys, threading, time\n\
                  def one():\n\
                  \x20   start = time.time()\n\
                  \x20   try:\n\
                  \x20       s = socket.create_connection((sys.argv[1], 80), timeout=5)\n\
                  \x20       print('%.3f ok %.3f %s' % (start, time.time() - start, s.getpeername()[0]), flush=True)\n\
                  \x20       s.close()\n\
                  \x20   except Exception as e:\n\
                  \x20       print('%.3f error %.3f %r' % (start, time.time() - start, e), flush=True)\n\
                  while True:\n\
                  \x20   threading.Thread(target=one, daemon=True).start()\n\
                  \x20   time.sleep(1)\n";
    let mut command = lab.command(
        Ns::Host,
        &[
            lab::python(),
            OsStr::new("-S"),
            OsStr::new("-c"),
            OsStr::new(script),
            OsStr::new(name),
        ],
    );
    command.stdin(Stdio::null()).stdout(Stdio::piped());
    let mut child = LabChild::spawn(&mut command);
    let stdout = child.stdout.take().expect("stdout is piped");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    });
    (child, lines)
}

/// The application's connects started in `[from, to)` (wall clock): how
/// many, and how many of them waited out a timeout (4.5 s or more).
fn app_connects(lines: &Mutex<Vec<String>>, from: f64, to: f64) -> (usize, usize) {
    let lines = lines.lock().unwrap_or_else(|p| p.into_inner());
    let mut all = 0;
    let mut slow = 0;
    for line in lines.iter() {
        let mut w = line.split_whitespace();
        let (Some(start), _, Some(took)) = (
            w.next().and_then(|s| s.parse::<f64>().ok()),
            w.next(),
            w.next().and_then(|s| s.parse::<f64>().ok()),
        ) else {
            continue;
        };
        if (from..to).contains(&start) {
            all += 1;
            slow += usize::from(took >= 4.5);
        }
    }
    (all, slow)
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn ipv6_break_at_default_settings() {
    if !lab::root_or_skip("detect_lab::ipv6_break_at_default_settings") {
        return;
    }
    labdns::assert_glibc_uses_resolv_conf();
    let lab = Lab::new();
    let dns = LabDns::start(&lab);
    let config = write_config(&dns);
    let start = Instant::now();
    let getapr = LabGetapr::start_file(&lab, OsStr::new(env!("CARGO_BIN_EXE_getapr")), &config);
    for src in [HOST6.to_string(), HOST4.to_string()] {
        let took = getapr
            .try_wait(
                start,
                &["ok", &format!("source={src}")],
                Duration::from_secs(10),
            )
            .map(|(t, _)| t)
            .unwrap_or_else(|| panic!("source {src} never ok; log:\n{}", getapr.log()));
        eprintln!("source {src} ok after {took:?}");
    }
    lab.write_netns_resolv_conf(Ns::Host, &format!("nameserver {STUB}"));
    let dual = labdns::name("dual");
    let (_app, app_lines) = start_app(&lab, &dual);

    let cycles = env_number("GETAPR_DETECT_CYCLES", 2);
    let mut unmet = Vec::new();
    for cycle in 1..=cycles {
        // Break at a different point of the 15 s round cycle each time.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let phase = Duration::from_millis(5_000 + u64::from(nanos) % 15_000);
        std::thread::sleep(phase);
        assert!(
            has_aaaa(&lab, &dual),
            "cycle {cycle}: AAAA {dual} should be answered while IPv6 works; log:\n{}",
            getapr.log()
        );

        let (broke_wall, broke) = (wall(), Instant::now());
        lab.drop_ipv6_forwarding(true);
        let filtered = aaaa_becomes(&lab, &dual, false, broke, Duration::from_secs(30));
        let failed = getapr
            .try_wait(
                broke,
                &["failed", &format!("source={HOST6}")],
                Duration::from_secs(1),
            )
            .map(|(t, _)| t);
        // Broken for 12 to 27 s in all, so that the repair falls anywhere
        // in the failed source's round cycle; the AAAA must stay filtered
        // meanwhile.
        let hold = Duration::from_millis(12_000 + u64::from(nanos / 7) % 15_000);
        let mut flapped = 0;
        while broke.elapsed() < hold {
            flapped += usize::from(has_aaaa(&lab, &dual));
            std::thread::sleep(Duration::from_millis(200));
        }
        let (repaired_wall, repaired) = (wall(), Instant::now());
        lab.drop_ipv6_forwarding(false);
        let back = aaaa_becomes(&lab, &dual, true, repaired, Duration::from_secs(40));
        let ok = getapr
            .try_wait(
                repaired,
                &["ok", &format!("source={HOST6}")],
                Duration::from_secs(1),
            )
            .map(|(t, _)| t);
        let (connects, waited) = app_connects(&app_lines, broke_wall, repaired_wall);
        eprintln!(
            "MEASURED cycle {cycle} (broken {:.1} s after the last cycle, for {:.1} s): AAAA filtered {filtered:.2?} after the break \
             (source failed in the log at {failed:.2?}), back {back:.2?} after the repair (source ok at {ok:.2?}); \
             {flapped} answers with the AAAA while broken after it was filtered; \
             application: {waited} of {connects} connects while broken waited out a 5 s timeout",
            phase.as_secs_f64(),
            hold.as_secs_f64()
        );
        for line in getapr.lines_since(broke, &["early", "SYN-SENT", "source failed", "source ok"])
        {
            eprintln!("  {line}");
        }
        match filtered {
            Some(t) if t <= FILTER_TARGET => {}
            other => unmet.push(format!(
                "cycle {cycle}: AAAA filtered after {other:?}, target {FILTER_TARGET:?}"
            )),
        }
        match back {
            Some(t) if t <= RECOVER_TARGET => {}
            other => unmet.push(format!(
                "cycle {cycle}: AAAA back after {other:?}, target {RECOVER_TARGET:?}"
            )),
        }
        if flapped > 0 {
            unmet.push(format!(
                "cycle {cycle}: {flapped} answers held the AAAA again while IPv6 was broken"
            ));
        }
    }
    assert!(
        unmet.is_empty(),
        "unmet:\n  {}\nlog:\n{}",
        unmet.join("\n  "),
        getapr.log()
    );
}

/// Named nftables counters in the router for what the host sends: TCP SYNs
/// forwarded to the Internet, SYNs to the router itself (gateway probes,
/// port 53), STUN requests; per family.
const COUNTERS: [&str; 6] = ["syn4", "syn6", "gw4", "gw6", "stun4", "stun6"];

fn install_counters(lab: &Lab) {
    let syn = "tcp flags & (syn | ack) == syn";
    lab.nft(
        Ns::Router,
        &format!(
            "table inet detect {{
                counter syn4 {{}}
                counter syn6 {{}}
                counter gw4 {{}}
                counter gw6 {{}}
                counter stun4 {{}}
                counter stun6 {{}}
                chain forward {{
                    type filter hook forward priority filter - 10; policy accept;
                    ip saddr {HOST4} {syn} counter name syn4
                    ip6 saddr {HOST6} {syn} counter name syn6
                    ip saddr {HOST4} udp dport {stun} counter name stun4
                    ip6 saddr {HOST6} udp dport {stun} counter name stun6
                }}
                chain input {{
                    type filter hook input priority filter - 10; policy accept;
                    meta nfproto ipv4 tcp dport 53 {syn} counter name gw4
                    meta nfproto ipv6 tcp dport 53 {syn} counter name gw6
                }}
            }}\n",
            stun = lab::STUN_PORT,
        ),
    );
}

/// The packets each of [`COUNTERS`] counted so far.
fn read_counters(lab: &Lab) -> Vec<u64> {
    COUNTERS
        .iter()
        .map(|name| {
            let text = lab.run(
                Ns::Router,
                &["nft", "list", "counter", "inet", "detect", name],
            );
            text.split("packets ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no packet count for {name} in:\n{text}"))
        })
        .collect()
}

/// Starts `bin` on an idle host, lets its first rounds pass, and counts
/// what it sends in `idle`: the per-minute rates of [`COUNTERS`].
fn idle_rates(lab: &Lab, bin: &OsStr, config: &Path, idle: Duration) -> Vec<f64> {
    let getapr = LabGetapr::start_file(lab, bin, config);
    std::thread::sleep(Duration::from_secs(5));
    let before = read_counters(lab);
    std::thread::sleep(idle);
    let after = read_counters(lab);
    let early = getapr.lines_since(Instant::now() - idle, &["early"]);
    eprintln!("  early rounds logged while idle: {}", early.len());
    drop(getapr);
    let minutes = idle.as_secs_f64() / 60.0;
    before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a - b) as f64 / minutes)
        .collect()
}

#[test]
fn idle_probe_traffic() {
    if !lab::root_or_skip("detect_lab::idle_probe_traffic") {
        return;
    }
    let lab = Lab::new();
    let dns = LabDns::start(&lab);
    let config = write_config(&dns);
    install_counters(&lab);
    let idle = Duration::from_secs(env_number("GETAPR_IDLE_S", 60));
    let mut runs: Vec<(String, PathBuf)> = Vec::new();
    if let Some(base) = std::env::var_os("GETAPR_BASE_BIN") {
        runs.push(("base (GETAPR_BASE_BIN)".into(), PathBuf::from(base)));
    } else {
        eprintln!("GETAPR_BASE_BIN not set: measuring this build only");
    }
    runs.push((
        "this build".into(),
        PathBuf::from(env!("CARGO_BIN_EXE_getapr")),
    ));
    let mut totals = Vec::new();
    for (label, bin) in &runs {
        let rates = idle_rates(&lab, bin.as_os_str(), &config, idle);
        let per = |name: &str| rates[COUNTERS.iter().position(|c| *c == name).expect("a counter")];
        let total: f64 = rates.iter().sum();
        eprintln!(
            "MEASURED idle probe traffic per minute over {} s, {label} ({}): \
             TCP connects to the Internet {:.1} (IPv4 {:.1}, IPv6 {:.1}), to the gateway {:.1} (IPv4 {:.1}, IPv6 {:.1}), \
             STUN requests {:.1} (IPv4 {:.1}, IPv6 {:.1}); all probe packets {total:.1}",
            idle.as_secs(),
            bin.display(),
            per("syn4") + per("syn6"),
            per("syn4"),
            per("syn6"),
            per("gw4") + per("gw6"),
            per("gw4"),
            per("gw6"),
            per("stun4") + per("stun6"),
            per("stun4"),
            per("stun6"),
        );
        // A round every 15 s ± 10 % is 4 to 4.5 a minute per source; one
        // target and one STUN server per family, and the gateways from the
        // GUA, the IPv4 and the link-local sources: about 8 connects to the
        // Internet a minute. Twice that is a catch-all for a leak.
        assert!(
            per("syn4") + per("syn6") <= 16.0,
            "{label}: {:.1} probe connects per minute on an idle host",
            per("syn4") + per("syn6")
        );
        assert!(total > 0.0, "{label}: no probe traffic counted at all");
        totals.push(total);
    }
    if let [base, new] = totals[..] {
        eprintln!("MEASURED idle probe packets per minute: base {base:.1}, this build {new:.1}");
        // Jitter moves a round in or out of the window: allow one round
        // of every source (about 7 packets) on top.
        assert!(
            new <= base + 8.0,
            "this build sends more when idle: {new:.1} vs {base:.1}"
        );
    }
}
