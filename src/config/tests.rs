use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::load::discover_from;
use super::raw::{RawConfig, RawDns, RawDns64, RawHttp, RawPolicy, RawProbe};
use super::*;

fn error(text: &str) -> Error {
    match Config::parse(text) {
        Ok(config) => panic!("accepted {text:?} as {config:?}"),
        Err(e) => e,
    }
}

/// A file in the temp dir, unique per test and process.
fn temp_file(name: &str, text: Option<&str>) -> PathBuf {
    let path = std::env::temp_dir().join(format!("getapr-{}-{name}.toml", std::process::id()));
    let _ = std::fs::remove_file(&path);
    if let Some(text) = text {
        std::fs::write(&path, text).expect("temp dir is writable");
    }
    path
}

#[test]
fn empty_file_is_default() {
    assert_eq!(Config::parse("").unwrap(), Config::default());
    assert_eq!(
        Config::parse("[dns]\n[http]\n[probe]\n[policy]\n").unwrap(),
        Config::default()
    );
}

#[test]
fn embedded_is_default() {
    assert_eq!(Config::embedded(), Config::default());
}

#[test]
fn default_file_states_every_key() {
    let raw: RawConfig = toml::from_str(DEFAULT_TEXT).unwrap();
    // No `..`: a new key fails to compile here until it is listed, and
    // then fails the test until config/getapr.toml states it.
    let RawConfig {
        dns,
        http,
        probe,
        policy,
        dns64,
    } = raw;
    let RawDns {
        listen,
        upstreams,
        resolv_conf,
        timeout_ms,
        cache_size,
        allow,
        udp_max_size,
        max_inflight,
        tcp_max_connections,
        workers,
        serve_stale_s,
        failure_cache_s,
    } = dns;
    let RawHttp {
        listen: http_listen,
        allow: http_allow,
    } = http;
    let RawProbe {
        interval_ms,
        timeout_ms: probe_timeout_ms,
        targets,
        stun,
        destinations,
        interfaces,
        exclude_interfaces,
    } = probe;
    let RawPolicy {
        filter,
        break_dnssec,
        table,
        first_family_count,
        rtt_margin_ms,
    } = policy;
    let RawDns64 {
        synthesize,
        prefixes,
    } = dns64;
    let present = [
        ("dns.listen", listen.is_some()),
        ("dns.upstreams", upstreams.is_some()),
        ("dns.resolv_conf", resolv_conf.is_some()),
        ("dns.timeout_ms", timeout_ms.is_some()),
        ("dns.cache_size", cache_size.is_some()),
        ("dns.allow", allow.is_some()),
        ("dns.udp_max_size", udp_max_size.is_some()),
        ("dns.max_inflight", max_inflight.is_some()),
        ("dns.tcp_max_connections", tcp_max_connections.is_some()),
        ("dns.workers", workers.is_some()),
        ("dns.serve_stale_s", serve_stale_s.is_some()),
        ("dns.failure_cache_s", failure_cache_s.is_some()),
        ("http.listen", http_listen.is_some()),
        ("http.allow", http_allow.is_some()),
        ("probe.interval_ms", interval_ms.is_some()),
        ("probe.timeout_ms", probe_timeout_ms.is_some()),
        ("probe.targets", targets.is_some()),
        ("probe.stun", stun.is_some()),
        ("probe.destinations", destinations.is_some()),
        ("probe.interfaces", interfaces.is_some()),
        ("probe.exclude_interfaces", exclude_interfaces.is_some()),
        ("policy.filter", filter.is_some()),
        ("policy.break_dnssec", break_dnssec.is_some()),
        ("dns64.synthesize", synthesize.is_some()),
        ("dns64.prefixes", prefixes.is_some()),
        ("policy.table", table.is_some()),
        ("policy.first_family_count", first_family_count.is_some()),
        ("policy.rtt_margin_ms", rtt_margin_ms.is_some()),
    ];
    for (key, is_present) in present {
        assert!(is_present, "config/getapr.toml does not state {key}");
    }
}

#[test]
fn every_value_reaches_the_validated_config() {
    let config = Config::parse(
        r#"
[dns]
listen = ["0.0.0.0:5353", "[::1]:0"]
upstreams = ["9.9.9.9", "[2620:fe::fe]:853", "system"]
resolv_conf = "/run/resolv.conf"
timeout_ms = 50
cache_size = 0
allow = ["10.1.2.3/8", "192.0.2.7", "2001:db8::/32"]
udp_max_size = 4096
max_inflight = 1
tcp_max_connections = 65535
workers = 64
serve_stale_s = 0
failure_cache_s = 300
[http]
listen = []
allow = ["192.168.1.77/24", "2001:db8::1", "fd00::/8"]
[probe]
interval_ms = 3600000
timeout_ms = 60000
targets = []
stun = ["192.0.2.1:3478", "[2001:db8::1]:3478", "stun.example.org.:1"]
destinations = false
interfaces = ["eth0", "wlan*"]
exclude_interfaces = ["docker*"]
[policy]
filter = "off"
break_dnssec = true
table = "update"
first_family_count = 2
rtt_margin_ms = 0
[dns64]
synthesize = "off"
prefixes = ["2001:db8:64:ff00::/64"]
"#,
    )
    .unwrap();
    let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
    let net = |s: &str| s.parse::<IpNet>().unwrap();
    let hp = |host: &str, port| HostPort {
        host: host.to_owned(),
        port,
    };
    let expected = Config {
        dns: Dns {
            listen: vec![sa("0.0.0.0:5353"), sa("[::1]:0")],
            upstreams: vec![
                Upstream::Addr(sa("9.9.9.9:53").into()),
                Upstream::Addr(sa("[2620:fe::fe]:853").into()),
                Upstream::System,
            ],
            resolv_conf: PathBuf::from("/run/resolv.conf"),
            timeout: Duration::from_millis(50),
            cache_size: 0,
            // Host bits cleared; a bare IP is one host.
            allow: vec![net("10.0.0.0/8"), net("192.0.2.7/32"), net("2001:db8::/32")],
            udp_max_size: 4096,
            max_inflight: 1,
            tcp_max_connections: 65535,
            workers: 64,
            serve_stale: Duration::ZERO,
            failure_cache: Duration::from_secs(300),
        },
        http: Http {
            listen: vec![],
            // Host bits cleared, a bare IP one host, as for `dns.allow`.
            allow: vec![
                net("192.168.1.0/24"),
                net("2001:db8::1/128"),
                net("fd00::/8"),
            ],
        },
        probe: Probe {
            interval: Duration::from_secs(3600),
            timeout: Duration::from_secs(60),
            targets: vec![],
            stun: vec![
                hp("192.0.2.1", 3478),
                hp("2001:db8::1", 3478),
                hp("stun.example.org.", 1),
            ],
            destinations: false,
            interfaces: vec!["eth0".to_owned(), "wlan*".to_owned()],
            exclude_interfaces: vec!["docker*".to_owned()],
        },
        policy: Policy {
            filter: Filter::Off,
            break_dnssec: true,
            table: crate::policy::Table::Update,
            first_family_count: 2,
            rtt_margin: Duration::ZERO,
        },
        dns64: Dns64 {
            synthesize: Synthesize::Off,
            prefixes: vec!["2001:db8:64:ff00::/64".parse().unwrap()],
        },
    };
    assert_eq!(config, expected);
}

#[test]
fn upstream_forms() {
    let sa = |s: &str| Upstream::Addr(s.parse::<SocketAddr>().unwrap().into());
    let named = |s: &str, name: &str| {
        Upstream::Addr(Nameserver::on_interface(
            s.parse().unwrap(),
            name.to_owned(),
        ))
    };
    for (input, expected) in [
        ("system", Upstream::System),
        ("192.0.2.1", sa("192.0.2.1:53")),
        ("192.0.2.1:5353", sa("192.0.2.1:5353")),
        // An unbracketed IPv6 literal is all address, never ADDR:PORT.
        ("2001:db8::53", sa("[2001:db8::53]:53")),
        ("[2001:db8::1]:5353", sa("[2001:db8::1]:5353")),
        ("fe80::1%2", sa("[fe80::1%2]:53")),
        ("[fe80::1%2]:5353", sa("[fe80::1%2]:5353")),
        // A zone by name stays a name: its index changes as the interface
        // comes and goes.
        ("fe80::1%eth0", named("[fe80::1]:53", "eth0")),
        ("[fe80::1%eth0]:5353", named("[fe80::1]:5353", "eth0")),
        ("fe80::1%wlp0s20f3", named("[fe80::1]:53", "wlp0s20f3")),
        (
            "[fe80::53%br-lan.10]:53",
            named("[fe80::53]:53", "br-lan.10"),
        ),
        // Any IPv6 address may have a zone; link-local ones must.
        ("[2001:db8::1%eth0]:53", named("[2001:db8::1]:53", "eth0")),
        // Forwarding to ourselves on another port is no loop.
        ("127.0.0.53:5353", sa("127.0.0.53:5353")),
    ] {
        let text = format!("[dns]\nupstreams = [{input:?}]\n");
        let config = Config::parse(&text).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(config.dns.upstreams, [expected], "{input}");
    }
}

#[test]
fn zoned_upstreams_show_their_zone() {
    let shown = |s: &str| match Config::parse(&format!("[dns]\nupstreams = [{s:?}]\n"))
        .unwrap()
        .dns
        .upstreams[0]
    {
        Upstream::Addr(ref server) => server.to_string(),
        Upstream::System => unreachable!(),
    };
    assert_eq!(shown("fe80::1%eth0"), "[fe80::1%eth0]:53");
    assert_eq!(shown("[fe80::1%wlan0]:5353"), "[fe80::1%wlan0]:5353");
    assert_eq!(shown("fe80::1%2"), "[fe80::1%2]:53");
    assert_eq!(shown("2001:db8::53"), "[2001:db8::53]:53");
    assert_eq!(shown("192.0.2.1"), "192.0.2.1:53");
}

#[test]
fn a_zone_by_name_is_sent_with_the_index_given() {
    let server = Nameserver::on_interface("[fe80::1%7]:53".parse().unwrap(), "eth0".to_owned());
    assert_eq!(server.interface(), Some("eth0"));
    // The index written with it is not kept: only the name is.
    assert_eq!(server.addr(), "[fe80::1]:53".parse::<SocketAddr>().unwrap());
    assert_eq!(
        server.with_index(3),
        "[fe80::1%3]:53".parse::<SocketAddr>().unwrap()
    );
    // A zone by index is what it is.
    let numeric = Nameserver::from("[fe80::1%2]:53".parse::<SocketAddr>().unwrap());
    assert_eq!(numeric.with_index(3), numeric.addr());
}

#[test]
fn loop_checks_follow_the_listen_family() {
    // `0.0.0.0` does not receive on `::1`, so this is another resolver.
    let text = "[dns]\nlisten = [\"0.0.0.0:53\"]\nupstreams = [\"[::1]:53\"]\n";
    assert!(Config::parse(text).is_ok());
    // IPv6 listeners are bound IPV6_V6ONLY: `[::]` does not receive on
    // 127.0.0.1 either.
    let text = "[dns]\nlisten = [\"[::]:53\"]\nupstreams = [\"127.0.0.1:53\"]\n";
    assert!(Config::parse(text).is_ok());
}

#[test]
fn own_addresses_are_not_upstreams() {
    let listen: Vec<SocketAddr> = vec![
        "127.0.0.53:53".parse().unwrap(),
        "[::]:5353".parse().unwrap(),
    ];
    let is_own = |up: &str| is_own(up.parse().unwrap(), &listen);
    assert!(is_own("127.0.0.53:53"));
    assert!(is_own("[::1]:5353"));
    assert!(!is_own("127.0.0.1:53"));
    assert!(!is_own("[2001:db8::1]:5353"));
}

#[test]
fn link_local_loops_need_the_same_link() {
    let listen = "[dns]\nlisten = [\"[fe80::1%2]:53\"]\n";
    assert!(Config::parse(&format!("{listen}upstreams = [\"fe80::1%2\"]\n")).is_err());
    // The same address on another link is another host.
    assert!(Config::parse(&format!("{listen}upstreams = [\"fe80::1%3\"]\n")).is_ok());
    // A zone by name is checked when the pool is built (it asks the OS for
    // the index; see dns::upstream), not by the validation.
    assert!(Config::parse(&format!("{listen}upstreams = [\"fe80::1%lo\"]\n")).is_ok());
}

/// Each case: the text and the whole `LINE:COL: message` it must give.
fn assert_errors(cases: &[(&str, &str)]) {
    for (text, expected) in cases {
        assert_eq!(error(text).to_string(), *expected, "{text:?}");
    }
}

#[test]
#[rustfmt::skip] // one line per case keeps the table readable
fn toml_errors_keep_position_and_first_line() {
    assert_errors(&[
        ("foo = 1\n", "1:1: unknown field `foo`, expected one of `dns`, `http`, `probe`, `policy`, `dns64`"),
        ("[dns]\nlisten = [\"127.0.0.1:53\"]\nbogus = 3\n",
         "3:1: unknown field `bogus`, expected one of `listen`, `upstreams`, `resolv_conf`, \
          `timeout_ms`, `cache_size`, `allow`, `udp_max_size`, `max_inflight`, `tcp_max_connections`, `workers`, `serve_stale_s`, `failure_cache_s`"),
        ("[policy]\n\n  colour = 1\n", "3:3: unknown field `colour`, expected one of `filter`, `break_dnssec`, `table`, `first_family_count`, `rtt_margin_ms`"),
        ("[http]\nallowed = []\n", "2:1: unknown field `allowed`, expected `listen` or `allow`"),
        ("[http]\nallow = \"127.0.0.1\"\n", "2:9: invalid type: string \"127.0.0.1\", expected a sequence"),
        ("[dns]\ntimeout_ms = \"fast\"\n", "2:14: invalid type: string \"fast\", expected i64"),
        ("[dns]\nlisten = \"127.0.0.1:53\"\n", "2:10: invalid type: string \"127.0.0.1:53\", expected a sequence"),
        ("[dns]\nlisten = [53]\n", "2:11: invalid type: integer `53`, expected a string"),
        ("[probe]\ndestinations = \"yes\"\n", "2:16: invalid type: string \"yes\", expected a boolean"),
        ("dns = 5\n", "1:7: invalid type: integer `5`, expected a [dns] table"),
        ("[dns\n", "1:5: unclosed table, expected `]`"),
    ]);
}

#[test]
#[rustfmt::skip] // one line per case keeps the table readable
fn validation_errors_name_key_input_and_position() {
    const LOOP: &str = "is this daemon's own listen address (forwarding loop)";
    const ZONE: &str = "only a numeric zone (interface index, e.g. %2) is accepted; see `ip link` for the index";
    const UPSTREAM: &str = r#"is not "system", IP, IP:PORT or [IPv6]:PORT"#;
    const NO_ZONE: &str = "is link-local and needs a zone (its interface), e.g. fe80::1%eth0 or fe80::1%2";
    const BAD_ZONE: &str = "not an interface name (at most 15 characters, no `/`, `:`, `*` or blanks) or index";
    const STUN: &str = "is not HOST:PORT, IP:PORT or [IPv6]:PORT";
    assert_errors(&[
        ("[dns]\nlisten = [\"127.0.0.1\"]\n", r#"2:11: dns.listen: "127.0.0.1" is not IP:PORT"#),
        ("[dns]\nlisten = [\"::1:53\"]\n", r#"2:11: dns.listen: "::1:53" is not IP:PORT (write IPv6 as [IPv6]:PORT)"#),
        ("[dns]\nlisten = []\n", "2:10: dns.listen: must not be empty"),
        ("[dns]\nlisten = [\"127.0.0.1:53\", \"127.0.0.1:53\"]\n", r#"2:27: dns.listen: "127.0.0.1:53" repeats an earlier entry"#),
        ("[http]\nlisten = [\"localhost:80\"]\n", r#"2:11: http.listen: "localhost:80" is not IP:PORT"#),
        ("[dns]\nupstreams = []\n", "2:13: dns.upstreams: must not be empty"),
        ("[dns]\nupstreams = [\"dns.google\"]\n", &format!(r#"2:14: dns.upstreams: "dns.google" {UPSTREAM}"#)),
        // A v6 literal without a port takes no brackets.
        ("[dns]\nupstreams = [\"[2001:db8::1]\"]\n", &format!(r#"2:14: dns.upstreams: "[2001:db8::1]" {UPSTREAM}"#)),
        ("[dns]\nupstreams = [\"192.0.2.1:0\"]\n", r#"2:14: dns.upstreams: "192.0.2.1:0" has port 0"#),
        // Listeners are bound by index; upstreams take names too.
        ("[dns]\nlisten = [\"[fe80::1%eth0]:53\"]\n", &format!(r#"2:11: dns.listen: "[fe80::1%eth0]:53" has zone "eth0": {ZONE}"#)),
        ("[dns]\nupstreams = [\"fe80::1\"]\n", &format!(r#"2:14: dns.upstreams: "fe80::1" {NO_ZONE}"#)),
        ("[dns]\nupstreams = [\"system\", \"[fe80::1]:53\"]\n", &format!(r#"2:24: dns.upstreams: "[fe80::1]:53" {NO_ZONE}"#)),
        // Zone 0 is no zone.
        ("[dns]\nupstreams = [\"fe80::1%0\"]\n", &format!(r#"2:14: dns.upstreams: "fe80::1%0" {NO_ZONE}"#)),
        ("[dns]\nupstreams = [\"fe80::1%\"]\n", &format!(r#"2:14: dns.upstreams: "fe80::1%" has zone "": {BAD_ZONE}"#)),
        ("[dns]\nupstreams = [\"fe80::1%eth/0\"]\n", &format!(r#"2:14: dns.upstreams: "fe80::1%eth/0" has zone "eth/0": {BAD_ZONE}"#)),
        ("[dns]\nupstreams = [\"fe80::1%eth*\"]\n", &format!(r#"2:14: dns.upstreams: "fe80::1%eth*" has zone "eth*": {BAD_ZONE}"#)),
        ("[dns]\nupstreams = [\"fe80::1%eth 0\"]\n", &format!(r#"2:14: dns.upstreams: "fe80::1%eth 0" has zone "eth 0": {BAD_ZONE}"#)),
        ("[dns]\nupstreams = [\"fe80::1%a:b\"]\n", &format!(r#"2:14: dns.upstreams: "fe80::1%a:b" has zone "a:b": {BAD_ZONE}"#)),
        // Linux names have at most 15 bytes (IFNAMSIZ 16 with the NUL).
        ("[dns]\nupstreams = [\"fe80::1%sixteen-chars-ab\"]\n", &format!(r#"2:14: dns.upstreams: "fe80::1%sixteen-chars-ab" has zone "sixteen-chars-ab": {BAD_ZONE}"#)),
        ("[dns]\nupstreams = [\"[fe80::1%wlan0]:99999\"]\n", &format!(r#"2:14: dns.upstreams: "[fe80::1%wlan0]:99999" {UPSTREAM}"#)),
        ("[dns]\nupstreams = [\"[fe80::1%wlan0]:0\"]\n", r#"2:14: dns.upstreams: "[fe80::1%wlan0]:0" has port 0"#),
        ("[dns]\nupstreams = [\"fe80::1%4294967296\"]\n", r#"2:14: dns.upstreams: "fe80::1%4294967296" has zone "4294967296": too large for an interface index"#),
        // Brackets only with a port, zone or not.
        ("[dns]\nupstreams = [\"[fe80::1%eth0]\"]\n", &format!(r#"2:14: dns.upstreams: "[fe80::1%eth0]" {UPSTREAM}"#)),
        ("[dns]\nupstreams = [\"192.0.2.1%eth0\"]\n", &format!(r#"2:14: dns.upstreams: "192.0.2.1%eth0" {UPSTREAM}"#)),
        // Against the default listen address 127.0.0.53:53.
        ("[dns]\nupstreams = [\"127.0.0.53\"]\n", &format!("2:14: dns.upstreams: upstream 127.0.0.53:53 {LOOP}")),
        ("[dns]\nlisten = [\"0.0.0.0:5353\"]\nupstreams = [\"system\",\n  \"127.0.0.1:5353\"]\n", &format!("4:3: dns.upstreams: upstream 127.0.0.1:5353 {LOOP}")),
        ("[dns]\nlisten = [\"[::]:53\"]\nupstreams = [\"::1\"]\n", &format!("3:14: dns.upstreams: upstream [::1]:53 {LOOP}")),
        ("[dns]\nresolv_conf = \"\"\n", "2:15: dns.resolv_conf: must not be empty"),
        ("[dns]\ntimeout_ms = 49\n", "2:14: dns.timeout_ms: 49 is outside 50..=30000"),
        ("[dns]\ntimeout_ms = 30001\n", "2:14: dns.timeout_ms: 30001 is outside 50..=30000"),
        ("[dns]\ntimeout_ms = -1\n", "2:14: dns.timeout_ms: -1 is outside 50..=30000"),
        ("[dns]\ncache_size = 10000001\n", "2:14: dns.cache_size: 10000001 is outside 0..=10000000"),
        ("[dns]\nudp_max_size = 511\n", "2:16: dns.udp_max_size: 511 is outside 512..=4096"),
        ("[dns]\nmax_inflight = 0\n", "2:16: dns.max_inflight: 0 is outside 1..=65535"),
        ("[dns]\nserve_stale_s = -1\n", "2:17: dns.serve_stale_s: -1 is outside 0..=604800"),
        ("[dns]\nfailure_cache_s = 301\n", "2:19: dns.failure_cache_s: 301 is outside 0..=300"),
        ("[dns]\ntcp_max_connections = 65536\n", "2:23: dns.tcp_max_connections: 65536 is outside 1..=65535"),
        ("[dns]\nallow = [\"10.0.0.0/33\"]\n", r#"2:10: dns.allow: "10.0.0.0/33" is not a CIDR (e.g. 192.0.2.0/24) or an IP"#),
        ("[http]\nallow = [\"10.0.0.0/33\"]\n", r#"2:10: http.allow: "10.0.0.0/33" is not a CIDR (e.g. 192.0.2.0/24) or an IP"#),
        ("[http]\nallow = [\"192.168.1.0/24\",\n  \"lan\"]\n", r#"3:3: http.allow: "lan" is not a CIDR (e.g. 192.0.2.0/24) or an IP"#),
        ("[http]\nallow = [\"::1/129\"]\n", r#"2:10: http.allow: "::1/129" is not a CIDR (e.g. 192.0.2.0/24) or an IP"#),
        ("[http]\nallow = [\"fe80::1%2\"]\n", r#"2:10: http.allow: "fe80::1%2" is not a CIDR (e.g. 192.0.2.0/24) or an IP"#),
        // The same network twice, once with host bits: they normalise alike.
        ("[http]\nallow = [\"10.0.0.0/8\", \"10.1.2.3/8\"]\n", r#"2:24: http.allow: "10.1.2.3/8" repeats an earlier entry"#),
        ("[probe]\ninterval_ms = 999\n", "2:15: probe.interval_ms: 999 is outside 1000..=3600000"),
        ("[probe]\ntimeout_ms = 99\n", "2:14: probe.timeout_ms: 99 is outside 100..=60000"),
        // The default timeout (1000) against a written interval: point at the interval.
        ("[probe]\ninterval_ms = 1000\n", "2:15: probe.timeout_ms (1000) must be less than probe.interval_ms (1000)"),
        ("[probe]\ninterval_ms = 5000\ntimeout_ms = 6000\n", "3:14: probe.timeout_ms (6000) must be less than probe.interval_ms (5000)"),
        ("[probe]\ntargets = [\"192.0.2.1:0\"]\n", r#"2:12: probe.targets: "192.0.2.1:0" has port 0"#),
        ("[probe]\nstun = [\"stun.example.com\"]\n", &format!(r#"2:9: probe.stun: "stun.example.com" {STUN}"#)),
        ("[probe]\nstun = [\"2001:db8::1:3478\"]\n", &format!(r#"2:9: probe.stun: "2001:db8::1:3478" {STUN} (write IPv6 as [IPv6]:PORT)"#)),
        ("[probe]\nstun = [\"-x-.example:1\"]\n", r#"2:9: probe.stun: "-x-.example:1" has an invalid host name "-x-.example""#),
        ("[probe]\nstun = [\"1.2.3.256:1\"]\n", r#"2:9: probe.stun: "1.2.3.256:1" has an invalid host name "1.2.3.256""#),
        ("[probe]\nstun = [\"stun.example:99999\"]\n", r#"2:9: probe.stun: "stun.example:99999" has an invalid port "99999""#),
        ("[probe]\ninterfaces = [\"eth0/1\"]\n", r#"2:15: probe.interfaces: "eth0/1" is not an interface name (at most 15 characters, `*` only at the end)"#),
        ("[probe]\nexclude_interfaces = [\"a*b\"]\n", r#"2:23: probe.exclude_interfaces: "a*b" is not an interface name (at most 15 characters, `*` only at the end)"#),
        ("[probe]\ninterfaces = [\"\"]\n", r#"2:15: probe.interfaces: "" is not an interface name (at most 15 characters, `*` only at the end)"#),
        ("[probe]\ninterfaces = [\"sixteen-chars-xx\"]\n", r#"2:15: probe.interfaces: "sixteen-chars-xx" is not an interface name (at most 15 characters, `*` only at the end)"#),
        ("[policy]\nfilter = \"on\"\n", r#"2:10: policy.filter: "on" is not "off" or "auto""#),
        ("[policy]\ntable = \"rfc3484\"\n", r#"2:9: policy.table: "rfc3484" is not "rfc6724" or "update""#),
        ("[policy]\nfirst_family_count = 0\n", "2:22: policy.first_family_count: 0 is outside 1..=16"),
        ("[policy]\nrtt_margin_ms = -1\n", "2:17: policy.rtt_margin_ms: -1 is outside 0..=60000"),
        ("[policy]\nrtt_margin_ms = 60001\n", "2:17: policy.rtt_margin_ms: 60001 is outside 0..=60000"),
        ("[policy]\nrtt_margin_ms = 2.5\n", "2:17: invalid type: floating point `2.5`, expected i64"),
        ("[dns64]\nsynthesize = \"yes\"\n", r#"2:14: dns64.synthesize: "yes" is not "auto", "on" or "off""#),
        ("[dns64]\nprefixes = [\"64:ff9b::/95\"]\n", r#"2:13: dns64.prefixes: "64:ff9b::/95" has a length RFC 6052 does not allow (32, 40, 48, 56, 64 or 96)"#),
        ("[dns64]\nprefixes = [\"2001:db8:0:0:100::/96\"]\n", r#"2:13: dns64.prefixes: "2001:db8:0:0:100::/96" sets bits 64-71, which RFC 6052 §2.2 reserves (must be zero)"#),
        ("[dns64]\nprefixes = [\"192.0.2.0/24\"]\n", r#"2:13: dns64.prefixes: "192.0.2.0/24" is not an IPv6 prefix (e.g. 64:ff9b::/96)"#),
        ("[dns64]\nprefixes = [\"64:ff9b::/96\", \"64:ff9b::1/96\"]\n", r#"2:29: dns64.prefixes: "64:ff9b::1/96" repeats an earlier entry"#),
    ]);
}

#[test]
fn allows_reads_mapped_peers_as_ipv4() {
    let nets: Vec<IpNet> = ["192.168.1.0/24", "2001:db8::/32"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    for inside in ["192.168.1.1", "::ffff:192.168.1.200", "2001:db8::5"] {
        assert!(allows(&nets, ip(inside)), "{inside}");
    }
    for outside in [
        "192.168.2.1",
        "::ffff:192.168.2.1",
        "2001:db9::1",
        // The IPv4-compatible form (deprecated) is not mapped.
        "::192.168.1.1",
        "127.0.0.1",
    ] {
        assert!(!allows(&nets, ip(outside)), "{outside}");
    }
    assert!(!allows(&[], ip("127.0.0.1")), "empty: nobody");
    let loopback = Config::default().http.allow;
    assert!(allows(&loopback, ip("127.0.0.2")));
    assert!(allows(&loopback, ip("::ffff:127.0.0.1")));
    assert!(allows(&loopback, ip("::1")));
    assert!(!allows(&loopback, ip("::2")));
}

#[test]
fn columns_count_characters() {
    let e = error("# ünïcödé\n[policy] # ü\nfilter = \"Ön\"\n");
    assert_eq!(
        e.position,
        Some(Position {
            line: 3,
            column: 10
        })
    );
}

#[test]
fn display_formats() {
    let at = Some(Position { line: 3, column: 7 });
    let file = Some(PathBuf::from("/etc/getapr/getapr.toml"));
    let msg = "dns.cache_size: -1 is outside 0..=10000000".to_owned();
    let e = |path: &Option<PathBuf>, position| Error {
        path: path.clone(),
        position,
        message: msg.clone(),
    };
    assert_eq!(
        e(&file, at).to_string(),
        format!("/etc/getapr/getapr.toml:3:7: {msg}")
    );
    assert_eq!(e(&None, at).to_string(), format!("3:7: {msg}"));
    assert_eq!(
        e(&file, None).to_string(),
        format!("/etc/getapr/getapr.toml: {msg}")
    );
    assert_eq!(e(&None, None).to_string(), msg);
    // toml's own message is reduced to one line.
    assert!(!error("a = [\n").to_string().contains('\n'));
}

#[test]
fn load_and_check_name_the_file() {
    let missing = temp_file("missing", None);
    let e = Config::load(&missing).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: cannot read: No such file or directory",
            missing.display()
        )
    );
    assert_eq!(check(&missing), Err(e));

    let bad = temp_file("bad", Some("[dns]\ncache_size = -1\n"));
    let e = check(&bad).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2:14: dns.cache_size: -1 is outside 0..=10000000",
            bad.display()
        )
    );

    let good = temp_file("good", Some("[policy]\nfilter = \"off\"\n"));
    assert_eq!(check(&good), Ok(()));
    assert_eq!(Config::load(&good).unwrap().policy.filter, Filter::Off);
    for path in [bad, good] {
        std::fs::remove_file(path).unwrap();
    }
}

#[test]
fn discover_prefers_explicit_then_default_path_then_embedded() {
    let explicit = temp_file("explicit", Some("[dns]\ncache_size = 1\n"));
    let default = temp_file("default", None);

    // A named file must exist, even when the default path does not.
    let missing = temp_file("explicit-missing", None);
    let e = discover_from(Some(&missing), &default).unwrap_err();
    assert_eq!(e.path.as_deref(), Some(missing.as_path()));

    assert_eq!(
        discover_from(None, &default).unwrap(),
        (Config::default(), Source::Embedded)
    );

    std::fs::write(&default, "[dns]\ncache_size = 2\n").unwrap();
    let (config, source) = discover_from(None, &default).unwrap();
    assert_eq!(
        (config.dns.cache_size, source),
        (2, Source::File(default.clone()))
    );

    let (config, source) = discover_from(Some(&explicit), &default).unwrap();
    assert_eq!(
        (config.dns.cache_size, source),
        (1, Source::File(explicit.clone()))
    );

    // An invalid default file is an error, not a reason to fall back.
    std::fs::write(&default, "[dns]\ncache_size = -2\n").unwrap();
    let e = discover_from(None, &default).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2:14: dns.cache_size: -2 is outside 0..=10000000",
            default.display()
        )
    );

    for path in [explicit, default] {
        std::fs::remove_file(path).unwrap();
    }
}

#[test]
fn dns64_keys_are_read() {
    let c = Config::parse(
        "[dns64]\nsynthesize = \"on\"\nprefixes = [\"2001:db8:64::5/96\", \"2001:db8::/32\"]\n",
    );
    let c = c.unwrap();
    assert_eq!(c.dns64.synthesize, Synthesize::On);
    let want: Vec<ipnet::Ipv6Net> = vec![
        "2001:db8:64::/96".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ];
    assert_eq!(c.dns64.prefixes, want);
    assert_eq!(Config::default().dns64.synthesize, Synthesize::Auto);
}
