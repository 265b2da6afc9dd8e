//! The flood suite's harness (`tests/flood.rs`): the `getapr` binary as a
//! child process whose memory can be read from `/proc`, clients on their
//! own loopback source addresses (all of 127.0.0.0/8 is local on Linux, so
//! 127.0.0.2 and 127.0.0.3 are different clients without root), a UDP
//! upstream that answers some names at once and ignores the rest, paced
//! UDP floods, and the table the suite prints.
//!
//! Everything is blocking `std` code on threads: a flood's pacing and a
//! legit client's latencies must not depend on an async runtime that the
//! same test keeps busy. Every loop here ends by itself (by count or by
//! time), and the daemon is killed when its guard is dropped, a failed
//! assertion included.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

pub use super::bin::free_port;

/// The `getapr` binary `cargo test` built, or the one named by
/// `GETAPR_FLOOD_BIN` (e.g. `target/release/getapr`, to measure the
/// optimised build with the same suite).
pub fn binary() -> PathBuf {
    std::env::var_os("GETAPR_FLOOD_BIN")
        .map_or_else(|| PathBuf::from(super::bin::BIN), PathBuf::from)
}

/// Which build ran, for the table: the name of the binary's directory
/// under `target/` (`debug`, `release`).
pub fn profile() -> String {
    binary()
        .parent()
        .and_then(Path::file_name)
        .map_or_else(|| "?".to_owned(), |n| n.to_string_lossy().into_owned())
}

/// Receive buffers of the test's sockets: a flood's answers and an
/// upstream's queries come in bursts.
const RCVBUF: usize = 4 << 20;

// ---------------------------------------------------------------------------
// The daemon.

/// A config on loopback only: DNS on `127.0.0.1:dns_port` forwarding to
/// `upstream`, `dns_extra` more `[dns]` keys (one per line), `http` the
/// whole `[http]` table's body, probing and filtering off.
pub fn config_text(dns_port: u16, upstream: SocketAddr, dns_extra: &str, http: &str) -> String {
    format!(
        "[dns]\nlisten = [\"127.0.0.1:{dns_port}\"]\nupstreams = [\"{upstream}\"]\n{dns_extra}\n\n\
         [http]\n{http}\n\n\
         [probe]\ntargets = []\nstun = []\ndestinations = false\n\n\
         [policy]\nfilter = \"off\"\n"
    )
}

/// The `[http]` body with the sidecar off.
pub const HTTP_OFF: &str = "listen = []";

/// `getapr serve` as a child process; killed when dropped.
#[derive(Debug)]
pub struct Getapr {
    child: Child,
    dir: PathBuf,
    /// Where it listens for DNS (UDP and TCP).
    pub dns: SocketAddr,
}

impl Getapr {
    /// Writes `config` (which must listen on `127.0.0.1:dns_port`) and
    /// starts the daemon with it; returns once its TCP port accepts. `Err`
    /// carries what it printed when it exited instead (a rejected config).
    pub fn start(tag: &str, config: &str, dns_port: u16) -> Result<Getapr, String> {
        let dir = std::env::temp_dir().join(format!("getapr-flood-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("getapr.toml");
        std::fs::write(&path, config).expect("write config");
        let log = File::create(dir.join("stderr.log")).expect("log file");
        let child = Command::new(binary())
            .arg("serve")
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary().display()));
        let mut daemon = Getapr {
            child,
            dir,
            dns: SocketAddr::from((Ipv4Addr::LOCALHOST, dns_port)),
        };
        let started = Instant::now();
        loop {
            if let Some(status) = daemon.child.try_wait().expect("try_wait") {
                return Err(format!("getapr exited ({status}): {}", daemon.log()));
            }
            if TcpStream::connect_timeout(&daemon.dns, Duration::from_millis(200)).is_ok() {
                return Ok(daemon);
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "getapr did not listen within 15 s: {}",
                daemon.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What it printed so far (its last 4 KiB).
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(self.dir.join("stderr.log")) {
            let _ = f.read_to_string(&mut text);
        }
        let cut = text.len().saturating_sub(4096);
        let cut = (cut..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text[cut..].to_owned()
    }
}

impl Drop for Getapr {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("getapr's log (its last 4 KiB):\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------
// Memory.

/// The process's resident set (`VmRSS`) in KiB, `None` once it is gone.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `VmRSS` of a process sampled every 20 ms by a thread until dropped.
#[derive(Debug)]
pub struct Rss {
    samples: Arc<Mutex<Vec<(Instant, u64)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Rss {
    pub fn start(pid: u32) -> Rss {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, halt) = (Arc::clone(&samples), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            // Bounded: at most ten minutes of samples.
            for _ in 0..30_000 {
                if halt.load(Ordering::Relaxed) {
                    return;
                }
                let Some(kib) = vm_rss_kib(pid) else { return };
                s.lock().expect("samples").push((Instant::now(), kib));
                thread::sleep(Duration::from_millis(20));
            }
        });
        // The first sample, so that nothing reads an empty series.
        let rss = Rss {
            samples,
            stop,
            thread: Some(thread),
        };
        let started = Instant::now();
        while rss.samples.lock().expect("samples").is_empty() && started.elapsed() < SECOND {
            thread::sleep(Duration::from_millis(5));
        }
        rss
    }

    /// The latest sample, MiB.
    pub fn now(&self) -> f64 {
        let samples = self.samples.lock().expect("samples");
        mib(samples.last().map_or(0, |s| s.1))
    }

    /// The highest sample since `from`, MiB.
    pub fn peak_since(&self, from: Instant) -> f64 {
        let samples = self.samples.lock().expect("samples");
        mib(samples
            .iter()
            .filter(|s| s.0 >= from)
            .map(|s| s.1)
            .max()
            .unwrap_or(0))
    }
}

impl Drop for Rss {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const SECOND: Duration = Duration::from_secs(1);

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------
// Sockets on chosen loopback addresses, and the file limit.

/// A UDP socket on `ip:0` with a large receive buffer.
pub fn udp_from(ip: Ipv4Addr) -> UdpSocket {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("udp socket");
    let _ = socket.set_recv_buffer_size(RCVBUF);
    socket
        .bind(&SocketAddr::from((ip, 0)).into())
        .unwrap_or_else(|e| panic!("bind {ip}: {e}"));
    socket.into()
}

/// A TCP connection from `ip` (any port) to `to`.
pub fn tcp_from(ip: Ipv4Addr, to: SocketAddr, wait: Duration) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SocketAddr::from((ip, 0)).into())?;
    socket.connect_timeout(&to.into(), wait)?;
    Ok(socket.into())
}

/// Raises this process's open-files limit to its hard limit (children,
/// the daemon among them, inherit it) and returns the limit now in force.
pub fn raise_nofile() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    let _ = setrlimit(Resource::Nofile, limit);
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Datagrams the kernel dropped for want of room on the UDP sockets bound
/// to local port `port` (`/proc/net/udp`, last column): what a flood sent
/// that the daemon never read.
pub fn udp_drops(port: u16) -> u64 {
    let Ok(table) = std::fs::read_to_string("/proc/net/udp") else {
        return 0;
    };
    let hex = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|local| local.ends_with(&hex))
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

// ---------------------------------------------------------------------------
// DNS on the wire, by hand: the floods build and read tens of thousands
// of messages, and only the header and question matter.

pub const TYPE_A: u16 = 1;
pub const TYPE_TXT: u16 = 16;

/// `name` (dotted, no trailing dot) in wire format.
pub fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(u8::try_from(label.len()).expect("label length"));
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A query with RD set; with an OPT record offering `edns` bytes if given.
pub fn raw_query(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    q.extend_from_slice(&wire_name(name));
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if let Some(size) = edns {
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&size.to_be_bytes());
        q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    q
}

/// What the header of a reply says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub id: u16,
    pub qr: bool,
    pub tc: bool,
    pub rcode: u8,
    pub answers: u16,
}

pub fn head(message: &[u8]) -> Option<Head> {
    let h = message.get(..12)?;
    Some(Head {
        id: u16::from_be_bytes([h[0], h[1]]),
        qr: h[2] & 0x80 != 0,
        tc: h[2] & 0x02 != 0,
        rcode: h[3] & 0x0f,
        answers: u16::from_be_bytes([h[6], h[7]]),
    })
}

/// The question's name (dotted, lower case) and where the question ends.
pub fn question(message: &[u8]) -> Option<(String, usize)> {
    let mut at = 12;
    let mut name = String::new();
    loop {
        let len = usize::from(*message.get(at)?);
        if len == 0 || len > 63 {
            break;
        }
        let label = message.get(at + 1..at + 1 + len)?;
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
        at += 1 + len;
    }
    let end = at + 1 + 4;
    (message.len() >= end).then_some((name, end))
}

/// The start of an answer to `query` (first `question_end` bytes): same
/// ID and question, QR, RD and RA set, NOERROR, `answers` in ANCOUNT, no
/// other records (so no OPT).
pub fn reply_head(query: &[u8], question_end: usize, answers: u16) -> Vec<u8> {
    let mut r = Vec::with_capacity(question_end + 16);
    r.extend_from_slice(&query[..2]);
    r.extend_from_slice(&[0x81, 0x80, 0, 1]);
    r.extend_from_slice(&answers.to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&query[12..question_end]);
    r
}

/// An answer of exactly `size` bytes, without OPT, to the query with ID
/// `id` for `name` TXT: TXT records of up to 4 KiB each filling the space.
/// Panics if `size` leaves no room for one record.
pub fn txt_reply_of_size(id: u16, name: &str, size: usize) -> Vec<u8> {
    let mut question = Vec::new();
    question.extend_from_slice(&wire_name(name));
    question.extend_from_slice(&TYPE_TXT.to_be_bytes());
    question.extend_from_slice(&[0, 1]);
    // A record: owner (pointer to the question, 2) + type, class, TTL,
    // RDLENGTH (10) + RDATA of at least one byte.
    const OVERHEAD: usize = 12;
    let mut left = size - 12 - question.len();
    assert!(left > OVERHEAD, "no room for a record in {size} bytes");
    let mut records = Vec::new();
    while left > 0 {
        let mut take = left.min(OVERHEAD + 4096);
        if left - take > 0 && left - take <= OVERHEAD {
            take -= OVERHEAD + 1;
        }
        records.push(take - OVERHEAD);
        left -= take;
    }
    let mut m = Vec::with_capacity(size);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x81, 0x80, 0, 1]);
    m.extend_from_slice(&u16::try_from(records.len()).expect("count").to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(&question);
    for rdlen in records {
        m.extend_from_slice(&[0xc0, 12]);
        m.extend_from_slice(&TYPE_TXT.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 0, 1, 44]);
        m.extend_from_slice(&u16::try_from(rdlen).expect("rdlength").to_be_bytes());
        // Character-strings of up to 255 bytes, the last one shorter.
        let mut rest = rdlen;
        while rest > 0 {
            let s = (rest - 1).min(255);
            m.push(u8::try_from(s).expect("string length"));
            m.extend(std::iter::repeat_n(b'x', s));
            rest -= s + 1;
        }
    }
    assert_eq!(m.len(), size, "the padding arithmetic");
    m
}

// ---------------------------------------------------------------------------
// The upstream.

/// A UDP upstream on `127.0.0.1:<port>` that answers the names `answer`
/// accepts at once (A: one record 192.0.2.1, TTL 300; other types: no
/// records) and never answers the rest. Counts what it received; stops
/// when dropped.
#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    received: Arc<AtomicU64>,
    names: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    pub fn start(answer: impl Fn(&str) -> bool + Send + 'static) -> Upstream {
        let socket = udp_from(Ipv4Addr::LOCALHOST);
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let received = Arc::new(AtomicU64::new(0));
        let names = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, log, halt) = (Arc::clone(&received), Arc::clone(&names), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 65_535];
            while !halt.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                count.fetch_add(1, Ordering::Relaxed);
                let query = &buf[..n];
                let Some((name, end)) = question(query) else {
                    continue;
                };
                let qtype = u16::from_be_bytes([query[end - 4], query[end - 3]]);
                let answered = answer(&name);
                {
                    let mut log = log.lock().expect("names");
                    if log.len() < 200_000 {
                        log.push(name);
                    }
                }
                if !answered {
                    continue;
                }
                let mut r = reply_head(query, end, u16::from(qtype == TYPE_A));
                if qtype == TYPE_A {
                    r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
                }
                let _ = socket.send_to(&r, peer);
            }
        });
        Upstream {
            addr,
            received,
            names,
            stop,
            thread: Some(thread),
        }
    }

    /// Datagrams received so far (retransmissions included).
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Queries received so far for names `pick` accepts.
    pub fn asked(&self, pick: impl Fn(&str) -> bool) -> usize {
        self.names
            .lock()
            .expect("names")
            .iter()
            .filter(|n| pick(n))
            .count()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Load.

/// What a flood really sent.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub sent: u64,
    /// Sends the kernel refused (ENOBUFS and the like).
    pub errors: u64,
    pub took: Duration,
}

impl Sent {
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

/// Sends `rate` datagrams a second to `to` for `duration` (at most
/// `rate × duration` in all), each built by `fill(n, buffer)` for the
/// n-th one. Paced by the clock: whatever falls behind is sent as fast as
/// the loop goes, so `Sent::rate` is what the machine really managed.
pub fn flood(
    socket: &UdpSocket,
    to: SocketAddr,
    rate: u64,
    duration: Duration,
    mut fill: impl FnMut(u64, &mut Vec<u8>),
) -> Sent {
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let mut buf = Vec::with_capacity(512);
    let (mut sent, mut errors) = (0u64, 0u64);
    let started = Instant::now();
    while sent < total {
        let elapsed = started.elapsed();
        if elapsed >= duration + Duration::from_millis(500) {
            break;
        }
        let due = ((rate as f64 * elapsed.as_secs_f64()) as u64).min(total);
        if sent >= due {
            thread::sleep(Duration::from_micros(200));
            continue;
        }
        while sent < due {
            fill(sent, &mut buf);
            if socket.send_to(&buf, to).is_err() {
                errors += 1;
            }
            sent += 1;
        }
    }
    Sent {
        sent,
        errors,
        took: started.elapsed(),
    }
}

/// Counts the replies that reach a flooding socket, by rcode, until
/// [`Replies::stop`].
#[derive(Debug)]
pub struct Replies {
    counts: Arc<[AtomicU64; 16]>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Replies {
    pub fn count(socket: UdpSocket) -> Replies {
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let counts: Arc<[AtomicU64; 16]> = Arc::new(std::array::from_fn(|_| AtomicU64::new(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, halt) = (Arc::clone(&counts), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 65_535];
            while !halt.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf)
                    && let Some(h) = head(&buf[..n])
                {
                    c[usize::from(h.rcode)].fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Replies {
            counts,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops counting; returns the count for each rcode (index = rcode).
    pub fn stop(mut self) -> [u64; 16] {
        self.halt();
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        self.halt();
    }
}

/// What became of one query of a legit client.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    /// From send to reply; `None`: no reply within the wait.
    pub latency: Option<Duration>,
    pub rcode: Option<u8>,
    pub answers: u16,
    /// Why there is no reply, when there is none and the client knows.
    pub why: String,
}

impl Outcome {
    /// An answer with records, within the wait.
    pub fn answered(&self) -> bool {
        self.latency.is_some() && self.rcode == Some(0) && self.answers > 0
    }
}

/// A reply's latency and header.
type Got = (Duration, Head);

/// A legit UDP client on `from`: asks `plan[i].1` (type A) at `start +
/// plan[i].0` and waits up to `wait` for each reply. Runs on its own
/// threads; join the handle for the outcomes, in plan order.
pub fn legit_udp(
    from: Ipv4Addr,
    to: SocketAddr,
    start: Instant,
    plan: Vec<(Duration, String)>,
    wait: Duration,
) -> JoinHandle<Vec<Outcome>> {
    assert!(plan.len() < 65_536, "one ID per query");
    thread::spawn(move || {
        let socket = udp_from(from);
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let sent_at: Arc<Mutex<Vec<Option<Instant>>>> =
            Arc::new(Mutex::new(vec![None; plan.len()]));
        let got: Arc<Mutex<Vec<Option<Got>>>> = Arc::new(Mutex::new(vec![None; plan.len()]));
        let end = start + plan.last().map_or(Duration::ZERO, |p| p.0) + wait;
        let receiver = {
            let socket = socket.try_clone().expect("clone");
            let (sent_at, got) = (Arc::clone(&sent_at), Arc::clone(&got));
            thread::spawn(move || {
                let mut buf = vec![0u8; 65_535];
                while Instant::now() < end + Duration::from_millis(100) {
                    let Ok(n) = socket.recv(&mut buf) else {
                        continue;
                    };
                    let now = Instant::now();
                    let Some(h) = head(&buf[..n]) else { continue };
                    let i = usize::from(h.id);
                    let Some(Some(at)) = sent_at.lock().expect("sent").get(i).copied() else {
                        continue;
                    };
                    let mut got = got.lock().expect("got");
                    if got[i].is_none() && now - at <= wait {
                        got[i] = Some((now - at, h));
                    }
                }
            })
        };
        for (i, (offset, name)) in plan.iter().enumerate() {
            sleep_until(start + *offset);
            let id = u16::try_from(i).expect("id");
            let q = raw_query(id, name, TYPE_A, Some(1232));
            sent_at.lock().expect("sent")[i] = Some(Instant::now());
            let _ = socket.send_to(&q, to);
        }
        let _ = receiver.join();
        let got = got.lock().expect("got");
        plan.into_iter()
            .zip(got.iter())
            .map(|((_, name), g)| Outcome {
                name,
                latency: g.map(|g| g.0),
                rcode: g.map(|g| g.1.rcode),
                answers: g.map_or(0, |g| g.1.answers),
                why: String::new(),
            })
            .collect()
    })
}

/// One query over a fresh TCP connection from `from`, all within `wait`:
/// the reply's header, or why there is none.
pub fn tcp_query(
    from: Ipv4Addr,
    to: SocketAddr,
    query: &[u8],
    wait: Duration,
) -> Result<(Vec<u8>, Duration), String> {
    let started = Instant::now();
    let mut stream = tcp_from(from, to, wait).map_err(|e| format!("connect: {e}"))?;
    let left = |s: Instant| {
        wait.saturating_sub(s.elapsed())
            .max(Duration::from_millis(1))
    };
    stream.set_write_timeout(Some(left(started))).ok();
    let mut framed = u16::try_from(query.len())
        .expect("query size")
        .to_be_bytes()
        .to_vec();
    framed.extend_from_slice(query);
    stream
        .write_all(&framed)
        .map_err(|e| format!("write: {e}"))?;
    let mut len = [0u8; 2];
    stream.set_read_timeout(Some(left(started))).ok();
    stream
        .read_exact(&mut len)
        .map_err(|e| format!("read length: {e}"))?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.set_read_timeout(Some(left(started))).ok();
    stream
        .read_exact(&mut reply)
        .map_err(|e| format!("read message: {e}"))?;
    Ok((reply, started.elapsed()))
}

/// A legit TCP client on `from`: asks `plan[i].1` (type A, EDNS) at
/// `start + plan[i].0`, each on a fresh connection in its own thread, and
/// gives each `wait` from connect to reply. Join for the outcomes, in
/// plan order.
pub fn legit_tcp(
    from: Ipv4Addr,
    to: SocketAddr,
    start: Instant,
    plan: Vec<(Duration, String)>,
    wait: Duration,
) -> JoinHandle<Vec<Outcome>> {
    assert!(plan.len() < 65_536, "one ID per query");
    thread::spawn(move || {
        let queries: Vec<_> = plan
            .into_iter()
            .enumerate()
            .map(|(i, (offset, name))| {
                sleep_until(start + offset);
                thread::spawn(move || {
                    let id = u16::try_from(i).expect("id");
                    let query = raw_query(id, &name, TYPE_A, Some(1232));
                    match tcp_query(from, to, &query, wait) {
                        Ok((reply, took)) => {
                            let h = head(&reply).filter(|h| h.id == id && h.qr);
                            Outcome {
                                name,
                                latency: h.map(|_| took),
                                rcode: h.map(|h| h.rcode),
                                answers: h.map_or(0, |h| h.answers),
                                why: if h.is_some() {
                                    String::new()
                                } else {
                                    "not a reply to it".to_owned()
                                },
                            }
                        }
                        Err(why) => Outcome {
                            name,
                            latency: None,
                            rcode: None,
                            answers: 0,
                            why,
                        },
                    }
                })
            })
            .collect();
        queries
            .into_iter()
            .map(|q| q.join().expect("legit query thread"))
            .collect()
    })
}

pub fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        thread::sleep(at - now);
    }
}

// ---------------------------------------------------------------------------
// Figures and the table.

/// The 99th percentile of `latencies`, a lost query counting as slower
/// than any answer: `None` when that percentile is a lost query.
pub fn p99(latencies: &[Option<Duration>]) -> Option<Duration> {
    let mut sorted: Vec<Duration> = latencies
        .iter()
        .map(|l| l.unwrap_or(Duration::MAX))
        .collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort();
    let rank = (sorted.len() * 99).div_ceil(100).max(1) - 1;
    Some(sorted[rank]).filter(|d| *d != Duration::MAX)
}

/// `p99` for the table: milliseconds, or "lost" when the 99th percentile
/// query got no answer.
pub fn p99_text(latencies: &[Option<Duration>]) -> String {
    match p99(latencies) {
        Some(d) => format!("{:.0}", d.as_secs_f64() * 1000.0),
        None if latencies.is_empty() => "–".to_owned(),
        None => "lost".to_owned(),
    }
}

/// `answered/total` as a percentage with the counts.
pub fn percent(answered: usize, total: usize) -> String {
    if total == 0 {
        return "–".to_owned();
    }
    format!(
        "{:.1} % ({answered}/{total})",
        100.0 * answered as f64 / total as f64
    )
}

/// One row of the flood table.
#[derive(Debug, Default)]
pub struct Row {
    pub case: String,
    /// What was really sent.
    pub load: String,
    pub answered: String,
    pub p99_ms: String,
    /// Baseline, peak and later RSS, MiB.
    pub rss: Option<(f64, f64, f64)>,
    pub notes: String,
}

pub const TABLE_HEAD: &str = "| case | build | load (really sent) | legit answered | legit p99 ms | RSS MiB base / peak / after | notes |\n|---|---|---|---|---|---|---|";

/// Prints `row` and appends it to `$CARGO_TARGET_TMPDIR/flood.txt`
/// (which `.ci/run` shows), with the table's head when the file is new.
pub fn record(row: &Row) {
    let rss = row.rss.map_or_else(
        || "–".to_owned(),
        |(b, p, a)| format!("{b:.1} / {p:.1} / {a:.1}"),
    );
    let line = format!(
        "| {} | {} | {} | {} | {} | {rss} | {} |",
        row.case,
        profile(),
        row.load,
        row.answered,
        row.p99_ms,
        row.notes
    );
    println!("FLOOD {line}");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("flood.txt");
    let new = std::fs::metadata(&path).map_or(true, |m| m.len() == 0);
    if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(&path) {
        if new {
            let _ = writeln!(
                file,
                "getapr binary: {} ({} build), {} cores\n{TABLE_HEAD}",
                binary().display(),
                profile(),
                thread::available_parallelism().map_or(0, |n| n.get()),
            );
        }
        let _ = writeln!(file, "{line}");
    }
}
