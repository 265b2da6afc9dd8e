//! The sidecar's `/pairs` and `/status` end to end: the real daemon
//! in process, DNS and HTTP on `127.0.0.1:0`, a scripted upstream on
//! loopback, probing off (no traffic leaves the host).

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::fake::{a_reply, reply_to};
use common::http::{
    config, config_with, connect_from, exchange_from, get, get_from, get_with, limit_hits,
    parse_head_or_response, parse_response, raw, sidecar, sidecar_with,
};
use common::{Action, FakeUpstream, query, udp_exchange};
use getapr::api::Limits;
use getapr::config::Source;
use getapr::daemon::{Daemon, Service};
use getapr::inventory::{Class, Inventory, Snapshot};
use getapr::probe::verdicts::{Families, Flags, Mtu, PathMtu, SourceVerdict, State, Verdicts};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A name whose A and AAAA records are [`answers`], behind a CNAME.
const ALIAS: &str = "www.pairs.test.";
const TARGET: &str = "real.pairs.test.";
/// NXDOMAIN.
const MISSING: &str = "missing.pairs.test.";
/// NOERROR with no addresses.
const EMPTY: &str = "empty.pairs.test.";

/// Addresses not on this host, one per family: pairs have them whenever
/// the host has a routable source of their family.
const ELSEWHERE4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const ELSEWHERE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);

fn host_snapshot() -> Snapshot {
    getapr::inventory::System
        .snapshot()
        .expect("the host's inventory can be read")
}

/// The host's own routable addresses (each is its own source, RFC 6724 §5
/// rule 1, so a pair for it always exists) and one address elsewhere per
/// family.
fn answers(host: &Snapshot) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
    let mut v4 = vec![ELSEWHERE4];
    let mut v6 = vec![ELSEWHERE6];
    for a in &host.addresses {
        match a.addr {
            IpAddr::V4(ip) if a.class != Class::LinkLocal4 => v4.push(ip),
            IpAddr::V6(ip) if a.class != Class::Lla => v6.push(ip),
            _ => {}
        }
    }
    (v4, v6)
}

/// The test upstream: [`ALIAS`] (CNAME to [`TARGET`] with `v4`/`v6`),
/// [`MISSING`] NXDOMAIN, everything else NOERROR without records.
async fn upstream(v4: Vec<Ipv4Addr>, v6: Vec<Ipv6Addr>) -> FakeUpstream {
    FakeUpstream::start(move |q: &Message, _| {
        let question = &q.queries[0];
        let name = question.name().to_ascii();
        let mut reply = reply_to(q);
        if name == MISSING {
            reply.metadata.response_code = ResponseCode::NXDomain;
        } else if name == ALIAS {
            let target = Name::from_ascii(TARGET).unwrap();
            reply.add_answer(Record::from_rdata(
                question.name().clone(),
                60,
                RData::CNAME(CNAME(target.clone())),
            ));
            match question.query_type() {
                RecordType::A => {
                    let a = a_reply(q, 60, &v4);
                    for r in a.answers {
                        let mut r = r.clone();
                        r.name = target.clone();
                        reply.add_answer(r);
                    }
                }
                RecordType::AAAA => {
                    for ip in &v6 {
                        reply.add_answer(Record::from_rdata(
                            target.clone(),
                            60,
                            RData::AAAA(AAAA(*ip)),
                        ));
                    }
                }
                _ => {}
            }
        }
        vec![Action::Reply(reply)]
    })
    .await
}

/// The (address, interface, scope id) of every source in the inventory.
fn sources(host: &Snapshot) -> BTreeSet<(IpAddr, String, u64)> {
    host.addresses
        .iter()
        .map(|a| (a.addr, a.interface.clone(), u64::from(a.scope_id)))
        .collect()
}

/// Checks one `/pairs` element's fields and types; returns its
/// destination.
fn check_pair(p: &Value, port: u64, host: &Snapshot) -> IpAddr {
    let obj = p.as_object().unwrap_or_else(|| panic!("{p}"));
    let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "family",
            "source",
            "destination",
            "port",
            "interface",
            "scope_id",
            "rtt_ms"
        ]),
        "{p}"
    );
    let source: IpAddr = p["source"].as_str().unwrap().parse().unwrap();
    let destination: IpAddr = p["destination"].as_str().unwrap().parse().unwrap();
    let family = if destination.is_ipv4() {
        "ipv4"
    } else {
        "ipv6"
    };
    assert_eq!(p["family"], family, "{p}");
    assert_eq!(source.is_ipv4(), destination.is_ipv4(), "{p}");
    assert_eq!(p["port"].as_u64(), Some(port), "{p}");
    // Probing is off: nothing is measured.
    assert!(p["rtt_ms"].is_null(), "{p}");
    let interface = p["interface"].as_str().unwrap().to_string();
    let scope = p["scope_id"].as_u64().unwrap();
    assert!(
        sources(host).contains(&(source, interface, scope)),
        "{p}: the source is not one of the host's addresses {:?}",
        sources(host)
    );
    destination
}

#[tokio::test]
async fn pairs_of_a_name_pair_real_sources_with_its_addresses() {
    let host = host_snapshot();
    let (v4, v6) = answers(&host);
    let fake = upstream(v4.clone(), v6.clone()).await;
    let s = sidecar(fake.addr(), Limits::default()).await;

    let r = get(s.http, "/pairs?host=www.pairs.test").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let v = r.json();
    assert_eq!(v["host"], "www.pairs.test");
    assert_eq!(v["port"], 443);
    let pairs = v["pairs"].as_array().unwrap();
    let got: Vec<IpAddr> = pairs.iter().map(|p| check_pair(p, 443, &host)).collect();

    // Every answer address of a family the host has a routable source of,
    // and nothing else: the host's own addresses pair with themselves, the
    // ones elsewhere with some source of their family.
    let routable = |v4: bool| {
        host.addresses
            .iter()
            .any(|a| a.addr.is_ipv4() == v4 && !matches!(a.class, Class::Lla | Class::LinkLocal4))
    };
    let mut want: BTreeSet<IpAddr> = BTreeSet::new();
    if routable(true) {
        want.extend(v4.iter().map(|&a| IpAddr::V4(a)));
    }
    if routable(false) {
        want.extend(v6.iter().map(|&a| IpAddr::V6(a)));
    }
    let got_set: BTreeSet<IpAddr> = got.iter().copied().collect();
    assert_eq!(got_set.len(), got.len(), "a destination twice: {got:?}");
    assert_eq!(got_set, want, "{v}");
    eprintln!("pairs on this host: {v}");
    // A host address is its own source (RFC 6724 §5 rule 1).
    for p in pairs {
        let d: IpAddr = p["destination"].as_str().unwrap().parse().unwrap();
        if host.addresses.iter().any(|a| a.addr == d) {
            assert_eq!(p["source"], p["destination"], "{p}");
        }
    }
    // Both families present: interleaved (RFC 8305 §4, first count 1).
    if routable(true) && routable(false) {
        assert_ne!(pairs[0]["family"], pairs[1]["family"], "{v}");
    }

    // One lookup per family, from the cache the second time.
    assert_eq!(fake.total_queries(), 2, "A and AAAA, once each");
    let again = get(s.http, "/pairs?host=WWW.pairs.test.&port=8443").await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["port"], 8443);
    assert_eq!(fake.total_queries(), 2, "answered from the cache");
    s.handle.shutdown();
}

#[tokio::test]
async fn ip_literals_skip_dns() {
    let host = host_snapshot();
    let fake = upstream(vec![], vec![]).await;
    let s = sidecar(fake.addr(), Limits::default()).await;
    let own4 = host
        .addresses
        .iter()
        .find(|a| a.addr.is_ipv4() && a.class != Class::LinkLocal4);
    let own6 = host
        .addresses
        .iter()
        .find(|a| a.addr.is_ipv6() && a.class != Class::Lla);

    for (target, literal, own) in [
        (
            format!("/pairs?host={ELSEWHERE4}&port=80"),
            IpAddr::V4(ELSEWHERE4),
            own4,
        ),
        (
            format!("/pairs?host=%5B{ELSEWHERE6}%5D&port=80"),
            IpAddr::V6(ELSEWHERE6),
            own6,
        ),
        // IPv4-mapped: an IPv4 pair, with the plain IPv4 address.
        (
            format!("/pairs?host=::ffff:{ELSEWHERE4}&port=80"),
            IpAddr::V4(ELSEWHERE4),
            own4,
        ),
    ] {
        let r = get(s.http, &target).await;
        assert_eq!(r.status, 200, "{target}: {r:?}");
        let v = r.json();
        let pairs = v["pairs"].as_array().unwrap();
        match own {
            Some(_) => {
                assert_eq!(pairs.len(), 1, "{target}: {v}");
                assert_eq!(check_pair(&pairs[0], 80, &host), literal);
            }
            None => assert!(pairs.is_empty(), "{target}: {v}"),
        }
    }
    // A link-local literal with a zone that is no interface of the host.
    let r = get(s.http, "/pairs?host=fe80::1%25no-such-if0").await;
    r.error(400);
    assert_eq!(fake.total_queries(), 0, "no DNS for literals");
    s.handle.shutdown();
}

#[tokio::test]
async fn a_missing_name_is_404_and_a_name_without_addresses_has_no_pairs() {
    let fake = upstream(vec![], vec![]).await;
    let s = sidecar(fake.addr(), Limits::default()).await;
    get(s.http, "/pairs?host=missing.pairs.test")
        .await
        .error(404);
    let r = get(s.http, "/pairs?host=empty.pairs.test").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["pairs"], Value::Array(vec![]));
    s.handle.shutdown();
}

#[tokio::test]
async fn failing_upstreams_are_502() {
    let fake = FakeUpstream::rcode(ResponseCode::ServFail).await;
    let s = sidecar(fake.addr(), Limits::default()).await;
    get(s.http, "/pairs?host=www.pairs.test").await.error(502);
    let silent = FakeUpstream::silent().await;
    let s2 = sidecar(silent.addr(), Limits::default()).await;
    get(s2.http, "/pairs?host=www.pairs.test").await.error(502);
    s.handle.shutdown();
    s2.handle.shutdown();
}

#[tokio::test]
async fn bad_host_or_port_is_400() {
    let fake = upstream(vec![], vec![]).await;
    let s = sidecar(fake.addr(), Limits::default()).await;
    for target in [
        "/pairs",
        "/pairs?host=",
        "/pairs?port=80",
        "/pairs?host=a.test&port=0",
        "/pairs?host=a.test&port=70000",
        "/pairs?host=a.test&port=abc",
        "/pairs?host=a.test&port=80&port=81",
        "/pairs?host=a.test&host=b.test",
        "/pairs?host=a..test",
        "/pairs?host=a%zz",
        "/pairs?host=ex%C3%A4mple.test",
        "/pairs?host=256.1.1.1",
        "/pairs?host=a.test&prot=80",
    ] {
        let r = get(s.http, target).await;
        assert_eq!(r.status, 400, "{target}: {r:?}");
        r.error(400);
    }
    assert_eq!(fake.total_queries(), 0, "nothing invalid was asked");
    s.handle.shutdown();
}

#[tokio::test]
async fn foreign_hosts_and_origins_are_refused() {
    let fake = upstream(vec![], vec![]).await;
    let s = sidecar(fake.addr(), Limits::default()).await;
    let port = s.http.port();
    let with_host =
        |h: String| format!("GET /healthz HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n");
    for h in [
        "evil.example".to_string(),
        format!("evil.example:{port}"),
        "localhost.evil.example".to_string(),
        "10.1.2.3".to_string(),
    ] {
        raw(s.http, with_host(h).as_bytes()).await.error(403);
    }
    for h in [
        "localhost".to_string(),
        format!("LocalHost.:{port}"),
        format!("127.0.0.1:{port}"),
        "127.0.0.2".to_string(),
        "[::1]".to_string(),
    ] {
        let r = raw(s.http, with_host(h.clone()).as_bytes()).await;
        assert_eq!(r.status, 200, "{h}: {r:?}");
        assert_eq!(r.body, "ok");
    }
    // HTTP/1.1 requires Host (RFC 9112 §3.2).
    raw(
        s.http,
        b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await
    .error(400);
    // An absolute target names the host too.
    raw(
        s.http,
        b"GET http://evil.example/healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .error(403);
    for origin in [
        "http://evil.example",
        "null",
        "https://localhost.evil.example",
    ] {
        get_with(s.http, "/status", &format!("Origin: {origin}\r\n"))
            .await
            .error(403);
    }
    let r = get_with(s.http, "/healthz", "Origin: http://localhost:3000\r\n").await;
    assert_eq!(r.status, 200);
    s.handle.shutdown();
}

#[tokio::test]
async fn only_get_and_known_paths() {
    let fake = upstream(vec![], vec![]).await;
    let s = sidecar(fake.addr(), Limits::default()).await;
    for method in ["POST", "PUT", "DELETE", "HEAD"] {
        let request = format!(
            "{method} /status HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        );
        let mut stream = TcpStream::connect(s.http).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.unwrap();
        let r = parse_head_or_response(&bytes, method != "HEAD").expect("a response");
        assert_eq!(r.status, 405, "{method}: {r:?}");
        assert_eq!(r.header("allow"), Some("GET"));
        if method != "HEAD" {
            r.error(405);
        }
    }
    for path in ["/", "/pairs/", "/nope", "/status.json"] {
        get(s.http, path).await.error(404);
    }
    s.handle.shutdown();
}

#[tokio::test]
async fn status_has_every_contract_key_with_its_type() {
    let fake = upstream(vec![], vec![]).await;
    let s = sidecar(fake.addr(), Limits::default()).await;

    // Probing is off: nothing known yet.
    let v = get(s.http, "/status").await.json();
    check_status(&v);
    assert_eq!(v["generation"], 0);
    assert_eq!(v["sources"], Value::Array(vec![]));

    // What a probe round would publish.
    let published = Verdicts {
        generation: 7,
        sources: vec![
            SourceVerdict {
                address: "2001:db8:1::2".parse().unwrap(),
                scope_id: 0,
                interface: "eth0".into(),
                class: Class::Gua,
                state: State::Ok,
                link: State::Ok,
                rtt: Some(Duration::from_micros(11_200)),
                mapped: None,
            },
            SourceVerdict {
                address: "192.168.1.2".parse().unwrap(),
                scope_id: 0,
                interface: "eth0".into(),
                class: Class::Rfc1918,
                state: State::Failed,
                link: State::Unknown,
                rtt: None,
                mapped: None,
            },
        ],
        families: Families {
            ipv4: State::Failed,
            ipv6: State::Ok,
        },
        path_mtu: PathMtu {
            ipv4: Mtu::Ok,
            ipv6: Mtu::Blackhole,
        },
        flags: Flags {
            gua_ok: true,
            rfc1918: true,
            def_gateway4: Some("192.168.1.1".into()),
            def_gateway6: Some("fe80::1%eth0".into()),
            ..Flags::default()
        },
        nat64_prefixes: vec!["64:ff9b::/96".parse().unwrap()],
        host: Arc::new(Snapshot::default()),
        ..Verdicts::default()
    };
    s.handle.verdicts().store(Arc::new(published));
    let v = get(s.http, "/status").await.json();
    check_status(&v);
    assert_eq!(v["GUA_ok"], true);
    assert_eq!(v["IPv4_ok"], false);
    assert_eq!(v["RFC1918"], true);
    assert_eq!(v["def_gateway4"], "192.168.1.1");
    assert_eq!(v["def_gateway6"], "fe80::1%eth0");
    assert_eq!(v["nat64_prefixes"], serde_json::json!(["64:ff9b::/96"]));
    assert_eq!(
        v["families"],
        serde_json::json!({"ipv4": "failed", "ipv6": "ok"})
    );
    assert_eq!(
        v["path_mtu"],
        serde_json::json!({"ipv4": "ok", "ipv6": "blackhole"})
    );
    assert_eq!(v["generation"], 7);
    assert_eq!(
        v["sources"],
        serde_json::json!([
            {"address": "2001:db8:1::2", "interface": "eth0", "class": "gua", "state": "ok", "rtt_ms": 11.2},
            {"address": "192.168.1.2", "interface": "eth0", "class": "rfc1918", "state": "failed", "rtt_ms": null}
        ])
    );
    s.handle.shutdown();
}

/// Every key of docs/interface.md's `/status`, with its JSON type.
fn check_status(v: &Value) {
    for flag in common::CONTRACT_FLAGS {
        assert!(v[flag].is_boolean(), "{flag}: {v}");
    }
    for gw in ["def_gateway4", "def_gateway6"] {
        assert!(v[gw].is_string() || v[gw].is_null(), "{gw}: {v}");
    }
    assert!(
        v["nat64_prefixes"]
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string)),
        "{v}"
    );
    let states = ["ok", "failed", "unknown"];
    let classes = [
        "gua",
        "ula",
        "lla",
        "rfc1918",
        "cgnat",
        "global4",
        "linklocal4",
        "other",
    ];
    for s in v["sources"].as_array().expect("sources") {
        assert!(
            s["address"]
                .as_str()
                .is_some_and(|a| a.parse::<IpAddr>().is_ok()),
            "{s}"
        );
        assert!(s["interface"].is_string(), "{s}");
        assert!(classes.contains(&s["class"].as_str().unwrap()), "{s}");
        assert!(states.contains(&s["state"].as_str().unwrap()), "{s}");
        assert!(s["rtt_ms"].is_number() || s["rtt_ms"].is_null(), "{s}");
    }
    for f in ["ipv4", "ipv6"] {
        assert!(states.contains(&v["families"][f].as_str().unwrap()), "{v}");
        let mtu = ["ok", "blackhole", "unknown"];
        assert!(mtu.contains(&v["path_mtu"][f].as_str().unwrap()), "{v}");
    }
    assert!(v["generation"].is_u64(), "{v}");
}

/// One sample line of the text format: `name{labels} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// A strict-enough reader of the OpenMetrics text prometheus-client
/// writes: `# HELP`/`# TYPE`/`# UNIT` lines, samples with quoted label
/// values, `# EOF` last and nothing after it.
fn parse_metrics(text: &str) -> Vec<Sample> {
    assert!(text.ends_with("# EOF\n"), "no # EOF at the end: {text}");
    let mut samples = Vec::new();
    let mut types = std::collections::HashMap::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in text.lines() {
        if line == "# EOF" {
            continue;
        }
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().unwrap_or_else(|| panic!("{line}"));
            assert!(name_ok(name), "{line}");
            assert!(["HELP", "TYPE", "UNIT"].contains(&kind), "{line}");
            if kind == "TYPE" {
                let t = parts.next().unwrap();
                assert!(
                    [
                        "counter",
                        "gauge",
                        "histogram",
                        "info",
                        "unknown",
                        "summary",
                        "stateset"
                    ]
                    .contains(&t),
                    "{line}"
                );
                types.insert(name.to_string(), t.to_string());
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
                let labels = body
                    .split("\",")
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (k, v) = l.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                        assert!(name_ok(k), "{line}");
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (name, labels)
            }
        };
        assert!(name_ok(name), "{line}");
        assert!(
            types.keys().any(|family| name.starts_with(family.as_str())),
            "a sample before its # TYPE: {line}"
        );
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

fn queries_total(samples: &[Sample], qtype: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == "getapr_dns_queries_total")
        .filter(|s| s.labels.iter().any(|(k, v)| k == "qtype" && v == qtype))
        .map(|s| s.value)
        .sum()
}

#[tokio::test]
async fn metrics_parse_and_the_query_counter_moves() {
    let fake = upstream(vec![Ipv4Addr::new(192, 0, 2, 1)], vec![]).await;
    let s = sidecar(fake.addr(), Limits::default()).await;
    let r = get(s.http, "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let before = parse_metrics(&r.body);
    assert!(
        before.iter().any(|s| s.name == "getapr_build_info"),
        "{}",
        r.body
    );

    let reply = udp_exchange(s.dns, &query(ALIAS, RecordType::A).bytes()).await;
    assert!(!reply.is_empty());
    let r = get(s.http, "/metrics").await;
    let after = parse_metrics(&r.body);
    assert_eq!(
        queries_total(&after, "A"),
        queries_total(&before, "A") + 1.0,
        "one A query answered: {}",
        r.body
    );
    s.handle.shutdown();
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let fake = upstream(vec![], vec![]).await;
    let s = sidecar(fake.addr(), Limits::default()).await;
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    for _ in 0..3 {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let r = parse_response(&buf[..n]).expect("a response");
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    }
    s.handle.shutdown();
}

#[tokio::test]
async fn an_oversized_head_is_refused() {
    let fake = upstream(vec![], vec![]).await;
    let s = sidecar(fake.addr(), Limits::default()).await;
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Filler: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(9 * 1024)
    );
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    // The server may close before it read everything: a failed write is
    // one of the outcomes.
    let _ = stream.write_all(big.as_bytes()).await;
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut bytes))
        .await
        .expect("the server gives up on the head at once");
    match parse_response(&bytes) {
        Some(r) => assert_eq!(r.status, 431, "{r:?}"),
        None => assert!(
            bytes.is_empty() || read.is_err(),
            "{:?}",
            String::from_utf8_lossy(&bytes)
        ),
    }
    // Just under the limit is fine.
    let fits = format!("X-Filler: {}\r\n", "a".repeat(7 * 1024));
    let r = get_with(s.http, "/healthz", &fits).await;
    assert_eq!(r.status, 200);
    s.handle.shutdown();
}

#[tokio::test]
async fn a_slow_or_idle_client_is_dropped_after_the_header_timeout() {
    let fake = upstream(vec![], vec![]).await;
    let limits = Limits {
        header_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let s = sidecar(fake.addr(), limits).await;
    for sent in [&b"GET /healthz HTTP/1.1\r\nHost: loc"[..], b""] {
        let mut stream = TcpStream::connect(s.http).await.unwrap();
        stream.write_all(sent).await.unwrap();
        let started = std::time::Instant::now();
        let mut bytes = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut bytes))
            .await
            .expect("closed after the header timeout, not kept open");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(250), "{waited:?}");
        // Closed, possibly with a 408 first.
        if read.is_ok() && !bytes.is_empty() {
            let r = parse_response(&bytes).expect("a response");
            assert_eq!(r.status, 408, "{r:?}");
        }
    }
    // A keep-alive connection idle after its response: closed too.
    let mut stream = TcpStream::connect(s.http).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut bytes))
        .await
        .expect("closed after the header timeout, not kept open");
    assert!(
        String::from_utf8_lossy(&bytes).starts_with("HTTP/1.1 200"),
        "{bytes:?}"
    );
    s.handle.shutdown();
}

#[tokio::test]
async fn at_the_connection_cap_the_longest_waiting_gives_way() {
    let fake = upstream(vec![], vec![]).await;
    let limits = Limits {
        connections: 2,
        header_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let s = sidecar(fake.addr(), limits).await;
    let mut held: Vec<TcpStream> = futures_connect(s.http, 2).await;
    // The daemon has accepted both before the third arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Both wait for their head: the one that waited longest gives way.
    let r = get(s.http, "/healthz").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_busy(&mut held[0]).await;
    assert_eq!(limit_hits(&s.handle, "http_busy"), 1, "its 503 is counted");
    // An idle keep-alive connection, answered before, is closed without
    // a word when it gives way.
    let mut idle = TcpStream::connect(s.http).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert_eq!(parse_response(&buf[..n]).map(|r| r.status), Some(200));
    // held[1] has waited longest: it goes first.
    assert_eq!(get(s.http, "/healthz").await.status, 200);
    assert_busy(&mut held[1]).await;
    // Then `idle`, which waits since its answer, before `later`.
    let _later = TcpStream::connect(s.http).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get(s.http, "/healthz").await.status, 200);
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
    // Two 503s (held[0], held[1]); `idle` was closed without one.
    assert_eq!(limit_hits(&s.handle, "http_busy"), 2);
    s.handle.shutdown();
}

#[tokio::test]
async fn when_every_connection_is_busy_a_new_one_gets_503() {
    let silent = FakeUpstream::silent().await;
    let limits = Limits {
        connections: 2,
        ..Limits::default()
    };
    let s = sidecar(silent.addr(), limits).await;
    // Two `/pairs` waiting for the silent upstream hold both slots busy.
    let mut held = futures_connect(s.http, 2).await;
    for stream in &mut held {
        stream
            .write_all(b"GET /pairs?host=a.pairs.test HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(s.http).await.unwrap();
    assert_busy(&mut third).await;
    assert_eq!(limit_hits(&s.handle, "http_busy"), 1, "the 503 is counted");
    // A slot comes back when a request is answered (502: the upstream is
    // silent).
    let mut bytes = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), held[0].read(&mut bytes))
        .await
        .expect("answered")
        .unwrap();
    let r = parse_response(&bytes[..n]).expect("a response");
    r.error(502);
    let r = get(s.http, "/healthz").await;
    assert_eq!(r.status, 200);
    s.handle.shutdown();
}

/// Reads the fixed 503 of a connection refused or evicted at the cap.
async fn assert_busy(stream: &mut TcpStream) {
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut bytes))
        .await
        .expect("answered at once");
    match read {
        Ok(_) => {
            let r = parse_response(&bytes).expect("a response");
            r.error(503);
            assert_eq!(r.header("connection"), Some("close"));
            assert_eq!(r.header("retry-after"), Some("1"));
        }
        // A reset after (or instead of) the 503 also says "busy".
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }
}

async fn futures_connect(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(TcpStream::connect(addr).await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_busy_http_port_fails_the_bind_naming_the_sidecar() {
    let fake = upstream(vec![], vec![]).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = Daemon::bind(
        config(fake.addr(), &format!("\"{addr}\"")),
        Source::Embedded,
    )
    .await
    .expect_err("the port is taken");
    let text = err.to_string();
    assert!(
        text.contains(&format!("http.listen (HTTP sidecar) {addr}")),
        "{text}"
    );
    assert!(
        matches!(
            err,
            getapr::daemon::Error::Bind {
                service: Service::Http,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.exit_code(), 1);
}

#[tokio::test]
async fn reload_applies_http_listeners_atomically() {
    let fake = upstream(vec![], vec![]).await;
    let s = sidecar(fake.addr(), Limits::default()).await;
    // A new address that cannot be bound: the reload fails, the sidecar
    // keeps serving where it was.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap();
    let bad = config(fake.addr(), &format!("\"127.0.0.1:0\", \"{busy}\""));
    let err = s.handle.reload(bad).await.expect_err("bind fails");
    assert!(err.to_string().contains("HTTP sidecar"), "{err}");
    assert_eq!(get(s.http, "/healthz").await.status, 200);
    // Emptied: the sidecar stops listening.
    s.handle.reload(config(fake.addr(), "")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(TcpStream::connect(s.http).await.is_err(), "still listening");
    // The DNS side is untouched.
    let reply = udp_exchange(s.dns, &query(EMPTY, RecordType::A).bytes()).await;
    assert!(!reply.is_empty());
    s.handle.shutdown();
}

// ---------------------------------------------------------------------------
// http.allow: who may ask at all.

/// A client of the sidecar that `http.allow = ["127.0.0.1/32"]` leaves
/// out: all of 127.0.0.0/8 is this host's on Linux, so nothing needs root.
const OUTSIDER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const INSIDER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const ONLY_INSIDER: &str = "allow = [\"127.0.0.1/32\"]";

/// The fixed 403 of a client outside `http.allow`.
fn assert_forbidden(r: &common::http::Response) {
    r.error(403);
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(r.body.contains("http.allow"), "{r:?}");
}

#[tokio::test]
async fn outside_http_allow_every_path_is_403_and_nothing_is_looked_up() {
    let fake = upstream(vec![], vec![]).await;
    let s = sidecar_with(fake.addr(), Limits::default(), ONLY_INSIDER).await;

    // Inside: answered, and a name is asked upstream (so the count below
    // would see a lookup).
    let r = get_from(INSIDER, s.http, "/pairs?host=inside.pairs.test")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(fake.total_queries() > 0, "the upstream counts queries");
    let asked = fake.total_queries();
    assert_eq!(limit_hits(&s.handle, "http_forbidden"), 0);

    // Outside: 403 on every path and for any method, `/healthz` too.
    let targets = [
        "/pairs?host=outside.pairs.test",
        "/pairs?host=192.0.2.1",
        "/status",
        "/metrics",
        "/healthz",
        "/no-such-path",
    ];
    for target in targets {
        let r = get_from(OUTSIDER, s.http, target).await.unwrap();
        assert_forbidden(&r);
    }
    let post = b"POST /pairs?host=post.pairs.test HTTP/1.1\r\nHost: localhost\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n";
    let r = exchange_from(Some(OUTSIDER), s.http, post, Duration::from_secs(10))
        .await
        .unwrap();
    assert_forbidden(&r);
    let refused = targets.len() + 1;

    // No lookup was made for them: nothing more reached the upstream
    // (given the time a lookup would take to get there).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.total_queries(), asked, "{:?}", fake.received());

    // Counted, one per 403, and readable by an allowed client; a 403 of
    // the Host guard counts too.
    assert_eq!(limit_hits(&s.handle, "http_forbidden"), refused as u64);
    raw(
        s.http,
        b"GET /healthz HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await
    .error(403);
    let r = get_from(INSIDER, s.http, "/metrics").await.unwrap();
    assert_eq!(r.status, 200);
    let line = format!(
        "getapr_limits_hit_total{{limit=\"http_forbidden\"}} {}",
        refused + 1
    );
    assert!(
        r.body.lines().any(|l| l == line),
        "no `{line}` in:\n{}",
        r.body
    );
    assert_eq!(limit_hits(&s.handle, "http_busy"), 0);
    s.handle.shutdown();
}

#[tokio::test]
async fn the_default_http_allow_is_loopback() {
    let fake = upstream(vec![], vec![]).await;
    // No `allow` written: all of 127.0.0.0/8 may ask.
    let s = sidecar(fake.addr(), Limits::default()).await;
    for client in [INSIDER, OUTSIDER] {
        let r = get_from(client, s.http, "/healthz").await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "{client}");
    }
    s.handle.shutdown();
}

#[tokio::test]
async fn refused_clients_take_no_slot() {
    let fake = upstream(vec![], vec![]).await;
    let limits = Limits {
        connections: 1,
        header_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let s = sidecar_with(fake.addr(), limits, ONLY_INSIDER).await;
    // An allowed client holds the one slot, waiting to send its head: a
    // new connection that took a slot would make it give way.
    let mut held = connect_from(INSIDER, s.http).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..20 {
        let r = get_from(OUTSIDER, s.http, "/healthz").await.unwrap();
        assert_forbidden(&r);
    }
    held.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), held.read_to_end(&mut bytes))
        .await
        .expect("answered")
        .unwrap();
    let r = parse_response(&bytes).expect("a response");
    assert_eq!((r.status, r.body.as_str()), (200, "ok"), "{r:?}");
    assert_eq!(limit_hits(&s.handle, "http_busy"), 0, "nobody was evicted");
    assert_eq!(limit_hits(&s.handle, "http_forbidden"), 20);
    s.handle.shutdown();
}

#[tokio::test]
async fn reload_applies_http_allow_atomically() {
    let fake = upstream(vec![], vec![]).await;
    let s = sidecar_with(fake.addr(), Limits::default(), ONLY_INSIDER).await;
    let status = |client| async move {
        get_from(client, s.http, "/healthz")
            .await
            .unwrap_or_else(|e| panic!("{client}: {e}"))
            .status
    };
    assert_eq!((status(INSIDER).await, status(OUTSIDER).await), (200, 403));
    // The same `listen` as configured: the sidecar keeps its listener and
    // `allow` alone changes.
    let listen = "\"127.0.0.1:0\"";
    let with_allow = |allow: &str| config_with(fake.addr(), listen, allow);

    // Widened: the outsider is in.
    s.handle
        .reload(with_allow("allow = [\"127.0.0.0/30\"]"))
        .await
        .unwrap();
    assert_eq!((status(INSIDER).await, status(OUTSIDER).await), (200, 200));

    // A reload that fails (a listen address already taken) changes
    // nothing, `allow` included.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap();
    let bad = config_with(
        fake.addr(),
        &format!("{listen}, \"{busy}\""),
        "allow = [\"127.0.0.3/32\"]",
    );
    s.handle.reload(bad).await.expect_err("bind fails");
    assert_eq!((status(INSIDER).await, status(OUTSIDER).await), (200, 200));

    // Narrowed while the outsider holds a keep-alive connection: its next
    // request is refused and the connection closed.
    let mut kept = connect_from(OUTSIDER, s.http).await.unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    kept.write_all(request).await.unwrap();
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), kept.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parse_response(&buf[..n]).map(|r| r.status), Some(200));
    s.handle.reload(with_allow(ONLY_INSIDER)).await.unwrap();
    kept.write_all(request).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), kept.read_to_end(&mut bytes))
        .await
        .expect("answered and closed")
        .unwrap();
    assert_forbidden(&parse_response(&bytes).expect("a response"));
    assert_eq!((status(INSIDER).await, status(OUTSIDER).await), (200, 403));
    s.handle.shutdown();
}

#[tokio::test]
async fn http_allow_covers_ipv6_clients() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        println!("SKIPPED: no ::1 on this host");
        return;
    }
    let fake = upstream(vec![], vec![]).await;
    // Listening on ::1, IPv4 loopback only allowed: ::1 is outside.
    let listen = "\"[::1]:0\"";
    let config = config_with(fake.addr(), listen, "allow = [\"127.0.0.0/8\"]");
    let daemon = Daemon::bind(config, Source::Embedded).await.unwrap();
    let http = daemon.http_addrs()[0];
    let handle = daemon.handle();
    tokio::spawn(daemon.run());
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let r = get_from(v6, http, "/healthz").await.unwrap();
    assert_forbidden(&r);
    handle
        .reload(config_with(fake.addr(), listen, "allow = [\"::1\"]"))
        .await
        .unwrap();
    let r = get_from(v6, http, "/healthz").await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "ok"), "{r:?}");
    handle.shutdown();
}

#[tokio::test]
async fn pairs_beyond_its_bound_get_503_and_each_is_counted() {
    let silent = FakeUpstream::silent().await;
    // One `/pairs` at a time and none in line.
    let limits = Limits {
        pairs: 1,
        pairs_queue: 0,
        ..Limits::default()
    };
    let s = sidecar(silent.addr(), limits).await;
    let pairs = b"GET /pairs?host=a.pairs.test HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut first = TcpStream::connect(s.http).await.unwrap();
    first.write_all(pairs).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Beyond the bound: 503 at once, each time.
    let mut second = TcpStream::connect(s.http).await.unwrap();
    for count in [1, 2] {
        second.write_all(pairs).await.unwrap();
        let mut buf = vec![0; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), second.read(&mut buf))
            .await
            .expect("at once")
            .unwrap();
        let r = parse_response(&buf[..n]).expect("a response");
        r.error(503);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(limit_hits(&s.handle, "http_busy"), count);
    }
    assert_eq!(limit_hits(&s.handle, "http_forbidden"), 0);
    s.handle.shutdown();
}
