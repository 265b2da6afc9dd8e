//! Which requests the sidecar answers at all: the `Host` and `Origin`
//! check that stops DNS rebinding (docs/interface.md, "HTTP sidecar").
//!
//! A web page can make a browser send requests to `127.0.0.1:80` by
//! pointing a name it owns at that address; the browser then sends that
//! name as `Host`. So a request is answered only when its `Host` is
//! `localhost`, a loopback literal, a configured listen address or the
//! address the connection arrived on (an IP literal is never a name an
//! attacker controls). A page of another origin that makes the browser
//! send a cross-origin request is turned away by its `Origin` (RFC 6454),
//! which must name such a host too.
//!
//! Pure and total: every function here takes header bytes as they came and
//! never panics (fuzzed through `fuzzing::api`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a request is refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: no `Host`, several, or one that is not `host[:port]`.
    BadRequest(&'static str),
    /// 403: a host that is not this sidecar's.
    Forbidden(&'static str),
}

/// The host of a `Host` header, a request target's authority or an
/// `Origin`, port dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// Lower-cased, one trailing dot removed.
    Name(String),
    Ip(IpAddr),
}

/// Checks a request's `Host` headers, the authority of its target when it
/// came in absolute form (RFC 9112 §3.2.2: that one wins over `Host`, so it
/// must pass too) and its `Origin` headers. `ours` are the sidecar's listen
/// addresses and the connection's local address.
pub fn check(
    hosts: &[&[u8]],
    authority: Option<&str>,
    origins: &[&[u8]],
    ours: &[IpAddr],
) -> Result<(), Refusal> {
    // RFC 9112 §3.2: a server MUST answer 400 to a request without a Host
    // header or with more than one.
    let host = match hosts {
        [] => return Err(Refusal::BadRequest("a Host header is required")),
        [one] => *one,
        _ => return Err(Refusal::BadRequest("more than one Host header")),
    };
    let host = std::str::from_utf8(host)
        .ok()
        .and_then(|h| authority_host(h.trim()))
        .ok_or(Refusal::BadRequest("the Host header is not host[:port]"))?;
    if !allowed(&host, ours) {
        return Err(Refusal::Forbidden(FORBIDDEN_HOST));
    }
    if let Some(a) = authority
        && !authority_host(a).is_some_and(|h| allowed(&h, ours))
    {
        return Err(Refusal::Forbidden(FORBIDDEN_HOST));
    }
    for origin in origins {
        if !origin_allowed(origin, ours) {
            return Err(Refusal::Forbidden(
                "requests from web pages of other origins are refused",
            ));
        }
    }
    Ok(())
}

const FORBIDDEN_HOST: &str =
    "Host must be localhost, a loopback address or a listen address of the sidecar";

/// Whether `host` is this sidecar's name: `localhost`, a loopback
/// literal, or one of `ours`.
pub fn allowed(host: &Host, ours: &[IpAddr]) -> bool {
    match host {
        Host::Name(n) => n == "localhost",
        Host::Ip(ip) => {
            let ip = ip.to_canonical();
            ip.is_loopback() || ours.iter().any(|o| o.to_canonical() == ip)
        }
    }
}

/// An `Origin` header (RFC 6454 §7): empty, or a space-separated list of
/// `scheme://host[:port]`, each of which must be [`allowed`]. The opaque
/// origin `null` (sandboxed frames, `file:` pages, redirects) is refused:
/// it could be anyone.
pub fn origin_allowed(value: &[u8], ours: &[IpAddr]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    value
        .split_ascii_whitespace()
        .all(|origin| origin_host(origin).is_some_and(|h| allowed(&h, ours)))
}

/// The host of one serialized origin, `None` when it is not one.
pub fn origin_host(origin: &str) -> Option<Host> {
    let (scheme, rest) = origin.split_once("://")?;
    let mut chars = scheme.chars();
    // RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    authority_host(rest)
}

/// `host[:port]` as in a `Host` header (RFC 9110 §7.2, RFC 3986 §3.2.2):
/// a reg-name, a dotted-quad IPv4 or a bracketed IPv6 literal, then an
/// optional port of up to five digits (empty allowed, as RFC 3986 does).
/// No userinfo, no path, no zone.
pub fn authority_host(s: &str) -> Option<Host> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = inner.parse().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (name, port) = match s.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (s, None),
        };
        (name_host(name)?, port)
    };
    if let Some(p) = port
        && (p.len() > 5
            || !p.bytes().all(|b| b.is_ascii_digit())
            || p.parse::<u32>().is_ok_and(|n| n > 65_535))
    {
        return None;
    }
    Some(host)
}

/// A reg-name or IPv4 literal, trailing dot tolerated, case folded.
fn name_host(name: &str) -> Option<Host> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty()
        || name.len() > 253
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return None;
    }
    if let Ok(v4) = name.parse::<Ipv4Addr>() {
        return Some(Host::Ip(IpAddr::V4(v4)));
    }
    Some(Host::Name(name.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &[IpAddr] = &[IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))];

    fn host(h: &str) -> Result<(), Refusal> {
        check(&[h.as_bytes()], None, &[], OURS)
    }

    #[test]
    fn our_hosts_pass() {
        for h in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "localhost:80",
            "localhost.:8080",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:80",
            "[::ffff:127.0.0.1]:80",
            "192.0.2.2",
            "192.0.2.2:80",
            "localhost:",
            " localhost ",
        ] {
            assert_eq!(host(h), Ok(()), "{h}");
        }
    }

    #[test]
    fn rebinding_names_and_other_addresses_are_forbidden() {
        for h in [
            "evil.example",
            "evil.example:80",
            "localhost.evil.example",
            "192.0.2.3",
            "[2001:db8::1]",
            "10.0.0.1:80",
            "0x7f000001",
        ] {
            assert!(matches!(host(h), Err(Refusal::Forbidden(_))), "{h}");
        }
    }

    #[test]
    fn malformed_hosts_are_bad_requests() {
        for h in [
            "",
            "::1",
            "[::1",
            "[::1]x",
            "[fe80::1%25eth0]",
            "localhost:80:80",
            "localhost:65536",
            "localhost:-1",
            "localhost:123456",
            "user@localhost",
            "localhost/path",
            "ünicode",
        ] {
            assert!(matches!(host(h), Err(Refusal::BadRequest(_))), "{h:?}");
        }
        assert!(matches!(
            check(&[], None, &[], OURS),
            Err(Refusal::BadRequest(_))
        ));
        assert!(matches!(
            check(&[b"localhost", b"localhost"], None, &[], OURS),
            Err(Refusal::BadRequest(_))
        ));
        assert!(matches!(
            check(&[b"local\xffhost"], None, &[], OURS),
            Err(Refusal::BadRequest(_))
        ));
    }

    #[test]
    fn an_absolute_target_must_name_us_too() {
        assert_eq!(
            check(&[b"localhost"], Some("127.0.0.1:80"), &[], OURS),
            Ok(())
        );
        assert!(matches!(
            check(&[b"localhost"], Some("evil.example"), &[], OURS),
            Err(Refusal::Forbidden(_))
        ));
    }

    #[test]
    fn origins() {
        for ok in [
            "",
            "http://localhost",
            "http://localhost:3000",
            "https://127.0.0.1:8443",
            "http://[::1]:80",
            "http://localhost http://127.0.0.1",
        ] {
            assert!(origin_allowed(ok.as_bytes(), OURS), "{ok}");
        }
        for bad in [
            "null",
            "http://evil.example",
            "https://localhost.evil.example",
            "http://localhost http://evil.example",
            "localhost",
            "://localhost",
            "1http://localhost",
            "http://localhost/",
            "http://user@localhost",
        ] {
            assert!(!origin_allowed(bad.as_bytes(), OURS), "{bad}");
            assert!(matches!(
                check(&[b"localhost"], None, &[bad.as_bytes()], OURS),
                Err(Refusal::Forbidden(_))
            ));
        }
    }
}
