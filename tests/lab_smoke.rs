//! The network lab itself (`common::lab`): what the probe, rewrite and API
//! lab tests rely on. Needs root; skipped loudly otherwise.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use common::lab::{
    self, Connect, Family, HOST_ULA, HOST4, HOST6, HOST6_2, Lab, Ns, ROUTER_WAN4, STUN_PORT, STUN4,
    STUN6, TARGET4, TARGET6,
};

/// How long a blackholed connect or STUN request is waited for.
const BLACKHOLE: Duration = Duration::from_secs(1);
/// How long something that works may take.
const WORKS: Duration = Duration::from_secs(3);

fn target4(port: u16) -> SocketAddr {
    SocketAddr::new(TARGET4.into(), port)
}

fn target6(port: u16) -> SocketAddr {
    SocketAddr::new(TARGET6.into(), port)
}

fn stun4() -> SocketAddr {
    SocketAddr::new(STUN4.into(), STUN_PORT)
}

fn stun6() -> SocketAddr {
    SocketAddr::new(STUN6.into(), STUN_PORT)
}

/// Connects from the host and returns what inet logged for it: the peer
/// address inet saw, as printed by services.py.
fn connect_seen_by_inet(lab: &Lab, dst: SocketAddr, src: Option<IpAddr>) -> String {
    assert_eq!(
        lab.tcp_connect(Ns::Host, dst, src, WORKS),
        Connect::Connected,
        "connect to {dst} from {src:?}"
    );
    // What inet's socket is bound to: through the NAT64, the IPv4 address.
    let local = match dst {
        SocketAddr::V6(v6) if v6.ip().segments()[..6] == [0x2001, 0xdb8, 0x64, 0, 0, 0] => {
            let v4 = std::net::Ipv4Addr::from(v6.ip().to_bits() as u32);
            format!("{v4}:{}", v6.port())
        }
        SocketAddr::V4(_) => dst.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    };
    let line = lab
        .wait_service_line(&format!("tcp {local} "), WORKS)
        .unwrap_or_else(|| panic!("inet logged no connection to {local}"));
    line.rsplit(' ').next().expect("a peer").to_owned()
}

fn timed_connect(lab: &Lab, dst: SocketAddr, src: Option<IpAddr>) -> (Connect, Duration) {
    let start = Instant::now();
    let result = lab.tcp_connect(Ns::Host, dst, src, BLACKHOLE);
    (result, start.elapsed())
}

#[test]
fn dual_stack_host_behind_nat44() {
    if !lab::root_or_skip("lab_smoke::dual_stack_host_behind_nat44") {
        return;
    }
    let lab = Lab::new();

    // IPv4 is masqueraded: inet sees the router's WAN address.
    let peer = connect_seen_by_inet(&lab, target4(443), None);
    assert!(peer.starts_with("198.51.100.2:"), "inet saw {peer}");
    assert_eq!(
        lab.tcp_connect(Ns::Host, target4(80), None, WORKS),
        Connect::Connected
    );
    let mapped = lab
        .stun(Ns::Host, stun4(), None, WORKS)
        .expect("STUN over IPv4");
    assert_eq!(mapped.ip(), IpAddr::from(ROUTER_WAN4));

    // IPv6 is routed: inet sees the host's own address (no NAT66).
    let peer = connect_seen_by_inet(&lab, target6(443), None);
    assert!(peer.starts_with("[2001:db8:1::2]:"), "inet saw {peer}");
    let mapped = lab
        .stun(Ns::Host, stun6(), None, WORKS)
        .expect("STUN over IPv6");
    assert_eq!(mapped.ip(), IpAddr::from(HOST6));

    // A closed port answers with an RST through the lab: reachable.
    assert_eq!(
        lab.tcp_connect(Ns::Host, target4(22), None, WORKS),
        Connect::Refused
    );
    assert_eq!(
        lab.tcp_connect(Ns::Host, target6(22), None, WORKS),
        Connect::Refused
    );

    // The IPv6 default gateway is the router's link-local, as in real
    // networks; the host's addresses are usable (no DAD).
    let routes = lab.run(Ns::Host, &["ip", "-6", "route", "show", "default"]);
    let lla = lab.router_link_local().to_string();
    assert!(
        lla.starts_with("fe80:") && routes.contains(&format!("via {lla} dev eth0")),
        "{routes}"
    );
    let addrs = lab.run(Ns::Host, &["ip", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("{HOST4}/24")), "{addrs}");
    assert!(!addrs.contains("tentative"), "{addrs}");
}

#[test]
fn ipv6_blackhole_on_and_off() {
    if !lab::root_or_skip("lab_smoke::ipv6_blackhole_on_and_off") {
        return;
    }
    let lab = Lab::new();
    assert_eq!(
        timed_connect(&lab, target6(443), None).0,
        Connect::Connected
    );

    lab.drop_ipv6_forwarding(true);
    let (result, took) = timed_connect(&lab, target6(443), None);
    assert_eq!(result, Connect::TimedOut, "a silent drop, not a reject");
    assert!(took >= BLACKHOLE, "gave up after {took:?}");
    assert_eq!(
        lab.stun(Ns::Host, stun6(), None, BLACKHOLE),
        Err("timeout".to_owned())
    );
    assert_eq!(
        timed_connect(&lab, target4(443), None).0,
        Connect::Connected
    );
    let mapped = lab
        .stun(Ns::Host, stun4(), None, WORKS)
        .expect("STUN over IPv4");
    assert_eq!(mapped.ip(), IpAddr::from(ROUTER_WAN4));

    lab.drop_ipv6_forwarding(false);
    assert_eq!(
        timed_connect(&lab, target6(443), None).0,
        Connect::Connected
    );
    assert_eq!(
        timed_connect(&lab, target4(443), None).0,
        Connect::Connected
    );
}

#[test]
fn ipv4_blackhole_on_and_off() {
    if !lab::root_or_skip("lab_smoke::ipv4_blackhole_on_and_off") {
        return;
    }
    let lab = Lab::new();
    lab.drop_ipv4_forwarding(true);
    let (result, took) = timed_connect(&lab, target4(443), None);
    assert_eq!(result, Connect::TimedOut);
    assert!(took >= BLACKHOLE, "gave up after {took:?}");
    assert_eq!(
        timed_connect(&lab, target6(443), None).0,
        Connect::Connected
    );

    lab.drop_ipv4_forwarding(false);
    assert_eq!(
        timed_connect(&lab, target4(443), None).0,
        Connect::Connected
    );
}

#[test]
fn ula_host_behind_nptv6() {
    if !lab::root_or_skip("lab_smoke::ula_host_behind_nptv6") {
        return;
    }
    let lab = Lab::builder().ula_nptv6().build();
    assert_eq!(lab.host6(), HOST_ULA);
    let addrs = lab.run(
        Ns::Host,
        &["ip", "-6", "-o", "addr", "show", "scope", "global"],
    );
    assert!(
        addrs.contains("fd00:1::2/64") && !addrs.contains("2001:db8"),
        "{addrs}"
    );

    // Outbound: the prefix is translated, the interface identifier kept.
    let mapped = lab
        .stun(Ns::Host, stun6(), None, WORKS)
        .expect("STUN over IPv6");
    assert_eq!(mapped.ip(), IpAddr::from(HOST6));
    let peer = connect_seen_by_inet(&lab, target6(443), None);
    assert!(peer.starts_with("[2001:db8:1::2]:"), "inet saw {peer}");

    // Inbound: 2001:db8:1::2 reaches the ULA host (an RST from its closed
    // port proves the packet got there; without the translation it would
    // loop between router and inet).
    let host_global = SocketAddr::new(HOST6.into(), 8080);
    assert_eq!(
        lab.tcp_connect(Ns::Inet, host_global, None, WORKS),
        Connect::Refused
    );
}

#[test]
fn second_uplink_with_source_specific_routes() {
    if !lab::root_or_skip("lab_smoke::second_uplink_with_source_specific_routes") {
        return;
    }
    let lab = Lab::builder().second_uplink().build();
    let routes = lab.run(Ns::Host, &["ip", "-6", "route", "show", "default"]);
    let lla2 = lab.router2_link_local();
    assert!(
        routes.contains(&format!("from 2001:db8:2::/64 via {lla2} dev eth0")),
        "{routes}"
    );

    for src in [HOST6, HOST6_2] {
        let mapped = lab
            .stun(Ns::Host, stun6(), Some(src.into()), WORKS)
            .unwrap_or_else(|error| panic!("STUN from {src}: {error}"));
        assert_eq!(mapped.ip(), IpAddr::from(src));
    }
    assert_eq!(
        timed_connect(&lab, target4(443), None).0,
        Connect::Connected
    );

    // The first uplink fails: only the second prefix still works.
    lab.drop_ipv6_forwarding(true);
    let (result, _) = timed_connect(&lab, target6(443), Some(HOST6.into()));
    assert_eq!(result, Connect::TimedOut, "from {HOST6} via router");
    let peer = connect_seen_by_inet(&lab, target6(443), Some(HOST6_2.into()));
    assert!(peer.starts_with("[2001:db8:2::2]:"), "inet saw {peer}");

    // And the other way round.
    lab.drop_ipv6_forwarding(false);
    lab.drop_forwarding(Ns::Router2, Family::V6, true);
    let (result, _) = timed_connect(&lab, target6(80), Some(HOST6_2.into()));
    assert_eq!(result, Connect::TimedOut, "from {HOST6_2} via router2");
    assert_eq!(
        timed_connect(&lab, target6(80), Some(HOST6.into())).0,
        Connect::Connected
    );
}

/// What a lab leaves behind: its namespaces and `/etc/netns` entries.
fn leftovers(names: &[String]) -> Vec<String> {
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    let mut left: Vec<String> = list
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| names.iter().any(|mine| mine == name))
        .map(str::to_owned)
        .collect();
    for name in names {
        let etc = Path::new("/etc/netns").join(name);
        if etc.exists() {
            left.push(etc.display().to_string());
        }
    }
    left
}

/// True when process `pid` is gone (or a zombie waiting for its reaper).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn torn_down_on_drop_and_on_panic() {
    if !lab::root_or_skip("lab_smoke::torn_down_on_drop_and_on_panic") {
        return;
    }
    let lab = Lab::builder().without_services().build();
    let names = lab.ns_names();
    assert_eq!(names.len(), 3);
    assert!(names.iter().all(|name| name.starts_with("getapr-")));
    lab.write_netns_resolv_conf(Ns::Host, "nameserver 192.0.2.53");
    let resolv = lab.run(Ns::Host, &["cat", "/etc/resolv.conf"]);
    assert_eq!(resolv, "nameserver 192.0.2.53\n");
    // A process the test started itself and forgot about.
    let pid = lab.run(
        Ns::Host,
        &["sh", "-c", "sleep 60 >/dev/null 2>&1 </dev/null & echo $!"],
    );
    let pid = pid.trim().to_owned();
    assert!(!gone(&pid));
    drop(lab);
    assert_eq!(leftovers(&names), Vec::<String>::new());
    let deadline = Instant::now() + WORKS;
    while !gone(&pid) {
        assert!(Instant::now() < deadline, "process {pid} outlived its lab");
        std::thread::sleep(Duration::from_millis(10));
    }

    let names = std::sync::Mutex::new(Vec::new());
    let result = std::panic::catch_unwind(|| {
        let lab = Lab::builder().second_uplink().build();
        lab.write_netns_resolv_conf(Ns::Host, "nameserver 127.0.0.53");
        *names.lock().expect("not poisoned") = lab.ns_names();
        panic!("a test fails with its lab up");
    });
    assert!(result.is_err());
    let names = names.into_inner().expect("not poisoned");
    assert_eq!(names.len(), 5);
    assert_eq!(leftovers(&names), Vec::<String>::new());
}

#[test]
fn ipv6_only_host_behind_nat64() {
    if !lab::root_or_skip("lab_smoke::ipv6_only_host_behind_nat64") {
        return;
    }
    let lab = Lab::builder().without_ipv4().nat64().build();
    assert!(matches!(
        lab.tcp_connect(Ns::Host, target4(443), None, WORKS),
        Connect::Failed(_)
    ));
    let via_nat64 = SocketAddr::new(lab::nat64(TARGET4).into(), 443);
    let peer = connect_seen_by_inet(&lab, via_nat64, None);
    assert!(peer.starts_with("198.51.100.2:"), "inet saw {peer}");
    let stun = SocketAddr::new(lab::nat64(STUN4).into(), STUN_PORT);
    let mapped = lab
        .stun(Ns::Host, stun, None, WORKS)
        .expect("STUN via NAT64");
    assert_eq!(mapped.ip(), IpAddr::from(ROUTER_WAN4));
}
