//! Wiring: binds the listeners, runs them, reloads and shuts down.
//!
//! Every server function takes its sockets and its stop signal from here, so
//! tests run the real daemon on `127.0.0.1:0` in-process.
//!
//! [`Daemon`] and its [`Handle`] live here with `run`, the loop that serves
//! until shutdown and then drains; `listeners` binds the sockets, `reload`
//! applies a new configuration, `probes` starts the probe engine and what
//! feeds it, `signals` is `getapr serve` (signals, systemd readiness).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::api::{self, Api};
use crate::config::{Config, Source};
use crate::dns::server::{Settings, Shared};
use crate::dns::upstream::{self, Pool};

mod error;
mod listeners;
mod probes;
mod reload;
mod signals;

pub use error::{Error, Service};
use listeners::{HttpListener, Listener, bind_http, bind_listener, http_hosts};
use probes::start_probes;
pub use signals::serve;

/// How long shutdown waits for queries in flight.
const DRAIN: Duration = Duration::from_secs(2);

/// A bound, not yet running daemon.
#[derive(Debug)]
pub struct Daemon {
    shared: Arc<Shared>,
    config: Config,
    listeners: Vec<Listener>,
    /// The HTTP sidecar's listeners and what they share.
    http: Vec<HttpListener>,
    api: Arc<Api>,
    commands: mpsc::Receiver<Command>,
    handle: Handle,
    /// Stops the probe engine of the running configuration.
    probes: CancellationToken,
}

/// Controls a running daemon.
#[derive(Debug, Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    stop: CancellationToken,
    verdicts: Arc<arc_swap::ArcSwap<crate::probe::verdicts::Verdicts>>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
enum Command {
    Reload(Box<Config>, oneshot::Sender<Result<(), Error>>),
}

impl Handle {
    /// Applies a new configuration atomically: everything it needs (upstreams,
    /// new listen sockets) is prepared first; on any error nothing changes.
    pub async fn reload(&self, config: Config) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Reload(Box::new(config), tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Where the probe engine publishes its verdicts. Tests that cannot run
    /// a network lab publish their own here (with probing off, nothing else
    /// writes it).
    #[doc(hidden)]
    pub fn verdicts(&self) -> &Arc<arc_swap::ArcSwap<crate::probe::verdicts::Verdicts>> {
        &self.verdicts
    }

    /// `/metrics` as the sidecar serves it, for tests without the sidecar.
    #[doc(hidden)]
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.encode()
    }

    /// Stops accepting queries; `run` returns once those in flight are
    /// answered, or after 2 s.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }
}

impl Daemon {
    /// Resolves the upstreams and binds every `dns.listen` address, UDP and
    /// TCP on the same port, and every `http.listen` address.
    pub async fn bind(config: Config, source: Source) -> Result<Daemon, Error> {
        let settings = settings(&config)?;
        let mut listeners = Vec::new();
        for &addr in &config.dns.listen {
            listeners.push(bind_listener(addr, config.dns.workers)?);
        }
        let mut http = Vec::new();
        for &addr in &config.http.listen {
            http.push(bind_http(addr)?);
        }
        let upstreams: Vec<String> = settings.pool.addrs().map(|a| a.to_string()).collect();
        let listen: Vec<String> = listeners.iter().map(|l| l.local.to_string()).collect();
        let from = match &source {
            Source::File(p) => p.display().to_string(),
            Source::Embedded => "embedded default".to_string(),
        };
        tracing::info!(
            "getapr {} listening on {} (udp+tcp), upstreams {}, config {from}",
            env!("CARGO_PKG_VERSION"),
            listen.join(", "),
            upstreams.join(", ")
        );
        if !http.is_empty() {
            let addrs: Vec<String> = http.iter().map(|l| l.local.to_string()).collect();
            tracing::info!("HTTP sidecar on {}", addrs.join(", "));
        }
        let (tx, rx) = mpsc::channel(4);
        let shared = Arc::new(Shared::new(settings, config.dns.cache_size));
        let api = Arc::new(Api::new(Arc::clone(&shared), api::Limits::default()));
        api.set_hosts(http_hosts(&http));
        api.set_allow(config.http.allow.clone());
        api.set_dns64(config.dns64.synthesize);
        api.set_interfaces(
            config.probe.interfaces.clone(),
            config.probe.exclude_interfaces.clone(),
        );
        Ok(Daemon {
            config,
            listeners,
            http,
            api,
            commands: rx,
            handle: Handle {
                commands: tx,
                stop: CancellationToken::new(),
                verdicts: Arc::clone(&shared.verdicts),
                shared: Arc::clone(&shared),
            },
            shared,
            probes: CancellationToken::new(),
        })
    }

    /// The bound DNS addresses, one per `dns.listen` entry.
    pub fn dns_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.local).collect()
    }

    /// The bound HTTP sidecar addresses, one per `http.listen` entry.
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.http.iter().map(|l| l.local).collect()
    }

    /// Other sidecar limits than the defaults (tests: a short header
    /// timeout, a small connection cap). Call before [`Daemon::run`].
    #[doc(hidden)]
    pub fn with_http_limits(mut self, limits: api::Limits) -> Daemon {
        let api = Api::new(Arc::clone(&self.shared), limits);
        api.set_hosts(self.api.hosts());
        api.set_allow(self.api.allow());
        api.set_dns64(self.config.dns64.synthesize);
        api.set_interfaces(
            self.config.probe.interfaces.clone(),
            self.config.probe.exclude_interfaces.clone(),
        );
        self.api = Arc::new(api);
        self
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Serves until [`Handle::shutdown`], then drains.
    pub async fn run(mut self) -> Result<(), Error> {
        for l in &mut self.listeners {
            l.start(&self.shared);
        }
        for l in &mut self.http {
            l.start(&self.api);
        }
        start_probes(
            &self.shared,
            &self.config.probe,
            &self.config.dns64.prefixes,
            &self.probes,
        );
        let stop = self.handle.stop.clone();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Reload(config, reply)) => {
                        let _ = reply.send(self.apply(*config));
                    }
                    None => break,
                },
            }
        }
        self.probes.cancel();
        for l in &self.listeners {
            l.stop.cancel();
        }
        for l in &self.http {
            l.stop.cancel();
        }
        for l in &mut self.listeners {
            for t in l.tasks.drain(..) {
                let _ = t.await;
            }
        }
        for l in &mut self.http {
            if let Some(t) = l.task.take() {
                let _ = t.await;
            }
        }
        self.shared.tracker.close();
        if tokio::time::timeout(DRAIN, self.shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "{} queries still in flight after {DRAIN:?}; exiting anyway",
                self.shared.tracker.len()
            );
        }
        Ok(())
    }
}

fn settings(config: &Config) -> Result<Settings, Error> {
    let addrs = upstream::addresses(&config.dns).map_err(Error::Upstreams)?;
    Ok(Settings {
        allow: config.dns.allow.clone(),
        udp_cap: config.dns.udp_max_size,
        pool: Arc::new(Pool::new(
            addrs,
            config.dns.timeout,
            config.dns.max_inflight,
        )),
        tcp_max_connections: config.dns.tcp_max_connections,
        policy: config.policy.clone(),
        serve_stale: config.dns.serve_stale,
        failure_cache: config.dns.failure_cache,
        dns64: config.dns64.synthesize,
    })
}
