//! The `getapr` binary as a user runs it, for the tests of signals and
//! exit codes: tiny responders on 127.0.0.1 as upstreams, a config file
//! for them, a blocking client, and the child process's signals and exit.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_getapr");

/// Answers every A query with one A record `answer`, after `delay`.
/// Returns its address and a counter of the queries it got.
pub fn responder(answer: [u8; 4], delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            seen.fetch_add(1, Ordering::SeqCst);
            let q = buf[..n].to_vec();
            let sock = sock.try_clone().unwrap();
            thread::spawn(move || {
                thread::sleep(delay);
                // Header with QR|RD|RA, one answer; question copied; no OPT.
                let qend = 12 + q[12..].iter().position(|&b| b == 0).unwrap() + 1 + 4;
                let mut r = q[..2].to_vec();
                r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
                r.extend_from_slice(&q[12..qend]);
                r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                r.extend_from_slice(&answer);
                let _ = sock.send_to(&r, peer);
            });
        }
    });
    (addr, count)
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn config(dir: &Path, name: &str, listen: u16, upstream: SocketAddr) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "[dns]\nlisten = [\"127.0.0.1:{listen}\"]\nupstreams = [\"{upstream}\"]\ntimeout_ms = 2000\n\
             [http]\nlisten = []\n[probe]\ntargets = []\nstun = []\ndestinations = false\n"
        ),
    )
    .unwrap();
    path
}

/// A directory of the test's own under the system's temp directory,
/// removed with what it holds when dropped (a failing test unwinds through
/// the drop too).
pub fn tempdir(tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("getapr-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

#[derive(Debug)]
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends an A query for `name` and returns the first answer's address.
pub fn ask(port: u16, name: &str) -> Option<[u8; 4]> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    sock.send_to(&q, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf).ok()?;
    (n >= 4 && buf[..2] == [0x12, 0x34]).then(|| buf[n - 4..n].try_into().unwrap())
}

pub fn wait_answer(port: u16, name: &str) -> [u8; 4] {
    let start = Instant::now();
    loop {
        if let Some(a) = ask(port, name) {
            return a;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the daemon never answered"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

pub fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > within {
            let _ = child.kill();
            panic!("getapr did not exit within {within:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

pub fn serve(config: &Path) -> Child {
    Command::new(BIN)
        .args(["serve", "-c"])
        .arg(config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
    s
}

/// A finished child's stdout, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Its stderr, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Fails, showing both streams, unless the child exited with `code`.
#[track_caller]
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}
