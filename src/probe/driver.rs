//! The probe engine's hands: sockets bound to one source address.
//!
//! Each probe binds its socket to the source it tests, so the kernel routes
//! it as an application using that source would be routed (including
//! source-specific routes, RFC 8028), and a link-local source or target
//! carries its scope id.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::engine::{Engine, FLIGHT_BYTES, Kind, LARGE_HELLO, ProbeRequest, ProbeResult};
use super::syn_sent::{self, SynSent};
use super::verdicts::{Mtu, Verdicts};
use super::{stun, tls};
use crate::inventory::Snapshot;
use crate::inventory::ndopt::UserOpts;
use crate::metrics::Probes;

/// What the rest of the daemon tells the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// An address seen in an answer; `public_name` when the query name is
    /// not a local one.
    Learn { addr: IpAddr, public_name: bool },
    /// The NAT64 prefixes found by RFC 7050 discovery.
    Nat64(Vec<ipnet::Ipv6Net>),
    /// The NAT64 prefixes of the config (`dns64.prefixes`), after a reload.
    Nat64Config(Vec<ipnet::Ipv6Net>),
    /// The PREF64 options of a router advertisement (RFC 8781).
    RouterAdvertisement(UserOpts),
}

/// Runs `engine` until `stop`: sends the probes it asks for, feeds their
/// outcomes, inventory changes, applications' connects stuck in SYN-SENT
/// and `inputs` back, and publishes each new verdict snapshot into
/// `verdicts` for lock-free readers. Counts each probe in `metrics` by its
/// source, and each round started early by its trigger; each NAT64 prefix
/// that gave way to the bounds of the table of advertised ones in
/// `nat64_evicted`.
pub async fn run(
    mut engine: Engine,
    mut inventory: watch::Receiver<Arc<Snapshot>>,
    mut inputs: mpsc::Receiver<Input>,
    verdicts: Arc<ArcSwap<Verdicts>>,
    metrics: Probes,
    nat64_evicted: prometheus_client::metrics::counter::Counter,
    stop: CancellationToken,
) {
    let (tx, mut rx) = mpsc::channel::<(u64, ProbeResult)>(256);
    let (stuck_tx, mut stuck_rx) = mpsc::channel::<Vec<SynSent>>(4);
    if engine.wants_stuck_connects() {
        tokio::spawn(watch_stuck_connects(stuck_tx, stop.clone()));
    }
    engine.set_inventory(Instant::now(), &inventory.borrow_and_update());
    loop {
        let probes = engine.poll(Instant::now());
        for early in engine.take_early_rounds() {
            metrics.early_round(early.trigger.as_str());
            tracing::info!(
                source = %early.source,
                "probe round started early: {}",
                early.trigger.as_str()
            );
        }
        for probe in probes {
            let tx = tx.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let (id, source) = (probe.id, probe.source);
                metrics.sent(source);
                let outcome = match probe.kind {
                    Kind::Large {
                        target,
                        connect,
                        flight,
                        mss,
                    } => {
                        let from = scoped(source, 0, probe.scope_id);
                        match large_connect(from, target, connect, mss).await {
                            Ok((Some(stream), rtt)) => {
                                // The connect is the round's target probe;
                                // the flight follows as a second report.
                                let _ = tx.send((id, ProbeResult::Reachable { rtt })).await;
                                let (bytes, stalled) = large_flight(stream, flight).await;
                                let flight = ProbeResult::Flight {
                                    rtt,
                                    bytes,
                                    stalled,
                                };
                                let _ = tx.send((id, flight)).await;
                                return;
                            }
                            Ok((None, rtt)) => ProbeResult::Reachable { rtt },
                            Err(_) => ProbeResult::Unreachable,
                        }
                    }
                    _ => send(probe).await,
                };
                if outcome == ProbeResult::Unreachable {
                    metrics.failed(source);
                }
                let _ = tx.send((id, outcome)).await;
            });
        }
        if let Some(v) = engine.publish() {
            log_changes(&verdicts.load(), &v);
            verdicts.store(v);
        }
        let wake = engine.next_wakeup().map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(3600),
            tokio::time::Instant::from_std,
        );
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(wake) => {}
            Some((id, outcome)) = rx.recv() => engine.handle(Instant::now(), id, outcome),
            Some(stuck) = stuck_rx.recv() => {
                for connect in stuck {
                    let Some(started) = engine.syn_stuck(Instant::now(), connect.dest) else {
                        continue;
                    };
                    metrics.stuck_connect(connect.dest.ip());
                    if !started.is_empty() {
                        tracing::info!(
                            from = %connect.source,
                            "connect to {} stuck in SYN-SENT: probing its family now",
                            connect.dest
                        );
                    }
                }
            }
            Some(input) = inputs.recv() => match input {
                Input::Learn { addr, public_name } => engine.learn(Instant::now(), addr, public_name),
                Input::Nat64(prefixes) => engine.set_nat64_prefixes(prefixes),
                Input::Nat64Config(prefixes) => engine.set_config_nat64(&prefixes),
                Input::RouterAdvertisement(ra) => {
                    let evicted =
                        engine.router_advertisement(Instant::now(), ra.ifindex, ra.router, &ra.pref64);
                    if evicted > 0 {
                        // Once: a flood of advertisements must not flood
                        // the log too; the counter has the rest.
                        if nat64_evicted.get() == 0 {
                            tracing::warn!(
                                "NAT64: advertised prefixes give way to the table's bound (16 \
                                 per interface, 64 in all); counted in \
                                 getapr_limits_hit_total{{limit=\"nat64_prefixes\"}}"
                            );
                        }
                        nat64_evicted.inc_by(evicted as u64);
                    }
                }
            },
            changed = inventory.changed() => {
                if changed.is_err() {
                    return;
                }
                engine.set_inventory(Instant::now(), &inventory.borrow_and_update());
            }
        }
    }
}

/// How often the kernel's table of connects in SYN-SENT is read. A connect
/// counts as stuck after its first SYN retransmission (1 s); reading four
/// times a second adds at most a quarter of a second to that. A read is
/// one netlink dump of the sockets in that one state, filtered by the
/// kernel: no network traffic, and little work on a busy host.
const STUCK_POLL: Duration = Duration::from_millis(250);

/// After a failed read (no sock_diag in this kernel, a seccomp filter),
/// the next try waits this long.
const STUCK_RETRY: Duration = Duration::from_secs(30);

/// Reads the connects stuck in SYN-SENT every [`STUCK_POLL`] and sends the
/// ones not seen stuck at the previous read to `tx`, until `stop` or until
/// the driver is gone. A failed read is logged once per run of failures.
async fn watch_stuck_connects(tx: mpsc::Sender<Vec<SynSent>>, stop: CancellationToken) {
    let mut seen: HashSet<(SocketAddr, SocketAddr)> = HashSet::new();
    let mut failing = false;
    loop {
        let read = tokio::task::spawn_blocking(syn_sent::dump)
            .await
            .unwrap_or_else(|join| Err(io::Error::other(format!("sock_diag task: {join}"))));
        let wait = match read {
            Ok(all) => {
                if failing {
                    tracing::info!("sock_diag: readable again");
                    failing = false;
                }
                let stuck: Vec<SynSent> = all.into_iter().filter(SynSent::stuck).collect();
                let now: HashSet<(SocketAddr, SocketAddr)> =
                    stuck.iter().map(|s| (s.source, s.dest)).collect();
                let new: Vec<SynSent> = (stuck.into_iter())
                    .filter(|s| !seen.contains(&(s.source, s.dest)))
                    .collect();
                seen = now;
                if !new.is_empty() && tx.send(new).await.is_err() {
                    return;
                }
                STUCK_POLL
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        "sock_diag: {e}; stuck connects are not watched (retrying every {}s)",
                        STUCK_RETRY.as_secs()
                    );
                }
                failing = true;
                STUCK_RETRY
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tx.closed() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// One log line per source whose state changed, so an operator sees an
/// uplink die or come back without asking.
fn log_changes(old: &Verdicts, new: &Verdicts) {
    if old.nat64_prefixes != new.nat64_prefixes {
        let now: Vec<String> = (new.nat64.iter())
            .map(|p| match &p.interface {
                Some(i) => format!("{} ({} on {i})", p.prefix, p.source.as_str()),
                None => format!("{} ({})", p.prefix, p.source.as_str()),
            })
            .collect();
        tracing::info!("NAT64 prefixes: {}", now.join(", "));
    }
    if old.flags != new.flags {
        let on: Vec<&str> = new
            .flags
            .named()
            .iter()
            .filter(|(_, v)| *v)
            .map(|(n, _)| *n)
            .collect();
        tracing::info!(
            "flags: {} gateways {} {}",
            on.join(" "),
            new.flags.def_gateway4.as_deref().unwrap_or("-"),
            new.flags.def_gateway6.as_deref().unwrap_or("-")
        );
    }
    for (family, was, is) in [
        ("IPv4", old.path_mtu.ipv4, new.path_mtu.ipv4),
        ("IPv6", old.path_mtu.ipv6, new.path_mtu.ipv6),
    ] {
        if was != is {
            let why = match is {
                Mtu::Blackhole => {
                    ": small probes answered, large ones stall (full-size packets are dropped \
                     and no Packet Too Big comes back)"
                }
                _ => "",
            };
            tracing::info!("path MTU {family} {}{why}", is.as_str());
        }
    }
    for s in &new.sources {
        let before = old.source(s.address, s.scope_id).map(|o| o.state);
        if before != Some(s.state) {
            tracing::info!(
                source = %s.address,
                interface = %s.interface,
                "source {}",
                s.state.as_str()
            );
        }
    }
}

/// Sends one probe and waits for its outcome (bounded by its deadline).
async fn send(probe: ProbeRequest) -> ProbeResult {
    let timeout = probe.deadline.saturating_duration_since(Instant::now());
    let source = scoped(probe.source, 0, probe.scope_id);
    match probe.kind {
        Kind::Tcp(target) | Kind::Large { target, .. } => {
            match tcp(source, target, timeout).await {
                Ok(rtt) => ProbeResult::Reachable { rtt },
                Err(_) => ProbeResult::Unreachable,
            }
        }
        Kind::Stun(server) => {
            let id: stun::TransactionId = rand::random();
            let request = stun::binding_request(&id);
            match udp_exchange(source, server, &request, timeout, |b| {
                stun::parse_response(b, &id).ok()
            })
            .await
            {
                Ok((mapped, rtt)) => ProbeResult::StunMapped { rtt, mapped },
                Err(_) => ProbeResult::Unreachable,
            }
        }
    }
}

/// Why a probe found no path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("timed out")]
    Timeout,
    /// ICMP unreachable (host, network, admin prohibited) or no route.
    #[error("unreachable")]
    Unreachable,
    /// The source address is gone (or not yet usable) on this host.
    #[error("source address not available")]
    SourceGone,
    #[error("{0:?}")]
    Other(io::ErrorKind),
}

/// The socket address for `ip` with its scope id when it is link-local.
pub fn scoped(ip: IpAddr, port: u16, scope_id: u32) -> SocketAddr {
    match ip {
        IpAddr::V6(v6) if v6.is_unicast_link_local() => {
            SocketAddrV6::new(v6, port, 0, scope_id).into()
        }
        _ => SocketAddr::new(ip, port),
    }
}

/// A TCP handshake from `source` to `target`. A completed handshake and a
/// refused connection (RST) both prove the path both ways and return the
/// round-trip time; a timeout or an ICMP error does not.
pub async fn tcp(
    source: SocketAddr,
    target: SocketAddr,
    timeout: Duration,
) -> Result<Duration, Failure> {
    let socket = match source {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(classify)?;
    socket.bind(source).map_err(classify)?;
    let start = Instant::now();
    match tokio::time::timeout(timeout, socket.connect(target)).await {
        Err(_) => Err(Failure::Timeout),
        Ok(Ok(_stream)) => Ok(start.elapsed()),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(start.elapsed()),
        Ok(Err(e)) => Err(classify(e)),
    }
}

/// The connect of a path-MTU probe, from `source` to `target` within
/// `connect`: the stream and the handshake's time, or no stream when the
/// target refused (a RST proves the path, as for any target probe, but
/// carries no flight). With `mss` (a proof), TCP_MAXSEG is set before the
/// SYN, so both sides send segments of at most that size.
pub async fn large_connect(
    source: SocketAddr,
    target: SocketAddr,
    connect: Duration,
    mss: Option<u32>,
) -> Result<(Option<TcpStream>, Duration), Failure> {
    let domain = match source {
        SocketAddr::V4(_) => socket2::Domain::IPV4,
        SocketAddr::V6(_) => socket2::Domain::IPV6,
    };
    let raw = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
        .map_err(classify)?;
    if let Some(mss) = mss {
        raw.set_tcp_mss(mss).map_err(classify)?;
    }
    raw.set_nonblocking(true).map_err(classify)?;
    let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(raw));
    socket.bind(source).map_err(classify)?;
    let start = Instant::now();
    match tokio::time::timeout(connect, socket.connect(target)).await {
        Err(_) => Err(Failure::Timeout),
        Ok(Ok(stream)) => Ok((Some(stream), start.elapsed())),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Ok((None, start.elapsed())),
        Ok(Err(e)) => Err(classify(e)),
    }
}

/// The rest of a path-MTU probe: sends a ClientHello of [`LARGE_HELLO`]
/// bytes on `stream` and reads for up to `flight` from then (not from the
/// SYN: on a slow path the handshake would eat the budget) until
/// [`FLIGHT_BYTES`] arrived or the server closed. Returns the bytes read
/// and whether it stopped at the deadline with the connection still open.
/// The reply is counted, never parsed.
pub async fn large_flight(mut stream: TcpStream, flight: Duration) -> (usize, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hello = tls::client_hello(&rand::random(), &rand::random(), LARGE_HELLO);
    let deadline = tokio::time::Instant::now() + flight;
    match tokio::time::timeout_at(deadline, stream.write_all(&hello)).await {
        Err(_) => return (0, true),
        Ok(Err(_)) => return (0, false),
        Ok(Ok(())) => {}
    }
    let mut buf = vec![0u8; 16 * 1024];
    let mut bytes = 0usize;
    while bytes < FLIGHT_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (bytes, true),
            Ok(Ok(0) | Err(_)) => return (bytes, false),
            Ok(Ok(n)) => bytes = bytes.saturating_add(n),
        }
    }
    (bytes, false)
}

/// Sends `request` from `source` to `server` over UDP and waits for a
/// datagram from `server` that `accept` takes (e.g. a STUN response with
/// the request's transaction id); anything else is ignored.
pub async fn udp_exchange<T>(
    source: SocketAddr,
    server: SocketAddr,
    request: &[u8],
    timeout: Duration,
    accept: impl Fn(&[u8]) -> Option<T>,
) -> Result<(T, Duration), Failure> {
    let socket = UdpSocket::bind(source).await.map_err(classify)?;
    socket.connect(server).await.map_err(classify)?;
    let start = Instant::now();
    socket.send(request).await.map_err(classify)?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = vec![0u8; 1500];
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| Failure::Timeout)?
            .map_err(classify)?;
        if let Some(got) = buf.get(..n).and_then(&accept) {
            return Ok((got, start.elapsed()));
        }
    }
}

fn classify(e: io::Error) -> Failure {
    use io::ErrorKind::*;
    match e.kind() {
        TimedOut => Failure::Timeout,
        HostUnreachable | NetworkUnreachable | ConnectionRefused | PermissionDenied => {
            Failure::Unreachable
        }
        AddrNotAvailable => Failure::SourceGone,
        kind => Failure::Other(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listener_and_a_refusal_both_prove_the_path() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        let src: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert!(tcp(src, open, Duration::from_secs(1)).await.is_ok());
        drop(listener);
        // Nothing listens any more: the kernel answers RST.
        assert!(tcp(src, open, Duration::from_secs(1)).await.is_ok());
    }

    #[tokio::test]
    async fn a_source_not_on_this_host_is_reported() {
        let src: SocketAddr = "192.0.2.123:0".parse().unwrap();
        let dst: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(
            tcp(src, dst, Duration::from_secs(1)).await,
            Err(Failure::SourceGone)
        );
    }

    #[tokio::test]
    async fn udp_exchange_ignores_what_it_does_not_accept() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let (_, peer) = server.recv_from(&mut buf).await.unwrap();
            server.send_to(b"noise", peer).await.unwrap();
            server.send_to(b"answer", peer).await.unwrap();
        });
        let src: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (got, _) = udp_exchange(src, addr, b"hello", Duration::from_secs(1), |b| {
            (b == b"answer").then_some(b.len())
        })
        .await
        .unwrap();
        assert_eq!(got, 6);
        // No answer at all: a timeout.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let r = udp_exchange(
            src,
            silent.local_addr().unwrap(),
            b"x",
            Duration::from_millis(100),
            |_| Some(()),
        )
        .await;
        assert_eq!(r.unwrap_err(), Failure::Timeout);
    }

    #[test]
    fn link_local_addresses_carry_their_scope() {
        let ll = scoped("fe80::1".parse().unwrap(), 443, 7);
        assert_eq!(ll.to_string(), "[fe80::1%7]:443");
        let global = scoped("2001:db8::1".parse().unwrap(), 443, 7);
        assert_eq!(global.to_string(), "[2001:db8::1]:443");
    }
}
