//! The probe engine in the network lab (root): the real daemon runs in the
//! lab's host namespace and reports what it measures in its log; the
//! router's nftables break and mend IPv6 forwarding under it.
//!
//! Run with `--nocapture` to see the detection times.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::lab::{self, Lab, LabChild, Ns};

const INTERVAL: Duration = Duration::from_millis(1000);
const TIMEOUT: Duration = Duration::from_millis(500);

/// getapr running in a lab namespace, its log lines collected with the
/// instant each arrived.
struct Daemon {
    _child: LabChild,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    _config: tempfile_path::TempPath,
}

mod tempfile_path {
    /// A file removed on drop.
    pub struct TempPath(pub std::path::PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl Daemon {
    fn start(lab: &Lab, ns: Ns) -> Daemon {
        let path = std::env::temp_dir().join(format!(
            "getapr-probe-lab-{}-{}.toml",
            std::process::id(),
            lab.ns_name(ns)
        ));
        std::fs::write(
            &path,
            format!(
                "[dns]\nlisten = [\"127.0.0.53:53\"]\nupstreams = [\"127.0.0.1:9\"]\n\
                 [http]\nlisten = []\n\
                 [probe]\ninterval_ms = {}\ntimeout_ms = {}\n\
                 targets = [\"{}:443\", \"[{}]:443\"]\n\
                 stun = [\"{}:{port}\", \"[{}]:{port}\"]\ndestinations = false\n",
                INTERVAL.as_millis(),
                TIMEOUT.as_millis(),
                lab::TARGET4,
                lab::TARGET6,
                lab::STUN4,
                lab::STUN6,
                port = lab::STUN_PORT,
            ),
        )
        .unwrap();
        let mut command = lab.command(ns, &[env!("CARGO_BIN_EXE_getapr"), "serve", "-c"]);
        command
            .arg(&path)
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = LabChild::spawn(&mut command);
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        Daemon {
            _child: child,
            lines,
            _config: tempfile_path::TempPath(path),
        }
    }

    /// The first line after `since` that has every word of `words`, waiting
    /// up to `within`; the log so far in the panic message otherwise.
    fn wait(&self, since: Instant, words: &[&str], within: Duration) -> (Duration, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some((at, line)) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|(at, line)| *at >= since && words.iter().all(|w| has_word(line, w)))
            {
                return (at.duration_since(since), line.clone());
            }
            if Instant::now() > deadline {
                let log: Vec<String> = self
                    .lines
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(_, l)| l.clone())
                    .collect();
                panic!(
                    "no log line with {words:?} within {within:?}; log:\n{}",
                    log.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The latest flags line.
    fn flags(&self) -> String {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(_, l)| l.contains("flags:"))
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    }
}

/// `word` appears as a whole word (so `NAT44` does not match `NAT44_tried`);
/// a trailing `*` matches any word starting with the rest.
fn has_word(line: &str, word: &str) -> bool {
    let mut words = line.split(char::is_whitespace);
    match word.strip_suffix('*') {
        Some(prefix) => words.any(|w| w.starts_with(prefix)),
        None => words.any(|w| w == word),
    }
}

#[test]
fn dual_stack_behind_nat44_then_ipv6_breaks_and_mends() {
    if !lab::root_or_skip("dual_stack_behind_nat44_then_ipv6_breaks_and_mends") {
        return;
    }
    let lab = Lab::new();
    let start = Instant::now();
    let daemon = Daemon::start(&lab, Ns::Host);
    let gua = format!("source={}", lab::HOST6);
    let v4 = format!("source={}", lab::HOST4);

    // (a) Everything works: both sources ok, the flags say so.
    let (t_v6, _) = daemon.wait(start, &["ok", &gua], INTERVAL * 3);
    let (t_v4, _) = daemon.wait(start, &["ok", &v4], INTERVAL * 3);
    let (t_lla, _) = daemon.wait(start, &["ok", "source=fe80:*"], INTERVAL * 3);
    let (t_flags, flags) = daemon.wait(
        start,
        &["flags:", "GUA_ok", "IPv4_ok", "NAT44", "RFC1918"],
        INTERVAL * 3,
    );
    eprintln!(
        "first verdicts: GUA ok after {t_v6:?}, IPv4 ok after {t_v4:?}, LLA ok after {t_lla:?}, flags after {t_flags:?}: {flags}"
    );
    assert!(
        !has_word(&flags, "NPTv6"),
        "no NPTv6 on a GUA host: {flags}"
    );

    // (b) The router silently drops forwarded IPv6.
    let broke = Instant::now();
    lab.drop_ipv6_forwarding(true);
    let (t_fail, _) = daemon.wait(broke, &["failed", &gua], INTERVAL * 3 + TIMEOUT * 2);
    // The same publish logs the flags just before the source lines.
    let flags = daemon.flags();
    assert!(has_word(&flags, "IPv4_ok"), "{flags}");
    eprintln!("IPv6 blackholed: GUA source failed after {t_fail:?}; flags now: {flags}");
    assert!(!has_word(&flags, "GUA_ok"), "{flags}");
    assert!(t_fail <= INTERVAL * 3, "detection took {t_fail:?}");

    // (c) It mends.
    let mended = Instant::now();
    lab.drop_ipv6_forwarding(false);
    let (t_ok, _) = daemon.wait(mended, &["ok", &gua], INTERVAL * 2 + TIMEOUT * 2);
    eprintln!("IPv6 mended: GUA source ok after {t_ok:?}");
    assert!(t_ok <= INTERVAL * 2, "recovery took {t_ok:?}");
    let (_, flags) = daemon.wait(
        mended,
        &["flags:", "GUA_ok", "IPv4_ok"],
        INTERVAL * 2 + TIMEOUT * 2,
    );
    assert!(has_word(&flags, "NAT44"), "{flags}");
    assert!(has_word(&daemon.flags(), "GUA_ok"));
    if std::env::var_os("GETAPR_LAB_LOG").is_some() {
        for (_, l) in daemon.lines.lock().unwrap().iter() {
            eprintln!("{l}");
        }
    }
}

#[test]
fn ula_only_host_behind_nptv6() {
    if !lab::root_or_skip("ula_only_host_behind_nptv6") {
        return;
    }
    let lab = Lab::builder().ula_nptv6().build();
    let start = Instant::now();
    let daemon = Daemon::start(&lab, Ns::Host);
    let (t, flags) = daemon.wait(
        start,
        &["flags:", "NPTv6", "ULA_ok", "ULA_present"],
        INTERVAL * 4,
    );
    eprintln!("NPTv6 seen after {t:?}: {flags}");
    assert!(!has_word(&flags, "GUA_ok"), "the host has no GUA: {flags}");
}
