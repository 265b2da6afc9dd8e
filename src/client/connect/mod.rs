//! `getapr connect HOST PORT`: asks the daemon's `/pairs` for the working
//! (source, destination) pairs, races them as RFC 8305 §5 says with each
//! socket bound to its pair's source, then relays stdin and stdout to the
//! connection that won, as `nc` does. That makes it an ssh `ProxyCommand`.
//!
//! The daemon is a help, never a requirement: when it cannot be reached, or
//! answers 403, a 5xx or something that is not its JSON, the command says so
//! once on stderr and connects like `nc` (the system resolver's addresses in
//! its order, the kernel choosing the source). The resolver's addresses are
//! raced the same way, without a warning, when the daemon knows no working
//! pair (it may simply not know: its probe targets unreachable where the
//! destination is not), when it does not take the name (400) and when it
//! finds no such name (404): it asks DNS only, and the name may be one
//! that only `/etc/hosts` or a search domain knows.

pub mod race;
mod relay;

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use serde::Deserialize;

use self::race::{AllFailed, Attempt, CONNECTION_ATTEMPT_DELAY};
pub use self::relay::RelayError;
use super::{ApiUrl, Error, http, percent_encode};

/// What to try, in order, and the warning to print first (once) when the
/// daemon could not help.
#[derive(Debug)]
pub struct Plan {
    pub attempts: Vec<Attempt>,
    pub warning: Option<String>,
}

/// Why `getapr connect` could not connect; the message is one line.
#[derive(Debug)]
pub struct ConnectError {
    host: String,
    port: u16,
    why: Why,
}

#[derive(Debug)]
enum Why {
    /// The daemon could not help and neither could the system resolver;
    /// with what the daemon said, when it declined the name.
    Resolve(io::Error, Option<String>),
    /// Every attempt failed, or the deadline came.
    AllFailed(AllFailed),
    Runtime(io::Error),
}

/// Runs `getapr connect`: connects, relays, and says on stderr what went
/// wrong. 0 when the peer closed normally, 1 otherwise.
pub fn run(host: &str, port: u16, api: &ApiUrl, timeout: Duration) -> ExitCode {
    let connected = plan(host, port, api).and_then(|plan| {
        if let Some(warning) = &plan.warning {
            eprintln!("getapr: warning: {warning}");
        }
        connect(&plan.attempts, timeout).map_err(|why| ConnectError {
            host: host.to_owned(),
            port,
            why,
        })
    });
    let stream = match connected {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!("getapr: {e}");
            return ExitCode::FAILURE;
        }
    };
    match relay::relay(stream) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): it knows, as with `cat`, which
        // SIGPIPE kills without a word.
        Err(RelayError::Stdout(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("getapr: {host} port {port}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The attempts for `host`: the daemon's pairs, else the system resolver's
/// addresses unbound.
pub fn plan(host: &str, port: u16, api: &ApiUrl) -> Result<Plan, ConnectError> {
    let fail = |why| ConnectError {
        host: host.to_owned(),
        port,
        why,
    };
    let (reason, declined) = match ask_daemon(api, host, port) {
        Ok(attempts) if !attempts.is_empty() => {
            return Ok(Plan {
                attempts,
                warning: None,
            });
        }
        Ok(_) => (None, "it knows no working pair".to_owned()),
        Err(Answer::Declined(message)) => (None, message),
        Err(Answer::Unusable(reason)) => (Some(reason), String::new()),
    };
    if reason.is_none() {
        tracing::info!(
            "the getapr daemon has no pairs for {host} ({declined}); \
             trying the system resolver's addresses"
        );
    }
    let attempts = resolve(host, port).map_err(|e| {
        let declined = reason.is_none().then_some(declined);
        fail(Why::Resolve(e, declined))
    })?;
    Ok(Plan {
        attempts,
        warning: reason.map(|reason| {
            format!(
                "no pairs from the getapr daemon at {api} ({reason}); \
                 connecting to the system resolver's addresses for {host}, \
                 the kernel choosing the source"
            )
        }),
    })
}

/// Races `attempts` on a runtime of this thread and returns the winner as a
/// blocking socket for the relay; the runtime and the losers are gone by then.
fn connect(attempts: &[Attempt], timeout: Duration) -> Result<std::net::TcpStream, Why> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(Why::Runtime)?;
    runtime.block_on(async {
        let (_, stream) = race::race(attempts, CONNECTION_ATTEMPT_DELAY, Some(timeout), race::tcp)
            .await
            .map_err(Why::AllFailed)?;
        let stream = stream.into_std().map_err(Why::Runtime)?;
        stream.set_nonblocking(false).map_err(Why::Runtime)?;
        Ok(stream)
    })
}

/// What the daemon's answer means for the command.
#[derive(Debug)]
enum Answer {
    /// Its 400 (a host it does not take) or 404 (no such name in DNS),
    /// with its `error`: the system resolver may still know the name.
    Declined(String),
    /// It cannot be reached, refuses this client (403), is at its limits or
    /// failing (5xx), or the answer is not its JSON: the system resolver
    /// takes over. The reason is for the warning.
    Unusable(String),
}

/// `GET /pairs?host=HOST&port=PORT` as attempts, best first.
fn ask_daemon(api: &ApiUrl, host: &str, port: u16) -> Result<Vec<Attempt>, Answer> {
    let target = format!("/pairs?host={}&port={port}", percent_encode(host));
    let response = http::get(&api.host, api.port, &api.host_header(), &target).map_err(|f| {
        Answer::Unusable(match api.failure(f) {
            Error::Unreachable { reason, .. } | Error::BadAnswer { reason, .. } => reason,
            Error::Silent { .. } => format!(
                "connected, but no answer within {} s",
                http::READ_TIMEOUT.as_secs()
            ),
            other => other.to_string(),
        })
    })?;
    let status = response.status;
    if status == 200 {
        let answer: PairsAnswer = serde_json::from_slice(&response.body)
            .map_err(|e| Answer::Unusable(format!("unexpected JSON: {e}")))?;
        return attempts(answer, port).map_err(Answer::Unusable);
    }
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    match serde_json::from_slice::<ErrorBody>(&response.body) {
        Ok(body) if status == 400 || status == 404 => Err(Answer::Declined(body.error)),
        Ok(body) => Err(Answer::Unusable(format!("{} (HTTP {status})", body.error))),
        Err(_) => Err(Answer::Unusable(format!(
            "HTTP {status} and not the sidecar's JSON"
        ))),
    }
}

/// The part of the `/pairs` body a connection needs.
#[derive(Debug, Deserialize)]
struct PairsAnswer {
    pairs: Vec<WirePair>,
}

#[derive(Debug, Deserialize)]
struct WirePair {
    source: IpAddr,
    destination: IpAddr,
    #[serde(default)]
    interface: String,
    #[serde(default)]
    scope_id: u32,
}

/// The pairs as attempts to `port`: the port asked for rather than each
/// pair's, which the daemon only echoes. A link-local IPv6 pair carries its
/// scope id on both ends, so the bind and the connect use that interface.
fn attempts(answer: PairsAnswer, port: u16) -> Result<Vec<Attempt>, String> {
    answer
        .pairs
        .into_iter()
        .map(|pair| {
            let (source, destination) = match (pair.source, pair.destination) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    (SocketAddr::from((s, 0)), SocketAddr::from((d, port)))
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => (
                    SocketAddrV6::new(s, 0, 0, pair.scope_id).into(),
                    SocketAddrV6::new(d, port, 0, pair.scope_id).into(),
                ),
                (s, d) => return Err(format!("a pair of two families: {s} and {d}")),
            };
            Ok(Attempt {
                source: Some(source),
                destination,
                interface: pair.interface,
            })
        })
        .collect()
}

/// The system resolver's addresses for `host`, in its order, unbound.
fn resolve(host: &str, port: u16) -> io::Result<Vec<Attempt>> {
    Ok((host, port)
        .to_socket_addrs()?
        .map(|destination| Attempt {
            source: None,
            destination,
            interface: String::new(),
        })
        .collect())
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot connect to {} port {}: ", self.host, self.port)?;
        match &self.why {
            Why::Resolve(e, Some(declined)) => write!(
                f,
                "the getapr daemon has no pairs ({declined}) and the system resolver failed ({e})"
            ),
            Why::Resolve(e, None) => write!(f, "the system resolver failed ({e})"),
            Why::AllFailed(failed) => write!(f, "{failed}"),
            Why::Runtime(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Vec<Attempt>, String> {
        attempts(serde_json::from_str(json).map_err(|e| e.to_string())?, 22)
    }

    #[test]
    fn the_contracts_pairs_become_bound_attempts_to_the_port_asked_for() {
        let attempts = parse(include_str!("../../../tests/contract/pairs.json")).unwrap();
        assert_eq!(
            attempts
                .iter()
                .map(|a| (a.source.unwrap().to_string(), a.destination.to_string()))
                .collect::<Vec<_>>(),
            [
                ("[2001:db8:1::2]:0", "[2001:db8:ffff::10]:22"),
                ("192.168.1.2:0", "203.0.113.10:22"),
            ]
            .map(|(s, d)| (s.to_owned(), d.to_owned()))
        );
    }

    #[test]
    fn a_link_local_pair_keeps_its_scope_on_both_ends() {
        let attempts = parse(
            r#"{"pairs": [{"family": "ipv6", "source": "fe80::2", "destination": "fe80::1",
                "port": 443, "interface": "eth1", "scope_id": 7, "rtt_ms": null}]}"#,
        )
        .unwrap();
        let SocketAddr::V6(source) = attempts[0].source.unwrap() else {
            panic!("{attempts:?}")
        };
        let SocketAddr::V6(destination) = attempts[0].destination else {
            panic!("{attempts:?}")
        };
        assert_eq!((source.scope_id(), destination.scope_id()), (7, 7));
        assert_eq!(destination.port(), 22);
        assert_eq!(attempts[0].to_string(), "fe80::1%eth1 from fe80::2%eth1");
    }

    #[test]
    fn pairs_that_are_not_addresses_are_not_the_sidecars() {
        assert!(parse(r#"{"pairs": [{"source": "eth0", "destination": "::1"}]}"#).is_err());
        let mixed = parse(r#"{"pairs": [{"source": "127.0.0.1", "destination": "::1"}]}"#);
        assert_eq!(
            mixed.unwrap_err(),
            "a pair of two families: 127.0.0.1 and ::1"
        );
        assert!(parse(r#"{"unexpected": true}"#).is_err());
    }

    #[test]
    fn the_resolver_fallback_keeps_literals_and_binds_nothing() {
        let attempts = resolve("127.0.0.1", 8080).unwrap();
        assert_eq!(
            attempts,
            [Attempt {
                source: None,
                destination: SocketAddr::from(([127, 0, 0, 1], 8080)),
                interface: String::new(),
            }]
        );
    }
}
