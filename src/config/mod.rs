//! Configuration: raw TOML (serde, `deny_unknown_fields`) → validated [`Config`].
//!
//! Two stages, as in ripgrep's low/high args: the private `Raw*` structs
//! mirror the file and keep the byte span of every value that gets validated
//! (`toml::Spanned`); validation turns them into the public types, so no
//! unchecked string gets past this module and every error can point at
//! `LINE:COL`. Keys left out take the values of [`Config::default`].
//!
//! Validation is pure: it reads no files beyond the config itself and asks
//! the OS nothing. That is why IPv6 zones must be numeric interface indexes
//! (`fe80::1%2`): resolving `%eth0` is I/O, and its answer changes as
//! interfaces come and go.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

/// The embedded default configuration (annotated), used when no file exists.
pub const DEFAULT_TEXT: &str = include_str!("../../config/getapr.toml");

/// Where [`Config::discover`] looks when no file is named.
pub const DEFAULT_PATH: &str = "/etc/getapr/getapr.toml";

/// Where a configuration came from (for logs and reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Embedded,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub dns: Dns,
    pub http: Http,
    pub probe: Probe,
    pub policy: Policy,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dns {
    /// Non-empty, no duplicates. Port 0 is allowed (an ephemeral port, for tests).
    pub listen: Vec<SocketAddr>,
    /// Non-empty; never one of `listen` (a forwarding loop).
    pub upstreams: Vec<Upstream>,
    pub resolv_conf: PathBuf,
    /// Per upstream try.
    pub timeout: Duration,
    /// Entries; 0 = no cache.
    pub cache_size: usize,
    /// Normalised: host bits cleared.
    pub allow: Vec<IpNet>,
    /// Cap on the UDP reply size to EDNS clients.
    pub udp_max_size: u16,
    /// Cap on upstream queries in flight.
    pub max_inflight: usize,
    pub tcp_max_connections: usize,
    /// Threads answering queries, each with its own UDP socket per listen
    /// address (SO_REUSEPORT); read at start only.
    pub workers: usize,
    /// How long past its TTL an answer may still be served when every
    /// upstream fails (RFC 8767); zero = never.
    pub serve_stale: Duration,
    /// How long a name whose resolution failed is answered without asking
    /// the upstreams again (RFC 9520); zero = always ask.
    pub failure_cache: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// The nameservers of `dns.resolv_conf`, minus our own listen addresses.
    System,
    /// Port non-zero; a link-local IPv6 address carries its scope id.
    Addr(SocketAddr),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Http {
    /// Empty = sidecar off.
    pub listen: Vec<SocketAddr>,
    /// Clients the sidecar answers at all; others get 403. Host bits
    /// cleared, as in `dns.allow`; empty = nobody.
    pub allow: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub interval: Duration,
    /// Per probe; less than `interval`.
    pub timeout: Duration,
    pub targets: Vec<SocketAddr>,
    pub stun: Vec<HostPort>,
    pub destinations: bool,
    /// Interfaces whose addresses are probed and used as sources; empty =
    /// all. A trailing `*` matches by prefix (`wan*`).
    pub interfaces: Vec<String>,
    /// Interfaces left out (wins over `interfaces`), e.g. VPN or container
    /// bridges.
    pub exclude_interfaces: Vec<String>,
}

/// A STUN server. `host` is a DNS name or an IP literal (IPv6 without
/// brackets), so `host.parse::<IpAddr>()` tells which; `port` is non-zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub filter: Filter,
    pub break_dnssec: bool,
    /// The RFC 6724 policy table `/pairs` sorts with.
    pub table: crate::policy::Table,
    /// RFC 8305 §4 "First Address Family Count" of `/pairs` (1..=16).
    pub first_family_count: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Off,
    Auto,
}

impl Config {
    /// Parses and validates TOML text. Errors carry a position but no path.
    /// The fuzz target's entry point (`fuzz/fuzz_targets/config.rs`,
    /// replayed by `tests/fuzz_corpus.rs`): any bytes, read as text, give a
    /// config or an error with a position, never a panic; a config that
    /// parses parses again to the same.
    #[doc(hidden)]
    pub fn exercise(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        match Config::parse(&text) {
            Ok(config) => assert_eq!(Config::parse(&text).ok(), Some(config)),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }

    pub fn parse(text: &str) -> Result<Config, Error> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| Error {
            path: None,
            position: e.span().map(|span| Position::at(text, span.start)),
            // toml's Display adds a source snippet over several lines; we
            // print our own `LINE:COL:` prefix, so keep the message alone.
            message: e.message().lines().next().unwrap_or_default().to_owned(),
        })?;
        raw.validate().map_err(|invalid| Error {
            path: None,
            position: Some(Position::at(text, invalid.span.start)),
            message: invalid.message,
        })
    }

    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, &e))?;
        Config::parse_file(path, &text)
    }

    fn parse_file(path: &Path, text: &str) -> Result<Config, Error> {
        Config::parse(text).map_err(|e| Error {
            path: Some(path.to_owned()),
            ..e
        })
    }

    /// The compiled-in [`DEFAULT_TEXT`].
    pub fn embedded() -> Config {
        // Cannot fail for a released binary: `tests::embedded_is_default`
        // parses this very text, so a broken default file fails `cargo test`.
        Config::parse(DEFAULT_TEXT).expect("embedded config/getapr.toml is valid")
    }

    /// The `explicit` file (which must exist), else [`DEFAULT_PATH`] when it
    /// exists, else the embedded default.
    pub fn discover(explicit: Option<&Path>) -> Result<(Config, Source), Error> {
        discover_from(explicit, Path::new(DEFAULT_PATH))
    }
}

/// For `getapr check-config FILE`.
pub fn check(path: &Path) -> Result<(), Error> {
    Config::load(path).map(drop)
}

fn discover_from(explicit: Option<&Path>, default: &Path) -> Result<(Config, Source), Error> {
    if let Some(path) = explicit {
        return Ok((Config::load(path)?, Source::File(path.to_owned())));
    }
    // Read rather than test for existence first: no window in which the file
    // can vanish, and a default file we may not read is an error, not absent.
    match std::fs::read_to_string(default) {
        Ok(text) => Ok((
            Config::parse_file(default, &text)?,
            Source::File(default.to_owned()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((Config::embedded(), Source::Embedded)),
        Err(e) => Err(Error::io(default, &e)),
    }
}

impl Default for Config {
    /// The same as an empty file, and as `config/getapr.toml`.
    fn default() -> Config {
        let v4 = |a, b, c, d, port| SocketAddr::from((Ipv4Addr::new(a, b, c, d), port));
        Config {
            dns: Dns {
                listen: vec![v4(127, 0, 0, 53, 53)],
                upstreams: vec![Upstream::System],
                resolv_conf: PathBuf::from("/etc/resolv.conf"),
                timeout: Duration::from_millis(2000),
                cache_size: 10_000,
                allow: vec![
                    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
                    IpNet::new_assert(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
                ],
                udp_max_size: 1232,
                max_inflight: 1024,
                tcp_max_connections: 256,
                workers: 1,
                serve_stale: Duration::from_secs(86_400),
                failure_cache: Duration::from_secs(5),
            },
            http: Http {
                listen: vec![
                    v4(127, 0, 0, 1, 80),
                    SocketAddr::from((Ipv6Addr::LOCALHOST, 80)),
                ],
                // Like `dns.allow`: this host's own clients only.
                allow: vec![
                    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
                    IpNet::new_assert(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
                ],
            },
            probe: Probe {
                interval: Duration::from_millis(15_000),
                timeout: Duration::from_millis(1000),
                targets: vec![
                    v4(1, 1, 1, 1, 443),
                    SocketAddr::from((
                        Ipv6Addr::new(0x2606, 0x4700, 0x4700, 0, 0, 0, 0, 0x1111),
                        443,
                    )),
                ],
                stun: vec![HostPort {
                    host: "stun.l.google.com".to_owned(),
                    port: 19302,
                }],
                destinations: true,
                interfaces: Vec::new(),
                exclude_interfaces: Vec::new(),
            },
            policy: Policy {
                filter: Filter::Auto,
                break_dnssec: false,
                table: crate::policy::Table::Rfc6724,
                first_family_count: 1,
            },
        }
    }
}

/// A config that cannot be read or is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct Error {
    /// The file, when the text came from one.
    pub path: Option<PathBuf>,
    /// Where in the text, when the error is about one value or token.
    pub position: Option<Position>,
    /// Names the key and the bad input, e.g. `dns.listen: "127.0.0.1" is not IP:PORT`.
    pub message: String,
}

/// 1-based; the column counts characters, not bytes, as editors do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Error {
    fn io(path: &Path, e: &io::Error) -> Error {
        let text = e.to_string();
        // "No such file or directory (os error 2)": the errno adds nothing
        // for someone fixing a config path.
        let text = text.split(" (os error").next().unwrap_or(&text);
        Error {
            path: Some(path.to_owned()),
            position: None,
            message: format!("cannot read: {text}"),
        }
    }
}

impl fmt::Display for Error {
    /// `FILE:LINE:COL: message`, dropping whichever part is unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.path {
            write!(f, "{}:", path.display())?;
        }
        if let Some(Position { line, column }) = self.position {
            write!(f, "{line}:{column}:")?;
        }
        if self.path.is_some() || self.position.is_some() {
            f.write_str(" ")?;
        }
        f.write_str(&self.message)
    }
}

impl Position {
    fn at(text: &str, offset: usize) -> Position {
        let before = text.get(..offset).unwrap_or(text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

// ---- stage 1: the file as written -----------------------------------------

type StrList = Spanned<Vec<Spanned<String>>>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
struct RawConfig {
    dns: RawDns,
    http: RawHttp,
    probe: RawProbe,
    policy: RawPolicy,
}

// `None` = key absent = the default. Integers stay `i64` (TOML's integer) so
// that a negative or huge value gets our range message, not serde's.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a [dns] table")]
struct RawDns {
    listen: Option<StrList>,
    upstreams: Option<StrList>,
    resolv_conf: Option<Spanned<String>>,
    timeout_ms: Option<Spanned<i64>>,
    cache_size: Option<Spanned<i64>>,
    allow: Option<StrList>,
    udp_max_size: Option<Spanned<i64>>,
    max_inflight: Option<Spanned<i64>>,
    tcp_max_connections: Option<Spanned<i64>>,
    workers: Option<Spanned<i64>>,
    serve_stale_s: Option<Spanned<i64>>,
    failure_cache_s: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a [http] table")]
struct RawHttp {
    listen: Option<StrList>,
    allow: Option<StrList>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a [probe] table")]
struct RawProbe {
    interval_ms: Option<Spanned<i64>>,
    timeout_ms: Option<Spanned<i64>>,
    targets: Option<StrList>,
    stun: Option<StrList>,
    destinations: Option<bool>,
    interfaces: Option<StrList>,
    exclude_interfaces: Option<StrList>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a [policy] table")]
struct RawPolicy {
    filter: Option<Spanned<String>>,
    break_dnssec: Option<bool>,
    table: Option<Spanned<String>>,
    first_family_count: Option<Spanned<i64>>,
}

// ---- stage 2: validation --------------------------------------------------

/// A rejected value: its byte span and a message naming key and input.
struct Invalid {
    span: Range<usize>,
    message: String,
}

fn invalid<T>(span: Range<usize>, message: String) -> Result<T, Invalid> {
    Err(Invalid { span, message })
}

const DNS_PORT: u16 = 53;

impl RawConfig {
    fn validate(self) -> Result<Config, Invalid> {
        let d = Config::default();
        let (raw, dns) = (self.dns, d.dns);

        let listen = list("dns.listen", raw.listen, Len::NonEmpty, socket_addr)?;
        let listen = listen.map_or(dns.listen, values);
        let upstreams = list("dns.upstreams", raw.upstreams, Len::NonEmpty, upstream)?;
        for up in upstreams.iter().flatten() {
            // No `if let … &&` chains: they need Rust 1.88, our MSRV is 1.85.
            let Upstream::Addr(addr) = *up.get_ref() else {
                continue;
            };
            if is_own(addr, &listen) {
                let loops = "is this daemon's own listen address (forwarding loop)";
                return invalid(up.span(), format!("dns.upstreams: upstream {addr} {loops}"));
            }
        }
        let resolv_conf = match raw.resolv_conf {
            Some(p) if p.get_ref().is_empty() => {
                return invalid(p.span(), "dns.resolv_conf: must not be empty".to_owned());
            }
            Some(p) => PathBuf::from(p.into_inner()),
            None => dns.resolv_conf,
        };
        let dns = Dns {
            listen,
            upstreams: upstreams.map_or(dns.upstreams, values),
            resolv_conf,
            timeout: ranged("dns.timeout_ms", &raw.timeout_ms, 50..=30_000)?
                .map_or(dns.timeout, Duration::from_millis),
            cache_size: ranged("dns.cache_size", &raw.cache_size, 0..=10_000_000)?
                .unwrap_or(dns.cache_size),
            allow: list("dns.allow", raw.allow, Len::Any, network)?.map_or(dns.allow, values),
            udp_max_size: ranged("dns.udp_max_size", &raw.udp_max_size, 512..=4096)?
                .unwrap_or(dns.udp_max_size),
            max_inflight: ranged("dns.max_inflight", &raw.max_inflight, 1..=65_535)?
                .unwrap_or(dns.max_inflight),
            tcp_max_connections: ranged(
                "dns.tcp_max_connections",
                &raw.tcp_max_connections,
                1..=65_535,
            )?
            .unwrap_or(dns.tcp_max_connections),
            workers: ranged("dns.workers", &raw.workers, 1..=64)?.unwrap_or(dns.workers),
            // RFC 8767 §5 suggests one to three days; a week is the most
            // an answer can still be worth anything.
            serve_stale: ranged("dns.serve_stale_s", &raw.serve_stale_s, 0..=604_800)?
                .map_or(dns.serve_stale, Duration::from_secs),
            // RFC 9520 §3.2: failures SHOULD NOT be cached for more than
            // five minutes.
            failure_cache: ranged("dns.failure_cache_s", &raw.failure_cache_s, 0..=300)?
                .map_or(dns.failure_cache, Duration::from_secs),
        };

        let http = Http {
            listen: list("http.listen", self.http.listen, Len::Any, socket_addr)?
                .map_or(d.http.listen, values),
            allow: list("http.allow", self.http.allow, Len::Any, network)?
                .map_or(d.http.allow, values),
        };

        let (raw, probe) = (self.probe, d.probe);
        let interval = ranged("probe.interval_ms", &raw.interval_ms, 1000..=3_600_000)?
            .map_or(probe.interval, Duration::from_millis);
        let timeout = ranged("probe.timeout_ms", &raw.timeout_ms, 100..=60_000)?
            .map_or(probe.timeout, Duration::from_millis);
        if timeout >= interval {
            // The defaults satisfy the rule, so at least one was written.
            let written = raw.timeout_ms.as_ref().or(raw.interval_ms.as_ref());
            let message = format!(
                "probe.timeout_ms ({}) must be less than probe.interval_ms ({})",
                timeout.as_millis(),
                interval.as_millis()
            );
            return invalid(written.map_or(0..0, Spanned::span), message);
        }
        let probe = Probe {
            interval,
            timeout,
            targets: list("probe.targets", raw.targets, Len::Any, remote_addr)?
                .map_or(probe.targets, values),
            stun: list("probe.stun", raw.stun, Len::Any, host_port)?.map_or(probe.stun, values),
            destinations: raw.destinations.unwrap_or(probe.destinations),
            interfaces: list("probe.interfaces", raw.interfaces, Len::Any, interface)?
                .map_or(probe.interfaces, values),
            exclude_interfaces: list(
                "probe.exclude_interfaces",
                raw.exclude_interfaces,
                Len::Any,
                interface,
            )?
            .map_or(probe.exclude_interfaces, values),
        };

        let filter = match self.policy.filter {
            None => d.policy.filter,
            Some(f) => match f.get_ref().as_str() {
                "off" => Filter::Off,
                "auto" => Filter::Auto,
                other => {
                    let message = format!("policy.filter: {other:?} is not \"off\" or \"auto\"");
                    return invalid(f.span(), message);
                }
            },
        };
        let table = match self.policy.table {
            None => d.policy.table,
            Some(t) => match t.get_ref().as_str() {
                "rfc6724" => crate::policy::Table::Rfc6724,
                "update" => crate::policy::Table::Update,
                other => {
                    let message =
                        format!("policy.table: {other:?} is not \"rfc6724\" or \"update\"");
                    return invalid(t.span(), message);
                }
            },
        };
        let policy = Policy {
            filter,
            break_dnssec: self.policy.break_dnssec.unwrap_or(d.policy.break_dnssec),
            table,
            first_family_count: ranged(
                "policy.first_family_count",
                &self.policy.first_family_count,
                1..=16,
            )?
            .unwrap_or(d.policy.first_family_count),
        };

        Ok(Config {
            dns,
            http,
            probe,
            policy,
        })
    }
}

#[derive(PartialEq, Eq)]
enum Len {
    Any,
    NonEmpty,
}

/// Parses every entry of a string list; `None` when the key is absent. A
/// repeated entry is always an error: no list here means anything by it, and
/// for listen addresses the second bind would fail at startup instead.
fn list<T: PartialEq>(
    key: &str,
    raw: Option<StrList>,
    len: Len,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<Vec<Spanned<T>>>, Invalid> {
    let Some(raw) = raw else { return Ok(None) };
    if len == Len::NonEmpty && raw.get_ref().is_empty() {
        return invalid(raw.span(), format!("{key}: must not be empty"));
    }
    let mut out: Vec<Spanned<T>> = Vec::new();
    for item in raw.into_inner() {
        let input = item.get_ref();
        let reject = |reason: &str| Invalid {
            span: item.span(),
            message: format!("{key}: {input:?} {reason}"),
        };
        let value = parse(input).map_err(|reason| reject(&reason))?;
        if out.iter().any(|o| *o.get_ref() == value) {
            return Err(reject("repeats an earlier entry"));
        }
        out.push(Spanned::new(item.span(), value));
    }
    Ok(Some(out))
}

fn values<T>(list: Vec<Spanned<T>>) -> Vec<T> {
    list.into_iter().map(Spanned::into_inner).collect()
}

/// `None` when absent; the value converted to `T` when inside `range`.
fn ranged<T>(
    key: &str,
    raw: &Option<Spanned<i64>>,
    range: RangeInclusive<T>,
) -> Result<Option<T>, Invalid>
where
    T: TryFrom<i64> + PartialOrd + fmt::Debug,
{
    let Some(raw) = raw else { return Ok(None) };
    match T::try_from(*raw.get_ref()) {
        Ok(v) if range.contains(&v) => Ok(Some(v)),
        _ => invalid(
            raw.span(),
            format!("{key}: {} is outside {range:?}", raw.get_ref()),
        ),
    }
}

/// Would forwarding to `upstream` reach this daemon's own listeners?
///
/// A listener receives what is sent to its port at its address, or, when
/// that address is unspecified, at any local address of its family. IPv6
/// listeners are bound `IPV6_V6ONLY` (so that `[::]:53` and `0.0.0.0:53`
/// can both be listed), so `[::]` receives no IPv4. Of the local addresses
/// only loopback is known without I/O (127.0.0.0/8, `::1`); this host's
/// other interface addresses are not checked.
///
/// On the sending side, an IPv4-mapped upstream (`::ffff:127.0.0.1`) is
/// sent over IPv4, and an unspecified one means loopback: Linux connects
/// `0.0.0.0` to 127.0.0.1 and `::` to `::1`. A link-local address is ours
/// only on the same link (scope id).
pub(crate) fn is_own(upstream: SocketAddr, listen: &[SocketAddr]) -> bool {
    let to = destination(upstream);
    listen.iter().any(|l| {
        l.port() == to.port()
            && match (l, to) {
                (SocketAddr::V4(l), SocketAddr::V4(to)) => {
                    l.ip() == to.ip() || l.ip().is_unspecified() && to.ip().is_loopback()
                }
                (SocketAddr::V6(l), SocketAddr::V6(to)) => {
                    let same_link =
                        l.scope_id() == 0 || to.scope_id() == 0 || l.scope_id() == to.scope_id();
                    l.ip() == to.ip() && same_link
                        || l.ip().is_unspecified() && to.ip().is_loopback()
                }
                _ => false,
            }
    })
}

/// Where datagrams sent to `upstream` go: IPv4-mapped addresses over IPv4,
/// the unspecified address to loopback.
fn destination(upstream: SocketAddr) -> SocketAddr {
    let port = upstream.port();
    match (upstream.ip().to_canonical(), upstream) {
        (IpAddr::V4(ip), _) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, port).into(),
        (IpAddr::V6(ip), _) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, port).into(),
        (IpAddr::V6(ip), SocketAddr::V6(v6)) => {
            SocketAddrV6::new(ip, port, 0, v6.scope_id()).into()
        }
        (ip, _) => SocketAddr::new(ip, port),
    }
}

fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        if let Some(reason) = named_zone(s) {
            reason
        } else if !s.starts_with('[') && s.matches(':').count() > 1 {
            "is not IP:PORT (write IPv6 as [IPv6]:PORT)".to_owned()
        } else {
            "is not IP:PORT".to_owned()
        }
    })
}

/// A socket address we send to: port 0 cannot be reached, and a link-local
/// IPv6 address is ambiguous without the interface it is on.
fn remote_addr(s: &str) -> Result<SocketAddr, String> {
    let addr = socket_addr(s)?;
    check_remote(addr)
}

fn check_remote(addr: SocketAddr) -> Result<SocketAddr, String> {
    match addr {
        _ if addr.port() == 0 => Err("has port 0".to_owned()),
        SocketAddr::V6(v6) if v6.ip().is_unicast_link_local() && v6.scope_id() == 0 => {
            Err("is link-local and needs a zone (interface index), e.g. fe80::1%2".to_owned())
        }
        _ => Ok(addr),
    }
}

/// `system`, `IP` (port 53), `IP:PORT` or `[IPv6]:PORT`. An unbracketed IPv6
/// literal is always all address: `2001:db8::53` is that host on port 53.
fn upstream(s: &str) -> Result<Upstream, String> {
    if s == "system" {
        return Ok(Upstream::System);
    }
    let addr = if let Ok(addr) = s.parse::<SocketAddr>() {
        addr
    } else if let Ok(ip) = s.parse::<IpAddr>() {
        SocketAddr::new(ip, DNS_PORT)
    } else if let Some(reason) = named_zone(s) {
        return Err(reason);
    } else if let Some(v6) = zoned_ipv6(s, DNS_PORT) {
        SocketAddr::V6(v6)
    } else {
        return Err("is not \"system\", IP, IP:PORT or [IPv6]:PORT".to_owned());
    };
    check_remote(addr).map(Upstream::Addr)
}

/// `fe80::1%2`: std parses zones only inside brackets with a port.
fn zoned_ipv6(s: &str, port: u16) -> Option<SocketAddrV6> {
    let (ip, zone) = s.split_once('%')?;
    Some(SocketAddrV6::new(
        ip.parse().ok()?,
        port,
        0,
        zone.parse().ok()?,
    ))
}

/// Explains a zone that names an interface instead of numbering it.
fn named_zone(s: &str) -> Option<String> {
    let (_, zone) = s.split_once('%')?;
    let zone = zone.split(']').next().unwrap_or(zone);
    (!zone.is_empty() && zone.parse::<u32>().is_err()).then(|| {
        format!(
            "has zone {zone:?}: only a numeric zone (interface index, e.g. %2) is accepted; \
             see `ip link` for the index"
        )
    })
}

/// Whether `peer` is inside `allow` (`dns.allow`, `http.allow`). An
/// IPv4-mapped IPv6 peer (`::ffff:192.0.2.1`, what a dual-stack socket
/// reports for an IPv4 client) is that IPv4 address (RFC 4291 §2.5.5.2),
/// so that `192.0.2.0/24` covers it too.
pub fn allows(allow: &[IpNet], peer: IpAddr) -> bool {
    let peer = peer.to_canonical();
    allow.iter().any(|net| net.contains(&peer))
}

/// A CIDR, or a bare IP meaning that one host.
fn network(s: &str) -> Result<IpNet, String> {
    match (s.parse::<IpNet>(), s.parse::<IpAddr>()) {
        (Ok(net), _) => Ok(net.trunc()),
        (_, Ok(ip)) => Ok(IpNet::from(ip)),
        _ => Err("is not a CIDR (e.g. 192.0.2.0/24) or an IP".to_owned()),
    }
}

/// An interface name (Linux: at most 15 bytes, no `/`, `:` or blanks) or a
/// prefix of one ending in `*`.
fn interface(s: &str) -> Result<String, String> {
    let name = s.strip_suffix('*').unwrap_or(s);
    let bad = |c: char| c == '/' || c == ':' || c == '*' || c.is_whitespace();
    if (name.is_empty() && !s.ends_with('*')) || name.len() > 15 || name.contains(bad) {
        return Err(
            "is not an interface name (at most 15 characters, `*` only at the end)".to_owned(),
        );
    }
    Ok(s.to_owned())
}

fn host_port(s: &str) -> Result<HostPort, String> {
    const SHAPE: &str = "is not HOST:PORT, IP:PORT or [IPv6]:PORT";
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (ip, port) = rest.split_once("]:").ok_or(SHAPE)?;
        ip.parse::<Ipv6Addr>().map_err(|_| SHAPE)?;
        (ip, port)
    } else {
        let (host, port) = s.rsplit_once(':').ok_or(SHAPE)?;
        if host.contains(':') {
            return Err(format!("{SHAPE} (write IPv6 as [IPv6]:PORT)"));
        }
        if host.parse::<Ipv4Addr>().is_err() && !is_dns_name(host) {
            return Err(format!("has an invalid host name {host:?}"));
        }
        (host, port)
    };
    match port.parse::<u16>() {
        Ok(0) => Err("has port 0".to_owned()),
        Ok(port) => Ok(HostPort {
            host: host.to_owned(),
            port,
        }),
        Err(_) => Err(format!("has an invalid port {port:?}")),
    }
}

/// RFC 1123 §2.1 host names: letters, digits and inner hyphens, labels of
/// 1–63 and names of at most 253 characters. RFC 3696 §2: the top-level
/// label is not all digits, which also keeps `1.2.3.256` from passing.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(label_ok)
        && !name
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> Error {
        match Config::parse(text) {
            Ok(config) => panic!("accepted {text:?} as {config:?}"),
            Err(e) => e,
        }
    }

    /// A file in the temp dir, unique per test and process.
    fn temp_file(name: &str, text: Option<&str>) -> PathBuf {
        let path = std::env::temp_dir().join(format!("getapr-{}-{name}.toml", std::process::id()));
        let _ = std::fs::remove_file(&path);
        if let Some(text) = text {
            std::fs::write(&path, text).expect("temp dir is writable");
        }
        path
    }

    #[test]
    fn empty_file_is_default() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(
            Config::parse("[dns]\n[http]\n[probe]\n[policy]\n").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn embedded_is_default() {
        assert_eq!(Config::embedded(), Config::default());
    }

    #[test]
    fn default_file_states_every_key() {
        let raw: RawConfig = toml::from_str(DEFAULT_TEXT).unwrap();
        // No `..`: a new key fails to compile here until it is listed, and
        // then fails the test until config/getapr.toml states it.
        let RawConfig {
            dns,
            http,
            probe,
            policy,
        } = raw;
        let RawDns {
            listen,
            upstreams,
            resolv_conf,
            timeout_ms,
            cache_size,
            allow,
            udp_max_size,
            max_inflight,
            tcp_max_connections,
            workers,
            serve_stale_s,
            failure_cache_s,
        } = dns;
        let RawHttp {
            listen: http_listen,
            allow: http_allow,
        } = http;
        let RawProbe {
            interval_ms,
            timeout_ms: probe_timeout_ms,
            targets,
            stun,
            destinations,
            interfaces,
            exclude_interfaces,
        } = probe;
        let RawPolicy {
            filter,
            break_dnssec,
            table,
            first_family_count,
        } = policy;
        let present = [
            ("dns.listen", listen.is_some()),
            ("dns.upstreams", upstreams.is_some()),
            ("dns.resolv_conf", resolv_conf.is_some()),
            ("dns.timeout_ms", timeout_ms.is_some()),
            ("dns.cache_size", cache_size.is_some()),
            ("dns.allow", allow.is_some()),
            ("dns.udp_max_size", udp_max_size.is_some()),
            ("dns.max_inflight", max_inflight.is_some()),
            ("dns.tcp_max_connections", tcp_max_connections.is_some()),
            ("dns.workers", workers.is_some()),
            ("dns.serve_stale_s", serve_stale_s.is_some()),
            ("dns.failure_cache_s", failure_cache_s.is_some()),
            ("http.listen", http_listen.is_some()),
            ("http.allow", http_allow.is_some()),
            ("probe.interval_ms", interval_ms.is_some()),
            ("probe.timeout_ms", probe_timeout_ms.is_some()),
            ("probe.targets", targets.is_some()),
            ("probe.stun", stun.is_some()),
            ("probe.destinations", destinations.is_some()),
            ("probe.interfaces", interfaces.is_some()),
            ("probe.exclude_interfaces", exclude_interfaces.is_some()),
            ("policy.filter", filter.is_some()),
            ("policy.break_dnssec", break_dnssec.is_some()),
            ("policy.table", table.is_some()),
            ("policy.first_family_count", first_family_count.is_some()),
        ];
        for (key, is_present) in present {
            assert!(is_present, "config/getapr.toml does not state {key}");
        }
    }

    #[test]
    fn every_value_reaches_the_validated_config() {
        let config = Config::parse(
            r#"
[dns]
listen = ["0.0.0.0:5353", "[::1]:0"]
upstreams = ["9.9.9.9", "[2620:fe::fe]:853", "system"]
resolv_conf = "/run/resolv.conf"
timeout_ms = 50
cache_size = 0
allow = ["10.1.2.3/8", "192.0.2.7", "2001:db8::/32"]
udp_max_size = 4096
max_inflight = 1
tcp_max_connections = 65535
workers = 64
serve_stale_s = 0
failure_cache_s = 300
[http]
listen = []
allow = ["192.168.1.77/24", "2001:db8::1", "fd00::/8"]
[probe]
interval_ms = 3600000
timeout_ms = 60000
targets = []
stun = ["192.0.2.1:3478", "[2001:db8::1]:3478", "stun.example.org.:1"]
destinations = false
interfaces = ["eth0", "wlan*"]
exclude_interfaces = ["docker*"]
[policy]
filter = "off"
break_dnssec = true
table = "update"
first_family_count = 2
"#,
        )
        .unwrap();
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        let hp = |host: &str, port| HostPort {
            host: host.to_owned(),
            port,
        };
        let expected = Config {
            dns: Dns {
                listen: vec![sa("0.0.0.0:5353"), sa("[::1]:0")],
                upstreams: vec![
                    Upstream::Addr(sa("9.9.9.9:53")),
                    Upstream::Addr(sa("[2620:fe::fe]:853")),
                    Upstream::System,
                ],
                resolv_conf: PathBuf::from("/run/resolv.conf"),
                timeout: Duration::from_millis(50),
                cache_size: 0,
                // Host bits cleared; a bare IP is one host.
                allow: vec![net("10.0.0.0/8"), net("192.0.2.7/32"), net("2001:db8::/32")],
                udp_max_size: 4096,
                max_inflight: 1,
                tcp_max_connections: 65535,
                workers: 64,
                serve_stale: Duration::ZERO,
                failure_cache: Duration::from_secs(300),
            },
            http: Http {
                listen: vec![],
                // Host bits cleared, a bare IP one host, as for `dns.allow`.
                allow: vec![
                    net("192.168.1.0/24"),
                    net("2001:db8::1/128"),
                    net("fd00::/8"),
                ],
            },
            probe: Probe {
                interval: Duration::from_secs(3600),
                timeout: Duration::from_secs(60),
                targets: vec![],
                stun: vec![
                    hp("192.0.2.1", 3478),
                    hp("2001:db8::1", 3478),
                    hp("stun.example.org.", 1),
                ],
                destinations: false,
                interfaces: vec!["eth0".to_owned(), "wlan*".to_owned()],
                exclude_interfaces: vec!["docker*".to_owned()],
            },
            policy: Policy {
                filter: Filter::Off,
                break_dnssec: true,
                table: crate::policy::Table::Update,
                first_family_count: 2,
            },
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn upstream_forms() {
        let sa = |s: &str| Upstream::Addr(s.parse().unwrap());
        for (input, expected) in [
            ("system", Upstream::System),
            ("192.0.2.1", sa("192.0.2.1:53")),
            ("192.0.2.1:5353", sa("192.0.2.1:5353")),
            // An unbracketed IPv6 literal is all address, never ADDR:PORT.
            ("2001:db8::53", sa("[2001:db8::53]:53")),
            ("[2001:db8::1]:5353", sa("[2001:db8::1]:5353")),
            ("fe80::1%2", sa("[fe80::1%2]:53")),
            ("[fe80::1%2]:5353", sa("[fe80::1%2]:5353")),
            // Forwarding to ourselves on another port is no loop.
            ("127.0.0.53:5353", sa("127.0.0.53:5353")),
        ] {
            let text = format!("[dns]\nupstreams = [{input:?}]\n");
            let config = Config::parse(&text).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(config.dns.upstreams, [expected], "{input}");
        }
    }

    #[test]
    fn loop_checks_follow_the_listen_family() {
        // `0.0.0.0` does not receive on `::1`, so this is another resolver.
        let text = "[dns]\nlisten = [\"0.0.0.0:53\"]\nupstreams = [\"[::1]:53\"]\n";
        assert!(Config::parse(text).is_ok());
        // IPv6 listeners are bound IPV6_V6ONLY: `[::]` does not receive on
        // 127.0.0.1 either.
        let text = "[dns]\nlisten = [\"[::]:53\"]\nupstreams = [\"127.0.0.1:53\"]\n";
        assert!(Config::parse(text).is_ok());
    }

    #[test]
    fn link_local_loops_need_the_same_link() {
        let listen = "[dns]\nlisten = [\"[fe80::1%2]:53\"]\n";
        assert!(Config::parse(&format!("{listen}upstreams = [\"fe80::1%2\"]\n")).is_err());
        // The same address on another link is another host.
        assert!(Config::parse(&format!("{listen}upstreams = [\"fe80::1%3\"]\n")).is_ok());
    }

    /// Each case: the text and the whole `LINE:COL: message` it must give.
    fn assert_errors(cases: &[(&str, &str)]) {
        for (text, expected) in cases {
            assert_eq!(error(text).to_string(), *expected, "{text:?}");
        }
    }

    #[test]
    #[rustfmt::skip] // one line per case keeps the table readable
    fn toml_errors_keep_position_and_first_line() {
        assert_errors(&[
            ("foo = 1\n", "1:1: unknown field `foo`, expected one of `dns`, `http`, `probe`, `policy`"),
            ("[dns]\nlisten = [\"127.0.0.1:53\"]\nbogus = 3\n",
             "3:1: unknown field `bogus`, expected one of `listen`, `upstreams`, `resolv_conf`, \
              `timeout_ms`, `cache_size`, `allow`, `udp_max_size`, `max_inflight`, `tcp_max_connections`, `workers`, `serve_stale_s`, `failure_cache_s`"),
            ("[policy]\n\n  colour = 1\n", "3:3: unknown field `colour`, expected one of `filter`, `break_dnssec`, `table`, `first_family_count`"),
            ("[http]\nallowed = []\n", "2:1: unknown field `allowed`, expected `listen` or `allow`"),
            ("[http]\nallow = \"127.0.0.1\"\n", "2:9: invalid type: string \"127.0.0.1\", expected a sequence"),
            ("[dns]\ntimeout_ms = \"fast\"\n", "2:14: invalid type: string \"fast\", expected i64"),
            ("[dns]\nlisten = \"127.0.0.1:53\"\n", "2:10: invalid type: string \"127.0.0.1:53\", expected a sequence"),
            ("[dns]\nlisten = [53]\n", "2:11: invalid type: integer `53`, expected a string"),
            ("[probe]\ndestinations = \"yes\"\n", "2:16: invalid type: string \"yes\", expected a boolean"),
            ("dns = 5\n", "1:7: invalid type: integer `5`, expected a [dns] table"),
            ("[dns\n", "1:5: unclosed table, expected `]`"),
        ]);
    }

    #[test]
    #[rustfmt::skip] // one line per case keeps the table readable
    fn validation_errors_name_key_input_and_position() {
        const LOOP: &str = "is this daemon's own listen address (forwarding loop)";
        const ZONE: &str = "only a numeric zone (interface index, e.g. %2) is accepted; see `ip link` for the index";
        const UPSTREAM: &str = r#"is not "system", IP, IP:PORT or [IPv6]:PORT"#;
        const STUN: &str = "is not HOST:PORT, IP:PORT or [IPv6]:PORT";
        assert_errors(&[
            ("[dns]\nlisten = [\"127.0.0.1\"]\n", r#"2:11: dns.listen: "127.0.0.1" is not IP:PORT"#),
            ("[dns]\nlisten = [\"::1:53\"]\n", r#"2:11: dns.listen: "::1:53" is not IP:PORT (write IPv6 as [IPv6]:PORT)"#),
            ("[dns]\nlisten = []\n", "2:10: dns.listen: must not be empty"),
            ("[dns]\nlisten = [\"127.0.0.1:53\", \"127.0.0.1:53\"]\n", r#"2:27: dns.listen: "127.0.0.1:53" repeats an earlier entry"#),
            ("[http]\nlisten = [\"localhost:80\"]\n", r#"2:11: http.listen: "localhost:80" is not IP:PORT"#),
            ("[dns]\nupstreams = []\n", "2:13: dns.upstreams: must not be empty"),
            ("[dns]\nupstreams = [\"dns.google\"]\n", &format!(r#"2:14: dns.upstreams: "dns.google" {UPSTREAM}"#)),
            // A v6 literal without a port takes no brackets.
            ("[dns]\nupstreams = [\"[2001:db8::1]\"]\n", &format!(r#"2:14: dns.upstreams: "[2001:db8::1]" {UPSTREAM}"#)),
            ("[dns]\nupstreams = [\"192.0.2.1:0\"]\n", r#"2:14: dns.upstreams: "192.0.2.1:0" has port 0"#),
            ("[dns]\nupstreams = [\"fe80::1%eth0\"]\n", &format!(r#"2:14: dns.upstreams: "fe80::1%eth0" has zone "eth0": {ZONE}"#)),
            ("[dns]\nupstreams = [\"system\", \"[fe80::1%eth0]:53\"]\n", &format!(r#"2:24: dns.upstreams: "[fe80::1%eth0]:53" has zone "eth0": {ZONE}"#)),
            ("[dns]\nupstreams = [\"fe80::1\"]\n", r#"2:14: dns.upstreams: "fe80::1" is link-local and needs a zone (interface index), e.g. fe80::1%2"#),
            // Against the default listen address 127.0.0.53:53.
            ("[dns]\nupstreams = [\"127.0.0.53\"]\n", &format!("2:14: dns.upstreams: upstream 127.0.0.53:53 {LOOP}")),
            ("[dns]\nlisten = [\"0.0.0.0:5353\"]\nupstreams = [\"system\",\n  \"127.0.0.1:5353\"]\n", &format!("4:3: dns.upstreams: upstream 127.0.0.1:5353 {LOOP}")),
            ("[dns]\nlisten = [\"[::]:53\"]\nupstreams = [\"::1\"]\n", &format!("3:14: dns.upstreams: upstream [::1]:53 {LOOP}")),
            ("[dns]\nresolv_conf = \"\"\n", "2:15: dns.resolv_conf: must not be empty"),
            ("[dns]\ntimeout_ms = 49\n", "2:14: dns.timeout_ms: 49 is outside 50..=30000"),
            ("[dns]\ntimeout_ms = 30001\n", "2:14: dns.timeout_ms: 30001 is outside 50..=30000"),
            ("[dns]\ntimeout_ms = -1\n", "2:14: dns.timeout_ms: -1 is outside 50..=30000"),
            ("[dns]\ncache_size = 10000001\n", "2:14: dns.cache_size: 10000001 is outside 0..=10000000"),
            ("[dns]\nudp_max_size = 511\n", "2:16: dns.udp_max_size: 511 is outside 512..=4096"),
            ("[dns]\nmax_inflight = 0\n", "2:16: dns.max_inflight: 0 is outside 1..=65535"),
            ("[dns]\nserve_stale_s = -1\n", "2:17: dns.serve_stale_s: -1 is outside 0..=604800"),
            ("[dns]\nfailure_cache_s = 301\n", "2:19: dns.failure_cache_s: 301 is outside 0..=300"),
            ("[dns]\ntcp_max_connections = 65536\n", "2:23: dns.tcp_max_connections: 65536 is outside 1..=65535"),
            ("[dns]\nallow = [\"10.0.0.0/33\"]\n", r#"2:10: dns.allow: "10.0.0.0/33" is not a CIDR (e.g. 192.0.2.0/24) or an IP"#),
            ("[http]\nallow = [\"10.0.0.0/33\"]\n", r#"2:10: http.allow: "10.0.0.0/33" is not a CIDR (e.g. 192.0.2.0/24) or an IP"#),
            ("[http]\nallow = [\"192.168.1.0/24\",\n  \"lan\"]\n", r#"3:3: http.allow: "lan" is not a CIDR (e.g. 192.0.2.0/24) or an IP"#),
            ("[http]\nallow = [\"::1/129\"]\n", r#"2:10: http.allow: "::1/129" is not a CIDR (e.g. 192.0.2.0/24) or an IP"#),
            ("[http]\nallow = [\"fe80::1%2\"]\n", r#"2:10: http.allow: "fe80::1%2" is not a CIDR (e.g. 192.0.2.0/24) or an IP"#),
            // The same network twice, once with host bits: they normalise alike.
            ("[http]\nallow = [\"10.0.0.0/8\", \"10.1.2.3/8\"]\n", r#"2:24: http.allow: "10.1.2.3/8" repeats an earlier entry"#),
            ("[probe]\ninterval_ms = 999\n", "2:15: probe.interval_ms: 999 is outside 1000..=3600000"),
            ("[probe]\ntimeout_ms = 99\n", "2:14: probe.timeout_ms: 99 is outside 100..=60000"),
            // The default timeout (1000) against a written interval: point at the interval.
            ("[probe]\ninterval_ms = 1000\n", "2:15: probe.timeout_ms (1000) must be less than probe.interval_ms (1000)"),
            ("[probe]\ninterval_ms = 5000\ntimeout_ms = 6000\n", "3:14: probe.timeout_ms (6000) must be less than probe.interval_ms (5000)"),
            ("[probe]\ntargets = [\"192.0.2.1:0\"]\n", r#"2:12: probe.targets: "192.0.2.1:0" has port 0"#),
            ("[probe]\nstun = [\"stun.example.com\"]\n", &format!(r#"2:9: probe.stun: "stun.example.com" {STUN}"#)),
            ("[probe]\nstun = [\"2001:db8::1:3478\"]\n", &format!(r#"2:9: probe.stun: "2001:db8::1:3478" {STUN} (write IPv6 as [IPv6]:PORT)"#)),
            ("[probe]\nstun = [\"-x-.example:1\"]\n", r#"2:9: probe.stun: "-x-.example:1" has an invalid host name "-x-.example""#),
            ("[probe]\nstun = [\"1.2.3.256:1\"]\n", r#"2:9: probe.stun: "1.2.3.256:1" has an invalid host name "1.2.3.256""#),
            ("[probe]\nstun = [\"stun.example:99999\"]\n", r#"2:9: probe.stun: "stun.example:99999" has an invalid port "99999""#),
            ("[probe]\ninterfaces = [\"eth0/1\"]\n", r#"2:15: probe.interfaces: "eth0/1" is not an interface name (at most 15 characters, `*` only at the end)"#),
            ("[probe]\nexclude_interfaces = [\"a*b\"]\n", r#"2:23: probe.exclude_interfaces: "a*b" is not an interface name (at most 15 characters, `*` only at the end)"#),
            ("[probe]\ninterfaces = [\"\"]\n", r#"2:15: probe.interfaces: "" is not an interface name (at most 15 characters, `*` only at the end)"#),
            ("[probe]\ninterfaces = [\"sixteen-chars-xx\"]\n", r#"2:15: probe.interfaces: "sixteen-chars-xx" is not an interface name (at most 15 characters, `*` only at the end)"#),
            ("[policy]\nfilter = \"on\"\n", r#"2:10: policy.filter: "on" is not "off" or "auto""#),
            ("[policy]\ntable = \"rfc3484\"\n", r#"2:9: policy.table: "rfc3484" is not "rfc6724" or "update""#),
            ("[policy]\nfirst_family_count = 0\n", "2:22: policy.first_family_count: 0 is outside 1..=16"),
        ]);
    }

    #[test]
    fn allows_reads_mapped_peers_as_ipv4() {
        let nets: Vec<IpNet> = ["192.168.1.0/24", "2001:db8::/32"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for inside in ["192.168.1.1", "::ffff:192.168.1.200", "2001:db8::5"] {
            assert!(allows(&nets, ip(inside)), "{inside}");
        }
        for outside in [
            "192.168.2.1",
            "::ffff:192.168.2.1",
            "2001:db9::1",
            // The IPv4-compatible form (deprecated) is not mapped.
            "::192.168.1.1",
            "127.0.0.1",
        ] {
            assert!(!allows(&nets, ip(outside)), "{outside}");
        }
        assert!(!allows(&[], ip("127.0.0.1")), "empty: nobody");
        let loopback = Config::default().http.allow;
        assert!(allows(&loopback, ip("127.0.0.2")));
        assert!(allows(&loopback, ip("::ffff:127.0.0.1")));
        assert!(allows(&loopback, ip("::1")));
        assert!(!allows(&loopback, ip("::2")));
    }

    #[test]
    fn columns_count_characters() {
        let e = error("# ünïcödé\n[policy] # ü\nfilter = \"Ön\"\n");
        assert_eq!(
            e.position,
            Some(Position {
                line: 3,
                column: 10
            })
        );
    }

    #[test]
    fn display_formats() {
        let at = Some(Position { line: 3, column: 7 });
        let file = Some(PathBuf::from("/etc/getapr/getapr.toml"));
        let msg = "dns.cache_size: -1 is outside 0..=10000000".to_owned();
        let e = |path: &Option<PathBuf>, position| Error {
            path: path.clone(),
            position,
            message: msg.clone(),
        };
        assert_eq!(
            e(&file, at).to_string(),
            format!("/etc/getapr/getapr.toml:3:7: {msg}")
        );
        assert_eq!(e(&None, at).to_string(), format!("3:7: {msg}"));
        assert_eq!(
            e(&file, None).to_string(),
            format!("/etc/getapr/getapr.toml: {msg}")
        );
        assert_eq!(e(&None, None).to_string(), msg);
        // toml's own message is reduced to one line.
        assert!(!error("a = [\n").to_string().contains('\n'));
    }

    #[test]
    fn load_and_check_name_the_file() {
        let missing = temp_file("missing", None);
        let e = Config::load(&missing).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: cannot read: No such file or directory",
                missing.display()
            )
        );
        assert_eq!(check(&missing), Err(e));

        let bad = temp_file("bad", Some("[dns]\ncache_size = -1\n"));
        let e = check(&bad).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:2:14: dns.cache_size: -1 is outside 0..=10000000",
                bad.display()
            )
        );

        let good = temp_file("good", Some("[policy]\nfilter = \"off\"\n"));
        assert_eq!(check(&good), Ok(()));
        assert_eq!(Config::load(&good).unwrap().policy.filter, Filter::Off);
        for path in [bad, good] {
            std::fs::remove_file(path).unwrap();
        }
    }

    #[test]
    fn discover_prefers_explicit_then_default_path_then_embedded() {
        let explicit = temp_file("explicit", Some("[dns]\ncache_size = 1\n"));
        let default = temp_file("default", None);

        // A named file must exist, even when the default path does not.
        let missing = temp_file("explicit-missing", None);
        let e = discover_from(Some(&missing), &default).unwrap_err();
        assert_eq!(e.path.as_deref(), Some(missing.as_path()));

        assert_eq!(
            discover_from(None, &default).unwrap(),
            (Config::default(), Source::Embedded)
        );

        std::fs::write(&default, "[dns]\ncache_size = 2\n").unwrap();
        let (config, source) = discover_from(None, &default).unwrap();
        assert_eq!(
            (config.dns.cache_size, source),
            (2, Source::File(default.clone()))
        );

        let (config, source) = discover_from(Some(&explicit), &default).unwrap();
        assert_eq!(
            (config.dns.cache_size, source),
            (1, Source::File(explicit.clone()))
        );

        // An invalid default file is an error, not a reason to fall back.
        std::fs::write(&default, "[dns]\ncache_size = -2\n").unwrap();
        let e = discover_from(None, &default).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:2:14: dns.cache_size: -2 is outside 0..=10000000",
                default.display()
            )
        );

        for path in [explicit, default] {
            std::fs::remove_file(path).unwrap();
        }
    }
}
