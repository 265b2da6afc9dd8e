//! The command-line clients of the HTTP sidecar: `getapr pairs` and
//! `getapr status` ask the running daemon and print what it says;
//! `getapr connect` connects over the pairs it gives and relays stdin and
//! stdout ([`connect`]).
//!
//! Blocking `std::net` rather than the daemon's tokio and no HTTP client
//! crate: one GET to a loopback address needs neither, and the binary stays
//! as small as it is.

pub mod connect;
mod http;
mod render;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::config::Config;

/// The sidecar's address, as given with `--api`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiUrl {
    /// A name or an IP literal (IPv6 without brackets).
    host: String,
    port: u16,
}

/// How to print an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned, for people.
    Table,
    /// The daemon's JSON body as received.
    Json,
}

/// Why `getapr pairs` or `getapr status` failed. All of these exit 1.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(
        "cannot reach the getapr daemon at {api} ({reason}); is it running? \
         Start it with `getapr serve` (or `systemctl start getapr`)"
    )]
    Unreachable { api: ApiUrl, reason: String },
    #[error(
        "the getapr daemon at {api} accepted the connection but did not answer within {} s",
        http::READ_TIMEOUT.as_secs()
    )]
    Silent { api: ApiUrl },
    #[error("{api}: {reason}")]
    BadAnswer { api: ApiUrl, reason: String },
    /// The daemon answered with an HTTP error; `message` is its `error` text.
    #[error("{message} (HTTP {status})")]
    Refused { status: u16, message: String },
}

/// `--api` is not `http://HOST[:PORT]` or `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}; expected http://HOST[:PORT] or HOST:PORT, e.g. http://127.0.0.1:80")]
pub struct ApiUrlError {
    why: String,
}

/// `GET /pairs?host=HOST[&port=PORT]`: the working (source, destination)
/// pairs for `host`, best first.
pub fn pairs(api: &ApiUrl, host: &str, port: Option<u16>, format: Format) -> Result<String, Error> {
    let mut target = format!("/pairs?host={}", percent_encode(host));
    if let Some(port) = port {
        target.push_str(&format!("&port={port}"));
    }
    let body = api.get_json(&target)?;
    match format {
        Format::Json => as_received(api, &body),
        Format::Table => {
            let answer = serde_json::from_slice(&body).map_err(|e| api.bad_answer(e))?;
            Ok(render::pairs(host, &answer))
        }
    }
}

/// `GET /status`: the getapr flags, gateways, NAT64 prefixes and sources.
pub fn status(api: &ApiUrl, format: Format) -> Result<String, Error> {
    let body = api.get_json("/status")?;
    match format {
        Format::Json => as_received(api, &body),
        Format::Table => {
            let answer = serde_json::from_slice(&body).map_err(|e| api.bad_answer(e))?;
            Ok(render::status(&answer))
        }
    }
}

/// The body as the daemon sent it, ending in a newline for the terminal;
/// checked to be JSON, so a script never parses some other server's page.
fn as_received(api: &ApiUrl, body: &[u8]) -> Result<String, Error> {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|e| api.bad_answer(e))?;
    let mut text = String::from_utf8_lossy(body).into_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

impl ApiUrl {
    /// The first `http.listen` address of the default config: the one
    /// `getapr serve` runs with when given no `--config`
    /// (`/etc/getapr/getapr.toml`, else the embedded default). A file that
    /// does not parse, or turns the sidecar off, falls back to the embedded
    /// default's address: the daemon may still be running with it.
    pub fn from_default_config() -> ApiUrl {
        let config = Config::discover(None).map_or_else(|_| Config::embedded(), |(c, _)| c);
        ApiUrl::first_listen(&config).unwrap_or_else(|| {
            ApiUrl::first_listen(&Config::embedded()).unwrap_or(ApiUrl {
                host: Ipv4Addr::LOCALHOST.to_string(),
                port: 80,
            })
        })
    }

    /// Where to reach the first `http.listen` address of `config`; a
    /// wildcard address is reached over loopback of its family.
    pub fn first_listen(config: &Config) -> Option<ApiUrl> {
        let addr = config.http.listen.first()?;
        let ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Some(ApiUrl {
            host: ip.to_string(),
            port: addr.port(),
        })
    }

    /// The `Host` header: the URL's host, so the sidecar's DNS-rebinding
    /// guard (which accepts `localhost` and loopback or listen literals)
    /// sees what the user named; the port only when it is not 80, as curl does.
    fn host_header(&self) -> String {
        let host = self.bracketed_host();
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    fn bracketed_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// GETs `target`; the body of a 2xx answer, else the daemon's error.
    fn get_json(&self, target: &str) -> Result<Vec<u8>, Error> {
        let response = http::get(&self.host, self.port, &self.host_header(), target)
            .map_err(|failure| self.failure(failure))?;
        if (200..300).contains(&response.status) {
            return Ok(response.body);
        }
        Err(Error::Refused {
            status: response.status,
            message: error_message(&response.body),
        })
    }

    fn failure(&self, failure: http::Failure) -> Error {
        let api = self.clone();
        match failure {
            http::Failure::Connect(e) => Error::Unreachable {
                api,
                reason: connect_reason(&e),
            },
            http::Failure::Silent => Error::Silent { api },
            http::Failure::Io(e) => Error::BadAnswer {
                api,
                reason: format!("the connection broke: {e}"),
            },
            http::Failure::Malformed(m) => Error::BadAnswer {
                api,
                reason: format!("not an HTTP answer from getapr: {m}"),
            },
        }
    }

    fn bad_answer(&self, e: serde_json::Error) -> Error {
        Error::BadAnswer {
            api: self.clone(),
            reason: format!("unexpected JSON from the daemon: {e}"),
        }
    }
}

fn connect_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => format!(
            "no answer to the connection attempt within {} s",
            http::CONNECT_TIMEOUT.as_secs()
        ),
        _ => e.to_string(),
    }
}

/// The `error` text of a JSON error body; else the body itself (a proxy's
/// plain-text page), cut short; else a generic phrase.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    if let Ok(ErrorBody { error }) = serde_json::from_slice(body) {
        return error;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "the daemon refused the request".to_owned();
    }
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// RFC 3986 §2.3: everything but the unreserved characters is escaped, so
/// any name (or `::` of an IPv6 literal, or a stray `&`) stays one value.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl fmt::Display for ApiUrl {
    /// `http://HOST:PORT`, the port always shown, so the user sees which.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}:{}", self.bracketed_host(), self.port)
    }
}

impl FromStr for ApiUrl {
    type Err = ApiUrlError;

    /// `http://HOST[:PORT][/]` (port 80 by default) or `HOST:PORT`; HOST is
    /// a name, an IPv4 literal or an IPv6 literal in brackets.
    fn from_str(input: &str) -> Result<ApiUrl, ApiUrlError> {
        // clap's message already names the option and the value.
        let fail = |why: &str| ApiUrlError {
            why: why.to_owned(),
        };
        let (authority, default_port) = match input.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => {
                (rest.strip_suffix('/').unwrap_or(rest), Some(80))
            }
            Some((scheme, _)) => {
                return Err(fail(&format!(
                    "the scheme {scheme:?} is not supported, only http"
                )));
            }
            None => (input, None),
        };
        if authority.contains(['/', '?', '#', '@']) {
            return Err(fail("a path, query or user name is not supported"));
        }
        let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
            let (ip, after) = rest
                .split_once(']')
                .ok_or_else(|| fail("a '[' without its ']'"))?;
            ip.parse::<Ipv6Addr>()
                .map_err(|_| fail(&format!("{ip:?} is not an IPv6 address")))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| fail("expected ':PORT' after ']'"))?,
                ),
            };
            (ip, port)
        } else {
            if authority.matches(':').count() > 1 {
                return Err(fail("an IPv6 address needs brackets, as in [::1]:PORT"));
            }
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            if host.is_empty() {
                return Err(fail("the host is missing"));
            }
            if !is_name(host) && host.parse::<Ipv4Addr>().is_err() {
                return Err(fail(&format!("{host:?} is not a name or an address")));
            }
            (host, port)
        };
        let port = match port.map(str::parse::<u16>) {
            Some(Ok(port)) if port > 0 => port,
            Some(_) => return Err(fail("the port is not a number from 1 to 65535")),
            None => default_port.ok_or_else(|| fail("HOST:PORT needs the port"))?,
        };
        Ok(ApiUrl {
            host: host.to_owned(),
            port,
        })
    }
}

/// A DNS name as `getaddrinfo` takes it: LDH labels, a trailing dot allowed.
/// (An all-digit "name" such as `127.1` is rejected: ambiguous.)
fn is_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(host: &str, port: u16) -> ApiUrl {
        ApiUrl {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn api_urls_that_are_accepted() {
        for (input, want) in [
            ("http://127.0.0.1:80", api("127.0.0.1", 80)),
            ("http://127.0.0.1", api("127.0.0.1", 80)),
            ("http://127.0.0.1:8053/", api("127.0.0.1", 8053)),
            ("HTTP://localhost", api("localhost", 80)),
            ("http://[::1]:8080", api("::1", 8080)),
            ("http://[::1]", api("::1", 80)),
            ("localhost:8080", api("localhost", 8080)),
            ("127.0.0.1:8080", api("127.0.0.1", 8080)),
            ("[::1]:8080", api("::1", 8080)),
            ("getapr.internal.:80", api("getapr.internal.", 80)),
        ] {
            assert_eq!(input.parse::<ApiUrl>(), Ok(want), "{input}");
        }
    }

    #[test]
    fn api_urls_that_are_usage_errors() {
        for (input, why) in [
            ("https://127.0.0.1", "scheme \"https\" is not supported"),
            ("localhost", "HOST:PORT needs the port"),
            ("127.0.0.1", "HOST:PORT needs the port"),
            ("::1", "needs brackets"),
            ("::1:80", "needs brackets"),
            ("http://[::1", "without its ']'"),
            ("http://[nope]:80", "is not an IPv6 address"),
            ("http://[::1]80", "expected ':PORT'"),
            ("http://127.0.0.1:0", "port is not a number"),
            ("http://127.0.0.1:65536", "port is not a number"),
            ("http://127.0.0.1:", "port is not a number"),
            ("http://127.0.0.1/status", "path"),
            ("http://user@127.0.0.1", "user name"),
            ("http://", "host is missing"),
            (":80", "host is missing"),
            ("http://exa mple:80", "not a name or an address"),
            ("http://300.1.1.1:80", "not a name or an address"),
            ("", "host is missing"),
        ] {
            let error = input.parse::<ApiUrl>().expect_err(input).to_string();
            assert!(error.contains(why), "{input}: {error}");
            assert!(error.contains("expected http://HOST[:PORT] or HOST:PORT"));
        }
    }

    #[test]
    fn the_default_is_the_first_listen_address_of_the_embedded_config() {
        let default = ApiUrl::first_listen(&Config::embedded()).unwrap();
        assert_eq!(default.to_string(), "http://127.0.0.1:80");
        assert_eq!(default.host_header(), "127.0.0.1");
    }

    #[test]
    fn a_wildcard_listen_address_is_reached_over_loopback() {
        let config = Config::parse("[http]\nlisten = [\"[::]:8080\", \"0.0.0.0:80\"]\n").unwrap();
        assert_eq!(ApiUrl::first_listen(&config), Some(api("::1", 8080)));
        let config = Config::parse("[http]\nlisten = []\n").unwrap();
        assert_eq!(ApiUrl::first_listen(&config), None);
    }

    #[test]
    fn host_header_names_the_urls_host_and_a_port_other_than_80() {
        assert_eq!(api("localhost", 80).host_header(), "localhost");
        assert_eq!(api("127.0.0.1", 8080).host_header(), "127.0.0.1:8080");
        assert_eq!(api("::1", 8080).host_header(), "[::1]:8080");
        assert_eq!(api("::1", 80).host_header(), "[::1]");
        assert_eq!(api("::1", 80).to_string(), "http://[::1]:80");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(percent_encode("www.example.com"), "www.example.com");
        assert_eq!(percent_encode("2001:db8::1"), "2001%3Adb8%3A%3A1");
        assert_eq!(percent_encode("a b&port=1"), "a%20b%26port%3D1");
        assert_eq!(percent_encode("bücher.de"), "b%C3%BCcher.de");
    }

    #[test]
    fn error_messages_come_from_the_json_or_the_text() {
        assert_eq!(
            error_message(br#"{"error": "no such name"}"#),
            "no such name"
        );
        assert_eq!(error_message(b"Method Not Allowed\n"), "Method Not Allowed");
        assert_eq!(error_message(b""), "the daemon refused the request");
        assert_eq!(
            error_message("é".repeat(300).as_bytes()).chars().count(),
            201
        );
    }
}
