//! Unit tests of the upstreams: the retransmission timeout, the
//! resolv.conf and our own addresses, and the no-EDNS retry's OPT removal.

use super::udp::{INITIAL_RTO, MIN_RTO};
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

#[test]
fn resolv_conf_lines() {
    let text = "# comment\nnameserver 192.0.2.1\nnameserver   2001:db8::53 \n\
                nameserver fe80::1%eth0\nsearch example\nnameserver bogus\noptions ndots:2\n";
    assert_eq!(
        resolv_conf_nameservers(text),
        vec![
            "192.0.2.1:53".parse::<SocketAddr>().unwrap(),
            "[2001:db8::53]:53".parse().unwrap()
        ]
    );
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
        vec![
            "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
            "192.0.2.9:53".parse().unwrap()
        ]
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
            !kept.contains(&SocketAddr::new(ip, 53)),
            own,
            "resolv.conf: {case}"
        );
    }
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
