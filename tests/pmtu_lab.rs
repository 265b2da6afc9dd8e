//! Path-MTU blackholes (root; the network lab): the probe targets answer a
//! padded ClientHello with 6 KB, as a TLS server's first flight would, and
//! the router then drops IPv6 packets over 1,300 bytes without a Packet Too
//! Big. getapr must call IPv6 `blackhole`, remove the AAAA of a dual-stack
//! name (EDE 17), and an application fetching 200 kB by name through it
//! must get them over IPv4. Healthy, both families are `ok`; a target that
//! answers nothing to a ClientHello leaves `unknown`, never `blackhole`;
//! an IPv6 path 300 ms slower (the delay box), a ULA behind NPTv6 and a
//! target behind NAT64 stay `ok`.
//!
//! Run with `--nocapture` to see the measured figures (`MEASURED` lines).

mod common;

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use serde_json::Value;

use common::lab::{self, Lab, LabChild, Ns};
use common::labdns::{
    self, DUAL4, DUAL6, GetaprConfig, KNOT4, LabDns, LabGetapr, addresses, ask, extended_errors,
};
use common::query;

/// getapr's sidecar port in the host namespace (a namespace of this run).
const HTTP_PORT: u16 = 8053;

/// Where the lab's dual-stack name serves 200 kB.
const BULK_PORT: u16 = 8080;

const BULK_BYTES: usize = 200_000;

/// Generous catch-all for a loaded machine; the figure printed is the
/// evidence (two large probes after the break: about 1–3 s with 1 s rounds
/// and 0.5 s timeouts).
const SETTLE: Duration = Duration::from_secs(20);

/// The lab's servers in inet: the probe targets on 443, which read the
/// first TLS record and then answer 6 KB (`tls`) or nothing at all
/// (`silent`: not TLS), and the dual-stack name's addresses on
/// [`BULK_PORT`], which send [`BULK_BYTES`] to whoever connects.
const SERVERS: &str = r#"
import socket, sys, threading, time

mode, targets, bulk, bulk_port, size = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(","), int(sys.argv[4]), int(sys.argv[5])

def listen(addr, port):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(64)
    return s

def read_record(c):
    buf = b""
    while len(buf) < 5 or len(buf) < 5 + int.from_bytes(buf[3:5], "big"):
        d = c.recv(65536)
        if not d:
            return False
        buf += d
    return True

def target(c):
    try:
        c.settimeout(10)
        if read_record(c) and mode == "tls":
            c.sendall(b"\x16\x03\x03" + (6000).to_bytes(2, "big") + b"\x02" * 6000)
        # Keep it open as a server waiting for the client's next flight.
        while c.recv(65536):
            pass
    except Exception:
        pass
    finally:
        c.close()

def give(c):
    try:
        c.settimeout(10)
        c.sendall(b"x" * size)
    except Exception:
        pass
    finally:
        c.close()

def serve(s, handler):
    while True:
        c, _ = s.accept()
        threading.Thread(target=handler, args=(c,), daemon=True).start()

for a in targets:
    threading.Thread(target=serve, args=(listen(a, 443), target), daemon=True).start()
for a in bulk:
    threading.Thread(target=serve, args=(listen(a, bulk_port), give), daemon=True).start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

/// `GET PATH` of the sidecar from the host namespace.
const GET: &str = r#"
import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:%s%s" % (sys.argv[1], sys.argv[2]), timeout=5).read().decode())
"#;

/// Connects to NAME:PORT as an application does (getaddrinfo through the
/// host's resolv.conf, addresses in its order), reads until EOF or the
/// timeout and prints `family bytes seconds`.
const FETCH: &str = r#"
import socket, sys, time
t = time.monotonic()
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    fam = "ipv6" if s.family == socket.AF_INET6 else "ipv4"
    n = 0
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            n += len(d)
    except socket.timeout:
        pass
    print(fam, n, time.monotonic() - t)
except Exception as e:
    print("error", 0, time.monotonic() - t, repr(e))
"#;

fn start_servers(lab: &Lab, mode: &str) -> LabChild {
    start_servers_seen_at(lab, mode, &lab::TARGET4.to_string())
}

/// [`start_servers`], ready once the host connects to `seen_at`:443.
fn start_servers_seen_at(lab: &Lab, mode: &str, seen_at: &str) -> LabChild {
    let targets = format!("{},{}", lab::TARGET4, lab::TARGET6);
    let bulk = format!("{DUAL4},{DUAL6}");
    let (port, size) = (BULK_PORT.to_string(), BULK_BYTES.to_string());
    let child = lab.spawn(
        Ns::Inet,
        &[
            lab::python(),
            OsStr::new("-S"),
            OsStr::new("-c"),
            OsStr::new(SERVERS),
            OsStr::new(mode),
            OsStr::new(&targets),
            OsStr::new(&bulk),
            OsStr::new(&port),
            OsStr::new(&size),
        ],
    );
    // Listening once a connect from the host gets through.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fetch_ok(lab, seen_at, 443) {
        assert!(Instant::now() < deadline, "the lab servers never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

fn fetch_ok(lab: &Lab, host: &str, port: u16) -> bool {
    let script = "import socket, sys\nsocket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()";
    lab.exec(
        Ns::Host,
        &[
            lab::python(),
            OsStr::new("-S"),
            OsStr::new("-c"),
            OsStr::new(script),
            OsStr::new(host),
            OsStr::new(&port.to_string()),
        ],
    )
    .status
    .success()
}

fn get(lab: &Lab, path: &str) -> Value {
    let out = lab.run(
        Ns::Host,
        &[
            lab::python(),
            OsStr::new("-S"),
            OsStr::new("-c"),
            OsStr::new(GET),
            OsStr::new(&HTTP_PORT.to_string()),
            OsStr::new(path),
        ],
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{path}: {e}: {out}"))
}

fn status(lab: &Lab) -> Value {
    get(lab, "/status")
}

/// The families of `/pairs` for `name`, in order.
fn pair_families(lab: &Lab, name: &str) -> Vec<String> {
    let v = get(lab, &format!("/pairs?host={}", name.trim_end_matches('.')));
    (v["pairs"].as_array().into_iter().flatten())
        .map(|p| p["family"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn path_mtu(lab: &Lab) -> (String, String) {
    let v = status(lab);
    let f = |k: &str| v["path_mtu"][k].as_str().unwrap_or("missing").to_owned();
    (f("ipv4"), f("ipv6"))
}

/// Polls `/status` until `ok(path_mtu)` holds; the time it took.
fn wait_mtu(lab: &Lab, what: &str, ok: impl Fn(&(String, String)) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let now = path_mtu(lab);
        if ok(&now) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < SETTLE,
            "{what}: path_mtu still {now:?} after {SETTLE:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Drops forwarded IPv6 packets over 1,300 bytes in the router, silently
/// (no ICMPv6 Packet Too Big), or stops.
fn blackhole(lab: &Lab, on: bool) {
    let script = if on {
        "table ip6 pmtu {
            chain forward {
                type filter hook forward priority -10; policy accept;
                meta length > 1300 counter drop
            }
        }\n"
    } else {
        "delete table ip6 pmtu\n"
    };
    lab.nft(Ns::Router, script);
}

fn fetch(lab: &Lab, name: &str, timeout_s: &str) -> (String, usize, String) {
    let out = lab.run(
        Ns::Host,
        &[
            lab::python(),
            OsStr::new("-S"),
            OsStr::new("-c"),
            OsStr::new(FETCH),
            OsStr::new(name),
            OsStr::new(&BULK_PORT.to_string()),
            OsStr::new(timeout_s),
        ],
    );
    let mut w = out.split_whitespace();
    let family = w.next().unwrap_or_default().to_owned();
    let bytes = w.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    (family, bytes, out.trim().to_owned())
}

fn start_getapr(lab: &Lab, dns: &LabDns) -> LabGetapr {
    let mut config = GetaprConfig::new(KNOT4);
    config.http_port = Some(HTTP_PORT);
    LabGetapr::start(lab, dns, config)
}

#[test]
fn an_ipv6_mtu_blackhole_is_found_and_its_aaaa_filtered() {
    if !lab::root_or_skip("pmtu_lab::an_ipv6_mtu_blackhole_is_found_and_its_aaaa_filtered") {
        return;
    }
    let lab = Lab::builder().without_services().build();
    let dns = LabDns::start(&lab);
    let _servers = start_servers(&lab, "tls");
    let getapr = start_getapr(&lab, &dns);
    lab.write_netns_resolv_conf(Ns::Host, "nameserver 127.0.0.53");
    let dual = labdns::name("dual");

    // Healthy: both ok.
    let healthy = wait_mtu(&lab, "healthy", |(v4, v6)| v4 == "ok" && v6 == "ok");
    eprintln!("MEASURED healthy: path_mtu ok for both families {healthy:?} after start");
    let (family, bytes, line) = fetch(&lab, &dual, "5");
    eprintln!("MEASURED healthy fetch by name: {line}");
    let healthy_pairs = pair_families(&lab, &dual);
    eprintln!("MEASURED healthy /pairs families: {healthy_pairs:?}");
    assert_eq!(healthy_pairs.first().map(String::as_str), Some("ipv6"));
    assert_eq!((family.as_str(), bytes), ("ipv6", BULK_BYTES), "{line}");

    // The blackhole.
    blackhole(&lab, true);
    let broke = Instant::now();
    let found = wait_mtu(&lab, "blackhole", |(_, v6)| v6 == "blackhole");
    eprintln!("MEASURED blackhole: path_mtu.ipv6 blackhole {found:?} after the break");
    let v = status(&lab);
    assert_eq!(v["families"]["ipv6"], "ok", "small probes still pass: {v}");
    assert_eq!(v["path_mtu"]["ipv4"], "ok", "{v}");
    assert_eq!(v["GUA_ok"], true, "{v}");
    let holed_pairs = pair_families(&lab, &dual);
    eprintln!("MEASURED /pairs families during the blackhole: {holed_pairs:?}");
    assert_eq!(holed_pairs, ["ipv4", "ipv6"], "IPv6 ranks last");

    // Without getapr an application takes IPv6 and stalls.
    lab.write_netns_resolv_conf(Ns::Host, &format!("nameserver {KNOT4}"));
    let (family, bytes, line) = fetch(&lab, &dual, "3");
    eprintln!("MEASURED straight to Knot during the blackhole: {line}");
    assert!(family == "ipv6" && bytes < BULK_BYTES, "{line}");
    lab.write_netns_resolv_conf(Ns::Host, "nameserver 127.0.0.53");

    // Through getapr: the AAAA is gone with EDE 17, the fetch goes over IPv4.
    let stub = labdns::dns(std::net::Ipv4Addr::new(127, 0, 0, 53));
    let reply = ask(&lab, Ns::Host, stub, &query(&dual, RecordType::AAAA));
    let ede = extended_errors(&reply);
    eprintln!(
        "MEASURED AAAA {dual} through getapr: {}",
        labdns::summary(&reply)
    );
    assert!(addresses(&reply.answers).is_empty(), "{ede:?}");
    assert!(
        ede.iter()
            .any(|(code, text)| *code == 17 && text.contains("IPv6 path MTU blackhole")),
        "{ede:?}"
    );
    let (family, bytes, line) = fetch(&lab, &dual, "5");
    eprintln!("MEASURED fetch by name through getapr during the blackhole: {line}");
    assert_eq!((family.as_str(), bytes), ("ipv4", BULK_BYTES), "{line}");
    assert!(!getapr.log().is_empty());
    let (at, log_line) = getapr.wait(broke, &["path", "MTU", "IPv6", "blackhole*"], SETTLE);
    eprintln!("MEASURED log line {at:?} after the break: {log_line}");

    // Repaired: ok again.
    blackhole(&lab, false);
    let healed = wait_mtu(&lab, "repair", |(_, v6)| v6 == "ok");
    eprintln!("MEASURED repair: path_mtu.ipv6 ok {healed:?} after the repair");
    let reply = ask(&lab, Ns::Host, stub, &query(&dual, RecordType::AAAA));
    assert_eq!(addresses(&reply.answers), vec![std::net::IpAddr::V6(DUAL6)]);
}

#[test]
fn a_target_that_does_not_speak_tls_leaves_unknown() {
    if !lab::root_or_skip("pmtu_lab::a_target_that_does_not_speak_tls_leaves_unknown") {
        return;
    }
    let lab = Lab::builder().without_services().build();
    let dns = LabDns::start(&lab);
    let _servers = start_servers(&lab, "silent");
    let _getapr = start_getapr(&lab, &dns);
    // Healthy path, 8 rounds of large probes answered by silence.
    let mut seen = watch(&lab, 8);
    let v = status(&lab);
    assert_eq!(v["families"]["ipv6"], "ok", "{v}");
    // And a real blackhole behind it: still no evidence.
    blackhole(&lab, true);
    for now in watch(&lab, 6) {
        if !seen.contains(&now) {
            seen.push(now);
        }
    }
    eprintln!("MEASURED silent target, 14 s of 1 s rounds (blackhole from 8 s): path_mtu {seen:?}");
    assert_eq!(seen, vec![("unknown".to_owned(), "unknown".to_owned())]);
}

/// Watches `/status` for `secs` and returns every distinct `path_mtu` seen.
fn watch(lab: &Lab, secs: u64) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let now = path_mtu(lab);
        if !seen.contains(&now) {
            seen.push(now);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    seen
}

fn ok_and_stays_ok(lab: &Lab, dns: &LabDns, what: &str) {
    let _getapr = start_getapr(lab, dns);
    let took = wait_mtu(lab, what, |(v4, v6)| v4 == "ok" && v6 == "ok");
    let v = status(lab);
    let rtts: Vec<String> = (v["sources"].as_array().into_iter().flatten())
        .map(|s| format!("{} {} ms", s["address"], s["rtt_ms"]))
        .collect();
    let seen = watch(lab, 8);
    eprintln!(
        "MEASURED {what}: path_mtu ok for both families {took:?} after start; \
         sources {rtts:?}; 8 s of 1 s rounds after: {seen:?}"
    );
    assert_eq!(seen, vec![("ok".to_owned(), "ok".to_owned())], "{what}");
}

#[test]
fn a_slow_ipv6_path_is_not_a_blackhole() {
    if !lab::root_or_skip("pmtu_lab::a_slow_ipv6_path_is_not_a_blackhole") {
        return;
    }
    let lab = Lab::builder().without_services().build();
    let dns = LabDns::start(&lab);
    let _servers = start_servers(&lab, "tls");
    // 300 ms more RTT with a 500 ms probe timeout: the connect and the
    // first flight each fit, the two together would not.
    let _delay = common::delay::Delay::ipv6(&lab, Ns::Router, Duration::from_millis(150));
    ok_and_stays_ok(&lab, &dns, "IPv6 +150 ms each way");
}

#[test]
fn an_nptv6_path_is_not_a_blackhole() {
    if !lab::root_or_skip("pmtu_lab::an_nptv6_path_is_not_a_blackhole") {
        return;
    }
    let lab = Lab::builder().ula_nptv6().without_services().build();
    let dns = LabDns::start(&lab);
    let _servers = start_servers(&lab, "tls");
    ok_and_stays_ok(&lab, &dns, "ULA behind NPTv6");
}

#[test]
fn a_nat64_path_is_not_a_blackhole() {
    if !lab::root_or_skip("pmtu_lab::a_nat64_path_is_not_a_blackhole") {
        return;
    }
    // An IPv6-only host whose one probe target is the IPv4 target behind
    // the NAT64 (tayga in the router): the large probe crosses the
    // translator both ways.
    let lab = Lab::builder()
        .without_ipv4()
        .nat64()
        .without_services()
        .build();
    let dns = LabDns::start(&lab);
    let target = lab::nat64(lab::TARGET4);
    let _servers = start_servers_seen_at(&lab, "tls", &target.to_string());
    let config = format!(
        "[dns]\nlisten = [\"127.0.0.53:53\"]\nupstreams = [\"{}\"]\ntimeout_ms = 1000\n\
         [http]\nlisten = [\"127.0.0.1:{HTTP_PORT}\"]\n\
         [probe]\ninterval_ms = 1000\ntimeout_ms = 500\n\
         targets = [\"[{target}]:443\"]\nstun = []\ndestinations = false\n",
        labdns::KNOT6,
    );
    let path = dns.dir().join("pmtu-nat64.toml");
    std::fs::write(&path, config).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let mut command = lab.command(Ns::Host, &[env!("CARGO_BIN_EXE_getapr"), "serve", "-c"]);
    command
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _getapr = LabChild::spawn(&mut command);
    let deadline = Instant::now() + SETTLE;
    while !fetch_ok(&lab, "127.0.0.1", HTTP_PORT) {
        assert!(Instant::now() < deadline, "getapr's sidecar never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = wait_mtu(&lab, "NAT64", |(_, v6)| v6 == "ok");
    let seen = watch(&lab, 8);
    eprintln!(
        "MEASURED NAT64 target {target}: path_mtu.ipv6 ok {took:?} after start; \
         8 s of 1 s rounds after: {seen:?}"
    );
    assert!(seen.iter().all(|(_, v6)| v6 == "ok"), "{seen:?}");
}
