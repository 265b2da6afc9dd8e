//! getapr itself, in process: [`start_getapr`] binds the real daemon on
//! `127.0.0.1:0` (UDP and TCP) and runs it on the test's runtime.

use std::fmt::Write as _;
use std::net::SocketAddr;

use getapr::config::{Config, Source};
use getapr::daemon::{Daemon, Error, Handle};
use tokio::task::JoinHandle;

/// A config for tests: DNS on `127.0.0.1:0` forwarding to `upstreams` in
/// order; the HTTP sidecar off, no probe traffic and no filtering, so
/// getapr is a plain forwarding stub. `dns_extra` is more `[dns]` keys,
/// one per line (e.g. `timeout_ms = 300`, `cache_size = 0`).
pub fn config_toml(upstreams: &[SocketAddr], dns_extra: &str) -> String {
    let mut upstream_list = String::new();
    for (i, upstream) in upstreams.iter().enumerate() {
        if i > 0 {
            upstream_list.push_str(", ");
        }
        write!(upstream_list, "\"{upstream}\"").expect("write to String");
    }
    format!(
        r#"[dns]
listen = ["127.0.0.1:0"]
upstreams = [{upstream_list}]
{dns_extra}

[http]
listen = []

[probe]
targets = []
stun = []
destinations = false

[policy]
filter = "off"
"#
    )
}

/// Parses `toml`, binds the daemon and spawns its `run()`; returns the
/// handle (for reload and shutdown) and the first DNS listen address.
/// The daemon stops with the test's runtime if nobody shuts it down.
pub async fn start_getapr(toml: &str) -> (Handle, SocketAddr) {
    let running = spawn_getapr(toml).await;
    (running.handle, running.addr)
}

/// A daemon running in a task of the test's runtime.
#[derive(Debug)]
pub struct Running {
    pub handle: Handle,
    /// The first DNS listen address.
    pub addr: SocketAddr,
    /// `run()`'s result, for tests of shutdown.
    pub run: JoinHandle<Result<(), Error>>,
}

/// Like [`start_getapr`], keeping the task that runs the daemon.
pub async fn spawn_getapr(toml: &str) -> Running {
    let config = parse(toml);
    let daemon = Daemon::bind(config, Source::Embedded)
        .await
        .unwrap_or_else(|error| panic!("bind failed: {error}"));
    let addrs = daemon.dns_addrs();
    let addr = *addrs.first().expect("the daemon reports its DNS address");
    let handle = daemon.handle();
    let run = tokio::spawn(daemon.run());
    Running { handle, addr, run }
}

/// `Config::parse`, panicking with the text when it is rejected.
pub fn parse(toml: &str) -> Config {
    Config::parse(toml).unwrap_or_else(|error| panic!("config rejected: {error}\n{toml}"))
}
