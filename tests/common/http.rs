//! The HTTP sidecar, in process: [`sidecar`] runs the daemon with DNS and
//! HTTP on `127.0.0.1:0` forwarding to a test upstream, and the client
//! side reads responses off the wire as they are (no HTTP client library:
//! the tests look at exact status lines, headers and resets).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use getapr::api::Limits;
use getapr::config::{Config, Source};
use getapr::daemon::{Daemon, Handle};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::daemon::{config_toml, parse};

/// [`config_toml`]'s config (DNS on `127.0.0.1:0` forwarding to
/// `upstream`, probing and filtering off, upstream timeout 500 ms) with
/// the sidecar on `http` (TOML list items, e.g. `"\"127.0.0.1:0\""`;
/// empty: off).
pub fn config(upstream: SocketAddr, http: &str) -> Config {
    config_with(upstream, http, "")
}

/// [`config`] with more `[http]` keys, one per line (e.g. `allow =
/// ["127.0.0.1/32"]`).
pub fn config_with(upstream: SocketAddr, http: &str, http_extra: &str) -> Config {
    let text = config_toml(&[upstream], "timeout_ms = 500").replace(
        "[http]\nlisten = []",
        &format!("[http]\nlisten = [{http}]\n{http_extra}"),
    );
    parse(&text)
}

/// A running daemon with its sidecar.
#[derive(Debug)]
pub struct Sidecar {
    pub handle: Handle,
    /// The first DNS listen address.
    pub dns: SocketAddr,
    /// The sidecar's listen address.
    pub http: SocketAddr,
}

/// Binds the daemon with [`config`] and `limits`, and runs it in a task
/// of the test's runtime.
pub async fn sidecar(upstream: SocketAddr, limits: Limits) -> Sidecar {
    sidecar_with(upstream, limits, "").await
}

/// [`sidecar`] with more `[http]` keys (see [`config_with`]).
pub async fn sidecar_with(upstream: SocketAddr, limits: Limits, http_extra: &str) -> Sidecar {
    let config = config_with(upstream, "\"127.0.0.1:0\"", http_extra);
    let daemon = Daemon::bind(config, Source::Embedded)
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"))
        .with_http_limits(limits);
    let dns = daemon.dns_addrs()[0];
    let http = daemon.http_addrs()[0];
    assert_ne!(http.port(), 0, "the bound port is reported");
    let handle = daemon.handle();
    tokio::spawn(daemon.run());
    Sidecar { handle, dns, http }
}

/// `getapr_limits_hit_total{limit="LIMIT"}` as the daemon counts it now.
pub fn limit_hits(handle: &Handle, limit: &str) -> u64 {
    let series = format!("getapr_limits_hit_total{{limit=\"{limit}\"}} ");
    let text = handle.metrics_text();
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .unwrap_or_else(|| panic!("no {series}in:\n{text}"))
        .parse()
        .unwrap_or_else(|e| panic!("{series}: {e}"))
}

/// A response as read off the wire.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// A 4xx/5xx body: `{"error": "..."}` with a non-empty message.
    pub fn error(&self, status: u16) {
        assert_eq!(self.status, status, "{self:?}");
        let v = self.json();
        let message = v["error"].as_str().unwrap_or_else(|| panic!("{v}"));
        assert!(!message.is_empty());
        assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    }
}

/// Sends `request` as it is and reads one response (the request should
/// say `Connection: close`).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
        .await
        .expect("the response comes")
        .unwrap();
    parse_response(&bytes).unwrap_or_else(|| {
        panic!(
            "not an HTTP response: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

/// Like [`raw`], for a server under load or refusing the request: the
/// write may fail (the server answered and closed before reading it all)
/// and the connection may be reset after the response. What counts is
/// whether a whole response arrived within `wait`; `Err` says what came
/// instead.
pub async fn exchange(
    addr: SocketAddr,
    request: &[u8],
    wait: Duration,
) -> Result<Response, String> {
    exchange_from(None, addr, request, wait).await
}

/// [`exchange`] from the local address `source` (any port), when given.
/// All of 127.0.0.0/8 is this host's on Linux: a client from 127.0.0.2
/// needs no root and nothing added.
pub async fn exchange_from(
    source: Option<IpAddr>,
    addr: SocketAddr,
    request: &[u8],
    wait: Duration,
) -> Result<Response, String> {
    let mut bytes = Vec::new();
    let attempt = tokio::time::timeout(wait, async {
        let mut stream = match source {
            None => TcpStream::connect(addr).await?,
            Some(ip) => connect_from(ip, addr).await?,
        };
        // Read whatever arrives even when the write failed.
        let written = stream.write_all(request).await;
        stream.read_to_end(&mut bytes).await?;
        written
    })
    .await;
    parse_response(&bytes).ok_or_else(|| {
        format!(
            "no response within {wait:?} ({attempt:?}), got {:?}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

/// A connection to `addr` from `source` (any port).
pub async fn connect_from(source: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

/// `GET target` with `Host: localhost` from `source`, as [`exchange_from`]
/// sends it (a refused client may see a reset after its answer).
pub async fn get_from(source: IpAddr, addr: SocketAddr, target: &str) -> Result<Response, String> {
    let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    exchange_from(
        Some(source),
        addr,
        request.as_bytes(),
        Duration::from_secs(10),
    )
    .await
}

pub fn parse_response(bytes: &[u8]) -> Option<Response> {
    parse_head_or_response(bytes, true)
}

/// `check_length` false: a response to HEAD, whose Content-Length is that
/// of the body a GET would get.
pub fn parse_head_or_response(bytes: &[u8], check_length: bool) -> Option<Response> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status = status_line
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.to_string(), v.trim().to_string())
        })
        .collect::<Vec<_>>();
    if let Some((_, len)) = headers
        .iter()
        .filter(|_| check_length)
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        assert_eq!(len.parse::<usize>().ok()?, body.len(), "content-length");
    }
    Some(Response {
        status,
        headers,
        body: body.to_string(),
    })
}

/// `GET target` with `Host: localhost` and `extra` header lines.
pub async fn get_with(addr: SocketAddr, target: &str, extra: &str) -> Response {
    let request =
        format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n");
    raw(addr, request.as_bytes()).await
}

pub async fn get(addr: SocketAddr, target: &str) -> Response {
    get_with(addr, target, "").await
}
