//! A slow but working IPv6 path in the network lab (root): the router
//! delays every forwarded IPv6 packet by 150 ms each way (the userspace
//! delay box of `tests/common/delay.rs`; this machine has no netem), IPv4
//! stays fast. `/pairs` of a dual-stack name must then lead with IPv4 (its
//! RTT is lower by far more than `policy.rtt_margin_ms`), while DNS keeps
//! the AAAA: a slow family works and is not filtered.
//!
//! The name is looked up by an application first, so its addresses have
//! path RTTs of their own, measured while the path was fast: `/pairs` must
//! not rank with those once they are stale.
//!
//! Run with `--nocapture` to see the RTTs of `/status` and the orders.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use common::delay::Delay;
use common::lab::{self, Connect, HOST4, HOST6, Lab, Ns};
use common::labdns::{self, DUAL4, DUAL6, KNOT4, LabDns, LabGetapr};
use common::query;
use hickory_proto::rr::RecordType;

const HTTP_PORT: u16 = 8080;
const EACH_WAY: Duration = Duration::from_millis(150);
/// How long verdicts and orders may take to show before the test gives up
/// (a catch-all for a loaded machine, not an acceptance bound).
const PATIENCE: Duration = Duration::from_secs(30);

fn dual() -> String {
    labdns::name("dual").trim_end_matches('.').to_owned()
}

/// Lab addresses only; the probe timeout leaves room for the 300 ms RTT;
/// destinations seen in answers are probed, so paths get RTTs of their
/// own. `policy.rtt_margin_ms` is left at its default.
fn config() -> String {
    format!(
        "[dns]\nlisten = [\"127.0.0.53:53\"]\nupstreams = [\"{KNOT4}\"]\ntimeout_ms = 1000\n\
         [http]\nlisten = [\"127.0.0.1:{HTTP_PORT}\"]\n\
         [probe]\ninterval_ms = 1000\ntimeout_ms = 900\n\
         targets = [\"{}:443\", \"[{}]:443\"]\nstun = []\ndestinations = true\n\
         [policy]\nfilter = \"auto\"\n",
        lab::TARGET4,
        lab::TARGET6,
    )
}

/// `curl -s -m 2` of a sidecar path in the host namespace: the body of a
/// 200, else `None`.
fn get_text(lab: &Lab, path: &str) -> Option<String> {
    let url = format!("http://127.0.0.1:{HTTP_PORT}{path}");
    let out = lab.exec(
        Ns::Host,
        &[
            "curl",
            "-s",
            "-m",
            "2",
            "-w",
            "\n%{http_code}",
            url.as_str(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    (code.trim() == "200").then(|| body.to_owned())
}

/// [`get_text`] parsed as JSON.
fn get(lab: &Lab, path: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&get_text(lab, path)?).ok()
}

/// One pair of `/pairs`: family, source, destination, RTT in ms.
#[derive(Debug, Clone)]
struct Pair {
    family: String,
    source: IpAddr,
    destination: IpAddr,
    rtt_ms: Option<f64>,
}

fn pairs(lab: &Lab) -> Option<Vec<Pair>> {
    let json = get(lab, &format!("/pairs?host={}&port=443", dual()))?;
    json["pairs"]
        .as_array()?
        .iter()
        .map(|p| {
            Some(Pair {
                family: p["family"].as_str()?.to_owned(),
                source: p["source"].as_str()?.parse().ok()?,
                destination: p["destination"].as_str()?.parse().ok()?,
                rtt_ms: p["rtt_ms"].as_f64(),
            })
        })
        .collect()
}

fn show(pairs: &[Pair]) -> String {
    pairs
        .iter()
        .map(|p| {
            let rtt = p
                .rtt_ms
                .map_or_else(|| "no rtt".to_owned(), |r| format!("{r:.1} ms"));
            format!("{} {} -> {} ({rtt})", p.family, p.source, p.destination)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The RTT `/status` shows for `source`, in ms.
fn source_rtt(status: &serde_json::Value, source: IpAddr) -> Option<f64> {
    status["sources"]
        .as_array()?
        .iter()
        .find(|s| s["address"].as_str() == Some(&source.to_string()))?["rtt_ms"]
        .as_f64()
}

/// Polls `/pairs` (and `/status`) every 100 ms until `done` likes them, up
/// to [`PATIENCE`]; returns them and when they came after `since`.
fn poll(
    lab: &Lab,
    getapr: &LabGetapr,
    since: Instant,
    what: &str,
    done: impl Fn(&[Pair], &serde_json::Value) -> bool,
) -> (Duration, Vec<Pair>, serde_json::Value) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (p, status) = (pairs(lab), get(lab, "/status"));
        let at = Instant::now();
        if let (Some(p), Some(status)) = (&p, &status)
            && done(p, status)
        {
            return (at - since, p.clone(), status.clone());
        }
        assert!(
            at < deadline,
            "{what}: not seen within {PATIENCE:?}; last /pairs: {}; last /status: {status:?}\nlog:\n{}",
            p.as_deref().map_or_else(|| "none".into(), show),
            getapr.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// A TCP connect from the host to `dst`, timed (Python's start included,
/// the same for both families, so the difference is the path's).
fn timed_connect(lab: &Lab, dst: IpAddr) -> (Connect, Duration) {
    let start = Instant::now();
    let got = lab.tcp_connect(Ns::Host, SocketAddr::new(dst, 443), None, PATIENCE);
    (got, start.elapsed())
}

#[test]
fn slow_ipv6_puts_ipv4_first_and_keeps_the_aaaa() {
    if !lab::root_or_skip("slow_ipv6_puts_ipv4_first_and_keeps_the_aaaa") {
        return;
    }
    let lab = Lab::new();
    let dns = LabDns::start(&lab);
    let getapr = LabGetapr::start_toml(&lab, &dns, "slow", &config());
    let (host4, host6) = (IpAddr::from(HOST4), IpAddr::from(HOST6));

    // An application's lookup (a cache miss) makes the engine probe the
    // name's addresses: their paths get RTTs of their own, measured while
    // healthy. Later answers come from the cache, so only `/pairs` asking
    // again keeps those path RTTs fresh.
    let server = SocketAddr::from(([127, 0, 0, 53], 53));
    for qtype in [RecordType::AAAA, RecordType::A] {
        let reply = labdns::ask(&lab, Ns::Host, server, &query(&dual(), qtype));
        eprintln!("first {qtype} {}: {}", dual(), labdns::summary(&reply));
    }
    // Healthy: both families measured, RFC 6724 puts IPv6 first.
    let start = Instant::now();
    let (t, healthy, status) = poll(&lab, &getapr, start, "healthy pairs", |p, s| {
        p.len() >= 2 && source_rtt(s, host4).is_some() && source_rtt(s, host6).is_some()
    });
    eprintln!(
        "healthy after {t:?}: /status RTT {host6} {:?} ms, {host4} {:?} ms; /pairs: {}",
        source_rtt(&status, host6),
        source_rtt(&status, host4),
        show(&healthy)
    );
    assert_eq!(healthy[0].family, "ipv6", "{}", show(&healthy));

    // IPv6 gets +150 ms each way.
    let delay = Delay::ipv6(&lab, Ns::Router, EACH_WAY);
    let (c6, t6) = timed_connect(&lab, DUAL6.into());
    let (c4, t4) = timed_connect(&lab, DUAL4.into());
    eprintln!(
        "delay box on ({:?} each way): connect to {DUAL6} {c6:?} in {t6:?}, to {DUAL4} {c4:?} in {t4:?}",
        delay.each_way
    );
    assert_eq!((&c6, &c4), (&Connect::Connected, &Connect::Connected));
    assert!(
        t6 > t4 + EACH_WAY,
        "the delay box does not delay IPv6: {t6:?} against {t4:?} over IPv4"
    );

    let slowed = Instant::now();
    let (t_first, first, status) = poll(&lab, &getapr, slowed, "IPv4 first", |p, _| {
        p.first().is_some_and(|p| p.family == "ipv4")
    });
    eprintln!(
        "IPv4 first in /pairs {t_first:?} after the delay began: /status RTT {host6} {:?} ms, \
         {host4} {:?} ms; /pairs: {}",
        source_rtt(&status, host6),
        source_rtt(&status, host4),
        show(&first)
    );
    // The IPv6 pair is still there, after the IPv4 one: slow, not broken.
    assert!(
        first
            .iter()
            .any(|p| p.family == "ipv6" && p.destination == IpAddr::from(DUAL6)),
        "the IPv6 pair is kept: {}",
        show(&first)
    );

    // Once the smoothed RTTs have caught up with the delay, the order holds.
    let (t_rtt, settled, status) = poll(&lab, &getapr, slowed, "IPv6 RTT over 150 ms", |_, s| {
        source_rtt(s, host6).is_some_and(|r| r > 150.0)
    });
    eprintln!(
        "/status RTT {t_rtt:?} after the delay began: {host6} {:?} ms, {host4} {:?} ms; \
         families {}; /pairs: {}",
        source_rtt(&status, host6),
        source_rtt(&status, host4),
        status["families"],
        show(&settled)
    );
    assert_eq!(settled[0].family, "ipv4", "{}", show(&settled));
    assert_eq!(
        (settled[0].source, settled[0].destination),
        (host4, IpAddr::from(DUAL4)),
        "{}",
        show(&settled)
    );
    assert_eq!(status["families"]["ipv6"], "ok", "a slow family works");

    // Why the order moved: a log line and a metric.
    let (_, line) = getapr.wait(getapr.started(), &["pairs:", "IPv4", "leads"], PATIENCE);
    eprintln!("log: {line}");
    let metrics = get_text(&lab, "/metrics").unwrap_or_default();
    let counted = metrics
        .lines()
        .find(|l| l.starts_with(r#"getapr_pairs_rtt_first_total{family="ipv4"}"#))
        .unwrap_or("none");
    eprintln!("metric: {counted}");
    let count: f64 = counted
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    assert!(
        count >= 1.0,
        "no /pairs answer counted as led by IPv4's RTT: {counted}"
    );

    // DNS keeps the AAAA (and the A): slow is not broken.
    for (qtype, want) in [
        (RecordType::AAAA, IpAddr::from(DUAL6)),
        (RecordType::A, IpAddr::from(DUAL4)),
    ] {
        let reply = labdns::ask(&lab, Ns::Host, server, &query(&dual(), qtype));
        eprintln!("{qtype} {}: {}", dual(), labdns::summary(&reply));
        assert_eq!(
            labdns::addresses(&reply.answers),
            [want],
            "{}",
            labdns::summary(&reply)
        );
        assert!(
            labdns::extended_errors(&reply).is_empty(),
            "{}",
            labdns::summary(&reply)
        );
    }
}
