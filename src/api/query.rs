//! The query string of `GET /pairs?host=NAME_OR_IP[&port=N]`.
//!
//! Pure and total (fuzzed through `fuzzing::api`); every error is a
//! message for the client's 400.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What `/pairs` was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairs {
    /// The host as given (percent-decoded), echoed in the answer.
    pub given: String,
    pub target: Target,
    pub port: u16,
}

/// The `host` parameter, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An IP literal: no DNS. `zone` is the interface of a link-local IPv6
    /// literal (`fe80::1%eth0`, RFC 6874 style), by name or index.
    Ip { addr: IpAddr, zone: Option<String> },
    /// A DNS name, trailing dot removed.
    Name(String),
}

/// The port when none is given: HTTPS, what most applications connect to.
pub const DEFAULT_PORT: u16 = 443;

/// Parses the query string of `/pairs` (the part after `?`, if any).
/// Parameters other than `host` and `port`, or either of them twice, are
/// errors: a typo (`prot=80`) must not silently mean port 443.
pub fn pairs(query: Option<&str>) -> Result<Pairs, String> {
    let mut host = None;
    let mut port = None;
    for param in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        let key = decode(key)?;
        let value = decode(value)?;
        let slot = match key.as_str() {
            "host" => &mut host,
            "port" => &mut port,
            _ => return Err(format!("unknown parameter {key:?}: only host and port")),
        };
        if slot.replace(value).is_some() {
            return Err(format!("{key} is given more than once"));
        }
    }
    let given = host.ok_or("host is required: /pairs?host=NAME_OR_IP[&port=N]")?;
    let target = target(&given)?;
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => parse_port(&p)?,
    };
    Ok(Pairs {
        given,
        target,
        port,
    })
}

/// A port: decimal, 1..=65535.
fn parse_port(p: &str) -> Result<u16, String> {
    let bad = || format!("port {p:?} is not a number from 1 to 65535");
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(bad()),
    }
}

/// `host`: an IPv4 literal, an IPv6 literal (brackets optional, a zone only
/// on a link-local address), or a DNS name of letters, digits, `-` and `_`.
pub fn target(host: &str) -> Result<Target, String> {
    if host.is_empty() {
        return Err("host is empty".into());
    }
    let bare = match host.strip_prefix('[') {
        Some(rest) => rest
            .strip_suffix(']')
            .ok_or_else(|| format!("host {host:?}: unbalanced bracket"))?,
        None => host,
    };
    if let Some((addr, zone)) = bare.split_once('%') {
        let addr: Ipv6Addr = addr
            .parse()
            .map_err(|_| format!("host {host:?}: a zone (%) only follows an IPv6 address"))?;
        // RFC 4007 §6: zones qualify non-global addresses; a link-local
        // one is the case that needs it.
        if !addr.is_unicast_link_local() {
            return Err(format!(
                "host {host:?}: a zone is only for link-local addresses"
            ));
        }
        // An interface name: at most 15 bytes (IFNAMSIZ), no '/' or spaces.
        if zone.is_empty()
            || zone.len() > 15
            || !zone.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
        {
            return Err(format!("host {host:?}: {zone:?} is not an interface"));
        }
        return Ok(Target::Ip {
            addr: IpAddr::V6(addr),
            zone: Some(zone.to_string()),
        });
    }
    if let Ok(v6) = bare.parse::<Ipv6Addr>() {
        return Ok(Target::Ip {
            addr: IpAddr::V6(v6),
            zone: None,
        });
    }
    if bare.len() != host.len() {
        return Err(format!("host {host:?}: brackets hold an IPv6 address"));
    }
    if let Ok(v4) = host.parse::<Ipv4Addr>() {
        return Ok(Target::Ip {
            addr: IpAddr::V4(v4),
            zone: None,
        });
    }
    name(host).map(Target::Name)
}

/// A DNS name as applications use them (RFC 1123 §2.1 host names, plus `_`
/// as service names have), trailing dot optional; RFC 1035 §2.3.4 limits.
fn name(host: &str) -> Result<String, String> {
    let n = host.strip_suffix('.').unwrap_or(host);
    let bad = |why: &str| Err(format!("host {host:?} is not a valid name: {why}"));
    if n.is_empty() {
        return bad("the root has no addresses");
    }
    if !n.is_ascii() {
        return bad("use the A-label (xn--...) of an internationalized name");
    }
    if n.len() > 253 {
        return bad("longer than 253 characters");
    }
    for label in n.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("a label is empty or longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return bad("only letters, digits, '-', '_' and '.' are allowed");
        }
    }
    // No top-level domain is numeric, and browsers read such names as IPv4
    // (WHATWG URL "ends in a number"): this is a mistyped address.
    if n.rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad("it ends in a number but is no IPv4 address");
    }
    Ok(n.to_string())
}

/// Percent-decoding of one query component (RFC 3986 §2.1), `+` as a space
/// as HTML forms send it; the result must be UTF-8.
pub fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = match bytes.get(i + 1..i + 3) {
                    Some(&[h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                        hex_value(h) << 4 | hex_value(l)
                    }
                    _ => return Err(format!("bad percent-encoding in {s:?}")),
                };
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} does not decode to UTF-8"))
}

/// The value of an ASCII hex digit (checked by the caller).
fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b.wrapping_sub(b'A').wrapping_add(10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(q: &str) -> Pairs {
        pairs(Some(q)).unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    #[test]
    fn names_and_ports() {
        let p = ok("host=www.example.com");
        assert_eq!(p.target, Target::Name("www.example.com".into()));
        assert_eq!(p.port, 443);
        assert_eq!(p.given, "www.example.com");
        assert_eq!(
            ok("host=Example.COM.&port=80").target,
            Target::Name("Example.COM".into())
        );
        assert_eq!(ok("port=8080&host=a.b").port, 8080);
        assert_eq!(ok("host=_dmarc.example&port=00443&").port, 443);
        assert_eq!(
            ok("host=www%2Eexample%2ecom").target,
            Target::Name("www.example.com".into())
        );
    }

    #[test]
    fn ip_literals() {
        let ip = |q: &str| match ok(q).target {
            Target::Ip { addr, zone } => (addr.to_string(), zone),
            t => panic!("{q}: {t:?}"),
        };
        assert_eq!(ip("host=192.0.2.1"), ("192.0.2.1".into(), None));
        assert_eq!(ip("host=2001:db8::1"), ("2001:db8::1".into(), None));
        assert_eq!(ip("host=%5B2001:db8::1%5D"), ("2001:db8::1".into(), None));
        assert_eq!(ip("host=[::1]"), ("::1".into(), None));
        assert_eq!(
            ip("host=fe80::1%25eth0"),
            ("fe80::1".into(), Some("eth0".into()))
        );
        assert_eq!(
            ip("host=[fe80::1%252]"),
            ("fe80::1".into(), Some("2".into()))
        );
    }

    #[test]
    fn bad_requests() {
        for q in [
            "",
            "port=80",
            "host=",
            "host",
            "host=a&host=b",
            "host=a&port=1&port=2",
            "host=a&port=0",
            "host=a&port=65536",
            "host=a&port=70000",
            "host=a&port=abc",
            "host=a&port=",
            "host=a&port=-1",
            "host=a&port=4294967297",
            "host=a&prot=80",
            "host=.",
            "host=a..b",
            "host=a%2",
            "host=a%zz",
            "host=%ff",
            "host=a b",
            "host=a+b",
            "host=ex%C3%A4mple.com",
            "host=1.2.3",
            "host=256.0.0.1",
            "host=[192.0.2.1]",
            "host=[::1",
            "host=2001:db8::1%25eth0",
            "host=192.0.2.1%25eth0",
            "host=fe80::1%25",
            "host=fe80::1%25a/b",
            "host=a/b",
        ] {
            assert!(pairs(Some(q)).is_err(), "{q} should be refused");
        }
        let long = format!("host={}.com", "a".repeat(64));
        assert!(pairs(Some(&long)).is_err());
        assert!(pairs(None).is_err());
    }

    #[test]
    fn decoding_is_total_on_edges() {
        assert_eq!(decode("%41%42+c").unwrap(), "AB c");
        assert!(decode("%").is_err());
        assert!(decode("%4").is_err());
        assert!(decode("%+1").is_err());
        assert!(decode("é%").is_err());
    }
}
