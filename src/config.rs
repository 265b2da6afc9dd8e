//! Configuration: raw TOML (serde, `deny_unknown_fields`) → validated [`Config`].
//! PLACEHOLDER: being written by the config helper. The public types below are the contract.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

/// The embedded default configuration (annotated), used when no file exists.
pub const DEFAULT_TEXT: &str = include_str!("../config/getapr.toml");

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
    pub listen: Vec<SocketAddr>,
    pub upstreams: Vec<Upstream>,
    pub resolv_conf: PathBuf,
    pub timeout: Duration,
    pub cache_size: usize,
    pub allow: Vec<IpNet>,
    pub udp_max_size: u16,
    pub max_inflight: usize,
    pub tcp_max_connections: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// The nameservers of `dns.resolv_conf`, minus our own listen addresses.
    System,
    Addr(SocketAddr),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Http {
    pub listen: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub interval: Duration,
    pub timeout: Duration,
    pub targets: Vec<SocketAddr>,
    pub stun: Vec<HostPort>,
    pub destinations: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub filter: Filter,
    pub break_dnssec: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Off,
    Auto,
}

// TEMPORARY stand-ins until the config module lands.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);
pub const DEFAULT_PATH: &str = "/etc/getapr/getapr.toml";
impl Config {
    pub fn parse(_text: &str) -> Result<Config, Error> {
        Err(Error("not yet".into()))
    }
    pub fn discover(_explicit: Option<&std::path::Path>) -> Result<(Config, Source), Error> {
        Err(Error("not yet".into()))
    }
}
pub fn check(_path: &std::path::Path) -> Result<(), Error> {
    Err(Error("not yet".into()))
}
