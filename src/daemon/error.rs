//! Why the daemon cannot start or stopped, and the exit status each gives.

use std::io;
use std::net::SocketAddr;

use crate::config;

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
