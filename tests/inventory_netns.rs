//! The inventory against a real kernel, inside throwaway network namespaces
//! (root only).
//!
//! Each test builds a namespace named `getapr-inv-<pid>-<tag>` with
//! `ip -n`, then re-runs this very test binary inside it
//! (`ip netns exec NAME <this binary> --exact <test>`) with
//! `GETAPR_INV_CHILD` set; the child takes snapshots and prints them as
//! `INV ...` lines, which the parent checks. The namespace is deleted by a
//! `Drop` guard on every exit path, panics included; nothing is ever
//! configured in the namespace the tests start in.
//!
//! Without root (or where namespaces cannot be made) the tests print
//! `SKIPPED` and pass, unless `GETAPR_NETNS_REQUIRED=1` (set it in CI) turns
//! a skip into a failure.

use std::collections::BTreeSet;
use std::env;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use getapr::inventory::{Class, Inventory, Snapshot, System, watch};

const CHILD: &str = "GETAPR_INV_CHILD";

// ---------------------------------------------------------------------------
// Test 1: one snapshot of a namespace with every kind of address.

#[test]
fn snapshot_in_a_namespace() {
    if let Ok(mode) = env::var(CHILD) {
        if mode == "snapshot" {
            let snap = System.snapshot().expect("snapshot inside the namespace");
            print_snapshot(&snap);
        }
        return;
    }
    let Some(ns) = Netns::create("snap") else {
        return;
    };

    // Before any interface exists, so that every one inherits it.
    ns.sysctl("net.ipv6.conf.default.disable_ipv6", "0");
    ns.sysctl("net.ipv6.conf.default.accept_dad", "1");
    ns.sysctl("net.ipv6.conf.default.dad_transmits", "1");
    ns.ip("link set lo up");

    // veth0 <-> veth1: a link with carrier. No automatic link-local
    // addresses, so the expected set is exact.
    ns.ip("link add veth0 type veth peer name veth1");
    ns.ip("link set veth0 addrgenmode none");
    ns.ip("link set veth1 addrgenmode none");
    // DAD on veth0 waits 60 s for an answer: an address added with DAD
    // stays tentative for the whole test.
    ns.sysctl("net.ipv6.neigh.veth0.retrans_time_ms", "60000");
    // veth1 does no DAD and makes temporary addresses (RFC 8981) for
    // addresses added with `mngtmpaddr`.
    ns.sysctl("net.ipv6.conf.veth1.accept_dad", "0");
    ns.sysctl("net.ipv6.conf.veth1.use_tempaddr", "2");
    ns.ip("link set veth0 up");
    ns.ip("link set veth1 up");

    // veth4 (up, carrier): every remaining class. veth6: down. veth2 is
    // up but its peer veth3 is down, so it has no carrier. (veth pairs
    // everywhere: the dummy driver is not in every test kernel.)
    for (dev, peer) in [("veth2", "veth3"), ("veth4", "veth5"), ("veth6", "veth7")] {
        ns.ip(&format!("link add {dev} type veth peer name {peer}"));
        ns.ip(&format!("link set {dev} addrgenmode none"));
        ns.ip(&format!("link set {peer} addrgenmode none"));
    }
    ns.ip("link set veth2 up");
    ns.ip("link set veth4 up");
    ns.ip("link set veth5 up");

    ns.ip("addr add 192.0.2.2/24 dev veth0");
    ns.ip("-6 addr add 2001:db8:1::2/64 dev veth0 nodad");
    ns.ip("-6 addr add 2001:db8:1::3/64 dev veth0 nodad preferred_lft 0 valid_lft forever");
    ns.ip("-6 addr add fe80::2/64 dev veth0 nodad");
    ns.ip("-6 addr add 2001:db8:1::4/64 dev veth0"); // tentative
    ns.ip("-6 addr add 2001:db8:1::5/64 dev veth1 nodad");
    ns.ip("-6 addr add 2001:db8:1::5/64 dev veth0"); // DAD fails: veth1 answers
    ns.ip("-6 addr add 2001:db8:2::1/64 dev veth1 mngtmpaddr");
    ns.ip("addr add 10.9.0.1/24 dev veth4");
    ns.ip("addr add 100.64.0.1/10 dev veth4");
    ns.ip("addr add 169.254.1.1/16 dev veth4");
    ns.ip("-6 addr add fd00:1::1/64 dev veth4 nodad");
    ns.ip("addr add 203.0.113.9/24 dev veth6");
    ns.ip("-6 addr add 2001:db8:9::9/64 dev veth6 nodad");
    ns.ip("addr add 198.51.100.2/24 dev veth2");
    ns.ip("-6 addr add 2001:db8:3::2/64 dev veth2 nodad");

    ns.ip("route add default via 192.0.2.1 dev veth0");
    ns.ip("-6 route add default via fe80::1 dev veth0");

    // DAD of veth0's ::5 fails within the first NS (sent ≤ 1 s after the
    // add, RFC 4862 §5.4.2), when veth1's advertisement comes back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has_flag(
        &ns.ip("-6 addr show dev veth0"),
        "2001:db8:1::5/64",
        "dadfailed",
    ) {
        assert!(
            Instant::now() < deadline,
            "DAD of 2001:db8:1::5 on veth0 never failed"
        );
        thread::sleep(Duration::from_millis(100));
    }

    let lines = ns.run_child("snapshot_in_a_namespace", "snapshot");
    let snap = parse(&lines);
    println!("snapshot inside {}:\n{}", ns.name, lines.join("\n"));

    // Still tentative after the snapshot, so it was tentative during it.
    let veth0_v6 = ns.ip("-6 addr show dev veth0");
    assert!(
        has_flag(&veth0_v6, "2001:db8:1::4/64", "tentative")
            && !has_flag(&veth0_v6, "2001:db8:1::4/64", "dadfailed"),
        "{veth0_v6}"
    );
    let veth0 = ns.ifindex("veth0");
    let veth1 = ns.ifindex("veth1");
    let veth4 = ns.ifindex("veth4");

    // The kernel's temporary address on veth1, if it made one.
    let veth1_v6 = ns.ip("-6 addr show dev veth1");
    let temporary: Option<String> = veth1_v6
        .lines()
        .find(|l| l.contains("temporary"))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(|a| a.to_string());

    let mut want: BTreeSet<Row> = [
        ("192.0.2.2/24", "veth0", veth0, 0, "global4", ""),
        ("2001:db8:1::2/64", "veth0", veth0, 0, "gua", ""),
        ("2001:db8:1::3/64", "veth0", veth0, 0, "gua", "deprecated"),
        ("fe80::2/64", "veth0", veth0, veth0, "lla", ""),
        ("2001:db8:1::5/64", "veth1", veth1, 0, "gua", ""),
        ("2001:db8:2::1/64", "veth1", veth1, 0, "gua", ""),
        ("10.9.0.1/24", "veth4", veth4, 0, "rfc1918", ""),
        ("100.64.0.1/10", "veth4", veth4, 0, "cgnat", ""),
        ("169.254.1.1/16", "veth4", veth4, 0, "linklocal4", ""),
        ("fd00:1::1/64", "veth4", veth4, 0, "ula", ""),
    ]
    .into_iter()
    .map(Row::from)
    .collect();
    match &temporary {
        Some(t) => {
            want.insert(Row::from((
                t.as_str(),
                "veth1",
                veth1,
                0,
                "gua",
                "temporary",
            )));
        }
        None => eprintln!("NOTE: the kernel made no temporary address; that flag goes unchecked"),
    }
    assert_eq!(snap.addresses, want, "\nchild said:\n{}", lines.join("\n"));
    assert_eq!(
        snap.gateways4,
        [format!("192.0.2.1 veth0 {veth0} 0")],
        "\nchild said:\n{}",
        lines.join("\n")
    );
    assert_eq!(
        snap.gateways6,
        [format!("fe80::1 veth0 {veth0} {veth0}")],
        "\nchild said:\n{}",
        lines.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Test 2: `watch` sees an address come and go within seconds.

#[test]
fn watch_sees_changes_within_seconds() {
    if let Ok(mode) = env::var(CHILD) {
        if mode == "watch" {
            watch_child();
        }
        return;
    }
    let Some(ns) = Netns::create("watch") else {
        return;
    };
    ns.ip("link set lo up");
    ns.ip("link add veth0 type veth peer name veth1");
    ns.ip("link set veth0 addrgenmode none");
    ns.ip("link set veth1 addrgenmode none");
    ns.ip("link set veth0 up");
    ns.ip("link set veth1 up");
    ns.ip("addr add 192.0.2.2/24 dev veth0");

    let mut child = ns.spawn_child("watch_sees_changes_within_seconds", "watch");
    let lines = child.lines();
    let first = next_change(&lines, Duration::from_secs(10));
    assert_eq!(first, "192.0.2.2/24");

    let period = Duration::from_millis(200);
    let added = Instant::now();
    ns.ip("-6 addr add 2001:db8::7/64 dev veth0 nodad");
    let seen = next_change(&lines, Duration::from_secs(10));
    let took = added.elapsed();
    assert_eq!(seen, "192.0.2.2/24,2001:db8::7/64");
    println!("watch: address added, published after {took:?} (poll every {period:?})");
    assert!(took < period * 10, "took {took:?}");

    let removed = Instant::now();
    ns.ip("addr del 192.0.2.2/24 dev veth0");
    let seen = next_change(&lines, Duration::from_secs(10));
    let took = removed.elapsed();
    assert_eq!(seen, "2001:db8::7/64");
    println!("watch: address removed, published after {took:?}");
    assert!(took < period * 10, "took {took:?}");

    // The link going down takes its addresses with it.
    ns.ip("link set veth0 down");
    assert_eq!(next_change(&lines, Duration::from_secs(10)), "");
}

/// Runs `watch` on the real system every 200 ms and prints each published
/// address list; ends when the parent closes stdin.
fn watch_child() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (tx, mut rx) = tokio::sync::watch::channel(Arc::new(Snapshot::default()));
        tokio::spawn(watch(System, Duration::from_millis(200), tx));
        let (stop_tx, mut stop) = tokio::sync::oneshot::channel::<()>();
        thread::spawn(move || {
            // EOF on stdin: the parent is done (or gone).
            let _ = std::io::stdin().lines().count();
            let _ = stop_tx.send(());
        });
        loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let snap = rx.borrow_and_update().clone();
                    let list: Vec<String> = snap
                        .addresses
                        .iter()
                        .map(|a| format!("{}/{}", a.addr, a.prefix_len))
                        .collect();
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "INV change {}", list.join(","));
                    let _ = out.flush();
                }
                _ = &mut stop => return,
            }
        }
    });
}

fn next_change(lines: &mpsc::Receiver<String>, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no change published within {within:?}: {e}"));
        if let Some(rest) = inv_line(&line).and_then(|l| l.strip_prefix("change")) {
            return rest.trim().to_string();
        }
    }
}

// ---------------------------------------------------------------------------
// The child's report and its parsing.

/// An address as the child prints it: (addr/len, interface, ifindex,
/// scope id, class, flags).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Row(String, String, u32, u32, String, String);

impl From<(&str, &str, u32, u32, &str, &str)> for Row {
    fn from(t: (&str, &str, u32, u32, &str, &str)) -> Row {
        Row(t.0.into(), t.1.into(), t.2, t.3, t.4.into(), t.5.into())
    }
}

struct Parsed {
    addresses: BTreeSet<Row>,
    gateways4: Vec<String>,
    gateways6: Vec<String>,
}

fn print_snapshot(snap: &Snapshot) {
    for a in &snap.addresses {
        let flags = match (a.temporary, a.deprecated) {
            (true, true) => "temporary,deprecated",
            (true, false) => "temporary",
            (false, true) => "deprecated",
            (false, false) => "-",
        };
        println!(
            "INV addr {}/{} {} {} {} {} {}",
            a.addr, a.prefix_len, a.interface, a.ifindex, a.scope_id, a.class, flags
        );
        // The class printed must be the one `classify` gives.
        assert_eq!(a.class, getapr::inventory::classify(a.addr));
        assert_ne!(a.class, Class::Other, "{a}");
    }
    for (tag, gws) in [("gw4", &snap.gateways4), ("gw6", &snap.gateways6)] {
        for g in gws {
            println!(
                "INV {tag} {} {} {} {}",
                g.addr, g.interface, g.ifindex, g.scope_id
            );
        }
    }
}

/// What follows `INV ` in a line of the child's output. The marker need
/// not start the line: the test harness prints `test NAME ... ` first.
fn inv_line(line: &str) -> Option<&str> {
    line.split_once("INV ").map(|(_, rest)| rest)
}

/// Whether `ip addr show` output lists `addr` with `flag`.
fn has_flag(ip_output: &str, addr: &str, flag: &str) -> bool {
    ip_output
        .lines()
        .any(|l| l.contains(addr) && l.split_whitespace().any(|w| w == flag))
}

fn parse(lines: &[String]) -> Parsed {
    let mut p = Parsed {
        addresses: BTreeSet::new(),
        gateways4: Vec::new(),
        gateways6: Vec::new(),
    };
    for line in lines {
        let Some(line) = inv_line(line) else { continue };
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["addr", addr, iface, idx, scope, class, flags] => {
                let flags = if *flags == "-" { "" } else { flags };
                p.addresses.insert(Row(
                    addr.to_string(),
                    iface.to_string(),
                    idx.parse().unwrap(),
                    scope.parse().unwrap(),
                    class.to_string(),
                    flags.to_string(),
                ));
            }
            ["gw4", rest @ ..] => p.gateways4.push(rest.join(" ")),
            ["gw6", rest @ ..] => p.gateways6.push(rest.join(" ")),
            _ => {}
        }
    }
    p
}

// ---------------------------------------------------------------------------
// The namespace guard.

struct Netns {
    name: String,
}

impl Netns {
    /// Creates `getapr-inv-<pid>-<tag>`, or prints why the test is skipped
    /// and returns `None`.
    fn create(tag: &str) -> Option<Netns> {
        let required = env::var("GETAPR_NETNS_REQUIRED").is_ok_and(|v| v == "1");
        let skip = |why: &str| {
            assert!(!required, "GETAPR_NETNS_REQUIRED=1 but: {why}");
            // Straight to the process's stderr: the harness captures
            // `eprintln!` of passing tests, and a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED {tag}: needs root: {why} ***\n"
            );
        };
        if !is_root() {
            skip("not running as root");
            return None;
        }
        let name = format!("getapr-inv-{}-{tag}", std::process::id());
        match Command::new("ip").args(["netns", "add", &name]).output() {
            Ok(out) if out.status.success() => Some(Netns { name }),
            Ok(out) => {
                skip(&format!(
                    "`ip netns add {name}` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
                None
            }
            Err(e) => {
                skip(&format!("cannot run `ip`: {e}"));
                None
            }
        }
    }

    /// `ip -n NAME ARGS`, which must succeed; returns its stdout.
    fn ip(&self, args: &str) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend(args.split_whitespace());
        run("ip", &all)
    }

    fn sysctl(&self, key: &str, value: &str) {
        let kv = format!("{key}={value}");
        run("ip", &["netns", "exec", &self.name, "sysctl", "-qw", &kv]);
    }

    fn ifindex(&self, dev: &str) -> u32 {
        let out = self.ip(&format!("-o link show dev {dev}"));
        out.split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no ifindex for {dev} in {out:?}"))
    }

    fn child_command(&self, test: &str, mode: &str) -> Command {
        let exe = env::current_exe().expect("test binary path");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .arg(exe)
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD, mode);
        cmd
    }

    /// Runs this test binary's `test` inside the namespace; its `INV` lines.
    fn run_child(&self, test: &str, mode: &str) -> Vec<String> {
        let out = self
            .child_command(test, mode)
            .output()
            .expect("run the child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .lines()
            .filter(|l| inv_line(l).is_some())
            .map(String::from)
            .collect()
    }

    /// Starts this test binary's `test` inside the namespace, stdout piped.
    fn spawn_child(&self, test: &str, mode: &str) -> Running {
        let child = self
            .child_command(test, mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the child");
        Running(child)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "could not delete netns {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("could not delete netns {}: {e}", self.name),
        }
    }
}

/// A child process that is killed (by its pid, which `Child` holds) and
/// reaped when dropped, before the namespace it runs in goes.
struct Running(Child);

impl Running {
    /// A channel of the child's stdout lines (read on a thread).
    fn lines(&mut self) -> mpsc::Receiver<String> {
        let out = self.0.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            // Read to EOF even when nobody listens any more, so the child
            // never writes into a closed pipe.
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        rx
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.0.stdin.take()); // EOF: the child ends by itself
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "{cmd} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Effective uid 0, from `/proc/self/status` (no libc call needed).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}
