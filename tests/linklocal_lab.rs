//! Link-local upstreams with a zone (`fe80::53%uplink0`), against the real
//! daemon in network namespaces (root only; `SKIPPED` otherwise).
//!
//! ```text
//!  host                                   router
//!  uplink0  fe80::2/64 ──── veth ──── lan0  fe80::53/64
//!  lo 127.0.0.53: getapr                    [::]:53 UDP+TCP: the test's DNS
//!                                           server (Python, below)
//! ```
//!
//! Only these two link-local addresses on the link (no DAD: usable at
//! once; no EUI-64 ones), no route anywhere: the upstream is reachable only through its zone. The
//! router's server answers `one.ROUND.lab.example` A 192.0.2.1 and
//! `tc.ROUND.lab.example` with 40 A records, but over UDP only with an
//! empty truncated (TC) answer, so that name resolves only if getapr retries
//! over TCP to the zoned address. It logs every query with its transport
//! and peer, which is how the tests see which transport getapr used.
//!
//! Namespaces are `getapr-PID-N-host` and `getapr-PID-N-router`, deleted
//! on drop (panics included) after their processes are killed; the shared
//! lab (`tests/common/lab.rs`) sweeps names of that shape left by a killed
//! test process. Needs `ip`, `kdig`, `curl` and `python3`.

mod common;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::lab::{self, LabChild};

/// The upstream on the router's side of the link.
const SERVER: &str = "fe80::53";
/// The host's own link-local address.
const HOST: &str = "fe80::2";
/// The host's side of the link: the zone of the upstream.
const UPLINK: &str = "uplink0";
/// The sidecar, for `/metrics`.
const HTTP_PORT: u16 = 8053;

/// The router's DNS server: `python3 SCRIPT LOG`.
const SERVER_PY: &str = r#"
import socket, struct, sys, threading

log = open(sys.argv[1], "a", buffering=1)
# By first label, under lab.example: fresh names for every round.
RECORDS = {
    "one": ["192.0.2.1"],
    "tc": ["192.0.2.%d" % k for k in range(1, 41)],
}

def answer(q, tcp):
    qid, flags = struct.unpack(">HH", q[:4])
    i, labels = 12, []
    while q[i] != 0:
        n = q[i]
        labels.append(q[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
    question = q[12:i + 5]
    name = ".".join(labels).lower()
    rd = flags & 0x0100
    first = labels[0].lower() if labels and name.endswith(".lab.example") else ""
    if first == "tc" and not tcp:
        return name, struct.pack(">HHHHHH", qid, 0x8600 | rd, 1, 0, 0, 0) + question
    addrs = RECORDS.get(first)
    if addrs is None:
        return name, struct.pack(">HHHHHH", qid, 0x8403 | rd, 1, 0, 0, 0) + question
    if qtype != 1:
        addrs = []
    rrs = b"".join(b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(a)
                   for a in addrs)
    return name, struct.pack(">HHHHHH", qid, 0x8400 | rd, 1, len(addrs), 0, 0) + question + rrs

def peer(addr):
    return "%s%%%d" % (addr[0], addr[3])

def udp():
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind(("::", 53))
    while True:
        q, addr = s.recvfrom(4096)
        try:
            name, reply = answer(q, False)
        except Exception as e:
            log.write("udp error %r\n" % e)
            continue
        log.write("udp %s %s\n" % (name, peer(addr)))
        s.sendto(reply, addr)

def serve_tcp(c, addr):
    with c:
        while True:
            head = c.recv(2, socket.MSG_WAITALL)
            if len(head) < 2:
                return
            q = c.recv(struct.unpack(">H", head)[0], socket.MSG_WAITALL)
            name, reply = answer(q, True)
            log.write("tcp %s %s\n" % (name, peer(addr)))
            c.sendall(struct.pack(">H", len(reply)) + reply)

def tcp():
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", 53))
    s.listen(16)
    while True:
        c, addr = s.accept()
        threading.Thread(target=serve_tcp, args=(c, addr), daemon=True).start()

threading.Thread(target=tcp, daemon=True).start()
log.write("ready\n")
udp()
"#;

/// Two namespaces joined by one veth pair with link-local addresses only,
/// the DNS server running in the router; all torn down on drop.
struct Link {
    tag: String,
    dir: PathBuf,
    created: Vec<String>,
    server: Option<LabChild>,
}

impl Link {
    fn new() -> Link {
        static N: AtomicUsize = AtomicUsize::new(900);
        let tag = format!(
            "getapr-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("{tag}-linklocal"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut link = Link {
            tag,
            dir,
            created: Vec::new(),
            server: None,
        };
        for role in ["host", "router"] {
            let name = link.ns(role);
            run(Command::new("ip").args(["netns", "add", &name]));
            link.created.push(name);
            link.exec(
                role,
                &[
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                    // No EUI-64 link-local beside ours: the server's
                    // wildcard socket answers from the one address the
                    // link has, the one getapr asked.
                    "net.ipv6.conf.default.addr_gen_mode=1",
                ],
            );
            link.ip(role, "link set lo up");
        }
        link.plug();
        link.start_server();
        link
    }

    /// `getapr-PID-N-ROLE`.
    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.tag)
    }

    fn ip(&self, role: &str, args: &str) {
        let ns = self.ns(role);
        let mut all = vec!["-n", ns.as_str()];
        all.extend(args.split_whitespace());
        run(Command::new("ip").args(all));
    }

    fn exec<S: AsRef<OsStr>>(&self, role: &str, args: &[S]) -> String {
        run(self.command(role, args).stdin(Stdio::null()))
    }

    fn command<S: AsRef<OsStr>>(&self, role: &str, args: &[S]) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.ns(role)]).args(args);
        command
    }

    /// The veth pair, its addresses, and a wait until both ends pass
    /// traffic. Called again after [`Link::unplug`]: the host's interface
    /// gets the same name and a new index.
    fn plug(&self) {
        let router = self.ns("router");
        self.ip(
            "host",
            &format!("link add {UPLINK} type veth peer name lan0 netns {router}"),
        );
        self.ip("host", &format!("addr add {HOST}/64 dev {UPLINK} nodad"));
        self.ip("router", &format!("addr add {SERVER}/64 dev lan0 nodad"));
        self.ip("host", &format!("link set {UPLINK} up"));
        self.ip("router", "link set lan0 up");
        let deadline = Instant::now() + Duration::from_secs(5);
        for (role, dev) in [("host", UPLINK), ("router", "lan0")] {
            loop {
                let link = self.exec(role, &["ip", "-o", "link", "show", "dev", dev]);
                let addrs = self.exec(role, &["ip", "-6", "-o", "addr", "show", "dev", dev]);
                if link.contains(" state UP ") && !addrs.contains("tentative") {
                    break;
                }
                assert!(Instant::now() < deadline, "{dev} not ready:\n{link}{addrs}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // No global address, no route: only the zone reaches the server.
        let global = self.exec("host", &["ip", "-6", "addr", "show", "scope", "global"]);
        assert!(global.trim().is_empty(), "{global}");
    }

    /// Deletes the veth pair (both ends go).
    fn unplug(&self) {
        self.ip("host", &format!("link del {UPLINK}"));
    }

    /// The host's interface index now.
    fn index(&self) -> u32 {
        let out = self.exec(
            "host",
            &["cat", &format!("/sys/class/net/{UPLINK}/ifindex")],
        );
        out.trim().parse().unwrap()
    }

    fn start_server(&mut self) {
        let script = self.dir.join("server.py");
        std::fs::write(&script, SERVER_PY).unwrap();
        let log = self.server_log_path();
        let mut command = self.command(
            "router",
            &[
                lab::python(),
                OsStr::new("-S"),
                script.as_os_str(),
                log.as_os_str(),
            ],
        );
        command.stdin(Stdio::null());
        self.server = Some(LabChild::spawn(&mut command));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.server_log().contains("ready") {
            assert!(Instant::now() < deadline, "the DNS server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Straight from the host, over the zone: the link and server work.
        let out = self.kdig(&format!("@{SERVER}%{UPLINK}"), &["one.r0.lab.example", "A"]);
        assert!(out.contains("192.0.2.1"), "direct query failed:\n{out}");
    }

    fn server_log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.server_log_path()).unwrap_or_default()
    }

    /// `kdig SERVER ARGS` in the host: stdout and stderr.
    fn kdig(&self, server: &str, args: &[&str]) -> String {
        let mut all = vec!["kdig", server, "+timeout=2", "+retry=0"];
        all.extend(args);
        let out = self
            .command("host", &all)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Starts getapr in the host with `upstreams` (TOML list text) and a
    /// resolv.conf of `resolv_conf`, no probe traffic, the sidecar on
    /// 127.0.0.1:[`HTTP_PORT`].
    fn getapr(&self, upstreams: &str, resolv_conf: &str) -> Daemon {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let resolv = self.dir.join(format!("resolv-{n}.conf"));
        std::fs::write(&resolv, resolv_conf).unwrap();
        let config = self.dir.join(format!("getapr-{n}.toml"));
        std::fs::write(
            &config,
            format!(
                "[dns]\nlisten = [\"127.0.0.53:53\"]\nupstreams = {upstreams}\n\
                 resolv_conf = {:?}\ntimeout_ms = 1000\n\
                 [http]\nlisten = [\"127.0.0.1:{HTTP_PORT}\"]\n\
                 [probe]\ntargets = []\nstun = []\ndestinations = false\n",
                resolv.display().to_string()
            ),
        )
        .unwrap();
        let bin = OsStr::new(env!("CARGO_BIN_EXE_getapr"));
        let mut command = self.command("host", &[bin, OsStr::new("serve"), OsStr::new("-c")]);
        command
            .arg(&config)
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = LabChild::spawn(&mut command);
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let daemon = Daemon {
            child: Some(child),
            lines,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !daemon.log().contains("listening on") {
            assert!(
                Instant::now() < deadline,
                "getapr did not start:\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// getapr's `/metrics`.
    fn metrics(&self) -> String {
        self.exec(
            "host",
            &[
                "curl",
                "-s",
                "-m",
                "2",
                &format!("http://127.0.0.1:{HTTP_PORT}/metrics"),
            ],
        )
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.server = None;
        for name in self.created.iter().rev() {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).output();
                }
            }
            let _ = Command::new("ip").args(["netns", "delete", name]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Daemon {
    child: Option<LabChild>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    fn log(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// Stops it and waits for its exit, so its ports are free.
    fn stop(mut self) {
        self.child = None;
    }
}

/// Runs `command`; its stdout, or a panic with its stderr.
fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The A records of a kdig answer.
fn a_records(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (words.len() == 5 && words[3] == "A").then(|| words[4])
        })
        .collect()
}

/// Asks getapr (127.0.0.53 in the host) for `one.ROUND` over UDP and for
/// `tc.ROUND` over TCP (truncated over UDP by the server, so getapr must
/// ask it over TCP), and checks the answers and the transports the server
/// saw. A fresh `round` keeps getapr's cache out of it.
fn check_answers(link: &Link, daemon: &Daemon, round: &str) {
    let one = format!("one.{round}.lab.example");
    let tc = format!("tc.{round}.lab.example");
    let udp = link.kdig("@127.0.0.53", &["+notcp", &one, "A"]);
    assert_eq!(
        a_records(&udp),
        ["192.0.2.1"],
        "over UDP:\n{udp}\n{}",
        daemon.log()
    );
    let tcp = link.kdig("@127.0.0.53", &["+tcp", &tc, "A"]);
    assert_eq!(
        a_records(&tcp).len(),
        40,
        "over TCP:\n{tcp}\n{}",
        daemon.log()
    );
    let log = link.server_log();
    let from_host = format!("{HOST}%");
    let asked = |transport: &str, name: &str| {
        log.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() == 3 && w[0] == transport && w[1] == name && w[2].starts_with(&from_host)
        })
    };
    assert!(asked("udp", &one), "server log:\n{log}");
    assert!(asked("udp", &tc), "server log:\n{log}");
    assert!(
        asked("tcp", &tc),
        "getapr did not retry over TCP after TC; server log:\n{log}"
    );
}

/// What the acceptance line asks: a resolv.conf with only `nameserver
/// fe80::…%IFACE` is the upstream over UDP and TCP; the zone by index
/// works too. Logs and metrics show the zone.
#[test]
fn a_resolv_conf_with_only_a_zoned_link_local_nameserver() {
    if !lab::root_or_skip("linklocal_lab::a_resolv_conf_with_only_a_zoned_link_local_nameserver") {
        return;
    }
    let link = Link::new();
    let daemon = link.getapr("[\"system\"]", &format!("nameserver {SERVER}%{UPLINK}\n"));
    check_answers(&link, &daemon, "r1");
    let label = format!("[{SERVER}%{UPLINK}]:53");
    let log = daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains("listening on") && l.contains(&label)),
        "the start line names the upstream with its zone:\n{log}"
    );
    let metrics = link.metrics();
    assert!(
        metrics.contains(&format!(
            "getapr_upstream_latency_seconds_count{{upstream=\"{label}\"}} "
        )),
        "metrics:\n{metrics}"
    );
    daemon.stop();

    // By index, as some tools write it.
    let index = link.index();
    let daemon = link.getapr("[\"system\"]", &format!("nameserver {SERVER}%{index}\n"));
    check_answers(&link, &daemon, "r2");
    let label = format!("[{SERVER}%{index}]:53");
    let metrics = link.metrics();
    assert!(metrics.contains(&label), "metrics:\n{metrics}");
    daemon.stop();
}

/// `dns.upstreams = ["fe80::53%uplink0"]`; then the interface is deleted
/// (the upstream fails at once) and created again under the same name (a
/// new index, as after hotplug): the same daemon follows it without a
/// reload.
#[test]
fn a_configured_zoned_upstream_follows_its_interface() {
    if !lab::root_or_skip("linklocal_lab::a_configured_zoned_upstream_follows_its_interface") {
        return;
    }
    let link = Link::new();
    let daemon = link.getapr(&format!("[\"{SERVER}%{UPLINK}\"]"), "");
    check_answers(&link, &daemon, "r1");
    let before = link.index();
    link.unplug();
    // While no interface has the name, the upstream fails at once
    // (SERVFAIL, no timeout); the config stays.
    let started = Instant::now();
    let gone = link.kdig("@127.0.0.53", &["+notcp", "one.gap.lab.example", "A"]);
    assert!(
        gone.contains("status: SERVFAIL"),
        "{gone}\n{}",
        daemon.log()
    );
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    link.plug();
    let after = link.index();
    assert_ne!(before, after, "a re-created interface gets a new index");
    std::fs::write(link.server_log_path(), "").unwrap();
    check_answers(&link, &daemon, "r2");
    let label = format!("[{SERVER}%{UPLINK}]:53");
    let metrics = link.metrics();
    assert!(
        metrics.contains(&format!(
            "getapr_upstream_latency_seconds_count{{upstream=\"{label}\"}} "
        )),
        "metrics:\n{metrics}"
    );
    assert!(
        !metrics.contains(&format!("%{before}]")) && !metrics.contains(&format!("%{after}]")),
        "the label is the name, never the index:\n{metrics}"
    );
}

/// An upstream whose interface does not exist fails like an unreachable
/// one, at once: the next one answers, and the failure is counted and
/// logged under the zoned name.
#[test]
fn a_missing_interface_is_an_unreachable_upstream() {
    if !lab::root_or_skip("linklocal_lab::a_missing_interface_is_an_unreachable_upstream") {
        return;
    }
    let link = Link::new();
    let daemon = link.getapr(
        "[\"system\"]",
        &format!("nameserver {SERVER}%nosuch0\nnameserver {SERVER}%{UPLINK}\n"),
    );
    let started = Instant::now();
    let udp = link.kdig("@127.0.0.53", &["+notcp", "one.r1.lab.example", "A"]);
    let took = started.elapsed();
    assert_eq!(a_records(&udp), ["192.0.2.1"], "{udp}\n{}", daemon.log());
    assert!(took < Duration::from_millis(900), "took {took:?}");
    let missing = format!("[{SERVER}%nosuch0]:53");
    let metrics = link.metrics();
    assert!(
        metrics.contains(&format!(
            "getapr_upstream_failures_total{{upstream=\"{missing}\",reason=\"network\"}} "
        )),
        "metrics:\n{metrics}"
    );
    let log = daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains("upstream failed") && l.contains(&missing)),
        "log:\n{log}"
    );
}
