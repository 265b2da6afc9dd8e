//! DNS answers follow the verdicts at once (root; the network lab): with a
//! probe round every second, IPv6 breaks at the router and is repaired
//! while a poller in the host namespace asks getapr's `/status` and the
//! AAAA of a dual-stack name every ~20 ms. The AAAA must be gone from
//! answers no later than 100 ms after `/status` first shows the IPv6
//! source failed, both from a cached answer (redone through the verdict
//! generation) and from a fresh one (a cache miss, whose address getapr
//! learns and keeps probing).
//!
//! Run with `--nocapture` to see the measured figures (`MEASURED` lines).

mod common;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use common::lab::{self, HOST4, HOST6, Lab, LabChild, Ns};
use common::labdns::{self, DUAL6, GetaprConfig, KNOT4, LabDns, LabGetapr, addresses, ask};
use common::query;

/// getapr's sidecar port in the host namespace (a namespace of this run).
const HTTP_PORT: u16 = 8053;

/// How far `/status` and the answers may be apart: the issue's bound.
const FOLLOW: Duration = Duration::from_millis(100);

/// Generous catch-alls for a loaded machine: the source verdicts take two
/// rounds of 1 s plus their 0.5 s timeouts.
const VERDICT: Duration = Duration::from_secs(10);

/// The poller: every ~20 ms, `GET /status` (the state of the IPv6 source
/// given), then AAAA of the cached name and of a fresh name (a cache miss)
/// through getapr. One line per poll: `MONOTONIC_S STATUS CACHED FRESH`,
/// with the source's state (or `none`/`error`) and, per name, `aaaa` when
/// the answer held an AAAA record, `none` when it did not, `error` when
/// there was no answer (`skip`: fresh names not asked). Stops when its
/// stdin closes.
const POLLER: &str = r#"
import http.client, json, os, select, socket, struct, sys, time

port, source, cached, fresh_zone = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ask_fresh = sys.argv[5] == "1"

def status():
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        c.request("GET", "/status")
        body = c.getresponse().read()
        c.close()
        for s in json.loads(body).get("sources", []):
            if s.get("address") == source:
                return s.get("state", "none")
        return "none"
    except Exception:
        return "error"

def wire(name):
    out = b""
    for label in name.strip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"

def skip_name(m, i):
    while True:
        n = m[i]
        if n == 0:
            return i + 1
        if n >= 0xC0:
            return i + 2
        i += 1 + n

def aaaa(name, qid):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire(name) + struct.pack("!HH", 28, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    try:
        s.sendto(q, ("127.0.0.53", 53))
        while True:
            m = s.recv(65535)
            if m[:2] == q[:2]:
                break
    except Exception:
        return "error"
    finally:
        s.close()
    try:
        qd, an = struct.unpack("!HH", m[4:8])
        i = 12
        for _ in range(qd):
            i = skip_name(m, i) + 4
        for _ in range(an):
            i = skip_name(m, i)
            rtype, _, _, rdlen = struct.unpack("!HHIH", m[i:i + 10])
            if rtype == 28:
                return "aaaa"
            i += 10 + rdlen
        return "none"
    except Exception:
        return "error"

nonce = os.urandom(4).hex()
n = 0
while True:
    if select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.read(1):
        break
    n += 1
    t = time.monotonic()
    st = status()
    c = aaaa(cached, n & 0xFFFF)
    f = aaaa(f"p{n}-{nonce}.wild.{fresh_zone}", (n + 1) & 0xFFFF) if ask_fresh else "skip"
    print(f"{t:.6f} {st} {c} {f}", flush=True)
    time.sleep(max(0.0, 0.020 - (time.monotonic() - t)))
"#;

/// One poll as the poller printed it, with the instant the test read it.
#[derive(Debug, Clone)]
struct Poll {
    /// When the test read the line (the test's clock).
    seen: Instant,
    /// When the poll started (the poller's clock, seconds).
    t: f64,
    status: String,
    cached: String,
    fresh: String,
}

/// The poller running in the host namespace, its lines collected.
struct Poller {
    child: Option<LabChild>,
    polls: Arc<Mutex<Vec<Poll>>>,
}

impl Poller {
    /// With `fresh`, each poll also asks a fresh name: getapr learns
    /// DUAL6 again from every such answer and so keeps probing it.
    fn start(lab: &Lab, fresh: bool) -> Poller {
        let port = HTTP_PORT.to_string();
        let source = HOST6.to_string();
        let cached = labdns::name("dual");
        let mut command = lab.command(
            Ns::Host,
            &[
                lab::python(),
                OsStr::new("-S"),
                OsStr::new("-c"),
                OsStr::new(POLLER),
                OsStr::new(&port),
                OsStr::new(&source),
                OsStr::new(&cached),
                OsStr::new(labdns::ZONE),
                OsStr::new(if fresh { "1" } else { "0" }),
            ],
        );
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = LabChild::spawn(&mut command);
        let stdout = child.0.stdout.take().expect("stdout is piped");
        let polls = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&polls);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let seen = Instant::now();
                let w: Vec<&str> = line.split_whitespace().collect();
                let [t, status, cached, fresh] = w[..] else {
                    eprintln!("poller: {line}");
                    continue;
                };
                let Ok(t) = t.parse() else { continue };
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(Poll {
                    seen,
                    t,
                    status: status.into(),
                    cached: cached.into(),
                    fresh: fresh.into(),
                });
            }
        });
        Poller {
            child: Some(child),
            polls,
        }
    }

    fn polls(&self) -> Vec<Poll> {
        self.polls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The polls read after `since`.
    fn since(&self, since: Instant) -> Vec<Poll> {
        self.polls()
            .into_iter()
            .filter(|p| p.seen >= since)
            .collect()
    }

    /// Waits until a poll read after `since` satisfies `done`, up to
    /// `within`; the polls after `since` either way.
    fn wait(&self, since: Instant, within: Duration, done: impl Fn(&Poll) -> bool) -> Vec<Poll> {
        let deadline = Instant::now() + within;
        loop {
            let polls = self.since(since);
            if polls.iter().any(&done) || Instant::now() > deadline {
                return polls;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        // Closing its stdin ends the poller; the LabChild's drop reaps it.
        if let Some(child) = self.child.as_mut() {
            drop(child.0.stdin.take());
        }
        self.child = None;
    }
}

/// What one direction (break or repair) showed.
#[derive(Debug)]
struct Turn {
    /// The first poll whose `/status` showed the new state (poller clock).
    status_at: Option<f64>,
    /// The first poll after which the cached and the fresh answer showed
    /// the new state for good (poller clock).
    cached_at: Option<f64>,
    fresh_at: Option<f64>,
    /// Whether the poller asked fresh names at all.
    fresh_asked: bool,
    /// From the break or repair (test clock) to `status_at`.
    status_after: Option<Duration>,
    /// Polls in this direction, and answers that went back to the old
    /// state once they had changed (flaps).
    polls: usize,
    flaps: usize,
    errors: usize,
}

impl Turn {
    /// `want_status` is the source state after the change, `want_aaaa`
    /// whether the AAAA is then in answers.
    fn of(polls: &[Poll], at: Instant, want_status: &str, want_aaaa: bool) -> Turn {
        let want = if want_aaaa { "aaaa" } else { "none" };
        let first = |pick: &dyn Fn(&Poll) -> bool| polls.iter().position(pick);
        let status_i = first(&|p| p.status == want_status);
        // From the first poll that shows the new answer, every later one
        // must show it too; otherwise the settled point is after the last
        // that did not.
        let settled = |get: &dyn Fn(&Poll) -> &str| {
            if polls.iter().all(|p| get(p) == "skip") {
                return None;
            }
            let last_old = polls
                .iter()
                .rposition(|p| get(p) != want && get(p) != "error");
            let from = last_old.map_or(0, |i| i + 1);
            polls.get(from).map(|p| p.t)
        };
        let flaps_of = |get: &dyn Fn(&Poll) -> &str| {
            let Some(i) = polls.iter().position(|p| get(p) == want) else {
                return 0;
            };
            polls[i..]
                .iter()
                .filter(|p| get(p) != want && get(p) != "error")
                .count()
        };
        Turn {
            status_at: status_i.map(|i| polls[i].t),
            cached_at: settled(&|p| p.cached.as_str()),
            fresh_at: settled(&|p| p.fresh.as_str()),
            fresh_asked: polls.iter().any(|p| p.fresh != "skip"),
            status_after: status_i.map(|i| polls[i].seen.saturating_duration_since(at)),
            polls: polls.len(),
            flaps: flaps_of(&|p| p.cached.as_str()) + flaps_of(&|p| p.fresh.as_str()),
            errors: polls
                .iter()
                .filter(|p| {
                    [&p.status, &p.cached, &p.fresh]
                        .iter()
                        .any(|s| *s == "error")
                })
                .count(),
        }
    }

    /// How long after `/status` showed it an answer did (negative: before).
    fn lag(&self, answer: Option<f64>) -> Option<f64> {
        Some((answer? - self.status_at?) * 1000.0)
    }

    fn show(&self, what: &str) -> String {
        let ms = |v: Option<f64>| v.map_or_else(|| "never".to_owned(), |v| format!("{v:.0} ms"));
        let fresh = if !self.fresh_asked {
            "not asked".to_owned()
        } else {
            ms(self.lag(self.fresh_at))
        };
        format!(
            "{what}: /status after {:?}; AAAA {} after /status: cached answer {}, fresh answer {} ({} polls, {} flaps, {} errors)",
            self.status_after,
            if what == "break" { "gone" } else { "back" },
            ms(self.lag(self.cached_at)),
            fresh,
            self.polls,
            self.flaps,
            self.errors
        )
    }
}

/// One break and repair with a poller (asking fresh names too when
/// `fresh`): what each direction showed, and every poll.
fn flap(lab: &Lab, fresh: bool) -> (Turn, Turn, Vec<Poll>) {
    let poller = Poller::start(lab, fresh);
    let started = Instant::now();
    let is_healthy = |p: &Poll| p.status == "ok" && p.cached == "aaaa" && p.fresh != "none";
    let healthy = poller.wait(started, VERDICT, is_healthy);
    assert!(
        healthy.iter().any(is_healthy),
        "before the break the poller should see the IPv6 source ok and the AAAA in the answers; last polls: {:?}",
        healthy.iter().rev().take(5).collect::<Vec<_>>()
    );
    std::thread::sleep(Duration::from_secs(1));

    // Break: the router drops forwarded IPv6 without a word.
    let broken = Instant::now();
    lab.drop_ipv6_forwarding(true);
    let gone = |p: &Poll| p.status == "failed" && p.cached == "none" && p.fresh != "aaaa";
    poller.wait(broken, VERDICT, gone);
    // A few more polls, so that a flap back would show.
    std::thread::sleep(Duration::from_secs(1));
    let breaking = Turn::of(&poller.since(broken), broken, "failed", false);

    let repaired = Instant::now();
    lab.drop_ipv6_forwarding(false);
    let back = |p: &Poll| p.status == "ok" && p.cached == "aaaa" && p.fresh != "none";
    poller.wait(repaired, VERDICT, back);
    std::thread::sleep(Duration::from_secs(1));
    let repairing = Turn::of(&poller.since(repaired), repaired, "ok", true);
    let all = poller.since(started);
    (breaking, repairing, all)
}

#[test]
fn answers_follow_status_when_ipv6_breaks_and_comes_back() {
    if !lab::root_or_skip("follow_lab::answers_follow_status_when_ipv6_breaks_and_comes_back") {
        return;
    }
    let lab = Lab::new();
    let dns_servers = LabDns::start(&lab);
    let mut config = GetaprConfig::new(KNOT4);
    config.destinations = true;
    config.http_port = Some(HTTP_PORT);
    let start = Instant::now();
    let getapr = LabGetapr::start(&lab, &dns_servers, config);
    for (source, state) in [(IpAddr::from(HOST6), "ok"), (HOST4.into(), "ok")] {
        let (t, _) = getapr.wait(start, &[state, &format!("source={source}")], VERDICT);
        eprintln!("getapr: source {source} {state} after {t:?}");
    }

    // getapr learns DUAL6 from a fresh answer and probes it from the IPv6
    // source: a destination verdict that outlives the source's, as long as
    // nothing makes getapr probe DUAL6 again.
    let dual = labdns::name("dual");
    let stub = labdns::dns(lab_stub());
    let first = ask(&lab, Ns::Host, stub, &query(&dual, RecordType::AAAA));
    assert_eq!(
        addresses(&first.answers),
        [IpAddr::from(DUAL6)],
        "AAAA {dual} through getapr on a healthy host"
    );
    let probed = format!("tcp [{DUAL6}]:443 [{HOST6}]:");
    let deadline = Instant::now() + VERDICT;
    while !dns_servers
        .service_log()
        .iter()
        .any(|l| l.starts_with(&probed))
    {
        assert!(
            Instant::now() < deadline,
            "getapr never probed {DUAL6}:443 from {HOST6} after learning it; services saw {:?}",
            dns_servers.service_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("getapr probed {DUAL6}:443 from {HOST6} (destination ok)");

    // First only the cached name: DUAL6 is not probed again, its verdict
    // stays ok through the break, and only the source's verdict can take
    // the AAAA out. Then fresh names too: DUAL6 is probed every round.
    let mut failures = Vec::new();
    for (fresh, what) in [
        (false, "cached name only"),
        (true, "cached and fresh names"),
    ] {
        let (breaking, repairing, polls) = flap(&lab, fresh);
        eprintln!("MEASURED ({what}) {}", breaking.show("break"));
        eprintln!("MEASURED ({what}) {}", repairing.show("repair"));
        let gaps: Vec<f64> = polls
            .windows(2)
            .map(|w| (w[1].t - w[0].t) * 1000.0)
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len().max(1) as f64;
        let worst = gaps.iter().copied().fold(0.0, f64::max);
        eprintln!(
            "MEASURED ({what}) poll period: mean {mean:.1} ms, longest {worst:.1} ms over {} polls",
            polls.len()
        );
        let mut lags = vec![("cached", breaking.lag(breaking.cached_at))];
        if fresh {
            lags.push(("fresh", breaking.lag(breaking.fresh_at)));
        }
        for (answer, lag) in lags {
            match lag {
                None => failures.push(format!(
                    "{what}: after the break, /status should show {HOST6} failed and the {answer} AAAA {dual} go: {breaking:?}"
                )),
                Some(lag) if lag > FOLLOW.as_secs_f64() * 1000.0 => failures.push(format!(
                    "{what}: the {answer} AAAA {dual} was gone {lag:.0} ms after /status showed {HOST6} failed (at most {FOLLOW:?}): {breaking:?}"
                )),
                Some(_) => {}
            }
        }
        if repairing.status_at.is_none()
            || repairing.cached_at.is_none()
            || (fresh && repairing.fresh_at.is_none())
        {
            failures.push(format!(
                "{what}: after the repair, /status should show {HOST6} ok and the AAAA {dual} come back within {VERDICT:?}: {repairing:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} unmet:\n  - {}\nlog:\n{}",
        failures.len(),
        failures.join("\n  - "),
        getapr.log()
    );
}

/// getapr's DNS address in the host namespace.
fn lab_stub() -> IpAddr {
    "127.0.0.53".parse().expect("an IP")
}
