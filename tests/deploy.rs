//! What `deploy/` ships, checked here: the systemd units verify,
//! every shell script parses, `deploy/install.sh` installs into a temporary
//! root and its uninstall restores resolv.conf byte for byte, the OpenWrt
//! UCI → TOML translation and init script (procd stubbed) produce configs
//! `getapr check-config` accepts, sd_notify reaches a Type=notify manager,
//! and the error texts deploy/README.md quotes are the daemon's own.
//!
//! Nothing here touches the real /etc, starts a service, or sends a packet
//! off the machine: the daemon always runs on a loopback-only config, and
//! the root-only test runs in its own network and mount namespaces.

use std::io::Read;
use std::net::UdpSocket;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_getapr");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn repo(path: &str) -> PathBuf {
    Path::new(REPO).join(path)
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("getapr-deploy-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn check_config(path: &Path) -> Output {
    run(Command::new(BIN).arg("check-config").arg(path))
}

fn assert_config_ok(path: &Path) {
    let out = check_config(path);
    assert_eq!(
        text(&out.stdout).trim(),
        "ok",
        "check-config {}: {}\n{}",
        path.display(),
        text(&out.stderr),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

fn is_root() -> bool {
    let out = run(Command::new("id").arg("-u"));
    text(&out.stdout).trim() == "0"
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

// ---------------------------------------------------------------- systemd

#[test]
fn systemd_units_verify() {
    if !have("systemd-analyze") {
        println!("SKIPPED: no systemd-analyze (Debian package systemd)");
        return;
    }
    // verify wants ExecStart's binary to exist: point it at ours.
    let dir = TempDir::new("verify");
    let mut units = Vec::new();
    for name in [
        "getapr.service",
        "getapr-upstreams.path",
        "getapr-upstreams.service",
    ] {
        let unit = std::fs::read_to_string(repo("deploy/systemd").join(name)).unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, unit.replace("/usr/local/bin/getapr", BIN)).unwrap();
        units.push(path);
    }
    let out = run(Command::new("systemd-analyze").arg("verify").args(&units));
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // The exposure score, 0 (locked down) to 10 (unprotected).
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&units[0]));
    let report = text(&out.stdout);
    let score: f64 = report
        .lines()
        .find_map(|l| l.split("exposure level for getapr.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}{}", text(&out.stderr)));
    println!("systemd-analyze security: exposure {score}");
    assert!(score <= 2.0, "exposure {score}:\n{report}");
}

#[test]
fn shell_scripts_parse() {
    let scripts = [
        "deploy/install.sh",
        "deploy/openwrt/files/uci2toml.sh",
        "deploy/openwrt/files/getapr.init",
        "deploy/openwrt/files/getapr.uci-defaults",
        "tests/deploy/functions.sh",
    ];
    for s in scripts {
        let out = run(Command::new("sh").arg("-n").arg(repo(s)));
        assert!(out.status.success(), "sh -n {s}: {}", text(&out.stderr));
        if have("shellcheck") {
            // SC1090/SC1091: sourced files exist only on the target (OpenWrt's
            // /lib/functions.sh); SC2034: rc.common reads START/STOP/USE_PROCD;
            // SC2154: config_get assigns its variable through eval.
            let out = run(Command::new("shellcheck")
                .args(["-s", "sh", "-e", "SC1090,SC1091,SC2034,SC2154"])
                .arg(repo(s)));
            assert!(
                out.status.success(),
                "shellcheck {s}:\n{}",
                text(&out.stdout)
            );
        }
    }
}

// ------------------------------------------------------------- install.sh

fn install(root: &Path, args: &[&str]) -> Output {
    let out = run(Command::new("sh")
        .arg(repo("deploy/install.sh"))
        .arg("install")
        .arg(format!("--root={}", root.display()))
        .arg(format!("--bin={BIN}"))
        .args(args)
        .env_remove("DESTDIR"));
    assert!(
        out.status.success(),
        "install.sh install {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn uninstall(root: &Path, args: &[&str]) -> Output {
    let out = run(Command::new("sh")
        .arg(repo("deploy/install.sh"))
        .arg("uninstall")
        .arg(format!("--root={}", root.display()))
        .args(args));
    assert!(
        out.status.success(),
        "install.sh uninstall: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Every path under `root`, relative, sorted (directories end in `/`).
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if p.is_dir() && !p.is_symlink() {
                out.push(format!("{rel}/"));
                walk(root, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn install_stub_mode_and_uninstall_restores_the_symlink() {
    let root = TempDir::new("stub");
    let r = root.path();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::create_dir_all(r.join("run/systemd/resolve")).unwrap();
    std::fs::write(
        r.join("run/systemd/resolve/stub-resolv.conf"),
        "nameserver 127.0.0.53\nsearch lan\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        r.join("etc/resolv.conf"),
    )
    .unwrap();
    let before = tree(r);

    install(r, &["--resolved=stub", "--resolv-conf"]);
    let bin = r.join("usr/local/bin/getapr");
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(BIN).unwrap(),
        "the binary is copied as is"
    );
    let unit = r.join("etc/systemd/system/getapr.service");
    assert_eq!(mode(&unit), 0o644);
    assert_eq!(
        std::fs::read(&unit).unwrap(),
        std::fs::read(repo("deploy/systemd/getapr.service")).unwrap()
    );
    let dropin = r.join("etc/systemd/resolved.conf.d/getapr.conf");
    assert_eq!(
        std::fs::read(&dropin).unwrap(),
        std::fs::read(repo("deploy/systemd/resolved-stub.conf")).unwrap()
    );
    // resolved follows the links itself: no reload-on-change units.
    assert!(!r.join("etc/systemd/system/getapr-upstreams.path").exists());
    let conf = r.join("etc/getapr/getapr.toml");
    assert_eq!(mode(&conf), 0o644, "DynamicUser must be able to read it");
    let toml = std::fs::read_to_string(&conf).unwrap();
    assert!(toml.contains("\nlisten = [\"127.0.0.53:53\"]\n"), "{toml}");
    assert!(toml.contains("\nupstreams = [\"127.0.0.54\"]\n"), "{toml}");
    assert_config_ok(&conf);
    let resolv = r.join("etc/resolv.conf");
    assert!(!resolv.is_symlink());
    let now = std::fs::read_to_string(&resolv).unwrap();
    assert!(now.contains("\nnameserver 127.0.0.53\n"), "{now}");

    // A second install refuses rather than losing the first backup.
    let again = run(Command::new("sh")
        .arg(repo("deploy/install.sh"))
        .arg("install")
        .arg(format!("--root={}", r.display()))
        .arg(format!("--bin={BIN}")));
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("already installed"));

    uninstall(r, &["--purge"]);
    assert_eq!(
        std::fs::read_link(&resolv).unwrap(),
        Path::new("../run/systemd/resolve/stub-resolv.conf")
    );
    // Only directories install made are left: no file of ours.
    let after: Vec<String> = tree(r).into_iter().filter(|p| !p.ends_with('/')).collect();
    let before_files: Vec<String> = before.into_iter().filter(|p| !p.ends_with('/')).collect();
    assert_eq!(after, before_files);
}

#[test]
fn install_plain_host_keeps_an_existing_config_and_restores_resolv_conf_bytes() {
    let root = TempDir::new("plain");
    let r = root.path();
    std::fs::create_dir_all(r.join("etc/getapr")).unwrap();
    // Odd on purpose: no final newline, a comment, mode 0640.
    let original = b"# from DHCP\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions rotate";
    let resolv = r.join("etc/resolv.conf");
    std::fs::write(&resolv, original).unwrap();
    std::fs::set_permissions(&resolv, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mtime = std::fs::metadata(&resolv).unwrap().mtime();
    let mine = "# mine\n[dns]\nlisten = [\"127.0.0.53:53\"]\nupstreams = [\"192.0.2.53\"]\n";
    std::fs::write(r.join("etc/getapr/getapr.toml"), mine).unwrap();

    let out = install(r, &["--resolv-conf"]);
    assert!(text(&out.stdout).contains("kept the existing /etc/getapr/getapr.toml"));
    assert_eq!(
        std::fs::read_to_string(r.join("etc/getapr/getapr.toml")).unwrap(),
        mine
    );
    assert!(
        std::fs::read_to_string(&resolv)
            .unwrap()
            .contains("nameserver 127.0.0.53\n")
    );
    // The drop-in is only for resolved hosts.
    assert!(!r.join("etc/systemd/resolved.conf.d").exists());

    uninstall(r, &[]);
    assert_eq!(std::fs::read(&resolv).unwrap(), original);
    assert_eq!(mode(&resolv), 0o640);
    assert_eq!(std::fs::metadata(&resolv).unwrap().mtime(), mtime);
    // Without --purge the config stays; it was not ours anyway.
    assert_eq!(
        std::fs::read_to_string(r.join("etc/getapr/getapr.toml")).unwrap(),
        mine
    );
    assert!(!r.join("usr/local/bin/getapr").exists());
    assert!(!r.join("etc/systemd/system/getapr.service").exists());
    assert!(!r.join("var/lib/getapr-install").exists());
}

#[test]
fn install_plain_host_keeps_the_old_servers_as_upstreams() {
    let root = TempDir::new("plain-new");
    let r = root.path();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::write(r.join("etc/resolv.conf"), "nameserver 192.0.2.53\n").unwrap();
    install(r, &["--resolv-conf"]);
    let conf = r.join("etc/getapr/getapr.toml");
    let toml = std::fs::read_to_string(&conf).unwrap();
    assert!(
        toml.contains("\nresolv_conf = \"/etc/getapr/upstream-resolv.conf\"\n"),
        "{toml}"
    );
    assert_eq!(
        std::fs::read_to_string(r.join("etc/getapr/upstream-resolv.conf")).unwrap(),
        "nameserver 192.0.2.53\n"
    );
    assert!(r.join("etc/systemd/system/getapr-upstreams.path").exists());
    assert_config_ok(&conf);
    uninstall(r, &["--purge"]);
    assert_eq!(
        std::fs::read_to_string(r.join("etc/resolv.conf")).unwrap(),
        "nameserver 192.0.2.53\n"
    );
    assert!(!r.join("etc/getapr").exists());
}

#[test]
fn install_forward_mode_listens_beside_resolved() {
    let root = TempDir::new("forward");
    let r = root.path();
    install(r, &["--resolved=forward"]);
    let conf = r.join("etc/getapr/getapr.toml");
    let toml = std::fs::read_to_string(&conf).unwrap();
    assert!(toml.contains("\nlisten = [\"127.0.0.153:53\"]\n"), "{toml}");
    assert!(
        toml.contains("\nresolv_conf = \"/run/systemd/resolve/resolv.conf\"\n"),
        "{toml}"
    );
    assert_config_ok(&conf);
    assert_eq!(
        std::fs::read(r.join("etc/systemd/resolved.conf.d/getapr.conf")).unwrap(),
        std::fs::read(repo("deploy/systemd/resolved-forward.conf")).unwrap()
    );
    assert!(r.join("etc/systemd/system/getapr-upstreams.path").exists());
    // No --resolv-conf: resolv.conf was never created nor touched.
    assert!(!r.join("etc/resolv.conf").exists());
    uninstall(r, &["--purge"]);
    assert!(!r.join("etc/systemd/resolved.conf.d").exists());
}

// ----------------------------------------------------------------- OpenWrt

/// Runs `script` under /bin/sh with the functions.sh shim and the
/// translator loaded, UCI files read from `uci_dir`.
fn openwrt_sh(uci_dir: &Path, script: &str, env: &[(&str, &Path)]) -> Output {
    let prelude = format!(
        ". '{}'\n. '{}'\n",
        repo("tests/deploy/functions.sh").display(),
        repo("deploy/openwrt/files/uci2toml.sh").display()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("{prelude}{script}"))
        .env("UCI_CONFIG_DIR", uci_dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

#[test]
fn uci_to_toml_of_the_shipped_config_is_accepted() {
    let dir = TempDir::new("uci");
    let d = dir.path();
    std::fs::copy(repo("deploy/openwrt/files/getapr.config"), d.join("getapr")).unwrap();
    let out = openwrt_sh(d, "config_load getapr && getapr_uci2toml main", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let toml = text(&out.stdout);
    let toml_path = d.join("getapr.toml");
    std::fs::write(&toml_path, &toml).unwrap();
    assert_config_ok(&toml_path);
    // `allow` twice: under [dns] and under [http].
    assert!(
        toml.contains(
            "[http]\nlisten = [\"127.0.0.1:8053\", \"[::1]:8053\"]\n\
             allow = [\"127.0.0.0/8\", \"::1/128\"]\n"
        ),
        "{toml}"
    );
    for line in [
        "listen = [\"127.0.0.53:53\"]",
        "upstreams = [\"system\"]",
        "resolv_conf = \"/tmp/resolv.conf.d/resolv.conf.auto\"",
        "allow = [\"127.0.0.0/8\", \"::1/128\"]",
        "listen = [\"127.0.0.1:8053\", \"[::1]:8053\"]",
        "interval_ms = 15000",
        "targets = [\"1.1.1.1:443\", \"[2606:4700:4700::1111]:443\"]",
        "destinations = true",
        "filter = \"auto\"",
        "break_dnssec = false",
    ] {
        assert!(toml.lines().any(|l| l == line), "no `{line}` in:\n{toml}");
    }
}

#[test]
fn uci_to_toml_switches_off_and_quotes_safely() {
    let dir = TempDir::new("uci-edge");
    let d = dir.path();
    // http/probe off; a value with a quote and a backslash (shell-quoted the
    // way `uci export` writes it) must reach TOML as that exact string.
    std::fs::write(
        d.join("getapr"),
        "config getapr 'main'\n\
         \tlist listen '127.0.0.1:5353'\n\
         \tlist upstream '192.0.2.1'\n\
         \toption http '0'\n\
         \toption probe 'off'\n\
         \toption filter 'o\"f'\\''f\\'\n",
    )
    .unwrap();
    let out = openwrt_sh(d, "config_load getapr && getapr_uci2toml main", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let toml = text(&out.stdout);
    assert!(toml.contains("[http]\nlisten = []\n"), "{toml}");
    assert!(
        toml.contains("[probe]\ntargets = []\nstun = []\ndestinations = false\n"),
        "{toml}"
    );
    assert!(toml.contains("filter = \"o\\\"f'f\\\\\"\n"), "{toml}");
    let path = d.join("getapr.toml");
    std::fs::write(&path, &toml).unwrap();
    // It parses as TOML: the complaint is about the value, not the syntax.
    let out = check_config(&path);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("policy.filter") || err.contains("filter"),
        "{err}"
    );
    assert!(
        err.contains("o\\\"f'f\\\\") || err.contains("o\"f'f\\"),
        "{err}"
    );

    // Not a number; a newline inside a value: refused, nothing half-written.
    for (bad, why) in [
        ("\toption cache_size '10k'\n", "is not a number"),
        ("\tlist upstream '192.0.2.1\n[evil]'\n", "control character"),
        ("\toption break_dnssec 'maybe'\n", "is not a boolean"),
    ] {
        std::fs::write(d.join("getapr"), format!("config getapr 'main'\n{bad}")).unwrap();
        let out = openwrt_sh(d, "config_load getapr && getapr_uci2toml main", &[]);
        assert!(
            !out.status.success(),
            "{bad:?} accepted:\n{}",
            text(&out.stdout)
        );
        assert!(
            text(&out.stderr).contains(why),
            "{bad:?}: {}",
            text(&out.stderr)
        );
    }
}

/// procd's shell API, recorded instead of sent to ubus.
const PROCD_STUBS: &str = r#"
procd_open_instance() { echo "open_instance $*"; }
procd_set_param() { echo "set_param $*"; }
procd_close_instance() { echo "close_instance"; }
procd_send_signal() { echo "send_signal $*"; }
procd_add_reload_trigger() { echo "reload_trigger $*"; }
procd_add_interface_trigger() { echo "interface_trigger $*"; }
stop() { echo "stop"; }
"#;

#[test]
fn openwrt_init_script_starts_reloads_and_refuses_bad_uci_with_procd_stubbed() {
    let dir = TempDir::new("init");
    let d = dir.path();
    let toml = d.join("var/etc/getapr.toml");
    std::fs::copy(repo("deploy/openwrt/files/getapr.config"), d.join("getapr")).unwrap();
    let init = repo("deploy/openwrt/files/getapr.init");
    let lib = repo("deploy/openwrt/files/uci2toml.sh");
    let env = [
        ("GETAPR_PROG", Path::new(BIN)),
        ("GETAPR_TOML", toml.as_path()),
        ("GETAPR_LIB", lib.as_path()),
    ];
    let script = format!(
        "{PROCD_STUBS}\n. '{}'\nstart_service && service_triggers",
        init.display()
    );
    let out = openwrt_sh(d, &script, &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let calls = text(&out.stdout);
    let expected = format!(
        "open_instance \n\
         set_param command {BIN} serve -c {}\n\
         set_param respawn 3600 5 5\n\
         set_param stdout 1\n\
         set_param stderr 1\n\
         close_instance\n\
         reload_trigger getapr\n\
         interface_trigger interface.*.up wan /etc/init.d/getapr reload\n\
         interface_trigger interface.*.up wan6 /etc/init.d/getapr reload\n",
        toml.display()
    );
    assert_eq!(calls, expected);
    assert_config_ok(&toml);
    let good = std::fs::read(&toml).unwrap();

    // Reload: regenerated, then SIGHUP to the running instance.
    let script = format!("{PROCD_STUBS}\n. '{}'\nreload_service", init.display());
    let out = openwrt_sh(d, &script, &env);
    assert_eq!(text(&out.stdout), "send_signal getapr * HUP\n");

    // A value getapr rejects: no signal, and the running file is kept.
    let uci = std::fs::read_to_string(d.join("getapr")).unwrap();
    std::fs::write(
        d.join("getapr"),
        uci.replace("option filter 'auto'", "option filter 'sometimes'"),
    )
    .unwrap();
    let out = openwrt_sh(d, &script, &env);
    assert_eq!(text(&out.stdout), "");
    assert!(
        text(&out.stderr).contains("rejected"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&toml).unwrap(), good);
    assert!(!d.join("var/etc/getapr.toml.new").exists());

    // enabled=0: start does nothing, reload stops it.
    std::fs::write(
        d.join("getapr"),
        uci.replace("option enabled '1'", "option enabled '0'"),
    )
    .unwrap();
    let script = format!(
        "{PROCD_STUBS}\n. '{}'\nstart_service; reload_service",
        init.display()
    );
    let out = openwrt_sh(d, &script, &env);
    assert_eq!(text(&out.stdout), "stop\n");
}

// --------------------------------------------------------------- sd_notify

/// A loopback-only config: no sidecar, no probe traffic, an upstream port
/// that nothing listens on. Nothing leaves the machine.
fn loopback_config(dir: &Path) -> PathBuf {
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let upstream = closed.local_addr().unwrap();
    drop(closed);
    let path = dir.join("getapr.toml");
    std::fs::write(
        &path,
        format!(
            "[dns]\nlisten = [\"127.0.0.1:0\"]\nupstreams = [\"{upstream}\"]\n\
             [http]\nlisten = []\n\
             [probe]\ntargets = []\nstun = []\ndestinations = false\n"
        ),
    )
    .unwrap();
    path
}

struct Notified {
    sock: UnixDatagram,
}

impl Notified {
    fn bind(path: &Path) -> Notified {
        let sock = UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Notified { sock }
    }
    /// The next message other than WATCHDOG=1.
    fn next(&self) -> String {
        loop {
            let m = self.any();
            if m != "WATCHDOG=1" {
                return m;
            }
        }
    }
    fn any(&self) -> String {
        let mut buf = [0u8; 1024];
        loop {
            // A socket with a receive timeout returns EINTR when any signal
            // handler runs, SA_RESTART or not (signal(7)); the SIGCHLD
            // handler tokio installs for other tests' children is one.
            match self.sock.recv(&mut buf) {
                Ok(n) => return text(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("no notification within 10 s: {e}"),
            }
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

fn wait_exit(mut child: Child) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("getapr did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sd_notify_ready_reloading_stopping() {
    let dir = TempDir::new("notify");
    let config = loopback_config(dir.path());
    let sock = dir.path().join("notify.sock");
    let notified = Notified::bind(&sock);
    let child = Command::new(BIN)
        .args(["serve", "-c"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(notified.next(), "READY=1");
    signal(&child, "-HUP");
    assert_eq!(notified.next(), "RELOADING=1");
    assert_eq!(notified.next(), "READY=1");
    // A reload that fails still ends with READY=1 (the old config runs on).
    std::fs::write(&config, "[dns]\nbogus = 1\n").unwrap();
    signal(&child, "-HUP");
    assert_eq!(notified.next(), "RELOADING=1");
    assert_eq!(notified.next(), "READY=1");
    signal(&child, "-TERM");
    assert_eq!(notified.next(), "STOPPING=1");
    let (code, err) = wait_exit(child);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("reload failed"), "{err}");
}

#[test]
fn sd_notify_watchdog_every_half_period() {
    let dir = TempDir::new("watchdog");
    let config = loopback_config(dir.path());
    let sock = dir.path().join("notify.sock");
    let notified = Notified::bind(&sock);
    let child = Command::new(BIN)
        .args(["serve", "-c"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut pings = 0;
    let mut ready = false;
    while pings < 5 {
        match notified.any().as_str() {
            "WATCHDOG=1" => pings += 1,
            "READY=1" => ready = true,
            other => panic!("unexpected {other}"),
        }
    }
    let took = start.elapsed();
    assert!(ready);
    // Every 100 ms: five pings (the first at once) in about 400 ms.
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    signal(&child, "-TERM");
    let (code, err) = wait_exit(child);
    assert_eq!(code, Some(0), "{err}");

    // WATCHDOG_PID naming another process: no pings for us.
    let sock = dir.path().join("notify2.sock");
    let notified = Notified::bind(&sock);
    let child = Command::new(BIN)
        .args(["serve", "-c"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock)
        .env("WATCHDOG_USEC", "200000")
        .env("WATCHDOG_PID", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(notified.any(), "READY=1");
    notified
        .sock
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        notified.sock.recv(&mut buf).is_err(),
        "a ping for another pid"
    );
    signal(&child, "-TERM");
    wait_exit(child);
}

// ------------------------------------------- the errors deploy/README.md quotes

/// The message of getapr's last log line (after the level).
fn error_message(stderr: &str) -> String {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("ERROR"))
        .unwrap_or_else(|| panic!("no ERROR in {stderr}"));
    line.split("ERROR").nth(1).unwrap().trim().to_string()
}

#[test]
fn readme_quotes_the_sidecar_port_in_use_error() {
    let dir = TempDir::new("http-inuse");
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap();
    let config = loopback_config(dir.path());
    let toml = std::fs::read_to_string(&config).unwrap().replace(
        "[http]\nlisten = []",
        &format!("[http]\nlisten = [\"{addr}\"]"),
    );
    std::fs::write(&config, toml).unwrap();
    let out = run(Command::new(BIN).args(["serve", "-c"]).arg(&config));
    assert_eq!(out.status.code(), Some(1));
    let msg = error_message(&text(&out.stderr)).replace(&addr.to_string(), "127.0.0.1:80");
    let readme = std::fs::read_to_string(repo("deploy/README.md")).unwrap();
    assert!(
        readme.contains(&msg),
        "deploy/README.md does not quote the error as it is now:\n{msg}"
    );
}

#[test]
fn readme_quotes_the_port_in_use_error() {
    let dir = TempDir::new("inuse");
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap();
    let config = loopback_config(dir.path());
    let toml = std::fs::read_to_string(&config)
        .unwrap()
        .replace("127.0.0.1:0", &addr.to_string());
    std::fs::write(&config, toml).unwrap();
    let out = run(Command::new(BIN).args(["serve", "-c"]).arg(&config));
    assert_eq!(out.status.code(), Some(1));
    let msg = error_message(&text(&out.stderr)).replace(&addr.to_string(), "127.0.0.53:53");
    let readme = std::fs::read_to_string(repo("deploy/README.md")).unwrap();
    assert!(
        readme.contains(&msg),
        "deploy/README.md does not quote the error as it is now:\n{msg}"
    );
}

/// Binding port 53 without CAP_NET_BIND_SERVICE, as `nobody`, in a network
/// namespace of its own (where ip_unprivileged_port_start is the kernel's
/// 1024 whatever the host set).
#[test]
fn readme_quotes_the_missing_capability_error() {
    if !is_root() || !have("unshare") || !have("setpriv") {
        println!("SKIPPED: needs root, unshare and setpriv");
        return;
    }
    let dir = TempDir::new("nocap");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = loopback_config(dir.path());
    let toml = std::fs::read_to_string(&config)
        .unwrap()
        .replace("127.0.0.1:0", "127.0.0.53:53");
    std::fs::write(&config, toml).unwrap();
    let script = format!(
        "ip link set lo up && exec setpriv --reuid=65534 --regid=65534 --clear-groups \
         --inh-caps=-all --bounding-set=-all '{BIN}' serve -c '{}'",
        config.display()
    );
    let out = run(Command::new("unshare").args(["--net", "--", "sh", "-c", &script]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let msg = error_message(&text(&out.stderr));
    let readme = std::fs::read_to_string(repo("deploy/README.md")).unwrap();
    assert!(
        readme.contains(&msg),
        "deploy/README.md does not quote the error as it is now:\n{msg}"
    );
}

// ------------------------------------------- install, run, uninstall

/// In a network namespace with its own mount namespace: install.sh into a
/// root directory (stub set-up, resolv.conf switched), then the daemon
/// started the way the unit starts it (its ExecStart, as an unprivileged
/// user holding only CAP_NET_BIND_SERVICE), `kdig @127.0.0.53` answered
/// through it, `getapr status` answered by the sidecar on port 80, and
/// uninstall restoring resolv.conf.
#[test]
fn netns_install_run_query_uninstall() {
    let required = std::env::var_os("GETAPR_NETNS_REQUIRED").is_some();
    let missing: Vec<&str> = ["unshare", "setpriv", "kdig", "python3", "ip"]
        .into_iter()
        .filter(|c| !have(c))
        .collect();
    if !is_root() || !missing.is_empty() {
        assert!(!required, "needs root and {missing:?}");
        println!("SKIPPED: needs root and {missing:?}");
        return;
    }
    let root = TempDir::new("netns");
    let r = root.path();
    // The unprivileged daemon must reach its binary and config.
    std::fs::set_permissions(r, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::create_dir_all(r.join("run/systemd/resolve")).unwrap();
    std::fs::write(
        r.join("run/systemd/resolve/stub-resolv.conf"),
        "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        r.join("etc/resolv.conf"),
    )
    .unwrap();
    let script = format!(
        r#"set -eu
R='{root}'
mount --make-rprivate /
ip link set lo up
# resolved's proxy stub, played by a responder: every A query gets 192.0.2.7.
python3 - <<'PY' &
import socket, threading
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.54", 53))
while True:
    q, peer = s.recvfrom(1500)
    end = 12 + q[12:].index(0) + 5
    r = q[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + q[12:end]
    r += b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([192, 0, 2, 7])
    s.sendto(r, peer)
PY
responder=$!
sh '{install}' install --root="$R" --bin='{bin}' --resolved=stub --resolv-conf
# No probe traffic (there is nowhere to go from this namespace anyway).
sed -i -e 's/^targets = .*/targets = []/' -e 's/^stun = .*/stun = []/' \
    -e 's/^destinations = .*/destinations = false/' "$R/etc/getapr/getapr.toml"
"$R/usr/local/bin/getapr" check-config "$R/etc/getapr/getapr.toml"
# ExecStart of the installed unit, with the paths under $R.
exec_start=$(sed -n 's/^ExecStart=//p' "$R/etc/systemd/system/getapr.service" |
    sed -e "s#/usr/local/bin/#$R/usr/local/bin/#" -e "s#/etc/getapr/#$R/etc/getapr/#")
echo "starting: $exec_start"
setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs \
    --inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service \
    --bounding-set=-all,+net_bind_service $exec_start &
daemon=$!
answer=
for _ in $(seq 50); do
    answer=$(kdig @127.0.0.53 +short +timeout=1 +retry=0 example.com A 2>/dev/null || true)
    [ -n "$answer" ] && break
    sleep 0.1
done
echo "kdig answer: $answer"
# The sidecar on port 80, bound with the same capability.
status=0
"$R/usr/local/bin/getapr" status --api http://127.0.0.1:80 || status=$?
echo "getapr status exit: $status"
kill -TERM "$daemon"
rc=0
wait "$daemon" || rc=$?
echo "daemon exit: $rc"
kill "$responder"
sh '{install}' uninstall --root="$R" --purge
[ "$answer" = 192.0.2.7 ]
"#,
        root = r.display(),
        install = repo("deploy/install.sh").display(),
        bin = BIN,
    );
    let out = run(Command::new("unshare").args(["--net", "--mount", "--", "sh", "-c", &script]));
    let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
    println!("{log}");
    assert!(out.status.success(), "{log}");
    assert!(log.contains("kdig answer: 192.0.2.7"), "{log}");
    assert!(log.contains("daemon exit: 0"), "{log}");
    assert!(log.contains("getapr status exit: 0"), "{log}");
    assert_eq!(
        std::fs::read_link(r.join("etc/resolv.conf")).unwrap(),
        Path::new("../run/systemd/resolve/stub-resolv.conf")
    );
}

/// The `[[package]]` entries of Cargo.lock, as (name, version, the lines
/// of its `dependencies` list).
fn locked_packages() -> Vec<(String, String, Vec<String>)> {
    let lock = std::fs::read_to_string(repo("Cargo.lock")).expect("read Cargo.lock");
    lock.split("[[package]]")
        .skip(1)
        .map(|entry| {
            let field = |key: &str| {
                entry
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
                    .map(|v| v.trim_end_matches('"').to_owned())
                    .unwrap_or_default()
            };
            let deps = entry
                .lines()
                .skip_while(|l| !l.starts_with("dependencies = ["))
                .skip(1)
                .take_while(|l| !l.starts_with(']'))
                .map(|l| l.trim().trim_matches([',', '"']).to_owned())
                .collect();
            (field("name"), field("version"), deps)
        })
        .collect()
}

/// The binary stays small: `idna_adapter` is the 1.0 stub (no Unicode
/// tables, see Cargo.toml), and getapr uses the same `rand` as
/// hickory-proto, so only one is built into it.
#[test]
fn the_lock_file_keeps_the_small_dependency_choices() {
    let packages = locked_packages();
    let version = |name: &str| -> Vec<&str> {
        (packages.iter())
            .filter(|(n, _, _)| n == name)
            .map(|(_, v, _)| v.as_str())
            .collect()
    };
    let idna = version("idna_adapter");
    assert!(
        !idna.is_empty() && idna.iter().all(|v| v.starts_with("1.0.")),
        "idna_adapter must stay on 1.0.x (run `cargo update -p idna_adapter --precise 1.0.0`), Cargo.lock has {idna:?}"
    );
    let rand_of = |name: &str| -> Vec<String> {
        (packages.iter())
            .filter(|(n, _, _)| n == name)
            .flat_map(|(_, _, deps)| deps.iter().filter(|d| d.starts_with("rand")).cloned())
            .collect()
    };
    let ours = rand_of("getapr");
    let hickory = rand_of("hickory-proto");
    assert!(
        !ours.is_empty() && ours == hickory,
        "getapr and hickory-proto should use one rand: getapr {ours:?}, hickory-proto {hickory:?}"
    );
}
