//! The `getapr` binary as a user runs it: exit codes, error messages,
//! SIGHUP reload (all or nothing) and SIGTERM drain. Upstreams are tiny
//! responders on 127.0.0.1 in this process (`common::bin`).

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use common::bin::{
    BIN, ask, config, free_port, responder, serve, signal, stderr_of, tempdir, wait_answer,
    wait_exit,
};

#[test]
fn check_config_reports_line_and_column() {
    let dir = tempdir("check");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[dns]\ncache_size = 10\n  bogus = 1\n").unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("{}:3:3: unknown field `bogus`", bad.display())),
        "{err}"
    );
    for file in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("config")).unwrap() {
        let out = Command::new(BIN)
            .arg("check-config")
            .arg(file.unwrap().path())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
        assert!(out.status.success());
    }
}

#[test]
fn serve_exits_2_on_a_bad_config_and_1_on_a_port_in_use() {
    let dir = tempdir("exits");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[dns]\ntimeout_ms = \"soon\"\n").unwrap();
    let mut child = serve(&bad);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(5)).code(),
        Some(2)
    );
    assert!(stderr_of(&mut child).contains("bad.toml:2:14"));

    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (up, _) = responder([192, 0, 2, 1], Duration::ZERO);
    let mut child = serve(&config(&dir, "busy.toml", port, up));
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(5)).code(),
        Some(1)
    );
    let err = stderr_of(&mut child);
    assert!(
        err.contains(&format!("listen 127.0.0.1:{port}: Address already in use")),
        "{err}"
    );
}

#[test]
fn sighup_applies_a_valid_config_and_keeps_the_old_on_error() {
    let dir = tempdir("hup");
    let port = free_port();
    let (first, _) = responder([192, 0, 2, 1], Duration::ZERO);
    let (second, _) = responder([192, 0, 2, 2], Duration::ZERO);
    let path = config(&dir, "getapr.toml", port, first);
    let mut child = serve(&path);
    assert_eq!(wait_answer(port, "a.test"), [192, 0, 2, 1]);

    std::fs::write(&path, "[dns]\nlisten = [\"127.0.0.1:1\"]\nwhat = 1\n").unwrap();
    signal(&child, "-HUP");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        ask(port, "b.test"),
        Some([192, 0, 2, 1]),
        "the old config still serves"
    );

    config(&dir, "getapr.toml", port, second);
    signal(&child, "-HUP");
    let start = Instant::now();
    // The upstream changed, so the cache was emptied: even a cached name
    // now comes from the new upstream.
    while ask(port, "a.test") != Some([192, 0, 2, 2]) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "reload never took effect"
        );
        thread::sleep(Duration::from_millis(50));
    }
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(3)).success());
    let log = stderr_of(&mut child);
    assert!(
        log.contains("reload failed, keeping the running configuration"),
        "{log}"
    );
    assert!(log.contains("unknown field `what`"), "{log}");
}

#[test]
fn sigterm_drains_queries_in_flight() {
    let dir = tempdir("term");
    let port = free_port();
    let (slow, count) = responder([192, 0, 2, 9], Duration::from_millis(700));
    let mut child = serve(&config(&dir, "getapr.toml", port, slow));
    assert_eq!(wait_answer(port, "warm.test"), [192, 0, 2, 9]);
    let before = count.load(Ordering::SeqCst);
    let asker = thread::spawn(move || ask(port, "slow.test"));
    while count.load(Ordering::SeqCst) == before {
        thread::sleep(Duration::from_millis(10));
    }
    let sent = Instant::now();
    signal(&child, "-TERM");
    assert_eq!(
        asker.join().unwrap(),
        Some([192, 0, 2, 9]),
        "the query in flight was answered"
    );
    let status = wait_exit(&mut child, Duration::from_secs(3));
    assert!(status.success(), "{status:?}");
    assert!(sent.elapsed() < Duration::from_millis(2500));
}

/// `dns.workers = 2`: two runtime threads and two UDP sockets on the listen
/// port (SO_REUSEPORT), and queries from many source ports (which the
/// kernel spreads over both sockets) all answered.
#[test]
fn two_workers_share_the_listen_port() {
    let dir = tempdir("workers");
    let (up, _) = responder([192, 0, 2, 9], Duration::ZERO);
    let port = free_port();
    let path = config(&dir, "getapr.toml", port, up);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("[dns]\n", "[dns]\nworkers = 2\n")).unwrap();
    let mut child = serve(&path);
    assert_eq!(wait_answer(port, "w0.example"), [192, 0, 2, 9]);
    for i in 1..40 {
        assert_eq!(ask(port, &format!("w{i}.example")), Some([192, 0, 2, 9]));
    }
    let hex = format!(":{port:04X} ");
    let udp = std::fs::read_to_string("/proc/net/udp").unwrap();
    let sockets = udp
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(hex.trim()))
        })
        .count();
    let threads = std::fs::read_dir(format!("/proc/{}/task", child.id()))
        .unwrap()
        .count();
    signal(&child, "-TERM");
    let status = wait_exit(&mut child, Duration::from_secs(5));
    assert_eq!(sockets, 2, "UDP sockets on port {port}:\n{udp}");
    assert!(threads >= 3, "main thread + 2 workers, saw {threads}");
    assert!(status.success(), "{status:?}");
}
