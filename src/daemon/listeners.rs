//! The listeners: binding the DNS (UDP + TCP, one UDP socket per worker)
//! and sidecar sockets, with a hint when a bind fails, and starting their
//! serving tasks.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Error, Service};
use crate::api::{self, Api};
use crate::dns::server::{self, Shared};

#[derive(Debug)]
pub(super) struct Listener {
    /// As configured (the port may be 0).
    pub(super) configured: SocketAddr,
    pub(super) local: SocketAddr,
    /// One UDP socket per worker, and the TCP listener.
    sockets: Option<(Vec<Arc<UdpSocket>>, TcpListener)>,
    pub(super) stop: CancellationToken,
    pub(super) tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
pub(super) struct HttpListener {
    pub(super) configured: SocketAddr,
    pub(super) local: SocketAddr,
    socket: Option<TcpListener>,
    pub(super) stop: CancellationToken,
    pub(super) task: Option<JoinHandle<()>>,
}

impl Listener {
    pub(super) fn start(&mut self, shared: &Arc<Shared>) {
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
    pub(super) fn start(&mut self, api: &Arc<Api>) {
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
pub(super) fn http_hosts(http: &[HttpListener]) -> Vec<IpAddr> {
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

/// Binds one `dns.listen` address: UDP, then TCP on the port UDP got (for
/// port 0 the kernel picks one; if TCP finds it taken, another is tried),
/// and with several workers one UDP socket each (SO_REUSEPORT), so each
/// worker thread reads its own share of the datagrams.
pub(super) fn bind_listener(addr: SocketAddr, workers: usize) -> Result<Listener, Error> {
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
pub(super) fn bind_http(addr: SocketAddr) -> Result<HttpListener, Error> {
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
