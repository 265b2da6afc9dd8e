//! systemd's service notification protocol (`sd_notify(3)`): `READY=1` once
//! the listeners serve, `RELOADING=1` … `READY=1` around a SIGHUP reload,
//! `STOPPING=1` on shutdown, and `WATCHDOG=1` every half `WATCHDOG_USEC`.
//!
//! The protocol is one datagram per message, `KEY=VALUE` lines, to the
//! `AF_UNIX` socket named by `$NOTIFY_SOCKET`: a path, or an abstract name
//! when it starts with `@`. That is a few lines of std, so no crate (and no
//! unsafe code). Without `$NOTIFY_SOCKET` (not started by systemd, or
//! `Type=simple`) every call is a no-op.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where and how often to notify, read once from the environment at start.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<OsString>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// `$NOTIFY_SOCKET`, and the watchdog interval from `$WATCHDOG_USEC`
    /// (for us only when `$WATCHDOG_PID`, if set, is our pid).
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty());
        let watchdog = watchdog_interval(
            std::env::var_os("WATCHDOG_USEC").as_deref(),
            std::env::var_os("WATCHDOG_PID").as_deref(),
            std::process::id(),
        );
        Notifier { socket, watchdog }
    }

    /// The listeners are bound and serving (or a reload has finished).
    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// A reload starts; [`Notifier::ready`] ends it, whatever its outcome.
    pub fn reloading(&self) {
        self.send("RELOADING=1");
    }

    /// Shutdown has begun (queries in flight are being drained).
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// How often systemd wants `WATCHDOG=1`: half its `WatchdogSec=`, as
    /// `sd_watchdog_enabled(3)` recommends. `None` when it wants none.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.socket.is_some())
    }

    /// Sends `WATCHDOG=1` every [`Notifier::watchdog`] interval from a task
    /// on the daemon's runtime: a runtime that stops scheduling tasks stops
    /// the pings too, and systemd restarts the service.
    pub fn spawn_watchdog(&self) {
        let Some(every) = self.watchdog() else { return };
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.send("WATCHDOG=1");
            }
        });
    }

    fn send(&self, state: &str) {
        if let Some(socket) = &self.socket
            && let Err(e) = send(socket, state)
        {
            tracing::warn!("sd_notify {state} to {}: {e}", socket.to_string_lossy());
        }
    }
}

/// Sends one notification datagram `state` (`"READY=1"`, several lines
/// allowed) to `socket`, spelled as in `$NOTIFY_SOCKET`: an absolute path,
/// or `@name` for the abstract namespace.
pub fn send(socket: &OsStr, state: &str) -> io::Result<()> {
    let addr = address(socket)?;
    let sock = UnixDatagram::unbound()?;
    let sent = sock.send_to_addr(state.as_bytes(), &addr)?;
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short write of a notification datagram",
        ));
    }
    Ok(())
}

fn address(socket: &OsStr) -> io::Result<SocketAddr> {
    let bytes = socket.as_bytes();
    match bytes.first() {
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(&bytes[1..])
        }
        Some(b'/') => SocketAddr::from_pathname(socket),
        // systemd also knows `vsock:CID:PORT` (VMs); not a case for us.
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither an absolute path nor an @abstract name",
        )),
    }
}

/// Half of `WATCHDOG_USEC`, when it is a positive number and `WATCHDOG_PID`
/// is unset or names `own_pid` (the variables may have been inherited by a
/// process systemd does not watch).
pub fn watchdog_interval(
    usec: Option<&OsStr>,
    pid: Option<&OsStr>,
    own_pid: u32,
) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.to_str()?.trim().parse::<u32>().ok()? != own_pid
    {
        return None;
    }
    let usec: u64 = usec?.to_str()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("getapr-notify-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn sends_to_a_path() {
        let dir = tempdir("path");
        let path = dir.join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        send(path.as_os_str(), "STATUS=two\nWATCHDOG=1").unwrap();
        assert_eq!(recv(&listener), "READY=1");
        assert_eq!(recv(&listener), "STATUS=two\nWATCHDOG=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sends_to_an_abstract_name() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("getapr-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        send(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        assert_eq!(recv(&listener), "STOPPING=1");
    }

    #[test]
    fn refuses_what_is_not_a_socket_name() {
        let err = send(OsStr::new("relative/path"), "READY=1").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        // Nobody listening: an error, which the notifier only logs.
        let dir = tempdir("none");
        assert!(send(dir.join("absent").as_os_str(), "READY=1").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn no_socket_means_no_op() {
        let n = Notifier::default();
        n.ready();
        n.reloading();
        n.stopping();
        assert_eq!(n.watchdog(), None);
    }

    #[test]
    fn watchdog_is_half_the_usec_and_only_for_our_pid() {
        let usec = Some(OsStr::new("30000000"));
        assert_eq!(
            watchdog_interval(usec, None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval(usec, Some(OsStr::new("7")), 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(watchdog_interval(usec, Some(OsStr::new("8")), 7), None);
        assert_eq!(watchdog_interval(usec, Some(OsStr::new("x")), 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
        assert_eq!(watchdog_interval(Some(OsStr::new("0")), None, 7), None);
        assert_eq!(watchdog_interval(Some(OsStr::new("-5")), None, 7), None);
        assert_eq!(
            watchdog_interval(Some(OsStr::new("200000")), None, 7),
            Some(Duration::from_millis(100))
        );
    }
}
