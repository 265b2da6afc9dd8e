//! The sidecar's pairs in the network lab (root): `GET /pairs` of the
//! sidecar, asked with curl inside the lab's host namespace, while the
//! routers break IPv6 under the daemon. See `tests/common/lab.rs` for the
//! namespaces and `tests/common/labdns.rs` for the zones (`dual.lab.example`
//! has an A and an AAAA, both listening on TCP 80 and 443).
//!
//! - (a) IPv6 blackholed at the only router: the pairs of a dual-stack name
//!   go from IPv6 first (RFC 6724: a GUA pair beats an IPv4 one) to IPv4
//!   first, or only.
//! - (b) Two IPv6 uplinks with source-specific routes: when the uplink of
//!   the first pair's source starts dropping, the first pair's source moves
//!   to the other prefix within 3 probe intervals, and a TCP connect bound
//!   to it reaches the destination.
//! - (c) The default `http.listen` (127.0.0.1:80 and [::1]:80): `curl -s
//!   localhost/pairs?host=...` in a namespace where getapr runs with the
//!   defaults except upstreams, probe targets and STUN servers.
//!
//! Run with `--nocapture` to see the measured times.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use common::lab::{self, Connect, Family, HOST4, HOST6, HOST6_2, Lab, Ns};
use common::labdns::{
    self, DUAL4, DUAL6, GetaprConfig, KNOT4, LabDns, LabGetapr, PROBE_INTERVAL, PROBE_TIMEOUT,
};

/// The dual-stack name of the lab's zone.
fn dual() -> String {
    labdns::name("dual").trim_end_matches('.').to_owned()
}

/// The sidecar's port in (a) and (b), where the config names it.
const HTTP_PORT: u16 = 8080;

/// How long first verdicts, or the verdicts after a break, may take before
/// the test gives up waiting (not an acceptance bound: a margin for a
/// loaded machine).
const PATIENCE: Duration = Duration::from_secs(10);

/// Waits for the verdict `state` of `source`.
fn wait_source(getapr: &LabGetapr, since: Instant, state: &str, source: IpAddr) -> Duration {
    let (t, _) = getapr.wait(since, &[state, &format!("source={source}")], PATIENCE);
    t
}

/// One entry of `/pairs`.
#[derive(Debug, Clone, PartialEq)]
struct Pair {
    family: String,
    source: IpAddr,
    destination: IpAddr,
    port: u16,
    interface: String,
    scope_id: u32,
    rtt_ms: Option<f64>,
}

impl std::fmt::Display for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dst = SocketAddr::new(self.destination, self.port);
        write!(
            f,
            "{} {} -> {dst} ({}",
            self.family, self.source, self.interface
        )?;
        match self.rtt_ms {
            Some(rtt) => write!(f, ", {rtt:.1} ms)"),
            None => write!(f, ", no rtt)"),
        }
    }
}

fn show(pairs: &[Pair]) -> String {
    if pairs.is_empty() {
        return "(no pairs)".into();
    }
    pairs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// `curl -s -m 2 -w '\n%{http_code}' ARGS...` in `ns`: (status, body);
/// status 0 when nothing answered.
fn curl(lab: &Lab, ns: Ns, args: &[&str]) -> (u16, String) {
    let mut all = vec!["curl", "-s", "-m", "2", "-w", "\n%{http_code}"];
    all.extend_from_slice(args);
    let out = lab.exec(ns, &all);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// The pairs of a `/pairs` body, in order; panics on a body that is not
/// the contract's shape.
fn parse_pairs(body: &str) -> Vec<Pair> {
    let bad =
        |why: &str| -> ! { panic!("/pairs body is not the contract's JSON ({why}):\n{body}") };
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| bad(&e.to_string()));
    let Some(pairs) = json["pairs"].as_array() else {
        bad("no \"pairs\" array")
    };
    pairs
        .iter()
        .map(|p| {
            let text = |key: &str| {
                p[key]
                    .as_str()
                    .unwrap_or_else(|| bad(&format!("{key} is not a string")))
                    .to_owned()
            };
            let ip = |key: &str| -> IpAddr {
                text(key)
                    .parse()
                    .unwrap_or_else(|_| bad(&format!("{key} is not an IP address")))
            };
            let number = |key: &str| {
                p[key]
                    .as_u64()
                    .unwrap_or_else(|| bad(&format!("{key} is not a whole number")))
            };
            Pair {
                family: text("family"),
                source: ip("source"),
                destination: ip("destination"),
                port: u16::try_from(number("port")).unwrap_or_else(|_| bad("port")),
                interface: text("interface"),
                scope_id: u32::try_from(number("scope_id")).unwrap_or_else(|_| bad("scope_id")),
                rtt_ms: match &p["rtt_ms"] {
                    serde_json::Value::Null => None,
                    rtt => Some(rtt.as_f64().unwrap_or_else(|| bad("rtt_ms"))),
                },
            }
        })
        .collect()
}

/// `GET URL` (a `/pairs` URL) in the host namespace: the pairs, or the
/// status and body when it is not a 200.
fn get_pairs(lab: &Lab, url: &str) -> Result<Vec<Pair>, (u16, String)> {
    match curl(lab, Ns::Host, &[url]) {
        (200, body) => Ok(parse_pairs(&body)),
        other => Err(other),
    }
}

/// Polls `url` every 50 ms until `done` likes the pairs, up to `within`;
/// returns them and when they came (after `since`). Panics with the last
/// answer and the log otherwise.
fn poll_pairs(
    lab: &Lab,
    getapr: &LabGetapr,
    url: &str,
    since: Instant,
    within: Duration,
    what: &str,
    done: impl Fn(&[Pair]) -> bool,
) -> (Duration, Vec<Pair>) {
    let deadline = Instant::now() + within;
    loop {
        let answer = get_pairs(lab, url);
        let at = Instant::now();
        if let Ok(pairs) = &answer
            && done(pairs)
        {
            return (at.saturating_duration_since(since), pairs.clone());
        }
        assert!(
            at < deadline,
            "GET {url}: {what} not seen within {within:?}; last answer: {}\ngetapr's log:\n{}",
            match &answer {
                Ok(pairs) => show(pairs),
                Err((code, body)) => format!("HTTP {code}: {body}"),
            },
            getapr.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The lab config of `tests/common/labdns.rs` (1000 ms probe interval, lab
/// targets, Knot over IPv4 as the upstream, so that breaking IPv6 leaves
/// DNS alone), with the sidecar on 127.0.0.1:[`HTTP_PORT`].
fn lab_config() -> String {
    let mut config = GetaprConfig::new(KNOT4);
    config.http_port = Some(HTTP_PORT);
    config.toml()
}

fn pairs_url(port: u16) -> String {
    format!(
        "http://127.0.0.1:{HTTP_PORT}/pairs?host={}&port={port}",
        dual()
    )
}

fn intervals(d: Duration) -> f64 {
    d.as_secs_f64() / PROBE_INTERVAL.as_secs_f64()
}

/// (a) With the host's IPv6 dropped upstream, the pairs of a dual-stack
/// name put IPv4 first (or list only IPv4); healthy, IPv6 comes first.
#[test]
fn ipv6_dropped_upstream_puts_ipv4_pairs_first() {
    if !lab::root_or_skip("ipv6_dropped_upstream_puts_ipv4_pairs_first") {
        return;
    }
    let lab = Lab::new();
    let dns = LabDns::start(&lab);
    let start = Instant::now();
    let getapr = LabGetapr::start_toml(&lab, &dns, "pairs-a", &lab_config());
    let t6 = wait_source(&getapr, start, "ok", HOST6.into());
    let t4 = wait_source(&getapr, start, "ok", HOST4.into());
    eprintln!("(a) first verdicts: GUA {HOST6} ok after {t6:?}, IPv4 {HOST4} ok after {t4:?}");
    let url = pairs_url(443);

    // Healthy: RFC 6724 rule 6 (precedence) puts the GUA pair first.
    let (_, healthy) = poll_pairs(&lab, &getapr, &url, start, PATIENCE, "both families", |p| {
        p.len() >= 2
    });
    eprintln!("(a) healthy: {}", show(&healthy));
    let first = &healthy[0];
    assert_eq!(
        (
            first.family.as_str(),
            first.source,
            first.destination,
            first.port
        ),
        ("ipv6", IpAddr::from(HOST6), IpAddr::from(DUAL6), 443),
        "healthy: the GUA pair first: {}",
        show(&healthy)
    );
    assert!(
        healthy.iter().any(|p| p.family == "ipv4"
            && p.source == IpAddr::from(HOST4)
            && p.destination == IpAddr::from(DUAL4)),
        "healthy: an IPv4 pair too: {}",
        show(&healthy)
    );
    for p in &healthy {
        assert_eq!(
            p.scope_id, 0,
            "no link-local pair for global destinations: {p}"
        );
        assert_eq!(p.interface, "eth0", "{p}");
    }

    // The router blackholes IPv6.
    let broke = Instant::now();
    lab.drop_ipv6_forwarding(true);
    let t_failed = wait_source(&getapr, broke, "failed", HOST6.into());
    let (t_pairs, broken) = poll_pairs(&lab, &getapr, &url, broke, PATIENCE, "IPv4 first", |p| {
        p.first().is_some_and(|p| p.family == "ipv4")
    });
    eprintln!(
        "(a) IPv6 dropped: {HOST6} failed after {t_failed:?} ({:.2} intervals), \
         /pairs IPv4 first after {t_pairs:?} ({:.2} intervals): {}",
        intervals(t_failed),
        intervals(t_pairs),
        show(&broken)
    );
    let first = &broken[0];
    assert_eq!(
        (first.source, first.destination),
        (IpAddr::from(HOST4), IpAddr::from(DUAL4)),
        "{}",
        show(&broken)
    );
    assert!(
        broken.iter().all(|p| p.source != IpAddr::from(HOST6)),
        "no pair keeps the failed source {HOST6}: {}",
        show(&broken)
    );
    let connect = lab.tcp_connect(
        Ns::Host,
        SocketAddr::new(first.destination, first.port),
        Some(first.source),
        Duration::from_secs(2),
    );
    eprintln!("(a) connect from the first pair's source {first}: {connect:?}");
    assert_eq!(connect, Connect::Connected, "{first}");
}

/// (b) Two IPv6 uplinks with source-specific routes: the uplink of the
/// first pair's source starts dropping; the first pair moves to the other
/// prefix within 3 probe intervals, and a connect bound to it works.
#[test]
fn second_uplink_takes_over_the_first_pair() {
    if !lab::root_or_skip("second_uplink_takes_over_the_first_pair") {
        return;
    }
    let lab = Lab::builder().second_uplink().build();
    let dns = LabDns::start(&lab);
    let routes = lab.run(Ns::Host, &["ip", "-6", "route", "show"]);
    eprintln!("(b) the host's IPv6 routes:\n{}", routes.trim_end());
    let start = Instant::now();
    let getapr = LabGetapr::start_toml(&lab, &dns, "pairs-b", &lab_config());
    for source in [IpAddr::from(HOST6), HOST6_2.into(), HOST4.into()] {
        let t = wait_source(&getapr, start, "ok", source);
        eprintln!("(b) {source} ok after {t:?}");
    }
    let url = pairs_url(80);
    let (_, healthy) = poll_pairs(
        &lab,
        &getapr,
        &url,
        start,
        PATIENCE,
        "an IPv6 pair first",
        |p| p.first().is_some_and(|p| p.family == "ipv6"),
    );
    eprintln!("(b) healthy: {}", show(&healthy));
    let before = healthy[0].source;
    // Both prefixes tie up to RFC 6724 rule 8 for this destination; the
    // uplink to break is the one the first pair uses now.
    let (broken_router, after) = if before == IpAddr::from(HOST6) {
        (Ns::Router, IpAddr::from(HOST6_2))
    } else {
        assert_eq!(before, IpAddr::from(HOST6_2), "{}", show(&healthy));
        (Ns::Router2, IpAddr::from(HOST6))
    };
    assert_eq!(healthy[0].destination, IpAddr::from(DUAL6));

    let broke = Instant::now();
    lab.drop_forwarding(broken_router, Family::V6, true);
    let (t_pairs, moved) = poll_pairs(
        &lab,
        &getapr,
        &url,
        broke,
        PATIENCE,
        "the first pair's source moving",
        |p| p.first().is_some_and(|p| p.source != before),
    );
    let (t_failed, _) = getapr.wait(broke, &["failed", &format!("source={before}")], PATIENCE);
    eprintln!(
        "(b) {broken_router:?} drops IPv6: {before} failed (log) after {t_failed:?} \
         ({:.2} intervals); the first pair's source moved after {t_pairs:?} \
         ({:.2} intervals of {PROBE_INTERVAL:?}, probe timeout {PROBE_TIMEOUT:?}): {}",
        intervals(t_failed),
        intervals(t_pairs),
        show(&moved)
    );
    let first = moved[0].clone();
    assert_eq!(
        (
            first.family.as_str(),
            first.source,
            first.destination,
            first.port
        ),
        ("ipv6", after, IpAddr::from(DUAL6), 80),
        "the first pair is the working prefix's: {}",
        show(&moved)
    );
    assert!(
        t_pairs <= PROBE_INTERVAL * 3,
        "the first pair's source moved after {t_pairs:?}, more than 3 probe intervals"
    );

    let dst = SocketAddr::new(first.destination, first.port);
    let took = Instant::now();
    let connect = lab.tcp_connect(Ns::Host, dst, Some(first.source), Duration::from_secs(2));
    let took = took.elapsed();
    let old = lab.tcp_connect(Ns::Host, dst, Some(before), Duration::from_secs(1));
    eprintln!(
        "(b) connect bound to {} -> {dst}: {connect:?} (in {took:?}); \
         bound to the dropped {before}: {old:?}",
        first.source
    );
    assert_eq!(
        connect,
        Connect::Connected,
        "bound to {} -> {dst}",
        first.source
    );
    assert_ne!(
        old,
        Connect::Connected,
        "the dropped uplink still carries {before} -> {dst}"
    );
}

/// (c) `curl -s localhost/pairs?host=...` against the default listen
/// addresses, with a config that changes nothing but the upstreams and
/// the probe targets and STUN servers.
#[test]
fn default_listen_serves_curl_localhost() {
    if !lab::root_or_skip("default_listen_serves_curl_localhost") {
        return;
    }
    let lab = Lab::new();
    let dns = LabDns::start(&lab);
    let toml = format!(
        "[dns]\nupstreams = [\"{KNOT4}\"]\n\n\
         [probe]\ntargets = [\"{}:443\", \"[{}]:443\"]\n\
         stun = [\"{}:{port}\", \"[{}]:{port}\"]\n",
        lab::TARGET4,
        lab::TARGET6,
        lab::STUN4,
        lab::STUN6,
        port = lab::STUN_PORT,
    );
    let start = Instant::now();
    let getapr = LabGetapr::start_toml(&lab, &dns, "pairs-c", &toml);
    // The first round comes at once (the default interval is 15 s).
    wait_source(&getapr, start, "ok", HOST6.into());
    wait_source(&getapr, start, "ok", HOST4.into());
    let expected = [
        (IpAddr::from(HOST6), IpAddr::from(DUAL6)),
        (IpAddr::from(HOST4), IpAddr::from(DUAL4)),
    ];
    let host = dual();
    for url in [
        format!("localhost/pairs?host={host}"),
        format!("http://[::1]/pairs?host={host}"),
        format!("http://127.0.0.1/pairs?host={host}"),
    ] {
        let (t, pairs) = poll_pairs(&lab, &getapr, &url, start, PATIENCE, "two pairs", |p| {
            p.len() >= 2
        });
        eprintln!("(c) curl -s '{url}' after {t:?}: {}", show(&pairs));
        let got: Vec<(IpAddr, IpAddr)> = pairs.iter().map(|p| (p.source, p.destination)).collect();
        assert_eq!(got, expected, "curl -s '{url}': {}", show(&pairs));
        assert!(pairs.iter().all(|p| p.port == 443), "{}", show(&pairs));
    }
    for url in ["localhost/status", "http://[::1]/status"] {
        let (code, body) = curl(&lab, Ns::Host, &[url]);
        eprintln!("(c) curl -s '{url}': HTTP {code}: {body}");
        assert_eq!(code, 200, "curl -s '{url}': {body}");
        for key in ["\"GUA_ok\"", "\"IPv4_ok\"", "\"sources\""] {
            assert!(body.contains(key), "curl -s '{url}' has no {key}: {body}");
        }
    }
}
