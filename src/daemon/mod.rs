//! Wiring: binds the listeners, runs them, reloads and shuts down.
//!
//! Every server function takes its sockets and its stop signal from here, so
//! tests run the real daemon on `127.0.0.1:0` in-process.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, Api};
use crate::config::{self, Config, Source};
use crate::dns::server::{self, Settings, Shared};
use crate::dns::upstream::{self, Pool};
use crate::dns::wire::rtype;
use crate::inventory::{self, Snapshot};
use crate::probe::{driver, engine};
use crate::sync::lock;

/// How long shutdown waits for queries in flight.
const DRAIN: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot be used (exit 2).
    #[error("{0}")]
    Config(#[from] config::Error),
    /// The configuration names upstreams that cannot be found (exit 2).
    #[error("dns.upstreams: {0}")]
    Upstreams(String),
    /// A listen address cannot be bound (exit 1).
    #[error("{service} {addr}: {source}{hint}")]
    Bind {
        service: Service,
        addr: SocketAddr,
        source: io::Error,
        hint: &'static str,
    },
    #[error("the daemon has stopped")]
    Stopped,
    #[error("{0}")]
    Runtime(#[from] io::Error),
}

/// Which listener a [`Error::Bind`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `dns.listen`: UDP and TCP.
    Dns,
    /// `http.listen`: the HTTP sidecar.
    Http,
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Service::Dns => "dns.listen",
            Service::Http => "http.listen (HTTP sidecar)",
        })
    }
}

impl Error {
    /// Exit status for `getapr serve`: 2 for a bad configuration, 1 for a
    /// runtime failure such as a port in use.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Upstreams(_) => 2,
            _ => 1,
        }
    }
}

/// Runs the daemon on `config`, what [`Config::discover`] found for
/// `explicit` (the caller loads it first: `dns.workers` sizes the runtime),
/// with signals: SIGTERM/SIGINT drain and stop, SIGHUP discovers the
/// configuration again the same way and reloads it.
pub async fn serve(explicit: Option<PathBuf>, config: Config, source: Source) -> Result<(), Error> {
    use tokio::signal::unix::{SignalKind, signal};
    // Installed before binding anything, so an early SIGHUP cannot kill us.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let daemon = Daemon::bind(config, source).await?;
    let handle = daemon.handle();
    // systemd (Type=notify): READY=1 from this task, which first runs once
    // `run` below has started every listener (the sockets are bound and
    // listening already, so nothing sent after READY=1 is lost).
    let notify = crate::notify::Notifier::from_env();
    notify.spawn_watchdog();
    tokio::spawn(async move {
        notify.ready();
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    notify.reloading();
                    let reloaded = match Config::discover(explicit.as_deref()) {
                        Ok((config, _)) => handle.reload(config).await,
                        Err(e) => Err(e.into()),
                    };
                    match reloaded {
                        Ok(()) => tracing::info!("configuration reloaded"),
                        Err(e) => tracing::error!("reload failed, keeping the running configuration: {e}"),
                    }
                    notify.ready();
                }
            }
        }
        notify.stopping();
        tracing::info!("stopping: draining queries in flight");
        handle.shutdown();
    });
    daemon.run().await
}

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

#[derive(Debug)]
struct Listener {
    /// As configured (the port may be 0).
    configured: SocketAddr,
    local: SocketAddr,
    /// One UDP socket per worker, and the TCP listener.
    sockets: Option<(Vec<Arc<UdpSocket>>, TcpListener)>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct HttpListener {
    configured: SocketAddr,
    local: SocketAddr,
    socket: Option<TcpListener>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
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
        start_probes(&self.shared, &self.config.probe, &self.probes);
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

    fn apply(&mut self, config: Config) -> Result<(), Error> {
        let settings = settings(&config)?;
        let mut fresh = Vec::new();
        for &addr in &config.dns.listen {
            if !self.listeners.iter().any(|l| l.configured == addr) {
                // Dropping `fresh` on error closes what was bound so far.
                fresh.push(bind_listener(addr, self.config.dns.workers)?);
            }
        }
        let mut fresh_http = Vec::new();
        for &addr in &config.http.listen {
            if !self.http.iter().any(|l| l.configured == addr) {
                fresh_http.push(bind_http(addr)?);
            }
        }
        // Nothing can fail from here on.
        // Before any new sidecar listener starts, so none answers by the
        // old `http.allow`.
        self.api.set_allow(config.http.allow.clone());
        let old = self.shared.settings.load();
        let same_upstreams = old.pool.addrs().eq(settings.pool.addrs());
        self.shared.settings.store(Arc::new(settings));
        {
            let mut cache = lock(&self.shared.cache);
            if !same_upstreams {
                // Answers from resolvers the user just replaced are not kept.
                cache.clear();
            }
            if config.dns.cache_size != self.config.dns.cache_size {
                cache.resize(config.dns.cache_size);
            }
        }
        self.listeners.retain(|l| {
            let keep = config.dns.listen.contains(&l.configured);
            if !keep {
                l.stop.cancel();
            }
            keep
        });
        for mut l in fresh {
            l.start(&self.shared);
            self.listeners.push(l);
        }
        self.http.retain(|l| {
            let keep = config.http.listen.contains(&l.configured);
            if !keep {
                l.stop.cancel();
            }
            keep
        });
        for mut l in fresh_http {
            l.start(&self.api);
            self.http.push(l);
        }
        self.api.set_hosts(http_hosts(&self.http));
        if config.probe.interfaces != self.config.probe.interfaces
            || config.probe.exclude_interfaces != self.config.probe.exclude_interfaces
        {
            self.api.set_interfaces(
                config.probe.interfaces.clone(),
                config.probe.exclude_interfaces.clone(),
            );
        }
        if config.probe != self.config.probe {
            self.probes.cancel();
            self.probes = CancellationToken::new();
            start_probes(&self.shared, &config.probe, &self.probes);
        }
        self.config = config;
        Ok(())
    }
}

impl Listener {
    fn start(&mut self, shared: &Arc<Shared>) {
        if let Some((udp, tcp)) = self.sockets.take() {
            for socket in udp {
                self.tasks.push(tokio::spawn(server::serve_udp(
                    Arc::clone(shared),
                    socket,
                    self.stop.clone(),
                )));
            }
            self.tasks.push(tokio::spawn(server::serve_tcp(
                Arc::clone(shared),
                tcp,
                self.stop.clone(),
            )));
        }
    }
}

impl HttpListener {
    fn start(&mut self, api: &Arc<Api>) {
        if let Some(socket) = self.socket.take() {
            self.task = Some(tokio::spawn(api::serve(
                Arc::clone(api),
                socket,
                self.stop.clone(),
            )));
        }
    }
}

/// The addresses the sidecar's `Host` guard accepts besides loopback: each
/// listen address as configured and as bound.
fn http_hosts(http: &[HttpListener]) -> Vec<IpAddr> {
    let mut hosts = Vec::new();
    for l in http {
        for ip in [l.configured.ip(), l.local.ip()] {
            if !hosts.contains(&ip) {
                hosts.push(ip);
            }
        }
    }
    hosts
}

/// Starts the inventory watch and the probe engine, unless the
/// configuration asks for no probe traffic at all (docs/interface.md).
fn start_probes(shared: &Arc<Shared>, probe: &config::Probe, stop: &CancellationToken) {
    if probe.targets.is_empty() && probe.stun.is_empty() && !probe.destinations {
        return;
    }
    let shared = Arc::clone(shared);
    let probe = probe.clone();
    let stop = stop.clone();
    tokio::spawn(async move {
        // STUN names are resolved through our own upstreams; DNS is served
        // meanwhile, and sources stay `unknown` until the first round.
        let stun = tokio::select! {
            () = stop.cancelled() => return,
            s = stun_servers(&shared, &probe.stun) => s,
        };
        let engine = engine::Engine::new(engine::EngineConfig::new(&probe, stun, rand::random()));
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(Snapshot::default()));
        let (include, exclude) = (probe.interfaces.clone(), probe.exclude_interfaces.clone());
        let host = move || {
            inventory::Inventory::snapshot(&inventory::System).map(|s| s.filter(&include, &exclude))
        };
        let watcher = tokio::spawn(inventory::watch(host, inventory::POLL, tx));
        let (inputs, inputs_rx) = tokio::sync::mpsc::channel(1024);
        let nat64 = tokio::spawn(discover_nat64(
            Arc::clone(&shared),
            inputs.clone(),
            probe.interval,
        ));
        shared.probe_inputs.store(Some(Arc::new(inputs)));
        let (verdicts, metrics) = (Arc::clone(&shared.verdicts), shared.metrics.probes.clone());
        driver::run(engine, rx, inputs_rx, verdicts, metrics, stop).await;
        shared.probe_inputs.store(None);
        nat64.abort();
        watcher.abort();
    });
}

/// RFC 7050: the AAAA records of `ipv4only.arpa`, asked through our
/// upstreams (a DNS64 resolver synthesizes them), reveal the NAT64
/// prefixes. Asked again when the answer's TTL runs out (it comes from our
/// cache until then), at least every `floor` and at most hourly.
async fn discover_nat64(
    shared: Arc<Shared>,
    tx: tokio::sync::mpsc::Sender<driver::Input>,
    floor: Duration,
) {
    let mut known = None;
    loop {
        let (prefixes, ttl) = match shared
            .lookup(crate::probe::nat64::WELL_KNOWN_NAME, rtype::AAAA)
            .await
        {
            Ok(reply) => {
                let v6: Vec<std::net::Ipv6Addr> = reply
                    .addresses()
                    .into_iter()
                    .filter_map(|a| match a {
                        std::net::IpAddr::V6(v6) => Some(v6),
                        std::net::IpAddr::V4(_) => None,
                    })
                    .collect();
                let ttl = reply.min_ttl().or(reply.negative_ttl()).unwrap_or(0);
                (
                    crate::probe::nat64::discover(&v6),
                    Duration::from_secs(u64::from(ttl)),
                )
            }
            Err(_) => {
                // Upstreams down: keep what we knew and ask again soon.
                tokio::time::sleep(floor).await;
                continue;
            }
        };
        if known.as_ref() != Some(&prefixes) {
            if !prefixes.is_empty() {
                tracing::info!("NAT64 prefixes (RFC 7050): {prefixes:?}");
            }
            if tx
                .send(driver::Input::Nat64(prefixes.clone()))
                .await
                .is_err()
            {
                return;
            }
            known = Some(prefixes);
        }
        tokio::time::sleep(ttl.clamp(floor, Duration::from_secs(3600))).await;
    }
}

/// The STUN servers' addresses: IP literals as they are, names looked up
/// (A and AAAA). A name that does not resolve is left out, with a warning.
async fn stun_servers(shared: &Arc<Shared>, servers: &[config::HostPort]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for s in servers {
        if let Ok(ip) = s.host.parse() {
            out.push(SocketAddr::new(ip, s.port));
            continue;
        }
        let before = out.len();
        for qtype in [rtype::A, rtype::AAAA] {
            if let Ok(reply) = shared.lookup(&s.host, qtype).await {
                out.extend(
                    reply
                        .addresses()
                        .into_iter()
                        .map(|ip| SocketAddr::new(ip, s.port)),
                );
            }
        }
        if out.len() == before {
            tracing::warn!(
                "probe.stun: {} does not resolve; NAT detection through it is off",
                s.host
            );
        }
    }
    out
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
    })
}

/// Binds UDP, then TCP on the port UDP got (for port 0 the kernel picks one;
/// if TCP finds it taken we try another).
/// Binds one `dns.listen` address: UDP and TCP on the same port, and with
/// several workers one UDP socket each (SO_REUSEPORT), so each worker
/// thread reads its own share of the datagrams.
fn bind_listener(addr: SocketAddr, workers: usize) -> Result<Listener, Error> {
    let err = |source: io::Error| Error::Bind {
        service: Service::Dns,
        addr,
        hint: hint(&source, Service::Dns),
        source,
    };
    let reuse_port = workers > 1;
    for _ in 0..16 {
        let udp = bind_udp(addr, reuse_port).map_err(err)?;
        let local = udp.local_addr().map_err(err)?;
        match bind_tcp(local) {
            Ok(tcp) => {
                let mut udp = vec![Arc::new(udp)];
                for _ in 1..workers {
                    udp.push(Arc::new(bind_udp(local, true).map_err(err)?));
                }
                return Ok(Listener {
                    configured: addr,
                    local,
                    sockets: Some((udp, tcp)),
                    stop: CancellationToken::new(),
                    tasks: Vec::new(),
                });
            }
            Err(e) if addr.port() == 0 && e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(err(e)),
        }
    }
    Err(err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no port free for both UDP and TCP",
    )))
}

/// Binds one `http.listen` address.
fn bind_http(addr: SocketAddr) -> Result<HttpListener, Error> {
    let err = |source: io::Error| Error::Bind {
        service: Service::Http,
        addr,
        hint: hint(&source, Service::Http),
        source,
    };
    let socket = bind_tcp(addr).map_err(err)?;
    let local = socket.local_addr().map_err(err)?;
    Ok(HttpListener {
        configured: addr,
        local,
        socket: Some(socket),
        stop: CancellationToken::new(),
        task: None,
    })
}

fn hint(e: &io::Error, service: Service) -> &'static str {
    match e.kind() {
        io::ErrorKind::AddrInUse if service == Service::Http => {
            " (another web server holds it; choose other http.listen addresses, \
             or `listen = []` to turn the sidecar off)"
        }
        io::ErrorKind::PermissionDenied if service == Service::Http => {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE; without root, give http.listen \
             a high port such as 127.0.0.1:8053)"
        }
        io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE; to try getapr without root, \
             listen on a high port such as 127.0.0.1:5353)"
        }
        io::ErrorKind::AddrInUse => {
            " (another DNS server holds it: on systemd hosts systemd-resolved owns 127.0.0.53:53, \
             see README.md)"
        }
        io::ErrorKind::AddrNotAvailable => " (no interface has this address)",
        _ => "",
    }
}

fn new_socket(addr: SocketAddr, ty: socket2::Type) -> io::Result<socket2::Socket> {
    let sock = socket2::Socket::new(socket2::Domain::for_address(addr), ty, None)?;
    if addr.is_ipv6() {
        // So that [::]:53 and 0.0.0.0:53 can both be listed.
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    Ok(sock)
}

fn bind_udp(addr: SocketAddr, reuse_port: bool) -> io::Result<UdpSocket> {
    let sock = new_socket(addr, socket2::Type::DGRAM)?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = new_socket(addr, socket2::Type::STREAM)?;
    // A restart must not fail on connections of the previous run in TIME_WAIT.
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    TcpListener::from_std(sock.into())
}
