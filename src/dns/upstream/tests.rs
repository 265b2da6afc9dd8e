//! Unit tests of the upstreams: the retransmission timeout, the
//! resolv.conf and our own addresses, and the no-EDNS retry's OPT removal.

use super::udp::{INITIAL_RTO, MIN_RTO, same_peer};
use super::*;
use crate::config;

#[test]
fn retransmission_timeout_follows_the_measured_rtt() {
    let ms = Duration::from_millis;
    let timeout = ms(2000);
    let mut rtt = Rtt::default();
    assert_eq!(rtt.rto(timeout), INITIAL_RTO);
    assert_eq!(rtt.rto(ms(300)), ms(300), "never past the try's timeout");
    // A first sample of 80 ms: SRTT 80, RTTVAR 40, RTO 240.
    rtt.sample(ms(80));
    assert_eq!(rtt.rto(timeout), ms(240));
    // A steady close upstream: the RTO falls to the floor.
    for _ in 0..50 {
        rtt.sample(ms(1));
    }
    assert_eq!(rtt.rto(timeout), MIN_RTO);
    // A slow one (a recursive upstream resolving cold names) pushes it up.
    for _ in 0..50 {
        rtt.sample(ms(600));
    }
    let slow = rtt.rto(timeout);
    assert!(slow >= ms(600) && slow < timeout, "{slow:?}");
}

fn ns(s: &str) -> config::Nameserver {
    s.parse::<SocketAddr>().unwrap().into()
}

fn named(s: &str, interface: &str) -> config::Nameserver {
    config::Nameserver::on_interface(s.parse().unwrap(), interface.to_owned())
}

#[test]
fn resolv_conf_lines() {
    let text = "# comment\nnameserver 192.0.2.1\nnameserver   2001:db8::53 \n\
                search example\nnameserver bogus\noptions ndots:2\n";
    assert_eq!(
        resolv_conf_nameservers(text),
        vec![ns("192.0.2.1:53"), ns("[2001:db8::53]:53")]
    );
}

/// What NetworkManager and systemd write for a router's RDNSS, `%` and
/// the interface name, and the same by index.
#[test]
fn resolv_conf_zones() {
    let text = "nameserver fe80::1%wlan0\nnameserver fe80::53%3\n\
                nameserver fe80::2%enp0s31f6 # comment\n\
                nameserver fe80::9\nnameserver fe80::9%0\nnameserver fe80::9%\n\
                nameserver fe80::9%a/b\nnameserver fe80::9%sixteen-chars-ab\n\
                nameserver 192.0.2.1%eth0\n\
                nameserver 2001:db8::1%eth1\n";
    assert_eq!(
        resolv_conf_nameservers(text),
        vec![
            named("[fe80::1]:53", "wlan0"),
            ns("[fe80::53%3]:53"),
            named("[fe80::2]:53", "enp0s31f6"),
            named("[2001:db8::1]:53", "eth1"),
        ],
        "link-local without a zone, zone 0, and zones that are no interface \
         name are skipped"
    );
}

/// Whatever the bytes, the parser neither panics nor keeps a link-local
/// address it cannot send to.
#[test]
fn resolv_conf_zones_are_total() {
    let words = [
        "nameserver",
        "fe80::1",
        "%",
        "%%",
        "%eth0",
        "fe80::1%",
        "[fe80::1%eth0]:53",
        "\u{0}",
        "%\u{e9}th0",
        "fe80::1%\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
        " ",
        "\n",
    ];
    for a in words {
        for b in words {
            for c in words {
                let text = format!("{a}{b} {c}\nnameserver {b}{c}\n");
                for server in resolv_conf_nameservers(&text) {
                    if let SocketAddr::V6(v6) = server.addr() {
                        assert!(
                            !v6.ip().is_unicast_link_local()
                                || v6.scope_id() != 0
                                || server.interface().is_some(),
                            "{text:?}"
                        );
                    }
                }
            }
        }
    }
}

/// The `dns` section of a config reading `text` as its resolv.conf, and
/// that file, removed when the guard drops.
fn dns_with_resolv_conf(text: &str, tag: &str) -> (config::Dns, Removed) {
    let path = std::env::temp_dir().join(format!("getapr-resolv-{tag}-{}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let toml = format!(
        "[dns]\nlisten = [\"127.0.0.53:53\"]\nupstreams = [\"system\", \"192.0.2.9\"]\nresolv_conf = {:?}\n",
        path.display().to_string()
    );
    (config::Config::parse(&toml).unwrap().dns, Removed(path))
}

/// Removes its file when dropped.
struct Removed(std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn system_upstreams_skip_ourselves() {
    let (dns, _file) =
        dns_with_resolv_conf("nameserver 127.0.0.53\nnameserver 192.0.2.53\n", "mixed");
    assert_eq!(
        addresses(&dns).unwrap(),
        vec![ns("192.0.2.53:53"), ns("192.0.2.9:53")]
    );
    let (mut only_us, _other) = dns_with_resolv_conf("nameserver 127.0.0.53\n", "self");
    only_us.upstreams.truncate(1);
    let err = addresses(&only_us).unwrap_err();
    assert!(err.contains("no upstream left"), "{err}");
    let mut missing = only_us.clone();
    missing.resolv_conf = "/nonexistent/resolv.conf".into();
    assert!(
        addresses(&missing)
            .unwrap_err()
            .starts_with("/nonexistent/resolv.conf: ")
    );
}

/// Whether an upstream reaches one of our listeners, asked both ways
/// the daemon asks it: an explicit `dns.upstreams` entry (refused by
/// the config as a loop) and a `nameserver` line behind `"system"`
/// (left out of the upstreams). Both must give the same answer.
#[test]
fn config_and_resolv_conf_agree_on_own_addresses() {
    // (listen, upstream on port 53, reaches ourselves)
    let cases = [
        // Listeners are bound IPV6_V6ONLY: `[::]` receives no IPv4.
        ("[::]:53", "127.0.0.1", false),
        ("[::]:53", "::1", true),
        ("0.0.0.0:53", "127.0.0.1", true),
        ("0.0.0.0:53", "127.8.9.10", true),
        ("0.0.0.0:53", "::1", false),
        // An IPv4-mapped address is sent over IPv4.
        ("0.0.0.0:53", "::ffff:127.0.0.1", true),
        ("[::]:53", "::ffff:127.0.0.1", false),
        // Sending to the unspecified address reaches loopback.
        ("127.0.0.1:53", "0.0.0.0", true),
        ("[::1]:53", "::", true),
        ("[::]:53", "0.0.0.0", false),
        ("127.0.0.53:53", "127.0.0.53", true),
        ("127.0.0.53:53", "127.0.0.1", false),
        ("0.0.0.0:5353", "127.0.0.1", false),
    ];
    for (i, (listen, upstream, own)) in cases.into_iter().enumerate() {
        let case = format!("listen {listen}, upstream {upstream}");
        let toml = format!("[dns]\nlisten = [{listen:?}]\nupstreams = [{upstream:?}]\n");
        let refused = config::Config::parse(&toml).is_err_and(|e| e.message.contains("loop"));
        assert_eq!(refused, own, "config: {case}");

        let path = std::env::temp_dir().join(format!("getapr-own-{i}-{}", std::process::id()));
        std::fs::write(&path, format!("nameserver {upstream}\n")).unwrap();
        let toml = format!(
            "[dns]\nlisten = [{listen:?}]\nupstreams = [\"system\", \"192.0.2.9\"]\nresolv_conf = {:?}\n",
            path.display().to_string()
        );
        let dns = config::Config::parse(&toml).unwrap().dns;
        let kept = addresses(&dns).unwrap();
        std::fs::remove_file(&path).unwrap();
        let ip: std::net::IpAddr = upstream.parse().unwrap();
        assert_eq!(
            !kept.contains(&SocketAddr::new(ip, 53).into()),
            own,
            "resolv.conf: {case}"
        );
    }
}

/// A zone by name is our own listen address when its interface has the
/// listener's index now: `lo` has one in every network namespace.
#[test]
fn zones_by_name_are_checked_against_our_own_addresses() {
    let lo = addresses::index_of("lo").expect("every namespace has lo");
    let listen = format!("[fe80::1%{lo}]:53");
    let dns = |upstreams: &str, resolv: &str, tag: &str| {
        let path = std::env::temp_dir().join(format!("getapr-zone-{tag}-{}", std::process::id()));
        std::fs::write(&path, resolv).unwrap();
        let toml = format!(
            "[dns]\nlisten = [{listen:?}]\nupstreams = {upstreams}\nresolv_conf = {:?}\n",
            path.display().to_string()
        );
        (config::Config::parse(&toml).unwrap().dns, Removed(path))
    };
    // Named directly: refused when the pool is built.
    let (direct, _f) = dns("[\"fe80::1%lo\"]", "", "direct");
    let err = addresses(&direct).unwrap_err();
    assert!(
        err.contains("[fe80::1%lo]:53") && err.contains("loop"),
        "{err}"
    );
    // Through resolv.conf: left out, by name and by index alike; another
    // link or another address is kept.
    let text = format!(
        "nameserver fe80::1%lo\nnameserver fe80::1%{lo}\nnameserver fe80::2%lo\n\
         nameserver fe80::1%getapr-none0\n"
    );
    let (system, _g) = dns("[\"system\"]", &text, "system");
    assert_eq!(
        addresses(&system).unwrap(),
        vec![
            named("[fe80::2]:53", "lo"),
            named("[fe80::1]:53", "getapr-none0")
        ]
    );
}

/// An upstream whose interface does not exist fails like an unreachable
/// one, at once, and the next one answers; the metrics show it with its
/// zone.
#[tokio::test]
async fn a_missing_interface_fails_over_at_once() {
    use std::sync::Arc;
    let responder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let at = responder.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = responder.recv_from(&mut buf) {
            buf[2] |= 0x80; // QR: the query itself is the (empty) answer
            let _ = responder.send_to(&buf[..n], from);
        }
    });
    let pool = Pool::new(
        vec![named("[fe80::1]:53", "getapr-none0"), at.into()],
        Duration::from_secs(2),
        8,
    );
    assert_eq!(
        pool.addrs().map(ToString::to_string).collect::<Vec<_>>(),
        ["[fe80::1%getapr-none0]:53".to_owned(), at.to_string()]
    );
    let metrics = crate::metrics::Metrics::new(Arc::new(arc_swap::ArcSwap::from_pointee(
        crate::probe::verdicts::Verdicts::default(),
    )));
    let mut query = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(b"\x07example\x00\x00\x01\x00\x01");
    let started = Instant::now();
    let reply = pool.resolve(&query, &metrics.upstreams).await.unwrap();
    assert_eq!(reply.rcode(), rcode::NOERROR);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let text = metrics.encode();
    let failed = r#"getapr_upstream_failures_total{upstream="[fe80::1%getapr-none0]:53",reason="network"} 1"#;
    assert!(text.contains(failed), "{text}");
}

/// The kernel reports a link-local sender with the index of the interface
/// it came in on, and any other sender without a scope id, whatever zone
/// the upstream was written with.
#[test]
fn replies_come_from_the_upstream_on_its_link() {
    let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert!(same_peer(sa("[fe80::1%3]:53"), sa("[fe80::1%3]:53")));
    assert!(!same_peer(sa("[fe80::1%4]:53"), sa("[fe80::1%3]:53")));
    assert!(!same_peer(sa("[fe80::1%3]:5353"), sa("[fe80::1%3]:53")));
    assert!(!same_peer(sa("[fe80::2%3]:53"), sa("[fe80::1%3]:53")));
    assert!(same_peer(sa("[2001:db8::1]:53"), sa("[2001:db8::1%3]:53")));
    assert!(!same_peer(sa("[2001:db8::2]:53"), sa("[2001:db8::1%3]:53")));
    assert!(same_peer(sa("192.0.2.1:53"), sa("192.0.2.1:53")));
    assert!(!same_peer(sa("192.0.2.1:54"), sa("192.0.2.1:53")));
}

#[test]
fn strip_opt_removes_the_record() {
    let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1];
    q.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0x80, 0, 0, 0]);
    assert!(strip_opt(&mut q));
    assert_eq!(q.len(), 17);
    let parsed = Query::parse(&q).unwrap();
    assert!(parsed.edns().is_none());
    assert!(!strip_opt(&mut q));
}
